# shellcheck shell=bash disable=SC2154  # hw_me, lane, root: set by the caller (below)
# What scripts/hw-lane and scripts/hw-pair share: an "L1" VM under QEMU TCG with nested AMD SVM,
# booting Debian's cloud kernel from an initramfs that holds busybox, kvm-amd (and whatever other
# modules the caller names) and minihv's binaries at their host paths. Sourced, not run.
# The caller sets, before using these functions:
#   hw_me      its name for messages ("hw-lane", "hw-pair")
#   root       the source tree; lane=$root/build/hw-lane holds the kernel cache and the lock
#   die()      prints "$hw_me: error: ..." and exits 1
# and gets: busybox_bin, pkg/vmlinuz/kver/moddir (the L1 kernel), modules (paths in modules.dep, each
# after what it needs), ir (the initramfs tree being built), and the functions below.

# L1's kernel command line. tsc=reliable: TCG's TSC is the host's (constant, and the same on every
# vCPU), as a hardware host's is, but -cpu max under TCG does not say so (no invariant-TSC bit), so
# L1's kernel would call it unsynchronized, run on HPET, and its KVM could give guests no stable
# kvmclock; a Linux guest then sees kvm-clock and its TSC drift apart (its clocksource watchdog
# complains within seconds). On the hardware this lane stands for, KVM keeps them in step.
hw_l1_cmdline="console=ttyS0 panic=-1 quiet mitigations=off tsc=reliable"

# hw_l1_require_tools TOOL...: each must be on PATH (scripts/bootstrap installs them all).
hw_l1_require_tools() {
  local tool
  for tool; do
    command -v "$tool" >/dev/null || die "$tool is missing: run scripts/bootstrap --no-build"
  done
}

# hw_l1_find_busybox: sets busybox_bin. It runs as L1's userland, with no libraries: static only.
hw_l1_find_busybox() {
  busybox_bin=$(command -v busybox)
  file -L "$busybox_bin" | grep -q 'statically linked' ||
    die "$busybox_bin is not statically linked: install busybox-static (scripts/bootstrap --no-build)"
}

# hw_l1_kernel: the package scripts/guest-kit uses, downloaded once into $lane/cache/PKG/ (keyed by
# package name, so a rerun downloads nothing); sets pkg, vmlinuz, kver and moddir.
hw_l1_kernel() {
  local meta=linux-image-cloud-amd64 cache debs images
  resolve_image_pkg() {
    apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
  }
  pkg=$(resolve_image_pkg || true)
  if [[ -z "$pkg" ]]; then
    echo "$hw_me: package lists have no $meta; running apt-get update"
    apt-get update -qq || die "apt-get update failed (are you root? is the Debian mirror reachable?)"
    pkg=$(resolve_image_pkg || true)
  fi
  [[ -n "$pkg" ]] || die "cannot resolve $meta to a versioned linux-image package"

  cache=$lane/cache/$pkg
  if [[ ! -f "$cache/.unpacked" ]]; then
    echo "$hw_me: downloading $pkg into ${cache#"$root"/}"
    rm -rf "$cache"
    mkdir -p "$cache/deb" "$cache/root"
    chmod 0777 "$cache/deb"  # apt-get download runs as _apt when it can
    (cd "$cache/deb" && apt-get download -qq "$pkg") || die "apt-get download $pkg failed"
    debs=("$cache"/deb/*.deb)
    [[ -f "${debs[0]}" ]] || die "apt-get download $pkg left no .deb in $cache/deb"
    dpkg-deb -x "${debs[0]}" "$cache/root"
    touch "$cache/.unpacked"
  fi
  images=("$cache"/root/boot/vmlinuz-*)
  vmlinuz=${images[0]}
  [[ -f "$vmlinuz" ]] || die "$pkg has no boot/vmlinuz-* (remove $cache and retry)"
  kver=${vmlinuz##*/vmlinuz-}
  moddir=$cache/root/lib/modules/$kver
  # Packages ship no modules.dep (depmod makes it at install time): make it in the unpacked tree.
  if [[ ! -f "$moddir/modules.dep" ]]; then
    depmod -b "$cache/root" "$kver" || die "depmod on the unpacked $pkg failed"
  fi
}

# hw_l1_modules NAME...: sets modules to the named modules, each after what it needs (modules.dep
# lists the whole closure of each module's dependencies).
hw_l1_modules() {
  local name path
  declare -A queued=()
  modules=()
  add_module() {  # add_module PATH_IN_MODULES_DEP
    local path=$1 line dep
    [[ -n "${queued[$path]:-}" ]] && return 0
    queued[$path]=1
    line=$(grep -m1 "^$path:" "$moddir/modules.dep")
    for dep in ${line#*:}; do add_module "$dep"; done
    modules+=("$path")
  }
  for name; do
    path=$(awk -F: -v n="$name" '{ f = $1; sub(/.*\//, "", f); sub(/\.ko(\.xz|\.zst|\.gz)?$/, "", f) }
                                 f == n { print $1; exit }' "$moddir/modules.dep")
    [[ -n "$path" ]] || die "$pkg has no $name module"
    add_module "$path"
  done
}

# hw_l1_initramfs_start DIR: a fresh tree in DIR (ir=DIR) with busybox and its applets, and the
# modules, decompressed, in /lib/modules/hw-lane/ with their load order in /etc/hw-lane/modules
# (the init that hw_l1_init_prologue writes reads them there).
hw_l1_initramfs_start() {
  local applet path src base
  ir=$1
  rm -rf "$ir"
  mkdir -p "$ir"/{bin,dev,proc,sys,tmp,run,root,etc/hw-lane,lib/modules/hw-lane}
  cp "$busybox_bin" "$ir/bin/busybox"
  for applet in $("$ir/bin/busybox" --list); do
    [[ "$applet" == busybox ]] || ln -sf busybox "$ir/bin/$applet"
  done
  mknod -m 600 "$ir/dev/console" c 5 1 2>/dev/null || true  # the kernel's built-in cpio has one too

  : >"$ir/etc/hw-lane/modules"
  : >"$ir/etc/hw-lane/params"  # the caller adds "NAME.ko PARAM=VALUE ..." lines
  for path in "${modules[@]}"; do
    src=$moddir/$path base=${path##*/}
    case "$base" in  # busybox insmod reads plain ELF only: decompress here
      *.ko.xz) xz -dc "$src" >"$ir/lib/modules/hw-lane/${base%.xz}"; base=${base%.xz} ;;
      *.ko.zst) zstd -qdc "$src" >"$ir/lib/modules/hw-lane/${base%.zst}"; base=${base%.zst} ;;
      *.ko.gz) gzip -dc "$src" >"$ir/lib/modules/hw-lane/${base%.gz}"; base=${base%.gz} ;;
      *.ko) cp "$src" "$ir/lib/modules/hw-lane/$base" ;;
      *) die "unknown module format: $path" ;;
    esac
    echo "$base" >>"$ir/etc/hw-lane/modules"
  done
}

add_file() {  # add_file HOST_PATH: a copy at the same absolute path in the image
  mkdir -p "$ir$(dirname "$1")"
  cp -L "$1" "$ir$1"
}
add_elf() {  # add_elf HOST_PATH: a copy without debug info at the same path, and its shared libraries
  local lib
  mkdir -p "$ir$(dirname "$1")"
  strip --strip-debug -o "$ir$1" "$1"
  # ldd prints "name => /path (addr)" and the loader as "/path (addr)"; static files have neither.
  for lib in $(ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    [[ -e "$ir$lib" ]] || add_file "$lib"
  done
}

# hw_l1_initramfs_pack OUT: the tree as a gzipped newc cpio (sorted, owned by root, no timestamps in
# gzip), written to OUT in one step; the tree is removed.
hw_l1_initramfs_pack() {
  (cd "$ir" && find . -print0 | LC_ALL=C sort -z |
     cpio --null -o -H newc --owner=0:0 --quiet | gzip -6n) >"$1.tmp"
  mv "$1.tmp" "$1"
  rm -rf "$ir"
}

# hw_l1_init_prologue TAG: the start of an L1 /init (busybox sh), after its first two lines: the
# pseudo file systems, fail() (prints "TAG: ERROR ..." on the console and powers off), SVM in the
# emulated CPU, the modules of /etc/hw-lane/modules loaded, kvm-amd among them, /dev/kvm there.
# Its notes say "tag-init:" (TAG in lower case).
hw_l1_init_prologue() {
  local tag=${1,,}
  sed -e "s/@TAG@/$1/g" -e "s/@tag@/$tag/g" <<'EOF'
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts  # openpty() for console tests
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
ip link set lo up

fail() {
  echo "@TAG@: ERROR $*"
  sleep 1  # let the UART drain before the power goes
  poweroff -f
}

grep -qw svm /proc/cpuinfo || fail "no SVM in the emulated CPU ($(grep -m1 'model name' /proc/cpuinfo))"
for m in $(cat /etc/hw-lane/modules); do
  # shellcheck disable=SC2046  # a module's parameters, from /etc/hw-lane/params ("NAME.ko a=1 b=2")
  insmod "/lib/modules/hw-lane/$m" $(sed -n "s/^$m //p" /etc/hw-lane/params 2>/dev/null) ||
    echo "@tag@-init: insmod $m failed"
done
if [ ! -d /sys/module/kvm_amd ]; then
  dmesg | tail -n 20
  fail "kvm-amd did not load"
fi
[ -c /dev/kvm ] || fail "kvm-amd loaded but /dev/kvm is missing"
# As Debian's udev rules leave it (devtmpfs makes it 0600): anyone may open the tun device; a tap
# itself belongs to whom its maker gave it (a node's VM run as --vm-user attaches to its own).
[ -c /dev/net/tun ] && chmod 666 /dev/net/tun
EOF
}

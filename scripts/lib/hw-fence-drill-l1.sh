# shellcheck shell=dash disable=SC2154  # minihv, guest, key, delay_ms: from /etc/drill/env
# scripts/hw-fence-drill's L1 side (busybox sh). /init sources it after hw_l1_init_prologue. Both L1s
# run it alike; the role (a = 10.77.0.1, b = 10.77.0.2) and the boot's number come from the kernel
# command line. Each L1 serves the shared volume (its one virtio-blk disk, /dev/vda) to its node
# through a device-mapper table it can slow down, runs `minihv node --watchdog /dev/watchdog` (softdog
# resets this L1 for real: QEMU runs with -no-reboot, so the reset ends it), and waits until the VM
# runs here, the other node is up and the guest has written for a while. Then it delays every write
# to the VM's disk extent by $delay_ms (dm-delay), and the node must kill the VM, fence itself and be
# reset by the watchdog before the survivor claims the disk. Lines for the host ("DRILL: ..."):
#   DRILL: READY role=R boot=N                 up, the node started
#   DRILL: INJECT node=R boot=N rec=R          writes to the extent delayed; R: the last acknowledged record
#   DRILL: RESUMED node=R boot=N resume=R corrupt=C errs=E   the VM came here after the other's reset
#   DRILL: ERROR ...                           something failed (the host fails the drill)
# shellcheck source=/dev/null
. /etc/drill/env
export DM_DISABLE_UDEV=1  # no udev here: dmsetup makes /dev/mapper/* itself

note() { echo "drill-init: $*" >/dev/console; }
now() { cut -d. -f1 /proc/uptime; }
wait_until() {  # wait_until SECONDS COMMAND...: COMMAND every 0.3 s until it succeeds; 1 on timeout
  local deadline=$(($(now) + $1))
  shift
  until "$@"; do
    [ "$(now)" -lt "$deadline" ] || return 1
    sleep 0.3
  done
}
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^drill\.$1=//p"; }
role=$(arg role) boot=$(arg boot)
case "$role" in
  a) me=10.77.0.1 peer=10.77.0.2 ;;
  b) me=10.77.0.2 peer=10.77.0.1 ;;
  *) fail "no drill.role=a or =b on the kernel command line" ;;
esac
state=/run/minihv/$role
mkdir -p "$state"
console=$state/v.console

wait_until 10 test -e /sys/class/net/eth0 || fail "no network interface"
ip link set eth0 up && ip addr add "$me/24" dev eth0 || fail "cannot give eth0 $me/24"
wait_until 10 test -b /dev/vda || fail "no /dev/vda: the shared volume is missing"
sectors=$(cat /sys/block/vda/size)
dmsetup create vol --table "0 $sectors linear /dev/vda 0" || fail "dmsetup create vol failed"

"$minihv" node --name "$role" --volume /dev/mapper/vol --listen "$me:7700" --key "$key" \
  --images "${guest%/*}" --state-dir "$state" --watchdog /dev/watchdog >/dev/console 2>&1 &
cli() { "$minihv" cluster --node "$me:7700" --key "$key" "$@"; }
node_up() { cli status >/dev/null 2>&1; }
wait_until 60 node_up || fail "the node does not answer on $me:7700 after 60 s"
echo "DRILL: READY role=$role boot=$boot"

# From `minihv cluster status`: the nodes that are up; the VM's row (node, state, heartbeats: after
# the uptime, "N s" or "-").
nodes_up() { cli status 2>/dev/null | awk '/^NODE / { t = 1; next } /^$/ { t = 0 } t && $3 == "up"' | wc -l; }
vm_row() { cli status 2>/dev/null | awk '$1 == "v" && $2 == "running" { i = $5 == "-" ? 6 : 7; print $3, $4, $i }'; }
both_up() { [ "$(nodes_up)" -ge 2 ]; }
runs_here_long_enough() {  # the VM runs here with at least 5 heartbeats, and the other node is up
  set -- $(vm_row)
  [ "${1:-}" = "$role" ] && [ "${2:-}" = running ] && [ "${3:-0}" -ge 5 ] && both_up
}
last_field() { sed -n "s/^HB cpu=0 .* $1=\([0-9]*\).*/\1/p" "$console" | tail -n 1; }

# The first boot of A adds the VM (the test guest's `disk` workload on the volume's disk d0).
if [ "$role" = a ] && [ "$boot" = 0 ]; then
  wait_until 120 both_up || fail "node b is not up after 120 s"
  cli vm add v --kernel "$guest" --cmdline "disk" --mem 64M --disk d0 --start --timeout 120 >/dev/console 2>&1 ||
    fail "cluster vm add failed"
fi

# Until the VM runs here long enough. One that arrived from the other node (after its reset) is
# reported once its boot has read the disk: where it resumed, and whether it found a record missing.
resumed='' waited=0
report_resume() {  # once, as soon as the VM's boot has read the disk
  if [ -z "$resumed" ] && grep -q '^DISK resume last=' "$console" 2>/dev/null; then
    resumed=1
    echo "DRILL: RESUMED node=$role boot=$boot" \
         "resume=$(sed -n 's/^DISK resume last=\([0-9]*\).*/\1/p' "$console" | head -n 1)" \
         "corrupt=$(grep -c CORRUPT "$console") errs=$(last_field errs)"
  fi
}
while ! runs_here_long_enough; do
  waited=$((waited + 1))
  [ $((waited % 60)) -ne 0 ] || note "waiting: the VM (node, state, heartbeats): $(vm_row); nodes up: $(nodes_up)"
  report_resume
  sleep 0.5
done
report_resume  # a VM that came up between two looks: its 5 heartbeats follow its resume line

# The drill: from now on every write to d0's extent waits $delay_ms in this L1's kernel (reads do
# not). The rest of the volume (the leases) stays fast: the node itself is healthy.
first=$((extent_offset / 512)) count=$((extent_bytes / 512))
rest=$((first + count))
{
  echo "0 $first linear /dev/vda 0"
  echo "$first $count delay /dev/vda $first 0 /dev/vda $first $delay_ms /dev/vda $first 0"
  echo "$rest $((sectors - rest)) linear /dev/vda $rest"
} >/run/slow.table
# Loaded beside the live table first, then swapped in by the resume (the kernel suspends the device
# for the swap alone): I/O to the volume waits only for that, not for the load too. Suspending
# first held every lease renewal for the load as well (renewals of 488-635 ms under TCG), which
# lost the VM's leases in one drill and the node's own lease in another.
dmsetup load vol /run/slow.table && dmsetup resume vol || fail "dmsetup could not load the delaying table"
echo "DRILL: INJECT node=$role boot=$boot rec=$(last_field rec)"
# The node kills the VM (its write is past its deadline), cannot see it gone (the write holds it),
# fences itself and stops petting the watchdog: the reset ends this machine. Not before this:
sleep 60
fail "not reset 60 s after the writes were delayed"

# shellcheck shell=dash disable=SC2154  # minihv, guest*: from /etc/hw-pair/env
# scripts/hw-pair's L1 side (busybox sh: POSIX with `local`, not bash). /init sources it after hw_l1_init_prologue
# (scripts/lib/hw-l1.sh: file systems, SVM, kvm-amd); B's control server runs it as
# `sh /etc/hw-pair/l1.sh serve`, once per request.
#   L1 A (hw_pair.role=a, the newer CPU, 10.77.0.1) drives the scenario: it fetches B's CPU profile,
#     makes the cluster baseline, runs the guest and the migrations, and writes what the host checks
#     to its second UART (the host's a.data) as "=== BEGIN name" ... "=== END name" blocks.
#   L1 B (hw_pair.role=b, the older CPU, 10.77.0.2) serves A's requests on TCP 7001 (busybox nc):
#     its CPU profile, a destination `minihv run --incoming` on 7100+N, that destination's console,
#     stderr and state, and the power-off at the end.
# Progress goes to the console as "HW-PAIR: ..." lines (the host shows them with their times);
# "HW-PAIR: ERROR ..." (fail) ends the machine and names what went wrong.
# /etc/hw-pair/env (written by scripts/hw-pair) sets minihv, guest, guest_cmdline, guest_mem, guest_cpus.
# shellcheck source=/dev/null
. /etc/hw-pair/env
run=/run/hw-pair    # every file of the scenario: profiles, consoles, replies
ctl_port=7001       # B's control server
mig_port=7100       # + the scenario's number: B's destination for it
mkdir -p "$run"

note() { echo "hw-pair-init: $*" >/dev/console; }
step() { echo "HW-PAIR: STEP $*" >/dev/console; }
now() { cut -d. -f1 /proc/uptime; }
# wait_until SECONDS COMMAND...: runs COMMAND every 0.2 s until it succeeds; status 1 on timeout.
wait_until() {
  local deadline=$(($(now) + $1))
  shift
  until "$@"; do
    [ "$(now)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}
quiet() { "$@" >/dev/null 2>&1; }
# spawn NAME COMMAND...: COMMAND in the background, detached from this shell's descriptors (B's
# requests run with a socket on them); output in $run/NAME.out and .err, exit status in .rc.
spawn() {
  local name=$1
  shift
  rm -f "$run/$name.rc"
  ( "$@" >"$run/$name.out" 2>"$run/$name.err"; echo $? >"$run/$name.rc" ) </dev/null >/dev/null 2>&1 &
}
ended() { [ -s "$run/$1.rc" ]; }
state() {  # state NAME: "running" or "exited RC"
  if ended "$1"; then echo "exited $(cat "$run/$1.rc")"; else echo running; fi
}
# The test guest's heartbeat: "HB cpu=0 seq=N ms=... errs=E" once a second.
last_seq() {  # last_seq CONSOLE: the last heartbeat's sequence number, 0 before the first
  local s
  s=$(sed -n 's/^HB cpu=0 seq=\([0-9][0-9]*\) .*/\1/p' "$1" 2>/dev/null | tail -n 1)
  echo "${s:-0}"
}
seq_reached() { [ "$(last_seq "$1")" -ge "$2" ]; }  # seq_reached CONSOLE N
hb_count() {  # hb_count CONSOLE: how many heartbeats it holds
  local n
  n=$(grep -c '^HB cpu=0 seq=' "$1" 2>/dev/null)
  echo "${n:-0}"
}

# --- B: the control server ---------------------------------------------------------------------------
dest_listening() { grep -q 'waiting for a migrating VM' "$run/d$1.err" 2>/dev/null; }
dest_has_hb() { [ "$(hb_count "$run/d$1.console")" -ge "$2" ] || ended "d$1"; }
serve() {  # one request, "VERB [N [ARG]]", from stdin; the reply on stdout (the socket)
  read -r verb n arg || return 0
  note "request: $verb${n:+ $n}${arg:+ $arg}"
  case "$verb" in
    profile) cat "$run/cpuid.json" ;;
    features) cat "$run/cpuid.txt" ;;
    dest)  # a destination for scenario N, the guest's --mem/--cpus; replies when it listens
      spawn "d$n" "$minihv" run --mem "$guest_mem" --cpus "$guest_cpus" --api "$run/d$n.sock" \
        --console "$run/d$n.console" --incoming "0.0.0.0:$((mig_port + n))"
      if wait_until 30 dest_listening "$n"; then
        echo "listening on $((mig_port + n))"
      else
        echo "not listening after 30 s ($(state "d$n")): $(tail -n 3 "$run/d$n.err" 2>/dev/null)"
      fi ;;
    wait-hb)  # until destination N has ARG heartbeats (or has ended), at most 60 s
      if wait_until 60 dest_has_hb "$n" "$arg"; then echo "$(hb_count "$run/d$n.console") heartbeats, $(state "d$n")"
      else echo "timeout: $(hb_count "$run/d$n.console") heartbeats after 60 s, $(state "d$n")"; fi ;;
    wait-exit)  # until destination N has ended, at most ARG seconds; its state
      wait_until "$arg" ended "d$n" || true
      state "d$n" ;;
    state) state "d$n" ;;
    console) cat "$run/d$n.console" 2>/dev/null ;;
    stderr) cat "$run/d$n.err" 2>/dev/null ;;
    stop)  # destination N stops (if it runs); its state once it has ended
      ended "d$n" || quiet "$minihv" vm stop --api "$run/d$n.sock"
      wait_until 20 ended "d$n" || true
      state "d$n" ;;
    poweroff)
      echo "powering off"
      ( sleep 1; poweroff -f ) </dev/null >/dev/null 2>&1 & ;;
    *) echo "unknown request: $verb" ;;
  esac
}
if [ "${1:-}" = serve ]; then
  serve
  exit 0
fi

# --- both: nested paging, the network, this L1's CPU -----------------------------------------------------
role=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^hw_pair\.role=//p')
case "$role" in
  a) me=10.77.0.1 peer=10.77.0.2 ;;
  b) me=10.77.0.2 peer=10.77.0.1 ;;
  *) fail "no hw_pair.role=a or =b on the kernel command line" ;;
esac
dmesg | grep -E 'kvm(_amd)?:' | sed 's/^/hw-pair-init: /'
dmesg | grep -q 'Nested Paging enabled' ||
  fail "kvm-amd loaded without nested paging ($(dmesg | grep -m1 'Nested Paging' || echo 'no Nested Paging line'))"
# No udev here: the kernel's own name for the one virtio-net device is eth0.
wait_until 10 test -e /sys/class/net/eth0 ||
  fail "no network interface: virtio_net found no device (/sys/class/net: $(echo /sys/class/net/*))"
if ! ip link set eth0 up || ! ip addr add "$me/24" dev eth0; then
  fail "cannot give eth0 the address $me/24"
fi
"$minihv" cpuid host --json >"$run/cpuid.json" 2>"$run/cpuid.err" ||
  fail "minihv cpuid host --json failed: $(cat "$run/cpuid.err")"
"$minihv" cpuid host >"$run/cpuid.txt" 2>&1 || fail "minihv cpuid host failed: $(cat "$run/cpuid.txt")"
model=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)
echo "HW-PAIR: READY role=$role ip=$me cpu=\"$model\" kernel $(uname -r)," \
     "$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB," \
     "$(sed -n 's/^features (\([0-9]*\)).*/\1/p' "$run/cpuid.txt") CPU features from KVM"

if [ "$role" = b ]; then
  # Each connection runs one request (serve); A's "poweroff" ends the machine.
  nc -ll -p "$ctl_port" -e /etc/hw-pair/serve
  fail "the control server (nc on port $ctl_port) ended"
fi

# --- A: the scenario ---------------------------------------------------------------------------------
exec 3>/dev/ttyS1
# data NAME FILE: FILE on the data channel between markers, and a newline: the host takes exactly that
# one away, so a console cut in the middle of a line by the migration's pause reads as it was.
data() {
  { echo "=== BEGIN $1"; cat "$2" 2>/dev/null; echo; echo "=== END $1"; } >&3
}
datas() {  # datas FILE...: each of these files of $run on the data channel, under its own name
  local f
  for f; do data "$f" "$run/$f"; done
}
ask() {  # ask REQUEST...: B's reply to one request (at most 120 s)
  echo "$*" | timeout 120 nc "$peer" "$ctl_port"
}
profile_from_b() { ask profile >"$run/b.json" 2>/dev/null && grep -q '"leaves"' "$run/b.json"; }
# source N MODEL: the guest on this L1 (scenario N) with --cpu-model MODEL, up to heartbeat 3
source_vm() {
  spawn "s$1" "$minihv" run --kernel "$guest" --cmdline "$guest_cmdline" --mem "$guest_mem" \
    --cpus "$guest_cpus" --cpu-model "$2" --api "$run/s$1.sock" --console "$run/s$1.console"
  wait_until 60 seq_reached "$run/s$1.console" 3 ||
    note "the guest of scenario $1 has not reached heartbeat 3 after 60 s ($(state "s$1"))"
}
stop_source() {  # stop_source N: the source VM of scenario N stops if it still runs
  ended "s$1" || quiet "$minihv" vm stop --api "$run/s$1.sock"
  wait_until 20 ended "s$1" || note "the source VM of scenario $1 did not stop"
}
migrate() {  # migrate N: scenario N's guest to B's destination N, with --verify; JSON in mN.json
  step "scenario $1: minihv migrate --to $peer:$((mig_port + $1)) --verify --json"
  timeout 240 "$minihv" migrate --api "$run/s$1.sock" --to "$peer:$((mig_port + $1))" --verify --json \
    >"$run/m$1.json" 2>"$run/m$1.err"
  echo $? >"$run/m$1.rc"
  step "scenario $1: migrate exited $(cat "$run/m$1.rc")"
  datas "m$1.json" "m$1.err" "m$1.rc"
}

data cpuid-a-json "$run/cpuid.json"
data cpuid-a-text "$run/cpuid.txt"
step "network: waiting for B ($peer)"
wait_until 120 quiet ping -c 1 -W 1 "$peer" ||
  fail "network not up: $peer does not answer ping after 120 s (eth0 $(ip -o -4 addr show dev eth0 |
        awk '{ print $4 }'), link $(cat /sys/class/net/eth0/operstate))"
wait_until 60 profile_from_b ||
  fail "B's control server ($peer:$ctl_port) gave no CPU profile in 60 s: $(head -c 200 "$run/b.json")"
ask features >"$run/b.txt"
data cpuid-b-json "$run/b.json"
data cpuid-b-text "$run/b.txt"

step "cluster baseline of A's and B's profiles"
"$minihv" cpuid baseline "$run/cpuid.json" "$run/b.json" -o "$run/cluster.json" >"$run/baseline.out" 2>&1
echo $? >"$run/baseline.rc"
"$minihv" cpuid show --model "$run/cluster.json" >"$run/baseline.show" 2>&1 || true
datas baseline.rc baseline.out baseline.show cluster.json

# Scenario 1: the guest under the baseline model moves live from A to B and carries on there.
if [ "$(cat "$run/baseline.rc")" = 0 ]; then
  step "scenario 1: destination on B"
  ask dest 1 >"$run/d1.start"
  datas d1.start
  step "scenario 1: guest on A with --cpu-model cluster.json"
  source_vm 1 "$run/cluster.json"
  migrate 1
  wait_until 30 ended s1 || note "the source VM has not ended 30 s after the migration"
  datas s1.console s1.err s1.rc
  ask wait-hb 1 3 >"$run/d1.wait"
  step "scenario 1: B says: $(cat "$run/d1.wait")"
  ask console 1 >"$run/d1.console"
  ask stderr 1 >"$run/d1.err"
  datas d1.wait d1.console d1.err
  ask stop 1 >"$run/d1.stop"
  stop_source 1
  datas d1.stop
fi

# Scenario 2: the guest under --cpu-model host (all of A's CPU) cannot go to B: refused before any
# page moves, and it keeps running on A.
step "scenario 2: destination on B"
ask dest 2 >"$run/d2.start"
datas d2.start
step "scenario 2: guest on A with --cpu-model host"
source_vm 2 host
migrate 2
last_seq "$run/s2.console" >"$run/s2.after"
wait_until 20 seq_reached "$run/s2.console" $(($(cat "$run/s2.after") + 2)) ||
  note "no two new heartbeats on A within 20 s of the refusal"
last_seq "$run/s2.console" >"$run/s2.later"
"$minihv" vm status --json --api "$run/s2.sock" >"$run/s2.status" 2>&1 || true
datas s2.after s2.later s2.status
ask wait-exit 2 20 >"$run/d2.state"
ask stderr 2 >"$run/d2.err"
datas d2.state d2.err
ask stop 2 >/dev/null  # in case it still waits
stop_source 2
datas s2.console s2.err s2.rc

step "done"
ask poweroff >/dev/null || note "B did not take the poweroff request"
echo "HW-PAIR: DONE"
exec 3>&-
sync
sleep 1
poweroff -f

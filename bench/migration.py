#!/usr/bin/env python3
"""Live-migration benchmark: the same test guest ELF migrated by minihv and by QEMU 7.2 (Debian,
-M microvm, QMP), interleaved in one run on this machine. Results go to docs/benchmarks.md.

Cases (1 GiB of guest RAM, 2 vCPUs, the same downtime target for both tools):
  idle                       the guest sleeps on its 10 ms tick
  dirty mib=256              256 MiB rewritten and verified at full speed by both vCPUs
  dirty mib=64 rate=16       64 MiB working set, 16 MiB/s per vCPU = 32 MiB/s in all
  dirty mib=256 fill=text|random|zeros   as dirty256 with compressible, incompressible or
                             zero-heavy pages (docs/test-guest.md)
each over two links:
  lo     loopback inside a private network namespace (so its byte counters are ours alone)
  veth10g  a veth pair between them shaped to 10 Gbit/s (tbf, 2 MB burst);
  veth   a veth pair between two private namespaces, both ends shaped by tc tbf to 1 Gbit/s;
         the source runs in the first namespace, the destination in the second
and each with these configurations:
  minihv --streams 1|2|4|8 --compress none, --streams 1|4 --compress auto   (control socket),
         all plain TCP (--insecure), and --streams 4 --compress none over TLS 1.3 (a key file made
         for the run): the TLS table compares the two 4-stream rows of the same run
  QEMU   multifd off | multifd on, 2, 4 or 8 channels (QMP: migrate-set-capabilities/-parameters,
                                                    migrate, query-migrate polled every 20 ms)
Runs are interleaved (every configuration of every case once, then again, ...) and the tables
show medians. The raw TCP bandwidth of both links is measured in the same run (a Python
sender/receiver pair), once per repetition.

Per run: total time and downtime as the tool reports them; the downtime as the guest saw it
(the first STALL line of each vCPU on the destination's console: the gap in the guest's own TSC
across the switchover; the guest runs with stall_ms=20, so "<20" means no STALL line); bytes on
the wire as the tool reports them and as the link's interface counters saw them (all IP bytes
both ways, headers and ACKs included); rounds (minihv: rounds, QEMU: ram.dirty-sync-count);
throughput as the tool reports it (minihv throughput_mbps, QEMU ram.mbps); and CPU seconds per GiB
on the wire of each side's VMM process without its vCPU threads (/proc/PID/task/*/stat: the
migration's own work, which on a 2-core host competes with the guest's vCPUs). Every run starts
with warm host memory (warm_host_memory: this cloud VM's host takes back free memory).

It also draws docs/migration-rounds.svg (gnuplot): bytes remaining and dirty rate per round in
the `dirty mib=256` loopback case, from minihv's progress lines and QEMU's query-migrate.

The namespaces (mhvb-a, mhvb-b), the veth pair (mhvb-va/mhvb-vb, 10.199.0.1/30 and 10.199.0.2/30,
inside the namespaces only) and the qdiscs are created at start and deleted at exit.
Needs root, /dev/kvm, qemu-system-x86 and gnuplot-nox (scripts/bootstrap installs them).

Usage: bench/migration.py [--runs N] [--build DIR] [--cases idle,dirty256,dirty64]
                          [--links lo,veth] [--svg PATH] [--raw PATH]
"""
import argparse
import atexit
import ctypes
import json
import mmap
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from benchlib import (QMP, Procs, check_guest, guest_downtime, in_ns, machine_line, med, qemu_cmd, read,
                      resumed, sh, snapshot_binaries, tree_head, wait_for, warmed_up)

NS_A, NS_B = "mhvb-a", "mhvb-b"
VETH_A, VETH_B = "mhvb-va", "mhvb-vb"
ADDR_A, ADDR_B = "10.199.0.1", "10.199.0.2"
# A second pair between the same namespaces, shaped to 10 Gbit/s.
VETH10_A, VETH10_B = "mhvb-wa", "mhvb-wb"
ADDR10_A, ADDR10_B = "10.199.0.5", "10.199.0.6"
# (device in the first namespace, in the second, their addresses, tbf rate, tbf burst): the burst
# must hold a 64 KiB GSO segment, and at 10 Gbit/s about a millisecond of traffic.
VETH_PAIRS = {"veth": (VETH_A, VETH_B, ADDR_A, ADDR_B, "1gbit", "256kb"),
              "veth10g": (VETH10_A, VETH10_B, ADDR10_A, ADDR10_B, "10gbit", "2mb")}
MEM, CPUS, DOWNTIME_MS, STALL_MS = "1G", 2, 300, 20
MAX_S = 60  # give up on a migration after this long (neither tool should need it)

CASES = {
    "idle": "idle",
    "dirty256": "dirty mib=256",
    "dirty64": "dirty mib=64 rate=16",
    "text256": "dirty mib=256 fill=text",      # pages lz4 compresses ~50:1
    "random256": "dirty mib=256 fill=random",  # incompressible pages
    "zeros256": "dirty mib=256 fill=zeros",    # three pages in four zero
}
LINKS = {  # name: (namespace of the source, namespace of the destination, destination address)
    "lo": (NS_A, NS_A, "127.0.0.1"),
    "veth": (NS_A, NS_B, ADDR_B),
    "veth10g": (NS_A, NS_B, ADDR10_B),
}
CONFIGS = [  # (tool, label, options)
    ("minihv", "minihv s1 none", {"streams": 1, "compress": "none"}),
    ("minihv", "minihv s2 none", {"streams": 2, "compress": "none"}),
    ("minihv", "minihv s4 none", {"streams": 4, "compress": "none"}),
    ("minihv", "minihv s8 none", {"streams": 8, "compress": "none"}),
    ("minihv", "minihv s1 auto", {"streams": 1, "compress": "auto"}),
    ("minihv", "minihv s4 auto", {"streams": 4, "compress": "auto"}),
    # The same as "minihv s4 none" over TLS 1.3 (the other minihv rows run --insecure: plain TCP).
    ("minihv", "minihv s4 none tls", {"streams": 4, "compress": "none", "tls": True}),
    ("qemu", "QEMU multifd off", {"multifd": 0}),
    ("qemu", "QEMU multifd 2", {"multifd": 2}),
    ("qemu", "QEMU multifd 4", {"multifd": 4}),
    ("qemu", "QEMU multifd 8", {"multifd": 8}),
]
# On the 1 Gbit/s link both tools are link-bound, streams change little and the dirty case takes
# 20-40 s per run: fewer configurations there keep the whole benchmark near 15 minutes.
VETH_CONFIGS = {"minihv s1 none", "minihv s4 none", "minihv s4 auto", "QEMU multifd off", "QEMU multifd 4"}
# The QEMU run a minihv run is compared to: the same number of channels.
QEMU_FOR = {1: "QEMU multifd off", 2: "QEMU multifd 2", 4: "QEMU multifd 4", 8: "QEMU multifd 8"}

# ---------------------------------------------------------------- network namespaces

def netns_down():
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "del", ns, check=False)  # takes the veth pair and its qdiscs with it


def netns_up():
    netns_down()
    sh("ip", "netns", "add", NS_A)
    sh("ip", "netns", "add", NS_B)
    sh("ip", "-n", NS_A, "link", "set", "lo", "up")
    sh("ip", "-n", NS_B, "link", "set", "lo", "up")
    for dev_a, dev_b, addr_a, addr_b, rate, burst in VETH_PAIRS.values():
        # Created inside NS_A and moved: the pair never exists in the caller's namespace.
        sh("ip", "-n", NS_A, "link", "add", dev_a, "type", "veth", "peer", "name", dev_b)
        sh("ip", "-n", NS_A, "link", "set", dev_b, "netns", NS_B)
        for ns, dev, addr in ((NS_A, dev_a, addr_a), (NS_B, dev_b, addr_b)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
               "rate", rate, "burst", burst, "latency", "20ms")


def wire_bytes(link):
    """All bytes transmitted on the link's interfaces (both directions), from the counters."""
    devs = [(NS_A, "lo")] if link == "lo" else [(NS_A, VETH_PAIRS[link][0]), (NS_B, VETH_PAIRS[link][1])]
    total = 0
    for ns, dev in devs:
        info = json.loads(sh("ip", "-n", ns, "-s", "-j", "link", "show", dev))
        total += info[0]["stats64"]["tx"]["bytes"]
    return total


# ---------------------------------------------------------------- raw TCP bandwidth

RECEIVER = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); buf = bytearray(1 << 20); n = 0; t0 = None
while True:
    k = c.recv_into(buf)
    if not k: break
    if t0 is None: t0 = time.monotonic()
    n += k
print(n, time.monotonic() - t0, flush=True)
"""


def busy_tcp_bandwidth(a, d, port, nbytes):
    """Loopback TCP bandwidth while a `dirty mib=256` guest (minihv, 2 vCPUs) spins on both cores,
    i.e. with the CPU contention a migration of that guest sees."""
    procs = Procs()
    con = f"{d}/busy.con"
    if os.path.exists(con):
        os.unlink(con)
    try:
        procs.start(in_ns(NS_A, [a.minihv, "run", "--kernel", a.elf, "--cmdline", "dirty mib=256", "--mem", MEM,
                                 "--cpus", str(CPUS), "--console", con]), f"{d}/busy.log")
        wait_for(warmed_up(con), 30, "the busy guest's heartbeats")
        return tcp_bandwidth("lo", port, nbytes)
    finally:
        procs.stop()


def tcp_bandwidth(link, port, nbytes):
    """Moves nbytes of random data over one TCP connection; returns Mbit/s seen by the receiver."""
    src_ns, dst_ns, addr = LINKS[link]
    rx = subprocess.Popen(in_ns(dst_ns, [sys.executable, "-c", RECEIVER, addr, str(port)]),
                          stdout=subprocess.PIPE, text=True)
    assert rx.stdout.readline().strip() == "ready"
    sender = (
        "import socket, sys, os\n"
        "b = memoryview(os.urandom(1 << 22)); n = int(sys.argv[3])\n"
        "s = socket.create_connection((sys.argv[1], int(sys.argv[2])))\n"
        "while n > 0:\n"
        "    k = min(n, len(b)); s.sendall(b[:k]); n -= k\n"
        "s.close()\n")
    subprocess.run(in_ns(src_ns, [sys.executable, "-c", sender, addr, str(port), str(nbytes)]), check=True)
    n, secs = rx.stdout.readline().split()
    rx.wait()
    return int(n) * 8 / float(secs) / 1e6


# ---------------------------------------------------------------- minihv

# vCPU threads: minihv names them vcpuN, QEMU "CPU N/KVM". Their time is the guest's, not the
# migration's, and is left out of the CPU cost.
VCPU_THREAD = re.compile(r"^(vcpu\d+|CPU \d+/KVM)$")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def vmm_cpu_seconds(pid):
    """User + system CPU seconds of every thread of process `pid` but its vCPUs (0 once it is gone,
    so read it while the process lives)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        try:
            comm = read(f"/proc/{pid}/task/{tid}/comm").strip()
            stat = read(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue  # the thread ended meanwhile
        if ")" not in stat or VCPU_THREAD.match(comm):
            continue  # ended meanwhile (read() gives "" for a file that is gone), or a vCPU
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state is fields[0]
        total += int(fields[11]) + int(fields[12])     # utime, stime (fields 14 and 15 of stat)
    return total / CLOCK_TICKS


class CpuMeter:
    """CPU seconds spent by the source's and the destination's VMM (not their vCPUs) between
    start() and stop(). A process may end before stop() (minihv's source exits once the VM runs
    elsewhere): each sample() keeps the last reading taken while it lived, so call it often (on
    every progress line); what a source spends between its last sample and its exit is lost."""

    def __init__(self, src_pid, dst_pid):
        self.pids = (src_pid, dst_pid)

    def start(self):
        self.t0 = [vmm_cpu_seconds(p) for p in self.pids]
        self.last = list(self.t0)

    def sample(self):
        for i, p in enumerate(self.pids):
            self.last[i] = max(self.last[i], vmm_cpu_seconds(p))

    def stop(self):
        self.sample()
        return [b - a for a, b in zip(self.t0, self.last)]


# Touched and freed right before every migration, by both tools' runs (warm_host_memory).
WARM_BYTES = 2 << 30


def warm_host_memory():
    """Touches and frees WARM_BYTES of huge-page memory just before a migration starts.

    This machine is a cloud VM whose host takes back free memory (virtio-balloon free page
    reporting): memory freed more than ~3 s ago costs ~2.3 ms per 2 MiB huge page to touch again
    (256 MiB: 300-740 ms cold, 23-44 ms warm, measured here). A destination's first writes into
    its guest RAM would be measured warm or cold depending on which process happened to free
    memory shortly before, not on the tool. Every run of both tools starts warm.
    """
    m = mmap.mmap(-1, WARM_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.madvise(mmap.MADV_HUGEPAGE)
    view = ctypes.c_char.from_buffer(m)
    ctypes.memset(ctypes.addressof(view), 1, WARM_BYTES)
    del view  # the mapping cannot close while a ctypes view holds it
    m.close()


def run_minihv(a, d, link, cmdline, opts, port, rounds_out=None):
    src_ns, dst_ns, addr = LINKS[link]
    procs = Procs()
    asock, bsock, acon, bcon = (f"{d}/{x}" for x in ("a.sock", "b.sock", "a.con", "b.con"))
    for f in (asock, bsock, acon, bcon):
        if os.path.exists(f):
            os.unlink(f)
    vm = ["--mem", MEM, "--cpus", str(CPUS)]
    tls = ["--tls-psk", a.key_file] if opts.get("tls") else ["--insecure"]
    try:
        dst = procs.start(in_ns(dst_ns, [a.minihv, "run", *vm, "--api", bsock, "--console", bcon,
                                         "--incoming", f"{addr}:{port}", *tls]), f"{d}/b.log")
        src = procs.start(in_ns(src_ns, [a.minihv, "run", "--kernel", a.elf, "--cmdline", cmdline, *vm,
                                         "--api", asock, "--console", acon]), f"{d}/a.log")
        wait_for(warmed_up(acon), 30, "the source guest's heartbeats")
        # (the destination's control socket appears only once the VM has arrived; it listens at once)
        s = socket.socket(socket.AF_UNIX)
        s.connect(asock)
        req = {"cmd": "migrate", "to": f"{addr}:{port}", "streams": opts["streams"], "compress": opts["compress"],
               "downtime_ms": DOWNTIME_MS, "max_time_s": MAX_S}
        if opts.get("tls"):
            req["psk"] = a.key_hex  # what `minihv migrate --tls-psk FILE` sends the VM
        else:
            req["insecure"] = True
        warm_host_memory()
        cpu = CpuMeter(src.pid, dst.pid)  # `ip netns exec` execs the VMM: same pid
        cpu.start()
        w0 = wire_bytes(link)
        t0 = time.monotonic()
        s.sendall((json.dumps(req) + "\n").encode())
        summary = None
        for line in s.makefile():
            r = json.loads(line)
            cpu.sample()
            if r.get("progress"):
                if rounds_out is not None and "round" in r:
                    rounds_out.append({"t": time.monotonic() - t0, "round": r["round"],
                                       "remaining": r["remaining_bytes"],
                                       "dirty_rate": r["dirty_rate_mbps"] * 1e6 / 8})
                continue
            summary = r
            break
        cpu_s = cpu.stop()
        wall = time.monotonic() - t0
        w1 = wire_bytes(link)
        s.close()
        if not summary or summary.get("result") != "ok":
            raise RuntimeError(f"minihv migration failed: {summary} {read(d + '/a.log')[-500:]}")
        wait_for(resumed(bcon, CPUS), 10, "heartbeats on the destination")
        src.wait(10)
        check_guest(bcon, "minihv destination")
        return {"total_ms": summary["total_ms"], "downtime_ms": summary["downtime_ms"],
                "guest_ms": guest_downtime(bcon), "bytes": summary["bytes_sent"], "wire": w1 - w0,
                "rounds": summary["rounds"], "mbps": summary["throughput_mbps"], "wall_ms": wall * 1000,
                "pages": summary["pages"], "throttle": summary.get("throttle_percent", 0),
                "tls": summary.get("tls", ""), "handshake_ms": summary.get("handshake_ms", 0),
                "cpu_src_s": cpu_s[0], "cpu_dst_s": cpu_s[1]}
    finally:
        procs.stop()


# ---------------------------------------------------------------- QEMU

def run_qemu(a, d, link, cmdline, opts, port, rounds_out=None):
    src_ns, dst_ns, addr = LINKS[link]
    procs = Procs()
    asock, bsock, acon, bcon = (f"{d}/{x}" for x in ("qa.sock", "qb.sock", "qa.con", "qb.con"))
    for f in (asock, bsock, acon, bcon):
        if os.path.exists(f):
            os.unlink(f)
    A = B = None
    try:
        qdst = procs.start(in_ns(dst_ns, qemu_cmd(a.elf, cmdline, bcon, bsock, MEM, CPUS, incoming=True)), f"{d}/qb.log")
        qsrc = procs.start(in_ns(src_ns, qemu_cmd(a.elf, cmdline, acon, asock, MEM, CPUS)), f"{d}/qa.log")
        A, B = QMP(asock), QMP(bsock)
        multifd = opts["multifd"] > 0
        for q in (A, B):
            # auto-converge: QEMU's counterpart of minihv's vCPU throttle (without it a guest dirtying
            # faster than the link never converges); zero pages are always detected, xbzrle stays off
            # (it would be compression, and this compares against minihv's none/auto instead).
            q.cmd("migrate-set-capabilities", capabilities=[{"capability": "multifd", "state": multifd},
                                                            {"capability": "auto-converge", "state": True}])
            if multifd:
                q.cmd("migrate-set-parameters", **{"multifd-channels": opts["multifd"]})
        A.cmd("migrate-set-parameters", **{"downtime-limit": DOWNTIME_MS, "max-bandwidth": 1 << 40})
        B.cmd("migrate-incoming", uri=f"tcp:{addr}:{port}")
        wait_for(warmed_up(acon), 30, "the source guest's heartbeats")
        warm_host_memory()
        cpu = CpuMeter(qsrc.pid, qdst.pid)
        cpu.start()
        w0 = wire_bytes(link)
        t0 = time.monotonic()
        A.cmd("migrate", uri=f"tcp:{addr}:{port}")
        while True:
            r = A.cmd("query-migrate")
            cpu.sample()
            st = r.get("status")
            if rounds_out is not None and "ram" in r:
                rounds_out.append({"t": time.monotonic() - t0, "round": r["ram"]["dirty-sync-count"],
                                   "remaining": r["ram"]["remaining"],
                                   "qemu_rate": r["ram"]["dirty-pages-rate"] * r["ram"]["page-size"]})
            if st in ("completed", "failed", "cancelled"):
                break
            if time.monotonic() - t0 > MAX_S:
                A.cmd("migrate_cancel")
                raise RuntimeError("QEMU migration did not converge")
            time.sleep(0.02)
        cpu_s = cpu.stop()
        wall = time.monotonic() - t0
        w1 = wire_bytes(link)
        if st != "completed":
            raise RuntimeError(f"QEMU migration {st}: {r}")
        wait_for(resumed(bcon, CPUS), 10, "heartbeats on the destination")
        check_guest(bcon, "QEMU destination")
        ram = r["ram"]
        return {"total_ms": r["total-time"], "downtime_ms": r["downtime"], "guest_ms": guest_downtime(bcon),
                "bytes": ram["transferred"], "wire": w1 - w0, "rounds": ram["dirty-sync-count"],
                "mbps": ram["mbps"], "wall_ms": wall * 1000, "setup_ms": r.get("setup-time"),
                "cpu_src_s": cpu_s[0], "cpu_dst_s": cpu_s[1]}
    finally:
        for q in (A, B):
            if q:
                try:
                    q.cmd("quit")
                except Exception:
                    pass
                q.close()
        procs.stop()


# ---------------------------------------------------------------- plot

def qemu_rounds(samples):
    """Per dirty-sync round: remaining right after the sync, and the dirty rate estimated from the
    jump of ram.remaining at the sync over the time since the previous sync (bytes/s)."""
    out, prev_t, prev_remaining, last = [], samples[0]["t"] if samples else 0, None, None
    for s in samples:
        if last is not None and s["round"] != last["round"]:
            jump = max(0, s["remaining"] - last["remaining"])
            dt = max(1e-3, s["t"] - prev_t)
            out.append({"round": s["round"] - 1, "remaining": s["remaining"], "dirty_rate": jump / dt})
            prev_t = s["t"]
        elif last is None:
            out.append({"round": 0, "remaining": s["remaining"], "dirty_rate": 0})
        last = s
    if len(out) > 1 and out[-1]["remaining"] == 0:
        out.pop()  # the sample at "completed": the final sync happened inside the downtime, unseen
    # QEMU counts the first (bitmap-initialising) sync as 1 and the full pass as round 0 here;
    # minihv's progress line "round N" is the harvest after N passes. Number both from 1.
    for i, r in enumerate(out):
        r["round"] = i + 1
    return out


def plot(series, svg):
    """series: {label: [{"round", "remaining", "dirty_rate"}]} -> SVG with two panels."""
    if not shutil.which("gnuplot"):
        print("gnuplot not found: no SVG", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as d:
        plots_rem, plots_rate = [], []
        for i, (label, rows) in enumerate(series.items()):
            path = f"{d}/s{i}.dat"
            with open(path, "w") as f:
                for r in rows:
                    f.write(f"{r['round']} {r['remaining'] / 2**20:.2f} {r['dirty_rate'] / 2**20:.2f}\n")
            plots_rem.append(f"'{path}' using 1:2 with linespoints lw 2 title '{label}'")
            plots_rate.append(f"'{path}' using 1:3 with linespoints lw 2 title '{label}'")
        script = f"""
set terminal svg size 900,700 dynamic enhanced font 'sans,12' background rgb 'white'
set output '{svg}'
set multiplot layout 2,1 title 'Live migration, dirty mib=256 (2 vCPUs, 1 GiB), loopback: per round (median-total run of each)'
set grid
set key top right
set xlabel 'round (dirty-bitmap harvest / sync)'
set ylabel 'remaining (MiB)'
set xtics 1
plot {', '.join(plots_rem)}
set ylabel 'dirty rate (MiB/s)'
plot {', '.join(plots_rate)}
unset multiplot
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=True)


# ---------------------------------------------------------------- main

def fmt(x, nd=0):
    if x is None:
        return f"<{STALL_MS}"
    return f"{x:.{nd}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--build", default="build")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--links", default=",".join(LINKS))
    ap.add_argument("--configs", default="", help="comma-separated labels (default: all)")
    ap.add_argument("--svg", default="docs/migration-rounds.svg")
    ap.add_argument("--raw", default="", help="write every run's numbers as JSON here")
    ap.add_argument("--bw-bytes", type=int, default=2 << 30, help="bytes moved by the loopback TCP measurement")
    ap.add_argument("--replot", default="", help="only redraw the SVG from a --raw file")
    a = ap.parse_args()
    if a.replot:
        with open(a.replot) as f:
            draw(json.load(f)["rounds"], a.svg)
        return
    a.minihv, a.elf, snap, built = snapshot_binaries(a.build, "mhvb-bin-")
    # The TLS rows' key file (common/keys.h's format: 64 hex digits, mode 0600).
    a.key_hex = os.urandom(32).hex()
    a.key_file = f"{snap}/migration.key"
    with os.fdopen(os.open(a.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(a.key_hex + "\n")
    head = tree_head()
    cases = a.cases.split(",")
    links = a.links.split(",")
    configs = [c for c in CONFIGS if not a.configs or c[1] in a.configs.split(",")]
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, tc)")

    atexit.register(netns_down)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    netns_up()
    port = 47100
    results = {}  # (case, link, label) -> [run dicts]
    bw = {l: [] for l in links}
    if "lo" in links:
        bw["lo, dirty guest running"] = []
    rounds = {}  # label -> [(total_ms, rows)] for dirty256/lo
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mhvb-") as d:
        for rep in range(a.runs):
            for link in links:
                port += 1
                nbytes = {"lo": a.bw_bytes, "veth10g": a.bw_bytes // 2}.get(link, a.bw_bytes // 8)
                bw[link].append(tcp_bandwidth(link, port, nbytes))
                print(f"[{time.monotonic() - t_start:5.0f}s] rep {rep + 1} TCP {link}: {bw[link][-1]:.0f} Mbit/s",
                      file=sys.stderr, flush=True)
            if "lo" in links:
                port += 1
                bw["lo, dirty guest running"].append(busy_tcp_bandwidth(a, d, port, a.bw_bytes // 2))
                print(f"[{time.monotonic() - t_start:5.0f}s] rep {rep + 1} TCP lo with a dirty guest running: "
                      f"{bw['lo, dirty guest running'][-1]:.0f} Mbit/s", file=sys.stderr, flush=True)
            for case in cases:
                for link in links:
                    for tool, label, opts in configs:
                        if link.startswith("veth") and label not in VETH_CONFIGS:
                            continue
                        port += 1
                        rows = [] if (case == "dirty256" and link == "lo") else None
                        fn = run_minihv if tool == "minihv" else run_qemu
                        try:
                            r = fn(a, d, link, f"{CASES[case]} stall_ms={STALL_MS}", opts, port, rows)
                        except Exception as e:
                            print(f"  {case} {link} {label}: FAILED: {e}", file=sys.stderr, flush=True)
                            r = None
                        results.setdefault((case, link, label), []).append(r)
                        if r and rows is not None:
                            rounds.setdefault(label, []).append((r["total_ms"], rows))
                        if r:
                            print(f"[{time.monotonic() - t_start:5.0f}s] rep {rep + 1} {case:8} {link:4} {label:17} "
                                  f"total {r['total_ms']:6.0f} ms  down {r['downtime_ms']:4.0f}/{fmt(r['guest_ms'])} ms  "
                                  f"{r['bytes'] / 1e6:7.1f} MB (wire {r['wire'] / 1e6:7.1f})  rounds {r['rounds']:3}  "
                                  f"{r['mbps']:6.0f} Mbit/s", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - t_start

    if a.raw:
        with open(a.raw, "w") as f:
            json.dump({"bw": bw, "results": {"|".join(k): v for k, v in results.items()},
                       "rounds": rounds}, f, indent=1)

    # ---- tables
    print(machine_line(a.runs, elapsed, built, head) + "\n")
    for link, v in bw.items():
        print(f"raw TCP bandwidth, {link} (one Python stream): median {med(v):.0f} Mbit/s "
              f"({min(v):.0f}-{max(v):.0f})")
    print()
    print("| case | link | configuration | total ms | downtime ms (tool) | downtime ms (guest) | MB sent (tool) | "
          "MB on the wire | rounds | Mbit/s (tool) | ok runs | total / QEMU | downtime / QEMU (tool) | "
          "downtime / QEMU (guest) | wire bytes / QEMU | CPU s/GiB src | CPU s/GiB dst |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    med_of = {}
    for case in cases:
        for link in links:
            for tool, label, opts in configs:
                if (case, link, label) not in results:
                    continue
                runs = [r for r in results.get((case, link, label), []) if r]
                n_all = len(results.get((case, link, label), []))
                if not runs:
                    print(f"| {CASES[case]} | {link} | {label} | failed | | | | | | | 0/{n_all} | | | | | | |")
                    continue
                m = {k: med([r[k] for r in runs]) for k in ("total_ms", "downtime_ms", "guest_ms", "bytes", "wire",
                                                            "rounds", "mbps")}
                # CPU seconds of each side's VMM (vCPUs left out) per GiB that crossed the link
                per_gib = {side: med([r[f"cpu_{side}_s"] / max(r["wire"], 1) * 2**30 for r in runs])
                           for side in ("src", "dst")}
                med_of[(case, link, label)] = m
                ratio = ["", "", "", ""]
                if tool == "minihv":
                    q = med_of.get((case, link, QEMU_FOR[opts["streams"]]))
                    if q is None:  # QEMU rows come after minihv rows in CONFIGS: compute them now
                        qr = [r for r in results.get((case, link, QEMU_FOR[opts["streams"]]), []) if r]
                        if qr:
                            q = {k: med([r[k] for r in qr]) for k in m}
                    if q:
                        ratio[0] = f"{m['total_ms'] / q['total_ms']:.2f}"
                        ratio[1] = f"{m['downtime_ms'] / q['downtime_ms']:.2f}" if q["downtime_ms"] else "-"
                        mg, qg = m["guest_ms"], q["guest_ms"]
                        if mg and qg:
                            ratio[2] = f"{mg / qg:.2f}"
                        elif qg:
                            ratio[2] = f"<{STALL_MS / qg:.2f}"
                        elif mg:
                            ratio[2] = f">{mg / STALL_MS:.2f}"
                        else:
                            ratio[2] = "both <20 ms"
                        ratio[3] = f"{m['wire'] / q['wire']:.2f}"
                print(f"| {CASES[case]} | {link} | {label} | {m['total_ms']:.0f} | {m['downtime_ms']:.0f} | "
                      f"{fmt(m['guest_ms'])} | {m['bytes'] / 1e6:.1f} | {m['wire'] / 1e6:.1f} | {m['rounds']:.0f} | "
                      f"{m['mbps']:.0f} | {len(runs)}/{n_all} | {' | '.join(ratio)} | "
                      f"{per_gib['src']:.2f} | {per_gib['dst']:.2f} |")
    if "dirty256" in cases and "lo" in links:
        print()
        lo_bw = med(bw["lo"])
        for label in ("minihv s1 none", "minihv s4 none"):
            m = med_of.get(("dirty256", "lo", label))
            if m:
                runs = [r for r in results[("dirty256", "lo", label)] if r]
                eff = med([r["wire"] * 8 / r["total_ms"] / 1e3 for r in runs])
                busy = med(bw["lo, dirty guest running"])
                print(f"{label}, dirty mib=256 on loopback (pages sent raw): {m['mbps']:.0f} Mbit/s as minihv reports it "
                      f"= {100 * m['mbps'] / lo_bw:.0f}% of loopback TCP ({lo_bw:.0f} Mbit/s), "
                      f"{100 * m['mbps'] / busy:.0f}% of loopback TCP with the guest running ({busy:.0f} Mbit/s); "
                      f"wire bytes / total time {eff:.0f} Mbit/s")

    tls_table(cases, links, results)

    for link in links:
        if not link.startswith("veth") or not bw[link]:
            continue
        for label in sorted(VETH_CONFIGS):
            runs = [r for r in results.get(("dirty256", link, label), []) if r and r["total_ms"]]
            if runs:
                eff = med([r["wire"] * 8 / r["total_ms"] / 1e3 for r in runs])
                print(f"{label}, dirty mib=256 on {link}: wire bytes / total time {eff:.0f} Mbit/s = "
                      f"{100 * eff / med(bw[link]):.0f}% of TCP on that link ({med(bw[link]):.0f} Mbit/s)")

    if a.svg:
        draw(rounds, a.svg)


def tls_table(cases, links, results):
    """TLS vs plain TCP, 4 streams uncompressed, the same runs (interleaved)."""
    plain, tls = "minihv s4 none", "minihv s4 none tls"
    rows = []
    for case in cases:
        for link in links:
            p = [r for r in results.get((case, link, plain), []) if r]
            t = [r for r in results.get((case, link, tls), []) if r]
            if p and t:
                rows.append((case, link, p, t))
    if not rows:
        return
    print()
    print("| case | link | Mbit/s plain | Mbit/s TLS | TLS / plain | total ms plain | total ms TLS | "
          "downtime ms plain | downtime ms TLS | handshake ms (4 streams) | TLS used |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for case, link, p, t in rows:
        mp, mt = med([r["mbps"] for r in p]), med([r["mbps"] for r in t])
        print(f"| {CASES[case]} | {link} | {mp:.0f} | {mt:.0f} | {mt / mp:.2f} | {med([r['total_ms'] for r in p]):.0f} | "
              f"{med([r['total_ms'] for r in t]):.0f} | {med([r['downtime_ms'] for r in p]):.0f} | "
              f"{med([r['downtime_ms'] for r in t]):.0f} | {med([r['handshake_ms'] for r in t]):.1f} "
              f"({min(r['handshake_ms'] for r in t):.1f}-{max(r['handshake_ms'] for r in t):.1f}) | {t[0]['tls']} |")


def draw(rounds, svg):
    """The run with the median total time of each chosen configuration, dirty256 on loopback."""
    pick = {}
    for label, title in (("minihv s1 none", "minihv, 1 stream, no compression"),
                         ("minihv s4 auto", "minihv, 4 streams, compress auto"),
                         ("QEMU multifd off", "QEMU, multifd off"), ("QEMU multifd 4", "QEMU, multifd 4 channels")):
        if rounds.get(label):
            runs = sorted(rounds[label], key=lambda x: x[0])
            rows = runs[len(runs) // 2][1]
            if label.startswith("QEMU"):
                pick[title] = qemu_rounds(rows)
            else:  # the full pass is round 1 (1 GiB remaining); minihv's "round N" line follows pass N
                pick[title] = [{"round": 1, "remaining": 1 << 30, "dirty_rate": 0}] + [
                    dict(r, round=r["round"] + 1) for r in rows]
    if pick:
        plot(pick, os.path.abspath(svg))
        print(f"\nplot: {svg}")


if __name__ == "__main__":
    main()

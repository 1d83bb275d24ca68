#!/usr/bin/env python3
"""Guest network benchmark: the test guest's `net` workload (a polling virtio-net driver and a tiny
IPv4 stack answering TCP echo on port 7, docs/test-guest.md) under minihv's virtio-net and under
QEMU 7.2's (-M microvm, virtio-net-device on a tap, vhost off), the same ELF on the same LAN,
interleaved (minihv, QEMU, minihv, QEMU, ...). Results go to docs/benchmarks.md.

The LAN (tests/harness/guest_lan's layout, in 10.198.200.0/24): a hub namespace (mnb-hub) with a
bridge and the client's address .1; hosts A and B (mnb-a, mnb-b), each a namespace with a bridge
of its own joined to the hub's by a veth and the host's address (.100, .101); a persistent tap on
each host's bridge (mnb-t0 on A, mnb-t1 on B); the guest is .10 (MAC 52:54:00:6d:68:01), 64 MiB,
1 vCPU, `net ip=10.198.200.10/24 stall_ms=20`. Migrations go over the same LAN, host to host.
Everything is created at start and deleted at exit (atexit, SIGTERM, SIGINT, SIGHUP); nothing
outside these namespaces is touched.

Per repetition and tool, one guest booted on host A:
  1. throughput: the client sends --bulk-mb MB of a pseudo-random pattern to the echo port over
     one connection while reading the echo back, every byte checked; MB/s of echoed data, from
     the first byte sent to the last byte back;
  2. latency: --rtt-count sequential 64-byte request/echo round trips on one connection (after
     100 not counted): median and p99 µs;
  3. live migration: the client (tests/harness/echo_probe's TCP probe) keeps one connection to
     port 7, a numbered 9-byte message every 1 ms, every echoed byte checked in order; the guest
     moves A -> B -> A ... --moves times. Per move: the largest gap between echo arrivals from just
     before the migration starts until 300 more messages came back, the tool's own downtime and
     total time, and the guest-seen downtime (the first STALL line on the destination's console:
     the jump of the guest's TSC across the switchover; "<20" = no STALL line), and the largest
     STALL on either side while the window was open (one larger than the switchover's is the host
     descheduling the guest's vCPU: noise, not the move). At the end:
     whether the connection survived (no reset, every byte in order, every message echoed).
     minihv: `minihv run --incoming HOST:PORT --insecure --net tap=T` on the destination,
     `minihv migrate --api SOCK --to HOST:PORT --insecure --json` (the destination announces the
     guest with RARP); QEMU: `-incoming defer` + QMP migrate-incoming on the destination, migrate
     on the source (its default self-announce: RARP), the source quit once it completed. Both with
     a 300 ms downtime target (both tools' default).
The clients run in the hub namespace (bench/netclient.py under `ip netns exec`).

Needs root, /dev/kvm, qemu-system-x86. Uses build/minihv and build/guest/testguest.elf (copied at
start: a rebuild meanwhile does not change the run).

Usage: bench/netbench.py [--runs N] [--moves M] [--build DIR] [--out RAW.json] [--doc PATH]
                         [--bulk-mb MB] [--rtt-count N] [--tools minihv,qemu] [--stall-ms MS]
"""
import argparse
import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import re
import time

from benchlib import (QMP, STALL, Procs, check_guest, guest_downtime, in_ns, machine_line, med, qemu_cmd, read, resumed,
                      sh, snapshot_binaries, tree_head, wait_for, warmed_up)

HUB = "mnb-hub"
HOSTS = ["mnb-a", "mnb-b"]
TAPS = ["mnb-t0", "mnb-t1"]      # one per host, on its bridge
BRIDGE, UPLINK = "lan", "up0"    # in every namespace; a host's end of its veth to the hub
LAN = "10.198.200"
CLIENT = f"{LAN}.1"
HOST_ADDR = [f"{LAN}.100", f"{LAN}.101"]
GUEST = f"{LAN}.10"
MAC = "52:54:00:6d:68:01"
MEM, CPUS, DOWNTIME_MS = "64M", 1, 300
STALL_MS = 20           # --stall-ms: the guest's STALL threshold, the resolution of its downtime
ECHO_PORT = 7
PERIOD_US = 1000
AFTER_MOVE = 300        # echoes that must come back on the destination before a move counts
MAX_S = 60
TOOLS = ("minihv", "qemu")
NAMES = {"minihv": "minihv", "qemu": "QEMU"}
HEADING = "## Guest network (virtio-net)"
HB_NET = re.compile(r"drops=(\d+) rexmit=(\d+)")
CLIENT_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netclient.py")


def log(msg):
    print(f"[{time.monotonic() - T0:5.0f}s] {msg}", file=sys.stderr, flush=True)


T0 = time.monotonic()


# ---------------------------------------------------------------- the LAN

def lan_down():
    for ns in (*HOSTS, HUB):
        sh("ip", "netns", "del", ns, check=False)  # takes the veths, bridges and taps with it


def lan_up():
    lan_down()
    sh("ip", "netns", "add", HUB)
    sh("ip", "-n", HUB, "link", "set", "lo", "up")
    sh("ip", "-n", HUB, "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "-n", HUB, "link", "set", BRIDGE, "up")
    sh("ip", "-n", HUB, "addr", "add", f"{CLIENT}/24", "dev", BRIDGE)
    for i, ns in enumerate(HOSTS):
        hub_end = f"h{i}"
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        # Made in the hub with its peer put straight into the host: never in the caller's namespace.
        sh("ip", "-n", HUB, "link", "add", hub_end, "type", "veth", "peer", "name", UPLINK, "netns", ns)
        sh("ip", "-n", HUB, "link", "set", hub_end, "master", BRIDGE, "up")
        sh("ip", "-n", ns, "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "-n", ns, "link", "set", UPLINK, "master", BRIDGE, "up")
        sh("ip", "-n", ns, "link", "set", BRIDGE, "up")
        sh("ip", "-n", ns, "addr", "add", f"{HOST_ADDR[i]}/24", "dev", BRIDGE)
        # Persistent: a VM that ends or moves away leaves the port in place for the next one.
        sh("ip", "-n", ns, "tuntap", "add", "dev", TAPS[i], "mode", "tap", "vnet_hdr")
        sh("ip", "-n", ns, "link", "set", TAPS[i], "master", BRIDGE, "up")


def lan_forget():
    """Forgets where the guest was: the previous run's guest ended on either host, and a new one
    boots on A without a word (it sends no ARP or announcement of its own), so the bridges would
    keep sending its MAC to the old port until their entries age out (and the hub its ARP entry)."""
    for ns in (HUB, *HOSTS):
        sh("ip", "-n", ns, "link", "set", "dev", BRIDGE, "type", "bridge", "fdb_flush")
    sh("ip", "-n", HUB, "neigh", "flush", "dev", BRIDGE)


# ---------------------------------------------------------------- the clients (hub namespace)

def client(mode, *args, timeout=120):
    r = subprocess.run(in_ns(HUB, [sys.executable, CLIENT_PY, mode, GUEST, str(ECHO_PORT), *map(str, args)]),
                       capture_output=True, text=True, timeout=timeout)
    lines = r.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"netclient {mode}: no answer ({r.stderr.strip()[-300:]})")
    res = json.loads(lines[-1])
    if res.get("error") or res.get("bad"):
        raise RuntimeError(f"netclient {mode}: {res.get('error') or res.get('bad')}")
    return res


class ProbeClient:
    """tests/harness/echo_probe's TCP probe, in the hub namespace (netclient.py probe)."""

    def __init__(self):
        self.p = subprocess.Popen(in_ns(HUB, [sys.executable, CLIENT_PY, "probe", GUEST, str(ECHO_PORT),
                                              str(PERIOD_US)]),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        r = self._read()
        if not r.get("ready"):
            self.close()
            raise RuntimeError(f"echo probe: {r}")

    def _read(self):
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("echo probe: ended")
        return json.loads(line)

    def cmd(self, c):
        self.p.stdin.write(c + "\n")
        self.p.stdin.flush()
        return self._read()

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def wait_echoes(probe, n, timeout):
    """Until n more messages came back (or the connection broke, or timeout): the probe's state."""
    want = probe.cmd("gap")["echoed"] + n
    deadline = time.monotonic() + timeout
    while True:
        st = probe.cmd("gap")
        if st["echoed"] >= want or st["reset"] or st["bad"] or time.monotonic() > deadline:
            return st, st["echoed"] >= want
        time.sleep(0.01)


# ---------------------------------------------------------------- the VMs

class MinihvVM:
    """One guest, moved between the hosts by minihv."""

    def __init__(self, a, d):
        self.a, self.d, self.procs, self.n = a, d, Procs(), 0
        self.api, self.con = f"{d}/m0.sock", f"{d}/m0.con"
        for f in (self.api, self.con):
            if os.path.exists(f):
                os.unlink(f)
        self.procs.start(in_ns(HOSTS[0], [a.minihv, "run", "--kernel", a.elf, "--cmdline", self.a.cmdline, "--mem", MEM,
                                          "--cpus", str(CPUS), "--net", f"tap={TAPS[0]},mac={MAC}",
                                          "--api", self.api, "--console", self.con]), f"{d}/m0.log")
        self.host = 0

    def move(self, port, probe):
        """Migrates to the other host; returns the tool's numbers and the new console."""
        to = 1 - self.host
        self.n += 1
        api, con, lg = (f"{self.d}/m{self.n}.{x}" for x in ("sock", "con", "log"))
        for f in (api, con):
            if os.path.exists(f):
                os.unlink(f)
        dst = self.procs.start(in_ns(HOSTS[to], [self.a.minihv, "run", "--mem", MEM, "--cpus", str(CPUS),
                                                 "--net", f"tap={TAPS[to]}", "--api", api, "--console", con,
                                                 "--incoming", f"{HOST_ADDR[to]}:{port}", "--insecure"]), lg)
        wait_for(lambda: "waiting for a migrating VM" in read(lg) or dst.poll() is not None, 20,
                 "the destination to listen")
        probe.cmd("mark")
        r = subprocess.run([self.a.minihv, "migrate", "--api", self.api, "--to", f"{HOST_ADDR[to]}:{port}",
                            "--insecure", "--downtime-ms", str(DOWNTIME_MS), "--max-time", str(MAX_S), "--json"],
                           capture_output=True, text=True, timeout=MAX_S + 30)
        if r.returncode != 0:
            raise RuntimeError(f"minihv migrate: {r.stdout.strip()} {r.stderr.strip()[-500:]}")
        s = json.loads(r.stdout.strip().splitlines()[-1])
        self.procs.p[0].wait(20)  # the source ends once the VM runs on the destination
        self.procs.p.pop(0)
        self.api, self.con, self.host = api, con, to
        return {"total_ms": s.get("total_ms"), "downtime_ms": s.get("downtime_ms"), "summary": s}

    def stop(self):
        self.procs.stop()


class QemuVM:
    """One guest, moved between the hosts by QEMU (QMP)."""

    def __init__(self, a, d):
        self.a, self.d, self.procs, self.n = a, d, Procs(), 0
        self.qmp_path, self.con = f"{d}/q0.qmp", f"{d}/q0.con"
        for f in (self.qmp_path, self.con):
            if os.path.exists(f):
                os.unlink(f)
        self.procs.start(in_ns(HOSTS[0], self.cmd(0, self.con, self.qmp_path)), f"{d}/q0.log")
        self.host = 0
        try:
            self.qmp = QMP(self.qmp_path)
        except Exception:
            self.procs.stop()
            raise

    def cmd(self, host, con, qmp, incoming=False):
        net = ["-global", "virtio-mmio.force-legacy=false",
               "-netdev", f"tap,id=n0,ifname={TAPS[host]},script=no,downscript=no,vhost=off",
               "-device", f"virtio-net-device,netdev=n0,mac={MAC}"]
        return qemu_cmd(self.a.elf, self.a.cmdline, con, qmp, MEM, CPUS, incoming=incoming, extra=net)

    def move(self, port, probe):
        to = 1 - self.host
        self.n += 1
        qmp, con, lg = (f"{self.d}/q{self.n}.{x}" for x in ("qmp", "con", "log"))
        for f in (qmp, con):
            if os.path.exists(f):
                os.unlink(f)
        self.procs.start(in_ns(HOSTS[to], self.cmd(to, con, qmp, incoming=True)), lg)
        B = QMP(qmp)
        try:
            B.cmd("migrate-incoming", uri=f"tcp:{HOST_ADDR[to]}:{port}")
            A = self.qmp
            A.cmd("migrate-set-parameters", **{"downtime-limit": DOWNTIME_MS, "max-bandwidth": 1 << 40})
            probe.cmd("mark")
            t0 = time.monotonic()
            A.cmd("migrate", uri=f"tcp:{HOST_ADDR[to]}:{port}")
            while True:
                r = A.cmd("query-migrate")
                st = r.get("status")
                if st in ("completed", "failed", "cancelled"):
                    break
                if time.monotonic() - t0 > MAX_S:
                    A.cmd("migrate_cancel")
                    raise RuntimeError("QEMU migration did not converge")
                time.sleep(0.02)
            if st != "completed":
                raise RuntimeError(f"QEMU migration {st}: {r}")
        except Exception:
            B.close()
            raise
        # The source stays paused (postmigrate): quit it, which frees its tap for the next move.
        try:
            self.qmp.cmd("quit")
        except Exception:
            pass
        self.qmp.close()
        self.procs.p[0].wait(20)
        self.procs.p.pop(0)
        self.qmp, self.con, self.host = B, con, to
        return {"total_ms": r.get("total-time"), "downtime_ms": r.get("downtime"), "summary": r}

    def stop(self):
        try:
            self.qmp.cmd("quit")
        except Exception:
            pass
        self.qmp.close()
        self.procs.stop()


VMS = {"minihv": MinihvVM, "qemu": QemuVM}


def run_tool(tool, a, d, port):
    """One guest of `tool`: throughput, latency, then --moves migrations under the echo probe."""
    lan_forget()
    vm = VMS[tool](a, d)
    probe = None
    res = {"tool": tool, "moves": []}
    try:
        wait_for(warmed_up(vm.con), 30, f"{tool}: the guest's heartbeats")
        nbytes = int(a.bulk_mb * 1e6)
        b = client("bulk", nbytes)
        res["mbps"] = b["bytes"] / 1e6 / b["secs"]
        lat = client("rtt", a.rtt_count, 64)["us"]
        lat.sort()
        res["rtt_med_us"] = med(lat)
        res["rtt_p99_us"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        log(f"{NAMES[tool]:6} throughput {res['mbps']:.1f} MB/s, round trip median {res['rtt_med_us']:.0f} µs, "
            f"p99 {res['rtt_p99_us']:.0f} µs")
        probe = ProbeClient()
        wait_echoes(probe, 300, 10)
        # The same window without a migration: what this machine's scheduling alone does to the gaps.
        probe.cmd("mark")
        st, _ = wait_echoes(probe, AFTER_MOVE, 10)
        res["baseline_gap_ms"] = st["gap_us"] / 1000
        for m in range(a.moves):
            port += 1
            src_con, seen = vm.con, len(read(vm.con))
            mv = vm.move(port, probe)
            # STALL lines the source printed while the move was under way (pre-copy: the guest runs there)
            src = [int(x.group(2)) for x in map(STALL.match, read(src_con)[seen:].splitlines()) if x]
            mv["src_stall_ms"] = max(src) if src else None
            wait_for(resumed(vm.con, CPUS), 10, f"{tool}: heartbeats on the destination")
            st, ok = wait_echoes(probe, AFTER_MOVE, 10)
            dst = [int(x.group(2)) for x in map(STALL.match, read(vm.con).splitlines()) if x]
            # guest_ms: the switchover (the first STALL); stall_max_ms: every STALL on either side
            # while the window was open (the guest's vCPU descheduled by the host, not the move)
            mv.update(gap_ms=st["gap_us"] / 1000, guest_ms=guest_downtime(vm.con), resumed=ok,
                      stall_max_ms=max(src + dst) if src + dst else None,
                      reset=st["reset"], bad=st["bad"], error=st["error"], to=HOSTS[vm.host])
            check_guest(vm.con, f"{tool} destination")
            res["moves"].append(mv)
            log(f"{NAMES[tool]:6} move {m + 1} -> {HOSTS[vm.host]}: echo gap {mv['gap_ms']:.1f} ms, downtime "
                f"{mv['downtime_ms']} ms (tool) / {fmt(mv['guest_ms'])} ms (guest), total {mv['total_ms']} ms, "
                f"largest STALL on the source {fmt(mv['src_stall_ms'])} ms, on either side {fmt(mv['stall_max_ms'])} ms"
                f"{'' if ok else ', the echo did not continue: ' + (st['error'] or 'no echoes')}")
            if not ok:
                break
            time.sleep(0.5)  # let the announcements finish before the next mark
        fin = probe.cmd("finish")
        res["probe"] = fin
        res["survived"] = not fin["reset"] and not fin["bad"] and fin["echoed"] == fin["sent"] and \
            len(res["moves"]) == a.moves
        hb = [l for l in read(vm.con).splitlines() if l.startswith("HB cpu=0")]
        res["last_hb"] = hb[-1] if hb else ""
        c = HB_NET.search(res["last_hb"])
        res["drops"], res["rexmit"] = (int(c.group(1)), int(c.group(2))) if c else (None, None)
    finally:
        if probe:
            probe.close()
        vm.stop()
    return res


# ---------------------------------------------------------------- report

def fmt(x, nd=0):
    return f"<{STALL_MS}" if x is None else f"{x:.{nd}f}"


def ratio(m, q, nd=2):
    return f"{m / q:.{nd}f}" if m is not None and q else "–"


def report(a, results, elapsed, built, head):
    per = {t: [r for r in results if r["tool"] == t and "failed" not in r] for t in a.tools}
    failed = {t: [r["failed"] for r in results if r["tool"] == t and "failed" in r] for t in a.tools}
    moves = {t: [mv for r in per[t] for mv in r["moves"]] for t in a.tools}
    m = {}
    for t in a.tools:
        mv = moves[t]
        guest = [x["guest_ms"] for x in mv]
        m[t] = {
            "gap": med([x["gap_ms"] for x in mv]),
            "gap_max": max((x["gap_ms"] for x in mv), default=None),
            "baseline": med([r["baseline_gap_ms"] for r in per[t]]),
            "drops": med([r["drops"] for r in per[t]]),
            "rexmit": med([r["rexmit"] for r in per[t]]),
            "guest": med([g if g is not None else 0 for g in guest]) if guest else None,
            "guest_none": sum(g is None for g in guest),
            "tool_down": med([x["downtime_ms"] for x in mv]),
            "total": med([x["total_ms"] for x in mv]),
            "mbps": med([r["mbps"] for r in per[t]]),
            "rtt": med([r["rtt_med_us"] for r in per[t]]),
            "p99": med([r["rtt_p99_us"] for r in per[t]]),
            "resets": sum(1 for r in per[t] if r["probe"]["reset"]),
            "bad": sum(1 for r in per[t] if r["probe"]["bad"]),
            "survived": sum(1 for r in per[t] if r["survived"]),
            "runs": len(per[t]) + len(failed[t]),
            "failed": len(failed[t]),
            "moves": len(mv),
        }
    L = []
    L.append(f"{HEADING} (`bench/netbench.py`)")
    L.append("")
    L.append(f"`python3 bench/netbench.py --runs {a.runs} --moves {a.moves} --build {a.build}"
             f"{'' if a.stall_ms == 20 else f' --stall-ms {a.stall_ms}'}` — the test guest's "
             f"`{a.cmdline}` workload (64 MiB, 1 vCPU; a polling ring-3 virtio-net driver and a tiny IPv4 stack, TCP "
             "echo on port 7, 16 KiB window, no window scaling, docs/test-guest.md) under minihv's virtio-net and "
             "QEMU 7.2's `virtio-net-device` (`-M microvm`, tap, `vhost=off`), interleaved. The LAN is "
             "tests/harness/guest_lan's: a hub namespace (bridge, the client) and hosts A and B (a bridge each, "
             "joined to the hub by a veth, a tap on it); the clients (bench/netclient.py) run in the hub. "
             "Throughput: "
             f"{a.bulk_mb:g} MB sent to the echo port over one connection while the echo is read back, every "
             f"byte checked (MB/s of echoed data). Latency: {a.rtt_count} sequential 64-byte request/echo round "
             "trips. Migration: one TCP connection, a numbered 9-byte message every 1 ms, every echoed byte "
             f"checked in order (tests/harness/echo_probe); the guest moves A → B → A … {a.moves} times per run "
             "over the LAN, 300 ms downtime target for both; echo gap = the largest gap between echo arrivals "
             f"from just before the migration until {AFTER_MOVE} more messages came back; guest-seen downtime = "
             f"the STALL line on the destination console (\"<{STALL_MS}\" = none, counted as 0 in medians and in the first target below, which makes it strict). The row "
             "'300 echoes without a migration' is the same window with no move: the machine's own noise floor (the guest's vCPU "
             "polls without pause, so on 2 host cores it competes with the VMM's I/O thread, the client and "
             "whatever else runs).")
    L.append("")
    L.append(machine_line(a.runs, elapsed, built, head, per="tool") + f"; load average at the end "
             f"{os.getloadavg()[0]:.1f}.")
    L.append("")
    q = m.get("qemu")
    mh = m.get("minihv")
    L.append("| median | " + " | ".join(NAMES[t] for t in a.tools) + (" | minihv / QEMU |" if q and mh else " |"))
    L.append("|---|" + "---|" * len(a.tools) + ("---|" if q and mh else ""))
    rows = [("echo gap across a migration, ms", "gap", 1), ("largest echo gap of all moves, ms", "gap_max", 1),
            ("largest echo gap, 300 echoes without a migration, ms", "baseline", 1),
            ("guest-seen downtime, ms", "guest", 0), ("downtime as the tool reports it, ms", "tool_down", 0),
            ("migration total time, ms", "total", 0), ("TCP echo throughput, MB/s", "mbps", 2),
            ("round trip 64 B, median µs", "rtt", 0), ("round trip 64 B, p99 µs", "p99", 0),
            ("guest drops at the end (HB drops=)", "drops", 0), ("guest TCP retransmissions (HB rexmit=)", "rexmit", 0)]
    for label, k, nd in rows:
        cells = [("–" if m[t][k] is None else f"{m[t][k]:.{nd}f}") for t in a.tools]
        L.append(f"| {label} | " + " | ".join(cells) + (f" | {ratio(mh[k], q[k])} |" if q and mh else " |"))
    cells = [f"{m[t]['survived']}/{m[t]['runs']} ({m[t]['resets']} resets, {m[t]['bad']} out of order"
             f"{', %d failed' % m[t]['failed'] if m[t]['failed'] else ''})" for t in a.tools]
    L.append("| connection survived every move (runs) | " + " | ".join(cells) + (" | |" if q and mh else " |"))
    L.append("")
    L.append("Per move (echo gap ms / guest-seen downtime ms / tool downtime ms / largest STALL of the guest on "
             "either side while the window was open, ms — one larger than the switchover's is the host "
             "descheduling the vCPU, not the move), in run order:")
    L.append("")
    for t in a.tools:
        for i, r in enumerate(per[t]):
            cells = ", ".join(f"{x['gap_ms']:.0f}/{fmt(x['guest_ms'])}/{x['downtime_ms']}/{fmt(x['stall_max_ms'])}"
                              for x in r["moves"])
            L.append(f"- {NAMES[t]} run {i + 1} ({r['mbps']:.1f} MB/s, round trip {r['rtt_med_us']:.0f} µs, "
                     f"gap without a migration {r['baseline_gap_ms']:.0f} ms): {cells}")
        for e in failed[t]:
            L.append(f"- {NAMES[t]} run failed: {e}")
    if mh:
        L.append("")
        L.append("Targets (issue 15):")
        L.append("")
        within = [x for x in moves["minihv"] if x["gap_ms"] <= (x["guest_ms"] or 0) + 10]
        noisy = [x for x in moves["minihv"] if (x["stall_max_ms"] or 0) > (x["guest_ms"] or 0)]
        L.append(f"- echo gap ≤ guest-seen downtime + 10 ms: {len(within)}/{m['minihv']['moves']} minihv moves "
                 f"({'met' if mh['moves'] and len(within) == mh['moves'] else 'not met'}); {len(noisy)} moves had "
                 f"a guest STALL other than the switchover's in the window")
        if q:
            ok = mh["gap"] is not None and q["gap"] and mh["gap"] <= 0.5 * q["gap"]
            L.append(f"- echo gap ≤ 0.5 × QEMU's: {ratio(mh['gap'], q['gap'])} × "
                     f"({'met' if ok else 'not met'})")
        L.append(f"- 0 resets: {mh['resets']} resets, {mh['bad']} runs with bytes out of order, connection survived "
                 f"{mh['survived']}/{mh['runs']} runs ({'met' if mh['resets'] == 0 and mh['bad'] == 0 and mh['survived'] == mh['runs'] else 'not met'})")
        if q:
            ok = mh["mbps"] is not None and q["mbps"] and mh["mbps"] >= q["mbps"]
            L.append(f"- throughput ≥ QEMU's: {ratio(mh['mbps'], q['mbps'])} × ({'met' if ok else 'not met'})")
    return "\n".join(L) + "\n"


def write_doc(path, section):
    """Replaces the section under HEADING in `path` (up to the next "## "), or appends it."""
    text = read(path)
    lines = text.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.startswith(HEADING)), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section if text else section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        text = "".join(lines[:start]) + section + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    with open(path, "w") as f:
        f.write(text)


# ---------------------------------------------------------------- main

def main():
    global STALL_MS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--moves", type=int, default=5, help="migrations per run (A -> B -> A ...)")
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="", help="write every run's numbers as JSON here")
    ap.add_argument("--doc", default="docs/benchmarks.md", help="the Markdown file to put the section in ('' = none)")
    ap.add_argument("--bulk-mb", type=float, default=32, help="MB through the echo for the throughput")
    ap.add_argument("--rtt-count", type=int, default=1000)
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--stall-ms", type=int, default=STALL_MS, help="the guest's STALL threshold")
    a = ap.parse_args()
    STALL_MS = a.stall_ms
    a.cmdline = f"net ip={GUEST}/24 stall_ms={a.stall_ms}"
    a.tools = a.tools.split(",")
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, taps)")
    a.minihv, a.elf, _, built = snapshot_binaries(a.build, "mnb-bin-")
    head = tree_head()

    atexit.register(lan_down)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))  # atexit and every finally: run
    lan_up()
    results, port = [], 47300
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mnb-") as d:
        for rep in range(a.runs):
            for tool in a.tools:
                log(f"rep {rep + 1} {NAMES[tool]}")
                try:
                    r = run_tool(tool, a, d, port)
                except Exception as e:
                    log(f"{NAMES[tool]}: FAILED: {e}")
                    r = {"tool": tool, "failed": str(e)}
                port += a.moves + 1
                results.append(r)
    elapsed = time.monotonic() - t_start
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"results": results, "cmdline": a.cmdline, "bulk_mb": a.bulk_mb, "rtt_count": a.rtt_count,
                       "moves": a.moves}, f, indent=1)
    section = report(a, results, elapsed, built, head)
    print(section)
    if a.doc:
        write_doc(a.doc, section)
        log(f"section written to {a.doc}")


if __name__ == "__main__":
    main()

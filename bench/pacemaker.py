#!/usr/bin/env python3
"""bench/pacemaker.py — a live move and a failover of one VM through Pacemaker (ocf:minihv:vm)
against minihv's own cluster, in the same run (docs/benchmarks.md, "Pacemaker").

Pacemaker: tests/pacemaker/pacemaker_test.py with --plan alternate (a move, then a kill of the
node that runs the VM, ...): three Pacemaker 2.1.5 + Corosync 3.1.7 nodes in namespaces on this
machine, token 1000, STONITH off. minihv's cluster: three `minihv node` daemons on 127.0.0.1 on
one volume (bench/failover.py's Cluster), `minihv cluster move` and `minihv cluster drill --kill`.
Both run the test guest's `disk` workload, 64 MiB, on a 16 MiB volume disk.

  move      from the command (crm_resource --move / minihv cluster move) until the target's
            VMM runs the guest (its control socket says "running"; polled every 5 ms)
  pause     the longest gap the guest itself saw across the move (its STALL line; none: < 20 ms)
  failover  from the kill (the node's PID namespace / the node daemon and its VMs, SIGKILL) until
            the VM's first heartbeat on a survivor

Usage: bench/pacemaker.py [--rounds N] [--build build] [--json OUT]   (root, /dev/kvm; ~4 min)
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import failover as fo  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "..", "tests", "pacemaker"))
from pacemaker_test import vm_state  # noqa: E402
from benchlib import med, read, tree_head  # noqa: E402

HB = re.compile(r"^HB cpu=0 ")
STALL = re.compile(r"^STALL cpu=\d+ ms=(\d+)")


def own_cluster(build, rounds):
    """`minihv cluster move` and `drill --kill`, alternating, `rounds` of each."""
    minihv, elf = os.path.join(build, "minihv"), os.path.join(build, "guest", "testguest.elf")
    d = tempfile.mkdtemp(prefix="minihv-bench-own-")
    cl = fo.Cluster(d, minihv, elf)
    out = {"move_s": [], "move_stall_ms": [], "failover_s": []}
    try:
        cl.create()
        cl.wait_all_up()
        cl.add_vm("m1", "disk", "64M", disk="d1")
        for k in range(rounds):
            node, _ = cl.wait_running(["m1"], beats=2)["m1"]
            to = fo.NODES[(fo.NODES.index(node) + 1) % len(fo.NODES)]
            console = f"{d}/{to}/m1.console"
            for suffix in ("", ".1"):  # what the target's next instance prints is all it holds
                if os.path.exists(console + suffix):
                    os.unlink(console + suffix)
            sock = f"{d}/{to}/m1.sock"
            t0 = time.monotonic()
            move = subprocess.Popen([minihv, "cluster", "--node", cl.listen[node], "--key", cl.key, "move", "m1",
                                     "--to", to, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            while vm_state(sock) != "running" and time.monotonic() < t0 + 60:
                time.sleep(0.005)
            out["move_s"].append(time.monotonic() - t0)
            _, err = move.communicate(timeout=fo.DRILL_TIMEOUT_S)
            if move.returncode != 0:
                raise RuntimeError(f"move {k + 1} failed: {err.strip()}")
            fo.wait_for(lambda: any(HB.match(l) for l in read(console).splitlines()), 60, "a heartbeat on " + to)
            time.sleep(1.5)  # a STALL line follows the heartbeat that ended the gap
            stalls = [int(m[1]) for m in map(STALL.match, read(console).splitlines()) if m]
            out["move_stall_ms"].append(max(stalls, default=0))
            fo.log(f"own move {k + 1}: {node} -> {to}: {out['move_s'][-1]:.2f} s, pause {out['move_stall_ms'][-1]} ms")
            node, _ = cl.wait_running(["m1"], beats=2)["m1"]
            rep = cl.drill(node)
            check = fo.summarize_drill(rep)
            if not rep.get("ok"):
                raise RuntimeError(f"drill {k + 1} failed: {json.dumps(rep)[:400]}")
            out["failover_s"].append(check["first_heartbeat_ms"] / 1000)
            fo.log(f"own failover {k + 1}: killed {node}: first heartbeat after {check['first_heartbeat_ms']} ms")
            cl.start_node(node)
            cl.wait_all_up()
    finally:
        cl.stop()
        shutil.rmtree(d, ignore_errors=True)
    return out


def pacemaker(build, rounds):
    with tempfile.NamedTemporaryFile(suffix=".json") as j:
        r = subprocess.run([sys.executable, os.path.join(HERE, "..", "tests", "pacemaker", "pacemaker_test.py"),
                            "--build", build, "--plan", "alternate", "--rounds", str(2 * rounds), "--json", j.name],
                           capture_output=True, text=True, timeout=1800)
        print(r.stdout[-3000:] if r.returncode else "\n".join(l for l in r.stdout.splitlines() if "->" in l or "kill" in l))
        if r.returncode != 0:
            raise RuntimeError("pacemaker_test failed")
        return json.load(open(j.name))


def cell(v):
    return f"{min(v):.2f} / {med(v):.2f} / {max(v):.2f}" if v else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=10, help="moves and failovers of each kind")
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    t0 = time.time()
    pm = pacemaker(build, a.rounds)
    own = own_cluster(build, a.rounds)
    rows = [("live move, s (command → the guest runs on the target)", "move_s", 1),
            ("guest-seen pause across the move, ms", "move_stall_ms", 1),
            ("failover, s (kill → first heartbeat on a survivor)", "failover_s", 1)]
    u = os.uname()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cpus ({cpu}), kernel {u.release}; {a.rounds} moves and {a.rounds} failovers "
          f"each way; took {(time.time() - t0) / 60:.1f} min; tree at {tree_head()}; load average at the end "
          f"{os.getloadavg()[0]:.1f}")
    print("| min / median / max | Pacemaker (ocf:minihv:vm) | minihv cluster | Pacemaker / minihv (medians) |")
    print("|---|---|---|---|")
    for label, k, _ in rows:
        p, o = pm.get(k, []), own.get(k, [])
        ratio = f"{med(p) / med(o):.1f}" if p and o and med(o) else "-"
        print(f"| {label} | {cell(p)} ({len(p)}) | {cell(o)} ({len(o)}) | {ratio} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"pacemaker": pm, "own": own}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

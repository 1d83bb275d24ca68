#!/usr/bin/env python3
"""Failover benchmark: a three-node minihv cluster on this machine, nodes killed with
`minihv cluster drill --kill NODE --yes --json`, and the time until their VMs run elsewhere.
Results go to docs/benchmarks.md ("Failover (issue 6)").

Setup: a temporary directory with a 2 GiB volume (the default lease timings: renew 200 ms,
fail 800 ms, dead 1400 ms) and three node daemons n1..n3 on 127.0.0.1 (free ports), each with its
own state directory. The script copies minihv (as `mhv-bench`) and the test guest there first, so a
rebuild of the tree during the run cannot mix two binaries (the nodes run their VMs with their own
binary), and a `pkill minihv` elsewhere on the machine cannot stop the benchmark's nodes.

Series A (--drills N, default 20): one VM, the test guest's `disk` workload on a volume disk,
64 MiB. Each drill kills the node that runs the VM at that moment, then restarts the killed node
(same --name and --state-dir) and waits until every node sees every node "up".
Series B (--sizes 1,4,16, --scale-drills 3 per size): N VMs running `idle`, 32 MiB each, all
placed on one node (--preferred); the drill kills that node and waits until all of them have their
first heartbeat elsewhere. minihv has no failback: after a drill the VMs stay spread over the
survivors, so every drill of series B adds its VMs afresh and removes them afterwards
(`cluster vm stop`, `cluster vm rm`). The victim rotates over n1..n3. No further drill of a size
starts once that size has taken --size-budget-s (default 600 s; the table says how many ran).

Series M (--moves N, default 10): one VM like series A's, moved live back and forth between two
nodes with `minihv cluster move VM --to NODE --json` (its leases follow it); per move the CLI's
total, the lease hand-over and the migration's downtime, and afterwards the VM must run on the
destination with new heartbeats and nowhere else.

Per drill, from the drill's JSON (all times from the moment the CLI sent "die"):
  detection        dead_since of the killed node, as a survivor saw it (detected_ms)
  lease takeover   the VM's leases taken on its new node (leased_ms; the largest of the drill's VMs)
  first heartbeat  the new instance's first heartbeat (first_heartbeat_ms; the largest)
A drill fails when the drill says ok=false (timeout, errs, CORRUPT, a disk that resumed before its
last acknowledged record) or when a VM runs twice: after every drill and every restart the script
counts `minihv run` processes per VM (its --api socket names it) and the nodes' own lists.
A failed drill's state (node stderr, VM .log/.console) is copied to --keep-failed DIR, and so is
any other finding: a node daemon that exits although no drill killed it (it is started again), or
a VM still down 60 s after the previous drill (then `cluster vm stop` + `vm start`). Each is
printed after the table, and the exit status is 1.

Nodes run in their own sessions; at exit (normal, exception, SIGINT/SIGTERM/SIGHUP) each is sent
SIGTERM (a clean stop), then SIGKILL, and any process still running the copied binary is killed.

Usage: bench/failover.py [--drills N] [--sizes 1,4,16] [--scale-drills N] [--size-budget-s S]
                         [--json OUT] [--build DIR] [--keep-failed DIR]
"""
import argparse
import atexit
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

NODES = ("n1", "n2", "n3")
VOLUME_SIZE, DISK_SIZE = "2G", "16M"
A_MEM, B_MEM = "64M", "32M"
UP_TIMEOUT_S = 60       # a restarted node rejoins in 1-2 s; this is for a loaded machine
RUN_TIMEOUT_S = 180     # 16 VMs booting on 2 vCPUs
DOWN_TIMEOUT_S = 60     # a VM down this long between drills is stopped and started again
DRILL_TIMEOUT_S = 120   # the drill's own --timeout
POLL_S = 0.1

T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def wait_for(pred, timeout, what):
    t = time.monotonic() + timeout
    while time.monotonic() < t:
        v = pred()
        if v:
            return v
        time.sleep(POLL_S)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


# ---------------------------------------------------------------- the cluster

class NodeExited(Exception):
    """A node daemon exited while the script waited for all nodes to be up."""


class Cluster:
    """Three node daemons on one volume, driven through the `minihv cluster` CLI."""

    def __init__(self, d, minihv, elf):
        self.d, self.minihv, self.elf = d, minihv, elf
        self.volume = f"{d}/vol.img"
        self.key = f"{d}/cluster.key"  # node RPC is TLS with this cluster key (nodes and CLI)
        self.listen = dict(zip(NODES, (f"127.0.0.1:{p}" for p in free_ports(len(NODES)))))
        self.procs = {}       # node -> Popen of its current daemon
        self.all_procs = []   # every daemon ever started (for the cleanup)

    def run(self, *args, check=True, timeout=300):
        r = subprocess.run([self.minihv, *args], capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"minihv {' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
        return r

    def cli(self, *args, via=None, check=True, timeout=300):
        return self.run("cluster", "--node", self.listen[via or self.any_live()], "--key", self.key, *args,
                        check=check, timeout=timeout)

    def any_live(self, but=None):
        for n in NODES:
            if n != but and n in self.procs and self.procs[n].poll() is None:
                return n
        raise RuntimeError("no node daemon is running")

    # ---- nodes

    def create(self):
        self.run("volume", "format", self.volume, "--size", VOLUME_SIZE, "--cluster", "bench")
        self.run("cluster", "init-key", "--key", self.key)
        self.run("volume", "disk", "create", self.volume, "d1", "--size", DISK_SIZE)
        for n in NODES:
            os.makedirs(f"{self.d}/{n}", exist_ok=True)
            self.start_node(n)

    def start_node(self, n):
        with open(f"{self.d}/{n}.stderr", "a") as err:
            err.write(f"# bench: started at unix ms {int(time.time() * 1000)}\n")
            err.flush()
            p = subprocess.Popen([self.minihv, "node", "--name", n, "--volume", self.volume,
                                  "--listen", self.listen[n], "--state-dir", f"{self.d}/{n}",
                                  "--key", self.key, "--images", os.path.dirname(os.path.abspath(self.elf))],
                                 stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
        self.procs[n] = p
        self.all_procs.append(p)

    def status(self, via=None):
        return json.loads(self.cli("status", "--json", via=via, timeout=30).stdout)

    def all_up(self):
        """Every node sees every node up (its own view, in node_status)."""
        try:
            s = self.status()
        except (RuntimeError, ValueError, subprocess.TimeoutExpired):
            return False
        views = [s.get("nodes", [])] + [s["node_status"].get(n, {}).get("nodes", []) for n in NODES]
        return all(sorted(x["name"] for x in v if x.get("state") == "up") == sorted(NODES) for v in views)

    def wait_all_up(self):
        def up():
            if self.exited():
                raise NodeExited(self.exited())
            return self.all_up()
        wait_for(up, UP_TIMEOUT_S, "all nodes up")

    def reap(self, n):
        p = self.procs.get(n)
        if p:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"node {n} (pid {p.pid}) survived its drill")

    def stop(self):
        """SIGTERM to every daemon's session (a clean stop), then SIGKILL; then any process still
        running our copy of minihv (VMs die with their node, this is the belt and braces)."""
        live = [p for p in self.all_procs if p.poll() is None]
        for p in live:
            signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in live:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_group(p.pid, signal.SIGKILL)
                p.wait()
        for p in self.all_procs:
            signal_group(p.pid, signal.SIGKILL)  # VMs left in the session, if any
        for pid in pids_running(self.minihv):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # ---- VMs

    def add_vm(self, name, workload, mem, preferred=None, disk=None, wait=True):
        args = ["vm", "add", name, "--kernel", self.elf, "--cmdline", workload, "--mem", mem, "--start"]
        if disk:
            args += ["--disk", disk]
        if preferred:
            args += ["--preferred", preferred]
        if not wait:
            args.append("--no-wait")
        self.cli(*args, timeout=RUN_TIMEOUT_S)

    def remove_vm(self, name):
        self.cli("vm", "stop", name)
        self.cli("vm", "rm", name)

    def placement(self, names, s=None):
        """{vm: (node, local entry)} for the VMs that run (state running, at least one heartbeat)."""
        s = s or self.status()
        out = {}
        for v in s.get("vms", []):
            if v["name"] not in names or not v.get("node"):
                continue
            for l in s["node_status"].get(v["node"], {}).get("local", []):
                if l["name"] == v["name"] and l.get("state") == "running" and l.get("heartbeats", 0) > 0:
                    out[v["name"]] = (v["node"], l)
        return out

    def wait_running(self, names, on=None, beats=1, timeout=RUN_TIMEOUT_S):
        def ready():
            try:
                p = self.placement(names)
            except (RuntimeError, ValueError, subprocess.TimeoutExpired):
                return False
            ok = len(p) == len(names) and all((on is None or node == on) and l.get("heartbeats", 0) >= beats
                                              for node, l in p.values())
            return p if ok else False
        where = f" on {on}" if on else ""
        return wait_for(ready, timeout, f"{len(names)} VM(s) running{where}")

    def double_runs(self, names):
        """VMs that run twice: by process (minihv run --api STATE/NODE/VM.sock) and by the nodes' lists."""
        seen = {}
        for pid in pids_running(self.minihv):
            args = cmdline(pid)
            if "run" in args and "--api" in args:
                api = args[args.index("--api") + 1]
                vm = os.path.basename(api).removesuffix(".sock")
                seen.setdefault(vm, []).append((os.path.basename(os.path.dirname(api)), pid))
        bad = {vm: procs for vm, procs in seen.items() if len(procs) > 1}
        s = self.status()
        for vm in names:
            holders = [n for n, st in s["node_status"].items()
                       for l in st.get("local", []) if l["name"] == vm and l.get("pid", 0) > 0]
            if len(holders) > 1:
                bad.setdefault(vm, []).append(("listed by", holders))
        return bad

    # ---- drill

    def drill(self, victim):
        """Kills `victim`, returns the drill's report (plus its exit code and wall time)."""
        t = time.monotonic()
        r = self.cli("drill", "--kill", victim, "--yes", "--json", "--timeout", str(DRILL_TIMEOUT_S),
                     via=self.any_live(but=victim), check=False, timeout=DRILL_TIMEOUT_S + 30)
        wall = time.monotonic() - t
        try:
            rep = json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            rep = {"node": victim, "ok": False, "vms": [], "error": r.stderr.strip()}
        rep["rc"], rep["wall_ms"] = r.returncode, round(wall * 1000)
        if r.returncode != 0:
            rep["ok"] = False
            rep["stderr"] = r.stderr.strip()
        self.reap(victim)
        return rep

    def exited(self, but=()):
        """[(node, exit status)] of daemons that are gone although no drill killed them."""
        return [(n, p.returncode) for n, p in self.procs.items() if n not in but and p.poll() is not None]

    def keep_state(self, dest, label):
        """Copies node stderr and VM .log/.console files (not the volume) for a failed drill."""
        out = f"{dest}/{label}"
        shutil.copytree(self.d, out, ignore=shutil.ignore_patterns("vol.img", "bin", "*.sock"), dirs_exist_ok=True)
        return out


def signal_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def pids_running(binary):
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit() and int(e) != os.getpid():
            a = cmdline(int(e))
            if a and a[0] == binary:
                out.append(int(e))
    return out


# ---------------------------------------------------------------- series

def summarize_drill(rep):
    vms = rep.get("vms", [])
    def worst(k):
        v = [x.get(k, -1) for x in vms]
        return max(v) if v and min(v) >= 0 else None
    det = rep.get("detected_ms", -1)
    return {"detected_ms": det if det is not None and det >= 0 else None, "leased_ms": worst("leased_ms"),
            "started_ms": worst("started_ms"), "first_heartbeat_ms": worst("first_heartbeat_ms")}


def record(cl, a, series, label, victim, rep, names):
    rep = dict(rep, series=series, victim=victim, **summarize_drill(rep))
    doubles = cl.double_runs(names)
    if doubles:
        rep["ok"] = False
        rep["double_running"] = {k: [list(map(str, x)) for x in v] for k, v in doubles.items()}
    where = sorted({v.get("node", "-") for v in rep.get("vms", [])})
    log(f"{label}: killed {victim}: detected {rep['detected_ms']} ms, leases {rep['leased_ms']} ms, "
        f"first heartbeat {rep['first_heartbeat_ms']} ms, now on {','.join(where)}: "
        f"{'ok' if rep['ok'] else 'FAILED ' + json.dumps(rep)[:600]}")
    if not rep["ok"] and a.keep_failed:
        log(f"  state kept in {cl.keep_state(a.keep_failed, label.replace(' ', '_').replace('/', '-'))}")
    return rep


UNEXPECTED = []  # node daemons that exited on their own: [{label, node, rc, stderr}]
ANOMALIES = []   # VMs down between drills (they should run from one drill to the next)


def check_nodes(cl, a, label, but=(), restart=True):
    """A daemon that exited without a drill is a finding: log it, keep the state, start it again."""
    gone = cl.exited(but)
    for n, rc in gone:
        tail = open(f"{cl.d}/{n}.stderr", errors="replace").read().splitlines()[-15:]
        log(f"{label}: node {n} exited on its own (status {rc}); its stderr ends:\n    " + "\n    ".join(tail))
        UNEXPECTED.append({"label": label, "node": n, "rc": rc, "stderr": tail})
        if a.keep_failed:
            log(f"  state kept in {cl.keep_state(a.keep_failed, label.replace(' ', '_') + '-' + n + '-exit')}")
        if restart:
            cl.start_node(n)
    return gone


def settle(cl, a, label, tries=3):
    """Waits until every node sees every node up; a daemon that exits meanwhile is logged and
    started again (at most `tries` times)."""
    for _ in range(tries):
        try:
            cl.wait_all_up()
            return
        except NodeExited:
            check_nodes(cl, a, label)
    raise RuntimeError(f"{label}: the nodes do not stay up")


def after_restart(cl, a, label, names):
    doubles = cl.double_runs(names)
    if doubles:
        log(f"{label}: after the restart a VM runs twice: {doubles}")
        if a.keep_failed:
            cl.keep_state(a.keep_failed, label.replace(" ", "_") + "-restart")
    return doubles


def ensure_running(cl, a, label, names, on=None, beats=1):
    """Waits until the VMs run; VMs still down after DOWN_TIMEOUT_S are a finding (logged, state
    and `cluster status --json` kept), then `cluster vm stop` and `vm start` bring them back."""
    t = time.monotonic()
    try:
        return cl.wait_running(names, on=on, beats=beats, timeout=DOWN_TIMEOUT_S)
    except RuntimeError:
        pass
    st = cl.cli("status", "--json", check=False).stdout
    running = cl.placement(names)
    down = [n for n in names if n not in running or (on and running[n][0] != on)]
    log(f"{label}: {down} not running after {time.monotonic() - t:.0f} s: stopping and starting them")
    entry = {"label": label, "down": down, "after_s": round(time.monotonic() - t)}
    if a.keep_failed:
        entry["state"] = cl.keep_state(a.keep_failed, label.replace(" ", "_") + "-down")
        with open(f"{entry['state']}/status.json", "w") as f:
            f.write(st)
        log(f"  state kept in {entry['state']}")
    for v in down:
        cl.cli("vm", "stop", v, check=False)
        r = cl.cli("vm", "start", v, check=False, timeout=RUN_TIMEOUT_S)
        log(f"  {v}: {(r.stdout + r.stderr).strip()}")
    entry["recovered_after_s"] = round(time.monotonic() - t)
    ANOMALIES.append(entry)
    return cl.wait_running(names, on=on, beats=beats)


def series_a(cl, a):
    names = ["a1"]
    cl.add_vm("a1", "disk", A_MEM, disk="d1")
    drills = []
    for i in range(a.drills):
        if check_nodes(cl, a, f"A {i + 1} before"):
            settle(cl, a, f"A {i + 1} before")
        node, _ = ensure_running(cl, a, f"A {i + 1} before", names, beats=2)["a1"]  # records acknowledged
        rep = record(cl, a, "A", f"A {i + 1}/{a.drills}", node, cl.drill(node), names)
        if check_nodes(cl, a, f"A {i + 1} drill", but=(node,)):
            rep["other_node_exited"] = True
        cl.start_node(node)
        settle(cl, a, f"A {i + 1} restart")
        if after_restart(cl, a, f"A {i + 1}", names):
            rep["ok"] = False
            rep["double_running_after_restart"] = True
        drills.append(rep)
    cl.remove_vm("a1")
    return drills


def series_m(cl, a):
    names = ["m1"]
    cl.add_vm("m1", "disk", A_MEM, disk="d1")
    moves = []
    for i in range(a.moves):
        node, _ = ensure_running(cl, a, f"M {i + 1} before", names, beats=2)["m1"]
        to = NODES[(NODES.index(node) + 1) % len(NODES)]
        r = cl.cli("move", "m1", "--to", to, "--json", check=False, timeout=DRILL_TIMEOUT_S)
        try:
            rep = json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            rep = {"error": r.stderr.strip()}
        mig = rep.get("migration", {})
        move = {"from": node, "to": to, "rc": r.returncode, "total_ms": rep.get("total_ms"),
                "handoff_ms": rep.get("handoff_ms"), "downtime_ms": mig.get("downtime_ms"),
                "ok": r.returncode == 0}
        if move["ok"]:
            try:
                cl.wait_running(names, on=to, beats=2, timeout=30)
            except Exception as e:  # noqa: BLE001 - the benchmark reports it as a failed move
                move["ok"], move["error"] = False, str(e)
            if cl.double_runs(names):
                move["ok"], move["double_running"] = False, True
        else:
            move["error"] = rep.get("error") or r.stderr.strip()
        log(f"M {i + 1}/{a.moves}: {node} -> {to}: {move}")
        moves.append(move)
    cl.remove_vm("m1")
    return moves


def move_table(moves):
    good = [m for m in moves if m["ok"]]
    return "\n".join(["| series | moves | failed | total ms | lease hand-over ms | downtime ms |",
                      "|---|---|---|---|---|---|",
                      f"| M: live move, disk VM, 64 MiB | {len(moves)} | {len(moves) - len(good)} | "
                      f"{cell([m['total_ms'] for m in good])} | {cell([m['handoff_ms'] for m in good])} | "
                      f"{cell([m['downtime_ms'] for m in good])} |"])


def series_b(cl, a, size, drills_wanted, k0):
    names = [f"b{size}-{j}" for j in range(size)]
    drills = []
    t_size = time.monotonic()
    for i in range(drills_wanted):
        if i > 0 and a.size_budget_s and time.monotonic() - t_size > a.size_budget_s:
            log(f"B {size} VMs: {i} drills in {time.monotonic() - t_size:.0f} s, over the budget: no more")
            break
        victim = NODES[(k0 + i) % len(NODES)]
        if check_nodes(cl, a, f"B {size} {i + 1} before"):
            settle(cl, a, f"B {size} {i + 1} before")
        for v in names:
            cl.add_vm(v, "idle", B_MEM, preferred=victim, wait=False)
        ensure_running(cl, a, f"B {size} {i + 1} before", names, on=victim)
        rep = record(cl, a, "B", f"B {size} VMs {i + 1}/{drills_wanted}", victim, cl.drill(victim), names)
        rep["size"] = size
        if check_nodes(cl, a, f"B {size} {i + 1} drill", but=(victim,)):
            rep["other_node_exited"] = True
        cl.start_node(victim)
        settle(cl, a, f"B {size} {i + 1} restart")
        if after_restart(cl, a, f"B {size} {i + 1}", names):
            rep["ok"] = False
            rep["double_running_after_restart"] = True
        drills.append(rep)
        for v in names:
            cl.remove_vm(v)
    return drills


# ---------------------------------------------------------------- report

def stats(v):
    v = [x for x in v if x is not None]
    return (min(v), statistics.median(v), max(v)) if v else None


def cell(v):
    s = stats(v)
    return " / ".join(f"{x:.0f}" for x in s) if s else "-"


def table(groups):
    lines = ["| series | VMs | drills | failed | detection ms | lease takeover ms | first heartbeat ms |",
             "|---|---|---|---|---|---|---|"]
    for label, size, ds in groups:
        good = [d for d in ds if d["ok"]]
        lines.append(f"| {label} | {size} | {len(ds)} | {len(ds) - len(good)} | "
                     f"{cell([d['detected_ms'] for d in good])} | {cell([d['leased_ms'] for d in good])} | "
                     f"{cell([d['first_heartbeat_ms'] for d in good])} |")
    return "\n".join(lines)


def node_errors(d):
    """Lines of the nodes' stderr that are not the expected notices of a drill."""
    expected = ("is dead: its lease has not changed", "leases taken in", "serving on", "# bench:")
    out = {}
    for n in NODES:
        lines = open(f"{d}/{n}.stderr", errors="replace").read().splitlines()
        out[n] = [l for l in lines if not any(e in l for e in expected)]
    return out


def machine():
    u = os.uname()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    head = subprocess.run(["git", "log", "-1", "--format=%h %cs"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--short", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.split("\n")
    return {"cpus": os.cpu_count(), "cpu": cpu, "kernel": u.release, "tree": head,
            "modified": [l[3:] for l in dirty if l.strip()], "load": os.getloadavg()}


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--drills", type=int, default=20, help="series A: drills with one disk VM")
    ap.add_argument("--sizes", default="1,4,16", help="series B: VMs per node (0 or empty: skip)")
    ap.add_argument("--scale-drills", type=int, default=3, help="series B: drills per size")
    ap.add_argument("--size-budget-s", type=float, default=600,
                    help="series B: start no further drill of a size after this long (0: no limit)")
    ap.add_argument("--moves", type=int, default=10, help="series M: live moves of one disk VM")
    ap.add_argument("--build", default="build")
    ap.add_argument("--json", default="", help="write every drill's report and the summary here")
    ap.add_argument("--keep-failed", default="", help="copy a failed drill's logs and consoles here")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",") if x.strip() and int(x) > 0]

    d = tempfile.mkdtemp(prefix="mhv-failover-")
    atexit.register(shutil.rmtree, d, True)
    os.makedirs(f"{d}/bin")
    built = time.strftime("%Y-%m-%d %H:%M", time.gmtime(os.path.getmtime(f"{a.build}/minihv")))
    # Named so that no `pkill minihv` / `killall minihv` of another session on this shared machine
    # takes the benchmark's nodes down (it did, twice, while this script was written).
    minihv = shutil.copy2(f"{a.build}/minihv", f"{d}/bin/mhv-bench")
    elf = shutil.copy2(f"{a.build}/guest/testguest.elf", f"{d}/bin/testguest.elf")
    cl = Cluster(d, minihv, elf)
    atexit.register(cl.stop)  # registered last: runs first, before the directory goes
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda *_: sys.exit(1))

    info = machine()
    info["built"] = built
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    log(f"cluster in {d}: {cl.listen}")
    cl.create()
    settle(cl, a, "start")
    results = {"A": [], "B": {}, "M": []}
    try:
        results["M"] = series_m(cl, a) if a.moves > 0 else []
        results["A"] = series_a(cl, a) if a.drills > 0 else []
        for k, size in enumerate(sizes):
            results["B"][size] = series_b(cl, a, size, a.scale_drills, k)
    except Exception:
        if a.keep_failed:
            log(f"aborted; state kept in {cl.keep_state(a.keep_failed, 'aborted')}")
        check_nodes(cl, a, "aborted", restart=False)
        raise
    results["unexpected_exits"] = UNEXPECTED
    results["vm_down_between_drills"] = ANOMALIES
    results["node_errors"] = node_errors(d)
    elapsed = time.monotonic() - T0
    info["load_end"] = os.getloadavg()

    groups = []
    if results["A"]:
        groups.append(("A: disk VM, 64 MiB", 1, results["A"]))
    for size, ds in results["B"].items():
        groups.append(("B: idle VMs, 32 MiB", size, ds))
    print(f"machine: {info['cpus']} cpus ({info['cpu']}), kernel {info['kernel']}; load "
          f"{info['load'][0]:.1f} at start, {info['load_end'][0]:.1f} at end; run {started} UTC, "
          f"{elapsed / 60:.1f} min; minihv built {built} UTC, tree at {info['tree']}"
          + (f" with uncommitted changes in {', '.join(info['modified'])}" if info["modified"] else ""))
    print("times in ms from the kill, min / median / max over the drills that passed; "
          "series B: the slowest VM of each drill\n")
    print(table(groups))
    if results["M"]:
        print("\nlive moves: times in ms, min / median / max over the moves that passed\n")
        print(move_table(results["M"]))
    failed = [d_ for _, _, ds in groups for d_ in ds if not d_["ok"]] + [m for m in results["M"] if not m["ok"]]
    for f in failed:
        print(f"FAILED: {json.dumps(f)}")
    for n, lines in results["node_errors"].items():
        if lines:
            print(f"node {n}: {len(lines)} error/warning line(s) other than failover notices, e.g. {lines[:3]}")
    for x in ANOMALIES:
        print(f"{x['label']}: {x['down']} not running after {x['after_s']} s; stopped and started again "
              f"({x['recovered_after_s']} s)")
    for u in UNEXPECTED:
        print(f"node {u['node']} exited on its own ({u['label']}, status {u['rc']}): {u['stderr'][-3:]}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": info, "started_utc": started, "elapsed_s": elapsed, "table": table(groups),
                       "drills": results}, f, indent=1)
    return 1 if failed or UNEXPECTED or ANOMALIES else 0


if __name__ == "__main__":
    sys.exit(main())

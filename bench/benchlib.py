"""Helpers shared by the benchmarks that run the test guest under minihv and QEMU (migration.py,
netbench.py): commands in network namespaces, the guest's console lines, VMM processes, QMP, the
QEMU command line, private copies of the binaries, and the machine line of a results section."""
import atexit
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

STALL = re.compile(r"^STALL cpu=(\d+) ms=(\d+)")
HB = re.compile(r"^HB cpu=(\d+) ")
BAD = re.compile(r"^CORRUPT|^PANIC|errs=[1-9]")


def sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


def in_ns(ns, cmd):
    return ["ip", "netns", "exec", ns, *cmd]


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


# ---------------------------------------------------------------- guest console

def wait_for(pred, timeout, what):
    t = time.monotonic() + timeout
    while time.monotonic() < t:
        if pred():
            return
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def warmed_up(console):
    """The guest has run its workload for a while (cpu 0's second heartbeat, ≥ 1 s in)."""
    return lambda: "HB cpu=0 seq=2 " in read(console)


def resumed(console, cpus):
    """Every vCPU has printed a heartbeat on the destination (the overdue one comes at once)."""
    return lambda: {m.group(1) for m in map(HB.match, read(console).splitlines()) if m} >= {str(c) for c in range(cpus)}


def guest_downtime(console):
    """Largest first-STALL gap of the vCPUs on the destination console (None: every gap < the
    guest's stall_ms)."""
    first = {}
    seen_hb = set()
    for line in read(console).splitlines():
        m = STALL.match(line)
        if m and m.group(1) not in first and m.group(1) not in seen_hb:
            first[m.group(1)] = int(m.group(2))
        h = HB.match(line)
        if h:
            seen_hb.add(h.group(1))
    return max(first.values()) if first else None


def check_guest(console, who):
    bad = [l for l in read(console).splitlines() if BAD.search(l)]
    if bad:
        raise RuntimeError(f"{who}: the guest reported errors: {bad[:3]}")


# ---------------------------------------------------------------- processes

class Procs:
    def __init__(self):
        self.p = []

    def start(self, cmd, log):
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=open(log, "w"))
        self.p.append(p)
        return p

    def stop(self):
        for p in self.p:
            if p.poll() is None:
                p.terminate()
        for p in self.p:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.p = []


# ---------------------------------------------------------------- QEMU

class QMP:
    def __init__(self, path):
        wait_for(lambda: os.path.exists(path), 10, path)
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rw")
        self.f.readline()  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "error" in r:
                raise RuntimeError(f"QMP {name}: {r['error']}")
            if "return" in r:
                return r["return"]

    def close(self):
        self.s.close()


def qemu_cmd(elf, cmdline, console, qmp, mem, cpus, incoming=False, extra=()):
    """QEMU 7.2 -M microvm booting the test guest ELF (-cpu host,-arch-capabilities: this PVM host
    refuses QEMU's write of MSR 0x10a); `extra`: more arguments (devices)."""
    return ["qemu-system-x86_64", "-M", "microvm,acpi=on", "-accel", "kvm", "-cpu", "host,-arch-capabilities",
            "-m", str(mem), "-smp", str(cpus), "-nodefaults", "-nographic", "-no-reboot",
            "-kernel", elf, "-append", cmdline, "-serial", f"file:{console}",
            "-qmp", f"unix:{qmp},server=on,wait=off", *extra, *(["-incoming", "defer"] if incoming else [])]


# ---------------------------------------------------------------- the binaries and the machine

def snapshot_binaries(build, prefix):
    """Private copies of build/minihv and the test guest ELF (removed at exit): a rebuild of the tree
    during the run (the machine is shared) must not mix two binaries into one table.
    Returns (minihv, elf, the copies' directory, minihv's build time as 'YYYY-MM-DD HH:MM')."""
    snap = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, snap, True)
    built = time.strftime("%Y-%m-%d %H:%M", time.gmtime(os.path.getmtime(f"{build}/minihv")))
    minihv = shutil.copy2(f"{build}/minihv", f"{snap}/minihv")
    elf = shutil.copy2(f"{build}/guest/testguest.elf", f"{snap}/testguest.elf")
    return minihv, elf, snap, built


def tree_head():
    return subprocess.run(["git", "log", "-1", "--format=%h %cs"], capture_output=True, text=True).stdout.strip()


def machine_line(runs, elapsed_s, built, head, per="row"):
    """The machine, the run and the binaries, as the first line of a results section."""
    u = os.uname()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return (f"machine: {os.cpu_count()} cpus ({cpu}), kernel {u.release}; {runs} interleaved runs per {per}, "
            f"medians; benchmark took {elapsed_s / 60:.1f} min; minihv built {built} "
            f"UTC, tree at {head}; QEMU {sh('qemu-system-x86_64', '--version').splitlines()[0]}")

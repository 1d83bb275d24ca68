#!/usr/bin/env python3
"""Start-up benchmark: process start -> the test guest's boot line and first heartbeat, for minihv
and for QEMU (-M microvm, KVM) booting the same ELF, interleaved in one run; plus minihv's own RSS
apart from guest RAM. Prints a Markdown table (docs/benchmarks.md keeps the results).

Usage: bench/startup.py [--runs N] [--build DIR]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def time_to_lines(cmd, marks, timeout=60.0):
    """Runs cmd; returns {mark: seconds from spawn to the first stdout line containing it}."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    found = {}
    try:
        for raw in p.stdout:
            line = raw.decode(errors="replace")
            for m in marks:
                if m not in found and m in line:
                    found[m] = time.monotonic() - t0
            if len(found) == len(marks) or time.monotonic() - t0 > timeout:
                break
    finally:
        p.kill()
        p.wait()
    missing = [m for m in marks if m not in found]
    if missing:
        sys.exit(f"{cmd[0]}: never printed {missing}: {p.stderr.read().decode(errors='replace')[-2000:]}")
    return found


def api(path, cmd):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall((json.dumps({"cmd": cmd}) + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        buf += s.recv(65536)
    return json.loads(buf)


def minihv_rss(build, elf):
    with tempfile.TemporaryDirectory() as d:
        sock = os.path.join(d, "api.sock")
        p = subprocess.Popen([f"{build}/minihv", "run", "--kernel", elf, "--cmdline", "idle", "--mem", "256M",
                              "--api", sock], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            for raw in p.stdout:
                if b"HB cpu=0 seq=2" in raw:
                    break
            return api(sock, "stats")
        finally:
            p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--build", default="build")
    a = ap.parse_args()
    elf = f"{a.build}/guest/testguest.elf"
    marks = ["minihv-testguest: boot", "HB cpu=0 seq=1 "]
    cmds = {
        "minihv": [f"{a.build}/minihv", "run", "--kernel", elf, "--cmdline", "idle", "--mem", "256M"],
        "qemu": ["qemu-system-x86_64", "-M", "microvm,acpi=on", "-accel", "kvm", "-cpu", "host,-arch-capabilities", "-m", "256M",
                 "-smp", "1", "-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot",
                 "-kernel", elf, "-append", "idle"],
    }
    results = {k: {m: [] for m in marks} for k in cmds}
    for _ in range(a.runs):
        for name, cmd in cmds.items():  # interleaved, so both see the same machine noise
            for m, t in time_to_lines(cmd, marks).items():
                results[name][m].append(t)
    print(f"machine: {os.uname().nodename}, {os.cpu_count()} cpus, kernel {os.uname().release}; "
          f"{a.runs} runs each, interleaved; median (min-max) in ms\n")
    print("| event | minihv | QEMU microvm | minihv / QEMU |")
    print("|---|---|---|---|")
    for m in marks:
        mh, qm = results["minihv"][m], results["qemu"][m]
        fmt = lambda v: f"{statistics.median(v)*1000:.1f} ({min(v)*1000:.1f}-{max(v)*1000:.1f})"
        print(f"| process start -> `{m.strip()}` | {fmt(mh)} | {fmt(qm)} | "
              f"{statistics.median(mh)/statistics.median(qm):.2f} |")
    s = minihv_rss(a.build, elf)
    kib = {k: s[k] // 1024 for k in ("rss_bytes", "guest_rss_bytes", "vmm_rss_bytes")}
    print(f"\nminihv RSS with a 256 MiB idle guest: total {kib['rss_bytes']} KiB, guest RAM {kib['guest_rss_bytes']} KiB, "
          f"VMM itself {kib['vmm_rss_bytes']} KiB ({kib['vmm_rss_bytes']/1024:.1f} MiB)")


if __name__ == "__main__":
    main()

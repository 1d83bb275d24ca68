#!/usr/bin/env python3
"""Disk benchmark: the test guest's `disk` workload on one extent of one shared-volume file, under
minihv (--disk VOLUME:DISK, lease held and checked on every write) and under QEMU's virtio-blk
(-M microvm, virtio-blk-device, the same file and byte range via the raw driver's offset/size,
cache=none, aio=io_uring), interleaved in one run; plus minihv on a plain image file (no lease) to
show what the lease costs. (-cpu host,-arch-capabilities: this PVM host refuses QEMU's write of
MSR 0x10a.) Prints a Markdown table (docs/benchmarks.md keeps the results).

What the guest workload measures: records of 4 KiB written sequentially around a ring, each
followed by a FLUSH and a read-back, one request in flight (docs/test-guest.md). So the figure is
synchronous 4 KiB write+flush+read round trips per second, not random-I/O IOPS or 1 MiB
throughput: bench/diskbench.py measures those with the guest's `diskbench` workload.

Usage: bench/disk.py [--runs N] [--secs S] [--build DIR]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HB = re.compile(r"^HB cpu=0 seq=(\d+) ms=(\d+) rec=(\d+) errs=(\d+)")


def records_per_second(cmd, secs, timeout):
    """Runs cmd (a guest running `disk secs=<secs>`); returns (records/s after the first heartbeat, errs)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    beats = []
    t0 = time.monotonic()
    try:
        for raw in p.stdout:
            m = HB.match(raw.decode(errors="replace"))
            if m:
                beats.append(tuple(int(x) for x in m.groups()))
            if b"DONE" in raw or b"BYE" in raw or time.monotonic() - t0 > timeout:
                break
    finally:
        p.kill()
        p.wait()
    if len(beats) < 3:
        sys.exit(f"{cmd[0]}: too few heartbeats {beats}: {p.stderr.read().decode(errors='replace')[-2000:]}")
    # From the second heartbeat on: boot and the resume scan are not part of the rate.
    (_, ms0, rec0, _), (_, ms1, rec1, errs) = beats[1], beats[-1]
    return (rec1 - rec0) * 1000.0 / (ms1 - ms0), errs


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: {r.stderr}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--secs", type=int, default=8)
    ap.add_argument("--build", default="build")
    a = ap.parse_args()
    minihv = f"{a.build}/minihv"
    elf = f"{a.build}/guest/testguest.elf"
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/var/tmp")) as d:
        vol = os.path.join(d, "shared.vol")
        img = os.path.join(d, "plain.img")
        run([minihv, "volume", "format", vol, "--size", "1G", "--cluster", "bench"])
        run([minihv, "volume", "disk", "create", vol, "bench", "--size", "256M"])
        disk = next(x for x in json.loads(run([minihv, "volume", "disk", "list", vol, "--json"]))
                    if x["name"] == "bench")
        with open(img, "wb") as f:
            f.truncate(disk["size_bytes"])
        cmdline = f"disk secs={a.secs}"
        guest = ["--kernel", elf, "--cmdline", cmdline, "--mem", "256M"]
        cmds = {
            "minihv volume disk": [minihv, "run", *guest, "--disk", f"{vol}:bench"],
            "minihv plain file": [minihv, "run", *guest, "--disk", img],
            "QEMU virtio-blk": [
                "qemu-system-x86_64", "-M", "microvm,acpi=on", "-accel", "kvm", "-cpu", "host,-arch-capabilities", "-m", "256M",
                "-smp", "1", "-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot",
                "-global", "virtio-mmio.force-legacy=false",  # the guest driver is virtio 1.x only
                "-kernel", elf, "-append", cmdline,
                "-blockdev", f"driver=raw,node-name=d0,offset={disk['offset_bytes']},size={disk['size_bytes']},"
                             f"file.driver=file,file.filename={vol},file.aio=io_uring,"
                             "cache.direct=on,cache.no-flush=off",
                "-device", "virtio-blk-device,drive=d0"],
        }
        res = {k: [] for k in cmds}
        for _ in range(a.runs):
            for name, cmd in cmds.items():  # interleaved: all see the same machine noise
                rate, errs = records_per_second(cmd, a.secs, a.secs + 60)
                if errs:
                    sys.exit(f"{name}: the guest counted {errs} errors")
                res[name].append(rate)
    u = os.uname()
    print(f"machine: {u.nodename}, {os.cpu_count()} cpus, kernel {u.release}; volume file on "
          f"{os.environ.get('BENCH_DIR', '/var/tmp')}; {a.runs} runs of {a.secs} s each, interleaved; "
          "median (min-max)\n")
    q = statistics.median(res["QEMU virtio-blk"])
    print("| guest `disk` workload (4 KiB write + FLUSH + read-back, QD1) | records/s | vs QEMU |")
    print("|---|---|---|")
    for name, v in res.items():
        print(f"| {name} | {statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f}) | "
              f"{statistics.median(v) / q:.2f} |")


if __name__ == "__main__":
    main()

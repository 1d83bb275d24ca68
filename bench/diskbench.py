#!/usr/bin/env python3
"""Disk throughput benchmark: the test guest's `diskbench` workload (docs/test-guest.md) under
minihv and under QEMU 7.2's virtio-blk (-M microvm, virtio-blk-device), interleaved in one run,
on the same disk file. Four jobs: 4 KiB randread qd=32, 4 KiB randwrite qd=32, 1 MiB seqread qd=4,
1 MiB seqwrite qd=4. Setups:

  minihv plain file   build/minihv run --disk FILE            (buffered I/O through the page cache)
  minihv volume disk  build/minihv run --disk VOLUME:DISK     (O_DIRECT, io_uring, lease checked;
                                                               fail timeout 5 s, see below)
  ... --no-sandbox    the volume disk without the seccomp sandbox: what the sandbox costs
                      (docs/security.md), in the same run
  QEMU virtio-blk     -drive file=FILE,format=raw,cache=none,aio=io_uring (O_DIRECT)

FILE and the volume disk are fully written before the first job, so reads hit allocated blocks.
(-cpu host,-arch-capabilities: this PVM host refuses QEMU's write of MSR 0x10a.) Prints a Markdown
table of medians (min-max) and the ratio minihv / QEMU for IOPS and MB/s (docs/benchmarks.md
keeps the results).

Usage: bench/diskbench.py [--runs N] [--secs S] [--build DIR] [--size MiB]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

LINE = re.compile(r"^DISKBENCH pattern=(\w+) bs=(\d+) qd=(\d+) ios=(\d+) bytes=(\d+) ms=(\d+) errs=(\d+)")
JOBS = [("randread", "4k", 32), ("randwrite", "4k", 32), ("seqread", "1m", 4), ("seqwrite", "1m", 4)]


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: {r.stderr}")
    return r.stdout


def bench(cmd, timeout):
    """Runs one guest; returns (IOPS, MB/s) from its DISKBENCH line."""
    try:
        r = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        sys.exit(f"{cmd[0]}: no DISKBENCH line within {timeout} s")
    out = r.stdout.decode(errors="replace")
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            ios, nbytes, ms, errs = (int(x) for x in m.groups()[3:])
            if errs:
                sys.exit(f"{cmd[0]}: the guest counted {errs} I/O errors: {line}")
            return ios * 1000.0 / ms, nbytes / 1e6 * 1000.0 / ms
    sys.exit(f"{cmd[0]}: no DISKBENCH line: {out[-2000:]} {r.stderr.decode(errors='replace')[-2000:]}")


def fill(path, offset, size):
    """Writes zeros over [offset, offset+size) so every block is allocated."""
    with open(path, "r+b") as f:
        f.seek(offset)
        chunk = bytes(1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--secs", type=int, default=4)
    ap.add_argument("--build", default="build")
    ap.add_argument("--size", type=int, default=256, help="disk size in MiB")
    a = ap.parse_args()
    minihv = f"{a.build}/minihv"
    elf = f"{a.build}/guest/testguest.elf"
    size = a.size << 20
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/var/tmp")) as d:
        img = os.path.join(d, "plain.img")
        vol = os.path.join(d, "shared.vol")
        with open(img, "wb") as f:
            f.truncate(size)
        fill(img, 0, size)
        # Lease timings longer than the lab defaults (fail 800 ms, I/O timeout 100 ms): under 1 MiB
        # qd=4 O_DIRECT load on this loaded 2-vCPU VM a renewal once missed the 800 ms fail timeout
        # and the VM stopped itself. Renewals still run every 200 ms and writes are still checked.
        run([minihv, "volume", "format", vol, "--size", f"{a.size + 256}M", "--cluster", "bench",
             "--renew-ms", "200", "--fail-ms", "5000", "--dead-ms", "10000", "--io-timeout-ms", "2000"])
        run([minihv, "volume", "disk", "create", vol, "bench", "--size", f"{a.size}M"])
        disk = next(x for x in json.loads(run([minihv, "volume", "disk", "list", vol, "--json"]))
                    if x["name"] == "bench")
        fill(vol, disk["offset_bytes"], disk["size_bytes"])

        def cmds(cmdline):
            guest = ["--kernel", elf, "--cmdline", cmdline, "--mem", "256M"]
            return {
                "minihv plain file": [minihv, "run", *guest, "--disk", img],
                "minihv volume disk": [minihv, "run", *guest, "--disk", f"{vol}:bench"],
                "minihv volume disk --no-sandbox": [minihv, "run", *guest, "--disk", f"{vol}:bench", "--no-sandbox"],
                "QEMU virtio-blk": [
                    "qemu-system-x86_64", "-M", "microvm,acpi=on", "-accel", "kvm",
                    "-cpu", "host,-arch-capabilities", "-m", "256M", "-smp", "1", "-nographic",
                    "-nodefaults", "-serial", "stdio", "-no-reboot",
                    "-global", "virtio-mmio.force-legacy=false",  # the guest driver is virtio 1.x only
                    "-drive", f"id=d,file={img},format=raw,if=none,cache=none,aio=io_uring",
                    "-device", "virtio-blk-device,drive=d",
                    "-kernel", elf, "-append", cmdline],
            }

        setups = list(cmds("x"))
        res = {(j, s): [] for j in JOBS for s in setups}
        for _ in range(a.runs):
            for job in JOBS:  # interleaved: every setup sees the same machine noise
                pattern, bs, qd = job
                for name, cmd in cmds(f"diskbench pattern={pattern} bs={bs} qd={qd} secs={a.secs}").items():
                    res[(job, name)].append(bench(cmd, a.secs + 60))
    u = os.uname()
    print(f"machine: {u.nodename}, {os.cpu_count()} cpus, kernel {u.release}, load {os.getloadavg()[0]:.1f}; "
          f"disk {a.size} MiB in {os.environ.get('BENCH_DIR', '/var/tmp')}; {a.runs} interleaved runs of "
          f"{a.secs} s each; median (min-max)\n")
    sandbox = [(job, statistics.median(v[0] for v in res[(job, "minihv volume disk")]) /
                statistics.median(v[0] for v in res[(job, "minihv volume disk --no-sandbox")])) for job in JOBS]
    print("sandboxed / unsandboxed IOPS (volume disk): " +
          ", ".join(f"{j[0]} {j[1]} {r:.3f}" for j, r in sandbox) + "\n")
    print("| job | setup | IOPS | MB/s | IOPS vs QEMU | MB/s vs QEMU |")
    print("|---|---|---|---|---|---|")
    for job in JOBS:
        q_iops = statistics.median(v[0] for v in res[(job, "QEMU virtio-blk")])
        q_mbs = statistics.median(v[1] for v in res[(job, "QEMU virtio-blk")])
        for name in setups:
            iops = [v[0] for v in res[(job, name)]]
            mbs = [v[1] for v in res[(job, name)]]
            print(f"| {job[0]} {job[1]} qd={job[2]} | {name} | {statistics.median(iops):.0f} "
                  f"({min(iops):.0f}-{max(iops):.0f}) | {statistics.median(mbs):.1f} ({min(mbs):.1f}-{max(mbs):.1f}) | "
                  f"{statistics.median(iops) / q_iops:.2f} | {statistics.median(mbs) / q_mbs:.2f} |")


if __name__ == "__main__":
    main()

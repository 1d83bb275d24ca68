#!/usr/bin/env python3
"""ocf:minihv:vm under a real Pacemaker + Corosync cluster (issue 18; docs/pacemaker.md).

Three nodes on this machine (tests/pacemaker/pcmk_cluster.py: a network namespace and
mount/UTS/IPC/PID namespaces each, token 1000, STONITH off), a minihv volume file all of them
see, `minihv receiver serve` on each node, and one resource `v`: the test guest's `disk` workload
on the volume's disk d0, allow-migrate=true. The agent comes from the build tree (bound onto
/usr/lib/ocf/resource.d/minihv inside the nodes; nothing is installed on the host), each node's
/run/minihv is a directory of the work dir (a node's restart empties it, as a reboot empties
/run), so the test reads every console and control socket from outside.

Checked:
  * `crm_resource --move` moves v live: migrate_to ran on the source (its log has the move's
    JSON, result ok), the guest goes on on the target (heartbeats after the source's last, no boot
    banner), errs=0;
  * killing the node that runs v restarts it on a survivor, whose disk resumes at or after the
    last record the killed instance had acknowledged, no CORRUPT line;
  * N randomized moves and kills (default 10), and all along (a sampler every 100 ms over every
    node's control socket): never two VMMs of v running at once, never two nodes running v once
    the cluster has settled.

Exit 0 when every check passed; prints a line per step and a summary (with --json, the timings
for bench/pacemaker.py). Needs root, /dev/kvm, pacemaker, corosync (scripts/bootstrap).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from pcmk_cluster import Cluster, ClusterError  # noqa: E402

RSC = "v"
RECEIVER_PORT = 7787
BANNER = "minihv-testguest"
HB = re.compile(r"^HB cpu=0 seq=(\d+) ms=(\d+) rec=(-?\d+) errs=(\d+)")
RESUME = re.compile(r"^DISK resume last=(-?\d+)")
STALL = re.compile(r"^STALL cpu=\d+ ms=(\d+)")


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


class Console:
    """A node's console file (its /run/minihv/ocf/v.console), read as it grows."""

    def __init__(self, path):
        self.path, self.pos, self.text = path, 0, ""

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                more = f.read()
        except OSError:
            return
        self.pos += len(more)
        self.text += more.decode(errors="replace")

    def lines(self, pattern):
        self.poll()
        return [m for m in (pattern.match(l) for l in self.text.splitlines()) if m]

    def heartbeats(self):
        return [(int(m[1]), int(m[3]), int(m[4])) for m in self.lines(HB)]  # seq, rec, errs


def vm_state(sock):
    """The VMM's state from its control socket, or None."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(sock)
            s.sendall(b'{"cmd":"status"}\n')
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return json.loads(buf).get("state")
    except (OSError, ValueError):
        return None


class Lab:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.minihv = os.path.join(self.build, "minihv")
        self.work = tempfile.mkdtemp(prefix="minihv-pcmk-")
        self.subnet = 60 + os.getpid() % 60
        self.vol = os.path.join(self.work, "vol.img")
        self.key = os.path.join(self.work, "cluster.key")
        self.cluster = None
        self.double = []        # what the sampler saw: (time, [nodes running v])
        self.sampling = threading.Event()
        self.timings = {"move_s": [], "move_stall_ms": [], "failover_s": [], "formed_s": None}

    # ---- set-up
    def sh(self, *argv):
        import subprocess
        r = subprocess.run(list(argv), capture_output=True, text=True)
        check(r.returncode == 0, "%s: %s" % (" ".join(argv), r.stderr.strip()))
        return r.stdout

    def run_dir(self, i):
        return os.path.join(self.work, "run%d" % i)

    def console_path(self, i):
        return os.path.join(self.run_dir(i), "ocf", RSC + ".console")

    def console(self, i):
        return Console(self.console_path(i))

    def forget_consoles(self, but):
        """Before a move or a kill: the consoles of the nodes that do not run v go, so that
        what the next instance on one of them prints is all its console holds."""
        for i in (1, 2, 3):
            if i != but:
                for suffix in ("", ".1"):
                    try:
                        os.unlink(self.console_path(i) + suffix)
                    except FileNotFoundError:
                        pass

    def sock(self, i):
        return os.path.join(self.run_dir(i), "ocf", RSC + ".sock")

    def node_log(self, i):
        return os.path.join(self.run_dir(i), "ocf", RSC + ".log")

    def up(self):
        self.sh(self.minihv, "volume", "format", self.vol, "--size", "64M", "--cluster", "pcmk")
        self.sh(self.minihv, "volume", "disk", "create", self.vol, "d0", "--size", "16M")
        self.sh(self.minihv, "cluster", "init-key", "--key", self.key)
        for i in (1, 2, 3):
            os.makedirs(self.run_dir(i), mode=0o700)
        self.cluster = Cluster(os.path.join(self.work, "pcmk"), prefix="mhp", subnet=self.subnet,
                               binds={"/usr/lib/ocf/resource.d/minihv": os.path.join(self.build, "ocf/resource.d/minihv"),
                                      "/run/minihv": os.path.join(self.work, "run{i}")},
                               verbose=self.args.verbose)
        self.timings["formed_s"] = self.cluster.up()
        print("cluster formed in %.1f s (3 nodes, token 1000)" % self.timings["formed_s"], flush=True)
        for i in (1, 2, 3):
            self.start_receiver(i)

    def addr(self, i):
        return "10.%d.0.%d" % (self.subnet, i)

    def start_receiver(self, i):
        log = "/run/minihv/receiver.log"
        self.cluster.run(i, "setsid %s receiver serve --listen %s:%d --key %s </dev/null >>%s 2>&1 &"
                         % (self.minihv, self.addr(i), RECEIVER_PORT, self.key, log), check=True)
        path = os.path.join(self.run_dir(i), "receiver.log")
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if "receiver serving on" in open(path).read() if os.path.exists(path) else False:
                return
            time.sleep(0.05)
        raise Failed("node%d's receiver did not start: %s" % (i, open(path).read() if os.path.exists(path) else "no log"))

    def add_vm(self):
        guest = os.path.join(self.build, "guest", "testguest.elf")
        receivers = " ".join("node%d=%s:%d" % (i, self.addr(i), RECEIVER_PORT) for i in (1, 2, 3))
        params = {"kernel": guest, "cmdline": "disk", "memory": "64M", "disk": self.vol + ":d0",
                  "migration_addresses": receivers, "key": self.key, "binary": self.minihv,
                  "streams": "2", "verify": "true"}
        nv = "".join('<nvpair id="v-%s" name="%s" value="%s"/>' % (k, k, v) for k, v in params.items())
        self.cluster.add_resource(
            '<primitive id="%s" class="ocf" provider="minihv" type="vm">'
            '<instance_attributes id="v-params">%s</instance_attributes>'
            '<meta_attributes id="v-meta"><nvpair id="v-migrate" name="allow-migrate" value="true"/></meta_attributes>'
            '<operations><op id="v-monitor" name="monitor" interval="2s" timeout="20s"/></operations>'
            '</primitive>' % (RSC, nv))
        where = self.wait_running(None, 60)
        print("v started on %s" % where, flush=True)
        # Pacemaker's own checks of the agent: its meta-data, and validate-all with v's parameters.
        md = self.cluster.run(where, ["crm_resource", "--show-metadata", "ocf:minihv:vm"])
        check(md.returncode == 0 and 'name="migrate_from"' in md.stdout, "crm_resource --show-metadata: %s" % md.stderr)
        val = self.cluster.run(where, ["crm_resource", "--validate", "--resource", RSC])
        check(val.returncode == 0, "crm_resource --validate --resource v: %s%s" % (val.stdout, val.stderr))
        return where

    # ---- watching
    def running_vmms(self):
        return [i for i in (1, 2, 3) if vm_state(self.sock(i)) == "running"]

    def sampler(self):
        while self.sampling.is_set():
            r = self.running_vmms()
            if len(r) > 1:
                self.double.append((time.time(), r))
            time.sleep(0.1)

    def wait_running(self, on, limit, exclude=None):
        """Waits until the cluster runs v on one node (`on`, or any) and that node's guest has
        a heartbeat; returns the node's index."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            st = self.cluster.try_crm_mon()
            where = st.where(RSC) if st else []
            if len(where) == 1 and (on is None or where[0] == "node%d" % on) and where[0] != "node%s" % exclude:
                i = int(where[0][4:])
                if self.console(i).heartbeats():
                    return i
            time.sleep(0.1)
        raise Failed("v is not running %s after %d s (crm_mon: %s)" % ("on node%d" % on if on else "anywhere", limit,
                                                                      self.cluster.try_crm_mon() and self.cluster.where(RSC)))

    def guest_checks(self, i, what):
        c = self.console(i)
        hbs = c.heartbeats()
        check(hbs, "%s: no heartbeat on node%d" % (what, i))
        check(all(e == 0 for _, _, e in hbs), "%s: the guest on node%d reports errors: %s" % (what, i, hbs[-3:]))
        check("CORRUPT" not in c.text, "%s: a CORRUPT line on node%d" % (what, i))
        return c

    # ---- the steps
    def move(self, src, dst):
        before = self.console(src).heartbeats()[-1]
        self.forget_consoles(but=src)
        t0 = time.monotonic()
        self.cluster.move(RSC, "node%d" % dst, clear=False, wait=False)
        # The move's time: until the target's VMM runs the guest (its control socket says so).
        end = t0 + 60
        while vm_state(self.sock(dst)) != "running" and time.monotonic() < end:
            time.sleep(0.005)
        dt = time.monotonic() - t0
        # Done when the cluster has it on the target and the guest beats there.
        i = self.wait_running(dst, 60)
        self.cluster.clear(RSC)
        self.cluster.next_second()
        check(i == dst, "moved to node%d, not node%d" % (i, dst))
        c = self.guest_checks(dst, "move")
        check(BANNER not in c.text, "move to node%d: the guest booted again (a restart, not a live move)" % dst)
        first = c.heartbeats()[0]
        check(first[0] > before[0], "move: node%d's first heartbeat seq %d is not after the source's %d"
              % (dst, first[0], before[0]))
        log = open(self.node_log(src)).read()
        moves = [l for l in log.splitlines() if "migrate_to node%d:" % dst in l]
        check(moves and '"result":"ok"' in moves[-1], "node%d's log has no successful migrate_to node%d" % (src, dst))
        check('"verified":true' in moves[-1], "the move was not verified")
        stalls = [int(m[1]) for m in c.lines(STALL)]
        self.timings["move_s"].append(dt)
        self.timings["move_stall_ms"].append(max(stalls, default=0))
        print("move node%d -> node%d: %.2f s, guest-seen pause %s, seq %d -> %d" %
              (src, dst, dt, "%d ms" % max(stalls) if stalls else "none", before[0], first[0]), flush=True)

    def kill(self, victim):
        acked = self.console(victim).heartbeats()[-1][1]
        self.forget_consoles(but=victim)
        t0 = time.monotonic()
        self.cluster.kill(victim)
        i = self.wait_running(None, 90, exclude=victim)
        dt = time.monotonic() - t0
        check(i != victim, "v still runs on the killed node%d" % victim)
        c = self.guest_checks(i, "failover")
        end = time.monotonic() + 20  # the disk scan ends after the first heartbeat
        while not c.lines(RESUME) and time.monotonic() < end:
            time.sleep(0.1)
        resumes = [int(m[1]) for m in c.lines(RESUME)]
        check(resumes, "failover: node%d's guest printed no DISK resume line" % i)
        check(resumes[-1] >= acked, "failover: the disk resumed at %d, before the acknowledged record %d"
              % (resumes[-1], acked))
        self.timings["failover_s"].append(dt)
        print("kill node%d: v on node%d after %.2f s, disk resumed at %d (acknowledged before the kill: %d)" %
              (victim, i, dt, resumes[-1], acked), flush=True)
        # The node comes back as after a reboot: an empty /run/minihv, its receiver started again.
        shutil.rmtree(self.run_dir(victim))
        os.makedirs(self.run_dir(victim), mode=0o700)
        self.cluster.start(victim, wait=True)
        self.start_receiver(victim)
        self.cluster.next_second()
        return i

    def scenario(self):
        rng = random.Random(self.args.seed)
        print("seed %d" % self.args.seed, flush=True)
        where = self.add_vm()
        self.sampling.set()
        t = threading.Thread(target=self.sampler, daemon=True)
        t.start()
        try:
            others = [j for j in (1, 2, 3) if j != where]
            self.move(where, others[0])
            where = others[0]
            where = self.kill(where)
            for k in range(self.args.rounds):
                if (k % 2 == 0) if self.args.plan == "alternate" else rng.random() < 0.5:
                    dst = rng.choice([j for j in (1, 2, 3) if j != where])
                    self.move(where, dst)
                    where = dst
                else:
                    where = self.kill(where)
                check(not self.double, "two VMMs of v ran at once: %s" % self.double[:3])
        finally:
            self.sampling.clear()
            t.join()
        check(not self.double, "two VMMs of v ran at once: %s" % self.double[:3])
        st = self.cluster.crm_mon()
        check(len(st.where(RSC)) == 1, "v runs on %s at the end" % st.where(RSC))

    def down(self):
        if self.cluster:
            self.cluster.down()
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(HERE, "..", "..", "build"))
    ap.add_argument("--rounds", type=int, default=10, help="randomized moves and kills")
    ap.add_argument("--plan", choices=("random", "alternate"), default="random",
                    help="alternate: a move, then a kill, ... (bench/pacemaker.py)")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--json", help="write the timings here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    lab = Lab(args)
    try:
        lab.up()
        lab.scenario()
    except (Failed, ClusterError) as e:
        print("pacemaker_test: FAILED: %s" % e, flush=True)
        if lab.cluster:
            lab.cluster.dump_logs(lines=30)
        for i in (1, 2, 3):
            p = lab.node_log(i)
            if os.path.exists(p):
                print("--- node%d %s (tail)\n%s" % (i, p, "".join(open(p).readlines()[-15:])))
        lab.down()
        return 1
    tm = lab.timings
    med = lambda xs: statistics.median(xs) if xs else float("nan")
    print("pacemaker_test: passed: %d moves (median %.2f s), %d failovers (median %.2f s), no double run"
          % (len(tm["move_s"]), med(tm["move_s"]), len(tm["failover_s"]), med(tm["failover_s"])), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(tm, f, indent=1)
    lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())

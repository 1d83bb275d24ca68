#!/usr/bin/env python3
"""Self-test of pcmk_cluster.py: a 3-node cluster and ocf:pacemaker:Dummy.

  1. cluster up (formation time); the nodes' namespaces are distinct; the root
     netns reaches a node through <prefix>h; an agent bound in from the work
     dir (ocf:pmselftest:envcheck, not installed on the host) runs under
     pacemaker-execd and sees the per-node environment the harness passes
  2. resource d (Dummy, allow-migrate=true, monitor 1s) starts
  3. crm_resource --move d to another node: migrate_to -> migrate_from -> stop
  4. SIGKILL the node running d: d started on a survivor (failover time)
  5. the killed node comes back (rejoin time); d stays where it is
  6. N randomized moves/kills (default 10)

Throughout, crm_mon is polled every ~100 ms and where('d') must never have
two entries -- except inside a live migration, where Pacemaker itself counts
the resource on source and target until the source's stop (recognised from
the operation history, Status.migration()); after kills, never.  A watcher
thread also looks at Dummy's state file on every running node
(/run/Dummy-d.state, i.e. where d *really* runs) every 10 ms: it may be on two
nodes only during a move (Dummy's migrate_to removes it, so in practice never).
Each step also checks the operations the controllers logged (move: exactly
migrate_to, migrate_from, stop; failover: a start; nothing after --clear or a
rejoin).  Ends with no failed actions and nothing of the cluster left.

Needs root.  Usage: pcmk_cluster_selftest.py [--workdir D] [--seed S] [--ops N]
"""

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pcmk_cluster import Cluster, ClusterError  # noqa: E402

RSC = "d"
DUMMY = ('<primitive id="d" class="ocf" provider="pacemaker" type="Dummy">'
         '<meta_attributes id="d-meta">'
         '<nvpair id="d-meta-allow-migrate" name="allow-migrate" value="true"/>'
         '</meta_attributes>'
         '<operations><op id="d-monitor-1s" name="monitor" interval="1s" timeout="10s"/>'
         '</operations></primitive>')
STATE = "/run/Dummy-d.state"

# An agent that is not installed on the host: bound into each node at
# /usr/lib/ocf/resource.d/pmselftest (as ocf:minihv:vm would be), records the
# per-node environment variable the harness passes, then acts as Dummy.
ENVCHECK_AGENT = """#!/bin/sh
case "$1" in start) echo "${PMSELFTEST_NODE:-unset}" > /run/pmselftest-env ;; esac
exec /usr/lib/ocf/resource.d/pacemaker/Dummy "$@"
"""
ENVCHECK_DIR = "/usr/lib/ocf/resource.d/pmselftest"


class Failed(Exception):
    pass


class StateWatcher(threading.Thread):
    """Where does Dummy really run: its state file on each running node."""

    def __init__(self, c: Cluster, period=0.01):
        super().__init__(daemon=True)
        self.c, self.period = c, period
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.allow_double = False        # set while a live migration is expected
        self.bad = []                    # (time, nodes) doubles outside migrations
        self.overlap = []                # durations of doubles inside migrations
        self._since = None
        self.samples = 0

    def holders(self):
        out = []
        for i, n in list(self.c.nodes.items()):
            pid = n.init_pid
            if pid is None:
                continue
            try:
                os.stat("/proc/%d/root%s" % (pid, STATE))
                out.append(n.name)
            except OSError:
                pass
        return out

    def run(self):
        while not self.stop_ev.is_set():
            h = self.holders()
            now = time.monotonic()
            with self.lock:
                self.samples += 1
                if len(h) > 1:
                    if self._since is None:
                        self._since = now
                    if not self.allow_double:
                        self.bad.append((time.strftime("%H:%M:%S"), h))
                elif self._since is not None:
                    self.overlap.append(now - self._since)
                    self._since = None
            time.sleep(self.period)

    def stop(self):
        self.stop_ev.set()
        self.join(2)


class SelfTest:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        agents = os.path.join(args.workdir, "ocf")
        os.makedirs(agents, exist_ok=True)
        with open(os.path.join(agents, "envcheck"), "w") as f:
            f.write(ENVCHECK_AGENT)
        os.chmod(os.path.join(agents, "envcheck"), 0o755)
        self.c = Cluster(args.workdir, prefix=args.prefix, subnet=args.subnet,
                         binds={ENVCHECK_DIR: (agents, "ro")},
                         env={"PMSELFTEST_NODE": "{name}"}, verbose=args.verbose)
        self.t = {}                      # name -> list of seconds
        self.max_where = 0               # most nodes d was shown on outside live migrations
        self.migr_seen = 0               # polls that saw d on source+target mid-migration
        self.in_move = False
        self.polls = 0
        self.deadline = time.monotonic() + args.budget

    # --------------------------------------------------------------- helpers
    def rec(self, name, secs):
        self.t.setdefault(name, []).append(secs)

    def check_time(self):
        if time.monotonic() > self.deadline:
            raise Failed("time budget of %ss exceeded" % self.args.budget)

    def on_status(self, st):
        self.polls += 1
        w = st.where(RSC)
        if len(w) > 1 and st.migration(RSC) and self.in_move:
            self.migr_seen += 1          # Pacemaker's own view of a live migration
            return
        self.max_where = max(self.max_where, len(w))
        if len(w) > 1:
            raise Failed("crm_mon shows %s active on %s (dc=%s online=%s, history %s)"
                         % (RSC, w, st.dc, st.online,
                            {n: h.get(RSC) for n, h in st.history.items()}))

    def wait_rsc(self, want, timeout=30, interval=0.1):
        self.check_time()
        return self.c.wait_rsc(RSC, want, timeout=timeout, on_status=self.on_status,
                               interval=interval)

    def current(self):
        st = self.c.crm_mon()
        self.on_status(st)
        w = st.where(RSC)
        if len(w) != 1:
            raise Failed("%s not on exactly one node: %s" % (RSC, w))
        return w[0], st

    def idx(self, name):
        return self.c.node(name).index

    # --------------------------------------------------------------- actions
    def do_move(self, label, interval=0.1):
        src, st = self.current()
        target = self.rng.choice([n for n in st.online if n != src])
        mark = self.c.log_mark()
        t0 = time.monotonic()
        e0 = time.time()
        self.watch.allow_double = True
        self.in_move = True
        self.c.run(self.c._any_node(), ["crm_resource", "--move", "--resource", RSC,
                                        "--node", target], check=True)
        self.wait_rsc([target], interval=interval)
        t_started = time.monotonic() - t0
        # the controllers' own record of what ran: migrate_to, migrate_from, stop
        want = [(src, "migrate_to"), (target, "migrate_from"), (src, "stop")]

        def actions(all_ops):
            return [(ts, node, op) for ts, node, op, _r, res in all_ops
                    if res == "ok" and op not in ("monitor", "probe")]
        try:
            ops = actions(self.c.wait_ops(mark, RSC, lambda o: len(actions(o)) >= 3))
        except ClusterError as e:
            raise Failed("move %s -> %s: %s" % (src, target, e))
        seq = [(node, op) for _ts, node, op in ops]
        if seq != want:
            raise Failed("move %s -> %s: expected %s; controllers logged %s"
                         % (src, target, want, seq))
        # state files: only on target now
        time.sleep(0.05)
        self.watch.allow_double = False
        self.in_move = False
        h = self.watch.holders()
        if h != [target]:
            raise Failed("after the move, Dummy's state file is on %s, not [%s]" % (h, target))
        t_stop = ops[2][0] - e0
        self.c.clear(RSC)
        # the transition --clear triggers must not do anything to d (stickiness)
        self.c.settle(timeout=30)
        after = [(node, op) for _ts, node, op, _r, res in self.c.ops_since(mark, RSC)
                 if op not in ("monitor", "probe")]
        if after != want:
            raise Failed("move %s -> %s: operations after --clear: %s" % (src, target, after))
        if self.c.where(RSC) != [target]:
            raise Failed("move %s -> %s: d is on %s after --clear" % (src, target,
                                                                      self.c.where(RSC)))
        Cluster.next_second()
        self.rec(label + ": crm_mon shows Started on target", t_started)
        self.rec(label + ": cmd -> source stop done (log)", t_stop)
        self.rec(label + ": migrate_to -> stop (log)", ops[2][0] - ops[0][0])
        return "move %s -> %s: %.2fs (stop logged at %.2fs)" % (src, target, t_started, t_stop)

    def do_kill(self, label, holder=True):
        src, st = self.current()
        if holder:
            victim = src
        else:
            victim = self.rng.choice([n for n in st.online if n != src])
        vi = self.idx(victim)
        mark = self.c.log_mark()
        t0 = time.monotonic()
        self.c.kill(vi)
        if holder:
            s = self.wait_rsc(lambda w: len(w) == 1 and w[0] != victim, timeout=40)
            t_fail = time.monotonic() - t0
            new = s.where(RSC)[0]
            self.rec(label + ": kill -> Started on survivor", t_fail)
            # no migration for a dead node: a plain start on the survivor
            try:
                ops = self.c.wait_ops(mark, RSC, lambda o: any(
                    x[1] == new and x[2] == "start" and x[4] == "ok" for x in o))
            except ClusterError as e:
                raise Failed("failover to %s: %s" % (new, e))
            ops = [(node, op) for _ts, node, op, _r, res in ops if op not in ("monitor", "probe")]
            if ops != [(new, "start")]:
                raise Failed("failover to %s: unexpected ops %s" % (new, ops))
            msg = "kill %s (running d): Started on %s after %.2fs" % (victim, new, t_fail)
        else:
            msg = "kill %s (idle)" % victim
        t1 = time.monotonic()
        self.c.start(vi)
        self.c.wait_until(lambda s: victim in s.online and s.dc is not None, timeout=40,
                          what="%s back online" % victim, on_status=self.on_status)
        t_back = time.monotonic() - t1
        self.rec(label + ": start -> online again", t_back)
        # stickiness: d stays where it is, nothing else happens to it
        self.c.settle(timeout=30)
        after, _ = self.current()
        if holder and after == victim:
            raise Failed("%s moved back to the rejoined %s" % (RSC, victim))
        extra = [(node, op) for _ts, node, op, _r, res in self.c.ops_since(mark, RSC)
                 if op not in ("monitor", "probe")]
        if extra != ([(after, "start")] if holder else []):
            raise Failed("kill %s: unexpected operations on %s: %s" % (victim, RSC, extra))
        Cluster.next_second()
        return msg + "; %s online again after %.2fs" % (victim, t_back)

    def check_host_link(self):
        """The root netns reaches a node through <prefix>h (10.X.0.254)."""
        c = self.c
        n = c.node(2)
        srv = ("import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
               "socket.SO_REUSEADDR, 1); s.bind(('%s', 7779)); s.listen(1); s.settimeout(5); "
               "c, a = s.accept(); c.sendall(('%%s %%s' %% (socket.gethostname(), a[0])).encode())"
               % n.addr)
        th = threading.Thread(target=c.run, args=(2, ["python3", "-c", srv]),
                              kwargs={"timeout": 10}, daemon=True)
        th.start()
        got, end = None, time.monotonic() + 5
        while got is None and time.monotonic() < end:
            try:
                with socket.create_connection((n.addr, 7779), timeout=1) as sk:
                    got = sk.recv(100).decode()
            except OSError:
                time.sleep(0.05)
        th.join(5)
        if got != "%s %s" % (n.name, c.host_addr):
            raise Failed("host -> %s:7779 via %s: got %r" % (n.addr, c.host_if, got))
        print("root netns (%s) reached %s at %s" % (c.host_addr, n.name, n.addr), flush=True)

    def check_bind_and_env(self):
        """Extra bind (agent not installed on the host) and per-node env reach the
        agents run by pacemaker-execd."""
        c = self.c
        t0 = time.monotonic()
        if os.path.exists(ENVCHECK_DIR):
            raise Failed("%s exists on the host" % ENVCHECK_DIR)
        r = c.run(1, ["crm_resource", "--list-agents", "ocf:pmselftest"], check=True)
        if "envcheck" not in r.stdout.split():
            raise Failed("ocf:pmselftest:envcheck not listed in node1: %r" % r.stdout)
        c.add_resource('<primitive id="e" class="ocf" provider="pmselftest" type="envcheck"/>')
        s = c.wait_rsc("e", lambda w: len(w) == 1, timeout=30)
        node = s.where("e")[0]
        with open(c.node_path(node, "/run/pmselftest-env")) as f:
            seen = f.read().strip()
        if seen != node:
            raise Failed("agent on %s saw PMSELFTEST_NODE=%r" % (node, seen))
        c.remove_resource("e")
        if os.path.exists(ENVCHECK_DIR):
            raise Failed("%s appeared on the host" % ENVCHECK_DIR)
        self.rec("bind+env check (start, read, stop, delete)", time.monotonic() - t0)
        print("ocf:pmselftest:envcheck (bound, not on the host) ran on %s and saw "
              "PMSELFTEST_NODE=%s" % (node, seen), flush=True)

    # ------------------------------------------------------------------ main
    def run(self):
        c = self.c
        t_form = c.up(timeout=60)
        self.rec("cluster formed (3 online + DC)", t_form)
        print("cluster up: %.2fs (network %.2fs)" % (t_form, c.timings["net_setup"]), flush=True)
        # nodes really are separate
        seen = set()
        for i, n in c.nodes.items():
            r = c.run(i, ["sh", "-c", "hostname; readlink /proc/1/ns/pid /proc/self/ns/net; "
                          "ip -4 -o addr show dev eth0"], check=True)
            lines = r.stdout.split()
            if lines[0] != n.name or n.addr not in r.stdout:
                raise Failed("%s: unexpected identity %r" % (n.name, r.stdout))
            seen.add(tuple(lines[1:3]))
        if len(seen) != len(c.nodes):
            raise Failed("nodes share namespaces: %s" % seen)
        self.check_host_link()
        self.check_bind_and_env()
        self.watch = StateWatcher(c)
        self.watch.start()
        t0 = time.monotonic()
        c.add_resource(DUMMY)
        s = self.wait_rsc(lambda w: len(w) == 1)
        self.rec("resource added -> Started", time.monotonic() - t0)
        print("d started on %s after %.2fs" % (s.where(RSC)[0], time.monotonic() - t0), flush=True)

        # (first move: crm_mon polled back-to-back, to catch Pacemaker's own
        # two-node view of the live migration)
        print(self.do_move("move", interval=0), flush=True)
        print(self.do_kill("failover", holder=True), flush=True)

        for k in range(self.args.ops):
            self.check_time()
            op = self.rng.choices(["move", "kill-holder", "kill-other"], [5, 4, 1])[0]
            if op == "move":
                msg = self.do_move("random move")
            else:
                msg = self.do_kill("random " + op, holder=(op == "kill-holder"))
            print("  random %2d: %s" % (k + 1, msg), flush=True)

        st = c.crm_mon()
        if st.failures:
            raise Failed("failed actions: %s" % st.failures)
        if len(st.online) != 3:
            raise Failed("not all nodes online at the end: %s" % st.online)
        self.watch.stop()
        if self.watch.bad:
            raise Failed("Dummy state file on two nodes outside a migration: %s"
                         % self.watch.bad[:5])

    def report(self):
        print("\n%-48s %5s %7s %7s %7s" % ("timing (seconds)", "n", "min", "median", "max"))
        for name, v in self.t.items():
            print("%-48s %5d %7.2f %7.2f %7.2f" % (name, len(v), min(v), statistics.median(v),
                                                    max(v)))
        w = getattr(self, "watch", None)
        print("\ncrm_mon polls: %d; most nodes d was shown on at once outside live migrations: "
              "%d; polls showing d on source+target inside a live migration: %d"
              % (self.polls, self.max_where, self.migr_seen))
        if w:
            ov = w.overlap
            print("state-file samples: %d; doubles outside migrations: %d; live-migration "
                  "overlaps: %d (max %.0f ms)" % (w.samples, len(w.bad), len(ov),
                                                  1000 * max(ov) if ov else 0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="/tmp/pcmk-selftest")
    ap.add_argument("--prefix", default="pmst")
    ap.add_argument("--subnet", type=int, default=79)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--ops", type=int, default=10, help="randomized moves/kills")
    ap.add_argument("--budget", type=float, default=170, help="seconds for the whole test")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    print("seed %d" % args.seed, flush=True)
    t0 = time.monotonic()
    st = SelfTest(args)
    ok = False
    try:
        st.run()
        ok = True
    except (Failed, ClusterError, subprocess.TimeoutExpired) as e:
        print("FAIL: %s" % e, flush=True)
        st.c.dump_logs(lines=25)
    finally:
        if getattr(st, "watch", None):
            st.watch.stop()
        st.c.down()
    st.report()
    left = st.c.leftovers()
    if left:
        print("FAIL: left behind: %s" % left)
        ok = False
    elif ok and not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)
    print("\n%s in %.1fs (seed %d)" % ("PASS" if ok else "FAIL", time.monotonic() - t0, args.seed))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

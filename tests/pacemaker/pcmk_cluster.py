#!/usr/bin/env python3
"""A throw-away Pacemaker + Corosync cluster on one machine, for integration tests.

Each node runs in its own network namespace (``<prefix>n<i>``, address
10.<subnet>.0.<i>/24, a veth into a bridge that lives in ``<prefix>br``) and in
its own mount/UTS/IPC/PID namespaces, created by ``unshare``.  The PID-namespace
init of a node is a small Python program (written to ``<workdir>/nodeinit.py``)
that mounts the node's private filesystem view, starts ``corosync -f`` and, as
soon as corosync's IPC answers, ``pacemakerd``; it then reaps orphans.  SIGKILL
to that init kills the whole node at once (the kernel kills every process of a
PID namespace whose init dies); SIGTERM to it stops Pacemaker then Corosync.

Inside a node:

* /run and /dev/shm are private tmpfs (libqb IPC = abstract unix sockets, which
  are per network namespace, + files in /dev/shm; Corosync's pid lock and
  Pacemaker's /run/crm live in /run),
* /var/lib/pacemaker, /var/lib/corosync, /var/log and /etc/corosync are bind
  mounts of ``<workdir>/n<i>/{lib-pacemaker,lib-corosync,log,etc-corosync}``,
* /sys is a fresh sysfs of the node's network namespace (the host's
  /sys/fs/cgroup is bound back on it),
* the hostname is ``node<i>``,
* extra bind mounts and environment variables given by the caller are applied.
  A bind target that does not exist on the host (e.g.
  /usr/lib/ocf/resource.d/minihv) is created *inside the node only*: its
  deepest existing ancestor is covered with a tmpfs whose entries are bind
  mounts of the original ones, so nothing is ever created on the host.

API (module)::

    from pcmk_cluster import Cluster
    c = Cluster("/tmp/pcmk", prefix="pm", subnet=79, nodes=3,
                binds={"/usr/lib/ocf/resource.d/minihv": "/work/main/build/ocf",
                       "/run/minihv": "/tmp/pcmk-run{i}"},        # {i}/{name} per node
                env={"MINIHV_NODE": "{name}"})
    formed = c.up(timeout=60)       # seconds until all online with a DC and quorum
    c.add_resource('<primitive id="d" class="ocf" provider="pacemaker" type="Dummy"/>')
    c.run(2, ["crm_mon", "-1"])     # CompletedProcess, inside node2 (argv or "sh -c" str)
    st = c.crm_mon()                # Status: .dc .quorum .online .offline .nodes
                                    #   .resources .failures .history, .where(rsc),
                                    #   .migration(rsc), .double(rsc), .xml
    c.where("d")                    # ['node2']  (see Status.where about live migrations)
    c.move("d", "node3", clear=True)            # returns seconds until Started there
    c.kill(3)                       # SIGKILL the node's PID-namespace init
    c.wait_rsc("d", lambda w: len(w) == 1 and w != ["node3"])
    c.start(3, wait=True)           # stonith_admin --confirm node3 first, then restart
    c.stop(1)                       # clean stop (pacemakerd, then corosync)
    c.wait_online(["node1", "node2"]); c.wait_until(pred, timeout)
    mark = c.log_mark(); ...; c.ops_since(mark, "d")  # [(t, node, op, rsc, result)]
    c.node_path(2, "/run/x")        # host path of a file inside node2 (/proc/PID/root)
    c.log_paths(2); c.dump_logs([2, 3])
    c.leftovers()                   # [] after down()
    c.down()                        # also at exit / SIGTERM / SIGHUP if cleanup_at_exit
    with Cluster(...) as c: ...     # up() / down()

CLI (the cluster outlives the command; state in <workdir>/state.json)::

    pcmk_cluster.py up   -w /tmp/pcmk [--prefix pm --subnet 79] [--bind DST=SRC[:ro]]
                         [--env K=V] [--prop NAME=VALUE] [--no-crypto] [--no-host-link]
    pcmk_cluster.py status -w /tmp/pcmk
    pcmk_cluster.py run  -w /tmp/pcmk -n 2 -- crm_mon -1
    pcmk_cluster.py shell -w /tmp/pcmk -n node2
    pcmk_cluster.py kill|stop|start [--wait] -w /tmp/pcmk -n 2
    pcmk_cluster.py move -w /tmp/pcmk d node3 [--clear];  where -w /tmp/pcmk d
    pcmk_cluster.py logs -w /tmp/pcmk -n 2 [--lines 50]
    pcmk_cluster.py down -w /tmp/pcmk        (no state file: down --prefix pm)

Gotchas found on this machine (pacemaker 2.1.5, corosync 3.1.7):

* The CIB is seeded with cib.xml and no cib.xml.sig (accepted with a warning);
  dc-deadtime=2s there is what makes formation ~5 s: an empty CIB followed by
  crm_attribute waits out the default 20 s dc-deadtime (~22 s).
* corosync's effective token is token + (nodes-2) * token_coefficient(650 ms):
  token_coefficient is set to 0 so that token 1000 means 1000 ms (loss
  detected after token + consensus = 2.2 s).
* The controller sleeps 1 s whenever CIB updates are pending when it wants the
  scheduler (controld_schedulerd.c), so formation, failover and some moves pay
  +1 s now and then.
* With stonith-enabled=false a killed node keeps its node_state (sometimes
  still join=member) and resource history; on rejoin crm_mon then briefly shows
  its old resources running there too.  start() therefore first does what a
  fence device would: stonith_admin --confirm (see confirm_down()).
* During a live migration crm_mon shows the resource on source and target
  (from migrate_to's success until the stop on the source); Status.migration()
  recognises that window, Status.double() reports only real double runs.
* Pacemaker orders operations of different nodes by last-rc-change (1 s):
  chained migrations of one resource inside one second can end in "Forcing
  recovery ... can no longer migrate" (a restart).  move() lets a second pass.
* libqb IPC: abstract unix sockets (per netns, NUL-padded, "@cmap@@@..." in
  /proc/net/unix) plus files in /dev/shm (private tmpfs per node).
* Inside a node, absolute symlinks seen through node_path() resolve on the
  host: use /run, not /var/run.

Needs root, iproute2, util-linux (unshare, nsenter), corosync 3 (knet),
pacemaker 2.1.  Python standard library only.
"""

from __future__ import annotations

import argparse
import atexit
import grp
import ipaddress
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional


# Where the node's own directories are bound, and the name of their source
# below <workdir>/n<i>/.  Order does not matter (binds are applied shallowest
# target first inside the node).
NODE_DIRS = {
    "/var/lib/pacemaker": "lib-pacemaker",
    "/var/lib/corosync": "lib-corosync",
    "/var/log": "log",
    "/etc/corosync": "etc-corosync",
}

PCMK_LOG = "/var/log/pacemaker/pacemaker.log"
COROSYNC_LOG = "/var/log/cluster/corosync.log"

DEFAULT_CRM_CONFIG = {
    "stonith-enabled": "false",
    "dc-deadtime": "2s",
    "no-quorum-policy": "stop",
    "cluster-recheck-interval": "10s",
}
DEFAULT_RSC_DEFAULTS = {"resource-stickiness": "100"}

BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C",
    "LANG": "C",
    "HOME": "/root",
}

# --------------------------------------------------------------------------
# The PID-namespace init of a node.  Runs as PID 1 inside the node's
# namespaces (already inside its netns); argv[1] is its JSON config.
# --------------------------------------------------------------------------
NODE_INIT = r'''
import ctypes, json, os, signal, socket, subprocess, sys, time, traceback

cfg = json.load(open(sys.argv[1]))
logf = open(cfg["init_log"], "a", buffering=1)

def log(msg):
    t = time.time()
    logf.write("%s.%03d [init] %s\n" % (time.strftime("%H:%M:%S", time.localtime(t)),
                                        int(t * 1000) % 1000, msg))

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                       ctypes.c_ulong, ctypes.c_char_p]
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18

def _b(s):
    return None if s is None else s.encode()

def mount(src, dst, fstype=None, flags=0, data=None):
    if libc.mount(_b(src), _b(dst), _b(fstype), flags, _b(data)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "mount(%r, %r, %r, %#x, %r): %s"
                      % (src, dst, fstype, flags, data, os.strerror(e)))

owned = []        # mount points that are private to this node (safe to mkdir in)
shadows = []

def is_owned(path):
    return any(path == o or path.startswith(o.rstrip("/") + "/") for o in owned)

def shadow(anc):
    """Cover host directory anc with a tmpfs holding bind mounts of its entries."""
    sdir = "/run/.pcmk-shadow/%d" % len(shadows)
    os.makedirs(sdir)
    mount(anc, sdir, None, MS_BIND | MS_REC)
    st = os.stat(anc)
    mount("tmpfs", anc, "tmpfs", 0,
          "mode=%o,uid=%d,gid=%d" % (st.st_mode & 0o7777, st.st_uid, st.st_gid))
    for e in os.scandir(sdir):
        p = os.path.join(anc, e.name)
        if e.is_symlink():
            os.symlink(os.readlink(e.path), p)
        elif e.is_dir():
            os.mkdir(p)
            mount(e.path, p, None, MS_BIND | MS_REC)
        else:
            open(p, "w").close()
            mount(e.path, p, None, MS_BIND)
    shadows.append(anc)
    owned.append(anc)
    log("shadowed %s (tmpfs + binds of its %d entries)" % (anc, len(os.listdir(anc))))

def ensure_mountpoint(dst, isdir):
    if os.path.lexists(dst):
        return
    anc = os.path.dirname(dst)
    while not os.path.isdir(anc):
        anc = os.path.dirname(anc)
    if not is_owned(anc):
        if anc == "/":
            raise RuntimeError("cannot create bind target %s: no existing parent "
                               "other than /" % dst)
        shadow(anc)
    if isdir:
        os.makedirs(dst)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        open(dst, "w").close()

def setup():
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    socket.sethostname(cfg["hostname"])
    # Open every bind source before anything is mounted over the host's view
    # (the work dir may live below /run or /var/log).
    binds = []
    for dst, src, ro in cfg["binds"]:
        fd = os.open(src, os.O_PATH)
        binds.append((os.path.normpath(dst), fd, ro, os.path.isdir(src)))
    cg_fd = os.open("/sys/fs/cgroup", os.O_PATH) if os.path.isdir("/sys/fs/cgroup") else None
    mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    owned.extend(["/run", "/dev/shm"])
    if cfg.get("sysfs", True):
        mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        if cg_fd is not None and os.path.isdir("/sys/fs/cgroup"):
            mount("/proc/self/fd/%d" % cg_fd, "/sys/fs/cgroup", None, MS_BIND | MS_REC)
    # shallowest target first, so that a bind inside another bind works
    for dst, fd, ro, isdir in sorted(binds, key=lambda b: b[0].count("/")):
        ensure_mountpoint(dst, isdir)
        mount("/proc/self/fd/%d" % fd, dst, None, MS_BIND | MS_REC)
        if ro:
            mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        if dst in cfg["node_private"]:
            owned.append(dst)
        os.close(fd)
    uid, gid = cfg["hacluster_uid"], cfg["haclient_gid"]
    for d, mode, own in (("/run/crm", 0o750, True), ("/run/resource-agents", 0o755, False),
                         ("/run/lock", 0o1777, False), ("/run/corosync", 0o755, False)):
        os.makedirs(d, exist_ok=True)
        os.chmod(d, mode)
        if own:
            os.chown(d, uid, gid)
    os.environ.clear()
    os.environ.update(cfg["env"])
    os.chdir("/")

def cmap_ready():
    try:
        with open("/proc/net/unix") as f:
            # abstract names are shown NUL-padded, NULs printed as '@'
            return any(len(l.split()) >= 8 and l.split()[7].rstrip("@") == "@cmap"
                       for l in f)
    except OSError:
        return False

def spawn(argv, out):
    f = open(out, "ab")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                         close_fds=True)
    f.close()
    return p

class Stop(Exception):
    pass

def on_term(signum, frame):
    raise Stop()

def reap_until(pred, timeout):
    end = time.monotonic() + timeout
    while not pred() and time.monotonic() < end:
        try:
            while True:
                pid, st = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                note_exit(pid, st)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return pred()

children = {}
alive = set()

def note_exit(pid, st):
    if pid in children:
        alive.discard(pid)
        log("%s (pid %d) exited: %s" % (children[pid], pid,
            ("status %d" % os.WEXITSTATUS(st)) if os.WIFEXITED(st)
            else ("signal %d" % os.WTERMSIG(st))))

def main():
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        t0 = time.monotonic()
        setup()
        log("namespaces ready (%d ms)" % ((time.monotonic() - t0) * 1000))
        coro = spawn(["corosync", "-f"], "/var/log/cluster/corosync.stdout")
        children[coro.pid] = "corosync"; alive.add(coro.pid)
        end = time.monotonic() + cfg.get("corosync_timeout", 20)
        while not cmap_ready():
            if coro.poll() is not None:
                raise RuntimeError("corosync exited with %s before its IPC was up"
                                   % coro.returncode)
            if time.monotonic() > end:
                raise RuntimeError("corosync IPC (cmap) not up after %ss"
                                   % cfg.get("corosync_timeout", 20))
            time.sleep(0.02)
        log("corosync pid %d: cmap IPC up (%d ms)" % (coro.pid, (time.monotonic() - t0) * 1000))
        pm = spawn(["pacemakerd"], "/var/log/pacemaker/pacemakerd.stdout")
        children[pm.pid] = "pacemakerd"; alive.add(pm.pid)
        log("pacemakerd pid %d started" % pm.pid)
    except Stop:
        log("stop requested during start-up")
        return 0
    except Exception:
        log("start-up failed:\n" + traceback.format_exc())
        return 1
    try:
        while True:
            try:
                pid, st = os.waitpid(-1, 0)
                note_exit(pid, st)
            except ChildProcessError:
                signal.pause()
    except Stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        log("stop requested: stopping pacemakerd")
        if pm.pid in alive:
            os.kill(pm.pid, signal.SIGTERM)
        if not reap_until(lambda: pm.pid not in alive, cfg.get("stop_timeout", 60)):
            log("pacemakerd did not stop in time")
        log("stopping corosync")
        if coro.pid in alive:
            os.kill(coro.pid, signal.SIGTERM)
        reap_until(lambda: coro.pid not in alive, 15)
        log("node stopped")
        return 0

sys.exit(main())
'''


class ClusterError(RuntimeError):
    pass


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------

def _sh(argv: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise ClusterError("%s failed (%d): %s" % (" ".join(argv), r.returncode,
                                                   (r.stderr or r.stdout).strip()))
    return r


def _proc_starttime(pid: int) -> Optional[int]:
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    if rest[0] in ("Z", "X"):
        return None                      # dead, waiting to be reaped
    return int(rest[19])


def _proc_ppid(pid: int) -> Optional[int]:
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    return int(s[s.rindex(")") + 2:].split()[1])


def _netns_inode(name: str) -> Optional[int]:
    try:
        return os.stat("/run/netns/" + name).st_ino
    except OSError:
        return None


def _pids_in_netns(ino: int) -> list[int]:
    want = "net:[%d]" % ino
    out = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            if os.readlink("/proc/%s/ns/net" % d) == want:
                out.append(int(d))
        except OSError:
            pass
    return out


def _tail(path: str, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 200 * lines))
            data = f.read().decode(errors="replace").splitlines()
    except OSError as e:
        return "  (%s)" % e
    return "\n".join(data[-lines:])


def _xml_escape(s: str) -> str:
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _nvpairs(set_id: str, d: dict) -> str:
    return "".join('<nvpair id="%s-%s" name="%s" value="%s"/>'
                   % (set_id, _xml_escape(k), _xml_escape(k), _xml_escape(str(v)))
                   for k, v in d.items())


# --------------------------------------------------------------------------
# crm_mon --output-as=xml, parsed
# --------------------------------------------------------------------------

@dataclass
class Status:
    xml: ET.Element
    dc: Optional[str]
    quorum: bool
    online: list[str]
    offline: list[str]
    nodes: dict            # name -> attributes of <node>
    resources: dict        # id -> {"role":..., "active":bool, "failed":bool, "nodes":[...], "attrs":{...}}
    failures: list         # attributes of each <failure>
    history: dict          # node -> rsc -> [(call, task, rc)] non-recurring ops, oldest first
                           # (call -1 = pending: record-pending is on by default)

    def where(self, rsc: str) -> list[str]:
        """Nodes crm_mon shows rsc active on.  Note: during a live migration
        (allow-migrate) Pacemaker counts the resource active on both the source
        and the target from migrate_to's success until the stop on the source
        (~50-100 ms for Dummy); see migration() and double()."""
        r = self.resources.get(rsc)
        return list(r["nodes"]) if r else []

    def _last_done(self, node: str, rsc: str):
        ops = [o for o in self.history.get(node, {}).get(rsc, []) if o[0] >= 0]
        return ops[-1] if ops else None

    def migration(self, rsc: str) -> Optional[tuple]:
        """(source, target) if rsc is shown on two nodes because a live migration
        is in progress: the source's last completed non-recurring operation is a
        successful migrate_to, and the target's last one (if any; the migrate_from
        may not be recorded yet) is pending or succeeded."""
        nodes = self.where(rsc)
        if len(nodes) != 2:
            return None
        for src, tgt in (nodes, nodes[::-1]):
            last = self._last_done(src, rsc)
            if not last or last[1] != "migrate_to" or last[2] != 0:
                continue
            t_ops = self.history.get(tgt, {}).get(rsc, [])
            if not t_ops or t_ops[-1][0] < 0 or t_ops[-1][2] == 0:
                return (src, tgt)
        return None

    def double(self, rsc: str) -> list[str]:
        """The nodes rsc is active on if that is more than one and not explained by
        a live migration in progress (i.e. a real double run); else []."""
        nodes = self.where(rsc)
        if len(nodes) > 1 and self.migration(rsc) is None:
            return nodes
        return []

    @classmethod
    def parse(cls, text: str) -> "Status":
        root = ET.fromstring(text)
        dc_el = root.find("summary/current_dc")
        dc = None
        quorum = False
        if dc_el is not None and dc_el.get("present") == "true":
            dc = dc_el.get("name")
            quorum = dc_el.get("with_quorum") == "true"
        nodes, online, offline = {}, [], []
        for n in root.findall("nodes/node"):
            nodes[n.get("name")] = dict(n.attrib)
            (online if n.get("online") == "true" else offline).append(n.get("name"))
        resources = {}
        res_el = root.find("resources")
        if res_el is not None:
            for r in res_el.iter("resource"):
                rid = r.get("id")
                ent = resources.setdefault(rid, {"role": r.get("role"),
                                                 "active": False, "failed": False,
                                                 "nodes": [], "attrs": dict(r.attrib)})
                ent["active"] |= r.get("active") == "true"
                ent["failed"] |= r.get("failed") == "true"
                ent["nodes"].extend(n.get("name") for n in r.findall("node"))
        failures = [dict(f.attrib) for f in root.findall("failures/failure")]
        history: dict = {}
        for n in root.findall("node_history/node"):
            for rh in n.findall("resource_history"):
                ops = []
                for o in rh.findall("operation_history"):
                    if o.get("interval") not in (None, "0", "0ms"):
                        continue                      # recurring monitor
                    try:
                        call, rc = int(o.get("call", "-1")), int(o.get("rc", "-1"))
                    except ValueError:
                        continue
                    ops.append((call, o.get("task"), rc))
                ops.sort(key=lambda x: (x[0] < 0, x[0]))
                history.setdefault(n.get("name"), {})[rh.get("id")] = ops
        return cls(root, dc, quorum, sorted(online), sorted(offline), nodes,
                   resources, failures, history)


# --------------------------------------------------------------------------
# the cluster
# --------------------------------------------------------------------------

@dataclass
class Node:
    index: int
    name: str
    ns: str
    addr: str
    dir: str
    init_pid: Optional[int] = None
    init_start: Optional[int] = None        # /proc/<pid>/stat starttime, guards PID reuse
    unshare_pid: Optional[int] = None
    popen: Optional[subprocess.Popen] = field(default=None, repr=False)
    started_at: Optional[float] = None      # time.time() of the last start
    killed: bool = False                    # killed, and the cluster not told yet

    @property
    def logs(self) -> dict:
        return {"pacemaker": os.path.join(self.dir, "log", "pacemaker", "pacemaker.log"),
                "corosync": os.path.join(self.dir, "log", "cluster", "corosync.log"),
                "pacemakerd.stdout": os.path.join(self.dir, "log", "pacemaker", "pacemakerd.stdout"),
                "corosync.stdout": os.path.join(self.dir, "log", "cluster", "corosync.stdout"),
                "init": os.path.join(self.dir, "init.log")}

    def alive(self) -> bool:
        return (self.init_pid is not None
                and _proc_starttime(self.init_pid) == self.init_start)


_live_clusters: set = set()      # clusters up in this process (taken down at exit)
_handlers_installed = False


def _cleanup_all():
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)          # let the clean-up finish
    for c in list(_live_clusters):
        if c.cleanup_at_exit:
            try:
                c.down()
            except Exception as e:                    # pragma: no cover
                print("pcmk_cluster: cleanup failed: %s" % e, file=sys.stderr)


def _install_handlers():
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_cleanup_all)

    def on_signal(signum, frame):
        # turn the signal into a normal exit, so atexit handlers (down) run
        raise SystemExit(128 + signum)
    if threading.current_thread() is not threading.main_thread():
        return                                         # only atexit then
    for s in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(s) in (signal.SIG_DFL, None):
            signal.signal(s, on_signal)


class Cluster:
    """An N-node Pacemaker/Corosync cluster in namespaces.  See module doc."""

    def __init__(self, workdir: str, prefix: str = "pm", subnet: int = 79, nodes: int = 3,
                 binds: Optional[dict] = None, env: Optional[dict] = None,
                 host_link: bool = True, crypto: bool = True,
                 crm_config: Optional[dict] = None, rsc_defaults: Optional[dict] = None,
                 op_defaults: Optional[dict] = None, cib_resources: str = "",
                 cib_constraints: str = "", seed_cib: bool = True,
                 token_ms: int = 1000, corosync_debug: bool = False,
                 pcmk_debug: bool = False, fresh_sysfs: bool = True,
                 cleanup_at_exit: bool = True, verbose: bool = False):
        """
        workdir       directory for everything of this cluster (created; the n<i>
                      sub-directories are wiped by up()).
        prefix        namespace/interface name prefix: <prefix>br, <prefix>n<i>, <prefix>h.
        subnet        X in 10.X.0.0/24.
        binds         {target_in_node: source} or {target: (source, "ro")}; source
                      and target may contain {i} and {name} (node index / name).
        env           extra environment for the node daemons (and agents they
                      run) and for run(); values may contain {i} and {name}.
        host_link     veth <prefix>h in the root netns with 10.X.0.254/24.
        crypto        knet crypto (aes256/sha256) with a per-cluster authkey.
        crm_config    cluster properties (default DEFAULT_CRM_CONFIG, merged).
        rsc_defaults  resource meta defaults (default resource-stickiness=100, merged).
        seed_cib      write cib.xml before start (else start empty and set the
                      properties with crm_attribute once formed; slower).
        """
        if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", prefix):
            raise ValueError("prefix must be 1-8 chars [a-z0-9], starting with a letter")
        if not 0 <= int(subnet) <= 255:
            raise ValueError("subnet must be 0..255")
        if not 1 <= nodes <= 32:
            raise ValueError("nodes must be 1..32")
        self.workdir = os.path.abspath(workdir)
        self.prefix = prefix
        self.subnet = int(subnet)
        self.n = nodes
        self.binds = dict(binds or {})
        self.env = dict(env or {})
        self.host_link = host_link
        self.crypto = crypto
        self.crm_config = {**DEFAULT_CRM_CONFIG, **(crm_config or {})}
        self.rsc_defaults = {**DEFAULT_RSC_DEFAULTS, **(rsc_defaults or {})}
        self.op_defaults = dict(op_defaults or {})
        self.cib_resources = cib_resources
        self.cib_constraints = cib_constraints
        self.seed_cib = seed_cib
        self.token_ms = token_ms
        self.corosync_debug = corosync_debug
        self.pcmk_debug = pcmk_debug
        self.fresh_sysfs = fresh_sysfs
        self.cleanup_at_exit = cleanup_at_exit
        self.verbose = verbose
        self.bridge_ns = prefix + "br"
        self.host_if = prefix + "h"
        self.host_addr = "10.%d.0.254" % self.subnet
        self.nodes: dict[int, Node] = {
            i: Node(i, "node%d" % i, "%sn%d" % (prefix, i), "10.%d.0.%d" % (self.subnet, i),
                    os.path.join(self.workdir, "n%d" % i))
            for i in range(1, nodes + 1)}
        self.timings: dict = {}
        self._net_up = False
        self._ns_inodes: set = set()            # every netns inode this handle created

    # ------------------------------------------------------------------ misc
    def __enter__(self) -> "Cluster":
        self.up()
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.dump_logs()
        self.down()

    def _log(self, msg: str):
        if self.verbose:
            print("[pcmk_cluster %.3f] %s" % (time.time() % 1000, msg), file=sys.stderr, flush=True)

    def node(self, i) -> Node:
        if isinstance(i, str) and not i.isdigit():
            for n in self.nodes.values():
                if n.name == i:
                    return n
            raise KeyError(i)
        return self.nodes[int(i)]

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes.values()]

    def running(self) -> list[int]:
        return [i for i, n in self.nodes.items() if n.alive()]

    def _fmt(self, s: str, node: Node) -> str:
        return s.replace("{i}", str(node.index)).replace("{name}", node.name)

    def node_env(self, node: Node) -> dict:
        env = dict(BASE_ENV)
        env.update({
            "PCMK_logfile": PCMK_LOG,
            "PCMK_logfacility": "none",
            "PCMK_debug": "yes" if self.pcmk_debug else "no",
            "HA_LOGFACILITY": "none",
        })
        env.update({k: self._fmt(str(v), node) for k, v in self.env.items()})
        return env

    def node_path(self, i, path: str) -> str:
        """Host path through which `path` as seen inside running node i can be read."""
        n = self.node(i)
        if not n.alive():
            raise ClusterError("%s is not running" % n.name)
        return "/proc/%d/root%s" % (n.init_pid, path)

    # ------------------------------------------------------------- state file
    @property
    def state_file(self) -> str:
        return os.path.join(self.workdir, "state.json")

    def _config(self) -> dict:
        return {"prefix": self.prefix, "subnet": self.subnet, "nodes": self.n,
                "binds": self.binds, "env": self.env, "host_link": self.host_link,
                "crypto": self.crypto, "crm_config": self.crm_config,
                "rsc_defaults": self.rsc_defaults, "op_defaults": self.op_defaults,
                "cib_resources": self.cib_resources, "cib_constraints": self.cib_constraints,
                "seed_cib": self.seed_cib, "token_ms": self.token_ms,
                "corosync_debug": self.corosync_debug, "pcmk_debug": self.pcmk_debug,
                "fresh_sysfs": self.fresh_sysfs}

    def _save_state(self):
        st = {"config": self._config(),
              "nodes": {str(i): {"init_pid": n.init_pid, "init_start": n.init_start,
                                 "unshare_pid": n.unshare_pid, "started_at": n.started_at,
                                 "killed": n.killed}
                        for i, n in self.nodes.items()}}
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f, indent=1)
        os.replace(tmp, self.state_file)

    @classmethod
    def load(cls, workdir: str, **overrides) -> "Cluster":
        """A handle on a cluster started earlier (e.g. by the CLI) from its state file."""
        with open(os.path.join(os.path.abspath(workdir), "state.json")) as f:
            st = json.load(f)
        cfg = st["config"]
        cfg.update(overrides)
        cfg.setdefault("cleanup_at_exit", False)
        c = cls(workdir, **cfg)
        for i, s in st["nodes"].items():
            n = c.nodes[int(i)]
            n.init_pid, n.init_start = s["init_pid"], s["init_start"]
            n.unshare_pid, n.started_at = s["unshare_pid"], s.get("started_at")
            n.killed = s.get("killed", False)
        c._net_up = _netns_inode(c.bridge_ns) is not None
        if c.cleanup_at_exit:
            _live_clusters.add(c)
            _install_handlers()
        return c

    # --------------------------------------------------------------- network
    def _our_netns(self) -> list[str]:
        return [self.bridge_ns] + [n.ns for n in self.nodes.values()]

    def _check_host_conflicts(self):
        net = ipaddress.ip_network("10.%d.0.0/24" % self.subnet)
        r = _sh(["ip", "-j", "-4", "route", "show", "table", "all"], check=False)
        try:
            routes = json.loads(r.stdout or "[]")
        except ValueError:
            routes = []
        for rt in routes:
            dst = rt.get("dst", "")
            if dst in ("default", "") or rt.get("dev") == self.host_if:
                continue
            try:
                if ipaddress.ip_network(dst, strict=False).overlaps(net):
                    raise ClusterError("root netns already routes %s (%s via %s): pick another "
                                       "subnet" % (dst, net, rt.get("dev")))
            except ValueError:
                continue
        if os.path.exists("/sys/class/net/" + self.host_if):
            raise ClusterError("interface %s already exists in the root netns" % self.host_if)

    def _net_up_(self):
        existing = set(_sh(["ip", "netns", "list"]).stdout.split())
        clash = [ns for ns in self._our_netns() if ns in existing]
        if clash:
            raise ClusterError("network namespaces %s already exist (another cluster with prefix "
                               "%r?  `pcmk_cluster.py down --prefix %s` removes them)"
                               % (clash, self.prefix, self.prefix))
        if self.host_link:
            self._check_host_conflicts()
        self._net_up = True                         # from here on, down() cleans up
        br = self.bridge_ns
        cmds = [["ip", "netns", "add", br]]
        for n in self.nodes.values():
            cmds.append(["ip", "netns", "add", n.ns])
        cmds += [["ip", "-n", br, "link", "set", "lo", "up"],
                 ["ip", "-n", br, "link", "add", "br0", "type", "bridge",
                  "stp_state", "0", "forward_delay", "0"],
                 ["ip", "-n", br, "link", "set", "br0", "up"]]
        for n in self.nodes.values():
            port = "n%d" % n.index
            cmds += [["ip", "link", "add", "eth0", "netns", n.ns, "type", "veth",
                      "peer", "name", port, "netns", br],
                     ["ip", "-n", br, "link", "set", port, "master", "br0", "up"],
                     ["ip", "-n", n.ns, "link", "set", "lo", "up"],
                     ["ip", "-n", n.ns, "addr", "add", n.addr + "/24", "dev", "eth0"],
                     ["ip", "-n", n.ns, "link", "set", "eth0", "up"]]
        if self.host_link:
            cmds += [["ip", "link", "add", self.host_if, "type", "veth",
                      "peer", "name", "hostport", "netns", br],
                     ["ip", "-n", br, "link", "set", "hostport", "master", "br0", "up"],
                     ["ip", "addr", "add", self.host_addr + "/24", "dev", self.host_if],
                     ["ip", "link", "set", self.host_if, "up"]]
        for c in cmds:
            _sh(c)
            if c[:3] == ["ip", "netns", "add"]:
                ino = _netns_inode(c[3])
                if ino is not None:
                    self._ns_inodes.add(ino)

    def leftovers(self) -> list[str]:
        """What of this cluster still exists: its namespaces, its host interface,
        processes in any network namespace it created (checked by inode, so also
        after the names are gone).  [] after a successful down()."""
        out = []
        existing = set(_sh(["ip", "netns", "list"], check=False).stdout.split())
        out += ["netns %s" % ns for ns in self._our_netns() if ns in existing]
        if os.path.exists("/sys/class/net/" + self.host_if):
            out.append("interface %s" % self.host_if)
        inodes = set(self._ns_inodes)
        inodes.update(i for i in map(_netns_inode, self._our_netns()) if i is not None)
        for ino in inodes:
            for pid in _pids_in_netns(ino):
                try:
                    with open("/proc/%d/comm" % pid) as f:
                        comm = f.read().strip()
                except OSError:
                    comm = "?"
                out.append("process %d (%s)" % (pid, comm))
        return out

    def _net_down(self):
        for ns in self._our_netns():
            if _netns_inode(ns) is not None:
                _sh(["ip", "netns", "del", ns], check=False)
        if os.path.exists("/sys/class/net/" + self.host_if):
            # deleting the bridge netns removes the peer and thus this end;
            # only if that has not happened yet
            _sh(["ip", "link", "del", self.host_if], check=False)
        self._net_up = False

    # ----------------------------------------------------------- node files
    def _corosync_conf(self) -> str:
        nodes = "".join(
            "\tnode {\n\t\tring0_addr: %s\n\t\tnodeid: %d\n\t\tname: %s\n\t}\n"
            % (n.addr, n.index, n.name) for n in self.nodes.values())
        crypto = ("\tcrypto_cipher: aes256\n\tcrypto_hash: sha256\n" if self.crypto
                  else "\tcrypto_cipher: none\n\tcrypto_hash: none\n")
        return ("# generated by pcmk_cluster.py\n"
                "totem {\n\tversion: 2\n\tcluster_name: %s\n\ttransport: knet\n"
                "\ttoken: %d\n\ttoken_coefficient: 0\n%s}\n"
                "nodelist {\n%s}\n"
                "quorum {\n\tprovider: corosync_votequorum\n}\n"
                "logging {\n\tto_logfile: yes\n\tlogfile: %s\n\tto_syslog: no\n"
                "\tto_stderr: no\n\ttimestamp: hires\n\tfileline: off\n\tdebug: %s\n}\n"
                % (self.prefix + "-cluster", self.token_ms, crypto, nodes,
                   COROSYNC_LOG, "on" if self.corosync_debug else "off"))

    @staticmethod
    def _schema() -> str:
        """Newest pacemaker-X.Y schema installed (pacemaker-3.9 for 2.1.5)."""
        best = (3, 0)
        try:
            for f in os.listdir("/usr/share/pacemaker"):
                m = re.fullmatch(r"pacemaker-(\d+)\.(\d+)\.rng", f)
                if m:
                    best = max(best, (int(m.group(1)), int(m.group(2))))
        except OSError:
            pass
        return "pacemaker-%d.%d" % best

    def _cib_xml(self) -> str:
        props = self.crm_config if self.seed_cib else {}
        return ('<cib validate-with="%s" admin_epoch="0" epoch="1" num_updates="0">\n'
                ' <configuration>\n'
                '  <crm_config><cluster_property_set id="cib-bootstrap-options">%s'
                '</cluster_property_set></crm_config>\n'
                '  <nodes/>\n'
                '  <resources>%s</resources>\n'
                '  <constraints>%s</constraints>\n'
                '  <rsc_defaults><meta_attributes id="rsc-options">%s</meta_attributes></rsc_defaults>\n'
                '  <op_defaults><meta_attributes id="op-options">%s</meta_attributes></op_defaults>\n'
                ' </configuration>\n'
                ' <status/>\n'
                '</cib>\n'
                % (self._schema(), _nvpairs("cib-bootstrap-options", props),
                   self.cib_resources if self.seed_cib else "",
                   self.cib_constraints if self.seed_cib else "",
                   _nvpairs("rsc-options", self.rsc_defaults if self.seed_cib else {}),
                   _nvpairs("op-options", self.op_defaults if self.seed_cib else {})))

    def _prepare_node_dir(self, n: Node, authkey: Optional[bytes], wipe: bool):
        uid = pwd.getpwnam("hacluster").pw_uid
        gid = grp.getgrnam("haclient").gr_gid
        if wipe and os.path.isdir(n.dir):
            shutil.rmtree(n.dir)

        def mk(rel, mode=0o755, owner=None):
            p = os.path.join(n.dir, rel)
            os.makedirs(p, exist_ok=True)
            os.chmod(p, mode)
            if owner:
                os.chown(p, *owner)
            return p
        os.makedirs(n.dir, exist_ok=True)
        os.chmod(n.dir, 0o755)
        hc = (uid, gid)
        mk("lib-pacemaker", 0o755)
        for d in ("cib", "pengine", "blackbox", "cores"):
            mk("lib-pacemaker/" + d, 0o750, hc)
        mk("lib-pacemaker/bundles", 0o750, hc)
        mk("lib-corosync", 0o700)
        mk("log", 0o755)
        mk("log/pacemaker", 0o770, hc)
        mk("log/pacemaker/bundles", 0o770, hc)
        mk("log/cluster", 0o755)
        etc = mk("etc-corosync", 0o755)
        mk("etc-corosync/uidgid.d", 0o755)
        with open(os.path.join(etc, "corosync.conf"), "w") as f:
            f.write(self._corosync_conf())
        if authkey is not None:
            kp = os.path.join(etc, "authkey")
            fd = os.open(kp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
            os.write(fd, authkey)
            os.close(fd)
            os.chmod(kp, 0o400)
        cib = os.path.join(n.dir, "lib-pacemaker", "cib", "cib.xml")
        if wipe or not os.path.exists(cib):
            for stale in os.listdir(os.path.dirname(cib)):
                os.unlink(os.path.join(os.path.dirname(cib), stale))
            with open(cib, "w") as f:
                f.write(self._cib_xml())
            os.chmod(cib, 0o600)
            os.chown(cib, uid, gid)
        # init config
        binds = [(dst, os.path.join(n.dir, src), False) for dst, src in NODE_DIRS.items()]
        for dst, src in self.binds.items():
            ro = False
            if isinstance(src, (tuple, list)):
                src, flag = src[0], src[1]
                ro = flag in ("ro", True)
            src = self._fmt(str(src), n)
            if not os.path.exists(src):
                raise ClusterError("bind source %s (for %s) does not exist" % (src, dst))
            binds.append((self._fmt(dst, n), os.path.abspath(src), ro))
        cfg = {"hostname": n.name, "binds": binds, "node_private": list(NODE_DIRS),
               "env": self.node_env(n), "init_log": os.path.join(n.dir, "init.log"),
               "hacluster_uid": uid, "haclient_gid": gid, "sysfs": self.fresh_sysfs}
        with open(os.path.join(n.dir, "init.json"), "w") as f:
            json.dump(cfg, f, indent=1)

    # ------------------------------------------------------------- lifecycle
    def up(self, timeout: float = 60) -> float:
        """Create the network, start all nodes, wait until all are online with a DC.
        Returns the seconds from the call until the cluster was formed."""
        t0 = time.monotonic()
        if os.geteuid() != 0:
            raise ClusterError("needs root")
        for tool in ("ip", "unshare", "nsenter", "corosync", "pacemakerd", "crm_mon"):
            if shutil.which(tool, path=BASE_ENV["PATH"]) is None:
                raise ClusterError("%s not found" % tool)
        os.makedirs(self.workdir, exist_ok=True)
        if os.path.exists(self.state_file):
            # a previous run with this work dir that was not taken down
            self._log("stale state file: taking the old cluster down first")
            try:
                Cluster.load(self.workdir, cleanup_at_exit=False).down()
            except Exception as e:
                self._log("stale cleanup: %s" % e)
        _live_clusters.add(self)
        if self.cleanup_at_exit:
            _install_handlers()
        try:
            self._net_up_()
            with open(os.path.join(self.workdir, "nodeinit.py"), "w") as f:
                f.write(NODE_INIT)
            authkey = os.urandom(256) if self.crypto else None
            for n in self.nodes.values():
                self._prepare_node_dir(n, authkey, wipe=True)
            self._save_state()
            t_net = time.monotonic()
            self.timings["net_setup"] = t_net - t0
            for i in self.nodes:
                self._spawn(i)
            self._save_state()
            self.wait_formed(timeout=max(1.0, timeout - (time.monotonic() - t0)))
            formed = time.monotonic() - t0
            self.timings["formed"] = formed
            self.timings["formed_after_spawn"] = time.monotonic() - t_net
            if not self.seed_cib:
                self.configure(self.crm_config, self.rsc_defaults, self.op_defaults)
                if self.cib_resources:
                    self.cibadmin_create("resources", self.cib_resources)
                if self.cib_constraints:
                    self.cibadmin_create("constraints", self.cib_constraints)
                self.timings["configured"] = time.monotonic() - t0
            return formed
        except BaseException:
            if self.cleanup_at_exit:
                self.down()
            raise

    def _spawn(self, i: int):
        n = self.node(i)
        initpy = os.path.join(self.workdir, "nodeinit.py")
        cmd = ["nsenter", "--net=/run/netns/" + n.ns, "--",
               "unshare", "--mount", "--uts", "--ipc", "--pid", "--fork", "--kill-child",
               "--mount-proc", "--", sys.executable, "-I", initpy,
               os.path.join(n.dir, "init.json")]
        out = open(os.path.join(n.dir, "unshare.out"), "ab")
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                             start_new_session=True, env=dict(BASE_ENV), close_fds=True)
        out.close()
        n.popen, n.unshare_pid = p, p.pid
        n.started_at = time.time()
        # the PID-namespace init is unshare's only child
        end = time.monotonic() + 5
        while time.monotonic() < end:
            for d in os.listdir("/proc"):
                if d.isdigit() and _proc_ppid(int(d)) == p.pid:
                    n.init_pid = int(d)
                    n.init_start = _proc_starttime(n.init_pid)
                    if n.init_start is not None:
                        self._log("%s: unshare %d, init %d" % (n.name, p.pid, n.init_pid))
                        return
            if p.poll() is not None:
                raise ClusterError("%s: unshare exited with %s: %s" % (
                    n.name, p.returncode, _tail(os.path.join(n.dir, "unshare.out"), 10)))
            time.sleep(0.005)
        raise ClusterError("%s: could not find the PID-namespace init of unshare %d"
                           % (n.name, p.pid))

    def _wait_node_gone(self, n: Node, timeout: float = 15):
        ino = _netns_inode(n.ns)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if n.popen is not None:
                n.popen.poll()
            left = _pids_in_netns(ino) if ino is not None else []
            if not left and (n.init_pid is None or _proc_starttime(n.init_pid) != n.init_start):
                return
            time.sleep(0.02)
        raise ClusterError("%s: processes still in its netns after %ss: %s"
                           % (n.name, timeout, _pids_in_netns(ino) if ino else "?"))

    def kill(self, i):
        """Kill node i hard: SIGKILL to its PID-namespace init kills every process in it."""
        n = self.node(i)
        if n.alive():
            os.kill(n.init_pid, signal.SIGKILL)
            n.killed = True
        self._wait_node_gone(n)
        n.init_pid = n.init_start = None
        self._save_state()
        self._log("%s killed" % n.name)

    def confirm_down(self, i, timeout: float = 30):
        """Tell the surviving nodes that killed node i is safely down, the way a
        fencing device would: wait until they see it offline (and have a DC),
        then `stonith_admin --confirm <node>` and wait until its status section
        is reset (expected=down, no resource history).

        Without this, Pacemaker 2.1.5 with stonith-enabled=false keeps the dead
        node's node_state (sometimes still join=member) and resource history; when
        the node's corosync rejoins, crm_mon counts it online with that stale
        history for up to ~1 s (until the DC's join wipes it), i.e. it shows the
        resources the node ran before it died as running there too."""
        n = self.node(i)
        if n.alive():
            raise ClusterError("%s is running" % n.name)
        others = [j for j in self.running() if j != n.index]
        if not others:
            n.killed = False
            return
        self.wait_until(lambda s: n.name not in s.online and s.dc not in (None, n.name),
                        timeout, "%s seen offline by the survivors" % n.name)
        self.run(others[0], ["stonith_admin", "--confirm", n.name], timeout=timeout, check=True)
        xp = "//node_state[@uname='%s']" % n.name

        def reset():
            r = self.run(others[0], ["cibadmin", "-Q", "--xpath", xp], timeout=10)
            if r.returncode != 0:
                return r.returncode == 105          # no such node_state: nothing stale
            try:
                el = ET.fromstring(r.stdout)
            except ET.ParseError:
                return False
            return el.get("expected") != "member" and el.find(".//lrm_rsc_op") is None
        end = time.monotonic() + timeout
        while not reset():
            if time.monotonic() > end:
                self.dump_logs(others)
                raise ClusterError("%s: status not reset after stonith_admin --confirm" % n.name)
            time.sleep(0.05)
        n.killed = False
        self._save_state()

    def stop(self, i, timeout: float = 90):
        """Stop node i cleanly (pacemakerd shutdown, then corosync)."""
        n = self.node(i)
        if n.alive():
            os.kill(n.init_pid, signal.SIGTERM)
            end = time.monotonic() + timeout
            while n.alive() and time.monotonic() < end:
                if n.popen is not None:
                    n.popen.poll()
                time.sleep(0.05)
            if n.alive():
                self._log("%s: clean stop timed out, killing" % n.name)
        self.kill(i)

    def start(self, i, wait: bool = False, timeout: float = 60,
              confirm: bool = True) -> Optional[float]:
        """Start node i again (fresh namespaces, same directories, CIB kept).
        If it was killed, confirm_down() is done first (unless confirm=False)."""
        n = self.node(i)
        if n.alive():
            raise ClusterError("%s is running" % n.name)
        t0 = time.monotonic()
        self._wait_node_gone(n)
        if n.killed and confirm:
            self.confirm_down(n.index, timeout=timeout)
        self._prepare_node_dir(n, None, wipe=False)
        self._spawn(n.index)
        self._save_state()
        if wait:
            self.wait_online([n.name], timeout=timeout)
            return time.monotonic() - t0
        return None

    def down(self):
        """Stop everything and remove the namespaces; safe to call repeatedly and
        after partial failures."""
        for n in self.nodes.values():
            try:
                if n.alive():
                    os.kill(n.init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # anything left in our network namespaces (e.g. from a crashed run)
        for ns in self._our_netns():
            ino = _netns_inode(ns)
            if ino is None:
                continue
            for pid in _pids_in_netns(ino):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for n in self.nodes.values():
            try:
                self._wait_node_gone(n, timeout=10)
            except ClusterError as e:
                print("pcmk_cluster: %s" % e, file=sys.stderr)
            if n.popen is not None:
                try:
                    n.popen.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                n.popen = None
            n.init_pid = n.init_start = None
        self._net_down()
        try:
            os.unlink(self.state_file)
        except OSError:
            pass
        _live_clusters.discard(self)

    # -------------------------------------------------------- inside a node
    def run(self, i, argv, timeout: float = 30, check: bool = False, input: Optional[str] = None,
            env: Optional[dict] = None) -> subprocess.CompletedProcess:
        """Run argv inside node i (its net, mount, UTS, IPC and PID namespaces)."""
        n = self.node(i)
        if not n.alive():
            raise ClusterError("%s is not running" % n.name)
        if isinstance(argv, str):
            argv = ["sh", "-c", argv]
        e = self.node_env(n)
        e.update(env or {})
        cmd = ["nsenter", "--target", str(n.init_pid), "--net", "--mount", "--uts", "--ipc",
               "--pid", "--wd=/", "--"] + list(argv)
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
                             start_new_session=True)
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.communicate()
            raise
        r = subprocess.CompletedProcess(argv, p.returncode, out, err)
        if check and r.returncode != 0:
            raise ClusterError("%s on %s failed (%d): %s" % (" ".join(argv), n.name,
                                                           r.returncode, (err or out).strip()))
        return r

    def _any_node(self, prefer=None) -> int:
        live = self.running()
        if not live:
            raise ClusterError("no node is running")
        if prefer is not None:
            p = self.node(prefer).index
            if p in live:
                return p
        return live[0]

    def crm_mon(self, i=None, timeout: float = 10) -> Status:
        """crm_mon --output-as=xml -1 on node i (default: the first running node), parsed."""
        idx = self._any_node(i)
        r = self.run(idx, ["crm_mon", "--output-as=xml", "-1"], timeout=timeout)
        if r.returncode != 0 or "<pacemaker-result" not in r.stdout:
            raise ClusterError("crm_mon on node%d failed (%d): %s"
                               % (idx, r.returncode, (r.stderr or r.stdout).strip()[:300]))
        return Status.parse(r.stdout)

    def try_crm_mon(self, i=None) -> Optional[Status]:
        try:
            return self.crm_mon(i)
        except (ClusterError, subprocess.TimeoutExpired, ET.ParseError):
            return None

    def where(self, rsc: str, i=None) -> list[str]:
        """Names of the nodes the cluster has `rsc` active on.  More than one is a
        double run, except inside a live migration (see Status.migration/double)."""
        return self.crm_mon(i).where(rsc)

    # ----------------------------------------------------------- configuring
    def crm_attribute(self, name: str, value: str, i=None):
        self.run(self._any_node(i), ["crm_attribute", "--type", "crm_config", "--name", name,
                                     "--update", str(value)], check=True)

    def configure(self, crm_config: Optional[dict] = None, rsc_defaults: Optional[dict] = None,
                  op_defaults: Optional[dict] = None, i=None):
        """Set cluster properties / resource and op defaults on the running cluster."""
        idx = self._any_node(i)
        for k, v in (crm_config or {}).items():
            self.crm_attribute(k, v, idx)
        for section, sid, d in (("rsc_defaults", "rsc-options", rsc_defaults),
                                ("op_defaults", "op-options", op_defaults)):
            if d:
                self.run(idx, ["cibadmin", "--modify", "--allow-create", "-o", section,
                               "--xml-text", '<%s><meta_attributes id="%s">%s</meta_attributes></%s>'
                               % (section, sid, _nvpairs(sid, d), section)], check=True)

    def remove_resource(self, rsc: str, timeout: float = 60, i=None):
        """Stop rsc (target-role=Stopped), wait until it runs nowhere, delete it."""
        idx = self._any_node(i)
        self.run(idx, ["crm_resource", "--resource", rsc, "--meta", "--set-parameter",
                       "target-role", "--parameter-value", "Stopped"], check=True)
        self.wait_rsc(rsc, [], timeout=timeout)
        self.run(self._any_node(i), ["cibadmin", "--delete", "-o", "resources", "--xml-text",
                                     '<primitive id="%s"/>' % _xml_escape(rsc)], check=True)

    def cibadmin_create(self, section: str, xml: str, i=None):
        self.run(self._any_node(i), ["cibadmin", "--create", "-o", section, "--xml-text", xml],
                 check=True)

    def add_resource(self, xml: str, i=None):
        """cibadmin --create -o resources --xml-text XML."""
        self.cibadmin_create("resources", xml, i)

    @staticmethod
    def next_second(margin: float = 0.05):
        """Sleep into the next wall-clock second.

        Pacemaker 2.1.5 orders operations recorded on *different* nodes by their
        last-rc-change, which has 1 s resolution.  Chained live migrations of one
        resource within the same second (A->B then B->C or B->A) can make the
        scheduler misread a finished migration as a partial one ("Forcing
        recovery of R because it can no longer migrate from A to B") and restart
        the resource.  Tests that migrate a resource repeatedly should let a
        second boundary pass between migrations (move() does)."""
        now = time.time()
        time.sleep(max(0.0, (int(now) + 1 + margin) - now))

    def move(self, rsc: str, node: str, clear: bool = False, wait: bool = True,
             timeout: float = 60, second_gap: bool = True, i=None) -> Optional[float]:
        """crm_resource --move; optionally wait until rsc runs on node only, then --clear
        (and then let a wall-clock second pass, see next_second()).
        Returns the seconds until it ran there (if wait)."""
        idx = self._any_node(i)
        t0 = time.monotonic()
        self.run(idx, ["crm_resource", "--move", "--resource", rsc, "--node", node], check=True)
        dt = None
        if wait:
            self.wait_rsc(rsc, [node], timeout=timeout)
            dt = time.monotonic() - t0
        if clear:
            self.run(self._any_node(i), ["crm_resource", "--clear", "--resource", rsc], check=True)
        if wait and second_gap:
            self.next_second()
        return dt

    def clear(self, rsc: str, i=None):
        self.run(self._any_node(i), ["crm_resource", "--clear", "--resource", rsc], check=True)

    def settle(self, timeout: float = 60, i=None):
        """crm_resource --wait: until the cluster has no pending actions."""
        self.run(self._any_node(i), ["crm_resource", "--wait", "--timeout", "%ds" % timeout],
                 timeout=timeout + 10, check=True)

    # ---------------------------------------------------------------- waiting
    def wait_until(self, pred: Callable[[Status], bool], timeout: float = 60,
                   what: str = "condition", interval: float = 0.1, i=None,
                   on_status: Optional[Callable[[Status], None]] = None) -> Status:
        """Poll crm_mon (on node i or any running node) until pred(status) is true.
        on_status is called with every status seen.  On timeout, the log tails of
        all nodes are printed and ClusterError raised."""
        end = time.monotonic() + timeout
        last = None
        while True:
            st = None
            try:
                idx = self._any_node(i)
                st = self.try_crm_mon(idx)
            except ClusterError:
                pass
            if st is not None:
                last = st
                if on_status:
                    on_status(st)
                if pred(st):
                    return st
            if time.monotonic() >= end:
                break
            time.sleep(interval)
        self.dump_logs()
        summary = ("dc=%s online=%s resources=%s failures=%s"
                   % (last.dc, last.online, {k: v["nodes"] for k, v in last.resources.items()},
                      last.failures) if last else "no crm_mon output")
        raise ClusterError("timed out after %ss waiting for %s (last: %s)" % (timeout, what, summary))

    def wait_formed(self, timeout: float = 60) -> Status:
        names = self.names
        return self.wait_until(
            lambda s: s.dc is not None and s.quorum and s.online == sorted(names),
            timeout, "all of %s online with a DC" % names, interval=0.1)

    def wait_online(self, names: Optional[Iterable[str]] = None, timeout: float = 60,
                    exact: bool = False) -> Status:
        """Wait until the given nodes (default: all running ones) are online and there
        is a DC.  exact: and no other node is online."""
        want = sorted(names) if names is not None else sorted(self.node(i).name
                                                             for i in self.running())
        return self.wait_until(
            lambda s: s.dc is not None and (s.online == want if exact
                                            else set(want) <= set(s.online)),
            timeout, "%s online with a DC" % want)

    def wait_rsc(self, rsc: str, want, timeout: float = 60,
                 on_status: Optional[Callable[[Status], None]] = None, i=None,
                 interval: float = 0.1) -> Status:
        """Wait until where(rsc) == want (a list of node names) or want(nodes) is true."""
        pred = want if callable(want) else (lambda nodes: sorted(nodes) == sorted(want))
        return self.wait_until(lambda s: pred(s.where(rsc)), timeout,
                               "%s on %s" % (rsc, want if not callable(want) else "<pred>"),
                               on_status=on_status, i=i, interval=interval)

    # ------------------------------------------------------------------ logs
    def log_mark(self) -> dict:
        """Current sizes of every node's pacemaker.log (for ops_since)."""
        out = {}
        for n in self.nodes.values():
            try:
                out[n.index] = os.path.getsize(n.logs["pacemaker"])
            except OSError:
                out[n.index] = 0
        return out

    _RESULT_RE = re.compile(
        r"^(\w{3} +\d+ \d\d:\d\d:\d\d(?:\.\d+)?) +\S+ +pacemaker-controld.*?"
        r"Result of (\w+) operation for (\S+) on (\S+): ([^|]*?) *(?:\|(.*))?$")

    @staticmethod
    def _log_time(ts: str) -> float:
        """'Dec 06 23:07:26.046' (pacemaker.log, no year) -> epoch seconds."""
        now = time.localtime()
        main, _, frac = ts.partition(".")
        t = time.strptime("%d %s" % (now.tm_year, main), "%Y %b %d %H:%M:%S")
        e = time.mktime(t) + (float("0." + frac) if frac else 0.0)
        if e > time.time() + 86400:                 # log from last year
            e = time.mktime(time.strptime("%d %s" % (now.tm_year - 1, main),
                                          "%Y %b %d %H:%M:%S"))
        return e

    def ops_since(self, mark: Optional[dict] = None, rsc: Optional[str] = None,
                  recurring: bool = False) -> list[tuple]:
        """Resource operations the controllers logged after mark (from log_mark()),
        time-ordered: [(epoch_time, node, op, rsc, result), ...].  Recurring
        operations (monitors with an interval) and cancellations are left out
        unless recurring=True; probes (monitor, interval 0) are kept."""
        ops = []
        for n in self.nodes.values():
            path = n.logs["pacemaker"]
            try:
                with open(path, "rb") as f:
                    f.seek((mark or {}).get(n.index, 0))
                    lines = f.read().decode(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                m = self._RESULT_RE.match(line)
                if not m:
                    continue
                ts, op, r, on, result, extra = m.groups()
                if rsc is not None and r != rsc:
                    continue
                km = re.search(r"key=\S+_(\d+)\b", extra or "")
                interval = int(km.group(1)) if km else 0
                if not recurring and (interval or result == "Cancelled"):
                    continue
                ops.append((self._log_time(ts), on, op, r, result))
        ops.sort()
        return ops

    def wait_ops(self, mark: Optional[dict], rsc: Optional[str],
                 pred: Callable[[list], bool], timeout: float = 20) -> list[tuple]:
        """Poll ops_since(mark, rsc) until pred(ops) is true (log lines can land in
        the file a little after the CIB shows the result)."""
        end = time.monotonic() + timeout
        while True:
            ops = self.ops_since(mark, rsc)
            if pred(ops):
                return ops
            if time.monotonic() > end:
                raise ClusterError("timed out after %ss waiting for operations of %s; logged: %s"
                                   % (timeout, rsc, [(o[1], o[2], o[4]) for o in ops]))
            time.sleep(0.05)

    def log_paths(self, i=None) -> dict:
        if i is None:
            return {n.name: n.logs for n in self.nodes.values()}
        return self.node(i).logs

    def dump_logs(self, nodes: Optional[Iterable] = None, lines: int = 40, file=None):
        file = file or sys.stderr
        for i in (nodes if nodes is not None else self.nodes):
            n = self.node(i)
            for key in ("init", "corosync", "pacemaker"):
                p = n.logs[key]
                if os.path.exists(p):
                    print("----- %s %s (%s) -----\n%s" % (n.name, key, p, _tail(p, lines)),
                          file=file)
        file.flush()


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def _kv(items: Iterable[str], sep="=") -> dict:
    out = {}
    for it in items or []:
        k, _, v = it.partition(sep)
        if not _:
            raise SystemExit("expected KEY%sVALUE, got %r" % (sep, it))
        out[k] = v
    return out


def _down_by_prefix(prefix: str, nodes: int):
    """Remove namespaces named <prefix>br/<prefix>n<i> and kill what is inside them."""
    c = Cluster("/nonexistent-pcmk-cluster", prefix=prefix, nodes=nodes, cleanup_at_exit=False)
    c._net_up = True
    c.down()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def add(name, help, node=False, wd=True):
        p = sub.add_parser(name, help=help)
        if wd:
            p.add_argument("--workdir", "-w", default=os.environ.get("PCMK_CLUSTER_WORKDIR",
                                                                    "/tmp/pcmk-cluster"))
        if node:
            p.add_argument("-n", "--node", required=True, help="index (1..N) or name")
        return p

    p = add("up", "create the cluster and leave it running")
    p.add_argument("--prefix", default="pm")
    p.add_argument("--subnet", type=int, default=79)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--bind", action="append", default=[], metavar="DST=SRC[:ro]")
    p.add_argument("--env", action="append", default=[], metavar="K=V")
    p.add_argument("--prop", action="append", default=[], metavar="NAME=VALUE",
                   help="extra crm_config property")
    p.add_argument("--no-host-link", action="store_true")
    p.add_argument("--no-crypto", action="store_true")
    p.add_argument("--no-seed", action="store_true", help="start with an empty CIB")
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("-v", "--verbose", action="store_true")
    add("status", "crm_mon summary")
    p = add("run", "run a command inside a node", node=True)
    p.add_argument("argv", nargs=argparse.REMAINDER)
    add("shell", "interactive shell inside a node", node=True)
    add("kill", "SIGKILL a node", node=True)
    add("stop", "stop a node cleanly", node=True)
    p = add("start", "start a stopped/killed node", node=True)
    p.add_argument("--wait", action="store_true")
    p = add("move", "crm_resource --move")
    p.add_argument("rsc")
    p.add_argument("target")
    p.add_argument("--clear", action="store_true")
    p = add("where", "nodes a resource is active on")
    p.add_argument("rsc")
    p = add("logs", "tail a node's logs", node=True)
    p.add_argument("--lines", type=int, default=40)
    p = add("down", "stop everything, remove namespaces")
    p.add_argument("--prefix", help="no state file: remove <prefix>* namespaces")
    p.add_argument("--nodes", type=int, default=3)
    a = ap.parse_args(argv)

    if a.cmd == "up":
        binds = {}
        for b in a.bind:
            dst, _, src = b.partition("=")
            ro = src.endswith(":ro")
            src = src[:-3] if ro else src
            binds[dst] = (src, "ro") if ro else src
        props = _kv(a.prop)
        c = Cluster(a.workdir, prefix=a.prefix, subnet=a.subnet, nodes=a.nodes, binds=binds,
                    env=_kv(a.env), host_link=not a.no_host_link, crypto=not a.no_crypto,
                    crm_config=props, seed_cib=not a.no_seed, cleanup_at_exit=False,
                    verbose=a.verbose)
        try:
            t = c.up(timeout=a.timeout)
        except BaseException:
            c.dump_logs()
            c.down()
            raise
        print("cluster up in %.2fs (network %.2fs); nodes: %s; workdir %s"
              % (t, c.timings["net_setup"],
                 ", ".join("%s=%s" % (n.name, n.addr) for n in c.nodes.values()), c.workdir))
        return 0

    if a.cmd == "down":
        if a.prefix and not os.path.exists(os.path.join(a.workdir, "state.json")):
            _down_by_prefix(a.prefix, a.nodes)
        else:
            Cluster.load(a.workdir).down()
        return 0

    c = Cluster.load(a.workdir)
    if a.cmd == "status":
        st = c.crm_mon()
        print("DC: %s  quorum: %s\nonline: %s\noffline: %s" % (st.dc, st.quorum, st.online,
                                                              st.offline))
        for rid, r in st.resources.items():
            print("  %-20s %-10s %s%s" % (rid, r["role"], r["nodes"], " FAILED" if r["failed"] else ""))
        for f in st.failures:
            print("  failure: %s on %s: %s" % (f.get("op_key"), f.get("node"), f.get("exitreason")
                                                or f.get("exitstatus")))
        for n in c.nodes.values():
            print("  %s: %s, logs %s" % (n.name, "running (init pid %s)" % n.init_pid
                                         if n.alive() else "down", os.path.dirname(n.logs["init"])))
    elif a.cmd == "run":
        argv = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
        r = c.run(a.node, argv, timeout=3600)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        return r.returncode
    elif a.cmd == "shell":
        n = c.node(a.node)
        if not n.alive():
            raise SystemExit("%s is not running" % n.name)
        env = c.node_env(n)
        env["PS1"] = "[%s \\W]# " % n.name
        os.execvpe("nsenter", ["nsenter", "--target", str(n.init_pid), "--net", "--mount",
                               "--uts", "--ipc", "--pid", "--wd=/", "--", "bash", "--norc", "-i"], env)
    elif a.cmd == "kill":
        c.kill(a.node)
    elif a.cmd == "stop":
        c.stop(a.node)
    elif a.cmd == "start":
        t = c.start(a.node, wait=a.wait)
        if t is not None:
            print("online after %.2fs" % t)
    elif a.cmd == "move":
        t = c.move(a.rsc, a.target, clear=a.clear)
        print("%s on %s after %.2fs" % (a.rsc, a.target, t))
    elif a.cmd == "where":
        print(" ".join(c.where(a.rsc)))
    elif a.cmd == "logs":
        c.dump_logs([a.node], lines=a.lines, file=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

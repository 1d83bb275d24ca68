#!/usr/bin/env python3
"""The client side of bench/netbench.py, run inside the LAN's hub namespace
(`ip netns exec HUB python3 bench/netclient.py MODE ADDR PORT ...`); it talks to the test guest's
TCP echo service (port 7) and answers on stdout, one JSON object a line.

  probe ADDR PORT PERIOD_US   tests/harness/echo_probe's TCP probe: one connection, a numbered
                              9-byte message ("%08u\\n") every PERIOD_US, every echoed byte checked
                              in order, the gaps between echo arrivals recorded. Prints {"ready"}
                              once connected, then reads commands on stdin:
                                mark    starts a new gap window ({"ok": true})
                                gap     the largest arrival gap since the mark (including the time
                                        from the last echo before it), counters, reset/bad/error
                                finish  stops sending, waits up to 5 s for the echoes still due,
                                        prints the final state and exits
  bulk ADDR PORT BYTES        sends BYTES (a pseudo-random pattern) over one connection while
                              reading the echo back and checking every byte; prints the seconds
                              from the first byte sent to the last byte echoed
  rtt ADDR PORT COUNT SIZE    COUNT sequential SIZE-byte request/echo round trips (after 100 not
                              counted), each checked; prints every round trip in microseconds
"""
import json
import os
import socket
import sys
import threading
import time

MSG = 9  # "%08u\n"
CONNECT_S = 30  # the guest may still be coming up


def connect(addr, port):
    deadline = time.monotonic() + CONNECT_S
    while True:
        s = socket.socket()
        s.settimeout(0.5)
        try:
            s.connect((addr, port))
            s.settimeout(None)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        except OSError as e:
            s.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"connect to {addr}:{port}: {e}")
            time.sleep(0.1)


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def message(i):
    return b"%08u\n" % (i % 100000000)


class Probe:
    def __init__(self, s, period):
        self.s, self.period = s, period
        self.lock = threading.Lock()
        self.sending = True
        self.sent = 0       # messages
        self.pos = 0        # echoed bytes checked
        self.bad = 0
        self.reset = False
        self.error = ""
        now = time.monotonic()
        self.last = now
        self.max_gap = 0.0
        self.mark_gap = 0.0
        self.closed = False
        self.tx = threading.Thread(target=self.send_loop, daemon=True)
        self.rx = threading.Thread(target=self.recv_loop, daemon=True)
        self.tx.start()
        self.rx.start()

    def fail(self, why):
        with self.lock:
            if not self.error:
                self.error = why
            self.reset = True

    def send_loop(self):
        nxt = time.monotonic()
        i = 0
        while self.sending:
            try:
                self.s.sendall(message(i))
            except OSError as e:
                if self.sending:
                    self.fail(f"send: {e}")
                return
            i += 1
            self.sent = i
            nxt += self.period
            d = nxt - time.monotonic()
            if d > 0:
                time.sleep(d)

    def recv_loop(self):
        while True:
            try:
                data = self.s.recv(65536)
            except OSError as e:
                if not self.closed:
                    self.fail(f"recv: {e}")
                return
            if not data:
                if not self.closed:
                    self.fail("the guest closed the connection")
                return
            now = time.monotonic()
            with self.lock:
                if not self.bad:
                    first, last = self.pos // MSG, (self.pos + len(data) - 1) // MSG
                    want = b"".join(message(i) for i in range(first, last + 1))
                    off = self.pos - first * MSG
                    if want[off:off + len(data)] != data:
                        self.bad = 1
                        if not self.error:
                            self.error = f"echo bytes from {self.pos} are not the bytes sent"
                self.pos += len(data)
                gap = now - self.last
                self.max_gap = max(self.max_gap, gap)
                self.mark_gap = max(self.mark_gap, gap)
                self.last = now

    def state(self):
        with self.lock:
            return {"gap_us": int(self.mark_gap * 1e6), "max_gap_us": int(self.max_gap * 1e6), "sent": self.sent,
                    "echoed": self.pos // MSG, "bad": self.bad, "reset": self.reset, "error": self.error}

    def mark(self):
        with self.lock:
            self.mark_gap = 0.0

    def finish(self):
        self.sending = False
        self.tx.join()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.pos // MSG < self.sent and not self.reset:
            time.sleep(0.01)
        st = self.state()
        self.closed = True
        try:
            self.s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.s.close()
        return st


def probe(addr, port, period_us):
    p = Probe(connect(addr, port), period_us / 1e6)
    out({"ready": True})
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "mark":
            p.mark()
            out({"ok": True})
        elif cmd == "gap":
            out(p.state())
        elif cmd == "finish":
            out(p.finish())
            return
        else:
            out({"error": f"unknown command {cmd!r}"})


PATTERN_LEN = (1 << 20) + 4093  # not a power of two: a shifted block would not match by chance
CHUNK = 65536


def bulk(addr, port, nbytes):
    block = os.urandom(PATTERN_LEN)
    pat = memoryview(block + block[:CHUNK])
    s = connect(addr, port)
    err = []

    def sender():
        pos = 0
        try:
            while pos < nbytes:
                k = min(CHUNK, nbytes - pos)
                o = pos % PATTERN_LEN
                s.sendall(pat[o:o + k])
                pos += k
        except OSError as e:
            err.append(f"send: {e}")

    t0 = time.monotonic()
    tx = threading.Thread(target=sender, daemon=True)
    tx.start()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    got, bad = 0, ""
    s.settimeout(30)
    while got < nbytes:
        try:
            k = s.recv_into(buf, min(CHUNK, nbytes - got))
        except OSError as e:
            err.append(f"recv: {e}")
            break
        if not k:
            err.append("the guest closed the connection")
            break
        o = got % PATTERN_LEN
        if not bad and view[:k] != pat[o:o + k]:
            bad = f"echo bytes from {got} are not the bytes sent"
        got += k
    secs = time.monotonic() - t0
    tx.join(5)
    s.close()
    out({"bytes": got, "secs": secs, "bad": bad, "error": "; ".join(err)})


def rtt(addr, port, count, size):
    s = connect(addr, port)
    s.settimeout(10)
    times, bad = [], ""
    for i in range(100 + count):
        req = (b"%08u" % i) + os.urandom(size - 8)
        t0 = time.perf_counter_ns()
        s.sendall(req)
        got = b""
        while len(got) < size:
            chunk = s.recv(size - len(got))
            if not chunk:
                out({"error": "the guest closed the connection", "us": times})
                return
            got += chunk
        t1 = time.perf_counter_ns()
        if got != req and not bad:
            bad = f"round trip {i}: the echo differs"
        if i >= 100:
            times.append((t1 - t0) / 1000)
    s.close()
    out({"us": times, "bad": bad, "error": ""})


def main():
    mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    try:
        if mode == "probe":
            probe(addr, port, int(sys.argv[4]))
        elif mode == "bulk":
            bulk(addr, port, int(sys.argv[4]))
        elif mode == "rtt":
            rtt(addr, port, int(sys.argv[4]), int(sys.argv[5]))
        else:
            sys.exit(f"unknown mode {mode}")
    except Exception as e:  # the caller reads one JSON line whatever happens
        out({"error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    main()

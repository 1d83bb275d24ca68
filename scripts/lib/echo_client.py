#!/usr/bin/env python3
"""A client of a guest's TCP echo service (RFC 862, port 7) for scripts/demo: one connection, a
numbered 9-byte message ("%08u\\n") every 1 ms, every echoed byte checked against what was sent.
Runs until SIGTERM/SIGINT (or --seconds), then waits up to 2 s for the echoes still due and prints
one verdict line: messages sent and echoed, whether every byte came back in order on the same
connection, and the largest gap between two echoes. Exit 0 only when nothing was lost, reordered
or reset.

Usage: echo_client.py ADDR [--port 7] [--every-ms 1] [--seconds N]
"""
import argparse
import signal
import socket
import sys
import threading
import time

MSG = "%08u\n"
MSG_LEN = 9


def message(i):
    return (MSG % (i % 100000000)).encode()


class Client:
    def __init__(self, addr, port, every):
        self.sock = socket.create_connection((addr, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(0.05)
        self.every = every
        self.sent = 0
        self.pos = 0          # echoed bytes checked so far
        self.error = None
        self.max_gap = 0.0
        self.last = time.monotonic()
        self.running = True

    def send_loop(self):
        nxt = time.monotonic()
        while self.running and not self.error:
            try:
                self.sock.sendall(message(self.sent))
            except OSError as e:
                self.error = f"send: {e}"
                return
            self.sent += 1
            nxt += self.every
            time.sleep(max(0.0, nxt - time.monotonic()))

    def take(self, data):
        for b in data:
            want = message(self.pos // MSG_LEN)[self.pos % MSG_LEN]
            if b != want:
                self.error = f"echo byte {self.pos} is not the byte sent"
                return
            self.pos += 1
        now = time.monotonic()
        self.max_gap = max(self.max_gap, now - self.last)
        self.last = now

    def receive(self, until):
        while time.monotonic() < until and not self.error:
            if not self.running and self.pos >= self.sent * MSG_LEN:
                return
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as e:
                self.error = f"recv: {e}"
                return
            if not data:
                self.error = "the guest closed the connection"
                return
            self.take(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("addr")
    ap.add_argument("--port", type=int, default=7)
    ap.add_argument("--every-ms", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=3600)
    a = ap.parse_args()
    try:
        c = Client(a.addr, a.port, a.every_ms / 1000)
    except OSError as e:
        print(f"echo client: cannot connect to {a.addr}:{a.port}: {e}")
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sender = threading.Thread(target=c.send_loop, daemon=True)
    sender.start()
    deadline = time.monotonic() + a.seconds
    while not stop.is_set() and time.monotonic() < deadline and not c.error:
        c.receive(min(deadline, time.monotonic() + 0.2))
    c.running = False
    sender.join()
    c.receive(time.monotonic() + 2)
    echoed = c.pos // MSG_LEN
    ok = c.error is None and echoed == c.sent
    print(f"echo client: {c.sent} messages sent, {echoed} echoed in order on one connection, "
          f"largest gap {c.max_gap * 1000:.0f} ms; " + ("no byte lost, reordered or reset" if ok else
                                                         f"FAILED: {c.error or 'echoes missing'}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""A lossy, delaying, reordering IP link between the root network namespace and another one,
for tests/netem.rs.

`tc qdisc ... netem` is the usual way to impair a veth link, but kernels built without
CONFIG_NET_SCH_NETEM (and without loadable modules) have no netem. So the link is two TUN
devices, one moved into the peer's namespace and one left in the root namespace, and this
process between them applies netem's model to every IP packet, each way:

- loss P %: the packet is dropped with probability P;
- delay D ms, jitter J ms: it is delivered D +- J ms (uniform) after it was read, so jitter
  alone already reorders packets, as netem's time-sorted queue does;
- reorder R %: it is delivered at once instead, overtaking the packets still delayed (netem's
  `reorder`).

Both ends are real kernel IP stacks (UDP and TCP sockets, routing), only the wire is here.

Usage: netem_link.py --netns NS --peer-dev A --root-dev B --root-ip X --peer-ip Y
                     [--loss 5] [--delay 30] [--jitter 10] [--reorder 10] [--seed 1]
Prints `ready` once the link is up; on SIGTERM prints the counters of each direction, one line
each (`up read=N dropped=N delivered=N reordered=N failed=N`; `up` is peer to root, `down`
root to peer), and exits. The TUN devices go away with
the process; the namespace is the caller's.
"""

import argparse
import fcntl
import heapq
import os
import random
import select
import signal
import struct
import subprocess
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def ip(*args, netns=None):
    cmd = ["ip"] + (["netns", "exec", netns, "ip"] if netns else []) + list(args)
    subprocess.run(cmd, check=True)


class Direction:
    def __init__(self, src, dst, args, rng):
        self.src, self.dst, self.args, self.rng = src, dst, args, rng
        self.queue = []  # (due, read order, packet)
        self.read = self.dropped = self.delivered = self.reordered = self.failed = 0
        self.sent_up_to = -1  # highest read order delivered so far

    def take(self, now):
        while True:
            try:
                packet = os.read(self.src, 65536)
            except BlockingIOError:
                return
            order = self.read
            self.read += 1
            a = self.args
            if self.rng.random() * 100 < a.loss:
                self.dropped += 1
                continue
            if self.rng.random() * 100 < a.reorder:
                due = now
            else:
                due = now + (a.delay + self.rng.uniform(-a.jitter, a.jitter)) / 1000
            heapq.heappush(self.queue, (due, order, packet))

    def flush(self, now):
        while self.queue and self.queue[0][0] <= now:
            _, order, packet = heapq.heappop(self.queue)
            if order < self.sent_up_to:
                self.reordered += 1
            self.sent_up_to = max(self.sent_up_to, order)
            try:
                os.write(self.dst, packet)
                self.delivered += 1
            except OSError:
                self.failed += 1

    def next_due(self):
        return self.queue[0][0] if self.queue else None

    def counters(self):
        return "read=%d dropped=%d delivered=%d reordered=%d failed=%d" % (
            self.read,
            self.dropped,
            self.delivered,
            self.reordered,
            self.failed,
        )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--netns", required=True)
    p.add_argument("--peer-dev", required=True)
    p.add_argument("--root-dev", required=True)
    p.add_argument("--root-ip", required=True)
    p.add_argument("--peer-ip", required=True)
    p.add_argument("--loss", type=float, default=5)
    p.add_argument("--delay", type=float, default=30)
    p.add_argument("--jitter", type=float, default=10)
    p.add_argument("--reorder", type=float, default=10)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    peer = open_tun(args.peer_dev)
    root = open_tun(args.root_dev)
    ip("link", "set", args.peer_dev, "netns", args.netns)
    ip("link", "set", "lo", "up", netns=args.netns)
    ip("addr", "add", args.peer_ip + "/32", "dev", args.peer_dev, netns=args.netns)
    ip("link", "set", args.peer_dev, "up", netns=args.netns)
    ip("route", "add", args.root_ip + "/32", "dev", args.peer_dev, netns=args.netns)
    ip("addr", "add", args.root_ip + "/32", "dev", args.root_dev)
    ip("link", "set", args.root_dev, "up")
    ip("route", "add", args.peer_ip + "/32", "dev", args.root_dev)

    rng = random.Random(args.seed)
    up = Direction(peer, root, args, rng)
    down = Direction(root, peer, args, rng)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    print("ready", flush=True)
    while not stop:
        now = time.monotonic()
        dues = [d for d in (up.next_due(), down.next_due()) if d is not None]
        timeout = min([0.05] + [max(0.0, d - now) for d in dues])
        try:
            readable, _, _ = select.select([peer, root], [], [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        if peer in readable:
            up.take(now)
        if root in readable:
            down.take(now)
        up.flush(now)
        down.flush(now)
    print("up " + up.counters(), flush=True)
    print("down " + down.counters(), flush=True)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""CPU time and RSS of a few processes over a window (tests/bench/compare.sh).

  sample_procs.py START LEN NAME=PID[,PID...] [NAME=+PID ...]

Waits START seconds, then for LEN seconds: reads each group's CPU time (utime + stime of every
PID in the group, from /proc/PID/stat, in seconds via `getconf CLK_TCK`) at the window's start
and end, samples its RSS (VmRSS from /proc/PID/status, summed over the group) about every
0.5 s, and reads the whole machine's busy time from /proc/stat. `+PID` means PID and its
children (nginx: the master and its workers, looked up at the window's start). Prints one JSON
object: {"len_s", "machine_busy": fraction of all cores, "groups": {NAME: {"cpu_s", "user_s", "sys_s", "cores",
"rss_kib_mean", "rss_kib_max"}}}. A process that is gone reads as zero.
"""

import json
import os
import subprocess
import sys
import time

HZ = int(subprocess.run(["getconf", "CLK_TCK"], capture_output=True, text=True).stdout.strip() or 100)


def children(pid):
    kids = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def cpu_ticks(pid):
    """(utime, stime) of a process, in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return (0, 0)
    rest = s[s.rfind(")") + 2 :].split()
    # fields 14 and 15 of stat (utime, stime) are 12 and 13 after "pid (comm) ".
    return (int(rest[11]), int(rest[12]))


def group_ticks(pids):
    t = [cpu_ticks(p) for p in pids]
    return (sum(u for u, _ in t), sum(s for _, s in t))


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v[:8]), idle


def main():
    start, length = float(sys.argv[1]), float(sys.argv[2])
    groups = {}
    for arg in sys.argv[3:]:
        name, _, pids = arg.partition("=")
        groups[name] = pids
    t0 = time.monotonic()
    time.sleep(max(0.0, start - (time.monotonic() - t0)))
    resolved = {}
    for name, spec in groups.items():
        pids = []
        for p in spec.split(","):
            if not p:
                continue
            if p.startswith("+"):
                pid = int(p[1:])
                pids += [pid] + children(pid)
            else:
                pids.append(int(p))
        resolved[name] = pids
    c0 = {n: group_ticks(ps) for n, ps in resolved.items()}
    m0 = machine()
    w0 = time.monotonic()
    rss = {n: [] for n in resolved}
    while True:
        for n, ps in resolved.items():
            rss[n].append(sum(rss_kib(p) for p in ps))
        left = length - (time.monotonic() - w0)
        if left <= 0:
            break
        time.sleep(min(0.5, left))
    c1 = {n: group_ticks(ps) for n, ps in resolved.items()}
    m1 = machine()
    wall = time.monotonic() - w0
    total, idle = m1[0] - m0[0], m1[1] - m0[1]
    out = {
        "len_s": round(wall, 3),
        "machine_busy": round(1 - idle / total, 4) if total else None,
        "groups": {
            n: {
                "pids": resolved[n],
                "cpu_s": (sum(c1[n]) - sum(c0[n])) / HZ,
                "user_s": (c1[n][0] - c0[n][0]) / HZ,
                "sys_s": (c1[n][1] - c0[n][1]) / HZ,
                "cores": round((sum(c1[n]) - sum(c0[n])) / HZ / wall, 4),
                "rss_kib_mean": round(sum(rss[n]) / len(rss[n])),
                "rss_kib_max": max(rss[n]),
            }
            for n in resolved
        },
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

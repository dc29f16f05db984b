#!/usr/bin/env python3
"""Soak run: churn of every protocol against a release streamgate, then checks.

Not part of the test command (it runs for --minutes, 30 by default). From the repository root,
after `cargo build --release`:

    python3 tests/soak/soak.py [--minutes 30] [--binary target/release/streamgate] [--report FILE]

What runs, all on loopback:
- streamgate with RTMP, HTTP-FLV, RTSP (UDP range included) and SRT, all four hooks of every
  protocol pointing at a business server in this process, a 2 s hook timeout;
- a business server that flaps every 20 s between answering at once, answering slowly
  (0.2-1.5 s), refusing 30 % of connect/play/publish with 403 or 500, answering
  `100 Continue` before its final answer, closing every connection after its answer, and
  holding 20 % of the calls past the hook timeout (the server must refuse those). `on_done` is
  always answered 200 (slowly in the slow phase): its delivery across outages is not checked
  here;
- publishers: one RTMP, one RTSP (TCP or UDP, alternating) and one SRT publisher at a time,
  each living 20-90 s under a new name, then replaced;
- players: one new every 0.7 s (at most 14 at once) over RTMP, HTTP-FLV, RTSP/TCP, RTSP/UDP or
  SRT, of a live stream or sometimes of a name that is not live, for 2-25 s; one in five is
  killed with SIGKILL instead of ending;
- hostile clients, one every second: garbage bytes to every port, a byte-at-a-time request
  head, an RTMP handshake followed by garbage, pipelined RTSP OPTIONS without reading, idle
  connections, random SRT datagrams.

Every 10 s the server's RSS, open file descriptors and threads are sampled. After the churn
the run waits for every client to end, samples the idle server, stops it with SIGTERM and
checks:
- every play or publish the business server allowed (a 200 within the timeout) got exactly
  one `on_done` with the same protocol and clientid, and no `on_done` came for anything else;
- descriptors and threads of the idle server (70 s after the last client, when idle hook
  connections have left the pool) are back to those of the server before its first client,
  and its RSS is at most --rss-slack-mb above the RSS under load after the first two minutes.
The figures go to stdout and, with --report, to a file. Exit 0 when every check passes.
"""

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HOOK_TIMEOUT_MS = 2000
PHASES = ["ok", "slow", "refusing", "interim", "closing", "hanging"]
PHASE_SECONDS = 20
IDLE_WAIT = int(os.environ.get("SOAK_IDLE_WAIT", "70"))
FD_SLACK = 2
THREAD_SLACK = 0


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------------------------------------------------
# the business server


class Hooks:
    """Records every callback and answers it according to the current phase."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.records = []  # dicts: call, protocol, clientid, name, status, late
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.port = None

    def phase(self):
        return PHASES[int((time.monotonic() - self.t0) // PHASE_SECONDS) % len(PHASES)]

    def decide(self, fields):
        """(status, delay seconds, interim, close) for one request."""
        call = fields.get("call", "")
        phase = self.phase()
        if call == "done":
            return 200, self.rng.uniform(0.2, 1.5) if phase == "slow" else 0.0, False, False
        if phase == "slow":
            return 200, self.rng.uniform(0.2, 1.5), False, False
        if phase == "refusing" and self.rng.random() < 0.3:
            return self.rng.choice([403, 500]), 0.0, False, False
        if phase == "interim":
            return 200, 0.05, True, False
        if phase == "closing":
            return 200, 0.0, False, True
        if phase == "hanging" and self.rng.random() < 0.2:
            return 200, HOOK_TIMEOUT_MS / 1000 + 2.0, False, False
        return 200, 0.0, False, False

    async def serve(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = b""
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                query = target.split("?", 1)[1] if "?" in target else ""
                fields = dict(urllib.parse.parse_qsl(body.decode() if method == "POST" else query))
                status, delay, interim, close = self.decide(fields)
                asked = time.monotonic()
                if interim:
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await writer.drain()
                if delay:
                    await asyncio.sleep(delay)
                late = (time.monotonic() - asked) * 1000 > HOOK_TIMEOUT_MS - 300
                with self.lock:
                    self.records.append(
                        {
                            "call": fields.get("call", ""),
                            "protocol": fields.get("protocol", ""),
                            "clientid": fields.get("clientid", ""),
                            "name": fields.get("name", ""),
                            "status": status,
                            "late": late,
                        }
                    )
                text = b"OK" if status == 200 else b"Denied"
                conn = b"Connection: close\r\n" if close else b""
                writer.write(
                    b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n%s"
                    % (status, len(text), conn, text)
                )
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def start(self):
        ready = threading.Event()

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            server = loop.run_until_complete(asyncio.start_server(self.serve, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait()


# ------------------------------------------------------------------------------------------
# the server under test


def write_config(path, ports, hook_port, rtp_min):
    def notify(proto):
        base = f"http://127.0.0.1:{hook_port}/{proto}"
        calls = "".join(f"<on_{c}>{base}/{c}</on_{c}>" for c in ["connect", "play", "publish", "done"])
        return f"<http_notify>{calls}<timeout_ms>{HOOK_TIMEOUT_MS}</timeout_ms></http_notify>"

    with open(path, "w") as f:
        f.write(
            f"""<config>
  <data_dir>{os.path.join(os.path.dirname(path), 'data')}</data_dir>
  <log_level>info</log_level>
  <rtmp><enable>true</enable><port>{ports['rtmp']}</port>{notify('rtmp')}</rtmp>
  <httpflv><enable>true</enable><port>{ports['httpflv']}</port>{notify('httpflv')}</httpflv>
  <rtsp><enable>true</enable><port>{ports['rtsp']}</port>
    <rtp_port_min>{rtp_min}</rtp_port_min><rtp_port_max>{rtp_min + 199}</rtp_port_max>{notify('rtsp')}</rtsp>
  <srt><enable>true</enable><port>{ports['srt']}</port>{notify('srt')}</srt>
</config>
"""
        )


def sample(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(fields["Threads"]),
    }


TCP_STATES = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN"}


def fd_kinds(pid, hook_port):
    """The server's descriptors by kind: TCP by state and remote port class, UDP, other."""
    sockets = {}
    for table, proto in [("tcp", "tcp"), ("tcp6", "tcp"), ("udp", "udp"), ("udp6", "udp")]:
        try:
            with open(f"/proc/net/{table}") as f:
                next(f)
                for line in f:
                    cols = line.split()
                    remote_port = int(cols[2].split(":")[1], 16)
                    state = TCP_STATES.get(cols[3], cols[3]) if proto == "tcp" else ""
                    sockets[cols[9]] = (proto, state, remote_port)
        except OSError:
            pass
    kinds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            proto, state, remote = sockets.get(target[8:-1], ("socket", "", 0))
            kind = f"{proto} {state}".strip() + (" to hooks" if remote == hook_port else "")
        else:
            kind = "other"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


# ------------------------------------------------------------------------------------------
# clients

VIDEO = "testsrc=size=320x240:rate=15"
AUDIO = "sine=frequency=440:sample_rate=44100"
FFMPEG = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "quiet"]


def publisher(kind, ports, name, seconds, udp):
    src = FFMPEG + ["-re", "-f", "lavfi", "-i", VIDEO, "-f", "lavfi", "-i", AUDIO,
                    "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "32k", "-t", str(seconds)]
    if kind == "rtmp":
        out = ["-f", "flv", f"rtmp://127.0.0.1:{ports['rtmp']}/live/{name}"]
    elif kind == "rtsp":
        out = ["-f", "rtsp", "-rtsp_transport", "udp" if udp else "tcp",
               f"rtsp://127.0.0.1:{ports['rtsp']}/live/{name}"]
    else:
        out = ["-f", "mpegts", f"srt://127.0.0.1:{ports['srt']}?streamid=#!::r=live/{name},m=publish"]
    return subprocess.Popen(src + out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def player(kind, ports, name, seconds):
    url = {
        "rtmp": f"rtmp://127.0.0.1:{ports['rtmp']}/live/{name}",
        "httpflv": f"http://127.0.0.1:{ports['httpflv']}/live/{name}.flv",
        "rtsp_tcp": f"rtsp://127.0.0.1:{ports['rtsp']}/live/{name}",
        "rtsp_udp": f"rtsp://127.0.0.1:{ports['rtsp']}/live/{name}",
        "srt": f"srt://127.0.0.1:{ports['srt']}?streamid=#!::r=live/{name},m=request",
    }[kind]
    pre = ["-rtsp_transport", "tcp" if kind == "rtsp_tcp" else "udp"] if kind.startswith("rtsp") else []
    cmd = FFMPEG + ["-rw_timeout", "10000000"] if kind in ("rtmp", "httpflv") else list(FFMPEG)
    cmd += pre + ["-i", url, "-t", str(seconds), "-c", "copy", "-f", "null", "-"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def hostile(rng, ports):
    """One hostile client; runs in its own thread and ends within about 20 s."""
    kind = rng.choice(["garbage", "slow_head", "rtmp_garbage", "rtsp_pipeline", "idle", "srt_garbage"])
    tcp = rng.choice([ports["rtmp"], ports["httpflv"], ports["rtsp"]])
    try:
        if kind == "srt_garbage":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for _ in range(200):
                s.sendto(rng.randbytes(rng.randint(1, 1500)), ("127.0.0.1", ports["srt"]))
            s.close()
            return
        s = socket.create_connection(("127.0.0.1", tcp), timeout=5)
        s.settimeout(5)
        if kind == "garbage":
            s.sendall(rng.randbytes(rng.randint(1, 65536)))
        elif kind == "slow_head":
            for b in b"GET /live/x.flv HTTP/1.1\r\nHost: a\r\n":
                s.send(bytes([b]))
                time.sleep(0.3)
        elif kind == "rtmp_garbage":
            s = socket.create_connection(("127.0.0.1", ports["rtmp"]), timeout=5)
            s.sendall(b"\x03" + bytes(1536))
            s.recv(3073)
            s.sendall(bytes(1536) + rng.randbytes(20000))
        elif kind == "rtsp_pipeline":
            s = socket.create_connection(("127.0.0.1", ports["rtsp"]), timeout=5)
            s.setblocking(False)
            req = b"OPTIONS rtsp://127.0.0.1/live/x RTSP/1.0\r\nCSeq: 1\r\n\r\n"
            try:
                for _ in range(20000):
                    s.send(req)
            except (BlockingIOError, OSError):
                pass
            time.sleep(5)
        elif kind == "idle":
            time.sleep(20)
        s.close()
    except OSError:
        pass


# ------------------------------------------------------------------------------------------
# the run


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--binary", default="target/release/streamgate")
    ap.add_argument("--report", default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rss-slack-mb", type=float, default=24.0)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    hooks = Hooks(args.seed)
    hooks.start()
    ports = {"rtmp": free_port(), "httpflv": free_port(), "rtsp": free_port(),
             "srt": free_port(socket.SOCK_DGRAM)}
    work = tempfile.mkdtemp(prefix="streamgate-soak-")
    config = os.path.join(work, "streamgate.xml")
    write_config(config, ports, hooks.port, 40000 + 2 * rng.randint(0, 9000))
    log = open(os.path.join(work, "server.log"), "w")
    server = subprocess.Popen([args.binary, "--config", config], stdout=log, stderr=log)
    time.sleep(1.0)
    if server.poll() is not None:
        sys.exit(f"streamgate did not start; see {work}/server.log")
    base = sample(server.pid)
    base_kinds = fd_kinds(server.pid, hooks.port)
    base["t"] = 0
    base["players"] = 0

    publishers = {}  # kind -> (Popen, name)
    players = []
    serial = 0
    samples = [base]
    start = time.monotonic()
    end = start + args.minutes * 60
    next_sample = start + 10
    next_player = start + 3
    next_hostile = start + 3
    udp = False
    hostile_threads = []
    while time.monotonic() < end:
        now = time.monotonic()
        for kind in ["rtmp", "rtsp", "srt"]:
            p = publishers.get(kind)
            if p is None or p[0].poll() is not None:
                serial += 1
                name = f"{kind}{serial}"
                if kind == "rtsp":
                    udp = not udp
                publishers[kind] = (publisher(kind, ports, name, rng.randint(20, 90), udp), name)
        players = [p for p in players if p.poll() is None]
        if now >= next_player and len(players) < 14:
            live = [n for _, n in publishers.values()]
            name = rng.choice(live) if rng.random() < 0.9 else f"absent{serial}"
            kind = rng.choice(["rtmp", "httpflv", "rtsp_tcp", "rtsp_udp", "srt"])
            p = player(kind, ports, name, rng.randint(2, 25))
            if rng.random() < 0.2:
                threading.Timer(rng.uniform(1, 10), lambda p=p: p.poll() is None and p.kill()).start()
            players.append(p)
            next_player = now + 0.7
        if now >= next_hostile:
            t = threading.Thread(target=hostile, args=(random.Random(rng.random()), ports), daemon=True)
            t.start()
            hostile_threads.append(t)
            hostile_threads = [t for t in hostile_threads if t.is_alive()]
            next_hostile = now + 1.0
        if now >= next_sample:
            s = sample(server.pid)
            s["t"] = round(now - start)
            s["players"] = len(players)
            samples.append(s)
            print(f"t={s['t']:5d}s rss={s['rss_mb']:.1f}MB fds={s['fds']} threads={s['threads']} "
                  f"players={s['players']} phase={hooks.phase()} calls={len(hooks.records)}", flush=True)
            next_sample = now + 10
        if server.poll() is not None:
            sys.exit(f"streamgate exited during the run; see {work}/server.log")
        time.sleep(0.1)

    # Drain: let everything end, then sample the idle server.
    for p, _ in publishers.values():
        p.terminate()
    for p in players:
        p.terminate()
    for p in [p for p, _ in publishers.values()] + players:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
    for t in hostile_threads:
        t.join(timeout=30)
    # Idle hook connections leave the pool within 60 s, the resolver's threads after 10 s.
    time.sleep(IDLE_WAIT)
    idle = sample(server.pid)
    idle_kinds = fd_kinds(server.pid, hooks.port)
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        sys.exit("streamgate did not stop within 30 s of SIGTERM")
    time.sleep(3)

    # Checks.
    failures = []
    with hooks.lock:
        records = list(hooks.records)
    allowed = {}
    dones = {}
    for r in records:
        key = (r["protocol"], r["clientid"])
        if r["call"] in ("play", "publish") and r["status"] == 200 and not r["late"]:
            allowed[key] = allowed.get(key, 0) + 1
        if r["call"] == "done":
            dones[key] = dones.get(key, 0) + 1
    for key in allowed:
        if dones.get(key, 0) != 1:
            failures.append(f"allowed {key} got {dones.get(key, 0)} on_done")
    for key in dones:
        if key not in allowed:
            failures.append(f"on_done for {key}, which was not allowed (or answered late)")
    warm = [s for s in samples if s["t"] >= 120] or samples
    first = warm[0]
    base = samples[0]
    if idle["fds"] > base["fds"] + FD_SLACK:
        failures.append(f"fds idle {idle['fds']} > {base['fds']} before any client + {FD_SLACK}")
    if idle["threads"] > base["threads"] + THREAD_SLACK:
        failures.append(f"threads idle {idle['threads']} > {base['threads']} before any client + {THREAD_SLACK}")
    if idle["rss_mb"] > first["rss_mb"] + args.rss_slack_mb:
        failures.append(f"RSS idle {idle['rss_mb']:.1f} MB > {first['rss_mb']:.1f} MB after warm-up + {args.rss_slack_mb} MB")

    calls = {}
    for r in records:
        calls[r["call"]] = calls.get(r["call"], 0) + 1
    refused = sum(1 for r in records if r["call"] != "done" and (r["status"] != 200 or r["late"]))
    lines = [
        f"soak: {args.minutes:g} min, seed {args.seed}, binary {args.binary}",
        f"hook calls: {calls}; refused or late: {refused}",
        f"allowed play/publish: {len(allowed)}; on_done: {sum(dones.values())}",
        f"samples (t, RSS MB, fds, threads, players): first after warm-up {first}, "
        f"max RSS {max(s['rss_mb'] for s in samples):.1f} MB, max fds {max(s['fds'] for s in samples)}, "
        f"max threads {max(s['threads'] for s in samples)}",
        f"idle after the run: {idle}",
        f"descriptors before any client: {base_kinds}; idle after the run: {idle_kinds}",
        f"server exit code after SIGTERM: {server.returncode}",
        "checks: " + ("all passed" if not failures else f"{len(failures)} FAILED"),
    ] + [f"  {f}" for f in failures[:50]]
    text = "\n".join(lines)
    print(text)
    if args.report:
        with open(args.report, "w") as f:
            f.write(text + "\n")
    print(f"(log and config in {work})")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

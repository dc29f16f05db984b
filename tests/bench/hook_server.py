#!/usr/bin/env python3
"""A tiny HTTP Notify endpoint for the benchmarks (tests/bench/compare.sh).

One asyncio event loop, one thread: HTTP/1.1 keep-alive (and HTTP/1.0, closed after each
answer, as nginx-rtmp's notify sends it), answering `200` with an empty body at once. Prints
its port on the first line of stdout, then serves until it is killed. An optional first argument
is the port to listen on (default: one the kernel picks), so a benchmark can stop it and start it
again on the same port (an outage of the business server).

Control requests (from the benchmark script, not from a media server):

  GET /_slow?seconds=5&call=play   from now on, answer requests whose path ends in /play
                                   after sleeping that long (other calls stay immediate)
  GET /_fast                       answer everything at once again
  GET /_reset                      zero the counters
  GET /_stats                      JSON: requests answered (by call), connections opened,
                                   most connections open at once, most requests in flight,
                                   CPU seconds of this process, and the event loop's lag
                                   (how late a 5 ms ticker ran: the time a request could have
                                   waited because this server was busy), max and p99, in ms

Loopback only: it binds 127.0.0.1.
"""

import asyncio
import json
import sys
import time

TICK = 0.005


class State:
    def __init__(self):
        self.slow_seconds = 0.0
        self.slow_call = "play"
        self.reset()

    def reset(self):
        self.requests = {}
        self.connections = 0
        self.open = getattr(self, "open", 0)
        self.max_open = self.open
        self.in_flight = 0
        self.max_in_flight = 0
        self.lags = []
        self.cpu0 = time.process_time()
        self.t0 = time.monotonic()

    def stats(self):
        lags = sorted(self.lags)
        p99 = lags[max(0, int(len(lags) * 0.99) - 1)] if lags else 0.0
        return {
            "requests": sum(self.requests.values()),
            "by_call": self.requests,
            "connections": self.connections,
            "max_open": self.max_open,
            "max_in_flight": self.max_in_flight,
            "cpu_s": round(time.process_time() - self.cpu0, 4),
            "wall_s": round(time.monotonic() - self.t0, 4),
            "loop_lag_max_ms": round(max(lags) * 1000, 3) if lags else 0.0,
            "loop_lag_p99_ms": round(p99 * 1000, 3),
        }


STATE = State()


def response(status, body=b"", keep_alive=True, ctype=b"text/plain"):
    return b"".join(
        [
            b"HTTP/1.1 ",
            status,
            b"\r\nContent-Type: ",
            ctype,
            b"\r\nContent-Length: ",
            str(len(body)).encode(),
            b"\r\n",
            b"" if keep_alive else b"Connection: close\r\n",
            b"\r\n",
            body,
        ]
    )


class Hook(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""
        self.need_body = 0
        self.pending = None  # (path, keep_alive) of a request whose body is still coming
        self.queue = []  # answers in request order (pipelining)
        self.closed = False
        STATE.connections += 1
        STATE.open += 1
        STATE.max_open = max(STATE.max_open, STATE.open)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc):
        self.closed = True
        STATE.open -= 1

    def data_received(self, data):
        self.buf += data
        while True:
            if self.pending is not None:
                if len(self.buf) < self.need_body:
                    return
                self.buf = self.buf[self.need_body :]
                path, keep_alive = self.pending
                self.pending = None
                self.request(path, keep_alive)
                continue
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > 65536:
                    self.transport.close()
                return
            head = self.buf[:end].decode("latin-1")
            self.buf = self.buf[end + 4 :]
            lines = head.split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) < 3:
                self.transport.close()
                return
            path, version = parts[1], parts[2]
            length = 0
            conn = ""
            for line in lines[1:]:
                k, _, v = line.partition(":")
                k = k.strip().lower()
                if k == "content-length":
                    length = int(v.strip() or 0)
                elif k == "connection":
                    conn = v.strip().lower()
            keep_alive = (version == "HTTP/1.1" and conn != "close") or conn == "keep-alive"
            self.pending = (path, keep_alive)
            self.need_body = length

    def request(self, path, keep_alive):
        base, _, query = path.partition("?")
        if base.startswith("/_"):
            self.send(self.control(base, query, keep_alive), keep_alive)
            return
        call = base.rsplit("/", 1)[-1]
        STATE.requests[call] = STATE.requests.get(call, 0) + 1
        if STATE.slow_seconds > 0 and call == STATE.slow_call:
            STATE.in_flight += 1
            STATE.max_in_flight = max(STATE.max_in_flight, STATE.in_flight)
            slot = [None]
            self.queue.append(slot)
            asyncio.get_running_loop().call_later(
                STATE.slow_seconds, self.finish_slow, slot, keep_alive
            )
            return
        self.send(response(b"200 OK", keep_alive=keep_alive), keep_alive)

    def finish_slow(self, slot, keep_alive):
        STATE.in_flight -= 1
        slot[0] = response(b"200 OK", keep_alive=keep_alive)
        self.flush(keep_alive)

    def send(self, data, keep_alive):
        self.queue.append([data])
        self.flush(keep_alive)

    def flush(self, keep_alive):
        while self.queue and self.queue[0][0] is not None:
            data = self.queue.pop(0)[0]
            if not self.closed:
                self.transport.write(data)
                if not keep_alive:
                    self.transport.close()

    def control(self, base, query, keep_alive):
        args = dict(p.partition("=")[::2] for p in query.split("&") if p)
        if base == "/_slow":
            STATE.slow_seconds = float(args.get("seconds", "5"))
            STATE.slow_call = args.get("call", "play")
        elif base == "/_fast":
            STATE.slow_seconds = 0.0
        elif base == "/_reset":
            STATE.reset()
        elif base == "/_stats":
            body = json.dumps(STATE.stats()).encode()
            return response(b"200 OK", body, keep_alive, b"application/json")
        else:
            return response(b"404 Not Found", keep_alive=keep_alive)
        return response(b"200 OK", keep_alive=keep_alive)


async def ticker():
    loop = asyncio.get_running_loop()
    due = loop.time() + TICK
    while True:
        await asyncio.sleep(max(0.0, due - loop.time()))
        now = loop.time()
        STATE.lags.append(max(0.0, now - due))
        if len(STATE.lags) > 200000:
            del STATE.lags[:100000]
        due = now + TICK


async def main():
    loop = asyncio.get_running_loop()
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = await loop.create_server(Hook, "127.0.0.1", port, backlog=4096, reuse_address=True)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop.create_task(ticker())
    await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)

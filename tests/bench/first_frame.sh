#!/usr/bin/env bash
# Time to first frame, measured with the load tool (streamgate-load) against the release build
# of streamgate: players join a live 2 Mbit/s H.264+AAC stream over RTMP and HTTP-FLV, one
# after another (a ramp) and all at once, with no hooks and with hooks pointing at a local
# keep-alive HTTP server that answers 200 at once. Prints every run and a summary table
# (medians over the repeats). Loopback only; every process it starts is stopped on exit.
#
#   bash tests/bench/first_frame.sh
#
# Knobs (environment): PLAYERS (30), RAMP players/s for the ramp case (10), DURATION seconds
# each run lasts after its last player started (3), REPEAT runs of each case (3), WORKERS (1),
# SKIP_BUILD=1 to use the binaries already in target/release, BIN (another streamgate binary).
# Needs cargo, ffmpeg (with libx264 and aac) and python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

PLAYERS=${PLAYERS:-30}
RAMP=${RAMP:-10}
DURATION=${DURATION:-3}
REPEAT=${REPEAT:-3}
WORKERS=${WORKERS:-1}

for tool in cargo ffmpeg python3 timeout; do
    command -v "$tool" >/dev/null 2>&1 || { echo "first_frame.sh: $tool is required" >&2; exit 2; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/streamgate-bench.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Stops the processes started so far (between the two server configs).
stop_all() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}

# free_port, wait_port
. tests/bench/lib.sh

echo "== machine"
echo "nproc: $(nproc)"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "kernel: $(uname -r)"
ffmpeg -hide_banner -version | sed -n 1p

if [ "${SKIP_BUILD:-0}" = 1 ]; then
    echo "== build skipped (SKIP_BUILD=1): using the binaries in target/release"
else
    echo "== build (release)"
    timeout 1800 cargo build --release -p streamgate -p streamgate-load --quiet
fi
BIN=${BIN:-target/release/streamgate}
LOAD=target/release/streamgate-load

# The business server for the hooks case: keep-alive HTTP/1.1, answers 200 at once.
cat >"$tmp/hook.py" <<'EOF'
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Hook(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = answer
    do_POST = answer

    def log_message(self, *args):
        pass

ThreadingHTTPServer.daemon_threads = True
# The default listen backlog (5) drops SYNs when many hook connections open at once, and the
# 1 s SYN retransmit would then show up as play-start latency that is not the server's.
ThreadingHTTPServer.request_queue_size = 1024
server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
print(server.server_address[1], flush=True)
server.serve_forever()
EOF

notify() { # base URL or empty
    [ -n "$1" ] || return 0
    local call
    echo "    <http_notify>"
    for call in connect play publish done; do
        echo "      <on_$call>$1/$call</on_$call>"
    done
    echo "    </http_notify>"
}

results="$tmp/results.jsonl"
: >"$results"

run_config() { # label: "off" or "on"
    local hooks=$1 rtmp_port flv_port hook_base="" hook_port srv ff
    rtmp_port=$(free_port)
    flv_port=$(free_port)
    if [ "$hooks" = on ]; then
        python3 "$tmp/hook.py" >"$tmp/hook.port" 2>"$tmp/hook.log" &
        pids+=($!)
        for _ in $(seq 100); do [ -s "$tmp/hook.port" ] && break; sleep 0.05; done
        hook_port=$(head -n1 "$tmp/hook.port")
        [ -n "$hook_port" ] || { echo "hook server did not start" >&2; cat "$tmp/hook.log" >&2; exit 1; }
        hook_base="http://127.0.0.1:$hook_port"
    fi
    {
        echo "<config>"
        echo "  <data_dir>$tmp/data</data_dir>"
        echo "  <workers>$WORKERS</workers>"
        echo "  <log_level>warn</log_level>"
        echo "  <rtmp>"
        echo "    <enable>true</enable>"
        echo "    <port>$rtmp_port</port>"
        notify "${hook_base:+$hook_base/rtmp}"
        echo "  </rtmp>"
        echo "  <httpflv>"
        echo "    <enable>true</enable>"
        echo "    <port>$flv_port</port>"
        notify "${hook_base:+$hook_base/httpflv}"
        echo "  </httpflv>"
        echo "</config>"
    } >"$tmp/streamgate-$hooks.xml"

    echo "== hooks $hooks: streamgate (workers $WORKERS) on rtmp :$rtmp_port, httpflv :$flv_port${hook_base:+, hooks at $hook_base}"
    "$BIN" --config "$tmp/streamgate-$hooks.xml" >"$tmp/server-$hooks.log" 2>&1 &
    srv=$!
    pids+=("$srv")
    wait_port "$rtmp_port" "$srv" && wait_port "$flv_port" "$srv" || {
        echo "streamgate did not start" >&2; cat "$tmp/server-$hooks.log" >&2; exit 1; }

    # The live source: 1280x720 25 fps H.264 at 2 Mbit/s, GOP 2 s, AAC. Bounded by -t.
    local seconds=$(( (REPEAT * 2 * (PLAYERS / RAMP + 2 * DURATION + 4)) + 40 ))
    timeout $((seconds + 30)) ffmpeg -hide_banner -nostdin -loglevel error -re \
        -f lavfi -i testsrc=size=1280x720:rate=25 \
        -f lavfi -i sine=frequency=440:sample_rate=44100 \
        -c:v libx264 -preset ultrafast -tune zerolatency -g 50 -b:v 2M -pix_fmt yuv420p \
        -c:a aac -b:a 64k -t "$seconds" \
        -f flv "rtmp://127.0.0.1:$rtmp_port/live/bench" >"$tmp/ffmpeg-$hooks.log" 2>&1 &
    ff=$!
    pids+=("$ff")
    local live=0
    for _ in $(seq 40); do
        if timeout 20 "$LOAD" --url "rtmp://127.0.0.1:$rtmp_port/live/bench" --players 1 \
            --duration 0.2 --start-timeout 5 >/dev/null 2>&1; then live=1; break; fi
        kill -0 "$ff" 2>/dev/null || break
        sleep 0.5
    done
    [ "$live" = 1 ] || { echo "the stream never went live" >&2; cat "$tmp/ffmpeg-$hooks.log" >&2; exit 1; }
    sleep 3 # a few GOPs in: the cache holds a whole GOP from its keyframe

    local r proto url mode args out
    for r in $(seq "$REPEAT"); do
        for proto in rtmp httpflv; do
            if [ "$proto" = rtmp ]; then
                url="rtmp://127.0.0.1:$rtmp_port/live/bench"
            else
                url="http://127.0.0.1:$flv_port/live/bench.flv"
            fi
            for mode in ramp once; do
                args=(--url "$url" --players "$PLAYERS" --duration "$DURATION" --json)
                [ "$mode" = ramp ] && args+=(--ramp "$RAMP")
                echo "-- run $r: hooks $hooks, $proto, $mode: $LOAD ${args[*]}"
                out=$(timeout $((PLAYERS / RAMP + DURATION + 30)) "$LOAD" "${args[@]}" || true)
                if [ -z "$out" ]; then echo "   (no report)"; continue; fi
                printf '%s\n' "$out" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
f = lambda d, k: "-" if d is None else "%.2f" % d[k]
print("   %d/%d playing, %d errors; play start p50 %s max %s ms; first keyframe p50 %s p90 %s max %s ms; largest gap max %s ms; %.0f kbit/s; tool %.1f%% CPU"
      % (r["playing"], r["players"], r["errors"], f(r["play_start_ms"], "p50"), f(r["play_start_ms"], "max"),
         f(r["first_keyframe_ms"], "p50"), f(r["first_keyframe_ms"], "p90"), f(r["first_keyframe_ms"], "max"),
         f(r["max_frame_gap_ms"], "max"), (r["bitrate_kbps"] or {"mean": 0})["mean"], r["tool_cpu_percent"] or 0))
for k, v in r["error_kinds"].items():
    print("   error x%d: %s" % (v, k))
r.pop("per_player", None)
r["hooks"], r["mode"] = sys.argv[1], sys.argv[2]
with open(sys.argv[3], "a") as f:
    f.write(json.dumps(r) + "\n")
' "$hooks" "$mode" "$results"
                sleep 1 # let the previous players' sessions end
            done
        done
    done
    stop_all
}

run_config off
run_config on

echo "== summary: $PLAYERS players per run, ramp $RAMP/s or all at once, $REPEAT runs each (median of the runs), workers $WORKERS"
python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
groups = {}
for r in rows:
    groups.setdefault((r["hooks"], r["protocol"], r["mode"]), []).append(r)
def med(rs, key, stat):
    v = [r[key][stat] for r in rs if r[key]]
    return "%.2f" % statistics.median(v) if v else "-"
print("| hooks | protocol | join | players | errors | play start p50 / p90 / max (ms) | first keyframe p50 / p90 / p99 / max (ms) | largest frame gap max (ms) | kbit/s per player | tool CPU |")
print("|---|---|---|---|---|---|---|---|---|---|")
for hooks in ("off", "on"):
    for proto in ("rtmp", "httpflv"):
        for mode in ("ramp", "once"):
            rs = groups.get((hooks, proto, mode))
            if not rs:
                continue
            join = "one after another (%s/s)" % rs[0]["ramp_per_sec"] if mode == "ramp" else "all at once"
            playing = "%d/%d" % (min(r["playing"] for r in rs), rs[0]["players"])
            errors = sum(r["errors"] for r in rs)
            kbps = [r["bitrate_kbps"]["mean"] for r in rs if r["bitrate_kbps"]]
            cpu = [r["tool_cpu_percent"] for r in rs if r["tool_cpu_percent"] is not None]
            print("| %s | %s | %s | %s | %d | %s / %s / %s | %s / %s / %s / %s | %s | %s | %s |" % (
                hooks, proto, join, playing, errors,
                med(rs, "play_start_ms", "p50"), med(rs, "play_start_ms", "p90"), med(rs, "play_start_ms", "max"),
                med(rs, "first_keyframe_ms", "p50"), med(rs, "first_keyframe_ms", "p90"),
                med(rs, "first_keyframe_ms", "p99"), med(rs, "first_keyframe_ms", "max"),
                med(rs, "max_frame_gap_ms", "max"),
                "%.0f" % statistics.median(kbps) if kbps else "-",
                "%.1f%%" % statistics.median(cpu) if cpu else "-"))
EOF

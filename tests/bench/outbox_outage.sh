#!/usr/bin/env bash
# Durable on_done under an outage: PLAYERS RTMP players (streamgate-load) on one stream end
# within a second while the hook server is down; it comes back DOWN_S seconds later on the same
# port. Prints how long after it came back every on_done had arrived, how many attempts that
# took, and streamgate's resident memory before, during and after (sampled every 200 ms from
# /proc). See docs/benchmarks.md, "Durable on_done".
#
#   bash tests/bench/outbox_outage.sh
#
# Knobs (environment): PLAYERS (2000), DOWN_S (10), SKIP_BUILD=1.
# Needs cargo, ffmpeg (libx264, aac), python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PLAYERS=${PLAYERS:-2000}
DOWN_S=${DOWN_S:-10}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ "${SKIP_BUILD:-0}" != 1 ]; then cargo build --release -p streamgate -p streamgate-load; fi
BIN=target/release/streamgate
LOAD=target/release/streamgate-load

# bench_tmp, free_port, wait_port
. tests/bench/lib.sh
bench_tmp outbox

stats() { curl -s "http://127.0.0.1:$HOOK_PORT/_stats"; }
calls() { # call name -> how many the hook server answered
    stats | python3 -c "import json,sys; print(json.load(sys.stdin)['by_call'].get('$1', 0))" 2>/dev/null || echo 0
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$SG/status" 2>/dev/null || echo 0; }

start_hook() { # [port]
    python3 tests/bench/hook_server.py "${1:-0}" >"$tmp/hook.port" 2>>"$tmp/hook.log" &
    HOOK_PID=$!
    pids+=("$HOOK_PID")
    for _ in $(seq 100); do [ -s "$tmp/hook.port" ] && break; sleep 0.05; done
    HOOK_PORT=$(head -1 "$tmp/hook.port")
    wait_port "$HOOK_PORT" "$HOOK_PID" || { echo "the hook server did not start" >&2; exit 1; }
}

start_hook
base="http://127.0.0.1:$HOOK_PORT"
port=$(free_port)
cat >"$tmp/streamgate.xml" <<XML
<config><data_dir>$tmp/data</data_dir><workers>1</workers><log_level>warn</log_level>
<rtmp><port>$port</port><http_notify><on_play>$base/play</on_play>
<on_publish>$base/publish</on_publish><on_done>$base/done</on_done>
<timeout_ms>5000</timeout_ms></http_notify></rtmp>
<httpflv><enable>false</enable></httpflv><rtsp><enable>false</enable></rtsp><srt><enable>false</enable></srt></config>
XML
"$BIN" --config "$tmp/streamgate.xml" >"$tmp/streamgate.log" 2>&1 &
SG=$!
pids+=("$SG")
wait_port "$port" "$SG" || { echo "streamgate did not start" >&2; exit 1; }

ffmpeg -hide_banner -nostdin -loglevel error -re -f lavfi -i testsrc=size=320x240:rate=25 \
    -f lavfi -i sine=frequency=440:sample_rate=44100 -c:v libx264 -preset ultrafast \
    -tune zerolatency -g 50 -pix_fmt yuv420p -c:a aac -b:a 64k -t 600 \
    -f flv "rtmp://127.0.0.1:$port/live/cam" >"$tmp/ffmpeg.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do [ "$(calls publish)" -ge 1 ] && break; sleep 0.1; done
sleep 2

# The players stay until 8 s after the last has started, then all close at once.
"$LOAD" --url "rtmp://127.0.0.1:$port/live/cam" --players "$PLAYERS" --duration 8 \
    >"$tmp/load.txt" 2>&1 &
LOAD_PID=$!
pids+=("$LOAD_PID")
for _ in $(seq 600); do [ "$(calls play)" -ge "$PLAYERS" ] && break; sleep 0.1; done
echo "players allowed: $(calls play)"
rss_before=$(rss_kb)

kill "$HOOK_PID"; wait "$HOOK_PID" 2>/dev/null || true
echo "hook server down"
rss_max=$rss_before
wait "$LOAD_PID" || true
ended=$(date +%s.%N)
echo "players ended"
until python3 -c "import sys,time; sys.exit(0 if time.time() >= $ended + $DOWN_S else 1)"; do
    r=$(rss_kb); [ "$r" -gt "$rss_max" ] && rss_max=$r
    sleep 0.2
done
start_hook "$HOOK_PORT"
up=$(date +%s.%N)
echo "hook server up again on $HOOK_PORT"
while [ "$(calls done)" -lt "$PLAYERS" ]; do
    r=$(rss_kb); [ "$r" -gt "$rss_max" ] && rss_max=$r
    if python3 -c "import sys,time; sys.exit(0 if time.time() > $up + 300 else 1)"; then
        echo "not every on_done arrived within 300 s: $(calls done)" >&2
        exit 1
    fi
    sleep 0.2
done
all=$(date +%s.%N)
sleep 3
rss_after=$(rss_kb)
attempts=$(grep -c "on_done not delivered; retrying" "$tmp/streamgate.log" || true)
python3 - "$up" "$all" "$ended" <<EOF
import sys
up, done, ended = map(float, sys.argv[1:4])
print(f"on_done delivered: $(calls done) of $PLAYERS player sessions")
print(f"every on_done delivered {done - up:.1f} s after the hook server came back "
      f"({done - ended:.1f} s after the players ended)")
print(f"failed attempts logged: $attempts")
print(f"streamgate RSS: before {$rss_before / 1024:.1f} MiB, max during the outage and delivery "
      f"{$rss_max / 1024:.1f} MiB, 3 s after {$rss_after / 1024:.1f} MiB")
EOF

#!/usr/bin/env bash
# What a connection costs the server, to compare two builds (for the session table's share):
# 1000 RTMP players join one low-rate stream all at once; streamgate's RSS before they come and
# while they all play (RSS per player), its CPU for the join, and the players' play-start
# times from the load tool. The two builds run alternately, REPEAT times each.
#
#   BEFORE=path/to/old/streamgate AFTER=target/release/streamgate bash tests/bench/session_table.sh
#
# Knobs (environment): PLAYERS (1000), REPEAT (3), BEFORE, AFTER (target/release/streamgate).
# Needs ffmpeg (libx264), python3, a built streamgate-load.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PLAYERS=${PLAYERS:-1000}
REPEAT=${REPEAT:-3}
AFTER=${AFTER:-target/release/streamgate}
: "${BEFORE:?BEFORE=path of the build to compare with}"
LOAD=target/release/streamgate-load

# bench_tmp, publish_source, cpu, free_port, wait_port
. tests/bench/lib.sh
bench_tmp table

ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=320x180:rate=5 -t 60 \
    -c:v libx264 -preset veryfast -b:v 100k -g 10 -pix_fmt yuv420p -f flv "$tmp/source.flv"

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

one() { # binary label
    local port api sg ff ld r0 r1 c0 c1
    port=$(free_port); api=$(free_port)
    echo "<config><workers>1</workers><log_level>warn</log_level><api><port>$api</port></api><rtmp><port>$port</port></rtmp><httpflv><enable>false</enable></httpflv><rtsp><enable>false</enable></rtsp><srt><enable>false</enable></srt></config>" >"$tmp/streamgate.xml"
    "$1" --config "$tmp/streamgate.xml" >>"$tmp/streamgate.log" 2>&1 &
    sg=$!; pids+=("$sg")
    wait_port "$port" "$sg" || { echo "streamgate did not start" >&2; exit 1; }
    publish_source "$port"
    ff=$PUB_PID
    sleep 3
    r0=$(rss "$sg"); c0=$(cpu "$sg")
    "$LOAD" --url "rtmp://127.0.0.1:$port/live/bench" --players "$PLAYERS" --duration 8 \
        --json >"$tmp/load.json" 2>/dev/null &
    ld=$!; pids+=("$ld")
    sleep 6
    r1=$(rss "$sg"); c1=$(cpu "$sg")
    wait "$ld" || true
    kill "$ff" "$sg" 2>/dev/null || true
    wait "$ff" "$sg" 2>/dev/null || true
    python3 - "$2" "$r0" "$r1" "$c0" "$c1" "$PLAYERS" "$tmp/load.json" <<'PY'
import json, sys
label, r0, r1, c0, c1, n, path = sys.argv[1], *map(float, sys.argv[2:7]), sys.argv[7]
d = json.load(open(path))
ps = d["play_start_ms"] or {}
print("%s rss_idle_kib %d rss_playing_kib %d rss_per_player_kib %.2f cpu_first_6s_ms %.0f "
      "playing %d play_start_p50_ms %s p99_ms %s" % (label, r0, r1, (r1 - r0) / n,
      1000 * (c1 - c0), d["playing"], ps.get("p50"), ps.get("p99")))
PY
}

for rep in $(seq "$REPEAT"); do
    one "$BEFORE" before
    one "$AFTER" after
done

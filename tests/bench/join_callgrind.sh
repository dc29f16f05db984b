#!/usr/bin/env bash
# What one RTMP player's join costs the server, in instructions counted by callgrind:
# streamgate runs under valgrind with one low-rate stream (1 fps, so the media path's share
# stays small); then, REPEAT times, a quiet window of WINDOW seconds, and a window in which
# PLAYERS RTMP players join (handshake, connect, createStream, play, snapshot and cached GOP),
# get their first keyframe, stay STAY seconds and leave. The joined window less the quiet
# one (scaled to its length), over PLAYERS, is the cost of one player's join and leave.
# Instruction counts do not depend on what else runs on the machine.
#
#   bash tests/bench/join_callgrind.sh            # the tree's release build
#   BIN=path/to/other/streamgate bash tests/bench/join_callgrind.sh
#
# Knobs (environment): PLAYERS (300), RAMP players/s (100), STAY seconds (1), WINDOW (10),
# REPEAT (3), HOOKS=1 (on_connect/on_play/on_done to a local nginx `return 200`), BIN,
# SKIP_BUILD=1, DUMPS=dir (copy the dumps there for callgrind_annotate).
# Needs valgrind, cargo, ffmpeg (libx264), python3, curl (nginx with HOOKS=1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PLAYERS=${PLAYERS:-300}
RAMP=${RAMP:-100}
STAY=${STAY:-1}
WINDOW=${WINDOW:-10}
REPEAT=${REPEAT:-3}

if [ "${SKIP_BUILD:-0}" != 1 ] && [ -z "${BIN:-}" ]; then
    cargo build --release -p streamgate -p streamgate-load
fi
BIN=${BIN:-target/release/streamgate}
LOAD=target/release/streamgate-load

. tests/bench/lib.sh
bench_tmp join-cg

echo "== source: 60 s of 320x180 1 fps H.264 at 30 kbit/s, no audio, FLV"
ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=320x180:rate=1 -t 60 \
    -c:v libx264 -preset veryfast -b:v 30k -g 2 -pix_fmt yuv420p -f flv "$tmp/source.flv"

notify=""
if [ "${HOOKS:-0}" = 1 ]; then
    hookport=$(free_port)
    write_hook_nginx_conf "$tmp/nginx" "$hookport"
    nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" &
    pids+=("$!")
    h="http://127.0.0.1:$hookport"
    notify="<http_notify><on_connect>$h/c</on_connect><on_play>$h/p</on_play><on_done>$h/d</on_done></http_notify>"
fi
port=$(free_port); api=$(free_port)
one_worker_config "$port" "$api" "$notify"
valgrind --tool=callgrind --separate-threads=yes --compress-strings=no --compress-pos=no \
    --callgrind-out-file="$tmp/cg.out" \
    "$BIN" --config "$tmp/streamgate.xml" >>"$tmp/streamgate.log" 2>&1 &
sg=$!
pids+=("$sg")
for _ in $(seq 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    kill -0 "$sg" 2>/dev/null || { cat "$tmp/streamgate.log" >&2; exit 1; }
    sleep 0.1
done
publish_source "$port"
sleep 8

dump() { callgrind_dump "$sg" "$1"; }

callgrind_control -z "$sg" >/dev/null 2>&1
declare -a PER_JOIN
for rep in $(seq "$REPEAT"); do
    sleep "$WINDOW"
    quiet=$(dump $((2 * rep - 1)))
    t0=$(date +%s.%N)
    "$LOAD" --url "rtmp://127.0.0.1:$port/live/bench" --players "$PLAYERS" --ramp "$RAMP" \
        --start-timeout 120 --duration "$STAY" --json >"$tmp/load.$rep.json" 2>/dev/null || true
    # Until the server has let every player go (the publisher stays).
    for _ in $(seq 300); do
        n=$(sessions "$api" 'role="player"')
        [ "$n" -eq 0 ] && break
        sleep 0.5
    done
    t1=$(date +%s.%N)
    joined=$(dump $((2 * rep)))
    played=$(python3 -c "
import json; r = json.load(open('$tmp/load.$rep.json'))
print(sum(1 for p in r.get('per_player', []) if p.get('first_keyframe_ms') is not None))")
    per=$(python3 -c "
q, j, t = $quiet, $joined, $t1 - $t0
print('%.0f' % ((j - q * t / $WINDOW) / $PLAYERS))")
    PER_JOIN+=("$per")
    echo "window $rep: quiet $quiet instructions in $WINDOW s; $PLAYERS joins ($played got a keyframe) $joined in $(python3 -c "print('%.1f' % ($t1 - $t0))") s; one join and leave: $per instructions"
done
echo
echo "instructions per RTMP player join and leave, median of $REPEAT: $(median "${PER_JOIN[@]}")"
if [ -n "${DUMPS:-}" ]; then mkdir -p "$DUMPS" && cp "$tmp"/cg.out.* "$DUMPS"/; fi

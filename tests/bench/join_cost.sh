#!/usr/bin/env bash
# What a burst of RTMP joins costs the server natively: one worker, one low-rate stream
# (1 fps, so media costs little), then REPEAT bursts of PLAYERS players joining at RAMP per
# second, each staying 1 s and leaving. Per burst: the server's CPU time (user + system) and
# its threads' context switches (voluntary and not, from /proc) over the burst, per player,
# and the players' first keyframe (from their connect). Context switches are what a join's
# hops between threads cost (each wakes a thread that sleeps); they move far less with the
# machine's load than CPU time does.
#
#   bash tests/bench/join_cost.sh
#   BIN=path/to/other/streamgate bash tests/bench/join_cost.sh
#   WHO=srs SRS_BIN=/path/to/srs/trunk/objs/srs bash tests/bench/join_cost.sh
#
# With WHO=srs the same bursts go to SRS (one process, `gop_cache on`, its default merge
# window), for what the same exchange costs another server on this machine.
#
#   SOURCE=2m STAY=3 REPEAT=6 bash tests/bench/join_cost.sh
#
# With SOURCE=2m the stream is the 2 Mbit/s source of tests/bench/lib.sh (the issue's burst:
# each player also takes the cached GOP, up to 500 KB, and the live stream); each burst then
# also reports the server's minor page faults over it.
#
#   SOURCE=2m PHASE=1800 bash tests/bench/join_cost.sh
#
#   SOURCE=2m PHASE=1800 PIN=1 bash tests/bench/join_cost.sh
#
# With PIN=1 the server runs on CPU 0 and the load tool on CPU 1, so that neither takes the
# other's core in a burst (the tool's side of loopback carries most of the TCP stack's work
# for the replays it receives).
#
# With PHASE=MS every burst starts MS milliseconds after a live keyframe (the load tool's
# --after-keyframe), so every burst lands at the same point of the 2 s GOP: what a joining
# player is replayed from the GOP cache grows from one keyframe (PHASE near 0) to the whole
# GOP, about 450 KB (PHASE near 2000).
#
# Knobs (environment): PLAYERS (1000), RAMP per second (5000), REPEAT (3), STAY seconds each
# player stays (1), SOURCE (1fps or 2m), LEVEL (warn: the server's log level), HOOKS=1
# (on_connect/on_play/on_done to a local nginx `return 200`), WORKERS (1: the server's
# <workers>, every one of which accepts on the listener), PHASE, PIN=1, BIN, SKIP_BUILD=1.
# Needs cargo, ffmpeg (libx264), python3, curl (nginx with HOOKS=1), taskset (PIN=1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PLAYERS=${PLAYERS:-1000}
RAMP=${RAMP:-5000}
REPEAT=${REPEAT:-3}
STAY=${STAY:-1}
if [ "${SKIP_BUILD:-0}" != 1 ] && [ -z "${BIN:-}" ]; then
    cargo build --release -p streamgate -p streamgate-load
fi
BIN=${BIN:-target/release/streamgate}
LOAD=target/release/streamgate-load

. tests/bench/lib.sh
bench_tmp join-cost
if [ "${SOURCE:-1fps}" = 2m ]; then
    bench_source
else
    ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=320x180:rate=1 -t 60 \
        -c:v libx264 -preset veryfast -b:v 30k -g 2 -pix_fmt yuv420p -f flv "$tmp/source.flv"
fi
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
ulimit -n 16384
if [ "${WHO:-sg}" = srs ]; then
    srs_server "$port" "" warn
else
    one_worker_config "$port" "$api" "$notify" "" "${WORKERS:-1}"
    "$BIN" --config "$tmp/streamgate.xml" >>"$tmp/streamgate.log" 2>&1 &
    server=$!
fi
sg=$server
pids+=("$sg")
# PIN=1: the server's threads on CPU 0, the load tool on CPU 1 (each a core of its own, as
# with clients on other machines; the live source's ffmpeg goes where the scheduler puts it).
pin=()
if [ "${PIN:-0}" = 1 ]; then
    taskset -a -p -c 0 "$sg" >/dev/null
    pin=(taskset -c 1)
fi
wait_port "$port" "$sg"
publish_source "$port"
sleep 3
switches() { cat /proc/"$sg"/task/*/status | awk '/ctxt_switches/ { s += $2 } END { print s }'; }
faults() { awk '{ print $10 }' /proc/"$sg"/stat; }
for rep in $(seq "$REPEAT"); do
    c0=$(cpu "$sg"); x0=$(switches); f0=$(faults)
    "${pin[@]}" "$LOAD" --url "rtmp://127.0.0.1:$port/live/bench" --players "$PLAYERS" --ramp "$RAMP" \
        --duration "$STAY" ${PHASE:+--after-keyframe "$PHASE"} --json >"$tmp/load.json" \
        2>/dev/null || true
    sleep 2
    c1=$(cpu "$sg"); x1=$(switches); f1=$(faults)
    python3 -c "
import json; r = json.load(open('$tmp/load.json')); k = r['first_keyframe_ms']
print('burst $rep: %.0f us of CPU and %.2f context switches per player; first keyframe p50 %.1f ms, p99 %.1f ms (%d players); %d page faults'
      % (($c1 - $c0) / $PLAYERS * 1e6, ($x1 - $x0) / $PLAYERS, k['p50'], k['p99'], k['count'], $f1 - $f0))"
done

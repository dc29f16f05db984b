#!/usr/bin/env bash
# What one read of the operator's API costs in instructions, counted by callgrind: streamgate
# runs under valgrind with PLAYERS RTMP players of one low-rate stream (so the media path's
# share stays small and steady); then, REPEAT times, a window of WINDOW seconds with nobody
# reading the API and one of WINDOW seconds with GET /api/v1/sessions?limit=1000 and
# GET /metrics asked once a second each. callgrind counts every instruction of the process
# (all threads) in each window (`callgrind_control -z` opens it, `-d` closes it); a polled
# window less the quiet one before it, over its polls, is the instructions of one poll of both.
# Unlike CPU time, instruction counts do not depend on what else runs on the machine.
#
#   bash tests/bench/api_poll_callgrind.sh            # the tree's release build
#   BIN=path/to/other/streamgate bash tests/bench/api_poll_callgrind.sh
#
# Knobs (environment): PLAYERS (1000), WINDOW seconds (20), REPEAT (3), BIN, SKIP_BUILD=1,
# DUMPS=dir (copy the callgrind dumps there, one file per thread and window, for
# callgrind_annotate).
# Needs valgrind, cargo, ffmpeg (libx264), python3, curl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PLAYERS=${PLAYERS:-1000}
WINDOW=${WINDOW:-20}
REPEAT=${REPEAT:-3}

if [ "${SKIP_BUILD:-0}" != 1 ] && [ -z "${BIN:-}" ]; then
    cargo build --release -p streamgate -p streamgate-load
fi
BIN=${BIN:-target/release/streamgate}
LOAD=target/release/streamgate-load

# bench_tmp, publish_source, free_port
. tests/bench/lib.sh
bench_tmp apipoll-cg

echo "== source: 60 s of 320x180 1 fps H.264 at 30 kbit/s, no audio, FLV"
ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=320x180:rate=1 -t 60 \
    -c:v libx264 -preset veryfast -b:v 30k -g 2 -pix_fmt yuv420p -f flv "$tmp/source.flv"

port=$(free_port); api=$(free_port)
echo "<config><workers>1</workers><log_level>warn</log_level><api><port>$api</port></api><rtmp><port>$port</port></rtmp><httpflv><enable>false</enable></httpflv><rtsp><enable>false</enable></rtsp><srt><enable>false</enable></srt></config>" >"$tmp/streamgate.xml"
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
sleep 5
"$LOAD" --url "rtmp://127.0.0.1:$port/live/bench" --players "$PLAYERS" --ramp 100 \
    --start-timeout 120 --duration $((REPEAT * 2 * WINDOW * 3 + 120)) --json >"$tmp/load.json" 2>/dev/null &
pids+=("$!")
# Until every player plays (the publisher is one more session).
want=$((PLAYERS + 1))
for _ in $(seq 300); do
    n=$(sessions "$api" 'role="(player|publisher)"')
    [ "$n" -ge "$want" ] && break
    sleep 2
done
echo "== $n sessions playing or publishing"
sleep 5

# Closes a window: the total instructions of dump N, which `callgrind_control -d` writes as
# one file per thread.
dump() { callgrind_dump "$sg" "$1"; }
polls() {
    for _ in $(seq "$WINDOW"); do
        curl -s -o /dev/null "http://127.0.0.1:$api/api/v1/sessions?limit=1000"
        curl -s -o /dev/null "http://127.0.0.1:$api/metrics"
        sleep 1
    done
}

callgrind_control -z "$sg" >/dev/null 2>&1
declare -a PER_POLL
for rep in $(seq "$REPEAT"); do
    sleep "$WINDOW"
    quiet=$(dump $((2 * rep - 1)))
    # The polled window lasts as long as its polls take, at least WINDOW seconds.
    t0=$(date +%s.%N)
    polls
    t1=$(date +%s.%N)
    polled=$(dump $((2 * rep)))
    per=$(python3 -c "
q, p, t = $quiet, $polled, $t1 - $t0
print('%.0f' % ((p - q * t / $WINDOW) / $WINDOW))")
    PER_POLL+=("$per")
    echo "window $rep: quiet $quiet instructions in $WINDOW s; polled $polled in $(python3 -c "print('%.1f' % ($t1 - $t0))") s ($WINDOW polls); one poll of both: $per instructions"
done
echo
echo "instructions per poll of sessions?limit=1000 + /metrics with $PLAYERS players, median of $REPEAT: $(median "${PER_POLL[@]}")"
if [ -n "${DUMPS:-}" ]; then mkdir -p "$DUMPS" && cp "$tmp"/cg.out.* "$DUMPS"/; fi

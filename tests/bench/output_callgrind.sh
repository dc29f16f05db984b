#!/usr/bin/env bash
# What one output protocol costs streamgate per delivered byte in its own code, counted by
# callgrind: the server runs under valgrind with one worker, the 2 Mbit/s source
# (tests/bench/lib.sh) published over RTMP and PLAYERS players of PROTO; then REPEAT windows
# of WINDOW seconds, each the instructions of every thread of the process
# (`callgrind_control -z` opens it, `-d` closes it) less those of a window before any player
# joined (the stream's own input), over the bytes the server sent to PROTO's clients in it
# (streamgate_sent_bytes_total). Instruction counts do not depend on what else
# runs on the machine, so two builds' media paths compare run against run where CPU time
# moves by 10-20 %; what they leave out is the kernel's share (the system calls:
# tests/bench/output_syscalls.sh counts those).
#
#   PROTO=rtsp bash tests/bench/output_callgrind.sh   # rtmp | httpflv | rtsp | rtsp-udp | srt
#   BIN=path/to/other/streamgate PROTO=rtmp bash tests/bench/output_callgrind.sh
#
# Knobs (environment): PROTO (rtmp), PLAYERS (20: few enough for the server to keep up under
# valgrind), RAMP players joining per second (10; 1 spreads 20 players over ten GOPs of the
# source, as viewers arriving one by one would), WINDOW seconds (15), REPEAT (3), BIN,
# SKIP_BUILD=1, DUMPS=dir (copy the dumps there, one file per thread and window, for
# callgrind_annotate).
# Needs valgrind, cargo, ffmpeg (libx264), python3, curl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PROTO=${PROTO:-rtmp}
PLAYERS=${PLAYERS:-20}
WINDOW=${WINDOW:-15}
REPEAT=${REPEAT:-3}

if [ "${SKIP_BUILD:-0}" != 1 ] && [ -z "${BIN:-}" ]; then
    cargo build --release -p streamgate -p streamgate-load
fi
BIN=${BIN:-target/release/streamgate}
LOAD=target/release/streamgate-load

. tests/bench/lib.sh
bench_tmp output-cg
bench_source
all_outputs_config
player_target "$PROTO" || exit 2
valgrind --tool=callgrind --separate-threads=yes --compress-strings=no --compress-pos=no \
    --callgrind-out-file="$tmp/cg.out" \
    "$BIN" --config "$tmp/streamgate.xml" >>"$tmp/streamgate.log" 2>&1 &
sg=$!
pids+=("$sg")
wait_port "$port" "$sg" 600 || { cat "$tmp/streamgate.log" >&2; exit 1; }
publish_source "$port"
sleep 8
dump() { callgrind_dump "$sg" "$1"; }
# The stream's own cost (its publisher's input, the worker's timers): a window with no player.
callgrind_control -z "$sg" >/dev/null 2>&1
sleep "$WINDOW"
base=$(dump 1)
echo "no players: $base instructions in $WINDOW s"
"$LOAD" --url "$url" "${extra[@]}" --players "$PLAYERS" --ramp "${RAMP:-10}" --start-timeout 120 \
    --duration $((REPEAT * (WINDOW + 5) + 60)) --json >"$tmp/load.json" 2>"$tmp/load.err" &
pids+=("$!")
# Until every player plays (the publisher is one more session), then a little longer for the
# joins' replays to be over.
want=$((PLAYERS + 1))
n=0
for _ in $(seq 120); do
    n=$(sessions "$api" 'role="(player|publisher)"')
    [ "$n" -ge "$want" ] && break
    sleep 1
done
[ "$n" -ge "$want" ] || { echo "only $n of $want sessions started" >&2; exit 1; }
sleep 10

declare -a PER_BYTE
for rep in $(seq "$REPEAT"); do
    callgrind_control -z "$sg" >/dev/null 2>&1
    b0=$(sent "$api" "$label")
    sleep "$WINDOW"
    b1=$(sent "$api" "$label")
    ir=$(dump $((rep + 1)))
    per=$(python3 -c "print('%.2f' % (($ir - $base) / ($b1 - $b0)))")
    PER_BYTE+=("$per")
    echo "window $rep: $ir instructions, $((b1 - b0)) bytes sent to $PROTO players: $per per byte"
done
echo
echo "$PROTO, $PLAYERS players: instructions per sent byte, median of $REPEAT: $(median "${PER_BYTE[@]}")"
if [ -n "${DUMPS:-}" ]; then mkdir -p "$DUMPS" && cp "$tmp"/cg.out.* "$DUMPS"/; fi

#!/usr/bin/env bash
# What one output protocol costs the server per player, in CPU time and system calls: one
# worker, the 2 Mbit/s source (tests/bench/lib.sh) published over RTMP, PLAYERS players of
# PROTO joined at RAMP per second (100; RAMP=4 spreads 200 players over 25 GOPs of the source,
# as viewers arriving one by one would), then `perf stat` on the server over a 10 s window
# (task-clock and the system calls that carry media and wake threads), and the media the
# players got in it.
#
#   PROTO=srt bash tests/bench/output_syscalls.sh      # rtmp | httpflv | rtsp | rtsp-udp | srt
#   PROTO=rtmp PLAYERS=100 BIN=path/to/other/streamgate bash tests/bench/output_syscalls.sh
#
# Needs perf (Debian's linux-perf) with tracepoints readable (root), ffmpeg, python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. tests/bench/lib.sh
if [ "${SKIP_BUILD:-0}" != 1 ] && [ -z "${BIN:-}" ]; then
    cargo build --release -p streamgate -p streamgate-load
fi
bench_tmp outsys
bench_source
all_outputs_config
${BIN:-target/release/streamgate} --config "$tmp/streamgate.xml" >>"$tmp/streamgate.log" 2>&1 &
sg=$!; pids+=("$sg")
wait_port "$port" "$sg"
publish_source "$port"
sleep 3
player_target "${PROTO:-srt}" || exit 2
players=${PLAYERS:-50}
ramp=${RAMP:-100}
# The window opens 6 s after the last player joined.
start=$(((players + ramp - 1) / ramp + 6))
target/release/streamgate-load --url "$url" "${extra[@]}" --players "$players" --ramp "$ramp" \
    --duration $((start + 14)) --window-start "$start" --window 10 --json >"$tmp/load.json" 2>/dev/null &
lp=$!
sleep "$start"
perf stat -x, -o "$tmp/perf.csv" -p "$sg" \
    -e task-clock,context-switches,raw_syscalls:sys_enter \
    -e syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_writev \
    -e syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait -- sleep 10
wait $lp || true
python3 - "$tmp/perf.csv" "$tmp/load.json" "$players" "${PROTO:-srt}" <<'PY'
import json, sys
sys.path.insert(0, "tests/bench")
from perf_counts import perf_counts
load, players, proto = json.load(open(sys.argv[2])), int(sys.argv[3]), sys.argv[4]
counts = perf_counts(sys.argv[1])
media = (load.get("window") or {}).get("media_bytes", 0)
cpu_s = counts.get("task-clock", 0) / 1000
print(f"{proto}: {load['playing']} playing, {load['errors']} errors; "
      f"{media * 8 / 10 / 1e9:.3f} Gbit/s delivered in the window")
print(f"  CPU {cpu_s:.3f} s in 10 s; {cpu_s / (media * 8 / 1e9):.3f} CPU s per delivered Gbit" if media else "  no media")
for name, n in counts.items():
    if name != "task-clock":
        print(f"  {name}: {n / 10 / players:.1f} per player per second")
PY

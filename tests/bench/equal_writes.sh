#!/usr/bin/env bash
# streamgate and SRS at an equal number of socket writes per player: one server (WHO=sg or
# WHO=srs), the 2 Mbit/s source (tests/bench/lib.sh) published over RTMP, PLAYERS RTMP
# players joined at 500/s, then `perf stat` over a 10 s window: the server's CPU time and its
# writev calls. SRS's `mw_latency` also waits for a number of messages, so at `mw_latency 40`
# it writes about 7 times a second per player of this stream; streamgate's
# `<write_merge_ms>` is a plain window (40 ms: about 17 writes a second). Comparing the two at
# the same writes per second compares them at the same merging. MW_MSGS sets SRS's `mw_msgs`
# (the messages it waits for; unset: SRS's default, 8 for RTMP): `MW_MSGS=0` makes
# `mw_latency` a plain window like streamgate's.
#
#   WHO=srs SRS_BIN=/path/to/srs/trunk/objs/srs MW=40 bash tests/bench/equal_writes.sh
#   WHO=srs SRS_BIN=/path/to/srs/trunk/objs/srs MW=40 MW_MSGS=0 bash tests/bench/equal_writes.sh
#   WHO=sg MERGE=130 bash tests/bench/equal_writes.sh
#
# Needs perf (Debian's linux-perf, root for its tracepoints), ffmpeg, python3; SRS built as in
# docs/benchmarks.md ("--sanitizer=off").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. tests/bench/lib.sh
bench_tmp equal-writes
bench_source
ulimit -n 16384
players=${PLAYERS:-1000}
port=$(free_port); api=$(free_port)
if [ "${WHO:-sg}" = srs ]; then
    srs_server "$port" "mw_latency ${MW:-40}; ${MW_MSGS:+mw_msgs $MW_MSGS;}"
else
    merge=${MERGE:+<write_merge_ms>$MERGE</write_merge_ms>}
    one_worker_config "$port" "$api" "$merge"
    ${BIN:-target/release/streamgate} --config "$tmp/streamgate.xml" >>"$tmp/streamgate.log" 2>&1 &
    server=$!
fi
pids+=("$server")
wait_port "$port" "$server"
publish_source "$port"
sleep 3
target/release/streamgate-load --url "rtmp://127.0.0.1:$port/live/bench" --players "$players" \
    --ramp 500 --duration 25 --window-start 9 --window 10 --json >"$tmp/load.json" 2>/dev/null &
lp=$!
sleep 9
perf stat -x, -o "$tmp/perf.csv" -e task-clock,syscalls:sys_enter_writev -p "$server" -- sleep 10
wait $lp || true
python3 - "$tmp/perf.csv" "$tmp/load.json" "$players" "${WHO:-sg}" <<'PY'
import json, sys
sys.path.insert(0, "tests/bench")
from perf_counts import perf_counts
counts = perf_counts(sys.argv[1])
load, players = json.load(open(sys.argv[2])), int(sys.argv[3])
gbit = (load.get("window") or {}).get("media_bytes", 0) * 8 / 1e9
cpu = counts["task-clock"] / 1000
print(f"{sys.argv[4]}: {load['playing']}/{players} playing, {load['errors']} errors; "
      f"{cpu:.3f} CPU s in 10 s, {cpu / gbit:.3f} CPU s per delivered Gbit; "
      f"{counts['sys_enter_writev'] / 10 / players:.1f} writev per player per second")
PY

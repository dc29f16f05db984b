#!/usr/bin/env bash
# What a reload costs with players watching: 1000 RTMP players of one 2 Mbit/s stream,
# streamgate on one worker; RELOADS times, a second apart, the config file is rewritten (the
# hooks' timeout, RTMP's queue and the log level flip between two values) and
# POST /api/v1/reload is asked. Reports the reload's answer time, streamgate's CPU per reload
# (the reload phase's CPU less a quiet phase's CPU per second), and what the players saw
# (errors, largest frame gap: a reload must not stall a running session). See
# docs/benchmarks.md.
#
#   bash tests/bench/reload.sh
#
# Knobs (environment): PLAYERS (1000), RELOADS (20), REPEAT (3), SKIP_BUILD=1.
# Needs cargo, ffmpeg (libx264, aac), python3, curl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PLAYERS=${PLAYERS:-1000}
RELOADS=${RELOADS:-20}
REPEAT=${REPEAT:-3}

if [ "${SKIP_BUILD:-0}" != 1 ]; then cargo build --release -p streamgate -p streamgate-load; fi
BIN=target/release/streamgate
LOAD=target/release/streamgate-load

# bench_tmp, bench_source, publish_source, cpu, free_port, wait_port
. tests/bench/lib.sh
bench_tmp reload

bench_source


# The config, variant 0 or 1: the same listeners, other hook timeout, queue and log level.
config() { # variant port api
    local timeout=$((5000 + $1 * 1000)) queue=$((4194304 + $1 * 1048576)) level
    level=$([ "$1" = 0 ] && echo warn || echo error)
    echo "<config><workers>1</workers><log_level>$level</log_level><data_dir>$tmp/data</data_dir><api><port>$3</port></api><rtmp><port>$2</port><queue_bytes>$queue</queue_bytes><http_notify><timeout_ms>$timeout</timeout_ms></http_notify></rtmp><httpflv><enable>false</enable></httpflv><rtsp><enable>false</enable></rtsp><srt><enable>false</enable></srt></config>"
}

declare -a P50 P99 PER GAP ERR
for rep in $(seq "$REPEAT"); do
    port=$(free_port); api=$(free_port)
    rm -rf "$tmp/data"
    config 0 "$port" "$api" >"$tmp/streamgate.xml"
    "$BIN" --config "$tmp/streamgate.xml" >>"$tmp/streamgate.log" 2>&1 &
    sg=$!
    pids+=("$sg")
    wait_port "$port" "$sg" || { echo "streamgate did not start" >&2; exit 1; }
    publish_source "$port"
    ff=$PUB_PID
    sleep 3
    "$LOAD" --url "rtmp://127.0.0.1:$port/live/bench" --players "$PLAYERS" \
        --duration $((2 * RELOADS + 20)) --json >"$tmp/load.json" 2>/dev/null &
    ld=$!
    pids+=("$ld")
    sleep 8
    c0=$(cpu "$sg"); sleep "$RELOADS"; c1=$(cpu "$sg")
    : >"$tmp/times"
    for i in $(seq "$RELOADS"); do
        config $((i % 2)) "$port" "$api" >"$tmp/streamgate.xml"
        curl -s -o "$tmp/answer" -w '%{http_code} %{time_total}\n' -X POST \
            "http://127.0.0.1:$api/api/v1/reload" >>"$tmp/times"
        sleep 1
    done
    c2=$(cpu "$sg")
    grep -qv '^200 ' "$tmp/times" && { echo "a reload failed:" >&2; cat "$tmp/times" "$tmp/answer" >&2; exit 1; }
    wait "$ld" 2>/dev/null || true
    read -r p50 p99 per gap errors < <(python3 - "$tmp/times" "$c0" "$c1" "$c2" "$RELOADS" "$tmp/load.json" <<'PY'
import json, sys
times = sorted(float(l.split()[1]) * 1000 for l in open(sys.argv[1]))
c0, c1, c2, n = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
# The reload phase lasted about n seconds plus the answers; the quiet phase n seconds.
per = 1000 * ((c2 - c1) - (c1 - c0)) / n
load = json.load(open(sys.argv[6]))
gap = load["max_frame_gap_ms"]
print("%.2f %.2f %.2f %s %d" % (times[len(times) // 2], times[min(len(times) - 1, int(.99 * len(times)))],
      per, gap.get("max") if isinstance(gap, dict) else gap, load["errors"]))
PY
    )
    echo "run $rep: reload answer p50 $p50 ms p99 $p99 ms; about $per CPU ms per reload; players: $errors errors, largest frame gap $gap ms"
    P50+=("$p50"); P99+=("$p99"); PER+=("$per"); GAP+=("$gap"); ERR+=("$errors")
    kill "$ff" "$sg" 2>/dev/null || true
    wait "$ff" "$sg" 2>/dev/null || true
done

echo
echo "| $PLAYERS RTMP players, $RELOADS reloads, medians of $REPEAT | value |"
echo "|---|---|"
echo "| POST /api/v1/reload answer p50 / p99 | $(median "${P50[@]}") / $(median "${P99[@]}") ms |"
echo "| streamgate CPU per reload | $(median "${PER[@]}") ms |"
echo "| players' errors | $(median "${ERR[@]}") |"
echo "| largest frame gap of any player over the run | $(median "${GAP[@]}") ms |"

#!/usr/bin/env bash
# What the operator's API costs while it is read: 1000 RTMP players of one 2 Mbit/s stream,
# streamgate on one worker; for PHASE seconds nobody asks the API, then for PHASE seconds a
# poller asks GET /api/v1/sessions?limit=1000 and GET /metrics once a second each. Reports the
# answer times of both and streamgate's CPU per delivered Gbit/s in each phase (delivered bytes
# from streamgate_sent_bytes_total). See docs/benchmarks.md.
#
#   bash tests/bench/api_poll.sh
#
# Knobs (environment): PLAYERS (1000), PHASE seconds (20), REPEAT (3), RATE (polls per second
# of each endpoint, 1; a higher rate magnifies the cost of a poll above the run-to-run noise,
# and the script then also prints streamgate's CPU milliseconds per poll of both), SKIP_BUILD=1,
# BIN (another streamgate binary to measure, e.g. an older build; the load tool is this tree's).
# Needs cargo, ffmpeg (libx264, aac), python3, curl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PLAYERS=${PLAYERS:-1000}
PHASE=${PHASE:-20}
REPEAT=${REPEAT:-3}
RATE=${RATE:-1}

if [ "${SKIP_BUILD:-0}" != 1 ]; then cargo build --release -p streamgate -p streamgate-load; fi
BIN=${BIN:-target/release/streamgate}
LOAD=target/release/streamgate-load

# bench_tmp, bench_source, publish_source, cpu, sent, free_port, wait_port
. tests/bench/lib.sh
bench_tmp apipoll

bench_source


# One phase of PHASE seconds; with POLL=1 the poller runs. Prints "cpu_per_gbit p50s p99s p50m p99m".
phase() { # sg_pid api_port poll
    local sg=$1 api=$2 poll=$3 c0 c1 b0 b1 t0 t1
    : >"$tmp/sessions.times"
    : >"$tmp/metrics.times"
    c0=$(cpu "$sg"); b0=$(sent "$api"); t0=$(date +%s.%N)
    if [ "$poll" = 1 ]; then
        for _ in $(seq $((PHASE * RATE))); do
            curl -s -o /dev/null -w '%{time_total}\n' \
                "http://127.0.0.1:$api/api/v1/sessions?limit=1000" >>"$tmp/sessions.times"
            curl -s -o /dev/null -w '%{time_total}\n' \
                "http://127.0.0.1:$api/metrics" >>"$tmp/metrics.times"
            sleep "$(python3 -c "print(1 / $RATE)")"
        done
    else
        sleep "$PHASE"
    fi
    c1=$(cpu "$sg"); b1=$(sent "$api"); t1=$(date +%s.%N)
    python3 - "$c0" "$c1" "$b0" "$b1" "$tmp/sessions.times" "$tmp/metrics.times" <<'PY'
import sys
c0, c1, b0, b1 = map(float, sys.argv[1:5])
def q(path, p):
    v = sorted(float(x) * 1000 for x in open(path).read().split())
    return v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")
gbit = (b1 - b0) * 8 / 1e9
print("%.4f %.2f %.2f %.2f %.2f %.4f %.4f" % ((c1 - c0) / gbit, q(sys.argv[5], .5),
      q(sys.argv[5], .99), q(sys.argv[6], .5), q(sys.argv[6], .99), c1 - c0, gbit))
PY
}

declare -a QUIET POLLED S50 S99 M50 M99 PER_POLL
for rep in $(seq "$REPEAT"); do
    port=$(free_port); api=$(free_port)
    echo "<config><workers>1</workers><log_level>warn</log_level><api><port>$api</port></api><rtmp><port>$port</port></rtmp><httpflv><enable>false</enable></httpflv><rtsp><enable>false</enable></rtsp><srt><enable>false</enable></srt></config>" >"$tmp/streamgate.xml"
    "$BIN" --config "$tmp/streamgate.xml" >>"$tmp/streamgate.log" 2>&1 &
    sg=$!
    pids+=("$sg")
    wait_port "$port" "$sg" || { echo "streamgate did not start" >&2; exit 1; }
    publish_source "$port"
    ff=$PUB_PID
    sleep 3
    "$LOAD" --url "rtmp://127.0.0.1:$port/live/bench" --players "$PLAYERS" \
        --duration $((2 * PHASE + 15)) --json >"$tmp/load.json" 2>/dev/null &
    ld=$!
    pids+=("$ld")
    sleep 8
    read -r quiet _ _ _ _ qcpu qgbit < <(phase "$sg" "$api" 0)
    read -r polled s50 s99 m50 m99 pcpu pgbit < <(phase "$sg" "$api" 1)
    # CPU per poll of both endpoints: the polled phase's CPU less what its delivered bits cost
    # at the quiet phase's rate, over the polls made.
    per_poll=$(python3 -c "print('%.2f' % (1000 * ($pcpu - $qcpu / $qgbit * $pgbit) / ($PHASE * $RATE)))")
    PER_POLL+=("$per_poll")
    echo "run $rep: quiet $quiet CPU s/Gbit, polled $polled CPU s/Gbit (about $per_poll CPU ms per poll of both); sessions p50 $s50 ms p99 $s99 ms; metrics p50 $m50 ms p99 $m99 ms"
    QUIET+=("$quiet"); POLLED+=("$polled"); S50+=("$s50"); S99+=("$s99"); M50+=("$m50"); M99+=("$m99")
    wait "$ld" 2>/dev/null || true
    kill "$ff" "$sg" 2>/dev/null || true
    wait "$ff" "$sg" 2>/dev/null || true
done

q=$(median "${QUIET[@]}"); p=$(median "${POLLED[@]}")
echo
echo "| $PLAYERS RTMP players, medians of $REPEAT | value |"
echo "|---|---|"
echo "| CPU s per delivered Gbit, not polled | $q |"
echo "| CPU s per delivered Gbit, polled $RATE times a second | $p ($(python3 -c "print('%+.1f %%' % (100 * ($p - $q) / $q))")) |"
echo "| GET /api/v1/sessions?limit=1000 p50 / p99 | $(median "${S50[@]}") / $(median "${S99[@]}") ms |"
echo "| GET /metrics p50 / p99 | $(median "${M50[@]}") / $(median "${M99[@]}") ms |"
echo "| streamgate CPU per poll of both (polled at $RATE/s) | $(median "${PER_POLL[@]}") ms |"

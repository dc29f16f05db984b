#!/usr/bin/env bash
# What hooks add to play start when 1000 RTMP players connect in the same instant, with two
# hook servers: the benchmark's Python one (tests/bench/hook_server.py, one asyncio thread) and
# nginx answering `return 200` (one worker, keep-alive), so the hook server's own throughput can
# be told apart from streamgate's. streamgate only (<workers>1</workers>), the same 2 Mbit/s
# stream as tests/bench/compare.sh. See docs/benchmarks.md.
#
#   bash tests/bench/hook_burst.sh
#
# Knobs (environment): PLAYERS (1000), REPEAT (3), GOP frames at 25 fps (50 = 2 s; a shorter
# GOP makes the cached GOP each player gets at once smaller), PHASE_MS (how long after a live
# keyframe the burst starts, streamgate-load --after-keyframe; half the GOP by default, so every
# run sends the same GOP replay), SKIP_BUILD=1.
# Needs cargo, ffmpeg (libx264, aac), python3, nginx (installed with apt-get when missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PLAYERS=${PLAYERS:-1000}
REPEAT=${REPEAT:-3}
GOP=${GOP:-50}
PHASE_MS=${PHASE_MS:-$((GOP * 20))}

if ! command -v nginx >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get -o DPkg::Lock::Timeout=300 update -qq
    timeout 600 apt-get -o DPkg::Lock::Timeout=300 install -y -qq nginx >/dev/null
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then cargo build --release -p streamgate -p streamgate-load; fi
BIN=target/release/streamgate
LOAD=target/release/streamgate-load

# bench_tmp, bench_source, publish_source, free_port, wait_port
. tests/bench/lib.sh
bench_tmp hookburst

bench_source "$GOP"

# The two hook servers.
python3 tests/bench/hook_server.py >"$tmp/hook.port" 2>"$tmp/hook.log" &
PY_PID=$!
pids+=("$PY_PID")
for _ in $(seq 100); do [ -s "$tmp/hook.port" ] && break; sleep 0.05; done
PY_PORT=$(head -1 "$tmp/hook.port")
NGX_PORT=$(free_port)
write_hook_nginx_conf "$tmp" "$NGX_PORT"
nginx -p "$tmp" -c "$tmp/nginx.conf" >"$tmp/nginx.out" 2>&1 &
NGX_PID=$!
pids+=("$NGX_PID")
wait_port "$NGX_PORT" "$NGX_PID" || { echo "nginx did not start" >&2; exit 1; }
wait_port "$PY_PORT" "$PY_PID" || { echo "the hook server did not start" >&2; exit 1; }

# One run: streamgate with hooks at BASE (or none), a publisher, PLAYERS players at once.
# Prints "p50 p99" of play start in ms.
run() {
    local base=$1 port conf="$tmp/streamgate.xml" sg ff notify=""
    port=$(free_port)
    if [ -n "$base" ]; then
        notify="<http_notify><on_connect>$base/connect</on_connect><on_play>$base/play</on_play>"
        notify+="<on_publish>$base/publish</on_publish><on_done>$base/done</on_done>"
        notify+="<timeout_ms>15000</timeout_ms></http_notify>"
    fi
    echo "<config><data_dir>$tmp/data-$port</data_dir><workers>1</workers><log_level>warn</log_level><rtmp><port>$port</port>$notify</rtmp><httpflv><enable>false</enable></httpflv><rtsp><enable>false</enable></rtsp><srt><enable>false</enable></srt></config>" >"$conf"
    "$BIN" --config "$conf" >>"$tmp/streamgate.log" 2>&1 &
    sg=$!
    wait_port "$port" "$sg" || { echo "streamgate did not start" >&2; exit 1; }
    publish_source "$port"
    ff=$PUB_PID
    # Live once a player gets a keyframe; then 3 s more for a full GOP in the cache.
    for _ in $(seq 60); do
        if timeout 10 "$LOAD" --url "rtmp://127.0.0.1:$port/live/bench" --duration 0.2 --json 2>/dev/null |
            grep -q '"with_keyframe":1'; then break; fi
        sleep 0.5
    done
    sleep 3
    timeout 120 "$LOAD" --url "rtmp://127.0.0.1:$port/live/bench" --players "$PLAYERS" \
        --after-keyframe "$PHASE_MS" --duration 2 --json >"$tmp/load.json" 2>/dev/null || true
    kill "$ff" "$sg" 2>/dev/null || true
    wait "$ff" "$sg" 2>/dev/null || true
    python3 - "$tmp/load.json" <<'EOF'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
ps = r["play_start_ms"]
print("%s %s %d %d" % (ps["p50"], ps["p99"], r["playing"], r["errors"]))
EOF
}

declare -A P50 P99
for rep in $(seq "$REPEAT"); do
    for hooks in off nginx python; do
        case $hooks in
            off) base="" ;;
            nginx) base="http://127.0.0.1:$NGX_PORT/hook" ;;
            python) base="http://127.0.0.1:$PY_PORT/hook" ;;
        esac
        read -r p50 p99 playing errors < <(run "$base")
        echo "run $rep, hooks $hooks: play start p50 $p50 ms, p99 $p99 ms; $playing playing, $errors errors"
        P50[$hooks]+="$p50 "
        P99[$hooks]+="$p99 "
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "| hooks | play start p50 / p99 (ms), median of $REPEAT | overhead p50 / p99 (ms) |"
echo "|---|---|---|"
off50=$(echo "${P50[off]}" | median)
off99=$(echo "${P99[off]}" | median)
for hooks in off nginx python; do
    m50=$(echo "${P50[$hooks]}" | median)
    m99=$(echo "${P99[$hooks]}" | median)
    if [ "$hooks" = off ]; then
        over="-"
    else
        over=$(python3 -c "print('%+.1f / %+.1f' % ($m50 - $off50, $m99 - $off99))")
    fi
    echo "| $hooks | $m50 / $m99 | $over |"
done

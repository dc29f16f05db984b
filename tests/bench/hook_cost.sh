#!/usr/bin/env bash
# What one HTTP Notify call costs streamgate, in instructions (valgrind's callgrind: the count
# does not move with the machine's load). RTMP players of a stream that is not live each make
# three hook calls (on_connect, on_play, and the on_done their allowed play is owed) and are then
# refused. The cost per player is measured as the difference between a run of HIGH players and
# one of LOW players (start-up cancels out), with hooks and without; their difference, divided
# by three, is the cost of one hook call: building the request, the HTTP exchange over a
# keep-alive connection, and the decision's way back to the session.
#
#   bash tests/bench/hook_cost.sh [BINARY]
#
# BINARY defaults to target/release/streamgate (built unless SKIP_BUILD=1). Knobs: LOW (50),
# HIGH (250). Needs valgrind and python3; the players are the load tool's
# (target/release/streamgate-load). See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. tests/bench/lib.sh
LOW=${LOW:-50}
HIGH=${HIGH:-250}
if [ "${SKIP_BUILD:-0}" != 1 ]; then cargo build --release -p streamgate -p streamgate-load; fi
BIN=${1:-target/release/streamgate}
LOAD=target/release/streamgate-load
command -v valgrind >/dev/null 2>&1 || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/streamgate-hookcost.XXXXXX")
hook_pid=
cleanup() {
    [ -n "$hook_pid" ] && kill "$hook_pid" 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] || rm -rf "$tmp"
}
trap cleanup EXIT

python3 tests/bench/hook_server.py >"$tmp/hook.out" 2>/dev/null &
hook_pid=$!
for _ in $(seq 100); do [ -s "$tmp/hook.out" ] && break; sleep 0.05; done
hook_port=$(head -n1 "$tmp/hook.out")

# Instructions of one server run with `players` players; `hooks` 1 or 0.
run() { # hooks players
    local port cfg notify=""
    port=$(free_port)
    cfg="$tmp/cfg-$1-$2.xml"
    if [ "$1" = 1 ]; then
        notify="<on_connect>http://127.0.0.1:$hook_port/rtmp/connect</on_connect>"
        notify="$notify<on_play>http://127.0.0.1:$hook_port/rtmp/play</on_play>"
        notify="$notify<on_done>http://127.0.0.1:$hook_port/rtmp/done</on_done>"
    fi
    cat >"$cfg" <<EOF
<config><data_dir>$tmp/data-$port</data_dir><workers>1</workers><log_level>warn</log_level>
<rtmp><port>$port</port><http_notify>$notify<timeout_ms>60000</timeout_ms></http_notify></rtmp>
</config>
EOF
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg-$1-$2.out" "$BIN" --config "$cfg" \
        >"$tmp/server-$1-$2.log" 2>&1 &
    local pid=$!
    wait_port "$port" "$pid" || sleep 5
    wait_port "$port" "$pid"
    "$LOAD" --url "rtmp://127.0.0.1:$port/live/absent" --players "$2" --ramp 20 --duration 10 \
        --start-timeout 60 --json >"$tmp/load-$1-$2.json" 2>/dev/null || true
    sleep 3
    kill -INT "$pid"
    wait "$pid" || true
    awk '/^totals:/ { print $2 }' "$tmp/cg-$1-$2.out"
}

with_low=$(run 1 "$LOW")
with_high=$(run 1 "$HIGH")
# Every player made its three calls, or the difference would not be what it says.
calls=$(python3 -c "import json,urllib.request; print(json.load(urllib.request.urlopen('http://127.0.0.1:$hook_port/_stats'))['requests'])")
if [ "$calls" != $((3 * (LOW + HIGH))) ]; then
    echo "hook_cost.sh: the hook server answered $calls calls, not $((3 * (LOW + HIGH)))" >&2
    exit 1
fi
without_low=$(run 0 "$LOW")
without_high=$(run 0 "$HIGH")
python3 - "$LOW" "$HIGH" "$with_low" "$with_high" "$without_low" "$without_high" <<'EOF'
import sys
low, high, wl, wh, ol, oh = map(int, sys.argv[1:])
per_with = (wh - wl) / (high - low)
per_without = (oh - ol) / (high - low)
print(f"instructions per refused player: {per_with:,.0f} with hooks, {per_without:,.0f} without")
print(f"instructions per hook call: {(per_with - per_without) / 3:,.0f}")
EOF

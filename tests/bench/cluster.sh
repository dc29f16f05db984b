#!/usr/bin/env bash
# The cluster's cost (docs/cluster.md): one origin and two edges on one Redis, each streamgate on
# one worker. A 2 Mbit/s stream is published to the origin; PLAYERS RTMP players are spread
# evenly over the two edges. Reports the CPU of the origin and of each edge per delivered
# Gbit/s (delivered bytes from each node's streamgate_sent_bytes_total) against one streamgate
# alone serving the same players, and the time to the first keyframe of a player on an edge
# whose relay is already running and of the first player, which starts the relay.
# See docs/benchmarks.md.
#
#   bash tests/bench/cluster.sh
#
# Knobs (environment): PLAYERS (1000), WINDOW seconds (15), REPEAT (3), FIRST (first-keyframe
# samples of each kind, 10), SKIP_BUILD=1. Needs cargo, ffmpeg (libx264, aac), python3, curl,
# redis-server.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PLAYERS=${PLAYERS:-1000}
WINDOW=${WINDOW:-15}
REPEAT=${REPEAT:-3}
FIRST=${FIRST:-10}

if [ "${SKIP_BUILD:-0}" != 1 ]; then cargo build --release -p streamgate -p streamgate-load; fi
BIN=target/release/streamgate
LOAD=target/release/streamgate-load

# bench_tmp, bench_source, publish_source, cpu, sent, free_port, wait_port
. tests/bench/lib.sh
bench_tmp cluster

bench_source

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
    >"$tmp/redis.log" 2>&1 &
pids+=($!)
wait_port "$redis_port" "${pids[-1]}" || { echo "redis-server did not start" >&2; exit 1; }

# CPU seconds (user + system) a process used so far.
# Bytes a node wrote to RTMP clients so far.

# Starts a node; sets NODE_PID, NODE_RTMP, NODE_API. CLUSTER=1 makes it one of the cluster.
start_node() { # name
    NODE_RTMP=$(free_port); NODE_API=$(free_port)
    local relay cluster=""
    relay=$(free_port)
    if [ "${CLUSTER:-1}" = 1 ]; then
        cluster="<node_id>$1</node_id><cluster><redis>redis://127.0.0.1:$redis_port/0</redis><advertise>127.0.0.1:$relay</advertise><listen>127.0.0.1:$relay</listen><secret>benchmark-cluster-secret-0123456</secret><relay_idle_ms>1000</relay_idle_ms></cluster>"
    fi
    mkdir -p "$tmp/$1"
    echo "<config><workers>1</workers><log_level>warn</log_level><data_dir>$tmp/$1/data</data_dir>$cluster<api><port>$NODE_API</port></api><rtmp><port>$NODE_RTMP</port></rtmp><httpflv><enable>false</enable></httpflv><rtsp><enable>false</enable></rtsp><srt><enable>false</enable></srt></config>" >"$tmp/$1/streamgate.xml"
    "$BIN" --config "$tmp/$1/streamgate.xml" >>"$tmp/$1/streamgate.log" 2>&1 &
    NODE_PID=$!
    pids+=("$NODE_PID")
    wait_port "$NODE_RTMP" "$NODE_PID" || { echo "streamgate $1 did not start" >&2; exit 1; }
}

publish() { # rtmp port
    publish_source "$1"
    sleep 3
}

# The first-keyframe time (ms) of one player of rtmp://127.0.0.1:PORT/live/bench.
first_keyframe() { # port
    "$LOAD" --url "rtmp://127.0.0.1:$1/live/bench" --players 1 --duration 1 --json 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["first_keyframe_ms"]["p50"])'
}


declare -a SINGLE ORIGIN EDGE1 EDGE2 ORIGIN_CPU
for rep in $(seq "$REPEAT"); do
    echo "== run $rep: one node alone, $PLAYERS players"
    CLUSTER=0 start_node "single$rep"
    s_pid=$NODE_PID; s_rtmp=$NODE_RTMP; s_api=$NODE_API
    publish "$s_rtmp"
    "$LOAD" --url "rtmp://127.0.0.1:$s_rtmp/live/bench" --players "$PLAYERS" \
        --duration $((WINDOW + 12)) --json >"$tmp/single.json" 2>/dev/null &
    ld=$!; pids+=("$ld")
    sleep 8
    c0=$(cpu "$s_pid"); b0=$(sent "$s_api")
    sleep "$WINDOW"
    c1=$(cpu "$s_pid"); b1=$(sent "$s_api")
    single=$(python3 -c "print('%.4f' % (($c1 - $c0) / (($b1 - $b0) * 8 / 1e9)))")
    SINGLE+=("$single")
    wait "$ld" 2>/dev/null || true
    kill "$s_pid" "$PUB_PID" 2>/dev/null || true

    echo "== run $rep: origin + two edges, $PLAYERS players over the edges"
    start_node "origin$rep"; o_pid=$NODE_PID; o_rtmp=$NODE_RTMP; o_api=$NODE_API
    start_node "edge1-$rep"; e1_pid=$NODE_PID; e1_rtmp=$NODE_RTMP; e1_api=$NODE_API
    start_node "edge2-$rep"; e2_pid=$NODE_PID; e2_rtmp=$NODE_RTMP; e2_api=$NODE_API
    publish "$o_rtmp"
    half=$((PLAYERS / 2))
    "$LOAD" --url "rtmp://127.0.0.1:$e1_rtmp/live/bench" --players "$half" \
        --duration $((WINDOW + 12)) --json >"$tmp/edge1.json" 2>/dev/null &
    l1=$!; pids+=("$l1")
    "$LOAD" --url "rtmp://127.0.0.1:$e2_rtmp/live/bench" --players "$((PLAYERS - half))" \
        --duration $((WINDOW + 12)) --json >"$tmp/edge2.json" 2>/dev/null &
    l2=$!; pids+=("$l2")
    sleep 8
    oc0=$(cpu "$o_pid"); e1c0=$(cpu "$e1_pid"); e2c0=$(cpu "$e2_pid")
    e1b0=$(sent "$e1_api"); e2b0=$(sent "$e2_api")
    sleep "$WINDOW"
    oc1=$(cpu "$o_pid"); e1c1=$(cpu "$e1_pid"); e2c1=$(cpu "$e2_pid")
    e1b1=$(sent "$e1_api"); e2b1=$(sent "$e2_api")
    read -r origin e1 e2 ocpu < <(python3 -c "
g1 = ($e1b1 - $e1b0) * 8 / 1e9; g2 = ($e2b1 - $e2b0) * 8 / 1e9
print('%.4f %.4f %.4f %.1f' % (($oc1 - $oc0) / (g1 + g2), ($e1c1 - $e1c0) / g1, ($e2c1 - $e2c0) / g2, 100 * ($oc1 - $oc0) / $WINDOW))")
    ORIGIN+=("$origin"); EDGE1+=("$e1"); EDGE2+=("$e2"); ORIGIN_CPU+=("$ocpu")
    echo "run $rep: CPU s per delivered Gbit: single node $single; origin $origin ($ocpu % of a core), edge 1 $e1, edge 2 $e2"
    wait "$l1" "$l2" 2>/dev/null || true

    if [ "$rep" = 1 ]; then
        echo "== first keyframe on edge 1: relay running vs first player (relay starts), $FIRST each"
        declare -a WARM COLD
        "$LOAD" --url "rtmp://127.0.0.1:$e1_rtmp/live/bench" --players 1 \
            --duration $((FIRST * 4 + 10)) >/dev/null 2>&1 &
        keep=$!; pids+=("$keep")
        sleep 2
        for _ in $(seq "$FIRST"); do WARM+=("$(first_keyframe "$e1_rtmp")"); done
        kill "$keep" 2>/dev/null || true
        for _ in $(seq "$FIRST"); do
            # relay_idle_ms is 1000: wait until edge 2 has no relay left, then join there.
            for _ in $(seq 50); do
                n=$(curl -s "http://127.0.0.1:$e2_api/metrics" | awk '/^streamgate_cluster_relay_pulls / { print $2 }')
                [ "$n" = 0 ] && break
                sleep 0.2
            done
            COLD+=("$(first_keyframe "$e2_rtmp")")
        done
        STARTS=$(curl -s "http://127.0.0.1:$e2_api/metrics" |
            awk '/^streamgate_cluster_relay_pull_starts_total\{result="started"\}/ { print $2 }')
        echo "relay pulls started on edge 2: $STARTS (1 for the players, then one per first player)"
        echo "first keyframe ms, relay running: ${WARM[*]}"
        echo "first keyframe ms, first player (starts the relay): ${COLD[*]}"
        WARM_MED=$(median "${WARM[@]}"); COLD_MED=$(median "${COLD[@]}")
        WARM_MAX=$(printf '%s\n' "${WARM[@]}" | sort -g | tail -1)
        COLD_MAX=$(printf '%s\n' "${COLD[@]}" | sort -g | tail -1)
    fi
    kill "$o_pid" "$e1_pid" "$e2_pid" "$PUB_PID" 2>/dev/null || true
    sleep 1
done

echo
echo "| $PLAYERS RTMP players of one 2 Mbit/s stream, medians of $REPEAT | CPU s per delivered Gbit |"
echo "|---|---|"
echo "| one node alone | $(median "${SINGLE[@]}") |"
echo "| origin (per Gbit the edges delivered; it carries two relays) | $(median "${ORIGIN[@]}") ($(median "${ORIGIN_CPU[@]}") % of a core) |"
echo "| edge 1 ($((PLAYERS / 2)) players) | $(median "${EDGE1[@]}") |"
echo "| edge 2 ($((PLAYERS - PLAYERS / 2)) players) | $(median "${EDGE2[@]}") |"
echo
echo "| first keyframe of a player on an edge, $FIRST each | median | max |"
echo "|---|---|---|"
echo "| relay already running | $WARM_MED ms | $WARM_MAX ms |"
echo "| first player (starts the relay) | $COLD_MED ms | $COLD_MAX ms |"

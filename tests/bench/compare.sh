#!/usr/bin/env bash
# streamgate side by side with nginx-rtmp (nginx + libnginx-mod-rtmp, Debian), on loopback, in
# one run: the same 2 Mbit/s H.264+AAC stream published into each with `ffmpeg -c copy`, the
# same players from the load tool (streamgate-load) against each, each server's CPU time and
# RSS sampled from /proc over a steady window, 3 runs of every case, medians and ratios
# streamgate / nginx-rtmp printed as Markdown tables. See docs/benchmarks.md.
#
#   bash tests/bench/compare.sh
#   SRS_BIN=/path/to/srs/trunk/objs/srs bash tests/bench/compare.sh     # with SRS beside them
#
# SRS (optional, when SRS_BIN names its binary; built from its public repository, see
# docs/benchmarks.md) runs beside nginx-rtmp in the RTMP and HTTP-FLV efficiency cases twice:
# `srs-40` with mw_latency 40 ms (streamgate's <write_merge_ms> default: equal merge windows)
# and `srs-default` with SRS's own default (350 ms); both with gop_cache on and HTTP-FLV
# (http_remux) on.
#
# Cases: 200 and 1000 RTMP players (fan-out efficiency: CPU per delivered Gbit/s, RSS per
# player, play start and first keyframe); 1000 HTTP-FLV players (streamgate only, against its
# own RTMP figure); play start with hooks off and on, 1000 players at 500/s and all at once; a
# hook that makes new players wait 5 s while 200 existing players play (their largest frame
# gap); 1000 RTMP players again with <workers>2</workers>; 1000 RTSP (TCP-interleaved and UDP)
# and 1000 SRT players of streamgate against its own RTMP figure (case "proto"); RTSP and SRT
# against a peer (case "peer", 200 and 1000 players): RTSP (TCP and UDP) beside GStreamer's
# gst-rtsp-server (tests/bench/rtsp_peer.py, one shared media pulling the stream from
# streamgate over RTMP), SRT beside SRS's SRT server when SRS_BIN was built with `--srt=on`
# (`srs-srt`, SRS's defaults; both servers fed by ffmpeg over SRT, MPEG-TS).
#
# Knobs (environment): PLAYERS (1000), SMALL (200), REPEAT (3), RAMP players/s of the
# efficiency runs (500), SETTLE seconds between the last player's start and the window (3),
# WINDOW seconds (10), JOIN_DURATION seconds after the last start of a join run (2),
# JOIN_PHASE_MS (1000: join runs start this long after a live keyframe, half of the 2 s GOP,
# so that every run lands at the same point of the GOP; see streamgate-load --after-keyframe),
# SLOW_EXISTING (200), SLOW_NEW (200), SLOW_SECONDS (5), CASES (space-separated subset of
# "eff flv join hooks slow w2 proto peer", all by default), SKIP_BUILD=1, PROFILE=perf|callgrind (also
# profile streamgate: perf's cpu-clock sampling during a PLAYERS-player RTMP window, or
# callgrind on a short run with PROFILE_PLAYERS (20) players), KEEP=DIR (copy the raw results
# and logs there), WRITE_MERGE_MS (streamgate's <write_merge_ms>; its default when unset).
# Needs root for apt-get (only when nginx or its rtmp module is missing), cargo, ffmpeg (with
# libx264 and aac), python3, curl. Every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BENCH=tests/bench

PLAYERS=${PLAYERS:-1000}
SMALL=${SMALL:-200}
REPEAT=${REPEAT:-3}
RAMP=${RAMP:-500}
SETTLE=${SETTLE:-3}
WINDOW=${WINDOW:-10}
JOIN_DURATION=${JOIN_DURATION:-2}
JOIN_PHASE_MS=${JOIN_PHASE_MS:-1000}
SLOW_EXISTING=${SLOW_EXISTING:-200}
SLOW_NEW=${SLOW_NEW:-200}
SLOW_SECONDS=${SLOW_SECONDS:-5}
CASES=${CASES:-eff flv join hooks slow w2 proto peer}
PROFILE=${PROFILE:-}
PROFILE_PLAYERS=${PROFILE_PLAYERS:-20}
T_START=$(date +%s)

has_case() { [[ " $CASES " == *" $1 "* ]]; }
elapsed() { echo "$(( $(date +%s) - T_START )) s"; }

# ------------------------------------------------------------------------------------------
# tools

if ! command -v nginx >/dev/null 2>&1 || [ ! -e /usr/lib/nginx/modules/ngx_rtmp_module.so ]; then
    echo "== installing nginx and libnginx-mod-rtmp"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get -o DPkg::Lock::Timeout=300 update -qq
    timeout 600 apt-get -o DPkg::Lock::Timeout=300 install -y -qq nginx libnginx-mod-rtmp >/dev/null
fi
if [ -n "$PROFILE" ] && [ "$PROFILE" = callgrind ] && ! command -v valgrind >/dev/null 2>&1; then
    timeout 600 apt-get -o DPkg::Lock::Timeout=300 install -y -qq valgrind >/dev/null
fi
if [ "$PROFILE" = perf ] && ! command -v perf >/dev/null 2>&1; then
    timeout 600 apt-get -o DPkg::Lock::Timeout=300 install -y -qq linux-perf >/dev/null
fi
if has_case peer && ! /usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' >/dev/null 2>&1; then
    echo "== installing gst-rtsp-server's Python bindings and rtmp2src (the RTSP peer)"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get -o DPkg::Lock::Timeout=300 update -qq
    timeout 600 apt-get -o DPkg::Lock::Timeout=300 install -y -qq python3-gi gir1.2-gst-rtsp-server-1.0 \
        gstreamer1.0-plugins-good gstreamer1.0-plugins-bad >/dev/null
fi
NGINX_RTMP=/usr/lib/nginx/modules/ngx_rtmp_module.so
for tool in cargo ffmpeg python3 curl timeout nginx getconf; do
    command -v "$tool" >/dev/null 2>&1 || { echo "compare.sh: $tool is required" >&2; exit 2; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/streamgate-compare.XXXXXX")
results="$tmp/results.jsonl"
: >"$results"
pids=()

# Stops the given processes (TERM, then KILL after 5 s) and forgets them. A pid prefixed with
# "+" is stopped together with its children (nginx: master and workers).
stop_pids() {
    local spec pid all=() kids
    for spec in "$@"; do
        [ -n "$spec" ] || continue
        pid=${spec#+}
        if [ "$spec" != "$pid" ]; then
            kids=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null || true)
            all+=($kids)
        fi
        all+=("$pid")
    done
    for pid in "${all[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${all[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    local keep=() p s
    for p in "${pids[@]}"; do
        s=0
        for pid in "${all[@]}"; do [ "${p#+}" = "$pid" ] && s=1; done
        [ "$s" = 1 ] || keep+=("$p")
    done
    pids=("${keep[@]}")
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ "${#pids[@]}" -gt 0 ] && stop_pids "${pids[@]}"
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp -r "$tmp"/. "$KEEP"/ 2>/dev/null || true; fi
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port, wait_port, write_hook_nginx_conf
. tests/bench/lib.sh

rss_kib() { # pid or +pid: VmRSS summed over the process (and its children)
    local pid=${1#+} p sum=0 v
    local list=("$pid")
    [ "$1" != "$pid" ] && list+=($(cat "/proc/$pid/task/$pid/children" 2>/dev/null || true))
    for p in "${list[@]}"; do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

echo "== machine"
echo "nproc: $(nproc)"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "kernel: $(uname -r)"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
ffmpeg -hide_banner -version | sed -n 1p
nginx -v 2>&1
echo "libnginx-mod-rtmp: $(dpkg-query -W -f='${Version}' libnginx-mod-rtmp 2>/dev/null || echo '?')"
echo "streamgate: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src actors 2>/dev/null || echo ' + uncommitted changes')"
echo "streamgate <write_merge_ms>: ${WRITE_MERGE_MS:-default}"
if [ -n "${SRS_BIN:-}" ]; then
    [ -x "$SRS_BIN" ] || { echo "compare.sh: SRS_BIN=$SRS_BIN is not an executable" >&2; exit 2; }
    echo "srs: $("$SRS_BIN" -v 2>&1 | tail -n1)"
    # SRS refuses more connections than its open-file limit allows.
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    echo "open files: $(ulimit -n)"
fi

if [ "${SKIP_BUILD:-0}" = 1 ]; then
    echo "== build skipped (SKIP_BUILD=1): using the binaries in target/release"
else
    echo "== build (cargo build --release -p streamgate -p streamgate-load)"
    timeout 1800 cargo build --release -p streamgate -p streamgate-load --quiet
fi
BIN=target/release/streamgate
LOAD=target/release/streamgate-load
[ -x "$BIN" ] && [ -x "$LOAD" ] || { echo "compare.sh: no release binaries" >&2; exit 1; }

echo "== source: 60 s of 1280x720 25 fps H.264 at 2 Mbit/s (GOP 50 = 2 s) + AAC 64 kbit/s, FLV ($(elapsed))"
SRC="$tmp/source.flv"
timeout 300 ffmpeg -hide_banner -nostdin -loglevel error -y \
    -f lavfi -i testsrc2=size=1280x720:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 -t 60 \
    -c:v libx264 -preset veryfast -b:v 2M -maxrate 2M -bufsize 2M -g 50 -keyint_min 50 -sc_threshold 0 \
    -pix_fmt yuv420p -c:a aac -b:a 64k -f flv "$SRC"

# Publishes the source in a loop (real time, -c copy) to a URL: FLV to an RTMP URL by default,
# MPEG-TS with "mpegts" (an SRT URL whose streamid says m=publish); PUB_PID is its pid.
PUB_PID=""
publish() { # url, muxer (flv)
    ffmpeg -hide_banner -nostdin -loglevel error -re -stream_loop -1 -i "$SRC" -c copy \
        -f "${2:-flv}" "$1" >>"$tmp/ffmpeg.log" 2>&1 &
    PUB_PID=$!
    pids+=("$PUB_PID")
}

# Tries one player of $1 (any protocol) up to TRIES times, each playing SECONDS, until the
# load tool counts it in FIELD (playing, with_keyframe).
wait_player() { # url, field, seconds, tries
    local out
    for _ in $(seq "$4"); do
        out=$(timeout 20 "$LOAD" --url "$1" --players 1 --duration "$3" --start-timeout 5 --json 2>/dev/null || true)
        if [[ "$out" == *"\"$2\":1,"* ]]; then return 0; fi
        sleep 0.5
    done
    return 1
}

# Waits until one player of $1 gets a keyframe.
wait_keyframe() {
    wait_player "$1" with_keyframe 3 20 && return 0
    echo "compare.sh: no keyframe from $1" >&2
    return 1
}

# Waits until one RTMP player plays $1.
wait_live() {
    wait_player "$1" playing 0.3 40 && return 0
    echo "compare.sh: $1 never went live" >&2
    tail -20 "$tmp/ffmpeg.log" >&2
    return 1
}

# ------------------------------------------------------------------------------------------
# the hook servers
#
# Two keep-alive HTTP servers answering 200 at once: nginx (`return 200`, one worker) for the
# join runs, where 1000 players at once make 2000 calls in a fraction of a second and the hook
# server's own CPU competes with the media server's for the same two cores (in production it
# runs on another machine): nginx costs the least. The Python one (tests/bench/hook_server.py)
# for the slow-hook runs, which need it to hold on_play for seconds on request; it also
# reports its event loop's lag. HOOK_SERVER=python runs the join runs against it too.
# `use_hook KIND` points the servers started next at one of them (HOOK, HOOK_KIND).

HOOK_SERVER=${HOOK_SERVER:-nginx}
HOOK="" HOOK_KIND=""
PY_HOOK="" PY_HOOK_PID=""
start_py_hook() {
    [ -n "$PY_HOOK_PID" ] && return 0
    python3 "$BENCH/hook_server.py" >"$tmp/hook.port" 2>"$tmp/hook.log" &
    PY_HOOK_PID=$!
    pids+=("$PY_HOOK_PID")
    for _ in $(seq 100); do [ -s "$tmp/hook.port" ] && break; sleep 0.05; done
    local port
    port=$(head -n1 "$tmp/hook.port")
    [ -n "$port" ] || { echo "hook server did not start" >&2; cat "$tmp/hook.log" >&2; exit 1; }
    PY_HOOK="http://127.0.0.1:$port"
}
NGX_HOOK="" NGX_HOOK_PID=""
start_ngx_hook() {
    [ -n "$NGX_HOOK_PID" ] && return 0
    local prefix="$tmp/nginx-hook" port
    port=$(free_port)
    write_hook_nginx_conf "$prefix" "$port"
    nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log" >>"$tmp/nginx-hook.out" 2>&1 &
    NGX_HOOK_PID=$!
    pids+=("+$NGX_HOOK_PID")
    wait_port "$port" "$NGX_HOOK_PID" || {
        echo "the nginx hook server did not start" >&2; cat "$tmp/nginx-hook.out" >&2; exit 1; }
    NGX_HOOK="http://127.0.0.1:$port"
}
use_hook() { # python|nginx
    HOOK_KIND=$1
    if [ "$1" = python ]; then start_py_hook; HOOK=$PY_HOOK; else start_ngx_hook; HOOK=$NGX_HOOK; fi
}
hook_ctl() { curl -s -m 5 -o "${2:-/dev/null}" "$HOOK/$1"; }

# The nginx hook server's counters: "requests accepted-connections cpu-seconds" (stub_status;
# utime+stime of its master and worker).
ngx_hook_counters() {
    local pid=$NGX_HOOK_PID p ticks=0 t
    for p in "$pid" $(cat "/proc/$pid/task/$pid/children" 2>/dev/null || true); do
        t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
        ticks=$((ticks + t))
    done
    curl -s -m 5 "$NGX_HOOK/_stats" |
        awk -v ticks="$ticks" -v hz="$(getconf CLK_TCK)" 'NR == 3 {print $3, $1, ticks / hz}'
}
# Zeroes the current hook server's counters (nginx: remembers them).
hook_reset() {
    if [ "$HOOK_KIND" = python ]; then hook_ctl _reset; else NGX_BASE=$(ngx_hook_counters); fi
}
# Writes the current hook server's counters since hook_reset to FILE as JSON.
hook_stats() { # file
    if [ "$HOOK_KIND" = python ]; then hook_ctl _stats "$1"; return; fi
    # The two stub_status requests (and the second one's connection) are not hook calls.
    python3 - "$NGX_BASE" "$(ngx_hook_counters)" >"$1" <<'EOF'
import json, sys
r0, c0, cpu0 = (float(x) for x in sys.argv[1].split())
r1, c1, cpu1 = (float(x) for x in sys.argv[2].split())
print(json.dumps({"server": "nginx", "requests": int(r1 - r0 - 2), "connections": int(c1 - c0 - 1),
                  "cpu_s": round(cpu1 - cpu0, 3)}))
EOF
}

# ------------------------------------------------------------------------------------------
# the servers

SG_PID="" SG_FF="" SG_RTMP="" SG_FLV="" SG_URL="" SG_FLV_URL="" SG_RTSP_URL="" SG_SRT_URL=""
start_streamgate() { # workers, hooks (on|off), source published over (rtmp, the default, | srt)
    local workers=$1 hooks=$2 ingest=${3:-rtmp} conf="$tmp/streamgate.xml" call
    SG_RTMP=$(free_port)
    SG_FLV=$(free_port)
    local rtsp srt
    rtsp=$(free_port)
    srt=$(free_port)
    {
        echo "<config>"
        # RTSP and SRT listen too (idle unless a case plays them; no hooks).
        echo "  <rtsp><enable>true</enable><port>$rtsp</port><rtp_port_min>20000</rtp_port_min><rtp_port_max>59999</rtp_port_max></rtsp>"
        echo "  <srt><enable>true</enable><port>$srt</port></srt>"
        echo "  <data_dir>$tmp/data-sg</data_dir>"
        echo "  <workers>$workers</workers>"
        echo "  <log_level>warn</log_level>"
        for proto in rtmp httpflv; do
            echo "  <$proto>"
            echo "    <enable>true</enable>"
            if [ "$proto" = rtmp ]; then echo "    <port>$SG_RTMP</port>"; else echo "    <port>$SG_FLV</port>"; fi
            if [ -n "${WRITE_MERGE_MS:-}" ]; then echo "    <write_merge_ms>$WRITE_MERGE_MS</write_merge_ms>"; fi
            if [ "$hooks" = on ]; then
                echo "    <http_notify>"
                for call in connect play publish done; do
                    echo "      <on_$call>$HOOK/streamgate/$proto/$call</on_$call>"
                done
                echo "      <timeout_ms>$(( (SLOW_SECONDS + 10) * 1000 ))</timeout_ms>"
                echo "    </http_notify>"
            fi
            echo "  </$proto>"
        done
        echo "</config>"
    } >"$conf"
    "$BIN" --config "$conf" >>"$tmp/streamgate.log" 2>&1 &
    SG_PID=$!
    pids+=("$SG_PID")
    wait_port "$SG_RTMP" "$SG_PID" && wait_port "$SG_FLV" "$SG_PID" || {
        echo "streamgate did not start" >&2; tail -20 "$tmp/streamgate.log" >&2; exit 1; }
    SG_URL="rtmp://127.0.0.1:$SG_RTMP/live/bench"
    SG_FLV_URL="http://127.0.0.1:$SG_FLV/live/bench.flv"
    SG_RTSP_URL="rtsp://127.0.0.1:$rtsp/live/bench"
    SG_SRT_URL="srt://127.0.0.1:$srt?streamid=#!::r=live/bench,m=request"
    if [ "$ingest" = srt ]; then publish "${SG_SRT_URL/m=request/m=publish}" mpegts; else publish "$SG_URL"; fi
    SG_FF=$PUB_PID
}
stop_streamgate() { stop_pids "$SG_FF"; stop_pids "$SG_PID"; SG_PID="" SG_FF=""; }

NG_PID="" NG_FF="" NG_PORT="" NG_URL=""
start_nginx() { # hooks (on|off)
    local hooks=$1 prefix="$tmp/nginx"
    mkdir -p "$prefix/logs"
    NG_PORT=$(free_port)
    sed -e "s|@PREFIX@|$prefix|g" -e "s|@MODULE@|$NGINX_RTMP|g" -e "s|@PORT@|$NG_PORT|g" \
        "$BENCH/nginx-rtmp.conf.in" >"$prefix/nginx.conf"
    if [ "$hooks" = on ]; then
        # on_connect belongs to the server block, the others to the application.
        python3 - "$prefix/nginx.conf" "$HOOK" <<'EOF'
import sys
path, hook = sys.argv[1], sys.argv[2]
s = open(path).read()
s = s.replace("# @SERVER_HOOKS@", "on_connect %s/nginx/connect;" % hook)
s = s.replace("# @APP_HOOKS@", " ".join("on_%s %s/nginx/%s;" % (c, hook, c) for c in ("play", "publish", "done")))
open(path, "w").write(s)
EOF
    fi
    nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log" >>"$tmp/nginx.out" 2>&1 &
    NG_PID=$!
    pids+=("+$NG_PID")
    wait_port "$NG_PORT" "$NG_PID" || {
        echo "nginx did not start" >&2; cat "$tmp/nginx.out" "$prefix/logs/error.log" >&2; exit 1; }
    NG_URL="rtmp://127.0.0.1:$NG_PORT/live/bench"
    publish "$NG_URL"
    NG_FF=$PUB_PID
}
stop_nginx() { stop_pids "$NG_FF"; stop_pids "+$NG_PID"; NG_PID="" NG_FF=""; }

# SRS, one instance per merge window: srs-40 (mw_latency 40 ms) and srs-default (SRS's own);
# srs-srt is SRS's defaults with its SRT server on, fed over SRT.
declare -A SRS_PID SRS_FF SRS_URL SRS_FLV_URL SRS_SRT_URL
start_srs() { # name (srs-40 | srs-default | srs-srt)
    local name=$1 prefix="$tmp/$1" port flv srt="" mw="" srt_conf="" srt_vhost=""
    mkdir -p "$prefix"
    port=$(free_port)
    flv=$(free_port)
    [ "$name" = srs-40 ] && mw="mw_latency 40;"
    if [ "$name" = srs-srt ]; then
        srt=$(free_port)
        srt_conf="srt_server { enabled on; listen $srt; }"
        srt_vhost="srt { enabled on; }"
    fi
    cat >"$prefix/srs.conf" <<SRSCONF
listen $port;
max_connections 4000;
daemon off;
pid $prefix/srs.pid;
srs_log_tank file;
srs_log_file $prefix/srs.log;
srs_log_level warn;
http_api { enabled off; }
http_server { enabled on; listen $flv; dir $prefix; }
$srt_conf
vhost __defaultVhost__ {
    play { gop_cache on; $mw }
    http_remux { enabled on; mount [vhost]/[app]/[stream].flv; }
    $srt_vhost
}
SRSCONF
    (cd "$prefix" && exec "$SRS_BIN" -c "$prefix/srs.conf") >>"$prefix/srs.out" 2>&1 &
    SRS_PID[$name]=$!
    pids+=("${SRS_PID[$name]}")
    wait_port "$port" "${SRS_PID[$name]}" && wait_port "$flv" "${SRS_PID[$name]}" || {
        echo "$name did not start" >&2; tail -n 20 "$prefix/srs.out" "$prefix/srs.log" >&2; exit 1; }
    SRS_URL[$name]="rtmp://127.0.0.1:$port/live/bench"
    SRS_FLV_URL[$name]="http://127.0.0.1:$flv/live/bench.flv"
    if [ -n "$srt" ]; then
        SRS_SRT_URL[$name]="srt://127.0.0.1:$srt?streamid=#!::r=live/bench,m=request"
        publish "srt://127.0.0.1:$srt?streamid=#!::r=live/bench,m=publish" mpegts
    else
        publish "${SRS_URL[$name]}"
    fi
    SRS_FF[$name]=$PUB_PID
}
stop_srs() { # name
    stop_pids "${SRS_FF[$1]}"; stop_pids "${SRS_PID[$1]}"; SRS_PID[$1]="" SRS_FF[$1]=""
}
SRS_NAMES=()
[ -n "${SRS_BIN:-}" ] && SRS_NAMES=(srs-40 srs-default)
# SRS serves SRT only when built with `--srt=on` (libsrt linked in).
SRS_SRT=""
[ -n "${SRS_BIN:-}" ] && grep -qa srt_sendmsg2 "$SRS_BIN" && SRS_SRT=1

# GStreamer's gst-rtsp-server (tests/bench/rtsp_peer.py), its one shared media playing
# streamgate's RTMP: the RTSP peer of case "peer". Needs streamgate started.
GP_PID="" GP_URL=""
start_rtsp_peer() {
    local port
    port=$(free_port)
    /usr/bin/python3 "$BENCH/rtsp_peer.py" "$port" "$SG_URL" >>"$tmp/rtsp_peer.log" 2>&1 &
    GP_PID=$!
    pids+=("$GP_PID")
    wait_port "$port" "$GP_PID" || { echo "rtsp_peer.py did not start" >&2; tail -20 "$tmp/rtsp_peer.log" >&2; exit 1; }
    GP_URL="rtsp://127.0.0.1:$port/live/bench"
    wait_keyframe "$GP_URL"
}
stop_rtsp_peer() { stop_pids "$GP_PID"; GP_PID=""; }

# Starts the servers named (streamgate:WORKERS, nginx), each with its publisher, hooks on or
# off, and waits until each is live and streamgate's GOP cache holds a whole GOP.
fresh() { # hooks, servers...
    local hooks=$1 s
    shift
    [ -n "$SG_PID" ] && stop_streamgate
    [ -n "$NG_PID" ] && stop_nginx
    for s in "${!SRS_PID[@]}"; do [ -n "${SRS_PID[$s]}" ] && stop_srs "$s"; done
    for s in "$@"; do
        case $s in
            streamgate:*:srt) s=${s%:srt}; start_streamgate "${s#streamgate:}" "$hooks" srt ;;
            streamgate:*) start_streamgate "${s#streamgate:}" "$hooks" ;;
            nginx) start_nginx "$hooks" ;;
            srs-*) start_srs "$s" ;;
        esac
    done
    [ -n "$SG_PID" ] && wait_live "$SG_URL"
    [ -n "$NG_PID" ] && wait_live "$NG_URL"
    for s in "${!SRS_PID[@]}"; do [ -n "${SRS_PID[$s]}" ] && wait_live "${SRS_URL[$s]}"; done
    sleep 2.5
}

server_pid() {
    case $1 in
        streamgate) echo "$SG_PID" ;;
        nginx-rtmp) echo "+$NG_PID" ;;
        srs-*) echo "${SRS_PID[$1]}" ;;
        gst-rtsp-server) echo "$GP_PID" ;;
    esac
}
server_ff() { # the ffmpeg publishing what the server serves
    case $1 in
        streamgate | gst-rtsp-server) echo "$SG_FF" ;;
        nginx-rtmp) echo "$NG_FF" ;;
        srs-*) echo "${SRS_FF[$1]}" ;;
    esac
}
# The RTMP and HTTP-FLV play URLs of a server started by `fresh`.
rtmp_url() {
    case $1 in
        streamgate) echo "$SG_URL" ;;
        nginx-rtmp) echo "$NG_URL" ;;
        srs-*) echo "${SRS_URL[$1]}" ;;
    esac
}
flv_url() { if [ "$1" = streamgate ]; then echo "$SG_FLV_URL"; else echo "${SRS_FLV_URL[$1]}"; fi; }

# ------------------------------------------------------------------------------------------
# the runs

# An efficiency run: N players at RAMP/s, then SETTLE s, then a WINDOW s window in which the
# load tool counts delivered media and sample_procs.py reads CPU and RSS.
measure() { # case, server (streamgate|nginx-rtmp|srs-*), url, players, rep, load tool options...
    local case=$1 server=$2 url=$3 n=$4 rep=$5
    shift 5
    local spid ff idle span wstart dur tp sp
    spid=$(server_pid "$server")
    ff=$(server_ff "$server")
    idle=$(rss_kib "$spid")
    span=$(python3 -c "print(round(($n - 1) / $RAMP, 3))")
    wstart=$(python3 -c "print($span + $SETTLE)")
    dur=$(python3 -c "print($SETTLE + $WINDOW + 0.5)")
    timeout $((n / RAMP + SETTLE + WINDOW + 40)) "$LOAD" --url "$url" "$@" --players "$n" --ramp "$RAMP" \
        --duration "$dur" --start-timeout 10 --window-start "$wstart" --window "$WINDOW" --json \
        >"$tmp/load.json" 2>"$tmp/load.err" &
    tp=$!
    python3 "$BENCH/sample_procs.py" "$wstart" "$WINDOW" server="$spid" tool="+$tp" ffmpeg="$ff" \
        >"$tmp/sample.json" &
    sp=$!
    wait "$tp" || true
    wait "$sp" || true
    python3 "$BENCH/compare_report.py" record "$results" eff case="$case" server="$server" rep="$rep" \
        players="$n" idle_rss_kib="$idle" load="$tmp/load.json" sample="$tmp/sample.json"
}

# A join run: N players at 500/s or all at once, JOIN_PHASE_MS after a live keyframe, for
# JOIN_DURATION s after the last start.
join_run() { # server, url, hooks, join (500/s|once), rep
    local server=$1 url=$2 hooks=$3 join=$4 rep=$5 args
    args=(--url "$url" --players "$PLAYERS" --duration "$JOIN_DURATION" --start-timeout 10 --json
        --after-keyframe "$JOIN_PHASE_MS")
    [ "$join" = once ] || args+=(--ramp "${join%/s}")
    [ "$hooks" = on ] && hook_reset
    timeout $((PLAYERS / 100 + JOIN_DURATION + 40)) "$LOAD" "${args[@]}" >"$tmp/load.json" 2>"$tmp/load.err" || true
    local hook_arg=()
    if [ "$hooks" = on ]; then hook_stats "$tmp/hook.json"; hook_arg=(hook="$tmp/hook.json"); fi
    python3 "$BENCH/compare_report.py" record "$results" join server="$server" hooks="$hooks" join="$join" \
        rep="$rep" players="$PLAYERS" load="$tmp/load.json" "${hook_arg[@]}"
    sleep 1 # the previous players' sessions end
}

# The slow hook: SLOW_EXISTING players start (200/s); once they play, the hook server makes
# every new on_play wait SLOW_SECONDS; SLOW_NEW players join at once. The new players get
# twice SLOW_SECONDS and 4 s to start (a server that runs at most so many hook calls at once
# starts the rest one wait later); the existing players' window covers all of that.
slow_run() { # server, url, rep
    local server=$1 url=$2 rep=$3 span wstart wlen dur tp tp2
    span=$(python3 -c "print(round(($SLOW_EXISTING - 1) / 200, 3))")
    wstart=$(python3 -c "print($span + 1)")
    wlen=$((2 * SLOW_SECONDS + 4))
    dur=$(python3 -c "print(1.5 + 2 * $SLOW_SECONDS + 5)")
    hook_ctl _fast
    timeout $((3 * SLOW_SECONDS + 60)) "$LOAD" --url "$url" --players "$SLOW_EXISTING" --ramp 200 --duration "$dur" \
        --window-start "$wstart" --window "$wlen" --json >"$tmp/load.json" 2>"$tmp/load.err" &
    tp=$!
    sleep "$(python3 -c "print($span + 1.5)")"
    hook_ctl "_slow?seconds=$SLOW_SECONDS&call=play"
    timeout $((3 * SLOW_SECONDS + 60)) "$LOAD" --url "$url" --players "$SLOW_NEW" --duration $((2 * SLOW_SECONDS + 4)) \
        --start-timeout $((3 * SLOW_SECONDS + 5)) \
        --json >"$tmp/load2.json" 2>"$tmp/load2.err" &
    tp2=$!
    wait "$tp" || true
    wait "$tp2" || true
    hook_ctl _fast
    python3 "$BENCH/compare_report.py" record "$results" slow server="$server" rep="$rep" \
        players="$SLOW_EXISTING" new_players="$SLOW_NEW" slow_s="$SLOW_SECONDS" \
        load="$tmp/load.json" load2="$tmp/load2.json"
    sleep 1
}

# --- fan-out efficiency, hooks off: every run on freshly started servers (clean idle RSS) ---
if has_case eff || has_case flv; then
    for rep in $(seq "$REPEAT"); do
        if has_case eff; then
            for n in "$SMALL" "$PLAYERS"; do
                echo "== rtmp$n, run $rep: $n RTMP players at $RAMP/s, window $WINDOW s ($(elapsed))"
                fresh off streamgate:1 nginx "${SRS_NAMES[@]}"
                # The order alternates between runs, so no server always goes first.
                if [ $((rep % 2)) = 1 ]; then
                    order="nginx-rtmp ${SRS_NAMES[*]} streamgate"
                else
                    order="streamgate ${SRS_NAMES[*]} nginx-rtmp"
                fi
                for server in $order; do
                    measure "rtmp$n" "$server" "$(rtmp_url "$server")" "$n" "$rep"
                done
            done
        fi
        if has_case flv; then
            echo "== flv$PLAYERS, run $rep: $PLAYERS HTTP-FLV players (streamgate ${SRS_NAMES[*]}) ($(elapsed))"
            fresh off streamgate:1 "${SRS_NAMES[@]}"
            for server in streamgate "${SRS_NAMES[@]}"; do
                measure "flv$PLAYERS" "$server" "$(flv_url "$server")" "$PLAYERS" "$rep"
            done
        fi
    done
fi

# --- play start, hooks off and on ---
for hooks in off on; do
    has_case join || [ "$hooks" = on ] || continue
    has_case hooks || [ "$hooks" = off ] || continue
    [ "$hooks" = on ] && use_hook "$HOOK_SERVER"
    echo "== join, hooks $hooks${HOOK_KIND:+ ($HOOK_KIND hook server)}: $PLAYERS players at 500/s and all at once ($(elapsed))"
    fresh "$hooks" streamgate:1 nginx
    for rep in $(seq "$REPEAT"); do
        for join in 500/s once; do
            for server in streamgate nginx-rtmp; do
                if [ "$server" = streamgate ]; then url=$SG_URL; else url=$NG_URL; fi
                join_run "$server" "$url" "$hooks" "$join" "$rep"
            done
        done
    done
    if [ "$hooks" = on ] && has_case slow; then
        echo "== slow hook: $SLOW_EXISTING players playing, $SLOW_NEW new ones wait $SLOW_SECONDS s ($(elapsed))"
        if [ "$HOOK_KIND" != python ]; then
            use_hook python
            fresh on streamgate:1 nginx
        fi
        for rep in $(seq "$REPEAT"); do
            for server in streamgate nginx-rtmp; do
                if [ "$server" = streamgate ]; then url=$SG_URL; else url=$NG_URL; fi
                slow_run "$server" "$url" "$rep"
            done
        done
    fi
done
if has_case slow && ! has_case hooks; then
    use_hook python
    echo "== slow hook: $SLOW_EXISTING players playing, $SLOW_NEW new ones wait $SLOW_SECONDS s ($(elapsed))"
    fresh on streamgate:1 nginx
    for rep in $(seq "$REPEAT"); do
        for server in streamgate nginx-rtmp; do
            if [ "$server" = streamgate ]; then url=$SG_URL; else url=$NG_URL; fi
            slow_run "$server" "$url" "$rep"
        done
    done
fi

# --- workers 2 ---
if has_case w2; then
    for rep in $(seq "$REPEAT"); do
        echo "== rtmp${PLAYERS}_w2, run $rep: $PLAYERS RTMP players, streamgate <workers>2</workers> ($(elapsed))"
        fresh off streamgate:2
        measure "rtmp${PLAYERS}_w2" streamgate "$SG_URL" "$PLAYERS" "$rep"
    done
fi

# --- every output protocol of streamgate against its RTMP, one server, same stream ---
if has_case proto; then
    for rep in $(seq "$REPEAT"); do
        echo "== proto$PLAYERS, run $rep: $PLAYERS RTMP, RTSP (TCP, UDP) and SRT players of streamgate ($(elapsed))"
        fresh off streamgate:1
        measure "rtmp${PLAYERS}_p" streamgate "$SG_URL" "$PLAYERS" "$rep"
        measure "rtsp$PLAYERS" streamgate "$SG_RTSP_URL" "$PLAYERS" "$rep"
        measure "rtspudp$PLAYERS" streamgate "$SG_RTSP_URL" "$PLAYERS" "$rep" --rtsp-transport udp
        measure "srt$PLAYERS" streamgate "$SG_SRT_URL" "$PLAYERS" "$rep"
    done
fi

# --- RTSP and SRT against a peer ---
# RTSP (TCP, UDP): streamgate beside gst-rtsp-server, which plays streamgate's RTMP (its one
# RTMP player costs streamgate next to nothing); SRT: streamgate beside SRS, each fed over SRT.
if has_case peer; then
    for rep in $(seq "$REPEAT"); do
        for n in "$SMALL" "$PLAYERS"; do
            if [ $((rep % 2)) = 1 ]; then order="gst-rtsp-server streamgate"; else order="streamgate gst-rtsp-server"; fi
            echo "== rtsppeer$n, run $rep: $n RTSP players (TCP, then UDP): $order ($(elapsed))"
            fresh off streamgate:1
            start_rtsp_peer
            for server in $order; do
                if [ "$server" = streamgate ]; then url=$SG_RTSP_URL; else url=$GP_URL; fi
                measure "rtsppeer$n" "$server" "$url" "$n" "$rep"
                measure "rtspudppeer$n" "$server" "$url" "$n" "$rep" --rtsp-transport udp
            done
            stop_rtsp_peer
            if [ -n "$SRS_SRT" ]; then
                if [ $((rep % 2)) = 1 ]; then order="srs-srt streamgate"; else order="streamgate srs-srt"; fi
                echo "== srtpeer$n, run $rep: $n SRT players, sources published over SRT: $order ($(elapsed))"
                fresh off streamgate:1:srt srs-srt
                wait_keyframe "$SG_SRT_URL"
                wait_keyframe "${SRS_SRT_URL[srs-srt]}"
                for server in $order; do
                    if [ "$server" = streamgate ]; then url=$SG_SRT_URL; else url=${SRS_SRT_URL[srs-srt]}; fi
                    measure "srtpeer$n" "$server" "$url" "$n" "$rep"
                done
            fi
        done
    done
    [ -n "$SRS_SRT" ] || echo "== srtpeer: not run (needs SRS_BIN, an SRS built with --srt=on)"
fi

# --- profile (optional) ---
if [ "$PROFILE" = perf ]; then
    echo "== profile: perf record -e cpu-clock on streamgate during a $PLAYERS-player RTMP window ($(elapsed))"
    fresh off streamgate:1
    span=$(python3 -c "print(round(($PLAYERS - 1) / $RAMP, 3))")
    timeout 120 "$LOAD" --url "$SG_URL" --players "$PLAYERS" --ramp "$RAMP" --duration "$((SETTLE + WINDOW + 1))" \
        --json >"$tmp/load.json" 2>&1 &
    tp=$!
    sleep "$(python3 -c "print($span + $SETTLE)")"
    perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$SG_PID" -o "$tmp/perf.data" -- sleep "$WINDOW" \
        >/dev/null 2>&1 || true
    wait "$tp" || true
    report() { # sort keys, lines
        { perf report -i "$tmp/perf.data" --stdio --no-children -g none --sort "$1" 2>/dev/null || true; } \
            | grep -v '^#' | grep -v '^$' | sed 's/[ -]*$//' | head -"$2" || true
    }
    echo "-- load tool: $(grep -o '"playing":[0-9]*' "$tmp/load.json" || true) players"
    echo "-- by thread"
    report comm 6
    echo "-- by shared object"
    report dso 6
    echo "-- top symbols (self time, all threads of streamgate)"
    report symbol 40
    echo "-- inclusive time (self + callees) of streamgate's, actix's and tokio's functions and the write path"
    { perf report -i "$tmp/perf.data" --stdio --children -g none --sort symbol --percent-limit 1.5 2>/dev/null || true; } \
        | grep -v '^#' | grep -v '^$' | sed 's/[ -]*$//' \
        | grep -E 'streamgate|actix::|tokio::sync|tokio::time|writev|sendmsg|malloc|free|memmove|softirq' \
        | grep -vE 'inlined|catch_unwind|call_once|__rust_begin_short_backtrace' | head -40 || true
elif [ "$PROFILE" = callgrind ]; then
    echo "== profile: callgrind on streamgate, $PROFILE_PLAYERS RTMP players, 10 s ($(elapsed))"
    [ -n "$SG_PID" ] && stop_streamgate
    [ -n "$NG_PID" ] && stop_nginx
    SG_RTMP=$(free_port)
    SG_FLV=$(free_port)
    printf '<config><data_dir>%s</data_dir><workers>1</workers><log_level>warn</log_level><rtmp><enable>true</enable><port>%s</port></rtmp><httpflv><enable>true</enable><port>%s</port></httpflv></config>\n' \
        "$tmp/data-cg" "$SG_RTMP" "$SG_FLV" >"$tmp/streamgate-cg.xml"
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$tmp/callgrind.out" \
        "$BIN" --config "$tmp/streamgate-cg.xml" \
        >>"$tmp/streamgate.log" 2>&1 &
    SG_PID=$!
    pids+=("$SG_PID")
    for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$SG_RTMP") 2>/dev/null && break; sleep 0.1; done
    SG_URL="rtmp://127.0.0.1:$SG_RTMP/live/bench"
    publish "$SG_URL"
    SG_FF=$PUB_PID
    wait_live "$SG_URL"
    sleep 3
    # Count only the players' run: not the start-up (the TLS roots for https hooks, ...).
    callgrind_control -i on "$SG_PID" >/dev/null 2>&1 || true
    timeout 120 "$LOAD" --url "$SG_URL" --players "$PROFILE_PLAYERS" --ramp 20 --duration 10 >"$tmp/load-cg.txt" 2>&1 || true
    cat "$tmp/load-cg.txt"
    stop_pids "$SG_FF"
    kill -INT "$SG_PID" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$SG_PID" 2>/dev/null || break; sleep 0.1; done
    stop_pids "$SG_PID"
    SG_PID="" SG_FF=""
    echo "-- top functions by instructions (exclusive), user space only, from the players' start to the end"
    { callgrind_annotate --inclusive=no "$tmp"/callgrind.out* 2>/dev/null || true; } \
        | sed -e 's|/root/.cargo/registry/src/[^/]*/||' -e 's|/rustc/[0-9a-f]*/library/||' -e 's| \[[^]]*\]$||' \
        | grep -E '^ *[0-9,]+ \(' | head -35 | cut -c1-200 || true
fi

echo "== done in $(elapsed)"
if [ -s "$results" ]; then
    echo "== summary"
    echo
    python3 "$BENCH/compare_report.py" summary "$results"
fi

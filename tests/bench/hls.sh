#!/usr/bin/env bash
# What HLS delivery costs: VIEWERS (1000) HLS viewers of one 2 Mbit/s stream from one
# streamgate, Low-Latency HLS (blocking reloads, every part) and plain HLS (a reload about
# every target duration, every segment), against HTTP-FLV players of the same stream from the
# same server, and plain HLS from nginx-rtmp (and SRS when SRS_BIN names its binary) with the
# same viewers, side by side. Each case is a window of WINDOW seconds in which the load tool
# (streamgate-load, its HLS players) counts delivered media and sample_procs.py reads the
# server's CPU time and RSS: CPU seconds per delivered Gbit/s and RSS per viewer, medians of
# REPEAT runs, as a Markdown table (tests/bench/hls_report.py). See docs/benchmarks.md, "HLS".
#
#   bash tests/bench/hls.sh
#   SRS_BIN=/path/to/srs/trunk/objs/srs bash tests/bench/hls.sh    # with SRS's HLS beside them
#
# Every run starts fresh servers, all at once, each with its own ffmpeg publisher of the same
# source (`-re -c copy` over RTMP): streamgate with <low_latency>true</low_latency> (its HLS
# and HTTP-FLV cases, one after the other on the same server), streamgate with
# <low_latency>false</low_latency> (plain HLS), nginx-rtmp (`hls on`, the files served by the
# same nginx's http server) and SRS (`hls` with `hls_ctx`, served by its http_server). All
# with 2 s segments (the source's GOP), 7 kept (14 s), one worker or thread each
# (<workers>1</workers>, worker_processes 1, SRS's one thread). The cases of a run go in an
# order that alternates between runs, so no server always goes first. streamgate packages a
# stream for HLS from its first viewer on: one extra viewer per streamgate keeps the packager
# running from the start, as nginx-rtmp and SRS segment from the publish on; the cases start
# when every server lists at least 4 segments.
#
# Knobs (environment): VIEWERS (1000), REPEAT (3), RAMP viewers/s (500), SETTLE seconds
# between the last viewer's start and the window (5: plain HLS viewers start with three
# segments each), WINDOW seconds (10), CASES (space-separated subset of
# "ll flv plain nginx srs", all by default; srs needs SRS_BIN), SKIP_BUILD=1, KEEP=1 (keep the
# temp dir with the raw results and logs), PROFILE=perf (then also: perf's cpu-clock samples of
# streamgate during a VIEWERS-viewer Low-Latency window, its top symbols; CASES=none for the
# profile alone), PROFILE=callgrind (then also: instructions streamgate executes, counted by
# callgrind, while PROFILE_VIEWERS (20) LL-HLS viewers play for WINDOW s: in all, per request,
# and in the playlist and request functions), STREAMGATE_BIN (the streamgate binary to measure,
# target/release/streamgate by default: two builds compared with the same command). Needs cargo, ffmpeg (libx264, aac), nginx with
# libnginx-mod-rtmp (installed with apt-get when missing, as compare.sh does), python3, curl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BENCH=tests/bench
. "$BENCH/lib.sh"

VIEWERS=${VIEWERS:-1000}
REPEAT=${REPEAT:-3}
RAMP=${RAMP:-500}
SETTLE=${SETTLE:-5}
WINDOW=${WINDOW:-10}
CASES=${CASES:-ll flv plain nginx srs}
T_START=$(date +%s)
elapsed() { echo "$(( $(date +%s) - T_START )) s"; }
has_case() { [[ " $CASES " == *" $1 "* ]]; }
if has_case srs && [ -z "${SRS_BIN:-}" ]; then CASES=${CASES//srs/}; fi

if has_case nginx && { ! command -v nginx >/dev/null 2>&1 || [ ! -e /usr/lib/nginx/modules/ngx_rtmp_module.so ]; }; then
    echo "== installing nginx and libnginx-mod-rtmp"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get -o DPkg::Lock::Timeout=300 update -qq
    timeout 600 apt-get -o DPkg::Lock::Timeout=300 install -y -qq nginx libnginx-mod-rtmp >/dev/null
fi
for tool in cargo ffmpeg python3 curl timeout getconf; do
    command -v "$tool" >/dev/null 2>&1 || { echo "hls.sh: $tool is required" >&2; exit 2; }
done

bench_tmp hls
results="$tmp/results.jsonl"
: >"$results"
# 1000 viewers: a connection each on every server, and the tool's side of them.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== machine"
echo "nproc: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo); kernel: $(uname -r)"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "streamgate: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src actors tools 2>/dev/null || echo ' + uncommitted changes')"
if has_case nginx; then echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //'), libnginx-mod-rtmp $(dpkg-query -W -f='${Version}' libnginx-mod-rtmp 2>/dev/null || echo '?')"; fi
if [ -n "${SRS_BIN:-}" ] && has_case srs; then
    [ -x "$SRS_BIN" ] || { echo "hls.sh: SRS_BIN=$SRS_BIN is not an executable" >&2; exit 2; }
    echo "srs: $("$SRS_BIN" -v 2>&1 | tail -n1)"
fi
echo "open files: $(ulimit -n)"

if [ "${SKIP_BUILD:-0}" = 1 ]; then
    echo "== build skipped (SKIP_BUILD=1): using the binaries in target/release"
else
    echo "== build (cargo build --release -p streamgate -p streamgate-load)"
    timeout 1800 cargo build --release -p streamgate -p streamgate-load --quiet
fi
BIN=${STREAMGATE_BIN:-target/release/streamgate}
LOAD=target/release/streamgate-load
[ -x "$BIN" ] && [ -x "$LOAD" ] || { echo "hls.sh: no release binaries" >&2; exit 1; }

bench_source 50

# Stops the given processes (TERM, then KILL after 5 s).
stop() {
    local p
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "$@"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}

# VmRSS of PID, or of PID and its children for +PID (nginx: master and worker), in KiB.
rss_kib() {
    local pid=${1#+} p sum=0 v list
    list=("$pid")
    [ "$1" != "$pid" ] && list+=($(cat "/proc/$pid/task/$pid/children" 2>/dev/null || true))
    for p in "${list[@]}"; do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# The servers of one run: NAME -> pid (for the sampler), play URL(s), and what else to stop.
declare -A SPID URL
RUN_PIDS=()
# A wrapper for streamgate (valgrind for PROFILE=callgrind), and how many 10 s waits its start
# may take.
WRAP=()
WAIT_ROUNDS=1

start_streamgate() { # name, low_latency (true|false)
    local name=$1 ll=$2 rtmp flv hls conf="$tmp/$1.xml"
    rtmp=$(free_port) flv=$(free_port) hls=$(free_port)
    cat >"$conf" <<EOF
<config>
  <data_dir>$tmp/data-$name</data_dir>
  <workers>1</workers>
  <log_level>warn</log_level>
  <api><enable>false</enable></api>
  <rtmp><enable>true</enable><port>$rtmp</port></rtmp>
  <httpflv><enable>true</enable><port>$flv</port></httpflv>
  <hls>
    <enable>true</enable>
    <port>$hls</port>
    <segment_duration_ms>2000</segment_duration_ms>
    <part_duration_ms>200</part_duration_ms>
    <segment_count>7</segment_count>
    <low_latency>$ll</low_latency>
    <idle_timeout_ms>5000</idle_timeout_ms>
    <max_connections>100000</max_connections>
  </hls>
</config>
EOF
    "${WRAP[@]}" "$BIN" --config "$conf" >>"$tmp/$name.log" 2>&1 &
    SPID[$name]=$!
    pids+=("$!") RUN_PIDS+=("$!")
    # Under valgrind the start takes longer.
    for _ in $(seq "$WAIT_ROUNDS"); do wait_port "$rtmp" "${SPID[$name]}" && break; done
    wait_port "$rtmp" "${SPID[$name]}" && wait_port "$hls" "${SPID[$name]}" || {
        echo "$name did not start" >&2; tail -20 "$tmp/$name.log" >&2; exit 1; }
    publish_source "$rtmp"
    RUN_PIDS+=("$PUB_PID")
    URL[$name]="http://127.0.0.1:$hls/live/bench/index.m3u8"
    URL[$name-flv]="http://127.0.0.1:$flv/live/bench.flv"
    URL[$name-rtmp]="rtmp://127.0.0.1:$rtmp/live/bench"
}

start_nginx() {
    local p="$tmp/nginx" rtmp http
    rtmp=$(free_port) http=$(free_port)
    mkdir -p "$p/logs" "$p/hls"
    cat >"$p/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
user root root;
pid $p/nginx.pid;
error_log $p/logs/error.log warn;
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
rtmp {
    server {
        listen 127.0.0.1:$rtmp;
        chunk_size 4096;
        application live {
            live on;
            hls on;
            hls_path $p/hls;
            hls_fragment 2s;
            hls_playlist_length 14s;
        }
    }
}
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 65s;
    client_body_temp_path $p/body;
    proxy_temp_path $p/proxy;
    fastcgi_temp_path $p/fastcgi;
    uwsgi_temp_path $p/uwsgi;
    scgi_temp_path $p/scgi;
    types {
        application/vnd.apple.mpegurl m3u8;
        video/mp2t ts;
    }
    server {
        listen 127.0.0.1:$http backlog=4096;
        location /hls/ {
            root $p;
            add_header Cache-Control no-cache;
        }
    }
}
EOF
    nginx -p "$p" -c "$p/nginx.conf" -e "$p/logs/error.log" >>"$tmp/nginx.out" 2>&1 &
    SPID[nginx]="+$!"
    pids+=("$!") RUN_PIDS+=("$!")
    wait_port "$rtmp" "${SPID[nginx]#+}" && wait_port "$http" "${SPID[nginx]#+}" || {
        echo "nginx did not start" >&2; cat "$tmp/nginx.out" "$p/logs/error.log" >&2; exit 1; }
    publish_source "$rtmp"
    RUN_PIDS+=("$PUB_PID")
    URL[nginx]="http://127.0.0.1:$http/hls/bench.m3u8"
}

start_srs() {
    local p="$tmp/srs" rtmp http
    rtmp=$(free_port) http=$(free_port)
    mkdir -p "$p/html"
    cat >"$p/srs.conf" <<EOF
listen $rtmp;
max_connections 4000;
daemon off;
pid $p/srs.pid;
srs_log_tank file;
srs_log_file $p/srs.log;
srs_log_level warn;
http_api { enabled off; }
http_server { enabled on; listen $http; dir $p/html; }
vhost __defaultVhost__ {
    hls {
        enabled on;
        hls_fragment 2;
        hls_window 14;
        hls_path $p/html;
        hls_m3u8_file [app]/[stream].m3u8;
        hls_ts_file [app]/[stream]-[seq].ts;
    }
}
EOF
    (cd "$p" && exec "$SRS_BIN" -c "$p/srs.conf") >>"$p/srs.out" 2>&1 &
    SPID[srs]=$!
    pids+=("$!") RUN_PIDS+=("$!")
    wait_port "$rtmp" "${SPID[srs]}" && wait_port "$http" "${SPID[srs]}" || {
        echo "srs did not start" >&2; tail -n 20 "$p/srs.out" "$p/srs.log" >&2; exit 1; }
    publish_source "$rtmp"
    RUN_PIDS+=("$PUB_PID")
    URL[srs]="http://127.0.0.1:$http/live/bench.m3u8"
}

# How many segments the media playlist behind URL lists (a multivariant playlist's first
# variant is followed).
segments_listed() { # url
    local body base uri
    body=$(curl -s -m 5 "$1" || true)
    uri=$(printf '%s\n' "$body" | grep -m1 -v '^#' | tr -d '\r' || true)
    if printf '%s\n' "$body" | grep -q '^#EXT-X-STREAM-INF' && [ -n "$uri" ]; then
        base=${1%%\?*}
        case $uri in
            http*) ;;
            /*) uri="${1%%/live/*}$uri" ;;
            *) uri="${base%/*}/$uri" ;;
        esac
        body=$(curl -s -m 5 "$uri" || true)
    fi
    printf '%s\n' "$body" | grep -c '^#EXTINF' || true
}

# Starts the run's servers and waits until each lists at least 4 segments.
fresh() {
    if [ "${#RUN_PIDS[@]}" -gt 0 ]; then stop "${RUN_PIDS[@]}"; fi
    RUN_PIDS=()
    local s n
    if has_case ll || has_case flv; then start_streamgate sg-ll true; fi
    if has_case plain; then start_streamgate sg-plain false; fi
    if has_case nginx; then start_nginx; fi
    if has_case srs; then start_srs; fi
    for s in sg-ll sg-plain; do
        [ -n "${URL[$s]:-}" ] && [ -n "${SPID[$s]:-}" ] && kill -0 "${SPID[$s]}" 2>/dev/null || continue
        # The packager's keeper: one plain viewer for the whole run.
        "$LOAD" --url "${URL[$s]}" --hls-mode plain --players 1 --duration 3600 --start-timeout 30 \
            >/dev/null 2>>"$tmp/keeper.err" &
        RUN_PIDS+=("$!")
        pids+=("$!")
    done
    for s in sg-ll sg-plain nginx srs; do
        [ -n "${SPID[$s]:-}" ] && kill -0 "${SPID[$s]#+}" 2>/dev/null || continue
        for _ in $(seq 60); do
            n=$(segments_listed "${URL[$s]}")
            [ "${n:-0}" -ge 4 ] && break
            sleep 1
        done
        [ "${n:-0}" -ge 4 ] || { echo "$s lists $n segments after 60 s" >&2; tail -5 "$tmp/ffmpeg.log" >&2; exit 1; }
    done
}

# One case: VIEWERS players at RAMP/s, SETTLE s, a WINDOW s window.
measure() { # case, server name (for the report), pid, url, load tool options...
    local case=$1 server=$2 spid=$3 url=$4 idle span wstart dur tp sp
    shift 4
    idle=$(rss_kib "$spid")
    span=$(python3 -c "print(round(($VIEWERS - 1) / $RAMP, 3))")
    wstart=$(python3 -c "print($span + $SETTLE)")
    dur=$(python3 -c "print($SETTLE + $WINDOW + 0.5)")
    timeout $((VIEWERS / RAMP + SETTLE + WINDOW + 60)) "$LOAD" --url "$url" "$@" --players "$VIEWERS" \
        --ramp "$RAMP" --duration "$dur" --start-timeout 10 --window-start "$wstart" --window "$WINDOW" \
        --json >"$tmp/load.json" 2>"$tmp/load.err" &
    tp=$!
    python3 "$BENCH/sample_procs.py" "$wstart" "$WINDOW" server="$spid" tool="+$tp" >"$tmp/sample.json" &
    sp=$!
    wait "$tp" || true
    wait "$sp" || true
    python3 "$BENCH/hls_report.py" record "$results" case="$case" server="$server" rep="$rep" \
        viewers="$VIEWERS" idle_rss_kib="$idle" load="$tmp/load.json" sample="$tmp/sample.json"
    # The viewers' sessions end (<idle_timeout_ms> 5000: over a target duration, which a
    # plain viewer may wait between two requests) before the next case.
    sleep 7
}

run_case() { # case
    case $1 in
        ll) measure ll streamgate "${SPID[sg-ll]}" "${URL[sg-ll]}" --hls-mode ll ;;
        flv) measure flv streamgate "${SPID[sg-ll]}" "${URL[sg-ll-flv]}" ;;
        plain) measure plain streamgate "${SPID[sg-plain]}" "${URL[sg-plain]}" --hls-mode plain ;;
        nginx) measure plain nginx-rtmp "${SPID[nginx]}" "${URL[nginx]}" --hls-mode plain ;;
        srs) measure plain srs "${SPID[srs]}" "${URL[srs]}" --hls-mode plain ;;
    esac
}

for rep in $(seq "$REPEAT"); do
    echo "== run $rep of $REPEAT: $VIEWERS viewers per case at $RAMP/s, window $WINDOW s ($(elapsed))"
    fresh
    order=(ll flv plain nginx srs)
    if [ $((rep % 2)) = 0 ]; then order=(srs nginx plain flv ll); fi
    for c in "${order[@]}"; do
        if has_case "$c"; then run_case "$c"; fi
    done
done
if [ "${#RUN_PIDS[@]}" -gt 0 ]; then stop "${RUN_PIDS[@]}"; fi
RUN_PIDS=()

if [ "${PROFILE:-}" = perf ]; then
    command -v perf >/dev/null 2>&1 ||
        timeout 600 apt-get -o DPkg::Lock::Timeout=300 install -y -qq linux-perf >/dev/null
    echo "== profile: perf record -e cpu-clock on streamgate during a $VIEWERS-viewer LL-HLS window ($(elapsed))"
    CASES="ll" fresh
    span=$(python3 -c "print(round(($VIEWERS - 1) / $RAMP, 3))")
    timeout 120 "$LOAD" --url "${URL[sg-ll]}" --players "$VIEWERS" --ramp "$RAMP" \
        --duration "$((SETTLE + WINDOW + 1))" --json >"$tmp/load-perf.json" 2>&1 &
    tp=$!
    sleep "$(python3 -c "print($span + $SETTLE)")"
    perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -p "${SPID[sg-ll]}" -o "$tmp/perf.data" -- sleep "$WINDOW" \
        >/dev/null 2>&1 || true
    wait "$tp" || true
    stop "${RUN_PIDS[@]}"
    RUN_PIDS=()
    echo "-- load tool: $(grep -o '"playing":[0-9]*' "$tmp/load-perf.json" || true) viewers"
    echo "-- top symbols (self time, all threads of streamgate)"
    { perf report -i "$tmp/perf.data" --stdio --no-children -g none --sort symbol 2>/dev/null || true; } |
        grep -v '^#' | grep -v '^$' | sed 's/[ -]*$//' | head -40 || true
    echo "-- inclusive time (self + callees), streamgate's functions"
    { perf report -i "$tmp/perf.data" --stdio --children -g none --sort symbol --percent-limit 1 2>/dev/null || true; } |
        grep -v '^#' | grep -v '^$' | sed 's/[ -]*$//' | grep -E 'streamgate|actix_http|actix_web|sha|hmac|ring' | head -40 || true
fi

if [ "${PROFILE:-}" = callgrind ]; then
    command -v valgrind >/dev/null 2>&1 ||
        timeout 600 apt-get -o DPkg::Lock::Timeout=300 install -y -qq valgrind >/dev/null
    PROFILE_VIEWERS=${PROFILE_VIEWERS:-20}
    echo "== profile: callgrind on $BIN, $PROFILE_VIEWERS LL-HLS viewers for $WINDOW s ($(elapsed))"
    WRAP=(valgrind --tool=callgrind --instr-atstart=no "--callgrind-out-file=$tmp/callgrind.out")
    WAIT_ROUNDS=12
    CASES="ll" fresh
    sleep 3
    callgrind_control -i on "${SPID[sg-ll]}" >/dev/null 2>&1 || true
    timeout 120 "$LOAD" --url "${URL[sg-ll]}" --players "$PROFILE_VIEWERS" --ramp "$PROFILE_VIEWERS" \
        --duration "$WINDOW" --start-timeout 30 --json >"$tmp/load-cg.json" 2>&1 || true
    callgrind_control -i off "${SPID[sg-ll]}" >/dev/null 2>&1 || true
    kill -INT "${SPID[sg-ll]}" 2>/dev/null || true
    for _ in $(seq 600); do kill -0 "${SPID[sg-ll]}" 2>/dev/null || break; sleep 0.1; done
    stop "${RUN_PIDS[@]}"
    RUN_PIDS=() WRAP=() WAIT_ROUNDS=1
    python3 - "$tmp/load-cg.json" "$tmp"/callgrind.out* <<'PY'
import json, re, subprocess, sys
load = next(json.loads(l) for l in open(sys.argv[1]) if l.startswith("{"))
h = load.get("hls") or {}
req, pls = h.get("requests", 0), h.get("playlists", 0)
out = subprocess.run(["callgrind_annotate", "--inclusive=yes", *sys.argv[2:]], capture_output=True, text=True).stdout
total = 0
m = re.search(r"^([0-9,]+) \(100.0%\)\s+PROGRAM TOTALS", out, re.M)
if m:
    total = int(m.group(1).replace(",", ""))
print(f"-- {load.get('playing')} viewers playing, {load.get('errors')} errors, {req} requests ({pls} playlists, {h.get('parts', 0)} parts), {load.get('media_bytes', 0) / 1e6:.1f} MB of media")
print(f"-- instructions while they played: {total / 1e6:.1f} M in all, {total / max(req, 1) / 1e3:.1f} k per request")
def incl(pattern):
    best = 0
    for line in out.splitlines():
        mm = re.match(r"^\s*([0-9,]+) \(\s*[0-9.]+%\)\s+(\S.*)$", line)
        if mm and re.search(pattern, mm.group(2)):
            best = max(best, int(mm.group(1).replace(",", "")))
    return best
for name, pattern in [("serve::handle (every request)", r"serve::handle::\{\{closure\}\}"),
                      ("media_playlist (rendering)", r"playlist::media_playlist[^:]*$|playlist::media_playlist \["),
                      ("PlaylistCache::media", r"PlaylistCache::media")]:
    v = incl(pattern)
    print(f"-- inclusive {name}: {v / 1e6:.1f} M, {v / max(pls, 1) / 1e3:.1f} k per playlist request")
PY
fi

echo "== done in $(elapsed)"
if [ -s "$results" ]; then
    echo
    python3 "$BENCH/hls_report.py" summary "$results"
fi

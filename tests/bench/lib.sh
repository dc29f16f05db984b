# Helpers the benchmark scripts share; sourced, not run.

# Makes $tmp, a fresh directory named after the benchmark, and an empty $pids; on exit (or
# INT/TERM) every process in $pids is killed and $tmp removed (kept with KEEP=1), with the
# script's exit code.
bench_tmp() { # name
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/streamgate-$1.XXXXXX")
    pids=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    [ "${KEEP:-0}" = 1 ] || rm -rf "$tmp"
    exit "$rc"
}

# Writes 60 s of 1280x720 25 fps H.264 at 2 Mbit/s (a keyframe every GOP frames, 50 by
# default) + AAC 64 kbit/s to $tmp/source.flv, the stream the benchmarks publish.
bench_source() { # [gop]
    local gop=${1:-50}
    echo "== source: 60 s of 1280x720 25 fps H.264 at 2 Mbit/s (GOP $gop frames) + AAC, FLV"
    ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=1280x720:rate=25 \
        -f lavfi -i sine=frequency=440:sample_rate=44100 -t 60 -c:v libx264 -preset veryfast \
        -b:v 2M -maxrate 2M -bufsize 2M -g "$gop" -keyint_min "$gop" -sc_threshold 0 \
        -pix_fmt yuv420p -c:a aac -b:a 64k -f flv "$tmp/source.flv"
}

# Publishes $tmp/source.flv in a loop, in real time (-c copy), to
# rtmp://127.0.0.1:PORT/live/bench; PUB_PID is its pid (also in $pids).
publish_source() { # port
    ffmpeg -hide_banner -nostdin -loglevel error -re -stream_loop -1 -i "$tmp/source.flv" \
        -c copy -f flv "rtmp://127.0.0.1:$1/live/bench" >>"$tmp/ffmpeg.log" 2>&1 &
    PUB_PID=$!
    pids+=("$PUB_PID")
}

# CPU seconds (user + system) process PID used so far.
cpu() { # pid
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f\n", ($14 + $15) / hz }' "/proc/$1/stat"
}

# Bytes the server with its API on PORT has written to clients of PROTOCOL (rtmp) so far.
sent() { # api port, [protocol]
    curl -s "http://127.0.0.1:$1/metrics" |
        awk -v p="${2:-rtmp}" '$1 == "streamgate_sent_bytes_total{protocol=\"" p "\"}" { print $2 }'
}

# Sessions of ROLES (an awk pattern on the role label) the server with its API on PORT has.
sessions() { # api port, roles
    curl -s "http://127.0.0.1:$1/metrics" |
        awk -v r="$2" '/^streamgate_sessions\{/ && $0 ~ r { s += $2 } END { print s + 0 }'
}

# The median of the numbers given.
median() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}

# A loopback TCP port nobody listens on right now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until something listens on 127.0.0.1:PORT, up to TRIES × 50 ms (200: 10 s); fails at
# once when PID, the process that should listen, is gone.
wait_port() { # port, pid, [tries]
    for _ in $(seq "${3:-200}"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# Writes PREFIX/nginx.conf for a hook server: one nginx worker answering `return 200` on
# 127.0.0.1:PORT with HTTP/1.1 keep-alive, and its stub_status at /_stats.
write_hook_nginx_conf() { # prefix, port
    mkdir -p "$1/logs"
    cat >"$1/nginx.conf" <<EOF2
worker_processes 1;
daemon off;
error_log $1/logs/error.log warn;
pid $1/nginx.pid;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path $1/body;
    server {
        listen 127.0.0.1:$2 backlog=4096;
        location = /_stats { stub_status; }
        location / { return 200; }
    }
}
EOF2
}

# The config of a one-worker server with every output protocol on (HLS off), written as
# one_worker_config does; its ports are $port (RTMP), $api, $flv, $rtsp and $srt.
all_outputs_config() {
    port=$(free_port); api=$(free_port); flv=$(free_port); rtsp=$(free_port); srt=$(free_port)
    one_worker_config "$port" "$api" "" \
        "<httpflv><enable>true</enable><port>$flv</port></httpflv><rtsp><enable>true</enable><port>$rtsp</port></rtsp><srt><enable>true</enable><port>$srt</port></srt><hls><enable>false</enable></hls>"
}

# What the load tool plays for output protocol PROTO (rtmp, httpflv, rtsp, rtsp-udp or srt)
# from the server of all_outputs_config: sets $url, $extra (its further options) and $label
# (the protocol in the server's metrics); fails on another name.
player_target() { # proto
    extra=()
    label=$1
    case $1 in
        rtmp) url="rtmp://127.0.0.1:$port/live/bench" ;;
        httpflv) url="http://127.0.0.1:$flv/live/bench.flv" ;;
        rtsp) url="rtsp://127.0.0.1:$rtsp/live/bench" ;;
        rtsp-udp) url="rtsp://127.0.0.1:$rtsp/live/bench"; extra=(--rtsp-transport udp); label=rtsp ;;
        srt) url="srt://127.0.0.1:$srt?streamid=#!::r=live/bench,m=request" ;;
        *) echo "PROTO: rtmp, httpflv, rtsp, rtsp-udp or srt" >&2; return 1 ;;
    esac
}

# The config of a one-worker server, written to $tmp/streamgate.xml: RTMP on port $1 and the
# API on $2, log level LEVEL (warn), data in $tmp/data; $3 goes inside <rtmp> (a merge window,
# hooks); HTTP-FLV, RTSP, SRT and HLS are off unless $4 gives their sections instead; $5
# workers instead of one when given.
one_worker_config() {
    local off="<httpflv><enable>false</enable></httpflv><rtsp><enable>false</enable></rtsp><srt><enable>false</enable></srt><hls><enable>false</enable></hls>"
    echo "<config><workers>${5:-1}</workers><log_level>${LEVEL:-warn}</log_level><data_dir>$tmp/data</data_dir><api><port>$2</port></api><rtmp><port>$1</port>${3:-}</rtmp>${4:-$off}</config>" >"$tmp/streamgate.xml"
}

# Closes a callgrind window of the process PID (run under valgrind with
# --callgrind-out-file=$tmp/cg.out --separate-threads=yes): asks for dump N, which callgrind
# writes as one file per thread, and prints its total instructions.
callgrind_dump() { # pid, n
    callgrind_control -d "$1" >/dev/null 2>&1
    for _ in $(seq 100); do
        ls "$tmp"/cg.out."$2"-* >/dev/null 2>&1 && break
        sleep 0.2
    done
    sleep 1
    cat "$tmp"/cg.out."$2"-* | awk '/^totals:/ { s += $2 } END { print s + 0 }'
}

# Starts SRS ($SRS_BIN) on PORT in the foreground of a background job, its log in $tmp at
# LEVEL (SRS's default: trace), with `gop_cache on` and PLAY (more of the vhost's `play`
# section: a merge window); sets $server.
srs_server() { # port, [play], [level]
    cat >"$tmp/srs.conf" <<EOC
listen $1;
daemon off;
max_connections 4000;
srs_log_tank file;
srs_log_file $tmp/srs.log;
srs_log_level ${3:-trace};
pid $tmp/srs.pid;
vhost __defaultVhost__ { play { gop_cache on; ${2:-} } }
EOC
    "${SRS_BIN:?SRS_BIN names the SRS binary}" -c "$tmp/srs.conf" >>"$tmp/srs.out" 2>&1 &
    server=$!
}

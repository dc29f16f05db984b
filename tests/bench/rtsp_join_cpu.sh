#!/usr/bin/env bash
# What pacing RTSP players' start costs the server: BINARY serves PLAYERS RTSP players (the load
# tool's, over TCP) of a 1 Mbit/s 640x360 stream with a 2 s GOP, joining 1 s after a live
# keyframe (so each is paced for a second of cached media), for 20 s. Prints the server's CPU
# seconds over the players' run, its peak RSS and the load tool's first-keyframe line.
#
#   bash tests/bench/rtsp_join_cpu.sh BINARY [PLAYERS]
#
# Run it alternately with two binaries to compare (docs/benchmarks.md, "RTSP players joining
# mid-GOP"). Needs target/release/streamgate-load and ffmpeg.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. tests/bench/lib.sh
BIN=${1:?usage: tests/bench/rtsp_join_cpu.sh BINARY [PLAYERS]}
PLAYERS=${2:-200}
rtmp_port=$(free_port)
rtsp_port=$(free_port)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/streamgate-rtspcpu.XXXXXX")
cat >"$tmp/config.xml" <<XML
<config><data_dir>$tmp/data</data_dir><rtmp><port>$rtmp_port</port></rtmp>
<rtsp><enable>true</enable><port>$rtsp_port</port></rtsp></config>
XML
"$BIN" --config "$tmp/config.xml" >"$tmp/server.log" 2>&1 &
srv=$!
trap 'kill $srv ${pub:-} 2>/dev/null || true; rm -rf "$tmp"' EXIT
sleep 1
ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc=size=640x360:rate=25 \
    -f lavfi -i sine=sample_rate=44100 -c:v libx264 -preset ultrafast -b:v 1M -g 50 \
    -pix_fmt yuv420p -c:a aac -t 60 -f flv "rtmp://127.0.0.1:$rtmp_port/live/cpu" 2>"$tmp/publisher.log" &
pub=$!
sleep 3
ticks() { awk '{print $14 + $15}' "/proc/$srv/stat"; }
t0=$(ticks)
target/release/streamgate-load --url "rtsp://127.0.0.1:$rtsp_port/live/cpu" \
    --players "$PLAYERS" --duration 20 --after-keyframe 1000 >"$tmp/load.out" 2>&1
t1=$(ticks)
hz=$(getconf CLK_TCK)
peak=$(awk '/VmHWM/ {print $2}' "/proc/$srv/status")
echo "cpu_s=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz}') peak_rss_kb=$peak"
grep -E 'first keyframe|errors' "$tmp/load.out" || true

#!/usr/bin/env bash
# HLS glass-to-glass latency with hls.js in Debian's Chromium (headless) on loopback, for
# Low-Latency HLS (<low_latency>true</low_latency>, 200 ms parts) and plain HLS
# (<low_latency>false</low_latency>), both with 1 s segments (a keyframe a second).
#
# ffmpeg publishes a live 640x360 25 fps H.264 + AAC stream over RTMP (x264 ultrafast,
# zerolatency). The server writes EXT-X-PROGRAM-DATE-TIME tied to the wall clock at which
# the frames arrived; hls.js's `playingDate` is the program date time of the frame on screen,
# so `Date.now() - playingDate` in the page is the time from a frame reaching the server to
# it being shown (capture and encoding before it, a few ms with zerolatency on loopback,
# are not in it). The page (tests/browser/hls_player.html) reports it every 250 ms; hls.js's
# own `hls.latency` (playhead to the playlist's live edge) is reported next to it.
#
# Each case runs REPEAT browsers one after another; each plays WARMUP seconds, then its
# reports over SAMPLE seconds give one median. The table shows the median of those medians
# and their range.
#
#   bash tests/bench/hls_latency.sh
#
# Knobs (environment): REPEAT (3), WARMUP seconds (8), SAMPLE seconds (15), SEGMENT_MS
# (1000), PART_MS (200), BIN (the streamgate binary; default: built with cargo --release),
# SKIP_BUILD=1 to use target/release/streamgate as it is.
# Needs cargo, ffmpeg (libx264, aac), python3, chromium, and hls.js in
# tests/browser/node_modules (tests/run.sh installs it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

REPEAT=${REPEAT:-3}
WARMUP=${WARMUP:-8}
SAMPLE=${SAMPLE:-15}
SEGMENT_MS=${SEGMENT_MS:-1000}
PART_MS=${PART_MS:-200}

for tool in ffmpeg python3 chromium; do
    command -v "$tool" >/dev/null 2>&1 || { echo "hls_latency.sh: $tool is required" >&2; exit 2; }
done
[ -f tests/browser/node_modules/hls.js/dist/hls.js ] ||
    { echo "hls_latency.sh: hls.js is missing: (cd tests/browser && npm ci)" >&2; exit 2; }

# bench_tmp, free_port, wait_port
. tests/bench/lib.sh
bench_tmp hls-latency

if [ -z "${BIN:-}" ]; then
    [ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release --bin streamgate >&2
    BIN=target/release/streamgate
fi

# The page's server: tests/browser, /hls.js from node_modules, and every /report appended
# to the file named by $REPORTS as one JSON line.
cat >"$tmp/page.py" <<'EOF'
import json, os, sys, urllib.parse
from http.server import ThreadingHTTPServer, SimpleHTTPRequestHandler

ROOT = sys.argv[1]
REPORTS = sys.argv[2]

class Page(SimpleHTTPRequestHandler):
    def __init__(self, *a, **kw):
        super().__init__(*a, directory=ROOT, **kw)

    def log_message(self, *a):
        pass

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/report":
            fields = dict(urllib.parse.parse_qsl(url.query))
            with open(REPORTS, "a") as f:
                f.write(json.dumps(fields) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if url.path == "/hls.js":
            self.path = "/node_modules/hls.js/dist/hls.js"
        super().do_GET()

server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
print(server.server_address[1], flush=True)
server.serve_forever()
EOF

# The medians of one browser's reports after its warm-up: "pdt_ms latency_s".
cat >"$tmp/medians.py" <<'EOF'
import json, statistics, sys

warmup_ms, sample_ms = float(sys.argv[2]) * 1000, float(sys.argv[3]) * 1000
states = []
with open(sys.argv[1]) as f:
    for line in f:
        r = json.loads(line)
        if r.get("kind") == "state" and r.get("pdtLatencyMs") and float(r.get("currentTime", 0)) > 0:
            states.append(r)
if not states:
    print("nan nan")
    sys.exit(0)
first = float(states[0]["ms"])
window = [r for r in states if warmup_ms <= float(r["ms"]) - first < warmup_ms + sample_ms]
pdt = statistics.median(float(r["pdtLatencyMs"]) for r in window) if window else float("nan")
lat = [float(r["latency"]) for r in window if r.get("latency")]
print(f"{pdt:.0f} {statistics.median(lat) if lat else float('nan'):.3f}")
EOF

page_port_file="$tmp/page.port"
REPORTS="$tmp/reports.jsonl"
python3 "$tmp/page.py" tests/browser "$REPORTS" >"$page_port_file" 2>"$tmp/page.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$page_port_file" ] && break; sleep 0.05; done
page_port=$(head -n1 "$page_port_file")

echo "== machine"
echo "$(nproc) cores, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
chromium --version 2>/dev/null | head -n1
echo "hls.js $(python3 -c 'import json; print(json.load(open("tests/browser/node_modules/hls.js/package.json"))["version"])')"
echo

results=()
run_case() { # label, low_latency (true|false)
    local label=$1 ll=$2 rtmp_port hls_port api_port srv ff
    rtmp_port=$(free_port)
    hls_port=$(free_port)
    api_port=$(free_port)
    cat >"$tmp/$label.xml" <<EOF
<config>
  <data_dir>$tmp/data-$label</data_dir>
  <workers>1</workers>
  <log_level>warn</log_level>
  <api><port>$api_port</port></api>
  <rtmp><enable>true</enable><port>$rtmp_port</port></rtmp>
  <hls>
    <enable>true</enable>
    <port>$hls_port</port>
    <segment_duration_ms>$SEGMENT_MS</segment_duration_ms>
    <part_duration_ms>$PART_MS</part_duration_ms>
    <low_latency>$ll</low_latency>
  </hls>
</config>
EOF
    "$BIN" --config "$tmp/$label.xml" >"$tmp/server-$label.log" 2>&1 &
    srv=$!
    pids+=("$srv")
    wait_port "$rtmp_port" "$srv" && wait_port "$hls_port" "$srv" || {
        echo "streamgate did not start" >&2; cat "$tmp/server-$label.log" >&2; exit 1; }

    local seconds=$(( REPEAT * (WARMUP + SAMPLE + 15) + 30 ))
    timeout $((seconds + 30)) ffmpeg -hide_banner -nostdin -loglevel error -re \
        -f lavfi -i testsrc=size=640x360:rate=25 \
        -f lavfi -i sine=frequency=440:sample_rate=44100 \
        -c:v libx264 -preset ultrafast -tune zerolatency -g 25 -pix_fmt yuv420p \
        -c:a aac -b:a 64k -t "$seconds" \
        -f flv "rtmp://127.0.0.1:$rtmp_port/live/bench" >"$tmp/ffmpeg-$label.log" 2>&1 &
    ff=$!
    pids+=("$ff")
    local src="http://127.0.0.1:$hls_port/live/bench/index.m3u8" live=0
    for _ in $(seq 100); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "$src")" = 200 ]; then live=1; break; fi
        sleep 0.2
    done
    [ "$live" = 1 ] || { echo "the stream never went live" >&2; cat "$tmp/ffmpeg-$label.log" >&2; exit 1; }
    # A few segments in the window before the first browser.
    sleep 3

    local enc page medians=() lats=() i pdt lat
    enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$src")
    page="http://127.0.0.1:$page_port/hls_player.html?lowLatency=$ll&src=$enc"
    for i in $(seq "$REPEAT"); do
        : >"$REPORTS"
        mkdir -p "$tmp/profile-$label-$i"
        setsid chromium --headless --no-sandbox --disable-gpu --no-first-run \
            --disable-background-networking --disable-component-update --disable-sync \
            --autoplay-policy=no-user-gesture-required \
            --user-data-dir="$tmp/profile-$label-$i" "$page" >"$tmp/chromium-$label-$i.log" 2>&1 &
        local browser=$!
        # From the first frame shown: warm-up, then the sampling window.
        for _ in $(seq 300); do
            grep -q '"kind": "state".*"pdtLatencyMs"' "$REPORTS" 2>/dev/null && break
            sleep 0.1
        done
        sleep $((WARMUP + SAMPLE + 1))
        kill -KILL -- "-$browser" 2>/dev/null || kill -KILL "$browser" 2>/dev/null || true
        wait "$browser" 2>/dev/null || true
        cp "$REPORTS" "$tmp/reports-$label-$i.jsonl"
        read -r pdt lat < <(python3 "$tmp/medians.py" "$tmp/reports-$label-$i.jsonl" "$WARMUP" "$SAMPLE")
        echo "$label run $i: wall clock - playingDate ${pdt} ms, hls.latency ${lat} s"
        medians+=("$pdt")
        lats+=("$lat")
    done
    kill "$ff" "$srv" 2>/dev/null || true
    wait "$ff" "$srv" 2>/dev/null || true
    results+=("$(python3 - "$label" "${medians[*]}" "${lats[*]}" <<'EOF'
import statistics, sys
label, pdts, lats = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
print(f"| {label} | {statistics.median(pdts):.0f} ms ({min(pdts):.0f}-{max(pdts):.0f}) "
      f"| {statistics.median(lats):.2f} s ({min(lats):.2f}-{max(lats):.2f}) |")
EOF
)")
}

echo "== LL-HLS: segments ${SEGMENT_MS} ms, parts ${PART_MS} ms"
run_case ll-hls true
echo "== plain HLS: segments ${SEGMENT_MS} ms"
run_case hls false

echo
echo "| case | glass-to-glass (wall clock - playingDate), median (range over $REPEAT) | hls.latency, median (range) |"
echo "|---|---|---|"
for r in "${results[@]}"; do echo "$r"; done

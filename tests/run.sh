#!/usr/bin/env bash
# The test command: installs what the end-to-end tests run as real peers when it is missing
# (ffmpeg/ffprobe, openssl, python3, chromium, npm, GStreamer, mpv, VLC, srt-live-transmit and
# redis-server, from Debian; FFmpeg 9 from PyPI's imageio-ffmpeg; mpegts.js and hls.js from npm for the browser tests), then
# checks formatting and lints, then runs every test of the workspace: the server package,
# actors/, the load tool (tools/load, its tests start the server in process) and the test kit
# (tests/kit).
# Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# rustup's default location, in case the caller's PATH lacks it.
if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

# Tools the end-to-end tests run as real peers, and the Debian packages that bring them.
missing=()
for tool in ffmpeg:ffmpeg ffprobe:ffmpeg openssl:openssl python3:python3 npm:npm; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
# The browser test (tests/httpflv_browser.rs) runs Debian's Chromium, headless.
[ -x /usr/bin/chromium ] || missing+=(chromium)
# The cluster tests (tests/cluster.rs) start a Redis of their own: Debian's redis-server.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The network-fault tests (tests/netem.rs) build namespaces and links with iproute2's `ip`.
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
# The interop matrix (tests/interop_clients.rs) also runs mpv and srt-live-transmit; the SRT
# tests run srt-live-transmit (srt-tools) as a player, for its statistics.
command -v mpv >/dev/null 2>&1 || missing+=(mpv)
command -v srt-live-transmit >/dev/null 2>&1 || missing+=(srt-tools)
# ... and VLC over SRT (its SRT access is in vlc-plugin-access-extra); it runs as `nobody`.
for pkg in vlc-bin vlc-plugin-base vlc-plugin-access-extra; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# The interop tests (tests/interop.rs) run GStreamer 1.22 as a publisher: gst-launch-1.0,
# rtspclientsink (gstreamer1.0-rtsp), x264enc (ugly), avenc_aac (libav), opusenc (base); the
# HLS player tests (tests/hls_players.rs) run it as a player: souphttpsrc and hlsdemux2
# (good), hlsdemux (bad), avdec_h264 (libav).
for pkg in gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
    gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-rtsp gstreamer1.0-libav; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "tests/run.sh: installing missing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y "${missing[@]}"
fi
ffmpeg -hide_banner -version | sed -n 1p

# The Enhanced RTMP tests (tests/enhanced_rtmp.rs) and the interop matrix run FFmpeg 9 as the
# modern publisher and player: the static build PyPI's imageio-ffmpeg ships (Debian's FFmpeg
# 5.1 cannot send Enhanced RTMP). pip comes from Debian's python3-pip when missing.
if ! python3 -c "import imageio_ffmpeg" >/dev/null 2>&1; then
    echo "tests/run.sh: installing imageio-ffmpeg (FFmpeg 9) from PyPI" >&2
    if ! python3 -m pip --version >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y python3-pip
    fi
    python3 -m pip install imageio-ffmpeg ||
        python3 -m pip install --break-system-packages imageio-ffmpeg
fi
"$(python3 -c "import imageio_ffmpeg as i; print(i.get_ffmpeg_exe())")" -hide_banner -version | sed -n 1p

# The API tests (tests/api.rs) read /metrics with the Prometheus project's own Python parser
# (prometheus_client) and check the OpenAPI document against the server with schemathesis,
# both from PyPI.
for module in prometheus_client:prometheus_client schemathesis:schemathesis; do
    if ! python3 -c "import ${module%%:*}" >/dev/null 2>&1; then
        echo "tests/run.sh: installing ${module##*:} from PyPI" >&2
        python3 -m pip install "${module##*:}" ||
            python3 -m pip install --break-system-packages "${module##*:}"
    fi
done

# The browser test's page plays the stream with mpegts.js, the HLS player tests' page with
# hls.js, and the dashboard test drives Chromium with Playwright (playwright-core, which uses
# Debian's Chromium, no download of its own): all from the npm registry.
if [ ! -e tests/browser/node_modules/mpegts.js/dist/mpegts.js ] ||
    [ ! -e tests/browser/node_modules/hls.js/dist/hls.js ] ||
    [ ! -e tests/browser/node_modules/playwright-core/package.json ]; then
    echo "tests/run.sh: installing mpegts.js, hls.js and playwright-core in tests/browser" >&2
    if [ -f tests/browser/package-lock.json ]; then
        (cd tests/browser && npm ci --no-audit --no-fund)
    else
        (cd tests/browser && npm install --no-audit --no-fund)
    fi
fi

# Gates before any test: formatting and every clippy lint (warnings are errors).
echo "tests/run.sh: cargo fmt --check, cargo clippy -D warnings" >&2
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

# Run everything, then close with one line that totals every test binary's result.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"

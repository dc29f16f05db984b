#!/usr/bin/env bash
# Memory per RTMP player: one worker, the 2 Mbit/s source (tests/bench/lib.sh), the server's
# VmRSS idle (the stream published, no player), then with PLAYERS players (1000; joined at
# 1000/s), sampled twelve times 0.5 s apart from 10 s after the first join, when the server's
# memory has settled; per player = (mean loaded - idle) / PLAYERS.
#
#   bash tests/bench/player_rss.sh              # target/release/streamgate
#   PLAYERS=1 bash tests/bench/player_rss.sh    # what the first player costs (the shared parts)
#   PROTOS="rtmp httpflv" PLAYERS=100 bash tests/bench/player_rss.sh   # PLAYERS of each output
#       protocol at once (rtmp, httpflv, rtsp, rtsp-udp, srt), all outputs enabled
#   BIN=path/to/other/streamgate bash tests/bench/player_rss.sh
#   MENV="MALLOC_ARENA_MAX=1" bash tests/bench/player_rss.sh   # environment for the server
#   PROFILE=dhat bash tests/bench/player_rss.sh   # where the bytes are: the server under
#       valgrind's DHAT, a 200 kbit/s source (valgrind keeps up with it), players joined at
#       100/s; prints the allocation sites holding a block per player (tests/bench/dhat_sites.py)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. tests/bench/lib.sh
bench_tmp rss
if [ "${PROFILE:-}" = dhat ]; then
    ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=320x240:rate=25 \
        -f lavfi -i sine=frequency=440:sample_rate=44100 -t 60 -c:v libx264 -preset veryfast \
        -b:v 200k -g 50 -keyint_min 50 -sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 32k \
        -f flv "$tmp/source.flv"
    MENV="${MENV:-} valgrind --tool=dhat --dhat-out-file=$tmp/dhat.out"
    ramp=100
    tries=600 # valgrind starts the server slowly: up to 30 s
else
    bench_source
    ramp=1000
    tries=200
fi
protos=${PROTOS:-rtmp}
if [ "$protos" = rtmp ]; then
    port=$(free_port); api=$(free_port)
    one_worker_config "$port" "$api"
else
    all_outputs_config
fi
env ${MENV:-} ${BIN:-target/release/streamgate} --config "$tmp/streamgate.xml" >>"$tmp/streamgate.log" 2>&1 &
sg=$!; pids+=("$sg")
wait_port "$port" "$sg" "$tries"
publish_source "$port"
sleep 4
idle=$(awk '/VmRSS/ {print $2}' /proc/$sg/status)
players=${PLAYERS:-1000}
loads=()
for proto in $protos; do
    player_target "$proto" || exit 2
    target/release/streamgate-load --url "$url" "${extra[@]}" --players "$players" --ramp $ramp \
        --duration 18 --json > "$tmp/l-$proto.json" 2>/dev/null &
    loads+=($!)
done
sleep 10
s=0; for i in $(seq 12); do r=$(awk '/VmRSS/ {print $2}' /proc/$sg/status); s=$((s+r)); sleep 0.5; done
for lp in "${loads[@]}"; do wait "$lp" || true; done
players=$((players * ${#loads[@]}))
if [ "${PROFILE:-}" = dhat ]; then
    kill -INT "$sg"
    wait "$sg" || true
    python3 tests/bench/dhat_sites.py "$tmp/dhat.out" "$players"
    exit 0
fi
for proto in $protos; do
    python3 -c "import json,sys; l=json.load(open(sys.argv[1])); print('$proto: %d playing, %d errors' % (l['playing'], l['errors']))" "$tmp/l-$proto.json"
done
python3 -c "print('idle %d KiB, loaded %.0f KiB, per player %.2f KiB' % ($idle, $s/12, ($s/12-$idle)/$players))"

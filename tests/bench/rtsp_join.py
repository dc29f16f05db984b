#!/usr/bin/env python3
"""How GStreamer's rtspsrc sees the start of a stream it joins mid-GOP.

Starts BINARY with RTMP and RTSP on free ports, and RUNS times: an FFmpeg publisher (H.264
320x240 at 25 fps with one keyframe every 10 s, AAC), and 2.5 s later a GStreamer player
(rtspsrc over TCP or UDP, decoding with avdec_h264 to a clocked fakesink) for 6 s. For each run:
the time from starting the player to its first decoded frame, the frames rendered in its first
3 s, the longest run of frames sharing one timestamp, the median timestamp step of the first 50
frames and how far video starts after audio. Prints one line per run and the medians.

    python3 tests/bench/rtsp_join.py BINARY [RUNS] [tcp|udp]
"""
import os, re, socket, statistics, subprocess, sys, tempfile, time

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def main():
    binary = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    proto = sys.argv[3] if len(sys.argv) > 3 else "tcp"
    rtmp, rtsp = free_port(), free_port()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False)
    data_dir = tempfile.mkdtemp(prefix="streamgate-rtspjoin-data-")
    cfg.write(f"""<config><data_dir>{data_dir}</data_dir><rtmp><port>{rtmp}</port></rtmp>
<rtsp><enable>true</enable><port>{rtsp}</port></rtsp></config>""")
    cfg.close()
    server = subprocess.Popen([binary, "--config", cfg.name], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(1)
    rows = []
    try:
        for run in range(runs):
            name = f"join{run}"
            pub = subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
                 "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                 "-f", "lavfi", "-i", "sine=sample_rate=44100",
                 "-c:v", "libx264", "-preset", "ultrafast", "-g", "250", "-pix_fmt", "yuv420p",
                 "-c:a", "aac", "-t", "30", "-f", "flv", f"rtmp://127.0.0.1:{rtmp}/live/{name}"])
            time.sleep(2.5)
            start = time.monotonic()
            gst = subprocess.Popen(
                ["timeout", "-k", "3", "-s", "INT", "6", "gst-launch-1.0", "-v", "-e",
                 "rtspsrc", f"location=rtsp://127.0.0.1:{rtsp}/live/{name}", f"protocols={proto}",
                 "name=d", "d.", "!", "rtph264depay", "!", "h264parse", "!", "avdec_h264", "!",
                 "fakesink", "name=vs", "silent=false",
                 "d.", "!", "rtpmp4gdepay", "!", "aacparse", "!", "avdec_aac", "!",
                 "fakesink", "name=as", "silent=false"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            video, audio, arrivals = [], [], []
            for line in gst.stdout:
                m = re.search(r"\((vs|as):sink\).*pts: (\d+):(\d+):(\d+\.\d+)", line)
                if not m or "chain" not in line:
                    continue
                t = int(m[2]) * 3600 + int(m[3]) * 60 + float(m[4])
                if m[1] == "vs":
                    video.append(t)
                    arrivals.append(time.monotonic() - start)
                else:
                    audio.append(t)
            gst.wait()
            pub.kill()
            pub.wait()
            if not video or not audio:
                print(f"run {run}: no frames")
                continue
            longest = run_len = 1
            for a, b in zip(video, video[1:]):
                run_len = run_len + 1 if abs(b - a) < 1e-6 else 1
                longest = max(longest, run_len)
            steps = [b - a for a, b in zip(video[:50], video[1:50])]
            row = {
                "first_frame_ms": arrivals[0] * 1000,
                "frames_3s": sum(1 for a in arrivals if a <= 3.0),
                "same_ts": longest,
                "step_ms": statistics.median(steps) * 1000 if steps else 0,
                "av_ms": (video[0] - audio[0]) * 1000,
            }
            rows.append(row)
            print(f"run {run}: " + " ".join(f"{k}={v:.0f}" for k, v in row.items()), flush=True)
    finally:
        server.kill()
        server.wait()
        os.unlink(cfg.name)
        subprocess.run(["rm", "-rf", data_dir])
    if rows:
        print("median: " + " ".join(
            f"{k}={statistics.median(r[k] for r in rows):.0f}" for k in rows[0]))

main()

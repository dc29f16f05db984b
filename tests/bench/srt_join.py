#!/usr/bin/env python3
"""How the start of an SRT player's stream looks to real SRT receivers.

Starts streamgate (BIN, default target/debug/streamgate) with a temp config (RTMP and SRT on
free ports, no hooks), publishes three live streams over RTMP with FFmpeg (H.264+AAC with a
keyframe every 2 s, AAC only, H.264 only), and joins them over SRT, REPEAT times each:

- GStreamer's srtsrc (`srtsrc ! tsdemux ! h264parse ! fakesink sync=false`): the time to its
  first video frame, the frames in its first 3 s, and whether the first 50 frames' timestamps
  keep the source's 40 ms spacing (their span, and the smallest step between two);
- VLC 3 (`cvlc -I rc`, run as user `nobody`: VLC refuses to run as root), 3 s: its
  "video decoded", "frames displayed" and "frames lost" counters;
- ffprobe with its default options on each stream: the wall time until it has the streams.

Prints one line per join and a summary. Loopback only; every process it starts is stopped.

    python3 tests/bench/srt_join.py            # REPEAT=5 by default

Needs ffmpeg/ffprobe, gst-launch-1.0 with srtsrc (gstreamer1.0-plugins-bad), cvlc with the
SRT access (vlc-bin, vlc-plugin-base, vlc-plugin-access-extra) and runuser.
"""
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("BIN", os.path.join(REPO, "target/debug/streamgate"))
REPEAT = int(os.environ.get("REPEAT", "5"))
WINDOW = 3.0


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def publisher(rtmp, name, tracks):
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re"]
    if "v" in tracks:
        cmd += ["-f", "lavfi", "-i", "testsrc=size=640x360:rate=25"]
    if "a" in tracks:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    if "v" in tracks:
        cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
                "-g", "50", "-pix_fmt", "yuv420p", "-b:v", "1M"]
    if "a" in tracks:
        cmd += ["-c:a", "aac", "-b:a", "64k"]
    cmd += ["-t", "3600", "-f", "flv", f"{rtmp}/live/{name}"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


PTS = re.compile(r"\(vid:sink\) \(\d+ bytes, dts: [^,]*, pts: (\d+):(\d+):([\d.]+)")


def srtsrc(url):
    """(first frame s, frames in WINDOW, span of the first 50 pts, smallest step among them)"""
    cmd = ["gst-launch-1.0", "-v", "srtsrc", f"uri={url}", "!", "tsdemux", "!", "h264parse",
           "!", "fakesink", "name=vid", "silent=false", "sync=false"]
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    frames = []

    def read():
        for line in p.stdout:
            m = PTS.search(line)
            if m:
                pts = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
                frames.append((time.monotonic() - start, pts))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    time.sleep(max(WINDOW, 4.5))
    p.kill()
    p.wait()
    t.join(2)
    first = frames[0][0] if frames else None
    early = sum(1 for at, _ in frames if at <= WINDOW)
    pts = [f[1] for f in frames[:50]]
    span = pts[-1] - pts[0] if len(pts) == 50 else None
    step = min(b - a for a, b in zip(pts, pts[1:])) if len(pts) == 50 else None
    return first, early, span, step


def vlc(port, streamid, home):
    """VLC's (video decoded, frames displayed, frames lost) after WINDOW seconds. `home` is
    kept between runs: VLC's first start in a new home spends seconds on its plugin cache."""
    cmd = ["runuser", "-u", "nobody", "--", "env", f"HOME={home}", "cvlc", "-I", "rc",
           "--rc-fake-tty", "--vout=dummy", "--aout=dummy", f"--streamid={streamid}",
           f"srt://127.0.0.1:{port}"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    time.sleep(WINDOW)
    try:
        out, _ = p.communicate("stats\n", timeout=2)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    found = {}
    for key in ("video decoded", "frames displayed", "frames lost"):
        m = re.search(re.escape(key) + r"\s*:\s*(\d+)", out or "")
        found[key] = int(m[1]) if m else None
    return found["video decoded"], found["frames displayed"], found["frames lost"]


def probe(url):
    start = time.monotonic()
    subprocess.run(["ffprobe", "-hide_banner", "-loglevel", "error", "-show_entries",
                    "stream=codec_name", "-of", "csv=p=0", url],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    return time.monotonic() - start


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    rtmp_port, srt_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    tmp = tempfile.mkdtemp(prefix="streamgate-srtjoin-")
    config = os.path.join(tmp, "streamgate.xml")
    with open(config, "w") as f:
        f.write(f"""<config>
  <data_dir>{tmp}/data</data_dir>
  <workers>1</workers>
  <log_level>warn</log_level>
  <rtmp><enable>true</enable><port>{rtmp_port}</port><http_notify></http_notify></rtmp>
  <srt><enable>true</enable><port>{srt_port}</port><http_notify></http_notify></srt>
</config>
""")
    procs = [subprocess.Popen([BIN, "--config", config], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        time.sleep(1.5)
        rtmp = f"rtmp://127.0.0.1:{rtmp_port}"
        for name, tracks in (("av", "av"), ("a", "a"), ("v", "v")):
            procs.append(publisher(rtmp, name, tracks))
        time.sleep(5)
        url = lambda name: f"srt://127.0.0.1:{srt_port}?streamid=live/{name}"
        gst, vl, pr = [], [], {"a": [], "v": [], "av": []}
        home = os.path.join(tmp, "vlc-home")
        os.makedirs(home)
        os.chmod(tmp, 0o755)
        os.chmod(home, 0o777)
        vlc(srt_port, "live/av", home)  # builds VLC's plugin cache in `home`
        for run in range(REPEAT):
            g = srtsrc(url("av"))
            gst.append(g)
            time.sleep(0.7)
            v = vlc(srt_port, "live/av", home)
            vl.append(v)
            time.sleep(0.7)
            for name in pr:
                pr[name].append(probe(url(name)))
            print(f"run {run + 1}: srtsrc first frame {g[0]} s, {g[1]} frames in {WINDOW:g} s, "
                  f"first 50 span {g[2]}, min step {g[3]}; VLC decoded/displayed/lost {v}; "
                  f"ffprobe a/v/av {[round(pr[n][-1], 2) for n in pr]} s", flush=True)
        print(f"median over {REPEAT} runs:")
        print(f"  srtsrc: first frame {med([g[0] for g in gst]):.2f} s, "
              f"{med([g[1] for g in gst])} frames in {WINDOW:g} s, first 50 frames span "
              f"{med([g[2] for g in gst])} s, smallest step {min(g[3] for g in gst if g[3] is not None):.3f} s")
        print(f"  VLC: decoded {[v[0] for v in vl]}, displayed {[v[1] for v in vl]}, "
              f"lost {[v[2] for v in vl]}")
        print("  ffprobe: " + ", ".join(f"{n} {med(pr[n]):.2f} s" for n in pr))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main())

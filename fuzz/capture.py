#!/usr/bin/env python3
"""Seeds the fuzz corpora with what real clients send.

Starts streamgate (the binary given) on its own ports, puts a recording proxy in front of each
listener (TCP for RTMP, RTSP and HTTP-FLV; UDP for SRT), runs FFmpeg publishers and players
through the proxies, and writes what the clients sent, cut into the input format of each fuzz
target, under fuzz/corpus/NAME/ (see fuzz/README.md). Files FFmpeg writes itself (MPEG-TS, FLV,
MP4, ADTS, Annex-B) seed the TS, FLV and codec targets.

Usage: python3 fuzz/capture.py --streamgate target/debug/streamgate [--out fuzz/corpus]
Needs ffmpeg with libx264, libx265 and libsrt (Debian's ffmpeg has them). With PyPI's
imageio-ffmpeg installed, its FFmpeg 9 also publishes Enhanced RTMP (H.265, AV1, Opus).
"""

import argparse
import hashlib
import os
import random
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# streamgate's ports, and each proxy's (streamgate's + 100). Away from the defaults so a
# capture can run beside another server.
PORTS = {"rtmp": 29035, "httpflv": 29080, "rtsp": 29054, "srt": 29090}
PROXY = {k: v + 100 for k, v in PORTS.items()}
HANDSHAKE = 1 + 2 * 1536
LAVFI = [
    "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
]
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
        "-pix_fmt", "yuv420p"]
X265 = ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "keyint=25:log-level=error",
        "-pix_fmt", "yuv420p"]
AAC = ["-c:a", "aac", "-b:a", "64k"]
OPUS = ["-c:a", "libopus", "-b:a", "64k"]
AV1 = ["-c:v", "libsvtav1", "-preset", "12", "-g", "25", "-pix_fmt", "yuv420p"]


def ffmpeg9_path():
    """FFmpeg 9 from PyPI's imageio-ffmpeg (speaks Enhanced RTMP), or None."""
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        return None


class Recorder:
    """What clients sent, per connection (TCP) or per datagram (UDP), by protocol."""

    def __init__(self):
        self.lock = threading.Lock()
        self.streams = {}  # protocol -> [bytes of each connection]
        self.datagrams = []  # SRT client datagrams

    def add(self, proto, data):
        with self.lock:
            self.streams.setdefault(proto, []).append(bytes(data))


def tcp_proxy(proto, recorder, stop):
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", PROXY[proto]))
    lsock.listen(16)
    lsock.settimeout(0.2)

    def serve(client):
        upstream = socket.create_connection(("127.0.0.1", PORTS[proto]))
        sent = bytearray()
        socks = [client, upstream]
        try:
            while not stop.is_set():
                ready, _, _ = select.select(socks, [], [], 0.2)
                done = False
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        done = True
                        break
                    if s is client:
                        sent += data
                        upstream.sendall(data)
                    else:
                        client.sendall(data)
                if done:
                    break
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()
            recorder.add(proto, sent)

    while not stop.is_set():
        try:
            client, _ = lsock.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(client,), daemon=True).start()
    lsock.close()


def udp_proxy(recorder, stop):
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", PROXY["srt"]))
    backs = {}  # client address -> socket toward streamgate
    while not stop.is_set():
        ready, _, _ = select.select([front] + list(backs.values()), [], [], 0.2)
        for s in ready:
            data, addr = s.recvfrom(65536)
            if s is front:
                if addr not in backs:
                    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    back.connect(("127.0.0.1", PORTS["srt"]))
                    backs[addr] = back
                with recorder.lock:
                    recorder.datagrams.append(data)
                backs[addr].send(data)
            else:
                client = next(a for a, b in backs.items() if b is s)
                front.sendto(data, client)
    front.close()


def ffmpeg(args, timeout=30, binary="ffmpeg"):
    cmd = [binary, "-hide_banner", "-loglevel", "error", "-y"] + args
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL)


def run(args, timeout=60, binary="ffmpeg"):
    p = ffmpeg(args, binary=binary)
    p.wait(timeout=timeout)


def config_file(tmp):
    with open(os.path.join(ROOT, "config", "streamgate.xml")) as f:
        xml = f.read()
    for proto, default in (("rtmp", 1935), ("rtsp", 8554), ("srt", 8890), ("httpflv", 8080)):
        xml = xml.replace(f"<port>{default}</port>", f"<port>{PORTS[proto]}</port>", 1)
    xml = xml.replace("<rtp_port_min>20000<", "<rtp_port_min>29200<")
    xml = xml.replace("<rtp_port_max>20999<", "<rtp_port_max>29299<")
    path = os.path.join(tmp, "streamgate.xml")
    with open(path, "w") as f:
        f.write(xml)
    return path


def capture_clients(binary, tmp):
    """Runs the FFmpeg clients through the proxies; returns the recorder."""
    recorder = Recorder()
    stop = threading.Event()
    server = subprocess.Popen([binary, "--config", config_file(tmp)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    threads = [threading.Thread(target=tcp_proxy, args=(p, recorder, stop), daemon=True)
               for p in ("rtmp", "rtsp", "httpflv")]
    threads.append(threading.Thread(target=udp_proxy, args=(recorder, stop), daemon=True))
    for t in threads:
        t.start()
    time.sleep(2)
    rtmp = f"rtmp://127.0.0.1:{PROXY['rtmp']}/live"
    rtsp = f"rtsp://127.0.0.1:{PROXY['rtsp']}/live"
    srt = f"srt://127.0.0.1:{PROXY['srt']}"
    try:
        # RTMP publish with players over RTMP and HTTP-FLV.
        pub = ffmpeg(["-re"] + LAVFI + ["-t", "4"] + X264 + AAC + ["-f", "flv", f"{rtmp}/cam?token=abc"])
        time.sleep(1.5)
        run(["-i", f"{rtmp}/cam", "-t", "1", "-f", "null", "-"])
        run(["-i", f"http://127.0.0.1:{PROXY['httpflv']}/live/cam.flv?token=abc", "-t", "1",
             "-f", "null", "-"])
        pub.wait(timeout=30)
        # RTSP publish over TCP (H.264 + AAC) with a player; then H.265.
        pub = ffmpeg(["-re"] + LAVFI + ["-t", "4"] + X264 + AAC +
                     ["-f", "rtsp", "-rtsp_transport", "tcp", f"{rtsp}/rcam?token=abc"])
        time.sleep(1.5)
        run(["-rtsp_transport", "tcp", "-i", f"{rtsp}/rcam", "-t", "1", "-f", "null", "-"])
        pub.wait(timeout=30)
        run(["-re"] + LAVFI[:4] + ["-t", "2"] + X265 +
            ["-f", "rtsp", "-rtsp_transport", "tcp", f"{rtsp}/hcam"])
        # SRT publish (access-control streamid) with a player (prefixed streamid).
        pub = ffmpeg(["-re"] + LAVFI + ["-t", "4"] + X264 + AAC +
                     ["-f", "mpegts", f"{srt}?streamid=%23!::r=live/scam,m=publish&pkt_size=1316"])
        time.sleep(1.5)
        run(["-i", f"{srt}?streamid=read:live/scam", "-t", "1", "-f", "null", "-"], timeout=30)
        pub.wait(timeout=30)
        # Enhanced RTMP: FFmpeg 9 publishes H.265 + Opus and AV1 + Opus (audio and video on
        # chunk streams of their own), each with an FFmpeg 9 player.
        ffmpeg9 = ffmpeg9_path()
        if ffmpeg9:
            for name, video in (("ehevc", X265), ("eav1", AV1)):
                pub = ffmpeg(["-re"] + LAVFI + ["-t", "3"] + video + OPUS +
                             ["-f", "flv", f"{rtmp}/{name}"], binary=ffmpeg9)
                time.sleep(1.5)
                run(["-i", f"{rtmp}/{name}", "-t", "1", "-f", "null", "-"], binary=ffmpeg9)
                pub.wait(timeout=30)
    finally:
        time.sleep(0.5)
        stop.set()
        server.terminate()
        server.wait(timeout=10)
        for t in threads:
            t.join(timeout=2)
    return recorder


# --- cutting captures into target inputs --------------------------------------------------------


def rtmp_messages(stream, limit=400):
    """(type id, body) of the messages of a client chunk stream (after the handshake)."""
    out = []
    chunk_size = 128
    streams = {}  # csid -> [timestamp, length, type, stream id, partial]
    i = 0
    while i < len(stream) and len(out) < limit:
        b = stream[i]
        fmt, csid = b >> 6, b & 0x3F
        i += 1
        if csid == 0:
            csid = 64 + stream[i]
            i += 1
        elif csid == 1:
            csid = 64 + stream[i] + 256 * stream[i + 1]
            i += 2
        st = streams.setdefault(csid, [0, 0, 0, 0, b""])
        if fmt <= 2:
            ts = int.from_bytes(stream[i:i + 3], "big")
            i += 3
            if fmt <= 1:
                st[1] = int.from_bytes(stream[i:i + 3], "big")
                st[2] = stream[i + 3]
                i += 4
            if fmt == 0:
                st[3] = int.from_bytes(stream[i:i + 4], "little")
                i += 4
            if ts == 0xFFFFFF:
                i += 4
        n = min(chunk_size, st[1] - len(st[4]))
        st[4] += stream[i:i + n]
        i += n
        if len(st[4]) >= st[1]:
            out.append((st[2], st[4]))
            if st[2] == 1 and len(st[4]) >= 4:
                chunk_size = int.from_bytes(st[4][:4], "big") & 0x7FFFFFFF
            st[4] = b""
    return out


def interleaved(stream):
    """(channel, data) of the `$` frames of an RTSP client stream; and the bodies of ANNOUNCE."""
    frames, sdps = [], []
    i = 0
    while i < len(stream):
        if stream[i] == 0x24:
            if i + 4 > len(stream):
                break
            n = int.from_bytes(stream[i + 2:i + 4], "big")
            frames.append((stream[i + 1], stream[i + 4:i + 4 + n]))
            i += 4 + n
            continue
        end = stream.find(b"\r\n\r\n", i)
        if end < 0:
            break
        head = stream[i:end].decode("latin-1")
        m = re.search(r"(?im)^content-length:\s*(\d+)", head)
        n = int(m.group(1)) if m else 0
        if head.startswith("ANNOUNCE") and n:
            sdps.append(stream[end + 4:end + 4 + n])
        i = end + 4 + n
    return frames, sdps


def flv_tags(data):
    """(tag type, timestamp, body) of an FLV file."""
    tags = []
    i = 9 + 4
    while i + 11 <= len(data):
        kind = data[i]
        size = int.from_bytes(data[i + 1:i + 4], "big")
        ts = int.from_bytes(data[i + 4:i + 7], "big") | (data[i + 7] << 24)
        tags.append((kind, ts, data[i + 11:i + 11 + size]))
        i += 11 + size + 4
    return tags


def mp4_box(data, name):
    """The body of the first box `name` (avcC, hvcC) anywhere in an MP4 file."""
    at = data.find(name)
    if at < 4:
        return None
    size = int.from_bytes(data[at - 4:at], "big")
    return data[at + 4:at - 4 + size]


class Corpus:
    def __init__(self, out):
        self.out = out
        self.count = {}

    def add(self, target, data):
        d = os.path.join(self.out, target)
        os.makedirs(d, exist_ok=True)
        name = hashlib.sha1(data).hexdigest()
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        self.count[target] = self.count.get(target, 0) + 1


def packets16(packets):
    return b"".join(struct.pack(">H", len(p)) + p for p in packets)


def write_corpora(recorder, tmp, corpus):
    # RTMP: whole connections (handshake target) and the chunk stream after the handshake.
    for stream in recorder.streams.get("rtmp", []):
        stream = stream[:200_000]
        corpus.add("rtmp_handshake", stream)
        after = stream[HANDSHAKE:]
        corpus.add("rtmp_session", b"\x00" + after)
        corpus.add("rtmp_chunks", b"\x00" + after)
        for type_id, body in rtmp_messages(after):
            if type_id in (18, 20):
                corpus.add("amf0", body)
            elif type_id in (8, 9) and len(body) < 4096:
                corpus.add("flv_tag", bytes([type_id == 9]) + b"\0\0\0\x28" + body)
    for stream in recorder.streams.get("httpflv", []):
        corpus.add("http_request", b"\x00" + stream)
    # RTSP: whole connections, their descriptions, RTP and RTCP. The session id the server
    # gave becomes the one the fuzz target's connection has ("fuzz"), so that requests after
    # the first SETUP are not refused with 454; and FFmpeg's publish from the unit tests.
    testdata = os.path.join(ROOT, "src", "protocol", "rtsp", "testdata", "ffmpeg_publish_tcp.bin")
    rtsp_streams = recorder.streams.get("rtsp", []) + [open(testdata, "rb").read()]
    for stream in rtsp_streams:
        stream = re.sub(rb"(\r\nSession: *)[^\r;]+", rb"\1fuzz", stream[:300_000])
        corpus.add("rtsp_session", b"\x00" + stream)
        corpus.add("rtsp_message", b"\x00" + stream)
        frames, sdps = interleaved(stream)
        hevc = any(b"H265" in s for s in sdps)
        for s in sdps:
            corpus.add("sdp", s)
        video = [d for c, d in frames if c == 0][:150]
        audio = [d for c, d in frames if c == 2][:100]
        if video:
            if hevc:
                corpus.add("rtp_depacketize", b"\x02" + packets16(video))
            else:
                corpus.add("rtp_depacketize", b"\x00" + packets16(video))
                corpus.add("rtp_depacketize", b"\x01" + packets16(video))
        if audio:
            corpus.add("rtp_depacketize", b"\x03\x0d\x03\x03" + packets16(audio))
        seen = set()
        for c, d in frames:
            if c % 2 == 1 and d[1:2] not in seen:
                seen.add(d[1:2])
                corpus.add("rtcp", d)
    # SRT: every control packet (handshakes), a few data packets, the streamids.
    data_packets = 0
    for d in recorder.datagrams:
        if d[0] & 0x80:
            corpus.add("srt_packet", d)
        elif data_packets < 4:
            data_packets += 1
            corpus.add("srt_packet", d)
    for sid in ("#!::r=live/scam,m=publish", "read:live/scam", "publish:live/cam:user:pass",
                "live/cam?token=abc", "#!::u=admin,r=live/cam,m=request,s=abc,t=stream",
                "%23!::r=live/cam,m=publish", "play:live/a/b?x=1"):
        corpus.add("srt_streamid", sid.encode())

    # Files FFmpeg writes: TS, FLV, MP4 (avcC, hvcC), ADTS, Annex-B.
    f = lambda n: os.path.join(tmp, n)
    run(LAVFI + ["-t", "1"] + X264 + AAC + ["-f", "mpegts", f("a.ts")])
    run(LAVFI + ["-t", "1"] + X264 + AAC + ["-f", "flv", f("a.flv")])
    run(LAVFI[:4] + ["-t", "0.2"] + X264 + ["-f", "mp4", f("a.mp4")])
    run(LAVFI[:4] + ["-t", "0.2"] + X265 + ["-f", "mp4", f("h.mp4")])
    run(LAVFI[4:] + ["-t", "0.2"] + AAC + ["-f", "adts", f("a.aac")])
    run(LAVFI[:4] + ["-t", "0.2"] + X264 + ["-f", "h264", f("a.h264")])
    ts = open(f("a.ts"), "rb").read()
    corpus.add("ts_demux", b"\x00" + ts)
    corpus.add("ts_demux", b"\x03" + ts[:188 * 64])
    flv = open(f("a.flv"), "rb").read()
    for kind, ts_ms, body in flv_tags(flv)[:40]:
        if kind in (8, 9):
            corpus.add("flv_tag", bytes([kind == 9]) + ts_ms.to_bytes(4, "big") + body[:4096])
            if body[:2] == b"\x17\x00":
                corpus.add("codec_config", b"\x00" + body[5:])
            elif body[:2] == b"\xaf\x00":
                corpus.add("codec_config", b"\x01" + body[2:])
            elif body[:2] in (b"\x17\x01", b"\x27\x01") and len(body) < 4096:
                corpus.add("codec_config", b"\x04" + body[5:])
    for name, box, which in (("a.mp4", b"avcC", 0), ("h.mp4", b"hvcC", 3)):
        body = mp4_box(open(f(name), "rb").read(), box)
        if body:
            corpus.add("codec_config", bytes([which]) + body)
    corpus.add("codec_config", b"\x02" + open(f("a.aac"), "rb").read()[:2048])
    corpus.add("codec_config", b"\x05" + open(f("a.h264"), "rb").read()[:4096])

    write_publisher_seeds(flv, open(f("h.mp4"), "rb").read(), corpus)

    # Enhanced RTMP tags as FFmpeg 9 writes them: hvc1, av01, Opus (and its OpusHead, av1C).
    ffmpeg9 = ffmpeg9_path()
    if ffmpeg9:
        for name, video in (("e.flv", X265), ("a1.flv", AV1)):
            run(LAVFI + ["-t", "1"] + video + OPUS + ["-f", "flv", f(name)], binary=ffmpeg9)
            seen = set()
            for kind, ts_ms, body in flv_tags(open(f(name), "rb").read())[:40]:
                if kind not in (8, 9) or len(body) > 4096 or body[:5] in seen:
                    continue
                seen.add(body[:5])
                corpus.add("flv_tag", bytes([kind == 9]) + ts_ms.to_bytes(4, "big") + body)
                if body[:5] == b"\x90av01" and len(body) > 5:
                    corpus.add("codec_config", b"\xf0" + body[5:])
                elif body[:5] == b"\x90Opus":
                    corpus.add("codec_config", b"\xf8" + body[5:])

    # Round-trip targets take generated parameters: a few deterministic seeds.
    rng = random.Random(11)
    for target in ("rtmp_chunk_roundtrip", "rtp_roundtrip", "ts_roundtrip"):
        for n in (16, 200, 2000):
            corpus.add(target, bytes(rng.getrandbits(8) for _ in range(n)))
    # The shipped configuration and a minimal one.
    corpus.add("config_xml", open(os.path.join(ROOT, "config", "streamgate.xml"), "rb").read())
    corpus.add("config_xml", b"<config><rtmp><port>1935</port></rtmp></config>")


def write_publisher_seeds(flv, hevc_mp4, corpus):
    """A publisher's configs and frames as the packetizer and muxer targets read them: per
    frame a flags byte (1 config, 2 keyframe, 4 audio, 8 H.265) and a 16-bit-length payload."""
    frames = []
    for kind, _, body in flv_tags(flv)[:30]:
        if kind == 9 and body[:1] in (b"\x17", b"\x27") and len(body) > 5:
            flags = (2 if body[0] == 0x17 else 0) | (1 if body[1] == 0 else 0)
            frames.append((flags, body[5:]))
        elif kind == 8 and body[:1] == b"\xaf" and len(body) > 2:
            frames.append((4 | (1 if body[1] == 0 else 0), body[2:]))
    stream = b"".join(bytes([f]) + struct.pack(">H", len(p)) + p for f, p in frames)
    corpus.add("rtp_packetize", b"\x00" + stream)
    corpus.add("rtp_packetize", b"\x02" + stream)
    corpus.add("ts_mux", b"\x00" + stream)
    hvcc = mp4_box(hevc_mp4, b"hvcC")
    if hvcc:
        corpus.add("rtp_packetize", b"\x01\x09" + struct.pack(">H", len(hvcc)) + hvcc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streamgate", required=True, help="the streamgate binary")
    ap.add_argument("--out", default=os.path.join(ROOT, "fuzz", "corpus"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="streamgate-capture-")
    try:
        recorder = capture_clients(os.path.abspath(args.streamgate), tmp)
        for proto, streams in recorder.streams.items():
            print(f"{proto}: {len(streams)} connections, {sum(map(len, streams))} bytes")
        print(f"srt: {len(recorder.datagrams)} datagrams")
        corpus = Corpus(args.out)
        write_corpora(recorder, tmp, corpus)
        for target, n in sorted(corpus.count.items()):
            print(f"{target}: {n} files")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

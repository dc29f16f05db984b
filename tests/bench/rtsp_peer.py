#!/usr/bin/python3
"""An RTSP server to compare streamgate's RTSP fan-out with: GStreamer's gst-rtsp-server.

    /usr/bin/python3 tests/bench/rtsp_peer.py PORT RTMP_URL

Serves rtsp://127.0.0.1:PORT/live/bench, one shared media for every client (the way a live
camera is served), whose pipeline plays RTMP_URL (H.264 + AAC) and packetizes it as RTP: H.264
(RFC 6184, parameter sets before each keyframe) and AAC (RFC 3640). Clients choose TCP
interleaved or UDP unicast in SETUP. Run with Debian's Python: it needs the GObject bindings
(python3-gi, gir1.2-gst-rtsp-server-1.0) and GStreamer's rtmp2src (gstreamer1.0-plugins-bad).
compare.sh starts it for its "peer" case.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: rtsp_peer.py PORT RTMP_URL")
    port, source = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( rtmp2src location=%s ! flvdemux name=d "
        "d.video ! queue ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 "
        "d.audio ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )" % source
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/live/bench", factory)
    if server.attach(None) == 0:
        sys.exit("rtsp_peer.py: cannot listen on port %s" % port)
    print("rtsp_peer.py: listening on %s" % port, flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()

//! In-memory tests of the RTMP server core, driven by rml_rtmp's client as the peer.

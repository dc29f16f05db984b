//! The bodies of the fuzz targets in `fuzz/`: one plain function per target, taking the
//! fuzzer's bytes and driving one parser the way the server drives it with client or
//! configuration bytes.
//!
//! They live in the library, not in the fuzz crate, so that `tests/fuzz_corpus.rs` can replay
//! every corpus file and crash reproducer through the same code on the stable toolchain
//! (`cargo test`), without libFuzzer. A target fails by panicking: any panic is a defect,
//! whether it comes from a parser (index out of bounds, overflow in debug builds, an
//! `unwrap`) or from a round-trip assertion here. Errors returned by a parser are the
//! expected answer to bad input and are ignored.
//!
//! No IO: everything runs on the bytes given.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use streamgate_actors::media::{Codec, FrameKind, MediaFrame, Track};

use crate::protocol::codec::{self, AacConfig, AvcConfig};
use crate::protocol::rtmp::amf;
use crate::protocol::rtmp::chunk::{encode_message, ChunkDecoder, ChunkHeader};
use crate::protocol::rtmp::{self, Event as RtmpEvent, MediaKind, ServerConnection};
use crate::protocol::rtsp::message::{
    self as rtsp_message, ClientTransport, ServerTransport, TransportSpec,
};
use crate::protocol::rtsp::rtp::{
    is_rtcp, ntp_to_unix_micros, parse_rtcp, AacDepacketizer, AacPacketizer, AuHeaderLayout,
    Av1Depacketizer, Av1Packetizer, LatmDepacketizer, RtcpPacket, RtpClock, RtpPacket,
    VideoDepacketizer, VideoPacketizer,
};
use crate::protocol::rtsp::sdp;
use crate::protocol::rtsp::session::{Depacketizer, RtpPublish};
use crate::protocol::rtsp::{Event as RtspEvent, RtspConnection};
use crate::protocol::ts::{TsDemuxer, TsMuxer};
use crate::protocol::{flv, http, srt};

/// The fixed handshake [`rtmp_session`] puts before its input: C0 (version 3), then C1 and
/// C2 of zeros — a plain (not FP9 digest) handshake, which the server accepts without
/// checking C2.
const RTMP_HANDSHAKE_LEN: usize = 1 + 2 * 1536;

/// A little reader over the fuzzer's bytes for the targets that need a few parameters besides
/// the data to parse. Reads past the end give zeros, so every input is usable.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// Up to `n` bytes.
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A piece whose length is the next 16-bit value.
    fn piece(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.take(n)
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// How a byte stream is cut into reads: a control byte picks a piece size, so that the
/// parsers' buffering across reads is exercised as well as whole-input parsing.
fn pieces(data: &[u8], control: u8) -> std::slice::Chunks<'_, u8> {
    let size = match control & 0x07 {
        0 => usize::MAX,
        1 => 1,
        2 => 7,
        3 => 188,
        4 => 1316,
        5 => 4096,
        _ => usize::from(control) * 13 + 1,
    };
    data.chunks(size.min(data.len().max(1)))
}

// ---------------------------------------------------------------------------------------------
// RTMP
// ---------------------------------------------------------------------------------------------

/// RTMP from the first byte: the handshake (C0, C1 with or without an FP9 digest, C2) and
/// whatever follows it, through [`ServerConnection`], every request accepted.
pub fn rtmp_handshake(data: &[u8]) {
    let mut conn = ServerConnection::new();
    for piece in pieces(data, data.len() as u8) {
        if conn.handle_input(piece).is_err() {
            return;
        }
        drain_rtmp(&mut conn, 0);
        let _ = conn.take_output();
    }
}

/// RTMP after the handshake: the first byte picks how the rest is cut into reads and which
/// requests are refused; the rest is the client's chunk stream after a fixed handshake
/// (commands, control messages, media), through [`ServerConnection`] as a session drives it.
/// Media and metadata go on through the FLV and codec parsers, as a publish does.
pub fn rtmp_session(data: &[u8]) {
    let (control, stream) = data.split_first().map_or((0, &[][..]), |(c, s)| (*c, s));
    let mut conn = ServerConnection::new();
    let mut handshake = vec![0u8; RTMP_HANDSHAKE_LEN];
    handshake[0] = 3;
    if conn.handle_input(&handshake).is_err() {
        return;
    }
    for piece in pieces(stream, control) {
        if conn.handle_input(piece).is_err() {
            return;
        }
        drain_rtmp(&mut conn, control);
        let _ = conn.take_output();
    }
}

/// Answers every request (refusing some when `control` says so) and passes media on.
fn drain_rtmp(conn: &mut ServerConnection, control: u8) {
    while let Some(event) = conn.poll_event() {
        match event {
            RtmpEvent::ConnectRequested { request, .. } => {
                let _ = conn.accept(request);
            }
            RtmpEvent::PublishRequested { request, .. } if control & 0x40 != 0 => {
                let _ = conn.refuse(request, rtmp::Rejection::AlreadyPublishing);
            }
            RtmpEvent::PlayRequested { request, .. } if control & 0x80 != 0 => {
                let _ = conn.refuse(request, rtmp::Rejection::NotFound);
            }
            RtmpEvent::PublishRequested { request, .. } => {
                let _ = conn.accept(request);
            }
            RtmpEvent::PlayRequested {
                request, stream_id, ..
            } => {
                if conn.accept(request).is_ok() {
                    // A player gets what a publisher sends: metadata and media out again.
                    conn.send_metadata(stream_id, HashMap::new());
                    conn.send_media(stream_id, MediaKind::Video, 0, &[&[0x17, 0, 0, 0, 0]]);
                }
            }
            RtmpEvent::Metadata { properties } => {
                let _ = flv::metadata_from_amf(properties);
            }
            RtmpEvent::Media {
                kind,
                timestamp,
                data,
            } => flv_body(kind == MediaKind::Video, timestamp, &data),
            RtmpEvent::StreamClosed { stream_id } => conn.end_of_stream(stream_id),
        }
    }
}

/// The RTMP client (the load tool's and the tests'), fed a server's bytes in pieces: a player
/// and a publisher past their handshake, and the reader keeping whole bodies. The first byte
/// chooses the piece size. Both the session and the reader must end with an error, never a
/// panic, on any input.
pub fn rtmp_client(data: &[u8]) {
    use crate::protocol::rtmp::client::{Bodies, ClientError, ClientSession, MessageReader, Role};
    let (control, stream) = data.split_first().map_or((0, &[][..]), |(c, s)| (*c, s));
    let roles = [
        Role::Play("cam".into()),
        Role::Publish {
            name: "cam".into(),
            chunk_size: 4096,
        },
    ];
    for role in roles {
        let mut client = ClientSession::new("live", "rtmp://h/live", role);
        let mut out = BytesMut::new();
        client.connect(&mut out);
        for piece in pieces(stream, control) {
            if client.feed(piece, &mut out, |_| {}).is_err() {
                break;
            }
        }
    }
    let mut reader = MessageReader::new(Bodies::Whole);
    for piece in pieces(stream, control) {
        let mut bytes = 0usize;
        let fed = reader.feed(piece, |_| {
            bytes += 1;
            Ok::<(), ClientError>(())
        });
        if fed.is_err() {
            break;
        }
    }
}

/// RTMP's chunk layer alone: [`ChunkDecoder`] on the client's chunk stream (after the
/// handshake), with Set Chunk Size and Abort applied as the connection applies them, and
/// every command or data message through the AMF0 decoder.
pub fn rtmp_chunks(data: &[u8]) {
    let (control, stream) = data.split_first().map_or((0, &[][..]), |(c, s)| (*c, s));
    let mut decoder = ChunkDecoder::default();
    let mut input = BytesMut::new();
    for piece in pieces(stream, control) {
        input.extend_from_slice(piece);
        loop {
            let message = match decoder.decode(&mut input) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                // The connection ends here.
                Err(_) => return,
            };
            let body = &message.payload[..];
            let word = body
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            match (message.type_id, word) {
                (1, Some(size)) if decoder.set_chunk_size(size & 0x7fff_ffff).is_err() => return,
                (1, _) => {}
                (2, Some(csid)) => decoder.abort(csid),
                // AMF0 data and command; AMF3 ones carry a format byte first.
                (15 | 17 | 18 | 20, _) => {
                    let _ = amf::decode_all(body.get(1..).unwrap_or_default());
                    let _ = amf::decode_all(body);
                }
                _ => {}
            }
        }
    }
}

/// AMF0 values (command arguments and metadata) through [`amf::decode_all`].
pub fn amf0(data: &[u8]) {
    if let Ok(values) = amf::decode_all(data) {
        for value in values {
            if let rml_amf0::Amf0Value::Object(properties) = value {
                let _ = flv::metadata_from_amf(properties);
            }
        }
    }
}

/// Chunk encoding round trip: messages encoded with [`encode_message`] at a chunk size, then
/// decoded with [`ChunkDecoder`] at that size, must come back unchanged (timestamps across the
/// extended-timestamp boundary, chunk stream ids of every basic-header form).
pub fn rtmp_chunk_roundtrip(data: &[u8]) {
    let mut input = Input { data };
    let chunk_size = (input.u32() % (rtmp::chunk::MAX_CHUNK_SIZE)).max(1);
    let mut encoded = BytesMut::new();
    let mut sent = Vec::new();
    while !input.is_empty() && sent.len() < 64 {
        // Chunk stream ids 2..=65599 (0 and 1 are basic-header escapes, not ids).
        let csid = 2 + u32::from(input.u16()) % 65598;
        let header = ChunkHeader {
            csid,
            timestamp: input.u32(),
            type_id: input.u8(),
            stream_id: input.u32(),
        };
        let body = input.piece();
        // Split the body in two parts, as media is written (tag header, shared payload).
        let cut = usize::from(input.u8()).min(body.len());
        encode_message(
            &mut encoded,
            chunk_size,
            header,
            &[&body[..cut], &body[cut..]],
        );
        sent.push((header, body));
    }
    let mut decoder = ChunkDecoder::default();
    if decoder.set_chunk_size(chunk_size).is_err() {
        panic!("chunk size {chunk_size} refused");
    }
    for (header, body) in sent {
        let message = match decoder.decode(&mut encoded) {
            Ok(Some(m)) => m,
            other => panic!("message {header:?} did not decode: {other:?}"),
        };
        assert_eq!(message.csid, header.csid);
        assert_eq!(message.timestamp, header.timestamp);
        assert_eq!(message.type_id, header.type_id);
        assert_eq!(message.stream_id, header.stream_id);
        assert_eq!(&message.payload[..], body);
    }
    assert!(encoded.is_empty(), "{} bytes left over", encoded.len());
}

// ---------------------------------------------------------------------------------------------
// FLV and codec configs
// ---------------------------------------------------------------------------------------------

/// One FLV tag body (an RTMP audio or video message body): the first byte picks video or
/// audio and the next four the timestamp. Frames go on through the codec parsers and are
/// written out again as FLV tags, as HTTP-FLV and RTMP players get them.
pub fn flv_tag(data: &[u8]) {
    let mut input = Input { data };
    let video = input.u8() & 1 == 1;
    let timestamp = input.u32();
    flv_body(video, timestamp, input.data);
}

fn flv_body(video: bool, timestamp: u32, body: &[u8]) {
    let body = Bytes::copy_from_slice(body);
    let frame = if video {
        flv::video_frame(timestamp, &body)
    } else {
        flv::audio_frame(timestamp, &body)
    };
    let Ok(Some(frame)) = frame else {
        return;
    };
    match (frame.codec, frame.kind) {
        (Codec::H264, FrameKind::Config) => {
            if let Ok(config) = AvcConfig::parse(&frame.payload) {
                let _ = AvcConfig::parse(&config.to_record());
            }
        }
        (Codec::H264, FrameKind::Media) => {
            let _ = codec::avcc_nals(&frame.payload, 4);
        }
        (Codec::Aac, FrameKind::Config) => {
            let _ = AacConfig::parse(&frame.payload);
        }
        (Codec::H265, FrameKind::Config) => {
            let _ = sdp::hvcc_parameter_sets(&frame.payload);
        }
        (Codec::H265, FrameKind::Media) => {
            let _ = codec::avcc_nals(&frame.payload, 4);
        }
        (Codec::Av1, FrameKind::Config) => {
            let _ = codec::Av1Config::parse(&frame.payload);
        }
        (Codec::Av1, FrameKind::Media) => {
            let _ = codec::av1_obus(&frame.payload);
        }
        (Codec::Opus, FrameKind::Config) if codec::OpusHead::parse(&frame.payload).is_ok() => {
            let _ = sdp::opus_track("streamid=1".into(), 97, &frame.payload);
        }
        _ => {}
    }
    let mut out = BytesMut::new();
    flv::write_frame_tag(&mut out, &frame);
    // What is written reads back as the same frame: codec, kind and payload (Enhanced RTMP
    // H.264 and AAC come back in their legacy form, which reads the same).
    if let Some((header, len)) = flv::tag_header(&frame) {
        let mut again = BytesMut::from(&header[..len]);
        again.extend_from_slice(&frame.payload);
        let again = again.freeze();
        let read = if video {
            flv::video_frame(timestamp, &again)
        } else {
            flv::audio_frame(timestamp, &again)
        };
        let read = read.ok().flatten();
        assert_eq!(
            read.as_ref().map(|f| (f.codec, f.kind, &f.payload)),
            Some((frame.codec, frame.kind, &frame.payload)),
            "a written tag reads back otherwise"
        );
    }
}

/// Decoder configurations as publishers send them (RTMP sequence headers, SDP, TS): the
/// first byte picks the parser — AVCDecoderConfigurationRecord (and the round trip of what it
/// accepts through [`AvcConfig::to_record`]), AudioSpecificConfig (and [`AacConfig::to_asc`]),
/// ADTS headers, HEVCDecoderConfigurationRecord, AVCC and Annex-B NAL unit framing; a first
/// byte of 0xF0 to 0xF7 the AV1CodecConfigurationRecord (and AV1 OBU framing), 0xF8 and up
/// the OpusHead (and the SDP of an Opus track).
pub fn codec_config(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which >= 0xF8 {
        if let Ok(head) = codec::OpusHead::parse(rest) {
            let made = codec::OpusHead::for_channels(head.channels);
            assert!(
                codec::OpusHead::parse(&made).is_ok(),
                "own OpusHead refused"
            );
            let _ = sdp::opus_track("streamid=1".into(), 97, rest);
        }
        return;
    }
    if which >= 0xF0 {
        let _ = codec::av1_obus(rest);
        if let Ok(config) = codec::Av1Config::parse(rest) {
            assert!(codec::av1_obus(&config.config_obus).is_ok());
        }
        return;
    }
    match which % 6 {
        0 => {
            if let Ok(config) = AvcConfig::parse(rest) {
                let record = config.to_record();
                let again = AvcConfig::parse(&record);
                assert!(again.is_ok(), "own record refused: {again:?}");
                if let Ok(again) = again {
                    assert_eq!(again.sps, config.sps);
                    assert_eq!(again.pps, config.pps);
                }
            }
        }
        1 => {
            if let Ok(config) = AacConfig::parse(rest) {
                let asc = config.to_asc();
                assert!(AacConfig::parse(&asc).is_ok(), "own ASC refused");
                let _ = config.adts_header(rest.len().min(codec::ADTS_MAX_PAYLOAD));
            }
        }
        2 => {
            let _ = codec::parse_adts(rest);
        }
        3 => {
            if let Ok(sets) = sdp::hvcc_parameter_sets(rest) {
                let _ = codec::hevc_record(&sets);
                let _ = sdp::h265_track("streamid=0".into(), 96, rest);
            }
        }
        4 => {
            for size in 1..=4 {
                let _ = codec::avcc_nals(rest, size);
            }
        }
        _ => {
            let nals = codec::annexb_nals(rest);
            let avcc = codec::to_avcc(&nals);
            let _ = codec::avcc_nals(&avcc, 4);
            let sps: Vec<Bytes> = nals
                .iter()
                .filter(|n| codec::h264_nal_type(n) == codec::NAL_SPS)
                .map(|n| Bytes::copy_from_slice(n))
                .collect();
            let pps: Vec<Bytes> = nals
                .iter()
                .filter(|n| codec::h264_nal_type(n) == codec::NAL_PPS)
                .map(|n| Bytes::copy_from_slice(n))
                .collect();
            if let Ok(config) = AvcConfig::from_parameter_sets(sps, pps) {
                let _ = AvcConfig::parse(&config.to_record());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP-FLV
// ---------------------------------------------------------------------------------------------

/// An HTTP-FLV request head: [`http::parse_request`] on the bytes as they arrive (the parse is
/// retried on every read until the head is complete), then the target's stream path.
pub fn http_request(data: &[u8]) {
    let (control, stream) = data.split_first().map_or((0, &[][..]), |(c, s)| (*c, s));
    let mut buf = Vec::new();
    for piece in pieces(stream, control) {
        buf.extend_from_slice(piece);
        match http::parse_request(&buf) {
            Ok(Some((request, len))) => {
                assert!(len <= buf.len());
                let _ = http::flv_path(&request.target);
                if let Some(path) = http::hls_path(&request.target) {
                    // What the HLS handler goes on with: a name, an app without empty,
                    // `.` or `..` segments, the file as sent.
                    assert!(!path.name.is_empty() && !path.name.contains('/'));
                    assert!(path
                        .app
                        .split('/')
                        .all(|s| !s.is_empty() && s != "." && s != ".."));
                    assert!(!path.file.is_empty() && !path.file.contains('/'));
                }
                return;
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RTSP, SDP, RTP
// ---------------------------------------------------------------------------------------------

/// The description a play is answered with in [`rtsp_session`].
const PLAY_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=streamgate\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:streamid=0\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;\
config=1190\r\na=control:streamid=1\r\n";

/// An RTSP connection from its first byte: requests (with bodies: ANNOUNCE's SDP),
/// responses and `$` interleaved frames through [`RtspConnection`], every request accepted
/// as a session accepts it; the RTP and RTCP of an announced and recorded track go through
/// the depacketizer the session makes for it. The first byte picks how the rest is cut into
/// reads.
pub fn rtsp_session(data: &[u8]) {
    let (control, stream) = data.split_first().map_or((0, &[][..]), |(c, s)| (*c, s));
    let mut conn = RtspConnection::new("fuzz");
    let mut incoming = RtpPublish::new(&[]);
    let mut frames = Vec::new();
    let now = std::time::Instant::now();
    for piece in pieces(stream, control) {
        if conn.handle_input(piece).is_err() {
            return;
        }
        while let Some(event) = conn.poll_event() {
            match event {
                RtspEvent::Connect { request, .. } => {
                    let _ = conn.accept(request);
                }
                RtspEvent::PublishRequested {
                    request, tracks, ..
                } => {
                    incoming = RtpPublish::new(&tracks);
                    let _ = conn.accept(request);
                }
                RtspEvent::PlayRequested { request, .. } => {
                    let _ = conn.accept_describe(request, PLAY_SDP.to_owned());
                }
                RtspEvent::SetupRequested {
                    request, transport, ..
                } => {
                    let server = match transport.spec {
                        TransportSpec::Interleaved(channels) => ServerTransport::Interleaved {
                            channels: channels.unwrap_or((0, 1)),
                        },
                        TransportSpec::Udp { client_port } => ServerTransport::Udp {
                            client_port,
                            server_port: (20000, 20001),
                        },
                    };
                    let _ = conn.accept_setup(request, server);
                }
                RtspEvent::PlayStarted { request, .. } => {
                    let _ = conn.accept_play(request, Vec::new());
                    let _ = conn.send_interleaved(0, &[&[0x80, 96, 0, 0]]);
                }
                RtspEvent::Interleaved { channel, data } => {
                    let track = conn.setups().iter().find_map(|s| match s.transport {
                        ServerTransport::Interleaved { channels: (a, b) }
                            if s.record && (a == channel || b == channel) =>
                        {
                            Some((s.track, b == channel))
                        }
                        _ => None,
                    });
                    if let Some((Some(index), rtcp)) = track {
                        incoming.receive(index, rtcp, data, now, &mut frames);
                        frames.clear();
                    }
                }
                RtspEvent::RecordStarted | RtspEvent::Teardown | RtspEvent::Refused { .. } => {}
            }
        }
        let _ = conn.take_output();
        if conn.is_finished() {
            return;
        }
    }
}

/// RTSP framing alone: [`rtsp_message::decode`] on the bytes as they arrive, and the
/// `Transport` header of every request through [`ClientTransport::parse`].
pub fn rtsp_message(data: &[u8]) {
    let (control, stream) = data.split_first().map_or((0, &[][..]), |(c, s)| (*c, s));
    let mut buf = BytesMut::new();
    for piece in pieces(stream, control) {
        buf.extend_from_slice(piece);
        loop {
            match rtsp_message::decode(&mut buf) {
                Ok(Some(rtsp_message::Message::Request(request))) => {
                    if let Some(t) = request.header("transport") {
                        let _ = ClientTransport::parse(t);
                    }
                    let _ = request.cseq();
                    let _ = request.session();
                    let _ = crate::protocol::rtsp::stream_url(&request.url);
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// A session description (ANNOUNCE's body) through [`sdp::parse`], then what the session
/// makes of each track: the AAC AU-header layout and the codec config.
pub fn sdp(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(tracks) = sdp::parse(text) else {
        return;
    };
    for track in &tracks {
        let _ = track.track();
        let _ = AuHeaderLayout::from_fmtp(track);
        if let Some(config) = &track.config {
            match track.codec {
                Some(Codec::H264) => {
                    let _ = AvcConfig::parse(config);
                }
                Some(Codec::Aac) => {
                    let _ = AacConfig::parse(config);
                }
                Some(Codec::Opus) => {
                    assert!(
                        codec::OpusHead::parse(config).is_ok(),
                        "own OpusHead refused"
                    );
                }
                _ => {}
            }
        }
    }
    let _ = sdp::build("127.0.0.1", "fuzz", &tracks);
}

/// What the AV1 depacketizer hands on must be what the frame model promises: a config that
/// is a valid AV1CodecConfigurationRecord, a temporal unit of whole OBUs with size fields.
fn check_av1_frame(frame: &MediaFrame) {
    match frame.kind {
        FrameKind::Config => assert!(
            codec::Av1Config::parse(&frame.payload).is_ok(),
            "AV1 config refused"
        ),
        FrameKind::Media => assert!(
            codec::av1_obus(&frame.payload).is_ok(),
            "AV1 temporal unit is not whole OBUs"
        ),
    }
}

/// AV1 over RTP (the AOM's payload format): the first byte picks the part. Even: fuzzer
/// packets (laid out as in [`rtp_depacketize`]) through [`Av1Depacketizer`], whose frames
/// must be a valid record and whole OBUs. Odd: temporal units from the fuzzer's bytes (each a
/// 16-bit-length list of OBUs, made whole with size fields) through [`Av1Packetizer`] at a
/// fuzzed payload size and back; every unit must come back byte for byte.
pub fn rtp_av1(data: &[u8]) {
    let mut input = Input { data };
    let which = input.u8();
    if which & 1 == 0 {
        let mut depacketizer = Depacketizer::Av1(Av1Depacketizer::new());
        let mut frames = Vec::new();
        while !input.is_empty() {
            let packet = Bytes::copy_from_slice(input.piece());
            depacketizer.receive(packet, false, &mut frames);
            frames.drain(..).for_each(|f| check_av1_frame(&f));
        }
        return;
    }
    let max_payload = 64 + usize::from(input.u16()) % 1400;
    let mut frames = Vec::new();
    while !input.is_empty() && frames.len() < 32 {
        let flags = input.u8();
        let raw = input.piece();
        // OBUs of the fuzzer's types and lengths: a type byte and a length byte each, the
        // payload cycling through the bytes given. Types the format drops are skipped.
        let mut tu = BytesMut::new();
        let mut rest = raw;
        while rest.len() >= 2 {
            let obu_type = rest[0] & 0x0f;
            let len = usize::from(rest[1]);
            rest = &rest[2..];
            if matches!(obu_type, 0 | 2 | 8 | 15) {
                continue;
            }
            let extension = flags & 0x80 != 0;
            tu.extend_from_slice(&[(obu_type << 3) | 0x02 | if extension { 0x04 } else { 0 }]);
            if extension {
                tu.extend_from_slice(&[0x08]);
            }
            codec::write_leb128(&mut tu, len as u64);
            tu.extend((0..len).map(|i| rest.get(i % rest.len().max(1)).copied().unwrap_or(0)));
        }
        if tu.is_empty() {
            continue;
        }
        frames.push(MediaFrame {
            track: Track::Video,
            codec: Codec::Av1,
            kind: FrameKind::Media,
            dts: frames.len() as i64 * 40_000,
            pts: frames.len() as i64 * 40_000,
            keyframe: false,
            payload: tu.freeze(),
        });
    }
    let mut packetizer = Av1Packetizer::new(96, 9, input.u16(), RtpClock::new(90_000, 0));
    packetizer.set_max_payload(max_payload);
    let mut packets = Vec::new();
    for frame in &frames {
        if let Err(e) = packetizer.packetize(frame, &mut packets) {
            panic!("own temporal unit refused: {e:?}");
        }
    }
    for p in &packets {
        assert!(
            p.len() <= 12 + max_payload.max(64),
            "packet over the payload size"
        );
    }
    // The depacketizer starts at a keyframe with a sequence header: one goes first (libaom's
    // sequence header, and a one-byte KEY_FRAME frame OBU), from a packetizer of its own.
    let mut depacketizer = Av1Depacketizer::new();
    let key = MediaFrame {
        track: Track::Video,
        codec: Codec::Av1,
        kind: FrameKind::Media,
        dts: -40_000,
        pts: -40_000,
        keyframe: true,
        payload: Bytes::from_static(AV1_KEY_TU),
    };
    let mut first = Av1Packetizer::new(96, 9, 0, RtpClock::new(90_000, 0));
    let mut start = Vec::new();
    if let Err(e) = first.packetize(&key, &mut start) {
        panic!("keyframe refused: {e:?}");
    }
    let mut sequence = 0u16;
    let mut got = Vec::new();
    for p in start.into_iter().chain(packets) {
        let mut packet = match RtpPacket::parse(p) {
            Ok(packet) => packet,
            Err(e) => panic!("own packet refused: {e:?}"),
        };
        // One sequence of numbers across both packetizers, as one sender would send.
        packet.header.sequence = sequence;
        sequence = sequence.wrapping_add(1);
        if let Err(e) = depacketizer.push(&packet) {
            panic!("own payload refused: {e:?}");
        }
        while let Some(f) = depacketizer.pop() {
            check_av1_frame(&f);
            if f.kind == FrameKind::Media {
                got.push(f.payload);
            }
        }
    }
    let want: Vec<Bytes> = std::iter::once(key.payload)
        .chain(frames.into_iter().map(|f| f.payload))
        .collect();
    assert_eq!(got, want);
}

/// A keyframe temporal unit: libaom's sequence header OBU (FFmpeg 9, 320x240) and a frame
/// OBU whose one byte says show_existing_frame 0, frame_type KEY_FRAME.
const AV1_KEY_TU: &[u8] = &[
    0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xda, 0xf9, 0x00, 0x40, 0x32, 0x01, 0x10,
];

/// RTP depacketizers: the first byte picks H.264 (with or without a description config),
/// H.265, AAC (with an AU-header layout from the next three bytes) or MP4A-LATM (with the
/// number of subframes from the next byte); then packets, each a
/// 16-bit length and the datagram, some taken as RTCP (sender reports anchor the clock).
pub fn rtp_depacketize(data: &[u8]) {
    let mut input = Input { data };
    let which = input.u8();
    let mut depacketizer = match which % 5 {
        0 => Depacketizer::Video(Box::new(VideoDepacketizer::h264(None))),
        1 => Depacketizer::Video(Box::new(VideoDepacketizer::h264(Some(avc_record())))),
        2 => Depacketizer::Video(Box::new(VideoDepacketizer::h265(Vec::new()))),
        3 => Depacketizer::Latm(LatmDepacketizer::new(44_100, input.u8() % 64 + 1)),
        _ => {
            let layout = AuHeaderLayout {
                size_length: input.u8() % 17,
                index_length: input.u8() % 17,
                index_delta_length: input.u8() % 17,
            };
            let layout = if layout.size_length == 0 {
                AuHeaderLayout::AAC_HBR
            } else {
                layout
            };
            Depacketizer::Audio(AacDepacketizer::new(48_000, layout))
        }
    };
    let mut frames = Vec::new();
    while !input.is_empty() {
        let packet = Bytes::copy_from_slice(input.piece());
        depacketizer.receive(packet, false, &mut frames);
        frames.clear();
    }
}

/// A compound RTCP packet through [`parse_rtcp`].
pub fn rtcp(data: &[u8]) {
    let _ = is_rtcp(data);
    if let Ok(packets) = parse_rtcp(data) {
        for packet in packets {
            if let RtcpPacket::SenderReport { ntp, .. } = packet {
                let _ = ntp_to_unix_micros(ntp);
            }
        }
    }
}

/// x264's SPS and PPS for 320x240 (High, level 1.3), as FFmpeg announces them.
const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

/// [`SPS`] and [`PPS`] as an AVCDecoderConfigurationRecord.
fn avc_record() -> Bytes {
    match AvcConfig::from_parameter_sets(
        vec![Bytes::from_static(SPS)],
        vec![Bytes::from_static(PPS)],
    ) {
        Ok(config) => config.to_record(),
        Err(e) => panic!("x264's parameter sets refused: {e:?}"),
    }
}

/// A NAL unit body from fuzzer bytes that no Annex-B parser can split: no zero bytes (so no
/// start code and no emulation-prevention question), at least one byte after the header.
fn nal_body(header: u8, bytes: &[u8]) -> Vec<u8> {
    let mut nal = Vec::with_capacity(bytes.len() + 2);
    nal.push(header);
    // The top bit of the second byte: first_mb_in_slice is 0, a new picture starts.
    nal.push(0x80 | bytes.first().copied().unwrap_or(0));
    nal.extend(bytes.iter().skip(1).map(|&b| b.max(1)));
    nal
}

/// H.264 access units from fuzzer bytes: `count` frames 1 ms or more apart, the first an IDR,
/// each of one to three NAL units (SEI, slice), as AVCC payloads with `dts == pts`.
fn h264_frames(input: &mut Input<'_>, start_us: i64, max: usize) -> Vec<MediaFrame> {
    let mut frames = Vec::new();
    let mut time = start_us;
    while !input.is_empty() && frames.len() < max {
        let flags = input.u8();
        let key = frames.is_empty() || flags & 1 == 1;
        let mut nals = Vec::new();
        if flags & 2 != 0 {
            nals.push(nal_body(
                codec::NAL_SEI,
                input.take(usize::from(flags >> 4) + 1),
            ));
        }
        let len = usize::from(input.u16() % 6000);
        nals.push(nal_body(if key { 0x65 } else { 0x41 }, input.take(len)));
        let refs: Vec<&[u8]> = nals.iter().map(|n| &n[..]).collect();
        frames.push(MediaFrame {
            track: Track::Video,
            codec: Codec::H264,
            kind: FrameKind::Media,
            dts: time,
            pts: time,
            keyframe: key,
            payload: codec::to_avcc(&refs),
        });
        time += 1000 * (i64::from(input.u8()) + 1);
    }
    frames
}

/// A publisher's stream as an RTSP player's packetizer gets it: whatever codec config and
/// frames a publisher sent (over RTMP, RTSP or SRT) reach [`VideoPacketizer`] or
/// [`AacPacketizer`] unchanged. The first byte picks H.264, H.265 or AAC and the payload size;
/// then frames, each a flags byte (config or media, keyframe) and a 16-bit-length payload.
pub fn rtp_packetize(data: &[u8]) {
    let mut input = Input { data };
    let which = input.u8();
    let frames = publisher_frames(&mut input);
    let mut out = Vec::new();
    let clock = RtpClock::new(90_000, 0);
    match which % 3 {
        0 | 1 => {
            let mut packetizer = if which % 3 == 0 {
                VideoPacketizer::h264(96, 1, 0, clock)
            } else {
                VideoPacketizer::h265(96, 1, 0, clock)
            };
            packetizer.set_max_payload(usize::from(which) * 8);
            for frame in &frames {
                let _ = packetizer.packetize(frame, &mut out);
            }
        }
        _ => {
            let mut packetizer = AacPacketizer::new(97, 1, 0, RtpClock::new(48_000, 0));
            packetizer.set_max_payload(usize::from(which) * 8);
            for frame in frames.iter().filter(|f| f.kind == FrameKind::Media) {
                let _ = packetizer.packetize(frame, &mut out);
            }
        }
    }
    for packet in out {
        assert!(RtpPacket::parse(packet).is_ok(), "own packet refused");
    }
}

/// A publisher's stream as an SRT player's [`TsMuxer`] gets it: any codec configs and frames,
/// laid out as in [`rtp_packetize`] (the flags also pick the track).
pub fn ts_mux(data: &[u8]) {
    let mut input = Input { data };
    // The first byte picks the tracks the PMT declares from the start: none (added as
    // configs arrive), or H.264 or H.265 video with AAC, as a player of such a stream gets.
    let mut mux = match input.u8() % 4 {
        0 => TsMuxer::new(),
        1 => TsMuxer::with_tracks(Some(Codec::H264), Some(Codec::Aac)),
        2 => TsMuxer::with_tracks(Some(Codec::H265), Some(Codec::Aac)),
        _ => TsMuxer::with_tracks(Some(Codec::H264), Some(Codec::Opus)),
    };
    let mut out = Vec::new();
    for frame in publisher_frames(&mut input) {
        let _ = mux.mux(&frame, &mut out);
    }
    mux.flush(&mut out);
    for chunk in out {
        assert_eq!(chunk.len() % crate::protocol::ts::PACKET_SIZE, 0);
    }
}

/// Frames as a publisher may send them: each a flags byte (bit 0 config, bit 1 keyframe,
/// bit 2 audio, bit 3 H.265 or, for audio, Opus), a 16-bit-length payload; 40 ms apart.
fn publisher_frames(input: &mut Input<'_>) -> Vec<MediaFrame> {
    let mut frames = Vec::new();
    while !input.is_empty() && frames.len() < 256 {
        let flags = input.u8();
        let audio = flags & 4 != 0;
        let time = frames.len() as i64 * 40_000;
        frames.push(MediaFrame {
            track: if audio { Track::Audio } else { Track::Video },
            codec: match (audio, flags & 8 != 0) {
                (true, false) => Codec::Aac,
                (true, true) => Codec::Opus,
                (false, false) => Codec::H264,
                (false, true) => Codec::H265,
            },
            kind: if flags & 1 != 0 {
                FrameKind::Config
            } else {
                FrameKind::Media
            },
            dts: time,
            pts: time,
            keyframe: flags & 2 != 0,
            payload: Bytes::copy_from_slice(input.piece()),
        });
    }
    frames
}

/// RTP round trip: H.264 access units through [`VideoPacketizer`] and back through
/// [`VideoDepacketizer`] (single NAL, STAP-A, FU-A at a fuzzed payload size), and AAC frames
/// through [`AacPacketizer`] and [`AacDepacketizer`]; what comes out must be what went in.
pub fn rtp_roundtrip(data: &[u8]) {
    let mut input = Input { data };
    let which = input.u8();
    let max_payload = 64 + usize::from(input.u16()) % 1400;
    let sequence = input.u16();
    let offset = input.u32();
    if which & 1 == 0 {
        let frames = h264_frames(&mut input, 0, 64);
        let mut packetizer =
            VideoPacketizer::h264(96, 0x1234, sequence, RtpClock::new(90_000, offset));
        packetizer.set_max_payload(max_payload);
        if let Err(e) = packetizer.set_config(&avc_record()) {
            panic!("config refused: {e:?}");
        }
        let mut packets = Vec::new();
        for frame in &frames {
            if let Err(e) = packetizer.packetize(frame, &mut packets) {
                panic!("frame refused: {e:?}");
            }
        }
        let mut depacketizer = VideoDepacketizer::h264(Some(avc_record()));
        let mut got = Vec::new();
        for p in packets {
            let packet = match RtpPacket::parse(p) {
                Ok(packet) => packet,
                Err(e) => panic!("own packet refused: {e:?}"),
            };
            if let Err(e) = depacketizer.push(&packet) {
                panic!("own payload refused: {e:?}");
            }
            while let Some(f) = depacketizer.pop() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    } else {
        let mut frames = Vec::new();
        while !input.is_empty() && frames.len() < 64 {
            let len = usize::from(input.u16() % 3000) + 1;
            let payload = input.take(len);
            if payload.is_empty() {
                break;
            }
            frames.push(MediaFrame {
                track: Track::Audio,
                codec: Codec::Aac,
                kind: FrameKind::Media,
                // 1024 samples at 48 kHz, as the depacketizer counts them.
                dts: frames.len() as i64 * 21_333,
                pts: frames.len() as i64 * 21_333,
                keyframe: true,
                payload: Bytes::copy_from_slice(payload),
            });
        }
        let mut packetizer = AacPacketizer::new(97, 5, sequence, RtpClock::new(48_000, offset));
        packetizer.set_max_payload(max_payload);
        let mut packets = Vec::new();
        for frame in &frames {
            if let Err(e) = packetizer.packetize(frame, &mut packets) {
                panic!("frame refused: {e:?}");
            }
        }
        let mut depacketizer = AacDepacketizer::new(48_000, AuHeaderLayout::AAC_HBR);
        let mut got = Vec::new();
        for p in packets {
            let packet = match RtpPacket::parse(p) {
                Ok(packet) => packet,
                Err(e) => panic!("own packet refused: {e:?}"),
            };
            let _ = depacketizer.push(&packet);
            while let Some(f) = depacketizer.pop() {
                got.push(f.payload);
            }
        }
        let want: Vec<Bytes> = frames.into_iter().map(|f| f.payload).collect();
        assert_eq!(got, want);
    }
}

// ---------------------------------------------------------------------------------------------
// MPEG-TS and SRT
// ---------------------------------------------------------------------------------------------

/// MPEG-TS demux (an SRT publisher's payloads): [`TsDemuxer`] on the bytes as they arrive,
/// the first byte picking the read size; config frames go on through the codec parsers.
pub fn ts_demux(data: &[u8]) {
    let (control, stream) = data.split_first().map_or((0, &[][..]), |(c, s)| (*c, s));
    let mut demux = TsDemuxer::new();
    let check = |demux: &mut TsDemuxer| {
        while let Some(frame) = demux.poll_frame() {
            if frame.kind == FrameKind::Config {
                match frame.codec {
                    Codec::H264 => assert!(AvcConfig::parse(&frame.payload).is_ok()),
                    Codec::Aac => assert!(AacConfig::parse(&frame.payload).is_ok()),
                    Codec::Opus => assert!(codec::OpusHead::parse(&frame.payload).is_ok()),
                    Codec::H265 => {}
                    // The demuxer does not make it.
                    Codec::Av1 => unreachable!("TS demuxer made {:?}", frame.codec),
                }
            }
        }
    };
    for piece in pieces(stream, control) {
        demux.push(piece);
        check(&mut demux);
    }
    demux.finish();
    check(&mut demux);
    let _ = demux.stats();
}

/// The AudioSpecificConfig of the TS round trip: AAC LC, 48 kHz, stereo.
const TS_ASC: &[u8] = &[0x11, 0x90];

/// TS round trip: H.264 and AAC frames through [`TsMuxer`] and back through [`TsDemuxer`],
/// read in pieces of a fuzzed size; the media frames must come back with their timestamps,
/// keyframe flags and payloads.
pub fn ts_roundtrip(data: &[u8]) {
    let mut input = Input { data };
    let control = input.u8();
    // At least a second in: the PCR runs ahead of the first DTS.
    let start_us = 1_000_000 + i64::from(input.u32() % 1_000_000) * 1000;
    let video = h264_frames(&mut input, start_us, 48);
    let audio: Vec<MediaFrame> = (0..usize::from(control >> 4))
        .map(|k| MediaFrame {
            track: Track::Audio,
            codec: Codec::Aac,
            kind: FrameKind::Media,
            dts: start_us + k as i64 * 20_000,
            pts: start_us + k as i64 * 20_000,
            keyframe: true,
            payload: Bytes::from(vec![0x21; 10 + k * 37]),
        })
        .collect();
    let config = |track, codec, payload| MediaFrame {
        track,
        codec,
        kind: FrameKind::Config,
        dts: start_us,
        pts: start_us,
        keyframe: true,
        payload,
    };
    let mut source = vec![config(Track::Video, Codec::H264, avc_record())];
    if !audio.is_empty() {
        source.push(config(Track::Audio, Codec::Aac, Bytes::from_static(TS_ASC)));
    }
    // Interleave by decode time, video first at equal times.
    let mut media: Vec<MediaFrame> = video.iter().chain(&audio).cloned().collect();
    media.sort_by_key(|f| (f.dts, f.track == Track::Audio));
    source.extend(media);

    let mut mux = TsMuxer::new();
    let mut chunks = Vec::new();
    for frame in &source {
        if let Err(e) = mux.mux(frame, &mut chunks) {
            panic!("frame refused: {e:?}");
        }
    }
    mux.flush(&mut chunks);
    let ts: Vec<u8> = chunks.concat();

    let mut demux = TsDemuxer::new();
    let mut got = Vec::new();
    for piece in pieces(&ts, control) {
        demux.push(piece);
        while let Some(f) = demux.poll_frame() {
            got.push(f);
        }
    }
    demux.finish();
    while let Some(f) = demux.poll_frame() {
        got.push(f);
    }
    for (track, want) in [(Track::Video, &video), (Track::Audio, &audio)] {
        let got: Vec<&MediaFrame> = got
            .iter()
            .filter(|f| f.track == track && f.kind == FrameKind::Media)
            .collect();
        assert_eq!(got.len(), want.len(), "{track:?} frames");
        for (g, w) in got.iter().zip(want.iter()) {
            assert_eq!(
                (g.dts, g.pts, g.keyframe, g.codec),
                (w.dts, w.pts, w.keyframe, w.codec)
            );
            assert_eq!(g.payload, w.payload, "{track:?} payload at {}", w.dts);
        }
    }
}

/// An SRT streamid, as the caller's handshake carries it, through [`srt::StreamId::parse`].
pub fn srt_streamid(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = srt::StreamId::parse(text);
    let decoded = crate::protocol::srt::handshake::url_decoded_streamid(text);
    let _ = srt::StreamId::parse(&decoded);
}

/// An SRT datagram (handshakes with their extensions first of all) as the listener takes it:
/// [`crate::protocol::srt::check_datagram`], then `srt_protocol::packet::Packet::parse` for
/// what the check lets through. A panic there is a datagram the check should have refused.
pub fn srt_packet(data: &[u8]) {
    // As the SRT listener does: a datagram the check refuses never reaches srt-protocol, and
    // one it passes must parse without a panic.
    if crate::protocol::srt::check_datagram(data).is_ok() {
        let _ = srt_protocol::packet::Packet::parse(&mut std::io::Cursor::new(data), false);
    }
}

// ---------------------------------------------------------------------------------------------
// The business server's answers
// ---------------------------------------------------------------------------------------------

/// The bytes a business server answers a hook request with, through the hook client's
/// response parsing and decision ([`streamgate_actors::notify::decide_answer`]): whatever they
/// are, a decision comes back, and it allows only when a final `200` came before anything the
/// client could not read, and renames only for a `3xx` with a `Location`.
pub fn hook_answer(data: &[u8]) {
    use streamgate_actors::notify::Decision;
    match streamgate_actors::notify::decide_answer(data) {
        Decision::Allow => assert!(
            data.windows(4).any(|w| w == b" 200"),
            "allowed without a 200 in the answer"
        ),
        Decision::Rename { .. } => assert!(
            data.windows(2).any(|w| w == b" 3")
                && data
                    .windows(9)
                    .any(|w| w.eq_ignore_ascii_case(b"location:")),
            "renamed without a 3xx and a Location in the answer"
        ),
        Decision::Deny(_) => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// The XML configuration file through [`crate::config::Config::parse`].
pub fn config_xml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = crate::config::Config::parse(text) {
        let _ = config.hooks();
    }
}

/// An HLS request's last path component and query as a viewer sends them
/// (`seg12.m4s?s=abc`, `index.m3u8?_HLS_msn=12&_HLS_part=3`): the resource name through
/// [`crate::protocol::hls::playlist::Resource::parse`], the query through
/// [`crate::protocol::hls::playlist::Directives::parse`] and the blocking decision against a
/// live edge taken from the first bytes. The text also goes through the playlist validator.
pub fn hls_request(data: &[u8]) {
    use crate::protocol::hls::playlist::{blocking, Directives, LiveEdge, Resource};
    use crate::protocol::hls::{validate, Container};

    let word = |i: usize| {
        let mut b = [0u8; 8];
        for (k, v) in b.iter_mut().enumerate() {
            *v = data.get(i * 8 + k).copied().unwrap_or(0);
        }
        u64::from_le_bytes(b)
    };
    let edge = LiveEdge {
        open_msn: word(0),
        open_parts: word(1),
        ended: data.first().is_some_and(|b| b & 1 == 1),
    };
    let text = String::from_utf8_lossy(data);
    let (name, query) = text.split_once('?').unwrap_or((&text, ""));
    for container in [Container::Fmp4, Container::Ts] {
        if let Some(resource) = Resource::parse(name, container) {
            assert_eq!(
                Resource::parse(&resource.name(container), container),
                Some(resource)
            );
        }
    }
    if let Ok(d) = Directives::parse(query) {
        let _ = blocking(&d, &edge);
    }
    let _ = validate::check_media(&text);
}

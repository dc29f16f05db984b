//! The relay's wire format between two nodes: one message per length-delimited frame
//! (tokio-util's `LengthDelimitedCodec`: a 4-byte big-endian length, then the message).
//!
//! A message is a type byte and its body, big-endian throughout:
//!
//! | type | message | body |
//! |---|---|---|
//! | 1 | `Pull` (puller -> owner, first) | version u8, node u8+bytes, app u16+bytes, name u16+bytes, unix ms u64, HMAC-SHA256 of everything before it (32) |
//! | 2 | `Accepted` (owner) | — |
//! | 3 | `Refused` (owner, then close) | reason (UTF-8) |
//! | 4 | `Frame` | track u8, codec u8, kind u8, keyframe u8, dts i64, pts i64 (µs), payload |
//! | 5 | `Metadata` | count u16, then per entry: name u16+bytes, type u8 (0 number f64, 1 bool u8, 2 text u32+bytes) |
//! | 6 | `Live` | — (the snapshot is over: what follows is live) |
//! | 7 | `Keepalive` | — |
//! | 8 | `End` | — (the publisher left) |
//!
//! A `Frame` is a [`MediaFrame`] field by field, the payload as the server holds it: every
//! codec the server carries (H.264, H.265, AV1, AAC, Opus) crosses exactly, with microsecond
//! timestamps. Sans-IO: bytes in, messages out; no socket, no clock (the time is passed in).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ring::hmac;
use streamgate_actors::media::{
    Codec, FrameKind, MediaFrame, MetaValue, Metadata, StreamKey, Track,
};

/// The version a `Pull` carries.
pub const VERSION: u8 = 1;
/// Largest relay message accepted (a frame of the largest GOP the cache keeps).
pub const MAX_MESSAGE: usize = 32 << 20;
/// How far the pulling node's clock may be from the owner's.
pub const MAX_SKEW_MS: u64 = 30_000;

/// One relay message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Asks the owner for a stream (the first message of a connection).
    Pull(Pull),
    /// The owner serves it: the snapshot follows, then `Live`.
    Accepted,
    /// The owner refuses (bad signature, stream not here), then closes.
    Refused(String),
    /// A media or configuration frame.
    Frame(MediaFrame),
    /// New metadata.
    Metadata(Metadata),
    /// The snapshot (metadata, configs, the GOP) is over.
    Live,
    /// Nothing to send for a while; the connection is alive.
    Keepalive,
    /// The publisher left: the stream is over.
    End,
}

/// A signed request for one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Pull {
    /// The pulling node's `<node_id>`.
    pub node: String,
    /// The stream.
    pub key: StreamKey,
    /// When it was signed, Unix milliseconds.
    pub unix_ms: u64,
    /// HMAC-SHA256 over the message before it.
    pub mac: [u8; 32],
}

/// A message that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// It ends before its fields do.
    #[error("relay message truncated")]
    Truncated,
    /// A type, codec, track or kind byte that has no meaning.
    #[error("relay message has an unknown {0} byte {1}")]
    Unknown(&'static str, u8),
    /// A name that is not UTF-8.
    #[error("relay message has a name that is not UTF-8")]
    Utf8,
    /// A `Pull` of another version.
    #[error("relay version {0} is not supported")]
    Version(u8),
}

/// Why a `Pull` is not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The HMAC does not check: another secret, or altered bytes.
    #[error("the signature does not match the cluster secret")]
    Signature,
    /// Signed too far from now (a replay, or a clock off by more than 30 s).
    #[error("signed {0} ms away from this node's clock")]
    Skew(u64),
}

fn put_str8(out: &mut BytesMut, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(255)];
    out.put_u8(bytes.len() as u8);
    out.put_slice(bytes);
}

fn put_str16(out: &mut BytesMut, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(65535)];
    out.put_u16(bytes.len() as u16);
    out.put_slice(bytes);
}

/// The signed part of a `Pull`.
fn pull_body(node: &str, key: &StreamKey, unix_ms: u64) -> BytesMut {
    let mut out = BytesMut::with_capacity(16 + node.len() + key.app.len() + key.name.len());
    out.put_u8(1);
    out.put_u8(VERSION);
    put_str8(&mut out, node);
    put_str16(&mut out, &key.app);
    put_str16(&mut out, &key.name);
    out.put_u64(unix_ms);
    out
}

/// A signed `Pull` of `key` by `node` at `unix_ms`, encoded.
pub fn pull(secret: &hmac::Key, node: &str, key: &StreamKey, unix_ms: u64) -> Bytes {
    let mut out = pull_body(node, key, unix_ms);
    let tag = hmac::sign(secret, &out);
    out.put_slice(tag.as_ref());
    out.freeze()
}

/// Checks a `Pull`'s signature and age against `now_ms`.
pub fn verify(secret: &hmac::Key, pull: &Pull, now_ms: u64) -> Result<(), AuthError> {
    let body = pull_body(&pull.node, &pull.key, pull.unix_ms);
    hmac::verify(secret, &body, &pull.mac).map_err(|_| AuthError::Signature)?;
    let skew = now_ms.abs_diff(pull.unix_ms);
    if skew > MAX_SKEW_MS {
        return Err(AuthError::Skew(skew));
    }
    Ok(())
}

fn track_byte(track: Track) -> u8 {
    match track {
        Track::Video => 0,
        Track::Audio => 1,
    }
}

fn codec_byte(codec: Codec) -> u8 {
    match codec {
        Codec::H264 => 0,
        Codec::H265 => 1,
        Codec::Aac => 2,
        Codec::Av1 => 3,
        Codec::Opus => 4,
    }
}

/// Encodes a message other than `Pull` (see [`pull`]).
pub fn encode(message: &Message) -> Bytes {
    let mut out = BytesMut::new();
    match message {
        Message::Pull(_) => unreachable_pull(&mut out),
        Message::Accepted => out.put_u8(2),
        Message::Refused(reason) => {
            out.put_u8(3);
            out.put_slice(reason.as_bytes());
        }
        Message::Frame(frame) => {
            out.reserve(19 + frame.payload.len());
            out.put_u8(4);
            out.put_u8(track_byte(frame.track));
            out.put_u8(codec_byte(frame.codec));
            out.put_u8(match frame.kind {
                FrameKind::Config => 0,
                FrameKind::Media => 1,
            });
            out.put_u8(u8::from(frame.keyframe));
            out.put_i64(frame.dts);
            out.put_i64(frame.pts);
            out.put_slice(&frame.payload);
        }
        Message::Metadata(metadata) => {
            out.put_u8(5);
            let entries = &metadata.entries[..metadata.entries.len().min(65535)];
            out.put_u16(entries.len() as u16);
            for (name, value) in entries {
                put_str16(&mut out, name);
                match value {
                    MetaValue::Number(n) => {
                        out.put_u8(0);
                        out.put_f64(*n);
                    }
                    MetaValue::Bool(b) => {
                        out.put_u8(1);
                        out.put_u8(u8::from(*b));
                    }
                    MetaValue::Text(t) => {
                        out.put_u8(2);
                        out.put_u32(t.len() as u32);
                        out.put_slice(t.as_bytes());
                    }
                }
            }
        }
        Message::Live => out.put_u8(6),
        Message::Keepalive => out.put_u8(7),
        Message::End => out.put_u8(8),
    }
    out.freeze()
}

/// A `Pull` is encoded by [`pull`], which signs it; encoding one unsigned is a refusal.
fn unreachable_pull(out: &mut BytesMut) {
    out.put_u8(3);
    out.put_slice(b"unsigned pull");
}

fn need(buf: &Bytes, n: usize) -> Result<(), WireError> {
    if buf.remaining() < n {
        Err(WireError::Truncated)
    } else {
        Ok(())
    }
}

fn get_str(buf: &mut Bytes, len: usize) -> Result<String, WireError> {
    need(buf, len)?;
    String::from_utf8(buf.split_to(len).to_vec()).map_err(|_| WireError::Utf8)
}

/// Decodes one message (the bytes of one length-delimited frame).
pub fn decode(mut buf: Bytes) -> Result<Message, WireError> {
    need(&buf, 1)?;
    let ty = buf.get_u8();
    Ok(match ty {
        1 => {
            need(&buf, 2)?;
            let version = buf.get_u8();
            if version != VERSION {
                return Err(WireError::Version(version));
            }
            let len = usize::from(buf.get_u8());
            let node = get_str(&mut buf, len)?;
            need(&buf, 2)?;
            let len = usize::from(buf.get_u16());
            let app = get_str(&mut buf, len)?;
            need(&buf, 2)?;
            let len = usize::from(buf.get_u16());
            let name = get_str(&mut buf, len)?;
            need(&buf, 8 + 32)?;
            let unix_ms = buf.get_u64();
            let mut mac = [0u8; 32];
            buf.copy_to_slice(&mut mac);
            Message::Pull(Pull {
                node,
                key: StreamKey::new(app, name),
                unix_ms,
                mac,
            })
        }
        2 => Message::Accepted,
        3 => Message::Refused(String::from_utf8_lossy(&buf).into_owned()),
        4 => {
            need(&buf, 20)?;
            let track = match buf.get_u8() {
                0 => Track::Video,
                1 => Track::Audio,
                b => return Err(WireError::Unknown("track", b)),
            };
            let codec = match buf.get_u8() {
                0 => Codec::H264,
                1 => Codec::H265,
                2 => Codec::Aac,
                3 => Codec::Av1,
                4 => Codec::Opus,
                b => return Err(WireError::Unknown("codec", b)),
            };
            let kind = match buf.get_u8() {
                0 => FrameKind::Config,
                1 => FrameKind::Media,
                b => return Err(WireError::Unknown("kind", b)),
            };
            let keyframe = buf.get_u8() != 0;
            let dts = buf.get_i64();
            let pts = buf.get_i64();
            Message::Frame(MediaFrame {
                track,
                codec,
                kind,
                dts,
                pts,
                keyframe,
                payload: buf,
            })
        }
        5 => {
            need(&buf, 2)?;
            let count = buf.get_u16();
            let mut entries = Vec::with_capacity(usize::from(count).min(256));
            for _ in 0..count {
                need(&buf, 2)?;
                let len = usize::from(buf.get_u16());
                let name = get_str(&mut buf, len)?;
                need(&buf, 1)?;
                let value = match buf.get_u8() {
                    0 => {
                        need(&buf, 8)?;
                        MetaValue::Number(buf.get_f64())
                    }
                    1 => {
                        need(&buf, 1)?;
                        MetaValue::Bool(buf.get_u8() != 0)
                    }
                    2 => {
                        need(&buf, 4)?;
                        let len = buf.get_u32() as usize;
                        MetaValue::Text(get_str(&mut buf, len)?)
                    }
                    b => return Err(WireError::Unknown("metadata value", b)),
                };
                entries.push((name, value));
            }
            Message::Metadata(Metadata { entries })
        }
        6 => Message::Live,
        7 => Message::Keepalive,
        8 => Message::End,
        b => return Err(WireError::Unknown("message type", b)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef")
    }

    #[test]
    fn every_codec_crosses_exactly() {
        for (track, codec) in [
            (Track::Video, Codec::H264),
            (Track::Video, Codec::H265),
            (Track::Video, Codec::Av1),
            (Track::Audio, Codec::Aac),
            (Track::Audio, Codec::Opus),
        ] {
            for kind in [FrameKind::Config, FrameKind::Media] {
                let frame = MediaFrame {
                    track,
                    codec,
                    kind,
                    dts: -1_234_567,
                    pts: 9_876_543_210,
                    keyframe: kind == FrameKind::Media,
                    payload: Bytes::from_static(b"\x00\x00\x00\x02\x65\x88"),
                };
                let message = Message::Frame(frame);
                assert_eq!(decode(encode(&message)), Ok(message));
            }
        }
    }

    #[test]
    fn metadata_and_control_messages_round_trip() {
        let metadata = Metadata {
            entries: vec![
                ("width".into(), MetaValue::Number(1280.0)),
                ("stereo".into(), MetaValue::Bool(true)),
                ("encoder".into(), MetaValue::Text("Lavf59 ü".into())),
            ],
        };
        for message in [
            Message::Metadata(metadata),
            Message::Accepted,
            Message::Refused("no such stream here".into()),
            Message::Live,
            Message::Keepalive,
            Message::End,
        ] {
            assert_eq!(decode(encode(&message)), Ok(message));
        }
    }

    #[test]
    fn a_pull_is_signed_and_checked() {
        let stream = StreamKey::new("live", "cam1");
        let bytes = pull(&key(), "node-b", &stream, 1_000_000);
        let Ok(Message::Pull(p)) = decode(bytes.clone()) else {
            panic!("not a pull");
        };
        assert_eq!((p.node.as_str(), &p.key), ("node-b", &stream));
        assert_eq!(verify(&key(), &p, 1_010_000), Ok(()));
        assert_eq!(verify(&key(), &p, 1_040_001), Err(AuthError::Skew(40_001)));
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"another-secret-16");
        assert_eq!(verify(&other, &p, 1_000_000), Err(AuthError::Signature));
        // The name changed in transit: the signature no longer matches.
        let mut forged = p.clone();
        forged.key.name = "cam2".into();
        assert_eq!(
            verify(&key(), &forged, 1_000_000),
            Err(AuthError::Signature)
        );
    }

    #[test]
    fn truncated_and_unknown_bytes_are_errors_not_panics() {
        let frame = encode(&Message::Frame(MediaFrame {
            track: Track::Video,
            codec: Codec::H264,
            kind: FrameKind::Media,
            dts: 0,
            pts: 0,
            keyframe: true,
            payload: Bytes::new(),
        }));
        for len in 0..frame.len() {
            assert!(decode(frame.slice(..len)).is_err(), "{len}");
        }
        let pulled = pull(&key(), "n", &StreamKey::new("a", "b"), 5);
        for len in 0..pulled.len() {
            assert!(decode(pulled.slice(..len)).is_err(), "{len}");
        }
        assert_eq!(
            decode(Bytes::from_static(&[99])),
            Err(WireError::Unknown("message type", 99))
        );
        assert_eq!(
            decode(Bytes::from_static(&[5, 0, 1, 0, 1, b'x', 9])),
            Err(WireError::Unknown("metadata value", 9))
        );
    }
}

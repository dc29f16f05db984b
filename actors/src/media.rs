//! The one media model all protocols convert to and from.
//!
//! A [`MediaFrame`] is one access unit (or one codec configuration record) with timestamps in
//! microseconds and its payload as shared [`Bytes`]: fanning a frame out to a thousand players
//! clones a reference count, never the payload. Protocol framing (FLV tags, RTP packets, TS
//! packets) never appears here.

use std::fmt;

use bytes::Bytes;

/// Identifies a live stream: the application and the stream name, both without any query.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    /// Application name, e.g. `live`.
    pub app: String,
    /// Stream name, e.g. `cam1`.
    pub name: String,
}

impl StreamKey {
    /// A key from its two parts.
    pub fn new(app: impl Into<String>, name: impl Into<String>) -> Self {
        StreamKey {
            app: app.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.name)
    }
}

/// Which track a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    /// The video track.
    Video,
    /// The audio track.
    Audio,
}

/// The codec of a frame, which fixes the payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264: payload is length-prefixed (4-byte) NAL units; config is an
    /// AVCDecoderConfigurationRecord (ISO 14496-15).
    H264,
    /// H.265: payload is length-prefixed (4-byte) NAL units; config is an
    /// HEVCDecoderConfigurationRecord (ISO 14496-15).
    H265,
    /// AAC: payload is one raw access unit (no ADTS header); config is an
    /// AudioSpecificConfig (ISO 14496-3).
    Aac,
    /// AV1: payload is one temporal unit of OBUs in the low overhead bitstream format (each
    /// OBU with its size field), as in ISOBMFF; config is an AV1CodecConfigurationRecord
    /// (`av1C`, AV1 in ISOBMFF §2.3).
    Av1,
    /// Opus: payload is one Opus packet (RFC 6716); config is the identification header
    /// `OpusHead` (RFC 7845 §5.1). Timestamps at 48 kHz.
    Opus,
}

/// Whether a frame carries media or the decoder configuration needed to decode it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A decoder configuration record; players must get it before any media of its track.
    Config,
    /// One access unit.
    Media,
}

/// Timestamps are in microseconds.
pub const TIMESCALE: i64 = 1_000_000;

/// One access unit or configuration record of one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFrame {
    /// Which track.
    pub track: Track,
    /// Which codec, fixing the payload format.
    pub codec: Codec,
    /// Media or configuration.
    pub kind: FrameKind,
    /// Decode time in microseconds, from the publisher's clock.
    pub dts: i64,
    /// Presentation time in microseconds (`pts >= dts` for B-frames).
    pub pts: i64,
    /// True for a video frame a decoder can start at (IDR); true for every audio frame.
    pub keyframe: bool,
    /// The payload, shared among every subscriber.
    pub payload: Bytes,
}

impl MediaFrame {
    /// True when a player that lost data may resume at this frame: a video keyframe.
    pub fn is_video_keyframe(&self) -> bool {
        self.track == Track::Video && self.kind == FrameKind::Media && self.keyframe
    }

    /// The frame with a payload that is the only view of its allocation: copied when it is a
    /// view into a buffer it shares (an RTMP message cut from the connection's read buffer,
    /// AAC units cut from one RTP packet or PES). A stream holds frames for seconds (its GOP
    /// cache); held as views, they would keep whole read buffers alive, and a holder could
    /// not tell from the payload (`Bytes::is_unique`) when nobody else holds the frame.
    pub fn with_own_payload(mut self) -> Self {
        if !self.payload.is_unique() {
            self.payload = Bytes::copy_from_slice(&self.payload);
        }
        self
    }
}

/// One value of stream metadata (FLV `onMetaData`, SDP attributes and the like).
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// A number.
    Number(f64),
    /// A flag.
    Bool(bool),
    /// A string.
    Text(String),
}

/// Descriptive stream metadata (width, height, frame rate, encoder, ...), in the order the
/// publisher gave it. Informational: players must not need it to decode.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metadata {
    /// Name/value pairs.
    pub entries: Vec<(String, MetaValue)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: Bytes) -> MediaFrame {
        MediaFrame {
            track: Track::Audio,
            codec: Codec::Aac,
            kind: FrameKind::Media,
            dts: 0,
            pts: 0,
            keyframe: true,
            payload,
        }
    }

    #[test]
    fn a_payload_cut_from_a_shared_buffer_is_copied_and_an_own_one_is_kept() {
        let read = Bytes::from(vec![7u8; 4096]);
        let cut = frame(read.slice(100..200)).with_own_payload();
        assert_eq!(&cut.payload[..], &read[100..200]);
        assert!(
            cut.payload.is_unique(),
            "no longer a view into the read buffer"
        );
        assert!(!std::ptr::eq(cut.payload.as_ptr(), read[100..].as_ptr()));

        let own = Bytes::from(vec![1u8; 64]);
        let at = own.as_ptr();
        let kept = frame(own).with_own_payload();
        assert_eq!(kept.payload.as_ptr(), at, "not copied");
    }
}

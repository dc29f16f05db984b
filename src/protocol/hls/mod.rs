//! HLS and Low-Latency HLS (RFC 8216, draft-pantos-hls-rfc8216bis) as a sans-IO core:
//! media frames in, segments, partial segments and playlists out. No actix, no sockets, no
//! clock reads: time comes from the frames' timestamps.
//!
//! - [`segmenter`]: cuts one stream's frames into segments (each starting on a video
//!   keyframe, at least the target duration long) and partial segments (at most the part
//!   target), numbers them, keeps the last N, and builds each part's bytes once as shared
//!   [`bytes::Bytes`] (CMAF fMP4 fragments or MPEG-TS packets).
//! - [`fmp4`]: the CMAF init segment and media fragments.
//! - [`playlist`]: media and multivariant playlists, the resource names the URIs use, and
//!   the blocking-reload decision for `_HLS_msn` / `_HLS_part`.
//! - [`session_id`]: the signed, expiring session id a viewer carries in its URIs.
//! - [`validate`]: checks a served playlist (and a succession of them) against the RFC rules
//!   players rely on; used by the tests against every playlist served.
//!
//! A server keeps one [`segmenter::Segmenter`] per stream and serves every viewer from it.

pub mod fmp4;
pub mod playlist;
pub mod segmenter;
pub mod session_id;
pub mod validate;

use streamgate_actors::media::Codec;

use crate::protocol::codec::CodecError;

/// Why the HLS core cannot package a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HlsError {
    /// The stream has neither a video nor an audio track HLS can carry.
    #[error("no track HLS can carry")]
    NoTracks,
    /// A codec the chosen container does not carry here.
    #[error("{0:?} is not carried in this HLS container")]
    Unsupported(Codec),
    /// A codec configuration record that cannot be read.
    #[error("bad codec configuration: {0}")]
    Config(String),
    /// An ISO BMFF box could not be written.
    #[error("MP4 box: {0}")]
    Mp4(String),
    /// A codec config frame that changes a track the segmenter was built for (the payload
    /// format of its init segment or TS parameter sets): start a new segmenter.
    #[error("the {0:?} codec configuration changed")]
    ConfigChanged(streamgate_actors::media::Track),
    /// A fragment over 2 GiB.
    #[error("fragment too large")]
    TooLarge,
}

impl From<CodecError> for HlsError {
    fn from(e: CodecError) -> Self {
        HlsError::Config(e.to_string())
    }
}

/// The container of segments and parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Container {
    /// CMAF fragmented MP4: an init segment (`EXT-X-MAP`) and `moof`+`mdat` fragments.
    /// H.264, H.265, AAC and Opus.
    #[default]
    Fmp4,
    /// MPEG-TS (for old players), written by [`crate::protocol::ts::TsMuxer`]. H.264, H.265,
    /// AAC and Opus.
    Ts,
}

/// How a stream is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HlsConfig {
    /// Least segment duration in microseconds: a segment ends on the first video keyframe
    /// at least this far after its start.
    pub segment_us: i64,
    /// Part target in microseconds (`EXT-X-PART-INF:PART-TARGET`); every part is at most
    /// this long unless one frame interval alone is longer.
    pub part_us: i64,
    /// Complete segments kept (and listed).
    pub segments_kept: usize,
    /// The container.
    pub container: Container,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            segment_us: 2_000_000,
            part_us: 200_000,
            segments_kept: 7,
            container: Container::Fmp4,
        }
    }
}

/// Synthetic streams for the unit tests: H.264 (a real SPS/PPS) and AAC LC 48 kHz stereo.
#[cfg(test)]
pub(crate) mod fixtures {
    use bytes::Bytes;
    use streamgate_actors::media::{Codec, FrameKind, MediaFrame, Track};

    use crate::protocol::codec::AvcConfig;

    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    /// AAC LC, 48 kHz, stereo.
    pub const ASC: &[u8] = &[0x11, 0x90];

    pub fn avc_record() -> Bytes {
        AvcConfig::from_parameter_sets(vec![Bytes::from_static(SPS)], vec![Bytes::from_static(PPS)])
            .expect("valid sets")
            .to_record()
    }

    pub fn config(track: Track) -> MediaFrame {
        let (codec, payload) = match track {
            Track::Video => (Codec::H264, avc_record()),
            Track::Audio => (Codec::Aac, Bytes::from_static(ASC)),
        };
        MediaFrame {
            track,
            codec,
            kind: FrameKind::Config,
            dts: 0,
            pts: 0,
            keyframe: true,
            payload,
        }
    }

    /// A video access unit: one length-prefixed IDR or non-IDR slice tagged with `n`.
    pub fn video(n: usize, dts: i64, pts: i64, key: bool) -> MediaFrame {
        let nal = if key { 0x65 } else { 0x41 };
        let tag = (n as u32).to_be_bytes();
        MediaFrame {
            track: Track::Video,
            codec: Codec::H264,
            kind: FrameKind::Media,
            dts,
            pts,
            keyframe: key,
            payload: Bytes::from(vec![0, 0, 0, 5, nal, tag[0], tag[1], tag[2], tag[3]]),
        }
    }

    pub fn audio(n: usize, dts: i64) -> MediaFrame {
        MediaFrame {
            track: Track::Audio,
            codec: Codec::Aac,
            kind: FrameKind::Media,
            dts,
            pts: dts,
            keyframe: true,
            payload: Bytes::from(vec![0x21, (n % 251) as u8, 0x80]),
        }
    }

    /// `seconds` of a stream in decode order: video at `fps` with a keyframe every `gop`
    /// frames (every other non-key frame shown one frame later, like a B-frame stream's
    /// composition offsets), AAC frames over the same time.
    pub fn stream(
        seconds: f64,
        fps: i64,
        gop: usize,
        with_video: bool,
        with_audio: bool,
    ) -> Vec<MediaFrame> {
        let end = (seconds * 1e6) as i64;
        let mut frames = Vec::new();
        if with_video {
            let mut n = 0;
            loop {
                let dts = n as i64 * 1_000_000 / fps;
                if dts >= end {
                    break;
                }
                let key = n % gop == 0;
                let pts = if !key && n % 2 == 1 {
                    dts + 1_000_000 / fps
                } else {
                    dts
                };
                frames.push(video(n, dts, pts, key));
                n += 1;
            }
        }
        if with_audio {
            let mut n = 0;
            loop {
                let dts = n as i64 * 1024 * 1_000_000 / 48_000;
                if dts >= end {
                    break;
                }
                frames.push(audio(n, dts));
                n += 1;
            }
        }
        // Decode order, video first at equal times.
        frames.sort_by_key(|f| (f.dts, f.track == Track::Audio));
        frames
    }
}

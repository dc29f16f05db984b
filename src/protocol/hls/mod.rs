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
//! - [`validate`]: checks a served playlist (and a succession of them) against the RFC rules
//!   players rely on; used by the tests against every playlist served.
//!
//! A server keeps one [`segmenter::Segmenter`] per stream and serves every viewer from it.

pub mod fmp4;
pub mod playlist;
pub mod segmenter;
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

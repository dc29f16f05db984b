//! Playlists (RFC 8216 §4, draft-pantos-hls-rfc8216bis for Low-Latency HLS), the resource
//! names their URIs use, and the blocking playlist reload decision (`_HLS_msn`,
//! `_HLS_part`, `_HLS_skip`).
//!
//! Every URI gets a caller-given suffix (for example `?s=<session id>`) so a server can tie
//! later requests to a viewer. The query parser is the only code here that reads client
//! input: it returns an error for anything malformed and never panics.

use std::fmt::Write as _;

use streamgate_actors::media::Codec;

use crate::protocol::codec::{video_dimensions, AacConfig};

use super::segmenter::{PartRef, Segmenter};
use super::Container;

/// Parts ahead of the last one a blocking request may ask for before it is a bad request
/// (rfc8216bis §6.2.5.2, the Advance Part Limit).
pub const ADVANCE_PART_LIMIT: u64 = 3;
/// Segments past the last listed one a blocking request may ask for (rfc8216bis §6.2.5.2:
/// "plus two").
pub const ADVANCE_SEGMENT_LIMIT: u64 = 2;
/// Largest part index a request for a future segment may name: no segment is cut into more.
pub const MAX_PART_INDEX: u64 = 10_000;

/// A resource of one stream's HLS output, by the file name its URI uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// The fMP4 init segment, `init.mp4`.
    Init,
    /// A media segment, `seg<msn>.m4s` / `seg<msn>.ts`.
    Segment(u64),
    /// A partial segment, `part<msn>.<index>.m4s` / `.ts`.
    Part(PartRef),
}

impl Resource {
    /// The file name of this resource in `container`.
    pub fn name(&self, container: Container) -> String {
        let ext = match container {
            Container::Fmp4 => "m4s",
            Container::Ts => "ts",
        };
        match self {
            Resource::Init => "init.mp4".to_owned(),
            Resource::Segment(msn) => format!("seg{msn}.{ext}"),
            Resource::Part(p) => format!("part{}.{}.{ext}", p.msn, p.part),
        }
    }

    /// The resource a file name (the last path component, without query) names, in
    /// `container`; `None` for anything else.
    pub fn parse(name: &str, container: Container) -> Option<Resource> {
        let ext = match container {
            Container::Fmp4 => ".m4s",
            Container::Ts => ".ts",
        };
        if name == "init.mp4" {
            return (container == Container::Fmp4).then_some(Resource::Init);
        }
        let stem = name.strip_suffix(ext)?;
        if let Some(msn) = stem.strip_prefix("seg") {
            return Some(Resource::Segment(decimal(msn)?));
        }
        let (msn, part) = stem.strip_prefix("part")?.split_once('.')?;
        Some(Resource::Part(PartRef {
            msn: decimal(msn)?,
            part: decimal(part)?,
        }))
    }
}

/// A decimal-integer (RFC 8216 §4.2): ASCII digits only, fitting 64 bits.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The delivery directives of a playlist request's query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Directives {
    /// `_HLS_msn`: block until this segment (or, with `part`, this part) is listed.
    pub msn: Option<u64>,
    /// `_HLS_part`: the part index within `msn`.
    pub part: Option<u64>,
    /// `_HLS_skip=YES` (or `v2`): a playlist delta update is asked for.
    pub skip: bool,
}

/// A malformed delivery directive: answer `400 Bad Request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectiveError {
    /// A directive whose value is not a decimal integer (or YES/v2 for `_HLS_skip`).
    #[error("bad value for {0}")]
    BadValue(&'static str),
    /// `_HLS_part` without `_HLS_msn` (rfc8216bis §6.2.5.2).
    #[error("_HLS_part without _HLS_msn")]
    PartWithoutMsn,
}

impl Directives {
    /// Reads the directives from a raw query string (without `?`); other parameters (a
    /// session id, a token) are ignored.
    pub fn parse(query: &str) -> Result<Directives, DirectiveError> {
        let mut out = Directives::default();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "_HLS_msn" => {
                    out.msn = Some(decimal(value).ok_or(DirectiveError::BadValue("_HLS_msn"))?)
                }
                "_HLS_part" => {
                    out.part = Some(decimal(value).ok_or(DirectiveError::BadValue("_HLS_part"))?)
                }
                "_HLS_skip" => {
                    out.skip = match value {
                        "YES" | "v2" => true,
                        _ => return Err(DirectiveError::BadValue("_HLS_skip")),
                    }
                }
                _ => {}
            }
        }
        if out.part.is_some() && out.msn.is_none() {
            return Err(DirectiveError::PartWithoutMsn);
        }
        Ok(out)
    }
}

/// Where the live edge of a stream is: what a blocking request is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveEdge {
    /// Media sequence number of the segment being filled.
    pub open_msn: u64,
    /// Parts of it completed so far.
    pub open_parts: u64,
    /// The stream ended: every request is answered now.
    pub ended: bool,
}

impl LiveEdge {
    /// The live edge of `segmenter`.
    pub fn of(segmenter: &Segmenter) -> LiveEdge {
        LiveEdge {
            open_msn: segmenter.open_msn(),
            open_parts: segmenter.open_parts().len() as u64,
            ended: segmenter.ended(),
        }
    }
}

/// What to do with a blocking playlist request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocking {
    /// The playlist already lists what was asked for (or no blocking was asked): answer.
    Now,
    /// Hold the request until the segmenter progresses, then decide again.
    Wait,
    /// Too far ahead of the live edge: `400 Bad Request` (rfc8216bis §6.2.5.2).
    OutOfRange,
}

/// Decides a playlist request with delivery directives `d` against the live edge: answer
/// now, wait, or refuse. A request for a part past the last one of a complete segment is
/// answered (a later part is listed).
pub fn blocking(d: &Directives, edge: &LiveEdge) -> Blocking {
    let Some(msn) = d.msn else {
        return Blocking::Now;
    };
    if edge.ended {
        return Blocking::Now;
    }
    if msn > edge.open_msn.saturating_add(ADVANCE_SEGMENT_LIMIT) {
        return Blocking::OutOfRange;
    }
    if msn < edge.open_msn {
        return Blocking::Now;
    }
    match d.part {
        // The segment itself, complete.
        None => Blocking::Wait,
        Some(part) if msn == edge.open_msn => {
            if part < edge.open_parts {
                Blocking::Now
            } else if part > edge.open_parts.saturating_add(ADVANCE_PART_LIMIT - 1) {
                Blocking::OutOfRange
            } else {
                Blocking::Wait
            }
        }
        Some(part) if part > MAX_PART_INDEX => Blocking::OutOfRange,
        Some(_) => Blocking::Wait,
    }
}

/// How a media playlist is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaOptions<'a> {
    /// Appended to every URI (for example `?s=abc`); empty for none.
    pub suffix: &'a str,
    /// Low-Latency HLS: parts, preload hint, server control.
    pub low_latency: bool,
    /// A delta update (`_HLS_skip`) was asked for: older segments are replaced by
    /// `EXT-X-SKIP` where the skip boundary allows.
    pub skip: bool,
}

/// Seconds as a decimal-floating-point with up to five decimals (rounded to 10 µs).
fn secs(us: i64) -> String {
    let tens = (us.max(0) + 5) / 10;
    let s = format!("{}.{:05}", tens / 100_000, tens % 100_000);
    let s = s.trim_end_matches('0');
    s.strip_suffix('.')
        .map_or_else(|| s.to_owned(), |s| format!("{s}.0"))
}

/// `EXT-X-TARGETDURATION`: the configured segment duration rounded up, or the longest
/// listed segment rounded to nearest if longer (RFC 8216 §4.3.3.1).
pub fn target_duration(segmenter: &Segmenter) -> u64 {
    let configured = (segmenter.config().segment_us.max(1) + 999_999) / 1_000_000;
    let longest = segmenter
        .segments()
        .iter()
        .map(|s| (s.duration_us + 500_000) / 1_000_000)
        .max()
        .unwrap_or(0);
    configured.max(longest).max(1) as u64
}

/// The media playlist of `segmenter`'s stream.
pub fn media_playlist(segmenter: &Segmenter, opts: &MediaOptions<'_>) -> String {
    let config = segmenter.config();
    let container = config.container;
    let sfx = opts.suffix;
    let target = target_duration(segmenter);
    let target_us = target as i64 * 1_000_000;
    let skip_until_us = 6 * target_us;
    let segments = segmenter.segments();

    // Delta update: skip the oldest segments while what stays lasts at least CAN-SKIP-UNTIL.
    let mut skipped = 0usize;
    if opts.low_latency && opts.skip {
        let open_us: i64 = segmenter.open_parts().iter().map(|p| p.duration_us).sum();
        let mut remaining: i64 = segments.iter().map(|s| s.duration_us).sum::<i64>() + open_us;
        for s in segments {
            if remaining - s.duration_us < skip_until_us {
                break;
            }
            remaining -= s.duration_us;
            skipped += 1;
        }
    }
    let version = if skipped > 0 {
        9
    } else if opts.low_latency || container == Container::Fmp4 {
        6
    } else {
        3
    };

    let mut out = String::with_capacity(256 + 160 * segments.len());
    let _ = writeln!(out, "#EXTM3U");
    let _ = writeln!(out, "#EXT-X-VERSION:{version}");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(out, "#EXT-X-INDEPENDENT-SEGMENTS");
    if opts.low_latency {
        let _ = writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={},PART-HOLD-BACK={}",
            secs(skip_until_us),
            secs(3 * config.part_us)
        );
        let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={}", secs(config.part_us));
    }
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", segmenter.media_sequence());
    if segmenter.init_segment().is_some() {
        let _ = writeln!(
            out,
            "#EXT-X-MAP:URI=\"{}{sfx}\"",
            Resource::Init.name(container)
        );
    }
    if skipped > 0 {
        let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
    }

    // Parts are listed for the segments that end within three target durations of the live
    // edge (rfc8216bis §4.4.4.9: older ones SHOULD be removed).
    let open_us: i64 = segmenter.open_parts().iter().map(|p| p.duration_us).sum();
    let mut from_edge: i64 = open_us;
    let mut with_parts = vec![false; segments.len()];
    for (i, s) in segments.iter().enumerate().rev() {
        if from_edge >= 3 * target_us {
            break;
        }
        with_parts[i] = true;
        from_edge += s.duration_us;
    }
    let write_part = |out: &mut String, msn: u64, index: usize, duration_us: i64, indep: bool| {
        let uri = Resource::Part(PartRef {
            msn,
            part: index as u64,
        })
        .name(container);
        let _ = write!(
            out,
            "#EXT-X-PART:DURATION={},URI=\"{uri}{sfx}\"",
            secs(duration_us)
        );
        if indep {
            out.push_str(",INDEPENDENT=YES");
        }
        out.push('\n');
    };
    for (i, s) in segments.iter().enumerate().skip(skipped) {
        if opts.low_latency && with_parts[i] {
            for (p, part) in s.parts.iter().enumerate() {
                write_part(&mut out, s.msn, p, part.duration_us, part.independent);
            }
        }
        let _ = writeln!(out, "#EXTINF:{},", secs(s.duration_us));
        let _ = writeln!(out, "{}{sfx}", Resource::Segment(s.msn).name(container));
    }
    if opts.low_latency {
        for (p, part) in segmenter.open_parts().iter().enumerate() {
            write_part(
                &mut out,
                segmenter.open_msn(),
                p,
                part.duration_us,
                part.independent,
            );
        }
        if let Some(next) = segmenter.next_part() {
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}{sfx}\"",
                Resource::Part(next).name(container)
            );
        }
    }
    if segmenter.ended() {
        let _ = writeln!(out, "#EXT-X-ENDLIST");
    }
    out
}

/// The RFC 6381 codecs string of a track (`avc1.PPCCLL`, `hvc1.…`, `mp4a.40.N`, `Opus`);
/// `None` for a record that cannot be read.
pub fn codec_string(codec: Codec, record: &[u8]) -> Option<String> {
    match codec {
        Codec::H264 => {
            let b = record.get(1..4)?;
            Some(format!("avc1.{:02x}{:02x}{:02x}", b[0], b[1], b[2]))
        }
        Codec::H265 => hevc_codec_string(record),
        Codec::Aac => Some(format!(
            "mp4a.40.{}",
            AacConfig::parse(record).ok()?.object_type
        )),
        Codec::Opus => Some("Opus".to_owned()),
        Codec::Av1 => None,
    }
}

/// ISO/IEC 14496-15 Annex E.3: `hvc1.<space><profile>.<compat>.<tier><level>.<constraints>`.
fn hevc_codec_string(record: &[u8]) -> Option<String> {
    let b = record.get(1..13)?;
    let space = match b[0] >> 6 {
        1 => "A",
        2 => "B",
        3 => "C",
        _ => "",
    };
    let profile = b[0] & 0x1f;
    let tier = if b[0] & 0x20 != 0 { 'H' } else { 'L' };
    let compat = u32::from_be_bytes([b[1], b[2], b[3], b[4]]).reverse_bits();
    let mut s = format!("hvc1.{space}{profile}.{compat:X}.{tier}{}", b[11]);
    let constraints = &b[5..11];
    let used = constraints
        .iter()
        .rposition(|&c| c != 0)
        .map_or(0, |i| i + 1);
    for c in &constraints[..used] {
        let _ = write!(s, ".{c:X}");
    }
    Some(s)
}

/// The multivariant playlist: one variant, `media_uri` (the caller's URI of the media
/// playlist, suffix included), with BANDWIDTH (the peak bit rate of the kept segments, or
/// `fallback_bandwidth` before the first), CODECS and RESOLUTION.
pub fn multivariant_playlist(
    segmenter: &Segmenter,
    media_uri: &str,
    fallback_bandwidth: u64,
) -> String {
    let peak = segmenter
        .segments()
        .iter()
        .filter(|s| s.duration_us > 0)
        .map(|s| (s.bytes.len() as u128 * 8 * 1_000_000 / s.duration_us as u128) as u64)
        .max()
        .unwrap_or(fallback_bandwidth)
        .max(1);
    let mut codecs = Vec::new();
    let mut resolution = None;
    if let Some((codec, record)) = segmenter.video_track() {
        codecs.extend(codec_string(codec, record));
        resolution = video_dimensions(codec, record);
    }
    if let Some((codec, record)) = segmenter.audio_track() {
        codecs.extend(codec_string(codec, record));
    }
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={peak}");
    if !codecs.is_empty() {
        let _ = write!(out, ",CODECS=\"{}\"", codecs.join(","));
    }
    if let Some((w, h)) = resolution {
        let _ = write!(out, ",RESOLUTION={w}x{h}");
    }
    let _ = writeln!(out, "\n{media_uri}");
    out
}

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
    /// `EXT-X-PROGRAM-DATE-TIME` before each segment, once the segmenter's wall clock is
    /// anchored ([`Segmenter::anchor_wall_clock`]).
    pub program_date_time: bool,
}

/// An `EXT-X-PROGRAM-DATE-TIME` value: ISO 8601 UTC with milliseconds (RFC 3339), from Unix
/// milliseconds.
pub fn date_time(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (H. Hinnant, "chrono-Compatible Low-Level Date
    // Algorithms").
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
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
    let open_independent = segmenter.open_parts().first().is_none_or(|p| p.independent);
    if open_independent && segments.iter().all(|s| s.independent) {
        let _ = writeln!(out, "#EXT-X-INDEPENDENT-SEGMENTS");
    }
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
    let program_date_time = |out: &mut String, start_us: i64| {
        if let Some(ms) = segmenter
            .wall_clock_ms(start_us)
            .filter(|_| opts.program_date_time)
        {
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", date_time(ms));
        }
    };
    for (i, s) in segments.iter().enumerate().skip(skipped) {
        program_date_time(&mut out, s.start_us);
        if opts.low_latency && with_parts[i] {
            for (p, part) in s.parts.iter().enumerate() {
                write_part(&mut out, s.msn, p, part.duration_us, part.independent);
            }
        }
        let _ = writeln!(out, "#EXTINF:{},", secs(s.duration_us));
        let _ = writeln!(out, "{}{sfx}", Resource::Segment(s.msn).name(container));
    }
    if opts.low_latency {
        if let Some(start) = segmenter
            .open_start_us()
            .filter(|_| !segmenter.open_parts().is_empty())
        {
            program_date_time(&mut out, start);
        }
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

#[cfg(test)]
mod tests {
    use streamgate_actors::media::{MediaFrame, Track};

    use super::*;
    use crate::protocol::hls::fixtures::{avc_record, config, stream, ASC};
    use crate::protocol::hls::validate::{check_blocking_answer, check_media, check_succession};
    use crate::protocol::hls::HlsConfig;

    fn segmenter(kept: usize, container: Container) -> Segmenter {
        let config_ = HlsConfig {
            segment_us: 1_000_000,
            part_us: 250_000,
            segments_kept: kept,
            container,
        };
        Segmenter::new(config_, &[config(Track::Video), config(Track::Audio)]).expect("segmenter")
    }

    const LL: MediaOptions<'static> = MediaOptions {
        suffix: "?s=abc",
        low_latency: true,
        skip: false,
        program_date_time: false,
    };

    #[test]
    fn every_playlist_of_a_stream_passes_the_validator() {
        for container in [Container::Fmp4, Container::Ts] {
            let mut seg = segmenter(5, container);
            let mut previous = None;
            let mut served = 0;
            for frame in stream(20.0, 30, 30, true, true) {
                if !seg.push(&frame).expect("push").any() {
                    continue;
                }
                for opts in [LL, MediaOptions { skip: true, ..LL }] {
                    let text = media_playlist(&seg, &opts);
                    let pl = check_media(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
                    assert!(text
                        .lines()
                        .all(|l| l.starts_with('#') || l.ends_with("?s=abc")));
                    assert!(pl
                        .preload_hint
                        .as_deref()
                        .is_some_and(|u| u.ends_with("?s=abc")));
                    if !opts.skip {
                        if let Some(prev) = &previous {
                            check_succession(prev, &pl).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
                        }
                        previous = Some(pl);
                    }
                    served += 1;
                }
                // Every part the edge says is there, a blocking request gets.
                let edge = LiveEdge::of(&seg);
                for part in 0..edge.open_parts {
                    let d = Directives {
                        msn: Some(edge.open_msn),
                        part: Some(part),
                        skip: false,
                    };
                    assert_eq!(blocking(&d, &edge), Blocking::Now);
                    let answer = check_media(&media_playlist(&seg, &LL)).expect("valid");
                    check_blocking_answer(&d, &answer).expect("lists the part");
                }
                let next = Directives {
                    msn: Some(edge.open_msn),
                    part: Some(edge.open_parts),
                    skip: false,
                };
                assert_eq!(blocking(&next, &edge), Blocking::Wait);
            }
            assert!(served > 100);
            seg.finish().expect("finish");
            let text = media_playlist(&seg, &LL);
            let pl = check_media(&text).expect("valid");
            assert!(pl.ended && pl.preload_hint.is_none());
            assert_eq!(pl.media_sequence, seg.media_sequence());
            assert_eq!(pl.segments.len(), 5);
            assert_eq!(pl.map.is_some(), container == Container::Fmp4);
        }
    }

    #[test]
    fn media_playlist_tags() {
        let mut seg = segmenter(20, Container::Fmp4);
        for frame in stream(15.5, 30, 30, true, true) {
            seg.push(&frame).expect("push");
        }
        let text = media_playlist(&seg, &LL);
        let head: Vec<&str> = text.lines().take(8).collect();
        assert_eq!(
            head,
            [
                "#EXTM3U",
                "#EXT-X-VERSION:6",
                "#EXT-X-TARGETDURATION:1",
                "#EXT-X-INDEPENDENT-SEGMENTS",
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6.0,PART-HOLD-BACK=0.75",
                "#EXT-X-PART-INF:PART-TARGET=0.25",
                "#EXT-X-MEDIA-SEQUENCE:0",
                "#EXT-X-MAP:URI=\"init.mp4?s=abc\"",
            ]
        );
        assert!(text.contains("#EXTINF:1.0,\nseg0.m4s?s=abc\n"));
        assert!(text
            .contains("#EXT-X-PART:DURATION=0.23333,URI=\"part14.0.m4s?s=abc\",INDEPENDENT=YES\n"));
        assert!(text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part15.2.m4s?s=abc\"\n"));
        // Parts only for the last three target durations: not for segment 10.
        assert!(!text.contains("part10.0"));
        assert!(text.contains("part12.0"));

        // A delta update skips what lies over CAN-SKIP-UNTIL (6 s) from the end.
        let delta = media_playlist(&seg, &MediaOptions { skip: true, ..LL });
        assert!(delta.contains("#EXT-X-VERSION:9\n"));
        assert!(delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=9\n"));
        assert!(!delta.contains("seg8.m4s") && delta.contains("seg9.m4s"));
        let full = check_media(&text).expect("valid");
        let skipped = check_media(&delta).expect("valid");
        assert_eq!(full.open_msn(), skipped.open_msn());

        // Plain HLS over MPEG-TS: no LL tags, no map, version 3.
        let mut ts = segmenter(20, Container::Ts);
        for frame in stream(3.5, 30, 30, true, true) {
            ts.push(&frame).expect("push");
        }
        let plain = media_playlist(
            &ts,
            &MediaOptions {
                suffix: "",
                low_latency: false,
                skip: false,
                program_date_time: false,
            },
        );
        assert_eq!(
            plain,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1.0,\nseg0.ts\n#EXTINF:1.0,\nseg1.ts\n\
             #EXTINF:1.0,\nseg2.ts\n"
        );
    }

    #[test]
    fn target_duration_covers_long_segments() {
        let mut seg = segmenter(20, Container::Fmp4);
        // A 2.6 s GOP against a 1 s target.
        for frame in stream(8.0, 30, 78, true, true) {
            seg.push(&frame).expect("push");
        }
        assert_eq!(target_duration(&seg), 3);
        check_media(&media_playlist(&seg, &LL)).expect("valid");
    }

    #[test]
    fn multivariant_playlist_names_codecs_and_size() {
        let mut seg = segmenter(20, Container::Fmp4);
        let text = multivariant_playlist(&seg, "index.m3u8?s=1", 900_000);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS=\"avc1.64000d,mp4a.40.2\",\
             RESOLUTION=320x240\nindex.m3u8?s=1\n"
        );
        for frame in stream(3.0, 30, 30, true, true) {
            seg.push(&frame).expect("push");
        }
        assert!(!multivariant_playlist(&seg, "i", 900_000).contains("BANDWIDTH=900000,"));
        assert_eq!(
            codec_string(Codec::H264, &avc_record()).as_deref(),
            Some("avc1.64000d")
        );
        assert_eq!(codec_string(Codec::Aac, ASC).as_deref(), Some("mp4a.40.2"));
        // HEVC Main, level 3.1 (93), progressive source flag: as FFmpeg names it.
        let mut hvcc = vec![0u8; 23];
        hvcc[0] = 1;
        hvcc[1] = 0x01;
        hvcc[2..6].copy_from_slice(&[0x60, 0, 0, 0]);
        hvcc[6] = 0x90;
        hvcc[12] = 93;
        assert_eq!(
            codec_string(Codec::H265, &hvcc).as_deref(),
            Some("hvc1.1.6.L93.90")
        );
        hvcc[1] = 0x22; // Main 10, high tier
        hvcc[2..6].copy_from_slice(&[0x20, 0, 0, 0]);
        assert_eq!(
            codec_string(Codec::H265, &hvcc).as_deref(),
            Some("hvc1.2.4.H93.90")
        );
        assert_eq!(codec_string(Codec::H264, &[1]), None);
    }

    #[test]
    fn resource_names_round_trip() {
        for container in [Container::Fmp4, Container::Ts] {
            for r in [
                Resource::Segment(0),
                Resource::Segment(u64::MAX),
                Resource::Part(PartRef { msn: 7, part: 3 }),
            ] {
                assert_eq!(Resource::parse(&r.name(container), container), Some(r));
            }
        }
        assert_eq!(
            Resource::parse("init.mp4", Container::Fmp4),
            Some(Resource::Init)
        );
        assert_eq!(Resource::parse("init.mp4", Container::Ts), None);
        for bad in [
            "",
            "seg.m4s",
            "seg-1.m4s",
            "seg1.ts",
            "part1.m4s",
            "part1..m4s",
            "part.1.m4s",
            "seg99999999999999999999.m4s",
            "seg+1.m4s",
            "seg1.m4s.m4s",
            "part1.2.3.m4s",
            "index.m3u8",
            "seg١.m4s",
        ] {
            assert_eq!(Resource::parse(bad, Container::Fmp4), None, "{bad}");
        }
    }

    #[test]
    fn directives_parse() {
        let d = Directives::parse("s=abc&_HLS_msn=12&_HLS_part=3&token=x").expect("valid");
        assert_eq!((d.msn, d.part, d.skip), (Some(12), Some(3), false));
        assert_eq!(Directives::parse("").expect("empty"), Directives::default());
        assert!(
            Directives::parse("_HLS_msn=4&_HLS_skip=YES")
                .expect("valid")
                .skip
        );
        assert!(Directives::parse("_HLS_skip=v2").expect("valid").skip);
        for bad in [
            "_HLS_msn=",
            "_HLS_msn=-1",
            "_HLS_msn=1.0",
            "_HLS_msn=0x10",
            "_HLS_msn=18446744073709551616",
            "_HLS_msn=%31",
            "_HLS_msn= 1",
            "_HLS_part=1",
            "_HLS_msn=1&_HLS_part=a",
            "_HLS_skip=NO",
            "_HLS_msn",
        ] {
            assert!(Directives::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn directives_never_panic() {
        // Deterministic garbage from the characters queries are made of, and any bytes.
        let alphabet: Vec<char> = "_HLS_msnpartskip=&0123456789-+.%YESv2 \u{0}\u{fffd}é١"
            .chars()
            .collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let s: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let _ = Directives::parse(&s);
            let _ = Resource::parse(&s, Container::Fmp4);
            let edge = LiveEdge {
                open_msn: next() % 4,
                open_parts: next() % 4,
                ended: false,
            };
            if let Ok(d) = Directives::parse(&s) {
                let _ = blocking(&d, &edge);
            }
        }
        for d in [
            Directives {
                msn: Some(u64::MAX),
                part: Some(u64::MAX),
                skip: true,
            },
            Directives {
                msn: Some(0),
                part: Some(u64::MAX),
                skip: false,
            },
        ] {
            let edge = LiveEdge {
                open_msn: u64::MAX,
                open_parts: u64::MAX,
                ended: false,
            };
            let _ = blocking(&d, &edge);
        }
    }

    #[test]
    fn blocking_decisions() {
        let edge = LiveEdge {
            open_msn: 10,
            open_parts: 2,
            ended: false,
        };
        let at = |msn, part| Directives {
            msn: Some(msn),
            part,
            skip: false,
        };
        assert_eq!(blocking(&Directives::default(), &edge), Blocking::Now);
        // Listed already.
        assert_eq!(blocking(&at(3, None), &edge), Blocking::Now);
        assert_eq!(blocking(&at(9, None), &edge), Blocking::Now);
        assert_eq!(blocking(&at(9, Some(50)), &edge), Blocking::Now);
        assert_eq!(blocking(&at(10, Some(1)), &edge), Blocking::Now);
        // Not yet.
        assert_eq!(blocking(&at(10, None), &edge), Blocking::Wait);
        assert_eq!(blocking(&at(10, Some(2)), &edge), Blocking::Wait);
        assert_eq!(blocking(&at(10, Some(4)), &edge), Blocking::Wait);
        assert_eq!(blocking(&at(11, Some(0)), &edge), Blocking::Wait);
        assert_eq!(blocking(&at(12, None), &edge), Blocking::Wait);
        // Too far ahead: 400.
        assert_eq!(blocking(&at(10, Some(5)), &edge), Blocking::OutOfRange);
        assert_eq!(blocking(&at(13, None), &edge), Blocking::OutOfRange);
        assert_eq!(
            blocking(&at(11, Some(MAX_PART_INDEX + 1)), &edge),
            Blocking::OutOfRange
        );
        // After the end everything is answered.
        let ended = LiveEdge {
            ended: true,
            ..edge
        };
        assert_eq!(blocking(&at(13, None), &ended), Blocking::Now);
    }

    #[test]
    fn the_validator_catches_broken_playlists() {
        let good = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
            #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6\n\
            #EXT-X-PART-INF:PART-TARGET=0.2\n#EXT-X-MEDIA-SEQUENCE:5\n\
            #EXT-X-PART:DURATION=0.2,URI=\"p5.0\",INDEPENDENT=YES\n#EXTINF:2.4,\ns5\n\
            #EXT-X-PART:DURATION=0.2,URI=\"p6.0\"\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p6.1\"\n";
        let pl = check_media(good).expect("valid");
        assert_eq!((pl.open_msn(), pl.open_parts.len()), (6, 1));
        for (bad, rule) in [
            (
                good.replace("#EXTINF:2.4", "#EXTINF:2.5"),
                "over EXT-X-TARGETDURATION",
            ),
            (
                good.replace("DURATION=0.2,URI=\"p6.0\"", "DURATION=0.21,URI=\"p6.0\""),
                "over PART-TARGET",
            ),
            (
                good.replace("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p6.1\"\n", ""),
                "PRELOAD-HINT",
            ),
            (
                good.replace("PART-HOLD-BACK=0.6", "PART-HOLD-BACK=0.5"),
                "PART-HOLD-BACK",
            ),
            (
                good.replace("CAN-BLOCK-RELOAD=YES,", ""),
                "CAN-BLOCK-RELOAD",
            ),
            (
                good.replace("#EXT-X-TARGETDURATION:2\n", ""),
                "TARGETDURATION",
            ),
            (good.replace("#EXTM3U\n", ""), "EXTM3U"),
        ] {
            let errors = check_media(&bad).expect_err(rule);
            assert!(
                errors.iter().any(|e| e.0.contains(rule)),
                "{rule}: {errors:?}"
            );
        }
        let back = check_media(&good.replace(":5\n", ":4\n")).expect("valid alone");
        assert!(check_succession(&pl, &back).is_err());
        let renamed = check_media(&good.replace("\ns5\n", "\ns5b\n")).expect("valid alone");
        assert!(check_succession(&pl, &renamed).is_err());
        check_succession(&pl, &pl).expect("the same playlist twice");
        let d = |part| Directives {
            msn: Some(6),
            part: Some(part),
            skip: false,
        };
        check_blocking_answer(&d(0), &pl).expect("part 6.0 is listed");
        assert!(check_blocking_answer(&d(1), &pl).is_err());
    }

    #[test]
    fn frames_of_other_codecs_are_ignored() {
        let mut seg = segmenter(5, Container::Fmp4);
        let mut opus = stream(1.0, 30, 30, false, true)[0].clone();
        opus.codec = Codec::Opus;
        let hevc = MediaFrame {
            codec: Codec::H265,
            ..stream(1.0, 30, 30, true, false)[0].clone()
        };
        assert!(!seg.push(&opus).expect("ignored").any());
        assert!(!seg.push(&hevc).expect("ignored").any());
        assert!(
            seg.next_part().is_none(),
            "no keyframe of the carried codec yet"
        );
    }
}

#[cfg(test)]
mod date_tests {
    use streamgate_actors::media::Track;

    use super::*;
    use crate::protocol::hls::fixtures::{config, stream};
    use crate::protocol::hls::validate::check_media;
    use crate::protocol::hls::HlsConfig;

    #[test]
    fn date_times_are_rfc3339_utc() {
        assert_eq!(date_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(date_time(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(date_time(1_796_266_758_042), "2026-12-03T02:59:18.042Z");
        assert_eq!(date_time(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn program_date_time_follows_the_anchor() {
        let mut seg = Segmenter::new(
            HlsConfig {
                segment_us: 1_000_000,
                part_us: 250_000,
                segments_kept: 10,
                container: Container::Fmp4,
            },
            &[config(Track::Video), config(Track::Audio)],
        )
        .expect("segmenter");
        let frames = stream(3.5, 30, 30, true, true);
        for (i, frame) in frames.iter().enumerate() {
            seg.push(frame).expect("push");
            if i == 0 {
                // The first keyframe (output time 0) arrived at 2026-12-03T02:59:18.000Z.
                seg.anchor_wall_clock(1_796_266_758_000);
            }
        }
        let opts = MediaOptions {
            suffix: "",
            low_latency: true,
            skip: false,
            program_date_time: true,
        };
        let text = media_playlist(&seg, &opts);
        check_media(&text).expect("valid");
        let dates: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
            .collect();
        assert_eq!(
            dates,
            [
                "2026-12-03T02:59:18.000Z",
                "2026-12-03T02:59:19.000Z",
                "2026-12-03T02:59:20.000Z",
                "2026-12-03T02:59:21.000Z"
            ],
            "{text}"
        );
        // Each stands right before its segment's first line (a part or EXTINF).
        assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:2026-12-03T02:59:21.000Z\n#EXT-X-PART:"));
        let without = media_playlist(
            &seg,
            &MediaOptions {
                program_date_time: false,
                ..opts
            },
        );
        assert!(!without.contains("PROGRAM-DATE-TIME"));
    }
}

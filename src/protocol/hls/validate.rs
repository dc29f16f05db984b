//! Checks of served media playlists against the rules of RFC 8216 and rfc8216bis that
//! players rely on:
//! - every `EXTINF` duration, rounded to the nearest integer, is at most
//!   `EXT-X-TARGETDURATION` (RFC 8216 §4.3.3.1);
//! - `EXT-X-MEDIA-SEQUENCE` continuity across successive playlists: it never goes back, a
//!   media sequence number names the same segment in both, and the newest one never goes
//!   back (RFC 8216 §6.2.1, §6.3.2);
//! - every `EXT-X-PART` duration is at most `PART-TARGET` (rfc8216bis §4.4.4.9);
//! - a Low-Latency playlist that has not ended carries `EXT-X-PRELOAD-HINT`, and
//!   `EXT-X-SERVER-CONTROL` with `CAN-BLOCK-RELOAD=YES` and `PART-HOLD-BACK` at least three
//!   part targets (rfc8216bis §4.4.3.8);
//! - a blocking reload (`_HLS_msn` / `_HLS_part`) is answered with a playlist that lists the
//!   segment or part asked for, or a later one (rfc8216bis §6.2.5.2).
//!
//! Parsing is lenient (unknown tags are skipped); a rule broken is a [`Violation`] naming it.

use super::playlist::Directives;

/// One rule a playlist breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One partial segment as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedPart {
    /// `DURATION`, seconds.
    pub duration: f64,
    /// `URI`.
    pub uri: String,
    /// `INDEPENDENT=YES`.
    pub independent: bool,
}

/// One media segment as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedSegment {
    /// Its media sequence number.
    pub msn: u64,
    /// `EXTINF` duration, seconds.
    pub duration: f64,
    /// Its URI.
    pub uri: String,
    /// The parts listed before it.
    pub parts: Vec<ListedPart>,
}

/// A media playlist as read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MediaPlaylist {
    /// `EXT-X-TARGETDURATION`.
    pub target_duration: u64,
    /// `EXT-X-MEDIA-SEQUENCE` (0 when absent, as the RFC says).
    pub media_sequence: u64,
    /// `EXT-X-SKIP:SKIPPED-SEGMENTS`.
    pub skipped: u64,
    /// `EXT-X-PART-INF:PART-TARGET`, seconds.
    pub part_target: Option<f64>,
    /// `EXT-X-SERVER-CONTROL` attributes, raw.
    pub server_control: Option<String>,
    /// `EXT-X-MAP` URI.
    pub map: Option<String>,
    /// Complete segments, in order.
    pub segments: Vec<ListedSegment>,
    /// Parts listed after the last complete segment (of the segment being filled).
    pub open_parts: Vec<ListedPart>,
    /// `EXT-X-PRELOAD-HINT` URI.
    pub preload_hint: Option<String>,
    /// `EXT-X-ENDLIST`.
    pub ended: bool,
}

impl MediaPlaylist {
    /// Media sequence number of the segment after the last complete one (the one the open
    /// parts belong to).
    pub fn open_msn(&self) -> u64 {
        self.media_sequence + self.skipped + self.segments.len() as u64
    }
}

/// The value of attribute `name` in an attribute list (quotes removed).
pub fn attribute<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            let tail = &quoted[end + 1..];
            (&quoted[..end], tail.strip_prefix(',').unwrap_or(tail))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

fn part_of(attrs: &str) -> Result<ListedPart, Violation> {
    let duration = attribute(attrs, "DURATION")
        .and_then(|d| d.parse::<f64>().ok())
        .ok_or_else(|| Violation(format!("EXT-X-PART without a DURATION: {attrs}")))?;
    let uri = attribute(attrs, "URI")
        .ok_or_else(|| Violation(format!("EXT-X-PART without a URI: {attrs}")))?;
    Ok(ListedPart {
        duration,
        uri: uri.to_owned(),
        independent: attribute(attrs, "INDEPENDENT") == Some("YES"),
    })
}

/// Reads a media playlist and checks the rules that concern one playlist alone.
pub fn check_media(text: &str) -> Result<MediaPlaylist, Vec<Violation>> {
    let mut errors = Vec::new();
    let mut pl = MediaPlaylist::default();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("#EXTM3U") {
        errors.push(Violation("does not start with #EXTM3U".into()));
    }
    let mut target = None;
    let mut pending_parts = Vec::new();
    let mut pending_duration: Option<f64> = None;
    for line in lines {
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = v.parse::<u64>().ok();
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            match v.parse() {
                Ok(n) => pl.media_sequence = n,
                Err(_) => errors.push(Violation(format!("bad EXT-X-MEDIA-SEQUENCE {v}"))),
            }
        } else if let Some(v) = line.strip_prefix("#EXT-X-SKIP:") {
            pl.skipped = attribute(v, "SKIPPED-SEGMENTS")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
            pl.part_target = attribute(v, "PART-TARGET").and_then(|t| t.parse().ok());
        } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            pl.server_control = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
            pl.map = attribute(v, "URI").map(str::to_owned);
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            match part_of(v) {
                Ok(p) => pending_parts.push(p),
                Err(e) => errors.push(e),
            }
        } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            pl.preload_hint = attribute(v, "URI").map(str::to_owned);
        } else if line == "#EXT-X-ENDLIST" {
            pl.ended = true;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let d = v.split(',').next().unwrap_or("");
            match d.parse::<f64>() {
                Ok(d) => pending_duration = Some(d),
                Err(_) => errors.push(Violation(format!("bad EXTINF {v}"))),
            }
        } else if !line.starts_with('#') {
            let Some(duration) = pending_duration.take() else {
                errors.push(Violation(format!("URI {line} without EXTINF")));
                continue;
            };
            pl.segments.push(ListedSegment {
                msn: pl.media_sequence + pl.skipped + pl.segments.len() as u64,
                duration,
                uri: line.to_owned(),
                parts: std::mem::take(&mut pending_parts),
            });
        }
    }
    pl.open_parts = pending_parts;
    match target {
        None => errors.push(Violation("no EXT-X-TARGETDURATION".into())),
        Some(t) => {
            pl.target_duration = t;
            for s in &pl.segments {
                if s.duration.round() > t as f64 {
                    errors.push(Violation(format!(
                        "segment {} lasts {} s, over EXT-X-TARGETDURATION {t}",
                        s.msn, s.duration
                    )));
                }
            }
        }
    }
    let all_parts = || {
        pl.segments
            .iter()
            .flat_map(|s| s.parts.iter())
            .chain(pl.open_parts.iter())
    };
    if let Some(part_target) = pl.part_target {
        for p in all_parts() {
            if p.duration > part_target + 1e-9 {
                errors.push(Violation(format!(
                    "part {} lasts {} s, over PART-TARGET {part_target}",
                    p.uri, p.duration
                )));
            }
        }
        if !pl.ended && pl.preload_hint.is_none() {
            errors.push(Violation(
                "low-latency playlist without EXT-X-PRELOAD-HINT".into(),
            ));
        }
        match &pl.server_control {
            None => errors.push(Violation("parts without EXT-X-SERVER-CONTROL".into())),
            Some(sc) => {
                if attribute(sc, "CAN-BLOCK-RELOAD") != Some("YES") {
                    errors.push(Violation(
                        "EXT-X-SERVER-CONTROL without CAN-BLOCK-RELOAD=YES".into(),
                    ));
                }
                match attribute(sc, "PART-HOLD-BACK").and_then(|v| v.parse::<f64>().ok()) {
                    Some(hold) if hold + 1e-9 >= 3.0 * part_target => {}
                    _ => errors.push(Violation(
                        "PART-HOLD-BACK missing or under three PART-TARGETs".into(),
                    )),
                }
            }
        }
    } else if all_parts().next().is_some() {
        errors.push(Violation("EXT-X-PART without EXT-X-PART-INF".into()));
    }
    if errors.is_empty() {
        Ok(pl)
    } else {
        Err(errors)
    }
}

/// Checks media sequence continuity from `prev` to `next`, two playlists of one stream
/// fetched in that order.
pub fn check_succession(prev: &MediaPlaylist, next: &MediaPlaylist) -> Result<(), Vec<Violation>> {
    let mut errors = Vec::new();
    if next.media_sequence < prev.media_sequence {
        errors.push(Violation(format!(
            "EXT-X-MEDIA-SEQUENCE went back from {} to {}",
            prev.media_sequence, next.media_sequence
        )));
    }
    if next.open_msn() < prev.open_msn() {
        errors.push(Violation(format!(
            "the newest segment went back from {} to {}",
            prev.open_msn(),
            next.open_msn()
        )));
    }
    for s in &next.segments {
        if let Some(old) = prev.segments.iter().find(|o| o.msn == s.msn) {
            if old.uri != s.uri || (old.duration - s.duration).abs() > 1e-6 {
                errors.push(Violation(format!(
                    "media sequence number {} names {} ({} s), then {} ({} s)",
                    s.msn, old.uri, old.duration, s.uri, s.duration
                )));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Checks that `answer`, the playlist served for a request with delivery directives `d`,
/// lists what was asked for or later (rfc8216bis §6.2.5.2).
pub fn check_blocking_answer(d: &Directives, answer: &MediaPlaylist) -> Result<(), Violation> {
    let Some(msn) = d.msn else {
        return Ok(());
    };
    if answer.ended {
        return Ok(());
    }
    let open = answer.open_msn();
    let listed = match d.part {
        None => msn < open,
        Some(part) => msn < open || (msn == open && (part as usize) < answer.open_parts.len()),
    };
    if listed {
        Ok(())
    } else {
        Err(Violation(format!(
            "blocking request _HLS_msn={msn} _HLS_part={:?} answered with a playlist ending at segment {open}, {} parts",
            d.part,
            answer.open_parts.len()
        )))
    }
}

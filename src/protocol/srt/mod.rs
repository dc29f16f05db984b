//! The SRT `streamid` a caller sends in its handshake, read into what it asks for: publish or
//! play, which stream, and the extra keys the HTTP hooks report.
//!
//! Accepted forms:
//! - the SRT access-control syntax (SRT `docs/features/access-control.md`, "General Syntax"
//!   and "Standard Keys"): `#!::r=app/name,m=publish|request,u=user,s=session,...` —
//!   comma-separated `key=value` pairs; `m` defaults to `request` (play);
//! - `publish:app/name`, `read:app/name` and `play:app/name`, optionally followed by
//!   `:user:pass` as MediaMTX writes it;
//! - plain `app/name`, which plays.
//!
//! Escaping: the access-control document defines none, and FFmpeg URL-decodes the `streamid`
//! query parameter before libsrt sends it, so a `,` inside a value cannot be told from a
//! separator. In the `#!::` form, keys and values are therefore percent-decoded after
//! splitting (`%2C` is a literal `,`, `%3D` a literal `=`, `%25` a literal `%`); a `%` not
//! followed by two hex digits stays as it is. A value may contain `=` unescaped (only the
//! first `=` of a pair separates).
//!
//! Also the check every SRT datagram passes before srt-protocol sees it ([`check_datagram`]):
//! the inputs that make srt-protocol 0.4.4 panic are refused on the raw bytes.
//!
//! And when a new connection may start sending data ([`FirstDataHold`]): not before the caller
//! has shown that it has the listener's conclusion response; and how what it sends a player is
//! stamped ([`MediaClock`]): at the pace of the media, so the GOP a player starts with is
//! released as a live source would release it.
//!
//! Pure functions over strings and bytes and one small state machine over the caller's packet
//! kinds and the clock: no sockets, no SRT state, no hook policy (which codes to reject with is
//! the session's business).

pub mod handshake;

use std::time::{Duration, Instant};

use crate::protocol::url::{app_and_name, split_query};

/// Longest streamid SRT carries (libsrt's `SRTO_STREAMID` limit).
pub const MAX_STREAMID: usize = 512;

/// What the caller wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Send a stream to the server (`m=publish`, `publish:`).
    Publish,
    /// Receive a stream (`m=request`, `read:`, `play:`, plain names).
    Play,
}

/// A parsed streamid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamId {
    /// Publish or play.
    pub mode: Mode,
    /// The application: every segment of the resource's path before the last (`live/a` for
    /// `live/a/b`), as for every protocol ([`app_and_name`]).
    pub app: String,
    /// The stream name: the last segment of the resource's path, without any query.
    pub name: String,
    /// The query that followed the resource (without `?`; empty when none).
    pub query: String,
    /// `u=` (or the user of the `publish:path:user:pass` form).
    pub user: Option<String>,
    /// `s=`.
    pub session: Option<String>,
    /// Every other key in the order sent (`h`, `t`, custom keys; `pass` for the
    /// `mode:path:user:pass` form), for the hooks.
    pub extra: Vec<(String, String)>,
}

/// Why a streamid is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    /// No streamid, or only whitespace.
    #[error("empty streamid")]
    Empty,
    /// Longer than [`MAX_STREAMID`] bytes.
    #[error("streamid is {0} bytes, more than 512")]
    TooLong(usize),
    /// A mode other than publish or request/read/play (including `bidirectional`).
    #[error("unknown mode {0:?} (expected publish or request)")]
    UnknownMode(String),
    /// A `#!::` streamid without an `r=` key.
    #[error("streamid has no resource (r=app/name)")]
    MissingResource,
    /// A resource that is not `app/name` with both parts non-empty.
    #[error("resource {0:?} is not app/name")]
    BadResource(String),
    /// A `t=` type other than `stream` (files and auth exchanges are not media).
    #[error("unsupported connection type {0:?} (only stream)")]
    UnsupportedType(String),
    /// Anything else that cannot be read: control characters, a pair without `=`, an empty
    /// or repeated key, the nested `#!:{` syntax, invalid UTF-8 after percent-decoding.
    #[error("malformed streamid: {0}")]
    Malformed(String),
}

impl StreamId {
    /// Parses a streamid in any of the accepted forms.
    pub fn parse(s: &str) -> Result<StreamId, StreamIdError> {
        if s.len() > MAX_STREAMID {
            return Err(StreamIdError::TooLong(s.len()));
        }
        if s.trim().is_empty() {
            return Err(StreamIdError::Empty);
        }
        if s.chars().any(char::is_control) {
            return Err(StreamIdError::Malformed("control character".into()));
        }
        if let Some(list) = s.strip_prefix("#!::") {
            return parse_access_control(list);
        }
        if s.starts_with("#!") {
            return Err(StreamIdError::Malformed(
                "only the #!:: key=value syntax is supported".into(),
            ));
        }
        if let Some((prefix, rest)) = s.split_once(':').filter(|(p, _)| !p.contains('/')) {
            let mode = if prefix.eq_ignore_ascii_case("publish") {
                Mode::Publish
            } else if ["read", "play"]
                .iter()
                .any(|m| prefix.eq_ignore_ascii_case(m))
            {
                Mode::Play
            } else {
                return Err(StreamIdError::UnknownMode(prefix.to_string()));
            };
            return parse_prefixed(mode, rest);
        }
        let (app, name, query) = split_resource(s)?;
        Ok(StreamId {
            mode: Mode::Play,
            app,
            name,
            query,
            user: None,
            session: None,
            extra: Vec::new(),
        })
    }
}

/// `path[:user:pass[:query]]` after a `publish:` / `read:` / `play:` prefix.
fn parse_prefixed(mode: Mode, rest: &str) -> Result<StreamId, StreamIdError> {
    let parts: Vec<&str> = rest.split(':').collect();
    let (path, user, pass, extra_query) = match parts[..] {
        [path] => (path, None, None, ""),
        [path, user, pass] => (path, Some(user), Some(pass), ""),
        [path, user, pass, query] => (path, Some(user), Some(pass), query),
        _ => {
            return Err(StreamIdError::Malformed(
                "expected mode:app/name or mode:app/name:user:pass".into(),
            ))
        }
    };
    let (app, name, mut query) = split_resource(path)?;
    if !extra_query.is_empty() {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(extra_query);
    }
    let mut extra = Vec::new();
    if let Some(pass) = pass {
        extra.push(("pass".to_string(), pass.to_string()));
    }
    Ok(StreamId {
        mode,
        app,
        name,
        query,
        user: user.map(str::to_string),
        session: None,
        extra,
    })
}

/// The comma-separated `key=value` list after `#!::`.
fn parse_access_control(list: &str) -> Result<StreamId, StreamIdError> {
    let mut resource = None;
    let mut mode = Mode::Play;
    let mut user = None;
    let mut session = None;
    let mut extra: Vec<(String, String)> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for item in list.split(',').filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(StreamIdError::Malformed(format!(
                "{item:?} is not key=value"
            )));
        };
        let key = percent_decode(k)?;
        let value = percent_decode(v)?;
        if key.is_empty() {
            return Err(StreamIdError::Malformed(format!("empty key in {item:?}")));
        }
        if seen.contains(&key) {
            return Err(StreamIdError::Malformed(format!("key {key:?} given twice")));
        }
        seen.push(key.clone());
        match key.as_str() {
            "r" => resource = Some(value),
            "m" => {
                mode = if value.eq_ignore_ascii_case("publish") {
                    Mode::Publish
                } else if value.eq_ignore_ascii_case("request") {
                    Mode::Play
                } else {
                    return Err(StreamIdError::UnknownMode(value));
                }
            }
            "u" => user = Some(value),
            "s" => session = Some(value),
            "t" if !value.eq_ignore_ascii_case("stream") => {
                return Err(StreamIdError::UnsupportedType(value))
            }
            _ => extra.push((key, value)),
        }
    }
    let resource = resource.ok_or(StreamIdError::MissingResource)?;
    let (app, name, query) = split_resource(&resource)?;
    Ok(StreamId {
        mode,
        app,
        name,
        query,
        user,
        session,
        extra,
    })
}

/// `app/name?query` into its parts; one leading `/` is tolerated. The name is the last path
/// segment and the app everything before it, the rule of every protocol ([`app_and_name`]), so
/// `r=live/a/b` is the stream RTMP, RTSP and HTTP-FLV clients reach as `live/a/b`.
fn split_resource(resource: &str) -> Result<(String, String, String), StreamIdError> {
    let (path, query) = split_query(resource);
    match app_and_name(path) {
        Some((app, name)) => Ok((app.to_string(), name.to_string(), query.to_string())),
        None => Err(StreamIdError::BadResource(resource.to_string())),
    }
}

/// Decodes `%XX` escapes; a `%` without two hex digits after it is kept literally.
fn percent_decode(s: &str) -> Result<String, StreamIdError> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8(out)
        .map_err(|_| StreamIdError::Malformed(format!("{s:?} decodes to invalid UTF-8")))?;
    if decoded.chars().any(char::is_control) {
        return Err(StreamIdError::Malformed(format!(
            "{s:?} decodes to a control character"
        )));
    }
    Ok(decoded)
}

// ------------------------------------------------------------------------------------------
// datagrams srt-protocol must not see

/// The SRT packet header (draft-sharabayko-srt-01 §3, Figures 2 and 3).
const HEADER: usize = 16;
/// The handshake's fixed fields, Version to Peer IP Address (§3.2.1, Figure 5).
const HANDSHAKE_CIF: usize = 48;
/// A Key Material message without its salt and keys: 4 words of header and the 8 bytes the
/// key wrap adds (§3.2.2, Figure 11; RFC 3394).
const KM_FIXED: usize = 16 + 8;
/// The longest loss range of a NAK taken, in packets. srt-protocol walks a range packet by
/// packet, so `1..2^31` would hold a worker thread for minutes; a real receiver never asks
/// for more than its buffer (8192 packets by default) at once.
pub const MAX_LOSS_RANGE: u32 = 1 << 16;

/// Why a datagram is dropped before srt-protocol 0.4.4 parses or handles it. Each is an input
/// that makes it panic (`unimplemented!`, `todo!`, a read past the end of a buffer), read the
/// extension list otherwise than this check does, or spin; no libsrt peer in live mode sends
/// any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    /// A handshake extension other than HSREQ/HSRSP (1, 2), KMREQ/KMRSP (3, 4) and SID (5):
    /// congestion control (6), packet filter (7), group membership (8), or an unknown type
    /// (srt-protocol parses 6, 7 and 8 and then reaches `unimplemented!`).
    #[error("handshake extension type {kind} at byte {offset} is not supported")]
    UnsupportedExtension {
        /// The Extension Type.
        kind: u16,
        /// Where its header starts in the datagram.
        offset: usize,
    },
    /// An extension whose Extension Length runs past the end of the datagram.
    #[error("handshake extension type {kind} at byte {offset} claims {len} bytes, {left} left")]
    ExtensionPastEnd {
        /// The Extension Type.
        kind: u16,
        /// Where its header starts.
        offset: usize,
        /// Its Extension Length, in bytes.
        len: usize,
        /// The bytes after its header.
        left: usize,
    },
    /// An extension whose length is not what its type holds: an HSREQ/HSRSP is 3 words, a
    /// Key Material message its header, salt and wrapped keys, a SID at least one word (an
    /// empty one makes srt-protocol read past its end).
    #[error("handshake extension type {kind} at byte {offset} cannot be {len} bytes long")]
    ExtensionLength {
        /// The Extension Type.
        kind: u16,
        /// Where its header starts.
        offset: usize,
        /// Its Extension Length, in bytes.
        len: usize,
    },
    /// 1 to 4 bytes after the last extension: less than an extension header.
    #[error("handshake ends with {left} bytes at byte {offset}, less than an extension")]
    TruncatedExtension {
        /// Where the leftover bytes start.
        offset: usize,
        /// How many there are.
        left: usize,
    },
    /// A control packet srt-protocol's connection cannot handle: Congestion Warning (4) and
    /// Peer Error (8) reach `todo!()`, and of the user-defined type 0x7FFF only the key
    /// material and handshake subtypes (1 to 4) are handled.
    #[error("control packet type {kind:#06x} (subtype {subtype}) is not supported")]
    UnsupportedControl {
        /// The Control Type.
        kind: u16,
        /// The Subtype (the Reserved field for types other than 0x7FFF).
        subtype: u16,
    },
    /// A NAK whose loss list ends inside a range, or whose range has no valid end or is
    /// longer than [`MAX_LOSS_RANGE`].
    #[error("NAK loss list has a bad range at byte {offset}")]
    BadLossRange {
        /// Where the range starts.
        offset: usize,
    },
}

fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

/// Checks a UDP datagram before it goes to srt-protocol: `Err` for the inputs srt-protocol
/// 0.4.4 cannot take (see [`DatagramError`]). Anything else passes, including what is not SRT
/// at all: srt-protocol refuses that with a parse error, which is harmless.
///
/// Read per draft-sharabayko-srt-01: the header (§3) says data or control and the Control
/// Type; a handshake (§3.2.1, Figure 5) is HSv5 when its Version is 5, and all but an
/// induction then carry extensions after the 48 fixed bytes, each an Extension Type, an
/// Extension Length in 4-byte words and the contents (§3.2.1: HSREQ/HSRSP §3.2.1.1, KMREQ/KMRSP
/// §3.2.1.2 with the Key Material message of §3.2.2, SID §3.2.1.3). The list is walked as
/// srt-protocol walks it (while more than 4 bytes are left), and every extension must have
/// exactly the length srt-protocol reads, so both see the same list. A NAK's loss list (§3.2.5)
/// codes a range as its first number with the top bit set followed by its last.
pub fn check_datagram(d: &[u8]) -> Result<(), DatagramError> {
    if d.len() < HEADER || d[0] & 0x80 == 0 {
        return Ok(()); // too short for srt-protocol (a parse error), or a data packet
    }
    let kind = be16(d, 0) & 0x7fff;
    let subtype = be16(d, 2);
    match kind {
        0x0000 => check_handshake(d),
        0x0003 => check_loss_list(d),
        0x0004 | 0x0008 => Err(DatagramError::UnsupportedControl { kind, subtype }),
        0x7fff if !(1..=4).contains(&subtype) => {
            Err(DatagramError::UnsupportedControl { kind, subtype })
        }
        _ => Ok(()),
    }
}

fn check_handshake(d: &[u8]) -> Result<(), DatagramError> {
    const INDUCTION: i32 = 1;
    if d.len() < HEADER + HANDSHAKE_CIF {
        return Ok(()); // srt-protocol: not enough data
    }
    let version = be32(d, HEADER) as i32;
    let shake_type = be32(d, HEADER + 20) as i32;
    if version != 5 || shake_type == INDUCTION {
        return Ok(()); // no extensions are read
    }
    let mut at = HEADER + HANDSHAKE_CIF;
    while d.len() - at > 4 {
        let offset = at;
        let kind = be16(d, at);
        let len = usize::from(be16(d, at + 2)) * 4;
        at += 4;
        let left = d.len() - at;
        if len > left {
            return Err(DatagramError::ExtensionPastEnd {
                kind,
                offset,
                len,
                left,
            });
        }
        let body = &d[at..at + len];
        let expected = match kind {
            1 | 2 => len == 12,
            3 | 4 => body.len() >= 16 && len == km_len(body),
            5 => len >= 4,
            _ => return Err(DatagramError::UnsupportedExtension { kind, offset }),
        };
        if !expected {
            return Err(DatagramError::ExtensionLength { kind, offset, len });
        }
        at += len;
    }
    if at < d.len() {
        return Err(DatagramError::TruncatedExtension {
            offset: at,
            left: d.len() - at,
        });
    }
    Ok(())
}

/// The length of a Key Material message as srt-protocol reads it: header, salt (SLen/4 words)
/// and one wrapped key (KLen/4 words) per KK bit, plus the wrap's 8 bytes (§3.2.2).
fn km_len(km: &[u8]) -> usize {
    let keys = (km[3] & 0b11).count_ones() as usize;
    let salt = usize::from(km[14]) * 4;
    let key = usize::from(km[15]) * 4;
    KM_FIXED + salt + key * keys
}

fn check_loss_list(d: &[u8]) -> Result<(), DatagramError> {
    const RANGE: u32 = 0x8000_0000;
    let mut at = HEADER;
    while d.len() - at >= 4 {
        let first = be32(d, at);
        if first & RANGE == 0 {
            at += 4;
            continue;
        }
        let start = first & !RANGE;
        let good = d.len() - at >= 8 && {
            let end = be32(d, at + 4);
            end & RANGE == 0 && end >= start && end - start <= MAX_LOSS_RANGE
        };
        if !good {
            return Err(DatagramError::BadLossRange { offset: at });
        }
        at += 8;
    }
    Ok(())
}

/// Holds a new connection's data until the caller has shown that it completed the handshake.
///
/// A listener sends its conclusion response and considers the connection open; the caller is
/// connected only once that response has arrived. Data sent right behind the response can
/// overtake it on a reordering path, and a libsrt caller drops data that arrives while it still
/// expects the handshake ("received DATA while HANDSHAKE expected"), re-sends its conclusion
/// request and loses those packets. So the first data waits until the caller sends anything that
/// is not a handshake (an ACK, a keepalive, data: it only does once connected), or at most
/// `longest` (a caller with nothing to say may send nothing for a second: a libsrt player's
/// first keepalive comes 1 s after its last handshake).
///
/// Payloads that waited are stamped again with the release time ([`FirstDataHold::stamp`]):
/// SRT's timestamp is when a packet was sent, and the caller's TSBPD plays it one latency after
/// that, so a payload stamped before a hold of most of a second would arrive too late to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstDataHold {
    /// Until when data is held; `None` once released.
    until: Option<Instant>,
    /// When it was released.
    released_at: Option<Instant>,
}

impl FirstDataHold {
    /// A hold for a connection opened at `now`, released at `now + longest` at the latest.
    pub fn new(now: Instant, longest: Duration) -> FirstDataHold {
        FirstDataHold {
            until: Some(now + longest),
            released_at: None,
        }
    }

    /// The caller sent a packet at `now`: a handshake (it may still be waiting for the
    /// response) or anything else (it is connected).
    pub fn on_packet(&mut self, now: Instant, handshake: bool) {
        if !handshake {
            self.release(now);
        }
    }

    /// Whether data may be sent at `now`.
    pub fn released(&mut self, now: Instant) -> bool {
        if let Some(until) = self.until.filter(|until| now >= *until) {
            self.release(until);
        }
        self.until.is_none()
    }

    fn release(&mut self, at: Instant) {
        if self.until.take().is_some() {
            self.released_at = Some(at);
        }
    }

    /// The SRT send time of a payload the session stamped `stamped`: no earlier than the
    /// release.
    pub fn stamp(&self, stamped: Instant) -> Instant {
        match self.released_at {
            Some(at) => stamped.max(at),
            None => stamped,
        }
    }

    /// When the hold ends by itself, while it holds.
    pub fn deadline(&self) -> Option<Instant> {
        self.until
    }
}

/// When each payload sent to a player is stamped: SRT's timestamp of a packet is the moment
/// the receiver's TSBPD measures its release from (one latency later), and live receivers take
/// it for the moment the media was produced (libsrt's `srctime`: GStreamer's `srtsrc` stamps
/// its buffers with it). So a payload is stamped at the pace of its media time (the DTS of the
/// frame it carries), not of the moment it is sent: the cached GOP a player starts with is sent
/// as one burst, but its frames are released one latency after the stamps, spread over the
/// GOP's own duration as a live source spreads them — rather than all at once, which squeezes a
/// GOP of media into a few milliseconds of `srctime`.
///
/// The first payload with a media time is stamped at the moment it is handed over; every later
/// one at that moment plus its media time's distance from the first. So a player that joins a
/// GOP `g` seconds old is served `g` seconds ahead of the stamps' wall clock: its receive buffer
/// holds those seconds, which it would otherwise hold (and a player that plays every frame
/// does) in its decoder. Bounds, on which the pacing starts again from the payload at hand:
/// never before the moment of hand-over (a payload stamped in the past may already be too late
/// for the receiver, and srt-protocol's sender drops what is older than 1.25 latencies) — a
/// publisher that fell behind its own clock —, and never more than `max_lead` after it (a jump
/// of the publisher's clock; the session hands the part of a GOP older than that without a
/// media time, so it is released at once and the rest paced). Stamps never go back (frames of two tracks interleave out of DTS order by a few
/// milliseconds); a payload without a media time takes the last stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaClock {
    /// A media time (µs) and its stamp: the origin of the pacing.
    origin: Option<(i64, Instant)>,
    /// The last stamp given.
    last: Option<Instant>,
    max_lead: Duration,
}

impl MediaClock {
    /// A clock that paces at most `max_lead` ahead of the moment of hand-over.
    pub fn new(max_lead: Duration) -> MediaClock {
        MediaClock {
            origin: None,
            last: None,
            max_lead,
        }
    }

    /// The stamp of a payload handed to the connection at `now`, carrying media of decode time
    /// `dts` (µs on the publisher's clock), or no media time of its own.
    pub fn stamp(&mut self, now: Instant, dts: Option<i64>) -> Instant {
        let floor = self.last.map_or(now, |last| last.max(now));
        let Some(dts) = dts else {
            self.last = Some(floor);
            return floor;
        };
        let paced = self.origin.and_then(|(origin_dts, at)| {
            let ahead = dts.checked_sub(origin_dts)?;
            let offset = Duration::from_micros(ahead.unsigned_abs());
            if ahead >= 0 {
                at.checked_add(offset)
            } else {
                at.checked_sub(offset)
            }
        });
        let ceiling = now + self.max_lead;
        let stamp = match paced {
            Some(paced) if paced >= now && paced <= ceiling => paced.max(floor),
            // The first payload, a publisher behind its clock, or a jump: pace from here.
            _ => {
                let stamp = match paced {
                    Some(paced) if paced > ceiling => ceiling.max(floor),
                    _ => floor,
                };
                self.origin = Some((dts, stamp));
                stamp
            }
        };
        self.last = Some(stamp);
        stamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(mode: Mode, app: &str, name: &str) -> StreamId {
        StreamId {
            mode,
            app: app.into(),
            name: name.into(),
            query: String::new(),
            user: None,
            session: None,
            extra: Vec::new(),
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn access_control_syntax() {
        assert_eq!(
            StreamId::parse("#!::r=live/cam3,m=publish"),
            Ok(id(Mode::Publish, "live", "cam3"))
        );
        assert_eq!(
            StreamId::parse("#!::r=live/cam3,m=request"),
            Ok(id(Mode::Play, "live", "cam3"))
        );
        // m defaults to request; keys in any order; case-insensitive mode values.
        assert_eq!(
            StreamId::parse("#!::r=live/cam3"),
            Ok(id(Mode::Play, "live", "cam3"))
        );
        assert_eq!(
            StreamId::parse("#!::m=PUBLISH,r=live/cam3"),
            Ok(id(Mode::Publish, "live", "cam3"))
        );
        let full = StreamId::parse(
            "#!::u=alice,r=live/cam3?token=abc&x=1,h=example.com,s=sess42,m=publish,t=stream,\
             acme_key=v=1==",
        )
        .expect("valid");
        assert_eq!(
            full,
            StreamId {
                mode: Mode::Publish,
                app: "live".into(),
                name: "cam3".into(),
                query: "token=abc&x=1".into(),
                user: Some("alice".into()),
                session: Some("sess42".into()),
                extra: pairs(&[("h", "example.com"), ("t", "stream"), ("acme_key", "v=1==")]),
            }
        );
        // A leading slash and a trailing comma are tolerated.
        assert_eq!(
            StreamId::parse("#!::r=/live/cam3,"),
            Ok(id(Mode::Play, "live", "cam3"))
        );
    }

    #[test]
    fn the_last_segment_is_the_name_as_for_every_protocol() {
        // As an RTMP, RTSP or HTTP-FLV path `live/a/b`: app `live/a`, name `b`.
        for s in [
            "#!::r=live/a/b,m=publish",
            "publish:live/a/b",
            "#!::r=/live/a/b,m=publish",
        ] {
            assert_eq!(
                StreamId::parse(s),
                Ok(id(Mode::Publish, "live/a", "b")),
                "{s}"
            );
        }
        assert_eq!(
            StreamId::parse("live/a/b/c"),
            Ok(id(Mode::Play, "live/a/b", "c"))
        );
        let s = StreamId::parse("#!::r=live/a/b?token=x/y").expect("valid");
        assert_eq!(
            (s.app.as_str(), s.name.as_str(), s.query.as_str()),
            ("live/a", "b", "token=x/y")
        );
        for bad in ["#!::r=live//b", "#!::r=live/a/", "live/a//"] {
            assert!(
                matches!(StreamId::parse(bad), Err(StreamIdError::BadResource(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn escaping() {
        let s = StreamId::parse("#!::r=live/cam%203,m=publish,token=a%2Cb%3Dc%25,u=bob%2C")
            .expect("valid");
        assert_eq!((s.app.as_str(), s.name.as_str()), ("live", "cam 3"));
        assert_eq!(s.extra, pairs(&[("token", "a,b=c%")]));
        assert_eq!(s.user.as_deref(), Some("bob,"));
        // A lone % stays literal; an escaped key works too.
        let s = StreamId::parse("#!::r=live/x,pct=100%,my%5Fkey=1").expect("valid");
        assert_eq!(s.extra, pairs(&[("pct", "100%"), ("my_key", "1")]));
        // Escapes must not smuggle in control characters or broken UTF-8.
        assert!(matches!(
            StreamId::parse("#!::r=live/x%0A"),
            Err(StreamIdError::Malformed(_))
        ));
        assert!(matches!(
            StreamId::parse("#!::r=live/x,k=%FF"),
            Err(StreamIdError::Malformed(_))
        ));
    }

    #[test]
    fn prefixed_and_plain_forms() {
        assert_eq!(
            StreamId::parse("publish:live/cam3"),
            Ok(id(Mode::Publish, "live", "cam3"))
        );
        assert_eq!(
            StreamId::parse("read:live/cam3"),
            Ok(id(Mode::Play, "live", "cam3"))
        );
        assert_eq!(
            StreamId::parse("play:live/cam3"),
            Ok(id(Mode::Play, "live", "cam3"))
        );
        assert_eq!(
            StreamId::parse("live/cam3"),
            Ok(id(Mode::Play, "live", "cam3"))
        );
        assert_eq!(
            StreamId::parse("live/cam:3"),
            Ok(id(Mode::Play, "live", "cam:3"))
        );
        let s = StreamId::parse("live/cam3?token=abc").expect("valid");
        assert_eq!((s.name.as_str(), s.query.as_str()), ("cam3", "token=abc"));
        let s = StreamId::parse("publish:live/cam3:alice:secret:token=t").expect("valid");
        assert_eq!(s.mode, Mode::Publish);
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(s.extra, pairs(&[("pass", "secret")]));
        assert_eq!(s.query, "token=t");
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(StreamId::parse(""), Err(StreamIdError::Empty));
        assert_eq!(StreamId::parse("   "), Err(StreamIdError::Empty));
        assert_eq!(
            StreamId::parse(&"a/".repeat(300)),
            Err(StreamIdError::TooLong(600))
        );
        assert_eq!(
            StreamId::parse("#!::r=live/cam3,m=bidirectional"),
            Err(StreamIdError::UnknownMode("bidirectional".into()))
        );
        assert_eq!(
            StreamId::parse("push:live/cam3"),
            Err(StreamIdError::UnknownMode("push".into()))
        );
        assert_eq!(
            StreamId::parse("#!::m=publish,u=alice"),
            Err(StreamIdError::MissingResource)
        );
        assert_eq!(StreamId::parse("#!::"), Err(StreamIdError::MissingResource));
        for bad in [
            "cam3",
            "live/",
            "/cam3",
            "#!::r=live",
            "publish:",
            "#!::r=live/?a=b",
        ] {
            assert!(
                matches!(StreamId::parse(bad), Err(StreamIdError::BadResource(_))),
                "{bad}"
            );
        }
        assert_eq!(
            StreamId::parse("#!::r=a/b,t=file"),
            Err(StreamIdError::UnsupportedType("file".into()))
        );
        for junk in [
            "#!::r=live/cam3,publish",
            "#!::=x,r=a/b",
            "#!::r=a/b,r=c/d",
            "#!:{r=a/b}",
            "#!x",
            "live/cam\n3",
            "live/cam\u{0}",
            "publish:a/b:c",
            "publish:a/b:u:p:q:extra",
        ] {
            assert!(
                matches!(StreamId::parse(junk), Err(StreamIdError::Malformed(_))),
                "{junk:?}"
            );
        }
        // Every error reads as a sentence for logs and hook denials.
        assert_eq!(
            StreamIdError::MissingResource.to_string(),
            "streamid has no resource (r=app/name)"
        );
    }

    // ---- check_datagram ----

    /// FFmpeg 5.1 (libsrt 1.5.1) playing: its conclusion handshake, HSREQ and SID.
    const FFMPEG_PLAY_CONCLUSION: &[u8] =
        include_bytes!("../testdata/srt_ffmpeg_play_conclusion.bin");
    /// FFmpeg 5.1 publishing with `passphrase=...&pbkeylen=16`: HSREQ, SID and KMREQ.
    const FFMPEG_PUBLISH_KMREQ: &[u8] =
        include_bytes!("../testdata/srt_ffmpeg_publish_conclusion_kmreq.bin");
    /// FFmpeg 5.1 playing behind a lossy link: a NAK of one packet, and a full ACK.
    const FFMPEG_NAK: &[u8] = include_bytes!("../testdata/srt_ffmpeg_play_nak.bin");
    const FFMPEG_ACK: &[u8] = include_bytes!("../testdata/srt_ffmpeg_play_ack.bin");

    /// The captured conclusion's 64 fixed bytes followed by `extensions`.
    fn conclusion(extensions: &[(u16, &[u8])]) -> Vec<u8> {
        let mut p = FFMPEG_PLAY_CONCLUSION[..64].to_vec();
        for (kind, body) in extensions {
            p.extend_from_slice(&kind.to_be_bytes());
            p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
            p.extend_from_slice(body);
        }
        p
    }

    /// The captured HSREQ and SID, as (type, body).
    fn captured_extensions() -> Vec<(u16, Vec<u8>)> {
        let d = FFMPEG_PLAY_CONCLUSION;
        vec![(1, d[68..80].to_vec()), (5, d[84..112].to_vec())]
    }

    fn parse_panics(d: &[u8]) -> bool {
        use srt_protocol::packet::Packet;
        std::panic::catch_unwind(|| Packet::parse(&mut std::io::Cursor::new(d), false)).is_err()
    }

    #[test]
    fn what_libsrt_sends_passes() {
        for (what, d) in [
            ("conclusion", FFMPEG_PLAY_CONCLUSION),
            ("conclusion with KMREQ", FFMPEG_PUBLISH_KMREQ),
            ("NAK", FFMPEG_NAK),
            ("ACK", FFMPEG_ACK),
        ] {
            assert_eq!(check_datagram(d), Ok(()), "{what}");
        }
        let ext = captured_extensions();
        let rebuilt = conclusion(&[(1, &ext[0].1), (5, &ext[1].1)]);
        assert_eq!(
            rebuilt, FFMPEG_PLAY_CONCLUSION,
            "the test helper rebuilds it"
        );
        // Data packets, an induction (no extensions are read) and what is not SRT pass on.
        assert_eq!(check_datagram(&[0u8; 1316]), Ok(()));
        let mut induction = FFMPEG_PLAY_CONCLUSION[..64].to_vec();
        induction[36..40].copy_from_slice(&1i32.to_be_bytes());
        induction.extend_from_slice(&[0, 6, 0, 0, 1, 2]);
        assert_eq!(check_datagram(&induction), Ok(()));
        assert_eq!(check_datagram(b"GET / HTTP/1.1"), Ok(()));
    }

    #[test]
    fn extensions_srt_protocol_panics_on_are_refused() {
        let ext = captured_extensions();
        let (hsreq, sid) = (&ext[0].1[..], &ext[1].1[..]);
        // Congestion control "live", a packet filter, group membership, the reject subtype:
        // srt-protocol 0.4.4 parses each and then reaches `unimplemented!`.
        let cases: Vec<(Vec<u8>, DatagramError)> = vec![
            (
                conclusion(&[(1, hsreq), (6, b"evil"), (5, sid)]),
                DatagramError::UnsupportedExtension {
                    kind: 6,
                    offset: 80,
                },
            ),
            (
                conclusion(&[(1, hsreq), (5, sid), (7, b"a:b\0")]),
                DatagramError::UnsupportedExtension {
                    kind: 7,
                    offset: 112,
                },
            ),
            (
                conclusion(&[(8, &[1, 0, 0, 0]), (1, hsreq)]),
                DatagramError::UnsupportedExtension {
                    kind: 8,
                    offset: 64,
                },
            ),
            (
                conclusion(&[(0, &[0; 4])]),
                DatagramError::UnsupportedExtension {
                    kind: 0,
                    offset: 64,
                },
            ),
            // Reads past the end of an empty body: group membership and an empty SID.
            (
                conclusion(&[(1, hsreq), (8, b""), (5, sid)]),
                DatagramError::UnsupportedExtension {
                    kind: 8,
                    offset: 80,
                },
            ),
            (
                conclusion(&[(1, hsreq), (5, b""), (1, hsreq)]),
                DatagramError::ExtensionLength {
                    kind: 5,
                    offset: 80,
                    len: 0,
                },
            ),
        ];
        for (d, error) in cases {
            assert!(parse_panics(&d), "srt-protocol panics on {error}");
            assert_eq!(check_datagram(&d), Err(error));
        }
    }

    #[test]
    fn malformed_extension_lists_are_refused() {
        let ext = captured_extensions();
        let (hsreq, sid) = (&ext[0].1[..], &ext[1].1[..]);
        // An Extension Length past the end of the datagram.
        let mut d = conclusion(&[(1, hsreq), (5, sid)]);
        d[82..84].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(
            check_datagram(&d),
            Err(DatagramError::ExtensionPastEnd {
                kind: 5,
                offset: 80,
                len: 32,
                left: 28
            })
        );
        // Truncated: an extension header cut short, or a short HSREQ.
        let mut d = conclusion(&[(1, hsreq)]);
        d.extend_from_slice(&[0, 5]);
        assert_eq!(
            check_datagram(&d),
            Err(DatagramError::TruncatedExtension {
                offset: 80,
                left: 2
            })
        );
        assert_eq!(
            check_datagram(&conclusion(&[(1, &hsreq[..8]), (5, sid)])),
            Err(DatagramError::ExtensionLength {
                kind: 1,
                offset: 64,
                len: 8
            })
        );
        // An HSREQ longer than srt-protocol reads: the rest would be read as an extension of
        // its own (here a congestion control one hidden inside).
        let mut long = hsreq.to_vec();
        long.extend_from_slice(&[0, 6, 0, 1, b'e', b'v', b'i', b'l']);
        let d = conclusion(&[(1, &long)]);
        assert!(parse_panics(&d), "hidden inside the HSREQ");
        assert_eq!(
            check_datagram(&d),
            Err(DatagramError::ExtensionLength {
                kind: 1,
                offset: 64,
                len: 20
            })
        );
        // The same with a key material message one word longer than its salt and keys.
        let km = &FFMPEG_PUBLISH_KMREQ[116..];
        assert_eq!(
            km_len(km),
            km.len(),
            "the captured KMREQ is exactly its length"
        );
        let mut long = km.to_vec();
        long.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            check_datagram(&conclusion(&[(1, hsreq), (3, &long)])),
            Err(DatagramError::ExtensionLength {
                kind: 3,
                offset: 80,
                len: km.len() + 4
            })
        );
    }

    #[test]
    fn control_packets_srt_protocol_cannot_handle_are_refused() {
        let control = |kind: u16, subtype: u16, body: &[u8]| {
            let mut p = vec![0u8; 16];
            p[0..2].copy_from_slice(&(0x8000 | kind).to_be_bytes());
            p[2..4].copy_from_slice(&subtype.to_be_bytes());
            p.extend_from_slice(body);
            p
        };
        for (kind, subtype) in [
            (4, 0),
            (8, 0),
            (0x7fff, 0),
            (0x7fff, 5),
            (0x7fff, 6),
            (0x7fff, 7),
            (0x7fff, 8),
            (0x7fff, 9),
        ] {
            assert_eq!(
                check_datagram(&control(kind, subtype, &[0; 4])),
                Err(DatagramError::UnsupportedControl { kind, subtype })
            );
        }
        // Reading the body of these panics already.
        assert!(parse_panics(&control(0x7fff, 5, b"")));
        assert!(parse_panics(&control(0x7fff, 8, b"")));
        // Keepalive, ACK, shutdown, ACKACK, drop request, key material refresh pass.
        for (kind, subtype) in [
            (1, 0),
            (2, 0),
            (5, 0),
            (6, 0),
            (7, 0),
            (0x7fff, 3),
            (0x7fff, 4),
        ] {
            assert_eq!(check_datagram(&control(kind, subtype, &[0; 8])), Ok(()));
        }
        // A NAK whose list ends inside a range panics srt-protocol when it is read.
        let range = |start: u32, end: Option<u32>| {
            let mut body = 7u32.to_be_bytes().to_vec();
            body.extend_from_slice(&(start | 0x8000_0000).to_be_bytes());
            if let Some(end) = end {
                body.extend_from_slice(&end.to_be_bytes());
            }
            control(3, 0, &body)
        };
        assert_eq!(check_datagram(&range(10, Some(20))), Ok(()));
        assert_eq!(
            check_datagram(&range(10, Some(10 + MAX_LOSS_RANGE))),
            Ok(())
        );
        for bad in [
            range(10, None),
            range(10, Some(9)),
            range(10, Some(0x8000_0014)),
            range(10, Some(11 + MAX_LOSS_RANGE)),
        ] {
            assert_eq!(
                check_datagram(&bad),
                Err(DatagramError::BadLossRange { offset: 20 })
            );
        }
    }

    /// Mutated libsrt handshakes: whatever the check lets through, srt-protocol parses
    /// without panicking.
    #[test]
    fn what_passes_the_check_never_panics_the_parser() {
        let mut seed = 0x5eed_u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let (mut passed, mut refused) = (0, 0);
        for i in 0..20_000 {
            let base = if i % 2 == 0 {
                FFMPEG_PLAY_CONCLUSION
            } else {
                FFMPEG_PUBLISH_KMREQ
            };
            let mut d = base.to_vec();
            for _ in 0..1 + next() % 3 {
                let at = 64 + next() % (d.len() - 64);
                match next() % 4 {
                    // An extension type or length word, or any byte.
                    0 => d[at] = (next() % 10) as u8,
                    1 => d[at] = 0,
                    2 => d[at] = next() as u8,
                    _ => d.truncate(at),
                }
                if d.len() <= 64 {
                    break;
                }
            }
            match check_datagram(&d) {
                Ok(()) => {
                    passed += 1;
                    assert!(!parse_panics(&d), "passed the check but panics: {d:02x?}");
                }
                Err(_) => refused += 1,
            }
        }
        assert!(
            passed > 1000 && refused > 1000,
            "{passed} passed, {refused} refused"
        );
    }

    #[test]
    fn first_data_waits_for_a_packet_that_is_not_a_handshake() {
        let start = Instant::now();
        let mut hold = FirstDataHold::new(start, Duration::from_secs(1));
        let ms = |n| start + Duration::from_millis(n);
        assert!(!hold.released(start));
        assert_eq!(hold.deadline(), Some(ms(1000)));
        // The caller repeats its conclusion request: the response did not reach it.
        hold.on_packet(ms(250), true);
        assert!(!hold.released(ms(300)));
        // Its first ACK or keepalive: it is connected.
        hold.on_packet(ms(400), false);
        assert!(hold.released(ms(401)));
        assert_eq!(hold.deadline(), None);
        // What waited is sent as of the release; what came later keeps its stamp.
        assert_eq!(hold.stamp(ms(10)), ms(400));
        assert_eq!(hold.stamp(ms(450)), ms(450));
        // Released for good: a later handshake (a late duplicate) does not hold data again.
        hold.on_packet(ms(500), true);
        assert!(hold.released(ms(502)));
        assert_eq!(hold.stamp(ms(10)), ms(400));
    }

    #[test]
    fn first_data_is_not_held_past_the_longest_hold() {
        let start = Instant::now();
        let mut hold = FirstDataHold::new(start, Duration::from_millis(500));
        assert_eq!(hold.stamp(start), start);
        assert!(!hold.released(start + Duration::from_millis(499)));
        assert!(hold.released(start + Duration::from_millis(650)));
        assert_eq!(hold.deadline(), None);
        assert_eq!(hold.stamp(start), start + Duration::from_millis(500));
    }

    #[test]
    fn payloads_are_stamped_at_the_pace_of_their_media() {
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        let mut clock = MediaClock::new(Duration::from_secs(3));
        // A GOP of 2 s (25 frames a second) sent as a burst within 20 ms: stamped 40 ms apart,
        // as it was produced, from the moment the first is handed over.
        for n in 0..50u64 {
            let dts = 10_000_000 + n as i64 * 40_000;
            assert_eq!(clock.stamp(ms(n * 20 / 50), Some(dts)), ms(n * 40));
        }
        // Live frames after it keep the pace (2 s ahead of the moment they are sent).
        assert_eq!(clock.stamp(ms(21), Some(12_000_000)), ms(2000));
        assert_eq!(clock.stamp(ms(60), Some(12_040_000)), ms(2040));
        // Without a media time: the last stamp; an audio frame slightly behind the video's
        // DTS never goes back.
        assert_eq!(clock.stamp(ms(61), None), ms(2040));
        assert_eq!(clock.stamp(ms(62), Some(12_030_000)), ms(2040));
        assert_eq!(clock.stamp(ms(63), Some(12_080_000)), ms(2080));
    }

    #[test]
    fn media_pacing_stays_between_now_and_the_longest_lead() {
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        let mut clock = MediaClock::new(Duration::from_secs(3));
        assert_eq!(clock.stamp(ms(0), Some(0)), ms(0));
        assert_eq!(clock.stamp(ms(40), Some(40_000)), ms(40));
        // The publisher stalls for a second: not stamped in the past; pacing starts again.
        assert_eq!(clock.stamp(ms(1080), Some(80_000)), ms(1080));
        assert_eq!(clock.stamp(ms(1100), Some(120_000)), ms(1120));
        // Its clock jumps 1 h ahead: at most 3 s ahead of now, then paced from there.
        assert_eq!(clock.stamp(ms(1130), Some(3_600_000_000)), ms(4130));
        assert_eq!(clock.stamp(ms(1170), Some(3_600_040_000)), ms(4170));
        // ... or back: stamps never go back, pacing starts again at the last stamp.
        assert_eq!(clock.stamp(ms(1200), Some(0)), ms(4170));
        assert_eq!(clock.stamp(ms(1240), Some(40_000)), ms(4210));
    }
}

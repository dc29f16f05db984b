//! HLS players: `http://host:port/.../index.m3u8[?query]` (any URL whose path ends in
//! `.m3u8`).
//!
//! Each player is one keep-alive HTTP/1.1 connection (opened again only when the server closes
//! it between two requests), its requests one after another, as a player's loader does:
//!
//! 1. the URL as given: a multivariant playlist (its first variant is followed) or directly a
//!    media playlist (nginx-rtmp, SRS without `hls_ctx`);
//! 2. the media playlist, the init segment (`EXT-X-MAP`) once, then
//!    - **Low-Latency HLS** (`--hls-mode ll`, the default): the newest three parts (where a
//!      player starts, `PART-HOLD-BACK`), then a blocking reload for the next part
//!      (`_HLS_msn` / `_HLS_part`) and every part it lists that was not fetched yet, again and
//!      again (the preload hint is not fetched ahead: one connection, one request at a time);
//!    - **plain HLS** (`--hls-mode plain`): the newest three segments (where a player starts,
//!      three target durations from the live edge), then the playlist again one target
//!      duration after the last reload began (half of it when nothing changed, RFC 8216
//!      §6.3.4) and every new segment.
//!
//! Play start is the end of the response head of the first `200` playlist. Media bytes are the
//! bodies of the init segment, parts and segments (playlists are counted apart). A part or
//! segment counts as one arrival when its body is complete: a segment and an
//! `INDEPENDENT=YES` part as a keyframe (both start with one), so "first keyframe" is the
//! first decodable media and "largest frame gap" the largest gap between two media arrivals.
//! Bodies are counted as they stream and never kept, except playlists. Any answer other than
//! `200`, a playlist with `EXT-X-ENDLIST`, or a request with no answer within
//! [`REQUEST_TIMEOUT`] ends the player with an error.

use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::{tcp_connect, write_all, PlayerStats, Res, Target, READ_BUF};

/// The longest a request may take (a blocking reload is held at most three target durations
/// by the servers that block).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response head.
const MAX_HEAD: usize = 16 * 1024;
/// Largest playlist kept.
const MAX_PLAYLIST: usize = 4 << 20;
/// Parts (LL) or segments (plain) fetched at start, back from the live edge.
const START_BACK: usize = 3;

/// How a player follows the live edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Low-Latency HLS: blocking reloads, every part.
    LowLatency,
    /// Plain HLS: a reload about every target duration, every segment.
    Plain,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::LowLatency => "ll",
            Mode::Plain => "plain",
        }
    }
}

/// What an HLS player counted beyond the media.
#[derive(Debug, Default, Clone, Copy)]
pub struct HlsStats {
    /// Requests answered.
    pub requests: u64,
    /// Playlists fetched (multivariant and media).
    pub playlists: u64,
    /// Of them, blocking reloads (`_HLS_msn`).
    pub blocking: u64,
    /// Playlist body bytes.
    pub playlist_bytes: u64,
    /// Parts fetched.
    pub parts: u64,
    /// Segments fetched.
    pub segments: u64,
    /// Connections opened again after the server closed one.
    pub reconnects: u64,
}

/// An HTTP/1.1 answer's head as far as a player needs it.
struct Answer {
    status: u16,
}

/// How a body's end is known.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// One player's keep-alive connection and its read buffer.
struct Conn {
    sock: Option<TcpStream>,
    buf: Vec<u8>,
    /// Unread bytes are `buf[at..end]`.
    at: usize,
    end: usize,
    /// Answers read on the current connection.
    answered: u64,
}

/// Where a body's bytes go.
enum Sink<'a> {
    /// A playlist: kept.
    Keep(&'a mut Vec<u8>),
    /// Media: counted.
    Media,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            sock: None,
            buf: vec![0u8; READ_BUF],
            at: 0,
            end: 0,
            answered: 0,
        }
    }

    /// Reads more bytes into the buffer (moving unread bytes to its front when needed).
    async fn fill(&mut self, t: &mut Timer<'_, '_>, armed: bool) -> Res<usize> {
        if self.at == self.end {
            self.at = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.at..self.end, 0);
            self.end -= self.at;
            self.at = 0;
        }
        let Some(sock) = self.sock.as_mut() else {
            return Err("not connected".into());
        };
        let read = sock.read(&mut self.buf[self.end..]);
        let n = tokio::select! {
            r = read => r.map_err(|e| format!("read: {e}"))?,
            _ = t.timer.as_mut(), if armed => {
                return Err(format!("no play start within {} s", t.start_timeout))
            }
        };
        self.end += n;
        Ok(n)
    }

    /// `GET target`: the head, then the body into `sink`. A connection the server closed
    /// before answering (an idle keep-alive connection) is opened again once.
    async fn get(
        &mut self,
        target: &Target,
        path: &str,
        st: &mut PlayerStats,
        t: &mut Timer<'_, '_>,
        sink: Sink<'_>,
    ) -> Res<Answer> {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: streamgate-load\r\nAccept: */*\r\n\r\n",
            target.authority
        );
        let mut retried = false;
        let (status, framing, close) = loop {
            if self.sock.is_none() {
                if st.tcp_connect.is_some() {
                    st.hls.reconnects += 1;
                }
                // Only the first connect's time is the player's connect time.
                let first = st.tcp_connect;
                let fresh = tcp_connect(target, st).await;
                if first.is_some() {
                    st.tcp_connect = first;
                }
                self.sock = Some(fresh?);
                self.at = 0;
                self.end = 0;
                self.answered = 0;
            }
            let Some(sock) = self.sock.as_mut() else {
                continue;
            };
            let reused = self.answered > 0;
            if let Err(e) = write_all(sock, req.as_bytes()).await {
                if reused && !retried {
                    retried = true;
                    self.sock = None;
                    continue;
                }
                return Err(e);
            }
            match self.head(st, t).await {
                Ok(Some(head)) => break head,
                // Closed before a byte of the answer: the server ended an idle keep-alive
                // connection just as the request went out.
                Ok(None) if reused && !retried => {
                    retried = true;
                    self.sock = None;
                }
                Ok(None) => return Err("connection closed by server".into()),
                Err(e) => return Err(e),
            }
        };
        self.answered += 1;
        st.hls.requests += 1;
        let (mut sink, media) = match sink {
            Sink::Keep(v) => {
                v.clear();
                (Some(v), false)
            }
            Sink::Media => (None, status == 200),
        };
        let mut take = |bytes: &[u8], now: Instant, st: &mut PlayerStats| -> Res<()> {
            if let Some(v) = sink.as_mut() {
                if v.len() + bytes.len() > MAX_PLAYLIST {
                    return Err("playlist too large".into());
                }
                v.extend_from_slice(bytes);
            } else if media {
                st.media(bytes.len(), now);
            }
            Ok(())
        };
        match framing {
            Framing::Length(mut left) => {
                while left > 0 {
                    if self.at == self.end && self.fill(t, false).await? == 0 {
                        return Err("connection closed in a body".into());
                    }
                    let n = (left as usize).min(self.end - self.at);
                    take(&self.buf[self.at..self.at + n], Instant::now(), st)?;
                    self.at += n;
                    left -= n as u64;
                }
            }
            Framing::UntilClose => loop {
                if self.at < self.end {
                    take(&self.buf[self.at..self.end], Instant::now(), st)?;
                    self.at = self.end;
                }
                if self.fill(t, false).await? == 0 {
                    self.sock = None;
                    break;
                }
            },
            Framing::Chunked => {
                let mut state = Chunk::Size(0, 0);
                while !matches!(state, Chunk::Done) {
                    if self.at == self.end && self.fill(t, false).await? == 0 {
                        return Err("connection closed in a chunked body".into());
                    }
                    let now = Instant::now();
                    let (used, data) = state.step(&self.buf[self.at..self.end])?;
                    if let Some((from, to)) = data {
                        take(&self.buf[self.at + from..self.at + to], now, st)?;
                    }
                    self.at += used;
                }
            }
        }
        if close {
            self.sock = None;
        }
        Ok(Answer { status })
    }

    /// Reads a response head: status, body framing, `Connection: close`. `None` when the
    /// connection closed before any byte of it.
    async fn head(
        &mut self,
        st: &mut PlayerStats,
        t: &mut Timer<'_, '_>,
    ) -> Res<Option<(u16, Framing, bool)>> {
        loop {
            if self.at < self.end {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.buf[self.at..self.end]) {
                    Ok(httparse::Status::Complete(len)) => {
                        let status = resp.code.unwrap_or(0);
                        let mut framing = Framing::UntilClose;
                        let mut close = resp.version == Some(0);
                        for h in resp.headers.iter() {
                            let value = std::str::from_utf8(h.value).unwrap_or("").trim();
                            if h.name.eq_ignore_ascii_case("content-length") {
                                let n = value
                                    .parse()
                                    .map_err(|_| format!("bad Content-Length {value:?}"))?;
                                if !matches!(framing, Framing::Chunked) {
                                    framing = Framing::Length(n);
                                }
                            } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                                && value.to_ascii_lowercase().contains("chunked")
                            {
                                framing = Framing::Chunked;
                            } else if h.name.eq_ignore_ascii_case("connection") {
                                close = value.eq_ignore_ascii_case("close");
                            }
                        }
                        self.at += len;
                        if (100..200).contains(&status) {
                            continue;
                        }
                        if status == 204 || status == 304 {
                            framing = Framing::Length(0);
                        }
                        if status == 200 {
                            st.started_playing(Instant::now());
                        }
                        return Ok(Some((status, framing, close)));
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.end - self.at >= MAX_HEAD {
                            return Err("HTTP response head too large".into());
                        }
                    }
                    Err(e) => return Err(format!("bad HTTP response: {e}")),
                }
            }
            let had = self.end - self.at;
            let armed = st.play_start.is_none();
            match self.fill(t, armed).await {
                Ok(0) if had == 0 => return Ok(None),
                Ok(0) => return Err("connection closed in a response head".into()),
                Ok(_) => {}
                // A reset instead of a close, before the answer began: as a close.
                Err(e) if had == 0 && e.starts_with("read:") && self.answered > 0 => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// `Transfer-Encoding: chunked`, decoded as it streams.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// The size line: size so far, hex digits read (then an extension until its end).
    Size(u64, u8),
    /// Past a `;`: skipping to the end of the size line; the size.
    Ext(u64),
    /// The `\n` of the size line.
    SizeLf(u64),
    /// Data bytes left.
    Data(u64),
    /// The CRLF after a chunk's data: bytes left.
    DataEnd(u8),
    /// After the last chunk: at the start of a trailer line.
    TrailerStart,
    /// In a trailer line.
    Trailer,
    /// The `\n` of the empty line that ends the body.
    EndLf,
    Done,
}

impl Chunk {
    /// Consumes what it can of `data`: bytes used, and the range of chunk data among them.
    fn step(&mut self, data: &[u8]) -> Res<(usize, Option<(usize, usize)>)> {
        let mut pos = 0;
        while pos < data.len() {
            if let Chunk::Data(left) = *self {
                let n = (left as usize).min(data.len() - pos);
                *self = if n as u64 == left {
                    Chunk::DataEnd(2)
                } else {
                    Chunk::Data(left - n as u64)
                };
                return Ok((pos + n, Some((pos, pos + n))));
            }
            let b = data[pos];
            pos += 1;
            *self = match *self {
                Chunk::Size(size, digits) => match b {
                    b'\r' => Chunk::SizeLf(size),
                    b';' | b' ' | b'\t' => Chunk::Ext(size),
                    _ => {
                        let d = (b as char)
                            .to_digit(16)
                            .ok_or("bad chunk size in a chunked body")?;
                        if digits >= 12 {
                            return Err("chunk size too large".into());
                        }
                        Chunk::Size(size * 16 + u64::from(d), digits + 1)
                    }
                },
                Chunk::Ext(size) => {
                    if b == b'\r' {
                        Chunk::SizeLf(size)
                    } else {
                        Chunk::Ext(size)
                    }
                }
                Chunk::SizeLf(size) => {
                    if b != b'\n' {
                        return Err("bad chunk size line".into());
                    }
                    if size == 0 {
                        Chunk::TrailerStart
                    } else {
                        Chunk::Data(size)
                    }
                }
                Chunk::DataEnd(left) => {
                    if left == 1 {
                        Chunk::Size(0, 0)
                    } else {
                        Chunk::DataEnd(left - 1)
                    }
                }
                Chunk::TrailerStart => {
                    if b == b'\r' {
                        Chunk::EndLf
                    } else {
                        Chunk::Trailer
                    }
                }
                Chunk::Trailer => {
                    if b == b'\n' {
                        Chunk::TrailerStart
                    } else {
                        Chunk::Trailer
                    }
                }
                Chunk::EndLf => {
                    *self = Chunk::Done;
                    return Ok((pos, None));
                }
                Chunk::Data(_) | Chunk::Done => return Ok((pos - 1, None)),
            };
        }
        Ok((pos, None))
    }
}

/// The play-start timer a player's reads are bounded by until it plays.
struct Timer<'a, 'b> {
    timer: &'a mut Pin<&'b mut Sleep>,
    start_timeout: f64,
}

// ------------------------------------------------------------------------------------------
// playlists

/// A part as listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part<'a> {
    msn: u64,
    index: u64,
    uri: &'a str,
    independent: bool,
}

/// A playlist as a player reads it: URIs borrowed from its text.
#[derive(Debug, Default)]
struct Playlist<'a> {
    /// A multivariant playlist's first variant.
    variant: Option<&'a str>,
    /// `EXT-X-TARGETDURATION`, seconds.
    target: f64,
    /// `EXT-X-MAP` URI.
    map: Option<&'a str>,
    /// `EXT-X-PART-INF` present: parts are listed.
    parts_listed: bool,
    /// Complete segments: media sequence number and URI.
    segments: Vec<(u64, &'a str)>,
    /// Parts, in order.
    parts: Vec<Part<'a>>,
    /// Media sequence number of the segment after the last complete one.
    open_msn: u64,
    /// Parts listed of that segment.
    open_parts: u64,
    ended: bool,
}

/// The value of attribute `name` in an attribute list (quotes removed).
fn attribute<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    streamgate::protocol::hls::validate::attribute(list, name)
}

fn parse(text: &str) -> Res<Playlist<'_>> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("#EXTM3U") {
        return Err("a playlist that does not start with #EXTM3U".into());
    }
    let mut pl = Playlist::default();
    let mut sequence = 0u64;
    let mut skipped = 0u64;
    let mut stream_inf = false;
    let mut in_segment = 0u64;
    for line in lines {
        if let Some(tag) = line.strip_prefix('#') {
            if let Some(v) = tag.strip_prefix("EXT-X-PART:") {
                let uri = attribute(v, "URI").ok_or("EXT-X-PART without a URI")?;
                pl.parts.push(Part {
                    msn: sequence + skipped + pl.segments.len() as u64,
                    index: in_segment,
                    uri,
                    independent: attribute(v, "INDEPENDENT") == Some("YES"),
                });
                in_segment += 1;
            } else if let Some(v) = tag.strip_prefix("EXT-X-TARGETDURATION:") {
                pl.target = v.parse().map_err(|_| "bad EXT-X-TARGETDURATION")?;
            } else if let Some(v) = tag.strip_prefix("EXT-X-MEDIA-SEQUENCE:") {
                sequence = v.parse().map_err(|_| "bad EXT-X-MEDIA-SEQUENCE")?;
            } else if let Some(v) = tag.strip_prefix("EXT-X-SKIP:") {
                skipped = attribute(v, "SKIPPED-SEGMENTS")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
            } else if let Some(v) = tag.strip_prefix("EXT-X-MAP:") {
                pl.map = attribute(v, "URI");
            } else if tag.starts_with("EXT-X-PART-INF:") {
                pl.parts_listed = true;
            } else if tag.starts_with("EXT-X-STREAM-INF:") {
                stream_inf = true;
            } else if tag == "EXT-X-ENDLIST" {
                pl.ended = true;
            }
        } else if stream_inf {
            pl.variant.get_or_insert(line);
        } else {
            let msn = sequence + skipped + pl.segments.len() as u64;
            pl.segments.push((msn, line));
            in_segment = 0;
        }
    }
    pl.open_msn = sequence + skipped + pl.segments.len() as u64;
    pl.open_parts = in_segment;
    if pl.variant.is_none() && pl.target <= 0.0 {
        return Err("a playlist with neither a variant nor EXT-X-TARGETDURATION".into());
    }
    Ok(pl)
}

/// The request target of `uri` as found in the playlist at request target `base`: an absolute
/// URL (its path on the same server), an absolute path, or a path relative to the playlist's.
fn resolve(base: &str, uri: &str) -> String {
    if let Some(rest) = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
    {
        return match rest.find('/') {
            Some(i) => rest[i..].to_owned(),
            None => "/".to_owned(),
        };
    }
    if uri.starts_with('/') {
        return uri.to_owned();
    }
    let path = base.split(['?', '#']).next().unwrap_or(base);
    let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
    format!("{dir}{uri}")
}

/// `uri` with `extra` added to its query.
fn with_query(uri: &str, extra: &str) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{extra}")
}

// ------------------------------------------------------------------------------------------
// the player

/// A part or segment position: `(msn, part)`, a whole segment as part `u64::MAX`.
type Pos = (u64, u64);
const WHOLE: u64 = u64::MAX;

/// One player.
pub async fn session(
    target: &Target,
    mode: Mode,
    st: &mut PlayerStats,
    timer: &mut Pin<&mut Sleep>,
    start_timeout: f64,
) -> Res<()> {
    let mut t = Timer {
        timer,
        start_timeout,
    };
    let mut conn = Conn::new();
    let mut text: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut at = target.path.clone();
    // The multivariant playlist, or the media playlist itself.
    let first = fetch_playlist(&mut conn, target, &at, st, &mut t, &mut text).await?;
    let variant = parse(&first)?.variant.map(|v| resolve(&at, v));
    let mut body = match variant {
        Some(media) => {
            at = media;
            fetch_playlist(&mut conn, target, &at, st, &mut t, &mut text).await?
        }
        None => first,
    };
    let mut map: Option<String> = None;
    let mut last: Option<Pos> = None;
    let mut reload_began = Instant::now();
    loop {
        let (next, target_s, grew) = {
            let pl = parse(&body)?;
            if pl.ended {
                return Err("stream ended (EXT-X-ENDLIST)".into());
            }
            if let Some(uri) = pl.map {
                let uri = resolve(&at, uri);
                if map.as_deref() != Some(uri.as_str()) {
                    media_get(&mut conn, target, &uri, st, &mut t).await?;
                    map = Some(uri);
                }
            }
            let before = last;
            match mode {
                Mode::LowLatency => {
                    if !pl.parts_listed {
                        return Err(
                            "the playlist lists no parts (not Low-Latency HLS): use --hls-mode plain"
                                .into(),
                        );
                    }
                    let from = match last {
                        Some(l) => pl.parts.iter().position(|p| (p.msn, p.index) > l),
                        None => Some(pl.parts.len().saturating_sub(START_BACK)),
                    };
                    for p in &pl.parts[from.unwrap_or(pl.parts.len())..] {
                        media_get(&mut conn, target, &resolve(&at, p.uri), st, &mut t).await?;
                        st.hls.parts += 1;
                        st.arrival(p.independent, Instant::now());
                        last = Some((p.msn, p.index));
                    }
                }
                Mode::Plain => {
                    let from = match last {
                        Some((l, _)) => pl.segments.iter().position(|s| s.0 > l),
                        None => Some(pl.segments.len().saturating_sub(START_BACK)),
                    };
                    for &(msn, uri) in &pl.segments[from.unwrap_or(pl.segments.len())..] {
                        media_get(&mut conn, target, &resolve(&at, uri), st, &mut t).await?;
                        st.hls.segments += 1;
                        st.arrival(true, Instant::now());
                        last = Some((msn, WHOLE));
                    }
                }
            }
            ((pl.open_msn, pl.open_parts), pl.target, last != before)
        };
        let uri = match mode {
            Mode::LowLatency => {
                st.hls.blocking += 1;
                with_query(&at, &format!("_HLS_msn={}&_HLS_part={}", next.0, next.1))
            }
            Mode::Plain => {
                // RFC 8216 §6.3.4: at least the target duration after the last reload began,
                // half of it when the playlist did not change.
                let wait = if grew { target_s } else { target_s / 2.0 };
                let when = reload_began + Duration::from_secs_f64(wait.max(0.1));
                tokio::time::sleep_until(tokio::time::Instant::from_std(when)).await;
                at.clone()
            }
        };
        reload_began = Instant::now();
        body = fetch_playlist(&mut conn, target, &uri, st, &mut t, &mut text).await?;
    }
}

/// GETs a playlist: its text.
async fn fetch_playlist(
    conn: &mut Conn,
    target: &Target,
    path: &str,
    st: &mut PlayerStats,
    t: &mut Timer<'_, '_>,
    text: &mut Vec<u8>,
) -> Res<String> {
    let answer = request(conn, target, path, st, t, Sink::Keep(&mut *text)).await?;
    if answer.status != 200 {
        return Err(format!("HTTP {} for a playlist", answer.status));
    }
    st.hls.playlists += 1;
    st.hls.playlist_bytes += text.len() as u64;
    String::from_utf8(std::mem::take(text)).map_err(|_| "a playlist that is not UTF-8".into())
}

/// GETs an init segment, part or segment, counting its body as media.
async fn media_get(
    conn: &mut Conn,
    target: &Target,
    path: &str,
    st: &mut PlayerStats,
    t: &mut Timer<'_, '_>,
) -> Res<()> {
    let answer = request(conn, target, path, st, t, Sink::Media).await?;
    if answer.status != 200 {
        return Err(format!("HTTP {} for media", answer.status));
    }
    Ok(())
}

async fn request(
    conn: &mut Conn,
    target: &Target,
    path: &str,
    st: &mut PlayerStats,
    t: &mut Timer<'_, '_>,
    sink: Sink<'_>,
) -> Res<Answer> {
    match tokio::time::timeout(REQUEST_TIMEOUT, conn.get(target, path, st, t, sink)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_absolute_and_full_uris() {
        assert_eq!(
            resolve("/live/cam/index.m3u8?token=a", "media.m3u8?s=x"),
            "/live/cam/media.m3u8?s=x"
        );
        assert_eq!(
            resolve("/live/bench.m3u8", "/live/bench.m3u8?hls_ctx=ab"),
            "/live/bench.m3u8?hls_ctx=ab"
        );
        assert_eq!(
            resolve("/hls/bench.m3u8", "http://h:1/hls/bench-3.ts"),
            "/hls/bench-3.ts"
        );
        assert_eq!(
            with_query("m.m3u8?s=x", "_HLS_msn=1"),
            "m.m3u8?s=x&_HLS_msn=1"
        );
        assert_eq!(with_query("m.m3u8", "_HLS_msn=1"), "m.m3u8?_HLS_msn=1");
    }

    #[test]
    fn reads_parts_segments_and_the_open_segment() {
        let text = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n\
            #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6\n\
            #EXT-X-PART-INF:PART-TARGET=0.2\n#EXT-X-MEDIA-SEQUENCE:4\n\
            #EXT-X-MAP:URI=\"init.mp4?s=x\"\n#EXTINF:2.0,\nseg4.m4s?s=x\n\
            #EXT-X-PART:DURATION=0.2,URI=\"part5.0.m4s?s=x\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.2,URI=\"part5.1.m4s?s=x\"\n#EXTINF:0.4,\nseg5.m4s?s=x\n\
            #EXT-X-PART:DURATION=0.2,URI=\"part6.0.m4s?s=x\",INDEPENDENT=YES\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part6.1.m4s?s=x\"\n";
        let pl = parse(text).expect("parses");
        assert_eq!(pl.target, 2.0);
        assert_eq!(pl.map, Some("init.mp4?s=x"));
        assert_eq!(pl.segments, vec![(4, "seg4.m4s?s=x"), (5, "seg5.m4s?s=x")]);
        let parts: Vec<(u64, u64, bool)> = pl
            .parts
            .iter()
            .map(|p| (p.msn, p.index, p.independent))
            .collect();
        assert_eq!(parts, vec![(5, 0, true), (5, 1, false), (6, 0, true)]);
        assert_eq!((pl.open_msn, pl.open_parts), (6, 1));
        assert!(pl.parts_listed && !pl.ended);

        let multi = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n/live/b.m3u8?hls_ctx=q\n";
        assert_eq!(
            parse(multi).expect("parses").variant,
            Some("/live/b.m3u8?hls_ctx=q")
        );
        assert!(parse("<html>").is_err());
    }

    #[test]
    fn decodes_chunked_bodies_across_reads() {
        let body = b"4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nX-T: 1\r\n\r\n";
        for split in 1..body.len() {
            let mut state = Chunk::Size(0, 0);
            let mut out = Vec::new();
            for piece in [&body[..split], &body[split..]] {
                let mut at = 0;
                while at < piece.len() && !matches!(state, Chunk::Done) {
                    let (used, data) = state.step(&piece[at..]).expect("valid");
                    if let Some((a, b)) = data {
                        out.extend_from_slice(&piece[at + a..at + b]);
                    }
                    at += used;
                }
            }
            assert!(matches!(state, Chunk::Done), "split {split}");
            assert_eq!(out, b"abcdefg", "split {split}");
        }
    }
}

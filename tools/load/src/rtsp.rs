//! RTSP players (RFC 2326) over TCP-interleaved transport: DESCRIBE, SETUP of every H.264,
//! H.265 and AAC track of the description with `RTP/AVP/TCP;interleaved=`, PLAY, then `$`
//! frames read in place. With `--rtsp-transport udp` the tracks (two at most) are set up with
//! `RTP/AVP;unicast;client_port=` instead: each player binds an RTP and an RTCP socket per
//! track and reads its RTP datagrams (RTCP is received by the kernel and not looked at).
//!
//! The whole connection goes through one buffer, parsed where it was read: RTP packets are
//! looked at, never copied or reassembled. Video is counted per access unit (the RTP marker bit,
//! or a new timestamp, ends one) from the NAL unit types its packets name (RFC 6184 single NAL
//! unit, STAP-A and FU-A; RFC 7798 single NAL unit, AP and FU); audio per AAC access unit from
//! the `mpeg4-generic` AU headers (RFC 3640), a fragmented AU once. Media bytes are RTP
//! payload bytes (headers, CSRCs, extensions and padding excluded) of both tracks.
//!
//! Play start is the `200` answer to PLAY. A `GET_PARAMETER` with the session goes out every
//! [`KEEPALIVE`] so a run outlasts the server's session timeout; its answers, and any other
//! RTSP message between the `$` frames, are skipped.

use std::pin::Pin;
use std::time::{Duration, Instant};

use streamgate::protocol::rtsp::rtp::AuHeaderLayout;
use streamgate::protocol::rtsp::sdp;
use streamgate_actors::media::Codec;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{sleep, Sleep};

use crate::{read_some, tcp_connect, write_all, PlayerStats, Res, Target, READ_BUF};

/// Largest RTSP response head (status line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// Largest response body (the DESCRIBE's SDP).
const MAX_SDP: usize = 64 * 1024;
/// Most the read buffer grows to: a whole response, or a whole `$` frame (at most 4 + 65535).
const MAX_BUF: usize = MAX_HEAD + MAX_SDP;
/// Most tracks a player sets up.
const MAX_TRACKS: usize = 8;
/// Tracks a UDP player sets up at most (each needs two sockets of its own).
const MAX_UDP_TRACKS: usize = 2;
/// Largest RTP datagram read.
const MAX_DATAGRAM: usize = 65_536;
/// How often a playing session is kept alive; well inside the 60 s the server announces.
const KEEPALIVE: Duration = Duration::from_secs(25);
const USER_AGENT: &str = "streamgate-load";

/// One player.
pub async fn session(
    t: &Target,
    st: &mut PlayerStats,
    timer: &mut Pin<&mut Sleep>,
    start_timeout: f64,
) -> Res<()> {
    let mut sock = tcp_connect(t, st).await?;
    let mut input = Input::new();
    let mut p = Player::new(t);
    // UDP: the RTP and RTCP sockets of every track, bound before the first SETUP.
    let mut udp = Vec::new();
    if t.rtsp_udp {
        let ip = sock
            .local_addr()
            .map_err(|e| format!("local address: {e}"))?
            .ip();
        for _ in 0..MAX_UDP_TRACKS {
            let bind = || async {
                UdpSocket::bind((ip, 0))
                    .await
                    .map_err(|e| format!("UDP bind: {e}"))
            };
            let (rtp, rtcp) = (bind().await?, bind().await?);
            let port = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
            p.client_ports.push((port(&rtp), port(&rtcp)));
            udp.push((rtp, rtcp));
        }
    }
    let mut datagram = vec![0u8; if t.rtsp_udp { MAX_DATAGRAM } else { 0 }];
    write_all(&mut sock, p.describe().as_bytes()).await?;
    let keepalive = sleep(KEEPALIVE);
    tokio::pin!(keepalive);
    loop {
        let armed = st.play_start.is_none();
        let read = tokio::select! {
            r = input.fill(&mut sock, timer, armed, start_timeout) => Some(r?),
            _ = keepalive.as_mut(), if p.phase == Phase::Playing => None,
            r = recv(&udp, &mut datagram), if !udp.is_empty() => {
                let (track, n) = r?;
                p.frame(2 * track as u8, &datagram[..n], Instant::now(), st)?;
                continue;
            }
        };
        let Some(now) = read else {
            let req = p.keepalive();
            write_all(&mut sock, req.as_bytes()).await?;
            keepalive
                .as_mut()
                .reset(tokio::time::Instant::now() + KEEPALIVE);
            continue;
        };
        while let Some(item) = input.next()? {
            match item {
                Item::Frame { channel, at, len } => {
                    p.frame(channel, &input.buf[at..at + len], now, st)?;
                }
                Item::Message { head, body } => {
                    let was_playing = p.phase == Phase::Playing;
                    let req = p.message(&input.buf[head.0..head.1], &input.buf[body.0..body.1])?;
                    if let Some(req) = req {
                        write_all(&mut sock, req.as_bytes()).await?;
                    }
                    if !was_playing && p.phase == Phase::Playing {
                        st.started_playing(now);
                        keepalive
                            .as_mut()
                            .reset(tokio::time::Instant::now() + KEEPALIVE);
                    }
                }
            }
        }
    }
}

/// The next RTP datagram on any track's RTP socket: the track and its length in `buf`.
async fn recv(udp: &[(UdpSocket, UdpSocket)], buf: &mut [u8]) -> Res<(usize, usize)> {
    let [(video, _), (audio, _)] = udp else {
        return std::future::pending().await;
    };
    loop {
        // Whichever is readable first; each read takes one whole datagram.
        tokio::select! {
            r = video.readable() => r.map_err(|e| format!("UDP: {e}"))?,
            r = audio.readable() => r.map_err(|e| format!("UDP: {e}"))?,
        }
        for (track, socket) in [video, audio].into_iter().enumerate() {
            match socket.try_recv(buf) {
                Ok(n) => return Ok((track, n)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("UDP receive: {e}")),
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// framing

/// One unit of the server's byte stream, as positions in [`Input::buf`] (valid until the next
/// [`Input::fill`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// A `$` frame: its channel and its data.
    Frame { channel: u8, at: usize, len: usize },
    /// An RTSP message (a response, or a request the server sends): head and body as
    /// `(start, end)`.
    Message {
        head: (usize, usize),
        body: (usize, usize),
    },
}

/// The player's one read buffer: bytes `start..end` are read and not yet taken.
struct Input {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// How far past `start` the search for the end of a message head has looked.
    scanned: usize,
    /// Bytes from `start` the next item needs to be whole (the buffer grows to fit them).
    need: usize,
}

impl Input {
    fn new() -> Input {
        Input {
            buf: vec![0; READ_BUF],
            start: 0,
            end: 0,
            scanned: 0,
            need: 0,
        }
    }

    /// One read after what is left is moved to the front; the time it completed.
    async fn fill(
        &mut self,
        sock: &mut TcpStream,
        timer: &mut Pin<&mut Sleep>,
        armed: bool,
        start_timeout: f64,
    ) -> Res<Instant> {
        // What is left is at most one partial packet, usually: moving it is cheaper than
        // reading into a short tail.
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.need > self.buf.len() {
            let len = self.need.max(2 * self.buf.len()).min(MAX_BUF);
            self.buf.resize(len, 0);
        }
        if self.end == self.buf.len() {
            return Err("RTSP message larger than the read buffer".into());
        }
        let n = read_some(sock, &mut self.buf[self.end..], timer, armed, start_timeout).await?;
        self.end += n;
        Ok(Instant::now())
    }

    /// Takes the next whole item; `None` until one has arrived.
    fn next(&mut self) -> Res<Option<Item>> {
        // Stray line ends between messages (a body ended with an extra CRLF).
        while self.start < self.end && matches!(self.buf[self.start], b'\r' | b'\n') {
            self.start += 1;
            self.scanned = 0;
        }
        let data = &self.buf[self.start..self.end];
        let Some(&first) = data.first() else {
            self.need = 0;
            return Ok(None);
        };
        if first == b'$' {
            if data.len() < 4 {
                self.need = 4;
                return Ok(None);
            }
            let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
            if data.len() < 4 + len {
                self.need = 4 + len;
                return Ok(None);
            }
            let item = Item::Frame {
                channel: data[1],
                at: self.start + 4,
                len,
            };
            self.start += 4 + len;
            return Ok(Some(item));
        }
        if !first.is_ascii_uppercase() {
            return Err(format!(
                "byte {first:#04x} where an RTSP message or a $ frame should start"
            ));
        }
        let Some(head_len) = head_end(data, self.scanned) else {
            if data.len() > MAX_HEAD {
                return Err("RTSP response head too large".into());
            }
            self.scanned = data.len().saturating_sub(2);
            self.need = data.len() + 1;
            return Ok(None);
        };
        if head_len > MAX_HEAD {
            return Err("RTSP response head too large".into());
        }
        let head = std::str::from_utf8(&data[..head_len])
            .map_err(|_| "RTSP response head is not UTF-8".to_string())?;
        let body_len = match header(head, "content-length") {
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| format!("bad Content-Length {v:?}"))?,
            None => 0,
        };
        if body_len > MAX_SDP {
            return Err(format!("RTSP body of {body_len} bytes is too large"));
        }
        if data.len() < head_len + body_len {
            self.need = head_len + body_len;
            return Ok(None);
        }
        let at = self.start;
        self.start += head_len + body_len;
        self.scanned = 0;
        Ok(Some(Item::Message {
            head: (at, at + head_len),
            body: (at + head_len, at + head_len + body_len),
        }))
    }
}

/// The length of the message head at the start of `data` (up to and including the empty
/// line; lines end in CRLF or a bare LF), searching from `from`.
fn head_end(data: &[u8], from: usize) -> Option<usize> {
    let mut i = from.min(data.len());
    while let Some(p) = data[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        let rest = &data[nl + 1..];
        if rest.starts_with(b"\n") {
            return Some(nl + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

/// The value of header `name` (case-insensitive) in a message head, trimmed.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

// ------------------------------------------------------------------------------------------
// the session

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Describe,
    /// Setting up `tracks[i]`.
    Setup(usize),
    Play,
    Playing,
}

/// What a track's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    H264,
    /// `donl`: aggregation packets carry decoding order numbers (`sprop-max-don-diff` > 0).
    H265 {
        donl: bool,
    },
    Aac(AuHeaderLayout),
}

/// One track set up.
#[derive(Debug)]
struct Track {
    kind: Kind,
    payload_type: u8,
    /// The SETUP URL.
    url: String,
    /// The interleaved channel of its RTP.
    channel: u8,
    /// Video: the access unit being received.
    au: Au,
    /// AAC: a fragmented AU being received: its timestamp, its size, the bytes so far.
    fragment: Option<(u32, usize, usize)>,
}

/// What the packets of one video access unit have shown so far.
#[derive(Debug, Default, Clone, Copy)]
struct Au {
    open: bool,
    timestamp: u32,
    /// A coded slice: the access unit is a frame (not only parameter sets or SEI).
    vcl: bool,
    /// An H.264 IDR or H.265 IRAP picture.
    key: bool,
}

impl Au {
    fn h264_nal(&mut self, nal_type: u8) {
        self.vcl |= (1..=5).contains(&nal_type);
        self.key |= nal_type == 5;
    }

    fn h265_nal(&mut self, nal_type: u8) {
        self.vcl |= nal_type <= 31;
        self.key |= (16..=21).contains(&nal_type);
    }

    /// The access unit is over: count it if it held a picture.
    fn finish(&mut self, now: Instant, st: &mut PlayerStats) {
        if self.vcl {
            st.video_frame(self.key, now);
        }
        *self = Au::default();
    }
}

/// The RTSP side of one player: requests out, answers in, `$` frames to the tracks.
struct Player<'t> {
    t: &'t Target,
    phase: Phase,
    /// The CSeq of the last request sent.
    cseq: u32,
    /// The session id (without `;timeout=`), once the first SETUP is answered.
    session: String,
    /// The aggregate URL (PLAY, GET_PARAMETER).
    control: String,
    tracks: Vec<Track>,
    /// UDP: the RTP and RTCP ports of each track's sockets (empty: TCP-interleaved).
    client_ports: Vec<(u16, u16)>,
}

impl<'t> Player<'t> {
    fn new(t: &'t Target) -> Player<'t> {
        Player {
            t,
            phase: Phase::Describe,
            cseq: 0,
            session: String::new(),
            control: t.url.clone(),
            tracks: Vec::new(),
            client_ports: Vec::new(),
        }
    }

    /// A request with the next CSeq; `extra` is header lines, each ending in CRLF.
    fn request(&mut self, method: &str, url: &str, extra: &str) -> String {
        self.cseq += 1;
        let session = if self.session.is_empty() {
            String::new()
        } else {
            format!("Session: {}\r\n", self.session)
        };
        format!(
            "{method} {url} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: {USER_AGENT}\r\n{session}{extra}\r\n",
            self.cseq
        )
    }

    fn describe(&mut self) -> String {
        let url = self.t.url.clone();
        self.request("DESCRIBE", &url, "Accept: application/sdp\r\n")
    }

    fn setup(&mut self, i: usize) -> String {
        let url = self.tracks[i].url.clone();
        let transport = match self.client_ports.get(i) {
            Some((rtp, rtcp)) => format!("Transport: RTP/AVP;unicast;client_port={rtp}-{rtcp}\r\n"),
            None => format!(
                "Transport: RTP/AVP/TCP;unicast;interleaved={}-{}\r\n",
                2 * i,
                2 * i + 1
            ),
        };
        self.phase = Phase::Setup(i);
        self.request("SETUP", &url, &transport)
    }

    fn play(&mut self) -> String {
        let url = self.control.clone();
        self.phase = Phase::Play;
        self.request("PLAY", &url, "Range: npt=0.000-\r\n")
    }

    fn keepalive(&mut self) -> String {
        let url = self.control.clone();
        self.request("GET_PARAMETER", &url, "")
    }

    /// An RTSP message from the server; the request to send next, if any.
    fn message(&mut self, head: &[u8], body: &[u8]) -> Res<Option<String>> {
        // `Input::next` checked the head is UTF-8.
        let head = std::str::from_utf8(head).map_err(|_| "RTSP head is not UTF-8".to_string())?;
        let status_line = head.lines().next().unwrap_or("");
        let mut parts = status_line.split_whitespace();
        let version = parts.next().unwrap_or("");
        if !version.starts_with("RTSP/") {
            // A request from the server (a ping some servers send): not answered.
            return Ok(None);
        }
        let code: u16 = parts
            .next()
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad RTSP status line {status_line:?}"))?;
        if self.phase == Phase::Playing {
            // Keep-alive answers; a server that has no GET_PARAMETER says so here.
            return Ok(None);
        }
        if let Some(cseq) = header(head, "cseq") {
            if cseq.parse::<u32>().ok() != Some(self.cseq) {
                return Ok(None);
            }
        }
        if code != 200 {
            return Err(format!("RTSP {code}"));
        }
        match self.phase {
            Phase::Describe => {
                let base = header(head, "content-base")
                    .or_else(|| header(head, "content-location"))
                    .unwrap_or(&self.t.url)
                    .to_string();
                let sdp = std::str::from_utf8(body).map_err(|_| "SDP is not UTF-8".to_string())?;
                self.tracks(sdp, &base)?;
                Ok(Some(self.setup(0)))
            }
            Phase::Setup(i) => {
                if let Some(s) = header(head, "session") {
                    let id = s.split(';').next().unwrap_or("").trim();
                    if id.is_empty() {
                        return Err("SETUP answered with an empty Session".into());
                    }
                    if self.session != id {
                        self.session = id.to_string();
                    }
                } else if self.session.is_empty() {
                    return Err("SETUP answered without a Session".into());
                }
                let transport = header(head, "transport").unwrap_or("");
                if self.client_ports.is_empty() {
                    self.tracks[i].channel = interleaved_channel(transport).ok_or_else(|| {
                        format!("SETUP answered without interleaved channels: {transport:?}")
                    })?;
                } else if !transport.contains("server_port") {
                    // Track i's datagrams come to its own socket: channel 2i stands for it.
                    return Err(format!("SETUP answered without UDP ports: {transport:?}"));
                }
                if i + 1 < self.tracks.len() {
                    Ok(Some(self.setup(i + 1)))
                } else {
                    Ok(Some(self.play()))
                }
            }
            Phase::Play => {
                self.phase = Phase::Playing;
                Ok(None)
            }
            Phase::Playing => Ok(None),
        }
    }

    /// The tracks to set up from the description, and the aggregate URL.
    fn tracks(&mut self, sdp_text: &str, base: &str) -> Res<()> {
        let parsed = sdp::parse(sdp_text).map_err(|e| format!("SDP: {e}"))?;
        for m in &parsed {
            let kind = match m.codec {
                Some(Codec::H264) if m.media == "video" => Kind::H264,
                Some(Codec::H265) if m.media == "video" => Kind::H265 {
                    donl: m
                        .fmtp("sprop-max-don-diff")
                        .and_then(|v| v.parse::<u32>().ok())
                        .is_some_and(|d| d > 0),
                },
                Some(Codec::Aac) => Kind::Aac(
                    AuHeaderLayout::from_fmtp(m)
                        .ok_or("SDP: mpeg4-generic track with unusable AU header sizes")?,
                ),
                _ => continue,
            };
            if self.tracks.len() == MAX_TRACKS {
                return Err(format!("SDP has more than {MAX_TRACKS} tracks"));
            }
            if !self.client_ports.is_empty() && self.tracks.len() == self.client_ports.len() {
                return Err(format!(
                    "over UDP, at most {MAX_UDP_TRACKS} tracks are set up"
                ));
            }
            self.tracks.push(Track {
                kind,
                payload_type: m.payload_type,
                url: resolve(base, &m.control),
                channel: 2 * self.tracks.len() as u8,
                au: Au::default(),
                fragment: None,
            });
        }
        if self.tracks.is_empty() {
            return Err("SDP has no H.264, H.265 or AAC track".into());
        }
        // The session-level control (before the first media section) names the aggregate.
        let session_control = sdp_text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .take_while(|l| !l.starts_with("m="))
            .find_map(|l| l.strip_prefix("a=control:"))
            .map(str::trim);
        if let Some(c) = session_control {
            self.control = resolve(base, c);
        }
        Ok(())
    }

    /// A `$` frame arrived at `now`.
    fn frame(&mut self, channel: u8, packet: &[u8], now: Instant, st: &mut PlayerStats) -> Res<()> {
        // RTCP (odd channels) and channels of no track are not looked at.
        let Some(track) = self.tracks.iter_mut().find(|t| t.channel == channel) else {
            return Ok(());
        };
        let rtp = Rtp::parse(packet)?;
        st.media(rtp.payload.len(), now);
        if rtp.payload_type != track.payload_type {
            return Ok(());
        }
        match track.kind {
            Kind::Aac(layout) => aac(rtp.payload, layout, rtp.timestamp, &mut track.fragment, st),
            kind => {
                let au = &mut track.au;
                if au.open && au.timestamp != rtp.timestamp {
                    // The last packet of the previous access unit had no marker.
                    au.finish(now, st);
                }
                au.open = true;
                au.timestamp = rtp.timestamp;
                match kind {
                    Kind::H265 { donl } => h265(rtp.payload, donl, au)?,
                    _ => h264(rtp.payload, au)?,
                }
                if rtp.marker {
                    au.finish(now, st);
                }
                Ok(())
            }
        }
    }
}

/// `control` against `base`: an absolute URL as is, `*` or nothing the base itself, else
/// appended to the base as a path segment (what RTSP servers and clients do, rather than
/// RFC 3986 resolution, which would drop the base's last segment).
fn resolve(base: &str, control: &str) -> String {
    let absolute = control
        .split_once("://")
        .is_some_and(|(scheme, _)| scheme.chars().all(|c| c.is_ascii_alphanumeric()));
    if absolute {
        control.to_string()
    } else if control.is_empty() || control == "*" {
        base.to_string()
    } else if base.ends_with('/') {
        format!("{base}{control}")
    } else {
        format!("{base}/{control}")
    }
}

/// The RTP channel of a SETUP answer's `Transport` (`interleaved=a-b` or `interleaved=a`).
fn interleaved_channel(transport: &str) -> Option<u8> {
    transport.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("interleaved") {
            return None;
        }
        let v = v.trim();
        v.split('-').next()?.trim().parse().ok()
    })
}

// ------------------------------------------------------------------------------------------
// RTP

/// The fields of an RTP packet (RFC 3550 §5.1) a player looks at, and its payload.
#[derive(Debug, PartialEq, Eq)]
struct Rtp<'a> {
    marker: bool,
    payload_type: u8,
    timestamp: u32,
    /// CSRCs, header extension and padding removed.
    payload: &'a [u8],
}

impl Rtp<'_> {
    fn parse(p: &[u8]) -> Res<Rtp<'_>> {
        if p.len() < 12 {
            return Err(format!("RTP packet of {} bytes", p.len()));
        }
        let version = p[0] >> 6;
        if version != 2 {
            return Err(format!("RTP version {version}"));
        }
        let mut start = 12 + 4 * usize::from(p[0] & 0x0f);
        if p[0] & 0x10 != 0 {
            let ext = p
                .get(start..start + 4)
                .ok_or("RTP header extension past the packet")?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        }
        let mut end = p.len();
        if p[0] & 0x20 != 0 {
            let pad = usize::from(p[end - 1]);
            if pad == 0 {
                return Err("RTP padding of 0 bytes".into());
            }
            end = end.saturating_sub(pad);
        }
        if start > end {
            return Err("RTP header longer than the packet".into());
        }
        Ok(Rtp {
            marker: p[1] & 0x80 != 0,
            payload_type: p[1] & 0x7f,
            timestamp: u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            payload: &p[start..end],
        })
    }
}

/// Calls `nal` with each NAL unit of an aggregation packet body (16-bit size, NAL unit, ...).
/// `skip_first` and `skip_next` are bytes before each size (H.265 DONL and DOND).
fn aggregated(
    mut rest: &[u8],
    skip_first: usize,
    skip_next: usize,
    what: &str,
    mut nal: impl FnMut(&[u8]),
) -> Res<()> {
    if rest.is_empty() {
        return Err(format!("empty {what}"));
    }
    let mut skip = skip_first;
    while !rest.is_empty() {
        let size_at = rest
            .get(skip..skip + 2)
            .ok_or_else(|| format!("{what} cut inside a NAL unit size"))?;
        let size = usize::from(u16::from_be_bytes([size_at[0], size_at[1]]));
        let unit = rest
            .get(skip + 2..skip + 2 + size)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| format!("{what} NAL unit of {size} bytes does not fit"))?;
        nal(unit);
        rest = &rest[skip + 2 + size..];
        skip = skip_next;
    }
    Ok(())
}

/// One H.264 RTP payload (RFC 6184 §5.6-5.8).
fn h264(p: &[u8], au: &mut Au) -> Res<()> {
    let b0 = *p.first().ok_or("empty H.264 RTP payload")?;
    match b0 & 0x1f {
        t @ 1..=23 => au.h264_nal(t),
        24 => aggregated(&p[1..], 0, 0, "STAP-A", |nal| au.h264_nal(nal[0] & 0x1f))?,
        28 => {
            let fu = *p.get(1).ok_or("FU-A without its header")?;
            if fu & 0x80 != 0 {
                au.h264_nal(fu & 0x1f);
            }
        }
        t @ (25..=27 | 29) => {
            return Err(format!(
                "H.264 RTP packet type {t} (interleaved mode) not supported"
            ))
        }
        // 0, 30, 31: undefined; receivers ignore them (RFC 6184 §5.4).
        _ => {}
    }
    Ok(())
}

/// The type of an H.265 NAL unit header's first byte.
fn h265_type(b0: u8) -> u8 {
    (b0 >> 1) & 0x3f
}

/// One H.265 RTP payload (RFC 7798 §4.4).
fn h265(p: &[u8], donl: bool, au: &mut Au) -> Res<()> {
    if p.len() < 2 {
        return Err("H.265 RTP payload shorter than its header".into());
    }
    match h265_type(p[0]) {
        t @ 0..=47 => au.h265_nal(t),
        48 => {
            let (first, next) = if donl { (2, 1) } else { (0, 0) };
            aggregated(&p[2..], first, next, "AP", |nal| {
                au.h265_nal(h265_type(nal[0]))
            })?
        }
        49 => {
            let fu = *p.get(2).ok_or("FU without its header")?;
            if fu & 0x80 != 0 {
                au.h265_nal(fu & 0x3f);
            }
        }
        50 => return Err("H.265 PACI packets not supported".into()),
        // 51-63: unspecified; receivers ignore them.
        _ => {}
    }
    Ok(())
}

/// `n` bits (at most 32) of `data` from bit `pos`, MSB first; the caller checked they exist.
fn bits(data: &[u8], pos: usize, n: u8) -> u32 {
    (0..usize::from(n)).fold(0, |v, i| {
        let at = pos + i;
        (v << 1) | u32::from((data[at / 8] >> (7 - at % 8)) & 1)
    })
}

/// One AAC `mpeg4-generic` payload (RFC 3640 §3.2): counts its access units, a fragmented one
/// when its last fragment arrives.
fn aac(
    p: &[u8],
    layout: AuHeaderLayout,
    timestamp: u32,
    fragment: &mut Option<(u32, usize, usize)>,
    st: &mut PlayerStats,
) -> Res<()> {
    let len_at = p.get(..2).ok_or("AAC RTP payload without AU headers")?;
    let header_bits = usize::from(u16::from_be_bytes([len_at[0], len_at[1]]));
    let headers = p
        .get(2..2 + header_bits.div_ceil(8))
        .ok_or("AAC AU headers past the packet")?;
    let data = p.len() - 2 - headers.len();
    let first = usize::from(layout.size_length + layout.index_length);
    let next = usize::from(layout.size_length + layout.index_delta_length);
    let (mut pos, mut count, mut total, mut first_size) = (0, 0usize, 0usize, 0usize);
    while header_bits - pos >= if count == 0 { first } else { next } {
        let size = bits(headers, pos, layout.size_length) as usize;
        pos += if count == 0 { first } else { next };
        if count == 0 {
            first_size = size;
        }
        count += 1;
        total += size;
    }
    if count == 0 {
        return Err("AAC RTP payload without AU headers".into());
    }
    if count == 1 && first_size > data {
        // A fragment (RFC 3640 §3.2.3): each carries the whole AU's size.
        let got = match fragment {
            Some((ts, size, got)) if *ts == timestamp && *size == first_size => *got + data,
            _ => data,
        };
        if got > first_size {
            return Err("AAC AU fragments larger than the AU".into());
        }
        if got == first_size {
            *fragment = None;
            st.audio_frame();
        } else {
            *fragment = Some((timestamp, first_size, got));
        }
        return Ok(());
    }
    *fragment = None;
    if total > data {
        return Err(format!(
            "AAC AU sizes ({total} bytes) larger than the payload ({data})"
        ));
    }
    for _ in 0..count {
        st.audio_frame();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> PlayerStats {
        PlayerStats::new(0, None)
    }

    fn target() -> Target {
        Target::parse("rtsp://127.0.0.1:8554/live/x").expect("target")
    }

    fn rtp(marker: bool, pt: u8, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, (u8::from(marker) << 7) | pt, 0, 1];
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 7]);
        p.extend_from_slice(payload);
        p
    }

    const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\na=control:*\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=control:trackID=0\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/44100/2\r\n\
a=fmtp:97 streamtype=5;mode=AAC-hbr;config=1210;sizelength=13;indexlength=3;indexdeltalength=3\r\n\
a=control:rtsp://127.0.0.1:8554/live/x/trackID=1\r\n";

    /// A player past DESCRIBE, SETUP and PLAY of the SDP above.
    fn playing(t: &Target) -> Player<'_> {
        let mut p = Player::new(t);
        let d = p.describe();
        assert!(d.starts_with("DESCRIBE rtsp://127.0.0.1:8554/live/x RTSP/1.0\r\nCSeq: 1\r\n"));
        let head = format!(
            "RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Base: rtsp://127.0.0.1:8554/live/x/\r\nContent-Length: {}\r\n\r\n",
            SDP.len()
        );
        let setup = p
            .message(head.as_bytes(), SDP.as_bytes())
            .expect("describe")
            .expect("setup");
        assert!(setup.starts_with("SETUP rtsp://127.0.0.1:8554/live/x/trackID=0 RTSP/1.0\r\n"));
        assert!(setup.contains("Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n"));
        assert!(!setup.contains("Session:"));
        let head = "RTSP/1.0 200 OK\r\nCSeq: 2\r\nSession: abcdefgh1234;timeout=60\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n";
        let setup = p
            .message(head.as_bytes(), b"")
            .expect("setup")
            .expect("2nd");
        assert!(setup.starts_with("SETUP rtsp://127.0.0.1:8554/live/x/trackID=1 RTSP/1.0\r\n"));
        assert!(setup.contains("interleaved=2-3\r\n"));
        assert!(setup.contains("Session: abcdefgh1234\r\n"));
        let head = "RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: abcdefgh1234;timeout=60\r\nTransport: RTP/AVP/TCP;unicast;interleaved=4-5\r\n\r\n";
        let play = p
            .message(head.as_bytes(), b"")
            .expect("setup")
            .expect("play");
        assert!(play.starts_with("PLAY rtsp://127.0.0.1:8554/live/x/ RTSP/1.0\r\nCSeq: 4\r\n"));
        assert!(play.contains("Range: npt=0.000-\r\n"));
        // An answer to another request changes nothing.
        let stale = "RTSP/1.0 200 OK\r\nCSeq: 3\r\n\r\n";
        assert_eq!(p.message(stale.as_bytes(), b""), Ok(None));
        assert_eq!(p.phase, Phase::Play);
        let ok = "RTSP/1.0 200 OK\r\nCSeq: 4\r\nRange: npt=0.000-\r\n\r\n";
        assert_eq!(p.message(ok.as_bytes(), b""), Ok(None));
        assert_eq!(p.phase, Phase::Playing);
        assert_eq!(p.tracks[1].channel, 4);
        p
    }

    #[test]
    fn udp_players_ask_for_their_ports_and_need_the_servers() {
        let t = target();
        let mut p = Player::new(&t);
        p.client_ports = vec![(5000, 5001), (6002, 6003)];
        p.describe();
        let head = format!(
            "RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Base: rtsp://127.0.0.1:8554/live/x/\r\nContent-Length: {}\r\n\r\n",
            SDP.len()
        );
        let setup = p
            .message(head.as_bytes(), SDP.as_bytes())
            .expect("describe")
            .expect("a SETUP");
        assert!(
            setup.contains("Transport: RTP/AVP;unicast;client_port=5000-5001\r\n"),
            "{setup}"
        );
        let ok = "RTSP/1.0 200 OK\r\nCSeq: 2\r\nSession: s1\r\nTransport: RTP/AVP;unicast;client_port=5000-5001;server_port=7000-7001\r\n\r\n";
        let setup = p
            .message(ok.as_bytes(), b"")
            .expect("setup")
            .expect("a second SETUP");
        assert!(setup.contains("client_port=6002-6003"), "{setup}");
        let no_ports = "RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: s1\r\nTransport: RTP/AVP;unicast;client_port=6002-6003\r\n\r\n";
        assert!(p.message(no_ports.as_bytes(), b"").is_err());
        // Video arrives on track 0's socket, read as channel 0.
        let mut st = stats();
        let idr = rtp(true, 96, 3000, &[0x65, 0x88]);
        p.frame(0, &idr, Instant::now(), &mut st).expect("frame");
        assert_eq!(st.video_frames, 1);
    }

    #[test]
    fn describe_setup_play_and_keepalive() {
        let t = target();
        let mut p = playing(&t);
        let ka = p.keepalive();
        assert!(
            ka.starts_with("GET_PARAMETER rtsp://127.0.0.1:8554/live/x/ RTSP/1.0\r\nCSeq: 5\r\n")
        );
        assert!(ka.contains("Session: abcdefgh1234\r\n"));
        // Keep-alive answers, even refusals, are skipped.
        let no = "RTSP/1.0 405 Method Not Allowed\r\nCSeq: 5\r\n\r\n";
        assert_eq!(p.message(no.as_bytes(), b""), Ok(None));
    }

    #[test]
    fn refusals_and_bad_answers_are_errors() {
        let t = target();
        let mut p = Player::new(&t);
        p.describe();
        let head = "RTSP/1.0 404 Not Found\r\nCSeq: 1\r\n\r\n";
        assert_eq!(p.message(head.as_bytes(), b""), Err("RTSP 404".into()));

        let mut p = Player::new(&t);
        p.describe();
        let head = "RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n";
        let sdp = "v=0\r\nm=audio 0 RTP/AVP 0\r\n";
        assert!(p.message(head.as_bytes(), sdp.as_bytes()).is_err());

        let mut p = Player::new(&t);
        p.describe();
        let head = "RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n";
        let setup = p.message(head.as_bytes(), SDP.as_bytes());
        assert!(setup
            .expect("ok")
            .expect("setup")
            .contains("/live/x/trackID=0 "));
        let head = "RTSP/1.0 200 OK\r\nCSeq: 2\r\nSession: s1234567\r\nTransport: RTP/AVP;unicast;client_port=1-2\r\n\r\n";
        assert!(p.message(head.as_bytes(), b"").is_err());
    }

    #[test]
    fn counts_h264_access_units_and_keyframes() {
        let t = target();
        let mut p = playing(&t);
        let mut st = stats();
        let now = Instant::now();
        // STAP-A with SPS, PPS; then an IDR in FU-A over two packets.
        let stap = [24, 0, 2, 0x67, 1, 0, 2, 0x68, 2];
        p.frame(0, &rtp(false, 96, 10, &stap), now, &mut st)
            .expect("stap");
        p.frame(0, &rtp(false, 96, 10, &[0x7c, 0x85, 1, 2]), now, &mut st)
            .expect("fu start");
        assert_eq!(st.video_frames, 0);
        p.frame(0, &rtp(true, 96, 10, &[0x7c, 0x45, 3]), now, &mut st)
            .expect("fu end");
        assert_eq!(st.video_frames, 1);
        assert!(st.first_keyframe.is_some());
        // A non-IDR slice ended by the next timestamp, not a marker.
        p.frame(0, &rtp(false, 96, 20, &[0x41, 9]), now, &mut st)
            .expect("slice");
        p.frame(0, &rtp(true, 96, 30, &[0x41, 9]), now, &mut st)
            .expect("slice");
        assert_eq!(st.video_frames, 3);
        // Parameter sets alone are not a frame; RTCP and other payload types are not looked at.
        p.frame(0, &rtp(true, 96, 40, &[0x67, 1]), now, &mut st)
            .expect("sps");
        p.frame(1, &[0x80, 200, 0, 6], now, &mut st).expect("rtcp");
        p.frame(0, &rtp(true, 13, 50, &[0x41]), now, &mut st)
            .expect("cn");
        assert_eq!(st.video_frames, 3);
        assert_eq!(st.media_bytes, 9 + 4 + 3 + 2 + 2 + 2 + 1);
        // Malformed aggregation: an error, not a panic.
        let bad = [24, 0, 9, 0x67];
        assert!(p.frame(0, &rtp(true, 96, 60, &bad), now, &mut st).is_err());
    }

    #[test]
    fn counts_h265_access_units_and_irap_pictures() {
        let mut au = Au::default();
        // AP with VPS (32), SPS (33), PPS (34).
        let ap = [96, 1, 0, 2, 64, 1, 0, 2, 66, 1, 0, 2, 68, 1];
        h265(&ap, false, &mut au).expect("ap");
        assert!(!au.vcl);
        // FU start of a CRA (21).
        h265(&[98, 1, 0x80 | 21, 0], false, &mut au).expect("fu");
        assert!(au.vcl && au.key);
        let mut au = Au::default();
        h265(&[2, 1, 0], false, &mut au).expect("trail");
        assert!(au.vcl && !au.key);
        // AP with DONL / DOND before the sizes.
        let mut au = Au::default();
        let ap = [96, 1, 0, 0, 0, 2, 38, 1, 1, 0, 2, 2, 1];
        h265(&ap, true, &mut au).expect("ap with donl");
        assert!(au.vcl && au.key);
        assert!(h265(&[96, 1, 0, 3, 2], false, &mut au).is_err());
        assert!(h265(&[2], false, &mut au).is_err());
    }

    #[test]
    fn counts_aac_access_units_and_fragments() {
        let t = target();
        let mut p = playing(&t);
        let mut st = stats();
        let now = Instant::now();
        // Two AU headers (16 bits each): sizes 3 and 2.
        let two = [0, 32, 0, 3 << 3, 0, 2 << 3, 1, 1, 1, 2, 2];
        p.frame(4, &rtp(true, 97, 0, &two), now, &mut st)
            .expect("two");
        assert_eq!(st.audio_frames, 2);
        // One AU of 5 bytes in fragments of 3 and 2.
        let a = [0, 16, 0, 5 << 3, 1, 1, 1];
        let b = [0, 16, 0, 5 << 3, 2, 2];
        p.frame(4, &rtp(false, 97, 1024, &a), now, &mut st)
            .expect("a");
        assert_eq!(st.audio_frames, 2);
        p.frame(4, &rtp(true, 97, 1024, &b), now, &mut st)
            .expect("b");
        assert_eq!(st.audio_frames, 3);
        // Sizes larger than the payload, headers past it.
        let bad = [0, 32, 0, 3 << 3, 0, 9 << 3, 1, 1, 1, 2, 2];
        assert!(p.frame(4, &rtp(true, 97, 0, &bad), now, &mut st).is_err());
        assert!(p
            .frame(4, &rtp(true, 97, 0, &[0, 64, 0]), now, &mut st)
            .is_err());
    }

    #[test]
    fn rtp_headers_with_csrcs_extension_and_padding() {
        let mut p = vec![0xb1, 0x60, 0, 1, 0, 0, 0, 9, 0, 0, 0, 1];
        p.extend_from_slice(&[0, 0, 0, 2]); // one CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension of one word
        p.extend_from_slice(&[0x65, 7, 0, 0, 3]); // payload and 3 bytes of padding
        let r = Rtp::parse(&p).expect("rtp");
        assert_eq!(r.payload, &[0x65, 7]);
        assert_eq!((r.marker, r.payload_type, r.timestamp), (false, 96, 9));
        p[0] = 0x40;
        assert!(Rtp::parse(&p).is_err());
        let mut pad = rtp(true, 96, 0, &[1]);
        pad[0] |= 0x20;
        *pad.last_mut().expect("byte") = 200;
        assert!(Rtp::parse(&pad).is_err());
        assert!(Rtp::parse(&[0x80, 96, 0]).is_err());
    }

    #[test]
    fn framing_of_frames_and_messages_split_anywhere() {
        let mut wire = b"RTSP/1.0 200 OK\r\nCSeq: 5\r\nContent-Length: 3\r\n\r\nabc\r\n".to_vec();
        wire.extend_from_slice(&[b'$', 0, 0, 2, 9, 9, b'$', 1, 0, 0]);
        wire.extend_from_slice(b"RTSP/1.0 200 OK\nCSeq: 6\n\n");
        for split in 0..wire.len() {
            let mut input = Input::new();
            let mut items = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                input.buf[input.end..input.end + part.len()].copy_from_slice(part);
                input.end += part.len();
                while let Some(item) = input.next().expect("valid") {
                    items.push(item);
                }
            }
            assert_eq!(items.len(), 4, "split at {split}: {items:?}");
            let Item::Message { head, body } = items[0] else {
                panic!("{items:?}")
            };
            assert_eq!(&input.buf[body.0..body.1], b"abc");
            assert!(input.buf[head.0..head.1].ends_with(b"\r\n\r\n"));
            assert_eq!(
                items[1],
                Item::Frame {
                    channel: 0,
                    at: head.1 + 5 + 4,
                    len: 2
                }
            );
        }
    }

    #[test]
    fn bounds_and_garbage_are_errors() {
        let mut input = Input::new();
        input.buf[..4].copy_from_slice(b"\x16\x03\x01\x00");
        input.end = 4;
        assert!(input.next().is_err());

        let mut input = Input::new();
        let head = b"RTSP/1.0 200 OK\r\nContent-Length: 100000\r\n\r\n";
        input.buf[..head.len()].copy_from_slice(head);
        input.end = head.len();
        assert!(input.next().is_err());

        let mut input = Input::new();
        input.buf[..5].copy_from_slice(b"RTSP/");
        input.buf[5..].fill(b'x');
        input.end = input.buf.len();
        assert_eq!(input.next(), Ok(None));
        input.buf.resize(MAX_HEAD + 16, b'x');
        input.end = input.buf.len();
        assert!(input.next().is_err());
    }

    #[test]
    fn arbitrary_packets_never_panic() {
        let t = target();
        let mut p = playing(&t);
        let mut st = stats();
        let now = Instant::now();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..20_000 {
            let len = (next() % 40) as usize;
            let mut pkt: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len > 1 {
                pkt[0] = 0x80 | (pkt[0] & 0x3f);
                pkt[1] = 96 + (pkt[1] & 1);
            }
            let channel = [0, 4][round % 2];
            let _ = p.frame(channel, &pkt, now, &mut st);
            let mut au = Au::default();
            let _ = h265(&pkt, round % 3 == 0, &mut au);
        }
    }

    #[test]
    fn urls_resolve_like_rtsp_clients_do() {
        assert_eq!(
            resolve("rtsp://h/a/b/", "trackID=0"),
            "rtsp://h/a/b/trackID=0"
        );
        assert_eq!(
            resolve("rtsp://h/a/b", "trackID=0"),
            "rtsp://h/a/b/trackID=0"
        );
        assert_eq!(
            resolve("rtsp://h/a/b?t=1/", "streamid=1"),
            "rtsp://h/a/b?t=1/streamid=1"
        );
        assert_eq!(resolve("rtsp://h/a/b/", "rtsp://o/x"), "rtsp://o/x");
        assert_eq!(resolve("rtsp://h/a/b/", "*"), "rtsp://h/a/b/");
        assert_eq!(resolve("rtsp://h/a/b", ""), "rtsp://h/a/b");
        assert_eq!(
            interleaved_channel("RTP/AVP/TCP;unicast;interleaved=6-7"),
            Some(6)
        );
        assert_eq!(interleaved_channel("RTP/AVP/TCP;interleaved=2"), Some(2));
        assert_eq!(interleaved_channel("RTP/AVP;unicast;client_port=1-2"), None);
    }
}

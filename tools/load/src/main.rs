//! `streamgate-load`: opens N live players against an RTMP, HTTP-FLV, RTSP, SRT or HLS URL and
//! reports what they got: players connected, errors, media bytes and bit rate per player, time
//! from connect to play start and to the first video keyframe (p50/p90/p99/max), and the
//! largest gap between two video frames' arrival. With `--publish FILE.flv` it is N RTMP
//! publishers instead ([`publish`]).
//!
//! ```text
//! streamgate-load --url rtmp://127.0.0.1:1935/live/cam1 --players 200 [--ramp 50] [--duration 10] [--json]
//! streamgate-load --url http://127.0.0.1:8080/live/cam1.flv --players 200
//! streamgate-load --url rtsp://127.0.0.1:8554/live/cam1 --players 20
//! streamgate-load --url 'srt://127.0.0.1:8890?streamid=#!::r=live/cam1,m=request' --players 20
//! streamgate-load --url http://127.0.0.1:8888/live/cam1/index.m3u8 --players 1000 [--hls-mode plain]
//! streamgate-load --url rtmp://127.0.0.1:1935/live/load --publish source.flv --players 10
//! ```
//!
//! One current-thread tokio runtime, one task per player. Each player reads into one fixed
//! buffer and parses the stream in place, streaming: media payloads are never reassembled or
//! copied (only their first two bytes are looked at, for the frame type), so the tool costs a
//! `read` syscall and a header walk per arrival. Only small control messages and commands are
//! buffered. Times are taken once per `read`, and a frame's arrival is the read that completed
//! it.
//!
//! Every time is measured from the moment the player starts its connect. Play start is
//! `onStatus NetStream.Play.Start` for RTMP, the end of the HTTP response headers for
//! HTTP-FLV, the `200` answer to `PLAY` for RTSP ([`rtsp`], TCP-interleaved) and the accepted
//! handshake for SRT ([`srt`]) and the first `200` playlist for HLS ([`hls`], which also
//! says what its frames and keyframes are). A player whose session ends before the run does (connection closed, refused, stream
//! ended, malformed data, no play start within `--start-timeout`) counts as an error.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use clap::Parser;
use streamgate::protocol::rtmp::client::{
    ClientEvent, ClientHandshake, ClientSession, HandshakeStep, Role,
};
use streamgate::protocol::url::percent_decode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Sleep};

mod hls;
mod publish;
mod rtsp;
mod srt;

/// Bytes read per `read` call, per player.
const READ_BUF: usize = 16 * 1024;
/// Largest HTTP response head.
const MAX_HTTP_HEAD: usize = 16 * 1024;

/// Load generator for live streams: N players over RTMP or HTTP-FLV.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "Opens N live players (RTMP, HTTP-FLV, RTSP or SRT) or RTMP publishers and reports play start, first keyframe, frame gaps, bit rate and errors"
)]
struct Cli {
    /// rtmp://host[:port]/app/name[?query], http://host[:port]/app/name.flv[?query],
    /// rtsp://host[:port]/app/name[?query] or srt://host:port?streamid=...
    #[arg(long)]
    url: String,
    /// How many players to open.
    #[arg(long, default_value_t = 1)]
    players: usize,
    /// Start players at this rate (players per second) instead of all at once.
    #[arg(long, value_name = "PER_SEC")]
    ramp: Option<f64>,
    /// How long every player stays after the last one has been started, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    duration: f64,
    /// A player that has not started playing this long after its connect counts as an error.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    start_timeout: f64,
    /// Print the report as one JSON object (with a per-player array) instead of text.
    #[arg(long)]
    json: bool,
    /// Also count media bytes and frame gaps in a measurement window that opens this many
    /// seconds after the run starts (the first player's start); needs `--window`.
    #[arg(long, value_name = "SECS", requires = "window")]
    window_start: Option<f64>,
    /// Length of the measurement window in seconds (from `--window-start`, default 0).
    #[arg(long, value_name = "SECS")]
    window: Option<f64>,
    /// Act as N RTMP publishers instead of players: each sends this FLV file (H.264/AAC), in
    /// a loop at its own pace, to the URL's stream name (with `-{i}` appended when N > 1).
    /// The report's play start is then the publish start, and media counts what was sent.
    #[arg(long, value_name = "FLV_FILE")]
    publish: Option<std::path::PathBuf>,
    /// Start the players this many milliseconds after a live video keyframe: a pilot player
    /// (not counted) plays first and is closed at the first keyframe that arrives at least
    /// 200 ms after its play start (so not one replayed from a GOP cache). Every run then
    /// lands at the same point of the stream's GOP, so what a joining player is sent at once
    /// (a GOP cache's content) is the same from run to run.
    #[arg(long, value_name = "MS", conflicts_with = "publish")]
    after_keyframe: Option<f64>,
    /// RTSP players: `tcp` (interleaved in the RTSP connection) or `udp` (RTP and RTCP to
    /// two UDP sockets of each player's own, `client_port`; at most two tracks).
    #[arg(long, value_name = "TRANSPORT", default_value = "tcp", value_parser = ["tcp", "udp"])]
    rtsp_transport: String,
    /// HLS players (a URL whose path ends in `.m3u8`): `ll` follows the live edge with
    /// blocking playlist reloads and fetches every part (Low-Latency HLS); `plain` reloads the
    /// playlist about every target duration and fetches every new segment.
    #[arg(long, value_name = "MODE", default_value = "ll", value_parser = ["ll", "plain"])]
    hls_mode: String,
}

/// A keyframe that arrives this long after play start is live, not replayed from a GOP cache.
const LIVE_KEYFRAME_AFTER: Duration = Duration::from_millis(200);

// ------------------------------------------------------------------------------------------
// target

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Rtmp,
    HttpFlv,
    Rtsp,
    Srt,
    Hls,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::HttpFlv => "httpflv",
            Protocol::Rtsp => "rtsp",
            Protocol::Srt => "srt",
            Protocol::Hls => "hls",
        }
    }
}

/// What every player connects to, resolved once.
#[derive(Debug)]
struct Target {
    protocol: Protocol,
    addr: SocketAddr,
    /// `host[:port]` as given (HTTP `Host`, RTMP tcUrl).
    authority: String,
    /// RTMP: the app (first path segment).
    app: String,
    /// RTMP: the play name (the rest of the path, with the query).
    name: String,
    /// RTMP: `rtmp://authority/app`.
    tc_url: String,
    /// HTTP: the request target (path and query).
    path: String,
    /// The URL as given (RTSP requests carry it).
    url: String,
    /// SRT: the `streamid` query parameter, percent-decoded.
    streamid: Option<String>,
    /// How many clients the run opens (`--players`).
    clients: usize,
    /// RTSP: RTP over UDP (`--rtsp-transport udp`) instead of interleaved in the connection.
    rtsp_udp: bool,
    /// HLS: how players follow the live edge (`--hls-mode`).
    hls_mode: hls::Mode,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let (protocol, rest, default_port) = if let Some(r) = url.strip_prefix("rtmp://") {
            (Protocol::Rtmp, r, 1935)
        } else if let Some(r) = url.strip_prefix("http://") {
            (Protocol::HttpFlv, r, 80)
        } else if let Some(r) = url.strip_prefix("rtsp://") {
            (Protocol::Rtsp, r, 554)
        } else if let Some(r) = url.strip_prefix("srt://") {
            (Protocol::Srt, r, 0)
        } else {
            return Err(format!(
                "unsupported URL {url:?}: expected rtmp://host[:port]/app/name, http://host[:port]/app/name.flv, http://host[:port]/.../index.m3u8, rtsp://host[:port]/app/name or srt://host:port?streamid=..."
            ));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let protocol = match protocol {
            Protocol::HttpFlv
                if path
                    .split(['?', '#'])
                    .next()
                    .is_some_and(|p| p.ends_with(".m3u8")) =>
            {
                Protocol::Hls
            }
            p => p,
        };
        if authority.is_empty() {
            return Err(format!("no host in {url:?}"));
        }
        let has_port = authority.rfind(':').is_some_and(|i| {
            let (host, port) = (&authority[..i], &authority[i + 1..]);
            !port.is_empty()
                && port.chars().all(|c| c.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']'))
        });
        let with_port = if has_port {
            authority.to_string()
        } else if default_port == 0 {
            return Err(format!(
                "{url:?} needs a port (srt://host:port?streamid=...)"
            ));
        } else {
            format!("{authority}:{default_port}")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {with_port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{with_port} resolves to no address"))?;
        let mut t = Target {
            protocol,
            addr,
            authority: authority.to_string(),
            app: String::new(),
            name: String::new(),
            tc_url: String::new(),
            path: path.to_string(),
            url: url.to_string(),
            streamid: None,
            clients: 1,
            rtsp_udp: false,
            hls_mode: hls::Mode::LowLatency,
        };
        if protocol == Protocol::Srt {
            let query = path.split_once('?').map_or("", |(_, q)| q);
            t.streamid = query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == "streamid")
                .map(|(_, v)| {
                    // An SRT streamid in a URL is often `%23!::r=...`.
                    percent_decode(v).map_or_else(|| v.to_string(), Cow::into_owned)
                });
        }
        if protocol == Protocol::Rtmp {
            let p = path.trim_start_matches('/');
            let (app, name) = p
                .split_once('/')
                .ok_or_else(|| format!("{url:?} has no stream name (rtmp://host/app/name)"))?;
            if app.is_empty() || name.is_empty() {
                return Err(format!("{url:?} needs both an app and a stream name"));
            }
            t.app = app.to_string();
            t.name = name.to_string();
            t.tc_url = format!("rtmp://{authority}/{app}");
        }
        Ok(t)
    }
}

impl Target {
    /// The RTMP stream name publisher `id` uses: the URL's, with `-{id}` appended to the
    /// name (before any query) when the run opens more than one client.
    fn publish_name(&self, id: usize) -> String {
        if self.clients <= 1 {
            return self.name.clone();
        }
        match self.name.split_once('?') {
            Some((name, query)) => format!("{name}-{id}?{query}"),
            None => format!("{}-{id}", self.name),
        }
    }
}

// ------------------------------------------------------------------------------------------
// per-player results

/// What one player saw. Durations are from the start of its TCP connect.
#[derive(Debug)]
struct PlayerStats {
    id: usize,
    /// When the player started its TCP connect.
    t0: Instant,
    /// When the player stopped (end of run or error).
    end: Instant,
    tcp_connect: Option<Duration>,
    play_start: Option<Duration>,
    first_keyframe: Option<Duration>,
    /// Bytes of audio and video payload (FLV tag bodies).
    media_bytes: u64,
    /// Video frames (sequence headers and info frames not counted).
    video_frames: u64,
    /// Audio frames (sequence headers not counted).
    audio_frames: u64,
    /// Largest gap between the arrivals of two consecutive video frames.
    max_gap: Option<Duration>,
    last_video: Option<Instant>,
    error: Option<String>,
    /// The measurement window (`--window-start`, `--window`), if any.
    window: Option<(Instant, Instant)>,
    /// Media bytes that arrived inside the window.
    window_bytes: u64,
    /// Largest gap between two video frames that both arrived inside the window.
    window_max_gap: Option<Duration>,
    /// The `--after-keyframe` pilot's signal, raised at its first live keyframe.
    live_keyframe: Option<Arc<tokio::sync::Notify>>,
    /// HLS: requests, playlists, parts and segments.
    hls: hls::HlsStats,
}

impl PlayerStats {
    fn new(id: usize, window: Option<(Instant, Instant)>) -> PlayerStats {
        let now = Instant::now();
        PlayerStats {
            id,
            t0: now,
            end: now,
            tcp_connect: None,
            play_start: None,
            first_keyframe: None,
            media_bytes: 0,
            video_frames: 0,
            audio_frames: 0,
            max_gap: None,
            last_video: None,
            error: None,
            window,
            window_bytes: 0,
            window_max_gap: None,
            live_keyframe: None,
            hls: hls::HlsStats::default(),
        }
    }

    fn in_window(&self, t: Instant) -> bool {
        self.window.is_some_and(|(from, to)| t >= from && t < to)
    }

    /// `n` bytes of audio or video payload arrived.
    fn media(&mut self, n: usize, now: Instant) {
        self.media_bytes += n as u64;
        if self.in_window(now) {
            self.window_bytes += n as u64;
        }
    }

    /// Played without error from before the window opened until after it closed.
    fn covers_window(&self) -> bool {
        match (self.window, self.play_start) {
            (Some((from, to)), Some(ps)) => {
                self.error.is_none() && self.t0 + ps <= from && self.end >= to
            }
            _ => false,
        }
    }

    fn started_playing(&mut self, now: Instant) {
        if self.play_start.is_none() {
            self.play_start = Some(now - self.t0);
        }
    }

    /// A whole audio (8) or video (9) tag body has arrived; `head` is its first bytes.
    fn media_tag(&mut self, type_id: u8, head: &[u8], now: Instant) {
        match type_id {
            8 => {
                // AAC (sound format 10) packet type 0 is the AudioSpecificConfig.
                let config = head.first().is_some_and(|b| b >> 4 == 10) && head.get(1) == Some(&0);
                if !head.is_empty() && !config {
                    self.audio_frame();
                }
            }
            9 => {
                let Some(&b0) = head.first() else { return };
                let (frame_type, is_frame) = if b0 & 0x80 != 0 {
                    // Enhanced RTMP: packet type in the low nibble; 1 CodedFrames, 3 CodedFramesX.
                    ((b0 >> 4) & 7, matches!(b0 & 0x0f, 1 | 3))
                } else {
                    let codec = b0 & 0x0f;
                    let frame_type = b0 >> 4;
                    let is_frame = if codec == 7 || codec == 12 {
                        // AVC/HEVC packet type 1 is a NALU; 0 a sequence header, 2 end of sequence.
                        head.get(1) == Some(&1)
                    } else {
                        true
                    };
                    (frame_type, is_frame && frame_type != 5)
                };
                if is_frame {
                    self.video_frame(frame_type == 1, now);
                }
            }
            _ => {}
        }
    }

    /// A whole audio frame (not a codec config) has arrived.
    fn audio_frame(&mut self) {
        self.audio_frames += 1;
    }

    /// A whole video frame (not a codec config) has arrived at `now`; `keyframe` when a
    /// decoder can start at it.
    fn video_frame(&mut self, keyframe: bool, now: Instant) {
        self.video_frames += 1;
        self.arrival(keyframe, now);
    }

    /// A whole unit of video has arrived at `now` (a frame; for HLS a part or segment);
    /// `keyframe` when a decoder can start at it.
    fn arrival(&mut self, keyframe: bool, now: Instant) {
        if let Some(last) = self.last_video {
            let gap = now - last;
            if self.max_gap.is_none_or(|g| gap > g) {
                self.max_gap = Some(gap);
            }
            if self.in_window(last)
                && self.in_window(now)
                && self.window_max_gap.is_none_or(|g| gap > g)
            {
                self.window_max_gap = Some(gap);
            }
        }
        self.last_video = Some(now);
        if keyframe && self.first_keyframe.is_none() {
            self.first_keyframe = Some(now - self.t0);
        }
        if keyframe
            && self
                .play_start
                .is_some_and(|ps| now - self.t0 >= ps + LIVE_KEYFRAME_AFTER)
        {
            if let Some(signal) = self.live_keyframe.take() {
                signal.notify_one();
            }
        }
    }

    /// Media bytes per second of play, in bit/s (None before play start).
    fn bitrate(&self) -> Option<f64> {
        let start = self.t0 + self.play_start?;
        let secs = self.end.saturating_duration_since(start).as_secs_f64();
        (secs > 0.0).then(|| self.media_bytes as f64 * 8.0 / secs)
    }
}

// ------------------------------------------------------------------------------------------
// socket helpers

type Res<T> = Result<T, String>;

/// One `read`, bounded by `timer` while `armed` (the play-start timeout).
async fn read_some(
    sock: &mut TcpStream,
    buf: &mut [u8],
    timer: &mut Pin<&mut Sleep>,
    armed: bool,
    start_timeout: f64,
) -> Res<usize> {
    tokio::select! {
        r = sock.read(buf) => match r {
            Ok(0) => Err("connection closed by server".to_string()),
            Ok(n) => Ok(n),
            Err(e) => Err(format!("read: {e}")),
        },
        _ = timer.as_mut(), if armed => Err(format!("no play start within {start_timeout} s")),
    }
}

async fn write_all(sock: &mut TcpStream, bytes: &[u8]) -> Res<()> {
    sock.write_all(bytes)
        .await
        .map_err(|e| format!("write: {e}"))
}

async fn tcp_connect(t: &Target, st: &mut PlayerStats) -> Res<TcpStream> {
    let sock = TcpStream::connect(t.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    st.tcp_connect = Some(st.t0.elapsed());
    let _ = sock.set_nodelay(true);
    Ok(sock)
}

// ------------------------------------------------------------------------------------------
// RTMP

/// An RTMP player or publisher: the protocol code's client ([`ClientSession`]), which walks
/// the server's chunks in place and keeps only the first bytes of each media message.
fn rtmp_client(t: &Target, role: Role) -> ClientSession {
    ClientSession::new(&t.app, &t.tc_url, role)
}

/// Feeds bytes read from the socket to the client, counting what it reports into `st`;
/// answers go to `out`.
fn rtmp_feed(
    c: &mut ClientSession,
    data: &[u8],
    now: Instant,
    st: &mut PlayerStats,
    out: &mut BytesMut,
) -> Res<()> {
    c.feed(data, out, |event| match event {
        ClientEvent::MediaBytes(n) => st.media(n, now),
        ClientEvent::Media { type_id, head } => st.media_tag(type_id, head, now),
        ClientEvent::Started => st.started_playing(now),
    })
    .map_err(|e| e.to_string())
}

fn be24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

/// The client side of the RTMP handshake, reading into `buf`. Returns how many bytes the
/// server sent in it and what the server sent after it (the start of its chunk stream).
async fn rtmp_handshake(
    sock: &mut TcpStream,
    buf: &mut [u8],
    timer: &mut Pin<&mut Sleep>,
    start_timeout: f64,
) -> Res<(u64, Vec<u8>)> {
    let (mut hs, c0c1) = ClientHandshake::start().map_err(|e| e.to_string())?;
    write_all(sock, &c0c1).await?;
    let mut hs_in = 0u64;
    loop {
        let n = read_some(sock, buf, timer, true, start_timeout).await?;
        hs_in += n as u64;
        match hs.feed(&buf[..n]).map_err(|e| e.to_string())? {
            HandshakeStep::InProgress(reply) => {
                if !reply.is_empty() {
                    write_all(sock, &reply).await?;
                }
            }
            HandshakeStep::Done { reply, rest } => {
                if !reply.is_empty() {
                    write_all(sock, &reply).await?;
                }
                return Ok((hs_in - rest.len() as u64, rest));
            }
        }
    }
}

/// Connects an RTMP client (player or publisher): TCP connect, handshake, `connect` queued in
/// `out` with the answers to whatever arrived behind the handshake. Returns the socket and
/// its read buffer; the caller writes `out`.
async fn rtmp_open(
    t: &Target,
    c: &mut ClientSession,
    st: &mut PlayerStats,
    timer: &mut Pin<&mut Sleep>,
    start_timeout: f64,
    out: &mut BytesMut,
) -> Res<(TcpStream, Vec<u8>)> {
    let mut sock = tcp_connect(t, st).await?;
    let mut buf = vec![0u8; READ_BUF];
    let (hs_in, leftover) = rtmp_handshake(&mut sock, &mut buf, timer, start_timeout).await?;
    c.handshake_bytes(hs_in);
    c.connect(out);
    rtmp_feed(c, &leftover, Instant::now(), st, out)?;
    Ok((sock, buf))
}

async fn rtmp_session(
    t: &Target,
    st: &mut PlayerStats,
    timer: &mut Pin<&mut Sleep>,
    start_timeout: f64,
) -> Res<()> {
    let mut out = BytesMut::with_capacity(1024);
    let mut c = rtmp_client(t, Role::Play(t.name.clone()));
    let (mut sock, mut buf) = rtmp_open(t, &mut c, st, timer, start_timeout, &mut out).await?;
    write_all(&mut sock, &out).await?;
    out.clear();
    loop {
        let armed = st.play_start.is_none();
        let n = read_some(&mut sock, &mut buf, timer, armed, start_timeout).await?;
        rtmp_feed(&mut c, &buf[..n], Instant::now(), st, &mut out)?;
        if !out.is_empty() {
            write_all(&mut sock, &out).await?;
            out.clear();
        }
    }
}

// ------------------------------------------------------------------------------------------
// HTTP-FLV

#[derive(Debug, Clone, Copy)]
enum FlvState {
    /// The 9-byte file header.
    FileHeader,
    /// Bytes to skip (rest of the header, PreviousTagSize0).
    Skip(usize),
    /// The 11-byte tag header.
    TagHeader,
    /// Tag body bytes left.
    Body(usize),
    /// The 4-byte PreviousTagSize after a tag.
    PrevSize,
}

/// The first two bytes of a media message or tag body (all that is looked at of media: the
/// codec, frame type and packet type), collected across the reads the body arrives in.
#[derive(Debug, Default)]
struct MediaHead {
    bytes: [u8; 2],
    len: usize,
}

impl MediaHead {
    /// Keeps what `part` adds to the first two bytes.
    fn take(&mut self, part: &[u8]) {
        let n = (2 - self.len).min(part.len());
        self.bytes[self.len..self.len + n].copy_from_slice(&part[..n]);
        self.len += n;
    }

    fn get(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// A streaming FLV parser: looks at tag headers and the first two bytes of each body.
struct FlvParser {
    state: FlvState,
    hdr: [u8; 11],
    hdr_len: usize,
    tag_type: u8,
    tag_size: usize,
    head: MediaHead,
}

impl FlvParser {
    fn new() -> FlvParser {
        FlvParser {
            state: FlvState::FileHeader,
            hdr: [0; 11],
            hdr_len: 0,
            tag_type: 0,
            tag_size: 0,
            head: MediaHead::default(),
        }
    }

    /// Accumulates up to `want` header bytes; true when complete.
    fn fill(&mut self, want: usize, data: &[u8], pos: &mut usize) -> bool {
        let n = (want - self.hdr_len).min(data.len() - *pos);
        self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&data[*pos..*pos + n]);
        self.hdr_len += n;
        *pos += n;
        self.hdr_len == want
    }

    fn feed(&mut self, data: &[u8], now: Instant, st: &mut PlayerStats) -> Res<()> {
        let mut pos = 0;
        while pos < data.len() || matches!(self.state, FlvState::Body(0)) {
            match self.state {
                FlvState::FileHeader => {
                    if !self.fill(9, data, &mut pos) {
                        continue;
                    }
                    self.hdr_len = 0;
                    if &self.hdr[..3] != b"FLV" {
                        return Err("body is not FLV".into());
                    }
                    let offset =
                        u32::from_be_bytes([self.hdr[5], self.hdr[6], self.hdr[7], self.hdr[8]])
                            as usize;
                    if offset < 9 {
                        return Err(format!("FLV header size {offset}"));
                    }
                    self.state = FlvState::Skip(offset - 9 + 4);
                }
                FlvState::Skip(n) => {
                    let take = n.min(data.len() - pos);
                    pos += take;
                    self.state = if take == n {
                        FlvState::TagHeader
                    } else {
                        FlvState::Skip(n - take)
                    };
                }
                FlvState::TagHeader => {
                    if !self.fill(11, data, &mut pos) {
                        continue;
                    }
                    self.hdr_len = 0;
                    self.tag_type = self.hdr[0] & 0x1f;
                    if !matches!(self.tag_type, 8 | 9 | 18) {
                        return Err(format!("FLV tag type {} (stream out of sync)", self.hdr[0]));
                    }
                    self.tag_size = be24(&self.hdr[1..4]) as usize;
                    self.head.clear();
                    self.state = FlvState::Body(self.tag_size);
                }
                FlvState::Body(left) => {
                    let take = left.min(data.len() - pos);
                    let part = &data[pos..pos + take];
                    pos += take;
                    if matches!(self.tag_type, 8 | 9) {
                        self.head.take(part);
                        st.media(take, now);
                    }
                    if take < left {
                        self.state = FlvState::Body(left - take);
                        continue;
                    }
                    st.media_tag(self.tag_type, self.head.get(), now);
                    self.state = FlvState::PrevSize;
                }
                FlvState::PrevSize => {
                    if !self.fill(4, data, &mut pos) {
                        continue;
                    }
                    self.hdr_len = 0;
                    let prev =
                        u32::from_be_bytes([self.hdr[0], self.hdr[1], self.hdr[2], self.hdr[3]])
                            as usize;
                    if prev != self.tag_size + 11 {
                        return Err(format!(
                            "FLV PreviousTagSize {prev} after a tag of {} bytes",
                            self.tag_size + 11
                        ));
                    }
                    self.state = FlvState::TagHeader;
                }
            }
        }
        Ok(())
    }
}

/// `Transfer-Encoding: chunked`, decoded as it streams.
#[derive(Debug, Clone, Copy)]
enum Chunked {
    /// Reading the hex size; `ext` once past `;` (extensions are skipped).
    Size {
        size: usize,
        digits: usize,
        ext: bool,
    },
    /// After the size line's `\r`, expecting `\n`.
    SizeLf {
        size: usize,
    },
    Data(usize),
    /// The CRLF after a chunk's data (bytes left).
    DataEnd(usize),
    /// The last chunk arrived.
    Done,
}

impl Chunked {
    /// Feeds raw body bytes; decoded data goes to `flv`.
    fn feed(
        &mut self,
        data: &[u8],
        flv: &mut FlvParser,
        now: Instant,
        st: &mut PlayerStats,
    ) -> Res<()> {
        let mut pos = 0;
        while pos < data.len() {
            match *self {
                Chunked::Size { size, digits, ext } => {
                    let b = data[pos];
                    pos += 1;
                    *self = match b {
                        b'\r' => Chunked::SizeLf { size },
                        b';' => Chunked::Size {
                            size,
                            digits,
                            ext: true,
                        },
                        _ if ext => *self,
                        _ => {
                            let d = (b as char)
                                .to_digit(16)
                                .ok_or("bad chunk size in chunked body")?;
                            if digits >= 12 {
                                return Err("chunk size too large".into());
                            }
                            Chunked::Size {
                                size: size * 16 + d as usize,
                                digits: digits + 1,
                                ext,
                            }
                        }
                    };
                }
                Chunked::SizeLf { size } => {
                    if data[pos] != b'\n' {
                        return Err("bad chunk size line".into());
                    }
                    pos += 1;
                    *self = if size == 0 {
                        Chunked::Done
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    let take = left.min(data.len() - pos);
                    flv.feed(&data[pos..pos + take], now, st)?;
                    pos += take;
                    *self = if take == left {
                        Chunked::DataEnd(2)
                    } else {
                        Chunked::Data(left - take)
                    };
                }
                Chunked::DataEnd(left) => {
                    pos += 1;
                    *self = if left == 1 {
                        Chunked::Size {
                            size: 0,
                            digits: 0,
                            ext: false,
                        }
                    } else {
                        Chunked::DataEnd(left - 1)
                    };
                }
                Chunked::Done => return Err("stream ended (last chunk)".into()),
            }
        }
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn httpflv_session(
    t: &Target,
    st: &mut PlayerStats,
    timer: &mut Pin<&mut Sleep>,
    start_timeout: f64,
) -> Res<()> {
    let mut sock = tcp_connect(t, st).await?;
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: streamgate-load\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        t.path, t.authority
    );
    write_all(&mut sock, req.as_bytes()).await?;
    let mut buf = vec![0u8; READ_BUF];
    // The response head (kept until its end is found).
    let mut head: Vec<u8> = Vec::with_capacity(1024);
    let (head_end, now) = loop {
        let n = read_some(&mut sock, &mut buf, timer, true, start_timeout).await?;
        let now = Instant::now();
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        if let Some(p) = find(&head[from..], b"\r\n\r\n") {
            break (from + p + 4, now);
        }
        if head.len() > MAX_HTTP_HEAD {
            return Err("HTTP response head too large".into());
        }
    };
    let text = String::from_utf8_lossy(&head[..head_end]);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/") {
        return Err(format!("not an HTTP response: {status_line:?}"));
    }
    if code != "200" {
        return Err(format!("HTTP {code}"));
    }
    let mut chunked = None;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
            {
                chunked = Some(Chunked::Size {
                    size: 0,
                    digits: 0,
                    ext: false,
                });
            }
        }
    }
    st.started_playing(now);
    let mut flv = FlvParser::new();
    let mut feed = |data: &[u8], now: Instant, st: &mut PlayerStats| -> Res<()> {
        match chunked.as_mut() {
            Some(c) => c.feed(data, &mut flv, now, st),
            None => flv.feed(data, now, st),
        }
    };
    feed(&head[head_end..], now, st)?;
    drop(head);
    loop {
        let n = read_some(&mut sock, &mut buf, timer, false, start_timeout).await?;
        feed(&buf[..n], Instant::now(), st)?;
    }
}

// ------------------------------------------------------------------------------------------
// the run

/// What every player of a run shares.
#[derive(Clone)]
struct Plan {
    target: Arc<Target>,
    /// `--start-timeout`, seconds.
    start_timeout: f64,
    window: Option<(Instant, Instant)>,
    /// `--publish`: the file every client sends.
    source: Option<Arc<publish::Source>>,
}

async fn player(
    id: usize,
    plan: Plan,
    deadline: tokio::time::Instant,
    mut stop: tokio::sync::watch::Receiver<bool>,
    live_keyframe: Option<Arc<tokio::sync::Notify>>,
) -> PlayerStats {
    let Plan {
        target: t,
        start_timeout,
        window,
        source,
    } = plan;
    let mut st = PlayerStats::new(id, window);
    st.live_keyframe = live_keyframe;
    let timer =
        sleep_until(tokio::time::Instant::from_std(st.t0) + Duration::from_secs_f64(start_timeout));
    tokio::pin!(timer);
    let result = tokio::select! {
        r = async {
            match (t.protocol, &source) {
                (Protocol::Rtmp, Some(source)) => {
                    publish::session(&t, id, source, &mut st, &mut timer, start_timeout).await
                }
                (Protocol::Rtmp, None) => rtmp_session(&t, &mut st, &mut timer, start_timeout).await,
                (Protocol::HttpFlv, _) => httpflv_session(&t, &mut st, &mut timer, start_timeout).await,
                (Protocol::Rtsp, _) => rtsp::session(&t, &mut st, &mut timer, start_timeout).await,
                (Protocol::Srt, _) => srt::session(&t, &mut st, &mut timer, start_timeout).await,
                (Protocol::Hls, _) => {
                    hls::session(&t, t.hls_mode, &mut st, &mut timer, start_timeout).await
                }
            }
        } => r,
        _ = sleep_until(deadline) => Ok(()),
        _ = stop.changed() => Ok(()),
    };
    st.end = Instant::now();
    if let Err(e) = result {
        st.error = Some(e);
    }
    st
}

/// Nearest-rank percentiles of a set of durations, in milliseconds.
struct Dist {
    count: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Dist {
    fn of(mut v: Vec<Duration>) -> Option<Dist> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |p: f64| {
            let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
            v[rank.clamp(1, v.len()) - 1].as_secs_f64() * 1000.0
        };
        Some(Dist {
            count: v.len(),
            p50: at(50.0),
            p90: at(90.0),
            p99: at(99.0),
            max: at(100.0),
        })
    }

    fn json(d: &Option<Dist>) -> String {
        match d {
            None => "null".into(),
            Some(d) => format!(
                "{{\"count\":{},\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"max\":{:.3}}}",
                d.count, d.p50, d.p90, d.p99, d.max
            ),
        }
    }

    fn row(name: &str, d: &Option<Dist>) -> String {
        match d {
            None => format!("{name:<20} {:>6}\n", 0),
            Some(d) => format!(
                "{name:<20} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                d.count, d.p50, d.p90, d.p99, d.max
            ),
        }
    }
}

/// Min, mean and max of a set of values.
fn spread(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((min, v.iter().sum::<f64>() / v.len() as f64, max))
}

fn spread_json(s: Option<(f64, f64, f64)>) -> String {
    match s {
        None => "null".into(),
        Some((min, mean, max)) => {
            format!("{{\"min\":{min:.1},\"mean\":{mean:.1},\"max\":{max:.1}}}")
        }
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("null".into(), |d| {
        format!("{:.3}", d.as_secs_f64() * 1000.0)
    })
}

/// CPU time (user + system) of this process, from /proc (Linux; 100 ticks per second).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Peak resident memory of this process in KiB, from /proc.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Report {
    text: String,
    json: String,
    ok: bool,
}

fn report(cli: &Cli, t: &Target, players: &[PlayerStats], wall: Duration) -> Report {
    let n = players.len();
    let connected = players.iter().filter(|p| p.tcp_connect.is_some()).count();
    let playing = players.iter().filter(|p| p.play_start.is_some()).count();
    let with_key = players
        .iter()
        .filter(|p| p.first_keyframe.is_some())
        .count();
    let errors = players.iter().filter(|p| p.error.is_some()).count();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for e in players.iter().filter_map(|p| p.error.as_deref()) {
        *kinds.entry(e).or_default() += 1;
    }
    let total_bytes: u64 = players.iter().map(|p| p.media_bytes).sum();
    let bytes: Vec<f64> = players.iter().map(|p| p.media_bytes as f64).collect();
    let kbps: Vec<f64> = players
        .iter()
        .filter_map(|p| p.bitrate())
        .map(|b| b / 1000.0)
        .collect();
    let vframes: Vec<f64> = players.iter().map(|p| p.video_frames as f64).collect();
    let aframes: Vec<f64> = players.iter().map(|p| p.audio_frames as f64).collect();
    let collect = |f: fn(&PlayerStats) -> Option<Duration>| -> Option<Dist> {
        Dist::of(players.iter().filter_map(f).collect())
    };
    let tcp = collect(|p| p.tcp_connect);
    let start = collect(|p| p.play_start);
    let key = collect(|p| p.first_keyframe);
    let gap = collect(|p| p.max_gap);
    // The measurement window: bytes of every player, gaps and rate of those that played
    // through all of it.
    let win = cli.window_start.map(|from| {
        let len = cli.window.unwrap_or(0.0);
        let bytes: u64 = players.iter().map(|p| p.window_bytes).sum();
        let full: Vec<&PlayerStats> = players.iter().filter(|p| p.covers_window()).collect();
        let gaps = Dist::of(full.iter().filter_map(|p| p.window_max_gap).collect());
        let gbps = if len > 0.0 {
            bytes as f64 * 8.0 / len / 1e9
        } else {
            0.0
        };
        (from, len, bytes, full.len(), gbps, gaps)
    });
    let cpu = cpu_time();
    let cpu_pct = cpu.map(|c| 100.0 * c.as_secs_f64() / wall.as_secs_f64().max(1e-9));
    let rss = peak_rss_kib();
    let hls_total = (t.protocol == Protocol::Hls).then(|| {
        players.iter().fold(hls::HlsStats::default(), |mut a, p| {
            a.requests += p.hls.requests;
            a.playlists += p.hls.playlists;
            a.blocking += p.hls.blocking;
            a.playlist_bytes += p.hls.playlist_bytes;
            a.parts += p.hls.parts;
            a.segments += p.hls.segments;
            a.reconnects += p.hls.reconnects;
            a
        })
    });
    let ramp = cli
        .ramp
        .map_or("all at once".to_string(), |r| format!("{r}/s"));

    let mut text = String::new();
    let _ = writeln!(
        text,
        "streamgate-load: {} ({}), {} players, {}, {} s after the last start",
        cli.url,
        t.protocol.name(),
        n,
        ramp,
        cli.duration
    );
    if let Some(file) = &cli.publish {
        let _ = writeln!(
            text,
            "mode: publish {}: every client is a publisher; play start is its publish start \
             (onStatus NetStream.Publish.Start), first keyframe and media count what it sent",
            file.display()
        );
    }
    let _ = writeln!(
        text,
        "players: {connected} connected, {playing} playing, {with_key} got a keyframe, {errors} errors"
    );
    if let (Some((bmin, bmean, bmax)), Some(fv), Some(fa)) =
        (spread(&bytes), spread(&vframes), spread(&aframes))
    {
        let _ = writeln!(
            text,
            "media: {:.1} MB in all; per player {:.0} kB mean (min {:.0}, max {:.0}), {:.0} video + {:.0} audio frames mean",
            total_bytes as f64 / 1e6,
            bmean / 1e3,
            bmin / 1e3,
            bmax / 1e3,
            fv.1,
            fa.1
        );
    }
    if let Some((kmin, kmean, kmax)) = spread(&kbps) {
        let _ = writeln!(
            text,
            "bit rate per player (media bytes from play start): {kmean:.0} kbit/s mean (min {kmin:.0}, max {kmax:.0})"
        );
    }
    if let Some(h) = &hls_total {
        let _ = writeln!(
            text,
            "hls ({}): {} requests: {} playlists ({} blocking reloads, {:.1} MB), {} parts, {} segments; {} reconnects",
            t.hls_mode.name(),
            h.requests,
            h.playlists,
            h.blocking,
            h.playlist_bytes as f64 / 1e6,
            h.parts,
            h.segments,
            h.reconnects
        );
    }
    let _ = writeln!(
        text,
        "{:<20} {:>6} {:>9} {:>9} {:>9} {:>9}   (ms from the start of the connect)",
        "", "count", "p50", "p90", "p99", "max"
    );
    // SRT: the handshake accepted; the others: the TCP connect.
    text.push_str(&Dist::row("connected", &tcp));
    text.push_str(&Dist::row("play start", &start));
    text.push_str(&Dist::row("first keyframe", &key));
    text.push_str(&Dist::row("largest frame gap", &gap));
    if let Some((from, len, bytes, full, gbps, gaps)) = &win {
        let _ = writeln!(
            text,
            "window {from} s + {len} s: {:.1} MB of media ({gbps:.3} Gbit/s), {full} players played through it",
            *bytes as f64 / 1e6
        );
        text.push_str(&Dist::row("  largest frame gap", gaps));
    }
    let _ = writeln!(
        text,
        "load tool: {} CPU over {:.1} s wall, peak RSS {}",
        cpu_pct.map_or("?".into(), |c| format!("{c:.1}%")),
        wall.as_secs_f64(),
        rss.map_or("?".into(), |r| format!("{:.1} MiB", r as f64 / 1024.0))
    );
    if kinds.is_empty() {
        text.push_str("errors: none\n");
    } else {
        text.push_str("errors:\n");
        for (k, c) in &kinds {
            let _ = writeln!(text, "  {c:>6} x {k}");
        }
    }

    let mut j = String::with_capacity(256 + n * 256);
    let _ = write!(
        j,
        "{{\"url\":{},\"protocol\":\"{}\",\"mode\":\"{}\",\"players\":{n},\"ramp_per_sec\":{},\"after_keyframe_ms\":{},\"duration_s\":{},",
        json_str(&cli.url),
        t.protocol.name(),
        if cli.publish.is_some() { "publish" } else { "play" },
        cli.ramp.map_or("null".into(), |r| r.to_string()),
        cli.after_keyframe.map_or("null".into(), |r| r.to_string()),
        cli.duration
    );
    let _ = write!(
        j,
        "\"connected\":{connected},\"playing\":{playing},\"with_keyframe\":{with_key},\"errors\":{errors},\"error_kinds\":{{"
    );
    for (i, (k, c)) in kinds.iter().enumerate() {
        let _ = write!(j, "{}{}:{c}", if i > 0 { "," } else { "" }, json_str(k));
    }
    let _ = write!(
        j,
        "}},\"media_bytes\":{total_bytes},\"media_bytes_per_player\":{},\"bitrate_kbps\":{},\"video_frames_per_player\":{},\"audio_frames_per_player\":{},",
        spread_json(spread(&bytes)),
        spread_json(spread(&kbps)),
        spread_json(spread(&vframes)),
        spread_json(spread(&aframes))
    );
    let _ = write!(
        j,
        "\"tcp_connect_ms\":{},\"play_start_ms\":{},\"first_keyframe_ms\":{},\"max_frame_gap_ms\":{},",
        Dist::json(&tcp),
        Dist::json(&start),
        Dist::json(&key),
        Dist::json(&gap)
    );
    match &win {
        None => j.push_str("\"window\":null,"),
        Some((from, len, bytes, full, gbps, gaps)) => {
            let _ = write!(
                j,
                "\"window\":{{\"start_s\":{from},\"len_s\":{len},\"media_bytes\":{bytes},\"gbps\":{gbps:.6},\"players_through\":{full},\"max_frame_gap_ms\":{}}},",
                Dist::json(gaps)
            );
        }
    }
    match &hls_total {
        None => j.push_str("\"hls\":null,"),
        Some(h) => {
            let _ = write!(
                j,
                "\"hls\":{{\"mode\":\"{}\",\"requests\":{},\"playlists\":{},\"blocking_reloads\":{},\"playlist_bytes\":{},\"parts\":{},\"segments\":{},\"reconnects\":{}}},",
                t.hls_mode.name(),
                h.requests,
                h.playlists,
                h.blocking,
                h.playlist_bytes,
                h.parts,
                h.segments,
                h.reconnects
            );
        }
    }
    let _ = write!(
        j,
        "\"wall_s\":{:.3},\"tool_cpu_percent\":{},\"tool_peak_rss_kib\":{},\"per_player\":[",
        wall.as_secs_f64(),
        cpu_pct.map_or("null".into(), |c| format!("{c:.2}")),
        rss.map_or("null".into(), |r| r.to_string())
    );
    for (i, p) in players.iter().enumerate() {
        let _ = write!(
            j,
            "{}{{\"id\":{},\"connected\":{},\"tcp_connect_ms\":{},\"play_start_ms\":{},\"first_keyframe_ms\":{},\"media_bytes\":{},\"video_frames\":{},\"audio_frames\":{},\"max_frame_gap_ms\":{},\"bitrate_kbps\":{},\"error\":{}}}",
            if i > 0 { "," } else { "" },
            p.id,
            p.tcp_connect.is_some(),
            ms(p.tcp_connect),
            ms(p.play_start),
            ms(p.first_keyframe),
            p.media_bytes,
            p.video_frames,
            p.audio_frames,
            ms(p.max_gap),
            p.bitrate().map_or("null".into(), |b| format!("{:.1}", b / 1000.0)),
            p.error.as_deref().map_or("null".into(), json_str)
        );
    }
    j.push_str("]}");

    Report {
        text,
        json: j,
        ok: errors == 0 && playing == n,
    }
}

async fn run(
    cli: &Cli,
    t: Arc<Target>,
    source: Option<Arc<publish::Source>>,
) -> Result<(Vec<PlayerStats>, Duration), String> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Ctrl-C ends the run early (players stop and the report covers what they saw). The
    // sender lives as long as this task, so players never see it dropped.
    let stopper = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
        }
        std::future::pending::<()>().await;
    });
    let mut plan = Plan {
        target: t,
        start_timeout: cli.start_timeout,
        window: None,
        source,
    };
    if let Some(ms) = cli.after_keyframe {
        let pilot = Plan {
            source: None,
            ..plan.clone()
        };
        if let Err(e) = align_to_keyframe(pilot, cli.players, &stop_rx, ms).await {
            stopper.abort();
            return Err(format!("--after-keyframe: {e}"));
        }
    }
    let start = tokio::time::Instant::now();
    let ramp_span = match cli.ramp {
        Some(r) if cli.players > 1 => Duration::from_secs_f64((cli.players - 1) as f64 / r),
        _ => Duration::ZERO,
    };
    let deadline = start + ramp_span + Duration::from_secs_f64(cli.duration);
    plan.window = cli.window_start.map(|from| {
        let from = start.into_std() + Duration::from_secs_f64(from);
        (
            from,
            from + Duration::from_secs_f64(cli.window.unwrap_or(0.0)),
        )
    });
    let mut stopped = stop_rx.clone();
    let mut handles = Vec::with_capacity(cli.players);
    for i in 0..cli.players {
        if let Some(r) = cli.ramp {
            tokio::select! {
                _ = sleep_until(start + Duration::from_secs_f64(i as f64 / r)) => {}
                _ = stopped.changed() => break,
            }
        }
        handles.push(tokio::spawn(player(
            i,
            plan.clone(),
            deadline,
            stop_rx.clone(),
            None,
        )));
    }
    let mut players = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(p) = h.await {
            players.push(p);
        }
    }
    stopper.abort();
    Ok((players, start.elapsed()))
}

/// Plays the stream with a pilot (player `id`) until a live keyframe arrives, closes the pilot
/// and waits `ms` milliseconds more (`--after-keyframe`).
async fn align_to_keyframe(
    plan: Plan,
    id: usize,
    stop: &tokio::sync::watch::Receiver<bool>,
    ms: f64,
) -> Result<(), String> {
    let signal = Arc::new(tokio::sync::Notify::new());
    // Long enough for a GOP of up to 10 s after a slow start.
    let patience = Duration::from_secs_f64(plan.start_timeout) + Duration::from_secs(10);
    let mut pilot = tokio::spawn(player(
        id,
        plan,
        tokio::time::Instant::now() + patience,
        stop.clone(),
        Some(signal.clone()),
    ));
    let outcome = tokio::select! {
        _ = signal.notified() => Ok(()),
        st = &mut pilot => Err(match st {
            Ok(st) => match st.error {
                Some(e) => format!("the pilot player failed: {e}"),
                None => format!("no live keyframe within {} s", patience.as_secs()),
            },
            Err(e) => format!("the pilot player failed: {e}"),
        }),
    };
    // The pilot's socket closes with its task.
    pilot.abort();
    outcome?;
    tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.players == 0 {
        eprintln!("streamgate-load: --players must be at least 1");
        return ExitCode::from(2);
    }
    if cli.ramp.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        eprintln!("streamgate-load: --ramp must be a positive number of players per second");
        return ExitCode::from(2);
    }
    let seconds_ok = [cli.window_start, cli.window, cli.after_keyframe]
        .iter()
        .flatten()
        .all(|s| *s >= 0.0 && s.is_finite())
        && cli.duration >= 0.0
        && cli.duration.is_finite()
        && cli.start_timeout > 0.0
        && cli.start_timeout.is_finite();
    if !seconds_ok {
        eprintln!(
            "streamgate-load: --duration, --start-timeout, --window-start, --window and --after-keyframe must be non-negative numbers"
        );
        return ExitCode::from(2);
    }
    let target = match Target::parse(&cli.url) {
        Ok(mut t) => {
            t.clients = cli.players;
            t.rtsp_udp = cli.rtsp_transport == "udp";
            t.hls_mode = if cli.hls_mode == "plain" {
                hls::Mode::Plain
            } else {
                hls::Mode::LowLatency
            };
            Arc::new(t)
        }
        Err(e) => {
            eprintln!("streamgate-load: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("streamgate-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let source = match &cli.publish {
        None => None,
        Some(_) if target.protocol != Protocol::Rtmp => {
            eprintln!("streamgate-load: --publish needs an rtmp:// URL");
            return ExitCode::from(2);
        }
        Some(path) => match publish::Source::load(path) {
            Ok(source) => Some(Arc::new(source)),
            Err(e) => {
                eprintln!("streamgate-load: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    let (players, wall) = match rt.block_on(run(&cli, target.clone(), source)) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("streamgate-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = report(&cli, &target, &players, wall);
    if cli.json {
        println!("{}", r.json);
    } else {
        print!("{}", r.text);
    }
    if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

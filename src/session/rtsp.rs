//! [`RtspSession`]: the actor of one RTSP client connection, a thin shell over
//! [`crate::protocol::rtsp::RtspConnection`] and its RTP (de)packetizers.
//!
//! Hooks: `on_connect` at the first request, `on_publish` at ANNOUNCE, `on_play` at DESCRIBE
//! (or at SETUP/PLAY when a client skips DESCRIBE), each asked while the actor waits, before
//! anything is answered. Publish: RTP from interleaved frames or UDP datagrams is
//! depacketized into frames for the `StreamActor`. Play: DESCRIBE subscribes for the
//! snapshot that gives the SDP and unsubscribes at once: a client that describes and never
//! plays holds no media. PLAY subscribes again and sends that snapshot's GOP, then live
//! frames; RTP goes out interleaved or by UDP with RTCP sender reports. UDP ports come from the
//! `<rtsp>` RTP port range. The client's input is read only while its unwritten output is
//! under a bound ([`Writer::gate`]), so requests pipelined without reading the answers cost
//! the server nothing past that bound.
//!
//! `on_done` is sent once per allowed play or publish ([`Active`]).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use streamgate_actors::media::{Codec, FrameKind, MediaFrame, StreamKey, Track};
use streamgate_actors::notify::{self, Decision};
use streamgate_actors::registry::{ClaimPublish, PublishRefused};
use streamgate_actors::session::{next_client_id, ClientId, Protocol, SessionInfo};
use streamgate_actors::stream::{
    Deliver, Delivery, Kick, PublishFrame, Snapshot, StreamEnded, Subscribe, Unsubscribe,
};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::codec::BytesCodec;
use tokio_util::udp::UdpFramed;
use tracing::field::Empty;

use super::writer::{WriteError, Writer};
use super::{
    ask, guard, read_or_stop, request_play, Active, Attach, Backlog, CoreFailure, PlayOutcome,
    Role, SessionContext, SessionSettings,
};
use crate::limits::Admission;
use crate::protocol::codec::{avcc_nals, hevc_record};
use crate::protocol::pacing::JoinPacer;
use crate::protocol::rtsp::message::{ClientTransport, ServerTransport, TransportSpec};
use crate::protocol::rtsp::reorder::ReorderBuffer;
use crate::protocol::rtsp::rtp::{
    is_rtcp, ntp_timestamp, ntp_to_unix_micros, parse_rtcp, sender_report, AacDepacketizer,
    AacPacketizer, AuHeaderLayout, Av1Depacketizer, Av1Packetizer, LatmDepacketizer,
    OpusDepacketizer, OpusPacketizer, RtcpPacket, RtpClock, RtpPacket, VideoDepacketizer,
    VideoPacketizer, OPUS_CLOCK_RATE,
};
use crate::protocol::rtsp::sdp::{self, SdpTrack};
use crate::protocol::rtsp::{stream_url, Event, RequestId, RtspConnection, RtspError};

/// Mailbox capacity of a session: live frames waiting to be sent.
pub const SESSION_MAILBOX: usize = 1024;
/// A session without any request, RTCP or media for this long is closed (RFC 2326 §12.37,
/// the `timeout` the server announces).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// A publisher whose tracks bring no RTP or RTCP for this long is dropped, whatever requests
/// it still sends (as for RTMP and SRT publishers).
pub const PUBLISH_IDLE: Duration = Duration::from_secs(30);
/// Time a client has from TCP accept to its first request.
pub const FIRST_REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How much faster than real time a joining player's cached GOP and the frames behind it are
/// sent until it has caught up with live frames (see [`JoinPacer`]).
const JOIN_SPEED: f64 = 1.0;

/// The shortest wait of the pacer's timer.
const PACE_TICK: Duration = Duration::from_millis(100);

/// How often a player gets RTCP sender reports.
const SENDER_REPORT_EVERY: Duration = Duration::from_secs(5);

/// Where a track's RTP and RTCP go or come from.
#[derive(Debug)]
enum Link {
    /// `$` frames on the RTSP connection with these channels.
    Interleaved { rtp: u8, rtcp: u8 },
    /// UDP: our sockets and the client's addresses.
    Udp {
        rtp: std::rc::Rc<UdpSocket>,
        rtcp: std::rc::Rc<UdpSocket>,
        client_rtp: SocketAddr,
        client_rtcp: SocketAddr,
        /// The streams reading both sockets (they hold the sockets too): cancelled when the
        /// track is set up again, so the pair is given back.
        readers: [SpawnHandle; 2],
        /// The pair counted against the client's address.
        _lease: PairLease,
    },
}

/// Port pairs held per client address, across every session of the server.
static PAIRS_PER_IP: std::sync::Mutex<Option<std::collections::HashMap<IpAddr, usize>>> =
    std::sync::Mutex::new(None);

/// Most RTP/RTCP port pairs one client address may hold at once: a quarter of the range (at
/// least two, one audio/video session), so one host cannot take the range from the others.
fn pairs_per_ip(range: (u16, u16)) -> usize {
    let pairs = usize::from((range.1 - range.0) / 2 + 1);
    (pairs / 4).max(2)
}

/// One UDP port pair counted against a client address; given back when dropped.
#[derive(Debug)]
struct PairLease {
    ip: IpAddr,
}

impl PairLease {
    /// Counts a pair for `ip`, unless it already holds `cap`.
    fn take(ip: IpAddr, cap: usize) -> Option<PairLease> {
        let mut guard = PAIRS_PER_IP.lock().unwrap_or_else(|e| e.into_inner());
        let held = guard
            .get_or_insert_with(Default::default)
            .entry(ip)
            .or_insert(0);
        if *held >= cap {
            return None;
        }
        *held += 1;
        Some(PairLease { ip })
    }
}

impl Drop for PairLease {
    fn drop(&mut self) {
        let mut guard = PAIRS_PER_IP.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(map) = guard.as_mut() {
            if let Some(held) = map.get_mut(&self.ip) {
                *held = held.saturating_sub(1);
                if *held == 0 {
                    map.remove(&self.ip);
                }
            }
        }
    }
}

/// One depacketizer per announced track.
enum Depacketizer {
    Video(Box<VideoDepacketizer>),
    Audio(AacDepacketizer),
    Latm(LatmDepacketizer),
    Opus(OpusDepacketizer),
    Av1(Av1Depacketizer),
}

impl Depacketizer {
    fn push(&mut self, packet: &RtpPacket) -> bool {
        match self {
            Depacketizer::Video(d) => d.push(packet).is_ok(),
            Depacketizer::Audio(d) => d.push(packet).is_ok(),
            Depacketizer::Latm(d) => d.push(packet).is_ok(),
            Depacketizer::Opus(d) => d.push(packet).is_ok(),
            Depacketizer::Av1(d) => d.push(packet).is_ok(),
        }
    }

    fn pop(&mut self) -> Option<MediaFrame> {
        match self {
            Depacketizer::Video(d) => d.pop(),
            Depacketizer::Audio(d) => d.pop(),
            Depacketizer::Latm(d) => d.pop(),
            Depacketizer::Opus(d) => d.pop(),
            Depacketizer::Av1(d) => d.pop(),
        }
    }

    fn anchor(&mut self, rtp_time: u32, micros: i64) {
        match self {
            Depacketizer::Video(d) => {
                d.anchor(rtp_time, micros);
            }
            Depacketizer::Audio(d) => {
                d.anchor(rtp_time, micros);
            }
            Depacketizer::Latm(d) => {
                d.anchor(rtp_time, micros);
            }
            Depacketizer::Opus(d) => {
                d.anchor(rtp_time, micros);
            }
            Depacketizer::Av1(d) => {
                d.anchor(rtp_time, micros);
            }
        }
    }
}

/// A track a publisher sends.
struct Incoming {
    depacketizer: Depacketizer,
    link: Option<Link>,
    /// H.265: the record last made from in-band parameter sets (descriptions from ffmpeg and
    /// many cameras carry none).
    hevc_config: Option<Bytes>,
    hevc: bool,
    /// Over UDP: puts the packets back in sequence order before the depacketizer.
    reorder: Option<ReorderBuffer>,
    /// A timer to release a gap of `reorder` at its deadline is pending.
    reorder_timer: bool,
}

/// One RTP packetizer of a player's track.
enum Packetizer {
    Video(Box<VideoPacketizer>),
    Audio(AacPacketizer),
    Opus(OpusPacketizer),
    Av1(Av1Packetizer),
}

impl Packetizer {
    fn packetize(&mut self, frame: &MediaFrame, out: &mut Vec<Bytes>) {
        let _ = match self {
            Packetizer::Video(p) => p.packetize(frame, out),
            Packetizer::Audio(p) => p.packetize(frame, out),
            Packetizer::Opus(p) => p.packetize(frame, out),
            Packetizer::Av1(p) => p.packetize(frame, out),
        };
    }

    fn clock(&self) -> RtpClock {
        match self {
            Packetizer::Video(p) => p.clock(),
            Packetizer::Audio(p) => p.clock(),
            Packetizer::Opus(p) => p.clock(),
            Packetizer::Av1(p) => p.clock(),
        }
    }

    fn stats(&self) -> (u16, u32, u32) {
        let s = match self {
            Packetizer::Video(p) => p.stats(),
            Packetizer::Audio(p) => p.stats(),
            Packetizer::Opus(p) => p.stats(),
            Packetizer::Av1(p) => p.stats(),
        };
        (s.next_sequence, s.packets, s.octets)
    }
}

/// A track a player receives.
struct Outgoing {
    track: Track,
    codec: Codec,
    config: Bytes,
    payload_type: u8,
    ssrc: u32,
    link: Option<Link>,
    url: String,
    packetizer: Option<Packetizer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Setup,
    Playing,
}

/// A random 32-bit value (session ids, SSRCs, RTP offsets): the std hasher's keys are
/// random per instance.
fn random_u32() -> u32 {
    RandomState::new().hash_one(Instant::now()) as u32
}

fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The app and stream name of an RTSP URL: path segments before the last, and the last
/// (queries and a track segment removed).
fn app_and_name(url: &str) -> Option<(String, String)> {
    let url = stream_url(url);
    let url: &str = &url;
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.split_once('/').map(|(_, p)| p)?;
    let path = path.split('?').next().unwrap_or("");
    let (app, name) = path.trim_end_matches('/').rsplit_once('/')?;
    (!app.is_empty() && !name.is_empty()).then(|| (app.to_owned(), name.to_owned()))
}

/// A config frame for an H.265 keyframe whose in-band VPS/SPS/PPS make a record other than
/// `last` (which it then becomes); `None` otherwise.
fn in_band_hevc_config(frame: &MediaFrame, last: &mut Option<Bytes>) -> Option<MediaFrame> {
    if frame.kind != FrameKind::Media || !frame.keyframe {
        return None;
    }
    let nals = avcc_nals(&frame.payload, 4).ok()?;
    let sets: Vec<Bytes> = nals
        .iter()
        .filter(|n| {
            n.first()
                .is_some_and(|b| matches!((b >> 1) & 0x3f, 32..=34))
        })
        .map(|n| Bytes::copy_from_slice(n))
        .collect();
    let record = hevc_record(&sets).ok()?;
    if last.as_ref() == Some(&record) {
        return None;
    }
    *last = Some(record.clone());
    Some(MediaFrame {
        track: Track::Video,
        codec: Codec::H265,
        kind: FrameKind::Config,
        dts: frame.dts,
        pts: frame.pts,
        keyframe: true,
        payload: record,
    })
}

/// Whether a datagram from `from` comes from `expected` (an IPv4 peer may show as an
/// IPv4-mapped IPv6 address on a dual-stack socket).
fn same_source(from: SocketAddr, expected: SocketAddr) -> bool {
    from.port() == expected.port() && from.ip().to_canonical() == expected.ip().to_canonical()
}

static NEXT_PORT: AtomicU32 = AtomicU32::new(0);

/// Binds an RTP/RTCP pair (even, even + 1) from `range`, starting after the last pair given.
fn bind_pair(range: (u16, u16)) -> Option<(UdpSocket, UdpSocket, (u16, u16))> {
    let (low, high) = range;
    let pairs = u32::from((high - low) / 2 + 1).max(1);
    for _ in 0..pairs {
        let i = NEXT_PORT.fetch_add(1, Ordering::Relaxed) % pairs;
        let rtp_port = low + (i * 2) as u16;
        let Some(rtcp_port) = rtp_port.checked_add(1).filter(|p| *p <= high) else {
            continue;
        };
        let bind = |port: u16| -> Option<UdpSocket> {
            let socket = std::net::UdpSocket::bind(("0.0.0.0", port)).ok()?;
            socket.set_nonblocking(true).ok()?;
            UdpSocket::from_std(socket).ok()
        };
        if let (Some(rtp), Some(rtcp)) = (bind(rtp_port), bind(rtcp_port)) {
            return Some((rtp, rtcp, (rtp_port, rtcp_port)));
        }
    }
    None
}

/// A datagram on one of the session's UDP sockets.
#[derive(Message)]
#[rtype(result = "()")]
struct Datagram {
    track: usize,
    rtcp: bool,
    data: Bytes,
}

/// One RTSP client connection.
pub struct RtspSession {
    /// Its place within the section's connection limits, given back when the session ends.
    _admission: Admission,
    core: RtspConnection,
    writer: Writer,
    peer: SocketAddr,
    clientid: ClientId,
    shared: SessionContext,
    settings: SessionSettings,
    span: tracing::Span,
    active: Option<Active>,
    key: Option<StreamKey>,
    connected: bool,
    app_recorded: bool,
    last_activity: Instant,
    /// Since when the session has neither played nor published (see `in_use`).
    inactive_since: Instant,
    /// When a publisher's last RTP or RTCP packet arrived (or its ANNOUNCE was allowed).
    last_media: Instant,
    // publish
    incoming: Vec<Incoming>,
    origin_micros: Option<i64>,
    dropped_ingest: u64,
    // play
    outgoing: Vec<Outgoing>,
    snapshot: Option<Snapshot>,
    /// The number of the first live frame after the snapshot PLAY sent; earlier deliveries
    /// are in it (or older).
    from_seq: u64,
    phase: Phase,
    started: Option<(Instant, i64)>,
    backlog: Backlog,
    /// Paces the cached GOP and the frames behind it until the player has caught up.
    pacer: JoinPacer,
    /// The timer that releases the pacer's next frames.
    pace_timer: Option<SpawnHandle>,
}

impl RtspSession {
    /// Starts the session actor for an accepted socket on the current arbiter.
    pub fn start(
        socket: TcpStream,
        peer: SocketAddr,
        shared: SessionContext,
        settings: SessionSettings,
        admission: Admission,
    ) -> Addr<Self> {
        let clientid = next_client_id();
        let span = tracing::info_span!(
            "session",
            clientid,
            peer = %peer,
            protocol = "rtsp",
            app = Empty,
            name = Empty
        );
        let (read, write) = socket.into_split();
        let writer = Writer::spawn(write, span.clone(), settings.write_merge);
        let input = writer.gate(super::reader(read));
        let session_id = format!("{:08X}{:08X}", random_u32(), clientid as u32);
        RtspSession::create(move |ctx| {
            ctx.add_stream(input);
            RtspSession {
                _admission: admission,
                core: RtspConnection::new(session_id),
                writer,
                peer,
                clientid,
                shared,
                settings,
                span,
                active: None,
                key: None,
                connected: false,
                app_recorded: false,
                last_activity: Instant::now(),
                inactive_since: Instant::now(),
                last_media: Instant::now(),
                incoming: Vec::new(),
                origin_micros: None,
                dropped_ingest: 0,
                outgoing: Vec::new(),
                snapshot: None,
                from_seq: 0,
                phase: Phase::Setup,
                started: None,
                backlog: Backlog::new(settings.player),
                pacer: JoinPacer::new(JOIN_SPEED, settings.player.queue_bytes),
                pace_timer: None,
            }
        })
    }

    fn info(&self, app: &str, name: &str, url: &str) -> SessionInfo {
        SessionInfo {
            protocol: Protocol::Rtsp,
            clientid: self.clientid,
            addr: self.peer.ip(),
            app: app.to_owned(),
            url: url.to_owned(),
            name: name.to_owned(),
            tcurl: String::new(),
        }
    }

    /// Sends queued output; a refused or finished connection is closed after it.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.flush_as(ctx, false);
    }

    /// [`Self::flush`], with the output written at once or (`merged`, live media) within
    /// the merge window.
    fn flush_as(&mut self, ctx: &mut Context<Self>, merged: bool) {
        if let Some(bytes) = self.core.take_output() {
            let sent = if merged {
                self.writer.send_merged(bytes)
            } else {
                self.writer.send(bytes)
            };
            match sent {
                Ok(()) => {}
                Err(WriteError::Full) if merged => self.backlog.overflowed(),
                Err(WriteError::Full) => {
                    // Answers (or a replay) that do not fit: the client is not reading.
                    let _s = self.span.clone().entered();
                    tracing::info!("client not reading its answers; closing");
                    ctx.stop();
                }
                Err(WriteError::Closed) => ctx.stop(),
            }
        }
        if self.core.is_finished() {
            ctx.stop();
        }
    }

    /// Runs a core call with panics contained; a failure ends this connection.
    fn guarded<T>(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut RtspConnection) -> Result<T, RtspError>,
    ) -> Option<T> {
        match guard(&mut self.core, &self.span, f) {
            Ok(v) => Some(v),
            Err(failure) => {
                if failure == CoreFailure::Protocol {
                    self.flush(ctx);
                }
                ctx.stop();
                None
            }
        }
    }

    /// Drains the core's events; a request suspends the actor until its decision.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.flush(ctx);
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::Connect { request, url } => {
                    // The first request usually names the stream (ffmpeg's OPTIONS does): its
                    // app goes with on_connect, as RTMP's connect carries one.
                    let app = app_and_name(&url).map(|(app, _)| app).unwrap_or_default();
                    self.record_app(&app);
                    let info = self.info(&app, "", &url);
                    let asked = ask(self.shared.notify.send(notify::Connect { info }));
                    ctx.wait(asked.into_actor(self).map(move |decision, act, ctx| {
                        act.log_decision("connect", &decision);
                        if decision.is_allow() {
                            act.connected = true;
                            if act.guarded(ctx, |core| core.accept(request)).is_some() {
                                act.pump(ctx);
                            }
                        } else {
                            act.refuse(ctx, request, decision.deny_status(), "on_connect refused");
                        }
                    }));
                    return;
                }
                Event::PublishRequested {
                    request,
                    url,
                    tracks,
                } => {
                    self.ask_publish(ctx, request, &url, tracks);
                    return;
                }
                Event::PlayRequested { request, url } => {
                    self.ask_play(ctx, request, &url);
                    return;
                }
                Event::SetupRequested {
                    request,
                    track,
                    transport,
                    ..
                } => {
                    let answer = self.setup(ctx, track, transport);
                    let ok = match answer {
                        Ok(server) => self.guarded(ctx, |core| core.accept_setup(request, server)),
                        Err((status, reason)) => {
                            self.log_refusal("SETUP", status, reason);
                            self.guarded(ctx, |core| core.reject(request, status))
                        }
                    };
                    if ok.is_none() {
                        return;
                    }
                    self.flush(ctx);
                }
                Event::RecordStarted => {
                    let _s = self.span.clone().entered();
                    tracing::info!(tracks = self.incoming.len(), "recording");
                }
                Event::PlayStarted { request, .. } => {
                    self.resume_play(ctx, request);
                    return;
                }
                Event::Teardown => {
                    self.finish("teardown");
                    self.flush(ctx);
                }
                Event::Interleaved { channel, data } => self.interleaved(channel, data),
                Event::Refused {
                    method,
                    url,
                    status,
                    reason,
                } => {
                    let _s = self.span.clone().entered();
                    tracing::info!(%method, %url, status, %reason, "request refused");
                }
            }
        }
        self.flush(ctx);
    }

    /// Puts the app in the connection's span once (a field recorded twice is logged twice).
    fn record_app(&mut self, app: &str) {
        if !self.app_recorded && !app.is_empty() {
            self.app_recorded = true;
            self.span.record("app", app);
        }
    }

    fn log_decision(&self, call: &str, decision: &Decision) {
        let _s = self.span.clone().entered();
        match decision {
            Decision::Allow => tracing::info!(call, "allowed"),
            Decision::Deny(reason) => tracing::info!(call, ?reason, "refused"),
        }
    }

    /// Logs an error answer the session chose (the core reports its own as `Event::Refused`).
    fn log_refusal(&self, method: &str, status: u16, reason: &str) {
        let _s = self.span.clone().entered();
        if method.is_empty() {
            tracing::info!(status, %reason, "request refused");
        } else {
            tracing::info!(%method, status, %reason, "request refused");
        }
    }

    /// Refuses a pending request with `status` and flushes; the core finishes the connection
    /// when it was a connect, publish or play.
    fn refuse(&mut self, ctx: &mut Context<Self>, request: RequestId, status: u16, reason: &str) {
        self.log_refusal("", status, reason);
        if self
            .guarded(ctx, |core| core.reject(request, status))
            .is_some()
        {
            self.flush(ctx);
        }
    }

    fn ask_publish(
        &mut self,
        ctx: &mut Context<Self>,
        request: RequestId,
        url: &str,
        tracks: Vec<SdpTrack>,
    ) {
        let Some((app, name)) = app_and_name(url) else {
            return self.refuse(ctx, request, 400, "URL names no app and stream");
        };
        self.record_app(&app);
        self.span.record("name", name.as_str());
        let info = self.info(&app, &name, url);
        let key = StreamKey::new(app, name);
        let notify = self.shared.notify.clone();
        let registry = self.shared.registry.clone();
        let kick = ctx.address().recipient::<Kick>();
        let arbiter = Arbiter::current();
        let clientid = self.clientid;
        let hook_info = info.clone();
        let asked = async move {
            let decision = ask(notify.send(notify::Publish { info: hook_info })).await;
            if !decision.is_allow() {
                return (decision, None);
            }
            let claim = registry
                .send(ClaimPublish {
                    key,
                    clientid,
                    kick,
                    arbiter,
                })
                .await;
            (decision, Some(claim))
        };
        ctx.wait(
            asked
                .into_actor(self)
                .map(move |(decision, claim), act, ctx| {
                    act.log_decision("publish", &decision);
                    let Some(claim) = claim else {
                        return act.refuse(
                            ctx,
                            request,
                            decision.deny_status(),
                            "on_publish refused",
                        );
                    };
                    act.active = Some(Active::begin(&act.shared, Role::Publisher, info, None));
                    act.last_media = Instant::now();
                    match claim {
                        Ok(Ok(stream)) => {
                            act.incoming = tracks.iter().map(Self::depacketizer).collect();
                            for track in &tracks {
                                // H.265 descriptions carry bare parameter sets: make the
                                // record players and the SDP builder expect.
                                let config = track.config.clone().or_else(|| {
                                    (track.codec == Some(Codec::H265))
                                        .then(|| hevc_record(&track.parameter_sets).ok())
                                        .flatten()
                                });
                                if let (Some(codec), Some(config), Some(kind)) =
                                    (track.codec, &config, track.track())
                                {
                                    let _ = stream.try_send(PublishFrame {
                                        frame: MediaFrame {
                                            track: kind,
                                            codec,
                                            kind: FrameKind::Config,
                                            dts: 0,
                                            pts: 0,
                                            keyframe: true,
                                            payload: config.clone(),
                                        },
                                    });
                                }
                            }
                            if let Some(active) = act.active.as_mut() {
                                active.stream = Some(stream);
                            }
                            if act.guarded(ctx, |core| core.accept(request)).is_some() {
                                act.pump(ctx);
                            }
                        }
                        Ok(Err(PublishRefused::AlreadyPublishing(key))) => {
                            let _s = act.span.clone().entered();
                            tracing::info!(stream = %key, "already published by another client");
                            drop(_s);
                            act.refuse(ctx, request, 403, "already published by another client");
                        }
                        Err(_) => act.refuse(ctx, request, 503, "the stream registry is gone"),
                    }
                }),
        );
    }

    /// The depacketizer of an announced track. A description with a track this server
    /// cannot carry is refused at ANNOUNCE (415), so every track here has one.
    fn depacketizer(track: &SdpTrack) -> Incoming {
        let depacketizer = match track.codec {
            Some(Codec::H264) => {
                Depacketizer::Video(Box::new(VideoDepacketizer::h264(track.config.clone())))
            }
            Some(Codec::H265) => Depacketizer::Video(Box::new(VideoDepacketizer::h265(
                track.parameter_sets.clone(),
            ))),
            Some(Codec::Aac) if track.encoding.eq_ignore_ascii_case("MP4A-LATM") => {
                // The description was refused unless its LATM config parses.
                let subframes = track.latm().map_or(1, |l| l.subframes);
                Depacketizer::Latm(LatmDepacketizer::new(track.clock_rate, subframes))
            }
            Some(Codec::Aac) => Depacketizer::Audio(AacDepacketizer::new(
                track.clock_rate,
                AuHeaderLayout::from_fmtp(track).unwrap_or(AuHeaderLayout::AAC_HBR),
            )),
            Some(Codec::Opus) => Depacketizer::Opus(OpusDepacketizer::new()),
            Some(Codec::Av1) => Depacketizer::Av1(Av1Depacketizer::new()),
            None => Depacketizer::Audio(AacDepacketizer::new(0, AuHeaderLayout::AAC_HBR)),
        };
        Incoming {
            depacketizer,
            link: None,
            hevc_config: None,
            hevc: track.codec == Some(Codec::H265),
            reorder: None,
            reorder_timer: false,
        }
    }

    fn ask_play(&mut self, ctx: &mut Context<Self>, request: RequestId, url: &str) {
        let Some((app, name)) = app_and_name(url) else {
            return self.refuse(ctx, request, 404, "URL names no app and stream");
        };
        self.record_app(&app);
        self.span.record("name", name.as_str());
        let info = self.info(&app, &name, url);
        let key = StreamKey::new(app, name);
        self.key = Some(key.clone());
        let asked = request_play(
            self.shared.clone(),
            info.clone(),
            key,
            Attach::Own {
                media: ctx.address().recipient(),
                ended: ctx.address().recipient(),
            },
        );
        ctx.wait(asked.into_actor(self).map(move |outcome, act, ctx| {
            let (stream, snapshot) = match outcome {
                PlayOutcome::Denied(decision) => {
                    act.log_decision("play", &decision);
                    return act.refuse(ctx, request, decision.deny_status(), "on_play refused");
                }
                PlayOutcome::NotFound => {
                    act.log_decision("play", &Decision::Allow);
                    act.active = Some(Active::begin(&act.shared, Role::Player, info, None));
                    return act.refuse(ctx, request, 404, "the stream is not live");
                }
                PlayOutcome::Playing(stream, snapshot, _) => (stream, snapshot),
            };
            act.log_decision("play", &Decision::Allow);
            act.active = Some(Active::begin(
                &act.shared,
                Role::Player,
                info,
                Some(stream.clone()),
            ));
            // Each config with its track, so a config RTSP cannot carry (multichannel Opus)
            // leaves its track out without shifting the others.
            let mut carried: Vec<(&MediaFrame, SdpTrack)> = Vec::new();
            for (i, f) in snapshot.configs.iter().enumerate() {
                match sdp::track_for_config(i, f.codec, &f.payload) {
                    Ok(t) => carried.push((f, t)),
                    Err(e) => {
                        let _s = act.span.clone().entered();
                        tracing::warn!(
                            track = ?f.track,
                            codec = ?f.codec,
                            error = %e,
                            "RTSP cannot carry this track; playing without it"
                        );
                    }
                }
            }
            let tracks: Vec<SdpTrack> = carried.iter().map(|(_, t)| t.clone()).collect();
            if tracks.is_empty() {
                let _s = act.span.clone().entered();
                drop(_s);
                return act.refuse(
                    ctx,
                    request,
                    404,
                    "the stream has no codec configuration yet",
                );
            }
            act.outgoing = carried
                .iter()
                .map(|(f, t)| Outgoing {
                    track: f.track,
                    codec: f.codec,
                    config: f.payload.clone(),
                    payload_type: t.payload_type,
                    ssrc: random_u32(),
                    link: None,
                    url: String::new(),
                    packetizer: None,
                })
                .collect();
            // Nothing is held for a client that has not asked to play: PLAY subscribes again
            // and starts from the stream's GOP of that moment.
            stream.do_send(Unsubscribe {
                clientid: act.clientid,
            });
            let host = act.peer_local_host();
            let description = sdp::build(&host, "streamgate", &tracks);
            if act
                .guarded(ctx, |core| core.accept_describe(request, description))
                .is_some()
            {
                act.pump(ctx);
            }
        }));
    }

    fn peer_local_host(&self) -> String {
        match self.peer.ip() {
            IpAddr::V4(_) => "0.0.0.0".into(),
            IpAddr::V6(_) => "::".into(),
        }
    }

    /// Chooses the server side of a SETUP: the client's channels, or a UDP port pair.
    fn setup(
        &mut self,
        ctx: &mut Context<Self>,
        track: Option<usize>,
        transport: ClientTransport,
    ) -> Result<ServerTransport, (u16, &'static str)> {
        let index = track.ok_or((404, "SETUP names no track of the stream"))?;
        let publishing = self
            .active
            .as_ref()
            .is_some_and(|a| a.role == Role::Publisher);
        let known = if publishing {
            index < self.incoming.len()
        } else {
            index < self.outgoing.len()
        };
        if !known {
            return Err((404, "SETUP names no track of the stream"));
        }
        // A track set up again gives its UDP pair back first: a client repeating SETUP must
        // not collect pairs.
        let old = if publishing {
            self.incoming[index].link.take()
        } else {
            self.outgoing[index].link.take()
        };
        if let Some(Link::Udp { readers, .. }) = old {
            for reader in readers {
                ctx.cancel_future(reader);
            }
        }
        let (link, server) = match transport.spec {
            TransportSpec::Interleaved(channels) => {
                let (rtp, rtcp) = channels.unwrap_or((2 * index as u8, 2 * index as u8 + 1));
                (
                    Link::Interleaved { rtp, rtcp },
                    ServerTransport::Interleaved {
                        channels: (rtp, rtcp),
                    },
                )
            }
            TransportSpec::Udp { client_port } => {
                let range = self.settings.rtp_ports;
                let Some(lease) = PairLease::take(self.peer.ip(), pairs_per_ip(range)) else {
                    let _s = self.span.clone().entered();
                    tracing::warn!(
                        limit = pairs_per_ip(range),
                        "this client address holds its share of RTP port pairs"
                    );
                    return Err((453, "this client address holds its share of RTP port pairs"));
                };
                let Some((rtp, rtcp, server_port)) = bind_pair(range) else {
                    let _s = self.span.clone().entered();
                    tracing::warn!(range = ?self.settings.rtp_ports, "no free RTP port pair");
                    return Err((453, "no free RTP port pair"));
                };
                let (rtp, rtcp) = (std::rc::Rc::new(rtp), std::rc::Rc::new(rtcp));
                let client_rtp = SocketAddr::new(self.peer.ip(), client_port.0);
                let client_rtcp = SocketAddr::new(self.peer.ip(), client_port.1);
                let mut readers = [SpawnHandle::default(); 2];
                for (reader, (socket, is_rtcp, source)) in readers.iter_mut().zip([
                    (rtp.clone(), false, client_rtp),
                    (rtcp.clone(), true, client_rtcp),
                ]) {
                    // Only the port the client announced for this socket may feed it: any
                    // other sender, even on the client's host, could inject media into the
                    // stream (or keep a player alive).
                    let datagrams =
                        UdpFramed::new(socket, BytesCodec::new()).filter_map(move |item| {
                            let datagram = item
                                .ok()
                                .filter(|(_, from)| same_source(*from, source))
                                .map(|(data, _)| Datagram {
                                    track: index,
                                    rtcp: is_rtcp,
                                    data: data.freeze(),
                                });
                            std::future::ready(datagram)
                        });
                    *reader = ctx.add_stream(datagrams);
                }
                (
                    Link::Udp {
                        rtp,
                        rtcp,
                        client_rtp,
                        client_rtcp,
                        readers,
                        _lease: lease,
                    },
                    ServerTransport::Udp {
                        client_port,
                        server_port,
                    },
                )
            }
        };
        if publishing {
            self.incoming[index].reorder = matches!(link, Link::Udp { .. }).then(Default::default);
            self.incoming[index].link = Some(link);
        } else {
            self.outgoing[index].link = Some(link);
        }
        Ok(server)
    }

    /// RTP or RTCP from a publisher, by interleaved channel.
    fn interleaved(&mut self, channel: u8, data: Bytes) {
        let found = self.incoming.iter().position(|t| {
            matches!(t.link, Some(Link::Interleaved { rtp, rtcp }) if rtp == channel || rtcp == channel)
        });
        if let Some(index) = found {
            let rtcp = matches!(self.incoming[index].link, Some(Link::Interleaved { rtcp, .. }) if rtcp == channel);
            self.ingest(index, rtcp, data);
        } else if self.phase == Phase::Playing {
            // A player's RTCP receiver reports: proof of life, nothing more.
            self.last_activity = Instant::now();
        }
    }

    /// One RTP or RTCP packet of publisher track `index`.
    fn ingest(&mut self, index: usize, rtcp: bool, data: Bytes) {
        self.last_activity = Instant::now();
        self.last_media = self.last_activity;
        let Some(stream) = self
            .active
            .as_ref()
            .filter(|a| a.role == Role::Publisher)
            .and_then(|a| a.stream.clone())
        else {
            return;
        };
        let Some(track) = self.incoming.get_mut(index) else {
            return;
        };
        if rtcp || is_rtcp(&data) {
            // Sender reports put every track on one timeline (RFC 3550 §6.4.1).
            for packet in parse_rtcp(&data).unwrap_or_default() {
                if let RtcpPacket::SenderReport { ntp, rtp_time, .. } = packet {
                    let wall = ntp_to_unix_micros(ntp);
                    let origin = *self.origin_micros.get_or_insert(wall);
                    track.depacketizer.anchor(rtp_time, wall - origin);
                }
            }
            return;
        }
        let Ok(packet) = RtpPacket::parse(data) else {
            return;
        };
        if let Some(reorder) = track.reorder.as_mut() {
            let mut ready = Vec::new();
            reorder.push(packet, self.last_activity, &mut ready);
            for packet in ready {
                self.depacketize(index, &stream, packet);
            }
            return;
        }
        self.depacketize(index, &stream, packet);
    }

    /// Gives up on the gap of publisher track `index`'s reorder buffer once its wait is over
    /// (the next packet would too, but may not come).
    fn arm_reorder_timer(&mut self, ctx: &mut Context<Self>, index: usize) {
        let Some(track) = self.incoming.get_mut(index).filter(|t| !t.reorder_timer) else {
            return;
        };
        let Some(deadline) = track.reorder.as_ref().and_then(ReorderBuffer::deadline) else {
            return;
        };
        track.reorder_timer = true;
        let wait = deadline.saturating_duration_since(Instant::now());
        ctx.run_later(wait, move |act, ctx| {
            let mut ready = Vec::new();
            if let Some(track) = act.incoming.get_mut(index) {
                track.reorder_timer = false;
                if let Some(reorder) = track.reorder.as_mut() {
                    reorder.release_expired(Instant::now(), &mut ready);
                }
            }
            let publisher = act.active.as_ref().filter(|a| a.role == Role::Publisher);
            if let Some(stream) = publisher.and_then(|a| a.stream.clone()) {
                for packet in ready {
                    act.depacketize(index, &stream, packet);
                }
            }
            act.arm_reorder_timer(ctx, index);
        });
    }

    /// One RTP packet of publisher track `index`, in sequence order, to its depacketizer.
    fn depacketize(
        &mut self,
        index: usize,
        stream: &Addr<streamgate_actors::stream::StreamActor>,
        packet: RtpPacket,
    ) {
        let Some(track) = self.incoming.get_mut(index) else {
            return;
        };
        if !track.depacketizer.push(&packet) {
            return;
        }
        while let Some(frame) = track.depacketizer.pop() {
            let config = track
                .hevc
                .then(|| in_band_hevc_config(&frame, &mut track.hevc_config))
                .flatten();
            for frame in config.into_iter().chain([frame]) {
                if stream.try_send(PublishFrame { frame }).is_ok() {
                    continue;
                }
                self.dropped_ingest += 1;
                if self.dropped_ingest.is_power_of_two() {
                    let _s = self.span.clone().entered();
                    tracing::warn!(
                        dropped = self.dropped_ingest,
                        "stream busy; dropping frames"
                    );
                }
            }
        }
    }

    /// PLAY: subscribes to the stream again (DESCRIBE let go of it) and, with its snapshot,
    /// makes the packetizers, answers with `RTP-Info` and sends the GOP. A stream that ended
    /// since DESCRIBE answers `404`.
    fn resume_play(&mut self, ctx: &mut Context<Self>, request: RequestId) {
        if self.phase == Phase::Playing {
            // A PLAY while playing: new RTP-Info, the media goes on as it was.
            let rtp_info = self.start_playing();
            if self
                .guarded(ctx, |core| core.accept_play(request, rtp_info))
                .is_some()
            {
                self.pump(ctx);
            }
            return;
        }
        let Some(stream) = self.active.as_ref().and_then(|a| a.stream.clone()) else {
            return self.refuse(ctx, request, 454, "PLAY in a session that has no stream");
        };
        let subscribed = stream.send(Subscribe {
            clientid: self.clientid,
            media: ctx.address().recipient(),
            ended: ctx.address().recipient(),
        });
        ctx.wait(subscribed.into_actor(self).map(move |snapshot, act, ctx| {
            let Ok(snapshot) = snapshot else {
                let _s = act.span.clone().entered();
                drop(_s);
                return act.refuse(ctx, request, 404, "the stream ended before PLAY");
            };
            for out in &mut act.outgoing {
                let newer = snapshot
                    .configs
                    .iter()
                    .find(|f| f.track == out.track && f.codec == out.codec);
                if let Some(config) = newer {
                    out.config = config.payload.clone();
                }
            }
            act.from_seq = snapshot.next_seq;
            act.snapshot = Some(snapshot);
            let rtp_info = act.start_playing();
            if act
                .guarded(ctx, |core| core.accept_play(request, rtp_info))
                .is_none()
            {
                return;
            }
            // A player a little behind still has its keep-alives and reports read.
            act.writer.set_read_limit(act.settings.player.queue_bytes);
            act.flush(ctx);
            act.send_reports(ctx);
            act.replay(ctx);
            act.pump(ctx);
        }));
    }

    /// Makes the packetizers for the tracks set up; returns the RTP-Info of PLAY.
    fn start_playing(&mut self) -> Vec<(String, u16, u32)> {
        let first = self
            .snapshot
            .as_ref()
            .and_then(|s| s.gop.first().map(|f| f.pts))
            .unwrap_or(0);
        let setups = self.core.setups().to_vec();
        let mut info = Vec::new();
        for (index, out) in self.outgoing.iter_mut().enumerate() {
            if out.link.is_none() {
                continue;
            }
            let sequence = random_u32() as u16;
            let rate = match out.codec {
                Codec::Aac => crate::protocol::codec::AacConfig::parse(&out.config)
                    .map_or(48_000, |c| c.sample_rate),
                Codec::Opus => OPUS_CLOCK_RATE,
                _ => 90_000,
            };
            let clock = RtpClock::new(rate, random_u32());
            let mut packetizer = match out.codec {
                Codec::H264 => Packetizer::Video(Box::new(VideoPacketizer::h264(
                    out.payload_type,
                    out.ssrc,
                    sequence,
                    clock,
                ))),
                Codec::H265 => Packetizer::Video(Box::new(VideoPacketizer::h265(
                    out.payload_type,
                    out.ssrc,
                    sequence,
                    clock,
                ))),
                Codec::Aac => Packetizer::Audio(AacPacketizer::new(
                    out.payload_type,
                    out.ssrc,
                    sequence,
                    clock,
                )),
                Codec::Opus => Packetizer::Opus(OpusPacketizer::new(
                    out.payload_type,
                    out.ssrc,
                    sequence,
                    clock,
                )),
                Codec::Av1 => {
                    let mut p = Av1Packetizer::new(out.payload_type, out.ssrc, sequence, clock);
                    let _ = p.set_config(&out.config);
                    Packetizer::Av1(p)
                }
            };
            if let Packetizer::Video(p) = &mut packetizer {
                let _ = p.set_config(&out.config);
            }
            out.url = setups
                .iter()
                .find(|s| s.track == Some(index))
                .map(|s| s.url.clone())
                .unwrap_or_default();
            info.push((out.url.clone(), sequence, clock.rtp_time(first)));
            out.packetizer = Some(packetizer);
        }
        self.phase = Phase::Playing;
        self.started = Some((Instant::now(), first));
        info
    }

    /// Sends the cached GOP of the snapshot PLAY took, paced (see [`JoinPacer`]): its first
    /// keyframe now, the rest as the pacer releases it.
    fn replay(&mut self, ctx: &mut Context<Self>) {
        let frames = self.snapshot.take().unwrap_or_default().gop;
        let mut due = Vec::new();
        self.pacer.start(frames, Instant::now(), &mut due);
        for frame in &due {
            self.send_frame(frame);
        }
        self.flush(ctx);
        self.arm_pacer(ctx);
    }

    /// Arms the timer for the pacer's next frames, unless one is armed. Live deliveries also
    /// release what is due, so the timer matters only between them: it waits at least
    /// [`PACE_TICK`], which bounds the timers of a paced player.
    fn arm_pacer(&mut self, ctx: &mut Context<Self>) {
        if self.pace_timer.is_some() {
            return;
        }
        let Some(due) = self.pacer.next_due() else {
            return;
        };
        let wait = due.saturating_duration_since(Instant::now()).max(PACE_TICK);
        self.pace_timer = Some(ctx.run_later(wait, |act, ctx| {
            act.pace_timer = None;
            let mut due = Vec::new();
            act.pacer.release(Instant::now(), &mut due);
            for frame in &due {
                act.send_frame(frame);
            }
            act.flush_as(ctx, true);
            act.arm_pacer(ctx);
        }));
    }

    /// Packetizes and sends one frame to every track of its kind that is set up.
    fn send_frame(&mut self, frame: &MediaFrame) {
        let mut packets = Vec::new();
        for out in &mut self.outgoing {
            if out.track != frame.track {
                continue;
            }
            let (Some(packetizer), Some(link)) = (out.packetizer.as_mut(), out.link.as_ref())
            else {
                continue;
            };
            packets.clear();
            packetizer.packetize(frame, &mut packets);
            for packet in &packets {
                match link {
                    Link::Interleaved { rtp, .. } => {
                        let _ = self.core.send_interleaved(*rtp, &[packet]);
                    }
                    Link::Udp {
                        rtp, client_rtp, ..
                    } => {
                        // A full socket buffer drops the packet: UDP players live with loss.
                        let _ = rtp.try_send_to(packet, *client_rtp);
                    }
                }
            }
        }
    }

    /// RTCP sender reports for every playing track: NTP now and the RTP time it maps to.
    fn send_reports(&mut self, ctx: &mut Context<Self>) {
        let Some((start, first)) = self.started else {
            return;
        };
        let media_now = first + start.elapsed().as_micros() as i64;
        let ntp = ntp_timestamp(unix_micros());
        for out in &self.outgoing {
            let (Some(packetizer), Some(link)) = (out.packetizer.as_ref(), out.link.as_ref())
            else {
                continue;
            };
            let (_, packets, octets) = packetizer.stats();
            let report = sender_report(
                out.ssrc,
                ntp,
                packetizer.clock().rtp_time(media_now),
                packets,
                octets,
                "streamgate",
            );
            match link {
                Link::Interleaved { rtcp, .. } => {
                    let _ = self.core.send_interleaved(*rtcp, &[&report]);
                }
                Link::Udp {
                    rtcp, client_rtcp, ..
                } => {
                    let _ = rtcp.try_send_to(&report, *client_rtcp);
                }
            }
        }
        self.flush(ctx);
    }

    /// Ends the allowed play or publish: leaves the stream and sends its one `on_done`.
    fn finish(&mut self, why: &str) {
        if let Some(active) = self.active.take() {
            let _s = self.span.clone().entered();
            active.finish(&self.shared, why);
        }
    }
}

impl Actor for RtspSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(SESSION_MAILBOX);
        let _s = self.span.clone().entered();
        tracing::info!("connection started");
        drop(_s);
        ctx.run_later(FIRST_REQUEST_DEADLINE, |act, ctx| {
            if !act.connected {
                let _s = act.span.clone().entered();
                tracing::info!("no accepted request in time; closing");
                ctx.stop();
            }
        });
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            let _s = act.span.clone().entered();
            let publishing = act
                .active
                .as_ref()
                .is_some_and(|a| a.role == Role::Publisher);
            if publishing || act.phase == Phase::Playing {
                act.inactive_since = Instant::now();
            }
            if act.last_activity.elapsed() > SESSION_TIMEOUT {
                tracing::info!("session timed out (no request, RTCP or media)");
                ctx.stop();
            } else if act.inactive_since.elapsed() > SESSION_TIMEOUT {
                // Requests alone (OPTIONS, DESCRIBE, GET_PARAMETER) do not hold a connection.
                tracing::info!("neither played nor published for too long; closing");
                ctx.stop();
            } else if publishing && act.last_media.elapsed() > PUBLISH_IDLE {
                // Nor do they hold a stream name for a publisher that sends no media.
                tracing::info!("publisher sent no media for too long; closing");
                ctx.stop();
            } else if act.backlog.output_gone(&act.writer) {
                ctx.stop();
            }
        });
        ctx.run_interval(SENDER_REPORT_EVERY, |act, ctx| {
            if act.phase == Phase::Playing {
                act.send_reports(ctx);
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.finish("connection closed");
        let _s = self.span.clone().entered();
        tracing::info!("connection stopped");
    }
}

impl StreamHandler<Result<BytesMut, std::io::Error>> for RtspSession {
    fn handle(&mut self, item: Result<BytesMut, std::io::Error>, ctx: &mut Self::Context) {
        let Some(bytes) = read_or_stop(item, &self.span, ctx) else {
            return;
        };
        self.last_activity = Instant::now();
        if self
            .guarded(ctx, |core| core.handle_input(&bytes))
            .is_some()
        {
            self.pump(ctx);
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        let _s = self.span.clone().entered();
        tracing::debug!("client closed the connection");
        ctx.stop();
    }
}

impl StreamHandler<Datagram> for RtspSession {
    fn handle(&mut self, item: Datagram, ctx: &mut Self::Context) {
        let publishing = self
            .active
            .as_ref()
            .is_some_and(|a| a.role == Role::Publisher);
        if publishing {
            self.ingest(item.track, item.rtcp, item.data);
            self.arm_reorder_timer(ctx, item.track);
        } else {
            self.last_activity = Instant::now();
        }
    }

    /// A UDP socket's stream ending must not end the session.
    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

impl Handler<Deliver> for RtspSession {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let Delivery::Frame(frame) = msg.item else {
            return;
        };
        // Before PLAY nothing is kept (deliveries still on their way after DESCRIBE let go);
        // after it, frames the snapshot already held are skipped.
        if self.phase != Phase::Playing || msg.seq < self.from_seq {
            return;
        }
        let _s = self.span.clone().entered();
        if !self.backlog.admit(&frame, self.writer.pending_bytes()) {
            return;
        }
        drop(_s);
        if self.pacer.is_done() {
            self.send_frame(&frame);
        } else {
            let mut due = Vec::new();
            self.pacer.push(frame, Instant::now(), &mut due);
            for frame in &due {
                self.send_frame(frame);
            }
            self.arm_pacer(ctx);
        }
        self.flush_as(ctx, true);
    }
}

impl Handler<StreamEnded> for RtspSession {
    type Result = ();

    fn handle(&mut self, msg: StreamEnded, ctx: &mut Self::Context) {
        let _s = self.span.clone().entered();
        tracing::info!(stream = %msg.key, "stream ended under the player");
        drop(_s);
        // What the pacer still holds is the end of the stream: it goes out before the close.
        let mut rest = Vec::new();
        self.pacer.finish(&mut rest);
        for frame in &rest {
            self.send_frame(frame);
        }
        self.flush(ctx);
        self.finish("stream ended");
        ctx.stop();
    }
}

impl Handler<Kick> for RtspSession {
    type Result = ();

    fn handle(&mut self, msg: Kick, ctx: &mut Self::Context) {
        let _s = self.span.clone().entered();
        tracing::info!(reason = msg.reason, "closing the publisher");
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::{app_and_name, pairs_per_ip, same_source, PairLease};

    #[test]
    fn udp_sources_match_address_and_port() {
        let expected: std::net::SocketAddr = "127.0.0.1:5000".parse().expect("an address");
        let mapped: std::net::SocketAddr = "[::ffff:127.0.0.1]:5000".parse().expect("an address");
        assert!(same_source(expected, expected));
        assert!(
            same_source(mapped, expected),
            "IPv4-mapped IPv6 is the same host"
        );
        assert!(!same_source(
            "127.0.0.1:5002".parse().expect("an address"),
            expected
        ));
        assert!(!same_source(
            "127.0.0.2:5000".parse().expect("an address"),
            expected
        ));
    }

    #[test]
    fn port_pairs_per_client_address_are_capped_and_given_back() {
        // The default range (500 pairs) and a test range of 50.
        assert_eq!(pairs_per_ip((20000, 20999)), 125);
        assert_eq!(pairs_per_ip((40000, 40099)), 12);
        assert_eq!(pairs_per_ip((40000, 40003)), 2);
        let ip: std::net::IpAddr = "192.0.2.77".parse().expect("an address");
        let other: std::net::IpAddr = "192.0.2.78".parse().expect("an address");
        let held: Vec<PairLease> = (0..3).filter_map(|_| PairLease::take(ip, 3)).collect();
        assert_eq!(held.len(), 3);
        assert!(
            PairLease::take(ip, 3).is_none(),
            "the address is at its cap"
        );
        let kept = PairLease::take(other, 3);
        assert!(kept.is_some(), "another address is not");
        drop(held);
        assert!(
            PairLease::take(ip, 3).is_some(),
            "dropped leases are given back"
        );
    }

    #[test]
    fn app_and_name_from_rtsp_urls() {
        assert_eq!(
            app_and_name("rtsp://h:8554/live/cam2?token=abc"),
            Some(("live".into(), "cam2".into()))
        );
        assert_eq!(
            app_and_name("rtsp://h/live/cam2/trackID=0"),
            Some(("live".into(), "cam2".into()))
        );
        assert_eq!(
            app_and_name("rtsp://h/a/b/cam"),
            Some(("a/b".into(), "cam".into()))
        );
        assert_eq!(app_and_name("rtsp://h/cam"), None);
        assert_eq!(app_and_name("rtsp://h"), None);
    }
}

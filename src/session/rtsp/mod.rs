//! [`RtspSession`]: the actor of one RTSP client connection, a thin shell over
//! [`crate::protocol::rtsp::RtspConnection`] (requests and answers) and
//! [`crate::protocol::rtsp::session`] (the RTP side: [`RtpPublish`], [`RtpPlay`]).
//!
//! Hooks: `on_connect` at the first request, `on_publish` at ANNOUNCE, `on_play` at DESCRIBE
//! (or at SETUP/PLAY when a client skips DESCRIBE), each asked while the actor waits, before
//! anything is answered. Publish: RTP from interleaved frames or UDP datagrams becomes frames
//! for the `StreamActor`. Play: DESCRIBE subscribes for the snapshot that gives the SDP and
//! unsubscribes at once: a client that describes and never plays holds no media. PLAY
//! joins the arbiter's fan-out group, sends that snapshot's GOP (paced, [`JoinPacer`]) and
//! becomes a member, which the group hands live frames (`feed`); RTP goes out interleaved
//! or by UDP ([`transport`]) with RTCP sender reports. UDP ports come from the listener's
//! RTP port range ([`ports`]). The client's input is read only while its
//! unwritten output is under a bound ([`Writer::gate`]), so requests pipelined without
//! reading the answers cost the server nothing past that bound.
//!
//! `on_done` is sent once per allowed play or publish (the [`SessionCore`]).

mod feed;
mod play;
pub mod ports;
mod publish;
pub mod transport;

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use bytes::BytesMut;
use streamgate_actors::session::{Protocol, SessionInfo};
use streamgate_actors::stream::Deliver;
use streamgate_actors::usage::EndReason;

use super::actor::{session_actor, Session};
use super::core::{request_connect, SessionCore};
use super::output::tcp::Writer;
use super::output::{Output, SendError};
use super::{tcp_input, ProtocolShell, TcpAccept, TcpParts};
use crate::protocol::pacing::JoinPacer;
use crate::protocol::rtsp::message::{ClientTransport, ServerTransport, TransportSpec};
use crate::protocol::rtsp::rtp::RtpHeader;
use crate::protocol::rtsp::session::{app_and_name, RtpPlay, RtpPublish};
use crate::protocol::rtsp::{Event, RequestId, RtspConnection, RtspError};
use feed::{Feed, SharedFeed};
use play::pace_epoch;
use ports::RtpPorts;
use transport::{Datagram, Link, PairRefused};

/// A session without any request, RTCP or media for this long is closed (RFC 2326 §12.37,
/// the `timeout` the server announces).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Time a client has from TCP accept to its first request.
pub const FIRST_REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How much faster than real time a joining player's cached GOP and the frames behind it are
/// sent until it has caught up with live frames (see [`JoinPacer`]).
const JOIN_SPEED: f64 = 1.0;
/// The step of the grid joining players' timelines are put on ([`JoinPacer::in_phase`]): the
/// most media a joining player gets at once behind its first keyframe.
const JOIN_PHASE: Duration = Duration::from_millis(100);
/// The shortest wait of the pacer's timer.
const PACE_TICK: Duration = Duration::from_millis(100);
/// How often a player gets RTCP sender reports.
const SENDER_REPORT_EVERY: Duration = Duration::from_secs(5);
/// An interleaved RTP packet's `$` framing (RFC 2326 §10.12) and RTP header: the part of a
/// packet that is the player's own.
const INTERLEAVED_HEAD: usize = 4 + RtpHeader::LEN;

/// A random 32-bit value (session ids, first RTP sequence numbers): the std hasher's keys are
/// random per instance.
fn random_u32() -> u32 {
    RandomState::new().hash_one(Instant::now()) as u32
}

/// A value of `stream`'s track `index` that every player of the stream in this process gets
/// (`what` tells the values of a track apart), random across processes: RTP's SSRC and clock
/// offset, which players of a worker must share to send the same packets
/// ([`RtpPlay::start`]).
fn stream_u32(
    stream: &Addr<streamgate_actors::stream::StreamActor>,
    index: usize,
    what: u8,
) -> u32 {
    static KEYS: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    KEYS.get_or_init(RandomState::new)
        .hash_one((stream, index, what)) as u32
}

fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// One RTSP client connection.
pub struct RtspSession {
    core: SessionCore,
    rtsp: RtspConnection,
    writer: Rc<Writer>,
    /// The listener's UDP port pairs.
    ports: Option<Arc<RtpPorts>>,
    connected: bool,
    app_recorded: bool,
    last_activity: Instant,
    /// Since when the session has neither played nor published (see the timer).
    inactive_since: Instant,
    // publish
    publish: RtpPublish,
    links_in: Vec<Option<Link>>,
    /// A timer releasing a gap of the track's reorder buffer is pending.
    reorder_timers: Vec<bool>,
    // play
    /// The packetizers, where their RTP goes and the pacer: shared with the session's member
    /// of its arbiter's fan-out group once it plays.
    feed: SharedFeed,
    links_out: Vec<Option<Link>>,
    /// The timer that releases the pacer's next frames.
    pace_timer: Option<SpawnHandle>,
}

impl RtspSession {
    /// Starts the session actor for an accepted socket on the current arbiter.
    pub fn start(accepted: TcpAccept) -> Addr<Self> {
        let TcpParts {
            core,
            read,
            writer,
            settings,
            ..
        } = accepted.open(Protocol::Rtsp);
        let input = writer.gate(super::reader(read));
        let session_id = format!("{:08X}{:08X}", random_u32(), core.clientid as u32);
        let queue_bytes = settings.player.queue_bytes;
        RtspSession::create(move |ctx| {
            ctx.add_stream(input);
            RtspSession {
                core,
                rtsp: RtspConnection::new(session_id),
                writer: Rc::new(writer),
                ports: settings.rtp_ports,
                connected: false,
                app_recorded: false,
                last_activity: Instant::now(),
                inactive_since: Instant::now(),
                publish: RtpPublish::new(&[]),
                links_in: Vec::new(),
                reorder_timers: Vec::new(),
                feed: Rc::new(RefCell::new(Feed::new(
                    RtpPlay::describe(&[], random_u32).0,
                    JoinPacer::new(JOIN_SPEED, queue_bytes).in_phase(pace_epoch(), JOIN_PHASE),
                ))),
                links_out: Vec::new(),
                pace_timer: None,
            }
        })
    }

    /// Whether PLAY started.
    fn playing(&self) -> bool {
        self.feed.borrow().play.is_playing()
    }

    /// A read from the client: any request keeps the session alive.
    fn input(&mut self, bytes: BytesMut, ctx: &mut Context<Self>) {
        self.last_activity = Instant::now();
        self.feed(ctx, &bytes);
    }

    /// [`Self::flush`], with the output written at once or (`merged`, live media) within
    /// the merge window.
    fn flush_as(&mut self, ctx: &mut Context<Self>, merged: bool) {
        if let Some(bytes) = self.rtsp.take_output() {
            let sent = if merged {
                self.writer.send_merged(bytes)
            } else {
                self.writer.send(bytes)
            };
            if !self.sent(ctx, sent, merged) {
                return;
            }
        }
        let sent = self.feed.borrow_mut().flush(&self.writer, merged);
        self.sent(ctx, sent, merged);
        if self.rtsp.is_finished() {
            ctx.stop();
        }
    }

    /// What a queued write's outcome means: a player's live media that does not fit drops to
    /// the next keyframe; anything else that does not fit, or a closed output, ends the session.
    /// False when the session ends.
    fn sent(&mut self, ctx: &mut Context<Self>, sent: Result<(), SendError>, merged: bool) -> bool {
        match sent {
            Ok(()) => return true,
            Err(SendError::Full) if merged => {
                // Answers sent with live media (the feed notes its own): the player's member
                // drops to the next keyframe.
                self.feed.borrow_mut().overflowed();
                return true;
            }
            Err(SendError::Full) => {
                // Answers (or a replay) that do not fit: the client is not reading.
                let _s = self.core.enter();
                tracing::info!("client not reading its answers; closing");
                drop(_s);
                self.core.send_failed(SendError::Full);
                ctx.stop();
            }
            Err(SendError::Closed) => {
                self.core.send_failed(SendError::Closed);
                ctx.stop();
            }
        }
        false
    }

    /// Puts the app in the connection's span once (a field recorded twice is logged twice).
    fn record_app(&mut self, app: &str) {
        if !self.app_recorded && !app.is_empty() {
            self.app_recorded = true;
            self.core.span.record("app", app);
        }
    }

    /// Logs an error answer the session chose (the core reports its own as `Event::Refused`).
    fn log_refusal(&self, method: &str, status: u16, reason: &str) {
        let _s = self.core.enter();
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
        // A refusal of an allowed play or publish: the server could not serve it.
        if self.core.active().is_some() {
            self.core.ending(EndReason::Refused);
        }
        if self
            .guarded(ctx, |rtsp| rtsp.refuse(request, status))
            .is_some()
        {
            self.flush(ctx);
        }
    }

    /// The hook fields of a publish or play of `url`, which name its app and stream (recorded
    /// in the span); `None` when the URL names no app and stream.
    fn stream_request(&mut self, url: &str) -> Option<SessionInfo> {
        let (app, name) = app_and_name(url)?;
        self.record_app(&app);
        self.core.span.record("name", name.as_str());
        Some(self.core.info(&app, &name, url, ""))
    }

    fn ask_connect(&mut self, ctx: &mut Context<Self>, request: RequestId, url: &str) {
        // The first request usually names the stream (ffmpeg's OPTIONS does): its app goes
        // with on_connect, as RTMP's connect carries one.
        let app = app_and_name(url).map(|(app, _)| app).unwrap_or_default();
        self.record_app(&app);
        let info = self.core.info(&app, "", url, "");
        let asked = request_connect(&self.core.context, info);
        ctx.wait(asked.into_actor(self).map(move |decision, act, ctx| {
            act.core.log_decision("connect", &decision);
            if decision.is_allow() {
                act.connected = true;
                if act.guarded(ctx, |rtsp| rtsp.accept(request)).is_some() {
                    act.pump(ctx);
                }
            } else {
                act.refuse(ctx, request, decision.deny_status(), "on_connect refused");
            }
        }));
    }

    /// Chooses the server side of a SETUP: the client's channels, or a UDP port pair.
    fn setup(
        &mut self,
        ctx: &mut Context<Self>,
        track: Option<usize>,
        transport: ClientTransport,
    ) -> Result<ServerTransport, (u16, &'static str)> {
        const NO_TRACK: (u16, &str) = (404, "SETUP names no track of the stream");
        let index = track.ok_or(NO_TRACK)?;
        let publishing = self.core.is_publisher();
        let links = if publishing {
            &mut self.links_in
        } else {
            &mut self.links_out
        };
        // A track set up again gives its UDP pair back first: a client repeating SETUP must
        // not collect pairs.
        let old = links.get_mut(index).ok_or(NO_TRACK)?.take();
        if let Some(Link::Udp { readers, .. }) = old {
            for reader in readers {
                ctx.cancel_future(reader);
            }
        }
        let (link, server) = match transport.spec {
            TransportSpec::Interleaved(channels) => {
                let (rtp, rtcp) = channels.unwrap_or((2 * index as u8, 2 * index as u8 + 1));
                let server = ServerTransport::Interleaved {
                    channels: (rtp, rtcp),
                };
                (Link::Interleaved { rtp, rtcp }, server)
            }
            TransportSpec::Udp { client_port } => {
                let ports = self.ports.clone().ok_or((461, "no RTP port range"))?;
                let written = self
                    .core
                    .usage
                    .counter(crate::session::core::Count::BytesOut);
                let pair =
                    transport::udp_pair(ctx, &ports, self.core.peer, index, client_port, &written);
                let (link, server_port) = pair.map_err(|refused| {
                    let _s = self.core.enter();
                    match refused {
                        PairRefused::Share(limit) => {
                            tracing::warn!(
                                limit,
                                "this client address holds its share of RTP port pairs"
                            );
                            (453, "this client address holds its share of RTP port pairs")
                        }
                        PairRefused::Exhausted => {
                            tracing::warn!(range = ?ports.range(), "no free RTP port pair");
                            (453, "no free RTP port pair")
                        }
                    }
                })?;
                let server = ServerTransport::Udp {
                    client_port,
                    server_port,
                };
                (link, server)
            }
        };
        if publishing {
            let udp = matches!(link, Link::Udp { .. });
            self.publish.set_reordering(index, udp);
            self.links_in[index] = Some(link);
        } else {
            self.links_out[index] = Some(link);
            // A track set up again while playing sends on its new link from now on.
            if self.playing() {
                self.update_outs();
            }
        }
        Ok(server)
    }

    /// Ends the allowed play or publish: leaves the stream and sends its one `on_done`.
    fn finish(&mut self, reason: EndReason) {
        self.core.finish(reason);
    }
}

impl Session for RtspSession {
    fn parts(&mut self) -> (&mut SessionCore, Option<&dyn Output>) {
        (&mut self.core, Some(&*self.writer))
    }

    fn first_request_done(&self) -> bool {
        self.connected
    }

    fn starting(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(SENDER_REPORT_EVERY, |act, ctx| {
            if act.playing() {
                act.send_reports(ctx);
            }
        });
    }

    /// RTSP's session timeout (RFC 2326 §12.37), and requests alone (OPTIONS, DESCRIBE,
    /// GET_PARAMETER) not holding a connection.
    fn check(&mut self) -> Option<(EndReason, &'static str)> {
        if self.core.is_publisher() || self.playing() {
            self.inactive_since = Instant::now();
        }
        if self.last_activity.elapsed() > SESSION_TIMEOUT {
            Some((
                EndReason::Lost,
                "session timed out (no request, RTCP or media)",
            ))
        } else if self.inactive_since.elapsed() > SESSION_TIMEOUT {
            Some((EndReason::Idle, "neither played nor published for too long"))
        } else {
            None
        }
    }

    /// What the pacer still holds is the end of the stream: it goes out before the close.
    fn stream_ending(&mut self, ctx: &mut Context<Self>) {
        self.feed.borrow_mut().finish();
        self.flush(ctx);
    }
}

session_actor!(RtspSession, Some(FIRST_REQUEST_DEADLINE));
crate::session::fanout::group_member!(RtspSession);
tcp_input!(RtspSession);

impl ProtocolShell for RtspSession {
    type Protocol = RtspConnection;
    type Error = RtspError;

    fn protocol(&mut self) -> (&mut RtspConnection, &tracing::Span) {
        (&mut self.rtsp, &self.core.span)
    }

    /// Sends queued output; a refused or finished connection is closed after it.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.flush_as(ctx, false);
    }

    fn handle_input(rtsp: &mut RtspConnection, bytes: &[u8]) -> Result<(), RtspError> {
        rtsp.handle_input(bytes)
    }

    /// Drains the core's events; a request suspends the actor until its decision.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.flush(ctx);
        while let Some(event) = self.rtsp.poll_event() {
            match event {
                Event::Connect { request, url } => return self.ask_connect(ctx, request, &url),
                event @ Event::PublishRequested { .. } => return self.ask_publish(ctx, event),
                Event::PlayRequested { request, url } => return self.ask_play(ctx, request, &url),
                Event::SetupRequested {
                    request,
                    track,
                    transport,
                    ..
                } => {
                    let ok = match self.setup(ctx, track, transport) {
                        Ok(server) => self.guarded(ctx, |rtsp| rtsp.accept_setup(request, server)),
                        Err((status, reason)) => {
                            self.log_refusal("SETUP", status, reason);
                            self.guarded(ctx, |rtsp| rtsp.refuse(request, status))
                        }
                    };
                    if ok.is_none() {
                        return;
                    }
                    self.flush(ctx);
                }
                Event::RecordStarted => {
                    let _s = self.core.enter();
                    tracing::info!(tracks = self.publish.len(), "recording");
                }
                Event::PlayStarted { request, .. } => {
                    self.resume_play(ctx, request);
                    return;
                }
                Event::Teardown => {
                    self.finish(EndReason::Closed);
                    self.flush(ctx);
                }
                Event::Interleaved { channel, data } => self.interleaved(channel, data),
                Event::Refused {
                    method,
                    url,
                    status,
                    reason,
                } => {
                    let _s = self.core.enter();
                    tracing::info!(%method, %url, status, %reason, "request refused");
                }
            }
        }
        self.flush(ctx);
    }
}

impl StreamHandler<Datagram> for RtspSession {
    fn handle(&mut self, item: Datagram, ctx: &mut Self::Context) {
        self.core.received(item.data.len());
        if self.core.is_publisher() {
            self.ingest(item.track, item.rtcp, item.data);
            self.arm_reorder_timer(ctx, item.track);
        } else {
            self.last_activity = Instant::now();
        }
    }

    /// A UDP socket's stream ending must not end the session.
    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

/// A player's live frames come through its arbiter's fan-out group
/// ([`feed::RtspFrames`]); what reaches the session itself is metadata (nothing to RTSP)
/// and what its DESCRIBE's subscription still had on its way.
impl Handler<Deliver> for RtspSession {
    type Result = ();

    fn handle(&mut self, _: Deliver, _: &mut Self::Context) {}
}

//! [`RtmpSession`]: the actor of one RTMP client connection, a thin shell over
//! [`crate::protocol::rtmp::ServerConnection`].
//!
//! It reads the socket, feeds the core, and drains every event and output after each input.
//! `connect`, `publish` and `play` are put to the `NotifyActor` while the actor waits
//! (`ctx.wait`): no further input is read and nothing is answered before the decision. A
//! publisher's frames go to its `StreamActor` with `try_send`; a player's frames arrive as
//! `Deliver` messages and are written behind the drop policy. `on_done` is sent from
//! [`Actor::stopped`] or when the client closes the stream, whichever comes first, once.
//!
//! A panic in the protocol core is caught here and ends this connection only.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use streamgate_actors::media::{MediaFrame, StreamKey, Track};
use streamgate_actors::notify::{self, Decision};
use streamgate_actors::registry::{ClaimPublish, PublishRefused};
use streamgate_actors::session::{next_client_id, ClientId, Protocol, SessionInfo};
use streamgate_actors::stream::{
    Deliver, Delivery, Kick, PublishFrame, PublishMetadata, Snapshot, StreamActor, StreamEnded,
};
use tokio::net::TcpStream;
use tracing::field::Empty;

use super::fanout::{Encode, Member, Membership};
use super::writer::{WriteError, Writer};
use super::{
    ask, guard, read_or_stop, request_play, shared_encoding, Active, Attach, Backlog, CoreFailure,
    PlayOutcome, PlayerLimits, Role, SessionContext, SessionSettings,
};
use crate::limits::Admission;
use crate::protocol::flv;
use crate::protocol::rtmp::{
    encode_media, Event, MediaKind, Rejection, RequestId, ServerConnection,
};
use crate::protocol::url::{split_query, stream_url};

/// Mailbox capacity of a session: live frames waiting to be written.
pub const SESSION_MAILBOX: usize = 1024;
/// Time a client has from TCP accept to an accepted `connect`.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(15);
/// A publisher that sends nothing for this long is dropped.
pub const PUBLISH_IDLE: Duration = Duration::from_secs(30);
/// A connected client that has neither played nor published for this long (since its
/// `connect` was accepted, or since its last play or publish ended) is dropped: whatever else
/// it sends meanwhile (pings, commands) does not keep it.
pub const INACTIVE_DEADLINE: Duration = Duration::from_secs(30);

/// `frame` as RTMP chunks on `stream_id`: encoded by the first player on this arbiter with
/// the same chunk size and stream id, shared by the others.
fn rtmp_chunks(chunk_size: u32, stream_id: u32, frame: &MediaFrame) -> Option<Bytes> {
    let (header, len) = flv::tag_header(frame)?;
    let kind = match frame.track {
        Track::Video => MediaKind::Video,
        Track::Audio => MediaKind::Audio,
    };
    let form = (u64::from(chunk_size) << 32) | u64::from(stream_id);
    Some(shared_encoding(frame, form, |out| {
        encode_media(
            out,
            chunk_size,
            stream_id,
            kind,
            flv::timestamp_ms(frame),
            &[&header[..len], &frame.payload],
        )
    }))
}

/// A player's frames in its connection's chunk size, on its message stream.
struct RtmpChunks {
    chunk_size: u32,
    stream_id: u32,
}

impl Encode for RtmpChunks {
    fn encode(&self, frame: &MediaFrame) -> Option<Bytes> {
        rtmp_chunks(self.chunk_size, self.stream_id, frame)
    }
}

/// One RTMP client connection.
pub struct RtmpSession {
    /// Its place within the section's connection limits, given back when the session ends.
    _admission: Admission,
    core: ServerConnection,
    writer: Rc<Writer>,
    peer: SocketAddr,
    clientid: ClientId,
    shared: SessionContext,
    span: tracing::Span,
    app: String,
    tcurl: String,
    connected: bool,
    /// The allowed play or publish, and the RTMP message stream it runs on.
    active: Option<Active>,
    active_stream_id: u32,
    /// A player's stall check (its drop policy is its [`Member`]'s).
    backlog: Backlog,
    limits: PlayerLimits,
    /// A player's place in its arbiter's fan-out group.
    membership: Option<Membership>,
    last_input: Instant,
    /// Since when the connected session has had no play or publish.
    inactive_since: Instant,
    reported_unsupported: bool,
    dropped_ingest: u64,
}

impl RtmpSession {
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
            protocol = "rtmp",
            app = Empty,
            name = Empty
        );
        let (read, write) = socket.into_split();
        let writer = Rc::new(Writer::spawn(write, span.clone(), settings.write_merge));
        RtmpSession::create(move |ctx| {
            // Input is read only while the answers to it are being taken (Writer::gate).
            ctx.add_stream(writer.gate(super::reader(read)));
            RtmpSession {
                _admission: admission,
                core: ServerConnection::new(),
                writer,
                peer,
                clientid,
                shared,
                span,
                app: String::new(),
                tcurl: String::new(),
                connected: false,
                active: None,
                active_stream_id: 0,
                backlog: Backlog::new(settings.player),
                limits: settings.player,
                membership: None,
                last_input: Instant::now(),
                inactive_since: Instant::now(),
                reported_unsupported: false,
                dropped_ingest: 0,
            }
        })
    }

    fn info(&self, name: &str, url: String) -> SessionInfo {
        SessionInfo {
            protocol: Protocol::Rtmp,
            clientid: self.clientid,
            addr: self.peer.ip(),
            app: self.app.clone(),
            url,
            name: name.to_owned(),
            tcurl: self.tcurl.clone(),
        }
    }

    /// Sends queued output. A peer whose queue is full or gone loses its connection.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if let Some(bytes) = self.core.take_output() {
            if let Err(e) = self.writer.send(bytes) {
                let _s = self.span.clone().entered();
                tracing::info!(error = %e, "client not reading; closing");
                ctx.stop();
            }
        }
    }

    /// Runs a core call with panics contained; any failure ends this connection.
    fn guarded<T>(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut ServerConnection) -> Result<T, crate::protocol::rtmp::RtmpError>,
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

    /// Drains every event the core has; stops at a request, which suspends the actor until
    /// its decision is applied (and then drains again).
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.flush(ctx);
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::ConnectRequested {
                    request,
                    app,
                    tcurl,
                } => {
                    self.app = split_query(&app).0.to_owned();
                    self.tcurl = tcurl;
                    self.span.record("app", self.app.as_str());
                    let info = self.info("", self.tcurl.clone());
                    self.ask_connect(ctx, request, info);
                    return;
                }
                Event::PublishRequested {
                    request,
                    stream_id,
                    stream_name,
                } => {
                    self.ask_publish(ctx, request, stream_id, &stream_name);
                    return;
                }
                Event::PlayRequested {
                    request,
                    stream_id,
                    stream_name,
                } => {
                    self.ask_play(ctx, request, stream_id, &stream_name);
                    return;
                }
                Event::Metadata { properties } => {
                    if let Some(stream) = self.publishing_stream() {
                        stream.do_send(PublishMetadata {
                            metadata: flv::metadata_from_amf(properties),
                        });
                    }
                }
                Event::Media {
                    kind,
                    timestamp,
                    data,
                } => self.ingest(kind, timestamp, data),
                Event::StreamClosed { stream_id } => {
                    if self.active.is_some() && self.active_stream_id == stream_id {
                        self.finish("client closed the stream");
                    }
                }
            }
        }
    }

    fn publishing_stream(&self) -> Option<&Addr<StreamActor>> {
        self.active
            .as_ref()
            .filter(|a| a.role == Role::Publisher)
            .and_then(|a| a.stream.as_ref())
    }

    fn ingest(&mut self, kind: MediaKind, timestamp: u32, data: bytes::Bytes) {
        let Some(stream) = self.publishing_stream() else {
            return;
        };
        let frame = match kind {
            MediaKind::Video => flv::video_frame(timestamp, &data),
            MediaKind::Audio => flv::audio_frame(timestamp, &data),
        };
        match frame {
            Ok(Some(frame)) => {
                if stream.try_send(PublishFrame { frame }).is_err() {
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
            Ok(None) => {}
            Err(e) => {
                if !self.reported_unsupported {
                    self.reported_unsupported = true;
                    let _s = self.span.clone().entered();
                    tracing::warn!(error = %e, "dropping media this server cannot carry");
                }
            }
        }
    }

    /// Applies a refusal: answer in RTMP's words, then close.
    fn refuse(&mut self, ctx: &mut Context<Self>, request: RequestId, why: Rejection) {
        if self
            .guarded(ctx, |core| core.reject(request, why))
            .is_some()
        {
            self.flush(ctx);
            ctx.stop();
        }
    }

    fn decision_log(&self, call: &str, decision: &Decision) {
        let _s = self.span.clone().entered();
        match decision {
            Decision::Allow => tracing::info!(call, "allowed"),
            Decision::Deny(reason) => tracing::info!(call, ?reason, "refused"),
        }
    }

    fn ask_connect(&mut self, ctx: &mut Context<Self>, request: RequestId, info: SessionInfo) {
        let asked = ask(self.shared.notify.send(notify::Connect { info }));
        ctx.wait(asked.into_actor(self).map(move |decision, act, ctx| {
            act.decision_log("connect", &decision);
            if decision.is_allow() {
                act.connected = true;
                act.inactive_since = Instant::now();
                if act.guarded(ctx, |core| core.accept(request)).is_some() {
                    act.pump(ctx);
                }
            } else {
                act.refuse(ctx, request, Rejection::Unauthorized);
            }
        }));
    }

    fn ask_publish(
        &mut self,
        ctx: &mut Context<Self>,
        request: RequestId,
        stream_id: u32,
        stream_name: &str,
    ) {
        let name = split_query(stream_name).0.to_owned();
        self.span.record("name", name.as_str());
        let info = self.info(&name, stream_url(&self.tcurl, stream_name));
        if name.is_empty() {
            self.refuse(ctx, request, Rejection::NotFound);
            return;
        }
        let key = StreamKey::new(self.app.clone(), name);
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
                    act.decision_log("publish", &decision);
                    let Some(claim) = claim else {
                        act.refuse(ctx, request, Rejection::Unauthorized);
                        return;
                    };
                    // The hook allowed this publish: from here on exactly one on_done is owed.
                    act.begin(Role::Publisher, info, stream_id, None);
                    match claim {
                        Ok(Ok(stream)) => {
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
                            act.refuse(ctx, request, Rejection::AlreadyPublishing);
                        }
                        Err(_) => act.refuse(ctx, request, Rejection::Unavailable),
                    }
                }),
        );
    }

    fn ask_play(
        &mut self,
        ctx: &mut Context<Self>,
        request: RequestId,
        stream_id: u32,
        stream_name: &str,
    ) {
        let name = split_query(stream_name).0.to_owned();
        self.span.record("name", name.as_str());
        let info = self.info(&name, stream_url(&self.tcurl, stream_name));
        let key = StreamKey::new(self.app.clone(), name);
        let asked = request_play(self.shared.clone(), info.clone(), key, Attach::Shared);
        ctx.wait(asked.into_actor(self).map(move |outcome, act, ctx| {
            let (snapshot, joining) = match outcome {
                PlayOutcome::Denied(decision) => {
                    act.decision_log("play", &decision);
                    act.refuse(ctx, request, Rejection::Unauthorized);
                    return;
                }
                PlayOutcome::NotFound => {
                    act.decision_log("play", &Decision::Allow);
                    act.begin(Role::Player, info, stream_id, None);
                    let _s = act.span.clone().entered();
                    tracing::info!("no such stream");
                    drop(_s);
                    act.refuse(ctx, request, Rejection::NotFound);
                    return;
                }
                PlayOutcome::Playing(_, snapshot, joining) => (snapshot, joining),
            };
            act.decision_log("play", &Decision::Allow);
            // Attached through the arbiter's group: leaving it is the membership's drop.
            act.begin(Role::Player, info, stream_id, None);
            if act.guarded(ctx, |core| core.accept(request)).is_none() {
                return;
            }
            let from_seq = snapshot.next_seq;
            act.replay(ctx, stream_id, snapshot);
            if let Some(joining) = joining {
                let member = Member::new(
                    act.writer.clone(),
                    Backlog::new(act.limits).in_span(act.span.clone()),
                    Box::new(RtmpChunks {
                        chunk_size: act.core.out_chunk_size(),
                        stream_id,
                    }),
                    from_seq,
                    ctx.address().recipient(),
                    ctx.address().recipient(),
                );
                act.membership = Some(joining.activate(member));
            }
            act.pump(ctx);
        }));
    }

    /// Writes what a joining player needs first, at once: the core's answers and metadata,
    /// then the codec configs and the cached GOP in the encodings this arbiter's players share.
    fn replay(&mut self, ctx: &mut Context<Self>, stream_id: u32, snapshot: Snapshot) {
        let (has_audio, has_video, left_out) =
            super::flv_tracks(&self.span, "RTMP", &snapshot.configs);
        let tracks = flv::single_carried_track(
            has_audio,
            has_video,
            &left_out,
            snapshot.metadata.as_deref(),
        )
        .and_then(|(audio, video)| flv::single_track_properties(audio, video));
        if let Some(metadata) = snapshot.metadata {
            self.core
                .send_metadata(stream_id, flv::metadata_to_amf(&metadata));
        }
        self.flush(ctx);
        for (i, frame) in snapshot
            .configs
            .iter()
            .chain(snapshot.gop.iter())
            .enumerate()
        {
            if i == snapshot.configs.len() {
                // After the configs, so that the player's first track exists when it reads
                // this (see `flv::single_track_properties`).
                if let Some(properties) = &tracks {
                    self.core.send_metadata(stream_id, properties.clone());
                    self.flush(ctx);
                }
            }
            let Some(bytes) = rtmp_chunks(self.core.out_chunk_size(), stream_id, frame) else {
                continue;
            };
            if let Err(e) = self.writer.send(bytes) {
                let _s = self.span.clone().entered();
                tracing::info!(error = %e, "client not reading; closing");
                ctx.stop();
                return;
            }
        }
        if snapshot.gop.is_empty() {
            if let Some(properties) = tracks {
                self.core.send_metadata(stream_id, properties);
                self.flush(ctx);
            }
        }
    }

    fn begin(
        &mut self,
        role: Role,
        info: SessionInfo,
        stream_id: u32,
        stream: Option<Addr<StreamActor>>,
    ) {
        if role == Role::Player {
            // A player's output is media: a backlog up to its queue still has its acks read.
            self.writer.set_read_limit(self.limits.queue_bytes);
        }
        self.active = Some(Active::begin(&self.shared, role, info, stream));
        self.active_stream_id = stream_id;
    }

    /// Ends the active play or publish: leaves the stream and sends its one `on_done`.
    fn finish(&mut self, why: &str) {
        self.membership = None;
        if let Some(active) = self.active.take() {
            self.inactive_since = Instant::now();
            let _s = self.span.clone().entered();
            active.finish(&self.shared, why);
        }
    }
}

impl Actor for RtmpSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(SESSION_MAILBOX);
        let _s = self.span.clone().entered();
        tracing::info!("connection started");
        drop(_s);
        ctx.run_later(CONNECT_DEADLINE, |act, ctx| {
            if !act.connected {
                let _s = act.span.clone().entered();
                tracing::info!("no accepted connect in time; closing");
                ctx.stop();
            }
        });
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            let _s = act.span.clone().entered();
            let publishing = act
                .active
                .as_ref()
                .is_some_and(|a| a.role == Role::Publisher);
            if publishing && act.last_input.elapsed() > PUBLISH_IDLE {
                tracing::info!("publisher sent nothing for too long; closing");
                ctx.stop();
            }
            if act.connected
                && act.active.is_none()
                && act.inactive_since.elapsed() > INACTIVE_DEADLINE
            {
                tracing::info!("neither played nor published for too long; closing");
                ctx.stop();
            }
            if act.backlog.output_gone(&act.writer) {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.finish("connection closed");
        let _s = self.span.clone().entered();
        tracing::info!("connection stopped");
    }
}

impl StreamHandler<Result<BytesMut, std::io::Error>> for RtmpSession {
    fn handle(&mut self, item: Result<BytesMut, std::io::Error>, ctx: &mut Self::Context) {
        let Some(bytes) = read_or_stop(item, &self.span, ctx) else {
            return;
        };
        self.last_input = Instant::now();
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

/// Metadata from the player's fan-out group; its frames are written by the group.
impl Handler<Deliver> for RtmpSession {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        if !self.active.as_ref().is_some_and(|a| a.role == Role::Player) {
            return;
        }
        let Delivery::Metadata(metadata) = msg.item else {
            return;
        };
        self.core
            .send_metadata(self.active_stream_id, flv::metadata_to_amf(&metadata));
        if let Some(bytes) = self.core.take_output() {
            // Behind the frames already queued, like the metadata was behind them.
            if self.writer.send_merged(bytes) == Err(WriteError::Closed) {
                ctx.stop();
            }
        }
    }
}

impl Handler<StreamEnded> for RtmpSession {
    type Result = ();

    fn handle(&mut self, msg: StreamEnded, ctx: &mut Self::Context) {
        if self.active.as_ref().is_some_and(|a| a.role == Role::Player) {
            let stream_id = self.active_stream_id;
            self.core.end_of_stream(stream_id);
            self.flush(ctx);
            let _s = self.span.clone().entered();
            tracing::info!(stream = %msg.key, "stream ended under the player");
            drop(_s);
            self.finish("stream ended");
            ctx.stop();
        }
    }
}

impl Handler<Kick> for RtmpSession {
    type Result = ();

    fn handle(&mut self, msg: Kick, ctx: &mut Self::Context) {
        let _s = self.span.clone().entered();
        tracing::info!(reason = msg.reason, "closing the publisher");
        ctx.stop();
    }
}

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

use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use streamgate_actors::media::{MediaFrame, Track};
use streamgate_actors::notify::Decision;
use streamgate_actors::session::{Protocol, SessionInfo};
use streamgate_actors::stream::{Deliver, Delivery, Kick, Snapshot};
use streamgate_actors::usage::EndReason;

use super::actor::{session_actor, Session};
use super::arbiter::cached_encoding;
use super::core::{
    request_connect, request_play, request_publish, Allowed, Attach, PlayOutcome, PublishAnswer,
    Role, SessionCore,
};
use super::fanout::Frames;
use super::output::tcp::Writer;
use super::output::{Output, SendError};
use super::{tcp_input, ProtocolShell, TcpAccept, TcpParts};
use crate::protocol::flv;
use crate::protocol::rtmp::{
    encode_media, Event, MediaKind, Rejection, RequestId, ServerConnection,
};
use crate::protocol::url::{split_query, stream_url};

/// Time a client has from TCP accept to an accepted first request (`connect`).
pub const FIRST_REQUEST_DEADLINE: Duration = Duration::from_secs(15);
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
    Some(cached_encoding(frame, form, |out| {
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

impl Frames for RtmpChunks {
    fn encode(&self, frame: &MediaFrame) -> Option<Bytes> {
        rtmp_chunks(self.chunk_size, self.stream_id, frame)
    }
}

/// A publish or play request and what it names.
struct Target {
    request: RequestId,
    /// The message stream it runs on.
    stream_id: u32,
    name: String,
    info: SessionInfo,
}

/// One RTMP client connection.
pub struct RtmpSession {
    core: SessionCore,
    rtmp: ServerConnection,
    writer: Rc<Writer>,
    app: String,
    tcurl: String,
    connected: bool,
    /// The RTMP message stream the active play or publish runs on.
    active_stream_id: u32,
    /// Since when the connected session has had no play or publish.
    inactive_since: Instant,
    reported_unsupported: bool,
}

impl RtmpSession {
    /// Starts the session actor for an accepted socket on the current arbiter.
    pub fn start(accepted: TcpAccept) -> Addr<Self> {
        let TcpParts {
            core, read, writer, ..
        } = accepted.open(Protocol::Rtmp);
        let writer = Rc::new(writer);
        RtmpSession::create(move |ctx| {
            // Input is read only while the answers to it are being taken (Writer::gate).
            ctx.add_stream(writer.gate(super::reader(read)));
            RtmpSession {
                core,
                rtmp: ServerConnection::new(),
                writer,
                app: String::new(),
                tcurl: String::new(),
                connected: false,
                active_stream_id: 0,
                inactive_since: Instant::now(),
                reported_unsupported: false,
            }
        })
    }

    /// A read from the client: a publisher's reads keep it from being idle.
    fn input(&mut self, bytes: BytesMut, ctx: &mut Context<Self>) {
        if self.core.is_publisher() {
            self.core.media_arrived();
        }
        self.feed(ctx, &bytes);
    }

    /// Queues `bytes` to be written at once; a peer whose queue is full or gone loses its
    /// connection (false).
    fn send_now(&mut self, ctx: &mut Context<Self>, bytes: Bytes) -> bool {
        let Err(e) = self.writer.send(bytes) else {
            return true;
        };
        let _s = self.core.enter();
        tracing::info!(error = %e, "client not reading; closing");
        drop(_s);
        self.core.send_failed(e);
        ctx.stop();
        false
    }

    fn info(&self, name: &str, url: &str) -> SessionInfo {
        self.core.info(&self.app, name, url, &self.tcurl)
    }

    /// A publish or play request: what it names (the stream name without its query, recorded
    /// in the span) and its hook fields, then the hook.
    fn stream_requested(&mut self, ctx: &mut Context<Self>, event: Event) {
        let (publish, request, stream_id, stream_name) = match event {
            Event::PublishRequested {
                request,
                stream_id,
                stream_name,
            } => (true, request, stream_id, stream_name),
            Event::PlayRequested {
                request,
                stream_id,
                stream_name,
            } => (false, request, stream_id, stream_name),
            _ => return,
        };
        let name = split_query(&stream_name).0.to_owned();
        self.core.span.record("name", name.as_str());
        let info = self.info(&name, &stream_url(&self.tcurl, &stream_name));
        let target = Target {
            request,
            stream_id,
            name,
            info,
        };
        if publish {
            self.ask_publish(ctx, target);
        } else {
            self.ask_play(ctx, target);
        }
    }

    fn ingest(&mut self, kind: MediaKind, timestamp: u32, data: bytes::Bytes) {
        if self.core.publishing().is_none() {
            return;
        }
        let frame = match kind {
            MediaKind::Video => flv::video_frame(timestamp, &data),
            MediaKind::Audio => flv::audio_frame(timestamp, &data),
        };
        match frame {
            Ok(Some(frame)) => self.core.publish(frame),
            Ok(None) => {}
            Err(e) => {
                if !self.reported_unsupported {
                    self.reported_unsupported = true;
                    let _s = self.core.enter();
                    tracing::warn!(error = %e, "dropping media this server cannot carry");
                }
            }
        }
    }

    /// Applies a refusal: answer in RTMP's words, then close.
    fn refuse(&mut self, ctx: &mut Context<Self>, request: RequestId, why: Rejection) {
        // Refused for anything but the hook's answer: an allowed play or publish the server
        // could not serve.
        if why != Rejection::Unauthorized {
            self.core.ending(EndReason::Refused);
        }
        if self
            .guarded(ctx, |core| core.refuse(request, why))
            .is_some()
        {
            self.flush(ctx);
            ctx.stop();
        }
    }

    fn ask_connect(&mut self, ctx: &mut Context<Self>, request: RequestId, info: SessionInfo) {
        let asked = request_connect(&self.core.context, info);
        ctx.wait(asked.into_actor(self).map(move |decision, act, ctx| {
            act.core.log_decision("connect", &decision);
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

    fn ask_publish(&mut self, ctx: &mut Context<Self>, target: Target) {
        let (request, stream_id, info) = (target.request, target.stream_id, target.info);
        if target.name.is_empty() {
            self.refuse(ctx, request, Rejection::NotFound);
            return;
        }
        let kick = ctx.address().recipient::<Kick>();
        let asked = request_publish(self.core.context.clone(), info, kick);
        ctx.wait(asked.into_actor(self).map(move |outcome, act, ctx| {
            let answer = act.core.publish_answered("publish", outcome);
            act.active_stream_id = stream_id;
            match answer {
                PublishAnswer::Denied(_) => act.refuse(ctx, request, Rejection::Unauthorized),
                PublishAnswer::Publish => {
                    if act.guarded(ctx, |core| core.accept(request)).is_some() {
                        act.pump(ctx);
                    }
                }
                PublishAnswer::Taken => act.refuse(ctx, request, Rejection::AlreadyPublishing),
                PublishAnswer::Unavailable => act.refuse(ctx, request, Rejection::Unavailable),
            }
        }));
    }

    fn ask_play(&mut self, ctx: &mut Context<Self>, target: Target) {
        let (request, stream_id, info) = (target.request, target.stream_id, target.info);
        let asked = request_play(self.core.context.clone(), info, Attach::Shared);
        ctx.wait(asked.into_actor(self).map(move |outcome, act, ctx| {
            let (allowed, snapshot, joining) = match outcome {
                PlayOutcome::Denied(decision) => {
                    act.core.log_decision("play", &decision);
                    act.refuse(ctx, request, Rejection::Unauthorized);
                    return;
                }
                PlayOutcome::NotFound(allowed) => {
                    act.core.log_decision("play", &Decision::Allow);
                    act.begin(Role::Player, allowed, stream_id, None);
                    let _s = act.core.enter();
                    tracing::info!("no such stream");
                    drop(_s);
                    act.refuse(ctx, request, Rejection::NotFound);
                    return;
                }
                PlayOutcome::Playing(allowed, _, snapshot, joining) => (allowed, snapshot, joining),
            };
            act.core.log_decision("play", &Decision::Allow);
            // Attached through the arbiter's group: leaving it is the membership's drop.
            act.begin(Role::Player, allowed, stream_id, None);
            // The play's answer says what the player should know about its tracks.
            let note = flv::tracks_note(&snapshot.configs);
            if act
                .guarded(ctx, |core| core.accept_noting(request, &note))
                .is_none()
            {
                return;
            }
            let from_seq = snapshot.next_seq;
            act.replay(ctx, stream_id, snapshot);
            if let Some(joining) = joining {
                let encoder = Box::new(RtmpChunks {
                    chunk_size: act.rtmp.out_chunk_size(),
                    stream_id,
                });
                let writer = act.writer.clone();
                act.core
                    .join_group(joining, writer, encoder, from_seq, &ctx.address());
            }
            act.pump(ctx);
        }));
    }

    /// Writes what a joining player needs first, at once: the core's answers and metadata,
    /// then the codec configs and the cached GOP in the encodings this arbiter's players share.
    fn replay(&mut self, ctx: &mut Context<Self>, stream_id: u32, snapshot: Snapshot) {
        let (has_audio, has_video, left_out) =
            super::flv_tracks(&self.core.span, "RTMP", &snapshot.configs);
        let tracks = flv::single_carried_track(
            has_audio,
            has_video,
            &left_out,
            snapshot.metadata.as_deref(),
        )
        .and_then(|(audio, video)| flv::single_track_properties(audio, video));
        if let Some(metadata) = snapshot.metadata {
            self.rtmp
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
                    self.rtmp.send_metadata(stream_id, properties.clone());
                    self.flush(ctx);
                }
            }
            let Some(bytes) = rtmp_chunks(self.rtmp.out_chunk_size(), stream_id, frame) else {
                continue;
            };
            if !self.send_now(ctx, bytes) {
                return;
            }
        }
        if snapshot.gop.is_empty() {
            if let Some(properties) = tracks {
                self.rtmp.send_metadata(stream_id, properties);
                self.flush(ctx);
            }
        }
    }

    fn begin(
        &mut self,
        role: Role,
        allowed: Allowed,
        stream_id: u32,
        stream: Option<Addr<streamgate_actors::stream::StreamActor>>,
    ) {
        if role == Role::Player {
            // A player's output is media: a backlog up to its queue still has its acks read.
            self.writer.set_read_limit(self.core.limits.queue_bytes);
        }
        self.core.begin(role, allowed, stream);
        self.active_stream_id = stream_id;
    }

    /// Ends the active play or publish: leaves the stream and sends its one `on_done`.
    fn finish(&mut self, reason: EndReason) {
        if self.core.finish(reason) {
            self.inactive_since = Instant::now();
        }
    }
}

impl Session for RtmpSession {
    fn parts(&mut self) -> (&mut SessionCore, Option<&dyn Output>) {
        (&mut self.core, Some(&*self.writer))
    }

    fn first_request_done(&self) -> bool {
        self.connected
    }

    fn check(&mut self) -> Option<(EndReason, &'static str)> {
        let idle = self.connected
            && self.core.active().is_none()
            && self.inactive_since.elapsed() > INACTIVE_DEADLINE;
        idle.then_some((EndReason::Idle, "neither played nor published for too long"))
    }

    fn stream_ending(&mut self, ctx: &mut Context<Self>) {
        self.rtmp.end_of_stream(self.active_stream_id);
        self.flush(ctx);
    }

    fn kicking(&mut self, ctx: &mut Context<Self>, why: &str) {
        if self.core.active().is_none() {
            return;
        }
        let publishing = self.core.is_publisher();
        self.rtmp
            .ended_by_server(self.active_stream_id, publishing, why);
        self.flush(ctx);
    }
}

session_actor!(RtmpSession, Some(FIRST_REQUEST_DEADLINE));
super::fanout::group_member!(RtmpSession);
tcp_input!(RtmpSession);

impl ProtocolShell for RtmpSession {
    type Protocol = ServerConnection;
    type Error = crate::protocol::rtmp::RtmpError;

    fn protocol(&mut self) -> (&mut ServerConnection, &tracing::Span) {
        (&mut self.rtmp, &self.core.span)
    }

    /// Sends queued output. A peer whose queue is full or gone loses its connection.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if let Some(bytes) = self.rtmp.take_output() {
            self.send_now(ctx, bytes);
        }
    }

    fn handle_input(rtmp: &mut ServerConnection, bytes: &[u8]) -> Result<(), Self::Error> {
        rtmp.handle_input(bytes)
    }

    /// Drains every event the core has; stops at a request, which suspends the actor until
    /// its decision is applied (and then drains again).
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.flush(ctx);
        while let Some(event) = self.rtmp.poll_event() {
            match event {
                Event::ConnectRequested {
                    request,
                    app,
                    tcurl,
                } => {
                    self.app = split_query(&app).0.to_owned();
                    self.tcurl = tcurl;
                    self.core.span.record("app", self.app.as_str());
                    let info = self.info("", &self.tcurl);
                    self.ask_connect(ctx, request, info);
                    return;
                }
                event @ (Event::PublishRequested { .. } | Event::PlayRequested { .. }) => {
                    return self.stream_requested(ctx, event);
                }
                Event::Metadata { properties } => {
                    if self.core.is_publisher() {
                        self.core
                            .publish_metadata(flv::metadata_from_amf(properties));
                    }
                }
                Event::Media {
                    kind,
                    timestamp,
                    data,
                } => self.ingest(kind, timestamp, data),
                Event::StreamClosed { stream_id } => {
                    if self.core.active().is_some() && self.active_stream_id == stream_id {
                        self.finish(EndReason::Closed);
                    }
                }
            }
        }
    }
}

/// Metadata from the player's fan-out group; its frames are written by the group.
impl Handler<Deliver> for RtmpSession {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        if !self.core.is_player() {
            return;
        }
        let Delivery::Metadata(metadata) = msg.item else {
            return;
        };
        self.rtmp
            .send_metadata(self.active_stream_id, flv::metadata_to_amf(&metadata));
        if let Some(bytes) = self.rtmp.take_output() {
            // Behind the frames already queued, like the metadata was behind them.
            if self.writer.send_merged(bytes) == Err(SendError::Closed) {
                self.core.send_failed(SendError::Closed);
                ctx.stop();
            }
        }
    }
}

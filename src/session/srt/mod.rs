//! [`SrtSession`]: the actor of one SRT connection, from its connection request (handed over by
//! the listener in `crate::listener::srt`) to its end.
//!
//! Every decision is made **before** the handshake is accepted: the caller keeps repeating its
//! conclusion handshake while the actor parses the streamid, checks the caller's encryption
//! against `<passphrase>` ([`key_plan`]), asks `on_connect` and then `on_publish` or `on_play`
//! (suspended with `ctx.wait`), and claims or finds the stream. Only then is the request
//! accepted, or rejected with an SRT reject code the caller sees: 1400 for an unusable
//! streamid, 1401 when a hook answered 401, 1403 for any other refusal (another status, a
//! timeout, an unreachable hook server), 1404 for a play of a stream that is not live, 1409 for
//! a second publisher of a live name, 11 (`SRT_REJ_UNSECURE`) when one side encrypts and the
//! other does not; SRT itself answers a wrong passphrase with 10 (`SRT_REJ_BADSECRET`).
//!
//! A publisher's SRT payloads go through a [`TsDemuxer`] into frames for the `StreamActor` it
//! claimed. A player gets a [`TsMuxer`] set up from the stream's codec configs: configs and the
//! cached GOP first, then live frames, cut into SRT payloads of `<payload_size>` (whole TS
//! packets) and queued on its [`SrtOut`] behind the shared drop policy.
//!
//! `on_done` is sent once for every allowed publish or play (the [`SessionCore`]): when the
//! caller closes, when SRT's idle timeout ends a connection whose peer vanished (kill -9),
//! when the stream ends under a player, when the publisher is kicked (shutdown), or when the
//! request is refused after the hook allowed it (1404, 1409).

pub mod connection;
mod handover;
mod settings;

pub use handover::{Accepted, Pending, Response};
pub use settings::SrtSettings;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use srt_protocol::packet::{RejectReason, ServerRejectReason};
use srt_protocol::settings::KeySettings;
use streamgate_actors::media::{FrameKind, MediaFrame, Track};
use streamgate_actors::notify::Decision;
use streamgate_actors::session::{Protocol, SessionInfo};
use streamgate_actors::stream::{Deliver, Delivery, Kick, Snapshot};
use streamgate_actors::usage::EndReason;

use super::actor::{session_actor, Session};
use super::core::{
    after_connect, request_play, request_publish, Attach, Count, PlayOutcome, PublishAnswer,
    PublishOutcome, Role, SessionCore,
};
use super::output::srt::SrtOut;
use super::output::Output;
use super::{contain, SessionContext};
use crate::limits::Admission;
use crate::protocol::flv::SynthesizedMetadata;
use crate::protocol::srt::handshake::{hook_refusal, key_plan, libsrt_code, url_decoded_streamid};
use crate::protocol::srt::{Mode, StreamId};
use crate::protocol::ts::{TsDemuxer, TsMuxer, CHUNK_SIZE};
use crate::protocol::url::srt_url;
use connection::{spawn_connection, MAX_LEAD};

/// Time an accepted handshake has to turn into a connection.
pub const ACCEPT_DEADLINE: Duration = Duration::from_secs(10);
/// Added to the latency while a player's last packets drain before its connection is closed.
const LINGER_MARGIN: Duration = Duration::from_millis(200);
/// The longest such drain.
const MAX_LINGER: Duration = Duration::from_secs(3);

/// What a caller asks for, once its streamid is read and its encryption checked.
struct Request {
    /// The hook fields of its `on_connect`.
    connect: SessionInfo,
    /// The hook fields of its `on_play` or `on_publish`, which name its stream.
    info: SessionInfo,
    /// The keys to accept it with.
    keys: Option<KeySettings>,
}

/// One SRT connection, from its connection request to its end.
pub struct SrtSession {
    core: SessionCore,
    /// The server address the caller reached (for the hooks' `url`).
    local: SocketAddr,
    settings: Arc<SrtSettings>,
    /// The pending handshake, until it is accepted or rejected.
    request: Option<Pending>,
    /// The accepted connection's send side.
    out: Option<SrtOut>,
    /// Set by the connection when the peer said SRT's shutdown ([`connection::Link::goodbye`]).
    goodbye: Option<Rc<Cell<bool>>>,
    // publisher
    demuxer: TsDemuxer,
    metadata: SynthesizedMetadata,
    /// The ignored stream types last logged.
    reported_ignored: Vec<u8>,
    // player
    muxer: TsMuxer,
    reported_unmuxable: bool,
}

impl SrtSession {
    /// Starts the session actor of a connection request on the current arbiter.
    pub fn start(
        request: Pending,
        peer: SocketAddr,
        local: SocketAddr,
        context: SessionContext,
        settings: Arc<SrtSettings>,
        admission: Admission,
    ) -> Addr<Self> {
        let core = SessionCore::new(Protocol::Srt, peer, context, settings.limits, admission);
        SrtSession {
            core,
            local,
            settings,
            request: Some(request),
            out: None,
            goodbye: None,
            demuxer: TsDemuxer::new(),
            metadata: SynthesizedMetadata::default(),
            reported_ignored: Vec::new(),
            muxer: TsMuxer::new(),
            reported_unmuxable: false,
        }
        .start()
    }

    /// Parses the streamid, checks the caller's encryption, and asks the hooks.
    fn decide(&mut self, ctx: &mut Context<Self>) {
        let Some(request) = self.request.as_ref() else {
            ctx.stop();
            return;
        };
        let raw = request
            .request
            .stream_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let caller_key_size = request.request.key_size;
        let key_material = request.key_material;
        let _s = self.core.enter();
        tracing::info!(
            streamid = %raw,
            key_size = caller_key_size.as_raw(),
            ?key_material,
            "connection requested"
        );
        let bad_request = RejectReason::Server(ServerRejectReason::BadRequest);
        let parsed = match contain(|| StreamId::parse(&url_decoded_streamid(&raw))) {
            Ok(Ok(parsed)) => parsed,
            Ok(Err(e)) => {
                let why = format!("unusable streamid {raw:?}: {e}");
                return self.refuse(ctx, bad_request, &why);
            }
            Err(panic) => {
                tracing::error!(%panic, "streamid parser panicked; refusing this connection only");
                return self.refuse(ctx, bad_request, "unreadable streamid");
            }
        };
        let keys = match key_plan(
            self.settings.passphrase.as_ref(),
            key_material,
            caller_key_size,
        ) {
            Ok(keys) => keys,
            Err((reason, why)) => return self.refuse(ctx, reason, why),
        };
        if keys
            .as_ref()
            .is_some_and(|k| k.key_size.as_raw() != self.settings.pbkeylen)
        {
            tracing::debug!(
                caller = caller_key_size.as_raw(),
                pbkeylen = self.settings.pbkeylen,
                "accepting the caller's key length"
            );
        }
        self.core.span.record("app", parsed.app.as_str());
        self.core.span.record("name", parsed.name.as_str());
        drop(_s);
        let url = srt_url(
            &self.local.to_string(),
            &url_decoded_streamid(&raw),
            &parsed.query,
        );
        let request = Request {
            connect: self.core.info(&parsed.app, "", &url, ""),
            info: self.core.info(&parsed.app, &parsed.name, &url, ""),
            keys,
        };
        match parsed.mode {
            Mode::Publish => self.ask_publish(ctx, request),
            Mode::Play => self.ask_play(ctx, request),
        }
    }

    fn ask_publish(&mut self, ctx: &mut Context<Self>, request: Request) {
        let (connect, info, keys) = (request.connect, request.info, request.keys);
        let context = self.core.context.clone();
        let kick = ctx.address().recipient::<Kick>();
        let publish = request_publish(context.clone(), info, kick);
        let asked = after_connect(context, connect, "publish", publish, PublishOutcome::Denied);
        ctx.wait(
            asked
                .into_actor(self)
                .map(move |(call, outcome), act, ctx| {
                    match act.core.publish_answered(call, outcome) {
                        PublishAnswer::Denied(decision) => act.denied(ctx, call, &decision),
                        PublishAnswer::Publish => act.accept(ctx, keys, None),
                        PublishAnswer::Taken => act.refuse(
                            ctx,
                            RejectReason::Server(ServerRejectReason::Conflict),
                            "the stream is already being published by another client",
                        ),
                        PublishAnswer::Unavailable => act.refuse(
                            ctx,
                            RejectReason::Server(ServerRejectReason::Down),
                            "the stream cannot be claimed now",
                        ),
                    }
                }),
        );
    }

    fn ask_play(&mut self, ctx: &mut Context<Self>, request: Request) {
        let Request {
            connect,
            info,
            keys,
        } = request;
        let attach = Attach::Own {
            media: ctx.address().recipient(),
            ended: ctx.address().recipient(),
        };
        let context = self.core.context.clone();
        let play = request_play(context.clone(), info, attach);
        let asked = after_connect(context, connect, "play", play, PlayOutcome::Denied);
        ctx.wait(
            asked
                .into_actor(self)
                .map(move |(call, outcome), act, ctx| match outcome {
                    PlayOutcome::Denied(decision) => {
                        act.core.log_decision(call, &decision);
                        act.denied(ctx, call, &decision);
                    }
                    PlayOutcome::NotFound(allowed) => {
                        act.core.log_decision("play", &Decision::Allow);
                        act.core.begin(Role::Player, allowed, None);
                        act.refuse(
                            ctx,
                            RejectReason::Server(ServerRejectReason::Notfound),
                            "no such live stream",
                        );
                    }
                    PlayOutcome::Playing(allowed, stream, snapshot, _) => {
                        act.core.log_decision("play", &Decision::Allow);
                        act.core.begin(Role::Player, allowed, Some(stream));
                        act.accept(ctx, keys, Some(snapshot));
                    }
                }),
        );
    }

    /// Refuses the caller for a hook's answer (logged by the caller of this).
    fn denied(&mut self, ctx: &mut Context<Self>, call: &str, decision: &Decision) {
        self.refuse(ctx, hook_refusal(decision), &format!("{call} refused"));
    }

    /// Rejects the pending handshake with `reason` and ends the session (an allowed play or
    /// publish still gets its `on_done` when the actor stops).
    fn refuse(&mut self, ctx: &mut Context<Self>, reason: RejectReason, why: &str) {
        let _s = self.core.enter();
        tracing::info!(reject = libsrt_code(reason), %reason, why, "handshake rejected");
        drop(_s);
        // Only an allowed play or publish has an `on_done` to carry it.
        self.core.ending(EndReason::Refused);
        if let Some(request) = self.request.take() {
            request.refuse(reason);
        }
        ctx.stop();
    }

    /// Accepts the pending handshake; a player then gets `snapshot` first.
    fn accept(
        &mut self,
        ctx: &mut Context<Self>,
        keys: Option<KeySettings>,
        snapshot: Option<Snapshot>,
    ) {
        let Some(request) = self.request.take() else {
            ctx.stop();
            return;
        };
        let accepted = actix_rt::time::timeout(ACCEPT_DEADLINE, request.accept(keys));
        ctx.wait(accepted.into_actor(self).map(move |result, act, ctx| {
            let why = match result {
                Ok(Ok(accepted)) => return act.connected(ctx, accepted, snapshot),
                Ok(Err(_)) => {
                    "handshake not completed: SRT refused it (a wrong passphrase?) \
                     or the caller went away"
                }
                Err(_) => "handshake not completed in time",
            };
            let _s = act.core.enter();
            tracing::info!("{why}");
            drop(_s);
            act.core.ending(EndReason::Refused);
            ctx.stop();
        }));
    }

    fn connected(
        &mut self,
        ctx: &mut Context<Self>,
        accepted: Accepted,
        snapshot: Option<Snapshot>,
    ) {
        let settings = accepted.connection.settings.clone();
        let linger = (settings.send_tsbpd_latency + LINGER_MARGIN).min(MAX_LINGER);
        let _s = self.core.enter();
        tracing::info!(
            recv_latency_ms = settings.recv_tsbpd_latency.as_millis() as u64,
            send_latency_ms = settings.send_tsbpd_latency.as_millis() as u64,
            encrypted = settings.cipher.is_some(),
            "connected"
        );
        drop(_s);
        let span = self.core.span.clone();
        let link = spawn_connection(
            accepted,
            span.clone(),
            self.core.usage.counter(Count::BytesIn),
            self.core.usage.counter(Count::BytesOut),
        );
        ctx.add_stream(futures_util::stream::unfold(
            link.received,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        ));
        self.out = Some(SrtOut::spawn(link.data, linger, span));
        self.goodbye = Some(link.goodbye);
        self.core.media_arrived();
        if let Some(snapshot) = snapshot {
            self.replay(ctx, snapshot);
        }
    }

    // ---- publisher ----

    fn ingest(&mut self, ctx: &mut Context<Self>, payload: &[u8]) {
        let demuxer = &mut self.demuxer;
        let frames = contain(|| {
            demuxer.push(payload);
            let mut frames = Vec::new();
            while let Some(frame) = demuxer.poll_frame() {
                frames.push(frame);
            }
            frames
        });
        let frames = match frames {
            Ok(frames) => frames,
            Err(panic) => {
                let _s = self.core.enter();
                tracing::error!(
                    %panic,
                    "TS demuxer panicked on this caller's input; closing this connection only"
                );
                ctx.stop();
                return;
            }
        };
        if self.demuxer.ignored_stream_types() != self.reported_ignored {
            self.reported_ignored = self.demuxer.ignored_stream_types().to_vec();
            if !self.reported_ignored.is_empty() {
                let _s = self.core.enter();
                tracing::warn!(
                    stream_types = ?self.reported_ignored,
                    "the MPEG-TS program has streams this server cannot carry; dropping them"
                );
            }
        }
        if self.core.publishing().is_none() {
            return;
        }
        for frame in frames {
            // MPEG-TS has no metadata object: FLV players get one made from the configs.
            if let Some(metadata) = self.metadata.note(&frame) {
                self.core.publish_metadata(metadata);
            }
            self.core.publish(frame);
        }
    }

    // ---- player ----

    /// Writes what a joining player needs first: codec configs and the cached GOP, sent as one
    /// burst but stamped at the pace of its media, so the player's SRT buffer releases it one
    /// latency later over the GOP's own duration, as a live source would, and live frames follow
    /// at the same pace.
    fn replay(&mut self, ctx: &mut Context<Self>, snapshot: Snapshot) {
        let codec_of = |track| {
            let config = snapshot.configs.iter().find(|f| f.track == track);
            config.map(|f| f.codec)
        };
        let (video, audio) = (codec_of(Track::Video), codec_of(Track::Audio));
        for codec in [video, audio].into_iter().flatten() {
            if crate::protocol::ts::stream_type(codec).is_none() && !self.reported_unmuxable {
                self.reported_unmuxable = true;
                let _s = self.core.enter();
                tracing::warn!(
                    ?codec,
                    "MPEG-TS cannot carry this track; playing without it"
                );
            }
        }
        self.muxer = TsMuxer::with_tracks(video, audio);
        for frame in &snapshot.configs {
            self.write_frame(ctx, frame, None);
        }
        // Paced at its media time (over its own duration, up to MAX_LEAD): what is older than
        // that goes without a media time, released at once.
        let newest = snapshot.gop.iter().map(|f| f.dts).max().unwrap_or(0);
        let oldest_paced = newest.saturating_sub(MAX_LEAD.as_micros() as i64);
        for frame in &snapshot.gop {
            let dts = Some(frame.dts).filter(|dts| *dts >= oldest_paced);
            self.write_frame(ctx, frame, dts);
        }
    }

    /// Muxes one frame and queues its TS packets as SRT payloads of whole packets, with `dts`
    /// as their media time.
    fn write_frame(&mut self, ctx: &mut Context<Self>, frame: &MediaFrame, dts: Option<i64>) {
        let muxer = &mut self.muxer;
        let mut out = Vec::new();
        let result = contain(|| {
            let result = muxer.mux(frame, &mut out);
            muxer.flush(&mut out);
            result
        });
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                if !self.reported_unmuxable {
                    self.reported_unmuxable = true;
                    let _s = self.core.enter();
                    tracing::warn!(
                        error = %e,
                        "dropping media this server cannot carry in MPEG-TS"
                    );
                }
                return;
            }
            Err(panic) => {
                let _s = self.core.enter();
                tracing::error!(%panic, "TS muxer panicked; closing this connection only");
                ctx.stop();
                return;
            }
        }
        let chunk = self.settings.chunk_size();
        if chunk == CHUNK_SIZE {
            // The muxer's own chunks: whole 1316-byte payloads and one shorter last one.
            for payload in out {
                self.send(ctx, dts, payload);
            }
            return;
        }
        let mut all = BytesMut::with_capacity(out.iter().map(Bytes::len).sum());
        for piece in &out {
            all.extend_from_slice(piece);
        }
        while !all.is_empty() {
            let payload = all.split_to(chunk.min(all.len())).freeze();
            self.send(ctx, dts, payload);
        }
    }

    /// How the connection's end ends the session: `closed` when the peer said SRT's
    /// shutdown, `lost` when SRT timed it out (or a write found it gone).
    fn end_of_connection(&self) -> EndReason {
        match &self.goodbye {
            Some(goodbye) if goodbye.get() => EndReason::Closed,
            _ => EndReason::Lost,
        }
    }

    /// Notes the connection's end as the session's ([`Self::end_of_connection`]).
    fn connection_ended(&mut self) {
        let reason = self.end_of_connection();
        self.core.ending(reason);
    }

    fn send(&mut self, ctx: &mut Context<Self>, dts: Option<i64>, payload: Bytes) {
        let Some(out) = &self.out else {
            return;
        };
        if self.core.backlog.sent(out.send(dts, payload)) {
            self.connection_ended();
            ctx.stop();
        }
    }
}

impl Session for SrtSession {
    fn parts(&mut self) -> (&mut SessionCore, Option<&dyn Output>) {
        let output = self.out.as_ref().map(|out| out as &dyn Output);
        (&mut self.core, output)
    }

    fn starting(&mut self, ctx: &mut Context<Self>) {
        self.decide(ctx);
    }

    fn check(&mut self) -> Option<(EndReason, &'static str)> {
        let lost = self.out.as_ref().is_some_and(SrtOut::is_closed);
        lost.then(|| (self.end_of_connection(), "the connection ended"))
    }

    fn release(&mut self) {
        if let Some(request) = self.request.take() {
            // Ended before a decision (a panic, a shutdown): answer the caller anyway.
            request.refuse(RejectReason::Server(ServerRejectReason::Down));
        }
        // Dropping the send side drains it, lingers one latency and closes the connection.
        self.out = None;
    }
}

// No first-request deadline of its own: the listener's handshake timeout and ACCEPT_DEADLINE
// bound the time before the connection.
session_actor!(SrtSession, None);

impl StreamHandler<(Instant, Bytes)> for SrtSession {
    fn handle(&mut self, (_, payload): (Instant, Bytes), ctx: &mut Self::Context) {
        if self.core.is_publisher() {
            self.core.media_arrived();
            self.ingest(ctx, &payload);
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        let _s = self.core.enter();
        tracing::info!("the connection closed (by the peer, or SRT timed it out)");
        drop(_s);
        self.connection_ended();
        ctx.stop();
    }
}

impl Handler<Deliver> for SrtSession {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        if !self.core.is_player() {
            return;
        }
        let Some(pending) = self.out.as_ref().map(SrtOut::pending_bytes) else {
            return;
        };
        // MPEG-TS carries no metadata object.
        if let Delivery::Frame(frame) = msg.item {
            if !self.core.backlog.admit(&frame, pending) {
                return;
            }
            let dts = (frame.kind == FrameKind::Media).then_some(frame.dts);
            self.write_frame(ctx, &frame, dts);
        }
    }
}

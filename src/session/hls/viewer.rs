//! [`HlsViewer`]: the session of one HLS viewer, across all of its requests and connections.
//!
//! It lives on a worker arbiter like every session (its core, its place in the session table
//! and the connection limits, its `on_update`s); the HTTP handlers that serve its requests
//! tell it what they served ([`Served`]), which is its usage and keeps it alive. It ends, and
//! sends its one `on_done`, when it has requested nothing for `<idle_timeout_ms>`, when it is
//! kicked, or after its stream has ended (once it stops requesting, so it can still fetch the
//! last segments; at the latest [`ENDED_GRACE`] later).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use streamgate_actors::notify::Decision;
use streamgate_actors::session::{ClientId, Protocol};
use streamgate_actors::stream::StreamEnded;
use streamgate_actors::usage::EndReason;

use super::packager::{HlsEnded, HlsStream};
use super::Hls;
use crate::limits::Admission;
use crate::session::actor::{session_actor, Session};
use crate::session::core::{after_connect, find_play, PlayOutcome, Role, SessionCore};
use crate::session::output::Output;
use crate::session::SessionContext;

/// How long a viewer of an ended stream may go on fetching what is left.
pub const ENDED_GRACE: Duration = Duration::from_secs(30);

/// A viewer's session.
pub struct HlsViewer {
    core: SessionCore,
    hls: Arc<Hls>,
    /// The output it watches, once its play was allowed.
    output: Option<Arc<HlsStream>>,
    last_request: Instant,
    /// The end of its stream, and when it came.
    ended: Option<(StreamEnded, Instant)>,
}

impl HlsViewer {
    /// A viewer session for a client at `peer`, on the current arbiter.
    pub fn new(
        hls: Arc<Hls>,
        peer: std::net::SocketAddr,
        context: SessionContext,
        admission: Admission,
    ) -> Self {
        let limits = crate::session::output::PlayerLimits {
            queue_bytes: usize::MAX,
            stall_timeout: Duration::MAX,
        };
        HlsViewer {
            core: SessionCore::new(Protocol::Hls, peer, context, limits, admission),
            hls,
            output: None,
            last_request: Instant::now(),
            ended: None,
        }
    }
}

/// The first request of a viewer: ask the hooks, find the stream, start or join its output.
#[derive(Message)]
#[rtype(result = "Begun")]
pub struct Begin {
    /// The URL of the request (the hooks' `url`).
    pub url: String,
    /// The app and name the viewer's URLs use.
    pub path: (String, String),
}

/// How a viewer's first request ended.
pub enum Begun {
    /// Playing: its session id and the output it watches.
    Playing {
        /// The viewer's clientid.
        clientid: ClientId,
        /// The output.
        output: Arc<HlsStream>,
    },
    /// A hook refused: `401` or `403`.
    Refused(u16),
    /// No such live stream.
    NotFound,
}

/// What a request of the viewer was served: its bytes count into the session's usage, and
/// the request keeps it alive.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Served {
    /// Body bytes sent.
    pub bytes: u64,
}

/// The viewer's output cannot be served (its stream cannot be packaged as HLS): it ends.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unservable;

impl Handler<Begin> for HlsViewer {
    type Result = ResponseActFuture<Self, Begun>;

    fn handle(&mut self, msg: Begin, _ctx: &mut Context<Self>) -> Self::Result {
        let (app, name) = &msg.path;
        self.core.span.record("app", app.as_str());
        self.core.span.record("name", name.as_str());
        let connect = self.core.info(app, "", &msg.url, "");
        let play = self.core.info(app, name, &msg.url, "");
        let context = self.core.context.clone();
        let find = {
            let context = context.clone();
            async move { find_play(&context, play).await }
        };
        let asked = after_connect(context, connect, "play", find, |d| {
            Err(Box::new(PlayOutcome::Denied(d)))
        });
        let path = msg.path;
        Box::pin(asked.into_actor(self).map(move |(call, found), act, ctx| {
            match found.map_err(|outcome| *outcome) {
                Err(PlayOutcome::Denied(decision)) => {
                    act.core.log_decision(call, &decision);
                    ctx.stop();
                    Begun::Refused(decision.deny_status())
                }
                Err(PlayOutcome::NotFound(allowed)) => {
                    act.core.play_not_found(allowed);
                    ctx.stop();
                    Begun::NotFound
                }
                Err(PlayOutcome::Playing(..)) => Begun::NotFound,
                Ok((allowed, stream)) => {
                    act.core.log_decision("play", &Decision::Allow);
                    let key = allowed.key();
                    act.core.begin(Role::Player, allowed, None);
                    let clientid = act.core.clientid;
                    let config = act.hls.segmenter_config();
                    let output = act.hls.streams.join(
                        &key,
                        &stream,
                        config,
                        clientid,
                        ctx.address().recipient(),
                    );
                    act.output = Some(output.clone());
                    act.last_request = Instant::now();
                    act.hls
                        .add_viewer(clientid, ctx.address(), output.clone(), path);
                    Begun::Playing { clientid, output }
                }
            }
        }))
    }
}

impl Handler<Served> for HlsViewer {
    type Result = ();

    fn handle(&mut self, msg: Served, _ctx: &mut Context<Self>) {
        let out = &self.core.usage.counts.bytes_out;
        out.set(out.get() + msg.bytes);
        self.last_request = Instant::now();
    }
}

impl Handler<Unservable> for HlsViewer {
    type Result = ();

    fn handle(&mut self, _msg: Unservable, ctx: &mut Context<Self>) {
        let _s = self.core.enter();
        tracing::info!("the stream cannot be served as HLS");
        drop(_s);
        self.core.ending(EndReason::Refused);
        ctx.stop();
    }
}

impl Handler<HlsEnded> for HlsViewer {
    type Result = ();

    fn handle(&mut self, msg: HlsEnded, _ctx: &mut Context<Self>) {
        if self.ended.is_none() {
            self.ended = Some((msg.0, Instant::now()));
        }
    }
}

impl Session for HlsViewer {
    fn parts(&mut self) -> (&mut SessionCore, Option<&dyn Output>) {
        (&mut self.core, None)
    }

    fn check(&mut self) -> Option<(EndReason, &'static str)> {
        let idle = self.last_request.elapsed() >= self.hls.idle_timeout();
        match &self.ended {
            // The stream's end is the cause; the viewer is done once it stopped fetching
            // what was left.
            Some((end, at)) if idle || at.elapsed() >= ENDED_GRACE => {
                Some((end.end, "stream ended and the viewer is done"))
            }
            _ if idle && self.output.is_some() => {
                Some((EndReason::Idle, "viewer stopped requesting"))
            }
            _ => None,
        }
    }

    fn release(&mut self) {
        let clientid = self.core.clientid;
        self.hls.remove_viewer(clientid);
        if let Some(output) = &self.output {
            output.leave(clientid);
        }
    }
}

session_actor!(HlsViewer, None);

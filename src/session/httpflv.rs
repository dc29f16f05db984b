//! [`HttpFlvSession`]: the actor of one HTTP-FLV player connection.
//!
//! It reads one request head, asks the hooks (`on_connect` as the request arrives, then
//! `on_play`) while the actor waits, and answers: `200 video/x-flv` with a close-delimited body
//! (FLV header, metadata, codec headers and the cached GOP first, then live tags), `401`/`403`
//! when a hook refused, `404` when the stream is not live, `400` for a malformed request or
//! path, `405` for other methods, `204` for a CORS preflight. `HEAD` is a play that ends after
//! the response head. Further input is read only to notice the player leaving.
//!
//! `on_done` is sent once for every play the hook allowed, from [`HttpFlvSession::finish`].

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use streamgate_actors::media::{MediaFrame, Track};
use streamgate_actors::notify::Decision;
use streamgate_actors::session::Protocol;
use streamgate_actors::stream::{Deliver, Delivery, Snapshot};
use streamgate_actors::usage::EndReason;

use super::actor::{session_actor, Session};
use super::arbiter::cached_encoding;
use super::core::{after_connect, request_play, Attach, PlayOutcome, Role, SessionCore};
use super::fanout::Frames;
use super::output::tcp::Writer;
use super::output::{Output, SendError};
use super::{tcp_input, TcpAccept, TcpParts};
use crate::protocol::flv;
use crate::protocol::http::{error_response, flv_path, parse_request, response_head, Request};

/// The [`cached_encoding`] form of FLV tags.
const FLV_FORM: u64 = u64::from_be_bytes(*b"flv-tags");

/// Time a client has from TCP accept to its first (and only) request head.
pub const FIRST_REQUEST_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the request head.
    Request,
    /// Waiting for the hooks and the stream.
    Deciding,
    /// Sending the stream.
    Streaming,
    /// The answer is out; the connection is closing.
    Closing,
}

/// One HTTP-FLV player connection.
pub struct HttpFlvSession {
    core: SessionCore,
    writer: Rc<Writer>,
    local: SocketAddr,
    input: BytesMut,
    state: State,
}

impl HttpFlvSession {
    /// Starts the session actor for an accepted socket on the current arbiter.
    pub fn start(accepted: TcpAccept) -> Addr<Self> {
        let parts = accepted.open(Protocol::HttpFlv);
        let local = parts.local();
        let TcpParts {
            core, read, writer, ..
        } = parts;
        let writer = Rc::new(writer);
        HttpFlvSession::create(move |ctx| {
            ctx.add_stream(super::reader(read));
            HttpFlvSession {
                core,
                writer,
                local,
                input: BytesMut::new(),
                state: State::Request,
            }
        })
    }

    /// A read from the client: its request head until it is complete.
    fn input(&mut self, bytes: BytesMut, ctx: &mut Context<Self>) {
        if self.state != State::Request {
            // A player has nothing more to say; what it sends is read only to notice it leave.
            return;
        }
        self.input.extend_from_slice(&bytes);
        match parse_request(&self.input) {
            Ok(None) => {}
            Ok(Some((request, _))) => {
                self.input = BytesMut::new();
                self.handle_request(request, ctx);
            }
            Err(e) => {
                let _s = self.core.enter();
                tracing::info!(error = %e, "bad request");
                drop(_s);
                self.answer(error_response(400, &e.to_string()), ctx);
            }
        }
    }

    /// Sends a final answer and closes.
    fn answer(&mut self, response: Bytes, ctx: &mut Context<Self>) {
        self.state = State::Closing;
        let _ = self.writer.send(response);
        ctx.stop();
    }

    fn handle_request(&mut self, request: Request, ctx: &mut Context<Self>) {
        let _s = self.core.enter();
        tracing::info!(method = %request.method, target = %request.target, "request");
        match request.method.as_str() {
            "GET" | "HEAD" => {}
            "OPTIONS" => {
                let head = response_head(204, &[("Content-Length", "0")]);
                return self.answer(head, ctx);
            }
            _ => {
                let head = response_head(
                    405,
                    &[("Allow", "GET, HEAD, OPTIONS"), ("Content-Length", "0")],
                );
                return self.answer(head, ctx);
            }
        }
        let Some(path) = flv_path(&request.target) else {
            return self.answer(error_response(400, "expected /{app}/{name}.flv"), ctx);
        };
        self.core.span.record("app", path.app.as_str());
        self.core.span.record("name", path.name.as_str());
        let host = request
            .host
            .clone()
            .unwrap_or_else(|| self.local.to_string());
        let url = format!("http://{host}{}", request.target);
        let connect_info = self.core.info(&path.app, "", &url, "");
        let play_info = self.core.info(&path.app, &path.name, &url, "");
        let head_only = request.method == "HEAD";
        let context = self.core.context.clone();
        let play = request_play(context.clone(), play_info, Attach::Shared);
        let asked = after_connect(context, connect_info, "play", play, PlayOutcome::Denied);
        self.state = State::Deciding;
        ctx.wait(
            asked
                .into_actor(self)
                .map(move |(call, outcome), act, ctx| {
                    match outcome {
                        PlayOutcome::Denied(decision) => {
                            act.core.log_decision(call, &decision);
                            let status = decision.deny_status();
                            act.answer(
                                error_response(status, "refused by the server's access policy"),
                                ctx,
                            );
                        }
                        PlayOutcome::NotFound(allowed) => {
                            act.core.play_not_found(allowed);
                            act.answer(error_response(404, "no such live stream"), ctx);
                        }
                        PlayOutcome::Playing(allowed, _, snapshot, joining) => {
                            act.core.log_decision("play", &Decision::Allow);
                            // Attached through the arbiter's group: leaving it is the
                            // membership's drop.
                            act.core.begin(Role::Player, allowed, None);
                            if head_only {
                                let head = response_head(200, &[("Content-Type", "video/x-flv")]);
                                // A HEAD asks no body: answered, the client is done.
                                act.core.ending(EndReason::Closed);
                                act.answer(head, ctx);
                            } else {
                                act.state = State::Streaming;
                                let from_seq = snapshot.next_seq;
                                // Headers and the cached GOP go out at once.
                                for bytes in act.start_of_body(snapshot) {
                                    if let Err(e) = act.writer.send(bytes) {
                                        act.core.send_failed(e);
                                        ctx.stop();
                                        return;
                                    }
                                }
                                if let Some(joining) = joining {
                                    let writer = act.writer.clone();
                                    act.core.join_group(
                                        joining,
                                        writer,
                                        Box::new(FlvTags),
                                        from_seq,
                                        &ctx.address(),
                                    );
                                }
                            }
                        }
                    }
                }),
        );
    }

    /// The response head, FLV header and metadata, then the codec configs and cached GOP as
    /// the tags every player on this arbiter shares.
    fn start_of_body(&mut self, snapshot: Snapshot) -> Vec<Bytes> {
        let (has_audio, has_video, left_out) =
            super::flv_tracks(&self.core.span, "FLV", &snapshot.configs);
        let metadata = snapshot.metadata.as_deref();
        let (audio, video) = flv::announced_tracks(has_audio, has_video, metadata);
        let left = |track| left_out.iter().any(|&(t, _)| t == track);
        let (audio, video) = (audio && !left(Track::Audio), video && !left(Track::Video));
        let single = flv::single_carried_track(has_audio, has_video, &left_out, metadata);
        let mut out = BytesMut::from(
            &response_head(
                200,
                &[
                    ("Content-Type", "video/x-flv"),
                    ("Cache-Control", "no-cache"),
                ],
            )[..],
        );
        out.extend_from_slice(&flv::file_header(audio, video));
        if let Some(metadata) = &snapshot.metadata {
            flv::write_metadata_tag(&mut out, metadata);
        }
        let mut start = vec![out.freeze()];
        for frame in &snapshot.configs {
            start.push(frame_tag(frame));
        }
        // After the configs, so that the player's first track exists when it reads this.
        let mut tracks = BytesMut::new();
        if let Some((audio, video)) = single {
            flv::write_single_track_tag(&mut tracks, audio, video);
        }
        if !tracks.is_empty() {
            start.push(tracks.freeze());
        }
        for frame in &snapshot.gop {
            start.push(frame_tag(frame));
        }
        start
    }
}

impl Session for HttpFlvSession {
    fn parts(&mut self) -> (&mut SessionCore, Option<&dyn Output>) {
        (&mut self.core, Some(&*self.writer))
    }

    fn first_request_done(&self) -> bool {
        self.state != State::Request
    }

    fn stream_ending(&mut self, _ctx: &mut Context<Self>) {
        self.state = State::Closing;
    }
}

session_actor!(HttpFlvSession, Some(FIRST_REQUEST_DEADLINE));
super::fanout::group_member!(HttpFlvSession);
tcp_input!(HttpFlvSession);

/// One FLV tag per frame for every player on this arbiter.
fn frame_tag(frame: &MediaFrame) -> Bytes {
    cached_encoding(frame, FLV_FORM, |out| {
        flv::write_frame_tag(out, frame);
    })
}

/// A player's frames as FLV tags.
struct FlvTags;

impl Frames for FlvTags {
    fn encode(&self, frame: &MediaFrame) -> Option<Bytes> {
        Some(frame_tag(frame))
    }
}

/// Metadata from the player's fan-out group; its frames are written by the group.
impl Handler<Deliver> for HttpFlvSession {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        if self.state != State::Streaming {
            return;
        }
        let Delivery::Metadata(metadata) = msg.item else {
            return;
        };
        let mut out = BytesMut::new();
        flv::write_metadata_tag(&mut out, &metadata);
        // Behind the frames already queued, like the metadata was behind them.
        if self.writer.send_merged(out.freeze()) == Err(SendError::Closed) {
            self.core.send_failed(SendError::Closed);
            ctx.stop();
        }
    }
}

//! The playing half of [`RtspSession`]: DESCRIBE asks `on_play` and answers the description
//! of the stream's tracks; PLAY subscribes and sends the cached GOP (paced) and live frames
//! as RTP through [`RtpPlay`], with RTCP sender reports.

use std::net::IpAddr;
use std::time::Instant;

use actix::prelude::*;
use bytes::Bytes;
use streamgate_actors::media::MediaFrame;
use streamgate_actors::notify::Decision;
use streamgate_actors::stream::{Subscribe, Unsubscribe};

use super::transport::Link;
use super::{random_u32, unix_micros, RtspSession, PACE_TICK};
use crate::protocol::flv::track_names;
use crate::protocol::rtsp::sdp;
use crate::protocol::rtsp::session::RtpPlay;
use crate::protocol::rtsp::RequestId;
use crate::session::arbiter::cached_encoding;
use crate::session::core::{request_play, Attach, PlayOutcome, Role};
use crate::session::ProtocolShell;

impl RtspSession {
    pub(super) fn ask_play(&mut self, ctx: &mut Context<Self>, request: RequestId, url: &str) {
        let Some(info) = self.stream_request(url) else {
            return self.refuse(ctx, request, 404, "URL names no app and stream");
        };
        let attach = Attach::Own {
            media: ctx.address().recipient(),
            ended: ctx.address().recipient(),
        };
        let asked = request_play(self.core.context.clone(), info, attach);
        ctx.wait(asked.into_actor(self).map(move |outcome, act, ctx| {
            let (allowed, stream, snapshot) = match outcome {
                PlayOutcome::Denied(decision) => {
                    act.core.log_decision("play", &decision);
                    return act.refuse(ctx, request, decision.deny_status(), "on_play refused");
                }
                PlayOutcome::NotFound(allowed) => {
                    act.core.log_decision("play", &Decision::Allow);
                    act.core.begin(Role::Player, allowed, None);
                    return act.refuse(ctx, request, 404, "the stream is not live");
                }
                PlayOutcome::Playing(allowed, stream, snapshot, _) => (allowed, stream, snapshot),
            };
            act.core.log_decision("play", &Decision::Allow);
            act.core.begin(Role::Player, allowed, Some(stream.clone()));
            let (play, tracks, left_out) = RtpPlay::describe(&snapshot.configs, random_u32);
            for left in &left_out {
                let _s = act.core.enter();
                tracing::warn!(
                    track = ?left.track,
                    codec = ?left.codec,
                    error = %left.error,
                    "RTSP cannot carry this track; playing without it"
                );
            }
            // The description says so too (its session information line).
            let left: Vec<_> = left_out.iter().map(|l| (l.track, l.codec)).collect();
            let info = if left.is_empty() {
                String::new()
            } else {
                format!("Left out (RTSP cannot carry them): {}.", track_names(&left))
            };
            // Nothing is held for a client that has not asked to play: PLAY subscribes again
            // and starts from the stream's GOP of that moment.
            stream.do_send(Unsubscribe {
                clientid: act.core.clientid,
            });
            if tracks.is_empty() {
                return act.refuse(
                    ctx,
                    request,
                    404,
                    "the stream has no codec configuration yet",
                );
            }
            act.links_out = tracks.iter().map(|_| None).collect();
            act.play = play;
            let host = match act.core.peer.ip() {
                IpAddr::V4(_) => "0.0.0.0",
                IpAddr::V6(_) => "::",
            };
            let description = sdp::build_with_info(host, "streamgate", &info, &tracks);
            if act
                .guarded(ctx, |rtsp| rtsp.accept_describe(request, description))
                .is_some()
            {
                act.pump(ctx);
            }
        }));
    }

    /// PLAY: subscribes to the stream again (DESCRIBE let go of it) and, with its snapshot,
    /// makes the packetizers, answers with `RTP-Info` and sends the GOP. A stream that ended
    /// since DESCRIBE answers `404`.
    pub(super) fn resume_play(&mut self, ctx: &mut Context<Self>, request: RequestId) {
        if self.play.is_playing() {
            // A PLAY while playing: new RTP-Info, the media goes on as it was.
            let rtp_info = self.start_playing();
            if self
                .guarded(ctx, |rtsp| rtsp.accept_play(request, rtp_info))
                .is_some()
            {
                self.pump(ctx);
            }
            return;
        }
        let Some(stream) = self.core.active().and_then(|a| a.stream.clone()) else {
            return self.refuse(ctx, request, 454, "PLAY in a session that has no stream");
        };
        let subscribed = stream.send(Subscribe {
            clientid: self.core.clientid,
            media: ctx.address().recipient(),
            ended: ctx.address().recipient(),
        });
        ctx.wait(subscribed.into_actor(self).map(move |snapshot, act, ctx| {
            let Ok(snapshot) = snapshot else {
                return act.refuse(ctx, request, 404, "the stream ended before PLAY");
            };
            act.play.update_configs(&snapshot.configs);
            act.from_seq = snapshot.next_seq;
            act.snapshot = Some(snapshot);
            let rtp_info = act.start_playing();
            if act
                .guarded(ctx, |rtsp| rtsp.accept_play(request, rtp_info))
                .is_none()
            {
                return;
            }
            // A player a little behind still has its keep-alives and reports read.
            act.writer.set_read_limit(act.core.limits.queue_bytes);
            act.flush(ctx);
            act.send_reports(ctx);
            act.replay(ctx);
            act.pump(ctx);
        }));
    }

    /// Starts the packetizers of the tracks set up; returns the RTP-Info of PLAY.
    pub(super) fn start_playing(&mut self) -> Vec<(String, u16, u32)> {
        let first = self
            .snapshot
            .as_ref()
            .and_then(|s| s.gop.first().map(|f| f.pts))
            .unwrap_or(0);
        let setups = self.rtsp.setups();
        let set_up: Vec<(usize, String)> = (0..self.links_out.len())
            .filter(|i| self.links_out[*i].is_some())
            .map(|i| {
                let url = setups.iter().find(|s| s.track == Some(i));
                (i, url.map(|s| s.url.clone()).unwrap_or_default())
            })
            .collect();
        self.play.start(&set_up, first, Instant::now(), random_u32)
    }

    /// Sends the cached GOP of the snapshot PLAY took, paced (see [`JoinPacer`]): its first
    /// keyframe now, the rest as the pacer releases it.
    pub(super) fn replay(&mut self, ctx: &mut Context<Self>) {
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
    pub(super) fn arm_pacer(&mut self, ctx: &mut Context<Self>) {
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

    /// Sends `packets` (by track index) on each track's link: RTP, or (`rtcp`) RTCP. Over
    /// UDP, the packets of one track that follow each other go out together
    /// ([`UdpOut::send_all`](crate::session::output::udp::UdpOut::send_all)).
    pub(super) fn send_packets(&mut self, packets: &[(usize, Bytes)], rtcp: bool) {
        let mut rest = packets;
        while let Some((index, packet)) = rest.first() {
            match self.links_out.get(*index).and_then(Option::as_ref) {
                Some(Link::Interleaved { rtp, rtcp: channel }) => {
                    let channel = if rtcp { *channel } else { *rtp };
                    let _ = self.rtsp.send_interleaved(channel, &[packet]);
                    rest = &rest[1..];
                }
                Some(Link::Udp { rtp, rtcp: out, .. }) => {
                    let out = if rtcp { out } else { rtp };
                    let run = rest.iter().take_while(|(i, _)| i == index).count();
                    let datagrams: Vec<&[u8]> = rest[..run].iter().map(|(_, p)| &p[..]).collect();
                    // A full socket buffer drops the datagrams and sends the player to the
                    // next keyframe, as a full TCP queue does.
                    let _ = self.core.backlog.sent(out.send_all(&datagrams));
                    rest = &rest[run..];
                }
                None => rest = &rest[1..],
            }
        }
    }

    /// Packetizes and sends one frame to every track of its kind that is set up: packetized
    /// by the first player of this arbiter with the same track form, restamped by the others
    /// ([`RtpPlay::packetize_shared`]).
    pub(super) fn send_frame(&mut self, frame: &MediaFrame) {
        let mut packets = Vec::new();
        self.play
            .packetize_shared(frame, &mut packets, &mut |form, make| {
                cached_encoding(frame, form, |out| make(out))
            });
        self.send_packets(&packets, false);
    }

    /// RTCP sender reports for every playing track: NTP now and the RTP time it maps to.
    pub(super) fn send_reports(&mut self, ctx: &mut Context<Self>) {
        let reports = self.play.sender_reports(Instant::now(), unix_micros());
        self.send_packets(&reports, true);
        self.flush(ctx);
    }
}

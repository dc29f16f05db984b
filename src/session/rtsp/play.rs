//! The playing half of [`RtspSession`]: DESCRIBE asks `on_play` and answers the description
//! of the stream's tracks; PLAY joins the arbiter's fan-out group and sends the cached GOP
//! (paced) and live frames as RTP through the session's [`Feed`](super::feed::Feed), with
//! RTCP sender reports.

use std::net::IpAddr;
use std::time::Instant;

use actix::prelude::*;
use bytes::Bytes;
use streamgate_actors::media::{FrameKind, MediaFrame};
use streamgate_actors::notify::Decision;
use streamgate_actors::stream::Unsubscribe;

use super::feed::{Out, RtspFrames};
use super::transport::Link;
use super::{random_u32, stream_u32, unix_micros, RtspSession, PACE_TICK};
use crate::protocol::flv::track_names;
use crate::protocol::pacing;
use crate::protocol::rtsp::sdp;
use crate::protocol::rtsp::session::RtpPlay;
use crate::protocol::rtsp::RequestId;
use crate::session::arbiter::cached_only;
use crate::session::core::{request_play, Attach, PlayOutcome, Role};
use crate::session::fanout;
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
            let mut index = 0;
            let (play, tracks, left_out) = RtpPlay::describe(&snapshot.configs, || {
                index += 1;
                stream_u32(&stream, index, b's')
            });
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
            act.feed.borrow_mut().play = play;
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

    /// PLAY: joins the stream again (DESCRIBE let go of it) through the arbiter's fan-out
    /// group and, with its snapshot, makes the packetizers, answers with `RTP-Info`, sends the
    /// GOP (paced) and becomes a member of the group, which hands it the live frames. A stream
    /// that ended since DESCRIBE answers `404`.
    pub(super) fn resume_play(&mut self, ctx: &mut Context<Self>, request: RequestId) {
        if self.playing() {
            // A PLAY while playing: new RTP-Info, the media goes on as it was.
            let rtp_info = self.start_playing(None, &[]);
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
        ctx.wait(
            fanout::join(stream)
                .into_actor(self)
                .map(move |joined, act, ctx| {
                    let Some((snapshot, joining)) = joined else {
                        return act.refuse(ctx, request, 404, "the stream ended before PLAY");
                    };
                    act.feed.borrow_mut().play.update_configs(&snapshot.configs);
                    let first = snapshot.gop.first().map(|f| f.pts);
                    let rtp_info = act.start_playing(first, &snapshot.gop);
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
                    // The cached GOP, paced (see [`JoinPacer`]): its first keyframe now,
                    // the rest as the pacer releases it.
                    let from_seq = snapshot.next_seq;
                    act.feed.borrow_mut().start(snapshot.gop, Instant::now());
                    act.flush(ctx);
                    let member = Box::new(RtspFrames(act.feed.clone()));
                    let writer = act.writer.clone();
                    act.core
                        .join_group(joining, writer, member, from_seq, &ctx.address());
                    act.arm_pacer(ctx);
                    act.pump(ctx);
                }),
        );
    }

    /// Starts the packetizers of the tracks set up, the media timeline at `first` (µs: the
    /// snapshot's first frame; `None`, a PLAY while playing, starts it at 0 again), each
    /// track numbered as the worker's other players numbered its first frame in `gop` when
    /// they can be ([`RtpPlay::start`]); returns the RTP-Info of PLAY.
    pub(super) fn start_playing(
        &mut self,
        first: Option<i64>,
        gop: &[MediaFrame],
    ) -> Vec<(String, u16, u32)> {
        let setups = self.rtsp.setups();
        let set_up: Vec<(usize, String)> = (0..self.links_out.len())
            .filter(|i| self.links_out[*i].is_some())
            .map(|i| {
                let url = setups.iter().find(|s| s.track == Some(i));
                (i, url.map(|s| s.url.clone()).unwrap_or_default())
            })
            .collect();
        self.update_outs();
        let stream = self.core.active().and_then(|a| a.stream.clone());
        let offset = |index| match &stream {
            Some(stream) => stream_u32(stream, index, b't'),
            None => random_u32(),
        };
        // A track numbers its packets as the player of this worker that first sent the
        // track's first frame did (its packets are cached with the frame).
        let mut first_made = |track, form| {
            let frame = gop
                .iter()
                .find(|f| f.track == track && f.kind == FrameKind::Media)?;
            cached_only(frame, form).map(|record| (frame.pts, record))
        };
        self.feed.borrow_mut().play.start(
            &set_up,
            first.unwrap_or(0),
            Instant::now(),
            random_u32,
            offset,
            &mut first_made,
        )
    }

    /// Gives the feed where each track's RTP goes now (the RTP half of its link).
    pub(super) fn update_outs(&mut self) {
        self.feed.borrow_mut().outs = self
            .links_out
            .iter()
            .map(|link| link.as_ref().map(Out::of))
            .collect();
    }

    /// Arms the timer for the pacer's next frames, unless one is armed. Live frames also
    /// release what is due, so the timer matters only between them: it waits at least
    /// [`PACE_TICK`], which bounds the timers of a paced player, and fires on the tick grid
    /// every paced player's timer is on ([`pacing::on_grid`]), so 1000 paced players cost
    /// their thread ten wake-ups a second, not ten thousand. While the pacer holds frames it
    /// is armed again after each release.
    pub(super) fn arm_pacer(&mut self, ctx: &mut Context<Self>) {
        if self.pace_timer.is_some() {
            return;
        }
        let Some(due) = self.feed.borrow().pacer.next_due() else {
            return;
        };
        // On a grid shared by the arbiter's players: their timers wake the thread together.
        let now = Instant::now();
        let at = pacing::on_grid(due.max(now + PACE_TICK), pace_epoch(), PACE_TICK);
        let wait = at.saturating_duration_since(now);
        self.pace_timer = Some(ctx.run_later(wait, |act, ctx| {
            act.pace_timer = None;
            act.feed.borrow_mut().release(Instant::now());
            act.flush_as(ctx, true);
            act.arm_pacer(ctx);
        }));
    }

    /// Sends RTCP `packets` (by track index) on each track's link. Over UDP, the packets of
    /// one track that follow each other go out together
    /// ([`UdpOut::send_all`](crate::session::output::udp::UdpOut::send_all)).
    fn send_rtcp(&mut self, packets: &[(usize, Bytes)]) {
        let mut rest = packets;
        while let Some((index, _)) = rest.first() {
            let run = rest.iter().take_while(|(i, _)| i == index).count();
            match self.links_out.get(*index).and_then(Option::as_ref) {
                Some(Link::Interleaved { rtcp, .. }) => {
                    for (_, packet) in &rest[..run] {
                        let _ = self.rtsp.send_interleaved(*rtcp, &[packet]);
                    }
                }
                Some(Link::Udp { rtcp, .. }) => {
                    let datagrams: Vec<&[u8]> = rest[..run].iter().map(|(_, p)| &p[..]).collect();
                    let _ = rtcp.send_all(&datagrams);
                }
                None => {}
            }
            rest = &rest[run..];
        }
    }

    /// RTCP sender reports for every playing track: NTP now and the RTP time it maps to.
    pub(super) fn send_reports(&mut self, ctx: &mut Context<Self>) {
        let reports = self
            .feed
            .borrow()
            .play
            .sender_reports(Instant::now(), unix_micros());
        self.send_rtcp(&reports);
        self.flush(ctx);
    }
}

/// The origin of the pacers' tick grid (the first use in the process).
pub(super) fn pace_epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

//! The playing half of [`RtspSession`]: DESCRIBE asks `on_play` and answers the description
//! of the stream's tracks; PLAY subscribes and sends the cached GOP (paced) and live frames
//! as RTP through [`RtpPlay`], with RTCP sender reports.

use std::net::IpAddr;
use std::time::Instant;

use actix::prelude::*;
use bytes::{BufMut, Bytes, BytesMut};
use streamgate_actors::media::MediaFrame;
use streamgate_actors::notify::Decision;
use streamgate_actors::stream::{Subscribe, Unsubscribe};

use super::transport::Link;
use super::{random_u32, unix_micros, RtspSession, INTERLEAVED_HEAD, PACE_TICK};
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

    /// Packetizes one frame for every track of its kind that is set up: packetized by the
    /// first player of this arbiter with the same track form, the others writing only their
    /// headers ([`RtpPlay::packetize_shared`]). Interleaved packets are queued as their `$`
    /// framing and header, then the shared payload (two buffers, no copy of the media; written
    /// by the next flush); UDP datagrams are sent now, the packets of one track together
    /// ([`UdpOut::send_all`](crate::session::output::udp::UdpOut::send_all)).
    pub(super) fn send_frame(&mut self, frame: &MediaFrame) {
        let mut packets = std::mem::take(&mut self.packets);
        self.play
            .packetize_shared(frame, &mut packets, &mut |form, make| {
                cached_encoding(frame, form, |out| make(out))
            });
        // An interleaved frame's length is 16 bits; RTP packets are far smaller (MTU-sized).
        packets.retain(|(_, p)| p.len() <= usize::from(u16::MAX));
        let mut heads = BytesMut::with_capacity(packets.len() * INTERLEAVED_HEAD);
        let mut datagrams = BytesMut::new();
        for (index, packet) in &packets {
            match self.links_out.get(*index).and_then(Option::as_ref) {
                Some(Link::Interleaved { rtp, .. }) => {
                    heads.put_u8(b'$');
                    heads.put_u8(*rtp);
                    heads.put_u16(packet.len() as u16);
                    heads.put_slice(&packet.header);
                }
                Some(Link::Udp { .. }) => {
                    datagrams.put_slice(&packet.header);
                    datagrams.put_slice(&packet.payload);
                }
                None => {}
            }
        }
        let (mut heads, datagrams) = (heads.freeze(), datagrams.freeze());
        let mut offset = 0;
        let mut run: Vec<&[u8]> = Vec::new();
        for (i, (index, packet)) in packets.iter().enumerate() {
            match self.links_out.get(*index).and_then(Option::as_ref) {
                Some(Link::Interleaved { .. }) => {
                    self.media.push(heads.split_to(INTERLEAVED_HEAD));
                    self.media.push(packet.payload.clone());
                }
                Some(Link::Udp { rtp, .. }) => {
                    run.push(&datagrams[offset..offset + packet.len()]);
                    offset += packet.len();
                    if packets.get(i + 1).is_none_or(|(next, _)| next != index) {
                        // A full socket buffer drops the datagrams and sends the player to
                        // the next keyframe, as a full TCP queue does.
                        let _ = self.core.backlog.sent(rtp.send_all(&run));
                        run.clear();
                    }
                }
                None => {}
            }
        }
        packets.clear();
        self.packets = packets;
    }

    /// RTCP sender reports for every playing track: NTP now and the RTP time it maps to.
    pub(super) fn send_reports(&mut self, ctx: &mut Context<Self>) {
        let reports = self.play.sender_reports(Instant::now(), unix_micros());
        self.send_rtcp(&reports);
        self.flush(ctx);
    }
}

//! The publishing half of [`RtspSession`]: ANNOUNCE asks `on_publish` and claims the name;
//! RTP and RTCP of the recorded tracks (interleaved or over UDP) become frames through
//! [`RtpPublish`].

use std::time::Instant;

use actix::prelude::*;
use bytes::Bytes;
use streamgate_actors::stream::Kick;

use super::transport::Link;
use super::RtspSession;
use crate::protocol::rtsp::session::RtpPublish;
use crate::protocol::rtsp::Event;
use crate::session::core::{request_publish, PublishAnswer};
use crate::session::ProtocolShell;

impl RtspSession {
    /// ANNOUNCE (`event`, a `PublishRequested`): `on_publish`, then the name is claimed and
    /// the tracks set up for RTP.
    pub(super) fn ask_publish(&mut self, ctx: &mut Context<Self>, event: Event) {
        let Event::PublishRequested {
            request,
            url,
            tracks,
        } = event
        else {
            return;
        };
        let Some(info) = self.stream_request(&url) else {
            return self.refuse(ctx, request, 400, "URL names no app and stream");
        };
        let kick = ctx.address().recipient::<Kick>();
        let asked = request_publish(self.core.context.clone(), info, kick);
        ctx.wait(asked.into_actor(self).map(move |outcome, act, ctx| {
            match act.core.publish_answered("publish", outcome) {
                PublishAnswer::Denied(decision) => {
                    let status = decision.deny_status();
                    act.refuse(ctx, request, status, "on_publish refused");
                }
                PublishAnswer::Publish => {
                    act.publish = RtpPublish::new(&tracks);
                    act.links_in = tracks.iter().map(|_| None).collect();
                    act.reorder_timers = vec![false; tracks.len()];
                    for config in RtpPublish::description_configs(&tracks) {
                        act.core.publish(config);
                    }
                    if act.guarded(ctx, |rtsp| rtsp.accept(request)).is_some() {
                        act.pump(ctx);
                    }
                }
                PublishAnswer::Taken => {
                    act.refuse(ctx, request, 403, "already published by another client")
                }
                PublishAnswer::Unavailable => {
                    act.refuse(ctx, request, 503, "the stream cannot be claimed now")
                }
            }
        }));
    }

    /// RTP or RTCP from a publisher, by interleaved channel.
    pub(super) fn interleaved(&mut self, channel: u8, data: Bytes) {
        let found = self
            .links_in
            .iter()
            .enumerate()
            .find_map(|(i, link)| match link {
                Some(Link::Interleaved { rtp, rtcp }) if *rtp == channel || *rtcp == channel => {
                    Some((i, *rtcp == channel))
                }
                _ => None,
            });
        if let Some((index, rtcp)) = found {
            self.ingest(index, rtcp, data);
        } else if self.playing() {
            // A player's RTCP receiver reports: proof of life, nothing more.
            self.last_activity = Instant::now();
        }
    }

    /// One RTP or RTCP packet of publisher track `index`.
    pub(super) fn ingest(&mut self, index: usize, rtcp: bool, data: Bytes) {
        self.last_activity = Instant::now();
        self.core.media_arrived();
        if self.core.publishing().is_none() {
            return;
        }
        let mut frames = Vec::new();
        self.publish
            .receive(index, rtcp, data, self.last_activity, &mut frames);
        for frame in frames {
            self.core.publish(frame);
        }
    }

    /// Gives up on the gap of publisher track `index`'s reorder buffer once its wait is over
    /// (the next packet would too, but may not come).
    pub(super) fn arm_reorder_timer(&mut self, ctx: &mut Context<Self>, index: usize) {
        let Some(armed) = self.reorder_timers.get_mut(index).filter(|armed| !**armed) else {
            return;
        };
        let Some(deadline) = self.publish.reorder_deadline(index) else {
            return;
        };
        *armed = true;
        let wait = deadline.saturating_duration_since(Instant::now());
        ctx.run_later(wait, move |act, ctx| {
            act.reorder_timers[index] = false;
            let mut frames = Vec::new();
            act.publish
                .release_expired(index, Instant::now(), &mut frames);
            if act.core.publishing().is_some() {
                for frame in frames {
                    act.core.publish(frame);
                }
            }
            act.arm_reorder_timer(ctx, index);
        });
    }
}

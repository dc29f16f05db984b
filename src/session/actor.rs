//! The actor side every session shares: the [`Session`] trait (what differs between the
//! protocols: their checks, what they do when the stream ends or the session stops), [`start`]
//! (the mailbox bound, the table entry), [`tick`] (the first-request deadline and the other
//! one-second checks, on the arbiter's timer) and [`session_actor!`], which writes each
//! session's `Actor` implementation and its `Kick`, `Control` and `StreamEnded` handlers from
//! them.

use std::time::Duration;

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context};

use streamgate_actors::notify::UpdateAnswer;
use streamgate_actors::stream::Kick;
use streamgate_actors::usage::EndReason;

use super::core::{SessionCore, SESSION_MAILBOX};
use super::output::Output;

/// What the parts every session shares ([`session_actor!`]) need of a session actor.
pub trait Session:
    Actor<Context = Context<Self>> + actix::Handler<Kick> + actix::Handler<super::table::Control>
{
    /// Its core, and its output once it has one.
    fn parts(&mut self) -> (&mut SessionCore, Option<&dyn Output>);

    /// Whether the client's first request was accepted: until then the deadline given to
    /// [`tick`] runs.
    fn first_request_done(&self) -> bool {
        true
    }

    /// What the protocol starts beside what [`start`] does (its own timers, streams).
    fn starting(&mut self, _ctx: &mut Context<Self>) {}

    /// The protocol's own one-second checks ([`tick`]): `Some((reason, why))` closes the
    /// session, `reason` for its `on_done`, `why` for the log.
    fn check(&mut self) -> Option<(EndReason, &'static str)> {
        None
    }

    /// What the protocol does when the stream ends under its player, before the player's
    /// `on_done` (an end-of-stream message, what a paced replay still holds).
    fn stream_ending(&mut self, _ctx: &mut Context<Self>) {}

    /// What the protocol tells its client when the server ends the session by a kick (an
    /// `on_update` answered with a refusal, an operator's kick), in its own words where it
    /// has them (`why` is the description); the session then stops.
    fn kicking(&mut self, _ctx: &mut Context<Self>, _why: &str) {}

    /// What the protocol lets go of when the session stops, before its `on_done`.
    fn release(&mut self) {}
}

/// Ends the session for a kick: logs it, lets the protocol tell its client
/// ([`Session::kicking`]) and stops; its `on_done` says `kick.end`.
pub fn kick<A: Session>(act: &mut A, ctx: &mut Context<A>, kick: &Kick) {
    act.parts().0.kicked(kick);
    if kick.end == EndReason::Kicked {
        act.kicking(ctx, kick.reason);
    }
    ctx.stop();
}

/// Asks `on_update` about the active play or publish when it is due; an answer that refuses
/// kicks the session, if the play or publish it was about is still the active one.
fn update<A: Session>(act: &mut A, ctx: &mut Context<A>) {
    let core = act.parts().0;
    let Some((term, update)) = core.update_due() else {
        return;
    };
    let request = core.context.notify.send(update);
    ctx.spawn(
        actix::fut::wrap_future::<_, A>(request).map(move |answer, act, ctx| {
            if let Ok(UpdateAnswer::End(_)) = answer {
                if act.parts().0.is_term(term) {
                    let refused = Kick {
                        reason: "Ended by the business server (on_update refused).",
                        end: EndReason::Kicked,
                    };
                    kick(act, ctx, &refused);
                }
            }
        }),
    );
}

/// Starts what every session runs: the mailbox bound, its entry in the arbiter's table (which
/// brings it kicks and the arbiter's one-second timer, [`tick`]), the first log line.
pub fn start<A: Session>(act: &mut A, ctx: &mut Context<A>) {
    ctx.set_mailbox_capacity(SESSION_MAILBOX);
    act.parts().0.register(ctx.address().recipient());
    act.parts().0.started();
    act.starting(ctx);
}

/// The one-second checks, on each tick of the arbiter's timer: the deadline of the client's
/// first request (`deadline`, where the session has one), the protocol's [`Session::check`],
/// then [`SessionCore::tick`]. The deadline is checked here rather than by a timer of its own,
/// which a session would otherwise hold (allocated) until it ran out, long after the first
/// request: it ends the session within a second after it passes.
pub fn tick<A: Session>(act: &mut A, ctx: &mut Context<A>, deadline: Option<Duration>) {
    let late = |act: &mut A| {
        deadline.is_some_and(|deadline| {
            !act.first_request_done() && act.parts().0.usage.started.elapsed() >= deadline
        })
    };
    let closing = if late(act) {
        Some((EndReason::Idle, "no accepted request in time"))
    } else {
        act.check()
    };
    if let Some((reason, why)) = closing {
        let core = act.parts().0;
        let _s = core.enter();
        tracing::info!("{why}; closing");
        drop(_s);
        core.ending(reason);
        ctx.stop();
        return;
    }
    let (core, output) = act.parts();
    if core.tick(output) {
        ctx.stop();
        return;
    }
    update(act, ctx);
}

/// The `Actor` implementation of a [`Session`] and its `Kick`, `Control` and `StreamEnded`
/// handlers: it starts with [`start`], takes its one-second checks with [`tick`] (the
/// first-request deadline given) and ends with [`SessionCore::stopped`] (after
/// [`Session::release`]); a kick closes it; the end of its stream ends a player (after
/// [`Session::stream_ending`]). Either way its `on_done` follows, once.
macro_rules! session_actor {
    ($session:ty, $deadline:expr) => {
        impl actix::Actor for $session {
            type Context = actix::Context<Self>;

            fn started(&mut self, ctx: &mut Self::Context) {
                $crate::session::actor::start(self, ctx);
            }

            fn stopped(&mut self, _ctx: &mut Self::Context) {
                use $crate::session::actor::Session;
                self.release();
                self.parts().0.stopped();
            }
        }

        impl actix::Handler<streamgate_actors::stream::Kick> for $session {
            type Result = ();

            fn handle(&mut self, msg: streamgate_actors::stream::Kick, ctx: &mut Self::Context) {
                $crate::session::actor::kick(self, ctx, &msg);
            }
        }

        impl actix::Handler<$crate::session::table::Control> for $session {
            type Result = ();

            fn handle(&mut self, msg: $crate::session::table::Control, ctx: &mut Self::Context) {
                match msg {
                    $crate::session::table::Control::Kick(kick) => {
                        $crate::session::actor::kick(self, ctx, &kick)
                    }
                    $crate::session::table::Control::Tick => {
                        $crate::session::actor::tick(self, ctx, $deadline)
                    }
                }
            }
        }

        impl actix::Handler<streamgate_actors::stream::StreamEnded> for $session {
            type Result = ();

            fn handle(
                &mut self,
                msg: streamgate_actors::stream::StreamEnded,
                ctx: &mut Self::Context,
            ) {
                use $crate::session::actor::Session;
                if !self.parts().0.is_player() {
                    return;
                }
                self.stream_ending(ctx);
                self.parts().0.stream_ended(&msg);
                actix::ActorContext::stop(ctx);
            }
        }
    };
}
pub(crate) use session_actor;

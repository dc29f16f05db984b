//! [`Registry`]: which live streams exist. Maps a [`StreamKey`] to its [`StreamActor`], starts
//! a stream when a publish is allowed, refuses a second publisher for a live key, forgets a
//! stream when it stops, and ends every stream at shutdown.
//!
//! One registry runs for the whole server. It must not hold media or know any protocol.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use actix::prelude::*;

use crate::media::StreamKey;
use crate::session::ClientId;
use crate::stream::{EndStream, Kick, StreamActor};
use crate::usage::EndReason;

/// Why a publish was refused by the registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefused {
    /// Another client is already publishing this stream.
    #[error("stream {0} is already being published")]
    AlreadyPublishing(StreamKey),
}

/// Claim a stream key for a publisher. On success a new [`StreamActor`] runs on `arbiter`
/// (the publisher's own, so the publisher-to-stream hop stays on one thread).
#[derive(Message)]
#[rtype(result = "Result<Addr<StreamActor>, PublishRefused>")]
pub struct ClaimPublish {
    /// The stream to publish.
    pub key: StreamKey,
    /// The publisher.
    pub clientid: ClientId,
    /// Where the stream tells the publisher it is being ended.
    pub kick: Recipient<Kick>,
    /// Where to run the stream actor.
    pub arbiter: ArbiterHandle,
}

/// Find a live stream.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Option<Addr<StreamActor>>")]
pub struct Lookup {
    /// The stream.
    pub key: StreamKey,
}

/// A stream stopped: forget it (when `id` still names the registered instance).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct StreamStopped {
    /// The stream.
    pub key: StreamKey,
    /// The instance that stopped.
    pub id: u64,
}

/// End every live stream (server shutdown). Replies with how many were told to end.
#[derive(Message, Debug, Clone)]
#[rtype(result = "usize")]
pub struct EndAll {
    /// Why, for the logs.
    pub reason: &'static str,
}

/// Every live stream's address, asked by the operator's view.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Vec<Addr<StreamActor>>")]
pub struct ListStreams;

/// The live streams by key, as the registry last wrote them: a reader on any thread finds a
/// stream without a message to the registry's thread (a player's join looks one up).
#[derive(Clone, Default)]
pub struct Directory(Arc<RwLock<Streams>>);

/// Each live stream's instance id and address.
type Streams = HashMap<StreamKey, (u64, Addr<StreamActor>)>;

impl Directory {
    /// The live stream `key`, if there is one.
    pub fn lookup(&self, key: &StreamKey) -> Option<Addr<StreamActor>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .map(|(_, addr)| addr.clone())
            .filter(|addr| addr.connected())
    }

    fn write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<StreamKey, (u64, Addr<StreamActor>)>> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Streams> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The live streams of the server. It alone writes its [`Directory`]; anyone may read it.
#[derive(Default)]
pub struct Registry {
    streams: Directory,
    next_id: u64,
}

impl Registry {
    /// The directory this registry keeps.
    pub fn directory(&self) -> Directory {
        self.streams.clone()
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<ClaimPublish> for Registry {
    type Result = Result<Addr<StreamActor>, PublishRefused>;

    fn handle(&mut self, msg: ClaimPublish, ctx: &mut Self::Context) -> Self::Result {
        if self.streams.lookup(&msg.key).is_some() {
            return Err(PublishRefused::AlreadyPublishing(msg.key));
        }
        self.next_id += 1;
        let id = self.next_id;
        let registry = ctx.address();
        let (key, clientid, kick) = (msg.key.clone(), msg.clientid, msg.kick);
        let addr = StreamActor::start_in_arbiter(&msg.arbiter, move |_| {
            StreamActor::new(key, id, clientid, kick, registry)
        });
        self.streams.write().insert(msg.key, (id, addr.clone()));
        Ok(addr)
    }
}

impl Handler<ListStreams> for Registry {
    type Result = MessageResult<ListStreams>;

    fn handle(&mut self, _: ListStreams, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.streams
                .read()
                .values()
                .map(|(_, addr)| addr.clone())
                .filter(|addr| addr.connected())
                .collect(),
        )
    }
}

impl Handler<Lookup> for Registry {
    type Result = Option<Addr<StreamActor>>;

    fn handle(&mut self, msg: Lookup, _ctx: &mut Self::Context) -> Self::Result {
        self.streams.lookup(&msg.key)
    }
}

impl Handler<StreamStopped> for Registry {
    type Result = ();

    fn handle(&mut self, msg: StreamStopped, _ctx: &mut Self::Context) {
        let mut streams = self.streams.write();
        if streams.get(&msg.key).map(|(id, _)| *id) == Some(msg.id) {
            streams.remove(&msg.key);
        }
    }
}

impl Handler<EndAll> for Registry {
    type Result = usize;

    fn handle(&mut self, msg: EndAll, _ctx: &mut Self::Context) -> usize {
        let streams = self.streams.read();
        for (_, addr) in streams.values() {
            addr.do_send(EndStream {
                reason: msg.reason,
                end: EndReason::Shutdown,
            });
        }
        streams.len()
    }
}

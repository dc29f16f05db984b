//! Relay connections between nodes (wire format: `wire.rs`).
//!
//! - The owner's side: [`accept`] takes relay connections on `<listen>`; each is checked (its
//!   `Pull`'s HMAC and time) and served by a [`RelayServe`], a subscriber of the local stream
//!   like a player: the snapshot (metadata, configs, GOP) first, then live frames. Its bounded
//!   mailbox makes the stream's drop policy apply: a relay that cannot keep up loses frames to
//!   the next keyframe, as a slow player does.
//! - The pulling side: [`pull`] connects to the owner's `<advertise>`, claims the stream in the
//!   local registry and runs a [`RelayPull`], the local stream's publisher. It ends the local
//!   stream (its players end with `stream_ended`) when the owner says the publisher left, the
//!   connection closes or stays silent past the lease, or no local player was left for
//!   `<relay_idle_ms>`.
//!
//! No hook is called for a relay: the players' hooks go out from the node they connected to.

use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use streamgate_actors::registry::ClaimPublish;
use streamgate_actors::session::{next_internal_id, ClientId};
use streamgate_actors::stream::{
    Deliver, Delivery, Describe, Kick, PublishFrame, PublishMetadata, StreamActor, StreamEnded,
    Subscribe, Unpublish, Unsubscribe,
};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use super::directory::Owner;
use super::metrics::metrics;
use super::wire::{self, Message};
use super::{unix_ms, Cluster};
use streamgate_actors::media::StreamKey;

/// Longest wait to connect to an owner, and for its first answers.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a quiet relay says it is alive.
const KEEPALIVE: Duration = Duration::from_secs(1);
/// Mailbox of a served relay (frames from the stream).
const SERVE_MAILBOX: usize = 512;
/// Frames queued to a served relay's socket.
const SEND_QUEUE: usize = 64;

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(wire::MAX_MESSAGE)
        .new_codec()
}

/// Accepts relay connections until the process ends.
pub async fn accept(cluster: Cluster, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                let _ = socket.set_nodelay(true);
                actix_rt::spawn(serve(cluster.clone(), socket, peer));
            }
            Err(e) => {
                tracing::warn!(error = %e, "relay accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Checks a relay connection's request and serves it.
async fn serve(cluster: Cluster, socket: TcpStream, peer: std::net::SocketAddr) {
    let (read, write) = socket.into_split();
    let mut reader = FramedRead::new(read, codec());
    let mut writer = FramedWrite::new(write, codec());
    let first = tokio::time::timeout(CONNECT_TIMEOUT, reader.next()).await;
    let pull = match first {
        Ok(Some(Ok(bytes))) => match wire::decode(bytes.freeze()) {
            Ok(Message::Pull(pull)) => pull,
            Ok(_) => return refuse(writer, peer, "a relay starts with a pull".into()).await,
            Err(e) => return refuse(writer, peer, e.to_string()).await,
        },
        _ => return,
    };
    if let Err(e) = wire::verify(&cluster.0.secret, &pull, unix_ms()) {
        return refuse(writer, peer, format!("{e} (from node {})", pull.node)).await;
    }
    let Some(stream) = cluster.owned_stream(&pull.key) else {
        return refuse(
            writer,
            peer,
            format!("{} is not published on this node", pull.key),
        )
        .await;
    };
    if writer.send(wire::encode(&Message::Accepted)).await.is_err() {
        return;
    }
    tracing::info!(stream = %pull.key, node = %pull.node, %peer, "serving a relay");
    let (queue, mut out) = mpsc::channel::<Bytes>(SEND_QUEUE);
    actix_rt::spawn(async move {
        while let Some(bytes) = out.recv().await {
            if writer.send(bytes).await.is_err() {
                break;
            }
        }
    });
    let key = pull.key;
    RelayServe::create(move |ctx| {
        ctx.add_stream(reader);
        RelayServe {
            id: next_internal_id(),
            key,
            node: pull.node,
            stream,
            queue,
            last_sent: Instant::now(),
        }
    });
}

async fn refuse(
    mut writer: FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
    peer: std::net::SocketAddr,
    reason: String,
) {
    metrics().relays_refused.inc();
    tracing::warn!(%peer, %reason, "relay connection refused");
    let _ = writer.send(wire::encode(&Message::Refused(reason))).await;
}

/// The owner's side of one relay connection: a subscriber of the local stream.
pub struct RelayServe {
    id: ClientId,
    key: StreamKey,
    node: String,
    stream: Addr<StreamActor>,
    queue: mpsc::Sender<Bytes>,
    last_sent: Instant,
}

impl RelayServe {
    /// Queues `bytes` for the socket, holding the mailbox while the queue is full (so the
    /// stream's drop policy judges this relay as it does a slow player).
    fn send(&mut self, ctx: &mut Context<Self>, bytes: Bytes) {
        self.send_all(ctx, vec![bytes]);
    }

    /// Queues `items` in order: what does not fit now is sent by one waiting future, in order,
    /// before the next message is handled.
    fn send_all(&mut self, ctx: &mut Context<Self>, items: Vec<Bytes>) {
        self.last_sent = Instant::now();
        let mut items = items.into_iter();
        let mut rest = Vec::new();
        for bytes in items.by_ref() {
            match self.queue.try_send(bytes) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(bytes)) => {
                    rest.push(bytes);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    ctx.stop();
                    return;
                }
            }
        }
        rest.extend(items);
        if rest.is_empty() {
            return;
        }
        let queue = self.queue.clone();
        ctx.wait(
            async move {
                for bytes in rest {
                    if queue.send(bytes).await.is_err() {
                        return false;
                    }
                }
                true
            }
            .into_actor(self)
            .map(|sent, _, ctx| {
                if !sent {
                    ctx.stop();
                }
            }),
        );
    }
}

impl Actor for RelayServe {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(SERVE_MAILBOX);
        metrics().relays_served.inc();
        let subscribe = Subscribe {
            clientid: self.id,
            media: ctx.address().recipient(),
            ended: ctx.address().recipient(),
        };
        ctx.wait(
            self.stream
                .send(subscribe)
                .into_actor(self)
                .map(|snapshot, act, ctx| {
                    let Ok(snapshot) = snapshot else {
                        act.send(ctx, wire::encode(&Message::End));
                        ctx.stop();
                        return;
                    };
                    let metadata = snapshot
                        .metadata
                        .iter()
                        .map(|m| wire::encode(&Message::Metadata((**m).clone())));
                    let frames = snapshot
                        .configs
                        .into_iter()
                        .chain(snapshot.gop)
                        .map(|frame| wire::encode(&Message::Frame(frame)));
                    let live = std::iter::once(wire::encode(&Message::Live));
                    let items = metadata.chain(frames).chain(live).collect();
                    act.send_all(ctx, items);
                }),
        );
        ctx.run_interval(KEEPALIVE, |act, ctx| {
            if act.last_sent.elapsed() >= KEEPALIVE {
                act.send(ctx, wire::encode(&Message::Keepalive));
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        metrics().relays_served.dec();
        self.stream.do_send(Unsubscribe { clientid: self.id });
        tracing::info!(stream = %self.key, node = %self.node, "relay served no more");
    }
}

impl Handler<Deliver> for RelayServe {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let message = match msg.item {
            Delivery::Frame(frame) => Message::Frame(frame),
            Delivery::Metadata(metadata) => Message::Metadata((*metadata).clone()),
        };
        self.send(ctx, wire::encode(&message));
    }
}

impl Handler<StreamEnded> for RelayServe {
    type Result = ();

    fn handle(&mut self, _: StreamEnded, ctx: &mut Self::Context) {
        // `End` goes out after what is queued; the writer task ends when the queue's last
        // sender (this actor) is gone.
        self.send(ctx, wire::encode(&Message::End));
        ctx.stop();
    }
}

impl StreamHandler<Result<BytesMut, std::io::Error>> for RelayServe {
    fn handle(&mut self, _: Result<BytesMut, std::io::Error>, _ctx: &mut Self::Context) {}

    /// The pulling node closed the connection.
    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Pulls `key` from `owner` and makes it a local stream; returns it once the owner's snapshot
/// is in it (a player subscribing then starts at the cached keyframe).
pub async fn pull(
    cluster: Cluster,
    key: StreamKey,
    owner: Owner,
) -> Result<Addr<StreamActor>, String> {
    let socket = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&owner.advertise))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = socket.set_nodelay(true);
    let (read, write) = socket.into_split();
    let mut writer = FramedWrite::new(write, codec());
    let mut reader = FramedRead::new(read, codec());
    writer
        .send(wire::pull(
            &cluster.0.secret,
            &cluster.0.node,
            &key,
            unix_ms(),
        ))
        .await
        .map_err(|e| format!("send: {e}"))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, reader.next()).await {
        Ok(Some(Ok(bytes))) => match wire::decode(bytes.freeze()) {
            Ok(Message::Accepted) => {}
            Ok(Message::Refused(reason)) => return Err(format!("refused: {reason}")),
            Ok(other) => return Err(format!("unexpected answer {other:?}")),
            Err(e) => return Err(e.to_string()),
        },
        Ok(Some(Err(e))) => return Err(format!("read: {e}")),
        Ok(None) => return Err("closed".into()),
        Err(_) => return Err("no answer in time".into()),
    }
    let id = next_internal_id();
    let ctx = Context::<RelayPull>::new();
    let me = ctx.address();
    let kick = me.clone().recipient();
    let stream = cluster
        .0
        .registry
        .send(ClaimPublish {
            key: key.clone(),
            clientid: id,
            kick,
            arbiter: Arbiter::current(),
        })
        .await
        .map_err(|_| "the registry is gone".to_owned())?
        .map_err(|e| e.to_string())?;
    let (live, is_live) = oneshot::channel();
    metrics().relay_pulls.inc();
    tracing::info!(stream = %key, owner = %owner.node, advertise = %owner.advertise, "relay pull started");
    ctx.run(RelayPull {
        id,
        key,
        owner: owner.node,
        cluster,
        stream: stream.clone(),
        reader: Some(reader),
        _writer: writer,
        live: Some(live),
        last_heard: Instant::now(),
        idle_since: None,
        dropped: 0,
        ended: false,
    });
    match tokio::time::timeout(CONNECT_TIMEOUT, is_live).await {
        Ok(Ok(())) => Ok(stream),
        _ => {
            me.do_send(Kick {
                reason: "no snapshot from the owner in time",
                end: streamgate_actors::usage::EndReason::StreamEnded,
            });
            Err("no snapshot from the owner in time".into())
        }
    }
}

/// The pulling side of one relay: the local stream's publisher.
pub struct RelayPull {
    id: ClientId,
    key: StreamKey,
    owner: String,
    cluster: Cluster,
    stream: Addr<StreamActor>,
    reader: Option<FramedRead<OwnedReadHalf, LengthDelimitedCodec>>,
    /// Held so the owner does not see the connection half-closed.
    _writer: FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
    live: Option<oneshot::Sender<()>>,
    last_heard: Instant,
    idle_since: Option<Instant>,
    dropped: u64,
    ended: bool,
}

impl RelayPull {
    /// Ends the local stream (its players end with `stream_ended`) and the relay.
    fn end(&mut self, ctx: &mut Context<Self>, why: &'static str) {
        if !self.ended {
            self.ended = true;
            tracing::info!(stream = %self.key, owner = %self.owner, why, "relay pull ending");
            self.stream.do_send(Unpublish { clientid: self.id });
        }
        ctx.stop();
    }
}

impl Actor for RelayPull {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(reader) = self.reader.take() {
            ctx.add_stream(reader);
        }
        let lease = self.cluster.0.config.lease;
        let idle = self.cluster.0.config.relay_idle;
        ctx.run_interval(Duration::from_secs(1), move |act, ctx| {
            if act.last_heard.elapsed() > lease {
                act.end(ctx, "owner silent for a lease");
                return;
            }
            ctx.spawn(
                act.stream
                    .send(Describe)
                    .into_actor(act)
                    .map(move |described, act, ctx| match described {
                        Ok(d) if d.subscribers == 0 => {
                            let since = *act.idle_since.get_or_insert_with(Instant::now);
                            if since.elapsed() >= idle {
                                act.end(ctx, "no local player left");
                            }
                        }
                        Ok(_) => act.idle_since = None,
                        Err(_) => act.end(ctx, "local stream gone"),
                    }),
            );
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if !self.ended {
            self.stream.do_send(Unpublish { clientid: self.id });
        }
        metrics().relay_pulls.dec();
        self.cluster.relay_ended(&self.key, &self.stream);
    }
}

impl StreamHandler<Result<BytesMut, std::io::Error>> for RelayPull {
    fn handle(&mut self, item: Result<BytesMut, std::io::Error>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        let message = match item
            .map_err(|e| e.to_string())
            .and_then(|bytes| wire::decode(bytes.freeze()).map_err(|e| e.to_string()))
        {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(stream = %self.key, %error, "relay connection failed");
                self.end(ctx, "relay connection failed");
                return;
            }
        };
        match message {
            // The snapshot (up to a whole GOP at once) waits for room in the local stream's
            // mailbox, in order: the first players start from all of it.
            Message::Frame(frame) if self.live.is_some() => {
                ctx.wait(
                    self.stream
                        .send(PublishFrame { frame })
                        .into_actor(self)
                        .map(|_, _, _| ()),
                );
            }
            // Live frames go as a publisher's do: a busy stream drops, never stalls the relay.
            Message::Frame(frame) => {
                if self.stream.try_send(PublishFrame { frame }).is_err() {
                    self.dropped += 1;
                    if self.dropped == 1 || self.dropped % 1000 == 0 {
                        tracing::warn!(stream = %self.key, dropped = self.dropped, "local stream busy: relayed frame dropped");
                    }
                }
            }
            Message::Metadata(metadata) => self.stream.do_send(PublishMetadata { metadata }),
            Message::Live => {
                if let Some(live) = self.live.take() {
                    let _ = live.send(());
                }
            }
            Message::End => self.end(ctx, "publisher left"),
            Message::Keepalive | Message::Accepted => {}
            Message::Refused(_) | Message::Pull(_) => self.end(ctx, "unexpected relay message"),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        self.end(ctx, "owner connection closed");
    }
}

impl Handler<Kick> for RelayPull {
    type Result = ();

    /// The local stream is being ended (shutdown, an operator's kick): stop pulling.
    fn handle(&mut self, msg: Kick, ctx: &mut Self::Context) {
        tracing::info!(stream = %self.key, reason = msg.reason, "relay pull kicked");
        self.end(ctx, msg.reason);
    }
}

//! Accept loops: every worker arbiter of the pool accepts on each TCP listener itself, on its
//! own handle to the listening socket, and starts the session of a connection it accepted
//! where it is: the socket is registered with that arbiter's reactor once, at the accept, and
//! all of its IO happens there. Whichever worker is free first takes the next connection. A
//! connection over its section's limits ([`ConnectionLimits`]) gets no session: it is
//! answered in its protocol's own words by the protocol core ([`Refuse`]) and closed. Must not
//! parse any protocol itself. The SRT listener (UDP, one socket for every connection) is
//! [`srt`].

pub mod bind;
pub mod srt;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use streamgate_actors::metrics::metrics;

use actix::prelude::*;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::limits::ConnectionLimits;
use crate::protocol::{http, rtsp};
use crate::session::{SessionContext, SessionSettings, TcpAccept};

/// One arbiter of the pool and what its sessions share.
#[derive(Clone)]
pub struct Worker {
    /// The arbiter sessions run on.
    pub arbiter: ArbiterHandle,
    /// The shared handles for sessions on this arbiter.
    pub context: SessionContext,
}

/// Starts a session for an accepted socket on the current arbiter; the session holds the
/// connection's [`Admission`] until it ends.
pub type StartSession = fn(TcpAccept);

/// How a listener answers a connection its limits refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refuse {
    /// Close at once (RTMP has no way to say why before its handshake).
    Close,
    /// Read the request head and answer `503 Service Unavailable` (HTTP-FLV).
    Http,
    /// Read the first request and answer `RTSP/1.0 503 Service Unavailable` with its `CSeq`.
    Rtsp,
}

/// Refused connections being answered at once, at most; past it they are closed unanswered.
const MAX_ANSWERING: usize = 64;
/// How long a refused client has to send its request head.
const REFUSE_READ_DEADLINE: Duration = Duration::from_secs(2);
/// The most a refused client's request head is read.
const REFUSE_READ_LIMIT: usize = 8 << 10;

static ANSWERING: AtomicUsize = AtomicUsize::new(0);

/// The answer to a refused client's first bytes, once they hold a complete request; None
/// while they do not (or when they never can).
fn refusal_answer(how: Refuse, head: &[u8]) -> Option<bytes::Bytes> {
    match how {
        Refuse::Close => None,
        Refuse::Http => match http::parse_request(head) {
            Ok(Some(_)) => Some(http::error_response(503, "too many connections")),
            _ => None,
        },
        Refuse::Rtsp => match rtsp::message::decode(&mut BytesMut::from(head)) {
            Ok(Some(rtsp::message::Message::Request(request))) => {
                Some(rtsp::message::Response::to(&request, 503).to_bytes())
            }
            _ => None,
        },
    }
}

/// Answers a refused connection (bounded in time, bytes and number at once), then closes it.
fn refuse(mut socket: TcpStream, how: Refuse) {
    if how == Refuse::Close || ANSWERING.fetch_add(1, Ordering::Relaxed) >= MAX_ANSWERING {
        if how != Refuse::Close {
            ANSWERING.fetch_sub(1, Ordering::Relaxed);
        }
        return;
    }
    actix_rt::spawn(async move {
        let answer = actix_rt::time::timeout(REFUSE_READ_DEADLINE, async {
            let mut head = Vec::new();
            let mut chunk = [0u8; 1024];
            while head.len() < REFUSE_READ_LIMIT {
                let n = socket.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
                head.extend_from_slice(&chunk[..n]);
                if let Some(answer) = refusal_answer(how, &head) {
                    return Some(answer);
                }
            }
            None
        })
        .await;
        if let Ok(Some(answer)) = answer {
            let _ = actix_rt::time::timeout(REFUSE_READ_DEADLINE, async {
                socket.write_all(&answer).await?;
                socket.shutdown().await
            })
            .await;
        }
        ANSWERING.fetch_sub(1, Ordering::Relaxed);
    });
}

/// What a listener does with the connections it accepts.
#[derive(Clone)]
pub struct Admit {
    /// The section's connection limits.
    pub limits: Arc<ConnectionLimits>,
    /// How a connection over them is answered.
    pub refuse: Refuse,
}

/// A TCP listener being served by every worker; dropping it closes the listening socket (each
/// worker's accept loop ends and drops its handle) while the sessions go on.
pub struct Serving {
    /// Dropped to end the accept loops.
    _stop: watch::Sender<()>,
}

/// Serves `listener` on every one of `workers`: each accepts on a handle of its own (a
/// duplicate of the socket) and starts the sessions of the connections it takes.
pub fn serve(
    listener: std::net::TcpListener,
    workers: &[Worker],
    protocol: &'static str,
    settings: Arc<arc_swap::ArcSwap<SessionSettings>>,
    start: StartSession,
    admit: Admit,
) -> std::io::Result<Serving> {
    let (stop, stopped) = watch::channel(());
    let mut handles = Vec::with_capacity(workers.len());
    for _ in 1..workers.len() {
        handles.push(listener.try_clone()?);
    }
    handles.push(listener);
    for (worker, handle) in workers.iter().zip(handles) {
        let accepting = Accepting {
            protocol,
            context: worker.context.clone(),
            settings: settings.clone(),
            start,
            admit: admit.clone(),
        };
        let stopped = stopped.clone();
        let spawned = worker.arbiter.spawn(async move {
            match TcpListener::from_std(handle) {
                Ok(listener) => accepting.run(listener, stopped).await,
                Err(e) => tracing::warn!(protocol, error = %e, "could not register the listener"),
            }
        });
        if !spawned {
            tracing::warn!(protocol, "worker arbiter is gone; it does not accept");
        }
    }
    Ok(Serving { _stop: stop })
}

/// One worker's accept loop on one listener.
struct Accepting {
    protocol: &'static str,
    /// This worker's shared handles for sessions.
    context: SessionContext,
    settings: Arc<arc_swap::ArcSwap<SessionSettings>>,
    start: StartSession,
    admit: Admit,
}

impl Accepting {
    /// Accepts connections until `stopped` says the listener is closed (its sender dropped).
    async fn run(self, listener: TcpListener, mut stopped: watch::Receiver<()>) {
        let protocol = self.protocol;
        loop {
            let accepted = tokio::select! {
                biased;
                _ = stopped.changed() => return,
                accepted = listener.accept() => accepted,
            };
            let (socket, peer) = match accepted {
                // An IPv4 client of a dual-stack socket is known by its IPv4 address, in the
                // limits, the hooks and the logs alike.
                Ok((socket, peer)) => (socket, bind::canonical(peer)),
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment instead of spinning.
                    tracing::warn!(protocol, error = %e, "accept failed");
                    actix_rt::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let admission = match self.admit.limits.admit(peer.ip()) {
                Ok(admission) => admission,
                Err(_) => {
                    metrics().connection(protocol, false);
                    refuse(socket, self.admit.refuse);
                    continue;
                }
            };
            metrics().connection(protocol, true);
            // Linux's accepted sockets inherit the listener's TCP_NODELAY (`bind::tcp`).
            #[cfg(not(target_os = "linux"))]
            if let Err(e) = socket.set_nodelay(true) {
                tracing::debug!(protocol, %peer, error = %e, "TCP_NODELAY not set");
            }
            (self.start)(TcpAccept {
                socket,
                peer,
                context: self.context.clone(),
                // The settings in force now: a reload changes them for the connections after it.
                settings: SessionSettings::clone(&self.settings.load()),
                admission,
            });
        }
    }
}

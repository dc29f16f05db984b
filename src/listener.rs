//! Accept loops: each listener accepts sockets and hands every connection to the next arbiter
//! of the worker pool, where its session actor lives for the rest of its life.
//!
//! A socket is moved between threads as a std socket and registered again with the target
//! arbiter's reactor, so all of its IO happens on that arbiter. Must not parse any protocol.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use tokio::net::{TcpListener, TcpStream};

use crate::session::{SessionContext, SessionSettings};

/// One arbiter of the pool and what its sessions share.
#[derive(Clone)]
pub struct Worker {
    /// The arbiter sessions run on.
    pub arbiter: ArbiterHandle,
    /// The shared handles for sessions on this arbiter.
    pub shared: SessionContext,
}

/// The worker pool; connections go round-robin.
pub struct Pool {
    workers: Vec<Worker>,
    next: AtomicUsize,
}

impl Pool {
    /// A pool of the given workers (at least one).
    pub fn new(workers: Vec<Worker>) -> Self {
        Pool {
            workers,
            next: AtomicUsize::new(0),
        }
    }

    fn pick(&self) -> &Worker {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        &self.workers[i]
    }
}

/// Starts a session for an accepted socket on the current arbiter.
pub type StartSession = fn(TcpStream, SocketAddr, SessionContext, SessionSettings);

/// Accepts connections until the future is dropped.
pub async fn accept_loop(
    listener: TcpListener,
    pool: Arc<Pool>,
    protocol: &'static str,
    settings: SessionSettings,
    start: StartSession,
) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment instead of spinning.
                tracing::warn!(protocol, error = %e, "accept failed");
                actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(e) = socket.set_nodelay(true) {
            tracing::debug!(protocol, %peer, error = %e, "TCP_NODELAY not set");
        }
        let socket = match socket.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(protocol, %peer, error = %e, "could not hand the socket over");
                continue;
            }
        };
        let worker = pool.pick();
        let shared = worker.shared.clone();
        let sent = worker
            .arbiter
            .spawn_fn(move || match TcpStream::from_std(socket) {
                Ok(socket) => start(socket, peer, shared, settings),
                Err(e) => {
                    tracing::warn!(protocol, %peer, error = %e, "could not register the socket")
                }
            });
        if !sent {
            tracing::warn!(protocol, %peer, "worker arbiter is gone; connection dropped");
        }
    }
}

//! The outbox: `on_done` delivered at least once, across a hook outage, a restart and a
//! `kill -9` of the server.
//!
//! An SQLite database (rusqlite, its bundled library) in the data dir holds two tables:
//! `sessions`, every allowed play and publish whose protocol has an `on_done` URL, with the
//! usage of its last checkpoint; and `events`, the `on_done`s not yet delivered. A session's
//! end replaces its row by an event in one transaction. At start-up every row a previous run
//! left in `sessions` becomes an event with `reason=server_restart` and the usage of its last
//! checkpoint.
//!
//! Two threads of their own, so a slow disk or a slow hook server never stalls a session:
//! - the writer owns the one connection. Sessions send it [`Op`]s through a channel; it takes
//!   everything queued and commits it in one transaction (group commit), then hands the new
//!   events to the deliverer;
//! - the deliverer (a Tokio runtime of its own with its own hyper client) sends every event
//!   (the request built by `notify::build_request`, plus `X-Streamgate-Attempt`), at most
//!   [`IN_FLIGHT`] at once. An answer below 500 delivers it (the writer deletes it); no answer, a
//!   refused connection or a 5xx retries it after a backoff of its own (1 s, doubling, at most
//!   60 s). A waiting event is a timer entry, not a task: a long outage costs no CPU.
//!
//! The database is opened in SQLite's exclusive locking mode: a second server on the same data
//! dir is refused at start-up ([`OutboxError::Locked`]); the lock dies with the process.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::header::HeaderValue;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, ErrorCode};
use tokio::sync::{mpsc as tmpsc, oneshot};
use tokio::task::JoinSet;

use crate::notify::{
    build_request, error_chain, hook_client, Call, DoneTracker, HookClient, Hooks, NotifyFields,
};
use crate::session::{Protocol, SessionInfo};
use crate::usage::{EndReason, UsageReport, Used};

/// The database file in the data dir.
pub const DB_FILE: &str = "outbox.sqlite3";
/// The default `<outbox_max_events>`.
pub const DEFAULT_MAX_EVENTS: u64 = 1_000_000;
/// The first retry of an event comes this long after its first failed attempt.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two attempts of one event.
pub const MAX_RETRY: Duration = Duration::from_secs(60);
/// Most deliveries in flight at once; the others wait for their turn.
pub const IN_FLIGHT: usize = 128;
/// The header that numbers the attempts of one `on_done` (1 on the first).
pub const ATTEMPT_HEADER: &str = "x-streamgate-attempt";
/// Most operations one transaction takes.
const MAX_BATCH: usize = 8192;
/// Operations queued for the writer past which checkpoints are dropped (counted). Begins and
/// ends are never dropped: there is one of each per session, so the queue holds at most this
/// many plus two per session, however long a disk stalls.
pub const CHECKPOINT_QUEUE_LIMIT: usize = 65_536;

/// The outbox could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The data dir could not be created.
    #[error("cannot create the data dir {path}: {error}")]
    Create {
        /// The data dir.
        path: PathBuf,
        /// The OS error (in the message, so not a separate cause).
        error: std::io::Error,
    },
    /// Another server holds the data dir.
    #[error(
        "the data dir {path} is in use by another running streamgate (its outbox is locked); \
         every server needs a <data_dir> of its own"
    )]
    Locked {
        /// The data dir.
        path: PathBuf,
    },
    /// The database could not be opened or read.
    #[error("cannot open the outbox in the data dir {path}: {error}")]
    Open {
        /// The data dir.
        path: PathBuf,
        /// SQLite's error (in the message, so not a separate cause).
        error: rusqlite::Error,
    },
}

/// One `on_done` not yet delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its row in the store (0: it could not be stored and lives in memory only).
    pub id: i64,
    /// The session's fields.
    pub info: SessionInfo,
    /// What it used and why it ended.
    pub usage: UsageReport,
    /// Whether this run's shutdown waits for it ([`DoneTracker`]).
    pub owed: bool,
}

/// What the writer is asked to do.
#[derive(Debug)]
pub enum Op {
    /// A play or publish was allowed: record it.
    Begin {
        /// Its fields.
        info: SessionInfo,
        /// Its usage so far.
        used: Used,
    },
    /// A session's usage so far.
    Checkpoint {
        /// Which session.
        clientid: u64,
        /// Its usage so far.
        used: Used,
    },
    /// A session ended: replace its record by an `on_done` event.
    Done {
        /// Its fields.
        info: SessionInfo,
        /// What it used and why it ended.
        usage: UsageReport,
    },
    /// An event was delivered: delete it.
    Delivered {
        /// Its row.
        id: i64,
    },
    /// Commit what came before and stop.
    Stop,
}

/// The store: the SQLite database of the data dir, opened exclusively.
pub struct Store {
    conn: Connection,
    max_events: u64,
    events: u64,
}

fn protocol_named(name: &str) -> Option<Protocol> {
    [
        Protocol::Rtmp,
        Protocol::Rtsp,
        Protocol::Srt,
        Protocol::HttpFlv,
        Protocol::Hls,
    ]
    .into_iter()
    .find(|p| p.as_str() == name)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    clientid INTEGER PRIMARY KEY, protocol TEXT NOT NULL, addr TEXT NOT NULL,
    app TEXT NOT NULL, url TEXT NOT NULL, name TEXT NOT NULL, tcurl TEXT NOT NULL,
    start INTEGER NOT NULL, duration_ms INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, clientid INTEGER NOT NULL, protocol TEXT NOT NULL,
    addr TEXT NOT NULL, app TEXT NOT NULL, url TEXT NOT NULL, name TEXT NOT NULL,
    tcurl TEXT NOT NULL, start INTEGER NOT NULL, duration_ms INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL, reason TEXT NOT NULL);
";

const EVENT_COLUMNS: &str = "id, clientid, protocol, addr, app, url, name, tcurl, start, \
                             duration_ms, bytes_in, bytes_out, reason";

fn event_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Event>> {
    let protocol: String = row.get(2)?;
    let addr: String = row.get(3)?;
    let reason: String = row.get(12)?;
    let (Some(protocol), Ok(addr), Some(reason)) = (
        protocol_named(&protocol),
        addr.parse::<IpAddr>(),
        EndReason::from_name(&reason),
    ) else {
        return Ok(None);
    };
    Ok(Some(Event {
        id: row.get(0)?,
        info: SessionInfo {
            protocol,
            clientid: row.get::<_, i64>(1)? as u64,
            addr,
            app: row.get(4)?,
            url: row.get(5)?,
            name: row.get(6)?,
            tcurl: row.get(7)?,
        },
        usage: UsageReport {
            used: Used {
                start: row.get::<_, i64>(8)? as u64,
                duration_ms: row.get::<_, i64>(9)? as u64,
                bytes_in: row.get::<_, i64>(10)? as u64,
                bytes_out: row.get::<_, i64>(11)? as u64,
            },
            reason,
        },
        owed: false,
    }))
}

impl Store {
    /// Opens (creating what is missing) the store in `dir` and takes its lock.
    pub fn open(dir: &Path, max_events: u64) -> Result<Store, OutboxError> {
        std::fs::create_dir_all(dir).map_err(|error| OutboxError::Create {
            path: dir.to_path_buf(),
            error,
        })?;
        let open_error = |error: rusqlite::Error| match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => OutboxError::Locked {
                path: dir.to_path_buf(),
            },
            _ => OutboxError::Open {
                path: dir.to_path_buf(),
                error,
            },
        };
        let conn = Connection::open(dir.join(DB_FILE)).map_err(open_error)?;
        conn.busy_timeout(Duration::ZERO).map_err(open_error)?;
        // Exclusive first, so the lock is taken by the first access and kept; WAL, so a commit
        // is one append; FULL, so a committed on_done survives a power cut too.
        conn.execute_batch(
            "PRAGMA locking_mode = EXCLUSIVE;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             BEGIN EXCLUSIVE; COMMIT;",
        )
        .map_err(open_error)?;
        conn.execute_batch(SCHEMA).map_err(open_error)?;
        let events: i64 = conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .map_err(open_error)?;
        Ok(Store {
            conn,
            max_events: max_events.max(1),
            events: events as u64,
        })
    }

    /// Turns every session a previous run left without `on_done` into an event with
    /// `reason=server_restart` and its last checkpoint's usage; returns every pending event,
    /// oldest first.
    pub fn recover(&mut self) -> rusqlite::Result<Vec<Event>> {
        let tx = self.conn.transaction()?;
        let moved = tx.execute(
            "INSERT INTO events (clientid, protocol, addr, app, url, name, tcurl, start,
                 duration_ms, bytes_in, bytes_out, reason)
             SELECT clientid, protocol, addr, app, url, name, tcurl, start, duration_ms,
                 bytes_in, bytes_out, 'server_restart' FROM sessions ORDER BY clientid",
            [],
        )?;
        tx.execute("DELETE FROM sessions", [])?;
        self.events += moved as u64;
        Self::trim(&tx, self.max_events, &mut self.events)?;
        tx.commit()?;
        if moved > 0 {
            tracing::warn!(
                sessions = moved,
                "sessions of a previous run ended without on_done: sent with reason=server_restart"
            );
        }
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {EVENT_COLUMNS} FROM events ORDER BY id"))?;
        let rows = stmt.query_map([], event_of)?;
        let mut events = Vec::new();
        for row in rows {
            match row? {
                Some(e) => events.push(e),
                None => tracing::error!("an outbox event that cannot be read is skipped"),
            }
        }
        Ok(events)
    }

    /// How many events wait for delivery.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// How many sessions are recorded.
    pub fn sessions(&self) -> rusqlite::Result<u64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
    }

    /// Drops the oldest events past `max`, with an error log.
    fn trim(tx: &Connection, max: u64, events: &mut u64) -> rusqlite::Result<()> {
        if *events <= max {
            return Ok(());
        }
        let excess = *events - max;
        let dropped = tx.execute(
            "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?1)",
            params![excess as i64],
        )?;
        *events -= dropped as u64;
        tracing::error!(
            dropped,
            max_events = max,
            "outbox full: the oldest undelivered on_done events are dropped"
        );
        Ok(())
    }

    /// Applies `ops` in one transaction; returns the events it stored (for delivery).
    pub fn apply(&mut self, ops: &[Op]) -> rusqlite::Result<Vec<Event>> {
        let tx = self.conn.transaction()?;
        let mut stored = Vec::new();
        {
            let mut begin = tx.prepare_cached(
                "INSERT OR REPLACE INTO sessions (clientid, protocol, addr, app, url, name,
                     tcurl, start, duration_ms, bytes_in, bytes_out)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut checkpoint = tx.prepare_cached(
                "UPDATE sessions SET duration_ms = ?2, bytes_in = ?3, bytes_out = ?4
                 WHERE clientid = ?1",
            )?;
            let mut forget = tx.prepare_cached("DELETE FROM sessions WHERE clientid = ?1")?;
            let mut event = tx.prepare_cached(
                "INSERT INTO events (clientid, protocol, addr, app, url, name, tcurl, start,
                     duration_ms, bytes_in, bytes_out, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            let mut delivered = tx.prepare_cached("DELETE FROM events WHERE id = ?1")?;
            for op in ops {
                match op {
                    Op::Begin { info, used } => {
                        begin.execute(params_from_iter(columns(info, used)))?;
                    }
                    Op::Checkpoint { clientid, used } => {
                        checkpoint.execute(params![
                            *clientid as i64,
                            used.duration_ms as i64,
                            used.bytes_in as i64,
                            used.bytes_out as i64,
                        ])?;
                    }
                    Op::Done { info, usage } => {
                        forget.execute(params![info.clientid as i64])?;
                        let used = usage.used;
                        let mut row = columns(info, &used);
                        row.push(Value::Text(usage.reason.as_str().to_owned()));
                        event.execute(params_from_iter(row))?;
                        self.events += 1;
                        stored.push(Event {
                            id: tx.last_insert_rowid(),
                            info: info.clone(),
                            usage: *usage,
                            owed: true,
                        });
                    }
                    Op::Delivered { id } => {
                        let n = delivered.execute(params![id])?;
                        self.events = self.events.saturating_sub(n as u64);
                    }
                    Op::Stop => {}
                }
            }
        }
        Self::trim(&tx, self.max_events, &mut self.events)?;
        tx.commit()?;
        Ok(stored)
    }
}

/// A session's fields and usage in the order of the columns `sessions` has and `events`
/// starts with (clientid, protocol, addr, app, url, name, tcurl, start, duration_ms,
/// bytes_in, bytes_out).
fn columns(info: &SessionInfo, used: &Used) -> Vec<Value> {
    let int = |n: u64| Value::Integer(n as i64);
    vec![
        int(info.clientid),
        Value::Text(info.protocol.as_str().to_owned()),
        Value::Text(info.addr.to_string()),
        Value::Text(info.app.clone()),
        Value::Text(info.url.clone()),
        Value::Text(info.name.clone()),
        Value::Text(info.tcurl.clone()),
        int(used.start),
        int(used.duration_ms),
        int(used.bytes_in),
        int(used.bytes_out),
    ]
}

/// The writer's queue, with the number of operations in it.
#[derive(Debug, Clone)]
struct Ops {
    tx: mpsc::Sender<Op>,
    depth: Arc<AtomicUsize>,
}

impl Ops {
    fn send(&self, op: Op) -> bool {
        self.depth.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(op).is_err() {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// What a session uses to record itself: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct Outbox {
    ops: Ops,
    /// Checkpoints dropped because the writer was behind, and when that was last said.
    dropped: Arc<Mutex<(u64, Option<Instant>)>>,
}

impl Outbox {
    fn send(&self, op: Op) {
        if !self.ops.send(op) {
            tracing::warn!("the outbox is closed: an operation is lost");
        }
    }

    /// A play or publish was allowed.
    pub fn begin(&self, info: &SessionInfo, used: Used) {
        self.send(Op::Begin {
            info: info.clone(),
            used,
        });
    }

    /// A session's usage so far. Dropped when the writer is [`CHECKPOINT_QUEUE_LIMIT`]
    /// operations behind (a stalled disk): the next checkpoint or the end carries it.
    pub fn checkpoint(&self, clientid: u64, used: Used) {
        if self.ops.depth.load(Ordering::Relaxed) >= CHECKPOINT_QUEUE_LIMIT {
            let mut dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
            dropped.0 += 1;
            let now = Instant::now();
            if dropped
                .1
                .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(10))
            {
                dropped.1 = Some(now);
                tracing::warn!(
                    dropped = dropped.0,
                    queued = CHECKPOINT_QUEUE_LIMIT,
                    "outbox: the store is behind; usage checkpoints dropped (begins and ends \
                     are kept)"
                );
            }
            return;
        }
        self.send(Op::Checkpoint { clientid, used });
    }

    /// A session ended: its `on_done` is stored and then delivered.
    pub fn done(&self, info: SessionInfo, usage: UsageReport) {
        self.send(Op::Done { info, usage });
    }
}

/// The running outbox: its writer and its deliverer.
pub struct OutboxService {
    ops: Ops,
    writer: Option<JoinHandle<()>>,
    deliverer: Option<JoinHandle<()>>,
    stop_delivery: Option<oneshot::Sender<()>>,
}

impl OutboxService {
    /// Opens the store in `dir` (see [`Store::open`]), turns what a previous run left into
    /// events, and starts the writer and the deliverer. `done` counts this run's owed
    /// `on_done`s; the deliverer ends each it delivers.
    pub fn start(
        dir: &Path,
        max_events: u64,
        hooks: Hooks,
        tls: Arc<rustls::ClientConfig>,
        done: DoneTracker,
    ) -> Result<(Outbox, OutboxService), OutboxError> {
        let mut store = Store::open(dir, max_events)?;
        let pending = store.recover().map_err(|error| OutboxError::Open {
            path: dir.to_path_buf(),
            error,
        })?;
        if !pending.is_empty() {
            tracing::info!(
                events = pending.len(),
                "outbox: pending on_done events to deliver"
            );
        }
        let (tx, ops_rx) = mpsc::channel::<Op>();
        let depth = Arc::new(AtomicUsize::new(0));
        let ops_tx = Ops {
            tx,
            depth: depth.clone(),
        };
        let (events_tx, events_rx) = tmpsc::unbounded_channel::<Event>();
        for event in pending {
            let _ = events_tx.send(event);
        }
        let writer = std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || write_loop(store, ops_rx, depth, events_tx))
            .map_err(|error| OutboxError::Create {
                path: dir.to_path_buf(),
                error,
            })?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let delivered = ops_tx.clone();
        let deliverer = std::thread::Builder::new()
            .name("outbox-deliver".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "outbox: no runtime for delivery");
                        return;
                    }
                };
                let client = hook_client(&tls);
                let delivery = Delivery {
                    hooks,
                    client,
                    delivered,
                    done,
                    max_events: max_events.max(1) as usize,
                };
                runtime.block_on(async move {
                    tokio::select! {
                        _ = delivery.run(events_rx) => {}
                        _ = stop_rx => {}
                    }
                });
            })
            .map_err(|error| OutboxError::Create {
                path: dir.to_path_buf(),
                error,
            })?;
        Ok((
            Outbox {
                ops: ops_tx.clone(),
                dropped: Arc::default(),
            },
            OutboxService {
                ops: ops_tx,
                writer: Some(writer),
                deliverer: Some(deliverer),
                stop_delivery: Some(stop_tx),
            },
        ))
    }

    /// Stops delivering (what is not delivered stays in the store for the next run), commits
    /// what sessions sent before and closes the store.
    pub fn stop(mut self) {
        self.close();
    }

    fn close(&mut self) {
        if let Some(stop) = self.stop_delivery.take() {
            let _ = stop.send(());
        }
        if let Some(deliverer) = self.deliverer.take() {
            let _ = deliverer.join();
        }
        let _ = self.ops.send(Op::Stop);
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for OutboxService {
    /// A server that failed to start after opening the outbox lets go of it (and its lock).
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer: everything queued, one transaction (group commit); new events to delivery.
///
/// The events it hands on need no bound of their own: there is at most one per session (its
/// end) and the deliverer takes each at once, keeping at most `<outbox_max_events>`.
fn write_loop(
    mut store: Store,
    ops: mpsc::Receiver<Op>,
    depth: Arc<AtomicUsize>,
    events: tmpsc::UnboundedSender<Event>,
) {
    let mut batch = Vec::new();
    loop {
        let Ok(first) = ops.recv() else { return };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        depth.fetch_sub(batch.len(), Ordering::Relaxed);
        let stop = batch.iter().any(|op| matches!(op, Op::Stop));
        match store.apply(&batch) {
            Ok(stored) => {
                for event in stored {
                    let _ = events.send(event);
                }
            }
            Err(e) => {
                // Not stored: deliver what ended from memory all the same.
                tracing::error!(error = %e, ops = batch.len(), "outbox: a write failed");
                for op in batch.drain(..) {
                    if let Op::Done { info, usage } = op {
                        let _ = events.send(Event {
                            id: 0,
                            info,
                            usage,
                            owed: true,
                        });
                    }
                }
            }
        }
        batch.clear();
        if stop {
            return;
        }
    }
}

/// The wait before attempt `attempt + 1` of an event whose attempt `attempt` failed.
pub fn backoff(attempt: u32) -> Duration {
    let shift = attempt.saturating_sub(1).min(16);
    (FIRST_RETRY * (1u32 << shift)).min(MAX_RETRY)
}

struct Waiting {
    event: Event,
    /// Attempts made so far.
    attempts: u32,
    flying: bool,
}

struct Delivery {
    hooks: Hooks,
    client: HookClient,
    delivered: Ops,
    done: DoneTracker,
    max_events: usize,
}

/// How one attempt went: the status of an answer, or why there was none.
type Outcome = Result<u16, String>;

impl Delivery {
    async fn run(self, mut incoming: tmpsc::UnboundedReceiver<Event>) {
        let mut seq: u64 = 0;
        let mut waiting: BTreeMap<u64, Waiting> = BTreeMap::new();
        let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
        let mut flying: JoinSet<(u64, Outcome)> = JoinSet::new();
        let mut open = true;
        loop {
            // Start every due attempt there is room for.
            let now = Instant::now();
            while flying.len() < IN_FLIGHT {
                match due.peek() {
                    Some(Reverse((at, _))) if *at <= now => {}
                    _ => break,
                }
                let Some(Reverse((_, key))) = due.pop() else {
                    break;
                };
                let Some(w) = waiting.get_mut(&key) else {
                    continue;
                };
                w.attempts += 1;
                w.flying = true;
                flying.spawn(self.attempt(key, w.event.clone(), w.attempts));
            }
            let next = due.peek().map(|Reverse((at, _))| *at);
            let room = flying.len() < IN_FLIGHT;
            if !open && waiting.is_empty() {
                return;
            }
            tokio::select! {
                event = incoming.recv(), if open => match event {
                    Some(event) => {
                        crate::metrics::metrics().on_done_pending.inc();
                        seq += 1;
                        waiting.insert(seq, Waiting { event, attempts: 0, flying: false });
                        due.push(Reverse((Instant::now(), seq)));
                        self.bound(&mut waiting);
                    }
                    None => open = false,
                },
                Some(joined) = flying.join_next(), if !flying.is_empty() => {
                    let Ok((key, outcome)) = joined else { continue };
                    self.answered(key, outcome, &mut waiting, &mut due);
                }
                _ = tokio::time::sleep_until(next.unwrap_or(now).into()), if next.is_some() && room => {}
            }
        }
    }

    /// Past `<outbox_max_events>`, the oldest events not in flight are dropped (the store
    /// drops the same).
    fn bound(&self, waiting: &mut BTreeMap<u64, Waiting>) {
        while waiting.len() > self.max_events {
            let Some(key) = waiting.iter().find(|(_, w)| !w.flying).map(|(key, _)| *key) else {
                return;
            };
            if let Some(w) = waiting.remove(&key) {
                let metrics = crate::metrics::metrics();
                metrics.on_done_pending.dec();
                metrics.on_done_dropped.inc();
                if w.event.owed {
                    self.done.finish();
                }
            }
        }
    }

    fn answered(
        &self,
        key: u64,
        outcome: Outcome,
        waiting: &mut BTreeMap<u64, Waiting>,
        due: &mut BinaryHeap<Reverse<(Instant, u64)>>,
    ) {
        let Some(w) = waiting.get_mut(&key) else {
            return;
        };
        w.flying = false;
        let clientid = w.event.info.clientid;
        let attempts = w.attempts;
        match outcome {
            Ok(status) if status < 500 => {
                tracing::debug!(clientid, status, attempts, "on_done delivered");
                if let Some(w) = waiting.remove(&key) {
                    self.finished(&w.event);
                }
            }
            Ok(status) if status == u16::MAX => {
                // No on_done URL for its protocol any more (a config changed across a
                // restart): nowhere to deliver it.
                tracing::warn!(clientid, "on_done event without an on_done URL: dropped");
                if let Some(w) = waiting.remove(&key) {
                    self.finished(&w.event);
                }
            }
            failed => {
                crate::metrics::metrics().on_done_retries.inc();
                let wait = backoff(attempts);
                let why = match failed {
                    Ok(status) => format!("status {status}"),
                    Err(e) => e,
                };
                tracing::warn!(
                    clientid,
                    attempts,
                    retry_in_ms = wait.as_millis() as u64,
                    why,
                    "on_done not delivered; retrying"
                );
                due.push(Reverse((Instant::now() + wait, key)));
            }
        }
    }

    fn finished(&self, event: &Event) {
        crate::metrics::metrics().on_done_pending.dec();
        if event.id > 0 {
            self.delivered.send(Op::Delivered { id: event.id });
        }
        if event.owed {
            self.done.finish();
        }
    }

    /// One attempt: the `on_done` request with its attempt number, within its protocol's
    /// timeout. `Ok(u16::MAX)` when its protocol has no `on_done` URL.
    fn attempt(
        &self,
        key: u64,
        event: Event,
        attempt: u32,
    ) -> impl std::future::Future<Output = (u64, Outcome)> + Send + 'static {
        let hooks = self.hooks.load();
        let config = hooks.get(event.info.protocol).clone();
        let node = hooks.node.clone();
        let client = self.client.clone();
        async move {
            let Some(url) = config.on_done.clone() else {
                return (key, Ok(u16::MAX));
            };
            let fields = NotifyFields::new(Call::Done, &event.info, &node).with_usage(event.usage);
            let request = match build_request(&config, &url, &fields) {
                Ok(mut request) => {
                    request
                        .headers_mut()
                        .insert(ATTEMPT_HEADER, HeaderValue::from(attempt));
                    request
                }
                Err(e) => return (key, Err(error_chain(&e))),
            };
            let timeout = config.timeout;
            let protocol = event.info.protocol.as_str();
            let asked = Instant::now();
            let exchange = async move {
                let response = client.request(request).await.map_err(|e| error_chain(&e))?;
                let status = response.status().as_u16();
                let body = Limited::new(response.into_body(), 1 << 16);
                let _: Option<Bytes> = body.collect().await.ok().map(|b| b.to_bytes());
                Ok(status)
            };
            let (outcome, result) = match tokio::time::timeout(timeout, exchange).await {
                Ok(Ok(200)) => (Ok(200), "allow"),
                Ok(Ok(status)) => (Ok(status), "deny"),
                Ok(Err(e)) => (Err(e), "error"),
                Err(_) => (
                    Err(format!("no answer within {} ms", timeout.as_millis())),
                    "timeout",
                ),
            };
            // Every attempt counts in /metrics as the hook call it is.
            let labels = crate::metrics::HookLabels {
                protocol,
                call: "done",
                result,
            };
            crate::metrics::metrics().hook_call(labels, asked.elapsed());
            (key, outcome)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn info(clientid: u64) -> SessionInfo {
        SessionInfo {
            protocol: Protocol::Rtmp,
            clientid,
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
            app: "live".into(),
            url: "rtmp://h/live/cam?x=1".into(),
            name: "cam".into(),
            tcurl: "rtmp://h/live".into(),
        }
    }

    fn used(duration_ms: u64) -> Used {
        Used {
            start: 1_700_000_000_000,
            duration_ms,
            bytes_in: duration_ms * 10,
            bytes_out: duration_ms * 20,
        }
    }

    fn done(clientid: u64) -> Op {
        Op::Done {
            info: info(clientid),
            usage: UsageReport {
                used: used(1000),
                reason: EndReason::Closed,
            },
        }
    }

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Dir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let path = std::env::temp_dir().join(format!(
                "streamgate-outbox-{tag}-{}-{nanos}",
                std::process::id()
            ));
            Dir(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_session_left_open_comes_back_as_server_restart_with_its_checkpoint() {
        let dir = Dir::new("restart");
        {
            let mut store = Store::open(&dir.0, 100).expect("open");
            assert!(store.recover().expect("recover").is_empty());
            store
                .apply(&[
                    Op::Begin {
                        info: info(1),
                        used: used(0),
                    },
                    Op::Begin {
                        info: info(2),
                        used: used(0),
                    },
                    Op::Checkpoint {
                        clientid: 1,
                        used: used(30_000),
                    },
                ])
                .expect("apply");
            let stored = store.apply(&[done(2)]).expect("apply");
            assert_eq!(stored.len(), 1);
            assert_eq!(store.sessions().expect("count"), 1);
            // Dropped without delivery: as a crash leaves it.
        }
        let mut store = Store::open(&dir.0, 100).expect("reopen");
        let events = store.recover().expect("recover");
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0].info.clientid, 2);
        assert_eq!(events[0].usage.reason, EndReason::Closed);
        assert_eq!(events[1].info, info(1));
        assert_eq!(events[1].usage.reason, EndReason::ServerRestart);
        assert_eq!(events[1].usage.used, used(30_000));
        assert_eq!(store.sessions().expect("count"), 0);
        store
            .apply(&[Op::Delivered { id: events[0].id }])
            .expect("apply");
        assert_eq!(store.events(), 1);
    }

    #[test]
    fn past_the_bound_the_oldest_events_are_dropped() {
        let dir = Dir::new("bound");
        let mut store = Store::open(&dir.0, 3).expect("open");
        let ops: Vec<Op> = (1..=5).map(done).collect();
        store.apply(&ops).expect("apply");
        assert_eq!(store.events(), 3);
        store.apply(&[done(6)]).expect("apply");
        drop(store);
        let mut store = Store::open(&dir.0, 3).expect("reopen");
        let left: Vec<u64> = store
            .recover()
            .expect("recover")
            .iter()
            .map(|e| e.info.clientid)
            .collect();
        assert_eq!(left, vec![4, 5, 6]);
    }

    #[test]
    fn a_second_store_on_the_same_dir_is_refused() {
        let dir = Dir::new("lock");
        let _first = Store::open(&dir.0, 10).expect("open");
        match Store::open(&dir.0, 10) {
            Err(OutboxError::Locked { path }) => assert_eq!(path, dir.0),
            Err(e) => panic!("not refused as locked: {e}"),
            Ok(_) => panic!("a second store opened a locked data dir"),
        }
    }

    #[test]
    fn a_writer_far_behind_drops_checkpoints_and_keeps_begins_and_ends() {
        let (tx, rx) = mpsc::channel();
        let depth = Arc::new(AtomicUsize::new(CHECKPOINT_QUEUE_LIMIT - 1));
        let outbox = Outbox {
            ops: Ops {
                tx,
                depth: depth.clone(),
            },
            dropped: Arc::default(),
        };
        outbox.checkpoint(1, used(10));
        assert!(matches!(
            rx.try_recv(),
            Ok(Op::Checkpoint { clientid: 1, .. })
        ));
        assert_eq!(depth.load(Ordering::Relaxed), CHECKPOINT_QUEUE_LIMIT);
        outbox.checkpoint(1, used(20));
        assert!(
            rx.try_recv().is_err(),
            "past the limit a checkpoint is dropped"
        );
        assert_eq!(outbox.dropped.lock().map(|d| d.0).ok(), Some(1));
        outbox.begin(&info(2), used(0));
        outbox.done(
            info(1),
            UsageReport {
                used: used(30),
                reason: EndReason::Closed,
            },
        );
        assert!(matches!(rx.try_recv(), Ok(Op::Begin { .. })));
        assert!(matches!(rx.try_recv(), Ok(Op::Done { .. })));
        // The writer caught up: checkpoints go again.
        depth.store(0, Ordering::Relaxed);
        outbox.checkpoint(2, used(40));
        assert!(matches!(
            rx.try_recv(),
            Ok(Op::Checkpoint { clientid: 2, .. })
        ));
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(1000), MAX_RETRY);
    }
}

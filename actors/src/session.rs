//! The vocabulary a protocol session speaks to the core: which protocol, which client, what it
//! asked for. Owns client-id allocation. Must not know any protocol's wire format.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The protocol a client session speaks; its lowercase name is the `protocol` hook field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// RTMP (publish and play).
    Rtmp,
    /// RTSP (publish and play).
    Rtsp,
    /// SRT (publish and play).
    Srt,
    /// HTTP-FLV (play only).
    HttpFlv,
    /// HLS and Low-Latency HLS (play only): a session is a viewer, across its requests.
    Hls,
}

impl Protocol {
    /// The name used in hook fields and logs: `rtmp`, `rtsp`, `srt`, `httpflv`, `hls`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::Rtsp => "rtsp",
            Protocol::Srt => "srt",
            Protocol::HttpFlv => "httpflv",
            Protocol::Hls => "hls",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A server-wide unique id for one client session; the `clientid` hook field.
pub type ClientId = u64;

/// Client ids are allocated from `start << CLIENT_ID_SHIFT` up, `start` being the process's
/// start in Unix milliseconds: a later run starts above every id an earlier one gave out
/// unless that run made more than 2^10 = 1024 connections per millisecond it ran, so
/// (`node`, `clientid`) names one session across restarts too. 2^43 ms (the year 2248)
/// shifted by 10 is 2^53: ids stay exact as JSON numbers.
pub const CLIENT_ID_SHIFT: u32 = 10;

/// The first client id of a process started at `unix_ms`.
pub fn first_client_id(unix_ms: u64) -> ClientId {
    (unix_ms << CLIENT_ID_SHIFT).clamp(1, (1 << 53) - 1)
}

static NEXT_CLIENT_ID: OnceLock<AtomicU64> = OnceLock::new();

/// Where a cluster node takes its client ids from instead of its own counter: blocks
/// handed out cluster-wide, so no two nodes give one id. `None` when it has none left (the
/// node's own counter then gives the id).
pub trait ClientIdSource: Send + Sync {
    /// The next id of the source, if it has one.
    fn next(&self) -> Option<ClientId>;
}

static SOURCE: OnceLock<Box<dyn ClientIdSource>> = OnceLock::new();

/// Makes `source` the process's first place to take client ids from (once per process; a
/// second call is ignored and returns false).
pub fn set_client_id_source(source: Box<dyn ClientIdSource>) -> bool {
    SOURCE.set(source).is_ok()
}

/// Allocates the next client id: from the cluster's blocks when the node is in one
/// ([`set_client_id_source`]), else from the process's counter. The counter's ids increase,
/// are never reused while the process runs, and start (at the first one) above those of
/// earlier runs ([`CLIENT_ID_SHIFT`]).
pub fn next_client_id() -> ClientId {
    if let Some(id) = SOURCE.get().and_then(|source| source.next()) {
        return id;
    }
    NEXT_CLIENT_ID
        .get_or_init(|| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            AtomicU64::new(first_client_id(now))
        })
        .fetch_add(1, Ordering::Relaxed)
}

/// Internal subscriber ids (a fan-out group's subscription to a stream) live from 2^62 up, in
/// a counter of their own: taking them from the clientid counter made consecutive
/// connections' clientids skip numbers, and their own range keeps them from ever equalling a
/// client's id in a stream's subscriber table.
const INTERNAL_ID_BASE: u64 = 1 << 62;

static NEXT_INTERNAL_ID: AtomicU64 = AtomicU64::new(INTERNAL_ID_BASE);

/// Allocates an id for a subscriber that is not a client (a fan-out group). Never a clientid.
pub fn next_internal_id() -> ClientId {
    NEXT_INTERNAL_ID.fetch_add(1, Ordering::Relaxed)
}

/// Whether `id` came from [`next_internal_id`] rather than [`next_client_id`].
pub fn is_internal_id(id: ClientId) -> bool {
    id >= INTERNAL_ID_BASE
}

/// A stream subscriber's id as the log shows it (`subscriber=`): a client's id as is, a fan-out
/// group as `fanout-N`, so no log line shows an internal id where a clientid is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberId(pub ClientId);

impl fmt::Display for SubscriberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_internal_id(self.0) {
            write!(f, "fanout-{}", self.0 - INTERNAL_ID_BASE)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// Everything the hooks are told about a session, as the client asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Protocol of the client session.
    pub protocol: Protocol,
    /// Server-assigned unique id, the same in every callback of this session.
    pub clientid: ClientId,
    /// The client's IP address.
    pub addr: IpAddr,
    /// Application name (without any query string).
    pub app: String,
    /// The full URL the client asked for, query string included.
    pub url: String,
    /// Stream name (without any query string); empty for `connect`.
    pub name: String,
    /// RTMP's tcUrl; empty for protocols that have none.
    pub tcurl: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_increase_from_the_clock_and_stay_json_safe() {
        let a = next_client_id();
        let b = next_client_id();
        assert!(b > a);
        assert!(b < 1 << 53);
        // A run started a millisecond later starts above 1024 ids of this one.
        assert_eq!(first_client_id(1_000) + 1024, first_client_id(1_001));
        assert_eq!(first_client_id(1 << 43), (1 << 53) - 1);
        assert!(!is_internal_id(a));
    }
}

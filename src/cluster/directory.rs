//! The directory in Redis: one key per live stream, `streamgate:stream:<app>/<name>`, holding
//! its owner (node, relay address, publisher's clientid, since) as JSON, under a lease
//! (`PX`). Claims are `SET NX PX`; renewals and releases are Lua scripts that act only while
//! the value is still this node's (Redis runs a script atomically); the clientid counter is
//! `streamgate:clientid`, handed out in blocks by `INCRBY`.
//!
//! Each call is bounded by the connection's response timeout; it keeps no state of its own.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use streamgate_actors::media::StreamKey;
use streamgate_actors::session::ClientId;

/// The prefix of every stream key.
pub const STREAM_PREFIX: &str = "streamgate:stream:";
/// The clientid counter.
pub const CLIENTID_KEY: &str = "streamgate:clientid";

/// Who owns a live stream, as the directory holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The owning node's `<node_id>`.
    pub node: String,
    /// Its `<advertise>` address.
    pub advertise: String,
    /// The publisher's clientid.
    pub clientid: ClientId,
    /// When the publish began, Unix milliseconds.
    pub since: u64,
}

/// A directory entry: a stream and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stream.
    pub key: StreamKey,
    /// Its owner.
    pub owner: Owner,
}

/// The Redis key of a stream.
pub fn redis_key(key: &StreamKey) -> String {
    format!("{STREAM_PREFIX}{}/{}", key.app, key.name)
}

/// The stream a Redis key names (the app is up to the first `/`: apps have none).
fn stream_of(redis_key: &str) -> Option<StreamKey> {
    let rest = redis_key.strip_prefix(STREAM_PREFIX)?;
    let (app, name) = rest.split_once('/')?;
    Some(StreamKey::new(app, name))
}

/// Renews every claim given (KEYS) whose value (ARGV[i + 1]) is still the one this node
/// wrote; writes it again where Redis lost it (expired while Redis was unreachable, or a
/// Redis restart). Per key: 1 renewed, 2 written again, 0 another node's now.
const RENEW: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local value = ARGV[i + 1]
  local now = redis.call('GET', key)
  if now == value then
    redis.call('PEXPIRE', key, ARGV[1])
    out[i] = 1
  elseif not now then
    redis.call('SET', key, value, 'PX', ARGV[1])
    out[i] = 2
  else
    out[i] = 0
  end
end
return out
";

/// Deletes KEYS[1] when its value is still ARGV[1].
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Takes a block of ARGV[1] clientids; a counter that does not exist (a new Redis, or one
/// that lost its data) starts at ARGV[2] (the clock-based first id), above every id handed
/// out before at fewer than 1024 ids per millisecond.
const CLIENTID_BLOCK: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[2])
end
return redis.call('INCRBY', KEYS[1], ARGV[1])
";

/// The directory's Redis operations.
#[derive(Clone)]
pub struct Directory {
    conn: ConnectionManager,
    lease: Duration,
    renew: std::sync::Arc<Script>,
    release: std::sync::Arc<Script>,
    block: std::sync::Arc<Script>,
}

impl Directory {
    /// Over a (lazily connecting) connection manager; claims live `lease`.
    pub fn new(conn: ConnectionManager, lease: Duration) -> Self {
        Directory {
            conn,
            lease,
            renew: std::sync::Arc::new(Script::new(RENEW)),
            release: std::sync::Arc::new(Script::new(RELEASE)),
            block: std::sync::Arc::new(Script::new(CLIENTID_BLOCK)),
        }
    }

    fn lease_ms(&self) -> u64 {
        self.lease.as_millis() as u64
    }

    /// Claims `key` with `value` (an encoded [`Owner`]) if nobody holds it: true when this
    /// call took it.
    pub async fn claim(&self, key: &StreamKey, value: &str) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(redis_key(key))
            .arg(value)
            .arg("PX")
            .arg(self.lease_ms())
            .arg("NX")
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    /// Renews the claims `(key, value)`; per claim 1 renewed, 2 written again, 0 lost.
    pub async fn renew(&self, claims: &[(StreamKey, String)]) -> redis::RedisResult<Vec<i64>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut call = self.renew.prepare_invoke();
        call.arg(self.lease_ms());
        for (key, value) in claims {
            call.key(redis_key(key));
            call.arg(value);
        }
        call.invoke_async(&mut conn).await
    }

    /// Deletes the claim of `key` when it is still `value`.
    pub async fn release(&self, key: &StreamKey, value: &str) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        let deleted: i64 = self
            .release
            .key(redis_key(key))
            .arg(value)
            .invoke_async(&mut conn)
            .await?;
        Ok(deleted == 1)
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async(&mut conn).await
    }

    /// The owner of `key`, if it is live anywhere.
    pub async fn lookup(&self, key: &StreamKey) -> redis::RedisResult<Option<Owner>> {
        let mut conn = self.conn.clone();
        let value: Option<String> = conn.get(redis_key(key)).await?;
        Ok(value.and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// Every live stream of the cluster (SCAN over the stream keys, then MGET).
    pub async fn list(&self) -> redis::RedisResult<Vec<Entry>> {
        let mut conn = self.conn.clone();
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{STREAM_PREFIX}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        let mut entries = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(500) {
            let values: Vec<Option<String>> =
                redis::cmd("MGET").arg(chunk).query_async(&mut conn).await?;
            for (k, v) in chunk.iter().zip(values) {
                let (Some(key), Some(owner)) = (
                    stream_of(k),
                    v.and_then(|v| serde_json::from_str::<Owner>(&v).ok()),
                ) else {
                    continue;
                };
                entries.push(Entry { key, owner });
            }
        }
        Ok(entries)
    }

    /// A block of `size` clientids: the last one of it.
    pub async fn clientid_block(&self, size: u64, first: u64) -> redis::RedisResult<u64> {
        let mut conn = self.conn.clone();
        self.block
            .key(CLIENTID_KEY)
            .arg(size)
            .arg(first)
            .invoke_async(&mut conn)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_keys_round_trip() {
        let key = StreamKey::new("live", "a/b c");
        assert_eq!(redis_key(&key), "streamgate:stream:live/a/b c");
        assert_eq!(stream_of(&redis_key(&key)), Some(key));
        assert_eq!(stream_of("other:live/x"), None);
    }
}

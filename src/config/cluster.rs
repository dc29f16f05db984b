//! `<cluster>`: several nodes serving as one (see `crate::cluster` and docs/cluster.md).
//!
//! Absent, the server is one node on its own and needs no Redis. It only reads and checks
//! the section; it opens no connection.

use std::net::SocketAddr;
use std::time::Duration;

use super::error::{ConfigError, ErrorKind};
use super::tree::Element;

/// Default `<lease_ms>`: how long a node's claim of a stream outlives its last renewal.
pub const DEFAULT_LEASE: Duration = Duration::from_millis(5000);
/// Default `<heartbeat_ms>`: how often a node renews its claims.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(1000);
/// Default `<relay_idle_ms>`: how long a relay pull outlives its last local player.
pub const DEFAULT_RELAY_IDLE: Duration = Duration::from_millis(5000);
/// Shortest `<secret>` accepted, in bytes.
pub const MIN_CLUSTER_SECRET: usize = 16;

/// `<cluster>`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `<redis>`: the `redis://` URL of the shared Redis.
    pub redis: String,
    /// `<advertise>`: `host:port` other nodes open relay connections to.
    pub advertise: String,
    /// `<listen>`: where the relay listener binds; default every address on the
    /// `<advertise>` port.
    pub listen: SocketAddr,
    /// `<secret>`: shared by the nodes; authenticates relay connections.
    pub secret: String,
    /// `<lease_ms>`.
    pub lease: Duration,
    /// `<heartbeat_ms>`.
    pub heartbeat: Duration,
    /// `<relay_idle_ms>`.
    pub relay_idle: Duration,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis", &self.redis)
            .field("advertise", &self.advertise)
            .field("listen", &self.listen)
            .field("secret", &"<hidden>")
            .field("lease", &self.lease)
            .field("heartbeat", &self.heartbeat)
            .field("relay_idle", &self.relay_idle)
            .finish()
    }
}

const ELEMENTS: [&str; 7] = [
    "redis",
    "advertise",
    "listen",
    "secret",
    "lease_ms",
    "heartbeat_ms",
    "relay_idle_ms",
];

fn invalid(el: &Element, value: &str, reason: &str) -> ConfigError {
    el.error(ErrorKind::InvalidValue {
        value: value.to_owned(),
        reason: reason.to_owned(),
    })
}

/// The port of a `host:port` (a bracketed IPv6 literal for the host), when it has one.
fn port_of(address: &str) -> Option<u16> {
    let (host, port) = address.rsplit_once(':')?;
    if host.is_empty() || (host.contains(':') && !(host.starts_with('[') && host.ends_with(']'))) {
        return None;
    }
    port.parse().ok().filter(|p| *p != 0)
}

/// Reads `<cluster>` (absent: `None`). `node_id_given` says whether `<config><node_id>` was
/// set: a cluster needs every node named by the operator.
pub(crate) fn read(
    el: Option<&Element>,
    node_id_given: bool,
) -> Result<Option<ClusterConfig>, ConfigError> {
    let Some(el) = el else {
        return Ok(None);
    };
    if !node_id_given {
        return Err(el.error(ErrorKind::Missing {
            what: "<config><node_id> (each node of a cluster needs its own, unique name)".into(),
        }));
    }
    let children = el.children(&ELEMENTS)?;
    let required = |name: &'static str| {
        children.get(name).ok_or_else(|| {
            el.error(ErrorKind::Missing {
                what: format!("<{name}>"),
            })
        })
    };
    let redis_el = required("redis")?;
    let redis = redis_el.value()?.trim().to_owned();
    if !redis.starts_with("redis://") || redis.len() == "redis://".len() {
        return Err(invalid(
            redis_el,
            &redis,
            "a redis:// URL is needed, like redis://10.0.0.5:6379/0",
        ));
    }
    let advertise_el = required("advertise")?;
    let advertise = advertise_el.value()?.trim().to_owned();
    let Some(port) = port_of(&advertise) else {
        return Err(invalid(
            advertise_el,
            &advertise,
            "host:port is needed, like 10.0.0.5:7935 or [fd00::5]:7935",
        ));
    };
    let listen = match children.get("listen") {
        Some(e) => {
            let value = e.value()?.trim();
            value.parse().map_err(|_| {
                invalid(
                    e,
                    value,
                    "an IP address and port are needed, like 0.0.0.0:7935 or [::]:7935",
                )
            })?
        }
        None => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
    };
    let secret_el = required("secret")?;
    let secret = secret_el.value()?.to_owned();
    if secret.len() < MIN_CLUSTER_SECRET {
        return Err(secret_el.error(ErrorKind::InvalidValue {
            value: "(hidden)".into(),
            reason: format!("the cluster secret needs at least {MIN_CLUSTER_SECRET} bytes"),
        }));
    }
    let millis = |name: &str, default: Duration| match children.get(name) {
        Some(e) => e.millis("number of milliseconds", 100, 600_000),
        None => Ok(default),
    };
    let lease = millis("lease_ms", DEFAULT_LEASE)?;
    let heartbeat = millis("heartbeat_ms", DEFAULT_HEARTBEAT)?;
    let relay_idle = millis("relay_idle_ms", DEFAULT_RELAY_IDLE)?;
    if heartbeat * 2 > lease {
        let at = children
            .get("heartbeat_ms")
            .or(children.get("lease_ms"))
            .unwrap_or(el);
        return Err(at.error(ErrorKind::InvalidValue {
            value: format!("{}", heartbeat.as_millis()),
            reason: format!(
                "the heartbeat must be at most half the lease ({} ms), so one lost renewal does not drop a stream",
                lease.as_millis()
            ),
        }));
    }
    Ok(Some(ClusterConfig {
        redis,
        advertise,
        listen,
        secret,
        lease,
        heartbeat,
        relay_idle,
    }))
}

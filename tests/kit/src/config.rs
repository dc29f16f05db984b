//! The XML config of one test's server, built field by field: RTMP always, HTTP-FLV, RTSP and
//! SRT when asked for, each on a free port, with hooks pointed at a [`crate::HookServer`].

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::util::{free_port, Rng, UNIQUE};

/// The `<node_id>` of every test's server: the `node` field of each of its callbacks.
pub const TEST_NODE: &str = "test-node";

/// The `<cluster><secret>` of the tests' clusters.
pub const CLUSTER_SECRET: &str = "cluster-secret-of-the-tests-0123";

/// The XML config of one test's server.
#[derive(Debug, Clone)]
pub struct Config {
    pub workers: usize,
    pub log_level: String,
    /// `<node_id>`: [`TEST_NODE`] unless a test sets another.
    pub node_id: String,
    pub port: u16,
    pub on_connect: Option<String>,
    pub on_play: Option<String>,
    pub on_publish: Option<String>,
    pub on_done: Option<String>,
    pub method: Option<String>,
    pub timeout_ms: Option<u64>,
    /// `<rtmp><queue_bytes>` and `<stall_timeout_ms>`, when set.
    pub rtmp_limits: Option<(u64, u64)>,
    /// Extra environment variables for the server process.
    pub env: Vec<(String, String)>,
    /// The `<httpflv>` section, when enabled.
    pub httpflv: Option<HttpFlv>,
    /// The `<rtsp>` section, when enabled.
    pub rtsp: Option<Rtsp>,
    /// The `<srt>` section, when enabled.
    pub srt: Option<Srt>,
    /// The `<hls>` section, when enabled.
    pub hls: Option<Hls>,
    /// `(section, xml)`: more elements written at the start of a section.
    pub extra: Vec<(String, String)>,
    /// `<data_dir>`: the outbox's directory. When unset, every server the kit starts gets a
    /// temporary one of its own (tests run servers in parallel from one working directory).
    pub data_dir: Option<std::path::PathBuf>,
    /// `<outbox_max_events>`, when set.
    pub outbox_max_events: Option<u64>,
    /// `(section, xml)`: more elements written at the start of a section's `<http_notify>`.
    pub notify_extra: Vec<(String, String)>,
    /// `<api><port>`: a free port of its own.
    pub api_port: u16,
    /// `<api><token>`, when set.
    pub api_token: Option<String>,
    /// `(namespace, address)`: the server runs in that network namespace (`ip netns exec`)
    /// and is reached at that address ([`crate::netns::Lan`]).
    pub netns: Option<(String, std::net::IpAddr)>,
}

/// The `<hls>` section of a test's config.
#[derive(Debug, Clone, Default)]
pub struct Hls {
    pub port: u16,
    /// `(base, suffix)`: hooks at `{base}/connect{suffix}` and so on.
    pub hooks: Option<(String, String)>,
    /// More elements of the section (`<idle_timeout_ms>`, ...).
    pub options: String,
}

/// The `<httpflv>` section of a test's config.
#[derive(Debug, Clone, Default)]
pub struct HttpFlv {
    pub port: u16,
    /// `(base, suffix)`: hooks at `{base}/connect{suffix}` and so on.
    pub hooks: Option<(String, String)>,
    pub queue_bytes: Option<u64>,
    pub stall_timeout_ms: Option<u64>,
}

impl Config {
    /// RTMP on a free port, no hooks, 2 workers, debug logs.
    pub fn new() -> Config {
        Config {
            workers: 2,
            log_level: "debug".into(),
            node_id: TEST_NODE.into(),
            port: free_port(),
            on_connect: None,
            on_play: None,
            on_publish: None,
            on_done: None,
            method: None,
            timeout_ms: None,
            rtmp_limits: None,
            env: Vec::new(),
            httpflv: None,
            rtsp: None,
            srt: None,
            hls: None,
            extra: Vec::new(),
            data_dir: None,
            outbox_max_events: None,
            notify_extra: Vec::new(),
            api_port: free_port(),
            api_token: None,
            netns: None,
        }
    }

    /// Runs the server in the network namespace `ns`, reached at `ip`.
    pub fn in_netns(mut self, ns: &str, ip: std::net::IpAddr) -> Config {
        self.netns = Some((ns.into(), ip));
        self
    }

    /// `<api><token>`.
    pub fn api_token(mut self, token: &str) -> Config {
        self.api_token = Some(token.into());
        self
    }

    /// Writes `xml` (elements) at the start of `<section>`'s `<http_notify>` (the section
    /// must be enabled).
    pub fn notify_xml(mut self, section: &str, xml: &str) -> Config {
        self.notify_extra.push((section.into(), xml.into()));
        self
    }

    /// `<on_update>` at `url` and `<update_interval_ms>` in `section`'s `<http_notify>`.
    pub fn on_update(self, section: &str, url: &str, interval_ms: u64) -> Config {
        let xml = format!(
            "<on_update>{url}</on_update><update_interval_ms>{interval_ms}</update_interval_ms>"
        );
        self.notify_xml(section, &xml)
    }

    /// Sets `<data_dir>` (the outbox's directory), so two runs can share it.
    pub fn data_dir(mut self, dir: &std::path::Path) -> Config {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// Writes `xml` (elements) at the start of `<section>` (which must be enabled).
    pub fn section_xml(mut self, section: &str, xml: &str) -> Config {
        self.extra.push((section.into(), xml.into()));
        self
    }

    /// `<address>` of `<section>` (which must be enabled): the IP address its listener binds.
    pub fn address(self, section: &str, ip: &str) -> Config {
        self.section_xml(section, &format!("<address>{ip}</address>"))
    }

    /// A node of a cluster: `<node_id>` `node` and a `<cluster>` on the Redis at `redis`, its
    /// relay on 127.0.0.1:`relay_port`, with a short lease (the tests wait for it).
    pub fn cluster(self, node: &str, redis: &str, relay_port: u16, lease_ms: u64) -> Config {
        let relay = std::net::SocketAddr::from(([127, 0, 0, 1], relay_port));
        self.cluster_at(node, redis, relay, lease_ms)
    }

    /// [`Config::cluster`] with the relay advertised and listening at `relay`.
    pub fn cluster_at(
        mut self,
        node: &str,
        redis: &str,
        relay: std::net::SocketAddr,
        lease_ms: u64,
    ) -> Config {
        self.node_id = node.into();
        let heartbeat = (lease_ms / 4).max(100);
        self.section_xml(
            "config",
            &format!(
                "<cluster><redis>{redis}</redis><advertise>{relay}</advertise>\
                 <listen>{relay}</listen><secret>{CLUSTER_SECRET}</secret>\
                 <lease_ms>{lease_ms}</lease_ms><heartbeat_ms>{heartbeat}</heartbeat_ms>\
                 <relay_idle_ms>2000</relay_idle_ms></cluster>"
            ),
        )
    }

    /// `<log_format>` (`text` or `json`).
    pub fn log_format(self, format: &str) -> Config {
        self.section_xml("config", &format!("<log_format>{format}</log_format>"))
    }

    /// Enables SRT on a free UDP port (keeps the section if already enabled).
    pub fn srt(mut self) -> Config {
        self.srt.get_or_insert_with(|| Srt {
            port: free_udp_port(),
            ..Srt::default()
        });
        self
    }

    /// Enables SRT with its four hooks at `{base}/connect{suffix}`, ...
    pub fn srt_hooks(self, base: &str, suffix: &str) -> Config {
        let mut c = self.srt();
        if let Some(s) = c.srt.as_mut() {
            s.hooks = Some((base.into(), suffix.into()));
        }
        c
    }

    /// Enables SRT with `<passphrase>` (and `<pbkeylen>` when given).
    pub fn srt_passphrase(self, passphrase: &str, pbkeylen: Option<u8>) -> Config {
        let mut c = self.srt();
        if let Some(s) = c.srt.as_mut() {
            s.passphrase = Some(passphrase.into());
            s.pbkeylen = pbkeylen;
        }
        c
    }

    /// The `<srt>` section of the XML (empty when SRT is not enabled).
    fn srt_xml(&self) -> String {
        let Some(s) = &self.srt else {
            return String::new();
        };
        let esc = |v: &str| {
            v.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut inner = String::new();
        if let Some((base, suffix)) = &s.hooks {
            for call in ["connect", "play", "publish", "done"] {
                let url = esc(&format!("{base}/{call}{suffix}"));
                inner.push_str(&format!("      <on_{call}>{url}</on_{call}>\n"));
            }
        }
        let mut extra = String::new();
        if let Some(p) = &s.passphrase {
            extra.push_str(&format!("    <passphrase>{}</passphrase>\n", esc(p)));
        }
        if let Some(k) = s.pbkeylen {
            extra.push_str(&format!("    <pbkeylen>{k}</pbkeylen>\n"));
        }
        if let Some(l) = s.latency_ms {
            extra.push_str(&format!("    <latency_ms>{l}</latency_ms>\n"));
        }
        format!(
            "  <srt>\n    <enable>true</enable>\n    <port>{}</port>\n{extra}    <http_notify>\n{inner}    </http_notify>\n  </srt>\n",
            s.port
        )
    }

    /// Enables HLS on a free port (keeps the section if already enabled), with `options`
    /// (elements such as `<idle_timeout_ms>2000</idle_timeout_ms>`) added to the section.
    pub fn hls(mut self, options: &str) -> Config {
        let hls = self.hls.get_or_insert_with(|| Hls {
            port: free_port(),
            ..Hls::default()
        });
        hls.options.push_str(options);
        self
    }

    /// Enables HLS with its hooks at `{base}/connect{suffix}`, ...
    pub fn hls_hooks(self, base: &str, suffix: &str) -> Config {
        let mut c = self.hls("");
        if let Some(h) = c.hls.as_mut() {
            h.hooks = Some((base.into(), suffix.into()));
        }
        c
    }

    /// Enables HTTP-FLV on a free port (keeps the section if already enabled).
    pub fn httpflv(mut self) -> Config {
        self.httpflv.get_or_insert_with(|| HttpFlv {
            port: free_port(),
            ..HttpFlv::default()
        });
        self
    }

    /// Enables HTTP-FLV with its four hooks at `{base}/connect{suffix}`, ...
    pub fn httpflv_hooks(self, base: &str, suffix: &str) -> Config {
        let mut c = self.httpflv();
        if let Some(h) = c.httpflv.as_mut() {
            h.hooks = Some((base.into(), suffix.into()));
        }
        c
    }

    /// Enables HTTP-FLV with a player queue of `queue_bytes` and a stall timeout.
    pub fn httpflv_limits(self, queue_bytes: u64, stall_timeout_ms: u64) -> Config {
        let mut c = self.httpflv();
        if let Some(h) = c.httpflv.as_mut() {
            h.queue_bytes = Some(queue_bytes);
            h.stall_timeout_ms = Some(stall_timeout_ms);
        }
        c
    }

    /// Enables RTSP on a free TCP port with 100 UDP ports for RTP/RTCP from a random even
    /// base in 40000..59000 (keeps the section if already enabled).
    pub fn rtsp(mut self) -> Config {
        self.rtsp.get_or_insert_with(|| {
            let min = rtp_port_base();
            Rtsp {
                port: free_port(),
                rtp_port_min: min,
                rtp_port_max: min + 99,
                hooks: None,
            }
        });
        self
    }

    /// Enables RTSP with its four hooks at `{base}/connect{suffix}`, ...
    pub fn rtsp_hooks(self, base: &str, suffix: &str) -> Config {
        let mut c = self.rtsp();
        if let Some(r) = c.rtsp.as_mut() {
            r.hooks = Some((base.into(), suffix.into()));
        }
        c
    }

    /// The `<rtsp>` section of the XML (empty when RTSP is not enabled).
    fn rtsp_xml(&self) -> String {
        let Some(r) = &self.rtsp else {
            return String::new();
        };
        let mut inner = String::new();
        if let Some((base, suffix)) = &r.hooks {
            for call in ["connect", "play", "publish", "done"] {
                let url = format!("{base}/{call}{suffix}")
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;");
                inner.push_str(&format!("      <on_{call}>{url}</on_{call}>\n"));
            }
        }
        format!(
            "  <rtsp>\n    <enable>true</enable>\n    <port>{}</port>\n    <rtp_port_min>{}</rtp_port_min>\n    <rtp_port_max>{}</rtp_port_max>\n    <http_notify>\n{inner}    </http_notify>\n  </rtsp>\n",
            r.port, r.rtp_port_min, r.rtp_port_max
        )
    }

    /// Sets an environment variable of the server process.
    pub fn env(mut self, key: &str, value: &str) -> Config {
        self.env.push((key.into(), value.into()));
        self
    }

    /// All four hooks at `{base}/connect`, `{base}/play`, ... followed by `suffix` (e.g. a query).
    pub fn hooks(mut self, base: &str, suffix: &str) -> Config {
        self.on_connect = Some(format!("{base}/connect{suffix}"));
        self.on_play = Some(format!("{base}/play{suffix}"));
        self.on_publish = Some(format!("{base}/publish{suffix}"));
        self.on_done = Some(format!("{base}/done{suffix}"));
        self
    }

    pub fn method(mut self, m: &str) -> Config {
        self.method = Some(m.into());
        self
    }

    pub fn timeout_ms(mut self, ms: u64) -> Config {
        self.timeout_ms = Some(ms);
        self
    }

    /// RTMP players' `<queue_bytes>` and `<stall_timeout_ms>`.
    pub fn rtmp_limits(mut self, queue_bytes: u64, stall_timeout_ms: u64) -> Config {
        self.rtmp_limits = Some((queue_bytes, stall_timeout_ms));
        self
    }

    pub fn workers(mut self, n: usize) -> Config {
        self.workers = n;
        self
    }

    pub fn to_xml(&self) -> String {
        let mut xml = self.sections_xml();
        for (section, extra) in &self.extra {
            let open = format!("<{section}>\n");
            xml = xml.replacen(&open, &format!("{open}    {extra}\n"), 1);
        }
        for (section, extra) in &self.notify_extra {
            let open = format!("<{section}>\n");
            let at = xml.find(&open).expect("the section is enabled");
            let notify = "<http_notify>\n";
            let inner = at
                + xml[at..]
                    .find(notify)
                    .expect("the section has <http_notify>");
            xml.insert_str(inner + notify.len(), &format!("      {extra}\n"));
        }
        xml
    }

    fn sections_xml(&self) -> String {
        fn esc(s: &str) -> String {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        }
        let mut notify = String::new();
        for (tag, v) in [
            ("on_connect", &self.on_connect),
            ("on_play", &self.on_play),
            ("on_publish", &self.on_publish),
            ("on_done", &self.on_done),
        ] {
            if let Some(url) = v {
                notify.push_str(&format!("      <{tag}>{}</{tag}>\n", esc(url)));
            }
        }
        if let Some(m) = &self.method {
            notify.push_str(&format!("      <notify_method>{m}</notify_method>\n"));
        }
        if let Some(t) = self.timeout_ms {
            notify.push_str(&format!("      <timeout_ms>{t}</timeout_ms>\n"));
        }
        let mut httpflv = String::new();
        if let Some(h) = &self.httpflv {
            let mut inner = String::new();
            if let Some((base, suffix)) = &h.hooks {
                for call in ["connect", "play", "publish", "done"] {
                    inner.push_str(&format!(
                        "      <on_{call}>{}</on_{call}>\n",
                        esc(&format!("{base}/{call}{suffix}"))
                    ));
                }
            }
            let mut limits = String::new();
            if let Some(q) = h.queue_bytes {
                limits.push_str(&format!("    <queue_bytes>{q}</queue_bytes>\n"));
            }
            if let Some(t) = h.stall_timeout_ms {
                limits.push_str(&format!("    <stall_timeout_ms>{t}</stall_timeout_ms>\n"));
            }
            httpflv = format!(
                "  <httpflv>\n    <enable>true</enable>\n    <port>{}</port>\n{limits}    <http_notify>\n{inner}    </http_notify>\n  </httpflv>\n",
                h.port
            );
        }
        let mut hls = String::new();
        if let Some(h) = &self.hls {
            let mut inner = String::new();
            if let Some((base, suffix)) = &h.hooks {
                for call in ["connect", "play", "done"] {
                    inner.push_str(&format!(
                        "      <on_{call}>{}</on_{call}>\n",
                        esc(&format!("{base}/{call}{suffix}"))
                    ));
                }
            }
            hls = format!(
                "  <hls>\n    <enable>true</enable>\n    <port>{}</port>\n    {}\n    <http_notify>\n{inner}    </http_notify>\n  </hls>\n",
                h.port, h.options
            );
        }
        let rtmp_limits = self.rtmp_limits.map_or(String::new(), |(q, t)| {
            format!("    <queue_bytes>{q}</queue_bytes>\n    <stall_timeout_ms>{t}</stall_timeout_ms>\n")
        });
        let mut top = String::new();
        if let Some(dir) = &self.data_dir {
            top.push_str(&format!(
                "  <data_dir>{}</data_dir>\n",
                esc(&dir.display().to_string())
            ));
        }
        if let Some(max) = self.outbox_max_events {
            top.push_str(&format!("  <outbox_max_events>{max}</outbox_max_events>\n"));
        }
        let api_token = self
            .api_token
            .as_ref()
            .map_or(String::new(), |t| format!("<token>{}</token>", esc(t)));
        format!(
            "<config>\n  <workers>{}</workers>\n  <log_level>{}</log_level><node_id>{}</node_id>\n{top}  <api><port>{}</port>{api_token}</api>\n  <rtmp>\n    <enable>true</enable>\n    <port>{}</port>\n{rtmp_limits}    <http_notify>\n{notify}    </http_notify>\n  </rtmp>\n{httpflv}{hls}{rtsp}{srt}</config>\n",
            self.workers,
            self.log_level,
            self.node_id,
            self.api_port,
            self.port,
            rtsp = self.rtsp_xml(),
            srt = self.srt_xml()
        )
    }
}

/// The `<rtsp>` section of a test's config.
#[derive(Debug, Clone, Default)]
pub struct Rtsp {
    pub port: u16,
    /// The UDP ports RTP/RTCP pairs are taken from (`rtp_port_min` even).
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// `(base, suffix)`: hooks at `{base}/connect{suffix}` and so on.
    pub hooks: Option<(String, String)>,
}

/// The `<srt>` section of a test's config.
#[derive(Debug, Clone, Default)]
pub struct Srt {
    /// The UDP port.
    pub port: u16,
    /// `(base, suffix)`: hooks at `{base}/connect{suffix}` and so on.
    pub hooks: Option<(String, String)>,
    pub passphrase: Option<String>,
    pub pbkeylen: Option<u8>,
    pub latency_ms: Option<u64>,
}

/// A UDP port nobody uses right now ([`free_port`]: free for UDP and TCP, from below the
/// ephemeral range).
pub fn free_udp_port() -> u16 {
    free_port()
}

/// A random even port in 40000..59000 (per process, per call), the base of a test's RTP range.
fn rtp_port_base() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut rng = Rng::new(
        u64::from(nanos)
            ^ (u64::from(std::process::id()) << 32)
            ^ ((UNIQUE.fetch_add(1, Ordering::SeqCst) as u64) << 20),
    );
    rng.next_u64();
    40000 + 2 * (rng.next_u64() % 9500) as u16
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

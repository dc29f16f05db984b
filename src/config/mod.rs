//! The XML configuration file of streamgate.
//!
//! This module owns the typed configuration ([`Config`], one [`Section`] per protocol,
//! [`LogLevel`]) with its defaults, and the shipped config, `config/streamgate.xml`, embedded as
//! [`DEFAULT_CONFIG_XML`]. [`Config::parse`] reads the XML into an element tree that remembers
//! the line of every element (`tree.rs`), then maps that tree to the typed config: each
//! protocol's section type reads and checks its own elements (`section.rs`, `protocols.rs`,
//! `notify.rs` for `<http_notify>`), and the checks across sections (ports) are here. Every
//! refusal is a [`ConfigError`] naming the line and the element (`error.rs`).
//!
//! Everything the server would refuse at start-up for a value of the file is checked here, so
//! `--check-config` and start-up run the same validation: a file that checks is a file that
//! starts (unless a port is taken by another program).
//!
//! It must not open sockets, start actors, install loggers or read environment variables: it
//! only turns text into a checked [`Config`], and the caller decides what to do with it.
//! The element names are a fixed interface (operators' files and external tests rely on them);
//! see `docs/configuration.md`.

mod api;
mod cluster;
mod error;
mod notify;
mod protocols;
mod section;
mod tree;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use streamgate_actors::notify::HookTable;

pub use api::{ApiConfig, DEFAULT_API_PORT};
pub use cluster::ClusterConfig;
pub use error::{ConfigError, ErrorKind, LoadError, Location};
pub use protocols::{
    HlsContainer, HlsOptions, HttpFlvOptions, RtmpOptions, RtspOptions, SrtOptions,
};
pub use section::{Protocol, Section, Transport};

use section::Placed;
use tree::build_tree;

/// The shipped `config/streamgate.xml`, used when no config file is given. It serves RTMP on
/// 1935, HTTP-FLV on 8080, RTSP on 8554, SRT on UDP 8890 and HLS on 8888, and sets no hook
/// URL.
pub const DEFAULT_CONFIG_XML: &str = include_str!("../../config/streamgate.xml");

/// The URL schemes a hook may use.
pub const SUPPORTED_HOOK_SCHEMES: &[&str] = &["http", "https"];

/// Default `<rtmp><port>`.
pub const DEFAULT_RTMP_PORT: u16 = 1935;
/// Default `<rtsp><port>`.
pub const DEFAULT_RTSP_PORT: u16 = 8554;
/// Default `<srt><port>` (UDP).
pub const DEFAULT_SRT_PORT: u16 = 8890;
/// Default `<httpflv><port>`.
pub const DEFAULT_HTTPFLV_PORT: u16 = 8080;
/// Default `<hls><port>`.
pub const DEFAULT_HLS_PORT: u16 = 8888;
/// The largest `<workers>` accepted.
pub const MAX_WORKERS: usize = 256;
/// Default `<queue_bytes>`: 4 MiB of unwritten output per player.
pub const DEFAULT_QUEUE_BYTES: usize = 4 << 20;
/// Smallest and largest `<queue_bytes>`.
pub const QUEUE_BYTES_RANGE: (u64, u64) = (64 << 10, 256 << 20);
/// Default `<rtsp><rtp_port_min>` and `<rtp_port_max>`.
pub const DEFAULT_RTP_PORTS: (u16, u16) = (20000, 20999);
/// Default `<stall_timeout_ms>`.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Smallest and largest `<stall_timeout_ms>`.
pub const STALL_TIMEOUT_RANGE_MS: (u64, u64) = (1_000, 600_000);
/// Default `<write_merge_ms>` of the TCP protocols.
pub const DEFAULT_WRITE_MERGE: Duration = Duration::from_millis(WRITE_MERGE_DEFAULT_MS);
const WRITE_MERGE_DEFAULT_MS: u64 = 40;
/// The largest `<write_merge_ms>` accepted.
pub const MAX_WRITE_MERGE_MS: u64 = 1_000;
/// Default `<max_connections>` of every protocol section.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The largest `<max_connections>` and `<max_connections_per_ip>` accepted.
pub const MAX_CONNECTIONS_LIMIT: u64 = 1_000_000;
/// The largest `<timeout_ms>` accepted (ten minutes).
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// The whole configuration, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Arbiters in the connection pool (`<workers>`, 1..=256; default: the number of cores).
    pub workers: usize,
    /// `<log_level>`; default `info`.
    pub log_level: LogLevel,
    /// `<log_format>`; default `text`.
    pub log_format: LogFormat,
    /// `<rtmp>`: enabled on 1935 by default.
    pub rtmp: RtmpConfig,
    /// `<rtsp>`: disabled by default (port 8554); the shipped config enables it.
    pub rtsp: RtspConfig,
    /// `<srt>`: disabled by default (UDP port 8890); the shipped config enables it.
    pub srt: SrtConfig,
    /// `<httpflv>`: disabled by default (port 8080); the shipped config enables it.
    pub httpflv: HttpFlvConfig,
    /// `<hls>`: disabled by default (port 8888); the shipped config enables it.
    pub hls: HlsConfig,
    /// `<node_id>`: this server's name, the `node` field of every callback; default the
    /// host name ([`default_node_id`]).
    pub node_id: String,
    /// `<data_dir>`: where the outbox of undelivered `on_done` events lives; default
    /// [`DEFAULT_DATA_DIR`] in the working directory. One server per data dir.
    pub data_dir: PathBuf,
    /// `<outbox_max_events>`: most undelivered `on_done` events kept; past it the oldest are
    /// dropped with an error log.
    pub outbox_max_events: u64,
    /// `<api>`: the operator's HTTP API, on 127.0.0.1:9997 by default.
    pub api: ApiConfig,
    /// `<cluster>`: the Redis-backed cluster this node belongs to; `None` (absent): a node on
    /// its own, no Redis.
    pub cluster: Option<ClusterConfig>,
    /// The file it was read from ([`Config::load`]); a reload reads it again. None for the
    /// embedded default and a parsed document.
    pub source: Option<PathBuf>,
}

/// The `<data_dir>` used when it is absent (relative: in the working directory).
pub const DEFAULT_DATA_DIR: &str = "streamgate-data";
/// The largest `<outbox_max_events>` accepted.
pub const MAX_OUTBOX_EVENTS: u64 = 1_000_000_000;

/// `<rtmp>`.
pub type RtmpConfig = Section<RtmpOptions>;
/// `<rtsp>`.
pub type RtspConfig = Section<RtspOptions>;
/// `<srt>`.
pub type SrtConfig = Section<SrtOptions>;
/// `<httpflv>`.
pub type HttpFlvConfig = Section<HttpFlvOptions>;
/// `<hls>`.
pub type HlsConfig = Section<HlsOptions>;

/// `<log_level>`: the least severe level that is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// `trace`.
    Trace,
    /// `debug`.
    Debug,
    /// `info` (the default).
    Info,
    /// `warn`.
    Warn,
    /// `error`.
    Error,
}

impl LogLevel {
    /// Every level, from the most to the least verbose.
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ];

    /// The name used in the config file, which is also a valid `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    /// The level named `name` (case-insensitive), if any.
    pub fn from_name(name: &str) -> Option<LogLevel> {
        LogLevel::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `<log_format>`: how each log event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `text` (the default): one human-readable line per event.
    #[default]
    Text,
    /// `json`: one JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    /// The format named `name` (case-insensitive), if any.
    pub fn from_name(name: &str) -> Option<LogFormat> {
        [LogFormat::Text, LogFormat::Json]
            .into_iter()
            .find(|format| format.as_str().eq_ignore_ascii_case(name))
    }
}

/// The number of arbiters used when `<workers>` is absent: the number of cores the process
/// may use (1 if unknown), at most [`MAX_WORKERS`].
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_WORKERS)
}

/// Longest `<node_id>`.
pub const MAX_NODE_ID: usize = 64;

/// Why `id` cannot name a node, if it cannot: 1 to [`MAX_NODE_ID`] ASCII letters, digits,
/// `.`, `-` or `_` (a host name fits; nothing that needs escaping in a log line or a URL).
pub fn node_id_problem(id: &str) -> Option<String> {
    if id.is_empty() || id.len() > MAX_NODE_ID {
        return Some(format!("a node id has 1 to {MAX_NODE_ID} characters"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Some("a node id has only ASCII letters, digits, '.', '-' and '_'".into());
    }
    None
}

/// Why `dir` cannot be a data dir, when that shows without creating it: it exists and is not
/// a directory.
pub fn data_dir_problem(dir: &Path) -> Option<String> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Some("it exists and is not a directory".into()),
        _ => None,
    }
}

/// The node id used when `<node_id>` is absent: the host name (Linux's
/// `/proc/sys/kernel/hostname`, else `$HOSTNAME`), or `streamgate` when neither is a valid id.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    if node_id_problem(&host).is_none() {
        host
    } else {
        "streamgate".to_owned()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: default_node_id(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            outbox_max_events: streamgate_actors::outbox::DEFAULT_MAX_EVENTS,
            workers: default_workers(),
            log_level: LogLevel::Info,
            log_format: LogFormat::Text,
            rtmp: Section::default(),
            rtsp: Section::default(),
            srt: Section::default(),
            httpflv: Section::default(),
            hls: Section::default(),
            api: ApiConfig::default(),
            cluster: None,
            source: None,
        }
    }
}

/// The elements `<config>` may hold.
const CONFIG_ELEMENTS: [&str; 13] = [
    "workers",
    "log_level",
    "node_id",
    "data_dir",
    "outbox_max_events",
    "rtmp",
    "rtsp",
    "srt",
    "httpflv",
    "hls",
    "api",
    "log_format",
    "cluster",
];

impl Config {
    /// Parses and validates a config document. Absent elements take their defaults.
    pub fn parse(xml: &str) -> Result<Config, ConfigError> {
        let root = build_tree(xml)?;
        let children = root.children(&CONFIG_ELEMENTS)?;

        let workers = match children.get("workers") {
            Some(el) => el.count("number of workers", 1, MAX_WORKERS as u64)?,
            None => default_workers(),
        };
        let log_level = match children.get("log_level") {
            Some(el) => {
                let value = el.value()?;
                LogLevel::from_name(value).ok_or_else(|| {
                    el.error(ErrorKind::InvalidLogLevel {
                        value: value.to_owned(),
                    })
                })?
            }
            None => LogLevel::Info,
        };
        let log_format = match children.get("log_format") {
            Some(el) => {
                let value = el.value()?;
                LogFormat::from_name(value).ok_or_else(|| {
                    el.error(ErrorKind::InvalidValue {
                        value: value.to_owned(),
                        reason: "a log format is text or json".to_owned(),
                    })
                })?
            }
            None => LogFormat::Text,
        };
        let node_id = match children.get("node_id") {
            Some(el) => {
                let value = el.value()?.trim();
                if let Some(reason) = node_id_problem(value) {
                    return Err(el.error(ErrorKind::InvalidValue {
                        value: value.to_owned(),
                        reason,
                    }));
                }
                value.to_owned()
            }
            None => default_node_id(),
        };
        let data_dir = match children.get("data_dir") {
            Some(el) => {
                let value = el.value()?;
                if value.is_empty() {
                    return Err(el.error(ErrorKind::InvalidValue {
                        value: value.to_owned(),
                        reason: "the data dir is a path: it cannot be empty".into(),
                    }));
                }
                if let Some(problem) = data_dir_problem(Path::new(value)) {
                    return Err(el.error(ErrorKind::InvalidValue {
                        value: value.to_owned(),
                        reason: problem,
                    }));
                }
                PathBuf::from(value)
            }
            None => PathBuf::from(DEFAULT_DATA_DIR),
        };
        let outbox_max_events = match children.get("outbox_max_events") {
            Some(el) => el.count("number of outbox events", 1, MAX_OUTBOX_EVENTS)? as u64,
            None => streamgate_actors::outbox::DEFAULT_MAX_EVENTS,
        };

        let (rtmp, rtmp_at) = Section::read(children.get("rtmp"))?;
        let (rtsp, rtsp_at) = Section::read(children.get("rtsp"))?;
        let (srt, srt_at) = Section::read(children.get("srt"))?;
        let (httpflv, httpflv_at) = Section::read(children.get("httpflv"))?;
        let (hls, hls_at) = Section::read(children.get("hls"))?;
        let (api, api_at) = api::read(children.get("api"))?;
        check_port_conflicts(&[rtmp_at, rtsp_at, srt_at, httpflv_at, hls_at, api_at])?;
        let cluster = cluster::read(children.get("cluster"), children.get("node_id").is_some())?;

        Ok(Config {
            workers,
            log_level,
            log_format,
            node_id,
            data_dir,
            outbox_max_events,
            rtmp,
            rtsp,
            srt,
            httpflv,
            hls,
            api,
            cluster,
            source: None,
        })
    }

    /// Reads and parses the config file at `path`. Every error names the file.
    pub fn load(path: &Path) -> Result<Config, LoadError> {
        let xml = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(&xml).map_err(|e| e.in_file(path))?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// The embedded default config ([`DEFAULT_CONFIG_XML`]).
    pub fn embedded_default() -> Config {
        // The embedded document is a compile-time constant and the unit tests parse it, so
        // this cannot fail in a tested build.
        Config::parse(DEFAULT_CONFIG_XML).expect("the embedded config/streamgate.xml is valid")
    }

    /// The `<http_notify>` settings of every protocol, for the `NotifyActor`s.
    pub fn hooks(&self) -> HookTable {
        HookTable {
            rtmp: self.rtmp.notify.clone(),
            rtsp: self.rtsp.notify.clone(),
            srt: self.srt.notify.clone(),
            httpflv: self.httpflv.notify.clone(),
            hls: self.hls.notify.clone(),
            node: self.node_id.clone(),
        }
    }
}

/// Two enabled listeners of the same transport may not share a port.
fn check_port_conflicts(listeners: &[Placed]) -> Result<(), ConfigError> {
    for (i, second) in listeners.iter().enumerate() {
        let Some(first) = listeners[..i].iter().find(|first| {
            first.enable
                && second.enable
                && first.transport == second.transport
                && first.port == second.port
        }) else {
            continue;
        };
        let line = second
            .port_line
            .or(second.enable_line)
            .or(second.section_line)
            .unwrap_or(1);
        return Err(ConfigError::new(
            line,
            format!("<{}><port>", second.name),
            ErrorKind::PortConflict {
                port: second.port,
                other: format!("<{}>", first.name),
                other_line: first.port_line,
            },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use streamgate_actors::notify::{
        NotifyConfig, NotifyFormat, NotifyMethod, Signer, DEFAULT_TIMEOUT,
    };

    use super::*;

    /// Parses `xml`, which must fail; returns the message.
    fn error(xml: &str) -> (ConfigError, String) {
        match Config::parse(xml) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => {
                let message = e.to_string();
                (e, message)
            }
        }
    }

    /// Parses `xml`, which must fail on `line` naming `element`, with `fragment` in the message.
    fn assert_error(xml: &str, line: usize, element: &str, fragment: &str) -> ConfigError {
        let (e, message) = error(xml);
        assert!(
            message.starts_with(&format!("line {line}: ")),
            "expected line {line} in {message:?}"
        );
        assert_eq!(e.at.line, line, "{message}");
        assert!(
            message.contains(element),
            "expected {element} in {message:?}"
        );
        assert!(
            message.contains(fragment),
            "expected {fragment:?} in {message:?}"
        );
        e
    }

    fn rtmp_notify(inner: &str) -> String {
        format!("<config>\n<rtmp>\n<http_notify>\n{inner}\n</http_notify>\n</rtmp>\n</config>\n")
    }

    fn parse(xml: &str) -> Config {
        match Config::parse(xml) {
            Ok(config) => config,
            Err(e) => panic!("{e}"),
        }
    }

    // ---- defaults and valid documents ----

    #[test]
    fn defaults() {
        let config = Config::default();
        assert!(config.workers >= 1 && config.workers <= MAX_WORKERS);
        assert_eq!(config.workers, default_workers());
        assert_eq!(config.log_level, LogLevel::Info);
        assert!(config.rtmp.enable);
        assert_eq!(config.rtmp.port, 1935);
        assert!(!config.rtsp.enable);
        assert_eq!(config.rtsp.port, 8554);
        assert!(!config.srt.enable);
        assert_eq!(config.srt.port, 8890);
        assert!(!config.httpflv.enable);
        assert_eq!(config.httpflv.port, 8080);
        for notify in [
            &config.rtmp.notify,
            &config.rtsp.notify,
            &config.srt.notify,
            &config.httpflv.notify,
        ] {
            assert_eq!(notify, &NotifyConfig::default());
            assert_eq!(notify.method, NotifyMethod::Post);
            assert_eq!(notify.timeout, DEFAULT_TIMEOUT);
        }
        assert_eq!(
            config.hooks(),
            HookTable {
                node: default_node_id(),
                ..HookTable::default()
            }
        );
    }

    #[test]
    fn empty_config_and_empty_sections_take_the_defaults() {
        assert_eq!(parse("<config/>"), Config::default());
        assert_eq!(parse("<config></config>"), Config::default());
        assert_eq!(
            parse("<config><rtmp/><rtsp></rtsp><srt><http_notify/></srt><httpflv/></config>"),
            Config::default()
        );
    }

    #[test]
    fn embedded_default_serves_rtmp_and_httpflv_without_hooks() {
        let config = Config::embedded_default();
        assert!(config.rtmp.enable);
        assert_eq!(config.rtmp.port, 1935);
        assert!(config.httpflv.enable);
        assert_eq!(config.httpflv.port, 8080);
        assert!(config.rtsp.enable);
        assert_eq!(config.rtsp.port, 8554);
        assert!(config.srt.enable, "the embedded default config serves SRT");
        assert_eq!(config.srt.port, 8890);
        assert!(config.hls.enable, "the embedded default config serves HLS");
        assert_eq!(config.hls.port, 8888);
        let hooks = config.hooks();
        for notify in [
            &hooks.rtmp,
            &hooks.rtsp,
            &hooks.srt,
            &hooks.httpflv,
            &hooks.hls,
        ] {
            assert_eq!(notify.on_connect, None);
            assert_eq!(notify.on_play, None);
            assert_eq!(notify.on_publish, None);
            assert_eq!(notify.on_done, None);
        }
        // The shipped file states every default but four, and leaves <workers> to the core
        // count: it turns HTTP-FLV, RTSP, SRT and HLS on, which a file without those
        // sections leaves off.
        let mut defaults = Config::default();
        defaults.httpflv.enable = true;
        defaults.rtsp.enable = true;
        defaults.srt.enable = true;
        defaults.hls.enable = true;
        assert_eq!(config, defaults);
    }

    /// Every `.xml` file under `path`, recursively.
    fn xml_files(path: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", path.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                xml_files(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "xml") {
                out.push(path);
            }
        }
    }

    #[test]
    fn every_shipped_xml_file_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut files = Vec::new();
        xml_files(&dir, &mut files);
        files.sort();
        assert!(
            files.iter().any(|f| f.ends_with("streamgate.xml")),
            "config/streamgate.xml not found in {files:?}"
        );
        assert!(
            files.iter().any(|f| f.ends_with("examples/hooks.xml")),
            "config/examples/hooks.xml not found in {files:?}"
        );
        for file in &files {
            if let Err(e) = Config::load(file) {
                panic!("{e}");
            }
        }
        // The file on disk is the one embedded.
        let shipped = std::fs::read_to_string(dir.join("streamgate.xml")).expect("readable");
        assert_eq!(shipped, DEFAULT_CONFIG_XML);
    }

    #[test]
    fn hooks_example_calls_every_rtmp_hook_with_get() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/hooks.xml");
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let rtmp = &config.hooks().rtmp;
        assert_eq!(
            rtmp.on_connect.as_deref(),
            Some("http://127.0.0.1:9000/rtmp/connect")
        );
        assert_eq!(
            rtmp.on_play.as_deref(),
            Some("http://127.0.0.1:9000/rtmp/play")
        );
        assert_eq!(
            rtmp.on_publish.as_deref(),
            Some("http://127.0.0.1:9000/rtmp/publish")
        );
        assert_eq!(
            rtmp.on_done.as_deref(),
            Some("http://127.0.0.1:9000/rtmp/done")
        );
        assert_eq!(rtmp.method, NotifyMethod::Get);
        assert!(rtmp.timeout > Duration::ZERO);
    }

    #[test]
    fn full_example() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment before the root -->
<config>
  <workers>3</workers>
  <log_level>DEBUG</log_level>
  <rtmp>
    <enable>TRUE</enable>
    <port>1936</port>
    <http_notify>
      <on_connect>http://127.0.0.1:9000/rtmp/connect</on_connect>
      <on_play>  http://hooks.example:8080/rtmp/play  </on_play>
      <on_publish>http://[::1]:9000/publish</on_publish>
      <on_done>http://127.0.0.1/done?key=secret</on_done>
      <notify_method>post</notify_method>
      <timeout_ms>250</timeout_ms>
    </http_notify>
  </rtmp>
  <rtsp><enable>0</enable><port>554</port></rtsp>
  <srt>
    <enable>false</enable>
    <port>1935</port> <!-- UDP: may share the number -->
  </srt>
  <httpflv>
    <enable>False</enable>
    <port>8081</port>
    <http_notify><on_play>http://127.0.0.1:9000/flv/play</on_play></http_notify>
  </httpflv>
</config>
<!-- a comment after the root -->
"#;
        let config = parse(xml);
        assert_eq!(config.workers, 3);
        assert_eq!(config.log_level, LogLevel::Debug);
        assert!(config.rtmp.enable);
        assert_eq!(config.rtmp.port, 1936);
        let n = &config.rtmp.notify;
        assert_eq!(
            n.on_connect.as_deref(),
            Some("http://127.0.0.1:9000/rtmp/connect")
        );
        assert_eq!(
            n.on_play.as_deref(),
            Some("http://hooks.example:8080/rtmp/play")
        );
        assert_eq!(n.on_publish.as_deref(), Some("http://[::1]:9000/publish"));
        assert_eq!(
            n.on_done.as_deref(),
            Some("http://127.0.0.1/done?key=secret")
        );
        assert_eq!(n.method, NotifyMethod::Post);
        assert_eq!(n.timeout, Duration::from_millis(250));
        assert_eq!((config.rtsp.enable, config.rtsp.port), (false, 554));
        assert_eq!((config.srt.enable, config.srt.port), (false, 1935));
        assert_eq!((config.httpflv.enable, config.httpflv.port), (false, 8081));
        assert_eq!(
            config.hooks().httpflv.on_play.as_deref(),
            Some("http://127.0.0.1:9000/flv/play")
        );
        assert_eq!(config.hooks().rtmp, config.rtmp.notify);
    }

    #[test]
    fn disabled_unimplemented_sections_with_port_and_hooks_parse() {
        // The shape an external acceptance script writes.
        let xml = "<config>
  <rtmp><enable>true</enable><port>1935</port></rtmp>
  <rtsp><enable>false</enable><port>8554</port>
    <http_notify>
      <on_connect>http://127.0.0.1:9000/rtsp/connect</on_connect>
      <on_play>http://127.0.0.1:9000/rtsp/play</on_play>
      <on_publish>http://127.0.0.1:9000/rtsp/publish</on_publish>
      <on_done>http://127.0.0.1:9000/rtsp/done</on_done>
      <notify_method>GET</notify_method><timeout_ms>1000</timeout_ms>
    </http_notify>
  </rtsp>
  <srt><enable>false</enable><port>8890</port>
    <http_notify><on_publish>http://127.0.0.1:9000/srt/publish</on_publish></http_notify>
  </srt>
  <httpflv><enable>false</enable><port>8080</port>
    <http_notify><on_play>http://127.0.0.1:9000/httpflv/play</on_play></http_notify>
  </httpflv>
</config>";
        let config = parse(xml);
        assert!(config.rtmp.enable);
        assert!(!config.rtsp.enable && !config.srt.enable && !config.httpflv.enable);
        assert_eq!(config.rtsp.notify.method, NotifyMethod::Get);
        assert_eq!(
            config.rtsp.notify.on_done.as_deref(),
            Some("http://127.0.0.1:9000/rtsp/done")
        );
    }

    #[test]
    fn get_method_case_insensitive() {
        for method in ["GET", "get", " Get "] {
            let config = parse(&rtmp_notify(&format!(
                "<notify_method>{method}</notify_method>"
            )));
            assert_eq!(config.rtmp.notify.method, NotifyMethod::Get, "{method}");
        }
        let config = parse(&rtmp_notify("<notify_method>Post</notify_method>"));
        assert_eq!(config.rtmp.notify.method, NotifyMethod::Post);
    }

    #[test]
    fn notify_format_and_secret() {
        let config = parse(&rtmp_notify(
            "<notify_format> JSON </notify_format>\n<secret>0123456789abcdef</secret>\n\
             <secret_id>2026-01.k1</secret_id>",
        ));
        let n = &config.rtmp.notify;
        assert_eq!(n.format, NotifyFormat::Json);
        assert_eq!(
            n.signer,
            Some(Signer::new(b"0123456789abcdef", Some("2026-01.k1".into())))
        );
        // Every protocol takes them; the defaults are a form body and no signature.
        assert_eq!(config.rtsp.notify.format, NotifyFormat::Form);
        assert_eq!(config.rtsp.notify.signer, None);
        let xml = "<config>\n<srt><http_notify><notify_format>form</notify_format>\
                   <secret>abc</secret></http_notify></srt>\n<httpflv><http_notify>\
                   <secret>xyz</secret></http_notify></httpflv>\n</config>";
        let config = parse(xml);
        assert_eq!(config.srt.notify.signer, Some(Signer::new(b"abc", None)));
        assert_eq!(
            config.httpflv.notify.signer,
            Some(Signer::new(b"xyz", None))
        );
        // A secret shorter than 16 bytes is taken (start-up warns about it).
        assert_eq!(config.srt.notify.signer.map(|s| s.secret_len()), Some(3));
        let config = parse(&rtmp_notify(
            "<notify_method>GET</notify_method><notify_format>form</notify_format>",
        ));
        assert_eq!(config.rtmp.notify.format, NotifyFormat::Form);
    }

    #[test]
    fn error_get_with_json_names_the_notify_format_line() {
        // Whichever comes first, the error is at <notify_format> and names <notify_method>.
        assert_error(
            &rtmp_notify("<notify_method>GET</notify_method>\n<notify_format>json</notify_format>"),
            5,
            "<rtmp><http_notify><notify_format>",
            "a JSON body needs POST, but <notify_method> (line 4) is GET",
        );
        assert_error(
            &rtmp_notify("<on_done>http://h/d</on_done>\n<notify_format>json</notify_format>\n<notify_method>get</notify_method>"),
            5,
            "<rtmp><http_notify><notify_format>",
            "<notify_method> (line 6) is GET",
        );
        assert_error(
            &rtmp_notify("<notify_format>xml</notify_format>"),
            4,
            "<rtmp><http_notify><notify_format>",
            "\"xml\" is not valid: the notify format is form or json",
        );
    }

    #[test]
    fn error_empty_secret_names_its_line() {
        for empty in ["<secret></secret>", "<secret/>", "<secret>   </secret>"] {
            let e = assert_error(
                &rtmp_notify(&format!("<on_done>http://h/d</on_done>\n{empty}")),
                5,
                "<rtmp><http_notify><secret>",
                "an empty secret would sign with no key",
            );
            assert!(matches!(e.kind, ErrorKind::InvalidValue { .. }), "{e}");
        }
        let xml =
            "<config>\n<srt>\n<http_notify>\n<secret></secret>\n</http_notify>\n</srt>\n</config>";
        assert_error(xml, 4, "<srt><http_notify><secret>", "empty secret");
    }

    #[test]
    fn error_bad_secret_id() {
        assert_error(
            &rtmp_notify("<secret>0123456789abcdef</secret>\n<secret_id>a,b</secret_id>"),
            5,
            "<rtmp><http_notify><secret_id>",
            "\"a,b\" is not valid: a secret id is 1 to 64 letters",
        );
        assert_error(
            &rtmp_notify("<secret>0123456789abcdef</secret>\n<secret_id></secret_id>"),
            5,
            "<rtmp><http_notify><secret_id>",
            "a secret id is",
        );
        assert_error(
            &rtmp_notify("<secret_id>k1</secret_id>"),
            4,
            "<rtmp><http_notify><secret_id>",
            "a secret id names a <secret>, and this <http_notify> has none",
        );
    }

    #[test]
    fn empty_url_disables_the_callback() {
        let config = parse(&rtmp_notify(
            "<on_connect></on_connect><on_play/><on_publish>  \n  </on_publish>\
             <on_done><!-- off --></on_done>",
        ));
        assert_eq!(config.rtmp.notify, NotifyConfig::default());
    }

    #[test]
    fn entities_are_unescaped() {
        let config = parse(&rtmp_notify(
            "<on_play>http://127.0.0.1:9000/play?a=1&amp;b=2</on_play>\
             <on_done>http://h/done?x=&#49;&#x26;y=&lt;&gt;&apos;&quot;</on_done>",
        ));
        assert_eq!(
            config.rtmp.notify.on_play.as_deref(),
            Some("http://127.0.0.1:9000/play?a=1&b=2")
        );
        assert_eq!(
            config.rtmp.notify.on_done.as_deref(),
            Some("http://h/done?x=1&y=<>'\"")
        );
    }

    #[test]
    fn cdata_urls() {
        let config = parse(&rtmp_notify(
            "<on_publish>\n  <![CDATA[http://127.0.0.1:9000/publish?a=1&b=2]]>\n</on_publish>",
        ));
        assert_eq!(
            config.rtmp.notify.on_publish.as_deref(),
            Some("http://127.0.0.1:9000/publish?a=1&b=2")
        );
    }

    #[test]
    fn byte_order_mark_and_crlf() {
        let xml = "\u{feff}<?xml version=\"1.0\"?>\r\n<config>\r\n<rtmp>\r\n<port>x</port>\r\n</rtmp>\r\n</config>\r\n";
        assert_error(xml, 4, "<rtmp><port>", "not a whole number");
        let ok = "\u{feff}<config>\r\n<log_level>warn</log_level>\r\n</config>\r\n";
        assert_eq!(parse(ok).log_level, LogLevel::Warn);
    }

    #[test]
    fn log_levels() {
        for level in LogLevel::ALL {
            let xml = format!("<config><log_level>{level}</log_level></config>");
            assert_eq!(parse(&xml).log_level, level);
            assert_eq!(
                LogLevel::from_name(&level.as_str().to_uppercase()),
                Some(level)
            );
        }
    }

    #[test]
    fn srt_may_share_a_number_with_a_tcp_port() {
        let placed = |name, transport| Placed {
            name,
            transport,
            enable: true,
            port: 1935,
            section_line: None,
            enable_line: None,
            port_line: None,
        };
        let mut listeners = [
            placed("rtmp", Transport::Tcp),
            placed("srt", Transport::Udp),
        ];
        assert!(check_port_conflicts(&listeners).is_ok());
        listeners[1].transport = Transport::Tcp;
        assert!(matches!(
            check_port_conflicts(&listeners).map_err(|e| e.kind),
            Err(ErrorKind::PortConflict { port: 1935, .. })
        ));
        // Through the parser: an enabled srt on 1935 beside rtmp on 1935 is fine.
        let c =
            parse("<config>\n<srt>\n<enable>true</enable>\n<port>1935</port>\n</srt>\n</config>");
        assert!(c.rtmp.enable && c.srt.enable);
        assert_eq!((c.rtmp.port, c.srt.port), (1935, 1935));
    }

    // ---- file errors ----

    #[test]
    fn load_errors_name_the_file_and_line() {
        let dir =
            std::env::temp_dir().join(format!("streamgate-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("bad.xml");
        std::fs::write(
            &path,
            "<config>\n<rtmp>\n<port>70000</port>\n</rtmp>\n</config>\n",
        )
        .expect("write");
        let e = Config::load(&path).expect_err("port out of range");
        let message = e.to_string();
        assert_eq!(
            message,
            format!(
                "{}:3: <rtmp><port>: \"70000\" is not a valid port (1-65535)",
                path.display()
            )
        );
        assert_eq!(
            e.location().and_then(|at| at.file.as_deref()),
            Some(path.as_path())
        );

        let missing = dir.join("missing.xml");
        let e = Config::load(&missing).expect_err("no such file");
        assert!(matches!(e, LoadError::Io { .. }));
        assert!(
            e.to_string().contains(&missing.display().to_string()),
            "{e}"
        );
        assert_eq!(e.line(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    // ---- one test per error ----

    #[test]
    fn error_malformed_xml() {
        let e = assert_error(
            &rtmp_notify("<on_publish>http://h<st/publish</on_publish>"),
            4,
            "<rtmp><http_notify><on_publish>",
            "malformed tag <st/publish",
        );
        assert!(matches!(e.kind, ErrorKind::Xml(_)));
        assert_error(
            "<config>\n<rtmp>\n<port>1935</port\n</rtmp>\n</config>",
            3,
            "<rtmp><port>",
            "malformed closing tag </port...>",
        );
        assert_error("<config>\n<rtmp\n", 2, "<config>", "malformed XML");
        let e = assert_error(
            "<config>\n<rtmp>\n<port>1935</port\n</rtmp>\n</config>",
            3,
            "<rtmp><port>",
            "malformed XML",
        );
        assert!(matches!(e.kind, ErrorKind::Xml(_)));
        let e = assert_error(
            "<config>\n<rtmp>\n<port>1935<</port>\n</rtmp>\n</config>",
            3,
            "<rtmp><port>",
            "malformed XML",
        );
        assert!(matches!(e.kind, ErrorKind::Xml(_)));
    }

    #[test]
    fn error_mismatched_end_tag() {
        let e = assert_error(
            "<config>\n<rtmp>\n<port>1935</port>\n</rtsp>\n</config>",
            4,
            "<rtmp>",
            "found </rtsp> but <rtmp> (opened at line 2) is not closed yet",
        );
        assert!(matches!(
            e.kind,
            ErrorKind::MismatchedEnd { open_line: 2, .. }
        ));
    }

    #[test]
    fn error_end_tag_without_start() {
        let e = assert_error("<config/>\n\n</config>", 3, "document", "</config>");
        assert!(matches!(e.kind, ErrorKind::Xml(_)));
    }

    #[test]
    fn error_unclosed_element() {
        let e = assert_error(
            "<config>\n<rtmp>\n<http_notify>\n</rtmp>",
            4,
            "<rtmp><http_notify>",
            "found </rtmp> but <http_notify> (opened at line 3) is not closed yet",
        );
        assert!(matches!(e.kind, ErrorKind::MismatchedEnd { .. }));
        let e = assert_error(
            "<config>\n<rtmp>\n<http_notify>\n",
            3,
            "<rtmp><http_notify>",
            "never closed",
        );
        assert!(matches!(e.kind, ErrorKind::Unclosed));
    }

    #[test]
    fn error_empty_document() {
        let e = assert_error("", 1, "<config>", "empty");
        assert!(matches!(e.kind, ErrorKind::Empty));
        let e = assert_error(
            "<?xml version=\"1.0\"?>\n<!-- nothing -->\n",
            3,
            "<config>",
            "empty",
        );
        assert!(matches!(e.kind, ErrorKind::Empty));
    }

    #[test]
    fn error_wrong_root() {
        let e = assert_error(
            "<?xml version=\"1.0\"?>\n<settings>\n</settings>",
            2,
            "<settings>",
            "root element must be <config>",
        );
        assert!(matches!(e.kind, ErrorKind::WrongRoot));
    }

    #[test]
    fn error_second_root() {
        let e = assert_error("<config/>\n<config/>", 2, "<config>", "only one root");
        assert!(matches!(e.kind, ErrorKind::ExtraRoot));
    }

    #[test]
    fn error_text_outside_root() {
        let e = assert_error(
            "<config/>\n\ntrailing",
            3,
            "document",
            "outside the <config>",
        );
        assert!(matches!(e.kind, ErrorKind::Xml(_)));
    }

    #[test]
    fn error_bare_ampersand() {
        let e = assert_error(
            &rtmp_notify("\n<on_play>http://h/p?a=1&b=2</on_play>"),
            5,
            "<rtmp><http_notify><on_play>",
            "&amp;",
        );
        assert!(matches!(e.kind, ErrorKind::Xml(_)));
    }

    #[test]
    fn error_unknown_entity() {
        let e = assert_error(
            &rtmp_notify("<on_play>http://h/p?a=1&nbsp;</on_play>"),
            4,
            "<rtmp><http_notify><on_play>",
            "unknown entity &nbsp;",
        );
        assert!(matches!(e.kind, ErrorKind::Xml(_)));
    }

    #[test]
    fn error_unknown_element() {
        let e = assert_error(
            "<config>\n<rtmp>\n<prot>1935</prot>\n</rtmp>\n</config>",
            3,
            "<rtmp><prot>",
            "allowed in <rtmp>: <enable>, <port>, <http_notify>",
        );
        assert!(matches!(e.kind, ErrorKind::Unknown { .. }));
        assert_error(
            "<config>\n\n<dash/>\n</config>",
            3,
            "<dash>",
            "allowed in <config>: <workers>, <log_level>, <node_id>, <data_dir>, <outbox_max_events>, <rtmp>, <rtsp>, <srt>, <httpflv>, <hls>, <api>",
        );
        assert_error(
            &rtmp_notify("<on_stop>http://h/</on_stop>"),
            4,
            "<rtmp><http_notify><on_stop>",
            "<on_connect>, <on_play>, <on_publish>, <on_done>, <on_update>, <update_interval_ms>, <notify_method>, <timeout_ms>",
        );
    }

    #[test]
    fn error_duplicate_element() {
        let e = assert_error(
            "<config>\n<rtmp>\n<port>1935</port>\n<port>1936</port>\n</rtmp>\n</config>",
            4,
            "<rtmp><port>",
            "given twice (first at line 3)",
        );
        assert!(matches!(e.kind, ErrorKind::Duplicate { first_line: 3, .. }));
        assert_error(
            "<config>\n<rtmp/>\n<rtmp/>\n</config>",
            3,
            "<rtmp>",
            "given twice",
        );
    }

    #[test]
    fn error_text_in_a_section() {
        let e = assert_error(
            "<config>\n<rtmp>\n\n   1935\n</rtmp>\n</config>",
            4,
            "<rtmp>",
            "unexpected text \"1935\"",
        );
        assert!(matches!(e.kind, ErrorKind::UnexpectedText { .. }));
    }

    #[test]
    fn error_child_in_a_value() {
        let e = assert_error(
            "<config>\n<rtmp>\n<port>\n<value>1935</value>\n</port>\n</rtmp>\n</config>",
            4,
            "<rtmp><port>",
            "unexpected child element <value>",
        );
        assert!(matches!(e.kind, ErrorKind::UnexpectedChild { .. }));
    }

    #[test]
    fn error_attribute() {
        let e = assert_error(
            "<config>\n<rtmp enable=\"true\">\n</rtmp>\n</config>",
            2,
            "<rtmp>",
            "attribute `enable` is not supported",
        );
        assert!(matches!(e.kind, ErrorKind::Attribute { .. }));
        assert_error(
            "<config version=\"1\"/>",
            1,
            "<config>",
            "attribute `version`",
        );
    }

    #[test]
    fn error_bad_bool() {
        let e = assert_error(
            "<config>\n<rtmp>\n<enable>yes</enable>\n</rtmp>\n</config>",
            3,
            "<rtmp><enable>",
            "\"yes\" is not a boolean",
        );
        assert!(matches!(e.kind, ErrorKind::InvalidBool { .. }));
    }

    #[test]
    fn error_bad_integer() {
        let e = assert_error(
            "<config>\n<rtmp>\n<port>19x5</port>\n</rtmp>\n</config>",
            3,
            "<rtmp><port>",
            "\"19x5\" is not a whole number (a valid port is 1-65535)",
        );
        assert!(matches!(e.kind, ErrorKind::InvalidInteger { .. }));
        assert_error(
            "<config>\n<workers></workers>\n</config>",
            2,
            "<workers>",
            "not a whole number",
        );
    }

    #[test]
    fn error_port_zero() {
        let e = assert_error(
            "<config>\n<rtmp>\n<port>0</port>\n</rtmp>\n</config>",
            3,
            "<rtmp><port>",
            "\"0\" is not a valid port (1-65535)",
        );
        assert!(matches!(e.kind, ErrorKind::OutOfRange { .. }));
    }

    #[test]
    fn error_port_too_large() {
        assert_error(
            "<config>\n<rtmp>\n\n\n\n<port>70000</port>\n</rtmp>\n</config>",
            6,
            "<rtmp><port>",
            "\"70000\" is not a valid port (1-65535)",
        );
        assert_error(
            "<config>\n<httpflv>\n<port>-1</port>\n</httpflv>\n</config>",
            3,
            "<httpflv><port>",
            "not a valid port",
        );
        assert_error(
            "<config>\n<httpflv>\n<port>99999999999999999999999</port>\n</httpflv>\n</config>",
            3,
            "<httpflv><port>",
            "not a valid port",
        );
    }

    #[test]
    fn error_workers_zero() {
        let e = assert_error(
            "<config>\n<workers>0</workers>\n</config>",
            2,
            "<workers>",
            "\"0\" is not a valid number of workers (1-256)",
        );
        assert!(matches!(e.kind, ErrorKind::OutOfRange { .. }));
    }

    #[test]
    fn error_workers_too_many() {
        assert_eq!(
            parse("<config><workers>256</workers></config>").workers,
            256
        );
        assert_error(
            "<config>\n<workers>257</workers>\n</config>",
            2,
            "<workers>",
            "\"257\" is not a valid number of workers (1-256)",
        );
    }

    #[test]
    fn node_id_is_read_and_defaults_to_the_host_name() {
        let config = parse("<config><node_id>edge-1.eu_west</node_id></config>");
        assert_eq!(config.node_id, "edge-1.eu_west");
        assert_eq!(config.hooks().node, "edge-1.eu_west");
        let config = parse("<config/>");
        assert_eq!(config.node_id, default_node_id());
        assert!(node_id_problem(&config.node_id).is_none());
    }

    #[test]
    fn data_dir_and_outbox_max_events_are_read_and_have_defaults() {
        let config = parse(
            "<config><data_dir>/var/lib/streamgate</data_dir>\
             <outbox_max_events>5000</outbox_max_events></config>",
        );
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/streamgate"));
        assert_eq!(config.outbox_max_events, 5000);
        let config = parse("<config/>");
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(config.outbox_max_events, 1_000_000);
    }

    #[test]
    fn error_bad_data_dir_or_outbox_max_events() {
        assert_error(
            "<config>\n\n<data_dir> </data_dir>\n</config>",
            3,
            "<data_dir>",
            "cannot be empty",
        );
        // A file where the directory should be: named with its line.
        let file =
            std::env::temp_dir().join(format!("streamgate-not-a-dir-{}", std::process::id()));
        std::fs::write(&file, b"x").expect("write a file");
        let xml = format!(
            "<config>\n<data_dir>{}</data_dir>\n</config>",
            file.display()
        );
        assert_error(&xml, 2, "<data_dir>", "is not a directory");
        let _ = std::fs::remove_file(&file);
        assert_error(
            "<config>\n<outbox_max_events>0</outbox_max_events>\n</config>",
            2,
            "<outbox_max_events>",
            "\"0\" is not a valid number of outbox events",
        );
        assert_error(
            "<config>\n\n\n<outbox_max_events>many</outbox_max_events>\n</config>",
            4,
            "<outbox_max_events>",
            "number of outbox events",
        );
    }

    #[test]
    fn error_bad_node_id() {
        let e = assert_error(
            "<config>\n<node_id>edge 1</node_id>\n</config>",
            2,
            "<node_id>",
            "\"edge 1\" is not valid",
        );
        assert!(matches!(e.kind, ErrorKind::InvalidValue { .. }));
        assert_error(
            "<config>\n\n<node_id></node_id>\n</config>",
            3,
            "<node_id>",
            "1 to 64 characters",
        );
    }

    #[test]
    fn error_bad_log_level() {
        let e = assert_error(
            "<config>\n<log_level>verbose</log_level>\n</config>",
            2,
            "<log_level>",
            "\"verbose\" is not a log level",
        );
        assert!(matches!(e.kind, ErrorKind::InvalidLogLevel { .. }));
    }

    #[test]
    fn error_timeout_zero() {
        let e = assert_error(
            &rtmp_notify("<timeout_ms>0</timeout_ms>"),
            4,
            "<rtmp><http_notify><timeout_ms>",
            "\"0\" is not a valid timeout in milliseconds (1-600000)",
        );
        assert!(matches!(e.kind, ErrorKind::OutOfRange { .. }));
    }

    #[test]
    fn error_timeout_too_long() {
        let config = parse(&rtmp_notify("<timeout_ms>600000</timeout_ms>"));
        assert_eq!(config.rtmp.notify.timeout, Duration::from_secs(600));
        assert_error(
            &rtmp_notify("<timeout_ms>600001</timeout_ms>"),
            4,
            "<rtmp><http_notify><timeout_ms>",
            "(1-600000)",
        );
    }

    #[test]
    fn api_section_defaults_and_errors() {
        let default = parse("<config/>");
        assert!(default.api.enable);
        assert_eq!(default.api.address.to_string(), "127.0.0.1");
        assert_eq!(default.api.port, DEFAULT_API_PORT);
        assert_eq!(default.api.token, None);
        let set = parse(
            "<config><api><address>::1</address><port>9000</port>\
             <token>abc</token><enable>false</enable></api></config>",
        );
        assert!(!set.api.enable);
        assert_eq!(set.api.address.to_string(), "::1");
        assert_eq!(set.api.port, 9000);
        assert_eq!(set.api.token.as_deref(), Some("abc"));
        assert_error(
            "<config>\n<api>\n<address>localhost:80</address>\n</api>\n</config>",
            3,
            "<api><address>",
            "an IP address is needed",
        );
        assert_error(
            "<config>\n<api>\n<token>a b</token>\n</api>\n</config>",
            3,
            "<api><token>",
            "only visible ASCII",
        );
        assert_error(
            "<config>\n<rtmp><port>9997</port></rtmp>\n<api>\n<port>9997</port>\n</api>\n</config>",
            4,
            "<api><port>",
            "9997",
        );
    }

    #[test]
    fn on_update_and_its_interval() {
        let config = parse(&rtmp_notify(
            "<on_update>http://127.0.0.1:9000/update</on_update>\n\
             <update_interval_ms>2000</update_interval_ms>",
        ));
        let notify = &config.rtmp.notify;
        assert_eq!(
            notify.on_update.as_deref(),
            Some("http://127.0.0.1:9000/update")
        );
        assert_eq!(notify.update_interval, Duration::from_secs(2));
        let default = parse(&rtmp_notify(""));
        assert_eq!(default.rtmp.notify.on_update, None);
        assert_eq!(default.rtmp.notify.update_interval, Duration::from_secs(30));
        assert_error(
            &rtmp_notify("<update_interval_ms>999</update_interval_ms>"),
            4,
            "<rtmp><http_notify><update_interval_ms>",
            "\"999\" is not a valid interval in milliseconds (1000-86400000)",
        );
        assert_error(
            &rtmp_notify("<on_update>ftp://h/u</on_update>"),
            4,
            "<rtmp><http_notify><on_update>",
            "is not a valid hook URL",
        );
    }

    #[test]
    fn error_bad_notify_method() {
        let e = assert_error(
            &rtmp_notify("<notify_method>PUT</notify_method>"),
            4,
            "<rtmp><http_notify><notify_method>",
            "\"PUT\" is not a notify method (use GET or POST)",
        );
        assert!(matches!(e.kind, ErrorKind::InvalidMethod { .. }));
    }

    fn url_error(url: &str, fragment: &str) {
        let e = assert_error(
            &rtmp_notify(&format!("<on_publish>{url}</on_publish>")),
            4,
            "<rtmp><http_notify><on_publish>",
            fragment,
        );
        assert!(matches!(e.kind, ErrorKind::InvalidHookUrl { .. }), "{e}");
    }

    #[test]
    fn https_hook_urls_are_accepted() {
        let c = Config::parse(
            "<config><rtmp><http_notify><on_play>HTTPS://hooks.example.com:8443/play?k=v</on_play>\
             </http_notify></rtmp></config>",
        )
        .expect("https is a supported scheme");
        assert_eq!(
            c.rtmp.notify.on_play.as_deref(),
            Some("HTTPS://hooks.example.com:8443/play?k=v")
        );
    }

    #[test]
    fn error_hook_url_other_scheme() {
        url_error(
            "ftp://127.0.0.1/publish",
            "scheme \"ftp\" is not supported (supported schemes: http, https)",
        );
    }

    #[test]
    fn error_hook_url_without_scheme() {
        url_error("127.0.0.1:9000/publish", "supported schemes: http, https");
        url_error("http:/127.0.0.1/publish", "supported schemes: http");
    }

    #[test]
    fn error_hook_url_without_host() {
        url_error("http://", "no host");
        url_error("http:///publish", "no host");
        url_error("http://:9000/publish", "no host");
    }

    #[test]
    fn error_hook_url_with_spaces() {
        url_error("http://127.0.0.1/on publish", "whitespace");
    }

    #[test]
    fn error_hook_url_bad_port_or_host() {
        url_error("http://127.0.0.1:0/publish", "not a valid port");
        url_error("http://127.0.0.1:99999/publish", "not a valid port");
        url_error("http://127.0.0.1:x/publish", "not a valid port");
        url_error("http://ho^st/publish", "not a valid host");
        url_error("http://ho&lt;st/publish", "not a valid host");
        url_error("http://[::1/publish", "closing ]");
        url_error("http://bücher.example/publish", "non-ASCII");
    }

    #[test]
    fn hook_url_scheme_is_case_insensitive_and_userinfo_allowed() {
        let config = parse(&rtmp_notify(
            "<on_play>HTTP://user:pw@127.0.0.1:9000/p#frag</on_play>",
        ));
        assert_eq!(
            config.rtmp.notify.on_play.as_deref(),
            Some("HTTP://user:pw@127.0.0.1:9000/p#frag")
        );
    }

    #[test]
    fn error_port_conflict() {
        let e = assert_error(
            "<config>\n<rtmp><port>1935</port></rtmp>\n<httpflv>\n<enable>true</enable>\n<port>1935</port>\n</httpflv>\n</config>",
            5,
            "<httpflv><port>",
            "port 1935 is already used by <rtmp> (line 2)",
        );
        assert!(matches!(e.kind, ErrorKind::PortConflict { port: 1935, .. }));
        // rtmp on its default port.
        assert_error(
            "<config>\n<rtsp>\n<enable>true</enable>\n<port>1935</port>\n</rtsp>\n</config>",
            4,
            "<rtsp><port>",
            "already used by <rtmp> (its default)",
        );
        // A disabled listener does not conflict.
        let config = parse(
            "<config><rtmp><enable>false</enable></rtmp><rtsp><port>1935</port></rtsp></config>",
        );
        assert!(!config.rtmp.enable);
    }

    #[test]
    fn rtsp_can_be_enabled() {
        let c = parse("<config>\n<rtsp>\n<enable>true</enable>\n</rtsp>\n</config>");
        assert!(c.rtsp.enable);
        assert_eq!(c.rtsp.port, DEFAULT_RTSP_PORT);
    }

    #[test]
    fn srt_can_be_enabled() {
        let c = parse("<config>\n<srt>\n<port>9000</port>\n<enable>1</enable>\n</srt>\n</config>");
        assert!(c.srt.enable);
        assert_eq!(c.srt.port, 9000);
        assert_eq!(c.srt.options, SrtOptions::default());
    }

    #[test]
    fn hls_section() {
        let c = Config::parse(
            "<config><hls><enable>true</enable><port>8889</port>\
             <segment_duration_ms>1000</segment_duration_ms><part_duration_ms>250</part_duration_ms>\
             <segment_count>4</segment_count><container>mpegts</container>\
             <low_latency>false</low_latency><idle_timeout_ms>3000</idle_timeout_ms>\
             <session_lifetime_s>600</session_lifetime_s><max_connections>50</max_connections>\
             <http_notify><on_play>http://127.0.0.1:9000/hls/play</on_play></http_notify>\
             </hls></config>",
        )
        .expect("a valid <hls>");
        assert!(c.hls.enable);
        assert_eq!(c.hls.port, 8889);
        assert_eq!(c.hls.max_connections, 50);
        let o = &c.hls.options;
        assert_eq!(o.segment, Duration::from_millis(1000));
        assert_eq!(o.part, Duration::from_millis(250));
        assert_eq!(o.segments, 4);
        assert_eq!(o.container, HlsContainer::Ts);
        assert!(!o.low_latency);
        assert_eq!(o.idle_timeout, Duration::from_secs(3));
        assert_eq!(o.session_lifetime, Duration::from_secs(600));
        assert_eq!(
            c.hooks().hls.on_play.as_deref(),
            Some("http://127.0.0.1:9000/hls/play")
        );
        let defaults = Config::default().hls;
        assert!(!defaults.enable);
        assert_eq!(defaults.port, DEFAULT_HLS_PORT);
        assert_eq!(defaults.options, HlsOptions::default());
        assert_error(
            "<config>\n<hls>\n<segment_duration_ms>1000</segment_duration_ms>\n\
             <part_duration_ms>2000</part_duration_ms>\n</hls>\n</config>",
            4,
            "<hls><part_duration_ms>",
            "cannot be longer than a segment",
        );
        assert_error(
            "<config>\n<hls>\n<container>mp4</container>\n</hls>\n</config>",
            3,
            "<hls><container>",
            "fmp4 or mpegts",
        );
        assert_error(
            "<config>\n<hls>\n<segment_count>1</segment_count>\n</hls>\n</config>",
            3,
            "<hls><segment_count>",
            "2",
        );
        assert_error(
            "<config>\n<httpflv><enable>true</enable><port>8888</port></httpflv>\n\
             <hls>\n<enable>true</enable>\n</hls>\n</config>",
            4,
            "<hls><port>",
            "8888",
        );
    }

    #[test]
    fn httpflv_and_player_limits() {
        let c = Config::parse(
            "<config><httpflv><enable>TRUE</enable><port>8081</port>\
             <queue_bytes>1048576</queue_bytes><stall_timeout_ms>2500</stall_timeout_ms>\
             </httpflv></config>",
        )
        .expect("httpflv can be enabled");
        assert!(c.httpflv.enable);
        assert_eq!(c.httpflv.port, 8081);
        assert_eq!(c.httpflv.queue_bytes, 1 << 20);
        assert_eq!(c.httpflv.stall_timeout, Duration::from_millis(2500));
        assert_eq!(c.rtmp.queue_bytes, DEFAULT_QUEUE_BYTES);
        assert_eq!(c.rtmp.stall_timeout, DEFAULT_STALL_TIMEOUT);
    }

    #[test]
    fn write_merge_in_tcp_sections_only() {
        let c = Config::parse(
            "<config><rtmp><write_merge_ms>0</write_merge_ms></rtmp>\
             <rtsp><write_merge_ms>250</write_merge_ms></rtsp></config>",
        )
        .expect("write_merge_ms is an rtmp and rtsp element");
        assert_eq!(c.rtmp.options.write_merge, Duration::ZERO);
        assert_eq!(c.rtsp.options.write_merge, Duration::from_millis(250));
        assert_eq!(c.httpflv.options.write_merge, DEFAULT_WRITE_MERGE);
        let err = Config::parse(
            "<config>\n<srt>\n<write_merge_ms>10</write_merge_ms>\n</srt>\n</config>",
        )
        .expect_err("SRT has no socket writes to merge");
        assert!(matches!(err.kind, ErrorKind::Unknown { .. }), "{err}");
        assert!(
            err.to_string().starts_with("line 3: <srt><write_merge_ms>"),
            "{err}"
        );
        let err = Config::parse(
            "<config>\n<httpflv>\n<write_merge_ms>1001</write_merge_ms>\n</httpflv>\n</config>",
        )
        .expect_err("over a second is refused");
        assert!(
            err.to_string().contains("<httpflv><write_merge_ms>"),
            "{err}"
        );
    }

    #[test]
    fn rtsp_and_srt_own_settings() {
        let c = Config::parse(
            "<config><rtsp><rtp_port_min>30000</rtp_port_min><rtp_port_max>30099</rtp_port_max></rtsp>\
             <srt><latency_ms>200</latency_ms><passphrase>0123456789abc</passphrase>\
             <pbkeylen>32</pbkeylen><payload_size>1316</payload_size></srt></config>",
        )
        .expect("valid");
        assert_eq!(c.rtsp.options.rtp_ports, (30000, 30099));
        assert_eq!(c.srt.options.latency, Duration::from_millis(200));
        assert_eq!(c.srt.options.passphrase.as_deref(), Some("0123456789abc"));
        assert_eq!(c.srt.options.pbkeylen, 32);
        assert_eq!(Config::default().rtsp.options.rtp_ports, DEFAULT_RTP_PORTS);
        assert_eq!(Config::default().srt.options, SrtOptions::default());
    }

    #[test]
    fn error_protocol_settings_in_the_wrong_section_or_invalid() {
        assert_error(
            "<config>\n<rtmp>\n<latency_ms>100</latency_ms>\n</rtmp>\n</config>",
            3,
            "<rtmp><latency_ms>",
            "unknown element",
        );
        assert_error(
            "<config>\n<rtsp>\n<rtp_port_min>30001</rtp_port_min>\n</rtsp>\n</config>",
            3,
            "<rtsp><rtp_port_min>",
            "even",
        );
        assert_error(
            "<config>\n<srt>\n<passphrase>short</passphrase>\n</srt>\n</config>",
            3,
            "<srt><passphrase>",
            "10 to 79 bytes",
        );
        assert_error(
            "<config>\n<srt>\n<pbkeylen>20</pbkeylen>\n</srt>\n</config>",
            3,
            "<srt><pbkeylen>",
            "16, 24 or 32",
        );
    }

    /// SRT counts a passphrase in bytes: 40 two-byte characters are 80 bytes, one too many,
    /// although 40 characters are within 10 to 79; 5 of them are 10 bytes, enough.
    #[test]
    fn srt_passphrase_is_counted_in_bytes_as_srt_does() {
        let section = |passphrase: &str| {
            format!("<config>\n<srt>\n<passphrase>{passphrase}</passphrase>\n</srt>\n</config>")
        };
        let e = assert_error(
            &section(&"\u{e9}".repeat(40)),
            3,
            "<srt><passphrase>",
            "this one has 80 bytes",
        );
        assert!(matches!(e.kind, ErrorKind::InvalidValue { .. }));
        assert!(
            !e.to_string().contains('\u{e9}'),
            "the secret is not repeated: {e}"
        );
        for ok in ["\u{e9}".repeat(5), "\u{e9}".repeat(39), "a".repeat(79)] {
            let c = parse(&section(&ok));
            assert_eq!(c.srt.options.passphrase.as_deref(), Some(ok.as_str()));
            // The SRT listener takes what the config took.
            crate::session::srt::SrtSettings::from_config(&c.srt)
                .unwrap_or_else(|e| panic!("{} bytes: {e}", ok.len()));
        }
        assert_error(
            &section(&"a".repeat(80)),
            3,
            "<srt><passphrase>",
            "80 bytes",
        );
        assert_error(
            &section("\u{e9}\u{e9}\u{e9}\u{e9}a"),
            3,
            "<srt><passphrase>",
            "9 bytes",
        );
    }

    #[test]
    fn error_player_limits_out_of_range() {
        assert_error(
            "<config>\n<httpflv>\n<queue_bytes>100</queue_bytes>\n</httpflv>\n</config>",
            3,
            "<httpflv><queue_bytes>",
            "100",
        );
        assert_error(
            "<config>\n<rtmp>\n<stall_timeout_ms>0</stall_timeout_ms>\n</rtmp>\n</config>",
            3,
            "<rtmp><stall_timeout_ms>",
            "0",
        );
    }

    #[test]
    fn line_numbers_count_comments_and_cdata() {
        let xml = "<?xml version=\"1.0\"?>\n<!--\n  a\n  long\n  comment\n-->\n<config>\n<rtmp>\n<http_notify>\n<on_play><![CDATA[\nhttp://h/p\n]]></on_play>\n<timeout_ms>x</timeout_ms>\n</http_notify>\n</rtmp>\n</config>\n";
        assert_error(
            xml,
            13,
            "<rtmp><http_notify><timeout_ms>",
            "not a whole number",
        );
    }

    #[test]
    fn listener_addresses() {
        let config = parse("<config/>");
        assert_eq!(config.rtmp.address, None, "dual-stack by default");
        assert_eq!(config.srt.address, None);
        let config = parse(
            "<config>\n<rtmp><address>127.0.0.1</address></rtmp>\n\
             <rtsp><address> ::1 </address></rtsp>\n<srt><address>::</address></srt>\n\
             <httpflv><address>0.0.0.0</address></httpflv>\n</config>",
        );
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().expect("ip"));
        assert_eq!(config.rtmp.address, ip("127.0.0.1"));
        assert_eq!(config.rtsp.address, ip("::1"));
        assert_eq!(config.srt.address, ip("::"));
        assert_eq!(config.httpflv.address, ip("0.0.0.0"));
    }

    #[test]
    fn error_listener_address() {
        for (section, value, fragment) in [
            ("rtmp", "[::1]", "without brackets"),
            ("rtsp", "localhost", "a host name is not taken"),
            ("srt", "127.0.0.1:1935", "IPv4 or IPv6 address"),
            ("httpflv", "fe80::1%eth0", "IPv4 or IPv6 address"),
            ("rtmp", "", "IPv4 or IPv6 address"),
        ] {
            let xml = format!(
                "<config>\n<{section}>\n<enable>true</enable>\n<address>{value}</address>\n</{section}>\n</config>"
            );
            let e = assert_error(&xml, 4, &format!("<{section}><address>"), fragment);
            assert!(matches!(e.kind, ErrorKind::InvalidValue { .. }), "{e}");
        }
    }

    #[test]
    fn log_format() {
        assert_eq!(parse("<config/>").log_format, LogFormat::Text);
        let config = parse("<config><log_format>json</log_format></config>");
        assert_eq!(config.log_format, LogFormat::Json);
        let config = parse("<config><log_format> TEXT </log_format></config>");
        assert_eq!(config.log_format, LogFormat::Text);
        let e = assert_error(
            "<config>\n<log_level>info</log_level>\n<log_format>yaml</log_format>\n</config>",
            3,
            "<log_format>",
            "\"yaml\" is not valid: a log format is text or json",
        );
        assert!(matches!(e.kind, ErrorKind::InvalidValue { .. }));
    }

    // ---- <cluster> ----

    const CLUSTER: &str = "<redis>redis://127.0.0.1:6379/0</redis>\n\
        <advertise>10.0.0.5:7935</advertise>\n<secret>0123456789abcdef</secret>\n";

    fn cluster(inner: &str) -> String {
        format!("<config>\n<node_id>a</node_id>\n<cluster>\n{inner}</cluster>\n</config>\n")
    }

    #[test]
    fn no_cluster_by_default() {
        assert_eq!(Config::default().cluster, None);
        assert_eq!(parse("<config/>").cluster, None);
    }

    #[test]
    fn cluster_is_read_with_its_defaults() {
        let config = parse(&cluster(CLUSTER));
        let c = config.cluster.expect("a cluster");
        assert_eq!(c.redis, "redis://127.0.0.1:6379/0");
        assert_eq!(c.advertise, "10.0.0.5:7935");
        assert_eq!(c.listen, "[::]:7935".parse().expect("address"));
        assert_eq!(c.secret, "0123456789abcdef");
        assert_eq!(c.lease, cluster::DEFAULT_LEASE);
        assert_eq!(c.heartbeat, cluster::DEFAULT_HEARTBEAT);
        assert_eq!(c.relay_idle, cluster::DEFAULT_RELAY_IDLE);
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        let c = parse(&cluster(&format!(
            "{CLUSTER}<listen>127.0.0.1:7000</listen><lease_ms>3000</lease_ms>\
             <heartbeat_ms>500</heartbeat_ms><relay_idle_ms>2000</relay_idle_ms>\n"
        )))
        .cluster
        .expect("a cluster");
        assert_eq!(c.listen, "127.0.0.1:7000".parse().expect("address"));
        assert_eq!(c.lease, Duration::from_millis(3000));
        assert_eq!(c.heartbeat, Duration::from_millis(500));
        assert_eq!(c.relay_idle, Duration::from_millis(2000));
    }

    #[test]
    fn cluster_errors_name_the_element_and_line() {
        assert_error(
            &format!("<config>\n<cluster>\n{CLUSTER}</cluster>\n</config>"),
            2,
            "<cluster>",
            "<config><node_id> (each node of a cluster needs its own, unique name) is required",
        );
        assert_error(
            &cluster("<advertise>h:1</advertise><secret>0123456789abcdef</secret>\n"),
            3,
            "<cluster>",
            "<redis> is required",
        );
        assert_error(
            &cluster(&CLUSTER.replace("redis://127.0.0.1:6379/0", "http://x")),
            4,
            "<cluster><redis>",
            "a redis:// URL is needed",
        );
        for bad in ["10.0.0.5", "fd00::5:7935", "h:0", ":7935"] {
            assert_error(
                &cluster(&CLUSTER.replace("10.0.0.5:7935", bad)),
                5,
                "<cluster><advertise>",
                "host:port is needed",
            );
        }
        let e = assert_error(
            &cluster(&CLUSTER.replace("0123456789abcdef", "short")),
            6,
            "<cluster><secret>",
            "at least 16 bytes",
        );
        assert!(!e.to_string().contains("short"));
        assert_error(
            &cluster(&format!("{CLUSTER}<heartbeat_ms>3000</heartbeat_ms>\n")),
            7,
            "<cluster><heartbeat_ms>",
            "at most half the lease",
        );
        assert_error(
            &cluster(&format!("{CLUSTER}<lease_ms>50</lease_ms>\n")),
            7,
            "<cluster><lease_ms>",
            "100-600000",
        );
        assert_error(
            &cluster(&format!("{CLUSTER}<listen>any</listen>\n")),
            7,
            "<cluster><listen>",
            "an IP address and port are needed",
        );
        assert_error(
            &cluster(&format!("{CLUSTER}<peers/>\n")),
            7,
            "<cluster><peers>",
            "allowed in <cluster>: <redis>, <advertise>",
        );
    }
}

//! The XML configuration file of streamgate.
//!
//! This module owns:
//! - the typed configuration ([`Config`], [`ListenerConfig`], [`LogLevel`]) and its defaults;
//! - the shipped config, `config/streamgate.xml`, embedded in the binary as
//!   [`DEFAULT_CONFIG_XML`];
//! - parsing and validation: [`Config::parse`] reads the XML into a small element tree that
//!   remembers the line of every element, then maps that tree to the typed config, so every
//!   [`ConfigError`] names the line and the element that is wrong.
//!
//! It must not open sockets, start actors, install loggers or read environment variables: it
//! only turns text into a checked [`Config`], and the caller decides what to do with it.
//! The element names are a fixed interface (operators' files and external tests rely on them);
//! see `docs/configuration.md`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use quick_xml::errors::IllFormedError;
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::Event;
use quick_xml::Reader;
use streamgate_actors::notify::{HookTable, NotifyConfig, NotifyMethod, DEFAULT_TIMEOUT};

/// The shipped `config/streamgate.xml`, used when no config file is given. It serves RTMP on
/// 1935, HTTP-FLV on 8080, RTSP on 8554 and SRT on UDP 8890, and sets no hook URL.
pub const DEFAULT_CONFIG_XML: &str = include_str!("../config/streamgate.xml");

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
    /// `<rtmp>`: enabled on 1935 by default.
    pub rtmp: ListenerConfig,
    /// `<rtsp>`: disabled by default (port 8554); not implemented yet.
    pub rtsp: ListenerConfig,
    /// `<srt>`: disabled by default (UDP port 8890); the shipped config enables it.
    pub srt: ListenerConfig,
    /// `<httpflv>`: disabled by default (port 8080); not implemented yet.
    pub httpflv: ListenerConfig,
}

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

/// One protocol section (`<rtmp>`, `<rtsp>`, `<srt>` or `<httpflv>`).
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    /// `<enable>`: whether to listen at all.
    pub enable: bool,
    /// `<port>`: TCP port (UDP for SRT), 1..=65535.
    pub port: u16,
    /// `<http_notify>`: the hooks of this protocol.
    pub notify: NotifyConfig,
    /// `<queue_bytes>`: unwritten output a player may have before it drops frames until the
    /// next keyframe.
    pub queue_bytes: usize,
    /// `<stall_timeout_ms>`: a player whose queue stays full this long is disconnected.
    pub stall_timeout: Duration,
    /// `<write_merge_ms>` (RTMP, HTTP-FLV, RTSP): live media waits at most this long to be
    /// written in one system call with the rest of the window's media; 0 writes every frame
    /// at once.
    pub write_merge: Duration,
    /// `<rtsp>` only: `<rtp_port_min>`..=`<rtp_port_max>`, the UDP ports RTP/RTCP pairs are
    /// taken from.
    pub rtp_ports: (u16, u16),
    /// `<srt>` only: the SRT transport settings.
    pub srt: SrtOptions,
    /// `<max_connections>`: connections of this protocol at once; more are refused before
    /// any hook.
    pub max_connections: usize,
    /// `<max_connections_per_ip>`: connections from one client address at once; 0 (the
    /// default) sets no limit per address.
    pub max_connections_per_ip: usize,
}

/// The settings only `<srt>` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtOptions {
    /// `<latency_ms>`: the receive latency (TSBPD delay) offered in the handshake.
    pub latency: Duration,
    /// `<passphrase>`: encrypt with this passphrase (10 to 79 characters); none by default.
    pub passphrase: Option<String>,
    /// `<pbkeylen>`: AES key length in bytes, 16, 24 or 32 (with a passphrase).
    pub pbkeylen: u8,
    /// `<payload_size>`: bytes of MPEG-TS per SRT packet sent to players (188 to 1456).
    pub payload_size: usize,
}

impl Default for SrtOptions {
    fn default() -> Self {
        SrtOptions {
            latency: Duration::from_millis(120),
            passphrase: None,
            pbkeylen: 16,
            payload_size: 1316,
        }
    }
}

impl ListenerConfig {
    fn new(enable: bool, port: u16) -> Self {
        ListenerConfig {
            enable,
            port,
            notify: NotifyConfig {
                on_connect: None,
                on_play: None,
                on_publish: None,
                on_done: None,
                method: NotifyMethod::Post,
                timeout: DEFAULT_TIMEOUT,
            },
            queue_bytes: DEFAULT_QUEUE_BYTES,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            write_merge: DEFAULT_WRITE_MERGE,
            rtp_ports: DEFAULT_RTP_PORTS,
            srt: SrtOptions::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: 0,
        }
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

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: default_workers(),
            log_level: LogLevel::Info,
            rtmp: ListenerConfig::new(true, DEFAULT_RTMP_PORT),
            rtsp: ListenerConfig::new(false, DEFAULT_RTSP_PORT),
            srt: ListenerConfig::new(false, DEFAULT_SRT_PORT),
            httpflv: ListenerConfig::new(false, DEFAULT_HTTPFLV_PORT),
        }
    }
}

impl Config {
    /// Parses and validates a config document. Absent elements take their defaults.
    pub fn parse(xml: &str) -> Result<Config, ConfigError> {
        let root = build_tree(xml)?;
        let [workers, log_level, rtmp, rtsp, srt, httpflv] = fields(&root, CONFIG_CHILDREN)?;

        let workers = match workers {
            Some(el) => integer(el, "number of workers", 1, MAX_WORKERS as u64)? as usize,
            None => default_workers(),
        };
        let log_level = match log_level {
            Some(el) => {
                let value = leaf(el)?;
                LogLevel::from_name(value).ok_or_else(|| ConfigError::InvalidLogLevel {
                    at: el.at(),
                    element: el.path.clone(),
                    value: value.to_owned(),
                })?
            }
            None => LogLevel::Info,
        };

        let listeners = [
            listener("rtmp", Transport::Tcp, rtmp, true, DEFAULT_RTMP_PORT)?,
            listener("rtsp", Transport::Tcp, rtsp, false, DEFAULT_RTSP_PORT)?,
            listener("srt", Transport::Udp, srt, false, DEFAULT_SRT_PORT)?,
            listener(
                "httpflv",
                Transport::Tcp,
                httpflv,
                false,
                DEFAULT_HTTPFLV_PORT,
            )?,
        ];
        check_port_conflicts(&listeners)?;
        check_implemented(&listeners)?;

        let [rtmp, rtsp, srt, httpflv] = listeners.map(|l| l.config);
        Ok(Config {
            workers,
            log_level,
            rtmp,
            rtsp,
            srt,
            httpflv,
        })
    }

    /// Reads and parses the config file at `path`. Every error names the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let xml = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&xml).map_err(|e| e.in_file(path))
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
        }
    }
}

/// Where an error is: the line, and the file when the config was loaded from one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The config file, when known.
    pub file: Option<PathBuf>,
    /// 1-based line number.
    pub line: usize,
}

impl Location {
    fn line(line: usize) -> Self {
        Location { file: None, line }
    }
}

impl fmt::Display for Location {
    /// `path:line` when the file is known, `line N` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(path) => write!(f, "{}:{}", path.display(), self.line),
            None => write!(f, "line {}", self.line),
        }
    }
}

/// Why a config was refused. Every variant but [`ConfigError::Io`] displays as
/// `<location>: <element path>: <problem>`, e.g.
/// `streamgate.xml:7: <rtmp><port>: "70000" is not a valid port (1-65535)`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read (missing, unreadable, or not UTF-8).
    #[error("{}: cannot read the config file: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The document is not well-formed XML (reported by quick-xml, or an unknown entity, or
    /// text outside `<config>`). `element` is the innermost open element.
    #[error("{at}: {element}: malformed XML: {message}")]
    Xml {
        /// Where.
        at: Location,
        /// The innermost open element, or `document`.
        element: String,
        /// What is wrong.
        message: String,
    },
    /// The document ended while this element was still open.
    #[error("{at}: {element}: this element is never closed")]
    Unclosed {
        /// Where the element was opened.
        at: Location,
        /// The element.
        element: String,
    },
    /// A closing tag does not match the element that is open.
    #[error("{at}: {element}: found </{found}> but <{expected}> (opened at line {open_line}) is not closed yet")]
    MismatchedEnd {
        /// Where the closing tag is.
        at: Location,
        /// The open element.
        element: String,
        /// Its name.
        expected: String,
        /// The line where it was opened.
        open_line: usize,
        /// The closing tag found.
        found: String,
    },
    /// The document has no element at all.
    #[error("{at}: <config>: the document is empty; expected a <config> root element")]
    Empty {
        /// The end of the document.
        at: Location,
    },
    /// The root element is not `<config>`.
    #[error("{at}: <{found}>: the root element must be <config>")]
    WrongRoot {
        /// Where.
        at: Location,
        /// The root element found.
        found: String,
    },
    /// An element follows the closing `</config>`.
    #[error("{at}: <{found}>: element after </config>; only one root element is allowed")]
    ExtraRoot {
        /// Where.
        at: Location,
        /// The extra element.
        found: String,
    },
    /// An element that is not allowed where it is.
    #[error("{at}: {element}: unknown element; allowed in {parent}: {allowed}")]
    Unknown {
        /// Where.
        at: Location,
        /// The unknown element, with its parents.
        element: String,
        /// The parent.
        parent: String,
        /// The elements allowed in the parent, e.g. `<enable>, <port>, <http_notify>`.
        allowed: String,
    },
    /// An element given twice in the same parent.
    #[error("{at}: {element}: given twice (first at line {first_line})")]
    Duplicate {
        /// Where the second one is.
        at: Location,
        /// The element.
        element: String,
        /// Where the first one is.
        first_line: usize,
    },
    /// Text inside an element that holds child elements.
    #[error("{at}: {element}: unexpected text {text:?}; this element holds only child elements")]
    UnexpectedText {
        /// Where the text is.
        at: Location,
        /// The element.
        element: String,
        /// The start of the text.
        text: String,
    },
    /// A child element inside an element that holds a value.
    #[error(
        "{at}: {element}: unexpected child element <{child}>; this element holds a text value"
    )]
    UnexpectedChild {
        /// Where the child is.
        at: Location,
        /// The element.
        element: String,
        /// The child found.
        child: String,
    },
    /// An attribute: settings are child elements, attributes are not supported.
    #[error(
        "{at}: {element}: attribute `{attribute}` is not supported; settings are child elements"
    )]
    Attribute {
        /// Where.
        at: Location,
        /// The element.
        element: String,
        /// The attribute's name.
        attribute: String,
    },
    /// A boolean other than `true`, `false`, `1` or `0`.
    #[error("{at}: {element}: {value:?} is not a boolean (use true, false, 1 or 0)")]
    InvalidBool {
        /// Where.
        at: Location,
        /// The element.
        element: String,
        /// The text found.
        value: String,
    },
    /// A number that is not a whole number.
    #[error("{at}: {element}: {value:?} is not a whole number (a valid {what} is {min}-{max})")]
    InvalidInteger {
        /// Where.
        at: Location,
        /// The element.
        element: String,
        /// The text found.
        value: String,
        /// What the number is, e.g. `port`.
        what: &'static str,
        /// The smallest valid value.
        min: u64,
        /// The largest valid value.
        max: u64,
    },
    /// A whole number outside its range (port 0 or over 65535, workers 0 or over 256,
    /// timeout_ms 0 or over 600000).
    #[error("{at}: {element}: {value:?} is not a valid {what} ({min}-{max})")]
    OutOfRange {
        /// Where.
        at: Location,
        /// The element.
        element: String,
        /// The text found.
        value: String,
        /// What the number is, e.g. `port`.
        what: &'static str,
        /// The smallest valid value.
        min: u64,
        /// The largest valid value.
        max: u64,
    },
    /// A value that is well-formed but not usable, with the reason.
    #[error("{at}: {element}: {value:?} is not valid: {reason}")]
    InvalidValue {
        /// Where.
        at: Location,
        /// The element.
        element: String,
        /// The value found (secrets are not repeated).
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A `<log_level>` that is not trace, debug, info, warn or error.
    #[error(
        "{at}: {element}: {value:?} is not a log level (use trace, debug, info, warn or error)"
    )]
    InvalidLogLevel {
        /// Where.
        at: Location,
        /// The element.
        element: String,
        /// The text found.
        value: String,
    },
    /// A `<notify_method>` that is not GET or POST.
    #[error("{at}: {element}: {value:?} is not a notify method (use GET or POST)")]
    InvalidMethod {
        /// Where.
        at: Location,
        /// The element.
        element: String,
        /// The text found.
        value: String,
    },
    /// A hook URL that is not `http://host[:port]/...`.
    #[error("{at}: {element}: {value:?} is not a valid hook URL: {reason}")]
    InvalidHookUrl {
        /// Where.
        at: Location,
        /// The element.
        element: String,
        /// The URL found (trimmed).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two enabled TCP listeners on the same port (SRT is UDP and may share a number).
    #[error("{at}: {element}: port {port} is already used by {other}{}", other_line_suffix(.other_line))]
    PortConflict {
        /// Where the second listener's port (or section) is.
        at: Location,
        /// The element, e.g. `<httpflv><port>`.
        element: String,
        /// The port.
        port: u16,
        /// The listener that has it first, e.g. `<rtmp>`.
        other: String,
        /// Where that listener's port is set; `None` when it is its default.
        other_line: Option<usize>,
    },
    /// A protocol that is enabled but has no server yet (every protocol has one today).
    #[error("{at}: {element}: {protocol} is not supported yet (rtmp, httpflv, rtsp and srt are); set <enable>false</enable> or remove the <{protocol}> section")]
    NotSupported {
        /// Where the `<enable>` is.
        at: Location,
        /// The element, e.g. `<rtsp><enable>`.
        element: String,
        /// The protocol, e.g. `rtsp`.
        protocol: &'static str,
    },
}

fn other_line_suffix(line: &Option<usize>) -> String {
    match line {
        Some(line) => format!(" (line {line})"),
        None => " (its default)".to_owned(),
    }
}

impl ConfigError {
    /// Where the error is; `None` for [`ConfigError::Io`].
    pub fn location(&self) -> Option<&Location> {
        use ConfigError::*;
        match self {
            Io { .. } => None,
            Xml { at, .. }
            | Unclosed { at, .. }
            | MismatchedEnd { at, .. }
            | Empty { at }
            | WrongRoot { at, .. }
            | ExtraRoot { at, .. }
            | Unknown { at, .. }
            | Duplicate { at, .. }
            | UnexpectedText { at, .. }
            | UnexpectedChild { at, .. }
            | Attribute { at, .. }
            | InvalidBool { at, .. }
            | InvalidInteger { at, .. }
            | OutOfRange { at, .. }
            | InvalidValue { at, .. }
            | InvalidLogLevel { at, .. }
            | InvalidMethod { at, .. }
            | InvalidHookUrl { at, .. }
            | PortConflict { at, .. }
            | NotSupported { at, .. } => Some(at),
        }
    }

    /// The 1-based line of the error; `None` for [`ConfigError::Io`].
    pub fn line(&self) -> Option<usize> {
        self.location().map(|at| at.line)
    }

    /// The same error, located in the file `path`.
    pub fn in_file(mut self, path: &Path) -> Self {
        use ConfigError::*;
        match &mut self {
            Io { .. } => {}
            Xml { at, .. }
            | Unclosed { at, .. }
            | MismatchedEnd { at, .. }
            | Empty { at }
            | WrongRoot { at, .. }
            | ExtraRoot { at, .. }
            | Unknown { at, .. }
            | Duplicate { at, .. }
            | UnexpectedText { at, .. }
            | UnexpectedChild { at, .. }
            | Attribute { at, .. }
            | InvalidBool { at, .. }
            | InvalidInteger { at, .. }
            | OutOfRange { at, .. }
            | InvalidValue { at, .. }
            | InvalidLogLevel { at, .. }
            | InvalidMethod { at, .. }
            | InvalidHookUrl { at, .. }
            | PortConflict { at, .. }
            | NotSupported { at, .. } => at.file = Some(path.to_path_buf()),
        }
        self
    }
}

// ---------------------------------------------------------------------------------------------
// The element tree
// ---------------------------------------------------------------------------------------------

/// One element of the document, with the line of its start tag.
#[derive(Debug)]
struct Element {
    name: String,
    /// `<config>` for the root, then `<rtmp>`, `<rtmp><http_notify>`, ... (the root is left
    /// out of its children's paths).
    path: String,
    line: usize,
    /// All the text directly inside, entities resolved, CDATA included, untrimmed.
    text: String,
    /// The line of the first non-whitespace text, if any.
    text_line: Option<usize>,
    children: Vec<Element>,
}

impl Element {
    fn at(&self) -> Location {
        Location::line(self.line)
    }

    fn push_text(&mut self, text: &str, line: usize) {
        if self.text_line.is_none() {
            self.text_line = first_text_line(text, line);
        }
        self.text.push_str(text);
    }
}

/// The line of the first non-whitespace character of `text`, which starts on `line`; `None`
/// when it is all whitespace.
fn first_text_line(text: &str, line: usize) -> Option<usize> {
    let i = text.find(|c: char| !c.is_whitespace())?;
    Some(line + text[..i].matches('\n').count())
}

/// Whether quick-xml's idea of a tag name is a plausible XML name (it takes everything up
/// to the `>`, so `<port>1935</port` followed by another tag gives a name with `<` in it).
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains(|c: char| c.is_whitespace() || c.is_control() || "<>&\"'/=!?".contains(c))
}

/// A tag name as quoted in an error: its first line, at most 40 characters.
fn quote_name(name: &str) -> String {
    let first = name.lines().next().unwrap_or_default();
    let mut quoted: String = first.chars().take(40).collect();
    if quoted.len() < name.len() {
        quoted.push_str("...");
    }
    quoted
}

/// Turns byte offsets into 1-based line numbers, counting forward from the last offset asked.
struct Lines<'a> {
    src: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> Lines<'a> {
    fn new(src: &'a str) -> Self {
        Lines {
            src: src.as_bytes(),
            offset: 0,
            line: 1,
        }
    }

    fn at(&mut self, offset: u64) -> usize {
        let offset = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.src.len());
        if offset < self.offset {
            self.offset = 0;
            self.line = 1;
        }
        self.line += self.src[self.offset..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.offset = offset;
        self.line
    }
}

/// The innermost open element's path, for XML errors.
fn open_path(stack: &[Element]) -> String {
    stack
        .last()
        .map_or_else(|| "document".to_owned(), |el| el.path.clone())
}

fn xml_error(stack: &[Element], line: usize, message: impl Into<String>) -> ConfigError {
    ConfigError::Xml {
        at: Location::line(line),
        element: open_path(stack),
        message: message.into(),
    }
}

/// Adds text to the open element; text outside the root must be whitespace.
fn add_text(stack: &mut [Element], text: &str, line: usize, what: &str) -> Result<(), ConfigError> {
    match stack.last_mut() {
        Some(el) => {
            el.push_text(text, line);
            Ok(())
        }
        None => match first_text_line(text, line) {
            None => Ok(()),
            Some(line) => Err(xml_error(
                stack,
                line,
                format!("{what} outside the <config> element"),
            )),
        },
    }
}

/// Reads the document into an element tree rooted at `<config>`, checking that it is
/// well-formed and has no attributes.
fn build_tree(xml: &str) -> Result<Element, ConfigError> {
    let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    let mut reader = Reader::from_str(xml);
    // End tags are matched here instead, to say where the open tag was.
    reader.config_mut().check_end_names = false;
    let mut lines = Lines::new(xml);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;

    loop {
        let start = reader.buffer_position();
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => {
                let line = lines.at(reader.error_position());
                let mut message = e.to_string();
                if matches!(
                    e,
                    quick_xml::Error::IllFormed(IllFormedError::UnclosedReference)
                ) {
                    message.push_str(
                        " (write a literal & as &amp;, or put the URL in <![CDATA[...]]>)",
                    );
                }
                return Err(xml_error(&stack, line, message));
            }
        };
        let line = lines.at(start);
        let (tag, empty) = match event {
            Event::Start(tag) => (tag, false),
            Event::Empty(tag) => (tag, true),
            Event::End(tag) => {
                let found = String::from_utf8_lossy(tag.name().as_ref()).into_owned();
                if !is_name(&found) {
                    return Err(xml_error(
                        &stack,
                        line,
                        format!(
                            "malformed closing tag </{}> (is a `>` missing?)",
                            quote_name(&found)
                        ),
                    ));
                }
                let Some(el) = stack.pop() else {
                    return Err(xml_error(
                        &stack,
                        line,
                        format!("closing tag </{found}> has no matching open tag"),
                    ));
                };
                if el.name != found {
                    return Err(ConfigError::MismatchedEnd {
                        at: Location::line(line),
                        element: el.path,
                        expected: el.name,
                        open_line: el.line,
                        found,
                    });
                }
                close(&mut stack, &mut root, el);
                continue;
            }
            Event::Text(text) => {
                let text = text
                    .xml10_content()
                    .map_err(|e| xml_error(&stack, line, e.to_string()))?;
                add_text(&mut stack, &text, line, "text")?;
                continue;
            }
            Event::CData(cdata) => {
                let text = cdata
                    .xml10_content()
                    .map_err(|e| xml_error(&stack, line, e.to_string()))?;
                add_text(&mut stack, &text, line, "CDATA")?;
                continue;
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = String::from_utf8_lossy(&reference).into_owned();
                        match resolve_xml_entity(&name) {
                            Some(s) => s.to_owned(),
                            None => {
                                return Err(xml_error(
                                    &stack,
                                    line,
                                    format!(
                                        "unknown entity &{name}; (only &lt; &gt; &amp; &apos; \
                                         &quot; and character references like &#38; are known)"
                                    ),
                                ))
                            }
                        }
                    }
                    Err(e) => return Err(xml_error(&stack, line, e.to_string())),
                };
                add_text(&mut stack, &resolved, line, "text")?;
                continue;
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => continue,
            Event::Eof => {
                if let Some(el) = stack.pop() {
                    return Err(ConfigError::Unclosed {
                        at: el.at(),
                        element: el.path,
                    });
                }
                return root.ok_or(ConfigError::Empty {
                    at: Location::line(line),
                });
            }
        };

        let name = String::from_utf8_lossy(tag.name().as_ref()).into_owned();
        if !is_name(&name) {
            return Err(xml_error(
                &stack,
                line,
                format!(
                    "malformed tag <{}> (is a `>` missing, or a `<` not written as &lt;?)",
                    quote_name(&name)
                ),
            ));
        }
        let path = match stack.as_slice() {
            [] => {
                if root.is_some() {
                    return Err(ConfigError::ExtraRoot {
                        at: Location::line(line),
                        found: name,
                    });
                }
                if name != "config" {
                    return Err(ConfigError::WrongRoot {
                        at: Location::line(line),
                        found: name,
                    });
                }
                "<config>".to_owned()
            }
            [_root] => format!("<{name}>"),
            [.., parent] => format!("{}<{name}>", parent.path),
        };
        if let Some(attribute) = tag.attributes().next() {
            let attribute = attribute.map_err(|e| xml_error(&stack, line, e.to_string()))?;
            return Err(ConfigError::Attribute {
                at: Location::line(line),
                element: path,
                attribute: String::from_utf8_lossy(attribute.key.as_ref()).into_owned(),
            });
        }
        let el = Element {
            name,
            path,
            line,
            text: String::new(),
            text_line: None,
            children: Vec::new(),
        };
        if empty {
            close(&mut stack, &mut root, el);
        } else {
            stack.push(el);
        }
    }
}

/// A complete element goes to its parent, or becomes the root.
fn close(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

// ---------------------------------------------------------------------------------------------
// From the tree to the typed config
// ---------------------------------------------------------------------------------------------

const CONFIG_CHILDREN: [&str; 6] = ["workers", "log_level", "rtmp", "rtsp", "srt", "httpflv"];
/// Every element a protocol section may hold; [`section_children`] says which one may.
const LISTENER_CHILDREN: [&str; 14] = [
    "enable",
    "port",
    "http_notify",
    "queue_bytes",
    "stall_timeout_ms",
    "write_merge_ms",
    "rtp_port_min",
    "rtp_port_max",
    "latency_ms",
    "passphrase",
    "pbkeylen",
    "payload_size",
    "max_connections",
    "max_connections_per_ip",
];

/// The elements protocol section `name` may hold.
fn section_children(name: &str) -> Vec<&'static str> {
    let common = &LISTENER_CHILDREN[..5];
    let own: &[&str] = match name {
        "rtsp" => &LISTENER_CHILDREN[5..8],
        "srt" => &LISTENER_CHILDREN[8..12],
        _ => &LISTENER_CHILDREN[5..6],
    };
    common
        .iter()
        .chain(own)
        .chain(&LISTENER_CHILDREN[12..])
        .copied()
        .collect()
}
const NOTIFY_CHILDREN: [&str; 6] = [
    "on_connect",
    "on_play",
    "on_publish",
    "on_done",
    "notify_method",
    "timeout_ms",
];

/// The children of an element that holds only elements, in the order of `allowed`: checks
/// for text, unknown elements and duplicates.
fn fields<'a, const N: usize>(
    el: &'a Element,
    allowed: [&str; N],
) -> Result<[Option<&'a Element>; N], ConfigError> {
    if let Some(line) = el.text_line {
        let text = el.text.trim();
        let mut excerpt: String = text.chars().take(40).collect();
        if excerpt.len() < text.len() {
            excerpt.push_str("...");
        }
        return Err(ConfigError::UnexpectedText {
            at: Location::line(line),
            element: el.path.clone(),
            text: excerpt,
        });
    }
    let mut found: [Option<&Element>; N] = [None; N];
    for child in &el.children {
        let Some(i) = allowed.iter().position(|name| *name == child.name) else {
            return Err(ConfigError::Unknown {
                at: child.at(),
                element: child.path.clone(),
                parent: el.path.clone(),
                allowed: allowed
                    .iter()
                    .map(|name| format!("<{name}>"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        if let Some(first) = found[i] {
            return Err(ConfigError::Duplicate {
                at: child.at(),
                element: child.path.clone(),
                first_line: first.line,
            });
        }
        found[i] = Some(child);
    }
    Ok(found)
}

/// The trimmed text of an element that holds a value.
fn leaf(el: &Element) -> Result<&str, ConfigError> {
    if let Some(child) = el.children.first() {
        return Err(ConfigError::UnexpectedChild {
            at: child.at(),
            element: el.path.clone(),
            child: child.name.clone(),
        });
    }
    Ok(el.text.trim())
}

fn boolean(el: &Element) -> Result<bool, ConfigError> {
    let value = leaf(el)?;
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ConfigError::InvalidBool {
            at: el.at(),
            element: el.path.clone(),
            value: value.to_owned(),
        }),
    }
}

/// A whole number in `min..=max`; `what` names it in errors ("port").
fn integer(el: &Element, what: &'static str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let value = leaf(el)?;
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::InvalidInteger {
            at: el.at(),
            element: el.path.clone(),
            value: value.to_owned(),
            what,
            min,
            max,
        });
    }
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        // Negative, too large for u64, or outside the range.
        _ => Err(ConfigError::OutOfRange {
            at: el.at(),
            element: el.path.clone(),
            value: value.to_owned(),
            what,
            min,
            max,
        }),
    }
}

fn port(el: &Element) -> Result<u16, ConfigError> {
    let port = integer(el, "port", 1, u64::from(u16::MAX))?;
    // In range by the check above.
    Ok(port as u16)
}

/// `http://host[:port][/path][?query]`, or why not.
fn check_hook_url(url: &str) -> Result<(), String> {
    let supported = SUPPORTED_HOOK_SCHEMES.join(", ");
    if url.contains(char::is_whitespace) {
        return Err("it contains whitespace (percent-encode a space as %20)".to_owned());
    }
    if url.contains(char::is_control) {
        return Err("it contains a control character".to_owned());
    }
    if !url.is_ascii() {
        return Err("it contains non-ASCII characters (percent-encode them)".to_owned());
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "it must start with a scheme and a host, like http://127.0.0.1:9000/on_publish \
             (supported schemes: {supported})"
        ));
    };
    if !SUPPORTED_HOOK_SCHEMES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
    {
        return Err(format!(
            "scheme {scheme:?} is not supported (supported schemes: {supported})"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err("its IPv6 host has no closing ]".to_owned());
        };
        if !host
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(format!("{host:?} is not an IPv6 address"));
        }
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("unexpected {after:?} after the IPv6 host")),
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("it has no host (write http://host[:port]/path)".to_owned());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~%:".contains(&b))
    {
        return Err(format!("{host:?} is not a valid host name"));
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(format!("{port:?} is not a valid port (1-65535)")),
        }
    }
    Ok(())
}

/// A hook URL element: empty means no hook.
fn hook_url(el: Option<&Element>) -> Result<Option<String>, ConfigError> {
    let Some(el) = el else {
        return Ok(None);
    };
    let url = leaf(el)?;
    if url.is_empty() {
        return Ok(None);
    }
    check_hook_url(url).map_err(|reason| ConfigError::InvalidHookUrl {
        at: el.at(),
        element: el.path.clone(),
        value: url.to_owned(),
        reason,
    })?;
    Ok(Some(url.to_owned()))
}

fn notify(el: &Element) -> Result<NotifyConfig, ConfigError> {
    let [on_connect, on_play, on_publish, on_done, method, timeout] = fields(el, NOTIFY_CHILDREN)?;
    let method = match method {
        Some(el) => {
            let value = leaf(el)?;
            if value.eq_ignore_ascii_case("GET") {
                NotifyMethod::Get
            } else if value.eq_ignore_ascii_case("POST") {
                NotifyMethod::Post
            } else {
                return Err(ConfigError::InvalidMethod {
                    at: el.at(),
                    element: el.path.clone(),
                    value: value.to_owned(),
                });
            }
        }
        None => NotifyMethod::Post,
    };
    let timeout = match timeout {
        Some(el) => {
            Duration::from_millis(integer(el, "timeout in milliseconds", 1, MAX_TIMEOUT_MS)?)
        }
        None => DEFAULT_TIMEOUT,
    };
    Ok(NotifyConfig {
        on_connect: hook_url(on_connect)?,
        on_play: hook_url(on_play)?,
        on_publish: hook_url(on_publish)?,
        on_done: hook_url(on_done)?,
        method,
        timeout,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

/// A parsed protocol section and where its settings were, for the cross-section checks.
#[derive(Debug)]
struct Listener {
    name: &'static str,
    transport: Transport,
    config: ListenerConfig,
    section_line: Option<usize>,
    enable_line: Option<usize>,
    port_line: Option<usize>,
}

fn listener(
    name: &'static str,
    transport: Transport,
    el: Option<&Element>,
    enable: bool,
    port_default: u16,
) -> Result<Listener, ConfigError> {
    let mut listener = Listener {
        name,
        transport,
        config: ListenerConfig::new(enable, port_default),
        section_line: el.map(|el| el.line),
        enable_line: None,
        port_line: None,
    };
    let Some(el) = el else {
        return Ok(listener);
    };
    let allowed = section_children(name);
    if let Some(child) = el
        .children
        .iter()
        .find(|c| !allowed.contains(&c.name.as_str()))
    {
        return Err(ConfigError::Unknown {
            at: child.at(),
            element: child.path.clone(),
            parent: el.path.clone(),
            allowed: allowed
                .iter()
                .map(|n| format!("<{n}>"))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let [enable, port_el, http_notify, queue_bytes, stall, write_merge, rtp_min, rtp_max, latency, passphrase, pbkeylen, payload_size, max_conns, max_per_ip] =
        fields(el, LISTENER_CHILDREN)?;
    if let Some(el) = max_conns {
        listener.config.max_connections =
            integer(el, "number of connections", 1, MAX_CONNECTIONS_LIMIT)? as usize;
    }
    if let Some(el) = max_per_ip {
        listener.config.max_connections_per_ip =
            integer(el, "number of connections", 0, MAX_CONNECTIONS_LIMIT)? as usize;
    }
    if let Some(el) = enable {
        listener.config.enable = boolean(el)?;
        listener.enable_line = Some(el.line);
    }
    if let Some(el) = port_el {
        listener.config.port = port(el)?;
        listener.port_line = Some(el.line);
    }
    if let Some(el) = http_notify {
        listener.config.notify = notify(el)?;
    }
    if let Some(el) = queue_bytes {
        let (min, max) = QUEUE_BYTES_RANGE;
        listener.config.queue_bytes = integer(el, "queue size in bytes", min, max)? as usize;
    }
    if let Some(el) = stall {
        let (min, max) = STALL_TIMEOUT_RANGE_MS;
        listener.config.stall_timeout =
            Duration::from_millis(integer(el, "stall timeout in milliseconds", min, max)?);
    }
    if let Some(el) = write_merge {
        listener.config.write_merge = Duration::from_millis(integer(
            el,
            "merge window in milliseconds",
            0,
            MAX_WRITE_MERGE_MS,
        )?);
    }
    let (mut low, mut high) = listener.config.rtp_ports;
    if let Some(el) = rtp_min {
        low = port(el)?;
    }
    if let Some(el) = rtp_max {
        high = port(el)?;
    }
    if let Some(el) = rtp_min.or(rtp_max) {
        if low % 2 != 0 || high <= low {
            return Err(ConfigError::InvalidValue {
                at: el.at(),
                element: el.path.clone(),
                value: format!("{low}-{high}"),
                reason: "the RTP port range must start on an even port and hold at least one \
                         even/odd pair (rtp_port_min even, rtp_port_max > rtp_port_min)"
                    .into(),
            });
        }
    }
    listener.config.rtp_ports = (low, high);
    let srt = &mut listener.config.srt;
    if let Some(el) = latency {
        srt.latency = Duration::from_millis(integer(el, "latency in milliseconds", 0, 60_000)?);
    }
    if let Some(el) = pbkeylen {
        let value = integer(el, "key length in bytes", 16, 32)?;
        if ![16, 24, 32].contains(&value) {
            return Err(ConfigError::InvalidValue {
                at: el.at(),
                element: el.path.clone(),
                value: value.to_string(),
                reason: "the key length must be 16, 24 or 32 bytes".into(),
            });
        }
        srt.pbkeylen = value as u8;
    }
    if let Some(el) = payload_size {
        srt.payload_size = integer(el, "payload size in bytes", 188, 1456)? as usize;
    }
    if let Some(el) = passphrase {
        let value = leaf(el)?;
        if !value.is_empty() {
            if !(10..=79).contains(&value.chars().count()) {
                return Err(ConfigError::InvalidValue {
                    at: el.at(),
                    element: el.path.clone(),
                    value: "(hidden)".into(),
                    reason: format!(
                        "a passphrase must be 10 to 79 characters long, this one has {}",
                        value.chars().count()
                    ),
                });
            }
            srt.passphrase = Some(value.to_owned());
        }
    }
    Ok(listener)
}

/// Two enabled listeners of the same transport may not share a port.
fn check_port_conflicts(listeners: &[Listener]) -> Result<(), ConfigError> {
    for (i, second) in listeners.iter().enumerate() {
        let Some(first) = listeners[..i].iter().find(|first| {
            first.config.enable
                && second.config.enable
                && first.transport == second.transport
                && first.config.port == second.config.port
        }) else {
            continue;
        };
        let line = second
            .port_line
            .or(second.enable_line)
            .or(second.section_line)
            .unwrap_or(1);
        return Err(ConfigError::PortConflict {
            at: Location::line(line),
            element: format!("<{}><port>", second.name),
            port: second.config.port,
            other: format!("<{}>", first.name),
            other_line: first.port_line,
        });
    }
    Ok(())
}

/// The protocols that have a server today.
const IMPLEMENTED: &[&str] = &["rtmp", "httpflv", "rtsp", "srt"];

/// Enabling a protocol that has no server yet is an error rather than silently ignored.
fn check_implemented(listeners: &[Listener]) -> Result<(), ConfigError> {
    for l in listeners {
        if l.config.enable && !IMPLEMENTED.contains(&l.name) {
            return Err(ConfigError::NotSupported {
                at: Location::line(l.enable_line.or(l.section_line).unwrap_or(1)),
                element: format!("<{}><enable>", l.name),
                protocol: l.name,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
        assert_eq!(e.line(), Some(line), "{message}");
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
        assert_eq!(config.hooks(), HookTable::default());
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
        let hooks = config.hooks();
        for notify in [&hooks.rtmp, &hooks.rtsp, &hooks.srt, &hooks.httpflv] {
            assert_eq!(notify.on_connect, None);
            assert_eq!(notify.on_play, None);
            assert_eq!(notify.on_publish, None);
            assert_eq!(notify.on_done, None);
        }
        // The shipped file states every default but three, and leaves <workers> to the core
        // count: it turns HTTP-FLV, RTSP and SRT on, which a file without those sections
        // leaves off.
        let mut defaults = Config::default();
        defaults.httpflv.enable = true;
        defaults.rtsp.enable = true;
        defaults.srt.enable = true;
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
        let mut listeners = [
            listener("rtmp", Transport::Tcp, None, true, 1935).expect("default"),
            listener("srt", Transport::Udp, None, true, 1935).expect("default"),
        ];
        assert!(check_port_conflicts(&listeners).is_ok());
        listeners[1].transport = Transport::Tcp;
        assert!(matches!(
            check_port_conflicts(&listeners),
            Err(ConfigError::PortConflict { port: 1935, .. })
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
        assert!(matches!(e, ConfigError::Io { .. }));
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
        assert!(matches!(e, ConfigError::Xml { .. }));
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
        assert!(matches!(e, ConfigError::Xml { .. }));
        let e = assert_error(
            "<config>\n<rtmp>\n<port>1935<</port>\n</rtmp>\n</config>",
            3,
            "<rtmp><port>",
            "malformed XML",
        );
        assert!(matches!(e, ConfigError::Xml { .. }));
    }

    #[test]
    fn error_mismatched_end_tag() {
        let e = assert_error(
            "<config>\n<rtmp>\n<port>1935</port>\n</rtsp>\n</config>",
            4,
            "<rtmp>",
            "found </rtsp> but <rtmp> (opened at line 2) is not closed yet",
        );
        assert!(matches!(e, ConfigError::MismatchedEnd { open_line: 2, .. }));
    }

    #[test]
    fn error_end_tag_without_start() {
        let e = assert_error("<config/>\n\n</config>", 3, "document", "</config>");
        assert!(matches!(e, ConfigError::Xml { .. }));
    }

    #[test]
    fn error_unclosed_element() {
        let e = assert_error(
            "<config>\n<rtmp>\n<http_notify>\n</rtmp>",
            4,
            "<rtmp><http_notify>",
            "found </rtmp> but <http_notify> (opened at line 3) is not closed yet",
        );
        assert!(matches!(e, ConfigError::MismatchedEnd { .. }));
        let e = assert_error(
            "<config>\n<rtmp>\n<http_notify>\n",
            3,
            "<rtmp><http_notify>",
            "never closed",
        );
        assert!(matches!(e, ConfigError::Unclosed { .. }));
    }

    #[test]
    fn error_empty_document() {
        let e = assert_error("", 1, "<config>", "empty");
        assert!(matches!(e, ConfigError::Empty { .. }));
        let e = assert_error(
            "<?xml version=\"1.0\"?>\n<!-- nothing -->\n",
            3,
            "<config>",
            "empty",
        );
        assert!(matches!(e, ConfigError::Empty { .. }));
    }

    #[test]
    fn error_wrong_root() {
        let e = assert_error(
            "<?xml version=\"1.0\"?>\n<settings>\n</settings>",
            2,
            "<settings>",
            "root element must be <config>",
        );
        assert!(matches!(e, ConfigError::WrongRoot { .. }));
    }

    #[test]
    fn error_second_root() {
        let e = assert_error("<config/>\n<config/>", 2, "<config>", "only one root");
        assert!(matches!(e, ConfigError::ExtraRoot { .. }));
    }

    #[test]
    fn error_text_outside_root() {
        let e = assert_error(
            "<config/>\n\ntrailing",
            3,
            "document",
            "outside the <config>",
        );
        assert!(matches!(e, ConfigError::Xml { .. }));
    }

    #[test]
    fn error_bare_ampersand() {
        let e = assert_error(
            &rtmp_notify("\n<on_play>http://h/p?a=1&b=2</on_play>"),
            5,
            "<rtmp><http_notify><on_play>",
            "&amp;",
        );
        assert!(matches!(e, ConfigError::Xml { .. }));
    }

    #[test]
    fn error_unknown_entity() {
        let e = assert_error(
            &rtmp_notify("<on_play>http://h/p?a=1&nbsp;</on_play>"),
            4,
            "<rtmp><http_notify><on_play>",
            "unknown entity &nbsp;",
        );
        assert!(matches!(e, ConfigError::Xml { .. }));
    }

    #[test]
    fn error_unknown_element() {
        let e = assert_error(
            "<config>\n<rtmp>\n<prot>1935</prot>\n</rtmp>\n</config>",
            3,
            "<rtmp><prot>",
            "allowed in <rtmp>: <enable>, <port>, <http_notify>",
        );
        assert!(matches!(e, ConfigError::Unknown { .. }));
        assert_error(
            "<config>\n\n<hls/>\n</config>",
            3,
            "<hls>",
            "allowed in <config>: <workers>, <log_level>, <rtmp>, <rtsp>, <srt>, <httpflv>",
        );
        assert_error(
            &rtmp_notify("<on_stop>http://h/</on_stop>"),
            4,
            "<rtmp><http_notify><on_stop>",
            "<on_connect>, <on_play>, <on_publish>, <on_done>, <notify_method>, <timeout_ms>",
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
        assert!(matches!(e, ConfigError::Duplicate { first_line: 3, .. }));
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
        assert!(matches!(e, ConfigError::UnexpectedText { .. }));
    }

    #[test]
    fn error_child_in_a_value() {
        let e = assert_error(
            "<config>\n<rtmp>\n<port>\n<value>1935</value>\n</port>\n</rtmp>\n</config>",
            4,
            "<rtmp><port>",
            "unexpected child element <value>",
        );
        assert!(matches!(e, ConfigError::UnexpectedChild { .. }));
    }

    #[test]
    fn error_attribute() {
        let e = assert_error(
            "<config>\n<rtmp enable=\"true\">\n</rtmp>\n</config>",
            2,
            "<rtmp>",
            "attribute `enable` is not supported",
        );
        assert!(matches!(e, ConfigError::Attribute { .. }));
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
        assert!(matches!(e, ConfigError::InvalidBool { .. }));
    }

    #[test]
    fn error_bad_integer() {
        let e = assert_error(
            "<config>\n<rtmp>\n<port>19x5</port>\n</rtmp>\n</config>",
            3,
            "<rtmp><port>",
            "\"19x5\" is not a whole number (a valid port is 1-65535)",
        );
        assert!(matches!(e, ConfigError::InvalidInteger { .. }));
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
        assert!(matches!(e, ConfigError::OutOfRange { .. }));
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
        assert!(matches!(e, ConfigError::OutOfRange { .. }));
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
    fn error_bad_log_level() {
        let e = assert_error(
            "<config>\n<log_level>verbose</log_level>\n</config>",
            2,
            "<log_level>",
            "\"verbose\" is not a log level",
        );
        assert!(matches!(e, ConfigError::InvalidLogLevel { .. }));
    }

    #[test]
    fn error_timeout_zero() {
        let e = assert_error(
            &rtmp_notify("<timeout_ms>0</timeout_ms>"),
            4,
            "<rtmp><http_notify><timeout_ms>",
            "\"0\" is not a valid timeout in milliseconds (1-600000)",
        );
        assert!(matches!(e, ConfigError::OutOfRange { .. }));
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
    fn error_bad_notify_method() {
        let e = assert_error(
            &rtmp_notify("<notify_method>PUT</notify_method>"),
            4,
            "<rtmp><http_notify><notify_method>",
            "\"PUT\" is not a notify method (use GET or POST)",
        );
        assert!(matches!(e, ConfigError::InvalidMethod { .. }));
    }

    fn url_error(url: &str, fragment: &str) {
        let e = assert_error(
            &rtmp_notify(&format!("<on_publish>{url}</on_publish>")),
            4,
            "<rtmp><http_notify><on_publish>",
            fragment,
        );
        assert!(matches!(e, ConfigError::InvalidHookUrl { .. }), "{e}");
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
        assert!(matches!(e, ConfigError::PortConflict { port: 1935, .. }));
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
        assert_eq!(c.srt.srt, SrtOptions::default());
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
        assert_eq!(c.rtmp.write_merge, Duration::ZERO);
        assert_eq!(c.rtsp.write_merge, Duration::from_millis(250));
        assert_eq!(c.httpflv.write_merge, DEFAULT_WRITE_MERGE);
        let err = Config::parse(
            "<config>\n<srt>\n<write_merge_ms>10</write_merge_ms>\n</srt>\n</config>",
        )
        .expect_err("SRT has no socket writes to merge");
        assert!(matches!(err, ConfigError::Unknown { .. }), "{err}");
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
        assert_eq!(c.rtsp.rtp_ports, (30000, 30099));
        assert_eq!(c.srt.srt.latency, Duration::from_millis(200));
        assert_eq!(c.srt.srt.passphrase.as_deref(), Some("0123456789abc"));
        assert_eq!(c.srt.srt.pbkeylen, 32);
        assert_eq!(Config::default().rtsp.rtp_ports, DEFAULT_RTP_PORTS);
        assert_eq!(Config::default().srt.srt, SrtOptions::default());
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
            "10 to 79 characters",
        );
        assert_error(
            "<config>\n<srt>\n<pbkeylen>20</pbkeylen>\n</srt>\n</config>",
            3,
            "<srt><pbkeylen>",
            "16, 24 or 32",
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
}

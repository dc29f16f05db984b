//! Why a config is refused: [`ConfigError`] (where, which element, what is wrong) and
//! [`LoadError`] (the file could not be read, or its text is refused).
//!
//! Every message a refused file gets has the form `<location>: <element path>: <problem>`; the
//! form is written once, in [`ConfigError`]'s `Display`, and each [`ErrorKind`] says only the
//! problem. It must not know how the tree is read or which elements exist.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where an error is: the line, and the file when the config was loaded from one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The config file, when known.
    pub file: Option<PathBuf>,
    /// 1-based line number.
    pub line: usize,
}

impl Location {
    pub(crate) fn line(line: usize) -> Self {
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

/// A refused config document. Displays as `<location>: <element path>: <problem>`, e.g.
/// `streamgate.xml:7: <rtmp><port>: "70000" is not a valid port (1-65535)`.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {element}: {kind}")]
pub struct ConfigError {
    /// Where: the element's start tag (for text, the text; for XML syntax errors, where the
    /// parser stopped).
    pub at: Location,
    /// The element's path below `<config>`, e.g. `<rtmp><port>`; `document` for an XML error
    /// outside every element.
    pub element: String,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl ConfigError {
    pub(crate) fn new(line: usize, element: impl Into<String>, kind: ErrorKind) -> Self {
        ConfigError {
            at: Location::line(line),
            element: element.into(),
            kind,
        }
    }

    /// The same error, located in the file `path`.
    pub fn in_file(mut self, path: &Path) -> Self {
        self.at.file = Some(path.to_path_buf());
        self
    }
}

/// What is wrong with an element: the `<problem>` part of a [`ConfigError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The document is not well-formed XML (reported by quick-xml, or an unknown entity, or
    /// text outside `<config>`).
    #[error("malformed XML: {0}")]
    Xml(String),
    /// The document ended while this element was still open.
    #[error("this element is never closed")]
    Unclosed,
    /// A closing tag does not match the element that is open.
    #[error("found </{found}> but <{expected}> (opened at line {open_line}) is not closed yet")]
    MismatchedEnd {
        /// The open element's name.
        expected: String,
        /// The line where it was opened.
        open_line: usize,
        /// The closing tag found.
        found: String,
    },
    /// The document has no element at all.
    #[error("the document is empty; expected a <config> root element")]
    Empty,
    /// The root element is not `<config>`.
    #[error("the root element must be <config>")]
    WrongRoot,
    /// An element follows the closing `</config>`.
    #[error("element after </config>; only one root element is allowed")]
    ExtraRoot,
    /// An element that is not allowed where it is.
    #[error("unknown element; allowed in {parent}: {allowed}")]
    Unknown {
        /// The parent.
        parent: String,
        /// The elements allowed in the parent, e.g. `<enable>, <port>, <http_notify>`.
        allowed: String,
    },
    /// An element given twice in the same parent.
    #[error("given twice (first at line {first_line})")]
    Duplicate {
        /// Where the first one is.
        first_line: usize,
    },
    /// Text inside an element that holds child elements.
    #[error("unexpected text {text:?}; this element holds only child elements")]
    UnexpectedText {
        /// The start of the text.
        text: String,
    },
    /// A child element inside an element that holds a value.
    #[error("unexpected child element <{child}>; this element holds a text value")]
    UnexpectedChild {
        /// The child found.
        child: String,
    },
    /// An attribute: settings are child elements, attributes are not supported.
    #[error("attribute `{attribute}` is not supported; settings are child elements")]
    Attribute {
        /// The attribute's name.
        attribute: String,
    },
    /// A boolean other than `true`, `false`, `1` or `0`.
    #[error("{value:?} is not a boolean (use true, false, 1 or 0)")]
    InvalidBool {
        /// The text found.
        value: String,
    },
    /// A number that is not a whole number.
    #[error("{value:?} is not a whole number (a valid {what} is {min}-{max})")]
    InvalidInteger {
        /// The text found.
        value: String,
        /// What the number is, e.g. `port`.
        what: &'static str,
        /// The smallest valid value.
        min: u64,
        /// The largest valid value.
        max: u64,
    },
    /// A whole number outside its range.
    #[error("{value:?} is not a valid {what} ({min}-{max})")]
    OutOfRange {
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
    #[error("{value:?} is not valid: {reason}")]
    InvalidValue {
        /// The value found (secrets are not repeated).
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A required element is absent.
    #[error("{what} is required here")]
    Missing {
        /// The element needed.
        what: String,
    },
    /// A `<log_level>` that is not trace, debug, info, warn or error.
    #[error("{value:?} is not a log level (use trace, debug, info, warn or error)")]
    InvalidLogLevel {
        /// The text found.
        value: String,
    },
    /// A `<notify_method>` that is not GET or POST.
    #[error("{value:?} is not a notify method (use GET or POST)")]
    InvalidMethod {
        /// The text found.
        value: String,
    },
    /// A hook URL that is not `http://host[:port]/...`.
    #[error("{value:?} is not a valid hook URL: {reason}")]
    InvalidHookUrl {
        /// The URL found (trimmed).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two enabled listeners of one transport on the same port (SRT is UDP and may share a
    /// number with a TCP protocol).
    #[error("port {port} is already used by {other}{}", other_line_suffix(.other_line))]
    PortConflict {
        /// The port.
        port: u16,
        /// The listener that has it first, e.g. `<rtmp>`.
        other: String,
        /// Where that listener's port is set; `None` when it is its default.
        other_line: Option<usize>,
    },
}

fn other_line_suffix(line: &Option<usize>) -> String {
    match line {
        Some(line) => format!(" (line {line})"),
        None => " (its default)".to_owned(),
    }
}

/// A config file that cannot be used: unreadable, or refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read (missing, unreadable, or not UTF-8).
    #[error("{}: cannot read the config file: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Its text is refused.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

impl LoadError {
    /// Where the error is; `None` when the file could not be read.
    pub fn location(&self) -> Option<&Location> {
        match self {
            LoadError::Io { .. } => None,
            LoadError::Invalid(e) => Some(&e.at),
        }
    }

    /// The 1-based line of the error; `None` when the file could not be read.
    pub fn line(&self) -> Option<usize> {
        self.location().map(|at| at.line)
    }
}

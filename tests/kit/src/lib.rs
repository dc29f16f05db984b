//! The test kit of streamgate's end-to-end tests, a library crate so that each test binary
//! uses what it needs and nothing else warns as unused:
//!
//! - [`hooks`]: a real HTTP business server ([`HookServer`]) that records every callback;
//! - [`assert`]: the assertions on hook fields every protocol's tests share;
//! - [`browser`]: headless Chromium on a page of `tests/browser`, and the page's server that
//!   records what the page reports;
//! - [`config`]: the XML config of one test's server ([`Config`]);
//! - [`inprocess`]: the server started inside the test on port 0, every bound address read
//!   from the handle ([`InProcess`]);
//! - [`process`]: the real `streamgate` binary ([`Server`]), for tests that need its log
//!   lines, signals or exit status, and child processes bounded by timeouts ([`Proc`]);
//! - [`ffmpeg`]: real `ffmpeg`/`ffprobe` publishers and players;
//! - [`hls`]: a proxy that validates every playlist HLS players are served, and a
//!   Low-Latency HLS viewer of the test's own;
//! - [`rtmp`]: raw sockets and a blocking RTMP client for exact looks at what the server sends;
//! - [`redis`]: a real `redis-server` of the test's own, for the cluster's tests;
//! - [`netns`]: a test network of network namespaces, a server's own address in each;
//! - [`load`]: running the load tool and reading its JSON report;
//! - [`util`]: temp dirs, polling, free ports, repository files.
//!
//! Every client and child process is bounded by a timeout and killed when it runs over or
//! when the test ends. Nothing here uses `unsafe` (the workspace forbids it): signals go
//! through `kill(1)`.

pub mod api;
pub mod assert;
pub mod browser;
pub mod codecs;
pub mod config;
pub mod ffmpeg;
pub mod hls;
pub mod hooks;
pub mod inprocess;
pub mod load;
pub mod netns;
pub mod process;
pub mod redis;
pub mod rtmp;
pub mod util;

pub use api::*;
pub use assert::*;
pub use codecs::*;
pub use config::*;
pub use ffmpeg::*;
pub use hooks::*;
pub use inprocess::*;
pub use process::*;
pub use redis::*;
pub use rtmp::*;
/// The HTTP client the kit uses, for tests that make their own requests.
pub use ureq;
pub use util::*;

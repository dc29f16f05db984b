//! streamgate: a live media server with HTTP Notify hooks, built on actix.
//!
//! Map of the crate:
//! - [`config`]: the XML config: types, defaults, validation with line-numbered errors.
//! - [`protocol`]: sans-IO protocol cores (bytes in, events and bytes out): RTMP on
//!   rml_rtmp with our own chunk layer, FLV tag bodies, URL and stream-name parsing.
//! - [`session`]: one actor per client connection, a thin IO shell over its protocol core.
//! - [`limits`]: `<max_connections>` and `<max_connections_per_ip>` of each protocol section.
//! - [`listener`]: accept loops spreading connections over the worker arbiters.
//! - [`logging`]: log lines on stderr with every control character escaped.
//! - [`cluster`]: several nodes as one server on Redis (`<cluster>`): the directory, publish
//!   claims, relay pulls, clientid blocks.
//! - [`server`]: starts the pool, the registry and the listeners; graceful shutdown.
//! - [`fuzzing`]: the bodies of the fuzz targets in `fuzz/`, replayed on stable by
//!   `tests/fuzz_corpus.rs`.
//!
//! The protocol-agnostic core (media model, `NotifyActor`, `StreamActor`, `Registry`) is the
//! `streamgate-actors` crate in `actors/`.

pub mod api;
pub mod cluster;
pub mod config;
pub mod fuzzing;
pub mod limits;
pub mod listener;
pub mod logging;
pub mod protocol;
pub mod server;
pub mod session;

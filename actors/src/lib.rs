//! `streamgate-actors`: the protocol-agnostic core of streamgate.
//!
//! What lives here, and what must not:
//! - [`media`]: the one frame model every protocol converts to and from ([`media::MediaFrame`],
//!   [`media::StreamKey`]). Payloads are shared [`bytes::Bytes`], never copied per player.
//! - [`names`]: the one percent-decoder, and the stream a hook's redirect names
//!   ([`names::StreamTarget`]).
//! - [`notify`]: the [`notify::NotifyActor`] that puts connect / play / publish / done to the
//!   operator's HTTP endpoint and answers [`notify::Decision`]s. It owns the wire format,
//!   timeouts and the fail-closed policy.
//! - [`outbox`]: durable `on_done`: an SQLite store in the data dir and its delivery with
//!   retries.
//! - [`stream`]: one [`stream::StreamActor`] per live stream: publisher, subscribers, codec
//!   headers, GOP cache, bounded fan-out, and the end-of-stream signal.
//! - [`registry`]: [`registry::Registry`] maps a [`media::StreamKey`] to its `StreamActor` and
//!   refuses a second publisher.
//! - [`session`]: the small vocabulary every protocol session speaks to the core
//!   (client ids, session info, the messages a session actor must handle).
//! - [`usage`]: what a session used and why it ended, as `on_done` reports it.
//!
//! This crate must not depend on any protocol crate (no RTMP, RTSP, SRT or FLV code): protocols
//! live in the `streamgate` crate and convert on their own side of the `StreamActor`.

pub mod media;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod outbox;
pub mod registry;
pub mod session;
pub mod stream;
pub mod usage;

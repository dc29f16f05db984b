//! Sans-IO protocol cores: bytes in, events and bytes out. No actix, no sockets, no clock reads.

pub mod codec;
pub mod flv;
pub mod http;
pub mod pacing;
pub mod rtmp;
pub mod rtsp;
pub mod srt;
pub mod ts;
pub mod url;

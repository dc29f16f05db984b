//! Sans-IO protocol cores: bytes in, events and bytes out. No actix, no sockets, no clock reads.

pub mod codec;
pub mod flv;
pub mod hls;
pub mod http;
pub mod pacing;
pub mod prefixed;
pub mod rtmp;
pub mod rtsp;
pub mod srt;
pub mod ts;
pub mod url;

/// Runs a protocol-core call with panics caught: `Err` carries the panic message. Protocol
/// cores parse bytes from untrusted clients (and rml_rtmp may panic on input it did not
/// expect), so a panic there must end only the connection that sent the bytes.
pub fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned())
    })
}

//! [`SrtSettings`]: what every SRT connection is set up with, from `<srt>`; the listener
//! and the sessions share one copy.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use srt_protocol::options::{ListenerOptions, PacketSize, Passphrase, SocketOptions};
use srt_protocol::settings::ConnInitSettings;

use crate::config::SrtConfig;
use crate::limits::ConnectionLimits;
use crate::protocol::ts::PACKET_SIZE;
use crate::session::output::PlayerLimits;

/// Bytes the SRT sender keeps for retransmission, per connection (srt-protocol's default of
/// 46592 bytes is 32 packets, less than one GOP replay).
const SEND_BUFFER_BYTES: u64 = 8192 * 1500;

/// What every SRT connection of the listener is set up with, from `<srt>`.
#[derive(Debug, Clone)]
pub struct SrtSettings {
    /// The UDP port.
    pub port: u16,
    /// `<latency_ms>`: offered as both the receive latency and the peer (send) latency.
    pub latency: Duration,
    /// `<passphrase>`: when set, every connection must be encrypted with it.
    pub passphrase: Option<Passphrase>,
    /// `<pbkeylen>`: the key length this server prefers, in bytes. A caller picks its key
    /// length in its handshake and is accepted with it (as libsrt listeners do).
    pub pbkeylen: u8,
    /// `<payload_size>`: the most TS bytes per SRT packet sent to players.
    pub payload_size: usize,
    /// The drop policy of players.
    pub limits: PlayerLimits,
    /// `<max_connections>` and `<max_connections_per_ip>`, checked before a handshake is
    /// handed to a session.
    pub connections: Arc<ConnectionLimits>,
}

impl SrtSettings {
    /// The settings of `<srt>`. Fails for a passphrase SRT cannot use (10 to 79 bytes), which
    /// the config refuses first.
    pub fn from_config(config: &SrtConfig) -> io::Result<SrtSettings> {
        let passphrase = match &config.options.passphrase {
            None => None,
            Some(p) => Some(Passphrase::try_from(p.clone()).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("<srt><passphrase>: {e:?}"),
                )
            })?),
        };
        Ok(SrtSettings {
            port: config.port,
            latency: config.options.latency,
            passphrase,
            pbkeylen: config.options.pbkeylen,
            payload_size: config.options.payload_size,
            limits: PlayerLimits {
                queue_bytes: config.queue_bytes,
                stall_timeout: config.stall_timeout,
            },
            connections: ConnectionLimits::new(
                "srt",
                config.max_connections,
                config.max_connections_per_ip,
            ),
        })
    }

    /// Bytes of TS per SRT payload sent: `<payload_size>` rounded down to whole TS packets.
    pub fn chunk_size(&self) -> usize {
        (self.payload_size / PACKET_SIZE).max(1) * PACKET_SIZE
    }

    /// srt-protocol's settings for new connections.
    pub fn connection_settings(&self, local: SocketAddr) -> io::Result<ConnInitSettings> {
        let mut options = SocketOptions::default();
        options.receiver.latency = self.latency;
        options.sender.peer_latency = self.latency;
        options.sender.max_payload_size = PacketSize(self.payload_size as u64);
        options.sender.buffer_size = srt_protocol::options::ByteCount(SEND_BUFFER_BYTES);
        let valid = ListenerOptions::with(local, options).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("SRT options: {e:?}"))
        })?;
        Ok(ConnInitSettings::from(valid.into_value().socket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_whole_ts_packets() {
        let mut config = crate::config::Config::default().srt;
        for (payload_size, chunk) in [(1316, 1316), (1456, 1316), (188, 188), (1000, 940)] {
            config.options.payload_size = payload_size;
            let settings = SrtSettings::from_config(&config).expect("valid");
            assert_eq!(settings.chunk_size(), chunk);
        }
    }
}

//! Buffers of items, each preceded by its length as a big-endian u16: how a frame's RTP packets
//! are kept once for all the players of a worker
//! ([`RtpPlay::packetize_runs`](crate::protocol::rtsp::session::RtpPlay::packetize_runs)) and
//! queued, behind each player's own heads, without being cut into a buffer per packet
//! ([`Packets`](crate::session::output::tcp::Packets)).

use std::ops::Range;

use bytes::BufMut;

/// Appends `item` behind its length. An item longer than `u16::MAX` bytes cannot be written
/// so: it is left out and `false` returned.
pub fn put(buf: &mut impl BufMut, item: &[u8]) -> bool {
    let Ok(len) = u16::try_from(item.len()) else {
        return false;
    };
    buf.put_u16(len);
    buf.put_slice(item);
    true
}

/// The items of `buf`, each as its range in `buf` (its length left out). A length that runs
/// past the end of `buf` ends the items.
pub fn items(buf: &[u8]) -> Items<'_> {
    Items { buf, at: 0 }
}

/// See [`items`].
#[derive(Clone)]
pub struct Items<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Iterator for Items<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let rest = self.buf.get(self.at..)?;
        let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
        if rest.len() < 2 + len {
            self.at = self.buf.len();
            return None;
        }
        let start = self.at + 2;
        self.at = start + len;
        Some(start..self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_back_as_they_were_put() {
        let mut buf = Vec::new();
        assert!(put(&mut buf, b"abc"));
        assert!(put(&mut buf, b""));
        assert!(put(&mut buf, &[7; 300]));
        assert!(!put(&mut buf, &vec![0; 70_000]), "too long for its length");
        let got: Vec<&[u8]> = items(&buf).map(|r| &buf[r]).collect();
        assert_eq!(got, [&b"abc"[..], b"", &[7; 300][..]]);
    }

    #[test]
    fn a_length_past_the_end_ends_the_items() {
        let mut buf = Vec::new();
        put(&mut buf, b"whole");
        buf.extend_from_slice(&[0, 9, 1, 2]);
        assert_eq!(items(&buf).count(), 1);
        assert_eq!(items(&[0]).count(), 0, "half a length");
        assert_eq!(items(&[]).count(), 0);
    }
}

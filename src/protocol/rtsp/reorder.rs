//! The reorder (jitter) buffer for RTP received over UDP: packets in by sequence number, out in
//! sequence order, a gap waited for a bounded number of packets and a bounded time, then
//! released as a loss.
//!
//! UDP delivers datagrams out of order (jitter, parallel paths); the depacketizers of [`rtp`]
//! take a packet with a higher sequence number than the next as a loss and drop the video to
//! the next keyframe, and one with a lower number as late. Without this buffer, a link with a
//! few milliseconds of jitter loses most keyframes of a publisher. Interleaved (TCP)
//! RTP is in order and needs none; RTCP neither (sender reports are not sequenced).
//!
//! Released packets keep their sequence numbers: a gap given up on reaches the depacketizer as
//! a jump in them, which resyncs at the next keyframe as it always did. Sans-IO: the caller
//! passes the arrival time of every packet and calls [`ReorderBuffer::release_expired`] at
//! [`ReorderBuffer::deadline`]; no clock is read here.
//!
//! [`rtp`]: super::rtp

use std::time::{Duration, Instant};

use super::rtp::RtpPacket;

/// Packets held at most while a gap is open: gortsplib's reorderer holds 64
/// (`rtpreorderer`, `defaultBufferSize`); FFmpeg's RTSP demuxer holds up to 500 over UDP
/// (`RTP_REORDER_QUEUE_DEFAULT_SIZE`). 64 covers 100 ms at about 5 Mbit/s of 1400-byte
/// packets; at higher rates the count, not the time, ends the wait, so a gap costs at most
/// 64 packets' worth of latency. A power of two: the slot of a packet is its sequence number
/// modulo this.
pub const MAX_HELD: usize = 64;

/// The longest a gap is waited for, from the arrival of the first packet after it: FFmpeg's
/// RTSP demuxer waits 100 ms over UDP (`DEFAULT_REORDERING_DELAY`, its `max_delay`), live555
/// 100 ms (`ReorderingPacketBuffer`'s default threshold). Reordering on real links is a few
/// milliseconds to a few tens (netem's `delay 30ms 10ms` reorders by up to 20 ms, its
/// `reorder` by up to the whole delay); a packet later than this is as good as lost for live
/// media.
pub const MAX_WAIT: Duration = Duration::from_millis(100);

/// One track's reorder buffer. Memory is bounded: [`MAX_HELD`] slots plus one packet held back
/// while a sequence restart is being confirmed.
#[derive(Debug)]
pub struct ReorderBuffer {
    /// `slots[seq % MAX_HELD]`: a packet after the gap at `next`, with its arrival time.
    slots: Box<[Option<(RtpPacket, Instant)>]>,
    /// The sequence number released next; `None` before the first packet.
    next: Option<u16>,
    /// Packets in `slots`.
    held: usize,
    /// A packet far behind `next`: the first of a restarted sequence if the next packet
    /// follows it, a stray one otherwise.
    restart: Option<RtpPacket>,
    /// Sequence numbers given up on.
    lost: u64,
    max_wait: Duration,
}

impl Default for ReorderBuffer {
    fn default() -> Self {
        Self::new(MAX_WAIT)
    }
}

impl ReorderBuffer {
    /// A buffer that waits for a gap at most `max_wait` (and [`MAX_HELD`] packets).
    pub fn new(max_wait: Duration) -> ReorderBuffer {
        ReorderBuffer {
            slots: (0..MAX_HELD).map(|_| None).collect(),
            next: None,
            held: 0,
            restart: None,
            lost: 0,
            max_wait,
        }
    }

    /// Takes a packet that arrived at `now`; appends to `out` the packets now in order (none,
    /// this one, or this one and those it unblocked). Duplicates and packets older than what
    /// was released are dropped. A gap open for longer than the wait is released first.
    pub fn push(&mut self, packet: RtpPacket, now: Instant, out: &mut Vec<RtpPacket>) {
        self.release_expired(now, out);
        let seq = packet.header.sequence;
        let Some(next) = self.next else {
            self.next = Some(seq.wrapping_add(1));
            out.push(packet);
            return;
        };
        let restart = self.restart.take();
        let ahead = seq.wrapping_sub(next) as i16;
        let window = MAX_HELD as i16;
        if ahead < 0 {
            if ahead < -window {
                if let Some(first) = restart.filter(|p| p.header.sequence.wrapping_add(1) == seq) {
                    // Two packets in a row far behind: the sender restarted its sequence.
                    self.skip_to(seq, out);
                    out.extend([first, packet]);
                    self.next = Some(seq.wrapping_add(1));
                } else {
                    self.restart = Some(packet);
                }
            }
            // Otherwise released already, or given up on: late, or a duplicate.
            return;
        }
        if ahead >= 2 * window {
            // Far ahead: a restart forward or a long loss; either way nothing held can be
            // waited for any more.
            self.skip_to(seq, out);
        } else if ahead >= window {
            // The window is full: what would fall out of it is given up on.
            self.skip_to(seq.wrapping_sub(MAX_HELD as u16 - 1), out);
        }
        let slot = self.slot(seq);
        if self.slots[slot].is_none() {
            self.slots[slot] = Some((packet, now));
            self.held += 1;
        }
        self.drain(out);
    }

    /// Releases, in order, what a gap open since `max_wait` or longer held back (the gap counts
    /// as lost), and what follows it up to the next gap that is still young.
    pub fn release_expired(&mut self, now: Instant, out: &mut Vec<RtpPacket>) {
        while let Some((seq, arrival)) = self.first_held() {
            if now.saturating_duration_since(arrival) < self.max_wait {
                return;
            }
            self.skip_to(seq, out);
            self.drain(out);
        }
    }

    /// When [`Self::release_expired`] has something to release: the wait of the open gap ends.
    /// `None` while no gap is open (nothing held).
    pub fn deadline(&self) -> Option<Instant> {
        self.first_held()
            .map(|(_, arrival)| arrival + self.max_wait)
    }

    /// Packets held back behind a gap.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Sequence numbers given up on (lost, or later than the wait).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    fn slot(&self, seq: u16) -> usize {
        usize::from(seq) % MAX_HELD
    }

    /// The first packet held after the gap, and since when the gap is open: the earliest
    /// arrival of a packet held (later arrivals never move it earlier, so neither does a
    /// deadline move earlier).
    fn first_held(&self) -> Option<(u16, Instant)> {
        let next = self.next?;
        if self.held == 0 {
            return None;
        }
        let mut first: Option<(u16, Instant)> = None;
        for i in 0..MAX_HELD as u16 {
            let seq = next.wrapping_add(i);
            if let Some((_, arrival)) = &self.slots[self.slot(seq)] {
                first = Some(match first {
                    None => (seq, *arrival),
                    Some((first, since)) => (first, since.min(*arrival)),
                });
            }
        }
        first
    }

    /// Gives up on every sequence number before `target`: releases, in order, the packets
    /// held before it; `target` is released next.
    fn skip_to(&mut self, target: u16, out: &mut Vec<RtpPacket>) {
        let Some(next) = self.next else {
            return;
        };
        let distance = target.wrapping_sub(next);
        // Held packets all lie within MAX_HELD of `next`: no need to look further.
        for i in 0..distance.min(MAX_HELD as u16) {
            let slot = self.slot(next.wrapping_add(i));
            if let Some((packet, _)) = self.slots[slot].take() {
                self.held -= 1;
                out.push(packet);
            } else {
                self.lost += 1;
            }
        }
        self.lost += u64::from(distance.saturating_sub(MAX_HELD as u16));
        self.next = Some(target);
    }

    /// Releases the packets held from `next` on, up to the first gap.
    fn drain(&mut self, out: &mut Vec<RtpPacket>) {
        let Some(mut next) = self.next else {
            return;
        };
        while self.held > 0 {
            let slot = self.slot(next);
            let Some((packet, _)) = self.slots[slot].take() else {
                break;
            };
            self.held -= 1;
            out.push(packet);
            next = next.wrapping_add(1);
        }
        self.next = Some(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::rtsp::rtp::RtpHeader;
    use bytes::Bytes;

    fn packet(seq: u16) -> RtpPacket {
        RtpPacket {
            header: RtpHeader {
                marker: false,
                payload_type: 96,
                sequence: seq,
                timestamp: 0,
                ssrc: 1,
            },
            payload: Bytes::from_static(b"payload"),
        }
    }

    /// Feeds `seqs` at `at` and returns the sequence numbers released.
    fn feed(buffer: &mut ReorderBuffer, seqs: &[u16], at: Instant) -> Vec<u16> {
        let mut out = Vec::new();
        for &seq in seqs {
            buffer.push(packet(seq), at, &mut out);
        }
        out.iter().map(|p| p.header.sequence).collect()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn in_order_packets_pass_at_once() {
        let mut b = ReorderBuffer::default();
        let t = Instant::now();
        assert_eq!(feed(&mut b, &[10, 11, 12, 13], t), [10, 11, 12, 13]);
        assert_eq!((b.held(), b.deadline(), b.lost()), (0, None, 0));
    }

    #[test]
    fn swapped_pairs_come_out_in_order() {
        let mut b = ReorderBuffer::default();
        let t = Instant::now();
        assert_eq!(feed(&mut b, &[1], t), [1]);
        assert_eq!(feed(&mut b, &[3], t), Vec::<u16>::new());
        assert_eq!(b.held(), 1);
        assert_eq!(b.deadline(), Some(t + MAX_WAIT));
        assert_eq!(feed(&mut b, &[2], t), [2, 3]);
        assert_eq!(feed(&mut b, &[5, 4, 7, 6, 8], t), [4, 5, 6, 7, 8]);
        assert_eq!((b.held(), b.deadline(), b.lost()), (0, None, 0));
    }

    #[test]
    fn a_missing_packet_is_given_up_on_after_the_wait() {
        let mut b = ReorderBuffer::default();
        let t = Instant::now();
        assert_eq!(feed(&mut b, &[1], t), [1]);
        // 2 is lost; 3 opens the gap, 4 arrives later.
        assert_eq!(feed(&mut b, &[3], t), Vec::<u16>::new());
        assert_eq!(feed(&mut b, &[4], t + ms(60)), Vec::<u16>::new());
        let mut out = Vec::new();
        b.release_expired(t + ms(99), &mut out);
        assert!(out.is_empty(), "not before the wait ends");
        // The wait counts from the first packet after the gap.
        assert_eq!(b.deadline(), Some(t + ms(100)));
        b.release_expired(t + ms(100), &mut out);
        let seqs: Vec<u16> = out.iter().map(|p| p.header.sequence).collect();
        assert_eq!(seqs, [3, 4]);
        assert_eq!((b.held(), b.lost()), (0, 1));
        // The lost packet arriving after all is late.
        assert_eq!(feed(&mut b, &[2], t + ms(101)), Vec::<u16>::new());
        assert_eq!(feed(&mut b, &[5], t + ms(102)), [5]);
    }

    #[test]
    fn a_gap_waits_from_the_first_packet_after_it_to_arrive() {
        let mut b = ReorderBuffer::default();
        let t = Instant::now();
        feed(&mut b, &[1, 5], t);
        // 3 arrives later but is nearer the gap: the wait still counts from 5's arrival.
        assert!(feed(&mut b, &[3], t + ms(50)).is_empty());
        assert_eq!(b.deadline(), Some(t + ms(100)));
        let mut out = Vec::new();
        b.release_expired(t + ms(100), &mut out);
        let seqs: Vec<u16> = out.iter().map(|p| p.header.sequence).collect();
        assert_eq!(seqs, [3, 5], "2 and 4 given up on");
        assert_eq!(b.lost(), 2);
    }

    #[test]
    fn the_next_packet_after_the_wait_releases_an_expired_gap() {
        let mut b = ReorderBuffer::default();
        let t = Instant::now();
        feed(&mut b, &[1, 3], t);
        // No timer fired: the next arrival past the deadline releases the gap first.
        assert_eq!(feed(&mut b, &[4], t + ms(150)), [3, 4]);
    }

    #[test]
    fn a_second_gap_waits_from_its_own_first_packet() {
        let mut b = ReorderBuffer::default();
        let t = Instant::now();
        feed(&mut b, &[1, 3], t);
        assert_eq!(feed(&mut b, &[5], t + ms(80)), Vec::<u16>::new());
        let mut out = Vec::new();
        b.release_expired(t + ms(100), &mut out);
        assert_eq!(out.len(), 1, "3 released, 5 waits for 4: {out:?}");
        assert_eq!(b.deadline(), Some(t + ms(180)));
        b.release_expired(t + ms(180), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(b.lost(), 2);
    }

    #[test]
    fn a_missing_packet_is_given_up_on_after_max_held_packets() {
        let mut b = ReorderBuffer::default();
        let t = Instant::now();
        feed(&mut b, &[0], t);
        // 1 is lost; 2..=64 fill the window (63 held), all in the same instant.
        let held: Vec<u16> = (2..=64).collect();
        assert!(feed(&mut b, &held, t).is_empty());
        assert_eq!(b.held(), MAX_HELD - 1);
        // One more cannot be held while waiting for 1: 1 is given up on.
        let out = feed(&mut b, &[65], t);
        assert_eq!(out, (2..=65).collect::<Vec<u16>>());
        assert_eq!((b.held(), b.lost()), (0, 1));
    }

    #[test]
    fn duplicates_are_dropped() {
        let mut b = ReorderBuffer::default();
        let t = Instant::now();
        assert_eq!(feed(&mut b, &[1, 1, 3, 3, 2, 2, 3, 4, 4], t), [1, 2, 3, 4]);
        assert_eq!((b.held(), b.lost()), (0, 0));
    }

    #[test]
    fn sequence_numbers_wrap_around() {
        let mut b = ReorderBuffer::default();
        let t = Instant::now();
        assert_eq!(feed(&mut b, &[65534], t), [65534]);
        assert_eq!(feed(&mut b, &[0, 65535, 2, 1], t), [65535, 0, 1, 2]);
        // Late across the wrap: 65533 is behind 3.
        assert_eq!(feed(&mut b, &[65533, 3], t), [3]);
        // A gap across the wrap, given up on.
        let mut b = ReorderBuffer::default();
        feed(&mut b, &[65534], t);
        assert!(feed(&mut b, &[1], t).is_empty());
        assert_eq!(b.deadline(), Some(t + MAX_WAIT));
        let mut out = Vec::new();
        b.release_expired(t + MAX_WAIT, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(b.lost(), 2);
    }

    #[test]
    fn a_sequence_restart_is_followed() {
        let t = Instant::now();
        // Backwards: confirmed by the packet after the first far-behind one.
        let mut b = ReorderBuffer::default();
        feed(&mut b, &[30_000, 30_002], t);
        assert!(
            feed(&mut b, &[100], t).is_empty(),
            "one stray packet is not a restart"
        );
        assert_eq!(
            feed(&mut b, &[101, 102, 104, 103], t),
            [30_002, 100, 101, 102, 103, 104]
        );
        assert_eq!(b.held(), 0);
        // A stray packet far behind alone is dropped.
        assert_eq!(feed(&mut b, &[7, 105, 106], t), [105, 106]);
        // Forwards, far ahead: released at once, with what was held before it.
        let mut b = ReorderBuffer::default();
        feed(&mut b, &[5, 7], t);
        assert_eq!(feed(&mut b, &[20_000, 20_001], t), [7, 20_000, 20_001]);
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn memory_is_bounded() {
        let mut b = ReorderBuffer::default();
        let t = Instant::now();
        feed(&mut b, &[0], t);
        let mut out = Vec::new();
        // Every other packet lost, in an arbitrary order, never a timer: held stays bounded
        // and what is released is in order.
        let mut seq: u16 = 1;
        let mut released = Vec::new();
        for i in 0..100_000u32 {
            seq = seq.wrapping_add(if i % 7 == 3 { 3 } else { 2 });
            out.clear();
            b.push(packet(seq), t, &mut out);
            assert!(b.held() < MAX_HELD);
            assert_eq!(b.slots.len(), MAX_HELD);
            released.extend(out.iter().map(|p| p.header.sequence));
        }
        assert!(released.len() > 99_000);
        for pair in released.windows(2) {
            assert!((pair[1].wrapping_sub(pair[0]) as i16) > 0, "{pair:?}");
        }
    }
}

//! The per-packet cost of the RTP reorder buffer (`src/protocol/rtsp/reorder.rs`), in order and
//! with every tenth pair of packets swapped: `cargo bench --bench reorder`
//! (docs/benchmarks.md, "RTSP over UDP: the reorder buffer"). Prints nanoseconds per packet;
//! asserts nothing about time.

use std::time::Instant;

use bytes::Bytes;
use streamgate::protocol::rtsp::reorder::ReorderBuffer;
use streamgate::protocol::rtsp::rtp::RtpPacket;

const PACKETS: u32 = 10_000_000;

/// A minimal RTP packet with sequence number `seq`.
fn packet(seq: u16) -> RtpPacket {
    let mut data = vec![0x80, 96];
    data.extend_from_slice(&seq.to_be_bytes());
    data.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
    data.extend_from_slice(b"payload");
    RtpPacket::parse(Bytes::from(data)).expect("a valid RTP packet")
}

fn main() {
    let packets: Vec<RtpPacket> = (0..=u16::MAX).map(packet).collect();
    let now = Instant::now();
    for (name, swap_every) in [("in order", 0), ("every 10th pair swapped", 10)] {
        let mut buffer = ReorderBuffer::default();
        let mut out = Vec::with_capacity(4);
        let started = Instant::now();
        for i in 0..PACKETS {
            let mut seq = i as u16;
            if swap_every > 0 && i % swap_every == 0 {
                seq = seq.wrapping_add(1);
            } else if swap_every > 0 && i % swap_every == 1 {
                seq = seq.wrapping_sub(1);
            }
            out.clear();
            buffer.push(packets[usize::from(seq)].clone(), now, &mut out);
            std::hint::black_box(&out);
        }
        let per = started.elapsed().as_nanos() as f64 / f64::from(PACKETS);
        println!("{name}: {per:.1} ns per packet");
    }
}

//! Tests of the RTP payload formats: round trips through our packetizers and depacketizers,
//! loss and reordering, clocks and wrap, RTCP, and FFmpeg's own packets (a captured publish).

use super::*;
use crate::protocol::rtsp::message::{decode, Message};
use crate::protocol::rtsp::sdp;

// x264's SPS and PPS for 320x240 yuv420p (High, level 1.3), as FFmpeg announced them.
const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

fn avc_record() -> Bytes {
    AvcConfig::from_parameter_sets(vec![Bytes::from_static(SPS)], vec![Bytes::from_static(PPS)])
        .expect("valid sets")
        .to_record()
}

/// A NAL unit of `len` bytes with this header byte and a recognisable body.
/// The second byte has its top bit set, as a slice's does when `first_mb_in_slice` is 0.
fn nal(header: u8, len: usize, seed: u8) -> Vec<u8> {
    let mut v = vec![header];
    v.extend((1..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    if let Some(b) = v.get_mut(1) {
        *b |= 0x80;
    }
    v
}

pub(crate) fn video_frame(pts: i64, keyframe: bool, nals: &[Vec<u8>]) -> MediaFrame {
    let refs: Vec<&[u8]> = nals.iter().map(|n| &n[..]).collect();
    MediaFrame {
        track: Track::Video,
        codec: Codec::H264,
        kind: FrameKind::Media,
        dts: pts,
        pts,
        keyframe,
        payload: to_avcc(&refs),
    }
}

/// A GOP: an IDR of `idr_len` bytes (with an SEI) and `p_frames` small P-frames, 25 fps.
fn gop(start: i64, idr_len: usize, p_frames: usize) -> Vec<MediaFrame> {
    let mut frames = vec![video_frame(
        start,
        true,
        &[nal(0x06, 40, 1), nal(0x65, idr_len, 2)],
    )];
    for k in 1..=p_frames {
        frames.push(video_frame(
            start + 40_000 * k as i64,
            false,
            &[nal(0x41, 300 + 37 * k, k as u8)],
        ));
    }
    frames
}

fn packets(packetizer: &mut VideoPacketizer, frames: &[MediaFrame]) -> Vec<Bytes> {
    let mut out = Vec::new();
    for f in frames {
        packetizer.packetize(f, &mut out).expect("packetize");
    }
    out
}

fn depacketize(d: &mut VideoDepacketizer, packets: &[Bytes]) -> Vec<MediaFrame> {
    let mut frames = Vec::new();
    for p in packets {
        let packet = RtpPacket::parse(p.clone()).expect("own packet");
        d.push(&packet).expect("own payload");
        while let Some(f) = d.pop() {
            frames.push(f);
        }
    }
    frames
}

#[test]
fn header_round_trip_with_csrc_extension_and_padding() {
    let header = RtpHeader {
        marker: true,
        payload_type: 96,
        sequence: 65535,
        timestamp: 0xdead_beef,
        ssrc: 7,
    };
    let packet = RtpPacket {
        header,
        payload: Bytes::from_static(b"abc"),
    };
    let wire = packet.to_bytes();
    assert_eq!(&wire[..2], &[0x80, 0x80 | 96]);
    assert_eq!(RtpPacket::parse(wire).expect("valid"), packet);
    // One CSRC, a one-word extension and 2 bytes of padding around the same payload.
    let mut wire = vec![0xb1, 96, 0xff, 0xff, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 7];
    wire.extend_from_slice(&[0, 0, 0, 9]); // CSRC
    wire.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension
    wire.extend_from_slice(b"abc");
    wire.extend_from_slice(&[0, 2]);
    let parsed = RtpPacket::parse(Bytes::from(wire)).expect("valid");
    assert_eq!(&parsed.payload[..], b"abc");
    assert!(!parsed.header.marker);
    assert_eq!(
        RtpPacket::parse(Bytes::from_static(&[0x80, 96, 0])),
        Err(RtpError::Truncated("RTP packet"))
    );
    assert_eq!(
        RtpPacket::parse(Bytes::from_static(&[0x40; 12])),
        Err(RtpError::Version(1))
    );
    assert!(RtpPacket::parse(Bytes::from_static(&[
        0xa0, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40
    ]))
    .is_err());
}

#[test]
fn clocks_wrap_both_ways() {
    let clock = RtpClock::new(90_000, u32::MAX - 1799);
    assert_eq!(clock.rtp_time(0), u32::MAX - 1799);
    assert_eq!(clock.rtp_time(20_000), 0); // 1800 ticks later: wrapped
    assert_eq!(clock.rtp_time(40_000), 1800);
    assert_eq!(clock.rtp_time(-20_000), u32::MAX - 3599);
    // Timelines whose ticks do not fit 64 bits map as the same arithmetic in 128 bits would.
    for us in [
        i64::MAX,
        i64::MIN,
        i64::MAX / 90_000 + 1,
        -(i64::MAX / 90_000) - 7,
    ] {
        let ticks = (i128::from(us) * 90_000).div_euclid(1_000_000);
        let wide = (u32::MAX - 1799).wrapping_add(ticks.rem_euclid(1 << 32) as u32);
        assert_eq!(clock.rtp_time(us), wide, "{us}");
    }
    let mut timeline = RtpTimeline::new(90_000);
    let mut last = -1;
    for k in 0..10_000i64 {
        let us = k * 40_000; // the offset makes the RTP timestamps wrap after 20 ms
        let t = timeline.micros(clock.rtp_time(us));
        assert_eq!(t, us);
        assert!(t > last);
        last = t;
    }
    // 32-bit wrap at 90 kHz is 13.25 hours: step in large jumps over several wraps.
    let mut timeline = RtpTimeline::new(90_000);
    let step = 1u32 << 30;
    let mut ts = 5u32;
    for k in 0..20i64 {
        assert_eq!(timeline.extend(ts), k * i64::from(step));
        ts = ts.wrapping_add(step);
    }
    // Steps back (B-frames) are negative.
    let mut timeline = RtpTimeline::new(48_000);
    assert_eq!(timeline.micros(100), 0);
    assert_eq!(timeline.micros(100 + 48_000), 1_000_000);
    assert_eq!(timeline.micros(100 + 24_000), 500_000);
    assert_eq!(timeline.micros(100u32.wrapping_sub(48_000)), -1_000_000);
}

#[test]
fn h264_round_trip_with_fu_a_and_stap_a() {
    let record = avc_record();
    let mut packetizer = VideoPacketizer::h264(96, 0x1234, 65530, RtpClock::new(90_000, 1000));
    packetizer.set_config(&record).expect("config");
    let frames: Vec<MediaFrame> = gop(0, 5000, 5)
        .into_iter()
        .chain(gop(240_000, 3000, 3))
        .collect();
    let out = packets(&mut packetizer, &frames);
    // The first IDR: SPS, PPS and the SEI aggregated in one STAP-A, then the 5000-byte IDR in
    // four FU-As, the marker on the last only.
    let first: Vec<RtpPacket> = out[..5]
        .iter()
        .map(|p| RtpPacket::parse(p.clone()).expect("valid"))
        .collect();
    assert_eq!(first[0].payload[0] & 0x1f, 24);
    assert_eq!(&first[0].payload[3..3 + SPS.len()], SPS);
    for (k, p) in first[1..].iter().enumerate() {
        assert_eq!(p.payload[0] & 0x1f, 28);
        assert_eq!(p.payload[1] & 0x1f, 5);
        assert_eq!(p.payload[1] & 0x80 != 0, k == 0, "start bit of FU {k}");
        assert_eq!(p.payload[1] & 0x40 != 0, k == 3, "end bit of FU {k}");
        assert_eq!(p.header.marker, k == 3);
        assert!(p.payload.len() <= MAX_PAYLOAD);
        assert_eq!(p.header.timestamp, 1000);
    }
    // Sequence numbers run on across the 16-bit wrap.
    let seqs: Vec<u16> = out
        .iter()
        .map(|p| RtpPacket::parse(p.clone()).expect("valid").header.sequence)
        .collect();
    assert_eq!(seqs[..7], [65530, 65531, 65532, 65533, 65534, 65535, 0]);
    assert_eq!(
        packetizer.stats().next_sequence,
        65530u16.wrapping_add(out.len() as u16)
    );
    assert_eq!(packetizer.stats().packets, out.len() as u32);

    let mut d = VideoDepacketizer::h264(Some(record.clone()));
    let got = depacketize(&mut d, &out);
    // Same config as the description: no config frame; SPS and PPS are not in the payload.
    assert_eq!(got, frames);
    assert_eq!(d.config(), Some(&record));
}

#[test]
fn h264_in_band_parameter_sets_become_config() {
    let record = avc_record();
    let mut packetizer = VideoPacketizer::h264(96, 1, 0, RtpClock::new(90_000, 0));
    packetizer.set_config(&record).expect("config");
    let frames = gop(0, 2000, 2);
    let out = packets(&mut packetizer, &frames);
    // No description config: the first keyframe's in-band SPS/PPS make one.
    let mut d = VideoDepacketizer::h264(None);
    let got = depacketize(&mut d, &out);
    assert_eq!(got[0].kind, FrameKind::Config);
    assert_eq!(got[0].payload, record);
    assert_eq!(&got[1..], &frames[..]);
    // A new SPS mid-stream: a new config frame before the keyframe that carries it.
    let sps2: Vec<u8> = SPS
        .iter()
        .enumerate()
        .map(|(i, b)| if i == 3 { 0x1f } else { *b })
        .collect();
    let idr = video_frame(
        200_000,
        true,
        &[sps2.clone(), PPS.to_vec(), nal(0x65, 100, 9)],
    );
    let got = depacketize(&mut d, &packets(&mut packetizer, &[idr]));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].kind, FrameKind::Config);
    let cfg = AvcConfig::parse(&got[0].payload).expect("record");
    assert_eq!((cfg.level_idc, &cfg.sps[0][..]), (0x1f, &sps2[..]));
    assert_eq!(got[1].payload, to_avcc(&[&nal(0x65, 100, 9)]));
    assert!(got[1].keyframe);
}

#[test]
fn loss_drops_until_the_next_keyframe() {
    let record = avc_record();
    let mut packetizer = VideoPacketizer::h264(96, 1, 100, RtpClock::new(90_000, 77));
    packetizer.set_config(&record).expect("config");
    // GOPs without SEI: a keyframe whose STAP-A of SPS and PPS is lost is still whole.
    let plain_gop = |start: i64, p_frames: usize| {
        let mut frames = gop(start, 4000, p_frames);
        frames[0] = video_frame(start, true, &[nal(0x65, 4000, 2)]);
        frames
    };
    let frames: Vec<MediaFrame> = plain_gop(0, 4)
        .into_iter()
        .chain(plain_gop(200_000, 2))
        .collect();
    let second_gop = packets(&mut packetizer.clone(), &frames[..5]).len();
    let all = packets(&mut packetizer, &frames);
    // Lose each packet in turn: every frame out must be one of the frames in, in order, and
    // the second GOP comes through whole unless its keyframe lost a slice. (A loss before the
    // first packet a receiver gets cannot be seen in sequence numbers, so the first packet
    // always arrives.)
    for lost in 1..all.len() {
        let mut d = VideoDepacketizer::h264(Some(record.clone()));
        let kept: Vec<Bytes> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != lost)
            .map(|(_, p)| p.clone())
            .collect();
        let got = depacketize(&mut d, &kept);
        let mut cursor = 0;
        for f in &got {
            let pos = frames[cursor..]
                .iter()
                .position(|g| g == f)
                .unwrap_or_else(|| panic!("lost {lost}: frame at {} is corrupted", f.pts));
            cursor += pos + 1;
        }
        if lost <= second_gop {
            assert!(
                got.ends_with(&frames[5..]),
                "lost {lost}: second GOP missing"
            );
        }
        // Nothing after the loss until a keyframe.
        let lost_pts = i64::from(
            RtpPacket::parse(all[lost].clone())
                .expect("valid")
                .header
                .timestamp
                .wrapping_sub(77),
        ) * 1_000_000
            / 90_000;
        let after: Vec<&MediaFrame> = got.iter().filter(|f| f.pts >= lost_pts).collect();
        if let Some(first) = after.first() {
            assert!(first.keyframe, "lost {lost}: resumed at a non-keyframe");
        }
    }
    // Two packets swapped: the late one is ignored, the frame dropped, the next GOP whole.
    let mut swapped = all.clone();
    swapped.swap(7, 8);
    let mut d = VideoDepacketizer::h264(Some(record));
    let got = depacketize(&mut d, &swapped);
    assert!(got.ends_with(&frames[5..]));
    assert!(got.len() < frames.len());
    for f in &got {
        assert!(frames.contains(f));
    }
}

#[test]
fn broken_payloads_are_dropped_not_passed_on() {
    let mut d = VideoDepacketizer::h264(Some(avc_record()));
    let packet = |seq: u16, marker: bool, payload: &'static [u8]| RtpPacket {
        header: RtpHeader {
            marker,
            payload_type: 96,
            sequence: seq,
            timestamp: 3000,
            ssrc: 1,
        },
        payload: Bytes::from_static(payload),
    };
    // STAP-A whose size overruns; STAP-B; FU-A continuation without start.
    assert_eq!(
        d.push(&packet(1, true, &[24, 0, 9, 0x65, 1])),
        Err(RtpError::Malformed("aggregation packet"))
    );
    assert!(matches!(
        d.push(&packet(2, true, &[25, 0, 0])),
        Err(RtpError::Unsupported { nal_type: 25, .. })
    ));
    assert_eq!(d.push(&packet(3, true, &[28, 0x45, 1, 2])), Ok(()));
    assert_eq!(d.pop(), None);
    // A clean IDR after that comes through.
    d.push(&packet(4, true, &[0x65, 1, 2, 3])).expect("valid");
    let f = d.pop().expect("frame");
    assert!(f.keyframe);
    assert_eq!(&f.payload[..], &[0, 0, 0, 4, 0x65, 1, 2, 3]);
}

#[test]
fn reordered_presentation_times_get_rising_decode_times() {
    // Decode order I0 P3 B1 B2 P6 B4 B5 P9 B7 B8 ... (x264 with 2 B-frames), 40 ms frames.
    let order = [0i64, 3, 1, 2, 6, 4, 5, 9, 7, 8, 12, 10, 11, 15, 13, 14];
    let mut packetizer = VideoPacketizer::h264(96, 1, 0, RtpClock::new(90_000, 5));
    packetizer.set_config(&avc_record()).expect("config");
    let frames: Vec<MediaFrame> = order
        .iter()
        .map(|&k| {
            video_frame(
                k * 40_000,
                k == 0,
                &[nal(if k == 0 { 0x65 } else { 0x41 }, 50, k as u8)],
            )
        })
        .collect();
    let mut d = VideoDepacketizer::h264(Some(avc_record()));
    let got = depacketize(&mut d, &packets(&mut packetizer, &frames));
    // Held back by at most MAX_REORDER frames, in decode order, same payloads.
    assert!(got.len() >= frames.len() - MAX_REORDER);
    for (g, f) in got.iter().zip(&frames) {
        assert_eq!(g.payload, f.payload);
    }
    for w in got.windows(2) {
        assert!(
            w[1].dts > w[0].dts,
            "decode times rise: {:?}",
            got.iter().map(|f| f.dts).collect::<Vec<_>>()
        );
    }
    // After the first frames (before the reordering was seen) pts is the sender's and
    // never before dts.
    for (g, f) in got.iter().zip(&frames).skip(4) {
        assert_eq!(g.pts, f.pts);
        assert!(g.dts <= g.pts);
    }
    // Without B-frames nothing is held back and dts == pts.
    let frames = gop(0, 500, 6);
    let mut d = VideoDepacketizer::h264(Some(avc_record()));
    let got = depacketize(&mut d, &packets(&mut packetizer, &frames));
    assert_eq!(got.len(), frames.len());
    assert!(got.iter().all(|f| f.dts == f.pts));
}

#[test]
fn h265_round_trip_with_fu_and_ap() {
    let vps = nal(32 << 1, 20, 1);
    let sps = nal(33 << 1, 40, 2);
    let pps = nal(34 << 1, 8, 3);
    let with_tid = |mut n: Vec<u8>| {
        n.insert(1, 1);
        n
    };
    let (vps, sps, pps) = (with_tid(vps), with_tid(sps), with_tid(pps));
    let idr = with_tid(nal(19 << 1, 4000, 4)); // IDR_W_RADL
    let trail = with_tid(nal(1 << 1, 600, 5)); // TRAIL_R
    let frame = |pts, key, nals: &[Vec<u8>]| MediaFrame {
        codec: Codec::H265,
        ..video_frame(pts, key, nals)
    };
    // hvcC with the three sets.
    let mut record = vec![1u8; 22];
    record[21] = 0x0f; // lengthSizeMinusOne = 3
    record.push(3);
    for set in [&vps, &sps, &pps] {
        record.push((set[0] >> 1) & 0x3f);
        record.extend_from_slice(&1u16.to_be_bytes());
        record.extend_from_slice(&(set.len() as u16).to_be_bytes());
        record.extend_from_slice(set);
    }
    let mut p = VideoPacketizer::h265(96, 9, 0, RtpClock::new(90_000, 0));
    p.set_config(&record).expect("hvcC");
    let frames = vec![
        frame(0, true, std::slice::from_ref(&idr)),
        frame(40_000, false, std::slice::from_ref(&trail)),
    ];
    let out = packets(&mut p, &frames);
    let first = RtpPacket::parse(out[0].clone()).expect("valid");
    assert_eq!(
        (first.payload[0] >> 1) & 0x3f,
        48,
        "VPS, SPS, PPS in one AP"
    );
    let second = RtpPacket::parse(out[1].clone()).expect("valid");
    assert_eq!((second.payload[0] >> 1) & 0x3f, 49);
    assert_eq!(second.payload[2], 0x80 | 19);
    let mut d = VideoDepacketizer::h265(vec![]);
    let got = depacketize(&mut d, &out);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].payload, to_avcc(&[&vps, &sps, &pps, &idr]));
    assert!(got[0].keyframe);
    assert_eq!(got[1], frames[1]);
    // Without in-band sets, the description's go before the keyframe.
    let mut p = VideoPacketizer::h265(96, 9, 0, RtpClock::new(90_000, 0));
    let out = packets(&mut p, &frames);
    let mut d = VideoDepacketizer::h265(vec![Bytes::from(vps.clone())]);
    let got = depacketize(&mut d, &out);
    assert_eq!(got[0].payload, to_avcc(&[&vps, &idr]));
}

fn aac_frames(count: usize, sizes: impl Fn(usize) -> usize) -> Vec<MediaFrame> {
    (0..count)
        .map(|k| MediaFrame {
            track: Track::Audio,
            codec: Codec::Aac,
            kind: FrameKind::Media,
            // 1024 samples at 48 kHz = 21333.33 µs; exact at multiples of 3 frames.
            dts: (k as i64 * 1024 * 1_000_000) / 48_000,
            pts: (k as i64 * 1024 * 1_000_000) / 48_000,
            keyframe: true,
            payload: Bytes::from(nal(0x21, sizes(k), k as u8)),
        })
        .collect()
}

fn aac_depacketize(d: &mut AacDepacketizer, packets: &[Bytes]) -> Vec<MediaFrame> {
    let mut out = Vec::new();
    for p in packets {
        let _ = d.push(&RtpPacket::parse(p.clone()).expect("own packet"));
        while let Some(f) = d.pop() {
            out.push(f);
        }
    }
    out
}

#[test]
fn aac_several_aus_per_packet_and_fragments() {
    let frames = aac_frames(9, |k| if k == 4 { 3000 } else { 200 + k });
    let mut p = AacPacketizer::new(97, 5, 10, RtpClock::new(48_000, 4_000_000_000));
    let mut out = Vec::new();
    // Four AUs in one call: one packet with four AU headers.
    let aus: Vec<&[u8]> = frames[..4].iter().map(|f| &f.payload[..]).collect();
    p.packetize_aus(0, &aus, &mut out).expect("packetize");
    assert_eq!(out.len(), 1);
    let first = RtpPacket::parse(out[0].clone()).expect("valid");
    assert_eq!(&first.payload[..2], &[0, 64]);
    assert_eq!(&first.payload[2..4], &au_header(200));
    assert!(first.header.marker);
    // The 3000-byte AU in three fragments, the marker on the last.
    p.packetize(&frames[4], &mut out).expect("packetize");
    assert_eq!(out.len(), 4);
    let markers: Vec<bool> = out[1..]
        .iter()
        .map(|p| RtpPacket::parse(p.clone()).expect("valid").header.marker)
        .collect();
    assert_eq!(markers, [false, false, true]);
    for f in &frames[5..] {
        p.packetize(f, &mut out).expect("packetize");
    }
    let mut d = AacDepacketizer::new(48_000, AuHeaderLayout::AAC_HBR);
    let got = aac_depacketize(&mut d, &out);
    assert_eq!(got.len(), frames.len());
    for (g, f) in got.iter().zip(&frames) {
        assert_eq!(g.payload, f.payload);
        assert!((g.pts - f.pts).abs() <= 21, "{} vs {}", g.pts, f.pts);
    }
    // Lose the middle fragment: that AU is dropped, the rest come through whole.
    let mut lossy = out.clone();
    lossy.remove(2);
    let mut d = AacDepacketizer::new(48_000, AuHeaderLayout::AAC_HBR);
    let got = aac_depacketize(&mut d, &lossy);
    assert_eq!(got.len(), frames.len() - 1);
    assert!(got.iter().all(|g| g.payload.len() != 3000));
    // Lose the first fragment: the two remaining do not make an AU.
    let mut lossy = out.clone();
    lossy.remove(1);
    let mut d = AacDepacketizer::new(48_000, AuHeaderLayout::AAC_HBR);
    let got = aac_depacketize(&mut d, &lossy);
    assert_eq!(got.len(), frames.len() - 1);
    assert!(p.packetize_aus(0, &[&[0; 9000]], &mut out).is_err());
}

#[test]
fn aac_layout_from_fmtp_and_bad_headers() {
    let tracks = sdp::parse(
        "v=0\nm=audio 0 RTP/AVP 97\na=rtpmap:97 MPEG4-GENERIC/16000/1\n\
         a=fmtp:97 mode=AAC-lbr;sizelength=6;indexlength=2;indexdeltalength=2;config=1408\n",
    )
    .expect("valid");
    let layout = AuHeaderLayout::from_fmtp(&tracks[0]).expect("layout");
    assert_eq!((layout.size_length, layout.index_length), (6, 2));
    // Two 8-bit AU headers (6-bit size, 2-bit index): sizes 3 and 2.
    let mut d = AacDepacketizer::new(16_000, layout);
    let packet = RtpPacket {
        header: RtpHeader {
            marker: true,
            payload_type: 97,
            sequence: 1,
            timestamp: 16_000,
            ssrc: 1,
        },
        payload: Bytes::from_static(&[0, 16, 3 << 2, 2 << 2, 1, 2, 3, 4, 5]),
    };
    d.push(&packet).expect("valid");
    let a = d.pop().expect("first AU");
    let b = d.pop().expect("second AU");
    assert_eq!((&a.payload[..], a.pts), (&[1u8, 2, 3][..], 0));
    assert_eq!((&b.payload[..], b.pts), (&[4u8, 5][..], 64_000));
    // Sizes past the data, no headers at all.
    let bad = RtpPacket {
        payload: Bytes::from_static(&[0, 16, 9 << 2, 2 << 2, 1, 2]),
        ..packet.clone()
    };
    assert!(d
        .push(&RtpPacket {
            header: RtpHeader {
                sequence: 2,
                ..bad.header
            },
            ..bad
        })
        .is_err());
    let empty = RtpPacket {
        header: RtpHeader {
            sequence: 3,
            ..packet.header
        },
        payload: Bytes::from_static(&[0, 0]),
    };
    assert!(d.push(&empty).is_err());
    assert_eq!(d.pop(), None);
}

#[test]
fn rtcp_sender_report_and_parse() {
    let ntp = ntp_timestamp(1_700_000_000_500_000);
    assert_eq!(ntp >> 32, 1_700_000_000 + 2_208_988_800);
    assert_eq!(ntp & 0xffff_ffff, 1 << 31);
    let sr = sender_report(0xabcd, ntp, 123_456, 10, 2000, "streamgate");
    assert_eq!(sr.len() % 4, 0);
    assert!(is_rtcp(&sr));
    let parsed = parse_rtcp(&sr).expect("own report");
    assert_eq!(
        parsed,
        vec![
            RtcpPacket::SenderReport {
                ssrc: 0xabcd,
                ntp,
                rtp_time: 123_456,
                packets: 10,
                octets: 2000
            },
            RtcpPacket::Other { packet_type: 202 }
        ]
    );
    // FFmpeg's receiver report with one block, and a BYE.
    let rr = [
        0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0x81, 203, 0, 1, 0, 0, 0, 1,
    ];
    assert_eq!(
        parse_rtcp(&rr).expect("valid"),
        vec![
            RtcpPacket::ReceiverReport { ssrc: 1 },
            RtcpPacket::Bye { ssrcs: vec![1] }
        ]
    );
    assert_eq!(ntp_to_unix_micros(ntp), 1_700_000_000_500_000);
    assert_eq!(ntp_to_unix_micros(ntp_timestamp(-1)), -1);
    assert!(parse_rtcp(&rr[..30]).is_err());
    assert!(parse_rtcp(&[0x40, 200, 0, 0]).is_err());
    assert!(!is_rtcp(&[0x80, 96]));
}

/// The RTP FFmpeg 5.1 sent publishing 1.2 s of testsrc (libx264, 320x240, 25 fps, B-frames)
/// and a 48 kHz stereo sine (aac) over TCP-interleaved RTSP, captured whole, requests
/// included.
pub(crate) const FFMPEG_PUBLISH: &[u8] = include_bytes!("../testdata/ffmpeg_publish_tcp.bin");

#[test]
fn ffmpeg_packets_depacketize_and_repacketize() {
    let mut buf = BytesMut::from(FFMPEG_PUBLISH);
    let mut sdp_text = String::new();
    let mut rtp: [Vec<Bytes>; 2] = [Vec::new(), Vec::new()];
    let mut reports: Vec<(u8, u64, u32)> = Vec::new();
    while let Some(m) = decode(&mut buf).expect("ffmpeg speaks RTSP") {
        match m {
            Message::Request(r) if !r.body.is_empty() => {
                sdp_text = String::from_utf8(r.body.to_vec()).expect("utf8");
            }
            Message::Interleaved { channel, data } if channel % 2 == 0 => {
                rtp[usize::from(channel / 2)].push(data)
            }
            Message::Interleaved { channel, data } => {
                let RtcpPacket::SenderReport { ntp, rtp_time, .. } =
                    parse_rtcp(&data).expect("ffmpeg's RTCP")[0]
                else {
                    panic!("not a sender report")
                };
                reports.push((channel, ntp, rtp_time));
            }
            _ => {}
        }
    }
    assert!(reports.len() >= 2);
    let tracks = sdp::parse(&sdp_text).expect("ffmpeg's SDP");
    let mut video = VideoDepacketizer::h264(tracks[0].config.clone());
    let frames = depacketize(&mut video, &rtp[0]);
    assert!(frames.len() >= 25, "{} video frames", frames.len());
    assert!(frames[0].keyframe && frames[0].kind == FrameKind::Media);
    assert!(frames.iter().all(|f| f.kind == FrameKind::Media));
    assert!(frames.windows(2).all(|w| w[1].dts > w[0].dts));
    assert!(frames.iter().all(|f| f.dts <= f.pts));
    // x264's B-frames: presentation order differs from decode order.
    assert!(frames.windows(2).any(|w| w[1].pts < w[0].pts));
    for f in &frames {
        let nals = avcc_nals(&f.payload, 4).expect("AVCC");
        assert!(!nals.is_empty());
        assert_eq!(f.keyframe, nals.iter().any(|n| h264_nal_type(n) == NAL_IDR));
    }

    let layout = AuHeaderLayout::from_fmtp(&tracks[1]).expect("layout");
    let mut audio = AacDepacketizer::new(tracks[1].clock_rate, layout);
    let aus = aac_depacketize(&mut audio, &rtp[1]);
    assert!(aus.len() >= 50, "{} AAC frames", aus.len());
    for w in aus.windows(2) {
        // 1024 samples at 48 kHz, to the microsecond.
        assert!((21_333..=21_334).contains(&(w[1].pts - w[0].pts)));
    }

    // Anchored at their first sender reports, the tracks share one timeline: FFmpeg's AAC
    // starts one AU (21.3 ms of encoder priming) before the video.
    let origin = ntp_to_unix_micros(reports[0].1);
    let mut video = VideoDepacketizer::h264(tracks[0].config.clone());
    let mut audio = AacDepacketizer::new(tracks[1].clock_rate, layout);
    for (channel, ntp, rtp_time) in &reports {
        let micros = ntp_to_unix_micros(*ntp) - origin;
        if *channel == 1 {
            assert!(video.anchor(*rtp_time, micros));
        } else {
            assert!(audio.anchor(*rtp_time, micros));
        }
    }
    let v0 = depacketize(&mut video, &rtp[0])[0].pts;
    let a0 = aac_depacketize(&mut audio, &rtp[1])[0].pts;
    assert!(
        (-25_000..-17_000).contains(&(a0 - v0)),
        "audio {a0} video {v0}"
    );
    assert!(!video.anchor(0, 0));

    // Through our packetizers and back: the same frames.
    let mut vp = VideoPacketizer::h264(96, 3, 0, RtpClock::new(90_000, 0));
    vp.set_config(tracks[0].config.as_deref().expect("avc"))
        .expect("config");
    let mut d = VideoDepacketizer::h264(tracks[0].config.clone());
    let again = depacketize(&mut d, &packets(&mut vp, &frames));
    // The last frames stay held back for their decode times.
    assert!(again.len() >= frames.len() - MAX_REORDER);
    for (a, f) in again.iter().zip(&frames) {
        assert_eq!((&a.payload, a.keyframe), (&f.payload, f.keyframe));
    }
    for (a, f) in again.iter().zip(&frames).skip(MAX_REORDER) {
        assert!((a.pts - f.pts).abs() <= 11, "{} vs {}", a.pts, f.pts);
    }
    let mut ap = AacPacketizer::new(97, 4, 0, RtpClock::new(48_000, 0));
    let mut out = Vec::new();
    for f in &aus {
        ap.packetize(f, &mut out).expect("packetize");
    }
    let mut d = AacDepacketizer::new(48_000, AuHeaderLayout::AAC_HBR);
    let again = aac_depacketize(&mut d, &out);
    assert_eq!(
        again.iter().map(|f| &f.payload).collect::<Vec<_>>(),
        aus.iter().map(|f| &f.payload).collect::<Vec<_>>()
    );
}

/// An AVCDecoderConfigurationRecord as a hostile RTMP publisher may send it: an empty SPS and
/// an empty PPS beside the real ones (lengths 0 in the record).
fn record_with_empty_sets() -> Vec<u8> {
    let mut record = vec![1, 0x64, 0x00, 0x0d, 0xff, 0xe2, 0, 0];
    record.extend_from_slice(&(SPS.len() as u16).to_be_bytes());
    record.extend_from_slice(SPS);
    record.extend_from_slice(&[2, 0, 0]);
    record.extend_from_slice(&(PPS.len() as u16).to_be_bytes());
    record.extend_from_slice(PPS);
    record
}

#[test]
fn empty_parameter_sets_in_a_record_are_skipped_not_sent() {
    let mut p = VideoPacketizer::h264(96, 1, 0, RtpClock::new(90_000, 0));
    p.set_config(&record_with_empty_sets())
        .expect("the record's real sets are usable");
    // A keyframe small enough that every unit goes into one STAP-A (the path that read the
    // first byte of each unit), and one large enough for FU-A.
    for idr_len in [100, 5000] {
        let frames = gop(0, idr_len, 1);
        let sent = packets(&mut p, &frames);
        let mut d = VideoDepacketizer::h264(None);
        let got = depacketize(&mut d, &sent);
        let config = got
            .iter()
            .find(|f| f.kind == FrameKind::Config)
            .expect("the parameter sets went before the keyframe");
        let cfg = AvcConfig::parse(&config.payload).expect("record");
        assert_eq!(
            (&cfg.sps[..], &cfg.pps[..]),
            (
                &[Bytes::from_static(SPS)][..],
                &[Bytes::from_static(PPS)][..]
            )
        );
        let media: Vec<_> = got.iter().filter(|f| f.kind == FrameKind::Media).collect();
        assert_eq!(media.len(), 2, "keyframe and P-frame arrive");
    }
    // A record with nothing but empty sets leaves nothing to put before keyframes.
    let empty_only = [1, 0x64, 0, 0x0d, 0xff, 0xe1, 0, 0, 1, 0, 0];
    p.set_config(&empty_only).expect("readable");
    let sent = packets(&mut p, &gop(0, 100, 0));
    assert!(!sent.is_empty());
}

#[test]
fn empty_and_short_hevc_parameter_sets_are_skipped() {
    // hvcC with a VPS array holding an empty NAL and a one-byte NAL (shorter than the H.265
    // NAL header) and a real VPS, then an SPS array whose NAL is of another type.
    let vps = [0x40u8, 0x01, 0x0c, 0x01];
    let mut record = vec![1u8; 22];
    record.push(2);
    record.extend_from_slice(&[0x80 | 32, 0, 3, 0, 0, 0, 1, 0x40]);
    record.extend_from_slice(&(vps.len() as u16).to_be_bytes());
    record.extend_from_slice(&vps);
    record.extend_from_slice(&[0x80 | 33, 0, 1, 0, 2, 0x44, 0x01]);
    assert_eq!(
        sdp::hvcc_parameter_sets(&record).expect("readable"),
        vec![Bytes::copy_from_slice(&vps)]
    );
    let mut p = VideoPacketizer::h265(96, 1, 0, RtpClock::new(90_000, 0));
    p.set_config(&record).expect("usable");
    let idr = MediaFrame {
        codec: Codec::H265,
        ..video_frame(0, true, &[vec![0x26, 0x01, 0xaf, 0x01]])
    };
    let mut out = Vec::new();
    p.packetize(&idr, &mut out).expect("packetize");
    assert_eq!(out.len(), 1, "VPS and IDR in one AP");
}

/// The audio RTP packets (channel 0) and the description of GStreamer's captured publish.
fn gstreamer_audio() -> (Vec<sdp::SdpTrack>, Vec<Bytes>) {
    let mut buf = BytesMut::from(crate::protocol::rtsp::tests::GSTREAMER_PUBLISH);
    let mut sdp_text = String::new();
    let mut audio = Vec::new();
    while let Some(m) = decode(&mut buf).expect("GStreamer speaks RTSP") {
        match m {
            Message::Request(r) if !r.body.is_empty() => {
                sdp_text = String::from_utf8(r.body.to_vec()).expect("utf8");
            }
            // GStreamer set the audio track (stream=1) up first: channels 0-1.
            Message::Interleaved { channel: 0, data } => audio.push(data),
            _ => {}
        }
    }
    (sdp::parse(&sdp_text).expect("GStreamer's SDP"), audio)
}

fn latm_depacketize(d: &mut LatmDepacketizer, packets: &[Bytes]) -> Vec<MediaFrame> {
    let mut out = Vec::new();
    for p in packets {
        let _ = d.push(&RtpPacket::parse(p.clone()).expect("RTP"));
        out.extend(std::iter::from_fn(|| d.pop()));
    }
    out
}

#[test]
fn gstreamer_latm_packets_depacketize() {
    let (tracks, packets) = gstreamer_audio();
    assert!(packets.len() >= 12);
    let track = &tracks[0];
    assert_eq!(track.encoding, "MP4A-LATM");
    let latm = track.latm().expect("carried");
    let mut d = LatmDepacketizer::new(track.clock_rate, latm.subframes);
    let aus = latm_depacketize(&mut d, &packets);
    assert_eq!(aus.len(), packets.len(), "one AU per packet");
    for (au, p) in aus.iter().zip(&packets) {
        let payload = &RtpPacket::parse(p.clone()).expect("RTP").payload;
        // The PayloadLengthInfo (one or two bytes here) then exactly the AU.
        let prefix = payload.len() - au.payload.len();
        assert!((1..=2).contains(&prefix), "prefix {prefix}");
        assert_eq!(&payload[prefix..], &au.payload[..]);
        assert_eq!((au.codec, au.track), (Codec::Aac, Track::Audio));
    }
    // FFmpeg's AAC encoder (avenc_aac) starts with its fill element naming itself.
    assert!(aus[0].payload.windows(4).any(|w| w == b"Lavc"));
    for w in aus.windows(2) {
        // 1024 samples at 44.1 kHz, to the microsecond.
        assert!((23_219..=23_220).contains(&(w[1].pts - w[0].pts)));
    }
}

#[test]
fn latm_fragments_loss_and_subframes() {
    let header = |seq: u16, ts: u32, marker: bool| RtpHeader {
        payload_type: 96,
        marker,
        sequence: seq,
        timestamp: ts,
        ssrc: 7,
    };
    let packet = |h: RtpHeader, payload: &[u8]| {
        let mut out = BytesMut::new();
        h.write(&mut out);
        out.put_slice(payload);
        RtpPacket::parse(out.freeze()).expect("RTP")
    };
    let au: Vec<u8> = (0..600u32).map(|i| (i % 251) as u8).collect();
    let mut element = vec![255, 255, (600 - 510) as u8];
    element.extend_from_slice(&au);

    // One element over two packets, the marker on the second.
    let mut d = LatmDepacketizer::new(48_000, 1);
    d.push(&packet(header(1, 1000, false), &element[..300]))
        .expect("first part");
    assert!(d.pop().is_none());
    d.push(&packet(header(2, 1000, true), &element[300..]))
        .expect("second part");
    assert_eq!(d.pop().map(|f| f.payload.to_vec()), Some(au.clone()));

    // The second part lost: nothing, and the next whole element comes through.
    d.push(&packet(header(3, 2024, false), &element[..300]))
        .expect("part");
    d.push(&packet(header(5, 3048, true), &element))
        .expect("whole");
    let f = d.pop().expect("the whole element");
    assert_eq!(f.payload.to_vec(), au);
    assert!(d.pop().is_none());

    // A length past the end: dropped, with an error.
    assert!(d
        .push(&packet(header(6, 4072, true), &element[..400]))
        .is_err());
    assert!(d.pop().is_none());

    // Two subframes per element, two elements in one packet: four AUs, 1024 samples apart.
    let mut d = LatmDepacketizer::new(48_000, 2);
    let mut payload = Vec::new();
    for n in 1..=4u8 {
        payload.push(n);
        payload.extend(std::iter::repeat_n(n, usize::from(n)));
    }
    d.push(&packet(header(1, 0, true), &payload))
        .expect("elements");
    let frames: Vec<MediaFrame> = std::iter::from_fn(|| d.pop()).collect();
    assert_eq!(frames.len(), 4);
    for (n, f) in frames.iter().enumerate() {
        assert_eq!(f.payload.to_vec(), vec![n as u8 + 1; n + 1]);
    }
    assert!(frames
        .windows(2)
        .all(|w| (21_333..=21_334).contains(&(w[1].pts - w[0].pts))));
}

//! AV1 over RTP: the AOM's "RTP Payload Format For AV1" (v1.0), both ways, for RTSP.
//!
//! A payload is a one-byte aggregation header (Z: the first element continues an OBU of the
//! previous packet; Y: the last element continues in the next; W: the number of elements, or
//! 0 when each has a LEB128 length; N: the first packet of a coded video sequence) and OBU
//! elements: OBUs without their size field (the element's length says it), or fragments of
//! one. Temporal delimiters and tile lists are not sent; the sequence header goes in band, in
//! the first packet of each keyframe, which sets N. The RTP timestamp is the temporal unit's
//! (90 kHz) and the marker bit ends it.
//!
//! The frame model holds a temporal unit as OBUs with their size fields (no temporal
//! delimiter) and the AV1CodecConfigurationRecord as the config, so the depacketizer puts the
//! size fields back and makes a record from each new sequence header it sees.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use streamgate_actors::media::{Codec, FrameKind, MediaFrame, Track};

use super::{
    Arrival, RtpClock, RtpError, RtpPacket, RtpTimeline, Sender, SenderStats, SequenceCheck,
    MAX_ACCESS_UNIT, MAX_PAYLOAD, VIDEO_CLOCK_RATE,
};
use crate::protocol::codec::{
    av1_is_key_frame, av1_obu_payload, av1_obus, leb128_len, read_leb128, write_leb128, Av1Config,
    Av1SequenceHeader, AV1_OBU_FRAME, AV1_OBU_FRAME_HEADER, AV1_OBU_PADDING,
    AV1_OBU_SEQUENCE_HEADER, AV1_OBU_TEMPORAL_DELIMITER, AV1_OBU_TILE_LIST,
};

/// Z: the first OBU element continues a fragment of the previous packet.
const Z: u8 = 0x80;
/// Y: the last OBU element continues in the next packet.
const Y: u8 = 0x40;
/// N: the first packet of a coded video sequence.
const N: u8 = 0x08;
/// `obu_has_size_field` in an OBU header.
const HAS_SIZE: u8 = 0x02;
/// A packet with fewer bytes left than this is sent rather than given the start of another
/// element: each fragment then has its OBU header (and extension) and some payload.
const MIN_ELEMENT_ROOM: usize = 16;

/// The type of an OBU from its header byte (AV1 spec §5.3.2).
fn obu_type(header: u8) -> u8 {
    (header >> 3) & 0x0f
}

/// Whether this OBU type is left out of RTP and of the frame model's temporal units.
fn dropped(obu_type: u8) -> bool {
    matches!(
        obu_type,
        AV1_OBU_TEMPORAL_DELIMITER | AV1_OBU_TILE_LIST | AV1_OBU_PADDING
    )
}

/// Whether the temporal unit `obus` (whole OBUs with size fields) starts with a shown key
/// frame: it has a sequence header and its first frame (header) OBU says KEY_FRAME.
fn is_keyframe(obus: &[(u8, &[u8])]) -> bool {
    let Some(sequence) = obus
        .iter()
        .find(|(t, _)| *t == AV1_OBU_SEQUENCE_HEADER)
        .and_then(|(_, obu)| Av1SequenceHeader::parse(av1_obu_payload(obu)?).ok())
    else {
        return false;
    };
    obus.iter()
        .find(|(t, _)| matches!(*t, AV1_OBU_FRAME | AV1_OBU_FRAME_HEADER))
        .and_then(|(_, obu)| av1_obu_payload(obu))
        .is_some_and(|p| av1_is_key_frame(p, sequence.reduced_still_picture))
}

/// AV1 temporal units in, RTP packets out. Elements always carry their LEB128 length (W = 0),
/// which the format allows for any number of elements.
#[derive(Debug, Clone)]
pub struct Av1Packetizer {
    sender: Sender,
    clock: RtpClock,
    max_payload: usize,
    /// The sequence header OBU of the config, put before a keyframe that lacks one.
    sequence_header: Option<Bytes>,
}

impl Av1Packetizer {
    /// A packetizer with this payload type, SSRC, first sequence number and clock (90 kHz,
    /// with the caller's random offset).
    pub fn new(payload_type: u8, ssrc: u32, sequence: u16, clock: RtpClock) -> Av1Packetizer {
        Av1Packetizer {
            sender: Sender {
                payload_type,
                ssrc,
                sequence,
                packets: 0,
                octets: 0,
            },
            clock,
            max_payload: MAX_PAYLOAD,
            sequence_header: None,
        }
    }

    /// Sets the largest payload (at least 64 bytes; [`MAX_PAYLOAD`] by default).
    pub fn set_max_payload(&mut self, max: usize) {
        self.max_payload = max.max(64);
    }

    /// Takes an AV1CodecConfigurationRecord: its sequence header goes before keyframes that
    /// lack one.
    pub fn set_config(&mut self, record: &[u8]) -> Result<(), RtpError> {
        let config = Av1Config::parse(record)?;
        self.sequence_header = av1_obus(&config.config_obus)?
            .into_iter()
            .find(|(t, _)| *t == AV1_OBU_SEQUENCE_HEADER)
            .map(|(_, obu)| Bytes::copy_from_slice(obu));
        Ok(())
    }

    /// Counts `packets` packets with `octets` payload octets as sent, their sequence numbers
    /// taken: packets of this packetizer's output that were made by another player's
    /// packetizer with the same settings and restamped ([`RtpHeader::restamp`]).
    pub fn skip(&mut self, packets: u16, octets: u32) {
        self.sender.skip(packets, octets);
    }

    /// Counters so far.
    pub fn stats(&self) -> SenderStats {
        SenderStats {
            next_sequence: self.sender.sequence,
            packets: self.sender.packets,
            octets: self.sender.octets,
        }
    }

    /// The clock this packetizer stamps with.
    pub fn clock(&self) -> RtpClock {
        self.clock
    }

    /// Appends the packets of one temporal unit to `out`. A config frame sends nothing and
    /// replaces the config. A temporal unit whose OBUs cannot be split sends nothing.
    pub fn packetize(&mut self, frame: &MediaFrame, out: &mut Vec<Bytes>) -> Result<(), RtpError> {
        if frame.kind == FrameKind::Config {
            return self.set_config(&frame.payload);
        }
        let obus = av1_obus(&frame.payload)?;
        let has_sequence = obus.iter().any(|(t, _)| *t == AV1_OBU_SEQUENCE_HEADER);
        let keyframe = frame.keyframe || is_keyframe(&obus);
        let mut elements: Vec<BytesMut> = Vec::with_capacity(obus.len() + 1);
        if keyframe && !has_sequence {
            if let Some(sh) = &self.sequence_header {
                elements.extend(element(sh));
            }
        }
        elements.extend(
            obus.iter()
                .filter(|(t, _)| !dropped(*t))
                .filter_map(|(_, obu)| element(obu)),
        );
        if elements.is_empty() {
            return Ok(());
        }
        let starts_sequence = keyframe
            && (has_sequence || self.sequence_header.is_some())
            && elements
                .first()
                .is_some_and(|e| obu_type(e[0]) == AV1_OBU_SEQUENCE_HEADER);
        let timestamp = self.clock.rtp_time(frame.pts);
        let max = self.max_payload;
        let mut payload = BytesMut::with_capacity(max);
        payload.put_u8(if starts_sequence { N } else { 0 });
        let count = elements.len();
        for (i, element) in elements.into_iter().enumerate() {
            let mut rest = &element[..];
            while !rest.is_empty() {
                let room = max - payload.len();
                if leb128_len(rest.len() as u64) + rest.len() <= room {
                    write_leb128(&mut payload, rest.len() as u64);
                    payload.put_slice(rest);
                    rest = &[];
                } else if room < MIN_ELEMENT_ROOM && payload.len() > 1 {
                    // Too little room for a useful fragment: send what is there.
                    out.push(self.sender.packet(false, timestamp, &[&payload]));
                    payload.clear();
                    payload.put_u8(0);
                } else {
                    // A fragment filling the packet; the rest continues in the next one.
                    let mut n = room - leb128_len(room as u64);
                    while leb128_len(n as u64) + n > room {
                        n -= 1;
                    }
                    write_leb128(&mut payload, n as u64);
                    payload.put_slice(&rest[..n]);
                    rest = &rest[n..];
                    payload[0] |= Y;
                    out.push(self.sender.packet(false, timestamp, &[&payload]));
                    payload.clear();
                    payload.put_u8(Z);
                }
            }
            if i + 1 == count {
                out.push(self.sender.packet(true, timestamp, &[&payload]));
            }
        }
        Ok(())
    }
}

/// An OBU element: the OBU without its size field. `None` for bytes that are not an OBU.
fn element(obu: &[u8]) -> Option<BytesMut> {
    let header = *obu.first()?;
    let payload = av1_obu_payload(obu)?;
    let mut e = BytesMut::with_capacity(2 + payload.len());
    e.put_u8(header & !HAS_SIZE);
    if header & 0x04 != 0 {
        e.put_u8(*obu.get(1)?);
    }
    e.put_slice(payload);
    Some(e)
}

/// RTP packets of one AV1 track in, temporal units out (with a config frame whenever the
/// sequence header changes). A lost packet drops its temporal unit and everything up to the
/// next keyframe (the frames after it may refer to what was lost).
#[derive(Debug)]
pub struct Av1Depacketizer {
    timeline: RtpTimeline,
    sequence: SequenceCheck,
    /// The temporal unit being assembled: its RTP timestamp and its whole OBUs (with size
    /// fields).
    tu_timestamp: Option<u32>,
    obus: BytesMut,
    /// The OBU element whose fragments are being collected.
    fragment: Option<BytesMut>,
    /// The first packet of this temporal unit had N set.
    starts_sequence: bool,
    damaged: bool,
    need_keyframe: bool,
    /// The sequence header OBU of the config last emitted.
    sequence_header: Option<Bytes>,
    out: VecDeque<MediaFrame>,
}

impl Default for Av1Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Av1Depacketizer {
    /// A depacketizer on the 90 kHz clock, waiting for a keyframe with its sequence header.
    pub fn new() -> Av1Depacketizer {
        Av1Depacketizer {
            timeline: RtpTimeline::new(VIDEO_CLOCK_RATE),
            sequence: SequenceCheck::default(),
            tu_timestamp: None,
            obus: BytesMut::new(),
            fragment: None,
            starts_sequence: false,
            damaged: false,
            need_keyframe: true,
            sequence_header: None,
            out: VecDeque::new(),
        }
    }

    /// Puts this track on a shared timeline; see [`RtpTimeline::anchor`].
    pub fn anchor(&mut self, rtp_time: u32, micros: i64) -> bool {
        self.timeline.anchor(rtp_time, micros)
    }

    /// Takes one packet. An error reports a packet that was dropped (its temporal unit is
    /// dropped too); the depacketizer goes on with the next one.
    pub fn push(&mut self, packet: &RtpPacket) -> Result<(), RtpError> {
        let arrival = self.sequence.check(packet.header.sequence);
        if arrival == Arrival::Late {
            return Ok(());
        }
        if arrival == Arrival::Gap {
            self.need_keyframe = true;
            if self.tu_timestamp.is_some() {
                self.damaged = true;
                self.fragment = None;
            }
        }
        let timestamp = packet.header.timestamp;
        if self.tu_timestamp != Some(timestamp) {
            self.finish();
            self.tu_timestamp = Some(timestamp);
        }
        let result = self.payload(&packet.payload);
        if result.is_err() {
            self.damaged = true;
            self.fragment = None;
        }
        if packet.header.marker {
            self.finish();
        }
        result
    }

    /// The next frame.
    pub fn pop(&mut self) -> Option<MediaFrame> {
        self.out.pop_front()
    }

    fn payload(&mut self, payload: &[u8]) -> Result<(), RtpError> {
        const WHAT: &str = "AV1 aggregation";
        let (&aggregation, mut rest) = payload
            .split_first()
            .ok_or(RtpError::Truncated("AV1 payload"))?;
        let (z, y) = (aggregation & Z != 0, aggregation & Y != 0);
        let count = usize::from((aggregation >> 4) & 0x03);
        if aggregation & N != 0 && self.obus.is_empty() && self.fragment.is_none() {
            self.starts_sequence = true;
        }
        if !z && self.fragment.take().is_some() {
            // The end of the fragment before was lost.
            self.damaged = true;
        }
        let mut index = 0;
        while !rest.is_empty() {
            index += 1;
            let len = if count == 0 || index < count {
                let (len, n) = read_leb128(rest).ok_or(RtpError::Malformed(WHAT))?;
                rest = &rest[n..];
                usize::try_from(len).map_err(|_| RtpError::Malformed(WHAT))?
            } else {
                rest.len()
            };
            let data = rest.get(..len).ok_or(RtpError::Malformed(WHAT))?;
            rest = &rest[len..];
            let last = rest.is_empty();
            let mut element = if index == 1 && z {
                match self.fragment.take() {
                    Some(mut f) => {
                        if f.len() + data.len() > MAX_ACCESS_UNIT {
                            self.damaged = true;
                            continue;
                        }
                        f.put_slice(data);
                        f
                    }
                    None => {
                        // Its start was lost.
                        self.damaged = true;
                        continue;
                    }
                }
            } else {
                BytesMut::from(data)
            };
            if last && y {
                self.fragment = Some(std::mem::take(&mut element));
            } else {
                self.obu(&element)?;
            }
        }
        Ok(())
    }

    /// Appends one whole OBU element to the temporal unit, with its size field.
    fn obu(&mut self, element: &[u8]) -> Result<(), RtpError> {
        const WHAT: &str = "AV1 OBU element";
        let Some(&header) = element.first() else {
            return Ok(());
        };
        if header & 0x80 != 0 {
            return Err(RtpError::Malformed(WHAT));
        }
        if dropped(obu_type(header)) {
            return Ok(());
        }
        if self.obus.len() + element.len() + 8 > MAX_ACCESS_UNIT {
            self.damaged = true;
            return Ok(());
        }
        if header & HAS_SIZE != 0 {
            // The sender kept the size field (the format allows it): it must be the element.
            if av1_obus(element).map(|o| o.len()) != Ok(1) {
                return Err(RtpError::Malformed(WHAT));
            }
            self.obus.put_slice(element);
            return Ok(());
        }
        let header_len = 1 + usize::from(header & 0x04 != 0);
        let body = element.get(header_len..).ok_or(RtpError::Malformed(WHAT))?;
        self.obus.put_u8(header | HAS_SIZE);
        self.obus.put_slice(&element[1..header_len]);
        write_leb128(&mut self.obus, body.len() as u64);
        self.obus.put_slice(body);
        Ok(())
    }

    /// Ends the temporal unit being assembled.
    fn finish(&mut self) {
        let Some(timestamp) = self.tu_timestamp.take() else {
            return;
        };
        let tu = std::mem::take(&mut self.obus).freeze();
        let starts_sequence = std::mem::take(&mut self.starts_sequence);
        if self.fragment.take().is_some() {
            // The temporal unit ended inside an OBU.
            self.damaged = true;
        }
        let pts = self.timeline.micros(timestamp);
        if std::mem::take(&mut self.damaged) {
            self.need_keyframe = true;
            return;
        }
        let Ok(obus) = av1_obus(&tu) else {
            self.need_keyframe = true;
            return;
        };
        if obus.is_empty() {
            return;
        }
        if let Some((_, sh)) = obus.iter().find(|(t, _)| *t == AV1_OBU_SEQUENCE_HEADER) {
            if self.sequence_header.as_deref() != Some(*sh) {
                if let Some(parsed) =
                    av1_obu_payload(sh).and_then(|p| Av1SequenceHeader::parse(p).ok())
                {
                    self.sequence_header = Some(tu.slice_ref(sh));
                    self.out.push_back(MediaFrame {
                        track: Track::Video,
                        codec: Codec::Av1,
                        kind: FrameKind::Config,
                        dts: pts,
                        pts,
                        keyframe: true,
                        payload: parsed.record(sh),
                    });
                }
            }
        }
        let keyframe = is_keyframe(&obus) || (starts_sequence && self.sequence_header.is_some());
        if self.sequence_header.is_none() || (self.need_keyframe && !keyframe) {
            return;
        }
        self.need_keyframe = false;
        if self.out.len() >= 64 {
            self.out.pop_front();
        }
        self.out.push_back(MediaFrame {
            track: Track::Video,
            codec: Codec::Av1,
            kind: FrameKind::Media,
            dts: pts,
            pts,
            keyframe,
            payload: tu,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::rtsp::rtp::RtpHeader;

    /// The sequence header OBU of FFmpeg 9's libsvtav1 (64x64, 8-bit 4:2:0, main profile),
    /// as its RTP packetizer sends it (no size field) in the first packet of a keyframe.
    const SVT_SEQUENCE_HEADER: &[u8] = &[
        0x08, 0x02, 0x00, 0x00, 0x05, 0x15, 0x7f, 0xfc, 0x4a, 0xf9, 0x00, 0x40,
    ];

    /// Ten RTP packets FFmpeg 9 sent (`-c:v libsvtav1 -svtav1-params keyint=5 -strict
    /// experimental -f rtp`, 64x64 at 25 fps): two GOPs of five temporal units, one packet
    /// each, each length-prefixed (16 bits).
    const FFMPEG9_PACKETS: &[u8] = include_bytes!("../testdata/ffmpeg9_av1_rtp.bin");

    fn captured() -> Vec<RtpPacket> {
        let mut rest = FFMPEG9_PACKETS;
        let mut out = Vec::new();
        while rest.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            out.push(RtpPacket::parse(Bytes::copy_from_slice(&rest[2..2 + len])).expect("rtp"));
            rest = &rest[2 + len..];
        }
        out
    }

    #[test]
    fn depacketizes_what_ffmpeg_sends_and_sends_it_back_alike() {
        let packets = captured();
        assert_eq!(packets.len(), 10);
        let mut d = Av1Depacketizer::new();
        let mut got = Vec::new();
        for p in &packets {
            d.push(p).expect("FFmpeg's packet");
            while let Some(f) = d.pop() {
                got.push(f);
            }
        }
        // One config (the sequence header does not change), ten temporal units 40 ms apart,
        // keyframes first in each GOP of five.
        assert_eq!(got[0].kind, FrameKind::Config);
        let config = Av1Config::parse(&got[0].payload).expect("a valid av1C");
        assert_eq!((config.profile, config.bit_depth), (0, 8));
        let media: Vec<&MediaFrame> = got[1..].iter().collect();
        assert!(media.iter().all(|f| f.kind == FrameKind::Media));
        assert_eq!(media.len(), 10);
        let keys: Vec<bool> = media.iter().map(|f| f.keyframe).collect();
        assert_eq!(keys, [true, false, false, false, false].repeat(2));
        for (i, f) in media.iter().enumerate() {
            assert_eq!(f.pts, i as i64 * 40_000);
            let obus = av1_obus(&f.payload).expect("whole OBUs with size fields");
            assert!(obus.iter().all(|(t, _)| *t != AV1_OBU_TEMPORAL_DELIMITER));
        }
        // Packetized again, each temporal unit gives the same payloads FFmpeg sent (one packet
        // each at this size, N on keyframes; W differs: elements here all carry lengths).
        let mut p = Av1Packetizer::new(96, 1, 0, RtpClock::new(90_000, 0));
        p.set_config(&got[0].payload).expect("config");
        let mut d = Av1Depacketizer::new();
        for f in &media {
            let mut out = Vec::new();
            p.packetize(f, &mut out).expect("packetize");
            assert_eq!(out.len(), 1);
            let packet = RtpPacket::parse(out.remove(0)).expect("own packet");
            assert_eq!(packet.payload[0] & N != 0, f.keyframe);
            assert!(packet.header.marker);
            d.push(&packet).expect("own payload");
            while let Some(back) = d.pop() {
                if back.kind == FrameKind::Media {
                    assert_eq!(back.payload, f.payload);
                }
            }
        }
    }

    fn packet(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> RtpPacket {
        let mut out = BytesMut::new();
        RtpHeader {
            marker,
            payload_type: 96,
            sequence: seq,
            timestamp: ts,
            ssrc: 7,
        }
        .write(&mut out);
        out.put_slice(payload);
        RtpPacket::parse(out.freeze()).expect("own packet")
    }

    /// A key frame OBU (frame header with show_existing_frame 0, frame_type KEY) of `len`
    /// payload bytes, with its size field.
    fn frame_obu(key: bool, len: usize) -> Vec<u8> {
        let mut obu = BytesMut::new();
        obu.put_u8((AV1_OBU_FRAME << 3) | HAS_SIZE);
        write_leb128(&mut obu, len as u64);
        let first = if key { 0x10 } else { 0x30 };
        obu.put_u8(first);
        obu.extend((1..len).map(|i| (i % 251) as u8));
        obu.to_vec()
    }

    fn with_size(element: &[u8]) -> Vec<u8> {
        let mut obu = BytesMut::new();
        obu.put_u8(element[0] | HAS_SIZE);
        write_leb128(&mut obu, (element.len() - 1) as u64);
        obu.put_slice(&element[1..]);
        obu.to_vec()
    }

    fn tu(key: bool, len: usize) -> MediaFrame {
        let mut payload = Vec::new();
        if key {
            payload.extend(with_size(SVT_SEQUENCE_HEADER));
        }
        payload.extend(frame_obu(key, len));
        MediaFrame {
            track: Track::Video,
            codec: Codec::Av1,
            kind: FrameKind::Media,
            dts: 0,
            pts: 0,
            keyframe: key,
            payload: Bytes::from(payload),
        }
    }

    #[test]
    fn sequence_header_makes_the_record_ffmpeg_writes() {
        let sh = Av1SequenceHeader::parse(&SVT_SEQUENCE_HEADER[1..]).expect("svt's header");
        assert_eq!(
            (sh.profile, sh.level, sh.tier, sh.high_bitdepth),
            (0, 0, 0, false)
        );
        assert_eq!(sh.subsampling, (true, true));
        let record = sh.record(&with_size(SVT_SEQUENCE_HEADER));
        // 8-bit 4:2:0 (subsampling_x, subsampling_y), no initial presentation delay.
        assert_eq!(record[0], 0x81);
        assert_eq!((record[2], record[3]), (0x0c, 0x00));
        assert_eq!(
            Av1Config::parse(&record).map(|c| c.config_obus.len()),
            Ok(SVT_SEQUENCE_HEADER.len() + 1)
        );
    }

    /// Elements of every form: W = 2 with a temporal delimiter to drop, a fragmented frame OBU
    /// (Y, then Z), and a loss that holds inter frames back until a keyframe.
    #[test]
    fn depacketizes_ffmpeg_style_packets() {
        let mut d = Av1Depacketizer::new();
        // Packet 1: N, two elements (W = 2): sequence header with its length, then a
        // temporal delimiter (dropped) as the last element without length.
        let mut p1 = vec![0x28, SVT_SEQUENCE_HEADER.len() as u8];
        p1.extend_from_slice(SVT_SEQUENCE_HEADER);
        p1.extend_from_slice(&[0x10]);
        d.push(&packet(1, 9000, false, &p1)).expect("packet 1");
        // Packet 2: W = 1, the frame OBU without size field, fragmented (Y) into packet 3 (Z).
        let frame = frame_obu(true, 300);
        let whole = element(&frame).expect("element").to_vec();
        let mut p2 = vec![0x50];
        p2.extend_from_slice(&whole[..100]);
        d.push(&packet(2, 9000, false, &p2)).expect("packet 2");
        let mut p3 = vec![0x90];
        p3.extend_from_slice(&whole[100..]);
        d.push(&packet(3, 9000, true, &p3)).expect("packet 3");
        let config = d.pop().expect("config");
        assert_eq!((config.kind, config.codec), (FrameKind::Config, Codec::Av1));
        let media = d.pop().expect("temporal unit");
        assert!(media.keyframe);
        let mut want = with_size(SVT_SEQUENCE_HEADER);
        want.extend(frame);
        assert_eq!(&media.payload[..], &want[..]);
        // A lost packet: the next inter frame is dropped, the next keyframe comes through.
        let mut p = vec![0x10];
        p.extend(element(&frame_obu(false, 50)).expect("element"));
        d.push(&packet(5, 12600, true, &p)).expect("inter frame");
        assert!(d.pop().is_none());
    }

    #[test]
    fn round_trips_at_every_payload_size() {
        for max in [64, 100, 333, 1400] {
            let mut p = Av1Packetizer::new(96, 1, 65530, RtpClock::new(90_000, 5));
            p.set_max_payload(max);
            let mut config = Vec::new();
            let sh = Av1SequenceHeader::parse(&SVT_SEQUENCE_HEADER[1..]).expect("header");
            config.extend(sh.record(&with_size(SVT_SEQUENCE_HEADER)));
            p.set_config(&config).expect("config");
            let mut frames = vec![tu(true, 5000), tu(false, 10), tu(false, 1500)];
            // A keyframe without its sequence header gets the config's.
            let mut bare = frame_obu(true, 700);
            bare.splice(0..0, [0x12, 0x00]); // temporal delimiter, dropped
            frames.push(MediaFrame {
                payload: Bytes::from(bare),
                ..tu(true, 1)
            });
            for (i, f) in frames.iter_mut().enumerate() {
                f.pts = i as i64 * 40_000;
                f.dts = f.pts;
            }
            let mut packets = Vec::new();
            for f in &frames {
                p.packetize(f, &mut packets).expect("packetize");
            }
            assert!(packets.iter().all(|p| p.len() <= RtpHeader::LEN + max));
            let mut d = Av1Depacketizer::new();
            let mut got = Vec::new();
            for raw in packets {
                d.push(&RtpPacket::parse(raw).expect("parse"))
                    .expect("push");
                while let Some(f) = d.pop() {
                    got.push(f);
                }
            }
            let media: Vec<&MediaFrame> =
                got.iter().filter(|f| f.kind == FrameKind::Media).collect();
            assert_eq!(media.len(), 4, "max {max}");
            for (g, w) in media.iter().zip(&frames[..3]) {
                assert_eq!((g.pts, g.keyframe), (w.pts, w.keyframe));
                assert_eq!(g.payload, w.payload, "max {max}");
            }
            let mut want = with_size(SVT_SEQUENCE_HEADER);
            want.extend(frame_obu(true, 700));
            assert_eq!(&media[3].payload[..], &want[..]);
            assert!(media[3].keyframe);
        }
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let mut d = Av1Depacketizer::new();
        assert!(d.push(&packet(1, 0, true, &[])).is_err());
        // A length past the end, a forbidden bit, an unterminated LEB128.
        assert!(d.push(&packet(2, 0, true, &[0x00, 0x05, 0x08])).is_err());
        assert!(d.push(&packet(3, 0, true, &[0x10, 0x80])).is_err());
        assert!(d.push(&packet(4, 0, true, &[0x00, 0xff, 0xff])).is_err());
        // A continuation without its start is dropped quietly.
        assert!(d.push(&packet(5, 0, true, &[0x90, 0x30, 0x01])).is_ok());
        assert!(d.pop().is_none());
    }
}

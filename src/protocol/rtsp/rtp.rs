//! RTP (RFC 3550) for RTSP: the fixed header, RTCP sender reports out and reports in, media
//! clocks (microseconds <-> RTP ticks, 32-bit wrap), and the payload formats that turn RTP
//! packets into frames of the frame model and back:
//!
//! - H.264, RFC 6184 (packetization mode 1): single NAL unit, STAP-A, FU-A;
//! - H.265, RFC 7798: single NAL unit, AP, FU (pass-through: parameter sets stay in-band);
//! - AAC, RFC 3640 `mpeg4-generic` AAC-hbr/AAC-lbr: AU headers, several AUs per packet,
//!   fragmented AUs;
//! - AAC, RFC 6416 `MP4A-LATM` in (`cpresent=0`): AudioMuxElements with byte-length
//!   subframes, several per packet, fragmented over packets up to the marker bit;
//! - Opus, RFC 7587: one Opus packet per RTP packet, 48 kHz clock;
//! - AV1, the AOM's RTP payload format (in `av1`): OBU elements with aggregation headers.
//!
//! Input is untrusted: a lost or reordered packet never yields a torn frame — video is dropped
//! until the next keyframe, a torn audio AU is dropped. Everything is bounded
//! ([`MAX_ACCESS_UNIT`]). Pure functions and state machines over bytes: no socket, no clock
//! (times and offsets are passed in), no knowledge of RTSP requests or streams.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};
use streamgate_actors::media::{Codec, FrameKind, MediaFrame, Track};

use crate::protocol::codec::{
    avcc_nals, h264_nal_type, to_avcc, AvcConfig, CodecError, NAL_IDR, NAL_PPS, NAL_SPS,
};

/// Largest RTP payload this server sends (so a packet fits a 1500-byte Ethernet MTU with IP,
/// UDP and RTP headers).
pub const MAX_PAYLOAD: usize = 1400;
/// Largest access unit a depacketizer assembles; a larger one is dropped.
pub const MAX_ACCESS_UNIT: usize = 16 << 20;
/// Most frames a video depacketizer delays to derive decode times when the sender reorders
/// (B-frames).
pub const MAX_REORDER: usize = 4;
/// The RTP clock rate of video (RFC 6184 §8.2.1, RFC 7798 §7.1).
pub const VIDEO_CLOCK_RATE: u32 = 90_000;
/// Samples in one AAC access unit (1024-sample frames; 960-sample variants are not used by
/// AAC-LC encoders).
pub const AAC_FRAME_SAMPLES: u32 = 1024;

/// A packet that cannot be read or a frame that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than its headers say.
    #[error("{0} is truncated")]
    Truncated(&'static str),
    /// An RTP or RTCP version other than 2.
    #[error("RTP version {0}, expected 2")]
    Version(u8),
    /// A payload structure this depacketizer does not take (STAP-B, MTAP, FU-B, PACI, ...).
    #[error("unsupported {codec:?} payload type {nal_type}")]
    Unsupported {
        /// The payload format's codec.
        codec: Codec,
        /// The NAL unit type of the payload header.
        nal_type: u8,
    },
    /// A payload that contradicts itself (an aggregate whose sizes overrun it, a bad AU header
    /// section).
    #[error("malformed {0} payload")]
    Malformed(&'static str),
    /// A frame this packetizer cannot send (a malformed AVCC payload, an oversized AAC AU).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// An AAC AU over the 13-bit AU-size of AAC-hbr.
    #[error("AAC access unit of {0} bytes does not fit a 13-bit AU-size")]
    AuTooLarge(usize),
}

/// The fixed RTP header (RFC 3550 §5.1) fields this server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// The marker bit: last packet of a video access unit, end of an audio AU.
    pub marker: bool,
    /// The payload type.
    pub payload_type: u8,
    /// The sequence number.
    pub sequence: u16,
    /// The media timestamp in the payload's clock.
    pub timestamp: u32,
    /// The synchronization source.
    pub ssrc: u32,
}

impl RtpHeader {
    /// Bytes of the header this server writes (no CSRC, no extension).
    pub const LEN: usize = 12;

    /// Appends the header.
    pub fn write(&self, out: &mut BytesMut) {
        out.put_u8(0x80);
        out.put_u8((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        out.put_u16(self.sequence);
        out.put_u32(self.timestamp);
        out.put_u32(self.ssrc);
    }

    /// Rewrites the header of `packet` (one this server wrote, [`Self::LEN`] bytes) with
    /// another sender's payload type, sequence number, timestamp and SSRC; the marker stays.
    pub fn restamp(packet: &mut [u8], payload_type: u8, sequence: u16, timestamp: u32, ssrc: u32) {
        packet[1] = (packet[1] & 0x80) | (payload_type & 0x7f);
        packet[2..4].copy_from_slice(&sequence.to_be_bytes());
        packet[4..8].copy_from_slice(&timestamp.to_be_bytes());
        packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }
}

/// One RTP packet: its header and its payload (padding, CSRCs and extension removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// The header.
    pub header: RtpHeader,
    /// The payload, sliced from the packet without a copy.
    pub payload: Bytes,
}

impl RtpPacket {
    /// Reads a packet (RFC 3550 §5.1, §5.3.1).
    pub fn parse(data: Bytes) -> Result<RtpPacket, RtpError> {
        const WHAT: &str = "RTP packet";
        if data.len() < RtpHeader::LEN {
            return Err(RtpError::Truncated(WHAT));
        }
        let version = data[0] >> 6;
        if version != 2 {
            return Err(RtpError::Version(version));
        }
        let padding = data[0] & 0x20 != 0;
        let extension = data[0] & 0x10 != 0;
        let csrcs = usize::from(data[0] & 0x0f);
        let mut start = RtpHeader::LEN + 4 * csrcs;
        if extension {
            let ext = data
                .get(start..start + 4)
                .ok_or(RtpError::Truncated(WHAT))?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        }
        let mut end = data.len();
        if padding {
            let pad = usize::from(data[end - 1]);
            if pad == 0 {
                return Err(RtpError::Malformed("RTP padding"));
            }
            end = end.checked_sub(pad).ok_or(RtpError::Truncated(WHAT))?;
        }
        if start > end {
            return Err(RtpError::Truncated(WHAT));
        }
        let header = RtpHeader {
            marker: data[1] & 0x80 != 0,
            payload_type: data[1] & 0x7f,
            sequence: u16::from_be_bytes([data[2], data[3]]),
            timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
        };
        Ok(RtpPacket {
            header,
            payload: data.slice(start..end),
        })
    }

    /// The packet's bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(RtpHeader::LEN + self.payload.len());
        self.header.write(&mut out);
        out.put_slice(&self.payload);
        out.freeze()
    }
}

/// Maps the frame model's microseconds to a sender's 32-bit RTP timestamps: `offset` (a
/// random-ish value chosen by the caller, RFC 3550 §5.1) plus the time in ticks, wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpClock {
    /// Ticks per second.
    pub rate: u32,
    /// The RTP timestamp of time zero.
    pub offset: u32,
}

impl RtpClock {
    /// A clock of `rate` Hz whose time zero is RTP timestamp `offset`.
    pub fn new(rate: u32, offset: u32) -> RtpClock {
        RtpClock { rate, offset }
    }

    /// The RTP timestamp of `micros`.
    pub fn rtp_time(&self, micros: i64) -> u32 {
        // In 64 bits unless the product does not fit (a timeline of years): the same ticks,
        // taken modulo 2^32 (the truncation).
        let ticks = match micros.checked_mul(i64::from(self.rate)) {
            Some(product) => product.div_euclid(1_000_000) as u32,
            None => (i128::from(micros) * i128::from(self.rate)).div_euclid(1_000_000) as u32,
        };
        self.offset.wrapping_add(ticks)
    }
}

/// Maps a receiver's 32-bit RTP timestamps to microseconds since the first one (or since an
/// anchor, see [`Self::anchor`]): each timestamp is extended to 64 bits by its signed distance
/// from the previous one (so it wraps and may step back for reordered frames), then scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpTimeline {
    rate: u32,
    last: Option<(u32, i64)>,
    base_micros: i64,
}

impl RtpTimeline {
    /// A timeline in a clock of `rate` Hz (0 is taken as 90 kHz).
    pub fn new(rate: u32) -> RtpTimeline {
        RtpTimeline {
            rate: if rate == 0 { VIDEO_CLOCK_RATE } else { rate },
            last: None,
            base_micros: 0,
        }
    }

    /// Maps `rtp_time` to `micros` instead of starting at the first timestamp: with each
    /// track anchored at its first sender report (its NTP time relative to one origin for
    /// all tracks, [`ntp_to_unix_micros`]), the tracks of a publisher share one timeline
    /// (RFC 3550 §6.4.1). Only before the first timestamp; `false` (and no change) after.
    pub fn anchor(&mut self, rtp_time: u32, micros: i64) -> bool {
        if self.last.is_some() {
            return false;
        }
        self.last = Some((rtp_time, 0));
        self.base_micros = micros;
        true
    }

    /// Ticks since the first timestamp seen (or the anchor).
    pub fn extend(&mut self, timestamp: u32) -> i64 {
        let ext = match self.last {
            None => 0,
            Some((last, ext)) => ext + i64::from(timestamp.wrapping_sub(last) as i32),
        };
        self.last = Some((timestamp, ext));
        ext
    }

    /// Microseconds since the first timestamp seen (or on the anchor's timeline).
    pub fn micros(&mut self, timestamp: u32) -> i64 {
        let ticks = self.extend(timestamp);
        self.base_micros + (i128::from(ticks) * 1_000_000 / i128::from(self.rate)) as i64
    }
}

/// Whether a datagram on a muxed port is RTCP rather than RTP (RFC 5761 §4: packet types
/// 192 to 223).
pub fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= 2 && (192..=223).contains(&data[1])
}

/// The 64-bit NTP timestamp (RFC 5905 §6: seconds since 1900 and a 32-bit fraction) of a
/// Unix time in microseconds.
pub fn ntp_timestamp(unix_micros: i64) -> u64 {
    const NTP_UNIX_OFFSET: i128 = 2_208_988_800;
    let micros = i128::from(unix_micros) + NTP_UNIX_OFFSET * 1_000_000;
    let secs = micros.div_euclid(1_000_000);
    let frac = (micros.rem_euclid(1_000_000) << 32) / 1_000_000;
    ((secs << 32) | frac) as u64
}

/// The Unix time in microseconds of a 64-bit NTP timestamp (the inverse of
/// [`ntp_timestamp`], rounded to the microsecond).
pub fn ntp_to_unix_micros(ntp: u64) -> i64 {
    let secs = i64::from((ntp >> 32) as u32) - 2_208_988_800;
    let frac = ((ntp & 0xffff_ffff) * 1_000_000 + (1 << 31)) >> 32;
    secs * 1_000_000 + frac as i64
}

/// A compound RTCP packet (RFC 3550 §6.1) of a sender report without report blocks (§6.4.1)
/// and an SDES with the CNAME (§6.5), as a sender sends it every few seconds so receivers can
/// map each track's RTP time to wall-clock (NTP) time and sync the tracks.
pub fn sender_report(
    ssrc: u32,
    ntp: u64,
    rtp_time: u32,
    packets: u32,
    octets: u32,
    cname: &str,
) -> Bytes {
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    let mut out = BytesMut::with_capacity(28 + 12 + cname.len() + 4);
    out.put_u8(0x80);
    out.put_u8(200);
    out.put_u16(6);
    out.put_u32(ssrc);
    out.put_u64(ntp);
    out.put_u32(rtp_time);
    out.put_u32(packets);
    out.put_u32(octets);
    // SDES: one chunk, CNAME item, END, padded to 32 bits.
    let chunk_len = 4 + 2 + cname.len() + 1;
    let padded = chunk_len.div_ceil(4) * 4;
    out.put_u8(0x81);
    out.put_u8(202);
    out.put_u16((padded / 4) as u16);
    out.put_u32(ssrc);
    out.put_u8(1);
    out.put_u8(cname.len() as u8);
    out.put_slice(cname);
    out.put_bytes(0, padded - chunk_len + 1);
    out.freeze()
}

/// One packet of a compound RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    /// A sender report (RFC 3550 §6.4.1): the sender's NTP time and the RTP time it maps to.
    SenderReport {
        /// The sender.
        ssrc: u32,
        /// NTP timestamp.
        ntp: u64,
        /// The RTP timestamp of the same instant.
        rtp_time: u32,
        /// Packets sent.
        packets: u32,
        /// Payload octets sent.
        octets: u32,
    },
    /// A receiver report (RFC 3550 §6.4.2); its blocks are not read.
    ReceiverReport {
        /// The reporter.
        ssrc: u32,
    },
    /// BYE (RFC 3550 §6.6).
    Bye {
        /// The sources leaving.
        ssrcs: Vec<u32>,
    },
    /// Any other type (SDES, APP, feedback), skipped.
    Other {
        /// The packet type.
        packet_type: u8,
    },
}

/// Reads a compound RTCP packet.
pub fn parse_rtcp(data: &[u8]) -> Result<Vec<RtcpPacket>, RtpError> {
    const WHAT: &str = "RTCP packet";
    let mut packets = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(RtpError::Truncated(WHAT));
        }
        let version = rest[0] >> 6;
        if version != 2 {
            return Err(RtpError::Version(version));
        }
        let count = usize::from(rest[0] & 0x1f);
        let packet_type = rest[1];
        let len = 4 * (1 + usize::from(u16::from_be_bytes([rest[2], rest[3]])));
        let body = rest.get(4..len).ok_or(RtpError::Truncated(WHAT))?;
        let word = |i: usize| -> Result<u32, RtpError> {
            body.get(4 * i..4 * i + 4)
                .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
                .ok_or(RtpError::Truncated(WHAT))
        };
        packets.push(match packet_type {
            200 => RtcpPacket::SenderReport {
                ssrc: word(0)?,
                ntp: (u64::from(word(1)?) << 32) | u64::from(word(2)?),
                rtp_time: word(3)?,
                packets: word(4)?,
                octets: word(5)?,
            },
            201 => RtcpPacket::ReceiverReport { ssrc: word(0)? },
            203 => RtcpPacket::Bye {
                ssrcs: (0..count).map(word).collect::<Result<_, _>>()?,
            },
            packet_type => RtcpPacket::Other { packet_type },
        });
        rest = &rest[len..];
    }
    Ok(packets)
}

/// Sequence-number bookkeeping of one receiver (RFC 3550 §A.1, simplified): is this packet
/// the next one, a late duplicate or reordered one, or after a gap?
#[derive(Debug, Clone, Copy, Default)]
struct SequenceCheck {
    next: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    InOrder,
    /// Packets were lost (or will arrive late): what was being assembled is incomplete.
    Gap,
    /// Older than the newest packet seen: already given up on; ignored.
    Late,
}

impl SequenceCheck {
    fn check(&mut self, seq: u16) -> Arrival {
        let arrival = match self.next {
            None => Arrival::InOrder,
            Some(next) => match seq.wrapping_sub(next) as i16 {
                0 => Arrival::InOrder,
                d if d > 0 => Arrival::Gap,
                _ => return Arrival::Late,
            },
        };
        self.next = Some(seq.wrapping_add(1));
        arrival
    }
}

/// Derives decode times for video whose RTP timestamps are presentation times in decode
/// order. Without reordering (no B-frames) frames pass at once with `dts = pts`. When a frame
/// arrives whose presentation time is before the last decode time handed out, the sender
/// reorders: from then on frames are held back (one more each time, up to [`MAX_REORDER`])
/// and each gets as decode time the smallest presentation time not yet used, so decode times
/// rise and never pass presentation times. Frames handed out before the reordering was seen
/// get `pts` raised to their `dts` (a glitch of the first frames only).
#[derive(Debug, Default)]
struct DecodeTimes {
    depth: usize,
    held: VecDeque<MediaFrame>,
    held_media: usize,
    unused_pts: BinaryHeap<Reverse<i64>>,
    last_dts: Option<i64>,
}

impl DecodeTimes {
    fn push(&mut self, frame: MediaFrame, out: &mut VecDeque<MediaFrame>) {
        if frame.kind == FrameKind::Media {
            if let Some(last) = self.last_dts {
                if frame.pts < last && self.depth < MAX_REORDER {
                    self.depth += 1;
                    self.unused_pts.push(Reverse(last));
                }
            }
            self.unused_pts.push(Reverse(frame.pts));
            self.held_media += 1;
        }
        self.held.push_back(frame);
        while self.held_media > self.depth {
            let Some(mut f) = self.held.pop_front() else {
                break;
            };
            if f.kind == FrameKind::Media {
                self.held_media -= 1;
                let candidate = self.unused_pts.pop().map_or(f.pts, |Reverse(p)| p);
                let dts = match self.last_dts {
                    Some(last) => candidate.max(last + 1),
                    None => candidate,
                };
                f.dts = dts;
                f.pts = f.pts.max(dts);
                self.last_dts = Some(dts);
            } else {
                let t = self.last_dts.unwrap_or(f.pts);
                f.dts = t;
                f.pts = t;
            }
            out.push_back(f);
        }
    }
}

/// The H.264 / H.265 differences the NAL payload formats care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NalCodec {
    H264,
    H265,
}

impl NalCodec {
    fn codec(self) -> Codec {
        match self {
            NalCodec::H264 => Codec::H264,
            NalCodec::H265 => Codec::H265,
        }
    }

    fn header_len(self) -> usize {
        match self {
            NalCodec::H264 => 1,
            NalCodec::H265 => 2,
        }
    }

    fn nal_type(self, nal: &[u8]) -> u8 {
        match self {
            NalCodec::H264 => h264_nal_type(nal),
            NalCodec::H265 => nal.first().map_or(0, |b| (b >> 1) & 0x3f),
        }
    }

    /// IDR for H.264; IRAP (BLA, IDR, CRA: 16 to 23) for H.265.
    fn is_keyframe(self, nal_type: u8) -> bool {
        match self {
            NalCodec::H264 => nal_type == NAL_IDR,
            NalCodec::H265 => (16..=23).contains(&nal_type),
        }
    }

    fn is_parameter_set(self, nal_type: u8) -> bool {
        match self {
            NalCodec::H264 => nal_type == NAL_SPS || nal_type == NAL_PPS,
            NalCodec::H265 => (32..=34).contains(&nal_type),
        }
    }

    /// Aggregation packet type (STAP-A, AP).
    fn aggregate(self) -> u8 {
        match self {
            NalCodec::H264 => 24,
            NalCodec::H265 => 48,
        }
    }

    /// Fragmentation unit type (FU-A, FU).
    fn fragment(self) -> u8 {
        match self {
            NalCodec::H264 => 28,
            NalCodec::H265 => 49,
        }
    }
}

/// RTP packets of one H.264 (RFC 6184) or H.265 (RFC 7798) track in, frames out. H.264
/// parameter sets sent in-band become config frames (an AVCDecoderConfigurationRecord) when
/// they differ from the current config and are left out of media payloads; H.265 parameter
/// sets stay in the media payloads, and the description's are put before each keyframe that
/// lacks them.
#[derive(Debug)]
pub struct VideoDepacketizer {
    codec: NalCodec,
    timeline: RtpTimeline,
    sequence: SequenceCheck,
    decode_times: DecodeTimes,
    au: Vec<Bytes>,
    au_size: usize,
    au_timestamp: Option<u32>,
    fragment: Option<BytesMut>,
    damaged: bool,
    need_keyframe: bool,
    config: Option<Bytes>,
    sps: Vec<Bytes>,
    pps: Vec<Bytes>,
    out_of_band: Vec<Bytes>,
    out: VecDeque<MediaFrame>,
}

impl VideoDepacketizer {
    /// An H.264 depacketizer; `config` is the AVCDecoderConfigurationRecord from the session
    /// description, if it had `sprop-parameter-sets`.
    pub fn h264(config: Option<Bytes>) -> VideoDepacketizer {
        let (sps, pps) = config
            .as_deref()
            .and_then(|c| AvcConfig::parse(c).ok())
            .map(|c| (c.sps, c.pps))
            .unwrap_or_default();
        VideoDepacketizer {
            config,
            sps,
            pps,
            ..Self::new(NalCodec::H264)
        }
    }

    /// An H.265 depacketizer; `parameter_sets` are the description's `sprop-vps/sps/pps`.
    pub fn h265(parameter_sets: Vec<Bytes>) -> VideoDepacketizer {
        VideoDepacketizer {
            out_of_band: parameter_sets,
            ..Self::new(NalCodec::H265)
        }
    }

    fn new(codec: NalCodec) -> VideoDepacketizer {
        VideoDepacketizer {
            codec,
            timeline: RtpTimeline::new(VIDEO_CLOCK_RATE),
            sequence: SequenceCheck::default(),
            decode_times: DecodeTimes::default(),
            au: Vec::new(),
            au_size: 0,
            au_timestamp: None,
            fragment: None,
            damaged: false,
            need_keyframe: true,
            config: None,
            sps: Vec::new(),
            pps: Vec::new(),
            out_of_band: Vec::new(),
            out: VecDeque::new(),
        }
    }

    /// Puts this track on a shared timeline; see [`RtpTimeline::anchor`].
    pub fn anchor(&mut self, rtp_time: u32, micros: i64) -> bool {
        self.timeline.anchor(rtp_time, micros)
    }

    /// The current codec config (H.264 only).
    pub fn config(&self) -> Option<&Bytes> {
        self.config.as_ref()
    }

    /// Takes one packet. An error reports a packet that was dropped (the frame it belonged to
    /// is dropped too); the depacketizer goes on with the next one.
    pub fn push(&mut self, packet: &RtpPacket) -> Result<(), RtpError> {
        let arrival = self.sequence.check(packet.header.sequence);
        if arrival == Arrival::Late {
            return Ok(());
        }
        let gap = arrival == Arrival::Gap;
        let timestamp = packet.header.timestamp;
        let new_au = self.au_timestamp != Some(timestamp);
        if gap {
            // Whatever was lost, frames after it may refer to it.
            self.need_keyframe = true;
            if self.au_timestamp.is_some() {
                // The loss is inside the access unit being assembled (its middle, or its
                // tail when this packet starts the next one).
                self.damaged = true;
                self.fragment = None;
            }
        }
        if new_au {
            self.finish();
            self.au_timestamp = Some(timestamp);
            // After a loss at an access unit boundary, this one is whole only if this packet
            // is its beginning.
            if gap && !self.starts_access_unit(&packet.payload) {
                self.damaged = true;
            }
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

    /// The next frame, in decode order.
    pub fn pop(&mut self) -> Option<MediaFrame> {
        self.out.pop_front()
    }

    /// Whether a packet's first NAL unit can begin an access unit: a parameter set, SEI or
    /// delimiter, or the first slice of a picture (`first_mb_in_slice` 0, H.264 7.3.3;
    /// `first_slice_segment_in_pic_flag`, H.265 7.3.6.1).
    fn starts_access_unit(&self, payload: &[u8]) -> bool {
        let hl = self.codec.header_len();
        let t = self.codec.nal_type(payload);
        let (nal_type, first_data) = if t == self.codec.aggregate() {
            let nal = payload.get(hl + 2..).unwrap_or_default();
            (self.codec.nal_type(nal), nal.get(hl))
        } else if t == self.codec.fragment() {
            match payload.get(hl) {
                Some(fu) if fu & 0x80 != 0 => {
                    let mask = if self.codec == NalCodec::H264 {
                        0x1f
                    } else {
                        0x3f
                    };
                    (fu & mask, payload.get(hl + 1))
                }
                _ => return false,
            }
        } else {
            (t, payload.get(hl))
        };
        let first_slice = first_data.is_some_and(|b| b & 0x80 != 0);
        match self.codec {
            NalCodec::H264 => match nal_type {
                1..=5 => first_slice,
                6..=9 | 13..=18 => true,
                _ => false,
            },
            NalCodec::H265 => match nal_type {
                0..=31 => first_slice,
                32..=35 | 39 | 41..=44 => true,
                _ => false,
            },
        }
    }

    fn payload(&mut self, payload: &Bytes) -> Result<(), RtpError> {
        let hl = self.codec.header_len();
        if payload.len() < hl {
            return Ok(());
        }
        let nal_type = self.codec.nal_type(payload);
        if nal_type == self.codec.aggregate() {
            if self.fragment.take().is_some() {
                self.damaged = true;
            }
            let mut pos = hl;
            while pos < payload.len() {
                let size = payload
                    .get(pos..pos + 2)
                    .map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])))
                    .ok_or(RtpError::Malformed("aggregation packet"))?;
                let nal = payload
                    .get(pos + 2..pos + 2 + size)
                    .ok_or(RtpError::Malformed("aggregation packet"))?;
                if !nal.is_empty() {
                    self.nal(payload.slice_ref(nal));
                }
                pos += 2 + size;
            }
            Ok(())
        } else if nal_type == self.codec.fragment() {
            let Some(&fu) = payload.get(hl) else {
                return Err(RtpError::Malformed("fragmentation unit"));
            };
            let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
            let data = &payload[hl + 1..];
            if start {
                if self.fragment.is_some() {
                    self.damaged = true;
                }
                let mut nal = BytesMut::with_capacity(hl + data.len() * 4);
                match self.codec {
                    NalCodec::H264 => nal.put_u8((payload[0] & 0xe0) | (fu & 0x1f)),
                    NalCodec::H265 => {
                        nal.put_u8((payload[0] & 0x81) | ((fu & 0x3f) << 1));
                        nal.put_u8(payload[1]);
                    }
                }
                nal.put_slice(data);
                self.fragment = Some(nal);
            } else if let Some(nal) = &mut self.fragment {
                if nal.len() + data.len() > MAX_ACCESS_UNIT {
                    self.fragment = None;
                    self.damaged = true;
                    return Ok(());
                }
                nal.put_slice(data);
            } else {
                // The start was lost: what follows cannot be decoded.
                self.damaged = true;
                return Ok(());
            }
            if end {
                if let Some(nal) = self.fragment.take() {
                    self.nal(nal.freeze());
                }
            }
            Ok(())
        } else if match self.codec {
            NalCodec::H264 => (1..=23).contains(&nal_type),
            NalCodec::H265 => nal_type < 48,
        } {
            if self.fragment.take().is_some() {
                self.damaged = true;
            }
            self.nal(payload.clone());
            Ok(())
        } else {
            Err(RtpError::Unsupported {
                codec: self.codec.codec(),
                nal_type,
            })
        }
    }

    fn nal(&mut self, nal: Bytes) {
        if self.codec == NalCodec::H264 {
            match h264_nal_type(&nal) {
                NAL_SPS => {
                    if !self.sps.contains(&nal) {
                        self.sps = vec![nal];
                    }
                    return;
                }
                NAL_PPS => {
                    if !self.pps.contains(&nal) {
                        self.pps = vec![nal];
                    }
                    return;
                }
                _ => {}
            }
        }
        self.au_size += nal.len();
        if self.au_size > MAX_ACCESS_UNIT {
            self.damaged = true;
            self.au.clear();
            return;
        }
        self.au.push(nal);
    }

    /// Ends the access unit being assembled.
    fn finish(&mut self) {
        let Some(timestamp) = self.au_timestamp.take() else {
            return;
        };
        let mut nals = std::mem::take(&mut self.au);
        self.au_size = 0;
        let pts = self.timeline.micros(timestamp);
        if self.codec == NalCodec::H264 && !self.sps.is_empty() && !self.pps.is_empty() {
            let current = self
                .config
                .as_deref()
                .and_then(|c| AvcConfig::parse(c).ok());
            let changed = current.is_none_or(|c| c.sps != self.sps || c.pps != self.pps);
            if changed {
                if let Ok(config) =
                    AvcConfig::from_parameter_sets(self.sps.clone(), self.pps.clone())
                {
                    let record = config.to_record();
                    self.config = Some(record.clone());
                    self.emit(MediaFrame {
                        track: Track::Video,
                        codec: Codec::H264,
                        kind: FrameKind::Config,
                        dts: pts,
                        pts,
                        keyframe: false,
                        payload: record,
                    });
                }
            }
        }
        if std::mem::take(&mut self.damaged) {
            self.need_keyframe = true;
            return;
        }
        if nals.is_empty() {
            return;
        }
        let keyframe = nals
            .iter()
            .any(|n| self.codec.is_keyframe(self.codec.nal_type(n)));
        if self.need_keyframe && !keyframe {
            return;
        }
        self.need_keyframe = false;
        if keyframe
            && self.codec == NalCodec::H265
            && !nals
                .iter()
                .any(|n| self.codec.is_parameter_set(self.codec.nal_type(n)))
        {
            nals.splice(0..0, self.out_of_band.iter().cloned());
        }
        let refs: Vec<&[u8]> = nals.iter().map(|n| &n[..]).collect();
        self.emit(MediaFrame {
            track: Track::Video,
            codec: self.codec.codec(),
            kind: FrameKind::Media,
            dts: pts,
            pts,
            keyframe,
            payload: to_avcc(&refs),
        });
    }

    fn emit(&mut self, frame: MediaFrame) {
        self.decode_times.push(frame, &mut self.out);
    }
}

/// Fills the fixed header fields of a sender and counts what it sent (for sender reports).
#[derive(Debug, Clone, Copy)]
struct Sender {
    payload_type: u8,
    ssrc: u32,
    sequence: u16,
    packets: u32,
    octets: u32,
}

impl Sender {
    fn skip(&mut self, packets: u16, octets: u32) {
        self.sequence = self.sequence.wrapping_add(packets);
        self.packets = self.packets.wrapping_add(u32::from(packets));
        self.octets = self.octets.wrapping_add(octets);
    }

    fn packet(&mut self, marker: bool, timestamp: u32, parts: &[&[u8]]) -> Bytes {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut out = BytesMut::with_capacity(RtpHeader::LEN + len);
        RtpHeader {
            marker,
            payload_type: self.payload_type,
            sequence: self.sequence,
            timestamp,
            ssrc: self.ssrc,
        }
        .write(&mut out);
        for p in parts {
            out.put_slice(p);
        }
        self.sequence = self.sequence.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(len as u32);
        out.freeze()
    }
}

/// Counters of a packetizer, for RTCP sender reports and PLAY's `RTP-Info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderStats {
    /// The sequence number of the next packet.
    pub next_sequence: u16,
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
}

/// Frames of one H.264 or H.265 track in, RTP packets out (RFC 6184 mode 1, RFC 7798): NAL
/// units up to the payload limit go alone or, several small ones together, in an aggregation
/// packet (STAP-A, AP); larger ones in fragmentation units (FU-A, FU). The config's parameter
/// sets go before every keyframe that lacks them; the marker bit is set on the last packet of
/// each access unit.
#[derive(Debug, Clone)]
pub struct VideoPacketizer {
    codec: NalCodec,
    sender: Sender,
    clock: RtpClock,
    max_payload: usize,
    length_size: u8,
    parameter_sets: Vec<Bytes>,
}

impl VideoPacketizer {
    /// An H.264 packetizer with this payload type, SSRC, first sequence number and clock
    /// (90 kHz, with the caller's random offset).
    pub fn h264(payload_type: u8, ssrc: u32, sequence: u16, clock: RtpClock) -> VideoPacketizer {
        Self::new(NalCodec::H264, payload_type, ssrc, sequence, clock)
    }

    /// An H.265 packetizer; see [`Self::h264`].
    pub fn h265(payload_type: u8, ssrc: u32, sequence: u16, clock: RtpClock) -> VideoPacketizer {
        Self::new(NalCodec::H265, payload_type, ssrc, sequence, clock)
    }

    fn new(
        codec: NalCodec,
        payload_type: u8,
        ssrc: u32,
        sequence: u16,
        clock: RtpClock,
    ) -> VideoPacketizer {
        VideoPacketizer {
            codec,
            sender: Sender {
                payload_type,
                ssrc,
                sequence,
                packets: 0,
                octets: 0,
            },
            clock,
            max_payload: MAX_PAYLOAD,
            length_size: 4,
            parameter_sets: Vec::new(),
        }
    }

    /// Sets the largest payload (at least 16 bytes; [`MAX_PAYLOAD`] by default).
    pub fn set_max_payload(&mut self, max: usize) {
        self.max_payload = max.max(16);
    }

    /// Takes a codec config (AVCDecoderConfigurationRecord / HEVCDecoderConfigurationRecord):
    /// its parameter sets go before keyframes from now on.
    pub fn set_config(&mut self, record: &[u8]) -> Result<(), RtpError> {
        match self.codec {
            NalCodec::H264 => {
                let avc = AvcConfig::parse(record)?;
                self.length_size = avc.length_size;
                self.parameter_sets = avc.sps.into_iter().chain(avc.pps).collect();
            }
            NalCodec::H265 => {
                self.parameter_sets = super::sdp::hvcc_parameter_sets(record)?;
                self.length_size = record.get(21).map_or(4, |b| (b & 0x03) + 1);
            }
        }
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

    /// Appends the packets of one frame to `out`. A config frame sends nothing and replaces
    /// the config.
    pub fn packetize(&mut self, frame: &MediaFrame, out: &mut Vec<Bytes>) -> Result<(), RtpError> {
        if frame.kind == FrameKind::Config {
            return self.set_config(&frame.payload);
        }
        let nals = avcc_nals(&frame.payload, self.length_size)?;
        let codec = self.codec;
        let keyframe = nals.iter().any(|n| codec.is_keyframe(codec.nal_type(n)));
        let has_sets = nals
            .iter()
            .any(|n| codec.is_parameter_set(codec.nal_type(n)));
        let sets = self.parameter_sets.clone();
        let mut units: Vec<&[u8]> = Vec::with_capacity(nals.len() + sets.len());
        if keyframe && !has_sets {
            units.extend(sets.iter().map(|s| &s[..]));
        }
        units.extend(nals);
        // An empty unit has no header to read and nothing to send (the config parsers and
        // `avcc_nals` leave them out already; this keeps the loop below safe on its own).
        units.retain(|u| !u.is_empty());
        let timestamp = self.clock.rtp_time(frame.pts);
        let hl = codec.header_len();
        let max = self.max_payload;
        let mut i = 0;
        while i < units.len() {
            let last_unit = |j: usize| j + 1 == units.len();
            // How many units from `i` fit one aggregation packet.
            let mut size = hl;
            let mut n = 0;
            while let Some(u) = units.get(i + n) {
                if size + 2 + u.len() > max {
                    break;
                }
                size += 2 + u.len();
                n += 1;
            }
            if n >= 2 {
                let mut payload = BytesMut::with_capacity(size);
                match codec {
                    NalCodec::H264 => {
                        let nri = units[i..i + n]
                            .iter()
                            .map(|u| u.first().map_or(0, |b| b & 0x60))
                            .max()
                            .unwrap_or(0);
                        payload.put_u8(nri | 24);
                    }
                    NalCodec::H265 => {
                        let tid = units[i..i + n]
                            .iter()
                            .map(|u| u.get(1).map_or(1, |b| b & 0x07))
                            .min()
                            .unwrap_or(1);
                        payload.put_u8(48 << 1);
                        payload.put_u8(tid);
                    }
                }
                for u in &units[i..i + n] {
                    payload.put_u16(u.len() as u16);
                    payload.put_slice(u);
                }
                out.push(
                    self.sender
                        .packet(last_unit(i + n - 1), timestamp, &[&payload]),
                );
                i += n;
            } else if units[i].len() <= max {
                out.push(self.sender.packet(last_unit(i), timestamp, &[units[i]]));
                i += 1;
            } else {
                self.fragment(units[i], last_unit(i), timestamp, out);
                i += 1;
            }
        }
        Ok(())
    }

    fn fragment(&mut self, nal: &[u8], last_unit: bool, timestamp: u32, out: &mut Vec<Bytes>) {
        let hl = self.codec.header_len();
        let nal_type = self.codec.nal_type(nal);
        let mut indicator = [0u8; 3];
        let prefix_len = hl + 1;
        match self.codec {
            NalCodec::H264 => {
                indicator[0] = (nal[0] & 0xe0) | 28;
                indicator[1] = nal_type;
            }
            NalCodec::H265 => {
                indicator[0] = (nal[0] & 0x81) | (49 << 1);
                indicator[1] = nal.get(1).copied().unwrap_or(1);
                indicator[2] = nal_type;
            }
        }
        let data = &nal[hl..];
        let chunk = self.max_payload - prefix_len;
        let count = data.len().div_ceil(chunk);
        for (k, part) in data.chunks(chunk).enumerate() {
            let mut prefix = indicator;
            let fu = &mut prefix[hl];
            if k == 0 {
                *fu |= 0x80;
            }
            let end = k + 1 == count;
            if end {
                *fu |= 0x40;
            }
            out.push(self.sender.packet(
                end && last_unit,
                timestamp,
                &[&prefix[..prefix_len], part],
            ));
        }
    }
}

/// The AU header layout of an `mpeg4-generic` stream (RFC 3640 §3.2.1), from its fmtp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuHeaderLayout {
    /// Bits of AU-size.
    pub size_length: u8,
    /// Bits of the first AU-Index.
    pub index_length: u8,
    /// Bits of each following AU-Index-delta.
    pub index_delta_length: u8,
}

impl AuHeaderLayout {
    /// AAC-hbr (RFC 3640 §3.3.6): 13, 3, 3.
    pub const AAC_HBR: AuHeaderLayout = AuHeaderLayout {
        size_length: 13,
        index_length: 3,
        index_delta_length: 3,
    };

    /// The layout of a track's fmtp (`sizelength`, `indexlength`, `indexdeltalength`);
    /// AAC-hbr's for missing values. `None` when the sizes make no sense (0 or over 16 bits,
    /// or no AU headers at all).
    pub fn from_fmtp(track: &super::sdp::SdpTrack) -> Option<AuHeaderLayout> {
        let get = |k: &str, default: u8| match track.fmtp(k) {
            Some(v) => v.trim().parse::<u8>().ok(),
            None => Some(default),
        };
        let layout = AuHeaderLayout {
            size_length: get("sizelength", 13)?,
            index_length: get("indexlength", 3)?,
            index_delta_length: get("indexdeltalength", 3)?,
        };
        let ok = (1..=16).contains(&layout.size_length)
            && layout.index_length <= 16
            && layout.index_delta_length <= 16;
        ok.then_some(layout)
    }
}

/// MSB-first bit reader over AU headers.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: u8) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }
}

/// RTP packets of one AAC track (RFC 3640 `mpeg4-generic`) in, raw AUs out.
#[derive(Debug)]
pub struct AacDepacketizer {
    layout: AuHeaderLayout,
    timeline: RtpTimeline,
    sequence: SequenceCheck,
    /// A fragmented AU being assembled: its timestamp, its bytes, its full size.
    fragment: Option<(u32, BytesMut, usize)>,
    out: VecDeque<MediaFrame>,
}

impl AacDepacketizer {
    /// A depacketizer for AUs in a clock of `clock_rate` Hz (the sampling rate).
    pub fn new(clock_rate: u32, layout: AuHeaderLayout) -> AacDepacketizer {
        AacDepacketizer {
            layout,
            timeline: RtpTimeline::new(clock_rate),
            sequence: SequenceCheck::default(),
            fragment: None,
            out: VecDeque::new(),
        }
    }

    /// Puts this track on a shared timeline; see [`RtpTimeline::anchor`].
    pub fn anchor(&mut self, rtp_time: u32, micros: i64) -> bool {
        self.timeline.anchor(rtp_time, micros)
    }

    /// Takes one packet. An error reports a dropped packet; the depacketizer goes on.
    pub fn push(&mut self, packet: &RtpPacket) -> Result<(), RtpError> {
        match self.sequence.check(packet.header.sequence) {
            Arrival::Late => return Ok(()),
            Arrival::Gap => self.fragment = None,
            Arrival::InOrder => {}
        }
        let result = self.payload(packet);
        if result.is_err() {
            self.fragment = None;
        }
        result
    }

    /// The next AU.
    pub fn pop(&mut self) -> Option<MediaFrame> {
        self.out.pop_front()
    }

    fn payload(&mut self, packet: &RtpPacket) -> Result<(), RtpError> {
        const WHAT: &str = "AU header section";
        let p = &packet.payload;
        let ts = packet.header.timestamp;
        let header_bits = p
            .get(..2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or(RtpError::Truncated(WHAT))?;
        let header_bytes = header_bits.div_ceil(8);
        let headers = p
            .get(2..2 + header_bytes)
            .ok_or(RtpError::Truncated(WHAT))?;
        let mut data_pos = 2 + header_bytes;
        let first_bits = usize::from(self.layout.size_length + self.layout.index_length);
        let next_bits = usize::from(self.layout.size_length + self.layout.index_delta_length);
        let mut bits = Bits {
            data: headers,
            pos: 0,
        };
        let mut aus: Vec<(usize, u32)> = Vec::new();
        while header_bits - bits.pos
            >= if aus.is_empty() {
                first_bits
            } else {
                next_bits
            }
        {
            let size = bits
                .read(self.layout.size_length)
                .ok_or(RtpError::Malformed(WHAT))? as usize;
            if aus.is_empty() {
                // AU-Index: 0 unless the sender interleaves, which AAC-hbr senders do not.
                bits.read(self.layout.index_length)
                    .ok_or(RtpError::Malformed(WHAT))?;
                aus.push((size, 0));
            } else {
                let delta = bits
                    .read(self.layout.index_delta_length)
                    .ok_or(RtpError::Malformed(WHAT))?;
                let offset = aus.last().map_or(0, |a| a.1) + delta + 1;
                aus.push((size, offset));
            }
        }
        if aus.is_empty() {
            return Err(RtpError::Malformed(WHAT));
        }
        let data = &p[data_pos..];
        // One AU header whose AU is larger than the data: a fragment (RFC 3640 §3.2.3).
        if let [(size, _)] = aus[..] {
            if size > data.len() || self.fragment.is_some() {
                return self.fragment_part(ts, size, p.slice(data_pos..), packet.header.marker);
            }
        }
        self.fragment = None;
        for (size, offset) in aus {
            let au = p
                .get(data_pos..data_pos + size)
                .ok_or(RtpError::Malformed("AU data"))?;
            data_pos += size;
            let timestamp = ts.wrapping_add(offset.wrapping_mul(AAC_FRAME_SAMPLES));
            self.emit(timestamp, p.slice_ref(au));
        }
        Ok(())
    }

    fn fragment_part(
        &mut self,
        ts: u32,
        size: usize,
        data: Bytes,
        marker: bool,
    ) -> Result<(), RtpError> {
        match &mut self.fragment {
            Some((t, buf, total)) if *t == ts && *total == size => {
                if buf.len() + data.len() > size {
                    self.fragment = None;
                    return Err(RtpError::Malformed("AU fragment"));
                }
                buf.put_slice(&data);
            }
            _ => {
                // A new AU. Its first fragment must be the start: a continuation whose start
                // was lost cannot be told apart, so it is taken as a start and fails the size
                // check at the end.
                let mut buf = BytesMut::with_capacity(size);
                buf.put_slice(&data);
                self.fragment = Some((ts, buf, size));
            }
        }
        let complete = self
            .fragment
            .as_ref()
            .is_some_and(|(_, b, s)| b.len() == *s);
        if complete || marker {
            if let Some((t, buf, total)) = self.fragment.take() {
                if buf.len() != total {
                    return Err(RtpError::Malformed("AU fragment"));
                }
                self.emit(t, buf.freeze());
            }
        }
        Ok(())
    }

    fn emit(&mut self, timestamp: u32, au: Bytes) {
        let pts = self.timeline.micros(timestamp);
        self.out.push_back(MediaFrame {
            track: Track::Audio,
            codec: Codec::Aac,
            kind: FrameKind::Media,
            dts: pts,
            pts,
            keyframe: true,
            payload: au,
        });
    }
}

/// RTP packets of one `MP4A-LATM` track (RFC 6416, `cpresent=0`: no StreamMuxConfig in
/// band) in, raw AUs out. A packet holds one or more whole AudioMuxElements, or one element's
/// fragment, the last of which has the marker bit (RFC 6416 §6.1). Each element is
/// `subframes` times a PayloadLengthInfo (bytes of 255 then one under 255, summed) and that
/// many bytes of AU (ISO/IEC 14496-3 1.7.3, frameLengthType 0).
#[derive(Debug)]
pub struct LatmDepacketizer {
    subframes: u8,
    timeline: RtpTimeline,
    sequence: SequenceCheck,
    /// An element being assembled over packets: its timestamp and bytes so far.
    fragment: Option<(u32, BytesMut)>,
    out: VecDeque<MediaFrame>,
}

impl LatmDepacketizer {
    /// A depacketizer for a clock of `clock_rate` Hz (the sampling rate) and elements of
    /// `subframes` AUs (numSubFrames + 1 of the StreamMuxConfig).
    pub fn new(clock_rate: u32, subframes: u8) -> LatmDepacketizer {
        LatmDepacketizer {
            subframes: subframes.max(1),
            timeline: RtpTimeline::new(clock_rate),
            sequence: SequenceCheck::default(),
            fragment: None,
            out: VecDeque::new(),
        }
    }

    /// Puts this track on a shared timeline; see [`RtpTimeline::anchor`].
    pub fn anchor(&mut self, rtp_time: u32, micros: i64) -> bool {
        self.timeline.anchor(rtp_time, micros)
    }

    /// Takes one packet. An error reports a dropped packet or element; the depacketizer goes
    /// on with the next.
    pub fn push(&mut self, packet: &RtpPacket) -> Result<(), RtpError> {
        match self.sequence.check(packet.header.sequence) {
            Arrival::Late => return Ok(()),
            Arrival::Gap => self.fragment = None,
            Arrival::InOrder => {}
        }
        let ts = packet.header.timestamp;
        let data = match self.fragment.take() {
            // A continuation of the element being assembled.
            Some((t, mut buf)) if t == ts => {
                if buf.len() + packet.payload.len() > MAX_ACCESS_UNIT {
                    return Err(RtpError::Malformed("LATM element over the size limit"));
                }
                buf.put_slice(&packet.payload);
                buf.freeze()
            }
            // A new timestamp: what was being assembled lost its end.
            _ => packet.payload.clone(),
        };
        if !packet.header.marker {
            let mut buf = BytesMut::with_capacity(data.len() * 2);
            buf.put_slice(&data);
            self.fragment = Some((ts, buf));
            return Ok(());
        }
        self.elements(ts, &data)
    }

    /// The next AU.
    pub fn pop(&mut self) -> Option<MediaFrame> {
        self.out.pop_front()
    }

    /// Splits whole elements into AUs: all of them, or none if any length is wrong.
    fn elements(&mut self, ts: u32, data: &Bytes) -> Result<(), RtpError> {
        let mut aus = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            for _ in 0..self.subframes {
                let mut len = 0usize;
                loop {
                    let byte = *data
                        .get(pos)
                        .ok_or(RtpError::Truncated("LATM PayloadLengthInfo"))?;
                    pos += 1;
                    len += usize::from(byte);
                    if byte != 255 {
                        break;
                    }
                }
                let end = pos + len;
                if end > data.len() {
                    return Err(RtpError::Truncated("LATM payload"));
                }
                aus.push(data.slice(pos..end));
                pos = end;
            }
        }
        for (i, au) in aus.into_iter().enumerate() {
            if au.is_empty() {
                continue;
            }
            let timestamp = ts.wrapping_add((i as u32).wrapping_mul(AAC_FRAME_SAMPLES));
            let pts = self.timeline.micros(timestamp);
            self.out.push_back(MediaFrame {
                track: Track::Audio,
                codec: Codec::Aac,
                kind: FrameKind::Media,
                dts: pts,
                pts,
                keyframe: true,
                payload: au,
            });
        }
        Ok(())
    }
}

/// Raw AAC AUs in, RTP packets out (RFC 3640 AAC-hbr: 13-bit AU-size, 3-bit index): as many
/// consecutive AUs per packet as fit the payload limit, an AU larger than that in fragments.
#[derive(Debug, Clone)]
pub struct AacPacketizer {
    sender: Sender,
    clock: RtpClock,
    max_payload: usize,
}

impl AacPacketizer {
    /// A packetizer with this payload type, SSRC, first sequence number and clock (the
    /// sampling rate, with the caller's random offset).
    pub fn new(payload_type: u8, ssrc: u32, sequence: u16, clock: RtpClock) -> AacPacketizer {
        AacPacketizer {
            sender: Sender {
                payload_type,
                ssrc,
                sequence,
                packets: 0,
                octets: 0,
            },
            clock,
            max_payload: MAX_PAYLOAD,
        }
    }

    /// Sets the largest payload (at least 16 bytes; [`MAX_PAYLOAD`] by default).
    pub fn set_max_payload(&mut self, max: usize) {
        self.max_payload = max.max(16);
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

    /// Appends the packets of one AU frame to `out` (config frames send nothing).
    pub fn packetize(&mut self, frame: &MediaFrame, out: &mut Vec<Bytes>) -> Result<(), RtpError> {
        if frame.kind == FrameKind::Config {
            return Ok(());
        }
        self.packetize_aus(frame.pts, &[&frame.payload], out)
    }

    /// Appends the packets of consecutive AUs, the first at `pts` microseconds, each
    /// [`AAC_FRAME_SAMPLES`] after the one before.
    pub fn packetize_aus(
        &mut self,
        pts: i64,
        aus: &[&[u8]],
        out: &mut Vec<Bytes>,
    ) -> Result<(), RtpError> {
        if let Some(au) = aus.iter().find(|a| a.len() > 0x1fff) {
            return Err(RtpError::AuTooLarge(au.len()));
        }
        let base = self.clock.rtp_time(pts);
        let max = self.max_payload;
        let mut i = 0;
        while i < aus.len() {
            let timestamp = base.wrapping_add(i as u32 * AAC_FRAME_SAMPLES);
            let mut size = 2;
            let mut n = 0;
            while let Some(au) = aus.get(i + n) {
                if size + 2 + au.len() > max || n == 8 {
                    break;
                }
                size += 2 + au.len();
                n += 1;
            }
            if n == 0 {
                // One AU larger than a packet: fragments, each with the full AU-size.
                let au = aus[i];
                let header = au_header(au.len());
                let chunk = max - 4;
                let count = au.len().div_ceil(chunk);
                for (k, part) in au.chunks(chunk).enumerate() {
                    out.push(self.sender.packet(
                        k + 1 == count,
                        timestamp,
                        &[&[0, 16], &header, part],
                    ));
                }
                i += 1;
                continue;
            }
            let mut payload = BytesMut::with_capacity(size);
            payload.put_u16(16 * n as u16);
            for au in &aus[i..i + n] {
                payload.put_slice(&au_header(au.len()));
            }
            for au in &aus[i..i + n] {
                payload.put_slice(au);
            }
            out.push(self.sender.packet(true, timestamp, &[&payload]));
            i += n;
        }
        Ok(())
    }
}

/// The RTP clock rate of Opus, whatever the input rate (RFC 7587 §4.1).
pub const OPUS_CLOCK_RATE: u32 = 48_000;

/// Opus packets in, RTP packets out (RFC 7587 §4.2: one Opus packet per RTP packet, never
/// fragmented; the marker bit is left clear, as for a talkspurt that never ends).
#[derive(Debug, Clone)]
pub struct OpusPacketizer {
    sender: Sender,
    clock: RtpClock,
}

impl OpusPacketizer {
    /// A packetizer with this payload type, SSRC, first sequence number and clock (48 kHz,
    /// with the caller's random offset).
    pub fn new(payload_type: u8, ssrc: u32, sequence: u16, clock: RtpClock) -> OpusPacketizer {
        OpusPacketizer {
            sender: Sender {
                payload_type,
                ssrc,
                sequence,
                packets: 0,
                octets: 0,
            },
            clock,
        }
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

    /// Appends the packet of one Opus packet to `out` (config frames send nothing).
    pub fn packetize(&mut self, frame: &MediaFrame, out: &mut Vec<Bytes>) -> Result<(), RtpError> {
        if frame.kind == FrameKind::Config || frame.payload.is_empty() {
            return Ok(());
        }
        let timestamp = self.clock.rtp_time(frame.pts);
        out.push(self.sender.packet(false, timestamp, &[&frame.payload]));
        Ok(())
    }
}

/// RTP packets of one Opus track (RFC 7587) in, Opus packets out: each payload is one Opus
/// packet. A publisher's SDP carries no OpusHead; [`OpusHead::for_channels`] makes one.
///
/// [`OpusHead::for_channels`]: crate::protocol::codec::OpusHead::for_channels
#[derive(Debug)]
pub struct OpusDepacketizer {
    timeline: RtpTimeline,
    sequence: SequenceCheck,
    out: VecDeque<MediaFrame>,
}

impl Default for OpusDepacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl OpusDepacketizer {
    /// A depacketizer on the 48 kHz clock.
    pub fn new() -> OpusDepacketizer {
        OpusDepacketizer {
            timeline: RtpTimeline::new(OPUS_CLOCK_RATE),
            sequence: SequenceCheck::default(),
            out: VecDeque::new(),
        }
    }

    /// Puts this track on a shared timeline; see [`RtpTimeline::anchor`].
    pub fn anchor(&mut self, rtp_time: u32, micros: i64) -> bool {
        self.timeline.anchor(rtp_time, micros)
    }

    /// Takes one packet. Late packets are ignored; each packet stands alone, so a gap loses
    /// only what was lost.
    pub fn push(&mut self, packet: &RtpPacket) -> Result<(), RtpError> {
        if self.sequence.check(packet.header.sequence) == Arrival::Late {
            return Ok(());
        }
        if packet.payload.is_empty() {
            return Err(RtpError::Truncated("Opus packet"));
        }
        if self.out.len() >= 64 {
            self.out.pop_front();
        }
        let pts = self.timeline.micros(packet.header.timestamp);
        self.out.push_back(MediaFrame {
            track: Track::Audio,
            codec: Codec::Opus,
            kind: FrameKind::Media,
            dts: pts,
            pts,
            keyframe: true,
            payload: packet.payload.clone(),
        });
        Ok(())
    }

    /// The next Opus packet.
    pub fn pop(&mut self) -> Option<MediaFrame> {
        self.out.pop_front()
    }
}

/// An AAC-hbr AU header: 13-bit size, 3-bit index (delta) 0.
fn au_header(size: usize) -> [u8; 2] {
    ((size as u16) << 3).to_be_bytes()
}

mod av1;
pub use av1::{Av1Depacketizer, Av1Packetizer};

#[cfg(test)]
pub(super) mod tests;

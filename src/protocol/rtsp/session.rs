//! The RTP side of an RTSP session, sans-IO: what a publisher's tracks become ([`RtpPublish`]:
//! a depacketizer per announced track, RTCP sender reports putting every track on one
//! timeline, reordering of UDP packets, H.265 parameter sets sent in band) and what a player's
//! tracks are made of ([`RtpPlay`]: the description from the stream's codec configs, a
//! packetizer per track set up, `RTP-Info`, sender reports anchored to the media timeline).
//!
//! Bytes and frames in, frames and packets out; time and randomness are passed in. The
//! session actor owns the transports (interleaved channels or UDP sockets) and sends what
//! these return.

use std::ops::Range;
use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use streamgate_actors::media::{Codec, FrameKind, MediaFrame, Track};

use super::reorder::ReorderBuffer;
use super::rtp::{
    is_rtcp, ntp_timestamp, ntp_to_unix_micros, parse_rtcp, sender_report, AacDepacketizer,
    AacPacketizer, AuHeaderLayout, Av1Depacketizer, Av1Packetizer, LatmDepacketizer,
    OpusDepacketizer, OpusPacketizer, RtcpPacket, RtpClock, RtpHeader, RtpPacket, SenderStats,
    VideoDepacketizer, VideoPacketizer, OPUS_CLOCK_RATE,
};
use super::sdp::{self, SdpError, SdpTrack};
use crate::protocol::codec::{avcc_nals, hevc_record, AacConfig};
use crate::protocol::prefixed;

/// The app and stream name of an RTSP URL: path segments before the last, and the last
/// (queries and a track segment removed).
pub fn app_and_name(url: &str) -> Option<(String, String)> {
    let url = super::stream_url(url);
    let url: &str = &url;
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.split_once('/').map(|(_, p)| p)?;
    let path = path.split('?').next().unwrap_or("");
    let (app, name) = path.trim_end_matches('/').rsplit_once('/')?;
    (!app.is_empty() && !name.is_empty()).then(|| (app.to_owned(), name.to_owned()))
}

/// The `CNAME` of the sender reports a player gets.
const CNAME: &str = "streamgate";

/// One depacketizer per announced track.
pub enum Depacketizer {
    /// H.264 or H.265.
    Video(Box<VideoDepacketizer>),
    /// AAC as MPEG4-GENERIC.
    Audio(AacDepacketizer),
    /// AAC as MP4A-LATM.
    Latm(LatmDepacketizer),
    /// Opus.
    Opus(OpusDepacketizer),
    /// AV1.
    Av1(Av1Depacketizer),
}

impl Depacketizer {
    /// The depacketizer of an announced track. A description with a track this server cannot
    /// carry is refused at ANNOUNCE (415), so every track here has one.
    pub fn for_track(track: &SdpTrack) -> Depacketizer {
        match track.codec {
            Some(Codec::H264) => {
                Depacketizer::Video(Box::new(VideoDepacketizer::h264(track.config.clone())))
            }
            Some(Codec::H265) => Depacketizer::Video(Box::new(VideoDepacketizer::h265(
                track.parameter_sets.clone(),
            ))),
            Some(Codec::Aac) if track.encoding.eq_ignore_ascii_case("MP4A-LATM") => {
                // The description was refused unless its LATM config parses.
                let subframes = track.latm().map_or(1, |l| l.subframes);
                Depacketizer::Latm(LatmDepacketizer::new(track.clock_rate, subframes))
            }
            Some(Codec::Aac) => Depacketizer::Audio(AacDepacketizer::new(
                track.clock_rate,
                AuHeaderLayout::from_fmtp(track).unwrap_or(AuHeaderLayout::AAC_HBR),
            )),
            Some(Codec::Opus) => Depacketizer::Opus(OpusDepacketizer::new()),
            Some(Codec::Av1) => Depacketizer::Av1(Av1Depacketizer::new()),
            None => Depacketizer::Audio(AacDepacketizer::new(0, AuHeaderLayout::AAC_HBR)),
        }
    }

    fn push(&mut self, packet: &RtpPacket) -> bool {
        match self {
            Depacketizer::Video(d) => d.push(packet).is_ok(),
            Depacketizer::Audio(d) => d.push(packet).is_ok(),
            Depacketizer::Latm(d) => d.push(packet).is_ok(),
            Depacketizer::Opus(d) => d.push(packet).is_ok(),
            Depacketizer::Av1(d) => d.push(packet).is_ok(),
        }
    }

    fn pop(&mut self) -> Option<MediaFrame> {
        match self {
            Depacketizer::Video(d) => d.pop(),
            Depacketizer::Audio(d) => d.pop(),
            Depacketizer::Latm(d) => d.pop(),
            Depacketizer::Opus(d) => d.pop(),
            Depacketizer::Av1(d) => d.pop(),
        }
    }

    fn anchor(&mut self, rtp_time: u32, micros: i64) {
        let _ = match self {
            Depacketizer::Video(d) => d.anchor(rtp_time, micros),
            Depacketizer::Audio(d) => d.anchor(rtp_time, micros),
            Depacketizer::Latm(d) => d.anchor(rtp_time, micros),
            Depacketizer::Opus(d) => d.anchor(rtp_time, micros),
            Depacketizer::Av1(d) => d.anchor(rtp_time, micros),
        };
    }

    /// One RTP or RTCP packet on a track of its own (sender reports anchor its clock to the
    /// wall clock they carry); the frames it completes go to `out`.
    pub fn receive(&mut self, data: Bytes, rtcp: bool, out: &mut Vec<MediaFrame>) {
        if rtcp || is_rtcp(&data) {
            for packet in parse_rtcp(&data).unwrap_or_default() {
                if let RtcpPacket::SenderReport { ntp, rtp_time, .. } = packet {
                    self.anchor(rtp_time, ntp_to_unix_micros(ntp));
                }
            }
            return;
        }
        let Ok(packet) = RtpPacket::parse(data) else {
            return;
        };
        if self.push(&packet) {
            out.extend(std::iter::from_fn(|| self.pop()));
        }
    }
}

/// A track a publisher sends.
struct Incoming {
    depacketizer: Depacketizer,
    /// H.265: the record last made from in-band parameter sets (descriptions from ffmpeg and
    /// many cameras carry none).
    hevc_config: Option<Bytes>,
    hevc: bool,
    /// Over UDP: puts the packets back in sequence order before the depacketizer.
    reorder: Option<ReorderBuffer>,
}

impl Incoming {
    /// Packets in sequence order to the depacketizer; its frames (an H.265 keyframe with new
    /// in-band parameter sets preceded by their config) to `out`.
    fn depacketize(&mut self, packet: RtpPacket, out: &mut Vec<MediaFrame>) {
        if !self.depacketizer.push(&packet) {
            return;
        }
        while let Some(frame) = self.depacketizer.pop() {
            if self.hevc {
                out.extend(in_band_hevc_config(&frame, &mut self.hevc_config));
            }
            out.push(frame);
        }
    }
}

/// A publisher's tracks: RTP and RTCP in, frames out.
pub struct RtpPublish {
    tracks: Vec<Incoming>,
    /// The wall clock of the first sender report, the origin of the publisher's timeline.
    origin_micros: Option<i64>,
}

impl RtpPublish {
    /// The tracks of an accepted description.
    pub fn new(tracks: &[SdpTrack]) -> Self {
        let tracks = tracks
            .iter()
            .map(|track| Incoming {
                depacketizer: Depacketizer::for_track(track),
                hevc_config: None,
                hevc: track.codec == Some(Codec::H265),
                reorder: None,
            })
            .collect();
        RtpPublish {
            tracks,
            origin_micros: None,
        }
    }

    /// The codec configs the description carries, for the stream before any media. H.265
    /// descriptions carry bare parameter sets: they become the record players expect.
    pub fn description_configs(tracks: &[SdpTrack]) -> Vec<MediaFrame> {
        let mut configs = Vec::new();
        for track in tracks {
            let config = track.config.clone().or_else(|| {
                (track.codec == Some(Codec::H265))
                    .then(|| hevc_record(&track.parameter_sets).ok())
                    .flatten()
            });
            if let (Some(codec), Some(payload), Some(kind)) = (track.codec, config, track.track()) {
                configs.push(MediaFrame {
                    track: kind,
                    codec,
                    kind: FrameKind::Config,
                    dts: 0,
                    pts: 0,
                    keyframe: true,
                    payload,
                });
            }
        }
        configs
    }

    /// How many tracks were announced.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// Whether no track was announced.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Puts track `index`'s packets back in sequence order (it is set up over UDP), or not.
    pub fn set_reordering(&mut self, index: usize, on: bool) {
        if let Some(track) = self.tracks.get_mut(index) {
            track.reorder = on.then(ReorderBuffer::default);
        }
    }

    /// One RTP or RTCP packet of track `index`, received `now`; the frames it completes go to
    /// `out`. Sender reports put every track on one timeline (RFC 3550 §6.4.1).
    pub fn receive(
        &mut self,
        index: usize,
        rtcp: bool,
        data: Bytes,
        now: Instant,
        out: &mut Vec<MediaFrame>,
    ) {
        let Some(track) = self.tracks.get_mut(index) else {
            return;
        };
        if rtcp || is_rtcp(&data) {
            for packet in parse_rtcp(&data).unwrap_or_default() {
                if let RtcpPacket::SenderReport { ntp, rtp_time, .. } = packet {
                    let wall = ntp_to_unix_micros(ntp);
                    let origin = *self.origin_micros.get_or_insert(wall);
                    track.depacketizer.anchor(rtp_time, wall - origin);
                }
            }
            return;
        }
        let Ok(packet) = RtpPacket::parse(data) else {
            return;
        };
        let Some(reorder) = track.reorder.as_mut() else {
            track.depacketize(packet, out);
            return;
        };
        let mut ready = Vec::new();
        reorder.push(packet, now, &mut ready);
        for packet in ready {
            track.depacketize(packet, out);
        }
    }

    /// When track `index`'s reorder buffer gives up on its gap, if it waits for one.
    pub fn reorder_deadline(&self, index: usize) -> Option<Instant> {
        self.tracks
            .get(index)
            .and_then(|t| t.reorder.as_ref())
            .and_then(ReorderBuffer::deadline)
    }

    /// Gives up on track `index`'s gap once its wait is over (`now`); the frames behind it go
    /// to `out`.
    pub fn release_expired(&mut self, index: usize, now: Instant, out: &mut Vec<MediaFrame>) {
        let Some(track) = self.tracks.get_mut(index) else {
            return;
        };
        let mut ready = Vec::new();
        if let Some(reorder) = track.reorder.as_mut() {
            reorder.release_expired(now, &mut ready);
        }
        for packet in ready {
            track.depacketize(packet, out);
        }
    }
}

/// A config frame for an H.265 keyframe whose in-band VPS/SPS/PPS make a record other than
/// `last` (which it then becomes); `None` otherwise.
fn in_band_hevc_config(frame: &MediaFrame, last: &mut Option<Bytes>) -> Option<MediaFrame> {
    if frame.kind != FrameKind::Media || !frame.keyframe {
        return None;
    }
    let nals = avcc_nals(&frame.payload, 4).ok()?;
    let sets: Vec<Bytes> = nals
        .iter()
        .filter(|n| {
            n.first()
                .is_some_and(|b| matches!((b >> 1) & 0x3f, 32..=34))
        })
        .map(|n| Bytes::copy_from_slice(n))
        .collect();
    let record = hevc_record(&sets).ok()?;
    if last.as_ref() == Some(&record) {
        return None;
    }
    *last = Some(record.clone());
    Some(MediaFrame {
        track: Track::Video,
        codec: Codec::H265,
        kind: FrameKind::Config,
        dts: frame.dts,
        pts: frame.pts,
        keyframe: true,
        payload: record,
    })
}

/// One RTP packetizer of a player's track.
enum Packetizer {
    Video(Box<VideoPacketizer>),
    Audio(AacPacketizer),
    Opus(OpusPacketizer),
    Av1(Av1Packetizer),
}

impl Packetizer {
    /// The packetizer of a track, with its first sequence number and its clock; `None` for a
    /// codec RTSP does not carry (none today: every codec of the model has a payload format;
    /// a track whose config cannot be described is left out of the description before).
    fn new(out: &Outgoing, sequence: u16, clock: RtpClock) -> Option<Packetizer> {
        let (pt, ssrc) = (out.payload_type, out.ssrc);
        let mut packetizer = match out.codec {
            Codec::H264 => {
                Packetizer::Video(Box::new(VideoPacketizer::h264(pt, ssrc, sequence, clock)))
            }
            Codec::H265 => {
                Packetizer::Video(Box::new(VideoPacketizer::h265(pt, ssrc, sequence, clock)))
            }
            Codec::Aac => Packetizer::Audio(AacPacketizer::new(pt, ssrc, sequence, clock)),
            Codec::Opus => Packetizer::Opus(OpusPacketizer::new(pt, ssrc, sequence, clock)),
            Codec::Av1 => Packetizer::Av1(Av1Packetizer::new(pt, ssrc, sequence, clock)),
        };
        match &mut packetizer {
            Packetizer::Video(p) => {
                let _ = p.set_config(&out.config);
            }
            Packetizer::Av1(p) => {
                let _ = p.set_config(&out.config);
            }
            _ => {}
        }
        Some(packetizer)
    }

    /// Counts packets made by another player's packetizer as this one's ([`RtpPlay::packetize_runs`]).
    fn skip(&mut self, packets: u16, octets: u32) {
        match self {
            Packetizer::Video(p) => p.skip(packets, octets),
            Packetizer::Audio(p) => p.skip(packets, octets),
            Packetizer::Opus(p) => p.skip(packets, octets),
            Packetizer::Av1(p) => p.skip(packets, octets),
        }
    }

    /// The RTP clock rate of a track.
    fn clock_rate(codec: Codec, config: &[u8]) -> u32 {
        match codec {
            Codec::Aac => AacConfig::parse(config).map_or(48_000, |c| c.sample_rate),
            Codec::Opus => OPUS_CLOCK_RATE,
            _ => 90_000,
        }
    }

    fn packetize(&mut self, frame: &MediaFrame, out: &mut Vec<Bytes>) {
        let _ = match self {
            Packetizer::Video(p) => p.packetize(frame, out),
            Packetizer::Audio(p) => p.packetize(frame, out),
            Packetizer::Opus(p) => p.packetize(frame, out),
            Packetizer::Av1(p) => p.packetize(frame, out),
        };
    }

    fn clock(&self) -> RtpClock {
        match self {
            Packetizer::Video(p) => p.clock(),
            Packetizer::Audio(p) => p.clock(),
            Packetizer::Opus(p) => p.clock(),
            Packetizer::Av1(p) => p.clock(),
        }
    }

    /// Its counters: the next sequence number, packets and payload octets sent (for sender
    /// reports).
    fn stats(&self) -> SenderStats {
        match self {
            Packetizer::Video(p) => p.stats(),
            Packetizer::Audio(p) => p.stats(),
            Packetizer::Opus(p) => p.stats(),
            Packetizer::Av1(p) => p.stats(),
        }
    }
}

/// A track a player receives.
struct Outgoing {
    track: Track,
    codec: Codec,
    config: Bytes,
    payload_type: u8,
    ssrc: u32,
    packetizer: Option<Packetizer>,
    /// What its packetizer's output depends on besides the frame (codec, clock rate, the
    /// config it last took), hashed: players whose tracks have the same form make the same
    /// packets of a frame but for their headers ([`RtpPlay::packetize_runs`]).
    form: u64,
}

/// Where players share packets ([`RtpPlay::packetize_runs`]): given a form and what makes
/// the packets of the frame in it, returns them, from a cache or made.
pub type SharedPackets<'a> = dyn FnMut(u64, &mut dyn FnMut(&mut BytesMut)) -> Bytes + 'a;

/// One track's packets of a frame for one player ([`RtpPlay::packetize_runs`]).
#[derive(Debug, Clone)]
pub struct PacketRun {
    /// The track's index.
    pub index: usize,
    /// The form the packets are shared under: the track's ([`Outgoing::form`]).
    pub form: u64,
    /// The packets as the first player of their form made them, each preceded by its length
    /// ([`prefixed`]): shared by the players of the form.
    pub record: Bytes,
    /// How the player's headers differ from the record's: `None` when the record's are the
    /// player's own (same SSRC, payload type, clock and sequence numbers), and the packets go
    /// as they are.
    pub restamp: Option<Restamp>,
}

impl PacketRun {
    /// The record's headers are the player's own ([`Self::restamp`] is `None`).
    pub fn as_made(&self) -> bool {
        self.restamp.is_none()
    }

    /// The player's header of the packet at `item` of the record (one of
    /// `prefixed::items(&self.record)`); `None` when the item is shorter than a header.
    /// Worked out when asked for, so a player whose framed packets are shared reads the
    /// record's first header only.
    pub fn header(&self, item: &Range<usize>) -> Option<[u8; RtpHeader::LEN]> {
        let made = self.record.get(item.start..item.start + RtpHeader::LEN)?;
        let mut header: [u8; RtpHeader::LEN] = made.try_into().ok()?;
        if let Some(restamp) = &self.restamp {
            restamp.apply(&mut header);
        }
        Some(header)
    }
}

/// How one player's headers of a shared record are written over the record's: its own
/// sequence numbers and timestamps from the record's first packet on, payload type and SSRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restamp {
    sequence: u16,
    timestamp: u32,
    record_sequence: u16,
    record_timestamp: u32,
    payload_type: u8,
    ssrc: u32,
}

impl Restamp {
    fn apply(&self, header: &mut [u8; RtpHeader::LEN]) {
        let their_sequence = u16::from_be_bytes([header[2], header[3]]);
        let their_timestamp = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        RtpHeader::restamp(
            header,
            self.payload_type,
            self.sequence
                .wrapping_add(their_sequence.wrapping_sub(self.record_sequence)),
            self.timestamp
                .wrapping_add(their_timestamp.wrapping_sub(self.record_timestamp)),
            self.ssrc,
        );
    }
}

/// The form of a track's packets ([`Outgoing::form`]); the top bit is set, so it never
/// equals the other protocols' forms of the arbiter's encoding cache.
fn packet_form(codec: Codec, rate: u32, config: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (b"rtp", codec, rate, config).hash(&mut hasher);
    hasher.finish() | 1 << 63
}

/// What a shared record says in front of its packets: the numbering of its maker and its
/// counts. Players whose numbering is the same take the packets as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Preamble {
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload_type: u8,
    packets: u16,
    octets: u32,
}

impl Preamble {
    const LEN: usize = 17;

    fn put(&self, buf: &mut BytesMut) {
        buf.put_u16(self.sequence);
        buf.put_u32(self.timestamp);
        buf.put_u32(self.ssrc);
        buf.put_u8(self.payload_type);
        buf.put_u16(self.packets);
        buf.put_u32(self.octets);
    }

    fn read(mut record: &[u8]) -> Option<Preamble> {
        if record.len() < Self::LEN {
            return None;
        }
        Some(Preamble {
            sequence: record.get_u16(),
            timestamp: record.get_u32(),
            ssrc: record.get_u32(),
            payload_type: record.get_u8(),
            packets: record.get_u16(),
            octets: record.get_u32(),
        })
    }

    /// Whether packets numbered so carry the headers a track numbered so would write.
    fn numbers_as(&self, sequence: u16, timestamp: u32, ssrc: u32, payload_type: u8) -> bool {
        self.sequence == sequence && self.same_source(timestamp, ssrc, payload_type)
    }

    /// Whether its maker had this SSRC, payload type and clock (its first packet's timestamp
    /// being `timestamp`), whatever its sequence numbers.
    fn same_source(&self, timestamp: u32, ssrc: u32, payload_type: u8) -> bool {
        (self.timestamp, self.ssrc, self.payload_type) == (timestamp, ssrc, payload_type)
    }
}

/// What a starting player's track numbers its packets after: given the track and the form of
/// its packets, the PTS of its first frame and that frame's packets, when a player of the
/// worker made them already.
pub type FirstMade<'a> = dyn FnMut(Track, u64) -> Option<(i64, Bytes)> + 'a;

/// A player's tracks: frames in, RTP and RTCP packets (by track index) out.
pub struct RtpPlay {
    tracks: Vec<Outgoing>,
    /// When PLAY started, and the media time (µs) it started at.
    started: Option<(Instant, i64)>,
}

/// A track of a stream RTSP cannot carry: left out of the description.
#[derive(Debug)]
pub struct LeftOut {
    /// Audio or video.
    pub track: Track,
    /// Its codec.
    pub codec: Codec,
    /// Why.
    pub error: SdpError,
}

impl RtpPlay {
    /// The tracks of a player from the stream's codec configs, with the description they
    /// make. Each config keeps its own track, so one RTSP cannot carry (AV1) is left out
    /// without shifting the others. `ssrc` gives each track its SSRC.
    pub fn describe(
        configs: &[MediaFrame],
        mut ssrc: impl FnMut() -> u32,
    ) -> (RtpPlay, Vec<SdpTrack>, Vec<LeftOut>) {
        let (mut tracks, mut described, mut left_out) = (Vec::new(), Vec::new(), Vec::new());
        for (i, f) in configs.iter().enumerate() {
            match sdp::track_for_config(i, f.codec, &f.payload) {
                Ok(t) => {
                    tracks.push(Outgoing {
                        track: f.track,
                        codec: f.codec,
                        config: f.payload.clone(),
                        payload_type: t.payload_type,
                        ssrc: ssrc(),
                        packetizer: None,
                        form: 0,
                    });
                    described.push(t);
                }
                Err(error) => left_out.push(LeftOut {
                    track: f.track,
                    codec: f.codec,
                    error,
                }),
            }
        }
        let play = RtpPlay {
            tracks,
            started: None,
        };
        (play, described, left_out)
    }

    /// How many tracks the description has.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// Whether the description has no track.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// Whether PLAY started.
    pub fn is_playing(&self) -> bool {
        self.started.is_some()
    }

    /// Takes the stream's configs of the moment PLAY subscribed (newer than DESCRIBE's).
    pub fn update_configs(&mut self, configs: &[MediaFrame]) {
        for out in &mut self.tracks {
            let newer = configs
                .iter()
                .find(|f| f.track == out.track && f.codec == out.codec);
            if let Some(config) = newer {
                out.config = config.payload.clone();
            }
        }
    }

    /// Starts playing at media time `first` (µs), `now`: makes the packetizers of the tracks
    /// set up (`set_up`: each track's index and its SETUP URL) with a random first sequence
    /// number from `random` and the clock offset `offset` gives the track's index, and returns
    /// `RTP-Info` (URL, first sequence number, RTP time of `first`) for each. When a player
    /// of the worker packetized the track's first frame (`first_made`) with this one's SSRC,
    /// payload type and clock, the track starts at that frame's sequence number instead, and
    /// while the two number their packets alike they send the same bytes
    /// ([`PacketRun::as_made`]).
    pub fn start(
        &mut self,
        set_up: &[(usize, String)],
        first: i64,
        now: Instant,
        mut random: impl FnMut() -> u32,
        mut offset: impl FnMut(usize) -> u32,
        first_made: &mut FirstMade<'_>,
    ) -> Vec<(String, u16, u32)> {
        let mut info = Vec::new();
        for (index, url) in set_up {
            let Some(out) = self.tracks.get_mut(*index) else {
                continue;
            };
            let rate = Packetizer::clock_rate(out.codec, &out.config);
            let clock = RtpClock::new(rate, offset(*index));
            let form = packet_form(out.codec, rate, &out.config);
            let mut sequence = random() as u16;
            if let Some((pts, record)) = first_made(out.track, form) {
                let timestamp = clock.rtp_time(pts);
                if let Some(made) = Preamble::read(&record)
                    .filter(|m| m.same_source(timestamp, out.ssrc, out.payload_type))
                {
                    sequence = made.sequence;
                }
            }
            let Some(packetizer) = Packetizer::new(out, sequence, clock) else {
                continue;
            };
            info.push((url.clone(), sequence, clock.rtp_time(first)));
            out.packetizer = Some(packetizer);
            out.form = form;
        }
        self.started = Some((now, first));
        info
    }

    /// Packetizes `frame` for every started track of its kind, sharing the packetizing between
    /// the players of a frame: a [`PacketRun`] per track to `runs`. `shared(form, make)`
    /// returns the packets of the frame in that form, from a cache or (`make` called) made by
    /// this player: the first player of a form packetizes (its packets preceded by their first
    /// sequence number and timestamp, each by its length), and every other player takes the
    /// packets as they are, with headers of its own where its numbering differs: its payload
    /// type, sequence numbers, timestamps and SSRC written over the shared ones
    /// ([`PacketRun::header`], [`RtpHeader::restamp`]). A player thus writes at most a frame's
    /// headers instead of parsing, packetizing or copying the frame.
    pub fn packetize_runs(
        &mut self,
        frame: &MediaFrame,
        runs: &mut Vec<PacketRun>,
        shared: &mut SharedPackets<'_>,
    ) {
        let mut packets = Vec::new();
        for (index, track) in self.tracks.iter_mut().enumerate() {
            if track.track != frame.track {
                continue;
            }
            let Some(packetizer) = track.packetizer.as_mut() else {
                continue;
            };
            packets.clear();
            if frame.kind == FrameKind::Config {
                // A new config: the packetizer takes it, and with it the track's form. Its
                // packets are this player's alone.
                packetizer.packetize(frame, &mut packets);
                let rate = packetizer.clock().rate;
                track.form = packet_form(track.codec, rate, &frame.payload);
                let mut record = BytesMut::new();
                for p in packets.drain(..).filter(|p| p.len() >= RtpHeader::LEN) {
                    prefixed::put(&mut record, &p);
                }
                runs.push(PacketRun {
                    index,
                    form: track.form,
                    record: record.freeze(),
                    restamp: None,
                });
                continue;
            }
            let form = track.form;
            let sequence = packetizer.stats().next_sequence;
            let timestamp = packetizer.clock().rtp_time(frame.pts);
            let (ssrc, payload_type) = (track.ssrc, track.payload_type);
            let mut made = false;
            let record = shared(form, &mut |buf| {
                made = true;
                packetizer.packetize(frame, &mut packets);
                let kept = || packets.iter().filter(|p| p.len() >= RtpHeader::LEN);
                let (count, octets) = kept().fold((0u16, 0u32), |(count, octets), p| {
                    (count + 1, octets + (p.len() - RtpHeader::LEN) as u32)
                });
                buf.reserve(Preamble::LEN + packets.iter().map(|p| 2 + p.len()).sum::<usize>());
                Preamble {
                    sequence,
                    timestamp,
                    ssrc,
                    payload_type,
                    packets: count,
                    octets,
                }
                .put(buf);
                for p in kept() {
                    // Packetizers make packets of at most an MTU: each has its length.
                    prefixed::put(buf, p);
                }
            });
            let Some(theirs) = Preamble::read(&record) else {
                continue;
            };
            let record = record.slice(Preamble::LEN..);
            let restamp = if theirs.numbers_as(sequence, timestamp, ssrc, payload_type) {
                // Numbered as this player numbers: its packets as they are.
                None
            } else {
                Some(Restamp {
                    sequence,
                    timestamp,
                    record_sequence: theirs.sequence,
                    record_timestamp: theirs.timestamp,
                    payload_type,
                    ssrc,
                })
            };
            if !made {
                // Made by another player's packetizer: counted as this one's.
                packetizer.skip(theirs.packets, theirs.octets);
            }
            runs.push(PacketRun {
                index,
                form,
                record,
                restamp,
            });
        }
    }

    /// An RTCP sender report for every started track, `now` (wall clock `unix_micros`): NTP
    /// time and the RTP time the media timeline is at.
    pub fn sender_reports(&self, now: Instant, unix_micros: i64) -> Vec<(usize, Bytes)> {
        let Some((start, first)) = self.started else {
            return Vec::new();
        };
        let media_now = first + now.saturating_duration_since(start).as_micros() as i64;
        let ntp = ntp_timestamp(unix_micros);
        let mut reports = Vec::new();
        for (index, track) in self.tracks.iter().enumerate() {
            let Some(packetizer) = track.packetizer.as_ref() else {
                continue;
            };
            let SenderStats {
                packets, octets, ..
            } = packetizer.stats();
            let report = sender_report(
                track.ssrc,
                ntp,
                packetizer.clock().rtp_time(media_now),
                packets,
                octets,
                CNAME,
            );
            reports.push((index, report));
        }
        reports
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One RTP packet for one player: its header and its payload.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct PlayerPacket {
        header: [u8; RtpHeader::LEN],
        payload: Bytes,
    }

    /// [`RtpPlay::packetize_runs`] as one `(track index, packet)` per packet.
    fn packetize_shared(
        play: &mut RtpPlay,
        frame: &MediaFrame,
        out: &mut Vec<(usize, PlayerPacket)>,
        shared: &mut SharedPackets<'_>,
    ) {
        let mut runs = Vec::new();
        play.packetize_runs(frame, &mut runs, shared);
        for run in runs {
            for item in prefixed::items(&run.record) {
                let Some(header) = run.header(&item) else {
                    break;
                };
                let payload = run.record.slice(item.start + RtpHeader::LEN..item.end);
                out.push((run.index, PlayerPacket { header, payload }));
            }
        }
    }

    /// [`packetize_shared`] with nothing shared: every frame is made by this player.
    fn packetize(play: &mut RtpPlay, frame: &MediaFrame, out: &mut Vec<(usize, PlayerPacket)>) {
        packetize_shared(play, frame, out, &mut |_, make| {
            let mut record = BytesMut::new();
            make(&mut record);
            record.freeze()
        });
    }

    pub(crate) fn config(track: Track, codec: Codec, payload: &'static [u8]) -> MediaFrame {
        MediaFrame {
            track,
            codec,
            kind: FrameKind::Config,
            dts: 0,
            pts: 0,
            keyframe: true,
            payload: Bytes::from_static(payload),
        }
    }

    /// An AVC decoder configuration record with one SPS and one PPS.
    pub(crate) const AVCC: &[u8] = &[
        0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x1f, 0x01, 0x00, 0x02,
        0x68, 0xee,
    ];

    /// An H.264 frame of one slice of `len` bytes at `pts` (µs): an IDR slice at 0, else not.
    pub(crate) fn h264_frame(pts: i64, len: usize) -> MediaFrame {
        let header = if pts == 0 { 0x65 } else { 0x41 };
        let nal = std::iter::once(header)
            .chain((0..len).map(|i| i as u8))
            .collect();
        crate::protocol::rtsp::rtp::tests::video_frame(pts, pts == 0, &[nal])
    }

    #[test]
    fn app_and_name_from_rtsp_urls() {
        assert_eq!(
            app_and_name("rtsp://h:8554/live/cam2?token=abc"),
            Some(("live".into(), "cam2".into()))
        );
        assert_eq!(
            app_and_name("rtsp://h/live/cam2/trackID=0"),
            Some(("live".into(), "cam2".into()))
        );
        assert_eq!(
            app_and_name("rtsp://h/a/b/cam"),
            Some(("a/b".into(), "cam".into()))
        );
        assert_eq!(app_and_name("rtsp://h/cam"), None);
        assert_eq!(app_and_name("rtsp://h"), None);
    }

    #[test]
    fn a_track_rtsp_cannot_carry_is_left_out_without_shifting_the_others() {
        // Six-channel Opus (mapping family 1): RFC 7587 carries mono and stereo only.
        const SIX_CHANNEL_OPUS_HEAD: &[u8] = &[
            b'O', b'p', b'u', b's', b'H', b'e', b'a', b'd', 1, 6, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0,
            0, 1, 4, 2, 0, 4, 1, 2, 3, 5,
        ];
        let configs = [
            config(Track::Audio, Codec::Opus, SIX_CHANNEL_OPUS_HEAD),
            config(Track::Video, Codec::H264, AVCC),
        ];
        let mut n = 0;
        let (play, described, left_out) = RtpPlay::describe(&configs, || {
            n += 1;
            n
        });
        assert_eq!(play.len(), 1);
        assert_eq!(described.len(), 1);
        assert_eq!(
            described[0].control, "trackID=1",
            "the video keeps its index"
        );
        assert_eq!(left_out.len(), 1);
        assert_eq!(left_out[0].codec, Codec::Opus);
    }

    #[test]
    fn play_packetizes_only_tracks_set_up_and_reports_their_timeline() {
        let configs = [
            config(Track::Video, Codec::H264, AVCC),
            config(Track::Audio, Codec::Aac, &[0x11, 0x90]),
        ];
        let (mut play, _, _) = RtpPlay::describe(&configs, || 7);
        assert!(!play.is_playing());
        let now = Instant::now();
        let info = play.start(
            &[(0, "rtsp://h/live/a/trackID=0".into())],
            1_000_000,
            now,
            || 0x1234,
            |_| 90_000,
            &mut |_, _| None,
        );
        assert_eq!(info.len(), 1, "only the video was set up");
        assert_eq!(info[0].1, 0x1234);
        assert_eq!(
            info[0].2,
            90_000 + 90_000,
            "1 s of media at 90 kHz after the offset"
        );
        let frame = MediaFrame {
            track: Track::Video,
            codec: Codec::H264,
            kind: FrameKind::Media,
            dts: 1_000_000,
            pts: 1_000_000,
            keyframe: true,
            payload: Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]),
        };
        let mut packets = Vec::new();
        packetize(&mut play, &frame, &mut packets);
        assert!(!packets.is_empty());
        assert!(packets.iter().all(|(i, _)| *i == 0));
        let audio = MediaFrame {
            track: Track::Audio,
            codec: Codec::Aac,
            ..frame
        };
        packets.clear();
        packetize(&mut play, &audio, &mut packets);
        assert!(packets.is_empty(), "the audio track was not set up");
        let reports = play.sender_reports(now, 0);
        assert_eq!(reports.len(), 1);
        let parsed = parse_rtcp(&reports[0].1).expect("a valid sender report");
        assert!(parsed.iter().any(|p| matches!(
            p,
            RtcpPacket::SenderReport { rtp_time, .. } if *rtp_time == 180_000
        )));
    }

    #[test]
    fn shared_packets_restamped_are_what_each_player_would_have_made() {
        let configs = [
            config(Track::Video, Codec::H264, AVCC),
            config(Track::Audio, Codec::Aac, &[0x11, 0x90]),
        ];
        let set_up = [
            (0, "rtsp://h/live/a/trackID=0".to_string()),
            (1, "rtsp://h/live/a/trackID=1".to_string()),
        ];
        let now = Instant::now();
        // Three players, each with its own SSRCs, sequence numbers and clock offsets.
        let player = |seed: u32| {
            let mut n = seed;
            let mut random = move || {
                n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                n
            };
            let (mut play, _, _) = RtpPlay::describe(&configs, &mut random);
            let offset = |index: usize| seed.wrapping_mul(2_654_435_761).wrapping_add(index as u32);
            play.start(
                &set_up,
                1_000_000,
                now,
                &mut random,
                offset,
                // Nothing made before: numbered as each player numbers, restamped.
                &mut |_, _| None,
            );
            play
        };
        let (mut first, mut second, mut alone) = (player(1), player(2), player(2));
        let nal = |header: u8, len: usize| {
            let mut v = (1 + len as u32).to_be_bytes().to_vec();
            v.push(header);
            v.extend((0..len).map(|i| i as u8));
            v
        };
        let video = |pts: i64, payload: Vec<u8>| MediaFrame {
            track: Track::Video,
            codec: Codec::H264,
            kind: FrameKind::Media,
            dts: pts,
            pts,
            keyframe: true,
            payload: Bytes::from(payload),
        };
        let frames = [
            // A keyframe in fragmentation units, the parameter sets before it.
            video(1_000_000, nal(0x65, 5000)),
            MediaFrame {
                track: Track::Audio,
                codec: Codec::Aac,
                kind: FrameKind::Media,
                dts: 1_010_000,
                pts: 1_010_000,
                keyframe: true,
                payload: Bytes::from_static(&[0x21, 0x10, 0x04]),
            },
            video(1_040_000, [nal(0x41, 300), nal(0x41, 200)].concat()),
            // A new config: the form changes, and with it what the players share.
            config(
                Track::Video,
                Codec::H264,
                &[
                    0x01, 0x64, 0x00, 0x28, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x64, 0x00, 0x28, 0x01,
                    0x00, 0x02, 0x68, 0xef,
                ],
            ),
            video(1_080_000, nal(0x65, 2000)),
        ];
        let mut cache: Vec<(u64, i64, Track, Bytes)> = Vec::new();
        let mut made = 0;
        for frame in &frames {
            let mut shared = |form: u64, make: &mut dyn FnMut(&mut BytesMut)| {
                let hit = cache.iter().find(|(f, pts, track, _)| {
                    *f == form && *pts == frame.pts && *track == frame.track
                });
                if let Some((_, _, _, bytes)) = hit {
                    return bytes.clone();
                }
                made += 1;
                let mut out = BytesMut::new();
                make(&mut out);
                let bytes = out.freeze();
                cache.push((form, frame.pts, frame.track, bytes.clone()));
                bytes
            };
            let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
            packetize_shared(&mut first, frame, &mut a, &mut shared);
            packetize_shared(&mut second, frame, &mut b, &mut shared);
            packetize(&mut alone, frame, &mut c);
            assert_eq!(b, c, "restamped packets of {:?} {}", frame.track, frame.pts);
            assert_eq!(a.len(), b.len());
            assert!(
                frame.kind == FrameKind::Config || (!a.is_empty() && a != b),
                "packets, with the players' own headers"
            );
        }
        assert_eq!(made, 4, "each media frame packetized once");
        assert_eq!(
            second.tracks[0].packetizer.as_ref().map(|p| p.stats()),
            alone.tracks[0].packetizer.as_ref().map(|p| p.stats())
        );
        assert_eq!(
            second.tracks[1].packetizer.as_ref().map(|p| p.stats()),
            alone.tracks[1].packetizer.as_ref().map(|p| p.stats())
        );
    }

    #[test]
    fn players_numbered_alike_send_the_packets_as_made_until_one_misses_a_frame() {
        let configs = [config(Track::Video, Codec::H264, AVCC)];
        let set_up = [(0, "rtsp://h/live/a/trackID=0".to_string())];
        let now = Instant::now();
        let frames: Vec<MediaFrame> = (0..5).map(|n| h264_frame(n * 40_000, 3000)).collect();
        let cache: std::cell::RefCell<Vec<(i64, Bytes)>> = Default::default();
        let mut shared = |frame: &MediaFrame, make: &mut dyn FnMut(&mut BytesMut)| {
            let hit = cache
                .borrow()
                .iter()
                .find(|(pts, _)| *pts == frame.pts)
                .cloned();
            if let Some((_, bytes)) = hit {
                return bytes;
            }
            let mut out = BytesMut::new();
            make(&mut out);
            let bytes = out.freeze();
            cache.borrow_mut().push((frame.pts, bytes.clone()));
            bytes
        };
        // The same SSRC and clock offset (a stream's, in the server); sequence numbers of
        // their own unless a first frame made by the other says otherwise.
        let start = |first: Option<(i64, Bytes)>, sequence: u32| {
            let (mut play, _, _) = RtpPlay::describe(&configs, || 0x5150);
            let info = play.start(&set_up, 0, now, || sequence, |_| 77, &mut |_, _| {
                first.clone()
            });
            (play, info[0].1)
        };
        let (mut a, _) = start(None, 100);
        type Shared<'a> = dyn FnMut(&MediaFrame, &mut dyn FnMut(&mut BytesMut)) -> Bytes + 'a;
        let runs_of = |play: &mut RtpPlay, frame: &MediaFrame, shared: &mut Shared<'_>| {
            let mut runs = Vec::new();
            play.packetize_runs(frame, &mut runs, &mut |_, make| shared(frame, make));
            assert_eq!(runs.len(), 1);
            runs.remove(0)
        };
        let made = runs_of(&mut a, &frames[0], &mut shared);
        assert!(made.as_made(), "its own packets");
        // The second player starts at the first frame's sequence number, found in the cache.
        let first = cache.borrow()[0].1.clone();
        let (mut b, first_sequence) = start(Some((0, first)), 999);
        assert_eq!(first_sequence, 100, "RTP-Info tells the adopted number");
        let (_, other) = start(None, 999);
        assert_eq!(other, 999, "nothing to adopt: its own");
        for frame in &frames[..3] {
            if frame.pts > 0 {
                assert!(runs_of(&mut a, frame, &mut shared).as_made());
            }
            let run = runs_of(&mut b, frame, &mut shared);
            assert!(run.as_made(), "numbered alike at {}", frame.pts);
        }
        // The second player misses a frame (dropped): from then on its packets are
        // restamped, its sequence numbers going on without a gap.
        let _ = runs_of(&mut a, &frames[3], &mut shared);
        let next = b.tracks[0]
            .packetizer
            .as_ref()
            .map(|p| p.stats().next_sequence);
        let _ = runs_of(&mut a, &frames[4], &mut shared);
        let mut runs = Vec::new();
        b.packetize_runs(&frames[4], &mut runs, &mut |_, make| {
            shared(&frames[4], make)
        });
        assert!(!runs[0].as_made());
        let items: Vec<_> = prefixed::items(&runs[0].record).collect();
        let headers: Vec<_> = items.iter().filter_map(|i| runs[0].header(i)).collect();
        assert_eq!(headers.len(), items.len());
        let first = headers[0];
        assert_eq!(next, Some(u16::from_be_bytes([first[2], first[3]])));
        for (n, header) in headers.iter().enumerate() {
            let sequence = u16::from_be_bytes([header[2], header[3]]);
            assert_eq!(Some(sequence), next.map(|s| s.wrapping_add(n as u16)));
        }
        assert_eq!(
            b.tracks[0].packetizer.as_ref().map(|p| p.stats().packets),
            a.tracks[0]
                .packetizer
                .as_ref()
                .map(|p| p.stats().packets - headers.len() as u32),
            "the packets it sent counted as its own"
        );
    }

    #[test]
    fn an_hevc_keyframe_with_new_parameter_sets_is_preceded_by_its_config() {
        let nal = |header: [u8; 2], body: &[u8]| {
            let mut v = Vec::new();
            v.extend_from_slice(&((2 + body.len()) as u32).to_be_bytes());
            v.extend_from_slice(&header);
            v.extend_from_slice(body);
            v
        };
        let mut payload = Vec::new();
        // VPS, SPS, PPS (types 32, 33, 34), then an IDR slice (type 19).
        payload.extend(nal([0x40, 0x01], &[0x0c, 0x01, 0xff, 0xff]));
        payload.extend(nal(
            [0x42, 0x01],
            &[
                0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03,
                0x00, 0x5d, 0xa0,
            ],
        ));
        payload.extend(nal([0x44, 0x01], &[0xc1, 0x72]));
        payload.extend(nal([0x26, 0x01], &[0xaf, 0x00]));
        let frame = MediaFrame {
            track: Track::Video,
            codec: Codec::H265,
            kind: FrameKind::Media,
            dts: 0,
            pts: 0,
            keyframe: true,
            payload: Bytes::from(payload),
        };
        let mut last = None;
        let config = in_band_hevc_config(&frame, &mut last).expect("a config from the sets");
        assert_eq!(config.kind, FrameKind::Config);
        assert_eq!(config.codec, Codec::H265);
        assert_eq!(last.as_ref(), Some(&config.payload));
        assert!(
            in_band_hevc_config(&frame, &mut last).is_none(),
            "the same sets again make no new config"
        );
    }
}

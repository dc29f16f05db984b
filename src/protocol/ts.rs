//! MPEG transport stream (ISO/IEC 13818-1) to and from the core's [`MediaFrame`]: the
//! payload format of SRT.
//!
//! [`TsDemuxer`] reads one program's H.264 (stream type 0x1B) or H.265 (0x24) and AAC in
//! ADTS (0x0F) or Opus (0x06 with the `Opus` registration, see below) elementary streams:
//! PAT and PMT (2.4.4), PES reassembly (2.4.3.6), 33-bit
//! PTS/DTS to microseconds with wrap handling, Annex-B to length-prefixed NAL units with the
//! in-band parameter sets (SPS/PPS; VPS/SPS/PPS) turned into AVCDecoderConfigurationRecord /
//! HEVCDecoderConfigurationRecord config frames, ADTS to raw AUs with AudioSpecificConfig
//! config frames, Opus access units to Opus packets with an OpusHead config frame. It
//! resynchronises on a lost sync byte, drops a PES whose packets were lost
//! (continuity counter jump, transport error) and then waits for the next IDR (H.265: IRAP)
//! on video.
//!
//! [`TsMuxer`] writes frames from any source as 188-byte packets grouped in 1316-byte chunks
//! (seven packets, one SRT payload): PAT/PMT, PES with PTS/DTS, PCR, continuity counters,
//! adaptation-field stuffing, length-prefixed NAL units to Annex-B with an AUD and the
//! parameter sets before every IDR / IRAP picture, raw AAC to ADTS, Opus packets to Opus
//! access units. The PMT declares only codecs whose frames it writes ([`stream_type`]).
//!
//! Opus is carried as FFmpeg and GStreamer carry it (the ETSI TS 102 366-style mapping of
//! the Opus-in-TS draft): stream type 0x06 (PES private data, stream id 0xBD) with a
//! registration descriptor `Opus` and a DVB extension descriptor (tag 0x7F, extension 0x80)
//! holding the channel configuration; each access unit in the PES is preceded by a control
//! header (`0x7FE0` prefix with trim flags, the size in 0xFF runs, optional start and end
//! trims). PTS are 90 kHz; an access unit's duration is read from its TOC byte at 48 kHz.
//!
//! An in-house implementation rather than `mpeg2ts-reader`: its `Demultiplex::push` needs
//! 188-byte-aligned input and stops at the first packet without a sync byte, ignoring the rest
//! of the buffer (no resync), and it has no muxer; what is needed here is a few hundred lines.
//!
//! Sans-IO: bytes in, frames out and frames in, bytes out. Time comes only from the frames'
//! timestamps, never from a clock; pacing the output is the session's business.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use streamgate_actors::media::{Codec, FrameKind, MediaFrame, Track};

use crate::protocol::codec::{
    annexb_nals, avcc_nals, h264_nal_type, hevc_record, opus_packet_samples, parse_adts, to_avcc,
    AacConfig, AvcConfig, CodecError, OpusHead, ADTS_MAX_PAYLOAD, NAL_AUD, NAL_IDR, NAL_PPS,
    NAL_SPS,
};
use crate::protocol::rtsp::sdp::hvcc_parameter_sets;

/// Size of one transport stream packet.
pub const PACKET_SIZE: usize = 188;
/// The first byte of every packet.
pub const SYNC_BYTE: u8 = 0x47;
/// Packets in one output chunk (one SRT payload of the usual 1316 bytes).
pub const CHUNK_PACKETS: usize = 7;
/// Bytes in one output chunk.
pub const CHUNK_SIZE: usize = PACKET_SIZE * CHUNK_PACKETS;
/// Stream type of H.264 video (ISO/IEC 13818-1 Table 2-34).
pub const STREAM_TYPE_H264: u8 = 0x1b;
/// Stream type of H.265 video (ISO/IEC 13818-1 Table 2-34, HEVC video stream).
pub const STREAM_TYPE_H265: u8 = 0x24;
/// Stream type of AAC audio in ADTS.
pub const STREAM_TYPE_AAC: u8 = 0x0f;
/// Stream type of PES private data (ISO/IEC 13818-1 Table 2-34), which Opus is carried as
/// with its registration descriptor.
pub const STREAM_TYPE_PRIVATE: u8 = 0x06;
/// The registration descriptor's format identifier of Opus.
const OPUS_REGISTRATION: &[u8; 4] = b"Opus";
/// PES stream id of private_stream_1, which Opus PES carry.
const STREAM_ID_PRIVATE_1: u8 = 0xbd;
/// Largest video PES the demuxer reassembles; a larger one is dropped.
pub const MAX_VIDEO_PES: usize = 8 << 20;
/// Largest audio PES (audio PES always carry their 16-bit length).
pub const MAX_AUDIO_PES: usize = 6 + 0xffff;
/// Most unread input the demuxer holds; older bytes are dropped past it.
pub const MAX_PENDING: usize = 8 << 20;
/// PID of the PMT the muxer writes.
pub const PMT_PID: u16 = 0x1000;
/// PID of the video stream the muxer writes.
pub const VIDEO_PID: u16 = 0x100;
/// PID of the audio stream the muxer writes.
pub const AUDIO_PID: u16 = 0x101;
/// How far the muxer's PCR runs behind the DTS of the newest frame (the decoder buffer).
pub const PCR_DELAY_US: i64 = 200_000;
/// The muxer writes PAT and PMT at least this often in stream time.
pub const PSI_INTERVAL_US: i64 = 100_000;
/// The muxer writes a PCR on a frame when the last one is at least this old, so PCRs are at
/// most 40 ms apart whenever frames come at least every 20 ms.
pub const PCR_SPACING_US: i64 = 20_000;

const PAT_PID: u16 = 0;
const NULL_PID: u16 = 0x1fff;
const WRAP: i64 = 1 << 33;
const MAX_SECTION: usize = 1024;
/// A DTS this far behind the newest one is a timestamp reset, not interleaving.
const RESET_US: i64 = 1_000_000;

/// H.265 NAL unit types (ITU-T H.265 Table 7-1): IRAP pictures, parameter sets, AUD.
const HEVC_IRAP: std::ops::RangeInclusive<u8> = 16..=23;
const HEVC_VPS: u8 = 32;
const HEVC_SPS: u8 = 33;
const HEVC_PPS: u8 = 34;
const HEVC_AUD: u8 = 35;

/// The NAL unit type of an H.265 NAL unit (ITU-T H.265 7.3.1.2).
fn hevc_nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| (b >> 1) & 0x3f)
}

/// The stream type (ISO/IEC 13818-1 Table 2-34) under which the muxer writes `codec`;
/// `None` for a codec it cannot carry, which it then never declares in the PMT.
pub fn stream_type(codec: Codec) -> Option<u8> {
    match codec {
        Codec::H264 => Some(STREAM_TYPE_H264),
        Codec::H265 => Some(STREAM_TYPE_H265),
        Codec::Aac => Some(STREAM_TYPE_AAC),
        Codec::Opus => Some(STREAM_TYPE_PRIVATE),
        // AV1 in MPEG-TS (AOM's "Carriage of AV1 in MPEG-2 TS") is not written: no client
        // here reads it back (FFmpeg writes AV1 as unregistered private data and cannot
        // demux it), so a player could not decode it.
        Codec::Av1 => None,
    }
}

/// A frame the muxer cannot write. Nothing is written for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsError {
    /// A codec this muxer does not carry (see [`stream_type`]), or one on a track whose
    /// other codec the PMT declares.
    #[error("{0:?} cannot be muxed into TS here")]
    Unsupported(Codec),
    /// A media frame before its track's config frame.
    #[error("{0:?} media before its codec config")]
    NoConfig(Track),
    /// The config or payload cannot be read.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// An AAC access unit too large for one ADTS frame.
    #[error("AAC frame of {0} bytes does not fit ADTS")]
    FrameTooLarge(usize),
}

/// 90 kHz ticks to microseconds, rounded to nearest.
fn ticks_to_us(ticks: i64) -> i64 {
    ticks.saturating_mul(200).saturating_add(9).div_euclid(18)
}

/// Microseconds to 90 kHz ticks, rounded to nearest.
fn us_to_ticks(us: i64) -> i64 {
    us.saturating_mul(18).saturating_add(100).div_euclid(200)
}

/// Counters of what the demuxer dropped or repaired, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemuxStats {
    /// Packets read.
    pub packets: u64,
    /// Times the sync byte was lost.
    pub sync_losses: u64,
    /// Bytes skipped while looking for the sync byte.
    pub skipped_bytes: u64,
    /// Continuity counter jumps and packets with the transport error flag.
    pub cc_errors: u64,
    /// PES dropped (lost packets, oversize, malformed header).
    pub dropped_pes: u64,
    /// Frames dropped: video before its config or while waiting for an IDR after a loss,
    /// audio without a timestamp or with unreadable ADTS.
    pub dropped_frames: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EsKind {
    Video,
    Audio,
}

#[derive(Debug)]
struct Es {
    pid: u16,
    cc: Option<u8>,
    pes: BytesMut,
    /// Bytes of the current PES are being collected.
    receiving: bool,
}

impl Es {
    fn new(pid: u16) -> Self {
        Es {
            pid,
            cc: None,
            pes: BytesMut::new(),
            receiving: false,
        }
    }
}

#[derive(Debug, Default)]
struct Section {
    buf: Vec<u8>,
    active: bool,
}

/// Reads a transport stream into frames. Push bytes as they arrive, in any split, then poll
/// frames until `None`.
#[derive(Debug)]
pub struct TsDemuxer {
    input: BytesMut,
    synced: bool,
    finished: bool,
    pmt_pid: Option<u16>,
    pat: Section,
    pmt: Section,
    video: Option<Es>,
    audio: Option<Es>,
    /// The last timestamp seen (90 kHz, unwrapped), shared by both tracks.
    clock: Option<i64>,
    out: VecDeque<MediaFrame>,
    /// The video codec the PMT declares.
    video_codec: Codec,
    /// Stream types of the last PMT's elementary streams that are not read.
    ignored: Vec<u8>,
    sps: Vec<Bytes>,
    pps: Vec<Bytes>,
    /// H.265 VPS, SPS and PPS NAL units last seen in-band.
    hevc_sets: Vec<Bytes>,
    /// The video config last emitted (AVC or HEVC record).
    video_record: Option<Bytes>,
    wait_idr: bool,
    last_video_ts: Option<(i64, i64)>,
    aac: Option<AacConfig>,
    /// The audio codec the PMT declares (AAC or Opus).
    audio_codec: Codec,
    /// Opus: the channels the PMT's extension descriptor gives, and the OpusHead last emitted.
    opus_channels: u8,
    opus_head: Option<Bytes>,
    next_audio_ticks: Option<i64>,
    stats: DemuxStats,
}

impl Default for TsDemuxer {
    fn default() -> Self {
        TsDemuxer {
            input: BytesMut::new(),
            synced: true,
            finished: false,
            pmt_pid: None,
            pat: Section::default(),
            pmt: Section::default(),
            video: None,
            audio: None,
            clock: None,
            out: VecDeque::new(),
            video_codec: Codec::H264,
            ignored: Vec::new(),
            sps: Vec::new(),
            pps: Vec::new(),
            hevc_sets: Vec::new(),
            video_record: None,
            wait_idr: true,
            last_video_ts: None,
            aac: None,
            audio_codec: Codec::Aac,
            opus_channels: 2,
            opus_head: None,
            next_audio_ticks: None,
            stats: DemuxStats::default(),
        }
    }
}

/// A 33-bit PTS/DTS field (ISO/IEC 13818-1 2.4.3.7).
fn read_timestamp(b: &[u8]) -> i64 {
    (i64::from(b[0] >> 1 & 0x07) << 30)
        | (i64::from(b[1]) << 22)
        | (i64::from(b[2] >> 1) << 15)
        | (i64::from(b[3]) << 7)
        | i64::from(b[4] >> 1)
}

impl TsDemuxer {
    /// A demuxer waiting for a PAT.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes. Past [`MAX_PENDING`] unread bytes the oldest are dropped.
    pub fn push(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
        if self.input.len() > MAX_PENDING {
            let excess = self.input.len() - MAX_PENDING;
            let _ = self.input.split_to(excess);
            self.stats.skipped_bytes += excess as u64;
            self.synced = false;
        }
    }

    /// Marks the end of the input: the PES still open (video PES end only when the next
    /// one starts) are completed by the next polls.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// What was dropped or repaired so far.
    pub fn stats(&self) -> DemuxStats {
        self.stats
    }

    /// The stream types of the program's elementary streams that are not read (codecs this
    /// demuxer does not carry, a second video or audio stream), as the last PMT lists them:
    /// their data is dropped, and the session says so.
    pub fn ignored_stream_types(&self) -> &[u8] {
        &self.ignored
    }

    /// The next frame, or `None` when the pushed bytes hold no further complete frame.
    pub fn poll_frame(&mut self) -> Option<MediaFrame> {
        loop {
            if let Some(frame) = self.out.pop_front() {
                return Some(frame);
            }
            if !self.step() {
                if self.finished {
                    self.finished = false;
                    self.complete_pes(EsKind::Video);
                    self.complete_pes(EsKind::Audio);
                }
                return self.out.pop_front();
            }
        }
    }

    fn confirmed(&self, at: usize) -> bool {
        self.input.get(at + PACKET_SIZE) == Some(&SYNC_BYTE)
            && self.input.get(at + 2 * PACKET_SIZE) == Some(&SYNC_BYTE)
    }

    /// Reads one packet or skips garbage; false when more input is needed.
    fn step(&mut self) -> bool {
        if self.input.len() < PACKET_SIZE {
            return false;
        }
        if self.input[0] == SYNC_BYTE {
            if self.synced || self.confirmed(0) {
                self.synced = true;
                let packet = self.input.split_to(PACKET_SIZE);
                self.stats.packets += 1;
                self.packet(&packet);
                return true;
            }
            if self.input.len() <= 2 * PACKET_SIZE {
                return false; // cannot confirm this candidate yet
            }
        }
        if self.synced {
            self.synced = false;
            self.stats.sync_losses += 1;
        }
        // A new sync point is a sync byte followed by two more at packet spacing. Keep the
        // bytes from the first candidate that cannot be checked yet.
        let len = self.input.len();
        let mut skip = len;
        for i in 1..len {
            if self.input[i] != SYNC_BYTE {
                continue;
            }
            if i + 2 * PACKET_SIZE >= len || self.confirmed(i) {
                skip = i;
                break;
            }
        }
        let _ = self.input.split_to(skip);
        self.stats.skipped_bytes += skip as u64;
        skip > 0 && self.input.len() >= PACKET_SIZE
    }

    fn es_mut(&mut self, kind: EsKind) -> Option<&mut Es> {
        match kind {
            EsKind::Video => self.video.as_mut(),
            EsKind::Audio => self.audio.as_mut(),
        }
    }

    fn packet(&mut self, p: &[u8]) {
        let error = p[1] & 0x80 != 0;
        let start = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let scrambled = p[3] >> 6 != 0;
        let afc = (p[3] >> 4) & 0x03;
        let cc = p[3] & 0x0f;
        if pid == NULL_PID || afc == 0 {
            return;
        }
        let kind = match (&self.video, &self.audio) {
            (Some(v), _) if v.pid == pid => Some(EsKind::Video),
            (_, Some(a)) if a.pid == pid => Some(EsKind::Audio),
            _ => None,
        };
        let mut payload_at = 4;
        let mut discontinuity = false;
        if afc & 0x02 != 0 {
            let af_len = usize::from(p[4]);
            if af_len > 183 {
                // Impossible length: the packet is damaged.
                if let Some(kind) = kind {
                    self.stats.cc_errors += 1;
                    self.drop_pes(kind);
                }
                return;
            }
            discontinuity = af_len > 0 && p[5] & 0x80 != 0;
            payload_at = 5 + af_len;
        }
        let payload = if afc & 0x01 != 0 {
            &p[payload_at..]
        } else {
            &[][..]
        };
        let Some(kind) = kind else {
            if pid == PAT_PID && !error {
                self.psi(true, start, payload);
            } else if Some(pid) == self.pmt_pid && !error {
                self.psi(false, start, payload);
            }
            return;
        };
        if error {
            self.stats.cc_errors += 1;
            self.drop_pes(kind);
            return;
        }
        if afc & 0x01 == 0 || scrambled {
            return;
        }
        let Some(es) = self.es_mut(kind) else {
            return;
        };
        let previous = es.cc.replace(cc);
        match previous {
            Some(prev) if !discontinuity && cc == prev => return, // duplicate packet
            Some(prev) if !discontinuity && cc != (prev + 1) & 0x0f => {
                self.stats.cc_errors += 1;
                self.drop_pes(kind);
            }
            _ => {}
        }
        if start {
            self.complete_pes(kind);
            if let Some(es) = self.es_mut(kind) {
                es.receiving = true;
            }
        }
        let max = match kind {
            EsKind::Video => MAX_VIDEO_PES,
            EsKind::Audio => MAX_AUDIO_PES,
        };
        let Some(es) = self.es_mut(kind) else {
            return;
        };
        if !es.receiving {
            return;
        }
        if es.pes.len() + payload.len() > max {
            self.drop_pes(kind);
            return;
        }
        es.pes.extend_from_slice(payload);
        if es.pes.len() >= 6 {
            let declared = usize::from(u16::from_be_bytes([es.pes[4], es.pes[5]]));
            if declared != 0 && es.pes.len() >= 6 + declared {
                self.complete_pes(kind);
            }
        }
    }

    /// Data of `kind` was lost: drop its PES in progress; video then waits for an IDR.
    fn drop_pes(&mut self, kind: EsKind) {
        if let Some(es) = self.es_mut(kind) {
            let dropped = es.receiving;
            es.receiving = false;
            es.pes = BytesMut::new();
            if dropped {
                self.stats.dropped_pes += 1;
            }
        }
        if kind == EsKind::Video {
            self.wait_idr = true;
        }
    }

    /// Ends the PES being collected on `kind` (if any) and turns it into frames.
    fn complete_pes(&mut self, kind: EsKind) {
        let Some(es) = self.es_mut(kind) else {
            return;
        };
        if !es.receiving {
            return;
        }
        es.receiving = false;
        let pes = std::mem::take(&mut es.pes).freeze();
        if pes.is_empty() {
            return;
        }
        let Some((pts, dts, payload)) = self.parse_pes(&pes) else {
            self.stats.dropped_pes += 1;
            if kind == EsKind::Video {
                self.wait_idr = true;
            }
            return;
        };
        match kind {
            EsKind::Video => self.video_pes(pts, dts, payload),
            EsKind::Audio if self.audio_codec == Codec::Opus => self.opus_pes(pts, payload),
            EsKind::Audio => self.audio_pes(pts, payload),
        }
    }

    /// Header of a PES (ISO/IEC 13818-1 2.4.3.6): (PTS, DTS, payload). `None` if malformed
    /// or shorter than its declared length.
    #[allow(clippy::type_complexity)]
    fn parse_pes(&mut self, pes: &Bytes) -> Option<(Option<i64>, Option<i64>, Bytes)> {
        if pes.len() < 9 || pes[..3] != [0, 0, 1] {
            return None;
        }
        let declared = usize::from(u16::from_be_bytes([pes[4], pes[5]]));
        let end = if declared == 0 {
            pes.len()
        } else {
            6 + declared
        };
        if end > pes.len() || pes[6] & 0xc0 != 0x80 {
            return None;
        }
        let flags = pes[7] >> 6;
        let header_len = usize::from(pes[8]);
        let start = 9 + header_len;
        if start > end {
            return None;
        }
        let mut pts = None;
        let mut dts = None;
        if flags & 0x02 != 0 {
            if header_len < 5 {
                return None;
            }
            let raw_pts = read_timestamp(&pes[9..14]);
            if flags == 0x03 {
                if header_len < 10 {
                    return None;
                }
                dts = Some(self.unwrap(read_timestamp(&pes[14..19])));
            }
            pts = Some(self.unwrap(raw_pts));
        }
        Some((pts, dts, pes.slice(start..end)))
    }

    /// A 33-bit timestamp placed nearest to the last one seen.
    fn unwrap(&mut self, raw: i64) -> i64 {
        let value = match self.clock {
            None => raw,
            Some(last) => {
                let mut delta = (raw - last).rem_euclid(WRAP);
                if delta >= WRAP / 2 {
                    delta -= WRAP;
                }
                last + delta
            }
        };
        self.clock = Some(value);
        value
    }

    fn emit(&mut self, track: Track, kind: FrameKind, ts: (i64, i64), key: bool, payload: Bytes) {
        let codec = match track {
            Track::Video => self.video_codec,
            Track::Audio => self.audio_codec,
        };
        self.out.push_back(MediaFrame {
            track,
            codec,
            kind,
            dts: ticks_to_us(ts.1),
            pts: ticks_to_us(ts.0),
            keyframe: key,
            payload,
        });
    }

    fn video_pes(&mut self, pts: Option<i64>, dts: Option<i64>, payload: Bytes) {
        let ts = match (pts, dts) {
            (Some(p), Some(d)) => (p, d),
            (Some(p), None) => (p, p),
            _ => match self.last_video_ts {
                Some(ts) => ts,
                None => {
                    self.stats.dropped_frames += 1;
                    return;
                }
            },
        };
        self.last_video_ts = Some(ts);
        let (record, media, idr) = match self.video_codec {
            Codec::H265 => self.hevc_access_unit(&payload),
            _ => self.avc_access_unit(&payload),
        };
        if let Some(record) = record {
            if self.video_record.as_ref() != Some(&record) {
                self.video_record = Some(record.clone());
                self.emit(Track::Video, FrameKind::Config, ts, true, record);
            }
        }
        if media.is_empty() {
            return;
        }
        if self.video_record.is_none() || (self.wait_idr && !idr) {
            self.stats.dropped_frames += 1;
            return;
        }
        self.wait_idr = false;
        self.emit(Track::Video, FrameKind::Media, ts, idr, to_avcc(&media));
    }

    /// Splits an H.264 access unit: the AVCDecoderConfigurationRecord when it carries
    /// parameter sets, the other NAL units but AUDs, and whether it holds an IDR slice.
    fn avc_access_unit<'a>(&mut self, payload: &'a Bytes) -> (Option<Bytes>, Vec<&'a [u8]>, bool) {
        let mut sps = Vec::new();
        let mut pps = Vec::new();
        let mut media = Vec::new();
        let mut idr = false;
        for nal in annexb_nals(payload) {
            match h264_nal_type(nal) {
                NAL_SPS => sps.push(payload.slice_ref(nal)),
                NAL_PPS => pps.push(payload.slice_ref(nal)),
                NAL_AUD => {}
                t => {
                    idr |= t == NAL_IDR;
                    media.push(nal);
                }
            }
        }
        if sps.is_empty() && pps.is_empty() {
            return (None, media, idr);
        }
        if !sps.is_empty() {
            sps.dedup();
            self.sps = sps;
        }
        if !pps.is_empty() {
            pps.dedup();
            self.pps = pps;
        }
        let record = AvcConfig::from_parameter_sets(self.sps.clone(), self.pps.clone())
            .ok()
            .map(|config| config.to_record());
        (record, media, idr)
    }

    /// Splits an H.265 access unit: the HEVCDecoderConfigurationRecord when it carries
    /// parameter sets (each type it carries replaces the ones seen before), the other NAL
    /// units but AUDs, and whether it is an IRAP picture (a decoder can start there).
    fn hevc_access_unit<'a>(&mut self, payload: &'a Bytes) -> (Option<Bytes>, Vec<&'a [u8]>, bool) {
        let mut sets: Vec<Bytes> = Vec::new();
        let mut media = Vec::new();
        let mut irap = false;
        for nal in annexb_nals(payload) {
            match hevc_nal_type(nal) {
                HEVC_VPS | HEVC_SPS | HEVC_PPS => {
                    let set = payload.slice_ref(nal);
                    if !sets.contains(&set) {
                        sets.push(set);
                    }
                }
                HEVC_AUD => {}
                t => {
                    irap |= HEVC_IRAP.contains(&t);
                    media.push(nal);
                }
            }
        }
        if sets.is_empty() {
            return (None, media, irap);
        }
        self.hevc_sets.retain(|old| {
            !sets
                .iter()
                .any(|new| hevc_nal_type(new) == hevc_nal_type(old))
        });
        self.hevc_sets.extend(sets);
        (hevc_record(&self.hevc_sets).ok(), media, irap)
    }

    fn audio_pes(&mut self, pts: Option<i64>, payload: Bytes) {
        let Some(base) = pts.or(self.next_audio_ticks) else {
            self.stats.dropped_frames += 1;
            return;
        };
        let mut pos = 0;
        let mut samples: i64 = 0;
        let mut rate = self.aac.map_or(0, |c| c.sample_rate);
        while pos < payload.len() {
            match parse_adts(&payload[pos..]) {
                Ok(Some((config, header_len, frame_len))) => {
                    rate = config.sample_rate;
                    let ticks = base + samples * 90_000 / i64::from(rate);
                    samples += 1024;
                    let raw_blocks = payload[pos + 6] & 0x03;
                    if raw_blocks != 0 || frame_len == header_len {
                        // Several AUs without their boundaries, or none: not one raw AU.
                        self.stats.dropped_frames += 1;
                    } else {
                        if self.aac != Some(config) {
                            self.aac = Some(config);
                            self.emit(
                                Track::Audio,
                                FrameKind::Config,
                                (ticks, ticks),
                                true,
                                config.to_asc(),
                            );
                        }
                        let au = payload.slice(pos + header_len..pos + frame_len);
                        self.emit(Track::Audio, FrameKind::Media, (ticks, ticks), true, au);
                    }
                    pos += frame_len;
                }
                Ok(None) => {
                    self.stats.dropped_frames += 1;
                    break;
                }
                Err(_) => {
                    // Garbage inside the PES: look for the next sync word.
                    match payload[pos + 1..]
                        .windows(2)
                        .position(|w| w[0] == 0xff && w[1] & 0xf6 == 0xf0)
                    {
                        Some(next) => pos += 1 + next,
                        None => {
                            self.stats.dropped_frames += 1;
                            break;
                        }
                    }
                }
            }
        }
        if rate > 0 {
            self.next_audio_ticks = Some(base + samples * 90_000 / i64::from(rate));
        }
    }

    /// Opus access units, each after its control header (see the module documentation):
    /// the first gets the PES's PTS, the next ones that plus the durations before them. An
    /// access unit whose header or size does not fit the PES ends the PES (dropped).
    fn opus_pes(&mut self, pts: Option<i64>, payload: Bytes) {
        let Some(mut ticks) = pts.or(self.next_audio_ticks) else {
            self.stats.dropped_frames += 1;
            return;
        };
        let mut pos = 0;
        while pos < payload.len() {
            let Some((header_len, size)) = opus_control_header(&payload[pos..]) else {
                self.stats.dropped_frames += 1;
                break;
            };
            let start = pos + header_len;
            let Some(end) = start.checked_add(size).filter(|&e| e <= payload.len()) else {
                self.stats.dropped_frames += 1;
                break;
            };
            pos = end;
            let packet = payload.slice(start..end);
            let Some(samples) = opus_packet_samples(&packet) else {
                self.stats.dropped_frames += 1;
                continue;
            };
            let head = OpusHead::for_channels(self.opus_channels);
            if self.opus_head.as_ref() != Some(&head) {
                self.opus_head = Some(head.clone());
                self.emit(Track::Audio, FrameKind::Config, (ticks, ticks), true, head);
            }
            self.emit(Track::Audio, FrameKind::Media, (ticks, ticks), true, packet);
            // 90 kHz from 48 kHz samples: 15/8 of a tick each (Opus durations are multiples
            // of 120 samples, so this is exact).
            ticks += i64::from(samples) * 90_000 / 48_000;
        }
        self.next_audio_ticks = Some(ticks);
    }

    /// Collects PSI sections (ISO/IEC 13818-1 2.4.4) on the PAT or PMT PID.
    fn psi(&mut self, is_pat: bool, start: bool, payload: &[u8]) {
        let section = if is_pat { &mut self.pat } else { &mut self.pmt };
        let mut data = payload;
        let mut complete = Vec::new();
        if start {
            let Some((&pointer, rest)) = payload.split_first() else {
                return;
            };
            let pointer = usize::from(pointer);
            if pointer > rest.len() {
                section.active = false;
                return;
            }
            if section.active {
                section.buf.extend_from_slice(&rest[..pointer]);
                take_sections(section, &mut complete);
            }
            section.buf.clear();
            section.active = true;
            data = &rest[pointer..];
        } else if !section.active {
            return;
        }
        section.buf.extend_from_slice(data);
        take_sections(section, &mut complete);
        for s in complete {
            if mpeg_crc32(&s) != 0 {
                continue;
            }
            if is_pat {
                self.read_pat(&s);
            } else {
                self.read_pmt(&s);
            }
        }
    }

    fn read_pat(&mut self, s: &[u8]) {
        if s[0] != 0x00 || s.len() < 12 {
            return;
        }
        let pmt = s[8..s.len() - 4]
            .chunks_exact(4)
            .find(|e| u16::from_be_bytes([e[0], e[1]]) != 0)
            .map(|e| (u16::from(e[2] & 0x1f) << 8) | u16::from(e[3]));
        if pmt.is_some() && pmt != self.pmt_pid {
            self.pmt_pid = pmt;
            self.pmt = Section::default();
        }
    }

    fn read_pmt(&mut self, s: &[u8]) {
        if s[0] != 0x02 || s.len() < 16 {
            return;
        }
        let info_len = (usize::from(s[10] & 0x0f) << 8) | usize::from(s[11]);
        let end = s.len() - 4;
        let mut pos = 12 + info_len;
        let mut video = None;
        let mut audio = None;
        self.ignored.clear();
        while pos + 5 <= end {
            let stream_type = s[pos];
            let pid = (u16::from(s[pos + 1] & 0x1f) << 8) | u16::from(s[pos + 2]);
            let es_info = (usize::from(s[pos + 3] & 0x0f) << 8) | usize::from(s[pos + 4]);
            let descriptors = s.get(pos + 5..(pos + 5 + es_info).min(end)).unwrap_or(&[]);
            match stream_type {
                STREAM_TYPE_H264 if video.is_none() => video = Some((pid, Codec::H264)),
                STREAM_TYPE_H265 if video.is_none() => video = Some((pid, Codec::H265)),
                STREAM_TYPE_AAC if audio.is_none() => audio = Some((pid, Codec::Aac, 0)),
                STREAM_TYPE_PRIVATE if audio.is_none() => match opus_descriptors(descriptors) {
                    Some(channels) => audio = Some((pid, Codec::Opus, channels)),
                    None => self.ignored.push(stream_type),
                },
                other => self.ignored.push(other),
            }
            pos += 5 + es_info;
        }
        let video_codec = video.map_or(self.video_codec, |(_, codec)| codec);
        let video = video.map(|(pid, _)| pid);
        if video != self.video.as_ref().map(|e| e.pid) || video_codec != self.video_codec {
            self.video = video.map(Es::new);
            self.wait_idr = true;
            if video_codec != self.video_codec {
                // Another codec: the parameter sets of the old one mean nothing to it.
                self.video_codec = video_codec;
                self.sps.clear();
                self.pps.clear();
                self.hevc_sets.clear();
                self.video_record = None;
            }
        }
        if let Some((_, codec, channels)) = audio {
            if codec != self.audio_codec || (codec == Codec::Opus && channels != self.opus_channels)
            {
                self.audio_codec = codec;
                self.opus_channels = channels;
                self.aac = None;
                self.opus_head = None;
            }
        }
        let audio = audio.map(|(pid, _, _)| pid);
        if audio != self.audio.as_ref().map(|e| e.pid) {
            self.audio = audio.map(Es::new);
        }
    }
}

/// The channel count of an Opus elementary stream from its ES descriptors: a registration
/// descriptor (tag 5) `Opus`, and the DVB extension descriptor (tag 0x7F) of extension 0x80
/// whose channel_config_code is 1 (mono) or 2 (stereo). `None` when the stream is not Opus
/// or has a layout the frame model's OpusHead for mapping family 0 cannot say (dual mono,
/// multichannel).
fn opus_descriptors(mut d: &[u8]) -> Option<u8> {
    let mut registered = false;
    let mut channels = None;
    while d.len() >= 2 {
        let (tag, len) = (d[0], usize::from(d[1]));
        let body = d.get(2..2 + len)?;
        match tag {
            0x05 => registered |= body.get(..4) == Some(&OPUS_REGISTRATION[..]),
            0x7f if body.first() == Some(&0x80) => channels = body.get(1).copied(),
            _ => {}
        }
        d = &d[2 + len..];
    }
    // Without the extension descriptor FFmpeg assumes stereo.
    let channels = channels.unwrap_or(2);
    (registered && (1..=2).contains(&channels)).then_some(channels)
}

/// An Opus control header (`opus_control_header`: 11-bit prefix 0x3FF, trim and extension
/// flags, au_size in 0xFF runs, optional 16-bit start and end trims, optional extension):
/// its length and the size of the access unit after it. `None` when it is not one.
fn opus_control_header(data: &[u8]) -> Option<(usize, usize)> {
    let (&b0, rest) = data.split_first()?;
    let &b1 = rest.first()?;
    if b0 != 0x7f || b1 & 0xe0 != 0xe0 {
        return None;
    }
    let mut pos = 2;
    let mut size = 0usize;
    loop {
        let b = *data.get(pos)?;
        pos += 1;
        size += usize::from(b);
        if b != 0xff {
            break;
        }
    }
    if b1 & 0x10 != 0 {
        pos += 2; // start trim
    }
    if b1 & 0x08 != 0 {
        pos += 2; // end trim
    }
    if b1 & 0x04 != 0 {
        pos += 1 + usize::from(*data.get(pos)?); // control extension
    }
    (pos <= data.len()).then_some((pos, size))
}

/// Moves the complete sections at the front of `section.buf` into `out`.
fn take_sections(section: &mut Section, out: &mut Vec<Vec<u8>>) {
    loop {
        if section.buf.first() == Some(&0xff) {
            // Stuffing: nothing more in this packet.
            section.buf.clear();
            section.active = false;
            return;
        }
        if section.buf.len() < 3 {
            return;
        }
        let total = 3 + ((usize::from(section.buf[1] & 0x0f) << 8) | usize::from(section.buf[2]));
        if !(7..=MAX_SECTION).contains(&total) {
            section.buf.clear();
            section.active = false;
            return;
        }
        if section.buf.len() < total {
            return;
        }
        out.push(section.buf.drain(..total).collect());
    }
}

/// CRC-32/MPEG-2 (ISO/IEC 13818-1 Annex A): 0 over a section that ends with its CRC.
fn mpeg_crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Writes frames as a transport stream of one program (number 1): PMT on [`PMT_PID`], video
/// on [`VIDEO_PID`], audio on [`AUDIO_PID`].
///
/// The PMT lists the tracks given to [`Self::with_tracks`], and any other track when its
/// config frame arrives: a new PMT version with the new track after the existing ones, since
/// FFmpeg gives a PID it has not seen yet the existing stream at the same PMT position
/// (`find_matching_stream`), which would turn the audio stream into the video one. The
/// video entry's stream type is its codec's (0x1B H.264, 0x24 H.265); a config of the other
/// video codec makes a new PMT version.
#[derive(Debug, Default)]
pub struct TsMuxer {
    video: Option<VideoConfig>,
    audio: Option<AudioConfig>,
    /// The audio codec the PMT declares (AAC unless told otherwise).
    audio_codec: Option<Codec>,
    /// The PMT's tracks, in order.
    tracks: Vec<Track>,
    /// The stream type the PMT declares for the video track.
    video_type: u8,
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
    cc_audio: u8,
    pmt_version: u8,
    pmt_changed: bool,
    last_psi_us: Option<i64>,
    last_pcr: Option<i64>,
    newest_dts_us: Option<i64>,
    buf: BytesMut,
}

/// What the muxer keeps of an audio codec config.
#[derive(Debug, Clone, Copy)]
enum AudioConfig {
    /// The ADTS header fields.
    Aac(AacConfig),
    /// The channel count the PMT's descriptor gives, and the samples still to be trimmed
    /// from the start of this output (the OpusHead's pre-skip, as FFmpeg writes it).
    Opus { channels: u8, pre_skip_left: u32 },
}

/// What the muxer keeps of a video codec config: the parameter sets it writes in-band.
#[derive(Debug)]
enum VideoConfig {
    Avc(AvcConfig),
    Hevc {
        /// Bytes in each NAL unit length prefix of the media payloads.
        length_size: u8,
        /// VPS, SPS and PPS NAL units, in record order.
        sets: Vec<Bytes>,
    },
}

impl VideoConfig {
    /// Reads an AVC or HEVC configuration record.
    fn parse(codec: Codec, record: &[u8]) -> Result<VideoConfig, TsError> {
        match codec {
            Codec::H264 => Ok(VideoConfig::Avc(AvcConfig::parse(record)?)),
            Codec::H265 => {
                let sets = hvcc_parameter_sets(record)?;
                // lengthSizeMinusOne, in the byte before numOfArrays (ISO/IEC 14496-15
                // 8.3.3.1.2); hvcc_parameter_sets checked the record is that long.
                let length_size = (record[21] & 0x03) + 1;
                if length_size == 3 {
                    return Err(CodecError::BadLengthSize(length_size).into());
                }
                Ok(VideoConfig::Hevc { length_size, sets })
            }
            Codec::Aac | Codec::Av1 | Codec::Opus => Err(TsError::Unsupported(codec)),
        }
    }
}

/// Adaptation-field content of the first packet of a PES.
#[derive(Debug, Clone, Copy, Default)]
struct FirstPacket {
    pcr: Option<i64>,
    discontinuity: bool,
    random_access: bool,
}

impl TsMuxer {
    /// A muxer that learns its tracks from the config frames.
    pub fn new() -> Self {
        Self::default()
    }

    /// A muxer whose PMT lists the tracks of these codecs from the first packet on (video
    /// first), for a stream whose tracks are known; others are still added when their
    /// config arrives. A codec it cannot carry ([`stream_type`] `None`) is left out: the PMT
    /// never declares a track whose frames will not follow.
    pub fn with_tracks(video: Option<Codec>, audio: Option<Codec>) -> Self {
        let mut mux = Self::default();
        if let Some(video_type) = video.and_then(stream_type) {
            mux.tracks.push(Track::Video);
            mux.video_type = video_type;
        }
        if let Some(audio) = audio.filter(|&c| stream_type(c).is_some()) {
            mux.tracks.push(Track::Audio);
            mux.audio_codec = Some(audio);
        }
        mux
    }

    fn add_track(&mut self, track: Track) {
        if !self.tracks.contains(&track) {
            self.tracks.push(track);
            self.pmt_changed = true;
        }
    }

    /// Declares `codec` on the audio track: added, or retyped in a new PMT version.
    fn set_audio_codec(&mut self, codec: Codec) {
        if self.tracks.contains(&Track::Audio) && self.audio_codec.is_some_and(|c| c != codec) {
            self.pmt_changed = true;
        }
        self.audio_codec = Some(codec);
        self.add_track(Track::Audio);
    }

    /// Declares `codec` on the video track: added, or retyped in a new PMT version.
    fn set_video_codec(&mut self, codec: Codec) -> Result<(), TsError> {
        let video_type = stream_type(codec).ok_or(TsError::Unsupported(codec))?;
        if self.tracks.contains(&Track::Video) && self.video_type != video_type {
            self.pmt_changed = true;
        }
        self.video_type = video_type;
        self.add_track(Track::Video);
        Ok(())
    }

    /// Writes `frame` and appends every complete 1316-byte chunk to `out`; the rest stays
    /// buffered until more frames or [`Self::flush`]. Config frames only update the codec
    /// state (parameter sets are written in-band before each IDR). On an error nothing is
    /// written.
    pub fn mux(&mut self, frame: &MediaFrame, out: &mut Vec<Bytes>) -> Result<(), TsError> {
        match (frame.codec, frame.kind) {
            (codec @ (Codec::H264 | Codec::H265), FrameKind::Config) => {
                let config = VideoConfig::parse(codec, &frame.payload)?;
                self.set_video_codec(codec)?;
                self.video = Some(config);
            }
            (Codec::Aac, FrameKind::Config) => {
                let config = AacConfig::parse(&frame.payload)?;
                self.set_audio_codec(Codec::Aac);
                self.audio = Some(AudioConfig::Aac(config));
            }
            (Codec::Opus, FrameKind::Config) => {
                let head = OpusHead::parse(&frame.payload)?;
                if head.channels > 2 || head.mapping_family != 0 {
                    // Multichannel Opus needs the descriptor's explicit channel mapping,
                    // which this muxer does not write. A PMT that declared the track (from
                    // `with_tracks`) stops declaring it: no frame of it will follow.
                    if self.audio_codec == Some(Codec::Opus) {
                        self.tracks.retain(|&t| t != Track::Audio);
                        self.audio_codec = None;
                        self.audio = None;
                        self.pmt_changed = true;
                    }
                    return Err(TsError::Unsupported(Codec::Opus));
                }
                let channels = head.channels;
                let changed = !matches!(
                    self.audio,
                    Some(AudioConfig::Opus { channels: c, .. }) if c == channels
                );
                self.set_audio_codec(Codec::Opus);
                if changed {
                    self.pmt_changed |= self.tracks.contains(&Track::Audio);
                    self.audio = Some(AudioConfig::Opus {
                        channels,
                        pre_skip_left: u32::from(head.pre_skip),
                    });
                }
            }
            (Codec::H264, FrameKind::Media) => {
                let Some(VideoConfig::Avc(config)) = &self.video else {
                    return Err(TsError::NoConfig(Track::Video));
                };
                let nals = avcc_nals(&frame.payload, config.length_size)?;
                let idr = frame.keyframe || nals.iter().any(|n| h264_nal_type(n) == NAL_IDR);
                let has_sets = nals.iter().any(|n| h264_nal_type(n) == NAL_SPS)
                    && nals.iter().any(|n| h264_nal_type(n) == NAL_PPS);
                let mut es = BytesMut::with_capacity(frame.payload.len() + 64);
                // Access unit delimiter, primary_pic_type 7 (any slice type).
                es.put_slice(&[0, 0, 0, 1, NAL_AUD, 0xf0]);
                if idr && !has_sets {
                    for set in config.sps.iter().chain(&config.pps) {
                        es.put_slice(&[0, 0, 0, 1]);
                        es.put_slice(set);
                    }
                }
                for nal in nals.iter().filter(|n| h264_nal_type(n) != NAL_AUD) {
                    es.put_slice(&[0, 0, 0, 1]);
                    es.put_slice(nal);
                }
                self.write_frame(frame, true, idr, &es);
            }
            (Codec::H265, FrameKind::Media) => {
                let Some(VideoConfig::Hevc { length_size, sets }) = &self.video else {
                    return Err(TsError::NoConfig(Track::Video));
                };
                let nals = avcc_nals(&frame.payload, *length_size)?;
                let irap =
                    frame.keyframe || nals.iter().any(|n| HEVC_IRAP.contains(&hevc_nal_type(n)));
                let has_sets = [HEVC_VPS, HEVC_SPS, HEVC_PPS]
                    .iter()
                    .all(|&t| nals.iter().any(|n| hevc_nal_type(n) == t));
                let mut es = BytesMut::with_capacity(frame.payload.len() + 128);
                // Access unit delimiter (ITU-T H.265 7.3.2.5): nuh_temporal_id_plus1 1,
                // pic_type 2 (any slice type), then the stop bit.
                es.put_slice(&[0, 0, 0, 1, HEVC_AUD << 1, 0x01, 0x50]);
                if irap && !has_sets {
                    for set in sets {
                        es.put_slice(&[0, 0, 0, 1]);
                        es.put_slice(set);
                    }
                }
                for nal in nals.iter().filter(|n| hevc_nal_type(n) != HEVC_AUD) {
                    es.put_slice(&[0, 0, 0, 1]);
                    es.put_slice(nal);
                }
                self.write_frame(frame, true, irap, &es);
            }
            (codec @ Codec::Av1, _) => return Err(TsError::Unsupported(codec)),
            (Codec::Opus, FrameKind::Media) => {
                let Some(AudioConfig::Opus {
                    channels,
                    pre_skip_left,
                }) = self.audio
                else {
                    return Err(TsError::NoConfig(Track::Audio));
                };
                let samples = opus_packet_samples(&frame.payload)
                    .ok_or(CodecError::Truncated("Opus packet"))?;
                // The start trim is 13 bits; the pre-skip is trimmed over as many packets as
                // it spans, as FFmpeg does.
                let trim = pre_skip_left.min(samples).min(0x1fff);
                self.audio = Some(AudioConfig::Opus {
                    channels,
                    pre_skip_left: pre_skip_left - trim,
                });
                let len = frame.payload.len();
                let mut es = BytesMut::with_capacity(len + len / 255 + 6);
                es.put_u8(0x7f);
                es.put_u8(if trim > 0 { 0xf0 } else { 0xe0 });
                es.put_bytes(0xff, len / 255);
                es.put_u8((len % 255) as u8);
                if trim > 0 {
                    es.put_u16(trim as u16);
                }
                es.put_slice(&frame.payload);
                let random_access = !self.tracks.contains(&Track::Video);
                self.write_frame(frame, false, random_access, &es);
            }
            (Codec::Aac, FrameKind::Media) => {
                let Some(AudioConfig::Aac(config)) = self.audio else {
                    return Err(TsError::NoConfig(Track::Audio));
                };
                if frame.payload.len() > ADTS_MAX_PAYLOAD {
                    return Err(TsError::FrameTooLarge(frame.payload.len()));
                }
                let mut es = BytesMut::with_capacity(frame.payload.len() + 7);
                es.put_slice(&config.adts_header(frame.payload.len()));
                es.put_slice(&frame.payload);
                let random_access = !self.tracks.contains(&Track::Video);
                self.write_frame(frame, false, random_access, &es);
            }
        }
        while self.buf.len() >= CHUNK_SIZE {
            out.push(self.buf.split_to(CHUNK_SIZE).freeze());
        }
        Ok(())
    }

    /// Makes the next frame written start with PAT and PMT, whatever their interval: an HLS
    /// segment must carry them at its start for a player that begins there.
    pub fn repeat_tables(&mut self) {
        self.last_psi_us = None;
    }

    /// Appends the buffered packets (fewer than seven) to `out` as one shorter chunk.
    pub fn flush(&mut self, out: &mut Vec<Bytes>) {
        if !self.buf.is_empty() {
            out.push(self.buf.split().freeze());
        }
    }

    fn pcr_pid(&self) -> u16 {
        if self.tracks.contains(&Track::Video) {
            VIDEO_PID
        } else {
            AUDIO_PID
        }
    }

    fn write_frame(&mut self, frame: &MediaFrame, video: bool, random_access: bool, es: &[u8]) {
        let dts = frame.dts;
        // PAT/PMT: first, on a track change, every PSI_INTERVAL_US, before each video IDR.
        let psi_due = self.pmt_changed
            || (video && random_access)
            || self.last_psi_us.is_none_or(|t| {
                dts.saturating_sub(t) >= PSI_INTERVAL_US || dts < t.saturating_sub(RESET_US)
            });
        if psi_due {
            if self.pmt_changed {
                self.pmt_version = (self.pmt_version + 1) & 0x1f;
                self.pmt_changed = false;
            }
            self.write_pat();
            self.write_pmt();
            self.last_psi_us = Some(dts);
        }
        // PCR: the newest DTS less the decoder delay, never going back except at a reset.
        let mut discontinuity = false;
        let newest = match self.newest_dts_us {
            Some(n) if dts < n.saturating_sub(RESET_US) => {
                discontinuity = true;
                dts
            }
            Some(n) => n.max(dts),
            None => dts,
        };
        self.newest_dts_us = Some(newest);
        let pcr = us_to_ticks(newest.saturating_sub(PCR_DELAY_US));
        let pcr_due = discontinuity
            || self
                .last_pcr
                .is_none_or(|last| pcr.saturating_sub(last) >= us_to_ticks(PCR_SPACING_US));
        let pid = if video { VIDEO_PID } else { AUDIO_PID };
        let mut first = FirstPacket {
            random_access,
            ..FirstPacket::default()
        };
        if pcr_due {
            self.last_pcr = Some(pcr);
            if pid == self.pcr_pid() {
                first.pcr = Some(pcr);
                first.discontinuity = discontinuity;
            } else {
                self.write_pcr_only(pcr, discontinuity);
            }
        }
        // PES header (ISO/IEC 13818-1 2.4.3.6) with PTS, and DTS when it differs.
        let pts_ticks = us_to_ticks(frame.pts);
        let dts_ticks = us_to_ticks(dts);
        let with_dts = pts_ticks != dts_ticks;
        let header_len: usize = if with_dts { 10 } else { 5 };
        let pes_len = 3 + header_len + es.len();
        let mut pes = BytesMut::with_capacity(9 + header_len + es.len());
        let stream_id = match (video, self.audio_codec) {
            (true, _) => 0xe0,
            (false, Some(Codec::Opus)) => STREAM_ID_PRIVATE_1,
            (false, _) => 0xc0,
        };
        pes.put_slice(&[0, 0, 1, stream_id]);
        // Video may leave the length 0 (unbounded) when it does not fit 16 bits.
        pes.put_u16(if pes_len > 0xffff { 0 } else { pes_len as u16 });
        pes.put_u8(0x84); // '10', data_alignment_indicator
        pes.put_u8(if with_dts { 0xc0 } else { 0x80 });
        pes.put_u8(header_len as u8);
        put_timestamp(&mut pes, if with_dts { 0x3 } else { 0x2 }, pts_ticks);
        if with_dts {
            put_timestamp(&mut pes, 0x1, dts_ticks);
        }
        pes.put_slice(es);
        self.write_packets(pid, &pes, first);
    }

    fn next_cc(&mut self, pid: u16) -> u8 {
        let cc = match pid {
            PAT_PID => &mut self.cc_pat,
            PMT_PID => &mut self.cc_pmt,
            VIDEO_PID => &mut self.cc_video,
            _ => &mut self.cc_audio,
        };
        let value = *cc;
        *cc = (*cc + 1) & 0x0f;
        value
    }

    /// Splits a PES into packets: the first with PUSI and its adaptation field, the last
    /// padded with adaptation-field stuffing.
    fn write_packets(&mut self, pid: u16, data: &[u8], first: FirstPacket) {
        let mut pos = 0;
        let mut is_first = true;
        while is_first || pos < data.len() {
            let mut flags = 0u8;
            if is_first {
                if first.discontinuity {
                    flags |= 0x80;
                }
                if first.random_access {
                    flags |= 0x40;
                }
                if first.pcr.is_some() {
                    flags |= 0x10;
                }
            }
            let pcr = if is_first { first.pcr } else { None };
            let min_af = if flags != 0 {
                2 + if pcr.is_some() { 6 } else { 0 }
            } else {
                0
            };
            let take = (data.len() - pos).min(184 - min_af);
            let af_total = 184 - take;
            let cc = self.next_cc(pid);
            let afc = if af_total > 0 { 0x30 } else { 0x10 };
            self.buf.reserve(PACKET_SIZE);
            self.buf.put_slice(&[
                SYNC_BYTE,
                (if is_first { 0x40 } else { 0 }) | (pid >> 8) as u8,
                pid as u8,
                afc | cc,
            ]);
            if af_total > 0 {
                self.buf.put_u8((af_total - 1) as u8);
                if af_total > 1 {
                    self.buf.put_u8(flags);
                    let mut used = 2;
                    if let Some(pcr) = pcr {
                        put_pcr(&mut self.buf, pcr);
                        used += 6;
                    }
                    self.buf.put_bytes(0xff, af_total - used);
                }
            }
            self.buf.put_slice(&data[pos..pos + take]);
            pos += take;
            is_first = false;
        }
    }

    /// An adaptation-field-only packet on the PCR PID (its continuity counter unchanged).
    fn write_pcr_only(&mut self, pcr: i64, discontinuity: bool) {
        let pid = self.pcr_pid();
        let cc = match pid {
            VIDEO_PID => self.cc_video,
            _ => self.cc_audio,
        }
        .wrapping_sub(1)
            & 0x0f;
        self.buf.reserve(PACKET_SIZE);
        self.buf
            .put_slice(&[SYNC_BYTE, (pid >> 8) as u8, pid as u8, 0x20 | cc, 183]);
        self.buf.put_u8(0x10 | if discontinuity { 0x80 } else { 0 });
        put_pcr(&mut self.buf, pcr);
        self.buf.put_bytes(0xff, 183 - 7);
    }

    fn write_section(&mut self, pid: u16, section: &[u8]) {
        let cc = self.next_cc(pid);
        self.buf.reserve(PACKET_SIZE);
        self.buf
            .put_slice(&[SYNC_BYTE, 0x40 | (pid >> 8) as u8, pid as u8, 0x10 | cc, 0]);
        self.buf.put_slice(section);
        self.buf.put_bytes(0xff, 183 - section.len());
    }

    fn write_pat(&mut self) {
        let mut s = vec![0x00, 0xb0, 13, 0x00, 0x01, 0xc1, 0, 0, 0x00, 0x01];
        s.extend_from_slice(&[0xe0 | (PMT_PID >> 8) as u8, PMT_PID as u8]);
        let crc = mpeg_crc32(&s);
        s.extend_from_slice(&crc.to_be_bytes());
        self.write_section(PAT_PID, &s);
    }

    fn write_pmt(&mut self) {
        let streams: Vec<(u8, u16, Vec<u8>)> = self
            .tracks
            .iter()
            .map(|t| match t {
                Track::Video => (self.video_type, VIDEO_PID, Vec::new()),
                Track::Audio if self.audio_codec == Some(Codec::Opus) => {
                    let channels = match self.audio {
                        Some(AudioConfig::Opus { channels, .. }) => channels,
                        _ => 2,
                    };
                    // Registration `Opus`; DVB extension descriptor 0x80 with the
                    // channel_config_code (1 mono, 2 stereo), as FFmpeg writes them.
                    let mut d = vec![0x05, 4];
                    d.extend_from_slice(OPUS_REGISTRATION);
                    d.extend_from_slice(&[0x7f, 2, 0x80, channels]);
                    (STREAM_TYPE_PRIVATE, AUDIO_PID, d)
                }
                Track::Audio => (STREAM_TYPE_AAC, AUDIO_PID, Vec::new()),
            })
            .collect();
        let section_len = 9 + streams.iter().map(|(_, _, d)| 5 + d.len()).sum::<usize>() + 4;
        let pcr_pid = self.pcr_pid();
        let mut s = vec![
            0x02,
            0xb0,
            section_len as u8,
            0x00,
            0x01,
            0xc1 | (self.pmt_version << 1),
            0,
            0,
            0xe0 | (pcr_pid >> 8) as u8,
            pcr_pid as u8,
            0xf0,
            0x00,
        ];
        for (stream_type, pid, descriptors) in streams {
            s.extend_from_slice(&[
                stream_type,
                0xe0 | (pid >> 8) as u8,
                pid as u8,
                0xf0,
                descriptors.len() as u8,
            ]);
            s.extend_from_slice(&descriptors);
        }
        let crc = mpeg_crc32(&s);
        s.extend_from_slice(&crc.to_be_bytes());
        self.write_section(PMT_PID, &s);
    }
}

/// A PTS or DTS field with its 4-bit prefix and marker bits (ISO/IEC 13818-1 2.4.3.7).
fn put_timestamp(out: &mut BytesMut, prefix: u8, ticks: i64) {
    let t = ticks.rem_euclid(WRAP) as u64;
    out.put_slice(&[
        (prefix << 4) | ((t >> 29) as u8 & 0x0e) | 1,
        (t >> 22) as u8,
        ((t >> 14) as u8 & 0xfe) | 1,
        (t >> 7) as u8,
        ((t << 1) as u8 & 0xfe) | 1,
    ]);
}

/// A PCR (ISO/IEC 13818-1 2.4.3.5): the 33-bit 90 kHz base, extension 0.
fn put_pcr(out: &mut BytesMut, ticks: i64) {
    let base = ticks.rem_euclid(WRAP) as u64;
    out.put_slice(&[
        (base >> 25) as u8,
        (base >> 17) as u8,
        (base >> 9) as u8,
        (base >> 1) as u8,
        ((base & 1) as u8) << 7 | 0x7e,
        0,
    ]);
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::*;

    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    /// AAC LC, 48 kHz, stereo.
    const ASC: &[u8] = &[0x11, 0x90];

    fn avc_record() -> Bytes {
        AvcConfig::from_parameter_sets(vec![Bytes::from_static(SPS)], vec![Bytes::from_static(PPS)])
            .expect("valid sets")
            .to_record()
    }

    /// Deterministic bytes in 1..=255: no start code can appear inside a NAL unit.
    fn filler(seed: u32, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 255) as u8 + 1
            })
            .collect()
    }

    fn frame(track: Track, kind: FrameKind, dts: i64, pts: i64, key: bool, p: Bytes) -> MediaFrame {
        MediaFrame {
            track,
            codec: match track {
                Track::Video => Codec::H264,
                Track::Audio => Codec::Aac,
            },
            kind,
            dts,
            pts,
            keyframe: key,
            payload: p,
        }
    }

    /// Configs, then `video` frames at 25 fps (IDR every `gop`, some with pts > dts, the first
    /// one over 64 KiB) and AAC frames every 21-22 ms over the same time, in DTS order.
    fn source(start_us: i64, video: usize, gop: usize, audio: bool) -> Vec<MediaFrame> {
        let mut frames = vec![frame(
            Track::Video,
            FrameKind::Config,
            start_us,
            start_us,
            true,
            avc_record(),
        )];
        if audio {
            frames.push(frame(
                Track::Audio,
                FrameKind::Config,
                start_us,
                start_us,
                true,
                Bytes::from_static(ASC),
            ));
        }
        let mut media = Vec::new();
        for i in 0..video {
            let key = i % gop == 0;
            let len = if i == 0 {
                70_000
            } else {
                200 + (i * 997) % 3000
            };
            let mut nal = filler(i as u32 + 7, len);
            nal[0] = if key { 0x65 } else { 0x41 };
            let mut nals: Vec<&[u8]> = vec![&nal];
            let sei = [0x06, 0x05, 0x01, 0x80];
            if i % 5 == 2 {
                nals.insert(0, &sei);
            }
            let dts = start_us + i as i64 * 40_000;
            let pts = dts + if i % 3 == 1 { 80_000 } else { 0 };
            media.push(frame(
                Track::Video,
                FrameKind::Media,
                dts,
                pts,
                key,
                to_avcc(&nals),
            ));
        }
        if audio {
            let end = start_us + video as i64 * 40_000;
            let mut i = 0i64;
            loop {
                let dts = start_us + (i * 1024 * 1000 / 48_000) * 1000;
                if dts >= end {
                    break;
                }
                let len = 100 + (i as usize * 37) % 300;
                media.push(frame(
                    Track::Audio,
                    FrameKind::Media,
                    dts,
                    dts,
                    true,
                    Bytes::from(filler(i as u32 + 1000, len)),
                ));
                i += 1;
            }
        }
        media.sort_by_key(|f| f.dts);
        frames.extend(media);
        frames
    }

    fn mux_all(frames: &[MediaFrame]) -> Vec<u8> {
        mux_with(TsMuxer::new(), frames)
    }

    fn mux_with(mut mux: TsMuxer, frames: &[MediaFrame]) -> Vec<u8> {
        let mut chunks = Vec::new();
        for f in frames {
            mux.mux(f, &mut chunks).expect("muxable frame");
        }
        assert!(
            chunks.iter().all(|c| c.len() == CHUNK_SIZE),
            "whole chunks before flush"
        );
        mux.flush(&mut chunks);
        let last = chunks.last().expect("output").len();
        assert!(last % PACKET_SIZE == 0 && last <= CHUNK_SIZE);
        chunks.concat()
    }

    fn demux_all(bytes: &[u8], split: usize) -> (Vec<MediaFrame>, DemuxStats) {
        let mut demux = TsDemuxer::new();
        let mut frames = Vec::new();
        for part in bytes.chunks(split) {
            demux.push(part);
            while let Some(f) = demux.poll_frame() {
                frames.push(f);
            }
        }
        demux.finish();
        while let Some(f) = demux.poll_frame() {
            frames.push(f);
        }
        (frames, demux.stats())
    }

    fn media(frames: &[MediaFrame], track: Track) -> Vec<MediaFrame> {
        frames
            .iter()
            .filter(|f| f.track == track && f.kind == FrameKind::Media)
            .cloned()
            .collect()
    }

    fn configs(frames: &[MediaFrame], track: Track) -> Vec<Bytes> {
        frames
            .iter()
            .filter(|f| f.track == track && f.kind == FrameKind::Config)
            .map(|f| f.payload.clone())
            .collect()
    }

    #[derive(Debug)]
    struct Packet {
        pid: u16,
        start: bool,
        cc: u8,
        has_payload: bool,
        pcr: Option<i64>,
        random_access: bool,
        payload: Vec<u8>,
    }

    fn packets(bytes: &[u8]) -> Vec<Packet> {
        assert_eq!(bytes.len() % PACKET_SIZE, 0);
        bytes
            .chunks(PACKET_SIZE)
            .map(|p| {
                assert_eq!(p[0], SYNC_BYTE);
                let afc = (p[3] >> 4) & 3;
                let mut at = 4;
                let mut pcr = None;
                let mut random_access = false;
                if afc & 2 != 0 {
                    let len = usize::from(p[4]);
                    if len > 0 {
                        random_access = p[5] & 0x40 != 0;
                        if p[5] & 0x10 != 0 {
                            let b = &p[6..12];
                            pcr = Some(
                                (i64::from(b[0]) << 25)
                                    | (i64::from(b[1]) << 17)
                                    | (i64::from(b[2]) << 9)
                                    | (i64::from(b[3]) << 1)
                                    | i64::from(b[4] >> 7),
                            );
                        }
                        // Everything after the fields used here is stuffing.
                        let used = 2 + if pcr.is_some() { 6 } else { 0 };
                        assert!(
                            p[4 + used..5 + len].iter().all(|&b| b == 0xff),
                            "stuffing is 0xff"
                        );
                    }
                    at = 5 + len;
                }
                Packet {
                    pid: (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]),
                    start: p[1] & 0x40 != 0,
                    cc: p[3] & 0x0f,
                    has_payload: afc & 1 != 0,
                    pcr,
                    random_access,
                    payload: p[at..].to_vec(),
                }
            })
            .collect()
    }

    #[test]
    fn round_trip_h264_and_aac() {
        let source = source(1_000_000, 50, 25, true);
        let ts = mux_all(&source);
        // Any split of the input gives the same frames.
        for split in [1316, 1000, 7, 100_000] {
            let (frames, stats) = demux_all(&ts, split);
            assert_eq!(
                stats.sync_losses + stats.cc_errors + stats.dropped_pes + stats.dropped_frames,
                0,
                "{stats:?}"
            );
            for track in [Track::Video, Track::Audio] {
                let want = media(&source, track);
                let got = media(&frames, track);
                assert_eq!(got.len(), want.len(), "{track:?} frames, split {split}");
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(
                        (g.dts, g.pts, g.keyframe, g.codec),
                        (w.dts, w.pts, w.keyframe, w.codec)
                    );
                    assert_eq!(g.payload, w.payload, "{track:?} payload at {}", w.dts);
                }
                // The config comes first, once (the same SPS/PPS repeat before every IDR).
                let first = frames
                    .iter()
                    .position(|f| f.track == track)
                    .expect("track present");
                assert_eq!(frames[first].kind, FrameKind::Config);
            }
            assert_eq!(configs(&frames, Track::Video), vec![avc_record()]);
            assert_eq!(
                configs(&frames, Track::Audio),
                vec![Bytes::from_static(ASC)]
            );
        }
    }

    #[test]
    fn pcr_psi_and_continuity_counters() {
        let source = source(5_000_000, 75, 25, true);
        let pkts = packets(&mux_all(&source));
        // Continuity: +1 per packet with payload, unchanged on adaptation-only packets.
        let mut last_cc: std::collections::HashMap<u16, u8> = Default::default();
        for p in &pkts {
            if let Some(&prev) = last_cc.get(&p.pid) {
                let want = if p.has_payload {
                    (prev + 1) & 0x0f
                } else {
                    prev
                };
                assert_eq!(p.cc, want, "pid {:#x}", p.pid);
            }
            last_cc.insert(p.pid, p.cc);
        }
        // PCR only on the video PID, increasing, at most 40 ms apart, never after the DTS of a
        // PES that follows it.
        let pcrs: Vec<(usize, i64)> = pkts
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.pcr.map(|v| (i, v)))
            .collect();
        assert!(pkts.iter().all(|p| p.pcr.is_none() || p.pid == VIDEO_PID));
        assert!(pcrs.len() > 3 * 25);
        for w in pcrs.windows(2) {
            let gap = w[1].1 - w[0].1;
            assert!(gap > 0 && gap <= 3600, "PCR gap {gap} ticks");
        }
        let first_pes = pkts
            .iter()
            .position(|p| p.start && (p.pid == VIDEO_PID || p.pid == AUDIO_PID))
            .expect("pes");
        assert!(pcrs[0].0 <= first_pes, "a PCR before the first PES");
        let mut pcr = None;
        for p in &pkts {
            pcr = p.pcr.or(pcr);
            if p.start && (p.pid == VIDEO_PID || p.pid == AUDIO_PID) {
                let flags = p.payload[7];
                let field = if flags == 0xc0 {
                    &p.payload[14..19]
                } else {
                    &p.payload[9..14]
                };
                let dts = read_timestamp(field);
                assert!(
                    pcr.is_some_and(|pcr| pcr <= dts),
                    "PES decoded before it arrives"
                );
            }
        }
        // PAT and PMT lead, precede every video IDR, and come at least every 100 ms.
        assert_eq!((pkts[0].pid, pkts[1].pid), (PAT_PID, PMT_PID));
        let mut idrs = 0;
        for (i, p) in pkts.iter().enumerate() {
            if p.pid == VIDEO_PID && p.random_access {
                idrs += 1;
                assert_eq!((pkts[i - 2].pid, pkts[i - 1].pid), (PAT_PID, PMT_PID));
            }
        }
        assert_eq!(idrs, 3);
        let pats = pkts.iter().filter(|p| p.pid == PAT_PID).count();
        assert!(pats >= 30, "3 s of stream, {pats} PATs");
        // Audio only: the PCR moves to the audio PID.
        let audio_only: Vec<MediaFrame> = source
            .iter()
            .filter(|f| f.track == Track::Audio)
            .cloned()
            .collect();
        let pkts = packets(&mux_all(&audio_only));
        assert!(pkts.iter().any(|p| p.pcr.is_some()));
        assert!(pkts.iter().all(|p| p.pcr.is_none() || p.pid == AUDIO_PID));
        assert!(!pkts.iter().any(|p| p.pid == VIDEO_PID));
    }

    #[test]
    fn resync_after_garbage_and_lost_packets() {
        let source = source(0, 30, 10, true);
        let clean = mux_all(&source);
        let (reference, _) = demux_all(&clean, CHUNK_SIZE);
        let pkts = packets(&clean);
        let video_starts: Vec<usize> = pkts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.pid == VIDEO_PID && p.start)
            .map(|(i, _)| i)
            .collect();
        let audio_starts: Vec<usize> = pkts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.pid == AUDIO_PID && p.start)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(video_starts.len(), 30);
        let video_dts = |frames: &[MediaFrame]| -> Vec<i64> {
            media(frames, Track::Video).iter().map(|f| f.dts).collect()
        };
        let all_video: Vec<i64> = (0..30).map(|i| i * 40_000).collect();
        let check_payloads = |frames: &[MediaFrame]| {
            for f in frames {
                assert!(
                    reference.contains(f),
                    "a frame that was not sent: {} {:?}",
                    f.dts,
                    f.track
                );
            }
        };

        // Garbage (with a stray sync byte) before the stream and between two packets: no
        // packet lost, so every frame survives.
        let mut garbage = vec![0xaa; 333];
        garbage[100] = SYNC_BYTE;
        let cut = 57 * PACKET_SIZE;
        let dirty = [&garbage[..], &clean[..cut], &garbage[..], &clean[cut..]].concat();
        let (frames, stats) = demux_all(&dirty, CHUNK_SIZE);
        assert_eq!(frames, reference);
        assert_eq!(
            (stats.sync_losses, stats.skipped_bytes, stats.cc_errors),
            (2, 666, 0)
        );

        // A video packet inside frame 14 overwritten: frames 14 to 19 are lost, frame 20 (IDR)
        // resumes; no audio lost.
        let mut dirty = clean.clone();
        let at = (video_starts[14] + 1) * PACKET_SIZE;
        assert_eq!(pkts[video_starts[14] + 1].pid, VIDEO_PID);
        dirty[at..at + PACKET_SIZE].fill(0xaa);
        let (frames, stats) = demux_all(&dirty, CHUNK_SIZE);
        check_payloads(&frames);
        let want: Vec<i64> = all_video
            .iter()
            .copied()
            .filter(|t| !(560_000..800_000).contains(t))
            .collect();
        assert_eq!(video_dts(&frames), want);
        assert_eq!(
            media(&frames, Track::Audio),
            media(&reference, Track::Audio)
        );
        assert_eq!(
            (stats.sync_losses, stats.cc_errors, stats.dropped_pes),
            (1, 1, 1)
        );

        // A packet removed from the middle of frame 24 (continuity counter jump): 24 to 29 lost.
        let at = (video_starts[24] + 1) * PACKET_SIZE;
        let dirty = [&clean[..at], &clean[at + PACKET_SIZE..]].concat();
        let (frames, stats) = demux_all(&dirty, CHUNK_SIZE);
        check_payloads(&frames);
        assert_eq!(video_dts(&frames), all_video[..24].to_vec());
        assert_eq!(
            (stats.sync_losses, stats.cc_errors, stats.dropped_pes),
            (0, 1, 1)
        );

        // The transport error flag on a video packet counts as a loss too.
        let mut dirty = clean.clone();
        dirty[(video_starts[3] + 1) * PACKET_SIZE + 1] |= 0x80;
        let (frames, _) = demux_all(&dirty, CHUNK_SIZE);
        assert_eq!(
            video_dts(&frames),
            [&all_video[..3], &all_video[10..]].concat()
        );

        // An audio PES of several packets losing one: only that frame is missing.
        let (n, &start) = audio_starts
            .iter()
            .enumerate()
            .find(|(_, &s)| pkts[s + 1].pid == AUDIO_PID && !pkts[s + 1].start)
            .expect("a multi-packet audio PES");
        let at = (start + 1) * PACKET_SIZE;
        let dirty = [&clean[..at], &clean[at + PACKET_SIZE..]].concat();
        let (frames, _) = demux_all(&dirty, CHUNK_SIZE);
        let mut want = media(&reference, Track::Audio);
        want.remove(n);
        assert_eq!(media(&frames, Track::Audio), want);
        assert_eq!(video_dts(&frames), all_video);

        // A duplicated packet (allowed once by the standard) is ignored.
        let at = (video_starts[5] + 1) * PACKET_SIZE;
        let dirty = [&clean[..at + PACKET_SIZE], &clean[at..]].concat();
        let (frames, stats) = demux_all(&dirty, CHUNK_SIZE);
        assert_eq!((frames, stats.cc_errors), (reference, 0));
    }

    #[test]
    fn garbage_never_panics_and_stays_bounded() {
        let mut seed = 0x1234_5678u32;
        let mut demux = TsDemuxer::new();
        for round in 0..300 {
            let mut bytes = filler(seed, 1316);
            seed = seed.wrapping_mul(2_654_435_761).wrapping_add(round);
            // Valid-looking headers on the PAT, PMT and media PIDs, with random bodies.
            for p in bytes.chunks_mut(PACKET_SIZE) {
                p[0] = SYNC_BYTE;
                p[1] = [0x40, 0x50, 0x41, 0x01][round as usize % 4] | (p[1] & 0x80);
                p[2] = [0x00, 0x00, 0x00, 0x01][round as usize % 4];
            }
            demux.push(&bytes);
            while demux.poll_frame().is_some() {}
            assert!(demux.input.len() < 3 * PACKET_SIZE);
        }
        // A video PES that never ends is dropped at MAX_VIDEO_PES.
        let source = source(0, 1, 25, false);
        let ts = mux_all(&source);
        let mut demux = TsDemuxer::new();
        demux.push(&ts[..4 * PACKET_SIZE]);
        while demux.poll_frame().is_some() {}
        let mut continuation = ts[4 * PACKET_SIZE..5 * PACKET_SIZE].to_vec();
        continuation[1] &= !0x40;
        for i in 0..(MAX_VIDEO_PES / 184 + 10) {
            continuation[3] = (continuation[3] & 0xf0) | ((i as u8).wrapping_add(3) & 0x0f);
            demux.push(&continuation);
            while demux.poll_frame().is_some() {}
        }
        assert!(demux
            .video
            .as_ref()
            .is_some_and(|v| v.pes.len() <= MAX_VIDEO_PES));
        assert!(demux.stats().dropped_pes >= 1);
    }

    #[test]
    fn timestamps_unwrap_across_the_33_bit_wrap() {
        // 2^33 ticks is 95443.717 s: start 0.7 s before it and run 2 s.
        let start = 95_443_000_000;
        let source = source(start, 50, 25, true);
        let ts = mux_all(&source);
        let raw: Vec<i64> = packets(&ts)
            .iter()
            .filter(|p| p.start && p.pid == VIDEO_PID)
            .map(|p| read_timestamp(&p.payload[9..14]))
            .collect();
        assert!(
            raw.windows(2).any(|w| w[1] < w[0]),
            "the stream itself wraps"
        );
        let (frames, _) = demux_all(&ts, CHUNK_SIZE);
        for track in [Track::Video, Track::Audio] {
            let got: Vec<(i64, i64)> = media(&frames, track)
                .iter()
                .map(|f| (f.dts, f.pts))
                .collect();
            let want: Vec<(i64, i64)> = media(&source, track)
                .iter()
                .map(|f| (f.dts, f.pts))
                .collect();
            assert_eq!(got, want);
        }
        // Conversions round to the nearest tick / microsecond.
        assert_eq!((us_to_ticks(40_000), ticks_to_us(3600)), (3600, 40_000));
        assert_eq!((us_to_ticks(-40_000), ticks_to_us(-3600)), (-3600, -40_000));
        assert_eq!(ticks_to_us(2089), 23_211);
    }

    #[test]
    fn mux_refuses_what_it_cannot_write() {
        let mut mux = TsMuxer::new();
        let mut out = Vec::new();
        let v = frame(
            Track::Video,
            FrameKind::Media,
            0,
            0,
            true,
            to_avcc(&[&[0x65, 1]]),
        );
        assert_eq!(mux.mux(&v, &mut out), Err(TsError::NoConfig(Track::Video)));
        let a = frame(
            Track::Audio,
            FrameKind::Media,
            0,
            0,
            true,
            Bytes::from_static(&[1, 2]),
        );
        assert_eq!(mux.mux(&a, &mut out), Err(TsError::NoConfig(Track::Audio)));
        let hevc = MediaFrame {
            codec: Codec::H265,
            ..v.clone()
        };
        assert_eq!(
            mux.mux(&hevc, &mut out),
            Err(TsError::NoConfig(Track::Video))
        );
        let bad = frame(
            Track::Video,
            FrameKind::Config,
            0,
            0,
            true,
            Bytes::from_static(&[1, 2]),
        );
        assert!(matches!(mux.mux(&bad, &mut out), Err(TsError::Codec(_))));
        let asc = frame(
            Track::Audio,
            FrameKind::Config,
            0,
            0,
            true,
            Bytes::from_static(ASC),
        );
        mux.mux(&asc, &mut out).expect("config");
        let big = frame(
            Track::Audio,
            FrameKind::Media,
            0,
            0,
            true,
            Bytes::from(vec![1; 9000]),
        );
        assert_eq!(mux.mux(&big, &mut out), Err(TsError::FrameTooLarge(9000)));
        mux.flush(&mut out);
        assert!(out.is_empty(), "nothing written for refused frames");
        // Absurd timestamps (another protocol's garbage) are written, not a panic.
        for t in [i64::MAX, i64::MIN, 0, -1] {
            let a = frame(
                Track::Audio,
                FrameKind::Media,
                t,
                t,
                true,
                Bytes::from_static(&[1]),
            );
            mux.mux(&a, &mut out).expect("written");
        }
    }

    // H.265 parameter sets: a VPS, an SPS whose profile_tier_level holds emulation
    // prevention bytes, a PPS.
    const HEVC_VPS_NAL: &[u8] = &[0x40, 0x01, 0x0c, 0x01, 0xff, 0xff];
    const HEVC_SPS_NAL: &[u8] = &[
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x5d, 0xa0,
    ];
    const HEVC_PPS_NAL: &[u8] = &[0x44, 0x01, 0xc1, 0x72];

    fn hevc_sets() -> Vec<Bytes> {
        [HEVC_VPS_NAL, HEVC_SPS_NAL, HEVC_PPS_NAL]
            .map(Bytes::from_static)
            .to_vec()
    }

    /// An HEVC config, then `video` H.265 frames at 25 fps (an IDR_W_RADL every `gop`,
    /// prefix SEI on some, pts > dts on some) interleaved with AAC.
    fn hevc_source(video: usize, gop: usize) -> Vec<MediaFrame> {
        let record = crate::protocol::codec::hevc_record(&hevc_sets()).expect("record");
        source(0, video, gop, true)
            .into_iter()
            .map(|f| {
                if f.track != Track::Video {
                    return f;
                }
                let payload = if f.kind == FrameKind::Config {
                    record.clone()
                } else {
                    let nals = avcc_nals(&f.payload, 4).expect("avcc");
                    let nals: Vec<Vec<u8>> = nals
                        .iter()
                        .map(|n| {
                            // IDR_W_RADL (19), TRAIL_R (1), prefix SEI (39); temporal id 0.
                            let t = match h264_nal_type(n) {
                                NAL_IDR => 19,
                                crate::protocol::codec::NAL_SEI => 39,
                                _ => 1,
                            };
                            [&[t << 1, 0x01][..], &n[1..]].concat()
                        })
                        .collect();
                    to_avcc(&nals.iter().map(Vec::as_slice).collect::<Vec<_>>())
                };
                MediaFrame {
                    codec: Codec::H265,
                    payload,
                    ..f
                }
            })
            .collect()
    }

    /// The stream types the PMTs of a transport stream declare, (type, PID), per PMT.
    fn pmt_streams(ts: &[u8]) -> Vec<Vec<(u8, u16)>> {
        packets(ts)
            .iter()
            .filter(|p| p.pid == PMT_PID && p.start)
            .map(|p| {
                let s = &p.payload[1..];
                let len = 3 + ((usize::from(s[1] & 0x0f) << 8) | usize::from(s[2]));
                let info = (usize::from(s[10] & 0x0f) << 8) | usize::from(s[11]);
                let mut entries = Vec::new();
                let mut e = &s[12 + info..len - 4];
                while e.len() >= 5 {
                    entries.push((e[0], (u16::from(e[1] & 0x1f) << 8) | u16::from(e[2])));
                    let es_info = (usize::from(e[3] & 0x0f) << 8) | usize::from(e[4]);
                    e = &e[5 + es_info..];
                }
                entries
            })
            .collect()
    }

    #[test]
    fn h265_round_trips_through_mux_and_demux() {
        let source = hevc_source(60, 25);
        let ts = mux_all(&source);
        // The PMT declares HEVC (0x24) on the video PID, never H.264.
        let pmts = pmt_streams(&ts);
        assert!(!pmts.is_empty());
        for pmt in &pmts {
            assert_eq!(
                pmt.iter().find(|s| s.1 == VIDEO_PID).map(|s| s.0),
                Some(0x24)
            );
        }
        // Each IRAP picture's PES carries AUD, VPS, SPS, PPS in-band before the slice.
        let first_video = packets(&ts)
            .into_iter()
            .find(|p| p.pid == VIDEO_PID && p.start)
            .expect("video");
        let es = &first_video.payload[9 + usize::from(first_video.payload[8])..];
        let types: Vec<u8> = annexb_nals(es).iter().map(|n| hevc_nal_type(n)).collect();
        assert_eq!(&types[..5], &[35, 32, 33, 34, 19]);

        for split in [CHUNK_SIZE, 100, 7] {
            let (frames, stats) = demux_all(&ts, split);
            assert_eq!(
                stats,
                DemuxStats {
                    packets: stats.packets,
                    ..DemuxStats::default()
                }
            );
            assert!(frames
                .iter()
                .all(|f| f.track == Track::Audio || f.codec == Codec::H265));
            assert_eq!(
                configs(&frames, Track::Video),
                configs(&source, Track::Video)
            );
            assert_eq!(media(&frames, Track::Video), media(&source, Track::Video));
            assert_eq!(media(&frames, Track::Audio), media(&source, Track::Audio));
            let keys = media(&frames, Track::Video)
                .iter()
                .filter(|f| f.keyframe)
                .count();
            assert_eq!(keys, 3);
        }

        // Joining mid-stream: pictures before the first IRAP are dropped, the config comes
        // from the IRAP's in-band sets.
        let at = packets(&ts)
            .iter()
            .enumerate()
            .filter(|(_, p)| p.pid == VIDEO_PID && p.start)
            .nth(3)
            .map(|(i, _)| i * PACKET_SIZE)
            .expect("a fourth video PES");
        let (frames, _) = demux_all(&ts[at..], CHUNK_SIZE);
        let video = media(&frames, Track::Video);
        assert_eq!(video.first().map(|f| f.dts), Some(25 * 40_000));
        assert!(video[0].keyframe);
        assert_eq!(
            configs(&frames, Track::Video),
            configs(&source, Track::Video)
        );
    }

    #[test]
    fn streams_the_demuxer_does_not_read_are_reported() {
        // A PMT whose video is MPEG-2 (0x02) beside AAC: the video is not read, and said so.
        let mut mux = TsMuxer::with_tracks(Some(Codec::H264), Some(Codec::Aac));
        mux.video_type = 0x02;
        mux.write_pat();
        mux.write_pmt();
        let mut demux = TsDemuxer::new();
        demux.push(&mux.buf.split());
        while demux.poll_frame().is_some() {}
        assert_eq!(demux.ignored_stream_types(), &[0x02]);
        assert!(demux.video.is_none() && demux.audio.is_some());
        // A PMT of what it reads clears the report.
        demux.push(&mux_all(&hevc_source(1, 25)));
        while demux.poll_frame().is_some() {}
        assert!(demux.ignored_stream_types().is_empty());
    }

    #[test]
    fn the_pmt_declares_the_codec_of_the_frames_that_follow() {
        // A player of a stream known to be H.265 gets 0x24 from the first PMT on.
        let hevc = hevc_source(3, 25);
        let ts = mux_with(
            TsMuxer::with_tracks(Some(Codec::H265), Some(Codec::Aac)),
            &hevc,
        );
        assert_eq!(
            pmt_streams(&ts)[0],
            vec![(STREAM_TYPE_H265, VIDEO_PID), (STREAM_TYPE_AAC, AUDIO_PID)]
        );
        // The video codec changes from H.264 to H.265: a new PMT version retypes the PID.
        let mut frames = source(0, 3, 25, false);
        let later: Vec<MediaFrame> = hevc_source(3, 25)
            .into_iter()
            .filter(|f| f.track == Track::Video)
            .map(|f| MediaFrame {
                dts: f.dts + 200_000,
                pts: f.pts + 200_000,
                ..f
            })
            .collect();
        frames.extend(later);
        let ts = mux_all(&frames);
        let types: Vec<u8> = pmt_streams(&ts).iter().map(|p| p[0].0).collect();
        assert_eq!(types.first(), Some(&STREAM_TYPE_H264));
        assert_eq!(types.last(), Some(&STREAM_TYPE_H265));
        let (demuxed, _) = demux_all(&ts, CHUNK_SIZE);
        let codecs: Vec<Codec> = media(&demuxed, Track::Video)
            .iter()
            .map(|f| f.codec)
            .collect();
        assert_eq!(codecs, [[Codec::H264; 3], [Codec::H265; 3]].concat());
        // H.265 media against an H.264 config is refused, not written under the wrong type.
        let mut mux = TsMuxer::new();
        let mut out = Vec::new();
        mux.mux(&source(0, 1, 25, false)[0], &mut out)
            .expect("avc config");
        let hevc_media = media(&hevc_source(1, 25), Track::Video).remove(0);
        assert_eq!(
            mux.mux(&hevc_media, &mut out),
            Err(TsError::NoConfig(Track::Video))
        );
    }

    fn scratch_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("streamgate-ts-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn run(cmd: &str, args: &[&str]) -> String {
        let out = Command::new(cmd)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{cmd} must be installed: {e}"));
        assert!(
            out.status.success(),
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// One second of 25 fps H.264 (GOP 25) and AAC, as FFmpeg writes it.
    fn ffmpeg_ts(dir: &Path) -> PathBuf {
        ffmpeg_ts_with(dir, "in.ts", &["-c:v", "libx264"])
    }

    /// One second of 25 fps video (GOP 25) encoded with `video` (FFmpeg's options) and AAC,
    /// as FFmpeg writes it, in `dir/name`.
    fn ffmpeg_ts_with(dir: &Path, name: &str, video: &[&str]) -> PathBuf {
        let path = dir.join(name);
        let mut args = vec![
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine",
            "-t",
            "1",
        ];
        args.extend_from_slice(video);
        args.extend(["-g", "25", "-c:a", "aac", "-f", "mpegts"]);
        args.push(path.to_str().expect("utf-8 path"));
        run("ffmpeg", &args);
        path
    }

    /// (pts in 90 kHz ticks, keyframe) of each packet of one stream, as ffprobe reads them.
    fn probe_packets(path: &Path, stream: &str) -> Vec<(i64, bool)> {
        run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-select_streams",
                stream,
                "-show_entries",
                "packet=pts,flags",
                "-of",
                "csv=p=0",
                path.to_str().expect("utf-8 path"),
            ],
        )
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (pts, flags) = l.split_once(',').expect("pts,flags");
            (pts.parse().expect("numeric pts"), flags.starts_with('K'))
        })
        .collect()
    }

    #[test]
    fn demuxes_what_ffmpeg_writes() {
        let dir = scratch_dir("ffmpeg-in");
        let path = ffmpeg_ts(&dir);
        let bytes = std::fs::read(&path).expect("ffmpeg output");
        let (frames, stats) = demux_all(&bytes, CHUNK_SIZE);
        assert_eq!(
            stats.cc_errors + stats.dropped_pes + stats.dropped_frames,
            0,
            "{stats:?}"
        );

        let video = probe_packets(&path, "v");
        assert_eq!(video.len(), 25);
        let got: Vec<(i64, bool)> = media(&frames, Track::Video)
            .iter()
            .map(|f| (f.pts, f.keyframe))
            .collect();
        let want: Vec<(i64, bool)> = video
            .iter()
            .map(|&(pts, key)| (ticks_to_us(pts), key))
            .collect();
        assert_eq!(got, want);
        let avc = AvcConfig::parse(&configs(&frames, Track::Video)[0]).expect("a valid record");
        assert_eq!((avc.sps.len(), avc.pps.len(), avc.length_size), (1, 1, 4));

        let audio = probe_packets(&path, "a");
        let got = media(&frames, Track::Audio);
        assert_eq!(got.len(), audio.len());
        for (f, &(pts, _)) in got.iter().zip(&audio) {
            // FFmpeg's parser interpolates inside a PES in its own rounding: within one tick.
            assert!(
                (f.pts - ticks_to_us(pts)).abs() <= 12,
                "audio pts {} vs {}",
                f.pts,
                ticks_to_us(pts)
            );
        }
        let asc = AacConfig::parse(&configs(&frames, Track::Audio)[0]).expect("a valid ASC");
        let probed = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-select_streams",
                "a",
                "-show_entries",
                "stream=sample_rate,channels",
                "-of",
                "csv",
                path.to_str().expect("utf-8 path"),
            ],
        );
        let probed: Vec<&str> = probed
            .lines()
            .filter_map(|l| l.strip_prefix("stream,"))
            .collect();
        assert_eq!(
            probed,
            vec![format!("{},{}", asc.sample_rate, asc.channels)]
        );
        assert_eq!(asc.object_type, 2);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn ffprobe_reads_what_we_mux() {
        let dir = scratch_dir("ffprobe-out");
        let input = std::fs::read(ffmpeg_ts(&dir)).expect("ffmpeg output");
        // The video config comes first: audio joins the PMT later.
        let (frames, _) = demux_all(&input, CHUNK_SIZE);
        assert_eq!(frames[0].track, Track::Video);
        let audio_frames = media(&frames, Track::Audio).len();
        // (codec, decoded frames) of each stream; ffprobe lists the streams under their
        // program and again on their own, hence the count from the format.
        let streams = |path: &Path| -> Vec<String> {
            let p = path.to_str().expect("utf-8 path");
            let count = run(
                "ffprobe",
                &[
                    "-v",
                    "error",
                    "-show_entries",
                    "format=nb_streams",
                    "-of",
                    "csv=p=0",
                    p,
                ],
            );
            let out = run(
                "ffprobe",
                &[
                    "-v",
                    "error",
                    "-count_frames",
                    "-show_entries",
                    "stream=codec_name,nb_read_frames",
                    "-of",
                    "csv=p=0",
                    p,
                ],
            );
            let mut lines: Vec<String> = Vec::new();
            for l in out.lines().filter(|l| !l.is_empty()) {
                if !lines.iter().any(|seen| seen == l) {
                    lines.push(l.to_string());
                }
            }
            assert_eq!(count.trim(), lines.len().to_string(), "{out}");
            lines
        };

        // Tracks declared up front, as a player session knows them.
        let path = dir.join("declared.ts");
        std::fs::write(
            &path,
            mux_with(
                TsMuxer::with_tracks(Some(Codec::H264), Some(Codec::Aac)),
                &frames,
            ),
        )
        .expect("write");
        assert_eq!(
            streams(&path),
            vec!["h264,25".to_string(), format!("aac,{audio_frames}")]
        );
        let keys: Vec<bool> = probe_packets(&path, "v").iter().map(|&(_, k)| k).collect();
        let want: Vec<bool> = media(&frames, Track::Video)
            .iter()
            .map(|f| f.keyframe)
            .collect();
        assert_eq!(keys, want);
        // Decodes without a single error.
        let out = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-i",
                path.to_str().expect("utf-8 path"),
                "-f",
                "null",
                "-",
            ])
            .output()
            .expect("ffmpeg");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // Tracks learned from the configs, audio first: video joins the PMT after it and
        // FFmpeg still sees one stream of each.
        let mut audio_first = frames.clone();
        let video_config = audio_first.remove(0);
        let at = audio_first
            .iter()
            .position(|f| f.track == Track::Audio)
            .expect("audio");
        let mut reordered: Vec<MediaFrame> = audio_first.drain(at..at + 4).collect();
        reordered.push(video_config);
        reordered.extend(audio_first);
        let path = dir.join("learned.ts");
        std::fs::write(&path, mux_all(&reordered)).expect("write");
        assert_eq!(
            streams(&path),
            vec![format!("aac,{audio_frames}"), "h264,25".to_string()]
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    /// One second of 25 fps H.265 (GOP 25, B-frames, open GOP) and AAC, as FFmpeg's libx265
    /// writes it.
    fn ffmpeg_hevc_ts(dir: &Path) -> PathBuf {
        ffmpeg_ts_with(
            dir,
            "hevc.ts",
            &["-c:v", "libx265", "-x265-params", "log-level=error"],
        )
    }

    #[test]
    fn demuxes_and_remuxes_h265_that_ffmpeg_writes() {
        let dir = scratch_dir("ffmpeg-hevc");
        let path = ffmpeg_hevc_ts(&dir);
        let bytes = std::fs::read(&path).expect("ffmpeg output");
        let (frames, stats) = demux_all(&bytes, CHUNK_SIZE);
        assert_eq!(
            stats.cc_errors + stats.dropped_pes + stats.dropped_frames,
            0,
            "{stats:?}"
        );
        let video = probe_packets(&path, "v");
        assert_eq!(video.len(), 25);
        let got: Vec<(i64, bool, Codec)> = media(&frames, Track::Video)
            .iter()
            .map(|f| (f.pts, f.keyframe, f.codec))
            .collect();
        let want: Vec<(i64, bool, Codec)> = video
            .iter()
            .map(|&(pts, key)| (ticks_to_us(pts), key, Codec::H265))
            .collect();
        assert_eq!(got, want);
        let records = configs(&frames, Track::Video);
        assert_eq!(records.len(), 1);
        let sets = hvcc_parameter_sets(&records[0]).expect("a valid hvcC");
        let types: Vec<u8> = sets.iter().map(|n| hevc_nal_type(n)).collect();
        assert_eq!(types, [HEVC_VPS, HEVC_SPS, HEVC_PPS]);
        assert!(!media(&frames, Track::Audio).is_empty());

        // Written back by the muxer, FFmpeg reads H.265 and decodes every picture.
        let out = dir.join("remuxed.ts");
        let remuxed = mux_with(
            TsMuxer::with_tracks(Some(Codec::H265), Some(Codec::Aac)),
            &frames,
        );
        std::fs::write(&out, remuxed).expect("write");
        let probed = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-count_frames",
                "-select_streams",
                "v",
                "-show_entries",
                "stream=codec_name,nb_read_frames",
                "-of",
                "csv=p=0",
                out.to_str().expect("utf-8 path"),
            ],
        );
        assert_eq!(probed.lines().next(), Some("hevc,25"), "{probed}");
        let decoded = Command::new("ffmpeg")
            .args(["-v", "error", "-i", out.to_str().expect("utf-8 path")])
            .args(["-f", "null", "-"])
            .output()
            .expect("ffmpeg");
        assert!(
            decoded.status.success() && decoded.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&decoded.stderr)
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn demuxes_and_remuxes_opus_that_ffmpeg_writes() {
        let dir = scratch_dir("ffmpeg-opus");
        let path = dir.join("opus.ts");
        run(
            "ffmpeg",
            &[
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine=sample_rate=48000",
                "-t",
                "1",
                "-c:v",
                "libx264",
                "-g",
                "25",
                "-c:a",
                "libopus",
                "-ac",
                "2",
                "-f",
                "mpegts",
                path.to_str().expect("utf-8 path"),
            ],
        );
        let bytes = std::fs::read(&path).expect("ffmpeg output");
        let (frames, stats) = demux_all(&bytes, CHUNK_SIZE);
        assert_eq!(
            stats.cc_errors + stats.dropped_pes + stats.dropped_frames,
            0,
            "{stats:?}"
        );
        assert!(pmt_streams(&bytes)[0].contains(&(STREAM_TYPE_PRIVATE, AUDIO_PID)));
        // Every Opus packet FFmpeg wrote (several to a PES), at its own time.
        let audio = probe_packets(&path, "a");
        let got = media(&frames, Track::Audio);
        assert_eq!(got.len(), audio.len());
        for (f, &(pts, _)) in got.iter().zip(&audio) {
            assert_eq!((f.codec, f.pts), (Codec::Opus, ticks_to_us(pts)));
            assert_eq!(opus_packet_samples(&f.payload), Some(960));
        }
        let heads = configs(&frames, Track::Audio);
        assert_eq!(heads.len(), 1);
        assert_eq!(OpusHead::parse(&heads[0]).map(|h| h.channels), Ok(2));
        assert_eq!(media(&frames, Track::Video).len(), 25);

        // Written back (with the pre-skip of an RTMP publisher's OpusHead), ffprobe finds an
        // Opus stream with every packet, and FFmpeg decodes it without an error.
        let mut head = OpusHead::for_channels(2).to_vec();
        head[10..12].copy_from_slice(&312u16.to_le_bytes());
        let frames: Vec<MediaFrame> = frames
            .into_iter()
            .map(|f| match (f.track, f.kind) {
                (Track::Audio, FrameKind::Config) => MediaFrame {
                    payload: Bytes::from(head.clone()),
                    ..f
                },
                _ => f,
            })
            .collect();
        let out = dir.join("remuxed.ts");
        let remuxed = mux_with(
            TsMuxer::with_tracks(Some(Codec::H264), Some(Codec::Opus)),
            &frames,
        );
        // The first access unit's control header trims the pre-skip (start trim flag).
        let first_pes = packets(&remuxed)
            .into_iter()
            .find(|p| p.pid == AUDIO_PID && p.start)
            .expect("an audio PES");
        let es = &first_pes.payload[9 + usize::from(first_pes.payload[8])..];
        assert_eq!(&es[..2], &[0x7f, 0xf0]);
        std::fs::write(&out, &remuxed).expect("write");
        let probed = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-count_packets",
                "-select_streams",
                "a",
                "-show_entries",
                "stream=codec_name,channels,nb_read_packets",
                "-of",
                "csv=p=0",
                out.to_str().expect("utf-8 path"),
            ],
        );
        assert_eq!(
            probed.lines().next(),
            Some(format!("opus,2,{}", audio.len()).as_str()),
            "{probed}"
        );
        let decoded = Command::new("ffmpeg")
            .args(["-v", "error", "-i", out.to_str().expect("utf-8 path")])
            .args(["-f", "null", "-"])
            .output()
            .expect("ffmpeg");
        assert!(
            decoded.status.success() && decoded.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&decoded.stderr)
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn multichannel_opus_is_never_declared() {
        // A 6-channel OpusHead (mapping family 1): the PMT of a player whose stream was said
        // to have Opus declares the video only.
        let mut head = OpusHead::for_channels(2).to_vec();
        head[9] = 6;
        head[18] = 1;
        head.extend_from_slice(&[4, 2, 0, 4, 1, 2, 3, 5]);
        let mut frames = source(0, 3, 25, false);
        frames.insert(
            1,
            MediaFrame {
                track: Track::Audio,
                codec: Codec::Opus,
                kind: FrameKind::Config,
                dts: 0,
                pts: 0,
                keyframe: true,
                payload: Bytes::from(head),
            },
        );
        let mut mux = TsMuxer::with_tracks(Some(Codec::H264), Some(Codec::Opus));
        let mut out = Vec::new();
        for f in &frames {
            let result = mux.mux(f, &mut out);
            assert_eq!(result.is_err(), f.codec == Codec::Opus);
        }
        mux.flush(&mut out);
        let ts = out.concat();
        assert!(!pmt_streams(&ts).is_empty());
        for pmt in pmt_streams(&ts) {
            assert_eq!(pmt, vec![(STREAM_TYPE_H264, VIDEO_PID)]);
        }
    }

    #[test]
    fn opus_control_headers_and_descriptors() {
        // A 600-byte access unit: size 255 + 255 + 90, start trim 312.
        let mut header = vec![0x7f, 0xf0, 0xff, 0xff, 90, 0x01, 0x38];
        assert_eq!(opus_control_header(&header), Some((7, 600)));
        // End trim and a control extension of 2 bytes.
        header = vec![0x7f, 0xec, 10, 0, 5, 2, 0xaa, 0xbb];
        assert_eq!(opus_control_header(&header), Some((8, 10)));
        assert_eq!(opus_control_header(&header[..7]), None);
        assert_eq!(opus_control_header(&[0x7f, 0xc0, 1]), None);
        assert_eq!(opus_control_header(&[0x7f, 0xe0, 0xff]), None);
        // FFmpeg's descriptors (stereo), mono, and a dual-mono or unregistered stream.
        let ffmpeg = [0x05, 4, b'O', b'p', b'u', b's', 0x7f, 2, 0x80, 2];
        assert_eq!(opus_descriptors(&ffmpeg), Some(2));
        let mut mono = ffmpeg;
        mono[9] = 1;
        assert_eq!(opus_descriptors(&mono), Some(1));
        let mut dual = ffmpeg;
        dual[9] = 0;
        assert_eq!(opus_descriptors(&dual), None);
        assert_eq!(opus_descriptors(&ffmpeg[6..]), None);
        assert_eq!(opus_descriptors(&ffmpeg[..5]), None);
    }
}

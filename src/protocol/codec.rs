//! Codec bitstream helpers shared by every protocol that carries H.264 or AAC: the
//! AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.2.4.1), length-prefixed (AVCC) and
//! start-code (Annex-B, ITU-T H.264 Annex B) NAL unit framing, the AudioSpecificConfig
//! (ISO/IEC 14496-3 1.6.2.1) and the ADTS header (ISO/IEC 14496-3 1.A.2.2 / ISO/IEC 13818-7
//! 6.2); for AV1 and Opus, the AV1CodecConfigurationRecord (AV1 in ISOBMFF §2.3), OBUs and
//! LEB128, the sequence header fields the record and a keyframe test need (AV1 spec §5.5),
//! the Opus identification header (RFC 7845 §5.1) and an Opus packet's duration (RFC 6716
//! §3.1).
//!
//! Pure functions over bytes. This module owns the byte layouts only: it must not know about
//! transports (TS, RTP, FLV), timestamps or frames.

use bytes::{BufMut, Bytes, BytesMut};
use streamgate_actors::media::Codec;

/// A codec configuration or bitstream that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input ends inside the named structure.
    #[error("{0} is truncated")]
    Truncated(&'static str),
    /// An AVCDecoderConfigurationRecord whose configurationVersion is not 1.
    #[error("AVC configuration version {0}, expected 1")]
    BadVersion(u8),
    /// A NAL unit length field size other than 1, 2 or 4 bytes (3 is accepted when splitting).
    #[error("invalid NAL unit length size {0}")]
    BadLengthSize(u8),
    /// A length-prefixed NAL unit that claims more bytes than remain.
    #[error("NAL unit at byte {offset} claims {len} bytes, past the end of the payload")]
    NalOverrun {
        /// Offset of the length field in the payload.
        offset: usize,
        /// The length it claims.
        len: usize,
    },
    /// No SPS or no PPS where both are needed.
    #[error("no SPS or no PPS")]
    NoParameterSets,
    /// A parameter set whose NAL unit type is not the one expected (7 for SPS, 8 for PPS).
    #[error("expected NAL unit type {expected}, found {found}")]
    WrongNalType {
        /// The type expected.
        expected: u8,
        /// The type found.
        found: u8,
    },
    /// More parameter sets than the record can count (31 SPS, 255 PPS) or one over 65535 bytes.
    #[error("parameter sets do not fit an AVCDecoderConfigurationRecord")]
    TooManyParameterSets,
    /// An AudioSpecificConfig with audio object type 0 (null).
    #[error("invalid audio object type {0}")]
    BadObjectType(u8),
    /// A reserved sampling frequency index (13 or 14, or 15 in ADTS).
    #[error("invalid sampling frequency index {0}")]
    BadSampleRateIndex(u8),
    /// Bytes that are not an ADTS header.
    #[error("bad ADTS header: {0}")]
    BadAdts(&'static str),
    /// A LATM StreamMuxConfig this server cannot carry (the named feature).
    #[error("unsupported LATM StreamMuxConfig: {0}")]
    UnsupportedLatm(&'static str),
    /// An AV1CodecConfigurationRecord or OpusHead whose marker, version or magic is not the
    /// one its specification fixes (the named structure).
    #[error("not a valid {0}")]
    BadHeader(&'static str),
}

/// NAL unit type of an IDR slice.
pub const NAL_IDR: u8 = 5;
/// NAL unit type of supplemental enhancement information.
pub const NAL_SEI: u8 = 6;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;

/// The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.2.4.1): the H.264 codec config of
/// the frame model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// AVCProfileIndication (`profile_idc` of the SPS).
    pub profile_idc: u8,
    /// profile_compatibility (the SPS constraint flags byte).
    pub profile_compat: u8,
    /// AVCLevelIndication (`level_idc` of the SPS).
    pub level_idc: u8,
    /// Bytes in each NAL unit length prefix of the media payloads (1, 2 or 4).
    pub length_size: u8,
    /// Sequence parameter set NAL units, header byte included.
    pub sps: Vec<Bytes>,
    /// Picture parameter set NAL units, header byte included.
    pub pps: Vec<Bytes>,
}

impl AvcConfig {
    /// Parses an AVCDecoderConfigurationRecord. The optional high-profile extension after the
    /// PPS (chroma format, bit depths, SPS extensions) is not needed and is skipped.
    ///
    /// A parameter set that is empty or whose NAL unit type is not the one its list holds (7
    /// in the SPS list, 8 in the PPS list) is left out, as [`avcc_nals`] leaves out empty NAL
    /// units: the record comes from the publisher, and every consumer of the lists (RTP
    /// packetizer, SDP, TS muxer) may take each entry for a whole NAL unit with its header.
    pub fn parse(record: &[u8]) -> Result<AvcConfig, CodecError> {
        const WHAT: &str = "AVCDecoderConfigurationRecord";
        if record.len() < 6 {
            return Err(CodecError::Truncated(WHAT));
        }
        if record[0] != 1 {
            return Err(CodecError::BadVersion(record[0]));
        }
        let length_size = (record[4] & 0x03) + 1;
        if length_size == 3 {
            return Err(CodecError::BadLengthSize(length_size));
        }
        let mut pos = 6;
        let read_sets =
            |count: usize, nal_type: u8, pos: &mut usize| -> Result<Vec<Bytes>, CodecError> {
                let mut sets = Vec::with_capacity(count);
                for _ in 0..count {
                    let len_bytes = record
                        .get(*pos..*pos + 2)
                        .ok_or(CodecError::Truncated(WHAT))?;
                    let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
                    let set = record
                        .get(*pos + 2..*pos + 2 + len)
                        .ok_or(CodecError::Truncated(WHAT))?;
                    if !set.is_empty() && h264_nal_type(set) == nal_type {
                        sets.push(Bytes::copy_from_slice(set));
                    }
                    *pos += 2 + len;
                }
                Ok(sets)
            };
        let sps = read_sets(usize::from(record[5] & 0x1f), NAL_SPS, &mut pos)?;
        let pps_count = *record.get(pos).ok_or(CodecError::Truncated(WHAT))? as usize;
        pos += 1;
        let pps = read_sets(pps_count, NAL_PPS, &mut pos)?;
        Ok(AvcConfig {
            profile_idc: record[1],
            profile_compat: record[2],
            level_idc: record[3],
            length_size,
            sps,
            pps,
        })
    }

    /// A configuration from parameter sets seen in the bitstream (Annex-B streams, RTP
    /// `sprop-parameter-sets`): profile, constraint flags and level are SPS bytes 1..4 of the
    /// first SPS (ITU-T H.264 7.3.2.1.1); the length size is 4.
    pub fn from_parameter_sets(sps: Vec<Bytes>, pps: Vec<Bytes>) -> Result<AvcConfig, CodecError> {
        let first = sps.first().ok_or(CodecError::NoParameterSets)?;
        if pps.is_empty() {
            return Err(CodecError::NoParameterSets);
        }
        if sps.len() > 31 || pps.len() > 255 {
            return Err(CodecError::TooManyParameterSets);
        }
        for (sets, expected) in [(&sps, NAL_SPS), (&pps, NAL_PPS)] {
            for set in sets.iter() {
                if set.len() > usize::from(u16::MAX) {
                    return Err(CodecError::TooManyParameterSets);
                }
                let found = h264_nal_type(set);
                if found != expected {
                    return Err(CodecError::WrongNalType { expected, found });
                }
            }
        }
        if first.len() < 4 {
            return Err(CodecError::Truncated("SPS"));
        }
        Ok(AvcConfig {
            profile_idc: first[1],
            profile_compat: first[2],
            level_idc: first[3],
            length_size: 4,
            sps,
            pps,
        })
    }

    /// The AVCDecoderConfigurationRecord. At most 31 SPS and 255 PPS are written and sets over
    /// 65535 bytes are left out (the record cannot count more; [`Self::from_parameter_sets`]
    /// refuses them). For profiles other than Baseline, Main and Extended the high-profile
    /// extension is written from the first SPS, as FFmpeg's `ff_isom_write_avcc` does.
    pub fn to_record(&self) -> Bytes {
        let fits = |s: &&Bytes| s.len() <= usize::from(u16::MAX);
        let sps: Vec<&Bytes> = self.sps.iter().filter(fits).take(31).collect();
        let pps: Vec<&Bytes> = self.pps.iter().filter(fits).take(255).collect();
        let size: usize = 11 + sps.iter().chain(&pps).map(|s| s.len() + 2).sum::<usize>();
        let mut out = BytesMut::with_capacity(size);
        out.put_slice(&[
            1,
            self.profile_idc,
            self.profile_compat,
            self.level_idc,
            0xfc | (self.length_size.saturating_sub(1) & 0x03),
            0xe0 | sps.len() as u8,
        ]);
        for s in &sps {
            out.put_u16(s.len() as u16);
            out.put_slice(s);
        }
        out.put_u8(pps.len() as u8);
        for p in &pps {
            out.put_u16(p.len() as u16);
            out.put_slice(p);
        }
        if !matches!(self.profile_idc, 66 | 77 | 88) {
            if let Some(ext) = sps.first().and_then(|s| sps_chroma_and_depth(s)) {
                out.put_slice(&[0xfc | ext.0, 0xf8 | ext.1, 0xf8 | ext.2, 0]);
            }
        }
        out.freeze()
    }
}

/// `chroma_format_idc`, `bit_depth_luma_minus8`, `bit_depth_chroma_minus8` of an SPS NAL unit
/// (ITU-T H.264 7.3.2.1.1); the defaults (4:2:0, 8 bits) for profiles that do not code them.
fn sps_chroma_and_depth(sps: &[u8]) -> Option<(u8, u8, u8)> {
    let rbsp = unescape_rbsp(sps.get(1..)?);
    let profile_idc = *rbsp.first()?;
    let mut bits = BitReader::new(rbsp.get(3..)?);
    bits.ue()?; // seq_parameter_set_id
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        let chroma = bits.ue()?;
        if chroma == 3 {
            bits.bits(1)?; // separate_colour_plane_flag
        }
        let luma = bits.ue()?;
        let chroma_depth = bits.ue()?;
        if chroma > 3 || luma > 6 || chroma_depth > 6 {
            return None;
        }
        Some((chroma as u8, luma as u8, chroma_depth as u8))
    } else {
        Some((1, 0, 0))
    }
}

/// The picture size an H.264 SPS NAL unit codes, cropping applied (ITU-T H.264 7.3.2.1.1,
/// 7.4.2.1.1): `(width, height)` in pixels.
pub fn avc_sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
    let rbsp = unescape_rbsp(sps.get(1..)?);
    let profile_idc = *rbsp.first()?;
    let mut bits = BitReader::new(rbsp.get(3..)?);
    bits.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = bits.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = bits.bits(1)? == 1;
        }
        bits.ue()?; // bit_depth_luma_minus8
        bits.ue()?; // bit_depth_chroma_minus8
        bits.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if bits.bits(1)? == 1 {
            // seq_scaling_matrix_present_flag: the lists are skipped.
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if bits.bits(1)? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + bits.se()? + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    bits.ue()?; // log2_max_frame_num_minus4
    match bits.ue()? {
        0 => {
            bits.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            bits.bits(1)?; // delta_pic_order_always_zero_flag
            bits.se()?; // offset_for_non_ref_pic
            bits.se()?; // offset_for_top_to_bottom_field
            for _ in 0..bits.ue()?.min(255) {
                bits.se()?; // offset_for_ref_frame
            }
        }
        _ => {}
    }
    bits.ue()?; // max_num_ref_frames
    bits.bits(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = bits.ue()?.checked_add(1)?;
    let height_map_units = bits.ue()?.checked_add(1)?;
    let frame_mbs_only = bits.bits(1)?;
    if frame_mbs_only == 0 {
        bits.bits(1)?; // mb_adaptive_frame_field_flag
    }
    bits.bits(1)?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if bits.bits(1)? == 1 {
        (left, right, top, bottom) = (bits.ue()?, bits.ue()?, bits.ue()?, bits.ue()?);
    }
    let array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (sub_w, sub_h): (u32, u32) = match array_type {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let crop_x: u32 = if array_type == 0 { 1 } else { sub_w };
    let crop_y = (if array_type == 0 { 1 } else { sub_h }) * (2 - frame_mbs_only);
    let width = width_mbs.checked_mul(16)?;
    let height = height_map_units
        .checked_mul(16)?
        .checked_mul(2 - frame_mbs_only)?;
    let width = width.checked_sub(crop_x.checked_mul(left.checked_add(right)?)?)?;
    let height = height.checked_sub(crop_y.checked_mul(top.checked_add(bottom)?)?)?;
    (width > 0 && height > 0).then_some((width, height))
}

/// The picture size an H.265 SPS NAL unit codes, conformance window applied (ITU-T H.265
/// 7.3.2.2.1, 7.4.3.2.1): `(width, height)` in pixels.
pub fn hevc_sps_dimensions(sps: &[u8]) -> Option<(u32, u32)> {
    let rbsp = unescape_rbsp(sps.get(2..)?);
    let mut bits = BitReader::new(&rbsp);
    bits.bits(4)?; // sps_video_parameter_set_id
    let sub_layers = bits.bits(3)?; // sps_max_sub_layers_minus1
    bits.bits(1)?; // sps_temporal_id_nesting_flag
                   // profile_tier_level(1, sps_max_sub_layers_minus1): the general profile (88 bits) and
                   // level (8 bits), then each sub-layer's presence flags and what they say is present.
    bits.bits(32)?;
    bits.bits(32)?;
    bits.bits(32)?;
    let mut present = Vec::with_capacity(sub_layers as usize);
    for _ in 0..sub_layers {
        present.push((bits.bits(1)? == 1, bits.bits(1)? == 1));
    }
    if sub_layers > 0 {
        for _ in sub_layers..8 {
            bits.bits(2)?; // reserved_zero_2bits
        }
    }
    for (profile, level) in present {
        if profile {
            bits.bits(32)?;
            bits.bits(32)?;
            bits.bits(24)?;
        }
        if level {
            bits.bits(8)?;
        }
    }
    bits.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = bits.ue()?;
    let separate_colour_plane = chroma_format_idc == 3 && bits.bits(1)? == 1;
    let width = bits.ue()?;
    let height = bits.ue()?;
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if bits.bits(1)? == 1 {
        (left, right, top, bottom) = (bits.ue()?, bits.ue()?, bits.ue()?, bits.ue()?);
    }
    let (sub_w, sub_h): (u32, u32) = match (chroma_format_idc, separate_colour_plane) {
        (1, _) => (2, 2),
        (2, _) => (2, 1),
        _ => (1, 1),
    };
    let width = width.checked_sub(sub_w.checked_mul(left.checked_add(right)?)?)?;
    let height = height.checked_sub(sub_h.checked_mul(top.checked_add(bottom)?)?)?;
    (width > 0 && height > 0).then_some((width, height))
}

/// The first SPS of an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1).
fn hevc_record_sps(record: &[u8]) -> Option<&[u8]> {
    let arrays = *record.get(22)?;
    let mut at = 23;
    for _ in 0..arrays {
        let nal_type = record.get(at)? & 0x3f;
        let count = u16::from_be_bytes([*record.get(at + 1)?, *record.get(at + 2)?]);
        at += 3;
        for _ in 0..count {
            let len = u16::from_be_bytes([*record.get(at)?, *record.get(at + 1)?]) as usize;
            let nal = record.get(at + 2..at + 2 + len)?;
            if nal_type == HEVC_SPS {
                return Some(nal);
            }
            at += 2 + len;
        }
    }
    None
}

/// The picture size a video track's configuration record codes: H.264 and H.265 from their
/// first SPS, AV1 from its sequence header (its largest frame, which a live encoder keeps);
/// `None` when it cannot be read (the publisher's metadata may tell it).
pub fn video_dimensions(codec: Codec, record: &[u8]) -> Option<(u32, u32)> {
    match codec {
        Codec::H264 => avc_sps_dimensions(AvcConfig::parse(record).ok()?.sps.first()?),
        Codec::H265 => hevc_sps_dimensions(hevc_record_sps(record)?),
        Codec::Av1 => {
            let config = Av1Config::parse(record).ok()?;
            let obus = av1_obus(&config.config_obus).ok()?;
            let (_, obu) = obus
                .into_iter()
                .find(|(kind, _)| *kind == AV1_OBU_SEQUENCE_HEADER)?;
            let payload = av1_obu_payload(obu)?;
            Some(Av1SequenceHeader::parse(payload).ok()?.max_size)
        }
        _ => None,
    }
}

/// `(sample rate, channels)` of an audio track's configuration record: AAC's
/// AudioSpecificConfig, Opus's OpusHead (which always decodes at 48 kHz).
pub fn audio_parameters(codec: Codec, record: &[u8]) -> Option<(u32, u32)> {
    match codec {
        Codec::Aac => AacConfig::parse(record)
            .ok()
            .map(|c| (c.sample_rate, u32::from(c.channels))),
        Codec::Opus => OpusHead::parse(record)
            .ok()
            .map(|h| (48_000, u32::from(h.channels))),
        _ => None,
    }
}

/// The RBSP of a NAL unit payload: emulation prevention bytes (`00 00 03`) removed
/// (ITU-T H.264 7.4.1).
fn unescape_rbsp(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// What a LATM (RFC 6416 `MP4A-LATM`) depacketizer needs of a StreamMuxConfig
/// (ISO/IEC 14496-3 1.7.3.1): the AAC config of its one program and layer, and the number of
/// AUs (subframes) in each AudioMuxElement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatmConfig {
    /// The AudioSpecificConfig's fields.
    pub aac: AacConfig,
    /// numSubFrames + 1: payloads per AudioMuxElement.
    pub subframes: u8,
}

impl LatmConfig {
    /// Parses a StreamMuxConfig as the SDP's `config=` carries it (`cpresent=0`). Only what
    /// maps onto the frame model is accepted: audioMuxVersion 0, all streams with the same
    /// time framing, one program of one layer, an AAC object type 1 to 4 with 1024-sample
    /// frames and a channel configuration (no program config element), and frameLengthType 0
    /// (byte lengths before each payload). Anything else is an error naming it, so that the
    /// track is refused rather than carried wrong.
    pub fn parse(config: &[u8]) -> Result<LatmConfig, CodecError> {
        const WHAT: &str = "StreamMuxConfig";
        let mut bits = BitReader::new(config);
        let mut read = |n| bits.bits(n).ok_or(CodecError::Truncated(WHAT));
        if read(1)? != 0 {
            return Err(CodecError::UnsupportedLatm("audioMuxVersion 1"));
        }
        if read(1)? != 1 {
            return Err(CodecError::UnsupportedLatm("allStreamsSameTimeFraming 0"));
        }
        let subframes = read(6)? as u8 + 1;
        if read(4)? != 0 {
            return Err(CodecError::UnsupportedLatm("more than one program"));
        }
        if read(3)? != 0 {
            return Err(CodecError::UnsupportedLatm("more than one layer"));
        }
        let mut object_type = read(5)?;
        if object_type == 31 {
            object_type = 32 + read(6)?;
        }
        let sample_rate_index = read(4)? as u8;
        let sample_rate = match sample_rate_index {
            15 => read(24)?,
            i => *AAC_SAMPLE_RATES
                .get(usize::from(i))
                .ok_or(CodecError::BadSampleRateIndex(i))?,
        };
        let channels = read(4)? as u8;
        if !(1..=4).contains(&object_type) {
            return Err(CodecError::UnsupportedLatm(
                "an audio object type other than AAC Main, LC, SSR or LTP",
            ));
        }
        if channels == 0 {
            return Err(CodecError::UnsupportedLatm("a program config element"));
        }
        // GASpecificConfig: frameLengthFlag, dependsOnCoreCoder (+ coreCoderDelay),
        // extensionFlag (no extension fields for these object types).
        if read(1)? != 0 {
            return Err(CodecError::UnsupportedLatm("960-sample frames"));
        }
        if read(1)? != 0 {
            read(14)?;
        }
        read(1)?;
        // The backward-compatible SBR signalling AAC encoders (FFmpeg's, so GStreamer's
        // avenc_aac) append: syncExtensionType 0x2b7, extensionAudioObjectType, sbrPresentFlag
        // (ISO/IEC 14496-3 1.6.2.1). A present SBR layer is left to the decoder's implicit
        // detection; the core AAC config is what the frame model carries.
        let mut ahead = bits.clone();
        if ahead.bits(11) == Some(0x2b7) {
            let ext_type = ahead.bits(5).ok_or(CodecError::Truncated(WHAT))?;
            if ext_type == 5 && ahead.bits(1).ok_or(CodecError::Truncated(WHAT))? == 1 {
                if ahead.bits(4).ok_or(CodecError::Truncated(WHAT))? == 15 {
                    ahead.bits(24).ok_or(CodecError::Truncated(WHAT))?;
                }
                let mut ps = ahead.clone();
                if ps.bits(11) == Some(0x548) {
                    ps.bits(1).ok_or(CodecError::Truncated(WHAT))?;
                    ahead = ps;
                }
            }
            bits = ahead;
        }
        let mut read = |n| bits.bits(n).ok_or(CodecError::Truncated(WHAT));
        if read(3)? != 0 {
            return Err(CodecError::UnsupportedLatm("frameLengthType other than 0"));
        }
        Ok(LatmConfig {
            aac: AacConfig {
                object_type: object_type as u8,
                sample_rate_index,
                sample_rate,
                channels,
            },
            subframes,
        })
    }
}

/// MSB-first bit reader with Exp-Golomb codes (ITU-T H.264 9.1).
#[derive(Clone)]
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bits(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    /// A signed Exp-Golomb code (ITU-T H.264 9.1.1).
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// MSB-first bit writer.
struct BitWriter {
    out: Vec<u8>,
    bits: u32,
}

impl BitWriter {
    fn put(&mut self, n: u32, value: u32) {
        for i in (0..n).rev() {
            if self.bits % 8 == 0 {
                self.out.push(0);
            }
            let bit = ((value >> i) & 1) as u8;
            if let Some(last) = self.out.last_mut() {
                *last |= bit << (7 - self.bits % 8);
            }
            self.bits += 1;
        }
    }
}

/// Splits a length-prefixed (AVCC) payload into its NAL units. Zero-length units are skipped.
pub fn avcc_nals(payload: &[u8], length_size: u8) -> Result<Vec<&[u8]>, CodecError> {
    if !(1..=4).contains(&length_size) {
        return Err(CodecError::BadLengthSize(length_size));
    }
    let ls = usize::from(length_size);
    let mut nals = Vec::new();
    let mut pos = 0;
    while pos < payload.len() {
        let Some(len_bytes) = payload.get(pos..pos + ls) else {
            return Err(CodecError::Truncated("NAL unit length"));
        };
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let Some(nal) = payload.get(pos + ls..pos + ls + len) else {
            return Err(CodecError::NalOverrun { offset: pos, len });
        };
        if !nal.is_empty() {
            nals.push(nal);
        }
        pos += ls + len;
    }
    Ok(nals)
}

/// Splits an Annex-B byte stream (ITU-T H.264 B.2) on its `00 00 01` / `00 00 00 01` start
/// codes. Trailing zero bytes of each unit (`trailing_zero_8bits`, the first byte of a 4-byte
/// start code) are dropped, as are empty units. Bytes before the first start code are
/// returned as a unit of their own, so a bare NAL unit yields itself.
pub fn annexb_nals(data: &[u8]) -> Vec<&[u8]> {
    fn push<'a>(nal: &'a [u8], nals: &mut Vec<&'a [u8]>) {
        let end = nal.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        if end > 0 {
            nals.push(&nal[..end]);
        }
    }
    let mut nals = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 2 < data.len() {
        if data[i + 2] > 1 {
            i += 3;
        } else if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            push(&data[start..i], &mut nals);
            i += 3;
            start = i;
        } else {
            i += 1;
        }
    }
    push(&data[start.min(data.len())..], &mut nals);
    nals
}

/// Joins NAL units into an AVCC payload with 4-byte lengths.
pub fn to_avcc(nals: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::with_capacity(nals.iter().map(|n| n.len() + 4).sum());
    for nal in nals {
        out.put_u32(nal.len() as u32);
        out.put_slice(nal);
    }
    out.freeze()
}

/// The NAL unit type (ITU-T H.264 7.3.1): the low five bits of the header byte; 0 for an
/// empty unit.
pub fn h264_nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// Sampling frequencies by `samplingFrequencyIndex` (ISO/IEC 14496-3 Table 1.18).
pub const AAC_SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// The AudioSpecificConfig fields a remuxer needs (ISO/IEC 14496-3 1.6.2.1): the AAC codec
/// config of the frame model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// audioObjectType: 1 Main, 2 LC, 3 SSR, 4 LTP, 5 SBR (HE-AAC), 29 PS, ...
    pub object_type: u8,
    /// samplingFrequencyIndex; 15 means `sample_rate` is given explicitly.
    pub sample_rate_index: u8,
    /// Sampling frequency in Hz (of the core coder for SBR/PS).
    pub sample_rate: u32,
    /// channelConfiguration (0: defined in a program config element).
    pub channels: u8,
}

impl AacConfig {
    /// Parses the leading fields of an AudioSpecificConfig (at least 2 bytes): object type
    /// (with the escape for types over 30), sampling frequency (index or explicit 24-bit
    /// value) and channel configuration. What follows (GASpecificConfig, SBR signalling) is
    /// not needed to remux and is ignored.
    pub fn parse(asc: &[u8]) -> Result<AacConfig, CodecError> {
        const WHAT: &str = "AudioSpecificConfig";
        if asc.len() < 2 {
            return Err(CodecError::Truncated(WHAT));
        }
        let mut bits = BitReader::new(asc);
        let truncated = || CodecError::Truncated(WHAT);
        let mut object_type = bits.bits(5).ok_or_else(truncated)?;
        if object_type == 31 {
            object_type = 32 + bits.bits(6).ok_or_else(truncated)?;
        }
        if object_type == 0 {
            return Err(CodecError::BadObjectType(0));
        }
        let sample_rate_index = bits.bits(4).ok_or_else(truncated)? as u8;
        let sample_rate = match sample_rate_index {
            15 => bits.bits(24).ok_or_else(truncated)?,
            i => *AAC_SAMPLE_RATES
                .get(usize::from(i))
                .ok_or(CodecError::BadSampleRateIndex(i))?,
        };
        let channels = bits.bits(4).ok_or_else(truncated)? as u8;
        Ok(AacConfig {
            object_type: object_type as u8,
            sample_rate_index,
            sample_rate,
            channels,
        })
    }

    /// The AudioSpecificConfig: the fields above and a GASpecificConfig of zeros (1024-sample
    /// frames, no core coder, no extension), as AAC encoders write it. 2 bytes for the usual
    /// configurations.
    pub fn to_asc(&self) -> Bytes {
        let mut w = BitWriter {
            out: Vec::with_capacity(6),
            bits: 0,
        };
        if self.object_type >= 31 {
            w.put(5, 31);
            w.put(6, u32::from(self.object_type - 32) & 0x3f);
        } else {
            w.put(5, u32::from(self.object_type));
        }
        w.put(4, u32::from(self.sample_rate_index & 0x0f));
        if self.sample_rate_index >= 15 {
            w.put(24, self.sample_rate & 0x00ff_ffff);
        }
        w.put(4, u32::from(self.channels & 0x0f));
        w.put(3, 0);
        Bytes::from(w.out)
    }

    /// The ADTS header without CRC (7 bytes) for a raw AU of `payload_len` bytes. ADTS can
    /// carry object types 1 to 4 only: any other (HE-AAC, whose sampling index is the core
    /// rate's) is written as LC, the implicit signalling decoders expect. An explicit sample
    /// rate is written as the index of the nearest standard rate. `payload_len` over 8184 does
    /// not fit the 13-bit frame length, which is then saturated; callers check first.
    pub fn adts_header(&self, payload_len: usize) -> [u8; 7] {
        let profile = if (1..=4).contains(&self.object_type) {
            self.object_type - 1
        } else {
            1
        };
        let index = if usize::from(self.sample_rate_index) < AAC_SAMPLE_RATES.len() {
            self.sample_rate_index
        } else {
            nearest_rate_index(self.sample_rate)
        };
        let len = (payload_len + 7).min(0x1fff);
        let ch = self.channels & 0x07;
        [
            0xff,
            0xf1,
            (profile << 6) | (index << 2) | (ch >> 2),
            ((ch & 0x03) << 6) | (len >> 11) as u8,
            (len >> 3) as u8,
            ((len & 0x07) << 5) as u8 | 0x1f,
            0xfc,
        ]
    }
}

/// The index of the standard sampling frequency nearest to `rate`.
fn nearest_rate_index(rate: u32) -> u8 {
    AAC_SAMPLE_RATES
        .iter()
        .enumerate()
        .min_by_key(|(_, &r)| r.abs_diff(rate))
        .map_or(4, |(i, _)| i as u8)
}

/// Largest raw AU [`AacConfig::adts_header`] can frame.
pub const ADTS_MAX_PAYLOAD: usize = 0x1fff - 7;

/// Reads the ADTS frame at the start of `data` (ISO/IEC 14496-3 1.A.2.2.1): its config, its
/// header length (7, or 9 with CRC) and its frame length including the header. `Ok(None)`
/// while `data` does not hold the whole frame yet. An error when `data` does not start with a
/// valid ADTS header; the caller may scan on for the next sync word.
#[allow(clippy::type_complexity)]
pub fn parse_adts(data: &[u8]) -> Result<Option<(AacConfig, usize, usize)>, CodecError> {
    if data.len() < 2 {
        return Ok(None);
    }
    if data[0] != 0xff || data[1] & 0xf0 != 0xf0 {
        return Err(CodecError::BadAdts("no sync word"));
    }
    if data[1] & 0x06 != 0 {
        return Err(CodecError::BadAdts("layer is not 0"));
    }
    if data.len() < 7 {
        return Ok(None);
    }
    let header_len = if data[1] & 0x01 == 1 { 7 } else { 9 };
    let object_type = (data[2] >> 6) + 1;
    let sample_rate_index = (data[2] >> 2) & 0x0f;
    let sample_rate = *AAC_SAMPLE_RATES
        .get(usize::from(sample_rate_index))
        .ok_or(CodecError::BadSampleRateIndex(sample_rate_index))?;
    let channels = ((data[2] & 0x01) << 2) | (data[3] >> 6);
    let frame_len = (usize::from(data[3] & 0x03) << 11)
        | (usize::from(data[4]) << 3)
        | usize::from(data[5] >> 5);
    if frame_len < header_len {
        return Err(CodecError::BadAdts("frame length shorter than the header"));
    }
    if data.len() < frame_len {
        return Ok(None);
    }
    let config = AacConfig {
        object_type,
        sample_rate_index,
        sample_rate,
        channels,
    };
    Ok(Some((config, header_len, frame_len)))
}

/// The AV1CodecConfigurationRecord (`av1C`, AV1 Codec ISO Media File Format Binding §2.3.3):
/// the AV1 codec config of the frame model, as Enhanced RTMP's `av01` sequence start
/// carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Av1Config {
    /// seq_profile (0 Main, 1 High, 2 Professional).
    pub profile: u8,
    /// seq_level_idx_0.
    pub level: u8,
    /// seq_tier_0.
    pub tier: u8,
    /// Bit depth: 8, 10 or 12 (from high_bitdepth and twelve_bit).
    pub bit_depth: u8,
    /// monochrome.
    pub monochrome: bool,
    /// The configOBUs: the sequence header OBU (and metadata OBUs) in low overhead format.
    pub config_obus: Bytes,
}

impl Av1Config {
    /// Parses the 4-byte fixed part (marker 1, version 1) and keeps the configOBUs after it.
    /// The OBUs themselves are checked to be whole OBUs with their size fields, the form the
    /// record requires, so a player is never handed a record it cannot walk.
    pub fn parse(record: &[u8]) -> Result<Av1Config, CodecError> {
        const WHAT: &str = "AV1CodecConfigurationRecord";
        if record.len() < 4 {
            return Err(CodecError::Truncated(WHAT));
        }
        if record[0] != 0x81 {
            return Err(CodecError::BadHeader(WHAT));
        }
        let high_bitdepth = record[2] & 0x40 != 0;
        let twelve_bit = record[2] & 0x20 != 0;
        let obus = &record[4..];
        av1_obus(obus)?;
        Ok(Av1Config {
            profile: record[1] >> 5,
            level: record[1] & 0x1f,
            tier: record[2] >> 7,
            bit_depth: match (high_bitdepth, twelve_bit) {
                (false, _) => 8,
                (true, false) => 10,
                (true, true) => 12,
            },
            monochrome: record[2] & 0x10 != 0,
            config_obus: Bytes::copy_from_slice(obus),
        })
    }
}

/// OBU type of an AV1 sequence header (AV1 spec §6.2.2).
pub const AV1_OBU_SEQUENCE_HEADER: u8 = 1;
/// OBU type of an AV1 temporal delimiter.
pub const AV1_OBU_TEMPORAL_DELIMITER: u8 = 2;
/// OBU type of an AV1 frame header.
pub const AV1_OBU_FRAME_HEADER: u8 = 3;
/// OBU type of an AV1 frame (frame header and tile group).
pub const AV1_OBU_FRAME: u8 = 6;
/// OBU type of an AV1 tile list (large scale tile decoding only).
pub const AV1_OBU_TILE_LIST: u8 = 8;
/// OBU type of AV1 padding.
pub const AV1_OBU_PADDING: u8 = 15;

/// What the AV1CodecConfigurationRecord and a keyframe test need of an AV1 sequence header
/// (AV1 spec §5.5): profile, first operating point's level and tier, colour config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Av1SequenceHeader {
    /// seq_profile.
    pub profile: u8,
    /// seq_level_idx[0].
    pub level: u8,
    /// seq_tier[0].
    pub tier: u8,
    /// high_bitdepth.
    pub high_bitdepth: bool,
    /// twelve_bit.
    pub twelve_bit: bool,
    /// mono_chrome.
    pub monochrome: bool,
    /// subsampling_x, subsampling_y.
    pub subsampling: (bool, bool),
    /// chroma_sample_position.
    pub chroma_sample_position: u8,
    /// reduced_still_picture_header: every frame is a key frame with no frame header flags.
    pub reduced_still_picture: bool,
    /// max_frame_width_minus_1 + 1, max_frame_height_minus_1 + 1: the largest picture of the
    /// sequence (a live encoder's picture size).
    pub max_size: (u32, u32),
}

impl Av1SequenceHeader {
    /// Reads a sequence header OBU's payload (after its header and size field).
    pub fn parse(payload: &[u8]) -> Result<Av1SequenceHeader, CodecError> {
        const WHAT: &str = "AV1 sequence header";
        Self::read(&mut BitReader::new(payload)).ok_or(CodecError::Truncated(WHAT))
    }

    fn read(r: &mut BitReader<'_>) -> Option<Av1SequenceHeader> {
        let profile = r.bits(3)? as u8;
        r.bits(1)?; // still_picture
        let reduced = r.bits(1)? == 1;
        let (level, tier);
        if reduced {
            level = r.bits(5)? as u8;
            tier = 0;
        } else {
            let timing_info = r.bits(1)? == 1;
            let mut decoder_model_info = false;
            let mut buffer_delay_length = 0;
            if timing_info {
                r.bits(32)?; // num_units_in_display_tick
                r.bits(32)?; // time_scale
                if r.bits(1)? == 1 {
                    r.ue()?; // num_ticks_per_picture_minus_1 (uvlc)
                }
                decoder_model_info = r.bits(1)? == 1;
                if decoder_model_info {
                    buffer_delay_length = r.bits(5)? + 1;
                    r.bits(32)?; // num_units_in_decoding_tick
                    r.bits(5)?; // buffer_removal_time_length_minus_1
                    r.bits(5)?; // frame_presentation_time_length_minus_1
                }
            }
            let initial_display_delay = r.bits(1)? == 1;
            let points = r.bits(5)? + 1;
            let mut first = None;
            for _ in 0..points {
                r.bits(12)?; // operating_point_idc
                let op_level = r.bits(5)? as u8;
                let op_tier = if op_level > 7 { r.bits(1)? as u8 } else { 0 };
                if decoder_model_info && r.bits(1)? == 1 {
                    r.bits(buffer_delay_length)?; // decoder_buffer_delay
                    r.bits(buffer_delay_length)?; // encoder_buffer_delay
                    r.bits(1)?; // low_delay_mode_flag
                }
                if initial_display_delay && r.bits(1)? == 1 {
                    r.bits(4)?;
                }
                first.get_or_insert((op_level, op_tier));
            }
            (level, tier) = first?;
        }
        let width_bits = r.bits(4)? + 1;
        let height_bits = r.bits(4)? + 1;
        let max_size = (r.bits(width_bits)? + 1, r.bits(height_bits)? + 1);
        if !reduced && r.bits(1)? == 1 {
            r.bits(4)?; // delta_frame_id_length_minus_2
            r.bits(3)?; // additional_frame_id_length_minus_1
        }
        r.bits(3)?; // use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
        if !reduced {
            r.bits(4)?; // interintra, masked compound, warped motion, dual filter
            let order_hint = r.bits(1)? == 1;
            if order_hint {
                r.bits(2)?; // enable_jnt_comp, enable_ref_frame_mvs
            }
            let force_screen_content_tools = if r.bits(1)? == 1 { 2 } else { r.bits(1)? };
            if force_screen_content_tools > 0 && r.bits(1)? == 0 {
                r.bits(1)?; // seq_force_integer_mv
            }
            if order_hint {
                r.bits(3)?; // order_hint_bits_minus_1
            }
        }
        r.bits(3)?; // enable_superres, enable_cdef, enable_restoration
                    // color_config (§5.5.2)
        let high_bitdepth = r.bits(1)? == 1;
        let twelve_bit = profile == 2 && high_bitdepth && r.bits(1)? == 1;
        let monochrome = profile != 1 && r.bits(1)? == 1;
        let (mut primaries, mut transfer, mut matrix) = (2, 2, 2);
        if r.bits(1)? == 1 {
            primaries = r.bits(8)?;
            transfer = r.bits(8)?;
            matrix = r.bits(8)?;
        }
        let mut subsampling = (true, true);
        let mut chroma_sample_position = 0;
        if monochrome {
            r.bits(1)?; // color_range
        } else if primaries == 1 && transfer == 13 && matrix == 0 {
            subsampling = (false, false); // sRGB: 4:4:4
        } else {
            r.bits(1)?; // color_range
            subsampling = match profile {
                0 => (true, true),
                1 => (false, false),
                _ if twelve_bit => {
                    let x = r.bits(1)? == 1;
                    (x, x && r.bits(1)? == 1)
                }
                _ => (true, false),
            };
            if subsampling == (true, true) {
                chroma_sample_position = r.bits(2)? as u8;
            }
        }
        Some(Av1SequenceHeader {
            profile,
            level,
            tier,
            high_bitdepth,
            twelve_bit,
            monochrome,
            subsampling,
            chroma_sample_position,
            reduced_still_picture: reduced,
            max_size,
        })
    }

    /// The AV1CodecConfigurationRecord for this sequence header, with `obu` (the whole
    /// sequence header OBU, with its size field) as its configOBUs.
    pub fn record(&self, obu: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(4 + obu.len());
        out.put_u8(0x81); // marker, version 1
        out.put_u8((self.profile << 5) | (self.level & 0x1f));
        out.put_u8(
            (self.tier << 7)
                | (u8::from(self.high_bitdepth) << 6)
                | (u8::from(self.twelve_bit) << 5)
                | (u8::from(self.monochrome) << 4)
                | (u8::from(self.subsampling.0) << 3)
                | (u8::from(self.subsampling.1) << 2)
                | (self.chroma_sample_position & 0x03),
        );
        out.put_u8(0); // no initial_presentation_delay
        out.put_slice(obu);
        out.freeze()
    }
}

/// The payload of a whole OBU (header and size field skipped); `None` when it is not one.
pub fn av1_obu_payload(obu: &[u8]) -> Option<&[u8]> {
    let header = *obu.first()?;
    let mut at = 1 + usize::from(header & 0x04 != 0);
    if header & 0x02 != 0 {
        let (_, len) = read_leb128(obu.get(at..)?)?;
        at += len;
    }
    obu.get(at..)
}

/// Whether the frame (header) OBU payload `payload` starts a key frame that is shown (AV1
/// spec §5.9.2: show_existing_frame 0, frame_type KEY_FRAME); every frame is one in a
/// reduced still picture sequence.
pub fn av1_is_key_frame(payload: &[u8], reduced_still_picture: bool) -> bool {
    reduced_still_picture || payload.first().is_some_and(|b| b & 0xe0 == 0)
}

/// A LEB128 value (AV1 spec §4.10.5) at the start of `data`: the value and its length (at
/// most 8 bytes; a value over 2^32 - 1 is refused).
pub fn read_leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, &byte) in data.iter().take(8).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (value <= u64::from(u32::MAX)).then_some((value, i + 1));
        }
    }
    None
}

/// Appends `value` as LEB128 in as few bytes as it needs.
pub fn write_leb128(out: &mut BytesMut, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

/// Bytes [`write_leb128`] takes for `value`.
pub fn leb128_len(value: u64) -> usize {
    let mut n = 1;
    let mut v = value >> 7;
    while v != 0 {
        n += 1;
        v >>= 7;
    }
    n
}

/// Splits AV1 OBUs in the low overhead bitstream format (AV1 spec §5.2): each OBU header
/// must have `obu_has_size_field` set, as ISOBMFF and Enhanced RTMP samples do. Returns each
/// OBU's type and its whole bytes (header included).
pub fn av1_obus(data: &[u8]) -> Result<Vec<(u8, &[u8])>, CodecError> {
    const WHAT: &str = "AV1 OBU";
    let mut obus = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let header = data[at];
        if header & 0x80 != 0 {
            // obu_forbidden_bit
            return Err(CodecError::BadHeader(WHAT));
        }
        if header & 0x02 == 0 {
            return Err(CodecError::BadHeader("AV1 OBU without a size field"));
        }
        let extension = usize::from(header & 0x04 != 0);
        let mut p = at + 1 + extension;
        // leb128 obu_size: at most 8 bytes, value at most 2^32 - 1 (AV1 spec §4.10.5).
        let mut size: u64 = 0;
        let mut i = 0;
        loop {
            let byte = *data.get(p).ok_or(CodecError::Truncated(WHAT))?;
            size |= u64::from(byte & 0x7f) << (7 * i);
            p += 1;
            i += 1;
            if byte & 0x80 == 0 {
                break;
            }
            if i == 8 {
                return Err(CodecError::BadHeader(WHAT));
            }
        }
        let end = usize::try_from(size)
            .ok()
            .and_then(|n| p.checked_add(n))
            .filter(|&end| end <= data.len())
            .ok_or(CodecError::Truncated(WHAT))?;
        obus.push(((header >> 3) & 0x0f, &data[at..end]));
        at = end;
    }
    Ok(obus)
}

/// The Opus identification header (`OpusHead`, RFC 7845 §5.1): the Opus codec config of the
/// frame model, as Enhanced RTMP's `Opus` sequence start carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusHead {
    /// Output channel count (1 to 255).
    pub channels: u8,
    /// Samples (at 48 kHz) to discard from the decoder's output at the start.
    pub pre_skip: u16,
    /// The encoder's input sample rate (informational; Opus always decodes at 48 kHz).
    pub input_sample_rate: u32,
    /// Channel mapping family (0: mono/stereo, one stream).
    pub mapping_family: u8,
}

impl OpusHead {
    /// Parses the header (at least 19 bytes; the channel mapping table must follow when the
    /// mapping family is not 0). Versions 0 to 15 are read (RFC 7845: the major version in
    /// the upper four bits stays 0 for compatible headers).
    pub fn parse(head: &[u8]) -> Result<OpusHead, CodecError> {
        const WHAT: &str = "OpusHead";
        if head.len() < 19 {
            return Err(CodecError::Truncated(WHAT));
        }
        if &head[..8] != b"OpusHead" || head[8] >> 4 != 0 || head[9] == 0 {
            return Err(CodecError::BadHeader(WHAT));
        }
        let channels = head[9];
        let mapping_family = head[18];
        if mapping_family != 0 && head.len() < 21 + usize::from(channels) {
            return Err(CodecError::Truncated(WHAT));
        }
        Ok(OpusHead {
            channels,
            pre_skip: u16::from_le_bytes([head[10], head[11]]),
            input_sample_rate: u32::from_le_bytes([head[12], head[13], head[14], head[15]]),
            mapping_family,
        })
    }

    /// The header for a mono or stereo stream (mapping family 0) with no pre-skip and no
    /// output gain: what an Opus stream that came without one (RTP) is described with.
    pub fn for_channels(channels: u8) -> Bytes {
        let mut out = BytesMut::with_capacity(19);
        out.put_slice(b"OpusHead");
        out.put_u8(1);
        out.put_u8(channels.clamp(1, 2));
        out.put_u16_le(0);
        out.put_u32_le(48_000);
        out.put_i16_le(0);
        out.put_u8(0);
        out.freeze()
    }
}

/// The duration of an Opus packet in 48 kHz samples, from its TOC byte and frame count
/// (RFC 6716 §3.1, §3.2): what an MPEG-TS PES holding several packets needs to time each.
/// `None` for an empty packet or a code 3 packet without its frame count byte.
pub fn opus_packet_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame: u32 = match config {
        // SILK-only: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        // Hybrid: 10, 20 ms.
        12..=15 => [480, 960][usize::from(config % 2)],
        // CELT-only: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    Some(frame * frames)
}

/// H.265 NAL unit types of the parameter sets (ITU-T H.265 Table 7-1).
const HEVC_VPS: u8 = 32;
const HEVC_SPS: u8 = 33;
const HEVC_PPS: u8 = 34;

/// An HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1) for these parameter sets
/// (VPS, SPS and PPS NAL units, any order), with 4-byte NAL lengths. The profile, tier, level
/// and layer fields are copied from the first SPS's profile_tier_level; chroma format and bit
/// depths are left at 4:2:0, 8 bits (players read the real values from the SPS itself).
pub fn hevc_record(sets: &[Bytes]) -> Result<Bytes, CodecError> {
    let nal_type = |n: &[u8]| n.first().map_or(0, |b| (b >> 1) & 0x3f);
    let of = |t: u8| sets.iter().filter(|n| nal_type(n) == t).collect::<Vec<_>>();
    let (vps, sps, pps) = (of(HEVC_VPS), of(HEVC_SPS), of(HEVC_PPS));
    let first_sps = sps.first().ok_or(CodecError::NoParameterSets)?;
    if vps.is_empty() || pps.is_empty() {
        return Err(CodecError::NoParameterSets);
    }
    // The SPS RBSP after its 2-byte NAL header, emulation prevention removed: one byte of
    // ids and sub-layer count, then 12 bytes of general profile_tier_level.
    let mut rbsp = Vec::with_capacity(13);
    let mut zeros = 0;
    for &b in first_sps.iter().skip(2) {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
        if rbsp.len() == 13 {
            break;
        }
    }
    if rbsp.len() < 13 {
        return Err(CodecError::Truncated("HEVC SPS"));
    }
    let sub_layers = ((rbsp[0] >> 1) & 0x07) + 1;
    let nested = rbsp[0] & 0x01;
    let mut out = BytesMut::new();
    out.put_u8(1);
    out.put_slice(&rbsp[1..13]);
    out.put_u16(0xF000); // min_spatial_segmentation_idc 0
    out.put_u8(0xFC); // parallelismType unknown
    out.put_u8(0xFD); // chroma_format_idc 1
    out.put_u8(0xF8); // bit_depth_luma_minus8 0
    out.put_u8(0xF8); // bit_depth_chroma_minus8 0
    out.put_u16(0); // avgFrameRate unknown
    out.put_u8((sub_layers << 3) | (nested << 2) | 0x03);
    out.put_u8(3);
    for (t, nals) in [(HEVC_VPS, &vps), (HEVC_SPS, &sps), (HEVC_PPS, &pps)] {
        out.put_u8(0x80 | t);
        out.put_u16(u16::try_from(nals.len()).map_err(|_| CodecError::TooManyParameterSets)?);
        for nal in nals.iter() {
            out.put_u16(u16::try_from(nal.len()).map_err(|_| CodecError::TooManyParameterSets)?);
            out.put_slice(nal);
        }
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// SPS NAL units of x265 (FFmpeg's libx265, one frame of lavfi testsrc) and the sizes
    /// they were encoded at; 360 and 1080 are cropped by the conformance window. Through the
    /// record, as a track carries them.
    #[test]
    fn hevc_sps_dimensions_of_x265_streams() {
        for (sps, want) in [
            (
                "4201010408000003009e0800000300005d9000501005a2cb2b349265780b7020200040000003004000000642",
                (1280, 720),
            ),
            (
                "4201010408000003009e0800000300003f9000a0402d2cb2b349265780b7020200040000030004000003006420",
                (640, 360),
            ),
            (
                "4201010408000003009e0800000300007890007810021cb2cacd24995e02dc080800100000030010000003019080",
                (1920, 1080),
            ),
        ] {
            let sps = unhex(sps);
            assert_eq!(hevc_sps_dimensions(&sps), Some(want), "{sps:02x?}");
            let vps = Bytes::from_static(&[0x40, 0x01, 0x0c, 0x01]);
            let pps = Bytes::from_static(&[0x44, 0x01, 0xc1, 0x72]);
            let record = hevc_record(&[vps, Bytes::from(sps), pps]).expect("record");
            assert_eq!(video_dimensions(Codec::H265, &record), Some(want));
        }
        assert_eq!(hevc_sps_dimensions(&[0x42, 0x01, 0x01]), None, "truncated");
        assert_eq!(video_dimensions(Codec::H265, &[1, 2, 3]), None);
    }

    /// SPS NAL units of x264 (FFmpeg's libx264, one frame of lavfi testsrc) and the sizes
    /// they were encoded at: cropped (360, 1080), exact (144) and 4:2:2 High 4:2:2.
    #[test]
    fn sps_dimensions_of_x264_streams() {
        for (sps, want) in [
            (
                "6764001eacd940a02ff97011000003000100000300320f162d96",
                (640, 360),
            ),
            (
                "67640028acd940780227e5c044000003000400000300c83c60c658",
                (1920, 1080),
            ),
            (
                "6764000bacd942c4ec0440000003004000000c83c50a6580",
                (176, 144),
            ),
            (
                "677a001ebcd940a03db011000003000100000300320f162d96",
                (640, 480),
            ),
        ] {
            assert_eq!(avc_sps_dimensions(&unhex(sps)), Some(want), "{sps}");
        }
        assert_eq!(avc_sps_dimensions(&[0x67]), None);
        assert_eq!(avc_sps_dimensions(&[0x67, 0x64, 0, 0x1e, 0xff, 0xff]), None);
    }

    /// FFmpeg 9's `av01` sequence start (libaom, 320x240, 8-bit 4:2:0): its av1C.
    const FFMPEG_AV1C: &[u8] = &[
        0x81, 0x00, 0x0c, 0x00, 0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xda, 0xf9,
        0x00, 0x40,
    ];
    /// FFmpeg 9's `Opus` sequence start (libopus, mono): its OpusHead.
    const FFMPEG_OPUS_HEAD: &[u8] = &[
        b'O', b'p', b'u', b's', b'H', b'e', b'a', b'd', 1, 1, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn av1_record_and_obus() {
        let cfg = Av1Config::parse(FFMPEG_AV1C).expect("FFmpeg's av1C");
        assert_eq!((cfg.profile, cfg.level, cfg.bit_depth), (0, 0, 8));
        let obus = av1_obus(&cfg.config_obus).expect("whole OBUs");
        assert_eq!(obus.len(), 1);
        assert_eq!(obus[0].0, AV1_OBU_SEQUENCE_HEADER);
        assert_eq!(video_dimensions(Codec::Av1, FFMPEG_AV1C), Some((320, 240)));
        assert_eq!(
            Av1Config::parse(&FFMPEG_AV1C[..3]),
            Err(CodecError::Truncated("AV1CodecConfigurationRecord"))
        );
        let mut bad = FFMPEG_AV1C.to_vec();
        bad[0] = 0x01;
        assert!(Av1Config::parse(&bad).is_err());
        // An OBU that claims more bytes than remain, and one without a size field.
        assert!(Av1Config::parse(&FFMPEG_AV1C[..FFMPEG_AV1C.len() - 1]).is_err());
        assert!(av1_obus(&[0x08]).is_err());
        // A leb128 size that never ends within 8 bytes.
        assert!(av1_obus(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert_eq!(
            Av1Config::parse(&[0x81, 0, 0, 0]).map(|c| c.config_obus.len()),
            Ok(0)
        );
    }

    #[test]
    fn opus_head() {
        let head = OpusHead::parse(FFMPEG_OPUS_HEAD).expect("FFmpeg's OpusHead");
        assert_eq!(
            (
                head.channels,
                head.pre_skip,
                head.input_sample_rate,
                head.mapping_family
            ),
            (1, 312, 48_000, 0)
        );
        let made = OpusHead::for_channels(2);
        let back = OpusHead::parse(&made).expect("own header");
        assert_eq!(
            (back.channels, back.pre_skip, back.mapping_family),
            (2, 0, 0)
        );
        assert!(OpusHead::parse(&FFMPEG_OPUS_HEAD[..18]).is_err());
        let mut bad = FFMPEG_OPUS_HEAD.to_vec();
        bad[0] = b'o';
        assert!(OpusHead::parse(&bad).is_err());
        // Mapping family 1 needs its table.
        bad = FFMPEG_OPUS_HEAD.to_vec();
        bad[18] = 1;
        assert!(OpusHead::parse(&bad).is_err());
    }

    #[test]
    fn opus_packet_durations() {
        // libopus at 64 kb/s: CELT fullband 20 ms, one frame (FFmpeg's TS packets).
        assert_eq!(opus_packet_samples(&[0xfc, 0xff, 0xfe]), Some(960));
        // SILK 60 ms; hybrid 10 ms, two frames; CELT 2.5 ms, code 3 with 4 frames.
        assert_eq!(opus_packet_samples(&[0x18]), Some(2880));
        assert_eq!(opus_packet_samples(&[0x61]), Some(960));
        assert_eq!(opus_packet_samples(&[0x83, 0x04]), Some(480));
        assert_eq!(opus_packet_samples(&[0x83]), None);
        assert_eq!(opus_packet_samples(&[]), None);
    }

    // The SPS and PPS x264 writes for 320x240 yuv420p (High profile, level 1.3).
    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    #[test]
    fn avc_record_round_trips() {
        let cfg = AvcConfig::from_parameter_sets(
            vec![Bytes::from_static(SPS)],
            vec![Bytes::from_static(PPS)],
        )
        .expect("valid sets");
        assert_eq!(
            (cfg.profile_idc, cfg.profile_compat, cfg.level_idc),
            (100, 0, 13)
        );
        let record = cfg.to_record();
        assert_eq!(&record[..6], &[1, 100, 0, 13, 0xff, 0xe1]);
        // High profile: the extension (4:2:0, 8-bit luma and chroma, no SPS extensions).
        assert_eq!(&record[record.len() - 4..], &[0xfd, 0xf8, 0xf8, 0]);
        // Byte for byte the avcC FFmpeg writes into MP4 for this stream.
        let ffmpeg_avcc: &[u8] = &[
            0x01, 0x64, 0x00, 0x0d, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9,
            0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03,
            0x20, 0xf1, 0x42, 0x99, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0,
            0xfd, 0xf8, 0xf8, 0x00,
        ];
        assert_eq!(&record[..], ffmpeg_avcc);
        assert_eq!(AvcConfig::parse(&record).expect("own record"), cfg);
    }

    #[test]
    fn avc_record_extension_follows_the_sps() {
        // x264 High 4:4:4 Predictive (profile 244): chroma_format_idc 3 in the extension.
        let ffmpeg_avcc: &[u8] = &[
            0x01, 0xf4, 0x00, 0x0d, 0xff, 0xe1, 0x00, 0x19, 0x67, 0xf4, 0x00, 0x0d, 0x91, 0x9b,
            0x28, 0x28, 0x3f, 0x60, 0x22, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00,
            0x64, 0x1e, 0x28, 0x53, 0x2c, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xc4, 0x48, 0x44,
            0xff, 0xf8, 0xf8, 0x00,
        ];
        let cfg = AvcConfig::parse(ffmpeg_avcc).expect("valid record");
        assert_eq!((cfg.profile_idc, cfg.sps.len(), cfg.pps.len()), (244, 1, 1));
        let rebuilt = AvcConfig::from_parameter_sets(cfg.sps.clone(), cfg.pps.clone())
            .expect("valid sets")
            .to_record();
        assert_eq!(&rebuilt[..], ffmpeg_avcc);
    }

    #[test]
    fn avc_record_errors() {
        assert_eq!(
            AvcConfig::parse(&[1, 66, 0]),
            Err(CodecError::Truncated("AVCDecoderConfigurationRecord"))
        );
        assert_eq!(
            AvcConfig::parse(&[0, 66, 0, 30, 0xff, 0xe0, 0]),
            Err(CodecError::BadVersion(0))
        );
        // Claims one SPS of 16 bytes, holds 2.
        assert!(matches!(
            AvcConfig::parse(&[1, 66, 0, 30, 0xff, 0xe1, 0, 16, 0x67, 0x42]),
            Err(CodecError::Truncated(_))
        ));
        assert_eq!(
            AvcConfig::from_parameter_sets(vec![], vec![Bytes::from_static(PPS)]),
            Err(CodecError::NoParameterSets)
        );
        assert_eq!(
            AvcConfig::from_parameter_sets(
                vec![Bytes::from_static(PPS)],
                vec![Bytes::from_static(PPS)]
            ),
            Err(CodecError::WrongNalType {
                expected: 7,
                found: 8
            })
        );
        // Baseline: no extension written, and a record without PPS still parses.
        let cfg = AvcConfig {
            profile_idc: 66,
            profile_compat: 0xc0,
            level_idc: 30,
            length_size: 2,
            sps: vec![Bytes::from_static(&[0x67, 66, 0xc0, 30])],
            pps: vec![],
        };
        let record = cfg.to_record();
        assert_eq!(
            &record[..],
            &[1, 66, 0xc0, 30, 0xfd, 0xe1, 0, 4, 0x67, 66, 0xc0, 30, 0]
        );
        assert_eq!(AvcConfig::parse(&record).expect("valid"), cfg);
    }

    #[test]
    fn empty_and_mistyped_parameter_sets_in_a_record_are_skipped() {
        // SPS count 3: empty, a PPS in the SPS slot, the SPS; PPS count 2: empty, the PPS.
        let sps = [0x67u8, 66, 0xc0, 30];
        let mut record = vec![1, 66, 0xc0, 30, 0xff, 0xe3, 0, 0, 0, 2, 0x68, 1, 0, 4];
        record.extend_from_slice(&sps);
        record.extend_from_slice(&[2, 0, 0, 0, 2, 0x68, 0xce]);
        let cfg = AvcConfig::parse(&record).expect("readable");
        assert_eq!(cfg.sps, vec![Bytes::copy_from_slice(&sps)]);
        assert_eq!(cfg.pps, vec![Bytes::from_static(&[0x68, 0xce])]);
    }

    #[test]
    fn avcc_and_annexb_split_and_join() {
        let payload = to_avcc(&[&[0x65, 1, 2], &[0x06, 9]]);
        assert_eq!(&payload[..], &[0, 0, 0, 3, 0x65, 1, 2, 0, 0, 0, 2, 0x06, 9]);
        let nals = avcc_nals(&payload, 4).expect("valid");
        assert_eq!(nals, vec![&[0x65, 1, 2][..], &[0x06, 9][..]]);
        assert_eq!(
            avcc_nals(&[0, 3, 0x41, 1, 2, 0, 1, 0x41], 2).expect("2-byte lengths"),
            vec![&[0x41, 1, 2][..], &[0x41][..]]
        );
        assert_eq!(
            avcc_nals(&[0, 0, 0, 9, 0x65], 4),
            Err(CodecError::NalOverrun { offset: 0, len: 9 })
        );
        assert!(matches!(
            avcc_nals(&[0, 0], 4),
            Err(CodecError::Truncated(_))
        ));
        assert_eq!(avcc_nals(&[], 0), Err(CodecError::BadLengthSize(0)));

        let stream = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 0, 1, 0x65, 0, 0, 3, 1, 0, 0,
        ];
        assert_eq!(
            annexb_nals(&stream),
            vec![
                &[0x09, 0xf0][..],
                &[0x67, 0x42][..],
                &[0x65, 0, 0, 3, 1][..]
            ]
        );
        assert_eq!(annexb_nals(&[0x65, 1]), vec![&[0x65, 1][..]]);
        assert!(annexb_nals(&[0, 0, 1]).is_empty());
        assert!(annexb_nals(&[]).is_empty());
        assert_eq!(h264_nal_type(&[0x65]), NAL_IDR);
        assert_eq!(h264_nal_type(&[]), 0);
    }

    #[test]
    fn annexb_split_finds_every_start_code() {
        // NAL units of every length from 1 to 40, each with 3- or 4-byte start codes.
        let units: Vec<Vec<u8>> = (1..=40u8)
            .map(|n| (0..n).map(|i| 0x41u8.wrapping_add(i)).collect())
            .collect();
        let mut stream = Vec::new();
        for (i, u) in units.iter().enumerate() {
            stream.extend_from_slice(if i % 2 == 0 {
                &[0, 0, 0, 1]
            } else {
                &[0, 0, 1]
            });
            stream.extend_from_slice(u);
        }
        let got = annexb_nals(&stream);
        assert_eq!(got.len(), units.len());
        for (g, u) in got.iter().zip(&units) {
            assert_eq!(g, &&u[..]);
        }
    }

    #[test]
    fn asc_parse_and_write() {
        // AAC LC, 44.1 kHz, stereo.
        let cfg = AacConfig::parse(&[0x12, 0x10]).expect("valid");
        assert_eq!(
            cfg,
            AacConfig {
                object_type: 2,
                sample_rate_index: 4,
                sample_rate: 44100,
                channels: 2
            }
        );
        assert_eq!(&cfg.to_asc()[..], &[0x12, 0x10]);
        // AAC LC, 48 kHz, mono.
        let cfg = AacConfig::parse(&[0x11, 0x88]).expect("valid");
        assert_eq!((cfg.sample_rate, cfg.channels), (48000, 1));
        assert_eq!(&cfg.to_asc()[..], &[0x11, 0x88]);
        // Escaped object type (ER AAC ELD = 39) and an explicit 24-bit frequency.
        let eld = AacConfig {
            object_type: 39,
            sample_rate_index: 15,
            sample_rate: 50000,
            channels: 1,
        };
        assert_eq!(AacConfig::parse(&eld.to_asc()).expect("own asc"), eld);
        assert_eq!(
            AacConfig::parse(&[0x12]),
            Err(CodecError::Truncated("AudioSpecificConfig"))
        );
        assert_eq!(
            AacConfig::parse(&[0x16, 0x90]),
            Err(CodecError::BadSampleRateIndex(13))
        );
        assert_eq!(
            AacConfig::parse(&[0x00, 0x10]),
            Err(CodecError::BadObjectType(0))
        );
    }

    #[test]
    fn latm_stream_mux_config() {
        // GStreamer 1.22's rtpmp4apay (avenc_aac, 44.1 kHz mono): `config=40002410adca00`.
        let latm = LatmConfig::parse(&[0x40, 0x00, 0x24, 0x10, 0xad, 0xca, 0x00]).expect("latm");
        assert_eq!(
            latm,
            LatmConfig {
                aac: AacConfig {
                    object_type: 2,
                    sample_rate_index: 4,
                    sample_rate: 44100,
                    channels: 1,
                },
                subframes: 1,
            }
        );
        assert_eq!(&latm.aac.to_asc()[..], [0x12, 0x08]);
        // 48 kHz stereo, as an encoder writes it.
        let latm = LatmConfig::parse(&[0x40, 0x00, 0x23, 0x20, 0x3f, 0xc0]).expect("latm");
        assert_eq!((latm.aac.sample_rate, latm.aac.channels), (48000, 2));
        for (config, what) in [
            (
                &[0xc0, 0x00, 0x24, 0x10, 0xad, 0xca, 0x00][..],
                "audioMuxVersion",
            ),
            (&[0x40, 0x10, 0x24, 0x10, 0xad, 0xca, 0x00][..], "program"),
            // HE-AAC (object type 5).
            (&[0x40, 0x00, 0x54, 0x10, 0x3f, 0xc0][..], "object type"),
        ] {
            let err = LatmConfig::parse(config).expect_err(what);
            assert!(
                matches!(err, CodecError::UnsupportedLatm(_)),
                "{what}: {err}"
            );
        }
        assert!(matches!(
            LatmConfig::parse(&[0x40]),
            Err(CodecError::Truncated(_))
        ));
    }

    #[test]
    fn adts_header_round_trips() {
        let cfg = AacConfig {
            object_type: 2,
            sample_rate_index: 3,
            sample_rate: 48000,
            channels: 2,
        };
        let h = cfg.adts_header(300);
        // What FFmpeg's ADTS muxer writes for this config and length.
        assert_eq!(h, [0xff, 0xf1, 0x4c, 0x80, 0x26, 0x7f, 0xfc]);
        let mut frame = h.to_vec();
        frame.extend_from_slice(&[0xaa; 300]);
        assert_eq!(parse_adts(&frame), Ok(Some((cfg, 7, 307))));
        assert_eq!(parse_adts(&frame[..306]), Ok(None));
        assert_eq!(parse_adts(&frame[..3]), Ok(None));
        assert_eq!(
            parse_adts(&[0xff, 0x00, 0, 0, 0, 0, 0]),
            Err(CodecError::BadAdts("no sync word"))
        );
        let mut bad = h;
        bad[3] &= 0xfc;
        bad[4] = 0;
        bad[5] &= 0x1f; // frame length 0
        assert!(matches!(parse_adts(&bad), Err(CodecError::BadAdts(_))));
        // HE-AAC cannot be signalled in ADTS: written as LC at the core rate.
        let he = AacConfig {
            object_type: 5,
            ..cfg
        };
        assert_eq!(he.adts_header(300), h);
        // Explicit frequency: nearest standard index.
        let odd = AacConfig {
            sample_rate_index: 15,
            sample_rate: 47000,
            ..cfg
        };
        assert_eq!(odd.adts_header(300), h);
        // With CRC (protection_absent = 0) the header is 9 bytes.
        let mut crc = frame.clone();
        crc[1] = 0xf0;
        assert_eq!(parse_adts(&crc).expect("valid").map(|(_, h, _)| h), Some(9));
    }

    #[test]
    fn hevc_record_from_parameter_sets() {
        let vps = Bytes::from_static(&[0x40, 0x01, 0x0c, 0x01, 0xff, 0xff]);
        // SPS: NAL header, then ids/sub-layers (1 layer, nested), 12 bytes of PTL with an
        // emulation prevention bytes inside (00 00 03 00).
        let sps = Bytes::from_static(&[
            0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00,
            0x00, 0x03, 0x00, 0x5d, 0xa0,
        ]);
        let pps = Bytes::from_static(&[0x44, 0x01, 0xc1, 0x72]);
        let record = hevc_record(&[sps.clone(), pps.clone(), vps.clone()]).expect("record");
        assert_eq!(record[0], 1);
        assert_eq!(
            &record[1..13],
            &[0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x5d]
        );
        assert_eq!(record[21] & 0x03, 3, "4-byte NAL lengths");
        assert_eq!(record[21] >> 3, 1, "one temporal layer");
        assert_eq!(record[22], 3);
        let sets = crate::protocol::rtsp::sdp::hvcc_parameter_sets(&record).expect("parses");
        assert_eq!(sets, vec![vps, sps, pps]);
        assert!(matches!(
            hevc_record(&[Bytes::from_static(&[0x44, 0x01, 0xc1])]),
            Err(CodecError::NoParameterSets)
        ));
    }
}

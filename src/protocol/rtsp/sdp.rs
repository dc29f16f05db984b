//! SDP (RFC 8866) for RTSP: the description a DESCRIBE answers, built from a stream's codec
//! configs, and the tracks of the description an ANNOUNCE carries (FFmpeg's, GStreamer's).
//!
//! Covers H.264 (RFC 6184 §8.1: `sprop-parameter-sets`, `profile-level-id`,
//! `packetization-mode`), AAC as `mpeg4-generic` (RFC 3640 §4.1: `config=`, `mode=AAC-hbr`,
//! AU header sizes) and, in announced descriptions, as `MP4A-LATM` (RFC 6416 §7.1:
//! `cpresent=0` and the StreamMuxConfig in `config=`), H.265 (RFC 7798 §7.1:
//! `sprop-vps/sps/pps`), Opus (RFC 7587 §6.1: `opus/48000/2`, `sprop-stereo`) and AV1 (the
//! AOM's RTP payload format §7: `AV1/90000`, `profile`, `level-idx`, `tier`). Pure text
//! functions: must not know about RTP packets, sockets or streams.

use bytes::Bytes;
use streamgate_actors::media::{Codec, Track};

use crate::protocol::codec::{
    h264_nal_type, AacConfig, Av1Config, AvcConfig, CodecError, LatmConfig, OpusHead, NAL_PPS,
    NAL_SPS,
};

/// A description that cannot be read or a config that cannot be described.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// A line that breaks the SDP grammar where this module needs it (`m=`, `a=rtpmap`).
    #[error("SDP line {line}: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A codec config that cannot be described (bad record, no parameter sets).
    #[error("codec config: {0}")]
    Config(#[from] CodecError),
    /// A codec this module cannot describe.
    #[error("no SDP for codec {0:?}")]
    Unsupported(Codec),
}

/// One media description (`m=` section) of a session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpTrack {
    /// The media type of the `m=` line: `video`, `audio`, `application`, ...
    pub media: String,
    /// The RTP payload type (the first format of the `m=` line).
    pub payload_type: u8,
    /// The encoding name of `a=rtpmap` as sent (`H264`, `MPEG4-GENERIC`, ...); empty when the
    /// payload type has no rtpmap.
    pub encoding: String,
    /// The codec of the frame model, when the encoding is one this server carries.
    pub codec: Option<Codec>,
    /// The RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Audio channels (1 when not given).
    pub channels: u8,
    /// `a=control` as sent: relative (`streamid=0`, `trackID=1`) or an absolute URL; empty when
    /// absent.
    pub control: String,
    /// The `a=fmtp` parameters of the payload type, in order, keys as sent.
    pub fmtp: Vec<(String, String)>,
    /// The codec config of the frame model: the AVCDecoderConfigurationRecord for H.264 (from
    /// `sprop-parameter-sets`), the AudioSpecificConfig for AAC (from `config=`), the
    /// HEVCDecoderConfigurationRecord a built H.265 track was made from. `None` when the
    /// description carries none (it may come in-band) and for a parsed H.265 track (no record
    /// is built from `sprop-*`; see [`Self::parameter_sets`]).
    pub config: Option<Bytes>,
    /// Out-of-band parameter set NAL units: H.264 SPS and PPS, H.265 VPS, SPS and PPS.
    pub parameter_sets: Vec<Bytes>,
}

impl SdpTrack {
    /// The frame model's track for audio and video media.
    pub fn track(&self) -> Option<Track> {
        match self.media.as_str() {
            "video" => Some(Track::Video),
            "audio" => Some(Track::Audio),
            _ => None,
        }
    }

    /// The LATM configuration of an `MP4A-LATM` track this server carries: `cpresent=0` and a
    /// StreamMuxConfig in `config=` that [`LatmConfig::parse`] accepts.
    pub fn latm(&self) -> Result<LatmConfig, String> {
        if !self.encoding.eq_ignore_ascii_case("MP4A-LATM") {
            return Err(format!("{} is not MP4A-LATM", self.encoding));
        }
        // RFC 6416 §7.1: cpresent defaults to 1 (the config in-band).
        if self.fmtp("cpresent").map(str::trim) != Some("0") {
            return Err("MP4A-LATM with the configuration in-band (cpresent=1)".into());
        }
        let config = self
            .fmtp("config")
            .and_then(hex_decode)
            .ok_or("MP4A-LATM without a config= StreamMuxConfig")?;
        LatmConfig::parse(&config).map_err(|e| format!("MP4A-LATM: {e}"))
    }

    /// Why this server cannot carry the track, when it cannot: the encoding (and what of it)
    /// is not one the frame model has. `None` for a track it carries.
    pub fn unsupported(&self) -> Option<String> {
        if self.codec.is_some() {
            return None;
        }
        let media = &self.media;
        Some(match self.encoding.to_ascii_uppercase().as_str() {
            "" => format!("{media} payload type {} has no rtpmap", self.payload_type),
            "MP4A-LATM" => match self.latm() {
                Err(e) => e,
                Ok(_) => "MP4A-LATM".into(),
            },
            "MPEG4-GENERIC" => format!(
                "{media} mpeg4-generic mode={} (only AAC-hbr and AAC-lbr audio are carried)",
                self.fmtp("mode").unwrap_or("")
            ),
            other => format!("{media} encoding {other}"),
        })
    }

    /// The value of an `a=fmtp` parameter (key case-insensitive).
    pub fn fmtp(&self, key: &str) -> Option<&str> {
        self.fmtp
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a session description into its media descriptions, in order. Lines may end in CRLF
/// or LF; unknown lines and attributes are ignored.
pub fn parse(text: &str) -> Result<Vec<SdpTrack>, SdpError> {
    let mut tracks: Vec<SdpTrack> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let malformed = |reason: &str| SdpError::Malformed {
            line: i + 1,
            reason: reason.to_owned(),
        };
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        match kind.trim() {
            "m" => {
                let mut fields = value.split_whitespace();
                let media = fields.next().ok_or_else(|| malformed("m= without media"))?;
                let _port = fields.next().ok_or_else(|| malformed("m= without port"))?;
                let _proto = fields.next().ok_or_else(|| malformed("m= without proto"))?;
                let pt: u8 = fields
                    .next()
                    .and_then(|f| f.parse().ok())
                    .filter(|pt| *pt < 128)
                    .ok_or_else(|| malformed("m= without an RTP payload type"))?;
                let (encoding, clock_rate, channels) = static_payload_type(pt);
                tracks.push(SdpTrack {
                    media: media.to_ascii_lowercase(),
                    payload_type: pt,
                    encoding: encoding.to_owned(),
                    codec: None,
                    clock_rate,
                    channels,
                    control: String::new(),
                    fmtp: Vec::new(),
                    config: None,
                    parameter_sets: Vec::new(),
                });
            }
            "a" => {
                let Some(track) = tracks.last_mut() else {
                    continue; // session-level attribute
                };
                let (name, value) = value.split_once(':').unwrap_or((value, ""));
                let value = value.trim();
                match name.trim() {
                    "control" => track.control = value.to_owned(),
                    "rtpmap" => {
                        let (pt, rest) = value
                            .split_once(char::is_whitespace)
                            .ok_or_else(|| malformed("rtpmap without an encoding"))?;
                        if pt.parse::<u8>().ok() != Some(track.payload_type) {
                            continue;
                        }
                        let mut parts = rest.trim().split('/');
                        track.encoding = parts.next().unwrap_or_default().to_owned();
                        track.clock_rate = parts
                            .next()
                            .and_then(|r| r.trim().parse().ok())
                            .filter(|r| *r > 0)
                            .ok_or_else(|| malformed("rtpmap without a clock rate"))?;
                        track.channels = parts
                            .next()
                            .and_then(|c| c.trim().parse().ok())
                            .unwrap_or(1);
                    }
                    "fmtp" => {
                        let (pt, rest) =
                            value.split_once(char::is_whitespace).unwrap_or((value, ""));
                        if pt.parse::<u8>().ok() != Some(track.payload_type) {
                            continue;
                        }
                        track.fmtp = rest
                            .split(';')
                            .map(str::trim)
                            .filter(|p| !p.is_empty())
                            .map(|p| {
                                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                                (k.trim().to_owned(), v.trim().to_owned())
                            })
                            .collect();
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    for track in &mut tracks {
        resolve_codec(track);
    }
    Ok(tracks)
}

/// Encoding, clock rate and channels of the static payload types (RFC 3551 §6) a camera may
/// announce without an rtpmap.
fn static_payload_type(pt: u8) -> (&'static str, u32, u8) {
    match pt {
        0 => ("PCMU", 8000, 1),
        8 => ("PCMA", 8000, 1),
        14 => ("MPA", 90000, 1),
        26 => ("JPEG", 90000, 1),
        32 => ("MPV", 90000, 1),
        33 => ("MP2T", 90000, 1),
        _ => ("", 90000, 1),
    }
}

/// Fills `codec`, `config` and `parameter_sets` from the encoding and fmtp.
fn resolve_codec(track: &mut SdpTrack) {
    let encoding = track.encoding.to_ascii_uppercase();
    match encoding.as_str() {
        "H264" => {
            track.codec = Some(Codec::H264);
            let sets: Vec<Bytes> = track
                .fmtp("sprop-parameter-sets")
                .map(|v| {
                    v.split(',')
                        .filter_map(base64_decode)
                        .filter(|s| !s.is_empty())
                        .map(Bytes::from)
                        .collect()
                })
                .unwrap_or_default();
            let (sps, pps): (Vec<Bytes>, Vec<Bytes>) = sets
                .iter()
                .cloned()
                .partition(|s| h264_nal_type(s) == NAL_SPS);
            let pps: Vec<Bytes> = pps
                .into_iter()
                .filter(|p| h264_nal_type(p) == NAL_PPS)
                .collect();
            track.config = AvcConfig::from_parameter_sets(sps, pps)
                .ok()
                .map(|c| c.to_record());
            track.parameter_sets = sets;
        }
        "H265" | "HEVC" => {
            track.codec = Some(Codec::H265);
            track.parameter_sets = ["sprop-vps", "sprop-sps", "sprop-pps"]
                .iter()
                .filter_map(|k| track.fmtp(k))
                .flat_map(|v| v.split(','))
                .filter_map(base64_decode)
                .filter(|s| s.len() >= 2)
                .map(Bytes::from)
                .collect();
        }
        "MPEG4-GENERIC" => {
            let mode = track.fmtp("mode").unwrap_or_default().to_ascii_lowercase();
            if track.media == "audio" && (mode == "aac-hbr" || mode == "aac-lbr") {
                track.codec = Some(Codec::Aac);
                track.config = track
                    .fmtp("config")
                    .and_then(hex_decode)
                    .filter(|asc| AacConfig::parse(asc).is_ok())
                    .map(Bytes::from);
            }
        }
        // RFC 7587 §7: the rtpmap is always opus/48000/2; `sprop-stereo=1` says the sender
        // sends stereo. The OpusHead an FLV player needs is made from that.
        "OPUS" if track.media == "audio" => {
            track.codec = Some(Codec::Opus);
            let stereo = track.fmtp("sprop-stereo").map(str::trim) == Some("1");
            track.config = Some(OpusHead::for_channels(if stereo { 2 } else { 1 }));
        }
        // The sequence header comes in band (the fmtp's profile and level say nothing the
        // AV1CodecConfigurationRecord made from it will not).
        "AV1" if track.media == "video" => track.codec = Some(Codec::Av1),
        "MP4A-LATM" if track.media == "audio" => {
            if let Ok(latm) = track.latm() {
                track.codec = Some(Codec::Aac);
                track.config = Some(latm.aac.to_asc());
            }
        }
        _ => {}
    }
}

/// The media description of a track of a stream with this codec config, with control
/// `trackID={index}` and dynamic payload type `96 + index`.
pub fn track_for_config(index: usize, codec: Codec, config: &[u8]) -> Result<SdpTrack, SdpError> {
    let control = format!("trackID={index}");
    let payload_type = 96 + (index % 32) as u8;
    match codec {
        Codec::H264 => {
            let avc = AvcConfig::parse(config)?;
            Ok(h264_track(control, payload_type, &avc))
        }
        Codec::Aac => aac_track(control, payload_type, config),
        Codec::H265 => h265_track(control, payload_type, config),
        Codec::Opus => opus_track(control, payload_type, config),
        Codec::Av1 => av1_track(control, payload_type, config),
    }
}

/// An AV1 track (the AOM's RTP payload format for AV1, §7.2): `AV1/90000` with the profile,
/// level and tier of the AV1CodecConfigurationRecord.
pub fn av1_track(control: String, payload_type: u8, record: &[u8]) -> Result<SdpTrack, SdpError> {
    let av1 = Av1Config::parse(record)?;
    Ok(SdpTrack {
        media: "video".into(),
        payload_type,
        encoding: "AV1".into(),
        codec: Some(Codec::Av1),
        clock_rate: 90_000,
        channels: 1,
        control,
        fmtp: vec![
            ("profile".into(), av1.profile.to_string()),
            ("level-idx".into(), av1.level.to_string()),
            ("tier".into(), av1.tier.to_string()),
        ],
        config: Some(Bytes::copy_from_slice(record)),
        parameter_sets: Vec::new(),
    })
}

/// An Opus track (RFC 7587 §7): `opus/48000/2` whatever the channel count, and
/// `sprop-stereo=1` when the OpusHead says stereo.
pub fn opus_track(control: String, payload_type: u8, head: &[u8]) -> Result<SdpTrack, SdpError> {
    let opus = OpusHead::parse(head)?;
    if opus.channels > 2 {
        // RFC 7587 carries mono and stereo only (one Opus stream per packet).
        return Err(SdpError::Unsupported(Codec::Opus));
    }
    Ok(SdpTrack {
        media: "audio".into(),
        payload_type,
        encoding: "opus".into(),
        codec: Some(Codec::Opus),
        clock_rate: 48_000,
        channels: 2,
        control,
        fmtp: vec![(
            "sprop-stereo".into(),
            if opus.channels == 2 { "1" } else { "0" }.into(),
        )],
        config: Some(Bytes::copy_from_slice(head)),
        parameter_sets: Vec::new(),
    })
}

/// An H.264 track (RFC 6184 §8.2.1): packetization mode 1, profile-level-id from the
/// record, every SPS and PPS in `sprop-parameter-sets`.
pub fn h264_track(control: String, payload_type: u8, avc: &AvcConfig) -> SdpTrack {
    let sets: Vec<Bytes> = avc.sps.iter().chain(&avc.pps).cloned().collect();
    let sprop: Vec<String> = sets.iter().map(|s| base64_encode(s)).collect();
    SdpTrack {
        media: "video".into(),
        payload_type,
        encoding: "H264".into(),
        codec: Some(Codec::H264),
        clock_rate: 90000,
        channels: 1,
        control,
        fmtp: vec![
            ("packetization-mode".into(), "1".into()),
            (
                "profile-level-id".into(),
                format!(
                    "{:02X}{:02X}{:02X}",
                    avc.profile_idc, avc.profile_compat, avc.level_idc
                ),
            ),
            ("sprop-parameter-sets".into(), sprop.join(",")),
        ],
        config: Some(avc.to_record()),
        parameter_sets: sets,
    }
}

/// An AAC track (RFC 3640 §3.3.6, AAC-hbr): clock rate and channels from the
/// AudioSpecificConfig, which goes into `config=` as hex.
pub fn aac_track(control: String, payload_type: u8, asc: &[u8]) -> Result<SdpTrack, SdpError> {
    let aac = AacConfig::parse(asc)?;
    let channels = aac.channels.max(1);
    Ok(SdpTrack {
        media: "audio".into(),
        payload_type,
        encoding: "MPEG4-GENERIC".into(),
        codec: Some(Codec::Aac),
        clock_rate: aac.sample_rate,
        channels,
        control,
        fmtp: [
            ("streamtype", "5".to_owned()),
            ("profile-level-id", "1".to_owned()),
            ("mode", "AAC-hbr".to_owned()),
            ("sizelength", "13".to_owned()),
            ("indexlength", "3".to_owned()),
            ("indexdeltalength", "3".to_owned()),
            ("config", hex_encode(asc)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        config: Some(Bytes::copy_from_slice(asc)),
        parameter_sets: Vec::new(),
    })
}

/// An H.265 track (RFC 7798 §7.2.1) from an HEVCDecoderConfigurationRecord: its VPS, SPS
/// and PPS as `sprop-vps`, `sprop-sps`, `sprop-pps`.
pub fn h265_track(control: String, payload_type: u8, record: &[u8]) -> Result<SdpTrack, SdpError> {
    let sets = hvcc_parameter_sets(record)?;
    let mut fmtp = Vec::new();
    for (key, nal_type) in [("sprop-vps", 32), ("sprop-sps", 33), ("sprop-pps", 34)] {
        let values: Vec<String> = sets
            .iter()
            .filter(|s| s.first().map(|b| (b >> 1) & 0x3f) == Some(nal_type))
            .map(|s| base64_encode(s))
            .collect();
        if !values.is_empty() {
            fmtp.push((key.to_owned(), values.join(",")));
        }
    }
    Ok(SdpTrack {
        media: "video".into(),
        payload_type,
        encoding: "H265".into(),
        codec: Some(Codec::H265),
        clock_rate: 90000,
        channels: 1,
        control,
        fmtp,
        config: Some(Bytes::copy_from_slice(record)),
        parameter_sets: sets,
    })
}

/// The parameter set NAL units (VPS, SPS, PPS, SEI) of an HEVCDecoderConfigurationRecord
/// (ISO/IEC 14496-15 §8.3.3.1), in record order. A NAL unit shorter than the 2-byte H.265
/// NAL header, or of another type than its array says, is left out: the record comes from
/// the publisher, and the packetizer and the SDP take each entry for a whole NAL unit.
pub fn hvcc_parameter_sets(record: &[u8]) -> Result<Vec<Bytes>, CodecError> {
    const WHAT: &str = "HEVCDecoderConfigurationRecord";
    let truncated = || CodecError::Truncated(WHAT);
    if record.len() < 23 {
        return Err(truncated());
    }
    if record[0] != 1 {
        return Err(CodecError::BadVersion(record[0]));
    }
    let mut pos = 23;
    let mut sets = Vec::new();
    for _ in 0..record[22] {
        let array_type = *record.get(pos).ok_or_else(truncated)? & 0x3f;
        let count = record.get(pos + 1..pos + 3).ok_or_else(truncated)?;
        let count = u16::from_be_bytes([count[0], count[1]]);
        pos += 3;
        for _ in 0..count {
            let len = record.get(pos..pos + 2).ok_or_else(truncated)?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let nal = record.get(pos + 2..pos + 2 + len).ok_or_else(truncated)?;
            if nal.len() >= 2 && (nal[0] >> 1) & 0x3f == array_type {
                sets.push(Bytes::copy_from_slice(nal));
            }
            pos += 2 + len;
        }
    }
    Ok(sets)
}

/// The session description a DESCRIBE answers: a live session (`a=range:npt=now-`) with an
/// aggregate control `*` and one media section per track. `origin_address` is the server's
/// address as the client reached it (for the `o=` line).
/// [`build`], with a session information line (`i=`, RFC 8866 §5.4) saying `info` to the
/// reader of the description (FFmpeg shows it as the input's `comment`): what a player should
/// know about the stream, such as tracks left out. None when `info` is empty.
pub fn build_with_info(
    origin_address: &str,
    session_name: &str,
    info: &str,
    tracks: &[SdpTrack],
) -> String {
    let description = build(origin_address, session_name, tracks);
    let info: String = info.chars().filter(|c| !c.is_control()).collect();
    if info.is_empty() {
        return description;
    }
    let name_line = format!("s={session_name}\r\n");
    description.replacen(&name_line, &format!("{name_line}i={info}\r\n"), 1)
}

pub fn build(origin_address: &str, session_name: &str, tracks: &[SdpTrack]) -> String {
    let ip = if origin_address.contains(':') {
        "IP6"
    } else {
        "IP4"
    };
    let mut s = format!(
        "v=0\r\no=- 0 0 IN {ip} {origin_address}\r\ns={session_name}\r\nc=IN {ip} {}\r\nt=0 0\r\n\
         a=tool:streamgate\r\na=range:npt=now-\r\na=control:*\r\n",
        if ip == "IP6" { "::" } else { "0.0.0.0" }
    );
    for t in tracks {
        s.push_str(&format!("m={} 0 RTP/AVP {}\r\n", t.media, t.payload_type));
        if t.media == "audio" {
            s.push_str(&format!(
                "a=rtpmap:{} {}/{}/{}\r\n",
                t.payload_type, t.encoding, t.clock_rate, t.channels
            ));
        } else {
            s.push_str(&format!(
                "a=rtpmap:{} {}/{}\r\n",
                t.payload_type, t.encoding, t.clock_rate
            ));
        }
        if !t.fmtp.is_empty() {
            let params: Vec<String> = t.fmtp.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!(
                "a=fmtp:{} {}\r\n",
                t.payload_type,
                params.join(";")
            ));
        }
        if !t.control.is_empty() {
            s.push_str(&format!("a=control:{}\r\n", t.control));
        }
    }
    s
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 with padding (RFC 4648 §4).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Base64 (RFC 4648 §4) with or without padding; `None` for any other character or a
/// dangling sextet.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (bits < 6).then_some(out)
}

fn hex_encode(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02X}")).collect()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FFmpeg 5.1's ANNOUNCE for `-c:v libx264 -pix_fmt yuv420p -c:a aac -ac 2` (captured).
    const FFMPEG_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:libavformat LIBAVFORMAT_VERSION\r\nm=video 0 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; \
sprop-parameter-sets=Z2QADazZQUH7ARAAAAMAEAAAAwMg8UKZYA==,aOvjyyLA; profile-level-id=64000D\r\n\
a=control:streamid=0\r\nm=audio 0 RTP/AVP 97\r\nb=AS:128\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; \
config=119056E500\r\na=control:streamid=1\r\n";

    /// What GStreamer's rtspclientsink announces (gst-rtsp-server's SDP writer: absolute
    /// controls, `a=framerate`, `level-asymmetry-allowed`), LF line ends, with a baseline
    /// x264 SPS/PPS.
    const GSTREAMER_SDP: &str = "v=0\n\
o=- 1188340656180883 1 IN IP4 127.0.0.1\n\
s=Session streamed with GStreamer\n\
i=rtsp-server\n\
t=0 0\n\
a=tool:GStreamer\n\
a=type:broadcast\n\
a=range:npt=now-\n\
a=control:rtsp://127.0.0.1:8554/live/cam3\n\
m=video 0 RTP/AVP 96\n\
c=IN IP4 0.0.0.0\n\
a=rtpmap:96 H264/90000\n\
a=framerate:25\n\
a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0LADdkBQfsBEAAAAwAQAAADAyDxQqSA,aMuDyyA=;profile-level-id=42c00d;level-asymmetry-allowed=1\n\
a=control:rtsp://127.0.0.1:8554/live/cam3/stream=0\n\
a=ts-refclk:local\n\
a=mediaclk:sender\n\
m=audio 0 RTP/AVP 97\n\
c=IN IP4 0.0.0.0\n\
a=rtpmap:97 MPEG4-GENERIC/44100/2\n\
a=fmtp:97 streamtype=5;profile-level-id=2;mode=AAC-hbr;config=1210;sizelength=13;indexlength=3;indexdeltalength=3\n\
a=control:rtsp://127.0.0.1:8554/live/cam3/stream=1\n";

    /// FFmpeg's SDP for `-c:v libx265 -flags +global_header` (captured).
    const FFMPEG_H265_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\na=tool:libavformat LIBAVFORMAT_VERSION\r\nm=video 15002 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\n\
a=fmtp:96 sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwA8lZgJ; sprop-sps=QgEBAWAAAAMAkAAAAwAAAwA8oAoIDxZZWaSTK8BaAgAAAwACAAADADIQ; sprop-pps=RAHBcrRiQA==\r\n";

    #[test]
    fn parses_ffmpeg_announce() {
        let tracks = parse(FFMPEG_SDP).expect("valid");
        assert_eq!(tracks.len(), 2);
        let v = &tracks[0];
        assert_eq!(v.track(), Some(Track::Video));
        assert_eq!((v.payload_type, v.clock_rate), (96, 90000));
        assert_eq!(v.codec, Some(Codec::H264));
        assert_eq!(v.control, "streamid=0");
        assert_eq!(v.fmtp("profile-level-id"), Some("64000D"));
        let avc = AvcConfig::parse(v.config.as_deref().expect("config")).expect("record");
        assert_eq!((avc.profile_idc, avc.level_idc), (100, 13));
        assert_eq!(avc.sps.len(), 1);
        assert_eq!(&avc.pps[0][..], &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0]);
        assert_eq!(v.parameter_sets.len(), 2);
        let a = &tracks[1];
        assert_eq!(a.track(), Some(Track::Audio));
        assert_eq!(a.codec, Some(Codec::Aac));
        assert_eq!((a.payload_type, a.clock_rate, a.channels), (97, 48000, 2));
        assert_eq!(a.control, "streamid=1");
        assert_eq!(a.fmtp("sizelength"), Some("13"));
        assert_eq!(
            a.config.as_deref(),
            Some(&[0x11, 0x90, 0x56, 0xe5, 0x00][..])
        );
    }

    #[test]
    fn parses_gstreamer_announce() {
        let tracks = parse(GSTREAMER_SDP).expect("valid");
        assert_eq!(tracks.len(), 2);
        assert_eq!(
            tracks[0].control,
            "rtsp://127.0.0.1:8554/live/cam3/stream=0"
        );
        let avc = AvcConfig::parse(tracks[0].config.as_deref().expect("config")).expect("record");
        assert_eq!(
            (avc.profile_idc, avc.profile_compat, avc.level_idc),
            (66, 0xc0, 13)
        );
        assert_eq!(tracks[1].codec, Some(Codec::Aac));
        assert_eq!((tracks[1].clock_rate, tracks[1].channels), (44100, 2));
        assert_eq!(tracks[1].config.as_deref(), Some(&[0x12, 0x10][..]));
    }

    /// GStreamer 1.22 `rtspclientsink` with its default AAC payloader (rtpmp4apay), as
    /// captured (testdata/gstreamer_publish_tcp.bin).
    const GSTREAMER_LATM_SDP: &str = "v=0\r\no=- 3656889512 1 IN IP4 127.0.0.1\r\n\
s=Session streamed with GStreamer\r\ni=rtspclientsink\r\nt=0 0\r\na=tool:GStreamer\r\n\
m=audio 0 RTP/AVP 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 MP4A-LATM/44100\r\n\
a=fmtp:96 cpresent=0;config=40002410adca00\r\na=control:stream=1\r\n\
m=video 0 RTP/AVP 99\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:99 H264/90000\r\n\
a=fmtp:99 packetization-mode=1;sprop-parameter-sets=Z/QADZDZZAUH7AWoMDAyAAADAAIAAAMAZR4oVJA=,aOvMRIRA;profile-level-id=f4000d\r\n\
a=control:stream=0\r\n";

    #[test]
    fn parses_gstreamer_latm_announce() {
        let tracks = parse(GSTREAMER_LATM_SDP).expect("valid");
        assert_eq!(tracks.len(), 2);
        let audio = &tracks[0];
        assert_eq!(audio.codec, Some(Codec::Aac));
        assert_eq!(audio.config.as_deref(), Some(&[0x12, 0x08][..]));
        assert_eq!(audio.latm().map(|l| l.subframes), Ok(1));
        assert_eq!(audio.unsupported(), None);
        assert_eq!(tracks[1].codec, Some(Codec::H264));

        // In-band configuration, no config, an unknown encoding: not carried, and said why.
        for (from, to, why) in [
            ("cpresent=0;", "cpresent=1;", "cpresent=1"),
            (";config=40002410adca00", "", "config="),
            ("MP4A-LATM/44100", "L16/44100/2", "L16"),
        ] {
            let tracks = parse(&GSTREAMER_LATM_SDP.replace(from, to)).expect("valid");
            assert_eq!(tracks[0].codec, None, "{to}");
            let reason = tracks[0].unsupported().expect("unsupported");
            assert!(reason.contains(why), "{reason}");
        }
    }

    /// Opus (RFC 7587) is carried: the OpusHead an FLV player needs is made from
    /// `sprop-stereo`, and a player's track says `opus/48000/2` whatever the channels.
    #[test]
    fn opus_tracks_in_and_out() {
        let announce = GSTREAMER_LATM_SDP
            .replace("MP4A-LATM/44100", "opus/48000/2")
            .replace("cpresent=0;config=40002410adca00", "sprop-stereo=1");
        let tracks = parse(&announce).expect("valid");
        assert_eq!(tracks[0].codec, Some(Codec::Opus));
        assert_eq!(tracks[0].unsupported(), None);
        let head = tracks[0].config.clone().expect("an OpusHead");
        assert_eq!(OpusHead::parse(&head).map(|h| h.channels), Ok(2));

        let track = track_for_config(1, Codec::Opus, &OpusHead::for_channels(1)).expect("opus");
        let text = build("127.0.0.1", "s", &[track]);
        assert!(text.contains("a=rtpmap:97 opus/48000/2\r\n"), "{text}");
        assert!(text.contains("a=fmtp:97 sprop-stereo=0\r\n"), "{text}");
    }

    /// AV1 (the AOM's RTP payload format): FFmpeg 9 announces `AV1/90000` (with no fmtp when
    /// its encoder gives no av1C up front); a player's track has the record's profile, level
    /// and tier.
    #[test]
    fn av1_tracks_in_and_out() {
        let announce = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\n\
                        a=tool:libavformat 63.1.102\r\nm=video 0 RTP/AVP 96\r\n\
                        a=rtpmap:96 AV1/90000\r\na=control:streamid=0\r\n";
        let tracks = parse(announce).expect("valid");
        assert_eq!(tracks[0].codec, Some(Codec::Av1));
        assert_eq!(tracks[0].unsupported(), None);
        assert_eq!(tracks[0].config, None);

        // libaom's av1C (FFmpeg 9, 320x240): profile 0, level 0 (2.0), main tier.
        let record = [
            0x81, 0x00, 0x0c, 0x00, 0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xda,
            0xf9, 0x00, 0x40,
        ];
        let track = track_for_config(0, Codec::Av1, &record).expect("av1");
        let text = build("127.0.0.1", "s", &[track]);
        assert!(text.contains("a=rtpmap:96 AV1/90000\r\n"), "{text}");
        assert!(
            text.contains("a=fmtp:96 profile=0;level-idx=0;tier=0\r\n"),
            "{text}"
        );
        assert!(track_for_config(0, Codec::Av1, &[0x01, 0, 0, 0]).is_err());
    }

    #[test]
    fn parses_h265_and_odd_descriptions() {
        let tracks = parse(FFMPEG_H265_SDP).expect("valid");
        assert_eq!(tracks[0].codec, Some(Codec::H265));
        let types: Vec<u8> = tracks[0]
            .parameter_sets
            .iter()
            .map(|s| (s[0] >> 1) & 0x3f)
            .collect();
        assert_eq!(types, vec![32, 33, 34]);
        // Static payload type without rtpmap; unknown codec; no sprop (in-band later).
        let tracks = parse(
            "v=0\nm=audio 0 RTP/AVP 0\nm=video 0 RTP/AVP 98\na=rtpmap:98 VP8/90000\n\
             m=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000\na=fmtp:96 packetization-mode=1\n",
        )
        .expect("valid");
        assert_eq!(
            (tracks[0].encoding.as_str(), tracks[0].clock_rate),
            ("PCMU", 8000)
        );
        assert_eq!(tracks[0].codec, None);
        assert_eq!(tracks[1].codec, None);
        assert_eq!(tracks[2].codec, Some(Codec::H264));
        assert_eq!(tracks[2].config, None);
        assert!(matches!(
            parse("v=0\nm=video\n"),
            Err(SdpError::Malformed { line: 2, .. })
        ));
        assert!(matches!(
            parse("v=0\nm=video 0 RTP/AVP 96\na=rtpmap:96 H264\n"),
            Err(SdpError::Malformed { line: 3, .. })
        ));
    }

    #[test]
    fn builds_what_it_parses() {
        let ffmpeg = parse(FFMPEG_SDP).expect("valid");
        let video = track_for_config(0, Codec::H264, ffmpeg[0].config.as_deref().expect("avc"))
            .expect("h264");
        let audio = track_for_config(1, Codec::Aac, &[0x11, 0x90]).expect("aac");
        let sdp = build("192.0.2.1", "live/cam2", &[video.clone(), audio.clone()]);
        assert!(sdp.contains("o=- 0 0 IN IP4 192.0.2.1\r\n"));
        assert!(sdp.contains("m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"));
        assert!(sdp.contains(
            "a=fmtp:96 packetization-mode=1;profile-level-id=64000D;\
             sprop-parameter-sets=Z2QADazZQUH7ARAAAAMAEAAAAwMg8UKZYA==,aOvjyyLA\r\na=control:trackID=0\r\n"
        ));
        assert!(sdp.contains("a=rtpmap:97 MPEG4-GENERIC/48000/2\r\n"));
        assert!(sdp.contains(
            "a=fmtp:97 streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;\
             indexdeltalength=3;config=1190\r\na=control:trackID=1\r\n"
        ));
        let back = parse(&sdp).expect("own sdp");
        assert_eq!(back, vec![video, audio]);
        assert!(matches!(
            track_for_config(0, Codec::Aac, &[0x00]),
            Err(SdpError::Config(_))
        ));
    }

    #[test]
    fn h265_record_to_sdp() {
        let tracks = parse(FFMPEG_H265_SDP).expect("valid");
        // An hvcC holding those three sets, one array each.
        let mut record = vec![1u8; 22];
        record[0] = 1;
        record.push(3);
        for set in &tracks[0].parameter_sets {
            record.push(0x80 | ((set[0] >> 1) & 0x3f));
            record.extend_from_slice(&1u16.to_be_bytes());
            record.extend_from_slice(&(set.len() as u16).to_be_bytes());
            record.extend_from_slice(set);
        }
        let track = track_for_config(0, Codec::H265, &record).expect("h265");
        assert_eq!(track.parameter_sets, tracks[0].parameter_sets);
        let sdp = build("::1", "x", &[track]);
        assert!(sdp.contains("IN IP6 ::1"));
        assert!(sdp.contains("a=fmtp:96 sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwA8lZgJ;sprop-sps="));
        assert!(sdp.contains(";sprop-pps=RAHBcrRiQA==\r\n"));
        assert!(hvcc_parameter_sets(&record[..30]).is_err());
    }

    #[test]
    fn base64_and_hex() {
        for (plain, coded) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain), coded);
            assert_eq!(base64_decode(coded).as_deref(), Some(plain));
            assert_eq!(
                base64_decode(coded.trim_end_matches('=')).as_deref(),
                Some(plain)
            );
        }
        assert_eq!(base64_decode("Zm9v!"), None);
        assert_eq!(base64_decode("Z"), None);
        assert_eq!(
            hex_decode("120856e500"),
            Some(vec![0x12, 0x08, 0x56, 0xe5, 0])
        );
        assert_eq!(hex_decode("123"), None);
        assert_eq!(hex_encode(&[0x12, 0xab]), "12AB");
    }
}

//! FLV tag bodies (the payload of RTMP audio/video messages and of FLV file tags) to and from
//! the core's [`MediaFrame`], and `onMetaData` to and from [`Metadata`].
//!
//! Video: FLV spec 10.1 VIDEODATA with AVCVIDEOPACKET (codec id 7), and Enhanced RTMP's
//! ExVideoTagHeader (veovera Enhanced RTMP v1/v2: the IsExHeader bit, a VideoPacketType and
//! a FourCC, `hvc1` H.265, `av01` AV1, `avc1` H.264; ModEx prefixes are read). Audio:
//! AUDIODATA with AACAUDIODATA (sound format 10), and the ExAudioTagHeader (sound format 9:
//! an AudioPacketType and a FourCC, `Opus`, `mp4a` AAC). H.264 and AAC are always written
//! in the legacy form, byte for byte what legacy players read; H.265, AV1 and Opus in the
//! enhanced form. Other codecs are reported as [`FlvError::Unsupported`]. Pure functions; no
//! IO.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use rml_amf0::Amf0Value;
use streamgate_actors::media::{Codec, FrameKind, MediaFrame, MetaValue, Metadata, Track};

/// A tag body this server cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    /// A legacy codec other than H.264 video or AAC audio.
    #[error("unsupported {track} codec id {codec_id}")]
    Unsupported {
        /// "audio" or "video".
        track: &'static str,
        /// The FLV codec / sound format id.
        codec_id: u8,
    },
    /// An Enhanced RTMP FourCC other than those this server carries.
    #[error("unsupported {track} FourCC {fourcc:?}")]
    UnsupportedFourCc {
        /// "audio" or "video".
        track: &'static str,
        /// The FourCC as text (non-ASCII bytes escaped).
        fourcc: String,
    },
    /// An Enhanced RTMP packet type this server does not read (multitrack).
    #[error("unsupported Enhanced RTMP {track} packet type {packet_type}")]
    UnsupportedPacket {
        /// "audio" or "video".
        track: &'static str,
        /// The VideoPacketType or AudioPacketType.
        packet_type: u8,
    },
    /// The body is shorter than its header.
    #[error("{0} tag body too short")]
    Truncated(&'static str),
}

/// Enhanced RTMP FourCC of H.264.
pub const FOURCC_AVC: [u8; 4] = *b"avc1";
/// Enhanced RTMP FourCC of H.265.
pub const FOURCC_HEVC: [u8; 4] = *b"hvc1";
/// Enhanced RTMP FourCC of AV1.
pub const FOURCC_AV1: [u8; 4] = *b"av01";
/// Enhanced RTMP FourCC of Opus.
pub const FOURCC_OPUS: [u8; 4] = *b"Opus";
/// Enhanced RTMP FourCC of AAC.
pub const FOURCC_AAC: [u8; 4] = *b"mp4a";

/// The FourCC this server writes for `codec` in an Enhanced RTMP tag.
pub fn fourcc(codec: Codec) -> [u8; 4] {
    match codec {
        Codec::H264 => FOURCC_AVC,
        Codec::H265 => FOURCC_HEVC,
        Codec::Av1 => FOURCC_AV1,
        Codec::Aac => FOURCC_AAC,
        Codec::Opus => FOURCC_OPUS,
    }
}

/// The `videocodecid` / `audiocodecid` of `codec` in `onMetaData`: the legacy id for H.264
/// (7) and AAC (10), which legacy players know; the FourCC read as a big-endian number for
/// the Enhanced RTMP codecs, as Enhanced RTMP specifies (FFmpeg writes and reads the same).
pub fn metadata_codec_id(codec: Codec) -> f64 {
    match codec {
        Codec::H264 => 7.0,
        Codec::Aac => 10.0,
        other => f64::from(u32::from_be_bytes(fourcc(other))),
    }
}

/// The `onMetaData` FLV players expect, made from the codec configs of a source that sends
/// none (MPEG-TS), so they see the codecs as they would from an RTMP publisher: a new one each
/// time the tracks change.
#[derive(Debug, Default)]
pub struct SynthesizedMetadata {
    video: Option<Codec>,
    audio: Option<crate::protocol::codec::AacConfig>,
    /// The channels of an Opus audio track (the audio when `audio` is `None`).
    opus: Option<u8>,
}

impl SynthesizedMetadata {
    /// Takes a config frame; `Some` metadata when the tracks changed with it.
    pub fn note(&mut self, frame: &MediaFrame) -> Option<Metadata> {
        if frame.kind != FrameKind::Config {
            return None;
        }
        let changed = match frame.track {
            Track::Video => self.video.replace(frame.codec) != Some(frame.codec),
            Track::Audio if frame.codec == Codec::Opus => {
                let channels = crate::protocol::codec::OpusHead::parse(&frame.payload)
                    .ok()
                    .map(|h| h.channels);
                let changed = channels.is_some() && channels != self.opus;
                if changed {
                    (self.opus, self.audio) = (channels, None);
                }
                changed
            }
            Track::Audio => {
                let config = crate::protocol::codec::AacConfig::parse(&frame.payload).ok();
                let changed = config.is_some() && config != self.audio;
                if changed {
                    (self.audio, self.opus) = (config, None);
                }
                changed
            }
        };
        if !changed {
            return None;
        }
        let mut entries = Vec::new();
        // FLV players get H.265 as Enhanced RTMP, whose onMetaData names it by FourCC.
        if let Some(video) = self.video {
            entries.push((
                "videocodecid".to_owned(),
                MetaValue::Number(metadata_codec_id(video)),
            ));
        }
        if let Some(audio) = &self.audio {
            entries.push(("audiocodecid".to_owned(), MetaValue::Number(10.0)));
            entries.push((
                "audiosamplerate".to_owned(),
                MetaValue::Number(f64::from(audio.sample_rate)),
            ));
            entries.push(("stereo".to_owned(), MetaValue::Bool(audio.channels == 2)));
        }
        // Opus is named by FourCC, as FFmpeg's Enhanced RTMP onMetaData names it.
        if let Some(channels) = self.opus {
            let id = metadata_codec_id(Codec::Opus);
            entries.push(("audiocodecid".to_owned(), MetaValue::Number(id)));
            entries.push(("audiosamplerate".to_owned(), MetaValue::Number(48_000.0)));
            entries.push(("stereo".to_owned(), MetaValue::Bool(channels == 2)));
        }
        entries.push((
            "encoder".to_owned(),
            MetaValue::Text("streamgate (from SRT/MPEG-TS)".to_owned()),
        ));
        Some(Metadata { entries })
    }
}

/// Enhanced RTMP video packet types (VideoPacketType).
const VIDEO_SEQUENCE_START: u8 = 0;
const VIDEO_CODED_FRAMES: u8 = 1;
const VIDEO_CODED_FRAMES_X: u8 = 3;
const VIDEO_MULTITRACK: u8 = 6;
/// Enhanced RTMP audio packet types (AudioPacketType).
const AUDIO_SEQUENCE_START: u8 = 0;
const AUDIO_CODED_FRAMES: u8 = 1;
const AUDIO_MULTITRACK: u8 = 5;
/// The packet type (audio and video alike) of a ModEx prefix.
const MOD_EX: u8 = 7;
/// The ModEx type of TimestampOffsetNano.
const MOD_EX_TIMESTAMP_NANO: u8 = 0;
/// FLV sound format 9: the ExAudioTagHeader follows.
const SOUND_FORMAT_EX: u8 = 9;

fn fourcc_text(fourcc: &[u8]) -> String {
    fourcc.escape_ascii().to_string()
}

/// Reads the Enhanced RTMP header after its first byte, whose low nibble is `packet_type`:
/// any ModEx prefixes (Enhanced RTMP v2), then the FourCC. Returns the real packet type, the
/// timestamp offset in nanoseconds the prefixes gave, the FourCC and the offset of what
/// follows it.
fn ex_header(
    body: &[u8],
    mut packet_type: u8,
    what: &'static str,
) -> Result<(u8, i64, [u8; 4], usize), FlvError> {
    let truncated = || FlvError::Truncated(what);
    let mut at = 1;
    let mut nanos = 0;
    while packet_type == MOD_EX {
        let mut size = usize::from(*body.get(at).ok_or_else(truncated)?) + 1;
        at += 1;
        if size == 256 {
            let wide = body.get(at..at + 2).ok_or_else(truncated)?;
            size = usize::from(u16::from_be_bytes([wide[0], wide[1]])) + 1;
            at += 2;
        }
        let data = body.get(at..at + size).ok_or_else(truncated)?;
        at += size;
        let next = *body.get(at).ok_or_else(truncated)?;
        at += 1;
        if next >> 4 == MOD_EX_TIMESTAMP_NANO && data.len() >= 3 {
            nanos = i64::from(u32::from_be_bytes([0, data[0], data[1], data[2]]));
        }
        packet_type = next & 0x0f;
    }
    let fourcc = body.get(at..at + 4).ok_or_else(truncated)?;
    Ok((
        packet_type,
        nanos,
        [fourcc[0], fourcc[1], fourcc[2], fourcc[3]],
        at + 4,
    ))
}

/// Converts an RTMP video message body. `Ok(None)` for bodies that carry no frame (end of
/// sequence, video info/command frames, Enhanced RTMP metadata, an empty sequence start).
pub fn video_frame(timestamp_ms: u32, body: &Bytes) -> Result<Option<MediaFrame>, FlvError> {
    let Some(&first) = body.first() else {
        return Ok(None);
    };
    if first & 0x80 != 0 {
        return ex_video_frame(timestamp_ms, body);
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    if codec_id != 7 {
        return Err(FlvError::Unsupported {
            track: "video",
            codec_id,
        });
    }
    if frame_type == 5 {
        return Ok(None);
    }
    if body.len() < 5 {
        return Err(FlvError::Truncated("video"));
    }
    let cts = composition_time(&body[2..5]);
    let dts = i64::from(timestamp_ms) * 1000;
    let kind = match body[1] {
        0 => FrameKind::Config,
        1 => FrameKind::Media,
        _ => return Ok(None),
    };
    Ok(Some(MediaFrame {
        track: Track::Video,
        codec: Codec::H264,
        kind,
        dts,
        pts: dts + i64::from(cts) * 1000,
        keyframe: frame_type == 1,
        payload: body.slice(5..),
    }))
}

/// A signed 24-bit composition time offset in milliseconds.
fn composition_time(b: &[u8]) -> i32 {
    ((i32::from(b[0]) << 24) | (i32::from(b[1]) << 16) | (i32::from(b[2]) << 8)) >> 8
}

/// An Enhanced RTMP video body (IsExHeader set): `[1 IsExHeader][3 FrameType][4
/// PacketType]`, ModEx prefixes, the FourCC, then for `avc1`/`hvc1` coded frames a 24-bit
/// composition time, then the data.
fn ex_video_frame(timestamp_ms: u32, body: &Bytes) -> Result<Option<MediaFrame>, FlvError> {
    let first = body[0];
    let frame_type = (first >> 4) & 0x07;
    let (packet_type, nanos, fourcc, mut at) = ex_header(body, first & 0x0f, "video")?;
    if packet_type == VIDEO_MULTITRACK {
        return Err(FlvError::UnsupportedPacket {
            track: "video",
            packet_type,
        });
    }
    // Video info / command frames (frame type 5) carry no picture.
    if frame_type == 5 {
        return Ok(None);
    }
    let codec = match fourcc {
        FOURCC_HEVC => Codec::H265,
        FOURCC_AV1 => Codec::Av1,
        FOURCC_AVC => Codec::H264,
        other => {
            return Err(FlvError::UnsupportedFourCc {
                track: "video",
                fourcc: fourcc_text(&other),
            })
        }
    };
    let mut cts = 0;
    let kind = match packet_type {
        VIDEO_SEQUENCE_START => FrameKind::Config,
        VIDEO_CODED_FRAMES => {
            if codec != Codec::Av1 {
                let c = body.get(at..at + 3).ok_or(FlvError::Truncated("video"))?;
                cts = composition_time(c);
                at += 3;
            }
            FrameKind::Media
        }
        VIDEO_CODED_FRAMES_X => FrameKind::Media,
        // SequenceEnd, Metadata (colour info), MPEG-2 TS sequence start: no frame.
        _ => return Ok(None),
    };
    if at >= body.len() {
        // FFmpeg announces AV1 with an empty sequence start before the encoder's record.
        return Ok(None);
    }
    let dts = i64::from(timestamp_ms) * 1000 + nanos / 1000;
    Ok(Some(MediaFrame {
        track: Track::Video,
        codec,
        kind,
        dts,
        pts: dts + i64::from(cts) * 1000,
        keyframe: frame_type == 1,
        payload: body.slice(at..),
    }))
}

/// Converts an RTMP audio message body.
pub fn audio_frame(timestamp_ms: u32, body: &Bytes) -> Result<Option<MediaFrame>, FlvError> {
    let Some(&first) = body.first() else {
        return Ok(None);
    };
    let format = first >> 4;
    if format == SOUND_FORMAT_EX {
        return ex_audio_frame(timestamp_ms, body);
    }
    if format != 10 {
        return Err(FlvError::Unsupported {
            track: "audio",
            codec_id: format,
        });
    }
    if body.len() < 2 {
        return Err(FlvError::Truncated("audio"));
    }
    let dts = i64::from(timestamp_ms) * 1000;
    Ok(Some(MediaFrame {
        track: Track::Audio,
        codec: Codec::Aac,
        kind: if body[1] == 0 {
            FrameKind::Config
        } else {
            FrameKind::Media
        },
        dts,
        pts: dts,
        keyframe: true,
        payload: body.slice(2..),
    }))
}

/// An Enhanced RTMP audio body (sound format 9): `[4 SoundFormat 9][4 AudioPacketType]`,
/// ModEx prefixes, the FourCC, then the data. FFmpeg sends a MultichannelConfig packet
/// after the sequence start; the channel layout is in the codec config too, so it is skipped.
fn ex_audio_frame(timestamp_ms: u32, body: &Bytes) -> Result<Option<MediaFrame>, FlvError> {
    let (packet_type, nanos, fourcc, at) = ex_header(body, body[0] & 0x0f, "audio")?;
    if packet_type == AUDIO_MULTITRACK {
        return Err(FlvError::UnsupportedPacket {
            track: "audio",
            packet_type,
        });
    }
    let codec = match fourcc {
        FOURCC_OPUS => Codec::Opus,
        FOURCC_AAC => Codec::Aac,
        other => {
            return Err(FlvError::UnsupportedFourCc {
                track: "audio",
                fourcc: fourcc_text(&other),
            })
        }
    };
    let kind = match packet_type {
        AUDIO_SEQUENCE_START => FrameKind::Config,
        AUDIO_CODED_FRAMES => FrameKind::Media,
        // SequenceEnd, MultichannelConfig: no frame.
        _ => return Ok(None),
    };
    if at >= body.len() {
        return Ok(None);
    }
    let dts = i64::from(timestamp_ms) * 1000 + nanos / 1000;
    Ok(Some(MediaFrame {
        track: Track::Audio,
        codec,
        kind,
        dts,
        pts: dts,
        keyframe: true,
        payload: body.slice(at..),
    }))
}

/// The longest FLV tag body header [`tag_header`] writes.
pub const TAG_HEADER_MAX: usize = 8;

/// The FLV tag body header for `frame`: 5 bytes for AVC, 2 for AAC (the legacy forms), 5 or
/// 8 for the Enhanced RTMP codecs (first byte, FourCC, and for H.265 coded frames the
/// composition time). The payload follows it unchanged, so callers can write header and
/// shared payload without joining them. `None` for a frame FLV cannot carry (kept for codecs
/// the model may gain; every codec of today's model is carried).
pub fn tag_header(frame: &MediaFrame) -> Option<([u8; TAG_HEADER_MAX], usize)> {
    let mut h = [0u8; TAG_HEADER_MAX];
    let cts = || {
        let cts = ((frame.pts - frame.dts) / 1000).clamp(-(1 << 23), (1 << 23) - 1) as i32;
        let c = cts.to_be_bytes();
        [c[1], c[2], c[3]]
    };
    let frame_type: u8 = if frame.keyframe { 1 } else { 2 };
    match frame.codec {
        Codec::H264 => {
            let packet_type = match frame.kind {
                FrameKind::Config => 0,
                FrameKind::Media => 1,
            };
            h[0] = (frame_type << 4) | 7;
            h[1] = packet_type;
            h[2..5].copy_from_slice(&cts());
            Some((h, 5))
        }
        Codec::Aac => {
            // Sound format 10, 44 kHz, 16-bit, stereo: the flags FLV requires for AAC; the
            // real parameters travel in the AudioSpecificConfig.
            h[0] = 0xAF;
            h[1] = match frame.kind {
                FrameKind::Config => 0,
                FrameKind::Media => 1,
            };
            Some((h, 2))
        }
        Codec::H265 | Codec::Av1 => {
            let (frame_type, packet_type) = match frame.kind {
                FrameKind::Config => (1, VIDEO_SEQUENCE_START),
                FrameKind::Media => (frame_type, VIDEO_CODED_FRAMES),
            };
            h[0] = 0x80 | (frame_type << 4) | packet_type;
            h[1..5].copy_from_slice(&fourcc(frame.codec));
            // H.265 coded frames carry a composition time; AV1 has no reordering delay.
            if frame.codec == Codec::H265 && frame.kind == FrameKind::Media {
                h[5..8].copy_from_slice(&cts());
                Some((h, 8))
            } else {
                Some((h, 5))
            }
        }
        Codec::Opus => {
            let packet_type = match frame.kind {
                FrameKind::Config => AUDIO_SEQUENCE_START,
                FrameKind::Media => AUDIO_CODED_FRAMES,
            };
            h[0] = (SOUND_FORMAT_EX << 4) | packet_type;
            h[1..5].copy_from_slice(&FOURCC_OPUS);
            Some((h, 5))
        }
    }
}

/// The RTMP/FLV timestamp (milliseconds, 32-bit wrapping) of a frame.
pub fn timestamp_ms(frame: &MediaFrame) -> u32 {
    (frame.dts.div_euclid(1000)) as u32
}

/// `onMetaData` properties to the core's metadata (numbers, flags and strings; nested values
/// are dropped). Sorted by name so the order is stable.
pub fn metadata_from_amf(properties: HashMap<String, Amf0Value>) -> Metadata {
    let mut entries: Vec<(String, MetaValue)> = properties
        .into_iter()
        .filter_map(|(k, v)| match v {
            Amf0Value::Number(n) => Some((k, MetaValue::Number(n))),
            Amf0Value::Boolean(b) => Some((k, MetaValue::Bool(b))),
            Amf0Value::Utf8String(s) => Some((k, MetaValue::Text(s))),
            _ => None,
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Metadata { entries }
}

/// The core's metadata as `onMetaData` properties.
pub fn metadata_to_amf(metadata: &Metadata) -> HashMap<String, Amf0Value> {
    metadata
        .entries
        .iter()
        .map(|(k, v)| {
            let v = match v {
                MetaValue::Number(n) => Amf0Value::Number(*n),
                MetaValue::Bool(b) => Amf0Value::Boolean(*b),
                MetaValue::Text(s) => Amf0Value::Utf8String(s.clone()),
            };
            (k.clone(), v)
        })
        .collect()
}

/// FLV tag type of audio data.
pub const TAG_AUDIO: u8 = 8;
/// FLV tag type of video data.
pub const TAG_VIDEO: u8 = 9;
/// FLV tag type of script data (`onMetaData`).
pub const TAG_SCRIPT: u8 = 18;

/// The FLV file header (FLV spec E.2) and PreviousTagSize0.
pub fn file_header(has_audio: bool, has_video: bool) -> [u8; 13] {
    let flags = (u8::from(has_audio) << 2) | u8::from(has_video);
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// Appends one FLV tag (FLV spec E.4.1) whose body is `parts` joined, and its PreviousTagSize.
pub fn write_tag(out: &mut BytesMut, tag_type: u8, timestamp_ms: u32, parts: &[&[u8]]) {
    let size: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(11 + size + 4);
    out.put_u8(tag_type);
    out.put_slice(&(size as u32).to_be_bytes()[1..]);
    out.put_slice(&timestamp_ms.to_be_bytes()[1..]);
    out.put_u8((timestamp_ms >> 24) as u8);
    out.put_slice(&[0, 0, 0]);
    for part in parts {
        out.put_slice(part);
    }
    out.put_u32((11 + size) as u32);
}

/// Appends `frame` as an FLV audio or video tag; false for codecs FLV cannot carry.
pub fn write_frame_tag(out: &mut BytesMut, frame: &MediaFrame) -> bool {
    let Some((header, len)) = tag_header(frame) else {
        return false;
    };
    let tag_type = match frame.track {
        Track::Video => TAG_VIDEO,
        Track::Audio => TAG_AUDIO,
    };
    write_tag(
        out,
        tag_type,
        timestamp_ms(frame),
        &[&header[..len], &frame.payload],
    );
    true
}

/// Appends the `onMetaData` script tag for `metadata`.
pub fn write_metadata_tag(out: &mut BytesMut, metadata: &Metadata) {
    let values = vec![
        Amf0Value::Utf8String("onMetaData".into()),
        Amf0Value::Object(metadata_to_amf(metadata)),
    ];
    // Our own values: scalars with keys under 64 KiB, which always encode.
    if let Ok(body) = rml_amf0::serialize(&values) {
        write_tag(out, TAG_SCRIPT, 0, &[&body]);
    }
}

/// The tracks to announce to a joining FLV player (`(audio, video)`), from the configs the
/// stream has and the publisher's metadata: a track is announced when its config is known or
/// the metadata names its codec (its config may simply not have arrived yet); both when
/// nothing is known yet, so that the player waits for either.
pub fn announced_tracks(
    has_audio_config: bool,
    has_video_config: bool,
    metadata: Option<&Metadata>,
) -> (bool, bool) {
    let names = |key: &str| metadata.is_some_and(|m| m.entries.iter().any(|(k, _)| k == key));
    let audio = has_audio_config || names("audiocodecid");
    let video = has_video_config || names("videocodecid");
    if audio || video {
        (audio, video)
    } else {
        (true, true)
    }
}

/// Whether FLV (and so RTMP) carries `codec`: H.264 (codec id 7) and AAC (sound format 10)
/// in their legacy form, H.265, AV1 and Opus as Enhanced RTMP (FourCC `hvc1`, `av01`,
/// `Opus`). Every codec of the model today; a codec added to the model must be decided here.
pub fn carries(codec: Codec) -> bool {
    match codec {
        Codec::H264 | Codec::Aac | Codec::H265 | Codec::Av1 | Codec::Opus => true,
    }
}

/// Whether `codec` goes out as Enhanced RTMP, which legacy players (FFmpeg before 6.1,
/// rtmpdump, older Flash-era clients) cannot read.
pub fn is_enhanced(codec: Codec) -> bool {
    !matches!(codec, Codec::H264 | Codec::Aac)
}

/// What an FLV player gets of a stream with these codec configs: whether it has an audio and
/// a video track FLV carries (`(audio, video)`), and the `(track, codec)` of each config FLV
/// cannot carry (those tracks are left out: never announced, their frames not sent).
pub fn carried_tracks(configs: &[MediaFrame]) -> (bool, bool, Vec<(Track, Codec)>) {
    let carried = |track| configs.iter().any(|f| f.track == track && carries(f.codec));
    let mut left_out: Vec<(Track, Codec)> = Vec::new();
    for f in configs.iter().filter(|f| !carries(f.codec)) {
        if !left_out.contains(&(f.track, f.codec)) {
            left_out.push((f.track, f.codec));
        }
    }
    (carried(Track::Audio), carried(Track::Video), left_out)
}

/// What an FLV player (RTMP: the description of its `NetStream.Play.Start`) should know about
/// the tracks it gets: those FLV cannot carry, left out, and those sent as Enhanced RTMP, which
/// players that predate it cannot decode. Empty when there is nothing to say.
pub fn tracks_note(configs: &[MediaFrame]) -> String {
    let (_, _, left_out) = carried_tracks(configs);
    let enhanced = enhanced_tracks(configs);
    let mut note = Vec::new();
    if !left_out.is_empty() {
        note.push(format!(
            "Left out (FLV cannot carry them): {}.",
            track_names(&left_out)
        ));
    }
    if !enhanced.is_empty() {
        note.push(format!(
            "Sent as Enhanced RTMP: {}.",
            track_names(&enhanced)
        ));
    }
    note.join(" ")
}

/// `video H265, audio Opus`: tracks and codecs for a reader.
pub fn track_names(tracks: &[(Track, Codec)]) -> String {
    let names: Vec<String> = tracks
        .iter()
        .map(|(track, codec)| format!("{} {codec:?}", format!("{track:?}").to_lowercase()))
        .collect();
    names.join(", ")
}

/// The `(track, codec)` of each config that goes out as Enhanced RTMP ([`is_enhanced`]), for
/// the player's log: a player that predates Enhanced RTMP cannot decode those tracks.
pub fn enhanced_tracks(configs: &[MediaFrame]) -> Vec<(Track, Codec)> {
    let mut out: Vec<(Track, Codec)> = Vec::new();
    for f in configs.iter().filter(|f| is_enhanced(f.codec)) {
        if !out.contains(&(f.track, f.codec)) {
            out.push((f.track, f.codec));
        }
    }
    out
}

/// [`single_track`] for a stream some of whose tracks FLV cannot carry (`left_out`, from
/// [`carried_tracks`]): a stream whose only other track is left out has, for an FLV player,
/// one track for certain, whatever the metadata says.
pub fn single_carried_track(
    has_audio_config: bool,
    has_video_config: bool,
    left_out: &[(Track, Codec)],
    metadata: Option<&Metadata>,
) -> Option<(bool, bool)> {
    let lacks = |track| left_out.iter().any(|&(t, _)| t == track);
    match (has_audio_config, has_video_config) {
        (true, false) if lacks(Track::Video) => Some((true, false)),
        (false, true) if lacks(Track::Audio) => Some((false, true)),
        _ => single_track(has_audio_config, has_video_config, metadata),
    }
}

/// Whether a joining player can be told the stream has one track only: the publisher's
/// metadata names the codec of one track only and that track's config is known. Without
/// metadata nothing is certain (a config may still be on its way), so nothing is said.
pub fn single_track(
    has_audio_config: bool,
    has_video_config: bool,
    metadata: Option<&Metadata>,
) -> Option<(bool, bool)> {
    let metadata = metadata?;
    let names = |key: &str| metadata.entries.iter().any(|(k, _)| k == key);
    match (names("audiocodecid"), names("videocodecid")) {
        (true, false) if has_audio_config && !has_video_config => Some((true, false)),
        (false, true) if has_video_config && !has_audio_config => Some((false, true)),
        _ => None,
    }
}

/// The `onMetaData` properties that tell a player a stream has one track only, or `None`
/// when it has both (or neither): the missing track's codec id as an empty object. Only for
/// what [`single_track`] confirms.
///
/// FFmpeg's FLV demuxer (so ffprobe, ffplay, mpv and VLC) cannot know from the FLV header or
/// a first `onMetaData` that a track will never come, and waits its whole analysis time
/// (about 5 s) for it; an `onMetaData` read once the first track exists, whose other track's
/// codec id is an empty object, ends that wait (libavformat/flvdec.c `amf_parse_object`:
/// "If there is either audio/video missing, codecid will be an empty object"). Sent after the
/// codec configs, with timestamp 0 (a script tag at a later time would be read as data).
pub fn single_track_properties(
    has_audio: bool,
    has_video: bool,
) -> Option<HashMap<String, Amf0Value>> {
    let missing = match (has_audio, has_video) {
        (true, false) => "videocodecid",
        (false, true) => "audiocodecid",
        _ => return None,
    };
    Some(HashMap::from([(
        missing.to_owned(),
        Amf0Value::Object(HashMap::new()),
    )]))
}

/// Appends the script tag of [`single_track_properties`], if the stream has one track only.
pub fn write_single_track_tag(out: &mut BytesMut, has_audio: bool, has_video: bool) {
    let Some(properties) = single_track_properties(has_audio, has_video) else {
        return;
    };
    let values = vec![
        Amf0Value::Utf8String("onMetaData".into()),
        Amf0Value::Object(properties),
    ];
    if let Ok(body) = rml_amf0::serialize(&values) {
        write_tag(out, TAG_SCRIPT, 0, &[&body]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_of_the_model_is_carried() {
        let config = |track, codec| MediaFrame {
            track,
            codec,
            kind: FrameKind::Config,
            dts: 0,
            pts: 0,
            keyframe: true,
            payload: Bytes::new(),
        };
        let configs = [
            config(Track::Video, Codec::H265),
            config(Track::Audio, Codec::Opus),
        ];
        assert_eq!(carried_tracks(&configs), (true, true, vec![]));
        assert_eq!(single_carried_track(true, true, &[], None), None);
        for codec in [
            Codec::H264,
            Codec::H265,
            Codec::Av1,
            Codec::Aac,
            Codec::Opus,
        ] {
            assert!(carries(codec));
        }
        assert_eq!(metadata_codec_id(Codec::H264), 7.0);
        assert_eq!(metadata_codec_id(Codec::Aac), 10.0);
        // What FFmpeg 9 writes into onMetaData for H.265 and Opus.
        assert_eq!(metadata_codec_id(Codec::H265), 1_752_589_105.0);
        assert_eq!(metadata_codec_id(Codec::Opus), 1_332_770_163.0);
    }

    /// Tag bodies as FFmpeg 9's FLV muxer writes them (captured from `-f flv`, payloads
    /// shortened): each is read as the frame it is, and written back byte for byte.
    #[test]
    fn enhanced_rtmp_tags_round_trip() {
        // hvc1 SequenceStart (the hvcC follows), keyframe CodedFrames with a composition
        // time of 80 ms, inter CodedFramesX.
        let start = Bytes::from_static(b"\x90hvc1\x01\x01\x60");
        let f = video_frame(0, &start).expect("hvc1").expect("a config");
        assert_eq!(
            (f.codec, f.kind, &f.payload[..]),
            (Codec::H265, FrameKind::Config, &[1u8, 1, 0x60][..])
        );
        let (h, n) = tag_header(&f).expect("carried");
        assert_eq!(&h[..n], &start[..5]);
        let key = Bytes::from_static(b"\x91hvc1\x00\x00\x50\x00\x00\x00\x02\x26\x01");
        let f = video_frame(40, &key).expect("hvc1").expect("a frame");
        assert_eq!(
            (f.codec, f.kind, f.keyframe, f.dts, f.pts),
            (Codec::H265, FrameKind::Media, true, 40_000, 120_000)
        );
        assert_eq!(&f.payload[..], &[0, 0, 0, 2, 0x26, 0x01]);
        let (h, n) = tag_header(&f).expect("carried");
        assert_eq!(&h[..n], &key[..8]);
        let x = Bytes::from_static(b"\xa3hvc1\x00\x00\x00\x02\x02\x01");
        let f = video_frame(120, &x).expect("hvc1").expect("a frame");
        assert_eq!((f.keyframe, f.pts - f.dts, f.payload.len()), (false, 0, 6));
        // Colour info metadata (frame type 5) and SequenceEnd carry no frame.
        assert_eq!(
            video_frame(0, &Bytes::from_static(b"\xd4hvc1\x02\x00")),
            Ok(None)
        );
        assert_eq!(video_frame(0, &Bytes::from_static(b"\x92hvc1")), Ok(None));

        // av01: FFmpeg's empty SequenceStart first, then the av1C; coded frames without a
        // composition time.
        assert_eq!(video_frame(0, &Bytes::from_static(b"\x90av01")), Ok(None));
        let start = Bytes::from_static(b"\x90av01\x81\x00\x0c\x00");
        let f = video_frame(7, &start).expect("av01").expect("a config");
        assert_eq!(
            (f.codec, f.kind, f.payload.len()),
            (Codec::Av1, FrameKind::Config, 4)
        );
        let (h, n) = tag_header(&f).expect("carried");
        assert_eq!(&h[..n], &start[..5]);
        let key = Bytes::from_static(b"\x91av01\x12\x00\x0a\x0b");
        let f = video_frame(7, &key).expect("av01").expect("a frame");
        assert_eq!(
            (f.kind, f.keyframe, f.pts, &f.payload[..]),
            (FrameKind::Media, true, 7000, &b"\x12\x00\x0a\x0b"[..])
        );
        let (h, n) = tag_header(&f).expect("carried");
        assert_eq!(&h[..n], &key[..5]);

        // Opus: SequenceStart (OpusHead), MultichannelConfig (skipped), CodedFrames.
        let start = Bytes::from_static(b"\x90OpusOpusHead\x01\x01");
        let f = audio_frame(0, &start).expect("Opus").expect("a config");
        assert_eq!(
            (f.codec, f.kind, &f.payload[..]),
            (Codec::Opus, FrameKind::Config, &b"OpusHead\x01\x01"[..])
        );
        let (h, n) = tag_header(&f).expect("carried");
        assert_eq!(&h[..n], &start[..5]);
        let multichannel = Bytes::from_static(b"\x94Opus\x01\x01\x00\x00\x00\x04");
        assert_eq!(audio_frame(0, &multichannel), Ok(None));
        let packet = Bytes::from_static(b"\x91Opus\xf8\x72\x49");
        let f = audio_frame(73, &packet).expect("Opus").expect("a frame");
        assert_eq!(
            (f.kind, f.dts, &f.payload[..]),
            (FrameKind::Media, 73_000, &b"\xf8\x72\x49"[..])
        );
        let (h, n) = tag_header(&f).expect("carried");
        assert_eq!(&h[..n], &packet[..5]);

        // AAC under the enhanced header reads as AAC (and goes out in the legacy form).
        let f = audio_frame(0, &Bytes::from_static(b"\x91mp4a\x21\x00"))
            .expect("mp4a")
            .expect("a frame");
        assert_eq!((f.codec, &f.payload[..]), (Codec::Aac, &[0x21u8, 0][..]));
        assert_eq!(
            tag_header(&f).map(|(h, n)| h[..n].to_vec()),
            Some(vec![0xAF, 1])
        );
    }

    #[test]
    fn enhanced_rtmp_mod_ex_and_what_is_not_carried() {
        // ModEx with a TimestampOffsetNano of 500 000 ns, then CodedFrames of hvc1.
        let body = Bytes::from_static(b"\x97\x02\x07\xa1\x20\x01hvc1\x00\x00\x00\xaa");
        let f = video_frame(10, &body).expect("ModEx").expect("a frame");
        assert_eq!(
            (f.codec, f.dts, f.keyframe, &f.payload[..]),
            (Codec::H265, 10_500, true, &[0xaau8][..])
        );
        // A ModEx whose 16-bit size runs past the end.
        assert_eq!(
            video_frame(0, &Bytes::from_static(b"\x97\xff\x01\x00")),
            Err(FlvError::Truncated("video"))
        );
        assert!(matches!(
            video_frame(0, &Bytes::from_static(b"\x91vp09\x00")),
            Err(FlvError::UnsupportedFourCc { .. })
        ));
        assert!(matches!(
            video_frame(0, &Bytes::from_static(b"\x96\x00hvc1")),
            Err(FlvError::UnsupportedPacket { packet_type: 6, .. })
        ));
        assert!(matches!(
            audio_frame(0, &Bytes::from_static(b"\x91ac-3\x00")),
            Err(FlvError::UnsupportedFourCc { .. })
        ));
        assert_eq!(
            video_frame(0, &Bytes::from_static(b"\x91hv")),
            Err(FlvError::Truncated("video"))
        );
        assert_eq!(
            video_frame(0, &Bytes::from_static(b"\x91hvc1\x00")),
            Err(FlvError::Truncated("video"))
        );
        assert_eq!(
            audio_frame(0, &Bytes::from_static(b"\x90Op")),
            Err(FlvError::Truncated("audio"))
        );
    }

    #[test]
    fn single_track_streams_say_which_track_is_missing() {
        assert_eq!(single_track_properties(true, true), None);
        assert_eq!(single_track_properties(false, false), None);
        let mut out = BytesMut::new();
        write_single_track_tag(&mut out, true, true);
        assert!(out.is_empty());
        write_single_track_tag(&mut out, true, false);
        // Script tag, timestamp 0, "onMetaData", an object whose only property is an empty
        // object named videocodecid.
        let mut body = vec![0x02, 0, 10];
        body.extend_from_slice(b"onMetaData");
        body.extend_from_slice(&[0x03, 0, 12]);
        body.extend_from_slice(b"videocodecid");
        body.extend_from_slice(&[0x03, 0, 0, 9, 0, 0, 9]);
        assert_eq!(out[0], TAG_SCRIPT);
        assert_eq!(&out[1..4], &(body.len() as u32).to_be_bytes()[1..]);
        assert_eq!(&out[4..8], &[0, 0, 0, 0]);
        assert_eq!(&out[11..11 + body.len()], &body[..]);
        let mut out = BytesMut::new();
        write_single_track_tag(&mut out, false, true);
        assert!(out.windows(12).any(|w| w == b"audiocodecid"));

        // Only what the publisher's metadata confirms.
        let meta = |keys: &[&str]| Metadata {
            entries: keys
                .iter()
                .map(|k| (k.to_string(), MetaValue::Number(10.0)))
                .collect(),
        };
        let audio_only = meta(&["audiocodecid"]);
        let both = meta(&["audiocodecid", "videocodecid"]);
        assert_eq!(
            single_track(true, false, Some(&audio_only)),
            Some((true, false))
        );
        assert_eq!(single_track(true, false, Some(&both)), None);
        assert_eq!(single_track(true, false, None), None);
        assert_eq!(single_track(false, false, Some(&audio_only)), None);
        assert_eq!(announced_tracks(false, true, Some(&both)), (true, true));
        assert_eq!(announced_tracks(false, true, None), (false, true));
        assert_eq!(announced_tracks(false, false, None), (true, true));
        assert_eq!(
            announced_tracks(true, false, Some(&audio_only)),
            (true, false)
        );
    }

    #[test]
    fn avc_keyframe_round_trips_with_composition_time() {
        let body = Bytes::from_static(&[0x17, 1, 0, 0, 80, 0, 0, 0, 2, 0x65, 0x88]);
        let f = video_frame(1000, &body).expect("h264").expect("a frame");
        assert_eq!(
            (f.kind, f.keyframe, f.dts, f.pts),
            (FrameKind::Media, true, 1_000_000, 1_080_000)
        );
        assert_eq!(&f.payload[..], &[0, 0, 0, 2, 0x65, 0x88]);
        let (h, n) = tag_header(&f).expect("flv can carry h264");
        assert_eq!(&h[..n], &body[..5]);
        assert_eq!(timestamp_ms(&f), 1000);
    }

    #[test]
    fn negative_composition_time_and_inter_frames() {
        let body = Bytes::from_static(&[0x27, 1, 0xFF, 0xFF, 0xD8, 1]);
        let f = video_frame(500, &body).expect("h264").expect("a frame");
        assert!(!f.keyframe);
        assert_eq!(f.pts - f.dts, -40_000);
        let (h, n) = tag_header(&f).expect("h264");
        assert_eq!(&h[..n], &body[..5]);
    }

    #[test]
    fn avc_sequence_header_is_config() {
        let body = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]);
        let f = video_frame(0, &body).expect("h264").expect("a frame");
        assert_eq!(f.kind, FrameKind::Config);
        assert_eq!(&f.payload[..], &[1, 0x64, 0, 0x1f]);
    }

    #[test]
    fn aac_config_and_raw() {
        let asc = Bytes::from_static(&[0xAF, 0, 0x12, 0x10]);
        let f = audio_frame(0, &asc).expect("aac").expect("frame");
        assert_eq!(
            (f.kind, &f.payload[..]),
            (FrameKind::Config, &[0x12u8, 0x10][..])
        );
        let raw = Bytes::from_static(&[0xAF, 1, 0x21, 0x00]);
        let f = audio_frame(23, &raw).expect("aac").expect("frame");
        assert_eq!(f.kind, FrameKind::Media);
        let (h, n) = tag_header(&f).expect("aac");
        assert_eq!(&h[..n], &raw[..2]);
    }

    #[test]
    fn other_codecs_are_reported() {
        assert!(matches!(
            audio_frame(0, &Bytes::from_static(&[0x2F, 0])),
            Err(FlvError::Unsupported { codec_id: 2, .. })
        ));
        assert!(matches!(
            video_frame(0, &Bytes::from_static(&[0x12, 0])),
            Err(FlvError::Unsupported { codec_id: 2, .. })
        ));
        assert!(matches!(
            video_frame(0, &Bytes::from_static(&[0x17, 1])),
            Err(FlvError::Truncated(_))
        ));
        assert_eq!(video_frame(0, &Bytes::from_static(&[0x57, 0])), Ok(None));
    }

    #[test]
    fn metadata_keeps_scalars_in_name_order() {
        let mut props = HashMap::new();
        props.insert("width".to_string(), Amf0Value::Number(640.0));
        props.insert("encoder".to_string(), Amf0Value::Utf8String("Lavf".into()));
        props.insert("nested".to_string(), Amf0Value::Object(HashMap::new()));
        let m = metadata_from_amf(props);
        assert_eq!(m.entries.len(), 2);
        assert_eq!(m.entries[0].0, "encoder");
        let back = metadata_to_amf(&m);
        assert_eq!(back.get("width"), Some(&Amf0Value::Number(640.0)));
    }

    #[test]
    fn tags_carry_size_timestamp_and_previous_size() {
        let mut out = BytesMut::new();
        write_tag(&mut out, TAG_VIDEO, 0x0102_0304, &[&[1, 2], &[3]]);
        assert_eq!(
            &out[..],
            &[9, 0, 0, 3, 0x02, 0x03, 0x04, 0x01, 0, 0, 0, 1, 2, 3, 0, 0, 0, 14]
        );
        assert_eq!(file_header(true, true)[4], 5);
        assert_eq!(
            &file_header(false, true)[..9],
            b"FLV\x01\x01\x00\x00\x00\x09"
        );
    }

    #[test]
    fn frames_and_metadata_become_tags() {
        let body = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]);
        let frame = video_frame(40, &body).expect("h264").expect("frame");
        let mut out = BytesMut::new();
        assert!(write_frame_tag(&mut out, &frame));
        assert_eq!(out[0], TAG_VIDEO);
        assert_eq!(&out[11..11 + body.len()], &body[..]);
        let mut meta = BytesMut::new();
        write_metadata_tag(
            &mut meta,
            &Metadata {
                entries: vec![("width".into(), MetaValue::Number(640.0))],
            },
        );
        assert_eq!(meta[0], TAG_SCRIPT);
        assert!(meta.windows(10).any(|w| w == b"onMetaData"));
    }
}

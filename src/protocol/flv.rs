//! FLV tag bodies (the payload of RTMP audio/video messages and of FLV file tags) to and from
//! the core's [`MediaFrame`], and `onMetaData` to and from [`Metadata`].
//!
//! Video: FLV spec 10.1 VIDEODATA with AVCVIDEOPACKET (codec id 7). Audio: AUDIODATA with
//! AACAUDIODATA (sound format 10). Other codecs are reported as [`FlvError::Unsupported`].
//! Pure functions; no IO.

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use rml_amf0::Amf0Value;
use streamgate_actors::media::{Codec, FrameKind, MediaFrame, MetaValue, Metadata, Track};

/// A tag body this server cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    /// A codec other than H.264 video or AAC audio.
    #[error("unsupported {track} codec id {codec_id}")]
    Unsupported {
        /// "audio" or "video".
        track: &'static str,
        /// The FLV codec / sound format id.
        codec_id: u8,
    },
    /// The body is shorter than its header.
    #[error("{0} tag body too short")]
    Truncated(&'static str),
}

/// Converts an RTMP video message body. `Ok(None)` for bodies that carry no frame (end of
/// sequence, video info/command frames).
pub fn video_frame(timestamp_ms: u32, body: &Bytes) -> Result<Option<MediaFrame>, FlvError> {
    let Some(&first) = body.first() else {
        return Ok(None);
    };
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    if first & 0x80 != 0 || codec_id != 7 {
        // 0x80: enhanced RTMP extended header (HEVC, AV1, VP9 by FourCC).
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
    let cts =
        ((i32::from(body[2]) << 24) | (i32::from(body[3]) << 16) | (i32::from(body[4]) << 8)) >> 8;
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

/// Converts an RTMP audio message body.
pub fn audio_frame(timestamp_ms: u32, body: &Bytes) -> Result<Option<MediaFrame>, FlvError> {
    let Some(&first) = body.first() else {
        return Ok(None);
    };
    let format = first >> 4;
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

/// The FLV tag body header for `frame`: 5 bytes for AVC, 2 for AAC. The payload follows it
/// unchanged, so callers can write header and shared payload without joining them. `None`
/// for codecs FLV cannot carry in its classic form.
pub fn tag_header(frame: &MediaFrame) -> Option<([u8; 5], usize)> {
    match frame.codec {
        Codec::H264 => {
            let frame_type: u8 = if frame.keyframe { 1 } else { 2 };
            let packet_type = match frame.kind {
                FrameKind::Config => 0,
                FrameKind::Media => 1,
            };
            let cts = ((frame.pts - frame.dts) / 1000).clamp(-(1 << 23), (1 << 23) - 1) as i32;
            let c = cts.to_be_bytes();
            Some(([(frame_type << 4) | 7, packet_type, c[1], c[2], c[3]], 5))
        }
        Codec::Aac => {
            // Sound format 10, 44 kHz, 16-bit, stereo: the flags FLV requires for AAC; the
            // real parameters travel in the AudioSpecificConfig.
            let packet_type = match frame.kind {
                FrameKind::Config => 0,
                FrameKind::Media => 1,
            };
            Some(([0xAF, packet_type, 0, 0, 0], 2))
        }
        Codec::H265 => None,
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

/// Whether classic FLV (and so RTMP without the Enhanced RTMP extensions) carries `codec`:
/// H.264 (codec id 7) and AAC (sound format 10). H.265 needs Enhanced RTMP's FourCC `hvc1`.
pub fn carries(codec: Codec) -> bool {
    matches!(codec, Codec::H264 | Codec::Aac)
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
    fn h265_is_left_out_of_what_flv_players_are_told() {
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
            config(Track::Audio, Codec::Aac),
        ];
        let (audio, video, left_out) = carried_tracks(&configs);
        assert_eq!(
            (audio, video, left_out.clone()),
            (true, false, vec![(Track::Video, Codec::H265)])
        );
        assert_eq!(announced_tracks(audio, video, None), (true, false));
        assert_eq!(
            single_carried_track(audio, video, &left_out, None),
            Some((true, false))
        );
        assert!(tag_header(&configs[0]).is_none());
        let (audio, video, left_out) = carried_tracks(&[config(Track::Video, Codec::H264)]);
        assert_eq!((audio, video, left_out), (false, true, vec![]));
        assert_eq!(single_carried_track(false, true, &[], None), None);
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
        let (h, _) = tag_header(&f).expect("h264");
        assert_eq!(&h[..], &body[..5]);
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

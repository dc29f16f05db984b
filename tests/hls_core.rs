//! The HLS core against real players: a stream ffmpeg encodes (H.264 or H.265 with AAC) is
//! read back through the server's own MPEG-TS demuxer, cut by the segmenter into fMP4 or
//! MPEG-TS segments and parts, written with its playlists to a directory, and read by
//! ffprobe and ffmpeg from the playlist: every frame of the source must decode, and every
//! playlist must pass the validator.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use streamgate::protocol::hls::playlist::{
    media_playlist, multivariant_playlist, MediaOptions, Resource,
};
use streamgate::protocol::hls::segmenter::{PartRef, Segmenter};
use streamgate::protocol::hls::validate::{check_media, check_succession};
use streamgate::protocol::hls::{Container, HlsConfig};
use streamgate::protocol::ts::TsDemuxer;
use streamgate_actors::media::{FrameKind, MediaFrame};
use streamgate_testkit::ffmpeg::ffmpeg9_decode;
use streamgate_testkit::util::TempDir;

/// Encodes `seconds` of test picture (with `video_args`) and tone (with `audio_args`) into
/// MPEG-TS; a track whose arguments are empty is left out.
fn encode(dir: &Path, video_args: &[&str], audio_args: &[&str], seconds: u32) -> PathBuf {
    let out = dir.join("source.ts");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]);
    if !video_args.is_empty() {
        cmd.args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"]);
    }
    if !audio_args.is_empty() {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    cmd.args(["-t", &seconds.to_string()]);
    if !video_args.is_empty() {
        cmd.args(video_args).args(["-pix_fmt", "yuv420p"]);
    }
    let status = cmd
        .args(audio_args)
        .args(["-f", "mpegts"])
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg encodes the source");
    out
}

/// `(video frames, audio frames)` ffprobe decodes from `input`.
fn count_frames(input: &Path) -> (u64, u64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames"])
        .args([
            "-show_entries",
            "stream=codec_type,nb_read_frames",
            "-of",
            "flat",
        ])
        .arg(input)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe reads {}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // `streams.stream.N.key="value"` lines; the same streams listed under `programs.` are
    // left out so none is counted twice.
    let text = String::from_utf8_lossy(&out.stdout);
    let mut kinds = std::collections::BTreeMap::new();
    let mut counts = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("streams.stream.") else {
            continue;
        };
        let Some((index, kv)) = rest.split_once('.') else {
            continue;
        };
        let Some((key, value)) = kv.split_once('=') else {
            continue;
        };
        let value = value.trim_matches('"').to_owned();
        match key {
            "codec_type" => {
                kinds.insert(index.to_owned(), value);
            }
            "nb_read_frames" => {
                counts.insert(index.to_owned(), value.parse::<u64>().unwrap_or(0));
            }
            _ => {}
        }
    }
    let (mut video, mut audio) = (0, 0);
    for (index, kind) in &kinds {
        let n = counts.get(index).copied().unwrap_or(0);
        match kind.as_str() {
            "video" => video += n,
            "audio" => audio += n,
            _ => {}
        }
    }
    (video, audio)
}

/// Decodes every frame of `input` with ffmpeg; returns its error output.
fn decode_all(input: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        .arg("-i")
        .arg(input)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg decodes {}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn demux(path: &Path) -> (Vec<MediaFrame>, Vec<MediaFrame>) {
    let mut demuxer = TsDemuxer::new();
    demuxer.push(&fs::read(path).expect("read source"));
    demuxer.finish();
    let (mut configs, mut media) = (Vec::new(), Vec::new());
    while let Some(frame) = demuxer.poll_frame() {
        match frame.kind {
            FrameKind::Config => configs.push(frame),
            FrameKind::Media => media.push(frame),
        }
    }
    (configs, media)
}

/// Cuts the source into `container` segments in `dir`, checking every playlist on the way
/// (alone and after the previous one), and writes the final playlists: `index.m3u8` (the
/// media playlist), `master.m3u8` and `parts.m3u8` (every part as a segment).
fn package(dir: &Path, source: &Path, container: Container) {
    let (configs, media) = demux(source);
    assert!(!configs.is_empty(), "the demuxer found the codec configs");
    let config = HlsConfig {
        segment_us: 1_000_000,
        part_us: 200_000,
        segments_kept: 1000,
        container,
    };
    let mut seg = Segmenter::new(config, &configs).expect("segmenter");
    let opts = MediaOptions {
        suffix: "",
        low_latency: true,
        skip: false,
        program_date_time: false,
    };
    let mut previous = None;
    let mut checked = 0;
    for frame in &media {
        let progress = seg.push(frame).expect("push");
        if progress.any() {
            let text = media_playlist(&seg, &opts);
            let pl = check_media(&text).unwrap_or_else(|e| panic!("{e:?} in\n{text}"));
            if let Some(prev) = &previous {
                check_succession(prev, &pl).unwrap_or_else(|e| panic!("{e:?} in\n{text}"));
            }
            previous = Some(pl);
            checked += 1;
        }
    }
    seg.finish().expect("finish");
    assert!(checked > 20, "{checked} playlists checked");
    assert!(
        seg.segments().len() >= 4,
        "{} segments",
        seg.segments().len()
    );
    if let Some(init) = seg.init_segment() {
        fs::write(dir.join(Resource::Init.name(container)), init).expect("write init");
    }
    let mut parts_playlist = String::from("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:1\n");
    if seg.init_segment().is_some() {
        parts_playlist.push_str("#EXT-X-MAP:URI=\"init.mp4\"\n");
    }
    for s in seg.segments() {
        fs::write(dir.join(Resource::Segment(s.msn).name(container)), &s.bytes).expect("write");
        for (i, p) in s.parts.iter().enumerate() {
            let name = Resource::Part(PartRef {
                msn: s.msn,
                part: i as u64,
            })
            .name(container);
            fs::write(dir.join(&name), &p.bytes).expect("write part");
            parts_playlist.push_str(&format!(
                "#EXTINF:{:.5},\n{name}\n",
                p.duration_us as f64 / 1e6
            ));
        }
    }
    parts_playlist.push_str("#EXT-X-ENDLIST\n");
    let text = media_playlist(&seg, &opts);
    let pl = check_media(&text).unwrap_or_else(|e| panic!("{e:?} in\n{text}"));
    assert!(pl.ended);
    check_succession(previous.as_ref().expect("a playlist"), &pl).expect("continuity");
    fs::write(dir.join("index.m3u8"), &text).expect("write playlist");
    fs::write(dir.join("parts.m3u8"), parts_playlist).expect("write parts playlist");
    fs::write(
        dir.join("master.m3u8"),
        multivariant_playlist(&seg, "index.m3u8", 1_000_000),
    )
    .expect("write master");
}

/// Packages an encoded stream in `container` and checks that ffprobe decodes every source
/// frame from each playlist, and names `streams` (codec,width,height lines) from the
/// multivariant playlist.
fn round_trip(tag: &str, video: &[&str], audio: &[&str], container: Container, streams: &[&str]) {
    let dir = TempDir::new(tag);
    let source = encode(&dir.path, video, audio, 6);
    let expected = count_frames(&source);
    eprintln!("{tag}: source frames {expected:?}");
    assert!(
        video.is_empty() || expected.0 >= 170,
        "source frames {expected:?}"
    );
    assert!(
        audio.is_empty() || expected.1 >= 250,
        "source frames {expected:?}"
    );
    package(&dir.path, &source, container);
    for playlist in ["index.m3u8", "parts.m3u8", "master.m3u8"] {
        let path = dir.path.join(playlist);
        assert_eq!(
            count_frames(&path),
            expected,
            "frames decoded from {playlist} against the source"
        );
    }
    let errors = decode_all(&dir.path.join("master.m3u8"));
    assert!(errors.trim().is_empty(), "decode errors: {errors}");
    // FFmpeg 9's HLS demuxer is stricter (segment extensions against their format).
    let master = dir.path.join("master.m3u8");
    let decoded = ffmpeg9_decode(&master.to_string_lossy(), &[], 60.0);
    assert_eq!(
        (decoded.video as u64, decoded.audio as u64),
        expected,
        "frames FFmpeg 9 decoded: {}",
        decoded.out.stderr
    );
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height",
        ])
        .args(["-of", "csv=p=0"])
        .arg(dir.path.join("master.m3u8"))
        .output()
        .expect("ffprobe runs");
    let found = String::from_utf8_lossy(&probe.stdout);
    let mut found: Vec<&str> = found
        .lines()
        .map(|l| l.trim_end_matches(','))
        .filter(|l| !l.is_empty())
        .collect();
    found.sort_unstable();
    found.dedup();
    assert_eq!(found, streams, "streams of the multivariant playlist");
}

const H264: &[&str] = &[
    "-c:v", "libx264", "-g", "30", "-bf", "2", "-preset", "veryfast",
];
const H265: &[&str] = &[
    "-c:v",
    "libx265",
    "-preset",
    "ultrafast",
    "-x265-params",
    "keyint=30:min-keyint=30:bframes=2:log-level=error",
];

const AAC: &[&str] = &["-c:a", "aac", "-b:a", "96k"];
const OPUS: &[&str] = &["-c:a", "libopus", "-b:a", "64k"];

#[test]
fn h264_aac_fmp4_decodes_every_frame() {
    round_trip(
        "hls-h264-fmp4",
        H264,
        AAC,
        Container::Fmp4,
        &["aac", "h264,320,240"],
    );
}

#[test]
fn h264_aac_ts_decodes_every_frame() {
    round_trip(
        "hls-h264-ts",
        H264,
        AAC,
        Container::Ts,
        &["aac", "h264,320,240"],
    );
}

#[test]
fn h265_aac_fmp4_decodes_every_frame() {
    round_trip(
        "hls-h265-fmp4",
        H265,
        AAC,
        Container::Fmp4,
        &["aac", "hevc,320,240"],
    );
}

#[test]
fn h265_aac_ts_decodes_every_frame() {
    round_trip(
        "hls-h265-ts",
        H265,
        AAC,
        Container::Ts,
        &["aac", "hevc,320,240"],
    );
}

#[test]
fn h264_opus_fmp4_decodes_every_frame() {
    round_trip(
        "hls-opus-fmp4",
        H264,
        OPUS,
        Container::Fmp4,
        &["h264,320,240", "opus"],
    );
}

#[test]
fn audio_only_and_video_only_decode_every_frame() {
    round_trip("hls-audio-fmp4", &[], AAC, Container::Fmp4, &["aac"]);
    round_trip("hls-audio-ts", &[], AAC, Container::Ts, &["aac"]);
    round_trip(
        "hls-video-fmp4",
        H264,
        &[],
        Container::Fmp4,
        &["h264,320,240"],
    );
    round_trip("hls-video-ts", H265, &[], Container::Ts, &["hevc,320,240"]);
}

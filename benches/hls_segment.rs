//! What packaging one stream as HLS costs the server, once per stream whatever the number of
//! viewers: a 2 Mbit/s H.264 + AAC stream (30 fps, a keyframe every 2 s, 128 kbit/s audio)
//! pushed through the HLS segmenter into fMP4 and MPEG-TS segments and parts, and one media
//! playlist rendered per part: `cargo bench --bench hls_segment` (docs/benchmarks.md, "HLS
//! segmenting"). Prints the time per second of stream and per frame; asserts nothing about
//! time.

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use streamgate::protocol::codec::AvcConfig;
use streamgate::protocol::hls::playlist::{media_playlist, MediaOptions};
use streamgate::protocol::hls::segmenter::Segmenter;
use streamgate::protocol::hls::{Container, HlsConfig};
use streamgate_actors::media::{Codec, FrameKind, MediaFrame, Track};

const SECONDS: i64 = 120;
const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

fn frame(track: Track, kind: FrameKind, dts: i64, key: bool, payload: Bytes) -> MediaFrame {
    MediaFrame {
        track,
        codec: if track == Track::Video {
            Codec::H264
        } else {
            Codec::Aac
        },
        kind,
        dts,
        pts: dts,
        keyframe: key,
        payload,
    }
}

/// One length-prefixed NAL unit of `len` bytes, no start code inside.
fn nal(kind: u8, len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len + 4);
    v.extend_from_slice(&(len as u32).to_be_bytes());
    v.push(kind);
    v.extend((1..len).map(|i| (i % 251) as u8 + 1));
    Bytes::from(v)
}

fn main() {
    let avcc = AvcConfig::from_parameter_sets(
        vec![Bytes::from_static(SPS)],
        vec![Bytes::from_static(PPS)],
    )
    .expect("valid sets")
    .to_record();
    let configs = [
        frame(Track::Video, FrameKind::Config, 0, true, avcc),
        frame(
            Track::Audio,
            FrameKind::Config,
            0,
            true,
            Bytes::from_static(&[0x11, 0x90]),
        ),
    ];
    // 2 Mbit/s of video: 60 KB keyframes every 60 frames, the rest share what is left.
    let key = nal(0x65, 60_000);
    let delta = nal(0x41, (2_000_000 / 8 * 2 - 60_000) / 59);
    let aac = Bytes::from(vec![0x21; 128_000 / 8 * 1024 / 48_000]);
    let mut frames = Vec::new();
    for n in 0..SECONDS * 30 {
        let is_key = n % 60 == 0;
        let payload = if is_key { key.clone() } else { delta.clone() };
        frames.push(frame(
            Track::Video,
            FrameKind::Media,
            n * 1_000_000 / 30,
            is_key,
            payload,
        ));
    }
    for n in 0..SECONDS * 48_000 / 1024 {
        frames.push(frame(
            Track::Audio,
            FrameKind::Media,
            n * 1024 * 1_000_000 / 48_000,
            true,
            aac.clone(),
        ));
    }
    frames.sort_by_key(|f| f.dts);

    for container in [Container::Fmp4, Container::Ts] {
        let config = HlsConfig {
            segment_us: 2_000_000,
            part_us: 200_000,
            segments_kept: 7,
            container,
        };
        let opts = MediaOptions {
            suffix: "?s=0123456789abcdef",
            low_latency: true,
            skip: false,
            program_date_time: false,
        };
        let mut best = f64::MAX;
        let mut best_playlist = f64::MAX;
        for _ in 0..3 {
            let mut seg = Segmenter::new(config, &configs).expect("segmenter");
            let mut playlists = 0u32;
            let mut playlist_time = 0f64;
            let started = Instant::now();
            for f in &frames {
                if seg.push(black_box(f)).expect("push").any() {
                    let t = Instant::now();
                    black_box(media_playlist(&seg, &opts));
                    playlist_time += t.elapsed().as_secs_f64();
                    playlists += 1;
                }
            }
            best = best.min(started.elapsed().as_secs_f64() - playlist_time);
            best_playlist = best_playlist.min(playlist_time / f64::from(playlists));
        }
        println!(
            "{container:?}: {:.0} us per second of stream, {:.2} us per frame; {:.1} us per playlist",
            best * 1e6 / SECONDS as f64,
            best * 1e6 / frames.len() as f64,
            best_playlist * 1e6
        );
    }
}

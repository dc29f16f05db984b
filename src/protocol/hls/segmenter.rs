//! Cuts one stream's frames into HLS segments and partial segments, and builds their bytes
//! once, for every viewer.
//!
//! The lead track (video when the stream has one, else audio) decides the cuts:
//! - a segment starts on a video keyframe (any audio frame in an audio-only stream) and ends
//!   at the first keyframe at least [`HlsConfig::segment_us`] after its start;
//! - a part ends before the lead frame that would carry it past [`HlsConfig::part_us`], or
//!   where its segment ends. Parts start on any frame; [`Part::independent`] tells which
//!   start on a keyframe (`INDEPENDENT=YES`).
//!
//! A frame's duration is known only when the next frame of its track arrives, so each track
//! holds back one frame; a part therefore closes when the first frame after it arrives.
//! Sample times are laid on a continuous output timeline per track (the publisher's decode
//! time differences, with a gap or a step backwards replaced by the track's last frame
//! duration), so a publisher's timestamp reset never sends a player's time backwards.
//!
//! Memory: the last [`HlsConfig::segments_kept`] segments plus the parts of the segment
//! being built; a completed segment's bytes are its parts' bytes concatenated once, and
//! its parts become slices of them (no second copy).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use streamgate_actors::media::{Codec, FrameKind, MediaFrame, Track};

use crate::protocol::ts::TsMuxer;

use super::fmp4::{self, Sample, TrackInfo, TrackRun, AUDIO_TRACK_ID, VIDEO_TRACK_ID};
use super::{Container, HlsConfig, HlsError};

/// A decode-time step larger than this (or one that is not positive) is a gap or a reset,
/// not a frame duration.
pub const MAX_FRAME_GAP_US: i64 = 5_000_000;
/// Slack in the part cut: 90 kHz timestamps turned into microseconds make frame intervals
/// alternate by a microsecond (33333, 33334, ...), which must not cost a frame per part.
/// Playlists print durations to 10 µs, so a part this much over the target prints as the
/// target.
pub const PART_SLACK_US: i64 = 4;
/// Slack in the segment cut: a keyframe this close to the segment target counts as at it,
/// so that timestamps rounded to milliseconds (RTMP) or microseconds do not push a GOP-long
/// segment to the next keyframe.
pub const SEGMENT_SLACK_US: i64 = 1_000;
/// Least bound on a segment's length: a stream whose keyframes are further apart (or never
/// come again) is cut anyway at [`Segmenter::max_segment_us`], so memory stays bounded by
/// the segments kept; such a segment does not start independent.
pub const MAX_SEGMENT_FLOOR_US: i64 = 10_000_000;

/// One partial segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Duration in microseconds on the lead track.
    pub duration_us: i64,
    /// Starts with a lead-track keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
    /// The part: one fMP4 fragment or a run of TS packets.
    pub bytes: Bytes,
}

/// One complete media segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    /// Start on the lead track's output timeline, in microseconds.
    pub start_us: i64,
    /// Duration in microseconds (the sum of its parts').
    pub duration_us: i64,
    /// Its parts, in order; their bytes are slices of [`Self::bytes`].
    pub parts: Vec<Part>,
    /// The whole segment.
    pub bytes: Bytes,
    /// Starts with a keyframe (every segment does unless a keyframe was later than
    /// [`Segmenter::max_segment_us`]).
    pub independent: bool,
}

/// A part by its segment's media sequence number and its index in that segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartRef {
    /// Media sequence number of its segment.
    pub msn: u64,
    /// Index in the segment, from 0.
    pub part: u64,
}

/// What a [`Segmenter::push`] completed, so a server knows whom to wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Parts completed.
    pub parts: usize,
    /// Segments completed.
    pub segments: usize,
}

impl Progress {
    /// True when anything new can be served.
    pub fn any(&self) -> bool {
        self.parts > 0 || self.segments > 0
    }
}

#[derive(Debug)]
struct TrackState {
    info: TrackInfo,
    /// The frame whose duration is not known yet.
    pending: Option<MediaFrame>,
    /// Output decode time of the pending frame.
    timeline_us: i64,
    /// Duration of the last completed frame, used where a duration cannot be measured.
    last_duration_us: i64,
    /// Completed samples of the part being filled.
    samples: Vec<Sample>,
}

impl TrackState {
    fn new(info: TrackInfo, default_duration_us: i64) -> TrackState {
        TrackState {
            info,
            pending: None,
            timeline_us: 0,
            last_duration_us: default_duration_us,
            samples: Vec::new(),
        }
    }

    /// Completes the pending frame with the next frame's decode time (`None`: no next frame,
    /// use the last duration), appending it to the part's samples.
    fn complete(&mut self, next_dts: Option<i64>) {
        let Some(frame) = self.pending.take() else {
            return;
        };
        let measured = next_dts.map(|next| next.saturating_sub(frame.dts));
        let duration = match measured {
            Some(d) if d > 0 && d <= MAX_FRAME_GAP_US => d,
            _ => self.last_duration_us,
        };
        self.last_duration_us = duration;
        self.samples.push(Sample {
            dts_us: self.timeline_us,
            duration_us: duration,
            cts_offset_us: frame
                .pts
                .saturating_sub(frame.dts)
                .clamp(0, MAX_FRAME_GAP_US),
            keyframe: frame.track == Track::Audio || frame.keyframe,
            data: frame.payload,
        });
        self.timeline_us = self.timeline_us.saturating_add(duration);
    }
}

/// The segment being filled.
#[derive(Debug)]
struct OpenSegment {
    start_us: i64,
    parts: Vec<Part>,
    part_start_us: i64,
    part_independent: bool,
}

/// Segments and parts of one stream. Feed it every frame with [`Self::push`]; read what a
/// server serves from the accessors.
#[derive(Debug)]
pub struct Segmenter {
    config: HlsConfig,
    video: Option<TrackState>,
    audio: Option<TrackState>,
    init: Option<Bytes>,
    ts: Option<TsMuxer>,
    segments: VecDeque<Segment>,
    /// Media sequence number of the segment being filled.
    next_msn: u64,
    open: Option<OpenSegment>,
    /// The first lead keyframe's decode time: frames before it are dropped.
    origin_dts: Option<i64>,
    fragment_seq: u32,
    ended: bool,
    /// A point of the lead track's output timeline (µs) and its wall-clock time (Unix ms).
    wall_clock: Option<(i64, i64)>,
}

impl Segmenter {
    /// A segmenter for a stream with these codec config frames (the last of each track
    /// counts). Tracks whose codec the container does not carry are left out; an error when
    /// none is left or a record cannot be read.
    pub fn new(config: HlsConfig, configs: &[MediaFrame]) -> Result<Segmenter, HlsError> {
        let mut video = None;
        let mut audio = None;
        for frame in configs.iter().filter(|f| f.kind == FrameKind::Config) {
            match (frame.track, frame.codec) {
                (Track::Video, Codec::H264 | Codec::H265) => {
                    let info = TrackInfo::new(frame.codec, frame.payload.clone())
                        .ok_or_else(|| HlsError::Config("unreadable video config".into()))?;
                    video = Some(TrackState::new(info, 1_000_000 / 30));
                }
                (Track::Audio, Codec::Aac | Codec::Opus) => {
                    let info = TrackInfo::new(frame.codec, frame.payload.clone())
                        .ok_or_else(|| HlsError::Config("unreadable audio config".into()))?;
                    let default = match frame.codec {
                        Codec::Aac => 1024 * 1_000_000 / i64::from(info.timescale),
                        _ => 20_000,
                    };
                    audio = Some(TrackState::new(info, default));
                }
                _ => {}
            }
        }
        if video.is_none() && audio.is_none() {
            return Err(HlsError::NoTracks);
        }
        let (init, ts) = match config.container {
            Container::Fmp4 => (
                Some(fmp4::init_segment(
                    video.as_ref().map(|t| &t.info),
                    audio.as_ref().map(|t| &t.info),
                )?),
                None,
            ),
            Container::Ts => {
                let mut mux = TsMuxer::with_tracks(
                    video.as_ref().map(|t| t.info.codec),
                    audio.as_ref().map(|t| t.info.codec),
                );
                let mut sink = Vec::new();
                for frame in configs.iter().filter(|f| f.kind == FrameKind::Config) {
                    let carried = match frame.track {
                        Track::Video => video.as_ref().is_some_and(|t| t.info.codec == frame.codec),
                        Track::Audio => audio.as_ref().is_some_and(|t| t.info.codec == frame.codec),
                    };
                    if carried {
                        mux.mux(frame, &mut sink)
                            .map_err(|e| HlsError::Config(e.to_string()))?;
                    }
                }
                (None, Some(mux))
            }
        };
        Ok(Segmenter {
            config,
            video,
            audio,
            init,
            ts,
            segments: VecDeque::new(),
            next_msn: 0,
            open: None,
            origin_dts: None,
            fragment_seq: 0,
            ended: false,
            wall_clock: None,
        })
    }

    /// The configuration it cuts by.
    pub fn config(&self) -> &HlsConfig {
        &self.config
    }

    /// The fMP4 init segment (`EXT-X-MAP`); `None` for MPEG-TS.
    pub fn init_segment(&self) -> Option<&Bytes> {
        self.init.as_ref()
    }

    /// The video track's codec and config record, if the stream has one.
    pub fn video_track(&self) -> Option<(Codec, &Bytes)> {
        self.video.as_ref().map(|t| (t.info.codec, &t.info.config))
    }

    /// The audio track's codec and config record, if the stream has one.
    pub fn audio_track(&self) -> Option<(Codec, &Bytes)> {
        self.audio.as_ref().map(|t| (t.info.codec, &t.info.config))
    }

    /// The complete segments kept, oldest first.
    pub fn segments(&self) -> &VecDeque<Segment> {
        &self.segments
    }

    /// A kept complete segment by media sequence number.
    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        let first = self.segments.front()?.msn;
        self.segments
            .get(usize::try_from(msn.checked_sub(first)?).ok()?)
    }

    /// Media sequence number of the first segment listed (`EXT-X-MEDIA-SEQUENCE`).
    pub fn media_sequence(&self) -> u64 {
        self.segments.front().map_or(self.next_msn, |s| s.msn)
    }

    /// Media sequence number of the segment being filled (one past the last complete one).
    pub fn open_msn(&self) -> u64 {
        self.next_msn
    }

    /// The completed parts of the segment being filled.
    pub fn open_parts(&self) -> &[Part] {
        self.open.as_ref().map_or(&[], |o| &o.parts)
    }

    /// A part of a kept segment or of the segment being filled.
    pub fn part(&self, at: PartRef) -> Option<&Part> {
        let index = usize::try_from(at.part).ok()?;
        if at.msn == self.next_msn {
            self.open_parts().get(index)
        } else {
            self.segment(at.msn)?.parts.get(index)
        }
    }

    /// The part being filled (`EXT-X-PRELOAD-HINT`); `None` before the first keyframe and
    /// after the end.
    pub fn next_part(&self) -> Option<PartRef> {
        if self.ended {
            return None;
        }
        self.open.as_ref().map(|o| PartRef {
            msn: self.next_msn,
            part: o.parts.len() as u64,
        })
    }

    /// The longest a segment grows waiting for a keyframe: ten segment targets, at least
    /// [`MAX_SEGMENT_FLOOR_US`].
    pub fn max_segment_us(&self) -> i64 {
        self.config
            .segment_us
            .saturating_mul(10)
            .max(MAX_SEGMENT_FLOOR_US)
    }

    /// Ties the newest lead frame's time to the wall clock (`unix_ms`, read by the caller when
    /// that frame arrived), for `EXT-X-PROGRAM-DATE-TIME`. Call it once, or again to follow
    /// drift; before any frame it does nothing.
    pub fn anchor_wall_clock(&mut self, unix_ms: i64) {
        if let Some(lead) = self.lead() {
            if self.origin_dts.is_some() {
                self.wall_clock = Some((lead.timeline_us, unix_ms));
            }
        }
    }

    /// The wall-clock time (Unix ms) of a point of the lead track's output timeline, once
    /// anchored.
    pub fn wall_clock_ms(&self, timeline_us: i64) -> Option<i64> {
        let (at_us, at_ms) = self.wall_clock?;
        Some(at_ms.saturating_add(timeline_us.saturating_sub(at_us).div_euclid(1000)))
    }

    /// Start of the segment being filled on the lead track's output timeline.
    pub fn open_start_us(&self) -> Option<i64> {
        self.open.as_ref().map(|o| o.start_us)
    }

    /// True once [`Self::finish`] ran: the playlist ends (`EXT-X-ENDLIST`).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Takes one frame. Frames of tracks not carried, frames before the first lead
    /// keyframe and any frame after [`Self::finish`] are ignored, and so is a config frame
    /// equal to its track's; a config frame that changes a carried track's is
    /// [`HlsError::ConfigChanged`]: the init segment and the TS muxer's parameter sets
    /// would be wrong, so the caller starts a new segmenter.
    pub fn push(&mut self, frame: &MediaFrame) -> Result<Progress, HlsError> {
        let mut progress = Progress::default();
        if self.ended {
            return Ok(progress);
        }
        if frame.kind == FrameKind::Config {
            let current = match frame.track {
                Track::Video => self.video.as_ref(),
                Track::Audio => self.audio.as_ref(),
            };
            if let Some(current) = current {
                if current.info.codec != frame.codec || current.info.config != frame.payload {
                    return Err(HlsError::ConfigChanged(frame.track));
                }
            }
            return Ok(progress);
        }
        let lead_is_video = self.video.is_some();
        let is_lead = match frame.track {
            Track::Video => lead_is_video,
            Track::Audio => !lead_is_video,
        };
        let carried = match frame.track {
            Track::Video => self
                .video
                .as_ref()
                .is_some_and(|t| t.info.codec == frame.codec),
            Track::Audio => self
                .audio
                .as_ref()
                .is_some_and(|t| t.info.codec == frame.codec),
        };
        if !carried {
            return Ok(progress);
        }
        let Some(origin) = self.origin_dts else {
            if !is_lead || (lead_is_video && !frame.keyframe) {
                return Ok(progress);
            }
            let Some(track) = self.track_mut(frame.track) else {
                return Ok(progress);
            };
            track.timeline_us = 0;
            track.pending = Some(frame.clone());
            self.origin_dts = Some(frame.dts);
            self.open = Some(OpenSegment {
                start_us: 0,
                parts: Vec::new(),
                part_start_us: 0,
                part_independent: true,
            });
            return Ok(progress);
        };
        let Some(track) = self.track_mut(frame.track) else {
            return Ok(progress);
        };
        if !is_lead {
            if track.pending.is_some() {
                track.complete(Some(frame.dts));
            } else if frame.dts < origin {
                return Ok(progress);
            } else {
                track.timeline_us = frame.dts - origin;
            }
            track.pending = Some(frame.clone());
            return Ok(progress);
        }
        track.complete(Some(frame.dts));
        let at = track.timeline_us;
        let step = track.last_duration_us;
        track.pending = Some(frame.clone());
        let (segment_start, part_start) = match &self.open {
            Some(open) => (open.start_us, open.part_start_us),
            None => return Ok(progress),
        };
        let starts_segment = !lead_is_video || frame.keyframe;
        let independent = frame.keyframe || !lead_is_video;
        if (starts_segment && at - segment_start + SEGMENT_SLACK_US >= self.config.segment_us)
            || at - segment_start >= self.max_segment_us()
        {
            self.close_part(at, independent, &mut progress)?;
            self.close_segment(at, independent, &mut progress);
        } else if at > part_start && at - part_start + step > self.config.part_us + PART_SLACK_US {
            self.close_part(at, independent, &mut progress)?;
        }
        Ok(progress)
    }

    /// Ends the stream: the frames held back are completed with their track's last
    /// duration, the last part and segment are closed and the playlist ends.
    pub fn finish(&mut self) -> Result<Progress, HlsError> {
        let mut progress = Progress::default();
        if self.ended {
            return Ok(progress);
        }
        self.ended = true;
        if self.open.is_none() {
            return Ok(progress);
        }
        for track in [self.video.as_mut(), self.audio.as_mut()]
            .into_iter()
            .flatten()
        {
            track.complete(None);
        }
        let Some(end) = self.lead().map(|t| t.timeline_us) else {
            return Ok(progress);
        };
        let part_start = self.open.as_ref().map_or(end, |o| o.part_start_us);
        if end > part_start {
            self.close_part(end, false, &mut progress)?;
        }
        if !self.open_parts().is_empty() {
            self.close_segment(end, false, &mut progress);
        }
        self.open = None;
        Ok(progress)
    }

    /// The track that decides the cuts: video when there is one.
    fn lead(&self) -> Option<&TrackState> {
        self.video.as_ref().or(self.audio.as_ref())
    }

    fn track_mut(&mut self, track: Track) -> Option<&mut TrackState> {
        match track {
            Track::Video => self.video.as_mut(),
            Track::Audio => self.audio.as_mut(),
        }
    }

    /// Closes the part being filled at `end_us` and opens the next one.
    fn close_part(
        &mut self,
        end_us: i64,
        next_independent: bool,
        progress: &mut Progress,
    ) -> Result<(), HlsError> {
        let video: Vec<Sample> = self
            .video
            .as_mut()
            .map(|t| std::mem::take(&mut t.samples))
            .unwrap_or_default();
        let audio: Vec<Sample> = self
            .audio
            .as_mut()
            .map(|t| std::mem::take(&mut t.samples))
            .unwrap_or_default();
        let bytes = match self.config.container {
            Container::Fmp4 => {
                self.fragment_seq = self.fragment_seq.wrapping_add(1);
                let mut runs = Vec::with_capacity(2);
                if let Some(t) = &self.video {
                    runs.push(TrackRun {
                        track_id: VIDEO_TRACK_ID,
                        timescale: t.info.timescale,
                        samples: &video,
                    });
                }
                if let Some(t) = &self.audio {
                    runs.push(TrackRun {
                        track_id: AUDIO_TRACK_ID,
                        timescale: t.info.timescale,
                        samples: &audio,
                    });
                }
                fmp4::fragment(self.fragment_seq, &runs)?.unwrap_or_default()
            }
            Container::Ts => {
                let first_of_segment = self.open.as_ref().is_some_and(|o| o.parts.is_empty());
                if let (true, Some(mux)) = (first_of_segment, self.ts.as_mut()) {
                    mux.repeat_tables();
                }
                self.ts_part(&video, &audio)?
            }
        };
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        open.parts.push(Part {
            duration_us: end_us - open.part_start_us,
            independent: open.part_independent,
            bytes,
        });
        open.part_start_us = end_us;
        open.part_independent = next_independent;
        progress.parts += 1;
        Ok(())
    }

    /// The samples of one part as MPEG-TS packets, in decode order across the tracks.
    fn ts_part(&mut self, video: &[Sample], audio: &[Sample]) -> Result<Bytes, HlsError> {
        let (Some(mux), video_codec, audio_codec) = (
            self.ts.as_mut(),
            self.video.as_ref().map(|t| t.info.codec),
            self.audio.as_ref().map(|t| t.info.codec),
        ) else {
            return Ok(Bytes::new());
        };
        let mut chunks = Vec::new();
        let (mut v, mut a) = (video.iter().peekable(), audio.iter().peekable());
        loop {
            let take_video = match (v.peek(), a.peek()) {
                (Some(vs), Some(as_)) => vs.dts_us <= as_.dts_us,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let (sample, track, codec) = if take_video {
                (v.next(), Track::Video, video_codec)
            } else {
                (a.next(), Track::Audio, audio_codec)
            };
            let (Some(sample), Some(codec)) = (sample, codec) else {
                break;
            };
            let frame = MediaFrame {
                track,
                codec,
                kind: FrameKind::Media,
                dts: sample.dts_us,
                pts: sample.dts_us + sample.cts_offset_us,
                keyframe: sample.keyframe,
                payload: sample.data.clone(),
            };
            // A frame the muxer refuses (bad NAL framing) is left out of the part alone.
            let _ = mux.mux(&frame, &mut chunks);
        }
        mux.flush(&mut chunks);
        let mut out = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
        for chunk in &chunks {
            out.extend_from_slice(chunk);
        }
        Ok(out.freeze())
    }

    /// Closes the segment being filled at `end_us` (its last part closed) and opens the next,
    /// which starts `independent` or not.
    fn close_segment(&mut self, end_us: i64, independent: bool, progress: &mut Progress) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let mut parts = std::mem::take(&mut open.parts);
        let start_us = open.start_us;
        open.start_us = end_us;
        open.part_start_us = end_us;
        open.part_independent = independent;
        let mut whole = BytesMut::with_capacity(parts.iter().map(|p| p.bytes.len()).sum());
        for part in &parts {
            whole.extend_from_slice(&part.bytes);
        }
        let bytes = whole.freeze();
        let mut at = 0;
        for part in &mut parts {
            let len = part.bytes.len();
            part.bytes = bytes.slice(at..at + len);
            at += len;
        }
        let starts_independent = parts.first().is_some_and(|p| p.independent);
        self.segments.push_back(Segment {
            independent: starts_independent,
            msn: self.next_msn,
            start_us,
            duration_us: end_us - start_us,
            parts,
            bytes,
        });
        self.next_msn += 1;
        while self.segments.len() > self.config.segments_kept.max(1) {
            self.segments.pop_front();
        }
        progress.segments += 1;
    }
}

#[cfg(test)]
mod tests {
    use mp4_atom::{Any, Buf as _, DecodeMaybe, Moof};

    use super::*;
    use crate::protocol::hls::fixtures::{self, config, stream};

    fn cfg(segment_us: i64, part_us: i64, kept: usize, container: Container) -> HlsConfig {
        HlsConfig {
            segment_us,
            part_us,
            segments_kept: kept,
            container,
        }
    }

    fn run(config_: HlsConfig, frames: &[MediaFrame], tracks: &[Track]) -> Segmenter {
        let configs: Vec<MediaFrame> = tracks.iter().map(|&t| config(t)).collect();
        let mut seg = Segmenter::new(config_, &configs).expect("segmenter");
        for f in frames {
            seg.push(f).expect("push");
        }
        seg
    }

    const AV: &[Track] = &[Track::Video, Track::Audio];

    #[test]
    fn segments_start_on_keyframes_and_last_at_least_the_target() {
        for container in [Container::Fmp4, Container::Ts] {
            // GOP 1.5 s, target 2 s: each segment is two GOPs, 3 s.
            let frames = stream(20.0, 30, 45, true, true);
            let mut seg = run(cfg(2_000_000, 200_000, 100, container), &frames, AV);
            seg.finish().expect("finish");
            let segments = seg.segments();
            assert_eq!(segments.len(), 7, "{container:?}");
            for (i, s) in segments.iter().enumerate() {
                assert_eq!(s.msn, i as u64);
                // Every segment starts on a keyframe: at a multiple of 1.5 s.
                assert_eq!(s.start_us % 1_500_000, 0, "segment {i} at {}", s.start_us);
                if i + 1 < segments.len() {
                    assert_eq!(s.duration_us, 3_000_000, "segment {i}");
                }
                assert!(s.parts[0].independent);
                let total: i64 = s.parts.iter().map(|p| p.duration_us).sum();
                assert_eq!(total, s.duration_us);
                for p in &s.parts {
                    assert!(p.duration_us <= 200_000 + PART_SLACK_US, "{p:?}");
                    assert!(p.duration_us > 0);
                }
                // A part starting on the keyframe in the middle of the segment is independent.
                let mut at = s.start_us;
                for p in &s.parts {
                    assert_eq!(p.independent, at % 1_500_000 == 0, "part at {at}");
                    at += p.duration_us;
                }
            }
        }
    }

    #[test]
    fn parts_are_slices_of_their_segment() {
        let frames = stream(6.0, 25, 25, true, true);
        let seg = run(cfg(1_000_000, 300_000, 10, Container::Fmp4), &frames, AV);
        for s in seg.segments() {
            let joined: Vec<u8> = s.parts.iter().flat_map(|p| p.bytes.to_vec()).collect();
            assert_eq!(joined, s.bytes.to_vec());
            // The same memory, not a copy.
            let base = s.bytes.as_ptr() as usize;
            let first = s.parts[0].bytes.as_ptr() as usize;
            assert_eq!(first, base);
        }
    }

    #[test]
    fn keeps_the_last_n_segments_and_numbers_them() {
        let frames = stream(30.0, 30, 30, true, true);
        let seg = run(cfg(1_000_000, 250_000, 4, Container::Fmp4), &frames, AV);
        assert_eq!(seg.segments().len(), 4);
        let open = seg.open_msn();
        assert!(open >= 28, "open msn {open}");
        assert_eq!(seg.media_sequence(), open - 4);
        let msns: Vec<u64> = seg.segments().iter().map(|s| s.msn).collect();
        assert_eq!(msns, (open - 4..open).collect::<Vec<_>>());
        assert!(seg.segment(open - 5).is_none());
        assert!(seg.segment(open - 4).is_some());
        assert!(seg.segment(open).is_none());
        let next = seg.next_part().expect("next part");
        assert_eq!(next.msn, open);
        assert_eq!(next.part, seg.open_parts().len() as u64);
        assert!(seg.part(next).is_none());
        if next.part > 0 {
            assert!(seg.part(PartRef { msn: open, part: 0 }).is_some());
        }
        assert!(seg
            .part(PartRef {
                msn: open - 1,
                part: 0
            })
            .is_some());
    }

    #[test]
    fn audio_only_and_video_only_streams() {
        let audio = stream(8.0, 30, 30, false, true);
        let mut seg = run(
            cfg(2_000_000, 200_000, 10, Container::Fmp4),
            &audio,
            &[Track::Audio],
        );
        seg.finish().expect("finish");
        assert_eq!(seg.segments().len(), 4);
        let all: Vec<&Segment> = seg.segments().iter().collect();
        let (last, full) = all.split_last().expect("segments");
        assert!(last.duration_us > 0);
        for s in full {
            assert!(
                s.duration_us >= 2_000_000 - SEGMENT_SLACK_US,
                "{}",
                s.duration_us
            );
            assert!(s
                .parts
                .iter()
                .all(|p| p.independent && p.duration_us <= 200_004));
        }
        assert!(seg.init_segment().is_some());
        assert!(seg.video_track().is_none());

        let video = stream(8.0, 30, 60, true, false);
        let seg = run(
            cfg(2_000_000, 200_000, 10, Container::Ts),
            &video,
            &[Track::Video],
        );
        assert_eq!(seg.segments().len(), 3);
        assert!(seg.init_segment().is_none());
        assert!(seg.audio_track().is_none());
        // MPEG-TS bytes: whole packets, each starting with the sync byte.
        for s in seg.segments() {
            assert_eq!(s.bytes.len() % 188, 0);
            assert!(s.bytes.chunks(188).all(|p| p[0] == 0x47));
        }
        // Every TS segment starts with PAT (PID 0) and PMT, audio-only ones too.
        let audio = stream(8.0, 30, 30, false, true);
        let seg = run(
            cfg(2_000_000, 200_000, 10, Container::Ts),
            &audio,
            &[Track::Audio],
        );
        assert_eq!(seg.segments().len(), 3);
        for s in seg.segments() {
            let pid = |p: &[u8]| (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
            assert_eq!(
                pid(&s.bytes[..188]),
                0,
                "segment {} starts with the PAT",
                s.msn
            );
            assert_eq!(pid(&s.bytes[188..376]), crate::protocol::ts::PMT_PID);
        }
    }

    #[test]
    fn frames_before_the_first_keyframe_are_dropped() {
        let mut frames = vec![
            fixtures::audio(0, 0),
            fixtures::video(0, 0, 0, false),
            fixtures::video(1, 33_333, 33_333, false),
        ];
        for f in stream(4.0, 30, 30, true, true) {
            let mut f = f;
            f.dts += 66_666;
            f.pts += 66_666;
            frames.push(f);
        }
        let seg = run(cfg(1_000_000, 200_000, 10, Container::Fmp4), &frames, AV);
        let first = &seg.segments()[0];
        assert_eq!(first.start_us, 0);
        let moof = first_moof(&first.parts[0].bytes);
        // Video then audio, both starting at the keyframe's time (the output origin).
        assert_eq!(moof.traf[0].tfhd.track_id, fmp4::VIDEO_TRACK_ID);
        assert_eq!(
            moof.traf[0].tfdt.as_ref().map(|t| t.base_media_decode_time),
            Some(0)
        );
    }

    #[test]
    fn a_timestamp_reset_keeps_the_output_timeline_going() {
        let mut frames = stream(3.0, 30, 30, true, true);
        frames.extend(stream(3.0, 30, 30, true, true));
        let seg = run(cfg(1_000_000, 200_000, 10, Container::Fmp4), &frames, AV);
        let mut end = 0;
        for s in seg.segments() {
            assert_eq!(s.start_us, end, "segments are contiguous");
            end = s.start_us + s.duration_us;
        }
        assert_eq!(
            seg.segments().len(),
            5,
            "the keyframe after the reset starts a segment"
        );
    }

    #[test]
    fn finish_ends_the_stream_with_every_frame() {
        let frames = stream(2.5, 30, 30, true, true);
        let mut seg = run(cfg(1_000_000, 200_000, 10, Container::Fmp4), &frames, AV);
        assert!(seg.next_part().is_some());
        let progress = seg.finish().expect("finish");
        assert!(progress.segments == 1 && progress.parts >= 1);
        assert!(seg.ended());
        assert!(seg.next_part().is_none());
        let video_samples: usize = seg
            .segments()
            .iter()
            .flat_map(|s| &s.parts)
            .map(|p| first_moof(&p.bytes).traf[0].trun[0].entries.len())
            .sum();
        assert_eq!(video_samples, 75);
        // Nothing after the end.
        let more = seg.push(&fixtures::video(99, 9_000_000, 9_000_000, true));
        assert_eq!(more, Ok(Progress::default()));
    }

    fn first_moof(bytes: &Bytes) -> Moof {
        let mut buf = &bytes[..];
        match Any::decode_maybe(&mut buf) {
            Ok(Some(Any::Moof(moof))) => moof,
            other => panic!("not a moof: {other:?}"),
        }
    }

    #[test]
    fn fragments_point_into_their_mdat() {
        let frames = stream(2.0, 30, 30, true, true);
        let seg = run(cfg(1_000_000, 200_000, 10, Container::Fmp4), &frames, AV);
        let part = &seg.segments()[0].parts[1];
        let moof = first_moof(&part.bytes);
        let mut buf = &part.bytes[..];
        let moof_len = {
            let before = buf.remaining();
            let _ = Any::decode_maybe(&mut buf);
            before - buf.remaining()
        };
        assert_eq!(&part.bytes[moof_len + 4..moof_len + 8], b"mdat");
        assert_eq!(moof.traf.len(), 2);
        let video = &moof.traf[0].trun[0];
        let offset = video.data_offset.expect("data offset") as usize;
        assert_eq!(offset, moof_len + 8);
        // The first video sample is the frame tagged with its index: 6 frames per 200 ms part.
        let size = video.entries[0].size.expect("size") as usize;
        let sample = &part.bytes[offset..offset + size];
        assert_eq!(&sample[4..], &[0x41, 0, 0, 0, 6]);
        // Durations in 90 kHz ticks, composition offsets of the shifted frames.
        assert!(video.entries.iter().all(|e| e.duration == Some(3000)));
        assert!(video.entries.iter().any(|e| e.cts == Some(3000)));
        let audio = &moof.traf[1];
        assert_eq!(audio.tfhd.track_id, fmp4::AUDIO_TRACK_ID);
        assert!(audio.trun[0]
            .entries
            .iter()
            .all(|e| e.duration == Some(1024)));
    }

    #[test]
    fn init_segment_describes_the_tracks() {
        let seg = run(cfg(1_000_000, 200_000, 10, Container::Fmp4), &[], AV);
        let init = seg.init_segment().expect("init");
        let mut buf = &init[..];
        let mut kinds = Vec::new();
        while let Ok(Some(atom)) = Any::decode_maybe(&mut buf) {
            if let Any::Moov(moov) = &atom {
                assert_eq!(moov.trak.len(), 2);
                assert_eq!(moov.mvex.as_ref().map(|m| m.trex.len()), Some(2));
                let video = &moov.trak[0].mdia;
                assert_eq!(video.mdhd.timescale, 90_000);
                assert!(matches!(
                    video.minf.stbl.stsd.codecs[0],
                    mp4_atom::Codec::Avc1(_)
                ));
                let audio = &moov.trak[1].mdia;
                assert_eq!(audio.mdhd.timescale, 48_000);
                assert!(matches!(
                    audio.minf.stbl.stsd.codecs[0],
                    mp4_atom::Codec::Mp4a(_)
                ));
            }
            kinds.push(format!("{:?}", std::mem::discriminant(&atom)));
        }
        assert_eq!(kinds.len(), 2, "ftyp and moov");
        assert!(buf.is_empty());
    }

    #[test]
    fn unsupported_tracks_are_refused() {
        let av1 = MediaFrame {
            codec: Codec::Av1,
            ..config(Track::Video)
        };
        assert_eq!(
            Segmenter::new(HlsConfig::default(), &[av1]).err(),
            Some(HlsError::NoTracks)
        );
        let bad = MediaFrame {
            payload: Bytes::from_static(&[0]),
            ..config(Track::Audio)
        };
        assert!(Segmenter::new(HlsConfig::default(), &[bad]).is_err());
    }

    #[test]
    fn a_stream_without_keyframes_is_still_cut() {
        // One keyframe, then none for 40 s: segments are cut at ten targets (10 s floor),
        // not independent, and at most `kept` are held.
        let mut frames = stream(40.0, 30, usize::MAX, true, true);
        frames[0].keyframe = true;
        let mut seg = run(cfg(500_000, 250_000, 2, Container::Fmp4), &frames, AV);
        assert_eq!(seg.max_segment_us(), MAX_SEGMENT_FLOOR_US);
        assert_eq!(seg.open_msn(), 3);
        let segments: Vec<&Segment> = seg.segments().iter().collect();
        assert_eq!(segments.len(), 2);
        assert!(segments
            .iter()
            .all(|s| s.duration_us == 10_000_000 && !s.independent));
        assert!(!segments[0].parts[0].independent);
        seg.finish().expect("finish");
        let text = super::super::playlist::media_playlist(
            &seg,
            &super::super::playlist::MediaOptions {
                suffix: "",
                low_latency: true,
                skip: false,
                program_date_time: false,
            },
        );
        assert!(!text.contains("#EXT-X-INDEPENDENT-SEGMENTS"), "{text}");
        super::super::validate::check_media(&text).expect("valid");
    }

    #[test]
    fn a_changed_codec_config_is_an_error() {
        let frames = stream(2.0, 30, 30, true, true);
        let mut seg = run(cfg(1_000_000, 250_000, 5, Container::Ts), &frames, AV);
        // The same config again (publishers repeat it) is fine.
        assert_eq!(seg.push(&config(Track::Video)), Ok(Progress::default()));
        let changed = MediaFrame {
            payload: Bytes::from_static(&[0x12, 0x10]),
            ..config(Track::Audio)
        };
        assert_eq!(
            seg.push(&changed),
            Err(HlsError::ConfigChanged(Track::Audio))
        );
    }
}

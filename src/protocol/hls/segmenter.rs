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

    /// True once [`Self::finish`] ran: the playlist ends (`EXT-X-ENDLIST`).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Takes one frame. Config frames, frames of tracks not carried, frames before the
    /// first lead keyframe and any frame after [`Self::finish`] are ignored.
    pub fn push(&mut self, frame: &MediaFrame) -> Result<Progress, HlsError> {
        let mut progress = Progress::default();
        if self.ended || frame.kind != FrameKind::Media {
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
        if starts_segment && at - segment_start >= self.config.segment_us {
            self.close_part(at, frame.keyframe || !lead_is_video, &mut progress)?;
            self.close_segment(at, &mut progress);
        } else if at > part_start && at - part_start + step > self.config.part_us + PART_SLACK_US {
            self.close_part(at, frame.keyframe || !lead_is_video, &mut progress)?;
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
            self.close_segment(end, &mut progress);
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
            Container::Ts => self.ts_part(&video, &audio)?,
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

    /// Closes the segment being filled at `end_us` (its last part closed) and opens the next.
    fn close_segment(&mut self, end_us: i64, progress: &mut Progress) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let mut parts = std::mem::take(&mut open.parts);
        let start_us = open.start_us;
        open.start_us = end_us;
        open.part_start_us = end_us;
        open.part_independent = true;
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
        self.segments.push_back(Segment {
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

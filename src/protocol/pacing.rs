//! Pacing a joining player's start: the cached GOP a player gets at join was live up to a few
//! seconds ago, and sent at once it reaches the player as a burst of old frames. Receivers that
//! derive their clock from arrival times (GStreamer's RTP jitter buffer in its default slave
//! mode) cannot map such a burst: more than a second of media arriving at once makes them
//! reset their timeline, so that tens of frames share one timestamp and audio and video are
//! offset until the next sender report. [`JoinPacer`] releases frames no faster than their
//! decode times advance, times a catch-up factor: the first keyframe goes at once, the rest as
//! a live source would have sent it, a little faster, until the player has caught up with live
//! frames and the pacer lets every frame through as it comes. Pure: the caller gives it the
//! time and sends what it releases.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use streamgate_actors::media::{FrameKind, MediaFrame};

/// A decode-time step larger than this between two queued frames is a discontinuity (a new
/// publisher timeline), not media to wait for: the pacer starts a new timeline there.
const MAX_STEP_US: i64 = 1_000_000;

/// Frames due within this of now go together, so a timer is not armed for every frame.
pub const GRANULARITY: Duration = Duration::from_millis(10);

/// Holds a joining player's frames until they are due. See the module documentation.
#[derive(Debug)]
pub struct JoinPacer {
    /// Wall time and decode time of the timeline's origin: a frame of decode time `t` is due at
    /// `wall + (t - dts) / speed`.
    origin: Option<(Instant, i64)>,
    /// How much faster than real time the held frames go (1.0 = exactly as live).
    speed: f64,
    queue: VecDeque<MediaFrame>,
    bytes: usize,
    /// Held bytes past which the pacer gives up and lets everything through at once.
    max_bytes: usize,
    /// The decode time of the last media frame offered (to see discontinuities).
    last_dts: Option<i64>,
    done: bool,
    /// The grid whose steps the timelines of the pacers that share it are apart
    /// ([`Self::in_phase`]): its origin and step.
    phase: Option<(Instant, Duration)>,
    /// When the front frame is due, once a release found it not yet due (until it leaves the
    /// queue): a frame offered behind it is held without working out any due time.
    front_due: Option<Instant>,
}

impl JoinPacer {
    /// A pacer going `speed` times real time (at least 1), holding at most `max_bytes` of
    /// payload.
    pub fn new(speed: f64, max_bytes: usize) -> JoinPacer {
        JoinPacer {
            origin: None,
            speed: speed.max(1.0),
            queue: VecDeque::new(),
            bytes: 0,
            max_bytes,
            last_dts: None,
            done: false,
            phase: None,
            front_due: None,
        }
    }

    /// The pacer with its timeline in phase with those of every pacer given the same `epoch`
    /// and `step`: its first keyframe still goes at once, but the frames behind it are due as
    /// if it had gone up to `step` earlier (so up to `step` of media goes with it), which puts
    /// every frame's due time on a whole number of steps from the due times of the same frame
    /// in the other pacers. Players joining at any moment thus fall into at most one group per
    /// step of the GOP's age, and the players of a group are sent each frame together: the
    /// frame's packets and payload are read once per group while in the cache, not once per
    /// player at a moment of its own.
    pub fn in_phase(mut self, epoch: Instant, step: Duration) -> JoinPacer {
        self.phase = Some((epoch, step));
        self
    }

    /// The wall time a timeline whose frame of decode time `dts` is due `now` starts at: `now`,
    /// or up to a step earlier, in phase ([`Self::in_phase`]).
    fn start_wall(&self, now: Instant, dts: i64) -> Instant {
        let Some((epoch, step)) = self.phase else {
            return now;
        };
        let step = step.as_micros().max(1) as i64;
        let since = now.saturating_duration_since(epoch).as_micros() as i64;
        let shift = (since - dts).rem_euclid(step);
        now.checked_sub(Duration::from_micros(shift as u64))
            .unwrap_or(now)
    }

    /// Whether the player has caught up: frames go straight through from now on.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Payload bytes held.
    pub fn held_bytes(&self) -> usize {
        self.bytes
    }

    /// Takes the frames a joining player gets first (its GOP from the cache), and appends to
    /// `out` those due at `now`: the first keyframe and whatever precedes it.
    pub fn start(&mut self, frames: Vec<MediaFrame>, now: Instant, out: &mut Vec<MediaFrame>) {
        for frame in frames {
            if frame.kind == FrameKind::Media {
                self.last_dts = Some(frame.dts);
            }
            self.bytes += frame.payload.len();
            self.queue.push_back(frame);
        }
        if self.bytes > self.max_bytes {
            self.finish(out);
            return;
        }
        self.release(now, out);
    }

    /// Takes `frame` (after every frame offered before it) and appends to `out` the frames due
    /// at `now`, in order.
    pub fn push(&mut self, frame: MediaFrame, now: Instant, out: &mut Vec<MediaFrame>) {
        if self.done {
            out.push(frame);
            return;
        }
        let jump = frame.kind == FrameKind::Media
            && self
                .last_dts
                .is_some_and(|last| (frame.dts - last).abs() > MAX_STEP_US);
        if frame.kind == FrameKind::Media {
            self.last_dts = Some(frame.dts);
        }
        self.bytes += frame.payload.len();
        self.queue.push_back(frame);
        if jump || self.bytes > self.max_bytes {
            // A new publisher timeline, or too much held (the pacer must not become a buffer
            // of its own): everything goes now.
            self.finish(out);
            return;
        }
        if self.front_due.is_some_and(|due| due > now + GRANULARITY) {
            return;
        }
        self.release(now, out);
    }

    /// Appends to `out` the frames due at `now` (within [`GRANULARITY`]), in order; pacing
    /// ends when the queue runs dry: the player has reached the frames that arrive live.
    pub fn release(&mut self, now: Instant, out: &mut Vec<MediaFrame>) {
        if self.done {
            return;
        }
        while let Some(front) = self.queue.front() {
            if front.kind == FrameKind::Media {
                let (wall, origin) = match self.origin {
                    Some(origin) => origin,
                    None => {
                        let origin = (self.start_wall(now, front.dts), front.dts);
                        self.origin = Some(origin);
                        origin
                    }
                };
                let due = self.due(wall, origin, front.dts);
                if due > now + GRANULARITY {
                    self.front_due = Some(due);
                    return;
                }
            }
            self.front_due = None;
            if let Some(frame) = self.queue.pop_front() {
                self.bytes -= frame.payload.len();
                out.push(frame);
            }
        }
        // Held frames were all sent, and the next one will be due as it arrives.
        self.done = self.origin.is_some();
    }

    /// When the next held frame is due, if any is held.
    pub fn next_due(&self) -> Option<Instant> {
        let front = self.queue.front()?;
        if let Some(due) = self.front_due {
            return Some(due);
        }
        Some(match self.origin {
            Some((wall, origin)) => self.due(wall, origin, front.dts),
            None => Instant::now(),
        })
    }

    /// Lets everything held through and stops pacing.
    pub fn finish(&mut self, out: &mut Vec<MediaFrame>) {
        out.extend(self.queue.drain(..));
        self.front_due = None;
        self.bytes = 0;
        self.done = true;
    }

    fn due(&self, wall: Instant, origin: i64, dts: i64) -> Instant {
        let ahead = (dts - origin).max(0) as f64 / self.speed;
        wall + Duration::from_micros(ahead as u64)
    }
}

/// The first instant at or after `at` on the grid of `tick`s from `epoch` (`at` itself when
/// it is before `epoch`). Timers of many players put on one grid fire together: one wake-up
/// of their thread per tick instead of one per player.
pub fn on_grid(at: Instant, epoch: Instant, tick: Duration) -> Instant {
    let Some(since) = at.checked_duration_since(epoch) else {
        return at;
    };
    let tick_ns = tick.as_nanos().max(1);
    let ticks = since.as_nanos().div_ceil(tick_ns);
    epoch + Duration::from_nanos((ticks * tick_ns) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use streamgate_actors::media::{Codec, Track};

    fn frame(track: Track, dts_ms: i64, keyframe: bool) -> MediaFrame {
        MediaFrame {
            track,
            codec: if track == Track::Video {
                Codec::H264
            } else {
                Codec::Aac
            },
            kind: FrameKind::Media,
            dts: dts_ms * 1000,
            pts: dts_ms * 1000,
            keyframe,
            payload: Bytes::from_static(&[0; 100]),
        }
    }

    /// 2 s of 25 fps video from a keyframe at `from_ms`, with audio every 23 ms between.
    fn gop(from_ms: i64) -> Vec<MediaFrame> {
        let mut frames = Vec::new();
        for i in 0..50 {
            let t = from_ms + i * 40;
            frames.push(frame(Track::Video, t, i == 0));
            if i % 2 == 0 {
                frames.push(frame(Track::Audio, t + 3, true));
            }
        }
        frames
    }

    fn dts_ms(frames: &[MediaFrame]) -> Vec<i64> {
        frames.iter().map(|f| f.dts / 1000).collect()
    }

    #[test]
    fn instants_are_put_on_the_grid_at_or_after_them() {
        let epoch = Instant::now();
        let tick = Duration::from_millis(100);
        let ms = |n: u64| epoch + Duration::from_millis(n);
        assert_eq!(on_grid(ms(0), epoch, tick), ms(0));
        assert_eq!(on_grid(ms(1), epoch, tick), ms(100));
        assert_eq!(on_grid(ms(100), epoch, tick), ms(100));
        assert_eq!(on_grid(ms(250), epoch, tick), ms(300));
        // Two players' timers 40 ms apart fire together.
        assert_eq!(
            on_grid(ms(1210), epoch, tick),
            on_grid(ms(1250), epoch, tick)
        );
    }

    #[test]
    fn the_first_keyframe_goes_at_once_and_the_rest_as_live() {
        let t0 = Instant::now();
        let mut pacer = JoinPacer::new(1.0, 1 << 20);
        let mut out = Vec::new();
        pacer.start(gop(10_000), t0, &mut out);
        // The keyframe, and the audio frame 3 ms after it (within the granularity).
        assert_eq!(dts_ms(&out), vec![10_000, 10_003]);
        out.clear();
        pacer.release(t0 + Duration::from_millis(400), &mut out);
        assert_eq!(out.first().map(|f| f.dts / 1000), Some(10_040));
        assert!(
            out.iter().all(|f| f.dts / 1000 <= 10_410),
            "{:?}",
            dts_ms(&out)
        );
        assert_eq!(out.last().map(|f| f.dts / 1000), Some(10_403));
        assert_eq!(
            pacer.next_due(),
            Some(t0 + Duration::from_millis(440)),
            "the next frame is due 440 ms in"
        );
        // A live frame arriving now waits behind the cached ones, as a live source's would.
        out.clear();
        pacer.push(
            frame(Track::Video, 12_000, false),
            t0 + Duration::from_millis(500),
            &mut out,
        );
        assert!(out.iter().all(|f| f.dts / 1000 <= 10_510));
        assert!(!pacer.is_done());
    }

    #[test]
    fn pacers_in_phase_send_each_frame_a_whole_number_of_steps_apart() {
        let epoch = Instant::now();
        let step = Duration::from_millis(200);
        let ms = |n: u64| epoch + Duration::from_millis(n);
        // Three players of one GOP joining at moments of their own, and one of another GOP.
        let joins = [
            (1_000, 10_000),
            (1_130, 10_000),
            (1_390, 10_000),
            (1_075, 20_000),
        ];
        let mut due = Vec::new();
        for (joined, keyframe) in joins {
            let mut pacer = JoinPacer::new(1.0, 1 << 20).in_phase(epoch, step);
            let mut out = Vec::new();
            pacer.start(gop(keyframe), ms(joined), &mut out);
            // The keyframe goes at once, with at most a step of media behind it.
            assert_eq!(out.first().map(|f| f.dts / 1000), Some(keyframe));
            assert!(out.iter().all(|f| f.dts / 1000 < keyframe + 200 + 10));
            let next = pacer.next_due().expect("frames held");
            let next_dts = pacer.queue.front().expect("held").dts / 1000;
            assert!(
                next >= ms(joined) - Duration::from_millis(10),
                "not due before it joined"
            );
            // When the frame of decode time 0 would be due, in µs from the epoch.
            let since = next.duration_since(epoch).as_micros() as i64;
            due.push(since - next_dts * 1000);
        }
        for d in &due {
            assert_eq!((d - due[0]).rem_euclid(200_000), 0, "{due:?}");
        }
        // Without a phase a pacer's timeline starts when it joins.
        let mut pacer = JoinPacer::new(1.0, 1 << 20);
        let mut out = Vec::new();
        pacer.start(gop(10_000), ms(1_130), &mut out);
        assert_eq!(dts_ms(&out), vec![10_000, 10_003]);
        assert_eq!(pacer.next_due(), Some(ms(1_170)));
    }

    #[test]
    fn faster_than_live_it_catches_up_and_then_lets_frames_through() {
        let t0 = Instant::now();
        let mut pacer = JoinPacer::new(2.0, 1 << 20);
        let mut out = Vec::new();
        pacer.start(gop(0), t0, &mut out);
        // Live frames keep coming every 40 ms from 2000 ms on, arriving as they happen.
        let mut sent = out.len();
        for i in 0..100 {
            let at = t0 + Duration::from_millis(i * 40);
            out.clear();
            pacer.push(
                frame(Track::Video, 2_000 + i as i64 * 40, false),
                at,
                &mut out,
            );
            sent += out.len();
            if pacer.is_done() {
                // At twice real time the 2 s the player was behind take 2 s to make up.
                assert!(
                    (1_900..=2_200).contains(&(i * 40)),
                    "caught up at {} ms",
                    i * 40
                );
                break;
            }
        }
        assert!(pacer.is_done());
        assert_eq!(pacer.held_bytes(), 0);
        out.clear();
        let now = t0 + Duration::from_secs(10);
        pacer.push(frame(Track::Video, 9_000, false), now, &mut out);
        assert_eq!(out.len(), 1, "straight through once caught up");
        assert!(sent > 75);
    }

    #[test]
    fn a_timeline_jump_or_too_many_bytes_ends_pacing() {
        let t0 = Instant::now();
        let mut pacer = JoinPacer::new(1.0, 1 << 20);
        let mut out = Vec::new();
        pacer.start(gop(0), t0, &mut out);
        out.clear();
        pacer.push(frame(Track::Video, 60_000, true), t0, &mut out);
        assert!(pacer.is_done());
        assert_eq!(out.len(), 75 - 2 + 1, "everything held went out, in order");
        assert!(out.windows(2).all(|p| p[0].dts <= p[1].dts));

        let mut small = JoinPacer::new(1.0, 1_000);
        out.clear();
        small.start(gop(0), t0, &mut out);
        assert!(small.is_done());
        assert_eq!(out.len(), 75);
    }

    #[test]
    fn configs_go_with_the_media_around_them() {
        let t0 = Instant::now();
        let mut pacer = JoinPacer::new(1.0, 1 << 20);
        let mut config = frame(Track::Video, 0, false);
        config.kind = FrameKind::Config;
        let mut frames = vec![config.clone(), frame(Track::Video, 0, true)];
        frames.push(frame(Track::Video, 1_000, false));
        config.dts = 1_500_000;
        frames.push(config);
        frames.push(frame(Track::Video, 1_500, true));
        let mut out = Vec::new();
        pacer.start(frames, t0, &mut out);
        assert_eq!(out.len(), 2, "the config before the keyframe goes with it");
        out.clear();
        pacer.release(t0 + Duration::from_millis(1_000), &mut out);
        assert_eq!(
            out.len(),
            2,
            "a config goes as soon as the frame before it has gone"
        );
        assert_eq!(out[1].kind, FrameKind::Config);
    }
}

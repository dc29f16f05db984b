//! A playing RTSP session's media path, [`Feed`]: its packetizers ([`RtpPlay`]), where each
//! track's RTP goes, and the pacer of its start. The session and its member of the arbiter's
//! fan-out group share it: the group hands live frames to the member ([`RtspFrames`]), the
//! session sends the snapshot at PLAY, what the pacer's timer releases, sender reports (from
//! the packetizers' counts) and what is held at the end of the stream.

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use streamgate_actors::media::MediaFrame;

use super::transport::Link;
use super::INTERLEAVED_HEAD;
use crate::protocol::pacing::JoinPacer;
use crate::protocol::prefixed;
use crate::protocol::rtsp::rtp::RtpHeader;
use crate::protocol::rtsp::session::{PacketRun, RtpPlay};
use crate::session::arbiter::cached_encoding;
use crate::session::fanout::Encode;
use crate::session::output::tcp::{Packets, Part, Writer};
use crate::session::output::udp::UdpOut;
use crate::session::output::SendError;

/// Where a played track's RTP goes: the sending half of its [`Link`].
pub(super) enum Out {
    /// `$` frames on this channel of the RTSP connection.
    Interleaved(u8),
    /// Datagrams to the client's RTP port.
    Udp(UdpOut),
}

impl Out {
    /// The RTP half of `link`.
    pub(super) fn of(link: &Link) -> Out {
        match link {
            Link::Interleaved { rtp, .. } => Out::Interleaved(*rtp),
            Link::Udp { rtp, .. } => Out::Udp(rtp.clone()),
        }
    }
}

/// See the module documentation.
pub(super) struct Feed {
    /// The tracks' packetizers.
    pub play: RtpPlay,
    /// Where each track set up sends its RTP (from the session's links at PLAY).
    pub outs: Vec<Option<Out>>,
    /// Paces the cached GOP and the frames behind it until the player has caught up.
    pub pacer: JoinPacer,
    /// The player's output was found full outside its member (a UDP socket, or media sent by
    /// the session): the member drops to the next keyframe.
    overflowed: bool,
    /// Interleaved media not yet queued on the writer: a part per track of a frame.
    media: Vec<Part>,
    /// The tracks' packets of the frame being sent (kept for its capacity).
    runs: Vec<PacketRun>,
    /// The frames the pacer released (kept for its capacity).
    due: Vec<MediaFrame>,
}

/// A [`Feed`] shared by its session and its fan-out member.
pub(super) type SharedFeed = Rc<RefCell<Feed>>;

impl Feed {
    /// The feed of `play`'s tracks (sent nowhere until [`Self::outs`] is set), paced by `pacer`.
    pub(super) fn new(play: RtpPlay, pacer: JoinPacer) -> Feed {
        Feed {
            play,
            outs: Vec::new(),
            pacer,
            overflowed: false,
            media: Vec::new(),
            runs: Vec::new(),
            due: Vec::new(),
        }
    }

    /// Starts the pacer with the snapshot's GOP and sends what is due now.
    pub(super) fn start(&mut self, gop: Vec<MediaFrame>, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        self.pacer.start(gop, now, &mut due);
        self.send_all(due);
    }

    /// A live frame: sent, or held by the pacer while it paces (sending what is due).
    pub(super) fn live(&mut self, frame: &MediaFrame) {
        if self.pacer.is_done() {
            return self.send_frame(frame);
        }
        let mut due = std::mem::take(&mut self.due);
        self.pacer.push(frame.clone(), Instant::now(), &mut due);
        self.send_all(due);
    }

    /// Sends what the pacer releases at `now`.
    pub(super) fn release(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        self.pacer.release(now, &mut due);
        self.send_all(due);
    }

    /// Sends everything the pacer holds and stops pacing.
    pub(super) fn finish(&mut self) {
        let mut rest = std::mem::take(&mut self.due);
        self.pacer.finish(&mut rest);
        self.send_all(rest);
    }

    /// Sends `frames` (the pacer's), and keeps the vector for the next ones.
    fn send_all(&mut self, mut frames: Vec<MediaFrame>) {
        for frame in frames.drain(..) {
            self.send_frame(&frame);
        }
        self.due = frames;
    }

    /// Packetizes one frame for every track of its kind that is set up: packetized by the
    /// first player of this arbiter with the same track form, the others writing only their
    /// headers ([`RtpPlay::packetize_runs`]). The players that number a track's packets alike
    /// then share what they send ([`numbered_form`]): interleaved, the frame's `$`-framed
    /// packets on their channel, one buffer queued as RTMP's frames are (one slice per frame,
    /// sent at [`Self::flush`]); over UDP, the datagrams (the record's own packets when they
    /// are numbered as this player numbers, with no copy), sent now, the packets of one track
    /// together ([`UdpOut::send_all`]).
    fn send_frame(&mut self, frame: &MediaFrame) {
        let mut runs = std::mem::take(&mut self.runs);
        self.play
            .packetize_runs(frame, &mut runs, &mut |form, make| {
                cached_encoding(frame, form, |out| make(out))
            });
        for run in runs.drain(..) {
            let items = || prefixed::items(&run.record);
            let Some(first) = items().next().and_then(|item| run.header(&item)) else {
                continue;
            };
            // The player's header of each packet (the record's own when it is numbered so),
            // written out only where a buffer is made.
            let header = |item: &Range<usize>| run.header(item).unwrap_or_default();
            let payload = |item: &Range<usize>| {
                run.record
                    .get(item.start + RtpHeader::LEN..item.end)
                    .unwrap_or(&[])
            };
            match self.outs.get(run.index).and_then(Option::as_ref) {
                Some(Out::Interleaved(channel)) => {
                    let form = numbered_form(run.form, Some(*channel), &first);
                    let framed = cached_encoding(frame, form, |buf| {
                        buf.reserve(run.record.len() + 2 * items().count());
                        for item in items() {
                            buf.put_slice(&[b'$', *channel]);
                            // An item is at most u16::MAX bytes: an interleaved frame's length.
                            buf.put_u16(item.len() as u16);
                            buf.put_slice(&header(&item));
                            buf.put_slice(payload(&item));
                        }
                    });
                    // Shared under a hash of the first header: the same header in both (after
                    // the `$` framing's four bytes).
                    if framed.get(INTERLEAVED_HEAD - RtpHeader::LEN..INTERLEAVED_HEAD)
                        == Some(&first[..])
                    {
                        self.media.push(framed.into());
                        continue;
                    }
                    let mut heads = Vec::with_capacity(items().count() * INTERLEAVED_HEAD);
                    for item in items() {
                        let len = (item.len() as u16).to_be_bytes();
                        heads.extend_from_slice(&[b'$', *channel, len[0], len[1]]);
                        heads.extend_from_slice(&header(&item));
                    }
                    let packets = Packets::new(
                        heads,
                        INTERLEAVED_HEAD as u8,
                        run.record.clone(),
                        RtpHeader::LEN as u8,
                    );
                    self.media.push(packets.into());
                }
                Some(Out::Udp(rtp)) => {
                    // Each datagram is its packet's item (its header, then payload).
                    let numbered = |buf: &mut BytesMut| {
                        buf.reserve(run.record.len());
                        for item in items() {
                            buf.put_u16(item.len() as u16);
                            buf.put_slice(&header(&item));
                            buf.put_slice(payload(&item));
                        }
                    };
                    let bytes = if run.as_made() {
                        run.record.clone()
                    } else {
                        let form = numbered_form(run.form, None, &first);
                        let shared = cached_encoding(frame, form, numbered);
                        if shared.get(2..2 + RtpHeader::LEN) == Some(&first[..]) {
                            shared
                        } else {
                            let mut own = BytesMut::new();
                            numbered(&mut own);
                            own.freeze()
                        }
                    };
                    let datagrams: Vec<&[u8]> =
                        prefixed::items(&bytes).map(|item| &bytes[item]).collect();
                    // A full socket buffer drops the datagrams and sends the player to the
                    // next keyframe, as a full TCP queue does.
                    if !datagrams.is_empty() && rtp.send_all(&datagrams).is_err() {
                        self.overflowed = true;
                    }
                }
                None => {}
            }
        }
        self.runs = runs;
    }

    /// Notes that the player's output was found full: its member drops to the next keyframe.
    pub(super) fn overflowed(&mut self) {
        self.overflowed = true;
    }

    /// Queues the interleaved media sent since the last flush on `writer`: live media
    /// (`merged`) that does not fit is dropped and the player goes on at the next keyframe;
    /// anything else that does not fit is the error.
    pub(super) fn flush(&mut self, writer: &Writer, merged: bool) -> Result<(), SendError> {
        if self.media.is_empty() {
            return Ok(());
        }
        match writer.send_parts(&mut self.media, merged) {
            Err(SendError::Full) if merged => {
                self.overflowed();
                Ok(())
            }
            sent => sent,
        }
    }
}

/// The form, in the arbiter's encoding cache, of a track's packets of `form` numbered as
/// their first header `first` says (every other header follows from it and the record), framed
/// for `channel` of an RTSP connection or, with none, as datagrams. A form is a hash: the
/// header's words are mixed in, not hashed again, and whoever takes a buffer under it checks
/// its first header. The top bit is set, as the forms of [`PacketRun`]s' are.
fn numbered_form(form: u64, channel: Option<u8>, first: &[u8]) -> u64 {
    let framing = channel.map_or(0, |c| u64::from(c) + 1);
    let mut hash = form.rotate_left(29) ^ framing.wrapping_mul(0xff51_afd7_ed55_8ccd);
    for word in first.chunks(4) {
        let word = word.iter().fold(0u64, |w, b| w << 8 | u64::from(*b));
        hash = (hash ^ word)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(31);
    }
    hash | 1 << 63
}

/// A playing RTSP session as a member of its arbiter's fan-out group: live frames go through
/// its [`Feed`].
pub(super) struct RtspFrames(pub SharedFeed);

impl Encode for RtspFrames {
    fn write(&mut self, frame: &MediaFrame, writer: &Writer) -> Result<(), SendError> {
        let mut feed = self.0.borrow_mut();
        // Found full since the last frame: this one goes too, and the player resumes at a
        // keyframe.
        if !std::mem::take(&mut feed.overflowed) {
            feed.live(frame);
            feed.flush(writer, true)?;
            if !std::mem::take(&mut feed.overflowed) {
                return Ok(());
            }
        }
        Err(SendError::Full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::rtsp::session::tests::{config, h264_frame as video, AVCC};
    use crate::session::arbiter::cached_only;
    use bytes::Bytes;
    use streamgate_actors::media::{Codec, Track};

    /// A feed of the video track on interleaved channel 0, its first sequence number
    /// `sequence` unless the first frame was sent by another player already and `adopt`.
    fn feed(sequence: u32, adopt: Option<&MediaFrame>) -> Feed {
        let config = config(Track::Video, Codec::H264, AVCC);
        let (mut play, _, _) = RtpPlay::describe(&[config], || 0x5150);
        let set_up = [(0, "rtsp://h/live/a/trackID=0".to_string())];
        play.start(
            &set_up,
            0,
            Instant::now(),
            || sequence,
            |_| 77,
            &mut |_, form| {
                let first = adopt?;
                cached_only(first, form).map(|record| (first.pts, record))
            },
        );
        let mut feed = Feed::new(play, JoinPacer::new(1.0, 1 << 20));
        feed.outs = vec![Some(Out::Interleaved(0))];
        feed
    }

    /// The one buffer a feed queued for a frame, and the sequence numbers of its packets.
    fn sent(feed: &mut Feed) -> (Bytes, Vec<u16>) {
        assert_eq!(feed.media.len(), 1, "one part per frame");
        let Some(Part::Bytes(framed)) = feed.media.pop() else {
            panic!("a frame's packets go as one buffer");
        };
        let mut sequences = Vec::new();
        let mut rest = &framed[..];
        while rest.len() >= INTERLEAVED_HEAD {
            assert_eq!(&rest[..2], b"$\0");
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            sequences.push(u16::from_be_bytes([rest[6], rest[7]]));
            rest = &rest[4 + len..];
        }
        assert!(rest.is_empty());
        (framed, sequences)
    }

    #[test]
    fn players_numbered_alike_queue_one_framed_buffer_and_the_others_their_own() {
        let frames: Vec<MediaFrame> = (0..4).map(|n| video(n * 40_000, 3000)).collect();
        let mut first = feed(100, None);
        first.send_frame(&frames[0]);
        let mut alike = feed(999, Some(&frames[0]));
        let mut other = feed(7, None);
        alike.send_frame(&frames[0]);
        other.send_frame(&frames[0]);
        let mut next = [100u16, 100, 7];
        for (n, frame) in frames.iter().enumerate() {
            if n > 0 {
                first.send_frame(frame);
                alike.send_frame(frame);
                other.send_frame(frame);
            }
            let (a, sequences_a) = sent(&mut first);
            let (b, sequences_b) = sent(&mut alike);
            let (c, sequences_c) = sent(&mut other);
            assert!(sequences_a.len() > 1, "fragmented");
            assert_eq!(a.as_ptr(), b.as_ptr(), "one buffer for frame {n}");
            assert_ne!(a.as_ptr(), c.as_ptr());
            for (sequences, next) in [sequences_a, sequences_b, sequences_c]
                .iter()
                .zip(&mut next)
            {
                let expected: Vec<u16> = (0..sequences.len() as u16).map(|i| *next + i).collect();
                assert_eq!(sequences, &expected, "frame {n}");
                *next += sequences.len() as u16;
            }
            // The same packets but for their sequence numbers.
            let strip = |framed: &Bytes| {
                let mut v = framed.to_vec();
                let mut at = 0;
                while at + INTERLEAVED_HEAD <= v.len() {
                    let len = usize::from(u16::from_be_bytes([v[at + 2], v[at + 3]]));
                    v[at + 6..at + 8].fill(0);
                    at += 4 + len;
                }
                v
            };
            assert_eq!(strip(&a), strip(&c));
            assert_eq!(a.len(), c.len());
        }
    }
}

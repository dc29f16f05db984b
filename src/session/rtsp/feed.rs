//! A playing RTSP session's media path, [`Feed`]: its packetizers ([`RtpPlay`]), where each
//! track's RTP goes, and the pacer of its start. The session and its member of the arbiter's
//! fan-out group share it: the group hands live frames to the member ([`RtspFrames`]), the
//! session sends the snapshot at PLAY, what the pacer's timer releases, sender reports (from
//! the packetizers' counts) and what is held at the end of the stream.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use bytes::BufMut;
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
    /// The tracks' packets of the frame being sent, and the player's headers of them (kept
    /// for their capacity).
    runs: Vec<PacketRun>,
    headers: Vec<[u8; RtpHeader::LEN]>,
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
            headers: Vec::new(),
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
    /// headers ([`RtpPlay::packetize_runs`]). A track's interleaved packets wait for
    /// [`Self::flush`] as one part ([`Packets`]): the player's `$` framings and headers in one
    /// buffer, the payloads in the record the players of the form share (no copy of the media,
    /// two reference counts per frame); UDP datagrams are sent now, the packets of one track
    /// together ([`UdpOut::send_all`]).
    fn send_frame(&mut self, frame: &MediaFrame) {
        let (mut runs, mut headers) = (
            std::mem::take(&mut self.runs),
            std::mem::take(&mut self.headers),
        );
        self.play
            .packetize_runs(frame, &mut runs, &mut headers, &mut |form, make| {
                cached_encoding(frame, form, |out| make(out))
            });
        for run in runs.drain(..) {
            if run.as_made && self.send_as_made(frame, &run) {
                continue;
            }
            let out = self.outs.get(run.index).and_then(Option::as_ref);
            // A run sent as made has no headers of the player's own: they are the record's.
            let made: Vec<[u8; RtpHeader::LEN]>;
            let own = if run.as_made {
                made = prefixed::items(&run.record)
                    .filter_map(|item| run.record.get(item.start..item.start + RtpHeader::LEN))
                    .filter_map(|header| header.try_into().ok())
                    .collect();
                &made[..]
            } else {
                &headers[run.headers.clone()]
            };
            let items = prefixed::items(&run.record);
            match out {
                Some(Out::Interleaved(channel)) => {
                    let mut heads = Vec::with_capacity(own.len() * INTERLEAVED_HEAD);
                    for (header, item) in own.iter().zip(items) {
                        // An item is at most u16::MAX bytes: an interleaved frame's length.
                        let len = (item.len() as u16).to_be_bytes();
                        heads.extend_from_slice(&[b'$', *channel, len[0], len[1]]);
                        heads.extend_from_slice(header);
                    }
                    let packets = Packets::new(
                        heads,
                        INTERLEAVED_HEAD as u8,
                        run.record,
                        RtpHeader::LEN as u8,
                    );
                    self.media.push(packets.into());
                }
                Some(Out::Udp(rtp)) => {
                    // Each datagram is its packet's item (`own` header, then payload).
                    let mut bytes = Vec::with_capacity(run.record.len());
                    for (header, item) in own.iter().zip(items.clone()) {
                        bytes.extend_from_slice(header);
                        bytes.extend_from_slice(&run.record[item.start + RtpHeader::LEN..item.end]);
                    }
                    let mut rest = &bytes[..];
                    let datagrams: Vec<&[u8]> = items
                        .take(own.len())
                        .map(|item| {
                            let (datagram, after) = rest.split_at(item.len());
                            rest = after;
                            datagram
                        })
                        .collect();
                    // A full socket buffer drops the datagrams and sends the player to the
                    // next keyframe, as a full TCP queue does.
                    if !datagrams.is_empty() && rtp.send_all(&datagrams).is_err() {
                        self.overflowed = true;
                    }
                }
                None => {}
            }
        }
        headers.clear();
        self.runs = runs;
        self.headers = headers;
    }

    /// Sends a run whose packets are numbered as this player numbers them
    /// ([`PacketRun::as_made`]) as they are: over UDP each packet of the record is a datagram;
    /// interleaved, the frame's `$`-framed packets on the player's channel are one buffer the
    /// worker's players of that numbering and channel share, queued as RTMP's frames are (no
    /// head of the player's own, one slice per frame). `false` when the shared buffer found
    /// was framed from packets numbered otherwise (its record was made again since): the run
    /// is then sent as any other.
    fn send_as_made(&mut self, frame: &MediaFrame, run: &PacketRun) -> bool {
        match self.outs.get(run.index).and_then(Option::as_ref) {
            Some(Out::Interleaved(channel)) => {
                let form = framed_form(run.form, *channel);
                let framed = cached_encoding(frame, form, |buf| {
                    buf.reserve(run.record.len() + 2 * prefixed::items(&run.record).count());
                    for item in prefixed::items(&run.record) {
                        buf.put_slice(&[b'$', *channel]);
                        buf.put_u16(item.len() as u16);
                        buf.put_slice(&run.record[item]);
                    }
                });
                // The first packet's header, in both.
                let made = prefixed::items(&run.record)
                    .next()
                    .and_then(|item| run.record.get(item.start..item.start + RtpHeader::LEN));
                if made.is_none() || framed.get(4..4 + RtpHeader::LEN) != made {
                    return false;
                }
                self.media.push(framed.into());
            }
            Some(Out::Udp(rtp)) => {
                let datagrams: Vec<&[u8]> = prefixed::items(&run.record)
                    .map(|item| &run.record[item])
                    .collect();
                if !datagrams.is_empty() && rtp.send_all(&datagrams).is_err() {
                    self.overflowed = true;
                }
            }
            None => {}
        }
        true
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

/// The form of a track's packets of `form` framed for `channel` of an RTSP connection, in the
/// arbiter's encoding cache (a form is a hash: it is mixed with the channel, not hashed
/// again); the top bit is set, as the forms of [`PacketRun`]s' are.
fn framed_form(form: u64, channel: u8) -> u64 {
    (form.rotate_left(29) ^ (u64::from(channel) + 1).wrapping_mul(0xff51_afd7_ed55_8ccd)) | 1 << 63
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

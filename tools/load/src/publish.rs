//! RTMP publishers: `--publish FILE.flv`.
//!
//! The file is read and split into tags once ([`Source::load`]); every tag body is a slice of
//! the one file buffer, shared by all publishers. A publisher's control side is the players'
//! RTMP client, [`streamgate::protocol::rtmp::client::ClientSession`] as a publisher:
//! connect → createStream → publish, started by `onStatus NetStream.Publish.Start`. From then on it sends the file's audio and video tags in
//! real time: a tag is due when as much time has passed since the publish start as its
//! timestamp (relative to the file's first audio/video tag) says. At the end of the file it
//! starts over, the timestamps continuing where the last loop ended. `@setDataFrame onMetaData`
//! and the codec sequence headers go first; the headers go again at a loop start only when the
//! file changes them along the way (otherwise the server and its players still have them).
//!
//! While sending, the publisher keeps reading the server (window acknowledgements, pings, a
//! refusal or a close end up there). Everything it sends is encoded into one buffer per
//! publisher, and due tags are added to it only while little waits there: a server that reads
//! slowly holds the publisher back instead of growing the buffer, and the tags that fell due
//! meanwhile then go out together.

use std::path::Path;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use streamgate::protocol::flv::{TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};
use streamgate::protocol::rtmp::chunk::{encode_message, ChunkHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Sleep;

use streamgate::protocol::rtmp::client::Role;

use crate::{
    be24, read_some, rtmp_client, rtmp_feed, rtmp_open, write_all, PlayerStats, Res, Target,
};

/// Chunk size of what a publisher sends, announced with Set Chunk Size after `connect`.
pub const CHUNK_SIZE: u32 = 4096;
/// Due tags are added to a publisher's output only while less than this waits to be written.
const OUT_HIGH_WATER: usize = 64 * 1024;
/// Chunk stream of audio messages.
const CSID_AUDIO: u32 = 4;
/// Chunk stream of the `@setDataFrame` data message.
const CSID_DATA: u32 = 5;
/// Chunk stream of video messages.
const CSID_VIDEO: u32 = 6;
/// RTMP message type of an AMF0 data message.
const TYPE_DATA: u8 = 18;
/// A frame's duration in a track with only one frame to measure from.
const DEFAULT_FRAME_MS: u64 = 40;
/// `@setDataFrame` as an AMF0 string: a publisher's metadata message is this followed by the
/// `onMetaData` script tag's body as it is in the file.
const SET_DATA_FRAME: &[u8] = b"\x02\x00\x0d@setDataFrame";
/// How the body of an `onMetaData` script tag starts (the AMF0 string).
const ON_METADATA: &[u8] = b"\x02\x00\x0aonMetaData";

/// One audio or video tag of the file.
#[derive(Debug)]
struct Tag {
    /// [`TAG_AUDIO`] or [`TAG_VIDEO`].
    kind: u8,
    /// Milliseconds from the file's first audio/video tag.
    ts: u64,
    /// The tag body (an RTMP audio/video message body as it is).
    body: Bytes,
}

/// The FLV file every publisher sends, parsed once.
#[derive(Debug)]
pub struct Source {
    /// The audio and video tags in file order, without the leading sequence headers.
    tags: Vec<Tag>,
    /// The first video and the first audio sequence header, sent before any tag.
    headers: Vec<Tag>,
    /// The body of the `onMetaData` script tag, if the file has one.
    metadata: Option<Bytes>,
    /// The file changes a sequence header along the way, so every loop starts with the
    /// headers again.
    reheader: bool,
    /// Length of one loop in milliseconds: every track's next loop starts at least one frame
    /// after its last frame, so each track's timestamps keep rising.
    duration: u64,
}

/// An AVC/HEVC sequence header, an enhanced-RTMP sequence start or an AAC
/// AudioSpecificConfig: what a decoder needs before the frames.
fn is_config(kind: u8, body: &[u8]) -> bool {
    match (kind, body) {
        (TAG_AUDIO, [b0, 0, ..]) => b0 >> 4 == 10,
        // Enhanced RTMP: packet type in the low nibble, 0 is SequenceStart.
        (TAG_VIDEO, [b0, ..]) if b0 & 0x80 != 0 => b0 & 0x0f == 0,
        (TAG_VIDEO, [b0, 0, ..]) => matches!(b0 & 0x0f, 7 | 12),
        _ => false,
    }
}

/// A video frame a decoder can start at (not a sequence header).
fn is_keyframe(body: &[u8]) -> bool {
    match body {
        [b0, ..] if b0 & 0x80 != 0 => (b0 >> 4) & 7 == 1 && matches!(b0 & 0x0f, 1 | 3),
        [b0, rest @ ..] => {
            b0 >> 4 == 1 && (!matches!(b0 & 0x0f, 7 | 12) || rest.first() == Some(&1))
        }
        [] => false,
    }
}

/// An AVC/HEVC end of sequence or an enhanced-RTMP sequence end: not sent, since the stream
/// goes on with the next loop (and a player may take it for the end).
fn is_sequence_end(kind: u8, body: &[u8]) -> bool {
    match (kind, body) {
        (TAG_VIDEO, [b0, ..]) if b0 & 0x80 != 0 => b0 & 0x0f == 2,
        (TAG_VIDEO, [b0, 2, ..]) => matches!(b0 & 0x0f, 7 | 12),
        _ => false,
    }
}

/// How long a track's frames take up: from the first to one frame past the last (a frame
/// being their mean spacing). `None` for a track without frames.
fn track_span<'a>(frames: impl Iterator<Item = &'a Tag>) -> Option<u64> {
    let (mut n, mut first, mut last) = (0u64, u64::MAX, 0u64);
    for t in frames {
        n += 1;
        first = first.min(t.ts);
        last = last.max(t.ts);
    }
    let step = match n {
        0 => return None,
        1 => DEFAULT_FRAME_MS,
        _ => ((last - first) / (n - 1)).max(1),
    };
    Some(last - first + step)
}

impl Source {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Source, String> {
        let data = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
        Source::parse(Bytes::from(data))
    }

    /// Splits an FLV file (FLV spec E.2–E.4) into its tags.
    fn parse(data: Bytes) -> Result<Source, String> {
        if data.len() < 9 || &data[..3] != b"FLV" {
            return Err("not an FLV file (it does not start with an FLV header)".into());
        }
        let header_size = u32::from_be_bytes([data[5], data[6], data[7], data[8]]) as usize;
        if header_size < 9 {
            return Err(format!("not an FLV file (header size {header_size})"));
        }
        // The header, then PreviousTagSize0.
        let mut pos = header_size.saturating_add(4);
        if pos > data.len() {
            return Err("truncated FLV file: it ends inside its header".into());
        }
        // (kind, absolute timestamp, body) of the audio and video tags.
        let mut media: Vec<(u8, u32, Bytes)> = Vec::new();
        let mut metadata = None;
        while pos < data.len() {
            let Some(h) = data.get(pos..pos + 11) else {
                return Err(format!(
                    "truncated FLV file: the tag header at byte {pos} is cut off"
                ));
            };
            if h[0] & 0x20 != 0 {
                return Err(format!("encrypted FLV tag at byte {pos}"));
            }
            let kind = h[0] & 0x1f;
            let size = be24(&h[1..4]) as usize;
            let ts = (u32::from(h[7]) << 24) | be24(&h[4..7]);
            let end = pos + 11 + size;
            let Some(prev) = data.get(end..end + 4) else {
                return Err(format!(
                    "truncated FLV file: the {size}-byte tag at byte {pos} is cut off"
                ));
            };
            let prev = u32::from_be_bytes([prev[0], prev[1], prev[2], prev[3]]) as usize;
            if prev != size + 11 {
                return Err(format!(
                    "bad FLV file: PreviousTagSize {prev} after the {}-byte tag at byte {pos}",
                    size + 11
                ));
            }
            let body = data.slice(pos + 11..end);
            match kind {
                TAG_AUDIO | TAG_VIDEO if body.is_empty() || is_sequence_end(kind, &body) => {}
                TAG_AUDIO | TAG_VIDEO => media.push((kind, ts, body)),
                TAG_SCRIPT => {
                    if metadata.is_none() && body.starts_with(ON_METADATA) {
                        metadata = Some(body);
                    }
                }
                _ => return Err(format!("bad FLV file: tag type {kind} at byte {pos}")),
            }
            pos = end + 4;
        }

        let base = media.first().map_or(0, |m| m.1);
        let mut tags = Vec::with_capacity(media.len());
        let mut headers: Vec<Tag> = Vec::new();
        for (kind, ts, body) in media {
            // A timestamp before the first tag's is sent as the start.
            let ts = u64::from(ts.saturating_sub(base));
            let tag = Tag { kind, ts, body };
            if is_config(kind, &tag.body) && !headers.iter().any(|h| h.kind == kind) {
                headers.push(tag);
            } else {
                tags.push(tag);
            }
        }
        let all = &tags;
        let frames = move |kind: u8| {
            all.iter()
                .filter(move |t| t.kind == kind && !is_config(kind, &t.body))
        };
        let has_key = frames(TAG_VIDEO).any(|t| is_keyframe(&t.body));
        if !has_key && frames(TAG_AUDIO).next().is_none() {
            return Err("nothing to send: the FLV file has no video keyframe and no audio".into());
        }
        // A loop must start with the headers it began with when the file ends on others.
        let reheader = headers.iter().any(|h| {
            tags.iter()
                .rfind(|t| t.kind == h.kind && is_config(t.kind, &t.body))
                .is_some_and(|last| last.body != h.body)
        });
        // The longer track sets the loop (the other one pauses a little at each loop's end).
        let duration = track_span(frames(TAG_VIDEO))
            .max(track_span(frames(TAG_AUDIO)))
            .unwrap_or(DEFAULT_FRAME_MS);
        Ok(Source {
            tags,
            headers,
            metadata,
            reheader,
            duration,
        })
    }
}

/// Where one publisher is in the file.
struct Pacer<'a> {
    source: &'a Source,
    /// The publish start: timestamp 0 is due then.
    start: Instant,
    stream_id: u32,
    chunk_size: u32,
    /// The next tag to send.
    next: usize,
    /// Timestamp of the current loop's start.
    offset: u64,
    /// Nothing has been sent yet: the metadata goes first.
    at_start: bool,
    /// Headers are to go before the next tag.
    headers_due: bool,
}

impl Pacer<'_> {
    /// Encodes the tags that are due into `out` (as long as it has room) and returns when the
    /// next one is due.
    fn queue(&mut self, out: &mut BytesMut, st: &mut PlayerStats) -> tokio::time::Instant {
        let src = self.source;
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.start).as_millis() as u64;
        if self.at_start {
            self.at_start = false;
            if let Some(meta) = &src.metadata {
                let header = ChunkHeader {
                    csid: CSID_DATA,
                    timestamp: 0,
                    type_id: TYPE_DATA,
                    stream_id: self.stream_id,
                };
                encode_message(out, self.chunk_size, header, &[SET_DATA_FRAME, &meta[..]]);
            }
        }
        loop {
            if self.next == src.tags.len() {
                self.next = 0;
                self.offset += src.duration;
                self.headers_due = src.reheader;
            }
            let ts = self.offset + src.tags[self.next].ts;
            if ts > elapsed || out.len() >= OUT_HIGH_WATER {
                // Already due when the output is full: the caller waits for room first.
                let due = self.start + Duration::from_millis(ts);
                return tokio::time::Instant::from_std(due);
            }
            if self.headers_due {
                self.headers_due = false;
                for h in &src.headers {
                    self.send(out, st, h, ts, now);
                }
            }
            self.send(out, st, &src.tags[self.next], ts, now);
            self.next += 1;
        }
    }

    fn send(&self, out: &mut BytesMut, st: &mut PlayerStats, tag: &Tag, ts: u64, now: Instant) {
        let header = ChunkHeader {
            csid: if tag.kind == TAG_AUDIO {
                CSID_AUDIO
            } else {
                CSID_VIDEO
            },
            // RTMP timestamps are 32-bit and wrap.
            timestamp: ts as u32,
            type_id: tag.kind,
            stream_id: self.stream_id,
        };
        encode_message(out, self.chunk_size, header, &[&tag.body[..]]);
        st.media(tag.body.len(), now);
        st.media_tag(tag.kind, &tag.body[..tag.body.len().min(2)], now);
    }
}

/// One publisher: publishes `source` to its stream until an error (or until the caller drops
/// it at the end of the run).
pub async fn session(
    t: &Target,
    id: usize,
    source: &Source,
    st: &mut PlayerStats,
    timer: &mut Pin<&mut Sleep>,
    start_timeout: f64,
) -> Res<()> {
    let mut out = BytesMut::with_capacity(2 * OUT_HIGH_WATER);
    let role = Role::Publish {
        name: t.publish_name(id),
        chunk_size: CHUNK_SIZE,
    };
    let mut rtmp = rtmp_client(t, role);
    let (mut sock, mut buf) = rtmp_open(t, &mut rtmp, st, timer, start_timeout, &mut out).await?;
    let started = loop {
        if !out.is_empty() {
            write_all(&mut sock, &out).await?;
            out.clear();
        }
        if let Some(started) = st.play_start {
            break st.t0 + started;
        }
        let n = read_some(&mut sock, &mut buf, timer, true, start_timeout).await?;
        rtmp_feed(&mut rtmp, &buf[..n], Instant::now(), st, &mut out)?;
    };

    let mut pacer = Pacer {
        source,
        start: started,
        stream_id: rtmp.stream_id(),
        chunk_size: rtmp.out_chunk_size(),
        next: 0,
        offset: 0,
        at_start: true,
        headers_due: true,
    };
    let (mut rd, mut wr) = sock.split();
    let pace = tokio::time::sleep_until(tokio::time::Instant::from_std(started));
    tokio::pin!(pace);
    loop {
        tokio::select! {
            r = rd.read(&mut buf) => {
                let n = match r {
                    Ok(0) => return Err("connection closed by server".into()),
                    Ok(n) => n,
                    Err(e) => return Err(format!("read: {e}")),
                };
                rtmp_feed(&mut rtmp, &buf[..n], Instant::now(), st, &mut out)?;
            }
            r = wr.write_buf(&mut out), if !out.is_empty() => {
                r.map_err(|e| format!("write: {e}"))?;
            }
            () = pace.as_mut(), if out.len() < OUT_HIGH_WATER => {
                let due = pacer.queue(&mut out, st);
                pace.as_mut().reset(due);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An FLV file of `tags` (type, timestamp, body).
    fn flv(tags: &[(u8, u32, &[u8])]) -> Bytes {
        let mut f = streamgate::protocol::flv::file_header(true, true).to_vec();
        let mut out = BytesMut::new();
        for (kind, ts, body) in tags {
            streamgate::protocol::flv::write_tag(&mut out, *kind, *ts, &[*body]);
        }
        f.extend_from_slice(&out);
        Bytes::from(f)
    }

    const AVC_HEADER: &[u8] = &[0x17, 0, 0, 0, 0, 1, 0x64];
    const AAC_CONFIG: &[u8] = &[0xAF, 0, 0x12, 0x10];

    #[test]
    fn splits_headers_metadata_and_frames() {
        let mut meta = ON_METADATA.to_vec();
        meta.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 0, 9]);
        let file = flv(&[
            (TAG_SCRIPT, 0, &meta),
            (TAG_VIDEO, 1000, AVC_HEADER),
            (TAG_AUDIO, 1000, AAC_CONFIG),
            (TAG_VIDEO, 1000, &[0x17, 1, 0, 0, 0, 9]),
            (TAG_AUDIO, 1020, &[0xAF, 1, 5]),
            (TAG_VIDEO, 1040, &[0x27, 1, 0, 0, 0, 9]),
            (TAG_VIDEO, 1040, &[0x17, 2, 0, 0, 0]),
        ]);
        let s = Source::parse(file).expect("a good file");
        assert_eq!(s.headers.len(), 2);
        assert_eq!(s.tags.len(), 3);
        assert_eq!(s.tags.iter().map(|t| t.ts).collect::<Vec<_>>(), [0, 20, 40]);
        assert_eq!(s.metadata.as_deref(), Some(&meta[..]));
        assert!(!s.reheader);
        // One video frame interval after the last timestamp.
        assert_eq!(s.duration, 80);
    }

    #[test]
    fn a_changed_header_is_sent_again_at_each_loop() {
        let file = flv(&[
            (TAG_VIDEO, 0, AVC_HEADER),
            (TAG_VIDEO, 0, &[0x17, 1, 0, 0, 0, 9]),
            (TAG_VIDEO, 40, &[0x17, 0, 0, 0, 0, 1, 0x4d]),
            (TAG_VIDEO, 40, &[0x17, 1, 0, 0, 0, 9]),
        ]);
        assert!(Source::parse(file).expect("a good file").reheader);
    }

    #[test]
    fn refuses_what_is_not_a_whole_flv_file_with_frames() {
        let err = |b: Bytes| Source::parse(b).expect_err("refused");
        assert!(err(Bytes::from_static(b"GIF89a....")).contains("not an FLV"));
        let good = flv(&[(TAG_VIDEO, 0, &[0x17, 1, 0, 0, 0, 9])]);
        for cut in [5, 11, 20, good.len() - 1] {
            assert!(
                err(good.slice(..cut)).contains("truncated") || cut < 9,
                "cut at {cut}"
            );
        }
        let no_frames = flv(&[
            (TAG_VIDEO, 0, AVC_HEADER),
            (TAG_VIDEO, 0, &[0x27, 1, 0, 0, 0]),
        ]);
        assert!(err(no_frames).contains("no video keyframe"));
    }
}

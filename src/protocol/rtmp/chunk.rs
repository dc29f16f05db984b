//! The RTMP chunk layer (RTMP 1.0 spec, section 5.3): reassembles messages from chunks
//! ([`ChunkDecoder`], the server's side), walks chunks in place without reassembling them
//! ([`ChunkReader`], the clients' side, which must not copy the media they only count), and
//! splits messages into chunks ([`encode_message`]).
//!
//! rml_rtmp 0.8's deserializer keeps one reassembly buffer for all chunk streams, so the
//! interleaved chunk streams that OBS 30+ and FFmpeg 6.1+ send (audio chunks between the chunks
//! of a large video message) corrupt messages. Here every chunk stream has its own header state
//! and its own partial payload. Pure functions over bytes: no socket, no clock.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Most bytes held in partial messages across all chunk streams of one connection.
pub const MAX_BUFFERED: usize = 24 << 20;
/// Most chunk streams with a partial message at once.
pub const MAX_PARTIAL_STREAMS: usize = 64;
/// Most chunk streams a peer of [`ChunkDecoder`] may use (each remembers its last header;
/// clients use a handful).
pub const MAX_CHUNK_STREAMS: usize = 256;
/// The chunk size both sides start with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// The largest chunk size a peer may announce (the spec's 31-bit limit is far beyond any
/// real client; 16 MiB is the largest message anyway).
pub const MAX_CHUNK_SIZE: u32 = 0x00FF_FFFF;

/// A malformed chunk stream. Each variant ends the connection it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A compressed header (type 1, 2 or 3) on a chunk stream that never had a full header.
    #[error("chunk stream {csid}: header type {fmt} before any type 0 header")]
    NoPreviousHeader {
        /// The chunk stream id.
        csid: u32,
        /// The header type.
        fmt: u8,
    },
    /// The peer asked for a chunk size that is zero or too large.
    #[error("invalid chunk size {0}")]
    BadChunkSize(u32),
    /// More chunk streams than the bound: [`MAX_PARTIAL_STREAMS`] on a [`ChunkReader`],
    /// [`MAX_CHUNK_STREAMS`] on a [`ChunkDecoder`].
    #[error("more than {0} chunk streams")]
    TooManyStreams(usize),
    /// Partial messages would hold more than [`MAX_BUFFERED`] bytes, or too many streams.
    #[error("peer buffers too much: {streams} partial messages, {bytes} bytes")]
    TooMuchBuffered {
        /// Chunk streams with a partial message.
        streams: usize,
        /// Bytes held.
        bytes: usize,
    },
}

/// One reassembled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// The chunk stream it arrived on.
    pub csid: u32,
    /// Message timestamp in milliseconds.
    pub timestamp: u32,
    /// Message type id.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// The message body.
    pub payload: Bytes,
}

/// The last header of one chunk stream, which compressed headers (types 1 to 3) repeat.
#[derive(Debug, Clone, Copy)]
struct ChunkStream {
    csid: u32,
    timestamp: u32,
    delta: u32,
    length: u32,
    stream_id: u32,
    type_id: u8,
    extended: bool,
}

/// The payload received so far of one chunk stream's unfinished message (never empty).
#[derive(Debug)]
struct Partial {
    csid: u32,
    bytes: BytesMut,
}

/// Reassembles messages from the peer's chunks.
///
/// A player's connection keeps this for its whole life after a few commands, so it is kept
/// small: the chunk streams' headers in a short list (24 bytes each), and the partial messages
/// apart from them, in a list let go whenever no message is unfinished.
#[derive(Debug)]
pub struct ChunkDecoder {
    chunk_size: u32,
    streams: Vec<ChunkStream>,
    partials: Vec<Partial>,
    buffered: usize,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        ChunkDecoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
            partials: Vec::new(),
            buffered: 0,
        }
    }
}

/// A chunk stream's clock after the first chunk of a message with header format `fmt` and
/// timestamp field `value` (the extended timestamp when there is one): format 0 carries an
/// absolute time, 1 and 2 a delta that later format-3 messages repeat. Returns the new
/// `(timestamp, delta)`.
pub fn advance_clock(fmt: u8, value: u32, timestamp: u32, delta: u32) -> (u32, u32) {
    match fmt {
        0 => (value, 0),
        1 | 2 => (timestamp.wrapping_add(value), value),
        _ => (timestamp.wrapping_add(delta), delta),
    }
}

fn be24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

impl ChunkDecoder {
    /// Applies the peer's Set Chunk Size.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::BadChunkSize(size));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Applies the peer's Abort Message: drops the partial message of `csid`.
    pub fn abort(&mut self, csid: u32) {
        if let Some(i) = self.partial_index(csid) {
            self.take_partial(i);
        }
    }

    fn partial_index(&self, csid: u32) -> Option<usize> {
        self.partials.iter().position(|p| p.csid == csid)
    }

    /// Takes partial message `i` out of the list (the list's memory goes with its last one).
    fn take_partial(&mut self, i: usize) -> BytesMut {
        let bytes = self.partials.swap_remove(i).bytes;
        self.buffered -= bytes.len();
        if self.partials.is_empty() {
            self.partials = Vec::new();
        }
        bytes
    }

    /// Consumes whole chunks from `input` until a message is complete (returned) or the input
    /// holds no whole chunk (`Ok(None)`; the bytes stay in `input`).
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Option<RawMessage>, ChunkError> {
        loop {
            let Some(consumed) = self.decode_chunk(input)? else {
                return Ok(None);
            };
            if let Some(message) = consumed {
                return Ok(Some(message));
            }
        }
    }

    /// Decodes one chunk. `Ok(None)`: not enough bytes. `Ok(Some(None))`: a chunk was consumed
    /// without completing a message.
    fn decode_chunk(
        &mut self,
        input: &mut BytesMut,
    ) -> Result<Option<Option<RawMessage>>, ChunkError> {
        let b = &input[..];
        let Some(&first) = b.first() else {
            return Ok(None);
        };
        let fmt = first >> 6;
        let (csid, mut pos) = match first & 0x3f {
            0 if b.len() >= 2 => (64 + u32::from(b[1]), 2),
            1 if b.len() >= 3 => (64 + u32::from(b[1]) + 256 * u32::from(b[2]), 3),
            0 | 1 => return Ok(None),
            n => (u32::from(n), 1),
        };
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        if b.len() < pos + header_len {
            return Ok(None);
        }
        let h = &b[pos..pos + header_len];
        pos += header_len;

        let index = self.streams.iter().position(|s| s.csid == csid);
        let prev = index.map(|i| self.streams[i]);
        if fmt != 0 && prev.is_none() {
            return Err(ChunkError::NoPreviousHeader { csid, fmt });
        }
        if index.is_none() && self.streams.len() >= MAX_CHUNK_STREAMS {
            return Err(ChunkError::TooManyStreams(MAX_CHUNK_STREAMS));
        }
        let mut partial = self.partial_index(csid);
        if let (Some(i), true) = (partial, fmt <= 1) {
            // A new message header before the last message was complete: the peer gave up on
            // it without an Abort. Drop the partial message rather than splice two together.
            self.take_partial(i);
            partial = None;
        }
        let already = partial.map_or(0, |i| self.partials[i].bytes.len());
        let mid_message = already > 0;
        let field_ts = if fmt < 3 { be24(&h[0..3]) } else { 0 };
        let extended = if fmt < 3 {
            field_ts == 0x00FF_FFFF
        } else {
            prev.is_some_and(|s| s.extended)
        };
        let mut ext_ts = 0;
        if extended {
            if b.len() < pos + 4 {
                return Ok(None);
            }
            ext_ts = u32::from_be_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]]);
            pos += 4;
        }
        let (length, type_id, stream_id) = match (fmt, prev) {
            (0, _) => (
                be24(&h[3..6]),
                h[6],
                u32::from_le_bytes([h[7], h[8], h[9], h[10]]),
            ),
            (1, Some(p)) => (be24(&h[3..6]), h[6], p.stream_id),
            (_, Some(p)) => (p.length, p.type_id, p.stream_id),
            (_, None) => return Err(ChunkError::NoPreviousHeader { csid, fmt }),
        };
        let take = (length as usize - already.min(length as usize)).min(self.chunk_size as usize);
        if b.len() < pos + take {
            return Ok(None);
        }

        let completes = already + take == length as usize;
        if !completes {
            let partial_streams = self.partials.len() + usize::from(!mid_message);
            if partial_streams > MAX_PARTIAL_STREAMS || self.buffered + take > MAX_BUFFERED {
                return Err(ChunkError::TooMuchBuffered {
                    streams: partial_streams,
                    bytes: self.buffered + take,
                });
            }
        }

        let (mut timestamp, mut delta) = prev.map_or((0, 0), |p| (p.timestamp, p.delta));
        if !mid_message {
            let value = if extended { ext_ts } else { field_ts };
            (timestamp, delta) = advance_clock(fmt, value, timestamp, delta);
        }
        let stream = ChunkStream {
            csid,
            timestamp,
            delta,
            length,
            stream_id,
            type_id,
            extended,
        };
        match index {
            Some(i) => self.streams[i] = stream,
            None => self.streams.push(stream),
        }

        input.advance(pos);
        let body = input.split_to(take);
        let message = |payload: Bytes| RawMessage {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload,
        };
        let Some(i) = partial else {
            if completes {
                return Ok(Some(Some(message(body.freeze()))));
            }
            // Grow with what arrives; a declared length is not trusted with memory.
            let mut bytes = BytesMut::with_capacity((length as usize).min(1 << 16));
            bytes.extend_from_slice(&body);
            self.buffered += take;
            self.partials.push(Partial { csid, bytes });
            return Ok(Some(None));
        };
        self.partials[i].bytes.extend_from_slice(&body);
        self.buffered += take;
        if !completes {
            return Ok(Some(None));
        }
        Ok(Some(Some(message(self.take_partial(i).freeze()))))
    }
}

/// One run of payload bytes of one message, as [`ChunkReader`] finds them in its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece<'a> {
    /// The chunk stream it arrived on.
    pub csid: u32,
    /// Message timestamp in milliseconds.
    pub timestamp: u32,
    /// Message type id.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// The message's whole length, as its header declared it.
    pub length: usize,
    /// Bytes of the message before this piece.
    pub offset: usize,
    /// The bytes, borrowed from the input.
    pub data: &'a [u8],
}

impl Piece<'_> {
    /// Whether this piece ends its message.
    pub fn completes(&self) -> bool {
        self.offset + self.data.len() >= self.length
    }
}

/// Header state of one chunk stream of a [`ChunkReader`].
#[derive(Debug, Default)]
struct Walked {
    csid: u32,
    has_header: bool,
    timestamp: u32,
    delta: u32,
    length: usize,
    type_id: u8,
    stream_id: u32,
    extended: bool,
    /// Bytes of the current message walked so far.
    received: usize,
}

/// Walks a peer's chunks in place: headers are parsed as they arrive (split across inputs
/// anywhere), payload bytes are handed out as [`Piece`]s borrowed from the input, never copied
/// or reassembled. What to keep of a message is the caller's choice.
#[derive(Debug)]
pub struct ChunkReader {
    chunk_size: usize,
    streams: Vec<Walked>,
    /// The chunk header being accumulated (at most 3 + 11 + 4 bytes).
    hdr: [u8; 18],
    hdr_len: usize,
    /// Index into `streams` and bytes left of the chunk whose payload is being walked.
    cur: Option<(usize, usize)>,
}

impl Default for ChunkReader {
    fn default() -> Self {
        ChunkReader {
            chunk_size: DEFAULT_CHUNK_SIZE as usize,
            streams: Vec::new(),
            hdr: [0; 18],
            hdr_len: 0,
            cur: None,
        }
    }
}

impl ChunkReader {
    /// Applies the peer's Set Chunk Size.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::BadChunkSize(size));
        }
        self.chunk_size = size as usize;
        Ok(())
    }

    /// Applies the peer's Abort Message: the message in progress on `csid` is given up.
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.csid == csid) {
            s.received = 0;
        }
    }

    /// The next piece of payload in `data` from `*pos` on, advancing `*pos`; `Ok(None)` when
    /// `data` is used up (a partial header is kept for the next input). A message of length
    /// zero comes as one empty piece.
    pub fn next<'a>(
        &mut self,
        data: &'a [u8],
        pos: &mut usize,
    ) -> Result<Option<Piece<'a>>, ChunkError> {
        if self.cur.is_none() {
            loop {
                let need = self.header_need();
                if self.hdr_len >= need {
                    break;
                }
                if *pos >= data.len() {
                    return Ok(None);
                }
                let n = (need - self.hdr_len).min(data.len() - *pos);
                self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&data[*pos..*pos + n]);
                self.hdr_len += n;
                *pos += n;
            }
            let i = self.header_done()?;
            let s = &self.streams[i];
            self.cur = Some((
                i,
                (s.length - s.received.min(s.length)).min(self.chunk_size),
            ));
        }
        let Some((i, left)) = self.cur else {
            return Ok(None);
        };
        let take = left.min(data.len().saturating_sub(*pos));
        if take == 0 && left > 0 {
            return Ok(None);
        }
        let part = &data[*pos..*pos + take];
        *pos += take;
        self.cur = (left > take).then_some((i, left - take));
        let s = &mut self.streams[i];
        let piece = Piece {
            csid: s.csid,
            timestamp: s.timestamp,
            type_id: s.type_id,
            stream_id: s.stream_id,
            length: s.length,
            offset: s.received,
            data: part,
        };
        s.received += take;
        if s.received >= s.length {
            s.received = 0;
        }
        Ok(Some(piece))
    }

    fn stream_index(&mut self, csid: u32) -> Result<usize, ChunkError> {
        if let Some(i) = self.streams.iter().position(|s| s.csid == csid) {
            return Ok(i);
        }
        if self.streams.len() >= MAX_PARTIAL_STREAMS {
            return Err(ChunkError::TooManyStreams(MAX_PARTIAL_STREAMS));
        }
        self.streams.push(Walked {
            csid,
            ..Walked::default()
        });
        Ok(self.streams.len() - 1)
    }

    /// Bytes of basic header the first header byte announces.
    fn basic_len(b0: u8) -> usize {
        match b0 & 0x3f {
            0 => 2,
            1 => 3,
            _ => 1,
        }
    }

    /// How many header bytes the chunk header being accumulated needs, as far as known.
    fn header_need(&self) -> usize {
        if self.hdr_len == 0 {
            return 1;
        }
        let basic = Self::basic_len(self.hdr[0]);
        let fmt = usize::from(self.hdr[0] >> 6);
        let base = basic + [11, 7, 3, 0][fmt];
        if self.hdr_len < base {
            return base;
        }
        let extended = if fmt < 3 {
            be24(&self.hdr[basic..basic + 3]) == 0x00FF_FFFF
        } else {
            let csid = self.csid(basic);
            self.streams
                .iter()
                .find(|s| s.csid == csid)
                .is_some_and(|s| s.extended)
        };
        base + if extended { 4 } else { 0 }
    }

    fn csid(&self, basic: usize) -> u32 {
        match basic {
            2 => 64 + u32::from(self.hdr[1]),
            3 => 64 + u32::from(self.hdr[1]) + 256 * u32::from(self.hdr[2]),
            _ => u32::from(self.hdr[0] & 0x3f),
        }
    }

    /// A whole chunk header is in `hdr`: updates its chunk stream.
    fn header_done(&mut self) -> Result<usize, ChunkError> {
        let basic = Self::basic_len(self.hdr[0]);
        let fmt = self.hdr[0] >> 6;
        let csid = self.csid(basic);
        let i = self.stream_index(csid)?;
        let h = &self.hdr[basic..self.hdr_len];
        let s = &mut self.streams[i];
        if fmt != 0 && !s.has_header {
            return Err(ChunkError::NoPreviousHeader { csid, fmt });
        }
        if fmt <= 1 {
            // A new message header before the last message was complete: the peer gave up on
            // it without an Abort.
            s.received = 0;
        }
        let mid_message = s.received > 0;
        let ext_at = [11, 7, 3, 0][usize::from(fmt)];
        let ext = h.len() > ext_at;
        let ts = if ext {
            u32::from_be_bytes([h[ext_at], h[ext_at + 1], h[ext_at + 2], h[ext_at + 3]])
        } else if fmt < 3 {
            be24(&h[0..3])
        } else {
            0
        };
        if fmt < 3 {
            s.extended = ext;
        }
        if fmt <= 1 {
            s.length = be24(&h[3..6]) as usize;
            s.type_id = h[6];
        }
        if fmt == 0 {
            s.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
        }
        if !mid_message {
            (s.timestamp, s.delta) = advance_clock(fmt, ts, s.timestamp, s.delta);
        }
        s.has_header = true;
        self.hdr_len = 0;
        Ok(i)
    }
}

/// Appends one message as chunks of `chunk_size`: a type 0 header, then type 3 headers.
/// `body` may be given in parts (a tag header and a shared payload) so the payload is copied
/// once, into `out`.
pub fn encode_message(out: &mut BytesMut, chunk_size: u32, msg: ChunkHeader, body: &[&[u8]]) {
    let length: usize = body.iter().map(|p| p.len()).sum();
    let extended = msg.timestamp >= 0x00FF_FFFF;
    let basic = |out: &mut BytesMut, fmt: u8| {
        if msg.csid < 64 {
            out.put_u8((fmt << 6) | msg.csid as u8);
        } else if msg.csid < 320 {
            out.put_u8(fmt << 6);
            out.put_u8((msg.csid - 64) as u8);
        } else {
            out.put_u8((fmt << 6) | 1);
            out.put_u16_le((msg.csid - 64) as u16);
        }
    };
    let chunks = length.div_ceil(chunk_size as usize).max(1);
    out.reserve(length + 16 + (chunks - 1) * 8);
    basic(out, 0);
    let ts_field = if extended { 0x00FF_FFFF } else { msg.timestamp };
    out.put_slice(&ts_field.to_be_bytes()[1..]);
    out.put_slice(&(length as u32).to_be_bytes()[1..]);
    out.put_u8(msg.type_id);
    out.put_u32_le(msg.stream_id);
    if extended {
        out.put_u32(msg.timestamp);
    }
    let mut room = chunk_size as usize;
    for part in body {
        let mut part = *part;
        while !part.is_empty() {
            if room == 0 {
                basic(out, 3);
                if extended {
                    out.put_u32(msg.timestamp);
                }
                room = chunk_size as usize;
            }
            let n = room.min(part.len());
            out.put_slice(&part[..n]);
            part = &part[n..];
            room -= n;
        }
    }
}

/// The header fields of a message to encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Chunk stream id (2 for protocol control).
    pub csid: u32,
    /// Timestamp in milliseconds.
    pub timestamp: u32,
    /// Message type id.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(csid: u32, timestamp: u32, type_id: u8, stream_id: u32) -> ChunkHeader {
        ChunkHeader {
            csid,
            timestamp,
            type_id,
            stream_id,
        }
    }

    fn decode_all(dec: &mut ChunkDecoder, bytes: &[u8]) -> Vec<RawMessage> {
        let mut input = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = dec.decode(&mut input).expect("valid chunks") {
            out.push(m);
        }
        assert!(input.is_empty(), "{} bytes left", input.len());
        out
    }

    #[test]
    fn round_trip_across_chunk_sizes() {
        let body: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        for size in [1u32, 7, 128, 999, 1000, 4096] {
            let mut out = BytesMut::new();
            encode_message(
                &mut out,
                size,
                header(6, 1234, 9, 1),
                &[&body[..10], &body[10..]],
            );
            let mut dec = ChunkDecoder::default();
            dec.set_chunk_size(size).expect("valid size");
            let msgs = decode_all(&mut dec, &out);
            assert_eq!(msgs.len(), 1);
            assert_eq!(msgs[0].payload, body);
            assert_eq!(
                (msgs[0].timestamp, msgs[0].type_id, msgs[0].stream_id),
                (1234, 9, 1)
            );
        }
    }

    /// FFmpeg 6.1+ and OBS 30+ put audio chunks between the chunks of a large video message.
    /// Each chunk stream must keep its own partial message.
    #[test]
    fn interleaved_chunk_streams_reassemble_separately() {
        let video: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        let audio: Vec<u8> = vec![0xAF; 100];
        let mut v = BytesMut::new();
        encode_message(&mut v, 128, header(6, 40, 9, 1), &[&video]);
        let mut a = BytesMut::new();
        encode_message(&mut a, 128, header(4, 41, 8, 1), &[&audio]);
        // video chunk 1 (1 + 11 + 128), audio whole, video chunks 2 and 3.
        let mut wire = Vec::new();
        wire.extend_from_slice(&v[..140]);
        wire.extend_from_slice(&a);
        wire.extend_from_slice(&v[140..]);
        let mut dec = ChunkDecoder::default();
        let msgs = decode_all(&mut dec, &wire);
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[0].type_id, &msgs[0].payload[..]), (8, &audio[..]));
        assert_eq!((msgs[1].type_id, &msgs[1].payload[..]), (9, &video[..]));
        assert_eq!(msgs[1].timestamp, 40);
        // Nothing unfinished: the list of partial messages holds no memory.
        assert_eq!((dec.partials.capacity(), dec.buffered), (0, 0));
    }

    /// Each chunk stream remembers its last header, so a peer's chunk streams are bounded even
    /// when every message it sends is whole.
    #[test]
    fn chunk_streams_are_bounded() {
        let mut wire = BytesMut::new();
        for csid in 3..3 + MAX_CHUNK_STREAMS as u32 {
            encode_message(&mut wire, 128, header(csid, 0, 20, 0), &[&[1u8]]);
        }
        let mut dec = ChunkDecoder::default();
        assert_eq!(decode_all(&mut dec, &wire).len(), MAX_CHUNK_STREAMS);
        // Known chunk streams go on; one more is refused.
        let mut more = BytesMut::new();
        encode_message(&mut more, 128, header(3, 0, 20, 0), &[&[2u8]]);
        assert_eq!(decode_all(&mut dec, &more).len(), 1);
        let mut more = BytesMut::new();
        encode_message(
            &mut more,
            128,
            header(2 + MAX_CHUNK_STREAMS as u32 + 1, 0, 20, 0),
            &[&[3u8]],
        );
        assert_eq!(
            dec.decode(&mut more),
            Err(ChunkError::TooManyStreams(MAX_CHUNK_STREAMS))
        );
    }

    #[test]
    fn split_at_every_byte_position() {
        let mut wire = BytesMut::new();
        encode_message(&mut wire, 64, header(3, 5, 20, 0), &[&[1u8; 200]]);
        encode_message(&mut wire, 64, header(3, 0x0100_0000, 9, 1), &[&[2u8; 70]]);
        for split in 0..wire.len() {
            let mut dec = ChunkDecoder::default();
            dec.set_chunk_size(64).expect("valid size");
            let mut input = BytesMut::from(&wire[..split]);
            let mut msgs = Vec::new();
            while let Some(m) = dec.decode(&mut input).expect("valid") {
                msgs.push(m);
            }
            input.extend_from_slice(&wire[split..]);
            while let Some(m) = dec.decode(&mut input).expect("valid") {
                msgs.push(m);
            }
            assert_eq!(msgs.len(), 2, "split at {split}");
            assert_eq!(
                msgs[1].timestamp, 0x0100_0000,
                "extended timestamp, split {split}"
            );
            assert_eq!(msgs[1].payload.len(), 70);
        }
    }

    #[test]
    fn compressed_headers_use_deltas() {
        // Type 0 at ts 100, then a type 2 header with delta 40, then a type 3 (repeat delta).
        let mut wire = vec![0x04, 0, 0, 100, 0, 0, 1, 8, 1, 0, 0, 0, 0xAA];
        wire.extend_from_slice(&[0x84, 0, 0, 40, 0xBB]);
        wire.extend_from_slice(&[0xC4, 0xCC]);
        let mut dec = ChunkDecoder::default();
        let msgs = decode_all(&mut dec, &wire);
        let ts: Vec<u32> = msgs.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![100, 140, 180]);
        assert_eq!(msgs[2].payload, Bytes::from_static(&[0xCC]));
    }

    #[test]
    fn hostile_headers_are_errors_not_panics() {
        let mut dec = ChunkDecoder::default();
        let mut input = BytesMut::from(&[0x43u8, 0, 0, 0, 0, 0, 1, 8][..]);
        assert!(matches!(
            dec.decode(&mut input),
            Err(ChunkError::NoPreviousHeader { csid: 3, fmt: 1 })
        ));
        assert!(dec.set_chunk_size(0).is_err());
        assert!(dec.set_chunk_size(0x7FFF_FFFF).is_err());

        // Many chunk streams each opening a 16 MiB message: refused past the stream bound.
        let mut dec = ChunkDecoder::default();
        let mut wire = Vec::new();
        for n in 0..=MAX_PARTIAL_STREAMS as u8 {
            // Two-byte basic headers: chunk stream ids 64 and up.
            wire.extend_from_slice(&[0, n, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0]);
            wire.extend_from_slice(&[0u8; 128]);
        }
        let mut input = BytesMut::from(&wire[..]);
        assert!(matches!(
            dec.decode(&mut input),
            Err(ChunkError::TooMuchBuffered { .. })
        ));

        // Huge messages sent in large chunks: refused past the byte bound.
        let mut dec = ChunkDecoder::default();
        dec.set_chunk_size(8 << 20).expect("valid size");
        let mut wire = Vec::new();
        for csid in [3u8, 4, 5, 6] {
            wire.extend_from_slice(&[csid, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0]);
            wire.extend_from_slice(&vec![0u8; 8 << 20]);
        }
        let mut input = BytesMut::from(&wire[..]);
        assert!(matches!(
            dec.decode(&mut input),
            Err(ChunkError::TooMuchBuffered { .. })
        ));
    }

    #[test]
    fn garbage_never_panics() {
        // A fixed pseudo-random stream; the decoder must only ever return errors or wait.
        let mut seed = 0x1234_5678u32;
        for _ in 0..200 {
            let mut bytes = Vec::new();
            for _ in 0..600 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                bytes.push(seed as u8);
            }
            let mut dec = ChunkDecoder::default();
            let mut input = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = dec.decode(&mut input) {}
        }
    }
}

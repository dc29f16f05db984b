//! The server side of the RTMP handshake, sans IO: C0+C1 in, S0+S1+S2 out in one buffer, then
//! C2 counted off and the rest handed to the chunk decoder.
//!
//! Both forms clients use are answered:
//! - the Flash Player 9 digest handshake (what FFmpeg, OBS, GStreamer and Flash send): C1
//!   carries an HMAC-SHA256 digest at an offset given by four of its bytes (one of two
//!   schemes), keyed with the player's constant. S1 then carries the server's digest and S2
//!   ends with a signature derived from the client's digest, both of which FFmpeg verifies;
//! - the original handshake of the RTMP specification: when no digest is found, S2 echoes C1.
//!
//! C2 is not verified (Flash Players sign it in a way third-party descriptions of the
//! handshake do not reproduce; the connection's own commands follow at once anyway).
//!
//! This replaces rml_rtmp's `Handshake` on the server's join path, where it was a tenth of a
//! join's CPU (it draws each random byte from its own 32-bit ChaCha output, copies the packets
//! byte by byte into new vectors for every HMAC, and allocates 3 KiB per connection up front);
//! the wire format is the same (docs/architecture.md, "Hand-written parts"). The client side
//! (relays, the load tool) keeps rml_rtmp's.

use bytes::BytesMut;
use rand::RngCore;
use ring::hmac;

/// C1, S1, C2 and S2 are this long; C0 and S0 are one byte.
pub const PACKET: usize = 1536;
const DIGEST: usize = 32;
/// S1's version field (any non-zero version tells a client the digest form is answered).
const SERVER_VERSION: [u8; 4] = [0x80, 0x00, 0x07, 0x02];
/// The plain RTMP version byte of C0 and S0 (6 and above ask for encryption: refused).
const RTMP_VERSION: u8 = 3;

const PLAYER_KEY: &[u8] = b"Genuine Adobe Flash Player 001";
const SERVER_KEY: &[u8] = b"Genuine Adobe Flash Media Server 001";
/// The 32 bytes appended to the server's constant for the key of S2's signature.
const KEY_TAIL: [u8; 32] = [
    0xf0, 0xee, 0xc2, 0x4a, 0x80, 0x68, 0xbe, 0xe8, 0x2e, 0x00, 0xd0, 0xd1, 0x02, 0x9e, 0x7e, 0x57,
    0x6e, 0xec, 0x5d, 0x2d, 0x29, 0x80, 0x6f, 0xab, 0x93, 0xb8, 0xe6, 0x36, 0xcf, 0xeb, 0x31, 0xae,
];

/// What went wrong in a handshake.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    /// C0 asked for another version (6 and above: RTMPE, not offered).
    #[error("unsupported RTMP version {0}")]
    Version(u8),
}

/// Where the handshake is.
#[derive(Debug)]
enum Stage {
    /// Collecting C0 and C1; `partial` holds what came so far when they arrived in pieces.
    C0C1 {
        partial: Vec<u8>,
    },
    /// S0, S1 and S2 sent; this many bytes of C2 are still to come.
    C2 {
        left: usize,
    },
    Done,
}

/// What [`ServerHandshake::feed`] made of the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every byte was the handshake's; more is to come.
    InProgress,
    /// The handshake ended after `consumed` of the bytes; the rest are the client's chunks.
    Done {
        /// Bytes of the input that were the handshake's.
        consumed: usize,
    },
}

/// The server's side of one connection's handshake.
#[derive(Debug)]
pub struct ServerHandshake {
    stage: Stage,
}

impl Default for ServerHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerHandshake {
    /// A handshake waiting for C0 and C1.
    pub fn new() -> Self {
        ServerHandshake {
            stage: Stage::C0C1 {
                partial: Vec::new(),
            },
        }
    }

    /// Takes the client's bytes; the answer (S0, S1 and S2 together, once C1 is complete) is
    /// appended to `output`.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        output: &mut BytesMut,
    ) -> Result<Progress, HandshakeError> {
        let mut consumed = 0;
        if let Stage::C0C1 { partial } = &mut self.stage {
            // C0 is judged as soon as it comes: a TLS hello or an HTTP request is refused
            // without waiting for 1536 more bytes.
            match partial.first().or(bytes.first()) {
                Some(&RTMP_VERSION) => {}
                Some(&other) => return Err(HandshakeError::Version(other)),
                None => return Ok(Progress::InProgress),
            }
            let c0c1 = if partial.is_empty() && bytes.len() > PACKET {
                // The usual case: C0 and C1 in one read, answered without a copy.
                consumed = 1 + PACKET;
                &bytes[..consumed]
            } else {
                consumed = (1 + PACKET - partial.len()).min(bytes.len());
                partial.extend_from_slice(&bytes[..consumed]);
                if partial.len() < 1 + PACKET {
                    return Ok(Progress::InProgress);
                }
                &partial[..]
            };
            answer(c0c1[1..].try_into().expect("C1 is a packet"), output);
            self.stage = Stage::C2 { left: PACKET };
        }
        if let Stage::C2 { left } = &mut self.stage {
            let take = (*left).min(bytes.len() - consumed);
            *left -= take;
            consumed += take;
            if *left > 0 {
                return Ok(Progress::InProgress);
            }
            self.stage = Stage::Done;
            return Ok(Progress::Done { consumed });
        }
        Ok(Progress::Done { consumed: 0 })
    }
}

/// Appends S0, S1 and S2 for C1.
fn answer(c1: &[u8; PACKET], output: &mut BytesMut) {
    let start = output.len();
    output.resize(start + 1 + 2 * PACKET, 0);
    let (s0, rest) = output[start..].split_at_mut(1);
    let (s1, s2) = rest.split_at_mut(PACKET);
    s0[0] = RTMP_VERSION;
    let mut rng = rand::thread_rng();

    // S1: time zero, the version, random bytes, and the server's digest at the offset the
    // second scheme gives (the one rml_rtmp, FFmpeg and SRS servers use).
    s1[4..8].copy_from_slice(&SERVER_VERSION);
    rng.fill_bytes(&mut s1[8..]);
    let offset = digest_offset(s1, Scheme::Second);
    let digest = digest_of(s1, offset, &SERVER_DIGEST_KEY);
    s1[offset..offset + DIGEST].copy_from_slice(digest.as_ref());

    match client_digest(c1) {
        Some(client) => {
            // S2: random bytes signed with a key made from the client's digest.
            rng.fill_bytes(&mut s2[..PACKET - DIGEST]);
            let key = hmac::Key::new(
                hmac::HMAC_SHA256,
                hmac::sign(&SIGNATURE_KEY, &client).as_ref(),
            );
            let signature = hmac::sign(&key, &s2[..PACKET - DIGEST]);
            s2[PACKET - DIGEST..].copy_from_slice(signature.as_ref());
        }
        // The original handshake: S2 is C1 echoed.
        None => s2.copy_from_slice(c1),
    }
}

/// Where a packet's digest may be: the two schemes of the digest handshake.
#[derive(Debug, Clone, Copy)]
enum Scheme {
    /// Digest block first: the offset's four bytes at 8.
    First,
    /// Key block first: the offset's four bytes at 772.
    Second,
}

fn digest_offset(packet: &[u8], scheme: Scheme) -> usize {
    let base = match scheme {
        Scheme::First => 8,
        Scheme::Second => 772,
    };
    let sum: usize = packet[base..base + 4].iter().map(|&b| usize::from(b)).sum();
    sum % 728 + base + 4
}

/// The HMAC of the packet without the 32 bytes at `offset`.
fn digest_of(packet: &[u8], offset: usize, key: &hmac::Key) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    context.update(&packet[..offset]);
    context.update(&packet[offset + DIGEST..]);
    context.sign()
}

/// The client's digest, if C1 carries a valid one under either scheme.
fn client_digest(c1: &[u8; PACKET]) -> Option<[u8; DIGEST]> {
    [Scheme::First, Scheme::Second]
        .into_iter()
        .find_map(|scheme| {
            let offset = digest_offset(c1, scheme);
            let claimed = &c1[offset..offset + DIGEST];
            // Not secret (the key is public): a plain comparison is enough.
            (digest_of(c1, offset, &PLAYER_DIGEST_KEY).as_ref() == claimed)
                .then(|| claimed.try_into().expect("a digest is 32 bytes"))
        })
}

/// Keys, made once: each is hashed into HMAC's inner and outer state when built.
static PLAYER_DIGEST_KEY: std::sync::LazyLock<hmac::Key> =
    std::sync::LazyLock::new(|| hmac::Key::new(hmac::HMAC_SHA256, PLAYER_KEY));
static SERVER_DIGEST_KEY: std::sync::LazyLock<hmac::Key> =
    std::sync::LazyLock::new(|| hmac::Key::new(hmac::HMAC_SHA256, SERVER_KEY));
static SIGNATURE_KEY: std::sync::LazyLock<hmac::Key> = std::sync::LazyLock::new(|| {
    let mut key = SERVER_KEY.to_vec();
    key.extend_from_slice(&KEY_TAIL);
    hmac::Key::new(hmac::HMAC_SHA256, &key)
});

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};

    /// The client's C2 for the server's S0+S1+S2.
    fn client_c2(client: &mut Handshake, s: &[u8]) -> Vec<u8> {
        match client.process_bytes(s).expect("client takes s0s1s2") {
            HandshakeProcessResult::Completed { response_bytes, .. } => response_bytes,
            other => panic!("client did not complete: {other:?}"),
        }
    }

    /// rml_rtmp's client (the digest form) completes against this server, with the client's
    /// first chunk bytes after C2 handed back untouched.
    #[test]
    fn digest_handshake_with_rml_rtmp_client() {
        let mut client = Handshake::new(PeerType::Client);
        let c0c1 = client.generate_outbound_p0_and_p1().expect("c0c1");
        let mut server = ServerHandshake::new();
        let mut s = BytesMut::new();
        assert_eq!(server.feed(&c0c1, &mut s), Ok(Progress::InProgress));
        assert_eq!(s.len(), 1 + 2 * PACKET);
        let c2 = client_c2(&mut client, &s);
        let mut input = c2.clone();
        input.extend_from_slice(b"chunks");
        let mut more = BytesMut::new();
        let progress = server.feed(&input, &mut more).expect("C2");
        assert_eq!(progress, Progress::Done { consumed: PACKET });
        assert!(more.is_empty());
        assert_eq!(&input[PACKET..], b"chunks");
    }

    /// S1's digest and S2's signature are what a client that verifies them (as FFmpeg does)
    /// computes from its own C1.
    #[test]
    fn server_digest_and_signature_verify() {
        let mut client = Handshake::new(PeerType::Client);
        let c0c1 = client.generate_outbound_p0_and_p1().expect("c0c1");
        let c1: &[u8; PACKET] = c0c1[1..].try_into().expect("C1");
        let client_digest = client_digest(c1).expect("rml_rtmp's C1 carries a digest");
        let mut s = BytesMut::new();
        ServerHandshake::new().feed(&c0c1, &mut s).expect("C0C1");
        let (s1, s2) = (&s[1..1 + PACKET], &s[1 + PACKET..]);
        // S1: the server's key, at the second scheme's offset.
        let offset = digest_offset(s1, Scheme::Second);
        let server_key = hmac::Key::new(hmac::HMAC_SHA256, SERVER_KEY);
        assert_eq!(
            digest_of(s1, offset, &server_key).as_ref(),
            &s1[offset..offset + DIGEST]
        );
        // S2: keyed by HMAC(server key + tail, client digest).
        let mut long = SERVER_KEY.to_vec();
        long.extend_from_slice(&KEY_TAIL);
        let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &long), &client_digest);
        let key = hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref());
        assert_eq!(
            hmac::sign(&key, &s2[..PACKET - DIGEST]).as_ref(),
            &s2[PACKET - DIGEST..]
        );
    }

    /// A C1 without a digest (the original handshake) gets S2 = C1 echoed.
    #[test]
    fn plain_handshake_echoes_c1() {
        let mut c0c1 = vec![3u8];
        c0c1.extend((0..PACKET).map(|i| (i * 7 % 251) as u8));
        c0c1[5..9].copy_from_slice(&[0; 4]);
        let mut s = BytesMut::new();
        ServerHandshake::new().feed(&c0c1, &mut s).expect("C0C1");
        assert_eq!(s[0], 3);
        assert_eq!(&s[1 + PACKET..], &c0c1[1..]);
    }

    /// Bytes one at a time: the same progress, the answer once C1 is complete.
    #[test]
    fn byte_at_a_time() {
        let mut client = Handshake::new(PeerType::Client);
        let c0c1 = client.generate_outbound_p0_and_p1().expect("c0c1");
        let mut server = ServerHandshake::new();
        let mut s = BytesMut::new();
        for (i, b) in c0c1.iter().enumerate() {
            assert_eq!(server.feed(&[*b], &mut s), Ok(Progress::InProgress));
            assert_eq!(s.is_empty(), i < c0c1.len() - 1);
        }
        let c2 = client_c2(&mut client, &s);
        for b in &c2[..PACKET - 1] {
            assert_eq!(server.feed(&[*b], &mut s), Ok(Progress::InProgress));
        }
        assert_eq!(
            server.feed(&[c2[PACKET - 1], 9], &mut s),
            Ok(Progress::Done { consumed: 1 })
        );
    }

    /// C0, C1 and C2 in one read (a client that does not wait for S1): done at once.
    #[test]
    fn everything_in_one_read() {
        let mut input = vec![3u8];
        input.extend(std::iter::repeat_n(1u8, 2 * PACKET));
        input.push(0x42);
        let mut s = BytesMut::new();
        assert_eq!(
            ServerHandshake::new().feed(&input, &mut s),
            Ok(Progress::Done {
                consumed: 1 + 2 * PACKET
            })
        );
        assert_eq!(s.len(), 1 + 2 * PACKET);
    }

    /// Another version is refused at its first byte, alone or with C1.
    #[test]
    fn other_versions_refused() {
        let mut input = vec![6u8];
        input.extend(std::iter::repeat_n(0u8, PACKET));
        let mut s = BytesMut::new();
        assert_eq!(
            ServerHandshake::new().feed(&input, &mut s),
            Err(HandshakeError::Version(6))
        );
        assert_eq!(
            ServerHandshake::new().feed(b"G", &mut s),
            Err(HandshakeError::Version(b'G'))
        );
        assert!(s.is_empty());
        let mut server = ServerHandshake::new();
        assert_eq!(server.feed(&[], &mut s), Ok(Progress::InProgress));
        assert_eq!(server.feed(&[3], &mut s), Ok(Progress::InProgress));
    }
}

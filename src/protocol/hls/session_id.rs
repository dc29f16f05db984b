//! The session id an HLS viewer carries in the URIs of the playlists it is served: which
//! session the request belongs to (its clientid), until when it is good, and an HMAC over both
//! with a key only the server knows. A request whose id is forged, altered or expired is told
//! so here, before anything else about it is looked at.
//!
//! Form: `{clientid}.{expires_ms}.{mac}`, the numbers in decimal, the MAC (HMAC-SHA256,
//! truncated to 128 bits) in lowercase hex. It holds no secret and names nothing but the
//! session, so it is safe in URLs and logs; the key is made at start-up and never leaves the
//! process, so ids of an earlier run are forged ids to this one.

use ring::hmac;

/// Bytes of the MAC kept (128 bits).
const MAC_BYTES: usize = 16;
/// The longest id [`verify`] reads: two u64s, two dots, the MAC.
const MAX_LEN: usize = 20 + 1 + 20 + 1 + 2 * MAC_BYTES;

/// Why a session id is refused (the request gets `403`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not an id this server made: malformed, or its MAC does not match.
    #[error("forged session id")]
    Forged,
    /// Made here, but past its expiry.
    #[error("expired session id")]
    Expired,
}

/// Issues and checks session ids with one key.
pub struct SessionIds {
    key: hmac::Key,
}

impl std::fmt::Debug for SessionIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionIds")
    }
}

impl SessionIds {
    /// Ids under `key` (at least 32 random bytes: the server makes it at start-up).
    pub fn new(key: &[u8]) -> SessionIds {
        SessionIds {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    fn mac(&self, body: &str) -> String {
        let tag = hmac::sign(&self.key, body.as_bytes());
        tag.as_ref()[..MAC_BYTES]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The id of session `clientid`, good until `expires_ms` (Unix milliseconds).
    pub fn issue(&self, clientid: u64, expires_ms: u64) -> String {
        let body = format!("{clientid}.{expires_ms}");
        let mac = self.mac(&body);
        format!("{body}.{mac}")
    }

    /// The clientid of `id` when this server issued it and it has not expired at `now_ms`.
    /// The MAC is compared in constant time; an expired id is only called expired when its
    /// MAC holds (a forged one is forged, whatever expiry it claims).
    pub fn verify(&self, id: &str, now_ms: u64) -> Result<u64, Refused> {
        if id.len() > MAX_LEN {
            return Err(Refused::Forged);
        }
        let (body, mac) = id.rsplit_once('.').ok_or(Refused::Forged)?;
        let (clientid, expires) = body.split_once('.').ok_or(Refused::Forged)?;
        let number = |s: &str| -> Result<u64, Refused> {
            // Decimal digits only: no sign, no spaces, so one id has one spelling.
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Refused::Forged);
            }
            s.parse().map_err(|_| Refused::Forged)
        };
        let (clientid, expires) = (number(clientid)?, number(expires)?);
        let mac = unhex(mac).ok_or(Refused::Forged)?;
        if mac.len() != MAC_BYTES {
            return Err(Refused::Forged);
        }
        let tag = hmac::sign(&self.key, body.as_bytes());
        let same = tag.as_ref()[..MAC_BYTES]
            .iter()
            .zip(&mac)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        if !same {
            return Err(Refused::Forged);
        }
        if now_ms >= expires {
            return Err(Refused::Expired);
        }
        Ok(clientid)
    }
}

/// Lowercase hex to bytes; `None` for anything else.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn an_issued_id_names_its_session_until_it_expires() {
        let ids = SessionIds::new(KEY);
        let id = ids.issue(1_839_377_844_487_174, 1_000_000);
        assert!(id.starts_with("1839377844487174.1000000."), "{id}");
        assert_eq!(id.len(), "1839377844487174.1000000.".len() + 32);
        assert_eq!(ids.verify(&id, 999_999), Ok(1_839_377_844_487_174));
        assert_eq!(ids.verify(&id, 1_000_000), Err(Refused::Expired));
    }

    #[test]
    fn another_key_or_any_changed_character_is_forged() {
        let ids = SessionIds::new(KEY);
        let id = ids.issue(42, 5_000);
        let other = SessionIds::new(b"another key of thirty-two bytes!");
        assert_eq!(other.verify(&id, 0), Err(Refused::Forged));
        // Every position changed to every other character of the id's alphabet: forged,
        // never another session and never "expired" (which would say the MAC held).
        for at in 0..id.len() {
            for c in "0123456789abcdef.x-+ ".chars() {
                let mut changed: Vec<char> = id.chars().collect();
                if changed[at] == c {
                    continue;
                }
                changed[at] = c;
                let changed: String = changed.into_iter().collect();
                assert_eq!(ids.verify(&changed, 0), Err(Refused::Forged), "{changed}");
            }
        }
        // A later expiry with the old MAC: forged.
        let mac = id.rsplit_once('.').map(|(_, m)| m).unwrap_or_default();
        assert_eq!(
            ids.verify(&format!("42.9999999.{mac}"), 0),
            Err(Refused::Forged)
        );
    }

    #[test]
    fn malformed_ids_are_forged_and_never_panic() {
        let ids = SessionIds::new(KEY);
        for id in [
            "",
            ".",
            "..",
            "1.2",
            "1.2.",
            "a.b.c",
            "1.2.zz",
            "1.2.abc",
            "-1.2.00",
            "+1.2.00",
            "1.2.3.4",
            "18446744073709551616.1.00000000000000000000000000000000",
            "é.é.é",
        ] {
            assert_eq!(ids.verify(id, 0), Err(Refused::Forged), "{id:?}");
        }
        let long = "1".repeat(10_000);
        assert_eq!(ids.verify(&long, 0), Err(Refused::Forged));
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let len = (rng % 80) as usize;
            let s: String = (0..len)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    b"0123456789abcdef.x"[(rng % 18) as usize] as char
                })
                .collect();
            let _ = ids.verify(&s, 0);
        }
    }
}

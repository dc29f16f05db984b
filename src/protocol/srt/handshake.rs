//! The SRT handshake policy: what the server decides about a caller before srt-protocol's
//! handshake accepts it (which keys, or which reject code), how its streamid is read, and
//! the two corrections srt-protocol 0.4.4's answers need. Pure functions over handshake
//! packets and settings: the listener and the session actor apply them.

use std::time::Duration;

use srt_protocol::options::{KeySize, Passphrase};
use srt_protocol::packet::{
    ControlPacket, ControlTypes, CoreRejectReason, HandshakeControlInfo, HandshakeVsInfo, Packet,
    RejectReason, ServerRejectReason, ShakeType, SocketId, SrtControlPacket,
};
use srt_protocol::settings::KeySettings;
use streamgate_actors::notify::{Decision, DenyReason};

/// What a caller's conclusion handshake carried as key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMaterial {
    /// None: the caller does not encrypt.
    None,
    /// A key material request: the caller encrypts.
    Request,
    /// Something else where the request belongs (no libsrt sends that).
    Malformed,
}

/// The key settings to accept a caller with, or why it must be refused. `key_material` is what
/// its conclusion handshake carried, `caller` the key size it announced (0 when it left the
/// choice to the listener, as FFmpeg does by default).
///
/// This is what keeps srt-protocol 0.4.4's handshake away from its `unimplemented!()`
/// branches: it is never told to accept a caller that sent key material without keys
/// ("expected no secrets") or with other keys than a key material request ("Expected kmreq"),
/// and never with another key size than the caller's ("Key size mismatch").
///
/// - no `<passphrase>`, caller does not encrypt: accept without keys;
/// - no `<passphrase>`, caller encrypts: refuse with 11 (`SRT_REJ_UNSECURE`);
/// - `<passphrase>`, caller does not encrypt: refuse with 11;
/// - `<passphrase>`, caller encrypts: accept with the passphrase and the caller's key length,
///   whatever `<pbkeylen>` says (a wrong passphrase is then refused by SRT with 10,
///   `SRT_REJ_BADSECRET`).
pub fn key_plan(
    passphrase: Option<&Passphrase>,
    key_material: KeyMaterial,
    caller: KeySize,
) -> Result<Option<KeySettings>, (RejectReason, &'static str)> {
    let unsecure = RejectReason::Core(CoreRejectReason::Unsecure);
    match (passphrase, key_material) {
        (_, KeyMaterial::Malformed) => Err((
            unsecure,
            "the caller sent key material that is not a key material request",
        )),
        (None, KeyMaterial::None) => Ok(None),
        (None, KeyMaterial::Request) => Err((
            unsecure,
            "the caller encrypts (it set a passphrase) but this server has no <passphrase>",
        )),
        (Some(_), KeyMaterial::None) => Err((
            unsecure,
            "this server requires encryption (<passphrase>) but the caller set no passphrase",
        )),
        (Some(passphrase), KeyMaterial::Request) => Ok(Some(KeySettings {
            key_size: caller,
            passphrase: passphrase.clone(),
        })),
    }
}

/// The streamid to parse: FFmpeg before 6.0 sends the `streamid` URL option without
/// URL-decoding it, so `srt://host:port?streamid=%23!::r=live/cam,m=publish` — the way to put
/// a `#` in a URL — arrives as `%23!::...`. Such a streamid (one starting with `%23`) is
/// decoded once; any other is parsed as it came.
pub fn url_decoded_streamid(raw: &str) -> std::borrow::Cow<'_, str> {
    if !raw.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("%23")) {
        return std::borrow::Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(decoded) => std::borrow::Cow::Owned(decoded),
        Err(_) => std::borrow::Cow::Borrowed(raw),
    }
}

/// The reject code a libsrt caller reports for `reason` (`srt_getrejectreason`): SRT carries
/// it in the handshake offset by 1000.
pub fn libsrt_code(reason: RejectReason) -> i32 {
    i32::from(reason) - 1000
}

/// The reject code of a handshake the hooks refused: 1401 when a hook answered 401, 1403 for
/// any other refusal (another status, a timeout, an unreachable hook server).
pub fn hook_refusal(decision: &Decision) -> RejectReason {
    match decision {
        Decision::Deny(DenyReason::Status(401)) => {
            RejectReason::Server(ServerRejectReason::Unauthorized)
        }
        _ => RejectReason::Server(ServerRejectReason::Forbidden),
    }
}

/// A caller whose conclusion response was lost repeats its conclusion request, addressed (as
/// every request before the connection exists) to socket id 0. srt-protocol's connection
/// answers a handshake with the conclusion response again, but drops any packet not addressed
/// to its own socket id first ("invalid socket id"), so the caller would never get the answer
/// and would repeat its request until it gives up. Such a request, from this connection's
/// caller (its socket id), is addressed to the connection, so that srt-protocol answers it.
/// True when the packet was changed.
pub fn readdress_repeated_conclusion(
    packet: &mut Packet,
    local: SocketId,
    remote: SocketId,
) -> bool {
    match packet {
        Packet::Control(ControlPacket {
            dest_sockid,
            control_type: ControlTypes::Handshake(shake),
            ..
        }) if *dest_sockid == SocketId(0)
            && shake.shake_type == ShakeType::Conclusion
            && shake.socket_id == remote =>
        {
            *dest_sockid = local;
            true
        }
        _ => false,
    }
}

/// srt-protocol 0.4.4's listener answers a conclusion with its own configured latencies in the
/// HSRSP extension, while the connection uses the larger of its own and the caller's
/// (`send_tsbpd_latency`, `recv_tsbpd_latency`), as SRT agrees them. A libsrt caller takes the
/// HSRSP's values as the agreement: a player that asked for 400 ms of a server configured with
/// 120 ms played with 120 ms of TSBPD latency (its retransmissions then came too late on a
/// lossy path), while the server's sender kept 400 ms. The response — and the copy the
/// connection answers a repeated conclusion with — is given the latencies the connection uses:
/// the caller's receive latency is the server's send latency and the other way round. True
/// when it changed anything.
pub fn announce_negotiated_latency(
    control: &mut ControlTypes,
    send: Duration,
    recv: Duration,
) -> bool {
    let ControlTypes::Handshake(HandshakeControlInfo {
        info: HandshakeVsInfo::V5(info),
        ..
    }) = control
    else {
        return false;
    };
    let Some(SrtControlPacket::HandshakeResponse(hs)) = &mut info.ext_hs else {
        return false;
    };
    let changed = hs.send_latency != send || hs.recv_latency != recv;
    hs.send_latency = send;
    hs.recv_latency = recv;
    changed
}

/// Whether `packet` is a handshake (a caller that may not have the conclusion response yet).
pub fn is_handshake(packet: &Packet) -> bool {
    matches!(
        packet,
        Packet::Control(ControlPacket {
            control_type: ControlTypes::Handshake(_),
            ..
        })
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use srt_protocol::options::PacketSize;

    use super::*;

    fn handshake(shake_type: ShakeType, dest: u32, from: u32) -> Packet {
        use srt_protocol::options::PacketCount;
        use srt_protocol::packet::{HandshakeControlInfo, SeqNumber, SocketType, TimeStamp};
        Packet::Control(ControlPacket {
            timestamp: TimeStamp::from_micros(0),
            dest_sockid: SocketId(dest),
            control_type: ControlTypes::Handshake(HandshakeControlInfo {
                init_seq_num: SeqNumber::new_truncate(1),
                max_packet_size: PacketSize(1500),
                max_flow_size: PacketCount(8192),
                shake_type,
                socket_id: SocketId(from),
                syn_cookie: 7,
                peer_addr: Ipv4Addr::LOCALHOST.into(),
                info: HandshakeVsInfo::V4(SocketType::Datagram),
            }),
        })
    }

    #[test]
    fn a_repeated_conclusion_of_the_caller_is_addressed_to_its_connection() {
        let (local, remote) = (SocketId(11), SocketId(22));
        let mut repeated = handshake(ShakeType::Conclusion, 0, 22);
        assert!(readdress_repeated_conclusion(&mut repeated, local, remote));
        assert_eq!(repeated, handshake(ShakeType::Conclusion, 11, 22));
        // Already addressed, another caller's, or not a conclusion: left as they are.
        for (shake_type, dest, from) in [
            (ShakeType::Conclusion, 11, 22),
            (ShakeType::Conclusion, 0, 33),
            (ShakeType::Induction, 0, 22),
        ] {
            let mut packet = handshake(shake_type, dest, from);
            assert!(!readdress_repeated_conclusion(&mut packet, local, remote));
            assert_eq!(packet, handshake(shake_type, dest, from));
        }
    }

    #[test]
    fn the_conclusion_response_announces_the_latencies_the_connection_uses() {
        use srt_protocol::options::SrtVersion;
        use srt_protocol::packet::{HsV5Info, SrtHandshake, SrtShakeFlags};
        let ms = Duration::from_millis;
        let response = |send, recv| {
            let Packet::Control(mut control) = handshake(ShakeType::Conclusion, 22, 11) else {
                unreachable!("a control packet");
            };
            if let ControlTypes::Handshake(shake) = &mut control.control_type {
                shake.info = HandshakeVsInfo::V5(HsV5Info {
                    key_size: KeySize::Unspecified,
                    ext_hs: Some(SrtControlPacket::HandshakeResponse(SrtHandshake {
                        version: SrtVersion::CURRENT,
                        flags: SrtShakeFlags::SUPPORTED,
                        send_latency: send,
                        recv_latency: recv,
                    })),
                    ext_km: None,
                    ext_group: None,
                    sid: None,
                });
            }
            control.control_type
        };
        // Configured 120 ms, the caller asked for 400 ms: the connection uses 400 both ways.
        let mut answer = response(ms(120), ms(120));
        assert!(announce_negotiated_latency(&mut answer, ms(400), ms(400)));
        assert_eq!(answer, response(ms(400), ms(400)));
        assert!(!announce_negotiated_latency(&mut answer, ms(400), ms(400)));
        // Anything but a response with HSRSP is left alone.
        let Packet::Control(request) = handshake(ShakeType::Conclusion, 0, 22) else {
            unreachable!("a control packet");
        };
        let mut other = request.control_type.clone();
        assert!(!announce_negotiated_latency(&mut other, ms(400), ms(400)));
        assert_eq!(other, request.control_type);
    }

    fn passphrase() -> Passphrase {
        Passphrase::try_from("0123456789abc".to_owned()).expect("valid passphrase")
    }

    #[test]
    fn key_plan_never_accepts_a_mismatch() {
        use KeyMaterial::{Malformed, None as Plain, Request};
        let sizes = [
            KeySize::Unspecified,
            KeySize::AES128,
            KeySize::AES192,
            KeySize::AES256,
        ];
        for size in sizes {
            // Without a passphrase only a plain caller is accepted, and without keys.
            assert_eq!(key_plan(None, Plain, size), Ok(None));
            let (reason, _) = key_plan(None, Request, size).expect_err("encrypting caller");
            assert_eq!(libsrt_code(reason), 11, "SRT_REJ_UNSECURE");
            // With one, only an encrypting caller, always with its own key size.
            let keys = key_plan(Some(&passphrase()), Request, size)
                .expect("accepted")
                .expect("with keys");
            assert_eq!(keys.key_size, size, "always the caller's key size");
            let (reason, _) = key_plan(Some(&passphrase()), Plain, size).expect_err("plain caller");
            assert_eq!(reason, RejectReason::Core(CoreRejectReason::Unsecure));
            for passphrase in [None, Some(passphrase())] {
                assert!(key_plan(passphrase.as_ref(), Malformed, size).is_err());
            }
        }
    }

    #[test]
    fn a_url_encoded_streamid_is_decoded_once() {
        assert_eq!(
            url_decoded_streamid("%23!::r=live/cam3,m=publish"),
            "#!::r=live/cam3,m=publish"
        );
        assert_eq!(
            url_decoded_streamid("%23%21%3A%3Ar%3Dlive%2Fcam3%2Cm%3Drequest"),
            "#!::r=live/cam3,m=request"
        );
        // Anything else is parsed as sent (the #!:: parser decodes values itself).
        assert_eq!(
            url_decoded_streamid("#!::r=live/a%2Cb,m=publish"),
            "#!::r=live/a%2Cb,m=publish"
        );
        assert_eq!(url_decoded_streamid("live/cam%41"), "live/cam%41");
        assert_eq!(url_decoded_streamid("%2"), "%2");
        assert_eq!(
            url_decoded_streamid("%23%ff"),
            "%23%ff",
            "invalid UTF-8 stays raw"
        );
    }

    #[test]
    fn reject_codes_as_libsrt_reports_them() {
        let code = |d: &Decision| libsrt_code(hook_refusal(d));
        assert_eq!(code(&Decision::Deny(DenyReason::Status(401))), 1401);
        assert_eq!(code(&Decision::Deny(DenyReason::Status(403))), 1403);
        assert_eq!(code(&Decision::Deny(DenyReason::Status(500))), 1403);
        assert_eq!(code(&Decision::Deny(DenyReason::Timeout)), 1403);
        assert_eq!(
            libsrt_code(RejectReason::Server(ServerRejectReason::Notfound)),
            1404
        );
    }
}

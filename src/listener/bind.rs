//! Binding a listener's socket to its section's `<address>`: by default one dual-stack socket
//! on `::` that takes IPv4 and IPv6 clients alike, `0.0.0.0` where the host has no IPv6. And
//! [`canonical`]: the address a client is known by, whichever family the socket has.
//!
//! `IPV6_V6ONLY` is set off explicitly on a `::` socket rather than left to the host's
//! `net.ipv6.bindv6only` default, so the same config means the same thing on every host.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Once;

use socket2::{Domain, Socket, Type};

/// Said once per process, for the first listener that fell back to IPv4.
static NO_IPV6: Once = Once::new();

/// The address a client is known by: an IPv4 client of a dual-stack socket shows as an
/// IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) and is `127.0.0.1` here; everything else is
/// left as it is.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Whether a failure to open the dual-stack socket means "no IPv6 here" (fall back to IPv4)
/// rather than a problem IPv4 would have too: a port taken, or one the process may not bind.
fn no_ipv6(e: &io::Error) -> bool {
    !matches!(
        e.kind(),
        io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied
    )
}

/// A socket of type `ty` bound to `address` (None: dual-stack `::`, falling back to
/// `0.0.0.0`) and `port`, with `configure` applied before the bind. An explicit `::` is
/// dual-stack too, without the fallback.
pub fn bind(
    address: Option<IpAddr>,
    port: u16,
    ty: Type,
    protocol: &'static str,
    configure: impl Fn(&Socket) -> io::Result<()>,
) -> io::Result<Socket> {
    let open = |ip: IpAddr| -> io::Result<Socket> {
        let addr = SocketAddr::new(ip, port);
        let socket = Socket::new(Domain::for_address(addr), ty, None)?;
        if ip == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
            socket.set_only_v6(false)?;
        }
        configure(&socket)?;
        socket.bind(&addr.into())?;
        Ok(socket)
    };
    match address {
        Some(ip) => open(ip),
        None => match open(Ipv6Addr::UNSPECIFIED.into()) {
            Ok(socket) => Ok(socket),
            Err(e) if no_ipv6(&e) => {
                let socket = open(Ipv4Addr::UNSPECIFIED.into())?;
                NO_IPV6.call_once(|| {
                    tracing::warn!(
                        protocol,
                        port,
                        error = %e,
                        "no IPv6 on this host: listening on 0.0.0.0 (IPv4 only)"
                    );
                });
                Ok(socket)
            }
            Err(e) => Err(e),
        },
    }
}

/// A listening TCP socket (address reuse on, `backlog` pending connections), non-blocking,
/// with `TCP_NODELAY` on: the sockets it accepts inherit it (on Linux), so a join makes no
/// system call of its own for it.
pub fn tcp(
    address: Option<IpAddr>,
    port: u16,
    backlog: i32,
    protocol: &'static str,
) -> io::Result<std::net::TcpListener> {
    let socket = bind(address, port, Type::STREAM, protocol, |s| {
        s.set_reuse_address(true)?;
        s.set_tcp_nodelay(true)
    })?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv4_clients_are_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().expect("addr");
        assert_eq!(canonical(mapped).to_string(), "127.0.0.1:5000");
        let v6: SocketAddr = "[::1]:5000".parse().expect("addr");
        assert_eq!(canonical(v6), v6);
        let v4: SocketAddr = "192.0.2.1:1".parse().expect("addr");
        assert_eq!(canonical(v4), v4);
    }

    #[test]
    fn only_a_missing_ipv6_falls_back() {
        assert!(!no_ipv6(&io::ErrorKind::AddrInUse.into()));
        assert!(!no_ipv6(&io::ErrorKind::PermissionDenied.into()));
        assert!(no_ipv6(&io::ErrorKind::AddrNotAvailable.into()));
        assert!(no_ipv6(&io::Error::other("address family not supported")));
    }

    #[test]
    fn the_default_takes_both_families() {
        let listener = tcp(None, 0, 16, "test").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        for client in ["127.0.0.1", "::1"] {
            let ip: IpAddr = client.parse().expect("ip");
            std::net::TcpStream::connect((ip, port)).expect("connect");
            let (_, peer) = loop {
                match listener.accept() {
                    Ok(accepted) => break accepted,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(5))
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            };
            assert_eq!(canonical(peer).ip(), ip);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn accepted_sockets_inherit_no_delay() {
        let listener = tcp(Some(Ipv4Addr::LOCALHOST.into()), 0, 16, "test").expect("bind");
        listener.set_nonblocking(false).expect("blocking");
        let port = listener.local_addr().expect("addr").port();
        let _client = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        assert!(accepted.nodelay().expect("TCP_NODELAY"));
    }

    #[test]
    fn an_ipv4_address_takes_no_ipv6_client() {
        let listener = tcp(Some(Ipv4Addr::LOCALHOST.into()), 0, 16, "test").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(std::net::TcpStream::connect((Ipv6Addr::LOCALHOST, port)).is_err());
    }
}

//! Listening sockets: the address forms of `http-socket` and friends, bound or inherited.
//!
//! The master binds (or inherits from systemd or from its previous image) every listener once and
//! keeps its copies for its whole life, so the backlog survives worker deaths and reloads. Workers
//! get duplicates of the descriptors in their [`crate::WorkerContext`].

use crate::config::{ServerConfig, SocketSpec};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

/// A bound (or inherited) listening socket.
#[derive(Debug)]
pub enum ListenSocket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl ListenSocket {
    fn fd(&self) -> RawFd {
        match self {
            ListenSocket::Tcp(l) => l.as_raw_fd(),
            ListenSocket::Unix(l) => l.as_raw_fd(),
        }
    }

    fn try_clone(&self) -> std::io::Result<ListenSocket> {
        Ok(match self {
            ListenSocket::Tcp(l) => ListenSocket::Tcp(l.try_clone()?),
            ListenSocket::Unix(l) => ListenSocket::Unix(l.try_clone()?),
        })
    }
}

/// A listener as configured: the socket, its configured name and its protocol flags.
#[derive(Debug)]
pub struct Listener {
    pub socket: ListenSocket,
    /// The address as written in the configuration (`127.0.0.1:8000`, `:8000`, a path).
    pub name: String,
    /// Keep-alive connections are allowed (`http11-socket`, `http` + `http-keepalive`).
    pub keep_alive: bool,
}

impl Listener {
    /// The raw descriptor (kept open by the master, duplicated for workers).
    pub fn raw_fd(&self) -> RawFd {
        self.socket.fd()
    }

    /// A duplicate for a worker (same open file description, same queue).
    pub fn try_clone(&self) -> std::io::Result<Listener> {
        Ok(Listener {
            socket: self.socket.try_clone()?,
            name: self.name.clone(),
            keep_alive: self.keep_alive,
        })
    }
}

/// A parsed address, normalised for matching inherited descriptors by `getsockname`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
    Abstract(Vec<u8>),
}

/// Parses one socket option value (2.2 address forms).
pub fn parse_address(text: &str) -> Result<Address, String> {
    let invalid = || format!("invalid socket address: {text}");
    if let Some(name) = text.strip_prefix('@') {
        return Ok(Address::Abstract(name.as_bytes().to_vec()));
    }
    if !text.contains(':') {
        return Ok(Address::Unix(PathBuf::from(text)));
    }
    if text.starts_with('[') {
        return text
            .parse::<SocketAddr>()
            .map(Address::Tcp)
            .map_err(|_| invalid());
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(invalid)?;
    let port: u16 = port.parse().map_err(|_| invalid())?;
    if host.is_empty() {
        return Ok(Address::Tcp(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port,
        )));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Address::Tcp(SocketAddr::new(ip, port)));
    }
    // A host name is resolved once, at startup: first IPv4 address.
    let resolved = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("unable to resolve {host}: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("unable to resolve {host}: no IPv4 address"))?;
    Ok(Address::Tcp(resolved))
}

/// A listener held by the master, with what vacuum and shutdown need to know.
#[derive(Debug)]
pub struct MasterListener {
    pub listener: Listener,
    pub address: Address,
    /// Bound by us (shut down on graceful shutdown; vacuumed), not inherited from systemd.
    pub self_bound: bool,
    /// The Unix socket file we created and its inode (vacuum skips a replaced file).
    pub unix_file: Option<(PathBuf, u64)>,
}

/// Binds one configured socket; returns it with its log line.
pub fn bind(
    index: usize,
    spec: &SocketSpec,
    config: &ServerConfig,
) -> Result<(MasterListener, String), String> {
    let address = match parse_address(&spec.address)? {
        Address::Unix(path) if config.abstract_socket => {
            Address::Abstract(path.as_os_str().as_encoded_bytes().to_vec())
        }
        other => other,
    };
    let backlog = config.listen as libc::c_int;
    match &address {
        Address::Tcp(addr) => {
            let domain = socket2::Domain::for_address(*addr);
            let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)
                .map_err(|e| format!("socket(): {e}"))?;
            let sockopt = |e: std::io::Error| format!("setsockopt(): {e} ({})", spec.address);
            socket.set_reuse_address(true).map_err(sockopt)?;
            if config.reuse_port {
                socket.set_reuse_port(true).map_err(sockopt)?;
            }
            if config.so_keepalive {
                socket.set_keepalive(true).map_err(sockopt)?;
            }
            if config.freebind {
                if addr.is_ipv6() {
                    socket.set_freebind_ipv6(true).map_err(sockopt)?;
                } else {
                    socket.set_freebind(true).map_err(sockopt)?;
                }
            }
            if config.defer_accept && !config.socket_timeout.is_zero() {
                // accept() returns once the client has sent data: idle connects never reach a
                // worker (uWSGI's default on Linux).
                let secs = config.socket_timeout.as_secs().min(i32::MAX as u64) as libc::c_int;
                // SAFETY: setsockopt with a pointer to a local int of the right size.
                let rc = unsafe {
                    libc::setsockopt(
                        socket.as_raw_fd(),
                        libc::IPPROTO_TCP,
                        libc::TCP_DEFER_ACCEPT,
                        (&secs as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                if rc != 0 {
                    return Err(sockopt(std::io::Error::last_os_error()));
                }
            }
            if let Err(e) = socket.bind(&(*addr).into()) {
                return Err(if e.kind() == std::io::ErrorKind::AddrInUse {
                    format!(
                        "probably another instance of uWSGI is running on the same address ({}).\nbind(): Address already in use",
                        spec.address
                    )
                } else {
                    format!("bind(): {e} ({})", spec.address)
                });
            }
            socket
                .listen(backlog)
                .map_err(|e| format!("listen(): {e}"))?;
            let listener: TcpListener = socket.into();
            let local = listener
                .local_addr()
                .map_err(|e| format!("getsockname(): {e}"))?;
            let name = if addr.port() == 0 {
                let given = spec.address.strip_suffix(":0").unwrap_or(&spec.address);
                format!("{given}:{} (port auto-assigned)", local.port())
            } else {
                spec.address.clone()
            };
            let family = if addr.is_ipv6() { "TCP6" } else { "TCP" };
            let line = format!(
                "uwsgi socket {index} bound to {family} address {name} fd {}",
                listener.as_raw_fd()
            );
            Ok((
                MasterListener {
                    listener: Listener {
                        socket: ListenSocket::Tcp(listener),
                        name: spec.address.clone(),
                        keep_alive: spec.keep_alive,
                    },
                    address: Address::Tcp(local),
                    self_bound: true,
                    unix_file: None,
                },
                line,
            ))
        }
        Address::Unix(path) => {
            // A stale file left by a previous run is replaced, as uWSGI does.
            if std::fs::symlink_metadata(path).is_ok() {
                let _ = std::fs::remove_file(path);
            }
            let listener = UnixListener::bind(path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    format!(
                        "probably another instance of uWSGI is running on the same address ({}).\nbind(): Address already in use",
                        spec.address
                    )
                } else {
                    format!("bind(): {e} ({})", spec.address)
                }
            })?;
            relisten(listener.as_raw_fd(), backlog)?;
            let mut lines = Vec::new();
            if let Some(mode) = config.chmod_socket {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| format!("chmod(): {e}"))?;
                if mode == 0o666 {
                    lines.push("chmod() socket to 666 for lazy and brave users".to_string());
                } else {
                    lines.push(format!("chmod() socket to {mode:o}"));
                }
            }
            // Without chown-socket, a file bound by root for a service with uid/gid gets their
            // ownership: what uWSGI produced by binding after dropping privileges [keep].
            let owner = config
                .chown_socket
                .or_else(|| {
                    (config.uid.is_some() || config.gid.is_some())
                        .then(|| (config.uid.as_ref().map(|u| u.0), config.gid))
                })
                .filter(|_| nix::unistd::geteuid().is_root() || config.chown_socket.is_some());
            if let Some((uid, gid)) = owner {
                nix::unistd::chown(
                    path,
                    uid.map(nix::unistd::Uid::from_raw),
                    gid.map(nix::unistd::Gid::from_raw),
                )
                .map_err(|e| format!("chown(): {e}"))?;
            }
            use std::os::unix::fs::MetadataExt;
            let inode = std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0);
            lines.insert(
                0,
                format!(
                    "uwsgi socket {index} bound to UNIX address {} fd {}",
                    path.display(),
                    listener.as_raw_fd()
                ),
            );
            Ok((
                MasterListener {
                    listener: Listener {
                        socket: ListenSocket::Unix(listener),
                        name: spec.address.clone(),
                        keep_alive: spec.keep_alive,
                    },
                    address: address.clone(),
                    self_bound: true,
                    unix_file: Some((path.clone(), inode)),
                },
                lines.join("\n"),
            ))
        }
        Address::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let sa = std::os::unix::net::SocketAddr::from_abstract_name(name)
                .map_err(|e| format!("invalid abstract name: {e}"))?;
            let listener = UnixListener::bind_addr(&sa)
                .map_err(|e| format!("bind(): {e} ({})", spec.address))?;
            relisten(listener.as_raw_fd(), backlog)?;
            let line = format!(
                "uwsgi socket {index} bound to UNIX address {} fd {}",
                spec.address,
                listener.as_raw_fd()
            );
            Ok((
                MasterListener {
                    listener: Listener {
                        socket: ListenSocket::Unix(listener),
                        name: spec.address.clone(),
                        keep_alive: spec.keep_alive,
                    },
                    address: address.clone(),
                    self_bound: true,
                    unix_file: None,
                },
                line,
            ))
        }
    }
}

/// `listen(2)` again with the configured backlog (std binds Unix sockets with its own).
fn relisten(fd: RawFd, backlog: libc::c_int) -> Result<(), String> {
    // SAFETY: plain syscall on a descriptor we own.
    if unsafe { libc::listen(fd, backlog) } != 0 {
        return Err(format!("listen(): {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The address a listening descriptor is bound to, for matching configured lines.
pub fn local_address(fd: RawFd) -> Result<Address, String> {
    use nix::sys::socket::{getsockname, SockaddrLike, SockaddrStorage};
    let ss: SockaddrStorage = getsockname(fd).map_err(|e| format!("getsockname(fd {fd}): {e}"))?;
    if let Some(v4) = ss.as_sockaddr_in() {
        return Ok(Address::Tcp(SocketAddr::new(
            IpAddr::V4(v4.ip()),
            v4.port(),
        )));
    }
    if let Some(v6) = ss.as_sockaddr_in6() {
        return Ok(Address::Tcp(SocketAddr::new(
            IpAddr::V6(v6.ip()),
            v6.port(),
        )));
    }
    if let Some(un) = ss.as_unix_addr() {
        if let Some(path) = un.path() {
            return Ok(Address::Unix(path.to_path_buf()));
        }
        if let Some(name) = un.as_abstract() {
            return Ok(Address::Abstract(name.to_vec()));
        }
    }
    Err(format!(
        "fd {fd}: unsupported socket family {:?}",
        ss.family()
    ))
}

/// Wraps an inherited listening descriptor (systemd or re-exec): checks `SO_ACCEPTCONN`, sets
/// close-on-exec, and finds its address.
pub fn adopt(fd: RawFd) -> Result<(ListenSocket, Address), String> {
    use nix::sys::socket::{getsockopt, sockopt};
    // SAFETY: the descriptor was handed to us (LISTEN_FDS / our own re-exec); it is only
    // borrowed until it proved to be an open listening socket.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let listening = getsockopt(&borrowed, sockopt::AcceptConn)
        .map_err(|e| format!("inherited fd {fd} is not a socket: {e}"))?;
    if !listening {
        return Err(format!("inherited fd {fd} is not a listening socket"));
    }
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| format!("fcntl(fd {fd}): {e}"))?;
    let address = local_address(fd)?;
    // SAFETY: an open listening socket nothing else in this process owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let socket = match address {
        Address::Tcp(_) => ListenSocket::Tcp(TcpListener::from(owned)),
        _ => ListenSocket::Unix(UnixListener::from(owned)),
    };
    Ok((socket, address))
}

/// How an address is shown in `inherited`/`attached` lines.
pub fn describe(address: &Address) -> (&'static str, String) {
    match address {
        Address::Tcp(a) => ("INET", a.to_string()),
        Address::Unix(p) => ("UNIX", p.display().to_string()),
        Address::Abstract(n) => ("UNIX", format!("@{}", String::from_utf8_lossy(n))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SocketKind;

    #[test]
    fn address_forms() {
        assert_eq!(
            parse_address("127.0.0.1:8000").unwrap(),
            Address::Tcp("127.0.0.1:8000".parse().unwrap())
        );
        assert_eq!(
            parse_address(":8000").unwrap(),
            Address::Tcp("0.0.0.0:8000".parse().unwrap())
        );
        assert_eq!(
            parse_address("[::1]:80").unwrap(),
            Address::Tcp("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            parse_address("/run/k.sock").unwrap(),
            Address::Unix("/run/k.sock".into())
        );
        assert_eq!(
            parse_address("@kinto").unwrap(),
            Address::Abstract(b"kinto".to_vec())
        );
        assert_eq!(
            parse_address("localhost:9").unwrap(),
            Address::Tcp("127.0.0.1:9".parse().unwrap())
        );
        assert!(parse_address("127.0.0.1:x").is_err());
    }

    fn spec(address: &str) -> SocketSpec {
        SocketSpec {
            kind: SocketKind::Http,
            address: address.into(),
            keep_alive: false,
        }
    }

    #[test]
    fn port_zero_and_address_in_use() {
        let config = ServerConfig::default();
        let (bound, line) = bind(0, &spec("127.0.0.1:0"), &config).unwrap();
        let Address::Tcp(addr) = bound.address else {
            panic!("tcp expected")
        };
        assert_ne!(addr.port(), 0);
        assert_eq!(
            line,
            format!(
                "uwsgi socket 0 bound to TCP address 127.0.0.1:{} (port auto-assigned) fd {}",
                addr.port(),
                bound.listener.raw_fd()
            )
        );
        assert_eq!(
            local_address(bound.listener.raw_fd()).unwrap(),
            bound.address
        );
        let err = bind(1, &spec(&addr.to_string()), &config).unwrap_err();
        assert!(err.starts_with(&format!(
            "probably another instance of uWSGI is running on the same address ({addr})."
        )));
    }

    fn int_option(fd: RawFd, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt into a local int.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                level,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        value
    }

    #[test]
    fn tcp_listener_options() {
        let config = ServerConfig::default();
        let (bound, _) = bind(0, &spec("127.0.0.1:0"), &config).unwrap();
        let fd = bound.listener.raw_fd();
        assert!(int_option(fd, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT) > 0);
        assert_eq!(int_option(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT), 0);
        let config = ServerConfig {
            defer_accept: false,
            reuse_port: true,
            so_keepalive: true,
            ..ServerConfig::default()
        };
        let (bound, _) = bind(0, &spec("127.0.0.1:0"), &config).unwrap();
        let fd = bound.listener.raw_fd();
        assert_eq!(int_option(fd, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT), 0);
        assert_eq!(int_option(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT), 1);
        assert_eq!(int_option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
        assert_eq!(int_option(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN), 1);
    }

    #[test]
    fn ipv6_loopback() {
        let (bound, line) = bind(0, &spec("[::1]:0"), &ServerConfig::default()).unwrap();
        let Address::Tcp(addr) = bound.address else {
            panic!("tcp expected")
        };
        assert!(addr.is_ipv6());
        assert_eq!(
            line,
            format!(
                "uwsgi socket 0 bound to TCP6 address [::1]:{} (port auto-assigned) fd {}",
                addr.port(),
                bound.listener.raw_fd()
            )
        );
        assert!(std::net::TcpStream::connect(addr).is_ok());
    }

    #[test]
    fn abstract_socket_option() {
        use std::os::linux::net::SocketAddrExt;
        let config = ServerConfig {
            abstract_socket: true,
            ..ServerConfig::default()
        };
        let name = format!("kinto-abstract-test-{}", std::process::id());
        let (bound, line) = bind(0, &spec(&name), &config).unwrap();
        assert!(line.starts_with("uwsgi socket 0 bound to UNIX address"));
        assert!(!std::path::Path::new(&name).exists());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        assert!(std::os::unix::net::UnixStream::connect_addr(&addr).is_ok());
        drop(bound);
    }

    #[test]
    fn unix_socket_stale_file_and_chmod() {
        let dir = std::env::temp_dir().join(format!("listener-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        std::fs::write(&path, "stale").unwrap();
        let config = ServerConfig {
            chmod_socket: Some(0o660),
            ..ServerConfig::default()
        };
        let (bound, line) = bind(0, &spec(path.to_str().unwrap()), &config).unwrap();
        assert!(line.starts_with("uwsgi socket 0 bound to UNIX address"));
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
        drop(bound);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Listening sockets: the address forms of `http-socket` and friends, bound or inherited.

use std::net::TcpListener;
use std::os::unix::net::UnixListener;

/// A bound (or inherited) listening socket.
#[derive(Debug)]
pub enum ListenSocket {
    Tcp(TcpListener),
    Unix(UnixListener),
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

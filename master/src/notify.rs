//! systemd notifications (`NOTIFY_SOCKET`, SERVER.md 5.1): datagrams of `KEY=VALUE` lines sent by
//! the master only. The variable is removed from the environment the workers inherit; its value
//! is kept in memory (and put back for a re-exec). Send failures are logged once, never fatal.

use std::os::unix::net::UnixDatagram;

/// The notify socket, when systemd gave one.
pub struct Notifier {
    target: Option<(UnixDatagram, String)>,
    failed: bool,
}

impl Notifier {
    /// Reads and unsets `NOTIFY_SOCKET`.
    pub fn from_env() -> Notifier {
        let target = std::env::var("NOTIFY_SOCKET").ok().and_then(|path| {
            std::env::remove_var("NOTIFY_SOCKET");
            UnixDatagram::unbound().ok().map(|s| (s, path))
        });
        Notifier {
            target,
            failed: false,
        }
    }

    /// The `NOTIFY_SOCKET` value, for a re-exec.
    pub fn path(&self) -> Option<&str> {
        self.target.as_ref().map(|(_, p)| p.as_str())
    }

    /// The socket's descriptor, closed in workers.
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.target.as_ref().map(|(s, _)| s.as_raw_fd())
    }

    /// Sends one datagram.
    pub fn send(&mut self, message: &str) {
        let Some((socket, path)) = &self.target else {
            return;
        };
        let result = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|addr| socket.send_to_addr(message.as_bytes(), &addr))
        } else {
            socket.send_to(message.as_bytes(), path)
        };
        if let Err(e) = result {
            if !self.failed {
                self.failed = true;
                crate::log::line(&format!("sd_notify to {path} failed: {e}"));
            }
        }
    }
}

//! One client connection's socket: non-blocking reads and writes that wait with `poll(2)` on that one
//! descriptor for at most the phase's timeout (4.5), and accepting from a listener.
//!
//! Raw `libc` calls: `accept4` gives non-blocking, close-on-exec sockets in one call, `sendmsg` with
//! `MSG_NOSIGNAL` writes head and body together and never raises SIGPIPE.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// The client's address as the handler sees it (4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Ip(IpAddr),
    /// A Unix socket client, shown as `0.0.0.0`.
    Unix,
}

impl Peer {
    /// Writes the address into `out` (cleared first) without allocating once `out` has capacity.
    pub fn write_to(&self, out: &mut String) {
        use std::fmt::Write;
        out.clear();
        let _ = match self {
            Peer::Ip(ip) => write!(out, "{ip}"),
            Peer::Unix => write!(out, "0.0.0.0"),
        };
    }
}

/// A connected client socket (non-blocking).
#[derive(Debug)]
pub struct Stream {
    fd: OwnedFd,
}

/// Outcome of waiting for a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ready {
    Yes,
    TimedOut,
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Waits until `fd` is ready for `events` or `timeout` passes.
fn wait(fd: RawFd, events: libc::c_short, timeout: Duration) -> io::Result<Ready> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Round up so a sub-millisecond remainder still waits instead of spinning.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 {
            return Ok(Ready::Yes);
        }
        if n == 0 {
            if left.is_zero() {
                return Ok(Ready::TimedOut);
            }
            continue;
        }
        if errno() != libc::EINTR {
            return Err(io::Error::last_os_error());
        }
    }
}

impl Stream {
    /// Takes ownership of a connected socket descriptor (which must be non-blocking).
    pub fn from_fd(fd: OwnedFd) -> Self {
        Stream { fd }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// One non-blocking read: `Ok(None)` when nothing is available now, `Ok(Some(0))` at EOF.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe { libc::recv(self.raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                return Ok(Some(n as usize));
            }
            match errno() {
                libc::EINTR => continue,
                libc::EAGAIN => return Ok(None),
                _ => return Err(io::Error::last_os_error()),
            }
        }
    }

    /// Reads what is available, waiting at most `timeout` for the first byte. `Ok(0)` is EOF;
    /// a timeout is an error of kind `TimedOut`.
    pub fn read(&self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        loop {
            if let Some(n) = self.try_read(buf)? {
                return Ok(n);
            }
            if wait(self.raw_fd(), libc::POLLIN, timeout)? == Ready::TimedOut {
                return Err(io::ErrorKind::TimedOut.into());
            }
        }
    }

    /// Writes all of `parts` in as few `sendmsg` calls as the socket allows, waiting at most
    /// `timeout` each time the socket is full. Returns the bytes written and the number of calls
    /// that carried bytes of `parts[body_from..]`; on error, the error and what was written before.
    pub fn write_all(
        &self,
        parts: &[&[u8]],
        body_from: usize,
        timeout: Duration,
    ) -> (usize, usize, Option<io::Error>) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let body_start: usize = parts[..body_from.min(parts.len())]
            .iter()
            .map(|p| p.len())
            .sum();
        let mut written = 0;
        let mut body_writes = 0;
        while written < total {
            let mut iov = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; 4];
            let mut count = 0;
            let mut skip = written;
            for part in parts {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                if count == iov.len() {
                    break;
                }
                iov[count] = libc::iovec {
                    iov_base: part[skip..].as_ptr() as *mut libc::c_void,
                    iov_len: part.len() - skip,
                };
                skip = 0;
                count += 1;
            }
            // SAFETY: msghdr zeroed, then pointed at `count` valid iovecs that outlive the call.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = count as _;
            let n = unsafe { libc::sendmsg(self.raw_fd(), &msg, libc::MSG_NOSIGNAL) };
            if n >= 0 {
                let n = n as usize;
                if written + n > body_start {
                    body_writes += 1;
                }
                written += n;
                continue;
            }
            match errno() {
                libc::EINTR => {}
                libc::EAGAIN => match wait(self.raw_fd(), libc::POLLOUT, timeout) {
                    Ok(Ready::Yes) => {}
                    Ok(Ready::TimedOut) => {
                        return (written, body_writes, Some(io::ErrorKind::TimedOut.into()))
                    }
                    Err(e) => return (written, body_writes, Some(e)),
                },
                _ => return (written, body_writes, Some(io::Error::last_os_error())),
            }
        }
        (written, body_writes, None)
    }

    /// Something (data, end of file or an error) is waiting to be read.
    pub fn readable_now(&self) -> bool {
        matches!(
            wait(self.raw_fd(), libc::POLLIN, Duration::ZERO),
            Ok(Ready::Yes)
        )
    }

    /// Closes after discarding what is already received, without waiting for more: a close with
    /// unread bytes would be a reset that can destroy the answer just written.
    pub fn drain_close(self) {
        // SAFETY: plain shutdown of an owned socket.
        unsafe { libc::shutdown(self.raw_fd(), libc::SHUT_WR) };
        let mut scratch = [0u8; 4096];
        for _ in 0..16 {
            match self.try_read(&mut scratch) {
                Ok(Some(n)) if n > 0 => {}
                _ => break,
            }
        }
    }

    /// Closes after reading and discarding what the client still sends, so that unread request
    /// bytes do not turn the close into a reset that destroys the response before the client reads
    /// it (nginx's lingering close). Stops at EOF, after `quiet` without data, or after `limit`.
    pub fn linger_close(self, limit: Duration, quiet: Duration) {
        // SAFETY: plain shutdown of an owned socket.
        unsafe { libc::shutdown(self.raw_fd(), libc::SHUT_WR) };
        let deadline = Instant::now() + limit;
        let mut scratch = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.read(&mut scratch, left.min(quiet)) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// Accepts one connection from a non-blocking listener: `Ok(None)` when none is pending.
/// TCP connections get `TCP_NODELAY` (responses are written whole, never in small pieces).
pub fn accept(listener: RawFd, tcp: bool) -> io::Result<Option<(Stream, Peer)>> {
    // SAFETY: sockaddr_storage is large enough for any address; accept4 fills at most `len` bytes.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let fd = loop {
        let fd = unsafe {
            libc::accept4(
                listener,
                (&mut storage as *mut libc::sockaddr_storage).cast(),
                &mut len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            break fd;
        }
        match errno() {
            libc::EINTR | libc::ECONNABORTED => continue,
            libc::EAGAIN => return Ok(None),
            _ => return Err(io::Error::last_os_error()),
        }
    };
    // SAFETY: accept4 returned a new descriptor we now own.
    let stream = Stream::from_fd(unsafe { OwnedFd::from_raw_fd(fd) });
    let peer = match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin = unsafe {
                &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            Peer::Ip(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe {
                &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Peer::Ip(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => Peer::Unix,
    };
    if tcp {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a valid int option value.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    Ok(Some((stream, peer)))
}

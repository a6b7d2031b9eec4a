//! Where formatted lines go: a standard stream, a file, or syslog (a local datagram socket such as
//! `/dev/log`, or UDP). Each line is written with one `write(2)` so that the lines of the workers
//! sharing a stream or an `O_APPEND` file never interleave.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::mem::ManuallyDrop;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Mutex;

use super::record::Level;

/// Where a syslog handler sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogAddress {
    /// A local socket path (`/dev/log`).
    Unix(PathBuf),
    /// `('host', port)`: UDP, Python's default being `('localhost', 514)`.
    Udp(String, u16),
}

/// A handler's destination, as configured (nothing opened yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// `sys.stdout` (1) or `sys.stderr` (2).
    Stream(i32),
    File {
        path: PathBuf,
        append: bool,
    },
    Syslog {
        address: SyslogAddress,
        facility: u8,
    },
    Sentry(super::sentry::Dsn),
    Null,
}

/// An opened destination.
pub enum Output {
    Stream(i32),
    File(Mutex<File>),
    Syslog(Syslog),
    Sentry(super::sentry::Sentry),
    Null,
}

impl Output {
    /// Opens files and sockets (in the process that will write: call after fork).
    pub fn open(spec: &OutputSpec) -> Result<Output, String> {
        Ok(match spec {
            OutputSpec::Stream(fd) => Output::Stream(*fd),
            OutputSpec::File { path, append } => {
                let mut options = OpenOptions::new();
                options.create(true);
                if *append {
                    options.append(true);
                } else {
                    options.write(true).truncate(true);
                }
                let file = options
                    .open(path)
                    .map_err(|e| format!("Cannot open log file {}: {e}", path.display()))?;
                Output::File(Mutex::new(file))
            }
            OutputSpec::Syslog { address, facility } => {
                Output::Syslog(Syslog::open(address, *facility)?)
            }
            OutputSpec::Sentry(dsn) => Output::Sentry(super::sentry::Sentry::new(dsn.clone())),
            OutputSpec::Null => Output::Null,
        })
    }

    /// Writes one formatted line (a newline is added for streams and files).
    pub fn write_line(&self, line: &str, level: Level) {
        match self {
            Output::Stream(fd) => {
                // SAFETY: fd 1 or 2 stays open for the life of the process; ManuallyDrop keeps
                // the File from closing it.
                let mut file = ManuallyDrop::new(unsafe { File::from_raw_fd(*fd) });
                let _ = file.write_all(with_newline(line).as_bytes());
            }
            Output::File(file) => {
                let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
                let _ = file.write_all(with_newline(line).as_bytes());
            }
            Output::Syslog(syslog) => syslog.send(line, level),
            Output::Sentry(_) | Output::Null => {}
        }
    }
}

fn with_newline(line: &str) -> String {
    let mut s = String::with_capacity(line.len() + 1);
    s.push_str(line);
    s.push('\n');
    s
}

/// Python's `SysLogHandler`: `<priority>line\0` per datagram, no header (the formatter decides).
pub struct Syslog {
    address: SyslogAddress,
    facility: u8,
    udp: Option<(UdpSocket, SocketAddr)>,
    unix: Mutex<Option<UnixDatagram>>,
}

impl Syslog {
    fn open(address: &SyslogAddress, facility: u8) -> Result<Syslog, String> {
        let udp = match address {
            SyslogAddress::Udp(host, port) => {
                let addr = (host.as_str(), *port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| format!("Syslog host {host:?} does not resolve"))?;
                let local = if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let socket = UdpSocket::bind(local).map_err(|e| format!("Syslog socket: {e}"))?;
                socket
                    .set_nonblocking(true)
                    .map_err(|e| format!("Syslog socket: {e}"))?;
                Some((socket, addr))
            }
            SyslogAddress::Unix(_) => None,
        };
        Ok(Syslog {
            address: address.clone(),
            facility,
            udp,
            unix: Mutex::new(None),
        })
    }

    fn send(&self, line: &str, level: Level) {
        let priority = u32::from(self.facility) * 8 + u32::from(level.syslog_severity());
        let datagram = format!("<{priority}>{line}\0");
        if let Some((socket, addr)) = &self.udp {
            let _ = socket.send_to(datagram.as_bytes(), addr);
            return;
        }
        let SyslogAddress::Unix(path) = &self.address else {
            return;
        };
        let mut unix = self.unix.lock().unwrap_or_else(|e| e.into_inner());
        // Like Python, (re)connect when needed: syslogd may start or restart after us.
        for _attempt in 0..2 {
            if unix.is_none() {
                *unix = UnixDatagram::unbound()
                    .and_then(|s| s.connect(path).map(|()| s))
                    .and_then(|s| s.set_nonblocking(true).map(|()| s))
                    .ok();
            }
            match unix.as_ref().map(|s| s.send(datagram.as_bytes())) {
                Some(Ok(_)) | None => return,
                Some(Err(_)) => *unix = None,
            }
        }
    }
}

/// Syslog facility numbers by name (`LOG_LOCAL0`, `local0`, `handlers.SysLogHandler.LOG_USER`).
pub fn facility(name: &str) -> Option<u8> {
    let short = name.rsplit('.').next().unwrap_or(name).to_ascii_lowercase();
    let short = short.strip_prefix("log_").unwrap_or(&short);
    Some(match short {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" | "security" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        local if local.starts_with("local") => {
            let n: u8 = local[5..].parse().ok().filter(|n| *n <= 7)?;
            16 + n
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facilities() {
        assert_eq!(facility("handlers.SysLogHandler.LOG_LOCAL0"), Some(16));
        assert_eq!(facility("local7"), Some(23));
        assert_eq!(facility("LOG_USER"), Some(1));
        assert_eq!(facility("local9"), None);
    }

    #[test]
    fn unix_datagram_syslog() {
        let dir = std::env::temp_dir().join(format!("obs-syslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let out = Output::open(&OutputSpec::Syslog {
            address: SyslogAddress::Unix(path.clone()),
            facility: 16,
        })
        .unwrap();
        out.write_line("kinto: hello", Level::Warning);
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<132>kinto: hello\0");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The stats server (`stats`, SERVER.md 6.6): every connection receives one JSON document with
//! uWSGI's keys and types (so `uwsgitop` and dashboards keep working), then is closed.
//!
//! The master writes without blocking: a document that does not fit in the socket buffer waits in
//! a pending list flushed on each loop turn, and is dropped after `socket-timeout`.

use crate::listener::{parse_address, Address};
use std::io::Write;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

/// What the master knows of one slot, for the document.
pub struct WorkerStats {
    pub id: usize,
    pub pid: i32,
    pub accepting: bool,
    pub status: &'static str,
    pub requests: u64,
    pub delta_requests: u64,
    pub exceptions: u64,
    pub harakiri_count: u64,
    pub rss: u64,
    pub vsz: u64,
    pub last_spawn: u64,
    pub respawn_count: u64,
    pub tx: u64,
    /// Microseconds spent in requests.
    pub running_time: u64,
    /// The running request: method, URI, remote address, start (Unix seconds).
    pub request: Option<(String, String, String, u64)>,
}

/// One listener as shown in `sockets`.
pub struct SocketStats {
    pub name: String,
    pub queue: u64,
    pub max_queue: u64,
}

/// The document's inputs.
pub struct Snapshot {
    pub pid: u32,
    pub sockets: Vec<SocketStats>,
    pub workers: Vec<WorkerStats>,
}

enum Listening {
    Tcp(TcpListener),
    Unix(UnixListener),
}

struct Pending {
    stream: Box<dyn WriteFd>,
    data: Vec<u8>,
    written: usize,
    deadline: Instant,
}

trait WriteFd: Write {}
impl WriteFd for std::net::TcpStream {}
impl WriteFd for std::os::unix::net::UnixStream {}

/// The bound stats listener and its pending writes.
pub struct StatsServer {
    listener: Listening,
    pending: Vec<Pending>,
    http: bool,
    minified: bool,
    no_cores: bool,
    timeout: Duration,
}

impl StatsServer {
    /// Binds the `stats` address; returns the server and its startup line.
    pub fn bind(
        address: &str,
        config: &crate::ServerConfig,
    ) -> Result<(StatsServer, String), String> {
        let listener = match parse_address(address)? {
            Address::Tcp(addr) => {
                let l = TcpListener::bind(addr)
                    .map_err(|e| format!("stats bind(): {e} ({address})"))?;
                l.set_nonblocking(true).map_err(|e| e.to_string())?;
                Listening::Tcp(l)
            }
            Address::Unix(path) => {
                let _ = std::fs::remove_file(&path);
                let l = UnixListener::bind(&path)
                    .map_err(|e| format!("stats bind(): {e} ({address})"))?;
                if let Some(mode) = config.chmod_socket {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
                }
                l.set_nonblocking(true).map_err(|e| e.to_string())?;
                Listening::Unix(l)
            }
            Address::Abstract(_) => return Err(format!("stats: unsupported address {address}")),
        };
        let server = StatsServer {
            listener,
            pending: Vec::new(),
            http: config.stats_http,
            minified: config.stats_minified,
            no_cores: config.stats_no_cores,
            timeout: config.socket_timeout.max(Duration::from_secs(1)),
        };
        let line = format!(
            "*** Stats server enabled on {address} fd: {} ***",
            server.raw_fd()
        );
        Ok((server, line))
    }

    pub fn raw_fd(&self) -> RawFd {
        match &self.listener {
            Listening::Tcp(l) => l.as_raw_fd(),
            Listening::Unix(l) => l.as_raw_fd(),
        }
    }

    /// Whether writes are waiting (the loop then wakes more often to flush them).
    pub fn busy(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Accepts every waiting client, queues a document for each, flushes what can be written.
    pub fn serve(&mut self, snapshot: impl Fn() -> Snapshot) {
        let mut document: Option<Vec<u8>> = None;
        loop {
            let stream: Box<dyn WriteFd> = match &self.listener {
                Listening::Tcp(l) => match l.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(true);
                        Box::new(s)
                    }
                    Err(_) => break,
                },
                Listening::Unix(l) => match l.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(true);
                        Box::new(s)
                    }
                    Err(_) => break,
                },
            };
            let data = document
                .get_or_insert_with(|| self.render(&snapshot()))
                .clone();
            self.pending.push(Pending {
                stream,
                data,
                written: 0,
                deadline: Instant::now() + self.timeout,
            });
        }
        self.flush();
    }

    /// Writes what the sockets accept; drops finished, failed and expired clients.
    pub fn flush(&mut self) {
        let now = Instant::now();
        self.pending.retain_mut(|p| {
            while p.written < p.data.len() {
                match p.stream.write(&p.data[p.written..]) {
                    Ok(0) => return false,
                    Ok(n) => p.written += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        return now < p.deadline
                    }
                    Err(_) => return false,
                }
            }
            false
        });
    }

    fn render(&self, s: &Snapshot) -> Vec<u8> {
        let mut j = Json::new(self.minified);
        j.open('{');
        j.key("version").string(env!("CARGO_PKG_VERSION"));
        let queue = s.sockets.iter().map(|k| k.queue).max().unwrap_or(0);
        j.key("listen_queue").number(queue);
        j.key("listen_queue_errors").number(0);
        j.key("signal_queue").number(0);
        j.key("load").number(queue);
        j.key("pid").number(u64::from(s.pid));
        j.key("uid")
            .number(u64::from(nix::unistd::getuid().as_raw()));
        j.key("gid")
            .number(u64::from(nix::unistd::getgid().as_raw()));
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        j.key("cwd").string(&cwd);
        j.key("locks").open('[');
        j.close(']');
        j.key("sockets").open('[');
        for k in &s.sockets {
            j.item().open('{');
            j.key("name").string(&k.name);
            j.key("proto").string("http");
            j.key("queue").number(k.queue);
            j.key("max_queue").number(k.max_queue);
            j.key("shared").number(0);
            j.key("can_offload").number(0);
            j.close('}');
        }
        j.close(']');
        j.key("workers").open('[');
        for w in &s.workers {
            j.item().open('{');
            j.key("id").number(w.id as u64);
            j.key("pid").number(w.pid.max(0) as u64);
            j.key("accepting").number(u64::from(w.accepting));
            j.key("requests").number(w.requests);
            j.key("delta_requests").number(w.delta_requests);
            j.key("exceptions").number(w.exceptions);
            j.key("harakiri_count").number(w.harakiri_count);
            j.key("signals").number(0);
            j.key("signal_queue").number(0);
            j.key("status").string(w.status);
            j.key("rss").number(w.rss);
            j.key("vsz").number(w.vsz);
            j.key("running_time").number(w.running_time);
            j.key("last_spawn").number(w.last_spawn);
            j.key("respawn_count").number(w.respawn_count);
            j.key("tx").number(w.tx);
            j.key("avg_rt")
                .number(w.running_time.checked_div(w.requests).unwrap_or(0));
            j.key("apps").open('[');
            j.item().open('{');
            j.key("id").number(0);
            j.key("modifier1").number(0);
            j.key("mountpoint").string("");
            j.key("startup_time").number(0);
            j.key("requests").number(w.requests);
            j.key("exceptions").number(w.exceptions);
            j.key("chdir").string("");
            j.close('}');
            j.close(']');
            if !self.no_cores {
                j.key("cores").open('[');
                j.item().open('{');
                j.key("id").number(0);
                j.key("requests").number(w.requests);
                j.key("static_requests").number(0);
                j.key("routed_requests").number(0);
                j.key("offloaded_requests").number(0);
                j.key("write_errors").number(0);
                j.key("read_errors").number(0);
                j.key("in_request").number(u64::from(w.request.is_some()));
                j.key("vars").open('[');
                if let Some((method, uri, addr, _)) = &w.request {
                    for var in [
                        format!("REQUEST_METHOD={method}"),
                        format!("REQUEST_URI={uri}"),
                        format!("REMOTE_ADDR={addr}"),
                    ] {
                        j.item().string(&var);
                    }
                }
                j.close(']');
                j.key("req_info").open('{');
                if let Some((_, _, _, start)) = &w.request {
                    j.key("request_start").number(*start);
                }
                j.close('}');
                j.close('}');
                j.close(']');
            }
            j.close('}');
        }
        j.close(']');
        j.close('}');
        let body = j.finish();
        let mut out = Vec::new();
        if self.http {
            out.extend_from_slice(
                b"HTTP/1.0 200 OK\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\nContent-Type: application/json\r\n\r\n",
            );
        }
        out.extend_from_slice(body.as_bytes());
        out
    }
}

/// A tiny JSON writer: uWSGI's indented layout, or compact with `stats-minified`.
struct Json {
    out: String,
    minified: bool,
    depth: usize,
    /// Whether the current container already has an element (a comma is due).
    first: Vec<bool>,
}

impl Json {
    fn new(minified: bool) -> Json {
        Json {
            out: String::new(),
            minified,
            depth: 0,
            first: vec![true],
        }
    }

    fn newline(&mut self) {
        if !self.minified {
            self.out.push('\n');
            for _ in 0..self.depth {
                self.out.push('\t');
            }
        }
    }

    fn separator(&mut self) {
        let first = self.first.last_mut().expect("open container");
        if !*first {
            self.out.push(',');
        }
        *first = false;
        if self.depth > 0 {
            self.newline();
        }
    }

    fn open(&mut self, c: char) -> &mut Json {
        self.out.push(c);
        self.depth += 1;
        self.first.push(true);
        self
    }

    fn close(&mut self, c: char) {
        self.depth -= 1;
        let empty = self.first.pop().unwrap_or(true);
        if !empty {
            self.newline();
        }
        self.out.push(c);
    }

    fn item(&mut self) -> &mut Json {
        self.separator();
        self
    }

    fn key(&mut self, k: &str) -> &mut Json {
        self.separator();
        self.out.push('"');
        self.out.push_str(k);
        self.out
            .push_str(if self.minified { "\":" } else { "\": " });
        self
    }

    fn number(&mut self, n: u64) {
        self.out.push_str(&n.to_string());
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                c if (c as u32) < 0x20 => self.out.push_str(&format!("\\u{:04x}", c as u32)),
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    fn finish(mut self) -> String {
        self.out.push('\n');
        self.out
    }
}

/// `(queue, max_queue)` of a TCP listener: Linux `TCP_INFO` `tcpi_unacked` / `tcpi_sacked`.
pub fn listen_queue(fd: RawFd) -> (u64, u64) {
    // SAFETY: getsockopt into a zeroed tcp_info of the right size.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        if libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        ) != 0
        {
            return (0, 0);
        }
        (u64::from(info.tcpi_unacked), u64::from(info.tcpi_sacked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_layouts() {
        let mut j = Json::new(true);
        j.open('{');
        j.key("a").number(1);
        j.key("b").open('[');
        j.item().string("x\"y");
        j.close(']');
        j.key("c").open('{');
        j.close('}');
        j.close('}');
        assert_eq!(j.finish(), "{\"a\":1,\"b\":[\"x\\\"y\"],\"c\":{}}\n");
        let mut j = Json::new(false);
        j.open('{');
        j.key("a").number(1);
        j.close('}');
        assert_eq!(j.finish(), "{\n\t\"a\": 1\n}\n");
    }
}

//! Shared by the `http_*` tests: a worker loop serving a probe handler on a real socket bound to
//! 127.0.0.1:0 in a thread of the test process, its log captured through a pipe, and raw clients.
#![allow(dead_code)]

use master::ListenSocket;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use worker::{Handler, HttpConfig, HttpListener, Log, Request, Response, Slot, WorkerSetup};

/// Generous bound for anything a test waits for (the machine is shared and slow).
pub const WAIT: Duration = Duration::from_secs(10);

/// A handler with a few endpoints that expose what the worker handed it.
pub struct Probe;

impl Handler for Probe {
    fn handle(&mut self, request: &Request) -> Response {
        let mut response = Response::new(200);
        response
            .headers
            .push(("Content-Type".into(), "text/plain".into()));
        match request.path() {
            "/echo" => response.body = request.body.clone(),
            "/headers" => {
                for (name, value) in &request.headers {
                    response
                        .body
                        .extend_from_slice(format!("{name}: {value}\n").as_bytes());
                }
            }
            "/meta" => {
                response.body = format!(
                    "method={}\ntarget={}\nversion={:?}\nscheme={:?}\naddr={}\nbody={}\n",
                    request.method,
                    request.target,
                    request.version,
                    request.scheme,
                    request.remote_addr,
                    request.body.len()
                )
                .into_bytes()
            }
            "/panic" => panic!("probe panic"),
            "/sleep" => {
                let ms = request
                    .query()
                    .and_then(|q| q.strip_prefix("ms="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                std::thread::sleep(Duration::from_millis(ms));
                response.body = b"slept\n".to_vec();
            }
            "/status" => {
                response.status = request
                    .query()
                    .and_then(|q| q.strip_prefix("code="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(200);
                response.body = b"status\n".to_vec();
            }
            "/close" => {
                response.headers.push(("Connection".into(), "close".into()));
                response.body = b"closing\n".to_vec();
            }
            _ => response.body = b"hello\n".to_vec(),
        }
        response
    }

    fn error_response(&mut self, status: u16) -> Response {
        let mut response = Response::json_error(status);
        response.headers.push(("X-Error-By".into(), "probe".into()));
        response
    }
}

/// What the worker reported to its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotEvent {
    Accepting,
    Started(String, String, String, u64),
    Finished(u16, u64),
    Stopping,
}

#[derive(Debug, Default)]
pub struct RecordingSlot {
    pub events: Mutex<Vec<SlotEvent>>,
}

impl Slot for RecordingSlot {
    fn request_started(&self, method: &str, uri: &str, remote_addr: &str, harakiri: u64) {
        self.events.lock().unwrap().push(SlotEvent::Started(
            method.into(),
            uri.into(),
            remote_addr.into(),
            harakiri,
        ));
    }

    fn request_finished(&self, status: u16, bytes_sent: u64) {
        self.events
            .lock()
            .unwrap()
            .push(SlotEvent::Finished(status, bytes_sent));
    }

    fn accepting(&self) {
        self.events.lock().unwrap().push(SlotEvent::Accepting);
    }

    fn stopping(&self) {
        self.events.lock().unwrap().push(SlotEvent::Stopping);
    }
}

/// Log lines collected from a pipe by a reader thread.
#[derive(Clone, Default)]
pub struct LogLines(Arc<Mutex<Vec<String>>>);

impl LogLines {
    /// Collects the lines written to the write end of the pipe whose read end is `read`.
    pub fn from_fd(read: OwnedFd) -> LogLines {
        let lines = LogLines::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            let mut file = std::fs::File::from(read);
            let mut pending = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = file.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&chunk[..n]);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line = String::from_utf8_lossy(&pending[..end]).into_owned();
                    sink.0.lock().unwrap().push(line);
                    pending.drain(..=end);
                }
            }
        });
        lines
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Waits for a line containing `needle`.
    pub fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self.all().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line containing {needle:?} in {:#?}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn count(&self, needle: &str) -> usize {
        self.all().iter().filter(|l| l.contains(needle)).count()
    }
}

/// A worker loop serving `Probe` in a thread.
pub struct TestServer {
    pub port: u16,
    pub log: LogLines,
    pub slot: Arc<RecordingSlot>,
    liveness: Option<OwnedFd>,
    thread: Option<JoinHandle<i32>>,
}

impl TestServer {
    pub fn start(config: HttpConfig, keep_alive: bool) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        TestServer::start_on(
            vec![HttpListener {
                socket: ListenSocket::Tcp(listener),
                keep_alive,
            }],
            port,
            config,
        )
    }

    pub fn start_on(listeners: Vec<HttpListener>, port: u16, config: HttpConfig) -> TestServer {
        let (alive_read, alive_write) = nix::unistd::pipe().unwrap();
        let (log_read, log_write) = nix::unistd::pipe().unwrap();
        let log = LogLines::from_fd(log_read);
        let slot = Arc::new(RecordingSlot::default());
        let worker_slot = slot.clone();
        let setup = WorkerSetup {
            id: 1,
            listeners,
            config,
            master_alive: Some(alive_read),
            log: Log::to_fd(log_write),
        };
        let thread = std::thread::spawn(move || worker::run(setup, &*worker_slot, Probe, None));
        TestServer {
            port,
            log,
            slot,
            liveness: Some(alive_write),
            thread: Some(thread),
        }
    }

    /// Closes the liveness pipe (as a dying master does) and returns the loop's exit code.
    pub fn stop(mut self) -> i32 {
        self.liveness.take();
        let thread = self.thread.take().unwrap();
        let deadline = Instant::now() + WAIT;
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "worker loop did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        thread.join().unwrap()
    }

    /// Waits for the loop to end by itself (stop decided by the worker) and returns its exit code.
    /// The requests the slot heard of (start and end), without the state changes.
    pub fn request_events(&self) -> Vec<SlotEvent> {
        self.slot
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, SlotEvent::Started(..) | SlotEvent::Finished(..)))
            .cloned()
            .collect()
    }

    pub fn wait_exit(mut self) -> i32 {
        let thread = self.thread.take().unwrap();
        let deadline = Instant::now() + WAIT;
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "worker loop did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        thread.join().unwrap()
    }

    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// Sends `raw` on a new connection and reads until the server closes it.
    pub fn exchange(&self, raw: &[u8]) -> Vec<u8> {
        let mut stream = self.connect();
        stream.write_all(raw).unwrap();
        read_to_close(&mut stream)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // The loop ends on its own once the liveness pipe is closed.
        self.liveness.take();
    }
}

/// Reads until EOF (or a reset, after which what was read is returned).
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("read failed after {} bytes: {e}", out.len()),
        }
    }
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub version: u8,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The whole head, as received.
    pub head: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Parses one response at the start of `data` (`Content-Length` framed, no body for HEAD when
/// `head_request`); returns it and the bytes it used, or None if incomplete.
pub fn parse_reply(data: &[u8], head_request: bool) -> Option<(Reply, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(data).expect("malformed response") {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return None,
    };
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let status = parsed.code.unwrap();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let body_len = if head_request || status < 200 || status == 204 || status == 304 {
        0
    } else {
        length
    };
    if data.len() < len + body_len {
        return None;
    }
    Some((
        Reply {
            version: parsed.version.unwrap(),
            status,
            headers,
            body: data[len..len + body_len].to_vec(),
            head: String::from_utf8_lossy(&data[..len]).into_owned(),
        },
        len + body_len,
    ))
}

/// Parses the single response in `data` and checks nothing follows it.
pub fn only_reply(data: &[u8]) -> Reply {
    only_reply_to(data, false)
}

/// Same, for the response to a HEAD request when `head_request`.
/// Interim `1xx` responses before it are skipped.
pub fn only_reply_to(mut data: &[u8], head_request: bool) -> Reply {
    while let Some((reply, used)) = parse_reply(data, head_request) {
        if reply.status >= 200 {
            break;
        }
        data = &data[used..];
    }
    let (reply, used) = parse_reply(data, head_request)
        .unwrap_or_else(|| panic!("incomplete response: {:?}", String::from_utf8_lossy(data)));
    assert_eq!(
        used,
        data.len(),
        "bytes after the response: {:?}",
        String::from_utf8_lossy(data)
    );
    reply
}

/// Reads exactly one response from a connection that stays open.
pub fn read_reply(stream: &mut TcpStream, buffer: &mut Vec<u8>, head_request: bool) -> Reply {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some((reply, used)) = parse_reply(buffer, head_request) {
            buffer.drain(..used);
            return reply;
        }
        let n = stream.read(&mut chunk).expect("read");
        assert!(
            n > 0,
            "closed before a full response: {:?}",
            String::from_utf8_lossy(buffer)
        );
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// A configuration with a small socket timeout for the timeout tests.
pub fn quick_config() -> HttpConfig {
    HttpConfig {
        socket_timeout: Duration::from_secs(1),
        keepalive_timeout: Duration::from_secs(1),
        ..HttpConfig::default()
    }
}

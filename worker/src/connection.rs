//! Serving one connection: read the head, read the body, run the handler, write the response, then
//! close, go on with a pipelined request, or hand the connection back for parking (4.1-4.5). A head
//! that arrives in pieces is parked between pieces, so slow clients never hold the worker.

use crate::chunked::{ChunkError, ChunkedDecoder};
use crate::head::{ConnectionOption, Framing, Head, HeadError};
use crate::log::RequestRecord;
use crate::request::{Request, Version};
use crate::respond::{asks_close, bodiless, encode_head, Persistence};
use crate::response::Response;
use crate::server::{Conn, Served, Worker};
use crate::signals::{set_handler_client, set_timeout_response};
use crate::slot::Slot;
use crate::Handler;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant, SystemTime};

/// How long a refused connection is drained before closing, at most and without data (see
/// `Stream::linger_close`): short, since the worker serves nobody else meanwhile.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_QUIET: Duration = Duration::from_millis(100);

/// Largest piece of a body read at once straight into the request.
const BODY_READ: usize = 64 * 1024;

/// Body buffer capacity kept for the next request; larger ones are freed.
const KEPT_BODY_CAPACITY: usize = 1024 * 1024;

/// How reading a head ended.
enum HeadRead {
    Ready(Head),
    /// Nothing received and nothing available: park the connection.
    Idle,
    /// Part of a head received and nothing more available: park it with those bytes until the
    /// head's deadline.
    Partial(Instant),
    /// EOF, a socket error, or silence before the first byte: close without answering.
    Gone,
    /// Silence after part of a head (or past the total head time): 408.
    TimedOut,
    Refused(HeadError),
}

/// Why a body could not be read.
enum BodyFail {
    TimedOut,
    Closed,
    Malformed,
    TooLarge,
}

/// What a parked connection waits for.
#[derive(Debug)]
pub(crate) enum Waiting {
    /// The next request (or the first).
    Request,
    /// The rest of a head: the bytes received so far and when the whole head is due.
    Head(Vec<u8>, Instant),
    /// The rest of a body.
    Body(Box<PendingBody>),
}

/// A request whose body is still arriving, parked with its connection.
#[derive(Debug)]
pub(crate) struct PendingBody {
    req: Request,
    progress: BodyProgress,
}

/// Where reading a body stands.
#[derive(Debug)]
struct BodyProgress {
    head: Head,
    /// `Content-Length` bytes still to read.
    remaining: u64,
    /// The chunked body's decoder, instead.
    decoder: Option<ChunkedDecoder>,
    /// `100 Continue` is due before the first read from the client.
    continue_owed: bool,
    start: Instant,
    wall: SystemTime,
}

/// What writing a response achieved, for the log line and the scoreboard.
struct Written {
    status: u16,
    total: usize,
    body: usize,
    head: usize,
    fields: usize,
    switches: usize,
    failed: bool,
}

impl<H: Handler, S: Slot + ?Sized> Worker<'_, H, S> {
    /// Serves requests on `conn` until it must be closed or parked, resuming what it waited for.
    pub(crate) fn serve(&mut self, mut conn: Conn, waiting: Waiting) -> Served {
        self.filled = 0;
        self.maybe_more = false;
        let mut head_deadline = None;
        let mut resumed = None;
        match waiting {
            Waiting::Request => {}
            Waiting::Head(pending, deadline) => {
                self.buf[..pending.len()].copy_from_slice(&pending);
                self.filled = pending.len();
                head_deadline = Some(deadline);
            }
            Waiting::Body(pending) => {
                let PendingBody { req, progress } = *pending;
                self.spare_req = Some(std::mem::replace(&mut self.req, req));
                resumed = Some(progress);
            }
        }
        conn.peer.write_to(&mut self.req.remote_addr);
        loop {
            let mut progress = match resumed.take() {
                Some(progress) => progress,
                None => {
                    let start = Instant::now();
                    let wall = SystemTime::now();
                    let head = match self.read_head(&conn, head_deadline.take()) {
                        HeadRead::Ready(head) => head,
                        HeadRead::Idle => return Served::Park(conn, Waiting::Request),
                        HeadRead::Partial(deadline) => {
                            let pending = self.buf[..self.filled].to_vec();
                            return Served::Park(conn, Waiting::Head(pending, deadline));
                        }
                        HeadRead::Gone => return Served::Closed,
                        HeadRead::TimedOut => {
                            // 4.5: no request line for a head that never completed.
                            self.expire_head(conn);
                            return Served::Closed;
                        }
                        HeadRead::Refused(error) => {
                            self.refused_head(conn, error, start, wall);
                            return Served::Closed;
                        }
                    };
                    self.begin_body(head, start, wall)
                }
            };
            match self.read_body(&conn, &mut progress) {
                Ok(true) => {}
                Ok(false) => {
                    let spare = self.spare_req.take().unwrap_or_else(Request::empty);
                    let req = std::mem::replace(&mut self.req, spare);
                    let pending = Box::new(PendingBody { req, progress });
                    return Served::Park(conn, Waiting::Body(pending));
                }
                Err(fail) => {
                    self.failed_body(conn, fail, progress.start, progress.wall, true);
                    return Served::Closed;
                }
            }
            let keep = self.respond(&conn, &progress.head, progress.start, progress.wall);
            conn.served = true;
            if !keep {
                if self.filled > 0 {
                    // Pipelined bytes left unread: drain them so the close is not a reset.
                    conn.stream.linger_close(LINGER, LINGER_QUIET);
                }
                return Served::Closed;
            }
            if self.filled == 0 && !self.maybe_more {
                return Served::Park(conn, Waiting::Request);
            }
        }
    }

    /// Parses what is received and reads what is available, never waiting: a connection with
    /// nothing or part of a head to show goes back to the loop's poll. `deadline` bounds the
    /// whole head (30 s from its first read unless resumed).
    fn read_head(&mut self, conn: &Conn, deadline: Option<Instant>) -> HeadRead {
        let deadline = deadline.unwrap_or_else(|| Instant::now() + self.config.head_timeout);
        loop {
            if self.filled > 0 {
                match self
                    .parser
                    .parse(&self.buf[..self.filled], &self.limits, &mut self.req)
                {
                    Ok(Some(head)) => return HeadRead::Ready(head),
                    Ok(None) => {}
                    Err(error) => return HeadRead::Refused(error),
                }
                if Instant::now() >= deadline {
                    return HeadRead::TimedOut;
                }
            }
            // The parser refuses a full buffer, so there is always room here.
            let room = self.buf.len() - self.filled;
            match conn.stream.try_read(&mut self.buf[self.filled..]) {
                Ok(Some(0)) | Err(_) => return HeadRead::Gone,
                Ok(Some(n)) => {
                    self.filled += n;
                    self.maybe_more = n == room;
                }
                Ok(None) => {
                    self.maybe_more = false;
                    return if self.filled == 0 {
                        HeadRead::Idle
                    } else {
                        HeadRead::Partial(deadline)
                    };
                }
            }
        }
    }

    /// Takes the head out of the buffer and the start of a `Content-Length` body with it.
    fn begin_body(&mut self, head: Head, start: Instant, wall: SystemTime) -> BodyProgress {
        self.req.body.clear();
        let mut used = head.len;
        let mut remaining = 0;
        let mut decoder = None;
        match head.framing {
            Framing::None => {}
            Framing::Length(length) => {
                let take = ((self.filled - used) as u64).min(length) as usize;
                self.req
                    .body
                    .extend_from_slice(&self.buf[used..used + take]);
                used += take;
                remaining = length - take as u64;
            }
            Framing::Chunked => decoder = Some(ChunkedDecoder::new()),
        }
        self.buf.copy_within(used..self.filled, 0);
        self.filled -= used;
        BodyProgress {
            head,
            remaining,
            decoder,
            continue_owed: head.expect_continue,
            start,
            wall,
        }
    }

    /// Reads what is available of the body into `req.body`, never waiting: `Ok(false)` when the
    /// rest has not arrived yet. Leaves what follows the body at the start of the buffer.
    fn read_body(&mut self, conn: &Conn, progress: &mut BodyProgress) -> Result<bool, BodyFail> {
        loop {
            if let Some(decoder) = progress.decoder.as_mut() {
                if self.filled > 0 {
                    let used = decoder
                        .decode(
                            &self.buf[..self.filled],
                            &mut self.req.body,
                            self.config.limit_post,
                        )
                        .map_err(|e| match e {
                            ChunkError::Malformed => BodyFail::Malformed,
                            ChunkError::TooLarge => BodyFail::TooLarge,
                        })?;
                    // The decoder keeps partial lines itself: all is used unless the body ended.
                    self.buf.copy_within(used..self.filled, 0);
                    self.filled -= used;
                }
                if decoder.is_done() {
                    return Ok(true);
                }
            } else if progress.remaining == 0 {
                return Ok(true);
            }
            if progress.continue_owed {
                self.send_continue(conn)?;
                progress.continue_owed = false;
            }
            let (want, result) = if progress.decoder.is_some() {
                let room = self.buf.len() - self.filled;
                let result = conn.stream.try_read(&mut self.buf[self.filled..]);
                if let Ok(Some(n)) = result {
                    self.filled += n;
                }
                (room, result)
            } else {
                let old = self.req.body.len();
                let piece = progress.remaining.min(BODY_READ as u64) as usize;
                self.req.body.resize(old + piece, 0);
                let result = conn.stream.try_read(&mut self.req.body[old..]);
                let n = match result {
                    Ok(Some(n)) => n,
                    _ => 0,
                };
                self.req.body.truncate(old + n);
                progress.remaining -= n as u64;
                (piece, result)
            };
            match result {
                Ok(Some(0)) | Err(_) => {
                    self.body_read_error(want, progress, false);
                    return Err(BodyFail::Closed);
                }
                Ok(Some(n)) => self.maybe_more = n == want,
                Ok(None) => {
                    self.maybe_more = false;
                    return Ok(false);
                }
            }
        }
    }

    fn send_continue(&mut self, conn: &Conn) -> Result<(), BodyFail> {
        let (_, _, error) = conn.stream.write_all(
            &[b"HTTP/1.1 100 Continue\r\n\r\n"],
            1,
            self.config.socket_timeout,
        );
        match error {
            None => Ok(()),
            Some(_) => Err(BodyFail::Closed),
        }
    }

    /// The `[uwsgi-body-read]` lines of 4.3.
    fn body_read_error(&mut self, want: usize, progress: &BodyProgress, timeout: bool) {
        let (length, done, left) = match &progress.decoder {
            Some(decoder) => (0, decoder.decoded(), 0),
            None => {
                let done = self.req.body.len() as u64;
                (done + progress.remaining, done, progress.remaining)
            }
        };
        let line = if timeout {
            format!(
                "[uwsgi-body-read] Timeout reading {want} bytes. Content-Length: {length} consumed: {done} left: {left}"
            )
        } else {
            format!(
                "[uwsgi-body-read] Error reading {want} bytes. Content-Length: {length} consumed: {done} left: {left} message: Client closed connection"
            )
        };
        self.log.line(&line);
    }

    /// Runs the handler and writes its response. Returns whether the connection stays open.
    fn respond(&mut self, conn: &Conn, head: &Head, start: Instant, wall: SystemTime) -> bool {
        self.slot.request_started(
            &self.req.method,
            &self.req.target,
            &self.req.remote_addr,
            self.config.harakiri,
        );
        if self.graceful_harakiri {
            set_handler_client(Some(conn.stream.raw_fd()));
        }
        let handler = &mut self.handler;
        let req = &self.req;
        let outcome = catch_unwind(AssertUnwindSafe(|| handler.handle(req)));
        if self.graceful_harakiri {
            set_handler_client(None);
        }
        let (response, panicked) = match outcome {
            Ok(response) => (response, false),
            Err(payload) => {
                self.exceptions += 1;
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                self.log.dated(&format!(
                    "handler panicked during {} {} ({}): {}",
                    self.req.method, self.req.target, self.req.remote_addr, message
                ));
                (self.error_response(500), true)
            }
        };
        self.requests += 1;
        let client_keep = match self.req.version {
            Version::Http11 => head.connection != ConnectionOption::Close,
            Version::Http10 => head.connection == ConnectionOption::KeepAlive,
        };
        let keep = conn.keep_alive
            && client_keep
            && !panicked
            && !self.stop_requested()
            && !self.recycle_due()
            && !asks_close(&response, &self.config.add_headers);
        let persistence = if keep {
            Persistence::KeepAlive
        } else {
            Persistence::Close
        };
        let send_body = self.req.method != "HEAD";
        let written = self.write_response(
            conn,
            self.req.version,
            &response,
            persistence,
            send_body,
            self.config.socket_timeout,
        );
        self.slot
            .request_finished(written.status, written.total as u64);
        self.log_request(conn.listener, true, &written, start, wall);
        // The body buffer is reused from request to request, but a large upload must not pin
        // its memory in the worker for good.
        if self.req.body.capacity() > KEPT_BODY_CAPACITY {
            self.req.body = Vec::new();
        }
        keep && !written.failed
    }

    /// Builds the 504 the graceful-harakiri signal handler writes (3.6 item 4).
    pub(crate) fn prepare_timeout_response(&mut self) {
        let response = self.error_response(504);
        let mut bytes = Vec::new();
        encode_head(
            &mut bytes,
            Version::Http11,
            &response,
            &self.config.add_headers,
            Persistence::Close,
        );
        bytes.extend_from_slice(&response.body);
        set_timeout_response(bytes);
    }

    fn error_response(&mut self, status: u16) -> Response {
        let handler = &mut self.handler;
        catch_unwind(AssertUnwindSafe(|| handler.error_response(status)))
            .unwrap_or_else(|_| Response::json_error(status))
    }

    fn write_response(
        &mut self,
        conn: &Conn,
        version: Version,
        response: &Response,
        persistence: Persistence,
        send_body: bool,
        timeout: Duration,
    ) -> Written {
        let fields = encode_head(
            &mut self.head_out,
            version,
            response,
            &self.config.add_headers,
            persistence,
        );
        let body: &[u8] = if send_body && !bodiless(response.status) {
            &response.body
        } else {
            &[]
        };
        let (total, switches, error) = conn.stream.write_all(&[&self.head_out, body], 1, timeout);
        let head = self.head_out.len();
        let failed = error.is_some();
        if let Some(error) = error {
            let text = error.to_string();
            let text = text.split(" (os error").next().unwrap_or("");
            self.log.dated(&format!(
                "write error: {} during {} {} ({})",
                text, self.req.method, self.req.target, self.req.remote_addr
            ));
        }
        Written {
            // 6.4: a response of which nothing could be sent is logged as 500.
            status: if failed && total == 0 {
                500
            } else {
                response.status
            },
            total,
            body: total.saturating_sub(head),
            head,
            fields,
            switches,
            failed,
        }
    }

    /// The request line of 6.4, when logging is on for this status.
    fn log_request(
        &mut self,
        listener: usize,
        app: bool,
        written: &Written,
        start: Instant,
        wall: SystemTime,
    ) {
        let status = written.status;
        let forced = (self.config.log_4xx && (400..500).contains(&status))
            || (self.config.log_5xx && status >= 500);
        if self.config.disable_logging && !forced {
            return;
        }
        let addr = if self.config.log_x_forwarded_for {
            self.req
                .header("x-forwarded-for")
                .unwrap_or(&self.req.remote_addr)
        } else {
            &self.req.remote_addr
        };
        let record = RequestRecord {
            pid: self.pid,
            worker_id: self.id,
            app,
            worker_requests: if app { self.requests as i64 } else { -1 },
            total_requests: self.slot.total_requests().unwrap_or(self.requests),
            addr,
            request: &self.req,
            server_name: &self.server_name,
            server_port: self.port_of(listener),
            start: wall,
            body_bytes: written.body as u64,
            elapsed: start.elapsed(),
            status,
            header_count: written.fields,
            head_bytes: written.head,
            switches: written.switches,
            write_failed: written.failed,
        };
        self.log.request(&record);
    }

    /// Answers 408 to a head that missed its deadline (4.5), without waiting on the client.
    pub(crate) fn expire_head(&mut self, conn: Conn) {
        // No request line: what another request left must not show in a write-error line.
        self.req.method.clear();
        self.req.target.clear();
        conn.peer.write_to(&mut self.req.remote_addr);
        self.refuse(conn, 408, Version::Http11, false);
    }

    /// Answers `status` with `Connection: close` (nothing is logged here) and closes.
    /// `linger`: wait on the client to take the answer and drain what it still sends (see
    /// `Stream::linger_close`); without, an expired parked connection is answered only if its
    /// socket has room and closed at once, since the worker serves others meanwhile and a slow
    /// client may have many such connections.
    fn refuse(&mut self, conn: Conn, status: u16, version: Version, linger: bool) -> Written {
        let response = self.error_response(status);
        let timeout = if linger {
            self.config.socket_timeout
        } else {
            Duration::ZERO
        };
        let written =
            self.write_response(&conn, version, &response, Persistence::Close, true, timeout);
        if linger {
            conn.stream.linger_close(LINGER, LINGER_QUIET);
        } else {
            conn.stream.drain_close();
        }
        written
    }

    fn refused_head(&mut self, conn: Conn, error: HeadError, start: Instant, wall: SystemTime) {
        match error {
            HeadError::UriTooLong | HeadError::TooLarge => self.log.line(&format!(
                "invalid HTTP request size (max {})...skip",
                self.config.buffer_size
            )),
            HeadError::Malformed | HeadError::Version => self.log.dated("invalid HTTP request"),
            HeadError::TooManyHeaders => self.log.line("max vec size reached. skip this var."),
            HeadError::BodyTooLarge => self.log.line("Invalid (too big) CONTENT_LENGTH. skip."),
            HeadError::BadFraming | HeadError::UnsupportedCoding | HeadError::Expectation => {}
        }
        let parsed = error.request_parsed();
        let version = if parsed {
            self.req.version
        } else {
            // Not this request's: what the previous one left must not show in a write-error line.
            self.req.method.clear();
            self.req.target.clear();
            Version::Http11
        };
        let listener = conn.listener;
        let written = self.refuse(conn, error.status(), version, true);
        if parsed {
            self.log_request(listener, false, &written, start, wall);
        }
    }

    /// Answers 408 to a parked body that stayed silent for `socket-timeout` (4.3, 4.5).
    pub(crate) fn expire_body(&mut self, conn: Conn, pending: Box<PendingBody>) {
        let PendingBody { req, progress } = *pending;
        let spare = std::mem::replace(&mut self.req, req);
        let want = match progress.decoder {
            Some(_) => self.buf.len(),
            None => progress.remaining.min(BODY_READ as u64) as usize,
        };
        self.body_read_error(want, &progress, true);
        self.failed_body(
            conn,
            BodyFail::TimedOut,
            progress.start,
            progress.wall,
            false,
        );
        self.req = spare;
    }

    fn failed_body(
        &mut self,
        conn: Conn,
        fail: BodyFail,
        start: Instant,
        wall: SystemTime,
        linger: bool,
    ) {
        let status = match fail {
            BodyFail::Closed => return,
            BodyFail::TimedOut => 408,
            BodyFail::Malformed => 400,
            BodyFail::TooLarge => {
                self.log.line("Invalid (too big) CONTENT_LENGTH. skip.");
                413
            }
        };
        let listener = conn.listener;
        let written = self.refuse(conn, status, self.req.version, linger);
        self.log_request(listener, false, &written, start, wall);
    }
}

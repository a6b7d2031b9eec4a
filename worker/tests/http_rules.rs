//! The HTTP rules of SERVER.md section 4 over real sockets (checklist items 27-47), one request per
//! connection (`http-socket`).

mod http_harness;

use http_harness::{
    only_reply, only_reply_to, quick_config, read_reply, read_to_close, RecordingSlot, SlotEvent,
    TestServer,
};
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use worker::HttpConfig;

fn server() -> TestServer {
    TestServer::start(HttpConfig::default(), false)
}

#[test]
fn http11_get_is_answered_and_closed() {
    let server = server();
    let data = server.exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let reply = only_reply(&data);
    assert_eq!((reply.version, reply.status), (1, 200));
    assert_eq!(reply.header("Content-Length"), Some("6"));
    assert_eq!(reply.header("Connection"), Some("close"));
    assert_eq!(reply.body, b"hello\n");
    // The request line of 6.4: the head is 83 bytes with `Connection: close`.
    let line = server.log.wait_for("GET / =>");
    let pid = std::process::id();
    assert!(
        line.starts_with(&format!("[pid: {pid}|app: 0|req: 1/1] 127.0.0.1 () {{")),
        "{line}"
    );
    assert!(line.contains("] GET / => generated 6 bytes in "), "{line}");
    assert!(
        line.ends_with(" msecs (HTTP/1.1 200) 3 headers in 83 bytes (1 switches on core 0)"),
        "{line}"
    );
    // 9 fixed variables + 1 header.
    assert!(line.contains("{20 vars in "), "{line}");
}

#[test]
fn http10_keep_alive_on_http_socket_is_closed() {
    let server = server();
    let data = server.exchange(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let reply = only_reply(&data);
    assert_eq!((reply.version, reply.status), (0, 200));
    assert_eq!(reply.header("Connection"), None);
    assert!(reply.head.starts_with("HTTP/1.0 200 OK\r\n"));
}

#[test]
fn pipelined_requests_on_http_socket_get_one_response() {
    let server = server();
    let data = server.exchange(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    let reply = only_reply(&data);
    assert_eq!(reply.status, 200);
    assert_eq!(server.request_events().len(), 2, "one request handled");
}

#[test]
fn oversize_heads_get_431_or_414_and_the_worker_goes_on() {
    let config = HttpConfig {
        buffer_size: 1024,
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, false);
    let header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(1024 - 23 + 1));
    assert_eq!(header.len(), 1025);
    assert_eq!(only_reply(&server.exchange(header.as_bytes())).status, 431);
    server
        .log
        .wait_for("invalid HTTP request size (max 1024)...skip");
    let line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(1100));
    let reply = only_reply(&server.exchange(line.as_bytes()));
    assert_eq!(reply.status, 414);
    assert_eq!(reply.header("Connection"), Some("close"));
    // Exactly buffer-size bytes is fine, and the same loop still serves.
    let exact = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(1024 - 23));
    assert_eq!(only_reply(&server.exchange(exact.as_bytes())).status, 200);
}

#[test]
fn head_of_65535_bytes_is_served_with_the_largest_buffer() {
    let config = HttpConfig {
        buffer_size: 65535,
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, false);
    let head = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(65535 - 23));
    assert_eq!(head.len(), 65535);
    assert_eq!(only_reply(&server.exchange(head.as_bytes())).status, 200);
}

fn with_headers(n: usize) -> Vec<u8> {
    let mut raw = String::from("GET /headers HTTP/1.1\r\n");
    for i in 0..n {
        raw.push_str(&format!("X-{i}: {i}\r\n"));
    }
    raw.push_str("\r\n");
    raw.into_bytes()
}

#[test]
fn header_count_limit_gives_431() {
    let server = server();
    let reply = only_reply(&server.exchange(&with_headers(120)));
    assert_eq!(reply.status, 431);
    // Refused after parsing: a request line with app -1.
    let line = server.log.wait_for("GET /headers =>");
    assert!(line.contains("|app: -1|req: -1/"), "{line}");
    assert!(line.contains("(HTTP/1.1 431)"), "{line}");
    assert_eq!(only_reply(&server.exchange(&with_headers(100))).status, 200);
}

#[test]
fn malformed_heads_get_400_and_the_log_line() {
    let server = server();
    let reply = only_reply(&server.exchange(b"GET / HTTP/1.1\r\nNoColon\r\n\r\n"));
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    assert!(reply.body_text().contains("\"code\":400"));
    let line = server.log.wait_for("invalid HTTP request");
    // `<ctime> - invalid HTTP request`: 24 characters of ctime first.
    assert_eq!(&line[24..], " - invalid HTTP request", "{line}");
    assert_eq!(only_reply(&server.exchange(b"GARBAGE\r\n\r\n")).status, 400);
    assert_eq!(
        only_reply(&server.exchange(b"GET / HTTP/2.0\r\n\r\n")).status,
        505
    );
    // No request line for a head that never parsed.
    assert_eq!(server.log.count("=> generated"), 0);
}

#[test]
fn bad_content_length_gets_400() {
    let server = server();
    for raw in [
        &b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        assert_eq!(only_reply(&server.exchange(raw)).status, 400);
    }
    assert_eq!(
        only_reply(&server.exchange(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n")).status,
        501
    );
}

#[test]
fn limit_post_answers_413_before_the_body() {
    let config = HttpConfig {
        limit_post: 100,
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, false);
    let mut stream = server.connect();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nContent-Length: 500\r\n\r\n")
        .unwrap();
    // The answer comes without any body byte sent.
    let reply = only_reply(&read_to_close(&mut stream));
    assert_eq!(reply.status, 413);
    assert_eq!(reply.header("Connection"), Some("close"));
    server
        .log
        .wait_for("Invalid (too big) CONTENT_LENGTH. skip.");
    let line = server.log.wait_for("POST /echo =>");
    assert!(
        line.contains("|app: -1|") && line.contains("(HTTP/1.1 413)"),
        "{line}"
    );
    // Chunked bodies are limited on their decoded size.
    let chunked = format!(
        "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n{}\r\n1\r\nx\r\n0\r\n\r\n",
        "a".repeat(100)
    );
    assert_eq!(only_reply(&server.exchange(chunked.as_bytes())).status, 413);
    let body_ok = format!(
        "POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\n{}",
        "b".repeat(100)
    );
    assert_eq!(
        only_reply(&server.exchange(body_ok.as_bytes())).body.len(),
        100
    );
}

#[test]
fn chunked_body_reaches_the_handler_decoded() {
    let server = server();
    let reply = only_reply(&server.exchange(
        b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"hello");
    // A large chunked body arriving in many reads.
    let big = "z".repeat(200_000);
    let raw = format!(
        "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n3\r\nend\r\n0\r\n\r\n",
        big.len()
    );
    let reply = only_reply(&server.exchange(raw.as_bytes()));
    assert_eq!(reply.body.len(), 200_003);
    assert!(reply.body.ends_with(b"zend"));
}

#[test]
fn large_content_length_body_is_read_whole() {
    let server = server();
    let body = vec![b'q'; 300_000];
    let mut raw = format!(
        "POST /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let reply = only_reply(&server.exchange(&raw));
    assert_eq!(reply.body, body);
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let server = server();
    let mut stream = server.connect();
    stream
        .write_all(b"PUT /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        .unwrap();
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut got = vec![0u8; interim.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(got, interim);
    stream.write_all(b"body").unwrap();
    let reply = only_reply(&read_to_close(&mut stream));
    assert_eq!((reply.status, reply.body.as_slice()), (200, &b"body"[..]));
    let reply = only_reply(
        &server.exchange(b"PUT /echo HTTP/1.1\r\nExpect: something\r\nContent-Length: 1\r\n\r\nx"),
    );
    assert_eq!(reply.status, 417);
}

#[test]
fn short_body_then_silence_gets_408_after_socket_timeout() {
    let server = TestServer::start(quick_config(), false);
    let mut stream = server.connect();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    let sent = Instant::now();
    let data = read_to_close(&mut stream);
    let waited = sent.elapsed();
    assert_eq!(only_reply(&data).status, 408);
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_millis(2500), "{waited:?}");
    let line = server.log.wait_for("[uwsgi-body-read] Timeout reading");
    assert!(
        line.contains("Content-Length: 10 consumed: 3 left: 7"),
        "{line}"
    );
}

#[test]
fn partial_head_then_silence_gets_408_without_request_line() {
    let server = TestServer::start(quick_config(), false);
    let mut stream = server.connect();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let sent = Instant::now();
    let data = read_to_close(&mut stream);
    let waited = sent.elapsed();
    assert_eq!(only_reply(&data).status, 408);
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(2500),
        "{waited:?}"
    );
    // A connection that sends nothing is closed silently.
    let mut idle = server.connect();
    let sent = Instant::now();
    assert!(read_to_close(&mut idle).is_empty());
    assert!(sent.elapsed() >= Duration::from_millis(900));
    assert_eq!(server.log.count("=> generated"), 0);
}

#[test]
fn head_gets_the_get_length_and_no_body() {
    let server = server();
    let data = server.exchange(b"HEAD / HTTP/1.1\r\n\r\n");
    let reply = only_reply_to(&data, true);
    assert_eq!(reply.header("Content-Length"), Some("6"));
    assert!(reply.body.is_empty());
    let line = server.log.wait_for("HEAD / =>");
    assert!(line.contains("generated 0 bytes"), "{line}");
    for code in [204, 304] {
        let raw = format!("GET /status?code={code} HTTP/1.1\r\n\r\n");
        let data = server.exchange(raw.as_bytes());
        let reply = only_reply(&data);
        assert_eq!(reply.status, code);
        assert_eq!(reply.header("Content-Length"), None);
        assert!(data.ends_with(b"\r\n\r\n"), "no body after a {code}");
    }
}

#[test]
fn added_headers_follow_the_handler_on_every_response() {
    let config = HttpConfig {
        add_headers: vec![
            ("X-A".into(), "1".into()),
            ("Connection".into(), "close".into()),
        ],
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, false);
    let reply = only_reply(&server.exchange(b"GET / HTTP/1.1\r\n\r\n"));
    assert!(
        reply
            .head
            .contains("Content-Type: text/plain\r\nX-A: 1\r\n"),
        "{}",
        reply.head
    );
    assert_eq!(
        reply.head.matches("Connection:").count(),
        1,
        "{}",
        reply.head
    );
    let reply = only_reply(&server.exchange(b"BAD\r\n\r\n"));
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("X-A"), Some("1"));
}

#[test]
fn repeated_headers_are_combined() {
    let server = server();
    let reply = only_reply(&server.exchange(b"GET /headers HTTP/1.1\r\nX-A: 1\r\nX-A: 2\r\n\r\n"));
    assert_eq!(reply.body_text(), "X-A: 1, 2\n");
}

#[test]
fn scheme_address_and_target_given_to_the_handler() {
    let server = server();
    let meta = |raw: &[u8]| only_reply(&server.exchange(raw)).body_text();
    let https = meta(
        b"GET /meta HTTP/1.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 10.1.2.3\r\n\r\n",
    );
    assert!(https.contains("scheme=Https"), "{https}");
    assert!(https.contains("addr=127.0.0.1\n"), "{https}");
    let foo = meta(b"GET /meta HTTP/1.1\r\nX-Forwarded-Proto: foo\r\n\r\n");
    assert!(foo.contains("scheme=Http\n"), "{foo}");
    let absolute = meta(b"GET http://example.com/meta?x=1 HTTP/1.1\r\n\r\n");
    assert!(absolute.contains("target=/meta?x=1\n"), "{absolute}");
}

#[test]
fn log_x_forwarded_for_shows_the_header() {
    let config = HttpConfig {
        log_x_forwarded_for: true,
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, false);
    let reply = only_reply(
        &server.exchange(b"GET /meta HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n\r\n"),
    );
    assert!(reply.body_text().contains("addr=127.0.0.1\n"));
    let line = server.log.wait_for("GET /meta =>");
    assert!(line.contains("] 10.0.0.1, 10.0.0.2 () {"), "{line}");
}

#[test]
fn handler_panic_gets_500_and_the_next_request_is_served() {
    let server = server();
    let reply = only_reply(&server.exchange(b"GET /panic HTTP/1.1\r\n\r\n"));
    assert_eq!(reply.status, 500);
    assert_eq!(reply.header("X-Error-By"), Some("probe"));
    assert!(reply.body_text().contains("\"code\":500"));
    server
        .log
        .wait_for("handler panicked during GET /panic (127.0.0.1): probe panic");
    assert_eq!(
        only_reply(&server.exchange(b"GET / HTTP/1.1\r\n\r\n")).status,
        200
    );
}

#[test]
fn slot_hears_start_and_end_of_each_handled_request() {
    let config = HttpConfig {
        harakiri: 7,
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, false);
    let data = server.exchange(b"GET /x?y=1 HTTP/1.1\r\n\r\n");
    only_reply(&data);
    server.exchange(b"GARBAGE\r\n\r\n");
    server.log.wait_for("invalid HTTP request");
    let events: Vec<SlotEvent> = server.slot.events.lock().unwrap().clone();
    assert_eq!(
        events,
        vec![
            SlotEvent::Accepting,
            SlotEvent::Started("GET".into(), "/x?y=1".into(), "127.0.0.1".into(), 7),
            SlotEvent::Finished(200, data.len() as u64),
        ]
    );
    let _: &RecordingSlot = &server.slot;
}

#[test]
fn disable_logging_and_log_5xx() {
    let config = HttpConfig {
        disable_logging: true,
        log_5xx: true,
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, false);
    only_reply(&server.exchange(b"GET /status?code=201 HTTP/1.1\r\n\r\n"));
    only_reply(&server.exchange(b"GET /status?code=503 HTTP/1.1\r\n\r\n"));
    let line = server.log.wait_for("=> generated");
    assert!(line.contains("(HTTP/1.1 503)"), "{line}");
    assert_eq!(server.log.count("=> generated"), 1);
}

#[test]
fn long_uri_uses_the_short_log_line() {
    let config = HttpConfig {
        buffer_size: 65535,
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, false);
    let raw = format!("GET /{} HTTP/1.1\r\n\r\n", "u".repeat(5000));
    only_reply(&server.exchange(raw.as_bytes()));
    let line = server.log.wait_for("=> generated");
    assert!(
        line.contains("] 0.0.0.0 () {") && line.contains("] - - => generated"),
        "{line}"
    );
    assert!(line.contains("(- 200)"), "{line}");
}

#[test]
fn unix_socket_clients_are_0_0_0_0() {
    use std::os::unix::net::{UnixListener, UnixStream};
    let dir = std::env::temp_dir().join(format!("worker-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("http.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let server = TestServer::start_on(
        vec![worker::HttpListener {
            socket: master::ListenSocket::Unix(listener),
            keep_alive: false,
        }],
        0,
        HttpConfig::default(),
    );
    let mut stream = UnixStream::connect(&path).unwrap();
    stream.set_read_timeout(Some(http_harness::WAIT)).unwrap();
    stream.write_all(b"GET /meta HTTP/1.1\r\n\r\n").unwrap();
    let mut data = Vec::new();
    stream.read_to_end(&mut data).unwrap();
    assert!(only_reply(&data).body_text().contains("addr=0.0.0.0\n"));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn write_to_a_vanished_client_is_logged() {
    use std::os::fd::AsRawFd;
    let server = server();
    let stream = server.connect();
    let mut writer = &stream;
    writer
        .write_all(b"GET /sleep?ms=300 HTTP/1.1\r\n\r\n")
        .unwrap();
    // Close with a reset (SO_LINGER 0) while the handler sleeps.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a valid linger value on an open socket.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(stream);
    let line = server.log.wait_for("write error: ");
    assert!(
        line.ends_with(" during GET /sleep?ms=300 (127.0.0.1)")
            && line.contains(" - write error: "),
        "{line}"
    );
    // Nothing could be sent: the request line says 500 and 0 bytes.
    let request = server.log.wait_for("GET /sleep?ms=300 =>");
    assert!(
        request.contains("generated 0 bytes") && request.contains("(HTTP/1.1 500)"),
        "{request}"
    );
    assert_eq!(
        only_reply(&server.exchange(b"GET / HTTP/1.1\r\n\r\n")).status,
        200
    );
}

#[test]
fn log_format_replaces_the_request_line() {
    let config = HttpConfig {
        log_format: Some("%(addr) %(user) [%(ltime)] %(status) %(method) %(uri) %(rsize)".into()),
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, false);
    only_reply(&server.exchange(b"GET /status?code=201 HTTP/1.1\r\n\r\n"));
    let line = server.log.wait_for("GET /status");
    // `127.0.0.1 - [28/Nov/2026:16:39:42 +0000] 201 GET /status?code=201 7`
    assert!(line.starts_with("127.0.0.1 - ["), "{line}");
    assert!(line.ends_with("] 201 GET /status?code=201 7"), "{line}");
    assert_eq!(
        line.len(),
        "127.0.0.1 - [28/Nov/2026:16:39:42 +0000] 201 GET /status?code=201 7".len()
    );
}

#[test]
fn log_4xx_and_log_micros() {
    let config = HttpConfig {
        disable_logging: true,
        log_4xx: true,
        log_micros: true,
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, false);
    only_reply(&server.exchange(b"GET /status?code=200 HTTP/1.1\r\n\r\n"));
    only_reply(&server.exchange(b"GET /status?code=404 HTTP/1.1\r\n\r\n"));
    only_reply(&server.exchange(b"GET /status?code=500 HTTP/1.1\r\n\r\n"));
    let line = server.log.wait_for("=> generated");
    assert!(line.contains(" micros (HTTP/1.1 404)"), "{line}");
    // Give a 5xx line time to appear if it (wrongly) were to.
    only_reply(&server.exchange(b"GET /status?code=400 HTTP/1.1\r\n\r\n"));
    let deadline = Instant::now() + http_harness::WAIT;
    while server.log.count("=> generated") < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.log.count("=> generated"), 2);
    assert_eq!(server.log.count("(HTTP/1.1 500)"), 0);
}

#[test]
fn a_head_dripping_past_the_total_head_time_gets_408() {
    let config = HttpConfig {
        socket_timeout: Duration::from_secs(2),
        head_timeout: Duration::from_millis(1500),
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, false);
    let mut stream = server.connect();
    let sent = Instant::now();
    // One byte every 200 ms never trips the per-read timeout, only the total.
    let drip = std::thread::spawn({
        let mut stream = stream.try_clone().unwrap();
        move || {
            for byte in b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa" {
                if stream.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    });
    let data = read_to_close(&mut stream);
    let waited = sent.elapsed();
    assert_eq!(only_reply(&data).status, 408);
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_millis(3500),
        "{waited:?}"
    );
    drip.join().unwrap();
}

#[test]
fn dripping_heads_never_hold_the_worker() {
    // One worker, a hundred clients each dripping a head (slowloris): they are parked between
    // bytes, so a normal client is answered at once, and each slow one gets its 408 at the
    // head deadline.
    let config = HttpConfig {
        socket_timeout: Duration::from_secs(2),
        head_timeout: Duration::from_millis(2500),
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, true);
    let slow: Vec<std::net::TcpStream> = (0..100).map(|_| server.connect()).collect();
    let mut latencies = Vec::new();
    let started = Instant::now();
    for round in 0..8 {
        for mut stream in slow.iter() {
            let piece = &b"GET / HTTP/1.1\r\nX-Slow: a"[round * 3..round * 3 + 3];
            stream.write_all(piece).unwrap();
        }
        let sent = Instant::now();
        let reply = only_reply(&server.exchange(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert_eq!(reply.status, 200);
        latencies.push(sent.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    let max = latencies.iter().max().unwrap();
    assert!(*max < Duration::from_millis(500), "{latencies:?}");
    for mut stream in slow {
        let data = read_to_close(&mut stream);
        assert_eq!(only_reply(&data).status, 408);
    }
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(4000), "{waited:?}");
}

#[test]
fn dripping_bodies_never_hold_the_worker() {
    // A body sent a few bytes at a time (slow POST) is parked between pieces like a head, the
    // request is answered once the body is complete, and a body gone silent gets 408.
    let config = HttpConfig {
        socket_timeout: Duration::from_secs(1),
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, true);
    let mut dripping = server.connect();
    dripping
        .write_all(b"POST /echo HTTP/1.1\r\nContent-Length: 12\r\n\r\nhello")
        .unwrap();
    let mut chunked = server.connect();
    chunked
        .write_all(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        .unwrap();
    let mut silent = server.connect();
    silent
        .write_all(b"POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    let reply = only_reply(&server.exchange(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
    assert_eq!(reply.status, 200);
    assert!(
        sent.elapsed() < Duration::from_millis(300),
        "{:?}",
        sent.elapsed()
    );
    dripping.write_all(b", worl").unwrap();
    chunked.write_all(b"4\r\ndefg\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    dripping.write_all(b"d").unwrap();
    chunked.write_all(b"0\r\n\r\n").unwrap();
    let reply = read_reply(&mut dripping, &mut Vec::new(), false);
    assert_eq!(
        (reply.status, reply.body_text().as_str()),
        (200, "hello, world")
    );
    let reply = read_reply(&mut chunked, &mut Vec::new(), false);
    assert_eq!((reply.status, reply.body_text().as_str()), (200, "abcdefg"));
    let data = read_to_close(&mut silent);
    assert_eq!(only_reply(&data).status, 408);
    server.log.wait_for(
        "[uwsgi-body-read] Timeout reading 7 bytes. Content-Length: 10 consumed: 3 left: 7",
    );
}

#[test]
fn a_graceful_stop_still_answers_requests_partly_received() {
    // max-requests = 1: the first answered request stops the worker gracefully, but a request
    // whose head had only partly arrived was accepted already and is still answered.
    let config = HttpConfig {
        max_requests: 1,
        min_worker_lifetime: Duration::ZERO,
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, true);
    let mut partial = server.connect();
    partial.write_all(b"GET /status?code=202 HT").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let reply = only_reply(&server.exchange(b"GET / HTTP/1.1\r\n\r\n"));
    assert_eq!(reply.status, 200);
    std::thread::sleep(Duration::from_millis(200));
    partial.write_all(b"TP/1.1\r\n\r\n").unwrap();
    let reply = only_reply(&read_to_close(&mut partial));
    assert_eq!(reply.status, 202);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert_eq!(server.wait_exit(), master::EXIT_GRACEFUL);
}

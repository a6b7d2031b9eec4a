//! Keep-alive listeners (`http11-socket`, 4.2, checklist item 48): several requests per connection,
//! pipelining, `Connection: close`, idle timeout, parking while serving others, the 64-connection cap.

mod http_harness;

use http_harness::{quick_config, read_reply, read_to_close, TestServer};
use std::io::Write;
use std::time::{Duration, Instant};
use worker::HttpConfig;

#[test]
fn three_requests_on_one_connection_then_close() {
    let server = TestServer::start(HttpConfig::default(), true);
    let mut stream = server.connect();
    let mut buffer = Vec::new();
    for i in 0..2 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let reply = read_reply(&mut stream, &mut buffer, false);
        assert_eq!(reply.status, 200, "request {i}");
        assert_eq!(reply.header("Connection"), None);
    }
    stream
        .write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let reply = read_reply(&mut stream, &mut buffer, false);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert!(read_to_close(&mut stream).is_empty());
    let line = server.log.wait_for("req: 3/3");
    assert!(line.contains("(HTTP/1.1 200) 3 headers"), "{line}");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = TestServer::start(HttpConfig::default(), true);
    let mut stream = server.connect();
    stream
        .write_all(
            b"GET /status?code=201 HTTP/1.1\r\n\r\nPOST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
              POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n\
              HEAD / HTTP/1.1\r\n\r\nGET /status?code=202 HTTP/1.1\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut buffer = Vec::new();
    assert_eq!(read_reply(&mut stream, &mut buffer, false).status, 201);
    assert_eq!(read_reply(&mut stream, &mut buffer, false).body, b"abc");
    assert_eq!(read_reply(&mut stream, &mut buffer, false).body, b"xy");
    let head = read_reply(&mut stream, &mut buffer, true);
    assert_eq!(head.header("Content-Length"), Some("6"));
    assert_eq!(read_reply(&mut stream, &mut buffer, false).status, 202);
    assert!(buffer.is_empty());
    assert!(read_to_close(&mut stream).is_empty());
}

#[test]
fn http10_keep_alive_is_honoured() {
    let server = TestServer::start(HttpConfig::default(), true);
    let mut stream = server.connect();
    let mut buffer = Vec::new();
    stream
        .write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let reply = read_reply(&mut stream, &mut buffer, false);
    assert_eq!(
        (reply.version, reply.header("Connection")),
        (0, Some("keep-alive"))
    );
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let reply = read_reply(&mut stream, &mut buffer, false);
    assert_eq!(reply.header("Connection"), None);
    assert!(
        read_to_close(&mut stream).is_empty(),
        "HTTP/1.0 without keep-alive is closed"
    );
}

#[test]
fn idle_connection_is_closed_after_the_timeout() {
    let server = TestServer::start(quick_config(), true);
    let mut stream = server.connect();
    let mut buffer = Vec::new();
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    read_reply(&mut stream, &mut buffer, false);
    let parked = Instant::now();
    assert!(read_to_close(&mut stream).is_empty());
    let idle = parked.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_millis(2600),
        "{idle:?}"
    );
}

#[test]
fn a_parked_connection_does_not_hold_the_worker() {
    let server = TestServer::start(HttpConfig::default(), true);
    let mut first = server.connect();
    let mut first_buffer = Vec::new();
    first.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    read_reply(&mut first, &mut first_buffer, false);
    // Another client, connected without sending yet, then a third one: all are served.
    let mut silent = server.connect();
    let mut other = server.connect();
    let mut other_buffer = Vec::new();
    other
        .write_all(b"GET /status?code=203 HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(read_reply(&mut other, &mut other_buffer, false).status, 203);
    silent
        .write_all(b"GET /status?code=204 HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut silent_buffer = Vec::new();
    assert_eq!(
        read_reply(&mut silent, &mut silent_buffer, false).status,
        204
    );
    first
        .write_all(b"GET /status?code=205 HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(read_reply(&mut first, &mut first_buffer, false).status, 205);
}

#[test]
fn at_most_max_parked_connections_oldest_closed() {
    let config = HttpConfig {
        keepalive_timeout: Duration::from_secs(20),
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, true);
    let mut streams = Vec::new();
    for _ in 0..=worker::config::MAX_PARKED {
        let mut stream = server.connect();
        let mut buffer = Vec::new();
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        read_reply(&mut stream, &mut buffer, false);
        streams.push(stream);
    }
    // The first one was closed to park the last; the last one is still served.
    let started = Instant::now();
    assert!(read_to_close(&mut streams[0]).is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
    let last = streams.last_mut().unwrap();
    last.write_all(b"GET /status?code=202 HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(read_reply(last, &mut Vec::new(), false).status, 202);
}

#[test]
fn handler_close_and_panic_end_the_connection() {
    let server = TestServer::start(HttpConfig::default(), true);
    for path in ["/close", "/panic"] {
        let mut stream = server.connect();
        let raw = format!("GET {path} HTTP/1.1\r\n\r\n");
        stream.write_all(raw.as_bytes()).unwrap();
        let reply = read_reply(&mut stream, &mut Vec::new(), false);
        assert_eq!(
            reply.head.matches("Connection: close").count(),
            1,
            "{}",
            reply.head
        );
        assert!(read_to_close(&mut stream).is_empty(), "{path}");
    }
}

#[test]
fn errors_close_keep_alive_connections() {
    let server = TestServer::start(HttpConfig::default(), true);
    let mut stream = server.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nBad\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        .unwrap();
    let reply = read_reply(&mut stream, &mut Vec::new(), false);
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("Connection"), Some("close"));
}

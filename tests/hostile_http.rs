//! Hostile HTTP over raw sockets against the real binary (issue 7, item 3): malformed and
//! oversized requests, smuggling attempts, invalid UTF-8, NUL bytes, pathological JSON; each gets
//! a 4xx and the same worker process answers afterwards. Slowloris clients do not starve normal
//! ones.

mod support_chaos;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support_chaos::*;

const USER: &str = "hostile";

fn server() -> Server {
    let app = format!("{SQLITE_BACKENDS}{AUTH}");
    Server::start(
        &app,
        1,
        "harakiri = 20\nbuffer-size = 65535\nlimit-post = 1048576\n",
    )
}

fn head(method: &str, target: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: {}\r\n{extra}",
        basic(USER)
    )
    .into_bytes();
    if !extra.contains("Content-Length") && !extra.contains("Transfer-Encoding") {
        raw.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(body);
    raw
}

/// `raw` with the first `from` replaced by `to` (bytes a `&str` cannot hold).
fn replace(mut raw: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = find(&raw, from).unwrap();
    raw.splice(at..at + from.len(), to.iter().copied());
    raw
}

/// Every answer on a connection, read up to EOF (smuggling must not yield a second answer).
fn all_answers(port: u16, bytes: &[u8]) -> Vec<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text[i + 9..].get(..3).and_then(|s| s.parse().ok()))
        .collect()
}

#[test]
fn malformed_and_hostile_requests_get_4xx_and_the_worker_lives() {
    let server = server();
    let client = server.client();
    make_collection(&client, USER, "b", "c");
    let worker = server.worker_pids();
    assert_eq!(worker.len(), 1);
    let records = "/v1/buckets/b/collections/c/records";

    let deep = format!(
        "{{\"data\": {{\"x\": {}{}}}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_objects = format!(
        "{{\"data\": {}1{}}}",
        "{\"a\":".repeat(5_000),
        "}".repeat(5_000)
    );
    let huge_header = format!("X-Big: {}\r\n", "a".repeat(70_000));
    let many_headers: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_body = vec![b' '; 2_000_000];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("header over buffer-size", head("GET", "/v1/", &huge_header, b"")),
        ("too many headers", head("GET", "/v1/", &many_headers, b"")),
        ("body over limit-post", head("POST", records, "Content-Type: application/json\r\n", &huge_body)),
        (
            "Content-Length overflow",
            head("POST", records, "Content-Length: 99999999999999999999999\r\n", b"{}"),
        ),
        ("negative Content-Length", head("POST", records, "Content-Length: -1\r\n", b"{}")),
        (
            "duplicate Content-Length",
            head("POST", records, "Content-Length: 2\r\nContent-Length: 3\r\n", b"{}x"),
        ),
        (
            "Content-Length with Transfer-Encoding",
            head(
                "POST",
                records,
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                b"0\r\n\r\nGET /v1/__heartbeat__ HTTP/1.1\r\nHost: x\r\n\r\n",
            ),
        ),
        (
            "invalid chunk size",
            head("POST", records, "Transfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n0\r\n\r\n"),
        ),
        (
            "chunk without CRLF",
            head("POST", records, "Transfer-Encoding: chunked\r\n", b"2\r\n{}XX0\r\n\r\n"),
        ),
        (
            "chunk size overflow",
            head("POST", records, "Transfer-Encoding: chunked\r\n", b"ffffffffffffffffffff\r\n{}\r\n0\r\n\r\n"),
        ),
        ("NUL in a header", head("GET", "/v1/", "X-A: a\0b\r\n", b"")),
        ("NUL in the target", head("GET", "/v1/buck\0ets", "", b"")),
        ("raw invalid UTF-8 in the path", replace(head("GET", "/v1/buckets/XX", "", b""), b"XX", b"\xff\xfe")),
        ("percent-encoded invalid UTF-8 in the path", head("GET", "/v1/buckets/%ff%fe", "", b"")),
        ("invalid UTF-8 in the querystring", head("GET", &format!("{records}?a=%ff"), "", b"")),
        (
            "invalid UTF-8 in the body",
            head("POST", records, "Content-Type: application/json\r\n", b"{\"data\": {\"a\": \"\xff\xfe\"}}"),
        ),
        (
            "NUL in the body",
            head("POST", records, "Content-Type: application/json\r\n", b"{\"data\": {\"a\": 1}}\0"),
        ),
        ("deeply nested arrays", head("POST", records, "Content-Type: application/json\r\n", deep.as_bytes())),
        (
            "deeply nested objects",
            head("POST", records, "Content-Type: application/json\r\n", deep_objects.as_bytes()),
        ),
        (
            "number out of range",
            head("POST", records, "Content-Type: application/json\r\n", b"{\"data\": {\"n\": 1e400}}"),
        ),
        (
            "huge _limit",
            head("GET", &format!("{records}?_limit=99999999999999999999999999"), "", b""),
        ),
        (
            "huge _since",
            head("GET", &format!("{records}?_since=1e999"), "", b""),
        ),
        ("garbage request line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec()),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        (
            "invalid UTF-8 in Authorization",
            {
                let mut raw = b"GET /v1/buckets/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic \xff\xfe\xfd\r\n\r\n".to_vec();
                raw.shrink_to_fit();
                raw
            },
        ),
        (
            "undecodable basic credentials",
            b"GET /v1/buckets/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic !!!notbase64\r\n\r\n".to_vec(),
        ),
    ];
    let mut figures = Vec::new();
    for (name, bytes) in &cases {
        let answers = all_answers(server.port, bytes);
        figures.push(format!("{name}: {answers:?}"));
        assert_eq!(
            answers.len(),
            1,
            "{name}: exactly one answer, got {answers:?}"
        );
        // A request in another HTTP version gets 505, as uWSGI; everything else a 4xx.
        let expected = if name.starts_with("HTTP/2") {
            505..506
        } else {
            400..500
        };
        assert!(
            expected.contains(&answers[0]),
            "{name}: expected {expected:?}, got {answers:?}"
        );
        assert_eq!(server.worker_pids(), worker, "{name}: the worker died");
    }
    println!(
        "hostile requests ({}):\n  {}",
        cases.len(),
        figures.join("\n  ")
    );
    // The same worker still serves, and nothing was written by any of the above.
    let list = client.call("GET", records, Some(USER), None);
    assert_eq!(list.status, 200);
    assert_eq!(
        list.json()["data"],
        serde_json::json!([]),
        "{:?}",
        list.json()
    );
    assert_eq!(server.worker_pids(), worker);
}

#[test]
fn json_edge_cases_behave_as_kinto() {
    let server = server();
    let client = server.client();
    make_collection(&client, USER, "b", "c");
    let worker = server.worker_pids();
    let path = "/v1/buckets/b/collections/c/records/r";
    let send = |body: &[u8]| {
        client
            .raw(
                &head("PUT", path, "Content-Type: application/json\r\n", body),
                Duration::from_secs(15),
            )
            .unwrap()
    };
    // Duplicate keys: Python's json keeps the last one, so does Kinto.
    let a = send(b"{\"data\": {\"k\": 1, \"k\": 2}}");
    assert_eq!(a.status, 201, "{:?}", a.json());
    assert_eq!(a.json()["data"]["k"], 2);
    // A big integer beyond 64 bits is not an error (Python ints are unbounded); stored as a
    // number.
    let a = send(b"{\"data\": {\"k\": 123456789012345678901234567890}}");
    assert!(matches!(a.status, 200 | 201), "{} {:?}", a.status, a.json());
    assert!(a.json()["data"]["k"].is_number(), "{:?}", a.json());
    // A string with an escaped NUL is valid JSON, but PostgreSQL cannot store it: refused on
    // every backend.
    let a = send(b"{\"data\": {\"k\": \"a\\u0000b\"}}");
    assert_eq!(a.status, 400, "{:?}", a.json());
    println!(
        "json edge cases: worker {worker:?} -> {:?}",
        server.worker_pids()
    );
    assert_eq!(server.worker_pids(), worker);
}

#[test]
fn slow_clients_do_not_starve_normal_ones() {
    // Three workers; two slowloris connections send one head byte per second, twenty more
    // connect and send nothing (TCP_DEFER_ACCEPT keeps those from ever reaching a worker).
    let app = format!("{SQLITE_BACKENDS}{AUTH}");
    let server = Server::start(&app, 3, "harakiri = 20\n");
    let port = server.port;
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Many more slow clients than workers: connections that send nothing never reach a worker
    // (TCP_DEFER_ACCEPT), and a head that arrives byte by byte is parked in the worker's poll
    // between bytes (until its 30 s deadline, then 408), so normal clients are served at once.
    // uWSGI (a blocking read per worker) is held by as many slow clients as it has workers.
    let slow_clients = knob("CHAOS_SLOW_CLIENTS", 30) as usize;
    let seconds = knob("CHAOS_SLOW_SECS", 5);
    let slow: Vec<_> = (0..slow_clients)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                // Half drip a head, half a body after a complete head (slow POST).
                let request: &[u8] = if i % 2 == 0 {
                    b"GET /v1/ HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"
                } else {
                    s.write_all(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n").unwrap();
                    &[b' '; 100]
                };
                let mut sent = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) && sent < request.len() {
                    if s.write_all(&request[sent..sent + 1]).is_err() {
                        break;
                    }
                    sent += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
                sent
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let client = server.client();
    let mut latencies = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(seconds) {
        let t = Instant::now();
        let a = client
            .try_call("GET", "/v1/", None, None, &[], Duration::from_secs(120))
            .expect("a normal client is served");
        assert_eq!(a.status, 200);
        latencies.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let bytes: Vec<usize> = slow.into_iter().map(|h| h.join().unwrap()).collect();
    drop(idle);
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let max = *latencies.last().unwrap();
    println!(
        "slowloris: {slow_clients} slow (heads and bodies) + 20 idle connections vs 3 workers; normal requests={} p50={p50:?} max={max:?}; slow bytes sent={bytes:?}",
        latencies.len()
    );
    assert!(
        latencies.len() > 20,
        "normal clients served: {}",
        latencies.len()
    );
    assert!(max < Duration::from_secs(2), "max latency {max:?}");
    assert!(
        bytes.iter().all(|&sent| sent >= seconds as usize),
        "every slow client kept dripping: {bytes:?}"
    );
}

//! Replays the request corpus (`corpus/valid`, `corpus/invalid/<status>-*.http`) through the head
//! parser and chunked decoder at every split position, and over a real socket whole and split.

mod http_harness;

use http_harness::{only_reply_to, read_to_close, TestServer};
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use worker::chunked::{ChunkError, ChunkedDecoder};
use worker::head::{Framing, HeadError, HeadLimits, HeadParser};
use worker::{HttpConfig, Request};

const LIMITS: HeadLimits = HeadLimits {
    buffer_size: 4096,
    max_headers: 119,
    limit_post: 1000,
};

fn config() -> HttpConfig {
    HttpConfig {
        buffer_size: LIMITS.buffer_size,
        max_headers: LIMITS.max_headers,
        limit_post: LIMITS.limit_post,
        ..HttpConfig::default()
    }
}

/// `(name, bytes, expected status)`; valid requests expect 200.
fn corpus() -> Vec<(String, Vec<u8>, u16)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut cases = Vec::new();
    for (dir, valid) in [("valid", true), ("invalid", false)] {
        let mut entries: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "http"))
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let status = if valid {
                200
            } else {
                name.split('-')
                    .next()
                    .unwrap()
                    .parse()
                    .expect("status prefix")
            };
            cases.push((name, std::fs::read(&path).unwrap(), status));
        }
    }
    assert!(cases.len() >= 40, "corpus too small: {}", cases.len());
    cases
}

/// What the worker would answer, feeding the head parser one more byte at a time (every split
/// position) and the body decoder in two pieces split at every position.
fn pure_outcome(raw: &[u8]) -> u16 {
    let mut parser = HeadParser::new();
    let mut req = Request::empty();
    let mut outcome = None;
    for end in 1..=raw.len() {
        match parser.parse(&raw[..end], &LIMITS, &mut req) {
            Ok(None) => continue,
            Ok(Some(head)) => {
                outcome = Some(Ok(head));
                break;
            }
            Err(e) => {
                outcome = Some(Err(e));
                break;
            }
        }
    }
    // Incomplete at the end of the file: the buffer-size check applies to what was received.
    let head = match outcome {
        None => return 0,
        Some(Err(e)) => {
            // Parsing the whole input at once gives the same refusal.
            assert_eq!(parser.parse(raw, &LIMITS, &mut req).err(), Some(e));
            return e.status();
        }
        Some(Ok(head)) => head,
    };
    let body = &raw[head.len..];
    match head.framing {
        Framing::None => 200,
        Framing::Length(n) => {
            assert!(
                body.len() as u64 >= n,
                "corpus body shorter than Content-Length"
            );
            200
        }
        Framing::Chunked => {
            let mut statuses = Vec::new();
            for split in 0..=body.len() {
                let mut decoder = ChunkedDecoder::new();
                let mut out = Vec::new();
                let result = decoder
                    .decode(&body[..split], &mut out, LIMITS.limit_post)
                    .and_then(|used| {
                        if decoder.is_done() {
                            return Ok(used);
                        }
                        decoder
                            .decode(&body[used..], &mut out, LIMITS.limit_post)
                            .map(|more| used + more)
                    });
                statuses.push(match result {
                    Ok(_) if decoder.is_done() => 200,
                    Ok(_) => 0,
                    Err(ChunkError::Malformed) => 400,
                    Err(ChunkError::TooLarge) => 413,
                });
            }
            statuses.dedup();
            assert_eq!(
                statuses.len(),
                1,
                "split-dependent chunk decoding: {statuses:?}"
            );
            statuses[0]
        }
    }
}

#[test]
fn corpus_through_the_parser_at_every_split() {
    for (name, raw, status) in corpus() {
        assert_eq!(pure_outcome(&raw), status, "{name}");
    }
}

#[test]
fn head_errors_report_their_status() {
    // The statuses used as corpus file prefixes are the parser's.
    for (error, status) in [
        (HeadError::Malformed, 400),
        (HeadError::UriTooLong, 414),
        (HeadError::TooLarge, 431),
        (HeadError::TooManyHeaders, 431),
        (HeadError::Version, 505),
        (HeadError::BodyTooLarge, 413),
        (HeadError::UnsupportedCoding, 501),
        (HeadError::Expectation, 417),
    ] {
        assert_eq!(error.status(), status);
    }
}

/// Sends `raw` in two writes split at `split`, then reads the whole answer.
fn exchange_split(server: &TestServer, raw: &[u8], split: usize) -> Vec<u8> {
    let mut stream = server.connect();
    // The server may answer (and close) before the second part: a failed write is fine.
    let _ = stream.write_all(&raw[..split]);
    if split < raw.len() {
        std::thread::sleep(Duration::from_millis(2));
        let _ = stream.write_all(&raw[split..]);
    }
    read_to_close(&mut stream)
}

#[test]
fn corpus_over_a_socket_whole_and_split() {
    let server = TestServer::start(config(), false);
    for (name, raw, status) in corpus() {
        let head_request = raw.starts_with(b"HEAD");
        let reply = only_reply_to(&server.exchange(&raw), head_request);
        assert_eq!(reply.status, status, "{name} whole");
        if status >= 400 {
            assert_eq!(reply.header("X-Error-By"), Some("probe"), "{name}");
        }
        // Every split for small requests, a stride through the large ones.
        let step = (raw.len() / 40).max(1);
        for split in (1..raw.len()).step_by(step) {
            let data = exchange_split(&server, &raw, split);
            let reply = only_reply_to(&data, head_request);
            assert_eq!(reply.status, status, "{name} split at {split}");
        }
    }
}

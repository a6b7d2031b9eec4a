//! Fuzzes the request head parser and the chunked body decoder: no panic, bounded results, and the
//! same answer whether a head arrives whole or in two pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use worker::chunked::ChunkedDecoder;
use worker::head::{Framing, HeadLimits, HeadParser};
use worker::Request;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // The first bytes choose the limits and a split point; the rest is the request.
    let limits = HeadLimits {
        buffer_size: 64 + data[0] as usize * 16,
        max_headers: 1 + (data[1] as usize % 130),
        limit_post: 1000,
    };
    let raw = &data[2..];
    let mut parser = HeadParser::new();
    let mut req = Request::empty();
    let whole = parser.parse(raw, &limits, &mut req);
    if let Ok(Some(head)) = &whole {
        assert!(head.len <= raw.len() && head.len <= limits.buffer_size);
        if head.framing == Framing::Chunked {
            let input = &raw[head.len..];
            let whole = decode(input, input.len(), limits.limit_post);
            if let Ok((used, body, _)) = &whole {
                assert!(*used <= input.len());
                assert!(body.len() as u64 <= limits.limit_post);
            }
            // The same body, whatever the split between two reads.
            let split = data[1] as usize % (input.len() + 1);
            assert_eq!(decode(input, split, limits.limit_post), whole);
        }
    }
    // A prefix is either incomplete or already gives the final answer (the worker parses after
    // every read); a reused parser and request give the same answer as fresh ones.
    let split = data[0] as usize % (raw.len() + 1);
    let mut again = Request::empty();
    let first = parser.parse(&raw[..split], &limits, &mut again);
    if first != Ok(None) {
        assert_eq!(first, whole);
    }
    assert_eq!(parser.parse(raw, &limits, &mut again), whole);
    if whole.is_ok() || whole.is_err_and(|e| e.request_parsed()) {
        assert_eq!(
            (&again.method, &again.target, &again.headers),
            (&req.method, &req.target, &req.headers)
        );
    }
});

/// Decodes `input` given in two reads split at `split`: consumed bytes, body, completeness.
fn decode(
    input: &[u8],
    split: usize,
    limit: u64,
) -> Result<(usize, Vec<u8>, bool), worker::chunked::ChunkError> {
    let mut decoder = ChunkedDecoder::new();
    let mut body = Vec::new();
    let mut used = decoder.decode(&input[..split], &mut body, limit)?;
    if !decoder.is_done() {
        used += decoder.decode(&input[used..], &mut body, limit)?;
    }
    Ok((used, body, decoder.is_done()))
}

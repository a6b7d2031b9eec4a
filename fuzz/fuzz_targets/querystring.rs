//! Fuzzes the querystring of plural endpoints: decoding (`api::http::parse_query`), then filters,
//! sorting, `_limit`, `_since`... (`api::resource::query::parse`). No panic; a decoded querystring
//! re-encoded with `quote_plus` decodes to the same pairs and parses to the same query; sorting
//! always ends with a `last_modified` key; `_limit` is never 0.
#![no_main]

use kinto::api::http::{parse_query, quote_plus};
use kinto::api::resource::query::{parse, parse_sort};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The worker hands the app a UTF-8 target; other bytes never reach this parser.
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_sort(Some(raw));
    let Ok(pairs) = parse_query(Some(raw)) else {
        return;
    };
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(n, v)| format!("{}={}", quote_plus(n), quote_plus(v)))
        .collect();
    let again = parse_query(Some(&encoded.join("&"))).expect("re-encoded pairs decode");
    // Pairs with an empty name and value vanish (`&=&`), as in the original.
    let kept: Vec<_> = pairs
        .iter()
        .filter(|(n, v)| !(n.is_empty() && v.is_empty()))
        .cloned()
        .collect();
    let again_kept: Vec<_> = again
        .iter()
        .filter(|(n, v)| !(n.is_empty() && v.is_empty()))
        .cloned()
        .collect();
    assert_eq!(kept, again_kept, "decode(encode(pairs)) == pairs");
    let first = parse(&pairs);
    let second = parse(&again);
    assert_eq!(
        format!("{first:?}"),
        format!("{second:?}"),
        "same query either way"
    );
    if let Ok(query) = first {
        assert!(query.sorting.iter().any(|s| s.field == "last_modified"));
        assert_ne!(query.limit, Some(0));
        for filter in &query.filters {
            assert!(
                !filter.field.contains('\0'),
                "NUL reaches the storage: {filter:?}"
            );
        }
    }
});

//! Concurrency (issue 7, item 5): 8 clients updating the same records with `If-Match` across 3
//! workers on PostgreSQL. No update is lost, every 412 is justified (the version sent had been
//! superseded), and the timestamps of a collection are unique and increase with each write.
//! Without `If-Match`, PATCHes of one object from 8 clients all land (each is merged into the
//! object as it is when written, not as it was when read).

mod support_chaos;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support_chaos::*;

const USER: &str = "racer";
const RECORDS: [&str; 3] = ["r0", "r1", "r2"];

#[derive(Default)]
struct Seen {
    /// (record, last_modified) of every successful conditional update, with the new `n`.
    updates: Vec<(String, i64, u64)>,
    /// (record, etag sent) of every 412.
    conflicts: Vec<(String, i64)>,
    /// last_modified of every creation.
    creations: Vec<i64>,
    other: Vec<String>,
}

fn etag_of(a: &Answer) -> i64 {
    a.header("ETag")
        .unwrap_or_else(|| panic!("no ETag: {:?}", a.headers))
        .trim_matches('"')
        .parse()
        .unwrap()
}

#[test]
fn if_match_updates_from_eight_clients_lose_nothing() {
    let db = PgDb::create();
    let app = format!("{}{AUTH}", pg_backends(&db.url(), 3, 10));
    let server = Server::start(&app, 3, "harakiri = 20\n");
    let client = server.client();
    make_collection(&client, USER, "race", "c");
    let base = "/v1/buckets/race/collections/c/records";
    for id in RECORDS {
        let a = client.call(
            "PUT",
            &format!("{base}/{id}"),
            Some(USER),
            Some(&json!({"data": {"n": 0}})),
        );
        assert_eq!(a.status, 201);
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let start = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut i = 0usize;
                while start.elapsed() < Duration::from_secs(6) {
                    i += 1;
                    let id = RECORDS[(t + i) % RECORDS.len()];
                    let path = format!("{base}/{id}");
                    let got = client.call("GET", &path, Some(USER), None);
                    assert_eq!(got.status, 200);
                    let etag = etag_of(&got);
                    let n = got.json()["data"]["n"].as_u64().unwrap();
                    let quoted = format!("\"{etag}\"");
                    let a = client
                        .try_call(
                            "PUT",
                            &path,
                            Some(USER),
                            Some(&json!({"data": {"n": n + 1}})),
                            &[("If-Match", quoted.as_str())],
                            Duration::from_secs(20),
                        )
                        .unwrap();
                    let mut record = seen.lock().unwrap();
                    match a.status {
                        200 => record.updates.push((
                            id.to_string(),
                            a.json()["data"]["last_modified"].as_i64().unwrap(),
                            n + 1,
                        )),
                        412 => record.conflicts.push((id.to_string(), etag)),
                        s => record.other.push(format!("{s} {:?}", a.json())),
                    }
                    drop(record);
                    if i.is_multiple_of(4) {
                        let a =
                            client.call("POST", base, Some(USER), Some(&json!({"data": {"t": t}})));
                        let mut record = seen.lock().unwrap();
                        match a.status {
                            201 => record
                                .creations
                                .push(a.json()["data"]["last_modified"].as_i64().unwrap()),
                            s => record.other.push(format!("POST {s}")),
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    assert!(
        seen.other.is_empty(),
        "unexpected answers: {:?}",
        seen.other
    );

    // No lost update: each record's final n is the number of successful updates on it, and the
    // n values of its successful updates are exactly 1..=final.
    let mut per_record: HashMap<&str, Vec<(i64, u64)>> = HashMap::new();
    for (id, ts, n) in &seen.updates {
        per_record.entry(id.as_str()).or_default().push((*ts, *n));
    }
    for id in RECORDS {
        let final_n = client
            .call("GET", &format!("{base}/{id}"), Some(USER), None)
            .json()["data"]["n"]
            .as_u64()
            .unwrap();
        let mut history = per_record.remove(id).unwrap_or_default();
        history.sort();
        let ns: Vec<u64> = history.iter().map(|(_, n)| *n).collect();
        assert_eq!(
            ns,
            (1..=final_n).collect::<Vec<_>>(),
            "{id}: updates in timestamp order"
        );
    }
    // Every 412 was justified: a successful update of that record has a later timestamp.
    let unjustified: Vec<&(String, i64)> = seen
        .conflicts
        .iter()
        .filter(|(id, etag)| !seen.updates.iter().any(|(u, ts, _)| u == id && ts > etag))
        .collect();
    assert!(
        unjustified.is_empty(),
        "412 without a newer version: {unjustified:?}"
    );
    // Timestamps: unique across the collection's writes.
    let all: Vec<i64> = seen
        .updates
        .iter()
        .map(|(_, ts, _)| *ts)
        .chain(seen.creations.iter().copied())
        .collect();
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(
        unique.len(),
        all.len(),
        "duplicate timestamps in one collection"
    );
    // The collection timestamp is the greatest of them.
    let list = client.call("GET", base, Some(USER), None);
    assert_eq!(etag_of(&list), *all.iter().max().unwrap());
    println!(
        "if-match: 8 clients, 3 workers: updates={} conflicts(412)={} creations={} unjustified_412=0 duplicate_timestamps=0",
        seen.updates.len(),
        seen.conflicts.len(),
        seen.creations.len()
    );
    assert!(
        seen.updates.len() > 20 && !seen.conflicts.is_empty(),
        "real contention"
    );
}

/// Regression: a PUT replacing an object with the same permissions kept none of them on
/// PostgreSQL (DELETE in a CTE + INSERT ... ON CONFLICT DO NOTHING see the same snapshot), which
/// a worker without a warm cache then answered with 403.
#[test]
fn replacing_an_object_keeps_its_unchanged_permissions() {
    let db = PgDb::create();
    let app = format!("{}{AUTH}", pg_backends(&db.url(), 2, 10));
    let server = Server::start(&app, 3, "harakiri = 20\n");
    let client = server.client();
    for _ in 0..3 {
        let a = client.call("PUT", "/v1/buckets/kept", Some(USER), Some(&json!({})));
        assert!(matches!(a.status, 200 | 201), "{:?}", a.json());
    }
    let aces: i64 = db
        .connect()
        .query_one(
            "SELECT count(*) FROM access_control_entries WHERE object_id = '/buckets/kept' AND permission = 'write'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(aces, 1);
    for c in ["x", "y", "z"] {
        let a = client.call(
            "PUT",
            &format!("/v1/buckets/kept/collections/{c}"),
            Some(USER),
            Some(&json!({})),
        );
        assert_eq!(
            a.status,
            201,
            "every worker still sees the write permission: {:?}",
            a.json()
        );
    }
}

#[test]
fn patches_from_eight_clients_on_one_object_all_land() {
    let db = PgDb::create();
    let app = format!("{}{AUTH}", pg_backends(&db.url(), 3, 10));
    let server = Server::start(&app, 3, "harakiri = 20\n");
    let client = server.client();
    make_collection(&client, USER, "hot", "c");
    let path = "/v1/buckets/hot/collections/c/records/r";
    let a = client.call("PUT", path, Some(USER), Some(&json!({"data": {}})));
    assert_eq!(a.status, 201);
    const EACH: usize = 60;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut other = Vec::new();
                for i in 0..EACH {
                    let key = format!("t{t}_{i}");
                    let a =
                        client.call("PATCH", path, Some(USER), Some(&json!({"data": {key: i}})));
                    if a.status != 200 {
                        other.push(format!("{} {:?}", a.status, a.json()));
                    }
                }
                other
            })
        })
        .collect();
    let other: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(other.is_empty(), "every PATCH answered 200: {other:?}");
    let data = client.call("GET", path, Some(USER), None).json()["data"].clone();
    let missing: Vec<String> = (0..8)
        .flat_map(|t| (0..EACH).map(move |i| format!("t{t}_{i}")))
        .filter(|key| data.get(key).is_none())
        .collect();
    assert!(missing.is_empty(), "lost updates: {missing:?}");
}

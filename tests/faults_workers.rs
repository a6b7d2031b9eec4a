//! Worker faults under load (issue 7, item 1) against the real binary on PostgreSQL with three
//! workers: SIGKILL of a random worker every second, harakiri of a request stuck on a row lock,
//! SIGHUP reloads. Each test prints its figures.

mod support_chaos;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support_chaos::*;

const USER: &str = "loader";

fn pg_server(db: &PgDb, uwsgi_extra: &str) -> Server {
    let app = format!("{}{AUTH}", pg_backends(&db.url(), 3, 10));
    Server::start(&app, 3, uwsgi_extra)
}

#[test]
fn sigkill_a_random_worker_every_second_loses_no_acknowledged_write() {
    let db = PgDb::create();
    let server = pg_server(&db, "harakiri = 20\n");
    let client = server.client();
    make_collection(&client, USER, "load", "items");

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(client, 4, USER, "load", "items", stop.clone());
    let mut recoveries = Vec::new();
    let started = Instant::now();
    let mut kills = 0;
    let seconds = knob("CHAOS_KILL_SECS", 10);
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(1000));
        let workers = server.worker_pids();
        assert_eq!(workers.len(), 3, "workers before a kill: {workers:?}");
        let victim = workers[rand::random::<usize>() % workers.len()];
        let killed_at = Instant::now();
        signal(victim, libc::SIGKILL);
        kills += 1;
        // Back to 3 live workers, none of them the victim.
        let back = loop {
            let now = server.worker_pids();
            if now.len() == 3 && !now.contains(&victim) {
                break killed_at.elapsed();
            }
            assert!(
                killed_at.elapsed() < Duration::from_secs(10),
                "no respawn: {now:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        recoveries.push(back);
    }
    stop.store(true, Ordering::SeqCst);
    let stats = join_load(load);
    let found = pg_records(&mut db.connect(), "load", "items");
    let missing: Vec<&(String, u64)> = stats
        .acked
        .iter()
        .filter(|(id, n)| found.get(id).map(|d| &d["n"]) != Some(&json!(n)))
        .collect();
    let worst = recoveries.iter().max().copied().unwrap_or_default();
    println!(
        "sigkill: kills={kills} {} writes_found={} missing={} worst_respawn={worst:?} respawns={recoveries:?}",
        stats.summary(),
        found.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    assert!(stats.wrong.is_empty(), "wrong answers: {:?}", stats.wrong);
    // Only requests in flight on a killed worker fail: one per kill at most (a worker serves one
    // connection at a time), and they fail as a cut connection, never as an answer.
    assert_eq!(
        stats.non_2xx(),
        0,
        "{} {:?}",
        stats.summary(),
        stats.samples
    );
    assert_eq!(stats.timeouts + stats.refused, 0, "{}", stats.summary());
    assert!(stats.cut <= kills, "{} cut > {kills} kills", stats.cut);
    assert!(
        stats.acked.len() > 20,
        "too little traffic: {}",
        stats.summary()
    );
    assert!(worst < Duration::from_secs(1), "respawn took {worst:?}");
}

#[test]
fn harakiri_cuts_a_request_stuck_on_a_row_lock_and_rolls_it_back() {
    let db = PgDb::create();
    let server = pg_server(&db, "harakiri = 3\n");
    let client = server.client();
    make_collection(&client, USER, "locks", "stuck");
    make_collection(&client, USER, "locks", "free");
    let path = "/v1/buckets/locks/collections/stuck/records/r1";
    let a = client.call("PUT", path, Some(USER), Some(&json!({"data": {"v": 1}})));
    assert_eq!(a.status, 201);
    let list = "/v1/buckets/locks/collections/stuck/records";
    let etag_before = client
        .call("GET", list, Some(USER), None)
        .header("ETag")
        .map(str::to_string);
    let mut pg = db.connect();
    let ts_before: Option<String> = pg
        .query_opt(
            "SELECT last_modified::text FROM timestamps WHERE parent_id = '/buckets/locks/collections/stuck' AND resource_name = 'record'",
            &[],
        )
        .unwrap()
        .map(|r| r.get(0));

    // The test holds the record's row lock; the worker's update waits on it.
    let mut locker = db.connect();
    let mut tx = locker.transaction().unwrap();
    let locked = tx
        .execute(
            "SELECT 1 FROM objects WHERE id = 'r1' AND parent_id = '/buckets/locks/collections/stuck' \
             AND resource_name = 'record' FOR UPDATE",
            &[],
        )
        .unwrap();
    assert_eq!(locked, 1);
    let workers_before = server.worker_pids();
    let stuck = std::thread::spawn(move || {
        let start = Instant::now();
        let r = client.try_call(
            "PUT",
            path,
            Some(USER),
            Some(&json!({"data": {"v": 2}})),
            &[],
            Duration::from_secs(30),
        );
        (r, start.elapsed())
    });
    // Other traffic meanwhile, on another collection: all served.
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(client, 2, USER, "locks", "free", stop.clone());
    let (result, took) = stuck.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let stats = join_load(load);
    tx.rollback().unwrap();
    let recovered = server.wait_workers(3, Duration::from_secs(5));
    let workers_after = server.worker_pids();
    println!(
        "harakiri: stuck request {result:?} after {took:?}; other traffic {}; workers {workers_before:?} -> {workers_after:?}",
        stats.summary()
    );
    assert!(
        matches!(result, Err(Transport::Cut(_))),
        "the stuck request is cut: {result:?}"
    );
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(8),
        "cut at harakiri (3 s): {took:?}"
    );
    assert!(
        server.wait_log("HARAKIRI", Duration::from_secs(5)),
        "{}",
        server.log()
    );
    assert!(recovered.is_some(), "worker replaced");
    assert_eq!(
        workers_before
            .iter()
            .filter(|p| workers_after.contains(p))
            .count(),
        2,
        "exactly one worker replaced"
    );
    assert_eq!(stats.failed(), 0, "{} {:?}", stats.summary(), stats.samples);
    assert!(stats.sent > 10, "{}", stats.summary());

    // Nothing of the cut request was written: data and list timestamp unchanged.
    let got = client.call("GET", path, Some(USER), None);
    assert_eq!(got.json()["data"]["v"], 1, "{:?}", got.json());
    let ts_after: Option<String> = pg
        .query_opt(
            "SELECT last_modified::text FROM timestamps WHERE parent_id = '/buckets/locks/collections/stuck' AND resource_name = 'record'",
            &[],
        )
        .unwrap()
        .map(|r| r.get(0));
    assert_eq!(ts_before, ts_after);
    let etag_after = client
        .call("GET", list, Some(USER), None)
        .header("ETag")
        .map(str::to_string);
    assert_eq!(
        etag_before, etag_after,
        "the collection timestamp did not move"
    );
    // The killed worker's session is gone (no transaction left idle on the server).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let idle: i64 = pg
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND state LIKE 'idle in transaction%'",
                &[],
            )
            .unwrap()
            .get(0);
        if idle == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{idle} transactions left open");
        std::thread::sleep(Duration::from_millis(100));
    }
    // And the record is writable again.
    let a = client.call("PUT", path, Some(USER), Some(&json!({"data": {"v": 3}})));
    assert_eq!(a.status, 200);
}

#[test]
fn sighup_every_two_seconds_under_load_fails_no_request() {
    let db = PgDb::create();
    let server = pg_server(&db, "harakiri = 20\nlazy = true\n");
    let client = server.client();
    make_collection(&client, USER, "reload", "items");
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(client, 4, USER, "reload", "items", stop.clone());
    let mut reloads = 0;
    let started = Instant::now();
    let first = server.worker_pids();
    let seconds = knob("CHAOS_RELOAD_SECS", 8);
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(2));
        signal(server.pid(), libc::SIGHUP);
        reloads += 1;
    }
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    let stats = join_load(load);
    let found = pg_records(&mut db.connect(), "reload", "items");
    let missing = stats
        .acked
        .iter()
        .filter(|(id, _)| !found.contains_key(id))
        .count();
    let last = server.worker_pids();
    println!(
        "sighup: reloads={reloads} {} writes_found={} missing={missing} workers {first:?} -> {last:?}",
        stats.summary(),
        found.len()
    );
    assert_eq!(stats.failed(), 0, "{} {:?}", stats.summary(), stats.samples);
    assert!(stats.wrong.is_empty(), "{:?}", stats.wrong);
    assert_eq!(missing, 0);
    assert!(stats.sent > 20, "{}", stats.summary());
    assert!(
        first.iter().all(|p| !last.contains(p)),
        "the workers were reloaded: {first:?} -> {last:?}"
    );
}

/// More requests stuck on a row lock than there are workers: the queued ones wait for a worker,
/// every one is cut at `harakiri` once it runs, none hangs beyond harakiri x rounds, and the
/// service is whole again once the lock goes.
#[test]
fn more_stuck_requests_than_workers_never_hang_past_harakiri() {
    let db = PgDb::create();
    let app = format!("{}{AUTH}", pg_backends(&db.url(), 1, 2));
    let server = Server::start(&app, 2, "harakiri = 3\n");
    let client = server.client();
    make_collection(&client, USER, "queue", "c");
    let path = "/v1/buckets/queue/collections/c/records/r1";
    let a = client.call("PUT", path, Some(USER), Some(&json!({"data": {"v": 1}})));
    assert_eq!(a.status, 201);
    let mut locker = db.connect();
    let mut tx = locker.transaction().unwrap();
    tx.execute(
        "SELECT 1 FROM objects WHERE id = 'r1' AND parent_id = '/buckets/queue/collections/c' \
         AND resource_name = 'record' FOR UPDATE",
        &[],
    )
    .unwrap();
    let start = Instant::now();
    let stuck: Vec<_> = (0..6)
        .map(|i| {
            std::thread::spawn(move || {
                let r = client.try_call(
                    "PUT",
                    path,
                    Some(USER),
                    Some(&json!({"data": {"v": 100 + i}})),
                    &[],
                    Duration::from_secs(40),
                );
                (r.map(|a| a.status), start.elapsed())
            })
        })
        .collect();
    let results: Vec<_> = stuck.into_iter().map(|h| h.join().unwrap()).collect();
    tx.rollback().unwrap();
    let recovered = server.wait_workers(2, Duration::from_secs(5));
    let got = client.call("GET", path, Some(USER), None);
    println!(
        "stuck x6 on 2 workers (harakiri 3 s): {results:?}; then v={}",
        got.json()["data"]["v"]
    );
    let longest = results.iter().map(|(_, t)| *t).max().unwrap();
    assert!(
        results
            .iter()
            .all(|(r, _)| matches!(r, Err(Transport::Cut(_)))),
        "every stuck request is cut, none answered while the lock holds: {results:?}"
    );
    // Three rounds of two workers, each cut at 3 s (plus respawn and load slack).
    assert!(longest < Duration::from_secs(16), "{longest:?}");
    assert!(recovered.is_some());
    assert_eq!(
        got.json()["data"]["v"],
        1,
        "nothing of the cut requests was written"
    );
    let a = client.call("PUT", path, Some(USER), Some(&json!({"data": {"v": 2}})));
    assert_eq!(a.status, 200);
}

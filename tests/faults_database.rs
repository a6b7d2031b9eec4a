//! Database faults (issue 7, item 2) on a PRIVATE PostgreSQL cluster (initdb in a temporary
//! directory, free port) so that stopping it never disturbs the shared server: an outage under
//! load, and every connection of the server taken (the pool cannot get one).

mod support_chaos;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support_chaos::*;

const USER: &str = "loader";

#[test]
fn postgresql_outage_under_load_answers_503_then_recovers() {
    let pg = PrivatePg::start();
    let db = PgDb::create_on(&pg.admin_url());
    let app = format!("{}{AUTH}", pg_backends(&db.url(), 2, 2));
    let server = Server::start(&app, 2, "harakiri = 20\n");
    let client = server.client();
    make_collection(&client, USER, "outage", "items");
    let workers_before = server.worker_pids();

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(client, 3, USER, "outage", "items", stop.clone());
    std::thread::sleep(Duration::from_secs(1));
    pg.stop_server();
    let down_at = Instant::now();
    // During the outage: heartbeat reports the failing backend, writes get 503.
    let heartbeat = loop {
        let a = client.call("GET", "/v1/__heartbeat__", None, None);
        if a.status == 503 {
            break a;
        }
        assert!(
            down_at.elapsed() < Duration::from_secs(10),
            "heartbeat still {}",
            a.status
        );
    };
    let during = client.call(
        "PUT",
        "/v1/buckets/outage/collections/items/records/during",
        Some(USER),
        Some(&serde_json::json!({"data": {}})),
    );
    let outage = Duration::from_secs(knob("CHAOS_OUTAGE_SECS", 3));
    std::thread::sleep(outage.saturating_sub(down_at.elapsed()));
    pg.start_server();
    let up_at = Instant::now();
    // Full service: a write and a heartbeat succeed again, without restarting kinto.
    let recovery = loop {
        let a = client.try_call(
            "PUT",
            "/v1/buckets/outage/collections/items/records/after",
            Some(USER),
            Some(&serde_json::json!({"data": {"n": 1}})),
            &[],
            Duration::from_secs(20),
        );
        if matches!(&a, Ok(a) if a.status == 201 || a.status == 200) {
            break up_at.elapsed();
        }
        assert!(up_at.elapsed() < Duration::from_secs(10), "not back: {a:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let stats = join_load(load);
    let heartbeat_after = client.call("GET", "/v1/__heartbeat__", None, None);
    let found = pg_records(&mut db.connect(), "outage", "items");
    let missing = stats
        .acked
        .iter()
        .filter(|(id, _)| !found.contains_key(id))
        .count();
    let workers_after = server.worker_pids();
    println!(
        "db outage: down {:?}; {} writes_found={} missing={missing} recovery_after_db_up={recovery:?} heartbeat_down={:?} workers {workers_before:?} -> {workers_after:?}",
        up_at - down_at,
        stats.summary(),
        found.len(),
        heartbeat.json()
    );
    assert_eq!(heartbeat.json()["storage"], false, "{:?}", heartbeat.json());
    assert!(heartbeat.header("Retry-After").is_none());
    assert_eq!(during.status, 503, "{:?}", during.json());
    assert_eq!(during.json()["errno"], 201);
    assert!(during.header("Retry-After").is_some());
    assert_eq!(stats.count(500), 0, "{:?}", stats.samples);
    assert_eq!(stats.malformed_503, 0, "{:?}", stats.samples);
    assert!(
        stats.count(503) > 0,
        "the load saw the outage: {}",
        stats.summary()
    );
    assert_eq!(
        stats.non_2xx(),
        stats.count(503),
        "only 503 during the outage: {} {:?}",
        stats.summary(),
        stats.samples
    );
    assert_eq!(
        stats.cut + stats.timeouts + stats.refused,
        0,
        "{}",
        stats.summary()
    );
    assert_eq!(missing, 0);
    assert_eq!(
        workers_before, workers_after,
        "no worker died (no crash loop)"
    );
    assert!(recovery < Duration::from_secs(5), "recovery {recovery:?}");
    assert_eq!(heartbeat_after.status, 200, "{:?}", heartbeat_after.json());
}

#[test]
fn no_free_database_connection_answers_503_within_pool_timeout() {
    let pg = PrivatePg::start();
    let db = PgDb::create_on(&pg.admin_url());
    let app = format!("{}{AUTH}", pg_backends(&db.url(), 2, 2));
    let server = Server::start(&app, 2, "harakiri = 10\n");
    let client = server.client();
    make_collection(&client, USER, "full", "items");
    let a = client.call(
        "PUT",
        "/v1/buckets/full/collections/items/records/r",
        Some(USER),
        Some(&serde_json::json!({"data": {"n": 1}})),
    );
    assert_eq!(a.status, 201);
    // Close the workers' pooled sessions (a reload) then take every connection the server
    // allows: new sessions are refused with "too many clients".
    let mut admin = postgres::Client::connect(&pg.admin_url(), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            db.name
        ))
        .unwrap();
    let mut hogs = Vec::new();
    while let Ok(c) = postgres::Client::connect(&pg.admin_url(), postgres::NoTls) {
        hogs.push(c);
        assert!(hogs.len() < 200, "max_connections not reached");
    }
    let mut timings = Vec::new();
    for _ in 0..4 {
        let start = Instant::now();
        let a = client
            .try_call(
                "GET",
                "/v1/buckets/full/collections/items/records/r",
                Some(USER),
                None,
                &[],
                Duration::from_secs(15),
            )
            .expect("an answer, not a hang");
        timings.push((a.status, start.elapsed()));
        assert_eq!(a.status, 503, "{:?}", a.json());
        assert_eq!(a.json()["errno"], 201);
        assert!(a.header("Retry-After").is_some());
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
    drop(hogs);
    let start = Instant::now();
    let back = loop {
        let a = client.call(
            "GET",
            "/v1/buckets/full/collections/items/records/r",
            Some(USER),
            None,
        );
        if a.status == 200 {
            break start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{}", a.status);
        std::thread::sleep(Duration::from_millis(50));
    };
    println!("no free connection: answers {timings:?}; served again after {back:?}");
}

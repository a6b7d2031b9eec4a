//! StatsD datagrams as a collector on 127.0.0.1 receives them, in both naming schemes, and sends
//! that never block when nobody listens.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use kinto::metrics::{Backend, Metrics, MetricsConfig, RequestMetrics};

fn collector() -> (UdpSocket, String) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let url = format!("udp://{}", socket.local_addr().unwrap());
    (socket, url)
}

fn receive(socket: &UdpSocket, n: usize) -> Vec<String> {
    let mut buf = [0u8; 2048];
    (0..n)
        .map(|_| {
            let len = socket.recv(&mut buf).expect("datagram");
            String::from_utf8(buf[..len].to_vec()).unwrap()
        })
        .collect()
}

fn plugin() -> Vec<String> {
    vec!["kinto.plugins.statsd".to_owned()]
}

fn record_put<'a>(status: u16, user: Option<(&'a str, &'a str)>) -> RequestMetrics<'a> {
    RequestMetrics {
        method: "PUT",
        endpoint: "record-object",
        status,
        bucket_id: "b1",
        collection_id: "ts",
        group_id: "",
        record_id: "a:1",
        duration: Duration::from_micros(12_400),
        response_size: 321,
        user,
    }
}

#[test]
fn kinto_names_per_request() {
    let (socket, url) = collector();
    let config =
        MetricsConfig::from_parts(&plugin(), Some(&url), "kinto", "kinto.core", None).unwrap();
    let metrics = Metrics::new(&config);
    metrics.request(&record_put(201, Some(("account", "alice"))));
    let got = receive(&socket, 5);
    assert_eq!(
        got,
        [
            "kinto.request_summary:method.put.endpoint.record-object.bucket_id.b1.collection_id.ts.group_id..record_id.a1.status.201|s",
            "kinto.request_duration_seconds.method.put.endpoint.record-object.bucket_id.b1.collection_id.ts.group_id..record_id.a1:12.000000|ms",
            "kinto.request_size:321|g",
            "kinto.users:auth.account.userid.alice|s",
            "kinto.authentication:type.account|s",
        ]
    );
}

#[test]
fn error_status_empties_the_url_labels() {
    let (socket, url) = collector();
    let config = MetricsConfig::from_parts(&plugin(), Some(&url), "myproj", "", None).unwrap();
    let metrics = Metrics::new(&config);
    metrics.request(&record_put(404, None));
    let got = receive(&socket, 3);
    assert_eq!(
        got[0],
        "myproj.request_summary:method.put.endpoint.record-object.bucket_id..collection_id..group_id..record_id..status.404|s"
    );
    assert!(got[1].starts_with("myproj.request_duration_seconds.method.put.endpoint.record-object.bucket_id..collection_id..group_id..record_id.:"));
    assert_eq!(got[2], "myproj.request_size:321|g");
}

#[test]
fn kinto_backend_timers_and_cache_counters() {
    let (socket, url) = collector();
    let config = MetricsConfig::from_parts(&plugin(), Some(&url), "kinto", "", None).unwrap();
    let metrics = Metrics::new(&config);
    let value = metrics.time("storage.get", || 41 + 1);
    assert_eq!(value, 42, "the closure's value comes back");
    metrics.time_backend(Backend::Permission, "check_permission", || ());
    metrics.time_authentication("account", "authenticated_userid", || ());
    metrics.time_permits(|| ()); // not a Kinto 26 metric: nothing sent
    metrics.cache_lookup(true);
    metrics.cache_lookup(false);
    metrics.time("plugins.history.seconds", || ());
    let got = receive(&socket, 6);
    let names: Vec<&str> = got.iter().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "kinto.backend.storage.seconds.method.get",
            "kinto.backend.permission.seconds.method.check_permission",
            "kinto.authentication.account.seconds.method.authenticated_userid",
            "kinto.cache_hits",
            "kinto.cache_misses",
            "kinto.plugins.history.seconds",
        ]
    );
    assert!(got[0].ends_with("|ms"));
    let ms: f64 = got[0]["kinto.backend.storage.seconds.method.get:".len()..got[0].len() - 3]
        .parse()
        .unwrap();
    assert!((0.0..10_000.0).contains(&ms));
    assert_eq!(got[3], "kinto.cache_hits:1|c");
}

#[test]
fn cliquet_names_with_the_standalone_setting() {
    let (socket, url) = collector();
    // The production docs' setup: `kinto.statsd_url` without the statsd plugin.
    let config = MetricsConfig::from_parts(&[], Some(&url), "kinto", "", None).unwrap();
    let metrics = Metrics::new(&config);
    metrics.request(&RequestMetrics {
        method: "get",
        endpoint: "hello",
        status: 200,
        bucket_id: "",
        collection_id: "",
        group_id: "",
        record_id: "",
        duration: Duration::from_millis(3),
        response_size: 10,
        user: Some(("basicauth", "5d1c:9e")),
    });
    metrics.request(&record_put(200, None));
    metrics.time("storage.get", || ());
    metrics.time_backend(Backend::Cache, "ttl", || ());
    metrics.time_permits(|| ());
    metrics.count("custom", 2);
    let got = receive(&socket, 8);
    let names: Vec<&str> = got.iter().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        names,
        [
            "kinto.view.hello.GET",
            "kinto.users",
            "kinto.authn_type.basicauth",
            "kinto.view.record-record.PUT",
            "kinto.storage.get",
            "kinto.cache.ttl",
            "kinto.authentication.permits",
            "kinto.custom",
        ]
    );
    assert_eq!(got[1], "kinto.users:basicauth.5d1c.9e|s");
    assert_eq!(got[2], "kinto.authn_type.basicauth:1|c");
    assert!(got[0].ends_with("|ms"));
    assert_eq!(got[7], "kinto.custom:2|c");
}

#[test]
fn nothing_blocks_without_a_listener() {
    // Bind then drop a socket to get a port where nobody listens (ICMP unreachable comes back).
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("udp://127.0.0.1:{port}");
    let config = MetricsConfig::from_parts(&plugin(), Some(&url), "kinto", "", None).unwrap();
    let metrics = Metrics::new(&config);
    assert!(metrics.is_enabled());
    let start = Instant::now();
    for _ in 0..20_000 {
        metrics.request(&record_put(200, Some(("account", "bob"))));
        metrics.time("storage.get", || ());
    }
    // 120,000 datagrams: a blocking or failing send would show as an error or a stall.
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn disabled_metrics_only_run_the_closure() {
    let config = MetricsConfig::from_parts(&[], None, "kinto", "", None).unwrap();
    let metrics = Metrics::new(&config);
    assert!(!metrics.is_enabled());
    assert_eq!(metrics.time("storage.get", || "value"), "value");
    assert!(metrics.render_prometheus().is_none());
}

#[test]
fn prometheus_aggregates_alongside_statsd() {
    let (socket, url) = collector();
    let includes = vec![
        "kinto.plugins.statsd".to_owned(),
        "kinto.plugins.prometheus".to_owned(),
    ];
    let config = MetricsConfig::from_parts(&includes, Some(&url), "kinto", "", None).unwrap();
    let metrics = Metrics::new(&config);
    metrics.request(&record_put(200, None));
    metrics.request(&record_put(200, None));
    assert_eq!(receive(&socket, 6).len(), 6);
    let text = metrics.render_prometheus().unwrap();
    assert!(text.contains(
        "kinto_request_summary_total{method=\"put\",endpoint=\"record-object\",bucket_id=\"b1\",collection_id=\"ts\",group_id=\"\",record_id=\"a:1\",status=\"200\"} 2\n"
    ), "{text}");
}

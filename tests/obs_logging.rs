//! Logging as configured by real ini files: the production docs' sections writing Heka JSON lines on
//! stdout (read from a child process), syslog over UDP, file handlers with level filtering, and
//! Sentry events posted to a fake collector on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kinto::logging::{Level, Logger, LoggingConfig, RequestSummary};
use serde_json::{json, Map, Value};

/// The production docs' logging sections, with the Sentry DSN pointing at `dsn`.
fn seed_sections(dsn: &str) -> String {
    include_str!("fixtures/seed_logging.ini").replace("{dsn}", dsn)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("obs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn summary<'a>() -> RequestSummary<'a> {
    RequestSummary {
        method: "GET",
        path: "/v1/buckets",
        query: Some("_limit=1&x=2"),
        code: 200,
        errno: 0,
        duration: Duration::from_millis(29),
        agent: Some("curl/7.88.1"),
        lang: Some("fr"),
        rid: Some("my-req-id-1"),
        uid: Some("alice"),
        authn_type: Some("account"),
        batch_size: None,
    }
}

/// One request as a fake Sentry collector receives it: (request head, body).
fn accept_event(listener: &TcpListener) -> (String, Value) {
    let (stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    read_event(stream)
}

fn read_event(stream: impl Read + Write) -> (String, Value) {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        head.push_str(&line);
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let mut stream = reader.into_inner();
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .unwrap();
    (head, serde_json::from_slice(&body).unwrap())
}

/// Runs in a child process (see `seed_config_writes_heka_json_on_stdout`): writes a summary and
/// an error through the production docs' configuration, whose console handler is stdout.
#[test]
#[ignore = "the child process of seed_config_writes_heka_json_on_stdout"]
fn child_writes_seed_logs() {
    // Run alone (`--include-ignored`), there is nothing to check: the parent test does it.
    let Ok(dsn) = std::env::var("OBS_CHILD_SENTRY_DSN") else {
        return;
    };
    let config = LoggingConfig::from_ini_str(
        &seed_sections(&dsn),
        Path::new("/etc/kinto/production.ini"),
        "kinto",
        Some("cliquet.logs.MozillaHekaRenderer"),
    )
    .unwrap();
    let logger = Logger::open(&config).unwrap();
    logger.request_summary(&summary());
    logger.log(
        "kinto.core.storage",
        Level::Debug,
        "filtered out",
        &Map::new(),
    );
    let fields = json!({"path": "/v1/buckets/b", "method": "PUT", "errno": 999,
                        "error": "ValueError: boom", "traceback": "Traceback..."});
    logger.log("root", Level::Error, "boom", fields.as_object().unwrap());
    // Let the Sentry thread deliver before the process exits.
    std::thread::sleep(Duration::from_millis(100));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::env::var("OBS_CHILD_WAIT").is_ok() && Instant::now() < deadline {
        if Path::new(&std::env::var("OBS_CHILD_WAIT").unwrap()).exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn seed_config_writes_heka_json_on_stdout() {
    let collector = TcpListener::bind("127.0.0.1:0").unwrap();
    let dsn = format!("http://public:secret@{}/1", collector.local_addr().unwrap());
    let done = temp_dir("seed").join("done");
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writes_seed_logs",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OBS_CHILD_SENTRY_DSN", &dsn)
        .env("OBS_CHILD_WAIT", &done)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Sentry receives the ERROR record only (the summary is INFO).
    let (head, event) = accept_event(&collector);
    std::fs::write(&done, b"").unwrap();
    let child_pid = child.id();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert!(
        head.starts_with("POST /api/1/store/ HTTP/1.1\r\n"),
        "{head}"
    );
    let auth = head
        .lines()
        .find(|l| l.starts_with("X-Sentry-Auth: "))
        .unwrap();
    assert!(
        auth.contains("sentry_version=7")
            && auth.contains("sentry_key=public")
            && auth.contains("sentry_secret=secret"),
        "{auth}"
    );
    assert_eq!(event["level"], "error");
    assert_eq!(event["message"], "boom");
    assert_eq!(event["logger"], "root");
    assert_eq!(event["extra"]["path"], "/v1/buckets/b");
    assert_eq!(event["exception"]["values"][0]["type"], "ValueError");
    assert_eq!(event["event_id"].as_str().unwrap().len(), 32);

    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        // The test harness prints `test <name> ... ` before the child's first line.
        .filter_map(|l| l.find("{\"Timestamp\"").map(|start| &l[start..]))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "summary and error, each once, no DEBUG: {stdout}"
    );
    let line = &lines[0];
    for key in [
        "Timestamp",
        "Type",
        "Logger",
        "Hostname",
        "EnvVersion",
        "Severity",
        "Pid",
        "Fields",
    ] {
        assert!(line.get(key).is_some(), "{key} missing in {line}");
    }
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let ts = line["Timestamp"].as_u64().unwrap();
    assert!(
        ts <= now_ns && now_ns - ts < 60_000_000_000,
        "Timestamp in ns: {ts}"
    );
    assert_eq!(line["Type"], "request.summary");
    assert_eq!(line["Logger"], "kinto");
    assert_eq!(line["EnvVersion"], "2.0");
    assert_eq!(line["Severity"], 6);
    assert_eq!(line["Pid"], child_pid);
    let fields = &line["Fields"];
    assert_eq!(fields["agent"], "curl/7.88.1");
    assert_eq!(fields["path"], "/v1/buckets");
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["lang"], "fr");
    assert_eq!(fields["rid"], "my-req-id-1");
    assert_eq!(fields["errno"], 0);
    assert_eq!(fields["querystring"], json!({"_limit": "1", "x": "2"}));
    assert_eq!(fields["uid"], "alice");
    assert_eq!(fields["authn_type"], "account");
    assert_eq!(fields["code"], 200);
    assert_eq!(fields["t"], 29);
    assert!(fields.get("msg").is_none());
    let time = fields["time"].as_str().unwrap();
    assert!(time.len() >= 19 && &time[10..11] == "T", "{time}");

    let error = &lines[1];
    assert_eq!(error["Type"], "root");
    assert_eq!(error["Severity"], 3);
    assert_eq!(error["Fields"]["msg"], "boom");
    assert_eq!(error["Fields"]["traceback"], "Traceback...");
}

#[test]
fn syslog_over_udp() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = server.local_addr().unwrap().port();
    let ini = format!(
        "[loggers]\nkeys = root\n[handlers]\nkeys = syslog\n[formatters]\nkeys = plain\n\
         [logger_root]\nlevel = INFO\nhandlers = syslog\n\
         [handler_syslog]\nclass = logging.handlers.SysLogHandler\nargs = (('127.0.0.1', {port}), handlers.SysLogHandler.LOG_LOCAL0)\nformatter = plain\n\
         [formatter_plain]\nformat = kinto[%(process)d]: %(levelname)s %(message)s\n"
    );
    let config = LoggingConfig::from_ini_str(&ini, Path::new("k.ini"), "kinto", None).unwrap();
    let logger = Logger::open(&config).unwrap();
    logger.log("kinto", Level::Debug, "not sent", &Map::new());
    logger.log("kinto", Level::Warning, "disk almost full", &Map::new());
    logger.request_summary(&RequestSummary {
        uid: None,
        authn_type: None,
        ..summary()
    });
    let mut buf = [0u8; 1024];
    let n = server.recv(&mut buf).unwrap();
    let pid = std::process::id();
    // local0 (16) * 8 + warning (4) = 132; Python appends a NUL.
    assert_eq!(
        std::str::from_utf8(&buf[..n]).unwrap(),
        format!("<132>kinto[{pid}]: WARNING disk almost full\0")
    );
    let n = server.recv(&mut buf).unwrap();
    let text = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(
        text.starts_with(&format!("<134>kinto[{pid}]: INFO GET    /v1/buckets?_limit=1&x=2 200 (29 ms) request.summary agent='curl/7.88.1'")),
        "{text}"
    );
}

#[test]
fn file_handler_and_level_filtering() {
    let dir = temp_dir("file");
    let ini = "
[loggers]
keys = root, kinto, summary

[handlers]
keys = all, errors

[formatters]
keys = text

[logger_root]
level = WARNING
handlers = all

[logger_kinto]
level = DEBUG
handlers = all, errors
qualname = kinto

[logger_summary]
level = INFO
handlers = all
qualname = request.summary
propagate = 0

[handler_all]
class = FileHandler
args = ('%(here)s/all.log', 'a')
level = NOTSET
formatter = text

[handler_errors]
class = logging.FileHandler
args = ('%(here)s/errors.log',)
level = ERROR
formatter = text

[formatter_text]
format = %(levelname)-5.5s [%(name)s] %(message)s
";
    let config = LoggingConfig::from_ini_str(ini, &dir.join("kinto.ini"), "kinto", None).unwrap();
    let logger = Logger::open(&config).unwrap();
    logger.log("kinto.core", Level::Debug, "debug from kinto", &Map::new());
    logger.log(
        "other",
        Level::Info,
        "info from other: below WARNING",
        &Map::new(),
    );
    logger.log("other", Level::Warning, "warning from other", &Map::new());
    logger.log("kinto", Level::Critical, "backend down", &Map::new());
    logger.request_summary(&RequestSummary {
        code: 404,
        errno: 111,
        ..summary()
    });
    let all = std::fs::read_to_string(dir.join("all.log")).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 4, "{all}");
    assert_eq!(lines[0], "DEBUG [kinto.core] debug from kinto");
    assert_eq!(lines[1], "WARNI [other] warning from other");
    assert_eq!(lines[2], "CRITI [kinto] backend down");
    assert!(lines[3].starts_with("INFO  [request.summary] GET    /v1/buckets?_limit=1&x=2 404 (29 ms) request.summary agent='curl/7.88.1'"), "{}", lines[3]);
    assert!(
        lines[3].contains("errno=111") && lines[3].contains("uid='alice'"),
        "{}",
        lines[3]
    );
    let errors = std::fs::read_to_string(dir.join("errors.log")).unwrap();
    assert_eq!(errors, "CRITI [kinto] backend down\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn json_formatter_class_and_subrequests() {
    let dir = temp_dir("json");
    let ini = "
[loggers]
keys = root
[handlers]
keys = json
[formatters]
keys = json
[logger_root]
level = INFO
handlers = json
[handler_json]
class = FileHandler
args = ('%(here)s/json.log',)
formatter = json
[formatter_json]
class = kinto.core.JsonLogFormatter
";
    // No logging_renderer: Kinto 26 configures JSON through the formatter class.
    let config = LoggingConfig::from_ini_str(ini, &dir.join("kinto.ini"), "myproj", None).unwrap();
    let logger = Logger::open(&config).unwrap();
    logger.subrequest_summary(&RequestSummary {
        method: "POST",
        path: "/v1/buckets/b/collections",
        batch_size: None,
        ..summary()
    });
    logger.request_summary(&RequestSummary {
        method: "POST",
        path: "/v1/batch",
        uid: None,
        authn_type: None,
        batch_size: Some(1),
        query: None,
        ..summary()
    });
    let text = std::fs::read_to_string(dir.join("json.log")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["Type"], "subrequest.summary");
    assert_eq!(lines[0]["Logger"], "myproj");
    assert_eq!(lines[0]["Fields"]["msg"], "subrequest.summary");
    assert_eq!(lines[0]["Fields"]["path"], "/v1/buckets/b/collections");
    assert_eq!(lines[1]["Type"], "request.summary");
    assert_eq!(lines[1]["Fields"]["batch_size"], 1);
    assert!(
        lines[1]["Fields"].get("uid").is_none() && lines[1]["Fields"].get("querystring").is_none()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sentry_never_blocks_on_a_stuck_collector() {
    // A listener that never accepts: connections sit in the backlog and nobody answers.
    let stuck = TcpListener::bind("127.0.0.1:0").unwrap();
    let ini = format!(
        "[loggers]\nkeys = root\n[handlers]\nkeys = sentry\n[logger_root]\nlevel = INFO\nhandlers = sentry\n\
         [handler_sentry]\nclass = raven.handlers.logging.SentryHandler\nargs = ('http://k:s@{}/7',)\nlevel = ERROR\n",
        stuck.local_addr().unwrap()
    );
    let config = LoggingConfig::from_ini_str(&ini, Path::new("k.ini"), "kinto", None).unwrap();
    let logger = Logger::open(&config).unwrap();
    let start = Instant::now();
    for i in 0..500 {
        logger.log("root", Level::Error, &format!("error {i}"), &Map::new());
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(
        logger.sentry_dropped() >= 500 - 64 - 1,
        "bounded queue: {}",
        logger.sentry_dropped()
    );
}

#[test]
fn sentry_event_fields() {
    let collector = TcpListener::bind("127.0.0.1:0").unwrap();
    let ini = format!(
        "[loggers]\nkeys = root\n[handlers]\nkeys = sentry\n[logger_root]\nlevel = INFO\nhandlers = sentry\n\
         [handler_sentry]\nclass = raven.handlers.logging.SentryHandler\nargs = ('http://pk@{}/sub/3',)\n",
        collector.local_addr().unwrap()
    );
    let config = LoggingConfig::from_ini_str(&ini, Path::new("k.ini"), "kinto", None).unwrap();
    let logger = Logger::open(&config).unwrap();
    logger.log("kinto", Level::Warning, "not an error", &Map::new());
    logger.log(
        "kinto",
        Level::Critical,
        "database unreachable",
        json!({"errno": 201}).as_object().unwrap(),
    );
    let (head, event) = accept_event(&collector);
    assert!(
        head.starts_with("POST /sub/api/3/store/ HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        !head.contains("sentry_secret"),
        "no secret in this DSN: {head}"
    );
    assert_eq!(event["level"], "fatal", "raven's name for CRITICAL");
    assert_eq!(event["message"], "database unreachable");
    assert_eq!(event["extra"]["errno"], 201);
    assert_eq!(logger.sentry_dropped(), 0);
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with the openssl command.
fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("the openssl command");
        assert!(status.success(), "openssl {args:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=obs test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}

#[test]
fn sentry_over_https() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let dir = temp_dir("tls");
    let (ca, cert, key) = test_pki(&dir);
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();

    let collector = TcpListener::bind("127.0.0.1:0").unwrap();
    let ini = format!(
        "[loggers]\nkeys = root\n[handlers]\nkeys = sentry\n[logger_root]\nlevel = INFO\nhandlers = sentry\n\
         [handler_sentry]\nclass = raven.handlers.logging.SentryHandler\nargs = ('https://pk:sk@{}/9?ca_certs={}',)\n",
        collector.local_addr().unwrap(),
        ca.display()
    );
    let config = LoggingConfig::from_ini_str(&ini, Path::new("k.ini"), "kinto", None).unwrap();
    let logger = Logger::open(&config).unwrap();
    logger.log("kinto", Level::Error, "over TLS", &Map::new());

    let (tcp, _) = collector.accept().unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let connection = rustls::ServerConnection::new(std::sync::Arc::new(server_config)).unwrap();
    let (head, event) = read_event(rustls::StreamOwned::new(connection, tcp));
    assert!(
        head.starts_with("POST /api/9/store/ HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("sentry_key=pk, sentry_secret=sk"), "{head}");
    assert_eq!(event["message"], "over TLS");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_repository_kinto_ini_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("kinto.ini");
    let config = LoggingConfig::from_ini_file(&path, "kinto", None).unwrap();
    assert_eq!(config.loggers[""].level, Level::Info);
    assert_eq!(config.loggers["kinto"].handlers, [0]);
    assert_eq!(
        config.handlers[0].output,
        kinto::logging::OutputSpec::Stream(2)
    );
    Logger::open(&config).unwrap();
}

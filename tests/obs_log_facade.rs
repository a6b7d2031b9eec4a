//! The process-wide logger: the `log` macros (targets as logger names, key-values as fields), the
//! thread's request id on every record, and the request summary and uncaught error functions.
//! One test only: the installed logger is global to this test binary.

use std::path::PathBuf;
use std::time::Duration;

use kinto::logging::{self, Logger, LoggingConfig, RequestSummary};
use serde_json::Value;

#[test]
fn log_macros_and_request_records() {
    let dir: PathBuf = std::env::temp_dir().join(format!("obs-facade-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ini = "
[loggers]
keys = root, kinto, summary
[handlers]
keys = file
[formatters]
keys = heka
[logger_root]
level = WARNING
handlers = file
[logger_kinto]
level = INFO
handlers = file
qualname = kinto
[logger_summary]
level = INFO
handlers = file
qualname = request.summary
[handler_file]
class = FileHandler
args = ('%(here)s/kinto.log',)
formatter = heka
[formatter_heka]
format = %(message)s
";
    let config = LoggingConfig::from_ini_str(
        ini,
        &dir.join("kinto.ini"),
        "kinto",
        Some("kinto.core.logs.MozillaHekaRenderer"),
    )
    .unwrap();
    logging::install(Logger::open(&config).unwrap());
    assert_eq!(log::max_level(), log::LevelFilter::Info);

    logging::set_request_id(Some("rid-42"));
    log::info!(target: "kinto::api::records", userid = "bob", uri = "/buckets/b", perm = "write"; "Permission not granted.");
    log::debug!(target: "kinto", "below INFO: dropped");
    log::info!(target: "postgres", "below the root's WARNING: dropped");
    log::warn!(target: "r2d2", "pool warning");
    logging::request_summary(&RequestSummary {
        method: "DELETE",
        path: "/v1/buckets/b",
        code: 500,
        errno: 999,
        duration: Duration::from_millis(3),
        ..RequestSummary::default()
    });
    logging::uncaught_error(
        &RequestSummary {
            method: "DELETE",
            path: "/v1/buckets/b",
            errno: 999,
            ..RequestSummary::default()
        },
        "panicked at src/api/buckets.rs:10: boom",
        "stack...",
    );
    logging::install_panic_hook();
    let result = std::panic::catch_unwind(|| panic!("handler bug {}", 7));
    assert!(result.is_err());
    logging::set_request_id(None);
    log::warn!(target: "kinto", "after the request");

    let text = std::fs::read_to_string(dir.join("kinto.log")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "{text}");

    assert_eq!(lines[0]["Type"], "kinto.api.records");
    assert_eq!(lines[0]["Severity"], 6);
    let fields = &lines[0]["Fields"];
    assert_eq!(fields["msg"], "Permission not granted.");
    assert_eq!(fields["userid"], "bob");
    assert_eq!(fields["perm"], "write");
    assert_eq!(fields["rid"], "rid-42");

    assert_eq!(lines[1]["Type"], "r2d2");
    assert_eq!(lines[1]["Severity"], 4);

    assert_eq!(lines[2]["Type"], "request.summary");
    assert_eq!(
        lines[2]["Fields"]["rid"], "rid-42",
        "the thread's request id"
    );
    assert_eq!(lines[2]["Fields"]["code"], 500);
    assert_eq!(lines[2]["Fields"]["errno"], 999);
    assert!(lines[2]["Fields"].get("agent").is_none() && lines[2]["Fields"].get("uid").is_none());

    assert_eq!(lines[3]["Type"], "root");
    assert_eq!(lines[3]["Severity"], 3);
    assert_eq!(
        lines[3]["Fields"]["error"],
        "panicked at src/api/buckets.rs:10: boom"
    );
    assert_eq!(lines[3]["Fields"]["traceback"], "stack...");
    assert_eq!(lines[3]["Fields"]["rid"], "rid-42");

    assert_eq!(lines[4]["Type"], "root");
    assert_eq!(lines[4]["Severity"], 3);
    let error = lines[4]["Fields"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("panicked at tests/obs_log_facade.rs:")
            && error.ends_with(": handler bug 7"),
        "{error}"
    );
    assert!(!lines[4]["Fields"]["traceback"].as_str().unwrap().is_empty());
    assert_eq!(lines[4]["Fields"]["rid"], "rid-42");

    assert!(lines[5]["Fields"].get("rid").is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

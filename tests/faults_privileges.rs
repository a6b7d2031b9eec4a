//! Privilege drop (issue 7, item 6): with `uid = nobody` and `gid = nogroup` the master and its
//! workers run unprivileged (ids, groups, capabilities from `/proc/<pid>/status`), and a worker
//! cannot open a root-only (0600) database file that root could. Needs root, as the worker's own
//! privilege tests do.

mod support_chaos;
use std::os::unix::fs::PermissionsExt;
use support_chaos::*;

fn status_field(pid: i32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

#[test]
fn workers_run_as_nobody_and_cannot_read_a_root_only_file() {
    // SAFETY: plain getter.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "privilege tests must run as root"
    );
    // A SQLite cache file created by root, mode 0600: root can use it, nobody cannot.
    let private = TempDir::new("rootonly");
    let db = private.0.join("root-only.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER)")
        .unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    let pg = PgDb::create();
    let url = pg.url();
    let app = format!(
        "kinto.storage_backend = kinto.core.storage.postgresql\nkinto.storage_url = {url}\n\
         kinto.permission_backend = kinto.core.permission.postgresql\nkinto.permission_url = {url}\n\
         kinto.cache_backend = sqlite\nkinto.cache_url = sqlite:///{}\n{AUTH}",
        db.display()
    );
    let server = Server::start(&app, 2, "harakiri = 20\nuid = nobody\ngid = nogroup\n");
    let client = server.client();
    let workers = server.worker_pids();
    let mut figures = Vec::new();
    for pid in workers.iter().chain([server.pid()].iter()) {
        let (uid, gid, groups, cap) = (
            status_field(*pid, "Uid"),
            status_field(*pid, "Gid"),
            status_field(*pid, "Groups"),
            status_field(*pid, "CapEff"),
        );
        figures.push(format!(
            "pid {pid}: Uid {uid} Gid {gid} Groups [{groups}] CapEff {cap}"
        ));
        assert_eq!(uid, "65534\t65534\t65534\t65534", "pid {pid}");
        assert_eq!(gid, "65534\t65534\t65534\t65534", "pid {pid}");
        assert!(
            groups.split_whitespace().all(|g| g == "65534"),
            "pid {pid}: {groups}"
        );
        assert_eq!(cap, "0000000000000000", "pid {pid}");
        assert_eq!(
            status_field(*pid, "CapPrm"),
            "0000000000000000",
            "pid {pid}"
        );
    }
    println!("privileges:\n  {}", figures.join("\n  "));
    // The storage (PostgreSQL over TCP) works; the root-only cache file does not open.
    let heartbeat = client.call("GET", "/v1/__heartbeat__", None, None);
    println!(
        "privileges: heartbeat {} {:?}",
        heartbeat.status,
        heartbeat.json()
    );
    assert_eq!(heartbeat.status, 503, "{:?}", heartbeat.json());
    assert_eq!(heartbeat.json()["cache"], false);
    assert_eq!(heartbeat.json()["storage"], true);
    // Root, on the other hand, can open it: the refusal comes from the dropped privileges.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(
        server.worker_pids(),
        workers,
        "no worker died on the refusal"
    );
}

//! Sentry events for ERROR records (`raven.handlers.logging.SentryHandler` in the ini), sent by a
//! background thread over HTTP or HTTPS (`POST /api/<project>/store/` with `X-Sentry-Auth`), through
//! a bounded queue: when Sentry is slow or down, events are dropped, requests never wait.
//! HTTPS trusts the system's CA certificates (`SSL_CERT_FILE`/`SSL_CERT_DIR` apply), or only those
//! of raven's `?ca_certs=/path.pem` DSN option.
//!
//! The thread is started on first use in each process (and again in a forked child, where the
//! parent's thread does not exist), so a handler configured before the master forks stays valid.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// Events waiting to be sent, at most; more are dropped.
pub const QUEUE_LEN: usize = 64;
/// Connect, write and read timeout of one event.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// A parsed DSN: `http(s)://public[:secret]@host[:port][/path]/project`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    pub scheme: String,
    pub public_key: String,
    pub secret_key: Option<String>,
    pub host: String,
    pub port: u16,
    /// Path prefix before the project id, without trailing slash (usually empty).
    pub path: String,
    pub project: String,
    /// raven's `?ca_certs=` option: the only CAs trusted for this DSN.
    pub ca_certs: Option<PathBuf>,
}

impl Dsn {
    pub fn parse(dsn: &str) -> Result<Dsn, String> {
        // Never echo the DSN in errors: it holds the secret key.
        let bad = |why: &str| format!("Invalid Sentry DSN: {why}");
        let (scheme, rest) = dsn.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let default_port = match scheme {
            "http" => 80,
            "https" => 443,
            _ => return Err(bad("scheme must be http or https")),
        };
        let (keys, rest) = rest.rsplit_once('@').ok_or_else(|| bad("no public key"))?;
        let (public_key, secret_key) = match keys.split_once(':') {
            Some((p, s)) => (p.to_owned(), Some(s.to_owned())),
            None => (keys.to_owned(), None),
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let ca_certs = query
            .split('&')
            .find_map(|p| p.strip_prefix("ca_certs="))
            .map(|p| {
                PathBuf::from(
                    percent_encoding::percent_decode_str(p)
                        .decode_utf8_lossy()
                        .as_ref(),
                )
            });
        let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no project id"))?;
        let path = path.trim_end_matches('/');
        let (prefix, project) = match path.rsplit_once('/') {
            Some((prefix, project)) => (format!("/{prefix}"), project),
            None => (String::new(), path),
        };
        if project.is_empty() || public_key.is_empty() {
            return Err(bad("empty project id or public key"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h, p.parse().map_err(|_| bad("invalid port"))?)
            }
            _ => (authority, default_port),
        };
        Ok(Dsn {
            scheme: scheme.to_owned(),
            public_key,
            secret_key,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            path: prefix,
            project: project.to_owned(),
            ca_certs,
        })
    }

    fn store_path(&self) -> String {
        format!("{}/api/{}/store/", self.path, self.project)
    }

    fn auth_header(&self, now: u64) -> String {
        let mut header = format!(
            "Sentry sentry_version=7, sentry_client=kinto-rs/{}, sentry_timestamp={now}, sentry_key={}",
            env!("CARGO_PKG_VERSION"),
            self.public_key
        );
        if let Some(secret) = &self.secret_key {
            header.push_str(", sentry_secret=");
            header.push_str(secret);
        }
        header
    }
}

/// What an event says, taken from a log record.
pub struct Event<'a> {
    pub logger: &'a str,
    pub level: &'a str,
    pub message: &'a str,
    pub fields: &'a Map<String, Value>,
    pub time: SystemTime,
    pub server_name: &'a str,
}

/// The per-handler client; cheap to share.
pub struct Sentry {
    dsn: Arc<Dsn>,
    queue: Mutex<Option<(u32, SyncSender<Vec<u8>>)>>,
    dropped: AtomicU64,
}

impl Sentry {
    pub fn new(dsn: Dsn) -> Sentry {
        Sentry {
            dsn: Arc::new(dsn),
            queue: Mutex::new(None),
            dropped: AtomicU64::new(0),
        }
    }

    /// Events dropped so far (queue full).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues the event; never blocks.
    pub fn capture(&self, event: &Event<'_>) {
        let body = event_body(event);
        let pid = std::process::id();
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.as_ref().is_none_or(|(owner, _)| *owner != pid) {
            *queue = spawn_sender(self.dsn.clone()).map(|tx| (pid, tx));
        }
        let Some((_, tx)) = queue.as_ref() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match tx.try_send(body) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                *queue = None;
            }
        }
    }
}

fn event_body(event: &Event<'_>) -> Vec<u8> {
    let since_epoch = event.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut extra = event.fields.clone();
    extra.remove("traceback");
    let mut body = json!({
        "event_id": uuid::Uuid::new_v4().simple().to_string(),
        "timestamp": since_epoch.as_secs_f64(),
        "level": event.level,
        "logger": event.logger,
        "platform": "other",
        "server_name": event.server_name,
        "message": event.message,
        "extra": extra,
    });
    if let Some(Value::String(error)) = event.fields.get("error") {
        let (kind, value) = error.split_once(": ").unwrap_or(("Error", error.as_str()));
        body["exception"] = json!({"values": [{"type": kind, "value": value}]});
    }
    if let Some(Value::String(traceback)) = event.fields.get("traceback") {
        body["extra"]["traceback"] = Value::String(traceback.clone());
    }
    body.to_string().into_bytes()
}

fn spawn_sender(dsn: Arc<Dsn>) -> Option<SyncSender<Vec<u8>>> {
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE_LEN);
    std::thread::Builder::new()
        .name("sentry".into())
        .spawn(move || {
            // Built in this thread, once: reading the system's CA store takes milliseconds.
            let tls = (dsn.scheme == "https")
                .then(|| tls_config(&dsn))
                .and_then(Result::ok);
            for body in rx {
                // Failures are not logged: logging them would feed this handler again.
                let _ = post(&dsn, tls.as_ref(), &body);
            }
        })
        .ok()?;
    Some(tx)
}

fn tls_config(dsn: &Dsn) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match &dsn.ca_certs {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())?;
            for cert in certs {
                roots
                    .add(cert.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A certificate the store cannot parse is skipped, as browsers do.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn post(dsn: &Dsn, tls: Option<&Arc<rustls::ClientConfig>>, body: &[u8]) -> std::io::Result<()> {
    let addr = (dsn.host.as_str(), dsn.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("Sentry host does not resolve"))?;
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let default_port = if dsn.scheme == "https" { 443 } else { 80 };
    let host = if dsn.port == default_port {
        dsn.host.clone()
    } else {
        format!("{}:{}", dsn.host, dsn.port)
    };
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kinto-rs/{}\r\nContent-Type: application/json\r\n\
         X-Sentry-Auth: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        dsn.store_path(),
        env!("CARGO_PKG_VERSION"),
        dsn.auth_header(now),
        body.len()
    );
    let mut message = head.into_bytes();
    message.extend_from_slice(body);
    if dsn.scheme == "https" {
        let config = tls.ok_or_else(|| std::io::Error::other("no TLS configuration"))?;
        let name = rustls::pki_types::ServerName::try_from(dsn.host.clone())
            .map_err(std::io::Error::other)?;
        let connection =
            rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
        exchange(rustls::StreamOwned::new(connection, stream), &message)
    } else {
        exchange(stream, &message)
    }
}

/// Writes the request and reads the start of the answer, so the collector sees a complete
/// exchange; the answer is not used.
fn exchange(mut stream: impl Read + Write, message: &[u8]) -> std::io::Result<()> {
    stream.write_all(message)?;
    stream.flush()?;
    let mut status = [0u8; 64];
    let _ = stream.read(&mut status)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_forms() {
        let d = Dsn::parse("http://public:secret@example.com/1").unwrap();
        assert_eq!(
            (d.host.as_str(), d.port, d.project.as_str(), d.path.as_str()),
            ("example.com", 80, "1", "")
        );
        assert_eq!(d.secret_key.as_deref(), Some("secret"));
        assert_eq!(d.store_path(), "/api/1/store/");
        let d = Dsn::parse("https://abc@sentry.example.com:9000/prefix/42").unwrap();
        assert_eq!(
            (d.port, d.store_path().as_str()),
            (9000, "/prefix/api/42/store/")
        );
        assert_eq!(d.secret_key, None);
        let d = Dsn::parse("https://abc@127.0.0.1:9/5?ca_certs=/tmp/ca.pem&timeout=1").unwrap();
        assert_eq!(d.ca_certs, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(d.store_path(), "/api/5/store/");
        assert!(d.auth_header(5).contains("sentry_key=abc"));
        for bad in [
            "ftp://a@b/1",
            "http://example.com/1",
            "http://a@b",
            "http://a@b:x/1",
        ] {
            let err = Dsn::parse(bad).unwrap_err();
            assert!(!err.contains("example"), "{err}");
        }
    }
}

//! A test binary built from `master` and `worker` with a probe handler (`/pid`, `/sleep?ms=N`,
//! `/exit?code=N`, `/abort`, `/panic`, `/echo`, `/headers`, `/greeting`, `/env`, `/cwd`), so that process and HTTP
//! behaviour are tested without Kinto or a database.
//!
//! `probe --ini PATH[:SECTION] [--option value ...]`. `PROBE_INIT_FAIL=1` in the environment makes
//! every worker fail its initialisation (exit 22). The `[probe]` section's `greeting` is served at
//! `/greeting`, so that tests can see a reload apply a changed application setting.

use master::{App, Invocation, ServerConfig, WorkerContext};
use std::path::Path;
use std::time::Duration;
use worker::{Handler, Request, Response};

/// The probe application: only what it read from the `[probe]` section.
struct Probe {
    greeting: String,
}

impl App for Probe {
    const NAME: &'static str = "probe";

    fn load(ini: &Path, invocation: &Invocation) -> Result<(ServerConfig, Probe), String> {
        let config = ServerConfig::load(invocation)?;
        let text = std::fs::read_to_string(ini).map_err(|e| format!("{}: {e}", ini.display()))?;
        let greeting = master::dialect::section_entries(&text, "probe")
            .unwrap_or_default()
            .into_iter()
            .rev()
            .find(|(k, _)| k == "greeting")
            .map(|(_, v)| v)
            .unwrap_or_else(|| "hello".to_string());
        Ok((config, Probe { greeting }))
    }

    fn work(&self, ctx: WorkerContext) -> i32 {
        if std::env::var("PROBE_INIT_FAIL").as_deref() == Ok("1") {
            return master::EXIT_INIT_FAILED;
        }
        worker::serve(
            ctx,
            ProbeHandler {
                greeting: self.greeting.clone(),
            },
        )
    }
}

struct ProbeHandler {
    greeting: String,
}

fn query_number(request: &Request, key: &str) -> u64 {
    request
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn text(status: u16, body: String) -> Response {
    let mut response = Response::new(status);
    response
        .headers
        .push(("Content-Type".into(), "text/plain".into()));
    response.body = body.into_bytes();
    response
}

impl Handler for ProbeHandler {
    fn handle(&mut self, request: &Request) -> Response {
        match request.path() {
            "/pid" => text(200, std::process::id().to_string()),
            "/sleep" => {
                let ms = query_number(request, "ms");
                std::thread::sleep(Duration::from_millis(ms));
                text(200, format!("{} slept {ms}", std::process::id()))
            }
            "/exit" => {
                let code = query_number(request, "code") as i32;
                // SAFETY: leaving the worker abruptly is the point of this endpoint.
                unsafe { libc::_exit(code) }
            }
            "/abort" => std::process::abort(),
            "/panic" => panic!("probe panic requested"),
            "/echo" => {
                let mut response = Response::new(200);
                response.body = request.body.clone();
                response
            }
            "/headers" => text(
                200,
                request
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}\n"))
                    .collect(),
            ),
            "/greeting" => text(200, self.greeting.clone()),
            "/cwd" => text(
                200,
                std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default(),
            ),
            // The worker's environment as the process sees it (/proc/<pid>/environ keeps the
            // strings of the original exec, even after unsetenv).
            "/env" => text(
                200,
                std::env::vars()
                    .map(|(k, v)| format!("{k}={v}\n"))
                    .collect(),
            ),
            _ => text(404, "not found".into()),
        }
    }
}

fn main() {
    let (invocation, rest) = Invocation::from_args(std::env::args().skip(1));
    if !rest.is_empty() {
        eprintln!("usage: probe --ini PATH[:SECTION] [--option value ...]");
        std::process::exit(2);
    }
    std::process::exit(master::run::<Probe>(invocation));
}

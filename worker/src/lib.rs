//! HTTP/1.0 and 1.1 serving on the listeners a worker inherits from the master.
//!
//! One request is handled at a time, synchronously; idle keep-alive connections are parked in a
//! `mio` poll while the worker serves others. Heads are parsed with `httparse` within the
//! configured limits, bodies (`Content-Length` or chunked) are read whole before the handler runs.
//! It knows nothing of Kinto: the application is a [`Handler`].
//!
//! Layout, along the request path: `stream` (socket I/O with per-phase timeouts, accept), `head`
//! (head parsing, pure), `chunked` (chunked body decoding, pure), `connection` (one connection:
//! head, body, handler, response), `respond` (response head encoding), `server` (the poll loop,
//! keep-alive parking, stop and recycling), `signals`, `slot` (scoreboard reporting), `log` (request
//! and lifecycle lines), `logformat` (`log-format` templates), `config` (the worker's view of the
//! configuration and listeners).

pub mod chunked;
pub mod config;
mod connection;
pub mod head;
pub mod log;
pub mod logformat;
pub mod request;
mod respond;
pub mod response;
mod server;
pub mod signals;
pub mod slot;
mod stream;

pub use config::{HttpConfig, HttpListener};
pub use log::Log;
pub use request::{Request, Scheme, Version};
pub use response::Response;
pub use server::{run, WorkerSetup};
pub use signals::WorkerSignals;
pub use slot::Slot;

use master::WorkerContext;

/// The application, as seen by the worker: a function of request to response.
pub trait Handler {
    /// Answers one complete, validated request.
    fn handle(&mut self, request: &Request) -> Response;

    /// The response for an error the worker detects itself (malformed head, limits, timeouts) or for
    /// a handler that panicked (status 500). The default is a minimal JSON body; an application
    /// overrides it to use its own error format.
    fn error_response(&mut self, status: u16) -> Response {
        Response::json_error(status)
    }
}

/// Serves until the worker is told to stop; returns the worker's exit code: 17 after a graceful
/// stop (SIGHUP, recycling), 30 when the master is gone (SIGINT/SIGTERM `_exit(30)` directly).
/// Installs the worker's signal handlers and panic hook: call it only in a forked worker.
pub fn serve<H: Handler>(ctx: WorkerContext, handler: H) -> i32 {
    let config = HttpConfig::from_server(&ctx.config);
    let signals = match WorkerSignals::install(config.harakiri_graceful_signal) {
        Ok(signals) => signals,
        Err(e) => {
            Log::stderr().dated(&format!(
                "worker {} cannot install its signal handlers: {e}",
                ctx.id
            ));
            return master::EXIT_INIT_FAILED;
        }
    };
    install_panic_hook();
    let setup = WorkerSetup {
        id: ctx.id,
        listeners: ctx.listeners.into_iter().map(HttpListener::from).collect(),
        config,
        master_alive: Some(ctx.master_alive),
        log: Log::stderr(),
    };
    run(setup, &ctx.slot, handler, Some(signals))
}

/// Panic messages as one dated line, written at once (the default hook writes several pieces).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let text = info.to_string().replace('\n', " ");
        Log::stderr().dated(&format!("panic: {text}"));
    }));
}

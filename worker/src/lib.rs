//! HTTP/1.0 and 1.1 serving on the listeners a worker inherits from the master.
//!
//! One request is handled at a time, synchronously; idle keep-alive connections are parked in a
//! `mio` poll while the worker serves others. Heads are parsed with `httparse` within the
//! configured limits, bodies (`Content-Length` or chunked) are read whole before the handler runs.
//! It knows nothing of Kinto: the application is a [`Handler`].

pub mod request;
pub mod response;

pub use request::{Request, Scheme, Version};
pub use response::Response;

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

/// Serves until the worker is told to stop; returns the worker's exit code.
pub fn serve<H: Handler>(ctx: WorkerContext, handler: H) -> i32 {
    let _ = (ctx, handler);
    unimplemented!("worker loop")
}

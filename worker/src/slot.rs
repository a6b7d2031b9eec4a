//! The worker's view of its scoreboard slot: what it reports around each request.

use master::SlotHandle;

/// Receives the start and end of every request that reaches the handler.
pub trait Slot {
    /// The request is complete (head and body) and the handler is about to run: the harakiri clock
    /// starts (`harakiri` seconds, 0 = off).
    fn request_started(&self, method: &str, uri: &str, remote_addr: &str, harakiri: u64);
    /// The response was written (`bytes_sent`: head and body).
    fn request_finished(&self, status: u16, bytes_sent: u64);
    /// Requests served by all workers since the master started, this one included, when known
    /// (the `<treq>` of the request log line); the worker's own count is used otherwise.
    fn total_requests(&self) -> Option<u64> {
        None
    }
    /// The loop is set up and about to accept (the master's `READY=1` waits for every slot).
    fn accepting(&self) {}
    /// A graceful stop is under way (SIGHUP, recycling, master gone).
    fn stopping(&self) {}
}

impl Slot for SlotHandle {
    fn request_started(&self, method: &str, uri: &str, remote_addr: &str, harakiri: u64) {
        SlotHandle::request_started(self, method, uri, remote_addr, harakiri)
    }

    fn request_finished(&self, status: u16, bytes_sent: u64) {
        SlotHandle::request_finished(self, status, bytes_sent)
    }

    fn total_requests(&self) -> Option<u64> {
        Some(SlotHandle::total_requests(self))
    }

    fn accepting(&self) {
        SlotHandle::set_accepting(self)
    }

    fn stopping(&self) {
        SlotHandle::set_stopping(self)
    }
}

//! The shared scoreboard: one slot per worker in an anonymous shared mapping.

/// A worker's view of its own slot. Cheap to call on every request (atomic stores only).
#[derive(Debug)]
pub struct SlotHandle {}

impl SlotHandle {
    /// Marks the slot busy with this request; the master kills the worker if it is still busy
    /// `harakiri` seconds later (0 = never).
    pub fn request_started(&self, method: &str, uri: &str, remote_addr: &str, harakiri: u64) {
        let _ = (method, uri, remote_addr, harakiri);
    }
    /// Marks the slot idle again and counts the request.
    pub fn request_finished(&self, status: u16, bytes_sent: u64) {
        let _ = (status, bytes_sent);
    }
}

//! What a forked worker receives from the master.

use crate::{Listener, ServerConfig, SlotHandle};
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// Everything a worker needs to serve: its slot, the listeners, the master-liveness pipe and the
/// validated server configuration.
pub struct WorkerContext {
    /// Slot number, 1-based (uWSGI's worker id).
    pub id: usize,
    /// Listening sockets, shared with every other worker.
    pub listeners: Vec<Listener>,
    /// This worker's scoreboard slot (request start, harakiri deadline, counters).
    pub slot: SlotHandle,
    /// Read end of a pipe only the master writes to: end-of-file means the master died.
    pub master_alive: OwnedFd,
    /// The server configuration in force when the worker was spawned.
    pub config: Arc<ServerConfig>,
}

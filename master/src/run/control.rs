//! Operator control: the master FIFO commands and the status outputs (SIGUSR1, SIGUSR2, the
//! stats document).

use super::*;

impl<A: App> Master<A> {
    /// Commands waiting in the master FIFO.
    pub(super) fn read_fifo(&mut self) -> Vec<u8> {
        let Some(fifo) = &mut self.fifo else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        use std::io::Read;
        while let Ok(n) = fifo.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    pub(super) fn on_fifo(&mut self, command: u8) {
        match command {
            b'q' => self.shutdown(true),
            b'Q' => self.shutdown(false),
            b'r' => self.reload(ReloadKind::Graceful),
            b'R' => self.reload(ReloadKind::Brutal),
            b'w' => self.reload(ReloadKind::Workers { brutal: false }),
            b'W' => self.reload(ReloadKind::Workers { brutal: true }),
            b'c' => self.reload(ReloadKind::Chain),
            b'l' => self.reopen_logs(),
            b's' => self.log_stats(),
            b'p' => self.toggle_pause(),
            b'\n' | b'\r' | b' ' => {}
            other => log::line(&format!(
                "[uwsgi-fifo] unknown command \"{}\"",
                char::from(other).escape_default()
            )),
        }
    }

    pub(super) fn log_stats(&self) {
        let mut out = self.config.dump();
        out.push_str("-----------------\n");
        out.push_str(&format!(
            "\tworkers total requests: {}\n",
            self.board.header().total_requests.load(Ordering::Relaxed)
        ));
        for i in 0..self.target {
            let slot = self.board.slot(i + 1);
            out.push_str(&format!(
                "\tworker {} app 0 [] requests: {} exceptions: {}\n",
                i + 1,
                slot.requests.load(Ordering::Relaxed),
                slot.exceptions.load(Ordering::Relaxed)
            ));
        }
        out.push_str("-----------------");
        log::line(&out);
    }

    pub(super) fn log_status(&self) {
        for (i, s) in self.slots.iter().enumerate() {
            let Some(pid) = s.pid else { continue };
            let slot = self.board.slot(i + 1);
            if slot.request_started_mono_ms.load(Ordering::Acquire) != 0 {
                let info = slot.request_info();
                log::line(&format!(
                    "SIGUSR2: --- uWSGI worker {} (pid: {pid}) is managing request {} since {} ---",
                    i + 1,
                    info.uri,
                    log::ctime(info.started_unix as i64)
                ));
            } else {
                log::line(&format!(
                    "SIGUSR2: --- uWSGI worker {} (pid: {pid}) is idle ---",
                    i + 1
                ));
            }
        }
    }

    /// The stats document's inputs (6.6).
    pub(super) fn snapshot(&self) -> crate::stats::Snapshot {
        let sockets = self
            .listeners
            .iter()
            .map(|l| {
                let (queue, max_queue) = match &l.address {
                    Address::Tcp(_) => crate::stats::listen_queue(l.listener.raw_fd()),
                    _ => (0, 0),
                };
                crate::stats::SocketStats {
                    name: l.listener.name.clone(),
                    queue,
                    max_queue,
                }
            })
            .collect();
        let workers = (0..self.target)
            .map(|i| {
                let s = &self.slots[i];
                let slot = self.board.slot(i + 1);
                let state = slot.state.load(Ordering::Acquire);
                let busy = slot.request_started_mono_ms.load(Ordering::Acquire) != 0;
                let request = busy.then(|| {
                    let info = slot.request_info();
                    (info.method, info.uri, info.remote_addr, info.started_unix)
                });
                let (vsz, rss) = s.pid.and_then(statm).unwrap_or((0, 0));
                crate::stats::WorkerStats {
                    id: i + 1,
                    pid: s.pid.map_or(0, |p| p.as_raw()),
                    accepting: s.pid.is_some() && matches!(state, STATE_ACCEPTING | STATE_BUSY),
                    status: if s.paused {
                        "pause"
                    } else if busy {
                        "busy"
                    } else {
                        "idle"
                    },
                    requests: slot.requests.load(Ordering::Relaxed),
                    delta_requests: slot.delta_requests.load(Ordering::Relaxed),
                    exceptions: slot.exceptions.load(Ordering::Relaxed),
                    harakiri_count: s.harakiri_count,
                    rss,
                    vsz,
                    last_spawn: s.last_spawn_unix,
                    respawn_count: s.respawn_count,
                    tx: slot.tx.load(Ordering::Relaxed),
                    running_time: slot.running_time_us.load(Ordering::Relaxed),
                    request,
                }
            })
            .collect();
        crate::stats::Snapshot {
            pid: std::process::id(),
            sockets,
            workers,
        }
    }
}

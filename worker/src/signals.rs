//! Worker signal handling (3.8): SIGINT and SIGTERM end the process at once from a plain handler;
//! SIGHUP, SIGUSR1, SIGUSR2 and SIGTSTP are delivered to the worker loop as poll events, and SIGHUP
//! also raises a flag the request path reads, so the response in progress gets `Connection: close`.

use master::EXIT_END;
use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGPIPE, SIGTERM, SIGTSTP, SIGUSR1, SIGUSR2};
use signal_hook_mio::v1_0::Signals;
use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A signal the worker loop acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerSignal {
    /// Graceful stop.
    Hup,
    /// Request counters.
    Usr1,
    /// What the worker is doing.
    Usr2,
    /// Pause toggle.
    Tstp,
}

/// The worker's signal sources, installed once in the forked worker process.
pub struct WorkerSignals {
    signals: Signals,
    hup: Arc<AtomicBool>,
}

extern "C" fn exit_now(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(EXIT_END) }
}

impl WorkerSignals {
    /// Installs the worker's handlers and unblocks the signals it handles (the master blocks them
    /// around `fork`). Only for a worker process: it changes process-wide dispositions.
    pub fn install() -> io::Result<Self> {
        // SAFETY: plain sigaction calls with a handler that only calls _exit, and SIG_IGN.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = exit_now as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            for signal in [SIGINT, SIGTERM] {
                if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // Writes to a client never raise it (MSG_NOSIGNAL), but a closed log pipe could.
            libc::signal(SIGPIPE, libc::SIG_IGN);
        }
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(SIGHUP, hup.clone())?;
        let signals = Signals::new([SIGHUP, SIGUSR1, SIGUSR2, SIGTSTP])?;
        // SAFETY: sigset manipulation on a local set, then unblocking in this thread.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGTSTP, SIGPIPE] {
                libc::sigaddset(&mut set, signal);
            }
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
        Ok(WorkerSignals { signals, hup })
    }

    /// The flag set as soon as SIGHUP arrives, read between the handler and the response.
    pub(crate) fn hup_flag(&self) -> Arc<AtomicBool> {
        self.hup.clone()
    }

    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.signals, token, Interest::READABLE)
    }

    /// The signals received since the last call.
    pub(crate) fn pending(&mut self) -> Vec<WorkerSignal> {
        self.signals
            .pending()
            .filter_map(|signal| match signal {
                SIGHUP => Some(WorkerSignal::Hup),
                SIGUSR1 => Some(WorkerSignal::Usr1),
                SIGUSR2 => Some(WorkerSignal::Usr2),
                SIGTSTP => Some(WorkerSignal::Tstp),
                _ => None,
            })
            .collect()
    }
}

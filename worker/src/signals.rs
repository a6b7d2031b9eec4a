//! Worker signal handling (3.8): SIGINT and SIGTERM end the process at once from a plain handler;
//! SIGHUP, SIGUSR1, SIGUSR2 and SIGTSTP are delivered to the worker loop as poll events, and SIGHUP
//! also raises a flag the request path reads, so the response in progress gets `Connection: close`.
//!
//! With `harakiri-graceful-timeout`, the master first sends `harakiri-graceful-signal`: its handler
//! writes a prebuilt 504 to the client whose handler is running (no response byte sent yet), then
//! `_exit(30)` (3.6 item 4). Everything it touches is an atomic or a leaked buffer, and it calls only
//! `write` and `_exit`: async-signal-safe.

use master::EXIT_END;
use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGPIPE, SIGTERM, SIGTSTP, SIGUSR1, SIGUSR2};
use signal_hook_mio::v1_0::Signals;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Arc;

/// The client socket while the handler runs, else -1.
static HANDLER_CLIENT: AtomicI32 = AtomicI32::new(-1);
/// The prebuilt 504 response (leaked, never freed) and its length.
static TIMEOUT_RESPONSE: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static TIMEOUT_RESPONSE_LEN: AtomicUsize = AtomicUsize::new(0);

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
    graceful_harakiri: bool,
}

extern "C" fn exit_now(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(EXIT_END) }
}

extern "C" fn answer_504_and_exit(_: libc::c_int) {
    let fd = HANDLER_CLIENT.load(Ordering::Acquire);
    let response = TIMEOUT_RESPONSE.load(Ordering::Acquire);
    let len = TIMEOUT_RESPONSE_LEN.load(Ordering::Acquire);
    if fd >= 0 && !response.is_null() {
        // SAFETY: write of a leaked, immutable buffer; write and _exit are async-signal-safe.
        unsafe { libc::write(fd, response as *const libc::c_void, len) };
    }
    unsafe { libc::_exit(EXIT_END) }
}

fn set_handler(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: a plain sigaction with an async-signal-safe handler.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Publishes the response the graceful-harakiri handler writes (built once per worker).
pub(crate) fn set_timeout_response(bytes: Vec<u8>) {
    let leaked: &'static mut [u8] = Box::leak(bytes.into_boxed_slice());
    TIMEOUT_RESPONSE_LEN.store(leaked.len(), Ordering::Release);
    TIMEOUT_RESPONSE.store(leaked.as_mut_ptr(), Ordering::Release);
}

/// The handler is running for the client on `fd` (`Some`), or no longer (`None`).
pub(crate) fn set_handler_client(fd: Option<RawFd>) {
    HANDLER_CLIENT.store(fd.unwrap_or(-1), Ordering::Release);
}

impl WorkerSignals {
    /// Installs the worker's handlers and unblocks the signals it handles (the master blocks them
    /// around `fork`). `graceful_harakiri` is the `harakiri-graceful-signal` when
    /// `harakiri-graceful-timeout` is set. Only for a worker process: it changes process-wide
    /// dispositions.
    pub fn install(graceful_harakiri: Option<i32>) -> io::Result<Self> {
        for signal in [SIGINT, SIGTERM] {
            set_handler(signal, exit_now)?;
        }
        // SAFETY: ignoring a signal. Writes to a client never raise it (MSG_NOSIGNAL), but a closed
        // log pipe could.
        unsafe { libc::signal(SIGPIPE, libc::SIG_IGN) };
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(SIGHUP, hup.clone())?;
        let looped: Vec<i32> = [SIGHUP, SIGUSR1, SIGUSR2, SIGTSTP]
            .into_iter()
            .filter(|&s| Some(s) != graceful_harakiri)
            .collect();
        let signals = Signals::new(looped)?;
        if let Some(signal) = graceful_harakiri {
            set_handler(signal, answer_504_and_exit)?;
        }
        // SAFETY: sigset manipulation on a local set, then unblocking in this thread.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGTSTP, SIGPIPE]
                .into_iter()
                .chain(graceful_harakiri)
            {
                libc::sigaddset(&mut set, signal);
            }
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
        Ok(WorkerSignals {
            signals,
            hup,
            graceful_harakiri: graceful_harakiri.is_some(),
        })
    }

    /// The graceful-harakiri handler is installed: the loop must publish the client fd.
    pub(crate) fn graceful_harakiri(&self) -> bool {
        self.graceful_harakiri
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

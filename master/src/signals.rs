//! The master's signal handling: handlers only write the signal number to a self-pipe, which the
//! master loop polls.
//!
//! Why not `signal-hook`: its registry is process-global state that a forked worker inherits; a
//! worker that reset the master's dispositions and then registered its own handlers with
//! `signal-hook` would find the registry believing its OS handler installed while the kernel has
//! `SIG_DFL`. Plain `sigaction` here keeps the worker's `signal-hook` registry untouched.

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// The signals the master handles.
pub const MASTER_SIGNALS: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGCHLD,
];

static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    // Async-signal-safe: one write(2) of one byte, errno preserved.
    // SAFETY: __errno_location and write are async-signal-safe.
    unsafe {
        let errno = *libc::__errno_location();
        let fd = PIPE_WRITE.load(Ordering::Relaxed);
        if fd >= 0 {
            let b = sig as u8;
            libc::write(fd, (&b as *const u8).cast(), 1);
        }
        *libc::__errno_location() = errno;
    }
}

/// The self-pipe; its read end is registered in the master's poll.
pub struct SelfPipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
}

/// Unblocks every signal (a process manager may have left some blocked), ignores SIGPIPE and
/// SIGWINCH, and routes the master's signals to a new self-pipe.
pub fn install() -> std::io::Result<SelfPipe> {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)?;
    PIPE_WRITE.store(write.as_raw_fd(), Ordering::Relaxed);
    let handler = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::all(),
    );
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler is async-signal-safe (see on_signal).
    unsafe {
        signal::sigaction(Signal::SIGPIPE, &ignore)?;
        signal::sigaction(Signal::SIGWINCH, &ignore)?;
        for &sig in MASTER_SIGNALS {
            signal::sigaction(sig, &handler)?;
        }
    }
    // Unblocked only now: a signal left pending (blocked across our own re-exec, or by whoever
    // started us) reaches the handler, not the default action.
    signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    Ok(SelfPipe { read, write })
}

/// In a forked worker: the master's dispositions back to default (SIGPIPE stays ignored).
pub fn reset_in_child() {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    PIPE_WRITE.store(-1, Ordering::Relaxed);
    for &sig in MASTER_SIGNALS.iter().chain(&[Signal::SIGWINCH]) {
        // SAFETY: restoring the default disposition.
        unsafe {
            let _ = signal::sigaction(sig, &default);
        }
    }
}

/// Blocks every signal; returns the previous mask (used around fork).
pub fn block_all() -> SigSet {
    let mut old = SigSet::empty();
    let _ = signal::sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    );
    old
}

/// Restores a mask returned by [`block_all`].
pub fn restore(mask: &SigSet) {
    let _ = signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None);
}

/// Reads every pending signal number from the pipe, in arrival order.
pub fn drain(read: RawFd) -> Vec<Signal> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: reading into our own buffer from a non-blocking pipe.
        let n = unsafe { libc::read(read, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend(
            buf[..n as usize]
                .iter()
                .filter_map(|&b| Signal::try_from(i32::from(b)).ok()),
        );
    }
    out
}

//! The shared scoreboard: one slot per worker in an anonymous shared mapping.
//!
//! The master maps it before the first fork, so every worker sees the same memory. Every field is an
//! atomic, so that concurrent access from several processes is well defined: a worker publishes
//! its request data first and the harakiri deadline last (`Release`); the master loads the
//! deadline (`Acquire`) before reading the rest. Text fields sit behind a per-slot sequence counter.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Slot states (`state` field).
pub const STATE_STARTING: u8 = 0;
pub const STATE_ACCEPTING: u8 = 1;
pub const STATE_BUSY: u8 = 2;
pub const STATE_STOPPING: u8 = 3;

const ADDR_LEN: usize = 48;
const METHOD_LEN: usize = 16;
const URI_LEN: usize = 256;

/// One worker's slot. Zeroed memory is a valid initial state.
#[repr(C)]
pub struct Slot {
    pub pid: AtomicI32,
    pub generation: AtomicU32,
    pub state: AtomicU8,
    /// Odd while the worker writes the text fields.
    seq: AtomicU32,
    /// `CLOCK_MONOTONIC` milliseconds when the running request started (0 = idle).
    pub request_started_mono_ms: AtomicU64,
    /// Unix seconds when the running request started.
    pub request_started_unix: AtomicU64,
    /// `CLOCK_MONOTONIC` milliseconds after which the master kills the worker (0 = none).
    pub harakiri_deadline_mono_ms: AtomicU64,
    /// Requests handled in this slot (all generations).
    pub requests: AtomicU64,
    /// Requests handled by the current worker process.
    pub delta_requests: AtomicU64,
    /// Response bytes sent.
    pub tx: AtomicU64,
    /// Responses with status 500 or more.
    pub exceptions: AtomicU64,
    /// Microseconds spent in requests (harakiri clock start to response written), all
    /// generations: the stats `running_time`, and `avg_rt` once divided by `requests`.
    pub running_time_us: AtomicU64,
    addr_len: AtomicU8,
    method_len: AtomicU8,
    uri_len: AtomicU32,
    addr: [AtomicU8; ADDR_LEN],
    method: [AtomicU8; METHOD_LEN],
    uri: [AtomicU8; URI_LEN],
}

/// The header of the mapping.
#[repr(C)]
pub struct Header {
    /// Requests handled by every worker since the master started.
    pub total_requests: AtomicU64,
    pub master_pid: AtomicI32,
    /// `thunder-lock`: a process-shared, robust mutex serialising accept between workers.
    accept_lock: std::cell::UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: every field is an atomic except the mutex, which is only used through the pthread
// calls made for process-shared use.
unsafe impl Sync for Header {}

/// What the master reads of a busy slot for the harakiri dump and SIGUSR2.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub remote_addr: String,
    pub method: String,
    pub uri: String,
    pub started_unix: u64,
}

/// The mapping: a header and `capacity` slots, never unmapped (workers keep pointers into it).
pub struct Scoreboard {
    header: &'static Header,
    slots: &'static [Slot],
}

impl Scoreboard {
    /// Maps a zeroed `MAP_SHARED | MAP_ANONYMOUS` region for `capacity` slots.
    pub fn new(capacity: usize) -> std::io::Result<Scoreboard> {
        let size = std::mem::size_of::<Header>() + capacity * std::mem::size_of::<Slot>();
        // SAFETY: a fresh anonymous mapping, zero-filled by the kernel; zero is a valid value of
        // every atomic in Header and Slot. It is never unmapped, hence the 'static lifetimes.
        unsafe {
            let ptr = libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if ptr == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            let header = &*(ptr as *const Header);
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            let rc = libc::pthread_mutex_init(header.accept_lock.get(), &attr);
            libc::pthread_mutexattr_destroy(&mut attr);
            if rc != 0 {
                return Err(std::io::Error::from_raw_os_error(rc));
            }
            let slots_ptr = (ptr as *const u8).add(std::mem::size_of::<Header>()) as *const Slot;
            let slots = std::slice::from_raw_parts(slots_ptr, capacity);
            Ok(Scoreboard { header, slots })
        }
    }

    pub fn header(&self) -> &'static Header {
        self.header
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Slot `id` (1-based).
    pub fn slot(&self, id: usize) -> &'static Slot {
        &self.slots[id - 1]
    }

    /// The handle given to the worker of slot `id`.
    pub fn handle(&self, id: usize) -> SlotHandle {
        SlotHandle {
            slot: self.slot(id),
            header: self.header,
        }
    }
}

impl Slot {
    /// Resets the slot before a spawn (a dead worker may have left it busy).
    pub fn reset(&self, generation: u32) {
        self.harakiri_deadline_mono_ms.store(0, Ordering::Release);
        self.request_started_mono_ms.store(0, Ordering::Relaxed);
        self.delta_requests.store(0, Ordering::Relaxed);
        self.state.store(STATE_STARTING, Ordering::Relaxed);
        self.pid.store(0, Ordering::Relaxed);
        self.generation.store(generation, Ordering::Release);
    }

    /// The running request's description, retried when torn by a concurrent write.
    pub fn request_info(&self) -> RequestInfo {
        let mut info = RequestInfo::default();
        for _ in 0..3 {
            let before = self.seq.load(Ordering::Acquire);
            info = RequestInfo {
                remote_addr: read_text(&self.addr, self.addr_len.load(Ordering::Relaxed).into()),
                method: read_text(&self.method, self.method_len.load(Ordering::Relaxed).into()),
                uri: read_text(&self.uri, self.uri_len.load(Ordering::Relaxed) as usize),
                started_unix: self.request_started_unix.load(Ordering::Relaxed),
            };
            // Seqlock reader: the data loads above must complete before the second read.
            std::sync::atomic::fence(Ordering::Acquire);
            if before.is_multiple_of(2) && self.seq.load(Ordering::Relaxed) == before {
                break;
            }
        }
        info
    }
}

fn read_text(field: &[AtomicU8], len: usize) -> String {
    let bytes: Vec<u8> = field[..len.min(field.len())]
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn write_text(field: &[AtomicU8], text: &str) -> usize {
    let bytes = &text.as_bytes()[..text.len().min(field.len())];
    for (dst, &b) in field.iter().zip(bytes) {
        dst.store(b, Ordering::Relaxed);
    }
    bytes.len()
}

/// Milliseconds of `CLOCK_MONOTONIC`, the clock shared by every process of the machine.
pub fn monotonic_ms() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    ts.tv_sec() as u64 * 1000 + ts.tv_nsec() as u64 / 1_000_000
}

/// A worker's view of its own slot. Cheap to call on every request (atomic stores only).
#[derive(Debug)]
pub struct SlotHandle {
    slot: &'static Slot,
    header: &'static Header,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("pid", &self.pid.load(Ordering::Relaxed))
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish()
    }
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Header")
            .field(
                "total_requests",
                &self.total_requests.load(Ordering::Relaxed),
            )
            .finish()
    }
}

impl SlotHandle {
    /// A handle on a private, single-slot scoreboard: for tests of the worker without a master.
    pub fn standalone() -> SlotHandle {
        Scoreboard::new(1)
            .expect("mmap of one scoreboard slot")
            .handle(1)
    }

    /// Marks the worker ready: initialised and about to accept. The master sends `READY=1` once
    /// every slot has reached this state. Idempotent.
    pub fn set_accepting(&self) {
        let _ = self.slot.state.compare_exchange(
            STATE_STARTING,
            STATE_ACCEPTING,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// Marks the worker as stopping (graceful stop under way).
    pub fn set_stopping(&self) {
        self.slot.state.store(STATE_STOPPING, Ordering::Release);
    }

    /// Marks the slot busy with this request; the master kills the worker if it is still busy
    /// `harakiri` seconds later (0 = never).
    pub fn request_started(&self, method: &str, uri: &str, remote_addr: &str, harakiri: u64) {
        let s = self.slot;
        let now = monotonic_ms();
        // Seqlock writer: odd counter first, visible before any text byte changes.
        s.seq.fetch_add(1, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        s.addr_len
            .store(write_text(&s.addr, remote_addr) as u8, Ordering::Relaxed);
        s.method_len
            .store(write_text(&s.method, method) as u8, Ordering::Relaxed);
        s.uri_len
            .store(write_text(&s.uri, uri) as u32, Ordering::Relaxed);
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        s.request_started_unix.store(unix, Ordering::Relaxed);
        s.request_started_mono_ms.store(now, Ordering::Relaxed);
        s.seq.fetch_add(1, Ordering::Release);
        if s.state.load(Ordering::Relaxed) != STATE_STOPPING {
            s.state.store(STATE_BUSY, Ordering::Relaxed);
        }
        let deadline = if harakiri > 0 {
            now + harakiri * 1000
        } else {
            0
        };
        s.harakiri_deadline_mono_ms
            .store(deadline, Ordering::Release);
    }

    /// Marks the slot idle again and counts the request.
    pub fn request_finished(&self, status: u16, bytes_sent: u64) {
        let s = self.slot;
        s.harakiri_deadline_mono_ms.store(0, Ordering::Release);
        let started = s.request_started_mono_ms.load(Ordering::Relaxed);
        if started > 0 {
            let elapsed_ms = monotonic_ms().saturating_sub(started);
            s.running_time_us
                .fetch_add(elapsed_ms * 1000, Ordering::Relaxed);
        }
        s.request_started_mono_ms.store(0, Ordering::Relaxed);
        s.requests.fetch_add(1, Ordering::Relaxed);
        s.delta_requests.fetch_add(1, Ordering::Relaxed);
        s.tx.fetch_add(bytes_sent, Ordering::Relaxed);
        if status >= 500 {
            s.exceptions.fetch_add(1, Ordering::Relaxed);
        }
        self.header.total_requests.fetch_add(1, Ordering::Relaxed);
        let _ = s.state.compare_exchange(
            STATE_BUSY,
            STATE_ACCEPTING,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// `thunder-lock`: takes the accept lock shared by every worker, waiting at most `timeout`
    /// (so that a stop request is still noticed); true when held. A worker killed while holding
    /// it does not block the others: the next taker recovers it.
    pub fn accept_lock(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            + timeout;
        let ts = libc::timespec {
            tv_sec: deadline.as_secs() as libc::time_t,
            tv_nsec: deadline.subsec_nanos() as _,
        };
        let lock = self.header.accept_lock.get();
        // SAFETY: the mutex was initialised process-shared and robust by Scoreboard::new.
        match unsafe { libc::pthread_mutex_timedlock(lock, &ts) } {
            0 => true,
            libc::EOWNERDEAD => {
                // SAFETY: we hold the lock; it protects no data, only the accept turn.
                unsafe { libc::pthread_mutex_consistent(lock) };
                true
            }
            _ => false,
        }
    }

    /// Releases the accept lock taken with [`SlotHandle::accept_lock`].
    pub fn accept_unlock(&self) {
        // SAFETY: called by the holder, as documented.
        unsafe { libc::pthread_mutex_unlock(self.header.accept_lock.get()) };
    }

    /// Requests handled by this worker process so far (`<wreq>` of the request log line).
    pub fn worker_requests(&self) -> u64 {
        self.slot.delta_requests.load(Ordering::Relaxed)
    }

    /// Requests handled by all workers since the master started (`<treq>`).
    pub fn total_requests(&self) -> u64 {
        self.header.total_requests.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_lock_excludes_and_survives_a_dead_holder() {
        use nix::unistd::{fork, ForkResult};
        use std::time::Duration;
        let board = Scoreboard::new(2).unwrap();
        let (one, two) = (board.handle(1), board.handle(2));
        assert!(one.accept_lock(Duration::from_millis(100)));
        // SAFETY: the child only uses the shared mapping and _exits.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                // Held by the parent: times out. Then the child takes it and dies holding it.
                let code = if two.accept_lock(Duration::from_millis(100)) {
                    1
                } else {
                    0
                };
                unsafe { libc::_exit(code) };
            }
            ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        one.accept_unlock();
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let code = if two.accept_lock(Duration::from_millis(500)) {
                    0
                } else {
                    1
                };
                unsafe { libc::_exit(code) };
            }
            ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        // The child died holding the lock: it is recovered, not deadlocked.
        assert!(one.accept_lock(Duration::from_millis(500)));
        one.accept_unlock();
    }

    #[test]
    fn request_cycle_is_visible_across_fork() {
        let board = Scoreboard::new(2).unwrap();
        let handle = board.handle(2);
        // SAFETY: the test process forks a child that only touches the shared mapping and _exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                handle.set_accepting();
                handle.request_started("GET", "/sleep?ms=1", "127.0.0.1", 2);
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).unwrap();
            }
        }
        let slot = board.slot(2);
        assert_eq!(slot.state.load(Ordering::Acquire), STATE_BUSY);
        let deadline = slot.harakiri_deadline_mono_ms.load(Ordering::Acquire);
        assert!(deadline > monotonic_ms() && deadline <= monotonic_ms() + 2000);
        let info = slot.request_info();
        assert_eq!(
            (info.method.as_str(), info.uri.as_str()),
            ("GET", "/sleep?ms=1")
        );
        assert_eq!(info.remote_addr, "127.0.0.1");
        handle.request_finished(200, 10);
        assert_eq!(slot.harakiri_deadline_mono_ms.load(Ordering::Acquire), 0);
        assert_eq!(handle.total_requests(), 1);
        assert_eq!(board.slot(1).requests.load(Ordering::Relaxed), 0);
    }
}

//! Account verifications remembered in one worker's memory, so that a request authenticated by
//! the accounts policy makes no cache round trip: an entry is trusted for at most a second (see
//! [`LOCAL_CAP`]) and not at all once the accounts [`Epoch`] of the host has moved.
//!
//! The epoch is one counter in a `MAP_SHARED` page mapped by the master before it forks, so a
//! password change or an account deletion served by any worker invalidates every worker's entries
//! before its response is sent. Other hosts sharing the cache database see it within the cap.

use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a worker trusts a verification without reading the shared cache, by default. Short,
/// because other hosts sharing the cache database only learn of a password change or an account
/// deletion when their entries age out (their epoch is their own); long enough that a busy worker
/// reads the shared cache about once a second per account instead of on every request.
pub const LOCAL_CAP: Duration = Duration::from_secs(1);

/// Entries kept at most per worker; past it the memory is cleared (a miss costs one cache read).
const MAX_ENTRIES: usize = 10_000;

/// A counter shared by every worker of one master, moved by each change that invalidates account
/// verifications. Clones (and forked children) share it.
#[derive(Clone)]
pub struct Epoch {
    cell: Arc<Cell>,
}

/// Where the counter lives: a shared anonymous mapping, or (if mapping fails) the heap, where
/// only the threads of this process see it (entries then age out within the cap elsewhere).
enum Cell {
    Mapped(NonNull<AtomicU64>),
    Heap(AtomicU64),
}

// SAFETY: the mapped counter is only accessed atomically and is unmapped only on drop.
unsafe impl Send for Cell {}
unsafe impl Sync for Cell {}

impl Drop for Cell {
    fn drop(&mut self) {
        if let Cell::Mapped(ptr) = self {
            // SAFETY: mapped in `Epoch::new` with this size, not used after drop.
            unsafe { libc::munmap(ptr.as_ptr().cast(), std::mem::size_of::<AtomicU64>()) };
        }
    }
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoch")
            .field("shared", &matches!(*self.cell, Cell::Mapped(_)))
            .field("value", &self.current())
            .finish()
    }
}

impl Default for Epoch {
    fn default() -> Self {
        Epoch::new()
    }
}

impl Epoch {
    /// A new counter at zero. Create it in the master before forking the workers that share it.
    pub fn new() -> Epoch {
        // SAFETY: a fresh anonymous mapping (one page); zeroed memory is a valid AtomicU64.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                std::mem::size_of::<AtomicU64>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let cell = match NonNull::new(ptr.cast::<AtomicU64>()) {
            Some(ptr) if ptr.as_ptr().cast() != libc::MAP_FAILED => Cell::Mapped(ptr),
            _ => Cell::Heap(AtomicU64::new(0)),
        };
        Epoch {
            cell: Arc::new(cell),
        }
    }

    /// The counter of this process, shared by every `api::App` built without an explicit epoch
    /// (applications in one process, as in tests, behave like the workers of one master).
    pub fn process() -> Epoch {
        static PROCESS: OnceLock<Epoch> = OnceLock::new();
        PROCESS.get_or_init(Epoch::new).clone()
    }

    fn counter(&self) -> &AtomicU64 {
        match &*self.cell {
            // SAFETY: valid for the life of `cell`; see the Send/Sync note.
            Cell::Mapped(ptr) => unsafe { ptr.as_ref() },
            Cell::Heap(counter) => counter,
        }
    }

    pub fn current(&self) -> u64 {
        self.counter().load(Ordering::Acquire)
    }

    /// Invalidates every worker's remembered verifications.
    pub fn bump(&self) {
        self.counter().fetch_add(1, Ordering::AcqRel);
    }
}

/// One worker's memory of verified accounts, keyed by the verification cache key.
#[derive(Debug)]
pub struct Verifications {
    epoch: Epoch,
    cap: Duration,
    entries: Mutex<HashMap<String, Entry>>,
    /// When this worker last refreshed the TTL of each shared entry: Kinto refreshes it on every
    /// hit (a cache write per request); once per half TTL keeps entries alive just as well.
    refreshed: Mutex<HashMap<String, Instant>>,
}

#[derive(Debug)]
struct Entry {
    /// HMAC of the password (as in the shared cache), never the password itself.
    expected: String,
    at: Instant,
    epoch: u64,
}

impl Verifications {
    /// `cap`: how long an entry is trusted at most (also bounded by the shared TTL).
    pub fn new(epoch: Epoch, cap: Duration) -> Verifications {
        Verifications {
            epoch,
            cap,
            entries: Mutex::default(),
            refreshed: Mutex::default(),
        }
    }

    /// The epoch to store with a verification about to be made: read before the shared cache or
    /// the database, so that a change committed meanwhile leaves the entry stale.
    pub fn epoch(&self) -> u64 {
        self.epoch.current()
    }

    /// True when `key` was verified with the same `expected` value less than `min(cap, ttl)`
    /// ago, and no invalidation happened since.
    pub fn hit(&self, key: &str, expected: &str, ttl: Duration, now: Instant) -> bool {
        let max_age = self.cap.min(ttl);
        let epoch = self.epoch.current();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).is_some_and(|entry| {
            entry.epoch == epoch
                && entry.expected == expected
                && now.saturating_duration_since(entry.at) < max_age
        })
    }

    /// Remembers a verification made at `now`, under the epoch read before it was made.
    pub fn remember(&self, key: &str, expected: String, epoch: u64, now: Instant) {
        if self.cap.is_zero() {
            return;
        }
        let entry = Entry {
            expected,
            at: now,
            epoch,
        };
        insert_bounded(&self.entries, key, entry);
    }

    /// Invalidates the verifications of every worker of this master (password changed, account
    /// deleted, cache flushed).
    pub fn invalidate(&self) {
        self.epoch.bump();
    }

    /// True (and noted) when the shared entry's TTL was not refreshed by this worker in the last
    /// half TTL.
    pub fn refresh_due(&self, key: &str, ttl: Duration, now: Instant) -> bool {
        let recent = self
            .refreshed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .is_some_and(|at| now.saturating_duration_since(*at) < ttl / 2);
        if !recent {
            self.refreshed(key, now);
        }
        !recent
    }

    /// Notes that the shared entry was just written with a full TTL.
    pub fn refreshed(&self, key: &str, now: Instant) {
        insert_bounded(&self.refreshed, key, now);
    }
}

/// Inserts into a map of at most [`MAX_ENTRIES`] keys, emptied when a new key would exceed it.
fn insert_bounded<V>(map: &Mutex<HashMap<String, V>>, key: &str, value: V) {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= MAX_ENTRIES && !map.contains_key(key) {
        map.clear();
    }
    map.insert(key.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(30);

    #[test]
    fn hits_within_the_cap_with_the_same_value_and_epoch() {
        let local = Verifications::new(Epoch::new(), LOCAL_CAP);
        let now = Instant::now();
        assert!(!local.hit("k", "v", TTL, now));
        local.remember("k", "v".into(), local.epoch(), now);
        assert!(local.hit("k", "v", TTL, now + Duration::from_millis(999)));
        assert!(!local.hit("k", "other", TTL, now));
        assert!(!local.hit("k", "v", TTL, now + LOCAL_CAP));
        // A TTL shorter than the cap bounds it.
        assert!(!local.hit(
            "k",
            "v",
            Duration::from_millis(10),
            now + Duration::from_millis(10)
        ));
    }

    #[test]
    fn an_invalidation_reaches_every_holder_of_the_epoch() {
        let epoch = Epoch::new();
        let (a, b) = (
            Verifications::new(epoch.clone(), LOCAL_CAP),
            Verifications::new(epoch, LOCAL_CAP),
        );
        let now = Instant::now();
        a.remember("k", "v".into(), a.epoch(), now);
        b.remember("k", "v".into(), b.epoch(), now);
        b.invalidate();
        assert!(!a.hit("k", "v", TTL, now));
        assert!(!b.hit("k", "v", TTL, now));
        // A verification started before an invalidation is stale once stored.
        let before = a.epoch();
        a.invalidate();
        a.remember("k", "v".into(), before, now);
        assert!(!a.hit("k", "v", TTL, now));
    }

    #[test]
    fn the_epoch_is_shared_with_forked_children() {
        let epoch = Epoch::new();
        // SAFETY: the child only bumps the counter and exits, without unwinding.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            epoch.bump();
            // SAFETY: ends the child at once (no destructors, no test harness).
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(epoch.current(), 1);
    }

    #[test]
    fn bounded_and_refreshed_once_per_half_ttl() {
        let local = Verifications::new(Epoch::new(), LOCAL_CAP);
        let now = Instant::now();
        for i in 0..=MAX_ENTRIES {
            local.remember(&i.to_string(), "v".into(), 0, now);
        }
        assert!(local.entries.lock().unwrap().len() <= MAX_ENTRIES);
        assert!(local.refresh_due("k", TTL, now));
        assert!(!local.refresh_due("k", TTL, now + TTL / 3));
        assert!(local.refresh_due("k", TTL, now + TTL / 2));
    }
}

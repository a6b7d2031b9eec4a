//! The Prometheus aggregates of all the workers of one master, in one shared memory area: a
//! fixed-size open-addressing table of series (key → count, sum) mapped `MAP_SHARED` by the master
//! before it forks, so every worker adds to the same counters and a scrape answers the same
//! totals whichever worker gets it. Respawned workers inherit the area: counters survive them.
//!
//! Lock-free: a slot is claimed with a compare-and-swap on its state, its key written, then
//! published; counts and sums are atomics. A worker killed while writing a key leaves its slot
//! claimed forever; others wait a bounded time for it, then skip it. No pointer is stored in the
//! area (each process maps it at the same address, but nothing relies on that).

use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Series kept at most; past it, new series are dropped (and counted).
pub(crate) const MAX_SERIES: usize = 10_000;
/// Slots of the table: a power of two well above [`MAX_SERIES`] so probes stay short.
const SLOTS: usize = 16_384;
/// Bytes of a series key (kind, name and rendered labels); longer keys are dropped.
const KEY_MAX: usize = 480;

const EMPTY: u32 = 0;
const CLAIMED: u32 = 1;
const READY: u32 = 2;

#[repr(C)]
struct Header {
    /// Series reserved (at most MAX_SERIES).
    series: AtomicU64,
    dropped: AtomicU64,
    /// Entries written to `Table::order`.
    published: AtomicU64,
    _pad: [u64; 5],
}

#[repr(C)]
struct Slot {
    state: AtomicU32,
    /// `len`, `hash` and `key` are written by the claimer before `state` becomes READY, and read
    /// only after.
    len: UnsafeCell<u32>,
    hash: UnsafeCell<u64>,
    count: AtomicU64,
    /// The sum as `f64` bits.
    sum: AtomicU64,
    key: UnsafeCell<[u8; KEY_MAX]>,
}

#[repr(C)]
struct Table {
    header: Header,
    /// `slot index + 1` of each series in creation order (0: not written yet), so that a scrape
    /// reads the used slots only instead of faulting in the whole table.
    order: [AtomicU32; MAX_SERIES],
    slots: [Slot; SLOTS],
}

/// The memory behind a table: a shared anonymous mapping, or (if mapping fails) the heap, which
/// still aggregates within one process.
struct Area {
    table: *mut Table,
    mapped: bool,
}

// SAFETY: the table is only accessed through atomics, or through fields written before a Release
// store and read after the matching Acquire load (see `Aggregates::add`).
unsafe impl Send for Area {}
unsafe impl Sync for Area {}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: `table` came from mmap/alloc_zeroed with this size and is not used after drop.
        unsafe {
            if self.mapped {
                libc::munmap(self.table.cast(), std::mem::size_of::<Table>());
            } else {
                std::alloc::dealloc(self.table.cast(), Layout::new::<Table>());
            }
        }
    }
}

/// A handle on one aggregation table; clones share it, and so do forked children.
#[derive(Clone)]
pub struct Aggregates {
    area: Arc<Area>,
}

impl std::fmt::Debug for Aggregates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregates")
            .field("shared", &self.area.mapped)
            .finish()
    }
}

impl Default for Aggregates {
    fn default() -> Self {
        Aggregates::new()
    }
}

impl Aggregates {
    /// A new, empty table. Create it in the master before forking the workers that share it; it
    /// creates no thread and opens no file.
    pub fn new() -> Aggregates {
        let size = std::mem::size_of::<Table>();
        // SAFETY: a fresh anonymous mapping; zeroed memory is a valid empty table.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        let area = if ptr == libc::MAP_FAILED {
            // SAFETY: non-zero size; zeroed memory is a valid empty table.
            let heap = unsafe { std::alloc::alloc_zeroed(Layout::new::<Table>()) };
            if heap.is_null() {
                std::alloc::handle_alloc_error(Layout::new::<Table>());
            }
            Area {
                table: heap.cast(),
                mapped: false,
            }
        } else {
            Area {
                table: ptr.cast(),
                mapped: true,
            }
        };
        Aggregates {
            area: Arc::new(area),
        }
    }

    /// Whether the table is shared with forked children (false only if mapping failed).
    pub fn is_shared(&self) -> bool {
        self.area.mapped
    }

    fn table(&self) -> &Table {
        // SAFETY: valid for the life of `area`; see the Send/Sync note.
        unsafe { &*self.area.table }
    }

    /// Adds `count` and `sum` to the series `key`, creating it if needed. Returns false (and
    /// counts a dropped observation) when the key is too long or the table is full.
    pub(crate) fn add(&self, key: &[u8], count: u64, sum: f64) -> bool {
        let table = self.table();
        if key.len() > KEY_MAX {
            table.header.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let hash = fnv1a(key);
        for probe in 0..SLOTS {
            let index = (hash as usize).wrapping_add(probe) % SLOTS;
            let slot = &table.slots[index];
            let mut state = slot.state.load(Ordering::Acquire);
            if state == EMPTY {
                if table.header.series.fetch_add(1, Ordering::Relaxed) >= MAX_SERIES as u64 {
                    table.header.series.fetch_sub(1, Ordering::Relaxed);
                    table.header.dropped.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                match slot.state.compare_exchange(
                    EMPTY,
                    CLAIMED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        // SAFETY: this thread owns the CLAIMED slot; nobody reads `len`, `hash`
                        // or `key` before the Release store of READY below.
                        unsafe {
                            *slot.len.get() = key.len() as u32;
                            *slot.hash.get() = hash;
                            (&mut *slot.key.get())[..key.len()].copy_from_slice(key);
                        }
                        slot.state.store(READY, Ordering::Release);
                        let n = table.header.published.fetch_add(1, Ordering::Relaxed) as usize;
                        if let Some(entry) = table.order.get(n) {
                            entry.store(index as u32 + 1, Ordering::Release);
                        }
                        state = READY;
                    }
                    Err(actual) => {
                        table.header.series.fetch_sub(1, Ordering::Relaxed);
                        state = actual;
                    }
                }
            }
            if state == CLAIMED {
                state = wait_ready(slot);
            }
            if state == READY && slot_hash(slot) == hash && slot_key(slot) == key {
                slot.count.fetch_add(count, Ordering::Relaxed);
                if sum != 0.0 {
                    add_f64(&slot.sum, sum);
                }
                return true;
            }
        }
        table.header.dropped.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Calls `f(key, count, sum)` for every series.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&[u8], u64, f64)) {
        let table = self.table();
        let published = table.header.published.load(Ordering::Relaxed) as usize;
        for entry in &table.order[..published.min(MAX_SERIES)] {
            let index = entry.load(Ordering::Acquire) as usize;
            let Some(slot) = index.checked_sub(1).and_then(|i| table.slots.get(i)) else {
                continue;
            };
            if slot.state.load(Ordering::Acquire) == READY {
                let count = slot.count.load(Ordering::Relaxed);
                let sum = f64::from_bits(slot.sum.load(Ordering::Relaxed));
                f(slot_key(slot), count, sum);
            }
        }
    }

    /// Observations dropped so far (table full or key too long).
    pub(crate) fn dropped(&self) -> u64 {
        self.table().header.dropped.load(Ordering::Relaxed)
    }
}

/// The hash of a READY slot.
fn slot_hash(slot: &Slot) -> u64 {
    // SAFETY: READY slots are never written again.
    unsafe { *slot.hash.get() }
}

/// The key of a READY slot.
fn slot_key(slot: &Slot) -> &[u8] {
    // SAFETY: READY slots are never written again.
    unsafe {
        let len = (*slot.len.get() as usize).min(KEY_MAX);
        &(&*slot.key.get())[..len]
    }
}

/// Waits (bounded) for a slot being written by another worker; its state then.
fn wait_ready(slot: &Slot) -> u32 {
    for spin in 0..10_000 {
        let state = slot.state.load(Ordering::Acquire);
        if state != CLAIMED {
            return state;
        }
        if spin < 100 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    // The writer died mid-write: the slot is skipped.
    CLAIMED
}

fn add_f64(cell: &AtomicU64, value: f64) {
    let mut current = cell.load(Ordering::Relaxed);
    loop {
        let next = (f64::from_bits(current) + value).to_bits();
        match cell.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(aggregates: &Aggregates, key: &[u8]) -> (u64, f64) {
        let mut found = (0, 0.0);
        aggregates.for_each(|k, c, s| {
            if k == key {
                found = (c, s);
            }
        });
        found
    }

    #[test]
    fn forked_children_add_to_the_same_series() {
        let aggregates = Aggregates::new();
        assert!(aggregates.is_shared());
        aggregates.add(b"c\0hits\0", 1, 0.0);
        let mut children = Vec::new();
        for _ in 0..3 {
            // SAFETY: the child only touches the shared table and exits without unwinding.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                for _ in 0..1000 {
                    aggregates.add(b"c\0hits\0", 1, 0.0);
                    aggregates.add(b"s\0t\0", 1, 0.5);
                }
                unsafe { libc::_exit(0) };
            }
            children.push(pid);
        }
        for pid in children {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert_eq!(status, 0);
        }
        assert_eq!(total(&aggregates, b"c\0hits\0"), (3001, 0.0));
        assert_eq!(total(&aggregates, b"s\0t\0"), (3000, 1500.0));
    }

    #[test]
    fn bounded_series_and_keys() {
        let aggregates = Aggregates::new();
        for i in 0..MAX_SERIES + 7 {
            aggregates.add(format!("c\0users\0{i}").as_bytes(), 1, 0.0);
        }
        assert!(!aggregates.add(&[b'x'; KEY_MAX + 1], 1, 0.0));
        assert_eq!(aggregates.dropped(), 8);
        let mut series = 0;
        aggregates.for_each(|_, c, _| {
            assert_eq!(c, 1);
            series += 1;
        });
        assert_eq!(series, MAX_SERIES);
        // Existing series still count once the table is full.
        assert!(aggregates.add(b"c\0users\x000", 1, 0.0));
        assert_eq!(total(&aggregates, b"c\0users\x000").0, 2);
    }
}

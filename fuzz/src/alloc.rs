//! A counting global allocator: how many bytes one decode call allocates, measured per
//! thread and only while the harness has armed it.
//!
//! It forwards to the system allocator. On a thread that has not armed it (every thread but
//! the fuzzing thread, and every thread of a process that never fuzzes) the only extra work
//! is one thread-local flag read per allocation. The harness arms it around each input and
//! reads the peak of live bytes the call held at once ([`Measure::peak`]) and the bytes it
//! requested in total.
//!
//! A binary or test opts in with
//! `#[global_allocator] static ALLOC: strikeflow_fuzz::CountingAlloc = strikeflow_fuzz::CountingAlloc;`
//! The harness checks that it is installed ([`installed`]) and says so when it is not,
//! rather than reporting zero allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The counting allocator (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// Live bytes allocated minus freed since arming (negative when older memory is freed).
    static LIVE: Cell<i64> = const { Cell::new(0) };
    /// Highest `LIVE` since arming.
    static PEAK: Cell<i64> = const { Cell::new(0) };
    /// Bytes requested since arming (reallocations count their growth).
    static TOTAL: Cell<u64> = const { Cell::new(0) };
    /// Largest single request since arming.
    static LARGEST: Cell<u64> = const { Cell::new(0) };
}

/// Records `delta` bytes (positive: allocated, negative: freed) on this thread if armed.
/// `try_with` because the allocator can run while the thread's locals are torn down.
#[inline]
fn record(delta: i64, requested: u64) {
    let armed = ARMED.try_with(Cell::get).unwrap_or(false);
    if !armed {
        return;
    }
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(delta);
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
    if requested > 0 {
        let _ = TOTAL.try_with(|t| t.set(t.get().saturating_add(requested)));
        let _ = LARGEST.try_with(|l| l.set(l.get().max(requested)));
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// bookkeeping only touches const-initialised, drop-free thread locals, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            record(layout.size() as i64, layout.size() as u64);
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            record(layout.size() as i64, layout.size() as u64);
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        record(-(layout.size() as i64), 0);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            let grown = new_size as i64 - layout.size() as i64;
            record(grown, grown.max(0) as u64);
        }
        new
    }
}

/// What one armed stretch of this thread allocated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measure {
    /// The most bytes held at once (beyond what the thread held when armed).
    pub peak: u64,
    /// Bytes requested in total.
    pub total: u64,
    /// The largest single request.
    pub largest: u64,
}

/// Starts counting this thread's allocations from zero.
pub fn arm() {
    LIVE.with(|c| c.set(0));
    PEAK.with(|c| c.set(0));
    TOTAL.with(|c| c.set(0));
    LARGEST.with(|c| c.set(0));
    ARMED.with(|c| c.set(true));
}

/// Stops counting and returns what was counted since [`arm`].
pub fn disarm() -> Measure {
    ARMED.with(|c| c.set(false));
    Measure {
        peak: PEAK.with(Cell::get).max(0) as u64,
        total: TOTAL.with(Cell::get),
        largest: LARGEST.with(Cell::get),
    }
}

/// Whether [`CountingAlloc`] is this process's global allocator: an armed 4 KiB allocation
/// must be seen.
pub fn installed() -> bool {
    arm();
    let probe = std::hint::black_box(vec![0u8; 4096]);
    drop(probe);
    disarm().total >= 4096
}

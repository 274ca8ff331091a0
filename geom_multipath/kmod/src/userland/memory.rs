//! `malloc(9)` in userland, with accounting: every block carries a header saying how big it is,
//! how it is aligned and whether the module asked for it, so that the tests can check that the
//! module frees everything it allocates (zero live blocks after unload), that it frees with the
//! size and alignment it allocated with, that it honours alignment, and that it never asks to
//! sleep where it may not. `M_NOWAIT` failures can be injected into the module's allocations.
//!
//! "The module" is whatever runs between the harness's call into a `gmp_rs_*` function and its
//! return, minus the fake kernel's own bookkeeping (see [`module_call`] and [`host`]). This file
//! never allocates: it is the allocator.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::alloc::System;

use crate::bindings as b;

std::thread_local! {
    static IN_MODULE: Cell<bool> = const { Cell::new(false) };
    static NO_SLEEP: Cell<u32> = const { Cell::new(0) };
    static TOPOLOGY: Cell<u32> = const { Cell::new(0) };
}

static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static TOTAL_BLOCKS: AtomicUsize = AtomicUsize::new(0);
static NOWAIT_BLOCKS: AtomicUsize = AtomicUsize::new(0);
static WAITOK_IN_NO_SLEEP: AtomicUsize = AtomicUsize::new(0);
static BAD_FREES: AtomicUsize = AtomicUsize::new(0);
static FAIL_NOWAIT: AtomicUsize = AtomicUsize::new(0);
/// Live blocks and bytes when the counters were reset: what an earlier, failed test left.
static BASE_BLOCKS: AtomicUsize = AtomicUsize::new(0);
static BASE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// What the accounting saw, for the module's blocks only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MallocStats {
    /// Blocks allocated and not freed (since the counters were reset).
    pub live_blocks: usize,
    /// Their bytes.
    pub live_bytes: usize,
    /// Blocks allocated since the counters were reset.
    pub total_blocks: usize,
    /// Of those, `M_NOWAIT` ones.
    pub nowait_blocks: usize,
    /// `M_WAITOK` requests made where the thread may not sleep (must stay 0).
    pub waitok_in_no_sleep: usize,
    /// Frees whose size or alignment differed from the allocation's (must stay 0).
    pub bad_frees: usize,
}

/// The module's allocation counters.
pub fn stats() -> MallocStats {
    MallocStats {
        live_blocks: LIVE_BLOCKS
            .load(Ordering::SeqCst)
            .saturating_sub(BASE_BLOCKS.load(Ordering::SeqCst)),
        live_bytes: LIVE_BYTES
            .load(Ordering::SeqCst)
            .saturating_sub(BASE_BYTES.load(Ordering::SeqCst)),
        total_blocks: TOTAL_BLOCKS.load(Ordering::SeqCst),
        nowait_blocks: NOWAIT_BLOCKS.load(Ordering::SeqCst),
        waitok_in_no_sleep: WAITOK_IN_NO_SLEEP.load(Ordering::SeqCst),
        bad_frees: BAD_FREES.load(Ordering::SeqCst),
    }
}

/// Resets the counters (between tests); blocks live now no longer count.
pub fn reset_counters() {
    BASE_BLOCKS.store(LIVE_BLOCKS.load(Ordering::SeqCst), Ordering::SeqCst);
    BASE_BYTES.store(LIVE_BYTES.load(Ordering::SeqCst), Ordering::SeqCst);
    TOTAL_BLOCKS.store(0, Ordering::SeqCst);
    NOWAIT_BLOCKS.store(0, Ordering::SeqCst);
    WAITOK_IN_NO_SLEEP.store(0, Ordering::SeqCst);
    BAD_FREES.store(0, Ordering::SeqCst);
    FAIL_NOWAIT.store(0, Ordering::SeqCst);
}

/// Makes the module's next `n` `M_NOWAIT` allocations fail.
pub fn fail_nowait(n: usize) {
    FAIL_NOWAIT.store(n, Ordering::SeqCst);
}

/// Runs `f` as the module: its allocations are counted as the module's.
pub fn module_call<R>(f: impl FnOnce() -> R) -> R {
    let was = IN_MODULE.with(|m| m.replace(true));
    let r = f();
    IN_MODULE.with(|m| m.set(was));
    r
}

/// Runs `f` as the fake kernel (its bookkeeping is not the module's memory).
pub fn host<R>(f: impl FnOnce() -> R) -> R {
    let was = IN_MODULE.with(|m| m.replace(false));
    let r = f();
    IN_MODULE.with(|m| m.set(was));
    r
}

/// Whether the current thread is inside a `THREAD_NO_SLEEPING` section.
pub fn no_sleep() -> bool {
    NO_SLEEP.with(|n| n.get() > 0)
}

/// Enters (`true`) or leaves (`false`) a `THREAD_NO_SLEEPING` section.
pub fn set_no_sleep(enter: bool) {
    NO_SLEEP.with(|n| n.set(if enter { n.get() + 1 } else { n.get() - 1 }));
}

/// Runs `f` inside a `THREAD_NO_SLEEPING` section (g_down, g_up).
pub fn no_sleeping<R>(f: impl FnOnce() -> R) -> R {
    set_no_sleep(true);
    let r = f();
    set_no_sleep(false);
    r
}

/// Whether the current thread holds the (fake) GEOM topology lock.
pub fn topology_held() -> bool {
    TOPOLOGY.with(|n| n.get() > 0)
}

/// Runs `f` holding the GEOM topology lock (the event thread, an ioctl, `g_access`).
pub fn with_topology<R>(f: impl FnOnce() -> R) -> R {
    if !topology_held() {
        // Waiting for the lock, when a test makes it last.
        super::sleep::point(super::sleep::SleepPoint::Topology);
    }
    TOPOLOGY.with(|n| n.set(n.get() + 1));
    let r = f();
    TOPOLOGY.with(|n| n.set(n.get() - 1));
    r
}

#[repr(C)]
struct Header {
    size: usize,
    align: usize,
    offset: usize,
    module: bool,
}

fn block_layout(size: usize, align: usize) -> Option<(Layout, usize)> {
    let align = align.max(core::mem::align_of::<Header>());
    let offset = core::mem::size_of::<Header>().next_multiple_of(align);
    let layout = Layout::from_size_align(offset.checked_add(size)?, align).ok()?;
    Some((layout, offset))
}

/// `kpi_malloc`.
pub(crate) fn malloc(size: usize, align: usize, flags: i32) -> *mut u8 {
    let module = IN_MODULE.with(Cell::get);
    let nowait = flags & b::KPI_M_NOWAIT != 0;
    if module {
        if flags & b::KPI_M_WAITOK != 0 && no_sleep() {
            WAITOK_IN_NO_SLEEP.fetch_add(1, Ordering::SeqCst);
        }
        if !nowait && !no_sleep() {
            // Waiting for free pages, when a test makes it last.
            super::sleep::point(super::sleep::SleepPoint::WaitokAlloc);
        }
        if nowait
            && FAIL_NOWAIT
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return core::ptr::null_mut();
        }
    }
    assert!(align.is_power_of_two(), "kpi_malloc: alignment {align}");
    let Some((layout, offset)) = block_layout(size, align) else {
        return core::ptr::null_mut();
    };
    // SAFETY: the layout has a non-zero size (the header).
    let raw = unsafe {
        if flags & b::KPI_M_ZERO != 0 {
            System.alloc_zeroed(layout)
        } else {
            System.alloc(layout)
        }
    };
    if raw.is_null() {
        return raw;
    }
    // SAFETY: `offset` is within the block, past room for a header, and aligned to `align`.
    let ptr = unsafe { raw.add(offset) };
    // SAFETY: the header sits right before `ptr`, inside the block, and is aligned (offset and
    // the header's size are multiples of its alignment).
    unsafe {
        ptr.cast::<Header>().sub(1).write(Header {
            size,
            align,
            offset,
            module,
        })
    };
    if module {
        LIVE_BLOCKS.fetch_add(1, Ordering::SeqCst);
        LIVE_BYTES.fetch_add(size, Ordering::SeqCst);
        TOTAL_BLOCKS.fetch_add(1, Ordering::SeqCst);
        if nowait {
            NOWAIT_BLOCKS.fetch_add(1, Ordering::SeqCst);
        }
    }
    debug_assert_eq!(ptr as usize % align, 0);
    ptr
}

/// `kpi_free`.
///
/// # Safety
/// `ptr` must come from [`malloc`] and not have been freed.
pub(crate) unsafe fn free(ptr: *mut u8, size: usize, align: usize) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: every block from malloc has its header right before the pointer.
    let header = unsafe { ptr.cast::<Header>().sub(1).read() };
    if header.size != size || header.align != align {
        BAD_FREES.fetch_add(1, Ordering::SeqCst);
    }
    if header.module {
        LIVE_BLOCKS.fetch_sub(1, Ordering::SeqCst);
        LIVE_BYTES.fetch_sub(header.size, Ordering::SeqCst);
    }
    let Some((layout, offset)) = block_layout(header.size, header.align) else {
        return;
    };
    debug_assert_eq!(offset, header.offset);
    // SAFETY: the block starts `offset` bytes before `ptr` and has this layout.
    unsafe { System.dealloc(ptr.sub(offset), layout) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;

    #[test]
    fn the_module_s_blocks_are_counted_and_the_host_s_are_not() {
        let before = stats().live_blocks;
        let leaked = module_call(|| Box::leak(Box::new([0u64; 4])));
        assert_eq!(stats().live_blocks, before + 1);
        let host_box = module_call(|| host(|| Box::new(7u8)));
        assert_eq!(
            stats().live_blocks,
            before + 1,
            "host allocations are not the module's"
        );
        drop(host_box);
        // SAFETY: `leaked` came from Box::leak above and is not used after.
        drop(unsafe { Box::from_raw(leaked) });
        assert_eq!(stats().live_blocks, before);
    }

    #[test]
    fn alignment_is_honoured_and_the_header_survives() {
        for align in [1usize, 8, 16, 64, 4096] {
            let p = malloc(24, align, b::KPI_M_WAITOK | b::KPI_M_ZERO);
            assert_eq!(p as usize % align, 0);
            // SAFETY: 24 zeroed bytes just allocated.
            assert!(unsafe { core::slice::from_raw_parts(p, 24) }
                .iter()
                .all(|&b| b == 0));
            // SAFETY: from malloc with this size and alignment.
            unsafe { free(p, 24, align) };
        }
    }
}

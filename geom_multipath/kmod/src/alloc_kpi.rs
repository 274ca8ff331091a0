//! The module's memory: a [`GlobalAlloc`] over `kpi_malloc`/`kpi_free`, and the explicit,
//! fallible allocation the data path uses.
//!
//! `malloc(9)` may sleep only where the thread may sleep. The global allocator asks
//! `kpi_can_sleep()` on every call: in the GEOM event thread, the `g_mp_kt` process and the
//! ioctl/sysctl threads it passes `M_WAITOK` (which cannot fail, as FreeBSD's own classes do);
//! inside a `THREAD_NO_SLEEPING` section (g_down, g_up, the data path's hold of the class gate)
//! it passes `M_NOWAIT`. The data path makes no infallible allocation at all: its one
//! allocation, the per-request state, goes through [`try_alloc`], which fails with `None` and
//! becomes ENOMEM for the request. Alignment is honoured by `kpi_malloc` itself.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use crate::bindings as b;
use crate::ffi::kernel;

/// The module's global allocator: `malloc(9)` under the module's own malloc type.
#[derive(Clone, Copy, Debug, Default)]
pub struct KpiAlloc;

fn wait_flag() -> i32 {
    if kernel::can_sleep() {
        b::KPI_M_WAITOK
    } else {
        b::KPI_M_NOWAIT
    }
}

// SAFETY: kpi_malloc returns memory of at least `size` bytes aligned to `align` (or null),
// which stays valid until kpi_free is called with the same size and alignment, as
// GlobalAlloc requires; it never unwinds.
unsafe impl GlobalAlloc for KpiAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: layout has a non-zero size and a power-of-two alignment (GlobalAlloc's
        // contract), which is what kpi_malloc requires.
        unsafe { kernel::malloc(layout.size(), layout.align(), wait_flag()) }.cast()
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let flags = wait_flag() | b::KPI_M_ZERO;
        // SAFETY: as in alloc.
        unsafe { kernel::malloc(layout.size(), layout.align(), flags) }.cast()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from alloc/alloc_zeroed with this layout (GlobalAlloc's contract).
        unsafe { kernel::free(ptr.cast(), layout.size(), layout.align()) }
    }
}

/// A fallible, never-sleeping allocation of one `T` (`M_NOWAIT`): `None` on ENOMEM.
pub(crate) fn try_alloc<T>(value: T) -> Option<NonNull<T>> {
    let layout = Layout::new::<T>();
    debug_assert!(layout.size() != 0);
    // SAFETY: non-zero size, power-of-two alignment.
    let raw = unsafe { kernel::malloc(layout.size(), layout.align(), b::KPI_M_NOWAIT) };
    let ptr = NonNull::new(raw.cast::<T>())?;
    // SAFETY: freshly allocated, large enough and aligned for T, and not aliased.
    unsafe { ptr.as_ptr().write(value) };
    Some(ptr)
}

/// Drops and frees what [`try_alloc`] returned.
///
/// # Safety
/// `ptr` must come from `try_alloc::<T>` and not have been freed; nothing may use it after.
pub(crate) unsafe fn free<T>(ptr: NonNull<T>) {
    let layout = Layout::new::<T>();
    // SAFETY: a live T from try_alloc, dropped exactly once (this function's contract).
    unsafe { ptr.as_ptr().drop_in_place() };
    // SAFETY: the same size and alignment try_alloc allocated with.
    unsafe { kernel::free(ptr.as_ptr().cast(), layout.size(), layout.align()) };
}

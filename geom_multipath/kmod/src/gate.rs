//! The class gate: who may touch the one [`Class`] of the module, and when.
//!
//! The module state ([`Module`]: the core's class, the kernel topology, the FIFO of deferred
//! work) lives in one static cell. It is reached only through a [`Held`], which exists only
//! while the calling thread holds the gate of `kpi.h`:
//!
//! * [`Held::enter`] (`kpi_gate_enter`) waits for the class and may sleep while holding it;
//!   every control method uses it. A GEOM method re-entered on the same thread from inside one
//!   of the class's own topology calls gets EDEADLK instead of a second, aliasing hold. (The
//!   class refuses its own providers as paths and reads taste's sector before entering, so
//!   its topology calls never reach its own methods; should one ever do, an open fails with
//!   EDEADLK, and a close, which GEOM requires to succeed, is [deferred](defer_close) to the
//!   next control method's hold, [`Held::enter_control`].)
//! * [`Held::try_enter`] (`kpi_gate_try_enter`) never waits: g_down and g_up use it and,
//!   when a control call owns the class, use their geom's direct route or hand their request
//!   to `g_mp_kt`. While it is held, the thread may not sleep.
//!
//! A hold taken with [`Held::enter`] publishes every geom's direct route as it ends
//! ([`crate::route::publish`]), so that the data path's routes never lag a finished call.
//!
//! So there is never more than one `&mut Module`, and the data path's threads never wait for
//! a control call (requests that need the class may, in `g_mp_kt`: the README's *Locking*).

use alloc::collections::VecDeque;
use core::cell::UnsafeCell;
use core::marker::PhantomData;

use geom_multipath::{Class, Deferred, Errno};

use crate::ffi::Geom;

use crate::ffi::kernel;
use crate::topology::KernelTopology;
use crate::tunables;

/// Everything the module owns.
pub(crate) struct Module {
    /// The class (every geom and path).
    pub(crate) class: Class,
    /// The kernel objects behind the class's ids.
    pub(crate) topo: KernelTopology,
    /// Deferred work the class asked for, run one item per posted GEOM event.
    pub(crate) deferred: VecDeque<Deferred>,
}

impl Module {
    /// A module with no geoms and the current tunables (`g_multipath_init`).
    pub(crate) fn new() -> Module {
        Module {
            // The module does not drive the extensions' timers, probes or queue yet.
            class: Class::new(tunables::snapshot()).untimed(),
            topo: KernelTopology::default(),
            deferred: VecDeque::new(),
        }
    }
}

struct Slot(UnsafeCell<Option<Module>>);

// SAFETY: the cell is only reached through `Held::module`/`Held::install`, and a `Held` exists
// only while its thread holds the class gate, which admits one thread at a time.
unsafe impl Sync for Slot {}

static SLOT: Slot = Slot(UnsafeCell::new(None));

/// A close of a multipath provider that arrived while this thread already held the gate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Close {
    /// The provider's geom.
    pub(crate) gp: Geom,
    /// The (negative or zero) access deltas.
    pub(crate) deltas: (i32, i32, i32),
}

struct Closes(UnsafeCell<VecDeque<Close>>);

// SAFETY: reached only by the thread that holds the gate (`defer_close` is called by the
// owner, on its own re-entry; `Held::take_closes` by a Held), one thread at a time.
unsafe impl Sync for Closes {}

static CLOSES: Closes = Closes(UnsafeCell::new(VecDeque::new()));

/// Records a close that re-entered the class on the thread that holds the gate; the next
/// [`Held::enter_control`] applies it.
///
/// # Safety
/// The calling thread holds the gate (its `kpi_gate_enter` answered EDEADLK).
pub(crate) unsafe fn defer_close(close: Close) {
    // SAFETY: this thread holds the gate (the contract), and nothing else borrows CLOSES
    // across a call that could re-enter.
    unsafe { &mut *CLOSES.0.get() }.push_back(close);
}

/// Proof that this thread holds the class gate; gives the gate back when dropped.
pub(crate) struct Held {
    try_mode: bool,
    /// A hold belongs to the thread that took it.
    _not_send: PhantomData<*mut ()>,
}

impl Held {
    /// Waits for the class (may sleep). EDEADLK if this thread already holds it.
    pub(crate) fn enter() -> Result<Held, Errno> {
        kernel::gate_enter()?;
        Ok(Held {
            try_mode: false,
            _not_send: PhantomData,
        })
    }

    /// [`enter`](Held::enter) for a control method (the topology lock held): also applies
    /// the closes that had to be deferred, which need the topology lock (`g_access`).
    pub(crate) fn enter_control() -> Result<Held, Errno> {
        let mut held = Held::enter()?;
        crate::entry::apply_deferred_closes(&mut held);
        Ok(held)
    }

    /// The oldest deferred close, if any.
    pub(crate) fn take_close(&mut self) -> Option<Close> {
        // SAFETY: this thread holds the gate (a Held exists); the borrow ends here.
        let closes = unsafe { &mut *CLOSES.0.get() };
        let close = closes.pop_front();
        if closes.is_empty() {
            // Rare; the queue keeps no memory between uses (nothing outlives the module).
            *closes = VecDeque::new();
        }
        close
    }

    /// Takes the class if it is free, without sleeping; the data path's way in.
    pub(crate) fn try_enter() -> Option<Held> {
        // Built only when taken: dropping a Held gives the gate back.
        if kernel::gate_try_enter() {
            Some(Held {
                try_mode: true,
                _not_send: PhantomData,
            })
        } else {
            None
        }
    }

    /// The module, if it is loaded, with the tunables refreshed from the sysctls.
    pub(crate) fn module(&mut self) -> Option<&mut Module> {
        // SAFETY: this thread holds the gate (a Held exists) and the returned borrow is tied to
        // `&mut self`, so no other reference to the cell's contents exists while it lives.
        let slot = unsafe { &mut *SLOT.0.get() };
        let module = slot.as_mut()?;
        *module.class.tunables_mut() = tunables::snapshot();
        Some(module)
    }

    /// Replaces the module (load and unload); returns the old one.
    pub(crate) fn install(&mut self, module: Option<Module>) -> Option<Module> {
        // SAFETY: as in `module`: the gate is held and the borrow ends here.
        let slot = unsafe { &mut *SLOT.0.get() };
        core::mem::replace(slot, module)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.try_mode {
            // Every hold that may have changed routes publishes them before the gate goes
            // (the data path's holds publish their own geom's, `io::start`).
            // SAFETY: this thread holds the gate; the borrow ends here.
            if let Some(m) = unsafe { &*SLOT.0.get() } {
                crate::route::publish(&m.class, &m.topo, None);
            }
        }
        if self.try_mode {
            // SAFETY: this Held took the gate with gate_try_enter, on this thread (not Send).
            unsafe { kernel::gate_try_exit() }
        } else {
            // SAFETY: this Held took the gate with gate_enter, on this thread (not Send).
            unsafe { kernel::gate_exit() }
        }
    }
}

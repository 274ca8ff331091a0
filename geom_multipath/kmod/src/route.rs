//! Direct routes: how a request reaches a path while a control call owns the class.
//!
//! The class decides every route, but a control method may sleep with the class in hand
//! (memory, label I/O). So that requests never wait for it, the class's own answer to "where
//! would an ordinary read or write of this geom go now" ([`Class::direct_path`]: the good
//! active path of a healthy Active/Passive geom) is published here, per geom, under the
//! *route mutex* (`kpi_route_*`, a real `mtx(9)`): a short lock its holder never sleeps,
//! allocates or calls out under. When g_down finds the gate busy it sends the request to
//! the published path itself ([`take`]); its completion in g_up gives it back ([`give_back`])
//! without the class. Only a failed attempt needs the class (`g_mp_kt` adopts it).
//!
//! The rules this module keeps:
//! * **Published after every hold.** Each hold of the class ends by publishing what changed
//!   ([`publish`], called by [`Held`](crate::gate::Held) when it gives the gate back and by
//!   the data path for its geom), and an I/O error revokes its geom's route at once in g_up
//!   ([`revoke`]), so requests go directly only where the class last said they could.
//! * **Counted until back.** Requests sent directly are counted per geom, with the path they
//!   are on; a new route to another path is published only once none is left on the old one.
//! * **Drained before the path changes under them.** Before the class drops a path's access,
//!   detaches it, or withers its geom, [`drain`] revokes the route and waits (a control
//!   method, which may sleep) until no direct request is left on that path: they complete in
//!   g_up, which needs only the route mutex, so the wait cannot close a cycle.

use alloc::vec::Vec;
use core::cell::UnsafeCell;

use geom_multipath::{Class, GeomId, PathId};

use crate::ffi::{kernel, Consumer, Geom};
use crate::topology::KernelTopology;

/// One geom's published route and its requests in flight on it.
#[derive(Clone, Copy, Debug)]
struct Entry {
    gp: Geom,
    geom: GeomId,
    /// Where new requests may go directly; `None`: through the class.
    route: Option<(PathId, Consumer)>,
    /// Direct requests in flight, all on `on`.
    inflight: u32,
    /// The path the direct requests in flight are on.
    on: Option<PathId>,
    /// Requests of this geom queued to `g_mp_kt` and not routed yet: a new one queues
    /// behind them (so none is overtaken) instead of taking the route or the class.
    waiting: u32,
}

struct Table(UnsafeCell<Vec<Entry>>);

// SAFETY: the vector is only reached through a `Locked`, which exists only while its thread
// holds the route mutex.
unsafe impl Sync for Table {}

static TABLE: Table = Table(UnsafeCell::new(Vec::new()));

/// The route mutex, held; gives it back when dropped.
struct Locked {
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl Locked {
    fn take() -> Locked {
        kernel::route_lock();
        Locked {
            _not_send: core::marker::PhantomData,
        }
    }

    fn entries(&mut self) -> &mut Vec<Entry> {
        // SAFETY: this thread holds the route mutex (a Locked exists) and the borrow is tied
        // to `&mut self`.
        unsafe { &mut *TABLE.0.get() }
    }

    fn entry(&mut self, gp: Geom) -> Option<&mut Entry> {
        self.entries().iter_mut().find(|e| e.gp == gp)
    }

    /// Sleeps until a wake-up (a direct request came back), the mutex given up meanwhile.
    fn wait(&mut self) {
        // SAFETY: held (a Locked exists); the caller is a control method, which may sleep.
        unsafe { kernel::route_wait() }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: this Locked took the mutex on this thread (not Send).
        unsafe { kernel::route_unlock() }
    }
}

/// A new geom (control method): it gets an entry, with no route yet. The table grows
/// before the mutex is taken for the insertion, so nothing is allocated under it.
pub(crate) fn add(gp: Geom, geom: GeomId) {
    let entry = Entry {
        gp,
        geom,
        route: None,
        inflight: 0,
        on: None,
        waiting: 0,
    };
    let len = {
        let mut locked = Locked::take();
        let entries = locked.entries();
        if entries.len() < entries.capacity() {
            entries.push(entry);
            return;
        }
        entries.len()
    };
    // Only control methods add and remove entries, one at a time (they hold the gate), so
    // `len` still holds when the mutex is taken again.
    let mut grown: Vec<Entry> = Vec::with_capacity(len * 2 + 4);
    {
        let mut locked = Locked::take();
        let entries = locked.entries();
        grown.append(entries);
        grown.push(entry);
        core::mem::swap(entries, &mut grown);
    }
    // The old, empty buffer is freed with the mutex given back.
    drop(grown);
}

/// The geom goes (control method): its route is drained and its entry dropped; a request
/// that still finds the geom is routed through the class.
pub(crate) fn remove(gp: Geom) {
    let emptied = {
        let mut locked = Locked::take();
        drain_locked(&mut locked, gp, None);
        let entries = locked.entries();
        if let Some(i) = entries.iter().position(|e| e.gp == gp) {
            entries.swap_remove(i);
        }
        if entries.is_empty() {
            core::mem::take(entries)
        } else {
            Vec::new()
        }
    };
    // With no geom left the table keeps no memory; it is freed with the mutex given back.
    drop(emptied);
}

/// The class goes (fini): every entry is forgotten.
pub(crate) fn clear() {
    let all = core::mem::take(Locked::take().entries());
    drop(all);
}

/// Revokes `gp`'s route and waits until no direct request is left on `path` (any path when
/// `None`). Control methods only: they may sleep.
pub(crate) fn drain(gp: Geom, path: Option<PathId>) {
    let mut locked = Locked::take();
    drain_locked(&mut locked, gp, path);
}

fn drain_locked(locked: &mut Locked, gp: Geom, path: Option<PathId>) {
    loop {
        let Some(e) = locked.entry(gp) else {
            return;
        };
        e.route = None;
        let busy = e.inflight > 0 && (path.is_none() || e.on == path);
        if !busy {
            return;
        }
        locked.wait();
    }
}

/// Revokes `gp`'s route without waiting (g_up, on an I/O error: the class will judge it).
pub(crate) fn revoke(gp: Geom) {
    let mut locked = Locked::take();
    if let Some(e) = locked.entry(gp) {
        e.route = None;
    }
}

/// g_down, gate busy: the path to send a request of `gp` to directly, counted in flight, or
/// `None` (the class must decide).
pub(crate) fn take(gp: Geom) -> Option<(GeomId, PathId, Consumer)> {
    let mut locked = Locked::take();
    let e = locked.entry(gp)?;
    let (path, cp) = e.route?;
    e.inflight += 1;
    e.on = Some(path);
    Some((e.geom, path, cp))
}

/// A direct request of `gp` is back from its path (g_up), or was never sent.
pub(crate) fn give_back(gp: Geom) {
    let mut locked = Locked::take();
    let Some(e) = locked.entry(gp) else {
        return;
    };
    debug_assert!(e.inflight > 0, "direct request count underflow");
    e.inflight = e.inflight.saturating_sub(1);
    if e.inflight == 0 {
        e.on = None;
        // SAFETY: held (a Locked exists).
        unsafe { kernel::route_wakeup() }
    }
}

/// g_down: whether earlier requests of `gp` still wait in `g_mp_kt`; `None` when `gp` is not
/// a geom of the class's (the caller then asks `g_mp_kt` about all its requests).
pub(crate) fn starts_waiting(gp: Geom) -> Option<bool> {
    Some(Locked::take().entry(gp)?.waiting > 0)
}

/// g_down queues a request of `gp` to `g_mp_kt`.
pub(crate) fn start_queued(gp: Geom) {
    if let Some(e) = Locked::take().entry(gp) {
        e.waiting += 1;
    }
}

/// `g_mp_kt` has routed (or answered) a request of `gp` that g_down queued.
pub(crate) fn start_routed(gp: Geom) {
    if let Some(e) = Locked::take().entry(gp) {
        e.waiting = e.waiting.saturating_sub(1);
    }
}

/// Publishes the class's current direct route of every geom (`only`: of that one), with
/// the mutex held only to compare and store. Called at the end of every hold of the class.
pub(crate) fn publish(class: &Class, topo: &KernelTopology, only: Option<GeomId>) {
    let mut locked = Locked::take();
    for e in locked.entries().iter_mut() {
        if only.is_some_and(|g| g != e.geom) {
            continue;
        }
        let want = class
            .direct_path(e.geom)
            .and_then(|p| topo.consumer(p).map(|cp| (p, cp)));
        e.route = match want {
            // Requests still on another path come back before a new one is published.
            Some((p, _)) if e.inflight > 0 && e.on != Some(p) => None,
            want => want,
        };
    }
}

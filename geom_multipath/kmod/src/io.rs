//! The data path: `start` (g_down), `done` (g_up) and their second halves in `g_mp_kt`.
//!
//! A request to a multipath provider carries the core's [`CoreBio`] in its `bio_driver1`,
//! allocated without sleeping when the request is first routed and freed when it is delivered.
//! Each attempt is a clone sent down one path. The core decides everything (which path, what a
//! completion means); this module only turns its answers into GEOM calls, and makes the ones
//! that pass a request on (`g_io_request`, `g_io_deliver`) *after* giving the class gate back.
//! Under the gate the data path calls only what neither sleeps nor waits for a lock a caller
//! of the class may hold: `g_clone_bio` and `g_destroy_bio` (UMA, `M_NOWAIT`), `malloc(9)`
//! `M_NOWAIT` of the request's state, and `g_post_event(M_NOWAIT)` of deferred work.
//!
//! Where each step runs, as in FreeBSD:
//! * `start` routes in g_down; if a control call owns the class it sends the request on its
//!   geom's direct route ([`crate::route`]) or, with none, queues it to `g_mp_kt`
//!   (`KPI_WORK_START`), which routes it when the class is free. While a geom's requests
//!   wait there, its later ones queue behind them: none overtakes another (a `BIO_ORDERED`
//!   one included, whose clones keep the flag).
//! * `done` of a success or an ordinary error completes in g_up. An EIO/ENXIO completion is
//!   queued to `g_mp_kt` (`KPI_WORK_DONE`), which fails the path and *reissues* the request from
//!   there, never inline in g_up. A direct attempt is given back to its route first; a
//!   success is delivered in g_up without the class, any error goes to `g_mp_kt`, where the
//!   class adopts the attempt before it judges it. So are completions that find the class busy, and those on a
//!   LOST path (whose last completion posts the path's detach, which allocates).

use core::ptr::NonNull;

use geom_multipath::{Bio as CoreBio, Done, Errno, GeomId, Op, PathId};

use crate::alloc_kpi;
use crate::bindings::kpi_work;
use crate::ffi::{kernel, result_of, Bio, Consumer};
use crate::gate::{Held, Module};
use crate::output;
use crate::route;

/// What to do with GEOM once the gate is given back.
#[derive(Debug)]
enum Action {
    /// Send a clone down a path.
    Issue(Bio, Consumer),
    /// Answer a request that has no clone in flight.
    Deliver(Bio, Errno),
    /// A clone's attempt answers its parent with this errno (0: success), after appending to
    /// a physpath answer.
    Complete(Bio, i32, Option<&'static str>),
    /// Forget a failed attempt and send a new clone down a path.
    Reissue(Bio, Bio, Consumer),
    /// Hand the bio to `g_mp_kt`.
    Queue(Bio, kpi_work),
}

impl Action {
    fn run(self) {
        match self {
            Action::Issue(clone, cp) => clone.request(cp),
            Action::Deliver(bp, error) => bp.deliver(error.0),
            Action::Complete(clone, error, append) => {
                if let (0, Some(suffix)) = (error, append) {
                    clone.attr_append(suffix);
                }
                clone.complete(error);
            }
            Action::Reissue(old, new, cp) => {
                old.retire();
                new.request(cp);
            }
            Action::Queue(bp, kind) => {
                if kind == kpi_work::KPI_WORK_START {
                    if let Some(gp) = bp.geom() {
                        route::start_queued(gp);
                    }
                }
                bp.enqueue(kind);
            }
        }
    }
}

/// A request's state in `bio_driver1`: the core's part, and the path of an attempt sent
/// directly (on a [route](crate::route)) that the class has not adopted yet.
struct Request {
    core: CoreBio,
    direct: Option<PathId>,
}

/// The request's state in `bio_driver1`.
fn state_of(bp: Bio) -> Option<NonNull<Request>> {
    NonNull::new(bp.driver1().cast::<Request>())
}

/// The request's state, allocated without sleeping; `None` on ENOMEM.
fn new_state(geom: GeomId, bp: Bio, direct: Option<PathId>) -> Option<NonNull<Request>> {
    let core = CoreBio::new(bp.token(), geom, bp.op(), bp.offset(), bp.length());
    alloc_kpi::try_alloc(Request { core, direct })
}

/// g_down: route a new request; if a control call owns the class, send it on its geom's
/// direct route, or else queue it; and queue it whenever earlier requests of its geom still
/// wait in `g_mp_kt` (g_down is one thread, so its requests stay in order).
pub(crate) fn start(bp: Bio) {
    // Behind its own geom's waiting requests only: other geoms' do not hold it up.
    let waiting = bp
        .geom()
        .and_then(route::starts_waiting)
        .unwrap_or_else(kernel::worker_starts_pending);
    if waiting {
        Action::Queue(bp, kpi_work::KPI_WORK_START).run();
        return;
    }
    let action = match Held::try_enter() {
        Some(mut held) => match held.module() {
            Some(m) => {
                let action = route(m, bp);
                if let Some(geom) = bp.geom().and_then(|gp| m.topo.geom_of(gp)) {
                    route::publish(&m.class, &m.topo, Some(geom));
                }
                action
            }
            None => Action::Deliver(bp, Errno::ENXIO),
        },
        None => start_direct(bp).unwrap_or(Action::Queue(bp, kpi_work::KPI_WORK_START)),
    };
    action.run();
}

/// A request sent on its geom's published route, without the class (a control call owns
/// it); `None` when there is no route (the request then waits for the class).
fn start_direct(bp: Bio) -> Option<Action> {
    if !matches!(bp.op(), Op::Read | Op::Write) {
        return None;
    }
    let gp = bp.geom()?;
    let (geom, path, cp) = route::take(gp)?;
    let Some(state) = new_state(geom, bp, Some(path)) else {
        route::give_back(gp);
        return Some(Action::Deliver(bp, Errno::ENOMEM));
    };
    let Some(clone) = bp.clone_request() else {
        route::give_back(gp);
        // SAFETY: just allocated and not shared.
        unsafe { alloc_kpi::free(state) };
        return Some(Action::Deliver(bp, Errno::ENOMEM));
    };
    bp.set_driver1(state.as_ptr().cast());
    Some(Action::Issue(clone, cp))
}

/// `g_mp_kt`: route a request `start` queued.
pub(crate) fn work_start(bp: Bio) {
    let gp = bp.geom();
    let action = match Held::enter() {
        Ok(mut held) => match held.module() {
            Some(m) => route(m, bp),
            None => Action::Deliver(bp, Errno::ENXIO),
        },
        Err(e) => Action::Deliver(bp, e),
    };
    action.run();
    // Only once it is on its way may later requests of its geom stop queueing behind it.
    if let Some(gp) = gp {
        route::start_routed(gp);
    }
}

/// `g_multipath_start`: allocate the request's state, clone it, and let the core choose a path.
fn route(m: &mut Module, bp: Bio) -> Action {
    let Some(geom) = bp.geom().and_then(|gp| m.topo.geom_of(gp)) else {
        return Action::Deliver(bp, Errno::ENXIO);
    };
    let Some(mut state) = new_state(geom, bp, None) else {
        return Action::Deliver(bp, Errno::ENOMEM);
    };
    let Some(clone) = bp.clone_request() else {
        // SAFETY: just allocated by try_alloc and not shared.
        unsafe { alloc_kpi::free(state) };
        return Action::Deliver(bp, Errno::ENOMEM);
    };
    // SAFETY: just allocated by try_alloc and not shared yet.
    let core = &mut unsafe { state.as_mut() }.core;
    let routed = m.class.start(core);
    output::drain(m, None);
    let error = match routed {
        Ok(path) => match m.topo.consumer(path) {
            Some(cp) => {
                bp.set_driver1(state.as_ptr().cast());
                return Action::Issue(clone, cp);
            }
            // Every path of the class has a consumer; should one be missing, the attempt
            // ends at once, through the core, so its count of requests in flight stays right.
            None => match m.class.done(core, Err(Errno::ENOMEM)) {
                Done::Deliver { result, .. } => result.err().unwrap_or(Errno::ENOMEM),
                // Only requests started with `start_or_queue` wait; this driver uses `start`.
                Done::Reissue(_) | Done::Queued => Errno::ENOMEM,
            },
        },
        Err(e) => e,
    };
    output::drain(m, None);
    clone.retire();
    // SAFETY: not stored anywhere; freed once.
    unsafe { alloc_kpi::free(state) };
    Action::Deliver(bp, error)
}

/// g_up: a clone's attempt finished.
pub(crate) fn done(clone: Bio) {
    let error = Errno(clone.error());
    if let Some(parent) = back_from_direct(clone) {
        if error.0 == 0 {
            // SAFETY: the request's state, owned by the request, whose attempt is back.
            if let Some(state) = state_of(parent) {
                parent.set_driver1(core::ptr::null_mut());
                // SAFETY: the request is answered; its state is not reachable any more.
                unsafe { alloc_kpi::free(state) };
            }
            Action::Complete(clone, 0, None).run();
        } else {
            // Any error of a direct attempt is the class's to judge, in g_mp_kt.
            if let Some(gp) = parent.geom() {
                route::revoke(gp);
            }
            clone.enqueue(kpi_work::KPI_WORK_DONE);
        }
        return;
    }
    if error.fails_path() {
        // g_multipath_done: EIO and ENXIO go to g_mp_kt. No more direct requests go to the
        // geom until the class has judged this one.
        if let Some(gp) = clone.parent().and_then(Bio::geom) {
            route::revoke(gp);
        }
        clone.enqueue(kpi_work::KPI_WORK_DONE);
        return;
    }
    let action = match Held::try_enter() {
        Some(mut held) => match held.module() {
            Some(m) if !on_lost_path(m, clone) => finish(m, clone),
            _ => Action::Queue(clone, kpi_work::KPI_WORK_DONE),
        },
        None => Action::Queue(clone, kpi_work::KPI_WORK_DONE),
    };
    action.run();
}

/// If the clone's attempt was sent directly, gives it back to its route (it is off its
/// path) and returns its parent.
fn back_from_direct(clone: Bio) -> Option<Bio> {
    let parent = clone.parent()?;
    // SAFETY: the state of a request whose one attempt has just come back; only this
    // thread touches it now.
    let direct = unsafe { state_of(parent)?.as_ref() }.direct.is_some();
    if !direct {
        return None;
    }
    if let Some(gp) = parent.geom() {
        route::give_back(gp);
    }
    Some(parent)
}

/// `g_mp_kt`: a completion `done` queued (`g_multipath_done_error` for EIO/ENXIO).
pub(crate) fn work_done(clone: Bio) {
    let action = match Held::enter() {
        Ok(mut held) => match held.module() {
            Some(m) => finish(m, clone),
            None => Action::Complete(clone, Errno::ENXIO.0, None),
        },
        Err(e) => Action::Complete(clone, e.0, None),
    };
    action.run();
}

/// Whether the clone's path is LOST (or gone): its completion may post a detach.
fn on_lost_path(m: &Module, clone: Bio) -> bool {
    let path = clone
        .parent()
        .and_then(state_of)
        // SAFETY: the state of a request with a clone in flight; only read here.
        .and_then(|state| unsafe { state.as_ref() }.core.path());
    path.and_then(|p| m.class.path(p))
        .is_none_or(|p| p.is_lost() || p.is_orphaned())
}

/// `g_multipath_done` / `g_multipath_done_error`: the core decides; deliver or reissue.
fn finish(m: &mut Module, clone: Bio) -> Action {
    let Some(parent) = clone.parent() else {
        return Action::Complete(clone, Errno::ENXIO.0, None);
    };
    let Some(mut state) = state_of(parent) else {
        return Action::Complete(clone, Errno::ENXIO.0, None);
    };
    // SAFETY: the request's state, owned by the request; this thread holds the gate and the
    // request's one attempt in flight has just come back, so nothing else touches it.
    let request = unsafe { state.as_mut() };
    let core = &mut request.core;
    let mut verdict = match request.direct.take() {
        // An attempt sent directly: the class counts it as started there, then judges it.
        Some(path) if m.class.adopt(core, path) => m.class.done(core, result_of(clone.error())),
        // Its path was detached since: the request starts afresh.
        Some(_) => match m.class.start(core) {
            Ok(path) => Done::Reissue(path),
            Err(e) => Done::Deliver {
                result: Err(e),
                append: None,
            },
        },
        None => m.class.done(core, result_of(clone.error())),
    };
    output::drain(m, Some(clone));
    if let Done::Reissue(path) = verdict {
        match (parent.clone_request(), m.topo.consumer(path)) {
            (Some(next), Some(cp)) => return Action::Reissue(clone, next, cp),
            (next, _) => {
                // The new attempt cannot be made: it ends at once with ENOMEM.
                if let Some(next) = next {
                    next.retire();
                }
                verdict = m.class.done(core, Err(Errno::ENOMEM));
                output::drain(m, Some(clone));
            }
        }
    }
    match verdict {
        Done::Deliver { result, append } => {
            parent.set_driver1(core::ptr::null_mut());
            // SAFETY: the request is answered; its state is not reachable any more.
            unsafe { alloc_kpi::free(state) };
            Action::Complete(clone, crate::ffi::errno_of(result), append)
        }
        // The core answers a reissued attempt's own failure with Deliver; a second Reissue
        // without an attempt in flight cannot happen, nor can Queued for a request started
        // with `start`.
        Done::Reissue(_) | Done::Queued => Action::Complete(clone, Errno::ENOMEM.0, None),
    }
}

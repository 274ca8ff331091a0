//! The `gmp_rs_*` entry points: what the C shim's `g_class` methods call. Each converts its
//! raw arguments into handles, takes the class gate the way its context allows, makes the
//! core's call, drains what the class said, and returns; the shim carries out nothing but
//! the return value.
//!
//! These are `unsafe extern "C"` functions: the shim calls them with live GEOM objects, in the
//! GEOM contexts named on each (the event thread with the topology lock, g_down, g_up,
//! `g_mp_kt`). Their signatures are checked against `kpi.h`'s declarations at compile time.

use core::ffi::c_char;
use core::fmt::Write as _;
use core::ptr;

use geom_multipath::ctl::CtlError;
use geom_multipath::metadata::ENCODED_LEN;
use geom_multipath::{Errno, GeomView};

use crate::bindings as b;
use crate::ctl;
use crate::ffi::kernel;
use crate::ffi::{self, Bio, Consumer, GctlReq, Geom, Provider, Sbuf};
use crate::gate::{defer_close, Close, Held, Module};
use crate::io;
use crate::output;
use crate::topology::PreRead;
use crate::tunables;

/// After a control call that may have added paths: the providers' stripe geometry follows the
/// class's (FreeBSD copies it from the first path that has one).
fn sync_stripes(m: &mut Module) {
    let class = &m.class;
    for (&id, entry) in m.topo.geoms_mut() {
        let Some(stripe) = class.geom(id).as_ref().map(GeomView::stripe) else {
            continue;
        };
        if stripe != entry.stripe {
            entry.stripe = stripe;
            entry.pp.set_stripe(stripe.0, stripe.1);
        }
    }
}

/// MOD_LOAD, before `g_modevent`: the gate and the `g_mp_kt` process, or the errno that fails
/// the load (`kproc_create` at maxproc) with nothing left behind.
///
/// # Safety
/// Called once per load by the module's event handler.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_load() -> i32 {
    ffi::errno_of(kernel::setup())
}

/// MOD_UNLOAD after the class is gone, or a load that failed after [`gmp_rs_load`]: whatever
/// of the module's life is left (normally only the gate; `g_mp_kt` and the events too if the
/// class never came to life).
///
/// # Safety
/// Called by the module's event handler, once nothing can call into the class any more.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_unload() {
    kernel::worker_stop();
    kernel::cancel_events();
    kernel::teardown();
}

/// `g_multipath_init`: the class comes to life with no geom.
///
/// # Safety
/// Called once by the shim's init method, after [`gmp_rs_load`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_init() {
    if let Ok(mut held) = Held::enter_control() {
        output::POSTED.store(0, core::sync::atomic::Ordering::Release);
        held.install(Some(Module::new()));
    }
}

/// `g_multipath_fini`: the class goes. GEOM has made sure no geom is left. In this order:
/// `g_mp_kt` drains its queues and stops (its work needs the class), the class is dropped,
/// and only then are the class's pending events cancelled, so that nothing posted by the
/// first two steps can run after the module is gone.
///
/// # Safety
/// Called once by the shim's fini method, before the gate is destroyed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_fini() {
    kernel::worker_stop();
    if let Ok(mut held) = Held::enter_control() {
        drop(held.install(None));
    }
    crate::route::clear();
    kernel::cancel_events();
    output::POSTED.store(0, core::sync::atomic::Ordering::Release);
}

/// `g_multipath_taste` (GEOM event thread, topology lock held).
///
/// # Safety
/// `pp` must be a live provider.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_taste(pp: *mut b::g_provider) -> *mut b::g_geom {
    let Some(pp) = Provider::from_raw(pp) else {
        return ptr::null_mut();
    };
    let info = pp.info();
    // The label sector is read before the class is entered: reading a multipath provider
    // opens it, which calls this class's access method.
    let ss = info.sectorsize as usize;
    let preread = (ss >= ENCODED_LEN && info.mediasize >= u64::from(info.sectorsize)).then(|| {
        let offset = info.mediasize - u64::from(info.sectorsize);
        let mut sector = alloc::vec![0u8; ss];
        let data = pp.taste_read(offset, &mut sector).map(|()| sector);
        PreRead {
            name: info.name.clone(),
            offset,
            data,
        }
    });
    let Ok(mut held) = Held::enter_control() else {
        return ptr::null_mut();
    };
    let Some(m) = held.module() else {
        return ptr::null_mut();
    };
    m.topo.preread = preread;
    m.topo.tasting = Some(pp);
    let geom = m.class.taste(&mut m.topo, &info, kernel::random());
    m.topo.tasting = None;
    m.topo.preread = None;
    output::drain(m, None);
    sync_stripes(m);
    geom.and_then(|id| m.topo.geom(id))
        .map_or(ptr::null_mut(), |e| e.gp.as_ptr())
}

/// `g_multipath_config`: every verb (GEOM event thread, topology lock held).
///
/// # Safety
/// `req` must be a live gctl request.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_ctlreq(req: *mut b::gctl_req) {
    let Some(req) = GctlReq::from_raw(req) else {
        return;
    };
    let mut request = ctl::request_from(req);
    match Held::enter_control() {
        Ok(mut held) => match held.module() {
            Some(m) => {
                m.class.ctl(&mut m.topo, &mut request);
                output::drain(m, None);
                sync_stripes(m);
            }
            None => request.error(CtlError::Other("class not loaded".into())),
        },
        Err(_) => request.error(CtlError::Other("Resource deadlock avoided".into())),
    }
    ctl::answer(req, &request);
}

/// `g_multipath_destroy_geom`, which GEOM calls for each geom when the module unloads (after
/// checking that nothing is open): the first call destroys every geom; a geom the class has
/// already withered answers 0. EBUSY while a geom remains.
///
/// # Safety
/// `gp` must be a live geom of this class.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_destroy_geom(gp: *mut b::g_geom) -> i32 {
    let Some(gp) = Geom::from_raw(gp) else {
        return Errno::EINVAL.0;
    };
    let Ok(mut held) = Held::enter_control() else {
        return b::KPI_EDEADLK;
    };
    let Some(m) = held.module() else {
        return 0;
    };
    if m.topo.geom_of(gp).is_none() {
        return 0;
    }
    let result = m.class.destroy_all(&mut m.topo);
    output::drain(m, None);
    match result {
        Err(e) => e.0,
        Ok(()) if m.topo.geom_of(gp).is_some() => Errno::EBUSY.0,
        Ok(()) => 0,
    }
}

/// `g_multipath_start` (g_down).
///
/// # Safety
/// `bp` must be a live request to a provider of this class.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_start(bp: *mut b::bio) {
    if let Some(bp) = Bio::from_raw(bp) {
        io::start(bp);
    }
}

/// `g_multipath_done` (g_up).
///
/// # Safety
/// `bp` must be a completed clone this class made.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_done(bp: *mut b::bio) {
    if let Some(bp) = Bio::from_raw(bp) {
        io::done(bp);
    }
}

/// `g_mp_kt`: a request queued by `start`.
///
/// # Safety
/// `bp` must be what the class queued with `KPI_WORK_START`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_work_start(bp: *mut b::bio) {
    if let Some(bp) = Bio::from_raw(bp) {
        io::work_start(bp);
    }
}

/// `g_mp_kt`: a completion queued by `done` (`g_multipath_done_error`).
///
/// # Safety
/// `bp` must be what the class queued with `KPI_WORK_DONE`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_work_done(bp: *mut b::bio) {
    if let Some(bp) = Bio::from_raw(bp) {
        io::work_done(bp);
    }
}

/// One posted GEOM event: runs the oldest deferred work (`g_mpd`). A cancelled event (module
/// unload, under GEOM's event mutex) only counts itself off.
///
/// # Safety
/// Called by the shim's g_post_event callback only.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_event(cancelled: bool) {
    output::event_ran();
    if cancelled {
        return;
    }
    let Ok(mut held) = Held::enter_control() else {
        return;
    };
    let Some(m) = held.module() else {
        return;
    };
    if let Some(work) = m.deferred.pop_front() {
        m.class.run_deferred(&mut m.topo, work);
    }
    output::drain(m, None);
}

/// `g_multipath_orphan` (GEOM event thread).
///
/// # Safety
/// `cp` must be a live consumer of a geom of this class.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_orphan(cp: *mut b::g_consumer) {
    let Some(cp) = Consumer::from_raw(cp) else {
        return;
    };
    let Ok(mut held) = Held::enter_control() else {
        return;
    };
    let Some(m) = held.module() else {
        return;
    };
    if let Some(path) = m.topo.path_of(cp) {
        m.class.orphan(&mut m.topo, path);
        output::drain(m, None);
    }
}

/// `g_multipath_access` (any thread holding the topology lock). A geom the class no longer
/// knows (withered) accepts closes and refuses opens. A close never fails (GEOM asserts it):
/// one that re-enters the class on the thread holding the gate is deferred to the next hold.
///
/// # Safety
/// `pp` must be a live provider of this class.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_access(pp: *mut b::g_provider, dr: i32, dw: i32, de: i32) -> i32 {
    let opening = dr > 0 || dw > 0 || de > 0;
    let unknown = if opening { Errno::ENXIO.0 } else { 0 };
    let Some(gp) = Provider::from_raw(pp).and_then(Provider::geom) else {
        return unknown;
    };
    let mut held = match Held::enter_control() {
        Ok(held) => held,
        Err(e) if opening => return e.0,
        Err(_) => {
            // SAFETY: kpi_gate_enter answers EDEADLK only to the thread that holds the gate.
            unsafe {
                defer_close(Close {
                    gp,
                    deltas: (dr, dw, de),
                })
            };
            return 0;
        }
    };
    let Some(m) = held.module() else {
        return unknown;
    };
    let Some(geom) = m.topo.geom_of(gp) else {
        return unknown;
    };
    let result = m.class.access(&mut m.topo, geom, dr, dw, de);
    output::drain(m, None);
    if opening {
        ffi::errno_of(result)
    } else {
        0
    }
}

/// Applies the closes [`gmp_rs_access`] had to defer, oldest first (called by
/// [`Held::enter_control`], with the topology lock held).
pub(crate) fn apply_deferred_closes(held: &mut Held) {
    while let Some(close) = held.take_close() {
        let Some(m) = held.module() else {
            continue;
        };
        if let Some(geom) = m.topo.geom_of(close.gp) {
            let (dr, dw, de) = close.deltas;
            let _ = m.class.access(&mut m.topo, geom, dr, dw, de);
            output::drain(m, None);
        }
    }
}

/// `g_multipath_resize` (GEOM event thread).
///
/// # Safety
/// `cp` must be a live consumer of a geom of this class.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_resize(cp: *mut b::g_consumer) {
    let Some(cp) = Consumer::from_raw(cp) else {
        return;
    };
    let Some(info) = cp.provider().map(Provider::info) else {
        return;
    };
    let Ok(mut held) = Held::enter_control() else {
        return;
    };
    let Some(m) = held.module() else {
        return;
    };
    if let Some(path) = m.topo.path_of(cp) {
        m.class.resize(&mut m.topo, path, &info);
        output::drain(m, None);
    }
}

/// `g_multipath_dumpconf` (GEOM event thread): the `<config>` innards of the geom, one of its
/// consumers, or its provider.
///
/// # Safety
/// `sb` must be a live sbuf, `indent` `indent_len` readable bytes, `gp` a live geom of this
/// class, and `cp`/`pp` null or live objects of that geom.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_dumpconf(
    sb: *mut b::sbuf,
    indent: *const c_char,
    indent_len: usize,
    gp: *mut b::g_geom,
    cp: *mut b::g_consumer,
    pp: *mut b::g_provider,
) {
    let (Some(mut sb), Some(gp)) = (Sbuf::from_raw(sb), Geom::from_raw(gp)) else {
        return;
    };
    // SAFETY: `indent` is `indent_len` readable bytes for this call (this function's contract).
    let indent = unsafe { ffi::text(indent, indent_len) };
    let (cp, pp) = (Consumer::from_raw(cp), Provider::from_raw(pp));
    // The answer is formatted on the stack under the gate, which nothing here can make sleep,
    // and only then handed to the sbuf, whose growth may sleep for memory. An answer too long
    // for the stack (only with an absurd indent) is written straight through instead.
    let mut text = output::Line::new();
    dumpconf(gp, cp, pp, indent, &mut text);
    match text.whole() {
        Some(text) => {
            let _ = sb.write_str(text);
        }
        None => dumpconf(gp, cp, pp, indent, &mut sb),
    }
}

/// The class's `<config>` innards for `gp` (or its consumer `cp`, or its provider `pp`) into
/// `out`, under the gate.
fn dumpconf(
    gp: Geom,
    cp: Option<Consumer>,
    pp: Option<Provider>,
    indent: &str,
    out: &mut dyn core::fmt::Write,
) {
    let Ok(mut held) = Held::enter_control() else {
        return;
    };
    let Some(m) = held.module() else {
        return;
    };
    let Some(geom) = m.topo.geom_of(gp) else {
        return;
    };
    let _ = if let Some(cp) = cp {
        match m.topo.path_of(cp) {
            Some(path) => m.class.dumpconf_consumer(path, indent, out),
            None => Ok(()),
        }
    } else if pp.is_some() {
        m.class.dumpconf_provider(geom, indent, out)
    } else {
        m.class.dumpconf_geom(geom, indent, out)
    };
}

/// The value of a `kern.geom.multipath.*` knob (its SYSCTL_PROC handler); 0 if unknown.
///
/// # Safety
/// None beyond being called from C; kept `unsafe` like every entry point.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_knob_get(knob: u32) -> u32 {
    tunables::get(knob).unwrap_or(0)
}

/// Sets a `kern.geom.multipath.*` knob: 0, or EINVAL out of range.
///
/// # Safety
/// None beyond being called from C; kept `unsafe` like every entry point.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gmp_rs_knob_set(knob: u32, value: u32) -> i32 {
    ffi::errno_of(tunables::set(knob, value))
}

/// The definitions above have exactly the signatures `kpi.h` declares: each is coerced to the
/// function-pointer type of bindgen's declaration.
#[allow(dead_code)]
const SIGNATURES_MATCH_KPI_H: () = {
    macro_rules! same {
        ($($name:ident($($arg:tt),*);)*) => {$(
            let _: [unsafe extern "C" fn($($arg),*) -> _; 2] = [b::$name, $name];
        )*};
    }
    same! {
        gmp_rs_load();
        gmp_rs_unload();
        gmp_rs_init();
        gmp_rs_fini();
        gmp_rs_taste(_);
        gmp_rs_ctlreq(_);
        gmp_rs_destroy_geom(_);
        gmp_rs_start(_);
        gmp_rs_done(_);
        gmp_rs_work_start(_);
        gmp_rs_work_done(_);
        gmp_rs_event(_);
        gmp_rs_orphan(_);
        gmp_rs_access(_, _, _, _);
        gmp_rs_resize(_);
        gmp_rs_dumpconf(_, _, _, _, _, _);
        gmp_rs_knob_get(_);
        gmp_rs_knob_set(_, _);
    }
};

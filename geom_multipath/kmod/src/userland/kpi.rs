//! Every `kpi_*` function of `kpi.h`, in userland, over the fake kernel of [`super::world`].
//!
//! Each behaves as its `kpi_freebsd.c` twin does with the real GEOM, down to what GEOM would
//! refuse: `g_io_request` checks the consumer's access, `g_access` applies GEOM's exclusivity
//! rules and calls the class's own access method when the provider is a multipath one,
//! completions go to a g_up queue instead of being delivered inline, `g_post_event` queues a
//! GEOM event, the gate refuses a second hold on the same thread. Rule breaks GEOM would catch
//! with a `KASSERT` or WITNESS are recorded as anomalies. Faults are injected per provider.
//!
//! The signatures are checked against bindgen's declarations at compile time, and a test
//! checks that every function `kpi.h` declares is here.

use core::ffi::{c_char, c_int, c_void};
use std::ffi::CString;
use std::format;
use std::string::String;
use std::sync::{Condvar, Mutex};
use std::thread::{self, ThreadId};
use std::vec::Vec;

use super::memory::{self, host};
use super::sleep::{self, SleepPoint};
use super::world::{world, Backing, FBio, FConsumer, FEvent, FGeom, FProvider, Handle, Work};
use super::Kernel;
use crate::bindings as b;
use crate::bindings::{bio, g_consumer, g_geom, g_provider, gctl_req, sbuf};

const EPERM: i32 = 1;
const ENXIO: i32 = 6;
const EOPNOTSUPP: i32 = 45;

fn handle<T>(ptr: *const T) -> Handle {
    ptr as usize
}

fn pointer<T>(h: Option<Handle>) -> *mut T {
    h.map_or(core::ptr::null_mut(), |h| h as *mut T)
}

/// The module's (pointer, length) text.
///
/// # Safety
/// A non-null `ptr` must point at `len` readable bytes.
unsafe fn text(ptr: *const c_char, len: usize) -> String {
    // kpi_freebsd.c prints these with "%.*s", whose precision is an int.
    require(i32::try_from(len).is_ok(), || {
        format!("text of {len} bytes passed to C: \"%.*s\" would take a negative precision")
    });
    if ptr.is_null() || len == 0 {
        return String::new();
    }
    // SAFETY: forwarded from this function's contract.
    let bytes = unsafe { core::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    String::from_utf8_lossy(bytes).into_owned()
}

/// Records a rule break unless the condition holds.
fn require(ok: bool, what: impl FnOnce() -> String) {
    if !ok {
        let what = what();
        world().anomaly(what);
    }
}

fn may_sleep(function: &str) {
    require(!memory::no_sleep(), || {
        format!("{function} may sleep, called where sleeping is forbidden")
    });
}

fn topology(function: &str) {
    require(memory::topology_held(), || {
        format!("{function} without the topology lock")
    });
}

// ----- memory ------------------------------------------------------------------------------

/// `kpi_malloc`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_malloc(size: usize, align: usize, flags: c_int) -> *mut c_void {
    memory::malloc(size, align, flags).cast()
}

/// `kpi_free`.
///
/// # Safety
/// `ptr` must come from `kpi_malloc` with this size and alignment.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kpi_free(ptr: *mut c_void, size: usize, align: usize) {
    // SAFETY: forwarded from this function's contract.
    unsafe { memory::free(ptr.cast(), size, align) }
}

/// `kpi_can_sleep`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_can_sleep() -> bool {
    !memory::no_sleep()
}

// ----- console, panic, randomness ----------------------------------------------------------

/// `kpi_log`: one console line.
///
/// # Safety
/// `msg` must be `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kpi_log(_level: b::kpi_log_level, msg: *const c_char, len: usize) {
    host(|| {
        // SAFETY: forwarded from this function's contract.
        let line = unsafe { text(msg, len) };
        if std::env::var_os("GMP_TRACE").is_some() {
            std::eprintln!("{line}");
        }
        world().console.push(line);
    })
}

/// `kpi_panic`: a Rust panic (which aborts the test, as panic(9) stops the kernel).
///
/// # Safety
/// `msg` must be `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kpi_panic(msg: *const c_char, len: usize) -> ! {
    // SAFETY: forwarded from this function's contract.
    let message = unsafe { text(msg, len) };
    panic!("kpi_panic: {message}")
}

/// `kpi_random`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_random() -> u32 {
    host(|| world().random)
}

// ----- the class gate ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Gate {
    owner: Option<ThreadId>,
    try_mode: bool,
}

static GATE: Mutex<Gate> = Mutex::new(Gate {
    owner: None,
    try_mode: false,
});
static GATE_FREE: Condvar = Condvar::new();
static GATE_BUSY: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// How many times the data path found the class busy (and handed its request to `g_mp_kt`).
pub fn gate_busy_count() -> usize {
    GATE_BUSY.load(core::sync::atomic::Ordering::Relaxed)
}

/// `kpi_gate_enter`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_gate_enter() -> c_int {
    host(|| {
        may_sleep("kpi_gate_enter");
        let me = thread::current().id();
        let mut gate = GATE.lock().unwrap_or_else(|e| e.into_inner());
        if gate.owner == Some(me) {
            return b::KPI_EDEADLK;
        }
        while gate.owner.is_some() {
            gate = GATE_FREE.wait(gate).unwrap_or_else(|e| e.into_inner());
        }
        gate.owner = Some(me);
        gate.try_mode = false;
        HOLDS_GATE.with(|h| h.set(true));
        0
    })
}

/// `kpi_gate_exit`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_gate_exit() {
    host(|| {
        let me = thread::current().id();
        let mut gate = GATE.lock().unwrap_or_else(|e| e.into_inner());
        let ok = gate.owner == Some(me) && !gate.try_mode;
        gate.owner = None;
        HOLDS_GATE.with(|h| h.set(false));
        drop(gate);
        GATE_FREE.notify_all();
        require(ok, || String::from("kpi_gate_exit without kpi_gate_enter"));
    })
}

/// `kpi_gate_try_enter`: the mutex is taken and the thread may not sleep until the exit.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_gate_try_enter() -> bool {
    host(|| {
        let me = thread::current().id();
        let mut gate = GATE.lock().unwrap_or_else(|e| e.into_inner());
        if gate.owner.is_some() {
            GATE_BUSY.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            return false;
        }
        gate.owner = Some(me);
        gate.try_mode = true;
        HOLDS_GATE.with(|h| h.set(true));
        memory::set_no_sleep(true);
        true
    })
}

/// `kpi_gate_try_exit`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_gate_try_exit() {
    host(|| {
        let me = thread::current().id();
        let mut gate = GATE.lock().unwrap_or_else(|e| e.into_inner());
        let ok = gate.owner == Some(me) && gate.try_mode;
        gate.owner = None;
        HOLDS_GATE.with(|h| h.set(false));
        drop(gate);
        memory::set_no_sleep(false);
        GATE_FREE.notify_all();
        require(ok, || {
            String::from("kpi_gate_try_exit without kpi_gate_try_enter")
        });
    })
}

// ----- the route mutex ------------------------------------------------------------------

/// Who holds the fake route mutex.
static ROUTE: Mutex<Option<thread::ThreadId>> = Mutex::new(None);
/// Signalled when the route mutex is given back.
static ROUTE_FREE: Condvar = Condvar::new();
/// `kpi_route_wait` sleepers wait here (their channel).
static ROUTE_WAKE: Condvar = Condvar::new();

/// Threads asleep in `kpi_route_wait` (a control method draining a path's direct requests).
static ROUTE_SLEEPERS: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// How many threads sleep in `kpi_route_wait` now.
pub fn route_sleepers() -> usize {
    ROUTE_SLEEPERS.load(core::sync::atomic::Ordering::SeqCst)
}

/// A new machine: nobody holds the route mutex (a failed test may have left it held).
pub(crate) fn reset_route() {
    *ROUTE.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// `kpi_route_lock`: a mutex; its holder may not sleep until the unlock.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_route_lock() {
    host(|| {
        let me = thread::current().id();
        let mut owner = ROUTE.lock().unwrap_or_else(|e| e.into_inner());
        require(*owner != Some(me), || {
            String::from("kpi_route_lock: recursed")
        });
        while owner.is_some() {
            owner = ROUTE_FREE.wait(owner).unwrap_or_else(|e| e.into_inner());
        }
        *owner = Some(me);
        memory::set_no_sleep(true);
    })
}

/// `kpi_route_unlock`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_route_unlock() {
    host(|| {
        let me = thread::current().id();
        let mut owner = ROUTE.lock().unwrap_or_else(|e| e.into_inner());
        let ok = *owner == Some(me);
        *owner = None;
        drop(owner);
        memory::set_no_sleep(false);
        ROUTE_FREE.notify_all();
        require(ok, || {
            String::from("kpi_route_unlock without kpi_route_lock")
        });
    })
}

/// `kpi_route_wait`: `msleep` on the route mutex: gives it up, sleeps until a wake-up,
/// takes it back. Only where sleeping is allowed (apart from the mutex itself).
#[unsafe(no_mangle)]
pub extern "C" fn kpi_route_wait() {
    host(|| {
        let me = thread::current().id();
        let mut owner = ROUTE.lock().unwrap_or_else(|e| e.into_inner());
        require(*owner == Some(me), || {
            String::from("kpi_route_wait without the route mutex")
        });
        memory::set_no_sleep(false);
        may_sleep("kpi_route_wait");
        *owner = None;
        ROUTE_FREE.notify_all();
        // A wait nothing will end (a test that drives g_up on this very thread) is a broken
        // rule, not a hung suite.
        ROUTE_SLEEPERS.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
        let (next, waited) = ROUTE_WAKE
            .wait_timeout(owner, std::time::Duration::from_secs(30))
            .unwrap_or_else(|e| e.into_inner());
        owner = next;
        ROUTE_SLEEPERS.fetch_sub(1, core::sync::atomic::Ordering::SeqCst);
        require(!waited.timed_out(), || {
            String::from("kpi_route_wait: nothing woke it in 30 s")
        });
        while owner.is_some() {
            owner = ROUTE_FREE.wait(owner).unwrap_or_else(|e| e.into_inner());
        }
        *owner = Some(me);
        memory::set_no_sleep(true);
    })
}

/// `kpi_route_wakeup`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_route_wakeup() {
    host(|| {
        let me = thread::current().id();
        let owner = ROUTE.lock().unwrap_or_else(|e| e.into_inner());
        require(*owner == Some(me), || {
            String::from("kpi_route_wakeup without the route mutex")
        });
        drop(owner);
        ROUTE_WAKE.notify_all();
    })
}

std::thread_local! {
    /// This thread holds the gate (kept beside `Gate::owner` so that the allocator can ask
    /// without locking or allocating).
    static HOLDS_GATE: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Whether this thread holds the gate.
pub(crate) fn gate_owned_here() -> bool {
    HOLDS_GATE.with(core::cell::Cell::get)
}

/// Whether any thread holds the gate (for the harness).
pub(crate) fn gate_held() -> bool {
    GATE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .owner
        .is_some()
}

// ----- deferred work ----------------------------------------------------------------------------

/// `kpi_post_event`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_post_event(flags: c_int) -> c_int {
    host(|| {
        if flags & b::KPI_M_WAITOK != 0 {
            may_sleep("kpi_post_event(M_WAITOK)");
        }
        let mut w = world();
        if w.life.events_cancelled || !w.life.set_up {
            w.anomaly(String::from(
                "kpi_post_event after the class's events were cancelled",
            ));
        }
        w.events.push_back(FEvent::Ours);
        0
    })
}

/// `kpi_worker_starts_pending`: requests queued to `g_mp_kt` and not routed yet (the fake
/// `g_mp_kt` routes each within one `run_worker`, so queued is all there is).
#[unsafe(no_mangle)]
pub extern "C" fn kpi_worker_starts_pending() -> bool {
    host(|| world().worker.iter().any(|(_, kind)| *kind == Work::Start))
}

// ----- the module's life ----------------------------------------------------------------------

/// `kpi_setup`: the gate and `g_mp_kt` (`kproc_create` fails as the world says).
#[unsafe(no_mangle)]
pub extern "C" fn kpi_setup() -> c_int {
    host(|| {
        let mut w = world();
        w.lifecycle.push("setup");
        if w.life.set_up {
            w.anomaly(String::from("kpi_setup twice"));
        }
        if w.kproc_error != 0 {
            return w.kproc_error;
        }
        w.life = super::world::Life {
            set_up: true,
            worker: true,
            events_cancelled: false,
        };
        0
    })
}

/// `kpi_worker_stop`: `g_mp_kt` drains its queue (on this thread, as the real one does on
/// its own while the caller waits) and stops.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_worker_stop() {
    let running = host(|| {
        let mut w = world();
        w.lifecycle.push("worker_stop");
        w.life.worker
    });
    if !running {
        return;
    }
    may_sleep("kpi_worker_stop");
    while super::run_worker() {}
    host(|| world().life.worker = false);
}

/// `kpi_cancel_events`: each pending class event runs its callback with EV_CANCEL, now.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_cancel_events() {
    let pending = host(|| {
        let mut w = world();
        w.lifecycle.push("cancel_events");
        w.life.events_cancelled = true;
        let n = w.events.iter().filter(|e| **e == FEvent::Ours).count();
        w.events.retain(|e| *e != FEvent::Ours);
        n
    });
    for _ in 0..pending {
        // SAFETY: the callback of an event the module posted, cancelled.
        unsafe { crate::entry::gmp_rs_event(true) };
    }
}

/// `kpi_teardown`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_teardown() {
    let worker = host(|| {
        let mut w = world();
        w.lifecycle.push("teardown");
        w.life.worker
    });
    if worker {
        kpi_worker_stop();
    }
    host(|| world().life.set_up = false);
}

/// `kpi_worker_enqueue`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_worker_enqueue(bp: *mut bio, kind: b::kpi_work) {
    host(|| {
        let mut w = world();
        if !w.life.worker {
            w.anomaly(String::from(
                "kpi_worker_enqueue while g_mp_kt is not running",
            ));
        }
        let bp = handle(bp);
        if !w.bios.contains_key(&bp) {
            w.anomaly(format!("kpi_worker_enqueue of unknown bio {bp:#x}"));
            return;
        }
        let kind = match kind {
            b::kpi_work::KPI_WORK_START => Work::Start,
            b::kpi_work::KPI_WORK_DONE => Work::Done,
        };
        w.worker.push_back((bp, kind));
    })
}

// ----- DTrace --------------------------------------------------------------------------------------

/// `kpi_sdt_config`.
///
/// # Safety
/// `a` and `b` must be readable for their lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kpi_sdt_config(
    probe: b::kpi_sdt_config,
    a: *const c_char,
    alen: usize,
    bb: *const c_char,
    blen: usize,
    error: c_int,
) {
    host(|| {
        // SAFETY: forwarded from this function's contract.
        let (a, bb) = unsafe { (text(a, alen), text(bb, blen)) };
        let line = match probe {
            b::kpi_sdt_config::KPI_SDT_RESTORE => format!("config:restore({a},{bb})"),
            b::kpi_sdt_config::KPI_SDT_REMOVE => format!("config:remove({a},{bb})"),
            b::kpi_sdt_config::KPI_SDT_DISCONNECT => format!("config:disconnect({a},{bb})"),
            b::kpi_sdt_config::KPI_SDT_FAIL => format!("config:fail({a},{bb},{error})"),
            b::kpi_sdt_config::KPI_SDT_TASTE => format!("config:taste({a},{bb})"),
        };
        world().probes.push(line);
    })
}

/// `kpi_sdt_restart`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_sdt_restart(child: *mut bio, parent: *mut bio) {
    host(|| {
        let mut w = world();
        let (child, parent) = (handle(child), handle(parent));
        let ok = w.bios.get(&child).is_some_and(|c| c.parent == Some(parent));
        w.probes.push(format!("io:restart({child:#x},{parent:#x})"));
        if !ok {
            w.anomaly(format!(
                "io:restart({child:#x},{parent:#x}): not a clone of that parent"
            ));
        }
    })
}

// ----- bios ----------------------------------------------------------------------------------------

fn bio_field<R>(bp: *const bio, what: &str, f: impl FnOnce(&FBio) -> R) -> Option<R> {
    host(|| {
        let mut w = world();
        match w.bios.get(&handle(bp)) {
            Some(b) => Some(f(b)),
            None => {
                w.anomaly(format!("{what} of unknown bio {:#x}", handle(bp)));
                None
            }
        }
    })
}

/// `kpi_bio_cmd`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_bio_cmd(bp: *const bio) -> u16 {
    bio_field(bp, "kpi_bio_cmd", |b| b.cmd).unwrap_or(0)
}

/// `kpi_bio_offset`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_bio_offset(bp: *const bio) -> u64 {
    bio_field(bp, "kpi_bio_offset", |b| b.offset).unwrap_or(0)
}

/// `kpi_bio_length`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_bio_length(bp: *const bio) -> u64 {
    bio_field(bp, "kpi_bio_length", |b| b.length).unwrap_or(0)
}

/// `kpi_bio_error`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_bio_error(bp: *const bio) -> c_int {
    bio_field(bp, "kpi_bio_error", |b| b.error).unwrap_or(ENXIO)
}

/// `kpi_bio_attribute`.
///
/// # Safety
/// `attr` must be a writable place.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kpi_bio_attribute(bp: *const bio, attr: *mut *const c_char) -> usize {
    let found = bio_field(bp, "kpi_bio_attribute", |b| {
        b.attribute
            .as_ref()
            .map(|a| (a.as_ptr(), a.as_bytes().len()))
    });
    let (ptr, len) = found.flatten().unwrap_or((core::ptr::null(), 0));
    // SAFETY: `attr` is writable (this function's contract). The string lives in the bio's
    // CString, whose buffer does not move while the bio lives.
    unsafe { attr.write(ptr) };
    len
}

/// `kpi_bio_parent`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_bio_parent(bp: *const bio) -> *mut bio {
    pointer(bio_field(bp, "kpi_bio_parent", |b| b.parent).flatten())
}

/// `kpi_bio_geom`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_bio_geom(bp: *const bio) -> *mut g_geom {
    host(|| {
        let w = world();
        let to = w.bios.get(&handle(bp)).and_then(|b| b.to);
        pointer(to.and_then(|pp| w.providers.get(&pp)).and_then(|p| p.geom))
    })
}

/// `kpi_bio_driver1`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_bio_driver1(bp: *const bio) -> *mut c_void {
    bio_field(bp, "kpi_bio_driver1", |b| b.driver1).unwrap_or(0) as *mut c_void
}

/// `kpi_bio_set_driver1`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_bio_set_driver1(bp: *mut bio, state: *mut c_void) {
    host(|| {
        let mut w = world();
        match w.bios.get_mut(&handle(bp)) {
            Some(b) => b.driver1 = state as usize,
            None => w.anomaly(format!(
                "kpi_bio_set_driver1 of unknown bio {:#x}",
                handle(bp)
            )),
        }
    })
}

/// `kpi_bio_clone`: `g_clone_bio`; fails when told to.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_bio_clone(bp: *mut bio) -> *mut bio {
    host(|| {
        let mut w = world();
        let parent = handle(bp);
        if w.fail_clone > 0 {
            w.fail_clone -= 1;
            return core::ptr::null_mut();
        }
        let Some(p) = w.bios.get_mut(&parent) else {
            w.anomaly(format!("kpi_bio_clone of unknown bio {parent:#x}"));
            return core::ptr::null_mut();
        };
        p.children += 1;
        let clone = FBio {
            cmd: p.cmd,
            offset: p.offset,
            length: p.length,
            attribute: p.attribute.clone(),
            parent: Some(parent),
            ..FBio::default()
        };
        let h = w.handle();
        w.bios.insert(h, clone);
        h as *mut bio
    })
}

/// What a disk provider answers to one request (the provider's `start` and `biodone`).
fn serve(w: &mut super::world::World, cbp: Handle, pp: Handle) -> (i32, u64) {
    let Some(p) = w.providers.get(&pp).cloned() else {
        return (ENXIO, 0);
    };
    if p.error != 0 {
        return (p.error, 0);
    }
    if let Some(e) = w.io_fault(&p.name) {
        return (e, 0);
    }
    let Some(c) = w.bios.get(&cbp).cloned() else {
        return (ENXIO, 0);
    };
    let root = w.root(cbp);
    let mut data = std::mem::take(&mut w.bios.get_mut(&root).expect("root bio").data);
    let len = usize::try_from(c.length)
        .unwrap_or(usize::MAX)
        .min(data.len());
    let answer = match (p.backing, i32::from(c.cmd)) {
        (Backing::Multipath(_), _) => {
            w.anomaly(format!(
                "I/O through multipath provider {} is not emulated",
                p.name
            ));
            (ENXIO, 0)
        }
        (Backing::Disk(d), b::KPI_BIO_READ) => {
            let e = w.disk_io(d, false, c.offset, &mut data[..len]);
            (e, if e == 0 { c.length } else { 0 })
        }
        (Backing::Disk(d), b::KPI_BIO_WRITE) => {
            let e = w.disk_io(d, true, c.offset, &mut data[..len]);
            (e, if e == 0 { c.length } else { 0 })
        }
        (Backing::Disk(_), b::KPI_BIO_DELETE | b::KPI_BIO_FLUSH) => (0, c.length),
        (Backing::Disk(_), b::KPI_BIO_GETATTR) => {
            let physpath = c
                .attribute
                .as_ref()
                .is_some_and(|a| a.as_bytes() == b"GEOM::physpath");
            if physpath && !data.is_empty() {
                let n = p.physpath.len().min(data.len() - 1);
                data[..n].copy_from_slice(&p.physpath.as_bytes()[..n]);
                data[n] = 0;
                (0, n as u64 + 1)
            } else {
                (EOPNOTSUPP, 0)
            }
        }
        _ => (EOPNOTSUPP, 0),
    };
    w.bios.get_mut(&root).expect("root bio").data = data;
    answer
}

/// `kpi_bio_request`: `g_io_request` of a clone; the answer waits on the g_up queue.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_bio_request(cbp: *mut bio, cp: *mut g_consumer) {
    host(|| {
        let mut w = world();
        let (cbp, cp) = (handle(cbp), handle(cp));
        let Some(c) = w.consumers.get(&cp).cloned() else {
            w.anomaly(format!("kpi_bio_request on unknown consumer {cp:#x}"));
            return;
        };
        let Some(pp) = c.provider else {
            w.anomaly(format!("kpi_bio_request on detached consumer {cp:#x}"));
            return;
        };
        let Some(bio) = w.bios.get_mut(&cbp) else {
            w.anomaly(format!("kpi_bio_request of unknown bio {cbp:#x}"));
            return;
        };
        if bio.in_flight || bio.parent.is_none() {
            w.anomaly(format!(
                "kpi_bio_request of bio {cbp:#x}: in flight or not a clone"
            ));
            return;
        }
        bio.in_flight = true;
        bio.from = Some(cp);
        bio.to = Some(pp);
        let cmd = i32::from(bio.cmd);
        let offset = bio.offset;
        w.issued_offsets.push(offset);
        let name = w
            .providers
            .get(&pp)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        w.issued.push((cbp, name.clone()));
        // g_io_check: the consumer must hold the access the command needs.
        let needs_write = matches!(cmd, b::KPI_BIO_WRITE | b::KPI_BIO_DELETE | b::KPI_BIO_FLUSH);
        let (error, completed) = if (needs_write && c.acw == 0) || (!needs_write && c.acr == 0) {
            w.anomaly(format!("request on {name} without the access it needs"));
            (EPERM, 0)
        } else {
            serve(&mut w, cbp, pp)
        };
        let bio = w.bios.get_mut(&cbp).expect("clone");
        bio.error = error;
        bio.completed = completed;
        if w.faults.get(&name).is_some_and(|f| f.hold) {
            w.held.push(cbp);
        } else {
            w.up.push_back(cbp);
        }
    })
}

/// Removes a clone that is home, counting it in its parent. Returns its parent.
fn home(w: &mut super::world::World, cbp: Handle, what: &str) -> Option<(Handle, FBio)> {
    let Some(c) = w.bios.remove(&cbp) else {
        w.anomaly(format!("{what} of unknown bio {cbp:#x}"));
        return None;
    };
    if c.in_flight {
        w.anomaly(format!("{what} of bio {cbp:#x} still in flight"));
    }
    let Some(parent) = c.parent else {
        w.anomaly(format!("{what} of bio {cbp:#x}, which is not a clone"));
        return None;
    };
    match w.bios.get_mut(&parent) {
        Some(p) => p.inbed += 1,
        None => w.anomaly(format!("{what}: parent {parent:#x} is gone")),
    }
    Some((parent, c))
}

/// `g_io_deliver` of a request.
fn deliver(w: &mut super::world::World, bp: Handle, error: i32) {
    let Some(b) = w.bios.get_mut(&bp) else {
        w.anomaly(format!("delivery of unknown bio {bp:#x}"));
        return;
    };
    b.error = error;
    b.delivered += 1;
    let (delivered, children, inbed, parent) = (b.delivered, b.children, b.inbed, b.parent);
    if delivered > 1 {
        w.anomaly(format!("bio {bp:#x} delivered {delivered} times"));
    }
    if children != inbed {
        w.anomaly(format!(
            "bio {bp:#x} delivered with {} clone(s) out",
            children - inbed
        ));
    }
    if parent.is_some() {
        w.anomaly(format!("clone {bp:#x} delivered like a request"));
    }
}

/// `kpi_bio_retire`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_bio_retire(cbp: *mut bio) {
    host(|| {
        home(&mut world(), handle(cbp), "kpi_bio_retire");
    })
}

/// `kpi_bio_complete`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_bio_complete(cbp: *mut bio, error: c_int) {
    host(|| {
        let mut w = world();
        if let Some((parent, c)) = home(&mut w, handle(cbp), "kpi_bio_complete") {
            if let Some(p) = w.bios.get_mut(&parent) {
                p.completed += c.completed;
            }
            deliver(&mut w, parent, error);
        }
    })
}

/// `kpi_bio_deliver`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_bio_deliver(bp: *mut bio, error: c_int) {
    host(|| deliver(&mut world(), handle(bp), error))
}

/// `kpi_bio_attr_append`: `strlcat` into the answer.
///
/// # Safety
/// `s` must be `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kpi_bio_attr_append(bp: *mut bio, s: *const c_char, len: usize) {
    host(|| {
        // SAFETY: forwarded from this function's contract.
        let suffix = unsafe { text(s, len) };
        let mut w = world();
        let root = w.root(handle(bp));
        let Some(b) = w.bios.get_mut(&root) else {
            return;
        };
        let size = b.data.len();
        let end = b.data.iter().position(|&c| c == 0).unwrap_or(size);
        let n = suffix.len().min(size.saturating_sub(end + 1));
        b.data[end..end + n].copy_from_slice(&suffix.as_bytes()[..n]);
        if end + n < size {
            b.data[end + n] = 0;
        }
    })
}

// ----- consumers -------------------------------------------------------------------------------------

/// `kpi_cp_provider`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_cp_provider(cp: *const g_consumer) -> *mut g_provider {
    host(|| pointer(world().consumers.get(&handle(cp)).and_then(|c| c.provider)))
}

/// `g_access` as GEOM does it: the rules, then the provider's geom's access method (the
/// module's, for a multipath provider), then the counts.
pub(crate) fn g_access(cp: Handle, dr: i32, dw: i32, de: i32) -> i32 {
    let (pp, multipath, fault) = {
        let mut w = world();
        let Some(pp) = w.consumers.get(&cp).and_then(|c| c.provider) else {
            w.anomaly(format!("g_access on detached consumer {cp:#x}"));
            return ENXIO;
        };
        let p = &w.providers[&pp];
        let multipath = matches!(p.backing, Backing::Multipath(_));
        let raising = dr > 0 || dw > 0 || de > 0;
        let fault = w
            .faults
            .get(&p.name)
            .and_then(|f| f.access)
            .filter(|_| raising);
        match w.access_allowed(cp, dr, dw, de) {
            Ok(()) => {}
            Err(-1) => {
                w.anomaly(format!("g_access({cp:#x}, {dr}, {dw}, {de}) below zero"));
                return EPERM;
            }
            Err(e) => return e,
        }
        (pp, multipath, fault)
    };
    if let Some(e) = fault {
        return e;
    }
    if multipath {
        let error = Kernel::call(|| {
            // SAFETY: `pp` is a live multipath provider of the module.
            unsafe { crate::entry::gmp_rs_access(pp as *mut g_provider, dr, dw, de) }
        });
        if error != 0 {
            return error;
        }
    }
    world().apply_access(cp, dr, dw, de);
    0
}

/// `kpi_cp_access`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_cp_access(cp: *mut g_consumer, dr: c_int, dw: c_int, de: c_int) -> c_int {
    host(|| {
        topology("kpi_cp_access");
        may_sleep("kpi_cp_access");
        g_access(handle(cp), dr, dw, de)
    })
}

/// `g_read_data`/`g_write_data` on a path.
fn data_io(cp: Handle, write: bool, offset: u64, buf: &mut [u8]) -> i32 {
    let what = if write { "kpi_cp_write" } else { "kpi_cp_read" };
    topology(what);
    may_sleep(what);
    // The I/O, the topology lock kept.
    sleep::point(SleepPoint::LabelIo);
    let mut w = world();
    let Some(c) = w.consumers.get(&cp).cloned() else {
        w.anomaly(format!("{what} on unknown consumer {cp:#x}"));
        return ENXIO;
    };
    let Some(p) = c.provider.and_then(|pp| w.providers.get(&pp)).cloned() else {
        return ENXIO;
    };
    if (write && c.acw == 0) || (!write && c.acr == 0) {
        w.anomaly(format!("{what} on {} without access", p.name));
        return EPERM;
    }
    if p.error != 0 {
        return p.error;
    }
    if let Some(e) = w.faults.get(&p.name).and_then(|f| f.data) {
        return e;
    }
    match p.backing {
        Backing::Disk(d) => w.disk_io(d, write, offset, buf),
        Backing::Multipath(_) => {
            w.anomaly(format!(
                "{what} through multipath provider {} would deadlock",
                p.name
            ));
            ENXIO
        }
    }
}

/// `kpi_cp_read`.
///
/// # Safety
/// `buf` must be `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kpi_cp_read(
    cp: *mut g_consumer,
    offset: u64,
    buf: *mut c_void,
    len: usize,
) -> c_int {
    let mut data = host(|| std::vec![0u8; len]);
    let error = host(|| data_io(handle(cp), false, offset, &mut data));
    if error == 0 && len > 0 {
        // SAFETY: `buf` is `len` writable bytes (this function's contract).
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), buf.cast::<u8>(), len) };
    }
    host(|| drop(data));
    error
}

/// `kpi_cp_write`.
///
/// # Safety
/// `buf` must be `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kpi_cp_write(
    cp: *mut g_consumer,
    offset: u64,
    buf: *const c_void,
    len: usize,
) -> c_int {
    let mut data = host(|| std::vec![0u8; len]);
    if len > 0 {
        // SAFETY: `buf` is `len` readable bytes (this function's contract).
        unsafe { core::ptr::copy_nonoverlapping(buf.cast::<u8>(), data.as_mut_ptr(), len) };
    }
    let error = host(|| data_io(handle(cp), true, offset, &mut data));
    host(|| drop(data));
    error
}

/// `kpi_cp_detach`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_cp_detach(cp: *mut g_consumer) {
    host(|| {
        topology("kpi_cp_detach");
        let mut w = world();
        let cp = handle(cp);
        match w.consumers.remove(&cp) {
            Some(c) if c.acr != 0 || c.acw != 0 || c.ace != 0 => w.anomaly(format!(
                "g_detach of consumer {cp:#x} with access r{}w{}e{}",
                c.acr, c.acw, c.ace
            )),
            Some(_) => {}
            None => w.anomaly(format!("kpi_cp_detach of unknown consumer {cp:#x}")),
        }
    })
}

// ----- providers -------------------------------------------------------------------------------------

fn provider_field<R: Default>(pp: *const g_provider, f: impl FnOnce(&FProvider) -> R) -> R {
    host(|| {
        world()
            .providers
            .get(&handle(pp))
            .map(f)
            .unwrap_or_default()
    })
}

/// `kpi_pp_name`.
///
/// # Safety
/// `len` must be a writable place.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kpi_pp_name(pp: *const g_provider, len: *mut usize) -> *const c_char {
    let (ptr, n) = provider_field(pp, |p| (p.name.as_ptr() as usize, p.name.len()));
    // SAFETY: `len` is writable (this function's contract). The name's buffer does not move
    // while the provider lives.
    unsafe { len.write(n) };
    ptr as *const c_char
}

/// `kpi_pp_mediasize`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_pp_mediasize(pp: *const g_provider) -> u64 {
    provider_field(pp, |p| p.mediasize)
}

/// `kpi_pp_sectorsize`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_pp_sectorsize(pp: *const g_provider) -> u32 {
    provider_field(pp, |p| p.sectorsize)
}

/// `kpi_pp_stripesize`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_pp_stripesize(pp: *const g_provider) -> u64 {
    provider_field(pp, |p| p.stripe.0)
}

/// `kpi_pp_stripeoffset`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_pp_stripeoffset(pp: *const g_provider) -> u64 {
    provider_field(pp, |p| p.stripe.1)
}

/// `kpi_pp_rank`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_pp_rank(pp: *const g_provider) -> u32 {
    provider_field(pp, |p| p.rank)
}

/// `kpi_pp_geom`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_pp_geom(pp: *const g_provider) -> *mut g_geom {
    pointer(provider_field(pp, |p| p.geom))
}

/// `kpi_pp_on_class`: the provider's geom is the module's, or one of that geom's consumers
/// rests on such a provider (depth-limited as in C).
#[unsafe(no_mangle)]
pub extern "C" fn kpi_pp_on_class(pp: *const g_provider) -> bool {
    fn on_class(w: &super::world::World, pp: Handle, depth: u32) -> bool {
        let Some(gp) = w.providers.get(&pp).and_then(|p| p.geom) else {
            return false;
        };
        if depth == 0 || w.geoms.get(&gp).is_some_and(|g| g.ours) {
            return true;
        }
        w.consumers
            .values()
            .filter(|c| c.geom == gp)
            .filter_map(|c| c.provider)
            .any(|below| on_class(w, below, depth - 1))
    }
    host(|| {
        topology("kpi_pp_on_class");
        on_class(&world(), handle(pp), 32)
    })
}

/// `kpi_pp_by_name`.
///
/// # Safety
/// `name` must be `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kpi_pp_by_name(name: *const c_char, len: usize) -> *mut g_provider {
    host(|| {
        // SAFETY: forwarded from this function's contract.
        let name = unsafe { text(name, len) };
        let name = name.strip_prefix("/dev/").unwrap_or(&name);
        pointer(world().provider_by_name(name))
    })
}

// ----- geoms ------------------------------------------------------------------------------------------

/// `kpi_g_new_geom`.
///
/// # Safety
/// `name` must be `len` readable bytes and `ppp` a writable place.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kpi_g_new_geom(
    name: *const c_char,
    len: usize,
    ppp: *mut *mut g_provider,
) -> *mut g_geom {
    let (gp, pp) = host(|| {
        topology("kpi_g_new_geom");
        may_sleep("kpi_g_new_geom");
        // SAFETY: forwarded from this function's contract.
        let name = unsafe { text(name, len) };
        let mut w = world();
        let (gp, pp) = (w.handle(), w.handle());
        w.geoms.insert(
            gp,
            FGeom {
                name: name.clone(),
                ours: true,
                provider: Some(pp),
                withering: false,
            },
        );
        w.providers.insert(
            pp,
            FProvider {
                name: format!("multipath/{name}"),
                backing: Backing::Multipath(gp),
                mediasize: 0,
                sectorsize: 0,
                stripe: (0, 0),
                rank: 2,
                acr: 0,
                acw: 0,
                ace: 0,
                error: 0,
                physpath: String::new(),
                geom: Some(gp),
            },
        );
        w.events.push_back(FEvent::Taste(pp));
        (gp, pp)
    });
    // SAFETY: `ppp` is writable (this function's contract).
    unsafe { ppp.write(pp as *mut g_provider) };
    gp as *mut g_geom
}

fn our_provider(pp: *mut g_provider, what: &str, f: impl FnOnce(&mut FProvider)) {
    host(|| {
        let mut w = world();
        match w.providers.get_mut(&handle(pp)) {
            Some(p) if matches!(p.backing, Backing::Multipath(_)) => f(p),
            _ => w.anomaly(format!("{what} of a provider that is not the module's")),
        }
    })
}

/// `kpi_g_set_geometry`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_g_set_geometry(pp: *mut g_provider, mediasize: u64, sectorsize: u32) {
    our_provider(pp, "kpi_g_set_geometry", |p| {
        p.mediasize = mediasize;
        p.sectorsize = sectorsize;
    })
}

/// `kpi_g_set_stripe`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_g_set_stripe(pp: *mut g_provider, stripesize: u64, stripeoffset: u64) {
    our_provider(pp, "kpi_g_set_stripe", |p| {
        p.stripe = (stripesize, stripeoffset)
    })
}

/// `kpi_g_resize`: `g_resize_provider` posts the resize event.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_g_resize(pp: *mut g_provider, mediasize: u64) {
    let mut changed = false;
    our_provider(pp, "kpi_g_resize", |p| changed = p.mediasize != mediasize);
    if changed {
        host(|| {
            world()
                .events
                .push_back(FEvent::Resize(handle(pp), mediasize))
        });
    }
}

/// `kpi_g_wither_provider`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_g_wither_provider(pp: *mut g_provider, error: c_int) {
    our_provider(pp, "kpi_g_wither_provider", |p| p.error = error);
    host(|| world().events.push_back(FEvent::Orphan(handle(pp))));
}

/// `kpi_g_wither_geom`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_g_wither_geom(gp: *mut g_geom, error: c_int) {
    host(|| {
        topology("kpi_g_wither_geom");
        let mut w = world();
        let gp = handle(gp);
        if w.consumers.values().any(|c| c.geom == gp) {
            w.anomaly(format!("g_wither_geom of geom {gp:#x} with consumers"));
        }
        let Some(g) = w.geoms.get_mut(&gp) else {
            w.anomaly(format!("kpi_g_wither_geom of unknown geom {gp:#x}"));
            return;
        };
        g.withering = true;
        if let Some(pp) = g.provider {
            if let Some(p) = w.providers.get_mut(&pp) {
                if p.error == 0 {
                    p.error = error;
                    w.events.push_back(FEvent::Orphan(pp));
                }
            }
        }
    })
}

/// `g_new_consumer` + `g_attach`.
pub(crate) fn attach(gp: Handle, pp: Handle) -> Result<Handle, i32> {
    let mut w = world();
    let Some(p) = w.providers.get(&pp) else {
        w.anomaly(format!("g_attach to unknown provider {pp:#x}"));
        return Err(ENXIO);
    };
    if let Some(e) = w.faults.get(&p.name).and_then(|f| f.attach) {
        return Err(e);
    }
    if w.geoms.get(&gp).is_none_or(|g| g.withering) {
        w.anomaly(format!(
            "g_new_consumer on missing or withering geom {gp:#x}"
        ));
        return Err(ENXIO);
    }
    let cp = w.handle();
    w.consumers.insert(cp, FConsumer::attached(gp, pp));
    Ok(cp)
}

/// `kpi_g_attach`.
///
/// # Safety
/// `cpp` must be a writable place.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kpi_g_attach(
    gp: *mut g_geom,
    pp: *mut g_provider,
    cpp: *mut *mut g_consumer,
) -> c_int {
    let result = host(|| {
        topology("kpi_g_attach");
        may_sleep("kpi_g_attach");
        attach(handle(gp), handle(pp))
    });
    match result {
        Ok(cp) => {
            // SAFETY: `cpp` is writable (this function's contract).
            unsafe { cpp.write(cp as *mut g_consumer) };
            0
        }
        Err(e) => e,
    }
}

/// Taste's private read, as `g_multipath_taste` does it: a temporary geom, a consumer,
/// `g_access(1,0,0)`, the read, and undo. Reading a multipath provider goes through the
/// module's own start and done, pumped like g_down/g_up until the read is home.
fn taste_read(pp: Handle, offset: u64, buf: &mut [u8]) -> i32 {
    let (gp, name) = {
        let mut w = world();
        let Some(p) = w.providers.get(&pp) else {
            return ENXIO;
        };
        let name = p.name.clone();
        let gp = w.handle();
        w.geoms.insert(
            gp,
            FGeom {
                name: String::from("multipath:taste"),
                ours: true,
                provider: None,
                withering: false,
            },
        );
        (gp, name)
    };
    let cp = match attach(gp, pp) {
        Ok(cp) => cp,
        Err(e) => {
            world().geoms.remove(&gp);
            return e;
        }
    };
    let mut error = g_access(cp, 1, 0, 0);
    if error == 0 {
        let backing = world().providers.get(&pp).map(|p| p.backing);
        error = match backing {
            Some(Backing::Multipath(_)) => super::read_through_module(pp, offset, buf),
            Some(Backing::Disk(d)) => {
                let mut w = world();
                match w.faults.get(&name).and_then(|f| f.data.or(f.io)) {
                    Some(e) => e,
                    None => w.disk_io(d, false, offset, buf),
                }
            }
            None => ENXIO,
        };
        g_access(cp, -1, 0, 0);
    }
    let mut w = world();
    w.consumers.remove(&cp);
    w.geoms.remove(&gp);
    error
}

/// `kpi_g_taste_read`.
///
/// # Safety
/// `buf` must be `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kpi_g_taste_read(
    pp: *mut g_provider,
    offset: u64,
    buf: *mut c_void,
    len: usize,
) -> c_int {
    sleep::point(SleepPoint::LabelIo);
    let mut data = host(|| std::vec![0u8; len]);
    let error = host(|| {
        topology("kpi_g_taste_read");
        may_sleep("kpi_g_taste_read");
        taste_read(handle(pp), offset, &mut data)
    });
    if error == 0 && len > 0 {
        // SAFETY: `buf` is `len` writable bytes (this function's contract).
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), buf.cast::<u8>(), len) };
    }
    host(|| drop(data));
    error
}

// ----- gctl -------------------------------------------------------------------------------------------

/// `kpi_gctl_nparams`.
#[unsafe(no_mangle)]
pub extern "C" fn kpi_gctl_nparams(req: *const gctl_req) -> u32 {
    host(|| {
        world()
            .reqs
            .get(&handle(req))
            .map_or(0, |r| u32::try_from(r.params.len()).unwrap_or(u32::MAX))
    })
}

/// `kpi_gctl_param`.
///
/// # Safety
/// The four out-pointers must be writable places.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kpi_gctl_param(
    req: *const gctl_req,
    i: u32,
    name: *mut *const c_char,
    name_len: *mut usize,
    value: *mut *const c_void,
    value_len: *mut usize,
) -> c_int {
    let found = host(|| {
        let w = world();
        let p = w
            .reqs
            .get(&handle(req))?
            .params
            .get(usize::try_from(i).ok()?)?;
        Some((
            p.name.as_ptr() as usize,
            p.name.len(),
            p.value.as_ptr() as usize,
            p.value.len(),
            p.flags,
        ))
    });
    let Some((n, nl, v, vl, flags)) = found else {
        return -1;
    };
    // SAFETY: the out-pointers are writable (this function's contract). The name and value
    // buffers do not move while the request lives.
    unsafe {
        name.write(n as *const c_char);
        name_len.write(nl);
        value.write(v as *const c_void);
        value_len.write(vl);
    }
    flags
}

/// `kpi_gctl_error`: only the first error is kept.
///
/// # Safety
/// `msg` must be `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kpi_gctl_error(req: *mut gctl_req, msg: *const c_char, len: usize) {
    host(|| {
        // SAFETY: forwarded from this function's contract.
        let msg = unsafe { text(msg, len) };
        if let Some(r) = world().reqs.get_mut(&handle(req)) {
            r.error.get_or_insert(msg);
        }
    })
}

/// `kpi_gctl_set_param`: `gctl_set_param_err`.
///
/// # Safety
/// `name` and `value` must be readable for their lengths.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kpi_gctl_set_param(
    req: *mut gctl_req,
    name: *const c_char,
    name_len: usize,
    value: *const c_void,
    len: usize,
) {
    host(|| {
        // SAFETY: forwarded from this function's contract.
        let name = unsafe { text(name, name_len) };
        let value: Vec<u8> = if len == 0 {
            Vec::new()
        } else {
            // SAFETY: forwarded from this function's contract.
            unsafe { core::slice::from_raw_parts(value.cast::<u8>(), len) }.to_vec()
        };
        let mut w = world();
        let Some(r) = w.reqs.get_mut(&handle(req)) else {
            return;
        };
        let error = match r.params.iter_mut().find(|p| p.name == name.as_bytes()) {
            None => Some(format!("Missing {name} argument")),
            Some(p) if p.flags & b::KPI_GCTL_PARAM_WR == 0 => {
                Some(format!("No write access {name} argument"))
            }
            Some(p) => {
                p.changed = true;
                let n = value.len().min(p.value.len());
                p.value[..n].copy_from_slice(&value[..n]);
                (value.len() > p.value.len()).then(|| format!("Wrong length {name} argument"))
            }
        };
        if let Some(e) = error {
            r.error.get_or_insert(e);
        }
    })
}

// ----- sbuf ------------------------------------------------------------------------------------------

/// `kpi_sbuf_cat`.
///
/// # Safety
/// `s` must be `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kpi_sbuf_cat(sb: *mut sbuf, s: *const c_char, len: usize) {
    // sbuf_bcat may grow the buffer with malloc(M_WAITOK).
    sleep::point(SleepPoint::Sbuf);
    host(|| {
        // SAFETY: forwarded from this function's contract.
        let s = unsafe { text(s, len) };
        if let Some(buf) = world().sbufs.get_mut(&handle(sb)) {
            buf.push_str(&s);
        }
    })
}

/// A NUL-terminated copy of an attribute name, for requests the harness builds.
pub(crate) fn attribute(name: &str) -> CString {
    CString::new(name).unwrap_or_default()
}

/// The definitions above have exactly the signatures `kpi.h` declares (checked at compile
/// time): each is coerced to the function-pointer type of bindgen's declaration.
#[allow(dead_code)]
const SIGNATURES_MATCH_KPI_H: () = {
    macro_rules! same {
        ($($name:ident($($arg:tt),*);)*) => {$(
            let _: [unsafe extern "C" fn($($arg),*) -> _; 2] = [b::$name, $name];
        )*};
    }
    same! {
        kpi_malloc(_, _, _);
        kpi_free(_, _, _);
        kpi_can_sleep();
        kpi_log(_, _, _);
        kpi_random();
        kpi_gate_enter();
        kpi_gate_exit();
        kpi_gate_try_enter();
        kpi_gate_try_exit();
        kpi_post_event(_);
        kpi_worker_enqueue(_, _);
        kpi_worker_starts_pending();
        kpi_setup();
        kpi_worker_stop();
        kpi_cancel_events();
        kpi_teardown();
        kpi_sdt_config(_, _, _, _, _, _);
        kpi_sdt_restart(_, _);
        kpi_bio_cmd(_);
        kpi_bio_offset(_);
        kpi_bio_length(_);
        kpi_bio_error(_);
        kpi_bio_attribute(_, _);
        kpi_bio_parent(_);
        kpi_bio_geom(_);
        kpi_bio_driver1(_);
        kpi_bio_set_driver1(_, _);
        kpi_bio_clone(_);
        kpi_bio_request(_, _);
        kpi_bio_retire(_);
        kpi_bio_complete(_, _);
        kpi_bio_deliver(_, _);
        kpi_bio_attr_append(_, _, _);
        kpi_cp_provider(_);
        kpi_cp_access(_, _, _, _);
        kpi_cp_read(_, _, _, _);
        kpi_cp_write(_, _, _, _);
        kpi_cp_detach(_);
        kpi_pp_name(_, _);
        kpi_pp_mediasize(_);
        kpi_pp_sectorsize(_);
        kpi_pp_stripesize(_);
        kpi_pp_stripeoffset(_);
        kpi_pp_rank(_);
        kpi_pp_geom(_);
        kpi_pp_on_class(_);
        kpi_pp_by_name(_, _);
        kpi_g_new_geom(_, _, _);
        kpi_g_set_geometry(_, _, _);
        kpi_g_set_stripe(_, _, _);
        kpi_g_resize(_, _);
        kpi_g_wither_provider(_, _);
        kpi_g_wither_geom(_, _);
        kpi_g_attach(_, _, _);
        kpi_g_taste_read(_, _, _, _);
        kpi_gctl_nparams(_);
        kpi_gctl_param(_, _, _, _, _, _);
        kpi_gctl_error(_, _, _);
        kpi_gctl_set_param(_, _, _, _, _);
        kpi_sbuf_cat(_, _, _);
    }
    // kpi_panic returns `!`, which a function pointer type with `-> _` cannot name.
    let _: [unsafe extern "C" fn(*const c_char, usize) -> !; 2] = [b::kpi_panic, kpi_panic];
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The `kpi_*` names followed by `(` in a text: the functions it declares or defines.
    fn functions(text: &str) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for (at, _) in text.match_indices("kpi_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if text[at + name.len()..].starts_with('(') {
                out.insert(name);
            }
        }
        out
    }

    #[test]
    fn every_kpi_function_of_kpi_h_is_implemented_here() {
        let declared = functions(include_str!("../../kpi.h"));
        assert!(declared.len() > 50, "found only {declared:?}");
        let here = include_str!("kpi.rs");
        for name in &declared {
            let needle = format!("extern \"C\" fn {name}(");
            assert!(
                here.contains(&needle),
                "{name} is declared in kpi.h but not implemented in userland"
            );
        }
        let bindings = functions(include_str!("../bindings.rs"));
        assert_eq!(
            declared, bindings,
            "src/bindings.rs declares other kpi_* functions than kpi.h"
        );
    }
}

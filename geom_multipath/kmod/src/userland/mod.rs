//! A fake FreeBSD kernel in userland (feature `userland`, and the crate's own tests): every
//! `kpi_*` function of `kpi.h` ([`kpi`]) over an in-memory GEOM ([`world`]), with a harness,
//! [`Kernel`], that plays the parts of the kernel the shim stands for — the GEOM event thread,
//! g_down, g_up, `g_mp_kt`, geom(8)'s gctl requests, `kern.geom.confxml`, module load and
//! unload — by calling the very `gmp_rs_*` entry points the shim calls.
//!
//! What it keeps honest:
//! * completions are queued and delivered by [`Kernel::run_up`] (g_up), never inline;
//! * the `g_mp_kt` queue is served by [`Kernel::run_worker`], the GEOM event queue by
//!   [`Kernel::run_event`], all FIFO;
//! * faults are injected per provider ([`world::Fault`]);
//! * every module allocation is counted ([`memory::stats`]), sleeping where the kernel forbids
//!   it is caught, and GEOM's own rules (access counts, double delivery, detaching an open
//!   consumer, ...) are recorded as anomalies that [`Kernel::check`] turns into test failures;
//! * `kpi_panic` is a Rust panic;
//! * sleeping can be made to last: a test arms a [`sleep::Latch`] where a control call would
//!   sleep (an `M_WAITOK` allocation, label I/O, a dumpconf buffer, the topology lock) and
//!   drives the other threads meanwhile.
//!
//! The module's state is global, as in the kernel, so only one [`Kernel`] exists at a time:
//! [`Kernel::boot`] waits for the previous one to be dropped.

pub mod kpi;
pub mod memory;
pub mod sleep;
pub mod world;

use core::ffi::c_char;
use std::ffi::CString;
use std::format;
use std::string::String;
use std::sync::{Mutex, MutexGuard};
use std::vec::Vec;

use crate::bindings as b;
use crate::bindings::{bio, g_consumer, g_provider, gctl_req, sbuf};
use crate::entry;
use world::{
    world, Backing, Disk, FBio, FConsumer, FEvent, FGeom, FParam, FProvider, FReq, Fault, Handle,
    Work,
};

static ONE_KERNEL: Mutex<()> = Mutex::new(());

/// The module is unloaded: nothing may call into it any more.
static UNLOADED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records a call into the module after its unload (a call into unloaded code).
fn after_unload(what: &str) {
    if UNLOADED.load(std::sync::atomic::Ordering::SeqCst) {
        world().anomaly(format!(
            "{what} called into the module after it was unloaded"
        ));
    }
}

/// The longest a harness loop runs before it declares a livelock.
const PUMP_LIMIT: usize = 100_000;

/// What a control request came back with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CtlReply {
    /// The error text, as geom(8) prints it after `gmultipath: `.
    pub error: Option<String>,
    /// The `output` parameter, up to its NUL.
    pub output: String,
}

/// A user's request, after delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// `bio_error`.
    pub error: i32,
    /// `bio_completed`.
    pub completed: u64,
    /// The data buffer (what a read brought, a GETATTR's answer).
    pub data: Vec<u8>,
    /// How many times it was delivered.
    pub delivered: u32,
}

/// What `kern.geom.confxml` would hold for one multipath geom: the `<config>` innards the class
/// writes for the geom, each path (kernel order) and the provider.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conf {
    /// The geom's `<config>`.
    pub geom: String,
    /// Each path's name and `<config>`, newest first.
    pub paths: Vec<(String, String)>,
    /// The provider's `<config>`.
    pub provider: String,
}

/// A provider as `geom list` would show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderState {
    /// Media size.
    pub mediasize: u64,
    /// Sector size.
    pub sectorsize: u32,
    /// Stripe size and offset.
    pub stripe: (u64, u64),
    /// Access counts (r, w, e).
    pub access: (i32, i32, i32),
}

/// The fake kernel with the module loaded, owned by one test at a time.
pub struct Kernel {
    _one: MutexGuard<'static, ()>,
    loaded: bool,
}

impl Kernel {
    /// A fresh kernel with no disks, the module not loaded yet, the tunables at their defaults
    /// and the allocation counters reset.
    pub fn boot() -> Kernel {
        let one = ONE_KERNEL.lock().unwrap_or_else(|e| e.into_inner());
        world::reset();
        kpi::reset_route();
        UNLOADED.store(false, std::sync::atomic::Ordering::SeqCst);
        crate::tunables::reset();
        memory::reset_counters();
        Kernel {
            _one: one,
            loaded: false,
        }
    }

    /// Runs `f` as a call into the module (its allocations count as the module's).
    pub fn call<R>(f: impl FnOnce() -> R) -> R {
        memory::module_call(f)
    }

    /// Runs `f` as the GEOM event thread (topology lock held).
    fn event_thread<R>(f: impl FnOnce() -> R) -> R {
        memory::with_topology(f)
    }

    // ----- the machine ------------------------------------------------------------------

    /// Adds a disk of `mediasize` bytes with `paths` providers `<prefix>0`…, each a path to it
    /// (tasted, as GEOM tastes a new provider). Returns the disk's index.
    pub fn disk(&mut self, prefix: &str, paths: usize, mediasize: u64, sectorsize: u32) -> usize {
        let disk = {
            let mut w = world();
            w.disks.push(Disk {
                data: std::vec![0; usize::try_from(mediasize).expect("small disk")],
            });
            w.disks.len() - 1
        };
        for i in 0..paths {
            self.provider(&format!("{prefix}{i}"), disk, mediasize, sectorsize);
        }
        disk
    }

    /// Adds provider `name`, a path to `disk` (queues its taste).
    pub fn provider(&mut self, name: &str, disk: usize, mediasize: u64, sectorsize: u32) {
        let mut w = world();
        let pp = w.handle();
        w.providers.insert(
            pp,
            FProvider {
                name: String::from(name),
                backing: Backing::Disk(disk),
                mediasize,
                sectorsize,
                stripe: (0, 0),
                rank: 1,
                acr: 0,
                acw: 0,
                ace: 0,
                error: 0,
                physpath: format!("id1,enc@n5000000000000000/type@0/slot@{}", name.len()),
                geom: None,
            },
        );
        w.events.push_back(FEvent::Taste(pp));
    }

    /// Adds provider `name` of another class stacked on provider `over` (as gnop makes
    /// `over.nop`): a geom with one consumer attached to `over` and one provider. Its own
    /// sectors come from a fresh, blank disk (the fake does not pass I/O down).
    pub fn stacked(&mut self, name: &str, over: &str) {
        let mut w = world();
        let below = w.provider_by_name(over).expect("the provider below");
        let (mediasize, sectorsize) = {
            let p = &w.providers[&below];
            (p.mediasize, p.sectorsize)
        };
        w.disks.push(Disk {
            data: std::vec![0; usize::try_from(mediasize).expect("small disk")],
        });
        let disk = w.disks.len() - 1;
        let gp = w.handle();
        w.geoms.insert(
            gp,
            FGeom {
                name: format!("{over}.stack"),
                ours: false,
                provider: None,
                withering: false,
            },
        );
        let cp = w.handle();
        w.consumers.insert(cp, FConsumer::attached(gp, below));
        let pp = w.handle();
        w.providers.insert(
            pp,
            FProvider {
                name: String::from(name),
                backing: Backing::Disk(disk),
                mediasize,
                sectorsize,
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
    }

    /// Takes away what [`stacked`](Kernel::stacked) made (`gnop destroy`).
    pub fn unstack(&mut self, name: &str) {
        let mut w = world();
        let pp = w.provider_by_name(name).expect("stacked provider");
        let gp = w
            .providers
            .remove(&pp)
            .and_then(|p| p.geom)
            .expect("its geom");
        w.consumers.retain(|_, c| c.geom != gp);
        w.geoms.remove(&gp);
    }

    /// Sets a provider's stripe geometry.
    pub fn set_stripe(&mut self, name: &str, stripesize: u64, stripeoffset: u64) {
        let mut w = world();
        if let Some(pp) = w.provider_by_name(name) {
            w.providers.get_mut(&pp).expect("provider").stripe = (stripesize, stripeoffset);
        }
    }

    /// Writes `gmultipath label`'s sector to the end of `disk`.
    pub fn label(
        &mut self,
        disk: usize,
        name: &str,
        uuid: &str,
        mode: geom_multipath::Mode,
        sectorsize: u32,
    ) {
        let mut w = world();
        let size = w.disks[disk].data.len();
        let md = geom_multipath::metadata::Metadata {
            uuid: String::from(uuid),
            name: String::from(name),
            sectorsize,
            size: size as u64,
            mode,
        };
        let sector = md.encode(sectorsize as usize).expect("label");
        let at = size - sectorsize as usize;
        w.disks[disk].data[at..].copy_from_slice(&sector);
    }

    /// The last sector of `disk`.
    pub fn last_sector(&self, disk: usize, sectorsize: u32) -> Vec<u8> {
        let w = world();
        let data = &w.disks[disk].data;
        data[data.len() - sectorsize as usize..].to_vec()
    }

    /// Injects (or clears, with `Fault::default()`) a fault on provider `name`.
    pub fn fault(&mut self, name: &str, fault: Fault) {
        world().faults.insert(String::from(name), fault);
    }

    /// Lets the completions a `Fault::hold` kept back go to g_up.
    pub fn release(&mut self, name: &str) {
        let mut w = world();
        if let Some(f) = w.faults.get_mut(name) {
            f.hold = false;
        }
        let held = std::mem::take(&mut w.held);
        for cbp in held {
            let on = w
                .bios
                .get(&cbp)
                .and_then(|b| b.to)
                .and_then(|pp| w.providers.get(&pp))
                .map(|p| p.name.clone());
            if on.as_deref() == Some(name) {
                w.up.push_back(cbp);
            } else {
                w.held.push(cbp);
            }
        }
    }

    /// Makes the next `n` `g_clone_bio` calls fail.
    pub fn fail_clones(&mut self, n: u32) {
        world().fail_clone = n;
    }

    /// Sets what `random()` answers.
    pub fn set_random(&mut self, value: u32) {
        world().random = value;
    }

    /// The provider `name` goes away (the disk is pulled): its consumers are orphaned by the
    /// next event run, and requests on it fail with ENXIO.
    pub fn pull(&mut self, name: &str) {
        let mut w = world();
        if let Some(pp) = w.provider_by_name(name) {
            w.providers.get_mut(&pp).expect("provider").error = 6;
            w.events.push_back(FEvent::Orphan(pp));
        }
    }

    /// Provider `name` changes size (its disk grows or shrinks to `mediasize`).
    pub fn resize_provider(&mut self, name: &str, mediasize: u64) {
        let mut w = world();
        if let Some(pp) = w.provider_by_name(name) {
            if let Backing::Disk(d) = w.providers[&pp].backing {
                w.disks[d]
                    .data
                    .resize(usize::try_from(mediasize).expect("small disk"), 0);
            }
            w.events.push_back(FEvent::Resize(pp, mediasize));
        }
    }

    // ----- module load and unload -------------------------------------------------------

    /// `kldload`: the module's event handler (the gate and `g_mp_kt` first), then
    /// `g_load_class` — init, then taste every provider there is. (Their own pending taste
    /// events are dropped: `g_load_class` has just tasted them; providers the class creates
    /// meanwhile keep theirs.) Panics if the load fails; see [`try_load`](Kernel::try_load).
    pub fn load(&mut self) {
        assert_eq!(self.try_load(), Ok(()), "kldload");
    }

    /// `kldload`, with the errno that fails it (`kproc_create` failing: [`Kernel::fail_kproc`]).
    pub fn try_load(&mut self) -> Result<(), i32> {
        // SAFETY: the module's event handler, MOD_LOAD, as the shim calls it.
        let error = Self::call(|| unsafe { entry::gmp_rs_load() });
        if error != 0 {
            return Err(error);
        }
        let providers: Vec<Handle> = world().providers.keys().copied().collect();
        world()
            .events
            .retain(|e| !matches!(e, FEvent::Taste(pp) if providers.contains(pp)));
        Self::event_thread(|| {
            // SAFETY: the module's init, once, as the shim calls it.
            Self::call(|| unsafe { entry::gmp_rs_init() });
            for &pp in &providers {
                taste(pp);
            }
        });
        self.loaded = true;
        Ok(())
    }

    /// Makes the next `kproc_create` fail with `errno` (EAGAIN at maxproc).
    pub fn fail_kproc(&mut self, errno: i32) {
        world().kproc_error = errno;
    }

    /// The calls of the module's life so far (`setup`, `fini`, `worker_stop`,
    /// `cancel_events`, `teardown`), in order.
    pub fn lifecycle(&self) -> Vec<&'static str> {
        world().lifecycle.clone()
    }

    /// `kldunload`: `g_unload_class` — EBUSY while anything is open, then `destroy_geom` for
    /// every geom, wait for the withering (the event thread, g_up and `g_mp_kt` keep running
    /// meanwhile), fini; then the module's event handler lets go of the rest.
    pub fn unload(&mut self) -> Result<(), i32> {
        let geoms: Vec<Handle> = {
            let w = world();
            let ours: Vec<Handle> = w
                .geoms
                .iter()
                .filter(|(_, g)| g.ours && !g.withering)
                .map(|(h, _)| *h)
                .collect();
            for &gp in &ours {
                let open_provider = w.geoms[&gp]
                    .provider
                    .and_then(|pp| w.providers.get(&pp))
                    .is_some_and(|p| p.acr + p.acw + p.ace != 0);
                let open_consumer = w
                    .consumers
                    .values()
                    .any(|c| c.geom == gp && c.acr + c.acw + c.ace != 0);
                if open_provider || open_consumer {
                    return Err(16);
                }
            }
            ours
        };
        for gp in geoms {
            let error = Self::event_thread(|| {
                // SAFETY: a live geom of the module.
                Self::call(|| unsafe { entry::gmp_rs_destroy_geom(gp as *mut b::g_geom) })
            });
            if error != 0 {
                return Err(error);
            }
        }
        self.settle();
        let left = world().geoms.values().filter(|g| g.ours).count();
        assert_eq!(left, 0, "geoms left after destroy_geom");
        self.fini();
        Ok(())
    }

    /// The class's fini and then the module's MOD_UNLOAD: after this nothing may call into
    /// the module (the pumps record it as a broken rule).
    fn fini(&mut self) {
        world().lifecycle.push("fini");
        // SAFETY: the module's fini, once, after its geoms are gone.
        Self::event_thread(|| Self::call(|| unsafe { entry::gmp_rs_fini() }));
        // SAFETY: the module's event handler, MOD_UNLOAD, after a successful g_unload_class.
        Self::call(|| unsafe { entry::gmp_rs_unload() });
        let mut w = world();
        let worker = w.worker.len();
        let events = w.events.iter().filter(|e| **e == FEvent::Ours).count();
        if worker != 0 || events != 0 {
            w.anomaly(format!(
                "stranded at unload: {worker} g_mp_kt items, {events} class events"
            ));
        }
        UNLOADED.store(true, std::sync::atomic::Ordering::SeqCst);
        self.loaded = false;
    }

    // ----- the threads --------------------------------------------------------------------

    /// Runs one GEOM event; `false` if there was none.
    pub fn run_event(&mut self) -> bool {
        run_event()
    }

    /// Delivers one completed clone to the module's done method (g_up); `false` if none.
    pub fn run_up(&mut self) -> bool {
        run_up()
    }

    /// Serves one item of `g_mp_kt`'s queue; `false` if none.
    pub fn run_worker(&mut self) -> bool {
        run_worker()
    }

    /// Runs g_up, `g_mp_kt` and the event thread until all are idle.
    pub fn settle(&mut self) {
        for _ in 0..PUMP_LIMIT {
            if !(run_up() || run_worker() || run_event()) {
                return;
            }
        }
        panic!("the fake kernel did not settle (livelock?)");
    }

    // ----- users --------------------------------------------------------------------------

    /// Opens provider `name` with (r, w, e), as `g_dev` does for /dev/<name>: a user consumer
    /// and `g_access`. Returns the consumer or the errno.
    pub fn open(&mut self, name: &str, r: i32, w: i32, e: i32) -> Result<Handle, i32> {
        let (gp, pp) = {
            let mut wd = world();
            let pp = wd.provider_by_name(name).ok_or(6)?;
            let gp = wd.handle();
            wd.geoms.insert(
                gp,
                FGeom {
                    name: format!("user:{name}"),
                    ours: false,
                    provider: None,
                    withering: false,
                },
            );
            (gp, pp)
        };
        let cp = {
            let mut wd = world();
            let cp = wd.handle();
            wd.consumers.insert(cp, FConsumer::attached(gp, pp));
            cp
        };
        let error = Self::event_thread(|| kpi::g_access(cp, r, w, e));
        if error != 0 {
            let mut wd = world();
            wd.consumers.remove(&cp);
            wd.geoms.remove(&gp);
            return Err(error);
        }
        Ok(cp)
    }

    /// Closes what [`open`](Kernel::open) opened.
    pub fn close(&mut self, cp: Handle) {
        let (r, w, e, gp) = {
            let wd = world();
            let c = &wd.consumers[&cp];
            (c.acr, c.acw, c.ace, c.geom)
        };
        let error = Self::event_thread(|| kpi::g_access(cp, -r, -w, -e));
        assert_eq!(error, 0, "close failed");
        let mut wd = world();
        wd.consumers.remove(&cp);
        wd.geoms.remove(&gp);
        drop(wd);
        self.settle();
    }

    /// Sends a request to provider `name` (g_io_request + g_down): `cmd` is a `KPI_BIO_*`.
    /// For a write, `data` is what is written; otherwise it sizes the buffer. Returns the
    /// request's handle; its answer comes with [`answer`](Kernel::answer).
    pub fn submit(
        &mut self,
        name: &str,
        cmd: i32,
        offset: u64,
        data: Vec<u8>,
        attribute: Option<&str>,
    ) -> Handle {
        let (bp, pp, error, multipath) = {
            let mut w = world();
            let pp = w.provider_by_name(name).expect("provider");
            let bp = w.handle();
            let p = &w.providers[&pp];
            let (error, multipath) = (p.error, matches!(p.backing, Backing::Multipath(_)));
            w.bios.insert(
                bp,
                FBio {
                    cmd: u16::try_from(cmd).expect("bio_cmd"),
                    offset,
                    length: data.len() as u64,
                    data,
                    attribute: attribute.map(kpi::attribute),
                    to: Some(pp),
                    ..FBio::default()
                },
            );
            (bp, pp, error, multipath)
        };
        assert!(multipath, "submit is for multipath providers");
        let _ = pp;
        if error != 0 {
            // g_io_check: a withered provider refuses new requests.
            let mut w = world();
            let b = w.bios.get_mut(&bp).expect("bio");
            b.error = error;
            b.delivered += 1;
            return bp;
        }
        memory::no_sleeping(|| {
            // SAFETY: a live request to the module's provider.
            Self::call(|| unsafe { entry::gmp_rs_start(bp as *mut bio) })
        });
        bp
    }

    /// The answer to a request, once delivered.
    pub fn answer(&self, bp: Handle) -> Option<Answer> {
        let w = world();
        let b = w.bios.get(&bp)?;
        (b.delivered > 0).then(|| Answer {
            error: b.error,
            completed: b.completed,
            data: b.data.clone(),
            delivered: b.delivered,
        })
    }

    /// Forgets a delivered request (as its caller would free it).
    pub fn forget(&mut self, bp: Handle) {
        world().bios.remove(&bp);
    }

    // ----- geom(8) ------------------------------------------------------------------------

    /// `gmultipath <verb> [options] args...` as geom(8) sends it: class, verb, version 1, the
    /// options (4-byte ints), nargs, arg0…, and `output` (4096 bytes, WR|ASCII).
    pub fn ctl(&mut self, verb: &str, options: &[(&str, i32)], args: &[&str]) -> CtlReply {
        self.ctl_params(ctl_params(verb, options, args))
    }

    /// A control request with exactly these parameters.
    pub fn ctl_params(&mut self, params: Vec<FParam>) -> CtlReply {
        let reply = ctl_request(params);
        self.settle();
        reply
    }

    // ----- observation --------------------------------------------------------------------

    /// `kern.geom.confxml`'s class part for geom `name`: the module's dumpconf for the geom,
    /// each path (kernel order) and the provider, with geom_dump.c's indents.
    pub fn conf(&mut self, name: &str) -> Option<Conf> {
        conf(name)
    }

    /// Everything the module printed since the last call, in order.
    pub fn console(&mut self) -> Vec<String> {
        std::mem::take(&mut world().console)
    }

    /// Every probe the module fired since the last call, in order.
    pub fn probes(&mut self) -> Vec<String> {
        std::mem::take(&mut world().probes)
    }

    /// The providers the module sent clones to since the last call, in order.
    pub fn issued(&mut self) -> Vec<String> {
        std::mem::take(&mut world().issued)
            .into_iter()
            .map(|(_, name)| name)
            .collect()
    }

    /// The offsets of the clones the module issued since the last call, in order.
    pub fn issued_offsets(&mut self) -> Vec<u64> {
        std::mem::take(&mut world().issued_offsets)
    }

    /// How many completions wait for g_up, `g_mp_kt` and the event thread.
    pub fn queues(&self) -> (usize, usize, usize) {
        let w = world();
        (w.up.len(), w.worker.len(), w.events.len())
    }

    /// A provider's geometry and access counts, if it exists.
    pub fn provider_state(&self, name: &str) -> Option<ProviderState> {
        let w = world();
        let p = &w.providers[&w.provider_by_name(name)?];
        Some(ProviderState {
            mediasize: p.mediasize,
            sectorsize: p.sectorsize,
            stripe: p.stripe,
            access: (p.acr, p.acw, p.ace),
        })
    }

    /// The names of the module's live geoms.
    pub fn geoms(&self) -> Vec<String> {
        let w = world();
        w.geoms
            .values()
            .filter(|g| g.ours && !g.withering && g.provider.is_some())
            .map(|g| g.name.clone())
            .collect()
    }

    /// Whether a live (not withered) provider `name` exists.
    pub fn has_provider(&self, name: &str) -> bool {
        let w = world();
        w.provider_by_name(name)
            .is_some_and(|pp| w.providers[&pp].error == 0)
    }

    /// Holds the class gate from the harness, as a control call on another thread would.
    pub fn hold_gate(&mut self) -> GateHold {
        assert_eq!(kpi::kpi_gate_enter(), 0);
        GateHold
    }

    /// Panics if GEOM's rules were broken; call at the end of every scenario.
    pub fn check(&mut self) {
        let anomalies = std::mem::take(&mut world().anomalies);
        assert!(
            anomalies.is_empty(),
            "kernel rules broken:\n{}",
            anomalies.join("\n")
        );
        assert!(!kpi::gate_held(), "the class gate is still held");
        let m = memory::stats();
        assert_eq!(
            m.waitok_in_no_sleep, 0,
            "M_WAITOK where sleeping is forbidden"
        );
        assert_eq!(
            m.bad_frees, 0,
            "kpi_free with another size or alignment than kpi_malloc's"
        );
    }

    /// The module's allocation counters.
    pub fn malloc(&self) -> memory::MallocStats {
        memory::stats()
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        if self.loaded && (std::thread::panicking() || self.unload().is_err()) {
            // A failed test, or something left open: drop the module's state anyway, so the
            // next test starts from a fresh module.
            // SAFETY: the module's fini; nothing runs in it any more.
            Kernel::call(|| unsafe { entry::gmp_rs_fini() });
            // SAFETY: as the module's event handler would, after fini.
            Kernel::call(|| unsafe { entry::gmp_rs_unload() });
        }
        world::clear();
    }
}

/// The harness holding the class gate; dropping it gives the gate back.
pub struct GateHold;

impl Drop for GateHold {
    fn drop(&mut self) {
        kpi::kpi_gate_exit();
    }
}

/// The parameters of `gmultipath <verb> [options] args...` as geom(8) sends them: class,
/// verb, version 1, the options (4-byte ints), nargs, arg0…, and `output` (4096 bytes,
/// WR|ASCII).
pub fn ctl_params(verb: &str, options: &[(&str, i32)], args: &[&str]) -> Vec<FParam> {
    let mut params = Vec::new();
    params.push(ascii("class", "MULTIPATH"));
    params.push(ascii("verb", verb));
    params.push(raw("version", 1u32.to_ne_bytes().to_vec()));
    for (name, value) in options {
        params.push(raw(name, value.to_ne_bytes().to_vec()));
    }
    params.push(raw(
        "nargs",
        i32::try_from(args.len())
            .expect("nargs")
            .to_ne_bytes()
            .to_vec(),
    ));
    for (i, a) in args.iter().enumerate() {
        params.push(ascii(&format!("arg{i}"), a));
    }
    params.push(FParam {
        name: b"output".to_vec(),
        flags: b::KPI_GCTL_PARAM_WR | b::KPI_GCTL_PARAM_ASCII,
        value: std::vec![0; 4096],
        changed: false,
    });
    params
}

/// A control request (`g_ctl_req` on an ioctl thread, topology lock held), without waiting
/// for what it leaves to the other threads. Safe to call from another thread while a test
/// drives the kernel.
pub fn ctl_request(params: Vec<FParam>) -> CtlReply {
    let req = {
        let mut w = world();
        let req = w.handle();
        w.reqs.insert(
            req,
            FReq {
                params,
                error: None,
            },
        );
        req
    };
    Kernel::event_thread(|| {
        // SAFETY: a live request.
        Kernel::call(|| unsafe { entry::gmp_rs_ctlreq(req as *mut gctl_req) })
    });
    let r = world().reqs.remove(&req).expect("request");
    let output = r
        .params
        .iter()
        .find(|p| p.name == b"output" && p.changed)
        .map(|p| {
            let end = p
                .value
                .iter()
                .position(|&c| c == 0)
                .unwrap_or(p.value.len());
            String::from_utf8_lossy(&p.value[..end]).into_owned()
        })
        .unwrap_or_default();
    CtlReply {
        error: r.error,
        output,
    }
}

/// `kern.geom.confxml`'s class part for geom `name` (see [`Kernel::conf`]). Safe to call
/// from another thread while a test drives the kernel.
pub fn conf(name: &str) -> Option<Conf> {
    let (gp, pp, consumers) = {
        let w = world();
        let (&gp, g) = w
            .geoms
            .iter()
            .find(|(_, g)| g.ours && g.name == name && !g.withering)?;
        let mut consumers: Vec<(Handle, String)> = w
            .consumers
            .iter()
            .filter(|(_, c)| c.geom == gp)
            .map(|(h, c)| {
                (
                    *h,
                    c.provider
                        .and_then(|pp| w.providers.get(&pp))
                        .map(|p| p.name.clone())
                        .unwrap_or_default(),
                )
            })
            .collect();
        // GEOM's list is newest first; handles grow with age.
        consumers.reverse();
        (gp, g.provider, consumers)
    };
    let dump = |indent: &str, cp: Option<Handle>, pp: Option<Handle>| -> String {
        let sb = {
            let mut w = world();
            let sb = w.handle();
            w.sbufs.insert(sb, String::new());
            sb
        };
        let indent = CString::new(indent).expect("indent");
        Kernel::event_thread(|| {
            // SAFETY: live objects of the module's geom; `indent` outlives the call.
            Kernel::call(|| unsafe {
                entry::gmp_rs_dumpconf(
                    sb as *mut sbuf,
                    indent.as_ptr().cast::<c_char>(),
                    indent.as_bytes().len(),
                    gp as *mut b::g_geom,
                    cp.map_or(core::ptr::null_mut(), |h| h as *mut g_consumer),
                    pp.map_or(core::ptr::null_mut(), |h| h as *mut g_provider),
                )
            })
        });
        world().sbufs.remove(&sb).unwrap_or_default()
    };
    Some(Conf {
        geom: dump("\t", None, None),
        paths: consumers
            .into_iter()
            .map(|(cp, name)| (name, dump("\t    ", Some(cp), None)))
            .collect(),
        provider: pp
            .map(|pp| dump("\t    ", None, Some(pp)))
            .unwrap_or_default(),
    })
}

// ----- the kernel's threads, as free functions (the pumps also run inside fake kpi calls) ---

/// `g_new_provider_event`'s call of the class's taste (unless the class already holds a live
/// consumer on the provider).
fn taste(pp: Handle) {
    let skip = {
        let w = world();
        let gone = w.providers.get(&pp).is_none_or(|p| p.error != 0);
        let held = w.consumers.values().any(|c| {
            c.provider == Some(pp) && !c.orphaned && w.geoms.get(&c.geom).is_some_and(|g| g.ours)
        });
        gone || held || w.notaste
    };
    if !skip {
        // SAFETY: a live provider.
        Kernel::call(|| unsafe { entry::gmp_rs_taste(pp as *mut g_provider) });
    }
}

/// Runs one GEOM event, as the event thread does; `false` if there was none. Safe to call
/// from another thread while a test drives the kernel.
pub fn run_event() -> bool {
    let event = world().events.pop_front();
    let Some(event) = event else {
        return false;
    };
    memory::with_topology(|| match event {
        FEvent::Ours => {
            after_unload("a class event");
            // SAFETY: the callback of an event the module posted.
            Kernel::call(|| unsafe { entry::gmp_rs_event(false) })
        }
        FEvent::Taste(pp) => taste(pp),
        FEvent::Orphan(pp) => {
            let consumers: Vec<(Handle, bool)> = {
                let mut w = world();
                let list: Vec<(Handle, bool)> = w
                    .consumers
                    .iter()
                    .filter(|(_, c)| c.provider == Some(pp) && !c.orphaned)
                    .map(|(h, c)| (*h, w.geoms.get(&c.geom).is_some_and(|g| g.ours)))
                    .collect();
                for (cp, _) in &list {
                    w.consumers.get_mut(cp).expect("consumer").orphaned = true;
                }
                list
            };
            for (cp, ours) in consumers {
                if ours {
                    // SAFETY: a live consumer of the module's geom.
                    Kernel::call(|| unsafe { entry::gmp_rs_orphan(cp as *mut g_consumer) });
                }
            }
        }
        FEvent::Resize(pp, size) => {
            let consumers: Vec<Handle> = {
                let mut w = world();
                if let Some(p) = w.providers.get_mut(&pp) {
                    p.mediasize = size;
                }
                w.consumers
                    .iter()
                    .filter(|(_, c)| {
                        c.provider == Some(pp)
                            && !c.orphaned
                            && w.geoms.get(&c.geom).is_some_and(|g| g.ours && !g.withering)
                    })
                    .map(|(h, _)| *h)
                    .collect()
            };
            for cp in consumers {
                // SAFETY: a live consumer of the module's geom.
                Kernel::call(|| unsafe { entry::gmp_rs_resize(cp as *mut g_consumer) });
            }
            taste(pp);
        }
    });
    world().wash();
    true
}

/// Delivers one completed clone to the module's done method, as g_up does; `false` if none.
/// Safe to call from another thread while a test drives the kernel.
pub fn run_up() -> bool {
    let cbp = {
        let mut w = world();
        let Some(cbp) = w.up.pop_front() else {
            return false;
        };
        w.bios.get_mut(&cbp).expect("clone").in_flight = false;
        cbp
    };
    after_unload("g_up");
    memory::no_sleeping(|| {
        // SAFETY: a completed clone the module made.
        Kernel::call(|| unsafe { entry::gmp_rs_done(cbp as *mut bio) })
    });
    true
}

/// Serves one item of `g_mp_kt`'s queue; `false` if none. Safe to call from another thread
/// while a test drives the kernel.
pub fn run_worker() -> bool {
    let item = world().worker.pop_front();
    let Some((bp, kind)) = item else {
        return false;
    };
    after_unload("g_mp_kt");
    Kernel::call(|| match kind {
        // SAFETY: what the module queued.
        Work::Start => unsafe { entry::gmp_rs_work_start(bp as *mut bio) },
        // SAFETY: what the module queued.
        Work::Done => unsafe { entry::gmp_rs_work_done(bp as *mut bio) },
    });
    true
}

/// Reads `buf.len()` bytes at `offset` through multipath provider `pp` with the module's own
/// start and done, pumping g_up and `g_mp_kt` until the read is home (`g_read_data`).
pub(crate) fn read_through_module(pp: Handle, offset: u64, buf: &mut [u8]) -> i32 {
    let bp = {
        let mut w = world();
        let bp = w.handle();
        w.bios.insert(
            bp,
            FBio {
                cmd: b::KPI_BIO_READ as u16,
                offset,
                length: buf.len() as u64,
                data: std::vec![0; buf.len()],
                to: Some(pp),
                ..FBio::default()
            },
        );
        bp
    };
    memory::no_sleeping(|| {
        // SAFETY: a live request to the module's provider.
        Kernel::call(|| unsafe { entry::gmp_rs_start(bp as *mut bio) })
    });
    for _ in 0..PUMP_LIMIT {
        if world().bios.get(&bp).is_none_or(|b| b.delivered > 0) {
            break;
        }
        if !(run_up() || run_worker()) {
            break;
        }
    }
    let mut w = world();
    let Some(b) = w.bios.remove(&bp) else {
        return 5;
    };
    if b.delivered == 0 {
        w.anomaly(String::from(
            "a read through a multipath provider never came back",
        ));
        return 5;
    }
    if b.error == 0 {
        buf.copy_from_slice(&b.data);
    }
    b.error
}

fn ascii(name: &str, value: &str) -> FParam {
    let mut v = value.as_bytes().to_vec();
    v.push(0);
    FParam {
        name: name.as_bytes().to_vec(),
        flags: b::KPI_GCTL_PARAM_RD | b::KPI_GCTL_PARAM_ASCII,
        value: v,
        changed: false,
    }
}

fn raw(name: &str, value: Vec<u8>) -> FParam {
    FParam {
        name: name.as_bytes().to_vec(),
        flags: b::KPI_GCTL_PARAM_RD,
        value,
        changed: false,
    }
}

/// Builds an ASCII gctl parameter (for hand-made requests).
pub fn param_ascii(name: &str, value: &str) -> FParam {
    ascii(name, value)
}

/// Builds a binary gctl parameter (for hand-made requests).
pub fn param_raw(name: &str, value: &[u8]) -> FParam {
    raw(name, value.to_vec())
}

//! The fake kernel's state: disks, GEOM objects, bios, gctl requests, the g_up / `g_mp_kt` /
//! event queues, fault injection, and what the module printed and fired.
//!
//! Kernel objects are handed to the module as opaque pointers that are really small integers
//! (handles into the tables here), so the module can never reach into them and the fake never
//! dereferences what the module passes back. Everything GEOM would assert (`KASSERT`) is
//! recorded as an *anomaly* instead of panicking across the FFI boundary; the tests require the
//! list to be empty.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::CString;
use std::string::String;
use std::sync::{Mutex, MutexGuard};
use std::vec::Vec;

/// An opaque handle: the integer behind every pointer the fake hands out.
pub type Handle = usize;

/// One disk: its bytes. Providers are paths to disks.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    /// The disk's contents (its media size).
    pub data: Vec<u8>,
}

/// What is behind a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// A path to a disk (index into `World::disks`).
    Disk(usize),
    /// A multipath provider of the module's geom.
    Multipath(Handle),
}

/// A provider.
#[derive(Clone, Debug)]
pub struct FProvider {
    /// Its name.
    pub name: String,
    /// What it serves.
    pub backing: Backing,
    /// Media size.
    pub mediasize: u64,
    /// Sector size.
    pub sectorsize: u32,
    /// Stripe size and offset.
    pub stripe: (u64, u64),
    /// Its geom's rank.
    pub rank: u32,
    /// Access counts (sum over consumers).
    pub acr: i32,
    /// Write count.
    pub acw: i32,
    /// Exclusive count.
    pub ace: i32,
    /// `pp->error`: set when withered or removed; new requests fail with it.
    pub error: i32,
    /// The answer to `GEOM::physpath`.
    pub physpath: String,
    /// Its geom (`None` for disk providers).
    pub geom: Option<Handle>,
}

/// A geom.
#[derive(Clone, Debug)]
pub struct FGeom {
    /// Its name.
    pub name: String,
    /// One of the module's (`MULTIPATH`), as opposed to a user's.
    pub ours: bool,
    /// Its provider, for the module's multipath geoms.
    pub provider: Option<Handle>,
    /// `g_wither_geom` was called.
    pub withering: bool,
}

/// A consumer.
#[derive(Clone, Debug)]
pub struct FConsumer {
    /// Its geom.
    pub geom: Handle,
    /// The provider it is attached to.
    pub provider: Option<Handle>,
    /// Access counts.
    pub acr: i32,
    /// Write count.
    pub acw: i32,
    /// Exclusive count.
    pub ace: i32,
    /// `G_CF_ORPHAN`: its provider went away.
    pub orphaned: bool,
}

impl FConsumer {
    /// A new consumer of geom `geom` attached to `provider`, with no access yet.
    pub fn attached(geom: Handle, provider: Handle) -> FConsumer {
        FConsumer {
            geom,
            provider: Some(provider),
            acr: 0,
            acw: 0,
            ace: 0,
            orphaned: false,
        }
    }
}

/// A bio: a user's request (a root, with the data) or a clone.
#[derive(Clone, Debug, Default)]
pub struct FBio {
    /// `bio_cmd`.
    pub cmd: u16,
    /// `bio_offset`.
    pub offset: u64,
    /// `bio_length`.
    pub length: u64,
    /// The data buffer (roots only; clones use their root's).
    pub data: Vec<u8>,
    /// `bio_attribute`.
    pub attribute: Option<CString>,
    /// `bio_error`.
    pub error: i32,
    /// `bio_completed`.
    pub completed: u64,
    /// `bio_parent`.
    pub parent: Option<Handle>,
    /// `bio_children`.
    pub children: u32,
    /// `bio_inbed`.
    pub inbed: u32,
    /// `bio_driver1`.
    pub driver1: usize,
    /// `bio_to`.
    pub to: Option<Handle>,
    /// `bio_from`.
    pub from: Option<Handle>,
    /// How many times it was delivered (must end at exactly 1 for a user's request).
    pub delivered: u32,
    /// Issued with `kpi_bio_request` and not completed yet.
    pub in_flight: bool,
}

/// One gctl parameter, as the kernel holds it after `gctl_copyin`.
#[derive(Clone, Debug)]
pub struct FParam {
    /// Name (no NUL).
    pub name: Vec<u8>,
    /// `GCTL_PARAM_*`.
    pub flags: i32,
    /// The kernel's copy of the value.
    pub value: Vec<u8>,
    /// Written by the class (`GCTL_PARAM_CHANGED`).
    pub changed: bool,
}

/// A gctl request.
#[derive(Clone, Debug, Default)]
pub struct FReq {
    /// Its parameters.
    pub params: Vec<FParam>,
    /// The first error recorded (`gctl_error`).
    pub error: Option<String>,
}

/// Faults injected on one provider.
#[derive(Clone, Debug, Default)]
pub struct Fault {
    /// Every request fails with this errno.
    pub io: Option<i32>,
    /// ... only the next this many requests (then the fault heals).
    pub io_count: Option<u32>,
    /// `g_attach` fails with this errno.
    pub attach: Option<i32>,
    /// Raising access fails with this errno.
    pub access: Option<i32>,
    /// `g_read_data`/`g_write_data` fail with this errno.
    pub data: Option<i32>,
    /// Completions are held back until released.
    pub hold: bool,
}

/// An item of the GEOM event queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FEvent {
    /// The module's `kpi_post_event`.
    Ours,
    /// `g_new_provider_event`: taste a new provider.
    Taste(Handle),
    /// The provider went away: orphan its consumers.
    Orphan(Handle),
    /// `g_resize_provider_event`.
    Resize(Handle, u64),
}

/// Which queue of `g_mp_kt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// `KPI_WORK_START`.
    Start,
    /// `KPI_WORK_DONE`.
    Done,
}

/// The whole fake kernel.
#[derive(Debug, Default)]
pub struct World {
    next: Handle,
    /// Disks.
    pub disks: Vec<Disk>,
    /// Providers.
    pub providers: BTreeMap<Handle, FProvider>,
    /// Geoms.
    pub geoms: BTreeMap<Handle, FGeom>,
    /// Consumers.
    pub consumers: BTreeMap<Handle, FConsumer>,
    /// Bios.
    pub bios: BTreeMap<Handle, FBio>,
    /// gctl requests.
    pub reqs: BTreeMap<Handle, FReq>,
    /// sbufs.
    pub sbufs: BTreeMap<Handle, String>,
    /// Completed clones waiting for g_up.
    pub up: VecDeque<Handle>,
    /// Completions held back by `Fault::hold`.
    pub held: Vec<Handle>,
    /// `g_mp_kt`'s queue.
    pub worker: VecDeque<(Handle, Work)>,
    /// The GEOM event queue.
    pub events: VecDeque<FEvent>,
    /// Faults by provider name.
    pub faults: BTreeMap<String, Fault>,
    /// Console lines.
    pub console: Vec<String>,
    /// SDT firings, as `config:fail(FRED,md0,5)` / `io:restart(<child>,<parent>)`.
    pub probes: Vec<String>,
    /// Broken kernel rules (what GEOM would KASSERT).
    pub anomalies: Vec<String>,
    /// Every clone the module issued: (clone, provider name).
    pub issued: Vec<(Handle, String)>,
    /// The offset of each clone in `issued`, in the order they were issued.
    pub issued_offsets: Vec<u64>,
    /// `kpi_bio_clone` fails this many more times.
    pub fail_clone: u32,
    /// `kpi_random`'s answer.
    pub random: u32,
    /// `kern.geom.notaste`.
    pub notaste: bool,
    /// The module's life as the kpi_* calls made it: `kpi_setup` succeeded, `g_mp_kt` runs,
    /// the class's events were cancelled.
    pub life: Life,
    /// `kproc_create` fails with this errno (0: it succeeds).
    pub kproc_error: i32,
    /// The calls of the module's life, in order (`setup`, `worker_stop`, `cancel_events`,
    /// `teardown`), and `fini` as the harness made it.
    pub lifecycle: Vec<&'static str>,
}

/// Where the module is in its life, as its kpi_* calls say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Life {
    /// `kpi_setup` succeeded and `kpi_teardown` has not run.
    pub set_up: bool,
    /// `g_mp_kt` runs (from `kpi_setup` to `kpi_worker_stop`).
    pub worker: bool,
    /// The class's events were cancelled: any posted later would call into a module that is
    /// gone.
    pub events_cancelled: bool,
}

static WORLD: Mutex<Option<World>> = Mutex::new(None);

/// The world, locked. Never held across a call into the module.
pub struct WorldGuard(MutexGuard<'static, Option<World>>);

impl core::ops::Deref for WorldGuard {
    type Target = World;
    fn deref(&self) -> &World {
        self.0.as_ref().expect("the fake kernel is booted")
    }
}

impl core::ops::DerefMut for WorldGuard {
    fn deref_mut(&mut self) -> &mut World {
        self.0.as_mut().expect("the fake kernel is booted")
    }
}

/// Locks the world.
pub fn world() -> WorldGuard {
    WorldGuard(WORLD.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Replaces the world with an empty one.
pub fn reset() {
    *WORLD.lock().unwrap_or_else(|e| e.into_inner()) = Some(World {
        next: 0x1000,
        random: 4242,
        ..World::default()
    });
}

/// Drops the world (frees everything it holds).
pub fn clear() {
    *WORLD.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

impl World {
    /// A fresh handle (never 0, never reused).
    pub fn handle(&mut self) -> Handle {
        self.next += 0x10;
        self.next
    }

    /// Records a broken kernel rule.
    pub fn anomaly(&mut self, what: String) {
        self.anomalies.push(what);
    }

    /// The provider called `name` that is not withered, else a withered one.
    pub fn provider_by_name(&self, name: &str) -> Option<Handle> {
        let mut withered = None;
        for (&h, p) in &self.providers {
            if p.name == name {
                if p.error == 0 {
                    return Some(h);
                }
                withered = Some(h);
            }
        }
        withered
    }

    /// The root of a bio (itself, or its topmost parent).
    pub fn root(&self, mut bp: Handle) -> Handle {
        while let Some(parent) = self.bios.get(&bp).and_then(|b| b.parent) {
            bp = parent;
        }
        bp
    }

    /// GEOM's `g_access` rules for `cp` changing by (dr, dw, de) on its provider.
    pub fn access_allowed(&self, cp: Handle, dr: i32, dw: i32, de: i32) -> Result<(), i32> {
        let c = self.consumers.get(&cp).ok_or(6)?;
        let pp = c.provider.ok_or(6)?;
        let p = self.providers.get(&pp).ok_or(6)?;
        if c.acr + dr < 0 || c.acw + dw < 0 || c.ace + de < 0 {
            return Err(-1);
        }
        // Someone else exclusive and we want to write, or someone else writing and we want
        // exclusive: EPERM (g_access).
        if (dw > 0 && p.ace - c.ace > 0) || (de > 0 && p.acw - c.acw > 0) {
            return Err(1);
        }
        if (dr > 0 || dw > 0 || de > 0) && p.error != 0 {
            return Err(p.error);
        }
        Ok(())
    }

    /// Applies an access change already allowed.
    pub fn apply_access(&mut self, cp: Handle, dr: i32, dw: i32, de: i32) {
        let Some(c) = self.consumers.get_mut(&cp) else {
            return;
        };
        c.acr += dr;
        c.acw += dw;
        c.ace += de;
        if let Some(p) = c.provider.and_then(|pp| self.providers.get_mut(&pp)) {
            p.acr += dr;
            p.acw += dw;
            p.ace += de;
        }
    }

    /// The fault to apply to one request on `name`, consuming a counted one.
    pub fn io_fault(&mut self, name: &str) -> Option<i32> {
        let f = self.faults.get_mut(name)?;
        let e = f.io?;
        if let Some(n) = f.io_count.as_mut() {
            *n -= 1;
            if *n == 0 {
                f.io = None;
                f.io_count = None;
            }
        }
        Some(e)
    }

    /// Reads or writes `len` bytes at `offset` of disk `disk` from/into `buf`.
    pub fn disk_io(&mut self, disk: usize, write: bool, offset: u64, buf: &mut [u8]) -> i32 {
        let Some(d) = self.disks.get_mut(disk) else {
            return 6;
        };
        let (Ok(start), Some(end)) = (
            usize::try_from(offset),
            usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(buf.len())),
        ) else {
            return 5;
        };
        if end > d.data.len() {
            return 5;
        }
        if write {
            d.data[start..end].copy_from_slice(buf);
        } else {
            buf.copy_from_slice(&d.data[start..end]);
        }
        0
    }

    /// GEOM's washer: providers withered with no consumer left go, then withering geoms with
    /// neither.
    pub fn wash(&mut self) {
        let dead: Vec<Handle> = self
            .providers
            .iter()
            .filter(|(h, p)| {
                let withering_geom = p
                    .geom
                    .and_then(|g| self.geoms.get(&g))
                    .is_some_and(|g| g.withering);
                (p.error != 0 || withering_geom)
                    && !self.consumers.values().any(|c| c.provider == Some(**h))
            })
            .map(|(h, _)| *h)
            .collect();
        for pp in dead {
            let p = self.providers.remove(&pp);
            if let Some(g) = p.and_then(|p| p.geom).and_then(|g| self.geoms.get_mut(&g)) {
                g.provider = None;
            }
        }
        let dead: Vec<Handle> = self
            .geoms
            .iter()
            .filter(|(h, g)| {
                g.withering
                    && g.provider.is_none()
                    && !self.consumers.values().any(|c| c.geom == **h)
            })
            .map(|(h, _)| *h)
            .collect();
        for gp in dead {
            self.geoms.remove(&gp);
        }
    }
}

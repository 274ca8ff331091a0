//! An in-memory GEOM for tests, benchmarks and fuzzing (feature `testkit`): disks made of
//! sparse sectors, providers that are paths to those disks (two providers on one disk are
//! two paths to it), and a [`Topology`] that records every call and can be told to fail
//! attach, access, reads and writes per provider.
//!
//! It also owns the driver's side of the polling contract in [`MemTopology::drain`]: print
//! nothing, but keep every event, and run deferred work in FIFO order, so tests see exactly
//! what a driver would.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::class::Class;
use crate::ctl::Request;
use crate::errno::Errno;
use crate::event::{Event, Message, Probe};
use crate::metadata::{Metadata, VERSION};
use crate::state::Mode;
use crate::topology::{Deferred, GeomId, PathId, ProviderInfo, Topology};
use crate::wire::Reply;

/// One disk: its geometry and the sectors written so far (unwritten sectors read as zero).
#[derive(Clone, Debug, Default)]
pub struct Disk {
    /// Size in bytes.
    pub mediasize: u64,
    /// Sector size in bytes.
    pub sectorsize: u32,
    /// Written sectors by byte offset.
    pub sectors: BTreeMap<u64, Vec<u8>>,
}

/// A multipath provider as the framework sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemGeom {
    /// Geom name.
    pub name: String,
    /// Provider media size.
    pub mediasize: u64,
    /// Provider sector size.
    pub sectorsize: u32,
    /// Withered with this error.
    pub withered: Option<Errno>,
}

/// The in-memory framework.
#[derive(Clone, Debug, Default)]
pub struct MemTopology {
    /// Disks by index.
    pub disks: Vec<Disk>,
    /// Providers by name: the disk each one is a path to, and its stripe geometry.
    pub providers: BTreeMap<String, (usize, u64, u64)>,
    /// Which provider each attached path is on.
    pub attached: BTreeMap<PathId, String>,
    /// Each attached path's access counts.
    pub access: BTreeMap<PathId, (i32, i32, i32)>,
    /// Live multipath geoms.
    pub geoms: BTreeMap<GeomId, MemGeom>,
    /// Attaching to these providers fails with the given error.
    pub fail_attach: BTreeMap<String, Errno>,
    /// Raising access on these providers fails with the given error.
    pub fail_access: BTreeMap<String, Errno>,
    /// Reads through these providers fail with the given error.
    pub fail_read: BTreeMap<String, Errno>,
    /// Writes through these providers fail with the given error.
    pub fail_write: BTreeMap<String, Errno>,
    /// Providers whose taste read fails.
    pub unreadable: BTreeSet<String>,
    /// What `GEOM::ident` answers for these providers (unknown for the others).
    pub idents: BTreeMap<String, String>,
    /// Every call, in order, as text (`attach FRED md0`, `access md0 1 1 1`, …).
    pub calls: Vec<String>,
    /// Every event the class emitted, in order.
    pub events: Vec<Event>,
    /// Deferred work waiting to run.
    pub queue: VecDeque<Deferred>,
}

impl MemTopology {
    /// An empty framework.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a disk; returns its index.
    pub fn add_disk(&mut self, mediasize: u64, sectorsize: u32) -> usize {
        self.disks.push(Disk {
            mediasize,
            sectorsize,
            sectors: BTreeMap::new(),
        });
        self.disks.len() - 1
    }

    /// Adds provider `name` as a path to `disk`.
    pub fn add_provider(&mut self, name: &str, disk: usize) {
        self.providers.insert(String::from(name), (disk, 0, 0));
    }

    /// A disk with `n` providers `<prefix>0`…: the usual "one disk, n paths".
    pub fn disk_with_paths(
        &mut self,
        prefix: &str,
        n: usize,
        mediasize: u64,
        sectorsize: u32,
    ) -> usize {
        let disk = self.add_disk(mediasize, sectorsize);
        for i in 0..n {
            self.add_provider(&format!("{prefix}{i}"), disk);
        }
        disk
    }

    /// Removes provider `name` (the caller then orphans its paths).
    pub fn remove_provider(&mut self, name: &str) {
        self.providers.remove(name);
    }

    /// Writes a label to the last sector of `disk`, as `gmultipath label` would.
    pub fn write_label(&mut self, disk: usize, name: &str, uuid: &str, mode: Mode) {
        let d = &self.disks[disk];
        let md = Metadata {
            uuid: String::from(uuid),
            name: String::from(name),
            sectorsize: d.sectorsize,
            size: d.mediasize,
            mode,
        };
        let sector = md.encode(d.sectorsize as usize).expect("valid label");
        let offset = d.mediasize - u64::from(d.sectorsize);
        self.disks[disk].sectors.insert(offset, sector);
    }

    /// The label in the last sector of `disk`, if one decodes.
    pub fn label(&self, disk: usize) -> Option<Metadata> {
        let d = &self.disks[disk];
        let offset = d.mediasize - u64::from(d.sectorsize);
        crate::metadata::decode(d.sectors.get(&offset)?).ok()
    }

    /// `true` if the last sector of `disk` was written with zeros.
    pub fn label_erased(&self, disk: usize) -> bool {
        let d = &self.disks[disk];
        let offset = d.mediasize - u64::from(d.sectorsize);
        d.sectors
            .get(&offset)
            .is_some_and(|s| s.iter().all(|&b| b == 0))
    }

    /// The provider info of `name`.
    pub fn info(&self, name: &str) -> Option<ProviderInfo> {
        let &(disk, stripesize, stripeoffset) = self.providers.get(name)?;
        let d = &self.disks[disk];
        Some(ProviderInfo {
            name: String::from(name),
            mediasize: d.mediasize,
            sectorsize: d.sectorsize,
            stripesize,
            stripeoffset,
            rank: 1,
        })
    }

    /// Collects the class's events and runs its deferred work until both are empty, as a
    /// driver does after every input.
    pub fn drain(&mut self, class: &mut Class) {
        loop {
            while let Some(e) = class.poll_event() {
                self.events.push(e);
            }
            while let Some(d) = class.poll_deferred() {
                self.queue.push_back(d);
            }
            let Some(work) = self.queue.pop_front() else {
                break;
            };
            class.run_deferred(self, work);
        }
    }

    /// Runs a verb the way geom(8) sends it (`class`, `verb`, `version`, the given boolean
    /// options, `nargs`, `arg0`…, `output`), drains, and returns the reply.
    pub fn verb(
        &mut self,
        class: &mut Class,
        verb: &str,
        flags: &[(&str, bool)],
        args: &[&str],
    ) -> Reply {
        let mut req = Request::for_verb("MULTIPATH", verb, VERSION);
        for &(name, on) in flags {
            req.add_int(name, i32::from(on));
        }
        req.add_args(args);
        req.add_output("output", crate::ctl::OUTPUT_LEN);
        class.ctl(self, &mut req);
        self.drain(class);
        Reply::from_request(&req)
    }

    /// Runs `configure` on geom `name` the way gmultipath sends it, with the mode flags off
    /// and the given extension settings (`("queue_timeout", "10")`), drains, and returns the
    /// reply.
    pub fn configure(&mut self, class: &mut Class, name: &str, settings: &[(&str, &str)]) -> Reply {
        let mut req = Request::for_verb("MULTIPATH", "configure", VERSION);
        for flag in ["active_active", "active_passive", "active_read"] {
            req.add_int(flag, 0);
        }
        for &(setting, value) in settings {
            req.add_ascii(setting, value);
        }
        req.add_args(&[name]);
        req.add_output("output", crate::ctl::OUTPUT_LEN);
        class.ctl(self, &mut req);
        self.drain(class);
        Reply::from_request(&req)
    }

    /// Tastes provider `name` (the random value for a rename is fixed at 1234), drains.
    pub fn taste(&mut self, class: &mut Class, name: &str) -> Option<GeomId> {
        let info = self.info(name)?;
        let g = class.taste(self, &info, 1234);
        self.drain(class);
        g
    }

    /// The console messages emitted so far, as text, and forgets them (probes are kept).
    pub fn take_messages(&mut self) -> Vec<String> {
        let out = self
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Log(m) => Some(m.to_string()),
                Event::Probe(_) => None,
            })
            .collect();
        self.events.retain(|e| matches!(e, Event::Probe(_)));
        out
    }

    /// The probes fired so far (events are kept).
    pub fn probes(&self) -> Vec<Probe> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Probe(p) => Some(p.clone()),
                Event::Log(_) => None,
            })
            .collect()
    }

    /// The console messages emitted so far (events are kept).
    pub fn messages(&self) -> Vec<Message> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Log(m) => Some(m.clone()),
                Event::Probe(_) => None,
            })
            .collect()
    }

    fn disk_of(&self, name: &str) -> Option<usize> {
        self.providers.get(name).map(|&(d, _, _)| d)
    }

    fn path_disk(&self, path: PathId) -> Result<(String, usize), Errno> {
        let name = self.attached.get(&path).ok_or(Errno::ENXIO)?;
        let disk = self.disk_of(name).ok_or(Errno::ENXIO)?;
        Ok((name.clone(), disk))
    }

    fn read_disk(&self, disk: usize, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let d = &self.disks[disk];
        if offset + buf.len() as u64 > d.mediasize {
            return Err(Errno::EIO);
        }
        match d.sectors.get(&offset) {
            Some(s) if s.len() >= buf.len() => buf.copy_from_slice(&s[..buf.len()]),
            _ => buf.fill(0),
        }
        Ok(())
    }
}

impl Topology for MemTopology {
    fn ident(&self, name: &str) -> Option<String> {
        self.idents.get(name).cloned()
    }

    fn provider(&self, name: &str) -> Option<ProviderInfo> {
        self.info(name)
    }

    fn taste_read(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.calls.push(format!("taste_read {name}"));
        if self.unreadable.contains(name) {
            return Err(Errno::EIO);
        }
        let disk = self.disk_of(name).ok_or(Errno::ENXIO)?;
        self.read_disk(disk, offset, buf)
    }

    fn new_geom(&mut self, geom: GeomId, name: &str) {
        self.calls.push(format!("new_geom {name}"));
        self.geoms.insert(
            geom,
            MemGeom {
                name: String::from(name),
                ..MemGeom::default()
            },
        );
    }

    fn set_provider_geometry(&mut self, geom: GeomId, mediasize: u64, sectorsize: u32) {
        if let Some(g) = self.geoms.get_mut(&geom) {
            g.mediasize = mediasize;
            g.sectorsize = sectorsize;
        }
    }

    fn resize_provider(&mut self, geom: GeomId, mediasize: u64) {
        self.calls.push(format!("resize_provider {mediasize}"));
        if let Some(g) = self.geoms.get_mut(&geom) {
            g.mediasize = mediasize;
        }
    }

    fn wither_provider(&mut self, geom: GeomId, error: Errno) {
        self.calls.push(String::from("wither_provider"));
        if let Some(g) = self.geoms.get_mut(&geom) {
            g.withered = Some(error);
        }
    }

    fn wither_geom(&mut self, geom: GeomId) {
        let name = self.geoms.remove(&geom).map(|g| g.name).unwrap_or_default();
        self.calls.push(format!("wither_geom {name}"));
    }

    fn attach(&mut self, geom: GeomId, path: PathId, name: &str) -> Result<(), Errno> {
        let gname = self
            .geoms
            .get(&geom)
            .map(|g| g.name.clone())
            .unwrap_or_default();
        self.calls.push(format!("attach {gname} {name}"));
        if let Some(&e) = self.fail_attach.get(name) {
            return Err(e);
        }
        if !self.providers.contains_key(name) {
            return Err(Errno::ENXIO);
        }
        self.attached.insert(path, String::from(name));
        self.access.insert(path, (0, 0, 0));
        Ok(())
    }

    fn access(&mut self, path: PathId, dr: i32, dw: i32, de: i32) -> Result<(), Errno> {
        let name = self.attached.get(&path).cloned().unwrap_or_default();
        self.calls.push(format!("access {name} {dr} {dw} {de}"));
        if dr > 0 || dw > 0 || de > 0 {
            if let Some(&e) = self.fail_access.get(&name) {
                return Err(e);
            }
        }
        let counts = self.access.entry(path).or_insert((0, 0, 0));
        counts.0 += dr;
        counts.1 += dw;
        counts.2 += de;
        assert!(
            counts.0 >= 0 && counts.1 >= 0 && counts.2 >= 0,
            "negative access count on {name}: {counts:?}"
        );
        Ok(())
    }

    fn detach(&mut self, path: PathId) {
        let name = self.attached.remove(&path).unwrap_or_default();
        let counts = self.access.remove(&path).unwrap_or_default();
        assert_eq!(counts, (0, 0, 0), "detach of {name} with access held");
        self.calls.push(format!("detach {name}"));
    }

    fn read(&mut self, path: PathId, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let (name, disk) = self.path_disk(path)?;
        self.calls.push(format!("read {name} {offset}"));
        if let Some(&e) = self.fail_read.get(&name) {
            return Err(e);
        }
        let a = self.access.get(&path).copied().unwrap_or_default();
        assert!(a.0 > 0, "read of {name} without read access");
        self.read_disk(disk, offset, buf)
    }

    fn write(&mut self, path: PathId, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let (name, disk) = self.path_disk(path)?;
        self.calls.push(format!("write {name} {offset}"));
        if let Some(&e) = self.fail_write.get(&name) {
            return Err(e);
        }
        let a = self.access.get(&path).copied().unwrap_or_default();
        assert!(a.1 > 0, "write to {name} without write access");
        if offset + data.len() as u64 > self.disks[disk].mediasize {
            return Err(Errno::EIO);
        }
        self.disks[disk].sectors.insert(offset, data.to_vec());
        Ok(())
    }
}

/// Geom ids the real class gives to A/P geoms named `names`, each made with `create` over
/// a 1 MiB disk of its own: for exports and owners tested without a class of their own.
pub fn geom_ids(names: &[&str]) -> Vec<GeomId> {
    let mut topo = MemTopology::new();
    let mut class = Class::default();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let prefix = format!("d{i}x");
            topo.disk_with_paths(&prefix, 1, 1 << 20, 512);
            let path = format!("{prefix}0");
            let flags = [("active_active", false), ("active_read", false)];
            let reply = topo.verb(&mut class, "create", &flags, &[name, &path]);
            assert_eq!(reply.error, "", "create {name}");
            class.find_geom(name).expect("the geom just created")
        })
        .collect()
}

/// A UUID-looking text for labels in tests: `00000000-0000-0000-0000-00000000000n`.
pub fn test_uuid(n: u32) -> String {
    format!("00000000-0000-0000-0000-{n:012}")
}

/// The version the verbs expect, re-exported for tests that build requests by hand.
pub const CTL_VERSION: u32 = VERSION;

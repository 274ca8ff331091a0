//! The core's [`Topology`] over the kernel: each method is one `kpi_*` call on the kernel
//! object behind a [`GeomId`] or [`PathId`].
//!
//! This module also owns the two-way maps between the class's ids and the kernel's objects
//! (a geom and its provider; a path and its consumer). An entry is made when the class creates
//! the object (`new_geom`, `attach`) and dropped when the class lets it go (`wither_geom`,
//! `detach`), so a pointer the kernel hands in later (a request's geom, an orphaned consumer)
//! either names a live id or is not the class's.
//!
//! Taste reads its sector before taking the class gate (the read may open a multipath provider
//! and so call the class's own access method); [`KernelTopology::preread`] holds that sector
//! for the core's `taste_read`.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use geom_multipath::{Errno, GeomId, PathId, ProviderInfo, Topology};

use crate::ffi::{Consumer, Geom, Provider};
use crate::route;

/// A multipath geom in the kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GeomEntry {
    /// The geom.
    pub(crate) gp: Geom,
    /// Its provider, `multipath/<name>`.
    pub(crate) pp: Provider,
    /// The stripe geometry last given to the provider.
    pub(crate) stripe: (u64, u64),
}

/// Taste's sector, read before the class was entered.
#[derive(Debug)]
pub(crate) struct PreRead {
    /// The provider read.
    pub(crate) name: String,
    /// Where.
    pub(crate) offset: u64,
    /// What came back: the bytes, or the error.
    pub(crate) data: Result<Vec<u8>, Errno>,
}

/// The kernel objects behind the class's ids.
#[derive(Debug, Default)]
pub(crate) struct KernelTopology {
    geoms: BTreeMap<GeomId, GeomEntry>,
    by_gp: BTreeMap<Geom, GeomId>,
    paths: BTreeMap<PathId, (Consumer, Geom)>,
    by_cp: BTreeMap<Consumer, PathId>,
    /// The sector taste read for the core, while a taste runs.
    pub(crate) preread: Option<PreRead>,
    /// The provider GEOM handed to taste, while a taste runs: a path attached by taste is
    /// attached to it, never to another provider that happens to have the same name.
    pub(crate) tasting: Option<Provider>,
}

impl KernelTopology {
    /// The class's id for a geom of this class.
    pub(crate) fn geom_of(&self, gp: Geom) -> Option<GeomId> {
        self.by_gp.get(&gp).copied()
    }

    /// The kernel geom and provider behind an id.
    pub(crate) fn geom(&self, id: GeomId) -> Option<&GeomEntry> {
        self.geoms.get(&id)
    }

    /// The class's id for one of its consumers.
    pub(crate) fn path_of(&self, cp: Consumer) -> Option<PathId> {
        self.by_cp.get(&cp).copied()
    }

    /// The consumer behind a path.
    pub(crate) fn consumer(&self, id: PathId) -> Option<Consumer> {
        self.paths.get(&id).map(|&(cp, _)| cp)
    }

    /// Every geom the class has in the kernel.
    pub(crate) fn geoms_mut(&mut self) -> impl Iterator<Item = (&GeomId, &mut GeomEntry)> {
        self.geoms.iter_mut()
    }

    /// Whether `pp` belongs to one of the class's own geoms.
    fn is_ours(&self, pp: Provider) -> bool {
        pp.geom().is_some_and(|gp| self.by_gp.contains_key(&gp))
    }
}

impl Topology for KernelTopology {
    fn provider(&self, name: &str) -> Option<ProviderInfo> {
        Provider::by_name(name).map(Provider::info)
    }

    fn taste_read(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if let Some(pre) = &self.preread {
            if pre.name == name && pre.offset == offset {
                let data = pre.data.as_ref().map_err(|&e| e)?;
                if data.len() == buf.len() {
                    buf.copy_from_slice(data);
                    return Ok(());
                }
            }
        }
        let pp = Provider::by_name(name).ok_or(Errno::ENXIO)?;
        if self.is_ours(pp) {
            // Reading a multipath provider needs the class, which this thread holds.
            return Err(Errno(crate::bindings::KPI_EDEADLK));
        }
        pp.taste_read(offset, buf)
    }

    fn new_geom(&mut self, geom: GeomId, name: &str) {
        // g_new_geomf and g_new_providerf sleep for memory; they do not fail.
        let Some((gp, pp)) = Geom::create(name) else {
            return;
        };
        self.geoms.insert(
            geom,
            GeomEntry {
                gp,
                pp,
                stripe: (0, 0),
            },
        );
        self.by_gp.insert(gp, geom);
        route::add(gp, geom);
    }

    fn set_provider_geometry(&mut self, geom: GeomId, mediasize: u64, sectorsize: u32) {
        if let Some(e) = self.geoms.get(&geom) {
            e.pp.set_geometry(mediasize, sectorsize);
        }
    }

    fn resize_provider(&mut self, geom: GeomId, mediasize: u64) {
        if let Some(e) = self.geoms.get(&geom) {
            e.pp.resize(mediasize);
        }
    }

    fn wither_provider(&mut self, geom: GeomId, error: Errno) {
        if let Some(e) = self.geoms.get(&geom) {
            route::revoke(e.gp);
            e.pp.wither(error);
        }
    }

    fn wither_geom(&mut self, geom: GeomId) {
        if let Some(e) = self.geoms.remove(&geom) {
            self.by_gp.remove(&e.gp);
            route::remove(e.gp);
            e.gp.wither(Errno::ENXIO);
        }
    }

    fn attach(&mut self, geom: GeomId, path: PathId, name: &str) -> Result<(), Errno> {
        let gp = self.geoms.get(&geom).ok_or(Errno::ENXIO)?.gp;
        // Taste attaches the provider it was handed (as add_disk(gp, pp) does); a verb names
        // its providers, and those are looked up by name, as FreeBSD's verbs do.
        let pp = match self.tasting {
            Some(pp) if pp.name() == name => pp,
            _ => Provider::by_name(name).ok_or(Errno::ENXIO)?,
        };
        if pp.on_class() {
            // A multipath provider as a path (or one resting on a multipath provider through
            // other classes) would send the class's own opens and I/O back through the
            // class, which they would then wait for: refused whatever the access counts.
            return Err(Errno(crate::bindings::KPI_EDEADLK));
        }
        let cp = gp.attach(pp)?;
        self.paths.insert(path, (cp, gp));
        self.by_cp.insert(cp, path);
        Ok(())
    }

    fn access(&mut self, path: PathId, dr: i32, dw: i32, de: i32) -> Result<(), Errno> {
        if dr == 0 && dw == 0 && de == 0 {
            return Ok(());
        }
        let &(cp, gp) = self.paths.get(&path).ok_or(Errno::ENXIO)?;
        if dr < 0 || dw < 0 || de < 0 {
            // Requests sent directly on this path come back before its access drops.
            route::drain(gp, Some(path));
        }
        cp.access(dr, dw, de)
    }

    fn detach(&mut self, path: PathId) {
        if let Some((cp, gp)) = self.paths.remove(&path) {
            self.by_cp.remove(&cp);
            route::drain(gp, Some(path));
            cp.detach();
        }
    }

    fn read(&mut self, path: PathId, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        self.consumer(path).ok_or(Errno::ENXIO)?.read(offset, buf)
    }

    fn write(&mut self, path: PathId, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.consumer(path).ok_or(Errno::ENXIO)?.write(offset, data)
    }
}

//! How geoms and paths come and go: `g_multipath_create`, `g_multipath_add_disk`,
//! `g_multipath_destroy`, `g_mpd` (detach), `g_multipath_orphan`, `g_multipath_access` and
//! `g_multipath_resize`, plus the metadata read/write helpers they share.
//!
//! Every function here takes the [`Topology`] because each mirrors a FreeBSD function that
//! calls the framework synchronously. Destroying is a small state machine: the first call
//! marks the geom stopping; an open provider is withered and the rest waits for the last
//! close; otherwise each path is detached (a path that held write access is detached one
//! event later, behind the re-taste its close provokes) and the geom goes when the last path
//! has.

use alloc::string::String;
use alloc::vec;

use crate::class::{Class, Geom, Member, Path, Provider, BAD, LOST, NEW, POSTED, WITHER};
use crate::errno::Errno;
use crate::event::{Message, Probe};
use crate::health::Health;
use crate::metadata::{self, Metadata};
use crate::queue::Waiting;
use crate::state::Mode;
use crate::timer::{Stamp, SEC};
use crate::topology::{Deferred, GeomId, PathId, ProviderInfo, Topology};

/// The result of asking a geom to go away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destroyed {
    /// The geom is gone.
    Now,
    /// The geom is stopping; it goes on the last close or when its paths have detached
    /// (FreeBSD's EINPROGRESS, which the verbs treat as success).
    InProgress,
}

/// What a new geom starts from: a decoded label, or the in-memory metadata `create` builds.
pub(crate) struct NewGeom<'a> {
    pub(crate) name: &'a str,
    pub(crate) uuid: &'a str,
    pub(crate) mode: Mode,
    pub(crate) size: u64,
    pub(crate) sectorsize: u32,
}

impl<'a> From<&'a Metadata> for NewGeom<'a> {
    fn from(md: &'a Metadata) -> Self {
        NewGeom {
            name: &md.name,
            uuid: &md.uuid,
            mode: md.mode,
            size: md.size,
            sectorsize: md.sectorsize,
        }
    }
}

impl Class {
    /// `g_multipath_create`: a new geom, unless a geom that is not stopping has the name.
    pub(crate) fn create_geom(
        &mut self,
        topo: &mut dyn Topology,
        md: NewGeom<'_>,
    ) -> Option<GeomId> {
        if self
            .geom_order
            .iter()
            .any(|&id| !self.live_geom(id).stopping && self.live_geom(id).name == md.name)
        {
            self.log(Message::NameExists {
                geom: String::from(md.name),
            });
            return None;
        }
        let automatic = !md.uuid.is_empty();
        let mut provider = Provider::default();
        if md.size != 0 {
            provider.mediasize = md.size.saturating_sub(if automatic {
                u64::from(md.sectorsize)
            } else {
                0
            });
            provider.sectorsize = md.sectorsize;
        }
        let geom = Geom {
            name: String::from(md.name),
            uuid: String::from(md.uuid),
            mode: md.mode,
            active: None,
            ndisks: 0,
            opened: 0,
            stopping: false,
            size: md.size,
            provider,
            members: vec::Vec::new(),
            settings: self.presets.get(md.name).copied().unwrap_or_default(),
            preferred: None,
            next_check: None,
            next_sample: None,
            rr_cursor: 0,
            rr_left: 0,
            waiting: Waiting::default(),
            linger: None,
            stats: crate::stats::GeomStats::default(),
        };
        let id = GeomId(self.geoms.insert(geom));
        self.geom_order.insert(0, id);
        topo.new_geom(id, md.name);
        let g = self.live_geom(id);
        if g.provider.mediasize != 0 {
            let (size, sector) = (g.provider.mediasize, g.provider.sectorsize);
            topo.set_provider_geometry(id, size, sector);
        }
        self.log(Message::Created {
            geom: String::from(md.name),
        });
        Some(id)
    }

    /// A path of `geom`, and its identity, that says it is another disk than `ident` —
    /// when both are known (beyond FreeBSD: paths whose identities differ are two disks
    /// that carry the same label, a cloned image or a LUN snapshot, not two paths to one).
    fn other_disk(&self, geom: GeomId, ident: Option<&str>) -> Option<(String, String)> {
        let mine = ident?;
        // Kernel order: the newest path first.
        self.live_geom(geom).members.iter().rev().find_map(|m| {
            let p = self.live_path(m.id);
            match &p.ident {
                Some(theirs) if !p.orphaned && theirs != mine => {
                    Some((p.name.clone(), theirs.clone()))
                }
                _ => None,
            }
        })
    }

    /// `g_multipath_add_disk`: attach provider `pp` as a new (newest) path of `geom`.
    pub(crate) fn add_disk(
        &mut self,
        topo: &mut dyn Topology,
        geom: GeomId,
        pp: &ProviderInfo,
    ) -> Result<PathId, Errno> {
        let gname = self.live_geom(geom).name.clone();
        if self.attached_to(geom, &pp.name).is_some() {
            self.log(Message::AlreadyAttached {
                path: pp.name.clone(),
                geom: gname,
            });
            return Err(Errno::EEXIST);
        }
        let ident = topo.ident(&pp.name);
        if let Some((other, theirs)) = self.other_disk(geom, ident.as_deref()) {
            self.log(Message::OtherDisk {
                path: pp.name.clone(),
                geom: gname,
                ident: ident.unwrap_or_default(),
                other,
                other_ident: theirs,
            });
            return Err(Errno::EINVAL);
        }
        let index = self.live_geom(geom).members.len();
        let path = PathId(self.paths.insert(Path {
            ident,
            geom,
            name: pp.name.clone(),
            mediasize: pp.mediasize,
            sectorsize: pp.sectorsize,
            rank: pp.rank,
            index,
            acr: 0,
            acw: 0,
            ace: 0,
            orphaned: false,
            health: Health::default(),
            stats: alloc::boxed::Box::default(),
        }));
        // The newest path goes to the end of the list: first in kernel order.
        self.live_geom_mut(geom)
            .members
            .push(Member::new(path, NEW));
        if let Err(e) = topo.attach(geom, path, &pp.name) {
            self.log(Message::CannotAttach {
                path: pp.name.clone(),
                geom: gname,
            });
            self.forget_path(path);
            return Err(e);
        }
        let prov = &self.live_geom(geom).provider;
        let extra = i32::from(self.tunables.exclusive() != 0);
        let (r, w, e) = (prov.acr + extra, prov.acw + extra, prov.ace + extra);
        if let Err(error) = topo.access(path, r, w, e) {
            self.log(Message::CannotSetAccess {
                path: pp.name.clone(),
                geom: gname,
                error,
            });
            topo.detach(path);
            self.forget_path(path);
            return Err(error);
        }
        let p = self.live_path_mut(path);
        (p.acr, p.acw, p.ace) = (r, w, e);
        let g = self.live_geom_mut(geom);
        if g.size == 0 {
            let automatic = !g.uuid.is_empty();
            g.size = pp.mediasize.saturating_sub(if automatic {
                u64::from(pp.sectorsize)
            } else {
                0
            });
            g.provider.mediasize = g.size;
            g.provider.sectorsize = pp.sectorsize;
            topo.set_provider_geometry(geom, g.size, pp.sectorsize);
        }
        let g = self.live_geom_mut(geom);
        if g.provider.stripesize == 0 && g.provider.stripeoffset == 0 {
            g.provider.stripesize = pp.stripesize;
            g.provider.stripeoffset = pp.stripeoffset;
        }
        self.member_mut(path).flags = 0;
        let g = self.live_geom_mut(geom);
        g.ndisks += 1;
        g.linger = None;
        self.log(Message::Added {
            path: pp.name.clone(),
            geom: gname.clone(),
        });
        let g = self.live_geom_mut(geom);
        if g.active.is_none() {
            g.active = Some(path);
            if g.mode != Mode::ActiveActive {
                self.log(Message::NowActive {
                    path: pp.name.clone(),
                    geom: gname,
                });
            }
        }
        Ok(path)
    }

    /// The path of `geom` attached to the live provider `name` (`cp->provider == pp`).
    pub(crate) fn attached_to(&self, geom: GeomId, name: &str) -> Option<PathId> {
        self.order(geom).find(|&pid| {
            let p = self.live_path(pid);
            !p.orphaned && p.name == name
        })
    }

    /// Drops a path from its geom and the slab (after `g_detach` or a failed attach).
    fn forget_path(&mut self, path: PathId) {
        let Some(p) = self.paths.remove(path.0) else {
            return;
        };
        let g = self.live_geom_mut(p.geom);
        if g.preferred == Some(path) {
            g.preferred = None;
        }
        let members = &mut g.members;
        members.remove(p.index);
        let moved: vec::Vec<PathId> = members[p.index..].iter().map(|m| m.id).collect();
        for id in moved {
            self.live_path_mut(id).index -= 1;
        }
    }

    /// `g_multipath_destroy`.
    pub(crate) fn destroy(&mut self, topo: &mut dyn Topology, geom: GeomId) -> Destroyed {
        if self.geoms.get(geom.0).is_none() {
            return Destroyed::Now;
        }
        if !self.live_geom(geom).stopping {
            let name = self.live_geom(geom).name.clone();
            self.log(Message::Destroying { geom: name });
            self.live_geom_mut(geom).stopping = true;
            self.fail_waiting(geom);
        }
        if self.live_geom(geom).opened != 0 {
            if !self.live_geom(geom).provider.withered {
                self.live_geom_mut(geom).provider.withered = true;
                topo.wither_provider(geom, Errno::ENXIO);
            }
            return Destroyed::InProgress;
        }
        for path in self.order_vec(geom) {
            if self.geoms.get(geom.0).is_none() {
                return Destroyed::Now; // the last detach destroyed the geom
            }
            if self.paths.get(path.0).is_none() {
                continue;
            }
            let m = self.member_mut(path);
            if m.flags & POSTED == 0 {
                m.flags |= POSTED;
                self.mpd(topo, path);
            }
        }
        if self.geoms.get(geom.0).is_none() {
            return Destroyed::Now;
        }
        if !self.live_geom(geom).members.is_empty() {
            return Destroyed::InProgress;
        }
        self.free_geom(topo, geom);
        Destroyed::Now
    }

    /// The last step of a destroy: `GEOM_MULTIPATH: <g> destroyed` and `g_wither_geom`.
    fn free_geom(&mut self, topo: &mut dyn Topology, geom: GeomId) {
        if let Some(g) = self.geoms.remove(geom.0) {
            self.geom_order.retain(|&id| id != geom);
            self.log(Message::Destroyed { geom: g.name });
            topo.wither_geom(geom);
        }
    }

    /// `g_mpd`: detach a path. A path that held write access on a live provider first drops
    /// its access and is re-posted, so that the re-taste its close provokes finds it still
    /// attached and MULTIPATH does not grab the provider again at once.
    pub(crate) fn mpd(&mut self, topo: &mut dyn Topology, path: PathId) {
        let Some(p) = self.paths.get(path.0) else {
            return;
        };
        if p.acr > 0 || p.acw > 0 || p.ace > 0 {
            let (r, w, e, orphaned) = (p.acr, p.acw, p.ace, p.orphaned);
            // Dropping access cannot fail in GEOM; a driver error changes nothing here.
            let _ = topo.access(path, -r, -w, -e);
            let p = self.live_path_mut(path);
            (p.acr, p.acw, p.ace) = (0, 0, 0);
            if w > 0 && !orphaned {
                self.member_mut(path).flags |= WITHER;
                self.post_detach(path);
                return;
            }
        }
        let p = self.live_path(path);
        let (geom, name) = (p.geom, p.name.clone());
        let gname = self.live_geom(geom).name.clone();
        self.log(Message::Removed {
            path: name.clone(),
            geom: gname.clone(),
        });
        self.probe(Probe::Remove {
            geom: gname,
            path: name,
        });
        topo.detach(path);
        self.forget_path(path);
        if self.live_geom(geom).members.is_empty() && !self.linger(geom) {
            self.destroy(topo, geom);
        }
    }

    /// An open geom that queues and just lost its last path is not destroyed at once, as
    /// FreeBSD's is: it stays, BROKEN and empty, for `queue_timeout` seconds, so a path
    /// that returns (taste, `add`) finds it and the waiting requests resume. `true` if it
    /// lingers.
    fn linger(&mut self, geom: GeomId) -> bool {
        let g = self.live_geom(geom);
        let timeout = g.settings.queue_timeout(&self.tunables);
        if g.stopping || g.opened == 0 || timeout == 0 {
            return false;
        }
        self.live_geom_mut(geom).linger = Some(Stamp::After(u64::from(timeout) * SEC));
        self.want_clock();
        true
    }

    /// Runs one piece of deferred work from [`poll_deferred`](Class::poll_deferred).
    pub fn run_deferred(&mut self, topo: &mut dyn Topology, work: Deferred) {
        match work {
            Deferred::Detach(path) => self.mpd(topo, path),
            Deferred::DestroyIfEmpty(geom) => {
                if self.geoms.get(geom.0).is_some_and(|g| g.members.is_empty()) {
                    self.destroy(topo, geom);
                }
            }
        }
    }

    /// `g_multipath_orphan`: the path's provider went away. The path becomes LOST (which may
    /// elect another active path or restore failed ones) and is detached once idle.
    pub fn orphan(&mut self, topo: &mut dyn Topology, path: PathId) {
        let Some(p) = self.paths.get_mut(path.0) else {
            return;
        };
        if p.orphaned {
            return;
        }
        p.orphaned = true;
        let (geom, name) = (p.geom, p.name.clone());
        let was_lost = self.member(path).flags & LOST != 0;
        let gname = self.live_geom(geom).name.clone();
        self.log(Message::Disconnected {
            path: name.clone(),
            geom: gname.clone(),
        });
        self.probe(Probe::Disconnect {
            geom: gname,
            path: name,
        });
        if !was_lost {
            self.live_geom_mut(geom).ndisks -= 1;
        }
        self.fault(path, LOST);
        if self.member(path).inflight > 0 {
            self.wake_for_orphan();
        }
        self.detach_if_idle(topo, path);
    }

    /// Detaches a LOST path now if nothing is in flight on it and no detach is posted.
    pub(crate) fn detach_if_idle(&mut self, topo: &mut dyn Topology, path: PathId) {
        let probing = self.live_path(path).health.probing;
        let m = self.member_mut(path);
        if m.inflight == 0 && !probing && m.flags & POSTED == 0 {
            m.flags |= POSTED;
            self.mpd(topo, path);
        }
    }

    /// `g_multipath_access`: someone opened or closed the multipath provider; apply the same
    /// change to every path (withering ones excepted), rolling back on error. A positive
    /// request with no usable path fails with ENXIO. The last close of a stopping geom
    /// finishes its destroy.
    pub fn access(
        &mut self,
        topo: &mut dyn Topology,
        geom: GeomId,
        dr: i32,
        dw: i32,
        de: i32,
    ) -> Result<(), Errno> {
        if self.geoms.get(geom.0).is_none() {
            return Err(Errno::ENXIO);
        }
        let positive = dr > 0 || dw > 0 || de > 0;
        let paths = self.order_vec(geom);
        let mut applied = 0;
        let mut result = if positive { Err(Errno::ENXIO) } else { Ok(()) };
        for &path in &paths {
            if self.member(path).flags & WITHER != 0 {
                continue;
            }
            result = topo.access(path, dr, dw, de);
            if result.is_err() {
                break;
            }
            let p = self.live_path_mut(path);
            p.acr += dr;
            p.acw += dw;
            p.ace += de;
            applied += 1;
        }
        if let Err(e) = result {
            let usable: vec::Vec<PathId> = paths
                .iter()
                .copied()
                .filter(|&p| self.member(p).flags & WITHER == 0)
                .take(applied)
                .collect();
            for path in usable {
                // Undoing a change that just succeeded; nothing sensible to do on error.
                let _ = topo.access(path, -dr, -dw, -de);
                let p = self.live_path_mut(path);
                p.acr -= dr;
                p.acw -= dw;
                p.ace -= de;
            }
            return Err(e);
        }
        let g = self.live_geom_mut(geom);
        g.opened += dr + dw + de;
        g.provider.acr += dr;
        g.provider.acw += dw;
        g.provider.ace += de;
        if g.stopping && g.opened == 0 {
            self.destroy(topo, geom);
        }
        Ok(())
    }

    /// `g_multipath_resize`: the provider under `path` changed size to `pp.mediasize`.
    ///
    /// The geom follows the smallest path. An AUTOMATIC geom that shrank must still find its
    /// label at the new end of that path, or it is destroyed; otherwise its label is
    /// rewritten at the new last sector.
    pub fn resize(&mut self, topo: &mut dyn Topology, path: PathId, pp: &ProviderInfo) {
        let Some(p) = self.paths.get_mut(path.0) else {
            return;
        };
        p.mediasize = pp.mediasize;
        p.sectorsize = pp.sectorsize;
        let geom = p.geom;
        if self.live_geom(geom).stopping {
            return;
        }
        let sc_size = self.live_geom(geom).size;
        let (size, ssize) = if pp.mediasize < sc_size {
            (pp.mediasize, pp.sectorsize)
        } else {
            let smallest = self
                .order(geom)
                .map(|pid| self.live_path(pid))
                .filter(|p| !p.orphaned)
                .min_by_key(|p| p.mediasize)
                .map(|p| (p.mediasize, p.sectorsize));
            match smallest {
                Some((size, ssize)) if size != sc_size => (size, ssize),
                _ => return,
            }
        };
        let g = self.live_geom(geom);
        let automatic = !g.uuid.is_empty();
        let psize = size.saturating_sub(if automatic { u64::from(ssize) } else { 0 });
        self.log(Message::SizeChanged {
            geom: g.name.clone(),
            from: g.provider.mediasize,
            to: psize,
        });
        if automatic && size < sc_size && !self.label_still_matches(topo, path, size, ssize) {
            self.destroy(topo, geom);
            return;
        }
        let g = self.live_geom_mut(geom);
        g.size = size;
        g.provider.mediasize = psize;
        topo.resize_provider(geom, psize);
        if automatic {
            let g = self.live_geom(geom);
            let md = Metadata {
                uuid: g.uuid.clone(),
                name: g.name.clone(),
                sectorsize: ssize,
                size,
                mode: g.mode,
            };
            if let Err(error) = self.write_metadata(topo, path, &md) {
                let path = self.live_path(path).name.clone();
                self.log(Message::CantUpdateMetadata { path, error });
            }
        }
    }

    /// Resize's check of a shrunk AUTOMATIC path: the label at its new end still names this
    /// geom and agrees with the new size.
    fn label_still_matches(
        &mut self,
        topo: &mut dyn Topology,
        path: PathId,
        size: u64,
        ssize: u32,
    ) -> bool {
        let Ok(md) = self.read_metadata(topo, path) else {
            return false;
        };
        let g = self.live_geom(self.live_path(path).geom);
        md.uuid == g.uuid
            && md.name == g.name
            && (md.size == 0 || md.size == size)
            && (md.sectorsize == 0 || md.sectorsize == ssize)
    }

    /// `g_multipath_read_metadata`: the label in the path's last sector.
    pub(crate) fn read_metadata(
        &mut self,
        topo: &mut dyn Topology,
        path: PathId,
    ) -> Result<Metadata, Errno> {
        topo.access(path, 1, 0, 0)?;
        let p = self.live_path(path);
        let mut sector = vec![0u8; p.sectorsize as usize];
        let result = topo.read(path, last_sector(p), &mut sector);
        let _ = topo.access(path, -1, 0, 0);
        result?;
        metadata::decode(&sector).map_err(|_| Errno::EINVAL)
    }

    /// `g_multipath_write_metadata`: write `md` to the path's last sector, holding r1w1e1
    /// around the write.
    pub(crate) fn write_metadata(
        &mut self,
        topo: &mut dyn Topology,
        path: PathId,
        md: &Metadata,
    ) -> Result<(), Errno> {
        let p = self.live_path(path);
        let sector = md
            .encode(p.sectorsize as usize)
            .map_err(|_| Errno::EINVAL)?;
        self.write_last_sector(topo, path, &sector)
    }

    /// Writes one whole sector at the end of the path, holding r1w1e1 around the write.
    pub(crate) fn write_last_sector(
        &mut self,
        topo: &mut dyn Topology,
        path: PathId,
        sector: &[u8],
    ) -> Result<(), Errno> {
        topo.access(path, 1, 1, 1)?;
        let offset = last_sector(self.live_path(path));
        let result = topo.write(path, offset, sector);
        let _ = topo.access(path, -1, -1, -1);
        result
    }

    /// Module unload (`g_multipath_fini` after GEOM's own check): refuses with EBUSY while
    /// any multipath provider is open; otherwise destroys every geom. (GEOM itself also
    /// counts the paths' own access, so with `exclusive=1` FreeBSD refuses while any geom
    /// exists; the kernel module gets that from GEOM, the host stops idle geoms.)
    pub fn destroy_all(&mut self, topo: &mut dyn Topology) -> Result<(), Errno> {
        if self
            .geom_order
            .iter()
            .any(|&gid| self.live_geom(gid).opened != 0)
        {
            return Err(Errno::EBUSY);
        }
        for gid in self.geom_order.clone() {
            self.destroy(topo, gid);
        }
        while let Some(work) = self.poll_deferred() {
            self.run_deferred(topo, work);
        }
        Ok(())
    }

    /// `true` if the path carries no requests: FAIL, LOST or NEW (`MP_BAD`, for the verbs).
    pub(crate) fn is_bad(&self, path: PathId) -> bool {
        self.member(path).flags & BAD != 0
    }
}

/// Byte offset of a path's last sector.
fn last_sector(p: &Path) -> u64 {
    p.mediasize.saturating_sub(u64::from(p.sectorsize))
}

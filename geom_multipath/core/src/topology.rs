//! The boundary between the class and the GEOM framework it lives in.
//!
//! FreeBSD's class calls a handful of framework functions *synchronously* and shapes its
//! answers on their results: `g_attach` and `g_access` can fail and make `create` undo
//! itself; `g_write_data` can fail and becomes `configure`'s error text. Those calls are the
//! [`Topology`] trait, which the class receives as an argument of every control-path input
//! (verbs, taste, orphan, resize, access, deferred work). The kernel module implements it
//! with the real KPI; the host with its open path descriptors and its export; tests with an
//! in-memory fake.
//!
//! The data path never sees this trait: routing a request and completing one are pure
//! decisions (`Class::start`, `Class::done`), and anything they need done later (detaching
//! a drained path, FreeBSD's `g_post_event(g_mpd, …)`) is queued as [`Deferred`] work that
//! the driver collects with `Class::poll_deferred` and hands back, in FIFO order, through
//! `Class::run_deferred`.

use alloc::string::String;

use crate::errno::Errno;
use crate::slab::Key;

/// A multipath geom (FreeBSD: `struct g_geom` of class MULTIPATH, with its softc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GeomId(pub(crate) Key);

/// A path of a geom (FreeBSD: a `struct g_consumer` of a multipath geom).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathId(pub(crate) Key);

impl GeomId {
    /// A number unique among live geoms, stable for the geom's life (for logs and tables).
    pub fn index(self) -> u64 {
        (u64::from(self.0.generation) << 32) | u64::from(self.0.slot)
    }
}

impl PathId {
    /// A number unique among live paths, stable for the path's life (for logs and tables).
    pub fn index(self) -> u64 {
        (u64::from(self.0.generation) << 32) | u64::from(self.0.slot)
    }
}

/// What the class needs to know about a provider it may attach to (a path's device).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The provider's name, as under /dev (`da0`, `loop3`, `md0.nop`).
    pub name: String,
    /// Media size in bytes.
    pub mediasize: u64,
    /// Logical sector size in bytes.
    pub sectorsize: u32,
    /// Stripe size in bytes (0: none).
    pub stripesize: u64,
    /// Stripe offset in bytes.
    pub stripeoffset: u64,
    /// The rank of the provider's geom (a disk is 1); a multipath geom ranks one above its
    /// highest path.
    pub rank: u32,
}

/// Work the class asked to be done later, in FIFO order with the framework's other events
/// (FreeBSD's `g_post_event`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deferred {
    /// Detach this path (FreeBSD's `g_mpd`).
    Detach(PathId),
    /// Destroy this geom if it still has no path: a geom that lost its last path while
    /// requests could wait for one lingered `queue_timeout` seconds and none came back.
    DestroyIfEmpty(GeomId),
}

/// The GEOM framework services the class calls synchronously. Each method names the FreeBSD
/// function it stands for.
pub trait Topology {
    /// `g_provider_by_name`: the provider called `name` (no `/dev/` prefix), if it exists.
    fn provider(&self, name: &str) -> Option<ProviderInfo>;

    /// Taste's private read (`g_new_consumer` + `g_attach` + `g_access(1,0,0)` +
    /// `g_read_data` + undo) of `buf.len()` bytes at `offset` of provider `name`.
    fn taste_read(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> Result<(), Errno>;

    /// `g_new_geomf` + `g_new_providerf("multipath/%s")` + `g_error_provider(pp, 0)`: a new
    /// geom and its provider, with no size yet.
    fn new_geom(&mut self, geom: GeomId, name: &str);

    /// Sets the multipath provider's geometry (FreeBSD assigns `pp->mediasize` and friends
    /// directly when the first path arrives).
    fn set_provider_geometry(&mut self, geom: GeomId, mediasize: u64, sectorsize: u32);

    /// `g_resize_provider`: the multipath provider changes size.
    fn resize_provider(&mut self, geom: GeomId, mediasize: u64);

    /// `g_wither_provider(pp, error)`: the multipath provider goes away; open handles see
    /// `error` on every further request.
    fn wither_provider(&mut self, geom: GeomId, error: Errno);

    /// `g_wither_geom`: the geom is gone (its provider too, if not withered already).
    fn wither_geom(&mut self, geom: GeomId);

    /// `g_new_consumer` + `g_attach`: attach `path` of `geom` to provider `name`.
    fn attach(&mut self, geom: GeomId, path: PathId, name: &str) -> Result<(), Errno>;

    /// `g_access(cp, dr, dw, de)`: change the path's access counts by the given deltas.
    fn access(&mut self, path: PathId, dr: i32, dw: i32, de: i32) -> Result<(), Errno>;

    /// `g_detach` + `g_destroy_consumer`: the path lets go of its provider.
    fn detach(&mut self, path: PathId);

    /// `g_read_data`: read `buf.len()` bytes at `offset` through the path.
    fn read(&mut self, path: PathId, offset: u64, buf: &mut [u8]) -> Result<(), Errno>;

    /// `g_write_data`: write `data` at `offset` through the path.
    fn write(&mut self, path: PathId, offset: u64, data: &[u8]) -> Result<(), Errno>;

    /// `g_getattr("GEOM::ident")`: who the disk behind provider `name` says it is (a
    /// serial number, a WWID; for a disk backed by a file, that file's device and inode,
    /// as md(4) answers `MD-DEV<dev>-INO<ino>`), or `None` when it cannot say. The default
    /// knows nothing, and then paths join as on FreeBSD.
    fn ident(&self, name: &str) -> Option<String> {
        let _ = name;
        None
    }
}

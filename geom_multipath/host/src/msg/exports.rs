//! The table of multipath providers the host exports, shared between the owner (which
//! alone changes it, as the class creates, sizes and withers providers) and the export
//! servers (FUSE, NBD), which read it to answer lookups and sizes.
//!
//! An entry exists from the provider's creation until it withers; a server that still has
//! a handle on a withered provider keeps its [`GeomId`] and gets ENXIO from the owner.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use geom_multipath::GeomId;

/// One exported provider, `multipath/<name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// The geom name (`FRED`): the file is `/dev/multipath/FRED`.
    pub name: String,
    /// The geom to send requests to.
    pub geom: GeomId,
    /// Size in bytes (0 until the first path arrives).
    pub mediasize: u64,
    /// Sector size in bytes.
    pub sectorsize: u32,
    /// A number unique to this provider for the host's lifetime (a FUSE inode).
    pub ino: u64,
}

/// Every exported provider, by name.
#[derive(Debug, Default)]
pub struct Exports {
    by_name: BTreeMap<String, Export>,
    next_ino: u64,
    generation: u64,
    watchers: Watchers,
}

/// A function told of every change to the table (see [`Exports::watch`]).
pub type OnChange = Box<dyn Fn() + Send + Sync>;

/// Identifies a watcher, to remove it with [`Exports::unwatch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchId(u64);

/// The watchers of a table.
#[derive(Default)]
struct Watchers {
    next: u64,
    list: Vec<(u64, OnChange)>,
}

impl std::fmt::Debug for Watchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Watchers({})", self.list.len())
    }
}

/// The table as the threads share it.
pub type SharedExports = Arc<RwLock<Exports>>;

impl Exports {
    /// An empty table (inode numbers start above the FUSE root's 1).
    pub fn new() -> Exports {
        Exports {
            by_name: BTreeMap::new(),
            next_ino: 2,
            generation: 0,
            watchers: Watchers::default(),
        }
    }

    /// A new provider, not yet sized.
    pub fn add(&mut self, name: &str, geom: GeomId) {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.generation += 1;
        self.by_name.insert(
            name.to_string(),
            Export {
                name: name.to_string(),
                geom,
                mediasize: 0,
                sectorsize: 0,
                ino,
            },
        );
        self.notify();
    }

    /// Sets a provider's size (and sector size, when given).
    pub fn resize(&mut self, geom: GeomId, mediasize: u64, sectorsize: Option<u32>) {
        if let Some(e) = self.by_name.values_mut().find(|e| e.geom == geom) {
            e.mediasize = mediasize;
            if let Some(s) = sectorsize {
                e.sectorsize = s;
            }
            self.generation += 1;
            self.notify();
        }
    }

    /// Removes a provider (withered or destroyed).
    pub fn remove(&mut self, geom: GeomId) -> Option<Export> {
        let name = self.by_name.values().find(|e| e.geom == geom)?.name.clone();
        self.generation += 1;
        let removed = self.by_name.remove(&name);
        self.notify();
        removed
    }

    /// The provider called `name`.
    pub fn get(&self, name: &str) -> Option<&Export> {
        self.by_name.get(name)
    }

    /// The provider with inode `ino`.
    pub fn by_ino(&self, ino: u64) -> Option<&Export> {
        self.by_name.values().find(|e| e.ino == ino)
    }

    /// The provider of `geom`.
    pub fn by_geom(&self, geom: GeomId) -> Option<&Export> {
        self.by_name.values().find(|e| e.geom == geom)
    }

    /// Every provider, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Export> {
        self.by_name.values()
    }

    /// Bumped on every change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Calls `f` after every change from now on (an export server wakes its listener
    /// thread). It runs on the changing thread with the table's write lock held: it must
    /// be short and must not touch the table (write to an eventfd, send on a channel).
    pub fn watch(&mut self, f: impl Fn() + Send + Sync + 'static) -> WatchId {
        let id = self.watchers.next;
        self.watchers.next += 1;
        self.watchers.list.push((id, Box::new(f)));
        WatchId(id)
    }

    /// Stops calling the watcher `id`.
    pub fn unwatch(&mut self, id: WatchId) {
        self.watchers.list.retain(|(i, _)| *i != id.0);
    }

    fn notify(&self) {
        for (_, w) in &self.watchers.list {
            w();
        }
    }
}

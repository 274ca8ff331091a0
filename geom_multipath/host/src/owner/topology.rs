//! The class's view of the host and the host's events to the class: tasting providers,
//! devices appearing, changing and going away, NBD paths being attached and supervised,
//! and [`HostTopology`], the [`Topology`] through which the core acts on the host's
//! provider table, path bindings and export table.
//!
//! Reads and writes the class itself makes (taste, labels) run on a helper thread with a
//! deadline, so a hung device costs a thread, never the owner.

use super::*;

impl Owner {
    /// Tastes provider `name` (GEOM's taste of a new or re-opened provider).
    pub fn taste(&mut self, name: &str) {
        let Some(info) = self.providers.info(name).cloned() else {
            return;
        };
        if self.class.paths_on_provider(name).next().is_some() {
            return;
        }
        let sector = match self.read_last_sector(&info) {
            Ok(s) => s,
            Err(e) => {
                if self.class.tunables().debug() != 0 {
                    self.console.print(
                        Level::Debug,
                        format!("{name}: taste read failed: error {e}"),
                    );
                }
                return;
            }
        };
        let random = self.random();
        let (class, mut topo) = self.class_and_topology(Some((name.to_string(), sector)));
        class.taste(&mut topo, &info, random);
        self.drain();
    }

    /// Taste's private read of the last sector, with a deadline.
    pub(super) fn read_last_sector(&mut self, info: &ProviderInfo) -> Result<Vec<u8>, Errno> {
        if info.sectorsize == 0 || info.mediasize < u64::from(info.sectorsize) {
            return Err(Errno::EINVAL);
        }
        let outcome = self
            .providers
            .access(&info.name, Consumer::Taste, 1, 0, 0)?;
        self.queue_retastes(outcome.retaste);
        let device = self.providers.device(&info.name).ok_or(Errno::ENXIO);
        let offset = info.mediasize - u64::from(info.sectorsize);
        let len = info.sectorsize as usize;
        let result = device.and_then(|d| {
            blocking(TASTE_DEADLINE, move || {
                let mut buf = IoBuf::zeroed(len);
                d.read_at(buf.as_mut_slice(), offset)
                    .map(|()| buf.as_slice().to_vec())
            })
        });
        if let Ok(outcome) = self.providers.access(&info.name, Consumer::Taste, -1, 0, 0) {
            self.queue_retastes(outcome.retaste);
        }
        result
    }

    pub(super) fn queue_retastes(&mut self, names: Vec<String>) {
        self.queue.extend(names.into_iter().map(Job::Retaste));
    }

    pub(super) fn random(&mut self) -> u32 {
        // xorshift64*: only the taste-rename suffix needs randomness.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as u32
    }

    /// `true` if the host may use block device `name`, whose backing file (for a loop
    /// device) is `backing`. A pattern is a name (`loop3`), a name prefix ending in `*`
    /// (`sd*`), or an absolute directory: loop devices whose backing file lies below it.
    pub fn allowed(&self, name: &str, backing: Option<&std::path::Path>) -> bool {
        match &self.settings.devices {
            None => true,
            Some(list) => list.iter().any(|p| {
                if p.starts_with('/') {
                    backing.is_some_and(|b| b.starts_with(p))
                } else if let Some(prefix) = p.strip_suffix('*') {
                    name.starts_with(prefix)
                } else {
                    p == name
                }
            }),
        }
    }

    /// A block device appeared or changed: add it, resize its paths, or orphan them.
    pub fn device_changed(&mut self, name: &str, now: Option<(ProviderInfo, Source)>) {
        match now {
            None => {
                self.pending_up.remove(name);
                self.provider_gone(name);
            }
            // A reconnected NBD path whose dead connection is still held (its orphaned
            // consumer waits for requests in flight): the new connection becomes the
            // provider once the old one is let go, never under the old holders.
            Some(up) if self.providers.lingers(name) => {
                self.pending_up.insert(name.to_string(), up);
            }
            Some((info, source)) => {
                let known = self.providers.info(name).cloned();
                match known {
                    Some(old) if old.mediasize == info.mediasize => {}
                    Some(_) => self.provider_resized(&info),
                    None => {
                        self.providers.insert(info, source);
                        self.taste(name);
                    }
                }
            }
        }
    }

    /// Inserts and tastes the reconnected providers whose predecessors are gone now.
    pub(super) fn admit_pending(&mut self) {
        let ready: Vec<String> = self
            .pending_up
            .keys()
            .filter(|n| !self.providers.lingers(n))
            .cloned()
            .collect();
        for name in ready {
            if let Some(up) = self.pending_up.remove(&name) {
                self.device_changed(&name, Some(up));
            }
        }
    }

    /// Makes NBD URI `name` a provider if it is not one yet: connects (within the connect
    /// timeout), inserts and tastes it, and keeps it connected from then on. Failure is
    /// logged; the verb that named it then says the provider was not found.
    pub fn attach_nbd(&mut self, name: &str) {
        if !nbd::is_uri(name) || self.providers.info(name).is_some() {
            return;
        }
        let Some(uri) = self.usable_nbd_uri(name) else {
            return;
        };
        // No deadline in the client: the class's io_timeout (and its per-path override)
        // applies to NBD paths as to any other, with fencing before a reissue.
        match self
            .nbd
            .attach(&uri.text, self.handle.clone(), Duration::ZERO)
        {
            Ok((info, device)) => self.device_changed(name, Some((info, Source::Fixed(device)))),
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// Keeps NBD URI `name` connected from now on without waiting for it: it becomes a
    /// provider (and is tasted) whenever its server answers. For the daemon's start-up
    /// paths, whose servers may come up after the daemon.
    pub fn supervise_nbd(&mut self, name: &str) {
        if let Some(uri) = self.usable_nbd_uri(name) {
            if let Err(e) = self
                .nbd
                .supervise(&uri.text, self.handle.clone(), Duration::ZERO)
            {
                tracing::warn!("{e}");
            }
        }
    }

    /// `name` parsed as an NBD URI, unless it is not one or it is this daemon's own export
    /// (a path through itself would loop); says why not.
    pub(super) fn usable_nbd_uri(&self, name: &str) -> Option<NbdUri> {
        match NbdUri::parse(name) {
            Ok(uri) if self.settings.own_nbd.serves(&uri) => {
                tracing::warn!(
                    "{name}: this is gmultipathd's own NBD export; refusing a path through itself"
                );
                None
            }
            Ok(uri) => Some(uri),
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        }
    }

    /// Attaches the NBD URIs among a request's `argN` parameters.
    pub(super) fn attach_nbd_args(&mut self, req: &Request) {
        let uris: Vec<String> = req
            .params()
            .iter()
            .filter(|p| {
                p.name
                    .strip_prefix("arg")
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .filter_map(|p| p.value.split(|&b| b == 0).next())
            .filter_map(|v| std::str::from_utf8(v).ok())
            .filter(|v| nbd::is_uri(v))
            .map(String::from)
            .collect();
        for uri in uris {
            self.attach_nbd(&uri);
        }
    }

    /// A provider went away: its holders are orphaned, and NOPs stacked on it destroyed.
    pub fn provider_gone(&mut self, name: &str) {
        for holder in self.providers.remove(name) {
            if let Consumer::Path(p) = holder {
                self.with_topology(|class, topo| class.orphan(topo, p));
            }
        }
        self.with_nop(|nop, host| nop.orphan(host, name));
    }

    /// Runs `f` with the NOP class and its view of the host, then carries out the
    /// providers it created, resized or destroyed.
    pub(super) fn with_nop<R>(
        &mut self,
        f: impl FnOnce(&mut NopClass, &mut NopAdapter<'_>) -> R,
    ) -> R {
        let mut adapter = NopAdapter {
            providers: &mut self.providers,
            console: &mut self.console,
            changes: Vec::new(),
        };
        let r = f(&mut self.nop, &mut adapter);
        let changes = adapter.changes;
        for change in changes {
            match change {
                NopChange::Created(info, device) => {
                    let Some(lower) = self.nop.info(&info.name).map(|i| i.underlying) else {
                        continue;
                    };
                    let name = info.name.clone();
                    self.providers
                        .insert(info, Source::Stacked { lower, device });
                    self.queue.push_back(Job::Retaste(name));
                }
                NopChange::Resized(info) => self.provider_resized(&info),
                NopChange::Destroyed(name) => {
                    for holder in self.providers.remove(&name) {
                        if let Consumer::Path(p) = holder {
                            self.with_topology(|class, topo| class.orphan(topo, p));
                        }
                    }
                }
            }
        }
        self.drain();
        r
    }

    /// A provider changed size: its paths follow, and so do NOPs stacked on it.
    pub(super) fn provider_resized(&mut self, info: &ProviderInfo) {
        self.providers.set_size(&info.name, info.mediasize);
        let paths: Vec<PathId> = self.class.paths_on_provider(&info.name).collect();
        for p in paths {
            self.with_topology(|class, topo| class.resize(topo, p, info));
        }
        self.with_nop(|nop, host| nop.resized(host, info));
    }

    /// Adds a provider and tastes it (the tests' way to give the owner a device).
    #[cfg(any(test, feature = "testkit"))]
    pub fn add_provider(&mut self, info: ProviderInfo, source: Source) {
        let name = info.name.clone();
        self.providers.insert(info, source);
        self.taste(&name);
    }
}

/// Runs `f` on a helper thread and waits at most `deadline` for it: a device that hangs
/// costs a thread, never the owner. A timeout is ETIMEDOUT.
pub(super) fn blocking<T: Send + 'static>(
    deadline: Duration,
    f: impl FnOnce() -> Result<T, Errno> + Send + 'static,
) -> Result<T, Errno> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("blocking-io".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|_| Errno::ENOMEM)?;
    rx.recv_timeout(deadline)
        .unwrap_or(Err(Errno(libc::ETIMEDOUT)))
}

/// The class's view of the host: providers, path bindings, exports, and the queue.
pub(crate) struct HostTopology<'a> {
    pub(super) providers: &'a mut ProviderTable,
    pub(super) paths: &'a mut BTreeMap<PathId, String>,
    pub(super) exports: &'a SharedExports,
    pub(super) workers: &'a mut Workers,
    pub(super) queue: &'a mut VecDeque<Job>,
    /// The sector a taste read in advance, for its provider.
    pub(super) tasted: Option<(String, Vec<u8>)>,
}

impl HostTopology<'_> {
    fn device(&self, path: PathId) -> Result<Arc<dyn Device>, Errno> {
        let name = self.paths.get(&path).ok_or(Errno::ENXIO)?;
        self.providers.device(name).ok_or(Errno::ENXIO)
    }

    fn exports(&self) -> std::sync::RwLockWriteGuard<'_, crate::msg::exports::Exports> {
        self.exports.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Topology for HostTopology<'_> {
    fn provider(&self, name: &str) -> Option<ProviderInfo> {
        self.providers.info(name).cloned()
    }

    fn ident(&self, name: &str) -> Option<String> {
        self.providers.ident(name)
    }

    fn taste_read(&mut self, name: &str, _offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        match &self.tasted {
            Some((n, sector)) if n == name && sector.len() == buf.len() => {
                buf.copy_from_slice(sector);
                Ok(())
            }
            _ => Err(Errno::EIO),
        }
    }

    fn new_geom(&mut self, geom: GeomId, name: &str) {
        self.exports().add(name, geom);
    }

    fn set_provider_geometry(&mut self, geom: GeomId, mediasize: u64, sectorsize: u32) {
        self.exports().resize(geom, mediasize, Some(sectorsize));
    }

    fn resize_provider(&mut self, geom: GeomId, mediasize: u64) {
        self.exports().resize(geom, mediasize, None);
    }

    fn wither_provider(&mut self, geom: GeomId, _error: Errno) {
        self.exports().remove(geom);
    }

    fn wither_geom(&mut self, geom: GeomId) {
        self.exports().remove(geom);
    }

    fn attach(&mut self, _geom: GeomId, path: PathId, name: &str) -> Result<(), Errno> {
        self.providers.info(name).ok_or(Errno::ENXIO)?;
        self.paths.insert(path, name.to_string());
        Ok(())
    }

    fn access(&mut self, path: PathId, dr: i32, dw: i32, de: i32) -> Result<(), Errno> {
        let name = self.paths.get(&path).ok_or(Errno::ENXIO)?.clone();
        let outcome = self
            .providers
            .access(&name, Consumer::Path(path), dr, dw, de)?;
        self.queue
            .extend(outcome.retaste.into_iter().map(Job::Retaste));
        Ok(())
    }

    fn detach(&mut self, path: PathId) {
        self.paths.remove(&path);
        self.workers.close(path);
    }

    fn read(&mut self, path: PathId, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let device = self.device(path)?;
        let len = buf.len();
        let data = blocking(CONTROL_IO_DEADLINE, move || {
            let mut b = IoBuf::zeroed(len);
            device.read_at(b.as_mut_slice(), offset).map(|()| b)
        })?;
        buf.copy_from_slice(data.as_slice());
        Ok(())
    }

    fn write(&mut self, path: PathId, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let device = self.device(path)?;
        let buf = IoBuf::from_slice(data);
        blocking(CONTROL_IO_DEADLINE, move || {
            device
                .write_at(buf.as_slice(), offset)
                .and_then(|()| device.flush())
        })
    }
}

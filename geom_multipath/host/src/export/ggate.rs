//! `/dev/multipath/NAME` on FreeBSD: every multipath provider in the
//! [`Exports`](crate::msg::exports::Exports) table
//! becomes a GEOM Gate device named `multipath/NAME` (`G_GATE_NAME_GIVEN` on `/dev/ggctl`),
//! so it is a real GEOM provider with a real device node: newfs, mount, gpart, swapon and
//! the kernel's own classes use it as they use a disk.
//!
//! This module owns the gate devices and their threads: one manager thread that keeps the
//! devices in step with the table (woken by the table's watcher, and on a timer while a
//! device could not be made), and per device a few worker threads, each looping on START
//! (blocks in the kernel until a request is queued) → a request to the owner
//! ([`OwnerHandle::io`]) → DONE. It never calls the core, and the owner never waits for it:
//! a request's reply closure only hands the outcome to the waiting worker. The ioctls go
//! through the [`GateControl`] trait, so that tests drive this code with a fake ggctl on
//! Linux; on FreeBSD it is `/dev/ggctl` itself (`geom_multipath_sys::ggctl::Ggctl`).
//!
//! # Semantics
//!
//! * READ, WRITE, FLUSH and DELETE (BIO_DELETE) go to the owner and their outcome goes back
//!   as the request's error. Anything else (BIO_SPEEDUP; the GATE class answers GETATTR
//!   itself) is answered EOPNOTSUPP without bothering the owner. A write longer than the
//!   worker's buffer comes back from START as ENOMEM with the length it needs: the worker
//!   grows its buffer and STARTs again (the request stays queued meanwhile). An owner error
//!   of EAGAIN is sent as EIO: to the GATE class EAGAIN means "queue it again".
//! * **Access.** A gate device tells its daemon of no opens or closes, so the export holds
//!   access r1w1 on the provider for the device's whole life (r1 and a read-only device,
//!   `G_GATE_FLAG_READONLY`, if writing is refused with EPERM), taken before the device is
//!   made and given back, exactly once, after it is destroyed and its workers are done.
//!   The provider therefore always counts as open: `gmultipath stop` and `destroy` wither
//!   it (the gate device is destroyed, with force, and its users get ENXIO, as with any
//!   withered provider) and the geom goes once the access is back; unload (`gmultipath
//!   unload`) refuses with EBUSY while any multipath provider is exported, as the kernel
//!   module does with `kern.geom.multipath.exclusive=1` while any geom exists. (The FUSE
//!   export on Linux takes access per open instead.)
//! * A provider is exported once it has a size; a resize is passed on
//!   (`G_GATE_CMD_MODIFY`); a change of sector size, or a device that disappeared under the
//!   daemon (e.g. `ggatel destroy -f`), makes a new device.
//! * **A previous daemon's device.** A daemon that died leaves its gate devices behind,
//!   their requests queued or taken. When CREATE answers EEXIST, the export takes the
//!   device over: `G_GATE_CMD_CANCEL` puts every request the dead daemon had taken back at
//!   the head of the queue (their order kept) and answers the device's unit, whose size is
//!   then set to the provider's and whose requests are served (its sector size stays the
//!   one it was made with). A device whose provider never comes back stays until it is
//!   destroyed by hand (`ggatel destroy -f -u UNIT`; `ggatel list -v` shows `gmultipathd`
//!   in its info).
//! * **Stopping.** A provider that leaves the table (withered, destroyed) and, at the end,
//!   every device, is destroyed with force: START sleepers wake with ECANCELED, requests
//!   still queued fail with ENXIO, and a DONE for a request the kernel already failed is
//!   ignored by it. [`GateExport::stop`] returns once every worker has ended and every
//!   access is given back.
//!
//! No request timeout is asked of the GATE class (`gctl_timeout` 0): the class's own
//! `io_timeout` applies to the paths, and a request is answered when the owner answers it.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use geom_multipath::{Errno, GeomId};
use geom_multipath_sys::ggate::{
    Finished, GateSpec, Started, BIO_DELETE, BIO_FLUSH, BIO_READ, BIO_WRITE, G_GATE_FLAG_READONLY,
};

use crate::export::access::{is_ready, AccessGuard};
use crate::msg::exports::{Export, SharedExports, WatchId};
use crate::msg::{IoOp, IoReply, IoRequest, OwnerHandle};
use crate::path::device::IoBuf;

/// Worker threads per gate device: the requests one device can have in flight.
pub const WORKERS_PER_DEVICE: usize = 8;
/// A worker's buffer for write data to start with (a longer write grows it).
pub const INITIAL_BUFFER: usize = 128 << 10;
/// The longest request a worker takes on (far above `kern.maxphys`, which bounds what
/// GEOM sends a provider).
pub const MAX_REQUEST: usize = 256 << 20;
/// How often a device that could not be made (no usable path yet, the class busy) is
/// tried again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// How long the manager sleeps when nothing is pending (any table change wakes it).
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// The ioctls of `/dev/ggctl` the export uses, one method each, with the kernel's answers
/// (see [`geom_multipath_sys::ggate`]). Every method may be called from several threads at
/// once; `start` blocks until a request is queued or the device is being destroyed.
pub trait GateControl: Send + Sync + 'static {
    /// `G_GATE_CMD_CREATE` of `spec` under its given name: the unit.
    fn create(&self, spec: &GateSpec) -> io::Result<i32>;
    /// `G_GATE_CMD_CANCEL` of every request taken from the device called `name`: its
    /// unit.
    fn cancel_all(&self, name: &str) -> io::Result<i32>;
    /// `G_GATE_CMD_MODIFY` of unit `unit`'s size.
    fn resize(&self, unit: i32, mediasize: u64) -> io::Result<()>;
    /// `G_GATE_CMD_DESTROY` of unit `unit`.
    fn destroy(&self, unit: i32, force: bool) -> io::Result<()>;
    /// `G_GATE_CMD_START` on unit `unit`, write data into `buf`.
    fn start(&self, unit: i32, buf: &mut [u8]) -> io::Result<Started>;
    /// `G_GATE_CMD_DONE` on unit `unit`, a successful read's data from `data`.
    fn done(&self, unit: i32, done: &Finished, data: &[u8]) -> io::Result<()>;
}

#[cfg(target_os = "freebsd")]
impl GateControl for geom_multipath_sys::ggctl::Ggctl {
    fn create(&self, spec: &GateSpec) -> io::Result<i32> {
        geom_multipath_sys::ggctl::Ggctl::create(self, spec)
    }
    fn cancel_all(&self, name: &str) -> io::Result<i32> {
        geom_multipath_sys::ggctl::Ggctl::cancel_all(self, name)
    }
    fn resize(&self, unit: i32, mediasize: u64) -> io::Result<()> {
        geom_multipath_sys::ggctl::Ggctl::resize(self, unit, mediasize)
    }
    fn destroy(&self, unit: i32, force: bool) -> io::Result<()> {
        geom_multipath_sys::ggctl::Ggctl::destroy(self, unit, force)
    }
    fn start(&self, unit: i32, buf: &mut [u8]) -> io::Result<Started> {
        geom_multipath_sys::ggctl::Ggctl::start(self, unit, buf)
    }
    fn done(&self, unit: i32, done: &Finished, data: &[u8]) -> io::Result<()> {
        geom_multipath_sys::ggctl::Ggctl::done(self, unit, done, data)
    }
}

/// How the export names and serves its devices.
#[derive(Clone, Debug)]
pub struct GateOptions {
    /// Put before each provider's name: `multipath/` makes `/dev/multipath/NAME`.
    pub prefix: String,
    /// Worker threads per device.
    pub workers: usize,
    /// How often a device that could not be made is tried again.
    pub retry: Duration,
}

impl Default for GateOptions {
    fn default() -> GateOptions {
        GateOptions {
            prefix: String::from("multipath/"),
            workers: WORKERS_PER_DEVICE,
            retry: RETRY_INTERVAL,
        }
    }
}

/// The device name (relative to `/dev`) a mount point stands for: `/dev/multipath` →
/// `multipath/`. `None` unless it lies below `/dev` (a gate device can only appear there).
pub fn prefix_for(mountpoint: &std::path::Path) -> Option<String> {
    let rel = mountpoint.strip_prefix("/dev").ok()?;
    let text = rel.to_str()?.trim_matches('/');
    if text.is_empty()
        || text
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return None;
    }
    Some(format!("{text}/"))
}

/// What wakes the manager.
enum Wake {
    /// The table changed, or a worker ended.
    Look,
    /// End: destroy every device.
    Stop,
}

struct Shared {
    ctl: Arc<dyn GateControl>,
    exports: SharedExports,
    owner: OwnerHandle,
    options: GateOptions,
    wake: Sender<Wake>,
}

/// The running export. Dropping it stops it (see the module doc).
pub struct GateExport {
    wake: Sender<Wake>,
    exports: SharedExports,
    watch: Option<WatchId>,
    manager: Option<JoinHandle<()>>,
}

/// Starts exporting every provider of `exports` through `ctl`.
pub fn start(
    ctl: Arc<dyn GateControl>,
    exports: SharedExports,
    owner: OwnerHandle,
    options: GateOptions,
) -> io::Result<GateExport> {
    let (wake, woken) = crossbeam_channel::unbounded();
    let watch = {
        let tx = wake.clone();
        exports
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .watch(move || {
                let _ = tx.send(Wake::Look);
            })
    };
    let shared = Arc::new(Shared {
        ctl,
        exports: exports.clone(),
        owner,
        options,
        wake: wake.clone(),
    });
    let manager = std::thread::Builder::new()
        .name("ggate".into())
        .spawn(move || manage(&shared, &woken));
    let manager = match manager {
        Ok(m) => m,
        Err(e) => {
            exports
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .unwatch(watch);
            return Err(e);
        }
    };
    Ok(GateExport {
        wake,
        exports,
        watch: Some(watch),
        manager: Some(manager),
    })
}

impl GateExport {
    /// Destroys every device and waits until their workers are done and their access is
    /// given back.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(id) = self.watch.take() {
            self.exports
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .unwatch(id);
        }
        let _ = self.wake.send(Wake::Stop);
        if let Some(m) = self.manager.take() {
            let _ = m.join();
        }
    }
}

impl Drop for GateExport {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for GateExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateExport").finish_non_exhaustive()
    }
}

/// One gate device and what it holds.
struct Gate {
    /// The provider as it was exported (name, size, sector size).
    export: Export,
    /// The kernel's unit number.
    unit: i32,
    /// Access r1w1 (else r1 and a read-only device), given back once the device is gone.
    access: AccessGuard,
    /// Workers still running.
    alive: Arc<AtomicUsize>,
    workers: Vec<JoinHandle<()>>,
}

/// A provider the table has and the export cannot serve yet, with the reason last logged.
type Failing = BTreeMap<GeomId, String>;

fn manage(shared: &Shared, woken: &Receiver<Wake>) {
    let mut gates: BTreeMap<GeomId, Gate> = BTreeMap::new();
    let mut failing = Failing::new();
    loop {
        reconcile(shared, &mut gates, &mut failing);
        let wait = if failing.is_empty() {
            IDLE_WAIT
        } else {
            shared.options.retry
        };
        let stop = match woken.recv_timeout(wait) {
            Ok(Wake::Look) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => false,
            Ok(Wake::Stop) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => true,
        };
        // Many wake-ups in a burst (a taste sizes the provider twice): one look does.
        if stop || woken.try_iter().any(|w| matches!(w, Wake::Stop)) {
            break;
        }
    }
    for (_, gate) in std::mem::take(&mut gates) {
        remove(shared, gate);
    }
}

/// Brings the devices in step with the table.
fn reconcile(shared: &Shared, gates: &mut BTreeMap<GeomId, Gate>, failing: &mut Failing) {
    let wanted: BTreeMap<GeomId, Export> = shared
        .exports
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|e| is_ready(e))
        .map(|e| (e.geom, e.clone()))
        .collect();
    failing.retain(|geom, _| wanted.contains_key(geom));
    let stale: Vec<GeomId> = gates
        .iter()
        .filter(|(geom, gate)| {
            wanted.get(geom).is_none_or(|e| {
                e.name != gate.export.name || e.sectorsize != gate.export.sectorsize
            })
        })
        .map(|(geom, _)| *geom)
        .collect();
    for geom in stale {
        if let Some(gate) = gates.remove(&geom) {
            remove(shared, gate);
        }
    }
    // A device whose workers all ended by themselves (it was destroyed behind the
    // daemon's back, or the kernel refused its requests): made again, after the retry
    // interval, so that a device that keeps failing does not spin.
    let dead: Vec<GeomId> = gates
        .iter()
        .filter(|(_, gate)| gate.alive.load(Ordering::Acquire) == 0)
        .map(|(geom, _)| *geom)
        .collect();
    let mut just_died = Vec::with_capacity(dead.len());
    for geom in dead {
        if let Some(gate) = gates.remove(&geom) {
            let name = device_name(shared, &gate.export);
            remove(shared, gate);
            tracing::warn!("{name}: the GATE device went away; it will be made again");
            failing.insert(geom, format!("{name}: the GATE device went away"));
            just_died.push(geom);
        }
    }
    for (geom, export) in wanted {
        if just_died.contains(&geom) {
            continue;
        }
        match gates.get_mut(&geom) {
            Some(gate) if gate.export.mediasize != export.mediasize => {
                let name = device_name(shared, &export);
                match shared.ctl.resize(gate.unit, export.mediasize) {
                    Ok(()) => gate.export.mediasize = export.mediasize,
                    Err(e) => tracing::warn!("{name}: resizing to {}: {e}", export.mediasize),
                }
            }
            Some(_) => {}
            None => match create(shared, &export) {
                Ok(gate) => {
                    failing.remove(&geom);
                    gates.insert(geom, gate);
                }
                Err(why) => {
                    if failing.get(&geom) != Some(&why) {
                        tracing::warn!("{why}");
                    }
                    failing.insert(geom, why);
                }
            },
        }
    }
}

fn device_name(shared: &Shared, export: &Export) -> String {
    format!("{}{}", shared.options.prefix, export.name)
}

/// Takes access on the provider and makes (or takes over) its gate device.
fn create(shared: &Shared, export: &Export) -> Result<Gate, String> {
    let name = device_name(shared, export);
    let access = AccessGuard::read_write_or_read_only(&shared.owner, export)
        .map_err(|e| format!("{name}: access: {}", strerror(e)))?;
    let writable = access.writable();
    let spec = GateSpec {
        name: name.clone(),
        mediasize: export.mediasize,
        sectorsize: export.sectorsize,
        flags: if writable { 0 } else { G_GATE_FLAG_READONLY },
        info: format!("gmultipathd pid {}", std::process::id()),
    };
    let unit = match shared.ctl.create(&spec) {
        Ok(unit) => unit,
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => match take_over(shared, &spec) {
            Ok(unit) => unit,
            Err(e) => return Err(format!("{name}: taking over the existing device: {e}")),
        },
        Err(e) => return Err(format!("{name}: creating the GATE device: {e}")),
    };
    if !writable {
        tracing::info!("{name}: exported read-only (writing is refused)");
    }
    let alive = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::with_capacity(shared.options.workers);
    for _ in 0..shared.options.workers.max(1) {
        let w = Worker {
            ctl: shared.ctl.clone(),
            owner: shared.owner.clone(),
            geom: export.geom,
            unit,
            name: name.clone(),
            alive: alive.clone(),
            wake: shared.wake.clone(),
        };
        alive.fetch_add(1, Ordering::AcqRel);
        match std::thread::Builder::new()
            .name(format!("ggate-{}", export.name))
            .spawn(move || w.run())
        {
            Ok(t) => workers.push(t),
            Err(_) => {
                alive.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
    let gate = Gate {
        export: export.clone(),
        unit,
        access,
        alive,
        workers,
    };
    if gate.workers.is_empty() {
        remove(shared, gate);
        return Err(format!("{name}: cannot start its worker threads"));
    }
    Ok(gate)
}

/// A device of that name is there already (a daemon that died left it): put back every
/// request it had taken and serve it.
fn take_over(shared: &Shared, spec: &GateSpec) -> io::Result<i32> {
    let unit = shared.ctl.cancel_all(&spec.name)?;
    shared.ctl.resize(unit, spec.mediasize)?;
    tracing::info!(
        "{}: taking over the GATE device (unit {unit}) a previous daemon left",
        spec.name
    );
    Ok(unit)
}

/// Destroys a device, waits for its workers and gives its access back.
fn remove(shared: &Shared, gate: Gate) {
    let name = device_name(shared, &gate.export);
    match shared.ctl.destroy(gate.unit, true) {
        Ok(()) => {}
        // Gone already (destroyed by someone else).
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
        Err(e) => tracing::warn!("{name}: destroying the GATE device: {e}"),
    }
    for w in gate.workers {
        let _ = w.join();
    }
    drop(gate.access); // the workers are gone: the access goes back
}

fn strerror(e: Errno) -> String {
    geom_multipath_sys::strerror(e.0)
}

/// One worker of one device.
struct Worker {
    ctl: Arc<dyn GateControl>,
    owner: OwnerHandle,
    geom: GeomId,
    unit: i32,
    name: String,
    alive: Arc<AtomicUsize>,
    wake: Sender<Wake>,
}

/// Why a worker stops.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The device is being destroyed (ECANCELED) or is gone (ENXIO, ENOENT).
    Gone,
    /// Something unexpected, logged.
    Failed,
}

impl Worker {
    fn run(self) {
        let end = self.serve();
        if end == End::Failed {
            tracing::warn!("{}: a worker stopped", self.name);
        }
        self.alive.fetch_sub(1, Ordering::AcqRel);
        let _ = self.wake.send(Wake::Look);
    }

    /// The START → owner → DONE loop.
    fn serve(&self) -> End {
        let mut buf = vec![0u8; INITIAL_BUFFER];
        loop {
            let started = match self.ctl.start(self.unit, &mut buf) {
                Ok(s) => s,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return End::Gone,
                Err(e) => {
                    tracing::warn!("{}: START: {e}", self.name);
                    return End::Failed;
                }
            };
            match started.error {
                0 => {}
                libc::ECANCELED => return End::Gone,
                libc::ENOMEM => match usize::try_from(started.length) {
                    Ok(need) if need > buf.len() && need <= MAX_REQUEST => {
                        buf = vec![0u8; need];
                        continue;
                    }
                    _ => {
                        tracing::warn!(
                            "{}: START asks for a {}-byte buffer",
                            self.name,
                            started.length
                        );
                        return End::Failed;
                    }
                },
                e => {
                    tracing::warn!("{}: START: {}", self.name, geom_multipath_sys::strerror(e));
                    return End::Failed;
                }
            }
            let (error, data) = self.request(&started, &buf);
            let finished = Finished {
                seq: started.seq,
                cmd: started.cmd,
                offset: started.offset,
                length: started.length,
                error,
            };
            let bytes = data.as_ref().map_or(&[][..], IoBuf::as_slice);
            match self.ctl.done(self.unit, &finished, bytes) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENXIO)) => {
                    return End::Gone
                }
                Err(e) => tracing::warn!("{}: DONE: {e}", self.name),
            }
        }
    }

    /// Serves one request: its error (0 for success) and, for a read, its data.
    fn request(&self, s: &Started, buf: &[u8]) -> (i32, Option<IoBuf>) {
        let (Ok(offset), Ok(len)) = (u64::try_from(s.offset), usize::try_from(s.length)) else {
            return (libc::EINVAL, None);
        };
        let op = match s.cmd {
            BIO_READ if len <= MAX_REQUEST => IoOp::Read(IoBuf::to_fill(len)),
            BIO_WRITE if len <= buf.len() => IoOp::Write(IoBuf::from_slice(&buf[..len])),
            BIO_READ | BIO_WRITE => return (libc::EINVAL, None),
            BIO_FLUSH => IoOp::Flush,
            BIO_DELETE => IoOp::Delete(len as u64),
            _ => return (libc::EOPNOTSUPP, None),
        };
        let reading = s.cmd == BIO_READ;
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.owner.io(IoRequest {
            geom: self.geom,
            op,
            offset,
            reply: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        });
        // The owner answers every request once; if it is gone, the request is dropped
        // unanswered and the channel says so.
        match rx.recv().unwrap_or(Err(Errno::ENXIO)) {
            Ok(IoReply::Data(b)) if reading && b.len() == len => (0, Some(b)),
            Ok(_) if reading => (libc::EIO, None),
            Ok(_) => (0, None),
            Err(e) => (wire_error(e), None),
        }
    }
}

/// The error a request is finished with: the owner's, except EAGAIN (which the GATE class
/// takes as "queue it again") and a zero that is no error at all.
fn wire_error(e: Errno) -> i32 {
    match e.0 {
        0 | libc::EAGAIN => libc::EIO,
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::fake_owner::{Fake, FakeOwner, Knobs, Seen};
    use crate::testkit::watched::Watched;
    use crate::testkit::{MemDevice, MemFaults};
    use geom_multipath_sys::ggate::{BIO_GETATTR, BIO_SPEEDUP};
    use std::collections::{BTreeSet, VecDeque};

    const MIB: u64 = 1 << 20;

    // ----- a fake /dev/ggctl: the GATE class's queues, as g_gate.c keeps them ----------

    #[derive(Debug)]
    struct Bio {
        seq: usize,
        cmd: u32,
        offset: i64,
        length: i64,
        data: Vec<u8>,
    }

    #[derive(Debug, Default)]
    struct Unit {
        name: String,
        mediasize: u64,
        inqueue: VecDeque<Bio>,
        outqueue: Vec<Bio>,
        next_seq: usize,
        destroying: bool,
        /// Finished requests: seq → (error, data of a read).
        results: BTreeMap<usize, (i32, Vec<u8>)>,
        /// STARTs answered ENOMEM.
        enomem: u32,
    }

    #[derive(Debug, Default)]
    struct Kernel {
        units: BTreeMap<i32, Unit>,
        next_unit: i32,
        calls: Vec<String>,
    }

    #[derive(Default)]
    struct FakeGgctl {
        k: Watched<Kernel>,
    }

    fn err(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    impl FakeGgctl {
        fn with<T>(&self, f: impl FnOnce(&mut Kernel) -> T) -> T {
            self.k.with(f)
        }

        /// Waits (10 s at most) until `done` holds.
        fn wait(&self, what: &str, done: impl Fn(&Kernel) -> bool) {
            self.k.expect(what, Duration::from_secs(10), done);
        }

        fn unit_of(k: &Kernel, name: &str) -> Option<i32> {
            k.units
                .iter()
                .find(|(_, u)| u.name == name && !u.destroying)
                .map(|(n, _)| *n)
        }

        /// A bio for the device `name`, as g_gate_start queues it: its seq.
        fn submit(&self, name: &str, cmd: u32, offset: u64, length: usize, data: &[u8]) -> usize {
            self.with(|k| {
                let unit = Self::unit_of(k, name).expect("no such device");
                let u = k.units.get_mut(&unit).unwrap();
                u.next_seq += 1;
                let seq = u.next_seq;
                u.inqueue.push_back(Bio {
                    seq,
                    cmd,
                    offset: offset as i64,
                    length: length as i64,
                    data: data.to_vec(),
                });
                seq
            })
        }

        /// Waits for request `seq` of `name` to be finished: its error and read data.
        fn result(&self, name: &str, seq: usize) -> (i32, Vec<u8>) {
            self.wait("a DONE", |k| {
                k.units
                    .values()
                    .any(|u| u.name == name && u.results.contains_key(&seq))
            });
            self.with(|k| {
                k.units
                    .values_mut()
                    .find(|u| u.name == name && u.results.contains_key(&seq))
                    .and_then(|u| u.results.remove(&seq))
                    .unwrap()
            })
        }

        fn calls(&self) -> Vec<String> {
            self.with(|k| k.calls.clone())
        }

        fn live_names(&self) -> BTreeSet<String> {
            self.with(|k| {
                k.units
                    .values()
                    .filter(|u| !u.destroying)
                    .map(|u| u.name.clone())
                    .collect()
            })
        }
    }

    impl GateControl for FakeGgctl {
        fn create(&self, spec: &GateSpec) -> io::Result<i32> {
            self.with(|k| {
                k.calls.push(format!(
                    "create {} {} {} {}",
                    spec.name, spec.mediasize, spec.sectorsize, spec.flags
                ));
                if Self::unit_of(k, &spec.name).is_some() {
                    return Err(err(libc::EEXIST));
                }
                let unit = k.next_unit;
                k.next_unit += 1;
                k.units.insert(
                    unit,
                    Unit {
                        name: spec.name.clone(),
                        mediasize: spec.mediasize,
                        ..Unit::default()
                    },
                );
                Ok(unit)
            })
        }

        fn cancel_all(&self, name: &str) -> io::Result<i32> {
            self.with(|k| {
                k.calls.push(format!("cancel {name}"));
                let unit = Self::unit_of(k, name).ok_or_else(|| err(libc::ENXIO))?;
                let u = k.units.get_mut(&unit).unwrap();
                for bio in std::mem::take(&mut u.outqueue).into_iter().rev() {
                    u.inqueue.push_front(bio);
                }
                Ok(unit)
            })
        }

        fn resize(&self, unit: i32, mediasize: u64) -> io::Result<()> {
            self.with(|k| {
                k.calls.push(format!("resize {unit} {mediasize}"));
                let u = k.units.get_mut(&unit).ok_or_else(|| err(libc::ENXIO))?;
                u.mediasize = mediasize;
                Ok(())
            })
        }

        fn destroy(&self, unit: i32, force: bool) -> io::Result<()> {
            self.with(|k| {
                k.calls.push(format!("destroy {unit} {force}"));
                let u = k.units.get_mut(&unit).ok_or_else(|| err(libc::ENXIO))?;
                if u.destroying {
                    return Err(err(libc::ENXIO));
                }
                u.destroying = true;
                let failed: Vec<Bio> = u.inqueue.drain(..).chain(u.outqueue.drain(..)).collect();
                for bio in failed {
                    u.results.insert(bio.seq, (libc::ENXIO, Vec::new()));
                }
                Ok(())
            })
        }

        fn start(&self, unit: i32, buf: &mut [u8]) -> io::Result<Started> {
            self.k.serve(|k| {
                let Some(u) = k.units.get_mut(&unit) else {
                    return Some(Err(err(libc::ENXIO)));
                };
                if let Some(bio) = u.inqueue.front() {
                    if bio.cmd == BIO_WRITE && bio.length as usize > buf.len() {
                        let length = bio.length;
                        u.enomem += 1;
                        return Some(Ok(Started {
                            seq: 0,
                            cmd: BIO_WRITE,
                            offset: 0,
                            length,
                            error: libc::ENOMEM,
                        }));
                    }
                    let bio = u.inqueue.pop_front().unwrap();
                    if bio.cmd == BIO_WRITE {
                        buf[..bio.data.len()].copy_from_slice(&bio.data);
                    }
                    let started = Started {
                        seq: bio.seq,
                        cmd: bio.cmd,
                        offset: bio.offset,
                        length: bio.length,
                        error: 0,
                    };
                    u.outqueue.push(bio);
                    return Some(Ok(started));
                }
                u.destroying.then_some(Ok(Started {
                    seq: 0,
                    cmd: 0,
                    offset: 0,
                    length: 0,
                    error: libc::ECANCELED,
                }))
            })
        }

        fn done(&self, unit: i32, done: &Finished, data: &[u8]) -> io::Result<()> {
            self.with(|k| {
                let u = k.units.get_mut(&unit).ok_or_else(|| err(libc::ENOENT))?;
                if u.destroying {
                    return Err(err(libc::ENOENT));
                }
                let Some(i) = u.outqueue.iter().position(|b| b.seq == done.seq) else {
                    return Ok(()); // canceled meanwhile
                };
                let bio = u.outqueue.remove(i);
                if done.error == libc::EAGAIN {
                    u.inqueue.push_front(bio);
                    return Ok(());
                }
                let bytes = if bio.cmd == BIO_READ && done.error == 0 {
                    data[..bio.length as usize].to_vec()
                } else {
                    Vec::new()
                };
                u.results.insert(bio.seq, (done.error, bytes));
                Ok(())
            })
        }
    }

    // ----- the fake owner (testkit): memory devices, access counts ---------------------

    /// Waits (10 s at most) until `done` holds for what the fake owner saw of provider `i`.
    fn wait(owner: &Fake, what: &str, i: usize, done: impl Fn(&Seen) -> bool) {
        owner.wait_up_to(what, i, Duration::from_secs(10), done);
    }

    struct Fixture {
        kernel: Arc<FakeGgctl>,
        /// What the fake owner saw and how it behaves.
        owner: Arc<Fake>,
        exports: SharedExports,
        export: Option<GateExport>,
        geoms: Vec<GeomId>,
        devs: Vec<Arc<MemDevice>>,
        /// Declared last: the export stops before the owner does.
        _fake: FakeOwner,
    }

    impl Fixture {
        fn new(names: &[&str]) -> Fixture {
            Fixture::with(names, |_| {}, Arc::new(FakeGgctl::default()))
        }

        fn with(names: &[&str], setup: impl FnOnce(&mut Knobs), kernel: Arc<FakeGgctl>) -> Fixture {
            let sized: Vec<(&str, u64)> = names.iter().map(|&n| (n, MIB)).collect();
            let fake = FakeOwner::unlisted(&sized);
            fake.fake.with(|s| setup(&mut s.knobs));
            let geoms: Vec<GeomId> = (0..names.len()).map(|i| fake.geom(i)).collect();
            let devs: Vec<Arc<MemDevice>> = (0..names.len()).map(|i| fake.dev(i).clone()).collect();
            let (owner, handle, exports) =
                (fake.fake.clone(), fake.owner.clone(), fake.exports.clone());
            let options = GateOptions {
                retry: Duration::from_millis(50),
                workers: 2,
                ..GateOptions::default()
            };
            let export = start(kernel.clone(), exports.clone(), handle.clone(), options).unwrap();
            Fixture {
                kernel,
                owner,
                exports,
                export: Some(export),
                geoms,
                devs,
                _fake: fake,
            }
        }

        fn add(&self, i: usize, name: &str, mediasize: u64) {
            let mut t = self.exports.write().unwrap();
            t.add(name, self.geoms[i]);
            t.resize(self.geoms[i], mediasize, Some(512));
        }

        fn wait_device(&self, name: &str) {
            self.kernel
                .wait(name, |k| FakeGgctl::unit_of(k, name).is_some());
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            if let Some(e) = self.export.take() {
                e.stop();
            }
        }
    }

    #[test]
    fn prefixes_follow_the_mount_point_below_dev() {
        let p = |s: &str| prefix_for(std::path::Path::new(s));
        assert_eq!(p("/dev/multipath").as_deref(), Some("multipath/"));
        assert_eq!(p("/dev/multipath/").as_deref(), Some("multipath/"));
        assert_eq!(p("/dev/mp/x").as_deref(), Some("mp/x/"));
        assert_eq!(p("/dev"), None);
        assert_eq!(p("/mnt/multipath"), None);
        assert_eq!(p("/dev/../etc"), None);
    }

    #[test]
    fn a_sized_provider_becomes_a_named_gate_device_holding_r1w1() {
        let f = Fixture::new(&["FRED"]);
        {
            let mut t = f.exports.write().unwrap();
            t.add("FRED", f.geoms[0]);
        }
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            f.kernel.calls().is_empty(),
            "no device before it has a size"
        );
        f.exports
            .write()
            .unwrap()
            .resize(f.geoms[0], MIB - 512, Some(512));
        f.wait_device("multipath/FRED");
        assert_eq!(
            f.kernel.calls(),
            [format!("create multipath/FRED {} 512 0", MIB - 512)]
        );
        assert_eq!(f.owner.access(f.geoms[0]), (1, 1));
    }

    #[test]
    fn reads_writes_flushes_and_deletes_reach_the_owner() {
        let f = Fixture::new(&["FRED"]);
        f.add(0, "FRED", MIB - 512);
        f.wait_device("multipath/FRED");
        let name = "multipath/FRED";
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        let w = f.kernel.submit(name, BIO_WRITE, 4096, data.len(), &data);
        assert_eq!(f.kernel.result(name, w), (0, Vec::new()));
        assert_eq!(f.devs[0].peek(4096, data.len()), data);
        let r = f.kernel.submit(name, BIO_READ, 4096, data.len(), &[]);
        assert_eq!(f.kernel.result(name, r), (0, data));
        let fl = f.kernel.submit(name, BIO_FLUSH, 0, 0, &[]);
        assert_eq!(f.kernel.result(name, fl).0, 0);
        let d = f.kernel.submit(name, BIO_DELETE, 4096, 512, &[]);
        assert_eq!(f.kernel.result(name, d).0, 0);
        let seen = (f.owner.seen(0).flushes, f.owner.seen(0).deletes);
        assert_eq!(seen, (1, vec![(4096, 512)]));
        assert_eq!(f.devs[0].peek(4096, 4), [0; 4], "deleted");
    }

    #[test]
    fn a_write_longer_than_the_buffer_is_started_again_with_a_bigger_one() {
        let f = Fixture::new(&["FRED"]);
        f.add(0, "FRED", MIB - 512);
        f.wait_device("multipath/FRED");
        let name = "multipath/FRED";
        let big = vec![7u8; INITIAL_BUFFER * 2];
        let w = f.kernel.submit(name, BIO_WRITE, 0, big.len(), &big);
        assert_eq!(f.kernel.result(name, w).0, 0);
        assert_eq!(f.devs[0].peek(0, big.len()), big);
        let enomem = f
            .kernel
            .with(|k| k.units.values().map(|u| u.enomem).sum::<u32>());
        assert!(enomem >= 1, "the first START was answered ENOMEM");
    }

    #[test]
    fn unsupported_commands_are_refused_without_the_owner() {
        let f = Fixture::new(&["FRED"]);
        f.add(0, "FRED", MIB - 512);
        f.wait_device("multipath/FRED");
        let name = "multipath/FRED";
        for cmd in [BIO_GETATTR, BIO_SPEEDUP, 99] {
            let s = f.kernel.submit(name, cmd, 0, 0, &[]);
            assert_eq!(f.kernel.result(name, s).0, libc::EOPNOTSUPP);
        }
        assert_eq!(f.owner.seen(0).requests, 0);
    }

    #[test]
    fn an_owner_error_is_the_requests_error() {
        let f = Fixture::new(&["FRED"]);
        f.add(0, "FRED", MIB - 512);
        f.wait_device("multipath/FRED");
        let name = "multipath/FRED";
        f.devs[0].set_faults(MemFaults {
            read: Some(Errno::EIO),
            write: Some(Errno(libc::EAGAIN)),
        });
        let r = f.kernel.submit(name, BIO_READ, 0, 512, &[]);
        assert_eq!(f.kernel.result(name, r), (libc::EIO, Vec::new()));
        let w = f.kernel.submit(name, BIO_WRITE, 0, 512, &[1; 512]);
        assert_eq!(
            f.kernel.result(name, w).0,
            libc::EIO,
            "EAGAIN would requeue the request for ever"
        );
        let past = f.kernel.submit(name, BIO_READ, 2 * MIB, 512, &[]);
        assert_eq!(f.kernel.result(name, past).0, libc::EIO);
    }

    #[test]
    fn a_withered_provider_loses_its_device_then_its_access() {
        let f = Fixture::new(&["FRED", "BARNEY"]);
        f.add(0, "FRED", MIB - 512);
        f.add(1, "BARNEY", MIB - 512);
        f.wait_device("multipath/FRED");
        f.wait_device("multipath/BARNEY");
        f.exports.write().unwrap().remove(f.geoms[0]);
        wait(&f.owner, "FRED's access back", 0, |s| (s.r, s.w) == (0, 0));
        assert_eq!(
            f.kernel.live_names(),
            BTreeSet::from(["multipath/BARNEY".to_string()])
        );
        assert!(f.kernel.calls().contains(&"destroy 0 true".to_string()));
        assert_eq!(f.owner.access(f.geoms[1]), (1, 1), "BARNEY is untouched");
    }

    #[test]
    fn stopping_wakes_the_sleeping_workers_and_gives_the_access_back() {
        let mut f = Fixture::new(&["FRED"]);
        f.add(0, "FRED", MIB - 512);
        f.wait_device("multipath/FRED");
        f.export.take().unwrap().stop();
        assert_eq!(f.owner.access(f.geoms[0]), (0, 0));
        assert!(f.kernel.live_names().is_empty());
        assert!(f.kernel.calls().contains(&"destroy 0 true".to_string()));
    }

    #[test]
    fn requests_left_by_a_dead_daemon_are_cancelled_back_and_served() {
        let kernel = Arc::new(FakeGgctl::default());
        // The dead daemon's device: one write it had taken, one read still queued.
        let spec = GateSpec {
            name: "multipath/FRED".into(),
            mediasize: MIB - 1024,
            sectorsize: 512,
            flags: 0,
            info: String::new(),
        };
        let unit = kernel.create(&spec).unwrap();
        let w = kernel.submit("multipath/FRED", BIO_WRITE, 0, 512, &[5; 512]);
        let mut buf = vec![0u8; 512];
        assert_eq!(
            kernel.start(unit, &mut buf).unwrap().seq,
            w,
            "taken, never done"
        );
        let r = kernel.submit("multipath/FRED", BIO_READ, 0, 512, &[]);
        kernel.with(|k| k.calls.clear());

        let f = Fixture::with(&["FRED"], |_| {}, kernel);
        f.add(0, "FRED", MIB - 512);
        assert_eq!(f.kernel.result("multipath/FRED", w).0, 0);
        assert_eq!(f.kernel.result("multipath/FRED", r).0, 0);
        assert_eq!(f.devs[0].peek(0, 512), [5; 512], "the taken write was done");
        assert_eq!(
            f.kernel.calls(),
            [
                format!("create multipath/FRED {} 512 0", MIB - 512),
                "cancel multipath/FRED".to_string(),
                format!("resize {unit} {}", MIB - 512),
            ]
        );
    }

    #[test]
    fn a_provider_others_hold_exclusively_is_exported_read_only() {
        let f = Fixture::with(
            &["FRED"],
            |s| s.refuse_write = true,
            Arc::new(FakeGgctl::default()),
        );
        f.add(0, "FRED", MIB - 512);
        f.wait_device("multipath/FRED");
        assert_eq!(f.owner.access(f.geoms[0]), (1, 0));
        assert!(f.kernel.calls()[0].ends_with(&format!(" {G_GATE_FLAG_READONLY}")));
    }

    #[test]
    fn a_refused_access_is_tried_again_until_it_works() {
        let f = Fixture::with(
            &["FRED"],
            |s| s.refuse = Some(Errno::ENXIO),
            Arc::new(FakeGgctl::default()),
        );
        f.add(0, "FRED", MIB - 512);
        std::thread::sleep(Duration::from_millis(150));
        assert!(f.kernel.live_names().is_empty());
        f.owner.with(|s| s.knobs.refuse = None);
        f.wait_device("multipath/FRED");
        assert_eq!(f.owner.access(f.geoms[0]), (1, 1));
    }

    #[test]
    fn a_resize_is_passed_on_and_a_device_destroyed_behind_our_back_comes_back() {
        let f = Fixture::new(&["FRED"]);
        f.add(0, "FRED", MIB - 512);
        f.wait_device("multipath/FRED");
        f.exports
            .write()
            .unwrap()
            .resize(f.geoms[0], MIB - 4096, None);
        f.kernel.wait("the resize", |k| {
            k.calls.contains(&format!("resize 0 {}", MIB - 4096))
        });
        // `ggatel destroy -f -u 0`: the workers end, the export makes a new device.
        f.kernel.destroy(0, true).unwrap();
        f.kernel.wait("a new device", |k| {
            k.units
                .iter()
                .any(|(u, d)| *u > 0 && !d.destroying && d.mediasize == MIB - 4096)
        });
        wait(&f.owner, "r1w1 held once", 0, |s| (s.r, s.w) == (1, 1));
    }

    #[test]
    fn eagain_and_zero_are_never_sent_as_a_requests_error() {
        assert_eq!(wire_error(Errno(libc::EAGAIN)), libc::EIO);
        assert_eq!(wire_error(Errno(0)), libc::EIO);
        assert_eq!(wire_error(Errno::ENXIO), libc::ENXIO);
    }
}

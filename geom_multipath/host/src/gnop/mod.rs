//! The NOP class (gnop(8)) in userland: FreeBSD's error-injecting pass-through provider,
//! so host tests can make one path of a multipath geom fail the way FreeBSD's tests do
//! with md(4) + gnop(8).
//!
//! This module owns the class's state and decisions: [`NopClass`] runs `g_nop_config`
//! (create, configure, destroy, reset) with FreeBSD's exact error texts and check order,
//! writes the class's `<class>` element for `kern.geom.confxml`, and follows the
//! underlying provider's orphan and resize events. [`NopDevice`] is the `g_nop_start` half:
//! a [`Device`] that counts, fails and delays requests and passes the rest down with the
//! offset added. It does not own the provider table, access counts or the daemon's I/O
//! loop: those stay with the daemon, behind the small [`NopHost`] trait.
//!
//! The invariant it keeps: a NOP geom's knobs and counters live in exactly one place (its
//! [`NopDevice`], shared through an `Arc` by the class and the I/O workers), so
//! `configure`, `reset`, `list` and the data path always see the same values.
//!
//! Not reproduced: `BIO_SPEEDUP` and `BIO_CMD0..2` (the [`Device`] trait has no such
//! requests, so those counters stay 0), `GEOM::kerneldump`, provider aliases, and the
//! I/O-path debug messages (`Request received.`, `Returning error=%d.`): the workers have no
//! console; only the control path logs, through [`NopHost::log`].

use std::fmt::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use geom_multipath::geom_dump::{self, foreign_provider_id, named_xml_id, Config, IdKind};
use geom_multipath::{strip_dev, CtlError, Errno, ProviderInfo, Request};

use crate::path::device::Device;

mod args;
mod conf;
mod device;

use args::*;
pub use device::NopDevice;
use device::*;

/// The class name (`G_NOP_CLASS_NAME`).
pub const CLASS_NAME: &str = "NOP";
/// The control protocol version userland must send (`G_NOP_VERSION`).
pub const VERSION: u32 = 4;
/// What a NOP provider's name ends in (`G_NOP_SUFFIX`).
pub const SUFFIX: &str = ".nop";
/// The `physpath` value geom(8) sends when `-z` is not given
/// (`G_NOP_PHYSPATH_PASSTHROUGH`): pass the lower provider's physical path through.
pub const PHYSPATH_PASSTHROUGH: &[u8] = b"\xad";
/// The largest sector size `create -S` accepts (`maxphys`, 1 MiB on amd64).
pub const MAXPHYS: u32 = 1 << 20;

/// The size of `g_nop_create`'s `char name[64]`: a name must be shorter.
const NAME_BUF: usize = 64;
/// `strndup(physpath, MAXPATHLEN)`.
const MAXPATHLEN: usize = 1024;

/// What the NOP class needs from the daemon, over its provider table. Each method names the
/// FreeBSD function it stands for.
pub trait NopHost {
    /// `g_provider_by_name`: the provider called `name` (no `/dev/`), if it exists. The
    /// daemon's table includes the NOP providers it was told about in
    /// [`nop_created`](NopHost::nop_created), so a NOP can sit on a NOP.
    fn provider(&self, name: &str) -> Option<ProviderInfo>;

    /// `g_attach`: a device for provider `name`, which a new NOP geom sends its requests
    /// to (for a NOP provider, the device given to [`nop_created`](NopHost::nop_created)).
    /// A failure is reported as `Cannot attach to provider <name>.`. Access counts are the daemon's: a NOP passes its provider's access straight
    /// through to this one (`g_nop_access`).
    fn open(&mut self, name: &str) -> Result<Arc<dyn Device>, Errno>;

    /// `g_error_provider(newpp, 0)`: a NOP provider exists now; `device` is what requests
    /// to it go to.
    fn nop_created(&mut self, info: ProviderInfo, device: Arc<NopDevice>);

    /// `g_resize_provider`: the NOP provider `info.name` has a new `mediasize`.
    fn nop_resized(&mut self, info: ProviderInfo);

    /// `g_wither_geom(gp, ENXIO)`: the NOP provider `name` is gone. Its device already
    /// answers ENXIO; the daemon orphans whatever consumes it and lets go of the provider
    /// below once the last handle is closed.
    fn nop_destroyed(&mut self, name: &str);

    /// The access counts (`acr`, `acw`, `ace`) of provider `name`.
    fn access(&self, name: &str) -> (i32, i32, i32);

    /// A console line (`GEOM_NOP: Device da0.nop created.`), without a newline.
    fn log(&mut self, line: String);
}

/// The settings `configure` can change (the softc's `sc_error` … `sc_count_until_fail`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NopKnobs {
    /// The errno a failed request completes with (`-e`; EIO by default, 0 allowed).
    pub error: i32,
    /// Percent of reads that fail (`-r`).
    pub rfailprob: u32,
    /// Percent of writes that fail (`-w`).
    pub wfailprob: u32,
    /// Percent of reads that are delayed (`-q`).
    pub rdelayprob: u32,
    /// Percent of writes that are delayed (`-x`).
    pub wdelayprob: u32,
    /// How long a delayed request waits, in milliseconds (`-d`; 1 by default).
    pub delaymsec: u32,
    /// Reads and writes still let through untouched before failures and delays apply
    /// (`-c`).
    pub count_until_fail: u32,
}

/// What the provider has seen since it was created or last `reset`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NopCounters {
    /// Read requests.
    pub reads: u64,
    /// Write requests.
    pub writes: u64,
    /// Delete (discard) requests.
    pub deletes: u64,
    /// Attribute requests (physpath).
    pub getattrs: u64,
    /// Flush requests.
    pub flushes: u64,
    /// Speedup requests (never sent on the host).
    pub speedups: u64,
    /// `BIO_CMD0` requests (never sent on the host).
    pub cmd0s: u64,
    /// `BIO_CMD1` requests (never sent on the host).
    pub cmd1s: u64,
    /// `BIO_CMD2` requests (never sent on the host).
    pub cmd2s: u64,
    /// Bytes asked for by reads.
    pub readbytes: u64,
    /// Bytes handed over by writes.
    pub wrotebytes: u64,
}

/// A NOP geom as the class sees it, for tests and the daemon's bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NopInfo {
    /// The geom and provider name (`da0.nop`).
    pub name: String,
    /// The provider below.
    pub underlying: String,
    /// Where the NOP starts on the provider below (`-o`).
    pub offset: u64,
    /// The provider's size now.
    pub mediasize: u64,
    /// The provider's sector size (`-S`, or the lower provider's).
    pub secsize: u32,
    /// `-s` as given (0: follow the lower provider's size).
    pub explicitsize: u64,
    /// `-p`.
    pub stripesize: u64,
    /// `-P`.
    pub stripeoffset: u64,
    /// `-z`, if given.
    pub physpath: Option<String>,
    /// The live settings.
    pub knobs: NopKnobs,
    /// The live counters.
    pub counters: NopCounters,
}

/// One NOP geom: what the class keeps besides the shared device.
struct NopGeom {
    underlying: String,
    rank: u32,
    explicitsize: u64,
    stripesize: u64,
    stripeoffset: u64,
    device: Arc<NopDevice>,
}

impl NopGeom {
    fn name(&self) -> &str {
        &self.device.name
    }

    fn provider_info(&self) -> ProviderInfo {
        ProviderInfo {
            name: self.device.name.clone(),
            mediasize: self.device.mediasize(),
            sectorsize: self.device.secsize,
            stripesize: self.stripesize,
            stripeoffset: self.stripeoffset,
            rank: self.rank,
        }
    }
}

/// The NOP class: its geoms, in creation order, and the console's debug level.
///
/// Getters: [`providers`](NopClass::providers), [`device`](NopClass::device),
/// [`info`](NopClass::info), [`conf_class`](NopClass::conf_class). Commands:
/// [`ctl`](NopClass::ctl), [`destroy_geom`](NopClass::destroy_geom). Inputs from the
/// provider below: [`orphan`](NopClass::orphan), [`resized`](NopClass::resized).
pub struct NopClass {
    geoms: Vec<NopGeom>,
    seed: u64,
    /// `kern.geom.nop.debug`: messages of a higher level are not logged, and above 0 every
    /// line carries its level (`GEOM_NOP[1]: `).
    pub debug: u32,
}

impl Default for NopClass {
    fn default() -> Self {
        NopClass::new()
    }
}

impl NopClass {
    /// An empty class whose devices draw their random numbers from a clock-based seed.
    pub fn new() -> NopClass {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        NopClass::with_seed(now ^ (u64::from(std::process::id()) << 32))
    }

    /// An empty class whose devices' random numbers all follow from `seed`, so a run
    /// replays exactly.
    pub fn with_seed(seed: u64) -> NopClass {
        NopClass {
            geoms: Vec::new(),
            seed,
            debug: 0,
        }
    }

    /// The NOP providers, oldest first; each ranks one above the provider below it.
    pub fn providers(&self) -> impl Iterator<Item = ProviderInfo> + '_ {
        self.geoms.iter().map(NopGeom::provider_info)
    }

    #[cfg(test)]
    /// The device of NOP provider `name`, for routing I/O.
    pub fn device(&self, name: &str) -> Option<Arc<NopDevice>> {
        self.find(name).map(|i| Arc::clone(&self.geoms[i].device))
    }

    /// Everything about NOP geom `name`.
    pub fn info(&self, name: &str) -> Option<NopInfo> {
        let g = &self.geoms[self.find(name)?];
        let sc = g.device.lock();
        Some(NopInfo {
            name: g.device.name.clone(),
            underlying: g.underlying.clone(),
            offset: g.device.offset,
            mediasize: sc.mediasize,
            secsize: g.device.secsize,
            explicitsize: g.explicitsize,
            stripesize: g.stripesize,
            stripeoffset: g.stripeoffset,
            physpath: g.device.physpath.clone(),
            knobs: sc.knobs,
            counters: sc.counters,
        })
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.geoms.iter().position(|g| g.name() == name)
    }

    /// `G_NOP_DEBUG(level, …)`.
    fn log(&self, host: &mut dyn NopHost, level: u32, msg: fmt::Arguments<'_>) {
        if self.debug < level {
            return;
        }
        let line = if self.debug > 0 {
            format!("GEOM_NOP[{level}]: {msg}")
        } else {
            format!("GEOM_NOP: {msg}")
        };
        host.log(line);
    }

    /// The next device's generator state (splitmix64 over the class seed; never 0).
    fn next_seed(&mut self) -> u64 {
        self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        if z == 0 {
            0x1234_5678_9abc_def1
        } else {
            z
        }
    }

    // ----- control ----------------------------------------------------------------------

    /// `g_nop_config`: checks the version, then runs the verb named by the request's
    /// `verb` parameter. The outcome is the request's first error, if any.
    pub fn ctl(&mut self, host: &mut dyn NopHost, req: &mut Request) {
        let verb = raw_text(req, "verb").unwrap_or_default();
        let Some(version) = req.u32("version") else {
            req.error(other("No 'version' argument."));
            return;
        };
        if version != VERSION {
            req.error(other("Userland and kernel parts are out of sync."));
            return;
        }
        match verb.as_slice() {
            b"create" => self.create(host, req),
            b"configure" => self.configure(host, req),
            b"destroy" => self.destroy(host, req),
            b"reset" => self.reset(host, req),
            _ => req.error(other("Unknown verb.")),
        }
    }

    /// `g_nop_ctl_create`.
    fn create(&mut self, host: &mut dyn NopHost, req: &mut Request) {
        let Some(nargs) = nargs(req) else {
            return;
        };
        let Some(args) = create_args(req) else {
            return;
        };
        for i in 0..nargs {
            let Some(pp) = self.get_provider(host, req, &format!("arg{i}")) else {
                return;
            };
            if let Err(e) = self.create_geom(host, &pp, &args) {
                req.error(e);
                return;
            }
        }
    }

    /// `g_nop_create`: the checks in FreeBSD's order, then the new geom.
    fn create_geom(
        &mut self,
        host: &mut dyn NopHost,
        pp: &ProviderInfo,
        a: &CreateArgs,
    ) -> Result<(), CtlError> {
        let ss = i128::from(pp.sectorsize);
        let media = i128::from(pp.mediasize);
        let misaligned = |v: i128| ss == 0 || v % ss != 0;
        let invalid = |what: &str| other(format!("Invalid {what} for provider {}.", pp.name));
        let offset = i128::from(a.offset);
        let mut size = i128::from(a.size);
        if misaligned(offset) {
            return Err(invalid("offset"));
        }
        if misaligned(size) {
            return Err(invalid("size"));
        }
        if offset >= media {
            return Err(invalid("offset"));
        }
        let explicitsize = size;
        if size == 0 {
            size = media - offset;
        }
        if offset + size > media {
            return Err(invalid("size"));
        }
        // `(u_int)secsize`, as FreeBSD passes it.
        let mut secsize = a.secsize as u32;
        if secsize == 0 {
            secsize = pp.sectorsize;
        } else if misaligned(i128::from(secsize)) {
            return Err(invalid("secsize"));
        }
        if secsize > MAXPHYS {
            return Err(other("secsize is too big."));
        }
        size -= size % i128::from(secsize);
        let stripesize = i128::from(a.stripesize);
        let stripeoffset = i128::from(a.stripeoffset);
        if misaligned(stripesize) {
            return Err(invalid("stripesize"));
        }
        if misaligned(stripeoffset) {
            return Err(invalid("stripeoffset"));
        }
        if stripesize != 0 && stripeoffset >= stripesize {
            return Err(other("stripeoffset is too big."));
        }
        if let Some(n) = &a.gnopname {
            if !n.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(other(format!("Name {n} is invalid.")));
            }
        }
        let name = format!("{}{SUFFIX}", a.gnopname.as_deref().unwrap_or(&pp.name));
        if name.len() >= NAME_BUF {
            return Err(other("Invalid provider name."));
        }
        if self.find(&name).is_some() {
            return Err(other(format!("Provider {name} already exists.")));
        }
        let lower = host
            .open(&pp.name)
            .map_err(|_| other(format!("Cannot attach to provider {}.", pp.name)))?;
        // All of these are within 0..=mediasize now.
        let to_u64 = |v: i128| u64::try_from(v).unwrap_or(0);
        let knobs = NopKnobs {
            error: if a.error == -1 {
                Errno::EIO.0
            } else {
                a.error as i32
            },
            count_until_fail: default_to(a.count_until_fail, 0),
            rfailprob: default_to(a.rfailprob, 0),
            wfailprob: default_to(a.wfailprob, 0),
            delaymsec: default_to(a.delaymsec, 1),
            rdelayprob: default_to(a.rdelayprob, 0),
            wdelayprob: default_to(a.wdelayprob, 0),
        };
        let device = Arc::new(NopDevice {
            name: name.clone(),
            lower,
            offset: to_u64(offset),
            secsize,
            physpath: a.physpath.clone(),
            softc: Mutex::new(Softc {
                mediasize: to_u64(size),
                knobs,
                counters: NopCounters::default(),
            }),
            rng: Mutex::new(self.next_seed()),
            gone: AtomicBool::new(false),
        });
        let geom = NopGeom {
            underlying: pp.name.clone(),
            rank: pp.rank.saturating_add(1),
            explicitsize: to_u64(explicitsize),
            stripesize: to_u64(stripesize),
            stripeoffset: to_u64(stripeoffset),
            device: Arc::clone(&device),
        };
        let info = geom.provider_info();
        self.geoms.push(geom);
        host.nop_created(info, device);
        self.log(host, 0, format_args!("Device {name} created."));
        Ok(())
    }

    /// `g_nop_ctl_configure`: every value that is not -1 replaces the geom's.
    fn configure(&mut self, host: &mut dyn NopHost, req: &mut Request) {
        let Some(nargs) = nargs(req) else {
            return;
        };
        let error = opt_i64(req, "error").unwrap_or(-1);
        let count_until_fail = opt_i64(req, "count_until_fail").unwrap_or(-1);
        let Some(rfailprob) = checked(req, "rfailprob", -1, is_prob) else {
            return;
        };
        let Some(wfailprob) = checked(req, "wfailprob", -1, is_prob) else {
            return;
        };
        let Some(delaymsec) = checked(req, "delaymsec", -1, is_delay) else {
            return;
        };
        let Some(rdelayprob) = checked(req, "rdelayprob", -1, is_prob) else {
            return;
        };
        let Some(wdelayprob) = checked(req, "wdelayprob", -1, is_prob) else {
            return;
        };
        for i in 0..nargs {
            let Some(g) = self.get_nop_provider(host, req, &format!("arg{i}")) else {
                return;
            };
            let mut sc = self.geoms[g].device.lock();
            let k = &mut sc.knobs;
            if error != -1 {
                k.error = error as i32;
            }
            set_unless_default(&mut k.rfailprob, rfailprob);
            set_unless_default(&mut k.wfailprob, wfailprob);
            set_unless_default(&mut k.rdelayprob, rdelayprob);
            set_unless_default(&mut k.wdelayprob, wdelayprob);
            set_unless_default(&mut k.delaymsec, delaymsec);
            set_unless_default(&mut k.count_until_fail, count_until_fail);
        }
    }

    /// `g_nop_ctl_destroy`: takes geom names (`da0.nop`).
    fn destroy(&mut self, host: &mut dyn NopHost, req: &mut Request) {
        let Some(nargs) = nargs(req) else {
            return;
        };
        let Some(force) = req.int("force") else {
            req.error(CtlError::NoArg(String::from("force")));
            return;
        };
        for i in 0..nargs {
            let param = format!("arg{i}");
            let Some(arg) = req.ascii(&param) else {
                req.error(CtlError::NoArg(param));
                return;
            };
            let name = strip_dev(&arg);
            let Some(g) = self.find(name) else {
                self.log(host, 1, format_args!("Device {name} is invalid."));
                req.error(other(format!("Device {name} is invalid.")));
                return;
            };
            if let Err(e) = self.destroy_index(host, g, force != 0) {
                req.error(other(format!("Cannot destroy device {name} (error={e}).")));
                return;
            }
        }
    }

    /// `g_nop_ctl_reset`: zeroes the counters, nothing else.
    fn reset(&mut self, host: &mut dyn NopHost, req: &mut Request) {
        let Some(nargs) = nargs(req) else {
            return;
        };
        for i in 0..nargs {
            let Some(g) = self.get_nop_provider(host, req, &format!("arg{i}")) else {
                return;
            };
            self.geoms[g].device.lock().counters = NopCounters::default();
        }
    }

    /// `gctl_get_provider`: the provider named by parameter `param`, NOP providers
    /// included.
    fn get_provider(
        &self,
        host: &dyn NopHost,
        req: &mut Request,
        param: &str,
    ) -> Option<ProviderInfo> {
        let Some(arg) = req.ascii(param) else {
            req.error(other(format!("Missing '{param}' argument")));
            return None;
        };
        let name = strip_dev(&arg);
        let found = match self.find(name) {
            Some(g) => Some(self.geoms[g].provider_info()),
            None => host.provider(name),
        };
        if found.is_none() {
            req.error(other(format!("Provider not found: \"{arg}\"")));
        }
        found
    }

    /// `gctl_get_provider` plus `pp->geom->class != mp`: the index of the NOP geom whose
    /// provider parameter `param` names.
    fn get_nop_provider(
        &self,
        host: &mut dyn NopHost,
        req: &mut Request,
        param: &str,
    ) -> Option<usize> {
        let pp = self.get_provider(host, req, param)?;
        let found = self.find(&pp.name);
        if found.is_none() {
            let name = &pp.name;
            self.log(host, 1, format_args!("Provider {name} is invalid."));
            req.error(other(format!("Provider {name} is invalid.")));
        }
        found
    }

    /// The class's `destroy_geom` method (`geom nop unload`): `g_nop_destroy` without
    /// force. ENXIO if there is no such geom, EBUSY if its provider is open.
    pub fn destroy_geom(&mut self, host: &mut dyn NopHost, name: &str) -> Result<(), Errno> {
        match self.find(name) {
            Some(g) => self.destroy_index(host, g, false),
            None => Err(Errno::ENXIO),
        }
    }

    /// `g_nop_destroy`: refuses an open provider unless `force`; then the geom withers,
    /// and NOP geoms on top of it are orphaned in turn.
    fn destroy_index(
        &mut self,
        host: &mut dyn NopHost,
        g: usize,
        force: bool,
    ) -> Result<(), Errno> {
        let name = self.geoms[g].name().to_string();
        let (r, w, e) = host.access(&name);
        if r != 0 || w != 0 || e != 0 {
            if !force {
                self.log(
                    host,
                    1,
                    format_args!("Device {name} is still open (r{r}w{w}e{e})."),
                );
                return Err(Errno::EBUSY);
            }
            self.log(
                host,
                0,
                format_args!("Device {name} is still open, so it can't be definitely removed."),
            );
        } else {
            self.log(host, 0, format_args!("Device {name} removed."));
        }
        let geom = self.geoms.remove(g);
        geom.device.gone.store(true, Ordering::Release);
        host.nop_destroyed(&name);
        self.orphan(host, &name);
        Ok(())
    }

    // ----- events from the provider below -----------------------------------------------

    /// `g_nop_orphan`: provider `underlying` went away; every NOP geom on it is destroyed
    /// with force, newest first (the order of the provider's consumer list).
    pub fn orphan(&mut self, host: &mut dyn NopHost, underlying: &str) {
        while let Some(g) = self.geoms.iter().rposition(|g| g.underlying == underlying) {
            // Forced destruction cannot fail.
            let _ = self.destroy_index(host, g, true);
        }
    }

    /// `g_nop_resize`: provider `underlying.name` changed size. A NOP created with an
    /// explicit `-s` keeps its size; one whose offset now lies beyond the end is destroyed
    /// with force; the others take the new size minus their offset (not rounded to their
    /// sector size, as in FreeBSD).
    pub fn resized(&mut self, host: &mut dyn NopHost, underlying: &ProviderInfo) {
        let names: Vec<String> = self
            .geoms
            .iter()
            .rev()
            .filter(|g| g.underlying == underlying.name && g.explicitsize == 0)
            .map(|g| g.name().to_string())
            .collect();
        for name in names {
            let Some(g) = self.find(&name) else {
                continue;
            };
            let offset = self.geoms[g].device.offset;
            if underlying.mediasize < offset {
                let _ = self.destroy_index(host, g, true);
                continue;
            }
            let size = underlying.mediasize - offset;
            let changed = {
                let mut sc = self.geoms[g].device.lock();
                let changed = sc.mediasize != size;
                sc.mediasize = size;
                changed
            };
            if changed {
                let info = self.geoms[g].provider_info();
                host.nop_resized(info.clone());
                self.resized(host, &info);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{MemDevice, MemFaults};
    use std::collections::HashMap;
    use std::time::Instant;

    const MIB: u64 = 1 << 20;

    /// The daemon's side, in memory: a provider table, devices, access counts, and a
    /// record of what the class told it.
    #[derive(Default)]
    struct MemHost {
        providers: Vec<ProviderInfo>,
        devices: HashMap<String, Arc<dyn Device>>,
        mems: HashMap<String, Arc<MemDevice>>,
        nops: HashMap<String, Arc<NopDevice>>,
        access: HashMap<String, (i32, i32, i32)>,
        log: Vec<String>,
        created: Vec<String>,
        destroyed: Vec<String>,
        resized: Vec<(String, u64)>,
        refuse_open: Option<Errno>,
    }

    impl MemHost {
        /// `mdconfig -s size -S sectorsize`: a disk called `name`.
        fn disk(&mut self, name: &str, mediasize: u64, sectorsize: u32) -> Arc<MemDevice> {
            let mem = Arc::new(MemDevice::new(mediasize as usize));
            self.providers.push(ProviderInfo {
                name: name.into(),
                mediasize,
                sectorsize,
                stripesize: 0,
                stripeoffset: 0,
                rank: 1,
            });
            self.devices
                .insert(name.into(), Arc::clone(&mem) as Arc<dyn Device>);
            self.mems.insert(name.into(), Arc::clone(&mem));
            mem
        }
    }

    impl NopHost for MemHost {
        fn provider(&self, name: &str) -> Option<ProviderInfo> {
            self.providers.iter().find(|p| p.name == name).cloned()
        }

        fn open(&mut self, name: &str) -> Result<Arc<dyn Device>, Errno> {
            if let Some(e) = self.refuse_open {
                return Err(e);
            }
            self.devices.get(name).cloned().ok_or(Errno::ENXIO)
        }

        fn nop_created(&mut self, info: ProviderInfo, device: Arc<NopDevice>) {
            self.created.push(info.name.clone());
            self.devices
                .insert(info.name.clone(), Arc::clone(&device) as Arc<dyn Device>);
            self.nops.insert(info.name.clone(), device);
            self.providers.push(info);
        }

        fn nop_resized(&mut self, info: ProviderInfo) {
            self.resized.push((info.name.clone(), info.mediasize));
            if let Some(p) = self.providers.iter_mut().find(|p| p.name == info.name) {
                *p = info;
            }
        }

        fn nop_destroyed(&mut self, name: &str) {
            self.destroyed.push(name.into());
            self.providers.retain(|p| p.name != name);
            self.devices.remove(name);
            self.nops.remove(name);
        }

        fn access(&self, name: &str) -> (i32, i32, i32) {
            self.access.get(name).copied().unwrap_or((0, 0, 0))
        }

        fn log(&mut self, line: String) {
            self.log.push(line);
        }
    }

    /// `gnop create`'s numeric options and their defaults, as geom(8) sends them.
    const CREATE_OPTS: &[(&str, i64)] = &[
        ("count_until_fail", -1),
        ("delaymsec", -1),
        ("error", -1),
        ("offset", 0),
        ("stripesize", 0),
        ("stripeoffset", 0),
        ("rdelayprob", -1),
        ("rfailprob", -1),
        ("size", 0),
        ("secsize", 0),
        ("wfailprob", -1),
        ("wdelayprob", -1),
    ];

    /// `gnop configure`'s numeric options and their defaults.
    const CONFIGURE_OPTS: &[(&str, i64)] = &[
        ("count_until_fail", -1),
        ("delaymsec", -1),
        ("error", -1),
        ("rdelayprob", -1),
        ("rfailprob", -1),
        ("wfailprob", -1),
        ("wdelayprob", -1),
    ];

    fn numbers(req: &mut Request, table: &[(&str, i64)], given: &[(&str, i64)]) {
        for &(name, default) in table {
            let v = given
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(default, |&(_, v)| v);
            req.add_i64(name, v);
        }
    }

    /// `gnop create` as geom(8) sends it: every number, physpath (0xAD unless `-z`),
    /// gnopname only with `-Z`, then the operands.
    fn create_req(
        given: &[(&str, i64)],
        physpath: Option<&str>,
        gnopname: Option<&str>,
        args: &[&str],
    ) -> Request {
        let mut req = Request::for_verb("NOP", "create", VERSION);
        numbers(&mut req, CREATE_OPTS, given);
        match physpath {
            Some(p) => req.add_ascii("physpath", p),
            None => req.add_ascii_bytes("physpath", PHYSPATH_PASSTHROUGH),
        }
        if let Some(n) = gnopname {
            req.add_ascii("gnopname", n);
        }
        req.add_args(args);
        req
    }

    fn configure_req(given: &[(&str, i64)], args: &[&str]) -> Request {
        let mut req = Request::for_verb("NOP", "configure", VERSION);
        numbers(&mut req, CONFIGURE_OPTS, given);
        req.add_args(args);
        req
    }

    fn destroy_req(force: bool, args: &[&str]) -> Request {
        let mut req = Request::for_verb("NOP", "destroy", VERSION);
        req.add_int("force", i32::from(force));
        req.add_args(args);
        req
    }

    fn reset_req(args: &[&str]) -> Request {
        let mut req = Request::for_verb("NOP", "reset", VERSION);
        req.add_args(args);
        req
    }

    /// Runs `req`; its first error's text, or "" on success.
    fn run(nop: &mut NopClass, host: &mut MemHost, mut req: Request) -> String {
        nop.ctl(host, &mut req);
        req.first_error().map(|e| e.to_string()).unwrap_or_default()
    }

    /// A class with md0 (1 MiB, 512-byte sectors) and md1 (1 MiB, 4096-byte sectors).
    fn setup() -> (NopClass, MemHost) {
        let mut host = MemHost::default();
        host.disk("md0", MIB, 512);
        host.disk("md1", MIB, 4096);
        (NopClass::with_seed(7), host)
    }

    fn create(nop: &mut NopClass, host: &mut MemHost, given: &[(&str, i64)], args: &[&str]) {
        let err = run(nop, host, create_req(given, None, None, args));
        assert_eq!(err, "", "create {args:?} {given:?}");
    }

    fn dev(nop: &NopClass, name: &str) -> Arc<NopDevice> {
        nop.device(name).expect("device")
    }

    fn size(nop: &NopClass, name: &str) -> u64 {
        nop.info(name).expect("exists").mediasize
    }

    // ----- the dispatcher ---------------------------------------------------------------

    #[test]
    fn version_is_checked_before_the_verb() {
        let (mut nop, mut host) = setup();
        let mut req = Request::for_verb("NOP", "frobnicate", 3);
        req.add_args(&["md0"]);
        assert_eq!(
            run(&mut nop, &mut host, req),
            "Userland and kernel parts are out of sync."
        );
        let mut req = Request::new();
        req.add_ascii("class", "NOP");
        req.add_ascii("verb", "create");
        assert_eq!(
            run(&mut nop, &mut host, req),
            "Missing version argument",
            "the framework's text wins over the class's own"
        );
        let mut req = Request::new();
        req.add_ascii("verb", "create");
        req.add_i64("version", 4);
        assert_eq!(
            run(&mut nop, &mut host, req),
            "Wrong length version argument"
        );
    }

    #[test]
    fn unknown_verbs_are_refused_with_a_period() {
        let (mut nop, mut host) = setup();
        let req = Request::for_verb("NOP", "list", VERSION);
        assert_eq!(run(&mut nop, &mut host, req), "Unknown verb.");
        assert!(nop.providers().next().is_none());
    }

    #[test]
    fn every_verb_needs_nargs_and_a_device() {
        let (mut nop, mut host) = setup();
        for verb in ["create", "configure", "destroy", "reset"] {
            let req = Request::for_verb("NOP", verb, VERSION);
            assert_eq!(
                run(&mut nop, &mut host, req),
                "Missing nargs argument",
                "{verb}"
            );
            let mut req = Request::for_verb("NOP", verb, VERSION);
            req.add_args::<&str>(&[]);
            req.add_int("force", 0);
            assert_eq!(
                run(&mut nop, &mut host, req),
                "Missing device(s).",
                "{verb}"
            );
        }
    }

    // ----- create -----------------------------------------------------------------------

    #[test]
    fn create_with_defaults_makes_a_pass_through_nop() {
        let (mut nop, mut host) = setup();
        create(&mut nop, &mut host, &[], &["md0"]);
        assert_eq!(host.log, ["GEOM_NOP: Device md0.nop created."]);
        assert_eq!(host.created, ["md0.nop"]);
        let info = nop.info("md0.nop").expect("created");
        assert_eq!(info.underlying, "md0");
        assert_eq!((info.offset, info.mediasize, info.secsize), (0, MIB, 512));
        assert_eq!(info.explicitsize, 0);
        assert_eq!(info.physpath, None, "0xAD means passthrough");
        assert_eq!(
            info.knobs,
            NopKnobs {
                error: 5,
                rfailprob: 0,
                wfailprob: 0,
                rdelayprob: 0,
                wdelayprob: 0,
                delaymsec: 1,
                count_until_fail: 0,
            },
            "-1 maps to EIO, 1 ms and zeros"
        );
        let pp: Vec<ProviderInfo> = nop.providers().collect();
        assert_eq!(
            pp,
            [ProviderInfo {
                name: "md0.nop".into(),
                mediasize: MIB,
                sectorsize: 512,
                stripesize: 0,
                stripeoffset: 0,
                rank: 2,
            }]
        );
        assert_eq!(host.provider("md0.nop"), Some(pp[0].clone()));
    }

    #[test]
    fn create_takes_every_option() {
        let (mut nop, mut host) = setup();
        let given = [
            ("count_until_fail", 3),
            ("delaymsec", 20),
            ("error", 6),
            ("offset", 4096),
            ("stripesize", 8192),
            ("stripeoffset", 1024),
            ("rdelayprob", 10),
            ("rfailprob", 11),
            ("size", 65536),
            ("secsize", 2048),
            ("wfailprob", 12),
            ("wdelayprob", 13),
        ];
        let req = create_req(&given, Some("pci0/ata1"), None, &["/dev/md0"]);
        assert_eq!(run(&mut nop, &mut host, req), "");
        let info = nop.info("md0.nop").expect("created");
        assert_eq!(
            (info.offset, info.mediasize, info.secsize, info.explicitsize),
            (4096, 65536, 2048, 65536)
        );
        assert_eq!((info.stripesize, info.stripeoffset), (8192, 1024));
        assert_eq!(info.physpath.as_deref(), Some("pci0/ata1"));
        assert_eq!(
            info.knobs,
            NopKnobs {
                error: 6,
                rfailprob: 11,
                wfailprob: 12,
                rdelayprob: 10,
                wdelayprob: 13,
                delaymsec: 20,
                count_until_fail: 3,
            }
        );
    }

    #[test]
    fn create_option_checks_come_in_freebsds_order() {
        // Each case breaks one option and every option after it; the first one checked
        // must be the one reported.
        let order: &[(&str, i64)] = &[
            ("rfailprob", 101),
            ("wfailprob", -2),
            ("delaymsec", 0),
            ("rdelayprob", 101),
            ("wdelayprob", -5),
            ("count_until_fail", -2),
            ("offset", -512),
            ("size", -512),
            ("secsize", -512),
            ("stripesize", -512),
            ("stripeoffset", -512),
        ];
        for start in 0..order.len() {
            let (mut nop, mut host) = setup();
            let req = create_req(&order[start..], None, None, &["md0"]);
            let want = format!("Invalid '{}' argument", order[start].0);
            assert_eq!(run(&mut nop, &mut host, req), want);
            assert!(nop.providers().next().is_none());
        }
    }

    #[test]
    fn create_range_edges_are_accepted() {
        let (mut nop, mut host) = setup();
        let given = [
            ("rfailprob", 100),
            ("wfailprob", 0),
            ("delaymsec", 1),
            ("count_until_fail", 0),
            ("error", -77),
        ];
        create(&mut nop, &mut host, &given, &["md0"]);
        let k = nop.info("md0.nop").expect("created").knobs;
        assert_eq!((k.rfailprob, k.delaymsec, k.error), (100, 1, -77));
    }

    #[test]
    fn geometry_checks_come_in_freebsds_order() {
        let cases: &[(&[(&str, i64)], &str)] = &[
            (
                &[("offset", 100), ("size", 100)],
                "Invalid offset for provider md0.",
            ),
            (
                &[("size", 100), ("offset", MIB as i64)],
                "Invalid size for provider md0.",
            ),
            (
                &[("offset", MIB as i64)],
                "Invalid offset for provider md0.",
            ),
            (
                &[("offset", 512), ("size", MIB as i64)],
                "Invalid size for provider md0.",
            ),
            (
                &[("secsize", 700), ("stripesize", 3)],
                "Invalid secsize for provider md0.",
            ),
            (
                &[("secsize", 2 << 20), ("stripesize", 3)],
                "secsize is too big.",
            ),
            (
                &[("stripesize", 100), ("stripeoffset", 3)],
                "Invalid stripesize for provider md0.",
            ),
            (
                &[("stripeoffset", 3)],
                "Invalid stripeoffset for provider md0.",
            ),
            (
                &[("stripesize", 4096), ("stripeoffset", 4096)],
                "stripeoffset is too big.",
            ),
        ];
        for (given, want) in cases {
            let (mut nop, mut host) = setup();
            let req = create_req(given, None, Some("bad-name"), &["md0"]);
            assert_eq!(run(&mut nop, &mut host, req), *want, "{given:?}");
            assert!(host.created.is_empty());
        }
    }

    #[test]
    fn checks_use_the_lower_sector_size() {
        let (mut nop, mut host) = setup();
        let req = create_req(&[("offset", 512)], None, None, &["md1"]);
        assert_eq!(
            run(&mut nop, &mut host, req),
            "Invalid offset for provider md1."
        );
        let req = create_req(&[("secsize", 6144)], None, None, &["md1"]);
        assert_eq!(
            run(&mut nop, &mut host, req),
            "Invalid secsize for provider md1."
        );
        create(
            &mut nop,
            &mut host,
            &[("secsize", MAXPHYS as i64)],
            &["md1"],
        );
        assert_eq!(nop.info("md1.nop").expect("created").secsize, MAXPHYS);
    }

    #[test]
    fn size_is_rounded_down_to_the_sector_size() {
        let (mut nop, mut host) = setup();
        create(
            &mut nop,
            &mut host,
            &[("offset", 512), ("secsize", 4096)],
            &["md0"],
        );
        let info = nop.info("md0.nop").expect("created");
        assert_eq!(info.mediasize, MIB - 4096, "MIB - 512 rounded down to 4096");
        assert_eq!(info.explicitsize, 0);
    }

    #[test]
    fn gnopname_names_the_provider_and_must_be_alphanumeric() {
        let (mut nop, mut host) = setup();
        for bad in ["a-b", "a/b", "a.b", "a_b", "a b", "é"] {
            let req = create_req(&[], None, Some(bad), &["md0"]);
            assert_eq!(
                run(&mut nop, &mut host, req),
                format!("Name {bad} is invalid.")
            );
        }
        let req = create_req(&[], None, Some("Fast0"), &["md0"]);
        assert_eq!(run(&mut nop, &mut host, req), "");
        assert!(nop.info("Fast0.nop").is_some());
        let req = create_req(&[], None, Some(&"x".repeat(59)), &["md1"]);
        assert_eq!(run(&mut nop, &mut host, req), "");
        let req = create_req(&[], None, Some(&"y".repeat(60)), &["md1"]);
        assert_eq!(run(&mut nop, &mut host, req), "Invalid provider name.");
    }

    #[test]
    fn long_provider_names_overflow_the_name_buffer() {
        let (mut nop, mut host) = setup();
        let long = "d".repeat(60);
        host.disk(&long, MIB, 512);
        let req = create_req(&[], None, None, &[&long]);
        assert_eq!(run(&mut nop, &mut host, req), "Invalid provider name.");
        let fits = "e".repeat(59);
        host.disk(&fits, MIB, 512);
        create(&mut nop, &mut host, &[], &[&fits]);
    }

    #[test]
    fn duplicate_names_are_refused() {
        let (mut nop, mut host) = setup();
        create(&mut nop, &mut host, &[], &["md0"]);
        let req = create_req(&[], None, None, &["md0"]);
        assert_eq!(
            run(&mut nop, &mut host, req),
            "Provider md0.nop already exists."
        );
        let req = create_req(&[], None, Some("md0"), &["md1"]);
        assert_eq!(
            run(&mut nop, &mut host, req),
            "Provider md0.nop already exists."
        );
        assert_eq!(host.created, ["md0.nop"]);
    }

    #[test]
    fn unknown_and_missing_providers() {
        let (mut nop, mut host) = setup();
        let req = create_req(&[], None, None, &["md9"]);
        assert_eq!(run(&mut nop, &mut host, req), "Provider not found: \"md9\"");
        let req = create_req(&[], None, None, &["/dev/md9"]);
        assert_eq!(
            run(&mut nop, &mut host, req),
            "Provider not found: \"/dev/md9\"",
            "gctl_get_provider quotes the argument as given"
        );
        let mut req = Request::for_verb("NOP", "create", VERSION);
        req.add_ascii_bytes("physpath", PHYSPATH_PASSTHROUGH);
        req.add_int("nargs", 1);
        req.add_ascii("arg1", "md0");
        nop.ctl(&mut host, &mut req);
        assert_eq!(
            req.first_error().map(|e| e.to_string()).as_deref(),
            Some("Missing 'arg0' argument")
        );
    }

    #[test]
    fn create_stops_at_the_first_failure_and_keeps_the_earlier_ones() {
        let (mut nop, mut host) = setup();
        let req = create_req(&[], None, None, &["md0", "md9", "md1"]);
        assert_eq!(run(&mut nop, &mut host, req), "Provider not found: \"md9\"");
        assert_eq!(host.created, ["md0.nop"]);
        assert!(nop.info("md1.nop").is_none());
        let req = create_req(&[], None, None, &["md1", "md0"]);
        assert_eq!(
            run(&mut nop, &mut host, req),
            "Provider md0.nop already exists."
        );
        assert_eq!(host.created, ["md0.nop", "md1.nop"]);
    }

    #[test]
    fn a_refused_attach_creates_nothing() {
        let (mut nop, mut host) = setup();
        host.refuse_open = Some(Errno::EPERM);
        let req = create_req(&[], None, None, &["md0"]);
        assert_eq!(
            run(&mut nop, &mut host, req),
            "Cannot attach to provider md0."
        );
        assert!(nop.info("md0.nop").is_none());
        assert!(host.created.is_empty() && host.log.is_empty());
    }

    #[test]
    fn a_nop_can_sit_on_a_nop() {
        let (mut nop, mut host) = setup();
        create(&mut nop, &mut host, &[("offset", 4096)], &["md0"]);
        create(&mut nop, &mut host, &[("offset", 4096)], &["md0.nop"]);
        let top = nop.info("md0.nop.nop").expect("created");
        assert_eq!(top.mediasize, MIB - 8192);
        assert_eq!(nop.providers().map(|p| p.rank).collect::<Vec<_>>(), [2, 3]);
        let dev = nop.device("md0.nop.nop").expect("device");
        dev.write_at(&[9; 512], 0).expect("write");
        assert_eq!(host.mems["md0"].peek(8192, 512), vec![9; 512]);
        // Destroying the lower one orphans the upper one.
        assert_eq!(
            run(&mut nop, &mut host, destroy_req(false, &["md0.nop"])),
            ""
        );
        assert_eq!(host.destroyed, ["md0.nop", "md0.nop.nop"]);
        assert!(nop.providers().next().is_none());
    }

    #[test]
    fn physpath_minus_z_and_passthrough() {
        let (mut nop, mut host) = setup();
        let req = create_req(&[], Some("enc@n5000/type@0/slot@3"), None, &["md0"]);
        assert_eq!(run(&mut nop, &mut host, req), "");
        create(&mut nop, &mut host, &[], &["md1"]);
        let req = create_req(&[], Some(""), Some("empty"), &["md0"]);
        assert_eq!(run(&mut nop, &mut host, req), "");
        assert_eq!(
            dev(&nop, "md0.nop").physpath().as_deref(),
            Ok("enc@n5000/type@0/slot@3")
        );
        assert_eq!(
            dev(&nop, "md1.nop").physpath().as_deref(),
            Ok("mem"),
            "passthrough"
        );
        assert_eq!(
            dev(&nop, "empty.nop").physpath().as_deref(),
            Ok(""),
            "-z \"\""
        );
        assert_eq!(dev(&nop, "md0.nop").counters().getattrs, 1);
        assert_eq!(dev(&nop, "md1.nop").counters().getattrs, 1);
        let long = "p".repeat(MAXPATHLEN + 10);
        let req = create_req(&[], Some(&long), Some("long"), &["md0"]);
        assert_eq!(run(&mut nop, &mut host, req), "");
        assert_eq!(
            dev(&nop, "long.nop").physpath().map(|p| p.len()),
            Ok(MAXPATHLEN),
            "strndup(physpath, MAXPATHLEN)"
        );
    }

    // ----- configure --------------------------------------------------------------------

    #[test]
    fn configure_changes_only_what_is_given() {
        let (mut nop, mut host) = setup();
        create(
            &mut nop,
            &mut host,
            &[("rfailprob", 10), ("delaymsec", 5), ("error", 6)],
            &["md0", "md1"],
        );
        let req = configure_req(&[("wfailprob", 50), ("count_until_fail", 2)], &["md0.nop"]);
        assert_eq!(run(&mut nop, &mut host, req), "");
        let k = nop.info("md0.nop").expect("exists").knobs;
        assert_eq!(
            k,
            NopKnobs {
                error: 6,
                rfailprob: 10,
                wfailprob: 50,
                rdelayprob: 0,
                wdelayprob: 0,
                delaymsec: 5,
                count_until_fail: 2,
            }
        );
        let before = nop.info("md1.nop").expect("exists").knobs;
        let all = [
            ("error", 0),
            ("rfailprob", 1),
            ("wfailprob", 2),
            ("rdelayprob", 3),
            ("wdelayprob", 4),
            ("delaymsec", 9),
            ("count_until_fail", -5),
        ];
        let req = configure_req(&all, &["/dev/md1.nop"]);
        assert_eq!(run(&mut nop, &mut host, req), "");
        let k = nop.info("md1.nop").expect("exists").knobs;
        assert_ne!(k, before);
        assert_eq!(
            k,
            NopKnobs {
                error: 0,
                rfailprob: 1,
                wfailprob: 2,
                rdelayprob: 3,
                wdelayprob: 4,
                delaymsec: 9,
                count_until_fail: (-5i32) as u32,
            },
            "count_until_fail is not range-checked"
        );
    }

    #[test]
    fn configure_checks_come_in_freebsds_order() {
        let order: &[(&str, i64)] = &[
            ("rfailprob", 101),
            ("wfailprob", -2),
            ("delaymsec", 0),
            ("rdelayprob", 101),
            ("wdelayprob", -5),
        ];
        for start in 0..order.len() {
            let (mut nop, mut host) = setup();
            create(&mut nop, &mut host, &[], &["md0"]);
            let mut given = order[start..].to_vec();
            given.push(("error", 99));
            let req = configure_req(&given, &["md0.nop"]);
            let want = format!("Invalid '{}' argument", order[start].0);
            assert_eq!(run(&mut nop, &mut host, req), want);
            assert_eq!(nop.info("md0.nop").expect("exists").knobs.error, 5);
        }
    }

    #[test]
    fn configure_and_reset_want_nop_providers() {
        let (mut nop, mut host) = setup();
        create(&mut nop, &mut host, &[], &["md0"]);
        let req = configure_req(&[("rfailprob", 5)], &["md0.nop", "md1"]);
        assert_eq!(run(&mut nop, &mut host, req), "Provider md1 is invalid.");
        assert_eq!(
            nop.info("md0.nop").expect("exists").knobs.rfailprob,
            5,
            "earlier operands were configured"
        );
        let req = configure_req(&[("rfailprob", 5)], &["md7.nop"]);
        assert_eq!(
            run(&mut nop, &mut host, req),
            "Provider not found: \"md7.nop\""
        );
        assert_eq!(
            run(&mut nop, &mut host, reset_req(&["/dev/md1"])),
            "Provider md1 is invalid."
        );
        assert!(host.log.iter().all(|l| !l.contains("invalid")), "level 1");
        nop.debug = 1;
        assert_eq!(
            run(&mut nop, &mut host, reset_req(&["md1"])),
            "Provider md1 is invalid."
        );
        assert_eq!(
            host.log.last().map(String::as_str),
            Some("GEOM_NOP[1]: Provider md1 is invalid.")
        );
    }

    // ----- destroy and reset ------------------------------------------------------------

    #[test]
    fn destroy_takes_the_nop_name() {
        let (mut nop, mut host) = setup();
        create(&mut nop, &mut host, &[], &["md0", "md1"]);
        assert_eq!(
            run(&mut nop, &mut host, destroy_req(false, &["md0"])),
            "Device md0 is invalid."
        );
        let dev = nop.device("md0.nop").expect("device");
        assert_eq!(
            run(
                &mut nop,
                &mut host,
                destroy_req(false, &["/dev/md0.nop", "md1.nop"])
            ),
            ""
        );
        assert_eq!(host.destroyed, ["md0.nop", "md1.nop"]);
        assert_eq!(
            host.log[2..],
            [
                "GEOM_NOP: Device md0.nop removed.",
                "GEOM_NOP: Device md1.nop removed."
            ]
        );
        assert!(nop.providers().next().is_none());
        assert!(dev.is_gone());
        assert_eq!(dev.read_at(&mut [0; 512], 0), Err(Errno::ENXIO));
        assert_eq!(dev.flush(), Err(Errno::ENXIO));
        assert_eq!(dev.physpath(), Err(Errno::ENXIO));
    }

    #[test]
    fn destroy_needs_force_and_arguments() {
        let (mut nop, mut host) = setup();
        create(&mut nop, &mut host, &[], &["md0"]);
        let mut req = Request::for_verb("NOP", "destroy", VERSION);
        req.add_args(&["md0.nop"]);
        assert_eq!(run(&mut nop, &mut host, req), "Missing force argument");
        let mut req = Request::for_verb("NOP", "destroy", VERSION);
        req.add_int("force", 0);
        req.add_int("nargs", 2);
        req.add_ascii("arg0", "md0.nop");
        assert_eq!(run(&mut nop, &mut host, req), "No 'arg1' argument");
        assert_eq!(host.destroyed, ["md0.nop"], "arg0 went first");
    }

    #[test]
    fn destroying_an_open_nop_needs_force() {
        let (mut nop, mut host) = setup();
        create(&mut nop, &mut host, &[], &["md0"]);
        host.access.insert("md0.nop".into(), (0, 0, 1));
        assert_eq!(nop.destroy_geom(&mut host, "md0.nop"), Err(Errno::EBUSY));
        host.access.insert("md0.nop".into(), (1, 1, 0));
        assert_eq!(
            run(&mut nop, &mut host, destroy_req(false, &["md0.nop"])),
            "Cannot destroy device md0.nop (error=16)."
        );
        assert!(nop.info("md0.nop").is_some());
        assert_eq!(host.log.len(), 1, "the still-open text is level 1");
        assert_eq!(nop.destroy_geom(&mut host, "md0.nop"), Err(Errno::EBUSY));
        nop.debug = 1;
        assert_eq!(
            run(&mut nop, &mut host, destroy_req(false, &["md0.nop"])),
            "Cannot destroy device md0.nop (error=16)."
        );
        assert_eq!(
            host.log.last().map(String::as_str),
            Some("GEOM_NOP[1]: Device md0.nop is still open (r1w1e0).")
        );
        nop.debug = 0;
        assert_eq!(
            run(&mut nop, &mut host, destroy_req(true, &["md0.nop"])),
            ""
        );
        assert_eq!(
            host.log.last().map(String::as_str),
            Some("GEOM_NOP: Device md0.nop is still open, so it can't be definitely removed.")
        );
        assert_eq!(host.destroyed, ["md0.nop"]);
        assert_eq!(nop.destroy_geom(&mut host, "md0.nop"), Err(Errno::ENXIO));
    }

    #[test]
    fn reset_zeroes_the_counters_only() {
        let (mut nop, mut host) = setup();
        create(
            &mut nop,
            &mut host,
            &[("count_until_fail", 5), ("wfailprob", 100)],
            &["md0"],
        );
        let dev = nop.device("md0.nop").expect("device");
        dev.read_at(&mut [0; 1024], 0).expect("read");
        dev.write_at(&[1; 512], 512).expect("write");
        dev.flush().expect("flush");
        dev.discard(0, 512).expect("discard");
        dev.physpath().expect("physpath");
        let c = dev.counters();
        assert_eq!(
            (c.reads, c.writes, c.flushes, c.deletes, c.getattrs),
            (1, 1, 1, 1, 1)
        );
        assert_eq!((c.readbytes, c.wrotebytes), (1024, 512));
        assert_eq!(run(&mut nop, &mut host, reset_req(&["md0.nop"])), "");
        assert_eq!(dev.counters(), NopCounters::default());
        let k = dev.knobs();
        assert_eq!((k.count_until_fail, k.wfailprob, k.error), (3, 100, 5));
    }

    // ----- events -----------------------------------------------------------------------

    #[test]
    fn orphan_destroys_with_force_newest_first() {
        let (mut nop, mut host) = setup();
        create(&mut nop, &mut host, &[], &["md0"]);
        let req = create_req(&[], None, Some("second"), &["md0"]);
        assert_eq!(run(&mut nop, &mut host, req), "");
        create(&mut nop, &mut host, &[], &["md1"]);
        host.access.insert("md0.nop".into(), (1, 0, 0));
        nop.orphan(&mut host, "md0");
        assert_eq!(host.destroyed, ["second.nop", "md0.nop"]);
        assert_eq!(
            host.log[3..],
            [
                "GEOM_NOP: Device second.nop removed.",
                "GEOM_NOP: Device md0.nop is still open, so it can't be definitely removed."
            ]
        );
        assert_eq!(
            nop.providers().map(|p| p.name).collect::<Vec<_>>(),
            ["md1.nop"]
        );
    }

    #[test]
    fn resize_follows_unless_the_size_was_explicit() {
        let (mut nop, mut host) = setup();
        create(&mut nop, &mut host, &[("offset", 4096)], &["md0"]);
        let req = create_req(&[("size", 8192)], None, Some("fixed"), &["md0"]);
        assert_eq!(run(&mut nop, &mut host, req), "");
        let req = create_req(&[("offset", 65536)], None, Some("far"), &["md0"]);
        assert_eq!(run(&mut nop, &mut host, req), "");
        create(&mut nop, &mut host, &[], &["md0.nop"]);
        let mut md0 = host.provider("md0").expect("md0");
        md0.mediasize = 2 * MIB + 100;
        nop.resized(&mut host, &md0);
        assert_eq!(
            size(&nop, "md0.nop"),
            2 * MIB + 100 - 4096,
            "not rounded to secsize"
        );
        assert_eq!(
            size(&nop, "md0.nop.nop"),
            2 * MIB + 100 - 4096,
            "the resize cascades"
        );
        assert_eq!(size(&nop, "fixed.nop"), 8192);
        assert_eq!(size(&nop, "far.nop"), 2 * MIB + 100 - 65536);
        assert_eq!(
            host.resized,
            [
                ("far.nop".to_string(), 2 * MIB + 100 - 65536),
                ("md0.nop".to_string(), 2 * MIB + 100 - 4096),
                ("md0.nop.nop".to_string(), 2 * MIB + 100 - 4096),
            ]
        );
        md0.mediasize = 32768;
        nop.resized(&mut host, &md0);
        assert_eq!(host.destroyed, ["far.nop"], "offset beyond the new end");
        assert_eq!(size(&nop, "md0.nop"), 32768 - 4096);
        md0.mediasize = 4096;
        nop.resized(&mut host, &md0);
        assert_eq!(
            size(&nop, "md0.nop"),
            0,
            "offset == mediasize leaves an empty provider"
        );
    }

    // ----- the data path ----------------------------------------------------------------

    #[test]
    fn io_is_counted_and_shifted_by_the_offset() {
        let (mut nop, mut host) = setup();
        create(
            &mut nop,
            &mut host,
            &[("offset", 8192), ("size", 16384)],
            &["md0"],
        );
        let dev = nop.device("md0.nop").expect("device");
        let mem = Arc::clone(&host.mems["md0"]);
        dev.write_at(&[0xab; 1024], 512).expect("write");
        assert_eq!(mem.peek(8192 + 512, 1024), vec![0xab; 1024]);
        assert_eq!(mem.peek(512, 4), [0; 4], "nothing at the unshifted offset");
        let mut buf = [0u8; 512];
        dev.read_at(&mut buf, 1024).expect("read");
        assert_eq!(buf, [0xab; 512]);
        dev.discard(512, 512).expect("discard");
        assert_eq!(mem.peek(8192 + 512, 512), vec![0; 512]);
        assert_eq!(mem.peek(8192 + 1024, 4), [0xab; 4]);
        let c = dev.counters();
        assert_eq!(
            (c.reads, c.readbytes, c.writes, c.wrotebytes, c.deletes),
            (1, 512, 1, 1024, 1)
        );
        // The nop's own bounds.
        assert_eq!(dev.read_at(&mut buf, 16384), Err(Errno::EIO));
        assert_eq!(dev.write_at(&[0; 1024], 15872), Err(Errno::EIO));
        assert_eq!(dev.read_at(&mut buf, 100), Err(Errno::EINVAL));
        assert_eq!(dev.read_at(&mut [0; 100], 0), Err(Errno::EINVAL));
        assert_eq!(dev.read_at(&mut [], 0), Ok(()));
        assert_eq!(dev.counters().reads, 1, "refused requests are not counted");
        // Errors from below pass through.
        mem.set_faults(MemFaults {
            read: Some(Errno(45)),
            write: None,
        });
        assert_eq!(dev.read_at(&mut buf, 0), Err(Errno(45)));
    }

    #[test]
    fn failprob_100_always_fails_and_0_never() {
        let (mut nop, mut host) = setup();
        create(&mut nop, &mut host, &[("rfailprob", 100)], &["md0"]);
        create(
            &mut nop,
            &mut host,
            &[("wfailprob", 100), ("error", 6)],
            &["md1"],
        );
        let r = nop.device("md0.nop").expect("device");
        let w = nop.device("md1.nop").expect("device");
        let mut buf = [0u8; 4096];
        for _ in 0..50 {
            assert_eq!(r.read_at(&mut buf, 0), Err(Errno::EIO));
            assert_eq!(r.write_at(&buf, 0), Ok(()), "wfailprob is 0");
            assert_eq!(w.write_at(&buf, 4096), Err(Errno::ENXIO));
            assert_eq!(w.read_at(&mut buf, 0), Ok(()), "rfailprob is 0");
        }
        assert_eq!(
            (r.counters().reads, r.counters().readbytes),
            (50, 50 * 4096),
            "failed requests are counted"
        );
        // configure -w 0: no more failures.
        let req = configure_req(&[("wfailprob", 0)], &["md1.nop"]);
        assert_eq!(run(&mut nop, &mut host, req), "");
        for _ in 0..50 {
            assert_eq!(w.write_at(&buf, 4096), Ok(()));
        }
    }

    #[test]
    fn a_failed_write_does_not_reach_the_disk() {
        let (mut nop, mut host) = setup();
        create(&mut nop, &mut host, &[("wfailprob", 100)], &["md0"]);
        let dev = nop.device("md0.nop").expect("device");
        assert_eq!(dev.write_at(&[7; 512], 0), Err(Errno::EIO));
        assert_eq!(host.mems["md0"].peek(0, 512), vec![0; 512]);
        // -e 0: the request "succeeds" with nothing done.
        let req = configure_req(&[("error", 0)], &["md0.nop"]);
        assert_eq!(run(&mut nop, &mut host, req), "");
        assert_eq!(dev.write_at(&[7; 512], 0), Ok(()));
        assert_eq!(host.mems["md0"].peek(0, 512), vec![0; 512]);
    }

    #[test]
    fn count_until_fail_lets_n_requests_through() {
        let (mut nop, mut host) = setup();
        let given = [
            ("count_until_fail", 3),
            ("rfailprob", 100),
            ("wfailprob", 100),
        ];
        create(&mut nop, &mut host, &given, &["md0"]);
        let dev = nop.device("md0.nop").expect("device");
        let mut buf = [0u8; 512];
        assert_eq!(dev.read_at(&mut buf, 0), Ok(()));
        assert_eq!(dev.flush(), Ok(()), "only reads and writes count down");
        assert_eq!(dev.write_at(&buf, 0), Ok(()));
        assert_eq!(dev.knobs().count_until_fail, 1);
        assert_eq!(dev.read_at(&mut buf, 0), Ok(()));
        assert_eq!(dev.read_at(&mut buf, 0), Err(Errno::EIO));
        assert_eq!(dev.write_at(&buf, 0), Err(Errno::EIO));
        assert_eq!(dev.knobs().count_until_fail, 0);
    }

    #[test]
    fn intermediate_probabilities_are_seeded_and_replay() {
        let outcomes = |seed: u64| {
            let mut host = MemHost::default();
            host.disk("md0", MIB, 512);
            let mut nop = NopClass::with_seed(seed);
            create(&mut nop, &mut host, &[("rfailprob", 30)], &["md0"]);
            let dev = nop.device("md0.nop").expect("device");
            (0..400)
                .map(|_| dev.read_at(&mut [0; 512], 0).is_err())
                .collect::<Vec<bool>>()
        };
        let a = outcomes(42);
        assert_eq!(a, outcomes(42), "same seed, same run");
        assert_ne!(a, outcomes(43));
        let failed = a.iter().filter(|&&f| f).count();
        assert!((60..=180).contains(&failed), "{failed} of 400 at 30%");
    }

    #[test]
    fn delay_holds_the_request() {
        let (mut nop, mut host) = setup();
        let given = [("delaymsec", 40), ("wdelayprob", 100), ("rdelayprob", 100)];
        create(&mut nop, &mut host, &given, &["md0"]);
        let dev = nop.device("md0.nop").expect("device");
        let t = Instant::now();
        dev.write_at(&[3; 512], 0).expect("write");
        assert!(
            t.elapsed() >= Duration::from_millis(40),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(host.mems["md0"].peek(0, 512), vec![3; 512], "then done");
        let t = Instant::now();
        dev.read_at(&mut [0; 512], 0).expect("read");
        assert!(
            t.elapsed() >= Duration::from_millis(40),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn devices_are_shared_across_threads() {
        let (mut nop, mut host) = setup();
        create(&mut nop, &mut host, &[], &["md0"]);
        let dev = nop.device("md0.nop").expect("device");
        let workers: Vec<_> = (0..4u64)
            .map(|i| {
                let dev = Arc::clone(&dev);
                std::thread::spawn(move || {
                    for j in 0..25u64 {
                        dev.write_at(&[1; 512], (i * 25 + j) * 512).expect("write");
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        let info = nop.info("md0.nop").expect("exists");
        assert_eq!(
            (info.counters.writes, info.counters.wrotebytes),
            (100, 51200)
        );
    }

    // ----- confxml and gnop(8) ----------------------------------------------------------

    /// The daemon's confxml: its disks as a DISK class, then the NOP class.
    fn confxml(nop: &NopClass, host: &MemHost) -> String {
        let mut xml = String::from("<mesh>\n");
        let disks: Vec<(&ProviderInfo, (i32, i32, i32))> = host
            .providers
            .iter()
            .filter(|p| nop.info(&p.name).is_none())
            .map(|p| (p, host.access(&p.name)))
            .collect();
        geom_multipath::geom_dump::conf_foreign_class(&mut xml, "DISK", disks).expect("disk xml");
        nop.conf_class(host, &mut xml).expect("nop xml");
        xml.push_str("</mesh>\n");
        xml
    }

    #[test]
    fn conf_class_layout() {
        let (mut nop, mut host) = setup();
        create(
            &mut nop,
            &mut host,
            &[
                ("offset", 4096),
                ("stripesize", 8192),
                ("stripeoffset", 512),
            ],
            &["md0"],
        );
        host.access.insert("md0.nop".into(), (1, 1, 1));
        let mut xml = String::new();
        nop.conf_class(&host, &mut xml).expect("xml");
        let geom = named_xml_id(IdKind::NopGeom, "md0.nop");
        let want = format!(
            "  <class id=\"{class}\">\n    <name>NOP</name>\n    <geom id=\"{geom}\">\n      \
             <class ref=\"{class}\"/>\n      <name>md0.nop</name>\n      <rank>2</rank>\n      \
             <config>\n\t<Offset>4096</Offset>\n\t<ReadFailProb>0</ReadFailProb>\n\t\
             <WriteFailProb>0</WriteFailProb>\n\t<ReadDelayedProb>0</ReadDelayedProb>\n\t\
             <WriteDelayedProb>0</WriteDelayedProb>\n\t<Delay>1</Delay>\n\t\
             <CountUntilFail>0</CountUntilFail>\n\t<Error>5</Error>\n\t<Reads>0</Reads>\n\t\
             <Writes>0</Writes>\n\t<Deletes>0</Deletes>\n\t<Getattrs>0</Getattrs>\n\t\
             <Flushes>0</Flushes>\n\t<Speedups>0</Speedups>\n\t<Cmd0s>0</Cmd0s>\n\t\
             <Cmd1s>0</Cmd1s>\n\t<Cmd2s>0</Cmd2s>\n\t<ReadBytes>0</ReadBytes>\n\t\
             <WroteBytes>0</WroteBytes>\n      </config>\n\t<consumer id=\"{cons}\">\n\t  \
             <geom ref=\"{geom}\"/>\n\t  <provider ref=\"{md0}\"/>\n\t  <mode>r1w1e1</mode>\n\t  \
             <config>\n\t  </config>\n\t</consumer>\n\t<provider id=\"{pp}\">\n\t  \
             <geom ref=\"{geom}\"/>\n\t  <mode>r1w1e1</mode>\n\t  <name>md0.nop</name>\n\t  \
             <mediasize>{size}</mediasize>\n\t  <sectorsize>512</sectorsize>\n\t  \
             <stripesize>8192</stripesize>\n\t  <stripeoffset>512</stripeoffset>\n\t  \
             <config>\n\t  </config>\n\t</provider>\n    </geom>\n  </class>\n",
            class = named_xml_id(IdKind::NopClass, "NOP"),
            cons = named_xml_id(IdKind::NopConsumer, "md0.nop"),
            md0 = foreign_provider_id("md0"),
            pp = foreign_provider_id("md0.nop"),
            size = MIB - 4096,
        );
        assert_eq!(xml, want);
    }

    #[test]
    fn gnop_list_renders_like_freebsd() {
        let (mut nop, mut host) = setup();
        create(
            &mut nop,
            &mut host,
            &[("wfailprob", 50), ("offset", 4096)],
            &["md0"],
        );
        create(&mut nop, &mut host, &[], &["md1"]);
        let dev = nop.device("md0.nop").expect("device");
        dev.read_at(&mut [0; 2048], 0).expect("read");
        let mesh = gmultipath::mesh::parse(&confxml(&nop, &host)).expect("parses");
        let out = gmultipath::render::list(&mesh, "NOP", &[], false);
        assert_eq!(out.error, None);
        let want = "\
Geom name: md0.nop
WroteBytes: 0
ReadBytes: 2048
Cmd2s: 0
Cmd1s: 0
Cmd0s: 0
Speedups: 0
Flushes: 0
Getattrs: 0
Deletes: 0
Writes: 0
Reads: 1
Error: 5
CountUntilFail: 0
Delay: 1
WriteDelayedProb: 0
ReadDelayedProb: 0
WriteFailProb: 50
ReadFailProb: 0
Offset: 4096
Providers:
1. Name: md0.nop
   Mediasize: 1044480 (1.0M)
   Sectorsize: 512
   Mode: r0w0e0
Consumers:
1. Name: md0
   Mediasize: 1048576 (1.0M)
   Sectorsize: 512
   Mode: r0w0e0

Geom name: md1.nop
";
        assert!(out.stdout.starts_with(want), "{}", out.stdout);
        assert!(out
            .stdout
            .contains("1. Name: md1.nop\n   Mediasize: 1048576 (1.0M)\n   Sectorsize: 4096\n"));
    }

    /// geom(8) against this class: requests and confxml go to a [`NopClass`] over a
    /// [`MemHost`], as they would to gmultipathd.
    struct Fake {
        nop: NopClass,
        host: MemHost,
    }

    impl gmultipath::backend::Backend for Fake {
        fn loaded(&mut self) -> bool {
            true
        }
        fn loadable(&mut self) -> bool {
            true
        }
        fn load(&mut self) -> std::io::Result<()> {
            Ok(())
        }
        fn unload(&mut self) -> Result<(), gmultipath::backend::UnloadError> {
            Ok(())
        }
        fn issue(&mut self, req: &Request) -> Result<geom_multipath::wire::Reply, String> {
            let mut req = req.clone();
            self.nop.ctl(&mut self.host, &mut req);
            Ok(geom_multipath::wire::Reply::from_request(&req))
        }
        fn confxml(&mut self) -> std::io::Result<String> {
            Ok(confxml(&self.nop, &self.host))
        }
        fn host_call(
            &mut self,
            _call: &geom_multipath_proto::Call,
        ) -> Option<std::io::Result<geom_multipath_proto::Answer>> {
            None
        }
    }

    /// Runs `gnop words…`: (exit status, stdout, stderr).
    fn gnop(fake: &mut Fake, words: &str) -> (i32, String, String) {
        let argv: Vec<String> = std::iter::once("gnop")
            .chain(words.split_whitespace())
            .map(String::from)
            .collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut uuid = || None;
        let mut env = gmultipath::run::Env {
            backend: fake,
            out: &mut out,
            err: &mut err,
            new_uuid: &mut uuid,
            providers: None,
            terminal: false,
        };
        let code = gmultipath::run::main(&argv, &mut env);
        (
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    #[test]
    fn gnop_commands_end_to_end() {
        let (nop, host) = setup();
        let mut fake = Fake { nop, host };
        let ok = |s: &str| (0, s.to_string(), String::new());
        let fail = |s: &str| (1, String::new(), format!("gnop: {s}\n"));
        assert_eq!(gnop(&mut fake, "create -v -o 1k -w 50 md0"), ok("Done.\n"));
        assert_eq!(fake.host.log, ["GEOM_NOP: Device md0.nop created."]);
        let info = fake.nop.info("md0.nop").expect("created");
        assert_eq!(
            (info.offset, info.knobs.wfailprob, info.physpath),
            (1024, 50, None)
        );
        assert_eq!(
            gnop(&mut fake, "create -Z fast -z slot3 -S 4k -s 64k md0"),
            ok("")
        );
        let info = fake.nop.info("fast.nop").expect("created");
        assert_eq!((info.secsize, info.mediasize), (4096, 65536));
        assert_eq!(info.physpath.as_deref(), Some("slot3"));
        assert_eq!(
            gnop(&mut fake, "create -r 101 md1"),
            fail("Invalid 'rfailprob' argument")
        );
        assert_eq!(
            gnop(&mut fake, "create md0"),
            fail("Provider md0.nop already exists.")
        );
        assert_eq!(gnop(&mut fake, "configure -r 100 -e 6 md0.nop"), ok(""));
        assert_eq!(fake.nop.info("md0.nop").expect("exists").knobs.error, 6);
        assert_eq!(
            gnop(&mut fake, "configure -r 5 md0"),
            fail("Provider md0 is invalid.")
        );
        assert_eq!(gnop(&mut fake, "reset -v md0.nop"), ok("Done.\n"));
        fake.host.access.insert("md0.nop".into(), (1, 0, 0));
        assert_eq!(
            gnop(&mut fake, "destroy md0.nop"),
            fail("Cannot destroy device md0.nop (error=16).")
        );
        assert_eq!(gnop(&mut fake, "destroy -f md0.nop fast.nop"), ok(""));
        assert_eq!(
            gnop(&mut fake, "destroy md0.nop"),
            fail("Device md0.nop is invalid.")
        );
        let (code, out, err) = gnop(&mut fake, "list");
        assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    }
}

//! The daemon on FreeBSD: signals through a kqueue, the GEOM Gate export
//! ([`crate::export::ggate`]) on `/dev/ggctl` (the `geom_gate` module is loaded if it is
//! missing), disks from `kern.disks` and `kern.geom.conftxt` and their changes from devd
//! ([`crate::discovery::disks`], [`crate::discovery::devd`]), opened relative to a descriptor of `/dev`, and the
//! Capsicum sandbox ([`crate::daemon::sandbox`]) entered once everything is open.
//!
//! devd may be missing or restart: without it the daemon checks the disks it holds once a
//! second (as the Linux daemon checks what raises no event) and, unless sandboxed, tries to
//! reconnect and then looks at every disk again. A sandboxed daemon cannot reconnect (the
//! socket is reached by name): it says so and keeps checking the disks it holds.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use geom_multipath::ProviderInfo;
use geom_multipath_sys::ggate::{GEOM_GATE_KLD, GEOM_GATE_MODULE, PATH_GGCTL};
use geom_multipath_sys::ggctl::Ggctl;
use nix::fcntl::{open, openat, OFlag};
use nix::sys::event::{EvFlags, EventFilter, FilterFlag, KEvent, Kqueue};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::Mode;

use super::config;
use super::{apply_reload, Args};
use crate::control::socket::{self, ControlServer};
use crate::daemon::sandbox::{self, Decision, Needs, Role};
use crate::discovery::devd::{DevdSocket, DEVD_SOCKET};
use crate::discovery::disks;
use crate::export::ggate::{self, GateControl, GateExport, GateOptions};
use crate::msg::exports::SharedExports;
use crate::msg::OwnerHandle;
use crate::owner::{Owner, Sources};
use crate::path::device;
use crate::path::device::Source;

/// The signals the owner acts on: SIGHUP reloads, the others stop.
const SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

/// A kqueue that reports SIGTERM, SIGINT and SIGHUP, which every thread blocks.
pub(super) struct Signals(Kqueue);

/// Blocks the signals the owner reads (before any thread starts, so that every thread
/// inherits the mask) and asks a kqueue to report them (`EVFILT_SIGNAL` sees a signal
/// even while it is blocked).
pub(super) fn block_signals() -> anyhow::Result<Signals> {
    let mut set = SigSet::empty();
    for s in SIGNALS {
        set.add(s);
    }
    set.thread_block().context("blocking signals")?;
    let kq = Kqueue::new().context("creating a kqueue")?;
    let changes: Vec<KEvent> = SIGNALS
        .iter()
        .map(|&s| {
            KEvent::new(
                s as usize,
                EventFilter::EVFILT_SIGNAL,
                EvFlags::EV_ADD,
                FilterFlag::empty(),
                0,
                0,
            )
        })
        .collect();
    kq.kevent(&changes, &mut [], None)
        .context("watching signals")?;
    Ok(Signals(kq))
}

/// The gate export, the owner's event sources and what the sandbox needs.
pub(super) struct Host {
    sources: BsdSources,
    gate: Option<GateExport>,
    ggctl: Arc<Ggctl>,
    /// The directories whose files are removed at exit, once sandboxed.
    run_dirs: Vec<(PathBuf, OwnedFd)>,
    /// The decision taken before the control socket was bound.
    decision: Decision,
}

impl Host {
    /// Opens `/dev/ggctl` (loading `geom_gate` if needed), `/dev` and devd's socket, and
    /// starts the gate export.
    pub(super) fn start(
        args: &Args,
        signals: Signals,
        exports: SharedExports,
        handle: &OwnerHandle,
    ) -> anyhow::Result<Host> {
        let Some(prefix) = ggate::prefix_for(&args.mount) else {
            bail!(
                "{}: on FreeBSD the providers appear below /dev (GEOM Gate devices)",
                args.mount.display()
            );
        };
        let ggctl = Arc::new(open_ggctl()?);
        let dev = open(
            crate::path::device::DEV_ROOT,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("opening {}", crate::path::device::DEV_ROOT))?;
        device::set_device_dir(dev);
        let devd = match DevdSocket::connect() {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(
                    "connecting to {DEVD_SOCKET}: {e}; \
                     disks that come and go are not seen until it answers"
                );
                None
            }
        };
        let ctl: Arc<dyn GateControl> = ggctl.clone();
        let options = GateOptions {
            prefix,
            ..GateOptions::default()
        };
        let gate = ggate::start(ctl, exports, handle.clone(), options)
            .context("starting the GEOM Gate export")?;
        let decision = sandbox::decide(Needs {
            nbd_paths: !args.nbd_paths.is_empty(),
            nbd_dir: args.nbd_dir.is_some(),
            nbd_tcp: args.nbd_tcp.is_some(),
            metrics_file: args.metrics_file.is_some(),
            disabled: args.no_sandbox,
        });
        let sources = BsdSources {
            signals: signals.0,
            devd,
            config: args.config.clone(),
            config_dir: None,
            sandboxed: false,
            known: BTreeSet::new(),
        };
        Ok(Host {
            sources,
            gate: Some(gate),
            ggctl,
            run_dirs: Vec::new(),
            decision,
        })
    }

    /// Tastes every disk there is.
    pub(super) fn scan(&mut self, owner: &mut Owner) -> anyhow::Result<()> {
        for name in disks::scan() {
            self.sources.refresh(owner, &name);
        }
        Ok(())
    }

    /// Binds the control socket; its rights are limited right away if the daemon is to be
    /// sandboxed (the connections it accepts inherit them).
    pub(super) fn serve_control(
        &mut self,
        args: &Args,
        handle: OwnerHandle,
    ) -> anyhow::Result<ControlServer> {
        match self.decision {
            Decision::Enter => socket::serve_with(&args.socket, handle, |listener| {
                sandbox::apply(&sandbox::limit(Role::ControlListener), listener)
            }),
            Decision::Stay(_) => socket::serve(&args.socket, handle),
        }
    }

    /// Limits every descriptor to its role and enters capability mode, unless the rule of
    /// [`crate::daemon::sandbox`] says otherwise. A failure leaves the daemon running unsandboxed,
    /// and says so.
    pub(super) fn sandbox(&mut self, args: &Args, pidfile: &Path) {
        if let Decision::Stay(why) = &self.decision {
            tracing::info!("not entering capability mode: {why}");
            return;
        }
        match self.enter(args, pidfile) {
            Ok(()) => {
                self.sources.sandboxed = true;
                tracing::info!("capability mode entered (Capsicum)");
                if self.sources.devd.is_none() {
                    tracing::warn!(
                        "{DEVD_SOCKET} cannot be reached from capability mode: \
                         only the disks the daemon holds are checked"
                    );
                }
            }
            Err(e) => tracing::warn!("not entering capability mode: {e:#}"),
        }
    }

    fn enter(&mut self, args: &Args, pidfile: &Path) -> anyhow::Result<()> {
        for file in [args.socket.as_path(), pidfile] {
            let dir = parent(file);
            if self.run_dirs.iter().any(|(d, _)| *d == dir) {
                continue;
            }
            let fd = open_dir(&dir)?;
            limit(Role::RunDir, &fd)?;
            self.run_dirs.push((dir, fd));
        }
        match open_dir(&parent(&args.config)) {
            Ok(fd) => {
                limit(Role::ConfigDir, &fd)?;
                self.sources.config_dir = Some(fd);
            }
            Err(e) => tracing::warn!("{e:#}; SIGHUP will not reload the tunables"),
        }
        if let Some(dev) = device::device_dir() {
            limit(Role::DeviceDir, &dev)?;
        }
        limit(Role::GateControl, &*self.ggctl)?;
        if let Some(devd) = &self.sources.devd {
            limit(Role::Devd, devd)?;
        }
        limit(Role::Signals, &self.sources.signals)?;
        sandbox::enter().context("cap_enter")
    }

    /// The owner's event sources.
    pub(super) fn sources(&mut self) -> &mut dyn Sources {
        &mut self.sources
    }

    /// Destroys the gate devices and removes the socket and the pid file (by their
    /// directories' descriptors once sandboxed).
    pub(super) fn finish(mut self, args: &Args, pidfile: &Path) {
        if let Some(gate) = self.gate.take() {
            gate.stop();
        }
        if !self.sources.sandboxed {
            let _ = std::fs::remove_file(pidfile);
            return;
        }
        for file in [args.socket.as_path(), pidfile] {
            let dir = parent(file);
            let (Some((_, fd)), Some(name)) = (
                self.run_dirs.iter().find(|(d, _)| *d == dir),
                file.file_name(),
            ) else {
                continue;
            };
            if let Err(e) = nix::unistd::unlinkat(fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
            {
                tracing::warn!("removing {}: {e}", file.display());
            }
        }
    }
}

/// `path`'s directory (`.` for a bare name).
fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn open_dir(dir: &Path) -> anyhow::Result<OwnedFd> {
    open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", dir.display()))
}

fn limit(role: Role, fd: &impl AsFd) -> anyhow::Result<()> {
    sandbox::apply(&sandbox::limit(role), fd).with_context(|| format!("limiting {role:?}"))
}

/// Opens `/dev/ggctl`, loading the GATE class first if it is not there.
fn open_ggctl() -> anyhow::Result<Ggctl> {
    match Ggctl::open() {
        Ok(g) => return Ok(g),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("opening {PATH_GGCTL}"));
        }
        Err(_) => {}
    }
    if crate::sys::freebsd::modfind(GEOM_GATE_MODULE).is_err() {
        crate::sys::freebsd::kldload(GEOM_GATE_KLD)
            .with_context(|| format!("loading {GEOM_GATE_KLD} (the GEOM Gate class)"))?;
    }
    Ggctl::open().with_context(|| format!("opening {PATH_GGCTL}"))
}

/// The owner's other event sources: signals, devd, and the disks it holds.
struct BsdSources {
    signals: Kqueue,
    devd: Option<DevdSocket>,
    config: PathBuf,
    /// The tunables file's directory, for reading it again in capability mode.
    config_dir: Option<OwnedFd>,
    /// In capability mode: nothing can be reached by name any more.
    sandboxed: bool,
    /// The disks the owner was told of (a devfs event counts only for these).
    known: BTreeSet<String>,
}

impl BsdSources {
    /// Looks at disk `name` again and tells the owner what changed.
    fn refresh(&mut self, owner: &mut Owner, name: &str) {
        let disk = match disks::lookup(name) {
            Ok(Some(d)) if d.mediasize > 0 && d.sectorsize > 0 && owner.allowed(name, None) => d,
            other => {
                if let Err(e) = other {
                    tracing::debug!("{name}: {e}");
                }
                self.known.remove(name);
                owner.device_changed(name, None);
                return;
            }
        };
        self.known.insert(name.to_string());
        let info = ProviderInfo {
            name: name.to_string(),
            mediasize: disk.mediasize,
            sectorsize: disk.sectorsize,
            stripesize: u64::from(disk.stripesize),
            stripeoffset: 0,
            rank: 1,
        };
        let source = Source::Block {
            node: disks::node(name),
            physpath: disk.physpath,
            ident: None,
        };
        owner.device_changed(name, Some((info, source)));
    }

    /// Events may have been lost: look at every disk again.
    fn rescan(&mut self, owner: &mut Owner) {
        let mut names: BTreeSet<String> = self.known.clone();
        if !self.sandboxed {
            names.extend(disks::scan());
        }
        for name in &names {
            self.refresh(owner, name);
        }
        for name in &names {
            owner.retaste(name);
        }
    }

    /// Reads the tunables file again, through its directory's descriptor once sandboxed.
    fn reload(&self, owner: &mut Owner) {
        if !self.sandboxed {
            super::reload(&self.config, owner);
            return;
        }
        let loaded = match (&self.config_dir, self.config.file_name()) {
            (Some(dir), Some(name)) => {
                match openat(dir, name, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()) {
                    Ok(fd) => {
                        let mut text = String::new();
                        std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text)
                            .map(|_| config::parse_all(&text, Default::default()))
                    }
                    Err(nix::errno::Errno::ENOENT) => Ok(Default::default()),
                    Err(e) => Err(e.into()),
                }
            }
            _ => Err(std::io::Error::from_raw_os_error(libc::ECAPMODE)),
        };
        apply_reload(&self.config, loaded, owner);
    }
}

impl Sources for BsdSources {
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = vec![self.signals.as_fd()];
        if let Some(devd) = &self.devd {
            fds.push(devd.as_fd());
        }
        fds
    }

    fn ready(&mut self, owner: &mut Owner) {
        let mut events = [KEvent::new(
            0,
            EventFilter::EVFILT_SIGNAL,
            EvFlags::empty(),
            FilterFlag::empty(),
            0,
            0,
        ); 8];
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if let Ok(n) = self.signals.kevent(&[], &mut events, Some(zero)) {
            for ev in &events[..n] {
                match i32::try_from(ev.ident()).ok().map(Signal::try_from) {
                    Some(Ok(Signal::SIGHUP)) => self.reload(owner),
                    _ => owner.stop(),
                }
            }
        }
        let Some(devd) = &mut self.devd else {
            return;
        };
        let drained = devd.drain();
        for ev in drained.events {
            if ev.geom || self.known.contains(&ev.name) {
                self.refresh(owner, &ev.name);
            }
        }
        if drained.closed {
            self.devd = None;
            if self.sandboxed {
                tracing::warn!(
                    "devd closed its socket; a sandboxed daemon cannot reconnect: \
                     only the disks it holds are checked from now on"
                );
            } else {
                tracing::warn!("devd closed its socket; reconnecting");
            }
        }
    }

    fn tick(&mut self, owner: &mut Owner) {
        if self.devd.is_some() {
            return;
        }
        if !self.sandboxed {
            if let Ok(s) = DevdSocket::connect() {
                tracing::info!("connected to {DEVD_SOCKET} again");
                self.devd = Some(s);
                self.rescan(owner);
                return;
            }
        }
        let held: Vec<String> = owner.providers.held().map(str::to_string).collect();
        for name in held {
            if self.known.contains(&name) {
                self.refresh(owner, &name);
            }
        }
    }
}

//! The daemon on Linux: signals from a signalfd, the FUSE export, block devices from sysfs
//! and the uevent/inotify watcher, opened through private device nodes. No sandbox beyond
//! `no_new_privs`.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use anyhow::Context;
use geom_multipath::ProviderInfo;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::{reload, Args};
use crate::control::socket::{self, ControlServer};
use crate::discovery::{sysfs, uevents};
use crate::export::fuse::{self, FuseExport};
use crate::msg::exports::SharedExports;
use crate::msg::OwnerHandle;
use crate::owner::{Owner, Sources};
use crate::path::device::Source;

/// SIGTERM, SIGINT and SIGHUP, blocked in every thread and read from a signalfd.
pub(super) struct Signals(SignalFd);

/// Blocks the signals the owner reads (before any thread starts, so that every thread
/// inherits the mask), and drops what can be dropped cheaply: `no_new_privs`.
pub(super) fn block_signals() -> anyhow::Result<Signals> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGHUP);
    signals.thread_block().context("blocking signals")?;
    let signalfd = SignalFd::with_flags(&signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("creating a signalfd")?;
    let _ = nix::sys::prctl::set_no_new_privs();
    Ok(Signals(signalfd))
}

/// The FUSE export and the owner's event sources.
pub(super) struct Host {
    sources: DaemonSources,
    fuse: FuseExport,
}

impl Host {
    /// Cleans up after a dead daemon, mounts the FUSE export and starts watching devices.
    pub(super) fn start(
        args: &Args,
        signals: Signals,
        exports: SharedExports,
        handle: &OwnerHandle,
    ) -> anyhow::Result<Host> {
        let _ = uevents::remove_stale_private_nodes();
        if let Err(e) = fuse::cleanup_stale(&args.mount) {
            tracing::warn!(
                "cleaning up a stale mount at {}: {e:#}",
                args.mount.display()
            );
        }
        let fuse = fuse::mount(&args.mount, exports, handle.clone(), Default::default())
            .with_context(|| format!("mounting {}", args.mount.display()))?;
        let watcher = uevents::DeviceWatcher::new().context("watching block devices")?;
        let sources = DaemonSources {
            watcher,
            signalfd: signals.0,
            config: args.config.clone(),
            mountpoint: args.mount.clone(),
            diskseq: HashMap::new(),
        };
        Ok(Host { sources, fuse })
    }

    /// Tastes every block device there is.
    pub(super) fn scan(&mut self, owner: &mut Owner) -> anyhow::Result<()> {
        for dev in sysfs::scan().context("scanning /sys/class/block")? {
            self.sources.refresh(owner, &dev.name);
        }
        Ok(())
    }

    /// Binds the control socket.
    pub(super) fn serve_control(
        &mut self,
        args: &Args,
        handle: OwnerHandle,
    ) -> anyhow::Result<ControlServer> {
        socket::serve(&args.socket, handle)
    }

    /// Nothing more on Linux: `no_new_privs` is set already.
    pub(super) fn sandbox(&mut self, _args: &Args, _pidfile: &Path) {}

    /// The owner's event sources.
    pub(super) fn sources(&mut self) -> &mut dyn Sources {
        &mut self.sources
    }

    /// Unmounts the export (lazily if it is still in use) and removes the private nodes
    /// and the pid file.
    pub(super) fn finish(self, args: &Args, pidfile: &Path) {
        if let Err(e) = self.fuse.unmount() {
            // Still in use (a loop device on an export): detach it from the namespace so no
            // stale mount is left; its users get errors once this process is gone.
            tracing::warn!(
                "unmounting {}: {e:#}; detaching it lazily",
                args.mount.display()
            );
            let _ = nix::mount::umount2(&args.mount, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = uevents::remove_private_nodes();
        let _ = std::fs::remove_file(pidfile);
    }
}
/// The owner's other event sources in the daemon.
struct DaemonSources {
    watcher: uevents::DeviceWatcher,
    signalfd: SignalFd,
    config: PathBuf,
    mountpoint: PathBuf,
    /// The media sequence number each known block device had when it was added.
    diskseq: HashMap<String, Option<u64>>,
}

impl DaemonSources {
    /// Re-reads block device `name` from sysfs and tells the owner what changed.
    fn refresh(&mut self, owner: &mut Owner, name: &str) {
        let dev = match sysfs::lookup(name) {
            Ok(Some(d))
                if d.size > 0
                    && !self.is_ours(&d)
                    && owner.allowed(name, d.backing_file.as_deref()) =>
            {
                d
            }
            _ => {
                self.diskseq.remove(name);
                owner.device_changed(name, None);
                return;
            }
        };
        // Same name, new media (a loop bound to another file): the old one is gone.
        if let Some(seq) = self.diskseq.get(name) {
            if *seq != dev.diskseq {
                owner.device_changed(name, None);
            }
        }
        if dev.loop_autoclear {
            // `losetup -d` while someone holds it: it goes at the last close. Never take
            // (or take back) a loop device that is on its way out.
            self.diskseq.remove(name);
            owner.device_changed(name, None);
            return;
        }
        let node = match uevents::private_node(name, dev.dev) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("{name}: cannot make a private node: {e}");
                return;
            }
        };
        self.diskseq.insert(name.to_string(), dev.diskseq);
        let info = ProviderInfo {
            name: name.to_string(),
            mediasize: dev.size,
            sectorsize: dev.logical,
            stripesize: u64::from(dev.optimal_io),
            stripeoffset: 0,
            rank: 1,
        };
        let source = Source::Block {
            node,
            physpath: dev.physpath,
            ident: dev.ident,
        };
        owner.device_changed(name, Some((info, source)));
    }

    /// Events were lost: look at every device again, and re-taste every known one in case
    /// a write-close was among the losses.
    fn rescan(&mut self, owner: &mut Owner) {
        let mut names: Vec<String> = self.diskseq.keys().cloned().collect();
        if let Ok(devs) = sysfs::scan() {
            names.extend(devs.into_iter().map(|d| d.name));
        }
        names.sort();
        names.dedup();
        for name in &names {
            self.refresh(owner, name);
        }
        for name in &names {
            owner.retaste(name);
        }
    }

    /// A loop device over one of our own exports: never tasted (its reads would come back
    /// through us).
    fn is_ours(&self, dev: &sysfs::BlockDev) -> bool {
        dev.backing_file
            .as_ref()
            .is_some_and(|f| f.starts_with(&self.mountpoint))
    }
}

impl Sources for DaemonSources {
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = self.watcher.fds();
        fds.push(self.signalfd.as_fd());
        fds
    }

    fn ready(&mut self, owner: &mut Owner) {
        while let Ok(Some(sig)) = self.signalfd.read_signal() {
            match Signal::try_from(sig.ssi_signo as i32) {
                Ok(Signal::SIGHUP) => reload(&self.config, owner),
                _ => owner.stop(),
            }
        }
        for event in self.watcher.drain() {
            match event {
                uevents::DeviceEvent::Changed { name, .. } => self.refresh(owner, &name),
                uevents::DeviceEvent::ClosedAfterWrite { name, .. } => owner.retaste(&name),
                uevents::DeviceEvent::Rescan => self.rescan(owner),
            }
        }
    }

    fn tick(&mut self, owner: &mut Owner) {
        let held: Vec<String> = owner.providers.held().map(str::to_string).collect();
        for name in held {
            if self.diskseq.contains_key(&name) {
                self.refresh(owner, &name);
            }
        }
    }
}

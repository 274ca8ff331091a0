//! `gmultipathd`'s life: its options, starting in the background the way `kldload` loads
//! a module (the starting process returns only when the daemon answers on its socket, or
//! with the reason it could not start), the startup scan that tastes every block device,
//! the event sources the owner polls (device watcher, signals, periodic checks), and a
//! shutdown that leaves no socket, mount, pid file or private device node behind.
//!
//! A restart after a crash cleans up what the dead daemon left: a stale socket, a dead
//! FUSE mount (ENOTCONN), stale private nodes.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use geom_multipath::ProviderInfo;
use geom_multipath_proto::{roundtrip, Answer, Call, DEFAULT_SOCKET};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::exports::{Exports, SharedExports};
use crate::owner::{self, OwnNbd, Owner, Settings, Sources};
use crate::providers::Source;
use crate::{config, fuse_export, msg, nbd_server, sysfs, watch};

/// How long the starting process waits for the daemon to answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// gmultipathd: GEOM MULTIPATH in userland.
#[derive(Parser, Debug)]
#[command(name = "gmultipathd", version, about)]
pub struct Args {
    /// Stay in the foreground and log to stderr too.
    #[arg(short = 'f', long)]
    pub foreground: bool,
    /// The control socket.
    #[arg(long, env = "GMULTIPATH_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Where the multipath providers appear.
    #[arg(long, env = "GMULTIPATH_MOUNT", default_value = "/dev/multipath")]
    pub mount: PathBuf,
    /// Only these block devices may be tasted or used as paths, comma-separated: names,
    /// name prefixes ending in `*`, or absolute directories (loop devices whose backing
    /// file lies below). All of them by default.
    #[arg(long, env = "GMULTIPATH_DEVICES", value_delimiter = ',')]
    pub devices: Option<Vec<String>>,
    /// Tunables applied at start, sysctl.conf syntax.
    #[arg(long, env = "GMULTIPATH_CONF", default_value = "/etc/gmultipathd.conf")]
    pub config: PathBuf,
    /// Pid file (default: next to the socket).
    #[arg(long, env = "GMULTIPATH_PIDFILE")]
    pub pidfile: Option<PathBuf>,
    /// Also serve every multipath provider over NBD, as the Unix socket DIR/NAME.
    #[arg(long, env = "GMULTIPATH_NBD_DIR", value_name = "DIR")]
    pub nbd_dir: Option<PathBuf>,
    /// Also serve every multipath provider over NBD on this TCP address (loopback only
    /// unless --nbd-allow-remote: NBD has no authentication).
    #[arg(long, env = "GMULTIPATH_NBD_TCP", value_name = "ADDR:PORT")]
    pub nbd_tcp: Option<std::net::SocketAddr>,
    /// Allow --nbd-tcp on an address that is not loopback.
    #[arg(long)]
    pub nbd_allow_remote: bool,
    /// NBD URIs to connect at start, comma-separated (nbd://HOST[:PORT]/EXPORT,
    /// nbd+unix:///EXPORT?socket=PATH), so labeled remote disks assemble at boot.
    #[arg(
        long,
        env = "GMULTIPATH_NBD_PATHS",
        value_delimiter = ',',
        value_name = "URI"
    )]
    pub nbd_paths: Vec<String>,
    /// A query instead of a daemon.
    #[command(subcommand)]
    pub query: Option<Query>,
}

/// Questions for a running daemon.
#[derive(Subcommand, Debug)]
pub enum Query {
    /// Print the console messages (the daemon's dmesg).
    Dmesg,
    /// Print the probe counters (FreeBSD's SDT probes, counted).
    Probes,
}

impl Args {
    fn pidfile(&self) -> PathBuf {
        self.pidfile.clone().unwrap_or_else(|| {
            self.socket
                .parent()
                .unwrap_or(Path::new("/run"))
                .join("gmultipathd.pid")
        })
    }
}

/// The daemon's `main`.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.query {
        Some(q) => query(&args, q),
        None if args.foreground => run(&args),
        None => detach(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gmultipathd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn ping(socket: &Path) -> Option<u32> {
    let mut s = std::os::unix::net::UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    match roundtrip(&mut s, &Call::Ping) {
        Ok(Answer::Pong { pid }) => Some(pid),
        _ => None,
    }
}

fn query(args: &Args, q: &Query) -> anyhow::Result<()> {
    let mut s = std::os::unix::net::UnixStream::connect(&args.socket)
        .with_context(|| format!("connecting to {}", args.socket.display()))?;
    let call = match q {
        Query::Dmesg => Call::Messages { since: 0 },
        Query::Probes => Call::Probes,
    };
    match roundtrip(&mut s, &call)? {
        Answer::Messages { lines, .. } => lines.iter().for_each(|l| println!("{l}")),
        Answer::Counters(c) => c.iter().for_each(|(n, v)| println!("{n}: {v}")),
        other => bail!("unexpected answer {other:?}"),
    }
    Ok(())
}

/// Starts the daemon in the background and returns when it answers on its socket.
fn detach(args: &Args) -> anyhow::Result<()> {
    if let Some(pid) = ping(&args.socket) {
        bail!("already running (pid {pid})");
    }
    let errlog = std::env::temp_dir().join(format!("gmultipathd-start.{}", std::process::id()));
    let err = std::fs::File::create(&errlog).context("creating the start log")?;
    let exe = std::env::current_exe().context("finding my own binary")?;
    let mut cmd = Command::new(exe);
    // The same options (flags and environment alike), in the foreground of its own session.
    cmd.args(std::env::args_os().skip(1))
        .arg("--foreground")
        .env("GMULTIPATHD_DETACHED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    crate::sys::new_session(&mut cmd);
    let mut child = cmd.spawn().context("starting the daemon")?;
    let deadline = Instant::now() + START_TIMEOUT;
    let outcome = loop {
        if ping(&args.socket).is_some() {
            break Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let why = std::fs::read_to_string(&errlog).unwrap_or_default();
            break Err(anyhow::anyhow!(
                "the daemon exited ({status}): {}",
                why.trim().trim_start_matches("gmultipathd: ")
            ));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break Err(anyhow::anyhow!(
                "the daemon did not answer within {START_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = std::fs::remove_file(&errlog);
    outcome
}

/// Runs the daemon in this process until it is unloaded or signalled.
fn run(args: &Args) -> anyhow::Result<()> {
    if let Some(pid) = ping(&args.socket) {
        bail!("already running (pid {pid})");
    }
    let detached = std::env::var_os("GMULTIPATHD_DETACHED").is_some();
    crate::logging::init(!detached);
    let (
        config::Tunables {
            values: tunables,
            io_timeouts,
        },
        problems,
    ) = config::load(&args.config).with_context(|| format!("reading {}", args.config.display()))?;
    for p in problems {
        tracing::warn!("{}:{}: {}", args.config.display(), p.line, p.text);
    }
    // Signals are read from a signalfd by the owner; block them before any thread starts.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGHUP);
    signals.thread_block().context("blocking signals")?;
    let signalfd = SignalFd::with_flags(&signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("creating a signalfd")?;
    let _ = nix::sys::prctl::set_no_new_privs();

    let exports: SharedExports = Arc::new(RwLock::new(Exports::new()));
    let (handle, inbox) = msg::channel().context("creating the owner's inbox")?;
    let nbd = match (&args.nbd_dir, args.nbd_tcp) {
        (None, None) => None,
        (unix_dir, tcp) => Some(
            nbd_server::serve(
                nbd_server::NbdConfig {
                    unix_dir: unix_dir.clone(),
                    tcp,
                    allow_remote: args.nbd_allow_remote,
                },
                exports.clone(),
                handle.clone(),
            )
            .context("starting the NBD export")?,
        ),
    };
    let settings = Settings {
        tunables,
        devices: args.devices.clone(),
        mountpoint: args.mount.clone(),
        own_nbd: OwnNbd {
            unix_dir: args.nbd_dir.clone(),
            tcp: nbd.as_ref().and_then(|n| n.tcp_addr()),
        },
    };
    let mut owner = Owner::new(settings, exports.clone(), handle.clone());
    for (provider, secs) in &io_timeouts {
        let _ = owner.set_io_timeout(provider, secs);
    }
    for uri in &args.nbd_paths {
        owner.supervise_nbd(uri);
    }

    let _ = watch::remove_stale_private_nodes();
    if let Err(e) = fuse_export::cleanup_stale(&args.mount) {
        tracing::warn!(
            "cleaning up a stale mount at {}: {e:#}",
            args.mount.display()
        );
    }
    let fuse = fuse_export::mount(&args.mount, exports, handle.clone(), Default::default())
        .with_context(|| format!("mounting {}", args.mount.display()))?;
    let watcher = watch::Watcher::new().context("watching block devices")?;
    let mut sources = DaemonSources {
        watcher,
        signalfd,
        config: args.config.clone(),
        mountpoint: args.mount.clone(),
        diskseq: HashMap::new(),
    };
    for dev in sysfs::scan().context("scanning /sys/class/block")? {
        sources.refresh(&mut owner, &dev.name);
    }
    let control = crate::control::serve(&args.socket, handle)?;
    let pidfile = args.pidfile();
    std::fs::write(&pidfile, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", pidfile.display()))?;
    tracing::info!(
        "ready: socket {}, exports {}",
        args.socket.display(),
        args.mount.display()
    );

    owner::run(&mut owner, &inbox, &mut sources);

    tracing::info!("stopping");
    drop(control);
    owner.shutdown();
    // From here on nothing serves the inbox: drop it, so that a FUSE open or release that
    // arrives while unmounting fails with ENXIO at once instead of waiting for an answer.
    drop(inbox);
    drop(owner);
    drop(nbd);
    if let Err(e) = fuse.unmount() {
        // Still in use (a loop device on an export): detach it from the namespace so no
        // stale mount is left; its users get errors once this process is gone.
        tracing::warn!(
            "unmounting {}: {e:#}; detaching it lazily",
            args.mount.display()
        );
        let _ = nix::mount::umount2(&args.mount, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = watch::remove_private_nodes();
    let _ = std::fs::remove_file(&pidfile);
    Ok(())
}

/// The owner's other event sources in the daemon.
struct DaemonSources {
    watcher: watch::Watcher,
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
        let node = match watch::private_node(name, dev.dev) {
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
                watch::DeviceEvent::Changed { name, .. } => self.refresh(owner, &name),
                watch::DeviceEvent::ClosedAfterWrite { name, .. } => owner.retaste(&name),
                watch::DeviceEvent::Rescan => self.rescan(owner),
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

fn reload(path: &Path, owner: &mut Owner) {
    match config::load(path) {
        Ok((tunables, problems)) => {
            for p in problems {
                tracing::warn!("{}:{}: {}", path.display(), p.line, p.text);
            }
            for (provider, secs) in &tunables.io_timeouts {
                let _ = owner.set_io_timeout(provider, secs);
            }
            let values = tunables.values;
            for knob in config::changed(owner.class().tunables(), &values) {
                let _ = owner.set_tunable(knob, values.get(knob));
            }
            tracing::info!("reloaded {}: {}", path.display(), config::describe(&values));
        }
        Err(e) => tracing::warn!("reloading {}: {e}", path.display()),
    }
}

//! `gmultipathd`'s life: its options, starting in the background the way `kldload` loads
//! a module (the starting process returns only when the daemon answers on its socket, or
//! with the reason it could not start), the startup scan that tastes every block device,
//! the event sources the owner polls (device watcher, signals, periodic checks), and a
//! shutdown that leaves no socket, mount, pid file or private device node behind.
//!
//! The life is the same on every platform; what differs is behind one small seam, a
//! `platform` module with the same few items on each (`block_signals`, `Host::start`,
//! `scan`, `serve_control`, `sandbox`, `sources`, `finish`):
//!
//! * Linux (`daemon/linux.rs`): a signalfd, the FUSE export, sysfs and the uevent/inotify
//!   watcher, private device nodes. A restart after a crash cleans up what the dead daemon
//!   left: a stale socket, a dead FUSE mount (ENOTCONN), stale private nodes.
//! * FreeBSD (`daemon/freebsd.rs`): signals through a kqueue, the GEOM Gate export
//!   ([`crate::export::ggate`]), `kern.disks` and devd (`discovery::disks`, `discovery::devd`),
//!   and the Capsicum sandbox ([`crate::daemon::sandbox`]). A restart takes over the gate devices
//!   the dead daemon left.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use geom_multipath_proto::{roundtrip, Answer, Call, DEFAULT_SOCKET};

use crate::control::rundir::RunDir;
use crate::export::nbd;
use crate::msg;
use crate::msg::exports::{Exports, SharedExports};
use crate::owner::{self, OwnNbd, Owner, Settings};

pub mod config;
pub mod logging;
pub mod notify;
pub mod sandbox;

#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(target_os = "freebsd")]
use freebsd as platform;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as platform;

/// The log file of a daemon in the background.
pub const DEFAULT_LOG: &str = "/var/log/gmultipathd.log";

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
    /// Where the daemon's standard error goes when it runs in the background (appended,
    /// each line stamped with the UTC time).
    #[arg(long, env = "GMULTIPATH_LOG", default_value = DEFAULT_LOG)]
    pub log_file: PathBuf,
    /// Also serve every multipath provider over NBD, as the Unix socket DIR/NAME.
    #[arg(long, env = "GMULTIPATH_NBD_DIR", value_name = "DIR")]
    pub nbd_dir: Option<PathBuf>,
    /// Also serve every multipath provider over NBD on this TCP address (loopback only
    /// unless --nbd-allow-remote), with TLS from --nbd-tls-dir.
    #[arg(long, env = "GMULTIPATH_NBD_TCP", value_name = "ADDR:PORT")]
    pub nbd_tcp: Option<std::net::SocketAddr>,
    /// Allow --nbd-tcp on an address that is not loopback.
    #[arg(long)]
    pub nbd_allow_remote: bool,
    /// TLS credentials for --nbd-tcp (ca-cert.pem, server-cert.pem, server-key.pem):
    /// clients must use NBD_OPT_STARTTLS and show a certificate the CA signed.
    #[arg(long, env = "GMULTIPATH_NBD_TLS_DIR", value_name = "DIR")]
    pub nbd_tls_dir: Option<PathBuf>,
    /// Serve --nbd-tcp without TLS: any process that reaches the port may read and write
    /// every exported disk.
    #[arg(long)]
    pub nbd_tcp_insecure_plaintext: bool,
    /// NBD URIs to connect at start, comma-separated (nbd://HOST[:PORT]/EXPORT,
    /// nbd+unix:///EXPORT?socket=PATH), so labeled remote disks assemble at boot.
    #[arg(
        long,
        env = "GMULTIPATH_NBD_PATHS",
        value_delimiter = ',',
        value_name = "URI"
    )]
    pub nbd_paths: Vec<String>,
    /// Do not enter Capsicum capability mode (FreeBSD; the sandbox is on by default
    /// unless NBD is configured).
    #[cfg_attr(not(target_os = "freebsd"), arg(hide = true))]
    #[arg(long)]
    pub no_sandbox: bool,
    /// Rewrite the class's counters to this file in the Prometheus text format every
    /// --metrics-interval seconds (node_exporter's textfile collector), atomically.
    #[arg(long, env = "GMULTIPATH_METRICS_FILE", value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Seconds between rewrites of the metrics file.
    #[arg(
        long,
        env = "GMULTIPATH_METRICS_INTERVAL",
        value_name = "SECONDS",
        default_value_t = 15.0
    )]
    pub metrics_interval: f64,
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
    /// Print the class's counters in the Prometheus text format.
    Metrics,
    /// Zero the class's counters: of the geom NAME, or of every geom.
    ResetStats {
        /// The geom.
        name: Option<String>,
    },
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
    if args.query.is_none() {
        // Whatever the starter left open (a pipe's write end, a tool's descriptor) is not
        // the daemon's to hold for the rest of its life.
        if let Err(e) = crate::sys::close_inherited_descriptors() {
            eprintln!("gmultipathd: closing inherited descriptors: {e}");
            return ExitCode::FAILURE;
        }
    }
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
        Query::Metrics => Call::Metrics,
        Query::ResetStats { name } => Call::StatsReset {
            geom: name.clone().unwrap_or_default(),
        },
    };
    match roundtrip(&mut s, &call)? {
        Answer::Messages { lines, .. } => lines.iter().for_each(|l| println!("{l}")),
        Answer::Counters(c) => c.iter().for_each(|(n, v)| println!("{n}: {v}")),
        Answer::Text(text) => print!("{text}"),
        Answer::Done => {}
        Answer::Failed { errno, .. } if errno == libc::ENOENT => {
            bail!("no such geom")
        }
        Answer::Failed { text, .. } => bail!("{text}"),
        other => bail!("unexpected answer {other:?}"),
    }
    Ok(())
}

/// Starts the daemon in the background and returns when it answers on its socket.
fn detach(args: &Args) -> anyhow::Result<()> {
    if let Some(pid) = ping(&args.socket) {
        bail!("already running (pid {pid})");
    }
    let log = open_log(&args.log_file)
        .with_context(|| format!("opening the log file {}", args.log_file.display()))?;
    let start = log.metadata().map_or(0, |m| m.len());
    let exe = std::env::current_exe().context("finding my own binary")?;
    let mut cmd = Command::new(exe);
    // The same options (flags and environment alike), in the foreground of its own session.
    cmd.args(std::env::args_os().skip(1))
        .arg("--foreground")
        .env("GMULTIPATHD_DETACHED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    crate::sys::new_session(&mut cmd);
    let mut child = cmd.spawn().context("starting the daemon")?;
    let deadline = Instant::now() + START_TIMEOUT;
    let outcome = loop {
        if ping(&args.socket).is_some() {
            break Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let why = last_words(&args.log_file, start);
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
    outcome
}

/// The directory of file `path` (its parent, `.` for a bare name) and the file's name.
fn dir_and_name(path: &Path) -> anyhow::Result<(&Path, &str)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: not a file name", path.display()))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((dir, name))
}

/// Opens the log file to append to: created 0640 if missing, in a directory no other user
/// can change, never through a symbolic link, never handed on to another program
/// ([`RunDir::append_file`]).
fn open_log(path: &Path) -> anyhow::Result<std::fs::File> {
    let (dir, name) = dir_and_name(path)?;
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(RunDir::existing(dir)?.append_file(name, 0o640)?)
}

/// Writes this process's id to the pid file, made afresh in a directory no other user
/// can change ([`RunDir::create_file`]).
fn write_pidfile(path: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let (dir, name) = dir_and_name(path)?;
    let mut f = RunDir::existing(dir)?.create_file(name, 0o644)?;
    writeln!(f, "{}", std::process::id())?;
    Ok(())
}

/// What the daemon wrote to its log from byte `start` on, without the time stamps: the
/// reason a daemon that exited at start gives.
fn last_words(log: &Path, start: u64) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let tail = text.get(start as usize..).unwrap_or_default();
    String::from_utf8_lossy(tail)
        .lines()
        .map(|l| match l.split_once(' ') {
            Some((stamp, rest)) if stamp.ends_with('Z') && stamp.contains('T') => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Raises the soft limit on open descriptors to the hard one: the daemon holds one
/// descriptor per path, so a soft limit of 1,024 (a common default) would cap a host at
/// about 500 two-path geoms while root's hard limit allows far more (bench/scale.sh).
fn raise_descriptor_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("cannot raise the descriptor limit from {soft} to {hard}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot read the descriptor limit: {e}"),
    }
}

/// Runs the daemon in this process until it is unloaded or signalled.
fn run(args: &Args) -> anyhow::Result<()> {
    if let Some(pid) = ping(&args.socket) {
        bail!("already running (pid {pid})");
    }
    // Refuse a runtime directory another user could redirect before anything is set up.
    if let Some(dir) = args.socket.parent() {
        RunDir::claim(dir)?;
    }
    let detached = std::env::var_os("GMULTIPATHD_DETACHED").is_some();
    crate::daemon::logging::init(if detached {
        crate::daemon::logging::Stderr::LogFile
    } else {
        crate::daemon::logging::Stderr::Terminal
    });
    let (
        config::Tunables {
            values: tunables,
            per_path,
            per_geom,
        },
        problems,
    ) = config::load(&args.config).with_context(|| format!("reading {}", args.config.display()))?;
    for p in problems {
        tracing::warn!("{}:{}: {}", args.config.display(), p.line, p.text);
    }
    raise_descriptor_limit();
    // Signals are read by the owner's loop; block them before any thread starts.
    let signals = platform::block_signals()?;

    let exports: SharedExports = Arc::new(RwLock::new(Exports::new()));
    let (handle, inbox) = msg::channel().context("creating the owner's inbox")?;
    let nbd = match (&args.nbd_dir, args.nbd_tcp) {
        (None, None) => None,
        (unix_dir, tcp) => Some(
            nbd::serve(
                nbd::NbdConfig {
                    unix_dir: unix_dir.clone(),
                    tcp,
                    allow_remote: args.nbd_allow_remote,
                    tls: match &args.nbd_tls_dir {
                        Some(dir) => Some(
                            crate::export::tls::server_config(dir)
                                .context("reading the NBD TLS credentials")?,
                        ),
                        None => None,
                    },
                    insecure_plaintext: args.nbd_tcp_insecure_plaintext,
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
    for (kind, provider, secs) in &per_path {
        let _ = owner.set_per_path(*kind, provider, secs);
    }
    for (geom, setting, value) in &per_geom {
        owner.preset_geom(geom, *setting, value);
    }
    for uri in &args.nbd_paths {
        owner.supervise_nbd(uri);
    }
    if let Some(path) = &args.metrics_file {
        let every = Duration::try_from_secs_f64(args.metrics_interval)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| format!("--metrics-interval {}", args.metrics_interval))?;
        owner.set_metrics_file(owner::metrics_file::MetricsFile::new(path.clone(), every));
    }

    let mut host = platform::Host::start(args, signals, exports, &handle)?;
    host.scan(&mut owner)?;
    let control = host.serve_control(args, handle)?;
    let pidfile = args.pidfile();
    write_pidfile(&pidfile).with_context(|| format!("writing {}", pidfile.display()))?;
    host.sandbox(args, &pidfile);
    tracing::info!(
        "ready: socket {}, exports {}",
        args.socket.display(),
        args.mount.display()
    );
    notify::ready();

    owner::run(&mut owner, &inbox, host.sources());

    tracing::info!("stopping");
    notify::stopping();
    drop(control);
    owner.shutdown();
    // From here on nothing serves the inbox: drop it, so that an export's open, release or
    // give-back that arrives while it is taken down fails with ENXIO at once instead of
    // waiting for an answer.
    drop(inbox);
    drop(owner);
    drop(nbd);
    host.finish(args, &pidfile);
    Ok(())
}

/// Reads the tunables file again (SIGHUP) and applies what changed.
fn reload(path: &Path, owner: &mut Owner) {
    notify::reloading();
    apply_reload(path, config::load(path), owner);
    notify::ready();
}

/// Applies a tunables file read again (`loaded`, from `path`).
fn apply_reload(
    path: &Path,
    loaded: std::io::Result<(config::Tunables, Vec<config::Problem>)>,
    owner: &mut Owner,
) {
    match loaded {
        Ok((tunables, problems)) => {
            for p in problems {
                tracing::warn!("{}:{}: {}", path.display(), p.line, p.text);
            }
            for (kind, provider, secs) in &tunables.per_path {
                let _ = owner.set_per_path(*kind, provider, secs);
            }
            for (geom, setting, value) in &tunables.per_geom {
                owner.preset_geom(geom, *setting, value);
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

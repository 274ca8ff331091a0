//! The end-to-end test harness: scratch directories, sparse images, loop devices, a
//! private `gmultipathd` per test, and the built tools run as a person would run them.
//!
//! Every resource is a guard that cleans up in `Drop`, in the right order (the daemon lets
//! go of its paths before the loop devices are detached), even when an assertion fails.
//! Each test's daemon has its own socket, mount point and device filter (only loop devices
//! backed by files in the test's scratch directory), so tests run in parallel without
//! seeing each other's devices. Waiting is always for a condition, with a deadline.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use geom_multipath_proto::{roundtrip, Answer, Call};

pub mod faultfs;
pub mod fio;
pub mod netdisk;

/// How long the tests wait for anything that should happen by itself.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// `true` when running as root; otherwise prints why the test is skipped.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    println!("SKIPPED: {test}: needs root (loop devices, FUSE)");
    false
}

/// The directory the workspace's binaries were built into.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf();
    for b in ["gmultipath", "gnop", "gmultipathd", "mpsysctl"] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: build the binaries first (cargo build --workspace --bins)",
            dir.join(b).display()
        );
    }
    dir
}

/// One of the built programs.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// Waits until `cond` holds, checking every few milliseconds, for at most `DEADLINE`.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    let mut pause = Duration::from_millis(2);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Waits until `f` gives a value, checking every few milliseconds, for at most `DEADLINE`.
pub fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let mut found = None;
    wait_until("a condition", || {
        found = f();
        found.is_some()
    });
    found.expect("found")
}

/// A program's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Out {
    /// Exit status (-1 if killed).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// Panics unless the program succeeded silently on stderr; returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(
            (self.code, self.stderr.as_str()),
            (0, ""),
            "stdout: {}",
            self.stdout
        );
        &self.stdout
    }
}

/// Runs `program` with `args` and `env`.
pub fn run(program: &Path, args: &[&str], env: &[(&str, String)]) -> Out {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs a shell command line (for losetup, mkfs, mount, dd, ...); panics on failure.
pub fn sh(cmdline: &str) -> String {
    let out = run(Path::new("/bin/sh"), &["-c", cmdline], &[]);
    assert_eq!(out.code, 0, "`{cmdline}` failed: {}", out.stderr);
    out.stdout
}

/// SHA-256 of `bytes`, in hex.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SHA-256 of a file's first `len` bytes.
pub fn sha256_file(path: &Path, len: usize) -> String {
    let mut buf = vec![0u8; len];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    sha256(&buf)
}

/// A private directory, removed with everything in it.
pub struct Scratch {
    /// The directory.
    pub dir: PathBuf,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Scratch {
    /// A fresh directory for test `tag`.
    pub fn new(tag: &str) -> Scratch {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!("/var/tmp/gmp-e2e-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch { dir }
    }

    /// A sparse image file of `size` bytes.
    pub fn image(&self, name: &str, size: u64) -> PathBuf {
        let path = self.dir.join(name);
        let f = File::create(&path).expect("image");
        f.set_len(size).expect("sparse image");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loop device over a file.
pub struct Loop {
    /// `loopN`.
    pub name: String,
    detached: bool,
}

impl Loop {
    /// `losetup -f --show file`.
    pub fn attach(file: &Path) -> Loop {
        Loop::attach_with(file, &[])
    }

    /// `losetup -f --show <options> file`.
    pub fn attach_with(file: &Path, options: &[&str]) -> Loop {
        let mut args = vec!["-f", "--show"];
        args.extend_from_slice(options);
        let file = file.to_str().expect("utf-8 path");
        args.push(file);
        let out = run(Path::new("losetup"), &args, &[]);
        assert_eq!(out.code, 0, "losetup: {}", out.stderr);
        let dev = out.stdout.trim();
        Loop {
            name: dev.trim_start_matches("/dev/").to_string(),
            detached: false,
        }
    }

    /// `/dev/loopN`.
    pub fn dev(&self) -> String {
        format!("/dev/{}", self.name)
    }

    /// `losetup -d` now.
    pub fn detach(mut self) {
        self.detach_now();
    }

    fn detach_now(&mut self) {
        if !self.detached {
            self.detached = true;
            let _ = run(Path::new("losetup"), &["-d", &self.dev()], &[]);
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        self.detach_now();
    }
}

/// A private gmultipathd.
pub struct Daemon {
    /// Its control socket.
    pub socket: PathBuf,
    /// Where its providers appear.
    pub mount: PathBuf,
    /// Its stderr.
    pub log: PathBuf,
    /// The directory whose loop devices it may use.
    pub devices: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts a daemon in the foreground that may use the loop devices backed by files in
    /// `scratch`, and waits until it answers.
    pub fn start(scratch: &Scratch) -> Daemon {
        Daemon::start_with(scratch, &[])
    }

    /// Like [`start`](Daemon::start), with extra arguments.
    pub fn start_with(scratch: &Scratch, extra: &[&str]) -> Daemon {
        let socket = scratch.dir.join("run/geom.ctl");
        let mount = scratch.dir.join("multipath");
        let log = scratch.dir.join("gmultipathd.log");
        let child = Command::new(bin("gmultipathd"))
            .arg("--foreground")
            .args(extra)
            .envs(Daemon::env_for(&socket, &mount, &scratch.dir))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("daemon log"))
            .spawn()
            .expect("starting gmultipathd");
        let mut d = Daemon {
            socket,
            mount,
            log,
            devices: scratch.dir.clone(),
            child: Some(child),
        };
        wait_until("gmultipathd to answer", || {
            if let Some(status) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("gmultipathd exited ({status}): {}", d.log_text());
            }
            d.call(&Call::Ping).is_some()
        });
        d
    }

    fn env_for(socket: &Path, mount: &Path, devices: &Path) -> Vec<(&'static str, String)> {
        vec![
            ("GMULTIPATH_SOCKET", socket.display().to_string()),
            ("GMULTIPATH_MOUNT", mount.display().to_string()),
            ("GMULTIPATH_DEVICES", devices.display().to_string()),
            ("GMULTIPATH_CONF", "/nonexistent".to_string()),
            ("GMULTIPATHD", bin("gmultipathd").display().to_string()),
            // A daemon `gmultipath load` starts in the background logs here.
            (
                "GMULTIPATH_LOG",
                devices.join("gmultipathd-bg.log").display().to_string(),
            ),
        ]
    }

    /// The environment of a daemon on `scratch` that is not running yet: the tools
    /// started with it (`gmultipath load`) start one in the background there.
    pub fn env_on(scratch: &Scratch) -> Vec<(&'static str, String)> {
        let socket = scratch.dir.join("run/geom.ctl");
        Daemon::env_for(&socket, &scratch.dir.join("multipath"), &scratch.dir)
    }

    /// The environment that makes the tools talk to this daemon.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        Daemon::env_for(&self.socket, &self.mount, &self.devices)
    }

    /// Its stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One call on the control socket (`None` if it does not answer).
    pub fn call(&self, call: &Call) -> Option<Answer> {
        let mut s = UnixStream::connect(&self.socket).ok()?;
        s.set_read_timeout(Some(DEADLINE)).ok()?;
        roundtrip(&mut s, call).ok()
    }

    /// `gmultipath args...`
    pub fn gmultipath(&self, args: &[&str]) -> Out {
        run(&bin("gmultipath"), args, &self.env())
    }

    /// `gmultipathd args...` (a query of this daemon), which must succeed: its stdout.
    pub fn gmultipathd(&self, args: &[&str]) -> String {
        run(&bin("gmultipathd"), args, &self.env()).ok().to_string()
    }

    /// `gnop args...`
    pub fn gnop(&self, args: &[&str]) -> Out {
        run(&bin("gnop"), args, &self.env())
    }

    /// `mpsysctl args...`
    pub fn mpsysctl(&self, args: &[&str]) -> Out {
        run(&bin("mpsysctl"), args, &self.env())
    }

    /// The console messages so far.
    pub fn messages(&self) -> Vec<String> {
        match self.call(&Call::Messages { since: 0 }) {
            Some(Answer::Messages { lines, .. }) => lines,
            other => panic!("messages: {other:?}"),
        }
    }

    /// The probe counters.
    pub fn probes(&self) -> BTreeMap<String, u64> {
        match self.call(&Call::Probes) {
            Some(Answer::Counters(c)) => c.into_iter().collect(),
            other => panic!("probes: {other:?}"),
        }
    }

    /// How often probe `name` fired.
    pub fn probe(&self, name: &str) -> u64 {
        self.probes().get(name).copied().unwrap_or(0)
    }

    /// `/dev/multipath/<name>` of this daemon.
    pub fn file(&self, name: &str) -> PathBuf {
        self.mount.join(name)
    }

    /// Waits until `gmultipath status -s <geom>` shows `expected` (the status column).
    pub fn wait_status(&self, geom: &str, expected: &str) {
        wait_until(&format!("{geom} to be {expected}"), || {
            let out = self.gmultipath(&["status", "-gs", geom]);
            out.code == 0 && out.stdout.split_whitespace().nth(1) == Some(expected)
        });
    }

    /// The first active path of `geom` (`gmultipath getactive`, which must succeed).
    pub fn active_path(&self, geom: &str) -> String {
        let out = self.gmultipath(&["getactive", geom]);
        let first = out.ok().split_whitespace().next().unwrap_or_default();
        first.to_string()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Stops the daemon with SIGTERM and waits for it; returns its exit status.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                panic!("gmultipathd ignored SIGTERM: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a daemon that is exiting by itself (after `unload`).
    pub fn wait_exit(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let mut status = None;
        wait_until("gmultipathd to exit", || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        status.and_then(|s| s.code())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            println!("--- gmultipathd log ---\n{}", self.log_text());
            if let Some(Answer::Messages { lines, .. }) = self.call(&Call::Messages { since: 0 }) {
                println!("--- console ---\n{}", lines.join("\n"));
            }
        }
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let end = Instant::now() + DEADLINE;
            while child.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Whatever happened, leave no mount behind.
        let _ = nix::mount::umount2(&self.mount, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// `true` if `path` is a mount point right now.
pub fn is_mounted(path: &Path) -> bool {
    let target = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(target.as_str()))
}

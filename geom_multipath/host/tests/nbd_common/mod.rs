//! What the NBD tests share: guards that clean up processes, directories and firewall
//! rules even when a test fails, a fake owner that serves one or two providers from memory,
//! and waiting with deadlines.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use geom_multipath::{Errno, GeomId, ProviderInfo};
use geom_multipath_host::msg::exports::{Exports, SharedExports};
use geom_multipath_host::msg::{self, IoOp, IoReply, Msg, OwnerHandle, OwnerInbox};
use geom_multipath_host::path::device::{Device, MemDevice};
use geom_multipath_host::testkit::watched::Watched;

pub const MIB: u64 = 1 << 20;

/// Prints `SKIPPED: <reason>` and returns from the test when a tool is missing.
#[macro_export]
macro_rules! require {
    ($($tool:expr),+) => {
        $(
            if !$crate::nbd_common::have($tool) {
                println!("SKIPPED: {} is not installed", $tool);
                return;
            }
        )+
    };
}

/// `true` if `tool` is on the PATH (or in /sbin, /usr/sbin).
pub fn have(tool: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/sbin", "/usr/sbin"])
        .any(|d| Path::new(d).join(tool).exists());
    found
}

/// A unique name for this process and call.
pub fn unique(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "gmp-nbd-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A directory removed with everything in it when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique(what));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed and reaped when dropped.
pub struct Proc {
    pub child: Option<Child>,
    pub what: String,
}

impl Proc {
    /// Starts `cmd args…` with stdin closed and output discarded.
    pub fn spawn(cmd: &str, args: &[&str]) -> Proc {
        let child = Command::new(cmd)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd}: {e}"));
        Proc {
            child: Some(child),
            what: format!("{cmd} {}", args.join(" ")),
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Fails the test if the process has exited (with its stderr).
    pub fn assert_running(&mut self) {
        let c = self.child.as_mut().expect("running");
        if let Ok(Some(status)) = c.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = c.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            panic!("{} exited ({status}): {err}", self.what);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a command to completion; (success, stdout, stderr).
pub fn run(cmd: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command that must succeed; its stdout.
pub fn run_ok(cmd: &str, args: &[&str]) -> String {
    let (ok, out, err) = run(cmd, args);
    assert!(ok, "{cmd} {args:?} failed:\n{out}\n{err}");
    out
}

/// Waits until `cond` holds, at most `limit`; fails the test with `what` otherwise.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `len` bytes of a pattern that differs per `seed`.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect()
}

// ----- the fake owner --------------------------------------------------------------------

/// What the fake owner saw, per provider.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub r: i32,
    pub w: i32,
    pub e: i32,
    pub opens: u32,
    pub flushes: u32,
    pub deletes: Vec<(u64, u64)>,
    pub writes: u32,
    pub reads: u32,
}

/// How the fake owner behaves.
#[derive(Debug, Default)]
pub struct Knobs {
    /// The provider withered: new access and every request get ENXIO.
    pub withered: bool,
    /// Taking write access fails with EPERM (someone holds it exclusively).
    pub refuse_write: bool,
    /// Every data request is answered this much later (from another thread).
    pub delay: Option<Duration>,
}

/// One provider the fake owner serves.
pub struct FakeProvider {
    pub name: String,
    pub geom: GeomId,
    pub dev: Arc<MemDevice>,
}

#[derive(Debug)]
pub struct FakeState {
    pub seen: Vec<Seen>,
    pub knobs: Knobs,
}

/// The fake owner's shared state.
pub struct Fake {
    pub state: Watched<FakeState>,
    pub providers: Vec<FakeProvider>,
}

impl Fake {
    pub fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        self.state.with(f)
    }

    pub fn seen(&self, i: usize) -> Seen {
        self.with(|s| s.seen[i].clone())
    }

    /// Waits (5 s at most) until `done` holds for provider `i`.
    pub fn wait(&self, what: &str, i: usize, done: impl Fn(&Seen) -> bool) {
        self.state
            .expect(what, Duration::from_secs(5), |s| done(&s.seen[i]));
    }

    fn index(&self, geom: GeomId) -> Option<usize> {
        self.providers.iter().position(|p| p.geom == geom)
    }
}

pub use geom_multipath::testkit::geom_ids as geoms;

/// A `ProviderUp` (with its info and device) or `ProviderDown` (`None`) for a name.
pub type ProviderEvent = (String, Option<(ProviderInfo, Arc<dyn Device>)>);

/// A fake owner thread serving memory providers, plus the export table listing them.
pub struct FakeOwner {
    pub owner: OwnerHandle,
    pub exports: SharedExports,
    pub fake: Arc<Fake>,
    /// `ProviderUp` / `ProviderDown` messages, as (name, Some(info, device) | None).
    pub events: Receiver<ProviderEvent>,
    thread: Option<JoinHandle<()>>,
}

impl FakeOwner {
    /// Providers `(name, size)`, each on its own memory device, exported and sized.
    pub fn new(providers: &[(&str, u64)]) -> FakeOwner {
        let names: Vec<&str> = providers.iter().map(|p| p.0).collect();
        let ids = geoms(&names);
        let exports: SharedExports = Arc::new(RwLock::new(Exports::new()));
        let mut list = Vec::new();
        for (&(name, size), geom) in providers.iter().zip(ids) {
            let mut t = exports.write().unwrap();
            t.add(name, geom);
            t.resize(geom, size, Some(512));
            list.push(FakeProvider {
                name: name.to_string(),
                geom,
                dev: Arc::new(MemDevice::new(size as usize)),
            });
        }
        let fake = Arc::new(Fake {
            state: Watched::new(FakeState {
                seen: vec![Seen::default(); list.len()],
                knobs: Knobs::default(),
            }),
            providers: list,
        });
        let (owner, inbox) = msg::channel().unwrap();
        let (events_tx, events) = crossbeam_channel::unbounded();
        let thread = {
            let fake = fake.clone();
            std::thread::spawn(move || serve(inbox, fake, events_tx))
        };
        FakeOwner {
            owner,
            exports,
            fake,
            events,
            thread: Some(thread),
        }
    }

    pub fn dev(&self, i: usize) -> &Arc<MemDevice> {
        &self.fake.providers[i].dev
    }

    pub fn geom(&self, i: usize) -> GeomId {
        self.fake.providers[i].geom
    }

    /// Withers provider `i`: out of the table, ENXIO from now on.
    pub fn wither(&self, i: usize) {
        self.fake.with(|s| s.knobs.withered = true);
        self.exports.write().unwrap().remove(self.geom(i));
    }

    pub fn wait_closed(&self, i: usize) {
        self.fake.wait("every open to be closed", i, |s| {
            s.r == 0 && s.w == 0 && s.e == 0
        });
    }
}

impl Drop for FakeOwner {
    fn drop(&mut self) {
        self.owner.send(Msg::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(inbox: OwnerInbox, fake: Arc<Fake>, events: Sender<ProviderEvent>) {
    while let Ok(m) = inbox.rx.recv() {
        match m {
            Msg::Io(req) => {
                let (withered, delay) = fake.with(|s| (s.knobs.withered, s.knobs.delay));
                let Some(i) = fake.index(req.geom).filter(|_| !withered) else {
                    (req.reply)(Err(Errno::ENXIO));
                    continue;
                };
                let dev = fake.providers[i].dev.clone();
                let res = match req.op {
                    IoOp::Read(mut buf) => {
                        fake.with(|s| s.seen[i].reads += 1);
                        dev.read_at(buf.as_mut_slice(), req.offset)
                            .map(|()| IoReply::Data(buf))
                    }
                    IoOp::Write(buf) => {
                        fake.with(|s| s.seen[i].writes += 1);
                        dev.write_at(buf.as_slice(), req.offset)
                            .map(|()| IoReply::Done)
                    }
                    IoOp::Flush => {
                        fake.with(|s| s.seen[i].flushes += 1);
                        dev.flush().map(|()| IoReply::Done)
                    }
                    IoOp::Delete(len) => {
                        fake.with(|s| s.seen[i].deletes.push((req.offset, len)));
                        dev.discard(req.offset, len).map(|()| IoReply::Done)
                    }
                    IoOp::Physpath => Ok(IoReply::Text(String::from("mem"))),
                };
                match delay {
                    None => (req.reply)(res),
                    Some(d) => {
                        let reply = req.reply;
                        std::thread::spawn(move || {
                            std::thread::sleep(d);
                            reply(res);
                        });
                    }
                }
                fake.state.notify();
            }
            Msg::Access {
                geom,
                dr,
                dw,
                de,
                reply,
            } => {
                let verdict = fake.with(|s| {
                    let i = fake.index(geom).ok_or(Errno::ENXIO)?;
                    let taking = dr > 0 || dw > 0 || de > 0;
                    if s.knobs.withered && taking {
                        return Err(Errno::ENXIO);
                    }
                    if s.knobs.refuse_write && dw > 0 {
                        return Err(Errno::EPERM);
                    }
                    let seen = &mut s.seen[i];
                    seen.r += dr;
                    seen.w += dw;
                    seen.e += de;
                    assert!(seen.r >= 0 && seen.w >= 0 && seen.e >= 0, "gave back twice");
                    if taking {
                        seen.opens += 1;
                    }
                    Ok(())
                });
                let _ = reply.send(verdict);
            }
            Msg::ProviderUp { info, source } => {
                let dev = match source {
                    geom_multipath_host::owner::providers::Source::Fixed(d) => Some(d),
                    _ => None,
                };
                let name = info.name.clone();
                let _ = events.send((name, dev.map(|d| (info, d))));
            }
            Msg::ProviderDown { name } => {
                let _ = events.send((name, None));
            }
            Msg::Shutdown => break,
            _ => {}
        }
    }
}

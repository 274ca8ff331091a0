//! One fake owner for the exports' tests: a thread that answers what an export sends the
//! owner — access changes and data requests — from memory devices, counts what it saw per
//! provider, and can be told to wither a provider, refuse write access or answer late.

use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use geom_multipath::{Errno, GeomId, ProviderInfo};

use crate::msg::exports::{Exports, SharedExports};
use crate::msg::{self, IoOp, IoReply, Msg, OwnerHandle, OwnerInbox};
use crate::path::device::Device;
use crate::testkit::watched::Watched;
use crate::testkit::MemDevice;

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
    /// Every data request, of any kind.
    pub requests: u32,
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
    /// Taking any access fails with this error.
    pub refuse: Option<Errno>,
    /// What `GEOM::physpath` answers (`mem` unless set).
    pub physpath: Option<String>,
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
        self.wait_up_to(what, i, Duration::from_secs(5), done);
    }

    /// Waits (`limit` at most) until `done` holds for provider `i`.
    pub fn wait_up_to(&self, what: &str, i: usize, limit: Duration, done: impl Fn(&Seen) -> bool) {
        self.state.expect(what, limit, |s| done(&s.seen[i]));
    }

    /// The read and write access held on `geom`'s provider.
    pub fn access(&self, geom: GeomId) -> (i32, i32) {
        let i = self.index(geom).expect("a provider of the fake owner");
        let seen = self.seen(i);
        (seen.r, seen.w)
    }

    fn index(&self, geom: GeomId) -> Option<usize> {
        self.providers.iter().position(|p| p.geom == geom)
    }
}

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
        FakeOwner::start(providers, true)
    }

    /// Providers `(name, size)`, each on its own memory device, with an export table that
    /// does not list them yet (the test adds them).
    pub fn unlisted(providers: &[(&str, u64)]) -> FakeOwner {
        FakeOwner::start(providers, false)
    }

    fn start(providers: &[(&str, u64)], listed: bool) -> FakeOwner {
        let names: Vec<&str> = providers.iter().map(|p| p.0).collect();
        let ids = geom_multipath::testkit::geom_ids(&names);
        let exports: SharedExports = Arc::new(RwLock::new(Exports::new()));
        let mut list = Vec::new();
        for (&(name, size), geom) in providers.iter().zip(ids) {
            if listed {
                let mut t = exports.write().unwrap();
                t.add(name, geom);
                t.resize(geom, size, Some(512));
            }
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
                fake.with(|s| s.seen[i].requests += 1);
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
                    IoOp::Physpath => Ok(IoReply::Text(
                        fake.with(|s| s.knobs.physpath.clone())
                            .unwrap_or_else(|| String::from("mem")),
                    )),
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
                    if let Some(e) = s.knobs.refuse.filter(|_| taking) {
                        return Err(e);
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
                    crate::path::device::Source::Fixed(d) => Some(d),
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

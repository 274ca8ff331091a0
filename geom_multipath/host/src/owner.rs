//! The owner: the one thread that holds the class and everything the class decides about,
//! and the [`Topology`] through which the class acts on the host.
//!
//! It waits (poll) on its inbox, the device watcher and a signal descriptor, and handles in
//! turn: data requests (start → a path worker → done → deliver or reissue), access changes
//! from the exports, completions, device events (taste, resize, orphan) and control calls.
//! After every call into the class it drains the class's events to the console and its
//! deferred work into one FIFO, together with the re-tastes the host itself posts when a
//! provider's last writer lets go — the order GEOM's event queue gives.
//!
//! Nothing here blocks on a device: data I/O runs on path workers, and the few reads and
//! writes the class makes itself (labels, taste) run on a helper thread with a deadline.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use geom_multipath::dumpconf::conf_foreign_class;
use geom_multipath::sysctl::{self, Knob, Values};
use geom_multipath::wire::Reply;
use geom_multipath::{
    Bio, Class, CtlError, Deferred, Done, Errno, GeomId, Level, Op, PathId, ProviderInfo, Request,
    Topology,
};
use geom_multipath_proto::{Answer, Call, Knob as KnobAnswer};

use crate::console::Console;
use crate::device::{Device, IoBuf};
use crate::exports::SharedExports;
use crate::msg::{Completion, IoOp, IoReply, IoRequest, Msg, OwnerHandle, OwnerInbox, ReplyFn};
use crate::nop::{NopClass, NopDevice, NopHost};
use crate::providers::{Consumer, ProviderTable, Source};
use crate::workers::{Work, WorkOp, Workers};

/// How long a control-path read or write (label, taste) may take before it counts as failed.
pub const CONTROL_IO_DEADLINE: Duration = Duration::from_secs(30);
/// How long a taste read may take.
pub const TASTE_DEADLINE: Duration = Duration::from_secs(5);
/// How often held devices are checked for changes that raise no event.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Work queued behind the current input, run in order.
#[derive(Debug)]
enum Job {
    /// The class's deferred work.
    Class(Deferred),
    /// Taste this provider again.
    Retaste(String),
}

/// One request being served.
struct InFlight {
    bio: Bio,
    buf: Option<IoBuf>,
    text: Option<String>,
    reply: Option<ReplyFn>,
    attempt: u32,
    started: Instant,
}

/// How the host runs.
pub struct Settings {
    /// The tunables to start with.
    pub tunables: Values,
    /// Only these block devices are tasted and usable as paths (all when `None`).
    pub devices: Option<Vec<String>>,
    /// Where the exports are mounted (loops backed by files below it are never tasted).
    pub mountpoint: PathBuf,
}

/// The owner of the class.
pub struct Owner {
    pub(crate) class: Class,
    nop: NopClass,
    pub(crate) providers: ProviderTable,
    pub(crate) paths: BTreeMap<PathId, String>,
    exports: SharedExports,
    workers: Workers,
    inflight: HashMap<u64, InFlight>,
    next_token: u64,
    queue: VecDeque<Job>,
    pub(crate) console: Console,
    settings: Settings,
    rng: u64,
    stopping: bool,
}

impl Owner {
    /// An owner with no providers yet.
    pub fn new(settings: Settings, exports: SharedExports, handle: OwnerHandle) -> Owner {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        Owner {
            class: Class::new(settings.tunables),
            nop: NopClass::new(),
            providers: ProviderTable::new(),
            paths: BTreeMap::new(),
            exports,
            workers: Workers::new(handle),
            inflight: HashMap::new(),
            next_token: 1,
            queue: VecDeque::new(),
            console: Console::new(),
            settings,
            rng: seed,
            stopping: false,
        }
    }

    /// Asks the loop to end (a signal).
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Tastes `name` again after its last writer closed it, behind whatever is queued.
    pub fn retaste(&mut self, name: &str) {
        if self.providers.info(name).is_some() {
            self.queue.push_back(Job::Retaste(name.to_string()));
            self.drain();
        }
    }

    /// The end of the daemon: every geom is stopped (labels stay); providers still open
    /// are withered, so their users see ENXIO rather than a hang.
    pub fn shutdown(&mut self) {
        let names: Vec<String> = self
            .class
            .geoms()
            .filter_map(|g| self.class.geom(g))
            .filter(|g| !g.stopping())
            .map(|g| g.name().to_string())
            .collect();
        for name in names {
            let mut req = Request::for_verb("MULTIPATH", "stop", geom_multipath::metadata::VERSION);
            req.add_args(&[name]);
            self.ctl(&mut req);
        }
        for (_, entry) in self.inflight.drain() {
            if let Some(reply) = entry.reply {
                reply(Err(Errno::ENXIO));
            }
        }
    }

    /// `true` once an accepted unload or a stop asked the loop to end.
    pub fn stopping(&self) -> bool {
        self.stopping
    }

    /// The class (for tests and statistics).
    pub fn class(&self) -> &Class {
        &self.class
    }

    /// Handles one message.
    pub fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Io(req) => self.io(req),
            Msg::Done(c) => self.completion(c),
            Msg::Access {
                geom,
                dr,
                dw,
                de,
                reply,
            } => {
                let result = self.with_topology(|class, topo| class.access(topo, geom, dr, dw, de));
                let _ = reply.send(result);
            }
            Msg::Call { call, reply } => {
                let answer = self.call(call);
                let _ = reply.send(answer);
            }
            Msg::ProviderUp { info, source } => {
                let name = info.name.clone();
                self.device_changed(&name, Some((info, source)));
            }
            Msg::ProviderDown { name } => self.device_changed(&name, None),
            Msg::Shutdown => self.stopping = true,
        }
    }

    /// Runs `f` with the class and a topology over the host's state, then drains what the
    /// class queued.
    fn with_topology<R>(&mut self, f: impl FnOnce(&mut Class, &mut HostTopology<'_>) -> R) -> R {
        let mut topo = HostTopology {
            providers: &mut self.providers,
            paths: &mut self.paths,
            exports: &self.exports,
            workers: &mut self.workers,
            queue: &mut self.queue,
            tasted: None,
        };
        let r = f(&mut self.class, &mut topo);
        self.drain();
        r
    }

    /// Moves the class's events to the console and its deferred work to the queue, then
    /// runs the queue until it is empty.
    fn drain(&mut self) {
        loop {
            while let Some(e) = self.class.poll_event() {
                self.console.event(e);
            }
            while let Some(d) = self.class.poll_deferred() {
                self.queue.push_back(Job::Class(d));
            }
            let Some(job) = self.queue.pop_front() else {
                return;
            };
            match job {
                Job::Class(work) => {
                    let mut topo = HostTopology {
                        providers: &mut self.providers,
                        paths: &mut self.paths,
                        exports: &self.exports,
                        workers: &mut self.workers,
                        queue: &mut self.queue,
                        tasted: None,
                    };
                    self.class.run_deferred(&mut topo, work);
                }
                Job::Retaste(name) => self.taste(&name),
            }
        }
    }

    // ----- the data path -----------------------------------------------------------------

    fn io(&mut self, req: IoRequest) {
        let token = self.next_token;
        self.next_token += 1;
        let (op, len, buf) = match req.op {
            IoOp::Read(buf) => (Op::Read, buf.len() as u64, Some(buf)),
            IoOp::Write(buf) => (Op::Write, buf.len() as u64, Some(buf)),
            IoOp::Flush => (Op::Flush, 0, None),
            IoOp::Delete(len) => (Op::Delete, len, None),
            IoOp::Physpath => (Op::GetAttr { physpath: true }, 0, None),
        };
        let mut bio = Bio::new(token, req.geom, op, req.offset, len);
        match self.class.start(&mut bio) {
            Err(e) => (req.reply)(Err(e)),
            Ok(path) => {
                self.inflight.insert(
                    token,
                    InFlight {
                        bio,
                        buf,
                        text: None,
                        reply: Some(req.reply),
                        attempt: 1,
                        started: Instant::now(),
                    },
                );
                self.dispatch(token, path);
            }
        }
    }

    /// Sends the current attempt of `token` to `path`'s workers.
    fn dispatch(&mut self, token: u64, path: PathId) {
        let Some(entry) = self.inflight.get_mut(&token) else {
            return;
        };
        let name = self.paths.get(&path).cloned().unwrap_or_default();
        let device = self.providers.device(&name);
        let op = match entry.bio.op {
            Op::Read => WorkOp::Read,
            Op::Write => WorkOp::Write,
            Op::Flush => WorkOp::Flush,
            Op::Delete => WorkOp::Delete(entry.bio.length),
            Op::GetAttr { .. } | Op::Other(_) => WorkOp::Physpath,
        };
        let attempt = entry.attempt;
        let buf = entry.buf.take();
        match device {
            Some(device) => {
                let work = Work {
                    token,
                    attempt,
                    op,
                    offset: entry.bio.offset,
                    buf,
                    device,
                };
                self.workers.submit(path, &name, work);
            }
            // A path whose provider is not open cannot carry I/O: ENXIO fails it over.
            None => self.completion(Completion {
                token,
                attempt,
                buf,
                text: None,
                result: Err(Errno::ENXIO),
            }),
        }
    }

    fn completion(&mut self, c: Completion) {
        let Some(entry) = self.inflight.get_mut(&c.token) else {
            return; // answered already: a late completion
        };
        if c.attempt != entry.attempt {
            return; // an attempt the owner gave up on
        }
        entry.buf = c.buf;
        if c.text.is_some() {
            entry.text = c.text;
        }
        let done = self.class.done(&mut entry.bio, c.result);
        match done {
            Done::Reissue(path) => {
                entry.attempt += 1;
                self.dispatch(c.token, path);
            }
            Done::Deliver { result, append } => {
                if let Some(mut entry) = self.inflight.remove(&c.token) {
                    let reply = entry.reply.take().expect("one reply per request");
                    reply(result.map(|()| payload(&mut entry, append)));
                }
            }
        }
        self.drain();
    }

    // ----- taste and device events -------------------------------------------------------

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
        let mut topo = HostTopology {
            providers: &mut self.providers,
            paths: &mut self.paths,
            exports: &self.exports,
            workers: &mut self.workers,
            queue: &mut self.queue,
            tasted: Some((name.to_string(), sector)),
        };
        self.class.taste(&mut topo, &info, random);
        self.drain();
    }

    /// Taste's private read of the last sector, with a deadline.
    fn read_last_sector(&mut self, info: &ProviderInfo) -> Result<Vec<u8>, Errno> {
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

    fn queue_retastes(&mut self, names: Vec<String>) {
        self.queue.extend(names.into_iter().map(Job::Retaste));
    }

    fn random(&mut self) -> u32 {
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
            None => self.provider_gone(name),
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
    fn with_nop<R>(&mut self, f: impl FnOnce(&mut NopClass, &mut NopAdapter<'_>) -> R) -> R {
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
    fn provider_resized(&mut self, info: &ProviderInfo) {
        self.providers.set_size(&info.name, info.mediasize);
        let paths: Vec<PathId> = self.class.paths_on_provider(&info.name).collect();
        for p in paths {
            self.with_topology(|class, topo| class.resize(topo, p, info));
        }
        self.with_nop(|nop, host| nop.resized(host, info));
    }

    /// Adds a provider and tastes it (startup scan, a NOP created).
    pub fn add_provider(&mut self, info: ProviderInfo, source: Source) {
        let name = info.name.clone();
        self.providers.insert(info, source);
        self.taste(&name);
    }

    // ----- control calls -----------------------------------------------------------------

    fn call(&mut self, call: Call) -> Answer {
        match call {
            Call::Ping => Answer::Pong {
                pid: std::process::id(),
            },
            Call::Ctl(mut req) => {
                self.ctl(&mut req);
                Answer::Ctl(Reply::from_request(&req))
            }
            Call::ConfXml => Answer::Text(self.confxml()),
            Call::SysctlGet { name } => self.sysctl_get(&name),
            Call::SysctlSet { name, value } => self.sysctl_set(&name, &value),
            Call::Unload => self.unload(),
            Call::Probes => Answer::Counters(self.console.probes()),
            Call::Messages { since } => {
                let (next, lines) = self.console.since(since);
                Answer::Messages { next, lines }
            }
            Call::ProviderInfo { name } => match self.providers.info(&name) {
                Some(i) => Answer::Provider {
                    mediasize: i.mediasize,
                    sectorsize: i.sectorsize,
                },
                None => failed(Errno(libc::ENOENT)),
            },
            Call::ProviderRead { name, offset, len } => {
                self.provider_io(&name, offset, ProviderOp::Read(len as usize), false)
            }
            Call::ProviderTouch { name, offset, len } => {
                self.provider_io(&name, offset, ProviderOp::Read(len as usize), true)
            }
            Call::ProviderWrite { name, offset, data } => {
                self.provider_io(&name, offset, ProviderOp::Write(data), true)
            }
        }
    }

    /// Runs a gctl request for the class it names.
    fn ctl(&mut self, req: &mut Request) {
        let class = req.ascii("class").unwrap_or_default();
        match class.as_str() {
            "MULTIPATH" => self.with_topology(|c, topo| c.ctl(topo, req)),
            "NOP" => self.with_nop(|nop, host| nop.ctl(host, req)),
            _ => req.error(CtlError::Other(format!("Class not found: \"{class}\""))),
        }
    }

    /// `kern.geom.confxml`: the DISK providers, then the classes.
    pub fn confxml(&mut self) -> String {
        let mut xml = String::from("<mesh>\n");
        let disks: Vec<(ProviderInfo, (i32, i32, i32))> = self
            .providers
            .iter()
            .filter(|(i, _)| !self.providers.is_stacked(&i.name))
            .map(|(i, c)| (i.clone(), (c.r, c.w, c.e)))
            .collect();
        let _ = conf_foreign_class(&mut xml, "DISK", disks.iter().map(|(i, c)| (i, *c)));
        let view = NopView(&self.providers);
        let _ = self.nop.conf_class(&view, &mut xml);
        let _ = self.class.conf_class(&mut xml);
        xml.push_str("</mesh>\n");
        xml
    }

    fn knob_answer(&self, t: &sysctl::Tunable, old: Option<u32>) -> KnobAnswer {
        KnobAnswer {
            name: t.name.to_string(),
            value: u64::from(self.class.tunables().get(t.knob)),
            old: old.map(u64::from),
            description: t.description.to_string(),
        }
    }

    fn sysctl_get(&self, name: &str) -> Answer {
        if name.is_empty() || name == sysctl::NODE {
            let all = sysctl::TABLE
                .iter()
                .map(|t| self.knob_answer(t, None))
                .collect();
            return Answer::Sysctl(all);
        }
        match sysctl::lookup(name).filter(|t| t.name == name) {
            Some(t) => Answer::Sysctl(vec![self.knob_answer(t, None)]),
            None => failed(Errno(libc::ENOENT)),
        }
    }

    fn sysctl_set(&mut self, name: &str, value: &str) -> Answer {
        let Some(t) = sysctl::lookup(name).filter(|t| t.name == name) else {
            return failed(Errno(libc::ENOENT));
        };
        match self.class.tunables_mut().set_text(t.knob, value) {
            Ok(old) => Answer::Sysctl(vec![self.knob_answer(t, Some(old))]),
            Err(e) => Answer::Failed {
                errno: libc::EINVAL,
                text: e.to_string(),
            },
        }
    }

    /// kldunload: refused while a multipath provider is open; otherwise every geom goes
    /// (labels stay) and the loop ends.
    fn unload(&mut self) -> Answer {
        match self.with_topology(|class, topo| class.destroy_all(topo)) {
            Ok(()) => {
                let nops: Vec<String> = self.nop.providers().map(|i| i.name).collect();
                for name in nops.iter().rev() {
                    let _ = self.with_nop(|nop, host| nop.destroy_geom(host, name));
                }
                self.stopping = true;
                Answer::Done
            }
            Err(e) => failed(e),
        }
    }

    /// A provider read or write on behalf of a tool (label, clear); `closes_for_write`
    /// opens it for writing, so that closing it re-tastes it.
    fn provider_io(
        &mut self,
        name: &str,
        offset: u64,
        op: ProviderOp,
        closes_for_write: bool,
    ) -> Answer {
        if self.providers.info(name).is_none() {
            return failed(Errno(libc::ENOENT));
        }
        let w = i32::from(closes_for_write);
        match self.providers.access(name, Consumer::Control, 1, w, 0) {
            Ok(o) => self.queue_retastes(o.retaste),
            Err(e) => return failed(e),
        }
        let device = self.providers.device(name);
        let result = match device {
            None => Err(Errno::ENXIO),
            Some(d) => blocking(CONTROL_IO_DEADLINE, move || match op {
                ProviderOp::Read(len) => {
                    let mut buf = IoBuf::zeroed(len);
                    d.read_at(buf.as_mut_slice(), offset)
                        .map(|()| Answer::Data(buf.as_slice().to_vec()))
                }
                ProviderOp::Write(data) => d
                    .write_at(IoBuf::from_slice(&data).as_slice(), offset)
                    .and_then(|()| d.flush())
                    .map(|()| Answer::Done),
            }),
        };
        if let Ok(o) = self.providers.access(name, Consumer::Control, -1, -w, 0) {
            self.queue_retastes(o.retaste);
        }
        self.drain();
        result.unwrap_or_else(failed)
    }

    /// The requests in flight longer than `deadline`, oldest first (for statistics).
    pub fn overdue(&self, deadline: Duration) -> usize {
        self.inflight
            .values()
            .filter(|e| e.started.elapsed() > deadline)
            .count()
    }

    /// Replaces the tunables (config file at start).
    pub fn set_tunable(&mut self, knob: Knob, value: u32) -> Result<u32, sysctl::SetError> {
        self.class.tunables_mut().set(knob, value)
    }
}

enum ProviderOp {
    Read(usize),
    Write(Vec<u8>),
}

fn failed(e: Errno) -> Answer {
    Answer::Failed {
        errno: e.0,
        text: nix::errno::Errno::from_raw(e.0).desc().to_string(),
    }
}

/// What a delivered request hands back.
fn payload(entry: &mut InFlight, append: Option<&'static str>) -> IoReply {
    match entry.bio.op {
        Op::Read | Op::Write => match entry.buf.take() {
            Some(buf) => IoReply::Data(buf),
            None => IoReply::Done,
        },
        Op::GetAttr { .. } => {
            let mut text = entry.text.take().unwrap_or_default();
            text.push_str(append.unwrap_or(""));
            IoReply::Text(text)
        }
        Op::Flush | Op::Delete | Op::Other(_) => IoReply::Done,
    }
}

/// What the NOP class did to the set of providers during one call.
enum NopChange {
    Created(ProviderInfo, Arc<NopDevice>),
    Resized(ProviderInfo),
    Destroyed(String),
}

/// The NOP class's view of the host: the provider table, the console, and a record of the
/// providers it creates and destroys (carried out by the owner after the call).
struct NopAdapter<'a> {
    providers: &'a mut ProviderTable,
    console: &'a mut Console,
    changes: Vec<NopChange>,
}

impl NopHost for NopAdapter<'_> {
    fn provider(&self, name: &str) -> Option<ProviderInfo> {
        self.providers.info(name).cloned()
    }
    fn open(&mut self, name: &str) -> Result<Arc<dyn Device>, Errno> {
        self.providers.handle(name).ok_or(Errno::ENXIO)
    }
    fn nop_created(&mut self, info: ProviderInfo, device: Arc<NopDevice>) {
        self.changes.push(NopChange::Created(info, device));
    }
    fn nop_resized(&mut self, info: ProviderInfo) {
        self.changes.push(NopChange::Resized(info));
    }
    fn nop_destroyed(&mut self, name: &str) {
        self.changes.push(NopChange::Destroyed(name.to_string()));
    }
    fn access(&self, name: &str) -> (i32, i32, i32) {
        let c = self.providers.totals(name);
        (c.r, c.w, c.e)
    }
    fn log(&mut self, line: String) {
        self.console.print(Level::Info, line);
    }
}

/// A read-only NOP host for the XML dump.
struct NopView<'a>(&'a ProviderTable);

impl NopHost for NopView<'_> {
    fn provider(&self, name: &str) -> Option<ProviderInfo> {
        self.0.info(name).cloned()
    }
    fn open(&mut self, _: &str) -> Result<Arc<dyn Device>, Errno> {
        Err(Errno::EPERM)
    }
    fn nop_created(&mut self, _: ProviderInfo, _: Arc<NopDevice>) {}
    fn nop_resized(&mut self, _: ProviderInfo) {}
    fn nop_destroyed(&mut self, _: &str) {}
    fn access(&self, name: &str) -> (i32, i32, i32) {
        let c = self.0.totals(name);
        (c.r, c.w, c.e)
    }
    fn log(&mut self, _: String) {}
}

/// Runs `f` on a helper thread and waits at most `deadline` for it: a device that hangs
/// costs a thread, never the owner. A timeout is ETIMEDOUT.
fn blocking<T: Send + 'static>(
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
    providers: &'a mut ProviderTable,
    paths: &'a mut BTreeMap<PathId, String>,
    exports: &'a SharedExports,
    workers: &'a mut Workers,
    queue: &'a mut VecDeque<Job>,
    /// The sector a taste read in advance, for its provider.
    tasted: Option<(String, Vec<u8>)>,
}

impl HostTopology<'_> {
    fn device(&self, path: PathId) -> Result<Arc<dyn Device>, Errno> {
        let name = self.paths.get(&path).ok_or(Errno::ENXIO)?;
        self.providers.device(name).ok_or(Errno::ENXIO)
    }

    fn exports(&self) -> std::sync::RwLockWriteGuard<'_, crate::exports::Exports> {
        self.exports.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Topology for HostTopology<'_> {
    fn provider(&self, name: &str) -> Option<ProviderInfo> {
        self.providers.info(name).cloned()
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

/// Event sources besides the inbox (the device watcher, signals): the owner polls their
/// descriptors with its own and lets them act when they are ready, on each periodic tick,
/// and right before every control call (so that a device event that happened before a
/// tool sent its request is always handled first).
pub trait Sources {
    /// Descriptors to poll.
    fn fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>>;
    /// Reads whatever is ready without blocking and acts on the owner.
    fn ready(&mut self, owner: &mut Owner);
    /// Periodic checks for changes that raise no event.
    fn tick(&mut self, owner: &mut Owner);
}

/// Runs the owner until it stops.
pub fn run(owner: &mut Owner, inbox: &OwnerInbox, sources: &mut dyn Sources) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut next_check = Instant::now() + CHECK_INTERVAL;
    while !owner.stopping() {
        let wait = next_check.saturating_duration_since(Instant::now());
        let timeout =
            PollTimeout::try_from(wait.as_millis().min(60_000) as u32).unwrap_or(PollTimeout::MAX);
        {
            let extra = sources.fds();
            let mut fds: Vec<PollFd<'_>> = std::iter::once(inbox.waker.as_fd())
                .chain(extra)
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
                .collect();
            let _ = poll(&mut fds, timeout);
        }
        sources.ready(owner);
        inbox.acknowledge();
        while let Ok(msg) = inbox.rx.try_recv() {
            if matches!(msg, Msg::Call { .. }) {
                sources.ready(owner);
            }
            owner.handle(msg);
            if owner.stopping() {
                break;
            }
        }
        if Instant::now() >= next_check {
            next_check = Instant::now() + CHECK_INTERVAL;
            sources.tick(owner);
        }
    }
}

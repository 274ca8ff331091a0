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

use std::collections::{BTreeMap, VecDeque};
use std::net::ToSocketAddrs;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use geom_multipath::geom_dump::conf_foreign_class;
use geom_multipath::sysctl::{self, Knob, Values};
use geom_multipath::wire::Reply;
use geom_multipath::{
    Bio, Check, Class, CtlError, Deferred, Dispatch, Done, Errno, Expired, GeomId, Level, Op,
    PathId, ProviderInfo, Request, Started, Time, Topology,
};
use geom_multipath_proto::{Answer, Call, Knob as KnobAnswer};

use crate::gnop::{NopClass, NopDevice, NopHost};
use crate::msg::exports::SharedExports;
use crate::msg::{Completion, IoOp, IoReply, IoRequest, Msg, OwnerHandle, OwnerInbox, ReplyFn};
use crate::owner::console::Console;
use crate::owner::providers::{Consumer, ProviderTable, Source};
use crate::path::device::{Device, IoBuf};
use crate::path::nbd::{self, NbdPaths, NbdUri, Transport};
use crate::path::workers::{Work, WorkBuf, WorkOp, Workers};
use crate::sys::idhash::IdMap;

pub mod console;
pub mod providers;

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

/// A request's data while it is served.
enum Data {
    /// No data (flush, delete, physpath).
    None,
    /// A read of `len` bytes; the buffer is here between attempts (a hung attempt keeps
    /// its own, and a reissue gets a new one).
    Read { len: usize, buf: Option<IoBuf> },
    /// A write: its bytes, shared with whichever attempt is sending them.
    Write(Arc<IoBuf>),
}

/// One request being served.
struct InFlight {
    bio: Bio,
    data: Data,
    text: Option<String>,
    reply: Option<ReplyFn>,
    attempt: u32,
    started: Instant,
}

/// Where a timed-out attempt was sent: its late answer lifts the fence on that provider
/// once it is the last one out.
type Abandoned = IdMap<(u64, u32), String>;

/// A setting the admin states per provider, as `<name>.<provider>` (seconds, 0 to 86400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerPath {
    /// `kern.geom.multipath.io_timeout.<provider>`: overrides the knob for that provider.
    IoTimeout,
    /// `kern.geom.multipath.quiesce_time.<provider>`: how long after its path failed at a
    /// deadline a write still out on it may land (none by default: wait for its answer).
    QuiesceTime,
}

impl PerPath {
    /// Every per-provider setting, in listing order.
    pub const ALL: [PerPath; 2] = [PerPath::IoTimeout, PerPath::QuiesceTime];

    /// The name in front of `.<provider>`.
    pub fn base(self) -> &'static str {
        match self {
            PerPath::IoTimeout => "kern.geom.multipath.io_timeout",
            PerPath::QuiesceTime => "kern.geom.multipath.quiesce_time",
        }
    }

    /// The setting and provider `name` stands for, if it is `<base>.<provider>` (the
    /// provider may be empty: the caller refuses it).
    pub fn parse(name: &str) -> Option<(PerPath, &str)> {
        PerPath::ALL.into_iter().find_map(|k| {
            name.strip_prefix(k.base())
                .and_then(|rest| rest.strip_prefix('.'))
                .map(|provider| (k, provider))
        })
    }

    /// Reads a value as written: seconds, in `io_timeout`'s range.
    pub fn check(value: &str) -> Result<u32, sysctl::SetError> {
        let mut check = Values::default();
        check.set_text(Knob::IoTimeout, value)?;
        Ok(check.io_timeout())
    }
}

/// The most bytes one provider read or write for a tool (label, clear) may move: well
/// within one control frame.
pub const PROVIDER_IO_MAX: u64 = 1 << 20;

/// The NOP class's one knob.
pub const NOP_DEBUG: &str = "kern.geom.nop.debug";

/// What a sysctl read of `name` answers from `all` knobs, as sysctl(8) walks the tree:
/// everything for an empty name, the knob itself for a leaf, every knob under a node, and
/// ENOENT for a name that is neither.
pub fn select_knobs(all: Vec<KnobAnswer>, name: &str) -> Answer {
    let under = format!("{name}.");
    let chosen: Vec<KnobAnswer> = if name.is_empty() {
        all
    } else if let Some(leaf) = all.iter().find(|k| k.name == name) {
        vec![leaf.clone()]
    } else {
        all.into_iter()
            .filter(|k| k.name.starts_with(&under))
            .collect()
    };
    if chosen.is_empty() {
        failed(Errno(libc::ENOENT))
    } else {
        Answer::Sysctl(chosen)
    }
}

/// How the host runs.
pub struct Settings {
    /// The tunables to start with.
    pub tunables: Values,
    /// Only these block devices are tasted and usable as paths (all when `None`).
    pub devices: Option<Vec<String>>,
    /// Where the exports are mounted (loops backed by files below it are never tasted).
    pub mountpoint: PathBuf,
    /// This daemon's own NBD export, which an NBD path must not point back at.
    pub own_nbd: OwnNbd,
}

/// Where this daemon serves NBD (so a path URI that names it can be refused).
#[derive(Clone, Debug, Default)]
pub struct OwnNbd {
    /// The directory of the per-provider Unix sockets.
    pub unix_dir: Option<PathBuf>,
    /// The TCP listener.
    pub tcp: Option<std::net::SocketAddr>,
}

impl OwnNbd {
    /// `true` if `uri` reaches this daemon's own export: a path through it would loop.
    fn serves(&self, uri: &NbdUri) -> bool {
        match &uri.transport {
            Transport::Unix(path) => self
                .unix_dir
                .as_deref()
                .is_some_and(|d| path.starts_with(d)),
            Transport::UnixAbstract(_) => false,
            Transport::Tcp { host, port } => self.tcp.is_some_and(|own| {
                own.port() == *port
                    && (host.as_str(), *port).to_socket_addrs().is_ok_and(|mut a| {
                        a.any(|a| {
                            a.ip() == own.ip()
                                || (own.ip().is_unspecified() && a.ip().is_loopback())
                        })
                    })
            }),
        }
    }
}

/// The owner of the class.
pub struct Owner {
    pub(crate) class: Class,
    nop: NopClass,
    pub(crate) providers: ProviderTable,
    pub(crate) paths: BTreeMap<PathId, String>,
    exports: SharedExports,
    workers: Workers,
    inflight: IdMap<u64, InFlight>,
    next_token: u64,
    /// The origin of the class's clock ([`Time`] 0).
    clock: Instant,
    /// Timed-out attempts whose answers have not come back yet.
    abandoned: Abandoned,
    /// The checker's probes in flight, by their token: the path, and when the probe counts
    /// as failed (the path's `io_timeout`, else one check interval).
    probes: IdMap<u64, (PathId, Instant)>,
    queue: VecDeque<Job>,
    pub(crate) console: Console,
    settings: Settings,
    rng: u64,
    stopping: bool,
    /// The NBD URIs in use as providers, each kept connected by its supervisor.
    nbd: NbdPaths,
    /// The supervisors' way back to this loop.
    handle: OwnerHandle,
    /// Reconnected NBD providers waiting for their dead predecessor's holders to let go.
    pending_up: BTreeMap<String, (ProviderInfo, Source)>,
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
            workers: Workers::new(handle.clone()),
            inflight: IdMap::default(),
            next_token: 1,
            clock: Instant::now(),
            abandoned: IdMap::default(),
            probes: IdMap::default(),
            queue: VecDeque::new(),
            console: Console::new(),
            settings,
            rng: seed,
            stopping: false,
            nbd: NbdPaths::new(),
            handle,
            pending_up: BTreeMap::new(),
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

    /// Handles the attempts the io_uring engine has finished.
    pub fn reap_ring(&mut self) {
        for done in self.workers.reap() {
            self.handle(Msg::Done(done));
        }
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
        if !self.pending_up.is_empty() {
            self.admit_pending();
        }
    }

    /// The class, and its view of the host's state beside it (`tasted`: the sector a
    /// taste read in advance, for its provider).
    fn class_and_topology(
        &mut self,
        tasted: Option<(String, Vec<u8>)>,
    ) -> (&mut Class, HostTopology<'_>) {
        let topo = HostTopology {
            providers: &mut self.providers,
            paths: &mut self.paths,
            exports: &self.exports,
            workers: &mut self.workers,
            queue: &mut self.queue,
            tasted,
        };
        (&mut self.class, topo)
    }

    /// Runs `f` with the class and a topology over the host's state, then drains what the
    /// class queued.
    fn with_topology<R>(&mut self, f: impl FnOnce(&mut Class, &mut HostTopology<'_>) -> R) -> R {
        let (class, mut topo) = self.class_and_topology(None);
        let r = f(class, &mut topo);
        self.drain();
        r
    }

    /// Moves the class's events to the console and its deferred work to the queue, then
    /// runs the queue until it is empty.
    fn drain(&mut self) {
        loop {
            while let Some(d) = self.class.poll_dispatch() {
                self.waited(d);
            }
            while let Some(check) = self.class.poll_check() {
                self.probe(check);
            }
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
                    let (class, mut topo) = self.class_and_topology(None);
                    class.run_deferred(&mut topo, work);
                }
                Job::Retaste(name) => self.taste(&name),
            }
        }
    }

    // ----- the data path -----------------------------------------------------------------

    fn io(&mut self, req: IoRequest) {
        let token = self.next_token;
        self.next_token += 1;
        let (op, len, data) = match req.op {
            IoOp::Read(buf) => (
                Op::Read,
                buf.len() as u64,
                Data::Read {
                    len: buf.len(),
                    buf: Some(buf),
                },
            ),
            IoOp::Write(buf) => (Op::Write, buf.len() as u64, Data::Write(Arc::new(buf))),
            IoOp::Flush => (Op::Flush, 0, Data::None),
            IoOp::Delete(len) => (Op::Delete, len, Data::None),
            IoOp::Physpath => (Op::GetAttr { physpath: true }, 0, Data::None),
        };
        let mut bio = Bio::new(token, req.geom, op, req.offset, len);
        let started = self.class.start_or_queue(&mut bio);
        if let Started::Refused(e) = started {
            return (req.reply)(Err(e));
        }
        self.inflight.insert(
            token,
            InFlight {
                bio,
                data,
                text: None,
                reply: Some(req.reply),
                attempt: 1,
                started: Instant::now(),
            },
        );
        match started {
            Started::Path(path) => self.dispatch(token, path),
            // It waits for a path; `poll_dispatch` brings it back.
            Started::Queued | Started::Refused(_) => self.drain(),
        }
    }

    /// A request that waited for a path: send it now, or answer it.
    fn waited(&mut self, dispatch: Dispatch) {
        match dispatch {
            Dispatch::Issue { bio, path } => {
                let token = bio.token;
                if let Some(entry) = self.inflight.get_mut(&token) {
                    entry.bio = bio;
                    entry.attempt += 1;
                    self.dispatch(token, path);
                }
            }
            Dispatch::Fail { bio, error } => self.carry_out(
                bio.token,
                Done::Deliver {
                    result: Err(error),
                    append: None,
                },
            ),
        }
    }

    /// Issues one probe of the checker: a direct read of one block on the path's workers,
    /// with a buffer of its own, answered through [`Owner::probe_answered`].
    fn probe(&mut self, check: Check) {
        let name = self.paths.get(&check.path).cloned().unwrap_or_default();
        let device = if self.providers.is_fenced(&name) {
            None
        } else {
            self.providers.device(&name)
        };
        let Some(device) = device else {
            self.class.handle_check_done(check.path, Err(Errno::ENXIO));
            return;
        };
        let token = self.next_token;
        self.next_token += 1;
        let secs = match self.class.io_timeout(&name) {
            0 => self.class.tunables().check_interval().max(1),
            secs => secs,
        };
        let deadline = Instant::now() + Duration::from_secs(u64::from(secs));
        self.probes.insert(token, (check.path, deadline));
        let work = Work {
            token,
            attempt: 1,
            op: WorkOp::Read,
            offset: check.offset,
            buf: WorkBuf::Read(IoBuf::zeroed(check.length as usize)),
            device,
        };
        self.workers.submit(check.path, &name, work);
    }

    /// A probe's answer (or its deadline, as ENXIO) goes to the class; `false` if `token`
    /// is not a probe in flight.
    fn probe_answered(&mut self, token: u64, result: Result<(), Errno>) -> bool {
        let Some((path, _)) = self.probes.remove(&token) else {
            return false;
        };
        self.class.handle_check_done(path, result);
        self.drain();
        true
    }

    /// Sends the current attempt of `token` to `path`'s workers, with its deadline.
    fn dispatch(&mut self, token: u64, path: PathId) {
        let Some(entry) = self.inflight.get_mut(&token) else {
            return;
        };
        let name = self.paths.get(&path).cloned().unwrap_or_default();
        let op = match entry.bio.op {
            Op::Read => WorkOp::Read,
            Op::Write => WorkOp::Write,
            Op::Flush => WorkOp::Flush,
            Op::Delete => WorkOp::Delete(entry.bio.length),
            Op::GetAttr { .. } | Op::Other(_) => WorkOp::Physpath,
        };
        let attempt = entry.attempt;
        let buf = match &mut entry.data {
            Data::None => WorkBuf::None,
            Data::Read { len, buf } => {
                WorkBuf::Read(buf.take().unwrap_or_else(|| IoBuf::to_fill(*len)))
            }
            Data::Write(bytes) => WorkBuf::Write(bytes.clone()),
        };
        let offset = entry.bio.offset;
        // A fenced provider carries nothing: a timed-out request may still be out there.
        let device = if self.providers.is_fenced(&name) {
            None
        } else {
            self.providers.device(&name)
        };
        let Some(device) = device else {
            // A path whose provider is not open (or is fenced) cannot carry I/O: ENXIO
            // fails it over.
            let buf = match buf {
                WorkBuf::Read(b) => Some(b),
                WorkBuf::None | WorkBuf::Write(_) => None,
            };
            self.completion(Completion {
                token,
                attempt,
                buf,
                text: None,
                result: Err(Errno::ENXIO),
            });
            return;
        };
        let now = self.time_at(Instant::now());
        if let Some(entry) = self.inflight.get_mut(&token) {
            self.class.arm_deadline(&mut entry.bio, now);
        }
        let work = Work {
            token,
            attempt,
            op,
            offset,
            buf,
            device,
        };
        self.workers.submit(path, &name, work);
    }

    /// `at` on the class's clock.
    fn time_at(&self, at: Instant) -> Time {
        Time(at.saturating_duration_since(self.clock).as_nanos() as u64)
    }

    /// When the class's next timer falls due, if one is armed.
    pub fn next_deadline(&self) -> Option<Instant> {
        let class = self
            .class
            .poll_timeout()
            .map(|Time(nanos)| self.clock + Duration::from_nanos(nanos));
        let probe = self.probes.values().map(|&(_, at)| at).min();
        class.into_iter().chain(probe).min()
    }

    /// Fires the class's timers due at `now` and carries out every attempt it gave up on:
    /// the abandoned attempt's provider is fenced, so nothing sent later through that path
    /// can race with the late copy, and the request goes on as the class decided (a
    /// reissue elsewhere, or its answer).
    pub fn expire(&mut self, now: Instant) {
        let overdue: Vec<u64> = self
            .probes
            .iter()
            .filter(|(_, &(_, at))| at <= now)
            .map(|(&token, _)| token)
            .collect();
        for token in overdue {
            self.probe_answered(token, Err(Errno::ENXIO));
        }
        let at = self.time_at(now);
        self.class
            .handle_timeout(at, self.inflight.values_mut().map(|e| &mut e.bio));
        while let Some(Expired {
            token,
            abandoned_on,
            done,
        }) = self.class.poll_expired()
        {
            let Some(entry) = self.inflight.get(&token) else {
                continue;
            };
            let attempt = entry.attempt;
            let name = self.paths.get(&abandoned_on).cloned().unwrap_or_default();
            let waited = now.saturating_duration_since(entry.started);
            tracing::warn!(
                "{name}: no answer to a request within its deadline ({:.1} s); fencing the path",
                waited.as_secs_f64()
            );
            self.providers.fence(&name);
            self.abandoned.insert((token, attempt), name);
            self.carry_out(token, done);
        }
        self.drain();
    }

    /// The late answer of an abandoned attempt arrived: once it is the last one out on its
    /// provider, the fence lifts (the path stays FAIL until restored).
    fn late_answer(&mut self, token: u64, attempt: u32) -> bool {
        let Some(name) = self.abandoned.remove(&(token, attempt)) else {
            return false;
        };
        if !self.abandoned.values().any(|n| *n == name) {
            self.providers.unfence(&name);
            tracing::info!("{name}: the late answer arrived; the path may carry requests again");
        }
        true
    }

    fn completion(&mut self, c: Completion) {
        if self.probe_answered(c.token, c.result) {
            return;
        }
        if self.late_answer(c.token, c.attempt) {
            return; // an attempt given up on at its deadline: its answer is discarded
        }
        let Some(entry) = self.inflight.get_mut(&c.token) else {
            return; // answered already
        };
        if c.attempt != entry.attempt {
            return;
        }
        if let (Data::Read { buf, .. }, Some(b)) = (&mut entry.data, c.buf) {
            *buf = Some(b);
        }
        if c.text.is_some() {
            entry.text = c.text;
        }
        let done = self.class.done(&mut entry.bio, c.result);
        self.carry_out(c.token, done);
        self.drain();
    }

    /// Does what the class decided about request `token`: send its next attempt, or
    /// answer it.
    fn carry_out(&mut self, token: u64, done: Done) {
        match done {
            Done::Reissue(path) => {
                if let Some(entry) = self.inflight.get_mut(&token) {
                    entry.attempt += 1;
                }
                self.dispatch(token, path);
            }
            // It waits for a path; `poll_dispatch` brings it back.
            Done::Queued => {}
            Done::Deliver { result, append } => {
                if let Some(mut entry) = self.inflight.remove(&token) {
                    let reply = entry.reply.take().expect("one reply per request");
                    reply(result.map(|()| payload(&mut entry, append)));
                }
            }
        }
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
        let (class, mut topo) = self.class_and_topology(Some((name.to_string(), sector)));
        class.taste(&mut topo, &info, random);
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
            None => {
                self.pending_up.remove(name);
                self.provider_gone(name);
            }
            // A reconnected NBD path whose dead connection is still held (its orphaned
            // consumer waits for requests in flight): the new connection becomes the
            // provider once the old one is let go, never under the old holders.
            Some(up) if self.providers.lingers(name) => {
                self.pending_up.insert(name.to_string(), up);
            }
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

    /// Inserts and tastes the reconnected providers whose predecessors are gone now.
    fn admit_pending(&mut self) {
        let ready: Vec<String> = self
            .pending_up
            .keys()
            .filter(|n| !self.providers.lingers(n))
            .cloned()
            .collect();
        for name in ready {
            if let Some(up) = self.pending_up.remove(&name) {
                self.device_changed(&name, Some(up));
            }
        }
    }

    /// Makes NBD URI `name` a provider if it is not one yet: connects (within the connect
    /// timeout), inserts and tastes it, and keeps it connected from then on. Failure is
    /// logged; the verb that named it then says the provider was not found.
    pub fn attach_nbd(&mut self, name: &str) {
        if !nbd::is_uri(name) || self.providers.info(name).is_some() {
            return;
        }
        let Some(uri) = self.usable_nbd_uri(name) else {
            return;
        };
        // No deadline in the client: the class's io_timeout (and its per-path override)
        // applies to NBD paths as to any other, with fencing before a reissue.
        match self
            .nbd
            .attach(&uri.text, self.handle.clone(), Duration::ZERO)
        {
            Ok((info, device)) => self.device_changed(name, Some((info, Source::Fixed(device)))),
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// Keeps NBD URI `name` connected from now on without waiting for it: it becomes a
    /// provider (and is tasted) whenever its server answers. For the daemon's start-up
    /// paths, whose servers may come up after the daemon.
    pub fn supervise_nbd(&mut self, name: &str) {
        if let Some(uri) = self.usable_nbd_uri(name) {
            if let Err(e) = self
                .nbd
                .supervise(&uri.text, self.handle.clone(), Duration::ZERO)
            {
                tracing::warn!("{e}");
            }
        }
    }

    /// `name` parsed as an NBD URI, unless it is not one or it is this daemon's own export
    /// (a path through itself would loop); says why not.
    fn usable_nbd_uri(&self, name: &str) -> Option<NbdUri> {
        match NbdUri::parse(name) {
            Ok(uri) if self.settings.own_nbd.serves(&uri) => {
                tracing::warn!(
                    "{name}: this is gmultipathd's own NBD export; refusing a path through itself"
                );
                None
            }
            Ok(uri) => Some(uri),
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        }
    }

    /// Attaches the NBD URIs among a request's `argN` parameters.
    fn attach_nbd_args(&mut self, req: &Request) {
        let uris: Vec<String> = req
            .params()
            .iter()
            .filter(|p| {
                p.name
                    .strip_prefix("arg")
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
            .filter_map(|p| p.value.split(|&b| b == 0).next())
            .filter_map(|v| std::str::from_utf8(v).ok())
            .filter(|v| nbd::is_uri(v))
            .map(String::from)
            .collect();
        for uri in uris {
            self.attach_nbd(&uri);
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

    /// Answers one control request.
    pub fn call(&mut self, call: Call) -> Answer {
        match call {
            Call::Ping => Answer::Pong {
                pid: std::process::id(),
            },
            Call::Ctl(mut req) => {
                self.attach_nbd_args(&req);
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
            Call::ProviderInfo { name } => {
                self.attach_nbd(&name);
                match self.providers.info(&name) {
                    Some(i) => Answer::Provider {
                        mediasize: i.mediasize,
                        sectorsize: i.sectorsize,
                    },
                    None => failed(Errno(libc::ENOENT)),
                }
            }
            Call::ProviderRead { name, offset, len } => {
                self.attach_nbd(&name);
                self.provider_io(&name, offset, ProviderOp::Read(len as usize), false)
            }
            Call::ProviderTouch { name, offset, len } => {
                self.attach_nbd(&name);
                self.provider_io(&name, offset, ProviderOp::Read(len as usize), true)
            }
            Call::ProviderWrite { name, offset, data } => {
                self.attach_nbd(&name);
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

    /// The providers with `kind` set, and the values.
    fn per_path(&self, kind: PerPath) -> Vec<(String, u32)> {
        let set: Vec<(&str, u32)> = match kind {
            PerPath::IoTimeout => self.class.io_timeout_overrides().collect(),
            PerPath::QuiesceTime => self.class.quiesce_times().collect(),
        };
        set.into_iter().map(|(p, s)| (p.to_string(), s)).collect()
    }

    fn override_answer(&self, kind: PerPath, provider: &str, old: Option<u32>) -> KnobAnswer {
        let value = self
            .per_path(kind)
            .into_iter()
            .find(|(name, _)| name == provider)
            .map_or(0, |(_, secs)| secs);
        let what = match kind {
            PerPath::IoTimeout => "io_timeout for requests to",
            PerPath::QuiesceTime => "seconds a write may still land after its path failed:",
        };
        KnobAnswer {
            name: format!("{}.{provider}", kind.base()),
            value: u64::from(value),
            old: old.map(u64::from),
            description: format!("{what} {provider}"),
        }
    }

    fn nop_debug_answer(&self, old: Option<u32>) -> KnobAnswer {
        KnobAnswer {
            name: NOP_DEBUG.to_string(),
            value: u64::from(self.nop.debug),
            old: old.map(u64::from),
            description: "Debug level".to_string(),
        }
    }

    /// Every knob, in sysctl -a order: the class's, its per-path overrides, the NOP class's.
    fn all_knobs(&self) -> Vec<KnobAnswer> {
        let mut all: Vec<KnobAnswer> = sysctl::TABLE
            .iter()
            .map(|t| self.knob_answer(t, None))
            .collect();
        for kind in PerPath::ALL {
            for (p, _) in self.per_path(kind) {
                all.push(self.override_answer(kind, &p, None));
            }
        }
        all.push(self.nop_debug_answer(None));
        all
    }

    fn sysctl_get(&self, name: &str) -> Answer {
        select_knobs(self.all_knobs(), name)
    }

    /// Sets `kind` for provider `provider` (the tunables file may name one that appears
    /// later); returns the value that applied before.
    pub fn set_per_path(
        &mut self,
        kind: PerPath,
        provider: &str,
        value: &str,
    ) -> Result<u32, sysctl::SetError> {
        let secs = PerPath::check(value)?;
        Ok(match kind {
            PerPath::IoTimeout => {
                let before = self.class.io_timeout(provider);
                self.class.set_io_timeout_override(provider, Some(secs));
                before
            }
            PerPath::QuiesceTime => {
                let before = self.class.quiesce_time(provider);
                self.class.set_quiesce_time(provider, Some(secs));
                before
            }
        })
    }

    fn sysctl_set(&mut self, name: &str, value: &str) -> Answer {
        if let Some((kind, provider)) = PerPath::parse(name) {
            // Like sysctl(8) on an oid that does not exist: a provider this daemon does not
            // know has no such setting (the tunables file may still name one ahead).
            if self.providers.info(provider).is_none() {
                return failed(Errno(libc::ENOENT));
            }
            return match self.set_per_path(kind, provider, value) {
                Ok(old) => Answer::Sysctl(vec![self.override_answer(kind, provider, Some(old))]),
                Err(e) => Answer::Failed {
                    errno: libc::EINVAL,
                    text: e.to_string(),
                },
            };
        }
        if name == NOP_DEBUG {
            return match value.trim().parse::<u32>() {
                Ok(v) => {
                    let old = std::mem::replace(&mut self.nop.debug, v);
                    Answer::Sysctl(vec![self.nop_debug_answer(Some(old))])
                }
                Err(_) => failed(Errno(libc::EINVAL)),
            };
        }
        let Some(t) = sysctl::lookup(name).filter(|t| t.name == name) else {
            // A node is not a leaf; anything else does not exist.
            return match select_knobs(self.all_knobs(), name) {
                Answer::Sysctl(_) => failed(Errno(libc::ENOTDIR)),
                other => other,
            };
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
            // FreeBSD's first line stays the tool's; the text says which provider holds
            // it, for the tool to add as a second line.
            Err(e) => Answer::Failed {
                errno: e.0,
                text: self.open_providers(),
            },
        }
    }

    /// `multipath/FRED is open (r1w1e0).` for each open multipath provider, one a line.
    fn open_providers(&self) -> String {
        self.class
            .geoms()
            .filter_map(|g| self.class.geom(g))
            .filter(|v| v.access_counts() != (0, 0, 0))
            .map(|v| {
                let (r, w, e) = v.access_counts();
                format!("multipath/{} is open (r{r}w{w}e{e}).", v.name())
            })
            .collect::<Vec<_>>()
            .join("\n")
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
        let Some(info) = self.providers.info(name) else {
            return failed(Errno(libc::ENOENT));
        };
        // One answer frame holds at most PROVIDER_IO_MAX bytes; a request for more, for
        // nothing, or past the end is the caller's mistake, said as such.
        let len = match &op {
            ProviderOp::Read(len) => *len as u64,
            ProviderOp::Write(data) => data.len() as u64,
        };
        if len == 0
            || len > PROVIDER_IO_MAX
            || offset
                .checked_add(len)
                .is_none_or(|end| end > info.mediasize)
        {
            return Answer::Failed {
                errno: libc::EINVAL,
                text: format!(
                    "{name}: {len} bytes at {offset}: the length must be 1 to \
                     {PROVIDER_IO_MAX} bytes within the provider's {} bytes",
                    info.mediasize
                ),
            };
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

    /// Gives geom `name` (now, or when it appears) a `configure` setting from the tunables
    /// file; the value was checked when the file was read.
    pub fn preset_geom(
        &mut self,
        name: &str,
        setting: geom_multipath::settings::Setting,
        value: &str,
    ) {
        if self.class.preset(name, setting, value).is_err() {
            tracing::warn!("{name}: invalid {} value '{value}'", setting.param());
        }
        self.drain();
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
        text: geom_multipath_sys::strerror(e.0),
    }
}

/// What a delivered request hands back.
fn payload(entry: &mut InFlight, append: Option<&'static str>) -> IoReply {
    match entry.bio.op {
        Op::Read | Op::Write => match std::mem::replace(&mut entry.data, Data::None) {
            Data::Read { buf: Some(buf), .. } => IoReply::Data(buf),
            // A hung attempt may still hold the bytes: copy them rather than wait.
            Data::Write(bytes) => IoReply::Data(
                Arc::try_unwrap(bytes).unwrap_or_else(|b| IoBuf::from_slice(b.as_slice())),
            ),
            Data::Read { buf: None, .. } | Data::None => IoReply::Done,
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

    fn exports(&self) -> std::sync::RwLockWriteGuard<'_, crate::msg::exports::Exports> {
        self.exports.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Topology for HostTopology<'_> {
    fn provider(&self, name: &str) -> Option<ProviderInfo> {
        self.providers.info(name).cloned()
    }

    fn ident(&self, name: &str) -> Option<String> {
        self.providers.ident(name)
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
        let wake = owner
            .next_deadline()
            .map_or(next_check, |d| d.min(next_check));
        let wait = wake.saturating_duration_since(Instant::now());
        // Rounded up, so the loop never wakes just before a deadline and spins.
        let millis = wait.as_micros().div_ceil(1000).min(60_000) as u32;
        let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
        owner.workers.flush();
        // Which descriptors woke the loop: the sources are read only when one of theirs
        // did (reading them costs three system calls and, for inotify, zeroing a 4 KiB
        // buffer: bench/profile.sh counted that at 42 % of the daemon's instructions per
        // NBD request at QD1), the inbox's eventfd only when it was signalled.
        let (inbox_woke, sources_woke) = {
            let extra = sources.fds();
            let first_extra = 1 + usize::from(owner.workers.ring_fd().is_some());
            let mut fds: Vec<PollFd<'_>> = std::iter::once(inbox.waker.as_fd())
                .chain(owner.workers.ring_fd())
                .chain(extra)
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
                .collect();
            let polled = poll(&mut fds, timeout).is_ok();
            let woke = |fd: &PollFd<'_>| fd.revents().is_none_or(|r| !r.is_empty());
            (
                !polled || woke(&fds[0]),
                !polled || fds[first_extra..].iter().any(woke),
            )
        };
        if sources_woke {
            sources.ready(owner);
        }
        owner.reap_ring();
        if inbox_woke {
            inbox.acknowledge();
        }
        while let Ok(msg) = inbox.rx.try_recv() {
            if matches!(msg, Msg::Call { .. }) {
                sources.ready(owner);
            }
            owner.handle(msg);
            if owner.stopping() {
                break;
            }
        }
        owner.expire(Instant::now());
        if Instant::now() >= next_check {
            next_check = Instant::now() + CHECK_INTERVAL;
            sources.tick(owner);
        }
    }
}

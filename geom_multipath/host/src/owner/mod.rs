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
//!
//! The room, by concern: this file holds the [`Owner`], its loop ([`run`]) and the drain
//! of the class's pollers; `data_path` serves requests (route, attempt, complete, reissue,
//! deliver, and requests that waited for a path); `checker` issues the core's path
//! probes; `deadlines` carries out the core's I/O deadline (fence, discard the late
//! answer); `topology` is the class's view of the host and the host's device events;
//! `control_calls` answers the control socket; `gnop_host` is the NOP class's view of
//! the provider table; [`providers`] is that table (GEOM's providers with their access
//! counts); [`console`] prints what the class says. It is the only code that calls the
//! core; it touches no socket of an export and waits for no client.

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
use crate::owner::providers::{Consumer, ProviderTable};
use crate::path::device::{Device, IoBuf, Source};
use crate::path::nbd::{self, NbdPaths, NbdUri, Transport};
use crate::path::workers::{Work, WorkBuf, WorkOp, Workers};
use crate::sys::idhash::IdMap;

mod checker;
mod control_calls;
mod data_path;
mod deadlines;
mod gnop_host;
mod topology;

pub mod console;
pub mod metrics_file;
pub mod providers;

pub use control_calls::{select_knobs, PerPath, NOP_DEBUG, PROVIDER_IO_MAX};
use deadlines::Abandoned;
use gnop_host::{NopAdapter, NopChange, NopView};
use topology::{blocking, HostTopology};

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
    /// `--metrics-file`: where the counters are rewritten periodically.
    metrics_file: Option<metrics_file::MetricsFile>,
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
            metrics_file: None,
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
        let wake = [owner.next_deadline(), owner.metrics_due()]
            .into_iter()
            .flatten()
            .fold(next_check, Instant::min);
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
        owner.write_metrics_if_due(Instant::now());
        if Instant::now() >= next_check {
            next_check = Instant::now() + CHECK_INTERVAL;
            sources.tick(owner);
        }
    }
}

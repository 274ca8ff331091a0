//! The MULTIPATH class: its geoms (FreeBSD's softc), their paths (consumers), and the small
//! decisions every other module builds on — `good`, `fault`, `choose`, `rotate`, `find` —
//! each mirroring one function of `g_multipath.c`.
//!
//! The invariant this module keeps: every geom's path list is in kernel order (newest
//! first), `ndisks` counts its attached paths that are not LOST, and `active` is either
//! `None` or a path of that geom.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use geom_multipath_sysctl::Values;

use crate::event::{Event, Level, Message, Probe};
use crate::health::{Check, Health};
use crate::queue::{Dispatch, Waiting};
use crate::settings::{Selector, Settings};
use crate::slab::Slab;
use crate::state::{GeomState, GeomType, Mode, PathState};
use crate::stats::{GeomStats, PathStats};
use crate::timer::{Stamp, Time, Timers};
use crate::topology::{Deferred, GeomId, PathId};

/// Path flag: failed by an I/O error or the `fail` verb (`MP_FAIL`).
pub(crate) const FAIL: u8 = 0x01;
/// Path flag: removed or disconnected, detached once idle (`MP_LOST`).
pub(crate) const LOST: u8 = 0x02;
/// Path flag: being attached (`MP_NEW`).
pub(crate) const NEW: u8 = 0x04;
/// Path flag: its detach has been posted (`MP_POSTED`).
pub(crate) const POSTED: u8 = 0x08;
/// Path flag: access dropped, detach re-posted behind the re-taste (`MP_WITHER`).
pub(crate) const WITHER: u8 = 0x10;
/// A path with any of these flags carries no requests (`MP_BAD`).
pub(crate) const BAD: u8 = FAIL | LOST | NEW;

/// The multipath provider (`sc_pp`): geometry and the access counts GEOM keeps for it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Provider {
    pub(crate) mediasize: u64,
    pub(crate) sectorsize: u32,
    pub(crate) stripesize: u64,
    pub(crate) stripeoffset: u64,
    pub(crate) acr: i32,
    pub(crate) acw: i32,
    pub(crate) ace: i32,
    /// Withered by a destroy while open: new requests fail with ENXIO.
    pub(crate) withered: bool,
}

/// One geom: FreeBSD's `struct g_multipath_softc` plus the geom's consumer list.
#[derive(Debug)]
pub(crate) struct Geom {
    pub(crate) name: String,
    /// Empty for a MANUAL geom.
    pub(crate) uuid: String,
    pub(crate) mode: Mode,
    pub(crate) active: Option<PathId>,
    /// Attached paths that are not LOST.
    pub(crate) ndisks: u32,
    /// Sum of the provider's access counts (`sc_opened`).
    pub(crate) opened: i32,
    pub(crate) stopping: bool,
    /// Size of one whole path (`sc_size`), 0 until known.
    pub(crate) size: u64,
    pub(crate) provider: Provider,
    /// The paths' routing state, in attach order (oldest first): kernel order, newest
    /// first, is this list read backwards. Kept here, contiguous, because routing in
    /// Active/Active scans all of it for every request.
    pub(crate) members: Vec<Member>,
    /// The `configure` extensions set on this geom.
    pub(crate) settings: Settings,
    /// The path last named by `prefer` (failback's first rank).
    pub(crate) preferred: Option<PathId>,
    /// When the checker next probes the paths (`None`: not armed).
    pub(crate) next_check: Option<u64>,
    /// When the service-time selector next samples the paths' throughput.
    pub(crate) next_sample: Option<u64>,
    /// Round-robin: the member that takes requests, and how many more it takes.
    pub(crate) rr_cursor: usize,
    pub(crate) rr_left: u32,
    /// Requests waiting for a usable path.
    pub(crate) waiting: Waiting,
    /// Lost its last path while queueing: destroyed then unless a path returns.
    pub(crate) linger: Option<Stamp>,
    /// What its requests did (an extension, [`crate::stats`]).
    pub(crate) stats: GeomStats,
}

impl Geom {
    /// The selector routing uses.
    pub(crate) fn selector(&self) -> Selector {
        self.settings.selector.unwrap_or_default()
    }
}

/// The part of a path routing reads and writes on every request: FreeBSD keeps it in the
/// consumer's `index` (flags and idle age) and `private` (requests in flight).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    pub(crate) id: PathId,
    pub(crate) flags: u8,
    /// Requests chosen since this path was last chosen (the idle age in `cp->index`).
    pub(crate) idle: u32,
    /// Requests in flight on this path (`cp->private`).
    pub(crate) inflight: u32,
    /// Bytes in flight on this path (the service-time selector).
    pub(crate) outstanding: u64,
    /// Bytes completed since the last throughput sample.
    pub(crate) completed: u64,
    /// Measured throughput in bytes per millisecond; 0 until measured.
    pub(crate) rate: u64,
}

impl Member {
    /// A path's routing state as it is attached: flagged, nothing in flight, unmeasured.
    pub(crate) fn new(id: PathId, flags: u8) -> Member {
        Member {
            id,
            flags,
            idle: 0,
            inflight: 0,
            outstanding: 0,
            completed: 0,
            rate: 0,
        }
    }
}

impl Member {
    pub(crate) fn is_good(&self) -> bool {
        self.flags & BAD == 0
    }
}

/// One path: a consumer of the geom and a copy of its provider's geometry.
#[derive(Debug)]
pub(crate) struct Path {
    pub(crate) geom: GeomId,
    /// The provider's name (`cp->provider->name`).
    pub(crate) name: String,
    pub(crate) mediasize: u64,
    pub(crate) sectorsize: u32,
    pub(crate) rank: u32,
    /// Where its [`Member`] is in its geom's list.
    pub(crate) index: usize,
    pub(crate) acr: i32,
    pub(crate) acw: i32,
    pub(crate) ace: i32,
    /// Its provider went away (`G_CF_ORPHAN`).
    pub(crate) orphaned: bool,
    /// The disk's identity as the provider gave it when the path was attached
    /// ([`Topology::ident`](crate::Topology::ident)).
    pub(crate) ident: Option<String>,
    /// What the checker, anti-flap and failback know about it.
    pub(crate) health: Health,
    /// What its attempts did (an extension, [`crate::stats`]); boxed for its histograms.
    pub(crate) stats: Box<PathStats>,
}

/// The MULTIPATH class: every multipath geom, the tunables, and what the class has to say.
///
/// # Methods, by kind
/// * **Getters** (no effect): [`geoms`](Class::geoms), [`geom`](Class::geom),
///   [`path`](Class::path), [`find_geom`](Class::find_geom),
///   [`paths_on_provider`](Class::paths_on_provider), [`tunables`](Class::tunables),
///   [`geom_state`](Class::geom_state), [`path_state`](Class::path_state), the dumpconf
///   writers, the counters ([`path_stats`](Class::path_stats),
///   [`geom_stats`](Class::geom_stats), [`clock`](Class::clock)).
/// * **Inputs, data path** (never allocate on success, O(paths)):
///   [`start`](Class::start) routes a request, [`done_at`](Class::done_at) (or, for a
///   driver without a clock, [`done`](Class::done)) completes one; both count it;
///   [`start_or_queue`](Class::start_or_queue) is `start` for a driver that carries out
///   queueing, [`handle_check_done`](Class::handle_check_done) answers a probe.
/// * **Inputs, topology** (take a [`Topology`](crate::Topology)): [`taste`](Class::taste),
///   [`orphan`](Class::orphan), [`resize`](Class::resize), [`access`](Class::access),
///   [`run_deferred`](Class::run_deferred).
/// * **Commands**: [`ctl`](Class::ctl) (every verb, FreeBSD's `g_multipath_config`),
///   [`destroy_all`](Class::destroy_all) (module unload), [`reset_stats`](Class::reset_stats)
///   and [`observe_states`](Class::observe_states) (the counters).
/// * **Timers** (the fixed table of [`Timer`](crate::Timer)s, [`crate::timer`]):
///   [`arm_deadline`](Class::arm_deadline) when an attempt is sent,
///   [`poll_timeout`](Class::poll_timeout) for when to wake,
///   [`handle_timeout`](Class::handle_timeout) when that time has come.
/// * **Pollers**: [`poll_expired`](Class::poll_expired) (attempts given up on at their
///   deadline), [`poll_dispatch`](Class::poll_dispatch) (waiting requests to issue or
///   fail), [`poll_check`](Class::poll_check) (probes to issue),
///   [`poll_event`](Class::poll_event) (console messages and probes) and
///   [`poll_deferred`](Class::poll_deferred) (work to run later).
///
/// # Driving it
/// One owner calls it with `&mut self` (the kmod under its softc mutex, the host from one
/// thread). After every input or command the driver drains, in this order:
/// 1. after `handle_timeout`, `poll_expired` until `None`, carrying each out (keep the
///    abandoned path from carrying requests until its late answer is back; reissue or
///    deliver as the [`Done`](crate::Done) says);
/// 2. `poll_dispatch` until `None` (issue each waiting request on its path, armed like any
///    attempt, or answer it), then `poll_check` until `None` (issue each probe: one direct
///    read under the path's I/O deadline, answered with `handle_check_done`) — both empty
///    unless an extension is on;
/// 3. `poll_event` until `None`, printing messages and firing probes;
/// 4. `poll_deferred` until `None`, appending each item to its FIFO of framework events
///    behind anything the input itself queued (a re-taste after a write-close), and later
///    feeding each back through `run_deferred` (then draining again);
/// 5. `poll_timeout`, to know when to call `handle_timeout` next.
pub struct Class {
    pub(crate) geoms: Slab<Geom>,
    /// Geoms in kernel order: newest first.
    pub(crate) geom_order: Vec<GeomId>,
    pub(crate) paths: Slab<Path>,
    pub(crate) tunables: Values,
    pub(crate) events: VecDeque<Event>,
    pub(crate) deferred: VecDeque<Deferred>,
    /// The fixed timer table and what hangs on it (see [`crate::timer`]).
    pub(crate) timers: Timers,
    /// Probes the checker wants issued.
    pub(crate) checks: VecDeque<Check>,
    /// Waiting requests to issue or fail.
    pub(crate) dispatch: VecDeque<Dispatch>,
    /// The time of the last `handle_timeout`, in nanoseconds.
    pub(crate) now: u64,
    /// Something was stamped relative to a time the class does not know yet: the next
    /// `handle_timeout` is due now.
    pub(crate) clock_wanted: bool,
    /// Requests waiting for a path, over every geom.
    pub(crate) waiting_total: usize,
    /// `configure` settings the driver keeps across restarts, by geom name: a geom of that
    /// name starts with them ([`Class::preset`]).
    pub(crate) presets: alloc::collections::BTreeMap<String, Settings>,
    /// The driver calls `poll_timeout`/`handle_timeout` and carries out probes and
    /// queueing; `false` for one that does not (see [`Class::untimed`]).
    pub(crate) timed: bool,
    /// The latest time a driver gave (the counters' clock, [`crate::stats`]).
    pub(crate) clock: Option<Time>,
}

impl Default for Class {
    fn default() -> Self {
        Class::new(Values::default())
    }
}

impl Class {
    /// A class with no geoms and the given tunables (FreeBSD's `g_multipath_init`).
    pub fn new(tunables: Values) -> Self {
        Class {
            geoms: Slab::new(),
            geom_order: Vec::new(),
            paths: Slab::new(),
            tunables,
            events: VecDeque::new(),
            deferred: VecDeque::new(),
            timers: Timers::default(),
            checks: VecDeque::new(),
            dispatch: VecDeque::new(),
            now: 0,
            clock_wanted: false,
            waiting_total: 0,
            presets: alloc::collections::BTreeMap::new(),
            timed: true,
            clock: None,
        }
    }

    /// The class for a driver that does not drive the timer table's extensions nor carry
    /// out probes and queueing (the kernel module, today): `configure` then refuses the
    /// settings that would need them (a check interval, reinstatement, a queue timeout,
    /// deferred failback, the service-time selector, which measures throughput on a timer)
    /// instead of accepting settings that would do nothing.
    pub fn untimed(mut self) -> Class {
        self.timed = false;
        self
    }

    // ----- getters -----------------------------------------------------------------------

    /// The tunables the class reads.
    pub fn tunables(&self) -> &Values {
        &self.tunables
    }

    /// The tunables, for a sysctl write. Like FreeBSD's, `exclusive` only affects paths
    /// attached afterwards.
    pub fn tunables_mut(&mut self) -> &mut Values {
        &mut self.tunables
    }

    /// Every geom, stopping ones included, in kernel order (newest first).
    pub fn geoms(&self) -> impl Iterator<Item = GeomId> + '_ {
        self.geom_order.iter().copied()
    }

    /// A read-only view of one geom, if it still exists.
    pub fn geom(&self, id: GeomId) -> Option<GeomView<'_>> {
        self.geoms.get(id.0).map(|geom| GeomView {
            class: self,
            id,
            geom,
        })
    }

    /// A read-only view of one path, if it is still attached.
    pub fn path(&self, id: PathId) -> Option<PathView<'_>> {
        self.paths.get(id.0).map(|path| PathView {
            id,
            path,
            member: &self.live_geom(path.geom).members[path.index],
        })
    }

    /// `g_multipath_find_geom`: the geom called `name` (exact match, no `/dev/` stripping),
    /// skipping geoms that are being destroyed.
    pub fn find_geom(&self, name: &str) -> Option<GeomId> {
        self.geom_order.iter().copied().find(|&id| {
            let g = self.live_geom(id);
            !g.stopping && g.name == name
        })
    }

    /// The paths attached to provider `name` whose provider has not gone away: what GEOM's
    /// orphan and resize events for that provider reach, and what makes a taste skip it.
    pub fn paths_on_provider<'a>(&'a self, name: &'a str) -> impl Iterator<Item = PathId> + 'a {
        self.geom_order.iter().flat_map(move |&gid| {
            self.order(gid).filter(move |&pid| {
                let p = self.live_path(pid);
                !p.orphaned && p.name == name
            })
        })
    }

    /// The geom's `State` (dumpconf): BROKEN with no good path, DEGRADED when some path is
    /// not good or there is only one, else OPTIMAL.
    pub fn geom_state(&self, id: GeomId) -> Option<GeomState> {
        let g = self.geoms.get(id.0)?;
        let good = self.good(id);
        Some(if good == 0 {
            GeomState::Broken
        } else if good != g.ndisks || g.ndisks == 1 {
            GeomState::Degraded
        } else {
            GeomState::Optimal
        })
    }

    /// The path's `State` (dumpconf), in FreeBSD's priority order.
    pub fn path_state(&self, id: PathId) -> Option<PathState> {
        let p = self.paths.get(id.0)?;
        let g = self.live_geom(p.geom);
        let flags = g.members[p.index].flags;
        Some(if flags & NEW != 0 {
            PathState::New
        } else if flags & LOST != 0 {
            PathState::Lost
        } else if flags & FAIL != 0 && p.health.held() {
            PathState::Held
        } else if flags & FAIL != 0 {
            PathState::Fail
        } else if g.mode == Mode::ActiveActive || g.active == Some(id) {
            PathState::Active
        } else if g.mode == Mode::ActiveRead {
            PathState::Read
        } else {
            PathState::Passive
        })
    }

    // ----- pollers -----------------------------------------------------------------------

    /// The next console message or probe, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next piece of deferred work, oldest first.
    pub fn poll_deferred(&mut self) -> Option<Deferred> {
        self.deferred.pop_front()
    }

    // ----- internals shared by the other modules ------------------------------------------

    /// The geom behind a live id. Ids handed out by the class stay valid until the class
    /// itself removes the object, so a miss is a bug in the class.
    pub(crate) fn live_geom(&self, id: GeomId) -> &Geom {
        self.geoms.get(id.0).expect("live geom id")
    }

    /// The geom behind a live id, for a change.
    pub(crate) fn live_geom_mut(&mut self, id: GeomId) -> &mut Geom {
        self.geoms.get_mut(id.0).expect("live geom id")
    }

    /// The path behind a live id (its consumer and geometry; routing state is in
    /// [`member`](Class::member)).
    pub(crate) fn live_path(&self, id: PathId) -> &Path {
        self.paths.get(id.0).expect("live path id")
    }

    /// The path behind a live id, for a change.
    pub(crate) fn live_path_mut(&mut self, id: PathId) -> &mut Path {
        self.paths.get_mut(id.0).expect("live path id")
    }

    /// The routing state of a live path (flags, idle age, requests in flight).
    pub(crate) fn member(&self, id: PathId) -> &Member {
        let p = self.live_path(id);
        &self.live_geom(p.geom).members[p.index]
    }

    /// The routing state of a live path, for a change.
    pub(crate) fn member_mut(&mut self, id: PathId) -> &mut Member {
        let (geom, index) = {
            let p = self.live_path(id);
            (p.geom, p.index)
        };
        &mut self.live_geom_mut(geom).members[index]
    }

    /// A geom's paths in kernel order: newest first.
    pub(crate) fn order(&self, geom: GeomId) -> impl Iterator<Item = PathId> + '_ {
        self.live_geom(geom).members.iter().rev().map(|m| m.id)
    }

    /// A geom's paths in kernel order, as a list (for loops that change the class).
    pub(crate) fn order_vec(&self, geom: GeomId) -> Vec<PathId> {
        self.order(geom).collect()
    }

    /// Queues a console message; debug-level ones only while `kern.geom.multipath.debug`
    /// is non-zero.
    pub(crate) fn log(&mut self, message: Message) {
        if message.level() == Level::Debug && self.tunables.debug() == 0 {
            return;
        }
        self.events.push_back(Event::Log(message));
    }

    pub(crate) fn probe(&mut self, probe: Probe) {
        self.events.push_back(Event::Probe(probe));
    }

    /// `g_post_event(g_mpd, cp)`.
    pub(crate) fn post_detach(&mut self, path: PathId) {
        self.deferred.push_back(Deferred::Detach(path));
    }

    // ----- FreeBSD's decisions ------------------------------------------------------------

    /// `g_multipath_good`: how many paths of the geom can carry requests.
    pub(crate) fn good(&self, geom: GeomId) -> u32 {
        let count = self
            .live_geom(geom)
            .members
            .iter()
            .filter(|m| m.is_good())
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// The first good path in kernel order.
    fn first_good(&self, geom: GeomId) -> Option<PathId> {
        self.live_geom(geom)
            .members
            .iter()
            .rev()
            .find(|m| m.is_good())
            .map(|m| m.id)
    }

    /// `g_multipath_fault`: mark `path` with `cause` (FAIL or LOST). If that leaves no good
    /// path, restore every other usable path (all of them, the faulted one too, when it is
    /// the only disk). If the faulted path was active, elect the first good path in kernel
    /// order.
    pub(crate) fn fault(&mut self, path: PathId, cause: u8) {
        let gid = self.live_path(path).geom;
        if self.member(path).is_good() {
            self.note_failure(path);
        }
        self.member_mut(path).flags |= cause;
        let ndisks = self.live_geom(gid).ndisks;
        if self.good(gid) == 0 && ndisks > 0 && !self.holds_failed(gid) {
            for lcp in self.order_vec(gid) {
                if self.member(lcp).flags & (LOST | NEW) != 0 || (ndisks > 1 && lcp == path) {
                    continue;
                }
                let (geom, name) = (
                    self.live_geom(gid).name.clone(),
                    self.live_path(lcp).name.clone(),
                );
                self.log(Message::AllFailedRestore {
                    geom: geom.clone(),
                    path: name.clone(),
                });
                self.probe(Probe::Restore { geom, path: name });
                self.member_mut(lcp).flags &= !FAIL;
                self.note_restored(lcp);
                let h = &mut self.live_path_mut(lcp).health;
                h.admin_failed = false;
                h.hold = None;
            }
        }
        if self.live_geom(gid).active != Some(path) {
            return;
        }
        self.note_failover(path);
        let next = self.first_good(gid);
        self.live_geom_mut(gid).active = next;
        let geom = self.live_geom(gid).name.clone();
        match next {
            None => self.log(Message::OutOfProviders { geom }),
            Some(next) if self.live_geom(gid).mode != Mode::ActiveActive => {
                let path = self.live_path(next).name.clone();
                self.log(Message::NowActive { path, geom });
            }
            Some(_) => {}
        }
    }

    /// `g_multipath_choose`: the path for a request of `length` bytes. Active/Passive, and
    /// non-reads in Active/Read, take the active path. Otherwise the geom's selector picks
    /// among the good paths; FreeBSD's (the default) is [`least_busy`](Class::least_busy).
    pub(crate) fn choose(&mut self, geom: GeomId, is_read: bool, length: u64) -> Option<PathId> {
        let g = self.geoms.get_mut(geom.0)?;
        if g.mode == Mode::ActivePassive || (g.mode == Mode::ActiveRead && !is_read) {
            return g.active;
        }
        match g.selector() {
            Selector::LeastBusy => Self::least_busy(&mut g.members),
            Selector::RoundRobin(batch) => Self::round_robin(g, batch),
            Selector::ServiceTime => Self::service_time(&mut g.members, length),
        }
    }

    /// FreeBSD's choice: every good path ages by one step and the one with the fewest
    /// requests in flight wins, the longest-idle on a tie (so light load round-robins); the
    /// winner's age resets.
    fn least_busy(members: &mut [Member]) -> Option<PathId> {
        // Kernel order (newest first) is the list backwards. This loop is the whole cost of
        // routing in Active/Active, and in the kernel it runs in g_down.
        let mut best = usize::MAX;
        let (mut best_inflight, mut best_idle) = (u32::MAX, 0u32);
        for (i, m) in members.iter_mut().enumerate().rev() {
            if m.flags & BAD != 0 {
                continue;
            }
            m.idle = m.idle.wrapping_add(1);
            if m.inflight < best_inflight || (m.inflight == best_inflight && m.idle > best_idle) {
                best = i;
                best_inflight = m.inflight;
                best_idle = m.idle;
            }
        }
        let winner = members.get_mut(best)?;
        winner.idle = 0;
        Some(winner.id)
    }

    /// `g_multipath_rotate`: make the first good path after the active one (kernel order,
    /// wrapping) active. Nothing changes if no other path is good.
    pub(crate) fn rotate(&mut self, geom: GeomId) {
        let g = self.live_geom(geom);
        let mut first_good = None;
        let mut active_seen = false;
        let mut next = None;
        for m in g.members.iter().rev() {
            let pid = m.id;
            if m.is_good() {
                if first_good.is_none() {
                    first_good = Some(pid);
                }
                if active_seen {
                    next = Some(pid);
                    break;
                }
            }
            if g.active == Some(pid) {
                active_seen = true;
            }
        }
        let Some(next) = next.or(first_good) else {
            return;
        };
        if g.active == Some(next) {
            return;
        }
        let mode = g.mode;
        self.live_geom_mut(geom).active = Some(next);
        if mode != Mode::ActiveActive {
            let (path, geom) = (
                self.live_path(next).name.clone(),
                self.live_geom(geom).name.clone(),
            );
            self.log(Message::NowActive { path, geom });
        }
    }
}

/// A read-only view of one geom.
#[derive(Clone, Copy)]
pub struct GeomView<'a> {
    class: &'a Class,
    id: GeomId,
    geom: &'a Geom,
}

impl<'a> GeomView<'a> {
    /// The geom's id.
    pub fn id(&self) -> GeomId {
        self.id
    }
    /// The geom name (`FRED`); the provider is `multipath/<name>`.
    pub fn name(&self) -> &'a str {
        &self.geom.name
    }
    /// The label's UUID, empty for a MANUAL geom.
    pub fn uuid(&self) -> &'a str {
        &self.geom.uuid
    }
    /// MANUAL or AUTOMATIC.
    pub fn geom_type(&self) -> GeomType {
        if self.geom.uuid.is_empty() {
            GeomType::Manual
        } else {
            GeomType::Automatic
        }
    }
    /// Active/Passive, Active/Active or Active/Read.
    pub fn mode(&self) -> Mode {
        self.geom.mode
    }
    /// OPTIMAL, DEGRADED or BROKEN.
    pub fn state(&self) -> GeomState {
        self.class.geom_state(self.id).unwrap_or(GeomState::Broken)
    }
    /// The active path, if any.
    pub fn active(&self) -> Option<PathId> {
        self.geom.active
    }
    /// Attached paths that are not LOST.
    pub fn ndisks(&self) -> u32 {
        self.geom.ndisks
    }
    /// Paths in kernel order (newest first).
    pub fn paths(&self) -> impl Iterator<Item = PathId> + 'a {
        self.geom.members.iter().rev().map(|m| m.id)
    }
    /// Being destroyed: invisible to verbs and taste.
    pub fn stopping(&self) -> bool {
        self.geom.stopping
    }
    /// The provider's media size in bytes (0 until the first path arrives).
    pub fn mediasize(&self) -> u64 {
        self.geom.provider.mediasize
    }
    /// The provider's sector size.
    pub fn sectorsize(&self) -> u32 {
        self.geom.provider.sectorsize
    }
    /// The provider's stripe size and offset.
    pub fn stripe(&self) -> (u64, u64) {
        (
            self.geom.provider.stripesize,
            self.geom.provider.stripeoffset,
        )
    }
    /// The provider's access counts (r, w, e).
    pub fn access_counts(&self) -> (i32, i32, i32) {
        let p = &self.geom.provider;
        (p.acr, p.acw, p.ace)
    }
    /// The provider was withered by a destroy while open.
    pub fn withered(&self) -> bool {
        self.geom.provider.withered
    }
    /// The `configure` extensions set on the geom.
    pub fn settings(&self) -> Settings {
        self.geom.settings
    }
    /// The selector that spreads its requests.
    pub fn selector(&self) -> Selector {
        self.geom.selector()
    }
    /// The path last named by `prefer`, if still attached.
    pub fn preferred(&self) -> Option<PathId> {
        self.geom.preferred
    }
}

/// A read-only view of one path.
#[derive(Clone, Copy)]
pub struct PathView<'a> {
    id: PathId,
    path: &'a Path,
    member: &'a Member,
}

impl<'a> PathView<'a> {
    /// The path's id.
    pub fn id(&self) -> PathId {
        self.id
    }
    /// The geom the path belongs to.
    pub fn geom(&self) -> GeomId {
        self.path.geom
    }
    /// Its provider's name (`da0`).
    pub fn name(&self) -> &'a str {
        &self.path.name
    }
    /// Its provider's media size.
    pub fn mediasize(&self) -> u64 {
        self.path.mediasize
    }
    /// Its provider's sector size.
    pub fn sectorsize(&self) -> u32 {
        self.path.sectorsize
    }
    /// Requests in flight on the path.
    pub fn inflight(&self) -> u32 {
        self.member.inflight
    }
    /// The consumer's access counts (r, w, e).
    pub fn access_counts(&self) -> (i32, i32, i32) {
        (self.path.acr, self.path.acw, self.path.ace)
    }
    /// Not FAIL, LOST or NEW.
    pub fn is_good(&self) -> bool {
        self.member.is_good()
    }
    /// Marked FAIL.
    pub fn is_failed(&self) -> bool {
        self.member.flags & FAIL != 0
    }
    /// Marked LOST (removed or disconnected, waiting to be detached).
    pub fn is_lost(&self) -> bool {
        self.member.flags & LOST != 0
    }
    /// Its provider went away.
    pub fn is_orphaned(&self) -> bool {
        self.path.orphaned
    }
    /// A probe of the checker is in flight on it.
    pub fn is_probing(&self) -> bool {
        self.path.health.probing
    }
    /// Failed by the `fail` verb (never reinstated by a probe).
    pub fn is_admin_failed(&self) -> bool {
        self.member.flags & FAIL != 0 && self.path.health.admin_failed
    }
    /// Held out by the anti-flap rule.
    pub fn is_held(&self) -> bool {
        self.path.health.held()
    }
    /// Bytes in flight on it.
    pub fn outstanding(&self) -> u64 {
        self.member.outstanding
    }
}

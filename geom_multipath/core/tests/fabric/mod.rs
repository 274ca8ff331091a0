//! A simulated fabric for the MULTIPATH core, in the style of quinn-proto's test `Pair`.
//!
//! A [`Fabric`] owns a [`Class`], the in-memory framework ([`MemTopology`]) and one 1 MiB
//! disk reachable through N providers `md0`…`md{N-1}`, assembled into the geom `FRED` by the
//! `create` verb or by `label` + taste, and held open the way a filesystem holds it. Time is a
//! virtual clock in nanoseconds. Every provider has a latency and an [`Outcome`] (answer,
//! fail with an errno, or hang); a timeline of scripted [`Action`]s changes outcomes, runs
//! verbs, makes providers vanish (→ [`Class::orphan`]) and come back (→ taste), and submits
//! requests. Requests are routed with [`Class::start`]; each attempt completes on its path
//! after the path's latency, and [`Class::done`] is called, following `Reissue`. Every
//! attempt sent is armed with [`Class::arm_deadline`], and the class's timer table
//! ([`Class::poll_timeout`]) is one more source of steps: when it falls due before the
//! next scheduled event, [`Class::handle_timeout`] runs and each attempt given up on is
//! abandoned (its late answer never comes back to the class) and carried out.
//!
//! The fabric owns the driver's side of the contract and nothing of the class's decisions:
//! it never chooses a path itself. What it does own are the **invariants**, checked after
//! every step (see [`Fabric::check_invariants`]); a violation panics with a dump of the
//! whole fabric. It is deterministic: events at the same instant run in the order they were
//! scheduled.
#![allow(dead_code)] // each test binary uses its own part of the fabric

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use geom_multipath::testkit::{test_uuid, MemTopology};
use geom_multipath::wire::Reply;
use geom_multipath::{
    Bio, Check, Class, Dispatch, Done, Errno, Event, Expired, GeomId, Message, Mode, Op, PathId,
    Probe, Selector, Started, Time, Timer,
};

/// Size of the one disk behind every path.
pub const MIB: u64 = 1 << 20;
/// Its sector size.
pub const SECTOR: u32 = 512;
/// The geom every fabric builds.
pub const GEOM: &str = "FRED";
/// Latency of a provider nobody configured: 100 µs.
pub const DEFAULT_LATENCY: u64 = 100_000;
/// One millisecond in fabric time.
pub const MS: u64 = 1_000_000;
/// One microsecond in fabric time.
pub const US: u64 = 1_000;
/// One second in fabric time.
pub const SEC: u64 = 1_000_000_000;
/// The I/O deadline the fabric's driver puts on a probe of a hanging provider: 1 s.
pub const PROBE_DEADLINE: u64 = SEC;
/// The slack allowed on a timer: requests end within their queue timeout plus this.
pub const TICK: u64 = MS;

/// How the fabric assembles its geom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assembly {
    /// `gmultipath create`: a MANUAL geom; a provider that comes back is re-`add`ed.
    Create,
    /// `gmultipath label` then taste of every provider: an AUTOMATIC geom; a provider that
    /// comes back is tasted and rejoins by UUID.
    Label,
}

/// How attempts on a provider complete from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The provider answers successfully.
    Answer,
    /// The provider answers with this error.
    Fail(Errno),
    /// The provider stops answering; attempts are held until the outcome changes.
    Hang,
}

/// Something the timeline does at a given instant.
#[derive(Clone, Debug)]
pub enum Action {
    /// A client submits a request.
    Submit {
        /// The command.
        op: Op,
        /// Byte offset.
        offset: u64,
        /// Byte length.
        length: u64,
    },
    /// From now on, attempts on `provider` complete with `outcome`.
    SetOutcome {
        /// Provider name.
        provider: String,
        /// What its attempts do.
        outcome: Outcome,
    },
    /// The provider disappears: its paths are orphaned and its pending attempts fail with
    /// ENXIO.
    Vanish(String),
    /// The provider comes back (tasted if the geom is labeled, re-added otherwise).
    Return(String),
    /// A new provider appears on the disk and is added with the `add` verb.
    NewProvider(String),
    /// A verb, as `gmultipath <verb> <args…>` sends it.
    Verb {
        /// The verb.
        verb: String,
        /// Its positional arguments.
        args: Vec<String>,
    },
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The command.
    pub op: Op,
    /// Its result.
    pub result: Result<(), Errno>,
    /// What the class asked to append to the answer.
    pub append: Option<&'static str>,
    /// The providers its attempts went to, in order.
    pub route: Vec<String>,
    /// When it was delivered.
    pub at: u64,
}

/// A request in flight, with what the invariants need to know about its life.
#[derive(Debug)]
struct InFlight {
    bio: Bio,
    /// Providers its attempts went to.
    route: Vec<String>,
    /// The most paths (`ndisks`) its geom had while the request was in flight.
    max_ndisks: u32,
    /// Every attempt completed so far ended in EIO or ENXIO.
    all_failed: bool,
    /// Nothing but this request ran on its geom during its life: no other request, no
    /// verb, no provider coming or going.
    solo: bool,
    /// Every attached path was good when it was submitted.
    clean_start: bool,
    /// `Probe::Restore` events seen before it was submitted.
    restores_at_submit: usize,
    /// Waiting for a path since then, with the geom's queue timeout (in seconds) then.
    waiting: Option<(u64, u32)>,
    /// Length of `route` when it last left the queue: attempts since count against the
    /// path bound afresh.
    resumed_at: usize,
}

/// A probe of the checker in flight on a path.
#[derive(Clone, Debug)]
struct Probing {
    path: PathId,
    provider: String,
}

/// One attempt of a request on one path.
#[derive(Clone, Debug)]
struct Attempt {
    token: u64,
    path: PathId,
    provider: String,
    /// Held by a hanging provider: no completion is scheduled.
    parked: bool,
    /// The class gave up on it: its answer is never seen, but its copy still lands when
    /// its provider gets to it.
    ghost: bool,
    /// Which coming of its provider it was sent to (a provider that vanished and came
    /// back is another one: nothing sent to the old one lands).
    incarnation: u32,
}

/// What the fabric remembers of a write (or delete) for the landing invariant.
#[derive(Clone, Copy, Debug)]
struct WriteLife {
    offset: u64,
    length: u64,
    submitted: u64,
    acknowledged: Option<u64>,
}

impl WriteLife {
    fn overlaps(&self, other: &WriteLife) -> bool {
        self.offset < other.offset + other.length && other.offset < self.offset + self.length
    }
}

/// What the timeline holds.
#[derive(Clone, Debug)]
enum Scheduled {
    /// Attempt `id` completes.
    Complete(u64),
    /// The probe of path `id` completes.
    ProbeDone(PathId),
    /// A scripted action.
    Script(Action),
}

/// The simulated fabric. See the module documentation.
pub struct Fabric {
    /// The class under test.
    pub class: Class,
    /// The in-memory framework. Read it freely; use [`Fabric::take_messages`] rather than
    /// `MemTopology::take_messages`, which would lose the fabric's place in the event log.
    pub topo: MemTopology,
    assembly: Assembly,
    mode: Mode,
    disk: usize,
    /// Virtual time in nanoseconds.
    now: u64,
    seq: u64,
    timeline: BTreeMap<(u64, u64), Scheduled>,
    latency: BTreeMap<String, u64>,
    outcome: BTreeMap<String, Outcome>,
    next_token: u64,
    next_attempt: u64,
    attempts: BTreeMap<u64, Attempt>,
    /// Attempts the class gave up on, still out on their providers.
    ghosts: BTreeMap<u64, Attempt>,
    /// Every write and delete submitted, by token.
    writes: BTreeMap<u64, WriteLife>,
    /// Copies of writes that landed on the disk: (token, when).
    pub landed: Vec<(u64, u64)>,
    /// How often each provider vanished.
    incarnations: BTreeMap<String, u32>,
    in_flight: BTreeMap<u64, InFlight>,
    delivered: BTreeMap<u64, Delivery>,
    /// The geom the clients have open (the newest one called `FRED`).
    geom: Option<GeomId>,
    /// Events of `topo.events` already looked at.
    events_seen: usize,
    /// `Probe::Restore` events seen so far.
    restores: usize,
    steps: u64,
    /// Probes in flight, by path.
    probing: BTreeMap<PathId, Probing>,
    /// Each path's last probe result (true: good), for the reinstatement invariant.
    last_probe: BTreeMap<PathId, bool>,
    /// Paths the `fail` verb failed and nothing has restored since.
    admin_failed: BTreeSet<PathId>,
    /// Whether each path was good after the previous step, and when each went bad.
    was_good: BTreeMap<PathId, bool>,
    fail_times: BTreeMap<PathId, Vec<u64>>,
    /// Reinstatements seen: (time, provider, whether after a hold).
    reinstated: Vec<(u64, String, bool)>,
    /// Probes the class asked for: (time, provider).
    probed: Vec<(u64, String)>,
    /// What the fabric saw each path do, to hold the class's counters to.
    seen_on_path: BTreeMap<PathId, Seen>,
    /// What the fabric saw each geom answer.
    seen_on_geom: BTreeMap<GeomId, Seen>,
}

/// Attempts (or answers), their bytes and their errors, as the fabric saw them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Seen {
    requests: u64,
    bytes: u64,
    errors: u64,
}

impl Seen {
    fn count(&mut self, bytes: u64, result: Result<(), Errno>) {
        self.requests += 1;
        self.bytes += bytes;
        self.errors += u64::from(result.is_err());
    }
}

impl Fabric {
    /// A fabric whose geom is made by `gmultipath create` with `n` paths in `mode`.
    pub fn create(n: usize, mode: Mode) -> Fabric {
        Fabric::build(n, mode, Assembly::Create)
    }

    /// A fabric whose geom is labeled and assembled by tasting `md0`…`md{n-1}` in order.
    pub fn labeled(n: usize, mode: Mode) -> Fabric {
        Fabric::build(n, mode, Assembly::Label)
    }

    /// A fabric with `n` paths in `mode`, assembled as `assembly` says, open r1w1, with no
    /// messages or probes recorded yet.
    pub fn build(n: usize, mode: Mode, assembly: Assembly) -> Fabric {
        assert!(n >= 1, "a geom needs a path");
        let mut topo = MemTopology::new();
        let disk = topo.disk_with_paths("md", n, MIB, SECTOR);
        let mut class = Class::default();
        let names: Vec<String> = (0..n).map(|i| format!("md{i}")).collect();
        match assembly {
            Assembly::Create => {
                let mut args = vec![GEOM];
                args.extend(names.iter().map(String::as_str));
                let reply = topo.verb(&mut class, "create", &mode_flags(mode), &args);
                assert_eq!(reply.error, "", "create {args:?}");
            }
            Assembly::Label => {
                topo.write_label(disk, GEOM, &test_uuid(1), mode);
                for name in &names {
                    assert!(topo.taste(&mut class, name).is_some(), "taste {name}");
                }
            }
        }
        let geom = class.find_geom(GEOM).expect("the geom exists");
        class
            .access(&mut topo, geom, 1, 1, 0)
            .expect("open the geom");
        topo.drain(&mut class);
        topo.events.clear();
        let mut fabric = Fabric {
            class,
            topo,
            assembly,
            mode,
            disk,
            now: 0,
            seq: 0,
            timeline: BTreeMap::new(),
            latency: BTreeMap::new(),
            outcome: BTreeMap::new(),
            next_token: 1,
            next_attempt: 1,
            attempts: BTreeMap::new(),
            ghosts: BTreeMap::new(),
            writes: BTreeMap::new(),
            landed: Vec::new(),
            incarnations: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            delivered: BTreeMap::new(),
            geom: Some(geom),
            events_seen: 0,
            restores: 0,
            steps: 0,
            probing: BTreeMap::new(),
            last_probe: BTreeMap::new(),
            admin_failed: BTreeSet::new(),
            was_good: BTreeMap::new(),
            fail_times: BTreeMap::new(),
            reinstated: Vec::new(),
            probed: Vec::new(),
            seen_on_path: BTreeMap::new(),
            seen_on_geom: BTreeMap::new(),
        };
        fabric.note_states();
        fabric.check_invariants();
        fabric
    }

    // ----- configuration and script ------------------------------------------------------

    /// Sets the latency of `provider`.
    pub fn set_latency(&mut self, provider: &str, nanos: u64) {
        self.latency.insert(provider.to_string(), nanos);
    }

    /// Schedules `action` at time `at` (not before now).
    pub fn at(&mut self, at: u64, action: Action) {
        self.schedule(at.max(self.now), Scheduled::Script(action));
    }

    /// From `from` on, every attempt completing on `provider` fails with `errno`.
    pub fn fail_from(&mut self, provider: &str, from: u64, errno: Errno) {
        self.at(from, set_outcome(provider, Outcome::Fail(errno)));
    }

    /// `provider` answers nothing from `from` until `until`, then answers again.
    pub fn hang(&mut self, provider: &str, from: u64, until: u64) {
        self.at(from, set_outcome(provider, Outcome::Hang));
        self.at(until, set_outcome(provider, Outcome::Answer));
    }

    /// Schedules `gmultipath <verb> FRED <provider…>` at `at`.
    pub fn verb_at(&mut self, at: u64, verb: &str, providers: &[&str]) {
        let mut args = vec![GEOM.to_string()];
        args.extend(providers.iter().map(|p| p.to_string()));
        self.at(
            at,
            Action::Verb {
                verb: verb.to_string(),
                args,
            },
        );
    }

    /// Schedules a request at `at`. Tokens are handed out when requests are submitted, in
    /// order, so the request gets the next token unused at time `at`.
    pub fn submit_at(&mut self, at: u64, op: Op, offset: u64, length: u64) {
        self.at(at, Action::Submit { op, offset, length });
    }

    // ----- inputs applied now ------------------------------------------------------------

    /// A client submits a request now; returns its token.
    pub fn submit(&mut self, op: Op, offset: u64, length: u64) -> u64 {
        let token = self.submit_quietly(op, offset, length);
        self.after_input();
        token
    }

    /// Runs `gmultipath <verb> FRED <args…>` now.
    pub fn verb(&mut self, verb: &str, providers: &[&str]) -> Reply {
        let mut args = vec![GEOM.to_string()];
        args.extend(providers.iter().map(|p| p.to_string()));
        let reply = self.run_verb(verb, &args);
        self.after_input();
        reply
    }

    /// Applies `action` now, as if the timeline had reached it.
    pub fn apply(&mut self, action: Action) {
        self.perform(action);
        self.after_input();
    }

    /// Completes the attempt that is due next with `result` instead of what the provider's
    /// outcome says (a parked attempt if nothing is due). Returns `false` if no attempt is
    /// outstanding.
    pub fn complete_next_with(&mut self, result: Result<(), Errno>) -> bool {
        let due = self
            .timeline
            .iter()
            .find_map(|(&key, s)| match s {
                Scheduled::Complete(id) if self.attempts.contains_key(id) => Some((key, *id)),
                _ => None,
            })
            .or_else(|| {
                let id = self
                    .attempts
                    .iter()
                    .find(|(_, a)| a.parked)
                    .map(|(&i, _)| i)?;
                Some(((self.now, 0), id))
            });
        let Some((key, id)) = due else {
            return false;
        };
        self.timeline.remove(&key);
        self.now = self.now.max(key.0);
        let attempt = self.attempts.remove(&id).expect("scheduled attempt exists");
        if result.is_ok() {
            self.land(attempt.token);
        }
        self.finish_attempt(attempt, result);
        self.after_input();
        true
    }

    // ----- driving -----------------------------------------------------------------------

    /// Processes the next event or due timer in virtual time. Returns `false` if nothing is
    /// scheduled, or if only the extensions' recurring timers are left with no request or
    /// probe outstanding (the checker's rounds would go on for ever).
    pub fn step(&mut self) -> bool {
        // With nothing scheduled or outstanding, only a timer that ends (a deadline, the
        // clock) is worth a step; the extensions' rounds would go on for ever.
        let idle = self.timeline.is_empty() && self.in_flight.is_empty();
        let ending = matches!(
            self.class.next_timer(),
            Some((_, Timer::IoDeadline | Timer::Clock))
        );
        if idle && self.probing.is_empty() && !ending {
            return false;
        }
        self.step_any()
    }

    /// Processes the next event or timer in virtual time, whatever it is.
    fn step_any(&mut self) -> bool {
        if let Some(Time(due)) = self.class.poll_timeout() {
            let next = self.timeline.first_key_value().map(|(&(at, _), _)| at);
            if next.is_none_or(|at| due < at) {
                self.now = self.now.max(due);
                self.steps += 1;
                self.fire_timers();
                self.after_input();
                return true;
            }
        }
        let Some(((at, _), scheduled)) = self.timeline.pop_first() else {
            return false;
        };
        self.now = at;
        self.steps += 1;
        match scheduled {
            Scheduled::Complete(id) => self.complete(id),
            Scheduled::Script(action) => self.perform(action),
            Scheduled::ProbeDone(path) => self.probe_done(path),
        }
        self.after_input();
        true
    }

    /// Steps until nothing is scheduled; returns the number of steps.
    pub fn drive(&mut self) -> u64 {
        let mut n = 0;
        while self.step() {
            n += 1;
        }
        n
    }

    /// Steps until nothing is scheduled, panicking with a dump after `max_steps` (a
    /// livelock guard: a request bouncing between paths forever would trip it).
    pub fn drive_bounded(&mut self, max_steps: u64) -> u64 {
        let mut n = 0;
        while self.step() {
            n += 1;
            if n > max_steps {
                panic!(
                    "livelock guard: still busy after {max_steps} steps\n{}",
                    self.dump()
                );
            }
        }
        n
    }

    /// Steps while the next event or timer is due at or before `until`, then sets the
    /// clock to `until`.
    pub fn drive_until(&mut self, until: u64) {
        while self
            .timeline
            .first_key_value()
            .map(|(&(at, _), _)| at)
            .into_iter()
            .chain(self.class.poll_timeout().map(|Time(t)| t))
            .min()
            .is_some_and(|at| at <= until)
        {
            self.step_any();
        }
        self.now = self.now.max(until);
    }

    /// Lets every provider answer again, releases every hang, and drives until idle; then
    /// asserts that every request was delivered exactly once and nothing is in flight.
    pub fn finish(&mut self, max_steps: u64) {
        let providers: Vec<String> = self.outcome.keys().cloned().collect();
        for provider in providers {
            self.perform(set_outcome(&provider, Outcome::Answer));
        }
        self.after_input();
        self.drive_bounded(max_steps);
        if !self.in_flight.is_empty() || !self.attempts.is_empty() {
            self.violation("finished with requests still in flight");
        }
        for g in self.class.geoms().collect::<Vec<_>>() {
            for p in self.class.geom(g).unwrap().paths().collect::<Vec<_>>() {
                let n = self.class.path(p).unwrap().inflight();
                if n != 0 {
                    self.violation(&format!("path {p:?} reports {n} in flight when idle"));
                }
            }
        }
        let submitted = self.next_token - 1;
        if self.delivered.len() as u64 != submitted {
            self.violation(&format!(
                "{submitted} submitted but {} delivered",
                self.delivered.len()
            ));
        }
    }

    // ----- getters -----------------------------------------------------------------------

    /// Virtual time now.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The disk every provider of the fabric is a path to (for [`MemTopology::add_provider`]).
    pub fn disk(&self) -> usize {
        self.disk
    }

    /// The geom the clients have open.
    pub fn geom(&self) -> GeomId {
        self.geom.expect("the fabric has a geom")
    }

    /// The geom's mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The delivery of `token`, if it has been delivered.
    pub fn delivery(&self, token: u64) -> Option<&Delivery> {
        self.delivered.get(&token)
    }

    /// Every delivery so far, by token.
    pub fn deliveries(&self) -> &BTreeMap<u64, Delivery> {
        &self.delivered
    }

    /// Requests submitted and not delivered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The providers the attempts of `token` went to so far (delivered or not).
    pub fn route(&self, token: u64) -> Vec<String> {
        match (self.delivered.get(&token), self.in_flight.get(&token)) {
            (Some(d), _) => d.route.clone(),
            (None, Some(r)) => r.route.clone(),
            (None, None) => Vec::new(),
        }
    }

    /// The live path of the open geom on `provider`.
    pub fn path(&self, provider: &str) -> Option<PathId> {
        let g = self.class.geom(self.geom?)?;
        g.paths().find(|&p| {
            let v = self.class.path(p).unwrap();
            v.name() == provider && !v.is_orphaned()
        })
    }

    /// The name of the open geom's active path.
    pub fn active(&self) -> Option<String> {
        let g = self.class.geom(self.geom?)?;
        let p = g.active()?;
        Some(self.class.path(p)?.name().to_string())
    }

    /// The open geom's good paths, in kernel order.
    pub fn good_paths(&self) -> Vec<String> {
        let Some(g) = self.geom.and_then(|g| self.class.geom(g)) else {
            return Vec::new();
        };
        g.paths()
            .map(|p| self.class.path(p).unwrap())
            .filter(|p| p.is_good())
            .map(|p| p.name().to_string())
            .collect()
    }

    /// Requests in flight on `provider`'s live path, as the class counts them.
    pub fn inflight_on(&self, provider: &str) -> u32 {
        self.path(provider)
            .map_or(0, |p| self.class.path(p).unwrap().inflight())
    }

    /// Requests waiting for a path, as the fabric counts them.
    pub fn waiting(&self) -> usize {
        self.in_flight
            .values()
            .filter(|r| r.waiting.is_some())
            .count()
    }

    /// Reinstatements by the checker so far: (time, provider, after an anti-flap hold).
    pub fn reinstated(&self) -> &[(u64, String, bool)] {
        &self.reinstated
    }

    /// Probes the class asked for so far: (time, provider).
    pub fn probed(&self) -> &[(u64, String)] {
        &self.probed
    }

    /// Times `provider`'s live path went from good to bad.
    pub fn fail_times(&self, provider: &str) -> Vec<u64> {
        self.path(provider)
            .and_then(|p| self.fail_times.get(&p).cloned())
            .unwrap_or_default()
    }

    /// The state word of `provider`'s live path (`ACTIVE`, `FAIL`, `HELD`, …).
    pub fn state_of(&self, provider: &str) -> String {
        self.path(provider)
            .and_then(|p| self.class.path_state(p))
            .map_or_else(|| "gone".to_string(), |s| s.to_string())
    }

    /// Runs `configure FRED` with extension settings now.
    pub fn configure(&mut self, settings: &[(&str, &str)]) -> Reply {
        self.disturb();
        let reply = self.topo.configure(&mut self.class, GEOM, settings);
        self.after_input();
        reply
    }

    /// Sets a tunable now.
    pub fn set_tunable(&mut self, knob: geom_multipath::sysctl::Knob, value: u32) {
        self.class
            .tunables_mut()
            .set(knob, value)
            .expect("in range");
        self.after_input();
    }

    /// `Probe::Restore` events so far.
    pub fn restores(&self) -> usize {
        self.restores
    }

    /// The probes fired so far.
    pub fn probes(&self) -> Vec<Probe> {
        self.topo.probes()
    }

    /// The console messages so far, as text, forgotten once taken.
    pub fn take_messages(&mut self) -> Vec<String> {
        let messages = self.topo.take_messages();
        self.events_seen = self.topo.events.len();
        messages
    }

    // ----- the driver's work -------------------------------------------------------------

    fn schedule(&mut self, at: u64, what: Scheduled) {
        self.seq += 1;
        self.timeline.insert((at, self.seq), what);
    }

    fn latency_of(&self, provider: &str) -> u64 {
        self.latency
            .get(provider)
            .copied()
            .unwrap_or(DEFAULT_LATENCY)
    }

    fn outcome_of(&self, provider: &str) -> Outcome {
        self.outcome
            .get(provider)
            .copied()
            .unwrap_or(Outcome::Answer)
    }

    /// What happens to an attempt that is due: its path's provider gone means ENXIO; a
    /// hanging provider holds it; otherwise the provider's outcome.
    fn complete(&mut self, id: u64) {
        if self.ghosts.contains_key(&id) {
            self.complete_ghost(id);
            return;
        }
        let Some(attempt) = self.attempts.get(&id).cloned() else {
            return; // a ghost whose provider went away for good: it never lands
        };
        let gone = !self.topo.providers.contains_key(&attempt.provider)
            || self
                .class
                .path(attempt.path)
                .is_none_or(|p| p.is_orphaned());
        let result = if gone {
            Err(Errno::ENXIO)
        } else {
            match self.outcome_of(&attempt.provider) {
                Outcome::Answer => Ok(()),
                Outcome::Fail(e) => Err(e),
                Outcome::Hang => {
                    self.attempts.get_mut(&id).unwrap().parked = true;
                    return;
                }
            }
        };
        self.attempts.remove(&id);
        if result.is_ok() {
            self.land(attempt.token);
        }
        self.finish_attempt(attempt, result);
    }

    /// An attempt the class gave up on gets to its provider: nobody hears its answer, but
    /// a write lands unless the provider is gone.
    fn complete_ghost(&mut self, id: u64) {
        let ghost = &self.ghosts[&id];
        let incarnation = self.incarnations.get(&ghost.provider).copied().unwrap_or(0);
        if !self.topo.providers.contains_key(&ghost.provider) || ghost.incarnation != incarnation {
            self.ghosts.remove(&id);
            return;
        }
        match self.outcome_of(&ghost.provider) {
            Outcome::Hang => self.ghosts.get_mut(&id).unwrap().parked = true,
            Outcome::Fail(_) => {
                self.ghosts.remove(&id);
            }
            Outcome::Answer => {
                let token = self.ghosts.remove(&id).unwrap().token;
                self.land(token);
            }
        }
    }

    /// A copy of request `token` landed on the disk now. Checks that no write submitted
    /// after `token` was acknowledged, to an overlapping range, has been acknowledged
    /// already: an acknowledged write is never followed by an older copy landing.
    fn land(&mut self, token: u64) {
        let Some(&mine) = self.writes.get(&token) else {
            return;
        };
        self.landed.push((token, self.now));
        let Some(acked) = mine.acknowledged else {
            return;
        };
        let newer = self.writes.iter().find(|(&t, w)| {
            t != token
                && w.overlaps(&mine)
                && w.submitted >= acked
                && w.acknowledged.is_some_and(|a| a <= self.now)
        });
        if let Some((&newer, _)) = newer {
            self.violation(&format!(
                "a copy of write {token} (acknowledged at {acked}) landed after write \
                 {newer} to the same range was acknowledged: acknowledged data overwritten"
            ));
        }
    }
    fn perform(&mut self, action: Action) {
        match action {
            Action::Submit { op, offset, length } => {
                self.submit_quietly(op, offset, length);
            }
            Action::SetOutcome { provider, outcome } => {
                self.outcome.insert(provider.clone(), outcome);
                if outcome != Outcome::Hang {
                    self.release_parked(&provider);
                }
            }
            Action::Vanish(provider) => {
                if self.topo.providers.contains_key(&provider) {
                    self.disturb();
                    self.topo.remove_provider(&provider);
                    // Gone for good: what was still out on it never lands, even if a
                    // provider of the same name comes back.
                    *self.incarnations.entry(provider.clone()).or_default() += 1;
                    let paths: Vec<PathId> = self.class.paths_on_provider(&provider).collect();
                    for p in paths {
                        self.class.orphan(&mut self.topo, p);
                        self.topo.drain(&mut self.class);
                    }
                    self.release_parked(&provider);
                }
            }
            Action::Return(provider) => {
                self.disturb();
                self.topo.add_provider(&provider, self.disk);
                match self.assembly {
                    Assembly::Label => {
                        self.topo.taste(&mut self.class, &provider);
                    }
                    Assembly::Create => self.readd(&provider),
                }
            }
            Action::NewProvider(provider) => {
                self.disturb();
                self.topo.add_provider(&provider, self.disk);
                self.run_verb("add", &[GEOM.to_string(), provider]);
            }
            Action::Verb { verb, args } => {
                self.run_verb(&verb, &args);
            }
        }
    }

    /// A MANUAL geom gets a returning provider back with `add`, or is created again if it
    /// went away with its last path.
    fn readd(&mut self, provider: &str) {
        if self.class.find_geom(GEOM).is_some() {
            self.run_verb("add", &[GEOM.to_string(), provider.to_string()]);
        } else {
            self.topo.verb(
                &mut self.class,
                "create",
                &mode_flags(self.mode),
                &[GEOM, provider],
            );
        }
    }

    fn run_verb(&mut self, verb: &str, args: &[String]) -> Reply {
        self.disturb();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = self.topo.verb(&mut self.class, verb, &[], &argv);
        if verb == "fail" && reply.error.is_empty() {
            if let Some(p) = args.get(1).and_then(|name| self.path(name)) {
                if self.class.path(p).is_some_and(|v| v.is_admin_failed()) {
                    self.admin_failed.insert(p);
                }
            }
        }
        reply
    }

    /// Something other than a request touched the geom: no request in flight is alone any
    /// more.
    fn disturb(&mut self) {
        for r in self.in_flight.values_mut() {
            r.solo = false;
        }
    }

    fn release_parked(&mut self, provider: &str) {
        for table in [&mut self.attempts, &mut self.ghosts] {
            let parked: Vec<u64> = table
                .iter()
                .filter(|(_, a)| a.parked && a.provider == provider)
                .map(|(&id, _)| id)
                .collect();
            for &id in &parked {
                table.get_mut(&id).unwrap().parked = false;
            }
            for id in parked {
                self.seq += 1;
                self.timeline
                    .insert((self.now, self.seq), Scheduled::Complete(id));
            }
        }
    }

    /// Starts a new request on the open geom, without the invariant check.
    fn submit_quietly(&mut self, op: Op, offset: u64, length: u64) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        let geom = self.geom();
        for r in self.in_flight.values_mut() {
            if r.bio.geom == geom {
                r.solo = false;
            }
        }
        let view = self.class.geom(geom);
        let max_ndisks = view.map_or(0, |g| g.ndisks());
        let clean_start =
            view.is_some_and(|g| g.paths().all(|p| self.class.path(p).unwrap().is_good()));
        let alone = !self.in_flight.values().any(|r| r.bio.geom == geom);
        if matches!(op, Op::Write | Op::Delete) {
            self.writes.insert(
                token,
                WriteLife {
                    offset,
                    length,
                    submitted: self.now,
                    acknowledged: None,
                },
            );
        }
        self.in_flight.insert(
            token,
            InFlight {
                bio: Bio::new(token, geom, op, offset, length),
                route: Vec::new(),
                max_ndisks,
                all_failed: true,
                solo: alone,
                clean_start,
                restores_at_submit: self.restores,
                waiting: None,
                resumed_at: 0,
            },
        );
        let mut bio = self.in_flight[&token].bio.clone();
        let started = self.class.start_or_queue(&mut bio);
        self.in_flight.get_mut(&token).unwrap().bio = bio;
        match started {
            Started::Path(path) => self.routed(token, path),
            Started::Queued => self.queued(token),
            Started::Refused(e) => {
                self.check_refusal(token, e);
                self.deliver(token, Err(e), None);
            }
        }
        token
    }

    /// `start` refused a new request: only ENXIO, and only with no good path or a withered
    /// provider.
    fn check_refusal(&mut self, token: u64, e: Errno) {
        if e != Errno::ENXIO {
            self.violation(&format!(
                "start refused token {token} with {e:?}, not ENXIO"
            ));
        }
        let geom = self.in_flight[&token].bio.geom;
        if let Some(g) = self.class.geom(geom) {
            let good = g.paths().any(|p| self.class.path(p).unwrap().is_good());
            // Behind requests that wait for a path, a new one waits too, or is refused when
            // the queue is full.
            let queue_full = self.class.waiting(geom).0 > 0;
            if good && !g.withered() && !queue_full {
                self.violation(&format!(
                    "token {token} refused with ENXIO while a good path exists"
                ));
            }
        }
    }

    /// The class sent (or re-sent) request `token` to `path`: check the choice, schedule the
    /// attempt's completion.
    fn routed(&mut self, token: u64, path: PathId) {
        let r = &self.in_flight[&token];
        if r.bio.path() != Some(path) {
            self.violation(&format!(
                "token {token} routed to {path:?} but the bio says {:?}",
                r.bio.path()
            ));
        }
        let Some(view) = self.class.path(path) else {
            self.violation(&format!("token {token} routed to a detached path {path:?}"));
        };
        let provider = view.name().to_string();
        let geom = self.class.geom(r.bio.geom).expect("routed on a live geom");
        if view.geom() != r.bio.geom {
            self.violation(&format!(
                "token {token} routed to {provider} of another geom"
            ));
        }
        if !view.is_good() {
            let good: Vec<String> = geom
                .paths()
                .map(|p| self.class.path(p).unwrap())
                .filter(|p| p.is_good())
                .map(|p| p.name().to_string())
                .collect();
            if good.is_empty() {
                self.violation(&format!(
                    "token {token} routed to bad path {provider} (no good path: ENXIO expected)"
                ));
            }
            self.violation(&format!(
                "token {token} routed to bad path {provider} while {good:?} are good"
            ));
        }
        let spread = match geom.mode() {
            Mode::ActivePassive => false,
            Mode::ActiveActive => true,
            Mode::ActiveRead => r.bio.op == Op::Read,
        };
        if spread && geom.selector() != Selector::LeastBusy {
            // Round-robin and service-time are checked by their scenarios.
        } else if spread {
            let mine = view.inflight() - 1;
            for q in geom.paths() {
                let other = self.class.path(q).unwrap();
                if q != path && other.is_good() && other.inflight() < mine {
                    self.violation(&format!(
                        "token {token} spread to {provider} with {mine} in flight, but {} \
                         had {}",
                        other.name(),
                        other.inflight()
                    ));
                }
            }
        } else if geom.active() != Some(path) {
            self.violation(&format!(
                "token {token} ({:?}) sent to {provider}, not the active path {:?}",
                r.bio.op,
                geom.active()
            ));
        }
        let ndisks = geom.ndisks();
        let r = self.in_flight.get_mut(&token).unwrap();
        r.max_ndisks = r.max_ndisks.max(ndisks);
        r.route.push(provider.clone());
        if (r.route.len() - r.resumed_at) as u32 > r.max_ndisks {
            let msg = format!(
                "token {token} tried {} times but its geom never had more than {} paths",
                r.route.len() - r.resumed_at,
                r.max_ndisks
            );
            self.violation(&msg);
        }
        let id = self.next_attempt;
        self.next_attempt += 1;
        self.attempts.insert(
            id,
            Attempt {
                token,
                path,
                provider: provider.clone(),
                parked: false,
                ghost: false,
                incarnation: self.incarnations.get(&provider).copied().unwrap_or(0),
            },
        );
        let at = self.now + self.latency_of(&provider);
        self.schedule(at, Scheduled::Complete(id));
        let r = self.in_flight.get_mut(&token).unwrap();
        self.class.arm_deadline(&mut r.bio, Time(self.now));
    }

    /// The class's timers fell due: every attempt it gives up on is abandoned (it becomes a
    /// ghost: its late answer is never seen, but a write still lands when its provider gets
    /// to it) and what the class decided for its request is carried out as for any
    /// completion.
    fn fire_timers(&mut self) {
        let bios = self.in_flight.values_mut().map(|r| &mut r.bio);
        self.class.handle_timeout(Time(self.now), bios);
        self.topo.drain(&mut self.class);
        self.check_reinstatements();
        while let Some(Expired {
            token,
            abandoned_on,
            done,
        }) = self.class.poll_expired()
        {
            let Some((&id, _)) = self
                .attempts
                .iter()
                .find(|(_, a)| a.token == token && a.path == abandoned_on)
            else {
                self.violation(&format!(
                    "token {token} expired on {abandoned_on:?} with no attempt outstanding there"
                ));
            };
            let attempt = self.attempts.remove(&id).expect("found above");
            self.ghosts.insert(
                id,
                Attempt {
                    ghost: true,
                    ..attempt.clone()
                },
            );
            let length = self.in_flight[&token].bio.length;
            self.seen_on_path
                .entry(abandoned_on)
                .or_default()
                .count(length, Err(Errno::ENXIO));
            self.topo.drain(&mut self.class);
            self.count_restores();
            self.judge(attempt, Err(Errno::ENXIO), true, done);
        }
    }

    /// An attempt came back with `result`: ask the class what it means.
    fn finish_attempt(&mut self, attempt: Attempt, result: Result<(), Errno>) {
        let token = attempt.token;
        let failed_before = self.class.path(attempt.path).is_some_and(|p| p.is_failed());
        let mut bio = self.in_flight[&token].bio.clone();
        self.seen_on_path
            .entry(attempt.path)
            .or_default()
            .count(bio.length, result);
        let done = self.class.done_at(&mut bio, result, Time(self.now));
        self.topo.drain(&mut self.class);
        self.count_restores();
        self.in_flight.get_mut(&token).unwrap().bio = bio;
        self.judge(attempt, result, failed_before, done);
    }

    /// Checks what the class decided about an attempt that ended with `result` (its bio
    /// already updated) and carries it out.
    fn judge(
        &mut self,
        attempt: Attempt,
        result: Result<(), Errno>,
        failed_before: bool,
        done: Done,
    ) {
        let token = attempt.token;
        let fails_path = matches!(result, Err(e) if e.fails_path());
        let r = self.in_flight.get_mut(&token).unwrap();
        r.all_failed &= fails_path;
        let op = r.bio.op;
        if !fails_path {
            if let Some(p) = self.class.path(attempt.path) {
                if p.is_failed() && !failed_before {
                    self.violation(&format!(
                        "{result:?} on {} marked the path FAIL",
                        attempt.provider
                    ));
                }
            }
        }
        match done {
            Done::Queued => {
                if !fails_path {
                    self.violation(&format!(
                        "token {token} queued after {result:?} on {}",
                        attempt.provider
                    ));
                }
                self.queued(token);
            }
            Done::Reissue(next) => {
                if !fails_path {
                    self.violation(&format!(
                        "token {token} reissued after {result:?} on {}",
                        attempt.provider
                    ));
                }
                self.routed(token, next);
            }
            Done::Deliver {
                result: delivered,
                append,
            } => {
                if self.in_flight[&token].bio.path().is_some() {
                    self.violation(&format!("token {token} delivered while still on a path"));
                }
                let expected_ok = result.is_ok();
                let ok_as_sent = if fails_path {
                    matches!(delivered, Err(e) if e.fails_path())
                } else {
                    delivered == result
                };
                if !ok_as_sent {
                    self.violation(&format!(
                        "token {token}: last attempt {result:?} but delivered {delivered:?}"
                    ));
                }
                let physpath = op == Op::GetAttr { physpath: true };
                let want_append = (expected_ok && physpath).then_some("/mp");
                if append != want_append {
                    self.violation(&format!(
                        "token {token} ({op:?}, {result:?}) appends {append:?}, expected \
                         {want_append:?}"
                    ));
                }
                self.deliver(token, delivered, append);
            }
        }
    }

    /// Request `token` is finished: record it exactly once and check how it ended.
    fn deliver(&mut self, token: u64, result: Result<(), Errno>, append: Option<&'static str>) {
        if self.delivered.contains_key(&token) {
            self.violation(&format!("token {token} delivered twice"));
        }
        let Some(r) = self.in_flight.remove(&token) else {
            self.violation(&format!("token {token} delivered but never submitted"));
        };
        if result.is_ok() {
            if let Some(w) = self.writes.get_mut(&token) {
                w.acknowledged = Some(self.now);
            }
        }
        self.seen_on_geom
            .entry(r.bio.geom)
            .or_default()
            .count(r.bio.length, result);
        if !r.route.is_empty() && r.all_failed {
            if !matches!(result, Err(e) if e.fails_path()) {
                self.violation(&format!(
                    "token {token} failed on every path {:?} but ended with {result:?}",
                    r.route
                ));
            }
            // PR 178473 (failloop): a request that fails everywhere ends after one round of
            // auto-restore. Starting with every path good and nothing else going on, that
            // round restores the other paths once: at most 2 events with up to 3 paths,
            // ndisks - 1 beyond.
            let during = self.restores - r.restores_at_submit;
            let bound = (r.max_ndisks.saturating_sub(1) as usize).max(2);
            if r.solo && r.clean_start && during > bound {
                self.violation(&format!(
                    "token {token} failed on every path {:?} and saw {during} restores (at \
                     most {bound} expected)",
                    r.route
                ));
            }
        }
        self.delivered.insert(
            token,
            Delivery {
                op: r.bio.op,
                result,
                append,
                route: r.route,
                at: self.now,
            },
        );
    }

    fn count_restores(&mut self) {
        let new = &self.topo.events[self.events_seen..];
        self.restores += new
            .iter()
            .filter(|e| matches!(e, Event::Probe(Probe::Restore { .. })))
            .count();
        self.events_seen = self.topo.events.len();
    }

    /// After any input: collect events, follow the geom the clients should have open, and
    /// check every invariant.
    fn after_input(&mut self) {
        self.topo.drain(&mut self.class);
        self.count_restores();
        self.follow_geom();
        self.carry_out();
        self.note_states();
        self.check_invariants();
    }

    /// The driver's part of the extensions: issue or fail the requests that waited, and
    /// issue the probes.
    fn carry_out(&mut self) {
        loop {
            let mut busy = false;
            while let Some(d) = self.class.poll_dispatch() {
                busy = true;
                match d {
                    Dispatch::Issue { bio, path } => {
                        let token = bio.token;
                        let Some(r) = self.in_flight.get_mut(&token) else {
                            self.violation(&format!("token {token} dispatched but not waiting"));
                        };
                        if r.waiting.take().is_none() {
                            self.violation(&format!("token {token} issued but was not waiting"));
                        }
                        r.bio = bio;
                        r.resumed_at = r.route.len();
                        r.max_ndisks = 0;
                        self.routed(token, path);
                    }
                    Dispatch::Fail { bio, error } => {
                        let token = bio.token;
                        let Some((since, timeout)) =
                            self.in_flight.get(&token).and_then(|r| r.waiting)
                        else {
                            self.violation(&format!("token {token} failed but was not waiting"));
                        };
                        // Before its time only when queueing ended: the geom is going or
                        // its queue timeout was set to 0.
                        let ended = self.class.geom(bio.geom).is_none_or(|g| {
                            g.stopping() || g.settings().queue_timeout(self.class.tunables()) == 0
                        });
                        if !ended && self.now < since + u64::from(timeout) * SEC {
                            self.violation(&format!(
                                "token {token} waited since {since} and failed before its \
                                 {timeout} s"
                            ));
                        }
                        self.in_flight.get_mut(&token).unwrap().bio = bio;
                        self.deliver(token, Err(error), None);
                    }
                }
            }
            while let Some(check) = self.class.poll_check() {
                busy = true;
                self.issue_probe(check);
            }
            self.topo.drain(&mut self.class);
            self.count_restores();
            if !busy {
                break;
            }
        }
    }

    /// Request `token` waits for a path.
    fn queued(&mut self, token: u64) {
        let geom = self.in_flight[&token].bio.geom;
        let timeout = self
            .class
            .geom(geom)
            .map_or(0, |g| g.settings().queue_timeout(self.class.tunables()));
        let r = self.in_flight.get_mut(&token).unwrap();
        if r.bio.path().is_some() {
            self.violation(&format!("token {token} queued while on a path"));
        }
        r.waiting = Some((self.now, timeout));
    }

    /// The class asked for a probe: it completes after the provider's latency with the
    /// provider's outcome, or fails with ENXIO at the probe deadline if the provider hangs.
    fn issue_probe(&mut self, check: Check) {
        let Some(view) = self.class.path(check.path) else {
            self.violation("probe of a detached path");
        };
        let provider = view.name().to_string();
        if self.probing.contains_key(&check.path) {
            self.violation(&format!("two probes at once on {provider}"));
        }
        if view.is_lost() {
            self.violation(&format!("probe of LOST path {provider}"));
        }
        if check.length != u64::from(view.sectorsize()) {
            self.violation(&format!("probe of {} bytes, not one block", check.length));
        }
        self.probed.push((self.now, provider.clone()));
        let delay = match self.outcome_of(&provider) {
            Outcome::Hang => PROBE_DEADLINE,
            _ => self.latency_of(&provider),
        };
        self.probing.insert(
            check.path,
            Probing {
                path: check.path,
                provider,
            },
        );
        self.schedule(self.now + delay, Scheduled::ProbeDone(check.path));
    }

    fn probe_done(&mut self, path: PathId) {
        let Some(probe) = self.probing.remove(&path) else {
            return;
        };
        let gone = !self.topo.providers.contains_key(&probe.provider)
            || self.class.path(path).is_none_or(|p| p.is_orphaned());
        let result = if gone {
            Err(Errno::ENXIO)
        } else {
            match self.outcome_of(&probe.provider) {
                Outcome::Answer => Ok(()),
                Outcome::Fail(e) => Err(e),
                Outcome::Hang => Err(Errno::ENXIO),
            }
        };
        self.last_probe.insert(probe.path, result.is_ok());
        self.class.handle_check_done(probe.path, result);
        self.topo.drain(&mut self.class);
        self.check_reinstatements();
    }

    /// Reinstatement invariants, on the messages an input just produced: a path is marked
    /// OK by a probe or a timer only if its last probe was good and the admin did not fail
    /// it, and (anti-flap) a probe reinstates at once only a path with fewer than
    /// `flap_threshold` failures in `flap_window`.
    fn check_reinstatements(&mut self) {
        let mut held_ended = BTreeSet::new();
        let mut oks = Vec::new();
        for e in &self.topo.events[self.events_seen..] {
            match e {
                Event::Log(Message::HoldEnded { path, .. }) => {
                    held_ended.insert(path.clone());
                }
                Event::Log(Message::MarkedOk { path, .. }) => oks.push(path.clone()),
                _ => {}
            }
        }
        let t = *self.class.tunables();
        for name in oks {
            let Some(pid) = self.path(&name) else {
                continue;
            };
            if self.last_probe.get(&pid) != Some(&true) {
                self.violation(&format!("{name} reinstated without a good probe"));
            }
            if self.admin_failed.contains(&pid) {
                self.violation(&format!("{name} reinstated after the admin failed it"));
            }
            let after_hold = held_ended.contains(&name);
            if !after_hold && t.flap_threshold() > 0 && t.flap_hold() > 0 {
                let since = self.now.saturating_sub(u64::from(t.flap_window()) * SEC);
                let recent = self
                    .fail_times
                    .get(&pid)
                    .map_or(0, |v| v.iter().filter(|&&at| at >= since).count());
                if recent as u32 >= t.flap_threshold() {
                    self.violation(&format!(
                        "{name} reinstated at once after {recent} failures in the window"
                    ));
                }
            }
            self.reinstated.push((self.now, name, after_hold));
        }
    }

    /// Records which paths went from good to bad since the last step, and forgets the
    /// admin's `fail` of paths FreeBSD's all-failed rule restored.
    fn note_states(&mut self) {
        let Some(g) = self.geom.and_then(|g| self.class.geom(g)) else {
            return;
        };
        let paths: Vec<PathId> = g.paths().collect();
        for p in paths {
            let good = self.class.path(p).unwrap().is_good();
            let was = self.was_good.insert(p, good);
            if was == Some(true) && !good {
                self.fail_times.entry(p).or_default().push(self.now);
            }
            if good {
                self.admin_failed.remove(&p);
            }
        }
    }

    /// When the geom went away with its last path and came back as a new geom (taste or
    /// create), the clients close the old one and open the new one.
    fn follow_geom(&mut self) {
        let Some(current) = self.class.find_geom(GEOM) else {
            return;
        };
        if self.geom == Some(current) {
            return;
        }
        if let Some(old) = self.geom {
            if self.class.geom(old).is_some() {
                self.class
                    .access(&mut self.topo, old, -1, -1, 0)
                    .expect("closing never fails");
            }
        }
        self.class
            .access(&mut self.topo, current, 1, 1, 0)
            .expect("open the new geom");
        self.topo.drain(&mut self.class);
        self.count_restores();
        self.geom = Some(current);
    }

    // ----- invariants --------------------------------------------------------------------

    /// Checks, after every step:
    /// * every request in flight has exactly one attempt outstanding, and when nothing is
    ///   scheduled or outstanding every submitted request has been delivered (exactly once:
    ///   [`deliver`](Self::deliver) refuses a second delivery);
    /// * every geom's active path is `None` or a good path of that geom, and is `Some` while
    ///   the geom has a good path; its `ndisks` is the number of its paths that are not LOST;
    /// * every path's in-flight count is the number of attempts the fabric has outstanding
    ///   on it, and no outstanding attempt is on a detached path;
    /// * a LOST path with nothing in flight has been detached (its deferred detach ran);
    /// * (updated here, checked on every route) the most paths each request's geom had.
    ///
    /// Routing (good path, active path in A/P, least busy in A/A), the attempt bound,
    /// pass-through errors, the physpath suffix and the failloop bound are checked where
    /// they happen: [`routed`](Self::routed), [`finish_attempt`](Self::finish_attempt),
    /// [`deliver`](Self::deliver).
    pub fn check_invariants(&mut self) {
        let mut outstanding: BTreeMap<u64, usize> = BTreeMap::new();
        let mut per_path: BTreeMap<PathId, u32> = BTreeMap::new();
        for a in self.attempts.values() {
            *outstanding.entry(a.token).or_default() += 1;
            *per_path.entry(a.path).or_default() += 1;
        }
        for (&token, r) in &self.in_flight {
            let n = outstanding.get(&token).copied().unwrap_or(0);
            let want = usize::from(r.waiting.is_none());
            if n != want {
                self.violation(&format!(
                    "token {token} is in flight with {n} attempts outstanding"
                ));
            }
        }
        if let Some(&token) = outstanding.keys().find(|t| !self.in_flight.contains_key(t)) {
            self.violation(&format!(
                "an attempt of delivered token {token} is outstanding"
            ));
        }
        let no_timer = self.class.poll_timeout().is_none();
        if self.timeline.is_empty()
            && self.attempts.is_empty()
            && no_timer
            && !self.in_flight.is_empty()
        {
            self.violation("idle, but requests were never delivered");
        }
        let mut seen_paths = BTreeSet::new();
        for g in self.class.geoms().collect::<Vec<_>>() {
            let view = self.class.geom(g).unwrap();
            let paths: Vec<PathId> = view.paths().collect();
            let any_good = paths.iter().any(|&p| self.class.path(p).unwrap().is_good());
            let not_lost = paths
                .iter()
                .filter(|&&p| !self.class.path(p).unwrap().is_lost())
                .count();
            if view.ndisks() as usize != not_lost {
                self.violation(&format!(
                    "{} has ndisks {} but {not_lost} paths that are not LOST",
                    view.name(),
                    view.ndisks()
                ));
            }
            match view.active() {
                None if any_good => self.violation(&format!(
                    "{} has good paths but no active path",
                    view.name()
                )),
                None => {}
                Some(a) => match self.class.path(a) {
                    Some(p) if p.geom() == g && p.is_good() => {}
                    Some(p) => self.violation(&format!(
                        "active path {} of {} is not a good path of it",
                        p.name(),
                        view.name()
                    )),
                    None => self.violation(&format!("active path of {} is detached", view.name())),
                },
            }
            for p in paths {
                seen_paths.insert(p);
                let view = self.class.path(p).unwrap();
                if view.is_lost() && view.inflight() == 0 && !view.is_probing() {
                    self.violation(&format!(
                        "{} is LOST and idle but still attached after the deferred work ran",
                        view.name()
                    ));
                }
                let class_count = self.class.path(p).unwrap().inflight();
                let ours = per_path.get(&p).copied().unwrap_or(0);
                if class_count != ours {
                    let name = self.class.path(p).unwrap().name().to_string();
                    self.violation(&format!(
                        "{name} reports {class_count} in flight, the fabric has {ours}"
                    ));
                }
            }
        }
        if let Some(p) = per_path.keys().find(|p| !seen_paths.contains(p)) {
            self.violation(&format!("attempts outstanding on detached path {p:?}"));
        }
        self.check_counters();
        for r in self.in_flight.values_mut() {
            if let Some(g) = self.class.geom(r.bio.geom) {
                r.max_ndisks = r.max_ndisks.max(g.ndisks());
            }
        }
        self.check_extension_invariants();
    }

    /// The extensions' invariants: the queue stays within its bounds and agrees with the
    /// fabric's count; no request waits longer than its queue timeout plus one tick;
    /// admin-failed paths stay failed; one probe at most per path.
    fn check_extension_invariants(&mut self) {
        let t = *self.class.tunables();
        let mut waiting_by_geom: BTreeMap<GeomId, usize> = BTreeMap::new();
        for (&token, r) in &self.in_flight {
            let Some((since, timeout)) = r.waiting else {
                continue;
            };
            *waiting_by_geom.entry(r.bio.geom).or_default() += 1;
            if self.now > since + u64::from(timeout) * SEC + TICK {
                self.violation(&format!(
                    "token {token} waited since {since}, longer than {timeout} s and a tick"
                ));
            }
        }
        for g in self.class.geoms().collect::<Vec<_>>() {
            let (n, bytes) = self.class.waiting(g);
            if n > t.queue_max_requests() as usize || bytes > t.queue_max_bytes() {
                self.violation(&format!(
                    "queue of {n} requests, {bytes} bytes: over bounds"
                ));
            }
            let ours = waiting_by_geom.get(&g).copied().unwrap_or(0);
            if n != ours {
                self.violation(&format!(
                    "the class holds {n} waiting requests, the fabric {ours}"
                ));
            }
        }
        for &p in &self.admin_failed {
            if let Some(v) = self.class.path(p) {
                if v.is_good() {
                    self.violation(&format!("admin-failed {} is good again", v.name()));
                }
            }
        }
        for (p, probe) in &self.probing {
            if self.class.path(*p).is_some_and(|v| !v.is_probing()) {
                self.violation(&format!(
                    "probe on {} in flight but not counted",
                    probe.provider
                ));
            }
        }
    }

    /// The class's counters equal what the fabric saw: every attempt that came back (or
    /// was given up on) counted once on its path, with its bytes and its error, and its
    /// latency (the fabric always gives the time); every answer counted once on its geom.
    fn check_counters(&mut self) {
        self.seen_on_path
            .retain(|&p, _| self.class.path(p).is_some());
        self.seen_on_geom
            .retain(|&g, _| self.class.geom(g).is_some());
        for (&p, seen) in &self.seen_on_path {
            let stats = self.class.path_stats(p).expect("attached");
            let counted = Seen {
                requests: stats.requests(),
                bytes: stats.ops.iter().map(|o| o.bytes).sum(),
                errors: stats.ops.iter().map(|o| o.errors).sum(),
            };
            let timed: u64 = stats.ops.iter().map(|o| o.latency.count()).sum();
            if counted != *seen || stats.errors.total() != seen.errors || timed != seen.requests {
                let name = self.class.path(p).unwrap().name().to_string();
                self.violation(&format!(
                    "{name} counted {counted:?} ({timed} timed, {} by errno), the fabric saw \
                     {seen:?}",
                    stats.errors.total()
                ));
            }
        }
        for (&g, seen) in &self.seen_on_geom {
            let stats = self.class.geom_stats(g).expect("live");
            let counted = Seen {
                requests: stats.ops.iter().map(|o| o.requests).sum(),
                bytes: stats.ops.iter().map(|o| o.bytes).sum(),
                errors: stats.ops.iter().map(|o| o.errors).sum(),
            };
            if counted != *seen || stats.errors.total() != seen.errors {
                self.violation(&format!(
                    "geom counted {counted:?} answers, the fabric delivered {seen:?}"
                ));
            }
        }
    }

    fn violation(&self, what: &str) -> ! {
        panic!(
            "invariant violated at t={}ns (step {}): {what}\n{}",
            self.now,
            self.steps,
            self.dump()
        );
    }

    /// Everything about the fabric, for a panic message.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "--- fabric at t={}ns, step {} ---",
            self.now, self.steps
        );
        for g in self.class.geoms() {
            let v = self.class.geom(g).unwrap();
            let _ = writeln!(
                out,
                "geom {} {:?} {:?} ndisks={} active={:?} stopping={} withered={}{}",
                v.name(),
                g,
                v.mode(),
                v.ndisks(),
                v.active()
                    .and_then(|a| self.class.path(a))
                    .map(|p| p.name().to_string()),
                v.stopping(),
                v.withered(),
                if Some(g) == self.geom { " (open)" } else { "" }
            );
            for p in v.paths() {
                let pv = self.class.path(p).unwrap();
                let _ = writeln!(
                    out,
                    "  path {} {:?} state={:?} inflight={} orphaned={}",
                    pv.name(),
                    p,
                    self.class.path_state(p),
                    pv.inflight(),
                    pv.is_orphaned()
                );
            }
        }
        let _ = writeln!(out, "outcomes: {:?}", self.outcome);
        for (token, r) in &self.in_flight {
            let _ = writeln!(
                out,
                "in flight {token}: {:?} route={:?} max_ndisks={}",
                r.bio.op, r.route, r.max_ndisks
            );
        }
        for (id, a) in &self.attempts {
            let _ = writeln!(
                out,
                "attempt {id}: token {} on {} parked={}",
                a.token, a.provider, a.parked
            );
        }
        for ((at, _), s) in self.timeline.iter().take(20) {
            let _ = writeln!(out, "due {at}: {s:?}");
        }
        let messages = self.topo.messages();
        let start = messages.len().saturating_sub(20);
        for m in &messages[start..] {
            let _ = writeln!(out, "log: {m}");
        }
        out
    }
}

/// The `create` flags for `mode`.
pub fn mode_flags(mode: Mode) -> [(&'static str, bool); 2] {
    match mode {
        Mode::ActivePassive => [("active_active", false), ("active_read", false)],
        Mode::ActiveActive => [("active_active", true), ("active_read", false)],
        Mode::ActiveRead => [("active_active", false), ("active_read", true)],
    }
}

/// `Action::SetOutcome` for `provider`.
pub fn set_outcome(provider: &str, outcome: Outcome) -> Action {
    Action::SetOutcome {
        provider: provider.to_string(),
        outcome,
    }
}

/// Every mode, for tests that run in each.
pub const MODES: [Mode; 3] = [Mode::ActivePassive, Mode::ActiveActive, Mode::ActiveRead];

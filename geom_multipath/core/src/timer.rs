//! The class's clock-driven policy: a fixed table of timers keyed by [`Timer`], read with
//! [`Class::poll_timeout`] and fired with [`Class::handle_timeout`]: the per-path I/O
//! deadline (`kern.geom.multipath.io_timeout`) and the issue-12 extensions' timers (the
//! checker's rounds, service-time sampling, queue timeouts, anti-flap holds, deferred
//! failback, a queueing geom lingering without paths). All are extensions: with every
//! tunable at its default the table stays empty, as FreeBSD has no timers.
//!
//! The I/O deadline's slot is armed when an attempt is sent. The extensions' due times live
//! with the state they belong to (each geom's next check, its oldest waiting request, each
//! path's hold), and `poll_timeout` takes the earliest of them; anything an input starts
//! that is measured in time (a request queued, a path failing, a deferred failback) is
//! stamped relative ([`Stamp::After`]) and made absolute by the next `handle_timeout`,
//! which `poll_timeout` asks for at once ([`Timer::Clock`]).
//!
//! The class has no clock: the driver says what time it is ([`Time`], monotonic
//! nanoseconds from an origin of its choosing) when it sends an attempt
//! ([`Class::arm_deadline`]) and when a timer falls due. Each timer slot holds the earliest
//! moment something may be due; it may be early (a request answered in time leaves its
//! deadline in the slot), never late, so a driver that calls `handle_timeout` at
//! `poll_timeout` misses nothing and a spurious call is harmless.
//!
//! The I/O deadline: an attempt not answered within its path's `io_timeout` (the
//! per-provider override, else the tunable; 0 = wait for ever, as FreeBSD does) fails its
//! path as ENXIO would (`Error 6, <path> in <geom> marked FAIL`): no new request goes
//! there. What happens to the request depends on whether a copy of it landing late could
//! do harm — the rule of SCSI error handling and NVMe, which retry a command elsewhere only
//! once the first copy is aborted or the controller's quiesce time has passed:
//!
//! * A **read** (or an attribute query) is re-driven at once: the attempt is abandoned,
//!   not cancelled, and the driver discards its late answer (the re-drive reads into a
//!   fresh buffer).
//! * A **write, delete or flush** is *held*: it stays in flight on its path, and is
//!   re-driven only once its first copy can no longer land — its answer arrived (any
//!   result: it goes through [`Class::done`] as usual, so a late success is delivered as
//!   one), the path is gone for good ([`Class::orphan`]), or the path's `quiesce_time` (a
//!   per-provider setting the admin states for that target, seconds after the path was
//!   failed; none by default, which waits for one of the other two) has passed. Only then
//!   is the attempt abandoned and the request re-driven, so an acknowledged write is never
//!   followed by an older copy of the same range landing.
//!
//! An abandoned attempt is reported through [`Class::poll_expired`]: the driver keeps its
//! path from carrying anything until the late answer is back (the host fences the
//! provider) and discards that answer.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::class::{Class, FAIL};
use crate::errno::Errno;
use crate::event::Message;
use crate::io::{Bio, Done};
use crate::selector::SAMPLE_NS;
use crate::settings::Selector;
use crate::stats::FailCause;
use crate::topology::{Deferred, GeomId, PathId};

/// A moment on the driver's monotonic clock, in nanoseconds from an origin the driver
/// chooses (the kernel's `sbinuptime`, the host's start-up `Instant`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub u64);

impl Time {
    /// `secs` seconds later (saturating).
    pub fn plus_secs(self, secs: u32) -> Time {
        Time(self.0.saturating_add(u64::from(secs) * 1_000_000_000))
    }
}

/// The class's timers: one slot each in the fixed table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// The earliest I/O deadline of an attempt in flight.
    IoDeadline = 0,
    /// Something was stamped relative to now: the class needs the time.
    Clock,
    /// A geom's checker probes its paths (`check_interval`).
    Check,
    /// A geom's service-time selector samples throughput.
    Sample,
    /// A request waiting for a usable path times out (`queue_timeout`).
    Queue,
    /// A flapping path's hold ends (`flap_hold`).
    Hold,
    /// A returned path takes over as active (`failback deferred:N`).
    Failback,
    /// A geom that lost its last path while queueing is destroyed if none came back.
    Linger,
}

impl Timer {
    /// Every timer, in table order.
    pub const ALL: [Timer; 8] = [
        Timer::IoDeadline,
        Timer::Clock,
        Timer::Check,
        Timer::Sample,
        Timer::Queue,
        Timer::Hold,
        Timer::Failback,
        Timer::Linger,
    ];
}

/// The fixed timer table: when each [`Timer`] falls due, if armed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Timers {
    /// The I/O deadline's slot (the extensions' due times live with their state).
    slots: [Option<Time>; 1],
    /// Per-provider overrides of `io_timeout`, in seconds.
    io_timeouts: BTreeMap<String, u32>,
    /// Per-provider `quiesce_time`, in seconds: how long after its path failed a held
    /// write may still land.
    quiesce_times: BTreeMap<String, u32>,
    /// Attempts given up on at their deadline, for the driver to carry out.
    expired: VecDeque<Expired>,
}

impl Timers {
    /// Arms `timer` for `at` unless it is armed earlier already.
    fn arm_no_later_than(&mut self, timer: Timer, at: Time) {
        let slot = &mut self.slots[timer as usize];
        if slot.is_none_or(|t| at < t) {
            *slot = Some(at);
        }
    }
}

/// An attempt the class gave up on at its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired {
    /// The request's token.
    pub token: u64,
    /// The path the abandoned attempt is still out on: the driver keeps it from carrying
    /// requests until that attempt's late answer is back, and discards the answer.
    pub abandoned_on: PathId,
    /// What to do with the request now, as [`Class::done`] would say.
    pub done: Done,
}

impl Class {
    // ----- the I/O deadline's settings --------------------------------------------------

    /// `io_timeout` in seconds for requests to provider `name`: its override, else the
    /// tunable; 0 means no deadline.
    pub fn io_timeout(&self, name: &str) -> u32 {
        self.timers
            .io_timeouts
            .get(name)
            .copied()
            .unwrap_or_else(|| self.tunables.io_timeout())
    }

    /// Sets (`Some`) or removes (`None`) the `io_timeout` override of provider `name`. An
    /// attempt already sent keeps the deadline it was given.
    pub fn set_io_timeout_override(&mut self, name: &str, secs: Option<u32>) {
        match secs {
            Some(secs) => self.timers.io_timeouts.insert(name.to_string(), secs),
            None => self.timers.io_timeouts.remove(name),
        };
    }

    /// `quiesce_time` in seconds of provider `name`: how long after its path was failed at
    /// a deadline a write still out on it may land; 0 (the default) means "until its answer
    /// arrives or the provider is gone".
    pub fn quiesce_time(&self, name: &str) -> u32 {
        self.timers.quiesce_times.get(name).copied().unwrap_or(0)
    }

    /// Sets (`Some`) or removes (`None`) the `quiesce_time` of provider `name`. A write
    /// already held keeps the release time it was given.
    pub fn set_quiesce_time(&mut self, name: &str, secs: Option<u32>) {
        match secs {
            Some(secs) => self.timers.quiesce_times.insert(name.to_string(), secs),
            None => self.timers.quiesce_times.remove(name),
        };
    }

    /// Every `quiesce_time` set, by provider name.
    pub fn quiesce_times(&self) -> impl Iterator<Item = (&str, u32)> + '_ {
        self.timers
            .quiesce_times
            .iter()
            .map(|(name, &secs)| (name.as_str(), secs))
    }

    /// Every `io_timeout` override, by provider name.
    pub fn io_timeout_overrides(&self) -> impl Iterator<Item = (&str, u32)> + '_ {
        self.timers
            .io_timeouts
            .iter()
            .map(|(name, &secs)| (name.as_str(), secs))
    }

    // ----- the timer table ----------------------------------------------------------------

    /// The driver sent `bio`'s current attempt at `now`: give it its path's deadline, if
    /// that path has one, and remember when it went for its latency ([`crate::stats`]).
    pub fn arm_deadline(&mut self, bio: &mut Bio, now: Time) {
        let Some(path) = bio.path() else {
            return;
        };
        bio.sent = Some(now);
        self.tell_time(now);
        let secs = self
            .paths
            .get(path.0)
            .map_or(0, |p| self.io_timeout(&p.name));
        if secs == 0 {
            bio.deadline = None;
            return;
        }
        let at = now.plus_secs(secs);
        bio.deadline = Some(at);
        self.timers.arm_no_later_than(Timer::IoDeadline, at);
    }

    /// When the next timer falls due, if any is armed: the earliest entry of the table. A
    /// time at or before the last `handle_timeout` means "call it now". O(geoms) with the
    /// extensions off, O(geoms + paths) with them on.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.next_timer().map(|(at, _)| at)
    }

    /// The earliest entry of the table and its kind.
    pub fn next_timer(&self) -> Option<(Time, Timer)> {
        let deadline = self.timers.slots[Timer::IoDeadline as usize];
        let policy = self.next_policy_timer().map(|(at, t)| (Time(at), t));
        match (deadline.map(|at| (at, Timer::IoDeadline)), policy) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Fires every timer due at `now`. `in_flight` is every request the driver has in
    /// flight (the class keeps no table of them). Each attempt past its deadline fails its
    /// path as on ENXIO; a read is given up on at once, a write (delete, flush) is held
    /// until its path's `quiesce_time` has passed, its answer arrives or its path is
    /// orphaned (see the module documentation). An attempt given up on is queued for
    /// [`poll_expired`](Class::poll_expired), earliest deadline first, with what becomes of
    /// its request (reissued or ended); the slot is re-armed for the earliest deadline
    /// still ahead.
    ///
    /// Then the extensions' timers that are due run (see [`Timer`]).
    pub fn handle_timeout<'a>(
        &mut self,
        now: Time,
        in_flight: impl IntoIterator<Item = &'a mut Bio>,
    ) {
        self.tell_time(now);
        self.expire_deadlines(now, in_flight);
        self.run_policy_timers(now.0);
    }

    /// The I/O deadline's part of `handle_timeout`.
    fn expire_deadlines<'a>(
        &mut self,
        now: Time,
        in_flight: impl IntoIterator<Item = &'a mut Bio>,
    ) {
        let slot = &mut self.timers.slots[Timer::IoDeadline as usize];
        if slot.is_none_or(|due| due > now) {
            return;
        }
        *slot = None;
        let mut due: Vec<&mut Bio> = Vec::new();
        for bio in in_flight {
            let path_gone = bio
                .path()
                .is_some_and(|p| self.paths.get(p.0).is_none_or(|p| p.orphaned));
            match bio.deadline {
                _ if bio.held && path_gone => due.push(bio),
                Some(at) if at <= now => due.push(bio),
                Some(at) => self.timers.arm_no_later_than(Timer::IoDeadline, at),
                None => {}
            }
        }
        due.sort_by_key(|bio| (bio.deadline, bio.token));
        for bio in due {
            let Some(path) = bio.path() else {
                continue;
            };
            if !bio.held {
                self.count_deadline(path);
            }
            if !bio.held && bio.op.lands() {
                self.hold(bio, path, now);
                continue;
            }
            let done = self.complete(bio, Err(Errno::ENXIO), Some(now), true);
            self.timers.expired.push_back(Expired {
                token: bio.token,
                abandoned_on: path,
                done,
            });
        }
    }

    /// `bio`'s attempt on `path` is overdue and a late copy of it could still land: fail
    /// the path for new requests, and keep the attempt out there until its path's
    /// `quiesce_time` has passed (if it has one), its answer arrives, or the path is
    /// orphaned.
    fn hold(&mut self, bio: &mut Bio, path: PathId, now: Time) {
        bio.held = true;
        self.fail_path(bio.geom, path, Errno::ENXIO, FailCause::Deadline);
        let name = self.live_path(path).name.clone();
        let secs = self.quiesce_time(&name);
        bio.deadline = (secs > 0).then(|| now.plus_secs(secs));
        if let Some(at) = bio.deadline {
            self.timers.arm_no_later_than(Timer::IoDeadline, at);
        }
        let geom = self.live_geom(bio.geom).name.clone();
        self.log(Message::WriteHeld {
            path: name,
            geom,
            quiesce_time: secs,
        });
    }

    /// A path was orphaned with requests in flight: a write held on it may go now, so the
    /// table is due at once (a spurious wake is harmless).
    pub(crate) fn wake_for_orphan(&mut self) {
        self.timers.arm_no_later_than(Timer::IoDeadline, Time(0));
    }

    /// The next attempt given up on at its deadline, earliest first. Drain it after
    /// [`handle_timeout`](Class::handle_timeout), before `poll_event`.
    pub fn poll_expired(&mut self) -> Option<Expired> {
        self.timers.expired.pop_front()
    }
}

/// Nanoseconds per second.
pub(crate) const SEC: u64 = 1_000_000_000;

/// A point in time the class may not know yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stamp {
    /// This many nanoseconds after the next `handle_timeout`'s `now`.
    After(u64),
    /// This absolute time, in nanoseconds.
    At(u64),
}

impl Stamp {
    /// Makes a relative stamp absolute.
    pub(crate) fn fix(&mut self, now: u64) {
        if let Stamp::After(d) = *self {
            *self = Stamp::At(now.saturating_add(d));
        }
    }

    /// The absolute time, once known.
    pub(crate) fn at(self) -> Option<u64> {
        match self {
            Stamp::At(t) => Some(t),
            Stamp::After(_) => None,
        }
    }

    /// Due at `now` (a relative stamp never is: it is fixed first).
    pub(crate) fn due(self, now: u64) -> bool {
        self.at().is_some_and(|t| t <= now)
    }
}

impl Class {
    /// A time-measured thing was started: the next `handle_timeout` is due at once.
    pub(crate) fn want_clock(&mut self) {
        self.clock_wanted = true;
    }

    /// The earliest of the extensions' due times, in nanoseconds, and its kind.
    fn next_policy_timer(&self) -> Option<(u64, Timer)> {
        if self.clock_wanted {
            return Some((self.now, Timer::Clock));
        }
        let mut best: Option<(u64, Timer)> = None;
        let mut consider = |at: Option<u64>, timer: Timer| {
            if let Some(at) = at {
                if best.is_none_or(|(b, _)| at < b) {
                    best = Some((at, timer));
                }
            }
        };
        for &gid in &self.geom_order {
            let g = self.live_geom(gid);
            if g.settings.check_interval(&self.tunables) > 0 {
                consider(Some(g.next_check.unwrap_or(self.now)), Timer::Check);
            }
            if g.selector() == Selector::ServiceTime && !g.members.is_empty() {
                consider(Some(g.next_sample.unwrap_or(self.now)), Timer::Sample);
            }
            if let Some(front) = g.waiting.front_deadline() {
                consider(Some(front), Timer::Queue);
            }
            if !g.waiting.is_empty() && g.settings.queue_timeout(&self.tunables) == 0 {
                consider(Some(self.now), Timer::Queue);
            }
            consider(g.linger.and_then(|s| s.at()), Timer::Linger);
            for m in &g.members {
                let h = &self.live_path(m.id).health;
                consider(h.hold.and_then(|s| s.at()), Timer::Hold);
                consider(h.failback.and_then(|s| s.at()), Timer::Failback);
            }
        }
        best
    }

    /// The extensions' part of `handle_timeout`: it is `now` (nanoseconds); runs every
    /// extension timer that is due. Early or repeated calls do nothing harmful.
    fn run_policy_timers(&mut self, now: u64) {
        self.now = self.now.max(now);
        let now = self.now;
        if core::mem::take(&mut self.clock_wanted) {
            self.fix_stamps(now);
        }
        for gid in self.geom_order.clone() {
            if self.geoms.get(gid.0).is_none() {
                continue;
            }
            self.geom_timers(gid, now);
        }
    }

    /// Turns every relative stamp into an absolute one.
    fn fix_stamps(&mut self, now: u64) {
        for gid in self.geom_order.clone() {
            let ids: alloc::vec::Vec<_> =
                self.live_geom(gid).members.iter().map(|m| m.id).collect();
            for id in ids {
                self.live_path_mut(id).health.fix(now);
            }
            let g = self.live_geom_mut(gid);
            g.waiting.fix(now);
            if let Some(l) = &mut g.linger {
                l.fix(now);
            }
        }
    }

    /// One geom's due timers, in table order.
    fn geom_timers(&mut self, gid: GeomId, now: u64) {
        let interval = self.live_geom(gid).settings.check_interval(&self.tunables);
        let g = self.live_geom_mut(gid);
        if interval == 0 {
            g.next_check = None;
        } else if g
            .next_check
            .is_none_or(|t| t > now.saturating_add(u64::from(interval) * SEC))
        {
            // Newly armed, or the interval was shortened: the first round is one interval away.
            g.next_check = Some(now.saturating_add(u64::from(interval) * SEC));
        } else if g.next_check.is_some_and(|t| t <= now) {
            g.next_check = Some(now.saturating_add(u64::from(interval) * SEC));
            self.run_checks(gid);
        }
        let g = self.live_geom_mut(gid);
        if g.selector() != Selector::ServiceTime {
            g.next_sample = None;
        } else {
            match g.next_sample {
                None => g.next_sample = Some(now + SAMPLE_NS),
                Some(t) if t <= now => {
                    Class::sample(g, now - (t - SAMPLE_NS).min(now));
                    g.next_sample = Some(now + SAMPLE_NS);
                }
                Some(_) => {}
            }
        }
        self.expire_waiting(gid, now);
        let g = self.live_geom_mut(gid);
        if g.linger.is_some_and(|s| s.due(now)) {
            // Requests still waiting keep the geom until the last of them is answered.
            g.linger = g.waiting.back_deadline().map(Stamp::At);
            if g.linger.is_none() {
                self.deferred.push_back(Deferred::DestroyIfEmpty(gid));
            }
        }
        for path in self.order_vec(gid) {
            if self.paths.get(path.0).is_none() {
                continue;
            }
            let h = &self.live_path(path).health;
            if h.hold.is_some_and(|s| s.due(now)) {
                self.live_path_mut(path).health.hold = None;
                if self.member(path).flags & FAIL != 0 {
                    self.end_hold(path);
                }
            }
            if self.paths.get(path.0).is_none() {
                continue;
            }
            if self
                .live_path(path)
                .health
                .failback
                .is_some_and(|s| s.due(now))
            {
                self.live_path_mut(path).health.failback = None;
                self.fail_back(path);
            }
        }
    }
}

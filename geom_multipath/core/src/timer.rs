//! The class's clock-driven policy: a fixed table of timers keyed by [`Timer`], read with
//! [`Class::poll_timeout`] and fired with [`Class::handle_timeout`], and the one policy on
//! it today — the per-path I/O deadline (`kern.geom.multipath.io_timeout`, an extension).
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

use crate::class::Class;
use crate::errno::Errno;
use crate::event::Message;
use crate::io::{Bio, Done};
use crate::topology::PathId;

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
}

impl Timer {
    /// Every timer, in table order.
    pub const ALL: [Timer; 1] = [Timer::IoDeadline];
}

/// The fixed timer table: when each [`Timer`] falls due, if armed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Timers {
    slots: [Option<Time>; Timer::ALL.len()],
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
    /// that path has one.
    pub fn arm_deadline(&mut self, bio: &mut Bio, now: Time) {
        let Some(path) = bio.path() else {
            return;
        };
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

    /// When the next timer falls due, if any is armed: the earliest slot of the table.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.slots.iter().flatten().min().copied()
    }

    /// Fires every timer due at `now`. `in_flight` is every request the driver has in
    /// flight (the class keeps no table of them). Each attempt past its deadline fails its
    /// path as on ENXIO; a read is given up on at once, a write (delete, flush) is held
    /// until its path's `quiesce_time` has passed, its answer arrives or its path is
    /// orphaned (see the module documentation). An attempt given up on is queued for
    /// [`poll_expired`](Class::poll_expired), earliest deadline first, with what becomes of
    /// its request (reissued or ended); the slot is re-armed for the earliest deadline
    /// still ahead.
    pub fn handle_timeout<'a>(
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
            if !bio.held && bio.op.lands() {
                self.hold(bio, path, now);
                continue;
            }
            let done = self.done(bio, Err(Errno::ENXIO));
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
        self.fail_path(bio.geom, path, Errno::ENXIO);
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

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
//! per-provider override, else the tunable; 0 = wait for ever, as FreeBSD does) counts as
//! ENXIO on that path — the path is marked FAIL and the request is reissued on the next
//! good path, or ends in ENXIO — exactly as if the path had answered ENXIO. The attempt is
//! abandoned, not cancelled: the driver must keep that path from carrying anything until
//! the late answer is back (the host fences the provider) and discard that answer.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::class::Class;
use crate::errno::Errno;
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
    /// flight (the class keeps no table of them). Each attempt past its deadline is given
    /// up on — its path fails as on ENXIO, and the request is reissued or ends — and
    /// queued for [`poll_expired`](Class::poll_expired), earliest deadline first; the slot
    /// is re-armed for the earliest deadline still ahead.
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
            match bio.deadline {
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
            let done = self.done(bio, Err(Errno::ENXIO));
            self.timers.expired.push_back(Expired {
                token: bio.token,
                abandoned_on: path,
                done,
            });
        }
    }

    /// The next attempt given up on at its deadline, earliest first. Drain it after
    /// [`handle_timeout`](Class::handle_timeout), before `poll_event`.
    pub fn poll_expired(&mut self) -> Option<Expired> {
        self.timers.expired.pop_front()
    }
}

//! Path health beyond FreeBSD: the path checker (a probe of every path that is not LOST
//! each `check_interval`), automatic reinstatement of a FAIL path whose probe succeeds, the
//! anti-flap hold (dm's `san_path_err_*`), and failback to a returning path that ranks
//! before the active one.
//!
//! All of it is decisions and effects: a probe is a [`Check`] the driver polls with
//! [`Class::poll_check`], issues as one direct read of one logical block under the path's
//! I/O deadline, and reports with [`Class::handle_check_done`]. The class keeps at most one
//! probe in flight per path; probes do not count as data requests (they never steer routing)
//! but a path with a probe in flight is not idle, so it is not detached under it. A path the
//! admin failed is never reinstated by a probe. Everything is off by default and then none of
//! this runs.

use alloc::string::String;

use geom_multipath_sysctl::MAX_FLAP_THRESHOLD;

use crate::class::{Class, FAIL, LOST, NEW};
use crate::errno::Errno;
use crate::event::{Message, Probe};
use crate::settings::Failback;
use crate::state::Mode;
use crate::stats::FailCause;
use crate::timer::{Stamp, SEC};
use crate::topology::{GeomId, PathId};

/// A probe the driver must issue: one direct read of `length` bytes at `offset` on `path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    /// The geom the path belongs to.
    pub geom: GeomId,
    /// The path to read through.
    pub path: PathId,
    /// Byte offset: the label sector of an AUTOMATIC geom, sector 0 otherwise.
    pub offset: u64,
    /// One logical block.
    pub length: u64,
}

/// What the class knows about a path's health (FreeBSD knows nothing of this).
#[derive(Clone, Debug)]
pub(crate) struct Health {
    /// A probe is in flight.
    pub(crate) probing: bool,
    /// Failed by `gmultipath fail`: never reinstated by a probe.
    pub(crate) admin_failed: bool,
    /// When it went from good to FAIL, the most recent `MAX_FLAP_THRESHOLD` times (a ring).
    failures: [Option<Stamp>; MAX_FLAP_THRESHOLD as usize],
    next_failure: usize,
    /// Held out until then (anti-flap).
    pub(crate) hold: Option<Stamp>,
    /// Becomes active then if it still ranks first (failback deferred).
    pub(crate) failback: Option<Stamp>,
    /// Times it went from FAIL back to good (the invariants' view of flapping).
    pub(crate) returns: u32,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            probing: false,
            admin_failed: false,
            failures: [None; MAX_FLAP_THRESHOLD as usize],
            next_failure: 0,
            hold: None,
            failback: None,
            returns: 0,
        }
    }
}

impl Health {
    /// Held out by the anti-flap rule.
    pub(crate) fn held(&self) -> bool {
        self.hold.is_some()
    }

    pub(crate) fn fix(&mut self, now: u64) {
        for f in self.failures.iter_mut().flatten() {
            f.fix(now);
        }
        if let Some(h) = &mut self.hold {
            h.fix(now);
        }
        if let Some(f) = &mut self.failback {
            f.fix(now);
        }
    }

    fn record_failure(&mut self) {
        self.failures[self.next_failure] = Some(Stamp::After(0));
        self.next_failure = (self.next_failure + 1) % self.failures.len();
    }

    /// Failures at or after `since`.
    fn failures_since(&self, since: u64) -> u32 {
        let n = self
            .failures
            .iter()
            .filter(|f| f.and_then(|s| s.at()).is_some_and(|t| t >= since))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

impl Class {
    // ----- getters and the driver's side of a probe ---------------------------------------

    /// The next probe to issue, oldest first. Drain it after every input, with the other
    /// pollers, and answer each with [`handle_check_done`](Class::handle_check_done).
    pub fn poll_check(&mut self) -> Option<Check> {
        self.checks.pop_front()
    }

    /// A probe of `path` finished with `result` (a deadline that passed is ENXIO). A failed
    /// probe on a good path fails it as a failed request would; a good probe on a FAIL path
    /// reinstates it when reinstatement is on and the admin did not fail it. A path that is
    /// gone by now is ignored.
    pub fn handle_check_done(&mut self, path: PathId, result: Result<(), Errno>) {
        let Some(p) = self.paths.get_mut(path.0) else {
            return;
        };
        p.health.probing = false;
        let (geom, flags) = (p.geom, self.member(path).flags);
        if flags & (LOST | NEW) != 0 {
            self.detach_posted_if_idle(path);
            return;
        }
        match result {
            Err(error) => {
                let h = &mut self.live_path_mut(path).health;
                h.hold = None;
                let error = if error.fails_path() {
                    error
                } else {
                    Errno::EIO
                };
                self.count_probe(path, false);
                self.fail_path(geom, path, error, FailCause::Probe(error));
            }
            Ok(()) => {
                self.count_probe(path, true);
                let h = &self.live_path(path).health;
                let reinstate = self.live_geom(geom).settings.reinstate(&self.tunables);
                if flags & FAIL != 0 && reinstate && !h.admin_failed && !h.held() {
                    self.reinstate(path);
                }
            }
        }
    }

    // ----- the checker ---------------------------------------------------------------------

    /// One checker round: a probe for every path of the geom that is not LOST (or still
    /// attaching) and has none in flight.
    pub(crate) fn run_checks(&mut self, geom: GeomId) {
        let automatic = !self.live_geom(geom).uuid.is_empty();
        for path in self.order_vec(geom) {
            if self.member(path).flags & (LOST | NEW) != 0 || self.live_path(path).health.probing {
                continue;
            }
            let p = self.live_path_mut(path);
            p.health.probing = true;
            let length = u64::from(p.sectorsize);
            let offset = if automatic {
                p.mediasize.saturating_sub(length)
            } else {
                0
            };
            self.checks.push_back(Check {
                geom,
                path,
                offset,
                length,
            });
        }
    }

    // ----- reinstatement and anti-flap -----------------------------------------------------

    /// A path went from good to bad: remember when, for the anti-flap rule, and forget any
    /// failback it was waiting for.
    pub(crate) fn note_failure(&mut self, path: PathId) {
        let on = self.tunables.flap_threshold() > 0;
        let h = &mut self.live_path_mut(path).health;
        h.failback = None;
        if on {
            h.record_failure();
            self.want_clock();
        }
    }

    /// A good probe on a FAIL path: restore it as the `restore` verb would, unless it failed
    /// `flap_threshold` times within `flap_window`, in which case it is held out for
    /// `flap_hold` first.
    fn reinstate(&mut self, path: PathId) {
        let t = &self.tunables;
        let (threshold, window, hold) = (t.flap_threshold(), t.flap_window(), t.flap_hold());
        if threshold > 0 {
            let since = self.now.saturating_sub(u64::from(window) * SEC);
            let failures = self.live_path(path).health.failures_since(since);
            if failures >= threshold && hold > 0 {
                let (gname, name) = self.names(path);
                self.log(Message::Held {
                    path: name,
                    geom: gname,
                    failures,
                    window,
                    hold,
                });
                self.live_path_mut(path).health.hold = Some(Stamp::After(u64::from(hold) * SEC));
                self.want_clock();
                return;
            }
        }
        self.count_reinstatement(path);
        self.restore_path(path);
    }

    /// A held path's hold is over: it is reinstated (its last probe was good, or the hold
    /// would have been dropped) and its failure history starts afresh.
    pub(crate) fn end_hold(&mut self, path: PathId) {
        let (gname, name) = self.names(path);
        self.log(Message::HoldEnded {
            path: name,
            geom: gname,
        });
        let h = &mut self.live_path_mut(path).health;
        h.failures = [None; MAX_FLAP_THRESHOLD as usize];
        self.count_reinstatement(path);
        self.restore_path(path);
    }

    /// Clears FAIL on a path as `restore` does (`is marked OK.`, the restore probe), then
    /// lets failback decide whether it becomes active.
    pub(crate) fn restore_path(&mut self, path: PathId) {
        let (gname, name) = self.names(path);
        self.log(Message::MarkedOk {
            path: name.clone(),
            geom: gname.clone(),
        });
        self.member_mut(path).flags &= !FAIL;
        self.note_restored(path);
        let h = &mut self.live_path_mut(path).health;
        h.admin_failed = false;
        h.hold = None;
        h.returns = h.returns.saturating_add(1);
        self.probe(Probe::Restore {
            geom: gname.clone(),
            path: name.clone(),
        });
        // Only possible when every path was held FAIL for queueing: the first to return
        // carries the requests.
        let geom = self.live_path(path).geom;
        if self.live_geom(geom).active.is_none() {
            self.live_geom_mut(geom).active = Some(path);
            if self.live_geom(geom).mode != Mode::ActiveActive {
                self.log(Message::NowActive {
                    path: name,
                    geom: gname,
                });
            }
        }
        self.returned(path);
    }

    // ----- failback ------------------------------------------------------------------------

    /// A path became good again: with failback `immediate` it becomes active now if it ranks
    /// before the active path; with `deferred:N`, after N seconds if it is still good and
    /// still ranks first. Only the modes with an active path that carries writes are
    /// concerned (Active/Passive, Active/Read).
    pub(crate) fn returned(&mut self, path: PathId) {
        let geom = self.live_path(path).geom;
        let g = self.live_geom(geom);
        if g.mode == Mode::ActiveActive || !self.ranks_before_active(path) {
            return;
        }
        match g.settings.failback() {
            Failback::Manual => {}
            Failback::Immediate => self.fail_back(path),
            Failback::Deferred(n) => {
                self.live_path_mut(path).health.failback = Some(Stamp::After(u64::from(n) * SEC));
                self.want_clock();
            }
        }
    }

    /// The failback itself: `path` becomes active if it is good and ranks before the active
    /// path.
    pub(crate) fn fail_back(&mut self, path: PathId) {
        let geom = self.live_path(path).geom;
        if !self.member(path).is_good() || !self.ranks_before_active(path) {
            return;
        }
        self.live_geom_mut(geom).active = Some(path);
        let (gname, name) = self.names(path);
        self.log(Message::NowActive {
            path: name,
            geom: gname,
        });
    }

    /// Failback's rank: the path last named by `prefer` first, then FreeBSD's list order.
    fn ranks_before_active(&self, path: PathId) -> bool {
        let geom = self.live_path(path).geom;
        let g = self.live_geom(geom);
        let Some(active) = g.active else {
            return true;
        };
        if active == path {
            return false;
        }
        let rank = |p: PathId| {
            if g.preferred == Some(p) {
                0
            } else {
                // Kernel order (newest first) is the members list backwards.
                g.members.len() - self.live_path(p).index
            }
        };
        rank(path) < rank(active)
    }

    /// With queueing on and something to bring paths back (the checker with
    /// reinstatement), FreeBSD's "all paths failed, restore them" is not done: requests wait
    /// for a path that tested good instead of bouncing between dead ones.
    pub(crate) fn holds_failed(&self, geom: GeomId) -> bool {
        let g = self.live_geom(geom);
        let t = &self.tunables;
        g.settings.queue_timeout(t) > 0
            && g.settings.check_interval(t) > 0
            && g.settings.reinstate(t)
    }

    /// The geom's and the path's names, for messages.
    pub(crate) fn names(&self, path: PathId) -> (String, String) {
        let p = self.live_path(path);
        (self.live_geom(p.geom).name.clone(), p.name.clone())
    }
}

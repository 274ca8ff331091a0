//! Deadlines and fencing: how the host carries out the core's I/O deadline
//! ([`geom_multipath::timer`]). The owner's loop wakes at [`Owner::next_deadline`] and
//! calls [`Owner::expire`]; for each attempt the core gave up on, the provider it is still
//! out on is fenced — nothing is sent through it until that attempt's late answer is back,
//! so a late write can never land after a newer one — and the request goes on as the core
//! said. The late answer is discarded and lifts the fence once it is the last one out.
//!
//! Which attempt is overdue, and what that means for the path, is decided in the core.

use super::*;

/// Where a timed-out attempt was sent: its late answer lifts the fence on that provider
/// once it is the last one out.
pub(super) type Abandoned = IdMap<(u64, u32), String>;

impl Owner {
    /// `at` on the class's clock.
    pub(super) fn time_at(&self, at: Instant) -> Time {
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
    pub(super) fn late_answer(&mut self, token: u64, attempt: u32) -> bool {
        let Some(name) = self.abandoned.remove(&(token, attempt)) else {
            return false;
        };
        if !self.abandoned.values().any(|n| *n == name) {
            self.providers.unfence(&name);
            tracing::info!("{name}: the late answer arrived; the path may carry requests again");
        }
        true
    }
}

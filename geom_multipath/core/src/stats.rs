//! What the paths are doing, counted (an extension: FreeBSD keeps no such counters): per
//! path, the attempts and bytes each operation sent to it, its errors by errno, how often it
//! failed and why, the failovers and reissues away from it, its probes and reinstatements,
//! how long it has been good and failed, and a latency [`Histogram`] per operation; per
//! geom, the requests it answered (each once, however many attempts it took), its errors,
//! reissues, failovers and queueing episodes.
//!
//! The counters only count: they never steer routing, and nothing here allocates or
//! loops over more than a fixed handful of slots, so the data path pays O(1) for them.
//! A path's counters live and die with the path; a geom's with the geom;
//! [`Class::reset_stats`] zeroes them (dm's `reset maps stats`). Times are the driver's
//! ([`Time`]): latency is measured from the moment the driver says it sent an attempt
//! ([`Class::arm_deadline`]) to the moment it says the answer came
//! ([`Class::done_at`](crate::Class::done_at)); a driver with no clock (`done`) gets counts
//! without latency.

use alloc::vec::Vec;

use crate::class::Class;
use crate::errno::Errno;
use crate::io::{Bio, Op};
use crate::timer::Time;
use crate::topology::{GeomId, PathId};

/// The operations counted apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// BIO_READ.
    Read = 0,
    /// BIO_WRITE.
    Write = 1,
    /// BIO_DELETE.
    Delete = 2,
    /// BIO_FLUSH.
    Flush = 3,
    /// Everything else (attribute requests, other commands).
    Other = 4,
}

impl OpKind {
    /// Every kind, in the order the counters keep them.
    pub const ALL: [OpKind; 5] = [
        OpKind::Read,
        OpKind::Write,
        OpKind::Delete,
        OpKind::Flush,
        OpKind::Other,
    ];

    /// The kind of a request's command.
    pub fn of(op: Op) -> OpKind {
        match op {
            Op::Read => OpKind::Read,
            Op::Write => OpKind::Write,
            Op::Delete => OpKind::Delete,
            Op::Flush => OpKind::Flush,
            Op::GetAttr { .. } | Op::Other(_) => OpKind::Other,
        }
    }

    /// Its name in every output (`read`, `write`, `delete`, `flush`, `other`).
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::Delete => "delete",
            OpKind::Flush => "flush",
            OpKind::Other => "other",
        }
    }

    /// The kind called `name`, if any.
    pub fn from_name(name: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Sub-buckets per power of two: a bucket is at most 25 % wide.
const SUB_BITS: u32 = 2;
/// Below 2^10 ns (1.024 µs) everything shares the first bucket.
const FIRST_OCTAVE: u32 = 10;
/// From 2^40 ns (about 18 minutes) everything shares the last bucket.
const END_OCTAVE: u32 = 40;
/// Buckets of a [`Histogram`].
pub const LATENCY_BUCKETS: usize = 2 + ((END_OCTAVE - FIRST_OCTAVE) << SUB_BITS) as usize;

/// A latency histogram of fixed size with logarithmic buckets (four per power of two,
/// from 1 µs to about 18 minutes), the exact count, sum and maximum: recording is O(1)
/// and never allocates; quantiles are read from the buckets, so they are exact to within
/// a bucket (25 %) and never above the maximum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    buckets: [u64; LATENCY_BUCKETS],
    count: u64,
    sum_ns: u64,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: [0; LATENCY_BUCKETS],
            count: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }
}

impl Histogram {
    /// The bucket a latency of `ns` nanoseconds falls in.
    pub fn bucket_of(ns: u64) -> usize {
        let octave = 63 - (ns | 1).leading_zeros();
        if octave < FIRST_OCTAVE {
            0
        } else if octave >= END_OCTAVE {
            LATENCY_BUCKETS - 1
        } else {
            let sub = (ns >> (octave - SUB_BITS)) & ((1 << SUB_BITS) - 1);
            1 + (((octave - FIRST_OCTAVE) << SUB_BITS) as usize) + sub as usize
        }
    }

    /// The first latency, in nanoseconds, above bucket `index` (`u64::MAX` for the last).
    pub fn bucket_end(index: usize) -> u64 {
        if index == 0 {
            return 1 << FIRST_OCTAVE;
        }
        if index >= LATENCY_BUCKETS - 1 {
            return u64::MAX;
        }
        let i = (index - 1) as u32;
        let octave = FIRST_OCTAVE + (i >> SUB_BITS);
        let sub = u64::from(i & ((1 << SUB_BITS) - 1));
        ((1 << SUB_BITS) + sub + 1) << (octave - SUB_BITS)
    }

    /// A histogram read back from its parts (the counters' XML): `buckets` as
    /// (index, count) pairs; an index out of range is `None`.
    pub fn from_parts(
        buckets: impl IntoIterator<Item = (usize, u64)>,
        count: u64,
        sum_ns: u64,
        max_ns: u64,
    ) -> Option<Histogram> {
        let mut h = Histogram {
            count,
            sum_ns,
            max_ns,
            ..Histogram::default()
        };
        for (i, n) in buckets {
            *h.buckets.get_mut(i)? += n;
        }
        Some(h)
    }

    /// Counts one latency.
    pub fn record(&mut self, ns: u64) {
        self.buckets[Histogram::bucket_of(ns)] += 1;
        self.count += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// Latencies counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their sum, in nanoseconds (saturating).
    pub fn sum_ns(&self) -> u64 {
        self.sum_ns
    }

    /// The largest, in nanoseconds.
    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    /// The count in each bucket, by index.
    pub fn buckets(&self) -> &[u64; LATENCY_BUCKETS] {
        &self.buckets
    }

    /// The latency at or below which `permille`/1000 of the counted ones fall (p50 is
    /// 500, p99 990), as the end of its bucket capped at the maximum; 0 when empty.
    pub fn quantile(&self, permille: u32) -> u64 {
        quantile_of(&self.buckets, self.max_ns, permille)
    }
}

/// The `permille` quantile of bucket counts (a [`Histogram`]'s, or the difference of two
/// of its readings), capped at `max_ns`; 0 when every bucket is empty.
pub fn quantile_of(buckets: &[u64], max_ns: u64, permille: u32) -> u64 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0;
    }
    let rank = (u128::from(total) * u128::from(permille.min(1000))).div_ceil(1000);
    let rank = u64::try_from(rank).unwrap_or(u64::MAX).max(1);
    let mut seen = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Histogram::bucket_end(i).min(max_ns);
        }
    }
    max_ns
}

/// One operation's counters on a path: attempts that came back, their bytes, those that
/// failed, and how long they took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathOpStats {
    /// Attempts answered (or given up on at their deadline).
    pub requests: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Those answered with an error.
    pub errors: u64,
    /// Their latency, for attempts whose send and answer times the driver gave.
    pub latency: Histogram,
}

/// Errors counted by errno: a fixed set of slots, the first errnos seen; later distinct
/// errnos share [`other`](ErrnoCounts::other).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrnoCounts {
    slots: [(i32, u64); 6],
    other: u64,
}

impl ErrnoCounts {
    /// Counts one error.
    pub fn record(&mut self, e: Errno) {
        self.add(e, 1);
    }

    /// Counts `n` errors of `e` (`None`: errors whose errno found no slot).
    pub fn add_counted(&mut self, e: Option<Errno>, n: u64) {
        match e {
            Some(e) => self.add(e, n),
            None => self.other += n,
        }
    }

    fn add(&mut self, e: Errno, n: u64) {
        for slot in &mut self.slots {
            if slot.1 == 0 || slot.0 == e.0 {
                *slot = (e.0, slot.1 + n);
                return;
            }
        }
        self.other += n;
    }

    /// Each errno with its count, in the order first seen.
    pub fn iter(&self) -> impl Iterator<Item = (Errno, u64)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.1 != 0)
            .map(|&(e, n)| (Errno(e), n))
    }

    /// Errors whose errno found no slot.
    pub fn other(&self) -> u64 {
        self.other
    }

    /// Every error counted.
    pub fn total(&self) -> u64 {
        self.iter().map(|(_, n)| n).sum::<u64>() + self.other
    }
}

/// Why a path was last marked FAIL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailCause {
    /// A request's attempt came back with this error.
    Error(Errno),
    /// An attempt was not answered within the path's `io_timeout`.
    Deadline,
    /// `gmultipath fail`.
    Admin,
    /// The path checker's probe failed with this error.
    Probe(Errno),
}

impl core::fmt::Display for FailCause {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FailCause::Error(e) => write!(f, "error {e}"),
            FailCause::Deadline => f.write_str("deadline"),
            FailCause::Admin => f.write_str("admin"),
            FailCause::Probe(e) => write!(f, "probe error {e}"),
        }
    }
}

/// A path's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathStats {
    /// Per operation, indexed by [`OpKind`].
    pub ops: [PathOpStats; 5],
    /// The errors its attempts came back with (deadlines count as ENXIO).
    pub errors: ErrnoCounts,
    /// Times it went from good to FAIL.
    pub failures: u64,
    /// Times it was the active path when it failed or was lost, so I/O moved away.
    pub failovers: u64,
    /// Requests reissued on another path after failing here.
    pub reissues: u64,
    /// Attempts given up on at its deadline.
    pub deadlines: u64,
    /// Probes of the path checker that succeeded.
    pub probes_good: u64,
    /// Probes that failed.
    pub probes_bad: u64,
    /// Times it was reinstated automatically after a good probe.
    pub reinstatements: u64,
    /// When and why it was last marked FAIL.
    pub last_failure: Option<(Time, FailCause)>,
    /// Time spent good and failed, up to `since`.
    pub good_ns: u64,
    /// Time spent FAIL, up to `since`.
    pub failed_ns: u64,
    /// Whether it was good at `since`, and that moment (none before the first time the
    /// class heard of a clock).
    pub since: Option<(bool, Time)>,
}

impl PathStats {
    /// The counters of operation `kind`.
    pub fn op(&self, kind: OpKind) -> &PathOpStats {
        &self.ops[kind as usize]
    }

    /// Every operation's requests, summed.
    pub fn requests(&self) -> u64 {
        self.ops.iter().map(|o| o.requests).sum()
    }

    /// An attempt of `op` for `bytes` came back with `result` after `latency_ns`.
    pub(crate) fn attempt(
        &mut self,
        op: OpKind,
        bytes: u64,
        result: Result<(), Errno>,
        latency_ns: Option<u64>,
    ) {
        let o = &mut self.ops[op as usize];
        o.requests += 1;
        o.bytes += bytes;
        if let Err(e) = result {
            o.errors += 1;
            self.errors.record(e);
        }
        if let Some(ns) = latency_ns {
            o.latency.record(ns);
        }
    }

    /// The path is `good` (or not) at `now`: the time since the last reading goes to the
    /// state it was in then. O(1); a change between readings is dated at the reading.
    pub(crate) fn observe(&mut self, good: bool, now: Time) {
        if let Some((was_good, since)) = self.since {
            if now < since {
                return;
            }
            let span = now.0 - since.0;
            if was_good {
                self.good_ns += span;
            } else {
                self.failed_ns += span;
            }
        }
        self.since = Some((good, now));
    }

    /// Zeroes every counter; the path stays in the state it is in.
    pub(crate) fn reset(&mut self, good: bool, now: Option<Time>) {
        *self = PathStats {
            since: now.map(|t| (good, t)),
            ..PathStats::default()
        };
    }
}

/// One operation's counters on a geom: requests answered, their bytes, those answered
/// with an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GeomOpStats {
    /// Requests answered.
    pub requests: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Those answered with an error.
    pub errors: u64,
}

/// A geom's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeomStats {
    /// Per operation, indexed by [`OpKind`].
    pub ops: [GeomOpStats; 5],
    /// The errors its requests were answered with (no usable path is ENXIO).
    pub errors: ErrnoCounts,
    /// Attempts reissued on another path.
    pub reissues: u64,
    /// Times the active path failed or was lost and I/O moved away from it.
    pub failovers: u64,
    /// Times requests started waiting for a path (bounded queueing).
    pub queue_episodes: u64,
    /// Requests that waited for a path.
    pub queued: u64,
    /// Requests that waited and then failed (time up, queue full, queueing ended).
    pub queue_failed: u64,
}

impl GeomStats {
    /// The counters of operation `kind`.
    pub fn op(&self, kind: OpKind) -> &GeomOpStats {
        &self.ops[kind as usize]
    }

    /// A request of `op` for `bytes` was answered with `result`.
    pub(crate) fn answered(&mut self, op: OpKind, bytes: u64, result: Result<(), Errno>) {
        let o = &mut self.ops[op as usize];
        o.requests += 1;
        o.bytes += bytes;
        if let Err(e) = result {
            o.errors += 1;
            self.errors.record(e);
        }
    }
}

impl Class {
    // ----- getters ------------------------------------------------------------------------

    /// A path's counters, if it is attached.
    pub fn path_stats(&self, path: PathId) -> Option<&PathStats> {
        self.paths.get(path.0).map(|p| &*p.stats)
    }

    /// A geom's counters, if it exists.
    pub fn geom_stats(&self, geom: GeomId) -> Option<&GeomStats> {
        self.geoms.get(geom.0).map(|g| &g.stats)
    }

    /// The latest time a driver gave the class, if any: what counters are read against.
    pub fn clock(&self) -> Option<Time> {
        self.clock
    }

    // ----- commands -----------------------------------------------------------------------

    /// Zeroes the counters of `geom` and its paths, or of every geom when `None` (dm's
    /// `reset maps stats`). Requests in flight are counted when they come back.
    pub fn reset_stats(&mut self, geom: Option<GeomId>) {
        let geoms: Vec<GeomId> = match geom {
            Some(g) => Vec::from([g]),
            None => self.geoms().collect(),
        };
        let now = self.clock;
        for gid in geoms {
            let Some(g) = self.geoms.get_mut(gid.0) else {
                continue;
            };
            g.stats = GeomStats::default();
            for m in g.members.clone() {
                if let Some(p) = self.paths.get_mut(m.id.0) {
                    p.stats.reset(m.is_good(), now);
                }
            }
        }
    }

    /// Brings every path's state time up to `now` (before the counters are read).
    pub fn observe_states(&mut self, now: Time) {
        self.tell_time(now);
        for gid in self.geom_order.clone() {
            for m in self.live_geom(gid).members.clone() {
                self.live_path_mut(m.id).stats.observe(m.is_good(), now);
            }
        }
    }

    /// The path checker's probe of `path` succeeded (`ok`) or failed.
    pub(crate) fn count_probe(&mut self, path: PathId, ok: bool) {
        if let Some(p) = self.paths.get_mut(path.0) {
            if ok {
                p.stats.probes_good += 1;
            } else {
                p.stats.probes_bad += 1;
            }
        }
    }

    /// `path` is being reinstated automatically.
    pub(crate) fn count_reinstatement(&mut self, path: PathId) {
        if let Some(p) = self.paths.get_mut(path.0) {
            p.stats.reinstatements += 1;
        }
    }

    /// A request a driver sent directly to `path` ([`crate::direct_route`]) and answered
    /// itself succeeded after `latency_ns` (if timed): count it on the path and the geom as
    /// `done_at` would have. A path gone since is skipped; its geom still counts the answer.
    pub fn count_direct(&mut self, bio: &Bio, path: PathId, latency_ns: Option<u64>) {
        if let Some(p) = self.paths.get_mut(path.0) {
            p.stats
                .attempt(OpKind::of(bio.op), bio.length, Ok(()), latency_ns);
        }
        self.count_answer(bio, Ok(()));
    }

    // ----- hooks of the data path and the state changes -----------------------------------

    /// The driver says it is `now`.
    pub(crate) fn tell_time(&mut self, now: Time) {
        if self.clock.is_none_or(|t| now > t) {
            self.clock = Some(now);
        }
    }

    /// An attempt of `bio` on `path` came back with `result`, at `at` if the driver knows.
    pub(crate) fn count_attempt(
        &mut self,
        bio: &Bio,
        path: PathId,
        result: Result<(), Errno>,
        at: Option<Time>,
    ) {
        let latency = match (bio.sent, at) {
            (Some(sent), Some(at)) => Some(at.0.saturating_sub(sent.0)),
            _ => None,
        };
        // State time is kept by the state changes themselves (note_failed, note_restored)
        // and brought up to date when the counters are read, not here on every request.
        let _ = at;
        self.live_path_mut(path)
            .stats
            .attempt(OpKind::of(bio.op), bio.length, result, latency);
    }

    /// `bio` is answered with `result`.
    pub(crate) fn count_answer(&mut self, bio: &Bio, result: Result<(), Errno>) {
        if let Some(g) = self.geoms.get_mut(bio.geom.0) {
            g.stats.answered(OpKind::of(bio.op), bio.length, result);
        }
    }

    /// `bio` failed on `path` and is reissued elsewhere.
    pub(crate) fn count_reissue(&mut self, bio: &Bio, path: PathId) {
        self.live_path_mut(path).stats.reissues += 1;
        if let Some(g) = self.geoms.get_mut(bio.geom.0) {
            g.stats.reissues += 1;
        }
    }

    /// `path`, good until now, is marked FAIL for `cause`.
    pub(crate) fn note_failed(&mut self, path: PathId, cause: FailCause) {
        let now = self.clock;
        let stats = &mut self.live_path_mut(path).stats;
        stats.failures += 1;
        stats.last_failure = Some((now.unwrap_or_default(), cause));
        if let Some(now) = now {
            stats.observe(false, now);
        }
    }

    /// An attempt on `path` passed its deadline.
    pub(crate) fn count_deadline(&mut self, path: PathId) {
        if let Some(p) = self.paths.get_mut(path.0) {
            p.stats.deadlines += 1;
        }
    }

    /// `path`, the active one, failed or was lost: I/O moves away from it.
    pub(crate) fn note_failover(&mut self, path: PathId) {
        let geom = self.live_path(path).geom;
        self.live_path_mut(path).stats.failovers += 1;
        self.live_geom_mut(geom).stats.failovers += 1;
    }

    /// `path` is good again.
    pub(crate) fn note_restored(&mut self, path: PathId) {
        if let (Some(now), Some(p)) = (self.clock, self.paths.get_mut(path.0)) {
            p.stats.observe(true, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut end = 0;
        for i in 0..LATENCY_BUCKETS {
            let next = Histogram::bucket_end(i);
            assert!(next > end, "bucket {i}");
            assert_eq!(Histogram::bucket_of(end), i, "start of bucket {i}");
            assert_eq!(Histogram::bucket_of(next - 1), i, "end of bucket {i}");
            end = next;
        }
        assert_eq!(end, u64::MAX);
        assert_eq!(Histogram::bucket_of(0), 0);
        assert_eq!(Histogram::bucket_of(u64::MAX), LATENCY_BUCKETS - 1);
    }

    #[test]
    fn a_bucket_is_at_most_a_quarter_wide() {
        for i in 1..LATENCY_BUCKETS - 1 {
            let start = Histogram::bucket_end(i - 1);
            let end = Histogram::bucket_end(i);
            assert!((end - start) * 4 <= start, "bucket {i}: {start}..{end}");
        }
    }

    #[test]
    fn quantiles_come_from_the_buckets_and_never_exceed_the_max() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(500), 0);
        for _ in 0..98 {
            h.record(100_000); // 100 µs
        }
        h.record(5_000_000); // 5 ms
        h.record(7_000_000); // 7 ms
        assert_eq!(h.count(), 100);
        assert_eq!(h.sum_ns(), 98 * 100_000 + 12_000_000);
        assert_eq!(h.max_ns(), 7_000_000);
        let p50 = h.quantile(500);
        assert!((100_000..=125_000).contains(&p50), "{p50}");
        let p99 = h.quantile(990);
        assert!((5_000_000..=6_250_000).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1000), 7_000_000);
    }

    #[test]
    fn errnos_beyond_the_slots_are_counted_as_other_and_never_lost() {
        let mut c = ErrnoCounts::default();
        for e in 1..=9 {
            c.record(Errno(e));
        }
        c.record(Errno(1));
        assert_eq!(c.iter().next(), Some((Errno(1), 2)));
        assert_eq!(c.iter().count(), 6);
        assert_eq!(c.other(), 3);
        assert_eq!(c.total(), 10);
    }

    #[test]
    fn state_time_goes_to_the_state_of_the_last_reading() {
        let mut s = PathStats::default();
        s.observe(true, Time(100));
        s.observe(true, Time(300));
        s.observe(false, Time(400)); // failed somewhere in 300..400: dated at 400
        s.observe(false, Time(1_000));
        s.observe(true, Time(1_500));
        assert_eq!((s.good_ns, s.failed_ns), (300, 1_100));
        s.observe(true, Time(1_400)); // a clock going backwards is ignored
        assert_eq!((s.good_ns, s.failed_ns), (300, 1_100));
        s.reset(true, Some(Time(2_000)));
        assert_eq!(
            s,
            PathStats {
                since: Some((true, Time(2_000))),
                ..PathStats::default()
            }
        );
    }
}

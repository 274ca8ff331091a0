//! The path selectors beyond FreeBSD's least-busy (`configure -s`): round-robin with a
//! batch (dm's `rr_min_io`, VMware's `iops=`) and service-time (dm's default: the fewest
//! bytes in flight relative to the path's measured throughput), plus the throughput sampling
//! service-time reads.
//!
//! Routing stays what FreeBSD's is in cost: one pass over the geom's members, no allocation.
//! Throughput is measured without a clock in the data path: completions add their bytes to
//! the member, and a timer of the fixed table ([`Timer::Sample`](crate::Timer)) turns them
//! into a rate every [`SAMPLE_NS`] while a geom uses service-time.

use crate::class::{Class, Geom, Member, BAD};
use crate::settings::Selector;
use crate::topology::PathId;

/// How often service-time throughput is sampled: every 100 ms.
pub const SAMPLE_NS: u64 = 100_000_000;

impl Class {
    /// Round-robin: the current path takes `batch` requests, then the next good path in
    /// kernel order (wrapping) does.
    pub(crate) fn round_robin(g: &mut Geom, batch: u32) -> Option<PathId> {
        let n = g.members.len();
        if let Some(m) = g.members.get(g.rr_cursor) {
            if g.rr_left > 0 && m.flags & BAD == 0 {
                g.rr_left -= 1;
                return Some(m.id);
            }
        }
        // Kernel order is the list backwards, so "next" is the next lower index.
        let start = g.rr_cursor.min(n);
        for step in 1..=n {
            let i = (start + n - step) % n;
            if g.members[i].flags & BAD == 0 {
                g.rr_cursor = i;
                g.rr_left = batch - 1;
                return Some(g.members[i].id);
            }
        }
        None
    }

    /// Service-time: the good path whose bytes in flight, this request's included, take the
    /// least time at its measured throughput; fewer requests in flight, then kernel order,
    /// on a tie. A path not measured yet counts as fast as the fastest measured one, so a
    /// new or returning path gets tried.
    pub(crate) fn service_time(members: &mut [Member], length: u64) -> Option<PathId> {
        let fastest = members
            .iter()
            .filter(|m| m.flags & BAD == 0)
            .map(|m| m.rate)
            .max()
            .unwrap_or(0)
            .max(1);
        let mut best: Option<(usize, u128, u128, u32)> = None;
        for (i, m) in members.iter().enumerate().rev() {
            if m.flags & BAD != 0 {
                continue;
            }
            let rate = u128::from(if m.rate == 0 { fastest } else { m.rate });
            let work = u128::from(m.outstanding) + u128::from(length);
            let better = match best {
                None => true,
                // work / rate < best_work / best_rate, without dividing.
                Some((_, bw, br, bi)) => {
                    let (lhs, rhs) = (work * br, bw * rate);
                    lhs < rhs || (lhs == rhs && m.inflight < bi)
                }
            };
            if better {
                best = Some((i, work, rate, m.inflight));
            }
        }
        best.map(|(i, ..)| members[i].id)
    }

    /// One throughput sample of a geom that uses service-time, `elapsed` nanoseconds after
    /// the last: bytes completed become bytes per millisecond, smoothed; a path that had
    /// work and finished none is halved, an idle one keeps its rate.
    pub(crate) fn sample(g: &mut Geom, elapsed: u64) {
        if g.selector() != Selector::ServiceTime || elapsed == 0 {
            return;
        }
        for m in &mut g.members {
            let done = core::mem::take(&mut m.completed);
            if done > 0 {
                let measured = (u128::from(done) * 1_000_000 / u128::from(elapsed)).max(1);
                let measured = u64::try_from(measured).unwrap_or(u64::MAX);
                m.rate = if m.rate == 0 {
                    measured
                } else {
                    m.rate / 2 + measured / 2
                };
            } else if m.outstanding > 0 {
                m.rate = (m.rate / 2).max(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slab::Key;

    fn member(slot: u32, inflight: u32, outstanding: u64, rate: u64) -> Member {
        let mut m = Member::new(
            PathId(Key {
                slot,
                generation: 0,
            }),
            0,
        );
        m.inflight = inflight;
        m.outstanding = outstanding;
        m.rate = rate;
        m
    }

    #[test]
    fn service_time_weighs_bytes_by_throughput() {
        // Path 1 is four times faster: with 3x the bytes in flight it still finishes first.
        let mut ms = [member(0, 1, 4096, 100), member(1, 3, 12288, 400)];
        assert_eq!(Class::service_time(&mut ms, 4096), Some(ms[1].id));
        // With 8x (9 blocks at 4x the speed against 2) it does not.
        ms[1].outstanding = 8 * 4096;
        assert_eq!(Class::service_time(&mut ms, 4096), Some(ms[0].id));
    }

    #[test]
    fn service_time_tries_unmeasured_paths_and_skips_bad_ones() {
        let mut ms = [member(0, 0, 0, 1000), member(1, 0, 0, 0)];
        // Equal work, unmeasured counts as fastest: the tie goes to kernel order (newest).
        assert_eq!(Class::service_time(&mut ms, 512), Some(ms[1].id));
        ms[1].flags = BAD;
        assert_eq!(Class::service_time(&mut ms, 512), Some(ms[0].id));
        ms[0].flags = BAD;
        assert_eq!(Class::service_time(&mut ms, 512), None);
    }
}

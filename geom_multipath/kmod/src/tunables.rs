//! `kern.geom.multipath.*`: the values behind the SYSCTLs, read by the class on every call.
//!
//! The table of knobs is the sysctl crate's ([`geom_multipath::sysctl::TABLE`]); the shim
//! registers one `SYSCTL_PROC` per row that is not `host_only`, with the row's leaf, type and
//! description and the knob's index (`KPI_KNOB_*`) as `arg2`, and its handler calls [`get`]
//! and [`set`] through `gmp_rs_knob_get`/`gmp_rs_knob_set`. The values live here in atomics, so a sysctl never
//! waits for the class and works before `init` and after `fini`; they start at the table's
//! defaults (FreeBSD's for `debug` and `exclusive`). A test keeps the shim's SYSCTLs and the
//! table in step.

use core::sync::atomic::{AtomicU32, Ordering};

use geom_multipath::sysctl::{Knob, Values, TABLE};
use geom_multipath::Errno;

use crate::bindings as b;

const fn defaults() -> [AtomicU32; TABLE.len()] {
    let mut values = [const { AtomicU32::new(0) }; TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        values[i] = AtomicU32::new(TABLE[i].default);
        i += 1;
    }
    values
}

static KNOBS: [AtomicU32; TABLE.len()] = defaults();

/// The knob with index `index` (`KPI_KNOB_*`).
pub fn knob(index: u32) -> Option<Knob> {
    match i32::try_from(index).ok()? {
        b::KPI_KNOB_DEBUG => Some(Knob::Debug),
        b::KPI_KNOB_EXCLUSIVE => Some(Knob::Exclusive),
        b::KPI_KNOB_IO_TIMEOUT => Some(Knob::IoTimeout),
        b::KPI_KNOB_CHECK_INTERVAL => Some(Knob::CheckInterval),
        b::KPI_KNOB_REINSTATE => Some(Knob::Reinstate),
        b::KPI_KNOB_FLAP_THRESHOLD => Some(Knob::FlapThreshold),
        b::KPI_KNOB_FLAP_WINDOW => Some(Knob::FlapWindow),
        b::KPI_KNOB_FLAP_HOLD => Some(Knob::FlapHold),
        b::KPI_KNOB_QUEUE_TIMEOUT => Some(Knob::QueueTimeout),
        b::KPI_KNOB_QUEUE_MAX_REQUESTS => Some(Knob::QueueMaxRequests),
        b::KPI_KNOB_QUEUE_MAX_KBYTES => Some(Knob::QueueMaxKbytes),
        _ => None,
    }
}

/// The current value of knob `index`.
pub fn get(index: u32) -> Option<u32> {
    let knob = knob(index)?;
    Some(KNOBS[knob as usize].load(Ordering::Relaxed))
}

/// Sets knob `index` after checking the table's range; EINVAL if out of range or unknown.
pub fn set(index: u32, value: u32) -> Result<(), Errno> {
    let knob = knob(index).ok_or(Errno::EINVAL)?;
    let mut check = Values::default();
    check.set(knob, value).map_err(|_| Errno::EINVAL)?;
    KNOBS[knob as usize].store(value, Ordering::Relaxed);
    Ok(())
}

/// Every knob's current value, for the class.
pub fn snapshot() -> Values {
    let mut values = Values::default();
    for t in TABLE.iter() {
        // Values in KNOBS were range-checked by `set` (or are the defaults).
        let _ = values.set(t.knob, KNOBS[t.knob as usize].load(Ordering::Relaxed));
    }
    values
}

/// Puts every knob back to its default (module load, and between tests).
pub fn reset() {
    for t in TABLE.iter() {
        KNOBS[t.knob as usize].store(t.default, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kpi_knob_numbers_follow_the_table() {
        assert_eq!(b::KPI_KNOB_COUNT as usize, TABLE.len());
        for (i, t) in TABLE.iter().enumerate() {
            assert_eq!(knob(i as u32), Some(t.knob), "KPI_KNOB_* {i} is {}", t.leaf);
        }
        assert_eq!(knob(TABLE.len() as u32), None);
    }
}

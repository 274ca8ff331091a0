//! The `kern.geom.multipath.*` tunables: one table that the core, the kernel module (SYSCTL
//! registration) and the userland host (get/set over its control socket, a sysctl.conf-style
//! file at start) all read, so a name, a default or a range is written down exactly once.
//!
//! FreeBSD's own knobs come first, with FreeBSD's names, types, defaults and descriptions.
//! Every extension is opt-in: its default reproduces FreeBSD's behaviour.
//!
//! This crate owns the *description* of the knobs and a small value store ([`Values`]); it does
//! not own where the values live at run time (a kernel `u_int`, the host's core) nor how they
//! are printed (the front ends print exactly as sysctl(8) does).
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use core::fmt;

/// The sysctl node that holds every knob, with FreeBSD's description.
pub const NODE: &str = "kern.geom.multipath";
/// FreeBSD's description of [`NODE`].
pub const NODE_DESCRIPTION: &str = "GEOM_MULTIPATH tunables";

/// Which knob; the index into [`TABLE`] and [`Values`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Knob {
    /// `kern.geom.multipath.debug`: non-zero adds the taste chatter.
    Debug = 0,
    /// `kern.geom.multipath.exclusive`: open paths r1w1e1 from attach on.
    Exclusive = 1,
    /// `kern.geom.multipath.io_timeout` (extension): seconds a path may take to answer one
    /// request before it counts as ENXIO on that path; 0 waits for ever, as FreeBSD does.
    IoTimeout = 2,
}

/// The C type of a knob, as SYSCTL_UINT and friends see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `u_int` (SYSCTL_UINT).
    UInt,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Tunable {
    /// Which knob this row describes.
    pub knob: Knob,
    /// The leaf name under [`NODE`] (`debug`).
    pub leaf: &'static str,
    /// The full name (`kern.geom.multipath.debug`).
    pub name: &'static str,
    /// The C type.
    pub kind: Kind,
    /// The value at load time.
    pub default: u32,
    /// Smallest accepted value.
    pub min: u32,
    /// Largest accepted value.
    pub max: u32,
    /// The sysctl description (`sysctl -d`).
    pub description: &'static str,
    /// `true` for FreeBSD's own knobs, `false` for this implementation's extensions.
    pub freebsd: bool,
    /// `true` when only the userland host acts on the knob: the kernel module does not
    /// register it, since a knob that does nothing would be a trap.
    pub host_only: bool,
}

/// Every knob, FreeBSD's first, in [`Knob`] order.
pub const TABLE: [Tunable; 3] = [
    Tunable {
        knob: Knob::Debug,
        leaf: "debug",
        name: "kern.geom.multipath.debug",
        kind: Kind::UInt,
        default: 0,
        min: 0,
        max: u32::MAX,
        description: "Debug level",
        freebsd: true,
        host_only: false,
    },
    Tunable {
        knob: Knob::Exclusive,
        leaf: "exclusive",
        name: "kern.geom.multipath.exclusive",
        kind: Kind::UInt,
        default: 1,
        min: 0,
        // On or off: FreeBSD takes any number and treats all but 0 as on, so a typo such
        // as 2 or 10 went unnoticed (a deviation listed in gmultipath(8) COMPATIBILITY).
        max: 1,
        description: "Exclusively open providers",
        freebsd: true,
        host_only: false,
    },
    Tunable {
        knob: Knob::IoTimeout,
        leaf: "io_timeout",
        name: "kern.geom.multipath.io_timeout",
        kind: Kind::UInt,
        default: 0,
        min: 0,
        max: 86_400,
        description: "Seconds a path may take to answer a request before it is failed (0: wait)",
        freebsd: false,
        // GEOM cannot take back a request it has sent down, so the kernel cannot enforce it.
        host_only: true,
    },
];

impl Knob {
    /// This knob's row of [`TABLE`].
    pub fn tunable(self) -> &'static Tunable {
        &TABLE[self as usize]
    }
}

/// Looks a knob up by its full name (`kern.geom.multipath.debug`) or its leaf (`debug`).
pub fn lookup(name: &str) -> Option<&'static Tunable> {
    TABLE.iter().find(|t| t.name == name || t.leaf == name)
}

/// Why a value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetError {
    /// Not a decimal number that fits the knob's type.
    Invalid,
    /// Outside the knob's range.
    OutOfRange {
        /// The smallest accepted value.
        min: u32,
        /// The largest accepted value.
        max: u32,
    },
}

impl fmt::Display for SetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetError::Invalid => f.write_str("Invalid argument"),
            SetError::OutOfRange { min, max } => {
                write!(f, "value out of range ({min}..{max})")
            }
        }
    }
}

/// The current value of every knob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Values([u32; TABLE.len()]);

impl Default for Values {
    fn default() -> Self {
        let mut v = [0; TABLE.len()];
        let mut i = 0;
        while i < TABLE.len() {
            v[i] = TABLE[i].default;
            i += 1;
        }
        Values(v)
    }
}

impl Values {
    /// The value of `knob`.
    pub fn get(&self, knob: Knob) -> u32 {
        self.0[knob as usize]
    }

    /// Sets `knob` after checking its range; returns the old value.
    pub fn set(&mut self, knob: Knob, value: u32) -> Result<u32, SetError> {
        let t = knob.tunable();
        if value < t.min || value > t.max {
            return Err(SetError::OutOfRange {
                min: t.min,
                max: t.max,
            });
        }
        Ok(core::mem::replace(&mut self.0[knob as usize], value))
    }

    /// Parses `text` as sysctl(8) does for a `u_int` (decimal, surrounding blanks ignored) and
    /// sets `knob`; returns the old value.
    pub fn set_text(&mut self, knob: Knob, text: &str) -> Result<u32, SetError> {
        let value = text.trim().parse::<u32>().map_err(|_| SetError::Invalid)?;
        self.set(knob, value)
    }

    /// `kern.geom.multipath.debug`.
    pub fn debug(&self) -> u32 {
        self.get(Knob::Debug)
    }

    /// `kern.geom.multipath.exclusive`.
    pub fn exclusive(&self) -> u32 {
        self.get(Knob::Exclusive)
    }

    /// `kern.geom.multipath.io_timeout`, in seconds (0: no deadline).
    pub fn io_timeout(&self) -> u32 {
        self.get(Knob::IoTimeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freebsd_knobs_come_first_with_freebsd_defaults() {
        assert_eq!(TABLE[0].name, "kern.geom.multipath.debug");
        assert_eq!(TABLE[0].default, 0);
        assert_eq!(TABLE[0].description, "Debug level");
        assert_eq!(TABLE[1].name, "kern.geom.multipath.exclusive");
        assert_eq!(TABLE[1].default, 1);
        assert_eq!(TABLE[1].description, "Exclusively open providers");
        assert!(TABLE.iter().take(2).all(|t| t.freebsd));
    }

    #[test]
    fn table_rows_follow_knob_order_and_names() {
        for (i, t) in TABLE.iter().enumerate() {
            assert_eq!(t.knob as usize, i);
            assert_eq!(t.name.strip_prefix("kern.geom.multipath."), Some(t.leaf));
        }
    }

    #[test]
    fn extensions_default_to_freebsd_behaviour() {
        let v = Values::default();
        assert_eq!(
            v.io_timeout(),
            0,
            "io_timeout 0 means: wait, as FreeBSD does"
        );
        assert!(!Knob::IoTimeout.tunable().freebsd);
        assert!(Knob::IoTimeout.tunable().host_only);
        assert!(TABLE.iter().filter(|t| t.freebsd).all(|t| !t.host_only));
    }

    #[test]
    fn lookup_by_full_name_or_leaf() {
        assert_eq!(
            lookup("kern.geom.multipath.exclusive").unwrap().knob,
            Knob::Exclusive
        );
        assert_eq!(lookup("debug").unwrap().knob, Knob::Debug);
        assert!(lookup("kern.geom.multipath.nope").is_none());
    }

    #[test]
    fn set_checks_range_and_returns_old_value() {
        let mut v = Values::default();
        assert_eq!(v.set_text(Knob::Debug, " 1\n"), Ok(0));
        assert_eq!(v.debug(), 1);
        assert_eq!(v.set_text(Knob::Debug, "x"), Err(SetError::Invalid));
        assert_eq!(v.set_text(Knob::Debug, "-1"), Err(SetError::Invalid));
        assert_eq!(
            v.set(Knob::IoTimeout, 86_401),
            Err(SetError::OutOfRange {
                min: 0,
                max: 86_400
            })
        );
        assert_eq!(v.io_timeout(), 0);
    }

    /// Issue 11 item 10: `exclusive=2` was accepted; it is on or off.
    #[test]
    fn exclusive_is_zero_or_one() {
        let mut v = Values::default();
        assert_eq!(v.set(Knob::Exclusive, 0), Ok(1));
        assert_eq!(
            v.set(Knob::Exclusive, 2),
            Err(SetError::OutOfRange { min: 0, max: 1 })
        );
        assert_eq!(v.exclusive(), 0);
    }
}

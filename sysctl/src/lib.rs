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
    /// `kern.geom.multipath.check_interval` (extension): seconds between probes of every path
    /// that is not LOST; 0 never probes, as FreeBSD does.
    CheckInterval = 3,
    /// `kern.geom.multipath.reinstate` (extension): 1 restores a FAIL path whose probe
    /// succeeds; 0 leaves it FAIL until `gmultipath restore`, as FreeBSD does.
    Reinstate = 4,
    /// `kern.geom.multipath.flap_threshold` (extension): failures within `flap_window` that
    /// make a path flapping; 0 turns the anti-flap hold off.
    FlapThreshold = 5,
    /// `kern.geom.multipath.flap_window` (extension): seconds over which failures count.
    FlapWindow = 6,
    /// `kern.geom.multipath.flap_hold` (extension): seconds a flapping path is held out after
    /// it next tests good.
    FlapHold = 7,
    /// `kern.geom.multipath.queue_timeout` (extension): seconds a request with no usable path
    /// waits for one; 0 fails it at once with ENXIO, as FreeBSD does.
    QueueTimeout = 8,
    /// `kern.geom.multipath.queue_max_requests` (extension): requests one geom may hold
    /// waiting for a path.
    QueueMaxRequests = 9,
    /// `kern.geom.multipath.queue_max_kbytes` (extension): KiB of requests one geom may hold
    /// waiting for a path.
    QueueMaxKbytes = 10,
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
pub const TABLE: [Tunable; 11] = [
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
    extension(
        Knob::CheckInterval,
        "check_interval",
        "kern.geom.multipath.check_interval",
        0,
        86_400,
        "Seconds between probes of every path (0: never probe)",
    ),
    extension(
        Knob::Reinstate,
        "reinstate",
        "kern.geom.multipath.reinstate",
        0,
        1,
        "Restore a failed path when its probe succeeds (0: only by restore)",
    ),
    extension(
        Knob::FlapThreshold,
        "flap_threshold",
        "kern.geom.multipath.flap_threshold",
        0,
        MAX_FLAP_THRESHOLD,
        "Failures within flap_window that hold a path out (0: no hold)",
    ),
    Tunable {
        default: 60,
        min: 1,
        ..extension(
            Knob::FlapWindow,
            "flap_window",
            "kern.geom.multipath.flap_window",
            0,
            86_400,
            "Seconds over which path failures are counted",
        )
    },
    Tunable {
        default: 60,
        ..extension(
            Knob::FlapHold,
            "flap_hold",
            "kern.geom.multipath.flap_hold",
            0,
            86_400,
            "Seconds a flapping path is held out after it tests good",
        )
    },
    extension(
        Knob::QueueTimeout,
        "queue_timeout",
        "kern.geom.multipath.queue_timeout",
        0,
        86_400,
        "Seconds a request waits for a usable path (0: fail at once)",
    ),
    Tunable {
        default: 1024,
        min: 1,
        ..extension(
            Knob::QueueMaxRequests,
            "queue_max_requests",
            "kern.geom.multipath.queue_max_requests",
            0,
            1 << 20,
            "Requests a geom may hold while no path is usable",
        )
    },
    Tunable {
        default: 65_536,
        min: 1,
        ..extension(
            Knob::QueueMaxKbytes,
            "queue_max_kbytes",
            "kern.geom.multipath.queue_max_kbytes",
            0,
            16 << 20,
            "KiB of requests a geom may hold while no path is usable",
        )
    },
];

/// The most failures `flap_threshold` may count (a path remembers this many failure times).
pub const MAX_FLAP_THRESHOLD: u32 = 16;

/// An issue-12 extension's row: a `u_int` defaulting to `default` (its off value) in
/// `default..=max`, acted on by the host only for now.
const fn extension(
    knob: Knob,
    leaf: &'static str,
    name: &'static str,
    default: u32,
    max: u32,
    description: &'static str,
) -> Tunable {
    Tunable {
        knob,
        leaf,
        name,
        kind: Kind::UInt,
        default,
        min: default,
        max,
        description,
        freebsd: false,
        // The kernel module does not carry out the checker, reinstatement, anti-flap or
        // queueing yet (probes as bios from its thread, the queue drained on detach), so
        // it does not register these: a knob that does nothing would be a trap.
        host_only: true,
    }
}

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

    /// `kern.geom.multipath.check_interval`, in seconds (0: never probe).
    pub fn check_interval(&self) -> u32 {
        self.get(Knob::CheckInterval)
    }

    /// `kern.geom.multipath.reinstate`: a good probe restores a FAIL path.
    pub fn reinstate(&self) -> bool {
        self.get(Knob::Reinstate) != 0
    }

    /// `kern.geom.multipath.flap_threshold` (0: no anti-flap hold).
    pub fn flap_threshold(&self) -> u32 {
        self.get(Knob::FlapThreshold)
    }

    /// `kern.geom.multipath.flap_window`, in seconds.
    pub fn flap_window(&self) -> u32 {
        self.get(Knob::FlapWindow)
    }

    /// `kern.geom.multipath.flap_hold`, in seconds.
    pub fn flap_hold(&self) -> u32 {
        self.get(Knob::FlapHold)
    }

    /// `kern.geom.multipath.queue_timeout`, in seconds (0: no queueing).
    pub fn queue_timeout(&self) -> u32 {
        self.get(Knob::QueueTimeout)
    }

    /// `kern.geom.multipath.queue_max_requests`.
    pub fn queue_max_requests(&self) -> u32 {
        self.get(Knob::QueueMaxRequests)
    }

    /// `kern.geom.multipath.queue_max_kbytes`, in bytes.
    pub fn queue_max_bytes(&self) -> u64 {
        u64::from(self.get(Knob::QueueMaxKbytes)) * 1024
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
        assert_eq!(v.check_interval(), 0, "no probes, as FreeBSD");
        assert!(!v.reinstate(), "FAIL stays FAIL, as FreeBSD");
        assert_eq!(v.flap_threshold(), 0, "no anti-flap hold");
        assert_eq!(
            v.queue_timeout(),
            0,
            "no queueing: ENXIO at once, as FreeBSD"
        );
        assert!(TABLE.iter().skip(2).all(|t| !t.freebsd));
        assert!(TABLE
            .iter()
            .all(|t| t.min <= t.default && t.default <= t.max));
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

//! The words FreeBSD prints for modes and states (COMPAT.md §4.7), as enums, so every front
//! end (dumpconf, list, status, the host's logs) prints exactly the same strings.
//!
//! This module only names states; deciding which state a path or geom is in lives with the
//! class (`Class::path_state`, `Class::geom_state`).

use core::fmt;

/// `sc_active_active`: how requests are spread over the good paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// 0: every request goes to the one active path.
    #[default]
    ActivePassive,
    /// 1: every good path carries requests (fewest in flight, longest idle first).
    ActiveActive,
    /// 2: reads are spread like Active/Active, everything else goes to the active path.
    ActiveRead,
}

impl Mode {
    /// The `md_active_active` byte.
    pub fn to_byte(self) -> u8 {
        match self {
            Mode::ActivePassive => 0,
            Mode::ActiveActive => 1,
            Mode::ActiveRead => 2,
        }
    }

    /// The mode for an `md_active_active` byte, if it is one.
    pub fn from_byte(b: u8) -> Option<Mode> {
        match b {
            0 => Some(Mode::ActivePassive),
            1 => Some(Mode::ActiveActive),
            2 => Some(Mode::ActiveRead),
            _ => None,
        }
    }

    /// The mode for the `-A` / `-R` flags of create and label: `R` wins over `A`.
    pub fn from_flags(active_active: bool, active_read: bool) -> Mode {
        if active_read {
            Mode::ActiveRead
        } else if active_active {
            Mode::ActiveActive
        } else {
            Mode::ActivePassive
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::ActivePassive => "Active/Passive",
            Mode::ActiveActive => "Active/Active",
            Mode::ActiveRead => "Active/Read",
        })
    }
}

/// Whether a geom came from a label (`AUTOMATIC`, non-empty UUID) or from `create`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeomType {
    /// Created by `create`: no metadata, empty UUID.
    Manual,
    /// Assembled by taste from labels.
    Automatic,
}

impl fmt::Display for GeomType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GeomType::Manual => "MANUAL",
            GeomType::Automatic => "AUTOMATIC",
        })
    }
}

/// A path's (consumer's) `State`, in FreeBSD's priority order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PathState {
    /// Being attached.
    New,
    /// Its provider went away or it was removed; detached once idle.
    Lost,
    /// Marked failed by an I/O error or the `fail` verb.
    Fail,
    /// Failed, tested good again, and held out for flapping (extension; only with
    /// `kern.geom.multipath.flap_threshold` set).
    Held,
    /// Carries requests: the active path, or every good path in Active/Active.
    Active,
    /// A good path that carries reads (Active/Read).
    Read,
    /// A good standby path.
    Passive,
}

impl fmt::Display for PathState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathState::New => "NEW",
            PathState::Lost => "LOST",
            PathState::Fail => "FAIL",
            PathState::Held => "HELD",
            PathState::Active => "ACTIVE",
            PathState::Read => "READ",
            PathState::Passive => "PASSIVE",
        })
    }
}

/// A geom's and its provider's `State`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GeomState {
    /// Every attached path is good, and there are at least two.
    Optimal,
    /// Some path is not good, or there is only one path.
    Degraded,
    /// No good path.
    Broken,
}

impl fmt::Display for GeomState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GeomState::Optimal => "OPTIMAL",
            GeomState::Degraded => "DEGRADED",
            GeomState::Broken => "BROKEN",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn words_are_freebsds() {
        assert_eq!(Mode::ActivePassive.to_string(), "Active/Passive");
        assert_eq!(Mode::ActiveActive.to_string(), "Active/Active");
        assert_eq!(Mode::ActiveRead.to_string(), "Active/Read");
        assert_eq!(GeomType::Manual.to_string(), "MANUAL");
        assert_eq!(GeomType::Automatic.to_string(), "AUTOMATIC");
        let paths = [
            (PathState::New, "NEW"),
            (PathState::Lost, "LOST"),
            (PathState::Fail, "FAIL"),
            (PathState::Active, "ACTIVE"),
            (PathState::Read, "READ"),
            (PathState::Passive, "PASSIVE"),
        ];
        for (state, word) in paths {
            assert_eq!(state.to_string(), word);
        }
        assert_eq!(GeomState::Optimal.to_string(), "OPTIMAL");
        assert_eq!(GeomState::Degraded.to_string(), "DEGRADED");
        assert_eq!(GeomState::Broken.to_string(), "BROKEN");
    }

    #[test]
    fn mode_bytes_round_trip_and_r_wins_over_a() {
        for b in 0..=2 {
            assert_eq!(Mode::from_byte(b).unwrap().to_byte(), b);
        }
        assert_eq!(Mode::from_byte(3), None);
        assert_eq!(Mode::from_flags(true, true), Mode::ActiveRead);
        assert_eq!(Mode::from_flags(true, false), Mode::ActiveActive);
        assert_eq!(Mode::from_flags(false, false), Mode::ActivePassive);
    }
}

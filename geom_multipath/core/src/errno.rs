//! Error numbers as the class sees them: a thin newtype over the platform's `errno` values.
//!
//! The core only ever *recognises* EIO and ENXIO (the two errors that fail a path) and only
//! ever *produces* a handful of others (ENXIO for "no path", EEXIST for a duplicate attach).
//! Those all sit in the range where FreeBSD and Linux agree (1–34), so one set of constants
//! serves the kernel module and the Linux host alike. Every other value is passed through
//! untouched and printed as the number the driver gave (`Error 5, da0 in FRED marked FAIL`).

use core::fmt;

/// An `errno` value. Printed as its decimal number, as the kernel's `%d` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// Operation not permitted (someone else holds the provider for writing).
    pub const EPERM: Errno = Errno(1);
    /// Input/output error: fails the path and reissues the request.
    pub const EIO: Errno = Errno(5);
    /// Device not configured: fails the path and reissues; also "no usable path".
    pub const ENXIO: Errno = Errno(6);
    /// Cannot allocate memory.
    pub const ENOMEM: Errno = Errno(12);
    /// Device busy.
    pub const EBUSY: Errno = Errno(16);
    /// The provider is already attached.
    pub const EEXIST: Errno = Errno(17);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(22);
    /// No space left on device.
    pub const ENOSPC: Errno = Errno(28);

    /// `true` for the two errors that fail a path and make the class try another one.
    pub fn fails_path(self) -> bool {
        self == Errno::EIO || self == Errno::ENXIO
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_eio_and_enxio_fail_a_path() {
        assert!(Errno::EIO.fails_path());
        assert!(Errno::ENXIO.fails_path());
        for other in [
            Errno::EPERM,
            Errno::ENOSPC,
            Errno::ENOMEM,
            Errno(45),
            Errno(95),
        ] {
            assert!(!other.fails_path(), "{other:?}");
        }
    }

    #[test]
    fn prints_as_a_bare_number() {
        assert_eq!(alloc::format!("{}", Errno::EIO), "5");
    }
}

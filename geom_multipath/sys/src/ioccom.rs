//! FreeBSD's ioctl request encoding (`sys/sys/ioccom.h`) as `const fn`s, and the request
//! numbers the tools use on FreeBSD: the disk ioctls of `sys/sys/disk.h` that libgeom's
//! `g_mediasize`, `g_sectorsize`, `g_stripesize` and `g_flush` send, and the two the
//! daemon adds for its paths (`DIOCGDELETE`, `DIOCGPHYSPATH`). The GATE class's numbers
//! are in [`crate::ggate`].
//!
//! Pure arithmetic, compiled on every platform so that the numbers are checked by tests on
//! Linux; only FreeBSD ever passes them to `ioctl(2)` (`freebsd`).

use core::ffi::c_ulong;

/// Bits of the parameter length (`IOCPARM_SHIFT`).
pub const IOCPARM_SHIFT: u32 = 13;
/// Mask of the parameter length (`IOCPARM_MASK`).
pub const IOCPARM_MASK: u32 = (1 << IOCPARM_SHIFT) - 1;
/// No parameters (`IOC_VOID`).
pub const IOC_VOID: u32 = 0x2000_0000;
/// Copy parameters out (`IOC_OUT`).
pub const IOC_OUT: u32 = 0x4000_0000;
/// Copy parameters in (`IOC_IN`).
pub const IOC_IN: u32 = 0x8000_0000;
/// Copy parameters in and out (`IOC_INOUT`).
pub const IOC_INOUT: u32 = IOC_IN | IOC_OUT;

/// `_IOC(inout, group, num, len)`.
pub const fn ioc(inout: u32, group: u8, num: u8, len: usize) -> c_ulong {
    (inout | ((len as u32 & IOCPARM_MASK) << 16) | ((group as u32) << 8) | num as u32) as c_ulong
}

/// `_IO(group, num)`: no argument.
pub const fn io(group: u8, num: u8) -> c_ulong {
    ioc(IOC_VOID, group, num, 0)
}

/// `_IOR(group, num, type)`: the kernel writes a `len`-byte value.
pub const fn ior(group: u8, num: u8, len: usize) -> c_ulong {
    ioc(IOC_OUT, group, num, len)
}

/// `_IOW(group, num, type)`: the kernel reads a `len`-byte value.
pub const fn iow(group: u8, num: u8, len: usize) -> c_ulong {
    ioc(IOC_IN, group, num, len)
}

/// `_IOWR(group, num, type)`: the kernel reads a `len`-byte value and writes it back.
pub const fn iowr(group: u8, num: u8, len: usize) -> c_ulong {
    ioc(IOC_INOUT, group, num, len)
}

/// `DIOCGSECTORSIZE`: `_IOR('d', 128, u_int)`, the sector size in bytes.
pub const DIOCGSECTORSIZE: c_ulong = ior(b'd', 128, core::mem::size_of::<u32>());
/// `DIOCGMEDIASIZE`: `_IOR('d', 129, off_t)`, the media size in bytes.
pub const DIOCGMEDIASIZE: c_ulong = ior(b'd', 129, core::mem::size_of::<i64>());
/// `DIOCGFLUSH`: `_IO('d', 135)`, flush the write cache (BIO_FLUSH).
pub const DIOCGFLUSH: c_ulong = io(b'd', 135);
/// `DIOCGDELETE`: `_IOW('d', 136, off_t[2])`, forget `length` bytes at `offset`
/// (BIO_DELETE); the argument is `{offset, length}`.
pub const DIOCGDELETE: c_ulong = iow(b'd', 136, 2 * core::mem::size_of::<i64>());
/// `DIOCGSTRIPESIZE`: `_IOR('d', 139, off_t)`, the optimal access block in bytes.
pub const DIOCGSTRIPESIZE: c_ulong = ior(b'd', 139, core::mem::size_of::<i64>());
/// `MAXPATHLEN` (`sys/sys/param.h`): the size of `DIOCGPHYSPATH`'s buffer.
pub const MAXPATHLEN: usize = 1024;
/// `DIOCGPHYSPATH`: `_IOR('d', 141, char[MAXPATHLEN])`, `GEOM::physpath` as a
/// NUL-terminated string (ENOENT when the provider has none).
pub const DIOCGPHYSPATH: c_ulong = ior(b'd', 141, MAXPATHLEN);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_ioctls_have_freebsds_numbers() {
        // The values FreeBSD's headers give on every architecture (u_int and off_t have
        // the same sizes everywhere there).
        assert_eq!(DIOCGSECTORSIZE, 0x4004_6480);
        assert_eq!(DIOCGMEDIASIZE, 0x4008_6481);
        assert_eq!(DIOCGFLUSH, 0x2000_6487);
        assert_eq!(DIOCGSTRIPESIZE, 0x4008_648b);
        assert_eq!(DIOCGDELETE, 0x8010_6488);
        assert_eq!(DIOCGPHYSPATH, 0x4400_648d);
    }

    #[test]
    fn iowr_sets_both_directions() {
        assert_eq!(iowr(b'm', 4, 56), 0xC038_6D04);
        assert_eq!(IOC_INOUT, 0xC000_0000);
    }

    #[test]
    fn the_length_is_masked_to_13_bits() {
        assert_eq!(iow(b'G', 2, 64), 0x8040_4702);
        assert_eq!(iow(b'G', 2, 8192 + 64), 0x8040_4702, "bit 13 falls off");
        assert_eq!(ior(b'x', 1, 0), 0x4000_7801);
    }
}

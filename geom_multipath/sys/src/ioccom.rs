//! FreeBSD's ioctl request encoding (`sys/sys/ioccom.h`) as `const fn`s, and the request
//! numbers the tools use on FreeBSD: the disk ioctls of `sys/sys/disk.h` that libgeom's
//! `g_mediasize`, `g_sectorsize`, `g_stripesize` and `g_flush` send.
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

/// `DIOCGSECTORSIZE`: `_IOR('d', 128, u_int)`, the sector size in bytes.
pub const DIOCGSECTORSIZE: c_ulong = ior(b'd', 128, core::mem::size_of::<u32>());
/// `DIOCGMEDIASIZE`: `_IOR('d', 129, off_t)`, the media size in bytes.
pub const DIOCGMEDIASIZE: c_ulong = ior(b'd', 129, core::mem::size_of::<i64>());
/// `DIOCGFLUSH`: `_IO('d', 135)`, flush the write cache (BIO_FLUSH).
pub const DIOCGFLUSH: c_ulong = io(b'd', 135);
/// `DIOCGSTRIPESIZE`: `_IOR('d', 139, off_t)`, the optimal access block in bytes.
pub const DIOCGSTRIPESIZE: c_ulong = ior(b'd', 139, core::mem::size_of::<i64>());

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
    }

    #[test]
    fn the_length_is_masked_to_13_bits() {
        assert_eq!(iow(b'G', 2, 64), 0x8040_4702);
        assert_eq!(iow(b'G', 2, 8192 + 64), 0x8040_4702, "bit 13 falls off");
        assert_eq!(ior(b'x', 1, 0), 0x4000_7801);
    }
}

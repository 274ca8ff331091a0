//! The userland programs' only `unsafe` code (the kernel module's glue is the other place):
//! the block-device ioctls Linux offers no safe wrapper for (size, logical and physical
//! sector size, I/O hints), detaching the daemon into its own session, and on FreeBSD the
//! calls geom(8) makes (`freebsd`: the `GEOM_CTL` ioctl, `sysctlbyname`, the kld calls,
//! the disk ioctls) and those of the daemon's GEOM Gate export (`ggctl`: the ioctls on
//! `/dev/ggctl`), on Linux the io_uring submissions of the daemon's block I/O (`uring`,
//! which owns every buffer the kernel may still touch), and the aligned buffers those
//! requests travel in ([`iobuf`]). Every block carries a `SAFETY:` comment naming the
//! invariant it relies on.
//!
//! What can be checked without FreeBSD is kept apart from the calls and compiled
//! everywhere, so its tests run on Linux: the `gctl_req` layout and its wiring
//! ([`gctl`]), the GATE class's request layouts ([`ggate`]), FreeBSD's ioctl numbers
//! ([`ioccom`]) and the sysctl read loop ([`sized_read`]); beside them the hash of the
//! daemon's id-keyed maps ([`idhash`]). None of those modules holds `unsafe` code.
//!
//! Everything else the programs need from the kernel (inotify, netlink, eventfd, poll, peer
//! credentials, fallocate, mknod) has a safe API in `nix` or `std`.
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]

use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::{AsRawFd, BorrowedFd};
use std::process::Command;

#[cfg(target_os = "freebsd")]
pub mod freebsd;
pub mod gctl;
pub mod ggate;
#[cfg(target_os = "freebsd")]
pub mod ggctl;
pub mod idhash;
pub mod iobuf;
pub mod ioccom;
pub mod sized_read;
#[cfg(target_os = "linux")]
pub mod uring;

pub use iobuf::{IoBuf, ALIGN};

#[cfg(target_os = "freebsd")]
pub use freebsd::block_geometry;

/// The C library's `strerror(code)`, the text geom(8) prints (`Input/output error`;
/// `Device busy` on FreeBSD, `Device or resource busy` with glibc), without the
/// " (os error N)" that `std` adds.
pub fn strerror(code: i32) -> String {
    let text = io::Error::from_raw_os_error(code).to_string();
    match text.strip_suffix(&format!(" (os error {code})")) {
        Some(bare) => bare.to_string(),
        None => text,
    }
}

/// What the kernel says about a block device's shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockGeometry {
    /// Size in bytes (`BLKGETSIZE64`).
    pub size: u64,
    /// Logical sector size (`BLKSSZGET`): the unit of O_DIRECT I/O.
    pub logical: u32,
    /// Physical sector size (`BLKPBSZGET`).
    pub physical: u32,
    /// Optimal I/O size (`BLKIOOPT`), 0 if none: GEOM's stripe size.
    pub optimal: u32,
}

/// The raw ioctl wrappers `nix` generates (`unsafe fn`s, private to this module).
#[cfg(target_os = "linux")]
mod raw {
    #![allow(missing_docs)]
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    nix::ioctl_read_bad!(blksszget, nix::request_code_none!(0x12, 104), libc::c_int);
    nix::ioctl_read_bad!(blkpbszget, nix::request_code_none!(0x12, 123), libc::c_uint);
    nix::ioctl_read_bad!(blkioopt, nix::request_code_none!(0x12, 121), libc::c_uint);
    nix::ioctl_read_bad!(blkroget, nix::request_code_none!(0x12, 94), libc::c_int);
}
#[cfg(target_os = "linux")]
use raw::{blkgetsize64, blkioopt, blkpbszget, blkroget, blksszget};

/// Whether the block device open on `fd` is read-only (`BLKROGET`: `losetup -r`,
/// `blockdev --setro`, a write-protected disk). Linux lets such a device be opened for
/// writing and fails each write with `EPERM`; GEOM refuses the write access itself.
#[cfg(target_os = "linux")]
pub fn block_read_only(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut ro: libc::c_int = 0;
    // SAFETY: `fd` is a valid open descriptor for the whole call, and the ioctl writes
    // exactly one `int` into `ro`, which outlives the call.
    unsafe { blkroget(fd.as_raw_fd(), &mut ro) }?;
    Ok(ro != 0)
}

/// Asks the kernel for the geometry of the block device open on `fd`.
#[cfg(target_os = "linux")]
pub fn block_geometry(fd: BorrowedFd<'_>) -> io::Result<BlockGeometry> {
    let raw = fd.as_raw_fd();
    let mut size: u64 = 0;
    let mut logical: libc::c_int = 0;
    let mut physical: libc::c_uint = 0;
    let mut optimal: libc::c_uint = 0;
    // SAFETY: `raw` is a valid open descriptor for the whole call (borrowed from `fd`), and
    // each ioctl writes exactly one value of the pointee's type, which outlives the call.
    unsafe {
        blkgetsize64(raw, &mut size)?;
        blksszget(raw, &mut logical)?;
        blkpbszget(raw, &mut physical)?;
        blkioopt(raw, &mut optimal)?;
    }
    Ok(BlockGeometry {
        size,
        logical: u32::try_from(logical).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        physical,
        optimal,
    })
}

/// Closes every descriptor above standard error that the process inherited from whoever
/// started it (`bash -c 'exec 9>&1; gmultipath load' | cat` never saw EOF while the
/// daemon held fd 9). Call it first thing in `main`, before the process opens anything.
pub fn close_inherited_descriptors() -> io::Result<()> {
    // SAFETY: called at the start of `main`, before this process has opened a descriptor
    // of its own: nothing in it (no `File`, `OwnedFd` or library) owns a descriptor above
    // 2, so closing them invalidates no handle; close_range(2) touches no memory.
    let rc = unsafe { libc::close_range(3, libc::c_uint::MAX, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes `cmd` start in a new session (`setsid(2)` in the child before exec), so the daemon
/// keeps running when the terminal that loaded it goes away.
pub fn new_session(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls setsid(2),
    // which is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::from)?;
            Ok(())
        })
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn strerror_is_the_c_librarys_bare_text() {
        assert_eq!(super::strerror(22), "Invalid argument");
        assert_eq!(super::strerror(2), "No such file or directory");
        assert_eq!(super::strerror(5), "Input/output error");
        assert!(!super::strerror(16).contains("os error"));
    }

    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_regular_file_is_not_a_block_device() {
        let f = std::fs::File::open("/proc/self/status").unwrap();
        assert!(block_geometry(f.as_fd()).is_err());
    }
}

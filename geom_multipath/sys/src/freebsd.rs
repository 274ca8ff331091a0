//! The FreeBSD calls geom(8) and libgeom make, as safe functions: the `GEOM_CTL` ioctl on
//! `/dev/geom.ctl` (one control request), `sysctlbyname(3)` (`kern.geom.confxml`,
//! `kern.module_path`), the kld calls (`modfind`, `kldload`, `kldfind`, `kldunload`) and the
//! disk ioctls of `g_open`, `g_mediasize`, `g_sectorsize`, `g_stripesize` and `g_flush`,
//! plus the two the daemon sends its paths (`DIOCGDELETE`, `DIOCGPHYSPATH`).
//!
//! Each function is one call and its errno; no policy (which module name, which error text,
//! when to retry the load) lives here. The request layout is [`crate::gctl`], tested on
//! every platform; the retry loop of the sysctl read is [`crate::sized_read`].

use core::ffi::{c_int, c_uint};
use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

use crate::gctl::{Arg, Frame, GEOM_CTL, PATH_GEOM_CTL};
use crate::ioccom::{
    DIOCGDELETE, DIOCGFLUSH, DIOCGMEDIASIZE, DIOCGPHYSPATH, DIOCGSECTORSIZE, DIOCGSTRIPESIZE,
    MAXPATHLEN,
};
use crate::sized_read::read_sized;
use crate::BlockGeometry;

/// The kld(2)/modfind(2) system calls, which the `libc` crate does not declare. They are
/// FreeBSD's libc (`<sys/linker.h>`, `<sys/module.h>`), linked by default.
mod ffi {
    use core::ffi::{c_char, c_int};

    extern "C" {
        pub fn modfind(modname: *const c_char) -> c_int;
        pub fn kldload(file: *const c_char) -> c_int;
        pub fn kldfind(file: *const c_char) -> c_int;
        pub fn kldunload(fileid: c_int) -> c_int;
    }
}

/// A name as C wants it; EINVAL if it holds a NUL.
fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `-1` and errno as an error, anything else as the value.
fn check(rc: c_int) -> io::Result<c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Runs one control request, as `gctl_issue` does after building it: opens
/// [`PATH_GEOM_CTL`] read-only and sends `GEOM_CTL` with `args` and the error buffer
/// `error` (use [`crate::gctl::ERROR_BUFSIZ`] bytes, zeroed). On return the kernel's error
/// text, if any, is in `error`, and writable parameters hold what the kernel wrote (it
/// writes them only when the request succeeded). `Err` is the open's or the ioctl's errno.
pub fn geom_ctl(args: &mut [Arg], error: &mut [u8]) -> io::Result<()> {
    let ctl = OpenOptions::new().read(true).open(PATH_GEOM_CTL)?;
    let mut frame = Frame::new(args, error)?;
    let req = frame.as_mut_ptr();
    // SAFETY: `ctl` stays open for the whole call. `req` points at the frame's gctl_req,
    // which is neither moved nor dropped before the call returns. Every pointer inside it
    // points into a buffer the frame borrows mutably, with that buffer's length beside it
    // (`nlen`, `len`, `lerror` = error length − 1; see `gctl::Frame`), so the kernel's
    // copyin of names and values and its copyout of writable values and of the error text
    // stay inside those buffers. GEOM_CTL is _IOW: the structure itself is only read.
    check(unsafe { libc::ioctl(ctl.as_raw_fd(), GEOM_CTL, req) })?;
    Ok(())
}

/// `sysctlbyname(3)` for reading: the value of `name`, sized as libgeom sizes
/// `kern.geom.confxml` (probe, slack, grow on ENOMEM).
pub fn sysctl_by_name(name: &str) -> io::Result<Vec<u8>> {
    let cname = c_name(name)?;
    read_sized(
        || {
            let mut len: libc::size_t = 0;
            // SAFETY: a size probe: `cname` is a NUL-terminated string that outlives the
            // call, oldp is NULL, oldlenp points at a live size_t, and nothing is set.
            check(unsafe {
                libc::sysctlbyname(cname.as_ptr(), ptr::null_mut(), &mut len, ptr::null(), 0)
            })?;
            Ok(len)
        },
        |buf| {
            let mut len: libc::size_t = buf.len();
            // SAFETY: oldp points at `buf` and oldlenp holds its length, so the kernel
            // writes at most `buf.len()` bytes into memory borrowed mutably for the call;
            // `cname` is NUL-terminated and outlives it; nothing is set.
            check(unsafe {
                libc::sysctlbyname(
                    cname.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    &mut len,
                    ptr::null(),
                    0,
                )
            })?;
            Ok(len)
        },
    )
}

/// A string sysctl (`kern.geom.confxml`, `kern.module_path`): the text before its NUL.
pub fn sysctl_string(name: &str) -> io::Result<String> {
    let bytes = sysctl_by_name(name)?;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// `modfind(2)`: the id of the kernel module `name` (`g_multipath`), if it is loaded.
pub fn modfind(name: &str) -> io::Result<i32> {
    let cname = c_name(name)?;
    // SAFETY: `cname` is a NUL-terminated string that outlives the call.
    check(unsafe { ffi::modfind(cname.as_ptr()) })
}

/// `kldload(2)`: loads the kernel file `file` (`geom_multipath`, searched for in
/// `kern.module_path`); its file id.
pub fn kldload(file: &str) -> io::Result<i32> {
    let cname = c_name(file)?;
    // SAFETY: `cname` is a NUL-terminated string that outlives the call.
    check(unsafe { ffi::kldload(cname.as_ptr()) })
}

/// `kldfind(2)`: the file id of the loaded kernel file `file`.
pub fn kldfind(file: &str) -> io::Result<i32> {
    let cname = c_name(file)?;
    // SAFETY: `cname` is a NUL-terminated string that outlives the call.
    check(unsafe { ffi::kldfind(cname.as_ptr()) })
}

/// `kldunload(2)`: unloads the kernel file with id `fileid`.
pub fn kldunload(fileid: i32) -> io::Result<()> {
    // SAFETY: takes a plain integer; no memory is shared with the kernel.
    check(unsafe { ffi::kldunload(fileid) })?;
    Ok(())
}

/// `g_sectorsize`: `DIOCGSECTORSIZE` on the disk device open on `fd`. libgeom's `g_open`
/// uses its success as the proof that a file is a GEOM provider.
pub fn disk_sectorsize(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut value: c_uint = 0;
    // SAFETY: `fd` is open for the whole call (borrowed), and DIOCGSECTORSIZE is
    // _IOR(u_int): the kernel writes exactly one u_int into `value`, which outlives it.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), DIOCGSECTORSIZE, &mut value) })?;
    Ok(value)
}

/// An `off_t` the disk ioctls answer, which is never negative for a sane device.
fn off_t_value(value: libc::off_t) -> io::Result<u64> {
    u64::try_from(value).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `g_mediasize`: `DIOCGMEDIASIZE` on the disk device open on `fd`.
pub fn disk_mediasize(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut value: libc::off_t = 0;
    // SAFETY: `fd` is open for the whole call (borrowed), and DIOCGMEDIASIZE is
    // _IOR(off_t): the kernel writes exactly one off_t into `value`, which outlives it.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), DIOCGMEDIASIZE, &mut value) })?;
    off_t_value(value)
}

/// `g_stripesize`: `DIOCGSTRIPESIZE` on the disk device open on `fd`.
pub fn disk_stripesize(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut value: libc::off_t = 0;
    // SAFETY: `fd` is open for the whole call (borrowed), and DIOCGSTRIPESIZE is
    // _IOR(off_t): the kernel writes exactly one off_t into `value`, which outlives it.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), DIOCGSTRIPESIZE, &mut value) })?;
    off_t_value(value)
}

/// `g_flush`: `DIOCGFLUSH` (BIO_FLUSH) on the disk device open on `fd`.
pub fn disk_flush(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is open for the whole call (borrowed), and DIOCGFLUSH is _IO: it takes
    // no argument and touches no memory of ours.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), DIOCGFLUSH) })?;
    Ok(())
}

/// `DIOCGDELETE` (BIO_DELETE) of `length` bytes at `offset` on the disk device open on
/// `fd` (both multiples of the sector size).
pub fn disk_delete(fd: BorrowedFd<'_>, offset: u64, length: u64) -> io::Result<()> {
    let invalid = || io::Error::from_raw_os_error(libc::EINVAL);
    let mut range: [libc::off_t; 2] = [
        libc::off_t::try_from(offset).map_err(|_| invalid())?,
        libc::off_t::try_from(length).map_err(|_| invalid())?,
    ];
    // SAFETY: `fd` is open for the whole call (borrowed), and DIOCGDELETE is
    // _IOW(off_t[2]): the kernel reads exactly the two off_t of `range`, which outlives it.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), DIOCGDELETE, range.as_mut_ptr()) })?;
    Ok(())
}

/// `DIOCGPHYSPATH`: the provider's `GEOM::physpath`, empty when it has none (ENOENT,
/// or a class that does not answer the attribute).
pub fn disk_physpath(fd: BorrowedFd<'_>) -> io::Result<String> {
    let mut buf = [0u8; MAXPATHLEN];
    // SAFETY: `fd` is open for the whole call (borrowed), and DIOCGPHYSPATH is
    // _IOR(char[MAXPATHLEN]): the kernel writes at most MAXPATHLEN bytes into `buf`, which
    // is exactly that long and outlives the call.
    match check(unsafe { libc::ioctl(fd.as_raw_fd(), DIOCGPHYSPATH, buf.as_mut_ptr()) }) {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::EOPNOTSUPP | libc::ENOTTY)
            ) =>
        {
            return Ok(String::new())
        }
        Err(e) => return Err(e),
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// The geometry of the disk device open on `fd`: media size, sector size (logical and,
/// as FreeBSD has no other, physical) and the stripe size as the optimal I/O size.
pub fn block_geometry(fd: BorrowedFd<'_>) -> io::Result<BlockGeometry> {
    let sector = disk_sectorsize(fd)?;
    Ok(BlockGeometry {
        size: disk_mediasize(fd)?,
        logical: sector,
        physical: sector,
        optimal: u32::try_from(disk_stripesize(fd).unwrap_or(0)).unwrap_or(0),
    })
}

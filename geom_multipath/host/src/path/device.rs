//! What a path's I/O goes to: the [`Device`] trait, a real block device opened with
//! O_DIRECT ([`BlockDevice`]: a Linux block device, or a FreeBSD disk device), and the
//! aligned buffers O_DIRECT needs ([`IoBuf`]). Memory and faulty devices for tests are in
//! the `testkit` feature.
//!
//! A device answers with the core's [`Errno`]: the mapping from `std::io::Error` happens
//! here, at the I/O boundary, so nothing above deals in `io::Error` for data requests.
//!
//! On FreeBSD a sandboxed daemon (Capsicum capability mode) may not open paths by name: once
//! `set_device_dir` has been given a descriptor of `/dev`, every node below `/dev` is
//! opened relative to it (`openat`), with the rights that descriptor carries.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use geom_multipath::Errno;

use crate::sys::{self, BlockGeometry};

pub use geom_multipath_sys::{IoBuf, ALIGN};

/// Where device nodes are.
pub const DEV_ROOT: &str = "/dev";

/// How a provider's device is opened.
pub enum Source {
    /// A block device, opened through this node.
    Block {
        /// The node to open (a private node of the same device).
        node: PathBuf,
        /// GEOM::physpath.
        physpath: String,
        /// GEOM::ident: who the disk is, if it can say.
        ident: Option<String>,
    },
    /// A provider stacked on another one (a NOP): taking access on it takes the same
    /// access on `lower`, and its device (which forwards to `lower`'s through a
    /// `ProviderTable::handle`) is ready-made.
    Stacked {
        /// The provider below.
        lower: String,
        /// This provider's device.
        device: Arc<dyn Device>,
    },
    /// A ready-made device (tests).
    Fixed(Arc<dyn Device>),
}

/// The errno of an I/O error (EIO when the error carries none).
pub fn errno_of(e: &io::Error) -> Errno {
    Errno(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Something a path can read and write.
pub trait Device: Send + Sync {
    /// Fills `buf` from `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), Errno>;
    /// Writes `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), Errno>;
    /// Makes written data durable.
    fn flush(&self) -> Result<(), Errno>;
    /// Forgets `len` bytes at `offset` (trim).
    fn discard(&self, offset: u64, len: u64) -> Result<(), Errno>;
    /// The device's answer to `GEOM::physpath`, if it has one.
    fn physpath(&self) -> Result<String, Errno>;

    /// Stops every further request on this device (they fail with ENXIO) and, where the
    /// transport allows, cuts what is in flight (an NBD connection is shut down). Used
    /// before a timed-out write is reissued elsewhere, so that nothing sent later through
    /// this device can race with the late copy. There is no way back for this device
    /// object: a fenced provider comes back as a new device (reopened, reconnected).
    fn fence(&self) {}

    /// The O_DIRECT descriptor reads, writes and flushes can be started on without a
    /// thread waiting for each (io_uring), when the device is a plain block device.
    fn direct_file(&self) -> Option<Arc<File>> {
        None
    }
}

/// The directory device nodes are opened from once the daemon is sandboxed (FreeBSD).
#[cfg(target_os = "freebsd")]
static DEVICE_DIR: std::sync::OnceLock<std::os::fd::OwnedFd> = std::sync::OnceLock::new();

/// From now on, open every node below `/dev` relative to `dir` (a descriptor of `/dev`),
/// as capability mode requires. `false` if a directory was given already.
#[cfg(target_os = "freebsd")]
pub fn set_device_dir(dir: std::os::fd::OwnedFd) -> bool {
    DEVICE_DIR.set(dir).is_ok()
}

/// The descriptor [`set_device_dir`] was given.
#[cfg(target_os = "freebsd")]
pub fn device_dir() -> Option<std::os::fd::BorrowedFd<'static>> {
    DEVICE_DIR.get().map(AsFd::as_fd)
}

/// Opens the device node `path` for reading, and for writing when `write`, with O_DIRECT;
/// `exclusive` adds O_EXCL on Linux, which keeps mounts and other exclusive openers (mkfs)
/// off the device. (FreeBSD's GEOM does not take exclusive access on an open, so there it
/// adds nothing.)
pub fn open_node(path: &Path, write: bool, exclusive: bool) -> io::Result<File> {
    #[cfg(target_os = "freebsd")]
    if let (Some(dir), Ok(rel)) = (device_dir(), path.strip_prefix(DEV_ROOT)) {
        use nix::fcntl::{openat, OFlag};
        let _ = exclusive;
        let access = if write {
            OFlag::O_RDWR
        } else {
            OFlag::O_RDONLY
        };
        let fd = openat(
            dir,
            rel,
            access | OFlag::O_DIRECT | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        return Ok(File::from(fd));
    }
    let mut flags = libc::O_DIRECT;
    if exclusive && cfg!(target_os = "linux") {
        flags |= libc::O_EXCL;
    }
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(flags)
        .open(path)
}

/// A block device opened read-write with O_DIRECT (and O_EXCL on request, on Linux).
pub struct BlockDevice {
    file: Arc<File>,
    physpath: String,
}

impl BlockDevice {
    /// Opens `path` for reading, and for writing when `write`; `exclusive` adds O_EXCL
    /// (see [`open_node`]).
    pub fn open(
        path: &Path,
        write: bool,
        exclusive: bool,
        physpath: String,
    ) -> io::Result<BlockDevice> {
        let file = Arc::new(open_node(path, write, exclusive)?);
        // GEOM refuses write access to a read-only provider (EROFS), so a geom is not
        // made of paths every write would fail on; Linux opens it and fails the writes.
        #[cfg(target_os = "linux")]
        if write && sys::block_read_only(file.as_fd()).unwrap_or(false) {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        Ok(BlockDevice { file, physpath })
    }

    /// Size and sector sizes as the kernel reports them.
    pub fn geometry(&self) -> io::Result<BlockGeometry> {
        sys::block_geometry(self.file.as_fd())
    }
}

impl Device for BlockDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), Errno> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => return Err(Errno::EIO),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(errno_of(&e)),
            }
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), Errno> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.write_at(&buf[done..], offset + done as u64) {
                Ok(0) => return Err(Errno::ENOSPC),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(errno_of(&e)),
            }
        }
        Ok(())
    }

    #[cfg(target_os = "linux")]
    fn flush(&self) -> Result<(), Errno> {
        self.file.sync_all().map_err(|e| errno_of(&e))
    }

    /// `DIOCGFLUSH` (BIO_FLUSH): fsync(2) on a disk device sends none.
    #[cfg(target_os = "freebsd")]
    fn flush(&self) -> Result<(), Errno> {
        sys::freebsd::disk_flush(self.file.as_fd()).map_err(|e| errno_of(&e))
    }

    #[cfg(target_os = "linux")]
    fn discard(&self, offset: u64, len: u64) -> Result<(), Errno> {
        use nix::fcntl::{fallocate, FallocateFlags};
        let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        fallocate(&self.file, flags, offset as i64, len as i64).map_err(|e| Errno(e as i32))
    }

    /// `DIOCGDELETE` (BIO_DELETE).
    #[cfg(target_os = "freebsd")]
    fn discard(&self, offset: u64, len: u64) -> Result<(), Errno> {
        sys::freebsd::disk_delete(self.file.as_fd(), offset, len).map_err(|e| errno_of(&e))
    }

    fn physpath(&self) -> Result<String, Errno> {
        Ok(self.physpath.clone())
    }

    fn direct_file(&self) -> Option<Arc<File>> {
        Some(self.file.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iobufs_are_aligned() {
        for len in [0, 512, 4096, 65536, 1 << 20] {
            let b = IoBuf::zeroed(len);
            assert_eq!(b.as_slice().as_ptr() as usize % ALIGN, 0);
            assert_eq!(b.len(), len);
        }
        assert_eq!(IoBuf::from_slice(b"abc").as_slice(), b"abc");
    }
}

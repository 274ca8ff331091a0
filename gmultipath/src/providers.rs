//! How the userland commands (`label`, `clear`) reach a provider: libgeom's `g_open`,
//! `g_get_mediasize`, `g_metadata_store`, `g_metadata_clear`.
//!
//! On Linux, a name that is a block device — given as a path, or found under /dev — is
//! opened directly, with O_DIRECT (two paths to one disk are coherent only without the page
//! cache) and O_EXCL when writing (so a provider somebody holds exclusively — a path of a
//! geom, a mounted file system — is refused, as FreeBSD refuses with EPERM). Its geometry
//! comes from sysfs. Any other name is asked of the host, which knows its own providers
//! (gnop's `*.nop`). Closing a device opened for writing makes the host re-taste it.
//!
//! On FreeBSD, a name is opened as `g_open` opens it: as given, else (if it is not
//! absolute) under /dev, O_RDWR or O_RDONLY, and it must answer `DIOCGSECTORSIZE` (else
//! EFTYPE). Size and sector size come from `DIOCGMEDIASIZE`/`DIOCGSECTORSIZE`, a write is
//! followed by `DIOCGFLUSH` (its result ignored, as libgeom ignores it), and GEOM itself
//! refuses a provider held exclusively (EPERM) and re-tastes it when the last writer
//! closes. A name no device answers to (ENOENT) is asked of the backend's host, if it has
//! one (a userland host reached through `GMULTIPATH_SOCKET`); the kernel has none, so the
//! answer stays ENOENT.

use std::fs::File;
#[cfg(not(target_os = "freebsd"))]
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
#[cfg(not(target_os = "freebsd"))]
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
#[cfg(not(target_os = "freebsd"))]
use std::path::{Path, PathBuf};

use geom_multipath::label_verbs::may_clear;
use geom_multipath_proto::{Answer, Call};

use crate::backend::Backend;

/// label's touch of a provider failed while opening or while reading.
#[derive(Debug)]
pub enum TouchError {
    /// `Unable to open %s: %s.`
    Open(io::Error),
    /// `Unable to read metadata from %s: %s.`
    Read(io::Error),
}

/// Provider access for the userland commands.
pub trait ProviderIo {
    /// `g_get_mediasize` and `g_get_sectorsize`.
    fn geometry(&mut self, name: &str) -> io::Result<(u64, u32)>;
    /// `g_metadata_store`: open for writing, write `sector` at `offset`, flush, close.
    fn store(&mut self, name: &str, offset: u64, sector: &[u8]) -> io::Result<()>;
    /// label's touch: open for writing, read `len` bytes at `offset`, close.
    fn touch(&mut self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, TouchError>;
    /// `g_metadata_clear` with the MULTIPATH magic: EINVAL unless the last sector has it,
    /// then zero that sector and flush.
    fn clear(&mut self, name: &str) -> io::Result<()>;
}

/// Block devices opened directly, anything else through the backend.
pub struct Providers<'a> {
    backend: &'a mut dyn Backend,
}

impl<'a> Providers<'a> {
    /// Provider access that falls back on `backend` for names that are not devices here.
    pub fn new(backend: &'a mut dyn Backend) -> Self {
        Providers { backend }
    }

    fn host(&mut self, call: Call) -> io::Result<Answer> {
        match self.backend.host_call(&call) {
            Some(Ok(Answer::Failed { errno, text })) => Err(if errno > 0 {
                io::Error::from_raw_os_error(errno)
            } else {
                io::Error::other(text)
            }),
            Some(answer) => answer,
            None => Err(io::Error::from_raw_os_error(nix::libc::ENOENT)),
        }
    }

    /// `geometry` of a provider only the host knows.
    fn host_geometry(&mut self, name: String) -> io::Result<(u64, u32)> {
        match self.host(Call::ProviderInfo { name })? {
            Answer::Provider {
                mediasize,
                sectorsize,
            } => Ok((mediasize, sectorsize)),
            other => Err(io::Error::other(format!("unexpected answer {other:?}"))),
        }
    }

    /// `store` on a provider only the host knows.
    fn host_store(&mut self, name: String, offset: u64, sector: &[u8]) -> io::Result<()> {
        let call = Call::ProviderWrite {
            name,
            offset,
            data: sector.to_vec(),
        };
        self.host(call).map(drop)
    }

    /// `touch` on a provider only the host knows.
    fn host_touch(&mut self, name: String, offset: u64, len: usize) -> Result<Vec<u8>, TouchError> {
        let call = Call::ProviderTouch {
            name,
            offset,
            len: len as u32,
        };
        match self.host(call) {
            Ok(Answer::Data(bytes)) => Ok(bytes),
            Ok(other) => Err(TouchError::Read(io::Error::other(format!(
                "unexpected answer {other:?}"
            )))),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => Err(TouchError::Open(e)),
            Err(e) => Err(TouchError::Read(e)),
        }
    }

    /// `clear` of the last sector (`offset`, `sectorsize` bytes) of a provider only the
    /// host knows.
    fn host_clear(&mut self, name: String, offset: u64, sectorsize: u32) -> io::Result<()> {
        let read = Call::ProviderRead {
            name: name.clone(),
            offset,
            len: sectorsize,
        };
        let Answer::Data(sector) = self.host(read)? else {
            return Err(io::Error::other("unexpected answer"));
        };
        may_clear(&sector).map_err(|e| io::Error::from_raw_os_error(e.0))?;
        let write = Call::ProviderWrite {
            name,
            offset,
            data: vec![0u8; sectorsize as usize],
        };
        self.host(write).map(drop)
    }
}

/// Where a provider name leads: a local block device, or only the host knows it.
#[cfg(not(target_os = "freebsd"))]
enum Target {
    Device(PathBuf),
    Host(String),
}

/// `g_open`'s lookup: the name as given if it is a block device, else under /dev.
#[cfg(not(target_os = "freebsd"))]
fn resolve(name: &str) -> Target {
    let as_given = Path::new(name);
    let is_block = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false)
    };
    if is_block(as_given) {
        return Target::Device(as_given.to_path_buf());
    }
    let bare = name.strip_prefix("/dev/").unwrap_or(name);
    let under_dev = Path::new("/dev").join(bare);
    if is_block(&under_dev) {
        Target::Device(under_dev)
    } else {
        Target::Host(bare.to_string())
    }
}

/// A sector-aligned buffer for O_DIRECT, carved out of an over-sized `Vec` without
/// `unsafe`.
struct Aligned {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

const ALIGN: usize = 4096;

impl Aligned {
    fn zeroed(len: usize) -> Self {
        let storage = vec![0u8; len + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN);
        Aligned {
            storage,
            start,
            len,
        }
    }
    fn from_bytes(bytes: &[u8]) -> Self {
        let mut a = Aligned::zeroed(bytes.len());
        a.as_mut().copy_from_slice(bytes);
        a
    }
    fn as_ref(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

#[cfg(not(target_os = "freebsd"))]
fn open(path: &Path, write: bool) -> io::Result<File> {
    let mut flags = nix::libc::O_DIRECT;
    if write {
        flags |= nix::libc::O_EXCL;
    }
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(flags)
        .open(path)
}

/// A block device's size and logical sector size, from sysfs.
#[cfg(not(target_os = "freebsd"))]
fn device_geometry(path: &Path) -> io::Result<(u64, u32)> {
    let rdev = std::fs::metadata(path)?.rdev();
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    let dir = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let read = |p: PathBuf| -> io::Result<u64> {
        std::fs::read_to_string(&p)?
            .trim()
            .parse()
            .map_err(|_| io::Error::from_raw_os_error(nix::libc::EINVAL))
    };
    let sectors = read(dir.join("size"))?;
    let logical = read(dir.join("queue/logical_block_size"))
        .or_else(|_| read(dir.join("../queue/logical_block_size")))?;
    Ok((sectors * 512, logical as u32))
}

fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = Aligned::zeroed(len);
    file.read_exact_at(buf.as_mut(), offset)?;
    Ok(buf.as_ref().to_vec())
}

#[cfg(not(target_os = "freebsd"))]
fn write_at(file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
    file.write_all_at(Aligned::from_bytes(data).as_ref(), offset)?;
    file.sync_all()
}

#[cfg(not(target_os = "freebsd"))]
impl ProviderIo for Providers<'_> {
    fn geometry(&mut self, name: &str) -> io::Result<(u64, u32)> {
        match resolve(name) {
            Target::Device(path) => {
                open(&path, false)?;
                device_geometry(&path)
            }
            Target::Host(name) => self.host_geometry(name),
        }
    }

    fn store(&mut self, name: &str, offset: u64, sector: &[u8]) -> io::Result<()> {
        match resolve(name) {
            Target::Device(path) => write_at(&open(&path, true)?, offset, sector),
            Target::Host(name) => self.host_store(name, offset, sector),
        }
    }

    fn touch(&mut self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, TouchError> {
        match resolve(name) {
            Target::Device(path) => {
                let file = open(&path, true).map_err(TouchError::Open)?;
                read_at(&file, offset, len).map_err(TouchError::Read)
            }
            Target::Host(name) => self.host_touch(name, offset, len),
        }
    }

    fn clear(&mut self, name: &str) -> io::Result<()> {
        let (size, sectorsize) = self.geometry(name)?;
        if size == 0 || sectorsize == 0 || size < u64::from(sectorsize) {
            return Err(io::Error::from_raw_os_error(nix::libc::EINVAL));
        }
        let offset = size - u64::from(sectorsize);
        match resolve(name) {
            Target::Device(path) => {
                let file = open(&path, true)?;
                let sector = read_at(&file, offset, sectorsize as usize)?;
                may_clear(&sector).map_err(|e| io::Error::from_raw_os_error(e.0))?;
                write_at(&file, offset, &vec![0u8; sectorsize as usize])
            }
            Target::Host(name) => self.host_clear(name, offset, sectorsize),
        }
    }
}

/// FreeBSD's disk devices, opened the way libgeom opens them.
#[cfg(target_os = "freebsd")]
mod bsd {
    use std::fs::{File, OpenOptions};
    use std::io;
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileExt;
    use std::path::Path;

    use geom_multipath_sys::freebsd as sys;

    use super::Aligned;

    /// `g_open`: `name` as given, else (if relative) `/dev/<name>`, read-write when
    /// `write`; EFTYPE unless it answers DIOCGSECTORSIZE (the proof of a GEOM provider).
    pub fn g_open(name: &str, write: bool) -> io::Result<File> {
        let open = |p: &Path| OpenOptions::new().read(true).write(write).open(p);
        let file = match open(Path::new(name)) {
            Ok(f) => f,
            Err(e) if name.starts_with('/') => return Err(e),
            Err(_) => open(&Path::new("/dev").join(name))?,
        };
        sys::disk_sectorsize(file.as_fd())
            .map_err(|_| io::Error::from_raw_os_error(nix::libc::EFTYPE))?;
        Ok(file)
    }

    /// `g_mediasize` and `g_sectorsize` of an open provider.
    pub fn geometry(file: &File) -> io::Result<(u64, u32)> {
        Ok((
            sys::disk_mediasize(file.as_fd())?,
            sys::disk_sectorsize(file.as_fd())?,
        ))
    }

    /// One sector-aligned write, then `g_flush` (whose result libgeom ignores).
    pub fn write_flush(file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
        file.write_all_at(Aligned::from_bytes(data).as_ref(), offset)?;
        let _ = sys::disk_flush(file.as_fd());
        Ok(())
    }

    /// `true` for the error `g_open` leaves when no such device exists.
    pub fn not_found(e: &io::Error) -> bool {
        e.raw_os_error() == Some(nix::libc::ENOENT)
    }
}

#[cfg(target_os = "freebsd")]
impl ProviderIo for Providers<'_> {
    /// `g_get_mediasize` / `g_get_sectorsize`: a read-only `g_open` and two ioctls.
    fn geometry(&mut self, name: &str) -> io::Result<(u64, u32)> {
        match bsd::g_open(name, false) {
            Ok(file) => bsd::geometry(&file),
            Err(e) if bsd::not_found(&e) => self.host_geometry(strip(name)),
            Err(e) => Err(e),
        }
    }

    /// `g_metadata_store`: `g_open` for writing, the size checks, one sector written at
    /// `offset`, `g_flush`, close (which makes GEOM re-taste the provider).
    fn store(&mut self, name: &str, offset: u64, sector: &[u8]) -> io::Result<()> {
        let file = match bsd::g_open(name, true) {
            Ok(f) => f,
            Err(e) if bsd::not_found(&e) => return self.host_store(strip(name), offset, sector),
            Err(e) => return Err(e),
        };
        bsd::geometry(&file)?;
        bsd::write_flush(&file, offset, sector)
    }

    /// label's touch: `g_open` for writing, pread, close.
    fn touch(&mut self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, TouchError> {
        let file = match bsd::g_open(name, true) {
            Ok(f) => f,
            Err(e) if bsd::not_found(&e) => return self.host_touch(strip(name), offset, len),
            Err(e) => return Err(TouchError::Open(e)),
        };
        read_at(&file, offset, len).map_err(TouchError::Read)
    }

    /// `g_metadata_clear` with the MULTIPATH magic: `g_open` for writing, a zero media
    /// size or sector size refused, the last sector read and checked (EINVAL without the
    /// magic), zeroed, `g_flush`, close.
    fn clear(&mut self, name: &str) -> io::Result<()> {
        let file = match bsd::g_open(name, true) {
            Ok(f) => f,
            Err(e) if bsd::not_found(&e) => {
                let (size, sectorsize) = self.host_geometry(strip(name))?;
                if size == 0 || sectorsize == 0 || size < u64::from(sectorsize) {
                    return Err(io::Error::from_raw_os_error(nix::libc::EINVAL));
                }
                let offset = size - u64::from(sectorsize);
                return self.host_clear(strip(name), offset, sectorsize);
            }
            Err(e) => return Err(e),
        };
        let (size, sectorsize) = bsd::geometry(&file)?;
        if size == 0 || sectorsize == 0 || size < u64::from(sectorsize) {
            return Err(io::Error::from_raw_os_error(nix::libc::EINVAL));
        }
        let offset = size - u64::from(sectorsize);
        let sector = read_at(&file, offset, sectorsize as usize)?;
        may_clear(&sector).map_err(|e| io::Error::from_raw_os_error(e.0))?;
        bsd::write_flush(&file, offset, &vec![0u8; sectorsize as usize])
    }
}

/// The provider name the host knows: without a leading `/dev/`.
#[cfg(target_os = "freebsd")]
fn strip(name: &str) -> String {
    name.strip_prefix("/dev/").unwrap_or(name).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_are_aligned_and_hold_their_bytes() {
        for len in [512, 4096, 1 << 20] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let a = Aligned::from_bytes(&bytes);
            assert_eq!(a.as_ref().as_ptr() as usize % ALIGN, 0);
            assert_eq!(a.as_ref(), &bytes[..]);
        }
    }

    #[test]
    #[cfg(not(target_os = "freebsd"))]
    fn names_that_are_not_devices_go_to_the_host() {
        assert!(matches!(resolve("md0.nop"), Target::Host(n) if n == "md0.nop"));
        assert!(
            matches!(resolve("/dev/nothing-here-42"), Target::Host(n) if n == "nothing-here-42")
        );
    }
}

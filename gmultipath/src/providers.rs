//! How the userland commands (`label`, `clear`) reach a provider: libgeom's `g_open`,
//! `g_get_mediasize`, `g_metadata_store`, `g_metadata_clear`.
//!
//! A name that is a block device — given as a path, or found under /dev — is opened
//! directly, with O_DIRECT (two paths to one disk are coherent only without the page cache)
//! and O_EXCL when writing (so a provider somebody holds exclusively — a path of a geom, a
//! mounted file system — is refused, as FreeBSD refuses with EPERM). Its geometry comes from
//! sysfs. Any other name is asked of the host, which knows its own providers (gnop's
//! `*.nop`). Closing a device opened for writing makes the host re-taste it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use geom_multipath::userland::may_clear;
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
}

/// Where a provider name leads: a local block device, or only the host knows it.
enum Target {
    Device(PathBuf),
    Host(String),
}

/// `g_open`'s lookup: the name as given if it is a block device, else under /dev.
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

fn write_at(file: &File, offset: u64, data: &[u8]) -> io::Result<()> {
    file.write_all_at(Aligned::from_bytes(data).as_ref(), offset)?;
    file.sync_all()
}

impl ProviderIo for Providers<'_> {
    fn geometry(&mut self, name: &str) -> io::Result<(u64, u32)> {
        match resolve(name) {
            Target::Device(path) => {
                open(&path, false)?;
                device_geometry(&path)
            }
            Target::Host(name) => match self.host(Call::ProviderInfo { name })? {
                Answer::Provider {
                    mediasize,
                    sectorsize,
                } => Ok((mediasize, sectorsize)),
                other => Err(io::Error::other(format!("unexpected answer {other:?}"))),
            },
        }
    }

    fn store(&mut self, name: &str, offset: u64, sector: &[u8]) -> io::Result<()> {
        match resolve(name) {
            Target::Device(path) => write_at(&open(&path, true)?, offset, sector),
            Target::Host(name) => {
                let call = Call::ProviderWrite {
                    name,
                    offset,
                    data: sector.to_vec(),
                };
                self.host(call).map(drop)
            }
        }
    }

    fn touch(&mut self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, TouchError> {
        match resolve(name) {
            Target::Device(path) => {
                let file = open(&path, true).map_err(TouchError::Open)?;
                read_at(&file, offset, len).map_err(TouchError::Read)
            }
            Target::Host(name) => {
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
                    Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => {
                        Err(TouchError::Open(e))
                    }
                    Err(e) => Err(TouchError::Read(e)),
                }
            }
        }
    }

    fn clear(&mut self, name: &str) -> io::Result<()> {
        let (size, sectorsize) = self.geometry(name)?;
        if size == 0 || sectorsize == 0 || size < u64::from(sectorsize) {
            return Err(io::Error::from_raw_os_error(nix::libc::EINVAL));
        }
        let offset = size - u64::from(sectorsize);
        let zeros = vec![0u8; sectorsize as usize];
        match resolve(name) {
            Target::Device(path) => {
                let file = open(&path, true)?;
                let sector = read_at(&file, offset, sectorsize as usize)?;
                may_clear(&sector).map_err(|e| io::Error::from_raw_os_error(e.0))?;
                write_at(&file, offset, &zeros)
            }
            Target::Host(name) => {
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
                    data: zeros,
                };
                self.host(write).map(drop)
            }
        }
    }
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
    fn names_that_are_not_devices_go_to_the_host() {
        assert!(matches!(resolve("md0.nop"), Target::Host(n) if n == "md0.nop"));
        assert!(
            matches!(resolve("/dev/nothing-here-42"), Target::Host(n) if n == "nothing-here-42")
        );
    }
}

//! The FUSE file system itself: the export table seen as a directory of device-like files.
//! Each open takes access through the export's access guard, each read or write becomes a
//! request to the owner (whole sectors, clamped to the provider as a block device clamps
//! them), and each release gives the access back.

use super::*;
use crate::export::access::AccessGuard;

/// What an open file handle holds: the provider as it was at open (its geom is the one
/// requests go to, even if a new provider of the same name appears), and the access its
/// open mode took, given back when the handle goes.
#[derive(Debug)]
pub(super) struct Handle {
    pub(super) export: Export,
    pub(super) _access: AccessGuard,
}

/// The FUSE file system: the export table seen as a directory.
pub(super) struct MultipathFs {
    pub(super) exports: SharedExports,
    pub(super) owner: OwnerHandle,
    pub(super) options: FuseOptions,
    pub(super) handles: RwLock<IdMap<u64, Handle>>,
    pub(super) next_fh: AtomicU64,
    /// Every timestamp: when the file system was mounted.
    pub(super) born: SystemTime,
    /// Told when the session has ended.
    pub(super) ended: Sender<()>,
}

/// Whether a request reads or writes (they differ at the end of the media).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dir {
    Read,
    Write,
}

/// How many of `len` bytes at `offset` a device of this geometry transfers, or the errno
/// it answers with (see the module doc).
pub(super) fn clamp(
    offset: u64,
    len: u64,
    mediasize: u64,
    sectorsize: u32,
    dir: Dir,
) -> Result<u64, Errno> {
    let sector = u64::from(sectorsize.max(1));
    if dir == Dir::Write && (offset % sector != 0 || len % sector != 0) {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return Ok(0);
    }
    if offset >= mediasize {
        return match dir {
            Dir::Read => Ok(0),
            Dir::Write => Err(Errno::ENOSPC),
        };
    }
    Ok(len.min(mediasize - offset))
}

/// The whole sectors a read of `len` bytes at `offset` is served from: (their start, their
/// length, where the caller's bytes begin in them). The kernel cuts a large direct read
/// into pieces at the caller's page boundaries, so an aligned read into a buffer that is
/// not page-aligned arrives in pieces that are not whole sectors.
pub(super) fn covering(offset: u64, len: u64, sectorsize: u32) -> (u64, u64, usize) {
    let sector = u64::from(sectorsize.max(1));
    let start = offset - offset % sector;
    let end = (offset + len).div_ceil(sector) * sector;
    (start, end - start, (offset - start) as usize)
}

/// The range of a punch-hole request as `blkdev_fallocate` cuts it.
pub(super) fn clamp_delete(
    offset: u64,
    len: u64,
    mediasize: u64,
    sectorsize: u32,
) -> Result<u64, Errno> {
    let sector = u64::from(sectorsize.max(1));
    if offset % sector != 0 || len % sector != 0 || len == 0 || offset >= mediasize {
        return Err(Errno::EINVAL);
    }
    Ok(len.min(mediasize - offset))
}

/// The FUSE errno of an owner's answer.
pub(super) fn errno(e: geom_multipath::Errno) -> Errno {
    Errno::from_i32(e.0)
}

/// The directory offset that follows an entry for an export of inode `ino` ("." and ".."
/// take 1 and 2). Entries are listed by inode, so the offsets stay valid while exports
/// come and go between two `readdir` calls.
pub(super) fn dir_offset(ino: u64) -> u64 {
    ino + 2
}

impl MultipathFs {
    pub(super) fn new(
        exports: SharedExports,
        owner: OwnerHandle,
        options: FuseOptions,
        ended: Sender<()>,
        born: SystemTime,
    ) -> MultipathFs {
        MultipathFs {
            exports,
            owner,
            options,
            handles: RwLock::new(IdMap::default()),
            next_fh: AtomicU64::new(1),
            born,
            ended,
        }
    }

    pub(super) fn table(&self) -> std::sync::RwLockReadGuard<'_, Exports> {
        // A panic elsewhere while holding the lock leaves the table as it was.
        self.exports
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn export(&self, ino: INodeNo) -> Option<Export> {
        self.table().by_ino(ino.0).cloned()
    }

    /// The provider open handle `fh` was opened on, as it was then.
    pub(super) fn handle(&self, fh: FileHandle) -> Option<Export> {
        self.handles
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&fh.0)
            .map(|h| h.export.clone())
    }

    /// The provider of inode `ino` as it was when one of its open handles was opened.
    pub(super) fn open_export(&self, ino: INodeNo) -> Option<Export> {
        self.handles
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .find(|h| h.export.ino == ino.0)
            .map(|h| h.export.clone())
    }

    /// The provider's current size and sector size (its size at open if it withered).
    pub(super) fn geometry(&self, opened: &Export) -> (u64, u32) {
        self.table()
            .by_geom(opened.geom)
            .map_or((opened.mediasize, opened.sectorsize), |e| {
                (e.mediasize, e.sectorsize)
            })
    }

    pub(super) fn attr(&self, e: &Export) -> FileAttr {
        FileAttr {
            ino: INodeNo(e.ino),
            size: e.mediasize,
            blocks: e.mediasize / 512,
            atime: self.born,
            mtime: self.born,
            ctime: self.born,
            crtime: self.born,
            kind: FileType::RegularFile,
            perm: self.options.mode,
            nlink: 1,
            uid: 0,
            gid: self.options.gid,
            rdev: 0,
            blksize: if e.sectorsize == 0 { 512 } else { e.sectorsize },
            flags: 0,
        }
    }

    pub(super) fn root_attr(&self) -> FileAttr {
        FileAttr {
            ino: INodeNo::ROOT,
            size: 0,
            blocks: 0,
            atime: self.born,
            mtime: self.born,
            ctime: self.born,
            crtime: self.born,
            kind: FileType::Directory,
            perm: 0o755,
            nlink: 2,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Sends a data request whose answer is a success without data.
    pub(super) fn io_done(&self, geom: GeomId, op: IoOp, offset: u64, reply: ReplyEmpty) {
        self.owner.io(IoRequest {
            geom,
            op,
            offset,
            reply: Box::new(move |r| match r {
                Ok(_) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }),
        });
    }
}

impl Filesystem for MultipathFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_ASYNC_DIO) {
            tracing::debug!("FUSE: the kernel lacks {missing:?}");
        }
        if let Err(nearest) = config.set_max_write(self.options.max_write) {
            let _ = config.set_max_write(nearest);
        }
        let background = self.options.max_background.max(1);
        let _ = config.set_max_background(background);
        let _ = config.set_congestion_threshold((background / 4 * 3).max(1));
        Ok(())
    }

    fn destroy(&mut self) {
        // The session ended with files still open (the connection was aborted, or a RELEASE
        // queued at unmount was dropped): their access goes back now, still once per open.
        let left: Vec<Handle> = self
            .handles
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain()
            .map(|(_, h)| h)
            .collect();
        drop(left);
        let _ = self.ended.try_send(());
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = if parent == INodeNo::ROOT {
            name.to_str().and_then(|n| self.table().get(n).cloned())
        } else {
            None
        };
        match found {
            Some(e) => reply.entry(&TTL, &self.attr(&e), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT {
            return reply.attr(&TTL, &self.root_attr());
        }
        // A withered provider that is still open keeps its attributes (as they were at
        // open): `fstat` works on a device node whose device is gone. (The kernel sends
        // `fstat` without the file handle.)
        match self.export(ino).or_else(|| self.open_export(ino)) {
            Some(e) => reply.attr(&TTL, &self.attr(&e)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Modes and owners come from the table; sizes are the media's; times are ignored.
        if mode.is_some() || uid.is_some() || gid.is_some() {
            return reply.error(Errno::EPERM);
        }
        self.getattr(req, ino, fh, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let Some(export) = self.export(ino) else {
            return reply.error(Errno::ENXIO);
        };
        let (r, w) = match flags.acc_mode() {
            OpenAccMode::O_RDONLY => (true, false),
            OpenAccMode::O_WRONLY => (false, true),
            OpenAccMode::O_RDWR => (true, true),
        };
        let access = match AccessGuard::take(&self.owner, &export, r, w) {
            Ok(access) => access,
            Err(e) => return reply.error(errno(e)),
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                fh,
                Handle {
                    export,
                    _access: access,
                },
            );
        reply.opened(
            FileHandle(fh),
            FopenFlags::FOPEN_DIRECT_IO
                | FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES
                | FopenFlags::FOPEN_NOFLUSH,
        );
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let h = self
            .handles
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&fh.0);
        drop(h); // gives the access back
        reply.ok();
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(h) = self.handle(fh) else {
            return reply.error(Errno::EBADF);
        };
        let (mediasize, sectorsize) = self.geometry(&h);
        let len = match clamp(offset, u64::from(size), mediasize, sectorsize, Dir::Read) {
            Ok(0) => return reply.data(&[]),
            Ok(len) => len,
            Err(e) => return reply.error(e),
        };
        // `len` ≤ `size`, a u32; whole sectors cover it (the last one lies within the media).
        let (start, span, skip) = covering(offset, len, sectorsize);
        let buf = IoBuf::to_fill(span as usize);
        self.owner.io(IoRequest {
            geom: h.geom,
            op: IoOp::Read(buf),
            offset: start,
            reply: Box::new(move |r| match r {
                Ok(IoReply::Data(buf)) => reply.data(&buf.as_slice()[skip..skip + len as usize]),
                Ok(_) => reply.error(Errno::EIO),
                Err(e) => reply.error(errno(e)),
            }),
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some(h) = self.handle(fh) else {
            return reply.error(Errno::EBADF);
        };
        let (mediasize, sectorsize) = self.geometry(&h);
        let len = match clamp(offset, data.len() as u64, mediasize, sectorsize, Dir::Write) {
            Ok(0) => return reply.written(0),
            // `len` ≤ `data.len()`, which is at most `max_write`, a u32.
            Ok(len) => len as usize,
            Err(e) => return reply.error(e),
        };
        self.owner.io(IoRequest {
            geom: h.geom,
            op: IoOp::Write(IoBuf::from_slice(&data[..len])),
            offset,
            reply: Box::new(move |r| match r {
                Ok(_) => reply.written(len as u32),
                Err(e) => reply.error(errno(e)),
            }),
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Close is not a cache flush (FOPEN_NOFLUSH normally keeps this from being called).
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.handle(fh) {
            Some(h) => self.io_done(h.geom, IoOp::Flush, 0, reply),
            None => reply.error(Errno::EBADF),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let Some(h) = self.handle(fh) else {
            return reply.error(Errno::EBADF);
        };
        let (mediasize, sectorsize) = self.geometry(&h);
        match clamp_delete(offset, length, mediasize, sectorsize) {
            Ok(len) => self.io_done(h.geom, IoOp::Delete(len), offset, reply),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let mut files: Vec<(u64, String)> = self
            .table()
            .iter()
            .map(|e| (e.ino, e.name.clone()))
            .collect();
        files.sort_unstable();
        let dots = [(1, "."), (2, "..")]
            .into_iter()
            .map(|(next, name)| (INodeNo::ROOT, next, FileType::Directory, name));
        let files = files.iter().map(|(ino, name)| {
            (
                INodeNo(*ino),
                dir_offset(*ino),
                FileType::RegularFile,
                name.as_str(),
            )
        });
        for (ino, next, kind, name) in dots.chain(files) {
            if next > offset && reply.add(ino, next, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if name != PHYSPATH_XATTR {
            return reply.error(Errno::ENODATA);
        }
        let Some(e) = self.export(ino) else {
            return reply.error(Errno::ENODATA);
        };
        self.owner.io(IoRequest {
            geom: e.geom,
            op: IoOp::Physpath,
            offset: 0,
            reply: Box::new(move |r| match r {
                Ok(IoReply::Text(text)) => xattr_reply(reply, size, text.as_bytes()),
                Ok(_) => reply.error(Errno::EIO),
                Err(e) => reply.error(errno(e)),
            }),
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if ino == INodeNo::ROOT {
            return xattr_reply(reply, size, b"");
        }
        let mut names = PHYSPATH_XATTR.as_bytes().to_vec();
        names.push(0);
        xattr_reply(reply, size, &names);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOTSUP);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOTSUP);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EPERM);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EPERM);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EPERM);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EPERM);
    }
}

/// Answers an xattr request for `value`: its size when asked for the size (`size` 0),
/// ERANGE when it does not fit, else the bytes.
pub(super) fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    let Ok(len) = u32::try_from(value.len()) else {
        return reply.error(Errno::E2BIG);
    };
    if size == 0 {
        reply.size(len);
    } else if len > size {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

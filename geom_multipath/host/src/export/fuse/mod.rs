//! `/dev/multipath/NAME` on Linux: a FUSE file system whose root directory holds one file
//! per exported multipath provider, and whose files behave like the provider's device node.
//!
//! This module owns the FUSE session (mount, the reader threads, unmount) and the table of
//! open file handles (handle → geom and the access it holds). It reads the [`Exports`] table
//! the owner maintains and turns every FUSE request into a message to the owner
//! ([`OwnerHandle::io`], [`OwnerHandle::access`]); it never calls the core itself.
//!
//! # Device-node semantics
//!
//! * Every file is a regular file (FUSE cannot serve block nodes) of `mediasize` bytes with
//!   `st_blksize` = the sector size, owned by root, group `disk`, mode 0660: the Linux
//!   convention for block devices (`/dev/sda`, `/dev/loop0`), so whoever may use a disk may
//!   use a multipath provider. (FreeBSD's GEOM nodes are 0640 root:operator; on a Linux host
//!   we follow the host.) The kernel checks the modes (`default_permissions`) and other users
//!   may reach the files as the modes allow (`allow_other`). chmod and chown fail with
//!   EPERM: the attributes are derived from the export table and could not persist.
//! * open takes access on the provider (`r`/`w` from O_RDONLY/O_WRONLY/O_RDWR, never `e`:
//!   Linux does not pass O_EXCL to FUSE) and its error is the open's error; the last close
//!   (FUSE release) gives it back, exactly once per open, also for a provider that withered
//!   meanwhile. If the session ends with handles still open (connection aborted, or the
//!   kernel dropping a queued RELEASE at unmount), `destroy` gives their access back.
//! * Every read and write reaches the owner unbuffered (`FOPEN_DIRECT_IO`): two paths to one
//!   disk are coherent only without caches, and a withered provider must fail at once. The
//!   FUSE reader thread never waits for I/O: the reply travels inside the request and the
//!   owner sends it.
//! * As FreeBSD's raw disk devices do, a write whose offset or length is not a multiple of
//!   the sector size fails with EINVAL, also without O_DIRECT (`dd bs=4k` works, `echo >`
//!   does not): a piece of a sector cannot be written without reading the rest, which two
//!   writers could race. Reads are served at any offset and length (from the whole sectors
//!   that cover them), since the kernel itself cuts an aligned read into unaligned pieces
//!   when the caller's buffer is not page-aligned. The end of the media behaves as a Linux block device's:
//!   a read at or after it returns 0 bytes, a read across it is cut there, a write across it
//!   is cut (a short write), a write at or after it fails with ENOSPC.
//! * `fsync`/`fdatasync` send BIO_FLUSH; close does not. `fallocate(PUNCH_HOLE|KEEP_SIZE)`
//!   sends BIO_DELETE (sector-aligned, else EINVAL; starting at or after the end: EINVAL;
//!   across the end: cut), which is how a loop device passes discards on; every other mode
//!   fails with EOPNOTSUPP (a loop device sends one ZERO_RANGE for a write-zeroes, and on
//!   EOPNOTSUPP stops doing so; the block layer then writes zeroes). Truncation (O_TRUNC,
//!   `truncate`, `ftruncate`) is ignored and answered with the real size, as a device node
//!   cannot be truncated; time updates are ignored too.
//! * The extended attribute `user.geom.physpath` is the provider's `GEOM::physpath`
//!   (`getfattr -n user.geom.physpath /dev/multipath/FRED`); every other name is ENODATA, and
//!   setting or removing attributes is ENOTSUP. Files cannot be created, removed or renamed
//!   (EPERM): the file set is the export table.
//! * Attribute and entry TTLs are zero: sizes and the file set change under the kernel's
//!   feet, so every `stat` and path lookup asks. (A loop device samples the size when it is
//!   attached and on `losetup -c`.) A removed export is ENOENT to lookups at once.
//!
//! Not done here: ioctls (`BLKGETSIZE64` on the file is ENOTTY; use `stat`), O_EXCL
//! exclusivity, mmap (direct I/O files cannot be mapped), notifying the kernel of changes
//! (TTL 0 makes it unnecessary). For a provider with 4096-byte sectors a loop device needs
//! `losetup --sector-size 4096`, or its 512-byte requests fail with EINVAL.
//!
//! # Session settings
//!
//! * FUSE_ASYNC_DIO: async O_DIRECT (aio/io_uring clients, loop devices with
//!   `--direct-io=on`) keeps many requests in flight; without it fio 4k QD32 (libaio) made
//!   ~20k IOPS here instead of ~100k.
//! * `max_write` 1 MiB (the kernel's `max_pages_limit` here) and 128 background requests
//!   (async direct I/O requests count as background ones; the default of 12 would cap a
//!   QD32 client), congestion at 3/4 of that.
//! * `FOPEN_PARALLEL_DIRECT_WRITES`: the kernel otherwise serialises direct writes on the
//!   inode lock, which a disk does not (4 psync writers: ~20k → 40–75k IOPS).
//!   `FOPEN_NOFLUSH`: close needs no round trip.
//! * Two reader threads, each on its own cloned `/dev/fuse` descriptor, so that an open
//!   waiting for the owner's access verdict does not stall I/O. As replies are sent by the
//!   owner, a reader only parses and copies: against a memory-backed fake owner on this
//!   2-vCPU machine 1 and 2 threads were equal within noise (~100–125k IOPS 4k QD32,
//!   2.3–3.5 GB/s 1 MiB), 4 no better.
//!
//! # Shutdown order
//!
//! 1. The daemon refuses to stop while a provider is open (its access counts say so).
//! 2. [`FuseExport::unmount`]: a plain `umount(2)`, which fails with EBUSY while any file is
//!    open or a loop device is still attached to one (`losetup -d` first); the error gives
//!    the export back ([`UnmountError::into_export`]) to retry later. On success the
//!    kernel ends the connection, the reader threads end and are joined.
//! 3. Only then stop the owner: releases arriving during the unmount still need it. Once
//!    its inbox is dropped every request fails with ENXIO at once; an owner that merely
//!    stopped reading it would leave an open or a release waiting forever.
//!
//! A daemon that died leaves a dead mount (ENOTCONN on `stat`); [`cleanup_stale`], which
//! [`mount`] also runs, detaches it lazily so a restart can mount again.

use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyWrite, ReplyXattr, Request, SessionACL, TimeOrNow, WriteFlags,
};
use geom_multipath::GeomId;

use crate::msg::exports::{Export, Exports, SharedExports};
use crate::msg::{IoOp, IoReply, IoRequest, OwnerHandle};
use crate::path::device::IoBuf;
use crate::sys::idhash::IdMap;

mod fs;

use fs::*;

/// The extended attribute that answers with the provider's `GEOM::physpath`.
pub const PHYSPATH_XATTR: &str = "user.geom.physpath";

/// Attribute and entry lifetime: none, as sizes and the file set change at any time.
const TTL: Duration = Duration::ZERO;

/// The inode number of a FUSE file system's root.
const FUSE_ROOT_ID: u64 = 1;

/// How long an unmounted session may take to end before it is left running.
const SESSION_END: Duration = Duration::from_secs(5);

/// How the FUSE session is set up; [`Default`] is what `gmultipathd` uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuseOptions {
    /// Threads reading `/dev/fuse`, each on its own cloned descriptor (at least 1).
    pub threads: usize,
    /// The largest read or write the kernel sends in one request, in bytes.
    pub max_write: u32,
    /// Requests the kernel keeps in flight in the background (async direct I/O).
    pub max_background: u16,
    /// Permission bits of every provider file.
    pub mode: u16,
    /// Group of every provider file (the owner is root).
    pub gid: u32,
}

impl Default for FuseOptions {
    /// Two threads, 1 MiB requests, 128 background requests, mode 0660 root:disk (gid 0 if
    /// the host has no `disk` group).
    fn default() -> FuseOptions {
        let gid = nix::unistd::Group::from_name("disk")
            .ok()
            .flatten()
            .map_or(0, |g| g.gid.as_raw());
        FuseOptions {
            threads: 2,
            max_write: 1 << 20,
            max_background: 128,
            mode: 0o660,
            gid,
        }
    }
}

/// A mounted export directory. Dropping it unmounts (logging a failure instead of
/// returning it); [`FuseExport::unmount`] reports it.
#[derive(Debug)]
pub struct FuseExport {
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
    /// Ready (or disconnected) once the session has ended and `destroy` has run.
    ended: Receiver<()>,
    /// When it was mounted: the mtime of its root, which tells it from other mounts.
    born: SystemTime,
}

/// Why [`FuseExport::unmount`] failed; the export is still mounted and served, and can be
/// taken back to retry (`err.downcast::<UnmountError>()?.into_export()`).
#[derive(Debug)]
pub struct UnmountError {
    export: FuseExport,
    errno: nix::errno::Errno,
}

impl UnmountError {
    /// The errno of `umount(2)` (EBUSY: a file is open or a loop device is attached).
    pub fn errno(&self) -> nix::errno::Errno {
        self.errno
    }

    /// The export, still mounted.
    pub fn into_export(self) -> FuseExport {
        self.export
    }
}

impl std::fmt::Display for UnmountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot unmount {}: {} (is a file open or a loop device attached?)",
            self.export.mountpoint.display(),
            geom_multipath_sys::strerror(self.errno as i32)
        )
    }
}

impl std::error::Error for UnmountError {}

/// Mounts the export file system at `mountpoint` (created with mode 0755 if missing; a
/// dead mount left there by a crashed daemon is detached first) and serves it from
/// background threads until the returned [`FuseExport`] is unmounted or dropped.
pub fn mount(
    mountpoint: &Path,
    exports: SharedExports,
    owner: OwnerHandle,
    options: FuseOptions,
) -> anyhow::Result<FuseExport> {
    cleanup_stale(mountpoint)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(mountpoint)
        .with_context(|| format!("cannot create {}", mountpoint.display()))?;
    let here = std::fs::metadata(mountpoint)
        .with_context(|| format!("cannot stat {}", mountpoint.display()))?;
    let parent = std::fs::metadata(mountpoint.join(".."))
        .with_context(|| format!("cannot stat the parent of {}", mountpoint.display()))?;
    if here.dev() != parent.dev() {
        anyhow::bail!(
            "{} is already a mount point (is another gmultipathd running?)",
            mountpoint.display()
        );
    }
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(String::from("multipath")),
        MountOption::DefaultPermissions,
        MountOption::NoExec,
        MountOption::NoAtime,
    ];
    config.acl = SessionACL::All;
    config.n_threads = Some(options.threads.max(1));
    config.clone_fd = true;
    let (ended_tx, ended) = crossbeam_channel::bounded(1);
    let born = SystemTime::now();
    let fs = MultipathFs::new(exports, owner, options, ended_tx, born);
    let session = fuser::spawn_mount(fs, mountpoint, &config)
        .with_context(|| format!("cannot mount the exports at {}", mountpoint.display()))?;
    Ok(FuseExport {
        mountpoint: mountpoint.to_path_buf(),
        session: Some(session),
        ended,
        born,
    })
}

/// If `mountpoint` is a dead FUSE mount (`stat` fails with ENOTCONN: its server died),
/// detaches it lazily (`umount2(MNT_DETACH)`). `true` if it did.
pub fn cleanup_stale(mountpoint: &Path) -> anyhow::Result<bool> {
    match std::fs::metadata(mountpoint) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH).with_context(
                || format!("cannot detach the dead mount at {}", mountpoint.display()),
            )?;
            tracing::info!("detached a dead mount at {}", mountpoint.display());
            Ok(true)
        }
        _ => Ok(false),
    }
}

impl FuseExport {
    /// Where the exports are mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts and waits for the reader threads to end. Fails at once, without
    /// hanging, while a file is open or a loop device is attached (EBUSY): the error is an
    /// [`UnmountError`] that gives the export back. See the module doc for the order.
    pub fn unmount(mut self) -> anyhow::Result<()> {
        match self.try_unmount() {
            Ok(joined) => joined,
            Err(errno) => Err(UnmountError {
                export: self,
                errno,
            }
            .into()),
        }
    }

    /// Unmounts and joins; `Err` (the session kept, still serving) if `umount(2)` failed,
    /// else the outcome of the session.
    fn try_unmount(&mut self) -> Result<anyhow::Result<()>, nix::errno::Errno> {
        let Some(session) = self.session.take() else {
            return Ok(Ok(()));
        };
        // Unmount only what is ours (live, or dead): after a crash-like abort and a new
        // mount at the same place, the mount point holds someone else's file system.
        if matches!(
            self.at_mountpoint(),
            AtMountpoint::Ours | AtMountpoint::Dead
        ) {
            match nix::mount::umount(&self.mountpoint) {
                // EINVAL: gone meanwhile.
                Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
                Err(errno) => {
                    self.session = Some(session);
                    return Err(errno);
                }
            }
        }
        // The kernel ends the connection when the last reference to the mount goes, and the
        // readers then stop at once. If the mount lives on elsewhere (lazily detached while
        // in use, or copied into another mount namespace), so does the session: leave it
        // running rather than hang.
        match self.ended.recv_timeout(SESSION_END) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {}
            Err(RecvTimeoutError::Timeout) => {
                self.let_go(session);
                return Ok(Err(anyhow::anyhow!(
                    "the FUSE session of {} still runs after the unmount (detached while in \
                     use, or held in another mount namespace?); left running",
                    self.mountpoint.display()
                )));
            }
        }
        if self.at_mountpoint() == AtMountpoint::Foreign {
            self.let_go(session);
            return Ok(Ok(()));
        }
        Ok(session
            .join()
            .with_context(|| format!("the FUSE session at {}", self.mountpoint.display())))
    }

    /// Lets go of `session` without joining it; its threads run on while the mount lives.
    ///
    /// fuser 0.18 takes a dead connection for a live mount, and dropping a session calls
    /// umount(2) on the mount point once more (`umount_and_join` too, before joining; so
    /// does `join`, after it). That is harmless on our own mount, live or dead, and on an
    /// empty mount point (EINVAL), but would unmount a file system mounted there since: then
    /// the session is forgotten instead of dropped.
    fn let_go(&self, session: BackgroundSession) {
        if self.at_mountpoint() == AtMountpoint::Foreign {
            tracing::warn!(
                "{} holds a newer mount; the old FUSE session is left alone",
                self.mountpoint.display()
            );
            std::mem::forget(session);
        } else {
            drop(session);
        }
    }

    /// What is mounted at the mount point now. Ours is told apart by its root's mtime,
    /// the instant it was mounted.
    fn at_mountpoint(&self) -> AtMountpoint {
        let here = match std::fs::metadata(&self.mountpoint) {
            Ok(md) => md,
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => return AtMountpoint::Dead,
            Err(_) => return AtMountpoint::Empty,
        };
        match std::fs::metadata(self.mountpoint.join("..")) {
            Ok(parent) if parent.dev() == here.dev() => AtMountpoint::Empty,
            _ if here.ino() == FUSE_ROOT_ID && here.modified().ok() == Some(self.born) => {
                AtMountpoint::Ours
            }
            _ => AtMountpoint::Foreign,
        }
    }
}

/// What [`FuseExport::at_mountpoint`] finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AtMountpoint {
    /// This export, alive.
    Ours,
    /// A FUSE mount whose server is gone (ENOTCONN).
    Dead,
    /// Nothing is mounted there.
    Empty,
    /// A live file system that is not this export.
    Foreign,
}

impl Drop for FuseExport {
    /// Unmounts; if that fails (EBUSY), logs it and leaves the mount to the reader threads,
    /// which keep serving (an attached loop device keeps working) until the process exits;
    /// the dead mount left then is for [`cleanup_stale`].
    fn drop(&mut self) {
        match self.try_unmount() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("{e:#}"),
            Err(errno) => {
                tracing::warn!(
                    "left {} mounted: {} (is a file open or a loop device attached?)",
                    self.mountpoint.display(),
                    geom_multipath_sys::strerror(errno as i32)
                );
                if let Some(session) = self.session.take() {
                    self.let_go(session);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::fs::{self, File, OpenOptions};
    use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
    use std::process::Command;
    use std::sync::atomic::AtomicU32;
    use std::sync::{Arc, Mutex};

    use nix::fcntl::{fallocate, FallocateFlags};

    use crate::testkit::fake_owner::{FakeOwner, Seen};
    use crate::testkit::MemDevice;

    const MIB: u64 = 1 << 20;

    #[test]
    fn requests_are_clamped_as_a_device_does() {
        let size = 8 * 4096;
        assert_eq!(clamp(0, 4096, size, 512, Dir::Read), Ok(4096));
        assert_eq!(clamp(100, 512, size, 512, Dir::Read), Ok(512));
        assert_eq!(clamp(512, 100, size, 512, Dir::Write), Err(Errno::EINVAL));
        assert_eq!(clamp(512, 512, size, 4096, Dir::Write), Err(Errno::EINVAL));
        assert_eq!(clamp(size - 100, 512, size, 512, Dir::Read), Ok(100));
        assert_eq!(covering(4096, 4096, 512), (4096, 4096, 0));
        assert_eq!(covering(100, 512, 512), (0, 1024, 100));
        assert_eq!(
            covering(1 << 20, (1 << 20) - 16, 4096),
            (1 << 20, 1 << 20, 0)
        );
        assert_eq!(
            covering((2 << 20) - 16, 16, 512),
            ((2 << 20) - 512, 512, 496)
        );
        assert_eq!(
            clamp(size, 4096, size, 512, Dir::Read),
            Ok(0),
            "read at EOF"
        );
        assert_eq!(clamp(size + 512, 512, size, 512, Dir::Read), Ok(0));
        assert_eq!(clamp(size - 512, 4096, size, 512, Dir::Read), Ok(512));
        assert_eq!(clamp(size - 512, 4096, size, 512, Dir::Write), Ok(512));
        assert_eq!(clamp(size, 512, size, 512, Dir::Write), Err(Errno::ENOSPC));
        assert_eq!(clamp(size, 0, size, 512, Dir::Write), Ok(0));
        assert_eq!(
            clamp(0, 512, 0, 0, Dir::Write),
            Err(Errno::ENOSPC),
            "unsized"
        );
        assert_eq!(clamp_delete(0, 4096, size, 512), Ok(4096));
        assert_eq!(clamp_delete(size - 512, 4096, size, 512), Ok(512));
        assert_eq!(clamp_delete(size, 512, size, 512), Err(Errno::EINVAL));
        assert_eq!(clamp_delete(256, 512, size, 512), Err(Errno::EINVAL));
    }

    #[test]
    fn directory_offsets_follow_the_dots() {
        // "." → 1, ".." → 2, then the first export (inode 2) → 4: increasing and unique.
        assert!(dir_offset(2) > 2);
        assert!(dir_offset(3) > dir_offset(2));
    }

    // ---- root tests: a real FUSE mount served by a fake owner ----

    fn skip_reason() -> Option<&'static str> {
        if !nix::unistd::geteuid().is_root() {
            return Some("needs root (FUSE mount)");
        }
        if !Path::new("/dev/fuse").exists() {
            return Some("no /dev/fuse");
        }
        None
    }

    macro_rules! require_root {
        () => {
            if let Some(reason) = skip_reason() {
                println!("SKIPPED: {reason}");
                return;
            }
        };
    }

    /// Waits (5 s at most) until `done` holds for what the fake owner saw of FRED.
    fn wait(fake: &FakeOwner, what: &str, done: impl Fn(&Seen) -> bool) {
        fake.fake.wait(what, 0, done);
    }

    /// A geom id for FRED, made by the real class.
    fn fred_geom() -> GeomId {
        geom_multipath::testkit::geom_ids(&["FRED"])[0]
    }

    fn unique_dir(what: &str) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("gmp-fuse-{what}-{}-{n}", std::process::id()))
    }

    /// The root tests run one at a time: a descriptor one of them holds could be inherited
    /// by a child process another one forks, and make an unmount fail with EBUSY.
    static ROOT_TESTS: Mutex<()> = Mutex::new(());

    /// FRED exported at a fresh mount point, served by a fake owner.
    struct Fixture {
        export: Option<FuseExport>,
        dir: PathBuf,
        exports: SharedExports,
        owner: OwnerHandle,
        fake: FakeOwner,
        dev: Arc<MemDevice>,
        geom: GeomId,
        /// Held until the fixture is gone (declared last: dropped after the unmount).
        _serial: std::sync::MutexGuard<'static, ()>,
    }

    impl Fixture {
        fn new(mediasize: u64) -> Fixture {
            let serial = ROOT_TESTS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let fake = FakeOwner::new(&[("FRED", mediasize)]);
            fake.fake
                .with(|s| s.knobs.physpath = Some(String::from("md0/mp")));
            let (geom, dev) = (fake.geom(0), fake.dev(0).clone());
            assert_eq!(geom, fred_geom());
            let (exports, owner) = (fake.exports.clone(), fake.owner.clone());
            let dir = unique_dir("mnt");
            let export =
                mount(&dir, exports.clone(), owner.clone(), FuseOptions::default()).expect("mount");
            Fixture {
                export: Some(export),
                dir,
                exports,
                owner,
                fake,
                dev,
                geom,
                _serial: serial,
            }
        }

        fn file(&self) -> PathBuf {
            self.dir.join("FRED")
        }

        fn open(&self, write: bool, direct: bool) -> File {
            OpenOptions::new()
                .read(true)
                .write(write)
                .custom_flags(if direct { libc::O_DIRECT } else { 0 })
                .open(self.file())
                .expect("open FRED")
        }

        fn wait_all_closed(&self) {
            wait(&self.fake, "every open to be released", |s| {
                s.r == 0 && s.w == 0 && s.e == 0
            });
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            if let Some(export) = self.export.take() {
                if let Err(e) = export.unmount() {
                    eprintln!("fixture: {e:#}");
                }
            }
            let _ = fs::remove_dir(&self.dir);
        }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn os_err(r: io::Result<impl std::fmt::Debug>) -> Option<i32> {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.raw_os_error(),
        }
    }

    fn is_mount_point(dir: &Path) -> bool {
        let here = fs::metadata(dir).unwrap().dev();
        here != fs::metadata(dir.join("..")).unwrap().dev()
    }

    #[test]
    fn files_behave_like_device_nodes() {
        require_root!();
        let size = 4 * MIB;
        let f = Fixture::new(size);
        let md = fs::metadata(f.file()).unwrap();
        assert!(md.is_file());
        assert_eq!(md.len(), size);
        assert_eq!(md.blksize(), 512);
        assert_eq!(md.mode() & 0o7777, 0o660);
        assert_eq!((md.uid(), md.gid()), (0, FuseOptions::default().gid));
        let names: Vec<String> = fs::read_dir(&f.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["FRED"]);

        // O_DIRECT: write, read back, misaligned, the end of the media.
        {
            let file = f.open(true, true);
            wait(&f.fake, "open to take access", |s| (s.r, s.w) == (1, 1));
            let data = IoBuf::from_slice(&pattern(8192, 1));
            assert_eq!(file.write_at(data.as_slice(), 4096).unwrap(), 8192);
            assert_eq!(f.dev.peek(4096, 8192), data.as_slice());
            let mut back = IoBuf::zeroed(8192);
            assert_eq!(file.read_at(back.as_mut_slice(), 4096).unwrap(), 8192);
            assert_eq!(back.as_slice(), data.as_slice());
            let b = back.as_mut_slice();
            // A read at any offset and length is served; a write must be whole sectors.
            assert_eq!(file.read_at(&mut b[..512], 4100).unwrap(), 512);
            assert_eq!(&b[..512], &data.as_slice()[4..516]);
            let mut unaligned = vec![0u8; 2 * MIB as usize + 1];
            assert_eq!(
                file.read_at(&mut unaligned[1..], 0).unwrap(),
                2 * MIB as usize,
                "an aligned read into a buffer that is not page-aligned"
            );
            assert_eq!(&unaligned[1 + 4096..1 + 4096 + 8192], data.as_slice());
            assert_eq!(
                os_err(file.write_at(&data.as_slice()[..512], 256)),
                Some(libc::EINVAL)
            );
            assert_eq!(file.read_at(b, size).unwrap(), 0, "read at EOF");
            assert_eq!(
                file.read_at(b, size - 4096).unwrap(),
                4096,
                "read across EOF"
            );
            assert_eq!(file.write_at(data.as_slice(), size - 4096).unwrap(), 4096);
            assert_eq!(
                os_err(file.write_at(data.as_slice(), size)),
                Some(libc::ENOSPC)
            );
        }

        // Buffered: still reaches the device at once, writes still sector-bound.
        {
            let file = f.open(true, false);
            let data = pattern(1024, 2);
            assert_eq!(file.write_at(&data, 0).unwrap(), 1024);
            assert_eq!(f.dev.peek(0, 1024), data);
            let mut back = vec![0; 1024];
            assert_eq!(file.read_at(&mut back, 0).unwrap(), 1024);
            assert_eq!(back, data);
            assert_eq!(file.read_at(&mut back[..100], 0).unwrap(), 100);
            assert_eq!(back[..100], data[..100]);
            assert_eq!(os_err(file.write_at(&data[..100], 0)), Some(libc::EINVAL));

            // fsync and fdatasync are BIO_FLUSH; close is not.
            file.sync_all().unwrap();
            file.sync_data().unwrap();
            assert_eq!(f.fake.fake.seen(0).flushes, 2);

            // Punch hole is BIO_DELETE; other modes are not supported.
            let punch = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
            fallocate(&file, punch, 0, 512).unwrap();
            assert_eq!(f.fake.fake.seen(0).deletes, [(0, 512)]);
            assert_eq!(f.dev.peek(0, 512), vec![0; 512]);
            assert_eq!(f.dev.peek(512, 512), data[512..]);
            assert_eq!(
                fallocate(&file, punch, 100, 512),
                Err(nix::errno::Errno::EINVAL)
            );
            let zero = FallocateFlags::FALLOC_FL_ZERO_RANGE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
            assert_eq!(
                fallocate(&file, zero, 0, 512),
                Err(nix::errno::Errno::EOPNOTSUPP)
            );
            assert_eq!(
                fallocate(&file, FallocateFlags::empty(), 0, 512),
                Err(nix::errno::Errno::EOPNOTSUPP)
            );

            // A device cannot be truncated: ftruncate succeeds and changes nothing.
            file.set_len(0).unwrap();
            assert_eq!(file.metadata().unwrap().len(), size);
        }
        assert_eq!(f.fake.fake.seen(0).flushes, 2, "close sent no flush");

        // O_TRUNC is ignored.
        let before = f.dev.peek(4096, 8192);
        drop(
            OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(f.file())
                .unwrap(),
        );
        assert_eq!(fs::metadata(f.file()).unwrap().len(), size);
        assert_eq!(f.dev.peek(4096, 8192), before);

        // dd without conv=notrunc: O_TRUNC, then ftruncate(seek), then the writes.
        if have("dd") {
            let of = format!("of={}", f.file().display());
            run(
                "dd",
                &[
                    "if=/dev/zero",
                    &of,
                    "bs=4096",
                    "seek=1",
                    "count=2",
                    "status=none",
                ],
            );
            assert_eq!(f.dev.peek(4096, 8192), vec![0; 8192]);
            assert_eq!(fs::metadata(f.file()).unwrap().len(), size);
        }

        // Attributes and the file set are not the file system's to change.
        let chmod = fs::set_permissions(f.file(), fs::Permissions::from_mode(0o666));
        assert_eq!(os_err(chmod), Some(libc::EPERM));
        let create = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(f.dir.join("NEW"));
        assert_eq!(os_err(create), Some(libc::EPERM));
        assert_eq!(os_err(fs::remove_file(f.file())), Some(libc::EPERM));

        // The physical path, as getfattr would ask for it.
        if let Ok(out) = Command::new("python3")
            .arg("-c")
            .arg("import os,sys; p=sys.argv[1]; print(os.getxattr(p, sys.argv[2]).decode(), os.listxattr(p))")
            .arg(f.file())
            .arg(PHYSPATH_XATTR)
            .output()
        {
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(text.trim(), format!("md0/mp ['{PHYSPATH_XATTR}']"));
        } else {
            println!("(no python3: physpath xattr not checked)");
        }

        f.wait_all_closed();
        let dd = u32::from(have("dd"));
        assert_eq!(f.fake.fake.seen(0).opens, 3 + dd);
    }

    #[test]
    fn a_withered_provider_fails_at_once() {
        require_root!();
        let f = Fixture::new(MIB);
        let file = f.open(true, true);
        f.exports.write().unwrap().remove(f.geom);
        f.fake.fake.with(|s| s.knobs.withered = true);
        assert_eq!(os_err(fs::metadata(f.file())), Some(libc::ENOENT));
        assert_eq!(fs::read_dir(&f.dir).unwrap().count(), 0);
        let mut buf = IoBuf::zeroed(4096);
        assert_eq!(
            os_err(file.read_at(buf.as_mut_slice(), 0)),
            Some(libc::ENXIO)
        );
        assert_eq!(os_err(file.write_at(buf.as_slice(), 0)), Some(libc::ENXIO));
        assert_eq!(os_err(file.sync_all()), Some(libc::ENXIO));
        assert_eq!(file.metadata().unwrap().len(), MIB, "fstat still answers");
        drop(file);
        f.wait_all_closed();
    }

    #[test]
    fn unmount_refuses_while_open_and_can_retry() {
        require_root!();
        let mut f = Fixture::new(MIB);
        let file = f.open(false, false);
        let export = f.export.take().unwrap();
        let err = export.unmount().unwrap_err();
        let err = err.downcast::<UnmountError>().expect("an UnmountError");
        assert_eq!(err.errno(), nix::errno::Errno::EBUSY);
        let export = err.into_export();
        assert!(fs::metadata(f.file()).is_ok(), "still served");
        drop(file);
        f.wait_all_closed();
        let dir = export.mountpoint().to_path_buf();
        export.unmount().unwrap();
        assert!(!is_mount_point(&dir));
    }

    /// Mounts fusectl at a temporary directory for as long as it lives.
    struct FuseCtl(PathBuf);

    impl FuseCtl {
        fn mount() -> FuseCtl {
            let dir = unique_dir("ctl");
            fs::create_dir_all(&dir).unwrap();
            let ctl = FuseCtl(dir);
            nix::mount::mount(
                Some("fusectl"),
                &ctl.0,
                Some("fusectl"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .expect("mount fusectl");
            ctl
        }
    }

    /// Aborts the FUSE connection mounted at `dir`, as a dead server leaves it.
    fn abort_connection(dir: &Path) {
        let conn = nix::sys::stat::minor(fs::metadata(dir).unwrap().dev());
        let ctl = FuseCtl::mount();
        fs::write(ctl.0.join(conn.to_string()).join("abort"), "1").unwrap();
    }

    impl Drop for FuseCtl {
        fn drop(&mut self) {
            let _ = nix::mount::umount(&self.0);
            let _ = fs::remove_dir(&self.0);
        }
    }

    #[test]
    fn a_dead_mount_is_detached_and_mounted_again() {
        require_root!();
        let mut f = Fixture::new(MIB);
        let file = f.open(true, false);
        // Kill the connection as a crashed daemon would leave it.
        abort_connection(&f.dir);
        assert_eq!(os_err(fs::metadata(&f.dir)), Some(libc::ENOTCONN));
        // The session ended with FRED open: its access was given back anyway.
        f.wait_all_closed();
        assert!(cleanup_stale(&f.dir).unwrap(), "the dead mount is detached");
        assert!(!is_mount_point(&f.dir));
        assert!(
            !cleanup_stale(&f.dir).unwrap(),
            "a plain directory is left alone"
        );
        drop(file);
        // The dead session's unmount returns at once (it may report how the readers saw
        // the abort).
        if let Err(e) = f.export.take().unwrap().unmount() {
            assert!(e.downcast_ref::<UnmountError>().is_none(), "{e:#}");
            println!("unmount after the abort: {e:#}");
        }
        // A restart mounts again, and a live mount is left alone.
        let again = mount(
            &f.dir,
            f.exports.clone(),
            f.owner.clone(),
            FuseOptions::default(),
        )
        .expect("mount after a crash");
        assert_eq!(fs::metadata(f.file()).unwrap().len(), MIB);
        assert!(
            !cleanup_stale(&f.dir).unwrap(),
            "a live mount is left alone"
        );
        f.export = Some(again);
    }

    #[test]
    fn mount_detaches_a_dead_mount_itself() {
        require_root!();
        let mut f = Fixture::new(MIB);
        abort_connection(&f.dir);
        assert_eq!(os_err(fs::metadata(&f.dir)), Some(libc::ENOTCONN));
        // As after a crash, but with the old session still around: it must not take the
        // new mount down when it goes.
        let old = f.export.take().unwrap();
        let again = mount(
            &f.dir,
            f.exports.clone(),
            f.owner.clone(),
            FuseOptions::default(),
        )
        .expect("mount over a dead mount");
        if let Err(e) = old.unmount() {
            assert!(e.downcast_ref::<UnmountError>().is_none(), "{e:#}");
        }
        assert_eq!(fs::metadata(f.file()).unwrap().len(), MIB);
        f.export = Some(again);
    }

    fn have(tool: &str) -> bool {
        let path = std::env::var("PATH").unwrap_or_default();
        let found = path
            .split(':')
            .chain(["/sbin", "/usr/sbin"])
            .any(|d| Path::new(d).join(tool).exists());
        found
    }

    fn run(cmd: &str, args: &[&str]) -> String {
        let out = Command::new(cmd).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A loop device on an export, and an ext4 mount on it: always undone, also when a
    /// test fails halfway.
    struct LoopGuard {
        dev: String,
        mnt: PathBuf,
        mounted: bool,
    }

    impl Drop for LoopGuard {
        fn drop(&mut self) {
            if self.mounted {
                let _ = Command::new("umount").arg(&self.mnt).status();
            }
            let _ = fs::remove_dir(&self.mnt);
            let _ = Command::new("losetup").args(["-d", &self.dev]).status();
        }
    }

    #[test]
    fn a_loop_device_carries_ext4() {
        require_root!();
        if let Some(t) = [
            "losetup",
            "mkfs.ext4",
            "fsck.ext4",
            "mount",
            "umount",
            "cmp",
        ]
        .into_iter()
        .find(|t| !have(t))
        {
            println!("SKIPPED: no {t}");
            return;
        }
        let mut f = Fixture::new(64 * MIB);
        let file = f.file();
        let mut lo = LoopGuard {
            dev: run("losetup", &["-f", "--show", file.to_str().unwrap()]),
            mnt: unique_dir("ext4"),
            mounted: false,
        };
        run("mkfs.ext4", &["-q", "-F", &lo.dev]);
        assert_eq!(
            f.dev.peek(1024 + 0x38, 2),
            [0x53, 0xef],
            "ext4 magic on FRED"
        );
        fs::create_dir_all(&lo.mnt).unwrap();
        run("mount", &[&lo.dev, lo.mnt.to_str().unwrap()]);
        lo.mounted = true;
        // Only child processes touch the ext4 mount: a descriptor of ours could be
        // inherited by a child another test forks meanwhile, and make the umount fail.
        let data = unique_dir("data");
        fs::write(&data, pattern(3 * MIB as usize, 7)).unwrap();
        let hello = lo.mnt.join("hello");
        let (data, hello) = (data.to_str().unwrap(), hello.to_str().unwrap());
        run("cp", &[data, hello]);
        run("sync", &["-f", hello]);
        run("umount", &[lo.mnt.to_str().unwrap()]);
        lo.mounted = false;
        run("fsck.ext4", &["-fn", &lo.dev]);

        // While the loop device holds the file, the export cannot go away.
        let err = f.export.take().unwrap().unmount().unwrap_err();
        let err = err.downcast::<UnmountError>().expect("an UnmountError");
        assert_eq!(err.errno(), nix::errno::Errno::EBUSY);
        f.export = Some(err.into_export());

        run("mount", &[&lo.dev, lo.mnt.to_str().unwrap()]);
        lo.mounted = true;
        run("cmp", &[data, hello]);
        drop(lo);
        let _ = fs::remove_file(data);
        f.wait_all_closed();
    }
}

//! A fault-injecting FUSE server for path faults: it serves one file, `disk`, that is a
//! view of a shared image file, and can be told to fail every request with an errno, to
//! delay each one, to hang until told otherwise, or to die (its FUSE connection aborted).
//!
//! A loop device over `disk` is then one path whose faults the test controls: the loop
//! driver reports any error of its backing file as EIO, a hang as a hang, and a dead
//! server as EIO on every request. Two servers over the same image give two paths to one
//! disk that fail independently. Reads and writes go straight to the image (the file is
//! opened with direct I/O, so no cache sits between two servers sharing it).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, SessionACL, WriteFlags,
};

/// What the server does with each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Serve it.
    None,
    /// Fail it with this errno.
    Errno(i32),
    /// Serve it after this long.
    Delay(Duration),
    /// Hold it until the fault changes.
    Hang,
}

struct Control {
    fault: Mutex<Fault>,
    changed: Condvar,
    /// Requests that met a fault (failed, delayed or held).
    hit: AtomicU64,
}

impl Control {
    /// Waits out a hang, then applies the fault: `Err(errno)` to fail the request.
    fn gate(&self) -> Result<(), i32> {
        let mut f = self.fault.lock().unwrap();
        if *f != Fault::None {
            self.hit.fetch_add(1, Ordering::Relaxed);
        }
        while *f == Fault::Hang {
            f = self.changed.wait(f).unwrap();
        }
        match *f {
            Fault::None | Fault::Hang => Ok(()),
            Fault::Errno(e) => Err(e),
            Fault::Delay(d) => {
                drop(f);
                std::thread::sleep(d);
                Ok(())
            }
        }
    }
}

const DISK: u64 = 2;
const TTL: Duration = Duration::ZERO;

struct Server {
    image: File,
    size: u64,
    control: Arc<Control>,
    born: SystemTime,
}

impl Server {
    fn attr(&self, ino: INodeNo) -> FileAttr {
        let dir = ino == INodeNo::ROOT;
        FileAttr {
            ino,
            size: if dir { 0 } else { self.size },
            blocks: if dir { 0 } else { self.size / 512 },
            atime: self.born,
            mtime: self.born,
            ctime: self.born,
            crtime: self.born,
            kind: if dir {
                FileType::Directory
            } else {
                FileType::RegularFile
            },
            perm: if dir { 0o755 } else { 0o600 },
            nlink: if dir { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 512,
            flags: 0,
        }
    }
}

impl Filesystem for Server {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent == INodeNo::ROOT && name == "disk" {
            reply.entry(&TTL, &self.attr(INodeNo(DISK)), Generation(0));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply.attr(&TTL, &self.attr(ino));
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if let Err(e) = self.control.gate() {
            return reply.error(Errno::from_i32(e));
        }
        let len = (size as u64).min(self.size.saturating_sub(offset)) as usize;
        let mut buf = vec![0u8; len];
        match self.image.read_exact_at(&mut buf, offset) {
            Ok(()) => reply.data(&buf),
            Err(e) => reply.error(Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if let Err(e) = self.control.gate() {
            return reply.error(Errno::from_i32(e));
        }
        match self.image.write_all_at(data, offset) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.control.gate() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(Errno::from_i32(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = [
            (INodeNo::ROOT, FileType::Directory, "."),
            (INodeNo::ROOT, FileType::Directory, ".."),
            (INodeNo(DISK), FileType::RegularFile, "disk"),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(*ino, (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// One fault server, mounted.
pub struct FaultFs {
    mount: PathBuf,
    control: Arc<Control>,
    session: Option<BackgroundSession>,
    conn: u32,
}

impl FaultFs {
    /// Serves `image` (its current size) as `<mount>/disk`.
    pub fn mount(mount: &Path, image: &Path) -> FaultFs {
        std::fs::create_dir_all(mount).expect("fault fs mount point");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(image)
            .expect("image");
        let size = file.metadata().expect("image size").len();
        let control = Arc::new(Control {
            fault: Mutex::new(Fault::None),
            changed: Condvar::new(),
            hit: AtomicU64::new(0),
        });
        let server = Server {
            image: file,
            size,
            control: control.clone(),
            born: SystemTime::now(),
        };
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName(String::from("faultfs"))];
        config.acl = SessionACL::All;
        config.n_threads = Some(8);
        let session = fuser::spawn_mount(server, mount, &config).expect("mounting the fault fs");
        let conn = crate::wait_for(|| {
            std::fs::metadata(mount)
                .ok()
                .filter(|m| m.ino() == 1)
                .map(|m| nix::sys::stat::minor(m.dev()) as u32)
        });
        FaultFs {
            mount: mount.to_path_buf(),
            control,
            session: Some(session),
            conn,
        }
    }

    /// The served file.
    pub fn file(&self) -> PathBuf {
        self.mount.join("disk")
    }

    /// Changes what the server does with every request from now on (a hang lets go).
    pub fn set(&self, fault: Fault) {
        *self.control.fault.lock().unwrap() = fault;
        self.control.changed.notify_all();
    }

    /// How many requests have met a fault so far.
    pub fn hits(&self) -> u64 {
        self.control.hit.load(Ordering::Relaxed)
    }

    /// Kills the server: its FUSE connection is aborted, so every request on it fails.
    pub fn kill(&self) -> io::Result<()> {
        let ctl = Path::new("/sys/fs/fuse/connections");
        if std::fs::read_dir(ctl)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true)
        {
            let _ = nix::mount::mount(
                Some("fusectl"),
                ctl,
                Some("fusectl"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            );
        }
        self.set(Fault::None);
        std::fs::write(ctl.join(self.conn.to_string()).join("abort"), "1")
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        self.set(Fault::None);
        let _ = nix::mount::umount2(&self.mount, nix::mount::MntFlags::MNT_DETACH);
        if let Some(s) = self.session.take() {
            // The lazy unmount above ends the session; dropping it must not unmount again.
            std::mem::forget(s);
        }
    }
}

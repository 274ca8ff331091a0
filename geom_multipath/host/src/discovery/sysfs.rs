//! Block devices as sysfs describes them, read without udev: the list of every block device
//! (`/sys/class/block/*`), one device's shape (size, sector sizes, read-only, loop backing
//! file, holders), its device node and its physical path (`GEOM::physpath`).
//!
//! This module only reads. It filters nothing (the caller decides which devices may be
//! paths), opens no device, and learns of no change by itself: [`crate::discovery::uevents`] says when
//! to look again. The sysfs root is a parameter of every reader (`*_at`), so tests run
//! against a fake tree; the plain functions read `/sys`.
//!
//! Layout relied on (Linux 6.x): `/sys/class/block/<name>` is a symlink to the device's
//! directory under `/sys/devices/…/block/<disk>[/<partition>]`; a disk has `queue/`, a
//! partition has a `partition` file and takes its queue, `removable` and `diskseq` from its
//! disk, which is its parent directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[cfg(test)]
use crate::path::device::DEV_ROOT;

/// The sysfs mount point.
pub const SYSFS_ROOT: &str = "/sys";

/// One block device (a whole disk or a partition) as sysfs shows it at the time of reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockDev {
    /// The kernel name: `loop3`, `sdb1`, `nvme0n1` (`!` stands for `/` in the node path).
    pub name: String,
    /// Device number (major, minor).
    pub dev: (u32, u32),
    /// Size in bytes (`size` counts 512-byte units whatever the sector size).
    pub size: u64,
    /// Logical sector size: the unit of O_DIRECT I/O.
    pub logical: u32,
    /// Physical sector size.
    pub physical: u32,
    /// Optimal I/O size, 0 if the device states none (GEOM's stripe size).
    pub optimal_io: u32,
    /// The file behind a bound loop device (`loop/backing_file`, possibly ending in
    /// ` (deleted)`); `None` for unbound loops, partitions and other devices.
    pub backing_file: Option<PathBuf>,
    /// A bound loop device set to detach at its last close (`loop/autoclear`): also what a
    /// `losetup -d` turns on while somebody holds the device open, which sends no uevent.
    pub loop_autoclear: bool,
    /// Writes are refused (`ro`).
    pub read_only: bool,
    /// Removable media (`removable`, the disk's for a partition).
    pub removable: bool,
    /// A partition of another block device.
    pub partition: bool,
    /// For a partition, the name of its disk.
    pub parent: Option<String>,
    /// The disk's media sequence number (`diskseq`, the disk's for a partition): it changes
    /// whenever the media changes (e.g. a loop device is bound to another file), so
    /// (name, diskseq) names one attachment. `None` on kernels without it.
    pub diskseq: Option<u64>,
    /// Devices stacked on this one (`holders/`), sorted.
    pub holders: Vec<String>,
    /// See [`physpath`].
    pub physpath: String,
    /// Who the disk is (GEOM::ident), see [`ident`]; `None` if it cannot say.
    pub ident: Option<String>,
}

/// The identity of a device, as GEOM::ident gives it: for a loop device its backing file's
/// device and inode in md(4)'s form (`MD-DEV<dev>-INO<ino>`: two loop devices over one file
/// are one disk), else the disk's WWID or serial number from sysfs (a partition's is its
/// disk's, with the partition's name after it); `None` when nothing says. A backing file on
/// a FUSE file system says nothing either: its inode is whatever the server answers and
/// each mount is a device of its own, so two FUSE files may well be two views of one disk
/// (an NBD or iSCSI disk through nbdfuse, a fault-injecting proxy).
pub fn ident(disk: &Path, backing_file: Option<&Path>, partition: Option<&str>) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if let Some(file) = backing_file {
        if file.to_string_lossy().ends_with(" (deleted)") || on_fuse(file) {
            return None;
        }
        let meta = fs::metadata(file).ok()?;
        return Some(format!("MD-DEV{}-INO{}", meta.dev(), meta.ino()));
    }
    let id = ["wwid", "device/wwid", "device/serial", "serial"]
        .iter()
        .find_map(|f| {
            fs::read_to_string(disk.join(f))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })?;
    Some(match partition {
        Some(p) => format!("{id}/{p}"),
        None => id,
    })
}

/// Whether `file` lives on a FUSE file system (where an inode names no storage).
fn on_fuse(file: &Path) -> bool {
    use nix::sys::statfs::{statfs, FUSE_SUPER_MAGIC};
    statfs(file).is_ok_and(|fs| fs.filesystem_type() == FUSE_SUPER_MAGIC)
}

/// Every block device under `/sys/class/block`, sorted by name.
pub fn scan() -> io::Result<Vec<BlockDev>> {
    scan_at(Path::new(SYSFS_ROOT))
}

/// Every block device under `<root>/class/block`, sorted by name. A device that disappears
/// while it is being read is left out; any other read error is returned.
pub fn scan_at(root: &Path) -> io::Result<Vec<BlockDev>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(root.join("class/block"))? {
        if let Some(name) = entry?.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    let mut devs = Vec::with_capacity(names.len());
    for name in names {
        if let Some(dev) = lookup_at(root, &name)? {
            devs.push(dev);
        }
    }
    Ok(devs)
}

/// The block device `name` (a kernel name such as `loop3`, not a path), or `None` if there
/// is no such device (or `name` cannot be one).
pub fn lookup(name: &str) -> io::Result<Option<BlockDev>> {
    lookup_at(Path::new(SYSFS_ROOT), name)
}

/// [`lookup`] under the sysfs root `root`.
pub fn lookup_at(root: &Path, name: &str) -> io::Result<Option<BlockDev>> {
    if !is_valid_name(name) {
        return Ok(None);
    }
    match read_dev(root, name) {
        Ok(dev) => Ok(Some(dev)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)] // only the tests ask; the daemon learns the path from uevents
/// The device node of `name`: `/dev/<name>`, with each `!` of the kernel name turned into
/// `/` as devtmpfs does (`cciss!c0d0` → `/dev/cciss/c0d0`).
pub fn device_node(name: &str) -> PathBuf {
    device_node_in(Path::new(DEV_ROOT), name)
}

/// [`device_node`] under the device directory `dev_root`.
pub fn device_node_in(dev_root: &Path, name: &str) -> PathBuf {
    dev_root.join(name.replace('!', "/"))
}

#[cfg(test)] // only the tests ask; the daemon learns the path from uevents
/// The device's physical location for `GEOM::physpath`: its sysfs device path without the
/// `/sys` prefix, e.g. `/devices/pci0000:00/0000:00:02.0/virtio1/block/vda` or
/// `/devices/virtual/block/loop3`; empty if the device is unknown.
///
/// The trailing `/block/<disk>[/<part>]` is kept on purpose: without it every virtual
/// device would share `/devices/virtual` and a partition would share its disk's path. The
/// string is exactly the `DEVPATH` of the device's uevents, and two paths to one disk (two
/// HBAs, two NVMe controllers) have different ones.
pub fn physpath(name: &str) -> String {
    physpath_at(Path::new(SYSFS_ROOT), name).unwrap_or_default()
}

#[cfg(test)] // only the tests ask; the daemon learns the path from uevents
/// [`physpath`] under the sysfs root `root`, with the error when the device is unknown.
pub fn physpath_at(root: &Path, name: &str) -> io::Result<String> {
    if !is_valid_name(name) {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    devpath(root, &fs::canonicalize(class_dir(root, name))?)
}

/// A kernel block device name can be used as one path component: not empty, no `/` or NUL,
/// not `.` or `..`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

fn class_dir(root: &Path, name: &str) -> PathBuf {
    root.join("class/block").join(name)
}

/// `dir` (canonical) relative to the canonical sysfs root, with a leading `/`.
fn devpath(root: &Path, dir: &Path) -> io::Result<String> {
    let root = fs::canonicalize(root)?;
    let rel = dir
        .strip_prefix(&root)
        .map_err(|_| invalid(format!("{} is outside {}", dir.display(), root.display())))?;
    let rel = rel
        .to_str()
        .ok_or_else(|| invalid(format!("{} is not UTF-8", rel.display())))?;
    Ok(format!("/{rel}"))
}

fn read_dev(root: &Path, name: &str) -> io::Result<BlockDev> {
    let dir = fs::canonicalize(class_dir(root, name))?;
    let partition = exists(&dir.join("partition"))?;
    // A partition's directory sits inside its disk's; the disk holds the queue.
    let disk = if partition {
        dir.parent()
            .ok_or_else(|| invalid(format!("partition {name} has no disk")))?
            .to_path_buf()
    } else {
        dir.clone()
    };
    let queue = disk.join("queue");
    let logical: u32 = parse(&queue.join("logical_block_size"))?;
    let backing = dir.join("loop");
    let backing_file = read_optional(&backing.join("backing_file"))?.map(PathBuf::from);
    let loop_autoclear = match read_optional(&backing.join("autoclear"))? {
        Some(v) => parse_str::<u8>(&v, &backing)? != 0,
        None => false,
    };
    let ident = ident(&disk, backing_file.as_deref(), partition.then_some(name));
    Ok(BlockDev {
        name: name.to_owned(),
        dev: parse_dev(&read(&dir.join("dev"))?)?,
        size: parse::<u64>(&dir.join("size"))?
            .checked_mul(512)
            .ok_or_else(|| invalid(format!("{name}: size overflows")))?,
        logical,
        physical: parse_optional(&queue.join("physical_block_size"))?.unwrap_or(logical),
        optimal_io: parse_optional(&queue.join("optimal_io_size"))?.unwrap_or(0),
        backing_file,
        loop_autoclear,
        read_only: parse::<u8>(&dir.join("ro"))? != 0,
        removable: parse_optional::<u8>(&disk.join("removable"))?.unwrap_or(0) != 0,
        partition,
        parent: if partition {
            disk.file_name().and_then(|n| n.to_str()).map(str::to_owned)
        } else {
            None
        },
        diskseq: parse_optional(&disk.join("diskseq"))?,
        ident,
        holders: holders(&dir.join("holders"))?,
        physpath: devpath(root, &dir)?,
    })
}

fn holders(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(e),
    };
    for entry in entries {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn exists(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The contents of a one-line attribute, without the trailing newline.
fn read(path: &Path) -> io::Result<String> {
    let mut s = fs::read_to_string(path)?;
    while s.ends_with(['\n', '\r']) {
        s.pop();
    }
    Ok(s)
}

fn read_optional(path: &Path) -> io::Result<Option<String>> {
    match read(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn parse_str<T: std::str::FromStr>(s: &str, path: &Path) -> io::Result<T> {
    s.trim()
        .parse()
        .map_err(|_| invalid(format!("{}: unexpected {s:?}", path.display())))
}

fn parse<T: std::str::FromStr>(path: &Path) -> io::Result<T> {
    parse_str(&read(path)?, path)
}

fn parse_optional<T: std::str::FromStr>(path: &Path) -> io::Result<Option<T>> {
    read_optional(path)?
        .map(|s| parse_str(&s, path))
        .transpose()
}

/// `"7:3"` → (7, 3).
fn parse_dev(s: &str) -> io::Result<(u32, u32)> {
    let bad = || invalid(format!("bad device number {s:?}"));
    let (major, minor) = s.trim().split_once(':').ok_or_else(bad)?;
    Ok((
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A unique directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "gmpd-{tag}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn put(path: &Path, contents: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    /// Adds a disk to a fake sysfs tree the way the kernel lays it out: the device under
    /// `devices/<bus>/block/<name>`, a relative symlink in `class/block`.
    pub(crate) fn fake_disk(root: &Path, bus: &str, name: &str, dev: &str, sectors: u64) {
        let dir = root.join("devices").join(bus).join("block").join(name);
        put(&dir.join("dev"), &format!("{dev}\n"));
        put(&dir.join("size"), &format!("{sectors}\n"));
        put(&dir.join("ro"), "0\n");
        put(&dir.join("removable"), "0\n");
        put(&dir.join("diskseq"), "84\n");
        put(&dir.join("queue/logical_block_size"), "512\n");
        put(&dir.join("queue/physical_block_size"), "4096\n");
        put(&dir.join("queue/optimal_io_size"), "0\n");
        fs::create_dir_all(dir.join("holders")).unwrap();
        fs::create_dir_all(root.join("class/block")).unwrap();
        symlink(
            format!("../../devices/{bus}/block/{name}"),
            root.join("class/block").join(name),
        )
        .unwrap();
    }

    fn fake_partition(root: &Path, bus: &str, disk: &str, name: &str, dev: &str, sectors: u64) {
        let dir = root
            .join("devices")
            .join(bus)
            .join("block")
            .join(disk)
            .join(name);
        put(&dir.join("dev"), &format!("{dev}\n"));
        put(&dir.join("size"), &format!("{sectors}\n"));
        put(&dir.join("ro"), "1\n");
        put(&dir.join("partition"), "1\n");
        put(&dir.join("start"), "2048\n");
        fs::create_dir_all(dir.join("holders")).unwrap();
        symlink(
            format!("../../devices/{bus}/block/{disk}/{name}"),
            root.join("class/block").join(name),
        )
        .unwrap();
    }

    #[test]
    fn disk_partition_and_loop_from_a_fake_tree() {
        let t = TempDir::new("sysfs");
        let root = &t.0;
        fake_disk(
            root,
            "pci0000:00/0000:00:02.0/virtio1",
            "vda",
            "254:0",
            2048,
        );
        fake_partition(
            root,
            "pci0000:00/0000:00:02.0/virtio1",
            "vda",
            "vda1",
            "254:1",
            1024,
        );
        fake_disk(root, "virtual", "loop3", "7:3", 16384);
        let loop3 = root.join("devices/virtual/block/loop3");
        put(&loop3.join("loop/backing_file"), "/tmp/x/img\n");
        put(&loop3.join("loop/autoclear"), "1\n");
        put(&loop3.join("removable"), "1\n");
        put(&loop3.join("queue/optimal_io_size"), "65536\n");
        fs::create_dir_all(loop3.join("holders/dm-0")).unwrap();
        fs::create_dir_all(loop3.join("holders/dm-1")).unwrap();

        let devs = scan_at(root).unwrap();
        let names: Vec<_> = devs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["loop3", "vda", "vda1"]);

        let vda1 = &devs[2];
        assert_eq!(vda1.dev, (254, 1));
        assert_eq!(vda1.size, 1024 * 512);
        assert!(vda1.partition);
        assert_eq!(vda1.parent.as_deref(), Some("vda"));
        // A partition has no queue/: its disk's sector sizes apply.
        assert_eq!(
            (vda1.logical, vda1.physical, vda1.optimal_io),
            (512, 4096, 0)
        );
        assert!(vda1.read_only);
        assert_eq!(vda1.diskseq, Some(84));
        assert_eq!(
            vda1.physpath,
            "/devices/pci0000:00/0000:00:02.0/virtio1/block/vda/vda1"
        );
        assert_eq!(vda1.backing_file, None);

        let loop3 = &devs[0];
        assert_eq!(loop3.dev, (7, 3));
        assert_eq!(loop3.size, 8 << 20);
        assert_eq!(loop3.optimal_io, 65536);
        assert_eq!(loop3.backing_file.as_deref(), Some(Path::new("/tmp/x/img")));
        assert!(loop3.loop_autoclear && loop3.removable && !loop3.partition);
        assert_eq!(loop3.holders, ["dm-0", "dm-1"]);
        assert_eq!(loop3.physpath, "/devices/virtual/block/loop3");
        assert_eq!(physpath_at(root, "loop3").unwrap(), loop3.physpath);

        assert_eq!(lookup_at(root, "vda").unwrap().as_ref(), Some(&devs[1]));
        assert_eq!(lookup_at(root, "sdz").unwrap(), None);
        assert_eq!(lookup_at(root, "../vda").unwrap(), None);
        assert!(physpath_at(root, "sdz").is_err());
    }

    #[test]
    fn a_garbled_attribute_is_an_error_not_a_zero() {
        let t = TempDir::new("sysfs");
        fake_disk(&t.0, "virtual", "loop1", "7:1", 8);
        put(&t.0.join("devices/virtual/block/loop1/size"), "lots\n");
        let e = lookup_at(&t.0, "loop1").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn node_names_follow_devtmpfs() {
        assert_eq!(device_node("loop3"), Path::new("/dev/loop3"));
        assert_eq!(device_node("cciss!c0d0"), Path::new("/dev/cciss/c0d0"));
    }

    #[test]
    fn the_real_sysfs_reads_cleanly() {
        let devs = match scan() {
            Ok(devs) => devs,
            Err(e) => {
                println!("SKIPPED: no readable /sys/class/block ({e})");
                return;
            }
        };
        for d in &devs {
            assert!(d.logical >= 512 && d.logical.is_power_of_two(), "{d:?}");
            assert!(d.physical >= d.logical, "{d:?}");
            assert!(d.physpath.starts_with("/devices/"), "{d:?}");
            assert_eq!(physpath(&d.name), d.physpath);
        }
    }
}

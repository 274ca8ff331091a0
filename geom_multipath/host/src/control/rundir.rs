//! The daemon's runtime directory (the control socket's and, by default, the pid file's)
//! and the other directories it writes a file into (its log's, a `--pidfile` elsewhere).
//!
//! A root daemon must not be tricked into writing through a path someone else controls:
//! with the socket in a directory a user owns, that user could plant a symbolic link named
//! `gmultipathd.pid` pointing at a file of root's, and the daemon would overwrite it. So:
//!
//! * every directory on the way, from `/` down, is owned by root or by the daemon's user,
//!   and no one else may write to it unless it is sticky (`/tmp`), where no one may remove
//!   or rename what another user owns;
//! * the runtime directory itself is made mode 0700 if missing, and an existing one must
//!   be owned by the daemon's user and writable by no one else (it is never chmod-ed on
//!   someone else's behalf);
//! * files are opened relative to a descriptor of their directory, never through a
//!   symbolic link (`O_NOFOLLOW`), and a file the daemon makes afresh (the pid file) is
//!   created exclusively (`O_EXCL`) after the old one is unlinked.
//!
//! It decides nothing else; refusals are errors that name the directory and the reason.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, lstat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// A directory the daemon may write files into, held by a descriptor.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    fd: OwnedFd,
}

/// The daemon's effective uid.
fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

/// Why an ancestor of the runtime directory cannot be trusted, if it cannot.
fn ancestor_problem(st: &FileStat) -> Option<String> {
    let mode = st.st_mode & 0o7777;
    if st.st_uid != 0 && st.st_uid != me() {
        return Some(format!("owned by uid {}", st.st_uid));
    }
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Some(format!("writable by others (mode {mode:04o})"));
    }
    None
}

/// Checks every directory from `/` down to `dir` (which exists), after resolving
/// symbolic links: each must be one that only root or the daemon's user can change.
fn check_ancestors(dir: &Path) -> anyhow::Result<()> {
    let real =
        std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    for a in real.ancestors() {
        let st = lstat(a).with_context(|| format!("checking {}", a.display()))?;
        if let Some(why) = ancestor_problem(&st) {
            bail!(
                "refusing {}: {} is {why}, so another user could redirect the daemon's files",
                dir.display(),
                a.display()
            );
        }
    }
    Ok(())
}

/// `dir` made absolute against the working directory.
fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.is_absolute() {
        return Ok(dir.to_path_buf());
    }
    Ok(std::env::current_dir()?.join(dir))
}

fn open_dir(path: &Path) -> anyhow::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
        Mode::empty(),
    )
    .with_context(|| format!("opening {} (not through a symbolic link)", path.display()))
}

impl RunDir {
    /// The runtime directory `dir`: made (mode 0700, and any missing parents 0755) if it
    /// does not exist; refused if a directory on the way is not root's or the daemon's
    /// user's, or is writable by others without being sticky, or if `dir` itself is not
    /// the daemon's user's or is writable by anyone else.
    pub fn claim(dir: &Path) -> anyhow::Result<RunDir> {
        let dir = absolute(dir)?;
        let mut existing = dir.as_path();
        let mut missing = Vec::new();
        while lstat(existing).is_err() {
            let Some(parent) = existing.parent() else {
                break;
            };
            missing.push(existing);
            existing = parent;
        }
        check_ancestors(existing)?;
        let mut fd = open_dir(existing)?;
        for (i, path) in missing.iter().rev().enumerate() {
            let name = path.file_name().context("a directory name")?;
            let mode = if i + 1 == missing.len() { 0o700 } else { 0o755 };
            match mkdirat(&fd, name, Mode::from_bits_truncate(mode)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
            fd = openat(
                &fd,
                name,
                OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
                Mode::empty(),
            )
            .with_context(|| format!("opening {}", path.display()))?;
        }
        let st = fstat(&fd).with_context(|| format!("checking {}", dir.display()))?;
        let mode = st.st_mode & 0o7777;
        if !is_dir(&st) {
            bail!("refusing {}: not a directory", dir.display());
        }
        if st.st_uid != me() {
            bail!(
                "refusing runtime directory {}: owned by uid {}, not by the daemon's uid {}",
                dir.display(),
                st.st_uid,
                me()
            );
        }
        if mode & 0o022 != 0 {
            bail!(
                "refusing runtime directory {}: writable by others (mode {mode:04o})",
                dir.display()
            );
        }
        Ok(RunDir { path: dir, fd })
    }

    /// An existing directory to write one file into (a log's, a pid file's elsewhere):
    /// refused unless it and every directory above it can be changed only by root or the
    /// daemon's user (or are sticky). Its mode is left alone.
    pub fn existing(dir: &Path) -> anyhow::Result<RunDir> {
        let dir = absolute(dir)?;
        check_ancestors(&dir)?;
        let fd = open_dir(&dir)?;
        Ok(RunDir { path: dir, fd })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes file `name` afresh, mode `mode`: an old one (or whatever else has that name)
    /// is unlinked, and the new one is created exclusively, never through a symbolic link.
    pub fn create_file(&self, name: &str, mode: libc::mode_t) -> io::Result<File> {
        self.remove(name)?;
        let fd = openat(
            &self.fd,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )?;
        Ok(File::from(fd))
    }

    /// Opens file `name` to append to, creating it with `mode` if missing; refused if it is
    /// a symbolic link, not a regular file, someone else's, or has another name elsewhere
    /// (a planted hard link).
    pub fn append_file(&self, name: &str, mode: libc::mode_t) -> io::Result<File> {
        let fd = openat(
            &self.fd,
            name,
            OFlag::O_WRONLY
                | OFlag::O_APPEND
                | OFlag::O_CREAT
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC
                | OFlag::O_NOCTTY,
            Mode::from_bits_truncate(mode),
        )?;
        let st = fstat(&fd)?;
        let regular = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
        if !regular || st.st_uid != me() || st.st_nlink != 1 {
            return Err(io::Error::other(format!(
                "{}: not a regular file of the daemon's own with one name",
                self.path.join(name).display()
            )));
        }
        Ok(File::from(fd))
    }

    /// Unlinks `name` if it exists (a symbolic link itself, never what it points to).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gmp-rundir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    #[test]
    fn a_missing_directory_is_made_private_and_files_are_made_afresh() {
        let d = scratch("make");
        let run = RunDir::claim(&d.join("a/run")).unwrap();
        let meta = std::fs::metadata(d.join("a/run")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        assert_eq!(
            std::fs::metadata(d.join("a")).unwrap().mode() & 0o777,
            0o755
        );
        // A symbolic link planted under the pid file's name is replaced, not followed.
        let victim = d.join("victim");
        std::fs::write(&victim, "root's file\n").unwrap();
        std::os::unix::fs::symlink(&victim, d.join("a/run/gmultipathd.pid")).unwrap();
        use std::io::Write;
        run.create_file("gmultipathd.pid", 0o644)
            .unwrap()
            .write_all(b"42\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's file\n");
        assert_eq!(
            std::fs::read_to_string(d.join("a/run/gmultipathd.pid")).unwrap(),
            "42\n"
        );
        // Appending refuses a symbolic link and a second name of another file.
        std::os::unix::fs::symlink(&victim, d.join("a/run/log")).unwrap();
        assert!(run.append_file("log", 0o640).is_err());
        std::fs::hard_link(&victim, d.join("a/run/log2")).unwrap();
        assert!(run.append_file("log2", 0o640).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's file\n");
        assert!(run.append_file("log3", 0o640).is_ok());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_directory_others_can_write_or_own_is_refused_and_left_alone() {
        let d = scratch("refuse");
        // Writable by others, not sticky: anything below it could be swapped.
        let open = d.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = RunDir::claim(&open.join("t")).unwrap_err().to_string();
        assert!(e.contains("writable by others"), "{e}");
        assert!(!open.join("t").exists(), "nothing made below it");
        // Owned by another user.
        let theirs = d.join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        if let Err(e) = std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)) {
            println!("SKIPPED: a directory of another user: chown needs root ({e})");
            std::fs::remove_dir_all(&d).unwrap();
            return;
        }
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = RunDir::claim(&theirs).unwrap_err().to_string();
        assert!(e.contains("owned by uid 65534"), "{e}");
        assert_eq!(
            std::fs::metadata(&theirs).unwrap().mode() & 0o777,
            0o700,
            "its mode untouched"
        );
        let e = RunDir::claim(&theirs.join("t")).unwrap_err().to_string();
        assert!(e.contains("owned by uid 65534"), "{e}");
        // A runtime directory of our own that others may write to.
        let loose = d.join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o733)).unwrap();
        let e = RunDir::claim(&loose).unwrap_err().to_string();
        assert!(e.contains("writable by others"), "{e}");
        // The runtime directory as a symbolic link to a good one is refused too.
        let good = d.join("good");
        std::fs::create_dir(&good).unwrap();
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&good, d.join("link")).unwrap();
        assert!(RunDir::claim(&d.join("link")).is_err());
        assert!(RunDir::claim(&good).is_ok());
        std::fs::remove_dir_all(&d).unwrap();
    }
}

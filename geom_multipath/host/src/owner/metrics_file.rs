//! The metrics file (`--metrics-file PATH`): the class's counters in the Prometheus text
//! format, rewritten every interval for node_exporter's textfile collector.
//!
//! Each rewrite goes to a temporary file beside PATH that is renamed over it, so a reader
//! sees the whole of one version or of the next, never a mix; a failed write is logged once
//! per failure streak and retried at the next interval. The owner decides when (its loop
//! wakes for [`MetricsFile::due`]); this module only writes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where and how often the counters are written.
#[derive(Debug)]
pub struct MetricsFile {
    path: PathBuf,
    every: Duration,
    next: Instant,
    failing: bool,
}

impl MetricsFile {
    /// Writes to `path` every `every`, the first time at once.
    pub fn new(path: PathBuf, every: Duration) -> MetricsFile {
        MetricsFile {
            path,
            every: every.max(Duration::from_millis(100)),
            next: Instant::now(),
            failing: false,
        }
    }

    /// When the next rewrite is due.
    pub fn due(&self) -> Instant {
        self.next
    }

    /// Rewrites the file with `text` if it is due at `now` (`text` is only made then).
    pub fn write_if_due(&mut self, now: Instant, text: impl FnOnce() -> String) {
        if now < self.next {
            return;
        }
        self.next = now + self.every;
        match replace(&self.path, text().as_bytes()) {
            Ok(()) => {
                if self.failing {
                    tracing::info!("{}: written again", self.path.display());
                }
                self.failing = false;
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!("{}: {e:#}", self.path.display());
                }
                self.failing = true;
            }
        }
    }
}

/// Replaces `path` with `bytes` atomically: a temporary file in the same directory,
/// flushed, then renamed over it.
pub fn replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .context("the metrics file needs a file name")?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes).context("writing")?;
        f.sync_data().context("flushing")?;
        std::fs::rename(&tmp, path).context("renaming into place")
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory of this test's own, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("gmp-metrics-{}-{test}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn replaces_whole_and_leaves_no_temporary_file() {
        let dir = Scratch::new("replace");
        let path = dir.path().join("gmultipath.prom");
        replace(&path, b"a 1\n").unwrap();
        replace(&path, b"a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn writes_when_due_and_not_before() {
        let dir = Scratch::new("due");
        let path = dir.path().join("m.prom");
        let mut file = MetricsFile::new(path.clone(), Duration::from_secs(15));
        let start = file.due();
        file.write_if_due(start, || "x 1\n".into());
        file.write_if_due(start + Duration::from_secs(1), || panic!("not due"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x 1\n");
        assert_eq!(file.due(), start + Duration::from_secs(15));
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let dir = Scratch::new("missing");
        let path = dir.path().join("no/such/dir/m.prom");
        assert!(replace(&path, b"x").is_err());
        let mut file = MetricsFile::new(path, Duration::from_secs(1));
        file.write_if_due(file.due(), String::new);
    }
}

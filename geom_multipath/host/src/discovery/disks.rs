//! FreeBSD's disks as the daemon finds them (the counterpart of `sysfs` on Linux):
//! the list at start from the `kern.disks` sysctl (every disk(9): da, ada, nvd, nda,
//! vtbd, …) and the depth-0 lines of `kern.geom.conftxt` (the DISK and MD classes'
//! providers, so md(4) devices count too), and one disk's shape from its device node: media
//! size (`DIOCGMEDIASIZE`), sector size (`DIOCGSECTORSIZE`), stripe size
//! (`DIOCGSTRIPESIZE`) and `GEOM::physpath` (`DIOCGPHYSPATH`).
//!
//! Only whole units are candidates ([`is_disk_name`]: letters then digits, `da3`, `md1`,
//! `ggate0`): not partitions or slices (`da0p1`, `ada0s1a`), not labels and other aliases of
//! a disk (`gpt/root`, `diskid/…`), and not the daemon's own `multipath/NAME` devices. A
//! path that is an alias of another would be tasted twice.
//!
//! The parsers are pure and tested on every platform; reading the sysctls and opening nodes
//! is FreeBSD's. A node is opened through [`crate::path::device::open_node`], so a sandboxed
//! daemon opens it relative to its `/dev` descriptor. Sysctls cannot be read in capability
//! mode: after start, devd ([`crate::discovery::devd`]) says what changed.

use crate::path::device::DEV_ROOT;

/// The sysctl that names every disk(9), separated by spaces.
pub const KERN_DISKS: &str = "kern.disks";
/// The sysctl that lists the GEOM tree below the DISK and MD classes, one provider a line.
pub const KERN_CONFTXT: &str = "kern.geom.conftxt";

/// `true` if `name` is a whole unit's: lowercase letters, then decimal digits (`da0`,
/// `ada12`, `nvd0`, `vtbd1`, `md3`, `ggate0`), at most 64 bytes.
pub fn is_disk_name(name: &str) -> bool {
    let letters = name.bytes().take_while(u8::is_ascii_lowercase).count();
    let digits = &name[letters..];
    letters > 0
        && !digits.is_empty()
        && name.len() <= 64
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The disk names in the text of `kern.disks` (unordered, space-separated; the kernel
/// lists the newest first), whole units only, sorted, each once.
pub fn parse_kern_disks(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .split_ascii_whitespace()
        .filter(|n| is_disk_name(n))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// One provider line of `kern.geom.conftxt`: `<depth> <class> <name> <mediasize>
/// <sectorsize> [class-specific fields…]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfLine {
    /// How far below a DISK or MD provider (0: the disk itself).
    pub depth: u32,
    /// The class (`DISK`, `MD`, `PART`, …).
    pub class: String,
    /// The provider's name.
    pub name: String,
    /// Bytes.
    pub mediasize: u64,
    /// Bytes per sector.
    pub sectorsize: u32,
}

/// Every well-formed line of `kern.geom.conftxt` (others are skipped).
pub fn parse_conftxt(text: &str) -> Vec<ConfLine> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            Some(ConfLine {
                depth: f.next()?.parse().ok()?,
                class: f.next()?.to_string(),
                name: f.next()?.to_string(),
                mediasize: f.next()?.parse().ok()?,
                sectorsize: f.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// The disks at start: the names of `kern.disks` and the depth-0 providers of
/// `kern.geom.conftxt` (either text may be missing), whole units only, sorted, each once.
pub fn candidates(kern_disks: Option<&str>, conftxt: Option<&str>) -> Vec<String> {
    let mut names = kern_disks.map(parse_kern_disks).unwrap_or_default();
    if let Some(text) = conftxt {
        names.extend(
            parse_conftxt(text)
                .into_iter()
                .filter(|l| l.depth == 0 && is_disk_name(&l.name))
                .map(|l| l.name),
        );
    }
    names.sort();
    names.dedup();
    names
}

/// One disk as its device node describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// Bytes (0 without media).
    pub mediasize: u64,
    /// Bytes per sector.
    pub sectorsize: u32,
    /// The optimal access block, 0 if none (GEOM's stripe size).
    pub stripesize: u32,
    /// `GEOM::physpath`, empty if none.
    pub physpath: String,
}

/// The disks to look at when the daemon starts (see [`candidates`]). A sysctl that cannot
/// be read is logged and counts as empty.
#[cfg(target_os = "freebsd")]
pub fn scan() -> Vec<String> {
    let read = |name: &str| match crate::sys::freebsd::sysctl_string(name) {
        Ok(text) => Some(text),
        Err(e) => {
            tracing::warn!("reading {name}: {e}");
            None
        }
    };
    let disks = read(KERN_DISKS);
    let conftxt = read(KERN_CONFTXT);
    candidates(disks.as_deref(), conftxt.as_deref())
}

/// The node of disk `name`.
pub fn node(name: &str) -> std::path::PathBuf {
    std::path::Path::new(DEV_ROOT).join(name)
}

/// Disk `name` as its node says now, or `None` if there is no such disk (no node, no
/// media, not a disk). Opens the node read-only for the moment of asking.
#[cfg(target_os = "freebsd")]
pub fn lookup(name: &str) -> std::io::Result<Option<Disk>> {
    use std::os::fd::AsFd;
    if !is_disk_name(name) {
        return Ok(None);
    }
    let file = match crate::path::device::open_node(&node(name), false, false) {
        Ok(f) => f,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let geometry = match crate::sys::block_geometry(file.as_fd()) {
        Ok(g) => g,
        // ENOENT: no media (the ioctl's answer for a size of 0); ENOTTY: not a disk.
        Err(e) if gone(&e) || e.raw_os_error() == Some(libc::ENOTTY) => return Ok(None),
        Err(e) => return Err(e),
    };
    let physpath = crate::sys::freebsd::disk_physpath(file.as_fd()).unwrap_or_default();
    Ok(Some(Disk {
        mediasize: geometry.size,
        sectorsize: geometry.logical,
        stripesize: geometry.optimal,
        physpath,
    }))
}

/// An error that means the disk is not there (any more).
#[cfg(target_os = "freebsd")]
fn gone(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENXIO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_units_are_disks_and_nothing_else() {
        for name in [
            "da0", "ada12", "nvd0", "nda3", "vtbd1", "md7", "ggate0", "mmcsd0",
        ] {
            assert!(is_disk_name(name), "{name}");
        }
        for name in [
            "",
            "da",
            "0",
            "da0p1",
            "ada0s1a",
            "gpt/root",
            "diskid/DISK-X",
            "multipath/FRED",
            "md0.nop",
            "DA0",
            "da-1",
            "da0 ",
            "../da0",
        ] {
            assert!(!is_disk_name(name), "{name}");
        }
        assert!(!is_disk_name(&format!("da{}", "1".repeat(64))), "too long");
    }

    #[test]
    fn kern_disks_is_split_on_spaces() {
        assert_eq!(
            parse_kern_disks("da1 da0 ada0 cd0\n"),
            ["ada0", "cd0", "da0", "da1"]
        );
        assert_eq!(parse_kern_disks(""), Vec::<String>::new());
        assert_eq!(parse_kern_disks("da0  da0"), ["da0"]);
    }

    const CONFTXT: &str = "\
0 DISK ada0 21474836480 512 hd 16 sc 63
1 PART ada0p2 21474332672 512 i 2 o 503808 ty freebsd-ufs xs GPT xt 516e7cb6
2 LABEL gpt/rootfs 21474332672 512 i 0 o 0
1 PART ada0p1 524288 512 i 1 o 20480 ty freebsd-boot xs GPT xt 83bd6b9d
0 MD md0 67108864 512 u 0 s 512 f 0 fs 0 l 67108864 t vnode file /tmp/img
1 MULTIPATH multipath/FRED 67108352 512
0 DISK da0 1073741824 4096 hd 255 sc 63
garbage
";

    #[test]
    fn conftxt_lines_give_depth_class_name_and_geometry() {
        let lines = parse_conftxt(CONFTXT);
        assert_eq!(lines.len(), 7, "the garbage line is skipped");
        assert_eq!(
            lines[0],
            ConfLine {
                depth: 0,
                class: "DISK".into(),
                name: "ada0".into(),
                mediasize: 21474836480,
                sectorsize: 512,
            }
        );
        assert_eq!(lines[2].name, "gpt/rootfs");
        assert_eq!(lines[4].class, "MD");
    }

    #[test]
    fn candidates_are_disks_and_md_devices_each_once() {
        assert_eq!(
            candidates(Some("da0 ada0"), Some(CONFTXT)),
            ["ada0", "da0", "md0"]
        );
        assert_eq!(candidates(None, Some(CONFTXT)), ["ada0", "da0", "md0"]);
        assert_eq!(candidates(Some("da1"), None), ["da1"]);
        assert_eq!(candidates(None, None), Vec::<String>::new());
    }

    #[test]
    fn nodes_are_under_dev() {
        assert_eq!(node("da0"), std::path::Path::new("/dev/da0"));
    }
}

//! Data through /dev/multipath/NAME: integrity, failover while a path fails every request,
//! every path failing, a path that goes away and comes back, a file system made, used and
//! checked through another path, and commands running while I/O does.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;

use gmultipath_e2e::{root_or_skip, sh, sha256, wait_until, Daemon, Loop, Scratch};

const MIB: u64 = 1 << 20;

/// `len` bytes of a repeatable pseudo-random pattern.
pub(crate) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `data` at `offset` of `path` with O_DIRECT, returns the error if any.
pub(crate) fn write_direct(
    path: &std::path::Path,
    offset: u64,
    data: &[u8],
) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    // O_DIRECT needs an aligned buffer: copy into one.
    let mut buf = vec![0u8; data.len() + 4096];
    let start = buf.as_ptr().align_offset(4096);
    buf[start..start + data.len()].copy_from_slice(data);
    f.write_all(&buf[start..start + data.len()])?;
    f.sync_all()
}

pub(crate) fn read_direct(
    path: &std::path::Path,
    offset: u64,
    len: usize,
) -> std::io::Result<Vec<u8>> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len + 4096];
    let start = buf.as_ptr().align_offset(4096);
    f.read_exact(&mut buf[start..start + len])?;
    Ok(buf[start..start + len].to_vec())
}

/// Two NOPs with an offset over two loops over one image, and a geom labelled over them:
/// the offset makes the raw loops fail taste's size check, so only the NOPs join.
pub(crate) struct NopPaths {
    pub(crate) daemon: Daemon,
    pub(crate) nops: [String; 2],
    _loops: [Loop; 2],
    _scratch: Scratch,
}

pub(crate) fn nop_paths(tag: &str) -> NopPaths {
    let scratch = Scratch::new(tag);
    let img = scratch.image("disk.img", 64 * MIB);
    let loops = [Loop::attach(&img), Loop::attach(&img)];
    let daemon = Daemon::start(&scratch);
    daemon
        .gnop(&["create", "-o", "4096", &loops[0].name, &loops[1].name])
        .ok();
    let nops = [
        format!("{}.nop", loops[0].name),
        format!("{}.nop", loops[1].name),
    ];
    daemon
        .gmultipath(&["label", "FRED", &nops[0], &nops[1]])
        .ok();
    daemon.wait_status("FRED", "OPTIMAL");
    NopPaths {
        daemon,
        nops,
        _loops: loops,
        _scratch: scratch,
    }
}

#[test]
fn written_data_reads_back_through_either_path() {
    if !root_or_skip("written_data_reads_back") {
        return;
    }
    let scratch = Scratch::new("integrity");
    let img = scratch.image("disk.img", 64 * MIB);
    let (a, b) = (Loop::attach(&img), Loop::attach(&img));
    let d = Daemon::start(&scratch);
    d.gmultipath(&["label", "FRED", &a.name, &b.name]).ok();
    let data = pattern(8 * MIB as usize, 7);
    write_direct(&d.file("FRED"), 3 * MIB, &data).unwrap();
    assert_eq!(
        sha256(&read_direct(&d.file("FRED"), 3 * MIB, data.len()).unwrap()),
        sha256(&data)
    );
    d.gmultipath(&["prefer", "FRED", &b.name]).ok();
    assert_eq!(
        sha256(&read_direct(&d.file("FRED"), 3 * MIB, data.len()).unwrap()),
        sha256(&data)
    );
    // dd straight onto the device node works too.
    sh(&format!(
        "dd if=/dev/zero of={} bs=1M count=2 oflag=direct status=none",
        d.file("FRED").display()
    ));
    assert_eq!(
        read_direct(&d.file("FRED"), 0, 4096).unwrap(),
        vec![0u8; 4096]
    );
}

#[test]
fn a_path_failing_every_request_is_failed_over_and_the_write_succeeds() {
    if !root_or_skip("failover") {
        return;
    }
    let t = nop_paths("failover");
    let d = &t.daemon;
    d.gnop(&["configure", "-r", "100", "-w", "100", &t.nops[0]])
        .ok();
    let data = pattern(MIB as usize, 11);
    write_direct(&d.file("FRED"), 0, &data).expect("the write succeeds on the other path");
    let status = d.gmultipath(&["status"]).ok().to_string();
    assert!(
        status.contains(&format!("{} (FAIL)", t.nops[0])),
        "{status}"
    );
    assert!(
        status.contains(&format!("{} (ACTIVE)", t.nops[1])),
        "{status}"
    );
    assert!(status.contains("DEGRADED"), "{status}");
    assert_eq!(read_direct(&d.file("FRED"), 0, data.len()).unwrap(), data);
    assert!(d.messages().contains(&format!(
        "GEOM_MULTIPATH: Error 5, {} in FRED marked FAIL",
        t.nops[0]
    )));
    assert_eq!(d.probe("geom:multipath:config:fail"), 1);
}

#[test]
fn every_path_failing_ends_in_an_error_without_looping() {
    if !root_or_skip("all_paths_fail") {
        return;
    }
    let t = nop_paths("allfail");
    let d = &t.daemon;
    for n in &t.nops {
        d.gnop(&["configure", "-r", "100", "-w", "100", n]).ok();
    }
    let err = write_direct(&d.file("FRED"), 0, &pattern(4096, 3)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let restores = d.probe("geom:multipath:config:restore");
    assert!(restores <= 2, "PR 178473: {restores} restore events");
    // Once a path works again, so does the provider.
    d.gnop(&["configure", "-r", "0", "-w", "0", &t.nops[1]])
        .ok();
    d.gmultipath(&["restore", "FRED", &t.nops[1]]).ok();
    write_direct(&d.file("FRED"), 0, &pattern(4096, 4)).unwrap();
}

#[test]
fn a_detached_path_leaves_and_rejoins_by_uuid() {
    if !root_or_skip("detach_rejoin") {
        return;
    }
    let scratch = Scratch::new("rejoin");
    let img = scratch.image("disk.img", 64 * MIB);
    let a = Loop::attach(&img);
    let b = Loop::attach(&img);
    let d = Daemon::start(&scratch);
    d.gmultipath(&["label", "FRED", &a.name, &b.name]).ok();
    let gone = b.name.clone();
    b.detach(); // held by the daemon: the kernel defers it, sysfs shows autoclear
    wait_until("the detached path to leave", || {
        !d.gmultipath(&["status", "-s"]).stdout.contains(&gone)
    });
    d.wait_status("FRED", "DEGRADED");
    let msgs = d.messages();
    assert!(
        msgs.contains(&format!("GEOM_MULTIPATH: {gone} in FRED was disconnected")),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&format!("GEOM_MULTIPATH: {gone} removed from FRED")),
        "{msgs:?}"
    );
    assert_eq!(d.probe("geom:multipath:config:disconnect"), 1);
    let back = Loop::attach(&img);
    wait_until("the re-attached path to rejoin", || {
        d.gmultipath(&["status", "-s"]).stdout.contains(&back.name)
    });
    d.wait_status("FRED", "OPTIMAL");
    // Data written while degraded is there through the new path.
    let data = pattern(MIB as usize, 5);
    write_direct(&d.file("FRED"), 0, &data).unwrap();
    d.gmultipath(&["prefer", "FRED", &back.name]).ok();
    assert_eq!(read_direct(&d.file("FRED"), 0, data.len()).unwrap(), data);
}

#[test]
fn a_file_system_made_through_the_export_checks_clean_through_a_path() {
    if !root_or_skip("mkfs_mount_fsck") {
        return;
    }
    let scratch = Scratch::new("fs");
    let img = scratch.image("disk.img", 128 * MIB);
    let a = Loop::attach(&img);
    let b = Loop::attach(&img);
    let d = Daemon::start(&scratch);
    d.gmultipath(&["label", "FRED", &a.name, &b.name]).ok();
    let on_export = Loop::attach(&d.file("FRED"));
    let mnt = scratch.dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    sh(&format!("mkfs.ext4 -q -F {}", on_export.dev()));
    sh(&format!("mount {} {}", on_export.dev(), mnt.display()));
    let data = pattern(5 * MIB as usize, 9);
    let copied = (|| -> std::io::Result<Vec<u8>> {
        std::fs::write(mnt.join("file"), &data)?;
        sh("sync");
        d.gmultipath(&["fail", "FRED", &a.name]).ok(); // the rest goes through the other path
        std::fs::write(mnt.join("file2"), &data)?;
        std::fs::read(mnt.join("file"))
    })();
    let _ = sh(&format!("umount {}", mnt.display()));
    on_export.detach();
    assert_eq!(sha256(&copied.unwrap()), sha256(&data));
    d.gmultipath(&["stop", "FRED"]).ok();
    // The file system lies at the start of every path: check it through one directly.
    sh(&format!("fsck.ext4 -fn {}", b.dev()));
}

#[test]
fn commands_run_while_io_does() {
    if !root_or_skip("commands_during_io") {
        return;
    }
    let scratch = Scratch::new("busy");
    let img = scratch.image("disk.img", 64 * MIB);
    let (a, b) = (Loop::attach(&img), Loop::attach(&img));
    let d = Daemon::start(&scratch);
    d.gmultipath(&["label", "FRED", &a.name, &b.name]).ok();
    let file = d.file("FRED");
    let writer = std::thread::spawn(move || {
        for i in 0..40u64 {
            write_direct(&file, (i % 32) * MIB, &pattern(MIB as usize, i)).unwrap();
        }
    });
    let mut rounds = 0;
    while !writer.is_finished() || rounds < 3 {
        assert!(d.gmultipath(&["status"]).ok().contains("OPTIMAL"));
        d.gmultipath(&["rotate", "FRED"]).ok();
        rounds += 1;
    }
    writer.join().expect("the writer saw no error");
}

#[test]
fn destroying_an_open_provider_fails_its_handles_with_enxio() {
    if !root_or_skip("destroy_open") {
        return;
    }
    let scratch = Scratch::new("wither");
    let img = scratch.image("disk.img", 32 * MIB);
    let (a, b) = (Loop::attach(&img), Loop::attach(&img));
    let d = Daemon::start(&scratch);
    d.gmultipath(&["create", "FRED", &a.name, &b.name]).ok();
    let mut f = OpenOptions::new().read(true).open(d.file("FRED")).unwrap();
    d.gmultipath(&["stop", "FRED"]).ok();
    assert!(!d.file("FRED").exists(), "gone from /dev/multipath at once");
    let mut buf = vec![0u8; 4096];
    let err = f.read(&mut buf).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENXIO), "{err}");
    drop(f);
    wait_until("the geom to finish going", || {
        d.messages()
            .contains(&"GEOM_MULTIPATH: FRED destroyed".to_string())
    });
}

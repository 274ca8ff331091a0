//! NBD both ways, end to end. The export: a multipath provider served on a Unix socket is
//! read and written by real clients (qemu-io, qemu-img, nbdinfo, nbdcopy, fio's nbd
//! engine) and agrees byte for byte with /dev/multipath/NAME. NBD paths: one remote disk
//! behind two network links (two nbdkit servers in a network namespace, `netdisk`) is a
//! geom whose paths are NBD URIs; each way a link can fail — down, every packet dropped,
//! silently firewalled, reset, the server killed — is survived under fio verify, and the
//! path comes back by itself once the link heals.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use gmultipath_e2e::netdisk::{Cut, NetDisk};
use gmultipath_e2e::{fio, root_or_skip, run, sh, sha256, wait_until, Daemon, Loop, Scratch};

const MIB: u64 = 1 << 20;

fn tools(tools: &[&str]) -> bool {
    for tool in tools {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        if !found {
            println!("SKIPPED: {tool} is not installed (.ci/run installs it)");
            return false;
        }
    }
    true
}

/// Runs a tool and asserts it succeeded; returns its stdout.
fn ok(program: &str, args: &[&str]) -> String {
    let out = run(Path::new(program), args, &[]);
    assert_eq!(
        out.code, 0,
        "{program} {args:?}: {}{}",
        out.stdout, out.stderr
    );
    out.stdout
}

#[test]
fn the_nbd_export_serves_the_multipath_provider_to_real_clients() {
    if !root_or_skip("nbd_export")
        || !tools(&["qemu-io", "qemu-img", "nbdinfo", "nbdcopy"])
        || !fio::available()
    {
        return;
    }
    let scratch = Scratch::new("nbd-export");
    let img = scratch.image("disk.img", 64 * MIB);
    let (a, b) = (Loop::attach(&img), Loop::attach(&img));
    let nbd_dir = scratch.dir.join("nbd");
    let d = Daemon::start_with(&scratch, &["--nbd-dir", nbd_dir.to_str().unwrap()]);
    d.gmultipath(&["label", "FRED", &a.name, &b.name]).ok();
    d.wait_status("FRED", "OPTIMAL");
    let sock: PathBuf = nbd_dir.join("FRED");
    wait_until("the NBD socket", || sock.exists());
    let uri = format!("nbd+unix:///?socket={}", sock.display());
    let provider_size = 64 * MIB - 512;

    // nbdinfo: the size is the provider's (the label sector is not exported).
    let info = ok("nbdinfo", &["--size", &uri]);
    assert_eq!(info.trim(), provider_size.to_string());

    // qemu-io writes a pattern; the FUSE file shows it; qemu-io reads it back.
    ok(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0x5a 1M 2M",
            "-c",
            "read -P 0x5a 1M 2M",
            &uri,
        ],
    );
    let mut via_fuse = vec![0u8; MIB as usize];
    for at in [MIB, 2 * MIB] {
        std::fs::File::open(d.file("FRED"))
            .and_then(|f| f.read_exact_at(&mut via_fuse, at))
            .expect("reading the export");
        assert!(via_fuse.iter().all(|&x| x == 0x5a));
    }

    // Data written through the FUSE file reads back the same through nbdcopy and qemu-img.
    let data: Vec<u8> = (0..4 * MIB as usize).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(scratch.dir.join("pattern"), &data).unwrap();
    sh(&format!(
        "dd if={} of={} bs=1M oflag=direct conv=notrunc status=none",
        scratch.dir.join("pattern").display(),
        d.file("FRED").display()
    ));
    let copy = scratch.dir.join("copy.raw");
    ok(
        "nbdcopy",
        &["--connections=4", &uri, copy.to_str().unwrap()],
    );
    let copied = std::fs::read(&copy).unwrap();
    assert_eq!(copied.len() as u64, provider_size);
    assert_eq!(sha256(&copied[..data.len()]), sha256(&data));
    let converted = scratch.dir.join("converted.raw");
    ok(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "raw",
            &uri,
            converted.to_str().unwrap(),
        ],
    );
    assert_eq!(sha256(&std::fs::read(&converted).unwrap()), sha256(&copied));

    // fio's own NBD engine, with verification.
    let out = run(
        Path::new("fio"),
        &[
            "--name=nbd",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            "--rw=randwrite",
            "--bs=64k",
            "--size=16M",
            "--iodepth=8",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_state_save=0",
        ],
        &[],
    );
    if out.stderr.contains("engine nbd not loadable") {
        println!("SKIPPED (part): this fio has no nbd engine");
    } else {
        fio::assert_clean(out);
    }
}

/// A geom over the two links of a remote disk.
struct NetPaths {
    daemon: Daemon,
    disk: NetDisk,
    _scratch: Scratch,
}

impl NetPaths {
    fn new(tag: &str) -> Option<NetPaths> {
        if !root_or_skip(tag) || !NetDisk::available() || !fio::available() {
            return None;
        }
        let scratch = Scratch::new(tag);
        let img = scratch.image("remote.img", 96 * MIB);
        let disk = NetDisk::serve(&img);
        let daemon = Daemon::start(&scratch);
        daemon
            .gmultipath(&["label", "FRED", &disk.uri(0), &disk.uri(1)])
            .ok();
        daemon.wait_status("FRED", "OPTIMAL");
        Some(NetPaths {
            daemon,
            disk,
            _scratch: scratch,
        })
    }

    /// The link (0 or 1) whose path is active now.
    fn active(&self) -> usize {
        usize::from(self.daemon.active_path("FRED") == self.disk.uri(1))
    }

    /// Waits until both paths are members again and the geom is OPTIMAL.
    fn wait_whole(&self) {
        wait_until("both NBD paths back in FRED", || {
            let s = self.daemon.gmultipath(&["status", "FRED"]).stdout;
            s.contains("OPTIMAL") && s.contains(&self.disk.uri(0)) && s.contains(&self.disk.uri(1))
        });
    }
}

/// Cuts the active link while fio verifies, expects no error and the path failed, then
/// heals the link and expects the path back.
fn survive(tag: &str, how: Cut) {
    let Some(t) = NetPaths::new(tag) else {
        return;
    };
    t.daemon
        .mpsysctl(&["kern.geom.multipath.io_timeout=2"])
        .ok();
    let fio = fio::verify(&t.daemon.file("FRED"), "16M", Some(6));
    let fio = fio::wait_open(&t.daemon, fio);
    let victim = t.active();
    t.disk.cut(victim, how);
    fio::assert_clean(fio.join().unwrap());
    let failed = format!("{} in FRED marked FAIL", t.disk.uri(victim));
    assert!(
        t.daemon.messages().iter().any(|m| m.ends_with(&failed)),
        "{:?}",
        t.daemon.messages()
    );
    t.disk.heal(victim, how);
    t.wait_whole();
    println!("{how:?}:\n{}", t.daemon.messages().join("\n"));
}

#[test]
fn an_nbd_path_survives_its_link_going_down() {
    survive("net-down", Cut::LinkDown);
}

#[test]
fn an_nbd_path_survives_every_packet_dropped() {
    survive("net-pfifo", Cut::DropAll);
}

#[test]
fn an_nbd_path_survives_a_silent_firewall() {
    survive("net-drop", Cut::Silence);
}

#[test]
fn an_nbd_path_survives_connection_resets() {
    survive("net-reject", Cut::Reset);
}

#[test]
fn an_nbd_path_survives_its_server_dying_and_rejoins_when_it_restarts() {
    let Some(mut t) = NetPaths::new("net-kill") else {
        return;
    };
    let fio = fio::verify(&t.daemon.file("FRED"), "16M", Some(5));
    let fio = fio::wait_open(&t.daemon, fio);
    let victim = t.active();
    t.disk.kill_server(victim);
    fio::assert_clean(fio.join().unwrap());
    t.disk.start_server(victim);
    t.wait_whole();
}

#[test]
fn with_every_link_cut_a_write_fails_in_bounded_time() {
    let Some(t) = NetPaths::new("net-all") else {
        return;
    };
    let timeout = 2u64;
    t.daemon
        .mpsysctl(&[&format!("kern.geom.multipath.io_timeout={timeout}")])
        .ok();
    t.disk.cut(0, Cut::Silence);
    t.disk.cut(1, Cut::Silence);
    let started = Instant::now();
    let out = run(
        Path::new("dd"),
        &[
            "if=/dev/zero",
            &format!("of={}", t.daemon.file("FRED").display()),
            "bs=4k",
            "count=1",
            "oflag=direct",
            "conv=notrunc",
        ],
        &[],
    );
    let took = started.elapsed();
    assert_ne!(out.code, 0, "no path can take the write");
    println!("every link cut (io_timeout={timeout} s, 2 paths): the write failed after {took:?}");
    // Each path gets its own deadline: two paths, two deadlines, plus slack for the tools.
    assert!(took.as_secs() < 2 * timeout + 5, "took {took:?}");
    t.disk.heal(0, Cut::Silence);
    t.disk.heal(1, Cut::Silence);
    t.wait_whole();
}

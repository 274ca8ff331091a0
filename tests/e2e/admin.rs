//! The daemon as kldload/kldunload and sysctl(8) present it: load and unload, autoload by
//! `label`, refusing to unload while open, re-assembly after a restart, tunables, and a
//! control socket that survives garbage.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use geom_multipath_proto::{Answer, Call};
use gmultipath_e2e::{bin, is_mounted, root_or_skip, run, wait_until, Daemon, Loop, Scratch};

const MIB: u64 = 1 << 20;

/// The environment a person's shell would have for a daemon that is not running yet.
fn env_for(scratch: &Scratch) -> Vec<(&'static str, String)> {
    vec![
        (
            "GMULTIPATH_SOCKET",
            scratch.dir.join("run/geom.ctl").display().to_string(),
        ),
        (
            "GMULTIPATH_MOUNT",
            scratch.dir.join("multipath").display().to_string(),
        ),
        ("GMULTIPATH_DEVICES", scratch.dir.display().to_string()),
        ("GMULTIPATH_CONF", "/nonexistent".into()),
        ("GMULTIPATHD", bin("gmultipathd").display().to_string()),
    ]
}

/// Stops a daemon that a tool started, whatever state the test left it in.
struct Autoloaded(Vec<(&'static str, String)>);

impl Drop for Autoloaded {
    fn drop(&mut self) {
        let socket = &self.0[0].1;
        if let Ok(mut s) = UnixStream::connect(socket) {
            if let Ok(Answer::Pong { pid }) = geom_multipath_proto::roundtrip(&mut s, &Call::Ping) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
                let _ = (0..500).find(|_| {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    UnixStream::connect(socket).is_err()
                });
            }
        }
        let _ = nix::mount::umount2(self.0[1].1.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn label_loads_the_daemon_and_unload_stops_it() {
    if !root_or_skip("label_loads") {
        return;
    }
    let scratch = Scratch::new("autoload");
    let img = scratch.image("disk.img", 32 * MIB);
    let (a, b) = (Loop::attach(&img), Loop::attach(&img));
    let env = env_for(&scratch);
    let guard = Autoloaded(env.clone());
    let gm = |args: &[&str]| run(&bin("gmultipath"), args, &env);
    let out = gm(&["list"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "gmultipath: Command 'list' not available; try 'load' first.\n"
    );
    assert_eq!(gm(&["label", "FRED", &a.name, &b.name]).ok(), "");
    let status = gm(&["status"]);
    assert!(status.ok().contains("OPTIMAL"), "{status:?}");
    assert_eq!(
        gm(&["load", "-v"]).ok(),
        "Module available.\nDone.\n",
        "already loaded is fine"
    );
    let mount = scratch.dir.join("multipath");
    assert!(is_mounted(&mount));
    // Refused while the provider is open.
    let held = std::fs::File::open(mount.join("FRED")).unwrap();
    let out = gm(&["unload"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "gmultipath: Could not unload module: Device or resource busy.\n\
         multipath/FRED is open (r1w0e0).\n",
        "FreeBSD's line, then which provider is held (issue 11 item 10)"
    );
    drop(held);
    assert_eq!(gm(&["unload", "-v"]).ok(), "Done.\n");
    wait_until("the mount to go", || !is_mounted(&mount));
    assert!(
        !scratch.dir.join("run/geom.ctl").exists(),
        "no stale socket"
    );
    let out = gm(&["unload"]);
    assert_eq!(
        out.stderr,
        "gmultipath: Command 'unload' not available; try 'load' first.\n"
    );
    drop(guard);
}

#[test]
fn a_restarted_daemon_reassembles_labelled_geoms() {
    if !root_or_skip("restart_reassembles") {
        return;
    }
    let scratch = Scratch::new("restart");
    let img = scratch.image("disk.img", 32 * MIB);
    let (a, b) = (Loop::attach(&img), Loop::attach(&img));
    let mut d = Daemon::start(&scratch);
    d.gmultipath(&["label", "-A", "FRED", &a.name, &b.name])
        .ok();
    let uuid_line = |d: &Daemon| {
        d.gmultipath(&["list", "FRED"])
            .ok()
            .lines()
            .find(|l| l.starts_with("UUID: "))
            .unwrap()
            .to_string()
    };
    let before = uuid_line(&d);
    assert_eq!(d.stop(), Some(0));
    assert!(!is_mounted(&d.mount), "no stale mount after a stop");
    let d = Daemon::start(&scratch);
    d.wait_status("FRED", "OPTIMAL");
    assert_eq!(uuid_line(&d), before);
    assert!(d
        .gmultipath(&["list", "FRED"])
        .ok()
        .contains("Mode: Active/Active\n"));
}

#[test]
fn a_crashed_daemon_is_cleaned_up_by_the_next_start() {
    if !root_or_skip("crash_cleanup") {
        return;
    }
    let scratch = Scratch::new("crash");
    let img = scratch.image("disk.img", 32 * MIB);
    let (a, b) = (Loop::attach(&img), Loop::attach(&img));
    let d = Daemon::start(&scratch);
    d.gmultipath(&["label", "FRED", &a.name, &b.name]).ok();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("the killed daemon's socket to stop answering", || {
        d.call(&Call::Ping).is_none()
    });
    let mount = d.mount.clone();
    std::mem::forget(d); // its Drop would unmount: leave the debris for the next start
    let d = Daemon::start(&scratch);
    d.wait_status("FRED", "OPTIMAL");
    assert!(is_mounted(&mount));
    assert!(d.file("FRED").exists());
}

#[test]
fn tunables_print_like_sysctl_and_exclusive_0_leaves_paths_closed() {
    if !root_or_skip("tunables") {
        return;
    }
    let scratch = Scratch::new("sysctl");
    let img = scratch.image("disk.img", 32 * MIB);
    let (a, b) = (Loop::attach(&img), Loop::attach(&img));
    let d = Daemon::start(&scratch);
    assert_eq!(
        d.mpsysctl(&["kern.geom.multipath"]).ok(),
        concat!(
            "kern.geom.multipath.debug: 0\nkern.geom.multipath.exclusive: 1\nkern.geom.multipath.io_timeout: 0\n",
            "kern.geom.multipath.check_interval: 0\nkern.geom.multipath.reinstate: 0\n",
            "kern.geom.multipath.flap_threshold: 0\nkern.geom.multipath.flap_window: 60\n",
            "kern.geom.multipath.flap_hold: 60\nkern.geom.multipath.queue_timeout: 0\n",
            "kern.geom.multipath.queue_max_requests: 1024\n",
            "kern.geom.multipath.queue_max_kbytes: 65536\n",
        )
    );
    assert_eq!(
        d.mpsysctl(&["kern.geom.multipath.exclusive=0"]).ok(),
        "kern.geom.multipath.exclusive: 1 -> 0\n"
    );
    d.gmultipath(&["create", "FRED", &a.name, &b.name]).ok();
    let list = d.gmultipath(&["list", "FRED"]).ok().to_string();
    assert_eq!(list.matches("   Mode: r0w0e0\n").count(), 3, "{list}");
    d.mpsysctl(&["kern.geom.multipath.debug=1"]).ok();
    let out = d.mpsysctl(&["kern.geom.multipath.nope"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "mpsysctl: unknown oid 'kern.geom.multipath.nope'\n")
    );
}

#[test]
fn garbage_on_the_control_socket_gets_an_error_and_the_daemon_lives_on() {
    if !root_or_skip("socket_garbage") {
        return;
    }
    let scratch = Scratch::new("garbage");
    let d = Daemon::start(&scratch);
    for junk in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        &[0xff; 64][..],
        &b"\x05\x00\x00\x00\x01GCTL"[..],
    ] {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        s.write_all(junk).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut reply = Vec::new();
        let _ = s.read_to_end(&mut reply);
    }
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(b"\x10\x00").unwrap(); // truncated, then the client vanishes
    drop(s);
    assert!(matches!(d.call(&Call::Ping), Some(Answer::Pong { .. })));
    assert_eq!(d.gmultipath(&["status"]).ok(), "");
}

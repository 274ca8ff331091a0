//! The fault campaign on FUSE-backed paths: while `fio --verify` (crc32c, mixed sizes,
//! queue depth 16) writes through /dev/multipath/FRED, one path fails every request with
//! EIO, hangs past its deadline, slows down, or loses its server. Pass: fio sees no error
//! and no verify mismatch while a path lives; with every path down a request ends in an
//! error, not a hang; churn (fail and restore, by verb and by real fault, every half
//! second) in each mode leaves the data intact.
//!
//! The churn runs a few seconds here; `GMP_CHURN_SECONDS=60` runs the full minute.

use std::path::Path;
use std::time::{Duration, Instant};

use gmultipath_e2e::faultfs::{Fault, FaultFs};
use gmultipath_e2e::{fio, root_or_skip, run, wait_until, Daemon, Loop, Scratch};

const MIB: u64 = 1 << 20;

/// Two paths to one image, each through its own fault server and loop device.
struct FaultyPaths {
    daemon: Daemon,
    loops: [Loop; 2],
    servers: [FaultFs; 2],
    _scratch: Scratch,
}

impl FaultyPaths {
    fn new(tag: &str, mode_flag: Option<&str>) -> FaultyPaths {
        let scratch = Scratch::new(tag);
        let img = scratch.image("disk.img", 96 * MIB);
        let servers = [
            FaultFs::mount(&scratch.dir.join("srv0"), &img),
            FaultFs::mount(&scratch.dir.join("srv1"), &img),
        ];
        let loops = [
            Loop::attach(&servers[0].file()),
            Loop::attach(&servers[1].file()),
        ];
        let daemon = Daemon::start(&scratch);
        let mut args = vec!["label"];
        args.extend(mode_flag);
        args.extend(["FRED", loops[0].name.as_str(), loops[1].name.as_str()]);
        daemon.gmultipath(&args).ok();
        daemon.wait_status("FRED", "OPTIMAL");
        FaultyPaths {
            daemon,
            loops,
            servers,
            _scratch: scratch,
        }
    }

    /// The path (0 or 1) that is active now.
    fn active(&self) -> usize {
        usize::from(self.daemon.active_path("FRED") == self.loops[1].name)
    }

    fn name(&self, i: usize) -> &str {
        &self.loops[i].name
    }
}

#[test]
fn eio_on_the_active_path_under_fio() {
    if !root_or_skip("eio_under_fio") || !fio::available() {
        return;
    }
    let t = FaultyPaths::new("f-eio", None);
    let fio = fio::verify(&t.daemon.file("FRED"), "24M", None);
    let fio = fio::wait_open(&t.daemon, fio);
    let victim = t.active();
    t.servers[victim].set(Fault::Errno(libc::EIO));
    fio::assert_clean(fio.join().unwrap());
    let msg = format!(
        "GEOM_MULTIPATH: Error 5, {} in FRED marked FAIL",
        t.name(victim)
    );
    assert!(
        t.daemon.messages().contains(&msg),
        "{:?}",
        t.daemon.messages()
    );
    assert!(t.daemon.gmultipath(&["status"]).ok().contains("DEGRADED"));
}

#[test]
fn a_hung_path_is_failed_over_within_its_deadline_under_fio() {
    if !root_or_skip("hang_under_fio") || !fio::available() {
        return;
    }
    let t = FaultyPaths::new("f-hang", None);
    t.daemon
        .mpsysctl(&["kern.geom.multipath.io_timeout=2"])
        .ok();
    let fio = fio::verify(&t.daemon.file("FRED"), "24M", None);
    let fio = fio::wait_open(&t.daemon, fio);
    let victim = t.active();
    t.servers[victim].set(Fault::Hang);
    // The hung path is failed at its deadline: reads go elsewhere at once, new requests
    // too, but a write out on it waits for its answer (its first copy could still land:
    // gmultipath(8), the write re-drive rule) — so the hang ends, as a target's would.
    let msg = format!(
        "GEOM_MULTIPATH: Error 6, {} in FRED marked FAIL",
        t.name(victim)
    );
    wait_until("the hung path to be failed", || {
        t.daemon.messages().contains(&msg)
    });
    t.servers[victim].set(Fault::None);
    fio::assert_clean(fio.join().unwrap());
}

#[test]
fn a_slow_path_is_waited_for_not_failed() {
    if !root_or_skip("delay_under_fio") || !fio::available() {
        return;
    }
    let t = FaultyPaths::new("f-delay", None);
    t.daemon
        .mpsysctl(&["kern.geom.multipath.io_timeout=5"])
        .ok();
    // Every request on the active path is slowed from the first one on.
    let victim = t.active();
    t.servers[victim].set(Fault::Delay(Duration::from_millis(20)));
    let fio = fio::verify(&t.daemon.file("FRED"), "8M", None);
    fio::assert_clean(fio.join().unwrap());
    assert!(
        t.servers[victim].hits() > 100,
        "fio's requests met the delay"
    );
    assert_eq!(
        t.daemon.probe("geom:multipath:config:fail"),
        0,
        "slow is not dead"
    );
    assert!(t.daemon.gmultipath(&["status"]).ok().contains("OPTIMAL"));
}

#[test]
fn a_killed_path_server_is_failed_over_under_fio() {
    if !root_or_skip("kill_under_fio") || !fio::available() {
        return;
    }
    let t = FaultyPaths::new("f-kill", None);
    let fio = fio::verify(&t.daemon.file("FRED"), "24M", None);
    let fio = fio::wait_open(&t.daemon, fio);
    let victim = t.active();
    t.servers[victim]
        .kill()
        .expect("aborting the FUSE connection");
    fio::assert_clean(fio.join().unwrap());
    let status = t.daemon.gmultipath(&["status"]).ok().to_string();
    assert!(
        status.contains(&format!("{} (FAIL)", t.name(victim))),
        "{status}"
    );
}

#[test]
fn with_every_path_down_a_request_ends_in_an_error_not_a_hang() {
    if !root_or_skip("all_down") {
        return;
    }
    let t = FaultyPaths::new("f-down", None);
    t.daemon
        .mpsysctl(&["kern.geom.multipath.io_timeout=1"])
        .ok();
    // A write may be re-driven only once its first copy can no longer land: the admin
    // says how long these targets may hold one after their path is failed.
    for i in 0..2 {
        let knob = format!("kern.geom.multipath.quiesce_time.{}=1", t.name(i));
        t.daemon.mpsysctl(&[&knob]).ok();
    }
    for s in &t.servers {
        s.set(Fault::Hang);
    }
    let fred = t.daemon.file("FRED").display().to_string();
    for (what, args) in [
        (
            "read",
            [
                format!("if={fred}"),
                "of=/dev/null".into(),
                "iflag=direct".into(),
            ],
        ),
        (
            "write",
            [
                "if=/dev/zero".into(),
                format!("of={fred}"),
                "oflag=direct".into(),
            ],
        ),
    ] {
        let started = Instant::now();
        let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
        all.extend(["bs=4k", "count=1"]);
        let out = run(Path::new("dd"), &all, &[]);
        let took = started.elapsed();
        assert_ne!(
            out.code, 0,
            "the {what} cannot succeed with every path hung"
        );
        assert!(
            out.stderr.contains("No such device or address")
                || out.stderr.contains("Input/output error"),
            "{}",
            out.stderr
        );
        println!("every path hung (io_timeout=1 s, 2 paths): the {what} failed after {took:?}");
    }
    for s in &t.servers {
        s.set(Fault::None);
    }
    assert!(t.daemon.probe("geom:multipath:config:restore") <= 4);
}

/// Fails and restores paths every half second, by verb and by real fault, always keeping
/// one path alive, while fio verifies; in the given mode.
fn churn(tag: &str, mode_flag: Option<&str>) {
    let seconds: u64 = std::env::var("GMP_CHURN_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let t = FaultyPaths::new(tag, mode_flag);
    t.daemon
        .mpsysctl(&["kern.geom.multipath.io_timeout=2"])
        .ok();
    let fio = fio::verify(&t.daemon.file("FRED"), "32M", Some(seconds + 5));
    let fio = fio::wait_open(&t.daemon, fio);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut round = 0u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    while Instant::now() < end && !fio.is_finished() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let victim = (rng % 2) as usize;
        let other = 1 - victim;
        // Bring the other path back first, so one path always lives.
        t.servers[other].set(Fault::None);
        t.daemon.gmultipath(&["restore", "FRED", t.name(other)]);
        if rng & 4 == 0 {
            t.daemon.gmultipath(&["fail", "FRED", t.name(victim)]);
        } else {
            t.servers[victim].set(Fault::Errno(libc::EIO));
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    for (i, s) in t.servers.iter().enumerate() {
        s.set(Fault::None);
        t.daemon.gmultipath(&["restore", "FRED", t.name(i)]);
    }
    fio::assert_clean(fio.join().unwrap());
    // Two rounds a second are planned; a loaded machine may manage fewer, but never
    // fewer than one a second while fio still ran.
    assert!(round >= seconds, "only {round} churn rounds in {seconds} s");
}

#[test]
fn churn_active_passive_under_fio() {
    if root_or_skip("churn_ap") && fio::available() {
        churn("f-churn-ap", None);
    }
}

#[test]
fn churn_active_active_under_fio() {
    if root_or_skip("churn_aa") && fio::available() {
        churn("f-churn-aa", Some("-A"));
    }
}

#[test]
fn churn_active_read_under_fio() {
    if root_or_skip("churn_ar") && fio::available() {
        churn("f-churn-ar", Some("-R"));
    }
}

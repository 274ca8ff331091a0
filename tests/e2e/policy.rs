//! The issue-12 extensions through the real daemon, on two gnop paths over one image: the
//! checker finds a dead PASSIVE path and reinstatement brings it back when it heals; with
//! `queue_timeout`, an outage of every path shorter than it costs fio nothing, a longer one
//! ends in errors after the timeout while the daemon keeps answering, and `destroy` answers
//! waiting requests at once.

use std::time::{Duration, Instant};

use gmultipath_e2e::{fio, root_or_skip, wait_until, Daemon};

use crate::data::{nop_paths, pattern, read_direct, write_direct, NopPaths};

/// Every read and write on `nop` fails (EIO), or none does.
fn fail_all(d: &Daemon, nop: &str, fail: bool) {
    let p = if fail { "100" } else { "0" };
    d.gnop(&["configure", "-r", p, "-w", p, nop]).ok();
}

fn status(d: &Daemon) -> String {
    d.gmultipath(&["status"]).ok().to_string()
}

/// The two paths, with `configure` options applied to FRED.
fn configured(tag: &str, options: &[&str]) -> NopPaths {
    let t = nop_paths(tag);
    let mut args = vec!["configure"];
    args.extend_from_slice(options);
    args.push("FRED");
    t.daemon.gmultipath(&args).ok();
    t
}

#[test]
fn the_checker_fails_a_dead_passive_path_and_reinstates_it_when_healed() {
    if !root_or_skip("checker") {
        return;
    }
    let t = configured("checker", &["-c", "1", "-r", "1"]);
    let d = &t.daemon;
    let passive = &t.nops[1];
    assert!(
        status(d).contains(&format!("{passive} (PASSIVE)")),
        "{}",
        status(d)
    );
    let listed = d.gmultipath(&["list", "FRED"]).ok().to_string();
    assert!(
        listed.contains("CheckInterval: 1\nReinstate: 1\n"),
        "{listed}"
    );
    // No I/O at all: only the checker can notice.
    fail_all(d, passive, true);
    wait_until("the checker to fail the passive path", || {
        status(d).contains(&format!("{passive} (FAIL)"))
    });
    assert!(status(d).contains(&format!("{} (ACTIVE)", t.nops[0])));
    assert!(d
        .messages()
        .iter()
        .any(|m| m == &format!("GEOM_MULTIPATH: Error 5, {passive} in FRED marked FAIL")));
    fail_all(d, passive, false);
    wait_until("reinstatement", || {
        status(d).contains(&format!("{passive} (PASSIVE)"))
    });
    assert!(d
        .messages()
        .iter()
        .any(|m| m == &format!("GEOM_MULTIPATH: {passive} in FRED is marked OK.")));
}

#[test]
fn an_admin_failed_path_is_not_reinstated() {
    if !root_or_skip("admin_failed") {
        return;
    }
    let t = configured("admin_failed", &["-c", "1", "-r", "1"]);
    let d = &t.daemon;
    d.gmultipath(&["fail", "FRED", &t.nops[1]]).ok();
    // Three check intervals: each probe of it succeeds, and it stays FAIL.
    let probes_before = d.probe("geom:multipath:config:restore");
    let until = Instant::now() + Duration::from_secs(3);
    wait_until("three check intervals", || Instant::now() >= until);
    assert!(status(d).contains(&format!("{} (FAIL)", t.nops[1])));
    assert_eq!(d.probe("geom:multipath:config:restore"), probes_before);
}

#[test]
fn an_outage_of_every_path_shorter_than_queue_timeout_costs_fio_nothing() {
    if !root_or_skip("short_outage") || !fio::available() {
        return;
    }
    let t = configured("short_outage", &["-c", "1", "-r", "1", "-q", "10"]);
    let d = &t.daemon;
    let job = fio::verify(&d.file("FRED"), "16M", Some(10));
    let job = fio::wait_open(d, job);
    for nop in &t.nops {
        fail_all(d, nop, true);
    }
    let outage = Instant::now() + Duration::from_secs(3);
    wait_until("requests to wait", || {
        d.messages()
            .iter()
            .any(|m| m.contains("queueing requests for up to 10 s"))
    });
    // The daemon answers while requests wait.
    assert!(status(d).contains("FRED"));
    wait_until("a 3 s outage", || Instant::now() >= outage);
    for nop in &t.nops {
        fail_all(d, nop, false);
    }
    fio::assert_clean(job.join().unwrap());
    assert!(d
        .messages()
        .iter()
        .any(|m| m.starts_with("GEOM_MULTIPATH: FRED stopped queueing: ")
            && m.ends_with(" 0 failed")));
}

#[test]
fn an_outage_longer_than_queue_timeout_fails_after_it_and_nothing_hangs() {
    if !root_or_skip("long_outage") {
        return;
    }
    let t = configured("long_outage", &["-c", "1", "-r", "1", "-q", "4"]);
    let d = &t.daemon;
    let data = pattern(64 * 1024, 5);
    write_direct(&d.file("FRED"), 0, &data).unwrap();
    for nop in &t.nops {
        fail_all(d, nop, true);
    }
    let file = d.file("FRED");
    let writer = std::thread::spawn(move || {
        let start = Instant::now();
        let result = write_direct(&file, 0, &pattern(64 * 1024, 6));
        (result.is_err(), start.elapsed())
    });
    wait_until("the write to wait", || {
        d.messages()
            .iter()
            .any(|m| m.contains("queueing requests for up to 4 s"))
    });
    assert!(
        status(d).contains("FRED"),
        "the daemon answers during the outage"
    );
    wait_until("the write to end", || writer.is_finished());
    let (failed, took) = writer.join().unwrap();
    assert!(failed, "no path came back: the write fails");
    assert!(
        took >= Duration::from_secs(3),
        "it waited for the timeout: {took:?}"
    );
    for nop in &t.nops {
        fail_all(d, nop, false);
    }
    wait_until("a path to be reinstated", || status(d).contains("OPTIMAL"));
    assert_eq!(read_direct(&d.file("FRED"), 0, data.len()).unwrap(), data);
}

#[test]
fn destroy_while_requests_wait_answers_them_at_once() {
    if !root_or_skip("destroy_waiting") {
        return;
    }
    let t = configured("destroy_waiting", &["-c", "1", "-r", "1", "-q", "60"]);
    let d = &t.daemon;
    for nop in &t.nops {
        fail_all(d, nop, true);
    }
    let file = d.file("FRED");
    let writer = std::thread::spawn(move || write_direct(&file, 0, &pattern(4096, 1)).is_err());
    wait_until("the write to wait", || {
        d.messages()
            .iter()
            .any(|m| m.contains("queueing requests for up to 60 s"))
    });
    assert!(!writer.is_finished(), "it waits for a path");
    d.gmultipath(&["destroy", "FRED"]).ok();
    let asked = Instant::now();
    wait_until("the waiting write to be answered", || writer.is_finished());
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "answered long before the 60 s"
    );
    assert!(writer.join().unwrap(), "the write fails");
    assert!(d
        .messages()
        .iter()
        .any(|m| m == "GEOM_MULTIPATH: FRED stopped queueing: 0 requests resumed, 1 failed"));
}

#[test]
fn per_geom_settings_from_the_tunables_file_apply_when_the_geom_appears() {
    if !root_or_skip("per_geom_conf") {
        return;
    }
    let scratch = gmultipath_e2e::Scratch::new("per_geom_conf");
    let img = scratch.image("disk.img", 16 << 20);
    let (a, b) = (
        gmultipath_e2e::Loop::attach(&img),
        gmultipath_e2e::Loop::attach(&img),
    );
    let conf = scratch.dir.join("gmultipathd.conf");
    std::fs::write(
        &conf,
        "kern.geom.multipath.geom.FRED.selector=round-robin:4\n\
         kern.geom.multipath.geom.FRED.queue_timeout=10\n",
    )
    .unwrap();
    let conf = conf.display().to_string();
    let d = Daemon::start_with(&scratch, &["--config", &conf]);
    d.gmultipath(&["create", "-A", "FRED", &a.name, &b.name])
        .ok();
    let listed = d.gmultipath(&["list", "FRED"]).ok().to_string();
    assert!(
        listed.contains("State: OPTIMAL\nQueueTimeout: 10\nSelector: round-robin:4\n"),
        "{listed}"
    );
}

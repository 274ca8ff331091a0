//! Every verb through the real daemon: label → taste → geom, list/status/getactive golden
//! text, each verb's success and its FreeBSD error text, gnop's verbs.

use gmultipath_e2e::{root_or_skip, wait_until, Daemon, Loop, Scratch};

const MIB: u64 = 1 << 20;

/// One 64 MiB image seen through two loop devices, and a daemon that may use them.
struct TwoPaths {
    daemon: Daemon,
    a: Loop,
    b: Loop,
    _scratch: Scratch,
}

fn two_paths(tag: &str) -> TwoPaths {
    let scratch = Scratch::new(tag);
    let img = scratch.image("disk.img", 64 * MIB);
    let a = Loop::attach(&img);
    let b = Loop::attach(&img);
    let daemon = Daemon::start(&scratch);
    TwoPaths {
        daemon,
        a,
        b,
        _scratch: scratch,
    }
}

fn status_text(a: &str, b: &str, state: &str, sa: &str, sb: &str) -> String {
    let name = "multipath/FRED";
    let w = name.len().max(4);
    let sw = state.len().max(6);
    format!(
        "{:>w$}  {:>sw$}  Components\n{name:>w$}  {state:>sw$}  {a} ({sa})\n{:>w$}  {:>sw$}  {b} ({sb})\n",
        "Name", "Status", "", ""
    )
}

#[test]
fn label_is_tasted_into_a_geom_with_freebsds_list_and_status() {
    if !root_or_skip("label_is_tasted") {
        return;
    }
    let t = two_paths("label");
    let d = &t.daemon;
    assert_eq!(
        d.gmultipath(&["label", "-v", "FRED", &t.a.name, &t.b.name])
            .ok(),
        "Done.\n"
    );
    assert_eq!(
        d.gmultipath(&["status"]).ok(),
        status_text(&t.a.name, &t.b.name, "OPTIMAL", "ACTIVE", "PASSIVE")
    );
    assert_eq!(
        d.gmultipath(&["getactive", "FRED"]).ok(),
        format!("{}\n", t.a.name)
    );
    let list = d.gmultipath(&["list", "FRED"]).ok().to_string();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines[0], "Geom name: FRED");
    assert_eq!(lines[1], "Type: AUTOMATIC");
    assert_eq!(lines[2], "Mode: Active/Passive");
    assert!(
        lines[3].starts_with("UUID: ") && lines[3].len() == 6 + 36,
        "{}",
        lines[3]
    );
    assert_eq!(lines[4], "State: OPTIMAL");
    assert_eq!(lines[5], "Providers:");
    assert_eq!(lines[6], "1. Name: multipath/FRED");
    assert_eq!(
        lines[7], "   Mediasize: 67108352 (64M)",
        "the label sector is not exported"
    );
    assert_eq!(lines[9], "   Mode: r0w0e0");
    assert_eq!(lines[12], format!("1. Name: {}", t.a.name));
    assert_eq!(lines[13], "   Mediasize: 67108864 (64M)");
    assert_eq!(
        lines[15], "   Mode: r1w1e1",
        "exclusive=1 holds paths r1w1e1"
    );
    assert_eq!(lines[16], "   State: ACTIVE");
    assert_eq!(lines[17], format!("2. Name: {}", t.b.name));
    assert_eq!(lines[lines.len() - 2], "   State: PASSIVE");
    assert!(list.ends_with("\n\n"), "a blank line ends each geom");
    let msgs = d.messages();
    for m in [
        "GEOM_MULTIPATH: FRED created".to_string(),
        format!("GEOM_MULTIPATH: {} added to FRED", t.a.name),
        format!("GEOM_MULTIPATH: {} is now active path in FRED", t.a.name),
        format!("GEOM_MULTIPATH: {} added to FRED", t.b.name),
    ] {
        assert!(msgs.contains(&m), "{m} missing from {msgs:?}");
    }
    assert!(d.file("FRED").exists(), "/dev/multipath/FRED");
}

#[test]
fn verbs_change_state_like_freebsd() {
    if !root_or_skip("verbs_change_state") {
        return;
    }
    let t = two_paths("verbs");
    let (d, a, b) = (&t.daemon, t.a.name.as_str(), t.b.name.as_str());
    d.gmultipath(&["create", "FRED", a, b]).ok();
    d.gmultipath(&["fail", "FRED", a]).ok();
    assert_eq!(
        d.gmultipath(&["status"]).ok(),
        status_text(a, b, "DEGRADED", "FAIL", "ACTIVE")
    );
    d.gmultipath(&["restore", "FRED", a]).ok();
    assert_eq!(
        d.gmultipath(&["getactive", "FRED"]).ok(),
        format!("{b}\n"),
        "restore never activates"
    );
    d.gmultipath(&["rotate", "FRED"]).ok();
    assert_eq!(d.gmultipath(&["getactive", "FRED"]).ok(), format!("{a}\n"));
    assert_eq!(d.gmultipath(&["prefer", "-v", "FRED", b]).ok(), "Done.\n");
    assert_eq!(d.gmultipath(&["getactive", "FRED"]).ok(), format!("{b}\n"));
    d.gmultipath(&["configure", "-A", "FRED"]).ok();
    assert_eq!(
        d.gmultipath(&["getactive", "FRED"]).ok(),
        format!("{b} {a}\n"),
        "A/A: newest first"
    );
    assert!(d
        .gmultipath(&["list", "FRED"])
        .ok()
        .contains("Mode: Active/Active\n"));
    d.gmultipath(&["remove", "FRED", a]).ok();
    wait_until("the removed path to detach", || {
        !d.gmultipath(&["status", "-s"]).stdout.contains(a)
    });
    d.gmultipath(&["add", "FRED", a]).ok();
    assert!(d
        .gmultipath(&["status", "-s"])
        .ok()
        .contains(&format!("{a} (ACTIVE)")));
    d.gmultipath(&["stop", "FRED"]).ok();
    assert_eq!(d.gmultipath(&["status"]).ok(), "");
    assert!(!d.file("FRED").exists());
}

#[test]
fn verb_errors_are_freebsds() {
    if !root_or_skip("verb_errors") {
        return;
    }
    let t = two_paths("errors");
    let (d, a, b) = (&t.daemon, t.a.name.as_str(), t.b.name.as_str());
    d.gmultipath(&["create", "FRED", a, b]).ok();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["create", "FRED", a], "gmultipath: Device FRED already exist\n".into()),
        (vec!["create", "BARNEY", "nosuchdev"], "gmultipath: Provider nosuchdev is invalid\n".into()),
        (vec!["add", "BARNEY", a], "gmultipath: Device BARNEY not found\n".into()),
        (vec!["add", "FRED", a], format!("gmultipath: provider {a} is already there\n")),
        (vec!["fail", "FRED", "nosuchdev"], "gmultipath: Provider nosuchdev not found\n".into()),
        (vec!["restore", "BARNEY", a], "gmultipath: Device BARNEY not found\n".into()),
        (vec!["remove", "FRED", "nosuchdev"], "gmultipath: Provider nosuchdev not found\n".into()),
        (vec!["rotate", "BARNEY"], "gmultipath: Device BARNEY is invalid\n".into()),
        (vec!["getactive", "BARNEY"], "gmultipath: Device BARNEY is invalid\n".into()),
        (vec!["configure", "-P", "BARNEY"], "gmultipath: Device BARNEY is invalid\n".into()),
        (vec!["destroy", "BARNEY"], "gmultipath: Device BARNEY is invalid\n".into()),
        (vec!["stop", "BARNEY"], "gmultipath: Device BARNEY is invalid\n".into()),
        (
            vec!["prefer", "FRED", "nosuchdev"],
            "Can't set FRED preferred provider to nosuchdev: Provider nosuchdev not found.\n\
             gmultipath: Provider nosuchdev not found\n"
                .into(),
        ),
        (vec!["clear", "nosuchdev"], "Can't clear metadata on nosuchdev: No such file or directory.\ngmultipath: Not fully done.\n".into()),
        (vec!["label", "BARNEY"], "gmultipath: wrong number of arguments.\n".into()),
        (
            vec!["label", "ABCDEFGHIJKLMNOPQ", "whatever"],
            "gmultipath: Device ABCDEFGHIJKLMNOPQ is invalid: name is longer than 15 bytes\n".into(),
        ),
        (vec!["list", "BARNEY"], "gmultipath: Class 'MULTIPATH' does not have an instance named 'BARNEY'.\n".into()),
        (vec!["status", "BARNEY"], "gmultipath: No such geom: BARNEY.\n".into()),
        (vec!["frobnicate"], "gmultipath: Unknown command: frobnicate.\n".into()),
    ];
    for (args, err) in cases {
        let out = d.gmultipath(&args);
        assert_eq!(out.code, 1, "{args:?}");
        assert!(
            out.stderr.starts_with(&err),
            "{args:?}:\n{}\nwanted:\n{err}",
            out.stderr
        );
    }
    // The label on a path another geom holds exclusively is refused.
    let out = d.gmultipath(&["label", "BARNEY", a]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!("gmultipath: cannot store metadata on {a}: Device or resource busy.\n")
    );
}

#[test]
fn label_warns_about_a_provider_that_is_not_a_path() {
    if !root_or_skip("label_warns") {
        return;
    }
    let scratch = Scratch::new("notpath");
    let one = Loop::attach(&scratch.image("one.img", 32 * MIB));
    let other = Loop::attach(&scratch.image("other.img", 32 * MIB));
    let d = Daemon::start(&scratch);
    let out = d.gmultipath(&["label", "FRED", &one.name, &other.name]);
    assert_eq!(out.code, 0);
    assert_eq!(
        out.stderr,
        format!(
            "No metadata found on {}. It is not a path of {}.\n",
            other.name, one.name
        )
    );
    let status = d.gmultipath(&["status", "-s"]).ok().to_string();
    assert_eq!(status.lines().count(), 1, "{status}");
    assert!(status.contains("DEGRADED"));
    // clear then removes the label; a second clear says there is none.
    d.gmultipath(&["stop", "FRED"]).ok();
    d.gmultipath(&["clear", "-v", &one.name]).ok();
    let out = d.gmultipath(&["clear", &one.name]);
    assert_eq!(
        out.stderr,
        format!(
            "Can't clear metadata on {}: Invalid argument.\ngmultipath: Not fully done.\n",
            one.name
        )
    );
}

#[test]
fn destroy_erases_the_label_and_stop_keeps_it() {
    if !root_or_skip("destroy_erases") {
        return;
    }
    let t = two_paths("destroy");
    let (d, a, b) = (&t.daemon, t.a.name.as_str(), t.b.name.as_str());
    d.gmultipath(&["label", "FRED", a, b]).ok();
    d.gmultipath(&["stop", "FRED"]).ok();
    // Stopped, not erased: touching a path brings the geom back by taste.
    d.gmultipath(&["label", "FRED", a, b]).ok();
    d.wait_status("FRED", "OPTIMAL");
    d.gmultipath(&["destroy", "FRED"]).ok();
    assert_eq!(d.gmultipath(&["status"]).ok(), "");
    let out = d.gmultipath(&["clear", a]);
    assert!(
        out.stderr.contains("Invalid argument"),
        "destroy erased the label: {}",
        out.stderr
    );
}

#[test]
fn gnop_verbs_and_texts() {
    if !root_or_skip("gnop_verbs") {
        return;
    }
    let scratch = Scratch::new("gnop");
    let l = Loop::attach(&scratch.image("disk.img", 16 * MIB));
    let d = Daemon::start(&scratch);
    let nop = format!("{}.nop", l.name);
    d.gnop(&["create", "-v", "-o", "4096", "-r", "10", &l.name])
        .ok();
    let list = d.gnop(&["list", &nop]).ok().to_string();
    assert!(
        list.starts_with(&format!("Geom name: {nop}\nWroteBytes: 0\n")),
        "{list}"
    );
    assert!(
        list.contains("ReadFailProb: 10\n") && list.contains("Offset: 4096\n"),
        "{list}"
    );
    assert!(
        list.contains(&format!("   Mediasize: {} (16M)\n", 16 * MIB - 4096)),
        "{list}"
    );
    let out = d.gnop(&["create", &l.name]);
    assert_eq!(
        out.stderr,
        format!("gnop: Provider {nop} already exists.\n")
    );
    let out = d.gnop(&["create", "-r", "101", &l.name]);
    assert_eq!(out.stderr, "gnop: Invalid 'rfailprob' argument\n");
    let out = d.gnop(&["create", "nosuchdev"]);
    assert_eq!(out.stderr, "gnop: Provider not found: \"nosuchdev\"\n");
    d.gnop(&["configure", "-w", "50", &nop]).ok();
    assert!(d.gnop(&["list", &nop]).ok().contains("WriteFailProb: 50\n"));
    d.gnop(&["reset", &nop]).ok();
    d.gnop(&["destroy", &nop]).ok();
    assert_eq!(d.gnop(&["status"]).ok(), "");
    let out = d.gnop(&["destroy", &nop]);
    assert_eq!(out.stderr, format!("gnop: Device {nop} is invalid.\n"));
}

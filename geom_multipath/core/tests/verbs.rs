//! Scenario tests for every verb, with FreeBSD's exact error texts and console messages,
//! driven through the public API over the in-memory topology.

use geom_multipath::testkit::{test_uuid, MemTopology};
use geom_multipath::{Class, GeomState, Mode, PathState, Probe};

const MIB: u64 = 1 << 20;

/// A class and a framework with one 1 MiB disk reachable through `n` providers md0…
fn fabric(n: usize) -> (Class, MemTopology, usize) {
    let mut topo = MemTopology::new();
    let disk = topo.disk_with_paths("md", n, MIB, 512);
    (Class::default(), topo, disk)
}

fn create(class: &mut Class, topo: &mut MemTopology, args: &[&str]) {
    let reply = topo.verb(
        class,
        "create",
        &[("active_active", false), ("active_read", false)],
        args,
    );
    assert_eq!(reply.error, "", "create {args:?}");
}

/// Path names of geom `name` with their states, in `list` order (attach order).
fn states(class: &Class, name: &str) -> Vec<(String, PathState)> {
    let g = class.geom(class.find_geom(name).expect("geom")).unwrap();
    let mut v: Vec<_> = g
        .paths()
        .map(|p| {
            (
                class.path(p).unwrap().name().to_string(),
                class.path_state(p).unwrap(),
            )
        })
        .collect();
    v.reverse();
    v
}

fn active(class: &Class, name: &str) -> String {
    let g = class.find_geom(name).unwrap();
    class.active_text(g)
}

#[test]
fn create_attaches_in_order_and_logs_like_freebsd() {
    let (mut class, mut topo, _) = fabric(2);
    create(&mut class, &mut topo, &["FRED", "md0", "md1"]);
    assert_eq!(
        topo.take_messages(),
        [
            "GEOM_MULTIPATH: FRED created",
            "GEOM_MULTIPATH: md0 added to FRED",
            "GEOM_MULTIPATH: md0 is now active path in FRED",
            "GEOM_MULTIPATH: md1 added to FRED",
        ]
    );
    assert_eq!(
        states(&class, "FRED"),
        [
            ("md0".into(), PathState::Active),
            ("md1".into(), PathState::Passive)
        ]
    );
    let g = class.geom(class.find_geom("FRED").unwrap()).unwrap();
    assert_eq!(g.state(), GeomState::Optimal);
    assert_eq!(g.mediasize(), MIB, "MANUAL: the whole path");
    assert_eq!(g.uuid(), "");
    assert_eq!(active(&class, "FRED"), "md0\n");
    for p in g.paths() {
        assert_eq!(
            class.path(p).unwrap().access_counts(),
            (1, 1, 1),
            "exclusive=1"
        );
    }
}

#[test]
fn create_with_exclusive_off_leaves_paths_closed() {
    let (mut class, mut topo, _) = fabric(2);
    class
        .tunables_mut()
        .set(geom_multipath::sysctl::Knob::Exclusive, 0)
        .unwrap();
    create(&mut class, &mut topo, &["FRED", "md0", "md1"]);
    let g = class.geom(class.find_geom("FRED").unwrap()).unwrap();
    for p in g.paths() {
        assert_eq!(class.path(p).unwrap().access_counts(), (0, 0, 0));
    }
}

#[test]
fn create_flags_pick_the_mode_r_over_a() {
    for (flags, mode) in [
        (
            [("active_active", true), ("active_read", false)],
            Mode::ActiveActive,
        ),
        (
            [("active_active", true), ("active_read", true)],
            Mode::ActiveRead,
        ),
        (
            [("active_active", false), ("active_read", true)],
            Mode::ActiveRead,
        ),
    ] {
        let (mut class, mut topo, _) = fabric(2);
        assert_eq!(
            topo.verb(&mut class, "create", &flags, &["FRED", "md0", "md1"])
                .error,
            ""
        );
        assert_eq!(
            class.geom(class.find_geom("FRED").unwrap()).unwrap().mode(),
            mode
        );
    }
}

#[test]
fn create_errors() {
    let (mut class, mut topo, _) = fabric(2);
    let flags = [("active_active", false), ("active_read", false)];
    assert_eq!(
        topo.verb(&mut class, "create", &flags, &["FRED"]).error,
        "wrong number of arguments."
    );
    create(&mut class, &mut topo, &["FRED", "md0"]);
    assert_eq!(
        topo.verb(&mut class, "create", &flags, &["FRED", "md1"])
            .error,
        "Device FRED already exist"
    );
    assert_eq!(
        topo.verb(&mut class, "create", &flags, &["ABCDEFGHIJKLMNOP", "md1"])
            .error,
        "Device ABCDEFGHIJKLMNOP is invalid: name is longer than 15 bytes"
    );
    assert!(
        class.find_geom("ABCDEFGHIJKLMNO").is_none(),
        "nothing created under a cut name"
    );
}

#[test]
fn create_is_all_or_nothing_and_reports_the_first_error() {
    let (mut class, mut topo, _) = fabric(2);
    topo.take_messages();
    let flags = [("active_active", false), ("active_read", false)];
    let reply = topo.verb(
        &mut class,
        "create",
        &flags,
        &["FRED", "md0", "nope", "md1"],
    );
    assert_eq!(reply.error, "Provider nope is invalid");
    assert!(class.find_geom("FRED").is_none());
    assert_eq!(class.geoms().count(), 0);
    assert!(topo.attached.is_empty(), "every path detached again");
    assert_eq!(
        topo.take_messages(),
        [
            "GEOM_MULTIPATH: FRED created",
            "GEOM_MULTIPATH: md0 added to FRED",
            "GEOM_MULTIPATH: md0 is now active path in FRED",
            "GEOM_MULTIPATH: md1 added to FRED",
            "GEOM_MULTIPATH: destroying FRED",
            "GEOM_MULTIPATH: md1 removed from FRED",
            "GEOM_MULTIPATH: md0 removed from FRED",
            "GEOM_MULTIPATH: FRED destroyed",
        ]
    );
}

#[test]
fn create_strips_dev_and_checks_sizes() {
    let (mut class, mut topo, _) = fabric(1);
    let big = topo.add_disk(2 * MIB, 512);
    topo.add_provider("big0", big);
    let k = topo.add_disk(MIB, 4096);
    topo.add_provider("k0", k);
    let flags = [("active_active", false), ("active_read", false)];
    assert_eq!(
        topo.verb(&mut class, "create", &flags, &["FRED", "/dev/md0", "big0"])
            .error,
        "Providers size mismatch 1048576 != 2097152"
    );
    assert_eq!(
        topo.verb(&mut class, "create", &flags, &["FRED", "md0", "k0"])
            .error,
        "Providers sectorsize mismatch 512 != 4096"
    );
    assert_eq!(
        topo.verb(&mut class, "create", &flags, &["FRED", "md0", "/dev/md0"])
            .error,
        "provider md0 is already there"
    );
}

#[test]
fn attach_and_access_failures_are_logged_and_reported() {
    let (mut class, mut topo, _) = fabric(3);
    topo.fail_access
        .insert("md1".into(), geom_multipath::Errno::EPERM);
    topo.fail_attach
        .insert("md2".into(), geom_multipath::Errno::ENXIO);
    let flags = [("active_active", false), ("active_read", false)];
    let reply = topo.verb(&mut class, "create", &flags, &["FRED", "md0", "md1", "md2"]);
    assert_eq!(reply.error, "Provider addition error: 1");
    let msgs = topo.take_messages();
    assert!(msgs.contains(&"GEOM_MULTIPATH: cannot set access in attaching md1 to FRED (1)".into()));
    assert!(msgs.contains(&"GEOM_MULTIPATH: cannot attach md2 to FRED".into()));
    assert!(class.find_geom("FRED").is_none());
}

#[test]
fn add_appends_a_newest_path() {
    let (mut class, mut topo, _) = fabric(3);
    create(&mut class, &mut topo, &["FRED", "md0", "md1"]);
    topo.take_messages();
    assert_eq!(
        topo.verb(&mut class, "add", &[], &["FRED", "/dev/md2"])
            .error,
        ""
    );
    assert_eq!(topo.take_messages(), ["GEOM_MULTIPATH: md2 added to FRED"]);
    assert_eq!(states(&class, "FRED").len(), 3);
    assert_eq!(
        topo.verb(&mut class, "add", &[], &["BARNEY", "md2"]).error,
        "Device BARNEY not found"
    );
    assert_eq!(
        topo.verb(&mut class, "add", &[], &["FRED"]).error,
        "No 'arg1' argument"
    );
    assert_eq!(
        topo.verb(&mut class, "add", &[], &["FRED", "md9"]).error,
        "Provider md9 is invalid"
    );
    assert_eq!(
        topo.verb(&mut class, "add", &[], &["FRED", "md2"]).error,
        "provider md2 is already there"
    );
}

#[test]
fn fail_moves_activity_to_the_newest_good_path() {
    let (mut class, mut topo, _) = fabric(3);
    create(&mut class, &mut topo, &["FRED", "md0", "md1", "md2"]);
    topo.take_messages();
    assert_eq!(
        topo.verb(&mut class, "fail", &[], &["FRED", "md0"]).error,
        ""
    );
    assert_eq!(
        topo.take_messages(),
        [
            "GEOM_MULTIPATH: md0 in FRED is marked FAIL.",
            "GEOM_MULTIPATH: md2 is now active path in FRED",
        ]
    );
    assert_eq!(active(&class, "FRED"), "md2\n");
    assert!(topo.probes().contains(&Probe::Fail {
        geom: "FRED".into(),
        path: "md0".into(),
        error: 0
    }));
    let g = class.find_geom("FRED").unwrap();
    assert_eq!(class.geom_state(g), Some(GeomState::Degraded));
    // Failing it again is silently skipped.
    assert_eq!(
        topo.verb(&mut class, "fail", &[], &["FRED", "md0"]).error,
        ""
    );
    assert!(topo.take_messages().is_empty());
}

#[test]
fn restore_clears_fail_but_never_activates() {
    let (mut class, mut topo, _) = fabric(2);
    create(&mut class, &mut topo, &["FRED", "md0", "md1"]);
    topo.verb(&mut class, "fail", &[], &["FRED", "md0"]);
    topo.take_messages();
    assert_eq!(
        topo.verb(&mut class, "restore", &[], &["FRED", "md0"])
            .error,
        ""
    );
    assert_eq!(
        topo.take_messages(),
        ["GEOM_MULTIPATH: md0 in FRED is marked OK."]
    );
    assert_eq!(active(&class, "FRED"), "md1\n");
    assert!(topo.probes().contains(&Probe::Restore {
        geom: "FRED".into(),
        path: "md0".into()
    }));
}

#[test]
fn fail_restore_errors_need_exact_names() {
    let (mut class, mut topo, _) = fabric(2);
    create(&mut class, &mut topo, &["FRED", "md0", "md1"]);
    for verb in ["fail", "restore"] {
        assert_eq!(
            topo.verb(&mut class, verb, &[], &["BARNEY", "md0"]).error,
            "Device BARNEY not found"
        );
        assert_eq!(
            topo.verb(&mut class, verb, &[], &["FRED"]).error,
            "No 'arg1' argument"
        );
        assert_eq!(
            topo.verb(&mut class, verb, &[], &["FRED", "/dev/md0"])
                .error,
            "Provider /dev/md0 not found",
            "no /dev/ stripping"
        );
    }
}

#[test]
fn failing_every_path_restores_the_others() {
    let (mut class, mut topo, _) = fabric(2);
    create(&mut class, &mut topo, &["FRED", "md0", "md1"]);
    topo.verb(&mut class, "fail", &[], &["FRED", "md0"]);
    topo.take_messages();
    topo.verb(&mut class, "fail", &[], &["FRED", "md1"]);
    assert_eq!(
        topo.take_messages(),
        [
            "GEOM_MULTIPATH: md1 in FRED is marked FAIL.",
            "GEOM_MULTIPATH: all paths in FRED were marked FAIL, restore md0",
            "GEOM_MULTIPATH: md0 is now active path in FRED",
        ]
    );
    assert_eq!(
        states(&class, "FRED"),
        [
            ("md0".into(), PathState::Active),
            ("md1".into(), PathState::Fail)
        ]
    );
}

#[test]
fn a_single_path_geom_restores_itself_and_is_degraded() {
    let (mut class, mut topo, _) = fabric(1);
    create(&mut class, &mut topo, &["FRED", "md0"]);
    let g = class.find_geom("FRED").unwrap();
    assert_eq!(class.geom_state(g), Some(GeomState::Degraded));
    topo.take_messages();
    topo.verb(&mut class, "fail", &[], &["FRED", "md0"]);
    assert_eq!(
        topo.take_messages(),
        [
            "GEOM_MULTIPATH: md0 in FRED is marked FAIL.",
            "GEOM_MULTIPATH: all paths in FRED were marked FAIL, restore md0",
            "GEOM_MULTIPATH: md0 is now active path in FRED",
        ]
    );
    assert_eq!(states(&class, "FRED"), [("md0".into(), PathState::Active)]);
}

#[test]
fn rotate_walks_backwards_through_attach_order() {
    let (mut class, mut topo, _) = fabric(3);
    create(&mut class, &mut topo, &["FRED", "md0", "md1", "md2"]);
    topo.take_messages();
    let mut seen = vec![];
    for _ in 0..3 {
        assert_eq!(topo.verb(&mut class, "rotate", &[], &["FRED"]).error, "");
        seen.push(active(&class, "FRED"));
    }
    assert_eq!(seen, ["md2\n", "md1\n", "md0\n"]);
    assert_eq!(
        topo.take_messages(),
        [
            "GEOM_MULTIPATH: md2 is now active path in FRED",
            "GEOM_MULTIPATH: md1 is now active path in FRED",
            "GEOM_MULTIPATH: md0 is now active path in FRED",
        ]
    );
    assert_eq!(
        topo.verb(&mut class, "rotate", &[], &["BARNEY"]).error,
        "Device BARNEY is invalid"
    );
}

#[test]
fn rotate_skips_bad_paths_and_stays_put_alone() {
    let (mut class, mut topo, _) = fabric(3);
    create(&mut class, &mut topo, &["FRED", "md0", "md1", "md2"]);
    topo.verb(&mut class, "fail", &[], &["FRED", "md2"]);
    topo.take_messages();
    topo.verb(&mut class, "rotate", &[], &["FRED"]);
    assert_eq!(active(&class, "FRED"), "md1\n");
    topo.verb(&mut class, "fail", &[], &["FRED", "md0"]);
    topo.take_messages();
    topo.verb(&mut class, "rotate", &[], &["FRED"]);
    assert_eq!(active(&class, "FRED"), "md1\n");
    assert!(
        topo.take_messages().is_empty(),
        "nothing changed, nothing logged"
    );
}

#[test]
fn rotate_is_silent_in_active_active() {
    let (mut class, mut topo, _) = fabric(2);
    let flags = [("active_active", true), ("active_read", false)];
    topo.verb(&mut class, "create", &flags, &["FRED", "md0", "md1"]);
    assert!(!topo
        .take_messages()
        .iter()
        .any(|m| m.contains("active path")));
    topo.verb(&mut class, "rotate", &[], &["FRED"]);
    assert!(topo.take_messages().is_empty());
}

#[test]
fn prefer_sets_the_active_path() {
    let (mut class, mut topo, _) = fabric(3);
    create(&mut class, &mut topo, &["FRED", "md0", "md1", "md2"]);
    topo.take_messages();
    assert_eq!(
        topo.verb(&mut class, "prefer", &[], &["FRED", "/dev/md1"])
            .error,
        ""
    );
    assert_eq!(
        topo.take_messages(),
        ["GEOM_MULTIPATH: md1 now active path in FRED"]
    );
    assert_eq!(active(&class, "FRED"), "md1\n");
    assert_eq!(
        topo.verb(&mut class, "prefer", &[], &["BARNEY", "md1"])
            .error,
        "Device BARNEY is invalid"
    );
    assert_eq!(
        topo.verb(&mut class, "prefer", &[], &["FRED"]).error,
        "missing device"
    );
    assert_eq!(
        topo.verb(&mut class, "prefer", &[], &["FRED", "md9"]).error,
        "Provider md9 not found"
    );
    topo.verb(&mut class, "fail", &[], &["FRED", "md2"]);
    assert_eq!(
        topo.verb(&mut class, "prefer", &[], &["FRED", "md2"]).error,
        "Consumer md2 is invalid"
    );
}

#[test]
fn prefer_logs_only_in_active_passive() {
    for (flags, logged) in [
        ([("active_active", false), ("active_read", true)], false),
        ([("active_active", true), ("active_read", false)], false),
    ] {
        let (mut class, mut topo, _) = fabric(2);
        topo.verb(&mut class, "create", &flags, &["FRED", "md0", "md1"]);
        topo.take_messages();
        topo.verb(&mut class, "prefer", &[], &["FRED", "md1"]);
        assert_eq!(!topo.take_messages().is_empty(), logged);
    }
}

#[test]
fn getactive_in_each_mode() {
    let (mut class, mut topo, _) = fabric(2);
    let aa = [("active_active", true), ("active_read", false)];
    topo.verb(&mut class, "create", &aa, &["FRED", "md0", "md1"]);
    let reply = topo.verb(&mut class, "getactive", &[], &["FRED"]);
    assert_eq!(reply.output, "md1 md0\n", "Active/Active: newest first");
    topo.verb(&mut class, "fail", &[], &["FRED", "md1"]);
    assert_eq!(
        topo.verb(&mut class, "getactive", &[], &["FRED"]).output,
        "md0\n"
    );
    assert_eq!(
        topo.verb(&mut class, "getactive", &[], &["BARNEY"]).error,
        "Device BARNEY is invalid"
    );
    let (mut class, mut topo, _) = fabric(1);
    create(&mut class, &mut topo, &["FRED", "md0"]);
    topo.verb(&mut class, "remove", &[], &["FRED", "md0"]);
    assert!(class.find_geom("FRED").is_none());
}

#[test]
fn remove_detaches_after_the_write_close_retaste_window() {
    let (mut class, mut topo, _) = fabric(2);
    create(&mut class, &mut topo, &["FRED", "md0", "md1"]);
    topo.take_messages();
    assert_eq!(
        topo.verb(&mut class, "remove", &[], &["FRED", "md0"]).error,
        ""
    );
    assert_eq!(
        topo.take_messages(),
        [
            "GEOM_MULTIPATH: removing md0 from FRED",
            "GEOM_MULTIPATH: md1 is now active path in FRED",
            "GEOM_MULTIPATH: md0 removed from FRED",
        ]
    );
    assert_eq!(states(&class, "FRED"), [("md1".into(), PathState::Active)]);
    let i = topo
        .calls
        .iter()
        .position(|c| c == "access md0 -1 -1 -1")
        .unwrap();
    let j = topo.calls.iter().position(|c| c == "detach md0").unwrap();
    assert!(i < j, "access dropped first, detach later");
    assert_eq!(
        topo.verb(&mut class, "remove", &[], &["FRED", "md0"]).error,
        "Provider md0 not found"
    );
    assert_eq!(
        topo.verb(&mut class, "remove", &[], &["BARNEY", "md0"])
            .error,
        "Device BARNEY not found"
    );
}

#[test]
fn removing_the_last_path_destroys_the_geom() {
    let (mut class, mut topo, _) = fabric(1);
    create(&mut class, &mut topo, &["FRED", "md0"]);
    topo.take_messages();
    topo.verb(&mut class, "remove", &[], &["FRED", "md0"]);
    assert_eq!(
        topo.take_messages(),
        [
            "GEOM_MULTIPATH: removing md0 from FRED",
            "GEOM_MULTIPATH: out of providers for FRED",
            "GEOM_MULTIPATH: md0 removed from FRED",
            "GEOM_MULTIPATH: destroying FRED",
            "GEOM_MULTIPATH: FRED destroyed",
        ]
    );
    assert!(topo.geoms.is_empty());
}

#[test]
fn destroy_erases_the_label_on_the_active_path_only() {
    let (mut class, mut topo, disk) = fabric(2);
    let other = topo.add_disk(MIB, 512);
    topo.add_provider("other", other);
    topo.write_label(disk, "FRED", &test_uuid(1), Mode::ActivePassive);
    topo.taste(&mut class, "md0");
    topo.taste(&mut class, "md1");
    topo.take_messages();
    assert_eq!(topo.verb(&mut class, "destroy", &[], &["FRED"]).error, "");
    assert!(topo.label_erased(disk));
    assert!(
        topo.calls.contains(&"write md0 1048064".into()),
        "{:?}",
        topo.calls
    );
    assert_eq!(
        topo.take_messages(),
        [
            "GEOM_MULTIPATH: destroying FRED",
            "GEOM_MULTIPATH: md1 removed from FRED",
            "GEOM_MULTIPATH: md0 removed from FRED",
            "GEOM_MULTIPATH: FRED destroyed",
        ]
    );
    assert_eq!(
        topo.verb(&mut class, "destroy", &[], &["FRED"]).error,
        "Device FRED is invalid"
    );
}

#[test]
fn destroy_reports_an_erase_failure_and_still_destroys() {
    let (mut class, mut topo, disk) = fabric(1);
    topo.write_label(disk, "FRED", &test_uuid(1), Mode::ActivePassive);
    topo.taste(&mut class, "md0");
    topo.fail_write
        .insert("md0".into(), geom_multipath::Errno::EIO);
    assert_eq!(
        topo.verb(&mut class, "destroy", &[], &["FRED"]).error,
        "Can't erase metadata on md0 (5)"
    );
    assert!(class.find_geom("FRED").is_none());
    assert!(topo.label(disk).is_some(), "label untouched");
}

#[test]
fn stop_keeps_the_label() {
    let (mut class, mut topo, disk) = fabric(1);
    topo.write_label(disk, "FRED", &test_uuid(1), Mode::ActivePassive);
    topo.taste(&mut class, "md0");
    assert_eq!(topo.verb(&mut class, "stop", &[], &["FRED"]).error, "");
    assert!(class.find_geom("FRED").is_none());
    assert!(topo.label(disk).is_some());
    assert_eq!(
        topo.verb(&mut class, "stop", &[], &["FRED"]).error,
        "Device FRED is invalid"
    );
    // The label brings it back.
    assert!(topo.taste(&mut class, "md0").is_some());
}

#[test]
fn destroy_of_an_open_geom_withers_and_finishes_on_last_close() {
    let (mut class, mut topo, _) = fabric(2);
    create(&mut class, &mut topo, &["FRED", "md0", "md1"]);
    let g = class.find_geom("FRED").unwrap();
    class.access(&mut topo, g, 1, 1, 0).unwrap();
    topo.drain(&mut class);
    topo.take_messages();
    assert_eq!(topo.verb(&mut class, "stop", &[], &["FRED"]).error, "");
    assert_eq!(topo.take_messages(), ["GEOM_MULTIPATH: destroying FRED"]);
    assert_eq!(topo.geoms[&g].withered, Some(geom_multipath::Errno::ENXIO));
    assert!(
        class.find_geom("FRED").is_none(),
        "invisible while stopping"
    );
    assert!(class.geom(g).is_some());
    class.access(&mut topo, g, -1, -1, 0).unwrap();
    topo.drain(&mut class);
    assert!(class.geom(g).is_none());
    assert_eq!(
        topo.take_messages(),
        [
            "GEOM_MULTIPATH: md1 removed from FRED",
            "GEOM_MULTIPATH: md0 removed from FRED",
            "GEOM_MULTIPATH: FRED destroyed",
        ]
    );
}

#[test]
fn configure_changes_mode_and_rewrites_the_label() {
    let (mut class, mut topo, disk) = fabric(2);
    topo.write_label(disk, "FRED", &test_uuid(1), Mode::ActivePassive);
    topo.taste(&mut class, "md0");
    topo.taste(&mut class, "md1");
    let flags = |a, p, r| {
        [
            ("active_active", a),
            ("active_passive", p),
            ("active_read", r),
        ]
    };
    assert_eq!(
        topo.verb(
            &mut class,
            "configure",
            &flags(true, false, false),
            &["FRED"]
        )
        .error,
        ""
    );
    assert_eq!(topo.label(disk).unwrap().mode, Mode::ActiveActive);
    // P wins over R, which wins over A.
    topo.verb(
        &mut class,
        "configure",
        &flags(true, false, true),
        &["FRED"],
    );
    assert_eq!(topo.label(disk).unwrap().mode, Mode::ActiveRead);
    topo.verb(&mut class, "configure", &flags(true, true, true), &["FRED"]);
    assert_eq!(topo.label(disk).unwrap().mode, Mode::ActivePassive);
    assert_eq!(
        topo.verb(
            &mut class,
            "configure",
            &flags(false, false, false),
            &["BARNEY"]
        )
        .error,
        "Device BARNEY is invalid"
    );
    topo.fail_write
        .insert("md0".into(), geom_multipath::Errno::EIO);
    assert_eq!(
        topo.verb(
            &mut class,
            "configure",
            &flags(true, false, false),
            &["FRED"]
        )
        .error,
        "Can't update metadata on md0 (5)"
    );
    assert_eq!(
        class.geom(class.find_geom("FRED").unwrap()).unwrap().mode(),
        Mode::ActiveActive
    );
}

#[test]
fn configure_of_a_manual_geom_writes_nothing() {
    let (mut class, mut topo, disk) = fabric(2);
    create(&mut class, &mut topo, &["FRED", "md0", "md1"]);
    let flags = [
        ("active_active", true),
        ("active_passive", false),
        ("active_read", false),
    ];
    assert_eq!(
        topo.verb(&mut class, "configure", &flags, &["FRED"]).error,
        ""
    );
    assert!(topo.label(disk).is_none());
    assert!(!topo.calls.iter().any(|c| c.starts_with("write")));
    assert_eq!(
        class.geom(class.find_geom("FRED").unwrap()).unwrap().mode(),
        Mode::ActiveActive
    );
}

#[test]
fn dispatcher_checks_version_then_verb() {
    let (mut class, mut topo, _) = fabric(1);
    let mut req = geom_multipath::Request::for_verb("MULTIPATH", "rotate", 2);
    class.ctl(&mut topo, &mut req);
    assert_eq!(
        req.first_error().unwrap().to_string(),
        "Userland and kernel parts are out of sync"
    );
    let mut req = geom_multipath::Request::new();
    req.add_ascii("verb", "rotate");
    class.ctl(&mut topo, &mut req);
    assert_eq!(
        req.first_error().unwrap().to_string(),
        "Missing version argument"
    );
    assert_eq!(
        topo.verb(&mut class, "frobnicate", &[], &["FRED"]).error,
        "Unknown verb frobnicate"
    );
    assert_eq!(
        topo.verb(&mut class, "rotate", &[], &[]).error,
        "No 'arg0' argument"
    );
}

#[test]
fn tunables_debug_gates_taste_chatter() {
    let (mut class, mut topo, _) = fabric(1);
    topo.taste(&mut class, "md0");
    assert!(topo.take_messages().is_empty(), "debug=0: silent");
    class
        .tunables_mut()
        .set(geom_multipath::sysctl::Knob::Debug, 1)
        .unwrap();
    topo.taste(&mut class, "md0");
    assert_eq!(topo.take_messages(), ["md0 is not MULTIPATH"]);
}

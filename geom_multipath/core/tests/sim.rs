//! Scenarios on the simulated fabric (COMPAT.md §4.1–4.4): failover, the failloop bound,
//! spreading in Active/Active and Active/Read, orphan and remove under load, pass-through
//! errors, FreeBSD's newest-first orderings, and each mode under a mix of faults. The
//! fabric checks its invariants after every step; each test also asserts the behaviour
//! its name promises.

mod fabric;

use fabric::{set_outcome, Action, Assembly, Fabric, Outcome, GEOM, MODES, MS, US};
use geom_multipath::{Errno, GeomState, Mode, Op, PathState, Probe};

const WRITE: Op = Op::Write;
const READ: Op = Op::Read;

fn restarts(f: &Fabric) -> usize {
    f.probes()
        .iter()
        .filter(|p| matches!(p, Probe::Restart { .. }))
        .count()
}

// ----- failover in Active/Passive ------------------------------------------------------

#[test]
fn ap_failover_on_eio_picks_newest_good_path() {
    let mut f = Fabric::create(3, Mode::ActivePassive);
    f.fail_from("md0", 0, Errno::EIO);
    let t = f.submit(WRITE, 0, 4096);
    f.drive_bounded(100);
    let d = f.delivery(t).expect("delivered");
    assert_eq!(d.result, Ok(()));
    assert_eq!(d.route, ["md0", "md2"], "kernel order is newest first");
    assert_eq!(f.active().as_deref(), Some("md2"));
    assert_eq!(
        f.take_messages(),
        [
            "GEOM_MULTIPATH: Error 5, md0 in FRED marked FAIL",
            "GEOM_MULTIPATH: md2 is now active path in FRED",
        ]
    );
    let md0 = f.path("md0").unwrap();
    assert_eq!(f.class.path_state(md0), Some(PathState::Fail));
    assert_eq!(f.class.geom_state(f.geom()), Some(GeomState::Degraded));
}

#[test]
fn ap_failover_on_enxio_behaves_like_eio() {
    let mut f = Fabric::labeled(2, Mode::ActivePassive);
    f.fail_from("md0", 0, Errno::ENXIO);
    let t = f.submit(READ, 0, 512);
    f.drive_bounded(100);
    assert_eq!(f.delivery(t).unwrap().result, Ok(()));
    assert_eq!(f.route(t), ["md0", "md1"]);
    assert!(f
        .take_messages()
        .contains(&"GEOM_MULTIPATH: Error 6, md0 in FRED marked FAIL".to_string()));
}

#[test]
fn ap_all_paths_failing_ends_in_error_with_at_most_two_restores() {
    // n paths, all failing: the request tries each path once, newest first after the first,
    // and the last failure restores the others exactly once (n - 1 events; 1 for n = 1).
    for (n, order) in [
        (1, &["md0"][..]),
        (2, &["md0", "md1"][..]),
        (3, &["md0", "md2", "md1"][..]),
    ] {
        for errno in [Errno::EIO, Errno::ENXIO] {
            let mut f = Fabric::create(n, Mode::ActivePassive);
            for i in 0..n {
                f.fail_from(&format!("md{i}"), 0, errno);
            }
            let t = f.submit(WRITE, 0, 4096);
            f.drive_bounded(100);
            let d = f.delivery(t).unwrap();
            assert_eq!(d.result, Err(errno), "{n} paths, {errno:?}");
            assert_eq!(d.route, order, "{n} paths: one attempt per path");
            assert!(f.restores() <= 2, "{n} paths: {} restores", f.restores());
            assert_eq!(f.restores(), (n - 1).max(1), "{n} paths: one round");
            assert_ne!(
                f.class.geom_state(f.geom()),
                Some(GeomState::Broken),
                "the auto-restore leaves usable paths"
            );
        }
    }
}

#[test]
fn pr178473_failloop_two_failing_paths_end_the_request_in_every_mode() {
    for mode in MODES {
        let mut f = Fabric::create(2, mode);
        f.fail_from("md0", 0, Errno::EIO);
        f.fail_from("md1", 0, Errno::EIO);
        let t = f.submit(WRITE, 0, 4096);
        f.drive_bounded(20);
        let d = f.delivery(t).unwrap();
        assert_eq!(d.result, Err(Errno::EIO), "{mode:?}");
        assert_eq!(d.route.len(), 2, "{mode:?}: {:?}", d.route);
        assert!(f.restores() <= 2, "{mode:?}: {} restores", f.restores());
    }
}

#[test]
fn failing_paths_under_concurrent_load_never_loop() {
    // Many requests at once on failing paths: each is bounded by ndisks attempts even
    // though the paths are restored again and again by the others' failures.
    for mode in MODES {
        let mut f = Fabric::create(3, mode);
        for i in 0..3 {
            f.fail_from(&format!("md{i}"), 0, Errno::EIO);
        }
        for k in 0..30 {
            f.submit(if k % 2 == 0 { READ } else { WRITE }, k * 4096, 4096);
        }
        f.drive_bounded(500);
        assert_eq!(f.deliveries().len(), 30);
        for d in f.deliveries().values() {
            assert_eq!(d.result, Err(Errno::EIO), "{mode:?}");
            assert!(d.route.len() <= 3, "{mode:?}: {:?}", d.route);
        }
    }
}

#[test]
fn a_single_path_geom_restores_itself_and_fails_the_request_once() {
    let mut f = Fabric::create(1, Mode::ActivePassive);
    f.fail_from("md0", 0, Errno::EIO);
    let t = f.submit(WRITE, 0, 512);
    f.drive_bounded(10);
    assert_eq!(f.delivery(t).unwrap().result, Err(Errno::EIO));
    assert_eq!(f.good_paths(), ["md0"], "a single path never stays FAIL");
    assert_eq!(f.active().as_deref(), Some("md0"));
}

#[test]
fn a_failed_path_stays_failed_until_restored() {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    f.fail_from("md0", 0, Errno::EIO);
    f.at(MS, set_outcome("md0", Outcome::Answer));
    f.submit(WRITE, 0, 512);
    f.drive();
    for k in 0..5 {
        f.submit_at(2 * MS + k * MS, WRITE, 0, 512);
    }
    f.drive();
    assert!(
        f.deliveries().values().skip(1).all(|d| d.route == ["md1"]),
        "md0 answers again but stays FAIL: {:?}",
        f.deliveries()
    );
    assert_eq!(f.verb("restore", &["md0"]).error, "");
    assert_eq!(
        f.active().as_deref(),
        Some("md1"),
        "restore does not activate"
    );
    let t = f.submit(WRITE, 0, 512);
    f.drive();
    assert_eq!(f.route(t), ["md1"]);
    assert_eq!(f.good_paths(), ["md1", "md0"]);
}

// ----- spreading -----------------------------------------------------------------------

#[test]
fn aa_spreads_load_fewest_inflight_then_longest_idle() {
    let mut f = Fabric::create(3, Mode::ActiveActive);
    f.set_latency("md2", 10 * MS);
    for name in ["md1", "md0"] {
        f.set_latency(name, MS);
    }
    let first = f.submit(READ, 0, 512);
    assert_eq!(
        f.route(first),
        ["md2"],
        "all idle: the longest idle, newest first"
    );
    // md2 stays busy for 10 ms: although it has been idle the longest, every request sent
    // meanwhile goes to the path with fewer in flight, alternating between md1 and md0.
    let mut during = vec![];
    for k in 1..=4 {
        f.drive_until(2 * k * MS);
        during.push(f.submit(READ, 0, 512));
    }
    let routes: Vec<_> = during.iter().map(|&t| f.route(t)[0].clone()).collect();
    assert_eq!(routes, ["md1", "md0", "md1", "md0"]);
    // Once md2 is idle again its age wins the tie.
    f.drive_until(11 * MS);
    let after = f.submit(READ, 0, 512);
    assert_eq!(f.route(after), ["md2"]);
    f.finish(100);
}

#[test]
fn aa_round_robins_newest_first_under_light_load() {
    let mut f = Fabric::labeled(3, Mode::ActiveActive);
    let mut routes = vec![];
    for _ in 0..6 {
        let t = f.submit(WRITE, 0, 512);
        f.drive();
        routes.push(f.route(t)[0].clone());
    }
    assert_eq!(routes, ["md2", "md1", "md0", "md2", "md1", "md0"]);
}

#[test]
fn aa_slow_path_gets_fewer_requests_under_load() {
    let mut f = Fabric::create(3, Mode::ActiveActive);
    f.set_latency("md0", 2 * MS);
    f.set_latency("md1", 200 * US);
    f.set_latency("md2", 200 * US);
    for k in 0..300 {
        f.submit_at(k * 50 * US, READ, k * 512, 512);
    }
    f.drive_bounded(10_000);
    let mut count = std::collections::BTreeMap::<String, usize>::new();
    for d in f.deliveries().values() {
        assert_eq!(d.result, Ok(()));
        *count.entry(d.route[0].clone()).or_default() += 1;
    }
    assert!(
        count["md0"] * 3 < count["md1"] && count["md0"] * 3 < count["md2"],
        "the 10x slower path carries far less: {count:?}"
    );
}

#[test]
fn ar_reads_spread_writes_pinned_to_active() {
    let mut f = Fabric::create(3, Mode::ActiveRead);
    for name in ["md0", "md1", "md2"] {
        f.set_latency(name, MS);
    }
    let mut reads = vec![];
    let mut writes = vec![];
    for k in 0..6 {
        writes.push(f.submit(WRITE, k * 4096, 4096));
        reads.push(f.submit(READ, k * 4096, 4096));
        writes.push(f.submit(Op::Flush, 0, 0));
    }
    f.drive();
    for &t in &writes {
        assert_eq!(f.route(t), ["md0"], "non-reads go to the active path");
    }
    // Reads go to the least busy paths; the writes and flushes pinned to md0 count too.
    let spread: std::collections::BTreeSet<_> =
        reads.iter().map(|&t| f.route(t)[0].clone()).collect();
    assert_eq!(
        spread.into_iter().collect::<Vec<_>>(),
        ["md1", "md2"],
        "reads avoid the path busy with writes"
    );

    // After md0 is failed, writes follow the new active path (md2), and reads go to the
    // good path that is not busy with them.
    assert_eq!(f.verb("fail", &["md0"]).error, "");
    let (mut reads, mut writes) = (vec![], vec![]);
    for k in 0..6 {
        writes.push(f.submit(WRITE, k * 4096, 4096));
        reads.push(f.submit(READ, k * 4096, 4096));
    }
    f.drive();
    for &t in &writes {
        assert_eq!(f.route(t), ["md2"]);
    }
    for &t in &reads {
        assert_eq!(f.route(t), ["md1"]);
    }
    // Reads alone alternate over the two good paths and never touch md0.
    let reads: Vec<u64> = (0..4).map(|k| f.submit(READ, k * 4096, 4096)).collect();
    let routes: Vec<_> = reads.iter().map(|&t| f.route(t)[0].clone()).collect();
    assert_eq!(routes, ["md2", "md1", "md2", "md1"]);
    f.finish(100);
}

// ----- orphan, remove and verbs under load ---------------------------------------------

#[test]
fn orphan_under_load_drains_then_detaches() {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    f.set_latency("md0", MS);
    let md0 = f.path("md0").unwrap();
    let busy: Vec<u64> = (0..5).map(|k| f.submit(WRITE, k * 512, 512)).collect();
    f.at(500 * US, Action::Vanish("md0".into()));
    f.drive_until(600 * US);
    let view = f.class.path(md0).expect("still attached while busy");
    assert!(view.is_lost() && view.is_orphaned());
    assert_eq!(view.inflight(), 5);
    assert_eq!(f.active().as_deref(), Some("md1"));
    assert_eq!(f.class.geom(f.geom()).unwrap().ndisks(), 1);
    let late = f.submit(WRITE, 0, 512);
    assert_eq!(f.route(late), ["md1"]);
    let messages = f.take_messages();
    assert!(messages.contains(&"GEOM_MULTIPATH: md0 in FRED was disconnected".into()));
    assert!(!messages.iter().any(|m| m.contains("md0 removed from")));

    f.drive_bounded(100);
    assert!(f.class.path(md0).is_none(), "detached once drained");
    for &t in &busy {
        let d = f.delivery(t).unwrap();
        assert_eq!(d.result, Ok(()), "reissued after the provider went away");
        assert_eq!(d.route, ["md0", "md1"]);
    }
    let messages = f.take_messages();
    assert_eq!(
        messages.last().map(String::as_str),
        Some("GEOM_MULTIPATH: md0 removed from FRED"),
        "{messages:?}"
    );
    assert_eq!(
        messages
            .iter()
            .filter(|m| m.contains("md0 removed from"))
            .count(),
        1
    );
}

#[test]
fn orphan_of_every_path_fails_io_then_a_returning_label_reassembles() {
    let mut f = Fabric::labeled(2, Mode::ActivePassive);
    let old = f.geom();
    f.set_latency("md0", MS);
    let busy = f.submit(WRITE, 0, 512);
    f.at(100 * US, Action::Vanish("md0".into()));
    f.at(200 * US, Action::Vanish("md1".into()));
    f.drive_until(300 * US);
    let refused = f.submit(READ, 0, 512);
    assert_eq!(
        f.delivery(refused).unwrap().result,
        Err(Errno::ENXIO),
        "no path left: ENXIO at once"
    );
    f.drive();
    assert_eq!(
        f.delivery(busy).unwrap().result,
        Err(Errno::ENXIO),
        "the request in flight on a vanished path has nowhere to go"
    );
    assert!(f.class.geom(old).unwrap().withered());
    f.apply(Action::Return("md1".into()));
    assert_ne!(f.geom(), old, "a new geom from the label");
    assert!(
        f.class.geom(old).is_none(),
        "the old one went with its last close"
    );
    let t = f.submit(READ, 0, 512);
    f.drive();
    assert_eq!(f.delivery(t).unwrap().result, Ok(()));
    assert_eq!(f.route(t), ["md1"]);
}

#[test]
fn fail_verb_during_io_moves_new_requests() {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    f.set_latency("md0", MS);
    let before = f.submit(WRITE, 0, 512);
    f.verb_at(500 * US, "fail", &["md0"]);
    f.submit_at(600 * US, WRITE, 512, 512);
    f.drive();
    let after = before + 1;
    assert_eq!(
        f.delivery(before).unwrap().route,
        ["md0"],
        "the request already on md0 completes there"
    );
    assert_eq!(f.delivery(before).unwrap().result, Ok(()));
    assert_eq!(f.delivery(after).unwrap().route, ["md1"]);
    assert_eq!(
        f.take_messages(),
        [
            "GEOM_MULTIPATH: md0 in FRED is marked FAIL.",
            "GEOM_MULTIPATH: md1 is now active path in FRED",
        ]
    );
}

#[test]
fn remove_during_io_waits_for_inflight() {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    f.set_latency("md0", MS);
    let md0 = f.path("md0").unwrap();
    let busy: Vec<u64> = (0..3).map(|k| f.submit(WRITE, k * 512, 512)).collect();
    f.verb_at(500 * US, "remove", &["md0"]);
    f.drive_until(600 * US);
    let late = f.submit(WRITE, 0, 512);
    assert_eq!(f.route(late), ["md1"]);
    f.drive_until(900 * US);
    let view = f.class.path(md0).expect("held while requests are on it");
    assert!(view.is_lost() && !view.is_orphaned());
    assert_eq!(view.inflight(), 3);
    assert_eq!(
        f.take_messages(),
        [
            "GEOM_MULTIPATH: removing md0 from FRED",
            "GEOM_MULTIPATH: md1 is now active path in FRED",
        ]
    );
    f.drive();
    for &t in &busy {
        let d = f.delivery(t).unwrap();
        assert_eq!((d.result, d.route.clone()), (Ok(()), vec!["md0".into()]));
        assert!(d.at >= MS, "delivered when md0 answered, not at the remove");
    }
    assert!(f.class.path(md0).is_none());
    assert_eq!(
        f.take_messages(),
        ["GEOM_MULTIPATH: md0 removed from FRED"],
        "detached after its last request"
    );
}

#[test]
fn remove_last_path_during_io_is_out_of_providers_until_add() {
    let mut f = Fabric::create(1, Mode::ActivePassive);
    f.set_latency("md0", MS);
    let busy = f.submit(WRITE, 0, 512);
    assert_eq!(f.verb("remove", &["md0"]).error, "");
    let refused = f.submit(WRITE, 0, 512);
    assert_eq!(f.delivery(refused).unwrap().result, Err(Errno::ENXIO));
    assert!(f
        .take_messages()
        .contains(&"GEOM_MULTIPATH: out of providers for FRED".to_string()));
    f.drive();
    assert_eq!(f.delivery(busy).unwrap().result, Ok(()));
    assert!(
        f.class.geom(f.geom()).unwrap().withered(),
        "the open geom withers with its last path"
    );
}

#[test]
fn a_hung_path_holds_requests_without_failover() {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    f.hang("md0", 0, 5 * MS);
    let t = f.submit(WRITE, 0, 512);
    f.drive_until(4 * MS);
    assert!(f.delivery(t).is_none(), "no timeout in the class");
    assert_eq!(f.inflight_on("md0"), 1);
    f.drive();
    let d = f.delivery(t).unwrap();
    assert_eq!((d.result, d.at), (Ok(()), 5 * MS));
    assert_eq!(d.route, ["md0"]);
    assert_eq!(f.active().as_deref(), Some("md0"));
}

#[test]
fn enospc_passes_through_without_failover() {
    for mode in MODES {
        let mut f = Fabric::create(2, mode);
        for name in ["md0", "md1"] {
            f.fail_from(name, 0, Errno::ENOSPC);
        }
        let t = f.submit(WRITE, 0, 512);
        f.drive();
        let d = f.delivery(t).unwrap();
        assert_eq!(d.result, Err(Errno::ENOSPC), "{mode:?}");
        assert_eq!(d.route.len(), 1, "{mode:?}: not reissued");
        assert_eq!(f.good_paths().len(), 2, "{mode:?}: no path failed");
        assert_eq!(restarts(&f), 0);
        assert!(f.take_messages().is_empty(), "{mode:?}");
    }
}

#[test]
fn physpath_answers_get_the_suffix_even_after_failover() {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    f.fail_from("md0", 0, Errno::EIO);
    let t = f.submit(Op::GetAttr { physpath: true }, 0, 0);
    let other = f.submit(Op::GetAttr { physpath: false }, 0, 0);
    f.drive();
    assert_eq!(f.delivery(t).unwrap().append, Some("/mp"));
    assert_eq!(f.delivery(t).unwrap().route, ["md0", "md1"]);
    assert_eq!(f.delivery(other).unwrap().append, None);
}

// ----- FreeBSD's newest-first orderings (COMPAT.md §4.1) ----------------------------------

#[test]
fn fail_md0_of_three_makes_md2_active() {
    for assembly in [Assembly::Create, Assembly::Label] {
        let mut f = Fabric::build(3, Mode::ActivePassive, assembly);
        assert_eq!(f.active().as_deref(), Some("md0"));
        assert_eq!(f.verb("fail", &["md0"]).error, "");
        assert_eq!(f.active().as_deref(), Some("md2"), "{assembly:?}");
        let t = f.submit(WRITE, 0, 512);
        f.drive();
        assert_eq!(f.route(t), ["md2"]);
    }
}

#[test]
fn rotate_walks_md0_md2_md1_md0() {
    let mut f = Fabric::create(3, Mode::ActivePassive);
    let mut seen = vec![f.active().unwrap()];
    for _ in 0..3 {
        assert_eq!(f.verb("rotate", &[]).error, "");
        seen.push(f.active().unwrap());
        let t = f.submit(WRITE, 0, 512);
        f.drive();
        assert_eq!(f.route(t), [seen.last().unwrap().clone()], "I/O follows");
    }
    assert_eq!(seen, ["md0", "md2", "md1", "md0"]);
}

#[test]
fn rotate_skips_failed_paths() {
    let mut f = Fabric::create(3, Mode::ActivePassive);
    assert_eq!(f.verb("fail", &["md2"]).error, "");
    let mut seen = vec![];
    for _ in 0..3 {
        f.verb("rotate", &[]);
        seen.push(f.active().unwrap());
    }
    assert_eq!(seen, ["md1", "md0", "md1"]);
}

#[test]
fn prefer_moves_io_to_the_chosen_path() {
    let mut f = Fabric::create(3, Mode::ActivePassive);
    assert_eq!(f.verb("prefer", &["md1"]).error, "");
    let t = f.submit(WRITE, 0, 512);
    f.drive();
    assert_eq!(f.route(t), ["md1"]);
    assert_eq!(f.verb("fail", &["md1"]).error, "");
    assert_eq!(
        f.verb("prefer", &["md1"]).error,
        "Consumer md1 is invalid",
        "a failed path cannot be preferred"
    );
}

#[test]
fn a_new_path_added_during_io_raises_the_attempt_bound_of_later_requests_only() {
    let mut f = Fabric::create(1, Mode::ActivePassive);
    f.set_latency("md0", MS);
    f.fail_from("md0", 0, Errno::EIO);
    let early = f.submit(WRITE, 0, 512);
    f.at(100 * US, Action::NewProvider("md1".into()));
    f.submit_at(200 * US, WRITE, 0, 512);
    f.drive();
    // Started with one path: one attempt. Started with two: fails over to md1.
    assert_eq!(f.delivery(early).unwrap().route, ["md0"]);
    assert_eq!(f.delivery(early).unwrap().result, Err(Errno::EIO));
    let late = f.delivery(early + 1).unwrap();
    assert_eq!(late.result, Ok(()));
    assert_eq!(late.route, ["md0", "md1"]);
}

// ----- each mode under a mix of faults ---------------------------------------------------

/// A 20 ms script over four providers: an EIO window, a hang, a provider that vanishes and
/// comes back, rotate, fail and restore verbs, an ENXIO burst, an ENOSPC burst, a path
/// added and removed, and a final restore, with a request every 50 µs (a seeded mix of commands).
fn mixed_faults(mode: Mode, assembly: Assembly) -> Fabric {
    let mut f = Fabric::build(3, mode, assembly);
    f.set_latency("md0", 200 * US);
    f.set_latency("md1", 300 * US);
    f.set_latency("md2", 500 * US);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for k in 0..400u64 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let op = match (seed >> 33) % 6 {
            0 | 1 => READ,
            2 | 3 => WRITE,
            4 => Op::Flush,
            _ => Op::GetAttr { physpath: true },
        };
        f.submit_at(k * 50 * US, op, (seed >> 40) * 512, 4096);
    }
    f.fail_from("md0", 2 * MS, Errno::EIO);
    f.at(4 * MS, set_outcome("md0", Outcome::Answer));
    f.verb_at(5 * MS, "restore", &["md0"]);
    f.hang("md1", 6 * MS, 8 * MS);
    f.at(9 * MS, Action::Vanish("md2".into()));
    f.at(11 * MS, Action::Return("md2".into()));
    f.verb_at(12 * MS, "rotate", &[]);
    f.verb_at(13 * MS, "fail", &["md1"]);
    f.verb_at(14 * MS, "restore", &["md1"]);
    f.fail_from("md0", 15 * MS, Errno::ENXIO);
    f.at(15 * MS + 500 * US, set_outcome("md0", Outcome::Answer));
    f.fail_from("md2", 16 * MS, Errno::ENOSPC);
    f.at(16 * MS + 200 * US, set_outcome("md2", Outcome::Answer));
    f.at(17 * MS, Action::NewProvider("md3".into()));
    f.verb_at(18 * MS, "remove", &["md3"]);
    f.verb_at(19 * MS, "restore", &["md0"]);
    f.drive_bounded(20_000);
    f.finish(1_000);
    f
}

/// The first path of each request, in submission order, with repeats collapsed: in A/P
/// (and for non-reads in A/R) the history of the active path.
fn first_hops(f: &Fabric, keep: impl Fn(Op) -> bool) -> Vec<String> {
    let mut hops: Vec<String> = vec![];
    for d in f.deliveries().values().filter(|d| keep(d.op)) {
        if hops.last() != Some(&d.route[0]) {
            hops.push(d.route[0].clone());
        }
    }
    hops
}

/// What every mode must show after [`mixed_faults`]: everything delivered once (the fabric
/// checked it), failover exercised, and the only errors the ENOSPC burst on md2.
fn assert_survived(f: &Fabric, label: &str) {
    assert_eq!(f.deliveries().len(), 400, "{label}");
    assert!(restarts(f) > 0, "{label}: failover was exercised");
    assert!(
        f.deliveries().values().any(|d| d.route.len() == 2),
        "{label}: some requests were reissued"
    );
    for (token, d) in f.deliveries() {
        match d.result {
            Ok(()) => {}
            Err(e) if e == Errno::ENOSPC => {
                assert_eq!(d.route.last().map(String::as_str), Some("md2"), "{label}");
                assert!(
                    (16 * MS..=16 * MS + 200 * US).contains(&d.at),
                    "{label}: ENOSPC only during the burst, token {token} at {}",
                    d.at
                );
            }
            Err(e) => panic!("{label}: token {token} failed with {e:?}: {d:?}"),
        }
    }
    let g = f.class.geom(f.geom()).unwrap();
    assert_eq!(g.ndisks(), 3, "{label}: md3 came and went, md2 came back");
    assert_eq!(f.good_paths().len(), 3, "{label}: every path good again");
}

#[test]
fn ap_survives_mixed_faults() {
    for assembly in [Assembly::Create, Assembly::Label] {
        let f = mixed_faults(Mode::ActivePassive, assembly);
        assert_survived(&f, &format!("A/P {assembly:?}"));
        // One path carries every new request at a time; it changes only when the active
        // path fails or goes (EIO on md0 → md2; md2 vanishes → md1), on the rotate (md1 →
        // md0, newest-first order md2 md1 md0), and when ENXIO fails md0 (→ md2). The hang
        // of the passive md1 and the add and remove of md3 change nothing.
        let first_hops = first_hops(&f, |_| true);
        assert_eq!(
            first_hops,
            ["md0", "md2", "md1", "md0", "md2"],
            "{assembly:?}"
        );
    }
}

#[test]
fn aa_survives_mixed_faults() {
    for assembly in [Assembly::Create, Assembly::Label] {
        let f = mixed_faults(Mode::ActiveActive, assembly);
        assert_survived(&f, &format!("A/A {assembly:?}"));
        // Requests caught by md1's hang were answered when it ended, not failed over.
        let held = f
            .deliveries()
            .values()
            .filter(|d| d.at == 8 * MS && d.route == ["md1"])
            .count();
        assert!(
            held > 0,
            "A/A {assembly:?}: some requests waited out the hang"
        );
    }
}

#[test]
fn ar_survives_mixed_faults() {
    for assembly in [Assembly::Create, Assembly::Label] {
        let f = mixed_faults(Mode::ActiveRead, assembly);
        assert_survived(&f, &format!("A/R {assembly:?}"));
        // Everything but reads follows the active path exactly as in A/P.
        let pinned = first_hops(&f, |op| op != READ);
        assert_eq!(pinned, ["md0", "md2", "md1", "md0", "md2"], "{assembly:?}");
        let reads: std::collections::BTreeSet<_> = f
            .deliveries()
            .values()
            .filter(|d| d.op == READ)
            .map(|d| d.route[0].clone())
            .collect();
        assert_eq!(
            reads.len(),
            4,
            "{assembly:?}: reads used md0-md3: {reads:?}"
        );
    }
}

#[test]
fn a_vanished_provider_returns_to_its_geom_and_carries_io_again() {
    let mut f = Fabric::labeled(2, Mode::ActiveActive);
    let geom = f.geom();
    f.apply(Action::Vanish("md1".into()));
    assert_eq!(f.good_paths(), ["md0"]);
    f.apply(Action::Return("md1".into()));
    assert_eq!(f.geom(), geom, "rejoined by UUID");
    assert_eq!(f.good_paths(), ["md1", "md0"]);
    let mut routes = vec![];
    for _ in 0..2 {
        let t = f.submit(READ, 0, 512);
        f.drive();
        routes.push(f.route(t)[0].clone());
    }
    routes.sort();
    assert_eq!(routes, ["md0", "md1"]);
    assert!(f
        .take_messages()
        .contains(&format!("GEOM_MULTIPATH: md1 added to {GEOM}")));
}

// ----- deviations from FreeBSD found by the fabric -------------------------------------

/// FreeBSD's `g_multipath_done_error` reissues through `g_multipath_start`, which does not
/// look at the provider's error: a request already in flight when `stop` withers an open
/// geom still fails over to another path. The core's `start` refuses every request on a
/// withered provider, reissues included, so that request ends with ENXIO instead.
#[test]
fn stop_while_open_still_fails_over_requests_in_flight() {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    f.set_latency("md0", MS);
    f.fail_from("md0", 0, Errno::EIO);
    let busy = f.submit(WRITE, 0, 512);
    assert_eq!(f.verb("stop", &[]).error, "");
    assert!(f.class.geom(f.geom()).unwrap().withered());
    f.drive();
    let d = f.delivery(busy).unwrap();
    assert_eq!(d.route, ["md0", "md1"], "reissued like FreeBSD");
    assert_eq!(d.result, Ok(()));
}

// ----- the I/O deadline (extension: kern.geom.multipath.io_timeout) ----------------------

const SEC: u64 = 1_000_000_000;

fn with_io_timeout(f: &mut Fabric, secs: u32) {
    use geom_multipath::sysctl::Knob;
    f.class
        .tunables_mut()
        .set(Knob::IoTimeout, secs)
        .expect("in range");
}

#[test]
fn io_deadline_fails_a_hung_active_path_over_to_the_next() {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    with_io_timeout(&mut f, 2);
    f.hang("md0", 0, 3600 * SEC);
    let t = f.submit(READ, 0, 4096);
    f.drive_until(2 * SEC - 1);
    assert!(f.delivery(t).is_none(), "still waiting before the deadline");
    f.drive_until(2 * SEC + 10 * MS);
    let d = f.delivery(t).expect("delivered after the deadline");
    assert_eq!(d.result, Ok(()));
    assert_eq!(d.route, ["md0", "md1"]);
    assert!(d.at >= 2 * SEC, "not before the deadline: {}", d.at);
    assert_eq!(
        f.take_messages(),
        [
            "GEOM_MULTIPATH: Error 6, md0 in FRED marked FAIL",
            "GEOM_MULTIPATH: md1 is now active path in FRED",
        ]
    );
    assert_eq!(
        f.inflight_on("md0"),
        0,
        "the abandoned attempt is not counted"
    );
    f.finish(1000);
}

#[test]
fn io_deadline_zero_waits_for_ever_as_freebsd_does() {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    f.hang("md0", 0, 100 * SEC);
    let t = f.submit(WRITE, 0, 4096);
    f.drive_bounded(100);
    let d = f.delivery(t).expect("delivered once the path answers");
    assert_eq!(d.result, Ok(()));
    assert_eq!(d.route, ["md0"]);
    assert_eq!(d.at, 100 * SEC);
    assert!(f.take_messages().is_empty());
    assert_eq!(f.class.poll_timeout(), None, "no timer armed");
}

#[test]
fn io_deadline_per_provider_override_wins_over_the_tunable() {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    with_io_timeout(&mut f, 30);
    f.class.set_io_timeout_override("md0", Some(1));
    f.hang("md0", 0, 3600 * SEC);
    let t = f.submit(READ, 0, 512);
    f.drive_until(SEC + 10 * MS);
    let d = f
        .delivery(t)
        .expect("failed over at the override's deadline");
    assert_eq!(d.route, ["md0", "md1"]);
    assert_eq!(f.class.io_timeout("md0"), 1);
    assert_eq!(f.class.io_timeout("md1"), 30);
    f.class.set_io_timeout_override("md0", None);
    assert_eq!(f.class.io_timeout("md0"), 30);
    f.finish(1000);
}

#[test]
fn io_deadline_on_every_path_ends_in_enxio_after_one_deadline_per_path() {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    with_io_timeout(&mut f, 1);
    f.hang("md0", 0, 3600 * SEC);
    f.hang("md1", 0, 3600 * SEC);
    let t = f.submit(READ, 0, 4096);
    f.drive_until(10 * SEC);
    let d = f.delivery(t).expect("ends once every path timed out");
    assert_eq!(d.result, Err(Errno::ENXIO));
    assert_eq!(d.route, ["md0", "md1"]);
    assert!(d.at >= 2 * SEC && d.at < 3 * SEC, "two deadlines: {}", d.at);
    f.finish(1000);
}

#[test]
fn io_deadline_answered_in_time_changes_nothing() {
    let mut f = Fabric::create(3, Mode::ActiveActive);
    with_io_timeout(&mut f, 1);
    let tokens: Vec<u64> = (0..20).map(|i| f.submit(READ, i * 512, 512)).collect();
    f.drive_bounded(1000);
    for t in tokens {
        let d = f.delivery(t).unwrap();
        assert_eq!((d.result, d.route.len()), (Ok(()), 1));
    }
    assert!(f.take_messages().is_empty());
    assert_eq!(
        f.class.poll_timeout(),
        None,
        "a spurious wake disarmed the table"
    );
    assert_eq!(f.good_paths().len(), 3);
}

// ----- the write re-drive rule (issue 11 item 3) -------------------------------------------

fn with_quiesce_time(f: &mut Fabric, provider: &str, secs: u32) {
    f.class.set_quiesce_time(provider, Some(secs));
}

/// The red-team reproduction: io_timeout=1, the active path delays writes 4 s; write X,
/// then write Y to the same block. Before, X was re-driven on the other path at its
/// deadline and acknowledged, Y was acknowledged, and X's first copy landed 3 s later over
/// Y (the fabric's landing invariant panics on that). Now X waits for its first copy's
/// answer, and Y, sent after X was acknowledged, is the last to land.
#[test]
fn an_overdue_write_is_not_redriven_while_its_first_copy_can_still_land() {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    with_io_timeout(&mut f, 1);
    f.hang("md0", 0, 4 * SEC);
    let x = f.submit(WRITE, 0, 4096);
    f.drive_until(3 * SEC);
    assert!(f.delivery(x).is_none(), "held past its deadline");
    assert_eq!(
        f.take_messages(),
        [
            "GEOM_MULTIPATH: Error 6, md0 in FRED marked FAIL",
            "GEOM_MULTIPATH: md1 is now active path in FRED",
            "GEOM_MULTIPATH: a write to md0 in FRED is overdue; it is re-driven once its \
             answer arrives or md0 is gone",
        ]
    );
    assert_eq!(f.inflight_on("md0"), 1, "still out on md0");
    f.drive_until(4 * SEC + 10 * MS);
    let dx = f
        .delivery(x)
        .expect("answered by md0 when it woke up")
        .clone();
    assert_eq!((dx.result, dx.route), (Ok(()), vec!["md0".to_string()]));
    let y = f.submit(WRITE, 0, 4096);
    f.finish(1000);
    assert_eq!(f.delivery(y).unwrap().route, ["md1"]);
    let order: Vec<u64> = f.landed.iter().map(|&(t, _)| t).collect();
    assert_eq!(order, [x, y], "X's one copy, then Y");
}

/// A read past its deadline is re-driven at once: a late copy of a read changes nothing.
#[test]
fn an_overdue_read_is_redriven_at_once() {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    with_io_timeout(&mut f, 1);
    f.hang("md0", 0, 4 * SEC);
    let r = f.submit(READ, 0, 4096);
    f.drive_until(SEC + 10 * MS);
    let d = f.delivery(r).expect("re-driven at the deadline");
    assert_eq!(
        (d.result, d.route.clone()),
        (Ok(()), vec!["md0".into(), "md1".into()])
    );
    f.finish(1000);
}

/// The admin says how long a target may hold a write after its path was torn down
/// (`quiesce_time`): the held write is re-driven once that has passed.
#[test]
fn a_held_write_is_redriven_after_its_paths_quiesce_time() {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    with_io_timeout(&mut f, 1);
    with_quiesce_time(&mut f, "md0", 2);
    f.hang("md0", 0, 3600 * SEC);
    let t = f.submit(WRITE, 0, 4096);
    f.drive_until(3 * SEC - 1);
    assert!(f.delivery(t).is_none(), "held for the quiesce time");
    f.drive_until(3 * SEC + 10 * MS);
    let d = f
        .delivery(t)
        .expect("re-driven once the quiesce time passed");
    assert_eq!(
        (d.result, d.route.clone()),
        (Ok(()), vec!["md0".into(), "md1".into()])
    );
    assert!(f
        .take_messages()
        .iter()
        .any(|m| m.ends_with("re-driven once its answer arrives, md0 is gone or 2 s have passed")));
    assert_eq!(f.inflight_on("md0"), 0, "the first copy is abandoned now");
    assert_eq!(f.class.quiesce_time("md0"), 2);
    assert_eq!(f.class.quiesce_time("md1"), 0);
}

/// A path that is gone for good cannot land anything: its held write goes at once.
#[test]
fn a_held_write_is_redriven_when_its_path_is_gone() {
    for op in [WRITE, Op::Delete, Op::Flush] {
        let mut f = Fabric::create(2, Mode::ActivePassive);
        with_io_timeout(&mut f, 1);
        f.hang("md0", 0, 3600 * SEC);
        f.at(5 * SEC, Action::Vanish("md0".into()));
        let t = f.submit(op, 0, 4096);
        f.drive_until(5 * SEC - 1);
        assert!(f.delivery(t).is_none(), "{op:?} held until md0 goes");
        f.drive_until(5 * SEC + 10 * MS);
        let d = f.delivery(t).expect("re-driven when md0 vanished");
        assert_eq!(
            (d.result, d.route.clone()),
            (Ok(()), vec!["md0".into(), "md1".into()])
        );
        f.finish(1000);
    }
}

/// A held write whose first copy fails is re-driven then, as any failed write is.
#[test]
fn a_held_write_whose_first_copy_fails_is_redriven_then() {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    with_io_timeout(&mut f, 1);
    f.hang("md0", 0, 3 * SEC);
    f.fail_from("md0", 3 * SEC, Errno::EIO);
    let t = f.submit(WRITE, 0, 4096);
    f.drive_until(3 * SEC + 10 * MS);
    let d = f.delivery(t).expect("re-driven after md0's EIO");
    assert_eq!(
        (d.result, d.route.clone()),
        (Ok(()), vec!["md0".into(), "md1".into()])
    );
    assert!(d.at >= 3 * SEC);
    f.finish(1000);
}

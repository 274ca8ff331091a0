//! Data-path scenarios: routing in each mode, failover with reissue, the attempt bound,
//! pass-through errors, and the physpath suffix (COMPAT.md §4.2–4.3).

use geom_multipath::testkit::MemTopology;
use geom_multipath::{Bio, Class, Done, Errno, GeomId, Op, PathId, Probe};

const MIB: u64 = 1 << 20;

fn geom(n: usize, flags: [(&str, bool); 2]) -> (Class, MemTopology, GeomId) {
    let mut topo = MemTopology::new();
    topo.disk_with_paths("md", n, MIB, 512);
    let mut class = Class::default();
    let names: Vec<String> = (0..n).map(|i| format!("md{i}")).collect();
    let mut args = vec!["FRED"];
    args.extend(names.iter().map(String::as_str));
    assert_eq!(topo.verb(&mut class, "create", &flags, &args).error, "");
    let g = class.find_geom("FRED").unwrap();
    class.access(&mut topo, g, 1, 1, 0).unwrap();
    topo.take_messages();
    (class, topo, g)
}

const AP: [(&str, bool); 2] = [("active_active", false), ("active_read", false)];
const AA: [(&str, bool); 2] = [("active_active", true), ("active_read", false)];
const AR: [(&str, bool); 2] = [("active_active", false), ("active_read", true)];

fn name(class: &Class, p: PathId) -> String {
    class.path(p).unwrap().name().to_string()
}

fn ok() -> Done {
    Done::Deliver {
        result: Ok(()),
        append: None,
    }
}

#[test]
fn active_passive_sends_everything_to_the_active_path() {
    let (mut class, _, g) = geom(3, AP);
    for op in [
        Op::Read,
        Op::Write,
        Op::Delete,
        Op::Flush,
        Op::GetAttr { physpath: false },
    ] {
        let mut bio = Bio::new(1, g, op, 0, 512);
        let p = class.start(&mut bio).unwrap();
        assert_eq!(name(&class, p), "md0");
        assert_eq!(class.done(&mut bio, Ok(())), ok());
    }
}

#[test]
fn eio_fails_the_path_and_reissues_on_the_newest_good_one() {
    let (mut class, mut topo, g) = geom(3, AP);
    let mut bio = Bio::new(42, g, Op::Write, 4096, 4096);
    let first = class.start(&mut bio).unwrap();
    let Done::Reissue(second) = class.done(&mut bio, Err(Errno::EIO)) else {
        panic!("expected a reissue");
    };
    assert_eq!(name(&class, first), "md0");
    assert_eq!(
        name(&class, second),
        "md2",
        "kernel order: newest good path"
    );
    assert_eq!(class.path(second).unwrap().inflight(), 1);
    assert_eq!(class.path(first).unwrap().inflight(), 0);
    assert_eq!(class.done(&mut bio, Ok(())), ok());
    topo.drain(&mut class);
    assert_eq!(
        topo.take_messages(),
        [
            "GEOM_MULTIPATH: Error 5, md0 in FRED marked FAIL",
            "GEOM_MULTIPATH: md2 is now active path in FRED",
        ]
    );
    let probes = topo.probes();
    assert!(probes.contains(&Probe::Fail {
        geom: "FRED".into(),
        path: "md0".into(),
        error: 5
    }));
    assert!(probes.contains(&Probe::Restart { token: 42 }));
}

#[test]
fn enxio_fails_over_like_eio_and_other_errors_pass_through() {
    let (mut class, _, g) = geom(2, AP);
    let mut bio = Bio::new(1, g, Op::Read, 0, 512);
    class.start(&mut bio).unwrap();
    assert!(matches!(
        class.done(&mut bio, Err(Errno::ENXIO)),
        Done::Reissue(_)
    ));
    assert_eq!(class.done(&mut bio, Ok(())), ok());
    for e in [Errno::ENOSPC, Errno::EPERM, Errno(45), Errno::ENOMEM] {
        let mut bio = Bio::new(2, g, Op::Write, 0, 512);
        let p = class.start(&mut bio).unwrap();
        assert_eq!(
            class.done(&mut bio, Err(e)),
            Done::Deliver {
                result: Err(e),
                append: None
            }
        );
        assert!(
            class.path(p).unwrap().is_good(),
            "{e:?} does not fail the path"
        );
    }
}

#[test]
fn a_request_is_tried_at_most_once_per_path() {
    let (mut class, mut topo, g) = geom(3, AP);
    let mut bio = Bio::new(1, g, Op::Write, 0, 512);
    class.start(&mut bio).unwrap();
    let mut tries = 1;
    let last = loop {
        match class.done(&mut bio, Err(Errno::EIO)) {
            Done::Reissue(_) => tries += 1,
            Done::Deliver { result, .. } => break result,
            Done::Queued => panic!("a request started with start never waits"),
        }
        assert!(tries <= 3, "bounded by the number of paths");
    };
    assert_eq!(last, Err(Errno::EIO));
    assert_eq!(tries, 3);
    assert_eq!(bio.issued(), 3);
    topo.drain(&mut class);
    let restores = topo
        .probes()
        .iter()
        .filter(|p| matches!(p, Probe::Restore { .. }))
        .count();
    assert!(
        restores <= 2,
        "PR 178473: at most a couple of restore events, saw {restores}"
    );
    // Every in-flight count is back to zero.
    for p in class.geom(g).unwrap().paths() {
        assert_eq!(class.path(p).unwrap().inflight(), 0);
    }
}

#[test]
fn out_of_providers_means_enxio_until_a_path_returns() {
    let (mut class, mut topo, g) = geom(1, AP);
    let mut inflight = Bio::new(1, g, Op::Read, 0, 512);
    let md0 = class.start(&mut inflight).unwrap();
    assert_eq!(
        topo.verb(&mut class, "remove", &[], &["FRED", "md0"]).error,
        ""
    );
    assert!(topo
        .take_messages()
        .contains(&"GEOM_MULTIPATH: out of providers for FRED".into()));
    let mut bio = Bio::new(2, g, Op::Read, 0, 512);
    assert_eq!(class.start(&mut bio), Err(Errno::ENXIO));
    // The request already on the lost path still completes, then the path detaches.
    assert_eq!(class.done(&mut inflight, Ok(())), ok());
    topo.drain(&mut class);
    assert!(class.path(md0).is_none());
    assert!(
        class.geom(g).unwrap().withered(),
        "open geom withers with its last path"
    );
    assert_eq!(class.start(&mut bio), Err(Errno::ENXIO));
}

#[test]
fn withered_provider_refuses_new_requests() {
    let (mut class, mut topo, g) = geom(2, AP);
    assert_eq!(topo.verb(&mut class, "stop", &[], &["FRED"]).error, "");
    let mut bio = Bio::new(1, g, Op::Read, 0, 512);
    assert_eq!(class.start(&mut bio), Err(Errno::ENXIO));
}

#[test]
fn active_active_round_robins_under_light_load() {
    let (mut class, _, g) = geom(3, AA);
    let mut seen = vec![];
    for t in 0..6 {
        let mut bio = Bio::new(t, g, Op::Write, 0, 512);
        let p = class.start(&mut bio).unwrap();
        seen.push(name(&class, p));
        class.done(&mut bio, Ok(()));
    }
    assert_eq!(seen, ["md2", "md1", "md0", "md2", "md1", "md0"]);
}

#[test]
fn active_active_prefers_the_path_with_fewest_in_flight() {
    let (mut class, _, g) = geom(2, AA);
    let mut a = Bio::new(1, g, Op::Read, 0, 512);
    let mut b = Bio::new(2, g, Op::Read, 0, 512);
    let pa = class.start(&mut a).unwrap();
    let pb = class.start(&mut b).unwrap();
    assert_ne!(pa, pb, "second request goes to the idle path");
    class.done(&mut b, Ok(()));
    let mut c = Bio::new(3, g, Op::Read, 0, 512);
    assert_eq!(
        class.start(&mut c).unwrap(),
        pb,
        "pa still has one in flight"
    );
}

#[test]
fn active_read_spreads_reads_and_pins_everything_else() {
    let (mut class, _, g) = geom(2, AR);
    let mut reads = std::collections::BTreeSet::new();
    for t in 0..4 {
        let mut bio = Bio::new(t, g, Op::Read, 0, 512);
        let p = class.start(&mut bio).unwrap();
        reads.insert(name(&class, p));
        class.done(&mut bio, Ok(()));
    }
    assert_eq!(reads.len(), 2, "reads use both paths");
    for op in [
        Op::Write,
        Op::Delete,
        Op::Flush,
        Op::GetAttr { physpath: true },
        Op::Other(9),
    ] {
        let mut bio = Bio::new(9, g, op, 0, 512);
        let p = class.start(&mut bio).unwrap();
        assert_eq!(name(&class, p), "md0", "{op:?} goes to the active path");
        class.done(&mut bio, Ok(()));
    }
}

#[test]
fn physpath_answers_get_the_mp_suffix() {
    let (mut class, _, g) = geom(1, AP);
    let mut bio = Bio::new(1, g, Op::GetAttr { physpath: true }, 0, 0);
    class.start(&mut bio).unwrap();
    assert_eq!(
        class.done(&mut bio, Ok(())),
        Done::Deliver {
            result: Ok(()),
            append: Some("/mp")
        }
    );
    let mut other = Bio::new(2, g, Op::GetAttr { physpath: false }, 0, 0);
    class.start(&mut other).unwrap();
    assert_eq!(class.done(&mut other, Ok(())), ok());
    let mut failed = Bio::new(3, g, Op::GetAttr { physpath: true }, 0, 0);
    class.start(&mut failed).unwrap();
    assert_eq!(
        class.done(&mut failed, Err(Errno(45))),
        Done::Deliver {
            result: Err(Errno(45)),
            append: None
        }
    );
}

#[test]
fn a_failed_path_stays_failed_after_success_elsewhere() {
    let (mut class, _, g) = geom(2, AP);
    let mut bio = Bio::new(1, g, Op::Read, 0, 512);
    let md0 = class.start(&mut bio).unwrap();
    let Done::Reissue(_) = class.done(&mut bio, Err(Errno::EIO)) else {
        panic!()
    };
    class.done(&mut bio, Ok(()));
    assert!(class.path(md0).unwrap().is_failed());
}

#[test]
fn a_request_started_before_a_path_was_added_gets_the_larger_bound() {
    let (mut class, mut topo, g) = geom(1, AP);
    topo.disks.push(geom_multipath::testkit::Disk {
        mediasize: MIB,
        sectorsize: 512,
        ..Default::default()
    });
    topo.add_provider("md1", 0);
    let mut bio = Bio::new(1, g, Op::Read, 0, 512);
    class.start(&mut bio).unwrap();
    assert_eq!(
        topo.verb(&mut class, "add", &[], &["FRED", "md1"]).error,
        ""
    );
    // Issued under ndisks=1: the first failure would end it; but the restart sees 2 paths.
    match class.done(&mut bio, Err(Errno::EIO)) {
        Done::Deliver { result, .. } => assert_eq!(result, Err(Errno::EIO)),
        Done::Reissue(_) => panic!("bound is taken at start, as bio_driver1 is"),
        Done::Queued => panic!("a request started with start never waits"),
    }
}

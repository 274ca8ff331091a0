//! The counters ([`geom_multipath::stats`]) through the data path and the verbs: one
//! failover counted on every counter it touches and nowhere twice, latency from the send
//! time to the answer, the cause of a failure, time per state, and a reset.

use geom_multipath::stats::{FailCause, OpKind};
use geom_multipath::testkit::MemTopology;
use geom_multipath::{Bio, Class, Done, Errno, GeomId, Op, Time};

fn geom(n: usize) -> (Class, MemTopology, GeomId) {
    let mut topo = MemTopology::new();
    topo.disk_with_paths("md", n, 1 << 20, 512);
    let mut class = Class::default();
    let names: Vec<String> = (0..n).map(|i| format!("md{i}")).collect();
    let mut args = vec!["FRED"];
    args.extend(names.iter().map(String::as_str));
    let flags = [("active_active", false), ("active_read", false)];
    assert_eq!(topo.verb(&mut class, "create", &flags, &args).error, "");
    let g = class.find_geom("FRED").unwrap();
    class.access(&mut topo, g, 1, 1, 0).unwrap();
    (class, topo, g)
}

const MS: u64 = 1_000_000;

#[test]
fn a_failover_is_counted_once_on_each_counter_it_touches() {
    let (mut class, _topo, g) = geom(2);
    let mut bio = Bio::new(1, g, Op::Write, 0, 4096);
    let first = class.start(&mut bio).unwrap();
    class.arm_deadline(&mut bio, Time(10 * MS));
    let Done::Reissue(second) = class.done_at(&mut bio, Err(Errno::EIO), Time(13 * MS)) else {
        panic!("expected a reissue");
    };
    class.arm_deadline(&mut bio, Time(13 * MS));
    let done = class.done_at(&mut bio, Ok(()), Time(14 * MS));
    assert!(matches!(done, Done::Deliver { result: Ok(()), .. }));

    let a = class.path_stats(first).unwrap();
    let w = a.op(OpKind::Write);
    assert_eq!((w.requests, w.bytes, w.errors), (1, 4096, 1));
    assert_eq!(w.latency.count(), 1);
    assert_eq!(w.latency.max_ns(), 3 * MS);
    assert_eq!(a.errors.iter().collect::<Vec<_>>(), [(Errno::EIO, 1)]);
    assert_eq!((a.failures, a.failovers, a.reissues), (1, 1, 1));
    assert_eq!(
        a.last_failure,
        Some((Time(13 * MS), FailCause::Error(Errno::EIO)))
    );

    let b = class.path_stats(second).unwrap();
    let w = b.op(OpKind::Write);
    assert_eq!((w.requests, w.errors, w.latency.max_ns()), (1, 0, MS));
    assert_eq!((b.failures, b.failovers, b.reissues), (0, 0, 0));

    let gs = class.geom_stats(g).unwrap();
    let w = gs.op(OpKind::Write);
    assert_eq!((w.requests, w.bytes, w.errors), (1, 4096, 0), "one answer");
    assert_eq!((gs.reissues, gs.failovers), (1, 1));
    assert_eq!(gs.errors.total(), 0);
}

#[test]
fn a_request_with_no_path_is_counted_once_as_an_enxio_answer() {
    let (mut class, mut topo, g) = geom(1);
    assert_eq!(
        topo.verb(&mut class, "fail", &[], &["FRED", "md0"]).error,
        ""
    );
    // The only path is restored by the all-failed rule; fail it by I/O instead.
    let mut bio = Bio::new(1, g, Op::Read, 0, 512);
    class.start(&mut bio).unwrap();
    let done = class.done(&mut bio, Err(Errno::ENXIO));
    assert_eq!(
        done,
        Done::Deliver {
            result: Err(Errno::ENXIO),
            append: None
        }
    );
    let gs = class.geom_stats(g).unwrap();
    assert_eq!(gs.op(OpKind::Read).errors, 1);
    assert_eq!(gs.errors.iter().collect::<Vec<_>>(), [(Errno::ENXIO, 1)]);
    let p = class.geom(g).unwrap().paths().next().unwrap();
    let ps = class.path_stats(p).unwrap();
    assert_eq!(
        ps.op(OpKind::Read).latency.count(),
        0,
        "done without a clock"
    );
    assert_eq!(
        ps.failures, 2,
        "by the verb (then restored: the only path), then by I/O"
    );
    assert_eq!(
        ps.last_failure.map(|f| f.1),
        Some(FailCause::Error(Errno::ENXIO))
    );
}

#[test]
fn state_time_and_reset() {
    let (mut class, mut topo, g) = geom(2);
    class.observe_states(Time(0));
    assert_eq!(
        topo.verb(&mut class, "fail", &[], &["FRED", "md1"]).error,
        ""
    );
    let md1 = class
        .geom(g)
        .unwrap()
        .paths()
        .find(|&p| class.path(p).unwrap().name() == "md1");
    let md1 = md1.unwrap();
    class.observe_states(Time(5 * MS));
    // The fail verb came without a time: dated at the last time the class heard.
    assert_eq!(class.path_stats(md1).unwrap().good_ns, 0);
    assert_eq!(class.path_stats(md1).unwrap().failed_ns, 5 * MS);
    assert_eq!(
        topo.verb(&mut class, "restore", &[], &["FRED", "md1"])
            .error,
        ""
    );
    class.observe_states(Time(7 * MS));
    let s = class.path_stats(md1).unwrap();
    assert_eq!((s.good_ns, s.failed_ns, s.failures), (2 * MS, 5 * MS, 1));
    assert_eq!(s.last_failure, Some((Time(0), FailCause::Admin)));

    class.reset_stats(Some(g));
    let s = class.path_stats(md1).unwrap();
    assert_eq!(
        (s.good_ns, s.failed_ns, s.failures, s.last_failure),
        (0, 0, 0, None)
    );
    class.observe_states(Time(8 * MS));
    assert_eq!(class.path_stats(md1).unwrap().good_ns, MS);
}

#[test]
fn a_request_answered_on_the_direct_route_is_counted_once() {
    let (mut class, _topo, g) = geom(2);
    let path = class.direct_path(g).expect("A/P with a good active path");
    let bio = Bio::new(7, g, Op::Read, 0, 8192);
    class.count_direct(&bio, path, Some(250_000));
    let r = class.path_stats(path).unwrap().op(OpKind::Read);
    assert_eq!(
        (r.requests, r.bytes, r.latency.max_ns()),
        (1, 8192, 250_000)
    );
    assert_eq!(class.geom_stats(g).unwrap().op(OpKind::Read).requests, 1);
}

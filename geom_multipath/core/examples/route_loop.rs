//! Routes and completes N requests on an Active/Active geom of P paths, as the host drives
//! the class (the send time, then the answer's time for the latency counters), for counting
//! instructions per request under callgrind (see BENCHMARKS.md, bench/counters_cost.sh):
//! `route_loop <paths> <requests> [selector]` (a `configure -s` value; least-busy by
//! default).
use std::hint::black_box;

use geom_multipath::testkit::MemTopology;
use geom_multipath::{Bio, Class, Op, Time};

fn main() {
    let paths: usize = std::env::args()
        .nth(1)
        .map_or(32, |s| s.parse().expect("paths"));
    let requests: u64 = std::env::args()
        .nth(2)
        .map_or(1_000_000, |s| s.parse().expect("requests"));
    let mut topo = MemTopology::new();
    topo.disk_with_paths("md", paths, 1 << 30, 512);
    let mut class = Class::default();
    let names: Vec<String> = (0..paths).map(|i| format!("md{i}")).collect();
    let mut args = vec!["BENCH"];
    args.extend(names.iter().map(String::as_str));
    let flags = [("active_active", true), ("active_read", false)];
    assert_eq!(topo.verb(&mut class, "create", &flags, &args).error, "");
    let geom = class.find_geom("BENCH").expect("geom");
    class.access(&mut topo, geom, 1, 1, 0).expect("open");
    if let Some(selector) = std::env::args().nth(3) {
        let reply = topo.configure(&mut class, "BENCH", &[("selector", &selector)]);
        assert_eq!(reply.error, "", "selector {selector}");
    }
    for token in 0..requests {
        let mut bio = Bio::new(token, geom, Op::Read, token << 12, 4096);
        black_box(class.start(black_box(&mut bio)).expect("a path"));
        class.arm_deadline(&mut bio, Time(token * 1000));
        black_box(class.done_at(&mut bio, Ok(()), Time(token * 1000 + 70_000)));
    }
}

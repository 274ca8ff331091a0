//! The data path's cost: one [`Class::start`] plus one [`Class::done`]`(Ok)` per request
//! (`start_done`), and as the host drives it, with the send time and the answer's time that
//! feed the latency counters ([`Class::arm_deadline`], [`Class::done_at`]:
//! `start_timed_done`), on geoms of 2, 8 and 32 paths in each mode (STYLE.md item 3:
//! routing is O(paths) and does not allocate). `bench/counters_cost.sh` runs this file
//! against the class before the counters, in one run. Geoms are built with the in-memory framework and the `create` verb, and
//! opened with [`Class::access`] as a filesystem would. Requests are reads, so Active/Read
//! takes the spreading path like Active/Active; the paths stay idle between requests, which
//! is the worst case for Active/Active (every good path is scanned and aged each time).
//! The `selector` group routes Active/Active reads at 8 paths with each path selector
//! (FreeBSD's least-busy, round-robin with a batch of 1 and of 16, service-time).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use geom_multipath::testkit::MemTopology;
use geom_multipath::{Bio, Class, Done, GeomId, Mode, Op, Time};

/// A class with one open geom of `n` paths in `mode`.
fn open_geom(n: usize, mode: Mode) -> (Class, MemTopology, GeomId) {
    let mut topo = MemTopology::new();
    topo.disk_with_paths("md", n, 1 << 30, 512);
    let mut class = Class::default();
    let names: Vec<String> = (0..n).map(|i| format!("md{i}")).collect();
    let mut args = vec!["BENCH"];
    args.extend(names.iter().map(String::as_str));
    let flags = [
        ("active_active", mode == Mode::ActiveActive),
        ("active_read", mode == Mode::ActiveRead),
    ];
    let reply = topo.verb(&mut class, "create", &flags, &args);
    assert_eq!(reply.error, "", "create");
    let geom = class.find_geom("BENCH").expect("geom");
    class.access(&mut topo, geom, 1, 1, 0).expect("open");
    (class, topo, geom)
}

/// One 4 KiB read routed and completed: the measured unit.
fn route_one(class: &mut Class, geom: GeomId, token: &mut u64) -> Done {
    *token += 1;
    let mut bio = Bio::new(*token, geom, Op::Read, *token << 12, 4096);
    let path = class.start(black_box(&mut bio)).expect("a good path");
    black_box(path);
    black_box(class.done(&mut bio, Ok(())))
}

/// [`route_one`] as the host does it: the send time, then the answer's 70 µs later.
fn route_one_timed(class: &mut Class, geom: GeomId, token: &mut u64) -> Done {
    *token += 1;
    let mut bio = Bio::new(*token, geom, Op::Read, *token << 12, 4096);
    let path = class.start(black_box(&mut bio)).expect("a good path");
    black_box(path);
    class.arm_deadline(&mut bio, Time(*token * 1000));
    black_box(class.done_at(&mut bio, Ok(()), Time(*token * 1000 + 70_000)))
}

fn start_done(c: &mut Criterion) {
    every_mode(c, "start_done", route_one);
}

fn start_timed_done(c: &mut Criterion) {
    every_mode(c, "start_timed_done", route_one_timed);
}

/// `unit` on geoms of 2, 8 and 32 paths in each mode.
fn every_mode(c: &mut Criterion, name: &str, unit: fn(&mut Class, GeomId, &mut u64) -> Done) {
    let mut group = c.benchmark_group(name);
    for (label, mode) in [
        ("A/P", Mode::ActivePassive),
        ("A/A", Mode::ActiveActive),
        ("A/R", Mode::ActiveRead),
    ] {
        for n in [2usize, 8, 32] {
            group.bench_with_input(BenchmarkId::new(label, n), &n, |b, &n| {
                let (mut class, _topo, geom) = open_geom(n, mode);
                let mut token = 0u64;
                b.iter(|| unit(&mut class, geom, &mut token));
            });
        }
    }
    group.finish();
}

fn selectors(c: &mut Criterion) {
    let mut group = c.benchmark_group("selector");
    for selector in [
        "least-busy",
        "round-robin:1",
        "round-robin:16",
        "service-time",
    ] {
        group.bench_with_input(BenchmarkId::new(selector, 8), &8, |b, &n| {
            let (mut class, mut topo, geom) = open_geom(n, Mode::ActiveActive);
            let reply = topo.configure(&mut class, "BENCH", &[("selector", selector)]);
            assert_eq!(reply.error, "", "configure");
            let mut token = 0u64;
            b.iter(|| route_one(&mut class, geom, &mut token));
        });
    }
    group.finish();
}

criterion_group!(benches, start_done, start_timed_done, selectors);
criterion_main!(benches);

//! The kernel module's Rust half, driven through the very `gmp_rs_*` entry points the C shim
//! calls, over the userland implementation of every `kpi_*` function: taste, every verb as
//! geom(8) sends it, failover with the reissue made by `g_mp_kt`, exactly-once delivery,
//! orphans, dumpconf, destroy, unload, and zero leaked allocations at the end of each scenario.
//!
//! The test binary's allocator is the module's own (`KpiAlloc` over the userland
//! `kpi_malloc`), so the accounting sees every allocation the glue and the core make.

use geom_multipath::Mode;
use geom_multipath_kmod::bindings::{KPI_BIO_GETATTR, KPI_BIO_READ, KPI_BIO_WRITE};
use geom_multipath_kmod::userland::sleep::{self, SleepPoint};
use geom_multipath_kmod::userland::world::Fault;
use geom_multipath_kmod::userland::{self, memory, CtlReply, Kernel};
use geom_multipath_kmod::KpiAlloc;

#[global_allocator]
static ALLOCATOR: KpiAlloc = KpiAlloc;

const MB: u64 = 1 << 20;
const SS: u32 = 512;
const UUID: &str = "6a1e8bcf-0d3e-11ef-9c6a-0800272b4c1e";

fn ok() -> CtlReply {
    CtlReply::default()
}

fn err(text: &str) -> CtlReply {
    CtlReply {
        error: Some(String::from(text)),
        output: String::new(),
    }
}

fn out(text: &str) -> CtlReply {
    CtlReply {
        error: None,
        output: String::from(text),
    }
}

/// A loaded kernel with one disk reached through `md0`, `md1` (and `md2` with `paths == 3`).
fn machine(paths: usize) -> (Kernel, usize) {
    let mut k = Kernel::boot();
    let disk = k.disk("md", paths, MB, SS);
    k.load();
    k.settle();
    (k, disk)
}

/// `gmultipath create [-A|-R] FRED md0 md1 ...`.
fn create(k: &mut Kernel, options: &[(&str, i32)], paths: &[&str]) -> CtlReply {
    let mut args = vec!["FRED"];
    args.extend_from_slice(paths);
    let mut opts = vec![("active_active", 0), ("active_read", 0)];
    for (name, value) in options {
        opts.retain(|(n, _)| n != name);
        opts.insert(0, (*name, *value));
    }
    k.ctl("create", &opts, &args)
}

/// Stops every geom (with exclusive=1 FreeBSD refuses to unload while one exists), unloads,
/// and checks that nothing is left: no geom, no allocation, no broken rule.
fn finish(mut k: Kernel) {
    k.settle();
    for name in k.geoms() {
        assert_eq!(k.ctl("stop", &[], &[&name]), ok(), "stop {name}");
    }
    assert_eq!(k.unload(), Ok(()), "unload");
    k.check();
    let m = k.malloc();
    assert_eq!(
        (m.live_blocks, m.live_bytes),
        (0, 0),
        "the module leaked {m:?}"
    );
}

fn write_bytes(k: &mut Kernel, offset: u64, fill: u8, len: usize) -> userland::Answer {
    let bp = k.submit(
        "multipath/FRED",
        KPI_BIO_WRITE,
        offset,
        vec![fill; len],
        None,
    );
    k.settle();
    let answer = k.answer(bp).expect("delivered");
    k.forget(bp);
    answer
}

fn read_bytes(k: &mut Kernel, offset: u64, len: usize) -> userland::Answer {
    let bp = k.submit("multipath/FRED", KPI_BIO_READ, offset, vec![0; len], None);
    k.settle();
    let answer = k.answer(bp).expect("delivered");
    k.forget(bp);
    answer
}

#[test]
fn load_and_unload_leave_nothing_behind() {
    let (k, _) = machine(2);
    finish(k);
}

#[test]
fn taste_of_labelled_disks_creates_the_geom_freebsd_prints() {
    let mut k = Kernel::boot();
    let disk = k.disk("md", 2, MB, SS);
    k.label(disk, "FRED", UUID, Mode::ActivePassive, SS);
    k.load();
    k.settle();
    assert_eq!(
        k.console(),
        [
            "GEOM_MULTIPATH: FRED created",
            "GEOM_MULTIPATH: md0 added to FRED",
            "GEOM_MULTIPATH: md0 is now active path in FRED",
            "GEOM_MULTIPATH: md1 added to FRED",
        ]
    );
    assert_eq!(
        k.probes(),
        [
            format!("config:taste(FRED,{UUID})"),
            format!("config:taste(FRED,{UUID})")
        ]
    );
    // AUTOMATIC: the label's sector is not part of the provider; paths held r1w1e1.
    let pp = k.provider_state("multipath/FRED").expect("provider");
    assert_eq!(
        (pp.mediasize, pp.sectorsize, pp.access),
        (MB - u64::from(SS), SS, (0, 0, 0))
    );
    assert_eq!(k.provider_state("md0").unwrap().access, (1, 1, 1));
    // GEOM tasted the new multipath provider too, reading its last sector through the class's
    // own access, start and done (one clone, on the active path): no second geom, no anomaly.
    assert_eq!(k.issued(), ["md0"]);
    assert_eq!(k.geoms(), ["FRED"]);
    let conf = k.conf("FRED").unwrap();
    assert!(conf.geom.contains("<Type>AUTOMATIC</Type>"), "{conf:?}");
    assert!(conf.geom.contains(&format!("<UUID>{UUID}</UUID>")));
    k.check();
    finish(k);
}

#[test]
fn a_path_arriving_later_joins_by_uuid() {
    let mut k = Kernel::boot();
    let disk = k.disk("md", 1, MB, SS);
    k.label(disk, "FRED", UUID, Mode::ActiveActive, SS);
    k.load();
    k.settle();
    k.console();
    k.provider("md1", disk, MB, SS);
    k.settle();
    assert_eq!(k.console(), ["GEOM_MULTIPATH: md1 added to FRED"]);
    assert_eq!(k.ctl("getactive", &[], &["FRED"]), out("md1 md0\n"));
    finish(k);
}

#[test]
fn a_name_clash_renames_the_newcomer_with_random() {
    let mut k = Kernel::boot();
    let a = k.disk("da", 1, MB, SS);
    let b = k.disk("db", 1, MB, SS);
    k.label(a, "FRED", UUID, Mode::ActivePassive, SS);
    k.label(
        b,
        "FRED",
        "0b7a2f0c-0d3f-11ef-9c6a-0800272b4c1e",
        Mode::ActivePassive,
        SS,
    );
    k.set_random(77);
    k.load();
    k.settle();
    let console = k.console();
    assert!(
        console.contains(&format!("GEOM_MULTIPATH: geom FRED/{UUID} exists already")),
        "{console:#?}"
    );
    assert!(console.contains(&String::from("GEOM_MULTIPATH: FRED-77 created")));
    assert!(k.has_provider("multipath/FRED-77"));
    finish(k);
}

#[test]
fn create_as_geom8_sends_it() {
    let (mut k, _) = machine(2);
    assert_eq!(create(&mut k, &[], &["md0", "/dev/md1"]), ok());
    assert_eq!(
        k.console(),
        [
            "GEOM_MULTIPATH: FRED created",
            "GEOM_MULTIPATH: md0 added to FRED",
            "GEOM_MULTIPATH: md0 is now active path in FRED",
            "GEOM_MULTIPATH: md1 added to FRED",
        ]
    );
    // MANUAL: the whole path; exclusive=1 holds every path r1w1e1.
    let pp = k.provider_state("multipath/FRED").unwrap();
    assert_eq!((pp.mediasize, pp.sectorsize), (MB, SS));
    assert_eq!(k.provider_state("md1").unwrap().access, (1, 1, 1));
    assert_eq!(k.ctl("getactive", &[], &["FRED"]), out("md0\n"));
    finish(k);
}

#[test]
fn stripe_geometry_follows_the_first_path_that_has_one() {
    let (mut k, _) = machine(2);
    k.set_stripe("md0", 4096, 512);
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    assert_eq!(
        k.provider_state("multipath/FRED").unwrap().stripe,
        (4096, 512)
    );
    finish(k);
}

#[test]
fn io_goes_through_the_active_path_and_reaches_the_disk() {
    let (mut k, disk) = machine(2);
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    k.issued();
    let w = write_bytes(&mut k, 4096, 0xa5, 1024);
    assert_eq!((w.error, w.completed, w.delivered), (0, 1024, 1));
    let r = read_bytes(&mut k, 4096, 1024);
    assert_eq!((r.error, r.delivered), (0, 1));
    assert!(r.data.iter().all(|&b| b == 0xa5));
    assert_eq!(k.issued(), ["md0", "md0"]);
    let _ = disk;
    finish(k);
}

#[test]
fn failover_reissues_from_g_mp_kt_not_inline_in_g_up() {
    let (mut k, _) = machine(2);
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    k.console();
    k.issued();
    k.fault(
        "md0",
        Fault {
            io: Some(5),
            ..Fault::default()
        },
    );
    let bp = k.submit("multipath/FRED", KPI_BIO_WRITE, 0, vec![7; 512], None);
    assert_eq!(k.issued(), ["md0"]);
    assert_eq!(k.queues(), (1, 0, 0), "the EIO answer waits for g_up");

    // g_up: the EIO completion is handed to g_mp_kt; nothing is reissued from g_up.
    assert!(k.run_up());
    assert_eq!(k.queues(), (0, 1, 0));
    assert!(k.issued().is_empty(), "reissued inline in g_up");
    assert!(k.answer(bp).is_none());
    assert!(k.console().is_empty());

    // g_mp_kt: the path fails, the request goes down the other one.
    assert!(k.run_worker());
    assert_eq!(
        k.console(),
        [
            "GEOM_MULTIPATH: Error 5, md0 in FRED marked FAIL",
            "GEOM_MULTIPATH: md1 is now active path in FRED",
        ]
    );
    let probes = k.probes();
    assert_eq!(probes[0], "config:fail(FRED,md0,5)");
    assert!(probes[1].starts_with("io:restart("), "{probes:?}");
    assert!(
        probes[1].ends_with(&format!(",{bp:#x})")),
        "restart names the parent: {probes:?}"
    );
    assert_eq!(k.issued(), ["md1"]);
    assert!(k.answer(bp).is_none());

    // g_up: the request completes, once, successfully.
    k.settle();
    let a = k.answer(bp).unwrap();
    assert_eq!((a.error, a.completed, a.delivered), (0, 512, 1));
    k.forget(bp);
    let conf = k.conf("FRED").unwrap();
    assert_eq!(conf.geom.lines().next(), Some("\t<State>DEGRADED</State>"));
    finish(k);
}

#[test]
fn every_path_failing_ends_the_request_with_the_error_once() {
    let (mut k, _) = machine(2);
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    k.console();
    for p in ["md0", "md1"] {
        k.fault(
            p,
            Fault {
                io: Some(6),
                ..Fault::default()
            },
        );
    }
    let a = write_bytes(&mut k, 0, 1, 512);
    assert_eq!((a.error, a.delivered), (6, 1));
    let console = k.console();
    assert!(console.contains(&String::from(
        "GEOM_MULTIPATH: Error 6, md0 in FRED marked FAIL"
    )));
    assert!(
        console
            .iter()
            .any(|l| l.starts_with("GEOM_MULTIPATH: all paths in FRED were marked FAIL, restore")),
        "{console:#?}"
    );
    assert!(k
        .probes()
        .iter()
        .any(|p| p.starts_with("config:restore(FRED,")));
    finish(k);
}

#[test]
fn ordinary_errors_pass_through_without_failing_the_path() {
    let (mut k, _) = machine(2);
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    k.console();
    k.fault(
        "md0",
        Fault {
            io: Some(28),
            io_count: Some(1),
            ..Fault::default()
        },
    );
    let a = write_bytes(&mut k, 0, 1, 512);
    assert_eq!((a.error, a.delivered), (28, 1));
    assert!(k.console().is_empty());
    assert_eq!(k.ctl("getactive", &[], &["FRED"]), out("md0\n"));
    finish(k);
}

#[test]
fn every_request_is_delivered_exactly_once_across_faults_and_modes() {
    let (mut k, _) = machine(3);
    assert_eq!(
        create(&mut k, &[("active_active", 1)], &["md0", "md1", "md2"]),
        ok()
    );
    let mut requests = Vec::new();
    for round in 0..30u64 {
        match round {
            5 => k.fault(
                "md1",
                Fault {
                    io: Some(5),
                    io_count: Some(3),
                    ..Fault::default()
                },
            ),
            12 => assert_eq!(k.ctl("restore", &[], &["FRED", "md1"]), ok()),
            18 => assert_eq!(k.ctl("fail", &[], &["FRED", "md2"]), ok()),
            24 => {
                assert_eq!(
                    k.ctl(
                        "configure",
                        &[
                            ("active_read", 1),
                            ("active_active", 0),
                            ("active_passive", 0)
                        ],
                        &["FRED"]
                    ),
                    ok()
                )
            }
            _ => {}
        }
        for i in 0..4u64 {
            let cmd = if (round + i) % 2 == 0 {
                KPI_BIO_READ
            } else {
                KPI_BIO_WRITE
            };
            requests.push(k.submit(
                "multipath/FRED",
                cmd,
                (round * 4 + i) * 512,
                vec![0; 512],
                None,
            ));
        }
        // Interleave the threads a little differently each round.
        for _ in 0..(round % 3) {
            k.run_up();
            k.run_worker();
        }
    }
    k.settle();
    for bp in requests {
        let a = k.answer(bp).expect("every request is answered");
        assert_eq!(a.delivered, 1);
        assert_eq!(a.error, 0, "a path was always left");
        k.forget(bp);
    }
    finish(k);
}

#[test]
fn the_physpath_answer_gets_mp_appended() {
    let (mut k, _) = machine(2);
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    let bp = k.submit(
        "multipath/FRED",
        KPI_BIO_GETATTR,
        0,
        vec![0; 128],
        Some("GEOM::physpath"),
    );
    k.settle();
    let a = k.answer(bp).unwrap();
    let end = a.data.iter().position(|&b| b == 0).unwrap();
    let text = std::str::from_utf8(&a.data[..end]).unwrap();
    assert_eq!(a.error, 0);
    assert!(
        text.ends_with("/mp") && text.starts_with("id1,enc@"),
        "{text}"
    );
    k.forget(bp);
    // Another attribute passes through untouched (here: not supported by the disk).
    let bp = k.submit(
        "multipath/FRED",
        KPI_BIO_GETATTR,
        0,
        vec![0; 128],
        Some("GEOM::ident"),
    );
    k.settle();
    assert_eq!(k.answer(bp).unwrap().error, 45);
    k.forget(bp);
    finish(k);
}

#[test]
fn a_busy_class_sends_start_to_g_mp_kt_which_routes_it_later() {
    // Active/Active: every request's path is the class's to choose (no direct route).
    let (mut k, _) = machine(2);
    assert_eq!(
        create(&mut k, &[("active_active", 1)], &["md0", "md1"]),
        ok()
    );
    k.issued();
    let hold = k.hold_gate();
    let bp = k.submit("multipath/FRED", KPI_BIO_READ, 0, vec![0; 512], None);
    assert_eq!(k.queues(), (0, 1, 0), "queued to g_mp_kt, not waited for");
    assert!(k.issued().is_empty());
    drop(hold);
    k.settle();
    assert_eq!(k.issued(), ["md0"]);
    assert_eq!(k.answer(bp).unwrap().delivered, 1);
    k.forget(bp);
    // Same for a completion that finds the class busy.
    let bp = k.submit("multipath/FRED", KPI_BIO_READ, 0, vec![0; 512], None);
    let hold = k.hold_gate();
    assert!(k.run_up());
    assert_eq!(k.queues(), (0, 1, 0));
    drop(hold);
    k.settle();
    assert_eq!(k.answer(bp).unwrap().delivered, 1);
    k.forget(bp);
    finish(k);
}

#[test]
fn requests_waiting_in_g_mp_kt_are_not_overtaken() {
    // (g): a request queued behind a busy class keeps its place: the next one, arriving once
    // the class is free, waits behind it (a BIO_ORDERED write among them keeps its order).
    // Active/Active, so that the class must route every request (no direct route).
    let (mut k, _) = machine(2);
    assert_eq!(
        create(&mut k, &[("active_active", 1)], &["md0", "md1"]),
        ok()
    );
    let cp = k.open("multipath/FRED", 1, 1, 0).expect("open");
    k.issued_offsets();
    let hold = k.hold_gate();
    let first = k.submit("multipath/FRED", KPI_BIO_WRITE, 0, vec![1; 512], None);
    drop(hold);
    let second = k.submit("multipath/FRED", KPI_BIO_WRITE, 512, vec![2; 512], None);
    let third = k.submit("multipath/FRED", KPI_BIO_WRITE, 1024, vec![3; 512], None);
    assert_eq!(k.queues(), (0, 3, 0), "all three wait in g_mp_kt, in order");
    k.settle();
    assert_eq!(
        k.issued_offsets(),
        [0, 512, 1024],
        "issued in arrival order"
    );
    for bp in [first, second, third] {
        assert_eq!(k.answer(bp).map(|a| (a.error, a.delivered)), Some((0, 1)));
        k.forget(bp);
    }
    // With nothing waiting, requests are routed in g_down again.
    let bp = k.submit("multipath/FRED", KPI_BIO_READ, 0, vec![0; 512], None);
    assert_eq!(k.queues().1, 0);
    k.settle();
    k.forget(bp);
    k.close(cp);
    finish(k);
}

/// Two labelled geoms, FRED (md0, md1) and BOB (da0), both open for reading and writing.
fn two_geoms() -> (Kernel, userland::world::Handle, userland::world::Handle) {
    let mut k = Kernel::boot();
    let fred = k.disk("md", 2, MB, SS);
    k.label(fred, "FRED", UUID, Mode::ActivePassive, SS);
    let bob = k.disk("da", 1, MB, SS);
    k.label(
        bob,
        "BOB",
        "bbbbbbbb-0000-1111-2222-333333333333",
        Mode::ActivePassive,
        SS,
    );
    k.load();
    k.settle();
    assert_eq!(k.geoms().len(), 2, "{:?}", k.geoms());
    let fred = k.open("multipath/FRED", 1, 1, 0).expect("open FRED");
    let bob = k.open("multipath/BOB", 1, 1, 0).expect("open BOB");
    k.console();
    (k, fred, bob)
}

/// A control call that sleeps at `point` with the class in hand (or, for the topology lock
/// and a dumpconf buffer, where it sleeps), on its own thread.
fn sleeping_control_call(point: SleepPoint) -> (sleep::Latch, std::thread::JoinHandle<()>) {
    let latch = if matches!(point, SleepPoint::Topology | SleepPoint::Sbuf) {
        sleep::arm(point)
    } else {
        sleep::arm_in_class(point)
    };
    let control = std::thread::spawn(move || match point {
        // dumpconf (a kern.geom.confxml read) growing its buffer.
        SleepPoint::Sbuf => {
            userland::conf("FRED").expect("FRED");
        }
        // `configure -A FRED` rewrites FRED's label: allocations, label I/O, topology.
        _ => {
            let reply = userland::ctl_request(userland::ctl_params(
                "configure",
                &[
                    ("active_active", 1),
                    ("active_read", 0),
                    ("active_passive", 0),
                ],
                &["FRED"],
            ));
            assert_eq!(reply.error, None, "{reply:?}");
        }
    });
    assert!(
        latch.wait_asleep(std::time::Duration::from_secs(10)),
        "the control call never slept at {point:?}"
    );
    (latch, control)
}

/// Submits a write to FRED and one to BOB while a control call sleeps at `point`, with g_up,
/// `g_mp_kt` and the event thread running; whether both were answered within five seconds.
fn io_completes_while_asleep(point: SleepPoint) -> bool {
    let (mut k, fred, bob) = two_geoms();
    let (latch, control) = sleeping_control_call(point);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads = pumps(&stop);
    let requests = [
        k.submit("multipath/FRED", KPI_BIO_WRITE, 0, vec![1; 512], None),
        k.submit("multipath/BOB", KPI_BIO_WRITE, 0, vec![2; 512], None),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut answered = false;
    while std::time::Instant::now() < deadline {
        if requests.iter().all(|&bp| k.answer(bp).is_some()) {
            answered = true;
            break;
        }
        std::thread::yield_now();
    }
    latch.release();
    control.join().expect("control call");
    wind_down(k, &stop, threads, &requests, &[fred, bob]);
    answered
}

#[test]
fn a_control_call_waiting_for_the_topology_lock_holds_nothing_the_io_path_needs() {
    // Every control method takes the topology lock before the class, and no holder of the
    // class ever waits for the topology lock: while one waits for it, I/O flows.
    assert!(io_completes_while_asleep(SleepPoint::Topology));
}

#[test]
fn a_confxml_read_sleeping_in_its_buffer_holds_nothing_the_io_path_needs() {
    // (a), dumpconf: the answer is formatted under the class and handed to the sbuf after,
    // so a kern.geom.confxml read that sleeps for its buffer parks no I/O.
    assert!(io_completes_while_asleep(SleepPoint::Sbuf));
}

/// The next request on provider `name` fails with EIO, and only that one.
fn eio_once(k: &mut Kernel, name: &str) {
    k.fault(
        name,
        Fault {
            io: Some(5),
            io_count: Some(1),
            ..Fault::default()
        },
    );
}

/// Stops the pump threads, lets the kernel settle, and ends the scenario: every request
/// answered once and forgotten, every open closed, nothing left (`finish`).
fn wind_down(
    mut k: Kernel,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    requests: &[userland::world::Handle],
    opens: &[userland::world::Handle],
) {
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in threads {
        t.join().expect("pump");
    }
    k.settle();
    for &bp in requests {
        assert_eq!(k.answer(bp).map(|a| a.delivered), Some(1), "request {bp}");
        k.forget(bp);
    }
    for &cp in opens {
        k.close(cp);
    }
    finish(k);
}

/// Runs g_up, g_mp_kt and the event thread on their own threads until `stop`.
fn pumps(stop: &std::sync::Arc<std::sync::atomic::AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    [userland::run_up, userland::run_worker, userland::run_event]
        .into_iter()
        .map(|pump| {
            let stop = std::sync::Arc::clone(stop);
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if !pump() {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect()
}

#[test]
fn a_sleeping_control_call_never_blocks_g_down_or_g_up() {
    // g_down and g_up only ever try the class: with a control call asleep in its middle
    // (label I/O, memory), a request to either geom is
    // taken off g_down at once and its completion off g_up at once.
    for point in [
        SleepPoint::LabelIo,
        SleepPoint::WaitokAlloc,
        SleepPoint::Sbuf,
    ] {
        let (mut k, fred, bob) = two_geoms();
        let (latch, control) = sleeping_control_call(point);
        let a = k.submit("multipath/FRED", KPI_BIO_READ, 0, vec![0; 512], None);
        let b = k.submit("multipath/BOB", KPI_BIO_READ, 0, vec![0; 512], None);
        while k.run_up() {}
        assert_eq!(k.queues().0, 0, "{point:?}: g_up is never held up");
        latch.release();
        control.join().expect("control call");
        k.settle();
        for bp in [a, b] {
            assert_eq!(
                k.answer(bp).map(|a| (a.error, a.delivered)),
                Some((0, 1)),
                "{point:?}"
            );
            k.forget(bp);
        }
        k.close(fred);
        k.close(bob);
        finish(k);
    }
}

#[test]
fn requests_complete_while_a_control_call_sleeps() {
    // (a): the I/O path never waits for a control call that sleeps: requests to the geom the
    // control call works on, and to another geom, complete while it sleeps.
    for point in [
        SleepPoint::LabelIo,
        SleepPoint::WaitokAlloc,
        SleepPoint::Sbuf,
    ] {
        assert!(
            io_completes_while_asleep(point),
            "{point:?}: requests waited for the sleeping control call"
        );
    }
}

#[test]
fn a_direct_attempt_that_fails_while_a_control_call_sleeps_is_judged_by_the_class_after() {
    // A request sent on FRED's direct route fails on its path while a control call sleeps
    // with the class: it waits in g_mp_kt for the class (only failures need it), which then
    // adopts the attempt, fails the path and reissues the request on the other path.
    let (mut k, fred, bob) = two_geoms();
    eio_once(&mut k, "md0");
    let (latch, control) = sleeping_control_call(SleepPoint::LabelIo);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads = pumps(&stop);
    let failing = k.submit("multipath/FRED", KPI_BIO_WRITE, 0, vec![1; 512], None);
    // BOB's requests still flow while FRED's failed attempt waits for the class.
    let other = k.submit("multipath/BOB", KPI_BIO_WRITE, 0, vec![2; 512], None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while k.answer(other).is_none() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert!(
        k.answer(other).is_some(),
        "BOB's request waited for the control call"
    );
    assert!(
        k.answer(failing).is_none(),
        "the failed attempt is the class's to judge, and the class is asleep"
    );
    latch.release();
    control.join().expect("control call");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while k.answer(failing).is_none() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(
        k.answer(failing).map(|a| a.error),
        Some(0),
        "reissued on md1 once the class is free"
    );
    assert!(
        k.console()
            .iter()
            .any(|l| l == "GEOM_MULTIPATH: Error 5, md0 in FRED marked FAIL"),
        "the class judged the direct attempt"
    );
    wind_down(k, &stop, threads, &[failing, other], &[fred, bob]);
}

#[test]
fn requests_waiting_for_the_class_hold_up_only_their_own_geom() {
    // While a control call sleeps with the class, FRED's route is revoked by an I/O error,
    // so FRED's next request waits in g_mp_kt; BOB's requests neither queue behind it nor
    // wait for the class. FRED's keep their order behind the failed one.
    let (mut k, fred, bob) = two_geoms();
    eio_once(&mut k, "md0");
    let (latch, control) = sleeping_control_call(SleepPoint::LabelIo);
    let failing = k.submit("multipath/FRED", KPI_BIO_WRITE, 0, vec![1; 512], None);
    assert!(k.run_up(), "the EIO completion");
    let behind = k.submit("multipath/FRED", KPI_BIO_WRITE, 512, vec![2; 512], None);
    assert_eq!(
        k.queues().1,
        2,
        "FRED's failure and its next request wait for the class"
    );
    let other = k.submit("multipath/BOB", KPI_BIO_WRITE, 0, vec![3; 512], None);
    assert_eq!(
        k.queues().1,
        2,
        "BOB's request does not queue behind FRED's"
    );
    assert!(k.run_up());
    assert_eq!(
        k.answer(other).map(|a| a.error),
        Some(0),
        "BOB's request is answered"
    );
    assert!(k.answer(behind).is_none() && k.answer(failing).is_none());
    latch.release();
    control.join().expect("control call");
    wind_down(
        k,
        &Default::default(),
        Vec::new(),
        &[failing, behind, other],
        &[fred, bob],
    );
}

#[test]
fn requests_sent_directly_keep_their_order() {
    // (g) on the direct route: while the class is busy, g_down sends FRED's writes to its
    // active path itself, in arrival order.
    let (mut k, _) = machine(2);
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    let cp = k.open("multipath/FRED", 1, 1, 0).expect("open");
    k.issued_offsets();
    k.issued();
    let hold = k.hold_gate();
    let bps: Vec<_> = (0..3u64)
        .map(|i| k.submit("multipath/FRED", KPI_BIO_WRITE, i * 512, vec![1; 512], None))
        .collect();
    assert_eq!(k.queues().1, 0, "nothing waits for the class");
    assert_eq!(
        k.issued_offsets(),
        [0, 512, 1024],
        "issued in arrival order"
    );
    assert_eq!(k.issued(), ["md0", "md0", "md0"], "on the active path");
    // Their completions need no class either.
    while k.run_up() {}
    for &bp in &bps {
        assert_eq!(k.answer(bp).map(|a| (a.error, a.delivered)), Some((0, 1)));
    }
    drop(hold);
    wind_down(k, &Default::default(), Vec::new(), &bps, &[cp]);
}

#[test]
fn a_path_leaves_only_once_its_direct_requests_are_back() {
    // A request sent directly is in flight on md0 when `remove FRED md0` drops md0's access:
    // the verb waits (on the route mutex, not the class) until g_up has it back.
    let (mut k, _) = machine(2);
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    let cp = k.open("multipath/FRED", 1, 1, 0).expect("open");
    let base = k.provider_state("md0").unwrap().access;
    let hold = k.hold_gate();
    let bp = k.submit("multipath/FRED", KPI_BIO_WRITE, 0, vec![1; 512], None);
    drop(hold);
    assert_eq!(k.queues().0, 1, "its completion waits in g_up");
    let control = std::thread::spawn(|| {
        let reply = userland::ctl_request(userland::ctl_params("remove", &[], &["FRED", "md0"]));
        assert_eq!(reply.error, None, "{reply:?}");
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while userland::kpi::route_sleepers() == 0 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(
        userland::kpi::route_sleepers(),
        1,
        "the verb waits for the request"
    );
    assert_eq!(
        k.provider_state("md0").unwrap().access,
        base,
        "md0 keeps its access while a request is on it"
    );
    assert!(k.run_up());
    control.join().expect("remove");
    assert_eq!(k.answer(bp).map(|a| a.error), Some(0));
    wind_down(k, &Default::default(), Vec::new(), &[bp], &[cp]);
}

#[test]
fn kproc_create_failing_fails_the_load_cleanly() {
    // (c): kproc_create at maxproc: kldload fails with its errno, no panic, nothing left.
    let mut k = Kernel::boot();
    k.disk("md", 2, MB, SS);
    k.fail_kproc(35);
    assert_eq!(k.try_load(), Err(35));
    assert_eq!(k.lifecycle(), ["setup"]);
    k.settle();
    assert!(k.geoms().is_empty());
    k.check();
    assert_eq!(k.malloc().live_blocks, 0);
    // The next attempt loads.
    k.fail_kproc(0);
    k.load();
    finish(k);
}

#[test]
fn unload_drains_g_mp_kt_before_fini_and_cancels_events_last() {
    // (b): g_mp_kt stops after draining, the class goes, and only then are its events
    // cancelled; nothing calls into the module afterwards, nothing is stranded, no leak.
    let (mut k, _) = machine(2);
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    let cp = k.open("multipath/FRED", 1, 1, 0).expect("open");
    eio_once(&mut k, "md0");
    let bp = k.submit("multipath/FRED", KPI_BIO_WRITE, 0, vec![7; 512], None);
    k.settle();
    assert_eq!(k.answer(bp).map(|a| (a.error, a.delivered)), Some((0, 1)));
    k.forget(bp);
    k.close(cp);
    k.pull("md1");
    assert_eq!(k.ctl("stop", &[], &["FRED"]), ok());
    assert_eq!(k.unload(), Ok(()));
    let life = k.lifecycle();
    let at = |what: &str| life.iter().position(|s| *s == what).expect(what);
    assert!(
        at("fini") < at("worker_stop") && at("worker_stop") < at("cancel_events"),
        "g_mp_kt stops inside fini, before the class's events are cancelled: {life:?}"
    );
    assert_eq!(life.last(), Some(&"teardown"), "{life:?}");
    k.check();
    assert_eq!(k.malloc().live_blocks, 0, "{:?}", k.malloc());
}

#[test]
fn a_close_never_fails_even_when_it_reenters_the_class() {
    // (d): GEOM asserts that closes succeed. A close arriving on the thread that holds the
    // class is applied at the next control method's entry instead of failing with EDEADLK.
    let (mut k, _) = machine(2);
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    let base = k.provider_state("md0").unwrap().access;
    let cp = k.open("multipath/FRED", 1, 0, 0).expect("open");
    let other = k.open("multipath/FRED", 1, 0, 0).expect("open");
    assert_eq!(k.provider_state("md0").unwrap().access.0, base.0 + 2);
    let hold = k.hold_gate();
    k.close(cp); // asserts that g_access returned 0
    drop(hold);
    // g_mp_kt enters the class without the topology lock: it leaves the close alone (a
    // g_access there would break GEOM's rule, which `finish` checks).
    eio_once(&mut k, "md0");
    let bp = k.submit("multipath/FRED", KPI_BIO_READ, 0, vec![0; 512], None);
    assert!(k.run_up());
    assert!(k.run_worker(), "the EIO completion is g_mp_kt's");
    assert_eq!(
        k.provider_state("md1").unwrap().access.0,
        base.0 + 2,
        "the deferred close is not applied by g_mp_kt"
    );
    k.settle();
    assert_eq!(k.answer(bp).map(|a| (a.error, a.delivered)), Some((0, 1)));
    k.forget(bp);
    k.conf("FRED").expect("FRED"); // the next control method's entry into the class
    assert_eq!(k.provider_state("md0").unwrap().access.0, base.0 + 1);
    assert_eq!(k.provider_state("md1").unwrap().access.0, base.0 + 1);
    k.close(other);
    assert_eq!(k.provider_state("md1").unwrap().access, base);
    finish(k);
}

#[test]
fn the_fast_path_allocates_only_the_fallible_request_state() {
    let (mut k, _) = machine(2);
    assert_eq!(
        create(&mut k, &[("active_active", 1)], &["md0", "md1"]),
        ok()
    );
    read_bytes(&mut k, 0, 512); // warm up
    memory::reset_counters();
    for i in 0..16 {
        read_bytes(&mut k, i * 512, 512);
    }
    let m = k.malloc();
    assert_eq!(
        m.total_blocks, 16,
        "one state per request, nothing else: {m:?}"
    );
    assert_eq!(m.nowait_blocks, 16, "all M_NOWAIT: {m:?}");
    finish(k);
}

#[test]
fn enomem_on_the_data_path_fails_the_request_not_the_kernel() {
    let (mut k, _) = machine(2);
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    k.console();
    // No memory for the request's state.
    memory::fail_nowait(1);
    let a = read_bytes(&mut k, 0, 512);
    assert_eq!((a.error, a.delivered), (12, 1));
    // g_clone_bio fails.
    k.fail_clones(1);
    let a = read_bytes(&mut k, 0, 512);
    assert_eq!((a.error, a.delivered), (12, 1));
    // The clone for a reissue fails: the request ends with ENOMEM, once.
    eio_once(&mut k, "md0");
    let bp = k.submit("multipath/FRED", KPI_BIO_READ, 0, vec![0; 512], None);
    assert!(k.run_up());
    k.fail_clones(1);
    k.settle();
    let a = k.answer(bp).unwrap();
    assert_eq!((a.error, a.delivered), (12, 1));
    k.forget(bp);
    // Nothing is stuck: the next request goes through.
    assert_eq!(read_bytes(&mut k, 0, 512).error, 0);
    assert!(k.console().iter().all(|l| !l.contains("panic")));
    finish(k);
}

#[test]
fn an_orphaned_idle_path_is_detached_at_once() {
    let (mut k, _) = machine(2);
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    k.console();
    k.probes();
    k.pull("md0");
    k.settle();
    assert_eq!(
        k.console(),
        [
            "GEOM_MULTIPATH: md0 in FRED was disconnected",
            "GEOM_MULTIPATH: md1 is now active path in FRED",
            "GEOM_MULTIPATH: md0 removed from FRED",
        ]
    );
    assert_eq!(
        k.probes(),
        ["config:disconnect(FRED,md0)", "config:remove(FRED,md0)"]
    );
    let conf = k.conf("FRED").unwrap();
    assert_eq!(conf.paths.len(), 1);
    assert_eq!(read_bytes(&mut k, 0, 512).error, 0);
    finish(k);
}

#[test]
fn an_orphaned_busy_path_is_detached_after_its_last_request() {
    let (mut k, _) = machine(2);
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    k.fault(
        "md0",
        Fault {
            hold: true,
            ..Fault::default()
        },
    );
    let bp = k.submit("multipath/FRED", KPI_BIO_READ, 0, vec![0; 512], None);
    k.console();
    k.pull("md0");
    k.settle();
    assert_eq!(
        k.console(),
        [
            "GEOM_MULTIPATH: md0 in FRED was disconnected",
            "GEOM_MULTIPATH: md1 is now active path in FRED",
        ]
    );
    assert_eq!(k.conf("FRED").unwrap().paths.len(), 2, "still attached");
    k.release("md0");
    assert!(k.run_up());
    assert_eq!(
        k.queues().1,
        1,
        "a completion on a LOST path goes to g_mp_kt"
    );
    k.settle();
    assert_eq!(k.console(), ["GEOM_MULTIPATH: md0 removed from FRED"]);
    assert_eq!(k.answer(bp).unwrap().delivered, 1);
    k.forget(bp);
    assert_eq!(k.conf("FRED").unwrap().paths.len(), 1);
    finish(k);
}

#[test]
fn losing_the_last_path_destroys_the_geom() {
    let (mut k, _) = machine(1);
    assert_eq!(create(&mut k, &[], &["md0"]), ok());
    k.console();
    k.pull("md0");
    k.settle();
    assert_eq!(
        k.console(),
        [
            "GEOM_MULTIPATH: md0 in FRED was disconnected",
            "GEOM_MULTIPATH: out of providers for FRED",
            "GEOM_MULTIPATH: md0 removed from FRED",
            "GEOM_MULTIPATH: destroying FRED",
            "GEOM_MULTIPATH: FRED destroyed",
        ]
    );
    assert!(!k.has_provider("multipath/FRED"));
    finish(k);
}

#[test]
fn dumpconf_writes_freebsds_config() {
    let (mut k, _) = machine(2);
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    let conf = k.conf("FRED").unwrap();
    assert_eq!(
        conf.geom,
        "\t<State>OPTIMAL</State>\n\t<UUID></UUID>\n\t<Mode>Active/Passive</Mode>\n\t<Type>MANUAL</Type>\n"
    );
    assert_eq!(
        conf.paths,
        [
            (
                String::from("md1"),
                String::from("\t    <State>PASSIVE</State>\n")
            ),
            (
                String::from("md0"),
                String::from("\t    <State>ACTIVE</State>\n")
            ),
        ]
    );
    assert_eq!(conf.provider, "\t    <State>OPTIMAL</State>\n");
    assert_eq!(k.ctl("fail", &[], &["FRED", "md0"]), ok());
    let conf = k.conf("FRED").unwrap();
    assert!(conf.geom.starts_with("\t<State>DEGRADED</State>\n"));
    assert_eq!(conf.paths[1].1, "\t    <State>FAIL</State>\n");
    assert_eq!(conf.paths[0].1, "\t    <State>ACTIVE</State>\n");
    finish(k);
}

#[test]
fn every_verb_copies_back_freebsds_first_error() {
    let (mut k, disk) = machine(3);
    let small = k.disk("sm", 1, MB / 2, SS);
    let wide = k.disk("ws", 1, MB, 4096);
    k.settle();
    let _ = (disk, small, wide);
    assert_eq!(k.ctl("frob", &[], &[]), err("Unknown verb frob"));
    assert_eq!(create(&mut k, &[], &[]), err("wrong number of arguments."));
    assert_eq!(
        create(&mut k, &[], &["md9"]),
        err("Provider md9 is invalid")
    );
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    assert_eq!(
        create(&mut k, &[], &["md2"]),
        err("Device FRED already exist")
    );
    assert_eq!(
        k.ctl("add", &[], &["NOPE", "md2"]),
        err("Device NOPE not found")
    );
    assert_eq!(k.ctl("add", &[], &["FRED"]), err("No 'arg1' argument"));
    assert_eq!(
        k.ctl("add", &[], &["FRED", "md0"]),
        err("provider md0 is already there")
    );
    assert_eq!(
        k.ctl("add", &[], &["FRED", "sm0"]),
        err("Providers size mismatch 1048576 != 524288")
    );
    assert_eq!(
        k.ctl("add", &[], &["FRED", "ws0"]),
        err("Providers sectorsize mismatch 512 != 4096")
    );
    assert_eq!(
        k.ctl("remove", &[], &["FRED", "md9"]),
        err("Provider md9 not found")
    );
    assert_eq!(
        k.ctl("fail", &[], &["NOPE", "md0"]),
        err("Device NOPE not found")
    );
    assert_eq!(
        k.ctl("restore", &[], &["FRED", "md9"]),
        err("Provider md9 not found")
    );
    for verb in ["rotate", "getactive", "configure", "stop", "destroy"] {
        assert_eq!(
            k.ctl(verb, &[], &["NOPE"]),
            err("Device NOPE is invalid"),
            "{verb}"
        );
    }
    assert_eq!(k.ctl("prefer", &[], &["FRED"]), err("missing device"));
    assert_eq!(
        k.ctl("prefer", &[], &["FRED", "md9"]),
        err("Provider md9 not found")
    );
    assert_eq!(k.ctl("fail", &[], &["FRED", "md0"]), ok());
    assert_eq!(
        k.ctl("prefer", &[], &["FRED", "md0"]),
        err("Consumer md0 is invalid")
    );
    assert_eq!(k.ctl("restore", &[], &["FRED", "md0"]), ok());
    assert_eq!(k.ctl("prefer", &[], &["FRED", "/dev/md0"]), ok());
    // A path someone else holds for writing: the attach's access fails with EPERM.
    let user = k.open("md2", 0, 1, 0).expect("open md2");
    assert_eq!(
        k.ctl("add", &[], &["FRED", "md2"]),
        err("Provider addition error: 1")
    );
    k.close(user);
    // Version checks come first.
    let mut bad = vec![
        userland::param_ascii("class", "MULTIPATH"),
        userland::param_ascii("verb", "rotate"),
        userland::param_raw("version", &2u32.to_ne_bytes()),
    ];
    assert_eq!(
        k.ctl_params(bad.clone()),
        err("Userland and kernel parts are out of sync")
    );
    bad.pop();
    assert_eq!(k.ctl_params(bad), err("Missing version argument"));
    // Only the first error is copied back.
    assert_eq!(k.ctl("add", &[], &["NOPE"]), err("Device NOPE not found"));
    finish(k);
}

#[test]
fn metadata_errors_come_back_with_their_errno() {
    let mut k = Kernel::boot();
    let disk = k.disk("md", 2, MB, SS);
    k.label(disk, "FRED", UUID, Mode::ActivePassive, SS);
    k.load();
    k.settle();
    k.fault(
        "md0",
        Fault {
            data: Some(5),
            ..Fault::default()
        },
    );
    assert_eq!(
        k.ctl(
            "configure",
            &[
                ("active_active", 1),
                ("active_read", 0),
                ("active_passive", 0)
            ],
            &["FRED"]
        ),
        err("Can't update metadata on md0 (5)")
    );
    assert_eq!(
        k.ctl("destroy", &[], &["FRED"]),
        err("Can't erase metadata on md0 (5)")
    );
    assert!(
        !k.has_provider("multipath/FRED"),
        "destroy goes on regardless"
    );
    finish(k);
}

#[test]
fn configure_rewrites_and_destroy_erases_the_label() {
    let mut k = Kernel::boot();
    let disk = k.disk("md", 2, MB, SS);
    k.label(disk, "FRED", UUID, Mode::ActivePassive, SS);
    k.load();
    k.settle();
    assert_eq!(
        k.ctl(
            "configure",
            &[
                ("active_active", 1),
                ("active_read", 0),
                ("active_passive", 0)
            ],
            &["FRED"]
        ),
        ok()
    );
    let md = geom_multipath::metadata::decode(&k.last_sector(disk, SS)).expect("label");
    assert_eq!(md.mode, Mode::ActiveActive);
    assert_eq!(k.ctl("getactive", &[], &["FRED"]), out("md1 md0\n"));
    k.console();
    assert_eq!(k.ctl("destroy", &[], &["FRED"]), ok());
    assert!(k.last_sector(disk, SS).iter().all(|&b| b == 0));
    let console = k.console();
    assert_eq!(
        console.first().map(String::as_str),
        Some("GEOM_MULTIPATH: destroying FRED")
    );
    assert_eq!(
        console.last().map(String::as_str),
        Some("GEOM_MULTIPATH: FRED destroyed")
    );
    finish(k);
}

#[test]
fn remove_rotate_and_stop() {
    let (mut k, _) = machine(3);
    assert_eq!(create(&mut k, &[], &["md0", "md1", "md2"]), ok());
    k.console();
    assert_eq!(k.ctl("rotate", &[], &["FRED"]), ok());
    assert_eq!(k.ctl("getactive", &[], &["FRED"]), out("md2\n"));
    assert_eq!(k.ctl("remove", &[], &["FRED", "md1"]), ok());
    k.settle();
    assert_eq!(
        k.console(),
        [
            "GEOM_MULTIPATH: md2 is now active path in FRED",
            "GEOM_MULTIPATH: removing md1 from FRED",
            "GEOM_MULTIPATH: md1 removed from FRED",
        ]
    );
    // The write-close of a path re-posts its detach behind GEOM's re-taste; md1 is free again.
    assert_eq!(k.provider_state("md1").unwrap().access, (0, 0, 0));
    assert_eq!(k.ctl("stop", &[], &["FRED"]), ok());
    assert!(!k.has_provider("multipath/FRED"));
    finish(k);
}

#[test]
fn destroy_while_open_waits_for_the_last_close() {
    let (mut k, _) = machine(2);
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    let user = k.open("multipath/FRED", 1, 1, 0).expect("open");
    assert_eq!(k.provider_state("md0").unwrap().access, (2, 2, 1));
    assert_eq!(k.unload(), Err(16), "nothing unloads while a geom is open");
    k.console();
    assert_eq!(k.ctl("stop", &[], &["FRED"]), ok());
    assert_eq!(k.console(), ["GEOM_MULTIPATH: destroying FRED"]);
    // Withered: new requests fail at once.
    let bp = k.submit("multipath/FRED", KPI_BIO_READ, 0, vec![0; 512], None);
    assert_eq!(k.answer(bp).unwrap().error, 6);
    k.forget(bp);
    k.close(user);
    let console = k.console();
    assert_eq!(
        console.last().map(String::as_str),
        Some("GEOM_MULTIPATH: FRED destroyed")
    );
    finish(k);
}

#[test]
fn unload_destroys_idle_geoms_when_paths_are_not_held() {
    let (mut k, _) = machine(2);
    assert_eq!(geom_multipath_kmod::tunables::set(1, 0), Ok(()));
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    assert_eq!(
        k.provider_state("md0").unwrap().access,
        (0, 0, 0),
        "exclusive=0"
    );
    k.console();
    assert_eq!(k.unload(), Ok(()));
    assert_eq!(
        k.console(),
        [
            "GEOM_MULTIPATH: destroying FRED",
            "GEOM_MULTIPATH: md1 removed from FRED",
            "GEOM_MULTIPATH: md0 removed from FRED",
            "GEOM_MULTIPATH: FRED destroyed",
        ]
    );
    k.check();
    assert_eq!(k.malloc().live_blocks, 0);
}

#[test]
fn unload_is_refused_while_exclusive_paths_are_held() {
    let (mut k, _) = machine(2);
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    assert_eq!(k.unload(), Err(16));
    assert_eq!(k.ctl("stop", &[], &["FRED"]), ok());
    finish(k);
}

#[test]
fn a_resized_path_resizes_the_provider() {
    let (mut k, _) = machine(2);
    assert_eq!(create(&mut k, &[], &["md0", "md1"]), ok());
    k.console();
    k.resize_provider("md0", MB / 2);
    k.settle();
    assert_eq!(
        k.console(),
        ["GEOM_MULTIPATH: FRED size changed from 1048576 to 524288"]
    );
    assert_eq!(
        k.provider_state("multipath/FRED").unwrap().mediasize,
        MB / 2
    );
    finish(k);
}

#[test]
fn a_multipath_provider_as_a_path_is_refused_not_deadlocked() {
    // With exclusive=1 the attach's open would re-enter the class; with exclusive=0 the
    // access change at attach is (0,0,0), and the outer geom could then be neither opened
    // nor configured. Either way the class's own provider is refused at attach.
    for exclusive in [1, 0] {
        let (mut k, _) = machine(1);
        geom_multipath_kmod::tunables::set(1, exclusive).unwrap();
        assert_eq!(create(&mut k, &[], &["md0"]), ok());
        k.console();
        let reply = k.ctl(
            "create",
            &[("active_active", 0), ("active_read", 0)],
            &["BOB", "multipath/FRED"],
        );
        assert_eq!(
            reply,
            err("Provider addition error: 11"),
            "exclusive={exclusive}"
        );
        let console = k.console();
        assert!(
            console.contains(&String::from(
                "GEOM_MULTIPATH: cannot attach multipath/FRED to BOB"
            )),
            "exclusive={exclusive}: {console:#?}"
        );
        assert_eq!(
            k.provider_state("multipath/FRED").map(|p| p.access),
            Some((0, 0, 0)),
            "exclusive={exclusive}: nothing holds FRED"
        );
        // Nor through another class stacked on it (gnop over multipath/FRED).
        k.stacked("FRED.nop", "multipath/FRED");
        k.settle();
        let reply = k.ctl(
            "create",
            &[("active_active", 0), ("active_read", 0)],
            &["BOB", "FRED.nop"],
        );
        assert_eq!(
            reply,
            err("Provider addition error: 11"),
            "exclusive={exclusive}"
        );
        assert!(
            k.console().contains(&String::from(
                "GEOM_MULTIPATH: cannot attach FRED.nop to BOB"
            )),
            "exclusive={exclusive}"
        );
        k.unstack("FRED.nop");
        // FRED itself is untouched: it opens and carries I/O.
        let cp = k.open("multipath/FRED", 1, 1, 0).expect("open FRED");
        assert_eq!(write_bytes(&mut k, 0, 0x5a, 512).error, 0);
        k.close(cp);
        finish(k);
    }
}

#[test]
fn the_knobs_are_checked_against_the_table() {
    let _k = Kernel::boot();
    use geom_multipath_kmod::tunables;
    assert_eq!(tunables::get(0), Some(0), "debug");
    assert_eq!(tunables::get(1), Some(1), "exclusive");
    assert_eq!(tunables::get(2), Some(0), "io_timeout");
    assert_eq!(tunables::get(3), Some(0), "check_interval: off, as FreeBSD");
    assert_eq!(tunables::get(8), Some(0), "queue_timeout: off, as FreeBSD");
    let rows = geom_multipath::sysctl::TABLE.len() as u32;
    assert_eq!(tunables::get(rows), None);
    assert_eq!(tunables::set(2, 86_400), Ok(()));
    assert_eq!(tunables::set(2, 86_401), Err(geom_multipath::Errno::EINVAL));
    assert_eq!(
        tunables::set(4, 2),
        Err(geom_multipath::Errno::EINVAL),
        "reinstate 0-1"
    );
    assert_eq!(tunables::set(rows, 1), Err(geom_multipath::Errno::EINVAL));
    assert_eq!(tunables::get(2), Some(86_400));
}

#[test]
fn debug_adds_the_taste_chatter() {
    let mut k = Kernel::boot();
    assert_eq!(geom_multipath_kmod::tunables::set(0, 1), Ok(()));
    let disk = k.disk("md", 1, MB, SS);
    k.disk("xx", 1, MB, SS);
    k.label(disk, "FRED", UUID, Mode::ActivePassive, SS);
    k.load();
    k.settle();
    let console = k.console();
    assert!(
        console.contains(&String::from("xx0 is not MULTIPATH")),
        "{console:#?}"
    );
    assert!(console.contains(&format!("MULTIPATH: FRED/{UUID}")));
    finish(k);
}

#[test]
fn g_up_g_mp_kt_and_the_event_thread_run_concurrently_with_control_requests() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let (mut k, _) = machine(3);
    assert_eq!(
        create(&mut k, &[("active_active", 1)], &["md0", "md1", "md2"]),
        ok()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = [userland::run_up, userland::run_worker, userland::run_event]
        .into_iter()
        .map(|pump| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if !pump() {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    // md0 takes short I/O faults and md1 is failed and restored by hand while
    // the pumps run; md2 is never touched, so every failover has somewhere to
    // go whatever the interleaving and each request must end in success.
    let mut requests = Vec::new();
    for round in 0..200u64 {
        match round % 10 {
            1 => assert_eq!(k.ctl("fail", &[], &["FRED", "md1"]), ok()),
            3 => {
                k.fault(
                    "md0",
                    Fault {
                        io: Some(5),
                        io_count: Some(2),
                        ..Fault::default()
                    },
                );
            }
            6 => assert_eq!(k.ctl("restore", &[], &["FRED", "md0"]), ok()),
            8 => assert_eq!(k.ctl("rotate", &[], &["FRED"]), ok()),
            9 => assert_eq!(k.ctl("restore", &[], &["FRED", "md1"]), ok()),
            _ => {}
        }
        let cmd = if round % 2 == 0 {
            KPI_BIO_READ
        } else {
            KPI_BIO_WRITE
        };
        requests.push(k.submit(
            "multipath/FRED",
            cmd,
            (round % 64) * 512,
            vec![0; 512],
            None,
        ));
    }
    k.settle();
    // Wait for the last answers the pumps are still carrying home.
    for _ in 0..10_000 {
        if requests.iter().all(|&bp| k.answer(bp).is_some()) && k.queues() == (0, 0, 0) {
            break;
        }
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    eprintln!(
        "the data path found the class busy {} times",
        userland::kpi::gate_busy_count()
    );
    for t in threads {
        t.join().expect("pump thread");
    }
    k.settle();
    for bp in requests {
        let a = k.answer(bp).expect("every request is answered");
        assert_eq!(a.delivered, 1);
        assert_eq!(
            a.error, 0,
            "with three paths and short faults, every request succeeds"
        );
        k.forget(bp);
    }
    finish(k);
}

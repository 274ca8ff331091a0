//! Property tests over the simulated fabric: random sequences of submissions, completions
//! (success, EIO, ENXIO, ENOSPC, hang and release), verbs (fail, restore, rotate, prefer,
//! add, remove) and providers vanishing and coming back, on 1 to 5 paths in every mode and
//! both assemblies. The fabric checks its invariants after every operation; each case ends
//! by letting every provider answer and asserting exactly-once delivery and nothing in
//! flight.
//!
//! The runs are seeded (a fixed RNG seed), so `cargo test` replays the same cases every
//! time; a failure is also saved under `proptest-regressions/props.txt` and replayed first.

mod fabric;

use fabric::{set_outcome, Action, Assembly, Fabric, Outcome, MS};
use geom_multipath::sysctl::Knob;
use geom_multipath::{Errno, Mode, Op};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngSeed};

/// One thing that can happen to the fabric. Provider indices are taken modulo the
/// providers known so far (`md0`… plus any added).
#[derive(Clone, Debug)]
enum Step {
    Submit(Op),
    /// Process the next event in virtual time (completions follow the providers' outcomes).
    Advance,
    /// Complete the attempt due next with this result, whatever its provider would say.
    CompleteNext(Result<(), Errno>),
    SetOutcome(usize, Outcome),
    Fail(usize),
    Restore(usize),
    Rotate,
    Prefer(usize),
    AddNew,
    Remove(usize),
    Vanish(usize),
    Return(usize),
    /// Let virtual time pass (timers run: probes, holds, failback, queue timeouts).
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Read),
        3 => Just(Op::Write),
        1 => Just(Op::Delete),
        1 => Just(Op::Flush),
        1 => any::<bool>().prop_map(|physpath| Op::GetAttr { physpath }),
    ]
}

fn result() -> impl Strategy<Value = Result<(), Errno>> {
    prop_oneof![
        4 => Just(Ok(())),
        2 => Just(Err(Errno::EIO)),
        1 => Just(Err(Errno::ENXIO)),
        1 => Just(Err(Errno::ENOSPC)),
    ]
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        3 => Just(Outcome::Answer),
        2 => Just(Outcome::Fail(Errno::EIO)),
        1 => Just(Outcome::Fail(Errno::ENXIO)),
        1 => Just(Outcome::Fail(Errno::ENOSPC)),
        2 => Just(Outcome::Hang),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let provider = 0..8usize;
    prop_oneof![
        6 => op().prop_map(Step::Submit),
        6 => Just(Step::Advance),
        4 => result().prop_map(Step::CompleteNext),
        3 => (provider.clone(), outcome()).prop_map(|(p, o)| Step::SetOutcome(p, o)),
        1 => provider.clone().prop_map(Step::Fail),
        1 => provider.clone().prop_map(Step::Restore),
        1 => Just(Step::Rotate),
        1 => provider.clone().prop_map(Step::Prefer),
        1 => Just(Step::AddNew),
        1 => provider.clone().prop_map(Step::Remove),
        1 => provider.clone().prop_map(Step::Vanish),
        1 => provider.prop_map(Step::Return),
    ]
}

/// The steps of [`step`], plus time passing, for the extensions.
fn step_with_time() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => step(),
        2 => (1..4000u64).prop_map(Step::Wait),
    ]
}

/// Every extension's knobs, each possibly off.
#[derive(Clone, Debug)]
struct Extensions {
    check_interval: u32,
    reinstate: bool,
    flap: (u32, u32, u32),
    queue_timeout: u32,
    queue_max: (u32, u32),
    failback: &'static str,
    selector: &'static str,
}

fn extensions() -> impl Strategy<Value = Extensions> {
    (
        (0..=3u32, any::<bool>()),
        (0..=3u32, 1..=20u32, 0..=10u32),
        (0..=5u32, 1..=4u32, 1..=16u32),
        prop_oneof![Just("manual"), Just("immediate"), Just("deferred:2")],
        prop_oneof![
            Just("least-busy"),
            Just("round-robin:1"),
            Just("round-robin:3"),
            Just("service-time")
        ],
    )
        .prop_map(
            |((ci, re), flap, (qt, qr, qk), failback, selector)| Extensions {
                check_interval: ci,
                reinstate: re,
                flap,
                queue_timeout: qt,
                queue_max: (qr, qk),
                failback,
                selector,
            },
        )
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::ActivePassive),
        Just(Mode::ActiveActive),
        Just(Mode::ActiveRead),
    ]
}

fn assembly() -> impl Strategy<Value = Assembly> {
    prop_oneof![Just(Assembly::Create), Just(Assembly::Label)]
}

/// Runs one case: build, apply every step with the invariants checked after each, finish.
fn run(paths: usize, mode: Mode, assembly: Assembly, steps: &[Step]) {
    run_with(Fabric::build(paths, mode, assembly), paths, steps);
}

/// Runs one case with the extensions configured (the tunables for anti-flap and the queue
/// bounds, `configure` for the rest).
fn run_extended(paths: usize, mode: Mode, assembly: Assembly, x: &Extensions, steps: &[Step]) {
    let mut f = Fabric::build(paths, mode, assembly);
    f.set_tunable(Knob::FlapThreshold, x.flap.0);
    f.set_tunable(Knob::FlapWindow, x.flap.1);
    f.set_tunable(Knob::FlapHold, x.flap.2);
    f.set_tunable(Knob::QueueMaxRequests, x.queue_max.0);
    f.set_tunable(Knob::QueueMaxKbytes, x.queue_max.1);
    let (ci, re, qt) = (
        x.check_interval.to_string(),
        u8::from(x.reinstate).to_string(),
        x.queue_timeout.to_string(),
    );
    let reply = f.configure(&[
        ("check_interval", &ci),
        ("reinstate", &re),
        ("queue_timeout", &qt),
        ("failback", x.failback),
        ("selector", x.selector),
    ]);
    assert_eq!(reply.error, "");
    run_with(f, paths, steps);
}

/// [`run`] on a fabric made by the caller (with tunables set).
fn run_with(mut f: Fabric, paths: usize, steps: &[Step]) {
    let mut providers: Vec<String> = (0..paths).map(|i| format!("md{i}")).collect();
    for step in steps {
        let name = |i: usize| providers[i % providers.len()].clone();
        match step {
            Step::Submit(op) => {
                f.submit(*op, 0, 4096);
            }
            Step::Advance => {
                f.step();
            }
            Step::CompleteNext(result) => {
                f.complete_next_with(*result);
            }
            Step::SetOutcome(i, outcome) => f.apply(set_outcome(&name(*i), *outcome)),
            Step::Fail(i) => {
                f.verb("fail", &[&name(*i)]);
            }
            Step::Restore(i) => {
                f.verb("restore", &[&name(*i)]);
            }
            Step::Rotate => {
                f.verb("rotate", &[]);
            }
            Step::Prefer(i) => {
                f.verb("prefer", &[&name(*i)]);
            }
            Step::AddNew => {
                let new = format!("md{}", providers.len());
                f.apply(Action::NewProvider(new.clone()));
                providers.push(new);
            }
            Step::Remove(i) => {
                f.verb("remove", &[&name(*i)]);
            }
            Step::Vanish(i) => f.apply(Action::Vanish(name(*i))),
            Step::Return(i) => f.apply(Action::Return(name(*i))),
            Step::Wait(ms) => f.drive_until(f.now() + ms * MS),
        }
    }
    f.finish(100_000);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        rng_seed: RngSeed::Fixed(0x6d75_6c74_6970_6174),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/props.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_keep_every_invariant(
        paths in 1..=5usize,
        mode in mode(),
        assembly in assembly(),
        steps in prop::collection::vec(step(), 1..80),
    ) {
        run(paths, mode, assembly, &steps);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 500,
        rng_seed: RngSeed::Fixed(0x6578_7465_6e73_696f),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/props.txt",
        ))),
        ..ProptestConfig::default()
    })]

    /// The same random operations with time passing and every extension of issue 12 set at
    /// random (each possibly off). Beyond the fabric's invariants, it checks after every
    /// step: a path is reinstated only after a good probe, never one the admin failed, and
    /// at once only below the anti-flap threshold; the queue stays within its bounds; every
    /// waiting request ends within its `queue_timeout` plus one tick; admin-failed paths
    /// stay failed; one probe at most per path.
    #[test]
    fn extensions_keep_every_invariant(
        paths in 1..=4usize,
        mode in mode(),
        assembly in assembly(),
        x in extensions(),
        steps in prop::collection::vec(step_with_time(), 1..80),
    ) {
        run_extended(paths, mode, assembly, &x, &steps);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        rng_seed: RngSeed::Fixed(0x6661_696c_6c6f_6f70),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/props.txt",
        ))),
        ..ProptestConfig::default()
    })]

    /// Only failures and submissions: every request ends, in error only after trying paths,
    /// never more often than the geom had paths (the fabric checks the bound and PR 178473's
    /// restore count as each request is delivered).
    #[test]
    fn failing_paths_never_loop(
        paths in 1..=5usize,
        mode in mode(),
        failing in prop::collection::vec(any::<bool>(), 5),
        submissions in 1..20usize,
    ) {
        let mut f = Fabric::create(paths, mode);
        for (i, &fails) in failing.iter().enumerate().take(paths) {
            if fails {
                f.apply(set_outcome(&format!("md{i}"), Outcome::Fail(Errno::EIO)));
            }
        }
        for k in 0..submissions {
            f.submit(if k % 2 == 0 { Op::Read } else { Op::Write }, 0, 512);
        }
        f.drive_bounded(10 * submissions as u64 * paths as u64);
        let all_fail = failing.iter().take(paths).all(|&x| x);
        for d in f.deliveries().values() {
            prop_assert!(d.route.len() <= paths);
            if all_fail {
                prop_assert_eq!(d.result, Err(Errno::EIO));
            } else if d.result.is_err() {
                // Only a request whose every attempt landed on a failing path may fail.
                let only_failing = d.route.iter().all(|p| {
                    let i: usize = p[2..].parse().unwrap();
                    failing[i]
                });
                prop_assert!(only_failing, "{:?}", d);
            }
        }
        f.finish(100);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 500,
        rng_seed: RngSeed::Fixed(0x7374_616c_6500_0003),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/props.txt",
        ))),
        ..ProptestConfig::default()
    })]

    /// Issue 11 item 3: with the I/O deadline on, hung providers, failures, verbs and
    /// providers coming and going, every request still ends exactly once, and no
    /// acknowledged write is ever followed by an older copy of the same range landing (the
    /// fabric checks each copy as it lands, abandoned ones included; every request here
    /// writes the same 4 KiB).
    #[test]
    fn io_deadlines_never_let_a_stale_write_land_over_an_acknowledged_one(
        paths in 1..=5usize,
        mode in mode(),
        assembly in assembly(),
        secs in 1..=3u32,
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let mut f = Fabric::build(paths, mode, assembly);
        f.class
            .tunables_mut()
            .set(geom_multipath::sysctl::Knob::IoTimeout, secs)
            .expect("in range");
        run_with(f, paths, &steps);
    }
}

//! Scenarios for the extensions beyond FreeBSD (issue 12), on the simulated fabric: the path
//! checker finds a dead PASSIVE path; reinstatement after a good probe (never of an
//! admin-failed path); the anti-flap hold; failback manual, immediate and deferred; bounded
//! queueing when every path is down for less and for more than `queue_timeout`, destroy and
//! `configure` to 0 while requests wait, a full queue; the round-robin and service-time
//! selectors; and the settings as `configure` takes them and dumpconf shows them. The
//! fabric checks its invariants (including the extensions') after every step.

mod fabric;

use fabric::{set_outcome, Action, Assembly, Fabric, Outcome, DEFAULT_LATENCY, MS, SEC, TICK, US};
use geom_multipath::sysctl::Knob;
use geom_multipath::{Errno, Mode, Op, PathState, Selector};

const READ: Op = Op::Read;
const WRITE: Op = Op::Write;

fn has(messages: &[String], text: &str) -> bool {
    messages.iter().any(|m| m == text)
}

/// A two-path Active/Passive geom with the checker every `interval` seconds and
/// reinstatement as given.
fn checked(interval: &str, reinstate: &str) -> Fabric {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    let reply = f.configure(&[("check_interval", interval), ("reinstate", reinstate)]);
    assert_eq!(reply.error, "");
    f
}

// ----- defaults are FreeBSD's ------------------------------------------------------------

#[test]
fn with_every_extension_off_nothing_is_probed_timed_or_queued() {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    assert_eq!(f.class.poll_timeout(), None, "FreeBSD has no timers");
    every_path_gone(&mut f);
    let t = f.submit(WRITE, 0, 4096);
    assert_eq!(
        f.delivery(t).unwrap().result,
        Err(Errno::ENXIO),
        "ENXIO at once"
    );
    f.drive_until(600 * SEC);
    assert!(f.probed().is_empty());
    assert_eq!(f.class.poll_timeout(), None);
}

// ----- the checker and reinstatement ------------------------------------------------------

#[test]
fn checker_finds_a_dead_passive_path_within_one_interval() {
    let mut f = checked("5", "0");
    assert_eq!(f.active().as_deref(), Some("md0"));
    f.fail_from("md1", SEC, Errno::EIO);
    f.drive_until(5 * SEC - 1);
    assert_eq!(f.state_of("md1"), "PASSIVE", "not probed yet");
    f.drive_until(5 * SEC + 10 * MS);
    assert_eq!(f.state_of("md1"), "FAIL");
    assert!(has(
        &f.take_messages(),
        "GEOM_MULTIPATH: Error 5, md1 in FRED marked FAIL"
    ));
    assert_eq!(
        f.active().as_deref(),
        Some("md0"),
        "the active path is untouched"
    );
    // Both paths are probed every round, one block each (the fabric checks the size).
    let at_five: Vec<_> = f.probed().iter().filter(|(t, _)| *t == 5 * SEC).collect();
    assert_eq!(at_five.len(), 2);
}

#[test]
fn a_healed_path_is_reinstated_by_the_next_good_probe() {
    let mut f = checked("5", "1");
    f.fail_from("md1", SEC, Errno::EIO);
    f.drive_until(6 * SEC);
    assert_eq!(f.state_of("md1"), "FAIL");
    f.take_messages();
    let healed = 7 * SEC;
    f.at(healed, set_outcome("md1", Outcome::Answer));
    f.drive_until(20 * SEC);
    assert_eq!(f.state_of("md1"), "PASSIVE");
    assert!(has(
        &f.take_messages(),
        "GEOM_MULTIPATH: md1 in FRED is marked OK."
    ));
    let (at, name, _) = f.reinstated()[0].clone();
    assert_eq!(name, "md1");
    assert!(at - healed <= 5 * SEC + TICK, "within one check interval");
}

#[test]
fn without_reinstate_a_good_probe_leaves_the_path_failed() {
    let mut f = checked("2", "0");
    f.fail_from("md1", 0, Errno::EIO);
    f.at(3 * SEC, set_outcome("md1", Outcome::Answer));
    f.drive_until(30 * SEC);
    assert_eq!(f.state_of("md1"), "FAIL", "FreeBSD: FAIL until restore");
}

#[test]
fn an_admin_failed_path_is_never_reinstated() {
    let mut f = checked("1", "1");
    f.verb("fail", &["md1"]);
    f.drive_until(30 * SEC);
    assert_eq!(f.state_of("md1"), "FAIL");
    assert!(
        f.probed().iter().any(|(_, p)| p == "md1"),
        "it is still probed"
    );
    f.verb("restore", &["md1"]);
    assert_eq!(f.state_of("md1"), "PASSIVE");
}

#[test]
fn a_hanging_path_fails_its_probe_at_the_deadline() {
    let mut f = checked("5", "1");
    f.at(SEC, set_outcome("md1", Outcome::Hang));
    f.drive_until(5 * SEC + SEC - 1);
    assert_eq!(
        f.state_of("md1"),
        "PASSIVE",
        "probe still within its deadline"
    );
    f.drive_until(6 * SEC + MS);
    assert_eq!(f.state_of("md1"), "FAIL");
    // Never two probes at once: the round at 10 s starts a new one only after this ended.
    f.drive_until(30 * SEC);
}

// ----- anti-flap --------------------------------------------------------------------------

#[test]
fn a_flapping_path_is_held_then_returns() {
    let mut f = checked("1", "1");
    f.set_tunable(Knob::FlapThreshold, 2);
    f.set_tunable(Knob::FlapWindow, 60);
    f.set_tunable(Knob::FlapHold, 30);
    // Two failures 5 s apart, each healed 2 s later.
    for k in 0..2u64 {
        f.at(
            (1 + 5 * k) * SEC,
            set_outcome("md1", Outcome::Fail(Errno::EIO)),
        );
        f.at((3 + 5 * k) * SEC, set_outcome("md1", Outcome::Answer));
    }
    f.drive_until(5 * SEC + MS);
    assert_eq!(
        f.reinstated().len(),
        1,
        "the first failure is reinstated at once"
    );
    f.drive_until(9 * SEC + MS);
    assert_eq!(
        f.state_of("md1"),
        "HELD",
        "second failure in the window: held"
    );
    let messages = f.take_messages();
    assert!(has(
        &messages,
        "GEOM_MULTIPATH: md1 in FRED is flapping (2 failures in 60 s), held out for 30 s"
    ));
    f.drive_until(30 * SEC);
    assert_eq!(f.state_of("md1"), "HELD");
    f.drive_until(40 * SEC);
    assert_eq!(f.state_of("md1"), "PASSIVE");
    let messages = f.take_messages();
    assert!(has(
        &messages,
        "GEOM_MULTIPATH: md1 in FRED is no longer held out"
    ));
    assert!(has(&messages, "GEOM_MULTIPATH: md1 in FRED is marked OK."));
    let (at, _, after_hold) = f.reinstated()[1].clone();
    assert!(after_hold);
    assert!(
        (38 * SEC..=39 * SEC + TICK).contains(&at),
        "30 s after it tested good: {at}"
    );
}

#[test]
fn without_the_anti_flap_feature_there_is_no_held_word() {
    let mut f = checked("1", "1");
    for k in 0..3u64 {
        f.at(
            (1 + 4 * k) * SEC,
            set_outcome("md1", Outcome::Fail(Errno::EIO)),
        );
        f.at((3 + 4 * k) * SEC, set_outcome("md1", Outcome::Answer));
    }
    for s in 1..20 {
        f.drive_until(s * SEC + MS);
        assert_ne!(f.state_of("md1"), "HELD");
    }
    assert_eq!(f.reinstated().len(), 3);
}

// ----- failback ---------------------------------------------------------------------------

/// md0 preferred and active; it fails, md1 takes over; md0 heals at 10 s and is reinstated
/// by the checker (every second).
fn failback(policy: &str) -> Fabric {
    let mut f = checked("1", "1");
    assert_eq!(f.configure(&[("failback", policy)]).error, "");
    f.verb("prefer", &["md0"]);
    f.fail_from("md0", SEC + 500 * MS, Errno::EIO);
    f.at(10 * SEC, set_outcome("md0", Outcome::Answer));
    f.drive_until(5 * SEC);
    assert_eq!(f.active().as_deref(), Some("md1"));
    f
}

#[test]
fn failback_manual_leaves_the_returning_path_passive() {
    let mut f = failback("manual");
    f.drive_until(60 * SEC);
    assert_eq!(f.state_of("md0"), "PASSIVE");
    assert_eq!(f.active().as_deref(), Some("md1"));
}

#[test]
fn failback_immediate_makes_the_preferred_path_active_on_return() {
    let mut f = failback("immediate");
    f.drive_until(11 * SEC + MS);
    assert_eq!(f.active().as_deref(), Some("md0"));
    assert!(has(
        &f.take_messages(),
        "GEOM_MULTIPATH: md0 is now active path in FRED"
    ));
}

#[test]
fn failback_deferred_waits_and_is_cancelled_by_a_new_failure() {
    let mut f = failback("deferred:10");
    f.drive_until(15 * SEC);
    assert_eq!(f.state_of("md0"), "PASSIVE", "back, but not yet active");
    f.drive_until(21 * SEC + MS);
    assert_eq!(
        f.active().as_deref(),
        Some("md0"),
        "active 10 s after it returned"
    );

    // A path that fails again before its N seconds are up does not drag I/O back.
    let mut f = failback("deferred:10");
    f.fail_from("md0", 13 * SEC, Errno::EIO);
    f.drive_until(30 * SEC);
    assert_eq!(f.active().as_deref(), Some("md1"));
}

#[test]
fn failback_without_prefer_follows_freebsds_list_order() {
    // Newest first: md1 ranks before md0. md1 active, fails, md0 takes over, md1 returns.
    let mut f = checked("1", "1");
    f.configure(&[("failback", "immediate")]);
    f.verb("rotate", &[]);
    assert_eq!(f.active().as_deref(), Some("md1"));
    f.fail_from("md1", SEC + 500 * MS, Errno::EIO);
    f.at(5 * SEC, set_outcome("md1", Outcome::Answer));
    f.drive_until(3 * SEC);
    assert_eq!(f.active().as_deref(), Some("md0"));
    f.drive_until(7 * SEC);
    assert_eq!(f.active().as_deref(), Some("md1"));
}

// ----- bounded queueing -------------------------------------------------------------------

/// Both providers of a two-path fabric go away.
fn every_path_gone(f: &mut Fabric) {
    f.apply(Action::Vanish("md0".into()));
    f.apply(Action::Vanish("md1".into()));
}

fn queueing(timeout: &str) -> Fabric {
    let mut f = Fabric::build(2, Mode::ActivePassive, Assembly::Label);
    assert_eq!(f.configure(&[("queue_timeout", timeout)]).error, "");
    f
}

#[test]
fn an_outage_shorter_than_queue_timeout_loses_nothing() {
    let mut f = queueing("10");
    every_path_gone(&mut f);
    let tokens: Vec<u64> = (0..5).map(|i| f.submit(WRITE, i * 4096, 4096)).collect();
    assert_eq!(f.waiting(), 5);
    assert_eq!(f.class.waiting(f.geom()), (5, 5 * 4096));
    let messages = f.take_messages();
    assert!(
        has(
            &messages,
            "GEOM_MULTIPATH: no usable path in FRED, queueing requests for up to 10 s"
        ),
        "{messages:#?}"
    );
    f.at(3 * SEC, Action::Return("md1".into()));
    f.drive_until(4 * SEC);
    for t in &tokens {
        let d = f.delivery(*t).expect("answered");
        assert_eq!(d.result, Ok(()));
        assert_eq!(
            d.at,
            3 * SEC + DEFAULT_LATENCY,
            "issued when the path returned"
        );
    }
    assert!(has(
        &f.take_messages(),
        "GEOM_MULTIPATH: FRED stopped queueing: 5 requests resumed, 0 failed"
    ));
    f.finish(1000);
}

/// The host's direct route must not overtake requests that wait: between a path's return
/// and the owner draining the queue, the geom has no direct route.
#[test]
fn a_geom_with_requests_waiting_has_no_direct_route_until_they_are_issued() {
    let mut f = queueing("10");
    every_path_gone(&mut f);
    let token = f.submit(WRITE, 0, 4096);
    assert_eq!(f.waiting(), 1);
    let disk = f.disk();
    f.topo.add_provider("md1", disk);
    f.topo.taste(&mut f.class, "md1");
    assert_eq!(f.active().as_deref(), Some("md1"));
    assert_eq!(
        f.class.direct_path(f.geom()),
        None,
        "a waiting request would be overtaken"
    );
    f.drive();
    assert_eq!(f.delivery(token).expect("answered").result, Ok(()));
    assert_eq!(f.class.direct_path(f.geom()), f.path("md1"));
    f.finish(1000);
}

#[test]
fn an_outage_longer_than_queue_timeout_fails_with_enxio_at_the_timeout() {
    let mut f = queueing("10");
    every_path_gone(&mut f);
    let a = f.submit(READ, 0, 512);
    f.drive_until(2 * SEC);
    let b = f.submit(READ, 0, 512);
    f.drive_until(9 * SEC);
    assert!(f.delivery(a).is_none(), "still waiting");
    f.drive_until(10 * SEC + TICK);
    assert_eq!(f.delivery(a).unwrap().result, Err(Errno::ENXIO));
    assert_eq!(f.delivery(a).unwrap().at, 10 * SEC);
    assert!(f.delivery(b).is_none());
    f.drive_until(12 * SEC + TICK);
    assert_eq!(f.delivery(b).unwrap().at, 12 * SEC);
    assert!(has(
        &f.take_messages(),
        "GEOM_MULTIPATH: FRED stopped queueing: 0 requests resumed, 2 failed"
    ));
    f.finish(1000);
}

#[test]
fn every_path_failing_waits_for_the_checker_to_reinstate_one() {
    // With the checker and reinstatement on, EIO on every path holds them FAIL (no
    // FreeBSD all-failed restore) and the requests wait for a probe to find one good.
    let mut f = Fabric::create(2, Mode::ActiveActive);
    let reply = f.configure(&[
        ("queue_timeout", "10"),
        ("check_interval", "1"),
        ("reinstate", "1"),
    ]);
    assert_eq!(reply.error, "");
    f.fail_from("md0", 0, Errno::EIO);
    f.fail_from("md1", 0, Errno::EIO);
    f.at(3 * SEC, set_outcome("md0", Outcome::Answer));
    f.at(3 * SEC, set_outcome("md1", Outcome::Answer));
    let tokens: Vec<u64> = (0..4).map(|i| f.submit(WRITE, i * 512, 512)).collect();
    f.drive_until(2 * SEC);
    assert_eq!(f.waiting(), 4);
    f.drive_until(5 * SEC);
    for t in tokens {
        assert_eq!(
            f.delivery(t).unwrap().result,
            Ok(()),
            "no error reaches the client"
        );
    }
    f.finish(1000);
}

#[test]
fn destroy_while_requests_wait_answers_them_at_once() {
    let mut f = queueing("30");
    every_path_gone(&mut f);
    let t = f.submit(WRITE, 0, 4096);
    f.drive_until(SEC);
    let geom = f.geom();
    let reply = f.topo.verb(&mut f.class, "stop", &[], &["FRED"]);
    assert_eq!(reply.error, "");
    f.apply(Action::Verb {
        verb: "getactive".into(),
        args: vec![],
    });
    assert_eq!(f.delivery(t).unwrap().result, Err(Errno::ENXIO));
    assert_eq!(
        f.delivery(t).unwrap().at,
        SEC,
        "at once, not at the timeout"
    );
    assert_eq!(f.class.waiting(geom), (0, 0));
}

#[test]
fn configure_to_zero_ends_queueing_at_once() {
    let mut f = queueing("30");
    every_path_gone(&mut f);
    let t = f.submit(WRITE, 0, 4096);
    f.drive_until(SEC);
    assert_eq!(f.configure(&[("queue_timeout", "0")]).error, "");
    assert_eq!(f.delivery(t).unwrap().result, Err(Errno::ENXIO));
    assert_eq!(f.delivery(t).unwrap().at, SEC);
    let t = f.submit(WRITE, 0, 4096);
    assert_eq!(
        f.delivery(t).unwrap().result,
        Err(Errno::ENXIO),
        "FreeBSD again"
    );
}

#[test]
fn a_full_queue_fails_the_newest_request() {
    let mut f = queueing("30");
    f.set_tunable(Knob::QueueMaxRequests, 2);
    f.set_tunable(Knob::QueueMaxKbytes, 8);
    every_path_gone(&mut f);
    let a = f.submit(WRITE, 0, 4096);
    let b = f.submit(WRITE, 4096, 4096);
    let c = f.submit(WRITE, 8192, 512);
    assert_eq!(
        f.delivery(c).unwrap().result,
        Err(Errno::ENXIO),
        "over the count"
    );
    f.set_tunable(Knob::QueueMaxRequests, 3);
    let d = f.submit(WRITE, 8192, 512);
    assert_eq!(
        f.delivery(d).unwrap().result,
        Err(Errno::ENXIO),
        "over the bytes"
    );
    f.apply(Action::Return("md0".into()));
    f.drive_until(SEC);
    assert_eq!(f.delivery(a).unwrap().result, Ok(()));
    assert_eq!(f.delivery(b).unwrap().result, Ok(()));
    assert!(has(
        &f.take_messages(),
        "GEOM_MULTIPATH: FRED stopped queueing: 2 requests resumed, 2 failed"
    ));
}

#[test]
fn a_failed_request_with_no_path_left_waits_instead_of_failing() {
    let mut f = queueing("10");
    f.set_latency("md0", MS);
    let t = f.submit(WRITE, 0, 4096);
    // Its path vanishes under it, and the other path is gone too.
    f.apply(Action::Vanish("md1".into()));
    f.apply(Action::Vanish("md0".into()));
    f.drive_until(SEC);
    assert!(f.delivery(t).is_none(), "waiting, not failed");
    f.apply(Action::Return("md0".into()));
    f.drive_until(2 * SEC);
    assert_eq!(f.delivery(t).unwrap().result, Ok(()));
}

// ----- selectors --------------------------------------------------------------------------

#[test]
fn round_robin_sends_batches_in_kernel_order() {
    let mut f = Fabric::create(3, Mode::ActiveActive);
    assert_eq!(f.configure(&[("selector", "round-robin:2")]).error, "");
    assert_eq!(
        f.class.geom(f.geom()).unwrap().selector(),
        Selector::RoundRobin(2)
    );
    let tokens: Vec<u64> = (0..7).map(|i| f.submit(READ, i * 512, 512)).collect();
    let routes: Vec<String> = tokens.iter().map(|&t| f.route(t)[0].clone()).collect();
    assert_eq!(routes, ["md2", "md2", "md1", "md1", "md0", "md0", "md2"]);
    // A failed path is skipped.
    f.verb("fail", &["md1"]);
    let tokens: Vec<u64> = (0..4).map(|i| f.submit(READ, i * 512, 512)).collect();
    let routes: Vec<String> = tokens.iter().map(|&t| f.route(t)[0].clone()).collect();
    assert_eq!(routes, ["md2", "md0", "md0", "md2"]);
    f.finish(1000);
}

#[test]
fn round_robin_in_active_read_spreads_reads_only() {
    let mut f = Fabric::create(2, Mode::ActiveRead);
    f.configure(&[("selector", "round-robin")]);
    let tokens: Vec<u64> = (0..4).map(|i| f.submit(READ, i * 512, 512)).collect();
    let reads: Vec<String> = tokens.iter().map(|&t| f.route(t)[0].clone()).collect();
    assert_eq!(reads, ["md1", "md0", "md1", "md0"]);
    let w = f.submit(WRITE, 0, 512);
    assert_eq!(f.route(w)[0], f.active().unwrap());
    f.finish(1000);
}

/// Requests submitted every `gap` for `duration` on two paths, md1 ten times slower; the
/// share of requests md0 (the fast one) carried.
fn fast_share(selector: &str) -> f64 {
    let mut f = Fabric::create(2, Mode::ActiveActive);
    assert_eq!(f.configure(&[("selector", selector)]).error, "");
    f.set_latency("md0", 100 * US);
    f.set_latency("md1", MS);
    let gap = 50 * US;
    let n = 20_000u64;
    for i in 0..n {
        f.submit_at(i * gap, READ, (i % 64) * 4096, 4096);
    }
    f.drive_until(n * gap + SEC);
    f.finish(1_000_000);
    let fast = f
        .deliveries()
        .values()
        .filter(|d| d.route[0] == "md0")
        .count();
    fast as f64 / n as f64
}

#[test]
fn service_time_favours_the_faster_path_more_than_the_others() {
    let service = fast_share("service-time");
    let least = fast_share("least-busy");
    let rr = fast_share("round-robin:1");
    assert!((rr - 0.5).abs() < 0.01, "round-robin ignores speed: {rr}");
    assert!(
        service > least,
        "service-time {service} vs least-busy {least}"
    );
    assert!(
        service > 0.85,
        "the fast path is ten times faster: {service}"
    );
}

// ----- settings ---------------------------------------------------------------------------

#[test]
fn settings_are_listed_only_when_set_and_bad_values_change_nothing() {
    let mut f = Fabric::create(2, Mode::ActivePassive);
    let mut xml = String::new();
    f.class.dumpconf_geom(f.geom(), "", &mut xml).unwrap();
    assert_eq!(
        xml,
        "<State>OPTIMAL</State>\n<UUID></UUID>\n<Mode>Active/Passive</Mode>\n<Type>MANUAL</Type>\n"
    );
    let reply = f.configure(&[("queue_timeout", "10"), ("selector", "round-robin:4")]);
    assert_eq!(reply.error, "");
    let reply = f.configure(&[("failback", "deferred:5"), ("selector", "fastest")]);
    assert_eq!(reply.error, "Invalid selector value 'fastest'");
    let mut xml = String::new();
    f.class.dumpconf_geom(f.geom(), "", &mut xml).unwrap();
    assert_eq!(
        xml,
        "<Selector>round-robin:4</Selector>\n<QueueTimeout>10</QueueTimeout>\n\
         <State>OPTIMAL</State>\n<UUID></UUID>\n<Mode>Active/Passive</Mode>\n\
         <Type>MANUAL</Type>\n",
        "the failback of the refused configure was not applied either"
    );
    f.configure(&[("queue_timeout", "default"), ("selector", "default")]);
    let mut xml = String::new();
    f.class.dumpconf_geom(f.geom(), "", &mut xml).unwrap();
    assert!(!xml.contains("Queue") && !xml.contains("Selector"));
}

#[test]
fn the_held_word_is_a_path_state() {
    assert_eq!(PathState::Held.to_string(), "HELD");
}

#[test]
fn a_preset_applies_to_the_geom_now_and_to_one_created_later() {
    let mut f = Fabric::create(2, Mode::ActiveActive);
    use geom_multipath::settings::Setting;
    f.class
        .preset("FRED", Setting::Selector, "round-robin:2")
        .unwrap();
    assert_eq!(
        f.class.geom(f.geom()).unwrap().selector(),
        Selector::RoundRobin(2)
    );
    assert!(f
        .class
        .preset("FRED", Setting::Selector, "fastest")
        .is_err());
    assert_eq!(
        f.class.geom(f.geom()).unwrap().selector(),
        Selector::RoundRobin(2)
    );
    let mut f = Fabric::create(2, Mode::ActivePassive);
    f.class.preset("FRED", Setting::QueueTimeout, "7").unwrap();
    f.verb("stop", &[]);
    f.apply(Action::Return("md0".into()));
    let geom = f.class.find_geom("FRED").expect("created again");
    assert_eq!(
        f.class.geom(geom).unwrap().settings().queue_timeout,
        Some(7)
    );
}

#[test]
fn a_driver_without_timers_refuses_the_settings_it_cannot_carry_out() {
    use geom_multipath::testkit::MemTopology;
    use geom_multipath::Class;
    let mut topo = MemTopology::new();
    topo.disk_with_paths("md", 2, 1 << 20, 512);
    let mut class = Class::default().untimed();
    let reply = topo.verb(
        &mut class,
        "create",
        &[("active_active", true), ("active_read", false)],
        &["FRED", "md0", "md1"],
    );
    assert_eq!(reply.error, "");
    for (setting, value) in [
        ("check_interval", "5"),
        ("reinstate", "1"),
        ("queue_timeout", "10"),
        ("failback", "deferred:5"),
        ("selector", "service-time"),
    ] {
        let reply = topo.configure(&mut class, "FRED", &[(setting, value)]);
        assert_eq!(
            reply.error,
            format!("{setting} is not carried out by this driver")
        );
    }
    for (setting, value) in [
        ("check_interval", "0"),
        ("reinstate", "0"),
        ("queue_timeout", "0"),
        ("failback", "immediate"),
        ("selector", "round-robin:4"),
    ] {
        let reply = topo.configure(&mut class, "FRED", &[(setting, value)]);
        assert_eq!(reply.error, "", "{setting}={value}: pure routing, or off");
    }
    assert_eq!(class.poll_timeout(), None);
}

//! A model of the host's two routes for a request, checked with random interleavings: the
//! **direct route** (an export thread reads the published [`Route`], sends the request to
//! its path and delivers a success itself) and the **owner route** (the request, or a
//! direct attempt that failed, goes through the owner's inbox to [`Class::start`],
//! [`Class::adopt`] and [`Class::done`]).
//!
//! The model keeps the real order of things: a direct attempt's failure sits in the owner's
//! inbox while more requests are sent directly (the owner has not seen it yet); the owner
//! takes one message at a time and, after every message that is not a successful
//! completion (and after verbs and providers coming and going), refreshes [`Routes`] and
//! publishes the change before its next step, as the driver contract says.
//!
//! Checked throughout: a request sent directly goes to a path the class holds good and
//! active (so never to a FAIL or LOST path once the owner has seen the fault); what is
//! published always equals [`Class::direct_path`] after an owner step; the class's in-flight
//! counts equal the owner-routed attempts outstanding. At the end, with every provider
//! healed and everything drained: every request was delivered exactly once, none is left.

use std::collections::{BTreeMap, VecDeque};

use geom_multipath::testkit::{test_uuid, MemTopology};
use geom_multipath::{Bio, Class, Done, Errno, GeomId, Mode, Op, PathId, Route, Routes};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngSeed};

const GEOM: &str = "FRED";

/// What the owner's inbox holds.
#[derive(Debug)]
enum ToOwner {
    /// A request the export could not send directly.
    New(u64),
    /// An attempt came back: `direct` ones are not known to the class yet.
    Completed {
        token: u64,
        path: PathId,
        result: Result<(), Errno>,
        direct: bool,
    },
}

#[derive(Debug)]
struct Attempt {
    token: u64,
    path: PathId,
    provider: String,
    direct: bool,
}

struct Model {
    class: Class,
    topo: MemTopology,
    routes: Routes,
    /// What the export threads read: the last route published for each geom.
    published: BTreeMap<GeomId, Route>,
    inbox: VecDeque<ToOwner>,
    attempts: Vec<Attempt>,
    /// Requests the owner knows, with their bio.
    owned: BTreeMap<u64, Bio>,
    /// Every submitted request and its op.
    submitted: BTreeMap<u64, Op>,
    delivered: BTreeMap<u64, Result<(), Errno>>,
    failing: BTreeMap<String, Errno>,
    providers: Vec<String>,
    next_token: u64,
    direct_sends: u64,
}

impl Model {
    fn new(paths: usize) -> Model {
        let mut topo = MemTopology::new();
        let disk = topo.disk_with_paths("md", paths, 1 << 20, 512);
        topo.write_label(disk, GEOM, &test_uuid(1), Mode::ActivePassive);
        let mut class = Class::default();
        let providers: Vec<String> = (0..paths).map(|i| format!("md{i}")).collect();
        for p in &providers {
            assert!(topo.taste(&mut class, p).is_some());
        }
        let g = class.find_geom(GEOM).unwrap();
        class.access(&mut topo, g, 1, 1, 0).unwrap();
        topo.drain(&mut class);
        let mut m = Model {
            class,
            topo,
            routes: Routes::new(),
            published: BTreeMap::new(),
            inbox: VecDeque::new(),
            attempts: Vec::new(),
            owned: BTreeMap::new(),
            submitted: BTreeMap::new(),
            delivered: BTreeMap::new(),
            failing: BTreeMap::new(),
            providers,
            next_token: 1,
            direct_sends: 0,
        };
        m.publish();
        m
    }

    fn publish(&mut self) {
        let mut changed = Vec::new();
        self.routes.refresh(&self.class, &mut changed);
        for (g, route) in changed {
            if let Some(old) = self.published.get(&g) {
                assert!(route.epoch > old.epoch, "epochs only grow");
            }
            self.published.insert(g, route);
        }
    }

    fn deliver(&mut self, token: u64, result: Result<(), Errno>) {
        assert!(
            self.delivered.insert(token, result).is_none(),
            "token {token} delivered twice"
        );
        self.owned.remove(&token);
    }

    fn send(&mut self, token: u64, path: PathId, direct: bool) {
        let provider = self.class.path(path).expect("sent to a live path").name();
        self.attempts.push(Attempt {
            token,
            path,
            provider: provider.to_string(),
            direct,
        });
    }

    /// An export thread: direct if a route is published, else to the owner.
    fn submit(&mut self, op: Op) {
        let token = self.next_token;
        self.next_token += 1;
        self.submitted.insert(token, op);
        let geom = self.class.find_geom(GEOM);
        let route = geom
            .and_then(|g| self.published.get(&g))
            .and_then(|r| r.path);
        match (geom, route) {
            (Some(g), Some(path)) => {
                let view = self.class.path(path).expect("a published path is attached");
                assert!(
                    view.is_good(),
                    "token {token} sent directly to {} which the owner holds {:?}",
                    view.name(),
                    self.class.path_state(path)
                );
                assert_eq!(self.class.geom(g).unwrap().active(), Some(path));
                self.direct_sends += 1;
                self.send(token, path, true);
            }
            _ => self.inbox.push_back(ToOwner::New(token)),
        }
    }

    /// Attempt `i` (modulo those outstanding) comes back from its device.
    fn complete(&mut self, i: usize) {
        if self.attempts.is_empty() {
            return;
        }
        let a = self.attempts.remove(i % self.attempts.len());
        let gone = !self.topo.providers.contains_key(&a.provider);
        let result = match self.failing.get(&a.provider) {
            _ if gone => Err(Errno::ENXIO),
            Some(&e) => Err(e),
            None => Ok(()),
        };
        if a.direct && result.is_ok() {
            self.deliver(a.token, result);
        } else {
            self.inbox.push_back(ToOwner::Completed {
                token: a.token,
                path: a.path,
                result,
                direct: a.direct,
            });
        }
    }

    fn carry_out(&mut self, token: u64, done: Done) {
        match done {
            Done::Reissue(next) => self.send(token, next, false),
            Done::Deliver { result, .. } => self.deliver(token, result),
            Done::Queued => panic!("requests started with start never wait for a path"),
        }
    }

    fn start(&mut self, token: u64) {
        let geom = self.class.find_geom(GEOM);
        let Some(geom) = geom else {
            return self.deliver(token, Err(Errno::ENXIO));
        };
        let mut bio = Bio::new(token, geom, self.submitted[&token], 0, 4096);
        match self.class.start(&mut bio) {
            Ok(path) => {
                self.owned.insert(token, bio);
                self.send(token, path, false);
            }
            Err(e) => self.deliver(token, Err(e)),
        }
    }

    /// The owner takes its next message.
    fn owner_step(&mut self) {
        let Some(msg) = self.inbox.pop_front() else {
            return;
        };
        let ordinary = matches!(msg, ToOwner::Completed { result: Ok(()), .. });
        match msg {
            ToOwner::New(token) => self.start(token),
            ToOwner::Completed {
                token,
                path,
                result,
                direct: true,
            } => {
                // The path may belong to a geom that is gone (then adopt refuses it).
                let Some(geom) = self.class.find_geom(GEOM) else {
                    return self.start(token);
                };
                let mut bio = Bio::new(token, geom, self.submitted[&token], 0, 4096);
                if self.class.adopt(&mut bio, path) {
                    let done = self.class.done(&mut bio, result);
                    self.owned.insert(token, bio);
                    self.carry_out(token, done);
                } else {
                    self.start(token);
                }
            }
            ToOwner::Completed {
                token,
                result,
                direct: false,
                ..
            } => {
                let mut bio = self.owned[&token].clone();
                let done = self.class.done(&mut bio, result);
                self.owned.insert(token, bio);
                self.carry_out(token, done);
            }
        }
        self.topo.drain(&mut self.class);
        if !ordinary {
            self.publish();
        }
    }

    /// Anything else the owner does (a verb, a provider coming or going): then publish.
    fn owner_does(&mut self, what: impl FnOnce(&mut Model)) {
        what(self);
        self.topo.drain(&mut self.class);
        self.publish();
    }

    fn verb(&mut self, verb: &str, provider: &str) {
        self.owner_does(|m| {
            m.topo.verb(&mut m.class, verb, &[], &[GEOM, provider]);
        });
    }

    fn vanish(&mut self, provider: &str) {
        self.owner_does(|m| {
            m.topo.remove_provider(provider);
            let paths: Vec<PathId> = m.class.paths_on_provider(provider).collect();
            for p in paths {
                m.class.orphan(&mut m.topo, p);
                m.topo.drain(&mut m.class);
            }
        });
    }

    fn come_back(&mut self, provider: &str) {
        if self.topo.providers.contains_key(provider) {
            return;
        }
        self.owner_does(|m| {
            m.topo.add_provider(provider, 0);
            m.topo.taste(&mut m.class, provider);
            if let Some(g) = m.class.find_geom(GEOM) {
                let open = m.class.geom(g).unwrap().access_counts();
                if open == (0, 0, 0) {
                    m.class.access(&mut m.topo, g, 1, 1, 0).unwrap();
                }
            }
        });
    }

    fn check(&self) {
        for g in self.class.geoms() {
            let published = self.published.get(&g).and_then(|r| r.path);
            // Whatever waits in the inbox, the class has not seen it: what is published is
            // what the class says now.
            assert_eq!(
                published,
                self.class.direct_path(g),
                "published route of {g:?} is stale"
            );
            for p in self.class.geom(g).unwrap().paths() {
                let ours = self
                    .attempts
                    .iter()
                    .filter(|a| a.path == p && !a.direct)
                    .count() as u32;
                assert_eq!(
                    self.class.path(p).unwrap().inflight(),
                    ours + self.owner_inbox_owned_on(p),
                    "in-flight count of {}",
                    self.class.path(p).unwrap().name()
                );
            }
        }
    }

    /// Owner-routed attempts whose completion waits in the inbox (still counted by the
    /// class until `done`).
    fn owner_inbox_owned_on(&self, path: PathId) -> u32 {
        self.inbox
            .iter()
            .filter(
                |m| matches!(m, ToOwner::Completed { path: p, direct: false, .. } if *p == path),
            )
            .count() as u32
    }

    /// Heals every provider, brings every one back and runs until nothing is left.
    fn finish(&mut self) {
        self.failing.clear();
        for p in self.providers.clone() {
            self.come_back(&p);
        }
        for _ in 0..100_000 {
            if self.attempts.is_empty() && self.inbox.is_empty() {
                break;
            }
            self.complete(0);
            while !self.inbox.is_empty() {
                self.owner_step();
                self.check();
            }
        }
        assert!(
            self.attempts.is_empty() && self.inbox.is_empty(),
            "never drained"
        );
        assert_eq!(
            self.delivered.len(),
            self.submitted.len(),
            "every request delivered once"
        );
        for g in self.class.geoms() {
            for p in self.class.geom(g).unwrap().paths() {
                assert_eq!(self.class.path(p).unwrap().inflight(), 0);
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    Submit(Op),
    Complete(usize),
    Owner,
    Break(usize, Errno),
    Heal(usize),
    Fail(usize),
    Restore(usize),
    Vanish(usize),
    Return(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => prop_oneof![Just(Op::Read), Just(Op::Write)].prop_map(Step::Submit),
        6 => any::<usize>().prop_map(Step::Complete),
        6 => Just(Step::Owner),
        1 => (any::<usize>(), prop_oneof![Just(Errno::EIO), Just(Errno::ENXIO), Just(Errno::ENOSPC)])
            .prop_map(|(i, e)| Step::Break(i, e)),
        1 => any::<usize>().prop_map(Step::Heal),
        1 => any::<usize>().prop_map(Step::Fail),
        1 => any::<usize>().prop_map(Step::Restore),
        1 => any::<usize>().prop_map(Step::Vanish),
        1 => any::<usize>().prop_map(Step::Return),
    ]
}

fn run(paths: usize, steps: &[Step]) -> u64 {
    let mut m = Model::new(paths);
    for s in steps {
        let name = |i: usize| m.providers[i % m.providers.len()].clone();
        match *s {
            Step::Submit(op) => m.submit(op),
            Step::Complete(i) => m.complete(i),
            Step::Owner => m.owner_step(),
            Step::Break(i, e) => {
                m.failing.insert(name(i), e);
            }
            Step::Heal(i) => {
                m.failing.remove(&name(i));
            }
            Step::Fail(i) => m.verb("fail", &name(i)),
            Step::Restore(i) => m.verb("restore", &name(i)),
            Step::Vanish(i) => m.vanish(&name(i)),
            Step::Return(i) => m.come_back(&name(i)),
        }
        m.check();
    }
    m.finish();
    m.direct_sends
}

#[test]
fn a_healthy_geom_sends_everything_directly_and_a_fault_stops_it() {
    let mut m = Model::new(2);
    for _ in 0..4 {
        m.submit(Op::Read);
    }
    assert_eq!(m.direct_sends, 4);
    assert!(m.inbox.is_empty());
    let active = m
        .class
        .path(m.published.values().next().unwrap().path.unwrap())
        .unwrap();
    let active = active.name().to_string();
    m.failing.insert(active.clone(), Errno::EIO);
    m.complete(0);
    // The owner has not seen the failure: requests still go directly to that path.
    m.submit(Op::Write);
    assert_eq!(m.direct_sends, 5);
    m.owner_step();
    // Now it has: the next request goes to the other path, through the route published.
    m.submit(Op::Write);
    assert_eq!(m.direct_sends, 6);
    let last = m.attempts.last().unwrap();
    assert_ne!(last.provider, active);
    m.finish();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        rng_seed: RngSeed::Fixed(0x6469_7265_6374),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/direct_route.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn both_routes_answer_every_request_once_and_never_use_a_failed_path(
        paths in 1..=4usize,
        steps in prop::collection::vec(step(), 1..120),
    ) {
        run(paths, &steps);
    }
}

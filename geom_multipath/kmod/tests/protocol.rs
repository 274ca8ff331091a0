//! A model check (loom) of the synchronisation protocol between the data path, `g_mp_kt` and
//! a control call, as `kpi_freebsd.c` and `io::start` implement it, written over loom's
//! mutexes and condition variables in place of mtx(9), msleep(9) and wakeup(9):
//!
//! * the class gate: `kpi_gate_enter` sleeps until the class is free, `kpi_gate_try_enter`
//!   never waits;
//! * `start` (g_down, one thread): a request goes to `g_mp_kt` while earlier ones wait there
//!   (`kpi_worker_starts_pending`) or while the gate is busy, and is routed in place
//!   otherwise;
//! * `g_mp_kt`: serves its queue under its mutex, sleeps on it when empty, and on DIE drains
//!   what is left before it exits; the count of starts pending drops only after a request is
//!   routed;
//! * fini (`kpi_worker_stop`): DIE, then sleep on the proc until the thread is gone
//!   (`kproc_exit`'s `wakeup(p)`);
//! * the direct route of a geom under the route mutex (`route.rs`): g_down takes it and counts
//!   the request, g_up gives it back and wakes drainers at zero, a control call drains it
//!   (msleep on the mutex) before it detaches the path, and a route to another path is
//!   published only once no request is left on the old one.
//!
//! loom runs every interleaving (within a preemption bound) and fails on a deadlock or a lost
//! wake-up (every thread asleep); the assertions check that every request is routed exactly
//! once, in arrival order, and that nothing is left queued when the thread is gone.

use std::collections::VecDeque;

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KtState {
    Run,
    Die,
    Nil,
}

#[derive(Debug)]
struct Kt {
    start: VecDeque<u32>,
    /// Queued or being routed (`gmp_kt_starts`).
    starts: u32,
    state: KtState,
}

struct Kernel {
    /// The gate: whether a sleepable owner holds the class (`gmp_gate_busy`).
    gate: Mutex<bool>,
    gate_free: Condvar,
    kt: Mutex<Kt>,
    /// `wakeup(&gmp_kt_state)`.
    kt_wake: Condvar,
    /// `wakeup(p)` in `kproc_exit`.
    proc_gone: Condvar,
    /// The order requests were routed in (what the core saw).
    routed: Mutex<Vec<u32>>,
}

impl Kernel {
    fn new() -> Kernel {
        Kernel {
            gate: Mutex::new(false),
            gate_free: Condvar::new(),
            kt: Mutex::new(Kt {
                start: VecDeque::new(),
                starts: 0,
                state: KtState::Run,
            }),
            kt_wake: Condvar::new(),
            proc_gone: Condvar::new(),
            routed: Mutex::new(Vec::new()),
        }
    }

    fn gate_enter(&self) {
        let mut busy = self.gate.lock().unwrap();
        while *busy {
            busy = self.gate_free.wait(busy).unwrap();
        }
        *busy = true;
    }

    fn gate_exit(&self) {
        *self.gate.lock().unwrap() = false;
        self.gate_free.notify_all();
    }

    fn gate_try_enter(&self) -> bool {
        let mut busy = self.gate.lock().unwrap();
        if *busy {
            return false;
        }
        *busy = true;
        true
    }

    /// The core's routing of one request (under the gate).
    fn route(&self, id: u32) {
        self.routed.lock().unwrap().push(id);
    }

    fn enqueue(&self, id: u32) {
        let mut kt = self.kt.lock().unwrap();
        assert_ne!(kt.state, KtState::Nil, "enqueue after g_mp_kt exited");
        kt.start.push_back(id);
        kt.starts += 1;
        drop(kt);
        self.kt_wake.notify_all();
    }

    fn starts_pending(&self) -> bool {
        self.kt.lock().unwrap().starts != 0
    }

    /// `io::start`.
    fn start(&self, id: u32) {
        if self.starts_pending() {
            self.enqueue(id);
        } else if self.gate_try_enter() {
            self.route(id);
            self.gate_exit();
        } else {
            self.enqueue(id);
        }
    }

    /// `g_multipath_kt`.
    fn worker(&self) {
        let mut kt = self.kt.lock().unwrap();
        loop {
            if let Some(id) = kt.start.pop_front() {
                drop(kt);
                // io::work_start: waits for the gate, routes.
                self.gate_enter();
                self.route(id);
                self.gate_exit();
                kt = self.kt.lock().unwrap();
                kt.starts -= 1;
            } else if kt.state == KtState::Die {
                break;
            } else {
                kt = self.kt_wake.wait(kt).unwrap();
            }
        }
        kt.state = KtState::Nil;
        drop(kt);
        // kproc_exit(9): wakeup(p), from outside the module's code.
        self.proc_gone.notify_all();
    }

    /// `kpi_worker_stop`.
    fn worker_stop(&self) {
        let mut kt = self.kt.lock().unwrap();
        if kt.state == KtState::Run {
            kt.state = KtState::Die;
            self.kt_wake.notify_all();
            while kt.state != KtState::Nil {
                kt = self.proc_gone.wait(kt).unwrap();
            }
        }
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

#[test]
fn requests_are_routed_once_in_order_and_unload_strands_nothing() {
    model(|| {
        let k = Arc::new(Kernel::new());
        let worker = {
            let k = k.clone();
            thread::spawn(move || k.worker())
        };
        // A control call holding the class for a while (a verb sleeping in label I/O).
        let control = {
            let k = k.clone();
            thread::spawn(move || {
                k.gate_enter();
                thread::yield_now();
                k.gate_exit();
            })
        };
        // g_down: three requests, in this order.
        for id in 0..3 {
            k.start(id);
        }
        control.join().unwrap();
        // fini: after the geoms are gone nothing starts any more.
        k.worker_stop();
        worker.join().unwrap();
        assert_eq!(
            *k.routed.lock().unwrap(),
            [0, 1, 2],
            "routed once, in order"
        );
        let kt = k.kt.lock().unwrap();
        assert!(kt.start.is_empty() && kt.starts == 0, "stranded: {kt:?}");
    });
}

#[test]
fn fini_waits_for_work_queued_just_before_it() {
    model(|| {
        let k = Arc::new(Kernel::new());
        let worker = {
            let k = k.clone();
            thread::spawn(move || k.worker())
        };
        // The class is busy when the last request arrives, which goes to g_mp_kt; fini
        // follows at once and must not strand it.
        k.gate_enter();
        k.start(7);
        let gate_owner = {
            let k = k.clone();
            thread::spawn(move || k.gate_exit_later())
        };
        k.worker_stop();
        gate_owner.join().unwrap();
        worker.join().unwrap();
        assert_eq!(*k.routed.lock().unwrap(), [7]);
    });
}

impl Kernel {
    /// The control call of `fini_waits_for_work_queued_just_before_it` ends on another thread
    /// (the gate is not tied to a thread in this model).
    fn gate_exit_later(&self) {
        self.gate_exit();
    }
}

/// The direct route of one geom (`route.rs`) under the route mutex: g_down takes it and
/// counts the request in flight, g_up gives it back and wakes a drain at zero, a control call
/// revokes it and waits (`kpi_route_wait`, msleep on the mutex) before it detaches the path.
struct Direct {
    /// (route, requests in flight on it)
    route: Mutex<(Option<u32>, u32)>,
    /// `wakeup` of `kpi_route_wait` sleepers.
    drained: Condvar,
    /// The path's consumer is detached (the control call's `g_detach`).
    detached: Mutex<bool>,
    /// Completions waiting for g_up, and whether g_down is done sending.
    up: Mutex<(VecDeque<u32>, bool)>,
    up_wake: Condvar,
    /// Requests answered (directly, or through the class when there was no route).
    answered: Mutex<Vec<u32>>,
}

impl Direct {
    fn new() -> Direct {
        Direct {
            route: Mutex::new((Some(1), 0)),
            drained: Condvar::new(),
            detached: Mutex::new(false),
            up: Mutex::new((VecDeque::new(), false)),
            up_wake: Condvar::new(),
            answered: Mutex::new(Vec::new()),
        }
    }

    /// `io::start_direct` with the gate busy: the route, or the class (modelled as answered
    /// at once: the class owns that request from here).
    fn start(&self, id: u32) {
        let path = {
            let mut r = self.route.lock().unwrap();
            let path = r.0;
            if path.is_some() {
                r.1 += 1;
            }
            path
        };
        match path {
            Some(_) => {
                // g_io_request on the path's consumer, after the mutex is given back.
                assert!(
                    !*self.detached.lock().unwrap(),
                    "request on a detached path"
                );
                self.up.lock().unwrap().0.push_back(id);
                self.up_wake.notify_all();
            }
            None => self.answered.lock().unwrap().push(id),
        }
    }

    fn down_done(&self) {
        self.up.lock().unwrap().1 = true;
        self.up_wake.notify_all();
    }

    /// g_up: `io::done` of a direct attempt (`route::give_back`), until g_down is done.
    fn g_up(&self) {
        loop {
            let id = {
                let mut up = self.up.lock().unwrap();
                loop {
                    if let Some(id) = up.0.pop_front() {
                        break Some(id);
                    }
                    if up.1 {
                        break None;
                    }
                    up = self.up_wake.wait(up).unwrap();
                }
            };
            let Some(id) = id else { return };
            let mut r = self.route.lock().unwrap();
            r.1 -= 1;
            if r.1 == 0 {
                self.drained.notify_all();
            }
            drop(r);
            self.answered.lock().unwrap().push(id);
        }
    }

    /// A control call detaching the path: `route::drain`, then `g_detach`.
    fn detach(&self) {
        let mut r = self.route.lock().unwrap();
        r.0 = None;
        while r.1 > 0 {
            r = self.drained.wait(r).unwrap();
        }
        drop(r);
        *self.detached.lock().unwrap() = true;
    }
}

#[test]
fn a_path_is_detached_only_once_its_direct_requests_are_back() {
    model(|| {
        let d = Arc::new(Direct::new());
        let up = {
            let d = d.clone();
            thread::spawn(move || d.g_up())
        };
        let control = {
            let d = d.clone();
            thread::spawn(move || d.detach())
        };
        // g_down, while the control call owns the class.
        d.start(0);
        d.start(1);
        d.down_done();
        control.join().unwrap();
        up.join().unwrap();
        let mut answered = d.answered.lock().unwrap().clone();
        answered.sort_unstable();
        assert_eq!(answered, [0, 1], "every request answered once");
        assert_eq!(d.route.lock().unwrap().1, 0);
    });
}

/// `route::take` / `route::give_back` / `route::publish` for one geom, with the path the
/// direct requests in flight are on: a route to another path is published only once none is
/// left, so the requests in flight are always on one path (the one a failed attempt is
/// adopted on).
struct Publish {
    /// (route, in flight, the path they are on)
    route: Mutex<(Option<u32>, u32, Option<u32>)>,
}

impl Publish {
    fn take(&self) -> Option<u32> {
        let mut r = self.route.lock().unwrap();
        let path = r.0?;
        assert!(
            r.1 == 0 || r.2 == Some(path),
            "requests in flight on two paths: {:?}",
            *r
        );
        r.1 += 1;
        r.2 = Some(path);
        Some(path)
    }

    fn give_back(&self) {
        let mut r = self.route.lock().unwrap();
        r.1 -= 1;
        if r.1 == 0 {
            r.2 = None;
        }
    }

    fn publish(&self, want: Option<u32>) {
        let mut r = self.route.lock().unwrap();
        r.0 = match want {
            Some(p) if r.1 > 0 && r.2 != Some(p) => None,
            want => want,
        };
    }
}

#[test]
fn direct_requests_in_flight_are_always_on_one_path() {
    model(|| {
        let p = Arc::new(Publish {
            route: Mutex::new((Some(1), 0, None)),
        });
        // The class moves the route to path 2 (a failover).
        let control = {
            let p = p.clone();
            thread::spawn(move || p.publish(Some(2)))
        };
        // g_down sends two requests; g_up (here the same thread, later) gives them back.
        let sent: Vec<_> = (0..2).filter_map(|_| p.take()).collect();
        for _ in &sent {
            p.give_back();
        }
        control.join().unwrap();
        // The next hold of the class (a request routed through it, say) publishes again.
        p.publish(Some(2));
        let r = p.route.lock().unwrap();
        assert_eq!((r.1, r.2), (0, None), "every direct request given back");
        assert_eq!(
            r.0,
            Some(2),
            "the new route is published once the old path drained"
        );
    });
}

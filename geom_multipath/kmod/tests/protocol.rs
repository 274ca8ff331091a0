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
//!   (`kproc_exit`'s `wakeup(p)`).
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

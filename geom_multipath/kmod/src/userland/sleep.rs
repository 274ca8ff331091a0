//! Sleeping, as a test controls it: a test arms a [`Latch`] at one [`SleepPoint`], and the
//! first module call that reaches that point sleeps there (as the kernel would sleep for
//! memory, for a label read or for the topology lock) until the test releases it. Meanwhile
//! other threads drive the fake kernel, so a test can check what does and does not wait for
//! a control call that sleeps.
//!
//! One latch at a time; it fires once. Nothing here allocates (the allocator calls it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Where a module call may sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SleepPoint {
    /// A module allocation with `M_WAITOK` (waiting for free pages).
    WaitokAlloc,
    /// `g_read_data` / `g_write_data` of a label, and taste's read.
    LabelIo,
    /// `sbuf_bcat` growing a `kern.geom.confxml` buffer (dumpconf).
    Sbuf,
    /// Waiting for the topology lock (every control method takes it before the class).
    Topology,
}

#[derive(Debug)]
struct State {
    armed: Option<SleepPoint>,
    /// Fire only in a call that holds the class gate (a control call mid-way).
    in_class: bool,
    asleep: bool,
    released: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    armed: None,
    in_class: false,
    asleep: false,
    released: false,
});
static WAKE: Condvar = Condvar::new();
/// Whether a latch is armed: the allocator's fast path reads only this.
static ARMED: AtomicBool = AtomicBool::new(false);

/// The longest a latched call sleeps if the test never releases it (a failed test must not
/// hang the suite).
const GIVE_UP: Duration = Duration::from_secs(30);

/// An armed latch; dropping it releases a sleeper.
#[derive(Debug)]
pub struct Latch {
    point: SleepPoint,
}

/// Arms the latch at `point`: the next module call that reaches it sleeps until
/// [`Latch::release`].
pub fn arm(point: SleepPoint) -> Latch {
    arm_where(point, false)
}

/// Arms the latch at `point` for a call that holds the class gate: a control call that
/// sleeps mid-way, with the class in hand.
pub fn arm_in_class(point: SleepPoint) -> Latch {
    arm_where(point, true)
}

fn arm_where(point: SleepPoint, in_class: bool) -> Latch {
    let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
    assert!(s.armed.is_none(), "a latch is armed already");
    *s = State {
        armed: Some(point),
        in_class,
        asleep: false,
        released: false,
    };
    ARMED.store(true, Ordering::SeqCst);
    Latch { point }
}

impl Latch {
    /// Waits until a module call sleeps at the latch; `false` if none did by `deadline`.
    pub fn wait_asleep(&self, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
        while !s.asleep {
            let now = Instant::now();
            if now >= end {
                return false;
            }
            s = WAKE
                .wait_timeout(s, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// The point this latch is armed at.
    pub fn point(&self) -> SleepPoint {
        self.point
    }

    /// Wakes the sleeper (if any) and disarms.
    pub fn release(self) {
        drop(self);
    }
}

impl Drop for Latch {
    fn drop(&mut self) {
        let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
        s.released = true;
        if !s.asleep {
            s.armed = None;
            ARMED.store(false, Ordering::SeqCst);
        }
        drop(s);
        WAKE.notify_all();
    }
}

/// A module call reaches `point`: it sleeps here if the latch is armed for it and has not
/// fired yet.
pub(crate) fn point(point: SleepPoint) {
    if !ARMED.load(Ordering::SeqCst) {
        return;
    }
    let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if s.armed != Some(point) || s.asleep || (s.in_class && !super::kpi::gate_owned_here()) {
        return;
    }
    s.asleep = true;
    WAKE.notify_all();
    let end = Instant::now() + GIVE_UP;
    while !s.released {
        let now = Instant::now();
        if now >= end {
            break;
        }
        s = WAKE
            .wait_timeout(s, end - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    s.armed = None;
    ARMED.store(false, Ordering::SeqCst);
}

//! State that one thread changes and another waits on: a mutex and a condition variable
//! used together, every change waking the waiters, every wait bounded by a deadline.
//!
//! The fakes of the export tests (a cut-down owner, a fake `/dev/ggctl`) keep what they
//! saw in one of these, so a test waits for the condition it needs instead of sleeping.

use std::fmt::Debug;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A value behind a mutex whose changes wake the threads waiting on it.
#[derive(Debug, Default)]
pub struct Watched<T> {
    state: Mutex<T>,
    changed: Condvar,
}

impl<T> Watched<T> {
    /// Watches `state`.
    pub fn new(state: T) -> Self {
        Watched {
            state: Mutex::new(state),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, T> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the state, then wakes every waiter.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed.notify_all();
        r
    }

    /// Wakes every waiter: something they look at changed outside the state (a reply
    /// was sent, say).
    pub fn notify(&self) {
        self.changed.notify_all();
    }

    /// Blocks until `done` holds, for `limit` at most; whether it held.
    pub fn wait_until(&self, limit: Duration, mut done: impl FnMut(&T) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut state = self.lock();
        while !done(&state) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// Blocks until `step` returns something (it may change the state on the way, and
    /// every call wakes the other waiters); no deadline, for a fake that serves until
    /// told to stop.
    pub fn serve<R>(&self, mut step: impl FnMut(&mut T) -> Option<R>) -> R {
        let mut state = self.lock();
        loop {
            let r = step(&mut state);
            self.changed.notify_all();
            if let Some(r) = r {
                return r;
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl<T: Debug> Watched<T> {
    /// [`wait_until`](Self::wait_until) for tests: panics with `what` and the state seen
    /// last when `done` does not hold within `limit`.
    ///
    /// # Panics
    /// When the deadline passes first.
    pub fn expect(&self, what: &str, limit: Duration, mut done: impl FnMut(&T) -> bool) {
        if !self.wait_until(limit, &mut done) {
            panic!("timed out waiting for {what}: {:?}", *self.lock());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_change_from_another_thread_ends_the_wait() {
        let w = Arc::new(Watched::new(0u32));
        let writer = {
            let w = Arc::clone(&w);
            std::thread::spawn(move || w.with(|n| *n = 7))
        };
        assert!(w.wait_until(Duration::from_secs(10), |n| *n == 7));
        writer.join().unwrap();
    }

    #[test]
    fn a_condition_that_never_holds_times_out() {
        let w = Watched::new(0u32);
        assert!(!w.wait_until(Duration::from_millis(20), |n| *n == 1));
    }

    #[test]
    #[should_panic(expected = "timed out waiting for seven: 0")]
    fn expect_names_what_it_waited_for() {
        Watched::new(0u32).expect("seven", Duration::from_millis(1), |n| *n == 7);
    }

    #[test]
    fn serve_returns_once_the_step_yields() {
        let w = Arc::new(Watched::new(Vec::<u32>::new()));
        let server = {
            let w = Arc::clone(&w);
            std::thread::spawn(move || w.serve(|q| q.pop()))
        };
        w.with(|q| q.push(3));
        assert_eq!(server.join().unwrap(), 3);
    }
}

//! What the class says and what it asks to be done later: console lines (`printf`), SDT probe
//! firings, deferred work posted as GEOM events, and the dumpconf writer.
//!
//! [`drain`] is the driver's side of the core's polling contract, run after every input: all
//! events first (each message becomes one console line, each probe one firing), then all
//! deferred work, which joins the module's FIFO; one GEOM event is posted per item, and each
//! event runs the oldest item (`gmp_rs_event`), so the class's work stays in FIFO order with
//! GEOM's own events (the re-taste a write-close provokes runs between a path's access drop
//! and its detach).
//!
//! Nothing here allocates: a console line is formatted into a fixed [`Line`] on the stack,
//! probe arguments are the event's own strings, and the FIFO only grows in sleepable contexts
//! (the data path never produces deferred work: a completion on a LOST path, the one case
//! that does, is handed to `g_mp_kt`).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

use geom_multipath::{Event, Level, Message, Probe};

use crate::bindings as b;
use crate::ffi::{kernel, Bio};
use crate::gate::Module;

/// GEOM events posted for the deferred FIFO and not run (or cancelled) yet. Atomic because the
/// EV_CANCEL callback runs under GEOM's event mutex and may not take the class gate.
pub(crate) static POSTED: AtomicUsize = AtomicUsize::new(0);

/// The longest console line; longer ones are cut (provider names are at most 255 bytes, so
/// no FreeBSD message comes near it).
pub(crate) const LINE_MAX: usize = 512;

/// One console line (or a dumpconf answer) being formatted, on the stack.
pub(crate) struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
    cut: bool,
}

impl Line {
    /// An empty line.
    pub(crate) fn new() -> Line {
        Line {
            buf: [0; LINE_MAX],
            len: 0,
            cut: false,
        }
    }

    /// The text so far.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The text, if all of it fitted.
    pub(crate) fn whole(&self) -> Option<&str> {
        if self.cut {
            None
        } else {
            core::str::from_utf8(self.as_bytes()).ok()
        }
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = LINE_MAX - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        self.cut |= n < s.len();
        Ok(())
    }
}

fn level_of(level: Level) -> b::kpi_log_level {
    match level {
        Level::Debug => b::kpi_log_level::KPI_LOG_DEBUG,
        Level::Info => b::kpi_log_level::KPI_LOG_INFO,
        Level::Warning => b::kpi_log_level::KPI_LOG_WARNING,
    }
}

/// Prints one message as one console line.
pub(crate) fn log(message: &Message) {
    let mut line = Line::new();
    let _ = write!(line, "{message}");
    kernel::log(level_of(message.level()), line.as_bytes());
}

fn config(probe: b::kpi_sdt_config, a: &str, bb: &str, error: i32) {
    kernel::sdt_config(probe, a, bb, error);
}

/// Fires one probe. `child` is the attempt being reissued, for `io:restart`.
pub(crate) fn fire(probe: &Probe, child: Option<Bio>) {
    use b::kpi_sdt_config::*;
    match probe {
        Probe::Restore { geom, path } => config(KPI_SDT_RESTORE, geom, path, 0),
        Probe::Remove { geom, path } => config(KPI_SDT_REMOVE, geom, path, 0),
        Probe::Disconnect { geom, path } => config(KPI_SDT_DISCONNECT, geom, path, 0),
        Probe::Fail { geom, path, error } => config(KPI_SDT_FAIL, geom, path, *error),
        Probe::Taste { name, uuid } => config(KPI_SDT_TASTE, name, uuid, 0),
        // The parent is the live request being reissued (its token is its address) and the
        // child its failed attempt, not destroyed yet.
        Probe::Restart { token } => kernel::sdt_restart(child, *token as usize as *mut b::bio),
    }
}

/// The driver's side of the polling contract: print and fire every event, then queue and post
/// every piece of deferred work.
pub(crate) fn drain(m: &mut Module, child: Option<Bio>) {
    while let Some(event) = m.class.poll_event() {
        match event {
            Event::Log(message) => log(&message),
            Event::Probe(probe) => fire(&probe, child),
        }
    }
    while let Some(work) = m.class.poll_deferred() {
        m.deferred.push_back(work);
    }
    post(m);
}

/// Posts one GEOM event per deferred item that has none yet. A failed post (M_NOWAIT) is
/// retried at the next drain.
fn post(m: &Module) {
    while POSTED.load(Ordering::Acquire) < m.deferred.len() {
        if kernel::post_event(kernel::can_sleep()).is_err() {
            break;
        }
        POSTED.fetch_add(1, Ordering::AcqRel);
    }
}

/// One posted event ran (or was cancelled).
pub(crate) fn event_ran() {
    let _ = POSTED.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_keeps_what_fits() {
        let mut line = Line::new();
        let geom = "FRED";
        write!(line, "GEOM_MULTIPATH: {geom} created").unwrap();
        assert_eq!(line.as_bytes(), b"GEOM_MULTIPATH: FRED created");
        let mut long = Line::new();
        for _ in 0..100 {
            long.write_str("0123456789").unwrap();
        }
        assert_eq!(long.as_bytes().len(), LINE_MAX);
        assert_eq!(long.whole(), None, "a cut line is not whole");
        assert_eq!(line.whole(), Some("GEOM_MULTIPATH: FRED created"));
    }
}

//! The host's console: where the class's messages go (as the kernel's go to dmesg), and the
//! counters that stand in for FreeBSD's SDT probes.
//!
//! Every message is emitted as a `tracing` event (target `console`), which the daemon's
//! subscriber sends to syslog and, in the foreground, to stderr; it is also kept in a ring
//! of the last [`RING`] messages with sequence numbers, which `gmultipathd dmesg` and the
//! tests read through the control socket. Probe firings are counted by probe name.

use std::collections::{BTreeMap, VecDeque};

use geom_multipath::{Event, Level};

/// How many messages the ring keeps.
pub const RING: usize = 4096;

/// Messages and probe counts.
#[derive(Debug, Default)]
pub struct Console {
    ring: VecDeque<(u64, String)>,
    next: u64,
    probes: BTreeMap<&'static str, u64>,
}

impl Console {
    /// An empty console.
    pub fn new() -> Console {
        Console::default()
    }

    /// Prints one message at `level`.
    pub fn print(&mut self, level: Level, text: String) {
        match level {
            Level::Warning => tracing::warn!(target: "console", "{text}"),
            Level::Info => tracing::info!(target: "console", "{text}"),
            Level::Debug => tracing::debug!(target: "console", "{text}"),
        }
        if self.ring.len() == RING {
            self.ring.pop_front();
        }
        self.ring.push_back((self.next, text));
        self.next += 1;
    }

    /// Takes one event from the class: prints a message or counts a probe.
    pub fn event(&mut self, event: Event) {
        match event {
            Event::Log(m) => self.print(m.level(), m.to_string()),
            Event::Probe(p) => *self.probes.entry(p.name()).or_insert(0) += 1,
        }
    }

    /// Messages with sequence number ≥ `since`, and the number to ask from next time.
    pub fn since(&self, since: u64) -> (u64, Vec<String>) {
        let lines = self
            .ring
            .iter()
            .filter(|(seq, _)| *seq >= since)
            .map(|(_, l)| l.clone())
            .collect();
        (self.next, lines)
    }

    /// Every probe that fired, with its count.
    pub fn probes(&self) -> Vec<(String, u64)> {
        self.probes
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geom_multipath::{Message, Probe};

    #[test]
    fn messages_are_numbered_and_probes_counted() {
        let mut c = Console::new();
        c.event(Event::Log(Message::Created {
            geom: "FRED".into(),
        }));
        c.event(Event::Probe(Probe::Restore {
            geom: "FRED".into(),
            path: "md0".into(),
        }));
        c.event(Event::Probe(Probe::Restore {
            geom: "FRED".into(),
            path: "md1".into(),
        }));
        c.print(Level::Info, "second".into());
        assert_eq!(
            c.since(0),
            (
                2,
                vec!["GEOM_MULTIPATH: FRED created".to_string(), "second".into()]
            )
        );
        assert_eq!(c.since(1), (2, vec!["second".to_string()]));
        assert_eq!(c.since(2), (2, vec![]));
        assert_eq!(
            c.probes(),
            [("geom:multipath:config:restore".to_string(), 2)]
        );
    }

    #[test]
    fn the_ring_forgets_the_oldest() {
        let mut c = Console::new();
        for i in 0..RING + 3 {
            c.print(Level::Info, format!("m{i}"));
        }
        let (next, lines) = c.since(0);
        assert_eq!(next as usize, RING + 3);
        assert_eq!(lines.len(), RING);
        assert_eq!(lines[0], "m3");
    }
}

//! The counters in the Prometheus text exposition format (version 0.0.4), as node_exporter's
//! textfile collector and any scraper read it: what `gmultipathd metrics` prints and the
//! daemon's `--metrics-file` holds.
//!
//! Names follow Prometheus's conventions: the `gmultipath_` namespace, `_total` on counters,
//! base units (`_bytes`, `_seconds`), labels `geom`, `path`, `op` (`read`, `write`, `delete`,
//! `flush`, `other`), `errno` and `state`. Every family has its `# HELP` and `# TYPE` once,
//! its samples together; label values are escaped as the format says. Latency is a
//! histogram per path and operation with a bucket per power of two from 1.024 µs (the
//! class's histogram merged four buckets to one), written only for operations that have
//! been timed. The module reads the class; it does not decide anything.

use core::fmt::{self, Write};

use crate::class::Class;
use crate::stats::{Histogram, OpKind, LATENCY_BUCKETS};
use crate::topology::{GeomId, PathId};

/// One metric family: its name, type and help.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
}

const fn family(name: &'static str, kind: &'static str, help: &'static str) -> Family {
    Family { name, kind, help }
}

const GEOM_STATE: Family = family(
    "gmultipath_geom_state",
    "gauge",
    "1 for the geom's state (OPTIMAL, DEGRADED, BROKEN).",
);
const GEOM_PATHS: Family = family(
    "gmultipath_geom_paths",
    "gauge",
    "Attached paths that are not LOST.",
);
const GEOM_REQUESTS: Family = family(
    "gmultipath_geom_requests_total",
    "counter",
    "Requests the geom answered, each once however many attempts it took.",
);
const GEOM_BYTES: Family = family(
    "gmultipath_geom_bytes_total",
    "counter",
    "Bytes of the requests the geom answered.",
);
const GEOM_IO_ERRORS: Family = family(
    "gmultipath_geom_io_errors_total",
    "counter",
    "Requests the geom answered with an error.",
);
const GEOM_ERRNO: Family = family(
    "gmultipath_geom_errors_by_errno_total",
    "counter",
    "Requests the geom answered with an error, by errno (other: beyond the first six).",
);
const GEOM_REISSUES: Family = family(
    "gmultipath_geom_reissues_total",
    "counter",
    "Attempts reissued on another path after a path failed them.",
);
const GEOM_FAILOVERS: Family = family(
    "gmultipath_geom_failovers_total",
    "counter",
    "Times the active path failed or was lost and I/O moved away from it.",
);
const GEOM_QUEUE_EPISODES: Family = family(
    "gmultipath_geom_queue_episodes_total",
    "counter",
    "Times requests started waiting for a usable path.",
);
const GEOM_QUEUED: Family = family(
    "gmultipath_geom_queued_requests_total",
    "counter",
    "Requests that waited for a usable path.",
);
const GEOM_QUEUE_FAILED: Family = family(
    "gmultipath_geom_queue_failed_requests_total",
    "counter",
    "Requests that waited for a usable path and then failed.",
);
const PATH_STATE: Family = family(
    "gmultipath_path_state",
    "gauge",
    "1 for the path's state (ACTIVE, PASSIVE, READ, FAIL, LOST, NEW).",
);
const PATH_INFLIGHT: Family = family(
    "gmultipath_path_inflight_requests",
    "gauge",
    "Requests in flight on the path.",
);
const PATH_REQUESTS: Family = family(
    "gmultipath_path_io_requests_total",
    "counter",
    "Attempts the path answered (or was given up on at its deadline).",
);
const PATH_BYTES: Family = family(
    "gmultipath_path_io_bytes_total",
    "counter",
    "Bytes of the attempts the path answered.",
);
const PATH_IO_ERRORS: Family = family(
    "gmultipath_path_io_errors_total",
    "counter",
    "Attempts the path answered with an error (a deadline counts as ENXIO).",
);
const PATH_ERRNO: Family = family(
    "gmultipath_path_errors_by_errno_total",
    "counter",
    "Attempts the path answered with an error, by errno (other: beyond the first six).",
);
const PATH_LATENCY: Family = family(
    "gmultipath_path_io_latency_seconds",
    "histogram",
    "Time from sending an attempt on the path to its answer.",
);
const PATH_FAILURES: Family = family(
    "gmultipath_path_failures_total",
    "counter",
    "Times the path went from good to FAIL.",
);
const PATH_FAILOVERS: Family = family(
    "gmultipath_path_failovers_total",
    "counter",
    "Times the path was the active one when it failed or was lost.",
);
const PATH_REISSUES: Family = family(
    "gmultipath_path_reissues_total",
    "counter",
    "Requests reissued on another path after failing on this one.",
);
const PATH_DEADLINES: Family = family(
    "gmultipath_path_deadlines_total",
    "counter",
    "Attempts given up on at the path's io_timeout.",
);
const PATH_PROBES: Family = family(
    "gmultipath_path_probes_total",
    "counter",
    "Probes of the path checker, by result (good, bad).",
);
const PATH_REINSTATEMENTS: Family = family(
    "gmultipath_path_reinstatements_total",
    "counter",
    "Times the path was reinstated automatically after a good probe.",
);
const PATH_STATE_SECONDS: Family = family(
    "gmultipath_path_state_seconds_total",
    "counter",
    "Time the path spent good and failed (state: good, failed).",
);
const PATH_LAST_FAILURE: Family = family(
    "gmultipath_path_last_failure_age_seconds",
    "gauge",
    "Seconds since the path was last marked FAIL (absent if never), by cause.",
);

/// Labels of one sample, written escaped.
struct Labels<'a>(&'a [(&'a str, &'a str)]);

impl fmt::Display for Labels<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_char('{')?;
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            write!(f, "{name}=\"")?;
            for c in value.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    c => f.write_char(c)?,
                }
            }
            f.write_char('"')?;
        }
        f.write_char('}')
    }
}

/// Seconds from nanoseconds, as the format's float.
struct Seconds(u64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

impl Class {
    /// Writes every counter of every geom and path in the Prometheus text format. Call
    /// [`observe_states`](Class::observe_states) first so the time per state is current.
    pub fn write_metrics(&self, out: &mut dyn Write) -> fmt::Result {
        let geoms: alloc::vec::Vec<GeomId> = self
            .geoms()
            .filter(|&g| self.geom(g).is_some_and(|v| !v.stopping()))
            .collect();
        let paths = || {
            geoms
                .iter()
                .flat_map(|&g| self.geom(g).into_iter().flat_map(|v| v.paths()))
        };
        let geom_labels = |g: GeomId| self.geom(g).map_or("", |v| v.name());
        let path_names = |p: PathId| {
            let v = self.path(p).expect("listed path");
            (geom_labels(v.geom()), v.name())
        };

        head(out, &GEOM_STATE)?;
        for &g in &geoms {
            let state = alloc::format!("{}", self.geom(g).expect("listed").state());
            let labels = [("geom", geom_labels(g)), ("state", state.as_str())];
            writeln!(out, "{}{} 1", GEOM_STATE.name, Labels(&labels))?;
        }
        head(out, &GEOM_PATHS)?;
        for &g in &geoms {
            let n = self.geom(g).expect("listed").ndisks();
            writeln!(
                out,
                "{}{} {n}",
                GEOM_PATHS.name,
                Labels(&[("geom", geom_labels(g))])
            )?;
        }
        for (fam, pick) in [
            (&GEOM_REQUESTS, 0usize),
            (&GEOM_BYTES, 1),
            (&GEOM_IO_ERRORS, 2),
        ] {
            head(out, fam)?;
            for &g in &geoms {
                let s = self.geom_stats(g).expect("listed");
                for kind in OpKind::ALL {
                    let o = s.op(kind);
                    let value = [o.requests, o.bytes, o.errors][pick];
                    let labels = [("geom", geom_labels(g)), ("op", kind.name())];
                    writeln!(out, "{}{} {value}", fam.name, Labels(&labels))?;
                }
            }
        }
        head(out, &GEOM_ERRNO)?;
        for &g in &geoms {
            let s = self.geom_stats(g).expect("listed");
            errno_samples(out, GEOM_ERRNO.name, &[("geom", geom_labels(g))], &s.errors)?;
        }
        for (fam, value) in [
            (
                &GEOM_REISSUES,
                (|s| s.reissues) as fn(&crate::stats::GeomStats) -> u64,
            ),
            (&GEOM_FAILOVERS, |s| s.failovers),
            (&GEOM_QUEUE_EPISODES, |s| s.queue_episodes),
            (&GEOM_QUEUED, |s| s.queued),
            (&GEOM_QUEUE_FAILED, |s| s.queue_failed),
        ] {
            head(out, fam)?;
            for &g in &geoms {
                let v = value(self.geom_stats(g).expect("listed"));
                writeln!(
                    out,
                    "{}{} {v}",
                    fam.name,
                    Labels(&[("geom", geom_labels(g))])
                )?;
            }
        }

        head(out, &PATH_STATE)?;
        for p in paths() {
            let (geom, path) = path_names(p);
            let state = alloc::format!("{}", self.path_state(p).expect("listed"));
            let labels = [("geom", geom), ("path", path), ("state", state.as_str())];
            writeln!(out, "{}{} 1", PATH_STATE.name, Labels(&labels))?;
        }
        head(out, &PATH_INFLIGHT)?;
        for p in paths() {
            let (geom, path) = path_names(p);
            let n = self.path(p).expect("listed").inflight();
            let labels = [("geom", geom), ("path", path)];
            writeln!(out, "{}{} {n}", PATH_INFLIGHT.name, Labels(&labels))?;
        }
        for (fam, pick) in [
            (&PATH_REQUESTS, 0usize),
            (&PATH_BYTES, 1),
            (&PATH_IO_ERRORS, 2),
        ] {
            head(out, fam)?;
            for p in paths() {
                let (geom, path) = path_names(p);
                let s = self.path_stats(p).expect("listed");
                for kind in OpKind::ALL {
                    let o = s.op(kind);
                    let value = [o.requests, o.bytes, o.errors][pick];
                    let labels = [("geom", geom), ("path", path), ("op", kind.name())];
                    writeln!(out, "{}{} {value}", fam.name, Labels(&labels))?;
                }
            }
        }
        head(out, &PATH_ERRNO)?;
        for p in paths() {
            let (geom, path) = path_names(p);
            let s = self.path_stats(p).expect("listed");
            let labels = [("geom", geom), ("path", path)];
            errno_samples(out, PATH_ERRNO.name, &labels, &s.errors)?;
        }
        head(out, &PATH_LATENCY)?;
        for p in paths() {
            let (geom, path) = path_names(p);
            let s = self.path_stats(p).expect("listed");
            for kind in OpKind::ALL {
                let h = &s.op(kind).latency;
                if h.count() != 0 {
                    histogram(
                        out,
                        &[("geom", geom), ("path", path), ("op", kind.name())],
                        h,
                    )?;
                }
            }
        }
        for (fam, value) in [
            (
                &PATH_FAILURES,
                (|s| s.failures) as fn(&crate::stats::PathStats) -> u64,
            ),
            (&PATH_FAILOVERS, |s| s.failovers),
            (&PATH_REISSUES, |s| s.reissues),
            (&PATH_DEADLINES, |s| s.deadlines),
            (&PATH_REINSTATEMENTS, |s| s.reinstatements),
        ] {
            head(out, fam)?;
            for p in paths() {
                let (geom, path) = path_names(p);
                let v = value(self.path_stats(p).expect("listed"));
                let labels = [("geom", geom), ("path", path)];
                writeln!(out, "{}{} {v}", fam.name, Labels(&labels))?;
            }
        }
        head(out, &PATH_PROBES)?;
        for p in paths() {
            let (geom, path) = path_names(p);
            let s = self.path_stats(p).expect("listed");
            for (result, v) in [("good", s.probes_good), ("bad", s.probes_bad)] {
                let labels = [("geom", geom), ("path", path), ("result", result)];
                writeln!(out, "{}{} {v}", PATH_PROBES.name, Labels(&labels))?;
            }
        }
        head(out, &PATH_STATE_SECONDS)?;
        for p in paths() {
            let (geom, path) = path_names(p);
            let s = self.path_stats(p).expect("listed");
            for (state, ns) in [("good", s.good_ns), ("failed", s.failed_ns)] {
                let labels = [("geom", geom), ("path", path), ("state", state)];
                let secs = Seconds(ns);
                writeln!(out, "{}{} {secs}", PATH_STATE_SECONDS.name, Labels(&labels))?;
            }
        }
        head(out, &PATH_LAST_FAILURE)?;
        let now = self.clock().unwrap_or_default();
        for p in paths() {
            let (geom, path) = path_names(p);
            if let Some((at, cause)) = self.path_stats(p).expect("listed").last_failure {
                let cause = alloc::format!("{cause}");
                let labels = [("geom", geom), ("path", path), ("cause", cause.as_str())];
                let age = Seconds(now.0.saturating_sub(at.0));
                writeln!(out, "{}{} {age}", PATH_LAST_FAILURE.name, Labels(&labels))?;
            }
        }
        Ok(())
    }
}

fn head(out: &mut dyn Write, f: &Family) -> fmt::Result {
    writeln!(out, "# HELP {} {}", f.name, f.help)?;
    writeln!(out, "# TYPE {} {}", f.name, f.kind)
}

fn errno_samples(
    out: &mut dyn Write,
    name: &str,
    labels: &[(&str, &str)],
    counts: &crate::stats::ErrnoCounts,
) -> fmt::Result {
    let mut sample = |errno: &str, n: u64| {
        let mut all: alloc::vec::Vec<(&str, &str)> = labels.to_vec();
        all.push(("errno", errno));
        writeln!(out, "{name}{} {n}", Labels(&all))
    };
    for (e, n) in counts.iter() {
        sample(&alloc::format!("{e}"), n)?;
    }
    if counts.other() != 0 {
        sample("other", counts.other())?;
    }
    Ok(())
}

/// One histogram: cumulative buckets at each power of two the class's buckets end on
/// (every fourth), `+Inf`, the sum and the count.
fn histogram(out: &mut dyn Write, labels: &[(&str, &str)], h: &Histogram) -> fmt::Result {
    let name = PATH_LATENCY.name;
    let mut cumulative = 0u64;
    for (i, &n) in h.buckets().iter().enumerate().take(LATENCY_BUCKETS - 1) {
        cumulative += n;
        if i % 4 != 0 {
            continue;
        }
        let le = alloc::format!("{}", Seconds(Histogram::bucket_end(i)));
        let mut all: alloc::vec::Vec<(&str, &str)> = labels.to_vec();
        all.push(("le", le.as_str()));
        writeln!(out, "{name}_bucket{} {cumulative}", Labels(&all))?;
    }
    let mut all: alloc::vec::Vec<(&str, &str)> = labels.to_vec();
    all.push(("le", "+Inf"));
    writeln!(out, "{name}_bucket{} {}", Labels(&all), h.count())?;
    let sum = Seconds(h.sum_ns());
    writeln!(out, "{name}_sum{} {sum}", Labels(labels))?;
    writeln!(out, "{name}_count{} {}", Labels(labels), h.count())
}

//! The counters in `kern.geom.confxml` (an extension, only when asked): the flat elements a
//! geom's and a path's `<config>` gain after FreeBSD's, and reading them back from the
//! config items a GEOM XML parser collects (what `gmultipath list --libxo`, `status` and
//! `stat` show, on either driver).
//!
//! This module alone knows the element names; [`crate::stats`] owns the counters. Every
//! element is written whatever its value, so readers need no defaults; lists are
//! space-separated `key:count` pairs (errors by errno with `other` last, histogram buckets
//! by index, only the non-empty ones).

use alloc::string::String;
use core::fmt::{self, Write};

use crate::errno::Errno;
use crate::stats::{
    ErrnoCounts, FailCause, GeomOpStats, GeomStats, Histogram, OpKind, PathOpStats, PathStats,
};
use crate::timer::Time;

/// The version of this layout, written as `stats_version`: a reader refuses others.
pub const VERSION: u32 = 1;

/// Writes a geom's counters at `indent`, with the class's clock.
pub fn geom(out: &mut dyn Write, indent: &str, clock: Option<Time>, s: &GeomStats) -> fmt::Result {
    writeln!(out, "{indent}<stats_version>{VERSION}</stats_version>")?;
    writeln!(
        out,
        "{indent}<clock_ns>{}</clock_ns>",
        clock.unwrap_or_default().0
    )?;
    for kind in OpKind::ALL {
        let o = s.op(kind);
        op_counts(out, indent, kind, o.requests, o.bytes, o.errors)?;
    }
    errors(out, indent, &s.errors)?;
    counts(
        out,
        indent,
        &[
            ("reissues", s.reissues),
            ("failovers", s.failovers),
            ("queue_episodes", s.queue_episodes),
            ("queued", s.queued),
            ("queue_failed", s.queue_failed),
        ],
    )
}

/// Writes a path's counters at `indent`, with its requests in flight.
pub fn path(out: &mut dyn Write, indent: &str, inflight: u32, s: &PathStats) -> fmt::Result {
    writeln!(out, "{indent}<stats_version>{VERSION}</stats_version>")?;
    writeln!(out, "{indent}<inflight>{inflight}</inflight>")?;
    for kind in OpKind::ALL {
        let o = s.op(kind);
        op_counts(out, indent, kind, o.requests, o.bytes, o.errors)?;
        let k = kind.name();
        let h = &o.latency;
        writeln!(
            out,
            "{indent}<{k}_latency_count>{}</{k}_latency_count>",
            h.count()
        )?;
        writeln!(
            out,
            "{indent}<{k}_latency_sum_ns>{}</{k}_latency_sum_ns>",
            h.sum_ns()
        )?;
        writeln!(
            out,
            "{indent}<{k}_latency_max_ns>{}</{k}_latency_max_ns>",
            h.max_ns()
        )?;
        write!(out, "{indent}<{k}_latency_buckets>")?;
        let mut sep = "";
        for (i, &n) in h.buckets().iter().enumerate().filter(|(_, &n)| n != 0) {
            write!(out, "{sep}{i}:{n}")?;
            sep = " ";
        }
        writeln!(out, "</{k}_latency_buckets>")?;
    }
    errors(out, indent, &s.errors)?;
    counts(
        out,
        indent,
        &[
            ("failures", s.failures),
            ("failovers", s.failovers),
            ("reissues", s.reissues),
            ("deadlines", s.deadlines),
            ("probes_good", s.probes_good),
            ("probes_bad", s.probes_bad),
            ("reinstatements", s.reinstatements),
            ("good_ns", s.good_ns),
            ("failed_ns", s.failed_ns),
        ],
    )?;
    let (at, cause) = match s.last_failure {
        Some((at, cause)) => (at.0, alloc::format!("{cause}")),
        None => (0, String::new()),
    };
    writeln!(out, "{indent}<last_failure_ns>{at}</last_failure_ns>")?;
    writeln!(
        out,
        "{indent}<last_failure_cause>{cause}</last_failure_cause>"
    )
}

/// One operation's `<op>_requests`, `<op>_bytes` and `<op>_errors`, as geoms and paths both
/// count them.
fn op_counts(
    out: &mut dyn Write,
    indent: &str,
    kind: OpKind,
    requests: u64,
    bytes: u64,
    errors: u64,
) -> fmt::Result {
    let k = kind.name();
    writeln!(out, "{indent}<{k}_requests>{requests}</{k}_requests>")?;
    writeln!(out, "{indent}<{k}_bytes>{bytes}</{k}_bytes>")?;
    writeln!(out, "{indent}<{k}_errors>{errors}</{k}_errors>")
}

/// Plain `<name>value</name>` elements, one a line.
fn counts(out: &mut dyn Write, indent: &str, elements: &[(&str, u64)]) -> fmt::Result {
    for (name, value) in elements {
        writeln!(out, "{indent}<{name}>{value}</{name}>")?;
    }
    Ok(())
}

fn errors(out: &mut dyn Write, indent: &str, e: &ErrnoCounts) -> fmt::Result {
    write!(out, "{indent}<errors>")?;
    let mut sep = "";
    for (errno, n) in e.iter() {
        write!(out, "{sep}{errno}:{n}")?;
        sep = " ";
    }
    if e.other() != 0 {
        write!(out, "{sep}other:{}", e.other())?;
    }
    writeln!(out, "</errors>")
}

/// A geom's counters read back, with the class clock they were read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeomReading {
    /// The class's clock when they were written (nanoseconds).
    pub clock_ns: u64,
    /// The counters.
    pub stats: GeomStats,
}

/// A path's counters read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathReading {
    /// Requests in flight on it.
    pub inflight: u32,
    /// The counters (the time per state as of the geom's `clock_ns`).
    pub stats: PathStats,
}

/// A geom's counters from its config items (`get` answers an element's text; an empty
/// element may be `None` or `""`); `None` when they are absent or of another version.
pub fn read_geom<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<GeomReading> {
    let r = Reader(&get);
    if r.num("stats_version")? != u64::from(VERSION) {
        return None;
    }
    let mut stats = GeomStats::default();
    for kind in OpKind::ALL {
        let k = kind.name();
        stats.ops[kind as usize] = GeomOpStats {
            requests: r.num_of(k, "requests")?,
            bytes: r.num_of(k, "bytes")?,
            errors: r.num_of(k, "errors")?,
        };
    }
    stats.errors = r.errors()?;
    stats.reissues = r.num("reissues")?;
    stats.failovers = r.num("failovers")?;
    stats.queue_episodes = r.num("queue_episodes")?;
    stats.queued = r.num("queued")?;
    stats.queue_failed = r.num("queue_failed")?;
    Some(GeomReading {
        clock_ns: r.num("clock_ns")?,
        stats,
    })
}

/// A path's counters from its config items; `None` when absent or of another version.
pub fn read_path<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<PathReading> {
    let r = Reader(&get);
    if r.num("stats_version")? != u64::from(VERSION) {
        return None;
    }
    let mut stats = PathStats::default();
    for kind in OpKind::ALL {
        let k = kind.name();
        let buckets = pairs(r.text(&alloc::format!("{k}_latency_buckets")))
            .map(|(i, n)| Some((i.parse().ok()?, n)))
            .collect::<Option<alloc::vec::Vec<(usize, u64)>>>()?;
        stats.ops[kind as usize] = PathOpStats {
            requests: r.num_of(k, "requests")?,
            bytes: r.num_of(k, "bytes")?,
            errors: r.num_of(k, "errors")?,
            latency: Histogram::from_parts(
                buckets,
                r.num_of(k, "latency_count")?,
                r.num_of(k, "latency_sum_ns")?,
                r.num_of(k, "latency_max_ns")?,
            )?,
        };
    }
    stats.errors = r.errors()?;
    stats.failures = r.num("failures")?;
    stats.failovers = r.num("failovers")?;
    stats.reissues = r.num("reissues")?;
    stats.deadlines = r.num("deadlines")?;
    stats.probes_good = r.num("probes_good")?;
    stats.probes_bad = r.num("probes_bad")?;
    stats.reinstatements = r.num("reinstatements")?;
    stats.good_ns = r.num("good_ns")?;
    stats.failed_ns = r.num("failed_ns")?;
    let cause = r.text("last_failure_cause");
    if !cause.is_empty() {
        stats.last_failure = Some((Time(r.num("last_failure_ns")?), parse_cause(cause)?));
    }
    Some(PathReading {
        inflight: u32::try_from(r.num("inflight")?).ok()?,
        stats,
    })
}

fn parse_cause(text: &str) -> Option<FailCause> {
    let errno = |n: &str| n.parse().ok().map(Errno);
    match text {
        "deadline" => Some(FailCause::Deadline),
        "admin" => Some(FailCause::Admin),
        _ => {
            if let Some(n) = text.strip_prefix("probe error ") {
                errno(n).map(FailCause::Probe)
            } else {
                text.strip_prefix("error ")
                    .and_then(errno)
                    .map(FailCause::Error)
            }
        }
    }
}

/// `key:count` pairs of a list; a malformed pair ends the list.
fn pairs(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.split_ascii_whitespace().map_while(|pair| {
        let (k, n) = pair.split_once(':')?;
        Some((k, n.parse().ok()?))
    })
}

struct Reader<'r, 'a>(&'r dyn Fn(&str) -> Option<&'a str>);

impl<'a> Reader<'_, 'a> {
    fn text(&self, name: &str) -> &'a str {
        (self.0)(name).unwrap_or("")
    }

    fn num(&self, name: &str) -> Option<u64> {
        self.text(name).parse().ok()
    }

    fn num_of(&self, op: &str, what: &str) -> Option<u64> {
        self.num(&alloc::format!("{op}_{what}"))
    }

    fn errors(&self) -> Option<ErrnoCounts> {
        let text = self.text("errors");
        let mut counts = ErrnoCounts::default();
        let mut read = 0;
        for (k, n) in pairs(text) {
            let errno = match k {
                "other" => None,
                k => Some(Errno(k.parse().ok()?)),
            };
            counts.add_counted(errno, n);
            read += 1;
        }
        (read == text.split_ascii_whitespace().count()).then_some(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::string::ToString;

    /// The element texts of what a writer wrote, by name.
    fn items(xml: &str) -> BTreeMap<String, String> {
        xml.lines()
            .filter_map(|l| {
                let l = l.trim();
                let name = l.strip_prefix('<')?.split_once('>')?.0;
                let text = l.strip_prefix(&alloc::format!("<{name}>"))?;
                let text = text.strip_suffix(&alloc::format!("</{name}>"))?;
                Some((name.to_string(), text.to_string()))
            })
            .collect()
    }

    #[test]
    fn path_counters_read_back_as_written() {
        let mut s = PathStats::default();
        s.attempt(OpKind::Write, 4096, Err(Errno::EIO), Some(3_000_000));
        s.attempt(OpKind::Read, 512, Ok(()), Some(80_000));
        s.attempt(OpKind::Read, 512, Ok(()), None);
        for e in 1..=8 {
            s.errors.record(Errno(e));
        }
        s.failures = 2;
        s.failovers = 1;
        s.deadlines = 1;
        s.probes_bad = 3;
        s.good_ns = 10;
        s.failed_ns = 20;
        s.last_failure = Some((Time(77), FailCause::Probe(Errno::EIO)));
        let mut xml = String::new();
        path(&mut xml, "\t", 3, &s).unwrap();
        let items = items(&xml);
        assert_eq!(items["errors"], "5:2 1:1 2:1 3:1 4:1 6:1 other:2");
        assert_eq!(items["last_failure_cause"], "probe error 5");
        let back = read_path(|n| items.get(n).map(String::as_str)).unwrap();
        assert_eq!(back.inflight, 3);
        // Read-back errno slots fill in list order; the counts are what matters.
        assert_eq!(back.stats.errors.total(), s.errors.total());
        let mut back_stats = back.stats.clone();
        back_stats.errors = s.errors.clone();
        back_stats.since = s.since;
        assert_eq!(back_stats, s);
    }

    #[test]
    fn geom_counters_read_back_and_other_versions_are_refused() {
        let mut s = GeomStats::default();
        s.answered(OpKind::Flush, 0, Ok(()));
        s.answered(OpKind::Read, 4096, Err(Errno::ENXIO));
        s.reissues = 4;
        s.queue_failed = 1;
        let mut xml = String::new();
        geom(&mut xml, "", Some(Time(99)), &s).unwrap();
        let mut items = items(&xml);
        let back = read_geom(|n| items.get(n).map(String::as_str)).unwrap();
        assert_eq!(
            back,
            GeomReading {
                clock_ns: 99,
                stats: s
            }
        );
        items.insert("stats_version".into(), "2".into());
        assert_eq!(read_geom(|n| items.get(n).map(String::as_str)), None);
        items.clear();
        assert_eq!(read_geom(|n| items.get(n).map(String::as_str)), None);
    }
}

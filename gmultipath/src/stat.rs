//! `gmultipath stat [-I interval] [-c count] [name ...]` (an extension, in the spirit of
//! gstat(8)): what each path is doing — requests and MiB per second, mean and 99th
//! percentile latency, errors, state — refreshed every interval. On a terminal each report
//! replaces the last one; otherwise reports follow one another as lines. With
//! `--libxo json|xml` each report is one document ([`crate::view::stat`]).
//!
//! It reads the class's counters through the host's `StatsXml` call (the GEOM XML with the
//! counters) and keeps nothing between runs: each report covers the interval since the
//! previous reading, the first one the interval since a reading taken at start.

use std::io::Write;
use std::time::Duration;

use geom_multipath_proto::{Answer, Call};

use crate::backend::Backend;
use crate::libxo::{self, Xo};
use crate::mesh;
use crate::view::{self, Reading};

/// What `stat`'s command line asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct StatArgs {
    /// Time between reports.
    pub interval: Duration,
    /// Reports to print, or `None` for ever.
    pub count: Option<u64>,
    /// Geoms to show (all when empty).
    pub names: Vec<String>,
}

/// The usage line of `stat`.
pub const USAGE: &str = "usage: gmultipath stat [-I interval] [-c count] [name ...]\n";

/// Parses `stat`'s arguments (after the word `stat`): `-I` as gstat(8) reads it (a number
/// with an optional `s`, `ms` or `us` suffix, microseconds without one), `-c` a positive
/// count.
pub fn parse(words: &[String]) -> Result<StatArgs, String> {
    let spec = [
        crate::getopt::Spec {
            ch: 'I',
            takes_value: true,
        },
        crate::getopt::Spec {
            ch: 'c',
            takes_value: true,
        },
    ];
    let parsed = crate::getopt::getopt(words, &spec).map_err(|e| e.to_string())?;
    let mut args = StatArgs {
        interval: Duration::from_secs(1),
        count: None,
        names: parsed.operands,
    };
    for (ch, value) in parsed.options {
        let value = value.unwrap_or_default();
        match ch {
            'I' => {
                args.interval =
                    interval(&value).ok_or_else(|| format!("Invalid interval: '{value}'."))?;
            }
            'c' => {
                args.count = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|&n: &u64| n > 0)
                        .ok_or_else(|| format!("Invalid count: '{value}'."))?,
                );
            }
            _ => unreachable!("getopt only returns table letters"),
        }
    }
    Ok(args)
}

/// gstat(8)'s `-I`: `1s`, `500ms`, `250000us` or `250000` (microseconds).
pub fn interval(text: &str) -> Option<Duration> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1_000.0)
    } else if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        (text, 1.0)
    };
    let n: f64 = number.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(n * scale / 1_000_000.0).ok()
}

/// Where reports go and how.
pub struct Screen<'a> {
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// It is a terminal: each report replaces the last.
    pub terminal: bool,
    /// `--libxo`, if given.
    pub xo: Option<Xo>,
}

/// Reads the counters (the host's `StatsXml`).
fn read(backend: &mut dyn Backend, names: &[&str]) -> Result<Reading, String> {
    let xml = match backend.host_call(&Call::StatsXml) {
        None => {
            return Err("the kernel module keeps no counters yet; stat needs gmultipathd".into())
        }
        Some(Err(e)) => return Err(format!("Cannot get GEOM tree: {}", crate::strerror(&e))),
        Some(Ok(Answer::Text(xml))) => xml,
        Some(Ok(other)) => return Err(format!("unexpected answer {other:?}")),
    };
    let mesh =
        mesh::parse(&xml).map_err(|e| format!("Cannot get GEOM tree: {}", e.errno_message()))?;
    view::reading(&mesh, "MULTIPATH", names).map_err(|e| e.to_string())
}

/// Runs `stat`: a first reading, then `count` reports `interval` apart (for ever without
/// a count). `sleep` waits between readings (the real one sleeps; tests pass their own).
pub fn run(
    args: &StatArgs,
    backend: &mut dyn Backend,
    screen: &mut Screen<'_>,
    sleep: &mut dyn FnMut(Duration),
) -> Result<(), String> {
    let names: Vec<&str> = args.names.iter().map(String::as_str).collect();
    let mut before = read(backend, &names)?;
    let mut printed = 0u64;
    while args.count.is_none_or(|c| printed < c) {
        sleep(args.interval);
        let now = read(backend, &names)?;
        let secs = elapsed(&before, &now).unwrap_or(args.interval.as_secs_f64());
        let report = match screen.xo.filter(Xo::structured) {
            Some(xo) => libxo::document(xo, view::TOP, view::stat(&now, Some(&before), secs)),
            None => text(&now, &before, secs),
        };
        if screen.terminal && screen.xo.is_none_or(|x| !x.structured()) {
            // Home and clear to the end: the report replaces the last one in place.
            let _ = screen.out.write_all(b"\x1b[H\x1b[J");
        }
        screen
            .out
            .write_all(report.as_bytes())
            .and_then(|()| screen.out.flush())
            .map_err(|e| crate::strerror(&e))?;
        printed += 1;
        before = now;
    }
    Ok(())
}

/// Seconds between two readings on the class's clock (the first geom both have).
fn elapsed(before: &Reading, now: &Reading) -> Option<f64> {
    now.geoms.iter().find_map(|g| {
        let b = before.geoms.iter().find(|b| b.name == g.name)?;
        let ns = g.reading.clock_ns.checked_sub(b.reading.clock_ns)?;
        (ns > 0).then(|| ns as f64 / 1e9)
    })
}

/// One text report: a header with the interval, then a line per path.
pub fn text(now: &Reading, before: &Reading, secs: f64) -> String {
    let mut out = format!(
        "dT: {secs:.3}s\n{:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}  {:<8} {:<16} {}\n",
        "L(q)", "ops/s", "r/s", "w/s", "MiB/s", "ms/op", "p99 ms", "errs", "state", "path", "geom"
    );
    for g in &now.geoms {
        let earlier = before.geoms.iter().find(|b| b.name == g.name);
        for (name, state, r) in &g.paths {
            let prev = earlier
                .and_then(|e| e.paths.iter().find(|(n, _, _)| n == name))
                .map(|(_, _, r)| &r.stats);
            let rate = view::rate(&r.stats, prev, secs);
            out.push_str(&format!(
                "{:>5} {:>8.0} {:>8.0} {:>8.0} {:>8.2} {:>8.3} {:>8.3} {:>6}  {:<8} {:<16} {}\n",
                r.inflight,
                rate.iops,
                rate.read_iops,
                rate.write_iops,
                rate.mib_per_s,
                rate.avg_latency_ms,
                rate.p99_latency_ms,
                rate.errors,
                state,
                name,
                g.name
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn intervals_read_as_gstat_reads_them() {
        assert_eq!(interval("1s"), Some(Duration::from_secs(1)));
        assert_eq!(interval("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(interval("250us"), Some(Duration::from_micros(250)));
        assert_eq!(interval("250000"), Some(Duration::from_millis(250)));
        assert_eq!(interval("0.5s"), Some(Duration::from_millis(500)));
        assert_eq!(interval("fast"), None);
        assert_eq!(interval("-1s"), None);
    }

    #[test]
    fn arguments_and_their_errors() {
        let a = parse(&words(&["-I", "2s", "-c", "3", "FRED"])).unwrap();
        assert_eq!(a.interval, Duration::from_secs(2));
        assert_eq!(a.count, Some(3));
        assert_eq!(a.names, ["FRED"]);
        let d = parse(&[]).unwrap();
        assert_eq!((d.interval, d.count), (Duration::from_secs(1), None));
        assert_eq!(
            parse(&words(&["-c", "0"])).unwrap_err(),
            "Invalid count: '0'."
        );
        assert_eq!(
            parse(&words(&["-I", "x"])).unwrap_err(),
            "Invalid interval: 'x'."
        );
        assert!(parse(&words(&["-z"])).is_err());
    }
}

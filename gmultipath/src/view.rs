//! What the machine-readable documents say (`--libxo json|xml`, an extension): `list`,
//! `status`, `getactive` and `stat` as serde values built from the same GEOM XML the text
//! renderer reads ([`crate::mesh`]), the counters read back with the core's own reader
//! ([`geom_multipath::stats_xml`]).
//!
//! This module decides the documents' members; [`crate::libxo`] encodes them and
//! `gmultipath/schema/gmultipath-stats.schema.json` describes them (the tests hold every
//! document to it). Names follow the XML's, in lower case; sizes are bytes, times are
//! nanoseconds (`_ns`) or seconds where the member says so; rates are per second.

use geom_multipath::stats::{quantile_of, OpKind, PathStats, LATENCY_BUCKETS};
use geom_multipath::stats_xml::{self, GeomReading, PathReading};
use serde::Serialize;
use serde_json::Value;

use crate::mesh::{ConfigItem, Consumer, Geom, Mesh, Provider};
use crate::render::{first_state, named_or_shown, shown_geoms, RenderError};

/// The root member every document of this class hangs under.
pub const TOP: &str = "multipath";

fn config<'a>(items: &'a [ConfigItem], name: &str) -> Option<&'a str> {
    items
        .iter()
        .find(|i| i.name.eq_ignore_ascii_case(name))
        .and_then(|i| i.value.as_deref())
}

fn to_value(v: impl Serialize) -> Value {
    serde_json::to_value(v).expect("plain data always serialises")
}

// ----- list ------------------------------------------------------------------------------

#[derive(Serialize)]
struct ListGeom<'a> {
    name: Option<&'a str>,
    state: Option<&'a str>,
    uuid: Option<&'a str>,
    mode: Option<&'a str>,
    #[serde(rename = "type")]
    kind: Option<&'a str>,
    provider: Vec<ListProvider<'a>>,
    consumer: Vec<ListProvider<'a>>,
}

#[derive(Serialize)]
struct ListProvider<'a> {
    name: Option<&'a str>,
    mediasize: i64,
    sectorsize: u32,
    stripesize: i64,
    stripeoffset: i64,
    access: Option<&'a str>,
    state: Option<&'a str>,
}

fn list_provider<'a>(
    p: &'a Provider,
    access: Option<&'a str>,
    state: Option<&'a str>,
) -> ListProvider<'a> {
    ListProvider {
        name: p.name.as_deref(),
        mediasize: p.mediasize,
        sectorsize: p.sectorsize,
        stripesize: p.stripesize,
        stripeoffset: p.stripeoffset,
        access,
        state,
    }
}

fn list_consumer<'a>(mesh: &'a Mesh, c: &'a Consumer) -> Option<ListProvider<'a>> {
    let p = mesh.consumer_provider(c)?;
    Some(list_provider(
        p,
        c.mode.as_deref(),
        config(&c.config, "state"),
    ))
}

/// The geoms `list` shows: those named (each must exist), else the shown ones.
fn list_selection<'m>(
    mesh: &'m Mesh,
    class: &str,
    names: &[&str],
    all: bool,
) -> Result<Vec<&'m Geom>, RenderError> {
    let Some(classp) = mesh.find_class(class) else {
        return Err(RenderError::ListNoClass(class.to_owned()));
    };
    if names.is_empty() {
        return Ok(shown_geoms(classp, all).collect());
    }
    names
        .iter()
        .map(|&name| {
            classp
                .find_geom(name)
                .ok_or_else(|| RenderError::NoInstance {
                    class: class.to_owned(),
                    name: name.to_owned(),
                })
        })
        .collect()
}

/// `list [-a] [name ...]` as a document body.
pub fn list(mesh: &Mesh, class: &str, names: &[&str], all: bool) -> Result<Value, RenderError> {
    let geoms = list_selection(mesh, class, names, all)?;
    let geoms: Vec<ListGeom<'_>> = geoms
        .into_iter()
        .map(|g| ListGeom {
            name: g.name.as_deref(),
            state: config(&g.config, "state"),
            uuid: config(&g.config, "uuid"),
            mode: config(&g.config, "mode"),
            kind: config(&g.config, "type"),
            provider: g
                .providers
                .iter()
                .map(|p| list_provider(p, p.mode.as_deref(), config(&p.config, "state")))
                .collect(),
            consumer: g
                .consumers
                .iter()
                .filter_map(|c| list_consumer(mesh, c))
                .collect(),
        })
        .collect();
    Ok(serde_json::json!({ "geom": to_value(geoms) }))
}

// ----- status ----------------------------------------------------------------------------

#[derive(Serialize)]
struct StatusRow<'a> {
    name: &'a str,
    status: &'a str,
    component: Vec<Component<'a>>,
}

#[derive(Serialize, Clone, Copy)]
struct Component<'a> {
    name: &'a str,
    state: Option<&'a str>,
}

/// `status [-ag] [name ...]` as a document body: one row per provider (per geom with
/// `geoms`), with its components.
pub fn status(
    mesh: &Mesh,
    class: &str,
    names: &[&str],
    all: bool,
    geoms_form: bool,
) -> Result<Value, RenderError> {
    let Some(classp) = mesh.find_class(class) else {
        return Err(RenderError::StatusNoClass(class.to_owned()));
    };
    let mut rows = Vec::new();
    for geom in named_or_shown(classp, names, all)? {
        let component: Vec<Component<'_>> = geom
            .consumers
            .iter()
            .filter_map(|c| {
                let p = mesh.consumer_provider(c)?;
                Some(Component {
                    name: p.name.as_deref().unwrap_or("(null)"),
                    state: config(&c.config, "state"),
                })
            })
            .collect();
        let geom_state = first_state(&geom.config);
        if geoms_form {
            rows.push(StatusRow {
                name: geom.name.as_deref().unwrap_or("(null)"),
                status: geom_state.unwrap_or("N/A"),
                component,
            });
        } else {
            for p in &geom.providers {
                rows.push(StatusRow {
                    name: p.name.as_deref().unwrap_or("(null)"),
                    status: first_state(&p.config).or(geom_state).unwrap_or("N/A"),
                    component: component.clone(),
                });
            }
        }
    }
    Ok(serde_json::json!({ "geom": to_value(rows) }))
}

// ----- getactive -------------------------------------------------------------------------

/// `getactive name` as a document body: the geom and the paths the class named (none when
/// it answered `none`).
pub fn getactive(geom: &str, output: &str) -> Value {
    let active: Vec<&str> = output.split_whitespace().filter(|w| *w != "none").collect();
    serde_json::json!({ "geom": geom, "active": active })
}

// ----- stat ------------------------------------------------------------------------------

/// One reading of the counters: each geom with its paths, in `list` order.
#[derive(Clone, Debug, Default)]
pub struct Reading {
    /// The geoms that carry counters.
    pub geoms: Vec<GeomSample>,
}

/// A geom's counters and its paths'.
#[derive(Clone, Debug)]
pub struct GeomSample {
    /// Geom name.
    pub name: String,
    /// OPTIMAL, DEGRADED, BROKEN.
    pub state: String,
    /// Active/Passive, …
    pub mode: String,
    /// The counters.
    pub reading: GeomReading,
    /// Its paths: provider name, state, counters.
    pub paths: Vec<(String, String, PathReading)>,
}

/// The counters of the MULTIPATH class's geoms in `mesh` (from `StatsXml`), limited to
/// `names` when any are given; a named geom that is not there is an error.
pub fn reading(mesh: &Mesh, class: &str, names: &[&str]) -> Result<Reading, RenderError> {
    let Some(classp) = mesh.find_class(class) else {
        return Err(RenderError::StatusNoClass(class.to_owned()));
    };
    let geoms = named_or_shown(classp, names, false)?;
    let mut out = Reading::default();
    for g in geoms {
        let get = |n: &str| config(&g.config, n);
        let Some(reading) = stats_xml::read_geom(get) else {
            continue;
        };
        let paths = g
            .consumers
            .iter()
            .filter_map(|c| {
                let name = mesh.consumer_provider(c)?.name.clone()?;
                let state = config(&c.config, "state").unwrap_or("").to_owned();
                let r = stats_xml::read_path(|n| config(&c.config, n))?;
                Some((name, state, r))
            })
            .collect();
        out.geoms.push(GeomSample {
            name: g.name.clone().unwrap_or_default(),
            state: config(&g.config, "state").unwrap_or("").to_owned(),
            mode: config(&g.config, "mode").unwrap_or("").to_owned(),
            reading,
            paths,
        });
    }
    Ok(out)
}

/// What a path did between two readings.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Rate {
    /// Attempts per second, all operations.
    pub iops: f64,
    /// Reads per second.
    pub read_iops: f64,
    /// Writes per second.
    pub write_iops: f64,
    /// MiB per second, all operations.
    pub mib_per_s: f64,
    /// Mean latency of the attempts timed in the interval, milliseconds.
    pub avg_latency_ms: f64,
    /// Their 99th percentile, milliseconds.
    pub p99_latency_ms: f64,
    /// Errors in the interval.
    pub errors: u64,
}

/// The rates of `now` over `before` (the same path one interval earlier), `secs` apart;
/// all zero without an earlier reading.
pub fn rate(now: &PathStats, before: Option<&PathStats>, secs: f64) -> Rate {
    let Some(before) = before.filter(|_| secs > 0.0) else {
        return Rate::default();
    };
    let d = |f: &dyn Fn(&PathStats) -> u64| f(now).saturating_sub(f(before));
    let requests = d(&|s| s.requests());
    let bytes = d(&|s| s.ops.iter().map(|o| o.bytes).sum());
    let errors = d(&|s| s.ops.iter().map(|o| o.errors).sum());
    let timed = d(&|s| s.ops.iter().map(|o| o.latency.count()).sum());
    let sum_ns = d(&|s| s.ops.iter().map(|o| o.latency.sum_ns()).sum());
    let mut buckets = [0u64; LATENCY_BUCKETS];
    let mut max_ns = 0;
    for kind in OpKind::ALL {
        let (a, b) = (&now.op(kind).latency, &before.op(kind).latency);
        for (i, slot) in buckets.iter_mut().enumerate() {
            *slot += a.buckets()[i].saturating_sub(b.buckets()[i]);
        }
        max_ns = max_ns.max(a.max_ns());
    }
    let op = |k: OpKind| now.op(k).requests.saturating_sub(before.op(k).requests);
    Rate {
        iops: requests as f64 / secs,
        read_iops: op(OpKind::Read) as f64 / secs,
        write_iops: op(OpKind::Write) as f64 / secs,
        mib_per_s: bytes as f64 / secs / (1024.0 * 1024.0),
        avg_latency_ms: if timed == 0 {
            0.0
        } else {
            sum_ns as f64 / timed as f64 / 1e6
        },
        p99_latency_ms: quantile_of(&buckets, max_ns, 990) as f64 / 1e6,
        errors,
    }
}

#[derive(Serialize)]
struct OpCounts {
    requests: u64,
    bytes: u64,
    errors: u64,
}

#[derive(Serialize)]
struct PathOpCounts {
    requests: u64,
    bytes: u64,
    errors: u64,
    latency_count: u64,
    latency_sum_ns: u64,
    latency_max_ns: u64,
    latency_p50_ns: u64,
    latency_p99_ns: u64,
}

fn errno_map(e: &geom_multipath::stats::ErrnoCounts) -> serde_json::Map<String, Value> {
    let mut m: serde_json::Map<String, Value> = e
        .iter()
        .map(|(errno, n)| (errno.0.to_string(), Value::from(n)))
        .collect();
    if e.other() != 0 {
        m.insert("other".into(), Value::from(e.other()));
    }
    m
}

/// One `stat` report as a document body: every geom's counters and each path's, with the
/// rates over `secs` seconds since `before` (if there was an earlier reading).
pub fn stat(now: &Reading, before: Option<&Reading>, secs: f64) -> Value {
    let geoms: Vec<Value> = now
        .geoms
        .iter()
        .map(|g| {
            let s = &g.reading.stats;
            let mut ops = serde_json::Map::new();
            for kind in OpKind::ALL {
                let o = s.op(kind);
                ops.insert(
                    kind.name().into(),
                    to_value(OpCounts {
                        requests: o.requests,
                        bytes: o.bytes,
                        errors: o.errors,
                    }),
                );
            }
            let earlier = before.and_then(|b| b.geoms.iter().find(|e| e.name == g.name));
            let paths: Vec<Value> = g
                .paths
                .iter()
                .map(|(name, state, r)| {
                    let p = &r.stats;
                    let prev = earlier
                        .and_then(|e| e.paths.iter().find(|(n, _, _)| n == name))
                        .map(|(_, _, r)| &r.stats);
                    let mut ops = serde_json::Map::new();
                    for kind in OpKind::ALL {
                        let o = p.op(kind);
                        ops.insert(
                            kind.name().into(),
                            to_value(PathOpCounts {
                                requests: o.requests,
                                bytes: o.bytes,
                                errors: o.errors,
                                latency_count: o.latency.count(),
                                latency_sum_ns: o.latency.sum_ns(),
                                latency_max_ns: o.latency.max_ns(),
                                latency_p50_ns: o.latency.quantile(500),
                                latency_p99_ns: o.latency.quantile(990),
                            }),
                        );
                    }
                    let last_failure = p.last_failure.map(|(at, cause)| {
                        serde_json::json!({
                            "age_ns": g.reading.clock_ns.saturating_sub(at.0),
                            "cause": cause.to_string(),
                        })
                    });
                    serde_json::json!({
                        "name": name,
                        "state": state,
                        "active": state == "ACTIVE" || state == "READ",
                        "inflight": r.inflight,
                        "ops": ops,
                        "errors_by_errno": errno_map(&p.errors),
                        "failures": p.failures,
                        "failovers": p.failovers,
                        "reissues": p.reissues,
                        "deadlines": p.deadlines,
                        "probes_good": p.probes_good,
                        "probes_bad": p.probes_bad,
                        "reinstatements": p.reinstatements,
                        "good_ns": p.good_ns,
                        "failed_ns": p.failed_ns,
                        "last_failure": last_failure,
                        "rate": to_value(rate(p, prev, secs)),
                    })
                })
                .collect();
            serde_json::json!({
                "name": g.name,
                "state": g.state,
                "mode": g.mode,
                "clock_ns": g.reading.clock_ns,
                "ops": ops,
                "errors_by_errno": errno_map(&s.errors),
                "reissues": s.reissues,
                "failovers": s.failovers,
                "queue_episodes": s.queue_episodes,
                "queued": s.queued,
                "queue_failed": s.queue_failed,
                "path": paths,
            })
        })
        .collect();
    serde_json::json!({ "interval_seconds": secs, "geom": geoms })
}

//! The daemon's tunables file: sysctl.conf(5) syntax — one `name=value` per line, `#`
//! comments, blank lines ignored — applied at start (and on SIGHUP). Only
//! `kern.geom.multipath.*` names are accepted; anything else is reported with its line
//! number and skipped, so one typo does not stop a machine from assembling its geoms.

use std::path::Path;

use geom_multipath::settings::{Setting, Settings};
use geom_multipath::sysctl::{self, Knob, Values};

use crate::owner::PerPath;

/// One problem found in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub text: String,
}

/// What the file sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tunables {
    /// The `kern.geom.multipath.*` knobs.
    pub values: Values,
    /// Per-provider settings (`kern.geom.multipath.io_timeout.<provider>`,
    /// `kern.geom.multipath.quiesce_time.<provider>`), as written.
    pub per_path: Vec<(PerPath, String, String)>,
    /// Per-geom `configure` settings (`kern.geom.multipath.geom.<geom>.<setting>`), checked,
    /// as written.
    pub per_geom: Vec<(String, Setting, String)>,
}

/// The prefix of a per-geom setting's name.
pub const GEOM_PREFIX: &str = "kern.geom.multipath.geom.";

/// The geom and setting `name` stands for, if it is `kern.geom.multipath.geom.<geom>.<s>`
/// where `<s>` is a `configure` setting's parameter (`selector`, `queue_timeout`, …).
fn per_geom(name: &str) -> Option<(&str, Option<Setting>)> {
    let rest = name.strip_prefix(GEOM_PREFIX)?;
    let (geom, param) = rest.rsplit_once('.')?;
    Some((geom, Setting::ALL.into_iter().find(|s| s.param() == param)))
}

/// Parses `text` on top of `base`; returns the values and the lines that were skipped.
pub fn parse(text: &str, base: Values) -> (Values, Vec<Problem>) {
    let (t, problems) = parse_all(text, base);
    (t.values, problems)
}

/// Like [`parse`], with the per-provider overrides.
pub fn parse_all(text: &str, base: Values) -> (Tunables, Vec<Problem>) {
    let mut values = base;
    let mut per_path = Vec::new();
    let mut per_geom_settings = Vec::new();
    let mut problems = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut problem = |text: String| problems.push(Problem { line: i + 1, text });
        let Some((name, value)) = line.rsplit_once('=') else {
            problem(format!("expected name=value: {line}"));
            continue;
        };
        let name = name.trim();
        if let Some((geom, setting)) = per_geom(name) {
            let value = value.trim();
            match setting {
                Some(s) if !geom.is_empty() && Settings::default().apply(s, value).is_ok() => {
                    per_geom_settings.push((geom.to_string(), s, value.to_string()))
                }
                Some(s) if !geom.is_empty() => {
                    problem(format!("{name}: Invalid {} value '{value}'", s.param()))
                }
                _ => problem(format!("unknown oid '{name}'")),
            }
            continue;
        }
        if let Some((kind, provider)) = PerPath::parse(name) {
            match PerPath::check(value) {
                Ok(_) if !provider.is_empty() => {
                    per_path.push((kind, provider.to_string(), value.trim().to_string()))
                }
                Ok(_) => problem(format!("unknown oid '{name}'")),
                Err(e) => problem(format!("{name}: {e}")),
            }
            continue;
        }
        let Some(t) = sysctl::lookup(name).filter(|t| t.name == name) else {
            problem(format!("unknown oid '{name}'"));
            continue;
        };
        if let Err(e) = values.set_text(t.knob, value) {
            problem(format!("{name}: {e}"));
        }
    }
    (
        Tunables {
            values,
            per_path,
            per_geom: per_geom_settings,
        },
        problems,
    )
}

/// Like [`parse_all`], for the file's bytes: a line that is not UTF-8 is reported and
/// skipped like any other bad line, instead of failing the whole file.
pub fn parse_bytes(bytes: &[u8], base: Values) -> (Tunables, Vec<Problem>) {
    let mut text = String::with_capacity(bytes.len());
    let mut skipped = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            text.push('\n');
        }
        match std::str::from_utf8(line) {
            Ok(line) => text.push_str(line),
            Err(_) => skipped.push(Problem {
                line: i + 1,
                text: String::from("not UTF-8 text"),
            }),
        }
    }
    let (tunables, mut problems) = parse_all(&text, base);
    problems.extend(skipped);
    problems.sort_by_key(|p| p.line);
    (tunables, problems)
}

/// Reads `path` on top of the defaults; a missing file is no problem.
pub fn load(path: &Path) -> std::io::Result<(Tunables, Vec<Problem>)> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(parse_bytes(&bytes, Values::default())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Tunables::default(), Vec::new())),
        Err(e) => Err(e),
    }
}

/// Every knob and its value, for a log line at start.
pub fn describe(values: &Values) -> String {
    sysctl::TABLE
        .iter()
        .map(|t| format!("{}={}", t.name, values.get(t.knob)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The knobs whose value differs between `a` and `b`.
pub fn changed(a: &Values, b: &Values) -> Vec<Knob> {
    sysctl::TABLE
        .iter()
        .map(|t| t.knob)
        .filter(|&k| a.get(k) != b.get(k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_known_names_and_reports_the_rest_by_line() {
        let text = "\
# tunables
kern.geom.multipath.debug=1
kern.geom.multipath.exclusive = 0   # no O_EXCL

kern.geom.multipath.io_timeout=999999
kern.geom.mirror.debug=1
garbage
kern.geom.multipath.debug=x
";
        let (v, problems) = parse(text, Values::default());
        assert_eq!(v.debug(), 1);
        assert_eq!(v.exclusive(), 0);
        assert_eq!(v.io_timeout(), 0, "out of range: kept");
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [5, 6, 7, 8]);
        assert_eq!(problems[1].text, "unknown oid 'kern.geom.mirror.debug'");
        assert!(problems[3].text.contains("Invalid argument"));
    }

    #[test]
    fn per_geom_settings_are_checked_and_kept() {
        let text = "kern.geom.multipath.geom.FRED.selector=service-time\n\
                    kern.geom.multipath.geom.my.geom.queue_timeout= 10\n\
                    kern.geom.multipath.geom.FRED.selector=fastest\n\
                    kern.geom.multipath.geom.FRED.color=red\n\
                    kern.geom.multipath.geom..failback=immediate\n";
        let (t, problems) = parse_all(text, Values::default());
        assert_eq!(
            t.per_geom,
            [
                (
                    "FRED".to_string(),
                    Setting::Selector,
                    "service-time".to_string()
                ),
                (
                    "my.geom".to_string(),
                    Setting::QueueTimeout,
                    "10".to_string()
                ),
            ]
        );
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [3, 4, 5]);
        assert_eq!(
            problems[0].text,
            "kern.geom.multipath.geom.FRED.selector: Invalid selector value 'fastest'"
        );
    }

    #[test]
    fn per_path_settings_are_kept_as_written() {
        let text = "kern.geom.multipath.io_timeout.loop3=2\n\
                    kern.geom.multipath.io_timeout.nbd+unix:///d?socket=/s=5\n\
                    kern.geom.multipath.io_timeout.=1\n\
                    kern.geom.multipath.io_timeout.loop4=x\n\
                    kern.geom.multipath.quiesce_time.loop3=30\n\
                    kern.geom.multipath.quiesce_timex.loop3=30\n";
        let (t, problems) = parse_all(text, Values::default());
        assert_eq!(
            t.per_path,
            [
                (PerPath::IoTimeout, "loop3".to_string(), "2".to_string()),
                (
                    PerPath::IoTimeout,
                    "nbd+unix:///d?socket=/s".to_string(),
                    "5".to_string()
                ),
                (PerPath::QuiesceTime, "loop3".to_string(), "30".to_string()),
            ]
        );
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [3, 4, 6]);
    }

    /// Issue 11 item 7: one stray byte stopped the daemon from starting
    /// ("stream did not contain valid UTF-8"), though bad lines are to be skipped.
    #[test]
    fn a_line_that_is_not_utf8_is_skipped_and_reported() {
        let (t, problems) = parse_bytes(
            b"x\n\xff\nkern.geom.multipath.debug=1\nkern.geom.multipath.exclusive=0\xfe\n",
            Values::default(),
        );
        assert_eq!(
            t.values.debug(),
            1,
            "the good line after the bad one applies"
        );
        assert_eq!(t.values.exclusive(), 1, "the bad line is skipped whole");
        let lines: Vec<(usize, &str)> =
            problems.iter().map(|p| (p.line, p.text.as_str())).collect();
        assert_eq!(
            lines,
            [
                (1, "expected name=value: x"),
                (2, "not UTF-8 text"),
                (4, "not UTF-8 text")
            ]
        );
    }

    #[test]
    fn a_missing_file_means_defaults() {
        let (v, p) = load(Path::new("/nonexistent/gmultipathd.conf")).unwrap();
        assert_eq!(v, Tunables::default());
        assert!(p.is_empty());
    }

    #[test]
    fn changed_lists_differences() {
        let mut b = Values::default();
        b.set(Knob::Debug, 2).unwrap();
        assert_eq!(changed(&Values::default(), &b), [Knob::Debug]);
        assert!(describe(&b).contains("kern.geom.multipath.debug=2"));
    }
}

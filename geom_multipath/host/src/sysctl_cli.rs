//! `mpsysctl`: sysctl(8) for the host's `kern.geom.multipath.*` knobs. Linux's own sysctl
//! reads /proc/sys, which the host cannot extend, so this front end asks the daemon over
//! its control socket and prints exactly as FreeBSD's sysctl(8) does:
//! `kern.geom.multipath.debug: 0`, and on a set `kern.geom.multipath.debug: 0 -> 1`.
//!
//! Options (a subset of sysctl(8)'s): `-a` every knob, `-d` descriptions, `-e` `name=value`
//! form, `-N` names only, `-n` values only, `-q` no warning for an unknown name. A prefix of
//! the knobs' names (`kern.geom.multipath`, `kern.geom`) shows every knob under it.

use std::io::Write;

use geom_multipath::sysctl;
use geom_multipath_proto::{Answer, Call, Knob};

use crate::owner::IO_TIMEOUT_OVERRIDE_PREFIX;

/// The output flags.
#[derive(Clone, Copy, Debug, Default)]
struct Flags {
    all: bool,
    describe: bool,
    equals: bool,
    names_only: bool,
    values_only: bool,
    quiet: bool,
}

const USAGE: &str = "usage: mpsysctl [-deNnq] name[=value] ...\n       mpsysctl [-deNnq] -a\n";

/// Runs mpsysctl with `args` (argv[0] excluded), asking `daemon`; returns the exit status.
pub fn run(
    args: &[String],
    daemon: &mut dyn FnMut(Call) -> std::io::Result<Answer>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let mut flags = Flags::default();
    let mut names = Vec::new();
    let mut options_done = false;
    for a in args {
        match a.strip_prefix('-') {
            Some(letters) if !options_done && !letters.is_empty() => {
                for c in letters.chars() {
                    match c {
                        'a' => flags.all = true,
                        'd' => flags.describe = true,
                        'e' => flags.equals = true,
                        'N' => flags.names_only = true,
                        'n' => flags.values_only = true,
                        'q' => flags.quiet = true,
                        _ => {
                            let _ = writeln!(err, "mpsysctl: illegal option -- {c}");
                            let _ = err.write_all(USAGE.as_bytes());
                            return 1;
                        }
                    }
                }
            }
            _ => {
                options_done = true;
                names.push(a.clone());
            }
        }
    }
    if names.is_empty() && !flags.all {
        let _ = err.write_all(USAGE.as_bytes());
        return 1;
    }
    if flags.all {
        names.push(sysctl::NODE.to_string());
    }
    let mut status = 0;
    for arg in names {
        if let Err(msg) = one(&arg, flags, daemon, out) {
            if !msg.is_empty() {
                let _ = writeln!(err, "mpsysctl: {msg}");
            }
            status = 1;
        }
    }
    status
}

/// One `name` or `name=value` argument.
fn one(
    arg: &str,
    flags: Flags,
    daemon: &mut dyn FnMut(Call) -> std::io::Result<Answer>,
    out: &mut dyn Write,
) -> Result<(), String> {
    // Split at the last '=': values are numbers, names may contain '=' (an NBD URI in a
    // per-path io_timeout override).
    let (name, value) = match arg.rsplit_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (arg, None),
    };
    if let Some(provider) = name.strip_prefix(IO_TIMEOUT_OVERRIDE_PREFIX) {
        if !provider.is_empty() {
            return per_path(arg, name, value, flags, daemon, out);
        }
    }
    let matching: Vec<&sysctl::Tunable> = sysctl::TABLE
        .iter()
        .filter(|t| t.name == name || t.name.starts_with(&format!("{name}.")))
        .collect();
    if matching.is_empty() {
        return Err(if flags.quiet {
            String::new()
        } else {
            format!("unknown oid '{name}'")
        });
    }
    if let Some(value) = value {
        if matching.len() != 1 || matching[0].name != name {
            return Err(format!("oid '{name}' isn't a leaf node"));
        }
        if value.trim().parse::<u32>().is_err() {
            return Err(format!("invalid unsigned integer '{value}'"));
        }
        let call = Call::SysctlSet {
            name: name.to_string(),
            value: value.to_string(),
        };
        return match ask(daemon, call)? {
            Answer::Sysctl(knobs) => {
                for k in &knobs {
                    print(out, k, flags);
                }
                Ok(())
            }
            Answer::Failed { text, .. } => Err(format!("{arg}: {text}")),
            other => Err(format!("unexpected answer {other:?}")),
        };
    }
    // A leaf is asked for by name; a node (or -a) is one query for everything, so the
    // per-path overrides, which only the daemon knows, are listed too.
    let leaf = matching.len() == 1 && matching[0].name == name;
    let query = if leaf { name } else { sysctl::NODE };
    match ask(
        daemon,
        Call::SysctlGet {
            name: query.to_string(),
        },
    )? {
        Answer::Sysctl(knobs) => knobs
            .iter()
            .filter(|k| leaf || k.name.starts_with(&format!("{name}.")))
            .for_each(|k| print(out, k, flags)),
        Answer::Failed { text, .. } => return Err(format!("{query}: {text}")),
        other => return Err(format!("unexpected answer {other:?}")),
    }
    Ok(())
}

/// `kern.geom.multipath.io_timeout.<provider>`: a per-path override of the deadline.
fn per_path(
    arg: &str,
    name: &str,
    value: Option<&str>,
    flags: Flags,
    daemon: &mut dyn FnMut(Call) -> std::io::Result<Answer>,
    out: &mut dyn Write,
) -> Result<(), String> {
    let call = match value {
        Some(v) if v.trim().parse::<u32>().is_err() => {
            return Err(format!("invalid unsigned integer '{v}'"));
        }
        Some(v) => Call::SysctlSet {
            name: name.to_string(),
            value: v.to_string(),
        },
        None => Call::SysctlGet {
            name: name.to_string(),
        },
    };
    match ask(daemon, call)? {
        Answer::Sysctl(knobs) => {
            knobs.iter().for_each(|k| print(out, k, flags));
            Ok(())
        }
        Answer::Failed { errno, .. } if errno == libc::ENOENT => Err(if flags.quiet {
            String::new()
        } else {
            format!("unknown oid '{name}'")
        }),
        Answer::Failed { text, .. } => Err(format!("{arg}: {text}")),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

fn ask(
    daemon: &mut dyn FnMut(Call) -> std::io::Result<Answer>,
    call: Call,
) -> Result<Answer, String> {
    daemon(call).map_err(|e| match e.raw_os_error() {
        Some(code) => format!(
            "cannot reach gmultipathd: {}",
            geom_multipath_sys::strerror(code)
        ),
        None => format!("cannot reach gmultipathd: {e}"),
    })
}

fn print(out: &mut dyn Write, k: &Knob, flags: Flags) {
    let sep = if flags.equals { "=" } else { ": " };
    let value = match k.old {
        Some(old) => format!("{old} -> {}", k.value),
        None => k.value.to_string(),
    };
    let line = if flags.names_only {
        k.name.clone()
    } else if flags.describe {
        if flags.values_only {
            k.description.clone()
        } else {
            format!("{}{sep}{}", k.name, k.description)
        }
    } else if flags.values_only {
        value
    } else {
        format!("{}{sep}{value}", k.name)
    };
    let _ = writeln!(out, "{line}");
}

/// The `mpsysctl` program: asks the daemon on `$GMULTIPATH_SOCKET`.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let socket = geom_multipath_proto::socket_path();
    let mut daemon = |call: Call| -> std::io::Result<Answer> {
        let mut s = std::os::unix::net::UnixStream::connect(&socket)?;
        geom_multipath_proto::roundtrip(&mut s, &call).map_err(|e| match e {
            geom_multipath_proto::ProtoError::Io(e) => e,
            other => std::io::Error::other(other.to_string()),
        })
    };
    run(
        &args,
        &mut daemon,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use geom_multipath::sysctl::Values;

    /// A daemon with real tunables behind it.
    fn fake() -> impl FnMut(Call) -> std::io::Result<Answer> {
        let mut values = Values::default();
        let mut overrides: Vec<Knob> = Vec::new();
        move |call| {
            let knob = |t: &sysctl::Tunable, v: &Values, old| Knob {
                name: t.name.into(),
                value: u64::from(v.get(t.knob)),
                old,
                description: t.description.into(),
            };
            Ok(match call {
                Call::SysctlGet { name } if name == sysctl::NODE => {
                    let mut all: Vec<Knob> = sysctl::TABLE
                        .iter()
                        .map(|t| knob(t, &values, None))
                        .collect();
                    all.extend(overrides.iter().cloned());
                    Answer::Sysctl(all)
                }
                Call::SysctlSet { name, value } if name.starts_with(IO_TIMEOUT_OVERRIDE_PREFIX) => {
                    overrides.push(Knob {
                        name,
                        value: value.parse().unwrap(),
                        old: None,
                        description: String::new(),
                    });
                    Answer::Sysctl(overrides.clone())
                }
                Call::SysctlGet { name } => match sysctl::lookup(&name) {
                    Some(t) => Answer::Sysctl(vec![knob(t, &values, None)]),
                    None => Answer::Failed {
                        errno: 2,
                        text: "No such file or directory".into(),
                    },
                },
                Call::SysctlSet { name, value } => {
                    let t = sysctl::lookup(&name).unwrap();
                    match values.set_text(t.knob, &value) {
                        Ok(old) => Answer::Sysctl(vec![knob(t, &values, Some(u64::from(old)))]),
                        Err(_) => Answer::Failed {
                            errno: 22,
                            text: "Invalid argument".into(),
                        },
                    }
                }
                other => panic!("{other:?}"),
            })
        }
    }

    fn mpsysctl(
        args: &str,
        daemon: &mut dyn FnMut(Call) -> std::io::Result<Answer>,
    ) -> (i32, String, String) {
        let args: Vec<String> = args.split_whitespace().map(String::from).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(&args, daemon, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn get_and_set_print_like_sysctl() {
        let mut d = fake();
        assert_eq!(
            mpsysctl("kern.geom.multipath.debug", &mut d),
            (0, "kern.geom.multipath.debug: 0\n".into(), String::new())
        );
        assert_eq!(
            mpsysctl("kern.geom.multipath.debug=1", &mut d),
            (
                0,
                "kern.geom.multipath.debug: 0 -> 1\n".into(),
                String::new()
            )
        );
        assert_eq!(mpsysctl("-n kern.geom.multipath.debug", &mut d).1, "1\n");
        assert_eq!(
            mpsysctl("-e kern.geom.multipath.exclusive", &mut d).1,
            "kern.geom.multipath.exclusive=1\n"
        );
        assert_eq!(
            mpsysctl("-d kern.geom.multipath.debug", &mut d).1,
            "kern.geom.multipath.debug: Debug level\n"
        );
    }

    #[test]
    fn a_node_lists_every_knob_under_it() {
        let mut d = fake();
        let (code, out, _) = mpsysctl("kern.geom.multipath", &mut d);
        assert_eq!(code, 0);
        assert_eq!(
            out,
            "kern.geom.multipath.debug: 0\nkern.geom.multipath.exclusive: 1\nkern.geom.multipath.io_timeout: 0\n"
        );
        assert_eq!(mpsysctl("-a", &mut d).1, out);
        assert_eq!(mpsysctl("-aN", &mut d).1.lines().count(), 3);
    }

    #[test]
    fn a_node_lists_the_per_path_overrides_a_leaf_does_not() {
        let mut d = fake();
        mpsysctl("kern.geom.multipath.io_timeout.loop0=7", &mut d);
        let (code, out, _) = mpsysctl("-a", &mut d);
        assert_eq!(code, 0);
        assert!(
            out.ends_with(
                "kern.geom.multipath.io_timeout: 0\nkern.geom.multipath.io_timeout.loop0: 7\n"
            ),
            "{out}"
        );
        assert_eq!(mpsysctl("kern.geom.multipath", &mut d).1, out);
        assert_eq!(
            mpsysctl("-n kern.geom.multipath.io_timeout", &mut d).1,
            "0\n",
            "a script reading the knob gets one number"
        );
    }

    #[test]
    fn errors_look_like_sysctls() {
        let mut d = fake();
        assert_eq!(
            mpsysctl("kern.geom.multipath.nope", &mut d),
            (
                1,
                String::new(),
                "mpsysctl: unknown oid 'kern.geom.multipath.nope'\n".into()
            )
        );
        assert_eq!(mpsysctl("-q kern.geom.multipath.nope", &mut d).2, "");
        assert_eq!(
            mpsysctl("kern.geom.multipath.debug=x", &mut d).2,
            "mpsysctl: invalid unsigned integer 'x'\n"
        );
        assert_eq!(
            mpsysctl("kern.geom.multipath.io_timeout=999999", &mut d).2,
            "mpsysctl: kern.geom.multipath.io_timeout=999999: Invalid argument\n"
        );
        let (code, _, err) = mpsysctl("", &mut d);
        assert_eq!((code, err.as_str()), (1, USAGE));
        assert!(mpsysctl("-z x", &mut d)
            .2
            .starts_with("mpsysctl: illegal option -- z\n"));
    }

    #[test]
    fn an_absent_daemon_is_a_clear_error() {
        let mut gone = |_: Call| -> std::io::Result<Answer> {
            Err(std::io::Error::from_raw_os_error(libc::ENOENT))
        };
        assert_eq!(
            mpsysctl("kern.geom.multipath.debug", &mut gone).2,
            "mpsysctl: cannot reach gmultipathd: No such file or directory\n"
        );
    }
}

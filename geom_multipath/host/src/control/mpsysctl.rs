//! `mpsysctl`: sysctl(8) for the host's knobs (`kern.geom.multipath.*`, its per-path
//! overrides, and `kern.geom.nop.debug`). Linux's own sysctl
//! reads /proc/sys, which the host cannot extend, so this front end asks the daemon over
//! its control socket and prints exactly as FreeBSD's sysctl(8) does:
//! `kern.geom.multipath.debug: 0`, and on a set `kern.geom.multipath.debug: 0 -> 1`.
//!
//! Options (a subset of sysctl(8)'s): `-a` every knob, `-d` descriptions, `-e` `name=value`
//! form, `-N` names only, `-n` values only, `-q` no warning for an unknown name. A prefix of
//! the knobs' names (`kern.geom.multipath`, `kern.geom`) shows every knob under it. The
//! daemon owns the tree (`owner::select_knobs`); this end parses and prints.

use std::io::Write;

use geom_multipath_proto::{Answer, Call, Knob};

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
        names.push(String::new());
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

/// One `name` or `name=value` argument (an empty name is every knob).
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
    let get = Call::SysctlGet {
        name: name.to_string(),
    };
    let call = match value {
        None => get,
        // sysctl(8) names an unknown oid before it looks at the value.
        Some(v) if v.trim().parse::<u32>().is_err() => {
            return match ask(daemon, get)? {
                Answer::Failed { errno, .. } if errno == libc::ENOENT => Err(unknown(name, flags)),
                _ => Err(format!("invalid unsigned integer '{v}'")),
            };
        }
        Some(v) => Call::SysctlSet {
            name: name.to_string(),
            value: v.to_string(),
        },
    };
    match ask(daemon, call)? {
        Answer::Sysctl(knobs) => {
            knobs.iter().for_each(|k| print(out, k, flags));
            Ok(())
        }
        Answer::Failed { errno, .. } if errno == libc::ENOENT => Err(unknown(name, flags)),
        Answer::Failed { errno, .. } if errno == libc::ENOTDIR => {
            Err(format!("oid '{name}' isn't a leaf node"))
        }
        Answer::Failed { text, .. } => Err(format!("{arg}: {text}")),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

/// sysctl(8)'s complaint about a name that does not exist (nothing with -q).
fn unknown(name: &str, flags: Flags) -> String {
    if flags.quiet {
        String::new()
    } else {
        format!("unknown oid '{name}'")
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

    /// A real owner (no devices) behind the control calls.
    fn fake() -> impl FnMut(Call) -> std::io::Result<Answer> {
        use crate::msg::exports::Exports;
        use crate::owner::{Owner, Settings};
        let (handle, _inbox) = crate::msg::channel().unwrap();
        let exports = std::sync::Arc::new(std::sync::RwLock::new(Exports::new()));
        let settings = Settings {
            tunables: Default::default(),
            devices: Some(Vec::new()),
            mountpoint: "/nonexistent".into(),
            own_nbd: Default::default(),
        };
        let mut owner = Owner::new(settings, exports, handle);
        let loop0 = geom_multipath::ProviderInfo {
            name: "loop0".into(),
            mediasize: 1 << 20,
            sectorsize: 512,
            stripesize: 0,
            stripeoffset: 0,
            rank: 1,
        };
        let device = std::sync::Arc::new(crate::testkit::MemDevice::new(1 << 20));
        owner.add_provider(loop0, crate::path::device::Source::Fixed(device));
        move |call| Ok(owner.call(call))
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
            concat!(
            "kern.geom.multipath.debug: 0\nkern.geom.multipath.exclusive: 1\nkern.geom.multipath.io_timeout: 0\n",
            "kern.geom.multipath.check_interval: 0\nkern.geom.multipath.reinstate: 0\n",
            "kern.geom.multipath.flap_threshold: 0\nkern.geom.multipath.flap_window: 60\n",
            "kern.geom.multipath.flap_hold: 60\nkern.geom.multipath.queue_timeout: 0\n",
            "kern.geom.multipath.queue_max_requests: 1024\n",
            "kern.geom.multipath.queue_max_kbytes: 65536\n",
        )
        );
        assert_eq!(
            mpsysctl("-a", &mut d).1,
            format!("{out}kern.geom.nop.debug: 0\n")
        );
        let knobs = geom_multipath::sysctl::TABLE.len() + 1;
        assert_eq!(mpsysctl("-aN", &mut d).1.lines().count(), knobs);
        assert_eq!(mpsysctl("kern.geom", &mut d).1.lines().count(), knobs);
    }

    #[test]
    fn the_nop_class_debug_level_is_a_knob_too() {
        let mut d = fake();
        assert_eq!(
            mpsysctl("kern.geom.nop.debug=1", &mut d).1,
            "kern.geom.nop.debug: 0 -> 1\n"
        );
        assert_eq!(mpsysctl("-n kern.geom.nop.debug", &mut d).1, "1\n");
        assert_eq!(
            mpsysctl("kern.geom.nop=1", &mut d).2,
            "mpsysctl: oid 'kern.geom.nop' isn't a leaf node\n"
        );
    }

    /// Issue 11: a per-path setting for a provider the daemon does not know was stored
    /// and listed; it is refused like an oid that does not exist.
    #[test]
    fn per_path_settings_need_a_provider_the_daemon_knows() {
        let mut d = fake();
        let (code, _, err) = mpsysctl("kern.geom.multipath.io_timeout.nosuch=7", &mut d);
        assert_eq!(code, 1);
        assert!(err.contains("unknown oid"), "{err}");
        assert_eq!(
            mpsysctl("kern.geom.multipath.quiesce_time.loop0=30", &mut d).1,
            "kern.geom.multipath.quiesce_time.loop0: 0 -> 30\n"
        );
        let (_, all, _) = mpsysctl("kern.geom.multipath", &mut d);
        assert!(!all.contains("nosuch"), "{all}");
        assert!(
            all.ends_with("kern.geom.multipath.quiesce_time.loop0: 30\n"),
            "{all}"
        );
    }

    #[test]
    fn a_node_lists_the_per_path_overrides_a_leaf_does_not() {
        let mut d = fake();
        mpsysctl("kern.geom.multipath.io_timeout.loop0=7", &mut d);
        let (code, out, _) = mpsysctl("kern.geom.multipath", &mut d);
        assert_eq!(code, 0);
        assert!(
            out.ends_with(
                "kern.geom.multipath.queue_max_kbytes: 65536\nkern.geom.multipath.io_timeout.loop0: 7\n"
            ),
            "{out}"
        );
        assert_eq!(
            mpsysctl("-a", &mut d).1,
            format!("{out}kern.geom.nop.debug: 0\n")
        );
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
            "mpsysctl: kern.geom.multipath.io_timeout=999999: value out of range (0..86400)\n"
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

//! The C side kept in step with the Rust side, by reading the C files: the SYSCTLs the shim
//! registers are the tunables table's rows the module enforces (not the host-only ones); its SDT probes are the core's; `kpi_freebsd.c`
//! implements every `kpi_*` function of `kpi.h` and ties every kernel constant to the
//! kernel's with a static assertion; the shim calls every `gmp_rs_*` entry point; the class
//! and module names are FreeBSD's.

use geom_multipath::sysctl::{Kind, NODE, NODE_DESCRIPTION, TABLE};
use geom_multipath::Probe;
use geom_multipath_kmod::bindings as b;

const KPI_H: &str = include_str!("../kpi.h");
const SHIM: &str = include_str!("../g_multipath_shim.c");
const KPI_C: &str = include_str!("../kpi_freebsd.c");

/// The text of every `MACRO(...)` invocation in `text`, whitespace collapsed.
fn invocations(text: &str, macro_name: &str) -> Vec<String> {
    let open = format!("{macro_name}(");
    text.match_indices(&open)
        .filter(|(at, _)| {
            // Not the tail of a longer identifier.
            !text[..*at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(|(at, _)| {
            let body = &text[at + open.len()..];
            let end = body.find(");").expect("closed invocation");
            body[..end].split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect()
}

/// The quoted strings of an invocation, in order.
fn quoted(args: &str) -> Vec<String> {
    args.split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// `NAME(` names with this prefix in a text.
fn functions(text: &str, prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .match_indices(prefix)
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| text.contains(&format!("{name}(")))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn knob_value(name: &str) -> i32 {
    match name {
        "KPI_KNOB_DEBUG" => b::KPI_KNOB_DEBUG,
        "KPI_KNOB_EXCLUSIVE" => b::KPI_KNOB_EXCLUSIVE,
        "KPI_KNOB_IO_TIMEOUT" => b::KPI_KNOB_IO_TIMEOUT,
        "KPI_KNOB_CHECK_INTERVAL" => b::KPI_KNOB_CHECK_INTERVAL,
        "KPI_KNOB_REINSTATE" => b::KPI_KNOB_REINSTATE,
        "KPI_KNOB_FLAP_THRESHOLD" => b::KPI_KNOB_FLAP_THRESHOLD,
        "KPI_KNOB_FLAP_WINDOW" => b::KPI_KNOB_FLAP_WINDOW,
        "KPI_KNOB_FLAP_HOLD" => b::KPI_KNOB_FLAP_HOLD,
        "KPI_KNOB_QUEUE_TIMEOUT" => b::KPI_KNOB_QUEUE_TIMEOUT,
        "KPI_KNOB_QUEUE_MAX_REQUESTS" => b::KPI_KNOB_QUEUE_MAX_REQUESTS,
        "KPI_KNOB_QUEUE_MAX_KBYTES" => b::KPI_KNOB_QUEUE_MAX_KBYTES,
        other => panic!("unknown knob constant {other}"),
    }
}

#[test]
fn the_sysctls_are_the_tunables_table() {
    let node = invocations(SHIM, "SYSCTL_NODE");
    assert_eq!(node.len(), 1);
    let leaf = NODE.rsplit('.').next().unwrap();
    assert!(
        node[0].starts_with(&format!("_kern_geom, OID_AUTO, {leaf},")),
        "{node:?}"
    );
    assert_eq!(quoted(&node[0]), [NODE_DESCRIPTION]);

    let procs = invocations(SHIM, "SYSCTL_PROC");
    let enforced: Vec<_> = TABLE.iter().filter(|t| !t.host_only).collect();
    assert_eq!(
        procs.len(),
        enforced.len(),
        "one SYSCTL_PROC per row of the table the module enforces"
    );
    for (row, args) in enforced.iter().zip(&procs) {
        let fields: Vec<&str> = args.split(", ").collect();
        assert_eq!(fields[0], "_kern_geom_multipath");
        assert_eq!(fields[2], row.leaf, "rows in table order");
        let knob = fields
            .iter()
            .find(|f| f.starts_with("KPI_KNOB_"))
            .expect("a knob");
        assert_eq!(knob_value(knob), row.knob as i32, "{}: arg2", row.leaf);
        match row.kind {
            Kind::UInt => {
                assert!(fields[3].contains("CTLTYPE_UINT"), "{}: type", row.leaf);
                assert_eq!(quoted(args)[0], "IU", "{}: format", row.leaf);
            }
        }
        assert!(fields[3].contains("CTLFLAG_RW"), "{}: read-write", row.leaf);
        assert_eq!(
            quoted(args)[1],
            row.description,
            "{}: description",
            row.leaf
        );
    }
}

#[test]
fn the_sdt_probes_are_the_cores() {
    let s = String::from;
    let core = [
        Probe::Restore {
            geom: s("g"),
            path: s("p"),
        },
        Probe::Remove {
            geom: s("g"),
            path: s("p"),
        },
        Probe::Disconnect {
            geom: s("g"),
            path: s("p"),
        },
        Probe::Fail {
            geom: s("g"),
            path: s("p"),
            error: 0,
        },
        Probe::Taste {
            name: s("n"),
            uuid: s("u"),
        },
        Probe::Restart { token: 0 },
    ];
    let mut defined: Vec<String> = ["SDT_PROBE_DEFINE2", "SDT_PROBE_DEFINE3"]
        .iter()
        .flat_map(|m| invocations(SHIM, m))
        .map(|args| {
            let f: Vec<&str> = args.split(", ").take(4).collect();
            f.join(":")
        })
        .collect();
    defined.sort();
    let mut wanted: Vec<String> = core.iter().map(|p| p.name().to_string()).collect();
    wanted.sort();
    assert_eq!(defined, wanted);
    assert!(SHIM.contains(
        "SDT_PROBE_DEFINE3(geom, multipath, config, fail, \"char*\", \"char*\", \"int\")"
    ));
}

#[test]
fn the_class_and_the_module_have_freebsds_names() {
    assert!(SHIM.contains(".name\t\t= \"MULTIPATH\""));
    assert!(SHIM.contains(".version\t= G_VERSION"));
    // DECLARE_GEOM_CLASS(g_multipath_class, g_multipath), spelled out around our own event
    // handler: the same module name and class, the same SYSINIT order.
    assert_eq!(
        invocations(SHIM, "DECLARE_MODULE"),
        ["g_multipath, g_multipath_mod, SI_SUB_DRIVERS, SI_ORDER_THIRD"]
    );
    assert!(SHIM.contains("\t\"g_multipath\",\n\tg_multipath_modevent,\n\t&g_multipath_class\n"));
    assert!(SHIM.contains("g_modevent(mod, type, data)"));
    assert_eq!(invocations(SHIM, "MODULE_VERSION"), ["geom_multipath, 0"]);
    assert_eq!(
        invocations(SHIM, "FEATURE"),
        ["geom_multipath, \"GEOM multipath support\""]
    );
    assert!(
        KPI_C.contains("\"g_mp_kt\""),
        "the error kthread is g_mp_kt"
    );
    assert!(KPI_C.contains("\"gkt:wait\""));
    assert!(include_str!("../Makefile").contains("KMOD=\tgeom_multipath\n"));
}

#[test]
fn kpi_freebsd_c_implements_every_kpi_function() {
    let declared = functions(KPI_H, "kpi_");
    assert!(declared.len() > 50);
    for name in &declared {
        // style(9): the function name starts its line in the definition.
        assert!(
            KPI_C.contains(&format!("\n{name}(")),
            "{name} is declared in kpi.h but not defined in kpi_freebsd.c"
        );
    }
}

#[test]
fn every_kernel_constant_is_static_asserted() {
    for line in KPI_H.lines() {
        let Some(rest) = line.strip_prefix("#define\t") else {
            continue;
        };
        let name = rest.split_whitespace().next().unwrap();
        if !name.starts_with("KPI_") || name.starts_with("KPI_KNOB_") {
            continue; // our own numbering, with no kernel counterpart
        }
        assert!(
            KPI_C.contains(&format!("_Static_assert({name} == ")),
            "{name} is not tied to the kernel's value"
        );
    }
}

#[test]
fn the_geom_methods_are_static() {
    // Only the class and the method table are global; the methods are not kernel symbols.
    for method in [
        "g_multipath_start",
        "g_multipath_done",
        "g_multipath_orphan",
        "g_multipath_taste_orphan",
        "g_multipath_access",
        "g_multipath_resize",
        "g_multipath_dumpconf",
        "g_multipath_taste",
        "g_multipath_config",
        "g_multipath_destroy_geom",
        "g_multipath_init",
        "g_multipath_fini",
        "g_multipath_modevent",
    ] {
        let definition = SHIM
            .match_indices(&format!("\n{method}("))
            .next()
            .unwrap_or_else(|| panic!("{method} is not defined in the shim"))
            .0;
        let before = &SHIM[..definition];
        let return_line = before.rsplit('\n').next().unwrap();
        assert!(
            return_line.starts_with("static "),
            "{method} is not static: {return_line:?}"
        );
        assert!(!KPI_C.contains(&format!("{method}(")) || method == "g_multipath_class");
    }
    let header = include_str!("../g_multipath_kmod.h");
    assert!(!header.contains("g_start_t\tg_multipath_start"));
}

#[test]
fn percent_star_s_never_gets_a_raw_length() {
    // "%.*s" takes an int precision: every length goes through gmp_prec's clamp.
    let code = KPI_C.lines().filter(|l| !l.trim_start().starts_with('*'));
    for line in code.filter(|l| l.contains("%.*s")) {
        assert!(line.contains("gmp_prec("), "unclamped precision: {line}");
    }
    assert!(!KPI_C.contains("(int)len, "), "a raw (int)len cast is left");
}

#[test]
fn the_c_side_calls_every_entry_point() {
    let entries = functions(KPI_H, "gmp_rs_");
    assert_eq!(entries.len(), 18);
    for name in entries {
        let call = format!("{name}(");
        assert!(
            SHIM.contains(&call) || KPI_C.contains(&call),
            "{name} is never called by the C side"
        );
    }
}

//! The command tables geom(8) loads from a class library (`class_commands` in
//! `geom_multipath.so` and `geom_nop.so`), geom(8)'s own standard commands, and the usage
//! text built from them with geom.c's rules.
//!
//! A table row says what a command accepts and how its options travel to the kernel; it
//! does not run anything (see [`crate::run`]).

/// The command prints `Done.` with `-v` (`G_FLAG_VERBOSE`).
pub const VERBOSE: u8 = 0x1;
/// Running the command loads the class first (`G_FLAG_LOADKLD`).
pub const LOADKLD: u8 = 0x2;

/// How an option's value is typed and sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptKind {
    /// A flag, sent as an `int` 1 or 0.
    Bool,
    /// A number (`expand_number` syntax), sent as `intmax_t`, with its default text.
    Number(&'static str),
    /// A string, sent as ASCII, with its default bytes (sent when not given).
    Str(&'static [u8]),
    /// A string sent only when given (`G_VAL_OPTIONAL`).
    OptionalStr,
}

/// One option of a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opt {
    /// The letter.
    pub ch: char,
    /// The parameter name sent to the kernel (and shown in generated usage).
    pub name: &'static str,
    /// Its type and default.
    pub kind: OptKind,
}

/// A command that runs in userland instead of going straight to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Userland {
    /// gmultipath label
    Label,
    /// gmultipath clear
    Clear,
    /// gmultipath prefer (issues the request itself)
    Prefer,
    /// geom(8)'s help
    Help,
    /// geom(8)'s list
    List,
    /// geom(8)'s status
    Status,
    /// geom(8)'s load
    Load,
    /// geom(8)'s unload
    Unload,
}

/// One command.
#[derive(Clone, Copy, Debug)]
pub struct Command {
    /// The command word.
    pub name: &'static str,
    /// `VERBOSE` / `LOADKLD` bits.
    pub flags: u8,
    /// Run in userland, or `None` to send the request to the kernel as is.
    pub userland: Option<Userland>,
    /// Its options, in table order.
    pub options: &'static [Opt],
    /// Its usage string, or `None` to build one from the options.
    pub usage: Option<&'static str>,
    /// The most operands it takes, or `None` for "any number" (`prov ...`). FreeBSD's
    /// kernel reads only the operands it needs and ignores the rest; geom(8) here refuses
    /// extras with the usage text (a deviation listed in gmultipath(8) COMPATIBILITY).
    pub max_operands: Option<usize>,
}

/// A GEOM class as geom(8) knows it.
#[derive(Clone, Copy, Debug)]
pub struct ClassDef {
    /// Lower-case name (`multipath`), as in `gmultipath` and `geom multipath`.
    pub name: &'static str,
    /// The kernel's class name (`MULTIPATH`).
    pub kernel_name: &'static str,
    /// The class library's `version` (sent as `version`).
    pub version: u32,
    /// `class_commands`.
    pub commands: &'static [Command],
}

const fn b(ch: char, name: &'static str) -> Opt {
    Opt {
        ch,
        name,
        kind: OptKind::Bool,
    }
}

const fn n(ch: char, name: &'static str, default: &'static str) -> Opt {
    Opt {
        ch,
        name,
        kind: OptKind::Number(default),
    }
}

const fn cmd(
    name: &'static str,
    flags: u8,
    userland: Option<Userland>,
    options: &'static [Opt],
    usage: Option<&'static str>,
) -> Command {
    Command {
        name,
        flags,
        userland,
        options,
        usage,
        max_operands: None,
    }
}

impl Command {
    /// This command with at most `n` operands.
    const fn at_most(self, n: usize) -> Command {
        Command {
            max_operands: Some(n),
            ..self
        }
    }
}

const AR: &[Opt] = &[b('A', "active_active"), b('R', "active_read")];
/// `configure`: FreeBSD's mode flags, then the extensions (issue 12), each sent only when
/// given so the class leaves what is not named alone.
const CONFIGURE: &[Opt] = &[
    b('A', "active_active"),
    b('P', "active_passive"),
    b('R', "active_read"),
    s('c', "check_interval"),
    s('f', "failback"),
    s('q', "queue_timeout"),
    s('r', "reinstate"),
    s('s', "selector"),
];

const fn s(ch: char, name: &'static str) -> Opt {
    Opt {
        ch,
        name,
        kind: OptKind::OptionalStr,
    }
}

/// gmultipath's commands (`geom_multipath.c`).
pub const MULTIPATH: ClassDef = ClassDef {
    name: "multipath",
    kernel_name: "MULTIPATH",
    version: 1,
    commands: &[
        cmd(
            "create",
            VERBOSE | LOADKLD,
            None,
            AR,
            Some("[-vAR] name prov ..."),
        ),
        cmd(
            "label",
            VERBOSE | LOADKLD,
            Some(Userland::Label),
            AR,
            Some("[-vAR] name prov ..."),
        ),
        cmd(
            "configure",
            VERBOSE,
            None,
            CONFIGURE,
            Some(
                "[-vAPR] [-c check_interval] [-f failback] [-q queue_timeout] [-r reinstate] \
                 [-s selector] name",
            ),
        )
        .at_most(1),
        cmd("add", VERBOSE, None, &[], Some("[-v] name prov")).at_most(2),
        cmd("remove", VERBOSE, None, &[], Some("[-v] name prov")).at_most(2),
        cmd(
            "prefer",
            VERBOSE,
            Some(Userland::Prefer),
            &[],
            Some("[-v] prov ..."),
        ),
        cmd("fail", VERBOSE, None, &[], Some("[-v] name prov")).at_most(2),
        cmd("restore", VERBOSE, None, &[], Some("[-v] name prov")).at_most(2),
        cmd("rotate", VERBOSE, None, &[], Some("[-v] name")).at_most(1),
        cmd("getactive", VERBOSE, None, &[], Some("[-v] name")).at_most(1),
        cmd("destroy", VERBOSE, None, &[], Some("[-v] name")).at_most(1),
        cmd("stop", VERBOSE, None, &[], Some("[-v] name")).at_most(1),
        cmd(
            "clear",
            VERBOSE,
            Some(Userland::Clear),
            &[],
            Some("[-v] prov ..."),
        ),
    ],
};

/// The byte geom(8) sends as gnop's `physpath` when `-z` is not given: "pass the physical
/// path of the provider below through".
pub const NOP_PHYSPATH_PASSTHROUGH: &[u8] = b"\xad";

const NOP_CREATE: &[Opt] = &[
    n('c', "count_until_fail", "-1"),
    n('d', "delaymsec", "-1"),
    n('e', "error", "-1"),
    n('o', "offset", "0"),
    n('p', "stripesize", "0"),
    n('P', "stripeoffset", "0"),
    n('q', "rdelayprob", "-1"),
    n('r', "rfailprob", "-1"),
    n('s', "size", "0"),
    n('S', "secsize", "0"),
    n('w', "wfailprob", "-1"),
    n('x', "wdelayprob", "-1"),
    Opt {
        ch: 'z',
        name: "physpath",
        kind: OptKind::Str(NOP_PHYSPATH_PASSTHROUGH),
    },
    Opt {
        ch: 'Z',
        name: "gnopname",
        kind: OptKind::OptionalStr,
    },
];

const NOP_CONFIGURE: &[Opt] = &[
    n('c', "count_until_fail", "-1"),
    n('d', "delaymsec", "-1"),
    n('e', "error", "-1"),
    n('q', "rdelayprob", "-1"),
    n('r', "rfailprob", "-1"),
    n('w', "wfailprob", "-1"),
    n('x', "wdelayprob", "-1"),
];

/// gnop's commands (`geom_nop.c`).
pub const NOP: ClassDef = ClassDef {
    name: "nop",
    kernel_name: "NOP",
    version: 4,
    commands: &[
        cmd(
            "create",
            VERBOSE | LOADKLD,
            None,
            NOP_CREATE,
            Some(
                "[-v] [-c count_until_fail] [-d delaymsec] [-e error] [-o offset] \
                 [-p stripesize] [-P stripeoffset] [-q rdelayprob] [-r rfailprob] [-s size]  \
                 [-S secsize] [-w wfailprob] [-x wdelayprob] [-z physpath] [-Z gnopname] dev ...",
            ),
        ),
        cmd(
            "configure",
            VERBOSE,
            None,
            NOP_CONFIGURE,
            Some(
                "[-v] [-c count_until_fail] [-d delaymsec] [-e error] [-q rdelayprob] \
                 [-r rfailprob] [-w wfailprob] [-x wdelayprob] prov ...",
            ),
        ),
        cmd(
            "destroy",
            VERBOSE,
            None,
            &[b('f', "force")],
            Some("[-fv] prov ..."),
        ),
        cmd("reset", VERBOSE, None, &[], Some("[-v] prov ...")),
    ],
};

/// geom(8)'s standard commands, shown after the class's unless the class has its own.
pub const STANDARD: &[Command] = &[
    cmd("help", 0, Some(Userland::Help), &[], None),
    cmd(
        "list",
        0,
        Some(Userland::List),
        &[b('a', "all")],
        Some("[-a] [name ...]"),
    ),
    cmd(
        "status",
        0,
        Some(Userland::Status),
        &[b('a', "all"), b('g', "geoms"), b('s', "script")],
        Some("[-ags] [name ...]"),
    ),
    cmd("load", VERBOSE | LOADKLD, Some(Userland::Load), &[], None),
    cmd("unload", VERBOSE, Some(Userland::Unload), &[], None),
];

/// The classes this geom(8) knows, by their lower-case name.
pub fn class_by_name(name: &str) -> Option<&'static ClassDef> {
    [&MULTIPATH, &NOP]
        .into_iter()
        .find(|c| c.name.eq_ignore_ascii_case(name))
}

impl ClassDef {
    /// `find_command`: the class's command first, then a standard one.
    pub fn find(&self, word: &str) -> Option<&'static Command> {
        self.commands
            .iter()
            .chain(STANDARD)
            .find(|c| c.name == word)
    }

    /// geom(8)'s usage text for program name `comm` (`gmultipath`, or `geom multipath`).
    pub fn usage(&self, comm: &str) -> String {
        let mut out = String::new();
        let mut prefix = "usage:";
        let shown = self.commands.iter().chain(
            STANDARD
                .iter()
                .filter(|s| !self.commands.iter().any(|c| c.name == s.name)),
        );
        for c in shown {
            out.push_str(&c.usage_line(prefix, comm));
            prefix = "      ";
        }
        out
    }
}

impl Command {
    /// geom.c's `usage_command` for one command.
    fn usage_line(&self, prefix: &str, comm: &str) -> String {
        if let Some(usage) = self.usage {
            return format!("{prefix} {comm} {} {usage}\n", self.name);
        }
        let mut line = format!("{prefix} {comm} {}", self.name);
        if self.flags & VERBOSE != 0 {
            line.push_str(" [-v]");
        }
        // Every option in these tables is a flag or has a default, so every one is shown
        // in brackets (geom.c brackets an option unless it is mandatory).
        for o in self.options {
            line.push_str(" [-");
            line.push(o.ch);
            if o.kind != OptKind::Bool {
                line.push(' ');
                line.push_str(o.name);
            }
            line.push(']');
        }
        line.push('\n');
        line
    }

    /// The getopt letters of this command: `v` first when it is verbose.
    pub fn getopt_specs(&self) -> Vec<crate::getopt::Spec> {
        let verbose = (self.flags & VERBOSE != 0).then_some(crate::getopt::Spec {
            ch: 'v',
            takes_value: false,
        });
        verbose
            .into_iter()
            .chain(self.options.iter().map(|o| crate::getopt::Spec {
                ch: o.ch,
                takes_value: o.kind != OptKind::Bool,
            }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gmultipath_usage_is_freebsds() {
        assert_eq!(
            MULTIPATH.usage("gmultipath"),
            include_str!("../tests/golden/usage.txt")
        );
    }

    #[test]
    fn gnop_usage_is_freebsds_double_space_included() {
        let usage = NOP.usage("gnop");
        let lines: Vec<&str> = usage.lines().collect();
        assert_eq!(
            lines[0],
            "usage: gnop create [-v] [-c count_until_fail] [-d delaymsec] [-e error] [-o offset] \
             [-p stripesize] [-P stripeoffset] [-q rdelayprob] [-r rfailprob] [-s size]  \
             [-S secsize] [-w wfailprob] [-x wdelayprob] [-z physpath] [-Z gnopname] dev ..."
        );
        assert_eq!(
            &lines[1..],
            [
                "       gnop configure [-v] [-c count_until_fail] [-d delaymsec] [-e error] [-q rdelayprob] [-r rfailprob] [-w wfailprob] [-x wdelayprob] prov ...",
                "       gnop destroy [-fv] prov ...",
                "       gnop reset [-v] prov ...",
                "       gnop help",
                "       gnop list [-a] [name ...]",
                "       gnop status [-ags] [name ...]",
                "       gnop load [-v]",
                "       gnop unload [-v]",
            ]
        );
    }

    #[test]
    fn geom_multipath_prefix_form() {
        assert!(MULTIPATH
            .usage("geom multipath")
            .starts_with("usage: geom multipath create [-vAR] name prov ...\n"));
    }

    #[test]
    fn class_commands_shadow_standard_ones() {
        assert_eq!(
            MULTIPATH.find("list").unwrap().userland,
            Some(Userland::List)
        );
        assert_eq!(
            MULTIPATH.find("label").unwrap().userland,
            Some(Userland::Label)
        );
        assert!(MULTIPATH.find("frob").is_none());
        assert_eq!(class_by_name("MULTIPATH").unwrap().kernel_name, "MULTIPATH");
        assert_eq!(class_by_name("nop").unwrap().version, 4);
    }

    #[test]
    fn getopt_letters_put_v_first() {
        let specs = MULTIPATH.find("configure").unwrap().getopt_specs();
        let letters: String = specs.iter().map(|s| s.ch).collect();
        assert_eq!(letters, "vAPRcfqrs");
        assert!(NOP
            .find("create")
            .unwrap()
            .getopt_specs()
            .iter()
            .any(|s| s.ch == 'o' && s.takes_value));
    }
}

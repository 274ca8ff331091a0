//! geom(8)'s `main`: pick the class from the program name, find the command, parse its
//! options with getopt, build the gctl request in geom(8)'s parameter order, run it in
//! userland or send it to the kernel, and turn the outcome into FreeBSD's output, messages
//! and exit status (0 on success, 1 on any failure; errors on stderr as `<prog>: <text>`).
//!
//! Everything observable goes through [`Env`], so tests run the real flow against a fake
//! backend and compare stdout, stderr and the exit code.

use std::io::Write;

use geom_multipath::ctl::OUTPUT_LEN;
use geom_multipath::label_verbs::{plan_label, touched_is_a_path, Probed};
use geom_multipath::{CtlError, Mode, Request};

use crate::backend::{Backend, UnloadError, Unreachable};
use crate::classes::{class_by_name, ClassDef, Command, OptKind, Userland, LOADKLD, STANDARD};
use crate::getopt::{getopt, GetoptError};
use crate::libxo::{self, Xo};
use crate::mesh;
use crate::providers::{ProviderIo, Providers, TouchError};
use crate::render::{self, StatusFlags};
use crate::stat::{self as stat_cmd, Screen};
use crate::view;

/// What a run can touch.
pub struct Env<'a> {
    /// Kernel or host.
    pub backend: &'a mut dyn Backend,
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
    /// A new UUID in text form (`uuid_create` + `uuid_to_string`), or `None` on failure.
    pub new_uuid: &'a mut dyn FnMut() -> Option<String>,
    /// Provider access for label and clear; `None` means "through `backend`".
    pub providers: Option<&'a mut dyn ProviderIo>,
    /// Standard output is a terminal (`stat` refreshes in place).
    pub terminal: bool,
}

/// The exit status geom(8) uses for every failure.
pub const EXIT_FAILURE: i32 = 1;

/// How one run ended, before it is turned into an exit status.
enum Exit {
    Ok,
    Fail,
    /// The host is running but will not be asked: its own exit status.
    Unreachable(Unreachable),
}

/// `getprogname()` and the class, as geom.c's `get_class` decides them.
struct Invocation<'a> {
    prog: String,
    comm: String,
    class: &'static ClassDef,
    words: &'a [String],
    /// `--libxo`, taken out of the command line (an extension).
    xo: Option<Xo>,
}

/// Runs geom(8) with `argv` (argv[0] included); returns the exit status.
pub fn main(argv: &[String], env: &mut Env<'_>) -> i32 {
    match run(argv, env) {
        Exit::Ok => 0,
        Exit::Fail => EXIT_FAILURE,
        Exit::Unreachable(why) => why.exit_status(),
    }
}

fn run(argv: &[String], env: &mut Env<'_>) -> Exit {
    let prog = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_else(|| String::from("geom"));
    let (argv, xo) = match libxo::parse_args(argv) {
        Ok(parsed) => parsed,
        Err(text) => return errx(env, &prog, &text),
    };
    let argv = argv.as_slice();
    let inv = match invocation(&prog, argv, env, xo) {
        Ok(inv) => inv,
        Err(exit) => return exit,
    };
    if !std_available(&inv, "load", env) && !std_available(&inv, "list", env) {
        return errx(
            env,
            &inv.prog,
            &format!("Invalid class name '{}'.", inv.class.name),
        );
    }
    if inv.words.is_empty() {
        return usage(env, &inv);
    }
    run_command(&inv, env)
}

fn invocation<'a>(
    prog: &str,
    argv: &'a [String],
    env: &mut Env<'_>,
    xo: Option<Xo>,
) -> Result<Invocation<'a>, Exit> {
    let (comm, class_word, words) = if prog == "geom" {
        if argv.len() < 2 || (argv.len() == 2 && (argv[1] == "-h" || argv[1] == "help")) {
            let _ = env.err.write_all(
                b"usage: geom <class> <command> [options]\n       geom -p <provider-name>\n       geom -t\n",
            );
            return Err(Exit::Fail);
        }
        (format!("geom {}", argv[1]), argv[1].as_str(), &argv[2..])
    } else if let Some(class) = prog.strip_prefix('g') {
        (prog.to_string(), class, argv.get(1..).unwrap_or(&[]))
    } else {
        return Err(errx(env, prog, "Invalid utility name."));
    };
    let Some(class) = class_by_name(class_word) else {
        return Err(errx(
            env,
            prog,
            &format!("Invalid class name '{class_word}'."),
        ));
    };
    Ok(Invocation {
        prog: prog.to_string(),
        comm,
        class,
        words,
        xo,
    })
}

fn warnx(env: &mut Env<'_>, prog: &str, text: &str) {
    let _ = writeln!(env.err, "{prog}: {text}");
}

fn errx(env: &mut Env<'_>, prog: &str, text: &str) -> Exit {
    warnx(env, prog, text);
    Exit::Fail
}

fn usage(env: &mut Env<'_>, inv: &Invocation<'_>) -> Exit {
    let _ = env.err.write_all(inv.class.usage(&inv.comm).as_bytes());
    Exit::Fail
}

/// geom.c's `std_available`.
fn std_available(inv: &Invocation<'_>, name: &str, env: &mut Env<'_>) -> bool {
    match name {
        "help" => true,
        "list" | "status" => env.backend.loaded() && class_in_tree(inv, env),
        // FreeBSD 15's rule: available when the class is in the kernel or can be loaded.
        "load" => env.backend.loaded() || env.backend.loadable(),
        "unload" => env.backend.loaded(),
        _ => false,
    }
}

fn class_in_tree(inv: &Invocation<'_>, env: &mut Env<'_>) -> bool {
    env.backend
        .confxml()
        .ok()
        .and_then(|xml| mesh::parse(&xml).ok())
        .is_some_and(|m| m.find_class(inv.class.kernel_name).is_some())
}

/// What getopt and the option table made of the command line.
struct Args {
    verbose: bool,
    flags: Vec<(&'static str, bool)>,
    operands: Vec<String>,
}

impl Args {
    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|&(n, on)| n == name && on)
    }
}

fn run_command(inv: &Invocation<'_>, env: &mut Env<'_>) -> Exit {
    let word = inv.words[0].as_str();
    if word != "help" {
        if let Some(why) = env.backend.unreachable() {
            warnx(env, &inv.prog, &why.to_string());
            return Exit::Unreachable(why);
        }
    }
    if word == "stat" && inv.class.kernel_name == "MULTIPATH" {
        return stat(inv, env);
    }
    let class_cmd = inv.class.commands.iter().find(|c| c.name == word);
    let cmd = match class_cmd {
        Some(c) => c,
        None => match STANDARD.iter().find(|c| c.name == word) {
            None => {
                warnx(env, &inv.prog, &format!("Unknown command: {word}."));
                return usage(env, inv);
            }
            Some(c) if !std_available(inv, c.name, env) => {
                return errx(
                    env,
                    &inv.prog,
                    &format!("Command '{word}' not available; try 'load' first."),
                );
            }
            Some(c) => c,
        },
    };
    if cmd.flags & LOADKLD != 0 && !env.backend.loaded() {
        if let Err(e) = env.backend.load() {
            let text = format!(
                "cannot load geom_{}: {}",
                inv.class.name,
                crate::strerror(&e)
            );
            return errx(env, &inv.prog, &text);
        }
    }
    let mut req = Request::for_verb(inv.class.kernel_name, word, inv.class.version);
    let args = match parse_arguments(inv, cmd, &mut req, env) {
        Ok(a) => a,
        Err(exit) => return exit,
    };
    let mut output = String::new();
    match cmd.userland {
        None => {
            req.add_output("output", OUTPUT_LEN);
            match env.backend.issue(&req) {
                Ok(reply) if reply.error.is_empty() => output = reply.output,
                Ok(reply) => req.error(CtlError::Other(reply.error)),
                Err(text) => req.error(CtlError::Other(text)),
            }
        }
        Some(u) => {
            if let Some(exit) = run_userland(u, inv, &args, &mut req, env) {
                return exit;
            }
        }
    }
    if let Some(e) = req.first_error() {
        let text = e.to_string();
        if !text.is_empty() {
            warnx(env, &inv.prog, &text);
            if !text.starts_with("warning: ") {
                return Exit::Fail;
            }
        }
    }
    match inv.xo.filter(|xo| xo.structured() && word == "getactive") {
        Some(xo) => {
            let geom = args.operands.first().map_or("", String::as_str);
            let doc = libxo::document(xo, view::TOP, view::getactive(geom, &output));
            let _ = env.out.write_all(doc.as_bytes());
        }
        None => {
            let _ = env.out.write_all(output.as_bytes());
        }
    }
    if args.verbose {
        let _ = env.out.write_all(b"Done.\n");
    }
    Exit::Ok
}

/// geom.c's `parse_arguments`: given options in order, defaults for the rest, then
/// `nargs` and `arg0`….
fn parse_arguments(
    inv: &Invocation<'_>,
    cmd: &Command,
    req: &mut Request,
    env: &mut Env<'_>,
) -> Result<Args, Exit> {
    let parsed = match getopt(&inv.words[1..], &cmd.getopt_specs()) {
        Ok(p) => p,
        Err(e @ (GetoptError::Illegal(_) | GetoptError::NeedsArgument(_))) => {
            warnx(env, &inv.prog, &e.to_string());
            return Err(usage(env, inv));
        }
    };
    if cmd
        .max_operands
        .is_some_and(|most| parsed.operands.len() > most)
    {
        warnx(env, &inv.prog, "Too many arguments.");
        return Err(usage(env, inv));
    }
    let mut args = Args {
        verbose: false,
        flags: Vec::new(),
        operands: parsed.operands,
    };
    let mut done: Vec<char> = Vec::new();
    for (ch, value) in parsed.options {
        if done.contains(&ch) {
            warnx(env, &inv.prog, &format!("Option '{ch}' specified twice."));
            return Err(usage(env, inv));
        }
        done.push(ch);
        if ch == 'v' {
            args.verbose = true;
            continue;
        }
        let opt = cmd
            .options
            .iter()
            .find(|o| o.ch == ch)
            .expect("getopt only returns table letters");
        add_option(inv, opt, value.as_deref(), true, req, &mut args, env)?;
    }
    for opt in cmd.options.iter().filter(|o| !done.contains(&o.ch)) {
        match opt.kind {
            OptKind::Bool => add_option(inv, opt, None, false, req, &mut args, env)?,
            OptKind::Number(default) => {
                add_option(inv, opt, Some(default), false, req, &mut args, env)?
            }
            OptKind::Str(default) => req.add_ascii_bytes(opt.name, default),
            OptKind::OptionalStr => {}
        }
    }
    req.add_args(&args.operands);
    Ok(args)
}

fn add_option(
    inv: &Invocation<'_>,
    opt: &crate::classes::Opt,
    value: Option<&str>,
    given: bool,
    req: &mut Request,
    args: &mut Args,
    env: &mut Env<'_>,
) -> Result<(), Exit> {
    match opt.kind {
        OptKind::Bool => {
            req.add_int(opt.name, i32::from(given));
            args.flags.push((opt.name, given));
        }
        OptKind::Number(_) => match expand_number(value.unwrap_or("0")) {
            Some(n) => req.add_i64(opt.name, n),
            None => {
                let msg = format!("Invalid value for '{}' argument: Invalid argument", opt.ch);
                return Err(errx(env, &inv.prog, &msg));
            }
        },
        OptKind::Str(_) | OptKind::OptionalStr => req.add_ascii(opt.name, value.unwrap_or("")),
    }
    Ok(())
}

/// libutil's `expand_number`: `strtoumax` with base detection (so `-1` wraps to all ones
/// and reads back as -1), then one unit letter b/k/m/g/t/p/e, optionally followed by `b`.
pub fn expand_number(text: &str) -> Option<i64> {
    let s = text.trim_start();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, h)
    } else if s.len() > 1 && s.starts_with('0') {
        (8, &s[1..])
    } else {
        (10, s)
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    let magnitude = if end == 0 {
        0
    } else {
        u64::from_str_radix(&digits[..end], radix).ok()?
    };
    let number = if negative {
        magnitude.wrapping_neg()
    } else {
        magnitude
    };
    let unit = &digits[end..];
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" => 0,
        "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        "t" | "tb" => 40,
        "p" | "pb" => 50,
        "e" | "eb" => 60,
        _ => return None,
    };
    let shifted = number.checked_shl(shift)?;
    if shifted >> shift != number {
        return None;
    }
    Some(shifted as i64)
}

/// Runs a command that has a userland function. `Some(exit)` ends the run at once.
fn run_userland(
    u: Userland,
    inv: &Invocation<'_>,
    args: &Args,
    req: &mut Request,
    env: &mut Env<'_>,
) -> Option<Exit> {
    match u {
        Userland::Help => Some(usage(env, inv)),
        Userland::Label => {
            label(args, req, env);
            env.backend.settle();
            None
        }
        Userland::Clear => {
            clear(args, req, env);
            env.backend.settle();
            None
        }
        Userland::Prefer => {
            prefer(args, req, env);
            None
        }
        Userland::List | Userland::Status => Some(list_or_status(u, inv, args, env)),
        Userland::Load => {
            if args.verbose {
                let _ = env.out.write_all(b"Module available.\n");
            }
            None
        }
        Userland::Unload => {
            let text = match env.backend.unload() {
                Ok(()) => None,
                Err(UnloadError::NotFound(e)) => {
                    Some(format!("Could not find module: {}.", crate::strerror(&e)))
                }
                Err(UnloadError::Refused(e)) => {
                    Some(format!("Could not unload module: {}.", crate::strerror(&e)))
                }
                Err(UnloadError::Held(e, by)) => Some(format!(
                    "Could not unload module: {}.\n{by}",
                    crate::strerror(&e)
                )),
            };
            if let Some(text) = text {
                req.error(CtlError::Other(text));
            }
            None
        }
    }
}

/// `mp_label`.
fn label(args: &Args, req: &mut Request, env: &mut Env<'_>) {
    let ops = &args.operands;
    if ops.len() < 2 {
        req.error(CtlError::WrongNumberOfArguments);
        return;
    }
    let mut local;
    let io: &mut dyn ProviderIo = match env.providers.as_deref_mut() {
        Some(p) => p,
        None => {
            local = Providers::new(env.backend);
            &mut local
        }
    };
    let probed: Vec<Probed> = ops[1..]
        .iter()
        .map(|name| Probed {
            name: name.clone(),
            geometry: io.geometry(name).map_err(|e| crate::strerror(&e)),
        })
        .collect();
    let Some(uuid) = (env.new_uuid)() else {
        req.error(CtlError::CannotCreateUuid);
        return;
    };
    let mode = Mode::from_flags(args.flag("active_active"), args.flag("active_read"));
    let plan = match plan_label(&ops[0], mode, &uuid, &probed) {
        Ok(p) => p,
        Err(e) => {
            req.error(e);
            return;
        }
    };
    if let Err(e) = io.store(&plan.target, plan.offset, &plan.sector) {
        req.error(CtlError::CannotStore(
            plan.target.clone(),
            crate::strerror(&e),
        ));
        return;
    }
    for name in &plan.touch {
        match io.touch(name, plan.offset, plan.sector.len()) {
            Err(TouchError::Open(e)) => {
                let _ = writeln!(env.err, "Unable to open {name}: {}.", crate::strerror(&e));
            }
            Err(TouchError::Read(e)) => {
                let _ = writeln!(
                    env.err,
                    "Unable to read metadata from {name}: {}.",
                    crate::strerror(&e)
                );
            }
            Ok(read) if !touched_is_a_path(&plan.sector, &read) => {
                let _ = writeln!(
                    env.err,
                    "No metadata found on {name}. It is not a path of {}.",
                    plan.target
                );
            }
            Ok(_) => {}
        }
    }
}

/// `mp_clear`.
fn clear(args: &Args, req: &mut Request, env: &mut Env<'_>) {
    if args.operands.is_empty() {
        req.error(CtlError::TooFewArguments);
        return;
    }
    let mut local;
    let io: &mut dyn ProviderIo = match env.providers.as_deref_mut() {
        Some(p) => p,
        None => {
            local = Providers::new(env.backend);
            &mut local
        }
    };
    for name in &args.operands {
        if let Err(e) = io.clear(name) {
            let _ = writeln!(
                env.err,
                "Can't clear metadata on {name}: {}.",
                crate::strerror(&e)
            );
            req.error(CtlError::NotFullyDone);
        }
    }
}

/// `mp_prefer`: issues the request itself and says why it failed before geom(8) repeats it.
fn prefer(args: &Args, req: &mut Request, env: &mut Env<'_>) {
    if args.operands.len() != 2 {
        req.error(CtlError::PreferUsage);
        return;
    }
    let error = match env.backend.issue(req) {
        Ok(reply) if reply.error.is_empty() => return,
        Ok(reply) => reply.error,
        Err(text) => text,
    };
    let _ = writeln!(
        env.err,
        "Can't set {} preferred provider to {}: {error}.",
        args.operands[0], args.operands[1]
    );
    req.error(CtlError::Other(error));
}

/// geom(8)'s `list` and `status`.
fn list_or_status(u: Userland, inv: &Invocation<'_>, args: &Args, env: &mut Env<'_>) -> Exit {
    let tree = env
        .backend
        .confxml()
        .map_err(|e| crate::strerror(&e))
        .and_then(|xml| mesh::parse(&xml).map_err(|e| e.errno_message().to_string()));
    let mesh = match tree {
        Ok(m) => m,
        Err(why) => return errx(env, &inv.prog, &format!("Cannot get GEOM tree: {why}")),
    };
    let names: Vec<&str> = args.operands.iter().map(String::as_str).collect();
    if let Some(xo) = inv.xo.filter(Xo::structured) {
        let class = inv.class.kernel_name;
        let body = if u == Userland::List {
            view::list(&mesh, class, &names, args.flag("all"))
        } else {
            view::status(&mesh, class, &names, args.flag("all"), args.flag("geoms"))
        };
        return match body {
            Ok(body) => {
                let doc = libxo::document(xo, view::TOP, body);
                let _ = env.out.write_all(doc.as_bytes());
                Exit::Ok
            }
            Err(e) => errx(env, &inv.prog, &e.to_string()),
        };
    }
    let rendered = if u == Userland::List {
        render::list(&mesh, inv.class.kernel_name, &names, args.flag("all"))
    } else {
        let flags = StatusFlags {
            all: args.flag("all"),
            geoms: args.flag("geoms"),
            script: args.flag("script"),
        };
        render::status(&mesh, inv.class.kernel_name, &names, flags)
    };
    let _ = env.out.write_all(rendered.stdout.as_bytes());
    match rendered.error {
        Some(e) => errx(env, &inv.prog, &e.to_string()),
        None => Exit::Ok,
    }
}

/// `stat` (an extension, see [`crate::stat`]): not in the class's table, so FreeBSD's usage
/// text stays as it is.
fn stat(inv: &Invocation<'_>, env: &mut Env<'_>) -> Exit {
    let args = match stat_cmd::parse(&inv.words[1..]) {
        Ok(a) => a,
        Err(text) => {
            warnx(env, &inv.prog, &text);
            let _ = env.err.write_all(stat_cmd::USAGE.as_bytes());
            return Exit::Fail;
        }
    };
    if !env.backend.loaded() {
        return errx(
            env,
            &inv.prog,
            "Command 'stat' not available; try 'load' first.",
        );
    }
    let mut screen = Screen {
        out: env.out,
        terminal: env.terminal,
        xo: inv.xo,
    };
    match stat_cmd::run(&args, env.backend, &mut screen, &mut std::thread::sleep) {
        Ok(()) => Exit::Ok,
        Err(text) => errx(env, &inv.prog, &text),
    }
}

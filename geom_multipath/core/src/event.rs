//! Everything the class tells the outside world without being asked: console messages
//! (FreeBSD's `printf`s, COMPAT.md §5) and probe firings (FreeBSD's SDT probes
//! `geom:multipath:config:*` and `io:restart`).
//!
//! All console texts live here and nowhere else. [`Message`]'s `Display` is FreeBSD's exact
//! text without the trailing newline; the kernel module prints it with `printf`, the host
//! logs it to syslog and, in the foreground, to stderr. The two debug-only messages are
//! filtered by the class itself (`kern.geom.multipath.debug`), so a driver prints every
//! [`Message`] it polls.

use alloc::string::String;
use core::fmt;

use crate::errno::Errno;

/// What the class emitted, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A console message.
    Log(Message),
    /// An SDT probe firing (the host counts these; the kmod fires the real probe).
    Probe(Probe),
}

/// How loud a message is. The kernel prints every level with `printf`; the host maps the
/// level onto syslog priorities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Printed only while `kern.geom.multipath.debug` is non-zero.
    Debug,
    /// Normal configuration chatter.
    Info,
    /// Something failed: a path, an attach, a metadata write.
    Warning,
}

/// One console message. Names are owned copies: the path or geom may be gone by the time
/// the driver prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // the fields are the %s/%d arguments of the text in each variant's doc
pub enum Message {
    /// `GEOM_MULTIPATH: <geom> created`
    Created { geom: String },
    /// `GEOM_MULTIPATH: name <geom> already exists`
    NameExists { geom: String },
    /// `GEOM_MULTIPATH: <path> added to <geom>`
    Added { path: String, geom: String },
    /// `GEOM_MULTIPATH: <path> is now active path in <geom>`
    NowActive { path: String, geom: String },
    /// `GEOM_MULTIPATH: <path> now active path in <geom>` (prefer; FreeBSD's text has no "is")
    Preferred { path: String, geom: String },
    /// `GEOM_MULTIPATH: provider <path> already attached to <geom>`
    AlreadyAttached { path: String, geom: String },
    /// `GEOM_MULTIPATH: cannot attach <path> to <geom>` (FreeBSD forgets the newline; we
    /// end the line, see gmultipath(8) COMPATIBILITY)
    CannotAttach { path: String, geom: String },
    /// `GEOM_MULTIPATH: cannot set access in attaching <path> to <geom> (<error>)`
    CannotSetAccess {
        path: String,
        geom: String,
        error: Errno,
    },
    /// `GEOM_MULTIPATH: Error <error>, <path> in <geom> marked FAIL`
    IoFailed {
        error: Errno,
        path: String,
        geom: String,
    },
    /// `GEOM_MULTIPATH: all paths in <geom> were marked FAIL, restore <path>`
    AllFailedRestore { geom: String, path: String },
    /// `GEOM_MULTIPATH: out of providers for <geom>`
    OutOfProviders { geom: String },
    /// `GEOM_MULTIPATH: <path> in <geom> is marked FAIL.`
    MarkedFail { path: String, geom: String },
    /// `GEOM_MULTIPATH: <path> in <geom> is marked OK.`
    MarkedOk { path: String, geom: String },
    /// `GEOM_MULTIPATH: removing <path> from <geom>`
    Removing { path: String, geom: String },
    /// `GEOM_MULTIPATH: <path> in <geom> was disconnected`
    Disconnected { path: String, geom: String },
    /// `GEOM_MULTIPATH: <path> removed from <geom>`
    Removed { path: String, geom: String },
    /// `GEOM_MULTIPATH: destroying <geom>`
    Destroying { geom: String },
    /// `GEOM_MULTIPATH: <geom> destroyed`
    Destroyed { geom: String },
    /// `GEOM_MULTIPATH: <geom> size changed from <from> to <to>`
    SizeChanged { geom: String, from: u64, to: u64 },
    /// `GEOM_MULTIPATH: Can't update metadata on <path> (<error>)`
    CantUpdateMetadata { path: String, error: Errno },
    /// `GEOM_MULTIPATH: geom <geom>/<uuid> exists already`
    GeomExists { geom: String, uuid: String },
    /// `GEOM_MULTIPATH: <uuid> will be (temporarily) <name>`
    WillBe { uuid: String, name: String },
    /// `GEOM_MULTIPATH: cannot create geom <geom>/<uuid>`
    CannotCreate { geom: String, uuid: String },
    /// `<provider> has version <version> multipath id- this module is version  1: rejecting`
    BadVersion { provider: String, version: u32 },
    /// `GEOM_MULTIPATH: <provider> has a corrupt label (<reason>): rejecting` — not in
    /// FreeBSD, which would use such a label as it is.
    CorruptLabel { provider: String, reason: String },
    /// `GEOM_MULTIPATH: <path> in <geom> is flapping (<failures> failures in <window> s), held
    /// out for <hold> s` — extension (anti-flap).
    Held {
        path: String,
        geom: String,
        failures: u32,
        window: u32,
        hold: u32,
    },
    /// `GEOM_MULTIPATH: <path> in <geom> is no longer held out` — extension (anti-flap).
    HoldEnded { path: String, geom: String },
    /// `GEOM_MULTIPATH: no usable path in <geom>, queueing requests for up to <timeout> s`
    /// — extension (bounded queueing).
    QueueingStarted { geom: String, timeout: u32 },
    /// `GEOM_MULTIPATH: <geom> stopped queueing: <resumed> requests resumed, <failed>
    /// failed` — extension (bounded queueing).
    QueueingEnded {
        geom: String,
        resumed: u32,
        failed: u32,
    },
    /// `<provider> is not MULTIPATH` (debug only)
    NotMultipath { provider: String },
    /// `GEOM_MULTIPATH: <path> is another disk than <other> in <geom> (<ident> is not
    /// <other_ident>): refusing` — not in FreeBSD, which joins them.
    OtherDisk {
        path: String,
        geom: String,
        ident: String,
        other: String,
        other_ident: String,
    },
    /// `GEOM_MULTIPATH: a write to <path> in <geom> is overdue; it is re-driven once its
    /// answer arrives, <path> is gone[ or <n> s have passed]` — not in FreeBSD (the I/O
    /// deadline is an extension).
    WriteHeld {
        path: String,
        geom: String,
        quiesce_time: u32,
    },
    /// `GEOM_MULTIPATH: <provider> label's <what> <label> is not the provider's <actual>:
    /// skipping` (debug only) — not in FreeBSD, which skips such a label without a word.
    LabelMisfit {
        provider: String,
        what: &'static str,
        label: u64,
        actual: u64,
    },
    /// `MULTIPATH: <name>/<uuid>` (debug only)
    Tasted { name: String, uuid: String },
}

impl Message {
    /// How loud the message is.
    pub fn level(&self) -> Level {
        match self {
            Message::NotMultipath { .. } | Message::Tasted { .. } | Message::LabelMisfit { .. } => {
                Level::Debug
            }
            Message::CannotAttach { .. }
            | Message::CannotSetAccess { .. }
            | Message::IoFailed { .. }
            | Message::AllFailedRestore { .. }
            | Message::OutOfProviders { .. }
            | Message::Disconnected { .. }
            | Message::CantUpdateMetadata { .. }
            | Message::CannotCreate { .. }
            | Message::BadVersion { .. }
            | Message::OtherDisk { .. }
            | Message::WriteHeld { .. }
            | Message::CorruptLabel { .. }
            | Message::Held { .. }
            | Message::QueueingStarted { .. } => Level::Warning,
            _ => Level::Info,
        }
    }
}

const P: &str = "GEOM_MULTIPATH: ";

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Created { geom } => write!(f, "{P}{geom} created"),
            Message::NameExists { geom } => write!(f, "{P}name {geom} already exists"),
            Message::Added { path, geom } => write!(f, "{P}{path} added to {geom}"),
            Message::NowActive { path, geom } => {
                write!(f, "{P}{path} is now active path in {geom}")
            }
            Message::Preferred { path, geom } => write!(f, "{P}{path} now active path in {geom}"),
            Message::AlreadyAttached { path, geom } => {
                write!(f, "{P}provider {path} already attached to {geom}")
            }
            Message::CannotAttach { path, geom } => write!(f, "{P}cannot attach {path} to {geom}"),
            Message::CannotSetAccess { path, geom, error } => write!(
                f,
                "{P}cannot set access in attaching {path} to {geom} ({error})"
            ),
            Message::IoFailed { error, path, geom } => {
                write!(f, "{P}Error {error}, {path} in {geom} marked FAIL")
            }
            Message::AllFailedRestore { geom, path } => {
                write!(f, "{P}all paths in {geom} were marked FAIL, restore {path}")
            }
            Message::OutOfProviders { geom } => write!(f, "{P}out of providers for {geom}"),
            Message::MarkedFail { path, geom } => write!(f, "{P}{path} in {geom} is marked FAIL."),
            Message::MarkedOk { path, geom } => write!(f, "{P}{path} in {geom} is marked OK."),
            Message::Removing { path, geom } => write!(f, "{P}removing {path} from {geom}"),
            Message::Disconnected { path, geom } => {
                write!(f, "{P}{path} in {geom} was disconnected")
            }
            Message::Removed { path, geom } => write!(f, "{P}{path} removed from {geom}"),
            Message::Destroying { geom } => write!(f, "{P}destroying {geom}"),
            Message::Destroyed { geom } => write!(f, "{P}{geom} destroyed"),
            Message::SizeChanged { geom, from, to } => {
                write!(f, "{P}{geom} size changed from {from} to {to}")
            }
            Message::CantUpdateMetadata { path, error } => {
                write!(f, "{P}Can't update metadata on {path} ({error})")
            }
            Message::GeomExists { geom, uuid } => write!(f, "{P}geom {geom}/{uuid} exists already"),
            Message::WillBe { uuid, name } => write!(f, "{P}{uuid} will be (temporarily) {name}"),
            Message::CannotCreate { geom, uuid } => {
                write!(f, "{P}cannot create geom {geom}/{uuid}")
            }
            Message::BadVersion { provider, version } => write!(
                f,
                "{provider} has version {version} multipath id- this module is version  {}: rejecting",
                crate::metadata::VERSION
            ),
            Message::CorruptLabel { provider, reason } => {
                write!(f, "{P}{provider} has a corrupt label ({reason}): rejecting")
            }
            Message::Held {
                path,
                geom,
                failures,
                window,
                hold,
            } => write!(
                f,
                "{P}{path} in {geom} is flapping ({failures} failures in {window} s), held out \
                 for {hold} s"
            ),
            Message::HoldEnded { path, geom } => {
                write!(f, "{P}{path} in {geom} is no longer held out")
            }
            Message::QueueingStarted { geom, timeout } => write!(
                f,
                "{P}no usable path in {geom}, queueing requests for up to {timeout} s"
            ),
            Message::QueueingEnded {
                geom,
                resumed,
                failed,
            } => write!(
                f,
                "{P}{geom} stopped queueing: {resumed} requests resumed, {failed} failed"
            ),
            Message::NotMultipath { provider } => write!(f, "{provider} is not MULTIPATH"),
            Message::OtherDisk {
                path,
                geom,
                ident,
                other,
                other_ident,
            } => write!(
                f,
                "{P}{path} is another disk than {other} in {geom} ({ident} is not \
                 {other_ident}): refusing"
            ),
            Message::WriteHeld {
                path,
                geom,
                quiesce_time: 0,
            } => write!(
                f,
                "{P}a write to {path} in {geom} is overdue; it is re-driven once its answer \
                 arrives or {path} is gone"
            ),
            Message::WriteHeld {
                path,
                geom,
                quiesce_time,
            } => write!(
                f,
                "{P}a write to {path} in {geom} is overdue; it is re-driven once its answer \
                 arrives, {path} is gone or {quiesce_time} s have passed"
            ),
            Message::LabelMisfit {
                provider,
                what,
                label,
                actual,
            } => write!(
                f,
                "{P}{provider} label's {what} {label} is not the provider's {actual}: skipping"
            ),
            Message::Tasted { name, uuid } => write!(f, "MULTIPATH: {name}/{uuid}"),
        }
    }
}

/// An SDT probe of provider `geom`, module `multipath`. The host counts them so tests can
/// observe what DTrace would.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Probe {
    /// `config:restore(geom, path)`: auto-restore or the restore verb.
    Restore { geom: String, path: String },
    /// `config:remove(geom, path)`: the remove verb, and every detach.
    Remove { geom: String, path: String },
    /// `config:disconnect(geom, path)`: a path's provider went away.
    Disconnect { geom: String, path: String },
    /// `config:fail(geom, path, error)`: an I/O error (or 0 for the fail verb).
    Fail {
        geom: String,
        path: String,
        error: i32,
    },
    /// `config:taste(name, uuid)`: a label was accepted by taste.
    Taste { name: String, uuid: String },
    /// `io:restart(child, parent)`: a failed request is reissued; `token` is the caller's id
    /// of the parent request.
    Restart { token: u64 },
}

impl Probe {
    /// The probe's DTrace name, `geom:multipath:<function>:<name>`.
    pub fn name(&self) -> &'static str {
        match self {
            Probe::Restore { .. } => "geom:multipath:config:restore",
            Probe::Remove { .. } => "geom:multipath:config:remove",
            Probe::Disconnect { .. } => "geom:multipath:config:disconnect",
            Probe::Fail { .. } => "geom:multipath:config:fail",
            Probe::Taste { .. } => "geom:multipath:config:taste",
            Probe::Restart { .. } => "geom:multipath:io:restart",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn s(x: &str) -> String {
        String::from(x)
    }

    #[test]
    fn texts_are_freebsds() {
        let cases: &[(Message, &str)] = &[
            (
                Message::Created { geom: s("FRED") },
                "GEOM_MULTIPATH: FRED created",
            ),
            (
                Message::NameExists { geom: s("FRED") },
                "GEOM_MULTIPATH: name FRED already exists",
            ),
            (
                Message::Added {
                    path: s("da0"),
                    geom: s("FRED"),
                },
                "GEOM_MULTIPATH: da0 added to FRED",
            ),
            (
                Message::NowActive {
                    path: s("da0"),
                    geom: s("FRED"),
                },
                "GEOM_MULTIPATH: da0 is now active path in FRED",
            ),
            (
                Message::Preferred {
                    path: s("da0"),
                    geom: s("FRED"),
                },
                "GEOM_MULTIPATH: da0 now active path in FRED",
            ),
            (
                Message::AlreadyAttached {
                    path: s("da0"),
                    geom: s("FRED"),
                },
                "GEOM_MULTIPATH: provider da0 already attached to FRED",
            ),
            (
                Message::CannotAttach {
                    path: s("da0"),
                    geom: s("FRED"),
                },
                "GEOM_MULTIPATH: cannot attach da0 to FRED",
            ),
            (
                Message::CannotSetAccess {
                    path: s("da0"),
                    geom: s("FRED"),
                    error: Errno::EPERM,
                },
                "GEOM_MULTIPATH: cannot set access in attaching da0 to FRED (1)",
            ),
            (
                Message::IoFailed {
                    error: Errno::EIO,
                    path: s("da0"),
                    geom: s("FRED"),
                },
                "GEOM_MULTIPATH: Error 5, da0 in FRED marked FAIL",
            ),
            (
                Message::AllFailedRestore {
                    geom: s("FRED"),
                    path: s("da1"),
                },
                "GEOM_MULTIPATH: all paths in FRED were marked FAIL, restore da1",
            ),
            (
                Message::OutOfProviders { geom: s("FRED") },
                "GEOM_MULTIPATH: out of providers for FRED",
            ),
            (
                Message::MarkedFail {
                    path: s("da0"),
                    geom: s("FRED"),
                },
                "GEOM_MULTIPATH: da0 in FRED is marked FAIL.",
            ),
            (
                Message::MarkedOk {
                    path: s("da0"),
                    geom: s("FRED"),
                },
                "GEOM_MULTIPATH: da0 in FRED is marked OK.",
            ),
            (
                Message::Removing {
                    path: s("da0"),
                    geom: s("FRED"),
                },
                "GEOM_MULTIPATH: removing da0 from FRED",
            ),
            (
                Message::Disconnected {
                    path: s("da0"),
                    geom: s("FRED"),
                },
                "GEOM_MULTIPATH: da0 in FRED was disconnected",
            ),
            (
                Message::Removed {
                    path: s("da0"),
                    geom: s("FRED"),
                },
                "GEOM_MULTIPATH: da0 removed from FRED",
            ),
            (
                Message::Destroying { geom: s("FRED") },
                "GEOM_MULTIPATH: destroying FRED",
            ),
            (
                Message::Destroyed { geom: s("FRED") },
                "GEOM_MULTIPATH: FRED destroyed",
            ),
            (
                Message::SizeChanged {
                    geom: s("FRED"),
                    from: 1024,
                    to: 2048,
                },
                "GEOM_MULTIPATH: FRED size changed from 1024 to 2048",
            ),
            (
                Message::CantUpdateMetadata {
                    path: s("da0"),
                    error: Errno::EIO,
                },
                "GEOM_MULTIPATH: Can't update metadata on da0 (5)",
            ),
            (
                Message::GeomExists {
                    geom: s("FRED"),
                    uuid: s("u1"),
                },
                "GEOM_MULTIPATH: geom FRED/u1 exists already",
            ),
            (
                Message::WillBe {
                    uuid: s("u2"),
                    name: s("FRED-1234"),
                },
                "GEOM_MULTIPATH: u2 will be (temporarily) FRED-1234",
            ),
            (
                Message::CannotCreate {
                    geom: s("FRED"),
                    uuid: s("u2"),
                },
                "GEOM_MULTIPATH: cannot create geom FRED/u2",
            ),
            (
                Message::BadVersion {
                    provider: s("da0"),
                    version: 2,
                },
                "da0 has version 2 multipath id- this module is version  1: rejecting",
            ),
            (
                Message::NotMultipath { provider: s("da0") },
                "da0 is not MULTIPATH",
            ),
            (
                Message::Tasted {
                    name: s("FRED"),
                    uuid: s("u1"),
                },
                "MULTIPATH: FRED/u1",
            ),
        ];
        for (msg, text) in cases {
            assert_eq!(msg.to_string(), *text);
        }
    }

    #[test]
    fn only_taste_chatter_is_debug() {
        assert_eq!(
            Message::NotMultipath { provider: s("x") }.level(),
            Level::Debug
        );
        assert_eq!(
            Message::Tasted {
                name: s("x"),
                uuid: s("y")
            }
            .level(),
            Level::Debug
        );
        assert_eq!(Message::Created { geom: s("x") }.level(), Level::Info);
        assert_eq!(
            Message::IoFailed {
                error: Errno::EIO,
                path: s("a"),
                geom: s("b")
            }
            .level(),
            Level::Warning
        );
    }

    #[test]
    fn probe_names_are_dtrace_names() {
        assert_eq!(
            Probe::Restore {
                geom: s("g"),
                path: s("p")
            }
            .name(),
            "geom:multipath:config:restore"
        );
        assert_eq!(
            Probe::Restart { token: 1 }.name(),
            "geom:multipath:io:restart"
        );
    }
}

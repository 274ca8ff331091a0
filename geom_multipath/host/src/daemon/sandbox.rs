//! The daemon's Capsicum sandbox on FreeBSD, as data: which descriptor may do what
//! ([`plan`]: a role → its rights and, for those that may ioctl, the exact request numbers)
//! and whether to sandbox at all ([`decide`]). The plan and the rule are pure and tested
//! on every platform; applying them (`cap_rights_limit`, `cap_ioctls_limit`, `cap_enter`)
//! is FreeBSD's (`apply`, `enter`).
//!
//! Once everything is open — `/dev/ggctl`, devd's socket, the control socket, a descriptor
//! of `/dev` and of the directories it must still reach by name — each descriptor is
//! limited to its role's rights and the daemon enters capability mode: from then on it can
//! reach no file, socket or sysctl by name, only through what it holds. Disks are opened
//! relative to `/dev` (`openat`; see `device::set_device_dir`), and get no more
//! rights than that descriptor has.
//!
//! # When the daemon does not sandbox itself
//!
//! NBD needs the global namespace at run time: an NBD path connects (and reconnects) to
//! its server, and the NBD export binds and removes a Unix socket per provider. So with
//! any NBD option (`--nbd-paths`, `--nbd-dir`, `--nbd-tcp`), capability mode is not
//! entered, and the daemon logs why. In capability mode an NBD URI named in a verb fails
//! to connect (ECAPMODE) and is reported as any unreachable provider is.
//! `--no-sandbox` turns the sandbox off, for diagnosis.
//!
//! Descriptors not in the plan (the owner's wake-up eventfd, the control thread's stop
//! line, the syslog socket connected at start) keep their rights: none of them reaches
//! anything by name, and capability mode bounds them all.

use core::ffi::c_ulong;

use geom_multipath_sys::ggate::G_GATE_CMDS;
use geom_multipath_sys::ioccom::{
    DIOCGDELETE, DIOCGFLUSH, DIOCGMEDIASIZE, DIOCGPHYSPATH, DIOCGSECTORSIZE, DIOCGSTRIPESIZE,
};

/// What a descriptor is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// `/dev`, the directory disks are opened from (the opened disks inherit its rights).
    DeviceDir,
    /// `/dev/ggctl`.
    GateControl,
    /// The control socket (connections accepted from it inherit its rights).
    ControlListener,
    /// devd's seqpacket socket.
    Devd,
    /// The kqueue that reports signals.
    Signals,
    /// A run-time directory (the control socket's, the pid file's): their files are
    /// removed at exit.
    RunDir,
    /// The tunables file's directory, read again on SIGHUP.
    ConfigDir,
}

/// A capability right (`CAP_*`, rights(4)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Right {
    /// `CAP_READ`: read(2), recv(2).
    Read,
    /// `CAP_WRITE`: write(2), send(2).
    Write,
    /// `CAP_SEEK`: with read or write, pread(2) and pwrite(2).
    Seek,
    /// `CAP_FSTAT`.
    Fstat,
    /// `CAP_FSYNC`.
    Fsync,
    /// `CAP_LOOKUP`: `*at()` below this directory.
    Lookup,
    /// `CAP_IOCTL`, limited to the role's request numbers.
    Ioctl,
    /// `CAP_EVENT`: poll(2), select(2), kevent(2) on it.
    Event,
    /// `CAP_ACCEPT`.
    Accept,
    /// `CAP_GETSOCKOPT` (the peer's credentials).
    Getsockopt,
    /// `CAP_SETSOCKOPT` (timeouts).
    Setsockopt,
    /// `CAP_SHUTDOWN`.
    Shutdown,
    /// `CAP_UNLINKAT`: unlinkat(2) below this directory.
    Unlinkat,
    /// `CAP_KQUEUE_EVENT`: collect a kqueue's events.
    KqueueEvent,
}

/// What one role may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    /// The role.
    pub role: Role,
    /// Its rights, sorted.
    pub rights: Vec<Right>,
    /// The ioctls it may make (empty without [`Right::Ioctl`]).
    pub ioctls: Vec<c_ulong>,
}

/// The disk ioctls the daemon makes on its paths: size, sector size, stripe size, physical
/// path, flush, delete.
pub const DISK_IOCTLS: [c_ulong; 6] = [
    DIOCGMEDIASIZE,
    DIOCGSECTORSIZE,
    DIOCGSTRIPESIZE,
    DIOCGPHYSPATH,
    DIOCGFLUSH,
    DIOCGDELETE,
];

/// What `role` may do.
pub fn limit(role: Role) -> Limit {
    use Right::*;
    let (mut rights, ioctls): (Vec<Right>, Vec<c_ulong>) = match role {
        Role::DeviceDir => (
            vec![Lookup, Read, Write, Seek, Fstat, Fsync, Ioctl],
            DISK_IOCTLS.to_vec(),
        ),
        // CREATE and CANCEL too: providers come and go while the daemon runs.
        Role::GateControl => (vec![Ioctl], G_GATE_CMDS.to_vec()),
        Role::ControlListener => (
            vec![
                Accept, Read, Write, Event, Getsockopt, Setsockopt, Shutdown, Fstat,
            ],
            Vec::new(),
        ),
        Role::Devd => (vec![Read, Event], Vec::new()),
        Role::Signals => (vec![KqueueEvent, Event], Vec::new()),
        Role::RunDir => (vec![Lookup, Unlinkat], Vec::new()),
        Role::ConfigDir => (vec![Lookup, Read, Seek, Fstat], Vec::new()),
    };
    rights.sort();
    Limit {
        role,
        rights,
        ioctls,
    }
}

/// Every role's limit, in the order of [`Role`].
pub fn plan() -> Vec<Limit> {
    [
        Role::DeviceDir,
        Role::GateControl,
        Role::ControlListener,
        Role::Devd,
        Role::Signals,
        Role::RunDir,
        Role::ConfigDir,
    ]
    .into_iter()
    .map(limit)
    .collect()
}

/// What the daemon is configured to do that bears on the sandbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// `--nbd-paths`.
    pub nbd_paths: bool,
    /// `--nbd-dir`.
    pub nbd_dir: bool,
    /// `--nbd-tcp`.
    pub nbd_tcp: bool,
    /// `--metrics-file`.
    pub metrics_file: bool,
    /// `--no-sandbox`.
    pub disabled: bool,
}

/// Whether to enter capability mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Limit the descriptors and enter capability mode.
    Enter,
    /// Stay out of it, for this reason (logged).
    Stay(String),
}

/// The rule of the module doc.
pub fn decide(needs: Needs) -> Decision {
    if needs.disabled {
        return Decision::Stay("--no-sandbox".into());
    }
    let nbd: Vec<&str> = [
        (needs.nbd_paths, "--nbd-paths"),
        (needs.nbd_dir, "--nbd-dir"),
        (needs.nbd_tcp, "--nbd-tcp"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| name)
    .collect();
    if nbd.is_empty() && needs.metrics_file {
        Decision::Stay("--metrics-file is rewritten by name".into())
    } else if nbd.is_empty() {
        Decision::Enter
    } else {
        Decision::Stay(format!(
            "NBD needs to open sockets by name ({})",
            nbd.join(", ")
        ))
    }
}

/// Limits `fd` to `limit`.
#[cfg(target_os = "freebsd")]
pub fn apply(limit: &Limit, fd: &impl std::os::fd::AsFd) -> std::io::Result<()> {
    use capsicum::{CapRights, FileRights, IoctlsBuilder};
    let mut rights = FileRights::new();
    for r in &limit.rights {
        rights.allow(cap_right(*r));
    }
    rights.limit(fd)?;
    if limit.rights.contains(&Right::Ioctl) {
        let ioctls = limit
            .ioctls
            .iter()
            .fold(IoctlsBuilder::new(), |b, &cmd| b.allow(cmd))
            .finalize();
        ioctls.limit(fd)?;
    }
    Ok(())
}

/// The `capsicum` crate's name of a right.
#[cfg(target_os = "freebsd")]
fn cap_right(r: Right) -> capsicum::Right {
    use capsicum::Right as C;
    match r {
        Right::Read => C::Read,
        Right::Write => C::Write,
        Right::Seek => C::Seek,
        Right::Fstat => C::Fstat,
        Right::Fsync => C::Fsync,
        Right::Lookup => C::Lookup,
        Right::Ioctl => C::Ioctl,
        Right::Event => C::Event,
        Right::Accept => C::Accept,
        Right::Getsockopt => C::Getsockopt,
        Right::Setsockopt => C::Setsockopt,
        Right::Shutdown => C::Shutdown,
        Right::Unlinkat => C::Unlinkat,
        Right::KqueueEvent => C::KqueueEvent,
    }
}

/// Enters capability mode (`cap_enter(2)`); there is no way back.
#[cfg(target_os = "freebsd")]
pub fn enter() -> std::io::Result<()> {
    capsicum::enter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Right::*;

    #[test]
    fn every_role_has_exactly_its_rights() {
        let rights = |role| limit(role).rights;
        assert_eq!(
            rights(Role::DeviceDir),
            [Read, Write, Seek, Fstat, Fsync, Lookup, Ioctl]
        );
        assert_eq!(rights(Role::GateControl), [Ioctl]);
        assert_eq!(
            rights(Role::ControlListener),
            [Read, Write, Fstat, Event, Accept, Getsockopt, Setsockopt, Shutdown]
        );
        assert_eq!(rights(Role::Devd), [Read, Event]);
        assert_eq!(rights(Role::Signals), [Event, KqueueEvent]);
        assert_eq!(rights(Role::RunDir), [Lookup, Unlinkat]);
        assert_eq!(rights(Role::ConfigDir), [Read, Seek, Fstat, Lookup]);
    }

    #[test]
    fn ioctls_are_limited_to_the_numbers_each_role_sends() {
        let dev = limit(Role::DeviceDir).ioctls;
        assert_eq!(dev.len(), 6);
        for cmd in [
            0x4004_6480,
            0x4008_6481,
            0x2000_6487,
            0x8010_6488,
            0x4008_648b,
            0x4400_648d,
        ] {
            assert!(dev.contains(&cmd), "{cmd:#x}");
        }
        let gate = limit(Role::GateControl).ioctls;
        assert_eq!(gate, G_GATE_CMDS);
        for role in [
            Role::ControlListener,
            Role::Devd,
            Role::Signals,
            Role::RunDir,
        ] {
            let l = limit(role);
            assert!(
                !l.rights.contains(&Ioctl) && l.ioctls.is_empty(),
                "{role:?}"
            );
        }
    }

    #[test]
    fn only_the_run_directories_may_remove_and_nothing_may_write_through_a_name_but_disks() {
        for l in plan() {
            if l.rights.contains(&Unlinkat) {
                assert_eq!(l.role, Role::RunDir);
            }
            if l.rights.contains(&Lookup) && l.rights.contains(&Write) {
                assert_eq!(l.role, Role::DeviceDir);
            }
        }
        assert_eq!(plan().len(), 7);
    }

    #[test]
    fn nbd_keeps_the_daemon_out_of_capability_mode() {
        assert_eq!(decide(Needs::default()), Decision::Enter);
        assert_eq!(
            decide(Needs {
                nbd_paths: true,
                nbd_tcp: true,
                ..Needs::default()
            }),
            Decision::Stay("NBD needs to open sockets by name (--nbd-paths, --nbd-tcp)".into())
        );
        assert!(matches!(
            decide(Needs {
                nbd_dir: true,
                ..Needs::default()
            }),
            Decision::Stay(why) if why.contains("--nbd-dir")
        ));
        assert_eq!(
            decide(Needs {
                disabled: true,
                nbd_dir: true,
                ..Needs::default()
            }),
            Decision::Stay("--no-sandbox".into())
        );
        assert_eq!(
            decide(Needs {
                metrics_file: true,
                ..Needs::default()
            }),
            Decision::Stay("--metrics-file is rewritten by name".into())
        );
    }
}

//! gmultipath(8) and gnop(8): FreeBSD's geom(8) control tool for the MULTIPATH and NOP
//! classes, with FreeBSD's commands, options, usage, output, error texts and exit codes.
//!
//! One program serves every class the way geom(8) does: the class comes from the program's
//! name (`gmultipath`, `gnop`) or from the first argument (`geom multipath ...`). Requests go
//! to the FreeBSD kernel or to the userland host through a [`backend::Backend`]; `list` and
//! `status` render the GEOM tree's XML ([`mesh`], [`render`]) exactly as geom(8) does.
//!
//! Which backend [`main`] picks: on FreeBSD the kernel (`freebsd::KernelBackend`: the
//! `GEOM_CTL` ioctl, `kern.geom.confxml`, kldload), unless `GMULTIPATH_SOCKET` is set, in
//! which case the userland host on that socket, as everywhere else.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backend;
pub mod classes;
#[cfg(target_os = "freebsd")]
pub mod freebsd;
pub mod gctl;
pub mod getopt;
pub mod humanize;
pub mod kld;
pub mod libxo;
pub mod mesh;
pub mod providers;
pub mod render;
pub mod run;
pub mod stat;
pub mod view;

/// `strerror(errno)` for an I/O error: the C library's bare text, without Rust's
/// "(os error N)", as geom(8) prints it.
pub fn strerror(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => geom_multipath_sys::strerror(code),
        None => e.to_string(),
    }
}

/// A new DCE version-1 (time-based) UUID in lower-case text, as FreeBSD's `uuid_create`
/// makes; the node is random, as RFC 4122 allows when no MAC address is used.
pub fn new_uuid() -> Option<String> {
    let random = uuid::Uuid::new_v4();
    let mut node = [0u8; 6];
    node.copy_from_slice(&random.as_bytes()[..6]);
    node[0] |= 0x01; // multicast bit: a random node id
    Some(uuid::Uuid::now_v1(&node).hyphenated().to_string())
}

/// geom(8)'s `main` for the thin `main`s of `gmultipath` and `gnop`: runs `argv` against
/// the FreeBSD kernel on FreeBSD (unless `GMULTIPATH_SOCKET` names a userland host), else
/// against the userland host; returns the exit status.
pub fn main(argv: &[String]) -> i32 {
    #[cfg(target_os = "freebsd")]
    if std::env::var_os(geom_multipath_proto::SOCKET_ENV).is_none() {
        return freebsd::main_with_kernel(argv);
    }
    main_with_host(argv)
}

/// Runs geom(8) against the userland host with the process's own stdio; returns the exit
/// status.
pub fn main_with_host(argv: &[String]) -> i32 {
    let mut backend = backend::HostBackend::default();
    main_with(&mut backend, argv)
}

/// Runs geom(8) against `backend` with the process's own stdio; returns the exit status.
pub fn main_with(backend: &mut dyn backend::Backend, argv: &[String]) -> i32 {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let mut uuid = new_uuid;
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut env = run::Env {
        backend,
        out: &mut out,
        err: &mut err,
        new_uuid: &mut uuid,
        providers: None,
        terminal,
    };
    run::main(argv, &mut env)
}

#[cfg(test)]
mod tests {
    #[test]
    fn strerror_is_the_bare_c_text() {
        let e = std::io::Error::from_raw_os_error(22);
        assert_eq!(super::strerror(&e), "Invalid argument");
        let e = std::io::Error::from_raw_os_error(16);
        assert_eq!(super::strerror(&e), "Device or resource busy");
    }

    #[test]
    fn uuids_are_version_1_lower_case_text() {
        let u = super::new_uuid().unwrap();
        assert!(geom_multipath::metadata::check_uuid(&u));
        assert_eq!(u, u.to_lowercase());
        assert_eq!(&u[14..15], "1", "version nibble");
        assert_ne!(u, super::new_uuid().unwrap());
    }
}

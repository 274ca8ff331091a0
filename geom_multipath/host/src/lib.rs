//! gmultipathd: the MULTIPATH class in userland. It runs the very core the FreeBSD kernel
//! module runs, over real block devices, and exports each multipath provider as
//! `/dev/multipath/NAME`.
//!
//! The crate is a set of rooms, each a folder whose `//!` paragraph says what it owns and
//! what it does not touch. They import downward only:
//!
//! | room | owns |
//! |---|---|
//! | [`daemon`] | start-up, options, config file, logging, sandbox, per-platform glue |
//! | [`control`] | the control socket (the daemon's `geom.ctl`) and `mpsysctl` |
//! | [`export`] | FUSE, GEOM Gate and the NBD server; the one access guard |
//! | [`owner`] | the one thread that drives the core: data path, deadlines, topology, control calls |
//! | [`msg`] | what the exports and the owner say to each other, and the export table |
//! | `gnop` | the NOP class (gnop(8)), the admin's failure injector |
//! | `discovery` | which block devices exist and when they change (sysfs + uevents; `kern.disks` + devd) |
//! | [`path`] | a path's device, the workers that carry out its I/O, NBD paths |
//! | [`nbd_proto`] | the NBD codec both NBD sides share |
//!
//! What differs between the platforms is in modules of its own, the rest is shared:
//!
//! | | Linux | FreeBSD |
//! |---|---|---|
//! | export | `export::fuse` (FUSE files) | [`export::ggate`] (GEOM Gate devices) |
//! | devices | `discovery::sysfs` | `discovery::disks` (`kern.disks`, DIOCG ioctls) |
//! | changes | `discovery::uevents` (uevents, inotify) | `discovery::devd` (devd's socket) |
//! | sandbox | `no_new_privs` | [`daemon::sandbox`] (Capsicum) |
//!
//! The FreeBSD modules' pure parts (the devd and sysctl parsers, the gate request loop
//! over a fake `/dev/ggctl`, the capability plan) build and are tested everywhere.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod control;
pub mod daemon;
pub(crate) mod discovery;
pub mod export;
pub(crate) mod gnop;
pub mod msg;
pub mod nbd_proto;
pub mod owner;
pub mod path;
pub use geom_multipath_sys as sys;
#[cfg(any(test, feature = "testkit"))]
#[allow(missing_docs)] // test doubles: their fields are what the tests count
pub mod testkit;

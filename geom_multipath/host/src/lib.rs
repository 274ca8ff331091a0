//! gmultipathd: the MULTIPATH class in userland. It runs the very core the FreeBSD kernel
//! module runs, over real block devices, and exports each multipath provider as
//! `/dev/multipath/NAME`.
//!
//! One owner thread owns the class; every other thread talks to it through messages
//! ([`msg`]). Paths are block devices opened with O_DIRECT ([`device`]).
//!
//! What differs between the platforms is in modules of its own, the rest is shared:
//!
//! | | Linux | FreeBSD |
//! |---|---|---|
//! | export | `fuse_export` (FUSE files) | [`ggate_export`] (GEOM Gate devices) |
//! | devices | `sysfs` | [`disks`] (`kern.disks`, DIOCG ioctls) |
//! | changes | `watch` (uevents, inotify) | [`devd`] (devd's socket) |
//! | sandbox | `no_new_privs` | [`sandbox`] (Capsicum) |
//!
//! The FreeBSD modules' pure parts (the devd and sysctl parsers, the gate request loop
//! over a fake `/dev/ggctl`, the capability plan) build and are tested everywhere.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod console;
pub mod control;
pub mod daemon;
pub mod devd;
pub mod device;
pub mod disks;
pub mod exports;
#[cfg(target_os = "linux")]
pub mod fuse_export;
pub mod ggate_export;
pub mod logging;
pub mod msg;
pub mod nbd_client;
pub mod nbd_codec;
pub mod nbd_server;
pub mod nop;
pub mod owner;
pub mod providers;
pub mod sandbox;
pub use geom_multipath_sys as sys;
pub mod sysctl_cli;
#[cfg(target_os = "linux")]
pub mod sysfs;
#[cfg(target_os = "linux")]
pub mod watch;
pub mod watched;
pub mod workers;

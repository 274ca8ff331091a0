//! gmultipathd: the MULTIPATH class in userland. It runs the very core the FreeBSD kernel
//! module runs, over real block devices, and exports each multipath provider as
//! `/dev/multipath/NAME`.
//!
//! One owner thread owns the class; every other thread talks to it through messages
//! ([`msg`]). Paths are block devices opened with O_DIRECT ([`device`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod console;
pub mod control;
pub mod daemon;
pub mod device;
pub mod exports;
pub mod fuse_export;
pub mod logging;
pub mod msg;
pub mod nbd_client;
pub mod nbd_codec;
pub mod nbd_server;
pub mod nop;
pub mod owner;
pub mod providers;
pub use geom_multipath_sys as sys;
pub mod sysctl_cli;
pub mod sysfs;
pub mod watch;
pub mod workers;

//! The discovery room: which block devices exist and when they change, as GEOM learns it
//! from the kernel. On Linux [`sysfs`] reads `/sys/class/block` and [`uevents`] turns
//! uevents and inotify close-after-write into "look at this device again"; on FreeBSD
//! [`disks`] reads `kern.disks` and the DIOCG ioctls and [`devd`] reads devd's socket.
//! (The FreeBSD parsers build and are tested everywhere.)
//!
//! It decides nothing and holds no device open for I/O: the owner re-reads what it
//! reports and tastes, resizes or orphans.

// The FreeBSD parsers are built and tested on every platform; only FreeBSD's daemon calls
// them.
#[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
pub mod devd;
#[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
pub mod disks;
#[cfg(target_os = "linux")]
pub mod sysfs;
#[cfg(target_os = "linux")]
pub mod uevents;

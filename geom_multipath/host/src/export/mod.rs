//! The export room: how clients reach a multipath provider. Each export serves the
//! providers listed in the export table ([`crate::msg::exports`]) over one protocol —
//! [`fuse`] (`/dev/multipath/NAME` as a FUSE file, Linux), [`ggate`] (GEOM Gate devices,
//! FreeBSD) and [`nbd`] (the NBD server) — and reaches a provider only through the owner's
//! handle: access is taken and given back by the one [`access`] guard, data requests travel
//! as messages and come back through their reply.
//!
//! It owns sockets, mounts, gate devices and the threads serving them; it never calls the
//! core, never opens a path's device, and the owner never waits for a client.

pub mod access;
#[cfg(target_os = "linux")]
pub mod fuse;
pub mod ggate;
pub mod nbd;
pub mod tls;

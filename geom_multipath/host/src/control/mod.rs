//! The control room: how tools reach the daemon. [`socket`] is the daemon's `geom.ctl`, a
//! Unix socket that turns each framed call (`geom_multipath_proto`) into a message to the
//! owner and writes back its answer; [`mpsysctl`] is the sysctl(8)-style front end of the
//! `kern.geom.multipath.*` tunables over that socket; [`rundir`] is the directory the
//! socket (and the daemon's other files) live in, and the rules that keep another user
//! from redirecting them.
//!
//! It owns the socket, its connections and their limits; it decides nothing about the class
//! (every call is answered by the owner) and touches no device.

pub mod mpsysctl;
pub mod rundir;
pub mod socket;

//! Test doubles for the host's tests, benches and examples (feature `testkit`; never in
//! the daemon): memory and faulty devices, one fake owner that answers the exports'
//! messages ([`fake_owner`]), and [`watched::Watched`], a value with deadline-bounded waits on its changes.

pub mod fake_owner;
mod mem_device;
pub mod watched;

pub use mem_device::{MemDevice, MemFaults};

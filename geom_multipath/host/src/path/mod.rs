//! The path room: what a path's I/O goes to and what carries it out. [`device`] is the
//! [`Device`](device::Device) trait and the O_DIRECT block device behind it, [`workers`]
//! runs each attempt (io_uring on the owner's thread, or a per-path thread pool) and sends
//! its completion back to the owner, and [`nbd`] is a path that is an NBD export
//! (its URI, its connection, and the supervisor that keeps it connected).
//!
//! It carries out attempts the owner sends and reports how they ended; it decides nothing
//! about failover, deadlines or retries (the core does), and knows no export.

pub mod device;
pub mod nbd;
pub mod workers;

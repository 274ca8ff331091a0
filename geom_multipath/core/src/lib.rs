//! The GEOM MULTIPATH class, as a sans-IO core.
//!
//! This crate is FreeBSD's `g_multipath.c` without the kernel: the on-disk label
//! ([`metadata`]), the geoms and their paths ([`Class`]), the three modes, routing and
//! failover ([`Class::start`], [`Class::done`]), every verb ([`Class::ctl`]), taste
//! ([`Class::taste`]), access, resize, orphan, the XML the class contributes to
//! `kern.geom.confxml` ([`dumpconf`], laid out by [`geom_dump`]), the console messages
//! ([`event`]), and the userland halves of `label` and `clear` ([`label_verbs`]). It reads
//! side by side with `g_multipath.c`: one small function per FreeBSD decision and per verb,
//! with the FreeBSD name in its doc.
//!
//! It decides; it never acts; the clock-driven policy (the I/O deadline) sits on a fixed
//! timer table ([`timer`]). Data requests are tokens routed to paths; everything the
//! class asks the framework to do synchronously goes through the [`Topology`] trait;
//! messages, probe firings and deferred work are queued for the driver to poll. There is no
//! clock, no randomness (the one random number comes from the caller), no data buffer and no
//! `unsafe`. Three drivers run it: the FreeBSD kernel module, the userland host, and the
//! tests' simulated fabric.
//!
//! It is `#![no_std]` with `alloc`; the `std` feature only adds `std::error::Error` impls.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

mod class;
pub mod ctl;
mod direct_route;
pub mod dumpconf;
pub mod errno;
pub mod event;
#[cfg(feature = "testkit")]
pub mod fuzz_bodies;
pub mod geom_dump;
mod health;
mod io;
pub mod label_verbs;
mod lifecycle;
pub mod metadata;
pub mod metrics;
mod queue;
mod selector;
pub mod settings;
mod slab;
pub mod state;
pub mod stats;
pub mod stats_xml;
mod taste;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod timer;
mod topology;
mod verbs;
pub mod wire;

pub use class::{Class, GeomView, PathView};
pub use ctl::{CtlError, Request};
pub use direct_route::{Route, Routes};
pub use errno::Errno;
pub use event::{Event, Level, Message, Probe};
pub use health::Check;
pub use io::{Bio, Done, Op, PHYSPATH_SUFFIX};
pub use lifecycle::Destroyed;
pub use queue::{Dispatch, Started};
pub use settings::{Failback, Selector, Settings};
pub use state::{GeomState, GeomType, Mode, PathState};
pub use timer::{Expired, Time, Timer};
pub use topology::{Deferred, GeomId, PathId, ProviderInfo, Topology};
pub use verbs::{strip_dev, VERBS};

/// The tunables the class reads (`kern.geom.multipath.*`).
pub use geom_multipath_sysctl as sysctl;

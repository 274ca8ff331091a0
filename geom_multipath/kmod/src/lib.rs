//! The Rust half of `geom_multipath.ko`: FreeBSD's MULTIPATH class, run inside the kernel.
//!
//! The class itself is the sans-IO core ([`geom_multipath`]). This crate is the thin layer
//! between it and the kernel, and nothing else: the `gmp_rs_*` functions the C shim's
//! `g_class` methods call (one Rust call per method), a [`Topology`](geom_multipath::Topology)
//! over the `kpi_*` functions of our own narrow header `kpi.h`, the translation of gctl
//! requests, console lines, SDT probes and deferred work, and the kernel's allocator and panic
//! hook. It holds no policy: every decision is the core's.
//!
//! # The boundary
//! [`bindings`] is bindgen's output for `kpi.h`, committed and never edited. The private `ffi`
//! module wraps each raw handle the kernel gives us in a small type, and the kernel's other
//! services in the free functions of `ffi::kernel`: those methods and functions are the only
//! callers of the `kpi_*` functions. It also turns raw C values into Rust enums. All of the crate's `unsafe` is in
//! those two places, in the allocator ([`KpiAlloc`]), in the per-request state of the data path,
//! and in the userland fake used by the tests.
//!
//! # Concurrency
//! One [`Class`](geom_multipath::Class) serves every geom and is owned by whoever holds the
//! *class gate* (`kpi_gate_*`, an sx lock): control methods (taste, ctlreq, access, orphan,
//! resize, dumpconf, events) take it after GEOM's topology lock and may sleep while holding
//! it (GEOM I/O of the metadata sector); the data path (`start` in g_down, `done` in g_up)
//! only *tries* it. When a control call owns the class, a request goes on its geom's direct
//! route, which the class published under the *route mutex* (`kpi_route_*`, an mtx nobody
//! holds across a sleep), or, with no route, to the `g_mp_kt` kernel process (later requests
//! queue behind it). Failed attempts (EIO/ENXIO, and any error of a direct attempt) always go
//! to `g_mp_kt`, as in FreeBSD, so a reissue never happens inline in g_up. The full rules,
//! and what is still open, are in the README's *Locking*.
//!
//! # Features
//! * `kernel`: the `#[global_allocator]` over `kpi_malloc` and the `#[panic_handler]` over
//!   `kpi_panic`, for the kernel object (`check-object.sh`, the Makefile).
//! * `userland`: [`userland`], a fake kernel implementing every `kpi_*` function, so the same
//!   entry points run under `cargo test`.
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(clippy::missing_safety_doc)]

extern crate alloc;
#[cfg(any(test, feature = "userland"))]
extern crate std;

#[cfg(all(feature = "kernel", feature = "userland"))]
compile_error!("features `kernel` and `userland` exclude each other");

#[allow(
    missing_docs,
    non_camel_case_types,
    clippy::missing_safety_doc,
    clippy::undocumented_unsafe_blocks
)]
#[rustfmt::skip]
pub mod bindings;

mod alloc_kpi;
mod ctl;
mod entry;
mod ffi;
mod gate;
mod io;
#[cfg(all(feature = "kernel", not(test)))]
mod kernel;
mod output;
mod route;
mod topology;
pub mod tunables;
#[cfg(any(test, feature = "userland"))]
pub mod userland;

pub use alloc_kpi::KpiAlloc;

/// The tests' allocator is the module's own, over the userland `kpi_malloc`, so that every
/// allocation the glue and the core make is counted (and leaks fail the tests).
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: KpiAlloc = KpiAlloc;

//! End-to-end tests: the built `gmultipath`, `gnop`, `gmultipathd` and `mpsysctl` on loop
//! devices over sparse images, through the FUSE export, as a person would use them. They
//! need root; without it each test prints `SKIPPED:` and passes.

mod admin;
mod data;
mod faults;
mod hardening;
mod nbd;
mod policy;
mod stats;
mod verbs;

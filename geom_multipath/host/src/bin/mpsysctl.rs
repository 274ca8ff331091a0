//! `mpsysctl` (being written).
fn main() {}

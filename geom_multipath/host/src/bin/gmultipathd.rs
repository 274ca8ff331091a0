//! `gmultipathd` (being written).
fn main() {}

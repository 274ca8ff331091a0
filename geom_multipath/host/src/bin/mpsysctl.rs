//! `mpsysctl`: sysctl(8) for the host's kern.geom.multipath.* knobs.
fn main() {
    std::process::exit(geom_multipath_host::control::mpsysctl::main());
}

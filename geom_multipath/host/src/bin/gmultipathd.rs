//! `gmultipathd`: the MULTIPATH class in userland (see gmultipathd(8)).
fn main() -> std::process::ExitCode {
    geom_multipath_host::daemon::main()
}

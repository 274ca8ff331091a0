//! `gmultipath`: geom(8) for the MULTIPATH class.
fn main() {
    let argv: Vec<String> = std::env::args().collect();
    std::process::exit(gmultipath::main(&argv));
}

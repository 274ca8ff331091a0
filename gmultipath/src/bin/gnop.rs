//! `gnop`: geom(8) for the NOP class.
fn main() {
    let argv: Vec<String> = std::env::args().collect();
    std::process::exit(gmultipath::main(&argv));
}

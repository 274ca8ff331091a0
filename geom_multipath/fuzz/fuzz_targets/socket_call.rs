//! Fuzz target: the daemon's control socket: frames, calls and answers (body: `geom_multipath_proto::fuzz_socket`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| geom_multipath_proto::fuzz_socket(data));

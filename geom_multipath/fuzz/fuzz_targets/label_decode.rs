//! Fuzz target: `metadata::decode` on arbitrary bytes, and the label round trip
//! (body: `geom_multipath::fuzz_bodies::label_decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| geom_multipath::fuzz_bodies::label_decode(data));

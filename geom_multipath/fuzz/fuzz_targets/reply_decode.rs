//! Fuzz target: `wire::decode_reply` on arbitrary bytes, and the reply round trip
//! (body: `geom_multipath::fuzz_bodies::reply_decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| geom_multipath::fuzz_bodies::reply_decode(data));

//! Fuzz target: `wire::decode_request` on arbitrary bytes, the request round trip, and
//! running a decoded request through `Class::ctl` on a small in-memory fabric
//! (body: `geom_multipath::fuzz_bodies::ctl_decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| geom_multipath::fuzz_bodies::ctl_decode(data));

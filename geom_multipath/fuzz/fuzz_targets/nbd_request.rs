//! Fuzz target: the NBD server's transmission-phase request decoder (body: `geom_multipath_host::nbd_proto::fuzz_request`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| geom_multipath_host::nbd_proto::fuzz_request(data));

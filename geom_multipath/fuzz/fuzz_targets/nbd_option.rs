//! Fuzz target: the NBD server's handshake option decoders (body: `geom_multipath_host::nbd_proto::fuzz_option`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| geom_multipath_host::nbd_proto::fuzz_option(data));

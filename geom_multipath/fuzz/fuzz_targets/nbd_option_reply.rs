//! Fuzz target: the NBD client's greeting, option-reply and reply decoders (body: `geom_multipath_host::nbd_proto::fuzz_option_reply`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| geom_multipath_host::nbd_proto::fuzz_option_reply(data));

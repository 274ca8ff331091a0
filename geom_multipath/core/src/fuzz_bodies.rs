//! The bodies of the fuzz targets (feature `testkit`), kept in the crate so that both the
//! cargo-fuzz crate in `geom_multipath/fuzz/` (nightly, libFuzzer) and the stable smoke test
//! `tests/fuzz_smoke.rs` run exactly the same code on their inputs.
//!
//! Each body takes arbitrary bytes, must never panic on them, and asserts the round trips
//! its codec promises: a decoded label re-encodes to a label that decodes the same; a
//! decoded control request re-encodes to the same parameters and can be run by the class
//! (over a small in-memory fabric) without breaking the class's invariants; a decoded reply
//! re-encodes to the same reply.

use alloc::string::String;

use crate::class::Class;
use crate::metadata;
use crate::state::Mode;
use crate::testkit::{test_uuid, MemTopology};
use crate::wire::{self, Reply};

/// `metadata::decode` on arbitrary bytes; a label that decodes is encoded into a sector of
/// the same length and must decode to the same [`Metadata`].
pub fn label_decode(data: &[u8]) {
    let Ok(md) = metadata::decode(data) else {
        return;
    };
    let sector = md
        .encode(data.len())
        .expect("a decoded label encodes into a sector of its own length");
    let again = metadata::decode(&sector).expect("a re-encoded label decodes");
    assert_eq!(again, md, "label round trip");
    // The canonical encoding is a fixed point, and it keeps every byte of the fixed-size
    // fields; only what follows a NUL in the name and UUID fields, and the rest of the
    // sector, may differ from the input (FreeBSD ignores those bytes too).
    assert_eq!(again.encode(data.len()).expect("encodes"), sector);
    let fixed = metadata::OFF_VERSION..metadata::ENCODED_LEN;
    assert_eq!(
        sector[fixed.clone()],
        data[fixed],
        "version, sizes and mode"
    );
    assert_eq!(
        sector[..metadata::OFF_UUID],
        data[..metadata::OFF_UUID],
        "magic"
    );
}

/// `wire::decode_request` on arbitrary bytes; a request that decodes must re-encode to the
/// same parameters, and is then run through [`Class::ctl`] on a small fabric (a MANUAL geom
/// `FRED` on md0 and md1 with md2 free, an AUTOMATIC geom `LBL` on da0 and da1), after
/// which every geom must still satisfy the class's invariants and the reply must survive
/// its own codec.
pub fn ctl_decode(data: &[u8]) {
    let Ok(mut req) = wire::decode_request(data) else {
        return;
    };
    let again = wire::decode_request(&wire::encode_request(&req))
        .expect("a decoded request re-encodes to a valid request");
    assert_eq!(again.params(), req.params(), "request round trip");
    let (mut class, mut topo) = small_fabric();
    class.ctl(&mut topo, &mut req);
    topo.drain(&mut class);
    check_class(&class);
    let reply = Reply::from_request(&req);
    let decoded = wire::decode_reply(&wire::encode_reply(&reply)).expect("reply decodes");
    assert_eq!(decoded, reply, "reply round trip");
    let mut xml = String::new();
    class.conf_class(&mut xml).expect("dumpconf writes");
}

/// `wire::decode_reply` on arbitrary bytes; a reply that decodes must re-encode to bytes
/// that decode to the same reply.
pub fn reply_decode(data: &[u8]) {
    let Ok(reply) = wire::decode_reply(data) else {
        return;
    };
    let bytes = wire::encode_reply(&reply);
    let again = wire::decode_reply(&bytes).expect("a re-encoded reply decodes");
    assert_eq!(again, reply, "reply round trip");
}

/// The fabric a fuzzed request runs against: FRED (MANUAL, A/P) on md0 and md1 with md2
/// free on the same disk; LBL (AUTOMATIC, A/A) tasted from da0 and da1.
pub fn small_fabric() -> (Class, MemTopology) {
    let mut topo = MemTopology::new();
    let mut class = Class::default();
    topo.disk_with_paths("md", 3, 1 << 20, 512);
    let labeled = topo.disk_with_paths("da", 2, 1 << 20, 512);
    topo.write_label(labeled, "LBL", &test_uuid(1), Mode::ActiveActive);
    let reply = topo.verb(
        &mut class,
        "create",
        &[("active_active", false), ("active_read", false)],
        &["FRED", "md0", "md1"],
    );
    assert_eq!(reply.error, "", "the fabric's create");
    topo.taste(&mut class, "da0").expect("da0 tastes");
    topo.taste(&mut class, "da1").expect("da1 tastes");
    topo.events.clear();
    (class, topo)
}

/// The class's invariants, as its public getters show them: every path belongs to its
/// geom, `ndisks` counts the paths that are not LOST, and the active path is `None` or a
/// good path of the geom (and is set whenever a good path exists).
pub fn check_class(class: &Class) {
    for g in class.geoms() {
        let view = class.geom(g).expect("listed geoms exist");
        let mut not_lost = 0;
        let mut good = false;
        for p in view.paths() {
            let path = class.path(p).expect("listed paths exist");
            assert_eq!(path.geom(), g, "path in its geom's list");
            not_lost += u32::from(!path.is_lost());
            good |= path.is_good();
            assert_eq!(path.inflight(), 0, "no request was started");
        }
        assert_eq!(view.ndisks(), not_lost, "ndisks of {}", view.name());
        match view.active() {
            None => assert!(!good, "{} has good paths but no active path", view.name()),
            Some(a) => {
                let path = class.path(a).expect("active path exists");
                assert!(path.geom() == g && path.is_good(), "active path is good");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_small_fabric_holds_two_geoms() {
        let (class, _) = small_fabric();
        assert_eq!(class.geoms().count(), 2);
        check_class(&class);
    }
}

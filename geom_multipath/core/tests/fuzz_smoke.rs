//! The fuzz targets' bodies (`geom_multipath::fuzz_bodies`) on stable Rust, for a bounded
//! time: a few thousand random byte strings, mutations of valid encodings (labels, control
//! requests for every verb, replies), and structurally generated control requests. This is
//! what `cargo test` runs on machines without nightly; `geom_multipath/fuzz/` runs the same bodies under
//! libFuzzer. Every run is seeded, so a failure replays; failures are also saved under
//! `proptest-regressions/fuzz_smoke.txt`.

use geom_multipath::fuzz_bodies::{ctl_decode, label_decode, reply_decode, small_fabric};
use geom_multipath::metadata::Metadata;
use geom_multipath::testkit::test_uuid;
use geom_multipath::wire::{self, Reply};
use geom_multipath::{Mode, Request};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngSeed};

fn config(cases: u32, seed: u64) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/fuzz_smoke.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// Valid labels: sector sizes from the minimum to 4 KiB, every mode, MANUAL and AUTOMATIC.
fn label_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![];
    for (sector, mode, uuid, name) in [
        (512, Mode::ActivePassive, test_uuid(1), "FRED"),
        (89, Mode::ActiveActive, String::new(), "a"),
        (4096, Mode::ActiveRead, test_uuid(7), "fifteen-chars-x"),
        (
            520,
            Mode::ActivePassive,
            "3B8A5E2C-8F1D-11EF-9B6A-0800275AD1C3".into(),
            "x.y",
        ),
    ] {
        let md = Metadata {
            uuid,
            name: name.into(),
            sectorsize: sector as u32,
            size: 1 << 20,
            mode,
        };
        seeds.push(md.encode(sector).expect("valid seed label"));
    }
    seeds
}

/// A request the way geom(8) builds one.
fn request(verb: &str, flags: &[(&str, bool)], args: &[&str]) -> Request {
    let mut req = Request::for_verb("MULTIPATH", verb, 1);
    for &(name, on) in flags {
        req.add_int(name, i32::from(on));
    }
    req.add_args(args);
    req.add_output("output", 64);
    req
}

/// Valid encoded requests for every verb against the small fabric's geoms and providers.
fn request_seeds() -> Vec<Vec<u8>> {
    let aa = [("active_active", true), ("active_read", false)];
    let none: [(&str, bool); 0] = [];
    let requests = [
        request("create", &aa, &["NEW", "md2"]),
        request("create", &none, &["FRED", "md2"]),
        request("add", &none, &["FRED", "md2"]),
        request("add", &none, &["LBL", "/dev/md2"]),
        request("remove", &none, &["FRED", "md0"]),
        request("remove", &none, &["LBL", "da1"]),
        request("fail", &none, &["FRED", "md0"]),
        request("fail", &none, &["LBL", "da0"]),
        request("restore", &none, &["FRED", "md1"]),
        request("rotate", &none, &["FRED"]),
        request("prefer", &none, &["FRED", "md1"]),
        request("getactive", &none, &["LBL"]),
        request(
            "configure",
            &[
                ("active_active", false),
                ("active_read", true),
                ("active_passive", false),
            ],
            &["LBL"],
        ),
        request("stop", &none, &["FRED"]),
        request("destroy", &none, &["LBL"]),
        request("frobnicate", &none, &["FRED"]),
    ];
    requests.iter().map(wire::encode_request).collect()
}

fn reply_seeds() -> Vec<Vec<u8>> {
    [
        Reply::default(),
        Reply {
            error: "Device FRED is invalid".into(),
            output: String::new(),
        },
        Reply {
            error: String::new(),
            output: "md1 md0\n".into(),
        },
    ]
    .iter()
    .map(wire::encode_reply)
    .collect()
}

/// One of `seeds`, with a few bytes overwritten, then possibly cut short or extended.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        0..seeds.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        prop_oneof![
            3 => Just(None),
            1 => any::<prop::sample::Index>().prop_map(Some),
        ],
        prop::collection::vec(any::<u8>(), 0..3),
    )
        .prop_map(move |(i, writes, cut, tail)| {
            let mut bytes = seeds[i].clone();
            for (at, byte) in writes {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes.extend(tail);
            bytes
        })
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..600)
}

proptest! {
    #![proptest_config(config(2000, 0x6c61_6265_6c00_0001))]

    #[test]
    fn label_body_on_random_bytes(data in bytes()) {
        label_decode(&data);
    }

    #[test]
    fn ctl_body_on_random_bytes(data in bytes()) {
        ctl_decode(&data);
    }

    #[test]
    fn reply_body_on_random_bytes(data in bytes()) {
        reply_decode(&data);
    }
}

proptest! {
    #![proptest_config(config(3000, 0x6d75_7461_7465_0002))]

    #[test]
    fn label_body_on_mutated_labels(data in mutated(label_seeds())) {
        label_decode(&data);
    }

    #[test]
    fn ctl_body_on_mutated_requests(data in mutated(request_seeds())) {
        ctl_decode(&data);
    }

    #[test]
    fn reply_body_on_mutated_replies(data in mutated(reply_seeds())) {
        reply_decode(&data);
    }
}

/// Words the generated requests pick from: real verbs, parameter names, and the fabric's
/// geom and provider names, plus a few that are none of those.
const VERBS: [&str; 12] = [
    "create",
    "add",
    "remove",
    "fail",
    "restore",
    "rotate",
    "prefer",
    "getactive",
    "configure",
    "stop",
    "destroy",
    "label",
];
const NAMES: [&str; 10] = [
    "FRED",
    "LBL",
    "md0",
    "md1",
    "md2",
    "da0",
    "da1",
    "/dev/md2",
    "",
    "multipath/FRED",
];
const FLAGS: [&str; 3] = ["active_active", "active_read", "active_passive"];

proptest! {
    #![proptest_config(config(3000, 0x7374_7275_6374_0003))]

    /// Well-formed requests with any verb, flags and arguments, some with a wrong or missing
    /// `version`, `nargs` that disagrees with the arguments, or no `output`.
    #[test]
    fn ctl_body_on_generated_requests(
        verb in prop::sample::select(&VERBS[..]),
        flags in prop::collection::vec((prop::sample::select(&FLAGS[..]), any::<bool>()), 0..3),
        args in prop::collection::vec(prop::sample::select(&NAMES[..]), 0..4),
        version in prop_oneof![8 => Just(1u32), 1 => Just(2u32)],
        nargs_delta in -2i32..=2,
        output in any::<bool>(),
    ) {
        let mut req = Request::for_verb("MULTIPATH", verb, version);
        for (name, on) in flags {
            req.add_int(name, i32::from(on));
        }
        req.add_int("nargs", args.len() as i32 + nargs_delta);
        for (i, a) in args.iter().enumerate() {
            req.add_ascii(&format!("arg{i}"), a);
        }
        if output {
            req.add_output("output", 4096);
        }
        ctl_decode(&wire::encode_request(&req));
    }
}

#[test]
fn the_small_fabric_answers_a_plain_getactive() {
    let (mut class, mut topo) = small_fabric();
    let mut req = request("getactive", &[], &["FRED"]);
    class.ctl(&mut topo, &mut req);
    assert_eq!(Reply::from_request(&req).output, "md0\n");
}

/// FreeBSD's create loops up to nargs; with a missing argument it stops at the first one,
/// so a huge nargs from a hostile client ends at once (without the bound this test runs
/// for minutes).
#[test]
fn create_with_an_absurd_nargs_stops_at_the_first_missing_argument() {
    let (mut class, mut topo) = small_fabric();
    let flags = [("active_active", false), ("active_read", false)];
    let req = request("create", &flags, &["NEW", "md2"]);
    let mut params = req.params().to_vec();
    let nargs = params
        .iter()
        .position(|p| p.name == "nargs")
        .expect("nargs");
    params[nargs].value = i32::MAX.to_ne_bytes().to_vec();
    let mut req = Request::from_params(params);
    class.ctl(&mut topo, &mut req);
    topo.drain(&mut class);
    assert_eq!(req.first_error().unwrap().to_string(), "No 'arg2' argument");
    assert!(class.find_geom("NEW").is_none(), "all or nothing");
}

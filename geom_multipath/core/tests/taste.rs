//! Taste, orphan and resize scenarios (COMPAT.md §2, §4.4, §4.6).

use geom_multipath::metadata::{Metadata, OFF_VERSION};
use geom_multipath::testkit::{test_uuid, MemTopology};
use geom_multipath::{Bio, Class, Done, Errno, GeomState, GeomType, Mode, Op, PathState, Probe};

const MIB: u64 = 1 << 20;

fn labeled(n: usize, name: &str, uuid: u32) -> (Class, MemTopology, usize) {
    let mut topo = MemTopology::new();
    let disk = topo.disk_with_paths("md", n, MIB, 512);
    topo.write_label(disk, name, &test_uuid(uuid), Mode::ActivePassive);
    (Class::default(), topo, disk)
}

#[test]
fn labeled_paths_assemble_an_automatic_geom() {
    let (mut class, mut topo, _) = labeled(2, "FRED", 1);
    let g = topo.taste(&mut class, "md0").expect("joined");
    assert_eq!(topo.taste(&mut class, "md1"), Some(g));
    assert_eq!(
        topo.take_messages(),
        [
            "GEOM_MULTIPATH: FRED created",
            "GEOM_MULTIPATH: md0 added to FRED",
            "GEOM_MULTIPATH: md0 is now active path in FRED",
            "GEOM_MULTIPATH: md1 added to FRED",
        ]
    );
    let view = class.geom(g).unwrap();
    assert_eq!(view.geom_type(), GeomType::Automatic);
    assert_eq!(view.uuid(), test_uuid(1));
    assert_eq!(
        view.mediasize(),
        MIB - 512,
        "the label sector is not exported"
    );
    assert_eq!(topo.geoms[&g].mediasize, MIB - 512);
    assert_eq!(view.state(), GeomState::Optimal);
    assert!(topo.probes().contains(&Probe::Taste {
        name: "FRED".into(),
        uuid: test_uuid(1)
    }));
}

#[test]
fn the_label_mode_byte_sets_the_mode() {
    let mut topo = MemTopology::new();
    let disk = topo.disk_with_paths("md", 1, MIB, 512);
    topo.write_label(disk, "FRED", &test_uuid(1), Mode::ActiveRead);
    let mut class = Class::default();
    let g = topo.taste(&mut class, "md0").unwrap();
    assert_eq!(class.geom(g).unwrap().mode(), Mode::ActiveRead);
}

#[test]
fn a_held_provider_is_not_tasted_again() {
    let (mut class, mut topo, _) = labeled(1, "FRED", 1);
    topo.taste(&mut class, "md0").unwrap();
    topo.calls.clear();
    assert_eq!(topo.taste(&mut class, "md0"), None);
    assert!(topo.calls.is_empty(), "no read at all: {:?}", topo.calls);
}

#[test]
fn foreign_and_unreadable_sectors_are_ignored() {
    let mut topo = MemTopology::new();
    topo.disk_with_paths("md", 1, MIB, 512);
    let mut class = Class::default();
    assert_eq!(topo.taste(&mut class, "md0"), None);
    topo.unreadable.insert("md0".into());
    assert_eq!(topo.taste(&mut class, "md0"), None);
    assert!(topo.take_messages().is_empty());
}

#[test]
fn another_version_is_rejected_with_freebsds_message() {
    let (mut class, mut topo, disk) = labeled(1, "FRED", 1);
    let offset = MIB - 512;
    topo.disks[disk].sectors.get_mut(&offset).unwrap()[OFF_VERSION] = 7;
    assert_eq!(topo.taste(&mut class, "md0"), None);
    assert_eq!(
        topo.take_messages(),
        ["md0 has version 7 multipath id- this module is version  1: rejecting"]
    );
}

#[test]
fn a_corrupt_label_is_rejected_with_a_reason() {
    let (mut class, mut topo, disk) = labeled(1, "FRED", 1);
    let offset = MIB - 512;
    topo.disks[disk].sectors.get_mut(&offset).unwrap()[16..56].fill(b'z');
    assert_eq!(topo.taste(&mut class, "md0"), None);
    assert_eq!(
        topo.take_messages(),
        ["GEOM_MULTIPATH: md0 has a corrupt label (UUID field is not UUID text): rejecting"]
    );
}

/// A 1 MiB disk behind `md0`, and a label written for a 2 MiB one (not yet stored).
fn one_path_with_a_label_for_two_mib() -> (MemTopology, usize, Metadata) {
    let mut topo = MemTopology::new();
    let disk = topo.disk_with_paths("md", 1, MIB, 512);
    let md = Metadata {
        uuid: test_uuid(1),
        name: "FRED".into(),
        sectorsize: 512,
        size: 2 * MIB,
        mode: Mode::ActivePassive,
    };
    (topo, disk, md)
}

#[test]
fn size_and_sector_size_must_match_the_provider() {
    // A label written for a bigger disk (a gnop with an offset, say) is not ours here.
    let (mut topo, disk, md) = one_path_with_a_label_for_two_mib();
    topo.disks[disk]
        .sectors
        .insert(MIB - 512, md.encode(512).unwrap());
    let mut class = Class::default();
    assert_eq!(topo.taste(&mut class, "md0"), None);
    let md = Metadata {
        size: MIB,
        sectorsize: 4096,
        ..md
    };
    topo.disks[disk]
        .sectors
        .insert(MIB - 512, md.encode(512).unwrap());
    assert_eq!(topo.taste(&mut class, "md0"), None);
    let md = Metadata {
        size: 0,
        sectorsize: 0,
        ..md
    };
    topo.disks[disk]
        .sectors
        .insert(MIB - 512, md.encode(512).unwrap());
    assert!(
        topo.taste(&mut class, "md0").is_some(),
        "0 means: do not check"
    );
    assert!(topo
        .take_messages()
        .iter()
        .all(|m| !m.contains("rejecting")));
}

#[test]
fn a_name_clash_renames_the_newcomer() {
    let mut topo = MemTopology::new();
    let a = topo.disk_with_paths("a", 1, MIB, 512);
    let b = topo.disk_with_paths("b", 1, MIB, 512);
    topo.write_label(a, "FRED", &test_uuid(1), Mode::ActivePassive);
    topo.write_label(b, "FRED", &test_uuid(2), Mode::ActivePassive);
    let mut class = Class::default();
    topo.taste(&mut class, "a0").unwrap();
    topo.take_messages();
    let g = topo.taste(&mut class, "b0").unwrap();
    assert_eq!(class.geom(g).unwrap().name(), "FRED-1234");
    assert_eq!(
        topo.take_messages(),
        [
            format!("GEOM_MULTIPATH: geom FRED/{} exists already", test_uuid(1)),
            format!(
                "GEOM_MULTIPATH: {} will be (temporarily) FRED-1234",
                test_uuid(2)
            ),
            "GEOM_MULTIPATH: FRED-1234 created".into(),
            "GEOM_MULTIPATH: b0 added to FRED-1234".into(),
            "GEOM_MULTIPATH: b0 is now active path in FRED-1234".into(),
        ]
    );
}

#[test]
fn a_rename_is_cut_to_fifteen_bytes_and_may_clash_again() {
    let mut topo = MemTopology::new();
    let a = topo.disk_with_paths("a", 1, MIB, 512);
    let b = topo.disk_with_paths("b", 1, MIB, 512);
    let c = topo.disk_with_paths("c", 1, MIB, 512);
    topo.write_label(a, "ABCDEFGHIJKLM", &test_uuid(1), Mode::ActivePassive);
    topo.write_label(b, "ABCDEFGHIJKLM", &test_uuid(2), Mode::ActivePassive);
    topo.write_label(c, "ABCDEFGHIJKLM", &test_uuid(3), Mode::ActivePassive);
    let mut class = Class::default();
    topo.taste(&mut class, "a0").unwrap();
    let g = topo.taste(&mut class, "b0").unwrap();
    assert_eq!(
        class.geom(g).unwrap().name(),
        "ABCDEFGHIJKLM-1",
        "cut to 15 bytes"
    );
    topo.take_messages();
    assert_eq!(topo.taste(&mut class, "c0"), None);
    let msgs = topo.take_messages();
    assert!(msgs.contains(&"GEOM_MULTIPATH: name ABCDEFGHIJKLM-1 already exists".into()));
    assert!(msgs.contains(&format!(
        "GEOM_MULTIPATH: cannot create geom ABCDEFGHIJKLM-1/{}",
        test_uuid(3)
    )));
}

/// Issue 11 item 10: a label that does not fit its provider was skipped without a word,
/// even at `debug=1`; it is still skipped, with a debug message that says why.
#[test]
fn a_misfit_label_is_skipped_with_a_debug_message() {
    let (mut topo, disk, md) = one_path_with_a_label_for_two_mib();
    let mut class = Class::default();
    topo.disks[disk]
        .sectors
        .insert(MIB - 512, md.encode(512).unwrap());
    assert_eq!(topo.taste(&mut class, "md0"), None);
    assert!(topo.take_messages().is_empty(), "quiet at debug=0");
    class
        .tunables_mut()
        .set(geom_multipath::sysctl::Knob::Debug, 1)
        .unwrap();
    assert_eq!(topo.taste(&mut class, "md0"), None);
    assert_eq!(
        topo.take_messages(),
        ["GEOM_MULTIPATH: md0 label's size 2097152 is not the provider's 1048576: skipping"]
    );
    let md = Metadata {
        size: MIB,
        sectorsize: 4096,
        ..md
    };
    topo.disks[disk]
        .sectors
        .insert(MIB - 512, md.encode(512).unwrap());
    assert_eq!(topo.taste(&mut class, "md0"), None);
    assert_eq!(
        topo.take_messages(),
        ["GEOM_MULTIPATH: md0 label's sector size 4096 is not the provider's 512: skipping"]
    );
}

#[test]
fn a_debug_taste_names_the_label() {
    let (mut class, mut topo, _) = labeled(1, "FRED", 1);
    class
        .tunables_mut()
        .set(geom_multipath::sysctl::Knob::Debug, 1)
        .unwrap();
    topo.taste(&mut class, "md0");
    assert_eq!(
        topo.take_messages()[0],
        format!("MULTIPATH: FRED/{}", test_uuid(1))
    );
}

#[test]
fn an_orphaned_idle_path_is_detached_at_once() {
    let (mut class, mut topo, _) = labeled(2, "FRED", 1);
    let g = topo.taste(&mut class, "md0").unwrap();
    topo.taste(&mut class, "md1");
    topo.take_messages();
    let md0 = class.paths_on_provider("md0").next().unwrap();
    topo.remove_provider("md0");
    class.orphan(&mut topo, md0);
    topo.drain(&mut class);
    assert_eq!(
        topo.take_messages(),
        [
            "GEOM_MULTIPATH: md0 in FRED was disconnected",
            "GEOM_MULTIPATH: md1 is now active path in FRED",
            "GEOM_MULTIPATH: md0 removed from FRED",
        ]
    );
    assert!(topo.probes().contains(&Probe::Disconnect {
        geom: "FRED".into(),
        path: "md0".into()
    }));
    assert_eq!(class.geom(g).unwrap().ndisks(), 1);
    assert!(class.path(md0).is_none());
}

#[test]
fn a_path_that_comes_back_rejoins_by_uuid() {
    let (mut class, mut topo, disk) = labeled(2, "FRED", 1);
    let g = topo.taste(&mut class, "md0").unwrap();
    topo.taste(&mut class, "md1");
    let md0 = class.paths_on_provider("md0").next().unwrap();
    topo.remove_provider("md0");
    class.orphan(&mut topo, md0);
    topo.drain(&mut class);
    topo.add_provider("md0", disk);
    assert_eq!(topo.taste(&mut class, "md0"), Some(g));
    assert_eq!(class.geom(g).unwrap().ndisks(), 2);
}

#[test]
fn losing_every_path_destroys_and_the_label_recreates() {
    let (mut class, mut topo, disk) = labeled(1, "FRED", 1);
    topo.taste(&mut class, "md0").unwrap();
    let md0 = class.paths_on_provider("md0").next().unwrap();
    topo.remove_provider("md0");
    class.orphan(&mut topo, md0);
    topo.drain(&mut class);
    assert!(class.find_geom("FRED").is_none());
    topo.add_provider("md0", disk);
    assert!(topo.taste(&mut class, "md0").is_some());
}

#[test]
fn an_orphaned_busy_path_waits_for_its_requests() {
    let (mut class, mut topo, _) = labeled(2, "FRED", 1);
    let g = topo.taste(&mut class, "md0").unwrap();
    topo.taste(&mut class, "md1");
    class.access(&mut topo, g, 1, 1, 0).unwrap();
    let mut bio = Bio::new(7, g, Op::Read, 0, 4096);
    let md0 = class.start(&mut bio).unwrap();
    assert_eq!(class.path(md0).unwrap().name(), "md0");
    class.orphan(&mut topo, md0);
    topo.drain(&mut class);
    assert_eq!(class.path_state(md0), Some(PathState::Lost));
    assert!(
        topo.attached.contains_key(&md0),
        "still attached with a request in flight"
    );
    // The request completes fine on the lost path and is delivered as is.
    assert_eq!(
        class.done(&mut bio, Ok(())),
        Done::Deliver {
            result: Ok(()),
            append: None
        }
    );
    topo.drain(&mut class);
    assert!(!topo.attached.contains_key(&md0));
    assert!(topo
        .take_messages()
        .contains(&"GEOM_MULTIPATH: md0 removed from FRED".into()));
}

#[test]
fn access_is_applied_to_every_path_and_rolled_back_on_error() {
    let (mut class, mut topo, _) = labeled(3, "FRED", 1);
    let g = topo.taste(&mut class, "md0").unwrap();
    topo.taste(&mut class, "md1");
    topo.taste(&mut class, "md2");
    class.access(&mut topo, g, 1, 1, 0).unwrap();
    for p in class.geom(g).unwrap().paths() {
        assert_eq!(class.path(p).unwrap().access_counts(), (2, 2, 1));
    }
    assert_eq!(class.geom(g).unwrap().access_counts(), (1, 1, 0));
    topo.fail_access.insert("md0".into(), Errno::EPERM);
    assert_eq!(class.access(&mut topo, g, 1, 0, 0), Err(Errno::EPERM));
    for p in class.geom(g).unwrap().paths() {
        assert_eq!(
            class.path(p).unwrap().access_counts(),
            (2, 2, 1),
            "rolled back"
        );
        assert_eq!(topo.access[&p], (2, 2, 1));
    }
    assert_eq!(class.geom(g).unwrap().access_counts(), (1, 1, 0));
}

#[test]
fn opening_a_geom_without_paths_fails_with_enxio() {
    let (mut class, mut topo, _) = labeled(1, "FRED", 1);
    let g = topo.taste(&mut class, "md0").unwrap();
    let md0 = class.paths_on_provider("md0").next().unwrap();
    class.access(&mut topo, g, 1, 0, 0).unwrap();
    class.orphan(&mut topo, md0);
    topo.drain(&mut class);
    // The geom is gone with its last path; an open of a stale id fails.
    assert_eq!(class.access(&mut topo, g, 1, 0, 0), Err(Errno::ENXIO));
}

#[test]
fn growing_every_path_grows_the_geom_and_moves_the_label() {
    let (mut class, mut topo, disk) = labeled(2, "FRED", 1);
    let g = topo.taste(&mut class, "md0").unwrap();
    topo.taste(&mut class, "md1");
    topo.take_messages();
    topo.disks[disk].mediasize = 2 * MIB;
    for name in ["md0", "md1"] {
        let p = class.paths_on_provider(name).next().unwrap();
        let info = topo.info(name).unwrap();
        class.resize(&mut topo, p, &info);
        topo.drain(&mut class);
    }
    assert_eq!(class.geom(g).unwrap().mediasize(), 2 * MIB - 512);
    assert_eq!(topo.geoms[&g].mediasize, 2 * MIB - 512);
    assert_eq!(
        topo.label(disk).unwrap().size,
        2 * MIB,
        "label rewritten at the new end"
    );
    let msgs = topo.take_messages();
    assert_eq!(
        msgs.iter().filter(|m| m.contains("size changed")).count(),
        1
    );
    assert_eq!(
        msgs[0],
        format!(
            "GEOM_MULTIPATH: FRED size changed from {} to {}",
            MIB - 512,
            2 * MIB - 512
        )
    );
}

#[test]
fn a_shrunk_path_without_its_label_destroys_the_geom() {
    let (mut class, mut topo, disk) = labeled(1, "FRED", 1);
    topo.taste(&mut class, "md0").unwrap();
    topo.disks[disk].mediasize = MIB / 2;
    let p = class.paths_on_provider("md0").next().unwrap();
    let info = topo.info("md0").unwrap();
    class.resize(&mut topo, p, &info);
    topo.drain(&mut class);
    assert!(class.find_geom("FRED").is_none());
    assert!(topo
        .take_messages()
        .contains(&"GEOM_MULTIPATH: FRED destroyed".into()));
}

#[test]
fn unload_refuses_while_open_and_destroys_idle_geoms() {
    let (mut class, mut topo, disk) = labeled(2, "FRED", 1);
    let g = topo.taste(&mut class, "md0").unwrap();
    topo.taste(&mut class, "md1");
    class.access(&mut topo, g, 1, 0, 0).unwrap();
    assert_eq!(class.destroy_all(&mut topo), Err(Errno::EBUSY));
    class.access(&mut topo, g, -1, 0, 0).unwrap();
    assert_eq!(class.destroy_all(&mut topo), Ok(()));
    topo.drain(&mut class);
    assert_eq!(class.geoms().count(), 0);
    assert!(topo.attached.is_empty());
    assert!(topo.label(disk).is_some(), "unload keeps labels");
}

/// Issue 11 item 4: two different disks with the same label (a cloned image, a LUN
/// snapshot) were assembled as two paths of one geom. When both can say who they are and
/// the answers differ, the second is refused; when either cannot say, it joins as on
/// FreeBSD.
#[test]
fn two_disks_with_one_label_are_not_joined_when_their_identities_differ() {
    let mut topo = MemTopology::new();
    let a = topo.disk_with_paths("a", 2, MIB, 512);
    let b = topo.disk_with_paths("b", 1, MIB, 512);
    topo.write_label(a, "FRED", &test_uuid(1), Mode::ActivePassive);
    topo.write_label(b, "FRED", &test_uuid(1), Mode::ActivePassive);
    for (p, ident) in [("a0", "SER-A"), ("a1", "SER-A"), ("b0", "SER-B")] {
        topo.idents.insert(p.into(), ident.into());
    }
    let mut class = Class::default();
    let g = topo.taste(&mut class, "a0").expect("joined");
    assert_eq!(
        topo.taste(&mut class, "a1"),
        Some(g),
        "same disk: a second path"
    );
    topo.take_messages();
    assert_eq!(topo.taste(&mut class, "b0"), None);
    assert_eq!(
        topo.take_messages(),
        ["GEOM_MULTIPATH: b0 is another disk than a1 in FRED (SER-B is not SER-A): refusing"]
    );
    assert_eq!(class.geom(g).unwrap().paths().count(), 2);
    // The same refusal for the add verb.
    let reply = topo.verb(&mut class, "add", &[], &["FRED", "b0"]);
    assert!(!reply.error.is_empty(), "{reply:?}");
    // Unknown on one side: joins, as FreeBSD does.
    topo.idents.remove("b0");
    assert_eq!(topo.taste(&mut class, "b0"), Some(g));
}

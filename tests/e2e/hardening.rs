//! Issue 11's reproductions, each through the built tools and a real daemon: what a new
//! user or an attacker tried that the daemon or the tools got wrong (a read-only path
//! accepted, a provider named twice, a non-root caller told to `load`, a daemon holding
//! the starter's descriptors, a tunables file with a stray byte). Each test fails on the
//! code before the fix.

use gmultipath_e2e::{root_or_skip, Daemon, Loop, Scratch};

const MIB: u64 = 1 << 20;

/// Item 10: FreeBSD's attach refuses write access to a read-only provider; Linux opened a
/// `losetup -r` device for writing and every write through the geom failed with EPERM.
#[test]
fn a_read_only_provider_is_refused_at_create() {
    if !root_or_skip("read_only_provider") {
        return;
    }
    let scratch = Scratch::new("ro");
    let img = scratch.image("disk.img", 16 * MIB);
    let ro = Loop::attach_with(&img, &["-r"]);
    let rw = Loop::attach(&img);
    let d = Daemon::start(&scratch);
    let out = d.gmultipath(&["create", "ROG", &ro.name]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        d.messages().iter().any(|m| m
            == &format!(
                "GEOM_MULTIPATH: cannot set access in attaching {} to ROG (30)",
                ro.name
            )),
        "{:?}",
        d.messages()
    );
    assert_eq!(d.gmultipath(&["status"]).ok(), "", "no geom left behind");
    // A read-write path beside it still makes a geom; the read-only one cannot join.
    d.gmultipath(&["create", "ROG", &rw.name]).ok();
    assert_eq!(d.gmultipath(&["add", "ROG", &ro.name]).code, 1);
    assert_eq!(
        d.gmultipath(&["getactive", "ROG"]).ok(),
        format!("{}\n", rw.name)
    );
}

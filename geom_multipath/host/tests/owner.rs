//! The owner thread end to end over in-memory devices: control calls, access from an
//! export, data requests through path workers, failover with reissue, and errors that end
//! in bounded time. No root needed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use geom_multipath::{Errno, ProviderInfo, Request};
use geom_multipath_host::msg::exports::{Exports, SharedExports};
use geom_multipath_host::msg::{self, IoOp, IoReply, IoRequest, OwnerHandle};
use geom_multipath_host::owner::{self, Owner, Settings, Sources};
use geom_multipath_host::path::device::Source;
use geom_multipath_host::path::device::{Device, IoBuf};
use geom_multipath_host::testkit::{MemDevice, MemFaults};
use geom_multipath_proto::{Answer, Call};

/// One path to a shared disk, with its own fault switch, a hang switch, and a count of
/// the writes that reached it.
struct PathTo {
    disk: Arc<MemDevice>,
    faults: Mutex<MemFaults>,
    hang: Mutex<bool>,
    released: Condvar,
    writes: AtomicUsize,
    fenced: AtomicBool,
}

impl PathTo {
    fn wait_while_hung(&self) {
        let mut hung = self.hang.lock().unwrap();
        while *hung {
            hung = self.released.wait(hung).unwrap();
        }
    }
    fn set_hang(&self, on: bool) {
        *self.hang.lock().unwrap() = on;
        self.released.notify_all();
    }
}

impl Device for PathTo {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), Errno> {
        self.wait_while_hung();
        match self.faults.lock().unwrap().read {
            Some(e) => Err(e),
            None => self.disk.read_at(buf, offset),
        }
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), Errno> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.wait_while_hung();
        match self.faults.lock().unwrap().write {
            Some(e) => Err(e),
            None => self.disk.write_at(buf, offset),
        }
    }
    fn fence(&self) {
        self.fenced.store(true, Ordering::SeqCst);
    }
    fn flush(&self) -> Result<(), Errno> {
        Ok(())
    }
    fn discard(&self, offset: u64, len: u64) -> Result<(), Errno> {
        self.disk.discard(offset, len)
    }
    fn physpath(&self) -> Result<String, Errno> {
        Ok("pci0/disk0".into())
    }
}

struct NoSources;

impl Sources for NoSources {
    fn fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        Vec::new()
    }
    fn ready(&mut self, _: &mut Owner) {}
    fn tick(&mut self, _: &mut Owner) {}
}

struct Host {
    handle: OwnerHandle,
    exports: SharedExports,
    paths: Vec<Arc<PathTo>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.handle.send(msg::Msg::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const SIZE: u64 = 1 << 20;

/// A host whose providers md0..md{n-1} are paths to one in-memory disk.
fn host(n: usize) -> Host {
    let (handle, inbox) = msg::channel().unwrap();
    let exports: SharedExports = Arc::new(RwLock::new(Exports::new()));
    let disk = Arc::new(MemDevice::new(SIZE as usize));
    let paths: Vec<Arc<PathTo>> = (0..n)
        .map(|_| {
            Arc::new(PathTo {
                disk: disk.clone(),
                faults: Mutex::new(MemFaults::default()),
                hang: Mutex::new(false),
                released: Condvar::new(),
                writes: AtomicUsize::new(0),
                fenced: AtomicBool::new(false),
            })
        })
        .collect();
    let settings = Settings {
        tunables: Default::default(),
        devices: None,
        mountpoint: "/nonexistent".into(),
        own_nbd: Default::default(),
    };
    let (e, h, ps) = (exports.clone(), handle.clone(), paths.clone());
    let thread = std::thread::spawn(move || {
        let mut owner = Owner::new(settings, e, h);
        for (i, p) in ps.into_iter().enumerate() {
            let info = ProviderInfo {
                name: format!("md{i}"),
                mediasize: SIZE,
                sectorsize: 512,
                stripesize: 0,
                stripeoffset: 0,
                rank: 1,
            };
            owner.add_provider(info, Source::Fixed(p));
        }
        owner::run(&mut owner, &inbox, &mut NoSources);
    });
    Host {
        handle,
        exports,
        paths,
        thread: Some(thread),
    }
}

impl Host {
    fn verb(&self, verb: &str, flags: &[(&str, bool)], args: &[&str]) -> String {
        let mut req = Request::for_verb("MULTIPATH", verb, 1);
        for &(f, on) in flags {
            req.add_int(f, i32::from(on));
        }
        req.add_args(args);
        req.add_output("output", 4096);
        match self.handle.call(Call::Ctl(req)) {
            Answer::Ctl(reply) if reply.error.is_empty() => reply.output,
            Answer::Ctl(reply) => format!("ERROR: {}", reply.error),
            other => panic!("{other:?}"),
        }
    }

    fn geom(&self, name: &str) -> geom_multipath::GeomId {
        self.exports
            .read()
            .unwrap()
            .get(name)
            .expect("exported")
            .geom
    }

    fn io(&self, name: &str, op: IoOp, offset: u64) -> Result<IoReply, Errno> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.handle.io(IoRequest {
            geom: self.geom(name),
            op,
            offset,
            reply: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("answer within the deadline")
    }

    fn messages(&self) -> Vec<String> {
        match self.handle.call(Call::Messages { since: 0 }) {
            Answer::Messages { lines, .. } => lines,
            other => panic!("{other:?}"),
        }
    }

    fn probes(&self, name: &str) -> u64 {
        match self.handle.call(Call::Probes) {
            Answer::Counters(c) => c.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v),
            other => panic!("{other:?}"),
        }
    }
}

const AP: [(&str, bool); 2] = [("active_active", false), ("active_read", false)];

#[test]
fn create_exports_a_provider_that_reads_back_what_was_written() {
    let h = host(2);
    assert_eq!(h.verb("create", &AP, &["FRED", "md0", "md1"]), "");
    let g = h.geom("FRED");
    assert_eq!(
        h.exports.read().unwrap().get("FRED").unwrap().mediasize,
        SIZE
    );
    h.handle.access(g, 1, 1, 0).unwrap();
    let data: Vec<u8> = (0..8192).map(|i| (i % 251) as u8).collect();
    assert!(matches!(
        h.io("FRED", IoOp::Write(IoBuf::from_slice(&data)), 4096),
        Ok(IoReply::Data(_))
    ));
    match h.io("FRED", IoOp::Read(IoBuf::zeroed(8192)), 4096) {
        Ok(IoReply::Data(buf)) => assert_eq!(buf.as_slice(), &data[..]),
        other => panic!("{other:?}"),
    }
    assert!(matches!(h.io("FRED", IoOp::Flush, 0), Ok(IoReply::Done)));
    match h.io("FRED", IoOp::Physpath, 0) {
        Ok(IoReply::Text(t)) => assert_eq!(t, "pci0/disk0/mp"),
        other => panic!("{other:?}"),
    }
    h.handle.access(g, -1, -1, 0).unwrap();
    assert!(h
        .messages()
        .contains(&"GEOM_MULTIPATH: FRED created".to_string()));
}

#[test]
fn a_failing_path_is_failed_over_and_the_write_succeeds() {
    let h = host(2);
    h.verb("create", &AP, &["FRED", "md0", "md1"]);
    h.handle.access(h.geom("FRED"), 1, 1, 0).unwrap();
    h.paths[0].faults.lock().unwrap().write = Some(Errno::EIO);
    let data = vec![0x5a; 4096];
    assert!(h
        .io("FRED", IoOp::Write(IoBuf::from_slice(&data)), 0)
        .is_ok());
    assert_eq!(h.paths[1].disk.peek(0, 4096), data, "landed through md1");
    assert_eq!(h.verb("getactive", &[], &["FRED"]), "md1\n");
    let msgs = h.messages();
    assert!(
        msgs.contains(&"GEOM_MULTIPATH: Error 5, md0 in FRED marked FAIL".to_string()),
        "{msgs:?}"
    );
    assert_eq!(h.probes("geom:multipath:config:fail"), 1);
    assert_eq!(h.probes("geom:multipath:io:restart"), 1);
}

#[test]
fn every_path_failing_ends_in_an_error_not_a_loop() {
    let h = host(2);
    h.verb("create", &AP, &["FRED", "md0", "md1"]);
    h.handle.access(h.geom("FRED"), 1, 1, 0).unwrap();
    for p in &h.paths {
        p.faults.lock().unwrap().write = Some(Errno::EIO);
    }
    let r = h.io("FRED", IoOp::Write(IoBuf::zeroed(512)), 0);
    assert_eq!(r.err(), Some(Errno::EIO));
    assert!(h.probes("geom:multipath:config:restore") <= 2);
}

#[test]
fn other_errors_pass_through_without_failing_the_path() {
    let h = host(2);
    h.verb("create", &AP, &["FRED", "md0", "md1"]);
    h.handle.access(h.geom("FRED"), 1, 1, 0).unwrap();
    h.paths[0].faults.lock().unwrap().write = Some(Errno::ENOSPC);
    assert_eq!(
        h.io("FRED", IoOp::Write(IoBuf::zeroed(512)), 0).err(),
        Some(Errno::ENOSPC)
    );
    assert_eq!(h.verb("getactive", &[], &["FRED"]), "md0\n");
}

#[test]
fn a_stopped_geom_refuses_io_and_disappears_from_the_exports() {
    let h = host(1);
    h.verb("create", &AP, &["FRED", "md0"]);
    let g = h.geom("FRED");
    h.handle.access(g, 1, 0, 0).unwrap();
    assert_eq!(h.verb("stop", &[], &["FRED"]), "");
    assert!(h.exports.read().unwrap().get("FRED").is_none());
    let (tx, rx) = crossbeam_channel::bounded(1);
    h.handle.io(IoRequest {
        geom: g,
        op: IoOp::Read(IoBuf::zeroed(512)),
        offset: 0,
        reply: Box::new(move |r| {
            let _ = tx.send(r.err());
        }),
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        Some(Errno::ENXIO)
    );
    h.handle.access(g, -1, 0, 0).unwrap();
    assert!(h
        .messages()
        .contains(&"GEOM_MULTIPATH: FRED destroyed".to_string()));
}

#[test]
fn unload_is_refused_while_open_then_accepted() {
    let h = host(1);
    h.verb("create", &AP, &["FRED", "md0"]);
    let g = h.geom("FRED");
    h.handle.access(g, 1, 0, 0).unwrap();
    match h.handle.call(Call::Unload) {
        Answer::Failed { errno, .. } => assert_eq!(errno, libc::EBUSY),
        other => panic!("{other:?}"),
    }
    h.handle.access(g, -1, 0, 0).unwrap();
    assert_eq!(h.handle.call(Call::Unload), Answer::Done);
}

#[test]
fn unknown_classes_and_sysctls_are_errors() {
    let h = host(1);
    let mut req = Request::for_verb("FOO", "create", 1);
    req.add_args(&["x"]);
    match h.handle.call(Call::Ctl(req)) {
        Answer::Ctl(r) => assert_eq!(r.error, "Class not found: \"FOO\""),
        other => panic!("{other:?}"),
    }
    match h.handle.call(Call::SysctlSet {
        name: "kern.geom.multipath.debug".into(),
        value: "1".into(),
    }) {
        Answer::Sysctl(k) => assert_eq!((k[0].old, k[0].value), (Some(0), 1)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        h.handle.call(Call::SysctlGet {
            name: "kern.geom.multipath.nope".into()
        }),
        Answer::Failed {
            errno: libc::ENOENT,
            ..
        }
    ));
}

#[test]
fn a_hung_path_is_failed_over_at_its_deadline_and_fenced_until_its_late_answer() {
    let h = host(2);
    h.verb("create", &AP, &["FRED", "md0", "md1"]);
    h.handle.access(h.geom("FRED"), 1, 1, 0).unwrap();
    match h.handle.call(Call::SysctlSet {
        name: "kern.geom.multipath.io_timeout.md0".into(),
        value: "1".into(),
    }) {
        Answer::Sysctl(k) => assert_eq!((k[0].old, k[0].value), (Some(0), 1)),
        other => panic!("{other:?}"),
    }
    h.paths[0].set_hang(true);
    let data = vec![0x77; 4096];
    // md0 never answers; at its deadline the read is reissued on md1 and succeeds (a
    // write would be held: see the next test).
    assert!(h.io("FRED", IoOp::Read(IoBuf::zeroed(4096)), 0).is_ok());
    assert!(
        h.paths[0].fenced.load(Ordering::SeqCst),
        "the device was told to stop"
    );
    assert!(h
        .messages()
        .contains(&"GEOM_MULTIPATH: Error 6, md0 in FRED marked FAIL".to_string()));
    // While the late read is out, nothing reaches md0, even restored and preferred.
    h.verb("restore", &[], &["FRED", "md0"]);
    h.verb("prefer", &[], &["FRED", "md0"]);
    let before = h.paths[0].writes.load(Ordering::SeqCst);
    assert!(h
        .io("FRED", IoOp::Write(IoBuf::from_slice(&data)), 8192)
        .is_ok());
    assert_eq!(h.paths[0].writes.load(Ordering::SeqCst), before, "fenced");
    assert_eq!(h.verb("getactive", &[], &["FRED"]), "md1\n");
    // The late answer arrives; md0 may carry requests again once restored.
    h.paths[0].set_hang(false);
    let mut tries = 0;
    loop {
        h.verb("restore", &[], &["FRED", "md0"]);
        h.verb("prefer", &[], &["FRED", "md0"]);
        assert!(h
            .io("FRED", IoOp::Write(IoBuf::from_slice(&data)), 16384)
            .is_ok());
        if h.verb("getactive", &[], &["FRED"]) == "md0\n" {
            break;
        }
        tries += 1;
        assert!(tries < 200, "md0 never came back after its late answer");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(h.paths[0].writes.load(Ordering::SeqCst) > before);
}

/// Issue 11 item 3: a write past its deadline fails its path for new requests but is not
/// re-driven while its first copy can still land; it is answered by that copy, or, once
/// the path's `quiesce_time` has passed, re-driven on the next path.
#[test]
fn a_hung_write_is_held_until_its_answer_or_its_quiesce_time() {
    let h = host(2);
    h.verb("create", &AP, &["FRED", "md0", "md1"]);
    h.handle.access(h.geom("FRED"), 1, 1, 0).unwrap();
    h.handle.call(Call::SysctlSet {
        name: "kern.geom.multipath.io_timeout".into(),
        value: "1".into(),
    });
    h.paths[0].set_hang(true);
    let write = |offset: u64, byte: u8| {
        let (tx, rx) = crossbeam_channel::bounded(1);
        h.handle.io(IoRequest {
            geom: h.geom("FRED"),
            op: IoOp::Write(IoBuf::from_slice(&[byte; 4096])),
            offset,
            reply: Box::new(move |r| {
                let _ = tx.send(r.is_ok());
            }),
        });
        rx
    };
    let held = write(0, 0x11);
    let held_msg = "GEOM_MULTIPATH: a write to md0 in FRED is overdue; it is re-driven once \
                    its answer arrives or md0 is gone";
    let mut tries = 0;
    while !h.messages().iter().any(|m| m == held_msg) {
        tries += 1;
        assert!(tries < 2000, "never held: {:?}", h.messages());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        held.try_recv().is_err(),
        "not answered while md0 may still land it"
    );
    assert_eq!(h.verb("getactive", &[], &["FRED"]), "md1\n", "md0 failed");
    h.paths[0].set_hang(false);
    assert_eq!(held.recv_timeout(Duration::from_secs(20)), Ok(true));
    assert_eq!(h.paths[0].disk.peek(0, 4096), vec![0x11; 4096]);
    // With a quiesce time stated for md1, a write held there goes after it, on md0.
    h.verb("restore", &[], &["FRED", "md0"]);
    match h.handle.call(Call::SysctlSet {
        name: "kern.geom.multipath.quiesce_time.md1".into(),
        value: "1".into(),
    }) {
        Answer::Sysctl(k) => assert_eq!((k[0].old, k[0].value), (Some(0), 1)),
        other => panic!("{other:?}"),
    }
    h.paths[1].set_hang(true);
    let redriven = write(8192, 0x22);
    assert_eq!(redriven.recv_timeout(Duration::from_secs(20)), Ok(true));
    assert_eq!(h.paths[0].disk.peek(8192, 4096), vec![0x22; 4096]);
    assert!(
        h.paths[1].fenced.load(Ordering::SeqCst),
        "md1 fenced on release"
    );
    h.paths[1].set_hang(false);
}

#[test]
fn without_a_deadline_a_hung_path_holds_its_request_as_freebsd_does() {
    let h = host(2);
    h.verb("create", &AP, &["FRED", "md0", "md1"]);
    h.handle.access(h.geom("FRED"), 1, 1, 0).unwrap();
    h.paths[0].set_hang(true);
    let (tx, rx) = crossbeam_channel::bounded(1);
    h.handle.io(IoRequest {
        geom: h.geom("FRED"),
        op: IoOp::Write(IoBuf::zeroed(512)),
        offset: 0,
        reply: Box::new(move |r| {
            let _ = tx.send(r.is_ok());
        }),
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(1500)).is_err(),
        "io_timeout=0 waits for the device"
    );
    h.paths[0].set_hang(false);
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)), Ok(true));
}

#[test]
fn io_timeout_overrides_are_sysctls() {
    let h = host(1);
    let get = |name: &str| h.handle.call(Call::SysctlGet { name: name.into() });
    assert!(matches!(
        get("kern.geom.multipath.io_timeout.md0"),
        Answer::Failed {
            errno: libc::ENOENT,
            ..
        }
    ));
    h.handle.call(Call::SysctlSet {
        name: "kern.geom.multipath.io_timeout".into(),
        value: "7".into(),
    });
    match h.handle.call(Call::SysctlSet {
        name: "kern.geom.multipath.io_timeout.md0".into(),
        value: "3".into(),
    }) {
        Answer::Sysctl(k) => assert_eq!(
            (k[0].old, k[0].value),
            (Some(7), 3),
            "old: the knob it overrides"
        ),
        other => panic!("{other:?}"),
    }
    match get("") {
        Answer::Sysctl(all) => {
            let knobs = geom_multipath::sysctl::TABLE.len();
            assert_eq!(
                all.len(),
                knobs + 2,
                "the knobs, the override, the NOP class's"
            );
            assert_eq!(all[knobs].name, "kern.geom.multipath.io_timeout.md0");
            assert_eq!(all[knobs + 1].name, "kern.geom.nop.debug");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        h.handle.call(Call::SysctlSet {
            name: "kern.geom.multipath.io_timeout.md0".into(),
            value: "99999999".into()
        }),
        Answer::Failed {
            errno: libc::EINVAL,
            ..
        }
    ));
}

/// Issue 11 item 10: a provider read of 8 MiB closed the control connection without an
/// answer, and one of 4 GiB answered EIO; a length the protocol cannot carry, or a range
/// past the end, is the caller's mistake: EINVAL, with a reason.
#[test]
fn provider_reads_beyond_what_a_frame_holds_are_einval_with_an_answer() {
    let h = host(1);
    let read = |offset: u64, len: u32| {
        h.handle.call(Call::ProviderRead {
            name: "md0".into(),
            offset,
            len,
        })
    };
    assert!(matches!(read(0, 512), Answer::Data(d) if d.len() == 512));
    for (offset, len) in [(0, 8 << 20), (0, u32::MAX), (0, 0), (SIZE - 512, 1024)] {
        match read(offset, len) {
            Answer::Failed { errno, text } => {
                assert_eq!(errno, libc::EINVAL, "{offset} {len}");
                assert!(text.contains("the length must be"), "{text}");
            }
            other => panic!("{offset} {len}: {other:?}"),
        }
    }
}

//! The NBD export against real clients (qemu-img, qemu-io, nbdinfo, nbdcopy, fio's nbd
//! engine), against this crate's own client, and against a raw client that sends what a
//! broken or hostile one would. A fake owner serves the providers from memory, so no
//! daemon and no root are needed; a test whose tool is missing prints `SKIPPED`.

mod nbd_common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use geom_multipath::Errno;
use geom_multipath_host::export::nbd::{serve, NbdConfig, NbdServer};
use geom_multipath_host::nbd_proto::{self as codec, *};
use geom_multipath_host::path::device::Device;
use geom_multipath_host::path::nbd::{ClientOptions, NbdDevice};
use nbd_common::*;

/// Providers exported by a running server over a fake owner.
struct Served {
    // Dropped in this order: the server (its connections give access back through the
    // owner), then the owner, then the directory.
    server: Option<NbdServer>,
    fo: FakeOwner,
    dir: TempDir,
}

impl Served {
    fn new(providers: &[(&str, u64)]) -> Served {
        let fo = FakeOwner::new(providers);
        let dir = TempDir::new("srv");
        let config = NbdConfig {
            unix_dir: Some(dir.path("nbd")),
            tcp: Some("127.0.0.1:0".parse().unwrap()),
            insecure_plaintext: true,
            ..Default::default()
        };
        let server = serve(config, fo.exports.clone(), fo.owner.clone()).expect("serve");
        let s = Served {
            server: Some(server),
            fo,
            dir,
        };
        for (name, _) in providers {
            let sock = s.sock(name);
            wait_until(
                &format!("{} to appear", sock.display()),
                Duration::from_secs(5),
                || sock.exists(),
            );
        }
        s
    }

    fn server(&self) -> &NbdServer {
        self.server.as_ref().unwrap()
    }

    fn sock(&self, name: &str) -> PathBuf {
        self.dir.path("nbd").join(name)
    }

    fn uri(&self, name: &str) -> String {
        format!("nbd+unix:///{name}?socket={}", self.sock(name).display())
    }

    fn tcp_uri(&self, name: &str) -> String {
        format!("nbd://{}/{name}", self.server().tcp_addr().unwrap())
    }
}

fn open(uri: &str) -> NbdDevice {
    NbdDevice::open(uri, Duration::ZERO, &ClientOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

// ----- a raw client ----------------------------------------------------------------------

trait Rw: Read + Write + Send {}
impl<T: Read + Write + Send> Rw for T {}

/// A client that sends exactly the bytes it is told to.
struct Raw(Box<dyn Rw>);

impl Raw {
    fn unix(path: &std::path::Path) -> Raw {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Raw(Box::new(s))
    }

    fn tcp(addr: std::net::SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Raw(Box::new(s))
    }

    fn send(&mut self, b: &[u8]) {
        self.0.write_all(b).unwrap();
    }

    fn read(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        self.0.read_exact(&mut b).unwrap();
        b
    }

    /// Reads the greeting and sends client flags.
    fn greet(&mut self, client_flags: u32) -> Greeting {
        let b = self.read(Greeting::LEN);
        let g = Greeting::decode(b.as_slice().try_into().unwrap()).unwrap();
        self.send(&encode_client_flags(client_flags));
        g
    }

    fn reply(&mut self) -> (u32, OptionReply) {
        let h = self.read(OptionReplyHeader::LEN);
        let h = OptionReplyHeader::decode(h.as_slice().try_into().unwrap()).unwrap();
        let data = self.read(h.length as usize);
        (h.option, OptionReply::parse(h.reply, &data).unwrap())
    }

    /// Sends an option and reads replies up to the final one.
    fn option(&mut self, opt: &ClientOption) -> Vec<OptionReply> {
        self.send(&opt.encode());
        let mut out = Vec::new();
        loop {
            let (o, r) = self.reply();
            assert_eq!(o, opt.code());
            let last = matches!(r, OptionReply::Ack | OptionReply::Error { .. });
            out.push(r);
            if last {
                return out;
            }
        }
    }

    fn go(&mut self, name: &str) -> Vec<OptionReply> {
        self.option(&ClientOption::Go(InfoRequest {
            name: name.into(),
            requests: vec![INFO_BLOCK_SIZE],
        }))
    }

    fn request(&mut self, command: Command, flags: u16, handle: u64, offset: u64, length: u32) {
        self.send(
            &Request {
                flags,
                command,
                handle,
                offset,
                length,
            }
            .encode(),
        );
    }

    /// Reads one simple reply and the data of a successful read of `data_len`.
    fn simple(&mut self, data_len: impl Fn(u64) -> usize) -> (SimpleReply, Vec<u8>) {
        let h = self.read(SimpleReply::LEN);
        let r = SimpleReply::decode(h.as_slice().try_into().unwrap()).unwrap();
        let data = if r.error == 0 {
            self.read(data_len(r.handle))
        } else {
            Vec::new()
        };
        (r, data)
    }

    /// `true` once the server has closed the connection (EOF or reset within 5 s).
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 64];
        loop {
            match self.0.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

fn error_code(replies: &[OptionReply]) -> Option<u32> {
    match replies.last() {
        Some(OptionReply::Error { code, .. }) => Some(*code),
        _ => None,
    }
}

// ----- this crate's client -----------------------------------------------------------------

#[test]
fn our_client_round_trips_through_the_server() {
    let s = Served::new(&[("FRED", 8 * MIB)]);
    let dev = open(&s.uri("FRED"));
    assert_eq!(dev.size(), 8 * MIB);
    assert_eq!(dev.info().sectorsize, 512);
    assert_eq!(dev.info().name, s.uri("FRED"));
    assert_eq!(dev.block_sizes(), (512, 4096, 32 << 20));
    let f = dev.transmission_flags();
    for flag in [
        FLAG_HAS_FLAGS,
        FLAG_SEND_FLUSH,
        FLAG_SEND_FUA,
        FLAG_SEND_TRIM,
        FLAG_SEND_WRITE_ZEROES,
        FLAG_CAN_MULTI_CONN,
    ] {
        assert_ne!(f & flag, 0, "flag {flag:#x}");
    }
    assert_eq!(f & FLAG_READ_ONLY, 0);
    s.fo.fake
        .wait("r1w1 at open", 0, |x| (x.r, x.w, x.e) == (1, 1, 0));

    let data = pattern(MIB as usize, 1);
    dev.write_at(&data, 4096).unwrap();
    assert_eq!(s.fo.dev(0).peek(4096, data.len()), data);
    let mut back = vec![0; data.len()];
    dev.read_at(&mut back, 4096).unwrap();
    assert_eq!(back, data);
    dev.flush().unwrap();
    assert_eq!(s.fo.fake.seen(0).flushes, 1);
    dev.discard(4096, 8192).unwrap();
    assert_eq!(s.fo.fake.seen(0).deletes, [(4096, 8192)]);
    assert_eq!(s.fo.dev(0).peek(4096, 8192), vec![0; 8192]);
    assert_eq!(dev.physpath().unwrap(), s.uri("FRED"));
    assert_eq!(
        dev.read_at(&mut back[..512], 8 * MIB),
        Err(Errno::EINVAL),
        "past the end"
    );
    assert_eq!(
        dev.write_at(&back[..512], 8 * MIB),
        Err(Errno::ENOSPC),
        "past the end"
    );

    // Many requests in flight, answered out of order (each after a delay, from its own
    // thread), on several connections at once (the export allows multi-conn).
    s.fo.fake
        .with(|st| st.knobs.delay = Some(Duration::from_millis(3)));
    let tcp = Arc::new(open(&s.tcp_uri("FRED")));
    let unix = Arc::new(dev);
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let d = if t % 2 == 0 {
                unix.clone()
            } else {
                tcp.clone()
            };
            std::thread::spawn(move || {
                let region = 2 * MIB + u64::from(t) * 256 * 1024;
                for round in 0..10u8 {
                    let data = pattern(64 * 1024, t.wrapping_mul(16).wrapping_add(round));
                    let at = region + u64::from(round % 4) * 64 * 1024;
                    d.write_at(&data, at).unwrap();
                    let mut back = vec![0; data.len()];
                    d.read_at(&mut back, at).unwrap();
                    assert_eq!(back, data, "thread {t} round {round}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    s.fo.fake.with(|st| st.knobs.delay = None);
    s.fo.fake
        .wait("two opens", 0, |x| (x.r, x.w, x.opens) == (2, 2, 2));
    drop(unix);
    drop(tcp);
    s.fo.wait_closed(0);
}

#[test]
fn read_only_when_writing_is_refused() {
    let s = Served::new(&[("FRED", MIB)]);
    s.fo.fake.with(|st| st.knobs.refuse_write = true);
    let dev = open(&s.uri("FRED"));
    assert_ne!(dev.transmission_flags() & FLAG_READ_ONLY, 0);
    s.fo.fake.wait("r1 only", 0, |x| (x.r, x.w) == (1, 0));
    assert_eq!(dev.write_at(&[0; 512], 0), Err(Errno::EPERM));
    let mut b = [0u8; 512];
    dev.read_at(&mut b, 0).unwrap();

    // The server refuses writes too (a client that ignores the flag).
    let mut raw = Raw::unix(&s.sock("FRED"));
    raw.greet(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
    assert_eq!(raw.go("").last(), Some(&OptionReply::Ack));
    raw.request(Command::Write, 0, 7, 0, 512);
    raw.send(&[1; 512]);
    raw.request(Command::Trim, 0, 8, 0, 512);
    for _ in 0..2 {
        let (r, _) = raw.simple(|_| 0);
        assert_eq!(r.error, NBD_EPERM, "handle {}", r.handle);
    }
    drop(raw);
    drop(dev);
    s.fo.wait_closed(0);
    assert_eq!(s.fo.dev(0).peek(0, 512), vec![0; 512]);
}

#[test]
fn a_withered_provider_is_an_error_then_a_hangup() {
    let s = Served::new(&[("FRED", MIB)]);
    let dev = open(&s.uri("FRED"));
    s.fo.fake.wait("open", 0, |x| x.r == 1);
    s.fo.wither(0);
    let sock = s.sock("FRED");
    wait_until("the socket to go", Duration::from_secs(5), || {
        !sock.exists()
    });
    let mut b = [0u8; 512];
    // NBD has no ENXIO: the server says EIO, then hangs up.
    assert_eq!(dev.read_at(&mut b, 0), Err(Errno::EIO));
    wait_until("the connection to end", Duration::from_secs(5), || {
        dev.is_dead()
    });
    assert_eq!(dev.read_at(&mut b, 0), Err(Errno::ENXIO));
    s.fo.wait_closed(0);
    assert!(UnixStream::connect(&sock).is_err());
}

// ----- a raw client: what broken clients send ---------------------------------------------

#[test]
fn requests_are_checked() {
    let size = 4 * MIB;
    let s = Served::new(&[("FRED", size)]);
    let mut raw = Raw::unix(&s.sock("FRED"));
    let g = raw.greet(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
    assert_eq!(g.flags, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
    // Any name selects the provider of a per-provider socket.
    let replies = raw.go("whatever");
    assert_eq!(replies.last(), Some(&OptionReply::Ack));
    assert!(replies.contains(&OptionReply::Info(Info::BlockSize {
        min: 512,
        preferred: 4096,
        max: MAX_PAYLOAD
    })));
    s.fo.dev(0).write_at(&[0xee; 4096], 0).unwrap();

    // (command, flags, offset, length, sends a payload, expected error); handles 100…
    let cases: Vec<(Command, u16, u64, u32, bool, u32)> = vec![
        (Command::Read, 0, 100, 512, false, NBD_EINVAL), // unaligned offset
        (Command::Read, 0, 0, 100, false, NBD_EINVAL),   // unaligned length
        (Command::Read, 0, size, 512, false, NBD_EINVAL), // at the end
        (Command::Read, 0, size - 512, 1024, false, NBD_EINVAL), // across the end
        (Command::Write, 0, size, 512, true, NBD_ENOSPC), // past the end
        (Command::Trim, 0, size, 512, false, NBD_EINVAL), // past the end
        (Command::Other(99), 0, 0, 512, false, NBD_EINVAL), // unknown command
        (Command::Read, CMD_FLAG_DF, 0, 512, false, NBD_EINVAL), // not negotiated
        (
            Command::WriteZeroes,
            CMD_FLAG_FAST_ZERO,
            0,
            512,
            false,
            NBD_EINVAL,
        ),
        (Command::Write, 1 << 9, 0, 512, true, NBD_EINVAL), // unknown flag
        (Command::BlockStatus, 0, 0, 512, false, NBD_EINVAL), // not negotiated
        (Command::Read, 0, 0, 64 << 20, false, NBD_EINVAL), // over the maximum
        (Command::Cache, 0, 0, 4096, false, 0),
        (Command::Read, 0, 0, 0, false, 0),
        (Command::Read, 0, 0, 4096, false, 0),
        (
            Command::WriteZeroes,
            CMD_FLAG_NO_HOLE | CMD_FLAG_FUA,
            0,
            2 << 20,
            false,
            0,
        ),
        (Command::Write, CMD_FLAG_FUA, 3 * MIB, 4096, true, 0),
        (Command::Flush, 0, 0, 0, false, 0),
    ];
    let mut lens = HashMap::new();
    for (i, &(cmd, flags, offset, len, payload, _)) in cases.iter().enumerate() {
        let handle = 100 + i as u64;
        raw.request(cmd, flags, handle, offset, len);
        if payload {
            raw.send(&vec![0x5a; len as usize]);
        }
        lens.insert(
            handle,
            if cmd == Command::Read {
                len as usize
            } else {
                0
            },
        );
    }
    let mut got = HashMap::new();
    for _ in &cases {
        let (r, data) = raw.simple(|h| lens[&h]);
        got.insert(r.handle, (r.error, data));
    }
    for (i, case) in cases.iter().enumerate() {
        let (error, _) = &got[&(100 + i as u64)];
        assert_eq!(*error, case.5, "case {i}: {case:?}");
    }
    assert_eq!(got[&(100 + 14)].1, vec![0xee; 4096], "the read's data");
    assert_eq!(s.fo.dev(0).peek(0, 2 << 20), vec![0; 2 << 20], "zeroed");
    assert_eq!(s.fo.dev(0).peek(3 * MIB as usize, 4096), vec![0x5a; 4096]);
    assert_eq!(s.fo.fake.seen(0).flushes, 3, "two FUAs and a flush");

    // A payload over the limit cannot be skipped: EINVAL, then a hang-up.
    raw.request(Command::Write, 0, 1, 0, MAX_PAYLOAD + 512);
    let (r, _) = raw.simple(|_| 0);
    assert_eq!((r.handle, r.error), (1, NBD_EINVAL));
    assert!(raw.closed());

    // A bad request magic: a hang-up.
    let mut raw = Raw::unix(&s.sock("FRED"));
    raw.greet(FLAG_C_FIXED_NEWSTYLE);
    raw.go("");
    raw.send(&[0xde; Request::LEN]);
    assert!(raw.closed());

    // DISC: every reply in flight comes first, then the hang-up.
    s.fo.fake
        .with(|st| st.knobs.delay = Some(Duration::from_millis(50)));
    let mut raw = Raw::unix(&s.sock("FRED"));
    raw.greet(FLAG_C_FIXED_NEWSTYLE);
    raw.go("");
    for h in 0..4 {
        raw.request(Command::Read, 0, h, h * 4096, 4096);
    }
    raw.request(Command::Disc, 0, 99, 0, 0);
    let mut handles: Vec<u64> = (0..4).map(|_| raw.simple(|_| 4096).0.handle).collect();
    handles.sort_unstable();
    assert_eq!(handles, [0, 1, 2, 3]);
    assert!(raw.closed());
    s.fo.wait_closed(0);
}

#[test]
fn handshake_errors_are_answered_or_end_cleanly() {
    let s = Served::new(&[("FRED", MIB), ("BARNEY", 2 * MIB)]);
    let addr = s.server().tcp_addr().unwrap();
    let mut raw = Raw::tcp(addr);
    raw.greet(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
    let list = raw.option(&ClientOption::List);
    assert_eq!(
        list,
        [
            OptionReply::Server {
                name: "BARNEY".into(),
                details: String::new()
            },
            OptionReply::Server {
                name: "FRED".into(),
                details: String::new()
            },
            OptionReply::Ack
        ]
    );
    let info = raw.option(&ClientOption::Info(InfoRequest {
        name: "BARNEY".into(),
        requests: vec![INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE],
    }));
    assert!(matches!(
        info[0],
        OptionReply::Info(Info::Export { size, .. }) if size == 2 * MIB
    ));
    assert!(info.contains(&OptionReply::Info(Info::Name("BARNEY".into()))));
    assert!(info.contains(&OptionReply::Info(Info::Description(
        "GEOM MULTIPATH provider multipath/BARNEY".into()
    ))));
    assert_eq!(info.last(), Some(&OptionReply::Ack));
    assert_eq!(s.fo.fake.seen(1).opens, 0, "INFO opens nothing");
    assert_eq!(
        error_code(&raw.go("")),
        Some(REP_ERR_UNKNOWN),
        "no default export"
    );
    assert_eq!(error_code(&raw.go("NOPE")), Some(REP_ERR_UNKNOWN));
    let bad_go = ClientOption::Other(RawOption {
        option: OPT_GO,
        data: vec![0, 0, 0, 99, b'x'],
    });
    assert_eq!(error_code(&raw.option(&bad_go)), Some(REP_ERR_INVALID));
    let bad_list = ClientOption::Other(RawOption {
        option: OPT_LIST,
        data: vec![1],
    });
    assert_eq!(error_code(&raw.option(&bad_list)), Some(REP_ERR_INVALID));
    for opt in [
        ClientOption::StructuredReply,
        ClientOption::StartTls,
        ClientOption::Other(RawOption {
            option: 42,
            data: vec![1, 2, 3],
        }),
    ] {
        assert_eq!(
            error_code(&raw.option(&opt)),
            Some(REP_ERR_UNSUP),
            "{opt:?}"
        );
    }
    let huge = ClientOption::Other(RawOption {
        option: OPT_LIST_META_CONTEXT,
        data: vec![0; MAX_OPTION_DATA as usize + 1],
    });
    assert_eq!(error_code(&raw.option(&huge)), Some(REP_ERR_TOO_BIG));
    // Still in step after all that: GO works.
    assert_eq!(raw.go("FRED").last(), Some(&OptionReply::Ack));
    raw.request(Command::Disc, 0, 0, 0, 0);
    assert!(raw.closed());

    // ABORT is acknowledged, then the server hangs up.
    let mut raw = Raw::tcp(addr);
    raw.greet(FLAG_C_FIXED_NEWSTYLE);
    assert_eq!(raw.option(&ClientOption::Abort), [OptionReply::Ack]);
    assert!(raw.closed());

    // Violations end the connection.
    let mut raw = Raw::tcp(addr);
    raw.greet(0x80);
    assert!(raw.closed(), "unknown client flags");
    let mut raw = Raw::tcp(addr);
    raw.read(Greeting::LEN);
    raw.send(&pattern(256, 9));
    assert!(raw.closed(), "garbage");
    let mut raw = Raw::tcp(addr);
    raw.greet(FLAG_C_FIXED_NEWSTYLE);
    raw.send(&[0x11; 16]);
    assert!(raw.closed(), "bad option magic");
    let mut raw = Raw::tcp(addr);
    raw.greet(FLAG_C_FIXED_NEWSTYLE);
    raw.send(&ClientOption::ExportName("NOPE".into()).encode());
    assert!(raw.closed(), "EXPORT_NAME of nothing");
    let mut raw = Raw::tcp(addr);
    raw.greet(FLAG_C_FIXED_NEWSTYLE);
    raw.send(
        &OptionHeader {
            option: OPT_GO,
            length: 12,
        }
        .encode(),
    );
    raw.send(&[0, 0, 0]);
    drop(raw); // hung up in the middle of an option

    // The old way in: EXPORT_NAME, with the 124 zeroes (NO_ZEROES not asked for).
    let mut raw = Raw::tcp(addr);
    raw.greet(FLAG_C_FIXED_NEWSTYLE);
    raw.send(&ClientOption::ExportName("FRED".into()).encode());
    let b = raw.read(ExportNameReply::LONG_LEN);
    let (r, _) = ExportNameReply::decode(&b, false).unwrap();
    assert_eq!(r.size, MIB);
    assert_ne!(r.flags & FLAG_CAN_MULTI_CONN, 0);
    raw.request(Command::Read, 0, 5, 0, 512);
    assert_eq!(
        raw.simple(|_| 512).0,
        SimpleReply {
            error: 0,
            handle: 5
        }
    );
    raw.request(Command::Disc, 0, 6, 0, 0);
    assert!(raw.closed());

    // The server is still fine.
    let dev = open(&s.tcp_uri("BARNEY"));
    assert_eq!(dev.size(), 2 * MIB);
    drop(dev);
    s.fo.wait_closed(0);
    s.fo.wait_closed(1);
}

#[test]
fn an_idle_client_holds_up_nobody() {
    let s = Served::new(&[("FRED", MIB)]);
    // One says nothing at all, one stops in the middle of a request header.
    let mut silent = Raw::unix(&s.sock("FRED"));
    silent.read(Greeting::LEN);
    let mut stalled = Raw::unix(&s.sock("FRED"));
    stalled.greet(FLAG_C_FIXED_NEWSTYLE);
    stalled.go("");
    let read = Request {
        flags: 0,
        command: Command::Read,
        handle: 1,
        offset: 0,
        length: 512,
    };
    stalled.send(&read.encode()[..10]);
    let started = Instant::now();
    let dev = open(&s.uri("FRED"));
    let mut b = vec![0u8; 65536];
    for i in 0..16 {
        dev.write_at(&b, i * 65536).unwrap();
        dev.read_at(&mut b, i * 65536).unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(s.server().connections(), 3);
    drop((silent, stalled, dev));
    s.fo.wait_closed(0);
}

#[test]
fn sockets_follow_the_table() {
    let fo = FakeOwner::new(&[("FRED", MIB), ("BARNEY", MIB)]);
    let barney = fo.geom(1);
    fo.exports.write().unwrap().remove(barney);
    let dir = TempDir::new("socks");
    let nbd = dir.path("nbd");
    std::fs::create_dir(&nbd).unwrap();
    drop(UnixListener::bind(nbd.join("OLD")).unwrap()); // a dead daemon's socket
    let config = NbdConfig {
        unix_dir: Some(nbd.clone()),
        tcp: None,
        ..Default::default()
    };
    let server = serve(config, fo.exports.clone(), fo.owner.clone()).unwrap();
    assert!(!nbd.join("OLD").exists(), "stale sockets are removed");
    let fred = nbd.join("FRED");
    wait_until("FRED's socket", Duration::from_secs(5), || fred.exists());
    let md = std::fs::metadata(&fred).unwrap();
    assert!(md.file_type().is_socket());
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    assert_eq!(server.socket_path("FRED"), Some(fred.clone()));

    // A provider gets its socket once it has a size.
    fo.exports.write().unwrap().add("BARNEY", barney);
    let barney_sock = nbd.join("BARNEY");
    assert!(!barney_sock.exists(), "not before it is sized");
    fo.exports.write().unwrap().resize(barney, MIB, Some(512));
    wait_until("BARNEY's socket", Duration::from_secs(5), || {
        barney_sock.exists()
    });
    fo.exports.write().unwrap().remove(barney);
    wait_until("BARNEY's socket to go", Duration::from_secs(5), || {
        !barney_sock.exists()
    });

    server.stop();
    assert!(!fred.exists(), "stop removes the sockets");
    assert!(nbd.exists(), "a directory it did not make stays");
}

#[test]
fn stopping_closes_connections_and_gives_access_back() {
    let mut s = Served::new(&[("FRED", MIB)]);
    let dev = open(&s.uri("FRED"));
    let mut idle = Raw::unix(&s.sock("FRED"));
    idle.read(Greeting::LEN);
    s.fo.fake.wait("open", 0, |x| x.r == 1);
    // A request still in flight at the stop is answered first.
    s.fo.fake
        .with(|st| st.knobs.delay = Some(Duration::from_millis(200)));
    let dev = Arc::new(dev);
    let reader = {
        let dev = dev.clone();
        std::thread::spawn(move || dev.read_at(&mut [0u8; 512], 0))
    };
    wait_until("the read to be in flight", Duration::from_secs(5), || {
        dev.in_flight() == 1
    });
    let started = Instant::now();
    s.server.take().unwrap().stop();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(reader.join().unwrap(), Ok(()), "answered before the close");
    s.fo.wait_closed(0);
    wait_until("the client to see the end", Duration::from_secs(5), || {
        dev.is_dead()
    });
    assert_eq!(dev.read_at(&mut [0u8; 512], 0), Err(Errno::ENXIO));
    assert!(idle.closed());
    assert!(!s.sock("FRED").exists());
}

// ----- real clients ------------------------------------------------------------------------

#[test]
fn qemu_tools_use_the_export() {
    require!("qemu-img", "qemu-io");
    let s = Served::new(&[("FRED", 16 * MIB)]);
    let uri = s.uri("FRED");
    for u in [
        uri.clone(),
        s.tcp_uri("FRED"),
        format!("nbd+unix:///?socket={}", s.sock("FRED").display()),
    ] {
        let out = run_ok("qemu-img", &["info", "--output=json", &u]);
        assert!(out.contains("\"virtual-size\": 16777216"), "{u}: {out}");
    }
    let out = run_ok(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0xab 0 1M",
            "-c",
            "read -P 0xab 0 1M",
            "-c",
            "write -f -P 0xcd 1M 64k",
            "-c",
            "write -z 2M 64k",
            "-c",
            "discard 3M 64k",
            "-c",
            "flush",
            "-c",
            "read -P 0xcd 1M 64k",
            "-c",
            "read -P 0 2M 64k",
            &uri,
        ],
    );
    assert!(!out.contains("verification failed"), "{out}");
    assert!(out.contains("wrote 1048576/1048576"), "{out}");
    let d = s.fo.dev(0);
    assert_eq!(d.peek(0, MIB as usize), vec![0xab; MIB as usize]);
    assert_eq!(d.peek(MIB as usize, 65536), vec![0xcd; 65536]);
    let seen = s.fo.fake.seen(0);
    assert!(seen.flushes >= 2, "a FUA write and a flush: {seen:?}");
    assert!(seen.deletes.contains(&(3 * MIB, 65536)), "{seen:?}");
    s.fo.wait_closed(0);
}

#[test]
fn nbdinfo_sees_sizes_flags_and_the_list() {
    require!("nbdinfo");
    let s = Served::new(&[("FRED", 16 * MIB), ("BARNEY", MIB)]);
    let out = run_ok("nbdinfo", &["--json", &s.uri("FRED")]);
    for want in [
        "\"export-size\": 16777216",
        "\"block_size_minimum\": 512",
        "\"block_size_preferred\": 4096",
        "\"block_size_maximum\": 33554432",
        "\"can_multi_conn\": true",
        "\"is_read_only\": false",
        "\"can_flush\": true",
        "\"can_fua\": true",
        "\"can_trim\": true",
        "\"can_zero\": true",
    ] {
        assert!(out.contains(want), "no {want} in {out}");
    }
    let list = run_ok(
        "nbdinfo",
        &[
            "--list",
            &format!("nbd://{}", s.server().tcp_addr().unwrap()),
        ],
    );
    assert!(list.contains("export=\"FRED\""), "{list}");
    assert!(list.contains("export=\"BARNEY\""), "{list}");
    s.fo.wait_closed(0);
    s.fo.wait_closed(1);
}

/// FNV-1a, to report what was copied.
fn checksum(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn nbdcopy_copies_in_and_out() {
    require!("nbdcopy");
    let size = 16 * MIB as usize;
    let s = Served::new(&[("FRED", size as u64)]);
    let dir = TempDir::new("copy");
    let input = dir.path("in.img");
    let data = pattern(size, 3);
    std::fs::write(&input, &data).unwrap();
    // In over Unix with four connections (multi-conn), out over TCP.
    run_ok(
        "nbdcopy",
        &["--connections=4", input.to_str().unwrap(), &s.uri("FRED")],
    );
    assert_eq!(checksum(&s.fo.dev(0).peek(0, size)), checksum(&data));
    let output = dir.path("out.img");
    std::fs::File::create(&output)
        .unwrap()
        .set_len(size as u64)
        .unwrap();
    run_ok(
        "nbdcopy",
        &[
            "--connections=4",
            &s.tcp_uri("FRED"),
            output.to_str().unwrap(),
        ],
    );
    let back = std::fs::read(&output).unwrap();
    assert_eq!(back.len(), size);
    assert_eq!(checksum(&back), checksum(&data));
    assert!(s.fo.fake.seen(0).opens >= 2);
    s.fo.wait_closed(0);
}

#[test]
fn fio_nbd_engine_verifies() {
    require!("fio");
    if !run("fio", &["--enghelp=nbd"]).0 {
        println!("SKIPPED: fio has no nbd engine");
        return;
    }
    let s = Served::new(&[("FRED", 16 * MIB)]);
    let out = run_ok(
        "fio",
        &[
            "--name=nbd",
            "--ioengine=nbd",
            &format!("--uri={}", s.uri("FRED")),
            "--rw=randwrite",
            "--bs=4k",
            "--iodepth=16",
            "--size=4M",
            "--verify=crc32c",
            "--do_verify=1",
            "--runtime=5",
        ],
    );
    assert!(out.contains("err= 0"), "{out}");
    s.fo.wait_closed(0);
}

#[test]
fn the_spec_error_values_are_what_goes_out() {
    // NBD has no ENXIO: a withered provider's error is sent as EIO.
    assert_eq!(codec::errno_to_wire(libc::ENXIO), NBD_EIO);
}

/// Issue 11 item 2: 300 idle connections from one user starved every other client (256
/// served, the rest refused until the idle ones were dropped). One client (a TCP address,
/// a Unix peer's uid) may hold at most MAX_PER_CLIENT connections; others are still served.
#[test]
fn one_client_cannot_take_every_connection() {
    use geom_multipath_host::export::nbd::MAX_PER_CLIENT;
    let s = Served::new(&[("FRED", MIB)]);
    let addr = s.server().tcp_addr().unwrap();
    let held: Vec<Raw> = (0..MAX_PER_CLIENT)
        .map(|_| {
            let mut raw = Raw::tcp(addr);
            raw.read(Greeting::LEN); // accepted and greeted
            raw
        })
        .collect();
    let mut extra = TcpStream::connect(addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 1];
    assert_eq!(
        extra.read(&mut b).unwrap_or(0),
        0,
        "refused: closed without a greeting"
    );
    // Another client (here the Unix socket's peer) is still served.
    let mut other = Raw::unix(&s.sock("FRED"));
    other.greet(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
    drop(held);
}

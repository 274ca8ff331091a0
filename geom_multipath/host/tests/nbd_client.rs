//! The NBD client (NBD paths) against real servers — `nbdkit` (memory, with the delay and
//! blocksize-policy filters) and `qemu-nbd`, on Unix sockets and TCP — and against fake
//! servers that send garbage. Deadlines, fencing, a killed server, a cut link, and the
//! supervisor's reconnection. A test whose tool is missing prints `SKIPPED`.

mod nbd_common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use geom_multipath::Errno;
use geom_multipath_host::nbd_proto::*;
use geom_multipath_host::path::device::Device;
use geom_multipath_host::path::nbd::{ClientOptions, NbdDevice, NbdError, NbdPaths};
use nbd_common::*;

fn opts() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        retry_max: Duration::from_millis(200),
        ..ClientOptions::default()
    }
}

fn open(uri: &str, io_timeout: Duration) -> NbdDevice {
    NbdDevice::open(uri, io_timeout, &opts()).unwrap_or_else(|e| panic!("{e}"))
}

/// nbdkit on a Unix socket, ready when this returns.
fn nbdkit_unix(sock: &Path, args: &[&str]) -> Proc {
    let mut all = vec![
        "--foreground",
        "--exit-with-parent",
        "--unix",
        sock.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let mut p = Proc::spawn("nbdkit", &all);
    wait_until("nbdkit's socket", Duration::from_secs(5), || {
        p.assert_running();
        UnixStream::connect(sock).is_ok()
    });
    p
}

fn unix_uri(sock: &Path, export: &str) -> String {
    format!("nbd+unix:///{export}?socket={}", sock.display())
}

fn round_trip(dev: &dyn Device, offset: u64, len: usize, seed: u8) {
    let data = pattern(len, seed);
    dev.write_at(&data, offset).unwrap();
    let mut back = vec![0; len];
    dev.read_at(&mut back, offset).unwrap();
    assert_eq!(back, data);
}

#[test]
fn nbdkit_memory_over_a_unix_socket() {
    require!("nbdkit");
    let dir = TempDir::new("kit");
    let sock = dir.path("s");
    let _kit = nbdkit_unix(&sock, &["memory", "size=16M"]);
    let uri = unix_uri(&sock, "");
    let dev = Arc::new(open(&uri, Duration::ZERO));
    assert_eq!(dev.size(), 16 * MIB);
    assert_eq!(dev.info().name, uri);
    assert_eq!(dev.info().mediasize, 16 * MIB);
    assert_eq!(dev.info().sectorsize, 512);
    assert_eq!(dev.physpath().unwrap(), uri);
    round_trip(&*dev, 0, MIB as usize, 1);
    round_trip(&*dev, 15 * MIB, MIB as usize, 2);
    dev.flush().unwrap();
    dev.discard(0, 65536).unwrap();
    let mut b = vec![1u8; 65536];
    dev.read_at(&mut b, 0).unwrap();
    assert_eq!(b, vec![0; 65536], "trimmed memory reads as zeroes");
    assert_eq!(
        dev.read_at(&mut b[..100], 0),
        Err(Errno::EINVAL),
        "unaligned"
    );

    // Many requests in flight from many threads.
    let threads: Vec<JoinHandle<()>> = (0..16u8)
        .map(|t| {
            let dev = dev.clone();
            std::thread::spawn(move || {
                for round in 0..8u8 {
                    let at = 4 * MIB + u64::from(t) * 256 * 1024;
                    round_trip(&*dev, at, 128 * 1024, t ^ (round << 4));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(dev.in_flight(), 0);
}

#[test]
fn block_size_constraints_are_obeyed() {
    require!("nbdkit");
    let dir = TempDir::new("bs");
    let sock = dir.path("s");
    let _kit = nbdkit_unix(
        &sock,
        &[
            "--filter=blocksize-policy",
            "memory",
            "size=8M",
            "blocksize-minimum=4096",
            "blocksize-preferred=65536",
            "blocksize-maximum=131072",
            "blocksize-error-policy=error",
        ],
    );
    let dev = open(&unix_uri(&sock, ""), Duration::ZERO);
    assert_eq!(dev.block_sizes(), (4096, 65536, 131072));
    assert_eq!(dev.info().sectorsize, 4096);
    assert_eq!(dev.info().stripesize, 65536);
    // 1 MiB goes out as eight 128 KiB requests: the server refuses anything larger.
    round_trip(&dev, 0, MIB as usize, 5);
    assert_eq!(
        dev.write_at(&[0; 512], 0),
        Err(Errno::EINVAL),
        "below the minimum"
    );
}

/// qemu-nbd serving `image`, over TCP (`port`) or a Unix socket.
fn qemu_nbd(image: &Path, port: Option<u16>, sock: Option<&Path>) -> Proc {
    let port_s = port.map(|p| p.to_string());
    let mut args = vec!["-f", "raw", "-x", "disk", "-t", "-e", "4"];
    if let Some(p) = &port_s {
        args.extend_from_slice(&["-b", "127.0.0.1", "-p", p]);
    }
    if let Some(s) = sock {
        args.extend_from_slice(&["-k", s.to_str().unwrap()]);
    }
    args.push(image.to_str().unwrap());
    let mut p = Proc::spawn("qemu-nbd", &args);
    wait_until("qemu-nbd to listen", Duration::from_secs(5), || {
        p.assert_running();
        match (port, sock) {
            (Some(port), _) => std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            (_, Some(s)) => UnixStream::connect(s).is_ok(),
            _ => unreachable!(),
        }
    });
    p
}

#[test]
fn qemu_nbd_over_tcp_and_a_unix_socket() {
    require!("qemu-nbd");
    let dir = TempDir::new("qemu");
    let image = dir.path("disk.img");
    let data = pattern(8 * MIB as usize, 7);
    std::fs::write(&image, &data).unwrap();
    let port = free_port();
    let _tcp = qemu_nbd(&image, Some(port), None);
    let uri = format!("nbd://127.0.0.1:{port}/disk");
    let dev = open(&uri, Duration::from_secs(10));
    assert_eq!(dev.size(), 8 * MIB);
    let mut back = vec![0; MIB as usize];
    dev.read_at(&mut back, MIB).unwrap();
    assert_eq!(back, data[MIB as usize..2 * MIB as usize]);
    let new = pattern(65536, 99);
    dev.write_at(&new, 4096).unwrap();
    dev.flush().unwrap();
    let on_disk = std::fs::read(&image).unwrap();
    assert_eq!(
        on_disk[4096..4096 + 65536],
        new[..],
        "the write reached the image"
    );

    // A name the server does not have is refused, with the server's reason.
    let err = NbdDevice::open(
        &format!("nbd://127.0.0.1:{port}/nope"),
        Duration::ZERO,
        &opts(),
    )
    .unwrap_err();
    assert!(matches!(err, NbdError::Refused { .. }), "{err}");
    assert_eq!(err.errno(), Errno(libc::ENOENT));
    println!("refused: {err}");

    // Nothing listening: a connection error, at once.
    let closed = free_port();
    let err = NbdDevice::open(
        &format!("nbd://127.0.0.1:{closed}/x"),
        Duration::ZERO,
        &opts(),
    )
    .unwrap_err();
    assert_eq!(err.errno(), Errno(libc::ECONNREFUSED), "{err}");

    drop(dev);
    let sock = dir.path("q.sock");
    let _unix = qemu_nbd(&image, None, Some(&sock));
    let dev = open(&unix_uri(&sock, "disk"), Duration::ZERO);
    dev.read_at(&mut back[..65536], 4096).unwrap();
    assert_eq!(back[..65536], new[..]);
}

#[test]
fn a_late_reply_is_enxio_at_the_deadline() {
    require!("nbdkit");
    let dir = TempDir::new("late");
    let sock = dir.path("s");
    let _kit = nbdkit_unix(&sock, &["--filter=delay", "memory", "size=8M", "rdelay=2"]);
    let dev = open(&unix_uri(&sock, ""), Duration::from_millis(300));
    let mut b = vec![0u8; 4096];
    let started = Instant::now();
    assert_eq!(dev.read_at(&mut b, 0), Err(Errno::ENXIO));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    // The connection lives on: writes are not delayed.
    assert!(!dev.is_dead());
    dev.write_at(&pattern(4096, 1), 8192).unwrap();
    // The late reply is consumed and dropped when it comes.
    wait_until("the late reply", Duration::from_secs(5), || {
        dev.in_flight() == 0
    });
    assert!(!dev.is_dead());
}

#[test]
fn fence_fails_in_flight_requests_at_once() {
    require!("nbdkit");
    let dir = TempDir::new("fence");
    let sock = dir.path("s");
    let _kit = nbdkit_unix(&sock, &["--filter=delay", "memory", "size=8M", "rdelay=10"]);
    let dev = Arc::new(open(&unix_uri(&sock, ""), Duration::ZERO));
    let reader = {
        let dev = dev.clone();
        std::thread::spawn(move || {
            let mut b = vec![0u8; 4096];
            let r = dev.read_at(&mut b, 0);
            (r, Instant::now())
        })
    };
    wait_until("the read to be in flight", Duration::from_secs(5), || {
        dev.in_flight() == 1
    });
    let fenced = Instant::now();
    dev.fence();
    let (r, done) = reader.join().unwrap();
    assert_eq!(r, Err(Errno::ENXIO));
    assert!(done.duration_since(fenced) < Duration::from_millis(500));
    assert!(dev.is_dead());
    let started = Instant::now();
    assert_eq!(dev.write_at(&[0; 512], 0), Err(Errno::ENXIO));
    assert_eq!(dev.flush(), Err(Errno::ENXIO));
    assert!(started.elapsed() < Duration::from_millis(100));
}

#[test]
fn a_killed_server_fails_requests_and_the_supervisor_reconnects() {
    require!("nbdkit");
    let dir = TempDir::new("kill");
    let sock = dir.path("s");
    let uri = unix_uri(&sock, "");

    // Requests in flight when the server dies fail at once.
    let mut kit = nbdkit_unix(&sock, &["--filter=delay", "memory", "size=8M", "rdelay=10"]);
    let dev = Arc::new(open(&uri, Duration::ZERO));
    let reader = {
        let dev = dev.clone();
        std::thread::spawn(move || dev.read_at(&mut [0u8; 4096], 0))
    };
    wait_until("the read to be in flight", Duration::from_secs(5), || {
        dev.in_flight() == 1
    });
    let killed = Instant::now();
    kit.kill();
    assert_eq!(reader.join().unwrap(), Err(Errno::ENXIO));
    assert!(killed.elapsed() < Duration::from_secs(2));
    assert!(dev.is_dead());
    let _ = std::fs::remove_file(&sock);

    // The supervisor: down when the server dies, up again when it is back.
    let fo = FakeOwner::new(&[]);
    let mut kit = nbdkit_unix(&sock, &["memory", "size=8M"]);
    let mut paths = NbdPaths::with_options(opts());
    let (info, dev) = paths
        .attach(&uri, fo.owner.clone(), Duration::ZERO)
        .unwrap();
    assert_eq!(
        (info.name.as_str(), info.mediasize),
        (uri.as_str(), 8 * MIB)
    );
    assert!(paths.is_attached(&uri));
    round_trip(&*dev, 0, 65536, 1);
    kit.kill();
    let _ = std::fs::remove_file(&sock);
    let (name, up) = fo
        .events
        .recv_timeout(Duration::from_secs(5))
        .expect("ProviderDown");
    assert_eq!(name, uri);
    assert!(up.is_none(), "ProviderDown first");
    assert_eq!(dev.read_at(&mut [0u8; 512], 0), Err(Errno::ENXIO));
    let _kit = nbdkit_unix(&sock, &["memory", "size=8M"]);
    let (name, up) = fo
        .events
        .recv_timeout(Duration::from_secs(5))
        .expect("ProviderUp");
    assert_eq!(name, uri);
    let (info2, dev2) = up.expect("ProviderUp with a device");
    assert_eq!(info2, info);
    round_trip(&*dev2, 4096, 65536, 2);

    // Detached: closed, and nothing more is sent.
    assert!(paths.detach(&uri));
    assert!(!paths.is_attached(&uri));
    assert_eq!(dev2.read_at(&mut [0u8; 512], 0), Err(Errno::ENXIO));
    assert!(fo.events.recv_timeout(Duration::from_millis(300)).is_err());
}

/// A network namespace reached over a veth pair; removed (with the server in it) on drop.
struct NetNs {
    name: String,
    host_if: String,
    /// The first three octets of its /30.
    net: String,
    server: Option<Proc>,
}

impl NetNs {
    /// Namespace, veth pair, addresses; `None` (after printing SKIPPED) if that fails.
    fn new() -> Option<NetNs> {
        let id = std::process::id() % 100_000;
        let ns = NetNs {
            name: format!("gmpnbd{id}"),
            host_if: format!("gmpa{id}"),
            net: format!("10.{}.{}", 200 + id % 50, (id / 50) % 250),
            server: None,
        };
        let peer = format!("gmpb{id}");
        let (name, host_if, net) = (ns.name.as_str(), ns.host_if.as_str(), ns.net.as_str());
        let (host_addr, peer_addr) = (format!("{net}.1/30"), format!("{net}.2/30"));
        let steps: [&[&str]; 8] = [
            &["netns", "add", name],
            &[
                "link", "add", host_if, "type", "veth", "peer", "name", &peer,
            ],
            &["link", "set", &peer, "netns", name],
            &["addr", "add", &host_addr, "dev", host_if],
            &["link", "set", host_if, "up"],
            &["-n", name, "addr", "add", &peer_addr, "dev", &peer],
            &["-n", name, "link", "set", &peer, "up"],
            &["-n", name, "link", "set", "lo", "up"],
        ];
        for args in steps {
            let (ok, _, err) = run("ip", args);
            if !ok {
                println!("SKIPPED: ip {}: {err}", args.join(" "));
                return None;
            }
        }
        Some(ns)
    }

    /// The server's address, inside the namespace.
    fn addr(&self) -> String {
        format!("{}.2", self.net)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Some(mut p) = self.server.take() {
            p.kill();
        }
        let _ = run("ip", &["link", "del", &self.host_if]);
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

#[test]
fn a_cut_link_is_an_error_within_seconds() {
    require!("nbdkit", "ip", "tc");
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED: needs root (network namespace)");
        return;
    }
    let Some(mut ns) = NetNs::new() else {
        return;
    };
    let addr = ns.addr();
    let mut kit = Proc::spawn(
        "ip",
        &[
            "netns",
            "exec",
            &ns.name,
            "nbdkit",
            "--foreground",
            "--exit-with-parent",
            "-i",
            &addr,
            "-p",
            "10809",
            "memory",
            "size=8M",
        ],
    );
    let target = format!("{addr}:10809");
    wait_until("nbdkit in the namespace", Duration::from_secs(5), || {
        kit.assert_running();
        std::net::TcpStream::connect(&target).is_ok()
    });
    ns.server = Some(kit);
    // No I/O deadline: only TCP_USER_TIMEOUT and keepalive stand between a cut link and
    // a hang of many minutes.
    let dev = open(&format!("nbd://{addr}/"), Duration::ZERO);
    round_trip(&dev, 0, 65536, 3);
    // Cut: everything the host sends on the link is dropped (silence, not a reset).
    let (ok, _, err) = run(
        "tc",
        &[
            "qdisc",
            "add",
            "dev",
            &ns.host_if,
            "root",
            "pfifo",
            "limit",
            "0",
        ],
    );
    assert!(ok, "tc: {err}");
    let started = Instant::now();
    let r = dev.write_at(&pattern(MIB as usize, 4), 0);
    let took = started.elapsed();
    println!("a write over a cut link failed after {took:?}");
    assert_eq!(r, Err(Errno::ENXIO));
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert!(dev.is_dead());
}

// ----- fake servers -------------------------------------------------------------------------

/// A server on a fresh Unix socket that runs `script` on its first connection.
struct FakeServer {
    _dir: TempDir,
    uri: String,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    fn new(script: impl FnOnce(UnixStream) + Send + 'static) -> FakeServer {
        let dir = TempDir::new("fake");
        let sock: PathBuf = dir.path("s");
        let l = UnixListener::bind(&sock).unwrap();
        let thread = std::thread::spawn(move || {
            if let Ok((s, _)) = l.accept() {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                script(s);
            }
        });
        FakeServer {
            uri: unix_uri(&sock, "x"),
            _dir: dir,
            thread: Some(thread),
        }
    }

    fn connect(&self) -> Result<NbdDevice, NbdError> {
        let o = ClientOptions {
            connect_timeout: Duration::from_secs(1),
            ..ClientOptions::default()
        };
        NbdDevice::open(&self.uri, Duration::from_secs(2), &o)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_exact(s: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut b = vec![0; n];
    let _ = s.read_exact(&mut b);
    b
}

/// The server side of a handshake up to the client's first option.
fn greet(s: &mut UnixStream, flags: u16) -> (u32, Vec<u8>) {
    s.write_all(&Greeting { flags }.encode()).unwrap();
    read_exact(s, 4);
    let h = read_exact(s, OptionHeader::LEN);
    let h = OptionHeader::decode(h.as_slice().try_into().unwrap()).unwrap();
    (h.option, read_exact(s, h.length as usize))
}

/// A good GO answer: export of 1 MiB with flush, then ACK.
fn go_ok(s: &mut UnixStream) {
    let (opt, _) = greet(s, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
    assert_eq!(opt, OPT_GO);
    let mut b = OptionReply::Info(Info::Export {
        size: MIB,
        flags: FLAG_HAS_FLAGS | FLAG_SEND_FLUSH,
    })
    .encode(OPT_GO);
    b.extend(OptionReply::Ack.encode(OPT_GO));
    s.write_all(&b).unwrap();
}

fn request(s: &mut UnixStream) -> Request {
    let h = read_exact(s, Request::LEN);
    let r = Request::decode(h.as_slice().try_into().unwrap()).unwrap();
    read_exact(s, r.payload().unwrap());
    r
}

fn reply(s: &mut UnixStream, error: u32, handle: u64) {
    let _ = s.write_all(&SimpleReply { error, handle }.encode());
}

fn handshake_error(script: impl FnOnce(UnixStream) + Send + 'static) -> NbdError {
    let f = FakeServer::new(script);
    f.connect().expect_err("the handshake must fail")
}

#[test]
fn broken_servers_give_errors_not_panics() {
    let e = handshake_error(|mut s| {
        let _ = s.write_all(&pattern(100, 1));
    });
    assert!(matches!(e, NbdError::Protocol { .. }), "{e}");
    let e = handshake_error(|mut s| {
        let mut b = NBDMAGIC.to_be_bytes().to_vec();
        b.extend(OLDSTYLE_MAGIC.to_be_bytes());
        b.extend([0; 2]);
        let _ = s.write_all(&b);
    });
    assert!(e.to_string().contains("oldstyle"), "{e}");
    let e = handshake_error(|mut s| {
        let _ = s.write_all(&Greeting { flags: 1 }.encode()[..10]);
    });
    assert!(matches!(e, NbdError::Io { .. }), "{e}");
    let e = handshake_error(|mut s| {
        greet(&mut s, 1);
        let _ = s.write_all(
            &OptionReply::Info(Info::Other {
                info: 0,
                data: vec![0; 3],
            })
            .encode(OPT_GO),
        );
    });
    assert!(
        matches!(e, NbdError::Protocol { .. }),
        "short NBD_INFO_EXPORT: {e}"
    );
    let e = handshake_error(|mut s| {
        greet(&mut s, 1);
        let _ = s.write_all(
            &OptionReply::Error {
                code: REP_ERR_UNKNOWN,
                message: "nope".into(),
            }
            .encode(OPT_GO),
        );
    });
    assert_eq!(e.errno(), Errno(libc::ENOENT));
    assert!(e.to_string().contains("NBD_REP_ERR_UNKNOWN nope"), "{e}");
    let e = handshake_error(|mut s| {
        greet(&mut s, 1);
        let _ = s.write_all(&OptionReply::Ack.encode(OPT_GO));
    });
    assert!(e.to_string().contains("without NBD_INFO_EXPORT"), "{e}");
    let e = handshake_error(|mut s| {
        greet(&mut s, 1);
        let h = OptionReplyHeader {
            option: OPT_GO,
            reply: REP_INFO,
            length: u32::MAX,
        };
        let _ = s.write_all(&h.encode());
    });
    assert!(e.to_string().contains("over the limit"), "{e}");
    let e = handshake_error(|mut s| {
        greet(&mut s, 1);
        let _ = s.write_all(&OptionReply::Ack.encode(OPT_LIST));
    });
    assert!(
        matches!(e, NbdError::Protocol { .. }),
        "a reply to another option: {e}"
    );
    // A server that stops talking: the connect timeout.
    let started = Instant::now();
    let e = handshake_error(|mut s| {
        greet(&mut s, 1);
        std::thread::sleep(Duration::from_millis(1500));
    });
    assert_eq!(e.errno(), Errno(libc::ETIMEDOUT), "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Random servers.
    for seed in 0..20u8 {
        let f = FakeServer::new(move |mut s| {
            let mut b = Greeting { flags: 3 }.encode().to_vec();
            b.extend(pattern(40 + usize::from(seed) * 7, seed));
            let _ = s.write_all(&b);
        });
        assert!(f.connect().is_err(), "seed {seed}");
    }
}

#[test]
fn old_servers_and_bad_replies_in_transmission() {
    // Not fixed newstyle: NBD_OPT_EXPORT_NAME straight away, with the 124 zeroes; then a
    // reply with a bad magic ends the connection.
    let f = FakeServer::new(|mut s| {
        let (opt, name) = greet(&mut s, 0);
        assert_eq!((opt, name.as_slice()), (OPT_EXPORT_NAME, b"x".as_slice()));
        let _ = s.write_all(
            &ExportNameReply {
                size: MIB,
                flags: FLAG_HAS_FLAGS,
            }
            .encode(false),
        );
        let r = request(&mut s);
        let mut bad = SimpleReply {
            error: 0,
            handle: r.handle,
        }
        .encode();
        bad[0] ^= 0xff;
        let _ = s.write_all(&bad);
        read_exact(&mut s, 1);
    });
    let dev = f.connect().unwrap();
    assert_eq!(dev.size(), MIB);
    assert_eq!(dev.flush(), Ok(()), "no SEND_FLUSH: nothing to do");
    assert_eq!(dev.discard(0, 512), Err(Errno(libc::EOPNOTSUPP)));
    assert_eq!(dev.read_at(&mut [0u8; 512], 0), Err(Errno::ENXIO));
    assert!(dev.is_dead());
    drop(dev);

    // GO unsupported: falls back to EXPORT_NAME (no zeroes); then a reply to a handle
    // never sent.
    let f = FakeServer::new(|mut s| {
        let (opt, _) = greet(&mut s, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
        assert_eq!(opt, OPT_GO);
        let _ = s.write_all(
            &OptionReply::Error {
                code: REP_ERR_UNSUP,
                message: String::new(),
            }
            .encode(OPT_GO),
        );
        let h = read_exact(&mut s, OptionHeader::LEN);
        let h = OptionHeader::decode(h.as_slice().try_into().unwrap()).unwrap();
        assert_eq!(h.option, OPT_EXPORT_NAME);
        read_exact(&mut s, h.length as usize);
        let _ = s.write_all(
            &ExportNameReply {
                size: 2 * MIB,
                flags: FLAG_HAS_FLAGS | FLAG_SEND_FLUSH,
            }
            .encode(true),
        );
        let r = request(&mut s);
        reply(&mut s, 0, r.handle + 1000);
        read_exact(&mut s, 1);
    });
    let dev = f.connect().unwrap();
    assert_eq!(dev.size(), 2 * MIB);
    assert_eq!(dev.flush(), Err(Errno::ENXIO));
    assert!(dev.is_dead());
    drop(dev);

    // Errors pass through; a structured reply (never negotiated) ends the connection.
    let f = FakeServer::new(|mut s| {
        go_ok(&mut s);
        let r = request(&mut s);
        reply(&mut s, NBD_EIO, r.handle);
        let r = request(&mut s);
        reply(&mut s, NBD_ENOSPC, r.handle);
        let r = request(&mut s);
        let mut b = STRUCTURED_REPLY_MAGIC.to_be_bytes().to_vec();
        b.extend([0, 1, 0, 0]);
        b.extend(r.handle.to_be_bytes());
        b.extend(0u32.to_be_bytes());
        let _ = s.write_all(&b);
        read_exact(&mut s, 1);
    });
    let dev = f.connect().unwrap();
    assert_eq!(dev.write_at(&[1; 512], 0), Err(Errno::EIO));
    assert_eq!(dev.write_at(&[1; 512], 0), Err(Errno::ENOSPC));
    assert!(!dev.is_dead());
    assert_eq!(dev.read_at(&mut [0u8; 512], 0), Err(Errno::ENXIO));
    assert!(dev.is_dead());
    drop(dev);

    // A read reply cut short; and ESHUTDOWN, which ends the connection.
    let f = FakeServer::new(|mut s| {
        go_ok(&mut s);
        let r = request(&mut s);
        reply(&mut s, 0, r.handle);
        let _ = s.write_all(&[0; 100]);
    });
    let dev = f.connect().unwrap();
    assert_eq!(dev.read_at(&mut [0u8; 512], 0), Err(Errno::ENXIO));
    drop(dev);
    let f = FakeServer::new(|mut s| {
        go_ok(&mut s);
        let r = request(&mut s);
        reply(&mut s, NBD_ESHUTDOWN, r.handle);
        read_exact(&mut s, 1);
    });
    let dev = f.connect().unwrap();
    assert_eq!(dev.read_at(&mut [0u8; 512], 0), Err(Errno::ENXIO));
    wait_until("the connection to end", Duration::from_secs(2), || {
        dev.is_dead()
    });
}

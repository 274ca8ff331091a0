//! Issue 11's reproductions, each through the built tools and a real daemon: what a new
//! user or an attacker tried that the daemon or the tools got wrong (a read-only path
//! accepted, a provider named twice, a non-root caller told to `load`, a daemon holding
//! the starter's descriptors, a tunables file with a stray byte). Each test fails on the
//! code before the fix.

use std::io::Read;
use std::process::{Command, Stdio};

use gmultipath_e2e::{bin, root_or_skip, run, wait_until, Daemon, Loop, Out, Scratch, DEADLINE};

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

/// A daemon `gmultipath load` started in the background on a scratch directory, unloaded
/// when dropped.
struct Background {
    env: Vec<(&'static str, String)>,
    scratch: Scratch,
}

impl Background {
    fn env_with(scratch: Scratch, extra: &[(&'static str, String)]) -> Background {
        let mut env = Daemon::env_on(&scratch);
        env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        env.extend(extra.iter().cloned());
        Background { env, scratch }
    }

    fn gmultipath(&self, args: &[&str]) -> Out {
        run(&bin("gmultipath"), args, &self.env)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.dir.join("gmultipathd-bg.log")).unwrap_or_default()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.gmultipath(&["unload"]);
        let socket = self.scratch.dir.join("run/geom.ctl");
        wait_until("the background daemon to go", || !socket.exists());
    }
}

/// Item 6: `bash -c 'exec 9>&1; gmultipath load' | cat` never saw EOF, because the daemon
/// kept the starter's fd 9 (the pipe's write end) for the rest of its life.
#[test]
fn the_daemon_keeps_none_of_its_starters_descriptors() {
    if !root_or_skip("inherited_descriptors") {
        return;
    }
    let bg = Background::env_with(Scratch::new("fds"), &[]);
    let mut child = Command::new("/bin/sh")
        .args([
            "-c",
            "exec 9>&1 8>&1; exec \"$0\" load",
            &bin("gmultipath").display().to_string(),
        ])
        .envs(bg.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh");
    let mut stdout = child.stdout.take().expect("piped");
    let (done, eof) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        let _ = done.send(all);
    });
    let status = child.wait().expect("load");
    assert!(status.success(), "load: {status}: {}", bg.log());
    assert!(
        eof.recv_timeout(DEADLINE).is_ok(),
        "the pipe stayed open after load returned: the daemon holds its write end"
    );
    assert_eq!(bg.gmultipath(&["status"]).code, 0, "the daemon runs");
}

/// Item 7: one byte that is not UTF-8 in the tunables file stopped the daemon from
/// starting, and what it said went to a temporary file that was deleted. The bad line is
/// skipped, the rest applies, and the remark is in the log file gmultipathd(8) names.
#[test]
fn a_stray_byte_in_the_tunables_file_is_skipped_and_logged() {
    if !root_or_skip("tunables_not_utf8") {
        return;
    }
    let scratch = Scratch::new("conf");
    let conf = scratch.dir.join("c.conf");
    std::fs::write(&conf, b"x\n\xff\nkern.geom.multipath.debug=1\n").unwrap();
    let bg = Background::env_with(scratch, &[("GMULTIPATH_CONF", conf.display().to_string())]);
    let load = bg.gmultipath(&["load"]);
    assert_eq!(load.code, 0, "{load:?}");
    let debug = run(
        &bin("mpsysctl"),
        &["-n", "kern.geom.multipath.debug"],
        &bg.env,
    );
    assert_eq!(debug.ok(), "1\n");
    let log = bg.log();
    assert!(
        log.lines().any(|l| l.ends_with(&format!(
            "gmultipathd: {}:2: not UTF-8 text",
            conf.display()
        ))),
        "{log}"
    );
}

/// The `gmultipath-demo.*` directories in /var/tmp.
fn demo_dirs() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir("/var/tmp")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("gmultipath-demo."))
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Item 10: `tests/demo.sh` refused to run beside another daemon but left an empty
/// `/var/tmp/gmultipath-demo.*` behind.
#[test]
fn the_demo_refusing_to_run_leaves_nothing_behind() {
    if !root_or_skip("demo_refusal") {
        return;
    }
    let scratch = Scratch::new("demo");
    let d = Daemon::start(&scratch);
    let before = demo_dirs();
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo.sh");
    let out = run(&demo, &[], &d.env());
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("a gmultipathd is already running"),
        "{out:?}"
    );
    assert_eq!(demo_dirs(), before);
}

/// `gmultipath args...` as uid/gid 65534 with no groups.
fn gmultipath_as_nobody(env: &[(&'static str, String)], args: &[&str]) -> Out {
    let mut all = vec!["--reuid=65534", "--regid=65534", "--clear-groups", "--"];
    let gmultipath = bin("gmultipath").display().to_string();
    all.push(&gmultipath);
    all.extend_from_slice(args);
    run(std::path::Path::new("setpriv"), &all, env)
}

/// Item 9: a busy daemon and one this user may not use both said "Command 'status' not
/// available; try 'load' first." (and `load` tried to start a second daemon, blaming the
/// mount point); a socket opened up by hand gave "Broken pipe". Each now has its own
/// message and exit status; "not running" keeps FreeBSD's words.
#[test]
fn busy_denied_and_not_running_are_told_apart() {
    if !root_or_skip("busy_denied") {
        return;
    }
    let scratch = Scratch::new("reach");
    let socket = scratch.dir.join("run/geom.ctl");
    let env = Daemon::env_on(&scratch);
    let status = run(&bin("gmultipath"), &["status"], &env);
    assert_eq!(
        (status.code, status.stderr.as_str()),
        (
            1,
            "gmultipath: Command 'status' not available; try 'load' first.\n"
        )
    );
    let d = Daemon::start(&scratch);
    let denied = format!(
        "gmultipath: gmultipathd at {}: Permission denied.\n",
        socket.display()
    );
    // The scratch directory and the socket's are root's and closed to others.
    for args in [
        &["status"][..],
        &["unload"],
        &["load"],
        &["fail", "FRED", "x"],
    ] {
        let out = gmultipath_as_nobody(&d.env(), args);
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (77, denied.as_str()),
            "{args:?}"
        );
    }
    // Opened up by hand: the daemon itself refuses a caller that is not root.
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [
        (&scratch.dir, 0o755),
        (&scratch.dir.join("run"), 0o755),
        (&socket, 0o666),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    for args in [&["status"][..], &["fail", "FRED", "x"]] {
        let out = gmultipath_as_nobody(&d.env(), args);
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (77, denied.as_str()),
            "{args:?}"
        );
    }
    // One process may hold only 16 connections: the 17th is refused as busy for it alone,
    // and everybody else is still served.
    let mine: Vec<_> = (0..17)
        .map(|_| std::os::unix::net::UnixStream::connect(&socket).unwrap())
        .collect();
    wait_until("the 17th connection to be refused", || {
        let mut last = mine.last().unwrap();
        let mut b = [0u8; 64];
        let _ = last.set_read_timeout(Some(std::time::Duration::from_millis(100)));
        matches!(std::io::Read::read(&mut last, &mut b), Ok(n) if n > 0)
    });
    assert_eq!(d.gmultipath(&["status"]).code, 0, "others are served");
    drop(mine);
    // Every connection the daemon serves at once is taken by idle clients (4 processes).
    let idle: Vec<Holder> = (0..4).map(|_| Holder::start(&socket, 16)).collect();
    let busy = format!(
        "gmultipath: gmultipathd at {} is busy (too many connections); try again later.\n",
        socket.display()
    );
    wait_until("the daemon to be busy", || {
        d.gmultipath(&["status"]).code == 75
    });
    for args in [&["status"][..], &["load"]] {
        let out = d.gmultipath(args);
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (75, busy.as_str()),
            "{args:?}"
        );
    }
    drop(idle);
    wait_until("the daemon to serve again", || {
        d.gmultipath(&["status"]).code == 0
    });
}

/// Item 8: `create ä日本` worked, but `status` showed `multipath/Ã¤æ¥æ¬` and `list ä日本` /
/// `status ä日本` could not find it; `create ééééééééé` was refused as "longer than 15
/// characters" (it is 9 characters, 18 bytes).
#[test]
fn a_utf8_name_is_shown_found_and_counted_in_bytes() {
    if !root_or_skip("utf8_names") {
        return;
    }
    let scratch = Scratch::new("utf8");
    let img = scratch.image("disk.img", 16 * MIB);
    let a = Loop::attach(&img);
    let d = Daemon::start(&scratch);
    let long = d.gmultipath(&["create", "ééééééééé", &a.name]);
    assert_eq!(
        (long.code, long.stderr.as_str()),
        (
            1,
            "gmultipath: Device ééééééééé is invalid: name is longer than 15 bytes\n"
        )
    );
    d.gmultipath(&["create", "ä日本", &a.name]).ok();
    let status = d.gmultipath(&["status", "-s", "ä日本"]);
    assert_eq!(
        status.ok(),
        format!("multipath/ä日本  DEGRADED  {} (ACTIVE)\n", a.name)
    );
    assert!(d
        .gmultipath(&["list", "ä日本"])
        .ok()
        .starts_with("Geom name: ä日本\n"));
    assert!(d.file("ä日本").exists(), "the export has the same name");
    d.gmultipath(&["destroy", "ä日本"]).ok();
}

/// Writes one 4 KiB block of `byte` at block `block` of `file` with O_DIRECT (dd);
/// returns how long it took.
fn write_block(file: &std::path::Path, block: u64, byte: u8) -> std::time::Duration {
    let started = std::time::Instant::now();
    let out = run(
        std::path::Path::new("/bin/sh"),
        &[
            "-c",
            &format!(
                "head -c 4096 /dev/zero | tr '\\0' '{}' | dd of={} bs=4k seek={block} count=1 \
                 oflag=direct conv=notrunc status=none",
                byte as char,
                file.display()
            ),
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    started.elapsed()
}

/// The first byte of block `block` of `file`, read with O_DIRECT (dd).
fn read_block(file: &std::path::Path, block: u64) -> u8 {
    let out = run(
        std::path::Path::new("dd"),
        &[
            &format!("if={}", file.display()),
            "bs=4k",
            &format!("skip={block}"),
            "count=1",
            "iflag=direct",
            "status=none",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout.bytes().next().expect("one block")
}

/// Item 3, the red-team reproduction: `io_timeout=1`, the active path delays every write
/// 4 s (`gnop configure -d 4000 -x 100`); write X to block 0, then Y. Before, X was
/// re-driven on the other path after 1 s and acknowledged, Y was acknowledged, a read
/// returned Y, and 3 s later X's first copy landed: block 0 read X. Now X is acknowledged
/// only once its first copy has answered (so `write X` takes the whole delay), and block 0
/// reads Y from then on.
#[test]
fn an_acknowledged_write_is_never_overwritten_by_its_stale_first_copy() {
    if !root_or_skip("stale_write") {
        return;
    }
    let scratch = Scratch::new("stale");
    let img = scratch.image("disk.img", 16 * MIB);
    let (a, b) = (Loop::attach(&img), Loop::attach(&img));
    let d = Daemon::start(&scratch);
    d.gnop(&["create", "-o", "4096", &a.name, &b.name]).ok();
    let (na, nb) = (format!("{}.nop", a.name), format!("{}.nop", b.name));
    d.gmultipath(&["label", "FRED", &na, &nb]).ok();
    d.wait_status("FRED", "OPTIMAL");
    d.mpsysctl(&["kern.geom.multipath.io_timeout=1"]).ok();
    let active = d.active_path("FRED");
    d.gnop(&["configure", "-d", "4000", "-x", "100", &active])
        .ok();
    let fred = d.file("FRED");
    let took = write_block(&fred, 0, b'X');
    assert!(
        took >= std::time::Duration::from_millis(3900),
        "write X was acknowledged after {took:?}, before its first copy on {active} answered"
    );
    write_block(&fred, 0, b'Y');
    assert_eq!(read_block(&fred, 0), b'Y');
    let held = format!(
        "GEOM_MULTIPATH: a write to {active} in FRED is overdue; it is re-driven once its \
         answer arrives or {active} is gone"
    );
    assert!(d.messages().contains(&held), "{:?}", d.messages());
    // Nothing of X is still out anywhere: the block stays Y, on the disk itself too
    // (below the gnop offset of one block).
    d.gnop(&["configure", "-x", "0", &active]).ok();
    assert_eq!(read_block(&fred, 0), b'Y');
    assert_eq!(read_block(std::path::Path::new(&a.dev()), 1), b'Y');
}

/// Item 1: with the socket in a directory another user owns (or any user may write), that
/// user planted `gmultipathd.pid` as a symbolic link to a file of root's, and the daemon
/// chmod-ed the directory and overwrote root's file with its pid. It now refuses such a
/// runtime directory, touching nothing.
#[test]
fn a_runtime_directory_another_user_controls_is_refused() {
    if !root_or_skip("runtime_dir") {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let scratch = Scratch::new("rundir");
    let victim = scratch.dir.join("root-owned");
    std::fs::write(&victim, "root's data\n").unwrap();
    // As uid 65534: a directory of its own, and in it t/ with the planted link.
    let theirs = scratch.dir.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let plant = format!(
        "mkdir {0}/t && ln -s {1} {0}/t/gmultipathd.pid",
        theirs.display(),
        victim.display()
    );
    let out = run(
        std::path::Path::new("setpriv"),
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "sh",
            "-c",
            &plant,
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    // A root-owned directory anyone may write to (not sticky).
    let open = scratch.dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::create_dir(open.join("t")).unwrap();
    std::os::unix::fs::symlink(&victim, open.join("t/gmultipathd.pid")).unwrap();
    for (dir, why) in [
        (&theirs, "owned by uid 65534"),
        (&open, "writable by others"),
    ] {
        let before = std::fs::metadata(dir.join("t")).unwrap().mode();
        let socket = dir.join("t/ctl").display().to_string();
        // (Under timeout(1): a daemon that accepted the directory would run on.)
        let daemon = bin("gmultipathd").display().to_string();
        let out = run(
            std::path::Path::new("timeout"),
            &["20", &daemon, "--foreground", "--socket", &socket],
            &Daemon::env_on(&scratch),
        );
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stderr.contains("refusing") && out.stderr.contains(why),
            "{out:?}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's data\n");
        assert_eq!(
            std::fs::metadata(dir.join("t")).unwrap().mode(),
            before,
            "not chmod-ed"
        );
        assert!(!dir.join("t/ctl").exists());
    }
}

/// Item 4: two different disks with the same label (here a copied image, as a cloned VM
/// disk or a LUN snapshot) were assembled as two paths of one geom, OPTIMAL and silent,
/// and after `fail` reads came from the other disk. Loop devices say who they are (their
/// backing file's device and inode), so the copy is refused with a console message; two
/// loop devices over one file still join.
#[test]
fn a_cloned_disk_with_the_same_label_is_not_taken_as_a_second_path() {
    if !root_or_skip("cloned_label") {
        return;
    }
    let scratch = Scratch::new("clone");
    let img = scratch.image("disk.img", 16 * MIB);
    let a = Loop::attach(&img);
    let d = Daemon::start(&scratch);
    d.gmultipath(&["label", "FRED", &a.name]).ok();
    d.wait_status("FRED", "DEGRADED");
    // The copy carries FRED's label; a second loop device over a's file is a real path.
    let copy = scratch.dir.join("copy.img");
    std::fs::copy(&img, &copy).unwrap();
    let b = Loop::attach(&copy);
    let a2 = Loop::attach(&img);
    wait_until("a's second path to join", || {
        let out = d.gmultipath(&["status", "-s", "FRED"]);
        out.code == 0 && out.stdout.contains(&a2.name)
    });
    let refused = format!("GEOM_MULTIPATH: {} is another disk than", b.name);
    wait_until("the copy to be refused", || {
        d.messages().iter().any(|m| m.starts_with(&refused))
    });
    let status = d.gmultipath(&["status", "-s", "FRED"]).ok().to_string();
    assert!(!status.contains(&b.name), "{status}");
}

/// Item 10: after the last path of a geom was removed, opening `/dev/multipath/NAME`
/// failed with EPERM, as if it were there but forbidden; the geom is gone, so ENOENT.
#[test]
fn the_export_of_a_geom_whose_last_path_went_is_gone() {
    if !root_or_skip("last_path_removed") {
        return;
    }
    let scratch = Scratch::new("lastpath");
    let img = scratch.image("disk.img", 16 * MIB);
    let a = Loop::attach(&img);
    let d = Daemon::start(&scratch);
    d.gmultipath(&["create", "GONE", &a.name]).ok();
    assert!(d.file("GONE").exists());
    // Someone still has it open when its last path goes (the provider withers).
    let held = std::fs::File::open(d.file("GONE")).unwrap();
    d.gmultipath(&["remove", "GONE", &a.name]).ok();
    let e = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(d.file("GONE"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
    drop(held);
}

/// Makes a CA, a server and a client certificate signed by it, and a client certificate of
/// another CA, with openssl(1); returns (server dir, client dir, other CA's client dir) laid
/// out as qemu's tls-creds-x509 and libnbd's tls-certificates want them.
fn make_certificates(dir: &std::path::Path) -> (String, String, String) {
    let script = r#"set -e
d=$1; mkdir -p $d/srv $d/cli $d/evil; cd $d
req() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "$@" 2>/dev/null; }
req -x509 -keyout ca-key.pem -out ca-cert.pem -days 2 -subj /CN=gmp-test-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
req -x509 -keyout evil/ca-key.pem -out evil/ca.pem -days 2 -subj /CN=other-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' > srv.ext
printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n' > cli.ext
sign() { openssl x509 -req -in $1.csr -CA $2 -CAkey $3 -CAcreateserial -out $4 -days 2 -extfile $5 2>/dev/null; }
req -keyout srv/server-key.pem -out server.csr -subj /CN=server
sign server ca-cert.pem ca-key.pem srv/server-cert.pem srv.ext
req -keyout cli/client-key.pem -out client.csr -subj /CN=client
sign client ca-cert.pem ca-key.pem cli/client-cert.pem cli.ext
req -keyout evil/client-key.pem -out evil.csr -subj /CN=intruder
sign evil evil/ca.pem evil/ca-key.pem evil/client-cert.pem cli.ext
cp ca-cert.pem srv/; cp ca-cert.pem cli/; cp ca-cert.pem evil/ca-cert.pem
"#;
    let out = run(
        std::path::Path::new("sh"),
        &["-c", script, "sh", &dir.display().to_string()],
        &[],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let sub = |s: &str| dir.join(s).display().to_string();
    (sub("srv"), sub("cli"), sub("evil"))
}

/// Item 2: the NBD export over TCP speaks NBD_OPT_STARTTLS with mutual x509 (rustls) and
/// refuses anything else: qemu-img, qemu-io, nbdinfo and nbdcopy with a certificate of
/// the export's CA read and write; a plaintext client and one with another CA's
/// certificate get nothing.
#[test]
fn the_tcp_export_takes_tls_clients_with_the_cas_certificate_only() {
    if !root_or_skip("nbd_tls") {
        return;
    }
    for tool in ["openssl", "qemu-img", "qemu-io", "nbdinfo", "nbdcopy"] {
        if run(
            std::path::Path::new("sh"),
            &["-c", &format!("command -v {tool}")],
            &[],
        )
        .code
            != 0
        {
            println!("SKIPPED: nbd_tls: {tool} is not installed");
            return;
        }
    }
    let scratch = Scratch::new("tls");
    let (srv, cli, evil) = make_certificates(&scratch.dir.join("pki"));
    let img = scratch.image("disk.img", 16 * MIB);
    let (a, b) = (Loop::attach(&img), Loop::attach(&img));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&scratch, &["--nbd-tcp", &addr, "--nbd-tls-dir", &srv]);
    d.gmultipath(&["label", "FRED", &a.name, &b.name]).ok();
    d.wait_status("FRED", "OPTIMAL");
    let tool = |name: &str, args: &[&str]| run(std::path::Path::new(name), args, &[]);
    let creds = format!("tls-creds-x509,id=tls0,endpoint=client,dir={cli}");
    let image = format!("driver=nbd,host=127.0.0.1,port={port},export=FRED,tls-creds=tls0");
    let info = tool(
        "qemu-img",
        &["info", "--object", &creds, "--image-opts", &image],
    );
    assert_eq!(info.code, 0, "{info:?}");
    assert!(info.stdout.contains("16 MiB"), "{info:?}");
    let io = tool(
        "qemu-io",
        &[
            "--object",
            &creds,
            "--image-opts",
            &image,
            "-c",
            "write -P 0xa5 0 1M",
            "-c",
            "read -P 0xa5 0 1M",
        ],
    );
    assert_eq!(io.code, 0, "{io:?}");
    assert!(!io.stdout.contains("Pattern verification failed"), "{io:?}");
    let uri = format!("nbds://127.0.0.1:{port}/FRED?tls-certificates={cli}");
    let nbdinfo = tool("nbdinfo", &["--size", &uri]);
    assert_eq!(
        (nbdinfo.code, nbdinfo.stdout.trim()),
        (0, "16776704"),
        "{nbdinfo:?}"
    );
    let data = scratch.dir.join("data");
    std::fs::write(&data, vec![0x3cu8; 1 << 20]).unwrap();
    let copy = tool("nbdcopy", &[&data.display().to_string(), &uri]);
    assert_eq!(copy.code, 0, "{copy:?}");
    let back = scratch.dir.join("back");
    let copy = tool("nbdcopy", &[&uri, &back.display().to_string()]);
    assert_eq!(copy.code, 0, "{copy:?}");
    assert_eq!(
        std::fs::read(&back).unwrap()[..1 << 20],
        vec![0x3cu8; 1 << 20][..]
    );
    // Refused: plaintext, and a certificate of another CA.
    let plain = tool(
        "nbdinfo",
        &["--size", &format!("nbd://127.0.0.1:{port}/FRED")],
    );
    assert_ne!(plain.code, 0, "{plain:?}");
    let other = format!("nbds://127.0.0.1:{port}/FRED?tls-certificates={evil}");
    let intruder = tool("nbdinfo", &["--size", &other]);
    assert_ne!(intruder.code, 0, "{intruder:?}");
}

/// A separate process (this test binary, running [`hold_control_connections`]) that holds
/// `n` idle connections to a control socket until dropped.
struct Holder(std::process::Child);

impl Holder {
    fn start(socket: &std::path::Path, n: usize) -> Holder {
        use std::io::BufRead;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "hardening::hold_control_connections",
                "--nocapture",
            ])
            .env("GMP_HOLD_SOCKET", socket)
            .env("GMP_HOLD_N", n.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the holder");
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        for line in out.lines() {
            if line.expect("holder output") == "held" {
                return Holder(child);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the holder ended before holding its connections");
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// Not a test of its own: the process [`Holder`] starts (it does nothing without
/// `GMP_HOLD_SOCKET`). Holds `GMP_HOLD_N` connections until its stdin closes.
#[test]
fn hold_control_connections() {
    let (Ok(socket), Ok(n)) = (
        std::env::var("GMP_HOLD_SOCKET"),
        std::env::var("GMP_HOLD_N"),
    ) else {
        return;
    };
    let held: Vec<_> = (0..n.parse::<usize>().unwrap())
        .map(|_| std::os::unix::net::UnixStream::connect(&socket).unwrap())
        .collect();
    println!("held");
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    drop(held);
}

//! fio as the tests' data-integrity checker: it writes mixed-size blocks with a crc32c in
//! each, reads them back as it goes and at the end, and exits non-zero on any I/O error or
//! mismatch. The fault tests run it through /dev/multipath/FRED while paths fail.

use std::path::Path;
use std::thread::JoinHandle;

use crate::{run, wait_until, Daemon, Out};

/// Starts fio writing `size` through `file` with crc32c verification as it goes and at
/// the end, 16 requests in flight, block sizes from 4 KiB to 64 KiB; with `seconds`, it
/// keeps rewriting the region for that long.
pub fn verify(file: &Path, size: &str, seconds: Option<u64>) -> JoinHandle<Out> {
    let mut args: Vec<String> = [
        "--name=mpath",
        "--ioengine=libaio",
        "--direct=1",
        "--rw=randwrite",
        "--bsrange=4k-64k",
        "--iodepth=16",
        "--verify=crc32c",
        "--verify_backlog=64",
        "--verify_fatal=1",
        "--do_verify=1",
        "--randrepeat=0",
        "--verify_state_save=0",
    ]
    .map(String::from)
    .into();
    args.push(format!("--filename={}", file.display()));
    args.push(format!("--size={size}"));
    if let Some(s) = seconds {
        args.push(format!("--runtime={s}"));
        args.push("--time_based".into());
    }
    std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(Path::new("fio"), &args, &[])
    })
}

/// Waits until fio has the multipath provider FRED open, and gives fio back; fails if fio
/// ended first (then the fault would not have met any I/O and the test would prove
/// nothing).
pub fn wait_open(d: &Daemon, fio: JoinHandle<Out>) -> JoinHandle<Out> {
    let mut ended = false;
    wait_until("fio to open the provider", || {
        ended = fio.is_finished();
        ended
            || d.gmultipath(&["list", "FRED"])
                .stdout
                .lines()
                .skip_while(|l| *l != "Providers:")
                .take_while(|l| *l != "Consumers:")
                .any(|l| l.starts_with("   Mode: r1w1"))
    });
    if ended {
        let out = fio.join().expect("fio thread");
        panic!(
            "fio ended before the fault was injected:\n{}{}\n{}",
            out.stdout,
            out.stderr,
            d.gmultipath(&["list", "FRED"]).stdout
        );
    }
    fio
}

/// Asserts that fio finished without an I/O error or a verify mismatch.
pub fn assert_clean(fio: Out) {
    assert_eq!(fio.code, 0, "fio failed:\n{}\n{}", fio.stdout, fio.stderr);
    assert!(fio.stdout.contains("err= 0"), "{}", fio.stdout);
    let said = format!("{}{}", fio.stdout, fio.stderr);
    assert!(
        !said.contains("verify:") && !said.contains("bad magic"),
        "{said}"
    );
}

/// `true` when fio is installed; otherwise says so.
pub fn available() -> bool {
    let found = std::process::Command::new("fio")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    println!("SKIPPED: fio is not installed (.ci/run installs it)");
    false
}

//! The floor of the exports, for bench/io.sh: the real FUSE export (and NBD export) of one
//! provider, FLOOR, whose "owner" answers every request at once — reads with the zeroed
//! buffer the export allocated, writes by dropping the data — with no class, no paths and
//! no device behind it. What a client measures through it is what the transport itself
//! costs; gmultipathd can be no faster through the same export.
//!
//! Usage: export_floor <mountpoint> <nbd-dir> <size-bytes>; runs until SIGINT or SIGTERM.

#![cfg_attr(not(target_os = "linux"), allow(unused_imports))]

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use geom_multipath::testkit::MemTopology;
use geom_multipath::Class;
#[cfg(target_os = "linux")]
use geom_multipath_host::export::fuse;
use geom_multipath_host::export::nbd;
use geom_multipath_host::msg::exports::{Exports, SharedExports};
use geom_multipath_host::msg::{self, IoOp, IoReply, Msg};
use nix::sys::signal::{SigSet, Signal};

/// The FUSE export is Linux's.
#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("export_floor: Linux only (it measures the FUSE export)");
    std::process::exit(1);
}

#[cfg(target_os = "linux")]
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, mountpoint, nbd_dir, size] = &args[..] else {
        anyhow::bail!("usage: export_floor <mountpoint> <nbd-dir> <size-bytes>");
    };
    let size: u64 = size.parse()?;
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block()?;

    // A geom id made by the real class (the export table keys on it).
    let mut topo = MemTopology::new();
    topo.disk_with_paths("md", 1, 1 << 20, 512);
    let mut class = Class::default();
    let flags = [("active_active", false), ("active_read", false)];
    topo.verb(&mut class, "create", &flags, &["FLOOR", "md0"]);
    let geom = class.find_geom("FLOOR").expect("FLOOR");

    let exports: SharedExports = Arc::new(RwLock::new(Exports::new()));
    {
        let mut table = exports.write().unwrap();
        table.add("FLOOR", geom);
        table.resize(geom, size, Some(512));
    }
    let (handle, inbox) = msg::channel()?;
    let owner = std::thread::spawn(move || {
        while let Ok(m) = inbox.rx.recv() {
            match m {
                Msg::Io(req) => (req.reply)(match req.op {
                    IoOp::Read(buf) | IoOp::Write(buf) => Ok(IoReply::Data(buf)),
                    IoOp::Flush | IoOp::Delete(_) => Ok(IoReply::Done),
                    IoOp::Physpath => Ok(IoReply::Text(String::new())),
                }),
                Msg::Access { reply, .. } => {
                    let _ = reply.send(Ok(()));
                }
                Msg::Shutdown => break,
                _ => {}
            }
        }
    });
    let fuse = fuse::mount(
        &PathBuf::from(mountpoint),
        exports.clone(),
        handle.clone(),
        Default::default(),
    )?;
    let nbd = nbd::serve(
        nbd::NbdConfig {
            unix_dir: Some(PathBuf::from(nbd_dir)),
            tcp: None,
            ..Default::default()
        },
        exports,
        handle.clone(),
    )?;
    eprintln!("export_floor: serving {mountpoint}/FLOOR and {nbd_dir}/FLOOR");
    signals.wait()?;
    drop(nbd);
    let _ = fuse.unmount();
    handle.send(Msg::Shutdown);
    let _ = owner.join();
    Ok(())
}

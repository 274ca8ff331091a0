//! The NBD export of every multipath provider: one Unix socket per provider
//! (`<dir>/<NAME>`, mode 0600, where any export name selects that provider), and
//! optionally one TCP listener (loopback only unless told otherwise) where the export name
//! is the provider's name and `NBD_OPT_LIST` lists them all.
//!
//! This module owns the sockets and the threads that serve them: one listener thread that
//! polls every listening socket and keeps the per-provider sockets in step with the
//! [`Exports`](crate::msg::exports::Exports) table (it is woken by the table's watcher), and per
//! client connection a thread that speaks the handshake and reads requests plus a thread
//! that writes replies. It speaks the protocol through [`crate::nbd_proto`] and reaches
//! the provider only through the owner ([`OwnerHandle::access`], [`OwnerHandle::io`]); it
//! never calls the core, and the owner never waits for a client: a reply closure only
//! queues the answer for the connection's writer thread.
//!
//! # Semantics (those of the FUSE export, in NBD terms)
//!
//! * Entering transmission (`NBD_OPT_GO` or `NBD_OPT_EXPORT_NAME`) takes access r1w1 on the
//!   provider; if that fails with EPERM (someone holds it exclusively) it takes r1 and the
//!   export is read-only (`NBD_FLAG_READ_ONLY`). The access is given back exactly once,
//!   when the connection ends and every reply has been sent, also for a provider that
//!   withered meanwhile.
//! * READ, WRITE, FLUSH, TRIM (BIO_DELETE) and WRITE_ZEROES (writes of zeroes, as BIO_DELETE
//!   need not zero) go to the owner and are answered when it answers, in any order (the
//!   protocol allows it). FUA is a flush after the write, before the reply. CACHE is
//!   accepted and does nothing. Flush acts on the provider, so every connection sees it:
//!   `NBD_FLAG_CAN_MULTI_CONN`.
//! * `NBD_INFO_BLOCK_SIZE` advertises the sector size as the minimum block size, 4096 (or
//!   the sector size if larger) as the preferred one and [`MAX_PAYLOAD`] (32 MiB) as the
//!   maximum payload. An unaligned offset or length, a read longer than the maximum, a
//!   read, trim or cache past the end, or an unknown command or flag is answered with
//!   EINVAL; a write past the end with ENOSPC; a write on a read-only export with EPERM.
//!   A WRITE payload over 32 MiB cannot be skipped safely: EINVAL, then a disconnect.
//! * Errors go out as the NBD error values of the spec ([`nbd_proto::errno_to_wire`]):
//!   NBD has no ENXIO, so a withered provider's ENXIO is sent as EIO, and the connection
//!   is then closed (its provider is gone for good).
//! * `NBD_CMD_DISC` closes the connection once every in-flight request has been answered.
//!   A protocol violation (bad magic, a truncated message, an oversized payload) closes it
//!   at once. A client that stalls in the handshake is dropped after
//!   [`HANDSHAKE_TIMEOUT`]; an idle client in transmission is left alone. Each connection
//!   has its own threads and at most [`MAX_INFLIGHT_REQUESTS`] requests /
//!   [`MAX_INFLIGHT_BYTES`] in flight (it stops reading beyond that), so a slow or idle
//!   client holds up nobody else, and at most [`MAX_CONNECTIONS`] are served at once, at
//!   most [`MAX_PER_CLIENT`] of them for one client (TCP address, Unix peer uid).
//! * TLS on TCP ([`super::tls`]): with credentials, `NBD_OPT_STARTTLS` is required first
//!   (every other option → `NBD_REP_ERR_TLS_REQD`, `NBD_OPT_EXPORT_NAME` → disconnect) and
//!   the rest of the connection runs over a TLS relay with mutual x509; without them TCP
//!   is refused at start unless plaintext is asked for by its loud name. Unix sockets
//!   stay plaintext (`NBD_OPT_STARTTLS` → `NBD_REP_ERR_UNSUP`).
//! * Not done: structured replies and metadata contexts (→ `NBD_REP_ERR_UNSUP`; BLOCK_STATUS → EINVAL), resizing a live
//!   connection (requests are checked against the provider's current size, but a client
//!   keeps the size it was told). A provider whose size is still 0 is not exported.
//!
//! # Shutdown
//!
//! Dropping the [`NbdServer`] (or [`NbdServer::stop`]) stops the listener thread, removes
//! the sockets it made, and stops every connection from reading: the replies in flight
//! still go out, then the connection closes and gives its access back. A connection not
//! done after half of [`STOP_WAIT`] is shut down both ways; one not done after all of it
//! is left to finish on its own. Stop it after the owner's inbox
//! is dropped, as with the FUSE export: a give-back then fails at once instead of waiting
//! for an owner that no longer answers.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use crossbeam_channel::{Receiver, Sender};
use geom_multipath::{Errno, GeomId};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::export::access::{is_ready, AccessGuard};
use crate::msg::exports::{Export, SharedExports, WatchId};
use crate::msg::{IoOp, IoReply, IoRequest, OwnerHandle};
use crate::nbd_proto::Stream;
use crate::nbd_proto::{
    self, ClientOption, Command, ExportNameReply, Greeting, Info, InfoRequest, OptionHeader,
    OptionReply, Request, SimpleReply, CMD_FLAG_FUA, CMD_FLAG_NO_HOLE, FLAG_CAN_MULTI_CONN,
    FLAG_C_NO_ZEROES, FLAG_FIXED_NEWSTYLE, FLAG_HAS_FLAGS, FLAG_NO_ZEROES, FLAG_READ_ONLY,
    FLAG_SEND_FLUSH, FLAG_SEND_FUA, FLAG_SEND_TRIM, FLAG_SEND_WRITE_ZEROES, INFO_DESCRIPTION,
    INFO_NAME, MAX_OPTION_DATA, MAX_PAYLOAD, REP_ERR_INVALID, REP_ERR_POLICY, REP_ERR_TLS_REQD,
    REP_ERR_TOO_BIG, REP_ERR_UNKNOWN, REP_ERR_UNSUP,
};
use crate::path::device::IoBuf;

mod handshake;
mod listen;
mod transmission;

use handshake::*;
use listen::*;
use transmission::*;

/// How long a client may take over each step of the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most options one handshake may send.
pub const MAX_OPTIONS: usize = 256;
/// The most connections served at once (more are closed at once).
pub const MAX_CONNECTIONS: usize = 256;
/// Connections one client (a TCP address, a Unix peer's uid) may hold at once.
pub const MAX_PER_CLIENT: usize = 64;
/// The most requests one connection may have in flight.
pub const MAX_INFLIGHT_REQUESTS: usize = 128;
/// The most payload bytes one connection may have in flight (one request always fits).
pub const MAX_INFLIGHT_BYTES: usize = 64 << 20;
/// The preferred block size advertised (at least the sector size).
pub const PREFERRED_BLOCK: u32 = 4096;
/// How long [`NbdServer::stop`] waits for the connection threads.
pub const STOP_WAIT: Duration = Duration::from_secs(5);
/// The largest write of zeroes sent to the owner at once for a WRITE_ZEROES.
const ZERO_CHUNK: u64 = 1 << 20;
/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(200);

/// Where the NBD export listens.
#[derive(Clone, Debug, Default)]
pub struct NbdConfig {
    /// One Unix socket per provider, `<dir>/<NAME>` (mode 0600); the directory is made
    /// (mode 0700) if missing, and stale sockets in it are removed at start.
    pub unix_dir: Option<PathBuf>,
    /// One TCP listener for all providers (port 0 picks a free port: see
    /// [`NbdServer::tcp_addr`]). Refused unless it is a loopback address or
    /// `allow_remote` is set: NBD has no authentication.
    pub tcp: Option<SocketAddr>,
    /// Allow a TCP address that is not loopback.
    pub allow_remote: bool,
    /// TLS for the TCP listener (`NBD_OPT_STARTTLS`, mutual x509, required before any
    /// other option): [`super::tls::server_config`].
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Serve TCP clients in plaintext, unauthenticated (refused unless set when `tcp`
    /// is given without `tls`).
    pub insecure_plaintext: bool,
}

/// The running export. Dropping it stops it (see the module doc).
pub struct NbdServer {
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    tcp_addr: Option<SocketAddr>,
    unix_dir: Option<PathBuf>,
    watch: Option<WatchId>,
}

/// Starts the NBD export of the providers in `exports` (see the module doc).
pub fn serve(
    config: NbdConfig,
    exports: SharedExports,
    owner: OwnerHandle,
) -> anyhow::Result<NbdServer> {
    let tcp = match config.tcp {
        None => None,
        Some(addr) => {
            if config.tls.is_none() && !config.insecure_plaintext {
                bail!(
                    "refusing to export over NBD on {addr} without TLS: every local user could \
                     read and write the disks (give --nbd-tls-dir, or \
                     --nbd-tcp-insecure-plaintext to accept that)"
                );
            }
            if !addr.ip().is_loopback() && !config.allow_remote {
                bail!(
                    "refusing to export over NBD on {addr}: not a loopback address (use a \
                     loopback address or a Unix socket, or --nbd-allow-remote)"
                );
            }
            let l = TcpListener::bind(addr)
                .with_context(|| format!("cannot listen for NBD on {addr}"))?;
            l.set_nonblocking(true)?;
            Some(l)
        }
    };
    let tcp_addr = match &tcp {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let mut created_dir = false;
    if let Some(dir) = &config.unix_dir {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            created_dir = true;
        }
        remove_stale_sockets(dir)?;
    }
    let waker = Arc::new(
        EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .context("creating an eventfd")?,
    );
    let shared = Arc::new(Shared {
        exports: exports.clone(),
        owner,
        stopping: AtomicBool::new(false),
        waker: waker.clone(),
        conns: Mutex::new(HashMap::new()),
        live: Mutex::new(0),
        live_changed: Condvar::new(),
        tls: config.tls.clone(),
    });
    let watch = {
        let waker = waker.clone();
        exports
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .watch(move || {
                let _ = waker.write(1);
            })
    };
    let listeners = Listeners {
        dir: config.unix_dir.clone(),
        created_dir,
        unix: BTreeMap::new(),
        tcp,
        seen: None,
    };
    let acceptor = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("nbd-listen".into())
            .spawn(move || listen_loop(shared, listeners))
            .context("starting the NBD listener thread")?
    };
    if let Some(addr) = tcp_addr {
        tracing::info!("NBD export on nbd://{addr}/");
    }
    if let Some(dir) = &config.unix_dir {
        tracing::info!("NBD export in {}", dir.display());
    }
    Ok(NbdServer {
        shared,
        acceptor: Some(acceptor),
        tcp_addr,
        unix_dir: config.unix_dir,
        watch: Some(watch),
    })
}

impl NbdServer {
    /// The TCP address listened on (with the port picked when 0 was asked for).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The directory of the per-provider sockets.
    pub fn unix_dir(&self) -> Option<&Path> {
        self.unix_dir.as_deref()
    }

    /// The socket of provider `name` (it exists while the provider is exported).
    pub fn socket_path(&self, name: &str) -> Option<PathBuf> {
        self.unix_dir.as_ref().map(|d| d.join(name))
    }

    /// How many client connections are being served.
    pub fn connections(&self) -> usize {
        *self
            .shared
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops serving: see the module doc. Dropping does the same.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(id) = self.watch.take() {
            self.shared
                .exports
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .unwatch(id);
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.shared.waker.write(1);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        // First stop reading: requests in flight are still answered (as the spec asks of
        // a server that shuts down), then each connection closes. A client that does not
        // take its replies is cut off at half time.
        self.shutdown_connections(Shutdown::Read);
        if !self.wait_connections(STOP_WAIT / 2) {
            self.shutdown_connections(Shutdown::Both);
            if !self.wait_connections(STOP_WAIT / 2) {
                let live = self.connections();
                tracing::warn!("{live} NBD connection(s) still finishing; left running");
            }
        }
    }

    fn shutdown_connections(&self, how: Shutdown) {
        for s in self
            .shared
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            s.shutdown_how(how);
        }
    }

    /// Waits until no connection thread is left; `false` if `limit` passed first.
    fn wait_connections(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut live = self
            .shared
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *live > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            live = self
                .shared
                .live_changed
                .wait_timeout(live, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for NbdServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdServer")
            .field("tcp_addr", &self.tcp_addr)
            .field("unix_dir", &self.unix_dir)
            .finish_non_exhaustive()
    }
}

/// Which exports a listener offers.
#[derive(Clone, Debug)]
enum Target {
    /// A per-provider socket: this provider, whatever name the client asks for.
    Named(String),
    /// The TCP listener: the provider the client names.
    Any,
}

/// What the listener and connection threads share.
struct Shared {
    exports: SharedExports,
    owner: OwnerHandle,
    stopping: AtomicBool,
    /// Wakes the listener thread (table changed, or stopping).
    waker: Arc<EventFd>,
    /// A handle on every connection, to shut them down at stop.
    conns: Mutex<HashMap<u64, Stream>>,
    /// Connection threads running.
    live: Mutex<usize>,
    live_changed: Condvar,
    /// TLS required on TCP connections, with these credentials.
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Shared {
    fn table(&self) -> std::sync::RwLockReadGuard<'_, crate::msg::exports::Exports> {
        self.exports.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The export a client asking for `name` gets.
    fn find(&self, target: &Target, name: &str) -> Option<Export> {
        let table = self.table();
        let found = match target {
            Target::Named(n) => table.get(n),
            Target::Any => table.get(name),
        };
        found.filter(|e| is_ready(e)).cloned()
    }

    /// What `NBD_OPT_LIST` shows.
    fn list(&self, target: &Target) -> Vec<Export> {
        let table = self.table();
        match target {
            Target::Named(n) => table
                .get(n)
                .filter(|e| is_ready(e))
                .cloned()
                .into_iter()
                .collect(),
            Target::Any => table.iter().filter(|e| is_ready(e)).cloned().collect(),
        }
    }

    /// Takes access for a session: r1w1, or r1 (read-only) if writing is refused.
    fn open(&self, export: Export) -> Result<Session, Errno> {
        let access = AccessGuard::read_write_or_read_only(&self.owner, &export)?;
        Ok(Session { export, access })
    }

    /// The provider's current size and sector size (as at open if it withered).
    fn geometry(&self, s: &Session) -> (u64, u32) {
        self.table()
            .by_geom(s.export.geom)
            .map_or((s.export.mediasize, s.export.sectorsize), |e| {
                (e.mediasize, e.sectorsize)
            })
    }
}

/// An open export: the access it holds.
#[derive(Debug)]
struct Session {
    /// The provider as it was at open; requests go to its geom.
    export: Export,
    /// r1w1, or only r1; given back when the session ends.
    access: AccessGuard,
}

impl Session {
    fn flags(&self) -> u16 {
        transmission_flags(self.read_only())
    }

    /// Only r1 was taken: writing was refused.
    fn read_only(&self) -> bool {
        !self.access.writable()
    }
}

/// The transmission flags of an export.
fn transmission_flags(read_only: bool) -> u16 {
    let mut f = FLAG_HAS_FLAGS
        | FLAG_SEND_FLUSH
        | FLAG_SEND_FUA
        | FLAG_SEND_TRIM
        | FLAG_SEND_WRITE_ZEROES
        | FLAG_CAN_MULTI_CONN;
    if read_only {
        f |= FLAG_READ_ONLY;
    }
    f
}

/// The block sizes advertised for an export.
fn block_size(e: &Export) -> Info {
    Info::BlockSize {
        min: e.sectorsize,
        preferred: PREFERRED_BLOCK.max(e.sectorsize),
        max: MAX_PAYLOAD,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_names_stay_in_the_directory() {
        let dir = Path::new("/run/gmultipath/nbd");
        assert!(socket_name_ok(dir, "FRED"));
        assert!(!socket_name_ok(dir, ""));
        assert!(!socket_name_ok(dir, ".hidden"));
        assert!(!socket_name_ok(dir, "a/b"));
        assert!(
            !socket_name_ok(dir, &"x".repeat(100)),
            "sun_path is 108 bytes"
        );
    }

    #[test]
    fn non_loopback_tcp_is_refused() {
        let (owner, _inbox) = crate::msg::channel().unwrap();
        let exports: SharedExports = Default::default();
        let err = serve(
            NbdConfig {
                tcp: Some("0.0.0.0:0".parse().unwrap()),
                insecure_plaintext: true,
                ..NbdConfig::default()
            },
            exports,
            owner,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a loopback address"), "{err}");
    }

    /// Issue 11 item 2: `--nbd-tcp 127.0.0.1:PORT` gave every local user raw read and write
    /// of the disks. TCP without TLS is refused unless asked for by its loud name.
    #[test]
    fn tcp_without_tls_is_refused_unless_named_insecure() {
        let (owner, _inbox) = crate::msg::channel().unwrap();
        let exports: SharedExports = Default::default();
        let err = serve(
            NbdConfig {
                tcp: Some("127.0.0.1:0".parse().unwrap()),
                ..NbdConfig::default()
            },
            exports,
            owner,
        )
        .unwrap_err();
        assert!(err.to_string().contains("without TLS"), "{err}");
        assert!(
            err.to_string().contains("--nbd-tcp-insecure-plaintext"),
            "{err}"
        );
    }
}

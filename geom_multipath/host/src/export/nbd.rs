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
//!   client holds up nobody else, and at most [`MAX_CONNECTIONS`] are served at once.
//! * Not done: TLS (`NBD_OPT_STARTTLS` → `NBD_REP_ERR_UNSUP`), structured replies and
//!   metadata contexts (→ `NBD_REP_ERR_UNSUP`; BLOCK_STATUS → EINVAL), resizing a live
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
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use crossbeam_channel::{Receiver, Sender};
use geom_multipath::{Errno, GeomId};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::msg::exports::{Export, SharedExports, WatchId};
use crate::msg::{IoOp, IoReply, IoRequest, OwnerHandle};
use crate::nbd_proto::{
    self, ClientOption, Command, ExportNameReply, Greeting, Info, InfoRequest, OptionHeader,
    OptionReply, Request, SimpleReply, CMD_FLAG_FUA, CMD_FLAG_NO_HOLE, FLAG_CAN_MULTI_CONN,
    FLAG_C_NO_ZEROES, FLAG_FIXED_NEWSTYLE, FLAG_HAS_FLAGS, FLAG_NO_ZEROES, FLAG_READ_ONLY,
    FLAG_SEND_FLUSH, FLAG_SEND_FUA, FLAG_SEND_TRIM, FLAG_SEND_WRITE_ZEROES, INFO_DESCRIPTION,
    INFO_NAME, MAX_OPTION_DATA, MAX_PAYLOAD, REP_ERR_INVALID, REP_ERR_POLICY, REP_ERR_TOO_BIG,
    REP_ERR_UNKNOWN, REP_ERR_UNSUP,
};
use crate::path::device::IoBuf;

/// How long a client may take over each step of the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most options one handshake may send.
pub const MAX_OPTIONS: usize = 256;
/// The most connections served at once (more are closed at once).
pub const MAX_CONNECTIONS: usize = 256;
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
            if !addr.ip().is_loopback() && !config.allow_remote {
                bail!(
                    "refusing to export over NBD on {addr}: not a loopback address (NBD has no \
                     authentication; use a loopback address or a Unix socket)"
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

/// An NBD connection's socket, Unix or TCP (the client side uses it too).
pub(crate) enum Stream {
    /// A Unix socket.
    Unix(UnixStream),
    /// A TCP socket.
    Tcp(TcpStream),
}

impl Stream {
    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }

    /// shutdown(2) both ways: blocked reads and writes on every clone return at once.
    pub(crate) fn shutdown(&self) {
        self.shutdown_how(Shutdown::Both);
    }

    /// shutdown(2) one way or both.
    pub(crate) fn shutdown_how(&self, how: Shutdown) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(how),
            Stream::Tcp(s) => s.shutdown(how),
        };
    }

    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
        }
    }

    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(t),
            Stream::Tcp(s) => s.set_write_timeout(t),
        }
    }

    fn peer(&self) -> String {
        match self {
            Stream::Unix(s) => s
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_else(|| String::from("unix")),
            Stream::Tcp(s) => s
                .peer_addr()
                .map_or_else(|_| String::from("tcp"), |a| a.to_string()),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
}

/// A provider can be exported once it has a size.
fn ready(e: &Export) -> bool {
    e.mediasize > 0 && e.sectorsize > 0
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
        found.filter(|e| ready(e)).cloned()
    }

    /// What `NBD_OPT_LIST` shows.
    fn list(&self, target: &Target) -> Vec<Export> {
        let table = self.table();
        match target {
            Target::Named(n) => table
                .get(n)
                .filter(|e| ready(e))
                .cloned()
                .into_iter()
                .collect(),
            Target::Any => table.iter().filter(|e| ready(e)).cloned().collect(),
        }
    }

    /// Takes access for a session: r1w1, or r1 (read-only) if writing is refused.
    fn open(&self, export: Export) -> Result<Session, Errno> {
        match self.owner.access(export.geom, 1, 1, 0) {
            Ok(()) => Ok(Session {
                export,
                read_only: false,
            }),
            Err(Errno::EPERM) => {
                self.owner.access(export.geom, 1, 0, 0)?;
                Ok(Session {
                    export,
                    read_only: true,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Gives a session's access back.
    fn close(&self, s: &Session) {
        let dw = if s.read_only { 0 } else { -1 };
        if let Err(e) = self.owner.access(s.export.geom, -1, dw, 0) {
            tracing::debug!(
                "NBD: closing multipath/{}: access -1,{dw},0 failed: {e:?}",
                s.export.name
            );
        }
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
    /// Only r1 was taken.
    read_only: bool,
}

impl Session {
    fn flags(&self) -> u16 {
        transmission_flags(self.read_only)
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

// ----- the listener thread ---------------------------------------------------------------

/// The listening sockets.
struct Listeners {
    dir: Option<PathBuf>,
    created_dir: bool,
    /// Per-provider sockets: the listener and the inode of the socket file it made.
    unix: BTreeMap<String, (UnixListener, u64)>,
    tcp: Option<TcpListener>,
    /// The table generation the sockets were last made for.
    seen: Option<u64>,
}

/// A provider name that can be a socket file name in the directory.
fn socket_name_ok(dir: &Path, name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\0')
        && dir.join(name).as_os_str().len() < 108
}

/// Removes every socket in `dir` (left by a daemon that died).
fn remove_stale_sockets(dir: &Path) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_socket()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}

impl Listeners {
    /// Makes and removes per-provider sockets to match the table.
    fn sync(&mut self, shared: &Shared) {
        let Some(dir) = self.dir.clone() else {
            return;
        };
        let (generation, wanted): (u64, Vec<String>) = {
            let table = shared.table();
            let wanted = table
                .iter()
                .filter(|e| ready(e) && socket_name_ok(&dir, &e.name))
                .map(|e| e.name.clone())
                .collect();
            (table.generation(), wanted)
        };
        if self.seen == Some(generation) {
            return;
        }
        self.seen = Some(generation);
        let gone: Vec<String> = self
            .unix
            .keys()
            .filter(|n| !wanted.contains(n))
            .cloned()
            .collect();
        for name in gone {
            if let Some((l, ino)) = self.unix.remove(&name) {
                drop(l);
                remove_socket(&dir.join(&name), ino);
                tracing::debug!("NBD: multipath/{name} no longer exported");
            }
        }
        for name in wanted {
            if self.unix.contains_key(&name) {
                continue;
            }
            match bind_private(&dir, &name) {
                Ok(pair) => {
                    tracing::debug!("NBD: multipath/{name} at {}", dir.join(&name).display());
                    self.unix.insert(name, pair);
                }
                Err(e) => {
                    tracing::warn!("NBD: cannot export multipath/{name}: {e:#}");
                    // Try again on the next tick.
                    self.seen = None;
                }
            }
        }
    }

    /// Removes every socket made, and the directory if it was made here and is empty.
    fn remove_all(&mut self) {
        let Some(dir) = self.dir.clone() else {
            return;
        };
        for (name, (l, ino)) in std::mem::take(&mut self.unix) {
            drop(l);
            remove_socket(&dir.join(name), ino);
        }
        if self.created_dir {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// Binds `<dir>/<name>` with mode 0600: bound under a hidden name, made private, then
/// renamed into place, so the socket never exists with looser permissions.
fn bind_private(dir: &Path, name: &str) -> anyhow::Result<(UnixListener, u64)> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let l = UnixListener::bind(&tmp).with_context(|| format!("cannot bind {}", tmp.display()))?;
    let result = (|| {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        l.set_nonblocking(true)?;
        std::fs::rename(&tmp, &path)?;
        Ok::<u64, io::Error>(std::fs::metadata(&path)?.ino())
    })();
    match result {
        Ok(ino) => Ok((l, ino)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e).with_context(|| format!("cannot make {}", path.display()))
        }
    }
}

/// Removes a socket file if it is still the one made (inode `ino`).
fn remove_socket(path: &Path, ino: u64) {
    if std::fs::metadata(path).is_ok_and(|m| m.ino() == ino) {
        let _ = std::fs::remove_file(path);
    }
}

fn listen_loop(shared: Arc<Shared>, mut listeners: Listeners) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    while !shared.stopping() {
        listeners.sync(&shared);
        let mut ready: Vec<Option<Target>> = Vec::new();
        {
            let mut fds: Vec<PollFd<'_>> =
                vec![PollFd::new(shared.waker.as_fd(), PollFlags::POLLIN)];
            let mut targets: Vec<Option<Target>> = vec![None];
            if let Some(t) = &listeners.tcp {
                fds.push(PollFd::new(t.as_fd(), PollFlags::POLLIN));
                targets.push(Some(Target::Any));
            }
            for (name, (l, _)) in &listeners.unix {
                fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
                targets.push(Some(Target::Named(name.clone())));
            }
            let timeout = PollTimeout::from(1000u16);
            if let Err(e) = poll(&mut fds, timeout) {
                if e != nix::errno::Errno::EINTR {
                    tracing::warn!("NBD: poll: {e}");
                    std::thread::sleep(TICK);
                }
                continue;
            }
            for (fd, target) in fds.iter().zip(targets) {
                let readable = fd
                    .revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR));
                if readable {
                    ready.push(target);
                }
            }
        }
        let _ = shared.waker.read();
        for target in ready.into_iter().flatten() {
            accept_all(&shared, &listeners, &target);
        }
    }
    listeners.remove_all();
}

/// Accepts every pending connection on `target`'s listener.
fn accept_all(shared: &Arc<Shared>, listeners: &Listeners, target: &Target) {
    loop {
        let accepted = match target {
            Target::Any => match &listeners.tcp {
                Some(l) => l.accept().map(|(s, _)| {
                    let _ = s.set_nodelay(true);
                    Stream::Tcp(s)
                }),
                None => return,
            },
            Target::Named(name) => match listeners.unix.get(name) {
                Some((l, _)) => l.accept().map(|(s, _)| Stream::Unix(s)),
                None => return,
            },
        };
        match accepted {
            Ok(stream) => spawn_connection(shared, stream, target.clone()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("NBD: accept: {e}");
                return;
            }
        }
    }
}

fn spawn_connection(shared: &Arc<Shared>, stream: Stream, target: Target) {
    let unblocked = match &stream {
        Stream::Unix(s) => s.set_nonblocking(false),
        Stream::Tcp(s) => s.set_nonblocking(false),
    };
    let handle = stream.try_clone();
    let (Ok(()), Ok(handle)) = (unblocked, handle) else {
        return;
    };
    {
        let mut live = shared.live.lock().unwrap_or_else(PoisonError::into_inner);
        if *live >= MAX_CONNECTIONS {
            tracing::warn!("NBD: {MAX_CONNECTIONS} connections already; refusing another");
            return;
        }
        *live += 1;
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    shared
        .conns
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, handle);
    let s = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("nbd-conn".into())
        .spawn(move || connection(s, stream, target, id));
    if spawned.is_err() {
        shared
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        connection_ended(shared);
    }
}

fn connection_ended(shared: &Shared) {
    let mut live = shared.live.lock().unwrap_or_else(PoisonError::into_inner);
    *live = live.saturating_sub(1);
    shared.live_changed.notify_all();
}

// ----- one connection --------------------------------------------------------------------

fn connection(shared: Arc<Shared>, stream: Stream, target: Target, id: u64) {
    let peer = stream.peer();
    if let Err(e) = serve_connection(&shared, &stream, &target) {
        tracing::debug!("NBD {peer}: {e:#}");
    }
    stream.shutdown();
    shared
        .conns
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id);
    connection_ended(&shared);
}

fn serve_connection(shared: &Shared, stream: &Stream, target: &Target) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut rd = BufReader::with_capacity(128 << 10, stream.try_clone()?);
    let mut wr = stream.try_clone()?;
    let Some(session) = handshake(shared, target, &mut rd, &mut wr)? else {
        return Ok(());
    };
    tracing::debug!(
        "NBD: multipath/{} opened{}",
        session.export.name,
        if session.read_only { " read-only" } else { "" }
    );
    let result = stream
        .set_read_timeout(None)
        .map_err(anyhow::Error::from)
        .and_then(|()| transmission(shared, &session, rd, wr, stream));
    shared.close(&session);
    result
}

/// Sends option replies.
fn send_replies(wr: &mut Stream, option: u32, replies: &[OptionReply]) -> io::Result<()> {
    let bytes: Vec<u8> = replies.iter().flat_map(|r| r.encode(option)).collect();
    wr.write_all(&bytes)
}

fn send_error(wr: &mut Stream, option: u32, code: u32, message: &str) -> io::Result<()> {
    send_replies(
        wr,
        option,
        &[OptionReply::Error {
            code,
            message: message.to_string(),
        }],
    )
}

/// The handshake: `Ok(None)` if the client aborted, else the open session.
fn handshake(
    shared: &Shared,
    target: &Target,
    rd: &mut BufReader<Stream>,
    wr: &mut Stream,
) -> anyhow::Result<Option<Session>> {
    wr.write_all(
        &Greeting {
            flags: FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES,
        }
        .encode(),
    )?;
    let mut cf = [0u8; 4];
    rd.read_exact(&mut cf).context("reading the client flags")?;
    let client_flags = nbd_proto::decode_client_flags(&cf);
    if client_flags & !nbd_proto::CLIENT_FLAGS_KNOWN != 0 {
        bail!("unknown client flags {client_flags:#x}");
    }
    let no_zeroes = client_flags & FLAG_C_NO_ZEROES != 0;
    for _ in 0..MAX_OPTIONS {
        let mut h = [0u8; OptionHeader::LEN];
        rd.read_exact(&mut h).context("reading an option")?;
        let h = OptionHeader::decode(&h)?;
        if h.length > MAX_OPTION_DATA {
            if h.option == nbd_proto::OPT_EXPORT_NAME {
                bail!("an export name of {} bytes", h.length);
            }
            let skipped = io::copy(&mut (&mut *rd).take(u64::from(h.length)), &mut io::sink())?;
            if skipped < u64::from(h.length) {
                bail!("the client hung up in an option");
            }
            send_error(wr, h.option, REP_ERR_TOO_BIG, "option data too large")?;
            continue;
        }
        let mut data = vec![0u8; h.length as usize];
        rd.read_exact(&mut data).context("reading option data")?;
        let option = match ClientOption::parse(h.option, &data) {
            Ok(o) => o,
            Err(e) if h.option == nbd_proto::OPT_EXPORT_NAME => {
                bail!("invalid NBD_OPT_EXPORT_NAME: {e}")
            }
            Err(e) => {
                send_error(wr, h.option, REP_ERR_INVALID, &e.0)?;
                continue;
            }
        };
        let code = option.code();
        match option {
            ClientOption::ExportName(name) => {
                let Some(export) = shared.find(target, &name) else {
                    bail!("NBD_OPT_EXPORT_NAME for {name:?}, which is not exported");
                };
                let session = match shared.open(export) {
                    Ok(s) => s,
                    Err(e) => bail!("NBD_OPT_EXPORT_NAME for {name:?}: access failed: {e:?}"),
                };
                let reply = ExportNameReply {
                    size: session.export.mediasize,
                    flags: session.flags(),
                }
                .encode(no_zeroes);
                if let Err(e) = wr.write_all(&reply) {
                    shared.close(&session);
                    return Err(e.into());
                }
                return Ok(Some(session));
            }
            ClientOption::Abort => {
                let _ = send_replies(wr, code, &[OptionReply::Ack]);
                return Ok(None);
            }
            ClientOption::List => {
                let mut replies: Vec<OptionReply> = shared
                    .list(target)
                    .into_iter()
                    .map(|e| OptionReply::Server {
                        name: e.name,
                        details: String::new(),
                    })
                    .collect();
                replies.push(OptionReply::Ack);
                send_replies(wr, code, &replies)?;
            }
            ClientOption::StartTls => {
                send_error(wr, code, REP_ERR_UNSUP, "TLS is not supported")?;
            }
            ClientOption::Info(req) => {
                info_or_go(shared, target, wr, code, &req, false)?;
            }
            ClientOption::Go(req) => {
                if let Some(session) = info_or_go(shared, target, wr, code, &req, true)? {
                    return Ok(Some(session));
                }
            }
            ClientOption::StructuredReply => {
                send_error(
                    wr,
                    code,
                    REP_ERR_UNSUP,
                    "structured replies are not supported",
                )?;
            }
            ClientOption::Other(raw) => {
                send_error(
                    wr,
                    raw.option,
                    REP_ERR_UNSUP,
                    &format!("option {} is not supported", raw.option),
                )?;
            }
        }
    }
    bail!("more than {MAX_OPTIONS} options")
}

/// Answers `NBD_OPT_INFO` / `NBD_OPT_GO`; for a successful GO, the open session.
fn info_or_go(
    shared: &Shared,
    target: &Target,
    wr: &mut Stream,
    code: u32,
    req: &InfoRequest,
    go: bool,
) -> anyhow::Result<Option<Session>> {
    let Some(export) = shared.find(target, &req.name) else {
        let message = match target {
            Target::Any if req.name.is_empty() => String::from(
                "there is no default export: name a provider (NBD_OPT_LIST lists them)",
            ),
            _ => format!("no multipath provider {:?} is exported", req.name),
        };
        send_error(wr, code, REP_ERR_UNKNOWN, &message)?;
        return Ok(None);
    };
    let session = if go {
        match shared.open(export.clone()) {
            Ok(s) => Some(s),
            Err(e) => {
                let (rep, text) = if e == Errno::ENXIO {
                    (REP_ERR_UNKNOWN, "the provider is gone".to_string())
                } else {
                    (
                        REP_ERR_POLICY,
                        format!(
                            "cannot open multipath/{}: {}",
                            export.name,
                            nix::errno::Errno::from_raw(e.0).desc()
                        ),
                    )
                };
                send_error(wr, code, rep, &text)?;
                return Ok(None);
            }
        }
    } else {
        None
    };
    // INFO cannot know whether writing will be refused: it describes a writable export.
    let flags = transmission_flags(session.as_ref().is_some_and(|s| s.read_only));
    let mut replies = vec![
        OptionReply::Info(Info::Export {
            size: export.mediasize,
            flags,
        }),
        OptionReply::Info(block_size(&export)),
    ];
    if req.requests.contains(&INFO_NAME) {
        replies.push(OptionReply::Info(Info::Name(export.name.clone())));
    }
    if req.requests.contains(&INFO_DESCRIPTION) {
        replies.push(OptionReply::Info(Info::Description(format!(
            "GEOM MULTIPATH provider multipath/{}",
            export.name
        ))));
    }
    replies.push(OptionReply::Ack);
    if let Err(e) = send_replies(wr, code, &replies) {
        if let Some(s) = &session {
            shared.close(s);
        }
        return Err(e.into());
    }
    Ok(session)
}

/// A reply on its way to the writer thread.
struct Outgoing {
    handle: u64,
    /// The data of a successful read, or the error (a host errno).
    result: Result<Option<IoBuf>, Errno>,
    /// What the request counted against the connection's in-flight budget.
    cost: usize,
}

/// The in-flight budget of one connection.
#[derive(Default)]
struct Flight {
    /// (requests, bytes).
    state: Mutex<(usize, usize)>,
    changed: Condvar,
}

impl Flight {
    /// Waits until a request costing `cost` bytes fits; `false` if the server is stopping.
    fn admit(&self, cost: usize, stopping: &AtomicBool) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let fits =
                s.0 == 0 || (s.0 < MAX_INFLIGHT_REQUESTS && s.1 + cost <= MAX_INFLIGHT_BYTES);
            if fits {
                s.0 += 1;
                s.1 += cost;
                return true;
            }
            if stopping.load(Ordering::SeqCst) {
                return false;
            }
            s = self
                .changed
                .wait_timeout(s, TICK)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn done(&self, cost: usize) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.0 = s.0.saturating_sub(1);
        s.1 = s.1.saturating_sub(cost);
        self.changed.notify_all();
    }
}

/// The transmission phase: requests are read here, replies written by another thread.
fn transmission(
    shared: &Shared,
    session: &Session,
    rd: BufReader<Stream>,
    wr: Stream,
    stream: &Stream,
) -> anyhow::Result<()> {
    let (tx, rx) = crossbeam_channel::unbounded::<Outgoing>();
    let flight = Arc::new(Flight::default());
    let writer = {
        let flight = flight.clone();
        let exports = shared.exports.clone();
        let geom = session.export.geom;
        std::thread::Builder::new()
            .name("nbd-reply".into())
            .spawn(move || reply_loop(wr, rx, flight, exports, geom))
            .context("starting a reply thread")?
    };
    let mut reqs = Requests {
        shared,
        session,
        rd,
        tx,
        flight,
    };
    let result = reqs.run();
    if result.is_err() && !shared.stopping() {
        // A hard disconnect: replies still in flight are dropped. (When the server stops,
        // reading ends but the replies in flight still go out.)
        stream.shutdown();
    }
    drop(reqs);
    let _ = writer.join();
    result
}

/// Writes replies as the owner produces them, batching what is queued.
fn reply_loop(
    wr: Stream,
    rx: Receiver<Outgoing>,
    flight: Arc<Flight>,
    exports: SharedExports,
    geom: GeomId,
) {
    let mut w = BufWriter::with_capacity(256 << 10, wr);
    let mut broken = false;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(out) = next.take() {
            let withered = out.result.as_ref().err() == Some(&Errno::ENXIO)
                && exports
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .by_geom(geom)
                    .is_none();
            if !broken {
                if let Err(e) = write_reply(&mut w, &out) {
                    tracing::debug!("NBD: writing a reply: {e}");
                    broken = true;
                    w.get_ref().shutdown();
                }
            }
            flight.done(out.cost);
            if withered && !broken {
                // The provider is gone for good: tell this client, then hang up.
                let _ = w.flush();
                w.get_ref().shutdown();
                broken = true;
            }
            next = rx.try_recv().ok();
        }
        if !broken && w.flush().is_err() {
            broken = true;
            w.get_ref().shutdown();
        }
    }
}

fn write_reply(w: &mut BufWriter<Stream>, out: &Outgoing) -> io::Result<()> {
    let error = match &out.result {
        Ok(_) => 0,
        Err(e) => nbd_proto::errno_to_wire(e.0),
    };
    w.write_all(
        &SimpleReply {
            error,
            handle: out.handle,
        }
        .encode(),
    )?;
    if let Ok(Some(data)) = &out.result {
        w.write_all(data.as_slice())?;
    }
    Ok(())
}

/// The reading side of a connection in transmission.
struct Requests<'a> {
    shared: &'a Shared,
    session: &'a Session,
    rd: BufReader<Stream>,
    tx: Sender<Outgoing>,
    flight: Arc<Flight>,
}

/// Where a request's outcome goes.
type Finish = Box<dyn FnOnce(Result<Option<IoBuf>, Errno>) + Send>;

impl Requests<'_> {
    /// Reads requests until DISC or an oversized payload (`Ok`: the replies in flight
    /// still go out) or a protocol violation or hang-up (`Err`: they are dropped).
    fn run(&mut self) -> anyhow::Result<()> {
        loop {
            let mut h = [0u8; Request::LEN];
            self.rd
                .read_exact(&mut h)
                .context("the client hung up without NBD_CMD_DISC")?;
            let req = Request::decode(&h)?;
            let payload = match req.payload() {
                Ok(n) => n,
                Err(e) => {
                    // The payload cannot be skipped safely: answer, then hang up once the
                    // replies in flight (this one included) are out.
                    tracing::debug!("NBD: {e}; closing the connection");
                    self.answer_now(req.handle, Err(Errno::EINVAL));
                    return Ok(());
                }
            };
            if req.command == Command::Disc {
                return Ok(());
            }
            let cost = match req.command {
                Command::Read | Command::Write if req.length <= MAX_PAYLOAD => req.length as usize,
                _ => 0,
            };
            if !self.flight.admit(cost, &self.shared.stopping) {
                bail!("the server is stopping");
            }
            let finish = self.finish(req.handle, cost);
            if req.command == Command::Write {
                let mut buf = IoBuf::to_fill(payload);
                if let Err(e) = self.rd.read_exact(buf.as_mut_slice()) {
                    finish(Err(Errno::EIO));
                    return Err(e).context("reading a write payload");
                }
                self.dispatch(req, Some(buf), finish);
            } else {
                self.dispatch(req, None, finish);
            }
        }
    }

    /// A closure that queues the reply to `handle`.
    fn finish(&self, handle: u64, cost: usize) -> Finish {
        let tx = self.tx.clone();
        Box::new(move |result| {
            let _ = tx.send(Outgoing {
                handle,
                result,
                cost,
            });
        })
    }

    /// Answers at once, outside the in-flight budget's admission (it is being left).
    fn answer_now(&self, handle: u64, result: Result<Option<IoBuf>, Errno>) {
        let mut s = self
            .flight
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        s.0 += 1;
        drop(s);
        (self.finish(handle, 0))(result);
    }

    /// Checks a request against the export; the errno to answer with if it is refused.
    fn check(&self, req: &Request) -> Result<(), Errno> {
        let allowed = match req.command {
            Command::WriteZeroes => CMD_FLAG_FUA | CMD_FLAG_NO_HOLE,
            _ => CMD_FLAG_FUA,
        };
        if req.flags & !allowed != 0 {
            return Err(Errno::EINVAL);
        }
        let writes = matches!(
            req.command,
            Command::Write | Command::Trim | Command::WriteZeroes
        );
        if writes && self.session.read_only {
            return Err(Errno::EPERM);
        }
        if matches!(req.command, Command::Flush) {
            return Ok(());
        }
        let (size, sector) = self.shared.geometry(self.session);
        let sector = u64::from(sector.max(1));
        let len = u64::from(req.length);
        if req.offset % sector != 0 || len % sector != 0 {
            return Err(Errno::EINVAL);
        }
        if req.command == Command::Read && req.length > MAX_PAYLOAD {
            return Err(Errno::EINVAL);
        }
        let past_end = req.offset.checked_add(len).is_none_or(|end| end > size);
        if past_end {
            return Err(match req.command {
                Command::Write | Command::WriteZeroes => Errno::ENOSPC,
                _ => Errno::EINVAL,
            });
        }
        Ok(())
    }

    fn dispatch(&self, req: Request, payload: Option<IoBuf>, finish: Finish) {
        let known = matches!(
            req.command,
            Command::Read
                | Command::Write
                | Command::Flush
                | Command::Trim
                | Command::Cache
                | Command::WriteZeroes
        );
        if !known {
            return finish(Err(Errno::EINVAL));
        }
        if let Err(e) = self.check(&req) {
            return finish(Err(e));
        }
        let geom = self.session.export.geom;
        let owner = &self.shared.owner;
        let fua = req.flags & CMD_FLAG_FUA != 0;
        let len = u64::from(req.length);
        match req.command {
            Command::Read if len == 0 => finish(Ok(None)),
            Command::Read => owner.io(IoRequest {
                geom,
                op: IoOp::Read(IoBuf::to_fill(req.length as usize)),
                offset: req.offset,
                reply: Box::new(move |r| match r {
                    Ok(IoReply::Data(buf)) => finish(Ok(Some(buf))),
                    Ok(_) => finish(Err(Errno::EIO)),
                    Err(e) => finish(Err(e)),
                }),
            }),
            Command::Write | Command::Trim if len == 0 => finish(Ok(None)),
            Command::Write => owner.io(IoRequest {
                geom,
                op: IoOp::Write(payload.unwrap_or_else(|| IoBuf::zeroed(0))),
                offset: req.offset,
                reply: then_flush(owner.clone(), geom, fua, finish),
            }),
            Command::Trim => owner.io(IoRequest {
                geom,
                op: IoOp::Delete(len),
                offset: req.offset,
                reply: then_flush(owner.clone(), geom, fua, finish),
            }),
            Command::Flush => owner.io(IoRequest {
                geom,
                op: IoOp::Flush,
                offset: 0,
                reply: Box::new(move |r| finish(r.map(|_| None))),
            }),
            Command::WriteZeroes => Zeroes {
                owner: owner.clone(),
                geom,
                offset: req.offset,
                left: len,
                fua,
                finish,
            }
            .step(),
            // CACHE is a hint; the range was checked.
            _ => finish(Ok(None)),
        }
    }
}

/// The reply closure of a write or trim: with FUA, a flush follows before the answer.
fn then_flush(owner: OwnerHandle, geom: GeomId, fua: bool, finish: Finish) -> crate::msg::ReplyFn {
    Box::new(move |r| match r {
        Err(e) => finish(Err(e)),
        Ok(_) if !fua => finish(Ok(None)),
        Ok(_) => owner.io(IoRequest {
            geom,
            op: IoOp::Flush,
            offset: 0,
            reply: Box::new(move |r| finish(r.map(|_| None))),
        }),
    })
}

/// A WRITE_ZEROES, carried out as a chain of writes of at most [`ZERO_CHUNK`] zeroes, each
/// sent from the previous one's reply closure.
struct Zeroes {
    owner: OwnerHandle,
    geom: GeomId,
    offset: u64,
    left: u64,
    fua: bool,
    finish: Finish,
}

impl Zeroes {
    fn step(mut self) {
        if self.left == 0 {
            let (owner, geom, fua) = (self.owner.clone(), self.geom, self.fua);
            return then_flush(owner, geom, fua, self.finish)(Ok(IoReply::Done));
        }
        let n = self.left.min(ZERO_CHUNK);
        let offset = self.offset;
        self.offset += n;
        self.left -= n;
        let (owner, geom) = (self.owner.clone(), self.geom);
        owner.io(IoRequest {
            geom,
            // `n` ≤ ZERO_CHUNK.
            op: IoOp::Write(IoBuf::zeroed(n as usize)),
            offset,
            reply: Box::new(move |r| match r {
                Ok(_) => self.step(),
                Err(e) => (self.finish)(Err(e)),
            }),
        });
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
                ..NbdConfig::default()
            },
            exports,
            owner,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a loopback address"), "{err}");
    }
}

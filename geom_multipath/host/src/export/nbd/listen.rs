//! The listener thread: it polls every listening socket — one private Unix socket per
//! provider in the export table, kept in step with the table through its watcher, and the
//! optional TCP listener — and starts a connection thread per client, up to the limit.

use super::*;

/// The listening sockets.
pub(super) struct Listeners {
    pub(super) dir: Option<PathBuf>,
    pub(super) created_dir: bool,
    /// Per-provider sockets: the listener and the inode of the socket file it made.
    pub(super) unix: BTreeMap<String, (UnixListener, u64)>,
    pub(super) tcp: Option<TcpListener>,
    /// The table generation the sockets were last made for.
    pub(super) seen: Option<u64>,
}

/// A provider name that can be a socket file name in the directory.
pub(super) fn socket_name_ok(dir: &Path, name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\0')
        && dir.join(name).as_os_str().len() < 108
}

/// Removes every socket in `dir` (left by a daemon that died).
pub(super) fn remove_stale_sockets(dir: &Path) -> anyhow::Result<()> {
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
    pub(super) fn sync(&mut self, shared: &Shared) {
        let Some(dir) = self.dir.clone() else {
            return;
        };
        let (generation, wanted): (u64, Vec<String>) = {
            let table = shared.table();
            let wanted = table
                .iter()
                .filter(|e| is_ready(e) && socket_name_ok(&dir, &e.name))
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
    pub(super) fn remove_all(&mut self) {
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
pub(super) fn bind_private(dir: &Path, name: &str) -> anyhow::Result<(UnixListener, u64)> {
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
pub(super) fn remove_socket(path: &Path, ino: u64) {
    if std::fs::metadata(path).is_ok_and(|m| m.ino() == ino) {
        let _ = std::fs::remove_file(path);
    }
}

pub(super) fn listen_loop(shared: Arc<Shared>, mut listeners: Listeners) {
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
pub(super) fn accept_all(shared: &Arc<Shared>, listeners: &Listeners, target: &Target) {
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

pub(super) fn spawn_connection(shared: &Arc<Shared>, stream: Stream, target: Target) {
    let unblocked = match &stream {
        Stream::Unix(s) => s.set_nonblocking(false),
        Stream::Tcp(s) => s.set_nonblocking(false),
    };
    let handle = stream.try_clone();
    let (Ok(()), Ok(handle)) = (unblocked, handle) else {
        return;
    };
    // One client (a TCP address, a Unix peer's uid) may hold at most MAX_PER_CLIENT of
    // the connections, so that idle ones of one client cannot starve the others.
    let client = client_of(&stream);
    let same = shared
        .conns
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .filter(|s| client_of(s) == client)
        .count();
    if same >= MAX_PER_CLIENT {
        tracing::warn!(
            "NBD: {client} holds {MAX_PER_CLIENT} connections already; refusing another"
        );
        return;
    }
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

pub(super) fn connection_ended(shared: &Shared) {
    let mut live = shared.live.lock().unwrap_or_else(PoisonError::into_inner);
    *live = live.saturating_sub(1);
    shared.live_changed.notify_all();
}

/// Who a connection belongs to, for the per-client limit: a TCP peer's address, a Unix
/// peer's uid.
pub(super) fn client_of(stream: &Stream) -> String {
    match stream {
        Stream::Tcp(s) => s
            .peer_addr()
            .map_or_else(|_| String::from("tcp"), |a| a.ip().to_string()),
        Stream::Unix(s) => peer_uid(s).map_or_else(|| String::from("unix"), |u| format!("uid {u}")),
    }
}

#[cfg(target_os = "linux")]
fn peer_uid(s: &std::os::unix::net::UnixStream) -> Option<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    getsockopt(s, PeerCredentials).ok().map(|c| c.uid())
}

#[cfg(not(target_os = "linux"))]
fn peer_uid(s: &std::os::unix::net::UnixStream) -> Option<u32> {
    nix::unistd::getpeereid(s).ok().map(|(uid, _)| uid.as_raw())
}

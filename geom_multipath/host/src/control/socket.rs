//! The control socket: the host's `/dev/geom.ctl`. A Unix stream socket, mode 0600 in a
//! runtime directory of the daemon's own ([`super::rundir`]: 0700, nothing on the way
//! another user could change), that only root (checked again with the peer's credentials)
//! may use. Each
//! connection gets a thread that reads framed [`Call`]s, hands each to the owner and writes
//! the [`Answer`] back.
//!
//! Whatever arrives, the daemon neither crashes nor wedges: an oversized, truncated or
//! undecodable frame gets an error answer and the connection is closed; a silent client is
//! dropped after [`IDLE_TIMEOUT`]; at most [`MAX_CONNECTIONS`] are served at once, at most
//! [`MAX_PER_CLIENT`] for one client; the rest are answered EBUSY.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use geom_multipath_proto::{read_frame, write_frame, Answer, Call, ProtoError};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::rundir::RunDir;
use crate::msg::OwnerHandle;

/// How long a connection may stay silent.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Connections one client (one process; one user where the platform names no process)
/// may hold at once, so that one tool's idle connections cannot keep the others out.
pub const MAX_PER_CLIENT: usize = 16;

/// The listening socket and its accept thread.
pub struct ControlServer {
    path: PathBuf,
    /// Closing it tells the accept loop to end (even if the socket file was removed).
    stop: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

/// Binds the socket at `path` and starts serving calls to `owner`.
pub fn serve(path: &Path, owner: OwnerHandle) -> anyhow::Result<ControlServer> {
    serve_with(path, owner, |_| Ok(()))
}

/// [`serve`], with `prepare` called on the listening socket once it is bound and before
/// the accept thread takes it (FreeBSD limits its capability rights there; connections
/// accepted from it inherit them).
pub fn serve_with(
    path: &Path,
    owner: OwnerHandle,
    prepare: impl FnOnce(&UnixListener) -> io::Result<()>,
) -> anyhow::Result<ControlServer> {
    let dir = RunDir::claim(path.parent().unwrap_or(Path::new(".")))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: no socket name", path.display()))?;
    dir.remove(name)
        .with_context(|| format!("removing stale {}", path.display()))?;
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("securing {}", path.display()))?;
    prepare(&listener).with_context(|| format!("preparing {}", path.display()))?;
    let (stop, stopped) = UnixStream::pair().context("creating the control thread's stop line")?;
    let thread = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || accept_loop(listener, owner, stopped))
        .context("starting the control thread")?;
    Ok(ControlServer {
        path: path.to_path_buf(),
        stop: Some(stop),
        thread: Some(thread),
    })
}

impl ControlServer {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        // The accept loop sees its end of the line hang up.
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Accepts connections until `stop` hangs up.
fn accept_loop(listener: UnixListener, owner: OwnerHandle, stop: UnixStream) {
    let active = Arc::new(AtomicUsize::new(0));
    let per_client: Arc<std::sync::Mutex<std::collections::HashMap<u64, usize>>> = Arc::default();
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        if fds[1].any().unwrap_or(true) {
            return;
        }
        let Ok((mut stream, _)) = listener.accept() else {
            continue;
        };
        if !peer_is_root(&stream) {
            refuse(&mut stream, libc::EPERM, "Operation not permitted");
            continue;
        }
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            refuse(&mut stream, libc::EBUSY, "too many connections");
            continue;
        }
        let client = peer_client(&stream);
        let release = {
            let per_client = per_client.clone();
            move || {
                let mut map = per_client.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(n) = map.get_mut(&client) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(&client);
                    }
                }
            }
        };
        {
            let mut map = per_client.lock().unwrap_or_else(|e| e.into_inner());
            let held = map.entry(client).or_default();
            if *held >= MAX_PER_CLIENT {
                drop(map);
                refuse(
                    &mut stream,
                    libc::EBUSY,
                    "too many connections from this client",
                );
                continue;
            }
            *held += 1;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let owner = owner.clone();
        let counter = active.clone();
        let on_end = release.clone();
        let spawned = std::thread::Builder::new()
            .name("control-conn".into())
            .spawn(move || {
                serve_connection(stream, &owner);
                on_end();
                counter.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            release();
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Root, or the daemon's own user (a test daemon run by that user).
fn peer_is_root(stream: &UnixStream) -> bool {
    match peer_uid(stream) {
        Some(uid) => uid == 0 || uid == nix::unistd::geteuid().as_raw(),
        None => false,
    }
}

/// Who a connection belongs to for [`MAX_PER_CLIENT`]: the peer's process id on Linux
/// (`SO_PEERCRED`), its uid elsewhere.
#[cfg(target_os = "linux")]
fn peer_client(stream: &UnixStream) -> u64 {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    getsockopt(stream, PeerCredentials).map_or(0, |c| c.pid() as u64)
}

/// Who a connection belongs to for [`MAX_PER_CLIENT`]: the peer's uid.
#[cfg(not(target_os = "linux"))]
fn peer_client(stream: &UnixStream) -> u64 {
    peer_uid(stream).map_or(0, u64::from)
}

/// The peer's effective uid (`SO_PEERCRED`).
#[cfg(target_os = "linux")]
fn peer_uid(stream: &UnixStream) -> Option<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    getsockopt(stream, PeerCredentials).ok().map(|c| c.uid())
}

/// The peer's effective uid (`getpeereid(3)`, `LOCAL_PEERCRED`).
#[cfg(not(target_os = "linux"))]
fn peer_uid(stream: &UnixStream) -> Option<u32> {
    nix::unistd::getpeereid(stream)
        .ok()
        .map(|(uid, _)| uid.as_raw())
}

fn refuse(stream: &mut UnixStream, errno: i32, text: &str) {
    let answer = Answer::Failed {
        errno,
        text: text.to_string(),
    };
    let _ = write_frame(stream, &answer.encode());
}

fn serve_connection(mut stream: UnixStream, owner: &OwnerHandle) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    loop {
        let payload = match read_frame(&mut stream) {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(ProtoError::Io(_)) => return,
            Err(e) => {
                refuse(
                    &mut stream,
                    libc::EINVAL,
                    &format!("malformed request: {e}"),
                );
                return;
            }
        };
        let answer = match Call::decode(&payload) {
            Ok(call) => owner.call(call),
            Err(e) => Answer::Failed {
                errno: libc::EINVAL,
                text: format!("malformed request: {e}"),
            },
        };
        if write_frame(&mut stream, &answer.encode()).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{self, Msg};
    use geom_multipath_proto::roundtrip;
    use std::io::Write;

    struct Fixture {
        dir: PathBuf,
        server: Option<ControlServer>,
        owner_thread: Option<JoinHandle<usize>>,
        handle: OwnerHandle,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            self.server.take();
            self.handle.send(Msg::Shutdown);
            if let Some(t) = self.owner_thread.take() {
                let _ = t.join();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// A server whose "owner" answers Ping and counts the calls it saw.
    fn fixture(tag: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("gmp-ctl-{tag}-{}", std::process::id()));
        let (handle, inbox) = msg::channel().unwrap();
        let owner_thread = std::thread::spawn(move || {
            let mut calls = 0;
            while let Ok(m) = inbox.rx.recv() {
                match m {
                    Msg::Call { reply, .. } => {
                        calls += 1;
                        let _ = reply.send(Answer::Pong { pid: 1 });
                    }
                    Msg::Shutdown => break,
                    _ => {}
                }
            }
            calls
        });
        let server = serve(&dir.join("geom.ctl"), handle.clone()).unwrap();
        Fixture {
            dir,
            server: Some(server),
            owner_thread: Some(owner_thread),
            handle,
        }
    }

    fn connect(f: &Fixture) -> UnixStream {
        UnixStream::connect(f.server.as_ref().unwrap().path()).unwrap()
    }

    #[test]
    fn socket_is_private_and_answers_calls() {
        let f = fixture("ok");
        let path = f.server.as_ref().unwrap().path().to_path_buf();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let mut s = connect(&f);
        assert_eq!(
            roundtrip(&mut s, &Call::Ping).unwrap(),
            Answer::Pong { pid: 1 }
        );
        assert_eq!(
            roundtrip(&mut s, &Call::Ping).unwrap(),
            Answer::Pong { pid: 1 }
        );
    }

    #[test]
    fn stopping_does_not_need_the_socket_file() {
        // Someone removed the run directory under the daemon: stopping must still end.
        let mut f = fixture("unlinked");
        std::fs::remove_dir_all(&f.dir).unwrap();
        let (done_tx, done) = std::sync::mpsc::channel();
        let server = f.server.take().unwrap();
        std::thread::spawn(move || {
            drop(server);
            let _ = done_tx.send(());
        });
        assert!(
            done.recv_timeout(Duration::from_secs(10)).is_ok(),
            "the accept thread did not end"
        );
    }

    #[test]
    fn garbage_gets_an_error_and_the_server_lives_on() {
        let f = fixture("garbage");
        for junk in [
            &b"\xff\xff\xff\x7fjunk"[..],         // announces 2 GiB
            &b"\x03\x00\x00\x00\x63\x00\x00"[..], // unknown call tag
            &b"\x00\x00\x00\x00"[..],             // empty frame
        ] {
            let mut s = connect(&f);
            s.write_all(junk).unwrap();
            let payload = read_frame(&mut s).unwrap().unwrap();
            match Answer::decode(&payload).unwrap() {
                Answer::Failed { errno, text } => {
                    assert_eq!(errno, libc::EINVAL);
                    assert!(text.starts_with("malformed request"), "{text}");
                }
                other => panic!("{other:?}"),
            }
        }
        // Truncated frame: the client hangs up mid-frame; the server just drops it.
        let mut s = connect(&f);
        s.write_all(b"\x10\x00\x00\x00\x0b").unwrap();
        drop(s);
        let mut s = connect(&f);
        assert_eq!(
            roundtrip(&mut s, &Call::Ping).unwrap(),
            Answer::Pong { pid: 1 }
        );
    }

    #[test]
    fn dropping_the_server_removes_the_socket() {
        let mut f = fixture("drop");
        let path = f.server.as_ref().unwrap().path().to_path_buf();
        f.server.take();
        assert!(!path.exists());
    }
}

//! Where geom(8)'s requests go. On FreeBSD that is the kernel (the GEOM_CTL ioctl on
//! /dev/geom.ctl, the kern.geom.confxml sysctl, kldload); on Linux it is the userland host,
//! `gmultipathd`, through its control socket. [`Backend`] is the seam; [`HostBackend`] is
//! the host client, which also starts the daemon the way kldload loads a module.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use geom_multipath::wire::Reply;
use geom_multipath::Request;
use geom_multipath_proto::{read_frame, socket_path, write_frame, Answer, Call, ProtoError};

/// Why [`Backend::unload`] failed; geom(8)'s `std_unload` words its two steps apart.
#[derive(Debug)]
pub enum UnloadError {
    /// `kldfind` found no such module file loaded: "Could not find module: …".
    NotFound(io::Error),
    /// `kldunload` refused: "Could not unload module: …".
    Refused(io::Error),
    /// The host refused because these providers are open (one a line): FreeBSD's line,
    /// then this one.
    Held(io::Error, String),
}

impl From<io::Error> for UnloadError {
    fn from(e: io::Error) -> Self {
        UnloadError::Refused(e)
    }
}

/// Why a class that may well be running cannot be asked anything: each has its own
/// message and exit status (`gmultipath(8)` EXIT STATUS), apart from FreeBSD's "not
/// running" (`Command 'X' not available; try 'load' first.`, exit 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unreachable {
    /// It answers, but serves no more connections now (all of them are in use).
    Busy(String),
    /// It is there, but this user may not talk to it.
    Denied(String),
}

/// `sysexits(3)`'s `EX_TEMPFAIL`: [`Unreachable::Busy`], try again later.
pub const EXIT_BUSY: i32 = 75;
/// `sysexits(3)`'s `EX_NOPERM`: [`Unreachable::Denied`].
pub const EXIT_DENIED: i32 = 77;

impl Unreachable {
    /// The exit status for this reason.
    pub fn exit_status(&self) -> i32 {
        match self {
            Unreachable::Busy(_) => EXIT_BUSY,
            Unreachable::Denied(_) => EXIT_DENIED,
        }
    }
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreachable::Busy(what) => {
                write!(f, "{what} is busy (too many connections); try again later.")
            }
            Unreachable::Denied(what) => write!(f, "{what}: Permission denied."),
        }
    }
}

/// What geom(8) needs from the kernel (or the host standing in for it).
pub trait Backend {
    /// `modfind("g_<class>")`: is the class's code running?
    fn loaded(&mut self) -> bool;
    /// Could `load` start it (module file or daemon binary present)?
    fn loadable(&mut self) -> bool;
    /// `kldload`: start it.
    fn load(&mut self) -> io::Result<()>;
    /// Whether something that is running refuses to be asked (busy, or not this user's
    /// to ask); `None` when it can be asked or is simply not running. The kernel is always
    /// reachable (geom(8) reports its errors per request).
    fn unreachable(&mut self) -> Option<Unreachable> {
        None
    }
    /// `kldfind` + `kldunload`: stop it.
    fn unload(&mut self) -> Result<(), UnloadError>;
    /// `gctl_issue`: run a request; `Err` is the transport failure's text.
    fn issue(&mut self, req: &Request) -> Result<Reply, String>;
    /// The `kern.geom.confxml` XML.
    fn confxml(&mut self) -> io::Result<String>;
    /// A call only the host understands (provider I/O, sysctl, probes); `None` on FreeBSD.
    fn host_call(&mut self, call: &Call) -> Option<io::Result<Answer>>;

    /// Returns once the kernel (or host) has handled the events the tool's own writes
    /// caused — the re-taste after closing a labelled provider — so that the next command,
    /// or an open of /dev/multipath/NAME, sees their outcome. GEOM's single event queue
    /// gives this on FreeBSD; the host drains its device watcher before every call.
    fn settle(&mut self) {}
}

/// Environment variable naming the daemon binary to start.
pub const DAEMON_ENV: &str = "GMULTIPATHD";
/// The daemon's name.
pub const DAEMON: &str = "gmultipathd";

/// The userland host, reached through its control socket.
pub struct HostBackend {
    socket: PathBuf,
}

impl Default for HostBackend {
    fn default() -> Self {
        HostBackend {
            socket: socket_path(),
        }
    }
}

fn proto_error(e: ProtoError) -> io::Error {
    match e {
        ProtoError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

impl HostBackend {
    /// A client for the daemon listening on `socket`.
    pub fn new(socket: PathBuf) -> Self {
        HostBackend { socket }
    }

    /// One call on a fresh connection. A daemon that refuses the connection answers
    /// before it has read anything and hangs up; its answer is read even when sending the
    /// call failed (`EPIPE`), so that the caller sees why instead of "Broken pipe".
    pub fn call(&self, call: &Call) -> io::Result<Answer> {
        let mut stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let sent = write_frame(&mut stream, &call.encode());
        match read_frame(&mut stream) {
            Ok(Some(payload)) => Answer::decode(&payload).map_err(proto_error),
            Ok(None) => Err(sent
                .err()
                .unwrap_or_else(|| io::ErrorKind::UnexpectedEof.into())),
            Err(e) => Err(sent.err().unwrap_or_else(|| proto_error(e))),
        }
    }

    /// The daemon as the user would name it in a message.
    fn described(&self) -> String {
        format!("{DAEMON} at {}", self.socket.display())
    }

    /// The daemon binary: `$GMULTIPATHD`, else next to this program, else on `$PATH`.
    pub fn daemon_binary() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(DAEMON_ENV) {
            return Some(p.into());
        }
        let sibling = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join(DAEMON)));
        if let Some(p) = sibling.filter(|p| p.is_file()) {
            return Some(p);
        }
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(DAEMON))
                .find(|p| p.is_file())
        })
    }

    /// The socket this client uses.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

/// An `Answer::Failed` as an `io::Error` carrying the daemon's errno.
fn failed(errno: i32, text: String) -> io::Error {
    if errno > 0 {
        io::Error::from_raw_os_error(errno)
    } else {
        io::Error::other(text)
    }
}

impl Backend for HostBackend {
    fn loaded(&mut self) -> bool {
        matches!(self.call(&Call::Ping), Ok(Answer::Pong { .. }))
    }

    fn loadable(&mut self) -> bool {
        Self::daemon_binary().is_some()
    }

    /// A socket this user may not open, or a daemon that answers `EPERM` (not root) or
    /// `EBUSY` (every connection in use) to a ping.
    fn unreachable(&mut self) -> Option<Unreachable> {
        match self.call(&Call::Ping) {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                Some(Unreachable::Denied(self.described()))
            }
            Ok(Answer::Failed { errno, .. }) if errno == nix::libc::EPERM => {
                Some(Unreachable::Denied(self.described()))
            }
            Ok(Answer::Failed { errno, .. }) if errno == nix::libc::EBUSY => {
                Some(Unreachable::Busy(self.described()))
            }
            _ => None,
        }
    }

    fn load(&mut self) -> io::Result<()> {
        let bin =
            Self::daemon_binary().ok_or_else(|| io::Error::from_raw_os_error(nix::libc::ENOENT))?;
        // The daemon forks; its first process exits once the socket answers, with a
        // non-zero status (and the reason on stderr) if it could not start.
        let status = Command::new(&bin)
            .arg("--socket")
            .arg(&self.socket)
            .status()?;
        if status.success() && self.loaded() {
            Ok(())
        } else {
            Err(io::Error::other(format!("{} did not start", bin.display())))
        }
    }

    /// A daemon that cannot be reached is the module kldfind cannot find.
    fn unload(&mut self) -> Result<(), UnloadError> {
        match self.call(&Call::Unload).map_err(UnloadError::NotFound)? {
            Answer::Done => Ok(()),
            Answer::Failed { errno, text } if errno == nix::libc::EBUSY && !text.is_empty() => {
                Err(UnloadError::Held(io::Error::from_raw_os_error(errno), text))
            }
            Answer::Failed { errno, text } => Err(failed(errno, text).into()),
            other => Err(io::Error::other(format!("unexpected answer {other:?}")).into()),
        }
    }

    fn issue(&mut self, req: &Request) -> Result<Reply, String> {
        match self.call(&Call::Ctl(req.clone())) {
            Ok(Answer::Ctl(reply)) => Ok(reply),
            Ok(Answer::Failed { text, .. }) => Err(text),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(crate::strerror(&e)),
        }
    }

    fn confxml(&mut self) -> io::Result<String> {
        match self.call(&Call::ConfXml)? {
            Answer::Text(xml) => Ok(xml),
            Answer::Failed { errno, text } => Err(failed(errno, text)),
            other => Err(io::Error::other(format!("unexpected answer {other:?}"))),
        }
    }

    fn host_call(&mut self, call: &Call) -> Option<io::Result<Answer>> {
        Some(self.call(call))
    }

    fn settle(&mut self) {
        let _ = self.call(&Call::Ping);
    }
}

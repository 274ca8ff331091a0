//! NBD paths: a provider whose name is an NBD URI (`nbd://host[:port]/export`,
//! `nbd+unix:///export?socket=/path`) is an export of an NBD server, reached over one
//! connection ([`NbdDevice`], a [`Device`]) and kept connected by a supervisor thread per
//! URI ([`NbdPaths`]).
//!
//! This module owns the client side of the protocol: URI parsing (the NBD URI spec,
//! `doc/uri.md` of the NBD project), connecting with a bounded timeout, the handshake
//! (`NBD_OPT_GO` with `NBD_INFO_BLOCK_SIZE`, falling back to `NBD_OPT_EXPORT_NAME` on an
//! old server), and the transmission phase with many requests in flight: callers write
//! requests under one lock, and one reader thread per connection matches replies to
//! waiting callers by handle. It never talks to the core; the owner learns of a
//! connection's death and rebirth through `Msg::ProviderDown` / `Msg::ProviderUp`.
//!
//! # Failure semantics
//!
//! * A connection that breaks (reader error, EOF, a protocol violation, `NBD_ESHUTDOWN`,
//!   [`Device::fence`]) is dead for good: every request in flight and every later one
//!   fails with ENXIO at once, which fails the path. The supervisor then sends
//!   `ProviderDown{name: uri}` and reconnects with a backoff doubling from 50 ms to 1 s;
//!   on success it sends `ProviderUp` with a new device (`Source::Fixed`), which the owner
//!   tastes, so a labelled remote disk rejoins its geom by its UUID.
//! * A request not answered within `io_timeout` (when non-zero) fails with ENXIO; the
//!   connection lives on and a late reply is discarded. Writes on the socket time out
//!   after `io_timeout` without progress, which kills the connection (the stream is no
//!   longer in step).
//! * TCP: keepalive (idle 1 s, interval 1 s, 3 probes) and `TCP_USER_TIMEOUT`
//!   ([`ClientOptions::tcp_user_timeout`], 3 s) make a cut link an error in seconds instead
//!   of a hang of many minutes; `TCP_NODELAY` keeps small requests from waiting.
//! * The sector size is the server's minimum block size, at least 512; the media size is
//!   cut to a whole number of sectors; requests larger than the server's maximum payload
//!   (32 MiB at most) are split and sent together. Without `NBD_FLAG_SEND_FLUSH` a flush
//!   succeeds at once; without `NBD_FLAG_SEND_TRIM` a discard is EOPNOTSUPP; on a
//!   read-only export a write is EPERM.
//!
//! Not done: TLS (`nbds://` is refused), structured replies, block status.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use geom_multipath::{Errno, ProviderInfo};
use thiserror::Error;

use crate::msg::{Msg, OwnerHandle};
use crate::nbd_proto::Stream;
use crate::nbd_proto::{
    self, ClientOption, Command, ExportNameReply, Greeting, Info, InfoRequest, OptionReply,
    OptionReplyHeader, Request, SimpleReply, FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES,
    FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, FLAG_READ_ONLY, FLAG_SEND_FLUSH, FLAG_SEND_TRIM,
    INFO_BLOCK_SIZE, MAX_PAYLOAD, NBD_ESHUTDOWN, OPT_GO, REP_ERR_POLICY, REP_ERR_UNKNOWN,
    REP_ERR_UNSUP,
};
use crate::path::device::Device;
use crate::path::device::Source;

mod connection;
mod uri;

pub use connection::*;
pub use uri::*;

/// How long connecting and the handshake may take together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The sector size of an export that advertises no larger minimum block size.
pub const MIN_SECTOR: u32 = 512;
/// Keepalive: seconds idle before the first probe.
const KEEPALIVE_IDLE: u32 = 1;
/// Keepalive: seconds between probes.
const KEEPALIVE_INTERVAL: u32 = 1;
/// Keepalive: probes lost before the connection is dropped.
const KEEPALIVE_COUNT: u32 = 3;
/// The largest trim sent in one request.
const MAX_TRIM: u64 = 1 << 30;
/// Why a connection ends when its device is dropped (not worth more than a debug line).
const CLOSED: &str = "closed";

/// How connections are made and kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Connecting plus the handshake ([`CONNECT_TIMEOUT`]).
    pub connect_timeout: Duration,
    /// The first reconnection delay (doubles after each failure).
    pub retry_min: Duration,
    /// The longest reconnection delay.
    pub retry_max: Duration,
    /// `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged.
    pub tcp_user_timeout: Duration,
}

impl Default for ClientOptions {
    /// 5 s to connect, reconnect after 50 ms … 1 s, 3 s user timeout.
    fn default() -> ClientOptions {
        ClientOptions {
            connect_timeout: CONNECT_TIMEOUT,
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_secs(1),
            tcp_user_timeout: Duration::from_secs(3),
        }
    }
}

// ----- errors ----------------------------------------------------------------------------

/// Why an NBD path could not be attached.
#[derive(Debug, Error)]
pub enum NbdError {
    /// The URI is not usable.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// The server could not be reached.
    #[error("{uri}: cannot connect to {addr}: {source}")]
    Connect {
        /// The URI.
        uri: String,
        /// The address tried last.
        addr: String,
        /// The error.
        source: io::Error,
    },
    /// Reading or writing failed during the handshake (a timeout, a hang-up).
    #[error("{uri}: {what}: {source}")]
    Io {
        /// The URI.
        uri: String,
        /// What was being done.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The server broke the protocol.
    #[error("{uri}: protocol error: {why}")]
    Protocol {
        /// The URI.
        uri: String,
        /// What it did.
        why: String,
    },
    /// The server refused the export.
    #[error("{uri}: the server refused export {export:?}: {} {message}", nbd_proto::reply_name(*.code))]
    Refused {
        /// The URI.
        uri: String,
        /// The export name.
        export: String,
        /// The option reply (`REP_ERR_*`).
        code: u32,
        /// The server's message.
        message: String,
    },
}

impl NbdError {
    /// The errno that stands for this error.
    pub fn errno(&self) -> Errno {
        match self {
            NbdError::Uri(_) => Errno::EINVAL,
            NbdError::Connect { source, .. } | NbdError::Io { source, .. } => match source.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Errno(libc::ETIMEDOUT),
                io::ErrorKind::UnexpectedEof => Errno(libc::ECONNRESET),
                _ => Errno(source.raw_os_error().unwrap_or(libc::EIO)),
            },
            NbdError::Protocol { .. } => Errno(libc::EPROTO),
            NbdError::Refused { code, .. } => match *code {
                REP_ERR_UNKNOWN => Errno(libc::ENOENT),
                REP_ERR_POLICY => Errno(libc::EACCES),
                _ => Errno(libc::EPROTO),
            },
        }
    }
}

impl From<NbdError> for Errno {
    fn from(e: NbdError) -> Errno {
        e.errno()
    }
}

// ----- the registry of NBD paths ---------------------------------------------------------

/// One supervised URI.
struct Supervised {
    /// Set under its lock when supervision ends; the supervisor sends nothing after.
    stopped: Arc<Mutex<bool>>,
    /// Dropped to wake the supervisor when supervision ends.
    _wake: Sender<()>,
    /// The connection in use, if any.
    current: Arc<Mutex<Option<Arc<NbdDevice>>>>,
}

/// The NBD paths the host uses: one supervisor thread per URI that notices a connection
/// dying and reconnects (see the module doc). The owner keeps one and calls
/// [`NbdPaths::attach`] for a provider name that is an NBD URI and not yet a provider.
#[derive(Default)]
pub struct NbdPaths {
    options: ClientOptions,
    supervised: HashMap<String, Supervised>,
}

impl std::fmt::Debug for NbdPaths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdPaths")
            .field("uris", &self.supervised.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl NbdPaths {
    /// No paths yet, default options.
    pub fn new() -> NbdPaths {
        NbdPaths::default()
    }

    /// No paths yet, these options (tests use short timeouts).
    #[cfg(any(test, feature = "testkit"))]
    pub fn with_options(options: ClientOptions) -> NbdPaths {
        NbdPaths {
            options,
            supervised: HashMap::new(),
        }
    }

    /// Connects to `uri` now (within the connect timeout, so the owner may call it while
    /// running a verb) and supervises it from then on: when the connection dies the
    /// owner gets `ProviderDown{name: uri}`, and after each reconnection
    /// `ProviderUp{info, Source::Fixed(device)}`. Returns the provider to insert now.
    /// A URI already supervised gets the new connection (the old one is closed); if
    /// connecting fails, an existing supervisor keeps trying.
    pub fn attach(
        &mut self,
        uri: &str,
        owner: OwnerHandle,
        io_timeout: Duration,
    ) -> Result<(ProviderInfo, Arc<dyn Device>), NbdError> {
        let parsed = NbdUri::parse(uri)?;
        let device = Arc::new(NbdDevice::connect(&parsed, io_timeout, &self.options)?);
        self.detach(uri);
        let died = device.died();
        self.supervise_from(parsed, owner, io_timeout, Some(device.clone()), died)?;
        let info = device.info().clone();
        Ok((info, device))
    }

    /// Supervises `uri` without connecting now: the supervisor keeps trying in the
    /// background and announces the provider with `ProviderUp` once it answers (the
    /// daemon's start-up paths, whose servers may come up later than the daemon).
    pub fn supervise(
        &mut self,
        uri: &str,
        owner: OwnerHandle,
        io_timeout: Duration,
    ) -> Result<(), NbdError> {
        let parsed = NbdUri::parse(uri)?;
        self.detach(uri);
        // A "died" signal that has already fired: the supervisor starts by reconnecting.
        let (_, died) = crossbeam_channel::bounded::<()>(0);
        self.supervise_from(parsed, owner, io_timeout, None, died)
    }

    fn supervise_from(
        &mut self,
        parsed: NbdUri,
        owner: OwnerHandle,
        io_timeout: Duration,
        device: Option<Arc<NbdDevice>>,
        died: Receiver<()>,
    ) -> Result<(), NbdError> {
        let uri = parsed.text.clone();
        let stopped = Arc::new(Mutex::new(false));
        let (wake_tx, wake) = crossbeam_channel::bounded::<()>(0);
        let current = Arc::new(Mutex::new(device));
        let sup = Supervisor {
            uri: parsed,
            owner,
            io_timeout,
            options: self.options.clone(),
            stopped: stopped.clone(),
            wake,
            current: current.clone(),
        };
        std::thread::Builder::new()
            .name("nbd-supervise".into())
            .spawn(move || sup.run(died))
            .map_err(|source| NbdError::Io {
                uri: uri.clone(),
                what: "starting the supervisor",
                source,
            })?;
        self.supervised.insert(
            uri,
            Supervised {
                stopped,
                _wake: wake_tx,
                current,
            },
        );
        Ok(())
    }

    /// Stops supervising `uri` and closes its connection (its device fails with ENXIO
    /// from now on; removing the provider is the owner's business). `false` if it was
    /// not supervised.
    pub fn detach(&mut self, uri: &str) -> bool {
        let Some(s) = self.supervised.remove(uri) else {
            return false;
        };
        *s.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        if let Some(d) = s
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            d.fence();
        }
        true
    }

    /// `true` if `uri` is supervised (for tests).
    #[cfg(any(test, feature = "testkit"))]
    pub fn is_attached(&self, uri: &str) -> bool {
        self.supervised.contains_key(uri)
    }

    /// The supervised URIs.
    pub fn uris(&self) -> impl Iterator<Item = &str> {
        self.supervised.keys().map(String::as_str)
    }
}

impl Drop for NbdPaths {
    fn drop(&mut self) {
        let uris: Vec<String> = self.supervised.keys().cloned().collect();
        for uri in uris {
            self.detach(&uri);
        }
    }
}

/// The supervisor thread of one URI.
struct Supervisor {
    uri: NbdUri,
    owner: OwnerHandle,
    io_timeout: Duration,
    options: ClientOptions,
    stopped: Arc<Mutex<bool>>,
    /// Disconnected when supervision ends.
    wake: Receiver<()>,
    current: Arc<Mutex<Option<Arc<NbdDevice>>>>,
}

impl Supervisor {
    fn run(self, mut died: Receiver<()>) {
        let name = self.uri.text.clone();
        loop {
            crossbeam_channel::select! {
                recv(died) -> _ => {}
                recv(self.wake) -> _ => return,
            }
            {
                let stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
                if *stopped {
                    return;
                }
                self.current
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                if !self.owner.send(Msg::ProviderDown { name: name.clone() }) {
                    return;
                }
            }
            tracing::warn!("{name}: connection lost; reconnecting");
            let mut backoff = self.options.retry_min;
            loop {
                match self.wake.recv_timeout(backoff) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                match NbdDevice::connect(&self.uri, self.io_timeout, &self.options) {
                    Ok(device) => {
                        let device = Arc::new(device);
                        let stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
                        if *stopped {
                            device.fence();
                            return;
                        }
                        died = device.died();
                        *self.current.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(device.clone());
                        let info = device.info().clone();
                        if !self.owner.send(Msg::ProviderUp {
                            info,
                            source: Source::Fixed(device),
                        }) {
                            return;
                        }
                        tracing::info!("{name}: reconnected");
                        break;
                    }
                    Err(e) => {
                        tracing::debug!("{e}");
                        backoff = (backoff * 2).min(self.options.retry_max);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> NbdUri {
        NbdUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn why(s: &str) -> String {
        NbdUri::parse(s).unwrap_err().why
    }

    #[test]
    fn uris_as_the_spec_gives_them() {
        let tcp = |host: &str, port| Transport::Tcp {
            host: host.into(),
            port,
        };
        let u = parse("nbd://example.com:10810/disk");
        assert_eq!(
            (u.transport, u.export.as_str()),
            (tcp("example.com", 10810), "disk")
        );
        // The export-name table of doc/uri.md.
        assert_eq!(parse("nbd://example.com/disk").export, "disk");
        assert_eq!(parse("nbd+unix:///disk?socket=sock").export, "disk");
        assert_eq!(parse("nbd://example.com/").export, "");
        assert_eq!(parse("nbd://example.com").export, "");
        assert_eq!(parse("nbd://example.com//disk").export, "/disk");
        assert_eq!(
            parse("nbd://example.com/hello%20world").export,
            "hello world"
        );
        assert_eq!(
            parse("nbd://example.com/x").transport,
            tcp("example.com", 10809)
        );
        assert_eq!(
            parse("nbd://example.com:/x").transport,
            tcp("example.com", 10809)
        );
        assert_eq!(parse("nbd://[::1]:2000/x").transport, tcp("::1", 2000));
        assert_eq!(parse("nbd://[fe80::1]/x").transport, tcp("fe80::1", 10809));
        assert_eq!(
            parse("NBD://127.0.0.1/x").transport,
            tcp("127.0.0.1", 10809)
        );
        let u = parse("nbd+unix:///FRED?socket=/run/gmultipath/nbd/FRED");
        assert_eq!(
            u.transport,
            Transport::Unix("/run/gmultipath/nbd/FRED".into())
        );
        assert_eq!(u.export, "FRED");
        assert_eq!(u.text, "nbd+unix:///FRED?socket=/run/gmultipath/nbd/FRED");
        assert_eq!(
            parse("nbd+unix:///?socket=%00/abstract").transport,
            Transport::UnixAbstract(b"/abstract".to_vec())
        );
        assert_eq!(
            parse("nbd+unix:///?socket=/a%20b&x-test=1").transport,
            Transport::Unix("/a b".into())
        );
    }

    #[test]
    fn unusable_uris_say_why() {
        assert!(why("nbds://h/x").contains("TLS"));
        assert!(why("nbds+unix:///x?socket=/s").contains("TLS"));
        assert!(why("http://h/x").contains("unsupported scheme"));
        assert!(why("nbd+unix:///x").contains("no socket="));
        assert!(why("nbd+unix://host/x?socket=/s").contains("takes no host"));
        assert!(why("nbd:///x").contains("no host"));
        assert!(why("nbd://h:99999/x").contains("bad port"));
        assert!(why("nbd://h:0/x").contains("bad port"));
        assert!(why("nbd://user@h/x").contains("user"));
        assert!(why("nbd://h/x?socket=/s").contains("nbd+unix"));
        assert!(why("nbd://h/x?tls-type=anon").contains("TLS"));
        assert!(why("nbd://h/x?bogus=1").contains("unknown query parameter"));
        assert!(why("nbd://h/x#frag").contains("fragment"));
        assert!(why("nbd://h/%zz").contains("%-escape"));
        assert!(why("nbd://h/%00").contains("not a valid NBD string"));
        assert!(why("nbd://[::1/x").contains("closing ]"));
        assert!(why("loop0").contains("not a URI"));
        assert!(!is_uri("loop0"));
        assert!(!is_uri("/dev/loop0"));
        assert!(!is_uri("md0.nop"));
        assert!(is_uri("nbd://h/x"));
        assert!(is_uri("nbd+unix:///x?socket=/s"));
        assert!(is_uri("http://h/x"));
        assert_eq!(
            NbdUri::parse("nbds://h/x").unwrap_err().to_string(),
            "nbds://h/x: TLS (nbds) is not supported; an NBD path is nbd://HOST[:PORT]/EXPORT \
             or nbd+unix:///EXPORT?socket=PATH"
        );
    }

    #[test]
    fn block_sizes_fall_back_to_the_defaults() {
        assert_eq!(sanitize_block(None), (1, 4096, MAX_PAYLOAD));
        assert_eq!(
            sanitize_block(Some((512, 4096, 1 << 20))),
            (512, 4096, 1 << 20)
        );
        assert_eq!(sanitize_block(Some((3, 5, 0))), (1, 4096, MAX_PAYLOAD));
        assert_eq!(
            sanitize_block(Some((4096, 512, 1))),
            (4096, 4096, MAX_PAYLOAD)
        );
    }

    #[test]
    fn errors_have_errnos() {
        let e = NbdError::Refused {
            uri: "nbd://h/x".into(),
            export: "x".into(),
            code: REP_ERR_UNKNOWN,
            message: "no such export".into(),
        };
        assert_eq!(Errno::from(e), Errno(libc::ENOENT));
        let e = NbdError::Io {
            uri: "u".into(),
            what: "w",
            source: io::ErrorKind::WouldBlock.into(),
        };
        assert_eq!(e.errno(), Errno(libc::ETIMEDOUT));
        let e = NbdError::Uri(NbdUri::parse("x").unwrap_err());
        assert_eq!(e.errno(), Errno::EINVAL);
    }
}

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

use crate::export::nbd::Stream;
use crate::msg::{Msg, OwnerHandle};
use crate::nbd_proto::{
    self, ClientOption, Command, ExportNameReply, Greeting, Info, InfoRequest, OptionReply,
    OptionReplyHeader, Request, SimpleReply, FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES,
    FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, FLAG_READ_ONLY, FLAG_SEND_FLUSH, FLAG_SEND_TRIM,
    INFO_BLOCK_SIZE, MAX_PAYLOAD, NBD_ESHUTDOWN, OPT_GO, REP_ERR_POLICY, REP_ERR_UNKNOWN,
    REP_ERR_UNSUP,
};
use crate::owner::providers::Source;
use crate::path::device::Device;

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

// ----- URIs ------------------------------------------------------------------------------

/// Where an NBD server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP (`nbd://host:port`).
    Tcp {
        /// Host name or address (an IPv6 address without brackets).
        host: String,
        /// Port (10809 by default).
        port: u16,
    },
    /// A Unix socket file (`nbd+unix:///?socket=/path`).
    Unix(PathBuf),
    /// A Unix socket in the abstract namespace (`socket=%00name`), without the NUL.
    UnixAbstract(Vec<u8>),
}

/// A parsed NBD URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NbdUri {
    /// The URI as given (the provider's name).
    pub text: String,
    /// Where the server is.
    pub transport: Transport,
    /// The export name (the path without its leading `/`, percent-decoded).
    pub export: String,
}

/// Why a string is not an NBD URI this host can use.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{uri}: {why}")]
pub struct UriError {
    /// The string.
    pub uri: String,
    /// What is wrong with it.
    pub why: String,
}

/// The usage hint of every URI error.
const URI_FORMS: &str = "an NBD path is nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH";

/// `true` if `s` is a URI (`scheme://…`): such a provider name is never a device, so it is
/// for [`NbdUri::parse`] to accept or to explain.
pub fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && rest.starts_with("//")
}

/// Decodes `%XX` escapes.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

impl NbdUri {
    /// Parses an NBD URI (see the module doc for what is accepted).
    pub fn parse(s: &str) -> Result<NbdUri, UriError> {
        let err = |why: String| UriError {
            uri: s.to_string(),
            why,
        };
        if !is_uri(s) {
            return Err(err(format!("not a URI; {URI_FORMS}")));
        }
        let (scheme, rest) = s.split_once(':').unwrap_or_default();
        let scheme = scheme.to_ascii_lowercase();
        let unix = match scheme.as_str() {
            "nbd" => false,
            "nbd+unix" => true,
            "nbds" | "nbds+unix" => {
                return Err(err(format!("TLS ({scheme}) is not supported; {URI_FORMS}")))
            }
            _ => return Err(err(format!("unsupported scheme {scheme:?}; {URI_FORMS}"))),
        };
        let rest = &rest[2..];
        if rest.contains('#') {
            return Err(err("a fragment (#) has no meaning in an NBD URI".into()));
        }
        let (hier, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match hier.find('/') {
            Some(i) => hier.split_at(i),
            None => (hier, ""),
        };
        let export = percent_decode(path.strip_prefix('/').unwrap_or(path))
            .ok_or_else(|| err("bad %-escape in the export name".into()))?;
        let export = String::from_utf8(export)
            .ok()
            .filter(|e| nbd_proto::valid_string(e))
            .ok_or_else(|| err("the export name is not a valid NBD string".into()))?;
        let mut socket = None;
        for param in query.into_iter().flat_map(|q| q.split('&')) {
            if param.is_empty() {
                continue;
            }
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            let value =
                percent_decode(value).ok_or_else(|| err(format!("bad %-escape in {key}=")))?;
            match key {
                "socket" if unix => socket = Some(value),
                "socket" => return Err(err("socket= is for nbd+unix:// URIs".into())),
                k if k.starts_with("tls") => {
                    return Err(err(format!("{k}=: TLS is not supported")))
                }
                k if k.starts_with("x-") => {}
                k => return Err(err(format!("unknown query parameter {k:?}"))),
            }
        }
        let transport = if unix {
            if !authority.is_empty() {
                return Err(err(format!(
                    "nbd+unix:// takes no host ({authority:?}); {URI_FORMS}"
                )));
            }
            match socket {
                None => return Err(err(format!("no socket= parameter; {URI_FORMS}"))),
                Some(s) if s.is_empty() => return Err(err("socket= is empty".into())),
                Some(s) if s[0] == 0 => Transport::UnixAbstract(s[1..].to_vec()),
                Some(s) => Transport::Unix(PathBuf::from(OsStr::from_bytes(&s))),
            }
        } else {
            parse_authority(authority).map_err(err)?
        };
        Ok(NbdUri {
            text: s.to_string(),
            transport,
            export,
        })
    }
}

/// `host[:port]` of an `nbd://` URI.
fn parse_authority(authority: &str) -> Result<Transport, String> {
    if authority.is_empty() {
        return Err(format!("no host; {URI_FORMS}"));
    }
    if authority.contains('@') {
        return Err("user information (user@) is only for TLS, which is not supported".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| "an IPv6 address without its closing ]".to_string())?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("garbage after the IPv6 address: {p:?}"))?,
            ),
        };
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let host = percent_decode(&host)
        .and_then(|h| String::from_utf8(h).ok())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("bad host {host:?}"))?;
    let port = match port {
        None | Some("") => nbd_proto::DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("bad port {p:?}"))?,
    };
    Ok(Transport::Tcp { host, port })
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

// ----- the device ------------------------------------------------------------------------

/// What a request comes to: a READ's data, nothing, or an errno.
type Outcome = Result<Option<Vec<u8>>, Errno>;

/// A request waiting for its reply.
struct Waiter {
    /// The data length a successful reply carries (a READ's length, else 0).
    read_len: usize,
    /// Where the outcome goes (nobody listens any more after a deadline).
    tx: Sender<Outcome>,
}

/// One connection, shared by the device and its reader thread.
struct Conn {
    uri: String,
    /// For shutdown(2).
    socket: Stream,
    /// Requests are written under this lock.
    writer: Mutex<Stream>,
    /// Requests in flight, by handle.
    pending: Mutex<HashMap<u64, Waiter>>,
    /// Set (under `pending`'s lock) when the connection is gone.
    dead: AtomicBool,
    next_handle: AtomicU64,
    io_timeout: Option<Duration>,
}

impl Conn {
    /// Ends the connection: every request in flight and every later one fails with ENXIO.
    fn kill(&self, why: &str) {
        let drained = {
            let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if self.dead.swap(true, Ordering::SeqCst) {
                Vec::new()
            } else {
                if why == CLOSED {
                    tracing::debug!("{}: connection closed", self.uri);
                } else {
                    tracing::info!("{}: connection closed: {why}", self.uri);
                }
                p.drain().map(|(_, w)| w).collect()
            }
        };
        self.socket.shutdown();
        for w in drained {
            let _ = w.tx.send(Err(Errno::ENXIO));
        }
    }

    /// Sends one request; the receiver gets its outcome.
    fn submit(
        &self,
        command: Command,
        flags: u16,
        offset: u64,
        length: u32,
        payload: Option<&[u8]>,
    ) -> Result<Receiver<Outcome>, Errno> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        {
            let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if self.dead.load(Ordering::SeqCst) {
                return Err(Errno::ENXIO);
            }
            let read_len = if command == Command::Read {
                length as usize
            } else {
                0
            };
            p.insert(handle, Waiter { read_len, tx });
        }
        let header = Request {
            flags,
            command,
            handle,
            offset,
            length,
        }
        .encode();
        let written = {
            let mut w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            if self.dead.load(Ordering::SeqCst) {
                Err(io::Error::from(io::ErrorKind::NotConnected))
            } else {
                w.write_all(&header)
                    .and_then(|()| payload.map_or(Ok(()), |p| w.write_all(p)))
            }
        };
        if let Err(e) = written {
            // A partial request leaves the stream out of step: the connection is over.
            self.kill(&format!("sending a request: {e}"));
            return Err(Errno::ENXIO);
        }
        Ok(rx)
    }

    /// Waits for a reply until `deadline` (if any): ENXIO when it passes.
    fn wait(&self, rx: &Receiver<Outcome>, deadline: Option<Instant>) -> Outcome {
        let got = match deadline {
            Some(d) => rx.recv_deadline(d).map_err(|e| match e {
                RecvTimeoutError::Timeout => "timed out",
                RecvTimeoutError::Disconnected => "lost",
            }),
            None => rx.recv().map_err(|_| "lost"),
        };
        match got {
            Ok(r) => r,
            Err(what) => {
                tracing::debug!("{}: a request {what}", self.uri);
                Err(Errno::ENXIO)
            }
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.io_timeout.map(|t| Instant::now() + t)
    }
}

/// Reads replies and hands them to their waiters until the connection ends.
fn reader_loop(conn: Arc<Conn>, mut rd: BufReader<Stream>, died: Sender<()>) {
    let why = loop {
        let mut h = [0u8; SimpleReply::LEN];
        if let Err(e) = rd.read_exact(&mut h) {
            break format!("reading a reply: {e}");
        }
        let reply = match SimpleReply::decode(&h) {
            Ok(r) => r,
            Err(e) => break e.to_string(),
        };
        let waiter = conn
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&reply.handle);
        let Some(w) = waiter else {
            break format!("a reply to unknown handle {:#x}", reply.handle);
        };
        let result = if reply.error == NBD_ESHUTDOWN {
            // The server is going away: fail the path; the connection ends below.
            Err(Errno::ENXIO)
        } else if reply.error != 0 {
            Err(Errno(nbd_proto::wire_to_errno(reply.error)))
        } else if w.read_len > 0 {
            let mut data = vec![0u8; w.read_len];
            if let Err(e) = rd.read_exact(&mut data) {
                let _ = w.tx.send(Err(Errno::ENXIO));
                break format!("reading data: {e}");
            }
            Ok(Some(data))
        } else {
            Ok(None)
        };
        let _ = w.tx.send(result);
        if reply.error == NBD_ESHUTDOWN {
            break String::from("the server is shutting down");
        }
    };
    conn.kill(&why);
    drop(died);
}

/// One connection to one NBD export, as a [`Device`].
pub struct NbdDevice {
    conn: Arc<Conn>,
    info: ProviderInfo,
    size: u64,
    flags: u16,
    block: (u32, u32, u32),
    /// The largest payload sent in one request.
    chunk: usize,
    died: Receiver<()>,
}

impl std::fmt::Debug for NbdDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdDevice")
            .field("uri", &self.conn.uri)
            .field("size", &self.size)
            .field("flags", &self.flags)
            .field("dead", &self.is_dead())
            .finish_non_exhaustive()
    }
}

/// What the handshake learnt.
struct Negotiated {
    size: u64,
    flags: u16,
    block: Option<(u32, u32, u32)>,
}

/// Reads exactly `n` bytes of handshake, as an [`NbdError::Io`].
fn read_n<const N: usize>(
    rd: &mut impl Read,
    uri: &str,
    what: &'static str,
) -> Result<[u8; N], NbdError> {
    let mut b = [0u8; N];
    rd.read_exact(&mut b).map_err(|source| NbdError::Io {
        uri: uri.to_string(),
        what,
        source,
    })?;
    Ok(b)
}

fn protocol(uri: &str, why: impl Into<String>) -> NbdError {
    NbdError::Protocol {
        uri: uri.to_string(),
        why: why.into(),
    }
}

/// The client side of the handshake.
fn handshake(
    uri: &NbdUri,
    rd: &mut impl Read,
    wr: &mut impl Write,
) -> Result<Negotiated, NbdError> {
    let u = uri.text.as_str();
    let send = |wr: &mut dyn Write, bytes: &[u8], what: &'static str| {
        wr.write_all(bytes).map_err(|source| NbdError::Io {
            uri: u.to_string(),
            what,
            source,
        })
    };
    let greeting = Greeting::decode(&read_n::<{ Greeting::LEN }>(rd, u, "reading the greeting")?)
        .map_err(|e| protocol(u, e.to_string()))?;
    let fixed = greeting.flags & FLAG_FIXED_NEWSTYLE != 0;
    let no_zeroes = greeting.flags & FLAG_NO_ZEROES != 0;
    let mut client = 0;
    if fixed {
        client |= FLAG_C_FIXED_NEWSTYLE;
    }
    if no_zeroes {
        client |= FLAG_C_NO_ZEROES;
    }
    send(
        wr,
        &nbd_proto::encode_client_flags(client),
        "sending client flags",
    )?;
    if fixed {
        let go = ClientOption::Go(InfoRequest {
            name: uri.export.clone(),
            requests: vec![INFO_BLOCK_SIZE],
        });
        send(wr, &go.encode(), "sending NBD_OPT_GO")?;
        let mut export = None;
        let mut block = None;
        loop {
            let h = read_n::<{ OptionReplyHeader::LEN }>(rd, u, "reading an option reply")?;
            let h = OptionReplyHeader::decode(&h).map_err(|e| protocol(u, e.to_string()))?;
            let mut data = vec![0u8; h.length as usize];
            rd.read_exact(&mut data).map_err(|source| NbdError::Io {
                uri: u.to_string(),
                what: "reading an option reply",
                source,
            })?;
            if h.option != OPT_GO {
                return Err(protocol(
                    u,
                    format!("a reply to option {} instead of NBD_OPT_GO", h.option),
                ));
            }
            match OptionReply::parse(h.reply, &data).map_err(|e| protocol(u, e.to_string()))? {
                OptionReply::Info(Info::Export { size, flags }) => export = Some((size, flags)),
                OptionReply::Info(Info::BlockSize {
                    min,
                    preferred,
                    max,
                }) => block = Some((min, preferred, max)),
                OptionReply::Info(_) => {}
                OptionReply::Ack => {
                    let (size, flags) =
                        export.ok_or_else(|| protocol(u, "NBD_REP_ACK without NBD_INFO_EXPORT"))?;
                    return Ok(Negotiated { size, flags, block });
                }
                OptionReply::Error { code, .. } if code == REP_ERR_UNSUP => break,
                OptionReply::Error { code, message } => {
                    return Err(NbdError::Refused {
                        uri: u.to_string(),
                        export: uri.export.clone(),
                        code,
                        message,
                    })
                }
                other => {
                    return Err(protocol(
                        u,
                        format!(
                            "unexpected {} to NBD_OPT_GO",
                            nbd_proto::reply_name(other.code())
                        ),
                    ))
                }
            }
        }
    }
    // An old server: NBD_OPT_EXPORT_NAME, which cannot fail but by hanging up.
    send(
        wr,
        &ClientOption::ExportName(uri.export.clone()).encode(),
        "sending NBD_OPT_EXPORT_NAME",
    )?;
    let len = if no_zeroes {
        ExportNameReply::SHORT_LEN
    } else {
        ExportNameReply::LONG_LEN
    };
    let mut b = vec![0u8; len];
    rd.read_exact(&mut b).map_err(|source| NbdError::Io {
        uri: u.to_string(),
        what: "reading the export (does the server have it?)",
        source,
    })?;
    let (r, _) = ExportNameReply::decode(&b, no_zeroes)
        .ok_or_else(|| protocol(u, "a short NBD_OPT_EXPORT_NAME reply"))?;
    Ok(Negotiated {
        size: r.size,
        flags: r.flags,
        block: None,
    })
}

/// Connects to `uri`'s server within `timeout`.
fn open_stream(
    uri: &NbdUri,
    timeout: Duration,
    options: &ClientOptions,
) -> Result<Stream, NbdError> {
    let u = || uri.text.clone();
    match &uri.transport {
        Transport::Unix(path) => UnixStream::connect(path)
            .map(Stream::Unix)
            .map_err(|source| NbdError::Connect {
                uri: u(),
                addr: path.display().to_string(),
                source,
            }),
        Transport::UnixAbstract(name) => {
            #[cfg(target_os = "linux")]
            let addr = {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
            };
            #[cfg(not(target_os = "linux"))]
            let addr: io::Result<std::os::unix::net::SocketAddr> = Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "abstract Unix sockets exist only on Linux",
            ));
            addr.and_then(|a| UnixStream::connect_addr(&a))
                .map(Stream::Unix)
                .map_err(|source| NbdError::Connect {
                    uri: u(),
                    addr: format!("@{}", String::from_utf8_lossy(name)),
                    source,
                })
        }
        Transport::Tcp { host, port } => {
            let deadline = Instant::now() + timeout;
            let addrs =
                (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|source| NbdError::Connect {
                        uri: u(),
                        addr: format!("{host}:{port}"),
                        source,
                    })?;
            let mut last = None;
            for addr in addrs {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match TcpStream::connect_timeout(&addr, left) {
                    Ok(s) => {
                        tune_tcp(&s, options);
                        return Ok(Stream::Tcp(s));
                    }
                    Err(e) => last = Some((addr.to_string(), e)),
                }
            }
            let (addr, source) = last.unwrap_or_else(|| {
                (
                    format!("{host}:{port}"),
                    io::Error::new(io::ErrorKind::TimedOut, "no address answered in time"),
                )
            });
            Err(NbdError::Connect {
                uri: u(),
                addr,
                source,
            })
        }
    }
}

/// Keepalive, user timeout and no Nagle on a TCP connection (best effort: a failure is
/// logged, the connection is still usable).
fn tune_tcp(s: &TcpStream, options: &ClientOptions) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = s.set_nodelay(true);
    let user_timeout = u32::try_from(options.tcp_user_timeout.as_millis()).unwrap_or(u32::MAX);
    let results = [
        setsockopt(s, sockopt::KeepAlive, &true),
        setsockopt(s, sockopt::TcpKeepIdle, &KEEPALIVE_IDLE),
        setsockopt(s, sockopt::TcpKeepInterval, &KEEPALIVE_INTERVAL),
        setsockopt(s, sockopt::TcpKeepCount, &KEEPALIVE_COUNT),
        user_timeout_option(s, user_timeout),
    ];
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        tracing::warn!("NBD: setting TCP keepalive/user timeout: {e}");
    }
}

/// `TCP_USER_TIMEOUT` (Linux): unacknowledged data fails the connection after this many
/// milliseconds.
#[cfg(target_os = "linux")]
fn user_timeout_option(s: &TcpStream, millis: u32) -> nix::Result<()> {
    nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::TcpUserTimeout, &millis)
}

/// FreeBSD has no `TCP_USER_TIMEOUT`: the keepalive settings and each request's own
/// deadline bound a silent peer there.
#[cfg(not(target_os = "linux"))]
fn user_timeout_option(_: &TcpStream, _: u32) -> nix::Result<()> {
    Ok(())
}

impl NbdDevice {
    /// Connects to `uri` and enters transmission, all within the connect timeout.
    /// `io_timeout` is each request's deadline (zero: none).
    pub fn connect(
        uri: &NbdUri,
        io_timeout: Duration,
        options: &ClientOptions,
    ) -> Result<NbdDevice, NbdError> {
        let deadline = Instant::now() + options.connect_timeout;
        let stream = open_stream(uri, options.connect_timeout, options)?;
        let io_err = |what: &'static str| {
            let uri = uri.text.clone();
            move |source| NbdError::Io { uri, what, source }
        };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        stream
            .set_read_timeout(Some(left))
            .and_then(|()| stream.set_write_timeout(Some(left)))
            .map_err(io_err("setting timeouts"))?;
        let mut rd = BufReader::with_capacity(
            256 << 10,
            stream.try_clone().map_err(io_err("cloning the socket"))?,
        );
        let mut wr = stream.try_clone().map_err(io_err("cloning the socket"))?;
        let n = handshake(uri, &mut rd, &mut wr)?;
        let io_timeout = (!io_timeout.is_zero()).then_some(io_timeout);
        // From now on a read waits for replies as long as it takes (the per-request
        // deadline is the waiter's); a write gives up after the I/O timeout.
        stream
            .set_read_timeout(None)
            .and_then(|()| stream.set_write_timeout(io_timeout))
            .map_err(io_err("setting timeouts"))?;

        let (min, preferred, max) = sanitize_block(n.block);
        let sector = min.max(MIN_SECTOR);
        let chunk = (max.min(MAX_PAYLOAD) / sector).max(1) * sector;
        let info = ProviderInfo {
            name: uri.text.clone(),
            mediasize: n.size / u64::from(sector) * u64::from(sector),
            sectorsize: sector,
            stripesize: if preferred > sector {
                u64::from(preferred)
            } else {
                0
            },
            stripeoffset: 0,
            rank: 1,
        };
        let conn = Arc::new(Conn {
            uri: uri.text.clone(),
            socket: stream.try_clone().map_err(io_err("cloning the socket"))?,
            writer: Mutex::new(wr),
            pending: Mutex::new(HashMap::new()),
            dead: AtomicBool::new(false),
            next_handle: AtomicU64::new(1),
            io_timeout,
        });
        let (died_tx, died) = crossbeam_channel::bounded(0);
        {
            let conn = conn.clone();
            std::thread::Builder::new()
                .name("nbd-client".into())
                .spawn(move || reader_loop(conn, rd, died_tx))
                .map_err(io_err("starting the reader thread"))?;
        }
        tracing::debug!(
            "{}: {} bytes, flags {:#x}, blocks {min}/{preferred}/{max}",
            uri.text,
            n.size,
            n.flags
        );
        Ok(NbdDevice {
            conn,
            info,
            size: n.size,
            flags: n.flags,
            block: (min, preferred, max),
            chunk: chunk as usize,
            died,
        })
    }

    /// Parses `uri` and connects (see [`NbdDevice::connect`]).
    pub fn open(
        uri: &str,
        io_timeout: Duration,
        options: &ClientOptions,
    ) -> Result<NbdDevice, NbdError> {
        NbdDevice::connect(&NbdUri::parse(uri)?, io_timeout, options)
    }

    /// The provider this device is: name (the URI), size, sector size.
    pub fn info(&self) -> &ProviderInfo {
        &self.info
    }

    /// The export's size as the server told it.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The transmission flags (`nbd_proto::FLAG_*`).
    pub fn transmission_flags(&self) -> u16 {
        self.flags
    }

    /// Minimum, preferred and maximum block sizes (the spec's defaults if the server
    /// advertised none).
    pub fn block_sizes(&self) -> (u32, u32, u32) {
        self.block
    }

    /// `true` once the connection is gone (every request then fails with ENXIO).
    pub fn is_dead(&self) -> bool {
        self.conn.dead.load(Ordering::SeqCst)
    }

    /// Requests sent and not yet answered (including ones whose waiter gave up).
    pub fn in_flight(&self) -> usize {
        self.conn
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// A receiver that is disconnected when the connection is gone (for `select!`).
    pub fn died(&self) -> Receiver<()> {
        self.died.clone()
    }

    fn aligned(&self, offset: u64, len: usize) -> Result<(), Errno> {
        let sector = u64::from(self.info.sectorsize);
        if offset % sector != 0 || len as u64 % sector != 0 {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }
}

/// The block sizes to use: the server's if they make sense, else the spec's defaults.
fn sanitize_block(block: Option<(u32, u32, u32)>) -> (u32, u32, u32) {
    let (min, preferred, max) = block.unwrap_or((1, 4096, MAX_PAYLOAD));
    let min = if min.is_power_of_two() && min <= 65536 {
        min
    } else {
        1
    };
    let preferred = if preferred.is_power_of_two() && preferred >= min {
        preferred
    } else {
        4096.max(min)
    };
    let max = if max >= min { max } else { MAX_PAYLOAD };
    (min, preferred, max)
}

impl Device for NbdDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), Errno> {
        self.aligned(offset, buf.len())?;
        let deadline = self.conn.deadline();
        let mut waits = Vec::new();
        for (i, piece) in buf.chunks(self.chunk).enumerate() {
            let at = offset + (i * self.chunk) as u64;
            // A piece is at most `chunk` ≤ 32 MiB.
            let rx = self
                .conn
                .submit(Command::Read, 0, at, piece.len() as u32, None)?;
            waits.push(rx);
        }
        for (rx, piece) in waits.iter().zip(buf.chunks_mut(self.chunk)) {
            match self.conn.wait(rx, deadline)? {
                Some(data) if data.len() == piece.len() => piece.copy_from_slice(&data),
                _ => return Err(Errno::EIO),
            }
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), Errno> {
        if self.flags & FLAG_READ_ONLY != 0 {
            return Err(Errno::EPERM);
        }
        self.aligned(offset, buf.len())?;
        let deadline = self.conn.deadline();
        let mut waits = Vec::new();
        for (i, piece) in buf.chunks(self.chunk).enumerate() {
            let at = offset + (i * self.chunk) as u64;
            let rx = self
                .conn
                .submit(Command::Write, 0, at, piece.len() as u32, Some(piece))?;
            waits.push(rx);
        }
        for rx in &waits {
            self.conn.wait(rx, deadline)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), Errno> {
        if self.flags & FLAG_SEND_FLUSH == 0 {
            return Ok(());
        }
        let deadline = self.conn.deadline();
        let rx = self.conn.submit(Command::Flush, 0, 0, 0, None)?;
        self.conn.wait(&rx, deadline).map(|_| ())
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), Errno> {
        if self.flags & FLAG_SEND_TRIM == 0 {
            return Err(Errno(libc::EOPNOTSUPP));
        }
        if self.flags & FLAG_READ_ONLY != 0 {
            return Err(Errno::EPERM);
        }
        let sector = u64::from(self.info.sectorsize);
        if offset % sector != 0 || len % sector != 0 {
            return Err(Errno::EINVAL);
        }
        let deadline = self.conn.deadline();
        let step = MAX_TRIM / sector * sector;
        let mut waits = Vec::new();
        let mut at = offset;
        while at < offset + len {
            let n = step.min(offset + len - at);
            // `n` ≤ 1 GiB.
            waits.push(self.conn.submit(Command::Trim, 0, at, n as u32, None)?);
            at += n;
        }
        for rx in &waits {
            self.conn.wait(rx, deadline)?;
        }
        Ok(())
    }

    fn physpath(&self) -> Result<String, Errno> {
        Ok(self.conn.uri.clone())
    }

    /// Shuts the socket down: every request in flight and every later one fails with
    /// ENXIO at once, and the supervisor (if any) reconnects with a new device.
    fn fence(&self) {
        self.conn.kill("fenced");
    }
}

impl Drop for NbdDevice {
    /// Says goodbye (`NBD_CMD_DISC`, best effort) and closes the connection.
    fn drop(&mut self) {
        if !self.is_dead() {
            let disc = Request {
                flags: 0,
                command: Command::Disc,
                handle: 0,
                offset: 0,
                length: 0,
            }
            .encode();
            if let Ok(mut w) = self.conn.writer.try_lock() {
                let _ = w.set_write_timeout(Some(Duration::from_millis(100)));
                let _ = w.write_all(&disc);
            }
            self.conn.kill(CLOSED);
        }
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

    /// `true` if `uri` is supervised.
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

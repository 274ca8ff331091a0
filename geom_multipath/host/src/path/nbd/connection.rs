//! One NBD path's connection: [`NbdDevice`] opens the socket, runs the client side of the
//! handshake, and then carries requests — a reader thread matches replies to waiters by
//! handle; a request not answered within its deadline fails, and a connection that makes
//! no progress is shut down, which is how the supervisor learns that the path died.

use super::*;

/// What a request comes to: a READ's data, nothing, or an errno.
pub(super) type Outcome = Result<Option<Vec<u8>>, Errno>;

/// A request waiting for its reply.
pub(super) struct Waiter {
    /// The data length a successful reply carries (a READ's length, else 0).
    pub(super) read_len: usize,
    /// Where the outcome goes (nobody listens any more after a deadline).
    pub(super) tx: Sender<Outcome>,
}

/// One connection, shared by the device and its reader thread.
pub(super) struct Conn {
    pub(super) uri: String,
    /// For shutdown(2).
    pub(super) socket: Stream,
    /// Requests are written under this lock.
    pub(super) writer: Mutex<Stream>,
    /// Requests in flight, by handle.
    pub(super) pending: Mutex<HashMap<u64, Waiter>>,
    /// Set (under `pending`'s lock) when the connection is gone.
    pub(super) dead: AtomicBool,
    pub(super) next_handle: AtomicU64,
    pub(super) io_timeout: Option<Duration>,
}

impl Conn {
    /// Ends the connection: every request in flight and every later one fails with ENXIO.
    pub(super) fn kill(&self, why: &str) {
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
    pub(super) fn submit(
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
    pub(super) fn wait(&self, rx: &Receiver<Outcome>, deadline: Option<Instant>) -> Outcome {
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

    pub(super) fn deadline(&self) -> Option<Instant> {
        self.io_timeout.map(|t| Instant::now() + t)
    }
}

/// Reads replies and hands them to their waiters until the connection ends.
pub(super) fn reader_loop(conn: Arc<Conn>, mut rd: BufReader<Stream>, died: Sender<()>) {
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
pub(super) struct Negotiated {
    pub(super) size: u64,
    pub(super) flags: u16,
    pub(super) block: Option<(u32, u32, u32)>,
}

/// Reads exactly `n` bytes of handshake, as an [`NbdError::Io`].
pub(super) fn read_n<const N: usize>(
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

pub(super) fn protocol(uri: &str, why: impl Into<String>) -> NbdError {
    NbdError::Protocol {
        uri: uri.to_string(),
        why: why.into(),
    }
}

/// The client side of the handshake.
pub(super) fn handshake(
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
pub(super) fn open_stream(
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
pub(super) fn tune_tcp(s: &TcpStream, options: &ClientOptions) {
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
pub(super) fn user_timeout_option(s: &TcpStream, millis: u32) -> nix::Result<()> {
    nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::TcpUserTimeout, &millis)
}

/// FreeBSD has no `TCP_USER_TIMEOUT`: the keepalive settings and each request's own
/// deadline bound a silent peer there.
#[cfg(not(target_os = "linux"))]
pub(super) fn user_timeout_option(_: &TcpStream, _: u32) -> nix::Result<()> {
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

    pub(super) fn aligned(&self, offset: u64, len: usize) -> Result<(), Errno> {
        let sector = u64::from(self.info.sectorsize);
        if offset % sector != 0 || len as u64 % sector != 0 {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }
}

/// The block sizes to use: the server's if they make sense, else the spec's defaults.
pub(super) fn sanitize_block(block: Option<(u32, u32, u32)>) -> (u32, u32, u32) {
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

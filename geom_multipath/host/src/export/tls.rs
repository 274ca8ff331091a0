//! TLS for the NBD export over TCP (`NBD_OPT_STARTTLS`): the server's credentials, read
//! once at start from a directory laid out as qemu's `tls-creds-x509` and libnbd's
//! `tls-certificates` expect (`ca-cert.pem`, `server-cert.pem`, `server-key.pem`), with
//! mutual x509: a client must show a certificate the CA signed, or the handshake fails.
//!
//! After the server has acknowledged `NBD_OPT_STARTTLS`, [`relay`] takes the TCP stream
//! and hands back the plaintext end of a socket pair; one thread per connection moves
//! bytes between the two through rustls, so the export's reader and writer threads keep
//! working on a plain stream. The relay never buffers more than [`RELAY_WINDOW`] of
//! decrypted data ahead of the reader, and reads plaintext only once every encrypted byte
//! is out, so a slow side slows the other down instead of filling memory. A TLS handshake
//! not finished within the NBD handshake's time limit ends the connection.
//!
//! It decides nothing about NBD; it only carries bytes and checks certificates.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

/// Decrypted bytes the relay holds for a reader that has not taken them yet.
pub const RELAY_WINDOW: usize = 4 << 20;

/// The files of a credentials directory, as qemu and libnbd name them.
pub const CA_CERT: &str = "ca-cert.pem";
/// The server's certificate (chain), PEM.
pub const SERVER_CERT: &str = "server-cert.pem";
/// The server's private key, PEM.
pub const SERVER_KEY: &str = "server-key.pem";

/// Reads the server's credentials from `dir`; every client must present a certificate
/// signed by `dir/ca-cert.pem`.
pub fn server_config(dir: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    // ring, not aws-lc-rs: no C toolchain beyond cc, and what qemu and libnbd speak (TLS
    // 1.3 with X25519/P-256) is all here; rustls 0.23.48 marks it deprecated only for
    // lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let read = |name: &str| -> anyhow::Result<Vec<u8>> {
        std::fs::read(dir.join(name))
            .with_context(|| format!("reading {}", dir.join(name).display()))
    };
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &read(CA_CERT)?[..]) {
        roots
            .add(cert.context("parsing ca-cert.pem")?)
            .context("adding the CA certificate")?;
    }
    let certs = rustls_pemfile::certs(&mut &read(SERVER_CERT)?[..])
        .collect::<Result<Vec<_>, _>>()
        .context("parsing server-cert.pem")?;
    let key = rustls_pemfile::private_key(&mut &read(SERVER_KEY)?[..])
        .context("parsing server-key.pem")?
        .context("server-key.pem holds no private key")?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("the client certificate verifier")?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("the server certificate and key")?;
    Ok(Arc::new(config))
}

/// Starts TLS on `tcp` as the server (the client's ClientHello is next on the wire) and
/// returns the plaintext end; the TLS handshake must finish by `deadline`.
pub fn relay(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    deadline: Duration,
) -> io::Result<UnixStream> {
    let (mine, theirs) = UnixStream::pair()?;
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    tcp.set_nonblocking(true)?;
    mine.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("nbd-tls".into())
        .spawn(move || {
            if let Err(e) = pump(tcp, mine, conn, Instant::now() + deadline) {
                tracing::debug!("NBD TLS connection ended: {e}");
            }
        })?;
    Ok(theirs)
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted
}

/// Moves bytes between the TLS side (`tcp`) and the plaintext side (`plain`) until either
/// ends.
fn pump(
    mut tcp: TcpStream,
    mut plain: UnixStream,
    mut conn: ServerConnection,
    handshake_by: Instant,
) -> io::Result<()> {
    let mut to_plain: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut tls_eof = false;
    loop {
        while conn.wants_write() {
            match conn.write_tls(&mut tcp) {
                Ok(_) => {}
                Err(e) if would_block(&e) => break,
                Err(e) => return Err(e),
            }
        }
        while !to_plain.is_empty() {
            match plain.write(&to_plain) {
                Ok(n) => {
                    to_plain.drain(..n);
                }
                Err(e) if would_block(&e) => break,
                Err(e) => return Err(e),
            }
        }
        if tls_eof && to_plain.is_empty() {
            let _ = plain.shutdown(std::net::Shutdown::Write);
            return Ok(());
        }
        let handshaking = conn.is_handshaking();
        if handshaking && Instant::now() > handshake_by {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"));
        }
        let mut tcp_events = PollFlags::empty();
        if !tls_eof && conn.wants_read() && to_plain.len() < RELAY_WINDOW {
            tcp_events |= PollFlags::POLLIN;
        }
        if conn.wants_write() {
            tcp_events |= PollFlags::POLLOUT;
        }
        let mut plain_events = PollFlags::empty();
        if !handshaking && !conn.wants_write() {
            plain_events |= PollFlags::POLLIN;
        }
        if !to_plain.is_empty() {
            plain_events |= PollFlags::POLLOUT;
        }
        let mut fds = [
            PollFd::new(tcp.as_fd(), tcp_events),
            PollFd::new(plain.as_fd(), plain_events),
        ];
        let wait = if handshaking {
            PollTimeout::try_from(handshake_by.saturating_duration_since(Instant::now()))
                .unwrap_or(PollTimeout::MAX)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, wait) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let tcp_ready = fds[0].revents().unwrap_or(PollFlags::empty());
        let plain_ready = fds[1].revents().unwrap_or(PollFlags::empty());
        if tcp_ready.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match conn.read_tls(&mut tcp) {
                Ok(0) => tls_eof = true,
                Ok(_) => {
                    if let Err(e) = conn.process_new_packets() {
                        let _ = conn.write_tls(&mut tcp);
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    loop {
                        match conn.reader().read(&mut buf) {
                            Ok(0) => {
                                tls_eof = true;
                                break;
                            }
                            Ok(n) => to_plain.extend_from_slice(&buf[..n]),
                            Err(e) if would_block(&e) => break,
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if plain_ready.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
            match plain.read(&mut buf) {
                Ok(0) => {
                    conn.send_close_notify();
                    while conn.wants_write() {
                        tcp.set_nonblocking(false)?;
                        if conn.write_tls(&mut tcp).is_err() {
                            break;
                        }
                    }
                    return Ok(());
                }
                Ok(n) => conn.writer().write_all(&buf[..n])?,
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if plain_ready.contains(PollFlags::POLLERR) {
            return Ok(());
        }
    }
}

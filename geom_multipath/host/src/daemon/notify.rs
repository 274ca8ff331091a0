//! The service manager's readiness protocol (systemd's `sd_notify`, `Type=notify`): one
//! datagram of `KEY=VALUE` lines to the socket named by `$NOTIFY_SOCKET`, a path or, with a
//! leading `@`, an abstract name. `READY=1` once the startup scan has tasted every device
//! and the control socket answers; `RELOADING=1` … `READY=1` around a re-read of the
//! tunables file (SIGHUP, `systemctl reload`); `STOPPING=1` at shutdown.
//!
//! Without `$NOTIFY_SOCKET` (not started by systemd, or on FreeBSD) every call does
//! nothing; a failure to send is logged, never fatal: the service manager is told, not
//! obeyed.

use std::os::unix::net::UnixDatagram;

/// Tells the service manager the daemon is ready.
pub fn ready() {
    send(&format!("READY=1\nMAINPID={}\n", std::process::id()));
}

/// Tells it the daemon is re-reading its configuration.
pub fn reloading() {
    send(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}\n",
        monotonic_usec()
    ));
}

/// Tells it the daemon is stopping.
pub fn stopping() {
    send("STOPPING=1\n");
}

fn send(message: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send_to(&target, message) {
        tracing::warn!("telling the service manager {message:?}: {e}");
    }
}

/// Sends `message` to the notification socket `target`.
pub fn send_to(target: &std::ffi::OsStr, message: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let socket = UnixDatagram::unbound()?;
    let bytes = target.as_bytes();
    match bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(message.as_bytes(), &addr)?;
        }
        #[cfg(not(target_os = "linux"))]
        Some(_) => return Err(std::io::ErrorKind::Unsupported.into()),
        None => {
            socket.send_to(message.as_bytes(), std::path::Path::new(target))?;
        }
    }
    Ok(())
}

/// `CLOCK_MONOTONIC` in microseconds, as `RELOADING=1` wants beside it.
fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reaches_a_socket_by_path() {
        let dir = std::env::temp_dir().join(format!("gmp-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), "READY=1\n").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_datagram_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("gmp-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(std::ffi::OsStr::new(&format!("@{name}")), "STOPPING=1\n").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");
    }
}

//! Where the daemon's words go. The class's console messages (target `console`) are
//! printed bare, exactly as the kernel prints them to dmesg (`GEOM_MULTIPATH: FRED
//! created`); the daemon's own remarks are prefixed `gmultipathd: ` on stderr. Both go to
//! syslog (`/dev/log` on Linux, `/var/run/logpriv` or `/var/run/log` on FreeBSD; facility
//! daemon, tag `gmultipathd[pid]`, no second prefix) when a syslog socket exists, and to
//! stderr: the terminal in the foreground, the log file (each line stamped with the UTC
//! time) in the background, so that the daemon's remarks can be found wherever it runs. The syslog socket is connected once, at start, so that a
//! sandboxed daemon (FreeBSD's capability mode) keeps logging. `kern.geom.multipath.debug` decides whether debug messages are produced at
//! all (the class filters them), so the subscriber lets everything through.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::Registry;

/// The syslog socket.
#[cfg(not(target_os = "freebsd"))]
pub const SYSLOG_SOCKET: &str = "/dev/log";
/// The syslog socket (syslogd's; root tries [`SYSLOG_PRIV_SOCKET`] first, as syslog(3) does).
#[cfg(target_os = "freebsd")]
pub const SYSLOG_SOCKET: &str = "/var/run/log";
/// syslogd's socket for privileged senders, which it never drops for being full.
#[cfg(target_os = "freebsd")]
pub const SYSLOG_PRIV_SOCKET: &str = "/var/run/logpriv";

/// The line a record becomes: bare for console messages, prefixed for the daemon's own.
pub fn render(target: &str, message: &str) -> String {
    if target == "console" {
        message.to_string()
    } else {
        format!("gmultipathd: {message}")
    }
}

/// The datagram a record becomes in syslog: the tag `gmultipathd[pid]` already names the
/// daemon, so its own remarks go without the `gmultipathd: ` prefix stderr needs.
pub fn syslog_record(level: &Level, message: &str, pid: u32) -> String {
    format!("<{}>gmultipathd[{pid}]: {message}", priority(level))
}

/// syslog(3) priority: facility daemon (3) and the severity of `level`.
pub fn priority(level: &Level) -> u8 {
    let severity = match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    };
    3 * 8 + severity
}

struct MessageText(String);

impl Visit for MessageText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }
}

/// What the daemon's standard error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stderr {
    /// A terminal (the foreground): lines as they are.
    Terminal,
    /// The log file (the background): each line after its UTC time.
    LogFile,
}

/// The layer that writes records to stderr and syslog.
pub struct ConsoleLayer {
    stderr: Stderr,
    syslog: Option<Mutex<UnixDatagram>>,
}

/// `seconds` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_timestamp(seconds: u64) -> String {
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest / 60 % 60,
        rest % 60
    )
}

impl<S: Subscriber> Layer<S> for ConsoleLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut text = MessageText(String::new());
        event.record(&mut text);
        let meta = event.metadata();
        let line = render(meta.target(), &text.0);
        let _ = match self.stderr {
            Stderr::Terminal => writeln!(std::io::stderr().lock(), "{line}"),
            Stderr::LogFile => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                writeln!(std::io::stderr().lock(), "{} {line}", utc_timestamp(now))
            }
        };
        if let Some(sock) = &self.syslog {
            let record = syslog_record(meta.level(), &text.0, std::process::id());
            if let Ok(s) = sock.lock() {
                let _ = s.send(record.as_bytes());
            }
        }
    }
}

/// The syslog sockets to try, in order.
#[cfg(target_os = "freebsd")]
const SYSLOG_SOCKETS: &[&str] = &[SYSLOG_PRIV_SOCKET, SYSLOG_SOCKET];
/// The syslog sockets to try, in order.
#[cfg(not(target_os = "freebsd"))]
const SYSLOG_SOCKETS: &[&str] = &[SYSLOG_SOCKET];

/// Installs the subscriber: stderr as `stderr` says, and syslog when a syslog socket
/// accepts us.
pub fn init(stderr: Stderr) {
    let syslog = SYSLOG_SOCKETS
        .iter()
        .find_map(|path| {
            UnixDatagram::unbound()
                .and_then(|s| s.connect(path).map(|()| s))
                .ok()
        })
        .map(Mutex::new);
    let layer = ConsoleLayer { stderr, syslog };
    let _ = tracing::subscriber::set_global_default(Registry::default().with(layer));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_messages_print_bare_and_the_daemons_own_with_its_name() {
        assert_eq!(
            render("console", "GEOM_MULTIPATH: FRED created"),
            "GEOM_MULTIPATH: FRED created"
        );
        assert_eq!(
            render("geom_multipath_host::daemon", "started"),
            "gmultipathd: started"
        );
    }

    #[test]
    fn syslog_records_carry_the_name_once() {
        assert_eq!(
            syslog_record(&Level::INFO, "started", 42),
            "<30>gmultipathd[42]: started"
        );
        assert_eq!(
            syslog_record(
                &Level::WARN,
                "GEOM_MULTIPATH: Error 5, md0 in FRED marked FAIL",
                7
            ),
            "<28>gmultipathd[7]: GEOM_MULTIPATH: Error 5, md0 in FRED marked FAIL"
        );
    }

    #[test]
    fn log_file_stamps_are_utc_calendar_times() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_796_527_845), "2026-12-06T03:30:45Z");
    }

    #[test]
    fn syslog_priorities_use_the_daemon_facility() {
        assert_eq!(priority(&Level::INFO), 30);
        assert_eq!(priority(&Level::WARN), 28);
        assert_eq!(priority(&Level::DEBUG), 31);
    }
}

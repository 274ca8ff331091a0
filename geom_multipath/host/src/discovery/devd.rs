//! What GEOM learns from the kernel about providers, learnt on FreeBSD from devd(8) (the
//! counterpart of `watch` on Linux): the daemon connects to devd's seqpacket
//! socket ([`DEVD_SOCKET`]), where every kernel event arrives as one message, one line:
//!
//! ```text
//! !system=GEOM subsystem=DEV type=CREATE cdev=da0
//! !system=DEVFS subsystem=CDEV type=DESTROY cdev=da0
//! !system=GEOM subsystem=DEV type=SIZECHANGE cdev=da0
//! ```
//!
//! geom_dev(4) announces every GEOM provider's node (`GEOM`/`DEV`: CREATE, DESTROY,
//! SIZECHANGE, MEDIACHANGE), devfs every character device's (`DEVFS`/`CDEV`: CREATE,
//! DESTROY, MEDIACHANGE). [`parse`] reads one message (notifications `!`, attach `+`,
//! detach `-`, no-match `?`); [`disk_event`] keeps what concerns a disk. Like the Linux
//! watcher it decides nothing: an event only says "look at this disk again", and looking
//! (`disks::lookup`) reads the current state, so duplicates (both systems report
//! most changes) are harmless.
//!
//! A devfs CREATE does not say that the node is a disk's (a tty's looks the same, and
//! opening a tty or a tun device to ask has side effects), so a disk the daemon does not
//! know yet is looked at only on geom_dev's word; devfs events count for known disks.
//! Nothing tells the daemon that somebody closed a disk after writing to it (Linux's
//! inotify `IN_CLOSE_WRITE`): a label written behind its back is seen at the next
//! event for that disk or restart (`gmultipath label` goes through the daemon and is seen
//! at once).

use std::collections::BTreeMap;

use crate::discovery::disks::is_disk_name;

/// devd's socket for clients: one message per event, each a line.
pub const DEVD_SOCKET: &str = "/var/run/devd.seqpacket.pipe";
/// The longest message devd sends (the kernel's `DEVCTL_MAXBUF`).
pub const DEVD_MAX: usize = 8192;
/// At most this many messages per [`DevdSocket::drain`], so that a flood cannot keep the
/// owner from its other work.
#[cfg(target_os = "freebsd")]
const DRAIN_BATCH: usize = 4096;

/// What kind of message devd passed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `!`: a notification (`system=… subsystem=… type=…`).
    Notify,
    /// `+`: a device attached.
    Attach,
    /// `-`: a device detached.
    Detach,
    /// `?`: a device no driver claimed.
    Nomatch,
}

/// One devd message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Its kind.
    pub kind: Kind,
    /// For `+`, `-` and `?`: the device named right after the sign (`uhub0`), if any.
    pub device: Option<String>,
    /// Every `key=value` (quotes removed from a quoted value).
    pub vars: BTreeMap<String, String>,
}

impl Message {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }
}

/// Reads one message (trailing newline and NULs allowed); `None` if it is not one.
pub fn parse(text: &str) -> Option<Message> {
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    let mut chars = text.chars();
    let kind = match chars.next()? {
        '!' => Kind::Notify,
        '+' => Kind::Attach,
        '-' => Kind::Detach,
        '?' => Kind::Nomatch,
        _ => return None,
    };
    let mut rest = chars.as_str();
    let mut device = None;
    if kind != Kind::Notify {
        let end = rest.find(' ').unwrap_or(rest.len());
        if !rest[..end].contains('=') {
            device = Some(rest[..end].to_string()).filter(|d| !d.is_empty());
            rest = &rest[end..];
        }
    }
    Some(Message {
        kind,
        device,
        vars: pairs(rest),
    })
}

/// The `key=value` tokens of `text`, separated by spaces; a value may be in double quotes
/// (and then hold spaces). Tokens without `=` (devd's `at`, `on`) are skipped.
fn pairs(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            return vars;
        }
        let word_end = rest.find([' ', '=']).unwrap_or(rest.len());
        let key = &rest[..word_end];
        rest = &rest[word_end..];
        let Some(after) = rest.strip_prefix('=') else {
            continue; // a bare word
        };
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            },
            None => {
                let end = after.find(' ').unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        if !key.is_empty() {
            vars.insert(key.to_string(), value.to_string());
        }
        rest = next;
    }
}

/// What happened to a disk's node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// `CREATE`: it appeared.
    Created,
    /// `DESTROY`: it went away.
    Destroyed,
    /// `SIZECHANGE`: its media size changed.
    Resized,
    /// `MEDIACHANGE`: its media went or came.
    MediaChanged,
}

/// A message about a disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskEvent {
    /// The disk's name (`da0`).
    pub name: String,
    /// What happened.
    pub change: Change,
    /// geom_dev said so, so the node is a GEOM provider's (devfs says it of any device).
    pub geom: bool,
}

/// The disk event `msg` is, if it is one: a geom_dev or devfs notification about a whole
/// unit's node (see [`is_disk_name`]).
pub fn disk_event(msg: &Message) -> Option<DiskEvent> {
    if msg.kind != Kind::Notify {
        return None;
    }
    let geom = match (msg.get("system")?, msg.get("subsystem")?) {
        ("GEOM", "DEV") => true,
        ("DEVFS", "CDEV") => false,
        _ => return None,
    };
    let change = match msg.get("type")? {
        "CREATE" => Change::Created,
        "DESTROY" => Change::Destroyed,
        "SIZECHANGE" => Change::Resized,
        "MEDIACHANGE" => Change::MediaChanged,
        _ => return None,
    };
    let name = msg.get("cdev")?;
    is_disk_name(name).then(|| DiskEvent {
        name: name.to_string(),
        change,
        geom,
    })
}

/// The disk events in one message's bytes (devd sends one event per message; several
/// lines are read as several, for robustness).
pub fn disk_events(bytes: &[u8]) -> Vec<DiskEvent> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(parse)
        .filter_map(|m| disk_event(&m))
        .collect()
}

/// A connection to devd, non-blocking, for the owner's poll loop.
#[cfg(target_os = "freebsd")]
#[derive(Debug)]
pub struct DevdSocket {
    fd: std::os::fd::OwnedFd,
}

/// What one [`DevdSocket::drain`] read.
#[cfg(target_os = "freebsd")]
#[derive(Debug, Default)]
pub struct Drained {
    /// The disk events, in order.
    pub events: Vec<DiskEvent>,
    /// devd closed the connection (it exited or restarted) or it failed.
    pub closed: bool,
}

#[cfg(target_os = "freebsd")]
impl DevdSocket {
    /// Connects to [`DEVD_SOCKET`].
    pub fn connect() -> std::io::Result<DevdSocket> {
        use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
        use std::os::fd::AsRawFd;
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        connect(fd.as_raw_fd(), &UnixAddr::new(DEVD_SOCKET)?)?;
        Ok(DevdSocket { fd })
    }

    /// Reads every message waiting (up to a batch), without blocking.
    pub fn drain(&mut self) -> Drained {
        use nix::errno::Errno;
        use nix::sys::socket::{recv, MsgFlags};
        use std::os::fd::AsRawFd;
        let mut out = Drained::default();
        let mut buf = vec![0u8; DEVD_MAX];
        for _ in 0..DRAIN_BATCH {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => {
                    out.closed = true;
                    break;
                }
                Ok(n) => out.events.extend(disk_events(&buf[..n])),
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!("reading {DEVD_SOCKET}: {e}");
                    out.closed = true;
                    break;
                }
            }
        }
        out
    }
}

#[cfg(target_os = "freebsd")]
impl std::os::fd::AsFd for DevdSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(m: &Message) -> Vec<(&str, &str)> {
        m.vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn a_notification_is_its_pairs() {
        let m = parse("!system=DEVFS subsystem=CDEV type=CREATE cdev=da0\n").unwrap();
        assert_eq!(m.kind, Kind::Notify);
        assert_eq!(m.device, None);
        assert_eq!(
            vars(&m),
            [
                ("cdev", "da0"),
                ("subsystem", "CDEV"),
                ("system", "DEVFS"),
                ("type", "CREATE")
            ]
        );
    }

    #[test]
    fn quoted_values_keep_their_spaces() {
        let m =
            parse(r#"!system=ZFS subsystem=ZFS type=x pool="tank 2" vdev_path=/dev/da0"#).unwrap();
        assert_eq!(m.get("pool"), Some("tank 2"));
        assert_eq!(m.get("vdev_path"), Some("/dev/da0"));
        let m = parse(r#"!system=A subsystem=B type=C note="unterminated"#).unwrap();
        assert_eq!(m.get("note"), Some("unterminated"));
        let m = parse(r#"!system=A empty= next="" last=x"#).unwrap();
        assert_eq!(
            (m.get("empty"), m.get("next"), m.get("last")),
            (Some(""), Some(""), Some("x"))
        );
    }

    #[test]
    fn attach_and_detach_name_their_device() {
        let m = parse("+uhub0 at bus=0 sernum=\"\" on usbus0").unwrap();
        assert_eq!(m.kind, Kind::Attach);
        assert_eq!(m.device.as_deref(), Some("uhub0"));
        assert_eq!(m.get("bus"), Some("0"));
        assert_eq!(m.get("sernum"), Some(""));
        let m = parse("-da0 at scbus=0 on umass-sim0").unwrap();
        assert_eq!(m.kind, Kind::Detach);
        assert_eq!(m.device.as_deref(), Some("da0"));
        let m = parse("? at vendor=0x8086 on pci0").unwrap();
        assert_eq!((m.kind, m.device), (Kind::Nomatch, None));
    }

    #[test]
    fn other_lines_are_not_messages() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("system=GEOM"), None);
        assert_eq!(parse("\n"), None);
    }

    fn event(line: &str) -> Option<DiskEvent> {
        disk_event(&parse(line)?)
    }

    #[test]
    fn geom_dev_and_devfs_events_about_whole_units_are_disk_events() {
        assert_eq!(
            event("!system=GEOM subsystem=DEV type=CREATE cdev=da0"),
            Some(DiskEvent {
                name: "da0".into(),
                change: Change::Created,
                geom: true
            })
        );
        assert_eq!(
            event("!system=DEVFS subsystem=CDEV type=DESTROY cdev=md3"),
            Some(DiskEvent {
                name: "md3".into(),
                change: Change::Destroyed,
                geom: false
            })
        );
        let change = |l: &str| event(l).map(|e| e.change);
        assert_eq!(
            change("!system=GEOM subsystem=DEV type=SIZECHANGE cdev=ada1"),
            Some(Change::Resized)
        );
        assert_eq!(
            change("!system=GEOM subsystem=DEV type=MEDIACHANGE cdev=cd0"),
            Some(Change::MediaChanged)
        );
    }

    #[test]
    fn partitions_labels_our_own_devices_and_other_systems_are_not() {
        for line in [
            "!system=GEOM subsystem=DEV type=CREATE cdev=da0p1",
            "!system=GEOM subsystem=DEV type=CREATE cdev=gpt/root",
            "!system=GEOM subsystem=DEV type=CREATE cdev=multipath/FRED",
            "!system=DEVFS subsystem=CDEV type=CREATE cdev=pts/3",
            "!system=GEOM subsystem=DEV type=GEOM::physpath cdev=da0",
            "!system=IFNET subsystem=em0 type=LINK_UP",
            "!system=GEOM subsystem=DEV type=CREATE",
            "+da0 at scbus=0",
        ] {
            assert_eq!(event(line), None, "{line}");
        }
    }

    #[test]
    fn a_message_may_hold_several_lines() {
        let bytes = b"!system=GEOM subsystem=DEV type=CREATE cdev=da1\n\
                      !system=DEVFS subsystem=CDEV type=CREATE cdev=da1\n\0";
        let names: Vec<(String, bool)> = disk_events(bytes)
            .into_iter()
            .map(|e| (e.name, e.geom))
            .collect();
        assert_eq!(names, [("da1".into(), true), ("da1".into(), false)]);
    }
}

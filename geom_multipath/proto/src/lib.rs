//! The userland host's control socket — its `/dev/geom.ctl`: which calls the tools may make
//! of `gmultipathd`, what comes back, and how both are framed on a Unix stream socket.
//!
//! A frame is `u32 length (LE) | u8 tag | payload`, the length counting the tag and the
//! payload. Strings are `u32 length | UTF-8 bytes`; integers are little-endian. A gctl
//! request travels inside a [`Call::Ctl`] in the core's own encoding
//! ([`geom_multipath::wire`]), so the class sees exactly what a kernel would.
//!
//! This crate owns the codec and the limits; it does no I/O beyond reading and writing one
//! frame on a stream it is given. A reader never allocates more than [`FRAME_MAX`] bytes for
//! one frame, and anything malformed is an error value, never a panic.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io::{self, Read, Write};

use geom_multipath::wire::{self, Reply, WireError};
use geom_multipath::Request;

/// Where the daemon listens unless told otherwise (the system's run-time directory).
#[cfg(not(target_os = "freebsd"))]
pub const DEFAULT_SOCKET: &str = "/run/gmultipathd/geom.ctl";
/// Where the daemon listens unless told otherwise (the system's run-time directory).
#[cfg(target_os = "freebsd")]
pub const DEFAULT_SOCKET: &str = "/var/run/gmultipathd/geom.ctl";
/// Environment variable that overrides [`DEFAULT_SOCKET`] for every tool.
pub const SOCKET_ENV: &str = "GMULTIPATH_SOCKET";
/// The largest frame either side accepts.
pub const FRAME_MAX: usize = 8 << 20;

/// The socket path the tools use: `$GMULTIPATH_SOCKET`, else [`DEFAULT_SOCKET`].
pub fn socket_path() -> std::path::PathBuf {
    std::env::var_os(SOCKET_ENV)
        .map(Into::into)
        .unwrap_or_else(|| DEFAULT_SOCKET.into())
}

/// A call from a tool to the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// Run a gctl request (class `MULTIPATH` or `NOP`), as the GEOM_CTL ioctl does.
    Ctl(Request),
    /// The whole GEOM tree as XML, as the `kern.geom.confxml` sysctl gives it.
    ConfXml,
    /// Read one knob (`kern.geom.multipath.debug`), or every knob when `name` is empty.
    SysctlGet {
        /// Full name, or empty for all.
        name: String,
    },
    /// Set one knob.
    SysctlSet {
        /// Full name.
        name: String,
        /// The new value, as typed (`1`).
        value: String,
    },
    /// Stop the daemon, as kldunload does; refused while a provider is open.
    Unload,
    /// The probe counters (FreeBSD's SDT probes, counted).
    Probes,
    /// Console messages with sequence number ≥ `since` (the daemon's dmesg).
    Messages {
        /// First sequence number wanted.
        since: u64,
    },
    /// Size and sector size of a provider the daemon knows (a block device or a NOP).
    ProviderInfo {
        /// Provider name, no `/dev/`.
        name: String,
    },
    /// Read bytes of a provider.
    ProviderRead {
        /// Provider name.
        name: String,
        /// Byte offset.
        offset: u64,
        /// Byte count.
        len: u32,
    },
    /// Open a provider for writing, read from it and close it (which re-tastes it): what
    /// `label` does to the providers after the first.
    ProviderTouch {
        /// Provider name.
        name: String,
        /// Byte offset.
        offset: u64,
        /// Byte count.
        len: u32,
    },
    /// Open a provider for writing, write, flush and close it (which re-tastes it).
    ProviderWrite {
        /// Provider name.
        name: String,
        /// Byte offset.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Is anybody there? The daemon handles every device event that happened before the
    /// call first, so a ping is also a barrier after a tool's own writes.
    Ping,
    /// [`Call::ConfXml`] with the class's counters in each multipath geom's and path's
    /// `<config>` (an extension: `gmultipath stat`, `--libxo`).
    StatsXml,
    /// Zero the counters of the geom called `geom`, or of every geom when it is empty.
    StatsReset {
        /// Geom name, or empty for all.
        geom: String,
    },
    /// The counters in the Prometheus text format (`gmultipathd metrics`).
    Metrics,
}

/// One knob as the daemon reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Knob {
    /// Full name.
    pub name: String,
    /// Current value.
    pub value: u64,
    /// The value before a set (only in the answer to [`Call::SysctlSet`]).
    pub old: Option<u64>,
    /// Its description.
    pub description: String,
}

/// The daemon's answer to a [`Call`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The outcome of a [`Call::Ctl`]: the first error, or the output.
    Ctl(Reply),
    /// Text (the XML tree).
    Text(String),
    /// The call failed with an errno and a message.
    Failed {
        /// The errno (as on the daemon's platform).
        errno: i32,
        /// What went wrong.
        text: String,
    },
    /// Done, nothing to report.
    Done,
    /// Bytes read.
    Data(Vec<u8>),
    /// A provider's geometry.
    Provider {
        /// Media size in bytes.
        mediasize: u64,
        /// Sector size in bytes.
        sectorsize: u32,
    },
    /// Knobs.
    Sysctl(Vec<Knob>),
    /// Named counters.
    Counters(Vec<(String, u64)>),
    /// Console messages and the sequence number after the last one.
    Messages {
        /// Pass this as `since` next time.
        next: u64,
        /// The messages, oldest first.
        lines: Vec<String>,
    },
    /// The daemon's pid.
    Pong {
        /// Process id.
        pid: u32,
    },
}

/// Why a frame could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The stream failed or ended.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The frame announces more than [`FRAME_MAX`] bytes.
    #[error("frame of {0} bytes is too large")]
    TooLarge(usize),
    /// An empty frame, an unknown tag, a short or over-long payload, bad UTF-8.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// The gctl request or reply inside is malformed.
    #[error("{0}")]
    Wire(#[from] WireError),
}

mod tag {
    pub const CTL: u8 = 1;
    pub const CONFXML: u8 = 2;
    pub const SYSCTL_GET: u8 = 3;
    pub const SYSCTL_SET: u8 = 4;
    pub const UNLOAD: u8 = 5;
    pub const PROBES: u8 = 6;
    pub const MESSAGES: u8 = 7;
    pub const PROVIDER_INFO: u8 = 8;
    pub const PROVIDER_READ: u8 = 9;
    pub const PROVIDER_WRITE: u8 = 10;
    pub const PING: u8 = 11;
    pub const PROVIDER_TOUCH: u8 = 12;
    pub const STATS_XML: u8 = 13;
    pub const STATS_RESET: u8 = 14;
    pub const METRICS: u8 = 15;

    pub const A_CTL: u8 = 128;
    pub const A_TEXT: u8 = 129;
    pub const A_FAILED: u8 = 130;
    pub const A_DONE: u8 = 131;
    pub const A_DATA: u8 = 132;
    pub const A_PROVIDER: u8 = 133;
    pub const A_SYSCTL: u8 = 134;
    pub const A_COUNTERS: u8 = 135;
    pub const A_MESSAGES: u8 = 136;
    pub const A_PONG: u8 = 137;
}

impl Call {
    /// The frame payload (tag first).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        match self {
            Call::Ctl(req) => {
                e.u8(tag::CTL);
                e.bytes(&wire::encode_request(req));
            }
            Call::ConfXml => e.u8(tag::CONFXML),
            Call::SysctlGet { name } => {
                e.u8(tag::SYSCTL_GET);
                e.str(name);
            }
            Call::SysctlSet { name, value } => {
                e.u8(tag::SYSCTL_SET);
                e.str(name);
                e.str(value);
            }
            Call::Unload => e.u8(tag::UNLOAD),
            Call::Probes => e.u8(tag::PROBES),
            Call::Messages { since } => {
                e.u8(tag::MESSAGES);
                e.u64(*since);
            }
            Call::ProviderInfo { name } => {
                e.u8(tag::PROVIDER_INFO);
                e.str(name);
            }
            Call::ProviderRead { name, offset, len } => {
                e.u8(tag::PROVIDER_READ);
                e.str(name);
                e.u64(*offset);
                e.u32(*len);
            }
            Call::ProviderTouch { name, offset, len } => {
                e.u8(tag::PROVIDER_TOUCH);
                e.str(name);
                e.u64(*offset);
                e.u32(*len);
            }
            Call::ProviderWrite { name, offset, data } => {
                e.u8(tag::PROVIDER_WRITE);
                e.str(name);
                e.u64(*offset);
                e.bytes(data);
            }
            Call::Ping => e.u8(tag::PING),
            Call::StatsXml => e.u8(tag::STATS_XML),
            Call::StatsReset { geom } => {
                e.u8(tag::STATS_RESET);
                e.str(geom);
            }
            Call::Metrics => e.u8(tag::METRICS),
        }
        e.0
    }

    /// Decodes a frame payload.
    pub fn decode(payload: &[u8]) -> Result<Call, ProtoError> {
        let mut d = Decoder::new(payload);
        let call = match d.u8()? {
            tag::CTL => Call::Ctl(wire::decode_request(d.bytes()?)?),
            tag::CONFXML => Call::ConfXml,
            tag::SYSCTL_GET => Call::SysctlGet { name: d.string()? },
            tag::SYSCTL_SET => Call::SysctlSet {
                name: d.string()?,
                value: d.string()?,
            },
            tag::UNLOAD => Call::Unload,
            tag::PROBES => Call::Probes,
            tag::MESSAGES => Call::Messages { since: d.u64()? },
            tag::PROVIDER_INFO => Call::ProviderInfo { name: d.string()? },
            tag::PROVIDER_READ => Call::ProviderRead {
                name: d.string()?,
                offset: d.u64()?,
                len: d.u32()?,
            },
            tag::PROVIDER_TOUCH => Call::ProviderTouch {
                name: d.string()?,
                offset: d.u64()?,
                len: d.u32()?,
            },
            tag::PROVIDER_WRITE => Call::ProviderWrite {
                name: d.string()?,
                offset: d.u64()?,
                data: d.bytes()?.to_vec(),
            },
            tag::PING => Call::Ping,
            tag::STATS_XML => Call::StatsXml,
            tag::STATS_RESET => Call::StatsReset { geom: d.string()? },
            tag::METRICS => Call::Metrics,
            _ => return Err(ProtoError::Malformed("unknown call")),
        };
        d.finish()?;
        Ok(call)
    }
}

impl Answer {
    /// The frame payload (tag first).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        match self {
            Answer::Ctl(reply) => {
                e.u8(tag::A_CTL);
                e.bytes(&wire::encode_reply(reply));
            }
            Answer::Text(t) => {
                e.u8(tag::A_TEXT);
                e.str(t);
            }
            Answer::Failed { errno, text } => {
                e.u8(tag::A_FAILED);
                e.u32(*errno as u32);
                e.str(text);
            }
            Answer::Done => e.u8(tag::A_DONE),
            Answer::Data(b) => {
                e.u8(tag::A_DATA);
                e.bytes(b);
            }
            Answer::Provider {
                mediasize,
                sectorsize,
            } => {
                e.u8(tag::A_PROVIDER);
                e.u64(*mediasize);
                e.u32(*sectorsize);
            }
            Answer::Sysctl(knobs) => {
                e.u8(tag::A_SYSCTL);
                e.u32(knobs.len() as u32);
                for k in knobs {
                    e.str(&k.name);
                    e.u64(k.value);
                    e.u8(u8::from(k.old.is_some()));
                    e.u64(k.old.unwrap_or(0));
                    e.str(&k.description);
                }
            }
            Answer::Counters(cs) => {
                e.u8(tag::A_COUNTERS);
                e.u32(cs.len() as u32);
                for (name, n) in cs {
                    e.str(name);
                    e.u64(*n);
                }
            }
            Answer::Messages { next, lines } => {
                e.u8(tag::A_MESSAGES);
                e.u64(*next);
                e.u32(lines.len() as u32);
                for l in lines {
                    e.str(l);
                }
            }
            Answer::Pong { pid } => {
                e.u8(tag::A_PONG);
                e.u32(*pid);
            }
        }
        e.0
    }

    /// Decodes a frame payload.
    pub fn decode(payload: &[u8]) -> Result<Answer, ProtoError> {
        let mut d = Decoder::new(payload);
        let answer = match d.u8()? {
            tag::A_CTL => Answer::Ctl(wire::decode_reply(d.bytes()?)?),
            tag::A_TEXT => Answer::Text(d.string()?),
            tag::A_FAILED => Answer::Failed {
                errno: d.u32()? as i32,
                text: d.string()?,
            },
            tag::A_DONE => Answer::Done,
            tag::A_DATA => Answer::Data(d.bytes()?.to_vec()),
            tag::A_PROVIDER => Answer::Provider {
                mediasize: d.u64()?,
                sectorsize: d.u32()?,
            },
            tag::A_SYSCTL => {
                let n = d.count(8)?;
                let mut knobs = Vec::with_capacity(n);
                for _ in 0..n {
                    let name = d.string()?;
                    let value = d.u64()?;
                    let has_old = d.u8()? != 0;
                    let old = d.u64()?;
                    knobs.push(Knob {
                        name,
                        value,
                        old: has_old.then_some(old),
                        description: d.string()?,
                    });
                }
                Answer::Sysctl(knobs)
            }
            tag::A_COUNTERS => {
                let n = d.count(12)?;
                let mut cs = Vec::with_capacity(n);
                for _ in 0..n {
                    cs.push((d.string()?, d.u64()?));
                }
                Answer::Counters(cs)
            }
            tag::A_MESSAGES => {
                let next = d.u64()?;
                let n = d.count(4)?;
                let mut lines = Vec::with_capacity(n);
                for _ in 0..n {
                    lines.push(d.string()?);
                }
                Answer::Messages { next, lines }
            }
            tag::A_PONG => Answer::Pong { pid: d.u32()? },
            _ => return Err(ProtoError::Malformed("unknown answer")),
        };
        d.finish()?;
        Ok(answer)
    }
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&n| n as usize <= FRAME_MAX)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut buf = Vec::with_capacity(4 + payload.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame's payload. `Ok(None)` on a clean end of stream before a frame starts.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Vec<u8>>, ProtoError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(ProtoError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > FRAME_MAX {
        return Err(ProtoError::TooLarge(len));
    }
    if len == 0 {
        return Err(ProtoError::Malformed("empty frame"));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some(payload))
}

/// Sends `call` on a connected stream and waits for the answer.
pub fn roundtrip<S: Read + Write>(stream: &mut S, call: &Call) -> Result<Answer, ProtoError> {
    write_frame(stream, &call.encode())?;
    let payload = read_frame(stream)?.ok_or(ProtoError::Io(io::ErrorKind::UnexpectedEof.into()))?;
    Answer::decode(&payload)
}

#[cfg(any(test, feature = "fuzz"))]
/// Fuzz body for the daemon's side of the control socket: reads frames from `data` as the
/// daemon reads a connection and decodes each as a call (and, for the tools' side, as an
/// answer); whatever decodes must encode to something that decodes to the same value.
/// Panics only on a codec bug.
pub fn fuzz_socket(data: &[u8]) {
    let mut stream = data;
    while let Ok(Some(payload)) = read_frame(&mut stream) {
        if let Ok(call) = Call::decode(&payload) {
            let again = Call::decode(&call.encode());
            assert!(
                again.as_ref().ok() == Some(&call),
                "call round trip: {call:?}"
            );
        }
        if let Ok(answer) = Answer::decode(&payload) {
            let again = Answer::decode(&answer.encode());
            assert!(
                again.as_ref().ok() == Some(&answer),
                "answer round trip: {answer:?}"
            );
        }
    }
}

#[derive(Default)]
struct Encoder(Vec<u8>);

impl Encoder {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(ProtoError::Malformed("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, ProtoError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, ProtoError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bytes(&mut self) -> Result<&'a [u8], ProtoError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, ProtoError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| ProtoError::Malformed("not UTF-8"))
    }
    /// A count of items each at least `min_item` bytes long, checked against what is left.
    fn count(&mut self, min_item: usize) -> Result<usize, ProtoError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.buf.len() - self.pos {
            return Err(ProtoError::Malformed("count exceeds frame"));
        }
        Ok(n)
    }
    fn finish(&self) -> Result<(), ProtoError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(ProtoError::Malformed("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls() -> Vec<Call> {
        let mut req = Request::for_verb("MULTIPATH", "getactive", 1);
        req.add_args(&["FRED"]);
        req.add_output("output", 4096);
        vec![
            Call::Ctl(req),
            Call::ConfXml,
            Call::SysctlGet {
                name: String::new(),
            },
            Call::SysctlSet {
                name: "kern.geom.multipath.debug".into(),
                value: "1".into(),
            },
            Call::Unload,
            Call::Probes,
            Call::Messages { since: 7 },
            Call::ProviderInfo {
                name: "loop3".into(),
            },
            Call::ProviderRead {
                name: "loop3".into(),
                offset: 1 << 40,
                len: 512,
            },
            Call::ProviderTouch {
                name: "loop4".into(),
                offset: 4096,
                len: 512,
            },
            Call::ProviderWrite {
                name: "loop3.nop".into(),
                offset: 512,
                data: vec![1, 2, 3],
            },
            Call::Ping,
            Call::StatsXml,
            Call::StatsReset {
                geom: "FRED".into(),
            },
            Call::Metrics,
        ]
    }

    fn answers() -> Vec<Answer> {
        vec![
            Answer::Ctl(Reply {
                error: String::new(),
                output: "md0\n".into(),
            }),
            Answer::Text("<mesh>\n</mesh>\n".into()),
            Answer::Failed {
                errno: 16,
                text: "Device busy".into(),
            },
            Answer::Done,
            Answer::Data(vec![0; 512]),
            Answer::Provider {
                mediasize: 1 << 30,
                sectorsize: 4096,
            },
            Answer::Sysctl(vec![Knob {
                name: "kern.geom.multipath.debug".into(),
                value: 1,
                old: Some(0),
                description: "Debug level".into(),
            }]),
            Answer::Counters(vec![("geom:multipath:config:restore".into(), 2)]),
            Answer::Messages {
                next: 9,
                lines: vec!["GEOM_MULTIPATH: FRED created".into()],
            },
            Answer::Pong { pid: 4242 },
        ]
    }

    #[test]
    fn every_call_and_answer_round_trips() {
        for c in calls() {
            assert_eq!(Call::decode(&c.encode()).unwrap(), c);
        }
        for a in answers() {
            assert_eq!(Answer::decode(&a.encode()).unwrap(), a);
        }
    }

    #[test]
    fn truncations_and_trailing_bytes_are_errors() {
        for c in calls() {
            let b = c.encode();
            for n in 0..b.len() {
                assert!(Call::decode(&b[..n]).is_err(), "{c:?} cut at {n}");
            }
            let mut long = b.clone();
            long.push(0);
            assert!(Call::decode(&long).is_err());
        }
        for a in answers() {
            let b = a.encode();
            for n in 0..b.len() {
                assert!(Answer::decode(&b[..n]).is_err(), "{a:?} cut at {n}");
            }
        }
    }

    #[test]
    fn unknown_tags_are_refused() {
        assert!(matches!(Call::decode(&[99]), Err(ProtoError::Malformed(_))));
        assert!(matches!(
            Answer::decode(&[1]),
            Err(ProtoError::Malformed(_))
        ));
    }

    #[test]
    fn frames_round_trip_and_oversize_is_refused_before_allocating() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"\x0bhello").unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), b"\x0bhello");
        assert!(read_frame(&mut r).unwrap().is_none(), "clean end");
        let huge = (FRAME_MAX as u32 + 1).to_le_bytes();
        assert!(matches!(
            read_frame(&mut &huge[..]),
            Err(ProtoError::TooLarge(_))
        ));
        assert!(matches!(
            read_frame(&mut &[0u8, 0, 0, 0][..]),
            Err(ProtoError::Malformed(_))
        ));
        assert!(matches!(
            read_frame(&mut &[5u8, 0][..]),
            Err(ProtoError::Io(_))
        ));
    }

    #[test]
    fn the_socket_fuzz_body_survives_garbage_and_mutations() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut valid = Vec::new();
        for c in calls() {
            write_frame(&mut valid, &c.encode()).unwrap();
        }
        fuzz_socket(&valid);
        for _ in 0..20_000 {
            let mut b = valid.clone();
            for _ in 0..1 + next() % 8 {
                let i = (next() as usize) % b.len();
                b[i] = next() as u8;
            }
            b.truncate((next() as usize) % (b.len() + 1));
            fuzz_socket(&b);
            let garbage: Vec<u8> = (0..next() % 64).map(|_| next() as u8).collect();
            fuzz_socket(&garbage);
        }
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        let mut b = vec![tag::A_MESSAGES];
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Answer::decode(&b).is_err());
    }
}

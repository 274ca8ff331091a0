//! The NBD wire format as the NBD protocol document (`doc/proto.md` of the NBD project)
//! defines it: the fixed-newstyle handshake (greeting, client flags, options and option
//! replies, the old `NBD_OPT_EXPORT_NAME` answer) and the transmission phase (requests and
//! simple replies). Pure: bytes in, values out, values in, bytes out; no socket, no clock.
//!
//! What it owns: the magic numbers, flags, option, reply, info and command codes, the
//! layout of every message, the limits that keep a decoder's allocation bounded
//! ([`MAX_PAYLOAD`], [`MAX_OPTION_DATA`], [`MAX_STRING`]), and the mapping between host
//! errno values and the NBD error values of the spec. What it does not do: decide what to
//! answer (that is [`crate::export::nbd`] and [`crate::path::nbd`]), TLS, structured
//! replies, metadata contexts or extended headers (a peer that negotiates them gets
//! `NBD_REP_ERR_UNSUP`; a structured reply chunk is a [`CodecError`]).
//!
//! Decoding is of two kinds. Stream decoders (`decode_*` over a byte slice that may hold
//! only part of a message) return `Ok(None)` until the whole message is there and then
//! `Ok(Some((value, bytes_used)))`; the fixed-size headers also decode from arrays
//! (`decode(&[u8; N])`), which is what the socket loops use, reading a header and then the
//! length it announces. Payload parsers (an option's data, an option reply's data, whose
//! length is known) treat every truncation as an error. No decoder panics on any input, and
//! none allocates more than the limit for what it decodes: a length beyond the limit is an
//! error before anything is allocated. The `fuzz_*` functions feed arbitrary bytes to every
//! decoder and check that whatever decodes encodes back (a fuzz harness calls them).

use thiserror::Error;

// ----- magic numbers ---------------------------------------------------------------------

/// `NBDMAGIC`, the first 8 bytes a server sends (also called `INIT_PASSWD`).
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: the newstyle magic, sent by the server after [`NBDMAGIC`] and by the
/// client before every option.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// The oldstyle handshake's second magic (`cliserv_magic`); not supported.
pub const OLDSTYLE_MAGIC: u64 = 0x0000_4202_8186_1253;
/// The magic of every option reply.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// `NBD_REQUEST_MAGIC`.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// `NBD_SIMPLE_REPLY_MAGIC`.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// `NBD_STRUCTURED_REPLY_MAGIC` (recognised only to be refused).
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
/// The IANA port for NBD.
pub const DEFAULT_PORT: u16 = 10809;

// ----- limits ----------------------------------------------------------------------------

/// The largest READ or WRITE payload either side accepts: 32 MiB, the spec's portable
/// maximum (anything up to it "SHOULD NOT be considered a denial of service attack").
pub const MAX_PAYLOAD: u32 = 32 << 20;
/// The largest option data (client → server) or option reply data (server → client) that
/// is decoded. The longest legitimate ones (`NBD_OPT_GO` with a 4096-byte name, an
/// `NBD_REP_SERVER` with a description) are far below it.
pub const MAX_OPTION_DATA: u32 = 64 << 10;
/// The longest string (export name, message) the spec allows.
pub const MAX_STRING: usize = 4096;

// ----- handshake flags -------------------------------------------------------------------

/// Handshake flag: the server speaks fixed newstyle.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// Handshake flag: the server can leave out the 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flag: the client speaks fixed newstyle.
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
/// Client flag: leave out the 124 zero bytes.
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;
/// Every client flag the spec defines (a server drops a client that sets another).
pub const CLIENT_FLAGS_KNOWN: u32 = FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES;

// ----- transmission flags ----------------------------------------------------------------

/// Transmission flag: always set.
pub const FLAG_HAS_FLAGS: u16 = 1 << 0;
/// Transmission flag: the export is read-only.
pub const FLAG_READ_ONLY: u16 = 1 << 1;
/// Transmission flag: `NBD_CMD_FLUSH` is understood.
pub const FLAG_SEND_FLUSH: u16 = 1 << 2;
/// Transmission flag: `NBD_CMD_FLAG_FUA` is understood.
pub const FLAG_SEND_FUA: u16 = 1 << 3;
/// Transmission flag: the medium is rotational.
pub const FLAG_ROTATIONAL: u16 = 1 << 4;
/// Transmission flag: `NBD_CMD_TRIM` is understood.
pub const FLAG_SEND_TRIM: u16 = 1 << 5;
/// Transmission flag: `NBD_CMD_WRITE_ZEROES` (and `NBD_CMD_FLAG_NO_HOLE`) is understood.
pub const FLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
/// Transmission flag: `NBD_CMD_FLAG_DF` is understood (structured replies only).
pub const FLAG_SEND_DF: u16 = 1 << 7;
/// Transmission flag: flush and FUA act across every connection to the export.
pub const FLAG_CAN_MULTI_CONN: u16 = 1 << 8;
/// Transmission flag: `NBD_CMD_CACHE` is understood.
pub const FLAG_SEND_CACHE: u16 = 1 << 10;
/// Transmission flag: `NBD_CMD_FLAG_FAST_ZERO` is understood.
pub const FLAG_SEND_FAST_ZERO: u16 = 1 << 11;

// ----- options, option replies, info types -----------------------------------------------

/// `NBD_OPT_EXPORT_NAME`: choose an export and enter transmission (cannot fail cleanly).
pub const OPT_EXPORT_NAME: u32 = 1;
/// `NBD_OPT_ABORT`: end the session.
pub const OPT_ABORT: u32 = 2;
/// `NBD_OPT_LIST`: list the exports.
pub const OPT_LIST: u32 = 3;
/// `NBD_OPT_STARTTLS`.
pub const OPT_STARTTLS: u32 = 5;
/// `NBD_OPT_INFO`: describe an export.
pub const OPT_INFO: u32 = 6;
/// `NBD_OPT_GO`: describe an export and enter transmission.
pub const OPT_GO: u32 = 7;
/// `NBD_OPT_STRUCTURED_REPLY`.
pub const OPT_STRUCTURED_REPLY: u32 = 8;
/// `NBD_OPT_LIST_META_CONTEXT`.
pub const OPT_LIST_META_CONTEXT: u32 = 9;
/// `NBD_OPT_SET_META_CONTEXT`.
pub const OPT_SET_META_CONTEXT: u32 = 10;
/// `NBD_OPT_EXTENDED_HEADERS`.
pub const OPT_EXTENDED_HEADERS: u32 = 11;

/// `NBD_REP_ACK`: the option succeeded (or a list ended).
pub const REP_ACK: u32 = 1;
/// `NBD_REP_SERVER`: one export of a list.
pub const REP_SERVER: u32 = 2;
/// `NBD_REP_INFO`: one piece of information about an export.
pub const REP_INFO: u32 = 3;
/// `NBD_REP_META_CONTEXT`.
pub const REP_META_CONTEXT: u32 = 4;
/// Bit 31: the reply is an error.
pub const REP_FLAG_ERROR: u32 = 1 << 31;
/// `NBD_REP_ERR_UNSUP`: unknown option.
pub const REP_ERR_UNSUP: u32 = REP_FLAG_ERROR | 1;
/// `NBD_REP_ERR_POLICY`: forbidden by the server's policy.
pub const REP_ERR_POLICY: u32 = REP_FLAG_ERROR | 2;
/// `NBD_REP_ERR_INVALID`: syntactically or semantically invalid.
pub const REP_ERR_INVALID: u32 = REP_FLAG_ERROR | 3;
/// `NBD_REP_ERR_PLATFORM`.
pub const REP_ERR_PLATFORM: u32 = REP_FLAG_ERROR | 4;
/// `NBD_REP_ERR_TLS_REQD`.
pub const REP_ERR_TLS_REQD: u32 = REP_FLAG_ERROR | 5;
/// `NBD_REP_ERR_UNKNOWN`: no such export.
pub const REP_ERR_UNKNOWN: u32 = REP_FLAG_ERROR | 6;
/// `NBD_REP_ERR_SHUTDOWN`: the server is going away.
pub const REP_ERR_SHUTDOWN: u32 = REP_FLAG_ERROR | 7;
/// `NBD_REP_ERR_BLOCK_SIZE_REQD`.
pub const REP_ERR_BLOCK_SIZE_REQD: u32 = REP_FLAG_ERROR | 8;
/// `NBD_REP_ERR_TOO_BIG`: the request or reply is too large.
pub const REP_ERR_TOO_BIG: u32 = REP_FLAG_ERROR | 9;

/// `NBD_INFO_EXPORT`: size and transmission flags.
pub const INFO_EXPORT: u16 = 0;
/// `NBD_INFO_NAME`: the canonical export name.
pub const INFO_NAME: u16 = 1;
/// `NBD_INFO_DESCRIPTION`: text for a human.
pub const INFO_DESCRIPTION: u16 = 2;
/// `NBD_INFO_BLOCK_SIZE`: minimum, preferred and maximum block sizes.
pub const INFO_BLOCK_SIZE: u16 = 3;

/// The spec's name of an option reply type, for messages.
pub fn reply_name(reply: u32) -> &'static str {
    match reply {
        REP_ACK => "NBD_REP_ACK",
        REP_SERVER => "NBD_REP_SERVER",
        REP_INFO => "NBD_REP_INFO",
        REP_META_CONTEXT => "NBD_REP_META_CONTEXT",
        REP_ERR_UNSUP => "NBD_REP_ERR_UNSUP",
        REP_ERR_POLICY => "NBD_REP_ERR_POLICY",
        REP_ERR_INVALID => "NBD_REP_ERR_INVALID",
        REP_ERR_PLATFORM => "NBD_REP_ERR_PLATFORM",
        REP_ERR_TLS_REQD => "NBD_REP_ERR_TLS_REQD",
        REP_ERR_UNKNOWN => "NBD_REP_ERR_UNKNOWN",
        REP_ERR_SHUTDOWN => "NBD_REP_ERR_SHUTDOWN",
        REP_ERR_BLOCK_SIZE_REQD => "NBD_REP_ERR_BLOCK_SIZE_REQD",
        REP_ERR_TOO_BIG => "NBD_REP_ERR_TOO_BIG",
        r if r & REP_FLAG_ERROR != 0 => "an unknown NBD_REP_ERR",
        _ => "an unknown reply",
    }
}

// ----- command flags ---------------------------------------------------------------------

/// Command flag: force unit access (persist before replying).
pub const CMD_FLAG_FUA: u16 = 1 << 0;
/// Command flag (WRITE_ZEROES): do not punch a hole.
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
/// Command flag (READ, structured replies): do not fragment.
pub const CMD_FLAG_DF: u16 = 1 << 2;
/// Command flag (BLOCK_STATUS): one extent only.
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;
/// Command flag (WRITE_ZEROES): fail fast unless zeroing is fast.
pub const CMD_FLAG_FAST_ZERO: u16 = 1 << 4;

// ----- error values ----------------------------------------------------------------------

/// `NBD_EPERM` on the wire.
pub const NBD_EPERM: u32 = 1;
/// `NBD_EIO` on the wire.
pub const NBD_EIO: u32 = 5;
/// `NBD_ENOMEM` on the wire.
pub const NBD_ENOMEM: u32 = 12;
/// `NBD_EINVAL` on the wire.
pub const NBD_EINVAL: u32 = 22;
/// `NBD_ENOSPC` on the wire.
pub const NBD_ENOSPC: u32 = 28;
/// `NBD_EOVERFLOW` on the wire.
pub const NBD_EOVERFLOW: u32 = 75;
/// `NBD_ENOTSUP` on the wire.
pub const NBD_ENOTSUP: u32 = 95;
/// `NBD_ESHUTDOWN` on the wire.
pub const NBD_ESHUTDOWN: u32 = 108;

/// The NBD error value for a host errno. The spec allows only eight values; anything else
/// (ENXIO from a withered provider, ETIMEDOUT, …) is an I/O error to the client.
pub fn errno_to_wire(errno: i32) -> u32 {
    match errno {
        0 => 0,
        libc::EPERM | libc::EROFS | libc::EACCES => NBD_EPERM,
        libc::ENOMEM => NBD_ENOMEM,
        libc::EINVAL => NBD_EINVAL,
        libc::ENOSPC | libc::EDQUOT | libc::EFBIG => NBD_ENOSPC,
        libc::EOVERFLOW => NBD_EOVERFLOW,
        libc::ENOTSUP => NBD_ENOTSUP,
        libc::ESHUTDOWN => NBD_ESHUTDOWN,
        _ => NBD_EIO,
    }
}

/// The host errno for an NBD error value (an unknown value is EIO).
pub fn wire_to_errno(error: u32) -> i32 {
    match error {
        0 => 0,
        NBD_EPERM => libc::EPERM,
        NBD_ENOMEM => libc::ENOMEM,
        NBD_EINVAL => libc::EINVAL,
        NBD_ENOSPC => libc::ENOSPC,
        NBD_EOVERFLOW => libc::EOVERFLOW,
        NBD_ENOTSUP => libc::ENOTSUP,
        NBD_ESHUTDOWN => libc::ESHUTDOWN,
        _ => libc::EIO,
    }
}

// ----- errors ----------------------------------------------------------------------------

/// Why bytes are not a valid NBD message. The socket loops end the session on any of
/// these (the spec's "hard disconnect" for a peer that breaks a MUST).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CodecError {
    /// A magic number is wrong.
    #[error("bad {what} magic {found:#x}")]
    BadMagic {
        /// Which message.
        what: &'static str,
        /// The bytes found, as a number.
        found: u64,
    },
    /// A length is above the decoder's limit.
    #[error("{what} of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// Which field.
        what: &'static str,
        /// The length announced.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A length does not fit the message's layout.
    #[error("{what} has an invalid length {len}")]
    BadLength {
        /// Which message.
        what: &'static str,
        /// The length announced.
        len: u64,
    },
    /// A payload ends before its fields do.
    #[error("{what} ends early")]
    Truncated {
        /// Which message.
        what: &'static str,
    },
    /// A string is not UTF-8, holds a NUL, or is longer than [`MAX_STRING`].
    #[error("{what} is not a valid NBD string")]
    BadString {
        /// Which field.
        what: &'static str,
    },
    /// The server speaks the oldstyle handshake.
    #[error("the server speaks the oldstyle handshake, which is not supported")]
    OldStyle,
    /// A structured reply chunk arrived, but structured replies were not negotiated.
    #[error("a structured reply arrived, but structured replies were not negotiated")]
    StructuredReply,
}

/// Why the data of a known option is invalid: answered with `NBD_REP_ERR_INVALID` and
/// this text (or, for `NBD_OPT_EXPORT_NAME`, which cannot be answered, a disconnect).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct InvalidOption(pub String);

// ----- byte helpers ----------------------------------------------------------------------

/// Reads big-endian fields from a payload whose length is known; running out is an error.
struct Fields<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Fields<'a> {
        Fields { buf, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated { what: self.what });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, CodecError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// An NBD string: UTF-8, no NUL, at most [`MAX_STRING`] bytes.
fn string(bytes: &[u8], what: &'static str) -> Result<String, CodecError> {
    if bytes.len() > MAX_STRING || bytes.contains(&0) {
        return Err(CodecError::BadString { what });
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| CodecError::BadString { what })
}

/// Free text for a human (a message, a description): decoded leniently, as it is only
/// shown, never compared.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `true` if `s` may be sent as an NBD string.
pub fn valid_string(s: &str) -> bool {
    s.len() <= MAX_STRING && !s.contains('\0')
}

fn len32(n: usize) -> u32 {
    // Every length encoded here is bounded by MAX_OPTION_DATA or MAX_PAYLOAD.
    u32::try_from(n).unwrap_or(u32::MAX)
}

// ----- handshake -------------------------------------------------------------------------

/// The server's greeting: `NBDMAGIC`, `IHAVEOPT`, handshake flags (18 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Greeting {
    /// Handshake flags ([`FLAG_FIXED_NEWSTYLE`], [`FLAG_NO_ZEROES`]).
    pub flags: u16,
}

impl Greeting {
    /// The encoded length.
    pub const LEN: usize = 18;

    /// The bytes of the greeting.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
        b[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
        b[16..18].copy_from_slice(&self.flags.to_be_bytes());
        b
    }

    /// Decodes a greeting.
    pub fn decode(b: &[u8; Self::LEN]) -> Result<Greeting, CodecError> {
        let magic = be64(b, 0);
        if magic != NBDMAGIC {
            return Err(CodecError::BadMagic {
                what: "greeting",
                found: magic,
            });
        }
        match be64(b, 8) {
            IHAVEOPT => Ok(Greeting { flags: be16(b, 16) }),
            OLDSTYLE_MAGIC => Err(CodecError::OldStyle),
            other => Err(CodecError::BadMagic {
                what: "newstyle",
                found: other,
            }),
        }
    }
}

/// The client's flags (4 bytes).
pub fn encode_client_flags(flags: u32) -> [u8; 4] {
    flags.to_be_bytes()
}

/// Decodes the client's flags.
pub fn decode_client_flags(b: &[u8; 4]) -> u32 {
    u32::from_be_bytes(*b)
}

/// The header of an option: `IHAVEOPT`, option code, data length (16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionHeader {
    /// The option code (`OPT_*`).
    pub option: u32,
    /// Length of the data that follows.
    pub length: u32,
}

impl OptionHeader {
    /// The encoded length.
    pub const LEN: usize = 16;

    /// The bytes of the header.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&IHAVEOPT.to_be_bytes());
        b[8..12].copy_from_slice(&self.option.to_be_bytes());
        b[12..16].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    /// Decodes a header (any length: the caller checks it against [`MAX_OPTION_DATA`]
    /// and may skip the data of an option it will not decode).
    pub fn decode(b: &[u8; Self::LEN]) -> Result<OptionHeader, CodecError> {
        let magic = be64(b, 0);
        if magic != IHAVEOPT {
            return Err(CodecError::BadMagic {
                what: "option",
                found: magic,
            });
        }
        Ok(OptionHeader {
            option: be32(b, 8),
            length: be32(b, 12),
        })
    }
}

/// An option as it came: code and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawOption {
    /// The option code.
    pub option: u32,
    /// Its data.
    pub data: Vec<u8>,
}

impl RawOption {
    /// Header and data.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = OptionHeader {
            option: self.option,
            length: len32(self.data.len()),
        }
        .encode()
        .to_vec();
        v.extend_from_slice(&self.data);
        v
    }
}

/// Stream-decodes one option from `buf`: `Ok(None)` until all of it is there. Data over
/// [`MAX_OPTION_DATA`] is an error (before anything is allocated).
pub fn decode_option(buf: &[u8]) -> Result<Option<(RawOption, usize)>, CodecError> {
    let Some(head) = buf.first_chunk::<{ OptionHeader::LEN }>() else {
        return Ok(None);
    };
    let h = OptionHeader::decode(head)?;
    if h.length > MAX_OPTION_DATA {
        return Err(CodecError::TooLarge {
            what: "option data",
            len: u64::from(h.length),
            max: u64::from(MAX_OPTION_DATA),
        });
    }
    let end = OptionHeader::LEN + h.length as usize;
    let Some(data) = buf.get(OptionHeader::LEN..end) else {
        return Ok(None);
    };
    Ok(Some((
        RawOption {
            option: h.option,
            data: data.to_vec(),
        },
        end,
    )))
}

/// The export name and information requests of `NBD_OPT_INFO` / `NBD_OPT_GO`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfoRequest {
    /// The export ("" for the default one).
    pub name: String,
    /// The `INFO_*` types asked for.
    pub requests: Vec<u16>,
}

impl InfoRequest {
    fn parse(data: &[u8]) -> Result<InfoRequest, InvalidOption> {
        let bad = |why: &str| InvalidOption(format!("malformed INFO/GO request: {why}"));
        let mut f = Fields::new(data, "INFO/GO request");
        let n = f.u32().map_err(|_| bad("too short"))? as usize;
        if n > data.len().saturating_sub(6) {
            return Err(bad("the name length exceeds the data"));
        }
        let name = f.take(n).map_err(|_| bad("too short"))?;
        let name = string(name, "export name").map_err(|_| bad("the name is not valid"))?;
        let count = usize::from(f.u16().map_err(|_| bad("too short"))?);
        let rest = f.rest();
        if rest.len() != count * 2 {
            return Err(bad("the number of information requests does not match"));
        }
        let requests = rest
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        Ok(InfoRequest { name, requests })
    }

    fn data(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(6 + self.name.len() + 2 * self.requests.len());
        v.extend_from_slice(&len32(self.name.len()).to_be_bytes());
        v.extend_from_slice(self.name.as_bytes());
        let count = u16::try_from(self.requests.len()).unwrap_or(u16::MAX);
        v.extend_from_slice(&count.to_be_bytes());
        for r in self.requests.iter().take(usize::from(count)) {
            v.extend_from_slice(&r.to_be_bytes());
        }
        v
    }
}

/// An option, understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOption {
    /// `NBD_OPT_EXPORT_NAME`.
    ExportName(String),
    /// `NBD_OPT_ABORT` (any data is ignored, as the spec asks).
    Abort,
    /// `NBD_OPT_LIST`.
    List,
    /// `NBD_OPT_STARTTLS`.
    StartTls,
    /// `NBD_OPT_INFO`.
    Info(InfoRequest),
    /// `NBD_OPT_GO`.
    Go(InfoRequest),
    /// `NBD_OPT_STRUCTURED_REPLY`.
    StructuredReply,
    /// Any other option, kept as it came.
    Other(RawOption),
}

impl ClientOption {
    /// Understands option `option` with data `data`.
    pub fn parse(option: u32, data: &[u8]) -> Result<ClientOption, InvalidOption> {
        let no_data = |o: ClientOption, name: &str| {
            if data.is_empty() {
                Ok(o)
            } else {
                Err(InvalidOption(format!("{name} takes no data")))
            }
        };
        match option {
            OPT_EXPORT_NAME => string(data, "export name")
                .map(ClientOption::ExportName)
                .map_err(|_| InvalidOption("the export name is not a valid string".into())),
            OPT_ABORT => Ok(ClientOption::Abort),
            OPT_LIST => no_data(ClientOption::List, "NBD_OPT_LIST"),
            OPT_STARTTLS => no_data(ClientOption::StartTls, "NBD_OPT_STARTTLS"),
            OPT_INFO => InfoRequest::parse(data).map(ClientOption::Info),
            OPT_GO => InfoRequest::parse(data).map(ClientOption::Go),
            OPT_STRUCTURED_REPLY => {
                no_data(ClientOption::StructuredReply, "NBD_OPT_STRUCTURED_REPLY")
            }
            _ => Ok(ClientOption::Other(RawOption {
                option,
                data: data.to_vec(),
            })),
        }
    }

    /// The option code.
    pub fn code(&self) -> u32 {
        match self {
            ClientOption::ExportName(_) => OPT_EXPORT_NAME,
            ClientOption::Abort => OPT_ABORT,
            ClientOption::List => OPT_LIST,
            ClientOption::StartTls => OPT_STARTTLS,
            ClientOption::Info(_) => OPT_INFO,
            ClientOption::Go(_) => OPT_GO,
            ClientOption::StructuredReply => OPT_STRUCTURED_REPLY,
            ClientOption::Other(raw) => raw.option,
        }
    }

    /// The option's data.
    pub fn data(&self) -> Vec<u8> {
        match self {
            ClientOption::ExportName(name) => name.as_bytes().to_vec(),
            ClientOption::Info(r) | ClientOption::Go(r) => r.data(),
            ClientOption::Other(raw) => raw.data.clone(),
            ClientOption::Abort
            | ClientOption::List
            | ClientOption::StartTls
            | ClientOption::StructuredReply => Vec::new(),
        }
    }

    /// Header and data, as the client sends them.
    pub fn encode(&self) -> Vec<u8> {
        RawOption {
            option: self.code(),
            data: self.data(),
        }
        .encode()
    }
}

/// One piece of information about an export (`NBD_REP_INFO`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Info {
    /// `NBD_INFO_EXPORT`.
    Export {
        /// Size in bytes.
        size: u64,
        /// Transmission flags.
        flags: u16,
    },
    /// `NBD_INFO_NAME`.
    Name(String),
    /// `NBD_INFO_DESCRIPTION`.
    Description(String),
    /// `NBD_INFO_BLOCK_SIZE`.
    BlockSize {
        /// Minimum block size (alignment of every request).
        min: u32,
        /// Preferred block size.
        preferred: u32,
        /// Maximum payload.
        max: u32,
    },
    /// A type this codec does not know, kept as it came.
    Other {
        /// The information type.
        info: u16,
        /// Its payload.
        data: Vec<u8>,
    },
}

impl Info {
    fn parse(data: &[u8]) -> Result<Info, CodecError> {
        let mut f = Fields::new(data, "NBD_REP_INFO");
        let info = f.u16()?;
        let bad = CodecError::BadLength {
            what: "NBD_REP_INFO",
            len: data.len() as u64,
        };
        match info {
            INFO_EXPORT if data.len() == 12 => Ok(Info::Export {
                size: f.u64()?,
                flags: f.u16()?,
            }),
            INFO_BLOCK_SIZE if data.len() == 14 => Ok(Info::BlockSize {
                min: f.u32()?,
                preferred: f.u32()?,
                max: f.u32()?,
            }),
            INFO_EXPORT | INFO_BLOCK_SIZE => Err(bad),
            INFO_NAME => Ok(Info::Name(string(f.rest(), "NBD_INFO_NAME")?)),
            INFO_DESCRIPTION => Ok(Info::Description(text(f.rest()))),
            _ => Ok(Info::Other {
                info,
                data: f.rest().to_vec(),
            }),
        }
    }

    fn data(&self) -> Vec<u8> {
        let mut v = Vec::new();
        match self {
            Info::Export { size, flags } => {
                v.extend_from_slice(&INFO_EXPORT.to_be_bytes());
                v.extend_from_slice(&size.to_be_bytes());
                v.extend_from_slice(&flags.to_be_bytes());
            }
            Info::Name(s) => {
                v.extend_from_slice(&INFO_NAME.to_be_bytes());
                v.extend_from_slice(s.as_bytes());
            }
            Info::Description(s) => {
                v.extend_from_slice(&INFO_DESCRIPTION.to_be_bytes());
                v.extend_from_slice(s.as_bytes());
            }
            Info::BlockSize {
                min,
                preferred,
                max,
            } => {
                v.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
                v.extend_from_slice(&min.to_be_bytes());
                v.extend_from_slice(&preferred.to_be_bytes());
                v.extend_from_slice(&max.to_be_bytes());
            }
            Info::Other { info, data } => {
                v.extend_from_slice(&info.to_be_bytes());
                v.extend_from_slice(data);
            }
        }
        v
    }
}

/// An option reply, understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionReply {
    /// `NBD_REP_ACK`.
    Ack,
    /// `NBD_REP_SERVER`: an export's name and an optional description.
    Server {
        /// The export name.
        name: String,
        /// Text for a human (may be empty).
        details: String,
    },
    /// `NBD_REP_INFO`.
    Info(Info),
    /// An error (`REP_ERR_*`, bit 31 set) with an optional message.
    Error {
        /// The reply type.
        code: u32,
        /// Text for a human (may be empty).
        message: String,
    },
    /// Any other reply type (`NBD_REP_META_CONTEXT`, unknown ones), kept as it came.
    Other {
        /// The reply type.
        reply: u32,
        /// Its data.
        data: Vec<u8>,
    },
}

impl OptionReply {
    /// The reply type.
    pub fn code(&self) -> u32 {
        match self {
            OptionReply::Ack => REP_ACK,
            OptionReply::Server { .. } => REP_SERVER,
            OptionReply::Info(_) => REP_INFO,
            OptionReply::Error { code, .. } => *code,
            OptionReply::Other { reply, .. } => *reply,
        }
    }

    /// Understands reply type `reply` with data `data`.
    pub fn parse(reply: u32, data: &[u8]) -> Result<OptionReply, CodecError> {
        if reply & REP_FLAG_ERROR != 0 {
            return Ok(OptionReply::Error {
                code: reply,
                message: text(data),
            });
        }
        match reply {
            REP_ACK if data.is_empty() => Ok(OptionReply::Ack),
            REP_ACK => Err(CodecError::BadLength {
                what: "NBD_REP_ACK",
                len: data.len() as u64,
            }),
            REP_SERVER => {
                let mut f = Fields::new(data, "NBD_REP_SERVER");
                let n = f.u32()? as usize;
                let name = f.take(n)?;
                Ok(OptionReply::Server {
                    name: string(name, "NBD_REP_SERVER name")?,
                    details: text(f.rest()),
                })
            }
            REP_INFO => Info::parse(data).map(OptionReply::Info),
            _ => Ok(OptionReply::Other {
                reply,
                data: data.to_vec(),
            }),
        }
    }

    /// The reply's data.
    pub fn data(&self) -> Vec<u8> {
        match self {
            OptionReply::Ack => Vec::new(),
            OptionReply::Server { name, details } => {
                let mut v = len32(name.len()).to_be_bytes().to_vec();
                v.extend_from_slice(name.as_bytes());
                v.extend_from_slice(details.as_bytes());
                v
            }
            OptionReply::Info(i) => i.data(),
            OptionReply::Error { message, .. } => message.as_bytes().to_vec(),
            OptionReply::Other { data, .. } => data.clone(),
        }
    }

    /// Header and data: the reply to option `option`.
    pub fn encode(&self, option: u32) -> Vec<u8> {
        let data = self.data();
        let mut v = Vec::with_capacity(OptionReplyHeader::LEN + data.len());
        v.extend_from_slice(
            &OptionReplyHeader {
                option,
                reply: self.code(),
                length: len32(data.len()),
            }
            .encode(),
        );
        v.extend_from_slice(&data);
        v
    }
}

/// The header of an option reply: magic, option, reply type, length (20 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionReplyHeader {
    /// The option answered.
    pub option: u32,
    /// The reply type (`REP_*`).
    pub reply: u32,
    /// Length of the data that follows.
    pub length: u32,
}

impl OptionReplyHeader {
    /// The encoded length.
    pub const LEN: usize = 20;

    /// The bytes of the header.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
        b[8..12].copy_from_slice(&self.option.to_be_bytes());
        b[12..16].copy_from_slice(&self.reply.to_be_bytes());
        b[16..20].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    /// Decodes a header; a length over [`MAX_OPTION_DATA`] is an error.
    pub fn decode(b: &[u8; Self::LEN]) -> Result<OptionReplyHeader, CodecError> {
        let magic = be64(b, 0);
        if magic != OPTION_REPLY_MAGIC {
            return Err(CodecError::BadMagic {
                what: "option reply",
                found: magic,
            });
        }
        let h = OptionReplyHeader {
            option: be32(b, 8),
            reply: be32(b, 12),
            length: be32(b, 16),
        };
        if h.length > MAX_OPTION_DATA {
            return Err(CodecError::TooLarge {
                what: "option reply",
                len: u64::from(h.length),
                max: u64::from(MAX_OPTION_DATA),
            });
        }
        Ok(h)
    }
}

/// Stream-decodes one option reply: `Ok(None)` until all of it is there; then the option
/// it answers, the reply, and the bytes used.
pub fn decode_option_reply(buf: &[u8]) -> Result<Option<(u32, OptionReply, usize)>, CodecError> {
    let Some(head) = buf.first_chunk::<{ OptionReplyHeader::LEN }>() else {
        return Ok(None);
    };
    let h = OptionReplyHeader::decode(head)?;
    let end = OptionReplyHeader::LEN + h.length as usize;
    let Some(data) = buf.get(OptionReplyHeader::LEN..end) else {
        return Ok(None);
    };
    Ok(Some((h.option, OptionReply::parse(h.reply, data)?, end)))
}

/// The server's answer to `NBD_OPT_EXPORT_NAME`: size, transmission flags, and 124 zero
/// bytes unless both sides agreed to leave them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportNameReply {
    /// Size in bytes.
    pub size: u64,
    /// Transmission flags.
    pub flags: u16,
}

impl ExportNameReply {
    /// The encoded length without the zeroes.
    pub const SHORT_LEN: usize = 10;
    /// The encoded length with the zeroes.
    pub const LONG_LEN: usize = 134;

    /// The bytes of the reply.
    pub fn encode(&self, no_zeroes: bool) -> Vec<u8> {
        let mut v = vec![
            0u8;
            if no_zeroes {
                Self::SHORT_LEN
            } else {
                Self::LONG_LEN
            }
        ];
        v[0..8].copy_from_slice(&self.size.to_be_bytes());
        v[8..10].copy_from_slice(&self.flags.to_be_bytes());
        v
    }

    /// Stream-decodes the reply (the zeroes are skipped, whatever they hold).
    pub fn decode(buf: &[u8], no_zeroes: bool) -> Option<(ExportNameReply, usize)> {
        let len = if no_zeroes {
            Self::SHORT_LEN
        } else {
            Self::LONG_LEN
        };
        if buf.len() < len {
            return None;
        }
        Some((
            ExportNameReply {
                size: be64(buf, 0),
                flags: be16(buf, 8),
            },
            len,
        ))
    }
}

// ----- transmission ----------------------------------------------------------------------

/// A request type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `NBD_CMD_READ` (0).
    Read,
    /// `NBD_CMD_WRITE` (1): the payload follows the header.
    Write,
    /// `NBD_CMD_DISC` (2): no reply.
    Disc,
    /// `NBD_CMD_FLUSH` (3).
    Flush,
    /// `NBD_CMD_TRIM` (4).
    Trim,
    /// `NBD_CMD_CACHE` (5).
    Cache,
    /// `NBD_CMD_WRITE_ZEROES` (6).
    WriteZeroes,
    /// `NBD_CMD_BLOCK_STATUS` (7).
    BlockStatus,
    /// Any other type (never 0 to 7).
    Other(u16),
}

impl Command {
    /// The command of type `t`.
    pub fn from_u16(t: u16) -> Command {
        match t {
            0 => Command::Read,
            1 => Command::Write,
            2 => Command::Disc,
            3 => Command::Flush,
            4 => Command::Trim,
            5 => Command::Cache,
            6 => Command::WriteZeroes,
            7 => Command::BlockStatus,
            t => Command::Other(t),
        }
    }

    /// Its type code.
    pub fn to_u16(self) -> u16 {
        match self {
            Command::Read => 0,
            Command::Write => 1,
            Command::Disc => 2,
            Command::Flush => 3,
            Command::Trim => 4,
            Command::Cache => 5,
            Command::WriteZeroes => 6,
            Command::BlockStatus => 7,
            Command::Other(t) => t,
        }
    }
}

/// A request header: magic, command flags, type, handle, offset, length (28 bytes). A
/// WRITE's `length` bytes of payload follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Command flags (`CMD_FLAG_*`).
    pub flags: u16,
    /// The request type.
    pub command: Command,
    /// The client's handle, echoed in the reply.
    pub handle: u64,
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub length: u32,
}

impl Request {
    /// The encoded length of the header.
    pub const LEN: usize = 28;

    /// The bytes of the header.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.command.to_u16().to_be_bytes());
        b[8..16].copy_from_slice(&self.handle.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    /// Decodes a header (the payload length is the caller's to check: [`Self::payload`]).
    pub fn decode(b: &[u8; Self::LEN]) -> Result<Request, CodecError> {
        let magic = be32(b, 0);
        if magic != REQUEST_MAGIC {
            return Err(CodecError::BadMagic {
                what: "request",
                found: u64::from(magic),
            });
        }
        Ok(Request {
            flags: be16(b, 4),
            command: Command::from_u16(be16(b, 6)),
            handle: be64(b, 8),
            offset: be64(b, 16),
            length: be32(b, 24),
        })
    }

    /// The length of the payload that follows this header on the wire: `length` for a
    /// WRITE (an error above [`MAX_PAYLOAD`]), else 0.
    pub fn payload(&self) -> Result<usize, CodecError> {
        match self.command {
            Command::Write if self.length > MAX_PAYLOAD => Err(CodecError::TooLarge {
                what: "write payload",
                len: u64::from(self.length),
                max: u64::from(MAX_PAYLOAD),
            }),
            Command::Write => Ok(self.length as usize),
            _ => Ok(0),
        }
    }
}

/// A request as [`decode_request`] finds it: the header, its payload (a WRITE's data,
/// else empty), and the bytes used.
pub type RequestFrame<'a> = (Request, &'a [u8], usize);

/// Stream-decodes one request and its payload: `Ok(None)` until all of it is there.
pub fn decode_request(buf: &[u8]) -> Result<Option<RequestFrame<'_>>, CodecError> {
    let Some(head) = buf.first_chunk::<{ Request::LEN }>() else {
        return Ok(None);
    };
    let r = Request::decode(head)?;
    let end = Request::LEN + r.payload()?;
    let Some(payload) = buf.get(Request::LEN..end) else {
        return Ok(None);
    };
    Ok(Some((r, payload, end)))
}

/// A simple reply: magic, error, handle (16 bytes); a successful READ's data follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimpleReply {
    /// The NBD error value (0: success).
    pub error: u32,
    /// The request's handle.
    pub handle: u64,
}

impl SimpleReply {
    /// The encoded length.
    pub const LEN: usize = 16;

    /// The bytes of the reply header.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&self.error.to_be_bytes());
        b[8..16].copy_from_slice(&self.handle.to_be_bytes());
        b
    }

    /// Decodes a reply header; a structured reply chunk is an error (never negotiated).
    pub fn decode(b: &[u8; Self::LEN]) -> Result<SimpleReply, CodecError> {
        match be32(b, 0) {
            SIMPLE_REPLY_MAGIC => Ok(SimpleReply {
                error: be32(b, 4),
                handle: be64(b, 8),
            }),
            STRUCTURED_REPLY_MAGIC => Err(CodecError::StructuredReply),
            other => Err(CodecError::BadMagic {
                what: "reply",
                found: u64::from(other),
            }),
        }
    }
}

// ----- fuzz bodies -----------------------------------------------------------------------

/// Fuzz body for the server's request decoder: decodes requests from `data` one after
/// another until the bytes run out or are invalid, and checks that every request decoded
/// encodes back to exactly the bytes it came from. Panics only on a codec bug.
pub fn fuzz_request(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((req, payload, used))) = decode_request(rest) {
        assert!(used <= rest.len() && used == Request::LEN + payload.len());
        assert!(payload.len() <= MAX_PAYLOAD as usize);
        let mut again = req.encode().to_vec();
        again.extend_from_slice(payload);
        assert_eq!(again, &rest[..used], "request round trip");
        assert_eq!(Request::decode(&req.encode()), Ok(req));
        rest = &rest[used..];
    }
}

/// Fuzz body for the server's option decoders: decodes options one after another and
/// checks that the raw form encodes back exactly and that whatever parses re-parses to the
/// same value from its own encoding.
pub fn fuzz_option(data: &[u8]) {
    if let Some(b) = data.first_chunk::<4>() {
        let _ = decode_client_flags(b);
    }
    let mut rest = data;
    while let Ok(Some((raw, used))) = decode_option(rest) {
        assert!(used <= rest.len());
        assert_eq!(raw.encode(), &rest[..used], "option round trip");
        if let Ok(opt) = ClientOption::parse(raw.option, &raw.data) {
            let bytes = opt.encode();
            let (again, n) = decode_option(&bytes)
                .expect("own encoding decodes")
                .expect("own encoding is complete");
            assert_eq!(n, bytes.len());
            assert_eq!(
                ClientOption::parse(again.option, &again.data).as_ref(),
                Ok(&opt),
                "option re-parse"
            );
        }
        rest = &rest[used..];
    }
}

/// Fuzz body for the client's decoders: greeting, option replies, the `EXPORT_NAME`
/// answer and simple replies, each at every start of `data`'s first bytes; every value
/// decoded must re-encode to something that decodes to the same value.
pub fn fuzz_option_reply(data: &[u8]) {
    if let Some(b) = data.first_chunk::<{ Greeting::LEN }>() {
        if let Ok(g) = Greeting::decode(b) {
            assert_eq!(&g.encode(), b, "greeting round trip");
        }
    }
    for no_zeroes in [false, true] {
        if let Some((r, n)) = ExportNameReply::decode(data, no_zeroes) {
            let bytes = r.encode(no_zeroes);
            assert_eq!(bytes.len(), n);
            assert_eq!(ExportNameReply::decode(&bytes, no_zeroes), Some((r, n)));
        }
    }
    if let Some(b) = data.first_chunk::<{ SimpleReply::LEN }>() {
        if let Ok(r) = SimpleReply::decode(b) {
            assert_eq!(&r.encode(), b, "simple reply round trip");
        }
    }
    let mut rest = data;
    while let Ok(Some((option, reply, used))) = decode_option_reply(rest) {
        assert!(used <= rest.len());
        let bytes = reply.encode(option);
        let (o2, r2, n2) = decode_option_reply(&bytes)
            .expect("own encoding decodes")
            .expect("own encoding is complete");
        assert_eq!(
            (o2, &r2, n2),
            (option, &reply, bytes.len()),
            "reply round trip"
        );
        rest = &rest[used..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Concatenates annotated fields into one fixture.
    fn bytes(fields: &[&[u8]]) -> Vec<u8> {
        fields.concat()
    }

    #[test]
    fn greeting_fixture() {
        let wire = bytes(&[
            b"NBDMAGIC",   // magic: 0x4e42444d41474943
            b"IHAVEOPT",   // newstyle magic: 0x49484156454f5054
            &[0x00, 0x03], // handshake flags: FIXED_NEWSTYLE | NO_ZEROES
        ]);
        let g = Greeting {
            flags: FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES,
        };
        assert_eq!(g.encode().as_slice(), wire);
        assert_eq!(Greeting::decode(wire.first_chunk().unwrap()), Ok(g));

        let mut old = wire.clone();
        old[8..16].copy_from_slice(&OLDSTYLE_MAGIC.to_be_bytes());
        assert_eq!(
            Greeting::decode(old.first_chunk().unwrap()),
            Err(CodecError::OldStyle)
        );
        let mut bad = wire;
        bad[0] = b'X';
        assert!(matches!(
            Greeting::decode(bad.first_chunk().unwrap()),
            Err(CodecError::BadMagic {
                what: "greeting",
                ..
            })
        ));
        assert_eq!(encode_client_flags(3), [0, 0, 0, 3]);
        assert_eq!(decode_client_flags(&[0, 0, 0, 1]), FLAG_C_FIXED_NEWSTYLE);
    }

    #[test]
    fn go_option_fixture() {
        let wire = bytes(&[
            b"IHAVEOPT",    // option magic
            &[0, 0, 0, 7],  // option: NBD_OPT_GO
            &[0, 0, 0, 12], // data length: 4 + 4 + 2 + 2
            &[0, 0, 0, 4],  // name length
            b"FRED",        // name
            &[0, 1],        // number of information requests
            &[0, 3],        // NBD_INFO_BLOCK_SIZE
        ]);
        let opt = ClientOption::Go(InfoRequest {
            name: "FRED".into(),
            requests: vec![INFO_BLOCK_SIZE],
        });
        assert_eq!(opt.encode(), wire);
        let (raw, used) = decode_option(&wire).unwrap().unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(ClientOption::parse(raw.option, &raw.data), Ok(opt));
        // Every truncation is incomplete, never a value.
        for n in 0..wire.len() {
            assert_eq!(decode_option(&wire[..n]), Ok(None), "prefix {n}");
        }
        // And as a payload of known length every truncation is invalid.
        for n in 0..raw.data.len() {
            assert!(
                ClientOption::parse(OPT_GO, &raw.data[..n]).is_err(),
                "data {n}"
            );
        }
    }

    #[test]
    fn option_data_is_validated() {
        let go = |d: &[u8]| ClientOption::parse(OPT_GO, d);
        assert!(
            go(&[0, 0, 0, 9, b'a', 0, 0]).is_err(),
            "name longer than data"
        );
        assert!(
            go(&[0, 0, 0, 0, 0, 2, 0, 3]).is_err(),
            "count says 2, one given"
        );
        assert!(go(&[0, 0, 0, 1, 0xff, 0, 0]).is_err(), "name not UTF-8");
        assert!(go(&[0, 0, 0, 1, 0, 0, 0]).is_err(), "name holds NUL");
        assert_eq!(
            go(&[0, 0, 0, 0, 0, 0]),
            Ok(ClientOption::Go(InfoRequest {
                name: String::new(),
                requests: vec![]
            }))
        );
        assert!(ClientOption::parse(OPT_LIST, b"x").is_err());
        assert_eq!(
            ClientOption::parse(OPT_ABORT, b"x"),
            Ok(ClientOption::Abort)
        );
        assert_eq!(
            ClientOption::parse(OPT_EXPORT_NAME, b"disk"),
            Ok(ClientOption::ExportName("disk".into()))
        );
        assert!(ClientOption::parse(OPT_EXPORT_NAME, &[0xc3]).is_err());
        assert_eq!(
            ClientOption::parse(42, b"zz"),
            Ok(ClientOption::Other(RawOption {
                option: 42,
                data: b"zz".to_vec()
            }))
        );
        // Option data above the limit is refused before it is read.
        let mut big = OptionHeader {
            option: OPT_GO,
            length: MAX_OPTION_DATA + 1,
        }
        .encode()
        .to_vec();
        big.extend_from_slice(&[0; 8]);
        assert!(matches!(
            decode_option(&big),
            Err(CodecError::TooLarge { .. })
        ));
        let mut bad = big;
        bad[0] = 0;
        assert!(matches!(
            decode_option(&bad),
            Err(CodecError::BadMagic { .. })
        ));
    }

    #[test]
    fn info_replies_fixture() {
        let wire = bytes(&[
            &OPTION_REPLY_MAGIC.to_be_bytes(), // reply magic: 0x3e889045565a9
            &[0, 0, 0, 7],                     // option: NBD_OPT_GO
            &[0, 0, 0, 3],                     // reply: NBD_REP_INFO
            &[0, 0, 0, 12],                    // length
            &[0, 0],                           // NBD_INFO_EXPORT
            &[0, 0, 0, 0, 0, 0x10, 0, 0],      // size: 1 MiB
            // flags 0x016d: HAS_FLAGS, SEND_FLUSH, SEND_FUA, SEND_TRIM, SEND_WRITE_ZEROES,
            // CAN_MULTI_CONN
            &[0x01, 0x6d],                     // flags
            &OPTION_REPLY_MAGIC.to_be_bytes(), // reply magic
            &[0, 0, 0, 7],                     // option: NBD_OPT_GO
            &[0, 0, 0, 3],                     // reply: NBD_REP_INFO
            &[0, 0, 0, 14],                    // length
            &[0, 3],                           // NBD_INFO_BLOCK_SIZE
            &[0, 0, 0x02, 0],                  // minimum: 512
            &[0, 0, 0x10, 0],                  // preferred: 4096
            &[0x02, 0, 0, 0],                  // maximum: 32 MiB
            &OPTION_REPLY_MAGIC.to_be_bytes(), // reply magic
            &[0, 0, 0, 7],                     // option: NBD_OPT_GO
            &[0, 0, 0, 1],                     // reply: NBD_REP_ACK
            &[0, 0, 0, 0],                     // length
        ]);
        let flags = FLAG_HAS_FLAGS
            | FLAG_SEND_FLUSH
            | FLAG_SEND_FUA
            | FLAG_SEND_TRIM
            | FLAG_SEND_WRITE_ZEROES
            | FLAG_CAN_MULTI_CONN;
        let replies = [
            OptionReply::Info(Info::Export {
                size: 1 << 20,
                flags,
            }),
            OptionReply::Info(Info::BlockSize {
                min: 512,
                preferred: 4096,
                max: MAX_PAYLOAD,
            }),
            OptionReply::Ack,
        ];
        let encoded: Vec<u8> = replies.iter().flat_map(|r| r.encode(OPT_GO)).collect();
        assert_eq!(encoded, wire);
        let mut rest = wire.as_slice();
        for want in &replies {
            let (opt, got, used) = decode_option_reply(rest).unwrap().unwrap();
            assert_eq!((opt, &got), (OPT_GO, want));
            // Every truncation of this reply is incomplete.
            for n in 0..used {
                assert_eq!(decode_option_reply(&rest[..n]), Ok(None));
            }
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
    }

    #[test]
    fn server_and_error_replies_fixture() {
        let wire = bytes(&[
            &OPTION_REPLY_MAGIC.to_be_bytes(), // reply magic
            &[0, 0, 0, 3],                     // option: NBD_OPT_LIST
            &[0, 0, 0, 2],                     // reply: NBD_REP_SERVER
            &[0, 0, 0, 11],                    // length
            &[0, 0, 0, 4],                     // name length
            b"FRED",                           // name
            b"mp0",                            // details
            &OPTION_REPLY_MAGIC.to_be_bytes(), // reply magic
            &[0, 0, 0, 7],                     // option: NBD_OPT_GO
            &[0x80, 0, 0, 6],                  // reply: NBD_REP_ERR_UNKNOWN
            &[0, 0, 0, 2],                     // length
            b"no",                             // message
        ]);
        let (o, r, n) = decode_option_reply(&wire).unwrap().unwrap();
        assert_eq!(o, OPT_LIST);
        assert_eq!(
            r,
            OptionReply::Server {
                name: "FRED".into(),
                details: "mp0".into()
            }
        );
        assert_eq!(r.encode(OPT_LIST), wire[..n]);
        let (o, r, m) = decode_option_reply(&wire[n..]).unwrap().unwrap();
        assert_eq!(o, OPT_GO);
        assert_eq!(
            r,
            OptionReply::Error {
                code: REP_ERR_UNKNOWN,
                message: "no".into()
            }
        );
        assert_eq!(n + m, wire.len());
    }

    #[test]
    fn malformed_replies_are_errors() {
        let reply = |typ: u32, data: &[u8]| {
            let mut v = OptionReplyHeader {
                option: OPT_GO,
                reply: typ,
                length: data.len() as u32,
            }
            .encode()
            .to_vec();
            v.extend_from_slice(data);
            decode_option_reply(&v)
        };
        assert!(matches!(
            reply(REP_ACK, b"x"),
            Err(CodecError::BadLength { .. })
        ));
        assert!(matches!(
            reply(REP_INFO, &[0, 0, 1, 2, 3]),
            Err(CodecError::BadLength { .. })
        ));
        assert!(matches!(
            reply(REP_INFO, &[0, 3, 0, 0, 0, 1]),
            Err(CodecError::BadLength { .. })
        ));
        assert!(matches!(
            reply(REP_INFO, &[0]),
            Err(CodecError::Truncated { .. })
        ));
        assert!(matches!(
            reply(REP_SERVER, &[0, 0, 0, 9, b'a']),
            Err(CodecError::Truncated { .. })
        ));
        assert_eq!(
            reply(REP_INFO, &[0, 9, 1]).unwrap().unwrap().1,
            OptionReply::Info(Info::Other {
                info: 9,
                data: vec![1]
            })
        );
        let mut huge = OptionReplyHeader {
            option: OPT_GO,
            reply: REP_INFO,
            length: u32::MAX,
        }
        .encode()
        .to_vec();
        huge.push(0);
        assert!(matches!(
            decode_option_reply(&huge),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn export_name_reply_fixture() {
        let short = bytes(&[
            &[0, 0, 0, 0, 0, 0x10, 0, 0], // size: 1 MiB
            &[0, 0x03],                   // flags: HAS_FLAGS | READ_ONLY
        ]);
        let r = ExportNameReply {
            size: 1 << 20,
            flags: FLAG_HAS_FLAGS | FLAG_READ_ONLY,
        };
        assert_eq!(r.encode(true), short);
        let long = r.encode(false);
        assert_eq!(long.len(), 134);
        assert!(long[10..].iter().all(|&b| b == 0), "124 zero bytes");
        assert_eq!(ExportNameReply::decode(&long, false), Some((r, 134)));
        assert_eq!(ExportNameReply::decode(&long[..133], false), None);
        assert_eq!(ExportNameReply::decode(&short[..9], true), None);
    }

    #[test]
    fn request_fixture() {
        let wire = bytes(&[
            &[0x25, 0x60, 0x95, 0x13],    // magic: NBD_REQUEST_MAGIC
            &[0, 1],                      // flags: FUA
            &[0, 1],                      // type: NBD_CMD_WRITE
            &[1, 2, 3, 4, 5, 6, 7, 8],    // handle
            &[0, 0, 0, 0, 0, 0, 0x10, 0], // offset: 4096
            &[0, 0, 0, 4],                // length: 4
            b"data",                      // payload
        ]);
        let req = Request {
            flags: CMD_FLAG_FUA,
            command: Command::Write,
            handle: 0x0102_0304_0506_0708,
            offset: 4096,
            length: 4,
        };
        assert_eq!(req.encode(), wire[..28]);
        assert_eq!(
            decode_request(&wire),
            Ok(Some((req, b"data".as_slice(), wire.len())))
        );
        for n in 0..wire.len() {
            assert_eq!(decode_request(&wire[..n]), Ok(None), "prefix {n}");
        }
        // A read carries no payload, whatever its length.
        let read = Request {
            command: Command::Read,
            length: u32::MAX,
            ..req
        };
        assert_eq!(
            decode_request(&read.encode()),
            Ok(Some((read, [].as_slice(), 28)))
        );
        // A write payload over the limit is an error before anything is read.
        let big = Request {
            length: MAX_PAYLOAD + 1,
            ..req
        };
        assert!(matches!(
            decode_request(&big.encode()),
            Err(CodecError::TooLarge { .. })
        ));
        let mut bad = wire;
        bad[3] = 0;
        assert!(matches!(
            decode_request(&bad),
            Err(CodecError::BadMagic { .. })
        ));
        for t in 0..=8u16 {
            assert_eq!(Command::from_u16(t).to_u16(), t);
        }
        assert_eq!(Command::from_u16(99), Command::Other(99));
    }

    #[test]
    fn simple_reply_fixture() {
        let wire = bytes(&[
            &[0x67, 0x44, 0x66, 0x98], // magic: NBD_SIMPLE_REPLY_MAGIC
            &[0, 0, 0, 22],            // error: NBD_EINVAL
            &[0, 0, 0, 0, 0, 0, 0, 9], // handle: 9
        ]);
        let r = SimpleReply {
            error: NBD_EINVAL,
            handle: 9,
        };
        assert_eq!(r.encode().as_slice(), wire);
        assert_eq!(SimpleReply::decode(wire.first_chunk().unwrap()), Ok(r));
        let mut structured = wire.clone();
        structured[0..4].copy_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
        assert_eq!(
            SimpleReply::decode(structured.first_chunk().unwrap()),
            Err(CodecError::StructuredReply)
        );
        let mut bad = wire;
        bad[0] = 0;
        assert!(matches!(
            SimpleReply::decode(bad.first_chunk().unwrap()),
            Err(CodecError::BadMagic { .. })
        ));
    }

    #[test]
    fn errors_map_to_the_eight_wire_values() {
        assert_eq!(errno_to_wire(0), 0);
        assert_eq!(errno_to_wire(libc::EIO), NBD_EIO);
        assert_eq!(errno_to_wire(libc::ENXIO), NBD_EIO, "not an NBD value");
        assert_eq!(errno_to_wire(libc::ETIMEDOUT), NBD_EIO);
        assert_eq!(errno_to_wire(libc::EDQUOT), NBD_ENOSPC);
        assert_eq!(errno_to_wire(libc::EROFS), NBD_EPERM);
        assert_eq!(errno_to_wire(libc::EOPNOTSUPP), NBD_ENOTSUP);
        for wire in [
            NBD_EPERM,
            NBD_EIO,
            NBD_ENOMEM,
            NBD_EINVAL,
            NBD_ENOSPC,
            NBD_EOVERFLOW,
            NBD_ENOTSUP,
            NBD_ESHUTDOWN,
        ] {
            assert_eq!(errno_to_wire(wire_to_errno(wire)), wire);
        }
        assert_eq!(wire_to_errno(12345), libc::EIO);
    }

    /// A small deterministic fuzz run over random bytes and mutated fixtures, so that the
    /// fuzz bodies are exercised by `cargo test` too.
    #[test]
    fn fuzz_bodies_survive_random_input() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let go = ClientOption::Go(InfoRequest {
            name: "FRED".into(),
            requests: vec![INFO_BLOCK_SIZE, INFO_NAME],
        })
        .encode();
        let mut replies = OptionReply::Info(Info::Export {
            size: 4096,
            flags: 1,
        })
        .encode(OPT_GO);
        replies.extend(OptionReply::Ack.encode(OPT_GO));
        let mut write = Request {
            flags: 0,
            command: Command::Write,
            handle: 1,
            offset: 0,
            length: 8,
        }
        .encode()
        .to_vec();
        write.extend_from_slice(&[0xab; 8]);
        let seeds = [go, replies, write, Greeting { flags: 3 }.encode().to_vec()];
        for i in 0..20_000 {
            let mut data = if i % 2 == 0 {
                let len = (next() % 200) as usize;
                (0..len).map(|_| next() as u8).collect::<Vec<u8>>()
            } else {
                seeds[i % seeds.len()].clone()
            };
            if !data.is_empty() {
                for _ in 0..(next() % 4) {
                    let at = (next() as usize) % data.len();
                    data[at] = next() as u8;
                }
                let cut = (next() as usize) % (data.len() + 1);
                data.truncate(cut.max(data.len() / 2));
            }
            fuzz_request(&data);
            fuzz_option(&data);
            fuzz_option_reply(&data);
        }
        // The unmutated seeds round-trip through the bodies too.
        for s in &seeds {
            fuzz_request(s);
            fuzz_option(s);
            fuzz_option_reply(s);
        }
    }
}

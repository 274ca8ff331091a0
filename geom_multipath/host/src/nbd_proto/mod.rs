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

#[cfg(any(test, feature = "fuzz"))]
mod fuzz;
mod handshake;
mod stream;
mod transmission;

#[cfg(any(test, feature = "fuzz"))]
pub use fuzz::*;
pub use handshake::*;
pub(crate) use stream::Stream;
pub use transmission::*;

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

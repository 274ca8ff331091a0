//! The transmission phase: requests (command, flags, handle, offset, length) and simple
//! replies, with their encoders and decoders.

use super::*;

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

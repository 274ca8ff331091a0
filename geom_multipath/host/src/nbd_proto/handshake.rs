//! The handshake: the server's greeting, the client's flags, options and the server's
//! option replies (with the info items of `NBD_OPT_INFO`/`NBD_OPT_GO`), and the old
//! `NBD_OPT_EXPORT_NAME` answer, each with its encoder and decoder.

use super::*;

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

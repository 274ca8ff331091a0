//! How a control request and its reply cross a byte stream (the host's control socket):
//! a small length-prefixed encoding of gctl's named parameters, with the same limits and
//! error texts as the kernel's `gctl_copyin`.
//!
//! ```text
//! request := "GCTL" u16:version(=1) u16:0 u32:narg  param*
//! param   := u8:flags u8:0 u16:nlen u32:len  name[nlen] value[len]   (name includes its NUL)
//! reply   := "GCTR" u16:version(=1) u16:0 u32:elen u32:olen  error[elen] output[olen]
//! ```
//! All integers are little-endian. A decoder never panics and never allocates more than the
//! input's own length: every length is checked against the bytes actually present before
//! anything is copied.

use alloc::string::String;
use alloc::vec::Vec;
use byteorder::{ByteOrder, LittleEndian};
use core::fmt;

use crate::ctl::{Param, Request, PARAM_ASCII};

/// Magic of an encoded request.
pub const REQUEST_MAGIC: &[u8; 4] = b"GCTL";
/// Magic of an encoded reply.
pub const REPLY_MAGIC: &[u8; 4] = b"GCTR";
/// Encoding version.
pub const WIRE_VERSION: u16 = 1;
/// At most this many parameters (`GEOM_CTL_ARG_MAX`).
pub const ARG_MAX: usize = 2048;
/// Longest parameter name, NUL included (`SPECNAMELEN`).
pub const NAME_MAX: usize = 255;
/// Largest single value accepted.
pub const VALUE_MAX: usize = 1 << 20;
/// Largest encoded message accepted.
pub const MESSAGE_MAX: usize = 4 << 20;

const HEADER_LEN: usize = 12;
const PARAM_HEADER_LEN: usize = 8;

/// Why bytes are not a request or reply. `Display` gives the kernel's `gctl_copyin` texts
/// where it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The input ends before a length it announced.
    Truncated,
    /// More than [`MESSAGE_MAX`] bytes.
    TooLarge,
    /// Wrong magic.
    BadMagic,
    /// Another encoding version.
    Version(u16),
    /// More than [`ARG_MAX`] parameters.
    TooManyArguments,
    /// Parameter `index` has a name length outside 1..=255.
    NameLength(usize, usize),
    /// A name without its NUL, or with a NUL inside, or not UTF-8.
    UnterminatedName,
    /// A value of length 0 or beyond [`VALUE_MAX`].
    ValueLength,
    /// An ASCII value without its NUL.
    UnterminatedValue,
    /// Bytes after the last parameter.
    TrailingBytes,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("bad control request"),
            WireError::TooLarge => f.write_str("control request too large"),
            WireError::BadMagic => f.write_str("bad control request"),
            WireError::Version(_) => f.write_str("kernel and libgeom version mismatch."),
            WireError::TooManyArguments => f.write_str("too many arguments"),
            WireError::NameLength(i, n) => write!(f, "wrong param name length {i}: {n}"),
            WireError::UnterminatedName => f.write_str("unterminated param name"),
            WireError::ValueLength => f.write_str("negative param length"),
            WireError::UnterminatedValue => f.write_str("unterminated param value"),
            WireError::TrailingBytes => f.write_str("bad control request"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for WireError {}

#[cfg(feature = "std")]
extern crate std;

/// Encodes a request's parameters.
pub fn encode_request(req: &Request) -> Vec<u8> {
    let params = req.params();
    let mut out = Vec::with_capacity(
        HEADER_LEN
            + params
                .iter()
                .map(|p| PARAM_HEADER_LEN + p.name.len() + 1 + p.value.len())
                .sum::<usize>(),
    );
    out.extend_from_slice(REQUEST_MAGIC);
    push_u16(&mut out, WIRE_VERSION);
    push_u16(&mut out, 0);
    push_u32(&mut out, params.len() as u32);
    for p in params {
        out.push(p.flags);
        out.push(0);
        push_u16(&mut out, (p.name.len() + 1) as u16);
        push_u32(&mut out, p.value.len() as u32);
        out.extend_from_slice(p.name.as_bytes());
        out.push(0);
        out.extend_from_slice(&p.value);
    }
    out
}

/// Decodes a request, checking what `gctl_copyin` checks.
pub fn decode_request(bytes: &[u8]) -> Result<Request, WireError> {
    if bytes.len() > MESSAGE_MAX {
        return Err(WireError::TooLarge);
    }
    let mut r = Reader { bytes, pos: 0 };
    if r.take(4)? != REQUEST_MAGIC {
        return Err(WireError::BadMagic);
    }
    let version = r.u16()?;
    if version != WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    r.u16()?;
    let narg = r.u32()? as usize;
    if narg > ARG_MAX {
        return Err(WireError::TooManyArguments);
    }
    let mut params = Vec::with_capacity(narg.min(bytes.len() / PARAM_HEADER_LEN));
    for i in 0..narg {
        let flags = r.u8()?;
        r.u8()?;
        let nlen = r.u16()? as usize;
        let len = r.u32()? as usize;
        if !(1..=NAME_MAX).contains(&nlen) {
            return Err(WireError::NameLength(i, nlen));
        }
        if len == 0 || len > VALUE_MAX {
            return Err(WireError::ValueLength);
        }
        let name = r.take(nlen)?;
        let (&nul, name) = name.split_last().ok_or(WireError::UnterminatedName)?;
        if nul != 0 || name.contains(&0) {
            return Err(WireError::UnterminatedName);
        }
        let name = core::str::from_utf8(name).map_err(|_| WireError::UnterminatedName)?;
        let value = r.take(len)?;
        if flags & PARAM_ASCII != 0 && value.last() != Some(&0) {
            return Err(WireError::UnterminatedValue);
        }
        params.push(Param {
            name: String::from(name),
            flags,
            value: value.to_vec(),
        });
    }
    if r.pos != bytes.len() {
        return Err(WireError::TrailingBytes);
    }
    Ok(Request::from_params(params))
}

/// The answer to a request: the error text (empty: none) and the `output` text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// The first error recorded, as geom(8) prints it; empty on success.
    pub error: String,
    /// What the verb wrote into `output` (only when there is no error).
    pub output: String,
}

impl Reply {
    /// The reply for a request the class has run.
    pub fn from_request(req: &Request) -> Reply {
        match req.first_error() {
            Some(e) => Reply {
                error: alloc::format!("{e}"),
                output: String::new(),
            },
            None => Reply {
                error: String::new(),
                output: String::from(req.output().unwrap_or("")),
            },
        }
    }
}

/// Encodes a reply.
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 4 + reply.error.len() + reply.output.len());
    out.extend_from_slice(REPLY_MAGIC);
    push_u16(&mut out, WIRE_VERSION);
    push_u16(&mut out, 0);
    push_u32(&mut out, reply.error.len() as u32);
    push_u32(&mut out, reply.output.len() as u32);
    out.extend_from_slice(reply.error.as_bytes());
    out.extend_from_slice(reply.output.as_bytes());
    out
}

/// Decodes a reply.
pub fn decode_reply(bytes: &[u8]) -> Result<Reply, WireError> {
    if bytes.len() > MESSAGE_MAX {
        return Err(WireError::TooLarge);
    }
    let mut r = Reader { bytes, pos: 0 };
    if r.take(4)? != REPLY_MAGIC {
        return Err(WireError::BadMagic);
    }
    let version = r.u16()?;
    if version != WIRE_VERSION {
        return Err(WireError::Version(version));
    }
    r.u16()?;
    let elen = r.u32()? as usize;
    let olen = r.u32()? as usize;
    let error = String::from_utf8_lossy(r.take(elen)?).into_owned();
    let output = String::from_utf8_lossy(r.take(olen)?).into_owned();
    if r.pos != bytes.len() {
        return Err(WireError::TrailingBytes);
    }
    Ok(Reply { error, output })
}

fn push_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn push_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let slice = self.bytes.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(LittleEndian::read_u16(self.take(2)?))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(LittleEndian::read_u32(self.take(4)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::{PARAM_RD, PARAM_WR};
    use alloc::string::ToString;
    use alloc::vec;

    fn sample() -> Request {
        let mut req = Request::for_verb("MULTIPATH", "getactive", 1);
        req.add_args(&["FRED"]);
        req.add_output("output", 16);
        req
    }

    #[test]
    fn request_round_trips() {
        let req = sample();
        let bytes = encode_request(&req);
        assert_eq!(decode_request(&bytes).unwrap().params(), req.params());
    }

    #[test]
    fn request_bytes_are_as_documented() {
        let mut req = Request::new();
        req.add_ascii("verb", "add");
        let bytes = encode_request(&req);
        let expected: Vec<u8> = [
            &b"GCTL"[..],
            &[1, 0],                      // version 1
            &[0, 0],                      // reserved
            &[1, 0, 0, 0],                // one parameter
            &[PARAM_RD | PARAM_ASCII, 0], // flags, reserved
            &[5, 0],                      // name length with NUL: "verb\0"
            &[4, 0, 0, 0],                // value length: "add\0"
            b"verb\0",
            b"add\0",
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn reply_round_trips() {
        let reply = Reply {
            error: String::from("Device FRED is invalid"),
            output: String::new(),
        };
        assert_eq!(decode_reply(&encode_reply(&reply)).unwrap(), reply);
        let ok = Reply {
            error: String::new(),
            output: String::from("md1 md0\n"),
        };
        assert_eq!(decode_reply(&encode_reply(&ok)).unwrap(), ok);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = encode_request(&sample());
        for n in 0..bytes.len() {
            assert!(decode_request(&bytes[..n]).is_err(), "prefix {n}");
        }
        let reply = encode_reply(&Reply {
            error: String::from("x"),
            output: String::from("y"),
        });
        for n in 0..reply.len() {
            assert!(decode_reply(&reply[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn copyin_checks_have_the_kernels_texts() {
        let mut too_many = encode_request(&Request::new());
        too_many[8..12].copy_from_slice(&2049u32.to_le_bytes());
        assert_eq!(
            decode_request(&too_many).unwrap_err().to_string(),
            "too many arguments"
        );

        let mut bad_name = encode_request(&sample());
        bad_name[14..16].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(
            decode_request(&bad_name).unwrap_err().to_string(),
            "wrong param name length 0: 0"
        );

        let mut req = Request::new();
        req.add_output("output", 4);
        let mut zero = encode_request(&req);
        zero[16..20].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(decode_request(&zero).unwrap_err(), WireError::ValueLength);

        let unterminated = Request::from_params(vec![Param {
            name: String::from("arg0"),
            flags: PARAM_RD | PARAM_ASCII,
            value: b"FRED".to_vec(),
        }]);
        assert_eq!(
            decode_request(&encode_request(&unterminated))
                .unwrap_err()
                .to_string(),
            "unterminated param value"
        );
    }

    #[test]
    fn garbage_and_trailing_bytes_are_refused() {
        assert_eq!(decode_request(b"hello world!"), Err(WireError::BadMagic));
        let mut bytes = encode_request(&sample());
        bytes.push(0);
        assert_eq!(decode_request(&bytes), Err(WireError::TrailingBytes));
        let mut v2 = encode_request(&sample());
        v2[4] = 2;
        assert_eq!(decode_request(&v2), Err(WireError::Version(2)));
    }

    #[test]
    fn huge_announced_lengths_do_not_allocate() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(REQUEST_MAGIC);
        bytes.extend_from_slice(&[1, 0, 0, 0]);
        bytes.extend_from_slice(&2048u32.to_le_bytes());
        bytes.extend_from_slice(&[PARAM_WR, 0, 5, 0]);
        bytes.extend_from_slice(&(VALUE_MAX as u32).to_le_bytes());
        bytes.extend_from_slice(b"name\0");
        assert_eq!(decode_request(&bytes), Err(WireError::Truncated));
    }

    #[test]
    fn reply_of_a_failed_request_carries_no_output() {
        let mut req = sample();
        req.set_output("md0\n");
        req.error(crate::ctl::CtlError::MissingDevice);
        let reply = Reply::from_request(&req);
        assert_eq!(reply.error, "missing device");
        assert_eq!(reply.output, "");
    }
}

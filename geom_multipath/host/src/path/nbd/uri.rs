//! NBD URIs as the NBD project's URI document defines them (`nbd://`, `nbds://` refused,
//! `nbd+unix://`, abstract sockets): parsing and checking, no I/O.

use super::*;

/// Where an NBD server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP (`nbd://host:port`).
    Tcp {
        /// Host name or address (an IPv6 address without brackets).
        host: String,
        /// Port (10809 by default).
        port: u16,
    },
    /// A Unix socket file (`nbd+unix:///?socket=/path`).
    Unix(PathBuf),
    /// A Unix socket in the abstract namespace (`socket=%00name`), without the NUL.
    UnixAbstract(Vec<u8>),
}

/// A parsed NBD URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NbdUri {
    /// The URI as given (the provider's name).
    pub text: String,
    /// Where the server is.
    pub transport: Transport,
    /// The export name (the path without its leading `/`, percent-decoded).
    pub export: String,
}

/// Why a string is not an NBD URI this host can use.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{uri}: {why}")]
pub struct UriError {
    /// The string.
    pub uri: String,
    /// What is wrong with it.
    pub why: String,
}

/// The usage hint of every URI error.
pub(super) const URI_FORMS: &str =
    "an NBD path is nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH";

/// `true` if `s` is a URI (`scheme://…`): such a provider name is never a device, so it is
/// for [`NbdUri::parse`] to accept or to explain.
pub fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && rest.starts_with("//")
}

/// Decodes `%XX` escapes.
pub(super) fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

impl NbdUri {
    /// Parses an NBD URI (see the module doc for what is accepted).
    pub fn parse(s: &str) -> Result<NbdUri, UriError> {
        let err = |why: String| UriError {
            uri: s.to_string(),
            why,
        };
        if !is_uri(s) {
            return Err(err(format!("not a URI; {URI_FORMS}")));
        }
        let (scheme, rest) = s.split_once(':').unwrap_or_default();
        let scheme = scheme.to_ascii_lowercase();
        let unix = match scheme.as_str() {
            "nbd" => false,
            "nbd+unix" => true,
            "nbds" | "nbds+unix" => {
                return Err(err(format!("TLS ({scheme}) is not supported; {URI_FORMS}")))
            }
            _ => return Err(err(format!("unsupported scheme {scheme:?}; {URI_FORMS}"))),
        };
        let rest = &rest[2..];
        if rest.contains('#') {
            return Err(err("a fragment (#) has no meaning in an NBD URI".into()));
        }
        let (hier, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match hier.find('/') {
            Some(i) => hier.split_at(i),
            None => (hier, ""),
        };
        let export = percent_decode(path.strip_prefix('/').unwrap_or(path))
            .ok_or_else(|| err("bad %-escape in the export name".into()))?;
        let export = String::from_utf8(export)
            .ok()
            .filter(|e| nbd_proto::valid_string(e))
            .ok_or_else(|| err("the export name is not a valid NBD string".into()))?;
        let mut socket = None;
        for param in query.into_iter().flat_map(|q| q.split('&')) {
            if param.is_empty() {
                continue;
            }
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            let value =
                percent_decode(value).ok_or_else(|| err(format!("bad %-escape in {key}=")))?;
            match key {
                "socket" if unix => socket = Some(value),
                "socket" => return Err(err("socket= is for nbd+unix:// URIs".into())),
                k if k.starts_with("tls") => {
                    return Err(err(format!("{k}=: TLS is not supported")))
                }
                k if k.starts_with("x-") => {}
                k => return Err(err(format!("unknown query parameter {k:?}"))),
            }
        }
        let transport = if unix {
            if !authority.is_empty() {
                return Err(err(format!(
                    "nbd+unix:// takes no host ({authority:?}); {URI_FORMS}"
                )));
            }
            match socket {
                None => return Err(err(format!("no socket= parameter; {URI_FORMS}"))),
                Some(s) if s.is_empty() => return Err(err("socket= is empty".into())),
                Some(s) if s[0] == 0 => Transport::UnixAbstract(s[1..].to_vec()),
                Some(s) => Transport::Unix(PathBuf::from(OsStr::from_bytes(&s))),
            }
        } else {
            parse_authority(authority).map_err(err)?
        };
        Ok(NbdUri {
            text: s.to_string(),
            transport,
            export,
        })
    }
}

/// `host[:port]` of an `nbd://` URI.
pub(super) fn parse_authority(authority: &str) -> Result<Transport, String> {
    if authority.is_empty() {
        return Err(format!("no host; {URI_FORMS}"));
    }
    if authority.contains('@') {
        return Err("user information (user@) is only for TLS, which is not supported".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| "an IPv6 address without its closing ]".to_string())?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("garbage after the IPv6 address: {p:?}"))?,
            ),
        };
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let host = percent_decode(&host)
        .and_then(|h| String::from_utf8(h).ok())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("bad host {host:?}"))?;
    let port = match port {
        None | Some("") => nbd_proto::DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("bad port {p:?}"))?,
    };
    Ok(Transport::Tcp { host, port })
}

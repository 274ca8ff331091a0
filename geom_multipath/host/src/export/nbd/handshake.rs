//! One connection's handshake: the fixed-newstyle negotiation over the socket (the
//! option loop, and `info_or_go` for what `NBD_OPT_INFO`/`NBD_OPT_GO` answer); entering
//! transmission takes the provider's access through the one export guard. The loop still
//! reads, decides and writes in one function; the codec it speaks is `nbd_proto`.

use super::*;

pub(super) fn connection(shared: Arc<Shared>, stream: Stream, target: Target, id: u64) {
    let peer = stream.peer();
    if let Err(e) = serve_connection(&shared, &stream, &target) {
        tracing::debug!("NBD {peer}: {e:#}");
    }
    stream.shutdown();
    shared
        .conns
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id);
    connection_ended(&shared);
}

pub(super) fn serve_connection(
    shared: &Shared,
    stream: &Stream,
    target: &Target,
) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut plain: Option<Stream> = None;
    let mut rd = BufReader::with_capacity(128 << 10, stream.try_clone()?);
    let mut wr = stream.try_clone()?;
    let no_zeroes = greet(&mut rd, &mut wr)?;
    let tls = match (stream, &shared.tls) {
        (Stream::Tcp(_), Some(config)) => Some(config.clone()),
        _ => None,
    };
    let mut tls_state = if tls.is_some() {
        Tls::Required
    } else {
        Tls::Off
    };
    let session = loop {
        match handshake(shared, target, &mut rd, &mut wr, no_zeroes, tls_state)? {
            Haggled::Session(s) => break s,
            Haggled::Done => return Ok(()),
            Haggled::StartTls => {
                let (Stream::Tcp(tcp), Some(config)) = (stream, &tls) else {
                    bail!("STARTTLS accepted without TLS");
                };
                if !rd.buffer().is_empty() {
                    bail!("data after NBD_OPT_STARTTLS before the TLS handshake");
                }
                let relay =
                    crate::export::tls::relay(tcp.try_clone()?, config.clone(), HANDSHAKE_TIMEOUT)?;
                relay.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
                let s = Stream::Unix(relay);
                rd = BufReader::with_capacity(128 << 10, s.try_clone()?);
                wr = s.try_clone()?;
                plain = Some(s);
                tls_state = Tls::On;
            }
        }
    };
    let stream = plain.as_ref().unwrap_or(stream);
    tracing::debug!(
        "NBD: multipath/{} opened{}",
        session.export.name,
        if session.read_only() {
            " read-only"
        } else {
            ""
        }
    );
    let result = stream
        .set_read_timeout(None)
        .map_err(anyhow::Error::from)
        .and_then(|()| transmission(shared, &session, rd, wr, stream));
    drop(session); // every reply is sent: the access goes back
    result
}

/// Sends option replies.
pub(super) fn send_replies(
    wr: &mut Stream,
    option: u32,
    replies: &[OptionReply],
) -> io::Result<()> {
    let bytes: Vec<u8> = replies.iter().flat_map(|r| r.encode(option)).collect();
    wr.write_all(&bytes)
}

pub(super) fn send_error(wr: &mut Stream, option: u32, code: u32, message: &str) -> io::Result<()> {
    send_replies(
        wr,
        option,
        &[OptionReply::Error {
            code,
            message: message.to_string(),
        }],
    )
}

/// The handshake: `Ok(None)` if the client aborted, else the open session.
/// Where a connection stands with TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tls {
    /// Not offered (Unix sockets; TCP with --nbd-tcp-insecure-plaintext).
    Off,
    /// Required and not started: every option but STARTTLS is refused.
    Required,
    /// Running.
    On,
}

/// How option haggling ended.
pub(super) enum Haggled {
    /// Transmission begins on this session.
    Session(Session),
    /// The client went away politely (NBD_OPT_ABORT).
    Done,
    /// NBD_OPT_STARTTLS was acknowledged: the TLS handshake is next on the wire.
    StartTls,
}

/// Sends the greeting and reads the client flags; returns whether the client asked for
/// no zeroes.
pub(super) fn greet(rd: &mut BufReader<Stream>, wr: &mut Stream) -> anyhow::Result<bool> {
    wr.write_all(
        &Greeting {
            flags: FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES,
        }
        .encode(),
    )?;
    let mut cf = [0u8; 4];
    rd.read_exact(&mut cf).context("reading the client flags")?;
    let client_flags = nbd_proto::decode_client_flags(&cf);
    if client_flags & !nbd_proto::CLIENT_FLAGS_KNOWN != 0 {
        bail!("unknown client flags {client_flags:#x}");
    }
    Ok(client_flags & FLAG_C_NO_ZEROES != 0)
}

pub(super) fn handshake(
    shared: &Shared,
    target: &Target,
    rd: &mut BufReader<Stream>,
    wr: &mut Stream,
    no_zeroes: bool,
    tls: Tls,
) -> anyhow::Result<Haggled> {
    for _ in 0..MAX_OPTIONS {
        let mut h = [0u8; OptionHeader::LEN];
        rd.read_exact(&mut h).context("reading an option")?;
        let h = OptionHeader::decode(&h)?;
        if h.length > MAX_OPTION_DATA {
            if h.option == nbd_proto::OPT_EXPORT_NAME {
                bail!("an export name of {} bytes", h.length);
            }
            let skipped = io::copy(&mut (&mut *rd).take(u64::from(h.length)), &mut io::sink())?;
            if skipped < u64::from(h.length) {
                bail!("the client hung up in an option");
            }
            send_error(wr, h.option, REP_ERR_TOO_BIG, "option data too large")?;
            continue;
        }
        let mut data = vec![0u8; h.length as usize];
        rd.read_exact(&mut data).context("reading option data")?;
        let option = match ClientOption::parse(h.option, &data) {
            Ok(o) => o,
            Err(e) if h.option == nbd_proto::OPT_EXPORT_NAME => {
                bail!("invalid NBD_OPT_EXPORT_NAME: {e}")
            }
            Err(e) => {
                send_error(wr, h.option, REP_ERR_INVALID, &e.0)?;
                continue;
            }
        };
        let code = option.code();
        if tls == Tls::Required {
            match option {
                ClientOption::StartTls => {
                    send_replies(wr, code, &[OptionReply::Ack])?;
                    return Ok(Haggled::StartTls);
                }
                ClientOption::ExportName(_) => bail!("NBD_OPT_EXPORT_NAME before TLS"),
                ClientOption::Abort => {
                    let _ = send_replies(wr, code, &[OptionReply::Ack]);
                    return Ok(Haggled::Done);
                }
                _ => {
                    send_error(
                        wr,
                        code,
                        REP_ERR_TLS_REQD,
                        "TLS is required: NBD_OPT_STARTTLS",
                    )?;
                    continue;
                }
            }
        }
        match option {
            ClientOption::ExportName(name) => {
                let Some(export) = shared.find(target, &name) else {
                    bail!("NBD_OPT_EXPORT_NAME for {name:?}, which is not exported");
                };
                let session = match shared.open(export) {
                    Ok(s) => s,
                    Err(e) => bail!("NBD_OPT_EXPORT_NAME for {name:?}: access failed: {e:?}"),
                };
                let reply = ExportNameReply {
                    size: session.export.mediasize,
                    flags: session.flags(),
                }
                .encode(no_zeroes);
                wr.write_all(&reply)?;
                return Ok(Haggled::Session(session));
            }
            ClientOption::Abort => {
                let _ = send_replies(wr, code, &[OptionReply::Ack]);
                return Ok(Haggled::Done);
            }
            ClientOption::List => {
                let mut replies: Vec<OptionReply> = shared
                    .list(target)
                    .into_iter()
                    .map(|e| OptionReply::Server {
                        name: e.name,
                        details: String::new(),
                    })
                    .collect();
                replies.push(OptionReply::Ack);
                send_replies(wr, code, &replies)?;
            }
            ClientOption::StartTls if tls == Tls::On => {
                send_error(wr, code, REP_ERR_INVALID, "TLS is running already")?;
            }
            ClientOption::StartTls => {
                send_error(wr, code, REP_ERR_UNSUP, "TLS is not offered here")?;
            }
            ClientOption::Info(req) => {
                info_or_go(shared, target, wr, code, &req, false)?;
            }
            ClientOption::Go(req) => {
                if let Some(session) = info_or_go(shared, target, wr, code, &req, true)? {
                    return Ok(Haggled::Session(session));
                }
            }
            ClientOption::StructuredReply => {
                send_error(
                    wr,
                    code,
                    REP_ERR_UNSUP,
                    "structured replies are not supported",
                )?;
            }
            ClientOption::Other(raw) => {
                send_error(
                    wr,
                    raw.option,
                    REP_ERR_UNSUP,
                    &format!("option {} is not supported", raw.option),
                )?;
            }
        }
    }
    bail!("more than {MAX_OPTIONS} options")
}

/// Answers `NBD_OPT_INFO` / `NBD_OPT_GO`; for a successful GO, the open session.
pub(super) fn info_or_go(
    shared: &Shared,
    target: &Target,
    wr: &mut Stream,
    code: u32,
    req: &InfoRequest,
    go: bool,
) -> anyhow::Result<Option<Session>> {
    let Some(export) = shared.find(target, &req.name) else {
        let message = match target {
            Target::Any if req.name.is_empty() => String::from(
                "there is no default export: name a provider (NBD_OPT_LIST lists them)",
            ),
            _ => format!("no multipath provider {:?} is exported", req.name),
        };
        send_error(wr, code, REP_ERR_UNKNOWN, &message)?;
        return Ok(None);
    };
    let session = if go {
        match shared.open(export.clone()) {
            Ok(s) => Some(s),
            Err(e) => {
                let (rep, text) = if e == Errno::ENXIO {
                    (REP_ERR_UNKNOWN, "the provider is gone".to_string())
                } else {
                    (
                        REP_ERR_POLICY,
                        format!(
                            "cannot open multipath/{}: {}",
                            export.name,
                            nix::errno::Errno::from_raw(e.0).desc()
                        ),
                    )
                };
                send_error(wr, code, rep, &text)?;
                return Ok(None);
            }
        }
    } else {
        None
    };
    // INFO cannot know whether writing will be refused: it describes a writable export.
    let flags = transmission_flags(session.as_ref().is_some_and(|s| s.read_only()));
    let mut replies = vec![
        OptionReply::Info(Info::Export {
            size: export.mediasize,
            flags,
        }),
        OptionReply::Info(block_size(&export)),
    ];
    if req.requests.contains(&INFO_NAME) {
        replies.push(OptionReply::Info(Info::Name(export.name.clone())));
    }
    if req.requests.contains(&INFO_DESCRIPTION) {
        replies.push(OptionReply::Info(Info::Description(format!(
            "GEOM MULTIPATH provider multipath/{}",
            export.name
        ))));
    }
    replies.push(OptionReply::Ack);
    send_replies(wr, code, &replies)?;
    Ok(session)
}

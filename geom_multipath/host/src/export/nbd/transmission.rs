//! The transmission phase of one connection: a reader that turns each request into a
//! message to the owner (bounded in requests and bytes in flight), and a writer thread that
//! sends the replies in the order the owner answers them; the access is given back once,
//! when the connection ends and every reply has been sent.

use super::*;

/// A reply on its way to the writer thread.
pub(super) struct Outgoing {
    pub(super) handle: u64,
    /// The data of a successful read, or the error (a host errno).
    pub(super) result: Result<Option<IoBuf>, Errno>,
    /// What the request counted against the connection's in-flight budget.
    pub(super) cost: usize,
}

/// The in-flight budget of one connection.
#[derive(Default)]
pub(super) struct Flight {
    /// (requests, bytes).
    pub(super) state: Mutex<(usize, usize)>,
    pub(super) changed: Condvar,
}

impl Flight {
    /// Waits until a request costing `cost` bytes fits; `false` if the server is stopping.
    pub(super) fn admit(&self, cost: usize, stopping: &AtomicBool) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let fits =
                s.0 == 0 || (s.0 < MAX_INFLIGHT_REQUESTS && s.1 + cost <= MAX_INFLIGHT_BYTES);
            if fits {
                s.0 += 1;
                s.1 += cost;
                return true;
            }
            if stopping.load(Ordering::SeqCst) {
                return false;
            }
            s = self
                .changed
                .wait_timeout(s, TICK)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    pub(super) fn done(&self, cost: usize) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.0 = s.0.saturating_sub(1);
        s.1 = s.1.saturating_sub(cost);
        self.changed.notify_all();
    }
}

/// The transmission phase: requests are read here, replies written by another thread.
pub(super) fn transmission(
    shared: &Shared,
    session: &Session,
    rd: BufReader<Stream>,
    wr: Stream,
    stream: &Stream,
) -> anyhow::Result<()> {
    let (tx, rx) = crossbeam_channel::unbounded::<Outgoing>();
    let flight = Arc::new(Flight::default());
    let writer = {
        let flight = flight.clone();
        let exports = shared.exports.clone();
        let geom = session.export.geom;
        std::thread::Builder::new()
            .name("nbd-reply".into())
            .spawn(move || reply_loop(wr, rx, flight, exports, geom))
            .context("starting a reply thread")?
    };
    let mut reqs = Requests {
        shared,
        session,
        rd,
        tx,
        flight,
    };
    let result = reqs.run();
    if result.is_err() && !shared.stopping() {
        // A hard disconnect: replies still in flight are dropped. (When the server stops,
        // reading ends but the replies in flight still go out.)
        stream.shutdown();
    }
    drop(reqs);
    let _ = writer.join();
    result
}

/// Writes replies as the owner produces them, batching what is queued.
pub(super) fn reply_loop(
    wr: Stream,
    rx: Receiver<Outgoing>,
    flight: Arc<Flight>,
    exports: SharedExports,
    geom: GeomId,
) {
    let mut w = BufWriter::with_capacity(256 << 10, wr);
    let mut broken = false;
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(out) = next.take() {
            let withered = out.result.as_ref().err() == Some(&Errno::ENXIO)
                && exports
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .by_geom(geom)
                    .is_none();
            if !broken {
                if let Err(e) = write_reply(&mut w, &out) {
                    tracing::debug!("NBD: writing a reply: {e}");
                    broken = true;
                    w.get_ref().shutdown();
                }
            }
            flight.done(out.cost);
            if withered && !broken {
                // The provider is gone for good: tell this client, then hang up.
                let _ = w.flush();
                w.get_ref().shutdown();
                broken = true;
            }
            next = rx.try_recv().ok();
        }
        if !broken && w.flush().is_err() {
            broken = true;
            w.get_ref().shutdown();
        }
    }
}

pub(super) fn write_reply(w: &mut BufWriter<Stream>, out: &Outgoing) -> io::Result<()> {
    let error = match &out.result {
        Ok(_) => 0,
        Err(e) => nbd_proto::errno_to_wire(e.0),
    };
    w.write_all(
        &SimpleReply {
            error,
            handle: out.handle,
        }
        .encode(),
    )?;
    if let Ok(Some(data)) = &out.result {
        w.write_all(data.as_slice())?;
    }
    Ok(())
}

/// The reading side of a connection in transmission.
pub(super) struct Requests<'a> {
    pub(super) shared: &'a Shared,
    pub(super) session: &'a Session,
    pub(super) rd: BufReader<Stream>,
    pub(super) tx: Sender<Outgoing>,
    pub(super) flight: Arc<Flight>,
}

/// Where a request's outcome goes.
pub(super) type Finish = Box<dyn FnOnce(Result<Option<IoBuf>, Errno>) + Send>;

impl Requests<'_> {
    /// Reads requests until DISC or an oversized payload (`Ok`: the replies in flight
    /// still go out) or a protocol violation or hang-up (`Err`: they are dropped).
    pub(super) fn run(&mut self) -> anyhow::Result<()> {
        loop {
            let mut h = [0u8; Request::LEN];
            self.rd
                .read_exact(&mut h)
                .context("the client hung up without NBD_CMD_DISC")?;
            let req = Request::decode(&h)?;
            let payload = match req.payload() {
                Ok(n) => n,
                Err(e) => {
                    // The payload cannot be skipped safely: answer, then hang up once the
                    // replies in flight (this one included) are out.
                    tracing::debug!("NBD: {e}; closing the connection");
                    self.answer_now(req.handle, Err(Errno::EINVAL));
                    return Ok(());
                }
            };
            if req.command == Command::Disc {
                return Ok(());
            }
            let cost = match req.command {
                Command::Read | Command::Write if req.length <= MAX_PAYLOAD => req.length as usize,
                _ => 0,
            };
            if !self.flight.admit(cost, &self.shared.stopping) {
                bail!("the server is stopping");
            }
            let finish = self.finish(req.handle, cost);
            if req.command == Command::Write {
                let mut buf = IoBuf::to_fill(payload);
                if let Err(e) = self.rd.read_exact(buf.as_mut_slice()) {
                    finish(Err(Errno::EIO));
                    return Err(e).context("reading a write payload");
                }
                self.dispatch(req, Some(buf), finish);
            } else {
                self.dispatch(req, None, finish);
            }
        }
    }

    /// A closure that queues the reply to `handle`.
    pub(super) fn finish(&self, handle: u64, cost: usize) -> Finish {
        let tx = self.tx.clone();
        Box::new(move |result| {
            let _ = tx.send(Outgoing {
                handle,
                result,
                cost,
            });
        })
    }

    /// Answers at once, outside the in-flight budget's admission (it is being left).
    pub(super) fn answer_now(&self, handle: u64, result: Result<Option<IoBuf>, Errno>) {
        let mut s = self
            .flight
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        s.0 += 1;
        drop(s);
        (self.finish(handle, 0))(result);
    }

    /// Checks a request against the export; the errno to answer with if it is refused.
    pub(super) fn check(&self, req: &Request) -> Result<(), Errno> {
        let allowed = match req.command {
            Command::WriteZeroes => CMD_FLAG_FUA | CMD_FLAG_NO_HOLE,
            _ => CMD_FLAG_FUA,
        };
        if req.flags & !allowed != 0 {
            return Err(Errno::EINVAL);
        }
        let writes = matches!(
            req.command,
            Command::Write | Command::Trim | Command::WriteZeroes
        );
        if writes && self.session.read_only() {
            return Err(Errno::EPERM);
        }
        if matches!(req.command, Command::Flush) {
            return Ok(());
        }
        let (size, sector) = self.shared.geometry(self.session);
        let sector = u64::from(sector.max(1));
        let len = u64::from(req.length);
        if req.offset % sector != 0 || len % sector != 0 {
            return Err(Errno::EINVAL);
        }
        if req.command == Command::Read && req.length > MAX_PAYLOAD {
            return Err(Errno::EINVAL);
        }
        let past_end = req.offset.checked_add(len).is_none_or(|end| end > size);
        if past_end {
            return Err(match req.command {
                Command::Write | Command::WriteZeroes => Errno::ENOSPC,
                _ => Errno::EINVAL,
            });
        }
        Ok(())
    }

    pub(super) fn dispatch(&self, req: Request, payload: Option<IoBuf>, finish: Finish) {
        let known = matches!(
            req.command,
            Command::Read
                | Command::Write
                | Command::Flush
                | Command::Trim
                | Command::Cache
                | Command::WriteZeroes
        );
        if !known {
            return finish(Err(Errno::EINVAL));
        }
        if let Err(e) = self.check(&req) {
            return finish(Err(e));
        }
        let geom = self.session.export.geom;
        let owner = &self.shared.owner;
        let fua = req.flags & CMD_FLAG_FUA != 0;
        let len = u64::from(req.length);
        match req.command {
            Command::Read if len == 0 => finish(Ok(None)),
            Command::Read => owner.io(IoRequest {
                geom,
                op: IoOp::Read(IoBuf::to_fill(req.length as usize)),
                offset: req.offset,
                reply: Box::new(move |r| match r {
                    Ok(IoReply::Data(buf)) => finish(Ok(Some(buf))),
                    Ok(_) => finish(Err(Errno::EIO)),
                    Err(e) => finish(Err(e)),
                }),
            }),
            Command::Write | Command::Trim if len == 0 => finish(Ok(None)),
            Command::Write => owner.io(IoRequest {
                geom,
                op: IoOp::Write(payload.unwrap_or_else(|| IoBuf::zeroed(0))),
                offset: req.offset,
                reply: then_flush(owner.clone(), geom, fua, finish),
            }),
            Command::Trim => owner.io(IoRequest {
                geom,
                op: IoOp::Delete(len),
                offset: req.offset,
                reply: then_flush(owner.clone(), geom, fua, finish),
            }),
            Command::Flush => owner.io(IoRequest {
                geom,
                op: IoOp::Flush,
                offset: 0,
                reply: Box::new(move |r| finish(r.map(|_| None))),
            }),
            Command::WriteZeroes => Zeroes {
                owner: owner.clone(),
                geom,
                offset: req.offset,
                left: len,
                fua,
                finish,
            }
            .step(),
            // CACHE is a hint; the range was checked.
            _ => finish(Ok(None)),
        }
    }
}

/// The reply closure of a write or trim: with FUA, a flush follows before the answer.
pub(super) fn then_flush(
    owner: OwnerHandle,
    geom: GeomId,
    fua: bool,
    finish: Finish,
) -> crate::msg::ReplyFn {
    Box::new(move |r| match r {
        Err(e) => finish(Err(e)),
        Ok(_) if !fua => finish(Ok(None)),
        Ok(_) => owner.io(IoRequest {
            geom,
            op: IoOp::Flush,
            offset: 0,
            reply: Box::new(move |r| finish(r.map(|_| None))),
        }),
    })
}

/// A WRITE_ZEROES, carried out as a chain of writes of at most [`ZERO_CHUNK`] zeroes, each
/// sent from the previous one's reply closure.
pub(super) struct Zeroes {
    pub(super) owner: OwnerHandle,
    pub(super) geom: GeomId,
    pub(super) offset: u64,
    pub(super) left: u64,
    pub(super) fua: bool,
    pub(super) finish: Finish,
}

impl Zeroes {
    pub(super) fn step(mut self) {
        if self.left == 0 {
            let (owner, geom, fua) = (self.owner.clone(), self.geom, self.fua);
            return then_flush(owner, geom, fua, self.finish)(Ok(IoReply::Done));
        }
        let n = self.left.min(ZERO_CHUNK);
        let offset = self.offset;
        self.offset += n;
        self.left -= n;
        let (owner, geom) = (self.owner.clone(), self.geom);
        owner.io(IoRequest {
            geom,
            // `n` ≤ ZERO_CHUNK.
            op: IoOp::Write(IoBuf::zeroed(n as usize)),
            offset,
            reply: Box::new(move |r| match r {
                Ok(_) => self.step(),
                Err(e) => (self.finish)(Err(e)),
            }),
        });
    }
}

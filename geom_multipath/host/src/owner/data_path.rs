//! The owner's data path: a request from an export becomes a [`Bio`] the core routes, each
//! attempt goes to its path's workers (with its I/O deadline armed in the core), each
//! completion goes back to the core, and what the core decides — reissue on another path,
//! or deliver — is carried out here, answering the export exactly once.
//!
//! It never waits for a device and decides nothing itself: which path, whether to retry and
//! what the answer is are the core's.

use super::*;

impl Owner {
    pub(super) fn io(&mut self, req: IoRequest) {
        let token = self.next_token;
        self.next_token += 1;
        let (op, len, data) = match req.op {
            IoOp::Read(buf) => (
                Op::Read,
                buf.len() as u64,
                Data::Read {
                    len: buf.len(),
                    buf: Some(buf),
                },
            ),
            IoOp::Write(buf) => (Op::Write, buf.len() as u64, Data::Write(Arc::new(buf))),
            IoOp::Flush => (Op::Flush, 0, Data::None),
            IoOp::Delete(len) => (Op::Delete, len, Data::None),
            IoOp::Physpath => (Op::GetAttr { physpath: true }, 0, Data::None),
        };
        let mut bio = Bio::new(token, req.geom, op, req.offset, len);
        let started = self.class.start_or_queue(&mut bio);
        if let Started::Refused(e) = started {
            return (req.reply)(Err(e));
        }
        self.inflight.insert(
            token,
            InFlight {
                bio,
                data,
                text: None,
                reply: Some(req.reply),
                attempt: 1,
                started: Instant::now(),
            },
        );
        match started {
            Started::Path(path) => self.dispatch(token, path),
            // It waits for a path; `poll_dispatch` brings it back.
            Started::Queued | Started::Refused(_) => self.drain(),
        }
    }

    /// A request that waited for a path: send it now, or answer it.
    pub(super) fn waited(&mut self, dispatch: Dispatch) {
        match dispatch {
            Dispatch::Issue { bio, path } => {
                let token = bio.token;
                if let Some(entry) = self.inflight.get_mut(&token) {
                    entry.bio = bio;
                    entry.attempt += 1;
                    self.dispatch(token, path);
                }
            }
            Dispatch::Fail { bio, error } => self.carry_out(
                bio.token,
                Done::Deliver {
                    result: Err(error),
                    append: None,
                },
            ),
        }
    }

    /// Sends the current attempt of `token` to `path`'s workers, with its deadline.
    pub(super) fn dispatch(&mut self, token: u64, path: PathId) {
        let Some(entry) = self.inflight.get_mut(&token) else {
            return;
        };
        let name = self.paths.get(&path).cloned().unwrap_or_default();
        let op = match entry.bio.op {
            Op::Read => WorkOp::Read,
            Op::Write => WorkOp::Write,
            Op::Flush => WorkOp::Flush,
            Op::Delete => WorkOp::Delete(entry.bio.length),
            Op::GetAttr { .. } | Op::Other(_) => WorkOp::Physpath,
        };
        let attempt = entry.attempt;
        let buf = match &mut entry.data {
            Data::None => WorkBuf::None,
            Data::Read { len, buf } => {
                WorkBuf::Read(buf.take().unwrap_or_else(|| IoBuf::to_fill(*len)))
            }
            Data::Write(bytes) => WorkBuf::Write(bytes.clone()),
        };
        let offset = entry.bio.offset;
        // A fenced provider carries nothing: a timed-out request may still be out there.
        let device = if self.providers.is_fenced(&name) {
            None
        } else {
            self.providers.device(&name)
        };
        let Some(device) = device else {
            // A path whose provider is not open (or is fenced) cannot carry I/O: ENXIO
            // fails it over.
            let buf = match buf {
                WorkBuf::Read(b) => Some(b),
                WorkBuf::None | WorkBuf::Write(_) => None,
            };
            self.completion(Completion {
                token,
                attempt,
                buf,
                text: None,
                result: Err(Errno::ENXIO),
            });
            return;
        };
        let now = self.time_at(Instant::now());
        if let Some(entry) = self.inflight.get_mut(&token) {
            self.class.arm_deadline(&mut entry.bio, now);
        }
        let work = Work {
            token,
            attempt,
            op,
            offset,
            buf,
            device,
        };
        self.workers.submit(path, &name, work);
    }

    pub(super) fn completion(&mut self, c: Completion) {
        let now = self.time_at(Instant::now());
        if self.probe_answered(c.token, c.result) {
            return;
        }
        if self.late_answer(c.token, c.attempt) {
            return; // an attempt given up on at its deadline: its answer is discarded
        }
        let Some(entry) = self.inflight.get_mut(&c.token) else {
            return; // answered already
        };
        if c.attempt != entry.attempt {
            return;
        }
        if let (Data::Read { buf, .. }, Some(b)) = (&mut entry.data, c.buf) {
            *buf = Some(b);
        }
        if c.text.is_some() {
            entry.text = c.text;
        }
        let done = self.class.done_at(&mut entry.bio, c.result, now);
        self.carry_out(c.token, done);
        self.drain();
    }

    /// Does what the class decided about request `token`: send its next attempt, or
    /// answer it.
    pub(super) fn carry_out(&mut self, token: u64, done: Done) {
        match done {
            Done::Reissue(path) => {
                if let Some(entry) = self.inflight.get_mut(&token) {
                    entry.attempt += 1;
                }
                self.dispatch(token, path);
            }
            // It waits for a path; `poll_dispatch` brings it back.
            Done::Queued => {}
            Done::Deliver { result, append } => {
                if let Some(mut entry) = self.inflight.remove(&token) {
                    let reply = entry.reply.take().expect("one reply per request");
                    reply(result.map(|()| payload(&mut entry, append)));
                }
            }
        }
    }
}

/// What a delivered request hands back.
pub(super) fn payload(entry: &mut InFlight, append: Option<&'static str>) -> IoReply {
    match entry.bio.op {
        Op::Read | Op::Write => match std::mem::replace(&mut entry.data, Data::None) {
            Data::Read { buf: Some(buf), .. } => IoReply::Data(buf),
            // A hung attempt may still hold the bytes: copy them rather than wait.
            Data::Write(bytes) => IoReply::Data(
                Arc::try_unwrap(bytes).unwrap_or_else(|b| IoBuf::from_slice(b.as_slice())),
            ),
            Data::Read { buf: None, .. } | Data::None => IoReply::Done,
        },
        Op::GetAttr { .. } => {
            let mut text = entry.text.take().unwrap_or_default();
            text.push_str(append.unwrap_or(""));
            IoReply::Text(text)
        }
        Op::Flush | Op::Delete | Op::Other(_) => IoReply::Done,
    }
}

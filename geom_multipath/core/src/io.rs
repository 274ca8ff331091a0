//! The data path: routing a request to a path (`g_multipath_start`) and deciding what its
//! completion means (`g_multipath_done` / `g_multipath_done_error`).
//!
//! The class never sees data buffers. A request is a [`Bio`]: the caller's token, the
//! operation, the range, and the few words of state FreeBSD keeps in the parent bio
//! (`bio_driver1` = attempts allowed, `bio_children` = clones issued, the path it is on).
//! The caller owns the `Bio` and hands it to [`Class::start`] and [`Class::done`]; nothing is
//! allocated and nothing is looked up in a table. Every request ends in exactly one
//! [`Done::Deliver`]; a [`Done::Reissue`] means "send it again on this path and call `done`
//! again".

use crate::class::{Class, FAIL, LOST, POSTED};
use crate::errno::Errno;
use crate::event::{Message, Probe};
use crate::stats::FailCause;
use crate::timer::Time;
use crate::topology::{GeomId, PathId};

/// The command of a request (`bio_cmd`). Only reads are spread in Active/Read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// BIO_READ
    Read,
    /// BIO_WRITE
    Write,
    /// BIO_DELETE (trim / punch hole)
    Delete,
    /// BIO_FLUSH
    Flush,
    /// BIO_GETATTR; `physpath` when the attribute is `GEOM::physpath`, whose answer gets
    /// `/mp` appended.
    GetAttr {
        /// The attribute asked for is `GEOM::physpath`.
        physpath: bool,
    },
    /// Any other command (BIO_SPEEDUP, BIO_ZONE, …): routed like a write.
    Other(u8),
}

impl Op {
    /// A late copy of this command landing would change the disk: a write, a delete, a
    /// flush (it orders writes) or a command the class does not know. Reads and attribute
    /// queries change nothing.
    pub fn lands(self) -> bool {
        !matches!(self, Op::Read | Op::GetAttr { .. })
    }
}

/// What FreeBSD appends to a path's `GEOM::physpath` answer.
pub const PHYSPATH_SUFFIX: &str = "/mp";

/// One request to a multipath provider, with the per-request state the class keeps in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bio {
    /// The caller's id for the request (reported by the `io:restart` probe).
    pub token: u64,
    /// The multipath geom the request was sent to.
    pub geom: GeomId,
    /// The command.
    pub op: Op,
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub length: u64,
    /// Attempts allowed: the most paths the geom had at any start (`bio_driver1`).
    attempts: u32,
    /// Attempts issued so far (`bio_children`).
    issued: u32,
    /// The path the request is on, between `start` and `done`.
    path: Option<PathId>,
    /// When the current attempt counts as failed, if its path has an `io_timeout`
    /// ([`Class::arm_deadline`]); for a held attempt, when its path's `quiesce_time` ends.
    pub(crate) deadline: Option<Time>,
    /// The current attempt is overdue and held on its path until its copy can no longer
    /// land ([`crate::timer`]).
    pub(crate) held: bool,
    /// Started with `start_or_queue`: it may wait for a path.
    pub(crate) queueable: bool,
    /// When the driver sent the current attempt, if it said ([`Class::arm_deadline`]).
    pub(crate) sent: Option<Time>,
}

impl Bio {
    /// A request that has not been started.
    pub fn new(token: u64, geom: GeomId, op: Op, offset: u64, length: u64) -> Bio {
        Bio {
            token,
            geom,
            op,
            offset,
            length,
            attempts: 0,
            issued: 0,
            path: None,
            deadline: None,
            held: false,
            queueable: false,
            sent: None,
        }
    }

    /// A request that waited for a path starts over: as many attempts as paths again.
    pub(crate) fn reset_attempts(&mut self) {
        self.attempts = 0;
        self.issued = 0;
    }

    /// The path the request is on, if it has been started and not completed.
    pub fn path(&self) -> Option<PathId> {
        self.path
    }

    /// How many times the request has been sent to a path.
    pub fn issued(&self) -> u32 {
        self.issued
    }

    /// Its first attempt went to `path` without [`Class::start`] (a direct route,
    /// [`Class::adopt`]), on a geom of `ndisks` paths.
    pub(crate) fn adopted(&mut self, path: PathId, ndisks: u32) {
        self.attempts = self.attempts.max(ndisks);
        self.issued += 1;
        self.path = Some(path);
        self.deadline = None;
    }
}

/// What to do with a completed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    /// The request is finished: answer the caller with `result`. For a successful
    /// `GEOM::physpath` request, `append` is the suffix to add to the answer.
    Deliver {
        /// The request's result.
        result: Result<(), Errno>,
        /// Text to append to a successful attribute answer.
        append: Option<&'static str>,
    },
    /// Send the request again on this path (it is already counted in flight there).
    Reissue(PathId),
    /// The request waits for a usable path and comes back through `poll_dispatch` (only for
    /// requests started with `start_or_queue`).
    Queued,
}

impl Done {
    fn deliver(result: Result<(), Errno>) -> Done {
        Done::Deliver {
            result,
            append: None,
        }
    }
}

impl Class {
    /// `g_multipath_start`: the path to send `bio` to, or ENXIO when there is none (every
    /// path bad, or no path at all) or when a new request meets a withered provider. On
    /// success the path counts the request in flight and the `bio` remembers it.
    pub fn start(&mut self, bio: &mut Bio) -> Result<PathId, Errno> {
        // Requests already waiting for a path go first.
        let queue_first = bio.queueable;
        let routed = self.route(bio, queue_first);
        // A new request refused here is answered with the error (a queueable one is
        // counted by `start_or_queue`, which may queue it instead).
        if let Err(e) = routed {
            if bio.issued == 0 && !bio.queueable {
                self.count_answer(bio, Err(e));
            }
        }
        routed
    }

    /// `start`; `queue_first` refuses a queueable request while others wait, so it queues
    /// behind them (a waiting request being resumed is routed without it).
    pub(crate) fn route(&mut self, bio: &mut Bio, queue_first: bool) -> Result<PathId, Errno> {
        debug_assert!(bio.path.is_none(), "start of a request already in flight");
        let Some(g) = self.geoms.get(bio.geom.0) else {
            return Err(Errno::ENXIO);
        };
        // GEOM refuses new requests to a withered provider (g_io_request's pp->error);
        // a request already in flight is reissued by the class itself and is not refused.
        if g.provider.withered && bio.issued == 0 {
            return Err(Errno::ENXIO);
        }
        if queue_first && !g.waiting.is_empty() {
            return Err(Errno::ENXIO);
        }
        let path = self
            .choose(bio.geom, bio.op == Op::Read, bio.length)
            .ok_or(Errno::ENXIO)?;
        let ndisks = self.live_geom(bio.geom).ndisks;
        bio.attempts = bio.attempts.max(ndisks);
        bio.issued += 1;
        bio.path = Some(path);
        bio.deadline = None;
        bio.held = false;
        bio.sent = None;
        let m = self.member_mut(path);
        m.inflight += 1;
        m.outstanding += bio.length;
        Ok(path)
    }

    /// `g_multipath_done`: an attempt of `bio` finished with `result`.
    ///
    /// EIO and ENXIO fail the path (`Error <e>, <p> in <g> marked FAIL`) and the request is
    /// reissued while fewer attempts than paths were made; any other error, and success,
    /// are delivered as they are. A LOST path whose last request drains is posted for
    /// detach. The attempt is counted ([`crate::stats`]) without its latency: a driver
    /// with a clock calls [`done_at`](Class::done_at).
    pub fn done(&mut self, bio: &mut Bio, result: Result<(), Errno>) -> Done {
        self.complete(bio, result, None, false)
    }

    /// [`done`](Class::done) for a driver with a clock: the answer came at `now`, so the
    /// attempt's latency since [`arm_deadline`](Class::arm_deadline) is counted too.
    pub fn done_at(&mut self, bio: &mut Bio, result: Result<(), Errno>, now: Time) -> Done {
        self.tell_time(now);
        self.complete(bio, result, Some(now), false)
    }

    /// The attempt of `bio` ended with `result` (at `at`, when known; `timed_out` when the
    /// class gave up on it at its deadline): count it, then decide.
    pub(crate) fn complete(
        &mut self,
        bio: &mut Bio,
        result: Result<(), Errno>,
        at: Option<Time>,
        timed_out: bool,
    ) -> Done {
        bio.deadline = None;
        bio.held = false;
        let Some(path) = bio.path.take() else {
            debug_assert!(false, "done of a request that is not in flight");
            return Done::deliver(Err(Errno::ENXIO));
        };
        self.count_attempt(bio, path, result, at);
        let done = match result {
            Err(e) if e.fails_path() => self.done_error(bio, path, e, timed_out),
            _ => {
                self.drained_one(path, bio.length, result.is_ok());
                let append = match (result, bio.op) {
                    (Ok(()), Op::GetAttr { physpath: true }) => Some(PHYSPATH_SUFFIX),
                    _ => None,
                };
                Done::Deliver { result, append }
            }
        };
        if let Done::Deliver { result, .. } = done {
            self.count_answer(bio, result);
        }
        done
    }

    /// `g_multipath_done_error`.
    fn done_error(&mut self, bio: &mut Bio, path: PathId, error: Errno, timed_out: bool) -> Done {
        let cause = if timed_out {
            FailCause::Deadline
        } else {
            FailCause::Error(error)
        };
        self.fail_path(bio.geom, path, error, cause);
        self.drained_one(path, bio.length, false);
        if bio.issued < bio.attempts {
            self.probe(Probe::Restart { token: bio.token });
            match self.start(bio) {
                Ok(next) => {
                    self.count_reissue(bio, path);
                    Done::Reissue(next)
                }
                Err(_) if self.wait_for_path(bio) => Done::Queued,
                Err(e) => Done::deliver(Err(e)),
            }
        } else if self.good(bio.geom) == 0 && self.wait_for_path(bio) {
            Done::Queued
        } else {
            Done::deliver(Err(error))
        }
    }

    /// The first half of `g_multipath_done_error`: `error` on `path` of `geom` marks the
    /// path FAIL (`Error <e>, <p> in <g> marked FAIL`) for `cause`, unless it is already.
    pub(crate) fn fail_path(&mut self, geom: GeomId, path: PathId, error: Errno, cause: FailCause) {
        if self.member(path).flags & FAIL == 0 {
            let geom = self.live_geom(geom).name.clone();
            let name = self.live_path(path).name.clone();
            self.log(Message::IoFailed {
                error,
                path: name.clone(),
                geom: geom.clone(),
            });
            self.probe(Probe::Fail {
                geom,
                path: name,
                error: error.0,
            });
            self.note_failed(path, cause);
            self.fault(path, FAIL);
        }
    }

    /// One request of `length` bytes left `path` (`ok`: it moved its bytes); a LOST path
    /// that became idle is posted for detach.
    fn drained_one(&mut self, path: PathId, length: u64, ok: bool) {
        let m = self.member_mut(path);
        debug_assert!(m.inflight > 0, "in-flight count underflow");
        m.inflight = m.inflight.saturating_sub(1);
        m.outstanding = m.outstanding.saturating_sub(length);
        if ok {
            m.completed = m.completed.saturating_add(length);
        }
        self.detach_posted_if_idle(path);
    }

    /// Posts a LOST path for detach once nothing is in flight on it: no request, no probe.
    pub(crate) fn detach_posted_if_idle(&mut self, path: PathId) {
        let probing = self.live_path(path).health.probing;
        let m = self.member_mut(path);
        if m.inflight == 0 && !probing && m.flags & (LOST | POSTED) == LOST {
            m.flags |= POSTED;
            self.post_detach(path);
        }
    }
}

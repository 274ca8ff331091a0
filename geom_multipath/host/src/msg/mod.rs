//! The messages every thread of the host sends to the one owner of the class, and the
//! handle they send them with.
//!
//! The owner thread alone calls the core; every other thread — FUSE and NBD servers, path
//! workers, the control socket, the device watcher — talks to it through an [`OwnerHandle`]
//! (a channel plus an eventfd that wakes the owner's poll loop). Data requests carry their
//! own reply, a closure the owner calls exactly once when the request is finished.

pub mod exports;

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use geom_multipath::{Errno, GeomId};
use geom_multipath_proto::{Answer, Call};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::path::device::IoBuf;

/// The operation of a data request to a multipath provider.
#[derive(Debug)]
pub enum IoOp {
    /// Read into this buffer (its length is the request length).
    Read(IoBuf),
    /// Write this buffer.
    Write(IoBuf),
    /// Make written data durable (BIO_FLUSH).
    Flush,
    /// Forget this many bytes (BIO_DELETE).
    Delete(u64),
    /// Ask for `GEOM::physpath`.
    Physpath,
}

/// What a finished data request gives back.
#[derive(Debug)]
pub enum IoReply {
    /// The buffer of a read (filled) or a write (as sent).
    Data(IoBuf),
    /// A flush or delete finished.
    Done,
    /// The physical path.
    Text(String),
}

/// Called once with the request's outcome, on the owner thread: keep it short (send a
/// FUSE or NBD reply, or hand the result to a channel).
pub type ReplyFn = Box<dyn FnOnce(Result<IoReply, Errno>) + Send>;

/// A data request for a multipath provider.
pub struct IoRequest {
    /// The provider's geom.
    pub geom: GeomId,
    /// What to do.
    pub op: IoOp,
    /// Byte offset.
    pub offset: u64,
    /// Where the answer goes.
    pub reply: ReplyFn,
}

impl std::fmt::Debug for IoRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoRequest")
            .field("geom", &self.geom)
            .field("op", &self.op)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

/// A path worker's report on one attempt.
#[derive(Debug)]
pub struct Completion {
    /// The in-flight entry the attempt belongs to.
    pub token: u64,
    /// The attempt's sequence number within the request (a late answer to an attempt the
    /// owner already gave up on is recognised by it).
    pub attempt: u32,
    /// A read's buffer, handed back (a write's bytes stay with the owner).
    pub buf: Option<IoBuf>,
    /// Text for a physpath request.
    pub text: Option<String>,
    /// The device's verdict.
    pub result: Result<(), Errno>,
}

/// Everything the owner is told.
pub enum Msg {
    /// A data request.
    Io(IoRequest),
    /// A path worker finished an attempt.
    Done(Completion),
    /// An export was opened or closed: apply `dr`/`dw`/`de` to the provider's access.
    Access {
        /// The provider's geom.
        geom: GeomId,
        /// Change of read count.
        dr: i32,
        /// Change of write count.
        dw: i32,
        /// Change of exclusive count.
        de: i32,
        /// Where the verdict goes.
        reply: Sender<Result<(), Errno>>,
    },
    /// A control call from the socket, answered on `reply`.
    Call {
        /// The call.
        call: Call,
        /// Where the answer goes.
        reply: Sender<Answer>,
    },
    /// A provider that is not a block device (an NBD connection) came up: add it, or
    /// replace the one of that name, and taste it.
    ProviderUp {
        /// Its name, size and sector size.
        info: geom_multipath::ProviderInfo,
        /// How to reach its data.
        source: crate::path::device::Source,
    },
    /// Such a provider went away: its paths are orphaned.
    ProviderDown {
        /// Its name.
        name: String,
    },
    /// Stop the owner loop (signal, or after an accepted unload).
    Shutdown,
}

/// How any thread reaches the owner.
#[derive(Clone)]
pub struct OwnerHandle {
    tx: Sender<Msg>,
    waker: Arc<EventFd>,
}

/// The owner's end: the channel and the eventfd its poll loop watches.
pub struct OwnerInbox {
    /// Messages, in the order they were sent.
    pub rx: Receiver<Msg>,
    /// Readable when there may be messages.
    pub waker: Arc<EventFd>,
}

/// A new handle/inbox pair.
pub fn channel() -> std::io::Result<(OwnerHandle, OwnerInbox)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let waker = Arc::new(EventFd::from_flags(
        EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
    )?);
    Ok((
        OwnerHandle {
            tx,
            waker: waker.clone(),
        },
        OwnerInbox { rx, waker },
    ))
}

impl OwnerHandle {
    /// Sends `msg` and wakes the owner. `false` if the owner is gone.
    pub fn send(&self, msg: Msg) -> bool {
        if self.tx.send(msg).is_err() {
            return false;
        }
        // A full eventfd counter still wakes the reader; an error here cannot lose the
        // message, which is already queued.
        let _ = self.waker.write(1);
        true
    }

    /// Sends a data request; if the owner is gone the reply is called with ENXIO.
    pub fn io(&self, req: IoRequest) {
        if let Err(crossbeam_channel::SendError(Msg::Io(req))) = self.tx.send(Msg::Io(req)) {
            (req.reply)(Err(Errno::ENXIO));
            return;
        }
        let _ = self.waker.write(1);
    }

    /// Changes a provider's access counts and waits for the verdict.
    pub fn access(&self, geom: GeomId, dr: i32, dw: i32, de: i32) -> Result<(), Errno> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        if !self.send(Msg::Access {
            geom,
            dr,
            dw,
            de,
            reply,
        }) {
            return Err(Errno::ENXIO);
        }
        answer.recv().unwrap_or(Err(Errno::ENXIO))
    }

    /// Makes a control call and waits for the answer.
    pub fn call(&self, call: Call) -> Answer {
        let (reply, answer) = crossbeam_channel::bounded(1);
        if !self.send(Msg::Call { call, reply }) {
            return Answer::Failed {
                errno: libc::ENXIO,
                text: String::from("the daemon is stopping"),
            };
        }
        answer.recv().unwrap_or(Answer::Failed {
            errno: libc::ENXIO,
            text: String::from("the daemon is stopping"),
        })
    }
}

impl OwnerInbox {
    /// Clears the eventfd after the owner woke (messages are then drained with `try_recv`).
    pub fn acknowledge(&self) {
        let _ = self.waker.read();
    }
}

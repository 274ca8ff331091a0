//! Path workers: what does a path's I/O, so that the owner of the class never waits for a
//! device.
//!
//! On Linux, reads, writes and flushes on a plain block device go through io_uring
//! ([`geom_multipath_sys::uring`]): the owner starts them and reaps their ends from its own
//! poll loop, with no thread hand-off at all (`GMULTIPATHD_IO=threads` turns this off).
//! Everything else — other devices (NOP, NBD, memory), deletes, physpath, and every
//! request on FreeBSD — goes to a pool of threads.
//!
//! Each path gets a pool of threads fed by one queue. Threads are started on demand up to a
//! limit (a device with 32 requests in flight gets 32 threads; an idle path keeps one), and
//! each attempt's answer goes back to the owner as a [`Completion`]. A device that hangs ties
//! up only its own path's threads; the owner can give up on an attempt (its deadline) and
//! later discard the late answer by its attempt number. Dropping a pool closes its queue:
//! queued attempts are answered with ENXIO and the threads exit once their device call
//! returns.
//!
//! The pool was once the only engine; bench/io.sh measured the cost of its two context
//! switches per request at a third of the random-I/O rate (BENCHMARKS.md). A hung block
//! device holds io_uring entries instead of threads; the owner's deadline still fails the
//! path over, and a late completion is discarded by its attempt number as before.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use geom_multipath::{Errno, PathId};

#[cfg(target_os = "linux")]
use geom_multipath_sys::uring;

use crate::msg::{Completion, Msg, OwnerHandle};
use crate::path::device::{Device, IoBuf};
use crate::sys::idhash::IdMap;

/// The most threads one path may have.
pub const MAX_THREADS_PER_PATH: usize = 64;

/// What one attempt does.
#[derive(Debug)]
pub enum WorkOp {
    /// Fill the buffer.
    Read,
    /// Write the buffer.
    Write,
    /// Flush.
    Flush,
    /// Discard this many bytes.
    Delete(u64),
    /// Answer GEOM::physpath.
    Physpath,
}

/// The data of one attempt: a read fills its own buffer; a write's bytes are shared with
/// the owner, which keeps them for a reissue while a hung attempt still holds its copy.
#[derive(Debug)]
pub enum WorkBuf {
    /// No data (flush, delete, physpath).
    None,
    /// Fill this buffer; it comes back in the completion.
    Read(IoBuf),
    /// Write these bytes.
    Write(Arc<IoBuf>),
}

/// One attempt of one request on one path.
pub struct Work {
    /// The owner's in-flight entry.
    pub token: u64,
    /// Which attempt of that entry.
    pub attempt: u32,
    /// What to do.
    pub op: WorkOp,
    /// Byte offset.
    pub offset: u64,
    /// The data.
    pub buf: WorkBuf,
    /// The path's device.
    pub device: Arc<dyn Device>,
}

impl Work {
    fn run(mut self) -> Completion {
        let mut text = None;
        let result = match (&self.op, &mut self.buf) {
            (WorkOp::Read, WorkBuf::Read(buf)) => {
                self.device.read_at(buf.as_mut_slice(), self.offset)
            }
            (WorkOp::Write, WorkBuf::Write(buf)) => {
                self.device.write_at(buf.as_slice(), self.offset)
            }
            (WorkOp::Read | WorkOp::Write, _) => Err(Errno::EINVAL),
            (WorkOp::Flush, _) => self.device.flush(),
            (WorkOp::Delete(len), _) => self.device.discard(self.offset, *len),
            (WorkOp::Physpath, _) => self.device.physpath().map(|p| {
                text = Some(p);
            }),
        };
        self.complete(text, result)
    }

    fn refuse(self, error: Errno) -> Completion {
        self.complete(None, Err(error))
    }

    fn complete(self, text: Option<String>, result: Result<(), Errno>) -> Completion {
        Completion {
            token: self.token,
            attempt: self.attempt,
            buf: match self.buf {
                WorkBuf::Read(buf) => Some(buf),
                WorkBuf::None | WorkBuf::Write(_) => None,
            },
            text,
            result,
        }
    }
}

struct Pool {
    tx: Sender<Work>,
    rx: Receiver<Work>,
    threads: usize,
    idle: Arc<AtomicUsize>,
    name: String,
}

/// Every path's pool, and the ring.
pub struct Workers {
    owner: OwnerHandle,
    pools: IdMap<PathId, Pool>,
    #[cfg(target_os = "linux")]
    ring: Option<RingEngine>,
}

/// The io_uring engine: the ring and which attempt each of its requests is.
#[cfg(target_os = "linux")]
struct RingEngine {
    ring: uring::Ring,
    attempts: IdMap<u64, (u64, u32)>,
    next_tag: u64,
}

/// Entries in the ring's submission queue (more wait in its backlog).
#[cfg(target_os = "linux")]
const RING_ENTRIES: u32 = 256;

impl Workers {
    /// Pools that report to `owner`, and on Linux the ring, unless io_uring is unavailable
    /// or `GMULTIPATHD_IO=threads`.
    pub fn new(owner: OwnerHandle) -> Workers {
        Workers {
            owner,
            pools: IdMap::default(),
            #[cfg(target_os = "linux")]
            ring: RingEngine::new(),
        }
    }

    /// Readable when the ring has finished requests: the owner polls it and then calls
    /// [`Workers::reap`]. `None` without a ring.
    pub fn ring_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        #[cfg(target_os = "linux")]
        if let Some(engine) = &self.ring {
            return Some(engine.ring.fd());
        }
        None
    }

    /// Hands the ring's new requests to the kernel, all at once: the owner calls it before
    /// it waits.
    pub fn flush(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(engine) = &mut self.ring {
            engine.ring.submit();
        }
    }

    /// The attempts the ring has finished.
    pub fn reap(&mut self) -> Vec<Completion> {
        #[cfg(target_os = "linux")]
        if let Some(engine) = &mut self.ring {
            return engine.reap();
        }
        Vec::new()
    }

    /// Starts `work` on the ring or queues it on `path`'s pool (made on first use; `name`
    /// names its threads).
    pub fn submit(&mut self, path: PathId, name: &str, work: Work) {
        #[cfg(target_os = "linux")]
        let work = match &mut self.ring {
            Some(engine) => match engine.start(work) {
                None => return,
                Some(work) => work,
            },
            None => work,
        };
        let owner = self.owner.clone();
        let pool = self.pools.entry(path).or_insert_with(|| {
            let (tx, rx) = crossbeam_channel::unbounded();
            Pool {
                tx,
                rx,
                threads: 0,
                idle: Arc::new(AtomicUsize::new(0)),
                name: name.to_string(),
            }
        });
        if pool.idle.load(Ordering::Acquire) == 0 && pool.threads < MAX_THREADS_PER_PATH {
            let rx = pool.rx.clone();
            let idle = pool.idle.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("path-{}", pool.name))
                .spawn(move || worker_loop(rx, idle, owner));
            if spawned.is_ok() {
                pool.threads += 1;
            }
        }
        if let Err(crossbeam_channel::SendError(work)) = pool.tx.send(work) {
            self.owner.send(Msg::Done(work.refuse(Errno::ENXIO)));
        }
    }

    /// Closes `path`'s pool: nothing queued there will run.
    pub fn close(&mut self, path: PathId) {
        if let Some(pool) = self.pools.remove(&path) {
            drop(pool.tx);
            while let Ok(work) = pool.rx.try_recv() {
                self.owner.send(Msg::Done(work.refuse(Errno::ENXIO)));
            }
        }
    }

    /// Threads currently alive for `path` (for tests).
    #[cfg(any(test, feature = "testkit"))]
    pub fn threads(&self, path: PathId) -> usize {
        self.pools.get(&path).map_or(0, |p| p.threads)
    }
}

#[cfg(target_os = "linux")]
impl RingEngine {
    fn new() -> Option<RingEngine> {
        if std::env::var("GMULTIPATHD_IO").is_ok_and(|v| v == "threads") {
            return None;
        }
        match uring::Ring::new(RING_ENTRIES) {
            Ok(ring) => Some(RingEngine {
                ring,
                attempts: IdMap::default(),
                next_tag: 1,
            }),
            Err(e) => {
                tracing::info!("io_uring unavailable ({e}): path I/O uses threads");
                None
            }
        }
    }

    /// Starts `work` if the ring can do it; gives it back otherwise.
    fn start(&mut self, work: Work) -> Option<Work> {
        let op = match work.op {
            WorkOp::Read => uring::Op::Read,
            WorkOp::Write => uring::Op::Write,
            WorkOp::Flush => uring::Op::Flush,
            WorkOp::Delete(_) | WorkOp::Physpath => return Some(work),
        };
        let Some(file) = work.device.direct_file() else {
            return Some(work);
        };
        let tag = self.next_tag;
        self.next_tag += 1;
        self.attempts.insert(tag, (work.token, work.attempt));
        let buffer = match work.buf {
            WorkBuf::None => uring::Buffer::None,
            WorkBuf::Read(b) => uring::Buffer::Read(b),
            WorkBuf::Write(b) => uring::Buffer::Write(b),
        };
        self.ring.start(tag, file, op, work.offset, buffer);
        None
    }

    fn reap(&mut self) -> Vec<Completion> {
        self.ring
            .reap()
            .into_iter()
            .filter_map(|f| {
                let (token, attempt) = self.attempts.remove(&f.tag)?;
                Some(Completion {
                    token,
                    attempt,
                    buf: match f.buffer {
                        uring::Buffer::Read(b) => Some(b),
                        uring::Buffer::None | uring::Buffer::Write(_) => None,
                    },
                    text: None,
                    result: f.result.map_err(Errno),
                })
            })
            .collect()
    }
}

fn worker_loop(rx: Receiver<Work>, idle: Arc<AtomicUsize>, owner: OwnerHandle) {
    loop {
        idle.fetch_add(1, Ordering::AcqRel);
        let next = rx.recv();
        idle.fetch_sub(1, Ordering::AcqRel);
        let Ok(work) = next else {
            return;
        };
        if !owner.send(Msg::Done(work.run())) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg;
    use crate::testkit::MemDevice;
    use std::time::Duration;

    fn path() -> PathId {
        use geom_multipath::testkit::MemTopology;
        let mut topo = MemTopology::new();
        topo.disk_with_paths("md", 1, 1 << 20, 512);
        let mut class = geom_multipath::Class::default();
        topo.verb(&mut class, "create", &[], &["FRED", "md0"]);
        let g = class.find_geom("FRED").unwrap();
        let p = class.geom(g).unwrap().paths().next().unwrap();
        p
    }

    fn next_done(inbox: &msg::OwnerInbox) -> Completion {
        match inbox.rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Msg::Done(c)) => c,
            Ok(_) => panic!("unexpected message"),
            Err(e) => panic!("no completion: {e}"),
        }
    }

    #[test]
    fn reads_and_writes_come_back_with_their_buffers() {
        let (owner, inbox) = msg::channel().unwrap();
        let mut w = Workers::new(owner);
        let dev: Arc<dyn Device> = Arc::new(MemDevice::new(1 << 16));
        let p = path();
        let write = Work {
            token: 7,
            attempt: 1,
            op: WorkOp::Write,
            offset: 512,
            buf: WorkBuf::Write(Arc::new(IoBuf::from_slice(&[9; 512]))),
            device: dev.clone(),
        };
        w.submit(p, "md0", write);
        let c = next_done(&inbox);
        assert_eq!((c.token, c.attempt, c.result), (7, 1, Ok(())));
        let read = Work {
            token: 8,
            attempt: 2,
            op: WorkOp::Read,
            offset: 512,
            buf: WorkBuf::Read(IoBuf::zeroed(512)),
            device: dev,
        };
        w.submit(p, "md0", read);
        let c = next_done(&inbox);
        assert_eq!(c.buf.unwrap().as_slice(), &[9; 512]);
        assert!(w.threads(p) >= 1);
    }

    #[test]
    fn device_errors_are_reported_not_swallowed() {
        let (owner, inbox) = msg::channel().unwrap();
        let mut w = Workers::new(owner);
        let dev = Arc::new(MemDevice::new(4096));
        dev.set_faults(crate::testkit::MemFaults {
            read: Some(Errno::EIO),
            write: None,
        });
        let p = path();
        w.submit(
            p,
            "md0",
            Work {
                token: 1,
                attempt: 1,
                op: WorkOp::Read,
                offset: 0,
                buf: WorkBuf::Read(IoBuf::zeroed(512)),
                device: dev,
            },
        );
        assert_eq!(next_done(&inbox).result, Err(Errno::EIO));
    }
}

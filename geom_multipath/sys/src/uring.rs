//! Block-device I/O through io_uring (Linux), for the daemon's owner thread: it starts
//! reads, writes and flushes on a path's O_DIRECT descriptor without waiting, and learns of
//! their ends through an eventfd it polls with everything else. A request then costs no
//! thread hand-off at all, where a pool of blocking threads costs two context switches.
//!
//! The safe surface is [`Ring`]: [`Ring::start`] takes ownership of the request's buffer
//! (a read's [`IoBuf`]) or a share of it (a write's `Arc<IoBuf>`) and of a share of the
//! file, and keeps them until the kernel is done with them; [`Ring::reap`] gives them back
//! with the outcome. A transfer the kernel cuts short is continued from where it stopped,
//! as `read_exact_at` would. Nothing the kernel may still touch is ever freed: a `Ring`
//! dropped with requests in flight waits briefly for them and leaks what is left (a device
//! that hangs) rather than free memory under a pending DMA.

use crate::idhash::IdMap;
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::IoBuf;

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Fill the read buffer from the offset.
    Read,
    /// Write the write buffer at the offset.
    Write,
    /// fsync(2) the device.
    Flush,
}

/// A request's data, owned by the ring while the kernel may use it.
#[derive(Debug)]
pub enum Buffer {
    /// No data (flush).
    None,
    /// Filled by a read; handed back in [`Finished`].
    Read(IoBuf),
    /// Written; the caller keeps its own share for a reissue.
    Write(Arc<IoBuf>),
}

/// A request that has ended.
#[derive(Debug)]
pub struct Finished {
    /// The caller's tag from [`Ring::start`].
    pub tag: u64,
    /// Ok, or the errno the device answered (EIO for a read that found the end, ENOSPC for
    /// a write that could not go on).
    pub result: Result<(), i32>,
    /// The buffer, back from the kernel.
    pub buffer: Buffer,
}

/// One request in the kernel's hands, with everything it points at.
struct Pending {
    tag: u64,
    op: Op,
    file: Arc<File>,
    offset: u64,
    buffer: Buffer,
    /// Bytes transferred so far.
    done: usize,
}

impl Pending {
    fn len(&self) -> usize {
        match &self.buffer {
            Buffer::None => 0,
            Buffer::Read(b) => b.len(),
            Buffer::Write(b) => b.len(),
        }
    }

    /// The submission entry for what remains to be done.
    fn entry(&mut self, key: u64) -> squeue::Entry {
        let fd = types::Fd(self.file.as_raw_fd());
        let at = self.offset + self.done as u64;
        let left = (self.len() - self.done) as u32;
        let done = self.done;
        let entry = match (&mut self.buffer, self.op) {
            (Buffer::Read(b), Op::Read) => {
                opcode::Read::new(fd, b.as_mut_slice()[done..].as_mut_ptr(), left)
                    .offset(at)
                    .build()
            }
            (Buffer::Write(b), Op::Write) => {
                opcode::Write::new(fd, b.as_slice()[done..].as_ptr(), left)
                    .offset(at)
                    .build()
            }
            _ => opcode::Fsync::new(fd).build(),
        };
        entry.user_data(key)
    }
}

/// An io_uring instance and the requests in it.
pub struct Ring {
    ring: IoUring,
    wake: EventFd,
    pending: IdMap<u64, Pending>,
    /// Entries the submission queue had no room for yet.
    backlog: VecDeque<squeue::Entry>,
    /// Requests refused before reaching the kernel, handed out by the next reap.
    refused: Vec<Finished>,
    next_key: u64,
}

/// How long a dropped ring waits for requests still in flight before it leaks them.
const DROP_WAIT: Duration = Duration::from_secs(5);

impl Ring {
    /// A ring with room for `entries` submissions at a time (more wait in a backlog), whose
    /// completions make [`Ring::fd`] readable.
    pub fn new(entries: u32) -> io::Result<Ring> {
        let ring = IoUring::new(entries)?;
        let wake = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        ring.submitter()
            .register_eventfd(wake.as_fd().as_raw_fd())?;
        Ok(Ring {
            ring,
            wake,
            pending: IdMap::default(),
            backlog: VecDeque::new(),
            refused: Vec::new(),
            next_key: 1,
        })
    }

    /// Readable when requests have ended: poll it, then call [`Ring::reap`].
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Requests started and not yet reaped.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Starts `op` on `file` at `offset` with `buffer` (a `Read` buffer for a read, a
    /// `Write` one for a write, `None` for a flush); the kernel gets it at the next
    /// [`Ring::submit`] (or [`Ring::reap`]). A mismatched buffer ends at once with EINVAL;
    /// any failure shows up in [`Ring::reap`], never here.
    pub fn start(&mut self, tag: u64, file: Arc<File>, op: Op, offset: u64, buffer: Buffer) {
        let fits = matches!(
            (&buffer, op),
            (Buffer::Read(_), Op::Read) | (Buffer::Write(_), Op::Write) | (Buffer::None, Op::Flush)
        );
        if !fits {
            self.refused.push(Finished {
                tag,
                result: Err(libc::EINVAL),
                buffer,
            });
            let _ = self.wake.write(1);
            return;
        }
        let key = self.next_key;
        self.next_key += 1;
        let mut p = Pending {
            tag,
            op,
            file,
            offset,
            buffer,
            done: 0,
        };
        self.backlog.push_back(p.entry(key));
        self.pending.insert(key, p);
        self.push_backlog();
        if self.ring.submission().is_full() {
            let _ = self.ring.submit();
            self.push_backlog();
        }
    }

    /// Hands the kernel every request started since the last call, in one system call:
    /// call it before waiting (requests started are not under way until then).
    pub fn submit(&mut self) {
        self.push_backlog();
        if !self.ring.submission().is_empty() {
            let _ = self.ring.submit();
        }
    }

    /// Moves backlog entries into the submission queue while it has room.
    fn push_backlog(&mut self) {
        let mut sq = self.ring.submission();
        while let Some(e) = self.backlog.front() {
            // SAFETY: every entry points only at memory owned by its `Pending` (the
            // buffer's heap storage, which does not move when the `IoBuf` or `Arc` holding
            // it moves) and at a descriptor kept open by its `Arc<File>`; the `Pending`
            // stays in `self.pending` until its completion is reaped, and `Drop` leaks
            // whatever is still pending rather than free it.
            if unsafe { sq.push(e) }.is_err() {
                break;
            }
            self.backlog.pop_front();
        }
    }

    /// Collects every request that has ended (continuing the ones cut short).
    pub fn reap(&mut self) -> Vec<Finished> {
        let _ = self.wake.read();
        let mut finished = std::mem::take(&mut self.refused);
        loop {
            let cqes: Vec<(u64, i32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result()))
                .collect();
            if cqes.is_empty() {
                break;
            }
            for (key, res) in cqes {
                self.complete(key, res, &mut finished);
            }
            self.push_backlog();
            let _ = self.ring.submit();
        }
        finished
    }

    fn complete(&mut self, key: u64, res: i32, finished: &mut Vec<Finished>) {
        let Some(mut p) = self.pending.remove(&key) else {
            return;
        };
        let result = if res == -libc::EINTR || res == -libc::EAGAIN {
            Ok(false)
        } else if res < 0 {
            Err(-res)
        } else if p.op == Op::Flush {
            Ok(true)
        } else if res == 0 {
            Err(if p.op == Op::Read {
                libc::EIO
            } else {
                libc::ENOSPC
            })
        } else {
            p.done += res as usize;
            Ok(p.done >= p.len())
        };
        match result {
            Ok(false) => {
                // Not all of it yet: go on from where the kernel stopped.
                let entry = p.entry(key);
                self.pending.insert(key, p);
                self.backlog.push_back(entry);
            }
            Ok(true) => finished.push(Finished {
                tag: p.tag,
                result: Ok(()),
                buffer: p.buffer,
            }),
            Err(errno) => finished.push(Finished {
                tag: p.tag,
                result: Err(errno),
                buffer: p.buffer,
            }),
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let end = Instant::now() + DROP_WAIT;
        while !self.pending.is_empty() && Instant::now() < end {
            let _ = self
                .ring
                .submit_and_wait_with_timeout(1, Duration::from_millis(100));
            let _ = self.reap();
        }
        // A device that never answered: the kernel may still write into these buffers.
        for (_, p) in self.pending.drain() {
            std::mem::forget(p);
        }
    }
}

trait SubmitWithTimeout {
    fn submit_and_wait_with_timeout(&self, want: usize, timeout: Duration) -> io::Result<usize>;
}

impl SubmitWithTimeout for IoUring {
    fn submit_and_wait_with_timeout(&self, want: usize, timeout: Duration) -> io::Result<usize> {
        let ts = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&ts);
        self.submitter().submit_with_args(want, &args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::os::unix::fs::{FileExt, OpenOptionsExt};

    fn ring_or_skip() -> Option<Ring> {
        match Ring::new(8) {
            Ok(r) => Some(r),
            Err(e) => {
                println!("SKIPPED: io_uring is not available here: {e}");
                None
            }
        }
    }

    fn scratch(len: usize) -> (std::path::PathBuf, Arc<File>) {
        let path = std::env::temp_dir().join(format!(
            "gmp-uring-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let mut f = File::create(&path).unwrap();
        f.write_all(&(0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>())
            .unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .or_else(|_| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
            })
            .unwrap();
        (path, Arc::new(f))
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    fn wait(ring: &mut Ring, n: usize) -> Vec<Finished> {
        let mut all = Vec::new();
        let end = Instant::now() + Duration::from_secs(10);
        ring.submit();
        while all.len() < n {
            assert!(Instant::now() < end, "requests did not end");
            let mut fds = [nix::poll::PollFd::new(
                ring.fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
            all.extend(ring.reap());
        }
        all
    }

    #[test]
    fn reads_writes_and_flushes_end_with_their_buffers() {
        let Some(mut ring) = ring_or_skip() else {
            return;
        };
        let (path, file) = scratch(1 << 20);
        ring.start(
            1,
            file.clone(),
            Op::Read,
            4096,
            Buffer::Read(IoBuf::zeroed(8192)),
        );
        let data = Arc::new(IoBuf::from_slice(&[0x5a; 4096]));
        ring.start(
            2,
            file.clone(),
            Op::Write,
            65536,
            Buffer::Write(data.clone()),
        );
        ring.start(3, file.clone(), Op::Flush, 0, Buffer::None);
        let mut done = wait(&mut ring, 3);
        done.sort_by_key(|f| f.tag);
        assert!(done.iter().all(|f| f.result.is_ok()), "{done:?}");
        let Buffer::Read(read) = &done[0].buffer else {
            panic!("the read's buffer came back")
        };
        let want: Vec<u8> = (4096..4096 + 8192).map(|i| (i % 251) as u8).collect();
        assert_eq!(read.as_slice(), &want[..]);
        let mut back = IoBuf::zeroed(4096);
        file.read_exact_at(back.as_mut_slice(), 65536).unwrap();
        assert_eq!(back.as_slice(), &[0x5a; 4096][..]);
        assert_eq!(ring.in_flight(), 0);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn errors_and_mismatches_are_answers_not_panics() {
        let Some(mut ring) = ring_or_skip() else {
            return;
        };
        let (path, file) = scratch(8192);
        // Past the end of the file: the read finds nothing.
        ring.start(
            7,
            file.clone(),
            Op::Read,
            1 << 20,
            Buffer::Read(IoBuf::zeroed(4096)),
        );
        // A write without a write buffer.
        ring.start(8, file.clone(), Op::Write, 0, Buffer::None);
        let mut done = wait(&mut ring, 2);
        done.sort_by_key(|f| f.tag);
        assert_eq!(done[0].result, Err(libc::EIO));
        assert_eq!(done[1].result, Err(libc::EINVAL));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn more_requests_than_entries_wait_their_turn() {
        let Some(mut ring) = ring_or_skip() else {
            return;
        };
        let (path, file) = scratch(1 << 20);
        for i in 0..100u64 {
            ring.start(
                i,
                file.clone(),
                Op::Read,
                (i % 200) * 4096,
                Buffer::Read(IoBuf::zeroed(4096)),
            );
        }
        let done = wait(&mut ring, 100);
        assert!(done.iter().all(|f| f.result.is_ok()));
        let mut tags: Vec<u64> = done.iter().map(|f| f.tag).collect();
        tags.sort_unstable();
        assert_eq!(tags, (0..100).collect::<Vec<_>>());
        let _ = std::fs::remove_file(path);
    }
}

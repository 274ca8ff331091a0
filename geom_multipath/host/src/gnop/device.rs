//! A NOP provider's I/O half (`g_nop_start`): the [`NopDevice`] the workers call, which
//! counts, fails and delays requests as the geom's knobs say and passes the rest down
//! with the offset added. The knobs and counters live here, once, under "gnop lock".

use super::*;

/// The softc fields the I/O path and the control path share, under "gnop lock".
#[derive(Debug)]
pub(super) struct Softc {
    pub(super) mediasize: u64,
    pub(super) knobs: NopKnobs,
    pub(super) counters: NopCounters,
}

/// A NOP provider's I/O half (`g_nop_start`): counts each request, lets
/// `count_until_fail` requests through, fails reads and writes with their probability,
/// delays them with theirs (the calling worker sleeps), and passes the rest to the
/// provider below with the offset added. Shared by the class and the daemon's workers.
pub struct NopDevice {
    pub(super) name: String,
    pub(super) lower: Arc<dyn Device>,
    pub(super) offset: u64,
    pub(super) secsize: u32,
    pub(super) physpath: Option<String>,
    pub(super) softc: Mutex<Softc>,
    pub(super) rng: Mutex<u64>,
    pub(super) gone: AtomicBool,
}

/// Which of the two requests that can fail or be delayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dir {
    Read,
    Write,
}

/// What `g_nop_start` decided for a read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Complete it with this error, without passing it down.
    Fail(i32),
    /// Pass it down, after this delay if any.
    Pass(Option<Duration>),
}

impl NopDevice {
    #[cfg(test)]
    /// The live settings.
    pub fn knobs(&self) -> NopKnobs {
        self.lock().knobs
    }

    #[cfg(test)]
    /// The live counters.
    pub fn counters(&self) -> NopCounters {
        self.lock().counters
    }

    /// The provider's size now.
    pub fn mediasize(&self) -> u64 {
        self.lock().mediasize
    }

    /// `true` once the geom is destroyed: every request then fails with ENXIO.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Softc> {
        self.softc.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `arc4random() % 100`, from a per-device xorshift64* generator.
    pub(super) fn percent(&self) -> u32 {
        let mut state = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let mut x = *state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((r >> 32) as u32) % 100
    }

    /// `g_io_check` for a request with a range: `Ok(false)` for a zero-length one, which
    /// completes at once. A request reaching past the end fails with EIO (FreeBSD would
    /// shorten it, which a [`Device`] cannot report).
    pub(super) fn check_range(&self, offset: u64, len: u64) -> Result<bool, Errno> {
        if self.is_gone() {
            return Err(Errno::ENXIO);
        }
        let mediasize = self.mediasize();
        let ss = u64::from(self.secsize);
        if ss == 0 || mediasize == 0 {
            return Err(Errno::ENXIO);
        }
        if offset % ss != 0 || len % ss != 0 {
            return Err(Errno::EINVAL);
        }
        match offset.checked_add(len) {
            Some(end) if end <= mediasize => Ok(len != 0),
            _ => Err(Errno::EIO),
        }
    }

    /// The first half of `g_nop_start` for a read or write: count it, then decide.
    pub(super) fn start(&self, dir: Dir, len: u64) -> Verdict {
        let (failprob, delayprob, delaymsec, error) = {
            let mut sc = self.lock();
            match dir {
                Dir::Read => {
                    sc.counters.reads += 1;
                    sc.counters.readbytes = sc.counters.readbytes.wrapping_add(len);
                }
                Dir::Write => {
                    sc.counters.writes += 1;
                    sc.counters.wrotebytes = sc.counters.wrotebytes.wrapping_add(len);
                }
            }
            if sc.knobs.count_until_fail != 0 {
                sc.knobs.count_until_fail -= 1;
                (0, 0, 0, sc.knobs.error)
            } else {
                let k = sc.knobs;
                match dir {
                    Dir::Read => (k.rfailprob, k.rdelayprob, k.delaymsec, k.error),
                    Dir::Write => (k.wfailprob, k.wdelayprob, k.delaymsec, k.error),
                }
            }
        };
        if failprob > 0 && self.percent() < failprob {
            return Verdict::Fail(error);
        }
        if delayprob > 0 && self.percent() < delayprob {
            return Verdict::Pass(Some(Duration::from_millis(u64::from(delaymsec))));
        }
        Verdict::Pass(None)
    }

    /// Runs a read or write: checks, decides, waits, then `pass` sends it down at the
    /// lower offset. A failure with error 0 completes "successfully" without any I/O, as
    /// FreeBSD's `g_io_deliver(bp, 0)` with nothing done does.
    pub(super) fn run(
        &self,
        dir: Dir,
        offset: u64,
        len: usize,
        pass: impl FnOnce(u64) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        let len = len as u64;
        if !self.check_range(offset, len)? {
            return Ok(());
        }
        match self.start(dir, len) {
            Verdict::Fail(0) => Ok(()),
            Verdict::Fail(e) => Err(Errno(e)),
            Verdict::Pass(delay) => {
                if let Some(d) = delay {
                    std::thread::sleep(d);
                }
                pass(offset.checked_add(self.offset).ok_or(Errno::EIO)?)
            }
        }
    }
}

impl Device for NopDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), Errno> {
        let lower = &self.lower;
        self.run(Dir::Read, offset, buf.len(), |at| lower.read_at(buf, at))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), Errno> {
        let lower = &self.lower;
        self.run(Dir::Write, offset, buf.len(), |at| lower.write_at(buf, at))
    }

    fn flush(&self) -> Result<(), Errno> {
        if self.is_gone() {
            return Err(Errno::ENXIO);
        }
        self.lock().counters.flushes += 1;
        self.lower.flush()
    }

    fn discard(&self, offset: u64, len: u64) -> Result<(), Errno> {
        if !self.check_range(offset, len)? {
            return Ok(());
        }
        self.lock().counters.deletes += 1;
        self.lower
            .discard(offset.checked_add(self.offset).ok_or(Errno::EIO)?, len)
    }

    fn physpath(&self) -> Result<String, Errno> {
        if self.is_gone() {
            return Err(Errno::ENXIO);
        }
        self.lock().counters.getattrs += 1;
        match &self.physpath {
            Some(p) => Ok(p.clone()),
            None => self.lower.physpath(),
        }
    }
}

impl fmt::Debug for NopDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NopDevice")
            .field("name", &self.name)
            .field("offset", &self.offset)
            .field("secsize", &self.secsize)
            .field("physpath", &self.physpath)
            .field("softc", &*self.lock())
            .finish_non_exhaustive()
    }
}

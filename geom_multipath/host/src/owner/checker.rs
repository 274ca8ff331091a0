//! The path checker's probes, carried out: the core decides which path to probe and when
//! (`poll_check`), and what a probe's answer means (`handle_check_done`); the owner issues
//! each probe as a direct read of one block on the path's workers, with a buffer of its own
//! and a deadline (the path's `io_timeout`, else one check interval), and hands the answer
//! back.

use super::*;

impl Owner {
    /// Issues one probe of the checker: a direct read of one block on the path's workers,
    /// with a buffer of its own, answered through [`Owner::probe_answered`].
    pub(super) fn probe(&mut self, check: Check) {
        let name = self.paths.get(&check.path).cloned().unwrap_or_default();
        let device = if self.providers.is_fenced(&name) {
            None
        } else {
            self.providers.device(&name)
        };
        let Some(device) = device else {
            self.class.handle_check_done(check.path, Err(Errno::ENXIO));
            return;
        };
        let token = self.next_token;
        self.next_token += 1;
        let secs = match self.class.io_timeout(&name) {
            0 => self.class.tunables().check_interval().max(1),
            secs => secs,
        };
        let deadline = Instant::now() + Duration::from_secs(u64::from(secs));
        self.probes.insert(token, (check.path, deadline));
        let work = Work {
            token,
            attempt: 1,
            op: WorkOp::Read,
            offset: check.offset,
            buf: WorkBuf::Read(IoBuf::zeroed(check.length as usize)),
            device,
        };
        self.workers.submit(check.path, &name, work);
    }

    /// A probe's answer (or its deadline, as ENXIO) goes to the class; `false` if `token`
    /// is not a probe in flight.
    pub(super) fn probe_answered(&mut self, token: u64, result: Result<(), Errno>) -> bool {
        let Some((path, _)) = self.probes.remove(&token) else {
            return false;
        };
        self.class.handle_check_done(path, result);
        self.drain();
        true
    }
}

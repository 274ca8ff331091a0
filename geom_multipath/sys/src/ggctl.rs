//! `/dev/ggctl`, the GATE class's control device, as safe calls: one method per ioctl, each
//! one `ioctl(2)` on a structure built by [`crate::ggate`] and its errno. What to create,
//! when to retry and what an answer means is the caller's business.

use core::ffi::c_int;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use crate::ggate::{
    Finished, GGateCtlCancel, GGateCtlCreate, GGateCtlDestroy, GGateCtlIo, GGateCtlModify,
    GateSpec, Started, G_GATE_CMD_CANCEL, G_GATE_CMD_CREATE, G_GATE_CMD_DESTROY, G_GATE_CMD_DONE,
    G_GATE_CMD_MODIFY, G_GATE_CMD_START, PATH_GGCTL,
};

/// `-1` and errno as an error.
fn check(rc: c_int) -> io::Result<()> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An open `/dev/ggctl`. Every method may be called from any thread at once (START blocks
/// in the kernel until a request comes or the device goes).
#[derive(Debug)]
pub struct Ggctl {
    file: File,
}

impl Ggctl {
    /// Opens [`PATH_GGCTL`] read-write, as the ggate tools do (ENOENT: the class is not
    /// loaded).
    pub fn open() -> io::Result<Ggctl> {
        let file = OpenOptions::new().read(true).write(true).open(PATH_GGCTL)?;
        Ok(Ggctl { file })
    }

    /// `G_GATE_CMD_CREATE` of `spec` under its given name: the unit the kernel allocated.
    pub fn create(&self, spec: &GateSpec) -> io::Result<c_int> {
        let mut req = GGateCtlCreate::named(spec)?;
        // SAFETY: the descriptor is open for the call; `req` is a live, fully initialised
        // g_gate_ctl_create (no pointers inside), and G_GATE_CMD_CREATE is _IOWR of exactly
        // its size, so the kernel copies that many bytes in and back out of it.
        check(unsafe { libc::ioctl(self.file.as_raw_fd(), G_GATE_CMD_CREATE, &mut req) })?;
        Ok(req.gctl_unit)
    }

    /// `G_GATE_CMD_MODIFY`: unit `unit` is now `mediasize` bytes.
    pub fn resize(&self, unit: c_int, mediasize: u64) -> io::Result<()> {
        let mut req = GGateCtlModify::mediasize(unit, mediasize)?;
        // SAFETY: as for `create`: a live g_gate_ctl_modify without pointers, of exactly
        // the size G_GATE_CMD_MODIFY encodes.
        check(unsafe { libc::ioctl(self.file.as_raw_fd(), G_GATE_CMD_MODIFY, &mut req) })
    }

    /// `G_GATE_CMD_DESTROY` of unit `unit` (`force`: even while open).
    pub fn destroy(&self, unit: c_int, force: bool) -> io::Result<()> {
        let mut req = GGateCtlDestroy::unit(unit, force);
        // SAFETY: a live g_gate_ctl_destroy without pointers, of exactly the size
        // G_GATE_CMD_DESTROY encodes.
        check(unsafe { libc::ioctl(self.file.as_raw_fd(), G_GATE_CMD_DESTROY, &mut req) })
    }

    /// `G_GATE_CMD_CANCEL` of every request taken from the device called `name` (they go
    /// back to the head of its queue): the device's unit.
    pub fn cancel_all(&self, name: &str) -> io::Result<c_int> {
        let mut req = GGateCtlCancel::all_of(name)?;
        // SAFETY: a live g_gate_ctl_cancel without pointers, of exactly the size
        // G_GATE_CMD_CANCEL encodes.
        check(unsafe { libc::ioctl(self.file.as_raw_fd(), G_GATE_CMD_CANCEL, &mut req) })?;
        Ok(req.gctl_unit)
    }

    /// `G_GATE_CMD_START` on unit `unit`: blocks until a request is queued (or the device
    /// is being destroyed). A write's data lands in `buf`; a write longer than `buf` is
    /// answered with `error` = ENOMEM and `length` = the size it needs, and stays queued.
    pub fn start(&self, unit: c_int, buf: &mut [u8]) -> io::Result<Started> {
        let mut req = GGateCtlIo::start(unit, buf)?;
        // SAFETY: `req.gctl_data` points at `buf`, borrowed mutably for the whole call, and
        // `req.gctl_length` is `buf.len()`; the kernel copies a write out to gctl_data only
        // when its length is at most gctl_length (else it answers ENOMEM), so it writes
        // inside `buf`. The structure itself is live and of the size G_GATE_CMD_START
        // encodes.
        check(unsafe { libc::ioctl(self.file.as_raw_fd(), G_GATE_CMD_START, &mut req) })?;
        Ok(req.started())
    }

    /// `G_GATE_CMD_DONE` on unit `unit`: the request's outcome; a successful read's bytes
    /// are taken from `data` (at least `done.length` of them).
    pub fn done(&self, unit: c_int, done: &Finished, data: &[u8]) -> io::Result<()> {
        let mut req = GGateCtlIo::done(unit, done, data)?;
        // SAFETY: `GGateCtlIo::done` sets gctl_data only for a successful read, and then to
        // `data`, which it checked holds at least gctl_length bytes and which stays
        // borrowed for the call; the kernel copies exactly the request's length (equal to
        // gctl_length) *from* it and never writes there. The structure is live and of the
        // size G_GATE_CMD_DONE encodes.
        check(unsafe { libc::ioctl(self.file.as_raw_fd(), G_GATE_CMD_DONE, &mut req) })
    }
}

impl AsFd for Ggctl {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

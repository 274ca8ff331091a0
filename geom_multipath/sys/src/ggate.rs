//! The GATE class's control interface as a userland daemon sees it (`sys/geom/gate/g_gate.h`,
//! version 3): the request structures of the six ioctls on `/dev/ggctl`, laid out exactly as
//! C lays them out, their request numbers, and safe builders that fill them in the way
//! ggatel and hastd do.
//!
//! A GATE device is a GEOM provider whose I/O the kernel queues for a daemon: the daemon
//! creates it (`G_GATE_CMD_CREATE`), then loops on `G_GATE_CMD_START` (blocks until a
//! request is queued, hands back its command, offset and length, and for a write its data)
//! and `G_GATE_CMD_DONE` (the result, and for a read its data). `G_GATE_CMD_CANCEL` puts the
//! requests a dead daemon took back at the head of the queue, `G_GATE_CMD_MODIFY` resizes,
//! `G_GATE_CMD_DESTROY` ends the device (its queued requests fail with ENXIO, sleeping
//! STARTs return with `gctl_error` = ECANCELED).
//!
//! Pure data, compiled on every platform so the layouts and numbers are checked by tests on
//! Linux; only `ggctl` (FreeBSD) hands these structures to the kernel. The one pointer in
//! them (`gctl_data` of [`GGateCtlIo`]) is set by the builders from a borrowed slice, with
//! `gctl_length` its length, so a caller that keeps the slice borrowed for the call keeps
//! the kernel's copyout/copyin inside it.

use core::ffi::{c_char, c_int, c_uint, c_ulong, c_void};
use core::mem::size_of;
use std::io;

use crate::ioccom::iowr;

/// `G_GATE_VERSION`: every request carries it; the kernel refuses any other (EINVAL).
pub const G_GATE_VERSION: c_uint = 3;
/// `G_GATE_CLASS_NAME`.
pub const G_GATE_CLASS_NAME: &str = "GATE";
/// The control device (`/dev/` + `G_GATE_CTL_NAME`), root:wheel 0600, opened read-write.
pub const PATH_GGCTL: &str = "/dev/ggctl";
/// The kernel file to load when `/dev/ggctl` is missing (what the ggate tools kldload).
pub const GEOM_GATE_KLD: &str = "geom_gate";
/// The module name `modfind(2)` knows the loaded class by.
pub const GEOM_GATE_MODULE: &str = "g_gate";
/// `G_GATE_MAX_QUEUE_SIZE`: the largest queue limit (`gctl_maxcount`) the kernel keeps.
pub const G_GATE_MAX_QUEUE_SIZE: c_uint = 4096;
/// `G_GATE_INFOSIZE`: bytes of the free-text `gctl_info` (with its NUL).
pub const G_GATE_INFOSIZE: usize = 2048;
/// `NAME_MAX` (`sys/syslimits.h`): bytes of a provider name field (with its NUL).
pub const NAME_MAX: usize = 255;

/// `G_GATE_FLAG_READONLY`: writes, deletes and flushes fail with EPERM.
pub const G_GATE_FLAG_READONLY: c_uint = 0x0001;
/// `G_GATE_FLAG_WRITEONLY`: read opens fail with EPERM.
pub const G_GATE_FLAG_WRITEONLY: c_uint = 0x0002;
/// `G_GATE_UNIT_AUTO`: the kernel picks the unit, the name is `ggate<unit>`.
pub const G_GATE_UNIT_AUTO: c_int = -1;
/// `G_GATE_NAME_GIVEN`: `gctl_name` is the provider's whole name (`multipath/FRED` is
/// `/dev/multipath/FRED`); a unit number is still allocated and returned.
pub const G_GATE_NAME_GIVEN: c_int = -2;

/// `GG_MODIFY_MEDIASIZE`: [`GGateCtlModify`] changes the size.
pub const GG_MODIFY_MEDIASIZE: u32 = 0x01;
/// `GG_MODIFY_INFO`: it changes the info text.
pub const GG_MODIFY_INFO: u32 = 0x02;
/// `GG_MODIFY_READPROV`: it changes the direct-read provider.
pub const GG_MODIFY_READPROV: u32 = 0x04;
/// `GG_MODIFY_READOFFSET`: it changes the direct-read offset.
pub const GG_MODIFY_READOFFSET: u32 = 0x08;

/// `BIO_READ` (`sys/bio.h`): `gctl_cmd` of a read.
pub const BIO_READ: c_uint = 1;
/// `BIO_WRITE`.
pub const BIO_WRITE: c_uint = 2;
/// `BIO_DELETE`: forget the range (no data travels).
pub const BIO_DELETE: c_uint = 3;
/// `BIO_GETATTR` (the GATE class answers it itself, EOPNOTSUPP: it never reaches a daemon).
pub const BIO_GETATTR: c_uint = 4;
/// `BIO_FLUSH`: make what was written durable.
pub const BIO_FLUSH: c_uint = 5;
/// `BIO_SPEEDUP`: a hint to hurry (queued like a flush, no data).
pub const BIO_SPEEDUP: c_uint = 10;

/// `struct g_gate_ctl_create`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GGateCtlCreate {
    /// `gctl_version`: [`G_GATE_VERSION`].
    pub gctl_version: c_uint,
    /// `gctl_mediasize` (`off_t`): bytes, a positive multiple of the sector size.
    pub gctl_mediasize: i64,
    /// `gctl_sectorsize`: a power of two.
    pub gctl_sectorsize: c_uint,
    /// `gctl_flags`: `G_GATE_FLAG_READONLY`, `G_GATE_FLAG_WRITEONLY`.
    pub gctl_flags: c_uint,
    /// `gctl_maxcount`: the queue limit (0: none; capped at [`G_GATE_MAX_QUEUE_SIZE`]).
    pub gctl_maxcount: c_uint,
    /// `gctl_timeout`: seconds between checks for requests older than 5 s (0: never).
    pub gctl_timeout: c_uint,
    /// `gctl_name`: the provider name with [`G_GATE_NAME_GIVEN`].
    pub gctl_name: [c_char; NAME_MAX],
    /// `gctl_info`: free text shown by `ggatel list -v` and in the GEOM tree.
    pub gctl_info: [c_char; G_GATE_INFOSIZE],
    /// `gctl_readprov`: a provider to read from directly (empty: none).
    pub gctl_readprov: [c_char; NAME_MAX],
    /// `gctl_readoffset` (`off_t`): where in `gctl_readprov`.
    pub gctl_readoffset: i64,
    /// `gctl_unit`, in and out: [`G_GATE_NAME_GIVEN`] in, the allocated unit out.
    pub gctl_unit: c_int,
}

/// `struct g_gate_ctl_modify`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GGateCtlModify {
    /// `gctl_version`.
    pub gctl_version: c_uint,
    /// `gctl_unit`: the unit [`G_GATE_CMD_CREATE`] returned.
    pub gctl_unit: c_int,
    /// `gctl_modify`: which `GG_MODIFY_*` fields apply.
    pub gctl_modify: u32,
    /// `gctl_mediasize` (`off_t`).
    pub gctl_mediasize: i64,
    /// `gctl_info`.
    pub gctl_info: [c_char; G_GATE_INFOSIZE],
    /// `gctl_readprov`.
    pub gctl_readprov: [c_char; NAME_MAX],
    /// `gctl_readoffset` (`off_t`).
    pub gctl_readoffset: i64,
}

/// `struct g_gate_ctl_destroy`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GGateCtlDestroy {
    /// `gctl_version`.
    pub gctl_version: c_uint,
    /// `gctl_unit`: the unit, or [`G_GATE_NAME_GIVEN`] to look it up by `gctl_name`.
    pub gctl_unit: c_int,
    /// `gctl_force`: destroy even if the provider is open (else EBUSY).
    pub gctl_force: c_int,
    /// `gctl_name`.
    pub gctl_name: [c_char; NAME_MAX],
}

/// `struct g_gate_ctl_cancel`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GGateCtlCancel {
    /// `gctl_version`.
    pub gctl_version: c_uint,
    /// `gctl_unit`, in and out: the unit, or [`G_GATE_NAME_GIVEN`] (then the unit comes
    /// back).
    pub gctl_unit: c_int,
    /// `gctl_seq` (`uintptr_t`): the request to put back, 0 for all.
    pub gctl_seq: usize,
    /// `gctl_name`.
    pub gctl_name: [c_char; NAME_MAX],
}

/// `struct g_gate_ctl_io`: one START (out: a request) or DONE (in: its result).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GGateCtlIo {
    /// `gctl_version`.
    pub gctl_version: c_uint,
    /// `gctl_unit`.
    pub gctl_unit: c_int,
    /// `gctl_seq` (`uintptr_t`): the request's number (from 1), START out, DONE in.
    pub gctl_seq: usize,
    /// `gctl_cmd`: `BIO_*`.
    pub gctl_cmd: c_uint,
    /// `gctl_offset` (`off_t`).
    pub gctl_offset: i64,
    /// `gctl_length` (`off_t`): START in, the buffer's size; START out, the request's
    /// length (for an ENOMEM answer, the size a write needs).
    pub gctl_length: i64,
    /// `gctl_data`: START, where a write's bytes go; DONE, where a read's bytes come from.
    pub gctl_data: *mut c_void,
    /// `gctl_error`: START out (0, ENOMEM, ECANCELED); DONE in (the request's errno).
    pub gctl_error: c_int,
}

/// `G_GATE_CMD_CREATE`: `_IOWR('m', 0, struct g_gate_ctl_create)`.
pub const G_GATE_CMD_CREATE: c_ulong = iowr(b'm', 0, size_of::<GGateCtlCreate>());
/// `G_GATE_CMD_MODIFY`: `_IOWR('m', 1, struct g_gate_ctl_modify)`.
pub const G_GATE_CMD_MODIFY: c_ulong = iowr(b'm', 1, size_of::<GGateCtlModify>());
/// `G_GATE_CMD_DESTROY`: `_IOWR('m', 2, struct g_gate_ctl_destroy)`.
pub const G_GATE_CMD_DESTROY: c_ulong = iowr(b'm', 2, size_of::<GGateCtlDestroy>());
/// `G_GATE_CMD_CANCEL`: `_IOWR('m', 3, struct g_gate_ctl_cancel)`.
pub const G_GATE_CMD_CANCEL: c_ulong = iowr(b'm', 3, size_of::<GGateCtlCancel>());
/// `G_GATE_CMD_START`: `_IOWR('m', 4, struct g_gate_ctl_io)`.
pub const G_GATE_CMD_START: c_ulong = iowr(b'm', 4, size_of::<GGateCtlIo>());
/// `G_GATE_CMD_DONE`: `_IOWR('m', 5, struct g_gate_ctl_io)`.
pub const G_GATE_CMD_DONE: c_ulong = iowr(b'm', 5, size_of::<GGateCtlIo>());

/// Every request number of the class: what a sandboxed daemon's `/dev/ggctl` descriptor
/// is limited to.
pub const G_GATE_CMDS: [c_ulong; 6] = [
    G_GATE_CMD_CREATE,
    G_GATE_CMD_MODIFY,
    G_GATE_CMD_DESTROY,
    G_GATE_CMD_CANCEL,
    G_GATE_CMD_START,
    G_GATE_CMD_DONE,
];

fn invalid() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// Copies `text` into the C string field `field`: ENAMETOOLONG if it does not fit with its
/// NUL, EINVAL if it holds a NUL itself.
fn put_name(field: &mut [c_char], text: &str) -> io::Result<()> {
    if text.as_bytes().contains(&0) {
        return Err(invalid());
    }
    if text.len() >= field.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (dst, &src) in field.iter_mut().zip(text.as_bytes()) {
        *dst = src as c_char;
    }
    field[text.len()] = 0;
    Ok(())
}

/// Copies as much of `text` as fits (cut at a character boundary, NULs dropped) into the C
/// string field `field`, as the kernel's `strlcpy` of the info text would keep it.
fn put_text(field: &mut [c_char], text: &str) {
    let mut len = 0;
    for ch in text.chars().filter(|&c| c != '\0') {
        let mut utf8 = [0u8; 4];
        let bytes = ch.encode_utf8(&mut utf8).as_bytes();
        if len + bytes.len() >= field.len() {
            break;
        }
        for &b in bytes {
            field[len] = b as c_char;
            len += 1;
        }
    }
    field[len] = 0;
}

/// The bytes of a C string field, up to its NUL.
pub fn field_bytes(field: &[c_char]) -> Vec<u8> {
    field
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect()
}

/// A size as `off_t`; EINVAL beyond its range.
fn off_t(value: u64) -> io::Result<i64> {
    i64::try_from(value).map_err(|_| invalid())
}

/// What a new GATE device is to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateSpec {
    /// The provider name (`multipath/FRED`), used with [`G_GATE_NAME_GIVEN`].
    pub name: String,
    /// Bytes.
    pub mediasize: u64,
    /// Bytes per sector.
    pub sectorsize: u32,
    /// `G_GATE_FLAG_*`.
    pub flags: c_uint,
    /// Free text for `ggatel list -v` and the GEOM tree (cut to fit).
    pub info: String,
}

impl GGateCtlCreate {
    /// A CREATE of `spec` under its given name, the rest as ggatel leaves it: no queue
    /// limit, no timeout guard, no direct-read provider.
    pub fn named(spec: &GateSpec) -> io::Result<GGateCtlCreate> {
        let mut c = GGateCtlCreate {
            gctl_version: G_GATE_VERSION,
            gctl_mediasize: off_t(spec.mediasize)?,
            gctl_sectorsize: spec.sectorsize,
            gctl_flags: spec.flags,
            gctl_maxcount: 0,
            gctl_timeout: 0,
            gctl_name: [0; NAME_MAX],
            gctl_info: [0; G_GATE_INFOSIZE],
            gctl_readprov: [0; NAME_MAX],
            gctl_readoffset: 0,
            gctl_unit: G_GATE_NAME_GIVEN,
        };
        if spec.name.is_empty() {
            return Err(invalid());
        }
        put_name(&mut c.gctl_name, &spec.name)?;
        put_text(&mut c.gctl_info, &spec.info);
        Ok(c)
    }
}

impl GGateCtlModify {
    /// A MODIFY that changes only unit `unit`'s size.
    pub fn mediasize(unit: c_int, mediasize: u64) -> io::Result<GGateCtlModify> {
        Ok(GGateCtlModify {
            gctl_version: G_GATE_VERSION,
            gctl_unit: unit,
            gctl_modify: GG_MODIFY_MEDIASIZE,
            gctl_mediasize: off_t(mediasize)?,
            gctl_info: [0; G_GATE_INFOSIZE],
            gctl_readprov: [0; NAME_MAX],
            gctl_readoffset: 0,
        })
    }
}

impl GGateCtlDestroy {
    /// A DESTROY of unit `unit`; `force` even while the provider is open.
    pub fn unit(unit: c_int, force: bool) -> GGateCtlDestroy {
        GGateCtlDestroy {
            gctl_version: G_GATE_VERSION,
            gctl_unit: unit,
            gctl_force: c_int::from(force),
            gctl_name: [0; NAME_MAX],
        }
    }
}

impl GGateCtlCancel {
    /// A CANCEL of every request taken from the device called `name` (the unit comes
    /// back in `gctl_unit`).
    pub fn all_of(name: &str) -> io::Result<GGateCtlCancel> {
        let mut c = GGateCtlCancel {
            gctl_version: G_GATE_VERSION,
            gctl_unit: G_GATE_NAME_GIVEN,
            gctl_seq: 0,
            gctl_name: [0; NAME_MAX],
        };
        if name.is_empty() {
            return Err(invalid());
        }
        put_name(&mut c.gctl_name, name)?;
        Ok(c)
    }
}

/// One request as START hands it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Started {
    /// Its number, to name it in DONE.
    pub seq: usize,
    /// `BIO_*`.
    pub cmd: c_uint,
    /// Byte offset.
    pub offset: i64,
    /// Bytes (with `error` = ENOMEM: the buffer size a write needs).
    pub length: i64,
    /// 0: a request to serve. ENOMEM: a write longer than the buffer waits (retry with a
    /// bigger one). ECANCELED: the device is being destroyed and nothing is left.
    pub error: c_int,
}

/// A request's outcome, for DONE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The request's number.
    pub seq: usize,
    /// Its `BIO_*` (as START gave it).
    pub cmd: c_uint,
    /// Its offset.
    pub offset: i64,
    /// Its length.
    pub length: i64,
    /// 0 or an errno (EAGAIN would put the request back in the queue).
    pub error: c_int,
}

impl GGateCtlIo {
    /// A START on unit `unit` whose write data may go to `buf` (`gctl_length` is its
    /// length, `gctl_data` points at it).
    pub fn start(unit: c_int, buf: &mut [u8]) -> io::Result<GGateCtlIo> {
        Ok(GGateCtlIo {
            gctl_version: G_GATE_VERSION,
            gctl_unit: unit,
            gctl_seq: 0,
            gctl_cmd: 0,
            gctl_offset: 0,
            gctl_length: off_t(buf.len() as u64)?,
            gctl_data: buf.as_mut_ptr().cast(),
            gctl_error: 0,
        })
    }

    /// What a START answered.
    pub fn started(&self) -> Started {
        Started {
            seq: self.gctl_seq,
            cmd: self.gctl_cmd,
            offset: self.gctl_offset,
            length: self.gctl_length,
            error: self.gctl_error,
        }
    }

    /// A DONE of `done` on unit `unit`. A successful read's bytes come from `data`, which
    /// must hold at least `done.length` of them (the kernel copies exactly the request's
    /// length); EINVAL otherwise. For anything else `data` is not used and may be empty.
    pub fn done(unit: c_int, done: &Finished, data: &[u8]) -> io::Result<GGateCtlIo> {
        let needs_data = done.cmd == BIO_READ && done.error == 0;
        let length = usize::try_from(done.length).map_err(|_| invalid())?;
        if needs_data && data.len() < length {
            return Err(invalid());
        }
        Ok(GGateCtlIo {
            gctl_version: G_GATE_VERSION,
            gctl_unit: unit,
            gctl_seq: done.seq,
            gctl_cmd: done.cmd,
            gctl_offset: done.offset,
            gctl_length: done.length,
            // The kernel only reads through this pointer in DONE (copyin).
            gctl_data: if needs_data {
                data.as_ptr().cast_mut().cast()
            } else {
                core::ptr::null_mut()
            },
            gctl_error: done.error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn structures_have_the_lp64_layout_of_g_gate_h() {
        assert_eq!(size_of::<GGateCtlCreate>(), 2608);
        assert_eq!(offset_of!(GGateCtlCreate, gctl_version), 0);
        assert_eq!(offset_of!(GGateCtlCreate, gctl_mediasize), 8);
        assert_eq!(offset_of!(GGateCtlCreate, gctl_sectorsize), 16);
        assert_eq!(offset_of!(GGateCtlCreate, gctl_flags), 20);
        assert_eq!(offset_of!(GGateCtlCreate, gctl_maxcount), 24);
        assert_eq!(offset_of!(GGateCtlCreate, gctl_timeout), 28);
        assert_eq!(offset_of!(GGateCtlCreate, gctl_name), 32);
        assert_eq!(offset_of!(GGateCtlCreate, gctl_info), 287);
        assert_eq!(offset_of!(GGateCtlCreate, gctl_readprov), 2335);
        assert_eq!(offset_of!(GGateCtlCreate, gctl_readoffset), 2592);
        assert_eq!(offset_of!(GGateCtlCreate, gctl_unit), 2600);

        assert_eq!(size_of::<GGateCtlModify>(), 2336);
        assert_eq!(offset_of!(GGateCtlModify, gctl_unit), 4);
        assert_eq!(offset_of!(GGateCtlModify, gctl_modify), 8);
        assert_eq!(offset_of!(GGateCtlModify, gctl_mediasize), 16);
        assert_eq!(offset_of!(GGateCtlModify, gctl_info), 24);
        assert_eq!(offset_of!(GGateCtlModify, gctl_readprov), 2072);
        assert_eq!(offset_of!(GGateCtlModify, gctl_readoffset), 2328);

        assert_eq!(size_of::<GGateCtlDestroy>(), 268);
        assert_eq!(offset_of!(GGateCtlDestroy, gctl_unit), 4);
        assert_eq!(offset_of!(GGateCtlDestroy, gctl_force), 8);
        assert_eq!(offset_of!(GGateCtlDestroy, gctl_name), 12);

        assert_eq!(size_of::<GGateCtlCancel>(), 272);
        assert_eq!(offset_of!(GGateCtlCancel, gctl_unit), 4);
        assert_eq!(offset_of!(GGateCtlCancel, gctl_seq), 8);
        assert_eq!(offset_of!(GGateCtlCancel, gctl_name), 16);

        assert_eq!(size_of::<GGateCtlIo>(), 56);
        assert_eq!(offset_of!(GGateCtlIo, gctl_unit), 4);
        assert_eq!(offset_of!(GGateCtlIo, gctl_seq), 8);
        assert_eq!(offset_of!(GGateCtlIo, gctl_cmd), 16);
        assert_eq!(offset_of!(GGateCtlIo, gctl_offset), 24);
        assert_eq!(offset_of!(GGateCtlIo, gctl_length), 32);
        assert_eq!(offset_of!(GGateCtlIo, gctl_data), 40);
        assert_eq!(offset_of!(GGateCtlIo, gctl_error), 48);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn request_numbers_are_iowr_m_0_to_5_as_on_amd64() {
        assert_eq!(G_GATE_CMD_CREATE, 0xCA30_6D00);
        assert_eq!(G_GATE_CMD_MODIFY, 0xC920_6D01);
        assert_eq!(G_GATE_CMD_DESTROY, 0xC10C_6D02);
        assert_eq!(G_GATE_CMD_CANCEL, 0xC110_6D03);
        assert_eq!(G_GATE_CMD_START, 0xC038_6D04);
        assert_eq!(G_GATE_CMD_DONE, 0xC038_6D05);
        let mut all = G_GATE_CMDS.to_vec();
        all.dedup();
        assert_eq!(all.len(), 6);
    }

    fn spec(name: &str) -> GateSpec {
        GateSpec {
            name: name.into(),
            mediasize: 1 << 20,
            sectorsize: 512,
            flags: 0,
            info: "gmultipathd".into(),
        }
    }

    #[test]
    fn create_names_the_device_and_asks_for_the_name_given() {
        let c = GGateCtlCreate::named(&spec("multipath/FRED")).unwrap();
        assert_eq!(c.gctl_version, 3);
        assert_eq!(c.gctl_unit, G_GATE_NAME_GIVEN);
        assert_eq!(c.gctl_mediasize, 1 << 20);
        assert_eq!(c.gctl_sectorsize, 512);
        assert_eq!((c.gctl_maxcount, c.gctl_timeout), (0, 0));
        assert_eq!(field_bytes(&c.gctl_name), b"multipath/FRED");
        assert_eq!(field_bytes(&c.gctl_info), b"gmultipathd");
        assert_eq!(field_bytes(&c.gctl_readprov), b"");
        assert_eq!(c.gctl_readoffset, 0);
    }

    #[test]
    fn names_must_fit_with_their_nul_and_hold_none() {
        let longest = "x".repeat(NAME_MAX - 1);
        assert!(GGateCtlCreate::named(&spec(&longest)).is_ok());
        let too_long = "x".repeat(NAME_MAX);
        assert_eq!(
            GGateCtlCreate::named(&spec(&too_long))
                .err()
                .and_then(|e| e.raw_os_error()),
            Some(libc::ENAMETOOLONG)
        );
        assert!(GGateCtlCreate::named(&spec("a\0b")).is_err());
        assert!(GGateCtlCreate::named(&spec("")).is_err());
        assert!(GGateCtlCancel::all_of(&too_long).is_err());
        let mut huge = spec("multipath/FRED");
        huge.mediasize = u64::MAX;
        assert!(GGateCtlCreate::named(&huge).is_err(), "beyond off_t");
    }

    #[test]
    fn info_is_cut_to_fit_at_a_character_boundary() {
        let mut s = spec("multipath/FRED");
        s.info = "é".repeat(G_GATE_INFOSIZE);
        let c = GGateCtlCreate::named(&s).unwrap();
        let kept = field_bytes(&c.gctl_info);
        assert!(kept.len() < G_GATE_INFOSIZE);
        assert_eq!(kept.len() % 2, 0, "no half characters");
        assert!(std::str::from_utf8(&kept).is_ok());
    }

    #[test]
    fn start_points_at_the_buffer_and_offers_its_length() {
        let mut buf = vec![0u8; 4096];
        let io = GGateCtlIo::start(7, &mut buf).unwrap();
        assert_eq!(io.gctl_version, 3);
        assert_eq!(io.gctl_unit, 7);
        assert_eq!(io.gctl_length, 4096);
        assert_eq!(io.gctl_data as usize, buf.as_ptr() as usize);
        assert_eq!(io.gctl_error, 0);
    }

    #[test]
    fn done_passes_a_reads_data_only_when_it_succeeded_and_fits() {
        let data = vec![1u8; 1024];
        let ok = Finished {
            seq: 9,
            cmd: BIO_READ,
            offset: 512,
            length: 1024,
            error: 0,
        };
        let io = GGateCtlIo::done(3, &ok, &data).unwrap();
        assert_eq!(
            (io.gctl_seq, io.gctl_cmd, io.gctl_offset),
            (9, BIO_READ, 512)
        );
        assert_eq!(io.gctl_length, 1024);
        assert_eq!(io.gctl_data as usize, data.as_ptr() as usize);
        assert!(
            GGateCtlIo::done(3, &ok, &data[..512]).is_err(),
            "the kernel would copy past the end"
        );
        let failed = Finished { error: 5, ..ok };
        let io = GGateCtlIo::done(3, &failed, &[]).unwrap();
        assert!(io.gctl_data.is_null());
        assert_eq!(io.gctl_error, 5);
        let write = Finished {
            cmd: BIO_WRITE,
            ..ok
        };
        assert!(GGateCtlIo::done(3, &write, &[])
            .unwrap()
            .gctl_data
            .is_null());
        let negative = Finished { length: -1, ..ok };
        assert!(GGateCtlIo::done(3, &negative, &data).is_err());
    }

    #[test]
    fn modify_destroy_and_cancel_say_what_they_change() {
        let m = GGateCtlModify::mediasize(4, 8192).unwrap();
        assert_eq!((m.gctl_unit, m.gctl_modify, m.gctl_mediasize), (4, 1, 8192));
        let d = GGateCtlDestroy::unit(4, true);
        assert_eq!((d.gctl_version, d.gctl_unit, d.gctl_force), (3, 4, 1));
        let c = GGateCtlCancel::all_of("multipath/FRED").unwrap();
        assert_eq!((c.gctl_unit, c.gctl_seq), (G_GATE_NAME_GIVEN, 0));
        assert_eq!(field_bytes(&c.gctl_name), b"multipath/FRED");
    }
}

//! The GEOM control request as the kernel reads it: `struct gctl_req` and
//! `struct gctl_req_arg` from `sys/geom/geom_ctl.h`, laid out exactly as C lays them out,
//! and the request number of the `GEOM_CTL` ioctl on `/dev/geom.ctl`.
//!
//! [`Arg`] is one parameter as libgeom's `gctl_add_param` keeps it (its name with the NUL
//! `strdup` copies, its flags, its value buffer). [`Frame`] borrows a slice of them and an
//! error buffer and wires up the raw C structures that point into them, the way
//! `gctl_issue` fills in `version`, `lerror` and `error` before the ioctl. Building a frame
//! is safe code and is tested on every platform; only `freebsd::geom_ctl` hands one
//! to the kernel.
//!
//! The invariant a frame keeps: every pointer in it points into memory it borrows mutably
//! for its whole life, with the length stored next to it, so the kernel may read every
//! value and write every value flagged [`GCTL_PARAM_WR`] (and up to `lerror` bytes of the
//! error buffer) for as long as the frame exists.

use core::ffi::{c_char, c_int, c_uint, c_ulong, c_void};
use core::marker::PhantomData;
use std::io;

use crate::ioccom::iow;

/// `GCTL_VERSION`: the version of this interface libgeom and the kernel agree on.
pub const GCTL_VERSION: c_uint = 2;
/// `GCTL_PARAM_RD`: the kernel may read the value.
pub const GCTL_PARAM_RD: c_int = 1;
/// `GCTL_PARAM_WR`: the kernel may write the value (an output buffer).
pub const GCTL_PARAM_WR: c_int = 2;
/// `GCTL_PARAM_RW`.
pub const GCTL_PARAM_RW: c_int = GCTL_PARAM_RD | GCTL_PARAM_WR;
/// `GCTL_PARAM_ASCII`: the value is a NUL-terminated string.
pub const GCTL_PARAM_ASCII: c_int = 4;
/// `GEOM_CTL_ARG_MAX`: the most parameters the kernel accepts in one request.
pub const GEOM_CTL_ARG_MAX: usize = 2048;
/// The control device libgeom opens (`_PATH_DEV PATH_GEOM_CTL`), read-only.
pub const PATH_GEOM_CTL: &str = "/dev/geom.ctl";
/// The size of the error buffer `gctl_issue` allocates (`BUFSIZ`); it passes one byte
/// less as `lerror`, so the text always ends in a NUL.
pub const ERROR_BUFSIZ: usize = 1024;

/// `struct gctl_req_arg`.
#[repr(C)]
#[derive(Debug)]
pub struct GctlReqArg {
    /// `nlen`: the name's length including its NUL.
    pub nlen: c_uint,
    /// `name`.
    pub name: *mut c_char,
    /// `offset` (unused, 0).
    pub offset: i64,
    /// `flag`: `GCTL_PARAM_*` bits.
    pub flag: c_int,
    /// `len`: the value's length in bytes.
    pub len: c_int,
    /// `value`.
    pub value: *mut c_void,
    /// `kvalue` (the kernel's copy; NULL from userland).
    pub kvalue: *mut c_void,
}

/// `struct gctl_req`.
#[repr(C)]
#[derive(Debug)]
pub struct GctlReq {
    /// `version`: [`GCTL_VERSION`].
    pub version: c_uint,
    /// `serial` (unused, 0).
    pub serial: c_uint,
    /// `narg`: the number of parameters.
    pub narg: c_uint,
    /// `arg`: the parameters.
    pub arg: *mut GctlReqArg,
    /// `lerror`: how many bytes of `error` the kernel may write.
    pub lerror: c_uint,
    /// `error`: where the kernel writes its error text.
    pub error: *mut c_char,
    /// `reqt` (unused, NULL).
    pub reqt: *mut c_void,
    /// `nerror` (kernel only; the ioctl never copies the structure back).
    pub nerror: c_int,
    /// `serror` (kernel only).
    pub serror: *mut c_void,
}

/// `GEOM_CTL`: `_IOW('G', GCTL_VERSION, struct gctl_req)`.
pub const GEOM_CTL: c_ulong = iow(b'G', GCTL_VERSION as u8, core::mem::size_of::<GctlReq>());

/// One parameter of a request, owned the way libgeom owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    name: Vec<u8>,
    flag: c_int,
    value: Vec<u8>,
}

impl Arg {
    /// A parameter called `name` (cut at its first NUL, as `strdup` would, and given its
    /// NUL), with `GCTL_PARAM_*` bits `flag` and the value bytes `value`, sent as they are
    /// (an ASCII value must carry its own NUL).
    pub fn new(name: &[u8], flag: c_int, value: Vec<u8>) -> Arg {
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        let mut owned = Vec::with_capacity(end + 1);
        owned.extend_from_slice(&name[..end]);
        owned.push(0);
        Arg {
            name: owned,
            flag,
            value,
        }
    }

    /// The name without its NUL.
    pub fn name(&self) -> &[u8] {
        &self.name[..self.name.len() - 1]
    }

    /// The name with its NUL, as the kernel receives it (`nlen` bytes).
    pub fn name_with_nul(&self) -> &[u8] {
        &self.name
    }

    /// The `GCTL_PARAM_*` bits.
    pub fn flag(&self) -> c_int {
        self.flag
    }

    /// The value bytes (after the ioctl: what the kernel wrote, for a writable one).
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The value bytes, for a test standing in for the kernel.
    pub fn value_mut(&mut self) -> &mut [u8] {
        &mut self.value
    }
}

/// The raw request for one ioctl, pointing into parameters and an error buffer it
/// borrows.
#[derive(Debug)]
pub struct Frame<'a> {
    args: Vec<GctlReqArg>,
    req: GctlReq,
    _borrows: PhantomData<&'a mut [u8]>,
}

/// `EINVAL`, the answer for a request C could not even express.
fn invalid() -> io::Error {
    io::Error::from_raw_os_error(22)
}

impl<'a> Frame<'a> {
    /// Wires `args` and `error` into a `gctl_req` as `gctl_issue` does: `version` =
    /// [`GCTL_VERSION`], `lerror` = the buffer's length minus one, everything else zero.
    /// Fails with EINVAL only for sizes C's `int`/`u_int` fields cannot hold, or an error
    /// buffer too short to hold any text; what the kernel thinks of the parameters is the
    /// kernel's business.
    pub fn new(args: &'a mut [Arg], error: &'a mut [u8]) -> io::Result<Frame<'a>> {
        if error.len() < 2 {
            return Err(invalid());
        }
        let narg = c_uint::try_from(args.len()).map_err(|_| invalid())?;
        let lerror = c_uint::try_from(error.len() - 1).map_err(|_| invalid())?;
        let mut raw = Vec::with_capacity(args.len());
        for a in args.iter_mut() {
            raw.push(GctlReqArg {
                nlen: c_uint::try_from(a.name.len()).map_err(|_| invalid())?,
                name: a.name.as_mut_ptr().cast(),
                offset: 0,
                flag: a.flag,
                len: c_int::try_from(a.value.len()).map_err(|_| invalid())?,
                value: a.value.as_mut_ptr().cast(),
                kvalue: core::ptr::null_mut(),
            });
        }
        let mut frame = Frame {
            args: raw,
            req: GctlReq {
                version: GCTL_VERSION,
                serial: 0,
                narg,
                arg: core::ptr::null_mut(),
                lerror,
                error: error.as_mut_ptr().cast(),
                reqt: core::ptr::null_mut(),
                nerror: 0,
                serror: core::ptr::null_mut(),
            },
            _borrows: PhantomData,
        };
        // The Vec's heap buffer does not move when the frame does.
        frame.req.arg = frame.args.as_mut_ptr();
        Ok(frame)
    }

    /// The request, for reading.
    pub fn req(&self) -> &GctlReq {
        &self.req
    }

    /// The raw parameter array, for reading.
    pub fn raw_args(&self) -> &[GctlReqArg] {
        &self.args
    }

    /// The pointer the ioctl takes. It stays valid while `self` is neither moved nor
    /// dropped.
    pub fn as_mut_ptr(&mut self) -> *mut GctlReq {
        &mut self.req
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn structures_have_the_lp64_layout_of_geom_ctl_h() {
        assert_eq!(size_of::<GctlReqArg>(), 48);
        assert_eq!(offset_of!(GctlReqArg, nlen), 0);
        assert_eq!(offset_of!(GctlReqArg, name), 8);
        assert_eq!(offset_of!(GctlReqArg, offset), 16);
        assert_eq!(offset_of!(GctlReqArg, flag), 24);
        assert_eq!(offset_of!(GctlReqArg, len), 28);
        assert_eq!(offset_of!(GctlReqArg, value), 32);
        assert_eq!(offset_of!(GctlReqArg, kvalue), 40);

        assert_eq!(size_of::<GctlReq>(), 64);
        assert_eq!(offset_of!(GctlReq, version), 0);
        assert_eq!(offset_of!(GctlReq, serial), 4);
        assert_eq!(offset_of!(GctlReq, narg), 8);
        assert_eq!(offset_of!(GctlReq, arg), 16);
        assert_eq!(offset_of!(GctlReq, lerror), 24);
        assert_eq!(offset_of!(GctlReq, error), 32);
        assert_eq!(offset_of!(GctlReq, reqt), 40);
        assert_eq!(offset_of!(GctlReq, nerror), 48);
        assert_eq!(offset_of!(GctlReq, serror), 56);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn geom_ctl_is_iow_g_2_of_64_bytes() {
        assert_eq!(GEOM_CTL, 0x8040_4702);
    }

    #[test]
    fn names_get_their_nul_and_stop_at_an_inner_one() {
        let a = Arg::new(
            b"class",
            GCTL_PARAM_RD | GCTL_PARAM_ASCII,
            b"MULTIPATH\0".to_vec(),
        );
        assert_eq!(a.name_with_nul(), b"class\0");
        assert_eq!(a.name(), b"class");
        let cut = Arg::new(b"arg0\0junk", GCTL_PARAM_RD, vec![1, 0, 0, 0]);
        assert_eq!(cut.name_with_nul(), b"arg0\0");
    }

    #[test]
    fn a_frame_points_into_what_it_borrows() {
        let mut args = vec![
            Arg::new(
                b"verb",
                GCTL_PARAM_RD | GCTL_PARAM_ASCII,
                b"getactive\0".to_vec(),
            ),
            Arg::new(b"output", GCTL_PARAM_RW | GCTL_PARAM_ASCII, vec![0; 4096]),
        ];
        let expected: Vec<(usize, usize)> = args
            .iter()
            .map(|a| (a.name.as_ptr() as usize, a.value.as_ptr() as usize))
            .collect();
        let mut error = vec![0u8; ERROR_BUFSIZ];
        let error_ptr = error.as_ptr() as usize;
        let mut frame = Frame::new(&mut args, &mut error).unwrap();
        let req_ptr = frame.as_mut_ptr() as usize;
        assert_eq!(req_ptr, frame.req() as *const GctlReq as usize);
        let req = frame.req();
        assert_eq!(req.version, 2);
        assert_eq!(req.serial, 0);
        assert_eq!(req.narg, 2);
        assert_eq!(req.lerror, 1023);
        assert_eq!(req.error as usize, error_ptr);
        assert!(req.reqt.is_null() && req.serror.is_null());
        assert_eq!(req.nerror, 0);
        assert_eq!(req.arg as usize, frame.raw_args().as_ptr() as usize);
        let raw = frame.raw_args();
        assert_eq!((raw[0].nlen, raw[0].len, raw[0].flag), (5, 10, 5));
        assert_eq!((raw[1].nlen, raw[1].len, raw[1].flag), (7, 4096, 7));
        for (r, (name, value)) in raw.iter().zip(&expected) {
            assert_eq!(r.name as usize, *name);
            assert_eq!(r.value as usize, *value);
            assert_eq!(r.offset, 0);
            assert!(r.kvalue.is_null());
        }
    }

    #[test]
    fn moving_a_frame_keeps_its_arg_pointer() {
        let mut args = vec![Arg::new(b"nargs", GCTL_PARAM_RD, vec![0; 4])];
        let mut error = vec![0u8; 16];
        let frame = Frame::new(&mut args, &mut error).unwrap();
        let before = frame.req().arg as usize;
        let moved = Box::new(frame);
        assert_eq!(moved.req().arg as usize, before);
        assert_eq!(moved.req().arg as usize, moved.raw_args().as_ptr() as usize);
    }

    #[test]
    fn an_error_buffer_must_hold_some_text() {
        let mut args: Vec<Arg> = Vec::new();
        let mut one = [0u8; 1];
        assert_eq!(
            Frame::new(&mut args, &mut one).unwrap_err().raw_os_error(),
            Some(22)
        );
        let mut two = [0u8; 2];
        assert_eq!(Frame::new(&mut args, &mut two).unwrap().req().lerror, 1);
    }
}

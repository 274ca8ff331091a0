//! libgeom's half of a control request on FreeBSD (`lib/libgeom/geom_ctl.c`): the core's
//! [`Request`] turned into the parameter array `gctl_add_param` builds, and the outcome of
//! the `GEOM_CTL` ioctl turned into what `gctl_issue` answers.
//!
//! Everything here is platform-independent and tested on Linux; the one call that needs
//! FreeBSD, `geom_multipath_sys::freebsd::geom_ctl`, is passed in by the kernel backend
//! (`crate::freebsd`). What it keeps from libgeom:
//!
//! * parameters in the order they were added, each name with its NUL (`nlen` = length + 1),
//!   each value sent as built (ASCII values carry their NUL; numbers are native-endian
//!   `int`/`intmax_t`/`uint32_t`), flags `GCTL_PARAM_RD`/`WR`/`ASCII` as the request says;
//! * an error buffer of `BUFSIZ` (1024) zeroed bytes, of which the kernel may fill 1023;
//! * the answer: the kernel's text if it wrote one (even when the ioctl itself succeeded),
//!   else `strerror(errno)` if the open or the ioctl failed, else success, and only then the
//!   `output` parameter's text (the kernel copies writable parameters back only when the
//!   request succeeded, and a caller must not read them otherwise).

use std::io;

use geom_multipath::ctl::{PARAM_ASCII, PARAM_RD, PARAM_WR};
use geom_multipath::wire::Reply;
use geom_multipath::Request;
use geom_multipath_sys::gctl::{Arg, ERROR_BUFSIZ, GCTL_PARAM_ASCII, GCTL_PARAM_RD, GCTL_PARAM_WR};

/// The name of the writable parameter geom(8) prints after a successful request.
pub const OUTPUT: &[u8] = b"output";

/// The `GCTL_PARAM_*` bits for the core's `PARAM_*` bits.
pub fn gctl_flags(flags: u8) -> i32 {
    let mut out = 0;
    if flags & PARAM_RD != 0 {
        out |= GCTL_PARAM_RD;
    }
    if flags & PARAM_WR != 0 {
        out |= GCTL_PARAM_WR;
    }
    if flags & PARAM_ASCII != 0 {
        out |= GCTL_PARAM_ASCII;
    }
    out
}

/// The parameter array for `req`, as `gctl_add_param` would have built it.
pub fn encode(req: &Request) -> Vec<Arg> {
    req.params()
        .iter()
        .map(|p| Arg::new(p.name.as_bytes(), gctl_flags(p.flags), p.value.clone()))
        .collect()
}

/// The text in front of the first NUL of `bytes` (all of them if there is none).
fn c_text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// What the kernel wrote into the writable `output` parameter, up to its NUL; empty if
/// there is no such parameter.
pub fn output(args: &[Arg]) -> String {
    args.iter()
        .find(|a| a.name() == OUTPUT && a.flag() & GCTL_PARAM_WR != 0)
        .map(|a| c_text(a.value()))
        .unwrap_or_default()
}

/// `gctl_issue`: sends `req` through `ioctl` (the open of `/dev/geom.ctl` and the
/// `GEOM_CTL` ioctl; given the parameters and the error buffer) and reads the outcome.
///
/// * A request that already carries an error is not sent; its text is the answer.
/// * The kernel's text, if the error buffer is not empty, is `Ok` with that error (geom(8)
///   prints it and fails), whether or not the ioctl returned an error.
/// * An empty buffer with a failed open or ioctl is `Err(strerror(errno))`.
/// * Otherwise `Ok` with the `output` text.
pub fn issue(
    req: &Request,
    ioctl: impl FnOnce(&mut [Arg], &mut [u8]) -> io::Result<()>,
) -> Result<Reply, String> {
    if let Some(e) = req.first_error() {
        return Ok(Reply {
            error: e.to_string(),
            output: String::new(),
        });
    }
    let mut args = encode(req);
    let mut error = vec![0u8; ERROR_BUFSIZ];
    let sent = ioctl(&mut args, &mut error);
    // The kernel fills at most ERROR_BUFSIZ - 1 bytes, so the last one is always a NUL.
    let text = c_text(&error[..ERROR_BUFSIZ - 1]);
    if !text.is_empty() {
        return Ok(Reply {
            error: text,
            output: String::new(),
        });
    }
    match sent {
        Err(e) => Err(crate::strerror(&e)),
        Ok(()) => Ok(Reply {
            error: String::new(),
            output: output(&args),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use geom_multipath::ctl::{Param, OUTPUT_LEN};
    use geom_multipath::testkit::MemTopology;
    use geom_multipath::{Class, CtlError};
    use geom_multipath_proto::{Answer, Call};

    /// geom(8)'s `gmultipath getactive FRED`.
    fn getactive() -> Request {
        let mut req = Request::for_verb("MULTIPATH", "getactive", 1);
        req.add_args(&["FRED"]);
        req.add_output("output", OUTPUT_LEN);
        req
    }

    #[test]
    fn parameters_keep_geom8s_order_names_lengths_and_flags() {
        let mut req = Request::for_verb("MULTIPATH", "create", 1);
        req.add_int("active_active", 1);
        req.add_int("active_read", 0);
        req.add_args(&["FRED", "md0"]);
        req.add_output("output", OUTPUT_LEN);
        let args = encode(&req);
        let rows: Vec<(&[u8], i32, usize)> = args
            .iter()
            .map(|a| (a.name_with_nul(), a.flag(), a.value().len()))
            .collect();
        assert_eq!(
            rows,
            [
                (&b"class\0"[..], 5, 10),
                (b"verb\0", 5, 7),
                (b"version\0", 1, 4),
                (b"active_active\0", 1, 4),
                (b"active_read\0", 1, 4),
                (b"nargs\0", 1, 4),
                (b"arg0\0", 5, 5),
                (b"arg1\0", 5, 4),
                (b"output\0", 7, 4096),
            ]
        );
        assert_eq!(args[0].value(), b"MULTIPATH\0");
        assert_eq!(args[2].value(), 1u32.to_ne_bytes());
        assert_eq!(args[3].value(), 1i32.to_ne_bytes());
        assert_eq!(args[5].value(), 2i32.to_ne_bytes());
        assert_eq!(args[6].value(), b"FRED\0");
        assert!(args[8].value().iter().all(|&b| b == 0));
    }

    #[test]
    fn numbers_and_raw_bytes_travel_unchanged() {
        let mut req = Request::for_verb("NOP", "create", 4);
        req.add_i64("offset", -1);
        req.add_ascii_bytes("physpath", &[0xad]);
        let args = encode(&req);
        assert_eq!(args[3].value(), (-1i64).to_ne_bytes());
        assert_eq!(args[3].flag(), GCTL_PARAM_RD);
        assert_eq!(args[4].value(), [0xad, 0]);
        assert_eq!(args[4].flag(), GCTL_PARAM_RD | GCTL_PARAM_ASCII);
    }

    #[test]
    fn core_flags_map_bit_for_bit() {
        assert_eq!(gctl_flags(PARAM_RD), 1);
        assert_eq!(gctl_flags(PARAM_WR), 2);
        assert_eq!(gctl_flags(PARAM_ASCII), 4);
        assert_eq!(gctl_flags(PARAM_RD | PARAM_WR | PARAM_ASCII), 7);
        assert_eq!(gctl_flags(0), 0);
    }

    /// A kernel that writes `out` into the output parameter and `text` into the error
    /// buffer, then answers `result`.
    fn kernel(
        out: &'static [u8],
        text: &'static [u8],
        result: Option<i32>,
    ) -> impl FnOnce(&mut [Arg], &mut [u8]) -> io::Result<()> {
        move |args, error| {
            assert_eq!(error.len(), 1024);
            assert!(error.iter().all(|&b| b == 0), "handed over zeroed");
            if let Some(a) = args.iter_mut().find(|a| a.name() == b"output") {
                a.value_mut()[..out.len()].copy_from_slice(out);
            }
            error[..text.len()].copy_from_slice(text);
            match result {
                Some(errno) => Err(io::Error::from_raw_os_error(errno)),
                None => Ok(()),
            }
        }
    }

    #[test]
    fn success_reads_the_output_back() {
        let reply = issue(&getactive(), kernel(b"md1 md0\n\0", b"", None)).unwrap();
        assert_eq!(reply.error, "");
        assert_eq!(reply.output, "md1 md0\n");
    }

    #[test]
    fn the_kernels_text_wins_over_the_ioctl_status_and_hides_the_output() {
        // A kernel writes no output on error; even if a buffer held bytes, they are not read.
        let reply = issue(
            &getactive(),
            kernel(b"stale\0", b"Device FRED is invalid\0", Some(22)),
        )
        .unwrap();
        assert_eq!(reply.error, "Device FRED is invalid");
        assert_eq!(reply.output, "");
        // FreeBSD 8/9 kernels set a text and returned 0: still an error.
        let reply = issue(&getactive(), kernel(b"", b"Unknown verb x\0", None)).unwrap();
        assert_eq!(reply.error, "Unknown verb x");
    }

    #[test]
    fn no_text_and_a_failed_ioctl_is_strerror() {
        // (The text is the platform's: FreeBSD's libc answers ENOTTY with "Inappropriate
        // ioctl for device"; the test uses an errno whose text is the same everywhere.)
        let e = issue(&getactive(), kernel(b"", b"", Some(22))).unwrap_err();
        assert_eq!(e, "Invalid argument");
        // A failed open of /dev/geom.ctl reads the same way.
        let e = issue(&getactive(), |_: &mut [Arg], _: &mut [u8]| {
            Err(io::Error::from_raw_os_error(2))
        })
        .unwrap_err();
        assert_eq!(e, "No such file or directory");
    }

    #[test]
    fn a_text_filling_the_buffer_is_cut_at_1023_bytes() {
        let long: &'static [u8] = Box::leak(vec![b'x'; 1023].into_boxed_slice());
        let reply = issue(&getactive(), kernel(b"", long, Some(22))).unwrap();
        assert_eq!(reply.error.len(), 1023);
    }

    #[test]
    fn a_request_with_an_error_is_not_sent() {
        let mut req = getactive();
        req.error(CtlError::PreferUsage);
        let reply = issue(&req, |_: &mut [Arg], _: &mut [u8]| -> io::Result<()> {
            panic!("must not reach the kernel")
        })
        .unwrap();
        assert_eq!(reply.error, "Usage: prefer GEOM PROVIDER");
    }

    /// The kernel's side in-process: `gctl_copyin` of the parameter array into the core's
    /// request, the real class over an in-memory topology, then `gctl_copyout` — writable
    /// parameters only on success, the error text cut to `lerror` (= buffer − 1) bytes —
    /// and EINVAL as the ioctl's errno after an error.
    struct EmulatedKernel {
        class: Class,
        topo: MemTopology,
    }

    impl EmulatedKernel {
        fn new() -> EmulatedKernel {
            let mut topo = MemTopology::new();
            topo.disk_with_paths("md", 2, 1 << 20, 512);
            EmulatedKernel {
                class: Class::default(),
                topo,
            }
        }

        fn ioctl(&mut self, args: &mut [Arg], error: &mut [u8]) -> io::Result<()> {
            let params = args
                .iter()
                .map(|a| Param {
                    name: String::from_utf8(a.name().to_vec()).unwrap(),
                    flags: a.flag() as u8,
                    value: a.value().to_vec(),
                })
                .collect();
            let mut req = Request::from_params(params);
            self.class.ctl(&mut self.topo, &mut req);
            self.topo.drain(&mut self.class);
            if let Some(e) = req.first_error() {
                let text = e.to_string();
                let n = (text.len() + 1).min(error.len() - 1);
                error[..n - 1].copy_from_slice(&text.as_bytes()[..n - 1]);
                return Err(io::Error::from_raw_os_error(22));
            }
            for (a, p) in args.iter_mut().zip(req.params()) {
                if a.flag() & GCTL_PARAM_WR != 0 {
                    a.value_mut().copy_from_slice(&p.value);
                }
            }
            Ok(())
        }
    }

    /// geom(8) on the emulated kernel, through [`issue`].
    impl Backend for EmulatedKernel {
        fn loaded(&mut self) -> bool {
            true
        }
        fn loadable(&mut self) -> bool {
            true
        }
        fn load(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn unload(&mut self) -> Result<(), crate::backend::UnloadError> {
            Ok(())
        }
        fn issue(&mut self, req: &Request) -> Result<Reply, String> {
            issue(req, |args, error| self.ioctl(args, error))
        }
        fn confxml(&mut self) -> io::Result<String> {
            let mut xml = String::from("<mesh>\n");
            self.class.conf_class(&mut xml).unwrap();
            xml.push_str("</mesh>\n");
            Ok(xml)
        }
        fn host_call(&mut self, _call: &Call) -> Option<io::Result<Answer>> {
            None
        }
    }

    fn gmultipath(kernel: &mut EmulatedKernel, cmdline: &str) -> (i32, String, String) {
        let argv: Vec<String> = cmdline.split_whitespace().map(String::from).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut uuid = || None;
        let code = crate::run::main(
            &argv,
            &mut crate::run::Env {
                backend: kernel,
                out: &mut out,
                err: &mut err,
                new_uuid: &mut uuid,
                providers: None,
                terminal: false,
            },
        );
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn the_class_reads_every_parameter_geom8_encodes() {
        let mut k = EmulatedKernel::new();
        assert_eq!(
            gmultipath(&mut k, "gmultipath create -v -A FRED md0 md1"),
            (0, String::from("Done.\n"), String::new())
        );
        assert_eq!(
            gmultipath(&mut k, "gmultipath getactive FRED"),
            (0, String::from("md1 md0\n"), String::new()),
            "A/A: every good path, newest first, through the output buffer"
        );
        assert_eq!(
            gmultipath(&mut k, "gmultipath configure -P FRED").0,
            0,
            "the bool options arrive as 4-byte ints"
        );
        assert_eq!(gmultipath(&mut k, "gmultipath getactive FRED").1, "md0\n");
        let (code, out, err) = gmultipath(&mut k, "gmultipath destroy -v NOPE");
        assert_eq!((code, out.as_str()), (1, ""), "no Done. after an error");
        assert_eq!(err, "gmultipath: Device NOPE is invalid\n");
        let (code, _, err) = gmultipath(&mut k, "gmultipath prefer FRED md9");
        assert_eq!(code, 1);
        assert_eq!(
            err,
            "Can't set FRED preferred provider to md9: Provider md9 not found.\n\
             gmultipath: Provider md9 not found\n"
        );
        assert_eq!(gmultipath(&mut k, "gmultipath stop FRED").0, 0);
        assert_eq!(
            gmultipath(&mut k, "gmultipath getactive FRED").2,
            "gmultipath: Device FRED is invalid\n"
        );
    }

    #[test]
    fn output_is_only_the_writable_parameter_called_output() {
        let args = vec![
            Arg::new(
                b"output",
                GCTL_PARAM_RD | GCTL_PARAM_ASCII,
                b"ro\0".to_vec(),
            ),
            Arg::new(b"outputs", GCTL_PARAM_RD | GCTL_PARAM_WR, b"no\0".to_vec()),
        ];
        assert_eq!(output(&args), "");
        let args = vec![Arg::new(b"output", GCTL_PARAM_WR, b"none\n".to_vec())];
        assert_eq!(output(&args), "none\n", "no NUL: the whole buffer");
    }
}

//! gctl requests: the kernel's copy of geom(8)'s named parameters becomes the core's
//! [`Request`]; after the verb ran, the first error and the `output` parameter go back.
//!
//! The parameters are copied as they are, in order, with their flags mapped onto the core's
//! `PARAM_*` bits: the core looks them up by name and records FreeBSD's errors itself
//! (`Missing nargs argument`, `No 'arg1' argument`, ...). A parameter the kernel holds no copy
//! of (a write-only buffer on old branches) becomes a zeroed buffer of its declared length.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use geom_multipath::ctl::{Param, Request};

use crate::ffi::{param_flags_of, GctlReq};

/// The parameter the verbs write their answer into.
const OUTPUT: &str = "output";

/// The core's request for the kernel's.
pub(crate) fn request_from(req: GctlReq) -> Request {
    let mut params = Vec::new();
    req.for_each_param(|p| {
        let value = match p.value {
            Some(v) => v.to_vec(),
            None => vec![0; p.len],
        };
        params.push(Param {
            name: String::from_utf8_lossy(p.name).into_owned(),
            flags: param_flags_of(p.flags),
            value,
        });
    });
    Request::from_params(params)
}

/// Copies the outcome back: the first error (`gctl_error`) and, if the verb wrote one, the
/// `output` text with its NUL (`gctl_set_param_err`).
pub(crate) fn answer(req: GctlReq, request: &Request) {
    if let Some(error) = request.first_error() {
        req.error(&error.text());
    }
    if let Some(text) = request.output().filter(|t| !t.is_empty()) {
        let mut value = Vec::with_capacity(text.len() + 1);
        value.extend_from_slice(text.as_bytes());
        value.push(0);
        req.set_param(OUTPUT, &value);
    }
}

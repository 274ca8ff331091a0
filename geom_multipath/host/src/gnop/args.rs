//! How `g_nop_ctl_create` and `g_nop_ctl_configure` read their gctl parameters: the
//! checks, their order and their error texts, and `create`'s options once read.

use super::*;

/// `create`'s options after `g_nop_ctl_create` has read and checked them, with -1 still
/// meaning "default".
pub(super) struct CreateArgs {
    pub(super) error: i64,
    pub(super) rfailprob: i64,
    pub(super) wfailprob: i64,
    pub(super) delaymsec: i64,
    pub(super) rdelayprob: i64,
    pub(super) wdelayprob: i64,
    pub(super) count_until_fail: i64,
    pub(super) offset: i64,
    pub(super) size: i64,
    pub(super) secsize: i64,
    pub(super) stripesize: i64,
    pub(super) stripeoffset: i64,
    pub(super) physpath: Option<String>,
    pub(super) gnopname: Option<String>,
}

pub(super) fn other(text: impl Into<String>) -> CtlError {
    CtlError::Other(text.into())
}

/// A parameter's bytes up to its first NUL, without recording anything (how the
/// framework reads `verb`, and how gnop compares `physpath` with the passthrough byte).
pub(super) fn raw_text(req: &Request, name: &str) -> Option<Vec<u8>> {
    let value = &req.param(name)?.value;
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    Some(value[..end].to_vec())
}

/// `nargs`, which must be positive (`Missing device(s).`).
pub(super) fn nargs(req: &mut Request) -> Option<i32> {
    let Some(n) = req.int("nargs") else {
        req.error(CtlError::NoArg(String::from("nargs")));
        return None;
    };
    if n <= 0 {
        req.error(other("Missing device(s)."));
        return None;
    }
    Some(n)
}

/// `gctl_get_paraml_opt(req, name, sizeof(intmax_t))`: absent (or, after recording the
/// error, wrongly sized) gives `None`.
pub(super) fn opt_i64(req: &mut Request, name: &str) -> Option<i64> {
    let v = req.paraml_opt(name, 8)?;
    let bytes: [u8; 8] = v.as_slice().try_into().ok()?;
    Some(i64::from_ne_bytes(bytes))
}

/// An optional intmax parameter that must pass `ok`; `None` after recording
/// `Invalid '<name>' argument`.
pub(super) fn checked(
    req: &mut Request,
    name: &str,
    default: i64,
    ok: fn(i64) -> bool,
) -> Option<i64> {
    match opt_i64(req, name) {
        None => Some(default),
        Some(v) if ok(v) => Some(v),
        Some(_) => {
            req.error(other(format!("Invalid '{name}' argument")));
            None
        }
    }
}

pub(super) fn is_prob(v: i64) -> bool {
    (-1..=100).contains(&v)
}

pub(super) fn is_delay(v: i64) -> bool {
    v >= 1 || v == -1
}

pub(super) fn non_negative(v: i64) -> bool {
    v >= 0
}

/// `v == -1 ? default : (u_int)v`.
pub(super) fn default_to(v: i64, default: u32) -> u32 {
    if v == -1 {
        default
    } else {
        v as u32
    }
}

/// `if (v != -1) *field = (u_int)v`.
pub(super) fn set_unless_default(field: &mut u32, v: i64) {
    if v != -1 {
        *field = v as u32;
    }
}

/// The option half of `g_nop_ctl_create`, in its order; `None` once an error is recorded.
pub(super) fn create_args(req: &mut Request) -> Option<CreateArgs> {
    let error = opt_i64(req, "error").unwrap_or(-1);
    let rfailprob = checked(req, "rfailprob", -1, is_prob)?;
    let wfailprob = checked(req, "wfailprob", -1, is_prob)?;
    let delaymsec = checked(req, "delaymsec", -1, is_delay)?;
    let rdelayprob = checked(req, "rdelayprob", -1, is_prob)?;
    let wdelayprob = checked(req, "wdelayprob", -1, is_prob)?;
    let count_until_fail = checked(req, "count_until_fail", -1, |v| v >= -1)?;
    let offset = checked(req, "offset", 0, non_negative)?;
    let size = checked(req, "size", 0, non_negative)?;
    let secsize = checked(req, "secsize", 0, non_negative)?;
    let stripesize = checked(req, "stripesize", 0, non_negative)?;
    let stripeoffset = checked(req, "stripeoffset", 0, non_negative)?;
    let physpath = req.ascii("physpath").and_then(|_| {
        let bytes = raw_text(req, "physpath")?;
        if bytes == PHYSPATH_PASSTHROUGH {
            return None;
        }
        let kept = &bytes[..bytes.len().min(MAXPATHLEN)];
        Some(String::from_utf8_lossy(kept).into_owned())
    });
    let gnopname = req.ascii("gnopname");
    Some(CreateArgs {
        error,
        rfailprob,
        wfailprob,
        delaymsec,
        rdelayprob,
        wdelayprob,
        count_until_fail,
        offset,
        size,
        secsize,
        stripesize,
        stripeoffset,
        physpath,
        gnopname,
    })
}

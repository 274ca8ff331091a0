//! The control request: gctl's named parameters (`class`, `verb`, `version`, the options,
//! `nargs`, `arg0`…, `output`), built by userland the way libgeom builds it and read by the
//! class the way `geom_ctl.c` reads it, plus [`CtlError`], every error text a verb can
//! produce.
//!
//! Semantics kept from FreeBSD: parameters are looked up by name in order; a missing or
//! wrongly sized parameter is itself an error (`Missing nargs argument`); and only the
//! **first** error recorded on a request is kept and reported, later ones are ignored
//! (`gctl_error` finishes the error buffer). How a request crosses a socket is in
//! [`crate::wire`].

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::errno::Errno;
use crate::metadata::NameError;

/// Parameter flag: readable by the kernel (`GCTL_PARAM_RD`).
pub const PARAM_RD: u8 = 0x1;
/// Parameter flag: writable by the kernel (`GCTL_PARAM_WR`).
pub const PARAM_WR: u8 = 0x2;
/// Parameter flag: the value is a NUL-terminated string (`GCTL_PARAM_ASCII`).
pub const PARAM_ASCII: u8 = 0x4;

/// The size of geom(8)'s `output` buffer.
pub const OUTPUT_LEN: usize = 4096;

/// One named parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Its name (`arg0`, `nargs`, `active_active`, …).
    pub name: String,
    /// `PARAM_*` bits.
    pub flags: u8,
    /// Its value: a NUL-terminated string for ASCII parameters, native-endian integers for
    /// numbers, a zeroed buffer for writable ones.
    pub value: Vec<u8>,
}

/// A control request: named parameters plus the first error recorded on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    params: Vec<Param>,
    error: Option<CtlError>,
}

impl Request {
    /// An empty request.
    pub fn new() -> Request {
        Request::default()
    }

    /// A request with `class`, `verb` and `version` added first, in geom(8)'s order.
    pub fn for_verb(class: &str, verb: &str, version: u32) -> Request {
        let mut req = Request::new();
        req.add_ascii("class", class);
        req.add_ascii("verb", verb);
        req.add_u32("version", version);
        req
    }

    /// A request from decoded parameters (the kernel's `gctl_copyin`).
    pub fn from_params(params: Vec<Param>) -> Request {
        Request {
            params,
            error: None,
        }
    }

    /// The parameters, in the order they were added.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Adds a read-only string (`gctl_ro_param(req, name, -1, value)`).
    pub fn add_ascii(&mut self, name: &str, value: &str) {
        let mut v = Vec::with_capacity(value.len() + 1);
        v.extend_from_slice(value.as_bytes());
        v.push(0);
        self.push(name, PARAM_RD | PARAM_ASCII, v);
    }

    /// Adds a read-only string given as bytes (gnop's physpath default is the single byte
    /// 0xAD, which is not UTF-8).
    pub fn add_ascii_bytes(&mut self, name: &str, value: &[u8]) {
        let mut v = Vec::with_capacity(value.len() + 1);
        v.extend_from_slice(value);
        v.push(0);
        self.push(name, PARAM_RD | PARAM_ASCII, v);
    }

    /// Adds a read-only `int` (booleans are sent this way: 1 given, 0 not).
    pub fn add_int(&mut self, name: &str, value: i32) {
        self.push(name, PARAM_RD, value.to_ne_bytes().to_vec());
    }

    /// Adds a read-only `uint32_t` (the `version` parameter).
    pub fn add_u32(&mut self, name: &str, value: u32) {
        self.push(name, PARAM_RD, value.to_ne_bytes().to_vec());
    }

    /// Adds a read-only `intmax_t` (numeric options such as gnop's `-o offset`).
    pub fn add_i64(&mut self, name: &str, value: i64) {
        self.push(name, PARAM_RD, value.to_ne_bytes().to_vec());
    }

    /// Adds a writable zeroed buffer of `len` bytes (`gctl_rw_param`), e.g. `output`.
    pub fn add_output(&mut self, name: &str, len: usize) {
        self.push(name, PARAM_RW_ASCII, alloc::vec![0; len]);
    }

    /// Adds `nargs` and `arg0`… for the positional arguments, as geom(8) does last.
    pub fn add_args<S: AsRef<str>>(&mut self, args: &[S]) {
        self.add_int("nargs", i32::try_from(args.len()).unwrap_or(i32::MAX));
        for (i, a) in args.iter().enumerate() {
            self.add_ascii(&format!("arg{i}"), a.as_ref());
        }
    }

    fn push(&mut self, name: &str, flags: u8, value: Vec<u8>) {
        self.params.push(Param {
            name: String::from(name),
            flags,
            value,
        });
    }

    // ----- the kernel side: lookups that record their own errors ------------------------

    /// `gctl_get_param`: the first readable parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params
            .iter()
            .find(|p| p.name == name && p.flags & PARAM_RD != 0)
    }

    /// `gctl_get_asciiparam`: the string value of `name`; records an error and answers
    /// `None` if it is empty or not NUL-terminated.
    pub fn ascii(&mut self, name: &str) -> Option<String> {
        let value = self.param(name)?.value.clone();
        let Some((&last, text)) = value.split_last() else {
            self.error(CtlError::NoLength(String::from(name)));
            return None;
        };
        if last != 0 {
            self.error(CtlError::Unterminated(String::from(name)));
            return None;
        }
        let text = text.split(|&b| b == 0).next().unwrap_or(&[]);
        Some(String::from_utf8_lossy(text).into_owned())
    }

    /// `gctl_get_paraml_opt`: the `len`-byte value of `name`, if present; records
    /// `Wrong length <name> argument` if its size differs.
    pub fn paraml_opt(&mut self, name: &str, len: usize) -> Option<Vec<u8>> {
        let value = self.param(name)?.value.clone();
        if value.len() != len {
            self.error(CtlError::WrongLength(String::from(name)));
            return None;
        }
        Some(value)
    }

    /// `gctl_get_paraml`: like [`paraml_opt`](Request::paraml_opt), and a missing parameter
    /// records `Missing <name> argument`.
    pub fn paraml(&mut self, name: &str, len: usize) -> Option<Vec<u8>> {
        let value = self.paraml_opt(name, len);
        if value.is_none() && self.param(name).is_none() {
            self.error(CtlError::Missing(String::from(name)));
        }
        value
    }

    /// An `int` parameter read with [`paraml`](Request::paraml).
    pub fn int(&mut self, name: &str) -> Option<i32> {
        let v = self.paraml(name, 4)?;
        Some(i32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
    }

    /// A `uint32_t` parameter read with [`paraml`](Request::paraml).
    pub fn u32(&mut self, name: &str) -> Option<u32> {
        let v = self.paraml(name, 4)?;
        Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
    }

    /// An `intmax_t` parameter read with [`paraml`](Request::paraml).
    pub fn i64(&mut self, name: &str) -> Option<i64> {
        let v = self.paraml(name, 8)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(&v);
        Some(i64::from_ne_bytes(b))
    }

    /// A boolean option (`int`, non-zero = given); `false` when absent, recording
    /// `Missing <name> argument` as FreeBSD's `gctl_get_paraml` does.
    pub fn flag(&mut self, name: &str) -> bool {
        self.int(name).is_some_and(|v| v != 0)
    }

    /// `gctl_error`: records `e` unless an error was recorded already.
    pub fn error(&mut self, e: CtlError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// The first error recorded, if any.
    pub fn first_error(&self) -> Option<&CtlError> {
        self.error.as_ref()
    }

    /// Takes the first error recorded.
    pub fn take_error(&mut self) -> Option<CtlError> {
        self.error.take()
    }

    /// `gctl_set_param_err(req, "output", text)`: writes `text` and its NUL into the
    /// writable `output` parameter (cut to fit), recording an error if there is none.
    pub fn set_output(&mut self, text: &str) {
        let Some(p) = self.params.iter_mut().find(|p| p.name == "output") else {
            self.error(CtlError::Missing(String::from("output")));
            return;
        };
        if p.flags & PARAM_WR == 0 {
            self.error(CtlError::NoWriteAccess(String::from("output")));
            return;
        }
        let n = text.len().min(p.value.len().saturating_sub(1));
        p.value.fill(0);
        p.value[..n].copy_from_slice(&text.as_bytes()[..n]);
    }

    /// The text in the `output` parameter, up to its first NUL.
    pub fn output(&self) -> Option<&str> {
        let p = self.params.iter().find(|p| p.name == "output")?;
        let end = p
            .value
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(p.value.len());
        core::str::from_utf8(&p.value[..end]).ok()
    }
}

const PARAM_RW_ASCII: u8 = PARAM_RD | PARAM_WR | PARAM_ASCII;

/// Every error a control request can end with. `Display` is FreeBSD's exact text (what
/// geom(8) prints after `gmultipath: `).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CtlError {
    /// `Missing <name> argument`
    Missing(String),
    /// `Wrong length <name> argument`
    WrongLength(String),
    /// `Argument without length (<name>)`
    NoLength(String),
    /// `Unterminated argument (<name>)`
    Unterminated(String),
    /// `No write access <name> argument`
    NoWriteAccess(String),
    /// `No '<name>' argument`
    NoArg(String),
    /// `Userland and kernel parts are out of sync`
    OutOfSync,
    /// `Unknown verb <verb>`
    UnknownVerb(String),
    /// `wrong number of arguments.`
    WrongNumberOfArguments,
    /// `Device <name> already exist`
    AlreadyExist(String),
    /// `Device <name> is invalid`
    DeviceInvalid(String),
    /// `Device <name> not found`
    DeviceNotFound(String),
    /// `Device <name> is invalid: <reason>` — a name FreeBSD would silently truncate or
    /// misuse, refused with its reason instead.
    BadName(String, NameError),
    /// `Provider <name> is invalid`
    ProviderInvalid(String),
    /// `provider <name> is already there`
    AlreadyThere(String),
    /// `Providers size mismatch <a> != <b>`
    SizeMismatch(u64, u64),
    /// `Providers sectorsize mismatch <a> != <b>`
    SectorsizeMismatch(u32, u32),
    /// `Provider addition error: <errno>`
    AdditionError(Errno),
    /// `GEOM_MULTIPATH: cannot create geom <name>/<uuid>` (FreeBSD's text ends in a stray
    /// newline; ours does not)
    CannotCreate(String, String),
    /// `Provider <name> not found`
    ProviderNotFound(String),
    /// `missing device`
    MissingDevice,
    /// `Consumer <name> is invalid`
    ConsumerInvalid(String),
    /// `Can't update metadata on <path> (<errno>)`
    CantUpdateMetadata(String, Errno),
    /// `Can't open <path> (<errno>)`
    CantOpen(String, Errno),
    /// `Can't erase metadata on <path> (<errno>)`
    CantErase(String, Errno),
    /// `failed to destroy <name> (err=<errno>)`
    FailedToDestroy(String, Errno),
    /// `failed to stop <name> (err=<errno>)`
    FailedToStop(String, Errno),
    /// `cannot get information about <prov>: <strerror>.`
    CannotGetInfo(String, String),
    /// `<prov> sector size <n> different.`
    SectorSizeDifferent(String, u32),
    /// `<prov> media size <n> different.`
    MediaSizeDifferent(String, u64),
    /// `<prov> is too small: <size> bytes with <sectorsize>-byte sectors.` — ours: FreeBSD
    /// would label it and make a useless geom.
    TooSmall(String, u64, u32),
    /// `<prov> sector size <n> is not usable.` — ours: FreeBSD assumes every sector can
    /// hold the 89-byte label.
    BadSectorSize(String, u32),
    /// `Provider <prov> is named more than once.` — ours: FreeBSD labels the provider and
    /// checks it against itself, silently.
    NamedTwice(String),
    /// `cannot create a UUID.`
    CannotCreateUuid,
    /// `cannot store metadata on <prov>: <strerror>.`
    CannotStore(String, String),
    /// `Too few arguments.`
    TooFewArguments,
    /// `Not fully done.`
    NotFullyDone,
    /// `Usage: prefer GEOM PROVIDER`
    PreferUsage,
    /// `Invalid <setting> value '<value>'` — a `configure` extension given a value it does
    /// not take.
    InvalidSetting(String, String),
    /// `<setting> is not carried out by this driver` — a `configure` extension the kernel
    /// module does not carry out yet.
    NotCarriedOut(String),
    /// Any other text, verbatim (another class's error, a transport failure).
    Other(String),
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CtlError::*;
        match self {
            Missing(n) => write!(f, "Missing {n} argument"),
            WrongLength(n) => write!(f, "Wrong length {n} argument"),
            NoLength(n) => write!(f, "Argument without length ({n})"),
            Unterminated(n) => write!(f, "Unterminated argument ({n})"),
            NoWriteAccess(n) => write!(f, "No write access {n} argument"),
            NoArg(n) => write!(f, "No '{n}' argument"),
            OutOfSync => f.write_str("Userland and kernel parts are out of sync"),
            UnknownVerb(v) => write!(f, "Unknown verb {v}"),
            WrongNumberOfArguments => f.write_str("wrong number of arguments."),
            AlreadyExist(n) => write!(f, "Device {n} already exist"),
            DeviceInvalid(n) => write!(f, "Device {n} is invalid"),
            DeviceNotFound(n) => write!(f, "Device {n} not found"),
            BadName(n, why) => write!(f, "Device {n} is invalid: {why}"),
            ProviderInvalid(p) => write!(f, "Provider {p} is invalid"),
            AlreadyThere(p) => write!(f, "provider {p} is already there"),
            SizeMismatch(a, b) => write!(f, "Providers size mismatch {a} != {b}"),
            SectorsizeMismatch(a, b) => write!(f, "Providers sectorsize mismatch {a} != {b}"),
            AdditionError(e) => write!(f, "Provider addition error: {e}"),
            CannotCreate(n, u) => write!(f, "GEOM_MULTIPATH: cannot create geom {n}/{u}"),
            ProviderNotFound(p) => write!(f, "Provider {p} not found"),
            MissingDevice => f.write_str("missing device"),
            ConsumerInvalid(p) => write!(f, "Consumer {p} is invalid"),
            CantUpdateMetadata(p, e) => write!(f, "Can't update metadata on {p} ({e})"),
            CantOpen(p, e) => write!(f, "Can't open {p} ({e})"),
            CantErase(p, e) => write!(f, "Can't erase metadata on {p} ({e})"),
            FailedToDestroy(n, e) => write!(f, "failed to destroy {n} (err={e})"),
            FailedToStop(n, e) => write!(f, "failed to stop {n} (err={e})"),
            CannotGetInfo(p, why) => write!(f, "cannot get information about {p}: {why}."),
            SectorSizeDifferent(p, n) => write!(f, "{p} sector size {n} different."),
            MediaSizeDifferent(p, n) => write!(f, "{p} media size {n} different."),
            TooSmall(p, size, ss) => {
                write!(f, "{p} is too small: {size} bytes with {ss}-byte sectors.")
            }
            BadSectorSize(p, n) => write!(f, "{p} sector size {n} is not usable."),
            NamedTwice(p) => write!(f, "Provider {p} is named more than once."),
            CannotCreateUuid => f.write_str("cannot create a UUID."),
            CannotStore(p, why) => write!(f, "cannot store metadata on {p}: {why}."),
            TooFewArguments => f.write_str("Too few arguments."),
            NotFullyDone => f.write_str("Not fully done."),
            PreferUsage => f.write_str("Usage: prefer GEOM PROVIDER"),
            InvalidSetting(setting, value) => write!(f, "Invalid {setting} value '{value}'"),
            NotCarriedOut(setting) => write!(f, "{setting} is not carried out by this driver"),
            Other(text) => f.write_str(text),
        }
    }
}

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "std")]
impl std::error::Error for CtlError {}

impl CtlError {
    /// The error as the text geom(8) prints.
    pub fn text(&self) -> String {
        self.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geom8_parameter_order() {
        let mut req = Request::for_verb("MULTIPATH", "create", 1);
        req.add_int("active_active", 1);
        req.add_int("active_read", 0);
        req.add_args(&["FRED", "md0", "md1"]);
        req.add_output("output", OUTPUT_LEN);
        let names: Vec<&str> = req.params().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "class",
                "verb",
                "version",
                "active_active",
                "active_read",
                "nargs",
                "arg0",
                "arg1",
                "arg2",
                "output"
            ]
        );
        assert_eq!(req.params()[0].value, b"MULTIPATH\0");
        assert_eq!(req.params()[0].flags, PARAM_RD | PARAM_ASCII);
        assert_eq!(req.params()[2].value, 1u32.to_ne_bytes());
        assert_eq!(req.params()[9].value.len(), 4096);
        assert_eq!(req.params()[9].flags & PARAM_WR, PARAM_WR);
    }

    #[test]
    fn only_the_first_error_is_kept() {
        let mut req = Request::new();
        req.error(CtlError::MissingDevice);
        req.error(CtlError::OutOfSync);
        assert_eq!(req.first_error(), Some(&CtlError::MissingDevice));
    }

    #[test]
    fn paraml_records_missing_and_wrong_length() {
        let mut req = Request::new();
        assert_eq!(req.int("nargs"), None);
        assert_eq!(
            req.first_error().unwrap().to_string(),
            "Missing nargs argument"
        );
        let mut req = Request::new();
        req.add_i64("nargs", 2);
        assert_eq!(req.int("nargs"), None);
        assert_eq!(
            req.first_error().unwrap().to_string(),
            "Wrong length nargs argument"
        );
    }

    #[test]
    fn ascii_requires_a_terminating_nul() {
        let mut req = Request::from_params(alloc::vec![
            Param {
                name: "arg0".into(),
                flags: PARAM_RD,
                value: b"FRED".to_vec()
            },
            Param {
                name: "arg1".into(),
                flags: PARAM_RD,
                value: Vec::new()
            },
        ]);
        assert_eq!(req.ascii("arg0"), None);
        assert_eq!(
            req.first_error().unwrap().to_string(),
            "Unterminated argument (arg0)"
        );
        let _ = req.take_error();
        assert_eq!(req.ascii("arg1"), None);
        assert_eq!(
            req.first_error().unwrap().to_string(),
            "Argument without length (arg1)"
        );
        let mut ok = Request::new();
        ok.add_ascii("arg0", "FRED");
        assert_eq!(ok.ascii("arg0").as_deref(), Some("FRED"));
        assert_eq!(ok.ascii("arg9"), None, "absent: no error");
        assert!(ok.first_error().is_none());
    }

    #[test]
    fn output_is_written_and_read_back() {
        let mut req = Request::new();
        req.add_output("output", 8);
        req.set_output("md1 md0\n");
        assert_eq!(
            req.output(),
            Some("md1 md0"),
            "cut to leave room for the NUL"
        );
        req.set_output("md0\n");
        assert_eq!(req.output(), Some("md0\n"));
        let mut none = Request::new();
        none.set_output("x");
        assert_eq!(
            none.first_error().unwrap().to_string(),
            "Missing output argument"
        );
    }

    #[test]
    fn error_texts_are_freebsds() {
        let cases: &[(CtlError, &str)] = &[
            (CtlError::NoArg("arg1".into()), "No 'arg1' argument"),
            (
                CtlError::OutOfSync,
                "Userland and kernel parts are out of sync",
            ),
            (CtlError::UnknownVerb("frob".into()), "Unknown verb frob"),
            (
                CtlError::WrongNumberOfArguments,
                "wrong number of arguments.",
            ),
            (
                CtlError::AlreadyExist("FRED".into()),
                "Device FRED already exist",
            ),
            (
                CtlError::DeviceInvalid("FRED".into()),
                "Device FRED is invalid",
            ),
            (
                CtlError::DeviceNotFound("FRED".into()),
                "Device FRED not found",
            ),
            (
                CtlError::ProviderInvalid("md9".into()),
                "Provider md9 is invalid",
            ),
            (
                CtlError::AlreadyThere("md0".into()),
                "provider md0 is already there",
            ),
            (
                CtlError::SizeMismatch(1048576, 2097152),
                "Providers size mismatch 1048576 != 2097152",
            ),
            (
                CtlError::SectorsizeMismatch(512, 4096),
                "Providers sectorsize mismatch 512 != 4096",
            ),
            (
                CtlError::AdditionError(Errno::EPERM),
                "Provider addition error: 1",
            ),
            (
                CtlError::CannotCreate("FRED".into(), "".into()),
                "GEOM_MULTIPATH: cannot create geom FRED/",
            ),
            (
                CtlError::ProviderNotFound("md0".into()),
                "Provider md0 not found",
            ),
            (CtlError::MissingDevice, "missing device"),
            (
                CtlError::ConsumerInvalid("md0".into()),
                "Consumer md0 is invalid",
            ),
            (
                CtlError::CantUpdateMetadata("md0".into(), Errno::EIO),
                "Can't update metadata on md0 (5)",
            ),
            (
                CtlError::CantOpen("md0".into(), Errno::EPERM),
                "Can't open md0 (1)",
            ),
            (
                CtlError::CantErase("md0".into(), Errno::EIO),
                "Can't erase metadata on md0 (5)",
            ),
            (
                CtlError::FailedToDestroy("FRED".into(), Errno::ENXIO),
                "failed to destroy FRED (err=6)",
            ),
            (
                CtlError::FailedToStop("FRED".into(), Errno::ENXIO),
                "failed to stop FRED (err=6)",
            ),
            (
                CtlError::CannotGetInfo("md9".into(), "No such file or directory".into()),
                "cannot get information about md9: No such file or directory.",
            ),
            (
                CtlError::SectorSizeDifferent("md1".into(), 4096),
                "md1 sector size 4096 different.",
            ),
            (
                CtlError::MediaSizeDifferent("md1".into(), 2097152),
                "md1 media size 2097152 different.",
            ),
            (CtlError::CannotCreateUuid, "cannot create a UUID."),
            (
                CtlError::CannotStore("md0".into(), "Operation not permitted".into()),
                "cannot store metadata on md0: Operation not permitted.",
            ),
            (CtlError::TooFewArguments, "Too few arguments."),
            (CtlError::NotFullyDone, "Not fully done."),
            (CtlError::PreferUsage, "Usage: prefer GEOM PROVIDER"),
            (
                CtlError::NotCarriedOut(String::from("queue_timeout")),
                "queue_timeout is not carried out by this driver",
            ),
            (
                CtlError::InvalidSetting(String::from("failback"), String::from("x")),
                "Invalid failback value 'x'",
            ),
            (
                CtlError::BadName("ABCDEFGHIJKLMNOPQ".into(), NameError::TooLong),
                "Device ABCDEFGHIJKLMNOPQ is invalid: name is longer than 15 bytes",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), *text);
            assert!(!text.ends_with('\n'));
        }
    }
}

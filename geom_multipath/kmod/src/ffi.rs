//! Safe handles over the raw kernel objects of `kpi.h`, and the mapping of raw C values onto
//! Rust types.
//!
//! Each handle wraps a non-null pointer the kernel gave the class and is only ever built from
//! such a pointer (the `gmp_rs_*` arguments, or what a `kpi_*` call returned). Its methods are
//! the only places that call the `kpi_*` functions, each in one `unsafe` block whose safety
//! rests on that invariant: the object is alive while the class holds it — a provider or geom
//! for as long as GEOM keeps it (the class withers its own), a consumer until the class detaches
//! it, a request until the class delivers it, a clone until the class retires or completes it.
//!
//! The kernel's services that take no object (memory, console, panic, randomness, the class
//! gate, the module's life, deferred work, DTrace) are the free functions of [`kernel`]: with
//! the handles' methods they are the only callers of the `kpi_*` functions in the crate.
//!
//! Raw values become Rust values here: `bio_cmd` becomes an [`Op`], an errno an [`Errno`],
//! gctl flags the core's `PARAM_*` bits; strings arrive as (pointer, length) and leave as
//! slices, never longer than [`TEXT_MAX`] when C formats them with `%.*s`.

use core::ffi::{c_char, c_void};
use core::ptr::{self, NonNull};
use core::slice;

use geom_multipath::ctl::{PARAM_ASCII, PARAM_RD, PARAM_WR};
use geom_multipath::{Errno, Op, ProviderInfo};

use crate::bindings as b;

/// The most bytes of text handed to C for `%.*s`, whose precision is an `int`: a longer
/// length would become a negative precision, and printf would read on to a NUL that Rust
/// strings do not have.
pub const TEXT_MAX: usize = i32::MAX as usize;

/// How many of `len` bytes of text C may format with `%.*s`.
pub fn c_len(len: usize) -> usize {
    len.min(TEXT_MAX)
}

/// `text` cut to [`TEXT_MAX`] bytes (C clamps again; see `gmp_prec` in `kpi_freebsd.c`).
pub fn c_text(text: &[u8]) -> &[u8] {
    &text[..c_len(text.len())]
}

/// The attribute whose answer MULTIPATH extends with `/mp`.
pub const PHYSPATH_ATTRIBUTE: &[u8] = b"GEOM::physpath";

/// An errno from C: 0 is success.
pub fn result_of(error: i32) -> Result<(), Errno> {
    if error == 0 {
        Ok(())
    } else {
        Err(Errno(error))
    }
}

/// An errno for C: success is 0.
pub fn errno_of(result: Result<(), Errno>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => e.0,
    }
}

/// The core's [`Op`] for a raw `bio_cmd`; `physpath` says whether a BIO_GETATTR asks for
/// `GEOM::physpath`.
pub fn op_of(cmd: u16, physpath: bool) -> Op {
    match i32::from(cmd) {
        b::KPI_BIO_READ => Op::Read,
        b::KPI_BIO_WRITE => Op::Write,
        b::KPI_BIO_DELETE => Op::Delete,
        b::KPI_BIO_FLUSH => Op::Flush,
        b::KPI_BIO_GETATTR => Op::GetAttr { physpath },
        other => Op::Other(u8::try_from(other).unwrap_or(u8::MAX)),
    }
}

/// The core's `PARAM_*` bits for raw gctl flags (other kernel bits are dropped).
pub fn param_flags_of(raw: i32) -> u8 {
    let mut flags = 0;
    if raw & b::KPI_GCTL_PARAM_RD != 0 {
        flags |= PARAM_RD;
    }
    if raw & b::KPI_GCTL_PARAM_WR != 0 {
        flags |= PARAM_WR;
    }
    if raw & b::KPI_GCTL_PARAM_ASCII != 0 {
        flags |= PARAM_ASCII;
    }
    flags
}

/// Text from C as (pointer, length); empty for a null pointer.
///
/// # Safety
/// A non-null `ptr` must point at `len` readable bytes that stay valid and unchanged for
/// `'a`.
unsafe fn bytes<'a>(ptr: *const c_char, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: non-null and `len` readable bytes valid for 'a, by this function's contract.
        unsafe { slice::from_raw_parts(ptr.cast::<u8>(), len) }
    }
}

/// A request: one the class received (a parent) or one it cloned (a child).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bio(NonNull<b::bio>);

impl Bio {
    /// The handle for a pointer from the kernel, if not null.
    pub fn from_raw(ptr: *mut b::bio) -> Option<Bio> {
        NonNull::new(ptr).map(Bio)
    }

    /// The raw pointer.
    pub fn as_ptr(self) -> *mut b::bio {
        self.0.as_ptr()
    }

    /// A number naming the request while it lives (the core's `token`).
    pub fn token(self) -> u64 {
        self.0.as_ptr() as usize as u64
    }

    /// `bio_cmd`.
    pub fn cmd(self) -> u16 {
        // SAFETY: a live bio (module invariant).
        unsafe { b::kpi_bio_cmd(self.as_ptr()) }
    }

    /// The core's view of the command.
    pub fn op(self) -> Op {
        let cmd = self.cmd();
        op_of(
            cmd,
            i32::from(cmd) == b::KPI_BIO_GETATTR && self.attribute_is(PHYSPATH_ATTRIBUTE),
        )
    }

    /// `bio_offset`.
    pub fn offset(self) -> u64 {
        // SAFETY: a live bio (module invariant).
        unsafe { b::kpi_bio_offset(self.as_ptr()) }
    }

    /// `bio_length`.
    pub fn length(self) -> u64 {
        // SAFETY: a live bio (module invariant).
        unsafe { b::kpi_bio_length(self.as_ptr()) }
    }

    /// `bio_error` of a completed bio.
    pub fn error(self) -> i32 {
        // SAFETY: a live bio (module invariant).
        unsafe { b::kpi_bio_error(self.as_ptr()) }
    }

    /// Whether `bio_attribute` of a BIO_GETATTR is `want`.
    pub fn attribute_is(self, want: &[u8]) -> bool {
        let mut attr: *const c_char = ptr::null();
        // SAFETY: a live bio; `attr` is a valid place for the answer.
        let len = unsafe { b::kpi_bio_attribute(self.as_ptr(), &mut attr) };
        // SAFETY: the attribute string lives at least as long as the request, and the borrow
        // ends within this call.
        unsafe { bytes(attr, len) == want }
    }

    /// `bio_parent` of a clone.
    pub fn parent(self) -> Option<Bio> {
        // SAFETY: a live bio (module invariant).
        Bio::from_raw(unsafe { b::kpi_bio_parent(self.as_ptr()) })
    }

    /// The geom of the provider the request was sent to.
    pub fn geom(self) -> Option<Geom> {
        // SAFETY: a live bio (module invariant).
        Geom::from_raw(unsafe { b::kpi_bio_geom(self.as_ptr()) })
    }

    /// `bio_driver1`.
    pub fn driver1(self) -> *mut c_void {
        // SAFETY: a live bio (module invariant).
        unsafe { b::kpi_bio_driver1(self.as_ptr()) }
    }

    /// Sets `bio_driver1`.
    pub fn set_driver1(self, state: *mut c_void) {
        // SAFETY: a live bio (module invariant); the kernel only stores the pointer.
        unsafe { b::kpi_bio_set_driver1(self.as_ptr(), state) }
    }

    /// `g_clone_bio`, with the class's completion method; `None` on ENOMEM.
    pub fn clone_request(self) -> Option<Bio> {
        // SAFETY: a live bio (module invariant).
        Bio::from_raw(unsafe { b::kpi_bio_clone(self.as_ptr()) })
    }

    /// `g_io_request` of this clone on a path.
    pub fn request(self, path: Consumer) {
        // SAFETY: a clone the class made and has not issued, on a consumer it holds.
        unsafe { b::kpi_bio_request(self.as_ptr(), path.as_ptr()) }
    }

    /// This clone's attempt is forgotten: counted home and destroyed. The handle is dead after.
    pub fn retire(self) {
        // SAFETY: a clone the class made that is not in flight; not used again.
        unsafe { b::kpi_bio_retire(self.as_ptr()) }
    }

    /// This clone's attempt answers its parent, which is delivered with `error`. The handle and
    /// the parent's are dead after.
    pub fn complete(self, error: i32) {
        // SAFETY: a clone the class made that is not in flight; neither it nor its parent is
        // used again.
        unsafe { b::kpi_bio_complete(self.as_ptr(), error) }
    }

    /// `g_io_deliver` of a request with no clone in flight. The handle is dead after.
    pub fn deliver(self, error: i32) {
        // SAFETY: a request the class received and still holds; not used again.
        unsafe { b::kpi_bio_deliver(self.as_ptr(), error) }
    }

    /// Appends `text` to a BIO_GETATTR's answer.
    pub fn attr_append(self, text: &str) {
        // SAFETY: a live bio; `text` is `len` readable bytes.
        unsafe { b::kpi_bio_attr_append(self.as_ptr(), text.as_ptr().cast(), text.len()) }
    }

    /// Hands the bio to the `g_mp_kt` kernel process.
    pub fn enqueue(self, kind: b::kpi_work) {
        // SAFETY: a live bio the class holds; the worker gives it back through gmp_rs_work_*.
        unsafe { b::kpi_worker_enqueue(self.as_ptr(), kind) }
    }
}

/// A consumer: a path of a multipath geom, or taste's private one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Consumer(NonNull<b::g_consumer>);

impl Consumer {
    /// The handle for a pointer from the kernel, if not null.
    pub fn from_raw(ptr: *mut b::g_consumer) -> Option<Consumer> {
        NonNull::new(ptr).map(Consumer)
    }

    /// The raw pointer.
    pub fn as_ptr(self) -> *mut b::g_consumer {
        self.0.as_ptr()
    }

    /// The provider it is attached to.
    pub fn provider(self) -> Option<Provider> {
        // SAFETY: a live consumer (module invariant).
        Provider::from_raw(unsafe { b::kpi_cp_provider(self.as_ptr()) })
    }

    /// `g_access`.
    pub fn access(self, dr: i32, dw: i32, de: i32) -> Result<(), Errno> {
        // SAFETY: a live, attached consumer (module invariant).
        result_of(unsafe { b::kpi_cp_access(self.as_ptr(), dr, dw, de) })
    }

    /// `g_read_data` into `buf`.
    pub fn read(self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        // SAFETY: a live, attached consumer; `buf` is writable for its length.
        result_of(unsafe {
            b::kpi_cp_read(self.as_ptr(), offset, buf.as_mut_ptr().cast(), buf.len())
        })
    }

    /// `g_write_data` of `data`.
    pub fn write(self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        // SAFETY: a live, attached consumer; `data` is readable for its length.
        result_of(unsafe {
            b::kpi_cp_write(self.as_ptr(), offset, data.as_ptr().cast(), data.len())
        })
    }

    /// `g_detach` + `g_destroy_consumer`. The handle is dead after.
    pub fn detach(self) {
        // SAFETY: a live consumer with no access left; not used again.
        unsafe { b::kpi_cp_detach(self.as_ptr()) }
    }
}

/// A provider: any GEOM provider (a path's device, or a multipath provider).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Provider(NonNull<b::g_provider>);

impl Provider {
    /// The handle for a pointer from the kernel, if not null.
    pub fn from_raw(ptr: *mut b::g_provider) -> Option<Provider> {
        NonNull::new(ptr).map(Provider)
    }

    /// The raw pointer.
    pub fn as_ptr(self) -> *mut b::g_provider {
        self.0.as_ptr()
    }

    /// `g_provider_by_name`.
    pub fn by_name(name: &str) -> Option<Provider> {
        // SAFETY: `name` is `len` readable bytes.
        Provider::from_raw(unsafe { b::kpi_pp_by_name(name.as_ptr().cast(), name.len()) })
    }

    /// The provider's name (`da0`, `multipath/FRED`).
    pub fn name(self) -> alloc::string::String {
        let mut len = 0usize;
        // SAFETY: a live provider; `len` is a valid place for the answer.
        let ptr = unsafe { b::kpi_pp_name(self.as_ptr(), &mut len) };
        // SAFETY: a provider's name lives as long as the provider; the borrow ends within
        // this call, once the name is copied.
        let name = unsafe { bytes(ptr, len) };
        alloc::string::String::from_utf8_lossy(name).into_owned()
    }

    /// Whether the provider is one of this class's, or rests on one through other classes.
    pub fn on_class(self) -> bool {
        // SAFETY: a live provider (module invariant); the topology lock is held by every
        // caller (control methods).
        unsafe { b::kpi_pp_on_class(self.as_ptr()) }
    }

    /// The geom that owns the provider.
    pub fn geom(self) -> Option<Geom> {
        // SAFETY: a live provider (module invariant).
        Geom::from_raw(unsafe { b::kpi_pp_geom(self.as_ptr()) })
    }

    /// What the core needs to know about the provider.
    pub fn info(self) -> ProviderInfo {
        let name = self.name();
        let pp = self.as_ptr();
        // SAFETY: a live provider; five plain field reads.
        let (mediasize, sectorsize, stripesize, stripeoffset, rank) = unsafe {
            (
                b::kpi_pp_mediasize(pp),
                b::kpi_pp_sectorsize(pp),
                b::kpi_pp_stripesize(pp),
                b::kpi_pp_stripeoffset(pp),
                b::kpi_pp_rank(pp),
            )
        };
        ProviderInfo {
            name,
            mediasize,
            sectorsize,
            stripesize,
            stripeoffset,
            rank,
        }
    }

    /// Sets a multipath provider's geometry.
    pub fn set_geometry(self, mediasize: u64, sectorsize: u32) {
        // SAFETY: a live provider of a geom of this class.
        unsafe { b::kpi_g_set_geometry(self.as_ptr(), mediasize, sectorsize) }
    }

    /// Sets a multipath provider's stripe geometry.
    pub fn set_stripe(self, stripesize: u64, stripeoffset: u64) {
        // SAFETY: a live provider of a geom of this class.
        unsafe { b::kpi_g_set_stripe(self.as_ptr(), stripesize, stripeoffset) }
    }

    /// `g_resize_provider`.
    pub fn resize(self, mediasize: u64) {
        // SAFETY: a live provider of a geom of this class.
        unsafe { b::kpi_g_resize(self.as_ptr(), mediasize) }
    }

    /// `g_wither_provider`.
    pub fn wither(self, error: Errno) {
        // SAFETY: a live provider of a geom of this class.
        unsafe { b::kpi_g_wither_provider(self.as_ptr(), error.0) }
    }

    /// Taste's private read of `buf.len()` bytes at `offset`.
    pub fn taste_read(self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        // SAFETY: a live provider; `buf` is writable for its length.
        result_of(unsafe {
            b::kpi_g_taste_read(self.as_ptr(), offset, buf.as_mut_ptr().cast(), buf.len())
        })
    }
}

/// A geom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Geom(NonNull<b::g_geom>);

impl Geom {
    /// The handle for a pointer from the kernel, if not null.
    pub fn from_raw(ptr: *mut b::g_geom) -> Option<Geom> {
        NonNull::new(ptr).map(Geom)
    }

    /// The raw pointer.
    pub fn as_ptr(self) -> *mut b::g_geom {
        self.0.as_ptr()
    }

    /// A new MULTIPATH geom `name` and its provider `multipath/<name>`.
    pub fn create(name: &str) -> Option<(Geom, Provider)> {
        let mut pp: *mut b::g_provider = ptr::null_mut();
        let name = c_text(name.as_bytes());
        // SAFETY: `name` is `len` readable bytes; `pp` is a valid place for the answer.
        let gp = unsafe { b::kpi_g_new_geom(name.as_ptr().cast(), name.len(), &mut pp) };
        Some((Geom::from_raw(gp)?, Provider::from_raw(pp)?))
    }

    /// `g_new_consumer` + `g_attach` to `pp`.
    pub fn attach(self, pp: Provider) -> Result<Consumer, Errno> {
        let mut cp: *mut b::g_consumer = ptr::null_mut();
        // SAFETY: a live geom of this class and a live provider; `cp` is a valid place.
        result_of(unsafe { b::kpi_g_attach(self.as_ptr(), pp.as_ptr(), &mut cp) })?;
        Consumer::from_raw(cp).ok_or(Errno::ENXIO)
    }

    /// `g_wither_geom`. The handle is dead after.
    pub fn wither(self, error: Errno) {
        // SAFETY: a live geom of this class with no consumer left; not used again.
        unsafe { b::kpi_g_wither_geom(self.as_ptr(), error.0) }
    }
}

/// A gctl request.
#[derive(Clone, Copy, Debug)]
pub struct GctlReq(NonNull<b::gctl_req>);

/// One parameter of a gctl request, borrowed from the kernel's copy.
#[derive(Clone, Copy, Debug)]
pub struct GctlParam<'a> {
    /// Its name.
    pub name: &'a [u8],
    /// Raw `KPI_GCTL_PARAM_*` flags.
    pub flags: i32,
    /// Its value (`None` if the kernel holds no copy of it).
    pub value: Option<&'a [u8]>,
    /// Its declared length.
    pub len: usize,
}

impl GctlReq {
    /// The handle for a pointer from the kernel, if not null.
    pub fn from_raw(ptr: *mut b::gctl_req) -> Option<GctlReq> {
        NonNull::new(ptr).map(GctlReq)
    }

    /// Calls `f` with each parameter, in order. The borrowed name and value do not outlive
    /// the call of `f`.
    pub fn for_each_param(self, mut f: impl FnMut(GctlParam<'_>)) {
        // SAFETY: a live request (it lives for the whole ctlreq call).
        let n = unsafe { b::kpi_gctl_nparams(self.0.as_ptr()) };
        for i in 0..n {
            let (mut name, mut name_len) = (ptr::null::<c_char>(), 0usize);
            let (mut value, mut len) = (ptr::null::<c_void>(), 0usize);
            // SAFETY: a live request, `i` in range, the four out-pointers are valid places.
            let flags = unsafe {
                b::kpi_gctl_param(
                    self.0.as_ptr(),
                    i,
                    &mut name,
                    &mut name_len,
                    &mut value,
                    &mut len,
                )
            };
            if flags < 0 {
                continue;
            }
            // SAFETY: the kernel's copy of the name lives until the request is freed, after
            // the ctlreq call; the borrow ends with this iteration.
            let name = unsafe { bytes(name, name_len) };
            let value = if value.is_null() {
                None
            } else {
                // SAFETY: as for the name: `len` readable bytes of the kernel's copy.
                Some(unsafe { bytes(value.cast(), len) })
            };
            f(GctlParam {
                name,
                flags,
                value,
                len,
            });
        }
    }

    /// `gctl_error` with `text`.
    pub fn error(self, text: &str) {
        let text = c_text(text.as_bytes());
        // SAFETY: a live request; `text` is `len` readable bytes.
        unsafe { b::kpi_gctl_error(self.0.as_ptr(), text.as_ptr().cast(), text.len()) }
    }

    /// `gctl_set_param_err` of parameter `name`.
    pub fn set_param(self, name: &str, value: &[u8]) {
        let value = c_text(value);
        // SAFETY: a live request; both slices are readable for their lengths.
        unsafe {
            b::kpi_gctl_set_param(
                self.0.as_ptr(),
                name.as_ptr().cast(),
                name.len(),
                value.as_ptr().cast(),
                value.len(),
            )
        }
    }
}

/// An sbuf being filled by `kern.geom.confxml`; it takes text through [`core::fmt::Write`].
#[derive(Debug)]
pub struct Sbuf(NonNull<b::sbuf>);

impl Sbuf {
    /// The handle for a pointer from the kernel, if not null.
    pub fn from_raw(ptr: *mut b::sbuf) -> Option<Sbuf> {
        NonNull::new(ptr).map(Sbuf)
    }
}

impl core::fmt::Write for Sbuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        // SAFETY: a live sbuf (it lives for the whole dumpconf call); `s` is readable.
        unsafe { b::kpi_sbuf_cat(self.0.as_ptr(), s.as_ptr().cast(), s.len()) };
        Ok(())
    }
}

/// Text from C as a slice: `indent` of dumpconf.
///
/// # Safety
/// A non-null `ptr` must point at `len` readable bytes valid for `'a`.
pub unsafe fn text<'a>(ptr: *const c_char, len: usize) -> &'a str {
    // SAFETY: forwarded from this function's contract.
    core::str::from_utf8(unsafe { bytes(ptr, len) }).unwrap_or("")
}

/// The kernel's services that are not methods of a kernel object.
pub mod kernel {
    use super::{c_text, result_of, Bio};
    use crate::bindings as b;
    use core::ffi::c_void;
    use geom_multipath::Errno;

    /// `malloc(9)` of `size` bytes aligned to `align` with `KPI_M_*` flags; null only with
    /// `KPI_M_NOWAIT`.
    ///
    /// # Safety
    /// `size` is not zero and `align` is a power of two.
    pub unsafe fn malloc(size: usize, align: usize, flags: i32) -> *mut c_void {
        // SAFETY: forwarded from this function's contract, which is kpi_malloc's.
        unsafe { b::kpi_malloc(size, align, flags) }
    }

    /// `free(9)` of what [`malloc`] returned.
    ///
    /// # Safety
    /// `ptr` is null or came from [`malloc`] with this size and alignment, and is not used
    /// after.
    pub unsafe fn free(ptr: *mut c_void, size: usize, align: usize) {
        // SAFETY: forwarded from this function's contract, which is kpi_free's.
        unsafe { b::kpi_free(ptr, size, align) }
    }

    /// Whether the current thread may sleep (and so `malloc(9)` may be `M_WAITOK`).
    pub fn can_sleep() -> bool {
        // SAFETY: no preconditions; reads the current thread's state.
        unsafe { b::kpi_can_sleep() }
    }

    /// `printf(9)` of one console line.
    pub fn log(level: b::kpi_log_level, text: &[u8]) {
        let text = c_text(text);
        // SAFETY: `text` is readable for its length.
        unsafe { b::kpi_log(level, text.as_ptr().cast(), text.len()) }
    }

    /// `panic(9)` with `text`.
    #[cfg_attr(not(feature = "kernel"), allow(dead_code))]
    pub fn panic(text: &[u8]) -> ! {
        let text = c_text(text);
        // SAFETY: `text` is readable for its length; kpi_panic does not return.
        unsafe { b::kpi_panic(text.as_ptr().cast(), text.len()) }
    }

    /// `random(9)`.
    pub fn random() -> u32 {
        // SAFETY: no preconditions.
        unsafe { b::kpi_random() }
    }

    /// Waits for the class gate and takes it; EDEADLK if this thread holds it already.
    pub fn gate_enter() -> Result<(), Errno> {
        // SAFETY: no preconditions; may sleep, which every caller of it may.
        result_of(unsafe { b::kpi_gate_enter() })
    }

    /// Gives back what [`gate_enter`] took.
    ///
    /// # Safety
    /// This thread took the gate with [`gate_enter`] and gives it back once.
    pub unsafe fn gate_exit() {
        // SAFETY: forwarded from this function's contract.
        unsafe { b::kpi_gate_exit() }
    }

    /// Takes the class gate if it is free, without sleeping.
    pub fn gate_try_enter() -> bool {
        // SAFETY: no preconditions; never sleeps.
        unsafe { b::kpi_gate_try_enter() }
    }

    /// Gives back what [`gate_try_enter`] took.
    ///
    /// # Safety
    /// This thread took the gate with [`gate_try_enter`] and gives it back once.
    pub unsafe fn gate_try_exit() {
        // SAFETY: forwarded from this function's contract.
        unsafe { b::kpi_gate_try_exit() }
    }

    /// `mtx_lock` of the route mutex (the data path's short lock).
    pub fn route_lock() {
        // SAFETY: no preconditions; the mutex lives from kpi_setup to kpi_teardown, which
        // bracket every call into the module that reaches here.
        unsafe { b::kpi_route_lock() }
    }

    /// `mtx_unlock` of the route mutex.
    ///
    /// # Safety
    /// This thread holds the route mutex ([`route_lock`]) and gives it back once.
    pub unsafe fn route_unlock() {
        // SAFETY: forwarded from this function's contract.
        unsafe { b::kpi_route_unlock() }
    }

    /// `msleep` on the route mutex until [`route_wakeup`].
    ///
    /// # Safety
    /// This thread holds the route mutex, and may sleep apart from it (a control method).
    pub unsafe fn route_wait() {
        // SAFETY: forwarded from this function's contract.
        unsafe { b::kpi_route_wait() }
    }

    /// `wakeup` of the route mutex's sleepers.
    ///
    /// # Safety
    /// This thread holds the route mutex.
    pub unsafe fn route_wakeup() {
        // SAFETY: forwarded from this function's contract.
        unsafe { b::kpi_route_wakeup() }
    }

    /// MOD_LOAD: the gate and the `g_mp_kt` process.
    pub fn setup() -> Result<(), Errno> {
        // SAFETY: called once per load, before any other kpi_ call of the module's life.
        result_of(unsafe { b::kpi_setup() })
    }

    /// Stops `g_mp_kt` once it has drained its queues; returns when it has left the module.
    pub fn worker_stop() {
        // SAFETY: no preconditions (a no-op when the process does not run); sleeps, which
        // the fini method and the module's event handler may.
        unsafe { b::kpi_worker_stop() }
    }

    /// Cancels the class's pending GEOM events (each runs `gmp_rs_event(true)` at once).
    pub fn cancel_events() {
        // SAFETY: no preconditions.
        unsafe { b::kpi_cancel_events() }
    }

    /// Undoes [`setup`].
    pub fn teardown() {
        // SAFETY: no preconditions (a no-op when not set up); nothing uses the gate after.
        unsafe { b::kpi_teardown() }
    }

    /// Whether requests handed to `g_mp_kt` wait to be routed.
    pub fn worker_starts_pending() -> bool {
        // SAFETY: no preconditions; never sleeps.
        unsafe { b::kpi_worker_starts_pending() }
    }

    /// Posts one GEOM event that runs the oldest deferred work; `sleep` says whether the post
    /// may wait for memory.
    pub fn post_event(sleep: bool) -> Result<(), Errno> {
        let flags = if sleep {
            b::KPI_M_WAITOK
        } else {
            b::KPI_M_NOWAIT
        };
        // SAFETY: no preconditions; the event calls gmp_rs_event on the GEOM event thread.
        result_of(unsafe { b::kpi_post_event(flags) })
    }

    /// Fires `geom:multipath:config:<probe>(a, bb[, error])`.
    pub fn sdt_config(probe: b::kpi_sdt_config, a: &str, bb: &str, error: i32) {
        let (a, bb) = (c_text(a.as_bytes()), c_text(bb.as_bytes()));
        // SAFETY: both strings are readable for their lengths.
        unsafe {
            b::kpi_sdt_config(
                probe,
                a.as_ptr().cast(),
                a.len(),
                bb.as_ptr().cast(),
                bb.len(),
                error,
            )
        }
    }

    /// Fires `geom:multipath:io:restart(child, parent)`: `parent` is the live request being
    /// reissued, `child` its failed attempt (if known). The probe only records the pointers.
    pub fn sdt_restart(child: Option<Bio>, parent: *mut b::bio) {
        let child = child.map_or(core::ptr::null_mut(), Bio::as_ptr);
        // SAFETY: the probe only records the two pointers.
        unsafe { b::kpi_sdt_restart(child, parent) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_for_percent_star_s_never_exceeds_int_max() {
        let int_max = usize::try_from(i32::MAX).unwrap();
        for len in [int_max + 1, 1 << 32, usize::MAX] {
            assert_eq!(c_len(len), int_max, "{len} bytes");
            assert!(i32::try_from(c_len(len)).is_ok());
        }
        assert_eq!(c_len(int_max), int_max);
        assert_eq!(c_len(4), 4);
        assert_eq!(c_text(b"FRED"), b"FRED");
    }

    #[test]
    fn bio_commands_map_onto_ops() {
        assert_eq!(op_of(1, false), Op::Read);
        assert_eq!(op_of(2, false), Op::Write);
        assert_eq!(op_of(3, false), Op::Delete);
        assert_eq!(op_of(5, false), Op::Flush);
        assert_eq!(op_of(4, true), Op::GetAttr { physpath: true });
        assert_eq!(op_of(4, false), Op::GetAttr { physpath: false });
        assert_eq!(
            op_of(0x0a, false),
            Op::Other(0x0a),
            "BIO_SPEEDUP goes through"
        );
        assert_eq!(op_of(0x1234, false), Op::Other(u8::MAX));
    }

    #[test]
    fn gctl_flags_map_onto_the_core_bits() {
        assert_eq!(param_flags_of(1), PARAM_RD);
        assert_eq!(param_flags_of(2 | 4), PARAM_WR | PARAM_ASCII);
        assert_eq!(
            param_flags_of(8 | 16 | 32),
            0,
            "kernel-only bits are dropped"
        );
    }

    #[test]
    fn kpi_errnos_are_the_cores() {
        for (kpi, core) in [
            (b::KPI_EPERM, Errno::EPERM),
            (b::KPI_EIO, Errno::EIO),
            (b::KPI_ENXIO, Errno::ENXIO),
            (b::KPI_ENOMEM, Errno::ENOMEM),
            (b::KPI_EBUSY, Errno::EBUSY),
            (b::KPI_EEXIST, Errno::EEXIST),
            (b::KPI_EINVAL, Errno::EINVAL),
        ] {
            assert_eq!(kpi, core.0);
        }
        assert_eq!(result_of(0), Ok(()));
        assert_eq!(errno_of(result_of(5)), 5);
    }
}

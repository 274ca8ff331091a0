//! The kernel as geom(8)'s backend on FreeBSD: [`KernelBackend`] sends requests with the
//! `GEOM_CTL` ioctl, reads `kern.geom.confxml`, and finds, loads and unloads the class's
//! module with the kld calls, exactly as geom(8) and libgeom do.
//!
//! The decisions are elsewhere and tested on every platform: the request encoding and
//! `gctl_issue`'s answer in [`crate::gctl`], the module names and the `kern.module_path`
//! search in [`crate::kld`]; the system calls are in
//! [`geom_multipath_sys::freebsd`]. This module only connects them.

use std::io;

use geom_multipath::wire::Reply;
use geom_multipath::Request;
use geom_multipath_proto::{Answer, Call};
use geom_multipath_sys::freebsd as sys;

use crate::backend::{Backend, UnloadError};
use crate::gctl;
use crate::kld::{self, ClassModule};

/// The sysctl holding the GEOM tree as XML.
pub const CONFXML: &str = "kern.geom.confxml";
/// The sysctl listing the directories kldload searches.
pub const MODULE_PATH: &str = "kern.module_path";

/// The FreeBSD kernel, for one class.
#[derive(Clone, Debug)]
pub struct KernelBackend {
    names: ClassModule,
}

impl KernelBackend {
    /// The backend for class `class` (`multipath`, `nop`).
    pub fn for_class(class: &str) -> KernelBackend {
        KernelBackend {
            names: ClassModule::for_class(class),
        }
    }
}

impl Backend for KernelBackend {
    /// `modfind("g_<class>")`.
    fn loaded(&mut self) -> bool {
        sys::modfind(&self.names.module).is_ok()
    }

    /// `std_load_available` without the modfind: `geom_<class>.ko` in a directory of
    /// `kern.module_path`.
    fn loadable(&mut self) -> bool {
        sys::sysctl_string(MODULE_PATH)
            .is_ok_and(|paths| self.names.find_file(&paths, |p| p.exists()).is_some())
    }

    /// `load_module`: kldload the file; EEXIST (loaded meanwhile) is fine, and a load
    /// that did not make the module appear fails with modfind's errno.
    fn load(&mut self) -> io::Result<()> {
        let outcome = sys::kldload(&self.names.file).and_then(|_| sys::modfind(&self.names.module));
        match outcome {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::EEXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `std_unload`: kldfind the file, then kldunload it.
    fn unload(&mut self) -> Result<(), UnloadError> {
        let id = sys::kldfind(&self.names.file).map_err(UnloadError::NotFound)?;
        Ok(sys::kldunload(id)?)
    }

    /// `gctl_issue` over the `GEOM_CTL` ioctl.
    fn issue(&mut self, req: &Request) -> Result<Reply, String> {
        gctl::issue(req, sys::geom_ctl)
    }

    /// `geom_getxml`: the `kern.geom.confxml` sysctl.
    fn confxml(&mut self) -> io::Result<String> {
        sys::sysctl_string(CONFXML)
    }

    /// The kernel has no host calls.
    fn host_call(&mut self, _call: &Call) -> Option<io::Result<Answer>> {
        None
    }

    /// GEOM's event queue orders the re-taste of a closed provider before any later
    /// request: nothing to wait for.
    fn settle(&mut self) {}
}

/// Runs geom(8) against the FreeBSD kernel with the process's own stdio; returns the exit
/// status. The class's module names come from the program name, as geom(8) takes them.
pub fn main_with_kernel(argv: &[String]) -> i32 {
    let class = kld::class_of(argv).unwrap_or_default();
    let mut backend = KernelBackend::for_class(&class);
    crate::main_with(&mut backend, argv)
}

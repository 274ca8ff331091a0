//! The one way an export holds a provider: [`AccessGuard`] takes access through the
//! owner (GEOM's `g_access`) and gives exactly that access back, once, when it is dropped;
//! [`is_ready`] says whether a provider can be exported at all.
//!
//! Every export uses these and nothing else: a FUSE open holds the access its open mode
//! asks for; an NBD session and a GEOM Gate device hold r1w1, or r1 when writing is
//! refused with EPERM (someone holds the provider exclusively), and say so to their
//! clients as read-only.

use geom_multipath::{Errno, GeomId};

use crate::msg::exports::Export;
use crate::msg::OwnerHandle;

/// A provider can be exported once it has a size.
pub(crate) fn is_ready(e: &Export) -> bool {
    e.mediasize > 0 && e.sectorsize > 0
}

/// Access to one provider held by an export, given back when the guard is dropped.
pub(crate) struct AccessGuard {
    owner: OwnerHandle,
    geom: GeomId,
    /// The provider's name, for the log.
    name: String,
    read: bool,
    write: bool,
}

impl AccessGuard {
    /// Takes exactly `read`/`write` access on `export`'s provider.
    pub(crate) fn take(
        owner: &OwnerHandle,
        export: &Export,
        read: bool,
        write: bool,
    ) -> Result<AccessGuard, Errno> {
        owner.access(export.geom, i32::from(read), i32::from(write), 0)?;
        Ok(AccessGuard {
            owner: owner.clone(),
            geom: export.geom,
            name: export.name.clone(),
            read,
            write,
        })
    }

    /// Takes r1w1 on `export`'s provider, or r1 when writing is refused with EPERM.
    pub(crate) fn read_write_or_read_only(
        owner: &OwnerHandle,
        export: &Export,
    ) -> Result<AccessGuard, Errno> {
        match AccessGuard::take(owner, export, true, true) {
            Err(Errno::EPERM) => AccessGuard::take(owner, export, true, false),
            taken => taken,
        }
    }

    /// Write access is held (else the export is read-only).
    pub(crate) fn writable(&self) -> bool {
        self.write
    }
}

impl std::fmt::Debug for AccessGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessGuard")
            .field("provider", &self.name)
            .field("read", &self.read)
            .field("write", &self.write)
            .finish_non_exhaustive()
    }
}

impl Drop for AccessGuard {
    fn drop(&mut self) {
        let (dr, dw) = (-i32::from(self.read), -i32::from(self.write));
        if let Err(e) = self.owner.access(self.geom, dr, dw, 0) {
            tracing::debug!(
                "multipath/{}: giving back access {dr},{dw},0 failed: {e:?}",
                self.name
            );
        }
    }
}

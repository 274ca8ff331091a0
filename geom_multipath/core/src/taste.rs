//! Taste (`g_multipath_taste`, COMPAT.md §2): look at a provider's last sector and, if it
//! holds a MULTIPATH label that fits the provider, join the geom with the label's UUID or
//! create it.
//!
//! The checks run in FreeBSD's order — magic, version, size, sector size — so the same
//! labels are accepted and the same two messages are printed. A name clash with a geom of a
//! different UUID renames the newcomer `<name>-<random>` (cut to 15 bytes); the random
//! value comes from the caller so that every run replays.

use alloc::format;
use alloc::string::String;
use alloc::vec;

use crate::class::Class;
use crate::event::{Message, Probe};
use crate::lifecycle::NewGeom;
use crate::metadata::{self, DecodeError, Metadata, NAME_MAX};
use crate::topology::{GeomId, ProviderInfo, Topology};

impl Class {
    /// Tastes provider `pp`. Returns the geom the provider joined, if any.
    ///
    /// A provider this class already holds through a path whose provider has not gone away
    /// is not tasted again (GEOM skips such classes).
    pub fn taste(
        &mut self,
        topo: &mut dyn Topology,
        pp: &ProviderInfo,
        random: u32,
    ) -> Option<GeomId> {
        if self.paths_on_provider(&pp.name).next().is_some() {
            return None;
        }
        let md = self.read_label(topo, pp)?;
        let misfit = if md.size != 0 && md.size != pp.mediasize {
            Some(("size", md.size, pp.mediasize))
        } else if md.sectorsize != 0 && md.sectorsize != pp.sectorsize {
            Some((
                "sector size",
                u64::from(md.sectorsize),
                u64::from(pp.sectorsize),
            ))
        } else {
            None
        };
        if let Some((what, label, actual)) = misfit {
            self.log(Message::LabelMisfit {
                provider: pp.name.clone(),
                what,
                label,
                actual,
            });
            return None;
        }
        self.log(Message::Tasted {
            name: md.name.clone(),
            uuid: md.uuid.clone(),
        });
        self.probe(Probe::Taste {
            name: md.name.clone(),
            uuid: md.uuid.clone(),
        });
        let (existing, name) = self.taste_match(&md, random);
        let (geom, is_new) = match existing {
            Some(geom) => (geom, false),
            None => {
                let new = NewGeom {
                    name: &name,
                    ..NewGeom::from(&md)
                };
                let Some(geom) = self.create_geom(topo, new) else {
                    self.log(Message::CannotCreate {
                        geom: name,
                        uuid: md.uuid,
                    });
                    return None;
                };
                (geom, true)
            }
        };
        if self.add_disk(topo, geom, pp).is_err() {
            if is_new {
                self.destroy(topo, geom);
            }
            return None;
        }
        Some(geom)
    }

    /// Reads and decodes the label of `pp`, printing FreeBSD's messages for a foreign
    /// sector (debug only) and a wrong version.
    fn read_label(&mut self, topo: &mut dyn Topology, pp: &ProviderInfo) -> Option<Metadata> {
        let sectorsize = pp.sectorsize as usize;
        if sectorsize < metadata::ENCODED_LEN || pp.mediasize < u64::from(pp.sectorsize) {
            return None;
        }
        let mut sector = vec![0u8; sectorsize];
        let offset = pp.mediasize - u64::from(pp.sectorsize);
        topo.taste_read(&pp.name, offset, &mut sector).ok()?;
        match metadata::decode(&sector) {
            Ok(md) => Some(md),
            Err(DecodeError::Magic) => {
                self.log(Message::NotMultipath {
                    provider: pp.name.clone(),
                });
                None
            }
            Err(DecodeError::Version(version)) => {
                self.log(Message::BadVersion {
                    provider: pp.name.clone(),
                    version,
                });
                None
            }
            Err(e) => {
                self.log(Message::CorruptLabel {
                    provider: pp.name.clone(),
                    reason: format!("{e}"),
                });
                None
            }
        }
    }

    /// The geom with the label's UUID, and the name to use if a new geom must be made:
    /// the label's, or `<name>-<random>` when another geom already has that name.
    fn taste_match(&mut self, md: &Metadata, random: u32) -> (Option<GeomId>, String) {
        let live = |class: &Class, id: GeomId| !class.live_geom(id).stopping;
        let by_uuid = self
            .geom_order
            .iter()
            .copied()
            .find(|&id| live(self, id) && self.live_geom(id).uuid == md.uuid);
        let by_name = self.geom_order.iter().copied().find(|&id| {
            Some(id) != by_uuid && live(self, id) && self.live_geom(id).name == md.name
        });
        let mut name = md.name.clone();
        if let Some(clash) = by_name {
            let g = self.live_geom(clash);
            if by_uuid.is_none() {
                let (geom, uuid) = (g.name.clone(), g.uuid.clone());
                name = format!("{}-{}", md.name, random);
                truncate_to_name(&mut name);
                self.log(Message::GeomExists { geom, uuid });
                self.log(Message::WillBe {
                    uuid: md.uuid.clone(),
                    name: name.clone(),
                });
            } else {
                name = g.name.clone();
            }
        }
        (by_uuid, name)
    }
}

/// Cuts `name` to the 15 bytes a geom name may have (FreeBSD's 16-byte buffer).
fn truncate_to_name(name: &mut String) {
    let mut end = name.len().min(NAME_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
}

//! The class's part of GEOM's XML (`kern.geom.confxml`): `g_multipath_dumpconf` — the
//! `<config>` contents of a geom, a path and the provider — and, for drivers that build the
//! whole `<mesh>` themselves (the host), the complete `<class>` element, laid out by the one
//! [`geom_dump`] writer every class shares.
//!
//! The kernel module calls only the three per-object writers (GEOM writes the rest); the
//! host calls [`Class::conf_class`]. Consumers are written in kernel order (newest first)
//! and libgeom reverses them, which is why `gmultipath list` shows attach order.

use alloc::string::String;
use core::fmt::{self, Write};

use crate::class::Class;
use crate::geom_dump::{self, foreign_provider_id, xml_id, Config, IdKind};
use crate::metadata::CLASS_NAME;
use crate::settings::Setting;
use crate::stats_xml;
use crate::topology::{GeomId, PathId, ProviderInfo};

impl Class {
    /// `g_multipath_dumpconf` for the geom itself: State, UUID, Mode, Type — preceded by
    /// the `configure` extensions that are set, in reverse, because libgeom lists a geom's
    /// config backwards: `gmultipath list` shows FreeBSD's four lines, then each set
    /// extension in [`Setting::ALL`] order.
    pub fn dumpconf_geom(&self, geom: GeomId, indent: &str, out: &mut dyn Write) -> fmt::Result {
        let Some(g) = self.geom(geom) else {
            return Ok(());
        };
        let settings = g.settings();
        for setting in Setting::ALL.iter().rev() {
            let mut value = String::new();
            if let Some(written) = settings.write(*setting, &mut value) {
                written?;
                let element = setting.element();
                writeln!(out, "{indent}<{element}>{value}</{element}>")?;
            }
        }
        writeln!(out, "{indent}<State>{}</State>", g.state())?;
        writeln!(out, "{indent}<UUID>{}</UUID>", g.uuid())?;
        writeln!(out, "{indent}<Mode>{}</Mode>", g.mode())?;
        writeln!(out, "{indent}<Type>{}</Type>", g.geom_type())
    }

    /// `g_multipath_dumpconf` for a path: its State.
    pub fn dumpconf_consumer(
        &self,
        path: PathId,
        indent: &str,
        out: &mut dyn Write,
    ) -> fmt::Result {
        match self.path_state(path) {
            Some(state) => writeln!(out, "{indent}<State>{state}</State>"),
            None => Ok(()),
        }
    }

    /// `g_multipath_dumpconf` for the provider: the geom's State.
    pub fn dumpconf_provider(
        &self,
        geom: GeomId,
        indent: &str,
        out: &mut dyn Write,
    ) -> fmt::Result {
        match self.geom_state(geom) {
            Some(state) => writeln!(out, "{indent}<State>{state}</State>"),
            None => Ok(()),
        }
    }

    /// The class's whole `<class>` element, as `g_conf_class` writes it, for a driver that
    /// builds the `<mesh>` itself. Consumers refer to their providers with
    /// [`foreign_provider_id`].
    pub fn conf_class(&self, out: &mut dyn Write) -> fmt::Result {
        self.conf_class_detail(out, false)
    }

    /// [`conf_class`](Class::conf_class) with the counters (an extension, only when asked):
    /// each geom's and path's `<config>` gains the elements [`stats_xml`] writes after
    /// FreeBSD's. Call [`observe_states`](Class::observe_states) first so the time per
    /// state is current.
    pub fn conf_class_stats(&self, out: &mut dyn Write) -> fmt::Result {
        self.conf_class_detail(out, true)
    }

    fn conf_class_detail(&self, out: &mut dyn Write, stats: bool) -> fmt::Result {
        let class_id = xml_id(IdKind::Class, 0);
        geom_dump::class_start(out, &class_id, CLASS_NAME)?;
        for gid in self.geoms() {
            self.conf_geom(out, gid, &class_id, stats)?;
        }
        geom_dump::class_end(out)
    }

    fn conf_geom(
        &self,
        out: &mut dyn Write,
        gid: GeomId,
        class_id: &str,
        stats: bool,
    ) -> fmt::Result {
        let Some(g) = self.geom(gid) else {
            return Ok(());
        };
        let geom_id = xml_id(IdKind::Geom, gid.index());
        let rank = 1 + g
            .paths()
            .filter_map(|p| self.paths.get(p.0))
            .map(|p| p.rank)
            .max()
            .unwrap_or(0);
        let config = |out: &mut dyn Write, indent: &str| {
            self.dumpconf_geom(gid, indent, out)?;
            match (stats, self.geom_stats(gid)) {
                (true, Some(s)) => stats_xml::geom(out, indent, self.clock(), s),
                _ => Ok(()),
            }
        };
        geom_dump::geom_start(
            out,
            &geom_id,
            class_id,
            g.name(),
            rank,
            Config::Lines(&config),
        )?;
        for pid in g.paths() {
            self.conf_consumer(out, pid, &geom_id, stats)?;
        }
        self.conf_provider(out, gid, &geom_id)?;
        geom_dump::geom_end(out)
    }

    fn conf_consumer(
        &self,
        out: &mut dyn Write,
        pid: PathId,
        geom_id: &str,
        stats: bool,
    ) -> fmt::Result {
        let Some(p) = self.path(pid) else {
            return Ok(());
        };
        let config = |out: &mut dyn Write, indent: &str| {
            self.dumpconf_consumer(pid, indent, out)?;
            match (stats, self.path_stats(pid)) {
                (true, Some(s)) => stats_xml::path(out, indent, p.inflight(), s),
                _ => Ok(()),
            }
        };
        geom_dump::consumer(
            out,
            &xml_id(IdKind::Consumer, pid.index()),
            geom_id,
            &foreign_provider_id(p.name()),
            p.access_counts(),
            Config::Lines(&config),
        )
    }

    fn conf_provider(&self, out: &mut dyn Write, gid: GeomId, geom_id: &str) -> fmt::Result {
        let Some(g) = self.geom(gid) else {
            return Ok(());
        };
        let (stripesize, stripeoffset) = g.stripe();
        let pp = ProviderInfo {
            name: alloc::format!("multipath/{}", g.name()),
            mediasize: g.mediasize(),
            sectorsize: g.sectorsize(),
            stripesize,
            stripeoffset,
            rank: 0,
        };
        let config = |out: &mut dyn Write, indent: &str| self.dumpconf_provider(gid, indent, out);
        let config = if g.withered() {
            Config::Wither
        } else {
            Config::Lines(&config)
        };
        let id = xml_id(IdKind::Provider, gid.index());
        geom_dump::provider(out, &id, geom_id, g.access_counts(), &pp, config)
    }
}

//! The class's part of GEOM's XML (`kern.geom.confxml`): `g_multipath_dumpconf` — the
//! `<config>` contents of a geom, a path and the provider — and, for drivers that build the
//! whole `<mesh>` themselves (the host), the complete `<class>` element laid out exactly as
//! `geom_dump.c` lays out every class.
//!
//! The kernel module calls only the three per-object writers (GEOM writes the rest); the
//! host calls [`Class::conf_class`]. Consumers are written in kernel order (newest first)
//! and libgeom reverses them, which is why `gmultipath list` shows attach order.

use alloc::string::String;
use core::fmt::{self, Write};

use crate::class::Class;
use crate::metadata::CLASS_NAME;
use crate::topology::{GeomId, PathId, ProviderInfo};

/// The kinds of object an XML id names.
#[derive(Clone, Copy)]
enum Kind {
    Class = 1,
    Geom = 2,
    Consumer = 3,
    Provider = 4,
}

fn xml_id(kind: Kind, index: u64) -> String {
    alloc::format!("0x{:x}", ((kind as u64) << 60) | (index & ((1 << 60) - 1)))
}

/// The XML id the host gives a foreign provider (a path's device) in its own classes, so a
/// multipath consumer's `<provider ref>` points at it: FNV-1a of the name, tagged.
pub fn foreign_provider_id(name: &str) -> String {
    alloc::format!("0x{:x}", (5u64 << 60) | foreign_hash(name))
}

/// `g_conf_cat_escaped`: `&<>'"` and bytes above 0x7e become `&#xHH;`, other control
/// characters than tab, newline and return become `?`.
pub fn escape(out: &mut dyn Write, text: &str) -> fmt::Result {
    for &b in text.as_bytes() {
        match b {
            b'&' | b'<' | b'>' | b'\'' | b'"' | 0x7f..=0xff => write!(out, "&#x{b:X};")?,
            b'\t' | b'\n' | b'\r' | 0x20..=0x7e => out.write_char(char::from(b))?,
            _ => out.write_char('?')?,
        }
    }
    Ok(())
}

/// A `<class>` element for providers that belong to no class of ours — the host's block
/// devices — one geom per provider, named like the provider, with the ids
/// [`foreign_provider_id`] gives so multipath consumers can refer to them. `class_name` is
/// what the class is called in the tree (`DISK`).
pub fn conf_foreign_class<'a>(
    out: &mut dyn Write,
    class_name: &str,
    providers: impl IntoIterator<Item = (&'a ProviderInfo, (i32, i32, i32))>,
) -> fmt::Result {
    let class_id = xml_id(Kind::Class, foreign_hash(class_name));
    writeln!(out, "  <class id=\"{class_id}\">")?;
    out.write_str("    <name>")?;
    escape(out, class_name)?;
    out.write_str("</name>\n")?;
    for (pp, (r, w, e)) in providers {
        let geom_id = xml_id(Kind::Geom, foreign_hash(&pp.name));
        writeln!(out, "    <geom id=\"{geom_id}\">")?;
        writeln!(out, "      <class ref=\"{class_id}\"/>")?;
        out.write_str("      <name>")?;
        escape(out, &pp.name)?;
        out.write_str("</name>\n")?;
        writeln!(out, "      <rank>{}</rank>", pp.rank)?;
        writeln!(out, "\t<provider id=\"{}\">", foreign_provider_id(&pp.name))?;
        writeln!(out, "\t  <geom ref=\"{geom_id}\"/>")?;
        writeln!(out, "\t  <mode>r{r}w{w}e{e}</mode>")?;
        out.write_str("\t  <name>")?;
        escape(out, &pp.name)?;
        out.write_str("</name>\n")?;
        writeln!(out, "\t  <mediasize>{}</mediasize>", pp.mediasize)?;
        writeln!(out, "\t  <sectorsize>{}</sectorsize>", pp.sectorsize)?;
        writeln!(out, "\t  <stripesize>{}</stripesize>", pp.stripesize)?;
        writeln!(out, "\t  <stripeoffset>{}</stripeoffset>", pp.stripeoffset)?;
        out.write_str("\t</provider>\n")?;
        out.write_str("    </geom>\n")?;
    }
    out.write_str("  </class>\n")
}

fn foreign_hash(name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash >> 4
}

impl Class {
    /// `g_multipath_dumpconf` for the geom itself: State, UUID, Mode, Type.
    pub fn dumpconf_geom(&self, geom: GeomId, indent: &str, out: &mut dyn Write) -> fmt::Result {
        let Some(g) = self.geom(geom) else {
            return Ok(());
        };
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
        let class_id = xml_id(Kind::Class, 0);
        writeln!(out, "  <class id=\"{class_id}\">")?;
        out.write_str("    <name>")?;
        escape(out, CLASS_NAME)?;
        out.write_str("</name>\n")?;
        for gid in self.geoms() {
            self.conf_geom(out, gid, &class_id)?;
        }
        out.write_str("  </class>\n")
    }

    fn conf_geom(&self, out: &mut dyn Write, gid: GeomId, class_id: &str) -> fmt::Result {
        let Some(g) = self.geom(gid) else {
            return Ok(());
        };
        let geom_id = xml_id(Kind::Geom, gid.index());
        let rank = 1 + g
            .paths()
            .filter_map(|p| self.paths.get(p.0))
            .map(|p| p.rank)
            .max()
            .unwrap_or(0);
        writeln!(out, "    <geom id=\"{geom_id}\">")?;
        writeln!(out, "      <class ref=\"{class_id}\"/>")?;
        out.write_str("      <name>")?;
        escape(out, g.name())?;
        out.write_str("</name>\n")?;
        writeln!(out, "      <rank>{rank}</rank>")?;
        out.write_str("      <config>\n")?;
        self.dumpconf_geom(gid, "\t", out)?;
        out.write_str("      </config>\n")?;
        for pid in g.paths() {
            self.conf_consumer(out, pid, &geom_id)?;
        }
        self.conf_provider(out, gid, &geom_id)?;
        out.write_str("    </geom>\n")
    }

    fn conf_consumer(&self, out: &mut dyn Write, pid: PathId, geom_id: &str) -> fmt::Result {
        let Some(p) = self.path(pid) else {
            return Ok(());
        };
        let (r, w, e) = p.access_counts();
        writeln!(
            out,
            "\t<consumer id=\"{}\">",
            xml_id(Kind::Consumer, pid.index())
        )?;
        writeln!(out, "\t  <geom ref=\"{geom_id}\"/>")?;
        writeln!(
            out,
            "\t  <provider ref=\"{}\"/>",
            foreign_provider_id(p.name())
        )?;
        writeln!(out, "\t  <mode>r{r}w{w}e{e}</mode>")?;
        out.write_str("\t  <config>\n")?;
        self.dumpconf_consumer(pid, "\t    ", out)?;
        out.write_str("\t  </config>\n")?;
        out.write_str("\t</consumer>\n")
    }

    fn conf_provider(&self, out: &mut dyn Write, gid: GeomId, geom_id: &str) -> fmt::Result {
        let Some(g) = self.geom(gid) else {
            return Ok(());
        };
        let (r, w, e) = g.access_counts();
        let (stripesize, stripeoffset) = g.stripe();
        writeln!(
            out,
            "\t<provider id=\"{}\">",
            xml_id(Kind::Provider, gid.index())
        )?;
        writeln!(out, "\t  <geom ref=\"{geom_id}\"/>")?;
        writeln!(out, "\t  <mode>r{r}w{w}e{e}</mode>")?;
        out.write_str("\t  <name>")?;
        escape(out, "multipath/")?;
        escape(out, g.name())?;
        out.write_str("</name>\n")?;
        writeln!(out, "\t  <mediasize>{}</mediasize>", g.mediasize())?;
        writeln!(out, "\t  <sectorsize>{}</sectorsize>", g.sectorsize())?;
        writeln!(out, "\t  <stripesize>{stripesize}</stripesize>")?;
        writeln!(out, "\t  <stripeoffset>{stripeoffset}</stripeoffset>")?;
        if g.withered() {
            out.write_str("\t  <wither/>\n")?;
        } else {
            out.write_str("\t  <config>\n")?;
            self.dumpconf_provider(gid, "\t    ", out)?;
            out.write_str("\t  </config>\n")?;
        }
        out.write_str("\t</provider>\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_g_conf_cat_escaped() {
        let mut s = String::new();
        escape(&mut s, "a&b<c>'d\"e\u{1}\tf").unwrap();
        assert_eq!(s, "a&#x26;b&#x3C;c&#x3E;&#x27;d&#x22;e?\tf");
        let mut hi = String::new();
        escape(&mut hi, "é").unwrap();
        assert_eq!(hi, "&#xC3;&#xA9;");
    }

    #[test]
    fn foreign_ids_are_stable_and_distinct() {
        assert_eq!(foreign_provider_id("md0"), foreign_provider_id("md0"));
        assert_ne!(foreign_provider_id("md0"), foreign_provider_id("md1"));
        assert!(foreign_provider_id("md0").starts_with("0x5"));
    }
}

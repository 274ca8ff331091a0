//! The one writer of FreeBSD's `geom_dump.c` layout: the `<class>`, `<geom>`, `<consumer>`
//! and `<provider>` elements of `kern.geom.confxml`, their ids, and the text escaping, for
//! every class a driver shows — MULTIPATH ([`Class::conf_class`](crate::Class::conf_class)),
//! the host's block devices as DISK ([`conf_foreign_class`]) and the host's NOP class.
//!
//! It owns the element shapes, their indentation and the ids; it does not know what a class
//! puts in an element's `<config>` (that is each class's dumpconf, handed in as a
//! [`Config`]). The invariant: two elements that name the same object carry the same id,
//! so a consumer's `<provider ref>` finds the provider whichever class wrote it.

use alloc::string::String;
use core::fmt::{self, Write};

use crate::topology::ProviderInfo;

/// What an XML id names: the top four bits of every id. MULTIPATH uses 1–5 (5 for the
/// providers below it that belong to no class of ours), the host's NOP class 6–8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    /// A `<class>`.
    Class = 1,
    /// A MULTIPATH or DISK `<geom>`.
    Geom = 2,
    /// A MULTIPATH `<consumer>`.
    Consumer = 3,
    /// A MULTIPATH `<provider>`.
    Provider = 4,
    /// A provider that belongs to no class of ours (a path's device), or a NOP provider.
    ForeignProvider = 5,
    /// The NOP `<class>`.
    NopClass = 6,
    /// A NOP `<geom>`.
    NopGeom = 7,
    /// A NOP `<consumer>`.
    NopConsumer = 8,
}

/// The id of object number `index` of `kind`, as `0x…` text.
pub fn xml_id(kind: IdKind, index: u64) -> String {
    alloc::format!("0x{:x}", ((kind as u64) << 60) | (index & ((1 << 60) - 1)))
}

/// The id of the object of `kind` called `name`: FNV-1a of the name under the kind's tag,
/// for objects that have a name but no index of their own.
pub fn named_xml_id(kind: IdKind, name: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    xml_id(kind, hash >> 4)
}

/// The XML id of a provider that belongs to no class of ours (a path's device) or to the
/// host's NOP class, so a consumer's `<provider ref>` points at it.
pub fn foreign_provider_id(name: &str) -> String {
    named_xml_id(IdKind::ForeignProvider, name)
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

/// A class's dumpconf for one object: writes its lines, each starting with the indent given.
pub type Dumpconf<'a> = &'a dyn Fn(&mut dyn Write, &str) -> fmt::Result;

/// What stands in an element's configuration slot.
#[derive(Clone, Copy)]
pub enum Config<'a> {
    /// Nothing: GEOM writes no `<config>` for a class without a dumpconf method.
    Absent,
    /// A `<config>` element holding what the class's dumpconf writes (possibly nothing).
    Lines(Dumpconf<'a>),
    /// `<wither/>`: a withered provider gets this instead of its configuration.
    Wither,
}

impl Config<'_> {
    /// An empty `<config>` element (a class whose dumpconf writes nothing for the object).
    pub const EMPTY: Config<'static> = Config::Lines(&|_, _| Ok(()));

    /// Writes the slot: the element at `outer`, the lines at `inner`.
    fn write(&self, out: &mut dyn Write, outer: &str, inner: &str) -> fmt::Result {
        match self {
            Config::Absent => Ok(()),
            Config::Lines(lines) => {
                writeln!(out, "{outer}<config>")?;
                lines(out, inner)?;
                writeln!(out, "{outer}</config>")
            }
            Config::Wither => writeln!(out, "{outer}<wither/>"),
        }
    }
}

/// Opens `<class>`: its id and name. Close it with [`class_end`].
pub fn class_start(out: &mut dyn Write, id: &str, name: &str) -> fmt::Result {
    writeln!(out, "  <class id=\"{id}\">")?;
    out.write_str("    <name>")?;
    escape(out, name)?;
    out.write_str("</name>\n")
}

/// Closes `<class>`.
pub fn class_end(out: &mut dyn Write) -> fmt::Result {
    out.write_str("  </class>\n")
}

/// Opens `<geom>` in class `class_id`: its name, rank and configuration. Its consumers and
/// providers follow; close it with [`geom_end`].
pub fn geom_start(
    out: &mut dyn Write,
    id: &str,
    class_id: &str,
    name: &str,
    rank: u32,
    config: Config<'_>,
) -> fmt::Result {
    writeln!(out, "    <geom id=\"{id}\">")?;
    writeln!(out, "      <class ref=\"{class_id}\"/>")?;
    out.write_str("      <name>")?;
    escape(out, name)?;
    out.write_str("</name>\n")?;
    writeln!(out, "      <rank>{rank}</rank>")?;
    config.write(out, "      ", "\t")
}

/// Closes `<geom>`.
pub fn geom_end(out: &mut dyn Write) -> fmt::Result {
    out.write_str("    </geom>\n")
}

/// A `<consumer>` of geom `geom_id` attached to provider `provider_id`, with its access
/// counts (r, w, e).
pub fn consumer(
    out: &mut dyn Write,
    id: &str,
    geom_id: &str,
    provider_id: &str,
    (r, w, e): (i32, i32, i32),
    config: Config<'_>,
) -> fmt::Result {
    writeln!(out, "\t<consumer id=\"{id}\">")?;
    writeln!(out, "\t  <geom ref=\"{geom_id}\"/>")?;
    writeln!(out, "\t  <provider ref=\"{provider_id}\"/>")?;
    writeln!(out, "\t  <mode>r{r}w{w}e{e}</mode>")?;
    config.write(out, "\t  ", "\t    ")?;
    out.write_str("\t</consumer>\n")
}

/// A `<provider>` of geom `geom_id`: its access counts (r, w, e), then the name and
/// geometry of `pp` (its rank is the geom's, not written here).
pub fn provider(
    out: &mut dyn Write,
    id: &str,
    geom_id: &str,
    (r, w, e): (i32, i32, i32),
    pp: &ProviderInfo,
    config: Config<'_>,
) -> fmt::Result {
    writeln!(out, "\t<provider id=\"{id}\">")?;
    writeln!(out, "\t  <geom ref=\"{geom_id}\"/>")?;
    writeln!(out, "\t  <mode>r{r}w{w}e{e}</mode>")?;
    out.write_str("\t  <name>")?;
    escape(out, &pp.name)?;
    out.write_str("</name>\n")?;
    writeln!(out, "\t  <mediasize>{}</mediasize>", pp.mediasize)?;
    writeln!(out, "\t  <sectorsize>{}</sectorsize>", pp.sectorsize)?;
    writeln!(out, "\t  <stripesize>{}</stripesize>", pp.stripesize)?;
    writeln!(out, "\t  <stripeoffset>{}</stripeoffset>", pp.stripeoffset)?;
    config.write(out, "\t  ", "\t    ")?;
    out.write_str("\t</provider>\n")
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
    let class_id = named_xml_id(IdKind::Class, class_name);
    class_start(out, &class_id, class_name)?;
    for (pp, access) in providers {
        let geom_id = named_xml_id(IdKind::Geom, &pp.name);
        geom_start(out, &geom_id, &class_id, &pp.name, pp.rank, Config::Absent)?;
        let id = foreign_provider_id(&pp.name);
        provider(out, &id, &geom_id, access, pp, Config::Absent)?;
        geom_end(out)?;
    }
    class_end(out)
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

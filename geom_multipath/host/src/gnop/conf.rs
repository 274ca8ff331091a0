//! The NOP class's part of `kern.geom.confxml`: its `<class>` element, laid out by the one
//! geom_dump writer of the core, with `g_nop_dumpconf` in each geom's `<config>`.

use super::*;

impl NopClass {
    /// The class's whole `<class>` element as `g_conf_class` writes it, geoms newest first
    /// as in the kernel's list. The consumer refers to the provider below with
    /// [`foreign_provider_id`], and the NOP provider carries that id for its own name, so
    /// the daemon's other classes can refer to it. Access counts come from `host`.
    pub fn conf_class(&self, host: &dyn NopHost, out: &mut dyn Write) -> fmt::Result {
        let class_id = named_xml_id(IdKind::NopClass, CLASS_NAME);
        geom_dump::class_start(out, &class_id, CLASS_NAME)?;
        for g in self.geoms.iter().rev() {
            conf_geom(g, host, &class_id, out)?;
        }
        geom_dump::class_end(out)
    }
}

/// `g_conf_geom` for one NOP geom, with `g_nop_dumpconf` in its `<config>`.
pub(super) fn conf_geom(
    g: &NopGeom,
    host: &dyn NopHost,
    class_id: &str,
    out: &mut dyn Write,
) -> fmt::Result {
    let name = g.name();
    let geom_id = named_xml_id(IdKind::NopGeom, name);
    let access = host.access(name);
    let config = |out: &mut dyn Write, indent: &str| dumpconf(g, indent, out);
    geom_dump::geom_start(
        out,
        &geom_id,
        class_id,
        name,
        g.rank,
        Config::Lines(&config),
    )?;
    geom_dump::consumer(
        out,
        &named_xml_id(IdKind::NopConsumer, name),
        &geom_id,
        &foreign_provider_id(&g.underlying),
        access,
        Config::EMPTY,
    )?;
    let pp = g.provider_info();
    let id = foreign_provider_id(name);
    geom_dump::provider(out, &id, &geom_id, access, &pp, Config::EMPTY)?;
    geom_dump::geom_end(out)
}

/// `g_nop_dumpconf` for the geom (it writes nothing for the provider or the consumer).
pub(super) fn dumpconf(g: &NopGeom, indent: &str, out: &mut dyn Write) -> fmt::Result {
    let sc = g.device.lock();
    let (k, c) = (sc.knobs, sc.counters);
    writeln!(out, "{indent}<Offset>{}</Offset>", g.device.offset)?;
    writeln!(out, "{indent}<ReadFailProb>{}</ReadFailProb>", k.rfailprob)?;
    writeln!(
        out,
        "{indent}<WriteFailProb>{}</WriteFailProb>",
        k.wfailprob
    )?;
    writeln!(
        out,
        "{indent}<ReadDelayedProb>{}</ReadDelayedProb>",
        k.rdelayprob
    )?;
    writeln!(
        out,
        "{indent}<WriteDelayedProb>{}</WriteDelayedProb>",
        k.wdelayprob
    )?;
    // `%d` of a u_int, as FreeBSD prints it.
    writeln!(out, "{indent}<Delay>{}</Delay>", k.delaymsec as i32)?;
    writeln!(
        out,
        "{indent}<CountUntilFail>{}</CountUntilFail>",
        k.count_until_fail
    )?;
    writeln!(out, "{indent}<Error>{}</Error>", k.error)?;
    writeln!(out, "{indent}<Reads>{}</Reads>", c.reads)?;
    writeln!(out, "{indent}<Writes>{}</Writes>", c.writes)?;
    writeln!(out, "{indent}<Deletes>{}</Deletes>", c.deletes)?;
    writeln!(out, "{indent}<Getattrs>{}</Getattrs>", c.getattrs)?;
    writeln!(out, "{indent}<Flushes>{}</Flushes>", c.flushes)?;
    writeln!(out, "{indent}<Speedups>{}</Speedups>", c.speedups)?;
    writeln!(out, "{indent}<Cmd0s>{}</Cmd0s>", c.cmd0s)?;
    writeln!(out, "{indent}<Cmd1s>{}</Cmd1s>", c.cmd1s)?;
    writeln!(out, "{indent}<Cmd2s>{}</Cmd2s>", c.cmd2s)?;
    writeln!(out, "{indent}<ReadBytes>{}</ReadBytes>", c.readbytes)?;
    writeln!(out, "{indent}<WroteBytes>{}</WroteBytes>", c.wrotebytes)
}

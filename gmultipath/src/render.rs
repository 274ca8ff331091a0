//! geom(8)'s standard `list` and `status` commands, drawn from a parsed [`Mesh`].
//!
//! This module owns the exact text FreeBSD prints for one class (MULTIPATH for gmultipath,
//! NOP for gnop): line shapes, numbering, column widths, the `(null)` for a missing value,
//! and which geoms are shown. It does not fetch or parse the mesh ([`crate::mesh`]) and it
//! does not write to a terminal or pick exit codes: each command returns a [`Rendered`],
//! the text for stdout and the error geom(8) would end with, which the caller prints as
//! `gmultipath: <error>` before exiting 1. `list` can fail part-way, after some geoms were
//! already printed; `status` checks every name before printing anything.

use std::fmt::{self, Write as _};

use crate::humanize;
use crate::mesh::{Class, ConfigItem, Consumer, Geom, Mesh, Provider};

/// What FreeBSD's printf shows for a null string.
const NULL: &str = "(null)";
/// The indent of the lines under `N. Name: ...`.
const INDENT: &str = "   ";
/// A status component is formatted into a 256-byte buffer.
const COMPONENT_MAX: usize = 255;

/// How a `list` or `status` command failed; `Display` is FreeBSD's exact text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// `list`: the class is not in the mesh.
    #[error("Class '{0}' not found.")]
    ListNoClass(String),
    /// `list`: a named geom does not exist (the name is shown as given).
    #[error("Class '{class}' does not have an instance named '{name}'.")]
    NoInstance {
        /// The class searched.
        class: String,
        /// The name as the user gave it.
        name: String,
    },
    /// `status`: the class is not in the mesh (no quotes, unlike `list`).
    #[error("Class {0} not found.")]
    StatusNoClass(String),
    /// `status`: a named geom does not exist (the name is shown as given).
    #[error("No such geom: {0}.")]
    NoSuchGeom(String),
}

/// The outcome of a command: what goes to stdout, then the error it ends with, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// Text for stdout, printed even when there is an error.
    pub stdout: String,
    /// The failure that ended the command (stderr, exit status 1).
    pub error: Option<RenderError>,
}

impl Rendered {
    fn done(stdout: String) -> Self {
        Rendered {
            stdout,
            error: None,
        }
    }

    fn failed(stdout: String, error: RenderError) -> Self {
        Rendered {
            stdout,
            error: Some(error),
        }
    }
}

/// The options of `status [-ags]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusFlags {
    /// `-a`: also show geoms without providers (only when no names are given).
    pub all: bool,
    /// `-g`: one row group per geom instead of one per provider.
    pub geoms: bool,
    /// `-s`: no header, widths from the data only, name and status on every row.
    pub script: bool,
}

/// `list [-a] [name ...]` (geom(8)'s `std_list`).
pub fn list(mesh: &Mesh, class: &str, names: &[&str], all: bool) -> Rendered {
    let mut out = String::new();
    let Some(classp) = mesh.find_class(class) else {
        return Rendered::failed(out, RenderError::ListNoClass(class.to_owned()));
    };
    if names.is_empty() {
        for geom in shown_geoms(classp, all) {
            list_geom(&mut out, mesh, geom);
        }
        return Rendered::done(out);
    }
    for &name in names {
        let Some(geom) = classp.find_geom(name) else {
            let error = RenderError::NoInstance {
                class: class.to_owned(),
                name: name.to_owned(),
            };
            return Rendered::failed(out, error);
        };
        list_geom(&mut out, mesh, geom);
    }
    Rendered::done(out)
}

/// `status [-ags] [name ...]` (geom(8)'s `std_status`).
pub fn status(mesh: &Mesh, class: &str, names: &[&str], flags: StatusFlags) -> Rendered {
    let Some(classp) = mesh.find_class(class) else {
        return Rendered::failed(String::new(), RenderError::StatusNoClass(class.to_owned()));
    };
    let geoms = match named_or_shown(classp, names, flags.all) {
        Ok(geoms) => geoms,
        Err(error) => return Rendered::failed(String::new(), error),
    };
    if geoms.is_empty() {
        return Rendered::default();
    }
    let mut widths = Widths::start(flags.script);
    let mut groups = Vec::new();
    for geom in &geoms {
        if flags.geoms {
            widths.fit_geom(geom);
            groups.push(geom_group(mesh, geom));
        } else {
            widths.fit_providers(geom);
            groups.extend(provider_groups(mesh, geom));
        }
    }
    let mut out = String::new();
    if !flags.script {
        widths.row(&mut out, "Name", "Status", "Components");
    }
    for group in &groups {
        widths.group(&mut out, group, flags.script);
    }
    Rendered::done(out)
}

/// The geoms shown when no names are given: those with providers, or all with `-a`.
pub(crate) fn shown_geoms(class: &Class, all: bool) -> impl Iterator<Item = &Geom> {
    class
        .geoms
        .iter()
        .filter(move |geom| all || !geom.providers.is_empty())
}

/// The geoms `status` shows: every name looked up first, or the shown geoms.
pub(crate) fn named_or_shown<'m>(
    class: &'m Class,
    names: &[&str],
    all: bool,
) -> Result<Vec<&'m Geom>, RenderError> {
    if names.is_empty() {
        return Ok(shown_geoms(class, all).collect());
    }
    names
        .iter()
        .map(|&name| {
            class
                .find_geom(name)
                .ok_or_else(|| RenderError::NoSuchGeom(name.to_owned()))
        })
        .collect()
}

/// One geom's block, ending with a blank line (`list_one_geom`).
fn list_geom(out: &mut String, mesh: &Mesh, geom: &Geom) {
    line(
        out,
        format_args!("Geom name: {}", or_null(geom.name.as_deref())),
    );
    config_lines(out, "", &geom.config);
    if !geom.providers.is_empty() {
        out.push_str("Providers:\n");
        for (n, provider) in geom.providers.iter().enumerate() {
            put(out, format_args!("{}. ", n + 1));
            list_provider(out, provider);
        }
    }
    if !geom.consumers.is_empty() {
        out.push_str("Consumers:\n");
        for (n, consumer) in geom.consumers.iter().enumerate() {
            put(out, format_args!("{}. ", n + 1));
            list_consumer(out, mesh, consumer);
        }
    }
    out.push('\n');
}

/// A provider's entry (`list_one_provider`).
fn list_provider(out: &mut String, provider: &Provider) {
    media_lines(out, provider);
    mode_line(out, provider.mode.as_deref());
    config_lines(out, INDENT, &provider.config);
}

/// A consumer's entry: its provider's media, its own mode and config
/// (`list_one_consumer`).
fn list_consumer(out: &mut String, mesh: &Mesh, consumer: &Consumer) {
    match mesh.consumer_provider(consumer) {
        None => out.push_str("[no provider]\n"),
        Some(provider) => {
            media_lines(out, provider);
            mode_line(out, consumer.mode.as_deref());
        }
    }
    config_lines(out, INDENT, &consumer.config);
}

/// `Name`, `Mediasize`, `Sectorsize` and, when either is set, the stripe lines.
fn media_lines(out: &mut String, provider: &Provider) {
    line(
        out,
        format_args!("Name: {}", or_null(provider.name.as_deref())),
    );
    let size = provider.mediasize;
    let human = humanize::mediasize(size);
    line(out, format_args!("{INDENT}Mediasize: {size} ({human})"));
    line(
        out,
        format_args!("{INDENT}Sectorsize: {}", provider.sectorsize),
    );
    if provider.stripesize > 0 || provider.stripeoffset > 0 {
        // Printed with %ju: a negative off_t shows as its unsigned twin.
        let stripesize = provider.stripesize as u64;
        let stripeoffset = provider.stripeoffset as u64;
        line(out, format_args!("{INDENT}Stripesize: {stripesize}"));
        line(out, format_args!("{INDENT}Stripeoffset: {stripeoffset}"));
    }
}

fn mode_line(out: &mut String, mode: Option<&str>) {
    line(out, format_args!("{INDENT}Mode: {}", or_null(mode)));
}

fn config_lines(out: &mut String, indent: &str, config: &[ConfigItem]) {
    for item in config {
        let value = or_null(item.value.as_deref());
        line(out, format_args!("{indent}{}: {value}", item.name));
    }
}

/// One name/status pair and the components listed beside it.
#[derive(Debug)]
struct Group<'m> {
    name: &'m str,
    status: &'m str,
    components: Vec<String>,
}

/// The `-g` group: geom name and state (`status_one_geom`).
fn geom_group<'m>(mesh: &'m Mesh, geom: &'m Geom) -> Group<'m> {
    Group {
        name: or_null(geom.name.as_deref()),
        status: first_state(&geom.config).unwrap_or("N/A"),
        components: components(mesh, geom),
    }
}

/// One group per provider: its name and state, else the geom's state
/// (`status_one_geom_prs`).
fn provider_groups<'m>(mesh: &'m Mesh, geom: &'m Geom) -> Vec<Group<'m>> {
    geom.providers
        .iter()
        .map(|provider| Group {
            name: or_null(provider.name.as_deref()),
            status: first_state(&provider.config)
                .or_else(|| first_state(&geom.config))
                .unwrap_or("N/A"),
            components: components(mesh, geom),
        })
        .collect()
}

fn components(mesh: &Mesh, geom: &Geom) -> Vec<String> {
    geom.consumers
        .iter()
        .filter_map(|consumer| component(mesh, consumer))
        .collect()
}

/// `prov`, `prov (state)`, `prov (synchronized)` or `prov (state, synchronized)`; the last
/// matching config item wins, and a consumer without a provider is left out
/// (`status_one_consumer`).
fn component(mesh: &Mesh, consumer: &Consumer) -> Option<String> {
    let name = or_null(mesh.consumer_provider(consumer)?.name.as_deref());
    let mut state = None;
    let mut synchronized = None;
    for item in &consumer.config {
        if item.name.eq_ignore_ascii_case("state") {
            state = item.value.as_deref();
        }
        if item.name.eq_ignore_ascii_case("synchronized") {
            synchronized = item.value.as_deref();
        }
    }
    let text = match (state, synchronized) {
        (None, None) => name.to_owned(),
        (Some(state), Some(synchronized)) => format!("{name} ({state}, {synchronized})"),
        (Some(one), None) | (None, Some(one)) => format!("{name} ({one})"),
    };
    Some(truncate(text, COMPONENT_MAX))
}

/// The value of the first config item named `state` in any case.
pub(crate) fn first_state(config: &[ConfigItem]) -> Option<&str> {
    config
        .iter()
        .find(|item| item.name.eq_ignore_ascii_case("state"))
        .map(|item| or_null(item.value.as_deref()))
}

/// The name and status column widths, in bytes as printf counts them.
#[derive(Debug, Clone, Copy)]
struct Widths {
    name: usize,
    status: usize,
}

impl Widths {
    /// Wide enough for the header, or nothing in script mode.
    fn start(script: bool) -> Self {
        if script {
            Widths { name: 0, status: 0 }
        } else {
            Widths {
                name: "Name".len(),
                status: "Status".len(),
            }
        }
    }

    /// Grows for a `-g` group: the geom name and every state item, not only the first
    /// one shown (`status_update_len`).
    fn fit_geom(&mut self, geom: &Geom) {
        self.name = self.name.max(or_null(geom.name.as_deref()).len());
        for item in &geom.config {
            if item.name.eq_ignore_ascii_case("state") {
                self.status = self.status.max(or_null(item.value.as_deref()).len());
            }
        }
    }

    /// Grows for each provider group; a missing state counts as the geom's, and an
    /// `N/A` is not measured (`status_update_len_prs`).
    fn fit_providers(&mut self, geom: &Geom) {
        let geom_state = first_state(&geom.config).map_or(0, str::len);
        for provider in &geom.providers {
            self.name = self.name.max(or_null(provider.name.as_deref()).len());
            let state = first_state(&provider.config).map_or(geom_state, str::len);
            self.status = self.status.max(state);
        }
    }

    /// A group's rows: name and status on the first only unless `script`; a group with
    /// no components shows `N/A`.
    fn group(self, out: &mut String, group: &Group<'_>, script: bool) {
        if group.components.is_empty() {
            self.row(out, group.name, group.status, "N/A");
            return;
        }
        let (mut name, mut status) = (group.name, group.status);
        for component in &group.components {
            self.row(out, name, status, component);
            if !script {
                (name, status) = ("", "");
            }
        }
    }

    /// `"%*s  %*s  %s\n"`.
    fn row(self, out: &mut String, name: &str, status: &str, component: &str) {
        pad_left(out, name, self.name);
        out.push_str("  ");
        pad_left(out, status, self.status);
        out.push_str("  ");
        out.push_str(component);
        out.push('\n');
    }
}

/// Right-aligns `text` in `width` bytes, as `%*s` does.
fn pad_left(out: &mut String, text: &str, width: usize) {
    for _ in text.len()..width {
        out.push(' ');
    }
    out.push_str(text);
}

fn or_null(value: Option<&str>) -> &str {
    value.unwrap_or(NULL)
}

/// Cuts `text` to at most `max` bytes (on a character boundary), as snprintf into a
/// fixed buffer would.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn put(out: &mut String, args: fmt::Arguments<'_>) {
    // Writing into a String cannot fail.
    let _ = out.write_fmt(args);
}

fn line(out: &mut String, args: fmt::Arguments<'_>) {
    put(out, args);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh;

    /// confxml laid out as sys/geom/geom_dump.c writes it (indents, element order), so
    /// the fixtures read like `sysctl -n kern.geom.confxml`.
    mod kernel {
        use std::fmt::Write as _;

        /// What follows the fixed fields of a geom or provider, or ends a consumer.
        pub enum Config<'a> {
            /// No dumpconf output (a consumer of a withering geom).
            Absent,
            /// A `<config>` section with these items, in dumpconf order.
            Items(Vec<(&'a str, &'a str)>),
            /// `<wither/>` (withering geom or provider).
            Wither,
        }

        pub struct Provider<'a> {
            pub id: &'a str,
            pub name: &'a str,
            pub mode: &'a str,
            pub mediasize: i64,
            pub sectorsize: u32,
            pub stripesize: u64,
            pub stripeoffset: u64,
            pub config: Config<'a>,
        }

        pub struct Consumer<'a> {
            pub id: &'a str,
            pub provider: Option<&'a str>,
            pub mode: &'a str,
            pub config: Config<'a>,
        }

        pub struct Geom<'a> {
            pub id: &'a str,
            pub name: &'a str,
            pub rank: u32,
            pub config: Config<'a>,
            /// Kernel order: newest first.
            pub consumers: Vec<Consumer<'a>>,
            pub providers: Vec<Provider<'a>>,
        }

        pub struct Class<'a> {
            pub id: &'a str,
            pub name: &'a str,
            /// Kernel order: newest first.
            pub geoms: Vec<Geom<'a>>,
        }

        pub fn mesh(classes: &[Class<'_>]) -> String {
            let mut xml = String::from("<mesh>\n");
            for class in classes {
                let _ = writeln!(xml, "  <class id=\"{}\">", class.id);
                let _ = writeln!(xml, "    <name>{}</name>", class.name);
                for geom in &class.geoms {
                    write_geom(&mut xml, class.id, geom);
                }
                xml.push_str("  </class>\n");
            }
            xml.push_str("</mesh>\n");
            xml
        }

        fn write_geom(xml: &mut String, class_id: &str, geom: &Geom<'_>) {
            let _ = writeln!(xml, "    <geom id=\"{}\">", geom.id);
            let _ = writeln!(xml, "      <class ref=\"{class_id}\"/>");
            let _ = writeln!(xml, "      <name>{}</name>", geom.name);
            let _ = writeln!(xml, "      <rank>{}</rank>", geom.rank);
            write_config(xml, "      ", "\t", &geom.config);
            for consumer in &geom.consumers {
                let _ = writeln!(xml, "\t<consumer id=\"{}\">", consumer.id);
                let _ = writeln!(xml, "\t  <geom ref=\"{}\"/>", geom.id);
                if let Some(provider) = consumer.provider {
                    let _ = writeln!(xml, "\t  <provider ref=\"{provider}\"/>");
                }
                let _ = writeln!(xml, "\t  <mode>{}</mode>", consumer.mode);
                write_config(xml, "\t  ", "\t    ", &consumer.config);
                xml.push_str("\t</consumer>\n");
            }
            for provider in &geom.providers {
                let _ = writeln!(xml, "\t<provider id=\"{}\">", provider.id);
                let _ = writeln!(xml, "\t  <geom ref=\"{}\"/>", geom.id);
                let _ = writeln!(xml, "\t  <mode>{}</mode>", provider.mode);
                let _ = writeln!(xml, "\t  <name>{}</name>", provider.name);
                let _ = writeln!(xml, "\t  <mediasize>{}</mediasize>", provider.mediasize);
                let _ = writeln!(xml, "\t  <sectorsize>{}</sectorsize>", provider.sectorsize);
                let _ = writeln!(xml, "\t  <stripesize>{}</stripesize>", provider.stripesize);
                let _ = writeln!(
                    xml,
                    "\t  <stripeoffset>{}</stripeoffset>",
                    provider.stripeoffset
                );
                write_config(xml, "\t  ", "\t    ", &provider.config);
                xml.push_str("\t</provider>\n");
            }
            xml.push_str("    </geom>\n");
        }

        fn write_config(xml: &mut String, indent: &str, inner: &str, config: &Config<'_>) {
            match config {
                Config::Absent => {}
                Config::Wither => {
                    let _ = writeln!(xml, "{indent}<wither/>");
                }
                Config::Items(items) => {
                    let _ = writeln!(xml, "{indent}<config>");
                    for (name, value) in items {
                        let _ = writeln!(xml, "{inner}<{name}>{value}</{name}>");
                    }
                    let _ = writeln!(xml, "{indent}</config>");
                }
            }
        }
    }

    use kernel::Config;

    const MD_CLASS: &str = "0xffffffff81e3c1a0";
    const DISK_CLASS: &str = "0xffffffff81e2b0c0";
    const MP_CLASS: &str = "0xffffffff8297e040";
    const MIB: i64 = 1 << 20;
    const GIB: i64 = 1 << 30;

    /// A path device: a geom of `class` with one provider named like the geom.
    fn path<'a>(
        geom_id: &'a str,
        provider_id: &'a str,
        name: &'a str,
        size: i64,
    ) -> kernel::Geom<'a> {
        kernel::Geom {
            id: geom_id,
            name,
            rank: 1,
            config: Config::Items(vec![]),
            consumers: vec![],
            providers: vec![kernel::Provider {
                id: provider_id,
                name,
                mode: "r1w1e1",
                mediasize: size,
                sectorsize: 512,
                stripesize: 0,
                stripeoffset: 0,
                config: Config::Items(vec![("fwsectors", "63"), ("fwheads", "255")]),
            }],
        }
    }

    /// A multipath path consumer held r1w1e1 (exclusive), in state `state`.
    fn path_consumer<'a>(id: &'a str, provider: &'a str, state: &'a str) -> kernel::Consumer<'a> {
        kernel::Consumer {
            id,
            provider: Some(provider),
            mode: "r1w1e1",
            config: Config::Items(vec![("State", state)]),
        }
    }

    /// The `multipath/<name>` provider.
    fn mp_provider<'a>(
        id: &'a str,
        name: &'a str,
        size: i64,
        state: &'a str,
    ) -> kernel::Provider<'a> {
        kernel::Provider {
            id,
            name,
            mode: "r0w0e0",
            mediasize: size,
            sectorsize: 512,
            stripesize: 0,
            stripeoffset: 0,
            config: Config::Items(vec![("State", state)]),
        }
    }

    /// Geom config in g_multipath_dumpconf order: State, UUID, Mode, Type.
    fn mp_config<'a>(state: &'a str, uuid: &'a str, mode: &'a str, kind: &'a str) -> Config<'a> {
        Config::Items(vec![
            ("State", state),
            ("UUID", uuid),
            ("Mode", mode),
            ("Type", kind),
        ])
    }

    fn parsed(xml: &str) -> Mesh {
        match mesh::parse(xml) {
            Ok(mesh) => mesh,
            Err(e) => panic!("fixture does not parse: {e}\n{xml}"),
        }
    }

    /// COMPAT §7: two 1 MiB md paths, manual create, md0 active, device not open.
    fn fred_mesh() -> Mesh {
        parsed(&kernel::mesh(&[
            kernel::Class {
                id: MD_CLASS,
                name: "MD",
                geoms: vec![
                    path("0xfffff80003b1e600", "0xfffff80003b1e400", "md1", MIB),
                    path("0xfffff80003a2d300", "0xfffff80003a2d100", "md0", MIB),
                ],
            },
            kernel::Class {
                id: MP_CLASS,
                name: "MULTIPATH",
                geoms: vec![fred_geom()],
            },
        ]))
    }

    fn fred_geom() -> kernel::Geom<'static> {
        kernel::Geom {
            id: "0xfffff80003c0a100",
            name: "FRED",
            rank: 2,
            config: mp_config("OPTIMAL", "", "Active/Passive", "MANUAL"),
            consumers: vec![
                path_consumer("0xfffff80003c0b300", "0xfffff80003b1e400", "PASSIVE"),
                path_consumer("0xfffff80003c0b200", "0xfffff80003a2d100", "ACTIVE"),
            ],
            providers: vec![mp_provider(
                "0xfffff80003c0c100",
                "multipath/FRED",
                MIB,
                "OPTIMAL",
            )],
        }
    }

    /// The golden `list` of FRED, shared with the CLI tests.
    const FRED_LIST: &str = include_str!("../tests/golden/fred_list.txt");

    fn ok(rendered: Rendered) -> String {
        assert_eq!(rendered.error, None, "unexpected error");
        rendered.stdout
    }

    fn error_text(rendered: &Rendered) -> Option<String> {
        rendered.error.as_ref().map(ToString::to_string)
    }

    #[test]
    fn list_manual_two_paths_matches_compat_example() {
        assert_eq!(ok(list(&fred_mesh(), "MULTIPATH", &[], false)), FRED_LIST);
    }

    #[test]
    fn list_by_name_accepts_dev_prefix() {
        let mesh = fred_mesh();
        assert_eq!(ok(list(&mesh, "MULTIPATH", &["FRED"], false)), FRED_LIST);
        assert_eq!(
            ok(list(&mesh, "MULTIPATH", &["/dev/FRED"], false)),
            FRED_LIST
        );
    }

    #[test]
    fn list_same_name_twice_prints_twice() {
        let out = ok(list(&fred_mesh(), "MULTIPATH", &["FRED", "FRED"], false));
        assert_eq!(out, format!("{FRED_LIST}{FRED_LIST}"));
    }

    #[test]
    fn list_missing_instance_fails_after_earlier_output() {
        let rendered = list(
            &fred_mesh(),
            "MULTIPATH",
            &["FRED", "/dev/NOPE", "FRED"],
            false,
        );
        assert_eq!(rendered.stdout, FRED_LIST);
        assert_eq!(
            error_text(&rendered).as_deref(),
            Some("Class 'MULTIPATH' does not have an instance named '/dev/NOPE'.")
        );
    }

    #[test]
    fn list_missing_class() {
        let rendered = list(&fred_mesh(), "NOP", &[], false);
        assert_eq!(rendered.stdout, "");
        assert_eq!(
            error_text(&rendered).as_deref(),
            Some("Class 'NOP' not found.")
        );
    }

    #[test]
    fn list_automatic_labeled_geom() {
        // label: the provider is one sector short of the paths (metadata sector).
        let mesh = parsed(&kernel::mesh(&[
            kernel::Class {
                id: DISK_CLASS,
                name: "DISK",
                geoms: vec![
                    path("0xfffff80004001300", "0xfffff80004001400", "da1", GIB),
                    path("0xfffff80004000300", "0xfffff80004000400", "da0", GIB),
                ],
            },
            kernel::Class {
                id: MP_CLASS,
                name: "MULTIPATH",
                geoms: vec![kernel::Geom {
                    id: "0xfffff80004100100",
                    name: "DATA",
                    rank: 2,
                    config: mp_config(
                        "OPTIMAL",
                        "5bb24d4e-0b3a-11ef-8a1f-00a098d6e2c4",
                        "Active/Active",
                        "AUTOMATIC",
                    ),
                    consumers: vec![
                        path_consumer("0xfffff80004100300", "0xfffff80004001400", "ACTIVE"),
                        path_consumer("0xfffff80004100200", "0xfffff80004000400", "ACTIVE"),
                    ],
                    providers: vec![mp_provider(
                        "0xfffff80004100500",
                        "multipath/DATA",
                        GIB - 512,
                        "OPTIMAL",
                    )],
                }],
            },
        ]));
        let expected = "\
Geom name: DATA
Type: AUTOMATIC
Mode: Active/Active
UUID: 5bb24d4e-0b3a-11ef-8a1f-00a098d6e2c4
State: OPTIMAL
Providers:
1. Name: multipath/DATA
   Mediasize: 1073741312 (1.0G)
   Sectorsize: 512
   Mode: r0w0e0
   State: OPTIMAL
Consumers:
1. Name: da0
   Mediasize: 1073741824 (1.0G)
   Sectorsize: 512
   Mode: r1w1e1
   State: ACTIVE
2. Name: da1
   Mediasize: 1073741824 (1.0G)
   Sectorsize: 512
   Mode: r1w1e1
   State: ACTIVE

";
        assert_eq!(ok(list(&mesh, "MULTIPATH", &[], false)), expected);
    }

    /// Three 64 MiB paths with 4 KiB stripes attached da2, da3, da4; da3 has failed.
    fn degraded_mesh() -> Mesh {
        let striped = |mut geom: kernel::Geom<'static>| {
            for provider in &mut geom.providers {
                provider.stripesize = 4096;
            }
            geom
        };
        let mut provider = mp_provider(
            "0xfffff80005100500",
            "multipath/SAN",
            64 * MIB - 512,
            "DEGRADED",
        );
        provider.stripesize = 4096;
        provider.mode = "r1w1e1";
        parsed(&kernel::mesh(&[
            kernel::Class {
                id: DISK_CLASS,
                name: "DISK",
                geoms: vec![
                    striped(path(
                        "0xfffff80005004300",
                        "0xfffff80005004400",
                        "da4",
                        64 * MIB,
                    )),
                    striped(path(
                        "0xfffff80005003300",
                        "0xfffff80005003400",
                        "da3",
                        64 * MIB,
                    )),
                    striped(path(
                        "0xfffff80005002300",
                        "0xfffff80005002400",
                        "da2",
                        64 * MIB,
                    )),
                ],
            },
            kernel::Class {
                id: MP_CLASS,
                name: "MULTIPATH",
                geoms: vec![kernel::Geom {
                    id: "0xfffff80005100100",
                    name: "SAN",
                    rank: 2,
                    config: mp_config(
                        "DEGRADED",
                        "0d9c5d22-1c43-11ef-9b1f-00a098d6e2c4",
                        "Active/Passive",
                        "AUTOMATIC",
                    ),
                    consumers: vec![
                        path_consumer("0xfffff80005100400", "0xfffff80005004400", "PASSIVE"),
                        path_consumer("0xfffff80005100300", "0xfffff80005003400", "FAIL"),
                        path_consumer("0xfffff80005100200", "0xfffff80005002400", "ACTIVE"),
                    ],
                    providers: vec![provider],
                }],
            },
        ]))
    }

    #[test]
    fn list_degraded_geom_with_failed_path_and_stripes() {
        let expected = "\
Geom name: SAN
Type: AUTOMATIC
Mode: Active/Passive
UUID: 0d9c5d22-1c43-11ef-9b1f-00a098d6e2c4
State: DEGRADED
Providers:
1. Name: multipath/SAN
   Mediasize: 67108352 (64M)
   Sectorsize: 512
   Stripesize: 4096
   Stripeoffset: 0
   Mode: r1w1e1
   State: DEGRADED
Consumers:
1. Name: da2
   Mediasize: 67108864 (64M)
   Sectorsize: 512
   Stripesize: 4096
   Stripeoffset: 0
   Mode: r1w1e1
   State: ACTIVE
2. Name: da3
   Mediasize: 67108864 (64M)
   Sectorsize: 512
   Stripesize: 4096
   Stripeoffset: 0
   Mode: r1w1e1
   State: FAIL
3. Name: da4
   Mediasize: 67108864 (64M)
   Sectorsize: 512
   Stripesize: 4096
   Stripeoffset: 0
   Mode: r1w1e1
   State: PASSIVE

";
        assert_eq!(
            ok(list(&degraded_mesh(), "MULTIPATH", &["SAN"], false)),
            expected
        );
    }

    #[test]
    fn status_degraded_geom() {
        let expected = concat!(
            "         Name    Status  Components\n",
            "multipath/SAN  DEGRADED  da2 (ACTIVE)\n",
            "                         da3 (FAIL)\n",
            "                         da4 (PASSIVE)\n",
        );
        let flags = StatusFlags::default();
        assert_eq!(
            ok(status(&degraded_mesh(), "MULTIPATH", &[], flags)),
            expected
        );
    }

    /// A geom that is going away: `<wither/>` instead of config, its consumers without
    /// config, and a provider that is itself withering.
    fn withering_geom(provider: bool) -> kernel::Geom<'static> {
        let providers = if provider {
            vec![kernel::Provider {
                config: Config::Wither,
                mode: "r1w0e0",
                ..mp_provider("0xfffff80006100500", "multipath/GONE", MIB, "")
            }]
        } else {
            vec![]
        };
        kernel::Geom {
            id: "0xfffff80006100100",
            name: "GONE",
            rank: 2,
            config: Config::Wither,
            consumers: vec![kernel::Consumer {
                id: "0xfffff80006100200",
                provider: Some("0xfffff80006002400"),
                mode: "r1w1e1",
                config: Config::Absent,
            }],
            providers,
        }
    }

    fn mesh_with(geoms: Vec<kernel::Geom<'static>>) -> Mesh {
        parsed(&kernel::mesh(&[
            kernel::Class {
                id: MD_CLASS,
                name: "MD",
                geoms: vec![
                    path("0xfffff80006002300", "0xfffff80006002400", "md2", MIB),
                    path("0xfffff80003b1e600", "0xfffff80003b1e400", "md1", MIB),
                    path("0xfffff80003a2d300", "0xfffff80003a2d100", "md0", MIB),
                ],
            },
            kernel::Class {
                id: MP_CLASS,
                name: "MULTIPATH",
                geoms,
            },
        ]))
    }

    #[test]
    fn list_withered_provider() {
        let mesh = mesh_with(vec![withering_geom(true)]);
        let expected = "\
Geom name: GONE
wither: (null)
Providers:
1. Name: multipath/GONE
   Mediasize: 1048576 (1.0M)
   Sectorsize: 512
   Mode: r1w0e0
   wither: (null)
Consumers:
1. Name: md2
   Mediasize: 1048576 (1.0M)
   Sectorsize: 512
   Mode: r1w1e1

";
        assert_eq!(ok(list(&mesh, "MULTIPATH", &[], false)), expected);
    }

    #[test]
    fn list_skips_provider_less_geoms_unless_all() {
        let mesh = mesh_with(vec![withering_geom(false), fred_geom()]);
        assert_eq!(ok(list(&mesh, "MULTIPATH", &[], false)), FRED_LIST);
        let gone = "\
Geom name: GONE
wither: (null)
Consumers:
1. Name: md2
   Mediasize: 1048576 (1.0M)
   Sectorsize: 512
   Mode: r1w1e1

";
        let all = ok(list(&mesh, "MULTIPATH", &[], true));
        assert_eq!(all, format!("{FRED_LIST}{gone}"));
        // A name finds it without -a.
        assert_eq!(ok(list(&mesh, "MULTIPATH", &["GONE"], false)), gone);
    }

    #[test]
    fn list_consumer_without_provider() {
        let mut geom = fred_geom();
        geom.consumers.insert(
            0,
            kernel::Consumer {
                id: "0xfffff80003c0b400",
                provider: None,
                mode: "r0w0e0",
                config: Config::Items(vec![("State", "NEW")]),
            },
        );
        let mesh = mesh_with(vec![geom]);
        let out = ok(list(&mesh, "MULTIPATH", &[], false));
        let tail = concat!(
            "   State: PASSIVE\n",
            "3. [no provider]\n",
            "   State: NEW\n",
            "\n",
        );
        assert!(out.ends_with(tail), "{out}");
        let flags = StatusFlags::default();
        let expected = concat!(
            "          Name   Status  Components\n",
            "multipath/FRED  OPTIMAL  md0 (ACTIVE)\n",
            "                         md1 (PASSIVE)\n",
        );
        assert_eq!(ok(status(&mesh, "MULTIPATH", &[], flags)), expected);
    }

    #[test]
    fn list_stripe_lines_when_only_offset_is_set() {
        let mut geom = fred_geom();
        geom.providers[0].stripeoffset = 512;
        let mesh = mesh_with(vec![geom]);
        let out = ok(list(&mesh, "MULTIPATH", &[], false));
        let provider = concat!(
            "1. Name: multipath/FRED\n",
            "   Mediasize: 1048576 (1.0M)\n",
            "   Sectorsize: 512\n",
            "   Stripesize: 0\n",
            "   Stripeoffset: 512\n",
            "   Mode: r0w0e0\n",
        );
        assert!(out.contains(provider), "{out}");
    }

    /// FRED, then ARCHIVE_SHELF_01 with a failed path, then GONE (no provider).
    fn status_mesh() -> Mesh {
        let archive = kernel::Geom {
            id: "0xfffff80007100100",
            name: "ARCHIVE_SHELF_01",
            rank: 2,
            config: mp_config(
                "DEGRADED",
                "7f0c2e1a-1c43-11ef-9b1f-00a098d6e2c4",
                "Active/Passive",
                "AUTOMATIC",
            ),
            consumers: vec![
                path_consumer("0xfffff80007100300", "0xfffff80005003400", "FAIL"),
                path_consumer("0xfffff80007100200", "0xfffff80005002400", "ACTIVE"),
            ],
            providers: vec![mp_provider(
                "0xfffff80007100500",
                "multipath/ARCHIVE_SHELF_01",
                GIB - 512,
                "DEGRADED",
            )],
        };
        parsed(&kernel::mesh(&[
            kernel::Class {
                id: DISK_CLASS,
                name: "DISK",
                geoms: vec![
                    path("0xfffff80005003300", "0xfffff80005003400", "da1", GIB),
                    path("0xfffff80005002300", "0xfffff80005002400", "da0", GIB),
                ],
            },
            kernel::Class {
                id: MD_CLASS,
                name: "MD",
                geoms: vec![
                    path("0xfffff80006002300", "0xfffff80006002400", "md2", MIB),
                    path("0xfffff80003b1e600", "0xfffff80003b1e400", "md1", MIB),
                    path("0xfffff80003a2d300", "0xfffff80003a2d100", "md0", MIB),
                ],
            },
            kernel::Class {
                id: MP_CLASS,
                name: "MULTIPATH",
                geoms: vec![withering_geom(false), archive, fred_geom()],
            },
        ]))
    }

    fn flags(all: bool, geoms: bool, script: bool) -> StatusFlags {
        StatusFlags { all, geoms, script }
    }

    #[test]
    fn status_compat_example_by_dev_name() {
        let expected = concat!(
            "          Name   Status  Components\n",
            "multipath/FRED  OPTIMAL  md0 (ACTIVE)\n",
            "                         md1 (PASSIVE)\n",
        );
        let out = ok(status(
            &status_mesh(),
            "MULTIPATH",
            &["/dev/FRED"],
            flags(false, false, false),
        ));
        assert_eq!(out, expected);
    }

    #[test]
    fn status_default_widths_follow_longest_provider() {
        let expected = concat!(
            "                      Name    Status  Components\n",
            "            multipath/FRED   OPTIMAL  md0 (ACTIVE)\n",
            "                                      md1 (PASSIVE)\n",
            "multipath/ARCHIVE_SHELF_01  DEGRADED  da0 (ACTIVE)\n",
            "                                      da1 (FAIL)\n",
        );
        let out = ok(status(
            &status_mesh(),
            "MULTIPATH",
            &[],
            flags(false, false, false),
        ));
        assert_eq!(out, expected);
        // -a adds nothing in provider form: GONE has no provider to show.
        let all = ok(status(
            &status_mesh(),
            "MULTIPATH",
            &[],
            flags(true, false, false),
        ));
        assert_eq!(all, expected);
    }

    #[test]
    fn status_geoms_form() {
        let expected = concat!(
            "            Name    Status  Components\n",
            "            FRED   OPTIMAL  md0 (ACTIVE)\n",
            "                            md1 (PASSIVE)\n",
            "ARCHIVE_SHELF_01  DEGRADED  da0 (ACTIVE)\n",
            "                            da1 (FAIL)\n",
        );
        let out = ok(status(
            &status_mesh(),
            "MULTIPATH",
            &[],
            flags(false, true, false),
        ));
        assert_eq!(out, expected);
    }

    #[test]
    fn status_geoms_form_with_all_shows_provider_less_geom() {
        let expected = concat!(
            "            Name    Status  Components\n",
            "            FRED   OPTIMAL  md0 (ACTIVE)\n",
            "                            md1 (PASSIVE)\n",
            "ARCHIVE_SHELF_01  DEGRADED  da0 (ACTIVE)\n",
            "                            da1 (FAIL)\n",
            "            GONE       N/A  md2\n",
        );
        let out = ok(status(
            &status_mesh(),
            "MULTIPATH",
            &[],
            flags(true, true, false),
        ));
        assert_eq!(out, expected);
    }

    #[test]
    fn status_script_form_repeats_name_and_status() {
        let expected = concat!(
            "            multipath/FRED   OPTIMAL  md0 (ACTIVE)\n",
            "            multipath/FRED   OPTIMAL  md1 (PASSIVE)\n",
            "multipath/ARCHIVE_SHELF_01  DEGRADED  da0 (ACTIVE)\n",
            "multipath/ARCHIVE_SHELF_01  DEGRADED  da1 (FAIL)\n",
        );
        let out = ok(status(
            &status_mesh(),
            "MULTIPATH",
            &[],
            flags(false, false, true),
        ));
        assert_eq!(out, expected);
        // Only FRED is measured: widths 4 and 7.
        let geoms = concat!(
            "FRED  OPTIMAL  md0 (ACTIVE)\n",
            "FRED  OPTIMAL  md1 (PASSIVE)\n",
        );
        let out = ok(status(
            &status_mesh(),
            "MULTIPATH",
            &["FRED"],
            flags(false, true, true),
        ));
        assert_eq!(out, geoms);
    }

    #[test]
    fn status_missing_name_prints_nothing() {
        let rendered = status(
            &status_mesh(),
            "MULTIPATH",
            &["FRED", "NOPE"],
            flags(false, false, false),
        );
        assert_eq!(rendered.stdout, "");
        assert_eq!(
            error_text(&rendered).as_deref(),
            Some("No such geom: NOPE.")
        );
    }

    #[test]
    fn status_missing_class_has_no_quotes() {
        let rendered = status(&status_mesh(), "NOP", &[], StatusFlags::default());
        assert_eq!(rendered.stdout, "");
        assert_eq!(
            error_text(&rendered).as_deref(),
            Some("Class NOP not found.")
        );
    }

    #[test]
    fn status_with_nothing_to_show_prints_nothing_at_all() {
        let mesh = mesh_with(vec![withering_geom(false)]);
        assert_eq!(
            ok(status(&mesh, "MULTIPATH", &[], StatusFlags::default())),
            ""
        );
        assert_eq!(ok(list(&mesh, "MULTIPATH", &[], false)), "");
        let empty = mesh_with(vec![]);
        assert_eq!(
            ok(status(&empty, "MULTIPATH", &[], flags(true, true, false))),
            ""
        );
        // With -a the geom counts, so the header appears even with no provider row.
        let header = "Name  Status  Components\n";
        assert_eq!(
            ok(status(&mesh, "MULTIPATH", &[], flags(true, false, false))),
            header
        );
        let row = "Name  Status  Components\nGONE     N/A  md2\n";
        assert_eq!(
            ok(status(&mesh, "MULTIPATH", &[], flags(true, true, false))),
            row
        );
    }

    /// A geom of another class with hand-written config, for the component forms.
    fn mirror_mesh(geom_config: Vec<(&'static str, &'static str)>) -> Mesh {
        let consumer = |id, provider, config| kernel::Consumer {
            id,
            provider,
            mode: "r1w1e1",
            config,
        };
        parsed(&kernel::mesh(&[
            kernel::Class {
                id: DISK_CLASS,
                name: "DISK",
                geoms: vec![
                    path("0xa2", "0xa2p", "ada2", GIB),
                    path("0xa1", "0xa1p", "ada1", GIB),
                    path("0xa0", "0xa0p", "ada0", GIB),
                ],
            },
            kernel::Class {
                id: "0xc1",
                name: "MIRROR",
                geoms: vec![kernel::Geom {
                    id: "0xg1",
                    name: "gm0",
                    rank: 2,
                    config: Config::Items(geom_config),
                    consumers: vec![
                        consumer("0xc5", None, Config::Items(vec![("State", "NEW")])),
                        consumer("0xc4", Some("0xa2p"), Config::Items(vec![])),
                        consumer(
                            "0xc3",
                            Some("0xa1p"),
                            Config::Items(vec![("Synchronized", "40%")]),
                        ),
                        // The kernel order puts B after A; the list is reversed and the
                        // last match wins, so A shows.
                        consumer(
                            "0xc2",
                            Some("0xa0p"),
                            Config::Items(vec![
                                ("State", "A"),
                                ("Synchronized", "10%"),
                                ("state", "B"),
                            ]),
                        ),
                    ],
                    providers: vec![],
                }],
            },
        ]))
    }

    #[test]
    fn status_component_forms() {
        let mesh = mirror_mesh(vec![("State", "COMPLETE")]);
        let expected = concat!(
            "Name    Status  Components\n",
            " gm0  COMPLETE  ada0 (A, 10%)\n",
            "                ada1 (40%)\n",
            "                ada2\n",
        );
        assert_eq!(
            ok(status(&mesh, "MIRROR", &["gm0"], flags(false, true, false))),
            expected
        );
    }

    #[test]
    fn status_geom_width_counts_every_state_item() {
        // dumpconf order: "state" first, then "State"; after reversal "State" is the one
        // shown, but both are measured.
        let mesh = mirror_mesh(vec![("state", "VERYLONGSTATE"), ("State", "OK")]);
        let expected = "\
gm0             OK  ada0 (A, 10%)
gm0             OK  ada1 (40%)
gm0             OK  ada2
";
        assert_eq!(
            ok(status(&mesh, "MIRROR", &["gm0"], flags(false, true, true))),
            expected
        );
    }

    #[test]
    fn status_pads_by_bytes_like_printf() {
        // The kernel escapes each byte above 0x7e; the two come back as one two-byte
        // character, and printf pads by bytes: "café" is five wide.
        let xml = "<mesh><class><name>NOP</name><geom><name>caf&#xC3;&#xA9;</name>\
                   <config><State>UP</State></config></geom></class></mesh>";
        let mesh = parsed(xml);
        let out = ok(status(&mesh, "NOP", &[], flags(true, true, false)));
        assert_eq!(out, " Name  Status  Components\ncafé      UP  N/A\n");
    }

    #[test]
    fn long_components_are_cut_at_255_bytes() {
        let long = "x".repeat(300);
        assert_eq!(truncate(long.clone(), COMPONENT_MAX).len(), 255);
        let multibyte = format!("{}\u{e9}", "x".repeat(254));
        assert_eq!(truncate(multibyte, COMPONENT_MAX).len(), 254);
        assert_eq!(truncate("short".into(), COMPONENT_MAX), "short");
    }
}

//! The GEOM mesh (classes, geoms, providers, consumers and their config items), built from
//! the kernel's `kern.geom.confxml` document the way libgeom's `geom_xml2tree` builds it.
//!
//! This module owns the parse and the lookups over its result. It does not fetch the XML
//! (the caller reads the sysctl, a ctl verb's answer or a file) and it prints nothing (see
//! [`crate::render`]). It keeps the libgeom behaviour that `list` and `status` make visible:
//!
//! - every list (classes, geoms, providers, consumers, config items) is in **reverse**
//!   document order, because libgeom inserts each new entry at the head of its list;
//! - element text is trimmed piece by piece as expat hands it over: each line, each
//!   character or entity reference and each run of plain text between them is trimmed of
//!   surrounding white space on its own, then the pieces are joined;
//! - an empty value is `None` (FreeBSD's printf shows it as `(null)`);
//! - any element inside a `<config>` becomes a config item, and a `<wither/>` directly in a
//!   geom or provider becomes a config item `wither` without a value;
//! - the element rules apply in libgeom's order, so for instance a `<name>` inside a
//!   provider's `<config>` renames the provider instead of becoming a config item.
//!
//! Where libgeom would crash (a geom outside a class, a consumer naming a provider that is
//! not in the document) [`parse`] returns an error instead. The back references from a
//! geom to its class and from a provider or consumer to its geom repeat what the nesting
//! says and are not checked. Ids are opaque strings; libgeom reads them with `strtoul`,
//! which differs only for ids the kernel never writes (`0x10` and `16` would match there).

use std::collections::HashMap;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Why a confxml document could not be turned into a [`Mesh`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    /// The document is not well-formed XML (libgeom fails with `EILSEQ` here).
    #[error("malformed XML at byte {position}: {message}")]
    Syntax {
        /// Byte offset in the document where the fault was found.
        position: u64,
        /// What is wrong.
        message: String,
    },
    /// An element that needs an enclosing one appeared without it, e.g. a `<geom>`
    /// outside any `<class>` (libgeom dereferences a null pointer here).
    #[error("<{element}> outside of its parent element")]
    Misplaced {
        /// The element's name.
        element: String,
    },
    /// A consumer refers to a provider id the document does not define (libgeom
    /// dereferences a null pointer here).
    #[error("a consumer refers to unknown provider {reference}")]
    UnknownProvider {
        /// The provider id the consumer refers to.
        reference: String,
    },
}

impl MeshError {
    /// The `strerror` text geom(8) appends to `Cannot get GEOM tree` when libgeom rejects a
    /// document: libgeom reports every parse failure as `EILSEQ`.
    pub fn errno_message(&self) -> &'static str {
        "Illegal byte sequence"
    }
}

/// The whole topology: every class the document lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mesh {
    /// Classes in reverse document order.
    pub classes: Vec<Class>,
}

/// A GEOM class (`MULTIPATH`, `DISK`, `MD`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Class {
    /// The `id` attribute, if the element had one.
    pub id: Option<String>,
    /// The class name, `None` when absent or empty.
    pub name: Option<String>,
    /// Geoms in reverse document order.
    pub geoms: Vec<Geom>,
    /// Class-level config items in reverse document order.
    pub config: Vec<ConfigItem>,
}

/// One geom (instance) of a class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Geom {
    /// The `id` attribute, if the element had one.
    pub id: Option<String>,
    /// The geom name, `None` when absent or empty.
    pub name: Option<String>,
    /// The geom's rank in the topology.
    pub rank: u32,
    /// Config items in reverse document order (a withering geom has only `wither`).
    pub config: Vec<ConfigItem>,
    /// Providers in reverse document order.
    pub providers: Vec<Provider>,
    /// Consumers in reverse document order; the kernel emits the newest first, so this
    /// is attach order.
    pub consumers: Vec<Consumer>,
}

/// A provider: the device a geom offers upwards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provider {
    /// The `id` attribute, if the element had one.
    pub id: Option<String>,
    /// The provider name (`multipath/FRED`), `None` when absent or empty.
    pub name: Option<String>,
    /// The access counts, `r0w0e0` style.
    pub mode: Option<String>,
    /// Size in bytes (an `off_t`, as libgeom keeps it).
    pub mediasize: i64,
    /// Sector size in bytes.
    pub sectorsize: u32,
    /// Stripe size in bytes (an `off_t`).
    pub stripesize: i64,
    /// Stripe offset in bytes (an `off_t`).
    pub stripeoffset: i64,
    /// Config items in reverse document order.
    pub config: Vec<ConfigItem>,
}

/// A consumer: a geom's attachment to a provider below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consumer {
    /// The `id` attribute, if the element had one.
    pub id: Option<String>,
    /// The provider id named by the `<provider ref>` element, as written.
    pub provider_ref: Option<String>,
    /// Where that provider sits in the mesh; `None` when the consumer names none.
    pub provider: Option<ProviderIdx>,
    /// The consumer's own access counts, `r1w1e1` style.
    pub mode: Option<String>,
    /// Config items in reverse document order.
    pub config: Vec<ConfigItem>,
}

/// A `name: value` pair from a `<config>` section (or a `<wither/>` marker).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigItem {
    /// The element name, e.g. `State`.
    pub name: String,
    /// The element text, `None` when empty.
    pub value: Option<String>,
}

/// The position of a provider in a [`Mesh`]: indexes into `classes`, that class's
/// `geoms` and that geom's `providers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProviderIdx {
    /// Index into [`Mesh::classes`].
    pub class: usize,
    /// Index into [`Class::geoms`].
    pub geom: usize,
    /// Index into [`Geom::providers`].
    pub provider: usize,
}

impl Mesh {
    /// The first class with this exact name (geom(8)'s `find_class`).
    pub fn find_class(&self, name: &str) -> Option<&Class> {
        self.classes
            .iter()
            .find(|class| class.name.as_deref() == Some(name))
    }

    /// The provider at `at`, if it exists.
    pub fn provider(&self, at: ProviderIdx) -> Option<&Provider> {
        self.classes
            .get(at.class)?
            .geoms
            .get(at.geom)?
            .providers
            .get(at.provider)
    }

    /// The first provider with this id, in list order.
    pub fn provider_by_id(&self, id: &str) -> Option<&Provider> {
        self.providers()
            .find(|(_, provider)| provider.id.as_deref() == Some(id))
            .map(|(_, provider)| provider)
    }

    /// The provider a consumer is attached to, if any.
    pub fn consumer_provider(&self, consumer: &Consumer) -> Option<&Provider> {
        self.provider(consumer.provider?)
    }

    /// Every provider of every geom of every class, in list order, with its position.
    pub fn providers(&self) -> impl Iterator<Item = (ProviderIdx, &Provider)> {
        self.classes.iter().enumerate().flat_map(|(ci, class)| {
            class.geoms.iter().enumerate().flat_map(move |(gi, geom)| {
                geom.providers
                    .iter()
                    .enumerate()
                    .map(move |(pi, provider)| {
                        let at = ProviderIdx {
                            class: ci,
                            geom: gi,
                            provider: pi,
                        };
                        (at, provider)
                    })
            })
        })
    }

    /// Puts every list in libgeom's order: each entry was inserted at the head.
    fn reverse_lists(&mut self) {
        self.classes.reverse();
        for class in &mut self.classes {
            class.config.reverse();
            class.geoms.reverse();
            for geom in &mut class.geoms {
                geom.config.reverse();
                geom.providers.reverse();
                geom.consumers.reverse();
                for provider in &mut geom.providers {
                    provider.config.reverse();
                }
                for consumer in &mut geom.consumers {
                    consumer.config.reverse();
                }
            }
        }
    }

    /// Turns every consumer's provider reference into a position in the mesh.
    fn resolve_consumers(&mut self) -> Result<(), MeshError> {
        let mut by_id: HashMap<String, ProviderIdx> = HashMap::new();
        for (at, provider) in self.providers() {
            if let Some(id) = &provider.id {
                by_id.entry(id.clone()).or_insert(at);
            }
        }
        let consumers = self
            .classes
            .iter_mut()
            .flat_map(|class| class.geoms.iter_mut())
            .flat_map(|geom| geom.consumers.iter_mut());
        for consumer in consumers {
            consumer.provider = match &consumer.provider_ref {
                None => None,
                Some(reference) => {
                    Some(
                        *by_id
                            .get(reference)
                            .ok_or_else(|| MeshError::UnknownProvider {
                                reference: reference.clone(),
                            })?,
                    )
                }
            };
        }
        Ok(())
    }
}

impl Class {
    /// The first geom with this name; a leading `/dev/` is ignored, as geom(8)'s
    /// `find_geom` does.
    pub fn find_geom(&self, name: &str) -> Option<&Geom> {
        let name = name.strip_prefix("/dev/").unwrap_or(name);
        self.geoms
            .iter()
            .find(|geom| geom.name.as_deref() == Some(name))
    }
}

/// Parses a confxml document into a [`Mesh`], exactly as libgeom's `geom_xml2tree` would.
///
/// # Errors
///
/// [`MeshError::Syntax`] when the document is not well-formed XML; the other variants
/// where libgeom would crash on a document that is well-formed but not a GEOM mesh.
pub fn parse(xml: &str) -> Result<Mesh, MeshError> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_comments = true;
    let mut builder = Builder::default();
    loop {
        builder.position = reader.buffer_position();
        let event = reader.read_event().map_err(|e| MeshError::Syntax {
            position: reader.error_position(),
            message: e.to_string(),
        })?;
        if matches!(event, Event::Eof) {
            break;
        }
        builder.feed(event)?;
    }
    builder.finish()
}

/// Which object a `<config>` section fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Class,
    Geom,
    Provider,
    Consumer,
}

/// The parse state, mirroring libgeom's: which objects are open (the open one is always
/// the last of its list), where config items go, and one text buffer per open element.
#[derive(Debug, Default)]
struct Builder {
    classes: Vec<Class>,
    in_class: bool,
    in_geom: bool,
    in_provider: bool,
    in_consumer: bool,
    config: Option<Owner>,
    text: Vec<String>,
    root_seen: bool,
    position: u64,
}

impl Builder {
    /// Takes one reader event (anything but the end of input).
    fn feed(&mut self, event: Event<'_>) -> Result<(), MeshError> {
        let at = self.position;
        match event {
            Event::Start(element) => self.start(&element),
            Event::Empty(element) => {
                self.start(&element)?;
                self.end(&element_name(&element, at)?)
            }
            Event::End(element) => self.end(utf8(element.name().into_inner(), at)?),
            Event::Text(text) => self.text(utf8(&text, at)?),
            Event::CData(data) => self.cdata(utf8(&data, at)?),
            Event::Comment(text) => self.markup(utf8(&text, at)?),
            Event::PI(pi) => {
                check_name(utf8(pi.target(), at)?).map_err(|m| self.syntax(&m))?;
                self.markup(utf8(pi.content(), at)?)
            }
            Event::Decl(_) if at != 0 => Err(self.syntax("XML declaration not at start")),
            Event::Decl(_) | Event::DocType(_) | Event::Eof => Ok(()),
        }
    }

    /// An element opens (libgeom's `StartElement`).
    fn start(&mut self, element: &BytesStart<'_>) -> Result<(), MeshError> {
        if self.text.is_empty() && self.root_seen {
            return Err(self.syntax("junk after document element"));
        }
        self.root_seen = true;
        let name = element_name(element, self.position)?;
        let (id, reference) = self.id_and_ref(element)?;
        self.text.push(String::new());
        match name.as_str() {
            "class" if !self.in_class => {
                self.classes.push(Class {
                    id,
                    ..Class::default()
                });
                self.in_class = true;
            }
            "geom" if !self.in_geom => {
                let geom = Geom {
                    id,
                    ..Geom::default()
                };
                self.class_mut()
                    .ok_or_else(|| misplaced(&name))?
                    .geoms
                    .push(geom);
                self.in_geom = true;
            }
            // The geom's back reference to its class: the nesting already says it.
            "class" if self.in_geom => {}
            "consumer" if !self.in_consumer => {
                let consumer = Consumer {
                    id,
                    ..Consumer::default()
                };
                let geom = self.geom_mut().ok_or_else(|| misplaced(&name))?;
                geom.consumers.push(consumer);
                self.in_consumer = true;
            }
            "geom" if self.in_consumer => {}
            "provider" if self.in_consumer => {
                if let Some(consumer) = self.consumer_mut() {
                    consumer.provider_ref = reference;
                }
            }
            "provider" if !self.in_provider => {
                let provider = Provider {
                    id,
                    ..Provider::default()
                };
                let geom = self.geom_mut().ok_or_else(|| misplaced(&name))?;
                geom.providers.push(provider);
                self.in_provider = true;
            }
            "geom" if self.in_provider => {}
            "config" => {
                if let Some(owner) = self.innermost() {
                    self.config = Some(owner);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// An element closes (libgeom's `EndElement`): its text lands in a field, a config
    /// item, or nowhere, and it may close the open object.
    fn end(&mut self, name: &str) -> Result<(), MeshError> {
        let text = self
            .text
            .pop()
            .ok_or_else(|| self.syntax("unmatched end tag"))?;
        let value = (!text.is_empty()).then_some(text);
        match name {
            "name" if self.in_provider => self.with_provider(|p| p.name = value),
            "name" if self.in_geom => self.with_geom(|g| g.name = value),
            "name" if self.in_class => self.with_class(|c| c.name = value),
            "rank" if self.in_geom => self.with_geom(|g| g.rank = c_uint(value.as_deref())),
            "mode" if self.in_provider => self.with_provider(|p| p.mode = value),
            "mode" if self.in_consumer => self.with_consumer(|c| c.mode = value),
            "mediasize" if self.in_provider => {
                self.with_provider(|p| p.mediasize = c_off(value.as_deref()))
            }
            "sectorsize" if self.in_provider => {
                self.with_provider(|p| p.sectorsize = c_uint(value.as_deref()))
            }
            "stripesize" if self.in_provider => {
                self.with_provider(|p| p.stripesize = c_off(value.as_deref()))
            }
            "stripeoffset" if self.in_provider => {
                self.with_provider(|p| p.stripeoffset = c_off(value.as_deref()));
            }
            "config" => self.config = None,
            _ => self.end_other(name, value),
        }
        Ok(())
    }

    /// The rest of `EndElement`: a config item, or the close of an open object.
    fn end_other(&mut self, name: &str, value: Option<String>) {
        let owner = match self.config {
            Some(owner) => Some(owner),
            None if name == "wither" && self.in_provider => Some(Owner::Provider),
            None if name == "wither" && self.in_geom => Some(Owner::Geom),
            None => None,
        };
        if let Some(owner) = owner {
            if let Some(items) = self.config_mut(owner) {
                items.push(ConfigItem {
                    name: name.to_owned(),
                    value,
                });
            }
            return;
        }
        match name {
            "consumer" if self.in_consumer => self.in_consumer = false,
            "provider" if self.in_provider => self.in_provider = false,
            "geom" if self.in_consumer || self.in_provider => {}
            "geom" if self.in_geom => self.in_geom = false,
            "class" if self.in_geom => {}
            "class" if self.in_class => self.in_class = false,
            _ => {}
        }
    }

    /// Character data outside markup (libgeom's `CharData`, once per expat piece).
    fn text(&mut self, raw: &str) -> Result<(), MeshError> {
        check_chars(raw).map_err(|m| self.syntax(&m))?;
        if raw.contains("]]>") {
            return Err(self.syntax("']]>' in character data"));
        }
        match self.text.last_mut() {
            Some(buffer) => append_text(buffer, raw).map_err(|m| self.syntax(&m)),
            None if raw.chars().all(is_xml_space) => Ok(()),
            None => Err(self.syntax("text outside the document element")),
        }
    }

    /// A comment or processing instruction: ignored, but only if well-formed.
    fn markup(&self, content: &str) -> Result<(), MeshError> {
        check_chars(content).map_err(|m| self.syntax(&m))
    }

    /// A CDATA section: no references; expat splits it at line ends and before each `]`.
    fn cdata(&mut self, raw: &str) -> Result<(), MeshError> {
        check_chars(raw).map_err(|m| self.syntax(&m))?;
        let position = self.position;
        let buffer = self
            .text
            .last_mut()
            .ok_or_else(|| syntax_at(position, "CDATA outside the document element"))?;
        for line in raw.split(['\n', '\r']) {
            let mut start = 0;
            for (at, _) in line.match_indices(']') {
                push_trimmed(buffer, &line[start..at]);
                start = at;
            }
            push_trimmed(buffer, &line[start..]);
        }
        Ok(())
    }

    /// The end of the document: libgeom reverses nothing explicitly, its head
    /// insertions already did; here the lists are turned at once.
    fn finish(self) -> Result<Mesh, MeshError> {
        if !self.root_seen {
            return Err(self.syntax("no element found"));
        }
        if !self.text.is_empty() {
            return Err(self.syntax("unclosed element at end of document"));
        }
        let mut mesh = Mesh {
            classes: self.classes,
        };
        mesh.reverse_lists();
        mesh.resolve_consumers()?;
        Ok(mesh)
    }

    /// The `id` and `ref` attributes; libgeom ignores the others.
    fn id_and_ref(
        &self,
        element: &BytesStart<'_>,
    ) -> Result<(Option<String>, Option<String>), MeshError> {
        let mut id = None;
        let mut reference = None;
        for attribute in element.attributes() {
            let attribute = attribute.map_err(|e| self.syntax(&e.to_string()))?;
            self.check_attribute(attribute.key.as_ref(), &attribute.value)?;
            let slot = match attribute.key.as_ref() {
                b"id" => &mut id,
                b"ref" => &mut reference,
                _ => continue,
            };
            let value = attribute
                .unescape_value()
                .map_err(|e| self.syntax(&e.to_string()))?;
            *slot = Some(value.into_owned());
        }
        Ok((id, reference))
    }

    /// Rejects an attribute name or raw value that is not well-formed XML.
    fn check_attribute(&self, key: &[u8], raw: &[u8]) -> Result<(), MeshError> {
        check_name(utf8(key, self.position)?).map_err(|m| self.syntax(&m))?;
        let raw = utf8(raw, self.position)?;
        check_chars(raw).map_err(|m| self.syntax(&m))?;
        if raw.contains('<') {
            return Err(self.syntax("'<' in attribute value"));
        }
        Ok(())
    }

    /// The object a `<config>` opened now belongs to: the innermost open one.
    fn innermost(&self) -> Option<Owner> {
        [
            (self.in_provider, Owner::Provider),
            (self.in_consumer, Owner::Consumer),
            (self.in_geom, Owner::Geom),
            (self.in_class, Owner::Class),
        ]
        .into_iter()
        .find_map(|(open, owner)| open.then_some(owner))
    }

    fn class_mut(&mut self) -> Option<&mut Class> {
        if !self.in_class {
            return None;
        }
        self.classes.last_mut()
    }

    fn geom_mut(&mut self) -> Option<&mut Geom> {
        if !self.in_geom {
            return None;
        }
        self.class_mut()?.geoms.last_mut()
    }

    fn provider_mut(&mut self) -> Option<&mut Provider> {
        if !self.in_provider {
            return None;
        }
        self.geom_mut()?.providers.last_mut()
    }

    fn consumer_mut(&mut self) -> Option<&mut Consumer> {
        if !self.in_consumer {
            return None;
        }
        self.geom_mut()?.consumers.last_mut()
    }

    fn config_mut(&mut self, owner: Owner) -> Option<&mut Vec<ConfigItem>> {
        match owner {
            Owner::Class => self.class_mut().map(|c| &mut c.config),
            Owner::Geom => self.geom_mut().map(|g| &mut g.config),
            Owner::Provider => self.provider_mut().map(|p| &mut p.config),
            Owner::Consumer => self.consumer_mut().map(|c| &mut c.config),
        }
    }

    fn with_class(&mut self, f: impl FnOnce(&mut Class)) {
        if let Some(open) = self.class_mut() {
            f(open);
        }
    }

    fn with_geom(&mut self, f: impl FnOnce(&mut Geom)) {
        if let Some(open) = self.geom_mut() {
            f(open);
        }
    }

    fn with_provider(&mut self, f: impl FnOnce(&mut Provider)) {
        if let Some(open) = self.provider_mut() {
            f(open);
        }
    }

    fn with_consumer(&mut self, f: impl FnOnce(&mut Consumer)) {
        if let Some(open) = self.consumer_mut() {
            f(open);
        }
    }

    fn syntax(&self, message: &str) -> MeshError {
        syntax_at(self.position, message)
    }
}

fn syntax_at(position: u64, message: &str) -> MeshError {
    MeshError::Syntax {
        position,
        message: message.to_owned(),
    }
}

fn misplaced(element: &str) -> MeshError {
    MeshError::Misplaced {
        element: element.to_owned(),
    }
}

fn element_name(element: &BytesStart<'_>, position: u64) -> Result<String, MeshError> {
    let name = utf8(element.name().into_inner(), position)?;
    check_name(name).map_err(|m| syntax_at(position, &m))?;
    Ok(name.to_owned())
}

/// Rejects what the XML `Name` production does not allow (quick-xml is lenient here).
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(is_name_start) && chars.all(is_name_char);
    if valid {
        Ok(())
    } else {
        Err(format!("invalid name {name:?}"))
    }
}

fn is_name_start(c: char) -> bool {
    matches!(c,
        ':' | 'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c,
            '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

fn utf8(bytes: &[u8], position: u64) -> Result<&str, MeshError> {
    std::str::from_utf8(bytes).map_err(|e| syntax_at(position, &e.to_string()))
}

/// Appends a run of escaped character data in expat's pieces: each reference and each
/// stretch of text between references and line ends is trimmed on its own; line ends
/// themselves are white space and vanish.
///
/// The kernel escapes every byte above 0x7e of a name on its own (`ä` is `&#xC3;&#xA4;`),
/// and expat reads each reference as a character, so FreeBSD's geom(8) shows a UTF-8 name
/// double-encoded (`Ã¤`) and cannot find it by its own name. Here a run of such byte
/// references that spells UTF-8 is decoded once, as the bytes it stands for; bytes that are
/// not UTF-8 still become one character each, as expat makes them (a deviation listed in
/// gmultipath(8) COMPATIBILITY).
fn append_text(buffer: &mut String, raw: &str) -> Result<(), String> {
    let mut bytes = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('&') {
            let end = after
                .find(';')
                .ok_or_else(|| "unterminated reference".to_owned())?;
            let decoded = decode_reference(&after[..end])?;
            rest = &after[end + 1..];
            if let Some(byte) = high_byte(&after[..end], decoded) {
                bytes.push(byte);
                continue;
            }
            push_bytes(buffer, &mut bytes);
            push_trimmed(buffer, decoded.encode_utf8(&mut [0; 4]));
        } else {
            push_bytes(buffer, &mut bytes);
            let end = rest.find(['&', '\n', '\r']).unwrap_or(rest.len());
            push_trimmed(buffer, &rest[..end]);
            rest = rest[end..].trim_start_matches(['\n', '\r']);
        }
    }
    push_bytes(buffer, &mut bytes);
    Ok(())
}

/// The byte a numeric reference such as `&#xC3;` stands for, when it is one the kernel's
/// escaping makes (0x80 to 0xFF).
fn high_byte(reference: &str, decoded: char) -> Option<u8> {
    let byte = u8::try_from(u32::from(decoded)).ok()?;
    (reference.starts_with('#') && byte >= 0x80).then_some(byte)
}

/// Appends the bytes collected from consecutive references: UTF-8 as the characters it
/// spells, any other byte as the character of that number (expat's reading); empties
/// `bytes`.
fn push_bytes(buffer: &mut String, bytes: &mut Vec<u8>) {
    for chunk in bytes.utf8_chunks() {
        buffer.push_str(chunk.valid());
        buffer.extend(chunk.invalid().iter().map(|&b| char::from(b)));
    }
    bytes.clear();
}

/// Appends one piece without its leading and trailing C-locale white space.
fn push_trimmed(buffer: &mut String, piece: &str) {
    buffer.push_str(piece.trim_matches(is_c_space));
}

/// The character a reference (`lt`, `#60`, `#x3C`, ...) stands for.
fn decode_reference(name: &str) -> Result<char, String> {
    let code = if let Some(hex) = name.strip_prefix("#x") {
        parse_digits(hex, 16)
    } else if let Some(decimal) = name.strip_prefix('#') {
        parse_digits(decimal, 10)
    } else {
        return match name {
            "lt" => Ok('<'),
            "gt" => Ok('>'),
            "amp" => Ok('&'),
            "apos" => Ok('\''),
            "quot" => Ok('"'),
            _ => Err(format!("undefined entity &{name};")),
        };
    };
    code.and_then(char::from_u32)
        .filter(|&c| is_xml_char(c))
        .ok_or_else(|| format!("invalid character reference &{name};"))
}

fn parse_digits(digits: &str, radix: u32) -> Option<u32> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// Rejects characters XML 1.0 does not allow in a document.
fn check_chars(raw: &str) -> Result<(), String> {
    match raw.chars().find(|&c| !is_xml_char(c)) {
        Some(c) => Err(format!(
            "character U+{:04X} not allowed in XML",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r'
        | '\u{20}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// `isspace` in the C locale.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// A `u_int` field: libgeom stores the `unsigned long` from `strtoul` and keeps the low
/// 32 bits.
fn c_uint(text: Option<&str>) -> u32 {
    c_strtoul(text.unwrap_or("")) as u32
}

/// An `off_t` field: libgeom stores the `uintmax_t` from `strtoumax`, so values past
/// `i64::MAX` (and a written `-1`) wrap to negative sizes.
fn c_off(text: Option<&str>) -> i64 {
    c_strtoul(text.unwrap_or("")) as i64
}

/// Reads a number the way C's `strtoul(s, NULL, 0)` does, as libgeom uses it: leading
/// white space, an optional sign, a `0x` (hex) or `0` (octal) prefix, then digits up to
/// the first that does not belong. Overflow saturates; a minus sign negates modulo 2^64;
/// no digits (or no text) give 0.
fn c_strtoul(text: &str) -> u64 {
    let s = text.trim_start_matches(is_c_space);
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let hex = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_hexdigit()));
    let (radix, digits) = match hex {
        Some(rest) => (16, rest),
        None if s.starts_with('0') => (8, s),
        None => (10, s),
    };
    let mut value: u64 = 0;
    for digit in digits.chars().map_while(|c| c.to_digit(radix)) {
        match value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(digit)))
        {
            Some(next) => value = next,
            None => return u64::MAX,
        }
    }
    if negative {
        value.wrapping_neg()
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes as the kernel lists them: MULTIPATH's consumer uses a DISK provider.
    const TWO_CLASSES: &str = r#"<mesh>
  <class id="0xffffffff81f0a000">
    <name>MULTIPATH</name>
    <geom id="0xfffff80003c0a100">
      <class ref="0xffffffff81f0a000"/>
      <name>FRED</name>
      <rank>2</rank>
      <config>
        <State>OPTIMAL</State>
        <UUID></UUID>
        <Mode>Active/Passive</Mode>
        <Type>MANUAL</Type>
      </config>
      <consumer id="0xfffff80003c0b300">
        <geom ref="0xfffff80003c0a100"/>
        <provider ref="0xfffff80003b00400"/>
        <mode>r1w1e1</mode>
        <config>
          <State>PASSIVE</State>
        </config>
      </consumer>
      <consumer id="0xfffff80003c0b200">
        <geom ref="0xfffff80003c0a100"/>
        <provider ref="0xfffff80003b00200"/>
        <mode>r1w1e1</mode>
        <config>
          <State>ACTIVE</State>
        </config>
      </consumer>
      <provider id="0xfffff80003c0c100">
        <geom ref="0xfffff80003c0a100"/>
        <mode>r0w0e0</mode>
        <name>multipath/FRED</name>
        <mediasize>1048576</mediasize>
        <sectorsize>512</sectorsize>
        <stripesize>0</stripesize>
        <stripeoffset>0</stripeoffset>
        <config>
          <State>OPTIMAL</State>
        </config>
      </provider>
    </geom>
  </class>
  <class id="0xffffffff81e00000">
    <name>DISK</name>
    <geom id="0xfffff80003b00300">
      <class ref="0xffffffff81e00000"/>
      <name>da1</name>
      <rank>1</rank>
      <provider id="0xfffff80003b00400">
        <geom ref="0xfffff80003b00300"/>
        <mode>r1w1e1</mode>
        <name>da1</name>
        <alias>diskid/DISK-2</alias>
        <mediasize>1048576</mediasize>
        <sectorsize>512</sectorsize>
        <stripesize>4096</stripesize>
        <stripeoffset>0</stripeoffset>
      </provider>
    </geom>
    <geom id="0xfffff80003b00100">
      <class ref="0xffffffff81e00000"/>
      <name>da0</name>
      <rank>1</rank>
      <provider id="0xfffff80003b00200">
        <geom ref="0xfffff80003b00100"/>
        <mode>r1w1e1</mode>
        <name>da0</name>
        <mediasize>1048576</mediasize>
        <sectorsize>512</sectorsize>
        <stripesize>0</stripesize>
        <stripeoffset>0</stripeoffset>
      </provider>
    </geom>
  </class>
</mesh>
"#;

    fn item(name: &str, value: Option<&str>) -> ConfigItem {
        ConfigItem {
            name: name.to_owned(),
            value: value.map(str::to_owned),
        }
    }

    fn parse_ok(xml: &str) -> Mesh {
        match parse(xml) {
            Ok(mesh) => mesh,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    /// The text of the one `<x>` element inside a class config, for trimming tests.
    fn class_value(inner: &str) -> Option<String> {
        let xml = format!("<mesh><class><config><x>{inner}</x></config></class></mesh>");
        parse_ok(&xml).classes[0].config[0].value.clone()
    }

    fn geom<'m>(mesh: &'m Mesh, class: &str, name: &str) -> &'m Geom {
        let class = mesh.find_class(class).expect("class");
        class.find_geom(name).expect("geom")
    }

    #[test]
    fn classes_and_geoms_come_out_in_reverse_document_order() {
        let mesh = parse_ok(TWO_CLASSES);
        let classes: Vec<_> = mesh.classes.iter().map(|c| c.name.as_deref()).collect();
        assert_eq!(classes, [Some("DISK"), Some("MULTIPATH")]);
        let disks: Vec<_> = mesh.classes[0]
            .geoms
            .iter()
            .map(|g| g.name.as_deref())
            .collect();
        assert_eq!(disks, [Some("da0"), Some("da1")]);
    }

    #[test]
    fn consumers_come_out_oldest_first() {
        let mesh = parse_ok(TWO_CLASSES);
        let fred = geom(&mesh, "MULTIPATH", "FRED");
        let ids: Vec<_> = fred.consumers.iter().map(|c| c.id.as_deref()).collect();
        assert_eq!(
            ids,
            [Some("0xfffff80003c0b200"), Some("0xfffff80003c0b300")]
        );
    }

    #[test]
    fn config_items_come_out_reversed_and_empty_values_are_none() {
        let mesh = parse_ok(TWO_CLASSES);
        let fred = geom(&mesh, "MULTIPATH", "FRED");
        assert_eq!(
            fred.config,
            [
                item("Type", Some("MANUAL")),
                item("Mode", Some("Active/Passive")),
                item("UUID", None),
                item("State", Some("OPTIMAL")),
            ]
        );
    }

    #[test]
    fn provider_fields_are_read() {
        let mesh = parse_ok(TWO_CLASSES);
        let fred = geom(&mesh, "MULTIPATH", "FRED");
        assert_eq!(fred.rank, 2);
        assert_eq!(
            fred.providers,
            [Provider {
                id: Some("0xfffff80003c0c100".into()),
                name: Some("multipath/FRED".into()),
                mode: Some("r0w0e0".into()),
                mediasize: 1_048_576,
                sectorsize: 512,
                stripesize: 0,
                stripeoffset: 0,
                config: vec![item("State", Some("OPTIMAL"))],
            }]
        );
    }

    #[test]
    fn consumers_resolve_providers_in_other_classes() {
        let mesh = parse_ok(TWO_CLASSES);
        let fred = geom(&mesh, "MULTIPATH", "FRED");
        let names: Vec<_> = fred
            .consumers
            .iter()
            .map(|c| mesh.consumer_provider(c).and_then(|p| p.name.as_deref()))
            .collect();
        assert_eq!(names, [Some("da0"), Some("da1")]);
        assert_eq!(fred.consumers[0].mode.as_deref(), Some("r1w1e1"));
        assert_eq!(fred.consumers[1].config, [item("State", Some("PASSIVE"))]);
        let da1 = mesh.provider_by_id("0xfffff80003b00400").expect("da1");
        assert_eq!(da1.stripesize, 4096);
        assert_eq!(
            fred.consumers[1].provider,
            Some(ProviderIdx {
                class: 0,
                geom: 1,
                provider: 0
            })
        );
    }

    #[test]
    fn provider_aliases_are_ignored() {
        let mesh = parse_ok(TWO_CLASSES);
        let da1 = &geom(&mesh, "DISK", "da1").providers[0];
        assert_eq!(da1.name.as_deref(), Some("da1"));
        assert!(da1.config.is_empty());
    }

    #[test]
    fn find_geom_accepts_dev_prefix_and_find_class_is_exact() {
        let mesh = parse_ok(TWO_CLASSES);
        let class = mesh.find_class("MULTIPATH").expect("class");
        assert!(class.find_geom("/dev/FRED").is_some());
        assert!(class.find_geom("/dev/multipath/FRED").is_none());
        assert!(class.find_geom("fred").is_none());
        assert!(mesh.find_class("multipath").is_none());
    }

    #[test]
    fn consumer_without_provider_ref_has_none() {
        let xml = r#"<mesh><class id="1"><name>M</name><geom id="2"><name>g</name>
            <consumer id="3"><geom ref="2"/><mode>r0w0e0</mode></consumer></geom></class></mesh>"#;
        let mesh = parse_ok(xml);
        let consumer = &mesh.classes[0].geoms[0].consumers[0];
        assert_eq!(consumer.provider_ref, None);
        assert_eq!(consumer.provider, None);
        assert_eq!(mesh.consumer_provider(consumer), None);
    }

    #[test]
    fn dangling_provider_ref_is_an_error() {
        let xml = r#"<mesh><class id="1"><name>M</name><geom id="2"><name>g</name>
            <consumer id="3"><provider ref="0xdead"/></consumer></geom></class></mesh>"#;
        assert_eq!(
            parse(xml),
            Err(MeshError::UnknownProvider {
                reference: "0xdead".into()
            })
        );
    }

    #[test]
    fn wither_becomes_a_config_item_without_value() {
        let xml = r#"<mesh><class id="1"><name>MULTIPATH</name>
          <geom id="2"><class ref="1"/><name>FRED</name><rank>2</rank>
            <wither/>
            <consumer id="3"><geom ref="2"/><mode>r1w1e1</mode></consumer>
            <provider id="4"><geom ref="2"/><mode>r1w0e0</mode><name>multipath/FRED</name>
              <mediasize>1048576</mediasize><sectorsize>512</sectorsize>
              <stripesize>0</stripesize><stripeoffset>0</stripeoffset>
              <wither/>
            </provider>
          </geom></class></mesh>"#;
        let mesh = parse_ok(xml);
        let geom = &mesh.classes[0].geoms[0];
        assert_eq!(geom.config, [item("wither", None)]);
        assert_eq!(geom.providers[0].config, [item("wither", None)]);
        assert!(geom.consumers[0].config.is_empty());
    }

    #[test]
    fn wither_inside_a_consumer_lands_on_the_geom() {
        let xml = r#"<mesh><class><name>M</name><geom><name>g</name>
            <consumer><wither/></consumer></geom></class></mesh>"#;
        let mesh = parse_ok(xml);
        let geom = &mesh.classes[0].geoms[0];
        assert_eq!(geom.config, [item("wither", None)]);
        assert!(geom.consumers[0].config.is_empty());
    }

    #[test]
    fn any_element_in_config_is_an_item_even_nested() {
        let xml = "<mesh><class><name>M</name><geom><name>g</name><config>\
            <outer>x<inner>y</inner></outer><Empty/></config></geom></class></mesh>";
        let mesh = parse_ok(xml);
        assert_eq!(
            mesh.classes[0].geoms[0].config,
            [
                item("Empty", None),
                item("outer", Some("x")),
                item("inner", Some("y")),
            ]
        );
    }

    #[test]
    fn name_inside_provider_config_renames_the_provider() {
        let xml = "<mesh><class><name>M</name><geom><name>g</name>\
            <provider><name>p</name><config><name>q</name><mode>w</mode><Other>o</Other>\
            </config></provider></geom></class></mesh>";
        let mesh = parse_ok(xml);
        let provider = &mesh.classes[0].geoms[0].providers[0];
        assert_eq!(provider.name.as_deref(), Some("q"));
        assert_eq!(provider.mode.as_deref(), Some("w"));
        assert_eq!(provider.config, [item("Other", Some("o"))]);
    }

    #[test]
    fn class_config_is_kept() {
        let xml = "<mesh><class><name>M</name><config><a>1</a><b>2</b></config></class></mesh>";
        let mesh = parse_ok(xml);
        assert_eq!(
            mesh.classes[0].config,
            [item("b", Some("2")), item("a", Some("1"))]
        );
    }

    #[test]
    fn text_is_trimmed_per_expat_piece() {
        assert_eq!(class_value("  OPTIMAL  "), Some("OPTIMAL".into()));
        assert_eq!(class_value("\n\t  OPTIMAL\n    "), Some("OPTIMAL".into()));
        assert_eq!(class_value("Active/Passive"), Some("Active/Passive".into()));
        assert_eq!(class_value("a  b"), Some("a  b".into()));
        assert_eq!(class_value(" a \n b "), Some("ab".into()));
        assert_eq!(class_value("a &amp; b"), Some("a&b".into()));
        assert_eq!(class_value("a&#x20;b"), Some("ab".into()));
        assert_eq!(class_value("a <!-- c --> b"), Some("ab".into()));
        assert_eq!(class_value("   "), None);
        assert_eq!(class_value(""), None);
    }

    #[test]
    fn references_are_decoded() {
        assert_eq!(
            class_value("&#x3C;&#62;&lt;&gt;&quot;&apos;&#x43;"),
            Some("<><>\"'C".into())
        );
        // The kernel escapes every byte above 0x7e; UTF-8 is read back once (issue 11
        // item 8), any other byte becomes the character of its number, as expat makes it.
        assert_eq!(class_value("caf&#xC3;&#xA9;"), Some("café".into()));
        assert_eq!(
            class_value("&#xC3;&#xA4;&#xE6;&#x97;&#xA5;&#xE6;&#x9C;&#xAC;"),
            Some("ä日本".into())
        );
        assert_eq!(class_value("a&#xFF;b"), Some("a\u{ff}b".into()));
        assert_eq!(class_value("&#xC3;&#xA9;&#xC3;"), Some("é\u{c3}".into()));
        assert_eq!(
            class_value("&#233;"),
            Some("é".into()),
            "a character reference"
        );
    }

    #[test]
    fn cdata_is_split_before_brackets_and_at_line_ends() {
        assert_eq!(class_value("<![CDATA[ a ]b ]]>"), Some("a]b".into()));
        assert_eq!(
            class_value("<![CDATA[ x\n y &amp; ]]>"),
            Some("xy &amp;".into())
        );
    }

    #[test]
    fn numbers_are_read_like_strtoul() {
        let xml = |size: &str, sector: &str, rank: &str| {
            format!(
                "<mesh><class><name>M</name><geom><name>g</name><rank>{rank}</rank>\
                 <provider><mediasize>{size}</mediasize><sectorsize>{sector}</sectorsize>\
                 <stripesize>0x10</stripesize><stripeoffset>010</stripeoffset>\
                 </provider></geom></class></mesh>"
            )
        };
        let mesh = parse_ok(&xml("-512", "4294967808", "12abc"));
        let geom = &mesh.classes[0].geoms[0];
        let provider = &geom.providers[0];
        assert_eq!(provider.mediasize, -512);
        assert_eq!(provider.sectorsize, 512);
        assert_eq!(provider.stripesize, 16);
        assert_eq!(provider.stripeoffset, 8);
        assert_eq!(geom.rank, 12);
        let mesh = parse_ok(&xml("99999999999999999999", "", "0x"));
        let geom = &mesh.classes[0].geoms[0];
        assert_eq!(geom.providers[0].mediasize, -1);
        assert_eq!(geom.providers[0].sectorsize, 0);
        assert_eq!(geom.rank, 0);
    }

    #[test]
    fn malformed_documents_are_errors() {
        let bad = [
            "",
            "   ",
            "<mesh>",
            "<mesh><class></mesh>",
            "<mesh></mesh><mesh></mesh>",
            "<mesh></mesh>junk",
            "junk<mesh></mesh>",
            "<mesh><class><name>&bogus;</name></class></mesh>",
            "<mesh><class><name>&#0;</name></class></mesh>",
            "<mesh><class><name>&#X41;</name></class></mesh>",
            "<mesh><class><name>a & b</name></class></mesh>",
            "<mesh><class><name>a]]>b</name></class></mesh>",
            "<mesh><class><name>a\u{1}b</name></class></mesh>",
            "<mesh><class id=\"1\" id=\"2\"></class></mesh>",
        ];
        for xml in bad {
            assert!(
                matches!(parse(xml), Err(MeshError::Syntax { .. })),
                "{xml:?} parsed"
            );
        }
    }

    #[test]
    fn objects_outside_their_parents_are_errors() {
        for (xml, element) in [
            ("<mesh><geom/></mesh>", "geom"),
            ("<mesh><class><consumer/></class></mesh>", "consumer"),
            ("<mesh><class><provider/></class></mesh>", "provider"),
        ] {
            assert_eq!(
                parse(xml),
                Err(MeshError::Misplaced {
                    element: element.into()
                })
            );
        }
    }

    #[test]
    fn declaration_and_comments_are_allowed() {
        let xml = "<?xml version=\"1.0\"?>\n<!-- c --><mesh><class><name>X</name></class></mesh>\n";
        assert_eq!(parse_ok(xml).classes[0].name.as_deref(), Some("X"));
    }

    #[test]
    fn error_reason_is_eilseq() {
        let error = parse("<mesh>").expect_err("unclosed");
        assert_eq!(error.errno_message(), "Illegal byte sequence");
    }
}

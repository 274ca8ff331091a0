//! `--libxo`, as FreeBSD's tools spell it (libxo's `xo_parse_args`), for the commands that
//! have a machine-readable form (`list`, `status`, `getactive`, `stat`; an extension of
//! this gmultipath): the option is taken out of the command line wherever it stands, in
//! any of libxo's three spellings (`--libxo json,pretty`, `--libxo=xml`, `--libxo:JP`),
//! and the document is written in the style asked for.
//!
//! This module owns the option and the encodings; what a document says is the commands'
//! (see [`crate::view`]). Documents are serde values: JSON is serde_json's, with libxo's
//! `"__version"` member first; XML is the same tree as elements (arrays become repeated
//! elements named like their member, as libxo's lists do), under one root element. The
//! schema of every document is `gmultipath/schema/gmultipath-stats.schema.json`.

use serde_json::Value;

/// The version of the documents' layout (`"__version"`), bumped on any incompatible change.
pub const VERSION: &str = "1";

/// The output styles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// The plain text every command prints anyway.
    Text,
    /// JSON.
    Json,
    /// XML.
    Xml,
}

/// What `--libxo` asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Xo {
    /// The style.
    pub style: Style,
    /// Indented output (`pretty`, `P`).
    pub pretty: bool,
}

impl Xo {
    /// A machine-readable style was asked for (JSON or XML).
    pub fn structured(&self) -> bool {
        self.style != Style::Text
    }
}

/// Takes every `--libxo` option out of `argv` (argv[0] is kept); the last one wins, as in
/// libxo. An unknown style or flag is an error with libxo's wording.
pub fn parse_args(argv: &[String]) -> Result<(Vec<String>, Option<Xo>), String> {
    let mut rest = Vec::with_capacity(argv.len());
    let mut xo = None;
    let mut words = argv.iter();
    if let Some(first) = words.next() {
        rest.push(first.clone());
    }
    while let Some(word) = words.next() {
        let Some(tail) = word.strip_prefix("--libxo") else {
            rest.push(word.clone());
            continue;
        };
        let options = if let Some(value) = tail.strip_prefix('=') {
            parse_words(value)?
        } else if let Some(letters) = tail.strip_prefix(':') {
            parse_letters(letters)?
        } else if tail.is_empty() {
            let value = words
                .next()
                .ok_or_else(|| String::from("missing libxo option"))?;
            parse_words(value)?
        } else {
            // Another option that merely starts like ours (libxo warns likewise).
            return Err(format!("unknown libxo option: '{word}'"));
        };
        xo = Some(options);
    }
    Ok((rest, xo))
}

/// `json,pretty`-style options.
fn parse_words(value: &str) -> Result<Xo, String> {
    let mut xo = Xo {
        style: Style::Text,
        pretty: false,
    };
    for word in value.split(',').filter(|w| !w.is_empty()) {
        match word {
            "text" => xo.style = Style::Text,
            "json" => xo.style = Style::Json,
            "xml" => xo.style = Style::Xml,
            "pretty" => xo.pretty = true,
            // Flags libxo knows that change nothing here.
            "warn" | "no-top" | "underscores" | "dashes" | "not-first" | "flush" | "flush-line"
            | "no-locale" | "no-humanize" | "keys" | "info" | "units" => {}
            _ => return Err(format!("unknown libxo option value: '{word}'")),
        }
    }
    Ok(xo)
}

/// `:JP`-style option letters.
fn parse_letters(letters: &str) -> Result<Xo, String> {
    let mut xo = Xo {
        style: Style::Text,
        pretty: false,
    };
    for letter in letters.chars() {
        match letter {
            'T' => xo.style = Style::Text,
            'J' => xo.style = Style::Json,
            'X' => xo.style = Style::Xml,
            'P' => xo.pretty = true,
            'W' | 'N' | 'F' | 'k' | 'I' | 'U' | 'u' => {}
            _ => return Err(format!("unknown libxo option value: '{letter}'")),
        }
    }
    Ok(xo)
}

/// A whole document: `{"__version": "1", top: body}` in the style asked for, ending with a
/// newline. `Text` is not a document; the commands print their text instead.
pub fn document(xo: Xo, top: &str, body: Value) -> String {
    let mut root = serde_json::Map::new();
    root.insert("__version".into(), Value::from(VERSION));
    root.insert(top.into(), body);
    let root = Value::Object(root);
    let mut out = match xo.style {
        Style::Json | Style::Text if xo.pretty => {
            serde_json::to_string_pretty(&root).expect("a value always encodes")
        }
        Style::Json | Style::Text => root.to_string(),
        Style::Xml => {
            let mut xml = String::new();
            element(&mut xml, top, &root[top], xo.pretty.then_some(0));
            if let Some(pos) = xml.find('>') {
                xml.insert_str(pos, &format!(" version=\"{VERSION}\""));
            }
            xml
        }
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// `value` as the element `name` (repeated for an array), indented `depth` steps when
/// pretty.
fn element(out: &mut String, name: &str, value: &Value, depth: Option<usize>) {
    let indent = |out: &mut String| {
        if let Some(d) = depth {
            out.extend(std::iter::repeat_n("  ", d));
        }
    };
    match value {
        Value::Array(items) => {
            for item in items {
                element(out, name, item, depth);
            }
        }
        Value::Object(members) => {
            indent(out);
            out.push_str(&format!("<{name}>"));
            if depth.is_some() {
                out.push('\n');
            }
            for (k, v) in members {
                element(out, k, v, depth.map(|d| d + 1));
            }
            indent(out);
            out.push_str(&format!("</{name}>"));
            if depth.is_some() {
                out.push('\n');
            }
        }
        Value::Null => {
            indent(out);
            out.push_str(&format!("<{name}/>"));
            if depth.is_some() {
                out.push('\n');
            }
        }
        scalar => {
            indent(out);
            let text = match scalar {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.push_str(&format!("<{name}>{}</{name}>", escape(&text)));
            if depth.is_some() {
                out.push('\n');
            }
        }
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn every_spelling_is_taken_out_wherever_it_stands() {
        let json = Some(Xo {
            style: Style::Json,
            pretty: false,
        });
        let pretty_json = Some(Xo {
            style: Style::Json,
            pretty: true,
        });
        for (argv, xo) in [
            (vec!["gmultipath", "--libxo", "json", "list"], json),
            (vec!["gmultipath", "list", "--libxo=json"], json),
            (vec!["gmultipath", "--libxo:JP", "list"], pretty_json),
            (
                vec!["gmultipath", "--libxo", "json,pretty", "list"],
                pretty_json,
            ),
            (vec!["gmultipath", "list"], None),
        ] {
            let (rest, got) = parse_args(&args(&argv)).unwrap();
            assert_eq!(rest, args(&["gmultipath", "list"]), "{argv:?}");
            assert_eq!(got, xo, "{argv:?}");
        }
        let (_, last) = parse_args(&args(&["g", "--libxo=xml", "--libxo=json"])).unwrap();
        assert_eq!(last.unwrap().style, Style::Json, "the last one wins");
    }

    #[test]
    fn bad_options_are_refused_with_libxos_words() {
        assert_eq!(
            parse_args(&args(&["g", "--libxo=yaml"])).unwrap_err(),
            "unknown libxo option value: 'yaml'"
        );
        assert_eq!(
            parse_args(&args(&["g", "--libxo"])).unwrap_err(),
            "missing libxo option"
        );
        assert!(parse_args(&args(&["g", "--libxoo"])).is_err());
        assert!(parse_args(&args(&["g", "--libxo:Z"])).is_err());
    }

    #[test]
    fn documents_carry_the_version_in_each_style() {
        let body = json!({"geom": [{"name": "A&B", "path": [{"name": "md0"}, {"name": "md1"}]}]});
        let xo = |style, pretty| Xo { style, pretty };
        assert_eq!(
            document(xo(Style::Json, false), "multipath", body.clone()),
            "{\"__version\":\"1\",\"multipath\":{\"geom\":[{\"name\":\"A&B\",\"path\":[{\"name\":\"md0\"},{\"name\":\"md1\"}]}]}}\n"
        );
        assert_eq!(
            document(xo(Style::Xml, false), "multipath", body.clone()),
            "<multipath version=\"1\"><geom><name>A&amp;B</name><path><name>md0</name></path>\
             <path><name>md1</name></path></geom></multipath>\n"
        );
        let pretty = document(xo(Style::Xml, true), "multipath", body);
        assert!(
            pretty.contains("\n    <path>\n      <name>md0</name>\n"),
            "{pretty}"
        );
    }
}

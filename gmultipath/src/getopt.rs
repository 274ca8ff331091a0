//! BSD `getopt(3)` as geom(8) uses it: options come before operands and are never
//! permuted (the first operand, or `--`, ends them), clusters like `-vA` work, an option
//! that takes a value takes the rest of its argument or the next one, and errors carry
//! libc's exact words (`illegal option -- x`, `option requires an argument -- x`).
//!
//! clap cannot express a non-permuting parser with these texts, and geom(8)'s users and
//! scripts see them, so this one small piece is written by hand.

/// One option the command accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The option letter.
    pub ch: char,
    /// `true` if it takes a value (`-o offset`).
    pub takes_value: bool,
}

/// What getopt found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Options in the order given, with their values.
    pub options: Vec<(char, Option<String>)>,
    /// The operands after the options.
    pub operands: Vec<String>,
}

/// getopt's complaint, printed as `<prog>: <text>` before the usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetoptError {
    /// `illegal option -- x`
    Illegal(char),
    /// `option requires an argument -- x`
    NeedsArgument(char),
}

impl std::fmt::Display for GetoptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GetoptError::Illegal(c) => write!(f, "illegal option -- {c}"),
            GetoptError::NeedsArgument(c) => write!(f, "option requires an argument -- {c}"),
        }
    }
}

/// Parses `args` (the words after the command) against `specs`.
pub fn getopt(args: &[String], specs: &[Spec]) -> Result<Parsed, GetoptError> {
    let mut parsed = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            i += 1;
            break;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
            break;
        };
        for (pos, ch) in cluster.char_indices() {
            let spec = specs
                .iter()
                .find(|s| s.ch == ch)
                .ok_or(GetoptError::Illegal(ch))?;
            if !spec.takes_value {
                parsed.options.push((ch, None));
                continue;
            }
            let rest = &cluster[pos + ch.len_utf8()..];
            let value = if !rest.is_empty() {
                rest.to_string()
            } else {
                i += 1;
                args.get(i).cloned().ok_or(GetoptError::NeedsArgument(ch))?
            };
            parsed.options.push((ch, Some(value)));
            break;
        }
        i += 1;
    }
    parsed.operands = args[i.min(args.len())..].to_vec();
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    const SPECS: &[Spec] = &[
        Spec {
            ch: 'v',
            takes_value: false,
        },
        Spec {
            ch: 'A',
            takes_value: false,
        },
        Spec {
            ch: 'o',
            takes_value: true,
        },
    ];

    #[test]
    fn clusters_and_values() {
        let p = getopt(&words("-vA -o 512 FRED md0"), SPECS).unwrap();
        assert_eq!(
            p.options,
            [('v', None), ('A', None), ('o', Some("512".into()))]
        );
        assert_eq!(p.operands, ["FRED", "md0"]);
        let p = getopt(&words("-o512 -vo -1 x"), SPECS).unwrap();
        assert_eq!(
            p.options,
            [
                ('o', Some("512".into())),
                ('v', None),
                ('o', Some("-1".into()))
            ]
        );
        assert_eq!(p.operands, ["x"]);
    }

    #[test]
    fn options_after_an_operand_are_operands() {
        let p = getopt(&words("FRED -A md0"), SPECS).unwrap();
        assert!(p.options.is_empty());
        assert_eq!(p.operands, ["FRED", "-A", "md0"]);
    }

    #[test]
    fn double_dash_and_lone_dash_end_options() {
        let p = getopt(&words("-A -- -v"), SPECS).unwrap();
        assert_eq!(p.options, [('A', None)]);
        assert_eq!(p.operands, ["-v"]);
        let p = getopt(&words("- -A"), SPECS).unwrap();
        assert_eq!(p.operands, ["-", "-A"]);
    }

    #[test]
    fn errors_have_libc_texts() {
        let e = getopt(&words("-vx FRED"), SPECS).unwrap_err();
        assert_eq!(e.to_string(), "illegal option -- x");
        let e = getopt(&words("-o"), SPECS).unwrap_err();
        assert_eq!(e.to_string(), "option requires an argument -- o");
    }
}

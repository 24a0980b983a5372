//! Stage one: YAML text → a permissive tree of positioned nodes.
//!
//! Any syntactically valid YAML is accepted here; nothing about renewd's keys or types is checked.
//! Every node keeps its line and column (from serde-saphyr's `Spanned`) and, for scalars, the text as
//! written, so stage two (`validate`) can point at the exact key or value, report *every* problem in a
//! file rather than the first, and read values such as file modes (`0640`) the way the user meant them.

use std::fmt;
use std::path::Path;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned};

use super::error::{Diagnostic, Pos};

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: Kind,
    pub pos: Pos,
    /// The scalar as written in the file (quotes included), when the source is known.
    pub raw: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// "a string", "a list", … for messages such as "must be an integer, found a string".
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "nothing (an empty value)",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a map",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null)
    }

    /// Text of a scalar: strings as parsed, other plain scalars (`1000`, `yes`) as written.
    /// `None` for null, lists and maps.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Str(s) => Some(s.clone()),
            Kind::Bool(_) | Kind::Int(_) | Kind::Float(_) => Some(match &self.raw {
                Some(r) => r.trim().to_string(),
                None => match &self.kind {
                    Kind::Bool(b) => b.to_string(),
                    Kind::Int(i) => i.to_string(),
                    Kind::Float(x) => x.to_string(),
                    _ => unreachable!(),
                },
            }),
            _ => None,
        }
    }
}

/// Parse one YAML document. An empty file gives a `Null` node.
pub(crate) fn parse(file: &Path, text: &str) -> Result<Node, Diagnostic> {
    match serde_saphyr::from_str::<Spanned<RawKind>>(text) {
        Ok(tree) => Ok(convert(tree, text)),
        Err(e) => {
            let pos = e.location().and_then(|l| {
                (l.line() > 0).then(|| Pos {
                    line: l.line() as usize,
                    col: l.column().max(1) as usize,
                })
            });
            let msg = serde_saphyr::DefaultMessageFormatter.format_message(e.without_snippet());
            let msg = msg.replace(", set DuplicateKeyPolicy in Options if acceptable", "");
            let msg = match msg.strip_prefix("duplicate mapping key: ") {
                Some(k) => format!("duplicate key `{k}`: each key may appear only once in a map"),
                None => format!("invalid YAML: {msg}"),
            };
            Err(Diagnostic::error(file, pos, msg))
        }
    }
}

fn convert(s: Spanned<RawKind>, text: &str) -> Node {
    let pos = Pos {
        line: (s.referenced.line() as usize).max(1),
        col: (s.referenced.column() as usize).max(1),
    };
    // Aliases: position of the use, text of the definition.
    let span = s.defined.span();
    let raw = match (span.byte_offset(), span.byte_len()) {
        (Some(off), Some(len)) => text
            .get(off as usize..(off + len) as usize)
            .map(str::to_string),
        _ => None,
    };
    let kind = match s.value {
        RawKind::Null => Kind::Null,
        RawKind::Bool(b) => Kind::Bool(b),
        RawKind::Int(i) => Kind::Int(i),
        RawKind::Float(x) => Kind::Float(x),
        RawKind::Str(v) => Kind::Str(v),
        RawKind::Seq(v) => Kind::Seq(v.into_iter().map(|n| convert(n, text)).collect()),
        RawKind::Map(v) => Kind::Map(
            v.into_iter()
                .map(|(k, n)| (convert(k, text), convert(n, text)))
                .collect(),
        ),
    };
    let raw = match kind {
        Kind::Seq(_) | Kind::Map(_) | Kind::Null => None,
        _ => raw,
    };
    Node { kind, pos, raw }
}

/// The serde shape of any YAML node (the positions are added by `Spanned`).
enum RawKind {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawKind>>),
    Map(Vec<(Spanned<RawKind>, Spanned<RawKind>)>),
}

impl<'de> Deserialize<'de> for RawKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawKind;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<RawKind, E> {
                Ok(RawKind::Null)
            }
            fn visit_none<E>(self) -> Result<RawKind, E> {
                Ok(RawKind::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawKind, D::Error> {
                RawKind::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawKind, E> {
                Ok(RawKind::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawKind, E> {
                Ok(RawKind::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawKind, E> {
                Ok(RawKind::Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<RawKind, E> {
                Ok(RawKind::Int(v))
            }
            fn visit_u128<E>(self, v: u128) -> Result<RawKind, E> {
                Ok(RawKind::Int(i128::try_from(v).unwrap_or(i128::MAX)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawKind, E> {
                Ok(RawKind::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawKind, E> {
                Ok(RawKind::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<RawKind, E> {
                Ok(RawKind::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<RawKind, A::Error> {
                let mut v = Vec::new();
                while let Some(n) = a.next_element()? {
                    v.push(n);
                }
                Ok(RawKind::Seq(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<RawKind, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = a.next_entry()? {
                    v.push(entry);
                }
                Ok(RawKind::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

//! Field paths into JSON records, shared by the Rust API and the CLI:
//! `age`, `address.city`, `transactions[].amount` (the `amount` of every element of
//! the list, as a list), `transactions[0].date` (one element).

use std::borrow::Cow;
use std::fmt;

use serde_json::Value as J;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Field(String),
    Each,
    Index(usize),
}

/// A parsed field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: String,
    segs: Vec<Seg>,
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FieldPath {
    /// Parses `a.b`, `a[].b`, `a[2].b`; an empty path means the record itself.
    pub fn parse(text: &str) -> Result<FieldPath> {
        let bad = |why: &str| {
            Error::plan(
                "path",
                format!("invalid field path {text:?}: {why} (write e.g. address.city or transactions[].amount)"),
            )
        };
        let mut segs = Vec::new();
        let mut rest = text.trim();
        let mut expect_field = true;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('[') {
                let close = r.find(']').ok_or_else(|| bad("a [ is not closed"))?;
                let inside = r[..close].trim();
                segs.push(if inside.is_empty() {
                    Seg::Each
                } else {
                    Seg::Index(
                        inside
                            .parse()
                            .map_err(|_| bad("a list index must be a whole number"))?,
                    )
                });
                rest = &r[close + 1..];
                expect_field = false;
            } else if let Some(r) = rest.strip_prefix('.') {
                if expect_field {
                    return Err(bad("a name is missing before a ."));
                }
                rest = r;
                expect_field = true;
                if rest.is_empty() {
                    return Err(bad("a name is missing after a ."));
                }
            } else {
                if !expect_field {
                    return Err(bad("write a . between names"));
                }
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                segs.push(Seg::Field(rest[..end].to_string()));
                rest = &rest[end..];
                expect_field = false;
            }
        }
        Ok(FieldPath {
            text: text.trim().to_string(),
            segs,
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value at the path, or `None` when some field along it is missing (or a
    /// list is not a list). Borrowed unless the path has `[]`, which builds a list
    /// (elements missing the rest of the path are left out).
    pub fn get<'a>(&self, v: &'a J) -> Option<Cow<'a, J>> {
        get(&self.segs, v)
    }

    pub(crate) fn segs(&self) -> &[Seg] {
        &self.segs
    }

    /// The top-level field the path starts with (`None` for the record itself or a
    /// list index).
    pub fn top_field(&self) -> Option<String> {
        match self.segs.first() {
            Some(Seg::Field(f)) => Some(f.clone()),
            _ => None,
        }
    }

    /// True when the path has `[]` (its value is built, not borrowed).
    pub fn has_each(&self) -> bool {
        self.segs.contains(&Seg::Each)
    }
}

fn get<'a>(segs: &[Seg], v: &'a J) -> Option<Cow<'a, J>> {
    let mut cur = v;
    for (i, s) in segs.iter().enumerate() {
        match s {
            Seg::Field(name) => cur = cur.as_object()?.get(name)?,
            Seg::Index(n) => cur = cur.as_array()?.get(*n)?,
            Seg::Each => {
                let items = cur.as_array()?;
                let rest = &segs[i + 1..];
                let out: Vec<J> = items
                    .iter()
                    .filter_map(|item| get(rest, item).map(Cow::into_owned))
                    .collect();
                return Some(Cow::Owned(J::Array(out)));
            }
        }
    }
    Some(Cow::Borrowed(cur))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_reach_nested_fields_and_lists() {
        let r = json!({"a": {"b": 1}, "t": [{"x": 1}, {"y": 2}, {"x": 3}]});
        let p = |s| FieldPath::parse(s).unwrap();
        assert_eq!(p("a.b").get(&r).unwrap().into_owned(), json!(1));
        assert_eq!(p("t[].x").get(&r).unwrap().into_owned(), json!([1, 3]));
        assert_eq!(p("t[2].x").get(&r).unwrap().into_owned(), json!(3));
        assert_eq!(p("").get(&r).unwrap().into_owned(), r);
        assert!(p("a.c").get(&r).is_none());
        assert!(p("t[5]").get(&r).is_none());
        assert!(FieldPath::parse("a..b").is_err());
        assert!(FieldPath::parse("a[x]").is_err());
        assert!(FieldPath::parse("a[").is_err());
    }
}

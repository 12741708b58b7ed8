//! Parsing only what a query reads. When every step before the bag's first
//! `pluck` (or a `count`) reads named top-level fields only (`query`, `pluck`,
//! `select_fields`), the reader builds each record with just those fields and skips
//! the rest of the line without allocating (serde's `IgnoredAny`): `filter → count`
//! and `pluck → frequencies` never build the nested lists they do not look at.
//! Lines are still fully checked as JSON, so a bad line fails the same way.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value as J};

/// Which fields of the raw records the bag's steps read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fields {
    /// Steps so far read these top-level fields, and the records still flow on
    /// whole: a later step may read anything.
    Reading(BTreeSet<String>),
    /// Only these fields are ever read: later steps see plucked values.
    Only(BTreeSet<String>),
    /// A step may read anything (a closure, `flatten` of the records).
    All,
}

impl Fields {
    /// After a step that reads `fields` (top-level names; `None`: anything) and
    /// then lets the record flow on (`ends = false`) or replaces it (`ends = true`).
    pub(crate) fn then(&self, fields: Option<Vec<String>>, ends: bool) -> Fields {
        match (self, fields) {
            (Fields::Only(s), _) => Fields::Only(s.clone()),
            (Fields::All, _) | (_, None) => Fields::All,
            (Fields::Reading(s), Some(f)) => {
                let mut s = s.clone();
                s.extend(f);
                if ends {
                    Fields::Only(s)
                } else {
                    Fields::Reading(s)
                }
            }
        }
    }
}

/// Parses one JSON line keeping only `fields` of a top-level object (other values
/// whole).
pub(crate) fn parse_projected(line: &[u8], fields: &BTreeSet<String>) -> serde_json::Result<J> {
    if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return serde_json::from_slice(line);
    }
    let mut de = serde_json::Deserializer::from_slice(line);
    let v = Projected(fields).deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

struct Projected<'a>(&'a BTreeSet<String>);

impl<'de> DeserializeSeed<'de> for Projected<'_> {
    type Value = J;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<J, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Projected<'_> {
    type Value = J;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Pick(self.0))? {
            match key {
                Some(k) => {
                    let v: J = map.next_value()?;
                    out.insert(k, v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(J::Object(out))
    }
}

/// A key: its text when wanted, `None` (no allocation) when not.
struct Pick<'a>(&'a BTreeSet<String>);

impl<'de> DeserializeSeed<'de> for Pick<'_> {
    type Value = Option<String>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.contains(v).then(|| v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn projection_keeps_the_named_fields_and_checks_the_rest() {
        let f: BTreeSet<String> = ["a".to_string(), "c".to_string()].into();
        let line = br#"{"a": 1, "b": {"x": [1, 2, {"y": "\u00e9"}]}, "c": [true]}"#;
        assert_eq!(
            parse_projected(line, &f).unwrap(),
            json!({"a": 1, "c": [true]})
        );
        assert!(parse_projected(br#"{"a": 1, "b": [1, }"#, &f).is_err());
        assert!(parse_projected(br#"{"a": 1} x"#, &f).is_err());
        assert_eq!(parse_projected(b"[1, 2]", &f).unwrap(), json!([1, 2]));
        let dup = br#"{"a\u0062": 2, "a": 3}"#;
        assert_eq!(parse_projected(dup, &f).unwrap(), json!({"a": 3}));
    }
}

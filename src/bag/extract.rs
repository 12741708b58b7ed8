//! Plucking while parsing. A bag read from files whose first steps are `pluck`s
//! of plain field paths and `flatten`s (`pluck transactions → flatten → pluck
//! amount`) gets its values straight from the parser: the extractor walks the line
//! to the values and builds only them, skipping everything else without allocating,
//! so no intermediate object or list is ever built. A record where the walk fails
//! (a missing field, a value that is not a list) is parsed again whole and goes
//! through the ordinary steps, so defaults and errors are exactly as without the
//! shortcut.

use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value as J;

use super::path::Seg;
use super::Stage;

/// One step of the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Walk {
    /// Into an object's field.
    Field(String),
    /// Into each element of a list, each a record of its own (`flatten`).
    Spread,
}

/// The walk for the leading `pluck`/`flatten` steps of `stages` and how many steps
/// it covers; `None` when they do not start with a `pluck` of plain fields.
pub(crate) fn plan(stages: &[Stage]) -> Option<(Vec<Walk>, usize)> {
    let mut walk = Vec::new();
    let mut covered = 0;
    for s in stages {
        match s {
            Stage::Pluck(p) => {
                let mut fields = Vec::new();
                for seg in p.path.segs() {
                    match seg {
                        Seg::Field(f) => fields.push(Walk::Field(f.clone())),
                        _ => return finish(walk, covered),
                    }
                }
                if fields.is_empty() {
                    return finish(walk, covered);
                }
                walk.extend(fields);
            }
            Stage::Flatten if covered > 0 => walk.push(Walk::Spread),
            _ => break,
        }
        covered += 1;
    }
    finish(walk, covered)
}

fn finish(walk: Vec<Walk>, covered: usize) -> Option<(Vec<Walk>, usize)> {
    (covered > 0).then_some((walk, covered))
}

/// Walks one JSON line, pushing the values reached onto `out`. `Ok(false)` when the
/// walk failed for this record (the line is still checked whole as JSON).
pub(crate) fn extract(line: &[u8], walk: &[Walk], out: &mut Vec<J>) -> serde_json::Result<bool> {
    let start = out.len();
    let mut ok = true;
    let mut de = serde_json::Deserializer::from_slice(line);
    Ex {
        walk,
        out,
        ok: &mut ok,
    }
    .deserialize(&mut de)?;
    de.end()?;
    if !ok {
        out.truncate(start);
    }
    Ok(ok)
}

struct Ex<'w, 'o> {
    walk: &'w [Walk],
    out: &'o mut Vec<J>,
    ok: &'o mut bool,
}

impl<'de> DeserializeSeed<'de> for Ex<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.walk.is_empty() {
            let v: J = serde::Deserialize::deserialize(d)?;
            self.out.push(v);
            Ok(())
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for Ex<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Walk::Field(name) = &self.walk[0] else {
            *self.ok = false;
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let start = self.out.len();
        let mut found = false;
        while let Some(hit) = map.next_key_seed(Is(name))? {
            if hit {
                // A repeated key: the last one wins, as when parsing whole.
                self.out.truncate(start);
                found = true;
                map.next_value_seed(Ex {
                    walk: &self.walk[1..],
                    out: &mut *self.out,
                    ok: &mut *self.ok,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if !found {
            *self.ok = false;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.walk[0] != Walk::Spread {
            *self.ok = false;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        }
        while seq
            .next_element_seed(Ex {
                walk: &self.walk[1..],
                out: &mut *self.out,
                ok: &mut *self.ok,
            })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        *self.ok = false;
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        *self.ok = false;
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        *self.ok = false;
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        *self.ok = false;
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        *self.ok = false;
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        *self.ok = false;
        Ok(())
    }
}

/// Whether a key is `name`, without allocating.
struct Is<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for Is<'_> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Is<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_walk_reaches_nested_values_and_reports_misses() {
        let walk = vec![
            Walk::Field("t".into()),
            Walk::Spread,
            Walk::Field("a".into()),
        ];
        let mut out = Vec::new();
        let line = br#"{"x": [1, {"a": 9}], "t": [{"a": 1, "b": [2]}, {"a": {"c": 2}}]}"#;
        assert!(extract(line, &walk, &mut out).unwrap());
        assert_eq!(out, vec![json!(1), json!({"c": 2})]);
        out.clear();
        assert!(!extract(br#"{"t": [{"a": 1}, {"b": 2}]}"#, &walk, &mut out).unwrap());
        assert!(out.is_empty());
        assert!(!extract(br#"{"t": 3}"#, &walk, &mut out).unwrap());
        assert!(!extract(br#"[1]"#, &walk, &mut out).unwrap());
        assert!(extract(br#"{"t": [}"#, &walk, &mut out).is_err());
        assert!(extract(br#"{"t": [{"a": 1}, {"a": 2}], "t": []}"#, &walk, &mut out).unwrap());
        assert!(out.is_empty(), "the last of a repeated key wins");
    }
}

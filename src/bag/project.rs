//! Parsing only what a query reads. The bag tracks which parts of the raw records
//! its steps can see: a `query` reads its field paths, a `pluck` moves to a
//! sub-value, `flatten` into a list's elements, `select_paths` keeps only some
//! paths, `count` reads nothing; a closure (`map`, `filter`, `map_partitions`) may
//! read anything. When the result needs only part of each record, the reader builds
//! just that part ([`Need`]) and skips the rest of the line without allocating
//! ([`super::scan`]): `filter → count` builds nothing but the filtered fields,
//! and `pluck transactions → flatten → pluck amount` only the amounts. Lines are
//! still fully checked as JSON, so a bad line fails the same way.
//!
//! Invariant: parsing with a projection gives the same record as parsing whole and
//! then [`prune`], and every later step reads only what the projection kept.

use std::collections::BTreeMap;

use serde_json::{Map, Value as J};

use super::path::{FieldPath, Seg};
use super::scan::{Bail, Kind, Scan, Scanned};

/// The parts of a value that are needed: all of it, or some fields and (for lists)
/// some part of every element. Structure along a needed path is kept (objects with
/// only the needed keys, lists with their elements), so a missing field stays
/// missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Need {
    whole: bool,
    fields: BTreeMap<String, Need>,
    items: Option<Box<Need>>,
}

impl Need {
    fn at(&mut self, segs: &[Seg]) -> &mut Need {
        let mut n = self;
        for s in segs {
            n = match s {
                Seg::Field(f) => n.fields.entry(f.clone()).or_default(),
                Seg::Each | Seg::Index(_) => n.items.get_or_insert_with(Default::default),
            };
        }
        n
    }

    fn whole_at(&mut self, segs: &[Seg]) {
        self.at(segs).whole = true;
    }

    /// Adds what `other` needs: a parse with the result serves both (each reader
    /// reads only its own parts, so the extra parts are never seen).
    pub(crate) fn merge(&mut self, other: &Need) {
        self.whole |= other.whole;
        for (k, n) in &other.fields {
            self.fields.entry(k.clone()).or_default().merge(n);
        }
        if let Some(n) = &other.items {
            self.items.get_or_insert_with(Default::default).merge(n);
        }
    }
}

/// What the bag's steps may read of the raw records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fields {
    /// The steps read `need`; the records flowing on are the values at `cursor`
    /// (a path in the raw record, `[]` after a flatten), and a later consumer reads
    /// them whole.
    Reading { need: Need, cursor: Vec<Seg> },
    /// Only `need` is ever read.
    Only(Need),
    /// A step may read anything.
    All,
}

impl Default for Fields {
    fn default() -> Self {
        Fields::Reading {
            need: Need::default(),
            cursor: Vec::new(),
        }
    }
}

fn join(cursor: &[Seg], p: &FieldPath) -> Vec<Seg> {
    let mut v = cursor.to_vec();
    v.extend_from_slice(p.segs());
    v
}

impl Fields {
    /// After a step that reads `paths` of the current records and lets them flow on.
    pub(crate) fn read(&self, paths: &[FieldPath]) -> Fields {
        match self {
            Fields::Reading { need, cursor } => {
                let mut need = need.clone();
                for p in paths {
                    need.whole_at(&join(cursor, p));
                }
                Fields::Reading {
                    need,
                    cursor: cursor.clone(),
                }
            }
            other => other.clone(),
        }
    }

    /// After a step that replaces each record by the value at `p`.
    pub(crate) fn pluck(&self, p: &FieldPath) -> Fields {
        match self {
            Fields::Reading { need, cursor } => {
                let cursor = join(cursor, p);
                let mut need = need.clone();
                need.at(&cursor);
                Fields::Reading { need, cursor }
            }
            other => other.clone(),
        }
    }

    /// After `flatten`: the records are the elements of the current lists.
    pub(crate) fn flatten(&self) -> Fields {
        match self {
            Fields::Reading { need, cursor } => {
                let mut cursor = cursor.clone();
                cursor.push(Seg::Each);
                // The list's elements are kept (each a record), even if nothing
                // of them is read.
                let mut need = need.clone();
                need.at(&cursor);
                Fields::Reading { need, cursor }
            }
            other => other.clone(),
        }
    }

    /// After a step that keeps only `paths` of each record: nothing else can be read.
    pub(crate) fn select(&self, paths: &[FieldPath]) -> Fields {
        match self.read(paths) {
            Fields::Reading { need, .. } => Fields::Only(need),
            other => other,
        }
    }

    /// After a step that reads nothing of the records (a count).
    pub(crate) fn discard(&self) -> Fields {
        match self {
            Fields::Reading { need, .. } => Fields::Only(need.clone()),
            other => other.clone(),
        }
    }

    /// After a closure: it may read anything.
    pub(crate) fn opaque(&self) -> Fields {
        match self {
            Fields::Only(n) => Fields::Only(n.clone()),
            _ => Fields::All,
        }
    }

    /// What the reader must build of each raw record, or `None` for all of it.
    pub(crate) fn projection(&self) -> Option<Need> {
        let need = match self {
            Fields::Reading { need, cursor } => {
                let mut need = need.clone();
                need.whole_at(cursor);
                need
            }
            Fields::Only(need) => need.clone(),
            Fields::All => return None,
        };
        (!need.whole).then_some(need)
    }
}

/// `v` with only the needed parts (what a projected parse gives). In place, so a
/// record that was parsed projected passes through without rebuilding.
pub fn prune(mut v: J, need: &Need) -> J {
    prune_in_place(&mut v, need);
    v
}

/// A copy of only the needed parts of `v` (what [`prune`] leaves of a clone),
/// copying nothing else: for a reader that must keep `v` for others.
pub(crate) fn pruned(v: &J, need: &Need) -> J {
    if need.whole {
        return v.clone();
    }
    match v {
        J::Object(o) => {
            let mut out = Map::new();
            for (k, x) in o {
                if let Some(n) = need.fields.get(k) {
                    out.insert(k.clone(), pruned(x, n));
                }
            }
            J::Object(out)
        }
        J::Array(items) => match &need.items {
            Some(n) => J::Array(items.iter().map(|x| pruned(x, n)).collect()),
            None => J::Array(Vec::new()),
        },
        other => other.clone(),
    }
}

fn prune_in_place(v: &mut J, need: &Need) {
    if need.whole {
        return;
    }
    match v {
        J::Object(o) => {
            o.retain(|k, _| need.fields.contains_key(k));
            for (k, x) in o.iter_mut() {
                if let Some(n) = need.fields.get(k) {
                    prune_in_place(x, n);
                }
            }
        }
        J::Array(items) => match &need.items {
            Some(n) => items.iter_mut().for_each(|x| prune_in_place(x, n)),
            None => items.clear(),
        },
        _ => {}
    }
}

/// Parses one JSON line building only the needed parts. The scanner walks the
/// line; a line it leaves alone is parsed whole and pruned (the same record, or
/// serde_json's error).
pub(crate) fn parse_projected(line: &[u8], need: &Need) -> serde_json::Result<J> {
    let scanned = Scan::new(line).and_then(|mut s| {
        let v = projected(&mut s, need)?;
        s.finish()?;
        Ok(v)
    });
    match scanned {
        Ok(v) => Ok(v),
        Err(Bail) => Ok(prune(serde_json::from_slice(line)?, need)),
    }
}

/// The needed parts of the value at the cursor.
fn projected(s: &mut Scan<'_>, need: &Need) -> Scanned<J> {
    if need.whole {
        return s.value();
    }
    match s.kind()? {
        Kind::Object => {
            s.open_object()?;
            let mut out = Map::new();
            let mut first = true;
            while let Some(k) = s.key(first)? {
                first = false;
                match need.fields.get(k.as_ref()) {
                    // A repeated key: the last one wins, as when parsing whole.
                    Some(n) => drop(out.insert(k.into_owned(), projected(s, n)?)),
                    None => s.skip()?,
                }
            }
            Ok(J::Object(out))
        }
        Kind::List => {
            s.open_list()?;
            let mut out = Vec::new();
            let mut first = true;
            while s.item(first)? {
                first = false;
                match &need.items {
                    Some(n) => out.push(projected(s, n)?),
                    None => s.skip()?,
                }
            }
            Ok(J::Array(out))
        }
        Kind::Scalar => s.value(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> FieldPath {
        FieldPath::parse(s).unwrap()
    }

    #[test]
    fn projection_keeps_what_the_steps_read_and_checks_the_rest() {
        let line = br#"{"a": 1, "b": {"x": [1, 2, {"y": "\u00e9"}]}, "t": [{"m": 1, "d": "x"}, {"d": "y"}], "c": [true]}"#;
        let whole: J = serde_json::from_slice(line).unwrap();
        let cases = [
            (
                Fields::default().read(&[p("a"), p("b.x[2].y")]).discard(),
                json!({"a": 1, "b": {"x": [1, 2, {"y": "é"}]}}),
            ),
            (
                Fields::default().pluck(&p("t")).flatten().pluck(&p("m")),
                json!({"t": [{"m": 1}, {}]}),
            ),
            (
                Fields::default().select(&[p("c"), p("a")]),
                json!({"a": 1, "c": [true]}),
            ),
            (Fields::default().discard(), json!({})),
            (
                Fields::default().pluck(&p("t")).flatten().discard(),
                json!({"t": [{}, {}]}),
            ),
        ];
        for (fields, expected) in cases {
            let need = fields.projection().unwrap();
            assert_eq!(parse_projected(line, &need).unwrap(), expected);
            assert_eq!(prune(whole.clone(), &need), expected);
        }
        assert_eq!(Fields::default().projection(), None);
        assert_eq!(
            Fields::default().read(&[p("a")]).opaque().projection(),
            None
        );
        let need = Fields::default().discard().projection().unwrap();
        for bad in [&br#"{"a": 1, "b": [1, }"#[..], br#"{"a": 1} x"#] {
            let want = serde_json::from_slice::<J>(bad).unwrap_err().to_string();
            assert_eq!(parse_projected(bad, &need).unwrap_err().to_string(), want);
        }
        assert_eq!(parse_projected(b"[1, 2]", &need).unwrap(), json!([]));
        // Nesting past serde_json's limit is an error even where nothing is read.
        let deep = format!(r#"{{"a": 1, "b": {}{}}}"#, "[".repeat(200), "]".repeat(200));
        let whole = serde_json::from_str::<J>(&deep).unwrap_err().to_string();
        let got = parse_projected(deep.as_bytes(), &need)
            .unwrap_err()
            .to_string();
        assert_eq!(got, whole);
        let fine = format!(r#"{{"a": 1, "b": {}{}}}"#, "[".repeat(120), "]".repeat(120));
        assert_eq!(parse_projected(fine.as_bytes(), &need).unwrap(), json!({}));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// A projected parse is the whole parse pruned, and a bad line gives
        /// serde_json's error, word for word.
        #[test]
        fn projected_is_whole_then_pruned(line in crate::bag::scan::tests::near_json(), set in 0usize..5) {
            let fields = match set {
                0 => Fields::default().discard(),
                1 => Fields::default().read(&[p("a"), p("b.a")]).discard(),
                2 => Fields::default().pluck(&p("b")).flatten().pluck(&p("a")),
                3 => Fields::default().select(&[p("ab[0].b"), p("a")]),
                _ => Fields::default().pluck(&p("a")).flatten().discard(),
            };
            let need = fields.projection().unwrap();
            let expected = serde_json::from_slice::<J>(&line).map(|w| prune(w, &need));
            match (parse_projected(&line, &need), expected) {
                (Ok(got), Ok(want)) => proptest::prop_assert_eq!(got, want),
                (Err(got), Err(want)) => proptest::prop_assert_eq!(got.to_string(), want.to_string()),
                (got, want) => proptest::prop_assert!(false, "{:?} against {:?}: {}", got, want, String::from_utf8_lossy(&line)),
            }
        }
    }
}

//! Plucking while parsing. A bag read from files whose first steps are `pluck`s
//! of plain field paths and `flatten`s (`pluck transactions → flatten → pluck
//! amount`) gets its values straight from the parser: the extractor walks the line
//! to the values and builds only them, skipping everything else without allocating,
//! so no intermediate object or list is ever built. A record where the walk fails
//! (a missing field, a value that is not a list) is parsed again whole and goes
//! through the ordinary steps, so defaults and errors are exactly as without the
//! shortcut.

use serde_json::Value as J;

use super::path::Seg;
use super::scan::{Bail, Kind, Scan, Scanned};
use super::Stage;

/// One step of the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Walk {
    /// Into an object's field.
    Field(String),
    /// Into each element of a list, each a record of its own (`flatten`).
    Spread,
}

/// A walk the parser takes instead of building whole records.
pub(crate) enum Shortcut<'s> {
    /// Leading `pluck`/`flatten` steps ([`extract`]).
    Pluck(Vec<Walk>),
    /// A leading `values_at` ([`extract_values`]).
    Values(&'s ValuesWalk),
}

impl Shortcut<'_> {
    /// Walks one line, pushing the records reached onto `out`; `Ok(false)` when
    /// this record needs the ordinary steps.
    pub(crate) fn walk(&self, line: &[u8], out: &mut Vec<J>) -> serde_json::Result<bool> {
        match self {
            Shortcut::Pluck(walk) => extract(line, walk, out),
            Shortcut::Values(walk) => extract_values(line, walk, out),
        }
    }
}

/// The parser's walk for the first steps of `stages` and how many steps it
/// covers; `None` when they start with neither a `pluck` of plain fields nor a
/// `values_at` whose paths it takes.
pub(crate) fn shortcut(stages: &[Stage]) -> Option<(Shortcut<'_>, usize)> {
    if let Some(Stage::Values(v)) = stages.first() {
        return v.walk.as_ref().map(|w| (Shortcut::Values(w), 1));
    }
    plan(stages).map(|(walk, covered)| (Shortcut::Pluck(walk), covered))
}

/// The walk for the leading `pluck`/`flatten` steps of `stages` and how many steps
/// it covers; `None` when they do not start with a `pluck` of plain fields.
fn plan(stages: &[Stage]) -> Option<(Vec<Walk>, usize)> {
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
    let scanned = Scan::new(line).and_then(|mut s| {
        reach(&mut s, walk, out, &mut ok)?;
        s.finish()
    });
    if scanned.is_err() || !ok {
        out.truncate(start);
    }
    match scanned {
        Ok(()) => Ok(ok),
        // Not a line the scanner takes: serde_json says whether it is JSON, and
        // the ordinary steps take the record.
        Err(Bail) => serde_json::from_slice::<J>(line).map(|_| false),
    }
}

/// Follows `walk` from the value at the cursor, pushing the values reached;
/// `ok` turns false where the walk cannot go on.
fn reach(s: &mut Scan<'_>, walk: &[Walk], out: &mut Vec<J>, ok: &mut bool) -> Scanned<()> {
    let Some((step, rest)) = walk.split_first() else {
        out.push(s.value()?);
        return Ok(());
    };
    match (step, s.kind()?) {
        (Walk::Field(name), Kind::Object) => {
            s.open_object()?;
            let start = out.len();
            let mut found = false;
            let mut first = true;
            while let Some(k) = s.key(first)? {
                first = false;
                if k.as_ref() == name.as_str() {
                    // A repeated key: the last one wins, as when parsing whole.
                    out.truncate(start);
                    found = true;
                    reach(s, rest, out, ok)?;
                } else {
                    s.skip()?;
                }
            }
            *ok &= found;
        }
        (Walk::Spread, Kind::List) => {
            s.open_list()?;
            let mut first = true;
            while s.item(first)? {
                first = false;
                reach(s, rest, out, ok)?;
            }
        }
        _ => {
            *ok = false;
            s.skip()?;
        }
    }
    Ok(())
}

/// A walk of several field paths at once (`Bag::values_at`): each record becomes
/// the list of the values at the paths, built straight from the parser (no object
/// or list of the record is built on the way, only the values). The paths form a
/// tree of fields; a path may pass through one list (`transactions[].amount`).
#[derive(Debug)]
pub(crate) struct ValuesWalk {
    root: Vec<(String, Node)>,
    slots: usize,
}

#[derive(Debug)]
enum Node {
    /// The value here is path `slot`'s.
    Leaf(usize),
    /// An object: what is under each named field.
    Object(Vec<(String, Node)>),
    /// A list: each element walked by `item`; `slots` are the paths under it, whose
    /// values are lists of what each element holds.
    Each { item: Box<Node>, slots: Vec<usize> },
}

impl ValuesWalk {
    /// The walk for `paths`, or `None` for paths it does not take (a list index, two
    /// lists on one path, the record itself, or a path that is a prefix of another
    /// or passes where another needs a list): those records take the ordinary step.
    pub(crate) fn plan(paths: &[super::FieldPath]) -> Option<ValuesWalk> {
        let mut root = Vec::new();
        for (slot, p) in paths.iter().enumerate() {
            let segs = p.segs();
            if segs.is_empty() || segs.iter().filter(|s| **s == Seg::Each).count() > 1 {
                return None;
            }
            insert(&mut root, segs, slot, false)?;
        }
        Some(ValuesWalk {
            root,
            slots: paths.len(),
        })
    }
}

/// Adds path `segs` (starting with a field) for `slot` under an object's fields.
fn insert(
    fields: &mut Vec<(String, Node)>,
    segs: &[Seg],
    slot: usize,
    in_each: bool,
) -> Option<()> {
    let Some(Seg::Field(name)) = segs.first() else {
        return None;
    };
    let i = match fields.iter().position(|(f, _)| f == name) {
        Some(i) => i,
        None => {
            fields.push((name.clone(), Node::Object(Vec::new())));
            fields.len() - 1
        }
    };
    let node = &mut fields[i].1;
    match &segs[1..] {
        [] => match node {
            Node::Object(f) if f.is_empty() => *node = Node::Leaf(slot),
            _ => return None,
        },
        rest => place(node, rest, slot, in_each)?,
    }
    Some(())
}

/// Adds the rest of a path (`rest`, not empty) below `node`.
fn place(node: &mut Node, rest: &[Seg], slot: usize, in_each: bool) -> Option<()> {
    match (&rest[0], &mut *node) {
        (Seg::Field(_), Node::Object(fields)) => insert(fields, rest, slot, in_each),
        (Seg::Each, Node::Object(f)) if f.is_empty() && !in_each => {
            let mut item = Node::Object(Vec::new());
            if rest.len() == 1 {
                item = Node::Leaf(slot);
            } else {
                place(&mut item, &rest[1..], slot, true)?;
            }
            *node = Node::Each {
                item: Box::new(item),
                slots: vec![slot],
            };
            Some(())
        }
        (Seg::Each, Node::Each { item, slots }) if rest.len() > 1 => {
            slots.push(slot);
            place(item, &rest[1..], slot, true)
        }
        _ => None,
    }
}

/// Walks one JSON line for `walk`, pushing the list of the values at its paths
/// (null where a path is missing) onto `out`. `Ok(false)` when this record needs
/// the ordinary step (a repeated field on the way to a value); the line is still
/// checked whole as JSON.
pub(crate) fn extract_values(
    line: &[u8],
    walk: &ValuesWalk,
    out: &mut Vec<J>,
) -> serde_json::Result<bool> {
    let mut state = Walked {
        vals: vec![None; walk.slots],
        item: vec![None; walk.slots],
        ok: true,
    };
    let scanned = Scan::new(line).and_then(|mut s| {
        object_at(&mut s, &walk.root, &mut state, false)?;
        s.finish()
    });
    match scanned {
        Ok(()) if state.ok => {}
        Ok(()) => return Ok(false),
        // As in `extract`.
        Err(Bail) => return serde_json::from_slice::<J>(line).map(|_| false),
    }
    out.push(J::Array(
        state
            .vals
            .into_iter()
            .map(|v| v.unwrap_or(J::Null))
            .collect(),
    ));
    Ok(true)
}

/// Values found so far: per path, its value (`vals`; a list for a path through a
/// list), and what the list element being walked holds (`item`).
struct Walked {
    vals: Vec<Option<J>>,
    item: Vec<Option<J>>,
    ok: bool,
}

/// The value at the cursor as an object whose `fields` lead to values; anything
/// else there holds none of them.
fn object_at(
    s: &mut Scan<'_>,
    fields: &[(String, Node)],
    state: &mut Walked,
    in_item: bool,
) -> Scanned<()> {
    if s.kind()? != Kind::Object {
        return s.skip();
    }
    s.open_object()?;
    let mut seen = 0u64;
    let mut first = true;
    while let Some(k) = s.key(first)? {
        first = false;
        let Some(i) = fields.iter().position(|(f, _)| *f == *k) else {
            s.skip()?;
            continue;
        };
        let node = &fields[i].1;
        let bit = 1u64 << (i % 64);
        if seen & bit != 0 && !matches!(node, Node::Leaf(_)) {
            // A repeated field above values: the last one wins when parsed
            // whole, which this walk does not track.
            state.ok = false;
            s.skip()?;
            continue;
        }
        seen |= bit;
        match node {
            Node::Leaf(slot) => {
                let v = s.value()?;
                if in_item {
                    state.item[*slot] = Some(v);
                } else {
                    state.vals[*slot] = Some(v);
                }
            }
            Node::Object(fields) => object_at(s, fields, state, in_item)?,
            Node::Each { item, slots } => list_at(s, item, slots, state)?,
        }
    }
    if fields.len() > 64 {
        state.ok = false;
    }
    Ok(())
}

/// The value at the cursor as a list whose elements are walked by `item`;
/// anything else holds none of the values under it.
fn list_at(s: &mut Scan<'_>, item: &Node, slots: &[usize], state: &mut Walked) -> Scanned<()> {
    if s.kind()? != Kind::List {
        return s.skip();
    }
    s.open_list()?;
    // A list here: each path under it has a list, of what each element holds
    // (elements without the path are left out). The last of a repeated field
    // wins, as when parsed whole.
    let mut lists: Vec<Vec<J>> = slots.iter().map(|_| Vec::new()).collect();
    let mut first = true;
    while s.item(first)? {
        first = false;
        match item {
            Node::Leaf(slot) => state.item[*slot] = Some(s.value()?),
            Node::Object(fields) => object_at(s, fields, state, true)?,
            // Never planned (one list per path): the ordinary step instead.
            Node::Each { .. } => {
                state.ok = false;
                s.skip()?;
            }
        }
        for (list, &slot) in lists.iter_mut().zip(slots) {
            if let Some(v) = state.item[slot].take() {
                list.push(v);
            }
        }
    }
    for (list, &slot) in lists.into_iter().zip(slots) {
        state.vals[slot] = Some(J::Array(list));
    }
    Ok(())
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
        let bad = br#"{"t": [}"#;
        assert_eq!(
            extract(bad, &walk, &mut out).unwrap_err().to_string(),
            serde_error(bad)
        );
        assert!(extract(br#"{"t": [{"a": 1}, {"a": 2}], "t": []}"#, &walk, &mut out).unwrap());
        assert!(out.is_empty(), "the last of a repeated key wins");
    }

    /// JSON text of `v`, objects with their first field repeated (a different
    /// value first) when `dup`: the last one wins when parsed whole.
    fn text(v: &J, dup: bool) -> String {
        match v {
            J::Object(o) => {
                let mut parts: Vec<String> = Vec::new();
                if dup {
                    if let Some((k, _)) = o.iter().next() {
                        parts.push(format!("{}: [7, {{\"a\": 8}}]", J::String(k.clone())));
                    }
                }
                for (k, x) in o {
                    parts.push(format!("{}: {}", J::String(k.clone()), text(x, dup)));
                }
                format!("{{{}}}", parts.join(", "))
            }
            J::Array(a) => format!(
                "[{}]",
                a.iter()
                    .map(|x| text(x, dup))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            other => other.to_string(),
        }
    }

    fn record() -> impl proptest::strategy::Strategy<Value = J> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(J::Null),
            (0i64..5).prop_map(J::from),
            "[xy]{0,2}".prop_map(J::String),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(J::Array),
                proptest::collection::btree_map("[abt]", inner, 0..4)
                    .prop_map(|m| J::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The walk gives what the step gives on the record parsed whole (the
        /// values at the paths, by `FieldPath::get`), or leaves the record to it.
        #[test]
        fn walked_values_are_the_paths_values(r in record(), dup in proptest::bool::ANY, set in 0usize..6) {
            let sets: [&[&str]; 6] = [
                &["a"],
                &["a.b", "t[].a"],
                &["t[].a", "t[].b.a", "b"],
                &["t[]", "a.t"],
                &["b.t[].a", "b.a", "t"],
                &["a", "a.b"],
            ];
            let paths: Vec<super::super::FieldPath> = sets[set]
                .iter()
                .map(|p| super::super::FieldPath::parse(p).unwrap())
                .collect();
            let line = text(&r, dup);
            let whole: J = serde_json::from_str(&line).unwrap();
            let expected = J::Array(
                paths
                    .iter()
                    .map(|p| p.get(&whole).map_or(J::Null, std::borrow::Cow::into_owned))
                    .collect(),
            );
            match ValuesWalk::plan(&paths) {
                None => proptest::prop_assert_eq!(set, 5, "only a path under another is not walked"),
                Some(walk) => {
                    let mut out = Vec::new();
                    if extract_values(line.as_bytes(), &walk, &mut out).unwrap() {
                        proptest::prop_assert_eq!(out, vec![expected], "{}", line);
                    } else {
                        proptest::prop_assert!(dup, "only a repeated field leaves a record to the step: {}", line);
                    }
                }
            }
        }
    }

    /// serde_json's error for a line that is not JSON: the one the walks give.
    fn serde_error(line: &[u8]) -> String {
        serde_json::from_slice::<J>(line).unwrap_err().to_string()
    }

    /// What `walk` reaches in `v`, parsed whole; `None` where it cannot go on.
    fn reached(v: &J, walk: &[Walk]) -> Option<Vec<J>> {
        match (walk.first(), v) {
            (None, _) => Some(vec![v.clone()]),
            (Some(Walk::Field(f)), J::Object(o)) => reached(o.get(f)?, &walk[1..]),
            (Some(Walk::Spread), J::Array(items)) => {
                let mut out = Vec::new();
                for x in items {
                    out.extend(reached(x, &walk[1..])?);
                }
                Some(out)
            }
            _ => None,
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// The pluck walk reaches what a walk of the whole record reaches, and a bad
        /// line gives serde_json's error, word for word.
        #[test]
        fn plucked_values_are_the_whole_records(line in crate::bag::scan::tests::near_json(), set in 0usize..3) {
            let field = |f: &str| Walk::Field(f.to_string());
            let walk = match set {
                0 => vec![field("a")],
                1 => vec![field("b"), Walk::Spread, field("a")],
                _ => vec![field("a"), Walk::Spread, Walk::Spread],
            };
            let mut out = Vec::new();
            match (extract(&line, &walk, &mut out), serde_json::from_slice::<J>(&line)) {
                (Ok(true), Ok(whole)) => proptest::prop_assert_eq!(Some(out), reached(&whole, &walk)),
                (Ok(false), Ok(_)) => proptest::prop_assert!(out.is_empty()),
                (Err(got), Err(want)) => proptest::prop_assert_eq!(got.to_string(), want.to_string()),
                (got, want) => proptest::prop_assert!(false, "{:?} against {:?}: {}", got, want, String::from_utf8_lossy(&line)),
            }
        }
    }

    #[test]
    fn values_are_walked_to_and_bad_json_is_an_error() {
        let paths: Vec<super::super::FieldPath> = ["name", "t[].amount", "address.city"]
            .iter()
            .map(|p| super::super::FieldPath::parse(p).unwrap())
            .collect();
        let walk = ValuesWalk::plan(&paths).unwrap();
        let mut out = Vec::new();
        let line = br#"{"name": "Ann", "t": [{"amount": 5, "d": "x"}, {"d": 1}, {"amount": null}, 3], "address": "Oslo"}"#;
        assert!(extract_values(line, &walk, &mut out).unwrap());
        assert_eq!(out, vec![json!(["Ann", [5, null], null])]);
        for bad in [&br#"{"name": "Ann", "t": [}"#[..], br#"{"name": "Ann"} x"#] {
            assert_eq!(
                extract_values(bad, &walk, &mut out)
                    .unwrap_err()
                    .to_string(),
                serde_error(bad)
            );
        }
        let index = [super::super::FieldPath::parse("t[0].amount").unwrap()];
        assert!(ValuesWalk::plan(&index).is_none());
    }
}

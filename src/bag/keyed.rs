//! Keyed operations: `foldby` (Dask's `foldby(key, binop, initial, combine)`), and
//! `frequencies`, `distinct`, `groupby` built on it. Each input partition folds its
//! records into a partial per key; the partials are then merged by key. By default
//! the merge is radix-partitioned ([`crate::agg::radix`]): the parts of a key hash
//! are chosen at run time from the first partial measured (one part for few keys),
//! each finalize task merges one part of every partial, and the bag has one
//! partition per slot (the slots past the chosen parts are empty). With
//! [`Bag::with_split_out`] (an override) the partials are merged in a tree into one
//! partition (`split_out == 1`) or hash-partitioned through the computation's
//! shuffle store into `split_out` partitions:
//!
//! ```text
//!   partition i ─fold─► {key: acc} ─hash(key) % n─► shuffle store (JSON lines [key, acc])
//!                                          barrier ─► output p: merge its pieces by key
//! ```
//!
//! Output records are `[key, acc]` pairs, sorted by key within each partition.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use serde_json::Value as J;

use super::{layer_name, per_partition, records, Bag, KeyFn, LowerCtx};
use crate::agg::radix::{self, Chunked, Decision, RadixAggregation};
use crate::error::{Error, Result};
use crate::frame::plan::{lower_barrier, lower_readers};
use crate::graph::{FnOperator, Graph, Key, Layer, Task, Value};

/// `binop(acc, record)` of `foldby`.
pub type BinopFn = Arc<dyn Fn(J, &J) -> Result<J> + Send + Sync>;
/// `combine(acc, acc)` of `foldby`.
pub type CombineFn = Arc<dyn Fn(J, J) -> Result<J> + Send + Sync>;

struct Fold {
    key: KeyFn,
    binop: BinopFn,
    initial: J,
    combine: CombineFn,
}

/// Partials by key: the key's text (strings as themselves, behind a tag byte, so the
/// common case needs no serializing) → (key, acc).
type Partials = HashMap<String, (J, J), foldhash::fast::FixedState>;

fn key_text(k: &J) -> String {
    match k {
        J::String(s) => {
            let mut t = String::with_capacity(s.len() + 1);
            t.push('s');
            t.push_str(s);
            t
        }
        other => {
            let mut t = String::from("j");
            t.push_str(&other.to_string());
            t
        }
    }
}

fn new_partials() -> Partials {
    HashMap::with_hasher(foldhash::fast::FixedState::with_seed(7))
}

impl Fold {
    fn chunk(&self, rs: &[J]) -> Result<Partials> {
        self.chunk_sized(rs, 0)
    }

    fn chunk_sized(&self, rs: &[J], keys_hint: usize) -> Result<Partials> {
        let mut m = new_partials();
        m.reserve(keys_hint);
        for r in rs {
            let k = (self.key)(r)?;
            let t = key_text(&k);
            let slot = match m.get_mut(&t) {
                Some(slot) => slot,
                None => m.entry(t).or_insert((k, self.initial.clone())),
            };
            let acc = std::mem::take(&mut slot.1);
            slot.1 = (self.binop)(acc, r)?;
        }
        Ok(m)
    }

    fn merge(&self, into: &mut Partials, k: J, acc: J) -> Result<()> {
        let t = key_text(&k);
        match into.get_mut(&t) {
            Some(slot) => {
                let a = std::mem::take(&mut slot.1);
                slot.1 = (self.combine)(a, acc)?;
            }
            None => {
                into.insert(t, (k, acc));
            }
        }
        Ok(())
    }
}

fn to_pairs(m: Partials) -> Vec<J> {
    let mut v: Vec<(String, (J, J))> = m.into_iter().collect();
    v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    v.into_iter()
        .map(|(_, (k, a))| J::Array(vec![k, a]))
        .collect()
}

fn split_pair(p: J) -> Result<(J, J)> {
    match p {
        J::Array(mut kv) if kv.len() == 2 => {
            let a = kv.pop().unwrap_or(J::Null);
            Ok((kv.pop().unwrap_or(J::Null), a))
        }
        other => Err(Error::Internal(format!(
            "a keyed partial is not a [key, acc] pair: {other}"
        ))),
    }
}

fn key_hash(text: &str) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(11).build_hasher();
    h.write(text.as_bytes());
    h.finish()
}

fn partition_of(text: &str, n: usize) -> usize {
    ((u128::from(key_hash(text)) * n as u128) >> 64) as usize
}

fn pair_key(pair: &J) -> Result<&J> {
    match pair {
        J::Array(kv) if kv.len() == 2 => Ok(&kv[0]),
        other => Err(Error::Internal(format!(
            "a keyed partial is not a [key, acc] pair: {other}"
        ))),
    }
}

impl Bag {
    /// Folds the records by key, as Dask's `foldby`: per partition, `binop(acc,
    /// record)` from `initial` for each key; then the partials of a key are merged
    /// with `combine(acc, acc)`. A bag of `[key, acc]` pairs, spread over
    /// `split_out` partitions by a hash of the key (see [`Bag::with_split_out`]).
    pub fn foldby(
        &self,
        key: KeyFn,
        binop: impl Fn(J, &J) -> Result<J> + Send + Sync + 'static,
        initial: J,
        combine: impl Fn(J, J) -> Result<J> + Send + Sync + 'static,
    ) -> Bag {
        self.fold_by(Fold {
            key,
            binop: Arc::new(binop),
            initial,
            combine: Arc::new(combine),
        })
    }

    /// How often each record occurs: a bag of `[value, count]` pairs.
    pub fn frequencies(&self) -> Bag {
        self.foldby(
            Arc::new(|r: &J| Ok(r.clone())),
            |acc, _| Ok(J::from(acc.as_u64().unwrap_or(0) + 1)),
            J::from(0u64),
            |a, b| Ok(J::from(a.as_u64().unwrap_or(0) + b.as_u64().unwrap_or(0))),
        )
    }

    /// Each distinct record once.
    pub fn distinct(&self) -> Bag {
        self.foldby(
            Arc::new(|r: &J| Ok(r.clone())),
            |acc, _| Ok(acc),
            J::Null,
            |a, _| Ok(a),
        )
        .map(|p| Ok(split_pair(p)?.0))
    }

    /// Groups the records by key through the shuffle store: a bag of `[key,
    /// [records...]]` pairs, each key in exactly one partition.
    pub fn groupby(&self, key: KeyFn) -> Bag {
        self.foldby(
            key,
            |mut acc, r| {
                if let J::Array(a) = &mut acc {
                    a.push(r.clone());
                }
                Ok(acc)
            },
            J::Array(Vec::new()),
            |mut a, b| {
                if let (J::Array(x), J::Array(y)) = (&mut a, b) {
                    x.extend(y);
                }
                Ok(a)
            },
        )
    }

    fn fold_by(&self, fold: Fold) -> Bag {
        let fold = Arc::new(fold);
        let sizing = self.session.radix_sizing();
        let split_out = self.split_out;
        let n = split_out.unwrap_or_else(|| sizing.slots(self.npartitions));
        let input = self.clone();
        let split_every = self.session.split_every();
        let lower = move |graph: &mut Graph, ctx: &LowerCtx| -> Vec<Key> {
            let inputs = input.lower(graph, ctx);
            match split_out {
                None => radix::lower(graph, &inputs, fold.clone(), sizing, &ctx.run),
                Some(1) => tree(graph, &inputs, &fold, split_every),
                Some(n) => shuffle(graph, ctx, &inputs, &fold, n),
            }
        };
        Bag::from_graph(self.session.clone(), n, Arc::new(lower))
    }
}

impl RadixAggregation for Fold {
    fn name(&self) -> &str {
        "foldby"
    }

    fn chunk(&self, input: &Value, decision: &Decision) -> Result<Chunked> {
        let rs = records(input)?;
        let m = self.chunk_sized(rs, decision.expected_groups(rs.len()))?;
        Ok(Chunked {
            groups: m.len(),
            rows: rs.len(),
            // Unsorted: the finalize task sorts what it merged.
            partial: Value::Records(m.into_values().map(|(k, a)| J::Array(vec![k, a])).collect()),
        })
    }

    fn split(&self, partial: Value, parts: usize) -> Result<Vec<Value>> {
        let Value::Records(pairs) = partial else {
            return Err(Error::Internal(format!(
                "a keyed partial is {}",
                partial.kind()
            )));
        };
        if parts <= 1 {
            return Ok(vec![Value::Records(pairs)]);
        }
        let mut out: Vec<Vec<J>> = vec![Vec::new(); parts];
        for pair in pairs {
            let p = radix::part_of(key_hash(&key_text(pair_key(&pair)?)), parts);
            out[p].push(pair);
        }
        Ok(out
            .into_iter()
            .map(|v| {
                if v.is_empty() {
                    Value::Pieces(Vec::new())
                } else {
                    Value::Records(v)
                }
            })
            .collect())
    }

    fn finalize(&self, parts: &[&Value]) -> Result<Value> {
        let mut m = new_partials();
        m.reserve(
            parts
                .iter()
                .map(|v| records(v).map_or(0, |r| r.len()))
                .sum(),
        );
        for v in parts {
            for p in records(v)? {
                let (k, a) = split_pair(p.clone())?;
                self.merge(&mut m, k, a)?;
            }
        }
        Ok(Value::Records(to_pairs(m)))
    }

    fn hashes(&self, part: &Value) -> Result<Vec<u64>> {
        records(part)?
            .iter()
            .map(|p| Ok(key_hash(&key_text(pair_key(p)?))))
            .collect()
    }

    fn take(&self, part: &Value, rows: &[u32]) -> Result<Value> {
        let rs = records(part)?;
        Ok(Value::Records(
            rows.iter().map(|&i| rs[i as usize].clone()).collect(),
        ))
    }

    fn merge_answers(&self, answers: Vec<Value>) -> Result<Value> {
        let mut keyed: Vec<(String, J)> = Vec::new();
        for a in answers {
            let Value::Records(pairs) = a else {
                return Err(Error::Internal(format!("a keyed answer is {}", a.kind())));
            };
            for p in pairs {
                keyed.push((key_text(pair_key(&p)?), p));
            }
        }
        keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(Value::Records(keyed.into_iter().map(|(_, p)| p).collect()))
    }

    fn empty_answer(&self) -> Value {
        Value::Records(Vec::new())
    }
}

fn tree(graph: &mut Graph, inputs: &[Key], fold: &Arc<Fold>, split_every: usize) -> Vec<Key> {
    let f = fold.clone();
    let mut level = per_partition(
        graph,
        "foldby-chunk",
        inputs,
        Arc::new(move |_, v| Ok(Value::Records(to_pairs(f.chunk(records(v)?)?)))),
    );
    loop {
        let last = level.len() <= split_every;
        let name = layer_name("foldby-combine");
        let tasks: Vec<Task> = level
            .chunks(split_every)
            .enumerate()
            .map(|(i, group)| {
                let f = fold.clone();
                Task {
                    key: Key::new(&name, i),
                    deps: group.to_vec(),
                    op: FnOperator::new("foldby-combine", move |inputs: &[Arc<Value>]| {
                        let mut m = new_partials();
                        for v in inputs {
                            for p in records(v)? {
                                let (k, a) = split_pair(p.clone())?;
                                f.merge(&mut m, k, a)?;
                            }
                        }
                        Ok(Value::Records(to_pairs(m)))
                    }),
                }
            })
            .collect();
        level = tasks.iter().map(|t| t.key.clone()).collect();
        graph.add_layer(Layer { name, tasks });
        if last {
            return level;
        }
    }
}

fn shuffle(
    graph: &mut Graph,
    ctx: &LowerCtx,
    inputs: &[Key],
    fold: &Arc<Fold>,
    n: usize,
) -> Vec<Key> {
    let offset = ctx.run.reserve_shuffle_partitions(n);
    let (f, run) = (fold.clone(), ctx.run.clone());
    let written = per_partition(
        graph,
        "foldby-shuffle-write",
        inputs,
        Arc::new(move |writer, v| {
            let partials = f.chunk(records(v)?)?;
            let mut pieces: Vec<Vec<u8>> = vec![Vec::new(); n];
            for (t, (k, a)) in partials {
                let out = &mut pieces[partition_of(&t, n)];
                serde_json::to_writer(&mut *out, &J::Array(vec![k, a]))
                    .map_err(|e| Error::Internal(format!("cannot encode a partial: {e}")))?;
                out.push(b'\n');
            }
            let store = run.shuffle()?;
            for (p, bytes) in pieces.iter().enumerate() {
                if !bytes.is_empty() {
                    store.append(offset + p, writer as u64, bytes)?;
                }
            }
            Ok(Value::Pieces(Vec::new()))
        }),
    );
    let barrier = lower_barrier(graph, written);
    lower_readers(graph, "foldby-shuffle-read", n, &barrier, &|p| {
        let (f, run) = (fold.clone(), ctx.run.clone());
        FnOperator::new("foldby-shuffle-read", move |_: &[Arc<Value>]| {
            let store = run.shuffle()?;
            let mut m = new_partials();
            for piece in store.get(offset + p)? {
                for line in piece.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    let pair: J = serde_json::from_slice(line).map_err(|e| {
                        Error::Internal(format!("a shuffled partial does not decode: {e}"))
                    })?;
                    let (k, a) = split_pair(pair)?;
                    f.merge(&mut m, k, a)?;
                }
            }
            store.drop_partition(offset + p)?;
            Ok(Value::Records(to_pairs(m)))
        })
    })
}

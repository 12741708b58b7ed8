//! Radix-partitioned aggregation (DuckDB's design), and the run-time choice between
//! it and one merge of all partials. Frame groupbys and the bag's keyed operations
//! (`foldby`, `frequencies`, `distinct`, `groupby`) both lower through [`lower`].
//!
//! ```text
//!   partition i ─chunk─► partial i, split by key hash into P parts ─► part (i, p)
//!                                                                        │ (held in the spill cache)
//!   finalize p  ◄── part (0, p), part (1, p), … part (N-1, p)  ◄─────────┘
//! ```
//!
//! Each key is hashed once, in its chunk task; the parts carry the hash and the key
//! in the grouper's own form, so a finalize task neither re-encodes nor rehashes,
//! and merges each of its keys once: no tree of merges over tables of many groups.
//!
//! **Choosing P at run time in a static graph.** The scheduler runs a graph fixed
//! before any data is read, but the number of groups is only known from the data.
//! So the graph has `S` slots (an upper bound, [`Sizing::slots`]), and the first
//! chunk task to finish measures its partial and fixes `P ≤ S` for the whole
//! aggregation ([`Decision`]): every chunk splits into the same `P` parts, and the
//! tasks of slots `P..S` carry empty values (a no-op each, under a microsecond).
//! When the partials are small in total (few groups), `P = 1`: one task merges all
//! of them, which for so little data is as fast as a tree and holds less. When
//! they are large, `P` is the estimated total over a target part size (a fraction
//! of one thread's share of the memory limit, so a finalize task's table fits in its
//! share), and at least two parts per thread so that every core merges.
//!
//! The estimate is the first partial's bytes times the number of chunks: partitions
//! are blocks of about the same size, and a partial only shrinks when the data has
//! fewer groups than rows, which the first block shows as well as any. Later chunks
//! size their hash tables from the groups per row measured so far.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use arrow::array::RecordBatch;

use super::AggregatePlan;
use crate::error::{Error, Result};
use crate::graph::{Graph, Key, Layer, Operator, Task, Value};
use crate::scheduler::RunContext;

/// The most slots (and so parts) one aggregation has.
pub const MAX_SLOTS: usize = 256;

/// What the choice of `P` depends on besides the data: the session's threads and
/// memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// Worker threads.
    pub threads: usize,
    /// The memory limit in bytes.
    pub memory_limit: u64,
}

impl Sizing {
    /// The slots of an aggregation over `chunks` partitions: enough for one part per
    /// chunk (a partial is at most a few times its block, and a part's target is
    /// larger than a block) and two per thread, at most [`MAX_SLOTS`].
    pub fn slots(&self, chunks: usize) -> usize {
        chunks.max(2 * self.threads).clamp(1, MAX_SLOTS)
    }

    /// Bytes of partials a part should hold: a quarter of one thread's share of the
    /// limit, at most 32 MiB (smaller tables merge faster in cache).
    fn part_target_bytes(&self) -> u64 {
        (self.memory_limit / (4 * self.threads.max(1) as u64)).clamp(16 << 10, 32 << 20)
    }

    /// Partials up to this many bytes in total are merged by one task.
    fn one_merge_bytes(&self) -> u64 {
        (self.memory_limit / 16).min(16 << 20)
    }

    /// The parts for partials of about `total_bytes` in all, given `slots`.
    pub fn parts(&self, total_bytes: u64, slots: usize) -> usize {
        if total_bytes <= self.one_merge_bytes() {
            return 1;
        }
        let by_size = total_bytes.div_ceil(self.part_target_bytes()) as usize;
        by_size.max(2 * self.threads).clamp(1, slots)
    }
}

/// The part of a key whose hash is `hash`, of `parts`: a multiply-shift on bits
/// 24..48, which neither the hash table's bucket index (the low bits) nor its tag
/// (the top seven) use, so the keys of one part still spread over a table.
#[inline]
pub fn part_of(hash: u64, parts: usize) -> usize {
    ((((hash >> 24) & 0xFF_FFFF) * parts as u64) >> 24) as usize
}

/// The choice of `P` for one run of one aggregation, made once by the first chunk
/// measured, and what the chunks measured so far.
pub struct Decision {
    sizing: Sizing,
    chunks: usize,
    slots: usize,
    parts: OnceLock<usize>,
    groups_seen: AtomicU64,
    rows_seen: AtomicU64,
    ctx: Arc<RunContext>,
}

impl Decision {
    fn new(sizing: Sizing, chunks: usize, ctx: Arc<RunContext>) -> Arc<Decision> {
        Arc::new(Decision {
            sizing,
            chunks,
            slots: sizing.slots(chunks),
            parts: OnceLock::new(),
            groups_seen: AtomicU64::new(0),
            rows_seen: AtomicU64::new(0),
            ctx,
        })
    }

    /// Groups a chunk of `rows` rows is expected to make, from the chunks measured
    /// so far (0 before any).
    pub fn expected_groups(&self, rows: usize) -> usize {
        let seen = self.rows_seen.load(Ordering::Relaxed);
        if seen == 0 {
            return 0;
        }
        let groups = self.groups_seen.load(Ordering::Relaxed);
        (rows as u128 * groups as u128 / seen as u128) as usize
    }

    /// Records a chunk's partial (`bytes`, `groups` from `rows` rows) and returns the
    /// parts every chunk splits into: fixed by the first chunk to get here.
    fn record(&self, bytes: usize, groups: usize, rows: usize) -> usize {
        self.groups_seen.fetch_add(groups as u64, Ordering::Relaxed);
        self.rows_seen.fetch_add(rows as u64, Ordering::Relaxed);
        *self.parts.get_or_init(|| {
            let total = bytes as u64 * self.chunks as u64;
            let p = self.sizing.parts(total, self.slots);
            self.ctx.record_radix_parts(p);
            p
        })
    }
}

/// A chunk task's partial and what it measured.
pub struct Chunked {
    /// The partial.
    pub partial: Value,
    /// Its groups.
    pub groups: usize,
    /// The input rows it came from.
    pub rows: usize,
}

/// An aggregation that can run radix-partitioned: chunk, split by key hash,
/// finalize a part. Contract: `split` sends every key to the same part in every
/// chunk; `finalize` gets part `p` of every chunk (in chunk order; empty parts left
/// out) and gives the answer for those keys; no key is in two parts.
pub trait RadixAggregation: Send + Sync {
    /// A short name for the graph's layers (`agg`, `foldby`).
    fn name(&self) -> &str;
    /// One input partition → its partial; `decision` sizes its table.
    fn chunk(&self, input: &Value, decision: &Decision) -> Result<Chunked>;
    /// A partial → `parts` parts (one value when `parts` is 1).
    fn split(&self, partial: Value, parts: usize) -> Result<Vec<Value>>;
    /// Part `p` of each chunk → the answer for its keys.
    fn finalize(&self, parts: &[&Value]) -> Result<Value>;
}

static LAYER_ID: AtomicUsize = AtomicUsize::new(0);

fn layer(op: &str) -> Arc<str> {
    format!("radix-{op}-{}", LAYER_ID.fetch_add(1, Ordering::Relaxed)).into()
}

/// An empty part (of a slot past `P`, or of a chunk with no rows for it).
fn empty() -> Value {
    Value::Pieces(Vec::new())
}

fn is_empty(v: &Value) -> bool {
    matches!(v, Value::Pieces(p) if p.is_empty())
}

struct ChunkOp {
    agg: Arc<dyn RadixAggregation>,
    decision: Arc<Decision>,
    name: String,
}

impl Operator for ChunkOp {
    fn name(&self) -> &str {
        &self.name
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        let [input] = inputs else {
            return Err(Error::Internal(format!(
                "a radix chunk got {} inputs",
                inputs.len()
            )));
        };
        let c = self.agg.chunk(input, &self.decision)?;
        let parts = self
            .decision
            .record(c.partial.size_bytes(), c.groups, c.rows);
        Ok(Value::Pieces(self.agg.split(c.partial, parts)?))
    }
}

struct PartOp {
    slot: usize,
    name: String,
}

impl Operator for PartOp {
    fn name(&self) -> &str {
        &self.name
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        match inputs {
            [v] => match v.as_ref() {
                Value::Pieces(parts) => Ok(parts.get(self.slot).cloned().unwrap_or_else(empty)),
                other => Err(Error::Internal(format!(
                    "a radix chunk gave {}, not parts",
                    other.kind()
                ))),
            },
            _ => Err(Error::Internal(format!(
                "a radix part got {} inputs",
                inputs.len()
            ))),
        }
    }
}

struct FinalizeOp {
    agg: Arc<dyn RadixAggregation>,
    name: String,
}

impl Operator for FinalizeOp {
    fn name(&self) -> &str {
        &self.name
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        let parts: Vec<&Value> = inputs
            .iter()
            .map(|v| v.as_ref())
            .filter(|v| !is_empty(v))
            .collect();
        self.agg.finalize(&parts)
    }
}

/// Adds a radix-partitioned aggregation over `inputs` (one chunk task each):
/// returns the keys of its `S` finalize tasks (see the module's doc), slot `p`
/// holding the keys of part `p`; slots past the `P` chosen at run time hold what
/// `finalize` gives for no parts.
pub fn lower(
    graph: &mut Graph,
    inputs: &[Key],
    agg: Arc<dyn RadixAggregation>,
    sizing: Sizing,
    ctx: &Arc<RunContext>,
) -> Vec<Key> {
    let decision = Decision::new(sizing, inputs.len(), ctx.clone());
    let slots = decision.slots;
    let name = agg.name().to_string();
    let chunk_layer = layer(&format!("{name}-chunk"));
    let chunk: Arc<dyn Operator> = Arc::new(ChunkOp {
        agg: agg.clone(),
        decision,
        name: format!("{name}-radix-chunk"),
    });
    let chunks: Vec<Task> = inputs
        .iter()
        .enumerate()
        .map(|(i, k)| Task {
            key: Key::new(&chunk_layer, i),
            deps: vec![k.clone()],
            op: chunk.clone(),
        })
        .collect();
    let chunk_keys: Vec<Key> = chunks.iter().map(|t| t.key.clone()).collect();
    graph.add_layer(Layer {
        name: chunk_layer,
        tasks: chunks,
    });
    let part_layer = layer(&format!("{name}-part"));
    let part_ops: Vec<Arc<dyn Operator>> = (0..slots)
        .map(|slot| {
            Arc::new(PartOp {
                slot,
                name: format!("{name}-radix-part"),
            }) as Arc<dyn Operator>
        })
        .collect();
    let mut parts = Vec::with_capacity(chunk_keys.len() * slots);
    for (i, c) in chunk_keys.iter().enumerate() {
        for (p, op) in part_ops.iter().enumerate() {
            parts.push(Task {
                key: Key::new(&part_layer, i * slots + p),
                deps: vec![c.clone()],
                op: op.clone(),
            });
        }
    }
    graph.add_layer(Layer {
        name: part_layer.clone(),
        tasks: parts,
    });
    let finalize_layer = layer(&format!("{name}-finalize"));
    let finalize: Arc<dyn Operator> = Arc::new(FinalizeOp {
        agg,
        name: format!("{name}-radix-finalize"),
    });
    let finals: Vec<Task> = (0..slots)
        .map(|p| Task {
            key: Key::new(&finalize_layer, p),
            deps: (0..chunk_keys.len())
                .map(|i| Key::new(&part_layer, i * slots + p))
                .collect(),
            op: finalize.clone(),
        })
        .collect();
    let keys = finals.iter().map(|t| t.key.clone()).collect();
    graph.add_layer(Layer {
        name: finalize_layer,
        tasks: finals,
    });
    keys
}

impl RadixAggregation for AggregatePlan {
    fn name(&self) -> &str {
        "agg"
    }

    fn chunk(&self, input: &Value, decision: &Decision) -> Result<Chunked> {
        let batch = input.as_batch()?;
        let rows = batch.num_rows();
        let partial = self.chunk_stored(batch, decision.expected_groups(rows))?;
        Ok(Chunked {
            groups: partial.num_rows(),
            partial: Value::Batch(partial),
            rows,
        })
    }

    fn split(&self, partial: Value, parts: usize) -> Result<Vec<Value>> {
        let Value::Batch(b) = partial else {
            return Err(Error::Internal(format!(
                "an aggregation partial is {}",
                partial.kind()
            )));
        };
        Ok(self
            .split_stored(b, parts)?
            .into_iter()
            .map(|b| {
                if b.num_rows() == 0 {
                    empty()
                } else {
                    Value::Batch(b)
                }
            })
            .collect())
    }

    fn finalize(&self, parts: &[&Value]) -> Result<Value> {
        let batches = parts
            .iter()
            .map(|v| v.as_batch())
            .collect::<Result<Vec<&RecordBatch>>>()?;
        Ok(Value::Batch(self.finalize_stored(&batches)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_follow_the_measured_total() {
        let s = Sizing {
            threads: 2,
            memory_limit: 8 << 30,
        };
        assert_eq!(s.slots(32), 32);
        assert_eq!(s.slots(1), 4);
        assert_eq!(s.slots(10_000), MAX_SLOTS);
        // Few groups: one merge.
        assert_eq!(s.parts(4 << 20, 32), 1);
        // 1e7 groups over 32 chunks (~900 MB of partials): 32 MiB parts, capped by
        // the slots.
        assert_eq!(s.parts(900 << 20, 32), 29);
        assert_eq!(s.parts(900 << 20, 16), 16);
        // Just past one merge: at least two parts per thread.
        assert_eq!(s.parts(20 << 20, 32), 4);
        // A tiny limit partitions even small totals.
        let tiny = Sizing {
            threads: 1,
            memory_limit: 64 << 10,
        };
        assert_eq!(tiny.parts(8 << 10, 8), 2);
    }

    /// The stored path (chunk, split into P parts, finalize each part, gather) gives
    /// the tree's answer for every P, over the three stored key forms, with null
    /// keys kept, and a holistic aggregation.
    #[test]
    fn the_answer_does_not_depend_on_the_parts() {
        use arrow::array::{Float64Array, Int64Array, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        let n = 500usize;
        let ids: Int64Array = (0..n)
            .map(|i| (i % 7 != 3).then_some((i * 7919 % 97) as i64))
            .collect();
        let names: StringArray = (0..n)
            .map(|i| (i % 11 != 5).then(|| format!("k{}", i * 31 % 13)))
            .collect();
        let xs: Float64Array = (0..n).map(|i| Some((i * 37 % 101) as f64 / 4.0)).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(ids), Arc::new(names), Arc::new(xs)],
        )
        .unwrap();
        let chunks: Vec<RecordBatch> = (0..5).map(|i| batch.slice(i * 100, 100)).collect();
        for keys in [vec!["id"], vec!["name"], vec!["name", "id"]] {
            let plan = AggregatePlan::new(
                &schema,
                keys.iter().map(|k| k.to_string()).collect(),
                vec![
                    super::super::sum("x"),
                    super::super::median("x"),
                    super::super::size(),
                ],
                true,
                true,
            )
            .unwrap();
            let partials: Vec<RecordBatch> =
                chunks.iter().map(|c| plan.chunk(c).unwrap()).collect();
            let expected = plan.finalize(&partials.iter().collect::<Vec<_>>()).unwrap();
            for parts in 1..=9 {
                let split: Vec<Vec<RecordBatch>> = chunks
                    .iter()
                    .map(|c| {
                        let stored = plan.chunk_stored(c, 0).unwrap();
                        plan.split_stored(stored, parts).unwrap()
                    })
                    .collect();
                let answers: Vec<RecordBatch> = (0..parts)
                    .map(|p| {
                        let mine: Vec<&RecordBatch> = split.iter().map(|s| &s[p]).collect();
                        plan.finalize_stored(&mine).unwrap()
                    })
                    .collect();
                let got = plan.gather(answers).unwrap();
                assert_eq!(got, expected, "keys {keys:?}, {parts} parts");
            }
        }
    }

    #[test]
    fn every_hash_has_a_part_below_the_count() {
        for parts in [1, 2, 3, 7, 16, 256] {
            let mut seen = vec![0usize; parts];
            for k in 0..10_000i64 {
                let p = part_of(crate::agg::grouper::hash_i64(k), parts);
                assert!(p < parts);
                seen[p] += 1;
            }
            // Spread: no part gets more than twice its share.
            assert!(
                seen.iter().all(|&n| n <= 2 * 10_000 / parts + 8),
                "{seen:?}"
            );
        }
        assert_eq!(part_of(u64::MAX, 5), 4);
    }
}

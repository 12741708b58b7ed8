//! The logical plan behind a [`DataFrame`](super::DataFrame), and its lowering to a
//! task graph.
//!
//! Dask adds graph layers directly and later rewrites them to push column selection
//! into the readers; dask-expr moved to a logical layer because opaque tasks hide
//! which columns are used. We keep that layer from the start: a frame is a small
//! tree of [`Plan`] nodes; `compute` prunes columns top-down (so CSV decoding touches
//! only the columns the query uses), then lowers each node to one layer of tasks,
//! one per partition, which the graph compiler culls, fuses and orders.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::SortOptions;
use arrow::datatypes::SchemaRef;
use datafusion_common::ScalarValue;

use super::join::{
    key_partitioners, BroadcastBuild, JoinBroadcastLeft, JoinPartitions, JoinSpec, JoinStrategy,
    SharedTable, ShuffleJoin,
};
use super::ops::{
    AggChunk, AggCombine, AggFinalize, FilterOp, MapOp, ProjectOp, ReadCsvBlock,
    ShuffleAggFinalize, ShuffleGather, ShuffleWrite,
};
use super::partitioning::Partitioner;
use crate::agg::radix::{self, Sizing};
use crate::agg::AggregatePlan;
use crate::error::Result;
use crate::expr::Expr;
use crate::graph::{FnOperator, Graph, Key, Layer, Operator, Task, Value};
use crate::io::CsvSource;
use crate::scheduler::RunContext;

/// A function applied to every partition by `map_partitions`.
pub type PartitionFn = Arc<dyn Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync>;

/// A function merging several batches into one, applied level by level by a
/// reduction tree ([`Plan::TreeReduce`]).
pub type ReduceFn = Arc<dyn Fn(&[RecordBatch]) -> Result<RecordBatch> + Send + Sync>;

/// The column a frame is indexed by and, when known, its divisions: Dask's
/// `divisions`, `npartitions + 1` sorted boundaries such that partition `i` holds
/// index values in `[d[i], d[i+1])`, the last partition `[d[n-1], d[n]]`. The index
/// column stays an ordinary column of the batches; the index only records that the
/// rows are ordered by it across partitions.
#[derive(Clone, Debug, PartialEq)]
pub struct Index {
    /// The index column.
    pub column: String,
    /// The boundaries, when known.
    pub divisions: Option<Arc<[ScalarValue]>>,
}

/// One node of a frame's logical plan.
pub enum Plan {
    /// Blocks of a CSV glob; `projection` is filled in by pruning.
    ReadCsv {
        /// The opened source.
        source: Arc<CsvSource>,
        /// Column indexes to decode; all when `None`.
        projection: Option<Vec<usize>>,
    },
    /// Rows where the predicate is true.
    Filter {
        /// Input.
        input: Arc<Plan>,
        /// Boolean expression.
        predicate: Expr,
    },
    /// New columns from expressions (`select`, `with_column`).
    Project {
        /// Input.
        input: Arc<Plan>,
        /// Expressions and their output names.
        exprs: Vec<(Expr, String)>,
        /// Output schema.
        schema: SchemaRef,
    },
    /// A user function per partition.
    MapPartitions {
        /// Input.
        input: Arc<Plan>,
        /// The function.
        f: PartitionFn,
        /// Output schema the function promises.
        schema: SchemaRef,
    },
    /// A groupby-aggregate, the strategy chosen at run time from the measured
    /// partials ([`crate::agg::radix`]: one merge for few groups, radix-partitioned
    /// for many, into one partition per slot: a small answer sorted whole in the
    /// last, a large one a sorted partition per part); or, when `split_out` is
    /// given (an override),
    /// by tree reduction (`Some(1)`) or by hash-partitioning the partials through
    /// the shuffle store into `split_out` partitions.
    Aggregate {
        /// Input.
        input: Arc<Plan>,
        /// What to compute.
        plan: Arc<AggregatePlan>,
        /// Fan-in of the combine tree.
        split_every: usize,
        /// Output partitions, when the user chose them.
        split_out: Option<usize>,
        /// Threads and memory limit, from which the radix strategy sizes its parts.
        sizing: Sizing,
    },
    /// The rows moved into `npartitions` partitions by `by` through the shuffle
    /// store, each output partition then sorted by `sort` (set_index, sort_values).
    Shuffle {
        /// Input.
        input: Arc<Plan>,
        /// Where each row goes.
        by: Partitioner,
        /// Output partitions.
        npartitions: usize,
        /// Sort keys of each output partition; empty keeps arrival order.
        sort: Vec<(String, SortOptions)>,
    },
    /// Some of the input's partitions, in this order (`loc` on known divisions);
    /// the others are culled, never read.
    SelectPartitions {
        /// Input.
        input: Arc<Plan>,
        /// Which partitions.
        partitions: Arc<[usize]>,
    },
    /// All partitions merged into one by a tree of `f`, `split_every` at a time
    /// (`nlargest`); `f` keeps the input's schema.
    TreeReduce {
        /// Input.
        input: Arc<Plan>,
        /// A short name for the graph's layers.
        name: String,
        /// The merge.
        f: ReduceFn,
        /// Fan-in of the tree.
        split_every: usize,
    },
    /// Two frames merged on keys ([`super::join`]).
    Join {
        /// Left side.
        left: Arc<Plan>,
        /// Right side.
        right: Arc<Plan>,
        /// Keys, kind and output columns.
        spec: Arc<JoinSpec>,
        /// How it runs.
        strategy: JoinStrategy,
        /// Output partitions.
        npartitions: usize,
    },
    /// The input, declared indexed (no tasks of its own): what `set_index(..,
    /// sorted)` makes once it has checked the order.
    WithIndex {
        /// Input.
        input: Arc<Plan>,
        /// The index.
        index: Index,
    },
    /// A node whose logic lives in its own file (time series operations, persisted
    /// and generated sources): see [`PlanNode`].
    Node {
        /// Inputs (none for a source).
        inputs: Vec<Arc<Plan>>,
        /// What the node does.
        node: Arc<dyn PlanNode>,
    },
}

/// A plan node defined outside this file. It says what it produces and lowers
/// itself to layers of tasks, so new operations need no new match arms here.
///
/// Contract: `schema`, `npartitions` and `index` are pure; `input_columns` names, for
/// each input, the columns the node reads given the columns its consumer reads
/// (`None`: all); the node must then find its input columns by name, since an input
/// may arrive with fewer columns than its unpruned schema.
pub trait PlanNode: Send + Sync {
    /// A short name (`resample`, `persisted`).
    fn name(&self) -> &str;
    /// One line for `explain()`: the name and what the node was given (a source's
    /// pushed-down filter, say). Default: the name.
    fn describe(&self) -> String {
        self.name().to_string()
    }
    /// The output schema, given the inputs' (pruned) schemas.
    fn schema(&self, inputs: &[SchemaRef]) -> SchemaRef;
    /// Number of output partitions, given the inputs'.
    fn npartitions(&self, inputs: &[usize]) -> usize;
    /// The output's index, if any.
    fn index(&self) -> Option<Index>;
    /// The node producing only the columns in `required` (a source's projection),
    /// when it can do that more cheaply than producing all; `None` keeps it as is.
    fn pruned(&self, _required: Option<&BTreeSet<String>>) -> Option<Arc<dyn PlanNode>> {
        None
    }
    /// A source that can skip data `predicate` rejects (Parquet row groups, by
    /// their statistics) returns itself with the predicate; `None` (the default)
    /// when it cannot. The filter still runs above the source, so the source may
    /// keep rows that do not match, but must never drop one that does.
    fn with_predicate(&self, _predicate: &Expr) -> Option<Arc<dyn PlanNode>> {
        None
    }
    /// Roughly the bytes a source's partitions hold in memory, when it can tell
    /// (joins broadcast a small side); `None` (the default) when it cannot.
    fn estimated_bytes(&self) -> Option<u64> {
        None
    }
    /// Columns needed of each input when the consumer reads `required`.
    fn input_columns(&self, required: Option<&BTreeSet<String>>) -> Vec<Option<BTreeSet<String>>>;
    /// Adds the node's tasks to `graph`, given each input's partition keys; returns
    /// the key of each output partition.
    fn lower(&self, inputs: &[Vec<Key>], graph: &mut Graph, ctx: &Arc<RunContext>) -> Vec<Key>;
}

impl Plan {
    /// The output schema.
    pub fn schema(&self) -> SchemaRef {
        match self {
            Plan::ReadCsv { source, projection } => match projection {
                None => source.schema.clone(),
                Some(p) => Arc::new(
                    source
                        .schema
                        .project(p)
                        .expect("projection indexes are valid"),
                ),
            },
            Plan::Filter { input, .. }
            | Plan::WithIndex { input, .. }
            | Plan::Shuffle { input, .. }
            | Plan::SelectPartitions { input, .. }
            | Plan::TreeReduce { input, .. } => input.schema(),
            Plan::Project { schema, .. } | Plan::MapPartitions { schema, .. } => schema.clone(),
            Plan::Aggregate { plan, .. } => plan.output_schema.clone(),
            Plan::Join { spec, .. } => spec.output.clone(),
            Plan::Node { inputs, node } => {
                node.schema(&inputs.iter().map(|p| p.schema()).collect::<Vec<_>>())
            }
        }
    }

    /// Number of partitions.
    pub fn npartitions(&self) -> usize {
        match self {
            Plan::ReadCsv { source, .. } => source.blocks.len(),
            Plan::Filter { input, .. }
            | Plan::Project { input, .. }
            | Plan::MapPartitions { input, .. }
            | Plan::WithIndex { input, .. } => input.npartitions(),
            Plan::Aggregate {
                split_out: None,
                plan,
                sizing,
                input,
                ..
            } if !plan.keys.is_empty() => sizing.slots(input.npartitions()),
            Plan::Aggregate { split_out, .. } => split_out.unwrap_or(1),
            Plan::Shuffle { npartitions, .. } => *npartitions,
            Plan::SelectPartitions { partitions, .. } => partitions.len(),
            Plan::TreeReduce { .. } => 1,
            Plan::Join { npartitions, .. } => *npartitions,
            Plan::Node { inputs, node } => {
                node.npartitions(&inputs.iter().map(|p| p.npartitions()).collect::<Vec<_>>())
            }
        }
    }
}

impl Plan {
    /// The key columns by which each partition of this plan is sorted, when it is
    /// a radix groupby's answer (or a selection over it that keeps the keys), whose
    /// partitions are each sorted but not ordered among themselves: gathering it
    /// whole ([`DataFrame::compute`](super::DataFrame::compute)) merges them.
    pub fn sorted_partitions_by(&self) -> Option<Vec<String>> {
        match self {
            Plan::Aggregate {
                plan,
                split_out: None,
                ..
            } if plan.sort && !plan.keys.is_empty() => Some(plan.keys.clone()),
            Plan::Filter { input, .. } | Plan::Project { input, .. } => {
                let keys = input.sorted_partitions_by()?;
                let schema = self.schema();
                keys.iter()
                    .all(|k| schema.index_of(k).is_ok())
                    .then_some(keys)
            }
            _ => None,
        }
    }

    /// The plans this one reads.
    pub fn inputs(&self) -> Vec<&Arc<Plan>> {
        match self {
            Plan::ReadCsv { .. } => vec![],
            Plan::Filter { input, .. }
            | Plan::Project { input, .. }
            | Plan::MapPartitions { input, .. }
            | Plan::Aggregate { input, .. }
            | Plan::Shuffle { input, .. }
            | Plan::SelectPartitions { input, .. }
            | Plan::TreeReduce { input, .. }
            | Plan::WithIndex { input, .. } => vec![input],
            Plan::Join { left, right, .. } => vec![left, right],
            Plan::Node { inputs, .. } => inputs.iter().collect(),
        }
    }

    /// Roughly the bytes the plan's partitions hold, when a guess can be made: the
    /// bytes read, scaled by the columns kept. Aggregations shrink by an unknown
    /// factor, so they give none.
    pub fn estimated_bytes(&self) -> Option<u64> {
        match self {
            Plan::ReadCsv { source, projection } => {
                let bytes: u64 = source.blocks.iter().map(|b| b.end - b.start).sum();
                let all = source.schema.fields().len().max(1) as u64;
                let kept = projection.as_ref().map_or(all, |p| p.len() as u64);
                Some(bytes * kept.max(1) / all)
            }
            Plan::Aggregate { .. } => None,
            Plan::Join { left, right, .. } => {
                Some(left.estimated_bytes()? + right.estimated_bytes()?)
            }
            Plan::SelectPartitions { input, partitions } => {
                let n = input.npartitions().max(1) as u64;
                Some(input.estimated_bytes()? * partitions.len() as u64 / n)
            }
            Plan::Node { inputs, node } if inputs.is_empty() => node.estimated_bytes(),
            other => other.inputs().first()?.estimated_bytes(),
        }
    }

    /// The frame's index: kept through row filters and through projections and
    /// partition functions whose output still has the column (as Dask keeps
    /// divisions through `map_partitions`); lost by aggregation.
    pub fn index(&self) -> Option<Index> {
        match self {
            Plan::ReadCsv { .. }
            | Plan::Aggregate { .. }
            | Plan::Shuffle { .. }
            | Plan::SelectPartitions { .. }
            | Plan::TreeReduce { .. } => None,
            // merge_with wraps a join that keeps the left's index.
            Plan::Join { .. } => None,
            Plan::WithIndex { index, .. } => Some(index.clone()),
            Plan::Node { node, .. } => node.index(),
            Plan::Filter { input, .. } => input.index(),
            Plan::Project { input, exprs, .. } => input.index().filter(|ix| {
                exprs.iter().any(|(e, name)| {
                    name == &ix.column && matches!(e, Expr::Column(c) if c == &ix.column)
                })
            }),
            Plan::MapPartitions { input, schema, .. } => input
                .index()
                .filter(|ix| schema.index_of(&ix.column).is_ok()),
        }
    }
}

/// Returns `plan` rewritten so that each node produces only the columns its
/// consumers use; `required` is what the consumer of `plan` reads (`None`: all).
pub fn prune(plan: &Arc<Plan>, required: Option<&BTreeSet<String>>) -> Arc<Plan> {
    match plan.as_ref() {
        Plan::ReadCsv { source, .. } => {
            let projection = required.map(|req| {
                (0..source.schema.fields().len())
                    .filter(|&i| req.contains(source.schema.field(i).name()))
                    .collect()
            });
            Arc::new(Plan::ReadCsv {
                source: source.clone(),
                projection,
            })
        }
        Plan::Filter { input, predicate } => {
            let need = required.map(|r| {
                let mut n = r.clone();
                n.extend(predicate.columns());
                n
            });
            let input = prune(input, need.as_ref());
            Arc::new(Plan::Filter {
                input: push_predicate(&input, predicate).unwrap_or(input),
                predicate: predicate.clone(),
            })
        }
        Plan::Project {
            input,
            exprs,
            schema,
        } => {
            let kept: Vec<(Expr, String)> = exprs
                .iter()
                .filter(|(_, name)| required.is_none_or(|r| r.contains(name)))
                .cloned()
                .collect();
            let need: BTreeSet<String> = kept.iter().flat_map(|(e, _)| e.columns()).collect();
            let schema = if kept.len() == exprs.len() {
                schema.clone()
            } else {
                let idx: Vec<usize> = kept
                    .iter()
                    .map(|(_, n)| schema.index_of(n).expect("output names are in the schema"))
                    .collect();
                Arc::new(schema.project(&idx).expect("indexes are valid"))
            };
            Arc::new(Plan::Project {
                input: prune(input, Some(&need)),
                exprs: kept,
                schema,
            })
        }
        Plan::MapPartitions { input, f, schema } => Arc::new(Plan::MapPartitions {
            input: prune(input, None),
            f: f.clone(),
            schema: schema.clone(),
        }),
        Plan::Shuffle {
            input,
            by,
            npartitions,
            sort,
        } => {
            let need = required.map(|r| {
                let mut n = r.clone();
                n.extend(by.columns().iter().cloned());
                n.extend(sort.iter().map(|(c, _)| c.clone()));
                n
            });
            Arc::new(Plan::Shuffle {
                input: prune(input, need.as_ref()),
                by: by.clone(),
                npartitions: *npartitions,
                sort: sort.clone(),
            })
        }
        Plan::SelectPartitions { input, partitions } => Arc::new(Plan::SelectPartitions {
            input: prune(input, required),
            partitions: partitions.clone(),
        }),
        Plan::TreeReduce {
            input,
            name,
            f,
            split_every,
        } => Arc::new(Plan::TreeReduce {
            // `f` may read any column.
            input: prune(input, None),
            name: name.clone(),
            f: f.clone(),
            split_every: *split_every,
        }),
        Plan::Join {
            left,
            right,
            spec,
            strategy,
            npartitions,
        } => {
            // The spec names columns by position: with fewer input columns it is
            // rebuilt over the pruned inputs (same output names, fewer columns).
            let pruned = required.and_then(|req| {
                let (l, r) = spec.input_columns(req);
                let (pl, pr) = (prune(left, Some(&l)), prune(right, Some(&r)));
                let rebuilt = spec.over(pl.schema(), pr.schema()).ok()?;
                Some((pl, pr, Arc::new(rebuilt)))
            });
            let (left, right, spec) =
                pruned.unwrap_or_else(|| (prune(left, None), prune(right, None), spec.clone()));
            Arc::new(Plan::Join {
                left,
                right,
                spec,
                strategy: *strategy,
                npartitions: *npartitions,
            })
        }
        Plan::WithIndex { input, index } => {
            let need = required.map(|r| {
                let mut n = r.clone();
                n.insert(index.column.clone());
                n
            });
            Arc::new(Plan::WithIndex {
                input: prune(input, need.as_ref()),
                index: index.clone(),
            })
        }
        Plan::Aggregate {
            input,
            plan: agg,
            split_every,
            split_out,
            sizing,
        } => {
            let need: BTreeSet<String> = agg.input_columns().into_iter().collect();
            Arc::new(Plan::Aggregate {
                input: prune(input, Some(&need)),
                plan: agg.clone(),
                split_every: *split_every,
                split_out: *split_out,
                sizing: *sizing,
            })
        }
        Plan::Node { inputs, node } => {
            let need = node.input_columns(required);
            let node = node.pruned(required).unwrap_or_else(|| node.clone());
            Arc::new(Plan::Node {
                inputs: inputs
                    .iter()
                    .zip(need)
                    .map(|(p, n)| prune(p, n.as_ref()))
                    .collect(),
                node,
            })
        }
    }
}

/// `plan` with `predicate` handed to its source, through filters and index
/// declarations (which keep every column), when the source can use it.
fn push_predicate(plan: &Arc<Plan>, predicate: &Expr) -> Option<Arc<Plan>> {
    Some(Arc::new(match plan.as_ref() {
        Plan::Node { inputs, node } if inputs.is_empty() => Plan::Node {
            inputs: Vec::new(),
            node: node.with_predicate(predicate)?,
        },
        Plan::Filter {
            input,
            predicate: p,
        } => Plan::Filter {
            input: push_predicate(input, predicate)?,
            predicate: p.clone(),
        },
        Plan::WithIndex { input, index } => Plan::WithIndex {
            input: push_predicate(input, predicate)?,
            index: index.clone(),
        },
        _ => return None,
    }))
}

static LAYER_ID: AtomicUsize = AtomicUsize::new(0);

/// A fresh layer name, `op-N`.
pub fn layer_name(op: &str) -> Arc<str> {
    format!("{op}-{}", LAYER_ID.fetch_add(1, Ordering::Relaxed)).into()
}

/// Adds one layer of tasks, task `i` waiting on `deps[i]` and running `make(i)`;
/// returns their keys. Every per-partition layer is made here.
pub(crate) fn task_layer(
    graph: &mut Graph,
    op: &str,
    deps: Vec<Vec<Key>>,
    make: &dyn Fn(usize) -> Arc<dyn Operator>,
) -> Vec<Key> {
    let name = layer_name(op);
    let tasks: Vec<Task> = deps
        .into_iter()
        .enumerate()
        .map(|(i, deps)| Task {
            key: Key::new(&name, i),
            deps,
            op: make(i),
        })
        .collect();
    let keys = tasks.iter().map(|t| t.key.clone()).collect();
    graph.add_layer(Layer { name, tasks });
    keys
}

/// Adds a reduction tree over `level`: `combine` tasks of `split_every` inputs each
/// until at most `split_every` remain, then one `finalize` task, whose key it
/// returns. Layers are named `<name>-combine` and `<name>-finalize`.
fn lower_tree(
    graph: &mut Graph,
    mut level: Vec<Key>,
    split_every: usize,
    name: &str,
    combine: &Arc<dyn Operator>,
    finalize: &Arc<dyn Operator>,
) -> Key {
    let split_every = split_every.max(2);
    while level.len() > split_every {
        let layer = layer_name(&format!("{name}-combine"));
        let tasks: Vec<Task> = level
            .chunks(split_every)
            .enumerate()
            .map(|(i, group)| Task {
                key: Key::new(&layer, i),
                deps: group.to_vec(),
                op: combine.clone(),
            })
            .collect();
        level = tasks.iter().map(|t| t.key.clone()).collect();
        graph.add_layer(Layer { name: layer, tasks });
    }
    let layer = layer_name(&format!("{name}-finalize"));
    let key = Key::new(&layer, 0);
    graph.add_layer(Layer {
        name: layer,
        tasks: vec![Task {
            key: key.clone(),
            deps: level,
            op: finalize.clone(),
        }],
    });
    key
}

/// Adds the writing half of a shuffle into `n` partitions: a writer per input
/// partition of each side (sides share the partition numbers, as the two inputs of a
/// join), then one barrier task that every reader waits on (n + m edges, not n × m).
/// Returns the first shuffle partition of each side and the barrier's key.
fn lower_shuffle_writes(
    graph: &mut Graph,
    ctx: &Arc<RunContext>,
    sides: &[(&[Key], &Partitioner)],
    n: usize,
) -> (Vec<usize>, Key) {
    let mut offsets = Vec::with_capacity(sides.len());
    let mut written = Vec::new();
    for (inputs, partitioner) in sides {
        let offset = ctx.reserve_shuffle_partitions(n);
        offsets.push(offset);
        let deps = inputs.iter().map(|k| vec![k.clone()]).collect();
        written.extend(task_layer(graph, "shuffle-write", deps, &|i| {
            Arc::new(ShuffleWrite {
                ctx: ctx.clone(),
                offset,
                n,
                partitioner: (*partitioner).clone(),
                writer: i as u64,
            })
        }));
    }
    (offsets, lower_barrier(graph, written))
}

/// One task that every reader of a shuffle waits on, itself waiting on every
/// writer: n + m edges instead of n × m. Its value is an empty marker.
pub(crate) fn lower_barrier(graph: &mut Graph, writers: Vec<Key>) -> Key {
    let name = layer_name("shuffle-barrier");
    let barrier = Key::new(&name, 0);
    graph.add_layer(Layer {
        name,
        tasks: vec![Task {
            key: barrier.clone(),
            deps: writers,
            op: FnOperator::new("shuffle-barrier", |_| Ok(Value::Pieces(Vec::new()))),
        }],
    });
    barrier
}

/// `n` tasks behind `barrier`, one per output partition of a shuffle; `make(p)` is
/// partition `p`'s reader. Returns their keys.
pub(crate) fn lower_readers(
    graph: &mut Graph,
    op: &str,
    n: usize,
    barrier: &Key,
    make: &dyn Fn(usize) -> Arc<dyn Operator>,
) -> Vec<Key> {
    task_layer(graph, op, vec![vec![barrier.clone()]; n], make)
}

/// One task gathering `inputs` (a broadcast side) and building its table.
fn lower_broadcast(graph: &mut Graph, inputs: Vec<Key>, op: BroadcastBuild) -> Key {
    let name = layer_name("broadcast-gather");
    let key = Key::new(&name, 0);
    graph.add_layer(Layer {
        name,
        tasks: vec![Task {
            key: key.clone(),
            deps: inputs,
            op: Arc::new(op),
        }],
    });
    key
}

fn lower_join(
    graph: &mut Graph,
    ctx: &Arc<RunContext>,
    left: &Plan,
    right: &Plan,
    spec: &Arc<JoinSpec>,
    strategy: JoinStrategy,
    npartitions: usize,
) -> Vec<Key> {
    let left_keys = lower(left, graph, ctx);
    let right_keys = lower(right, graph, ctx);
    // A broadcast side's table is built by the task that gathers it.
    let probes = match strategy {
        JoinStrategy::BroadcastRight => left_keys.len(),
        JoinStrategy::BroadcastLeft => right_keys.len(),
        _ => 0,
    };
    let table = Arc::new(SharedTable::new(probes));
    let mut gather = |keys: Vec<Key>, side: &Plan, key_columns: &[usize]| {
        lower_broadcast(
            graph,
            keys,
            BroadcastBuild {
                table: table.clone(),
                schema: side.schema(),
                keys: key_columns.to_vec(),
                limits: spec.limits(),
            },
        )
    };
    let pairs: Vec<(Key, Key)> = match strategy {
        JoinStrategy::PartitionWise => left_keys.into_iter().zip(right_keys).collect(),
        JoinStrategy::BroadcastRight => {
            let all = gather(right_keys, right, spec.right_keys());
            left_keys.into_iter().map(|k| (k, all.clone())).collect()
        }
        JoinStrategy::BroadcastLeft => {
            let all = gather(left_keys, left, spec.left_keys());
            right_keys.into_iter().map(|k| (all.clone(), k)).collect()
        }
        JoinStrategy::Shuffle => {
            let (lp, rp) = key_partitioners(spec);
            let (offsets, barrier) = lower_shuffle_writes(
                graph,
                ctx,
                &[(&left_keys, &lp), (&right_keys, &rp)],
                npartitions,
            );
            return lower_readers(graph, "shuffle-join", npartitions, &barrier, &|p| {
                Arc::new(ShuffleJoin {
                    ctx: ctx.clone(),
                    partitions: (offsets[0] + p, offsets[1] + p),
                    spec: spec.clone(),
                })
            });
        }
    };
    let op: Arc<dyn Operator> = match strategy {
        JoinStrategy::BroadcastLeft => Arc::new(JoinBroadcastLeft {
            spec: spec.clone(),
            table,
            ctx: ctx.clone(),
        }),
        JoinStrategy::BroadcastRight => Arc::new(JoinPartitions {
            spec: spec.clone(),
            broadcast: Some(table),
            ctx: ctx.clone(),
        }),
        _ => Arc::new(JoinPartitions {
            spec: spec.clone(),
            broadcast: None,
            ctx: ctx.clone(),
        }),
    };
    let deps = pairs.into_iter().map(|(l, r)| vec![l, r]).collect();
    task_layer(graph, "join", deps, &|_| op.clone())
}

/// Adds `plan`'s layers to `graph`; returns the key of each output partition.
/// Operators that count bytes or shuffle keep `ctx`, the computation's context.
pub fn lower(plan: &Plan, graph: &mut Graph, ctx: &Arc<RunContext>) -> Vec<Key> {
    let per_partition =
        |graph: &mut Graph, op: &str, inputs: &[Key], make: &dyn Fn(usize) -> Arc<dyn Operator>| {
            task_layer(
                graph,
                op,
                inputs.iter().map(|k| vec![k.clone()]).collect(),
                make,
            )
        };
    match plan {
        Plan::ReadCsv { source, projection } => {
            let name = layer_name("read-csv");
            let projection: Arc<[usize]> = match projection {
                Some(p) => p.clone().into(),
                None => (0..source.schema.fields().len()).collect::<Vec<_>>().into(),
            };
            let tasks: Vec<Task> = (0..source.blocks.len())
                .map(|i| Task {
                    key: Key::new(&name, i),
                    deps: vec![],
                    op: Arc::new(ReadCsvBlock {
                        source: source.clone(),
                        block: i,
                        projection: projection.clone(),
                        ctx: ctx.clone(),
                    }),
                })
                .collect();
            let keys = tasks.iter().map(|t| t.key.clone()).collect();
            graph.add_layer(Layer { name, tasks });
            keys
        }
        Plan::WithIndex { input, .. } => lower(input, graph, ctx),
        Plan::Node { inputs, node } => {
            let keys: Vec<Vec<Key>> = inputs.iter().map(|p| lower(p, graph, ctx)).collect();
            node.lower(&keys, graph, ctx)
        }
        Plan::Join {
            left,
            right,
            spec,
            strategy,
            npartitions,
        } => lower_join(graph, ctx, left, right, spec, *strategy, *npartitions),
        Plan::SelectPartitions { input, partitions } => {
            let inputs = lower(input, graph, ctx);
            partitions.iter().map(|&i| inputs[i].clone()).collect()
        }
        Plan::TreeReduce {
            input,
            name,
            f,
            split_every,
        } => {
            let inputs = lower(input, graph, ctx);
            let f = f.clone();
            let op: Arc<dyn Operator> = FnOperator::new(name.clone(), move |inputs| {
                let batches = inputs
                    .iter()
                    .map(|v| v.as_batch().cloned())
                    .collect::<Result<Vec<_>>>()?;
                Ok(Value::Batch(f(&batches)?))
            });
            vec![lower_tree(graph, inputs, *split_every, name, &op, &op)]
        }
        Plan::Shuffle {
            input,
            by,
            npartitions,
            sort,
        } => {
            let inputs = lower(input, graph, ctx);
            let schema = input.schema();
            let (offsets, barrier) =
                lower_shuffle_writes(graph, ctx, &[(&inputs, by)], *npartitions);
            let sort: Vec<(usize, SortOptions)> = sort
                .iter()
                .map(|(c, o)| (schema.index_of(c).expect("sort keys are checked"), *o))
                .collect();
            // A sort's output partitions each get a partition for their sorted runs.
            let runs = (!sort.is_empty()).then(|| ctx.reserve_shuffle_partitions(*npartitions));
            lower_readers(graph, "shuffle-gather", *npartitions, &barrier, &|p| {
                Arc::new(ShuffleGather {
                    ctx: ctx.clone(),
                    partition: offsets[0] + p,
                    schema: schema.clone(),
                    sort: sort.clone(),
                    runs: runs.map(|r| r + p),
                })
            })
        }
        Plan::Filter { input, predicate } => {
            let inputs = lower(input, graph, ctx);
            let op: Arc<dyn Operator> = Arc::new(FilterOp {
                predicate: predicate.clone(),
            });
            per_partition(graph, "filter", &inputs, &|_| op.clone())
        }
        Plan::Project {
            input,
            exprs,
            schema,
        } => {
            let inputs = lower(input, graph, ctx);
            let op: Arc<dyn Operator> = Arc::new(ProjectOp {
                exprs: exprs.clone(),
                schema: schema.clone(),
            });
            per_partition(graph, "project", &inputs, &|_| op.clone())
        }
        Plan::MapPartitions { input, f, schema } => {
            let inputs = lower(input, graph, ctx);
            let op: Arc<dyn Operator> = Arc::new(MapOp {
                f: f.clone(),
                schema: schema.clone(),
            });
            per_partition(graph, "map-partitions", &inputs, &|_| op.clone())
        }
        Plan::Aggregate {
            input,
            plan: agg,
            split_every: _,
            split_out: Some(split_out),
            sizing: _,
        } if *split_out > 1 => {
            let inputs = lower(input, graph, ctx);
            let chunk: Arc<dyn Operator> = Arc::new(AggChunk { plan: agg.clone() });
            let partials = per_partition(graph, "agg-chunk", &inputs, &|_| chunk.clone());
            let partitioner = Partitioner::Hash {
                keys: agg.keys.clone(),
            };
            let (offsets, barrier) =
                lower_shuffle_writes(graph, ctx, &[(&partials, &partitioner)], *split_out);
            lower_readers(graph, "shuffle-agg-finalize", *split_out, &barrier, &|p| {
                Arc::new(ShuffleAggFinalize {
                    ctx: ctx.clone(),
                    partition: offsets[0] + p,
                    plan: agg.clone(),
                })
            })
        }
        Plan::Aggregate {
            input,
            plan: agg,
            split_every: _,
            split_out: None,
            sizing,
        } if !agg.keys.is_empty() => {
            let inputs = lower(input, graph, ctx);
            radix::lower(graph, &inputs, agg.clone(), *sizing, ctx)
        }
        Plan::Aggregate {
            input,
            plan: agg,
            split_every,
            ..
        } => {
            let inputs = lower(input, graph, ctx);
            let chunk: Arc<dyn Operator> = Arc::new(AggChunk { plan: agg.clone() });
            let level = per_partition(graph, "agg-chunk", &inputs, &|_| chunk.clone());
            let combine: Arc<dyn Operator> = Arc::new(AggCombine { plan: agg.clone() });
            let finalize: Arc<dyn Operator> = Arc::new(AggFinalize { plan: agg.clone() });
            vec![lower_tree(
                graph,
                level,
                *split_every,
                "agg",
                &combine,
                &finalize,
            )]
        }
    }
}

//! The task graph: what to compute, as Dask's `(name, index)` keys and typed tasks.
//!
//! A [`Task`] runs one [`Operator`] over the results of the tasks it depends on and
//! gives one [`Value`]: an Arrow batch, JSON records, a scalar, or a list of pieces.
//! Tasks come in [`Layer`]s (one per operation, one task per partition, as Dask's
//! high-level graphs), and a [`Graph`] is a list of layers. Before it runs, a graph
//! is compiled ([`Graph::compile`]) into an [`ExecGraph`]:
//!
//! ```text
//!   layers ──flatten──► tasks ──cull──► needed tasks ──fuse──► chains ──order──► priorities
//! ```
//!
//! `cull` keeps what the requested keys need; `fuse` joins linear chains
//! (read → filter → partial aggregate) into one task so their intermediates never
//! meet the scheduler; `order` numbers tasks so that one branch finishes before the
//! next starts and intermediates are freed early (the idea of `dask.order`).

mod codec;
mod dot;
mod optimize;
mod order;

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion_common::ScalarValue;

use crate::error::{Error, Result};

pub use optimize::ExecGraph;

/// The most partitions a collection (or a shuffle) may have: a task per partition
/// per layer, each a few hundred bytes of graph, so 2^20 partitions already make a
/// graph of hundreds of MB. Counts the user picks (`npartitions`, `split_out`,
/// `blocksize`, `freq`) are checked against it when the query is built.
pub const MAX_PARTITIONS: usize = 1 << 20;

/// An error for `op` when `n` partitions (counted as `what` says) exceed
/// [`MAX_PARTITIONS`]; `hint` says what to change.
pub fn check_partitions(op: &'static str, what: &str, n: usize, hint: &str) -> Result<()> {
    if n > MAX_PARTITIONS {
        return Err(Error::plan(
            op,
            format!("{what} makes {n} partitions, more than the limit of {MAX_PARTITIONS}; {hint}"),
        ));
    }
    Ok(())
}

/// A task's name: the layer it belongs to and its index there, as Dask's
/// `("read-csv-3f2a", 7)`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The layer's name.
    pub name: Arc<str>,
    /// The partition (or other index) within the layer.
    pub index: usize,
}

impl Key {
    /// The key `(name, index)`.
    pub fn new(name: &Arc<str>, index: usize) -> Key {
        Key {
            name: name.clone(),
            index,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "('{}', {})", self.name, self.index)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The result of a task.
#[derive(Debug, Clone)]
pub enum Value {
    /// A partition of a frame, or a partial aggregate.
    Batch(RecordBatch),
    /// A partition of a bag.
    Records(Vec<serde_json::Value>),
    /// One value (a count, a sum).
    Scalar(ScalarValue),
    /// Several values, as a task that splits its output or gathers its inputs makes.
    Pieces(Vec<Value>),
}

impl Value {
    /// The bytes this value holds in memory: Arrow's own count for batches, an estimate
    /// for JSON records. The scheduler's memory accounting rests on this.
    pub fn size_bytes(&self) -> usize {
        match self {
            Value::Batch(b) => outcore_storage::measure::batch_bytes(b),
            Value::Records(r) => r.iter().map(json_size).sum::<usize>() + r.capacity() * 32,
            Value::Scalar(s) => s.size(),
            Value::Pieces(p) => p.iter().map(Value::size_bytes).sum(),
        }
    }

    /// Rows of a batch, records of a bag partition, one for a scalar; the sum
    /// over pieces.
    pub fn num_rows(&self) -> usize {
        match self {
            Value::Batch(b) => b.num_rows(),
            Value::Records(r) => r.len(),
            Value::Scalar(_) => 1,
            Value::Pieces(p) => p.iter().map(Value::num_rows).sum(),
        }
    }

    /// The batch inside, or an internal error naming what was found instead.
    pub fn as_batch(&self) -> Result<&RecordBatch> {
        match self {
            Value::Batch(b) => Ok(b),
            other => Err(crate::error::Error::Internal(format!(
                "expected a batch, found {}",
                other.kind()
            ))),
        }
    }

    /// A one-word description of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Batch(_) => "batch",
            Value::Records(_) => "records",
            Value::Scalar(_) => "scalar",
            Value::Pieces(_) => "pieces",
        }
    }
}

fn json_size(v: &serde_json::Value) -> usize {
    use serde_json::Value as J;
    32 + match v {
        J::String(s) => s.capacity(),
        J::Array(a) => a.iter().map(json_size).sum(),
        J::Object(o) => o
            .iter()
            .map(|(k, v)| k.capacity() + 32 + json_size(v))
            .sum(),
        _ => 0,
    }
}

/// How an operator takes part in a stream of batches, so that a value too big to
/// hold (a join's output) never exists whole: the scheduler runs a fused chain
/// `Source → Map* → Fold` batch by batch (see `run_chain` in the scheduler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streaming {
    /// Needs its input whole (the default).
    No,
    /// Can give its value as batches through [`Operator::run_stream`] (a join).
    Source,
    /// Maps each batch on its own (filter, project): `run` once per batch.
    Map,
    /// Folds batches: `run` once per batch, then [`Operator::merge`] over the values
    /// (an aggregation's chunk step, a shuffle write).
    Fold,
}

/// What a task does. Implementations are typed Rust operators over Arrow data.
///
/// `run` is called once per task, on any worker thread, with the results of the
/// task's dependencies in the order the task lists them. It must not block on other
/// tasks. A panic is caught by the scheduler and reported as an error naming the task.
pub trait Operator: Send + Sync {
    /// A short name for graph pictures and errors (`read-csv`, `filter`, `agg-chunk`).
    fn name(&self) -> &str;
    /// Computes the task's value.
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value>;
    /// The bytes a task starting with this operator is expected to need, when the
    /// operator can tell before it runs (a read knows its block and its columns);
    /// the scheduler admits the task with it before it has measured any.
    fn working_bytes(&self) -> Option<u64> {
        None
    }
    /// The bytes a task starting with this operator needs beyond its inputs, whose
    /// values take `inputs` bytes: by default as much again (a merge or a filter
    /// makes a value about its inputs' size). An operator that only picks a piece
    /// of its input (its buffers shared) needs none.
    fn working_bytes_beyond(&self, inputs: u64) -> u64 {
        inputs
    }
    /// How the operator streams (default: it does not).
    fn streaming(&self) -> Streaming {
        Streaming::No
    }
    /// For a [`Streaming::Source`]: the value `run` would give, as a sequence of at
    /// least one batch handed to `emit` in order (their concatenation is `run`'s
    /// batch). An error from `emit` stops the stream and is returned.
    fn run_stream(
        &self,
        inputs: &[Arc<Value>],
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        emit(self.run(inputs)?.as_batch()?.clone())
    }
    /// For a [`Streaming::Fold`]: one value from the values `run` gave for the
    /// batches of one stream (at least one, in order); must be associative.
    fn merge(&self, values: Vec<Value>) -> Result<Value> {
        let _ = values;
        Err(Error::Internal(format!(
            "operator {} cannot merge streamed values",
            self.name()
        )))
    }
}

/// An operator from a closure, for tests and one-off tasks.
pub struct FnOperator<F> {
    name: String,
    f: F,
}

impl<F> FnOperator<F>
where
    F: Fn(&[Arc<Value>]) -> Result<Value> + Send + Sync,
{
    /// An operator named `name` that runs `f`.
    pub fn new(name: impl Into<String>, f: F) -> Arc<Self> {
        Arc::new(FnOperator {
            name: name.into(),
            f,
        })
    }
}

impl<F> Operator for FnOperator<F>
where
    F: Fn(&[Arc<Value>]) -> Result<Value> + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        (self.f)(inputs)
    }
}

/// One task: its key, the keys it needs, and what it does.
#[derive(Clone)]
pub struct Task {
    /// The task's key.
    pub key: Key,
    /// The keys whose values `op` receives, in this order.
    pub deps: Vec<Key>,
    /// What the task does.
    pub op: Arc<dyn Operator>,
}

/// The tasks one operation adds: usually one per partition.
pub struct Layer {
    /// The layer's name; every task's key has it.
    pub name: Arc<str>,
    /// The tasks.
    pub tasks: Vec<Task>,
}

/// A task graph: layers that together say how to compute every key.
#[derive(Clone, Default)]
pub struct Graph {
    layers: Vec<Arc<Layer>>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Adds a layer. Layers may depend on any layer added before them.
    pub fn add_layer(&mut self, layer: Layer) {
        self.layers.push(Arc::new(layer));
    }

    /// The layers, in the order they were added.
    pub fn layers(&self) -> &[Arc<Layer>] {
        &self.layers
    }

    /// Number of tasks over all layers.
    pub fn len(&self) -> usize {
        self.layers.iter().map(|l| l.tasks.len()).sum()
    }

    /// True when the graph has no tasks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Culls, fuses and orders the graph for computing `outputs`.
    pub fn compile(&self, outputs: &[Key]) -> Result<ExecGraph> {
        self.compile_shared(outputs, &[])
    }

    /// [`compile`](Self::compile), where the tasks of `shared` are an input that
    /// several outputs read: each such task's dependents run as soon as they can,
    /// so that it is let go early (see [`order`]).
    pub fn compile_shared(&self, outputs: &[Key], shared: &[Key]) -> Result<ExecGraph> {
        let mut g = optimize::flatten_and_cull(self, outputs)?;
        g.fuse();
        // No marks (every task walked as usual) unless some task is shared.
        let marks: Vec<bool> = if shared.is_empty() {
            Vec::new()
        } else {
            let shared: std::collections::HashSet<&Key> = shared.iter().collect();
            g.tasks
                .iter()
                .map(|t| t.live && shared.contains(&t.key))
                .collect()
        };
        order::assign_priorities(&mut g, &marks);
        Ok(g)
    }

    /// The graph in Graphviz DOT: one node per task, with its operator's name.
    pub fn to_dot(&self) -> String {
        dot::to_dot(self)
    }
}

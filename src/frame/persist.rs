//! `persist()`: runs a frame once and keeps its partitions in the session's spill
//! cache, so later queries start from them instead of the files. The persisted
//! frame's plan is one source node whose graph is one task per partition, each
//! reading its partition back from the cache (from memory, or from disk when the
//! cache paged it out: a persisted frame may be larger than the memory limit).
//!
//! Also home of [`DataFrame::from_node`], how other sources (the generated
//! `timeseries()`, Parquet folders) become frames.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use outcore_storage::spill::SpillCache;

use super::plan::{layer_name, Index, Plan, PlanNode};
use super::DataFrame;
use crate::error::{Error, Result};
use crate::graph::{FnOperator, Graph, Key, Layer, Task, Value};
use crate::scheduler::{RunContext, RunStats};
use crate::session::Session;

/// Keys of persisted partitions, unique within the process.
static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

/// The partitions of a persisted frame; they leave the cache when the last frame
/// using them is dropped.
struct Persisted {
    cache: Arc<SpillCache<Value>>,
    keys: Vec<u64>,
    schema: SchemaRef,
    index: Option<Index>,
}

impl Drop for Persisted {
    fn drop(&mut self) {
        for &k in &self.keys {
            self.cache.remove(k);
        }
    }
}

struct PersistedNode(Arc<Persisted>);

impl PlanNode for PersistedNode {
    fn name(&self) -> &str {
        "persisted"
    }
    fn schema(&self, _inputs: &[SchemaRef]) -> SchemaRef {
        self.0.schema.clone()
    }
    fn npartitions(&self, _inputs: &[usize]) -> usize {
        self.0.keys.len()
    }
    fn index(&self) -> Option<Index> {
        self.0.index.clone()
    }
    fn input_columns(&self, _required: Option<&BTreeSet<String>>) -> Vec<Option<BTreeSet<String>>> {
        Vec::new()
    }
    fn lower(&self, _inputs: &[Vec<Key>], graph: &mut Graph, _ctx: &Arc<RunContext>) -> Vec<Key> {
        let name = layer_name("persisted");
        let tasks: Vec<Task> = self
            .0
            .keys
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                let data = self.0.clone();
                Task {
                    key: Key::new(&name, i),
                    deps: vec![],
                    op: FnOperator::new("persisted", move |_| {
                        let v = data.cache.get(k)?.ok_or_else(|| {
                            Error::Internal(format!("persisted partition {i} is missing"))
                        })?;
                        Ok(v.as_ref().clone())
                    }),
                }
            })
            .collect();
        let keys = tasks.iter().map(|t| t.key.clone()).collect();
        graph.add_layer(Layer { name, tasks });
        keys
    }
}

impl DataFrame {
    /// A frame whose plan is `node` (a source, or an operation over `inputs`).
    pub(crate) fn from_node(
        session: &Session,
        inputs: Vec<Arc<Plan>>,
        node: Arc<dyn PlanNode>,
    ) -> DataFrame {
        let plan = Arc::new(Plan::Node { inputs, node });
        DataFrame {
            schema: plan.schema(),
            plan,
            session: session.clone(),
        }
    }

    /// This frame's plan with `node` on top.
    pub(crate) fn with_node(&self, node: Arc<dyn PlanNode>) -> DataFrame {
        DataFrame::from_node(&self.session, vec![self.plan.clone()], node)
    }

    /// Runs the frame and keeps its partitions in the session's spill cache; the
    /// frame returned reads them from there (one task per partition), keeping the
    /// index and divisions. Queries on it read no input files again.
    ///
    /// ```no_run
    /// # let session = outcore::Session::new()?;
    /// let df = session.read_csv("data/ts/*.csv").load()?.persist()?;
    /// let (n, mean) = (df.num_rows()?, df.agg(&[outcore::agg::mean("x")])?.compute()?);
    /// # Ok::<(), outcore::Error>(())
    /// ```
    pub fn persist(&self) -> Result<DataFrame> {
        Ok(self.persist_with_stats()?.0)
    }

    /// [`persist`](Self::persist), and what the run did; `spilled_bytes` includes
    /// what the persist cache paged out to hold the partitions.
    pub fn persist_with_stats(&self) -> Result<(DataFrame, RunStats)> {
        let cache = self.session.persist_cache()?;
        let before = cache.stats().spilled_bytes;
        let n = self.npartitions();
        let first = NEXT_KEY.fetch_add(n as u64, Ordering::Relaxed);
        let data = Arc::new(Persisted {
            cache: cache.clone(),
            keys: (first..first + n as u64).collect(),
            schema: self.schema.clone(),
            index: self.plan.index(),
        });
        let mut stats = self.for_each_partition(&|i, batch| {
            cache.put(first + i as u64, Arc::new(Value::Batch(batch.clone())))?;
            Ok(())
        })?;
        stats.spilled_bytes += cache.stats().spilled_bytes - before;
        Ok((
            DataFrame::from_node(&self.session, Vec::new(), Arc::new(PersistedNode(data))),
            stats,
        ))
    }
}

//! Several answers of one frame from one run, as Dask's `compute(a, b, c)`:
//! [`DataFrame::for_each_answer`] lowers the frame once, builds every answer on
//! top of the same partition tasks and runs them all as one task graph. The input
//! is read once and streams: a partition is let go once every answer has used it,
//! so nothing is held whole (unlike `persist()`, which keeps every partition).
//!
//! ```text
//!   read ─► index ─┬─► answer 1's tasks ─► sink(0, i, batch)
//!                  ├─► answer 2's tasks ─► sink(1, i, batch)
//!                  └─► answer 3's tasks ─► sink(2, i, batch)
//! ```
//!
//! The shared input keeps only the columns some answer reads: each answer is
//! first built on a probe source that records what it is asked for when pruned,
//! then built again on the shared, pruned input.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use super::plan::{self, Index, PlanNode};
use super::{run_stats, DataFrame};
use crate::error::{Error, Result};
use crate::graph::{Graph, Key, Value};
use crate::scheduler::{RunContext, RunStats};

/// Builds one answer from the shared input.
pub type Answer<'a> = dyn Fn(&DataFrame) -> Result<DataFrame> + 'a;

/// The shared input as a source: its tasks are already in the graph.
struct Shared {
    schema: SchemaRef,
    npartitions: usize,
    index: Option<Index>,
    /// The columns answers asked for when pruned; `None` once one asked for all.
    asked: Mutex<Option<BTreeSet<String>>>,
    /// The input's partition keys, once it is lowered.
    keys: OnceLock<Vec<Key>>,
}

impl PlanNode for Shared {
    fn name(&self) -> &str {
        "shared"
    }
    fn schema(&self, _inputs: &[SchemaRef]) -> SchemaRef {
        self.schema.clone()
    }
    fn npartitions(&self, _inputs: &[usize]) -> usize {
        self.npartitions
    }
    fn index(&self) -> Option<Index> {
        self.index.clone()
    }
    fn pruned(&self, required: Option<&BTreeSet<String>>) -> Option<Arc<dyn PlanNode>> {
        let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        match (asked.as_mut(), required) {
            (Some(set), Some(r)) => set.extend(r.iter().cloned()),
            _ => *asked = None,
        }
        None
    }
    fn input_columns(&self, _required: Option<&BTreeSet<String>>) -> Vec<Option<BTreeSet<String>>> {
        Vec::new()
    }
    fn lower(&self, _inputs: &[Vec<Key>], _graph: &mut Graph, _ctx: &Arc<RunContext>) -> Vec<Key> {
        self.keys
            .get()
            .cloned()
            .expect("the shared input is lowered before the answers")
    }
}

impl Shared {
    fn new(schema: SchemaRef, npartitions: usize, index: Option<Index>) -> Arc<Shared> {
        Arc::new(Shared {
            schema,
            npartitions,
            index,
            asked: Mutex::new(Some(BTreeSet::new())),
            keys: OnceLock::new(),
        })
    }
}

impl DataFrame {
    /// Makes each of `answers` from this frame in one run, reading the input once,
    /// and hands every partition of every answer to `sink(answer, partition,
    /// batch)`: answer by answer, each in partition order, as soon as it and
    /// everything before it are done (later answers' partitions that finish first
    /// wait in the spill cache, counted in the memory account).
    ///
    /// ```no_run
    /// # let session = outcore::Session::new()?;
    /// use outcore::agg::{max, mean};
    /// let df = session.read_csv("data/ts/*.csv").load()?.set_index_sorted("timestamp")?;
    /// let hourly = |d: &outcore::DataFrame| d.resample("1h")?.agg(&[mean("x")]);
    /// let daily = |d: &outcore::DataFrame| d.resample("1D")?.agg(&[max("x")]);
    /// df.for_each_answer(&[&hourly, &daily], &|answer, part, batch| {
    ///     println!("answer {answer}, partition {part}: {} rows", batch.num_rows());
    ///     Ok(())
    /// })?;
    /// # Ok::<(), outcore::Error>(())
    /// ```
    pub fn for_each_answer(
        &self,
        answers: &[&Answer<'_>],
        sink: &(dyn Fn(usize, usize, &RecordBatch) -> Result<()> + Sync),
    ) -> Result<RunStats> {
        Ok(self.run_answers(answers, sink)?.1)
    }

    /// [`for_each_answer`](Self::for_each_answer), also returning the answers'
    /// frames as built on the shared input.
    fn run_answers(
        &self,
        answers: &[&Answer<'_>],
        sink: &(dyn Fn(usize, usize, &RecordBatch) -> Result<()> + Sync),
    ) -> Result<(Vec<DataFrame>, RunStats)> {
        // What the answers read of the input.
        let probe = Shared::new(self.schema(), self.npartitions(), self.plan.index());
        let probe_df = DataFrame::from_node(&self.session, Vec::new(), probe.clone());
        for answer in answers {
            plan::prune(&answer(&probe_df)?.plan, None);
        }
        let mut required = probe
            .asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let (Some(r), Some(ix)) = (required.as_mut(), self.plan.index()) {
            r.insert(ix.column);
        }

        let ctx = self.session.run_context();
        let mut graph = Graph::new();
        let input = plan::prune(&self.plan, required.as_ref());
        let shared = Shared::new(input.schema(), input.npartitions(), input.index());
        let keys = plan::lower(&input, &mut graph, &ctx);
        if keys.len() != shared.npartitions {
            return Err(Error::Internal(format!(
                "the shared input made {} partitions, expected {}",
                keys.len(),
                shared.npartitions
            )));
        }
        let _ = shared.keys.set(keys.clone());
        let input_df = DataFrame::from_node(&self.session, Vec::new(), shared);
        // Output n of the run is partition n - starts[a] of answer a.
        let mut outputs = Vec::new();
        let mut starts = Vec::with_capacity(answers.len());
        let mut frames = Vec::with_capacity(answers.len());
        for answer in answers {
            let frame = answer(&input_df)?;
            let pruned = plan::prune(&frame.plan, None);
            starts.push(outputs.len());
            outputs.extend(plan::lower(&pruned, &mut graph, &ctx));
            frames.push(frame);
        }
        let exec = graph.compile_shared(&outputs, &keys)?;
        drop(graph);
        let stats = self
            .session
            .executor()
            .with_run_context(ctx.clone())
            .run_streaming(&exec, &|n, v| {
                let a = starts.partition_point(|&s| s <= n) - 1;
                match v.as_ref() {
                    Value::Batch(b) => sink(a, n - starts[a], b),
                    other => Err(Error::Internal(format!(
                        "a frame partition is {}",
                        other.kind()
                    ))),
                }
            })?;
        Ok((frames, run_stats(stats, &ctx)))
    }

    /// Each of `answers` made from this frame in one run (reading the input once),
    /// gathered into one batch each, as Dask's `compute(a, b, c)`.
    pub fn compute_each(&self, answers: &[&Answer<'_>]) -> Result<Vec<RecordBatch>> {
        let parts: Mutex<Vec<Vec<RecordBatch>>> = Mutex::new(vec![Vec::new(); answers.len()]);
        let (frames, _) = self.run_answers(answers, &|a, _, batch| {
            parts.lock().unwrap_or_else(|p| p.into_inner())[a].push(batch.clone());
            Ok(())
        })?;
        let parts = parts.into_inner().unwrap_or_else(|p| p.into_inner());
        // Gathered as each answer's own compute() would (a radix groupby's sorted
        // parts are merged by key).
        frames
            .iter()
            .zip(parts)
            .map(|(frame, parts)| frame.gather(parts))
            .collect()
    }
}

//! `DataFrame`: a lazy, partitioned frame. A frame is a cheap handle (the session,
//! a logical [`Plan`] and its schema); operations check their arguments against the
//! schema at once, so mistakes surface where they are written, and add a plan node.
//! Nothing is read until `compute`, `head`, `count` and friends run the plan.

pub mod distinct;
pub mod each;
pub mod explain;
pub mod grouped;
pub mod join;
pub mod ops;
pub mod ordering;
pub mod partitioning;
pub mod plan;
// Time series and reuse (issue #6): each file adds its own `impl DataFrame` block.
pub mod parquet;
pub mod persist;
pub mod read;
pub mod repartition;
pub mod resample;
pub mod rolling;
pub mod sorter;
pub mod timerule;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow::compute::{concat_batches, SortOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

pub use grouped::{GroupedResampler, GroupedRolling};
pub use join::{How, JoinStrategy, MergeOptions};
pub use ordering::SetIndexOptions;
pub use plan::{Index, PartitionFn, Plan, PlanNode, ReduceFn};
pub use read::{Format, ReadBuilder};

use crate::agg::{AggFunc, AggSpec, AggregatePlan};
use crate::error::{Error, Result};
use crate::expr::{col, Expr};
use crate::graph::{Graph, Value};
use crate::io::CsvSource;
use crate::scheduler::{RunContext, RunStats};
use crate::session::Session;

/// A lazy, partitioned frame of Arrow record batches.
#[derive(Clone)]
pub struct DataFrame {
    session: Session,
    plan: Arc<Plan>,
    schema: SchemaRef,
}

impl std::fmt::Debug for DataFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DataFrame(npartitions={}, schema={:?})",
            self.npartitions(),
            self.schema
        )
    }
}

impl DataFrame {
    pub(crate) fn from_csv(session: Session, source: Arc<CsvSource>) -> DataFrame {
        let plan = Arc::new(Plan::ReadCsv {
            source,
            projection: None,
        });
        DataFrame {
            schema: plan.schema(),
            plan,
            session,
        }
    }

    fn with_plan(&self, plan: Plan) -> DataFrame {
        let plan = Arc::new(plan);
        DataFrame {
            schema: plan.schema(),
            plan,
            session: self.session.clone(),
        }
    }

    /// The columns and their types.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The column names.
    pub fn columns(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// Number of partitions.
    pub fn npartitions(&self) -> usize {
        self.plan.npartitions()
    }

    /// The index column's name, when the frame has one.
    pub fn index_column(&self) -> Option<String> {
        self.plan.index().map(|ix| ix.column)
    }

    /// The frame's divisions (`npartitions + 1` boundaries of the index), when
    /// known.
    pub fn divisions(&self) -> Option<Vec<datafusion_common::ScalarValue>> {
        self.plan.index()?.divisions.map(|d| d.to_vec())
    }

    /// True when the frame has an index with known divisions.
    pub fn known_divisions(&self) -> bool {
        self.plan.index().is_some_and(|ix| ix.divisions.is_some())
    }

    /// The same rows, declared indexed by `index` (no tasks are added). The caller
    /// vouches for the order.
    pub(crate) fn with_index(&self, index: Index) -> DataFrame {
        self.with_plan(Plan::WithIndex {
            input: self.plan.clone(),
            index,
        })
    }

    /// These partitions only, in this order; the others are never computed.
    pub(crate) fn select_partitions(&self, partitions: Vec<usize>) -> DataFrame {
        self.with_plan(Plan::SelectPartitions {
            input: self.plan.clone(),
            partitions: partitions.into(),
        })
    }

    /// One partition, merged from all by a tree of `f` (the session's
    /// `split_every` inputs at a time); `f` must keep the schema.
    pub(crate) fn tree_reduce(&self, name: &str, f: ReduceFn) -> DataFrame {
        self.with_plan(Plan::TreeReduce {
            input: self.plan.clone(),
            name: name.to_string(),
            f,
            split_every: self.session.split_every(),
        })
    }

    /// Runs `op` on every partition and returns its values, in partition order
    /// (for passes that learn something about the data, as set_index's sampling).
    pub(crate) fn run_per_partition(
        &self,
        name: &str,
        op: Arc<dyn crate::graph::Operator>,
    ) -> Result<Vec<Arc<Value>>> {
        let pruned = plan::prune(&self.plan, None);
        let ctx = self.session.run_context();
        let mut graph = Graph::new();
        let inputs = plan::lower(&pruned, &mut graph, &ctx);
        let layer: Arc<str> = format!("{name}-{}", graph.len()).into();
        let tasks: Vec<crate::graph::Task> = inputs
            .iter()
            .enumerate()
            .map(|(i, k)| crate::graph::Task {
                key: crate::graph::Key::new(&layer, i),
                deps: vec![k.clone()],
                op: op.clone(),
            })
            .collect();
        let keys: Vec<_> = tasks.iter().map(|t| t.key.clone()).collect();
        graph.add_layer(crate::graph::Layer { name: layer, tasks });
        let exec = graph.compile(&keys)?;
        drop(graph);
        Ok(self.session.executor().run(&exec)?.0)
    }

    /// Where row `row` of partition `partition` comes from, for error messages:
    /// file and line when the partition is a CSV block read as is, else the
    /// partition and row.
    pub(crate) fn locate_row(&self, partition: usize, row: usize) -> String {
        fn source(p: &Plan) -> Option<&Arc<CsvSource>> {
            match p {
                Plan::ReadCsv { source, .. } => Some(source),
                Plan::Project { input, .. } | Plan::WithIndex { input, .. } => source(input),
                _ => None,
            }
        }
        let fallback = format!("partition {partition}, row {}", row + 1);
        match source(&self.plan).and_then(|s| s.line_of(partition, row).ok()) {
            Some((path, line)) => format!("{}, line {line} ({fallback})", path.display()),
            None => fallback,
        }
    }

    /// The session this frame belongs to.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Rows where `predicate` is true; a null counts as false.
    pub fn filter(&self, predicate: Expr) -> Result<DataFrame> {
        let t = predicate.data_type(&self.schema)?;
        if t != DataType::Boolean && t != DataType::Null {
            return Err(Error::plan(
                "filter",
                format!("`{predicate}` is {t}, not a boolean condition"),
            ));
        }
        Ok(self.with_plan(Plan::Filter {
            input: self.plan.clone(),
            predicate,
        }))
    }

    /// Rows where the expression string is true: `df.query("y > 0 and name != 'Bob'")`.
    pub fn query(&self, predicate: &str) -> Result<DataFrame> {
        self.filter(crate::expr::parse(predicate)?)
    }

    /// These columns, in this order.
    pub fn select<S: AsRef<str>>(&self, columns: &[S]) -> Result<DataFrame> {
        self.select_exprs(
            columns
                .iter()
                .map(|c| (col(c.as_ref()), c.as_ref().to_string()))
                .collect(),
        )
    }

    /// Columns computed from expressions, each with its name.
    pub fn select_exprs(&self, exprs: Vec<(Expr, String)>) -> Result<DataFrame> {
        let mut fields = Vec::with_capacity(exprs.len());
        for (e, name) in &exprs {
            if fields.iter().any(|f: &Field| f.name() == name) {
                return Err(Error::plan(
                    "select",
                    format!("column {name:?} is selected twice"),
                ));
            }
            fields.push(Field::new(name, e.data_type(&self.schema)?, true));
        }
        let schema = Arc::new(Schema::new(fields));
        Ok(self.with_plan(Plan::Project {
            input: self.plan.clone(),
            exprs,
            schema,
        }))
    }

    /// Adds (or replaces) column `name` computed by `expr`.
    pub fn with_column(&self, name: &str, expr: Expr) -> Result<DataFrame> {
        let mut exprs: Vec<(Expr, String)> = Vec::new();
        let mut replaced = false;
        for f in self.schema.fields() {
            if f.name() == name {
                exprs.push((expr.clone(), name.to_string()));
                replaced = true;
            } else {
                exprs.push((col(f.name()), f.name().clone()));
            }
        }
        if !replaced {
            exprs.push((expr, name.to_string()));
        }
        self.select_exprs(exprs)
    }

    /// Applies `f` to every partition; `schema` is what `f` returns (checked per
    /// partition).
    pub fn map_partitions(
        &self,
        schema: SchemaRef,
        f: impl Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync + 'static,
    ) -> DataFrame {
        self.with_plan(Plan::MapPartitions {
            input: self.plan.clone(),
            f: Arc::new(f),
            schema,
        })
    }

    /// Groups by these key columns; finish with [`GroupBy::agg`].
    pub fn groupby<S: AsRef<str>>(&self, keys: &[S]) -> Result<GroupBy> {
        let keys: Vec<String> = keys.iter().map(|k| k.as_ref().to_string()).collect();
        for k in &keys {
            crate::expr::column_type(&self.schema, k)?;
        }
        if keys.is_empty() {
            return Err(Error::plan("groupby", "give at least one key column"));
        }
        Ok(GroupBy {
            frame: self.clone(),
            keys,
            dropna: true,
            sort: true,
            split_every: self.session.split_every(),
            split_out: None,
        })
    }

    /// Whole-frame aggregations, one row: `df.agg(&[sum("x"), mean("y")])`.
    pub fn agg(&self, aggs: &[AggSpec]) -> Result<DataFrame> {
        let plan = AggregatePlan::new(&self.schema, Vec::new(), aggs.to_vec(), false, false)?;
        Ok(self.with_plan(Plan::Aggregate {
            input: self.plan.clone(),
            plan: Arc::new(plan),
            split_every: self.session.split_every(),
            // One group: the tree.
            split_out: Some(1),
            sizing: self.session.radix_sizing(),
        }))
    }

    /// Whole-frame aggregations and expressions over them, one row (an `--agg`
    /// list, see [`parse_agg_list`](crate::agg::exprs::parse_agg_list)).
    pub fn agg_list(&self, list: &crate::agg::exprs::AggList) -> Result<DataFrame> {
        self.agg(&list.aggs)?.project_agg_exprs(&[], list)
    }

    /// After an aggregation: the keys, then `list`'s expressions (if any).
    fn project_agg_exprs(
        &self,
        keys: &[String],
        list: &crate::agg::exprs::AggList,
    ) -> Result<DataFrame> {
        let Some(exprs) = &list.exprs else {
            return Ok(self.clone());
        };
        let mut out: Vec<(Expr, String)> = keys.iter().map(|k| (col(k), k.clone())).collect();
        out.extend(exprs.iter().cloned());
        self.select_exprs(out)
    }

    /// Runs the plan and returns every partition, in order.
    pub fn compute_partitions(&self) -> Result<(Vec<RecordBatch>, RunStats)> {
        let n = self.npartitions();
        self.compute_some(0..n)
    }

    fn compute_some(&self, parts: std::ops::Range<usize>) -> Result<(Vec<RecordBatch>, RunStats)> {
        let gathered = std::sync::Mutex::new(Vec::with_capacity(parts.len()));
        let stats = self.run_some(parts, &|_, batch| {
            gathered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(batch.clone());
            Ok(())
        })?;
        Ok((
            gathered.into_inner().unwrap_or_else(|p| p.into_inner()),
            stats,
        ))
    }

    /// Runs the plan and hands each partition to `sink` with its number, in order,
    /// as soon as it and the partitions before it are done; a partition is freed once
    /// `sink` returns, so an answer larger than memory can be written out piece by
    /// piece. Returns what the run did (bytes read, spilled, shuffled).
    pub fn for_each_partition(
        &self,
        sink: &(dyn Fn(usize, &RecordBatch) -> Result<()> + Sync),
    ) -> Result<RunStats> {
        self.run_some(0..self.npartitions(), sink)
    }

    /// Runs the plan and, as a task of its own after each partition `i` is made,
    /// `write(i, partition)`, on whichever worker is free and in no order: for
    /// outputs where each partition goes its own way (a file per partition), so
    /// that the writes run in parallel rather than one after another in partition
    /// order, as [`for_each_partition`](Self::for_each_partition)'s do. A partition
    /// is freed once its write returns. Returns what the run did.
    pub(crate) fn write_each_partition(
        &self,
        name: &str,
        write: Arc<dyn Fn(usize, &RecordBatch) -> Result<()> + Send + Sync>,
    ) -> Result<RunStats> {
        let pruned = plan::prune(&self.plan, None);
        let ctx = self.session.run_context();
        let mut graph = Graph::new();
        let parts = plan::lower(&pruned, &mut graph, &ctx);
        let deps = parts.into_iter().map(|k| vec![k]).collect();
        let keys = plan::task_layer(&mut graph, name, deps, &|i| {
            let write = write.clone();
            crate::graph::FnOperator::new("write", move |inputs: &[Arc<Value>]| {
                match inputs.first().map(|v| v.as_ref()) {
                    Some(Value::Batch(b)) => {
                        write(i, b)?;
                        Ok(Value::Pieces(Vec::new()))
                    }
                    other => Err(Error::Internal(format!(
                        "a frame partition is {}",
                        other.map_or("missing", Value::kind)
                    ))),
                }
            })
        });
        let exec = graph.compile(&keys)?;
        drop(graph);
        let stats = self
            .session
            .executor()
            .with_run_context(ctx.clone())
            .run_streaming(&exec, &|_, _| Ok(()))?;
        Ok(run_stats(stats, &ctx))
    }

    fn run_some(
        &self,
        parts: std::ops::Range<usize>,
        sink: &(dyn Fn(usize, &RecordBatch) -> Result<()> + Sync),
    ) -> Result<RunStats> {
        let pruned = plan::prune(&self.plan, None);
        let ctx = self.session.run_context();
        let mut graph = Graph::new();
        let keys = plan::lower(&pruned, &mut graph, &ctx);
        let exec = graph.compile(&keys[parts.clone()])?;
        drop(graph);
        let start = parts.start;
        let stats = self
            .session
            .executor()
            .with_run_context(ctx.clone())
            .run_streaming(&exec, &|i, v| match v.as_ref() {
                Value::Batch(b) => sink(start + i, b),
                other => Err(Error::Internal(format!(
                    "a frame partition is {}",
                    other.kind()
                ))),
            })?;
        Ok(run_stats(stats, &ctx))
    }

    /// Runs the plan and gathers the answer into one batch.
    pub fn compute(&self) -> Result<RecordBatch> {
        Ok(self.compute_with_stats()?.0)
    }

    /// [`compute`](Self::compute), and what the run did.
    pub fn compute_with_stats(&self) -> Result<(RecordBatch, RunStats)> {
        let (parts, stats) = self.compute_partitions()?;
        Ok((self.gather(parts)?, stats))
    }

    /// Partitions → one batch: concatenated, or merged by key when each is a sorted
    /// part of a groupby's answer ([`Plan::sorted_partitions_by`]).
    fn gather(&self, parts: Vec<RecordBatch>) -> Result<RecordBatch> {
        let mut parts: Vec<RecordBatch> = parts.into_iter().filter(|p| p.num_rows() > 0).collect();
        let keys = self.plan.sorted_partitions_by();
        match (parts.len(), keys) {
            (0, _) => Ok(RecordBatch::new_empty(self.schema.clone())),
            (1, _) => Ok(parts.pop().expect("one part")),
            (_, Some(keys)) => {
                let by = keys
                    .iter()
                    .map(|k| {
                        let i = self.schema.index_of(k)?;
                        Ok((
                            i,
                            SortOptions {
                                descending: false,
                                nulls_first: false,
                            },
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?;
                crate::sort::merge_sorted(parts, &by)
            }
            (_, None) => Ok(concat_batches(&self.schema, &parts)?),
        }
    }

    /// The first `n` rows. Computes the first partition, then more (doubling) while
    /// the rows are too few, so a short or empty first partition still gives `n`
    /// rows when the frame has them (Dask's `head` looks at the first only).
    pub fn head(&self, n: usize) -> Result<RecordBatch> {
        if self.plan.sorted_partitions_by().is_some() {
            // A groupby's first keys may be in any of its partitions.
            let all = self.compute()?;
            return Ok(all.slice(0, n.min(all.num_rows())));
        }
        let total = self.npartitions();
        let (mut got, mut rows, mut next, mut step) = (Vec::new(), 0usize, 0usize, 1usize);
        while rows < n && next < total {
            let end = (next + step).min(total);
            let (parts, _) = self.compute_some(next..end)?;
            for p in parts {
                rows += p.num_rows();
                got.push(p);
            }
            next = end;
            step *= 2;
        }
        let all = concat_batches(&self.schema, &got)?;
        Ok(all.slice(0, n.min(all.num_rows())))
    }

    /// Number of rows.
    pub fn num_rows(&self) -> Result<usize> {
        // A projection of no columns decodes nothing, yet its batches keep their
        // row counts, which is all `size` reads.
        let counted = self
            .select::<&str>(&[])?
            .agg(&[crate::agg::size()])?
            .compute()?;
        let a = counted
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>();
        Ok(a.map_or(0, |a| a.value(0) as usize))
    }

    /// Non-null values per column, as pandas' `df.count()`: one row, a column each.
    pub fn count(&self) -> Result<RecordBatch> {
        let aggs: Vec<AggSpec> = self
            .columns()
            .iter()
            .map(|c| AggSpec::new(AggFunc::Count, c).alias(c))
            .collect();
        if aggs.is_empty() {
            return Ok(RecordBatch::new_empty(Arc::new(Schema::empty())));
        }
        self.agg(&aggs)?.compute()
    }

    /// Summary statistics of the numeric columns, as pandas' `describe()`: rows
    /// count, mean, std, min and max, a column per numeric column.
    pub fn describe(&self) -> Result<RecordBatch> {
        let numeric: Vec<String> = self
            .schema
            .fields()
            .iter()
            .filter(|f| f.data_type().is_numeric())
            .map(|f| f.name().clone())
            .collect();
        if numeric.is_empty() {
            return Err(Error::plan("describe", "the frame has no numeric columns"));
        }
        let stats = [
            AggFunc::Count,
            AggFunc::Mean,
            AggFunc::Std,
            AggFunc::Min,
            AggFunc::Max,
        ];
        let mut aggs = Vec::new();
        for c in &numeric {
            for f in stats {
                aggs.push(AggSpec::new(f, c).alias(format!("{}\u{0}{c}", f.name())));
            }
        }
        let one = self.agg(&aggs)?.compute()?;
        let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(
            stats.iter().map(|f| f.name()).collect::<Vec<_>>(),
        ))];
        let mut fields = vec![Field::new("statistic", DataType::Utf8, false)];
        for (ci, c) in numeric.iter().enumerate() {
            let values: Vec<Option<f64>> = (0..stats.len())
                .map(|si| {
                    let a = arrow::compute::cast(
                        one.column(ci * stats.len() + si),
                        &DataType::Float64,
                    )?;
                    let a = a
                        .as_any()
                        .downcast_ref::<Float64Array>()
                        .expect("cast to Float64");
                    Ok(a.is_valid(0).then(|| a.value(0)))
                })
                .collect::<Result<_>>()?;
            columns.push(Arc::new(Float64Array::from(values)));
            fields.push(Field::new(c, DataType::Float64, true));
        }
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }

    /// How often each value of `column` occurs, most frequent first (ties by value),
    /// nulls left out, as pandas' `value_counts()`.
    pub fn value_counts(&self, column: &str) -> Result<RecordBatch> {
        let counts = self
            .groupby(&[column])?
            .agg(&[crate::agg::size().alias("count")])?
            .compute()?;
        sort_batch(&counts, &[("count", false), (column, true)])
    }

    /// The Graphviz DOT picture of the task graph that `compute` would run.
    pub fn visualize(&self) -> String {
        let pruned = plan::prune(&self.plan, None);
        let mut graph = Graph::new();
        plan::lower(&pruned, &mut graph, &self.session.run_context());
        graph.to_dot()
    }

    /// The pruned plan's columns read from the source (for tests and `explain`).
    pub fn read_columns(&self) -> Vec<String> {
        fn find(p: &Plan) -> Option<Vec<String>> {
            match p {
                Plan::ReadCsv { .. } => Some(
                    p.schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect(),
                ),
                Plan::Node { inputs, .. } if inputs.is_empty() => Some(
                    p.schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect(),
                ),
                _ => p.inputs().into_iter().find_map(|i| find(i)),
            }
        }
        find(&plan::prune(&self.plan, None)).unwrap_or_default()
    }
}

/// Sorts a (small, computed) batch by columns, each ascending or not; nulls last.
pub fn sort_batch(batch: &RecordBatch, by: &[(&str, bool)]) -> Result<RecordBatch> {
    let keys = by
        .iter()
        .map(|(name, ascending)| {
            let i = batch
                .schema()
                .index_of(name)
                .map_err(|_| crate::expr::unknown_column(&batch.schema(), name))?;
            Ok((
                i,
                SortOptions {
                    descending: !ascending,
                    nulls_first: false,
                },
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    crate::sort::sort_by_columns(batch, &keys)
}

/// A grouping waiting for its aggregations.
#[must_use]
pub struct GroupBy {
    frame: DataFrame,
    keys: Vec<String>,
    dropna: bool,
    sort: bool,
    split_every: usize,
    split_out: Option<usize>,
}

impl GroupBy {
    /// Keep rows whose key is null, as a group of their own (pandas' `dropna=False`).
    pub fn keep_null_keys(mut self) -> Self {
        self.dropna = false;
        self
    }

    /// Leave the answer in the order groups were met rather than sorted by key.
    pub fn unsorted(mut self) -> Self {
        self.sort = false;
        self
    }

    /// Partials per combine task of the reduction tree (default: the session's, 8).
    pub fn split_every(mut self, n: usize) -> Result<Self> {
        if n < 2 {
            return Err(Error::plan("groupby", "split_every must be at least 2"));
        }
        self.split_every = n;
        Ok(self)
    }

    /// Overrides the strategy chosen at run time (see [`crate::agg::radix`]): spread
    /// the answer over `n` partitions by a hash of the keys, through the shuffle
    /// store (Dask's `split_out`), so no task holds more than about 1/n of the
    /// groups; each partition is sorted by key (when sorting), the partitions are
    /// not ordered among themselves. `n = 1` is one partition by a reduction tree.
    pub fn split_out(mut self, n: usize) -> Result<Self> {
        if n == 0 {
            return Err(Error::plan("groupby", "split_out must be at least 1"));
        }
        crate::graph::check_partitions(
            "groupby",
            &format!("split_out {n}"),
            n,
            "use a smaller split_out",
        )?;
        self.split_out = Some(n);
        Ok(self)
    }

    /// Aggregations and expressions over them, as `--agg` writes them
    /// (`max(v1) - min(v2) as r`; see
    /// [`parse_agg_list`](crate::agg::exprs::parse_agg_list)): the keys, then one
    /// column per item.
    pub fn agg_list(self, list: &crate::agg::exprs::AggList) -> Result<DataFrame> {
        let keys = self.keys.clone();
        self.agg(&list.aggs)?.project_agg_exprs(&keys, list)
    }

    /// The aggregations: `.agg(&[sum("v1"), mean("v3")])`. One partition results,
    /// or `split_out` of them when it is given.
    pub fn agg(self, aggs: &[AggSpec]) -> Result<DataFrame> {
        let plan = AggregatePlan::new(
            &self.frame.schema,
            self.keys,
            aggs.to_vec(),
            !self.dropna,
            self.sort,
        )?;
        Ok(self.frame.with_plan(Plan::Aggregate {
            input: self.frame.plan.clone(),
            plan: Arc::new(plan),
            split_every: self.split_every,
            split_out: self.split_out,
            sizing: self.frame.session.radix_sizing(),
        }))
    }
}

/// The scheduler's stats of a run, with what its context counted (bytes read,
/// shuffled, spilled by joins and sorts).
fn run_stats(mut stats: RunStats, ctx: &Arc<RunContext>) -> RunStats {
    let shuffled = ctx.shuffle_totals();
    stats.bytes_read = ctx.bytes_read();
    (stats.row_groups_read, stats.row_groups_skipped) = ctx.row_groups();
    stats.shuffled_bytes = shuffled.bytes_shuffled;
    stats.shuffle_held_bytes = shuffled.bytes_held;
    stats.shuffle_disk_bytes = shuffled.bytes_on_disk;
    stats.radix_parts = ctx.radix_parts() as u64;
    (stats.join_buckets_spilled, stats.join_build_chunks) = ctx.join_spills();
    stats.sort_runs_spilled = ctx.sort_runs();
    stats.radix_splits = ctx.radix_splits();
    (stats.fold_tables, stats.fold_flushes) = ctx.fold_tables();
    stats
}

//! The operators frame tasks run: read a CSV block, filter, project, map a
//! partition, the three steps of an aggregation, and the two sides of a hash
//! shuffle (write partials into the shuffle store, read and finalize a partition).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;

use super::partitioning::Partitioner;
use super::plan::PartitionFn;
use crate::agg::AggregatePlan;
use crate::error::{Error, Result};
use crate::expr::{evaluate, evaluate_predicate, Expr};
use crate::graph::{Operator, Streaming, Value};
use crate::io::CsvSource;
use crate::scheduler::RunContext;

fn batches(inputs: &[Arc<Value>]) -> Result<Vec<&RecordBatch>> {
    inputs.iter().map(|v| v.as_batch()).collect()
}

fn single(inputs: &[Arc<Value>]) -> Result<&RecordBatch> {
    match inputs {
        [one] => one.as_batch(),
        _ => Err(Error::Internal(format!(
            "expected one input, got {}",
            inputs.len()
        ))),
    }
}

/// Reads and decodes one block of a CSV source.
pub struct ReadCsvBlock {
    /// The source.
    pub source: Arc<CsvSource>,
    /// Which block.
    pub block: usize,
    /// Which columns.
    pub projection: Arc<[usize]>,
    /// Counts the bytes read.
    pub ctx: Arc<RunContext>,
}

impl Operator for ReadCsvBlock {
    fn name(&self) -> &str {
        "read-csv"
    }
    /// The block's share of the columns read, decoded at one and a half times
    /// their text (an integer of a few digits takes eight bytes), and a piece
    /// of the block being tokenised.
    fn working_bytes(&self) -> Option<u64> {
        let block = &self.source.blocks[self.block];
        let columns = self.source.schema.fields().len().max(1) as u64;
        let share = (block.end - block.start) * self.projection.len() as u64 / columns;
        Some(share * 3 / 2 + crate::io::csv::PIECE_BYTES as u64)
    }
    fn run(&self, _inputs: &[Arc<Value>]) -> Result<Value> {
        let batch = self.source.read_block(self.block, &self.projection)?;
        let block = &self.source.blocks[self.block];
        self.ctx.add_bytes_read(block.end - block.start);
        Ok(Value::Batch(batch))
    }
}

/// Keeps rows where the predicate is true (null counts as false).
pub struct FilterOp {
    /// The predicate.
    pub predicate: Expr,
}

impl Operator for FilterOp {
    fn name(&self) -> &str {
        "filter"
    }
    fn streaming(&self) -> Streaming {
        Streaming::Map
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        let batch = single(inputs)?;
        let mask = evaluate_predicate(&self.predicate, batch)?;
        Ok(Value::Batch(filter_record_batch(batch, &mask)?))
    }
}

/// Computes the output columns from expressions.
pub struct ProjectOp {
    /// Expressions and names.
    pub exprs: Vec<(Expr, String)>,
    /// Output schema.
    pub schema: SchemaRef,
}

impl Operator for ProjectOp {
    fn name(&self) -> &str {
        "project"
    }
    fn streaming(&self) -> Streaming {
        Streaming::Map
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        let batch = single(inputs)?;
        let columns = self
            .exprs
            .iter()
            .zip(self.schema.fields())
            .map(|((e, _), f)| {
                let a = evaluate(e, batch)?;
                // Keep the schema's declared type (a literal column is Int64 whatever
                // the batch).
                Ok(if a.data_type() == f.data_type() {
                    a
                } else {
                    arrow::compute::cast(&a, f.data_type())?
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let options =
            arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(Value::Batch(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?))
    }
}

/// Runs a user function on a partition and checks it kept its promised schema.
pub struct MapOp {
    /// The function.
    pub f: PartitionFn,
    /// The schema it promised.
    pub schema: SchemaRef,
}

impl Operator for MapOp {
    fn name(&self) -> &str {
        "map-partitions"
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        let out = (self.f)(single(inputs)?.clone())?;
        if out.schema().fields() != self.schema.fields() {
            return Err(Error::plan(
                "map_partitions",
                format!(
                    "the function returned schema {:?}, but promised {:?}",
                    out.schema(),
                    self.schema
                ),
            ));
        }
        Ok(Value::Batch(out))
    }
}

/// Aggregation, chunk step.
pub struct AggChunk {
    /// The aggregation.
    pub plan: Arc<AggregatePlan>,
}

impl Operator for AggChunk {
    fn name(&self) -> &str {
        "agg-chunk"
    }
    fn streaming(&self) -> Streaming {
        Streaming::Fold
    }
    fn merge(&self, values: Vec<Value>) -> Result<Value> {
        let partials = values
            .iter()
            .map(Value::as_batch)
            .collect::<Result<Vec<_>>>()?;
        Ok(Value::Batch(self.plan.combine(&partials)?))
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        Ok(Value::Batch(self.plan.chunk(single(inputs)?)?))
    }
}

/// Aggregation, combine step.
pub struct AggCombine {
    /// The aggregation.
    pub plan: Arc<AggregatePlan>,
}

impl Operator for AggCombine {
    fn name(&self) -> &str {
        "agg-combine"
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        Ok(Value::Batch(self.plan.combine(&batches(inputs)?)?))
    }
}

/// Aggregation, final step.
pub struct AggFinalize {
    /// The aggregation.
    pub plan: Arc<AggregatePlan>,
}

impl Operator for AggFinalize {
    fn name(&self) -> &str {
        "agg-finalize"
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        Ok(Value::Batch(self.plan.finalize(&batches(inputs)?)?))
    }
}

/// Splits its input by a [`Partitioner`] and appends each piece to the
/// computation's shuffle store (partitions `offset .. offset + n`); its value is an
/// empty marker, so the scheduler holds nothing for it.
pub struct ShuffleWrite {
    /// The computation whose shuffle store to write to.
    pub ctx: Arc<RunContext>,
    /// First shuffle partition of this shuffle.
    pub offset: usize,
    /// Output partitions.
    pub n: usize,
    /// Where each row goes.
    pub partitioner: Partitioner,
    /// This writer's number (the input partition).
    pub writer: u64,
}

impl Operator for ShuffleWrite {
    fn name(&self) -> &str {
        "shuffle-write"
    }
    fn streaming(&self) -> Streaming {
        Streaming::Fold
    }
    fn merge(&self, _values: Vec<Value>) -> Result<Value> {
        Ok(Value::Pieces(Vec::new()))
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        let batch = single(inputs)?;
        let pieces = self.partitioner.split(batch, self.n)?;
        self.ctx.shuffle_append(self.offset, self.writer, pieces)?;
        Ok(Value::Pieces(Vec::new()))
    }
}

/// Reads one output partition of a shuffle into one batch, sorted by `sort` when
/// given, then frees the partition's disk. Pieces are read one at a time; a sort
/// whose partition does not fit its reservation goes through sorted runs
/// ([`super::sorter`]).
pub struct ShuffleGather {
    /// The computation whose shuffle store to read.
    pub ctx: Arc<RunContext>,
    /// The shuffle partition.
    pub partition: usize,
    /// The rows' schema (an empty partition has no pieces to tell it).
    pub schema: SchemaRef,
    /// Sort keys, as column positions and options; none keeps arrival order.
    pub sort: Vec<(usize, arrow::compute::SortOptions)>,
    /// The shuffle partition this task's sorted runs go to, if it sorts.
    pub runs: Option<usize>,
}

impl Operator for ShuffleGather {
    fn name(&self) -> &str {
        "shuffle-gather"
    }
    fn run(&self, _inputs: &[Arc<Value>]) -> Result<Value> {
        let shuffle = self.ctx.shuffle()?;
        let batches = self.ctx.shuffle_batches(&shuffle, self.partition, true)?;
        let out = match self.runs.filter(|_| !self.sort.is_empty()) {
            Some(runs) => super::sorter::sort_pieces(
                batches,
                &self.schema,
                &self.sort,
                &super::sorter::RunSpace {
                    ctx: &self.ctx,
                    store: &shuffle,
                    partition: runs,
                },
            )?,
            None => {
                let mut kept = Vec::new();
                for batch in batches {
                    let batch = batch?;
                    // The rows and their share of the concatenation.
                    let bytes = outcore_storage::measure::batch_bytes(&batch) as u64;
                    crate::scheduler::reserve("shuffle read buffers", 2 * bytes)?;
                    kept.push(batch);
                }
                let all = arrow::compute::concat_batches(&self.schema, &kept)?;
                drop(kept);
                if !self.sort.is_empty() {
                    crate::scheduler::reserve(
                        "sort buffer",
                        outcore_storage::measure::batch_bytes(&all) as u64,
                    )?;
                }
                crate::sort::sort_by_columns(&all, &self.sort)?
            }
        };
        self.ctx.drop_shuffle_partition(&shuffle, self.partition)?;
        Ok(Value::Batch(out))
    }
}

/// Reads one output partition of an aggregation's shuffle, merging the partials one
/// at a time into the answer, then frees the partition's disk.
pub struct ShuffleAggFinalize {
    /// The computation whose shuffle store to read.
    pub ctx: Arc<RunContext>,
    /// The shuffle partition.
    pub partition: usize,
    /// The aggregation.
    pub plan: Arc<AggregatePlan>,
}

impl Operator for ShuffleAggFinalize {
    fn name(&self) -> &str {
        "shuffle-agg-finalize"
    }
    fn run(&self, _inputs: &[Arc<Value>]) -> Result<Value> {
        let shuffle = self.ctx.shuffle()?;
        let partials = self.ctx.shuffle_batches(&shuffle, self.partition, true)?;
        let out = self.plan.finalize_each(partials)?;
        self.ctx.drop_shuffle_partition(&shuffle, self.partition)?;
        Ok(Value::Batch(out))
    }
}

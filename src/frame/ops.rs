//! The operators frame tasks run: read a CSV block, filter, project, map a
//! partition, the three steps of an aggregation, and the two sides of a hash
//! shuffle (write partials into the shuffle store, read and finalize a partition).

use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::{filter_record_batch, take_record_batch};
use arrow::datatypes::SchemaRef;
use datafusion_common::hash_utils::{create_hashes, RandomState};
use outcore_storage::codec::{decode_batches, encode_batches};

use super::plan::PartitionFn;
use crate::agg::AggregatePlan;
use crate::error::{Error, Result};
use crate::expr::{evaluate, evaluate_predicate, Expr};
use crate::graph::{Operator, Value};
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

/// Hash-partitions a partial aggregate by its key columns and appends each piece to
/// the computation's shuffle store (partitions `offset .. offset + n`); its value is
/// an empty marker, so the scheduler holds nothing for it.
pub struct ShuffleWrite {
    /// The computation whose shuffle store to write to.
    pub ctx: Arc<RunContext>,
    /// First shuffle partition of this shuffle.
    pub offset: usize,
    /// Output partitions.
    pub n: usize,
    /// The key columns to hash.
    pub keys: Vec<usize>,
    /// This writer's number (the input partition).
    pub writer: u64,
}

impl Operator for ShuffleWrite {
    fn name(&self) -> &str {
        "shuffle-write"
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        let batch = single(inputs)?;
        let shuffle = self.ctx.shuffle()?;
        for (p, piece) in hash_partition(batch, &self.keys, self.n)?
            .into_iter()
            .enumerate()
        {
            if piece.num_rows() == 0 {
                continue;
            }
            let mut bytes = Vec::with_capacity(piece.get_array_memory_size() / 2 + 256);
            encode_batches(&piece.schema(), std::slice::from_ref(&piece), &mut bytes)?;
            shuffle.append(self.offset + p, self.writer, &bytes)?;
        }
        Ok(Value::Pieces(Vec::new()))
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
        let pieces = shuffle.get(self.partition)?;
        let partials = pieces.iter().flat_map(|bytes| match decode_batches(bytes) {
            Ok((_, batches)) => batches.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(Error::from(e))],
        });
        let out = self.plan.finalize_each(partials)?;
        drop(pieces);
        shuffle.drop_partition(self.partition)?;
        Ok(Value::Batch(out))
    }
}

/// Splits `batch` into `n` batches by a hash of the `keys` columns: equal keys land
/// in the same piece, whichever batch they come from.
pub fn hash_partition(batch: &RecordBatch, keys: &[usize], n: usize) -> Result<Vec<RecordBatch>> {
    if n <= 1 {
        return Ok(vec![batch.clone()]);
    }
    let rows = batch.num_rows();
    let mut hashes = vec![0u64; rows];
    let columns: Vec<&dyn arrow::array::Array> =
        keys.iter().map(|&k| batch.column(k).as_ref()).collect();
    create_hashes(columns, &RandomState::with_seed(0), &mut hashes)?;
    let mut indices: Vec<Vec<u32>> = vec![Vec::with_capacity(rows / n + 1); n];
    for (row, h) in hashes.iter().enumerate() {
        // Multiply-shift maps the hash onto 0..n using its high bits.
        let p = ((u128::from(*h) * n as u128) >> 64) as usize;
        indices[p].push(row as u32);
    }
    indices
        .into_iter()
        .map(|idx| {
            let idx = UInt32Array::from(idx);
            Ok(take_record_batch(batch, &idx)?)
        })
        .collect()
}

//! The operators frame tasks run: read a CSV block, filter, project, map a
//! partition, and the three steps of an aggregation.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;

use super::plan::PartitionFn;
use crate::agg::AggregatePlan;
use crate::error::{Error, Result};
use crate::expr::{evaluate, evaluate_predicate, Expr};
use crate::graph::{Operator, Value};
use crate::io::CsvSource;

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
}

impl Operator for ReadCsvBlock {
    fn name(&self) -> &str {
        "read-csv"
    }
    fn run(&self, _inputs: &[Arc<Value>]) -> Result<Value> {
        Ok(Value::Batch(
            self.source.read_block(self.block, &self.projection)?,
        ))
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

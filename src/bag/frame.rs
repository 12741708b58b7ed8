//! Frames from JSON: `Session::read_json_frame` (JSON lines decoded straight into
//! Arrow batches by arrow's JSON reader, only the columns the query uses) and
//! `Bag::to_dataframe` (a bag's records, which must be objects, as batches). Both are
//! source [`PlanNode`]s (decoding only the columns pruning leaves them), so every
//! frame operation works on them.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use serde_json::Value as J;

use super::{layer_name, per_partition, records, Bag, LowerCtx};
use crate::error::{Error, Result};
use crate::frame::{DataFrame, Index, PlanNode};
use crate::graph::{FnOperator, Graph, Key, Layer, Task, Value};
use crate::io::json::{
    infer_schema, project, read_frame_block, LinesOptions, LinesSource, DEFAULT_MAX_LINE_BYTES,
};
use crate::scheduler::RunContext;
use crate::session::Session;

/// Lines per sampled file for schema inference.
const SAMPLE_LINES: usize = 1000;

/// Options for [`Session::read_json_frame`]; `load` opens the files.
#[must_use]
pub struct JsonFrameReadBuilder {
    session: Session,
    pattern: String,
    options: LinesOptions,
    schema: Option<SchemaRef>,
    sample_lines: usize,
}

impl JsonFrameReadBuilder {
    pub(crate) fn new(session: Session, pattern: String) -> Self {
        JsonFrameReadBuilder {
            options: LinesOptions {
                blocksize: session.blocksize(),
                max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            },
            session,
            pattern,
            schema: None,
            sample_lines: SAMPLE_LINES,
        }
    }

    /// Lines read from each sampled file to infer the schema (default 1000).
    pub fn with_sample_lines(mut self, lines: usize) -> Self {
        self.sample_lines = lines.max(1);
        self
    }

    /// Bytes per partition of uncompressed files.
    pub fn with_blocksize(mut self, bytes: u64) -> Self {
        self.options.blocksize = bytes;
        self
    }

    /// The longest line accepted (default 64 MiB).
    pub fn with_max_line_bytes(mut self, bytes: u64) -> Self {
        self.options.max_line_bytes = bytes;
        self
    }

    /// Declares the schema instead of inferring it (fields not in it are ignored).
    pub fn with_schema(mut self, schema: SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Expands the glob, cuts blocks, and infers the schema from samples of several
    /// files (unless given).
    pub fn load(self) -> Result<DataFrame> {
        let source = LinesSource::open("read_json", &self.pattern, &self.options)?;
        let schema = match self.schema {
            Some(s) => s,
            None => infer_schema(&source, self.sample_lines)?,
        };
        Ok(DataFrame::from_node(
            &self.session,
            Vec::new(),
            Arc::new(JsonFrameSource {
                source: Arc::new(source),
                schema,
                projection: None,
            }),
        ))
    }
}

/// The columns of `schema` that `required` names (all when `None`).
fn projection_of(schema: &SchemaRef, required: Option<&BTreeSet<String>>) -> Option<Vec<usize>> {
    required.map(|req| {
        (0..schema.fields().len())
            .filter(|&i| req.contains(schema.field(i).name()))
            .collect()
    })
}

#[derive(Clone)]
struct JsonFrameSource {
    source: Arc<LinesSource>,
    /// Every column the files give.
    schema: SchemaRef,
    /// The columns to decode; all when `None`.
    projection: Option<Vec<usize>>,
}

impl PlanNode for JsonFrameSource {
    fn name(&self) -> &str {
        "read-json-frame"
    }
    fn schema(&self, _inputs: &[SchemaRef]) -> SchemaRef {
        project(&self.schema, self.projection.as_deref())
    }
    fn npartitions(&self, _inputs: &[usize]) -> usize {
        self.source.blocks.len()
    }
    fn index(&self) -> Option<Index> {
        None
    }
    fn pruned(&self, required: Option<&BTreeSet<String>>) -> Option<Arc<dyn PlanNode>> {
        Some(Arc::new(JsonFrameSource {
            projection: projection_of(&self.schema, required),
            ..self.clone()
        }))
    }
    fn input_columns(&self, _required: Option<&BTreeSet<String>>) -> Vec<Option<BTreeSet<String>>> {
        Vec::new()
    }
    fn lower(&self, _inputs: &[Vec<Key>], graph: &mut Graph, ctx: &Arc<RunContext>) -> Vec<Key> {
        let schema = project(&self.schema, self.projection.as_deref());
        // No pruning (the whole frame is wanted, as when it is printed): a field
        // outside the schema would be dropped from the answer, so it is an error
        // (strict). Pruned: the answer depends only on the columns it reads.
        let strict = self.projection.is_none();
        let name = layer_name("read-json-frame");
        let tasks: Vec<Task> = (0..self.source.blocks.len())
            .map(|i| {
                let (source, schema, ctx) = (self.source.clone(), schema.clone(), ctx.clone());
                Task {
                    key: Key::new(&name, i),
                    deps: vec![],
                    op: FnOperator::new("read-json-frame", move |_: &[Arc<Value>]| {
                        let batch = read_frame_block(&source, i, &schema, strict)?;
                        let b = source.blocks[i];
                        ctx.add_bytes_read(b.end - b.start);
                        Ok(Value::Batch(batch))
                    }),
                }
            })
            .collect();
        let keys = tasks.iter().map(|t| t.key.clone()).collect();
        graph.add_layer(Layer { name, tasks });
        keys
    }
}

#[derive(Clone)]
struct BagFrameSource {
    bag: Bag,
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
}

impl PlanNode for BagFrameSource {
    fn name(&self) -> &str {
        "to-frame"
    }
    fn schema(&self, _inputs: &[SchemaRef]) -> SchemaRef {
        project(&self.schema, self.projection.as_deref())
    }
    fn npartitions(&self, _inputs: &[usize]) -> usize {
        self.bag.npartitions
    }
    fn index(&self) -> Option<Index> {
        None
    }
    fn pruned(&self, required: Option<&BTreeSet<String>>) -> Option<Arc<dyn PlanNode>> {
        Some(Arc::new(BagFrameSource {
            projection: projection_of(&self.schema, required),
            ..self.clone()
        }))
    }
    fn input_columns(&self, _required: Option<&BTreeSet<String>>) -> Vec<Option<BTreeSet<String>>> {
        Vec::new()
    }
    fn lower(&self, _inputs: &[Vec<Key>], graph: &mut Graph, ctx: &Arc<RunContext>) -> Vec<Key> {
        let projection = self.projection.as_deref();
        let lctx = LowerCtx {
            run: ctx.clone(),
            skipped: Default::default(),
            shared: None,
        };
        let inputs = self.bag.lower(graph, &lctx);
        let schema = project(&self.schema, projection);
        per_partition(
            graph,
            "to-frame",
            &inputs,
            Arc::new(move |_, v| Ok(Value::Batch(records_to_batch(records(v)?, &schema)?))),
        )
    }
}

/// Records (objects) as one batch of `schema`; missing fields are null, others
/// ignored.
pub(crate) fn records_to_batch(rs: &[J], schema: &SchemaRef) -> Result<arrow::array::RecordBatch> {
    if let Some(bad) = rs.iter().find(|r| !r.is_object()) {
        return Err(Error::plan(
            "to_dataframe",
            format!(
                "every record must be an object, found {}",
                crate::io::json::line_head(bad.to_string().as_bytes())
            ),
        ));
    }
    if schema.fields().is_empty() {
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rs.len()));
        return Ok(arrow::array::RecordBatch::try_new_with_options(
            schema.clone(),
            vec![],
            &options,
        )?);
    }
    let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rs.len().max(1))
        .build_decoder()?;
    decoder.serialize(rs)?;
    Ok(decoder
        .flush()?
        .unwrap_or_else(|| arrow::array::RecordBatch::new_empty(schema.clone())))
}

impl Bag {
    /// The bag as a frame: each partition's records (objects) become a batch of
    /// `schema`, or of a schema inferred from the first records when `None` (Dask's
    /// `to_dataframe` also looks at the first partition).
    pub fn to_dataframe(&self, schema: Option<SchemaRef>) -> Result<DataFrame> {
        let schema = match schema {
            Some(s) => s,
            None => {
                let sample = self.take(1000)?;
                if sample.is_empty() {
                    return Err(Error::plan(
                        "to_dataframe",
                        "the bag's first partitions are empty; give a schema",
                    ));
                }
                Arc::new(arrow::json::reader::infer_json_schema_from_iterator(
                    sample.iter().map(Ok),
                )?)
            }
        };
        Ok(DataFrame::from_node(
            &self.session,
            Vec::new(),
            Arc::new(BagFrameSource {
                bag: self.clone(),
                schema,
                projection: None,
            }),
        ))
    }
}

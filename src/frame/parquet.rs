//! Persisted datasets on disk: [`DataFrame::to_parquet`] writes one Parquet file
//! per partition plus a catalog (schema, index, divisions, the query that made
//! it) in a small sled database, `_catalog`, all into a staging folder renamed into
//! place at the end; [`read_parquet`] opens such a folder as a frame with one
//! partition per file and, from the catalog, the index and its divisions, so a
//! later resample needs no shuffle.
//!
//! ```text
//!   out/part-00000.parquet  part-00001.parquet ...  _catalog/ (sled: format, schema,
//!                                                    npartitions, index, divisions,
//!                                                    rows, query)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion_common::ScalarValue;
use outcore_storage::codec::{decode_batches, encode_batches};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::plan::{layer_name, Index, PlanNode};
use super::DataFrame;
use crate::error::{Error, Result};
use crate::graph::{FnOperator, Graph, Key, Layer, Task, Value};
use crate::io::staged::StagedFolder;
use crate::scheduler::{RunContext, RunStats};
use crate::session::Session;

const FORMAT: &str = "outcore-parquet 1";
const CATALOG: &str = "_catalog";

/// Options of [`DataFrame::to_parquet`].
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Replace the folder if it exists (default: an error).
    pub overwrite: bool,
    /// What made the data (kept in the catalog; the CLI stores its command line).
    pub query: Option<String>,
}

fn parquet_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::io(path, std::io::Error::other(e.to_string()))
}

impl DataFrame {
    /// Runs the frame and writes `dir/part-NNNNN.parquet`, one file per partition
    /// as each is done, and the catalog; see the module docs. The folder appears
    /// only when everything is written; an existing one is an error unless
    /// `options.overwrite`, and is left intact if the write fails.
    pub fn to_parquet(&self, dir: impl AsRef<Path>, options: &WriteOptions) -> Result<RunStats> {
        let staged = StagedFolder::new("to_parquet", dir.as_ref(), options.overwrite)?;
        let rows = AtomicU64::new(0);
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let stats = self.for_each_partition(&|i, batch| {
            let path = staged.path().join(format!("part-{i:05}.parquet"));
            let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
            let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props.clone()))
                .map_err(|e| parquet_err(&path, e))?;
            w.write(batch).map_err(|e| parquet_err(&path, e))?;
            let file = w.into_inner().map_err(|e| parquet_err(&path, e))?;
            file.sync_data().map_err(|e| Error::io(&path, e))?;
            rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            Ok(())
        })?;
        let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        entries.insert("format".into(), FORMAT.into());
        let mut schema = Vec::new();
        encode_batches(&self.schema, &[], &mut schema)?;
        entries.insert("schema".into(), schema);
        entries.insert("npartitions".into(), self.npartitions().to_string().into());
        entries.insert(
            "rows".into(),
            rows.load(Ordering::Relaxed).to_string().into(),
        );
        entries.insert(
            "query".into(),
            options
                .query
                .clone()
                .unwrap_or_else(|| "DataFrame::to_parquet".into())
                .into(),
        );
        if let Some(ix) = self.plan.index() {
            entries.insert("index".into(), ix.column.clone().into());
            if let Some(div) = ix.divisions {
                let array = ScalarValue::iter_to_array(div.iter().cloned())?;
                let schema = Arc::new(Schema::new(vec![Field::new(
                    "divisions",
                    array.data_type().clone(),
                    true,
                )]));
                let batch = RecordBatch::try_new(schema.clone(), vec![array])?;
                let mut bytes = Vec::new();
                encode_batches(&schema, &[batch], &mut bytes)?;
                entries.insert("divisions".into(), bytes);
            }
        }
        outcore_storage::catalog::write(&staged.path().join(CATALOG), &entries)?;
        staged.finish()?;
        Ok(stats)
    }
}

/// What a dataset folder's catalog says.
#[derive(Debug, Clone)]
pub struct CatalogInfo {
    /// Every column.
    pub schema: SchemaRef,
    /// The index and its divisions, when the data had one.
    pub index: Option<Index>,
    /// Rows written.
    pub rows: u64,
    /// What made the data.
    pub query: String,
}

/// Reads the catalog of a folder written by [`DataFrame::to_parquet`].
pub fn read_catalog(dir: &Path) -> Result<CatalogInfo> {
    let path = dir.join(CATALOG);
    let entries = outcore_storage::catalog::read(&path)?;
    let get = |k: &str| -> Result<&Vec<u8>> {
        entries.get(k).ok_or_else(|| {
            Error::io(
                &path,
                std::io::Error::other(format!("the catalog has no {k:?}")),
            )
        })
    };
    let text = |k: &str| -> Result<String> { Ok(String::from_utf8_lossy(get(k)?).into_owned()) };
    if text("format")? != FORMAT {
        return Err(Error::io(
            &path,
            std::io::Error::other(format!("unknown catalog format {:?}", text("format")?)),
        ));
    }
    let (schema, _) = decode_batches(get("schema")?)?;
    let index = match entries.get("index") {
        None => None,
        Some(col) => {
            let divisions = match entries.get("divisions") {
                None => None,
                Some(bytes) => {
                    let (_, batches) = decode_batches(bytes)?;
                    let a = batches.first().map(|b| b.column(0).clone());
                    let mut v = Vec::new();
                    if let Some(a) = a {
                        for i in 0..a.len() {
                            v.push(ScalarValue::try_from_array(&a, i)?);
                        }
                    }
                    Some(v.into())
                }
            };
            Some(Index {
                column: String::from_utf8_lossy(col).into_owned(),
                divisions,
            })
        }
    };
    Ok(CatalogInfo {
        schema,
        index,
        rows: text("rows")?.parse().unwrap_or(0),
        query: text("query")?,
    })
}

/// Opens a Parquet dataset: a folder written by [`DataFrame::to_parquet`] (index
/// and divisions restored from its catalog), or any folder or glob of Parquet
/// files (no index). One partition per file, in path order; only the columns a
/// query uses are decoded.
pub fn read_parquet(session: &Session, path: impl AsRef<Path>) -> Result<DataFrame> {
    let path = path.as_ref();
    let (pattern, catalog) = if path.is_dir() {
        let catalog = path
            .join(CATALOG)
            .exists()
            .then(|| read_catalog(path))
            .transpose()?;
        (
            path.join("*.parquet").to_string_lossy().into_owned(),
            catalog,
        )
    } else {
        (path.to_string_lossy().into_owned(), None)
    };
    let files: Vec<PathBuf> = crate::io::glob::expand(&pattern)?;
    let schema = match &catalog {
        Some(c) => c.schema.clone(),
        None => {
            let f = files.first().ok_or_else(|| {
                Error::plan("read_parquet", format!("no Parquet files match {pattern}"))
            })?;
            let file = File::open(f).map_err(|e| Error::io(f, e))?;
            ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| parquet_err(f, e))?
                .schema()
                .clone()
        }
    };
    let index = catalog.as_ref().and_then(|c| c.index.clone());
    if let Some(Some(div)) = index.as_ref().map(|ix| ix.divisions.as_ref()) {
        if div.len() != files.len() + 1 {
            return Err(Error::plan(
                "read_parquet",
                format!(
                    "{}: the catalog has divisions for {} partitions but there are {} files",
                    path.display(),
                    div.len().saturating_sub(1),
                    files.len()
                ),
            ));
        }
    }
    let node = ParquetNode {
        files: files.into(),
        full: schema,
        columns: None,
        index,
    };
    Ok(DataFrame::from_node(session, Vec::new(), Arc::new(node)))
}

#[derive(Clone)]
struct ParquetNode {
    files: Arc<[PathBuf]>,
    full: SchemaRef,
    /// Indexes of the columns to decode (all when `None`).
    columns: Option<Vec<usize>>,
    index: Option<Index>,
}

impl ParquetNode {
    fn read(&self, i: usize, ctx: &RunContext) -> Result<RecordBatch> {
        let path = &self.files[i];
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_err(path, e))?;
        let schema = self.schema(&[]);
        let builder = match &self.columns {
            None => builder,
            Some(cols) => {
                let mask = ProjectionMask::roots(builder.parquet_schema(), cols.iter().copied());
                builder.with_projection(mask)
            }
        };
        let rows = builder.metadata().file_metadata().num_rows().max(0) as usize;
        let reader = builder
            .with_batch_size(rows.clamp(1, 1 << 20))
            .build()
            .map_err(|e| parquet_err(path, e))?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| parquet_err(path, e))?;
        ctx.add_bytes_read(size);
        let out = concat_batches(&schema, &batches)?;
        if out.schema().fields() != schema.fields() {
            return Err(parquet_err(
                path,
                format!(
                    "schema {:?} differs from the dataset's {:?}",
                    out.schema(),
                    schema
                ),
            ));
        }
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            schema,
            out.columns().to_vec(),
            &options,
        )?)
    }
}

impl PlanNode for ParquetNode {
    fn name(&self) -> &str {
        "read-parquet"
    }
    fn schema(&self, _inputs: &[SchemaRef]) -> SchemaRef {
        match &self.columns {
            None => self.full.clone(),
            Some(c) => Arc::new(self.full.project(c).expect("indexes are valid")),
        }
    }
    fn npartitions(&self, _inputs: &[usize]) -> usize {
        self.files.len()
    }
    fn index(&self) -> Option<Index> {
        self.index.clone()
    }
    fn pruned(&self, required: Option<&BTreeSet<String>>) -> Option<Arc<dyn PlanNode>> {
        let required = required?;
        let columns = (0..self.full.fields().len())
            .filter(|&i| required.contains(self.full.field(i).name()))
            .collect();
        Some(Arc::new(ParquetNode {
            columns: Some(columns),
            ..self.clone()
        }))
    }
    fn input_columns(&self, _required: Option<&BTreeSet<String>>) -> Vec<Option<BTreeSet<String>>> {
        Vec::new()
    }
    fn lower(&self, _inputs: &[Vec<Key>], graph: &mut Graph, ctx: &Arc<RunContext>) -> Vec<Key> {
        let name = layer_name("read-parquet");
        let tasks: Vec<Task> = (0..self.files.len())
            .map(|i| {
                let (me, ctx) = (self.clone(), ctx.clone());
                Task {
                    key: Key::new(&name, i),
                    deps: vec![],
                    op: FnOperator::new("read-parquet", move |_| {
                        Ok(Value::Batch(me.read(i, &ctx)?))
                    }),
                }
            })
            .collect();
        let keys = tasks.iter().map(|t| t.key.clone()).collect();
        graph.add_layer(Layer { name, tasks });
        keys
    }
}

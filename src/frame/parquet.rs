//! Persisted datasets on disk: [`DataFrame::to_parquet`] writes one Parquet file
//! per partition plus a manifest (schema, index, divisions, the query that made
//! it; [`outcore_storage::catalog::Manifest`]), all into a staging folder renamed
//! into place at the end; [`read_parquet`] opens such a folder as a frame with one
//! partition per file and, from the manifest, the index and its divisions, so a
//! later resample needs no shuffle. Reading takes no lock and writes nothing, so
//! any number of processes can read one dataset at once.
//!
//! ```text
//!   out/part-00000.parquet  part-00001.parquet ...  _manifest (format, schema,
//!                                                    npartitions, index, divisions,
//!                                                    rows, query; written atomically)
//! ```

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use datafusion_common::ScalarValue;
use outcore_storage::catalog::Manifest;
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

/// Options of [`DataFrame::to_parquet`].
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Replace the folder if it exists (default: an error).
    pub overwrite: bool,
    /// What made the data (kept in the manifest; the CLI stores its command line).
    pub query: Option<String>,
}

fn parquet_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::io(path, std::io::Error::other(e.to_string()))
}

impl DataFrame {
    /// Runs the frame and writes `dir/part-NNNNN.parquet`, one file per partition
    /// as each is done, and the manifest; see the module docs. The folder appears
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
        let query = options
            .query
            .clone()
            .unwrap_or_else(|| "DataFrame::to_parquet".into());
        let mut manifest = Manifest::new(
            self.schema.clone(),
            self.npartitions(),
            rows.load(Ordering::Relaxed),
            query,
        );
        if let Some(ix) = self.plan.index() {
            let divisions = match ix.divisions {
                Some(div) => Some(ScalarValue::iter_to_array(div.iter().cloned())?),
                None => None,
            };
            manifest = manifest.with_index(ix.column.clone(), divisions);
        }
        manifest.write_atomic(staged.path())?;
        staged.finish()?;
        Ok(stats)
    }
}

/// What a dataset folder's manifest says.
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

/// Reads the manifest of a folder written by [`DataFrame::to_parquet`] (takes no
/// lock, writes nothing).
pub fn read_catalog(dir: &Path) -> Result<CatalogInfo> {
    let m = Manifest::read(dir)?;
    let index = match m.index {
        None => None,
        Some(column) => {
            let divisions = match &m.divisions {
                None => None,
                Some(a) => Some(
                    (0..a.len())
                        .map(|i| ScalarValue::try_from_array(a, i))
                        .collect::<std::result::Result<Vec<_>, _>>()?
                        .into(),
                ),
            };
            Some(Index { column, divisions })
        }
    };
    Ok(CatalogInfo {
        schema: m.schema,
        index,
        rows: m.rows,
        query: m.query,
    })
}

/// Opens a Parquet dataset: a folder written by [`DataFrame::to_parquet`] (index
/// and divisions restored from its manifest), or any folder or glob of Parquet
/// files (no index). One partition per file, in path order; only the columns a
/// query uses are decoded.
pub fn read_parquet(session: &Session, path: impl AsRef<Path>) -> Result<DataFrame> {
    let path = path.as_ref();
    let (pattern, catalog) = if path.is_dir() {
        let catalog = Manifest::exists(path)
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
                    "{}: the manifest has divisions for {} partitions but there are {} files",
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

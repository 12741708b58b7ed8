//! Persisted datasets on disk: [`DataFrame::to_parquet`] writes one Parquet file
//! per partition plus a manifest (schema, index, divisions, the query that made
//! it; [`outcore_storage::catalog::Manifest`]), all into a staging folder renamed
//! into place at the end; [`read_catalog`] reads the manifest back, and
//! [`Session::read`](crate::Session::read) (`frame/read.rs`) opens such a folder as
//! a frame with one partition per file and, from the manifest, the index and its
//! divisions, so a later resample needs no shuffle. Reading takes no lock and writes
//! nothing, so any number of processes can read one dataset at once.
//!
//! ```text
//!   out/part-00000.parquet  part-00001.parquet ...  _manifest (format, schema,
//!                                                    npartitions, index, divisions,
//!                                                    rows, query; written atomically)
//! ```

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion_common::ScalarValue;
use outcore_storage::catalog::Manifest;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::plan::Index;
use super::DataFrame;
use crate::error::{Error, Result};
use crate::io::staged::StagedFolder;
use crate::scheduler::RunStats;

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
        let rows = Arc::new(AtomicU64::new(0));
        let props = writer_properties(&self.schema);
        let dir = staged.path().to_path_buf();
        let written = rows.clone();
        // Each partition's file is written by a task of its own, in parallel.
        let stats = self.write_each_partition(
            "write-parquet",
            Arc::new(move |i, batch: &RecordBatch| {
                let path = dir.join(format!("part-{i:05}.parquet"));
                let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
                let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props.clone()))
                    .map_err(|e| parquet_err(&path, e))?;
                w.write(batch).map_err(|e| parquet_err(&path, e))?;
                let file = w.into_inner().map_err(|e| parquet_err(&path, e))?;
                file.sync_data().map_err(|e| Error::io(&path, e))?;
                written.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                Ok(())
            }),
        )?;
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

/// Snappy pages; dictionary pages only for columns whose values repeat in most
/// data (strings, integers, booleans). Floats and timestamps rarely repeat: the
/// writer interned every value until the dictionary outgrew its page and fell
/// back to plain, a fifth of a persist's time on the time-series set.
fn writer_properties(schema: &SchemaRef) -> WriterProperties {
    let mut b = WriterProperties::builder().set_compression(Compression::SNAPPY);
    for f in schema.fields() {
        if matches!(
            f.data_type(),
            DataType::Float16
                | DataType::Float32
                | DataType::Float64
                | DataType::Timestamp(..)
                | DataType::Date64
        ) {
            b = b.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), false);
        }
    }
    b.build()
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

/// True when `dir` is a dataset folder written by [`DataFrame::to_parquet`] (it
/// has a manifest, or an old sled catalog). [`Session::read`](crate::Session::read)
/// opens such folders with their index and divisions.
pub fn is_dataset(dir: &Path) -> bool {
    Manifest::exists(dir)
}

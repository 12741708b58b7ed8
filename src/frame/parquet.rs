//! Persisted datasets on disk: [`DataFrame::to_parquet`] writes one Parquet file
//! per partition plus a catalog (schema, index, divisions, the query that made
//! it) in a small sled database, `_catalog`, all into a staging folder renamed into
//! place at the end; [`read_catalog`] reads the catalog back, and
//! [`Session::read`](crate::Session::read) (`frame/read.rs`) opens such a folder as
//! a frame with one partition per file and, from the catalog, the index and its
//! divisions, so a later resample needs no shuffle.
//!
//! ```text
//!   out/part-00000.parquet  part-00001.parquet ...  _catalog/ (sled: format, schema,
//!                                                    npartitions, index, divisions,
//!                                                    rows, query)
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion_common::ScalarValue;
use outcore_storage::codec::{decode_batches, encode_batches};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::plan::Index;
use super::DataFrame;
use crate::error::{Error, Result};
use crate::io::staged::StagedFolder;
use crate::scheduler::RunStats;

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

/// True when `dir` is a dataset folder written by [`DataFrame::to_parquet`] (it
/// has a catalog). [`Session::read`](crate::Session::read) opens such folders
/// with their index and divisions.
pub fn is_dataset(dir: &Path) -> bool {
    dir.join(CATALOG).exists()
}

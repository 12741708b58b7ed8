//! Parquet sources, from any writer: a file, a glob, or a folder (searched
//! recursively, with Hive-style `key=value/` folders as columns, see [`hive`]).
//!
//! ```text
//!   open: list files ─► read every footer (in parallel) ─► one schema, checked per file
//!         └─► partitions: consecutive row groups up to `blocksize` (uncompressed),
//!             a larger row group cut into row slices; or one per file (datasets)
//!   task i: prune row groups on statistics (stats) ─► read the kept ones, only the
//!           projected columns ─► plain types ─► partition-folder columns appended
//! ```
//!
//! Types are made plain as they are read, so every source gives the engine the
//! same types: dictionary-encoded columns decode to their values, large and view
//! strings to `Utf8`. Integers, floats, dates and timestamps (with their time zone)
//! keep their width and unit.
//!
//! Invariants: the partitions are fixed when the source is opened (pruning skips
//! row groups inside a partition, leaving it empty, so partition numbers and
//! divisions never shift); a bad file is an error naming the file, and the row
//! group when the footer was fine, never a panic.

pub mod hive;
pub mod stats;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, UInt64Array};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::ScalarValue;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::PageIndexPolicy;

use self::stats::StatsPredicate;
use crate::error::{Error, Result};
use crate::scheduler::RunContext;

/// How a Parquet source is opened.
#[derive(Debug, Clone)]
pub struct ParquetOptions {
    /// Uncompressed bytes per partition: smaller row groups are read together,
    /// larger ones are cut into slices of rows.
    pub blocksize: u64,
    /// Types of partition folder columns (`month=6/`), instead of inferring them.
    pub dtypes: Vec<(String, DataType)>,
    /// One partition per file, whatever its row groups (outcore datasets, whose
    /// divisions are per file).
    pub partition_per_file: bool,
}

/// One file of a source.
#[derive(Debug)]
pub struct ParquetFile {
    /// Where it is.
    pub path: PathBuf,
    meta: ArrowReaderMetadata,
    /// For each of the source's file columns, its position in this file.
    positions: Vec<usize>,
    /// Its partition folder values, one per partition column.
    hive: Vec<ScalarValue>,
}

impl ParquetFile {
    /// Row groups in the file.
    pub fn num_row_groups(&self) -> usize {
        self.meta.metadata().num_row_groups()
    }
}

/// What one partition reads: some row groups of one file, or a slice of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetPart {
    /// Index into [`ParquetSource::files`].
    pub file: usize,
    /// Row groups, in file order (empty for a file with none).
    pub row_groups: Vec<usize>,
    /// Rows `[start, end)` of the only row group, when it is cut into slices.
    pub slice: Option<(usize, usize)>,
}

/// An opened Parquet source: its files' footers, schema and partitions.
#[derive(Debug)]
pub struct ParquetSource {
    /// The files, in path order.
    pub files: Vec<ParquetFile>,
    /// The file columns (plain types, nullable), then the partition folder columns.
    pub schema: SchemaRef,
    /// How many of `schema`'s columns come from inside the files.
    pub file_columns: usize,
    /// The partitions, in order.
    pub parts: Vec<ParquetPart>,
}

/// Types the engine works on: dictionaries decoded, one string and binary type.
fn plain_type(t: &DataType) -> DataType {
    match t {
        DataType::Dictionary(_, v) => plain_type(v),
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        other => other.clone(),
    }
}

fn bad_file(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// True for names Spark, Hive and outcore keep beside data files (`_SUCCESS`,
/// `_catalog`, `.part-0.crc`).
fn hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') || n.starts_with('_'))
}

/// True for `*.parquet`, `*.parq` and `*.pq`.
pub fn has_parquet_suffix(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "parquet" | "parq" | "pq"))
}

/// Every file under `dir`, recursively, hidden names left out, sorted.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = entry.map_err(|e| Error::io(dir, e))?.path();
        if hidden(&p) {
            continue;
        }
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

/// The files a pattern names and the folder partition folders are counted from
/// (`None`: a single file, which has no partition columns; empty: the whole path).
pub fn list_files(pattern: &str) -> Result<(Vec<PathBuf>, Option<PathBuf>)> {
    let path = Path::new(pattern);
    if path.is_dir() {
        let mut files = Vec::new();
        walk(path, &mut files)?;
        // Data files among others (a README, Spark's markers): the Parquet ones.
        if files.iter().any(|f| has_parquet_suffix(f)) {
            files.retain(|f| has_parquet_suffix(f));
        }
        files.sort();
        if files.is_empty() {
            return Err(Error::plan(
                "read_parquet",
                format!("folder {pattern:?} holds no files"),
            ));
        }
        return Ok((files, Some(path.to_path_buf())));
    }
    if path.is_file() {
        return Ok((vec![path.to_path_buf()], None));
    }
    // A glob: every `key=value` folder in the paths counts, also those before the
    // first wildcard (`sales/year=2024/*/*.parquet` keeps `year`), as DuckDB does.
    let files = crate::io::glob::expand(pattern)?;
    Ok((files, Some(PathBuf::new())))
}

/// The message of a caught panic.
fn panic_text(panic: Box<dyn std::any::Any + Send>) -> String {
    let what = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    format!("the Parquet decoder failed: {what}")
}

/// Reads the footer of `path`. A decoder panic on a damaged footer is caught and
/// reported as a bad file, as any other error.
fn load_footer(path: &Path) -> Result<ArrowReaderMetadata> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    std::panic::catch_unwind(|| {
        ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| e.to_string())
    })
    .unwrap_or_else(|panic| Err(panic_text(panic)))
    .map_err(|e| {
        bad_file(
            path,
            format!("not a readable Parquet file (cut short, or not Parquet): {e}"),
        )
    })
}

impl ParquetSource {
    /// Lists the files of `pattern`, reads their footers (on `pool` when given),
    /// checks that they share one schema, finds partition folder columns and
    /// cuts partitions. Reads no data pages.
    pub fn open(
        pattern: &str,
        options: &ParquetOptions,
        pool: Option<&rayon::ThreadPool>,
    ) -> Result<ParquetSource> {
        let (paths, root) = list_files(pattern)?;
        let load = || -> Result<Vec<ArrowReaderMetadata>> {
            use rayon::prelude::*;
            paths.par_iter().map(|p| load_footer(p)).collect()
        };
        let metas = match pool {
            Some(pool) => pool.install(load)?,
            None => load()?,
        };
        let hive = match &root {
            Some(root) => hive::columns(root, &paths, &options.dtypes)?,
            None => hive::HiveColumns::default(),
        };
        // The first file's columns are the source's; the others must match them.
        let first = metas[0].schema().clone();
        let mut fields: Vec<Field> = first
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), plain_type(f.data_type()), true))
            .collect();
        let file_columns = fields.len();
        for f in &hive.fields {
            if fields.iter().any(|g| g.name() == f.name()) {
                return Err(Error::plan(
                    "read_parquet",
                    format!(
                        "column {:?} is both inside the files and a partition folder key \
                         ({}=.../)",
                        f.name(),
                        f.name(),
                    ),
                ));
            }
            fields.push(f.clone());
        }
        if let Some((name, _)) = options
            .dtypes
            .iter()
            .find(|(c, _)| !hive.fields.iter().any(|f| f.name() == c))
        {
            let what = if first.field_with_name(name).is_ok() {
                "Parquet columns carry their own types; --dtype applies to partition folder \
                 columns (month=6/)"
                    .to_string()
            } else {
                format!(
                    "no column {name:?}; the columns are: {}",
                    fields
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(Error::plan(
                "read_parquet",
                format!("--dtype {name}: {what}"),
            ));
        }
        let mut files = Vec::with_capacity(paths.len());
        for (i, (path, meta)) in paths.into_iter().zip(metas).enumerate() {
            let schema = meta.schema().clone();
            let mut positions = Vec::with_capacity(file_columns);
            for want in &fields[..file_columns] {
                let Ok(pos) = schema.index_of(want.name()) else {
                    return Err(bad_file(
                        &path,
                        format!(
                            "has no column {:?}, which {} has; the columns here are: {}",
                            want.name(),
                            files
                                .first()
                                .map_or(path.clone(), |f: &ParquetFile| f.path.clone())
                                .display(),
                            schema
                                .fields()
                                .iter()
                                .map(|f| f.name().as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                };
                let found = plain_type(schema.field(pos).data_type());
                if &found != want.data_type() {
                    return Err(bad_file(
                        &path,
                        format!(
                            "column {:?} is {found} here but {} in {}",
                            want.name(),
                            want.data_type(),
                            files[0].path.display()
                        ),
                    ));
                }
                positions.push(pos);
            }
            if schema.fields().len() != file_columns {
                let extra = schema
                    .fields()
                    .iter()
                    .find(|f| first.field_with_name(f.name()).is_err())
                    .map_or_else(String::new, |f| f.name().clone());
                return Err(bad_file(
                    &path,
                    format!(
                        "has a column {extra:?} that {} has not; read files of one schema \
                         together",
                        files[0].path.display()
                    ),
                ));
            }
            files.push(ParquetFile {
                path,
                meta,
                positions,
                hive: hive.values.get(i).cloned().unwrap_or_default(),
            });
        }
        let parts = cut_parts(&files, options);
        Ok(ParquetSource {
            files,
            schema: Arc::new(Schema::new(fields)),
            file_columns,
            parts,
        })
    }

    /// The uncompressed bytes of the columns `projection` (indexes into
    /// [`schema`](Self::schema); all when `None`) over every file, from the
    /// footers: roughly what reading them holds in memory.
    pub fn uncompressed_bytes(&self, projection: Option<&[usize]>) -> u64 {
        let mut total = 0u64;
        for f in &self.files {
            let meta = f.meta.metadata();
            let descr = meta.file_metadata().schema_descr();
            let roots: Option<Vec<usize>> = projection.map(|p| {
                p.iter()
                    .filter(|&&c| c < self.file_columns)
                    .map(|&c| f.positions[c])
                    .collect()
            });
            for rg in meta.row_groups() {
                for leaf in 0..rg.num_columns() {
                    let wanted = roots
                        .as_ref()
                        .is_none_or(|r| r.contains(&descr.get_column_root_idx(leaf)));
                    if wanted {
                        total += rg.column(leaf).uncompressed_size().max(0) as u64;
                    }
                }
            }
        }
        total
    }

    /// Rows in the row groups (or slice) of `part`, after dropping `skip`ped ones.
    fn rows_of(&self, part: &ParquetPart, row_groups: &[usize]) -> usize {
        match part.slice {
            Some((a, b)) => b - a,
            None => {
                let meta = self.files[part.file].meta.metadata();
                row_groups
                    .iter()
                    .map(|&rg| meta.row_group(rg).num_rows().max(0) as usize)
                    .sum()
            }
        }
    }

    /// Which of `part`'s row groups may hold rows `predicate` keeps.
    fn prune(&self, part: &ParquetPart, predicate: &StatsPredicate) -> Vec<bool> {
        let file = &self.files[part.file];
        let meta = file.meta.metadata();
        let groups: Vec<_> = part
            .row_groups
            .iter()
            .map(|&rg| meta.row_group(rg))
            .collect();
        let rows = UInt64Array::from_iter_values(groups.iter().map(|g| g.num_rows().max(0) as u64));
        let n = groups.len();
        let file_schema = file.meta.schema();
        let mut stats = BTreeMap::new();
        for name in &predicate.columns {
            let Ok(c) = self.schema.index_of(name) else {
                continue;
            };
            let want = self.schema.field(c).data_type();
            if c >= self.file_columns {
                // A partition folder column: one value for the whole file.
                let v = &file.hive[c - self.file_columns];
                let (Ok(a), nulls) = (
                    v.to_array_of_size(n),
                    UInt64Array::from_iter_values(rows.values().iter().map(|&r| {
                        if v.is_null() {
                            r
                        } else {
                            0
                        }
                    })),
                ) else {
                    continue;
                };
                stats.insert(name.clone(), (a.clone(), a, nulls));
                continue;
            }
            let field_name = file_schema.field(file.positions[c]).name();
            let Ok(conv) = StatisticsConverter::try_new(
                field_name,
                file_schema,
                meta.file_metadata().schema_descr(),
            ) else {
                continue;
            };
            let conv = conv.with_missing_null_counts_as_zero(false);
            let (Ok(min), Ok(max), Ok(nulls)) = (
                conv.row_group_mins(groups.iter().copied()),
                conv.row_group_maxes(groups.iter().copied()),
                conv.row_group_null_counts(groups.iter().copied()),
            ) else {
                continue;
            };
            let plain = |a: ArrayRef| -> Option<ArrayRef> {
                if a.data_type() == want {
                    Some(a)
                } else {
                    cast(&a, want).ok()
                }
            };
            if let (Some(min), Some(max)) = (plain(min), plain(max)) {
                stats.insert(name.clone(), (min, max, nulls));
            }
        }
        predicate.may_match(&rows, &stats)
    }

    /// Reads partition `i`: the columns `projection` (indexes into
    /// [`schema`](Self::schema)) of the row groups that `predicate` cannot rule
    /// out. Counts bytes and row groups in `ctx`.
    pub fn read_part(
        &self,
        i: usize,
        projection: &[usize],
        predicate: Option<&StatsPredicate>,
        ctx: &RunContext,
    ) -> Result<RecordBatch> {
        let part = &self.parts[i];
        let file = &self.files[part.file];
        let schema = Arc::new(self.schema.project(projection)?);
        let keep = match predicate {
            Some(p) if !part.row_groups.is_empty() => self.prune(part, p),
            _ => vec![true; part.row_groups.len()],
        };
        let row_groups: Vec<usize> = part
            .row_groups
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(rg, _)| *rg)
            .collect();
        // A row group cut into slices is counted once, by its first slice.
        if part.slice.is_none_or(|(a, _)| a == 0) {
            let skipped = part.row_groups.len() - row_groups.len();
            ctx.add_row_groups(row_groups.len() as u64, skipped as u64);
        }
        let rows = self.rows_of(part, &row_groups);
        if row_groups.is_empty() {
            return Ok(RecordBatch::new_empty(schema));
        }
        let roots: Vec<usize> = projection
            .iter()
            .filter(|&&c| c < self.file_columns)
            .map(|&c| file.positions[c])
            .collect();
        let mut batches = Vec::with_capacity(row_groups.len());
        for &rg in &row_groups {
            let batch = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.read_row_group(file, rg, part.slice, &roots, ctx)
            }))
            .unwrap_or_else(|panic| Err(panic_text(panic)))
            .map_err(|e| {
                bad_file(
                    &file.path,
                    format!(
                        "row group {rg} (of {}, counting from 0): {e}",
                        file.num_row_groups()
                    ),
                )
            })?;
            batches.push(batch);
        }
        let read_schema = batches[0].schema();
        let read = concat_batches(&read_schema, &batches)?;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(projection.len());
        for (&c, field) in projection.iter().zip(schema.fields()) {
            if c >= self.file_columns {
                columns.push(file.hive[c - self.file_columns].to_array_of_size(rows)?);
                continue;
            }
            let name = file.meta.schema().field(file.positions[c]).name();
            let a = read.column_by_name(name).ok_or_else(|| {
                Error::Internal(format!("column {name:?} missing from a Parquet read"))
            })?;
            columns.push(if a.data_type() == field.data_type() {
                a.clone()
            } else {
                cast(a, field.data_type())?
            });
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            schema, columns, &options,
        )?)
    }

    /// Decodes one row group (or a slice of it), root columns `roots` only.
    fn read_row_group(
        &self,
        file: &ParquetFile,
        rg: usize,
        slice: Option<(usize, usize)>,
        roots: &[usize],
        ctx: &RunContext,
    ) -> std::result::Result<RecordBatch, String> {
        let f = File::open(&file.path).map_err(|e| e.to_string())?;
        let meta = match slice {
            // Slices skip whole pages when the file has an offset index.
            Some(_) => {
                let options =
                    ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
                ArrowReaderMetadata::load(&f, options).map_err(|e| e.to_string())?
            }
            None => file.meta.clone(),
        };
        let group = meta.metadata().row_group(rg);
        let descr = meta.metadata().file_metadata().schema_descr();
        let mut bytes: u64 = (0..group.num_columns())
            .filter(|&leaf| roots.contains(&descr.get_column_root_idx(leaf)))
            .map(|leaf| group.column(leaf).compressed_size().max(0) as u64)
            .sum();
        let group_rows = group.num_rows().max(0) as usize;
        let mask = ProjectionMask::roots(descr, roots.iter().copied());
        let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(f, meta.clone())
            .with_projection(mask)
            .with_row_groups(vec![rg]);
        let rows = match slice {
            Some((a, b)) => {
                builder = builder.with_row_selection(RowSelection::from(vec![
                    RowSelector::skip(a),
                    RowSelector::select(b - a),
                ]));
                bytes = bytes * (b - a) as u64 / group_rows.max(1) as u64;
                b - a
            }
            None => group_rows,
        };
        let reader = builder
            .with_batch_size(rows.max(1))
            .build()
            .map_err(|e| e.to_string())?;
        let schema = arrow::array::RecordBatchReader::schema(&reader);
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        ctx.add_bytes_read(bytes);
        let batch = concat_batches(&schema, &batches).map_err(|e| e.to_string())?;
        if batch.num_rows() != rows && !roots.is_empty() {
            return Err(format!(
                "the footer promises {rows} rows but the data holds {}",
                batch.num_rows()
            ));
        }
        Ok(batch)
    }
}

/// Cuts every file into partitions: consecutive row groups while they fit in
/// `blocksize` (uncompressed), a larger row group into equal slices of rows, at
/// least one partition per file (so an empty file is an empty partition).
fn cut_parts(files: &[ParquetFile], options: &ParquetOptions) -> Vec<ParquetPart> {
    let blocksize = options.blocksize.max(1);
    let mut parts = Vec::new();
    for (fi, f) in files.iter().enumerate() {
        let meta = f.meta.metadata();
        let n = meta.num_row_groups();
        if options.partition_per_file || n == 0 {
            parts.push(ParquetPart {
                file: fi,
                row_groups: (0..n).collect(),
                slice: None,
            });
            continue;
        }
        let mut current: Vec<usize> = Vec::new();
        let mut size = 0u64;
        for rg in 0..n {
            let g = meta.row_group(rg);
            let bytes = g.total_byte_size().max(0) as u64;
            let rows = g.num_rows().max(0) as usize;
            if bytes > blocksize && rows > 1 {
                if !current.is_empty() {
                    parts.push(ParquetPart {
                        file: fi,
                        row_groups: std::mem::take(&mut current),
                        slice: None,
                    });
                    size = 0;
                }
                let k = (bytes.div_ceil(blocksize) as usize).min(rows);
                for s in 0..k {
                    let (a, b) = (rows * s / k, rows * (s + 1) / k);
                    parts.push(ParquetPart {
                        file: fi,
                        row_groups: vec![rg],
                        slice: Some((a, b)),
                    });
                }
                continue;
            }
            if !current.is_empty() && size + bytes > blocksize {
                parts.push(ParquetPart {
                    file: fi,
                    row_groups: std::mem::take(&mut current),
                    slice: None,
                });
                size = 0;
            }
            current.push(rg);
            size += bytes;
        }
        if !current.is_empty() {
            parts.push(ParquetPart {
                file: fi,
                row_groups: current,
                slice: None,
            });
        }
    }
    parts
}

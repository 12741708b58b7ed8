//! The one way data comes in: [`Session::read`] looks at a path (a file, a glob, a
//! folder) and its first bytes, picks the reader (CSV, JSON lines, Parquet, or an
//! outcore dataset folder), and hands it the options that apply. Every command of
//! the CLI and the Rust API read through here; the format-specific builders
//! (`read_csv`, `read_json_frame`) stay for full control.
//!
//! ```text
//!   path ─► Format::detect ─┬─ Csv        ─► read_csv (.csv .tsv .txt, .gz/.zst: decoded there)
//!                           ├─ JsonLines  ─► read_json_frame (.json .jsonl .ndjson, compressed too)
//!                           ├─ Parquet    ─► ParquetScan over io::parquet (files, globs, hive folders)
//!                           └─ Dataset    ─► ParquetScan, one partition per file, with the
//!                                            catalog's index and divisions
//! ```
//!
//! Also home of [`ParquetScan`], the plan node of a Parquet source: it decodes only
//! the columns pruning leaves it and takes the filter above it (see
//! [`PlanNode::with_predicate`]) to skip row groups whose statistics rule it out.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};

use super::plan::{layer_name, Index, PlanNode};
use super::DataFrame;
use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::graph::{FnOperator, Graph, Key, Layer, Task, Value};
use crate::io::parquet::stats::StatsPredicate;
use crate::io::parquet::{has_parquet_suffix, ParquetOptions, ParquetSource};
use crate::scheduler::RunContext;
use crate::session::Session;

/// What [`Session::read`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Delimited text (`.csv`, `.tsv`, `.txt`; `.gz` and `.zst` decoded by the reader).
    Csv,
    /// One JSON object a line (`.json`, `.jsonl`, `.ndjson`, compressed or not).
    JsonLines,
    /// Parquet files from any writer, a glob of them, or a folder (with Hive-style
    /// `key=value/` partition folders).
    Parquet,
    /// A folder written by `persist`, `repartition` or [`DataFrame::to_parquet`]:
    /// Parquet files plus a catalog with the index and divisions.
    Dataset,
}

impl Format {
    /// The format a file name says, if it says one: `.csv`, `.tsv`, `.txt`, `.json`,
    /// `.jsonl`, `.ndjson` (each also with `.gz` or `.zst`), `.parquet`, `.parq`,
    /// `.pq`.
    pub fn from_name(name: &str) -> Option<Format> {
        let lower = name.to_ascii_lowercase();
        let inner = lower
            .strip_suffix(".gz")
            .or_else(|| lower.strip_suffix(".zst"))
            .unwrap_or(&lower);
        let ends = |exts: &[&str]| exts.iter().any(|e| inner.ends_with(e));
        if ends(&[".json", ".jsonl", ".ndjson"]) {
            Some(Format::JsonLines)
        } else if inner == lower && ends(&[".parquet", ".parq", ".pq"]) {
            Some(Format::Parquet)
        } else if ends(&[".csv", ".tsv", ".txt", ".psv"]) {
            Some(Format::Csv)
        } else {
            None
        }
    }

    /// The format of a file from its first bytes: Parquet's `PAR1`, a `{` opening
    /// JSON lines, anything else (compressed files too) CSV.
    pub fn sniff(path: &Path) -> Result<Format> {
        let mut head = [0u8; 256];
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..]).map_err(|e| Error::io(path, e))? {
                0 => break,
                k => n += k,
            }
        }
        let head = &head[..n];
        Ok(if head.starts_with(b"PAR1") {
            Format::Parquet
        } else if head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            Format::JsonLines
        } else {
            Format::Csv
        })
    }

    /// What `pattern` holds. A folder: a dataset when it has a catalog, Parquet
    /// when it holds Parquet files or `key=value` folders, else what its files'
    /// names say (or their first bytes). A file or glob: what the name says, else
    /// the first file's first bytes.
    pub fn detect(pattern: &str) -> Result<Format> {
        let path = Path::new(pattern);
        if path.is_dir() {
            if super::parquet::is_dataset(path) {
                return Ok(Format::Dataset);
            }
            let mut names = Vec::new();
            for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
                let p = entry.map_err(|e| Error::io(path, e))?.path();
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if name.starts_with('.') || name.starts_with('_') {
                    continue;
                }
                if (p.is_dir() && name.contains('=')) || has_parquet_suffix(&p) {
                    return Ok(Format::Parquet);
                }
                if p.is_file() {
                    names.push(p);
                }
            }
            names.sort();
            let known: Vec<Format> = names
                .iter()
                .filter_map(|p| Format::from_name(&p.to_string_lossy()))
                .collect();
            return match (known.first(), names.first()) {
                (Some(&f), _) if known.iter().all(|&g| g == f) => Ok(f),
                (Some(_), _) => Ok(Format::Csv),
                (None, Some(first)) => Format::sniff(first),
                // Only sub-folders: Parquet is read recursively, text formats are not.
                (None, None) => {
                    let (files, _) = crate::io::parquet::list_files(pattern)?;
                    if has_parquet_suffix(&files[0]) || Format::sniff(&files[0])? == Format::Parquet
                    {
                        Ok(Format::Parquet)
                    } else {
                        Err(Error::plan(
                            "read",
                            format!(
                                "folder {pattern:?} holds only sub-folders; CSV and JSON lines \
                                 are read from the files of one folder (or give a glob)"
                            ),
                        ))
                    }
                }
            };
        }
        if let Some(f) = Format::from_name(pattern) {
            return Ok(f);
        }
        let files = crate::io::glob::expand(pattern)?;
        match files
            .iter()
            .find_map(|p| Format::from_name(&p.to_string_lossy()))
        {
            Some(f) => Ok(f),
            None => Format::sniff(&files[0]),
        }
    }
}

/// Options for [`Session::read`]; `load` opens the data. Options that do not
/// apply to the format found are an error, never silently ignored.
#[must_use]
#[derive(Debug, Clone)]
pub struct ReadBuilder {
    session: Session,
    pattern: String,
    format: Option<Format>,
    blocksize: Option<u64>,
    dtypes: Vec<(String, DataType)>,
    parse_dates: Vec<String>,
    date_formats: Vec<(String, String)>,
    delimiter: Option<u8>,
    max_line_bytes: Option<u64>,
    sample_lines: Option<usize>,
}

impl ReadBuilder {
    pub(crate) fn new(session: Session, pattern: String) -> ReadBuilder {
        ReadBuilder {
            session,
            pattern,
            format: None,
            blocksize: None,
            dtypes: Vec::new(),
            parse_dates: Vec::new(),
            date_formats: Vec::new(),
            delimiter: None,
            max_line_bytes: None,
            sample_lines: None,
        }
    }

    /// Reads as this format instead of detecting it.
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = Some(format);
        self
    }

    /// Bytes per partition: CSV and JSON blocks, or uncompressed Parquet row groups
    /// (smaller ones read together, larger ones cut into slices).
    pub fn with_blocksize(mut self, bytes: u64) -> Self {
        self.blocksize = Some(bytes);
        self
    }

    /// Declares a column's type: a CSV column, or a Parquet partition folder column
    /// (`month=6/`).
    pub fn with_dtype(mut self, column: impl Into<String>, data_type: DataType) -> Self {
        self.dtypes.push((column.into(), data_type));
        self
    }

    /// Parses these CSV columns as timestamps (Parquet columns must already be
    /// dates or timestamps).
    pub fn with_parse_dates<S: Into<String>>(
        mut self,
        columns: impl IntoIterator<Item = S>,
    ) -> Self {
        self.parse_dates.extend(columns.into_iter().map(Into::into));
        self
    }

    /// Parses a CSV column as timestamps written in a `strftime` format.
    pub fn with_date_format(
        mut self,
        column: impl Into<String>,
        format: impl Into<String>,
    ) -> Self {
        self.date_formats.push((column.into(), format.into()));
        self
    }

    /// The CSV field separator.
    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = Some(delimiter);
        self
    }

    /// The longest CSV record or JSON line accepted; a longer one is an error naming
    /// its file and line.
    pub fn with_max_line_bytes(mut self, bytes: u64) -> Self {
        self.max_line_bytes = Some(bytes);
        self
    }

    /// JSON lines: how many lines per file the schema is inferred from.
    pub fn with_sample_lines(mut self, lines: usize) -> Self {
        self.sample_lines = Some(lines);
        self
    }

    /// Errors for options `format` does not take.
    fn check_options(&self, format: Format) -> Result<()> {
        let name = match format {
            Format::Csv => return Ok(()),
            Format::JsonLines => "JSON lines",
            Format::Parquet | Format::Dataset => "Parquet",
        };
        let unfit = |what: &str, why: &str| {
            Err(Error::plan(
                "read",
                format!("{}: {what} is for CSV; {why}", self.pattern),
            ))
        };
        if self.delimiter.is_some() {
            return unfit("--delimiter", &format!("this is {name}"));
        }
        if !self.date_formats.is_empty() {
            return unfit("--date-format", &format!("{name} values carry their types"));
        }
        if format == Format::JsonLines && !self.dtypes.is_empty() {
            return unfit("--dtype", "JSON values carry their types");
        }
        Ok(())
    }

    /// For JSON lines and Parquet, whose values carry their types: an error unless
    /// every `parse_dates` column already is a date or timestamp.
    fn check_dates(&self, schema: &arrow::datatypes::Schema, name: &str) -> Result<()> {
        for c in &self.parse_dates {
            let t = crate::expr::column_type(schema, c)?;
            if !matches!(
                t,
                DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
            ) {
                return Err(Error::plan(
                    "read",
                    format!(
                        "{}: column {c:?} is {t}, not a date or timestamp; {name} values carry \
                         their types, so only CSV columns are parsed as dates",
                        self.pattern
                    ),
                ));
            }
        }
        Ok(())
    }

    /// JSON lines: the `parse_dates` columns that hold text, parsed as ISO-8601
    /// timestamps (JSON has no timestamp type, so they arrive as strings).
    fn parse_json_dates(&self, df: DataFrame) -> Result<DataFrame> {
        let schema = df.schema();
        let text: Vec<usize> = self
            .parse_dates
            .iter()
            .filter_map(|c| schema.index_of(c).ok())
            .filter(|&i| {
                matches!(
                    schema.field(i).data_type(),
                    DataType::Utf8 | DataType::LargeUtf8
                )
            })
            .collect();
        if text.is_empty() {
            return Ok(df);
        }
        let ts = DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, None);
        let fields: Vec<arrow::datatypes::Field> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let f = f.as_ref().clone();
                if text.contains(&i) {
                    f.with_data_type(ts.clone())
                } else {
                    f
                }
            })
            .collect();
        let out = Arc::new(arrow::datatypes::Schema::new(fields));
        let pattern = self.pattern.clone();
        let names: Vec<String> = text
            .iter()
            .map(|&i| schema.field(i).name().clone())
            .collect();
        let strict = arrow::compute::CastOptions {
            safe: false,
            ..Default::default()
        };
        Ok(df.map_partitions(out.clone(), move |batch| {
            let mut columns = batch.columns().to_vec();
            for name in &names {
                let Ok(i) = batch.schema().index_of(name) else {
                    continue;
                };
                columns[i] =
                    arrow::compute::cast_with_options(&columns[i], &ts, &strict).map_err(|e| {
                        Error::plan(
                            "read",
                            format!(
                                "{pattern}: column {name:?}: expected ISO-8601 timestamps \
                                 (--parse-dates): {e}"
                            ),
                        )
                    })?;
            }
            Ok(RecordBatch::try_new(out.clone(), columns)?)
        }))
    }

    /// Detects the format (unless given) and opens the data: reads headers,
    /// footers and type samples, no rows.
    pub fn load(self) -> Result<DataFrame> {
        let format = match self.format {
            Some(f) => f,
            None => Format::detect(&self.pattern)?,
        };
        self.check_options(format)?;
        let s = &self.session;
        match format {
            Format::Csv => {
                no_parquet_among(&self.pattern, "CSV")?;
                let mut r = s
                    .read_csv(&self.pattern)
                    .with_parse_dates(self.parse_dates.clone());
                if let Some(b) = self.blocksize {
                    r = r.with_blocksize(b);
                }
                for (c, t) in &self.dtypes {
                    r = r.with_dtype(c, t.clone());
                }
                for (c, f) in &self.date_formats {
                    r = r.with_date_format(c, f);
                }
                if let Some(d) = self.delimiter {
                    r = r.with_delimiter(d);
                }
                if let Some(n) = self.max_line_bytes {
                    r = r.with_max_line_bytes(n);
                }
                r.load()
            }
            Format::JsonLines => {
                no_parquet_among(&self.pattern, "JSON lines")?;
                let mut r = s.read_json_frame(&self.pattern);
                if let Some(b) = self.blocksize {
                    r = r.with_blocksize(b);
                }
                if let Some(n) = self.max_line_bytes {
                    r = r.with_max_line_bytes(n);
                }
                if let Some(n) = self.sample_lines {
                    r = r.with_sample_lines(n);
                }
                let df = r.load()?;
                let df = self.parse_json_dates(df)?;
                self.check_dates(&df.schema(), "JSON")?;
                Ok(df)
            }
            Format::Parquet | Format::Dataset => {
                let dataset = format == Format::Dataset
                    || super::parquet::is_dataset(Path::new(&self.pattern));
                let options = ParquetOptions {
                    blocksize: self.blocksize.unwrap_or_else(|| s.blocksize()),
                    dtypes: self.dtypes.clone(),
                    partition_per_file: dataset,
                };
                let index = if dataset {
                    super::parquet::read_catalog(Path::new(&self.pattern))?.index
                } else {
                    None
                };
                let source = ParquetSource::open(&self.pattern, &options, Some(s.pool()))?;
                if let Some(Some(div)) = index.as_ref().map(|ix| ix.divisions.as_ref()) {
                    if div.len() != source.parts.len() + 1 {
                        return Err(Error::plan(
                            "read_parquet",
                            format!(
                                "{}: the catalog has divisions for {} partitions but there are {} files",
                                self.pattern,
                                div.len().saturating_sub(1),
                                source.parts.len()
                            ),
                        ));
                    }
                }
                self.check_dates(&source.schema, "Parquet")?;
                let node = ParquetScan {
                    source: Arc::new(source),
                    projection: None,
                    predicate: None,
                    index,
                };
                Ok(DataFrame::from_node(s, Vec::new(), Arc::new(node)))
            }
        }
    }
}

/// An error when a CSV or JSON glob also matches Parquet files, whose bytes the
/// text readers would report as a bad header.
fn no_parquet_among(pattern: &str, format: &str) -> Result<()> {
    let Ok(files) = crate::io::glob::expand(pattern) else {
        return Ok(()); // the reader reports it
    };
    for f in &files {
        let mut head = [0u8; 4];
        let is_parquet = std::fs::File::open(f)
            .and_then(|mut file| file.read_exact(&mut head))
            .is_ok()
            && &head == b"PAR1";
        if is_parquet {
            return Err(Error::plan(
                "read",
                format!(
                    "{} is a Parquet file, but {pattern:?} was read as {format} (from {}); \
                     give a glob of one format",
                    f.display(),
                    files[0].display()
                ),
            ));
        }
    }
    Ok(())
}

/// The plan node of a Parquet source: one task per partition (row groups of one
/// file, or a slice of one), decoding only the projected columns and skipping the
/// row groups whose statistics rule out the predicate pushed into it.
#[derive(Clone)]
pub struct ParquetScan {
    source: Arc<ParquetSource>,
    /// Indexes of the columns to decode (all when `None`).
    projection: Option<Vec<usize>>,
    /// The filters above, and their rewrite over statistics.
    predicate: Option<(Expr, Arc<StatsPredicate>)>,
    index: Option<Index>,
}

impl PlanNode for ParquetScan {
    fn name(&self) -> &str {
        "read-parquet"
    }
    fn describe(&self) -> String {
        let mut s = format!("read-parquet ({} files)", self.source.files.len());
        if let Some((p, _)) = &self.predicate {
            s += &format!(", row groups pruned by statistics of {p}");
        }
        s
    }
    fn schema(&self, _inputs: &[SchemaRef]) -> SchemaRef {
        match &self.projection {
            None => self.source.schema.clone(),
            Some(c) => Arc::new(self.source.schema.project(c).expect("indexes are valid")),
        }
    }
    fn npartitions(&self, _inputs: &[usize]) -> usize {
        self.source.parts.len()
    }
    fn index(&self) -> Option<Index> {
        self.index.clone()
    }
    fn pruned(&self, required: Option<&BTreeSet<String>>) -> Option<Arc<dyn PlanNode>> {
        let required = required?;
        let schema = &self.source.schema;
        let columns = (0..schema.fields().len())
            .filter(|&i| required.contains(schema.field(i).name()))
            .collect();
        Some(Arc::new(ParquetScan {
            projection: Some(columns),
            ..self.clone()
        }))
    }
    fn with_predicate(&self, predicate: &Expr) -> Option<Arc<dyn PlanNode>> {
        let all = match &self.predicate {
            Some((p, _)) => p.clone().and(predicate.clone()),
            None => predicate.clone(),
        };
        let stats = StatsPredicate::new(&all, &self.source.schema)?;
        Some(Arc::new(ParquetScan {
            predicate: Some((all, Arc::new(stats))),
            ..self.clone()
        }))
    }
    fn estimated_bytes(&self) -> Option<u64> {
        Some(self.source.uncompressed_bytes(self.projection.as_deref()))
    }
    fn input_columns(&self, _required: Option<&BTreeSet<String>>) -> Vec<Option<BTreeSet<String>>> {
        Vec::new()
    }
    fn lower(&self, _inputs: &[Vec<Key>], graph: &mut Graph, ctx: &Arc<RunContext>) -> Vec<Key> {
        let name = layer_name("read-parquet");
        let projection: Arc<[usize]> = match &self.projection {
            Some(p) => p.clone().into(),
            None => (0..self.source.schema.fields().len()).collect(),
        };
        let tasks: Vec<Task> = (0..self.source.parts.len())
            .map(|i| {
                let (source, ctx, projection) =
                    (self.source.clone(), ctx.clone(), projection.clone());
                let predicate = self.predicate.as_ref().map(|(_, s)| s.clone());
                Task {
                    key: Key::new(&name, i),
                    deps: vec![],
                    op: FnOperator::new("read-parquet", move |_| {
                        Ok(Value::Batch(source.read_part(
                            i,
                            &projection,
                            predicate.as_deref(),
                            &ctx,
                        )?))
                    }),
                }
            })
            .collect();
        let keys = tasks.iter().map(|t| t.key.clone()).collect();
        graph.add_layer(Layer { name, tasks });
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_names() {
        for (name, f) in [
            ("a.csv", Some(Format::Csv)),
            ("a.TSV", Some(Format::Csv)),
            ("a.csv.gz", Some(Format::Csv)),
            ("a.csv.zst", Some(Format::Csv)),
            ("data/*.jsonl", Some(Format::JsonLines)),
            ("a.jsonl.gz", Some(Format::JsonLines)),
            ("a.ndjson", Some(Format::JsonLines)),
            ("x/*.parquet", Some(Format::Parquet)),
            ("a.pq", Some(Format::Parquet)),
            ("a.parquet.gz", None),
            ("data/*", None),
        ] {
            assert_eq!(Format::from_name(name), f, "{name}");
        }
    }
}

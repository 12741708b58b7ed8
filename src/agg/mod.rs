//! Aggregations as chunk → combine → finalize (Dask's `Aggregation`), so a groupby
//! never gathers raw rows in one place:
//!
//! ```text
//!   partition ─chunk─► partial ─┐
//!   partition ─chunk─► partial ─┼─combine─► partial ─┐   (tree, split_every at a time)
//!   partition ─chunk─► partial ─┘                    ├─combine+finalize─► answer
//!                                      ... ─────────┘
//! ```
//!
//! A partial is a `RecordBatch`: the key columns, then each aggregation's state
//! columns (sum; count; count, mean, m2; ...). `chunk` runs once per input partition,
//! in parallel; `combine` is associative, so the tree may group partials in any way
//! (it keeps their order, which `first`/`last` rely on); `finalize` runs once.
//! Grouping is by typed groupers ([`grouper`]) and typed accumulators
//! ([`accumulator`]); no `ScalarValue` or boxed value per row.

pub mod accumulator;
pub mod comoments;
pub mod exprs;
pub mod grouper;
pub mod holistic;
pub mod packed_table;
pub mod radix;

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{Error, Result};
use accumulator::{check_input, new_accumulator, state_fields, Accumulator};
use grouper::{new_grouper, new_stored_grouper};

/// An aggregation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggFunc {
    /// Sum of non-null values (0 for none), as pandas.
    Sum,
    /// Number of non-null values.
    Count,
    /// Number of rows, nulls included.
    Size,
    /// Mean of non-null values (null for none).
    Mean,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Sample variance (ddof = 1, as pandas; null below two values).
    Var,
    /// Sample standard deviation (ddof = 1).
    Std,
    /// First non-null value in row order.
    First,
    /// Last non-null value in row order.
    Last,
    /// Number of distinct non-null values.
    Nunique,
    /// Exact median of non-null values (pandas' `median`; null for none).
    Median,
    /// Exact quantile with linear interpolation (pandas' default), at a fraction in
    /// [0, 1].
    Quantile(Fraction),
    /// Pearson correlation of the input column with [`AggSpec::other`], over rows
    /// where both are non-null (null below two such rows or for a constant column).
    Corr,
    /// The `n` largest non-null values of each group, one output row each, largest
    /// first (db-benchmark q8: `sort_values(v, ascending=False).groupby(k).head(n)`).
    Nlargest(u32),
}

/// A fraction in [0, 1] (a quantile's level), comparable and hashable by its bits.
#[derive(Debug, Clone, Copy)]
pub struct Fraction(f64);

impl Fraction {
    /// `q` if it is in [0, 1].
    pub fn new(q: f64) -> Option<Fraction> {
        (0.0..=1.0).contains(&q).then_some(Fraction(q))
    }

    /// The fraction.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for Fraction {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Fraction {}

impl std::hash::Hash for Fraction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

impl AggFunc {
    /// Every function, for help texts.
    pub const ALL: [AggFunc; 15] = [
        AggFunc::Sum,
        AggFunc::Count,
        AggFunc::Size,
        AggFunc::Mean,
        AggFunc::Min,
        AggFunc::Max,
        AggFunc::Var,
        AggFunc::Std,
        AggFunc::First,
        AggFunc::Last,
        AggFunc::Nunique,
        AggFunc::Median,
        AggFunc::Quantile(Fraction(0.5)),
        AggFunc::Corr,
        AggFunc::Nlargest(1),
    ];

    /// The function's name as written in `--agg`.
    pub fn name(self) -> &'static str {
        match self {
            AggFunc::Sum => "sum",
            AggFunc::Count => "count",
            AggFunc::Size => "size",
            AggFunc::Mean => "mean",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::Var => "var",
            AggFunc::Std => "std",
            AggFunc::First => "first",
            AggFunc::Last => "last",
            AggFunc::Nunique => "nunique",
            AggFunc::Median => "median",
            AggFunc::Quantile(_) => "quantile",
            AggFunc::Corr => "corr",
            AggFunc::Nlargest(_) => "nlargest",
        }
    }

    /// The function named `name` (`avg` is `mean`, `len` is `size`); `quantile`
    /// and `nlargest` come with their defaults (0.5; 1), which the parser replaces.
    pub fn from_name(name: &str) -> Option<AggFunc> {
        let n = name.to_ascii_lowercase();
        AggFunc::ALL
            .into_iter()
            .find(|f| f.name() == n)
            .or(match n.as_str() {
                "avg" => Some(AggFunc::Mean),
                "len" => Some(AggFunc::Size),
                "n_unique" | "count_distinct" => Some(AggFunc::Nunique),
                _ => None,
            })
    }

    /// The type of the answer for an input of type `input`.
    pub fn output_type(self, input: &DataType) -> DataType {
        match self {
            AggFunc::Sum if input.is_floating() => DataType::Float64,
            AggFunc::Sum => DataType::Int64,
            AggFunc::Count | AggFunc::Size | AggFunc::Nunique => DataType::Int64,
            AggFunc::Mean | AggFunc::Var | AggFunc::Std => DataType::Float64,
            AggFunc::Median | AggFunc::Quantile(_) | AggFunc::Corr => DataType::Float64,
            AggFunc::Nlargest(_) if input.is_floating() => DataType::Float64,
            AggFunc::Nlargest(_) => DataType::Int64,
            AggFunc::Min | AggFunc::Max | AggFunc::First | AggFunc::Last => input.clone(),
        }
    }

    /// True for functions that give several rows per group (their answers are
    /// exploded into rows, the group's other columns repeated).
    pub fn is_multi_row(self) -> bool {
        matches!(self, AggFunc::Nlargest(_))
    }
}

/// One aggregation of a groupby: a function, the column it reads (none for `size`),
/// and the name of its output column.
#[derive(Debug, Clone, PartialEq)]
pub struct AggSpec {
    /// The function.
    pub func: AggFunc,
    /// The input column; `None` only for `size`.
    pub column: Option<String>,
    /// The second input column of two-column functions (`corr`).
    pub other: Option<String>,
    /// The output column's name.
    pub alias: String,
}

impl AggSpec {
    /// `func(column)`, named `func(column)` (DuckDB's naming).
    pub fn new(func: AggFunc, column: impl Into<String>) -> AggSpec {
        let column = column.into();
        let alias = match func {
            AggFunc::Quantile(q) => format!("quantile({column}, {})", q.get()),
            AggFunc::Nlargest(n) => format!("nlargest({n}, {column})"),
            _ => format!("{}({column})", func.name()),
        };
        AggSpec {
            func,
            alias,
            column: Some(column),
            other: None,
        }
    }

    /// Renames the output column.
    #[must_use]
    pub fn alias(mut self, name: impl Into<String>) -> AggSpec {
        self.alias = name.into();
        self
    }
}

impl fmt::Display for AggSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let column = self.column.as_deref().unwrap_or("");
        match (self.func, &self.other) {
            (AggFunc::Quantile(q), _) => write!(f, "quantile({column}, {})", q.get()),
            (AggFunc::Nlargest(n), _) => write!(f, "nlargest({n}, {column})"),
            (func, Some(o)) => write!(f, "{}({column}, {o})", func.name()),
            (func, None) => write!(f, "{}({column})", func.name()),
        }
    }
}

macro_rules! agg_builders {
    ($($(#[$doc:meta])* $name:ident => $func:ident),* $(,)?) => {
        $( $(#[$doc])* pub fn $name(column: impl Into<String>) -> AggSpec { AggSpec::new(AggFunc::$func, column) } )*
    };
}

agg_builders! {
    /// `sum(column)`
    sum => Sum,
    /// `count(column)`: non-null values
    count => Count,
    /// `mean(column)`
    mean => Mean,
    /// `min(column)`
    min => Min,
    /// `max(column)`
    max => Max,
    /// `var(column)`, ddof = 1
    var => Var,
    /// `std(column)`, ddof = 1
    std => Std,
    /// `first(column)`
    first => First,
    /// `last(column)`
    last => Last,
    /// `nunique(column)`
    nunique => Nunique,
    /// `median(column)`, exact
    median => Median,
}

/// `size()`: rows per group, nulls included.
pub fn size() -> AggSpec {
    AggSpec {
        func: AggFunc::Size,
        column: None,
        other: None,
        alias: "size".into(),
    }
}

/// `quantile(column, q)`: exact, linear interpolation (pandas' default).
pub fn quantile(column: impl Into<String>, q: f64) -> Result<AggSpec> {
    let f = Fraction::new(q)
        .ok_or_else(|| Error::plan("agg", format!("quantile {q} is outside [0, 1]")))?;
    Ok(AggSpec::new(AggFunc::Quantile(f), column))
}

/// `corr(x, y)`: Pearson correlation over rows where both are non-null.
pub fn corr(x: impl Into<String>, y: impl Into<String>) -> AggSpec {
    let (x, y) = (x.into(), y.into());
    AggSpec {
        func: AggFunc::Corr,
        alias: format!("corr({x}, {y})"),
        column: Some(x),
        other: Some(y),
    }
}

/// `nlargest(n, column)`: the `n` largest values per group, one row each.
pub fn nlargest(n: u32, column: impl Into<String>) -> AggSpec {
    AggSpec::new(AggFunc::Nlargest(n), column)
}

/// Parses an `--agg` string of plain aggregations: `sum(v1), mean(v3) as m,
/// size(), count(*)`. For expressions over aggregations (`max(v1) - min(v2) as r`)
/// use [`exprs::parse_agg_list`].
pub fn parse_aggs(input: &str) -> Result<Vec<AggSpec>> {
    let list = exprs::parse_agg_list(input)?;
    if list.exprs.is_some() {
        return Err(Error::Syntax {
            input: input.to_string(),
            position: 0,
            reason: "expected plain aggregations such as sum(v1), without arithmetic".into(),
        });
    }
    Ok(list.aggs)
}

/// A checked groupby-aggregate: key columns, aggregations with their input types,
/// and the partial and output schemas. Made once when the operation is added, then
/// shared by every chunk, combine and finalize task.
#[derive(Debug)]
pub struct AggregatePlan {
    /// Key column names.
    pub keys: Vec<String>,
    /// The aggregations.
    pub aggs: Vec<AggSpec>,
    /// Types of the aggregations' input columns (Int64 for `size`).
    input_types: Vec<DataType>,
    /// Key fields (as in the input, nullable).
    key_fields: Vec<Field>,
    /// Schema of partials: keys, then each aggregation's state columns.
    pub partial_schema: SchemaRef,
    /// Schema of the answer: keys, then one column per aggregation.
    pub output_schema: SchemaRef,
    /// Keep rows whose key is null (as a group of their own).
    pub keep_null_keys: bool,
    /// Sort the answer by its keys (pandas' `sort=True`).
    pub sort: bool,
    /// The output column of the one multi-row aggregation (`nlargest`), whose
    /// lists are exploded into rows by `finalize`.
    explode: Option<usize>,
    /// Schema of stored partials (radix-partitioned aggregation): each group's key
    /// hash, its key in stored form ([`grouper::Grouper::emit_stored`]), then the
    /// state columns.
    stored_schema: SchemaRef,
}

/// Keys ascending, the null key last, as pandas' `dropna=False` (Arrow's default is
/// first).
fn ascending_nulls_last() -> arrow::compute::SortOptions {
    arrow::compute::SortOptions {
        descending: false,
        nulls_first: false,
    }
}

fn plain_type(t: &DataType) -> DataType {
    match t {
        DataType::Dictionary(_, v) => (**v).clone(),
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        other => other.clone(),
    }
}

impl AggregatePlan {
    /// Checks keys and aggregations against `input` and derives the schemas.
    pub fn new(
        input: &Schema,
        keys: Vec<String>,
        aggs: Vec<AggSpec>,
        keep_null_keys: bool,
        sort: bool,
    ) -> Result<Self> {
        if aggs.is_empty() {
            return Err(Error::plan("agg", "no aggregations given"));
        }
        let mut key_fields = Vec::new();
        for k in &keys {
            let t = plain_type(&crate::expr::column_type(input, k)?);
            if !(t.is_integer()
                || matches!(
                    t,
                    DataType::Utf8 | DataType::Boolean | DataType::Date32 | DataType::Timestamp(..)
                ))
            {
                return Err(Error::plan("groupby", format!("cannot group by {k:?} of type {t}; keys must be integer, string, boolean, date or timestamp")));
            }
            key_fields.push(Field::new(k, t, true));
        }
        let mut input_types = Vec::new();
        let mut partial: Vec<Field> = key_fields.clone();
        let mut output: Vec<Field> = key_fields.clone();
        let mut explode = None;
        for (i, a) in aggs.iter().enumerate() {
            let mut t = match &a.column {
                Some(c) => plain_type(&crate::expr::column_type(input, c)?),
                None => DataType::Int64,
            };
            check_input(a.func, a.column.as_deref().unwrap_or(""), &t)?;
            if a.func == AggFunc::Corr {
                let o = a
                    .other
                    .as_deref()
                    .ok_or_else(|| Error::plan("agg", "corr needs two columns: corr(x, y)"))?;
                check_input(a.func, o, &plain_type(&crate::expr::column_type(input, o)?))?;
                // Both columns arrive as one Struct{x, y} of Float64 (see `chunk`).
                t = DataType::Float64;
            }
            if a.func.is_multi_row() {
                if explode.is_some() {
                    return Err(Error::plan(
                        "agg",
                        "only one aggregation may give several rows per group (nlargest)",
                    ));
                }
                explode = Some(keys.len() + i);
            }
            partial.extend(state_fields(a.func, &t, &format!("__{i}_")));
            if output.iter().any(|f| f.name() == &a.alias) {
                return Err(Error::plan(
                    "agg",
                    format!(
                        "two output columns are named {:?}; rename one with `as`",
                        a.alias
                    ),
                ));
            }
            output.push(Field::new(&a.alias, a.func.output_type(&t), true));
            input_types.push(t);
        }
        let mut stored: Vec<Field> = Vec::new();
        let key_types: Vec<DataType> = key_fields.iter().map(|f| f.data_type().clone()).collect();
        if let Some(t) = grouper::stored_key_type(&key_types) {
            stored.push(Field::new("__hash", DataType::UInt64, false));
            stored.push(Field::new("__key", t, true));
        }
        stored.extend(partial.iter().skip(keys.len()).cloned());
        Ok(AggregatePlan {
            stored_schema: Arc::new(Schema::new(stored)),
            keys,
            aggs,
            input_types,
            key_fields,
            partial_schema: Arc::new(Schema::new(partial)),
            output_schema: Arc::new(Schema::new(output)),
            keep_null_keys,
            sort,
            explode,
        })
    }

    /// The columns the aggregation reads.
    pub fn input_columns(&self) -> Vec<String> {
        let mut cols = self.keys.clone();
        for a in &self.aggs {
            for c in a.column.iter().chain(&a.other) {
                if !cols.contains(c) {
                    cols.push(c.clone());
                }
            }
        }
        cols
    }

    fn key_arrays(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        self.keys
            .iter()
            .zip(&self.key_fields)
            .map(|(k, f)| {
                let a = batch
                    .column_by_name(k)
                    .ok_or_else(|| crate::expr::unknown_column(&batch.schema(), k))?;
                Ok(if a.data_type() == f.data_type() {
                    a.clone()
                } else {
                    cast(a, f.data_type())?
                })
            })
            .collect()
    }

    /// Drops rows with a null key unless they are kept.
    fn drop_null_keys(&self, batch: RecordBatch) -> Result<RecordBatch> {
        if self.keep_null_keys || self.keys.is_empty() {
            return Ok(batch);
        }
        let mut keep: Option<arrow::array::BooleanArray> = None;
        for k in &self.keys {
            let a = batch.column_by_name(k).expect("key columns were checked");
            if a.null_count() > 0 {
                let valid = arrow::compute::is_not_null(a)?;
                keep = Some(match keep {
                    None => valid,
                    Some(prev) => arrow::compute::and(&prev, &valid)?,
                });
            }
        }
        Ok(match keep {
            Some(mask) => filter_record_batch(&batch, &mask)?,
            None => batch,
        })
    }

    fn key_types(&self) -> Vec<DataType> {
        self.key_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect()
    }

    fn group(
        &self,
        batch: &RecordBatch,
        groups_hint: usize,
    ) -> Result<(Box<dyn grouper::Grouper>, Vec<u32>)> {
        let mut grouper = new_grouper(&self.key_types())?;
        grouper.reserve(groups_hint);
        let mut ids = Vec::new();
        if self.keys.is_empty() {
            ids = vec![0; batch.num_rows()];
        } else {
            grouper.intern(&self.key_arrays(batch)?, &mut ids)?;
        }
        Ok((grouper, ids))
    }

    /// The chunk step: raw rows of one partition → a partial.
    pub fn chunk(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let batch = self.drop_null_keys(batch.clone())?;
        let (mut grouper, ids) = self.group(&batch, 0)?;
        let n = grouper.ngroups();
        let mut columns = grouper.emit()?;
        columns.extend(self.chunk_states(&batch, &ids, n)?);
        self.batch(self.partial_schema.clone(), columns, n)
    }

    /// The chunk step of radix-partitioned aggregation: raw rows → a partial in
    /// stored form (see [`radix`]), its grouper's table sized for `groups_hint`
    /// groups.
    ///
    /// With `rows_as_groups`, rows are not grouped: each is a group of its own, its
    /// key stored and hashed as grouping would (the finalize task merges equal keys
    /// wherever they are). That is for data whose chunks are nearly all distinct
    /// keys, where a table per chunk costs a second hash pass and saves nothing.
    pub fn chunk_stored(
        &self,
        batch: &RecordBatch,
        groups_hint: usize,
        rows_as_groups: bool,
    ) -> Result<RecordBatch> {
        let batch = self.drop_null_keys(batch.clone())?;
        let (n, ids, (hashes, keys)) = if rows_as_groups && !self.keys.is_empty() {
            let mut grouper = new_grouper(&self.key_types())?;
            let stored = grouper.rows_stored(&self.key_arrays(&batch)?)?;
            let n = batch.num_rows();
            (n, (0..n as u32).collect::<Vec<u32>>(), stored)
        } else {
            let (mut grouper, ids) = self.group(&batch, groups_hint)?;
            (grouper.ngroups(), ids, grouper.emit_stored()?)
        };
        let mut columns: Vec<ArrayRef> =
            vec![Arc::new(arrow::array::UInt64Array::from(hashes)), keys];
        columns.extend(self.chunk_states(&batch, &ids, n)?);
        self.batch(self.stored_schema.clone(), columns, n)
    }

    /// Splits a stored partial by key hash into `parts` partials (the same key always
    /// to the same part), each with its own buffers, so that the spill cache counts
    /// and pages each part on its own. Column by column, each freed once it is
    /// split: the partial and its parts never coexist whole (with one group per
    /// row, two chunk tasks splitting at once held four partials).
    pub fn split_stored(&self, partial: RecordBatch, parts: usize) -> Result<Vec<RecordBatch>> {
        if parts <= 1 || self.keys.is_empty() {
            return Ok(vec![partial]);
        }
        let hashes = self.stored_hashes(&partial)?;
        let of: Vec<u32> = hashes
            .values()
            .iter()
            .map(|&h| radix::part_of(h, parts) as u32)
            .collect();
        let mut counts = vec![0usize; parts];
        for &p in &of {
            counts[p as usize] += 1;
        }
        let mut indices: Vec<Vec<u32>> = counts.iter().map(|&c| Vec::with_capacity(c)).collect();
        for (i, &p) in of.iter().enumerate() {
            indices[p as usize].push(i as u32);
        }
        drop(of);
        let indices: Vec<arrow::array::UInt32Array> = indices
            .into_iter()
            .map(arrow::array::UInt32Array::from)
            .collect();
        let (schema, columns, _) = partial.into_parts();
        let mut split: Vec<Vec<ArrayRef>> = vec![Vec::with_capacity(columns.len()); parts];
        for column in columns {
            for (part, idx) in split.iter_mut().zip(&indices) {
                part.push(arrow::compute::take(column.as_ref(), idx, None)?);
            }
        }
        split
            .into_iter()
            .zip(&indices)
            .map(|(columns, idx)| self.batch(schema.clone(), columns, idx.len()))
            .collect()
    }

    /// About the bytes of the answer `finalize_stored` makes of `parts`: their
    /// bytes as they are (the hash column standing for the table's slack), but a
    /// number per group for a state that is a list of values (a median's: the
    /// answer keeps one of them).
    pub fn answer_bytes_stored(&self, parts: &[&RecordBatch]) -> u64 {
        parts
            .iter()
            .map(|p| {
                p.columns()
                    .iter()
                    .map(|c| match c.data_type() {
                        DataType::List(_) | DataType::LargeList(_) if self.explode.is_none() => {
                            8 * c.len() as u64
                        }
                        _ => outcore_storage::measure::array_bytes(c.as_ref()) as u64,
                    })
                    .sum::<u64>()
            })
            .sum()
    }

    /// The key hashes of a stored partial.
    pub(crate) fn stored_hashes<'a>(
        &self,
        partial: &'a RecordBatch,
    ) -> Result<&'a arrow::array::UInt64Array> {
        partial
            .columns()
            .first()
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::UInt64Array>())
            .ok_or_else(|| Error::Internal("a stored partial has no hash column".into()))
    }

    /// The last step of radix-partitioned aggregation: one part of every chunk's
    /// stored partial → the answer for those keys (sorted by key when asked).
    pub fn finalize_stored(&self, parts: &[&RecordBatch]) -> Result<RecordBatch> {
        let rows: usize = parts.iter().map(|p| p.num_rows()).sum();
        let (n, columns, sorted) =
            self.merge_with(parts.iter().map(|p| Ok(*p)), true, Some(rows))?;
        self.finish(n, columns, sorted)
    }

    /// The answers of the parts (each sorted by key when asked) → one answer, by a
    /// k-way merge on the keys (each key is in one part only).
    pub fn gather(&self, parts: Vec<RecordBatch>) -> Result<RecordBatch> {
        let mut parts: Vec<RecordBatch> = parts.into_iter().filter(|p| p.num_rows() > 0).collect();
        match parts.len() {
            0 => Ok(RecordBatch::new_empty(self.output_schema.clone())),
            1 => Ok(parts.pop().expect("one part")),
            _ if self.merges() => crate::sort::merge_sorted(parts, &self.merge_keys()),
            _ => Ok(arrow::compute::concat_batches(&self.output_schema, &parts)?),
        }
    }

    /// The bytes [`gather`](Self::gather) holds beside `parts`: a whole copy when
    /// it concatenates, less when it merges by key.
    pub fn gather_bytes(&self, parts: &[RecordBatch]) -> u64 {
        if parts.iter().filter(|p| p.num_rows() > 0).count() < 2 {
            0
        } else if self.merges() {
            crate::sort::merge_sorted_bytes(parts, &self.merge_keys())
        } else {
            parts
                .iter()
                .map(|p| outcore_storage::measure::batch_bytes(p) as u64)
                .sum()
        }
    }

    /// Whether answers are gathered by merging on the keys (they are sorted).
    fn merges(&self) -> bool {
        self.sort && !self.keys.is_empty()
    }

    /// The answer's key columns (its first) and their order.
    fn merge_keys(&self) -> Vec<(usize, arrow::compute::SortOptions)> {
        (0..self.keys.len())
            .map(|i| (i, ascending_nulls_last()))
            .collect()
    }

    /// Each aggregation's partial state for rows grouped into `ids` (`n` groups).
    fn chunk_states(&self, batch: &RecordBatch, ids: &[u32], n: usize) -> Result<Vec<ArrayRef>> {
        let mut accs = self.accumulators()?;
        self.update(&mut accs, batch, ids, n)?;
        let mut columns = Vec::new();
        for acc in &mut accs {
            columns.extend(acc.state(n)?);
        }
        Ok(columns)
    }

    /// A fresh accumulator per aggregation.
    fn accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>> {
        self.aggs
            .iter()
            .zip(&self.input_types)
            .map(|(a, t)| new_accumulator(a.func, t))
            .collect()
    }

    /// Adds the raw rows of `batch`, grouped into `ids` (`n` groups now), to each
    /// aggregation's accumulator.
    fn update(
        &self,
        accs: &mut [Box<dyn Accumulator>],
        batch: &RecordBatch,
        ids: &[u32],
        n: usize,
    ) -> Result<()> {
        for ((a, t), acc) in self.aggs.iter().zip(&self.input_types).zip(accs) {
            let column = |c: &str| -> Result<ArrayRef> {
                let v = batch
                    .column_by_name(c)
                    .ok_or_else(|| crate::expr::unknown_column(&batch.schema(), c))?;
                Ok(if v.data_type() == t {
                    v.clone()
                } else {
                    cast(v, t)?
                })
            };
            let values = match (&a.column, &a.other) {
                (Some(x), Some(y)) => {
                    let (x, y) = (column(x)?, column(y)?);
                    Arc::new(arrow::array::StructArray::new(
                        vec![
                            Field::new("x", t.clone(), true),
                            Field::new("y", t.clone(), true),
                        ]
                        .into(),
                        vec![x, y],
                        None,
                    )) as ArrayRef
                }
                (Some(c), None) => column(c)?,
                (None, _) => Arc::new(arrow::array::NullArray::new(batch.num_rows())) as ArrayRef,
            };
            acc.update(&values, ids, n)?;
        }
        Ok(())
    }

    /// Bytes of every aggregation's state per group when each is a fixed number
    /// of bytes and does not depend on the order of the rows (sums, counts,
    /// moments, numeric extremes, co-moments), so that a table folded across
    /// chunks in any order grows with its groups, not its rows; `None` when one is
    /// not (medians, quantiles, top-n, distinct sets, string extremes, and `first`
    /// and `last`, which need the chunks in order).
    pub fn fixed_state_bytes(&self) -> Option<usize> {
        let mut bytes = 0;
        for (a, t) in self.aggs.iter().zip(&self.input_types) {
            if a.func.is_multi_row() || matches!(a.func, AggFunc::First | AggFunc::Last) {
                return None;
            }
            for f in state_fields(a.func, t, "") {
                bytes += f.data_type().primitive_width()? + 1;
            }
        }
        Some(bytes)
    }

    /// A table that folds raw rows of many chunks, for radix-partitioned
    /// aggregation (see [`radix::Folder`]); `None` unless every state is of fixed
    /// size ([`fixed_state_bytes`](Self::fixed_state_bytes)).
    pub fn fold_table(self: &Arc<Self>) -> Result<Option<FoldTable>> {
        let Some(state_bytes) = self.fixed_state_bytes() else {
            return Ok(None);
        };
        if self.keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(FoldTable {
            plan: self.clone(),
            grouper: new_grouper(&self.key_types())?,
            accs: self.accumulators()?,
            ids: Vec::new(),
            state_bytes,
        }))
    }

    /// The combine step: partials (in partition order) → one partial.
    pub fn combine(&self, partials: &[&RecordBatch]) -> Result<RecordBatch> {
        let (n, columns, _) = self.merge(partials.iter().map(|p| Ok(*p)), false)?;
        self.batch(self.partial_schema.clone(), columns, n)
    }

    /// The last step: partials → the answer (sorted by key when asked).
    pub fn finalize(&self, partials: &[&RecordBatch]) -> Result<RecordBatch> {
        self.finalize_each(partials.iter().map(|p| Ok(*p)))
    }

    /// [`finalize`](Self::finalize) over partials that arrive one at a time (decoded
    /// from a shuffle), so only one is in memory besides the running totals.
    pub fn finalize_each<B: Borrow<RecordBatch>>(
        &self,
        partials: impl IntoIterator<Item = Result<B>>,
    ) -> Result<RecordBatch> {
        let (n, columns, sorted) = self.merge(partials, true)?;
        self.finish(n, columns, sorted)
    }

    /// Finalized columns (`n` groups) → the answer: lists exploded, sorted by key
    /// when asked (unless the merge gave them `sorted` already).
    fn finish(
        &self,
        mut n: usize,
        mut columns: Vec<ArrayRef>,
        sorted: bool,
    ) -> Result<RecordBatch> {
        if let Some(list) = self.explode {
            (columns, n) = holistic::explode(columns, list)?;
        }
        let out = self.batch(self.output_schema.clone(), columns, n)?;
        if sorted || !self.sort || self.keys.is_empty() || out.num_rows() < 2 {
            return Ok(out);
        }
        let mut keys: Vec<(usize, arrow::compute::SortOptions)> = (0..self.keys.len())
            .map(|i| (i, ascending_nulls_last()))
            .collect();
        if let Some(list) = self.explode {
            // A group's rows stay largest first.
            keys.push((
                list,
                arrow::compute::SortOptions {
                    descending: true,
                    nulls_first: false,
                },
            ));
        }
        crate::sort::sort_by_columns(&out, &keys)
    }

    /// Merges partials one by one into one grouper and one accumulator per
    /// aggregation, so they are never concatenated into a copy.
    fn merge<B: Borrow<RecordBatch>>(
        &self,
        partials: impl IntoIterator<Item = Result<B>>,
        finalize: bool,
    ) -> Result<(usize, Vec<ArrayRef>, bool)> {
        self.merge_with(partials, finalize, None)
    }

    /// [`merge`](Self::merge) of partials in the plain form (`stored_rows` is
    /// `None`) or in stored form, then with their total rows, for which the
    /// grouper's table is sized up front. The flag says whether the finalized
    /// columns come sorted by key already: several keys, whose grouper holds them
    /// in Arrow's row format, ordered as the answer is, so the groups are put in
    /// order on those bytes and the keys decoded in that order (no second
    /// encoding of the keys to sort them, no gather of the decoded strings).
    fn merge_with<B: Borrow<RecordBatch>>(
        &self,
        partials: impl IntoIterator<Item = Result<B>>,
        finalize: bool,
        stored_rows: Option<usize>,
    ) -> Result<(usize, Vec<ArrayRef>, bool)> {
        let stored = stored_rows.is_some() && !self.keys.is_empty();
        let mut grouper = if let (true, Some(rows)) = (stored, stored_rows) {
            new_stored_grouper(&self.key_types(), rows)?
        } else {
            new_grouper(&self.key_types())?
        };
        if let Some(rows) = stored_rows {
            grouper.reserve(rows);
        }
        // Stored partials: hash and key, then the states; plain ones: the keys.
        let nkeys = if stored { 2 } else { self.keys.len() };
        let mut accs = self.accumulators()?;
        let widths: Vec<usize> = self
            .aggs
            .iter()
            .zip(&self.input_types)
            .map(|(a, t)| state_fields(a.func, t, "").len())
            .collect();
        let mut ids = Vec::new();
        for partial in partials {
            let partial = partial?;
            let partial: &RecordBatch = partial.borrow();
            ids.clear();
            if self.keys.is_empty() {
                ids.resize(partial.num_rows(), 0);
            } else if stored {
                let hashes = partial
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::UInt64Array>()
                    .ok_or_else(|| Error::Internal("a stored partial has no hash column".into()))?;
                grouper.intern_stored(hashes.values(), partial.column(1), &mut ids)?;
            } else {
                grouper.intern(&partial.columns()[..self.keys.len()], &mut ids)?;
            }
            let n = grouper.ngroups();
            let mut col = nkeys;
            for (acc, width) in accs.iter_mut().zip(&widths) {
                acc.merge(&partial.columns()[col..col + width], &ids, n)?;
                col += width;
            }
        }
        let n = grouper.ngroups();
        let order = if finalize && self.sort && self.explode.is_none() && self.keys.len() >= 2 {
            grouper.key_order()?
        } else {
            None
        };
        let mut columns = match &order {
            Some(order) => grouper.emit_in(order)?,
            None => grouper.emit()?,
        };
        let order = order.map(arrow::array::UInt32Array::from);
        for acc in &mut accs {
            if !finalize {
                columns.extend(acc.state(n)?);
                continue;
            }
            let answer = acc.finalize(n)?;
            columns.push(match &order {
                Some(order) => arrow::compute::take(answer.as_ref(), order, None)?,
                None => answer,
            });
        }
        Ok((n, columns, order.is_some()))
    }

    fn batch(&self, schema: SchemaRef, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            schema, columns, &options,
        )?)
    }
}

/// Raw rows of many chunks folded into one grouper and one accumulator per
/// aggregation: a worker's running table in radix-partitioned aggregation
/// (DuckDB's thread-local pre-aggregation), taken out as a stored partial when it
/// is full or the chunks are done.
pub struct FoldTable {
    plan: Arc<AggregatePlan>,
    grouper: Box<dyn grouper::Grouper>,
    accs: Vec<Box<dyn Accumulator>>,
    /// Scratch: the group of each row of the batch being folded.
    ids: Vec<u32>,
    /// Bytes of the states per group.
    state_bytes: usize,
}

impl FoldTable {
    /// Adds `batch`'s rows; returns the groups they added.
    pub fn fold(&mut self, batch: &RecordBatch) -> Result<usize> {
        let before = self.grouper.ngroups();
        let batch = self.plan.drop_null_keys(batch.clone())?;
        self.ids.clear();
        self.grouper
            .intern(&self.plan.key_arrays(&batch)?, &mut self.ids)?;
        let n = self.grouper.ngroups();
        self.plan.update(&mut self.accs, &batch, &self.ids, n)?;
        Ok(n - before)
    }

    /// Groups held.
    pub fn groups(&self) -> usize {
        self.grouper.ngroups()
    }

    /// Bytes held: the grouper's by capacity, the states' by group, and the
    /// scratch of group ids.
    pub fn size_bytes(&self) -> usize {
        self.group_bytes() + self.ids.capacity() * 4
    }

    /// Bytes held for the groups (the grouper's and the states'), without the
    /// scratch: what a group costs, times the groups.
    pub fn group_bytes(&self) -> usize {
        self.grouper.size_bytes() + self.groups() * self.state_bytes
    }

    /// About the most bytes [`take`](Self::take) allocates beside the table: the
    /// stored keys and their hashes as the grouper says, and the states (those of
    /// extremes are copied). It may get the keys ready to emit: no `fold` after.
    pub fn take_bytes(&mut self) -> Result<u64> {
        Ok(self.grouper.emit_stored_bytes()? + (self.groups() * self.state_bytes) as u64)
    }

    /// The groups as a stored partial (the form `chunk_stored` gives); the table
    /// starts afresh. What it allocates beside the table ([`take_bytes`](Self::take_bytes))
    /// is reserved first, within a scheduled task, so that the account pages
    /// results out rather than the process growing past the limit beside them.
    pub fn take(&mut self) -> Result<RecordBatch> {
        let extra = self.take_bytes()?;
        crate::scheduler::reserve_or_exceed("agg running table taken out", extra)?;
        let partial = self.take_reserved();
        crate::scheduler::release(extra);
        partial
    }

    fn take_reserved(&mut self) -> Result<RecordBatch> {
        let plan = self.plan.clone();
        let mut grouper = std::mem::replace(&mut self.grouper, new_grouper(&plan.key_types())?);
        let mut accs = std::mem::replace(&mut self.accs, plan.accumulators()?);
        self.ids = Vec::new();
        let n = grouper.ngroups();
        let (hashes, keys) = grouper.emit_stored()?;
        drop(grouper);
        let mut columns: Vec<ArrayRef> =
            vec![Arc::new(arrow::array::UInt64Array::from(hashes)), keys];
        for acc in &mut accs {
            columns.extend(acc.state(n)?);
        }
        plan.batch(plan.stored_schema.clone(), columns, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_agg_lists() {
        let a = parse_aggs("sum(v1), mean(v3) as m,size(), count(*), std(`x y`)").unwrap();
        assert_eq!(a[0], sum("v1"));
        assert_eq!(a[1], mean("v3").alias("m"));
        assert_eq!(a[2], size());
        assert_eq!(a[3], size());
        assert_eq!(a[4], std("x y"));
        let err = parse_aggs("sum(v1), mode(v3)").unwrap_err().to_string();
        assert!(
            err.contains("character 10") && err.contains("unknown aggregation \"mode\""),
            "{err}"
        );
        assert!(parse_aggs("sum(v1").is_err());
        assert!(parse_aggs("sum(v1) mean(v2)").is_err());
        assert!(parse_aggs("max(v1) - min(v2)").is_err());
    }
}

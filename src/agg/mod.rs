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
pub mod grouper;

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{Error, Result};
use accumulator::{check_input, new_accumulator, state_fields};
use grouper::new_grouper;

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
}

impl AggFunc {
    /// Every function, for help texts.
    pub const ALL: [AggFunc; 11] = [
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
        }
    }

    /// The function named `name` (`avg` is `mean`, `len` is `size`).
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
            AggFunc::Min | AggFunc::Max | AggFunc::First | AggFunc::Last => input.clone(),
        }
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
    /// The output column's name.
    pub alias: String,
}

impl AggSpec {
    /// `func(column)`, named `func(column)` (DuckDB's naming).
    pub fn new(func: AggFunc, column: impl Into<String>) -> AggSpec {
        let column = column.into();
        AggSpec {
            func,
            alias: format!("{}({column})", func.name()),
            column: Some(column),
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
        write!(
            f,
            "{}({})",
            self.func.name(),
            self.column.as_deref().unwrap_or("")
        )
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
}

/// `size()`: rows per group, nulls included.
pub fn size() -> AggSpec {
    AggSpec {
        func: AggFunc::Size,
        column: None,
        alias: "size".into(),
    }
}

/// Parses an `--agg` string: `sum(v1), mean(v3) as m, size(), count(*)`.
pub fn parse_aggs(input: &str) -> Result<Vec<AggSpec>> {
    let syntax = |position: usize, reason: String| Error::Syntax {
        input: input.to_string(),
        position,
        reason,
    };
    let mut out = Vec::new();
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    let word = |i: &mut usize| -> String {
        let s = *i;
        while *i < chars.len()
            && (chars[*i].is_alphanumeric() || chars[*i] == '_' || chars[*i] == '.')
        {
            *i += 1;
        }
        chars[s..*i].iter().collect()
    };
    loop {
        skip_ws(&mut i);
        let fstart = i;
        let fname = word(&mut i);
        if fname.is_empty() {
            return Err(syntax(i, "expected an aggregation such as sum(v1)".into()));
        }
        let func = AggFunc::from_name(&fname).ok_or_else(|| {
            let names: Vec<_> = AggFunc::ALL.iter().map(|f| f.name()).collect();
            syntax(
                fstart,
                format!("unknown aggregation {fname:?}; known: {}", names.join(", ")),
            )
        })?;
        skip_ws(&mut i);
        if chars.get(i) != Some(&'(') {
            return Err(syntax(i, format!("expected `(` after {fname}")));
        }
        i += 1;
        skip_ws(&mut i);
        let cstart = i;
        let column = if chars.get(i) == Some(&'`') {
            let close = chars[i + 1..]
                .iter()
                .position(|&c| c == '`')
                .ok_or_else(|| syntax(i, "unterminated `name`".into()))?;
            let c: String = chars[i + 1..i + 1 + close].iter().collect();
            i += close + 2;
            c
        } else if chars.get(i) == Some(&'*') {
            i += 1;
            String::new()
        } else {
            word(&mut i)
        };
        skip_ws(&mut i);
        if chars.get(i) != Some(&')') {
            return Err(syntax(i, "expected `)`".into()));
        }
        i += 1;
        let mut spec = if column.is_empty() {
            match func {
                AggFunc::Size | AggFunc::Count => size(),
                _ => return Err(syntax(cstart, format!("{fname} needs a column"))),
            }
        } else {
            AggSpec::new(func, column)
        };
        skip_ws(&mut i);
        let save = i;
        let kw = word(&mut i);
        if kw.eq_ignore_ascii_case("as") {
            skip_ws(&mut i);
            let astart = i;
            let alias = word(&mut i);
            if alias.is_empty() {
                return Err(syntax(astart, "expected a name after `as`".into()));
            }
            spec = spec.alias(alias);
            skip_ws(&mut i);
        } else {
            i = save;
        }
        out.push(spec);
        match chars.get(i) {
            None => break,
            Some(',') => i += 1,
            Some(_) => return Err(syntax(i, "expected `,` or the end".into())),
        }
    }
    Ok(out)
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
        for (i, a) in aggs.iter().enumerate() {
            let t = match &a.column {
                Some(c) => plain_type(&crate::expr::column_type(input, c)?),
                None => DataType::Int64,
            };
            check_input(a.func, a.column.as_deref().unwrap_or(""), &t)?;
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
        Ok(AggregatePlan {
            keys,
            aggs,
            input_types,
            key_fields,
            partial_schema: Arc::new(Schema::new(partial)),
            output_schema: Arc::new(Schema::new(output)),
            keep_null_keys,
            sort,
        })
    }

    /// The columns the aggregation reads.
    pub fn input_columns(&self) -> Vec<String> {
        let mut cols = self.keys.clone();
        for a in &self.aggs {
            if let Some(c) = &a.column {
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

    fn group(&self, batch: &RecordBatch) -> Result<(Box<dyn grouper::Grouper>, Vec<u32>)> {
        let mut grouper = new_grouper(&self.key_types())?;
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
        let (mut grouper, ids) = self.group(&batch)?;
        let n = grouper.ngroups();
        let mut columns = grouper.emit()?;
        for (a, t) in self.aggs.iter().zip(&self.input_types) {
            let mut acc = new_accumulator(a.func, t)?;
            let values = match &a.column {
                Some(c) => batch
                    .column_by_name(c)
                    .ok_or_else(|| crate::expr::unknown_column(&batch.schema(), c))?
                    .clone(),
                None => Arc::new(arrow::array::NullArray::new(batch.num_rows())) as ArrayRef,
            };
            let values = if values.data_type() == t || a.column.is_none() {
                values
            } else {
                cast(&values, t)?
            };
            acc.update(&values, &ids, n)?;
            columns.extend(acc.state(n)?);
        }
        self.batch(self.partial_schema.clone(), columns, n)
    }

    /// The combine step: partials (in partition order) → one partial.
    pub fn combine(&self, partials: &[&RecordBatch]) -> Result<RecordBatch> {
        let (n, columns) = self.merge(partials.iter().map(|p| Ok(*p)), false)?;
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
        let (n, columns) = self.merge(partials, true)?;
        let out = self.batch(self.output_schema.clone(), columns, n)?;
        if !self.sort || self.keys.is_empty() || out.num_rows() < 2 {
            return Ok(out);
        }
        let ascending_nulls_last = arrow::compute::SortOptions {
            descending: false,
            // The null key last, as pandas' `dropna=False` (Arrow's default is first).
            nulls_first: false,
        };
        let keys: Vec<(usize, arrow::compute::SortOptions)> = (0..self.keys.len())
            .map(|i| (i, ascending_nulls_last))
            .collect();
        crate::sort::sort_by_columns(&out, &keys)
    }

    /// Merges partials one by one into one grouper and one accumulator per
    /// aggregation, so they are never concatenated into a copy.
    fn merge<B: Borrow<RecordBatch>>(
        &self,
        partials: impl IntoIterator<Item = Result<B>>,
        finalize: bool,
    ) -> Result<(usize, Vec<ArrayRef>)> {
        let mut grouper = new_grouper(&self.key_types())?;
        let mut accs = self
            .aggs
            .iter()
            .zip(&self.input_types)
            .map(|(a, t)| new_accumulator(a.func, t))
            .collect::<Result<Vec<_>>>()?;
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
            } else {
                grouper.intern(&partial.columns()[..self.keys.len()], &mut ids)?;
            }
            let n = grouper.ngroups();
            let mut col = self.keys.len();
            for (acc, width) in accs.iter_mut().zip(&widths) {
                acc.merge(&partial.columns()[col..col + width], &ids, n)?;
                col += width;
            }
        }
        let n = grouper.ngroups();
        let mut columns = grouper.emit()?;
        for acc in &mut accs {
            if finalize {
                columns.push(acc.finalize(n)?);
            } else {
                columns.extend(acc.state(n)?);
            }
        }
        Ok((n, columns))
    }

    fn batch(&self, schema: SchemaRef, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            schema, columns, &options,
        )?)
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
        let err = parse_aggs("sum(v1), median(v3)").unwrap_err().to_string();
        assert!(
            err.contains("character 10") && err.contains("unknown aggregation \"median\""),
            "{err}"
        );
        assert!(parse_aggs("sum(v1").is_err());
        assert!(parse_aggs("sum(v1) mean(v2)").is_err());
    }
}

//! Ordering rows across partitions: `set_index` (a column whose values are ordered
//! across partitions, with known divisions), `sort_values`, `nlargest`/`nsmallest`,
//! and `loc`, which uses known divisions to read only the partitions that can hold a
//! range.
//!
//! `set_index` and `sort_values` work as Dask's do: a first pass reads only the
//! column and samples each partition (exact min and max, a few hundred values at
//! random), the boundaries come from weighted quantiles of the samples, and the rows
//! then move through the shuffle store by range; each output partition is sorted.
//! With `sorted`, the first pass only checks the order and the rows stay put.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::SortOptions;
use arrow::datatypes::DataType;
use datafusion_common::ScalarValue;

use super::partitioning::{
    choose_divisions, sample_column, ColumnSample, Partitioner, RangeDivisions,
};
use super::plan::{Index, Plan};
use super::DataFrame;
use crate::error::{Error, Result};
use crate::expr::{col, Expr};
use crate::graph::{Operator, Value};

/// Values sampled from each partition to choose divisions: Dask draws about 100 per
/// output partition overall; a few hundred per input partition keeps the quantiles
/// within a fraction of a partition of the truth.
const SAMPLES_PER_PARTITION: usize = 256;

/// How [`DataFrame::set_index_with`] finds its divisions.
#[derive(Debug, Clone, Default)]
pub struct SetIndexOptions {
    sorted: bool,
    npartitions: Option<usize>,
    divisions: Option<Vec<ScalarValue>>,
}

impl SetIndexOptions {
    /// The column is already in order across partitions (time-ordered files, say):
    /// check it, take the divisions from each partition's min and max, move no rows.
    pub fn sorted(mut self) -> Self {
        self.sorted = true;
        self
    }

    /// Output partitions (default: as many as the input has).
    pub fn npartitions(mut self, n: usize) -> Self {
        self.npartitions = Some(n);
        self
    }

    /// Use these boundaries instead of sampling: `n + 1` sorted values make `n`
    /// partitions. Rows below the first go to the first partition and above the
    /// last to the last, as in Dask.
    pub fn divisions(mut self, divisions: Vec<ScalarValue>) -> Self {
        self.divisions = Some(divisions);
        self
    }
}

const ASCENDING: SortOptions = SortOptions {
    descending: false,
    nulls_first: false,
};

impl DataFrame {
    /// The frame indexed by `column`: rows range-partitioned and sorted by it, with
    /// known divisions. Rows whose value is null go last, as pandas' `sort_values`
    /// puts NaN: in partitions of their own after the values, as many as their
    /// share of the rows asks for (their divisions repeat the last value). A value
    /// too frequent for one partition is spread over several, whose divisions
    /// repeat it (Dask allows that).
    pub fn set_index(&self, column: &str) -> Result<DataFrame> {
        self.set_index_with(column, SetIndexOptions::default())
    }

    /// [`set_index`](Self::set_index) for a column already in order across
    /// partitions: checks the order (an error names the partition, file and line
    /// where it breaks) and moves no rows.
    pub fn set_index_sorted(&self, column: &str) -> Result<DataFrame> {
        self.set_index_with(column, SetIndexOptions::default().sorted())
    }

    /// [`set_index`](Self::set_index) with options.
    pub fn set_index_with(&self, column: &str, options: SetIndexOptions) -> Result<DataFrame> {
        let t = orderable_type(self, column, "set_index")?;
        if self.known_divisions() && self.index_column().as_deref() == Some(column) {
            return Ok(self.clone());
        }
        let index = |divisions: Option<Vec<ScalarValue>>| Index {
            column: column.to_string(),
            divisions: divisions.map(Into::into),
        };
        if let Some(divisions) = options.divisions {
            let divisions = RangeDivisions {
                divisions: check_divisions(divisions, &t)?,
                null_partitions: 0,
            };
            let shuffled = self.range_shuffle(column, ASCENDING, &divisions, &[(column, true)])?;
            return Ok(shuffled.with_index(index(Some(divisions.divisions))));
        }
        if options.sorted {
            let samples = self.sample(column, ASCENDING, 0)?;
            let divisions = self.sorted_divisions(column, &samples)?;
            return Ok(self.with_index(index(divisions)));
        }
        let n = options
            .npartitions
            .unwrap_or_else(|| self.sorted_npartitions())
            .max(1);
        crate::graph::check_partitions(
            "set_index",
            &format!("npartitions {n}"),
            n,
            "ask for fewer",
        )?;
        let samples = self.sample(column, ASCENDING, SAMPLES_PER_PARTITION)?;
        // One key: equal values may be spread over several partitions.
        match choose_divisions(&samples, &t, ASCENDING, n, true)? {
            // No values at all: nothing to order by.
            None => Ok(self.with_index(index(None))),
            Some(divisions) => {
                let shuffled =
                    self.range_shuffle(column, ASCENDING, &divisions, &[(column, true)])?;
                Ok(shuffled.with_index(index(Some(divisions.index_divisions()))))
            }
        }
    }

    /// The rows sorted by `by` (column, ascending), the first column first, nulls
    /// last, across partitions: partition `i`'s rows all come before partition
    /// `i + 1`'s. Rows move through the shuffle store by ranges of the first column.
    pub fn sort_values(&self, by: &[(&str, bool)]) -> Result<DataFrame> {
        self.sort_values_into(by, None)
    }

    /// [`sort_values`](Self::sort_values) into `npartitions` output partitions, as
    /// Dask's `sort_values(npartitions=…)`; by default as many as the input has, or
    /// more when its partitions would be large for the memory limit.
    pub fn sort_values_with(&self, by: &[(&str, bool)], npartitions: usize) -> Result<DataFrame> {
        self.sort_values_into(by, Some(npartitions))
    }

    fn sort_values_into(
        &self,
        by: &[(&str, bool)],
        npartitions: Option<usize>,
    ) -> Result<DataFrame> {
        let Some(&(first, ascending)) = by.first() else {
            return Err(Error::plan("sort_values", "give at least one column"));
        };
        for (c, _) in by {
            orderable_type(self, c, "sort_values")?;
        }
        let t = orderable_type(self, first, "sort_values")?;
        let options = SortOptions {
            descending: !ascending,
            nulls_first: false,
        };
        let samples = self.sample(first, options, SAMPLES_PER_PARTITION)?;
        // Rows equal in the first column are ordered by the next: they must stay
        // together, so only a sort on one column spreads hot values and nulls.
        let spread = by.len() == 1;
        let n = npartitions
            .unwrap_or_else(|| self.sorted_npartitions())
            .max(1);
        crate::graph::check_partitions(
            "sort_values",
            &format!("npartitions {n}"),
            n,
            "ask for fewer",
        )?;
        match choose_divisions(&samples, &t, options, n, spread)? {
            None => self.range_shuffle(
                first,
                options,
                &RangeDivisions {
                    divisions: Vec::new(),
                    null_partitions: 0,
                },
                by,
            ),
            Some(divisions) => self.range_shuffle(first, options, &divisions, by),
        }
    }

    /// The `n` rows with the largest values of `column` (nulls never), largest
    /// first, in one partition: each partition keeps its own `n`, then a tree of
    /// merges keeps `n` of those.
    pub fn nlargest(&self, n: usize, column: &str) -> Result<DataFrame> {
        self.top_n(n, column, true)
    }

    /// The `n` rows with the smallest values of `column`, smallest first.
    pub fn nsmallest(&self, n: usize, column: &str) -> Result<DataFrame> {
        self.top_n(n, column, false)
    }

    fn top_n(&self, n: usize, column: &str, largest: bool) -> Result<DataFrame> {
        orderable_type(self, column, if largest { "nlargest" } else { "nsmallest" })?;
        let key = column.to_string();
        let schema = self.schema();
        let keep = move |batches: &[RecordBatch]| -> Result<RecordBatch> {
            let all = arrow::compute::concat_batches(&schema, batches)?;
            let i = all
                .schema()
                .index_of(&key)
                .map_err(|_| crate::expr::unknown_column(&all.schema(), &key))?;
            let valid = arrow::compute::is_not_null(all.column(i))?;
            let all = arrow::compute::filter_record_batch(&all, &valid)?;
            let options = SortOptions {
                descending: largest,
                nulls_first: false,
            };
            let sorted = crate::sort::sort_by_columns(&all, &[(i, options)])?;
            Ok(sorted.slice(0, n.min(sorted.num_rows())))
        };
        let keep = Arc::new(keep);
        let each = keep.clone();
        let per_partition = self.map_partitions(self.schema(), move |b| each(&[b]));
        Ok(per_partition.tree_reduce("top-n", keep))
    }

    /// Rows whose index lies in `[lo, hi]` (both included; `None` is unbounded), as
    /// pandas' `df.loc[lo:hi]`. Needs known divisions, which say which partitions can
    /// hold such rows; the others are never read.
    pub fn loc(&self, lo: Option<ScalarValue>, hi: Option<ScalarValue>) -> Result<DataFrame> {
        let (Some(column), Some(divisions)) = (self.index_column(), self.divisions()) else {
            return Err(Error::plan(
                "loc",
                "the frame has no index with known divisions; set_index first",
            ));
        };
        let t = crate::expr::column_type(&self.schema(), &column)?;
        let lo = lo.map(|v| cast_scalar(v, &t, "loc")).transpose()?;
        let hi = hi.map(|v| cast_scalar(v, &t, "loc")).transpose()?;
        let n = divisions.len() - 1;
        let below = |a: &ScalarValue, b: &ScalarValue| a.partial_cmp(b).is_some_and(|o| o.is_lt());
        let last = &divisions[n];
        let keep: Vec<usize> = (0..n)
            .filter(|&i| {
                let (start, end) = (&divisions[i], &divisions[i + 1]);
                // Partition i holds [start, end); [start, end] when it ends at the
                // last division or starts where it ends (a value spread over
                // several partitions repeats as a division; the partitions of
                // nulls repeat the last).
                let end_included = end == last || start == end;
                let ends_before_lo = lo
                    .as_ref()
                    .is_some_and(|lo| below(end, lo) || (!end_included && end == lo));
                let starts_after_hi = hi.as_ref().is_some_and(|hi| below(hi, start));
                !ends_before_lo && !starts_after_hi
            })
            .collect();
        let mut condition: Option<Expr> = None;
        for (bound, is_lo) in [(&lo, true), (&hi, false)] {
            if let Some(v) = bound {
                let c = if is_lo {
                    col(&column).gt_eq(Expr::Literal(v.clone()))
                } else {
                    col(&column).lt_eq(Expr::Literal(v.clone()))
                };
                condition = Some(match condition {
                    None => c,
                    Some(prev) => prev.and(c),
                });
            }
        }
        let selected = self.select_partitions(keep.clone());
        let filtered = match condition {
            Some(c) => selected.filter(c)?,
            None => selected,
        };
        let new_divisions = if keep.is_empty() {
            None
        } else {
            let mut d: Vec<ScalarValue> = keep.iter().map(|&i| divisions[i].clone()).collect();
            d.push(divisions[keep[keep.len() - 1] + 1].clone());
            if let Some(lo) = &lo {
                if below(&d[0], lo) {
                    d[0] = lo.clone();
                }
            }
            if let Some(hi) = &hi {
                let last = d.len() - 1;
                if below(hi, &d[last]) {
                    d[last] = hi.clone();
                }
            }
            Some(d.into())
        };
        Ok(filtered.with_index(Index {
            column,
            divisions: new_divisions,
        }))
    }

    fn range_shuffle(
        &self,
        column: &str,
        options: SortOptions,
        divisions: &RangeDivisions,
        by: &[(&str, bool)],
    ) -> Result<DataFrame> {
        let npartitions = divisions.npartitions().max(1);
        crate::graph::check_partitions(
            "set_index",
            &format!("{} divisions", divisions.divisions.len()),
            npartitions,
            "ask for fewer partitions",
        )?;
        let sort = by
            .iter()
            .map(|(c, asc)| {
                (
                    c.to_string(),
                    SortOptions {
                        descending: !asc,
                        nulls_first: false,
                    },
                )
            })
            .collect();
        Ok(self.with_plan(Plan::Shuffle {
            input: self.plan.clone(),
            by: Partitioner::Range {
                column: column.to_string(),
                options,
                divisions: divisions.divisions.clone().into(),
                spread: by.len() == 1,
                null_partitions: divisions.null_partitions,
            },
            npartitions,
            sort,
        }))
    }

    /// Output partitions of a sort or set_index when none are asked for: as many as
    /// the input has, or more when the estimated rows would make partitions larger
    /// than [`MemoryPolicy::sorted_partition_bytes`](crate::scheduler::MemoryPolicy::sorted_partition_bytes)
    /// (an Arrow copy is taken as twice the bytes read), so that a sort under a
    /// small limit never needs one partition's rows beyond its share of the limit.
    fn sorted_npartitions(&self) -> usize {
        let n = self.npartitions().max(1);
        let Some(bytes) = self.plan.estimated_bytes() else {
            return n;
        };
        let session = self.session();
        let per = session
            .memory_policy()
            .sorted_partition_bytes(session.threads());
        let wanted = (bytes.saturating_mul(2)).div_ceil(per);
        n.max(wanted.min(crate::graph::MAX_PARTITIONS as u64 / 4) as usize)
    }

    /// The sampling pass: reads only `column` and samples every partition.
    fn sample(&self, column: &str, options: SortOptions, k: usize) -> Result<Vec<ColumnSample>> {
        let only = self.select(&[column])?;
        let op: Arc<dyn Operator> = Arc::new(SampleOp { options, k });
        let values = only.run_per_partition("sample", op)?;
        values.iter().map(|v| ColumnSample::from_value(v)).collect()
    }

    /// Divisions of a column declared sorted: each partition's min, then the last
    /// max; an error where the order breaks.
    fn sorted_divisions(
        &self,
        column: &str,
        samples: &[ColumnSample],
    ) -> Result<Option<Vec<ScalarValue>>> {
        let unsorted = |partition: usize, row: usize, what: String| {
            Error::plan(
                "set_index",
                format!(
                    "column {column:?} is declared sorted, but {what} at {}; \
                     drop `sorted` to sort it",
                    self.locate_row(partition, row)
                ),
            )
        };
        let mut previous: Option<(usize, &ScalarValue)> = None;
        for (p, s) in samples.iter().enumerate() {
            if s.nulls > 0 {
                return Err(Error::plan(
                    "set_index",
                    format!(
                        "column {column:?} is declared sorted but has {} null values in partition {p}; \
                         drop `sorted` to sort them last",
                        s.nulls
                    ),
                ));
            }
            if let Some(row) = s.first_out_of_order {
                return Err(unsorted(
                    p,
                    row,
                    "a value is smaller than the one before it".into(),
                ));
            }
            if let (Some(min), Some(max)) = (&s.min, &s.max) {
                if let Some((q, prev_max)) = previous {
                    if min.partial_cmp(prev_max).is_some_and(|o| o.is_lt()) {
                        return Err(unsorted(
                            p,
                            0,
                            format!(
                                "partition {p} starts at {min}, below partition {q}'s last value {prev_max}"
                            ),
                        ));
                    }
                }
                previous = Some((p, max));
            }
        }
        let Some((_, last)) = previous else {
            return Ok(None);
        };
        // An empty partition takes the next partition's start, so that the
        // divisions stay sorted and say it holds nothing.
        let mut divisions: Vec<ScalarValue> = Vec::with_capacity(samples.len() + 1);
        let mut next_start = last.clone();
        for s in samples.iter().rev() {
            if let Some(min) = &s.min {
                next_start = min.clone();
            }
            divisions.push(next_start.clone());
        }
        divisions.reverse();
        divisions.push(last.clone());
        Ok(Some(divisions))
    }
}

/// The type of `column`, if rows can be ordered by it.
fn orderable_type(df: &DataFrame, column: &str, op: &'static str) -> Result<DataType> {
    let t = crate::expr::column_type(&df.schema(), column)?;
    let orderable = t.is_primitive()
        || matches!(
            t,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean
        );
    if !orderable {
        return Err(Error::plan(
            op,
            format!("cannot order rows by {column:?} of type {t}"),
        ));
    }
    Ok(t)
}

fn cast_scalar(v: ScalarValue, t: &DataType, op: &'static str) -> Result<ScalarValue> {
    if &v.data_type() == t {
        return Ok(v);
    }
    v.cast_to(t).map_err(|_| {
        Error::plan(
            op,
            format!(
                "{v} ({}) cannot be compared with the index's type {t}",
                v.data_type()
            ),
        )
    })
}

/// Given divisions: cast to the column's type and checked to be sorted.
fn check_divisions(divisions: Vec<ScalarValue>, t: &DataType) -> Result<Vec<ScalarValue>> {
    if divisions.len() < 2 {
        return Err(Error::plan(
            "set_index",
            format!(
                "divisions need at least two values (n + 1 for n partitions), got {}",
                divisions.len()
            ),
        ));
    }
    let divisions = divisions
        .into_iter()
        .map(|d| cast_scalar(d, t, "set_index"))
        .collect::<Result<Vec<_>>>()?;
    for w in divisions.windows(2) {
        if w[0].is_null() || w[1].is_null() || w[1].partial_cmp(&w[0]).is_none_or(|o| o.is_lt()) {
            return Err(Error::plan(
                "set_index",
                format!(
                    "divisions must be sorted and not null: {} then {}",
                    w[0], w[1]
                ),
            ));
        }
    }
    Ok(divisions)
}

/// Samples the single column of a partition ([`sample_column`]).
struct SampleOp {
    options: SortOptions,
    k: usize,
}

impl Operator for SampleOp {
    fn name(&self) -> &str {
        "sample"
    }
    fn run(&self, inputs: &[Arc<Value>]) -> Result<Value> {
        let [input] = inputs else {
            return Err(Error::Internal("sample takes one input".into()));
        };
        let batch = input.as_batch()?;
        let column: &ArrayRef = batch.column(0);
        // The seed only needs to differ between partitions of similar content;
        // the row count and first value serve and keep runs repeatable.
        let seed = batch.num_rows() as u64;
        Ok(sample_column(column, self.options, self.k, seed)?.to_value())
    }
}

impl ColumnSample {
    /// As a task value: counts and order break as scalars, then min, max and the
    /// sample.
    fn to_value(&self) -> Value {
        let int = |v: Option<usize>| Value::Scalar(ScalarValue::Int64(v.map(|v| v as i64)));
        let scalar =
            |v: &Option<ScalarValue>| Value::Scalar(v.clone().unwrap_or(ScalarValue::Null));
        let sample = match &self.sample {
            Some(a) => Value::Batch(
                RecordBatch::try_from_iter([("sample", a.clone())]).expect("one column"),
            ),
            None => Value::Pieces(Vec::new()),
        };
        Value::Pieces(vec![
            int(Some(self.count)),
            int(Some(self.nulls)),
            int(self.first_out_of_order),
            scalar(&self.min),
            scalar(&self.max),
            sample,
        ])
    }

    fn from_value(v: &Value) -> Result<ColumnSample> {
        let bad = || Error::Internal(format!("a sample task returned {}", v.kind()));
        let Value::Pieces(p) = v else {
            return Err(bad());
        };
        let [Value::Scalar(count), Value::Scalar(nulls), Value::Scalar(first), Value::Scalar(min), Value::Scalar(max), sample] =
            p.as_slice()
        else {
            return Err(bad());
        };
        let int = |s: &ScalarValue| match s {
            ScalarValue::Int64(v) => Ok(v.map(|v| v as usize)),
            _ => Err(bad()),
        };
        let opt = |s: &ScalarValue| (!s.is_null()).then(|| s.clone());
        Ok(ColumnSample {
            count: int(count)?.unwrap_or(0),
            nulls: int(nulls)?.unwrap_or(0),
            first_out_of_order: int(first)?,
            min: opt(min),
            max: opt(max),
            sample: match sample {
                Value::Batch(b) => Some(b.column(0).clone()),
                _ => None,
            },
        })
    }
}

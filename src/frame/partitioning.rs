//! Where rows go when they move between partitions: by a hash of key columns (groupby
//! `split_out`, hash joins) or by ranges of one column between sorted boundaries
//! (set_index, sort_values); and how the boundaries are chosen, from a sample of each
//! input partition.
//!
//! Range partitioning compares values in Arrow's row format, whose rows order as plain
//! bytes in the requested direction (ascending or descending, nulls last). So one
//! binary search serves every column type and both directions, and the boundaries are
//! chosen in that same order from samples encoded the same way.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{take_record_batch, SortOptions};
use arrow::datatypes::DataType;
use arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion_common::hash_utils::{create_hashes, RandomState};
use datafusion_common::ScalarValue;
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

/// How an operation assigns each row to one of `n` output partitions.
#[derive(Clone, Debug)]
pub enum Partitioner {
    /// By a hash of these columns: equal keys meet, whichever input they come from.
    Hash {
        /// Key columns.
        keys: Vec<String>,
    },
    /// By the value of one column against divisions sorted in the order `options`
    /// gives: with `m + 1` divisions `d`, value output `p < m` holds values from
    /// `d[p]` (included) up to `d[p + 1]` (excluded; included for the last, and for
    /// `d[p] == d[p + 1]`). Values below `d[0]` go to the first output, above the
    /// last division to the last value output. With `spread`, a value that repeats
    /// as a division (a hot value) is spread over every output whose range holds
    /// it; nulls are spread over `null_partitions` outputs after the `m` value
    /// outputs (with none, they go to the last value output).
    Range {
        /// The column.
        column: String,
        /// The order (descending, nulls last).
        options: SortOptions,
        /// The divisions of the value outputs, `m + 1` of them (none: one output).
        divisions: Arc<[ScalarValue]>,
        /// Spread a repeated division's value (and the nulls) over several outputs,
        /// rather than keep equal values together (a sort on several columns must).
        spread: bool,
        /// Outputs that hold only nulls, after the value outputs.
        null_partitions: usize,
    },
}

impl Partitioner {
    /// The columns it reads.
    pub fn columns(&self) -> Vec<String> {
        match self {
            Partitioner::Hash { keys } => keys.clone(),
            Partitioner::Range { column, .. } => vec![column.clone()],
        }
    }

    /// Splits `batch` into `n` batches, one per output partition, keeping the rows'
    /// order within each.
    pub fn split(&self, batch: &RecordBatch, n: usize) -> Result<Vec<RecordBatch>> {
        if n <= 1 {
            return Ok(vec![batch.clone()]);
        }
        let targets = match self {
            Partitioner::Hash { keys } => hash_targets(batch, keys, n)?,
            Partitioner::Range {
                column,
                options,
                divisions,
                spread,
                null_partitions,
            } => range_targets(
                column_of(batch, column)?,
                *options,
                divisions,
                *spread,
                *null_partitions,
            )?,
        };
        let mut indices: Vec<Vec<u32>> = vec![Vec::with_capacity(batch.num_rows() / n + 1); n];
        for (row, p) in targets.into_iter().enumerate() {
            indices[p].push(row as u32);
        }
        indices
            .into_iter()
            .map(|idx| Ok(take_record_batch(batch, &UInt32Array::from(idx))?))
            .collect()
    }
}

fn column_of<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| crate::expr::unknown_column(&batch.schema(), name))
}

fn hash_targets(batch: &RecordBatch, keys: &[String], n: usize) -> Result<Vec<usize>> {
    let mut hashes = vec![0u64; batch.num_rows()];
    let columns = keys
        .iter()
        .map(|k| Ok(column_of(batch, k)?.as_ref()))
        .collect::<Result<Vec<&dyn Array>>>()?;
    create_hashes(columns, &RandomState::with_seed(0), &mut hashes)?;
    // Multiply-shift maps the hash onto 0..n using its high bits.
    Ok(hashes
        .iter()
        .map(|h| ((u128::from(*h) * n as u128) >> 64) as usize)
        .collect())
}

/// A well-mixed number for row `i` (splitmix64), to spread equal values over
/// several outputs evenly whatever their positions.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `mix(i)` mapped onto `0..m` by its high bits.
fn spread_over(i: usize, m: usize) -> usize {
    ((u128::from(mix(i as u64)) * m as u128) >> 64) as usize
}

fn range_targets(
    column: &ArrayRef,
    options: SortOptions,
    divisions: &[ScalarValue],
    spread: bool,
    null_partitions: usize,
) -> Result<Vec<usize>> {
    let division_array = if divisions.is_empty() {
        None
    } else {
        let d = ScalarValue::iter_to_array(divisions.iter().cloned())?;
        Some(cast_to(&d, column.data_type())?)
    };
    // Numbers compare as integers that order as their row format does: no row
    // conversion, no byte comparisons.
    if division_array.as_ref().is_none_or(|d| d.null_count() == 0) {
        if let Some(keys) = order_keys(column, options)? {
            let bounds = match &division_array {
                Some(d) => order_keys(d, options)?.expect("the column's type"),
                None => Vec::new(),
            };
            return Ok(targets(
                column,
                |i| keys[i],
                &bounds,
                spread,
                null_partitions,
            ));
        }
    }
    row_targets(column, options, division_array, spread, null_partitions)
}

/// [`range_targets`] for any type: values and divisions compared in the row format.
fn row_targets(
    column: &ArrayRef,
    options: SortOptions,
    division_array: Option<ArrayRef>,
    spread: bool,
    null_partitions: usize,
) -> Result<Vec<usize>> {
    let converter = row_converter(column.data_type(), options)?;
    let rows = converter.convert_columns(std::slice::from_ref(column))?;
    let division_rows = match division_array {
        None => converter.empty_rows(0, 0),
        Some(d) => converter.convert_columns(&[d])?,
    };
    let division_rows: Vec<_> = division_rows.iter().collect();
    Ok(targets(
        column,
        |i| rows.row(i),
        &division_rows,
        spread,
        null_partitions,
    ))
}

/// Each value of a numeric `column` as a `u64` that orders as Arrow's row format
/// orders it under `options` (nulls aside: their slots hold any number); `None`
/// for other types.
fn order_keys(column: &ArrayRef, options: SortOptions) -> Result<Option<Vec<u64>>> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Float64Type, Int64Type, UInt64Type};
    use DataType::*;
    const SIGN: u64 = 1 << 63;
    let mut keys: Vec<u64> = match column.data_type() {
        UInt8 | UInt16 | UInt32 | UInt64 => cast_to(column, &UInt64)?
            .as_primitive::<UInt64Type>()
            .values()
            .to_vec(),
        Int8 | Int16 | Int32 | Int64 | Date64 | Timestamp(..) | Time64(_) | Duration(_) => {
            cast_to(column, &Int64)?
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .map(|&v| v as u64 ^ SIGN)
                .collect()
        }
        Date32 | Time32(_) => cast_to(&cast_to(column, &Int32)?, &Int64)?
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .map(|&v| v as u64 ^ SIGN)
            .collect(),
        // Total order, as the row format (and `f64::total_cmp`): -NaN < -inf < -0 < 0.
        Float16 | Float32 | Float64 => cast_to(column, &Float64)?
            .as_primitive::<Float64Type>()
            .values()
            .iter()
            .map(|&v| {
                let b = v.to_bits();
                if b & SIGN != 0 {
                    !b
                } else {
                    b | SIGN
                }
            })
            .collect(),
        _ => return Ok(None),
    };
    if options.descending {
        keys.iter_mut().for_each(|k| *k = !*k);
    }
    Ok(Some(keys))
}

/// The output of each row of `column`, its value `value(i)` placed among
/// `divisions` (see [`Partitioner::Range`]).
fn targets<T: Ord + Copy>(
    column: &ArrayRef,
    value: impl Fn(usize) -> T,
    divisions: &[T],
    spread: bool,
    null_partitions: usize,
) -> Vec<usize> {
    // The inner boundaries: value output p ends at inner[p].
    let (first, inner) = match divisions {
        [] | [_] => (None, &[][..]),
        [first, rest @ ..] => (Some(*first), &rest[..rest.len() - 1]),
    };
    let values = inner.len() + 1;
    let nulls = column.null_count() > 0;
    (0..column.len())
        .map(|i| {
            if nulls && column.is_null(i) {
                return match null_partitions {
                    0 => values - 1,
                    k => values + spread_over(i, k),
                };
            }
            let r = value(i);
            let hi = inner.partition_point(|b| *b <= r);
            if !spread {
                return hi;
            }
            let lo = inner.partition_point(|b| *b < r);
            if lo == hi {
                return hi;
            }
            // `r` is a division: every output from the first whose range holds it
            // (the one it ends, only when it starts there too) up to `hi` holds it.
            let start = if lo == 0 && first == Some(r) {
                0
            } else {
                lo + 1
            };
            start + spread_over(i, hi - start + 1)
        })
        .collect()
}

fn row_converter(t: &DataType, options: SortOptions) -> Result<RowConverter> {
    Ok(RowConverter::new(vec![SortField::new_with_options(
        t.clone(),
        options,
    )])?)
}

fn cast_to(a: &ArrayRef, t: &DataType) -> Result<ArrayRef> {
    Ok(if a.data_type() == t {
        a.clone()
    } else {
        arrow::compute::cast(a, t)?
    })
}

/// What the sampling pass learns from one partition of one column.
#[derive(Debug, Clone)]
pub struct ColumnSample {
    /// Rows with a value.
    pub count: usize,
    /// Rows without.
    pub nulls: usize,
    /// The smallest and largest value (in the requested order), when any.
    pub min: Option<ScalarValue>,
    /// See `min`.
    pub max: Option<ScalarValue>,
    /// Up to `k` values drawn at random positions (seeded by the partition number).
    pub sample: Option<ArrayRef>,
    /// The first row whose value comes before the previous row's, or a null
    /// followed by a value, when the partition is not in order.
    pub first_out_of_order: Option<usize>,
}

/// Samples `column` of one partition: counts, exact min and max in `options`' order,
/// up to `k` random values, and where the order first breaks.
pub fn sample_column(
    column: &ArrayRef,
    options: SortOptions,
    k: usize,
    seed: u64,
) -> Result<ColumnSample> {
    let n = column.len();
    let nulls = column.null_count();
    let (min, max, first_out_of_order) = match as_i64(column) {
        // Integers, dates and timestamps: compared as numbers (their row format
        // orders them alike), with no row encoded.
        Some(values) => {
            let v = values.values();
            extremes(column, options, |a, b| v[a].cmp(&v[b]))
        }
        None => {
            let converter = row_converter(column.data_type(), options)?;
            let rows = converter.convert_columns(std::slice::from_ref(column))?;
            extremes(column, SortOptions::default(), |a, b| {
                rows.row(a).cmp(&rows.row(b))
            })
        }
    };
    let count = n - nulls;
    let sample = if count == 0 {
        None
    } else {
        let valid: Vec<u32> = (0..n as u32)
            .filter(|&i| column.is_valid(i as usize))
            .collect();
        let picks: Vec<u32> = if valid.len() <= k {
            valid
        } else {
            let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
            (0..k)
                .map(|_| valid[rng.random_range(0..valid.len())])
                .collect()
        };
        Some(arrow::compute::take(
            column,
            &UInt32Array::from(picks),
            None,
        )?)
    };
    let scalar = |i: Option<usize>| -> Result<Option<ScalarValue>> {
        i.map(|i| ScalarValue::try_from_array(column, i))
            .transpose()
            .map_err(Error::from)
    };
    Ok(ColumnSample {
        count,
        nulls,
        min: scalar(min)?,
        max: scalar(max)?,
        sample,
        first_out_of_order,
    })
}

/// `column` as 64-bit integers when its type is an integer, date, time or
/// timestamp whose values all fit (not `UInt64`); `None` otherwise.
fn as_i64(column: &ArrayRef) -> Option<arrow::array::Int64Array> {
    use arrow::array::AsArray;
    let fits = matches!(
        column.data_type(),
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(..)
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Duration(_)
    );
    if !fits {
        return None;
    }
    let cast = arrow::compute::cast(column, &DataType::Int64).ok()?;
    Some(cast.as_primitive::<arrow::datatypes::Int64Type>().clone())
}

/// The rows of the least and the greatest value of `column` (the first of
/// equals) and the first row out of order (a value after a smaller one, or after
/// a null), in the order `cmp` gives ascending, reversed when `options` say
/// descending; nulls are skipped.
fn extremes(
    column: &ArrayRef,
    options: SortOptions,
    cmp: impl Fn(usize, usize) -> std::cmp::Ordering,
) -> (Option<usize>, Option<usize>, Option<usize>) {
    let cmp = |a: usize, b: usize| {
        let o = cmp(a, b);
        if options.descending {
            o.reverse()
        } else {
            o
        }
    };
    let mut min: Option<usize> = None;
    let mut max: Option<usize> = None;
    let mut first_out_of_order = None;
    let mut prev: Option<usize> = None;
    let mut seen_null = false;
    for i in 0..column.len() {
        if column.is_null(i) {
            seen_null = true;
            continue;
        }
        if first_out_of_order.is_none() && (seen_null || prev.is_some_and(|p| cmp(p, i).is_gt())) {
            first_out_of_order = Some(i);
        }
        prev = Some(i);
        if min.is_none_or(|m| cmp(i, m).is_lt()) {
            min = Some(i);
        }
        if max.is_none_or(|m| cmp(i, m).is_gt()) {
            max = Some(i);
        }
    }
    (min, max, first_out_of_order)
}

/// Divisions chosen from samples, for a [`Partitioner::Range`].
#[derive(Debug, Clone, PartialEq)]
pub struct RangeDivisions {
    /// Divisions of the value outputs (`m + 1`; with `spread`, a hot value repeats).
    pub divisions: Vec<ScalarValue>,
    /// Outputs after the value outputs that hold only the nulls.
    pub null_partitions: usize,
}

impl RangeDivisions {
    /// Output partitions: the value outputs and the null outputs.
    pub fn npartitions(&self) -> usize {
        self.divisions.len().saturating_sub(1) + self.null_partitions
    }

    /// Divisions for the index of all outputs: the null outputs repeat the last
    /// division (they sort after every value, and hold none).
    pub fn index_divisions(&self) -> Vec<ScalarValue> {
        let mut d = self.divisions.clone();
        let last = d.last().expect("at least two divisions").clone();
        d.extend(std::iter::repeat_n(last, self.null_partitions));
        d
    }
}

/// Chooses divisions for `n` output partitions from the partitions' samples: the
/// overall min, the weighted quantiles of the samples (each sampled value stands
/// for `count / sample size` rows of its partition), and the overall max, in
/// `options`' order.
///
/// Nulls get outputs of their own in proportion to their share of the rows (at
/// least one when there are nulls and `n > 1`; with `spread`, as many as their
/// share asks for, so that a column that is 90 % null does not pile its nulls into
/// one partition). With `spread`, a value heavy enough to be several quantiles
/// stays a repeated division (Dask allows that), so its rows are spread over as
/// many outputs; without, repeated boundaries are merged and fewer partitions may
/// result (as Dask does when a column has few distinct values). `None` when no
/// partition has a value.
pub fn choose_divisions(
    samples: &[ColumnSample],
    data_type: &DataType,
    options: SortOptions,
    n: usize,
    spread: bool,
) -> Result<Option<RangeDivisions>> {
    let converter = row_converter(data_type, options)?;
    let mut weighted: Vec<(OwnedRow, f64)> = Vec::new();
    let mut ends: Vec<OwnedRow> = Vec::new();
    let (mut count, mut nulls) = (0usize, 0usize);
    for s in samples {
        count += s.count;
        nulls += s.nulls;
        let (Some(sample), Some(min), Some(max)) = (&s.sample, &s.min, &s.max) else {
            continue;
        };
        let weight = s.count as f64 / sample.len() as f64;
        let rows = converter.convert_columns(&[cast_to(sample, data_type)?])?;
        weighted.extend(rows.iter().map(|r| (r.owned(), weight)));
        let m = ScalarValue::iter_to_array([min.clone(), max.clone()])?;
        ends.extend(
            converter
                .convert_columns(&[cast_to(&m, data_type)?])?
                .iter()
                .map(|r| r.owned()),
        );
    }
    if ends.is_empty() {
        return Ok(None);
    }
    let null_partitions = if nulls == 0 || n < 2 {
        0
    } else if spread {
        let share = nulls as f64 / (nulls + count) as f64;
        ((n as f64 * share).round() as usize).clamp(1, n - 1)
    } else {
        1
    };
    let n = n - null_partitions;
    weighted.sort_by(|a, b| a.0.cmp(&b.0));
    let lo = ends.iter().min().expect("not empty").clone();
    let hi = ends.iter().max().expect("not empty").clone();
    let total: f64 = weighted.iter().map(|(_, w)| w).sum();
    let mut chosen: Vec<OwnedRow> = vec![lo];
    let mut cumulative = 0.0;
    let mut next = 1;
    for (row, w) in &weighted {
        cumulative += w;
        while next < n && cumulative >= total * next as f64 / n as f64 {
            chosen.push(row.clone());
            next += 1;
        }
    }
    chosen.push(hi);
    if !spread {
        chosen.dedup();
    }
    if chosen.len() == 1 {
        // One distinct value: one partition, [v, v].
        chosen.push(chosen[0].clone());
    }
    let array = converter.convert_rows(chosen.iter().map(|r| r.row()))?;
    let array = &array[0];
    let divisions = (0..array.len())
        .map(|i| ScalarValue::try_from_array(array, i).map_err(Error::from))
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(RangeDivisions {
        divisions,
        null_partitions,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int32Array, TimestampNanosecondArray, UInt64Array};
    use rand::{Rng, SeedableRng};

    /// Integers and timestamps are sampled as numbers: the same extremes and the
    /// same first row out of order as comparing their row format, with nulls,
    /// repeats, both directions, in order and not.
    #[test]
    fn integer_samples_agree_with_the_row_format() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(9);
        for case in 0..40 {
            let n = rng.random_range(0..60usize);
            let mut v: Vec<Option<i64>> = (0..n)
                .map(|_| (rng.random_range(0..5) > 0).then(|| rng.random_range(-4i64..4)))
                .collect();
            if case % 3 == 0 {
                v.sort_by_key(|x| (x.is_none(), *x));
            }
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int32Array::from_iter(v.iter().map(|x| x.map(|x| x as i32)))),
                Arc::new(TimestampNanosecondArray::from_iter(v.iter().copied())),
            ];
            for column in &columns {
                assert!(as_i64(column).is_some());
                for descending in [false, true] {
                    let options = SortOptions {
                        descending,
                        nulls_first: false,
                    };
                    let converter = row_converter(column.data_type(), options).unwrap();
                    let rows = converter
                        .convert_columns(std::slice::from_ref(column))
                        .unwrap();
                    let by_rows = extremes(column, SortOptions::default(), |a, b| {
                        rows.row(a).cmp(&rows.row(b))
                    });
                    let got = sample_column(column, options, 4, 1).unwrap();
                    let at = |i: Option<usize>| {
                        i.map(|i| ScalarValue::try_from_array(column, i).unwrap())
                    };
                    assert_eq!(got.first_out_of_order, by_rows.2, "{v:?} {descending}");
                    assert_eq!(got.min, at(by_rows.0), "{v:?} {descending}");
                    assert_eq!(got.max, at(by_rows.1), "{v:?} {descending}");
                }
            }
        }
        assert!(as_i64(&(Arc::new(UInt64Array::from(vec![1u64])) as ArrayRef)).is_none());
    }

    /// Numbers placed by their order keys land where the row format puts them: every
    /// numeric kind, both directions, repeated divisions, with and without spreading.
    #[test]
    fn numbers_go_where_the_row_format_sends_them() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
        let n = 2000;
        let specials = [
            0.0,
            -0.0,
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1.5,
            -1.5,
        ];
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from_iter((0..n).map(|_| {
                (!rng.random_bool(0.05)).then(|| rng.random_range(-40..40))
            }))),
            Arc::new(UInt64Array::from_iter_values((0..n).map(|_| {
                [0, 1, u64::MAX, 1 << 63, (1 << 63) - 1][rng.random_range(0..5)]
            }))),
            Arc::new(Float64Array::from_iter((0..n).map(|_| {
                (!rng.random_bool(0.05)).then(|| specials[rng.random_range(0..specials.len())])
            }))),
            Arc::new(TimestampNanosecondArray::from_iter_values(
                (0..n).map(|_| rng.random_range(-1_000_000i64..1_000_000)),
            )),
        ];
        for column in &columns {
            for descending in [false, true] {
                let options = SortOptions {
                    descending,
                    nulls_first: false,
                };
                // Divisions: values of the column, sorted in the requested order.
                let mut picks: Vec<usize> = (0..6)
                    .map(|_| rng.random_range(0..n))
                    .filter(|&i| column.is_valid(i))
                    .collect();
                picks.extend_from_slice(&picks.clone()[..1]);
                let idx = UInt32Array::from(picks.iter().map(|&i| i as u32).collect::<Vec<_>>());
                let d = arrow::compute::take(column, &idx, None).unwrap();
                let order = arrow::compute::sort_to_indices(&d, Some(options), None).unwrap();
                let d = arrow::compute::take(&d, &order, None).unwrap();
                for spread in [false, true] {
                    for nulls in [0, 2] {
                        let keys = order_keys(column, options).unwrap().unwrap();
                        let bounds = order_keys(&d, options).unwrap().unwrap();
                        let typed = targets(column, |i| keys[i], &bounds, spread, nulls);
                        let rows =
                            row_targets(column, options, Some(d.clone()), spread, nulls).unwrap();
                        assert_eq!(typed, rows, "{} {options:?}", column.data_type());
                    }
                }
            }
        }
    }
}

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
    /// By the value of one column against `n - 1` inner boundaries, sorted in the
    /// order `options` gives: output `p` holds values from boundary `p - 1`
    /// (included) up to boundary `p` (excluded); nulls go to the last output.
    Range {
        /// The column.
        column: String,
        /// The order (descending, nulls last).
        options: SortOptions,
        /// The inner boundaries, `n - 1` of them.
        bounds: Arc<[ScalarValue]>,
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
                bounds,
            } => range_targets(column_of(batch, column)?, *options, bounds)?,
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

fn range_targets(
    column: &ArrayRef,
    options: SortOptions,
    bounds: &[ScalarValue],
) -> Result<Vec<usize>> {
    let converter = row_converter(column.data_type(), options)?;
    let rows = converter.convert_columns(std::slice::from_ref(column))?;
    let bound_rows = if bounds.is_empty() {
        converter.empty_rows(0, 0)
    } else {
        let b = ScalarValue::iter_to_array(bounds.iter().cloned())?;
        let b = cast_to(&b, column.data_type())?;
        converter.convert_columns(&[b])?
    };
    let bound_rows: Vec<_> = bound_rows.iter().collect();
    let last = bound_rows.len();
    Ok((0..column.len())
        .map(|i| {
            if column.is_null(i) {
                last
            } else {
                let r = rows.row(i);
                bound_rows.partition_point(|b| *b <= r)
            }
        })
        .collect())
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
    let converter = row_converter(column.data_type(), options)?;
    let rows = converter.convert_columns(std::slice::from_ref(column))?;
    let n = column.len();
    let nulls = column.null_count();
    let mut min: Option<usize> = None;
    let mut max: Option<usize> = None;
    let mut first_out_of_order = None;
    let mut prev: Option<usize> = None;
    let mut seen_null = false;
    for i in 0..n {
        if column.is_null(i) {
            seen_null = true;
            continue;
        }
        let r = rows.row(i);
        if first_out_of_order.is_none() {
            let broke = seen_null || prev.is_some_and(|p| rows.row(p) > r);
            if broke {
                first_out_of_order = Some(i);
            }
        }
        prev = Some(i);
        if min.is_none_or(|m| r < rows.row(m)) {
            min = Some(i);
        }
        if max.is_none_or(|m| r > rows.row(m)) {
            max = Some(i);
        }
    }
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

/// Chooses divisions for `n` output partitions from the partitions' samples: the
/// overall min, the `n - 1` weighted quantiles of the samples (each sampled value
/// stands for `count / sample size` rows of its partition), and the overall max, in
/// `options`' order. Repeated boundaries are merged, so fewer partitions may result
/// (as Dask does when a column has few distinct values). `None` when no partition has
/// a value.
pub fn choose_divisions(
    samples: &[ColumnSample],
    data_type: &DataType,
    options: SortOptions,
    n: usize,
) -> Result<Option<Vec<ScalarValue>>> {
    let converter = row_converter(data_type, options)?;
    let mut weighted: Vec<(OwnedRow, f64)> = Vec::new();
    let mut ends: Vec<OwnedRow> = Vec::new();
    for s in samples {
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
    chosen.dedup();
    if chosen.len() == 1 {
        // One distinct value: one partition, [v, v].
        chosen.push(chosen[0].clone());
    }
    let array = converter.convert_rows(chosen.iter().map(|r| r.row()))?;
    let array = &array[0];
    (0..array.len())
        .map(|i| ScalarValue::try_from_array(array, i).map_err(Error::from))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

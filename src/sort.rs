//! Sorting a batch by several columns: one place for groupby answers and `--sort`.
//!
//! Arrow's `lexsort_to_indices` compares row pairs through a chain of dynamic
//! comparators, which dominated a ten-million-group answer's time. Several key
//! columns are encoded once into Arrow's row format, whose rows compare as plain
//! bytes; a single column goes to the typed `sort_to_indices` kernel.

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{sort_to_indices, take_record_batch, SortOptions};
use arrow::row::{RowConverter, SortField};

use crate::error::Result;

/// Row numbers of `batch` in the order of `keys` (column, options), the first key
/// first. Ties keep no particular order.
pub fn sort_indices(keys: &[(ArrayRef, SortOptions)]) -> Result<UInt32Array> {
    let rows = keys.first().map_or(0, |(a, _)| a.len());
    match keys {
        [] => Ok(UInt32Array::from_iter_values(0..rows as u32)),
        [(a, options)] => Ok(sort_to_indices(a, Some(*options), None)?),
        _ => {
            let fields = keys
                .iter()
                .map(|(a, o)| SortField::new_with_options(a.data_type().clone(), *o))
                .collect();
            let converter = RowConverter::new(fields)?;
            let columns: Vec<ArrayRef> = keys.iter().map(|(a, _)| a.clone()).collect();
            let encoded = converter.convert_columns(&columns)?;
            let mut order: Vec<u32> = (0..rows as u32).collect();
            order.sort_unstable_by(|&x, &y| encoded.row(x as usize).cmp(&encoded.row(y as usize)));
            Ok(UInt32Array::from(order))
        }
    }
}

/// `batch` sorted by `keys`, given as column positions with their options.
pub fn sort_by_columns(batch: &RecordBatch, keys: &[(usize, SortOptions)]) -> Result<RecordBatch> {
    if batch.num_rows() < 2 || keys.is_empty() {
        return Ok(batch.clone());
    }
    let keys: Vec<(ArrayRef, SortOptions)> = keys
        .iter()
        .map(|&(i, o)| (batch.column(i).clone(), o))
        .collect();
    let indices = sort_indices(&keys)?;
    Ok(take_record_batch(batch, &indices)?)
}

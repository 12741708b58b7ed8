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
            // Each row's first 24 bytes (zero-padded), big-endian, beside its
            // number: most comparisons end there, in the vector being sorted,
            // without a cache miss into the rows (two 64-bit keys, or a short
            // string and a key, fit whole; a prefix order never contradicts the
            // rows' order, and equal prefixes compare the whole rows).
            let mut order: Vec<([u64; 3], u32)> = (0..rows)
                .map(|i| (row_prefix(encoded.row(i).as_ref()), i as u32))
                .collect();
            order.sort_unstable_by(|x, y| {
                x.0.cmp(&y.0)
                    .then_with(|| encoded.row(x.1 as usize).cmp(&encoded.row(y.1 as usize)))
            });
            Ok(UInt32Array::from_iter_values(
                order.into_iter().map(|(_, i)| i),
            ))
        }
    }
}

/// The first 24 bytes of a row-format key (zero-padded) as three big-endian numbers:
/// they order as the bytes do, so a sort compares them first and the whole rows only
/// when they are equal.
#[inline]
pub fn row_prefix(bytes: &[u8]) -> [u64; 3] {
    let mut head = [0u8; 24];
    let n = bytes.len().min(24);
    head[..n].copy_from_slice(&bytes[..n]);
    // Three 64-bit words (not a u128 and a u64): beside a u32 they make 32-byte
    // entries to sort, where a u128's alignment made 48.
    std::array::from_fn(|i| u64::from_be_bytes(head[8 * i..8 * i + 8].try_into().expect("8 bytes")))
}

/// The order of `batch`'s rows by `keys`, given as column positions with their
/// options.
pub fn sort_indices_of(batch: &RecordBatch, keys: &[(usize, SortOptions)]) -> Result<UInt32Array> {
    let keys: Vec<(ArrayRef, SortOptions)> = keys
        .iter()
        .map(|&(i, o)| (batch.column(i).clone(), o))
        .collect();
    sort_indices(&keys)
}

/// `batch` sorted by `keys`, given as column positions with their options.
pub fn sort_by_columns(batch: &RecordBatch, keys: &[(usize, SortOptions)]) -> Result<RecordBatch> {
    if batch.num_rows() < 2 || keys.is_empty() {
        return Ok(batch.clone());
    }
    let indices = sort_indices_of(batch, keys)?;
    Ok(take_record_batch(batch, &indices)?)
}

/// Merges batches that are each sorted by `keys` (column positions and options,
/// the same schema) into one sorted batch: a k-way merge on Arrow's row format,
/// then one `interleave` per column. Equal keys keep the order of their batches,
/// and their order within a batch.
pub fn merge_sorted(batches: &[RecordBatch], keys: &[(usize, SortOptions)]) -> Result<RecordBatch> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let Some(first) = batches.first() else {
        return Err(crate::error::Error::Internal(
            "merge_sorted called without batches".into(),
        ));
    };
    let schema = first.schema();
    let fields = keys
        .iter()
        .map(|&(i, o)| SortField::new_with_options(schema.field(i).data_type().clone(), o))
        .collect();
    let converter = RowConverter::new(fields)?;
    let rows = batches
        .iter()
        .map(|b| {
            let columns: Vec<ArrayRef> = keys.iter().map(|&(i, _)| b.column(i).clone()).collect();
            converter.convert_columns(&columns)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut order: Vec<(usize, usize)> = Vec::with_capacity(total);
    let mut heap = BinaryHeap::with_capacity(batches.len());
    for (r, rs) in rows.iter().enumerate() {
        if rs.num_rows() > 0 {
            heap.push(Reverse((rs.row(0), r, 0usize)));
        }
    }
    while let Some(mut top) = heap.peek_mut() {
        let Reverse((_, r, i)) = *top;
        order.push((r, i));
        if i + 1 < rows[r].num_rows() {
            *top = Reverse((rows[r].row(i + 1), r, i + 1));
        } else {
            std::collections::binary_heap::PeekMut::pop(top);
        }
    }
    let columns = (0..schema.fields().len())
        .map(|c| {
            let arrays: Vec<&dyn arrow::array::Array> =
                batches.iter().map(|b| b.column(c).as_ref()).collect();
            arrow::compute::interleave(&arrays, &order)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(total));
    Ok(RecordBatch::try_new_with_options(
        schema, columns, &options,
    )?)
}

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
            // Each row's telling bytes beside its number: most comparisons end
            // there, in the vector being sorted, without a cache miss into the
            // rows (a prefix order never contradicts the rows' order, and equal
            // prefixes compare the whole rows).
            let telling = PrefixBytes::of(encoded.iter().map(|r| r.data()));
            let mut order: Vec<([u64; 3], u32)> = (0..rows)
                .map(|i| (telling.prefix(encoded.row(i).as_ref()), i as u32))
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

/// How far into row-format keys [`PrefixBytes`] looks for the bytes that tell
/// them apart.
const PREFIX_SCAN: usize = 96;

/// The bytes of a set of row-format keys that tell them apart, as a sort key of 24
/// bytes beside each row: the first 24 positions (within the first
/// [`PREFIX_SCAN`] bytes, keys zero-padded) where not every key has the same byte.
/// Keys of several columns repeat much from row to row (a sentinel and a length
/// per string, an "id" and leading zeros, the high bytes of small integers), and
/// the plain first 24 bytes of six G1 keys held only the first two and part of
/// the third: a sort then compared whole rows, out in memory, on most ties.
///
/// Why it orders as the keys do: where two keys first differ, the position is
/// not one every key shares, so it is kept, and every kept position before it
/// holds equal bytes in both. So a smaller prefix means a smaller key, and equal
/// prefixes compare the whole keys.
#[derive(Debug, Clone)]
pub struct PrefixBytes {
    positions: Vec<usize>,
}

impl PrefixBytes {
    /// The telling positions of `keys`.
    pub fn of<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> PrefixBytes {
        let mut keys = keys.into_iter();
        let pad = |k: &[u8]| {
            let mut b = [0u8; PREFIX_SCAN];
            let n = k.len().min(PREFIX_SCAN);
            b[..n].copy_from_slice(&k[..n]);
            b
        };
        let Some(first) = keys.next().map(pad) else {
            return PrefixBytes {
                positions: Vec::new(),
            };
        };
        let mut differs = [0u8; PREFIX_SCAN];
        for k in keys {
            let k = pad(k);
            for p in 0..PREFIX_SCAN {
                differs[p] |= k[p] ^ first[p];
            }
        }
        PrefixBytes {
            positions: (0..PREFIX_SCAN)
                .filter(|&p| differs[p] != 0)
                .take(24)
                .collect(),
        }
    }

    /// `key`'s telling bytes (zero where it is shorter) as three big-endian
    /// numbers: they order as the bytes do.
    #[inline]
    pub fn prefix(&self, key: &[u8]) -> [u64; 3] {
        let mut head = [0u8; 24];
        for (h, &p) in head.iter_mut().zip(&self.positions) {
            *h = key.get(p).copied().unwrap_or(0);
        }
        // Three 64-bit words (not a u128 and a u64): beside a u32 they make 32-byte
        // entries to sort, where a u128's alignment made 48.
        std::array::from_fn(|i| {
            u64::from_be_bytes(head[8 * i..8 * i + 8].try_into().expect("8 bytes"))
        })
    }
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
///
/// It takes the batches so that it can let go of them as it goes: the keys in
/// row format (about the size of the key columns) are dropped once the order is
/// known, and each input column once its merged copy is made. Beside the inputs
/// it holds at most their keys and the order, then the order and one column,
/// where holding the inputs, their rows and the whole merged copy at once was
/// three times the answer.
pub fn merge_sorted(
    batches: Vec<RecordBatch>,
    keys: &[(usize, SortOptions)],
) -> Result<RecordBatch> {
    let Some(first) = batches.first() else {
        return Err(crate::error::Error::Internal(
            "merge_sorted called without batches".into(),
        ));
    };
    let schema = first.schema();
    let order = merged_order(&batches, keys)?;
    let total = order.len();
    // The batches' arrays by column, each column's dropped once it is merged.
    let mut by_column: Vec<Vec<ArrayRef>> =
        vec![Vec::with_capacity(batches.len()); schema.fields().len()];
    for batch in batches {
        if batch.num_columns() != by_column.len() {
            return Err(crate::error::Error::Internal(
                "merge_sorted: batches of different schemas".into(),
            ));
        }
        for (column, array) in by_column.iter_mut().zip(batch.columns()) {
            column.push(array.clone());
        }
    }
    let mut columns = Vec::with_capacity(by_column.len());
    for arrays in by_column {
        let arrays: Vec<&dyn arrow::array::Array> = arrays.iter().map(|a| a.as_ref()).collect();
        columns.push(arrow::compute::interleave(&arrays, &order)?);
    }
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(total));
    Ok(RecordBatch::try_new_with_options(
        schema, columns, &options,
    )?)
}

/// The bytes [`merge_sorted`] holds beside its inputs, at the larger of its two
/// steps: the keys in row format with the order (two words a row) being made,
/// then the order with the merged column being made.
pub fn merge_sorted_bytes(batches: &[RecordBatch], keys: &[(usize, SortOptions)]) -> u64 {
    let Some(first) = batches.first() else {
        return 0;
    };
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let column_bytes = |c: usize, bytes: fn(&dyn arrow::array::Array) -> u64| -> u64 {
        batches.iter().map(|b| bytes(b.column(c).as_ref())).sum()
    };
    let in_rows: u64 = keys
        .iter()
        .map(|&(i, _)| column_bytes(i, row_format_bytes))
        .sum::<u64>()
        + 8 * rows;
    let widest = (0..first.num_columns())
        .map(|c| column_bytes(c, |a| outcore_storage::measure::array_bytes(a) as u64))
        .max()
        .unwrap_or(0);
    16 * rows + in_rows.max(widest)
}

/// About the bytes of `column` in Arrow's row format, on the safe side: a byte
/// for nulls before each fixed-width value; strings in 8-byte blocks, each with
/// a continuation byte, and a sentinel.
fn row_format_bytes(column: &dyn arrow::array::Array) -> u64 {
    let rows = column.len() as u64;
    match column.data_type().primitive_width() {
        Some(width) => (width as u64 + 1) * rows,
        None => {
            let values = outcore_storage::measure::array_bytes(column) as u64;
            values + values / 8 + 10 * rows
        }
    }
}

/// The order in which a k-way merge of `batches` (each sorted by `keys`) takes
/// their rows: (batch, row) pairs. The keys in row format live only here.
fn merged_order(
    batches: &[RecordBatch],
    keys: &[(usize, SortOptions)],
) -> Result<Vec<(usize, usize)>> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
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
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::PrefixBytes;
    use proptest::prelude::*;

    /// Keys of a few bytes drawn from a small alphabet (so most share long runs,
    /// and lengths differ), some with a common head longer than the scan.
    fn keys() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let key =
            (any::<bool>(), proptest::collection::vec(0u8..4, 0..40)).prop_map(|(long, tail)| {
                let mut k = if long {
                    vec![7u8; 100]
                } else {
                    vec![7u8, 0, 0]
                };
                k.extend(tail);
                k
            });
        proptest::collection::vec(key, 0..60)
    }

    proptest! {
        /// The prefix order never contradicts the keys' order, and unequal keys
        /// within the scan are told apart by it.
        #[test]
        fn prefixes_order_as_the_keys(keys in keys()) {
            let telling = PrefixBytes::of(keys.iter().map(|k| k.as_slice()));
            for a in &keys {
                for b in &keys {
                    let (pa, pb) = (telling.prefix(a), telling.prefix(b));
                    if pa < pb {
                        prop_assert!(a < b, "{a:?} {b:?}");
                    }
                    if a == b {
                        prop_assert_eq!(pa, pb);
                    }
                }
            }
            // Sorting by (prefix, key) is sorting by key.
            let mut by_prefix = keys.clone();
            by_prefix.sort_by(|a, b| telling.prefix(a).cmp(&telling.prefix(b)).then_with(|| a.cmp(b)));
            let mut plain = keys.clone();
            plain.sort();
            prop_assert_eq!(by_prefix, plain);
        }
    }

    #[test]
    fn shared_bytes_are_skipped() {
        // Six columns of "id" + digits: the telling bytes are the digits.
        let keys: Vec<Vec<u8>> = (0..50u32)
            .map(|i| format!("id{:03}|id{:03}|id{:03}", i % 7, i % 11, i).into_bytes())
            .collect();
        let telling = PrefixBytes::of(keys.iter().map(|k| k.as_slice()));
        assert!(telling
            .positions
            .iter()
            .all(|&p| keys[0][p].is_ascii_digit()));
        // Every key is told apart by its prefix alone (all differences are in 15 digits).
        let mut prefixes: Vec<_> = keys.iter().map(|k| telling.prefix(k)).collect();
        prefixes.sort();
        prefixes.dedup();
        assert_eq!(prefixes.len(), keys.len());
    }
}

//! How much memory a batch holds: each allocation once. Arrow's
//! `get_array_memory_size` counts the whole allocation behind every buffer, so
//! buffers that share one are counted once per buffer: a batch read back from
//! Arrow IPC keeps each buffer that did not compress as a slice of its message's
//! body, and a sort's partition of such pieces measured 2.5 times its memory.

use arrow::array::{Array, ArrayData, RecordBatch};
use arrow::buffer::Buffer;

/// Bytes of memory `batch`'s columns hold, counting each allocation once (its
/// whole capacity: the rest of a shared body lives as long as the slice does):
/// arrow's measure, its arrays' own structs included (thousands of small radix
/// parts hold megabytes of them), less the allocations it counted again.
pub fn batch_bytes(batch: &RecordBatch) -> usize {
    let mut seen = Vec::new();
    let mut again = 0;
    for column in batch.columns() {
        add_data(&column.to_data(), &mut seen, &mut again);
    }
    batch.get_array_memory_size() - again
}

/// As [`batch_bytes`], for one array.
pub fn array_bytes(array: &dyn Array) -> usize {
    let mut seen = Vec::new();
    let mut again = 0;
    add_data(&array.to_data(), &mut seen, &mut again);
    array.get_array_memory_size() - again
}

/// Bytes of `array`'s own rows (its slice of each buffer): what a copy of it
/// takes, as a sort's sorted column does.
pub fn rows_bytes(array: &dyn Array) -> usize {
    let data = array.to_data();
    data.get_slice_memory_size()
        .unwrap_or_else(|_| data.get_buffer_memory_size())
}

/// Adds to `again` the capacity of each of `data`'s buffers whose allocation
/// was met before.
fn add_data(data: &ArrayData, seen: &mut Vec<usize>, again: &mut usize) {
    for b in data.buffers() {
        add_buffer(b, seen, again);
    }
    if let Some(nulls) = data.nulls() {
        add_buffer(nulls.buffer(), seen, again);
    }
    for child in data.child_data() {
        add_data(child, seen, again);
    }
}

fn add_buffer(b: &Buffer, seen: &mut Vec<usize>, again: &mut usize) {
    if b.capacity() == 0 {
        return;
    }
    let at = b.data_ptr().as_ptr() as usize;
    // A batch has a few dozen buffers at most: a scan beats hashing them.
    if seen.contains(&at) {
        *again += b.capacity();
    } else {
        seen.push(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn shared_allocations_count_once_and_ipc_batches_are_not_overcounted() {
        let n = 100_000;
        // Random floats do not compress: their buffers stay slices of the body.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let floats: Vec<f64> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                f64::from_bits(x >> 2)
            })
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Float64Array::from(floats.clone())),
            Arc::new(Float64Array::from(
                floats.iter().map(|f| f * 3.0).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from_iter_values(0..n as i64)),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("id{i:09}")),
            )),
        ];
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Float64, false),
            Field::new("b", DataType::Float64, false),
            Field::new("i", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        // Built arrays own their buffers: both measures agree.
        assert_eq!(batch_bytes(&batch), batch.get_array_memory_size());
        // A slice holds its whole allocation; one batch of two slices of one
        // array holds it once.
        let a = batch.column(0);
        let whole = array_bytes(a.as_ref());
        assert_eq!(array_bytes(a.slice(10, 50).as_ref()), whole);
        let twice =
            RecordBatch::try_from_iter([("x", a.slice(0, 10)), ("y", a.slice(5, 10))]).unwrap();
        assert_eq!(
            batch_bytes(&twice),
            twice.get_array_memory_size() - a.to_data().buffers()[0].capacity()
        );
        assert_eq!(rows_bytes(batch.column(0).slice(10, 50).as_ref()), 50 * 8);

        let mut bytes = Vec::new();
        crate::codec::encode_batches(&schema, std::slice::from_ref(&batch), &mut bytes).unwrap();
        let (_, back) = crate::codec::decode_batches(&bytes).unwrap();
        let back = &back[0];
        let logical: usize = 8 * n * 3 + 4 * (n + 1) + 11 * n;
        let measured = batch_bytes(back);
        // What the batch really holds: its decompressed buffers and the body
        // behind the ones that did not compress, about the logical size.
        assert!(measured >= logical, "{measured} < {logical}");
        assert!(measured < logical * 3 / 2, "{measured} against {logical}");
        assert!(
            back.get_array_memory_size() > measured * 3 / 2,
            "arrow's measure counts the shared body per buffer: {} against {measured}",
            back.get_array_memory_size()
        );
    }
}

//! `RecordBatch` ⇄ bytes in the Arrow IPC stream format. Decoding validates the
//! bytes, so a truncated or corrupt buffer is an error, never data.

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use crate::error::{Error, Result};

/// Encodes `batch` as one IPC stream (schema message, batch, end marker).
pub fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() + 1024);
    let mut w = StreamWriter::try_new(&mut out, &batch.schema())
        .map_err(|e| Error::Corrupt(format!("cannot encode: {e}")))?;
    w.write(batch)
        .map_err(|e| Error::Corrupt(format!("cannot encode: {e}")))?;
    w.finish()
        .map_err(|e| Error::Corrupt(format!("cannot encode: {e}")))?;
    drop(w);
    Ok(out)
}

/// Decodes bytes made by [`encode_batch`]; several batches are concatenated.
pub fn decode_batch(bytes: &[u8]) -> Result<RecordBatch> {
    let reader = StreamReader::try_new(bytes, None).map_err(|e| Error::Corrupt(e.to_string()))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Corrupt(e.to_string()))?;
    arrow::compute::concat_batches(&schema, &batches).map_err(|e| Error::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn round_trip_and_truncation() {
        let batch = RecordBatch::try_from_iter(vec![
            ("a", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
            (
                "b",
                Arc::new(StringArray::from(vec![Some("x"), None, Some("z")])) as ArrayRef,
            ),
        ])
        .unwrap();
        let bytes = encode_batch(&batch).unwrap();
        assert_eq!(decode_batch(&bytes).unwrap(), batch);
        for cut in [1, bytes.len() / 2, bytes.len() - 9] {
            assert!(decode_batch(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}

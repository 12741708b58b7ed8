//! `RecordBatch` ⇄ bytes in the Arrow IPC stream format, the one format in which
//! partitions leave memory. Decoding validates the bytes, so a truncated or corrupt
//! buffer is an error, never data; bit flips inside column values can only be caught
//! by a checksum around the bytes, which the spill cache adds.
//!
//! Two flavours: [`encode_batch`]/[`decode_batch`] for one uncompressed batch, and
//! [`encode_batches`]/[`decode_batches`] for a partition of several batches with
//! LZ4-framed bodies (spilled data is mostly written once and read once, so a fast
//! codec beats a tight one).

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::ipc::CompressionType;

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
    let (schema, batches) = decode_batches(bytes)?;
    arrow::compute::concat_batches(&schema, &batches).map_err(|e| Error::Corrupt(e.to_string()))
}

/// Appends `batches` to `out` as one IPC stream whose bodies are LZ4_FRAME
/// compressed. Every batch must fit `schema` (same fields; a
/// field may be nullable in `schema` and not in the batch) (an empty slice writes a stream that
/// holds only the schema, so the schema survives a partition with no rows).
pub fn encode_batches(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    out: &mut Vec<u8>,
) -> Result<()> {
    let cannot = |e: arrow::error::ArrowError| Error::Corrupt(format!("cannot encode: {e}"));
    for (i, batch) in batches.iter().enumerate() {
        // The IPC writer does not check this, and a mismatch would only show when
        // the bytes are read back, far from the caller who made the mistake.
        // `contains` lets a non-nullable column pass under a nullable field.
        if !schema.contains(batch.schema_ref()) {
            return Err(Error::Invalid(format!(
                "encode_batches: batch {i} has schema {:?}, expected {:?}",
                batch.schema(),
                schema
            )));
        }
    }
    let options = IpcWriteOptions::default()
        .try_with_compression(Some(CompressionType::LZ4_FRAME))
        .map_err(cannot)?;
    let mut w = StreamWriter::try_new_with_options(out, schema, options).map_err(cannot)?;
    for batch in batches {
        w.write(batch).map_err(cannot)?;
    }
    w.finish().map_err(cannot)
}

/// Decodes a stream made by [`encode_batches`] (or [`encode_batch`]): its schema and
/// its batches in order. Truncated or malformed bytes give [`Error::Corrupt`].
pub fn decode_batches(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    check_framing(bytes)?;
    let mut reader =
        StreamReader::try_new(bytes, None).map_err(|e| Error::Corrupt(e.to_string()))?;
    let schema = reader.schema();
    let mut batches = Vec::new();
    for batch in reader.by_ref() {
        batches.push(batch.map_err(|e| Error::Corrupt(e.to_string()))?);
    }
    Ok((schema, batches))
}

/// The IPC continuation token that starts every message (and the end marker).
const CONTINUATION: [u8; 4] = [0xff; 4];

/// Walks the message framing before arrow reads a byte of it, so that lengths that
/// point past the end are our error instead of a huge allocation (which aborts the
/// process, so not even a panic) inside arrow. Checks that every message's metadata
/// is a valid flatbuffer, that every body and buffer lies inside `bytes`, that no
/// compressed buffer claims an impossible uncompressed size, and that the stream
/// ends exactly with the end-of-stream marker (the reader alone stops quietly at a
/// clean cut between messages).
///
/// This does not make arrow's schema decoding total: a flip that turns a field
/// type into an unsupported one (an `Int` of 65 bits) still makes arrow panic.
/// Callers that keep bytes where they can rot use a checksum (the spill cache's
/// file header); sled checksums its own log.
fn check_framing(bytes: &[u8]) -> Result<()> {
    let corrupt = |at: usize, what: &str| Err(Error::Corrupt(format!("byte {at}: {what}")));
    let mut pos = 0usize;
    loop {
        let Some(word) = bytes.get(pos..pos + 4) else {
            return corrupt(
                pos,
                "stream ends without an end-of-stream marker (truncated?)",
            );
        };
        if word == CONTINUATION {
            pos += 4;
        }
        let Some(len) = bytes.get(pos..pos + 4) else {
            return corrupt(pos, "stream ends inside a message length (truncated?)");
        };
        let meta_len = i32::from_le_bytes([len[0], len[1], len[2], len[3]]);
        pos += 4;
        if meta_len == 0 {
            if pos != bytes.len() {
                return corrupt(pos, "bytes after the end-of-stream marker");
            }
            return Ok(());
        }
        let Some(meta) = usize::try_from(meta_len)
            .ok()
            .and_then(|n| bytes.get(pos..pos.checked_add(n)?))
        else {
            return corrupt(
                pos,
                &format!("message metadata of {meta_len} bytes does not fit"),
            );
        };
        let message = arrow::ipc::root_as_message(meta)
            .map_err(|e| Error::Corrupt(format!("byte {pos}: bad message metadata: {e}")))?;
        pos += meta.len();
        let Some(body) = usize::try_from(message.bodyLength())
            .ok()
            .and_then(|n| bytes.get(pos..pos.checked_add(n)?))
        else {
            return corrupt(
                pos,
                &format!(
                    "message body of {} bytes does not fit",
                    message.bodyLength()
                ),
            );
        };
        let batch = message
            .header_as_record_batch()
            .or_else(|| message.header_as_dictionary_batch().and_then(|d| d.data()));
        if let Some(batch) = batch {
            check_buffers(&batch, body)
                .map_err(|what| Error::Corrupt(format!("byte {pos}: {what}")))?;
        }
        pos += body.len();
    }
}

/// Checks that the buffers of one batch lie inside its `body` and, if compressed,
/// claim an uncompressed size LZ4 could have produced from them (arrow allocates
/// that size up front).
fn check_buffers(
    batch: &arrow::ipc::RecordBatch<'_>,
    body: &[u8],
) -> std::result::Result<(), String> {
    // LZ4 cannot expand data by more than 255x (a match byte of 255 per 255 bytes),
    // and a frame adds a few bytes; anything past this bound is a corrupt prefix.
    const LZ4_MAX_RATIO: u64 = 256;
    let compressed = batch.compression().is_some();
    for (i, buffer) in batch.buffers().into_iter().flatten().enumerate() {
        let (offset, length) = (buffer.offset(), buffer.length());
        let range = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(length).ok())
            .and_then(|(o, n)| body.get(o..o.checked_add(n)?));
        let Some(data) = range else {
            return Err(format!(
                "buffer {i} ({offset}+{length}) lies outside the body of {} bytes",
                body.len()
            ));
        };
        if compressed && data.len() >= 8 {
            let mut prefix = [0u8; 8];
            prefix.copy_from_slice(&data[..8]);
            let size = i64::from_le_bytes(prefix);
            // -1 marks a buffer stored uncompressed.
            let ok = size == -1
                || u64::try_from(size).is_ok_and(|n| n <= (data.len() as u64) * LZ4_MAX_RATIO + 64);
            if !ok {
                return Err(format!(
                    "buffer {i} claims {size} uncompressed bytes from {}",
                    data.len()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
    use std::sync::Arc;

    fn small_batch() -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            ("a", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
            (
                "b",
                Arc::new(StringArray::from(vec![Some("x"), None, Some("z")])) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    /// Three batches of a few hundred rows, with nulls and repeats so LZ4 has work.
    fn batches() -> (SchemaRef, Vec<RecordBatch>) {
        let make = |seed: i64, n: i64| {
            RecordBatch::try_from_iter(vec![
                (
                    "id",
                    Arc::new(Int64Array::from_iter_values((0..n).map(|i| i * seed % 97)))
                        as ArrayRef,
                ),
                (
                    "x",
                    Arc::new(Float64Array::from_iter(
                        (0..n).map(|i| (i % 5 != 0).then_some(i as f64 * 0.5 + seed as f64)),
                    )) as ArrayRef,
                ),
                (
                    "name",
                    Arc::new(StringArray::from_iter(
                        (0..n).map(|i| (i % 7 != 0).then(|| format!("name-{}", i % 13))),
                    )) as ArrayRef,
                ),
            ])
            .unwrap()
        };
        let schema = make(3, 300).schema();
        // The empty batch infers non-nullable fields; the stream reads every batch
        // back under the stream's schema, so we put them under it from the start.
        let batches = [make(3, 300), make(5, 0), make(7, 200)]
            .into_iter()
            .map(|b| b.with_schema(schema.clone()).unwrap())
            .collect();
        (schema, batches)
    }

    #[test]
    fn round_trip_and_truncation() {
        let batch = small_batch();
        let bytes = encode_batch(&batch).unwrap();
        assert_eq!(decode_batch(&bytes).unwrap(), batch);
        for cut in 0..bytes.len() {
            assert!(decode_batch(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn batches_round_trip_compressed() {
        let (schema, batches) = batches();
        let mut out = b"prefix".to_vec();
        encode_batches(&schema, &batches, &mut out).unwrap();
        assert!(out.starts_with(b"prefix"), "encode appends");
        let (got_schema, got) = decode_batches(&out[6..]).unwrap();
        assert_eq!(got_schema, schema);
        assert_eq!(got, batches);
        // Compression really is on: the repetitive columns shrink.
        let plain: usize = batches.iter().map(|b| encode_batch(b).unwrap().len()).sum();
        assert!(out.len() < plain, "{} >= {plain}", out.len());
    }

    #[test]
    fn batches_empty_keeps_schema() {
        let (schema, _) = batches();
        let mut out = Vec::new();
        encode_batches(&schema, &[], &mut out).unwrap();
        let (got_schema, got) = decode_batches(&out).unwrap();
        assert_eq!(got_schema, schema);
        assert!(got.is_empty());
    }

    #[test]
    fn batches_schema_mismatch_is_invalid() {
        let (schema, _) = batches();
        let err = encode_batches(&schema, &[small_batch()], &mut Vec::new()).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        // A batch whose fields are non-nullable fits a nullable stream schema.
        let (_, batches) = batches();
        let strict_schema = arrow::datatypes::Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(false))
                .collect::<Vec<_>>(),
        );
        let strict = RecordBatch::try_new(Arc::new(strict_schema), batches[1].columns().to_vec());
        encode_batches(&schema, &[strict.unwrap()], &mut Vec::new()).unwrap();
    }

    #[test]
    fn batches_truncated_at_every_byte_is_corrupt() {
        let (schema, batches) = batches();
        let mut out = Vec::new();
        encode_batches(&schema, &batches, &mut out).unwrap();
        for cut in 0..out.len() {
            match decode_batches(&out[..cut]) {
                Err(Error::Corrupt(_)) => {}
                other => panic!("cut at {cut} of {}: {other:?}", out.len()),
            }
        }
    }

    #[test]
    fn batches_trailing_bytes_are_corrupt() {
        let (schema, batches) = batches();
        let mut out = Vec::new();
        encode_batches(&schema, &batches, &mut out).unwrap();
        out.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert!(matches!(decode_batches(&out), Err(Error::Corrupt(_))));
    }

    /// Offsets of every message prefix (continuation token + metadata length) and of
    /// the end-of-stream marker in a stream we wrote.
    fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
        let mut out = vec![];
        let mut pos = 0;
        loop {
            out.push(pos);
            let len = i32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap());
            if len == 0 {
                return out;
            }
            let meta = &bytes[pos + 8..pos + 8 + len as usize];
            let body = arrow::ipc::root_as_message(meta).unwrap().bodyLength();
            pos += 8 + len as usize + body as usize;
        }
    }

    /// Flips in the framing (continuation tokens, metadata lengths, end marker) are
    /// always caught. Flips inside metadata or bodies are not all caught here: some
    /// decode to other values (LZ4 frames carry no checksum) and some make arrow's
    /// reader panic, which is why spill files carry a CRC (see `spill`'s tests).
    #[test]
    fn batches_flipped_framing_is_corrupt() {
        let (schema, batches) = batches();
        let mut out = Vec::new();
        encode_batches(&schema, &batches, &mut out).unwrap();
        let frames = frame_offsets(&out);
        assert_eq!(frames.len(), 5, "schema, three batches, end marker");
        for start in frames {
            for pos in start..start + 8 {
                for mask in [0x01u8, 0x80, 0xff] {
                    let mut bad = out.clone();
                    bad[pos] ^= mask;
                    match decode_batches(&bad) {
                        Err(Error::Corrupt(_)) => {}
                        other => panic!("flip {mask:#x} at {pos}: {other:?}"),
                    }
                }
            }
        }
    }

    /// Arrow allocates a compressed buffer's claimed uncompressed size up front; a
    /// corrupt claim must be our error, not an allocation failure that aborts.
    #[test]
    fn batches_impossible_uncompressed_size_is_corrupt() {
        let (schema, batches) = batches();
        let mut out = Vec::new();
        encode_batches(&schema, &batches, &mut out).unwrap();
        let batch_at = frame_offsets(&out)[1];
        let meta_len = i32::from_le_bytes(out[batch_at + 4..batch_at + 8].try_into().unwrap());
        let body_at = batch_at + 8 + meta_len as usize;
        let meta = &out[batch_at + 8..body_at];
        let message = arrow::ipc::root_as_message(meta).unwrap();
        let buffer = message
            .header_as_record_batch()
            .unwrap()
            .buffers()
            .unwrap()
            .iter()
            .find(|b| b.length() >= 8)
            .unwrap();
        let at = body_at + buffer.offset() as usize;
        let mut bad = out.clone();
        bad[at..at + 8].copy_from_slice(&(1i64 << 58).to_le_bytes());
        match decode_batches(&bad) {
            Err(Error::Corrupt(m)) => assert!(m.contains("uncompressed"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

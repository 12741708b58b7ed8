//! A task's [`Value`] ⇄ bytes, so the spill cache can page any result to disk.
//!
//! One tag byte says the variant. Batches (and scalars, as a one-row batch) go as
//! compressed Arrow IPC; JSON records as JSON lines; pieces as a count and each
//! piece's length and bytes. The spill cache adds its own checksum around this.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema};
use datafusion_common::ScalarValue;
use outcore_storage::codec::{decode_batches, encode_batches};
use outcore_storage::spill::Spillable;
use outcore_storage::Error as StorageError;

use super::Value;

const BATCH: u8 = 0;
const RECORDS: u8 = 1;
const SCALAR: u8 = 2;
const PIECES: u8 = 3;

fn corrupt(reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt(reason.into())
}

fn encode_value(value: &Value, out: &mut Vec<u8>) -> Result<(), StorageError> {
    match value {
        Value::Batch(b) => {
            out.push(BATCH);
            encode_batches(&b.schema(), std::slice::from_ref(b), out)
        }
        Value::Records(records) => {
            out.push(RECORDS);
            for r in records {
                serde_json::to_writer(&mut *out, r)
                    .map_err(|e| corrupt(format!("cannot encode a record: {e}")))?;
                out.push(b'\n');
            }
            Ok(())
        }
        Value::Scalar(s) => {
            out.push(SCALAR);
            let array = s
                .to_array()
                .map_err(|e| corrupt(format!("cannot encode a scalar: {e}")))?;
            let schema = Arc::new(Schema::new(vec![Field::new(
                "value",
                array.data_type().clone(),
                true,
            )]));
            let batch = RecordBatch::try_new(schema.clone(), vec![array])
                .map_err(|e| corrupt(format!("cannot encode a scalar: {e}")))?;
            encode_batches(&schema, &[batch], out)
        }
        Value::Pieces(pieces) => {
            out.push(PIECES);
            out.extend_from_slice(&(pieces.len() as u64).to_le_bytes());
            for p in pieces {
                let at = out.len();
                out.extend_from_slice(&0u64.to_le_bytes());
                encode_value(p, out)?;
                let len = (out.len() - at - 8) as u64;
                out[at..at + 8].copy_from_slice(&len.to_le_bytes());
            }
            Ok(())
        }
    }
}

fn take_u64(bytes: &mut &[u8]) -> Result<u64, StorageError> {
    let (head, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| corrupt("a length is cut short"))?;
    *bytes = rest;
    Ok(u64::from_le_bytes(*head))
}

fn decode_value(bytes: &[u8]) -> Result<Value, StorageError> {
    let (&tag, mut body) = bytes
        .split_first()
        .ok_or_else(|| corrupt("an empty value"))?;
    match tag {
        BATCH => {
            let (schema, batches) = decode_batches(body)?;
            let batch = match batches.len() {
                1 => batches.into_iter().next().expect("one batch"),
                _ => arrow::compute::concat_batches(&schema, &batches)
                    .map_err(|e| corrupt(e.to_string()))?,
            };
            Ok(Value::Batch(batch))
        }
        RECORDS => body
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| serde_json::from_slice(line).map_err(|e| corrupt(e.to_string())))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Records),
        SCALAR => {
            let (_, batches) = decode_batches(body)?;
            let batch = batches
                .first()
                .filter(|b| b.num_columns() == 1 && b.num_rows() == 1)
                .ok_or_else(|| corrupt("a scalar is not one value"))?;
            ScalarValue::try_from_array(batch.column(0), 0)
                .map(Value::Scalar)
                .map_err(|e| corrupt(e.to_string()))
        }
        PIECES => {
            let n = take_u64(&mut body)?;
            let mut pieces = Vec::with_capacity(n.min(1 << 16) as usize);
            for _ in 0..n {
                let len = take_u64(&mut body)?;
                if len > body.len() as u64 {
                    return Err(corrupt("a piece is cut short"));
                }
                let (piece, rest) = body.split_at(len as usize);
                pieces.push(decode_value(piece)?);
                body = rest;
            }
            Ok(Value::Pieces(pieces))
        }
        other => Err(corrupt(format!("unknown value tag {other}"))),
    }
}

impl Spillable for Value {
    fn size_bytes(&self) -> usize {
        Value::size_bytes(self)
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), StorageError> {
        encode_value(self, out)
    }

    fn decode(bytes: &[u8]) -> Result<Self, StorageError> {
        decode_value(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, StringArray};

    fn round_trip(v: &Value) -> Value {
        let mut bytes = Vec::new();
        v.encode(&mut bytes).unwrap();
        Value::decode(&bytes).unwrap()
    }

    #[test]
    fn every_variant_round_trips() {
        let batch = RecordBatch::try_from_iter(vec![
            ("a", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
            (
                "b",
                Arc::new(StringArray::from(vec![Some("x"), None, Some("z")])) as ArrayRef,
            ),
        ])
        .unwrap();
        match round_trip(&Value::Batch(batch.clone())) {
            Value::Batch(b) => assert_eq!(b, batch),
            other => panic!("{other:?}"),
        }
        let records = vec![
            serde_json::json!({"a": 1, "b": [1, 2, {"c": null}]}),
            serde_json::json!("s"),
        ];
        match round_trip(&Value::Records(records.clone())) {
            Value::Records(r) => assert_eq!(r, records),
            other => panic!("{other:?}"),
        }
        for s in [
            ScalarValue::Int64(Some(7)),
            ScalarValue::Utf8(None),
            ScalarValue::Float64(Some(0.5)),
        ] {
            match round_trip(&Value::Scalar(s.clone())) {
                Value::Scalar(got) => assert_eq!(got, s),
                other => panic!("{other:?}"),
            }
        }
        let pieces = Value::Pieces(vec![
            Value::Batch(batch.clone()),
            Value::Pieces(vec![]),
            Value::Scalar(ScalarValue::Int64(Some(1))),
        ]);
        match round_trip(&pieces) {
            Value::Pieces(p) => {
                assert_eq!(p.len(), 3);
                assert!(matches!(&p[0], Value::Batch(b) if *b == batch));
                assert!(matches!(&p[1], Value::Pieces(v) if v.is_empty()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cut_bytes_are_an_error() {
        let v = Value::Pieces(vec![Value::Scalar(ScalarValue::Int64(Some(1))); 3]);
        let mut bytes = Vec::new();
        v.encode(&mut bytes).unwrap();
        for cut in [0, 1, 5, bytes.len() / 2, bytes.len() - 1] {
            assert!(Value::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}

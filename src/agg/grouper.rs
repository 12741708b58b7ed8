//! Groupers: map each row's key to a dense group id (0, 1, 2, ... in order of first
//! appearance) and give the distinct keys back as Arrow columns.
//!
//! Three typed paths, chosen from the key columns' types:
//! - one integer-like key (ints, booleans, dates, timestamps) → [`IntGrouper`]: a
//!   direct-indexed table while the keys span a small range (db-benchmark's `id4`,
//!   `id6`), a hash map beyond;
//! - one string key → [`BytesGrouper`] over the string bytes;
//! - several keys → [`BytesGrouper`] over Arrow's row format (`arrow::row`).
//!
//! No key → [`GlobalGrouper`]: every row is group 0, which makes a whole-frame
//! aggregation a groupby with one group.
//!
//! Radix-partitioned aggregation ([`super::radix`]) moves keys between tasks in
//! their *stored* form ([`Grouper::emit_stored`]): the grouper's own key bytes (row
//! format or string bytes, one Binary column; integers as one Int64 column) with
//! each key's hash, so a key is encoded and hashed once, in the chunk task, and the
//! task that merges the parts interns those bytes without re-encoding or rehashing.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringBuilder};
use arrow::datatypes::{DataType, Int64Type};
use arrow::row::{RowConverter, SortField};
use hashbrown::hash_table::{Entry, HashTable};
use hashbrown::HashMap;

use crate::error::{Error, Result};

/// Maps rows to group ids.
pub trait Grouper: Send {
    /// Appends the group id of every row of `keys` (one array per key column, all the
    /// same length) to `out`, creating groups for new keys.
    fn intern(&mut self, keys: &[ArrayRef], out: &mut Vec<u32>) -> Result<()>;
    /// Number of groups so far.
    fn ngroups(&self) -> usize;
    /// The distinct keys, one array per key column, in group-id order.
    fn emit(&mut self) -> Result<Vec<ArrayRef>>;
    /// Makes room for about `groups` more groups (sized from measured partials, so
    /// the table does not grow by rehashing).
    fn reserve(&mut self, _groups: usize) {}
    /// The distinct keys in stored form (one column of [`stored_key_type`]) with
    /// each key's hash, in group-id order.
    fn emit_stored(&mut self) -> Result<(Vec<u64>, ArrayRef)>;
    /// [`intern`](Self::intern) for keys in stored form with their hashes, as
    /// another grouper of the same key types emitted them.
    fn intern_stored(&mut self, hashes: &[u64], keys: &ArrayRef, out: &mut Vec<u32>) -> Result<()>;
}

/// The type of the one stored key column for key columns of these types (see
/// [`Grouper::emit_stored`]); `None` without keys.
pub fn stored_key_type(types: &[DataType]) -> Option<DataType> {
    match types {
        [] => None,
        [t] if int_like(t) => Some(DataType::Int64),
        _ => Some(DataType::Binary),
    }
}

/// The hash of an integer key: a multiplicative hash, whose middle bits (the ones
/// radix partitioning uses) depend on all the low bits of the key.
#[inline]
pub fn hash_i64(k: i64) -> u64 {
    let h = (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 32)
}

/// A grouper for key columns of these types.
pub fn new_grouper(types: &[DataType]) -> Result<Box<dyn Grouper>> {
    Ok(match types {
        [] => Box::new(GlobalGrouper),
        [t] if int_like(t) => Box::new(IntGrouper::new(t.clone())),
        [DataType::Utf8] => Box::new(BytesGrouper::new(BytesKind::Utf8)),
        many => {
            let fields = many.iter().map(|t| SortField::new(t.clone())).collect();
            Box::new(BytesGrouper::new(BytesKind::Rows(RowConverter::new(
                fields,
            )?)))
        }
    })
}

fn int_like(t: &DataType) -> bool {
    t.is_integer()
        || matches!(
            t,
            DataType::Boolean | DataType::Date32 | DataType::Timestamp(..)
        )
}

/// Whole-frame aggregation: one group.
pub struct GlobalGrouper;

impl Grouper for GlobalGrouper {
    fn intern(&mut self, _keys: &[ArrayRef], out: &mut Vec<u32>) -> Result<()> {
        Err(Error::Internal(format!(
            "GlobalGrouper::intern called ({} ids)",
            out.len()
        )))
    }
    fn ngroups(&self) -> usize {
        1
    }
    fn emit(&mut self) -> Result<Vec<ArrayRef>> {
        Ok(Vec::new())
    }
    fn emit_stored(&mut self) -> Result<(Vec<u64>, ArrayRef)> {
        Err(Error::Internal("GlobalGrouper::emit_stored called".into()))
    }
    fn intern_stored(&mut self, _: &[u64], _: &ArrayRef, _: &mut Vec<u32>) -> Result<()> {
        Err(Error::Internal(
            "GlobalGrouper::intern_stored called".into(),
        ))
    }
}

/// Keys spanning at most this many values use a direct-indexed table.
const DENSE_LIMIT: i64 = 1 << 22;
const EMPTY: u32 = u32::MAX;

/// One integer-like key.
pub struct IntGrouper {
    data_type: DataType,
    /// Distinct keys by group id.
    keys: Vec<i64>,
    /// The group of the null key, when rows with null keys are kept.
    null_group: Option<u32>,
    /// `table[k - base]` is the group of key `k`, while keys stay in a small range.
    dense: Option<(i64, Vec<u32>)>,
    sparse: HashMap<i64, u32>,
}

impl IntGrouper {
    fn new(data_type: DataType) -> Self {
        IntGrouper {
            data_type,
            keys: Vec::new(),
            null_group: None,
            dense: Some((0, Vec::new())),
            sparse: HashMap::new(),
        }
    }

    /// Grows the dense table to cover `[lo, hi]`, or gives it up for the hash map.
    fn cover(&mut self, lo: i64, hi: i64) {
        let Some((base, table)) = &mut self.dense else {
            return;
        };
        let (new_lo, new_hi) = if table.is_empty() {
            (lo, hi)
        } else {
            ((*base).min(lo), (*base + table.len() as i64 - 1).max(hi))
        };
        if new_hi.saturating_sub(new_lo) >= DENSE_LIMIT {
            let (base, table) = self.dense.take().expect("checked above");
            for (i, &g) in table.iter().enumerate() {
                if g != EMPTY {
                    self.sparse.insert(base + i as i64, g);
                }
            }
            return;
        }
        if table.is_empty() {
            *base = new_lo;
            table.resize((new_hi - new_lo + 1) as usize, EMPTY);
        } else if new_lo < *base || new_hi >= *base + table.len() as i64 {
            let mut grown = vec![EMPTY; (new_hi - new_lo + 1) as usize];
            let shift = (*base - new_lo) as usize;
            grown[shift..shift + table.len()].copy_from_slice(table);
            *base = new_lo;
            *table = grown;
        }
    }
}

impl Grouper for IntGrouper {
    fn intern(&mut self, keys: &[ArrayRef], out: &mut Vec<u32>) -> Result<()> {
        let array = super::accumulator::to_i64(&keys[0])?;
        let array = array.as_primitive::<Int64Type>();
        let values = array.values();
        if array.len() > array.null_count() {
            let lo = arrow::compute::min(array).unwrap_or(0);
            let hi = arrow::compute::max(array).unwrap_or(0);
            self.cover(lo, hi);
        }
        out.reserve(values.len());
        let nulls = array.nulls().filter(|n| n.null_count() > 0).cloned();
        let keys_vec = &mut self.keys;
        match &mut self.dense {
            Some((base, table)) => {
                for (i, &k) in values.iter().enumerate() {
                    if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                        out.push(*self.null_group.get_or_insert_with(|| {
                            keys_vec.push(0);
                            (keys_vec.len() - 1) as u32
                        }));
                        continue;
                    }
                    let slot = &mut table[(k - *base) as usize];
                    if *slot == EMPTY {
                        *slot = keys_vec.len() as u32;
                        keys_vec.push(k);
                    }
                    out.push(*slot);
                }
            }
            None => {
                for (i, &k) in values.iter().enumerate() {
                    if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                        out.push(*self.null_group.get_or_insert_with(|| {
                            keys_vec.push(0);
                            (keys_vec.len() - 1) as u32
                        }));
                        continue;
                    }
                    let next = keys_vec.len() as u32;
                    let g = *self.sparse.entry(k).or_insert(next);
                    if g == next {
                        keys_vec.push(k);
                    }
                    out.push(g);
                }
            }
        }
        Ok(())
    }

    fn ngroups(&self) -> usize {
        self.keys.len()
    }

    fn emit(&mut self) -> Result<Vec<ArrayRef>> {
        let keys = std::mem::take(&mut self.keys);
        let nulls = self.null_group.map(|g| {
            let mut valid = vec![true; keys.len()];
            valid[g as usize] = false;
            arrow::buffer::NullBuffer::from(valid)
        });
        let array: ArrayRef = Arc::new(Int64Array::new(keys.into(), nulls));
        let out = super::accumulator::from_i64(array, &self.data_type)?;
        Ok(vec![out])
    }

    fn reserve(&mut self, groups: usize) {
        self.keys.reserve(groups);
        if self.dense.is_none() {
            self.sparse.reserve(groups);
        }
    }

    fn emit_stored(&mut self) -> Result<(Vec<u64>, ArrayRef)> {
        let null = self.null_group;
        let hashes = self
            .keys
            .iter()
            .enumerate()
            .map(|(g, &k)| {
                if Some(g as u32) == null {
                    0
                } else {
                    hash_i64(k)
                }
            })
            .collect();
        let keys = std::mem::take(&mut self.keys);
        let nulls = null.map(|g| {
            let mut valid = vec![true; keys.len()];
            valid[g as usize] = false;
            arrow::buffer::NullBuffer::from(valid)
        });
        Ok((hashes, Arc::new(Int64Array::new(keys.into(), nulls))))
    }

    fn intern_stored(&mut self, _: &[u64], keys: &ArrayRef, out: &mut Vec<u32>) -> Result<()> {
        self.intern(std::slice::from_ref(keys), out)
    }
}

enum BytesKind {
    Utf8,
    Rows(RowConverter),
}

/// Keys as byte strings: a single string column, or several columns in Arrow's row
/// format. Distinct keys live in one arena; the hash table holds group ids only.
pub struct BytesGrouper {
    kind: BytesKind,
    table: HashTable<u32>,
    hashes: Vec<u64>,
    arena: Vec<u8>,
    offsets: Vec<usize>,
    null_group: Option<u32>,
    state: foldhash::fast::FixedState,
}

impl BytesGrouper {
    fn new(kind: BytesKind) -> Self {
        BytesGrouper {
            kind,
            table: HashTable::new(),
            hashes: Vec::new(),
            arena: Vec::new(),
            offsets: vec![0],
            null_group: None,
            state: foldhash::fast::FixedState::with_seed(0x5eed),
        }
    }

    fn key(&self, g: u32) -> &[u8] {
        &self.arena[self.offsets[g as usize]..self.offsets[g as usize + 1]]
    }

    fn intern_bytes(&mut self, bytes: &[u8]) -> u32 {
        use std::hash::BuildHasher;
        let hash = self.state.hash_one(bytes);
        self.intern_hashed(bytes, hash)
    }

    #[inline]
    fn intern_hashed(&mut self, bytes: &[u8], hash: u64) -> u32 {
        let (arena, offsets, hashes) = (&self.arena, &self.offsets, &self.hashes);
        let entry = self.table.entry(
            hash,
            |&g| {
                hashes[g as usize] == hash
                    && &arena[offsets[g as usize]..offsets[g as usize + 1]] == bytes
            },
            |&g| hashes[g as usize],
        );
        match entry {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let g = (self.offsets.len() - 1) as u32;
                e.insert(g);
                self.arena.extend_from_slice(bytes);
                self.offsets.push(self.arena.len());
                self.hashes.push(hash);
                g
            }
        }
    }

    fn null_group(&mut self) -> u32 {
        if let Some(g) = self.null_group {
            return g;
        }
        let g = (self.offsets.len() - 1) as u32;
        self.offsets.push(self.arena.len());
        self.hashes.push(0);
        self.null_group = Some(g);
        g
    }
}

impl Grouper for BytesGrouper {
    fn intern(&mut self, keys: &[ArrayRef], out: &mut Vec<u32>) -> Result<()> {
        out.reserve(keys[0].len());
        match &self.kind {
            BytesKind::Utf8 => {
                let a = keys[0].as_string::<i32>();
                let has_nulls = a.null_count() > 0;
                for i in 0..a.len() {
                    let g = if has_nulls && a.is_null(i) {
                        self.null_group()
                    } else {
                        self.intern_bytes(a.value(i).as_bytes())
                    };
                    out.push(g);
                }
            }
            BytesKind::Rows(converter) => {
                let rows = converter.convert_columns(keys)?;
                for row in rows.iter() {
                    let g = self.intern_bytes(row.as_ref());
                    out.push(g);
                }
            }
        }
        Ok(())
    }

    fn ngroups(&self) -> usize {
        self.offsets.len() - 1
    }

    fn emit(&mut self) -> Result<Vec<ArrayRef>> {
        let n = self.ngroups();
        let out = match &self.kind {
            BytesKind::Utf8 => {
                let mut b = StringBuilder::with_capacity(n, self.arena.len());
                for g in 0..n as u32 {
                    if Some(g) == self.null_group {
                        b.append_null();
                    } else {
                        let s = std::str::from_utf8(self.key(g))
                            .map_err(|e| Error::Internal(format!("group key is not UTF-8: {e}")))?;
                        b.append_value(s);
                    }
                }
                vec![Arc::new(b.finish()) as ArrayRef]
            }
            BytesKind::Rows(converter) => {
                let parser = converter.parser();
                let rows: Vec<_> = (0..n as u32).map(|g| parser.parse(self.key(g))).collect();
                converter.convert_rows(rows)?
            }
        };
        Ok(out)
    }

    fn reserve(&mut self, groups: usize) {
        let hashes = &self.hashes;
        self.table.reserve(groups, |&g| hashes[g as usize]);
        self.hashes.reserve(groups);
        self.offsets.reserve(groups);
    }

    fn emit_stored(&mut self) -> Result<(Vec<u64>, ArrayRef)> {
        let n = self.ngroups();
        let too_big = || {
            Error::Internal(format!(
                "a partial's keys take {} bytes, more than a Binary column holds",
                self.arena.len()
            ))
        };
        let offsets = self
            .offsets
            .iter()
            .map(|&o| i32::try_from(o))
            .collect::<std::result::Result<Vec<i32>, _>>()
            .map_err(|_| too_big())?;
        let nulls = self.null_group.map(|g| {
            let mut valid = vec![true; n];
            valid[g as usize] = false;
            arrow::buffer::NullBuffer::from(valid)
        });
        let values = arrow::buffer::Buffer::from_vec(std::mem::take(&mut self.arena));
        let keys = arrow::array::BinaryArray::try_new(
            arrow::buffer::OffsetBuffer::new(offsets.into()),
            values,
            nulls,
        )?;
        let hashes = std::mem::take(&mut self.hashes);
        self.table.clear();
        self.offsets = vec![0];
        self.null_group = None;
        Ok((hashes, Arc::new(keys)))
    }

    fn intern_stored(&mut self, hashes: &[u64], keys: &ArrayRef, out: &mut Vec<u32>) -> Result<()> {
        let a = keys.as_binary::<i32>();
        out.reserve(a.len());
        let has_nulls = a.null_count() > 0;
        for (i, &h) in hashes.iter().enumerate().take(a.len()) {
            let g = if has_nulls && a.is_null(i) {
                self.null_group()
            } else {
                self.intern_hashed(a.value(i), h)
            };
            out.push(g);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;

    fn ids(g: &mut dyn Grouper, keys: &[ArrayRef]) -> Vec<u32> {
        let mut out = Vec::new();
        g.intern(keys, &mut out).unwrap();
        out
    }

    #[test]
    fn int_keys_dense_then_sparse() {
        let mut g = new_grouper(&[DataType::Int64]).unwrap();
        let a: ArrayRef = Arc::new(Int64Array::from(vec![Some(5), Some(3), None, Some(5)]));
        assert_eq!(ids(g.as_mut(), &[a]), vec![0, 1, 2, 0]);
        let b: ArrayRef = Arc::new(Int64Array::from(vec![1 << 40, 3, -7]));
        assert_eq!(ids(g.as_mut(), &[b]), vec![3, 1, 4]);
        let keys = g.emit().unwrap();
        let k = keys[0].as_primitive::<Int64Type>();
        assert_eq!(
            k.iter().collect::<Vec<_>>(),
            vec![Some(5), Some(3), None, Some(1 << 40), Some(-7)]
        );
    }

    #[test]
    fn string_and_multi_keys() {
        let s: ArrayRef = Arc::new(StringArray::from(vec![
            Some("b"),
            Some("a"),
            Some("b"),
            None,
        ]));
        let mut g = new_grouper(&[DataType::Utf8]).unwrap();
        assert_eq!(ids(g.as_mut(), std::slice::from_ref(&s)), vec![0, 1, 0, 2]);
        let k = g.emit().unwrap();
        assert_eq!(
            k[0].as_string::<i32>().iter().collect::<Vec<_>>(),
            vec![Some("b"), Some("a"), None]
        );

        let n: ArrayRef = Arc::new(Int64Array::from(vec![1, 1, 2, 1]));
        let mut g = new_grouper(&[DataType::Utf8, DataType::Int64]).unwrap();
        assert_eq!(ids(g.as_mut(), &[s, n]), vec![0, 1, 2, 3]);
        let k = g.emit().unwrap();
        assert_eq!(
            k[1].as_primitive::<Int64Type>().values().to_vec(),
            vec![1, 1, 2, 1]
        );
    }
}

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

use super::packed_table::PackedTable;
use crate::error::{Error, Result};

/// Maps rows to group ids.
pub trait Grouper: Send {
    /// Appends the group id of every row of `keys` (one array per key column, all the
    /// same length) to `out`, creating groups for new keys.
    fn intern(&mut self, keys: &[ArrayRef], out: &mut Vec<u32>) -> Result<()>;
    /// Number of groups so far.
    fn ngroups(&self) -> usize;
    /// Bytes the grouper holds (its table, keys and hashes, by capacity), for the
    /// memory account of a table that lives across chunks.
    fn size_bytes(&self) -> usize;
    /// The distinct keys, one array per key column, in group-id order.
    fn emit(&mut self) -> Result<Vec<ArrayRef>>;
    /// Makes room for about `groups` more groups (sized from measured partials, so
    /// the table does not grow by rehashing).
    fn reserve(&mut self, _groups: usize) {}
    /// The distinct keys in stored form (one column of [`stored_key_type`]) with
    /// each key's hash, in group-id order.
    fn emit_stored(&mut self) -> Result<(Vec<u64>, ArrayRef)>;
    /// About the most bytes [`emit_stored`](Self::emit_stored) allocates beside
    /// what the grouper holds (its own buffers given away count nothing): what a
    /// running table reserves before it is taken out. It may get the keys ready
    /// to emit: call it right before `emit_stored`, with no `intern` between.
    fn emit_stored_bytes(&mut self) -> Result<u64>;
    /// [`intern`](Self::intern) for keys in stored form with their hashes, as
    /// another grouper of the same key types emitted them.
    fn intern_stored(&mut self, hashes: &[u64], keys: &ArrayRef, out: &mut Vec<u32>) -> Result<()>;
    /// The group ids in the order of their keys (ascending, nulls last), when the
    /// grouper can give it from what it holds; `None` otherwise. Followed by
    /// [`emit_in`](Self::emit_in).
    fn key_order(&mut self) -> Result<Option<Vec<u32>>> {
        Ok(None)
    }
    /// [`emit`](Self::emit), the groups in `order` (a permutation of the ids).
    fn emit_in(&mut self, order: &[u32]) -> Result<Vec<ArrayRef>> {
        let idx = arrow::array::UInt32Array::from(order.to_vec());
        self.emit()?
            .iter()
            .map(|c| Ok(arrow::compute::take(c.as_ref(), &idx, None)?))
            .collect()
    }
    /// Every row's key in stored form with its hash, without grouping (each row a
    /// group of its own, as [`emit_stored`](Self::emit_stored) would give it): for
    /// a chunk whose rows are nearly all distinct keys, where a table would only
    /// cost time. The grouper is left as it was.
    fn rows_stored(&mut self, keys: &[ArrayRef]) -> Result<(Vec<u64>, ArrayRef)>;
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

/// The hash of a key's bytes (a string key's, or several keys' row format): the
/// one [`BytesGrouper`] keys its table by and stores.
#[inline]
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x5eed).hash_one(bytes)
}

/// A grouper for key columns of these types.
pub fn new_grouper(types: &[DataType]) -> Result<Box<dyn Grouper>> {
    Ok(match types {
        [] => Box::new(GlobalGrouper),
        [t] if int_like(t) => Box::new(IntGrouper::new(t.clone())),
        [DataType::Utf8] => Box::new(BytesGrouper::new(BytesKind::Utf8)),
        [a, b] if pair_key(a) && pair_key(b) => Box::new(PairGrouper::new(types)?),
        many => Box::new(BytesGrouper::new(BytesKind::Rows(rows_converter(many)?))),
    })
}

/// A grouper for `rows` rows of partials stored by groupers of key columns of
/// these types ([`Grouper::emit_stored`]): as [`new_grouper`], except that two
/// keys of fewer than [`PAIRS_BY_COLUMN_ROWS`] rows are grouped as the rows they
/// are stored as. A finalize task's part of few groups holds each column's key
/// about once, so splitting the rows into columns and interning each (as
/// [`PairGrouper`] does) only costs time and a table per column; a part of tens
/// of thousands of groups or more repeats each column's keys (1e5 of `id2` over
/// 2e6 groups), where the column tables are small and their ranks sort the
/// groups faster than comparing rows.
pub fn new_stored_grouper(types: &[DataType], rows: usize) -> Result<Box<dyn Grouper>> {
    match types {
        [a, b] if pair_key(a) && pair_key(b) && rows < PAIRS_BY_COLUMN_ROWS => Ok(Box::new(
            BytesGrouper::new(BytesKind::Rows(rows_converter(types)?)),
        )),
        _ => new_grouper(types),
    }
}

/// See [`new_stored_grouper`]. 65,536: with the pair table probed ahead and
/// the groups put in order by a radix sort, grouping by column is the faster at
/// a part of 290,000 groups of q9 at K=1e5 (2.5 s against 3.4 s for the whole
/// query), and at a 64 MB limit q2's parts of 77,000 groups take no more memory.
pub const PAIRS_BY_COLUMN_ROWS: usize = 1 << 16;

/// The row format of several key columns: ascending, nulls last (the answer's
/// order, so that the rows' bytes sort the groups; see `key_order`).
fn rows_converter(types: &[DataType]) -> Result<RowConverter> {
    let options = arrow::compute::SortOptions {
        descending: false,
        nulls_first: false,
    };
    let fields = types
        .iter()
        .map(|t| SortField::new_with_options(t.clone(), options))
        .collect();
    Ok(RowConverter::new(fields)?)
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
    fn size_bytes(&self) -> usize {
        0
    }
    fn emit(&mut self) -> Result<Vec<ArrayRef>> {
        Ok(Vec::new())
    }
    fn emit_stored(&mut self) -> Result<(Vec<u64>, ArrayRef)> {
        Err(Error::Internal("GlobalGrouper::emit_stored called".into()))
    }
    fn emit_stored_bytes(&mut self) -> Result<u64> {
        Ok(0)
    }
    fn intern_stored(&mut self, _: &[u64], _: &ArrayRef, _: &mut Vec<u32>) -> Result<()> {
        Err(Error::Internal(
            "GlobalGrouper::intern_stored called".into(),
        ))
    }
    fn rows_stored(&mut self, _: &[ArrayRef]) -> Result<(Vec<u64>, ArrayRef)> {
        Err(Error::Internal("GlobalGrouper::rows_stored called".into()))
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

    fn size_bytes(&self) -> usize {
        self.keys.capacity() * 8
            + self.dense.as_ref().map_or(0, |(_, t)| t.capacity() * 4)
            + self.sparse.capacity() * (8 + 4 + 1)
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

    /// The hashes, and a validity flag per group when one is null (the keys
    /// are given away).
    fn emit_stored_bytes(&mut self) -> Result<u64> {
        let n = self.keys.len() as u64;
        Ok(8 * n + if self.null_group.is_some() { n } else { 0 })
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

    fn rows_stored(&mut self, keys: &[ArrayRef]) -> Result<(Vec<u64>, ArrayRef)> {
        let array = super::accumulator::to_i64(&keys[0])?;
        let a = array.as_primitive::<Int64Type>();
        let mut hashes: Vec<u64> = a.values().iter().map(|&k| hash_i64(k)).collect();
        if let Some(n) = a.nulls().filter(|n| n.null_count() > 0) {
            for i in 0..a.len() {
                if n.is_null(i) {
                    hashes[i] = 0;
                }
            }
        }
        Ok((hashes, array))
    }
}

/// A [`BytesGrouper`] table entry: the group and its key's place in the arena.
#[derive(Clone, Copy)]
struct Slot {
    start: usize,
    len: u32,
    group: u32,
}

/// Whether a key column of this type can be one of a [`PairGrouper`]'s two.
fn pair_key(t: &DataType) -> bool {
    int_like(t) || *t == DataType::Utf8
}

/// Two key columns (db-benchmark's `id1, id2` and `id2, id4`): each column grouped
/// on its own, by the typed grouper of its type, into dense codes, and the pair of
/// codes grouped as one 64-bit number. Cheaper than encoding every row in Arrow's
/// row format (two strings make a row of some 70 bytes to hash and compare): the
/// per-column groupers see short keys, and the pair table sees one integer.
///
/// Stored form (radix-partitioned aggregation) is the row format, as for other
/// multi-column keys: the distinct keys are encoded once when emitted, and stored
/// keys are decoded back into columns when interned.
pub struct PairGrouper {
    types: Vec<DataType>,
    columns: [Box<dyn Grouper>; 2],
    /// The pair of column codes of each group, by group id.
    pairs: Vec<(u32, u32)>,
    table: PackedTable<[u32; 2]>,
    converter: RowConverter,
    state: foldhash::fast::FixedState,
    /// Scratch: the codes of the current batch, per column.
    codes: [Vec<u32>; 2],
    /// Each column's distinct keys, by code, once [`Grouper::key_order`] has
    /// taken them from the column groupers.
    distinct: Option<[ArrayRef; 2]>,
    /// Those keys in the row format, once [`Grouper::emit_stored_bytes`] or
    /// [`Grouper::emit_stored`] has encoded them (each encodes them once).
    encoded: Option<Arc<[arrow::row::Rows; 2]>>,
}

impl PairGrouper {
    fn new(types: &[DataType]) -> Result<Self> {
        Ok(PairGrouper {
            types: types.to_vec(),
            columns: [new_grouper(&types[..1])?, new_grouper(&types[1..])?],
            pairs: Vec::new(),
            table: PackedTable::new(hash_codes),
            // The same rows and seed as `BytesGrouper`'s, so a stored key is the
            // one it would store (see `new_stored_grouper`).
            converter: rows_converter(types)?,
            state: foldhash::fast::FixedState::with_seed(0x5eed),
            codes: [Vec::new(), Vec::new()],
            distinct: None,
            encoded: None,
        })
    }

    /// Each column's distinct keys, by code (taken from the column groupers once).
    fn distinct(&mut self) -> Result<[ArrayRef; 2]> {
        if self.distinct.is_none() {
            let [a, b] = &mut self.columns;
            self.distinct = Some([a.emit()?.remove(0), b.emit()?.remove(0)]);
        }
        Ok(self.distinct.clone().expect("set above"))
    }

    /// Each column's distinct keys, by code, in the row format (each column on
    /// its own, with the field the stored rows use).
    fn encoded_distinct(&mut self) -> Result<Arc<[arrow::row::Rows; 2]>> {
        if self.encoded.is_none() {
            let [a, b] = self.distinct()?;
            let encode = |c: usize, keys: ArrayRef| -> Result<arrow::row::Rows> {
                Ok(rows_converter(&self.types[c..c + 1])?.convert_columns(&[keys])?)
            };
            self.encoded = Some(Arc::new([encode(0, a)?, encode(1, b)?]));
        }
        Ok(self.encoded.clone().expect("set above"))
    }

    /// The bytes of every group's stored key: its two columns' encodings.
    fn stored_key_bytes(&self, a: &arrow::row::Rows, b: &arrow::row::Rows) -> usize {
        self.pairs
            .iter()
            .map(|&(x, y)| a.row(x as usize).as_ref().len() + b.row(y as usize).as_ref().len())
            .sum()
    }

    /// The keys of the groups in `order`, one column each: the distinct keys
    /// gathered by the groups' codes.
    fn keys_in(&mut self, order: impl Iterator<Item = u32> + Clone) -> Result<Vec<ArrayRef>> {
        let distinct = self.distinct()?;
        let mut out = Vec::with_capacity(2);
        for (c, keys) in distinct.iter().enumerate() {
            let codes: arrow::array::UInt32Array = order
                .clone()
                .map(|g| {
                    let p = self.pairs[g as usize];
                    if c == 0 {
                        p.0
                    } else {
                        p.1
                    }
                })
                .collect::<Vec<u32>>()
                .into();
            out.push(arrow::compute::take(keys.as_ref(), &codes, None)?);
        }
        Ok(out)
    }
}

/// Each code's place among `keys` (distinct values) in ascending order, nulls
/// last: the order of the keys as numbers.
fn ranks(keys: &ArrayRef) -> Result<Vec<u32>> {
    let options = arrow::compute::SortOptions {
        descending: false,
        nulls_first: false,
    };
    let sorted = arrow::compute::sort_to_indices(keys.as_ref(), Some(options), None)?;
    let mut rank = vec![0u32; keys.len()];
    for (r, &code) in sorted.values().iter().enumerate() {
        rank[code as usize] = r as u32;
    }
    Ok(rank)
}

/// The order of groups whose keys are `pairs` of codes, by the codes' ranks (`ra`
/// of the first column's codes, then `rb` of the second's). Every group's pair is
/// distinct, so its place `ra * |rb| + rb` is too: when that number and the
/// group's id fit in 64 bits together, the groups are sorted as one word each by
/// the place's bits alone, twelve bits a pass ([`radix_sort_bits`]: each pass
/// writes to few enough buckets to stay in cache). Otherwise (more than about
/// two million groups with as many keys in each column) they are put in order by
/// two counting sorts, by the second rank and then stably by the first, which
/// write to as many places as a column has keys. Needs 16 bytes a group.
fn order_by_ranks(pairs: &[(u32, u32)], ra: &[u32], rb: &[u32]) -> Vec<u32> {
    let places = ra.len() as u64 * rb.len() as u64;
    let (place_bits, group_bits) = (bits_for(places), bits_for(pairs.len() as u64));
    if place_bits + group_bits <= 64 {
        order_by_words(pairs, ra, rb)
    } else {
        order_by_counting(pairs, ra, rb)
    }
}

/// [`order_by_ranks`] with each group as one word: its place, then its id.
fn order_by_words(pairs: &[(u32, u32)], ra: &[u32], rb: &[u32]) -> Vec<u32> {
    let place_bits = bits_for(ra.len() as u64 * rb.len() as u64);
    let group_bits = bits_for(pairs.len() as u64);
    let nb = rb.len() as u64;
    let mut words: Vec<u64> = pairs
        .iter()
        .enumerate()
        .map(|(g, p)| {
            let place = u64::from(ra[p.0 as usize]) * nb + u64::from(rb[p.1 as usize]);
            place << group_bits | g as u64
        })
        .collect();
    radix_sort_bits(&mut words, group_bits, group_bits + place_bits);
    let mask = (1u64 << group_bits) - 1;
    words.into_iter().map(|w| (w & mask) as u32).collect()
}

/// [`order_by_ranks`] by two counting sorts.
fn order_by_counting(pairs: &[(u32, u32)], ra: &[u32], rb: &[u32]) -> Vec<u32> {
    let by_second: Vec<(u32, u32)> = counting_sort(
        &pairs
            .iter()
            .enumerate()
            .map(|(g, p)| (g as u32, ra[p.0 as usize]))
            .collect::<Vec<_>>(),
        rb.len(),
        |(g, _)| rb[pairs[g as usize].1 as usize] as usize,
    );
    let order = counting_sort(&by_second, ra.len(), |(_, r)| r as usize);
    drop(by_second);
    order.into_iter().map(|(g, _)| g).collect()
}

/// The bits needed to write every number below `n` (0 for `n` ≤ 1).
fn bits_for(n: u64) -> u32 {
    64 - n.saturating_sub(1).leading_zeros()
}

/// Sorts `words` by their bits `lo..hi` (a least-significant-digit radix sort, at
/// most 12 bits a pass, stable; the bits outside are carried along).
fn radix_sort_bits(words: &mut Vec<u64>, lo: u32, hi: u32) {
    if hi <= lo || words.len() < 2 {
        return;
    }
    let passes = (hi - lo).div_ceil(12);
    let width = (hi - lo).div_ceil(passes);
    let mut other = vec![0u64; words.len()];
    let mut shift = lo;
    while shift < hi {
        let bits = width.min(hi - shift);
        let mask = (1u64 << bits) - 1;
        counting_sort_into(words, &mut other, 1 << bits, |w| {
            ((w >> shift) & mask) as usize
        });
        std::mem::swap(words, &mut other);
        shift += bits;
    }
}

/// A stable counting sort of `items` by `key` (below `buckets`).
fn counting_sort<T: Copy + Default>(
    items: &[T],
    buckets: usize,
    key: impl Fn(T) -> usize,
) -> Vec<T> {
    let mut out = vec![T::default(); items.len()];
    counting_sort_into(items, &mut out, buckets, key);
    out
}

/// [`counting_sort`] into `out` (as long as `items`), so that passes over the
/// same items can reuse one buffer.
fn counting_sort_into<T: Copy>(
    items: &[T],
    out: &mut [T],
    buckets: usize,
    key: impl Fn(T) -> usize,
) {
    let mut start = vec![0usize; buckets + 1];
    for &x in items {
        start[key(x) + 1] += 1;
    }
    for b in 1..=buckets {
        start[b] += start[b - 1];
    }
    for &x in items {
        let b = key(x);
        out[start[b]] = x;
        start[b] += 1;
    }
}

impl Grouper for PairGrouper {
    fn intern(&mut self, keys: &[ArrayRef], out: &mut Vec<u32>) -> Result<()> {
        if self.distinct.is_some() {
            return Err(Error::Internal(
                "a pair grouper interned after emitting".into(),
            ));
        }
        let [ca, cb] = &mut self.codes;
        ca.clear();
        cb.clear();
        self.columns[0].intern(&keys[..1], ca)?;
        self.columns[1].intern(&keys[1..2], cb)?;
        // With millions of groups each probe misses the cache: the entry of the
        // row `AHEAD` rows on is fetched while this row probes, so misses overlap.
        const AHEAD: usize = 16;
        let n = ca.len();
        out.reserve(n);
        for i in 0..n {
            if i + AHEAD < n {
                self.table
                    .prefetch(hash_codes([ca[i + AHEAD], cb[i + AHEAD]]));
            }
            let key = [ca[i], cb[i]];
            let next = self.pairs.len() as u32;
            let (g, new) = self.table.find_or_insert(key, hash_codes(key), next);
            if new {
                self.pairs.push((key[0], key[1]));
            }
            out.push(g);
        }
        Ok(())
    }

    fn ngroups(&self) -> usize {
        self.pairs.len()
    }

    fn size_bytes(&self) -> usize {
        self.columns.iter().map(|c| c.size_bytes()).sum::<usize>()
            + self.pairs.capacity() * 8
            + self.table.size_bytes()
            + self.codes.iter().map(|c| c.capacity() * 4).sum::<usize>()
    }

    fn emit(&mut self) -> Result<Vec<ArrayRef>> {
        self.keys_in(0..self.pairs.len() as u32)
    }

    /// The groups in the order of their keys without comparing keys: each
    /// column's distinct keys (few beside the groups) are sorted once into ranks,
    /// and the groups are put in order by the pair of ranks ([`order_by_ranks`]).
    fn key_order(&mut self) -> Result<Option<Vec<u32>>> {
        let [a, b] = self.distinct()?;
        let (ra, rb) = (ranks(&a)?, ranks(&b)?);
        let n = self.pairs.len() as u64;
        // Each pass reads one list of (group, rank) and writes another.
        let scratch = 16 * n;
        if !crate::scheduler::try_reserve(scratch)? {
            // Refused: the groups are put in order in place, comparing their
            // ranks (slower; no memory beyond the order itself).
            let mut order: Vec<u32> = (0..n as u32).collect();
            order.sort_unstable_by_key(|&g| {
                let p = self.pairs[g as usize];
                (ra[p.0 as usize], rb[p.1 as usize])
            });
            return Ok(Some(order));
        }
        let order = order_by_ranks(&self.pairs, &ra, &rb);
        // What stays is the order (in the buffer of the last pass, at most 8
        // bytes a group), until the task ends.
        crate::scheduler::release(scratch - 8 * n);
        Ok(Some(order))
    }

    fn emit_in(&mut self, order: &[u32]) -> Result<Vec<ArrayRef>> {
        self.keys_in(order.iter().copied())
    }

    fn reserve(&mut self, groups: usize) {
        self.pairs.reserve(groups);
        self.table.reserve(groups);
    }

    /// Each column's distinct keys are encoded in the row format once, and a
    /// group's stored key is its two encodings one after the other (a row is
    /// its columns' encodings in order): the groups' keys are written once, into
    /// the stored column, never as columns or rows of their own beside it.
    fn emit_stored(&mut self) -> Result<(Vec<u64>, ArrayRef)> {
        use std::hash::BuildHasher;
        let encoded = self.encoded_distinct()?;
        let [a, b] = &*encoded;
        let bytes = self.stored_key_bytes(a, b);
        let n = self.pairs.len();
        let too_big = || {
            Error::Internal(format!(
                "a partial's keys take {bytes} bytes, more than a Binary column holds"
            ))
        };
        i32::try_from(bytes).map_err(|_| too_big())?;
        let mut values: Vec<u8> = Vec::with_capacity(bytes);
        let mut offsets: Vec<i32> = Vec::with_capacity(n + 1);
        let mut hashes: Vec<u64> = Vec::with_capacity(n);
        offsets.push(0);
        for &(x, y) in &self.pairs {
            let start = values.len();
            values.extend_from_slice(a.row(x as usize).as_ref());
            values.extend_from_slice(b.row(y as usize).as_ref());
            hashes.push(self.state.hash_one(&values[start..]));
            offsets.push(values.len() as i32);
        }
        let keys = arrow::array::BinaryArray::try_new(
            arrow::buffer::OffsetBuffer::new(offsets.into()),
            arrow::buffer::Buffer::from_vec(values),
            None,
        )?;
        // Emitting gave the columns' keys away: start afresh, as `BytesGrouper` does.
        *self = PairGrouper::new(&self.types)?;
        Ok((hashes, Arc::new(keys)))
    }

    /// The stored column (its bytes and offsets), the hashes, and each column's
    /// distinct keys and their encodings.
    fn emit_stored_bytes(&mut self) -> Result<u64> {
        let encoded = self.encoded_distinct()?;
        let n = self.pairs.len() as u64;
        let distinct: u64 = encoded.iter().map(|r| r.size() as u64).sum::<u64>()
            + self
                .distinct
                .iter()
                .flatten()
                .map(|k| k.get_array_memory_size() as u64)
                .sum::<u64>();
        Ok(self.stored_key_bytes(&encoded[0], &encoded[1]) as u64 + 12 * n + distinct)
    }

    fn rows_stored(&mut self, keys: &[ArrayRef]) -> Result<(Vec<u64>, ArrayRef)> {
        rows_stored(&self.converter, keys)
    }

    fn intern_stored(&mut self, _: &[u64], keys: &ArrayRef, out: &mut Vec<u32>) -> Result<()> {
        let a = keys.as_binary::<i32>();
        let parser = self.converter.parser();
        let rows: Vec<_> = a
            .iter()
            .map(|k| parser.parse(k.unwrap_or_default()))
            .collect();
        let columns = self.converter.convert_rows(rows)?;
        self.intern(&columns, out)
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
    /// Each group's slot holds where its key is in the arena, so a probe reads the
    /// slot and the key's bytes only (no look-up through `offsets`).
    table: HashTable<Slot>,
    /// The string keys of at most 15 bytes (of a single string column), packed
    /// by [`pack_short`]; longer ones, and rows of several columns, are in `table`.
    short: PackedTable<[u64; 2]>,
    hashes: Vec<u64>,
    arena: Vec<u8>,
    offsets: Vec<usize>,
    null_group: Option<u32>,
}

impl BytesGrouper {
    fn new(kind: BytesKind) -> Self {
        BytesGrouper {
            kind,
            table: HashTable::new(),
            short: PackedTable::new(hash_words),
            hashes: Vec::new(),
            arena: Vec::new(),
            offsets: vec![0],
            null_group: None,
        }
    }

    fn key(&self, g: u32) -> &[u8] {
        &self.arena[self.offsets[g as usize]..self.offsets[g as usize + 1]]
    }

    fn intern_bytes(&mut self, bytes: &[u8]) -> u32 {
        self.intern_hashed(bytes, hash_bytes(bytes))
    }

    #[inline]
    fn intern_hashed(&mut self, bytes: &[u8], hash: u64) -> u32 {
        if matches!(self.kind, BytesKind::Utf8) {
            if let Some(p) = pack_short(bytes) {
                return self.intern_packed(p, hash_packed(p), bytes);
            }
        }
        let (arena, hashes) = (&self.arena, &self.hashes);
        let len = bytes.len();
        let entry = self.table.entry(
            hash,
            |s| s.len as usize == len && &arena[s.start..s.start + len] == bytes,
            |s| hashes[s.group as usize],
        );
        match entry {
            Entry::Occupied(e) => e.get().group,
            Entry::Vacant(e) => {
                let g = (self.offsets.len() - 1) as u32;
                e.insert(Slot {
                    start: self.arena.len(),
                    len: len as u32,
                    group: g,
                });
                self.push_key(bytes, hash);
                g
            }
        }
    }

    /// Stores a new group's key (its entry is in a table already).
    #[inline]
    fn push_key(&mut self, bytes: &[u8], hash: u64) {
        self.arena.extend_from_slice(bytes);
        self.offsets.push(self.arena.len());
        self.hashes.push(hash);
    }

    /// The group of a short string key, packed as [`pack_short`] does (`hash` is
    /// its [`hash_packed`]): one probe of the packed table, no call to hash or
    /// compare bytes.
    #[inline]
    fn intern_packed(&mut self, packed: u128, hash: u64, bytes: &[u8]) -> u32 {
        let next = (self.offsets.len() - 1) as u32;
        let (g, new) = self.short.find_or_insert(words(packed), hash, next);
        if new {
            self.push_key(bytes, hash);
        }
        g
    }

    /// The groups of string keys `values[offsets[i]..offsets[i + 1]]` (null where
    /// `is_null(i)`), appended to `out`. Row `i + AHEAD` is packed and hashed, and
    /// its entry prefetched, while row `i` probes: with many groups each probe
    /// misses the cache, and this way the misses of the rows overlap.
    fn intern_strings<O: arrow::array::OffsetSizeTrait>(
        &mut self,
        values: &[u8],
        offsets: &[O],
        is_null: impl Fn(usize) -> bool,
        out: &mut Vec<u32>,
    ) {
        const AHEAD: usize = 16;
        let n = offsets.len().saturating_sub(1);
        let range = |i: usize| (offsets[i].as_usize(), offsets[i + 1].as_usize());
        let prepare = |i: usize| -> (u128, u64) {
            if is_null(i) {
                return (NOT_SHORT, 0);
            }
            let (start, end) = range(i);
            match pack_in(values, start, end) {
                Some(p) => (p, hash_packed(p)),
                None => (NOT_SHORT, 0),
            }
        };
        let mut ring = [(NOT_SHORT, 0u64); AHEAD];
        for (i, slot) in ring.iter_mut().enumerate().take(n) {
            *slot = prepare(i);
            self.short.prefetch(slot.1);
        }
        for i in 0..n {
            let (packed, hash) = ring[i % AHEAD];
            if i + AHEAD < n {
                let next = prepare(i + AHEAD);
                self.short.prefetch(next.1);
                ring[i % AHEAD] = next;
            }
            let (start, end) = range(i);
            let g = if packed != NOT_SHORT {
                self.intern_packed(packed, hash, &values[start..end])
            } else if is_null(i) {
                self.null_group()
            } else {
                self.intern_bytes(&values[start..end])
            };
            out.push(g);
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

/// [`BytesGrouper::packed`] of a key that is not short (or the null key): its top
/// byte, 0xff, is no length, so it equals no packed key.
const NOT_SHORT: u128 = u128::MAX;

/// A string key of at most 15 bytes as one number: its bytes little-endian, its
/// length in the top byte (so `a` and `a\0` differ). `None` for longer keys.
#[inline]
fn pack_short(bytes: &[u8]) -> Option<u128> {
    if bytes.len() > 15 {
        return None;
    }
    let mut buf = [0u8; 16];
    buf[..bytes.len()].copy_from_slice(bytes);
    buf[15] = bytes.len() as u8;
    Some(u128::from_le_bytes(buf))
}

/// [`pack_short`] of `values[start..end]`, reading 16 bytes at once when the buffer
/// has them (the common case: every key but the last few of an array).
#[inline]
fn pack_in(values: &[u8], start: usize, end: usize) -> Option<u128> {
    let len = end - start;
    if len > 15 {
        return None;
    }
    match values.get(start..start + 16) {
        Some(w) => {
            let w = u128::from_le_bytes(w.try_into().expect("16 bytes"));
            let keep = (1u128 << (8 * len)) - 1;
            Some((w & keep) | ((len as u128) << 120))
        }
        None => pack_short(&values[start..end]),
    }
}

/// The hash of a string key as every grouper stores it: [`hash_packed`] when short,
/// [`hash_bytes`] otherwise (a key's hash must not depend on the path that stored it:
/// it picks the key's radix part).
#[inline]
fn hash_str(bytes: &[u8]) -> u64 {
    match pack_short(bytes) {
        Some(p) => hash_packed(p),
        None => hash_bytes(bytes),
    }
}

/// A packed short key as the table stores it.
#[inline(always)]
fn words(p: u128) -> [u64; 2] {
    [p as u64, (p >> 64) as u64]
}

/// [`hash_packed`] of a key stored as [`words`].
fn hash_words(w: [u64; 2]) -> u64 {
    hash_packed(u128::from(w[0]) | (u128::from(w[1]) << 64))
}

/// The hash of a pair of column codes in a [`PairGrouper`]'s table (one folded
/// multiply: the codes are dense, and the low bits index the table).
#[inline]
fn hash_codes(k: [u32; 2]) -> u64 {
    let m = u128::from((u64::from(k[0]) << 32 | u64::from(k[1])) ^ 0x243f_6a88_85a3_08d3)
        * u128::from(0x9E37_79B9_7F4A_7C15u64);
    (m as u64) ^ ((m >> 64) as u64)
}

/// The hash of a packed short key (two rounds of a folded multiply, so every
/// byte reaches every bit). String keys hash this way when short and with foldhash
/// otherwise, in every grouper, so stored partials' hashes agree.
#[inline]
fn hash_packed(p: u128) -> u64 {
    #[inline(always)]
    fn fold(a: u64, b: u64) -> u64 {
        let m = u128::from(a) * u128::from(b);
        (m as u64) ^ ((m >> 64) as u64)
    }
    let a = fold(
        p as u64 ^ 0x243f_6a88_85a3_08d3,
        (p >> 64) as u64 ^ 0x1319_8a2e_0370_7344,
    );
    fold(a ^ 0xa409_3822_299f_31d0, 0x082e_fa98_ec4e_6c89)
}

impl Grouper for BytesGrouper {
    fn intern(&mut self, keys: &[ArrayRef], out: &mut Vec<u32>) -> Result<()> {
        out.reserve(keys[0].len());
        match &self.kind {
            BytesKind::Utf8 => {
                let a = keys[0].as_string::<i32>();
                let has_nulls = a.null_count() > 0;
                let values = a.value_data();
                let offsets = a.value_offsets();
                self.intern_strings(values, offsets, |i| has_nulls && a.is_null(i), out);
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

    fn size_bytes(&self) -> usize {
        self.table.capacity() * (std::mem::size_of::<Slot>() + 1)
            + self.short.size_bytes()
            + self.hashes.capacity() * 8
            + self.arena.capacity()
            + self.offsets.capacity() * 8
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

    fn key_order(&mut self) -> Result<Option<Vec<u32>>> {
        if !matches!(self.kind, BytesKind::Rows(_)) {
            return Ok(None);
        }
        // Each key's telling bytes beside its group, so most comparisons stay in
        // the vector being sorted (as `crate::sort::sort_indices`).
        let n = self.ngroups() as u32;
        let telling = crate::sort::PrefixBytes::of((0..n).map(|g| self.key(g)));
        let mut order: Vec<([u64; 3], u32)> =
            (0..n).map(|g| (telling.prefix(self.key(g)), g)).collect();
        order.sort_unstable_by(|x, y| x.0.cmp(&y.0).then_with(|| self.key(x.1).cmp(self.key(y.1))));
        Ok(Some(order.into_iter().map(|(_, g)| g).collect()))
    }

    fn emit_in(&mut self, order: &[u32]) -> Result<Vec<ArrayRef>> {
        match &self.kind {
            BytesKind::Rows(converter) => {
                // The keys are copied in order into one buffer first, so that
                // decoding (a pass per column) reads it front to back: decoding
                // straight from the arena in sorted order jumped about it once per
                // column and took a quarter of q10's time. The copy is as large as
                // the keys: when the account refuses it, they are decoded from the
                // arena in place (slower, no more memory).
                let parser = converter.parser();
                let data: usize = order.iter().map(|&g| self.key(g).len()).sum();
                let copy = data + order.len() * std::mem::size_of::<usize>();
                if !crate::scheduler::try_reserve(copy as u64)? {
                    let rows: Vec<_> = order.iter().map(|&g| parser.parse(self.key(g))).collect();
                    return Ok(converter.convert_rows(rows)?);
                }
                let mut rows = converter.empty_rows(order.len(), data);
                for &g in order {
                    rows.push(parser.parse(self.key(g)));
                }
                Ok(converter.convert_rows(&rows)?)
            }
            BytesKind::Utf8 => {
                let idx = arrow::array::UInt32Array::from(order.to_vec());
                self.emit()?
                    .iter()
                    .map(|c| Ok(arrow::compute::take(c.as_ref(), &idx, None)?))
                    .collect()
            }
        }
    }

    fn reserve(&mut self, groups: usize) {
        match self.kind {
            BytesKind::Utf8 => self.short.reserve(groups),
            BytesKind::Rows(_) => {
                let hashes = &self.hashes;
                self.table.reserve(groups, |s| hashes[s.group as usize]);
            }
        }
        self.hashes.reserve(groups);
        self.offsets.reserve(groups);
    }

    /// The offsets as 32-bit numbers, and a validity flag per group when one is
    /// null (the arena and the hashes are given away).
    fn emit_stored_bytes(&mut self) -> Result<u64> {
        let n = self.ngroups() as u64;
        Ok(4 * (n + 1) + if self.null_group.is_some() { n } else { 0 })
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
        self.short.clear();
        self.table.clear();
        self.offsets = vec![0];
        self.null_group = None;
        Ok((hashes, Arc::new(keys)))
    }

    fn intern_stored(&mut self, hashes: &[u64], keys: &ArrayRef, out: &mut Vec<u32>) -> Result<()> {
        let a = keys.as_binary::<i32>();
        out.reserve(a.len());
        // At most this part's bytes are new keys: the arena grows once, not by
        // doubling copies.
        let first = a.value_offsets()[0] as usize;
        self.arena
            .reserve(a.value_offsets()[a.len()] as usize - first);
        let has_nulls = a.null_count() > 0;
        if matches!(self.kind, BytesKind::Utf8) {
            let (values, offsets) = (a.value_data(), a.value_offsets());
            self.intern_strings(values, offsets, |i| has_nulls && a.is_null(i), out);
            return Ok(());
        }
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

    fn rows_stored(&mut self, keys: &[ArrayRef]) -> Result<(Vec<u64>, ArrayRef)> {
        match &self.kind {
            BytesKind::Utf8 => {
                let a = keys[0].as_string::<i32>();
                let mut hashes: Vec<u64> = a
                    .iter()
                    .map(|v| v.map_or(0, |s| hash_str(s.as_bytes())))
                    .collect();
                hashes.truncate(a.len());
                let binary = arrow::array::BinaryArray::from(a.clone());
                Ok((hashes, Arc::new(binary)))
            }
            BytesKind::Rows(converter) => rows_stored(converter, keys),
        }
    }
}

/// [`Grouper::rows_stored`] for keys in Arrow's row format: each row's bytes and
/// their hash, as [`BytesGrouper`] and [`PairGrouper`] emit them.
fn rows_stored(converter: &RowConverter, keys: &[ArrayRef]) -> Result<(Vec<u64>, ArrayRef)> {
    let rows = converter.convert_columns(keys)?;
    let hashes = rows.iter().map(|r| hash_bytes(r.as_ref())).collect();
    Ok((hashes, Arc::new(rows.try_into_binary()?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;

    /// A xorshift generator: the next number below `m`, each call.
    fn xorshift(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut x = seed;
        move |m| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        }
    }

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

    /// A key's stored hash picks its radix part, so it must not depend on whether
    /// the key was stored by a table ([`Grouper::emit_stored`]) or row by row
    /// ([`Grouper::rows_stored`]): short and long strings, pairs, several columns.
    #[test]
    fn rows_stored_hashes_as_emit_stored() {
        let s: ArrayRef = Arc::new(StringArray::from(vec![
            Some("id001"),
            Some("a key longer than fifteen bytes"),
            None,
            Some(""),
        ]));
        let n: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(4)]));
        let t: ArrayRef = Arc::new(StringArray::from(vec![
            Some("b"),
            None,
            Some("a key longer than fifteen bytes"),
            Some("b"),
        ]));
        for keys in [
            vec![s.clone()],
            vec![s.clone(), n.clone()],
            vec![s.clone(), t],
            vec![n.clone(), s.clone(), n],
        ] {
            let types: Vec<DataType> = keys.iter().map(|k| k.data_type().clone()).collect();
            let mut g = new_grouper(&types).unwrap();
            let (row_hashes, row_keys) = g.rows_stored(&keys).unwrap();
            ids(g.as_mut(), &keys);
            let (hashes, stored) = g.emit_stored().unwrap();
            assert_eq!(row_hashes, hashes, "{types:?}");
            assert_eq!(row_keys.as_ref(), stored.as_ref(), "{types:?}");
        }
    }

    #[test]
    fn radix_sort_bits_sorts_by_the_bits_it_is_given_and_keeps_the_rest() {
        assert_eq!(
            (bits_for(0), bits_for(1), bits_for(2), bits_for(4097)),
            (0, 0, 1, 13)
        );
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        for (lo, hi) in [(0, 64), (7, 41), (21, 55), (3, 4), (10, 10)] {
            let mut words: Vec<u64> = (0..5000).map(|_| next(u64::MAX)).collect();
            let field = |w: u64| {
                let width = hi - lo;
                if width == 0 {
                    0
                } else {
                    (w >> lo) & (u64::MAX >> (64 - width))
                }
            };
            let mut expected = words.clone();
            expected.sort_by_key(|&w| field(w)); // stable, as the radix sort is
            radix_sort_bits(&mut words, lo, hi);
            assert_eq!(words, expected, "bits {lo}..{hi}");
        }
    }

    /// Both ways of ordering a pair grouper's groups by their ranks give the
    /// order a comparison sort gives.
    #[test]
    fn pair_orders_by_words_and_by_counting_agree_with_a_sort() {
        let mut next64 = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut next = |m: u64| next64(m) as u32;
        let (na, nb) = (300usize, 70usize);
        // Ranks: a permutation of each column's codes.
        let mut ra: Vec<u32> = (0..na as u32).collect();
        let mut rb: Vec<u32> = (0..nb as u32).collect();
        for i in (1..na).rev() {
            ra.swap(i, next(i as u64 + 1) as usize);
        }
        for i in (1..nb).rev() {
            rb.swap(i, next(i as u64 + 1) as usize);
        }
        let mut seen = std::collections::HashSet::new();
        let pairs: Vec<(u32, u32)> = (0..8000)
            .map(|_| (next(na as u64), next(nb as u64)))
            .filter(|p| seen.insert(*p))
            .collect();
        let mut expected: Vec<u32> = (0..pairs.len() as u32).collect();
        expected.sort_by_key(|&g| {
            let p = pairs[g as usize];
            (ra[p.0 as usize], rb[p.1 as usize])
        });
        assert_eq!(order_by_words(&pairs, &ra, &rb), expected);
        assert_eq!(order_by_counting(&pairs, &ra, &rb), expected);
        assert_eq!(order_by_ranks(&pairs, &ra, &rb), expected);
    }

    /// A finalize merges a two-key part with either stored grouper (rows below
    /// [`PAIRS_BY_COLUMN_ROWS`], [`PairGrouper`] above): both must read the
    /// stored keys alike, group them alike (nulls included) and emit the same
    /// keys in the same key order, and store them back the same.
    #[test]
    fn both_stored_pair_groupers_read_and_order_alike() {
        let s: ArrayRef = Arc::new(StringArray::from(vec![
            Some("b"),
            None,
            Some("a"),
            Some("b"),
            None,
            Some("a key longer than fifteen bytes"),
        ]));
        let n: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(2),
            Some(1),
            None,
            Some(2),
            Some(1),
            Some(-5),
        ]));
        let keys = vec![s, n];
        let types: Vec<DataType> = keys.iter().map(|k| k.data_type().clone()).collect();
        let mut chunk = new_grouper(&types).unwrap();
        ids(chunk.as_mut(), &keys);
        let (hashes, stored) = chunk.emit_stored().unwrap();
        let mut answers = Vec::new();
        for rows in [4, PAIRS_BY_COLUMN_ROWS] {
            let mut g = new_stored_grouper(&types, rows).unwrap();
            let mut out = Vec::new();
            g.intern_stored(&hashes, &stored, &mut out).unwrap();
            let order = g.key_order().unwrap().unwrap();
            let emitted = g.emit_in(&order).unwrap();
            let again = new_stored_grouper(&types, rows)
                .unwrap()
                .rows_stored(&emitted)
                .unwrap();
            answers.push((out.len(), g.ngroups(), emitted, again));
        }
        assert_eq!(answers[0].1, 4, "four distinct pairs (two with a null)");
        assert_eq!(answers[0].0, answers[1].0);
        assert_eq!(answers[0].1, answers[1].1);
        for (a, b) in answers[0].2.iter().zip(&answers[1].2) {
            assert_eq!(a.as_ref(), b.as_ref(), "the keys in key order");
        }
        assert_eq!(answers[0].3 .0, answers[1].3 .0, "stored hashes");
        assert_eq!(
            answers[0].3 .1.as_ref(),
            answers[1].3 .1.as_ref(),
            "stored keys"
        );
    }

    /// Groups as a naive map from the keys' values: packed short string keys
    /// (lengths 0 to 20 around the 15-byte cut, keys ending at the buffer's end,
    /// bytes that differ only in length or a zero byte), pairs of columns of every
    /// mix of types with nulls, and the stored form round trip of each.
    #[test]
    fn short_strings_and_pairs_group_as_a_naive_map() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let words: Vec<Option<String>> = (0..400)
            .map(|_| match next(23) {
                0 => None,
                n => Some(
                    (0..n - 1)
                        .map(|i| {
                            if next(9) == 0 {
                                '\0'
                            } else {
                                (b'a' + (i % 3) as u8) as char
                            }
                        })
                        .collect(),
                ),
            })
            .collect();
        let ints: Vec<Option<i64>> = (0..400)
            .map(|_| (next(10) > 0).then(|| next(7) as i64 - 3))
            .collect();
        let s: ArrayRef = Arc::new(StringArray::from(words.clone()));
        let n: ArrayRef = Arc::new(Int64Array::from(ints.clone()));
        // The naive ids: first appearance of each value (tuple).
        fn naive<K: PartialEq + Clone>(keys: &[K]) -> Vec<u32> {
            let mut seen: Vec<K> = Vec::new();
            keys.iter()
                .map(|k| match seen.iter().position(|s| s == k) {
                    Some(p) => p as u32,
                    None => {
                        seen.push(k.clone());
                        (seen.len() - 1) as u32
                    }
                })
                .collect()
        }
        let mut g = new_grouper(&[DataType::Utf8]).unwrap();
        // Two batches: the second sees the keys of the first again.
        let (first, second) = (s.slice(0, 150), s.slice(150, 250));
        let mut got = ids(g.as_mut(), &[first]);
        got.extend(ids(g.as_mut(), &[second]));
        assert_eq!(got, naive(&words));
        let k = g.emit().unwrap();
        let emitted: Vec<Option<&str>> = k[0].as_string::<i32>().iter().collect();
        let mut distinct: Vec<Option<&str>> = Vec::new();
        for w in &words {
            if !distinct.contains(&w.as_deref()) {
                distinct.push(w.as_deref());
            }
        }
        assert_eq!(emitted, distinct);
        // Stored and interned again, then fed raw keys: the same groups (the hash
        // of a short key is the same whichever way it came in).
        let mut g = new_grouper(&[DataType::Utf8]).unwrap();
        ids(g.as_mut(), std::slice::from_ref(&s));
        let (hashes, stored) = g.emit_stored().unwrap();
        let mut merged = new_grouper(&[DataType::Utf8]).unwrap();
        let mut again = Vec::new();
        merged.intern_stored(&hashes, &stored, &mut again).unwrap();
        assert_eq!(again, (0..distinct.len() as u32).collect::<Vec<_>>());
        assert_eq!(
            ids(merged.as_mut(), std::slice::from_ref(&s)),
            naive(&words)
        );
        assert_eq!(merged.ngroups(), distinct.len());

        let cases: Vec<(Vec<DataType>, Vec<ArrayRef>)> = vec![
            (
                vec![DataType::Utf8, DataType::Int64],
                vec![s.clone(), n.clone()],
            ),
            (
                vec![DataType::Int64, DataType::Utf8],
                vec![n.clone(), s.clone()],
            ),
            (
                vec![DataType::Utf8, DataType::Utf8],
                vec![s.clone(), s.slice(1, 399)],
            ),
            (
                vec![DataType::Int64, DataType::Int64],
                vec![n.clone(), n.slice(3, 397)],
            ),
        ];
        for (types, cols) in cases {
            let len = cols[1].len();
            let cols: Vec<ArrayRef> = cols.iter().map(|c| c.slice(0, len)).collect();
            let key = |i: usize| -> (String, String) {
                let show = |a: &ArrayRef| {
                    if a.is_null(i) {
                        "null".to_string()
                    } else if let Some(s) = a.as_string_opt::<i32>() {
                        format!("s{:?}", s.value(i))
                    } else {
                        format!("i{}", a.as_primitive::<Int64Type>().value(i))
                    }
                };
                (show(&cols[0]), show(&cols[1]))
            };
            let want = naive(&(0..len).map(key).collect::<Vec<_>>());
            let mut g = new_grouper(&types).unwrap();
            let mut got = ids(g.as_mut(), &[cols[0].slice(0, 100), cols[1].slice(0, 100)]);
            got.extend(ids(
                g.as_mut(),
                &[cols[0].slice(100, len - 100), cols[1].slice(100, len - 100)],
            ));
            assert_eq!(got, want, "{types:?}");
            let n_groups = g.ngroups();
            // Stored form: another grouper of the same types interns the same groups.
            let (hashes, stored) = g.emit_stored().unwrap();
            assert_eq!(hashes.len(), n_groups);
            let mut merged = new_grouper(&types).unwrap();
            let mut again = Vec::new();
            merged.intern_stored(&hashes, &stored, &mut again).unwrap();
            assert_eq!(again, (0..n_groups as u32).collect::<Vec<_>>());
            // The emitted keys are the distinct pairs in first-appearance order.
            let keys = merged.emit().unwrap();
            let mut firsts = Vec::new();
            for (i, &w) in want.iter().enumerate() {
                if w as usize == firsts.len() {
                    firsts.push(i);
                }
            }
            for (gid, &row) in firsts.iter().enumerate() {
                for c in 0..2 {
                    let a = &keys[c];
                    assert_eq!(a.is_null(gid), cols[c].is_null(row));
                    if !a.is_null(gid) {
                        assert_eq!(
                            arrow::util::display::array_value_to_string(a, gid).unwrap(),
                            arrow::util::display::array_value_to_string(&cols[c], row).unwrap()
                        );
                    }
                }
            }
        }
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

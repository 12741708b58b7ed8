//! The build side of a hash join: one side's rows with their keys indexed, so that
//! a probe row finds every build row whose key equals its own, in build order.
//!
//! The index's layout is chosen from the keys as they are:
//!
//! ```text
//!   one integer-like key (integers, dates, timestamps)?
//!     ├─ its values span at most 4 slots a row ──► direct: an array indexed by value − min
//!     └─ otherwise                              ──► int: hash tables on the value
//!   anything else (strings, floats, several keys) ──► rows: hash tables on Arrow's
//!                                                     row format (one byte string a row)
//! ```
//!
//! Every layout maps a key to an *entry*: the key's first build row, with a flag
//! set when more rows follow in `next` (a chain in build order), so that probing a
//! key held by one row never reads the chain. Null keys match each other, as in
//! pandas: the integer layouts keep them in a chain of their own, the row format
//! encodes them as a value.
//!
//! A large side is built on several threads without changing the result: its rows
//! are split into parts by hash (or by value range, for the direct layout), each
//! part indexed by one thread walking its rows backwards, so every chain lists its
//! rows in build order whichever thread ran when. Probing looks up a whole batch
//! of keys first ([`BuildTable::lookup`]): the loads do not depend on each other, so
//! the cache misses of a table larger than the caches overlap.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use arrow::row::{RowConverter, Rows, SortField};
use hashbrown::HashTable;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// No row: a lookup that found nothing, or the end of a chain.
pub(crate) const NONE: u32 = u32::MAX;

/// Set on an entry whose key has more rows after the first (follow `next`).
const MORE: u32 = 1 << 31;

/// Build sides of at least this many rows are indexed on several threads.
const PARALLEL_BUILD_ROWS: usize = 1 << 17;

/// The direct layout is taken when the key's values span at most this many slots
/// per row (plus [`DIRECT_SLACK`]): 4 bytes a slot, so at most 16 bytes a row, less
/// than a hash table's entries.
const DIRECT_SLOTS_PER_ROW: u128 = 4;
const DIRECT_SLACK: u128 = 1024;

/// Slots of the direct layout filled together when a large side is built: 256 KiB
/// of them, which the caches hold.
const DIRECT_RANGE: usize = 1 << 16;

/// One side's rows, their keys indexed.
pub struct BuildTable {
    batch: RecordBatch,
    index: Index,
    /// The next row with the same key, or [`NONE`].
    next: Vec<AtomicU32>,
    /// The entry of the null key (integer layouts), or [`NONE`].
    nulls: u32,
}

enum Index {
    /// Entries by `value - min`.
    Direct { min: i64, heads: Vec<u32> },
    /// (value, entry), in parts chosen by hash bits.
    Int { parts: Vec<HashTable<(i64, u32)>> },
    /// (hash, entry) over the key rows, in parts chosen by hash bits.
    Rows {
        converter: RowConverter,
        rows: Rows,
        parts: Vec<HashTable<(u64, u32)>>,
    },
}

/// Which layout a table took (tests assert each is exercised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// An array indexed by the integer key's value.
    Direct,
    /// Hash tables on the integer key's value.
    Int,
    /// Hash tables on the keys' row format.
    Rows,
}

fn hasher() -> foldhash::fast::FixedState {
    foldhash::fast::FixedState::with_seed(0x101)
}

/// The part of a table that hash `h` lives in, of `nparts` (a power of two): bits
/// that hashbrown uses neither for the slot (the low bits) nor for the tag (the top
/// seven).
fn part_of(h: u64, nparts: usize) -> usize {
    (h >> 32) as usize & (nparts - 1)
}

/// The key as 64-bit integers, for a single key of an integer-like type; `None`
/// for other types (and for `UInt64`, whose values may not fit).
fn int_keys(column: &ArrayRef) -> Result<Option<Int64Array>> {
    use arrow::compute::cast;
    use DataType::*;
    let t = column.data_type();
    let ints = match t {
        Int64 => column.clone(),
        Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32 | Date64 | Timestamp(..) => {
            cast(column, &Int64)?
        }
        Date32 => cast(&cast(column, &Int32)?, &Int64)?,
        _ => return Ok(None),
    };
    Ok(Some(ints.as_primitive::<Int64Type>().clone()))
}

/// Threads to build a side of `n` rows on: the session pool's, when called in one
/// of its workers (the sync scheduler runs on the caller's thread, and rayon's
/// global pool is not ours to start).
fn build_threads(n: usize) -> usize {
    if n >= PARALLEL_BUILD_ROWS && rayon::current_thread_index().is_some() {
        rayon::current_num_threads().max(1)
    } else {
        1
    }
}

/// Rows `0..n` split by `part(i)` into `nparts` lists, each ascending: computed
/// on `threads` threads, a chunk of rows each (one chunk on one thread), and
/// returned per part as the chunks' lists in row order.
fn scatter(
    n: usize,
    nparts: usize,
    threads: usize,
    part: impl Fn(usize) -> usize + Sync,
) -> Vec<Vec<Vec<u32>>> {
    let chunk = n.div_ceil(threads).max(1);
    let one = |c: usize| {
        let mut lists = vec![Vec::with_capacity(chunk / nparts + 16); nparts];
        for i in c * chunk..((c + 1) * chunk).min(n) {
            lists[part(i)].push(i as u32);
        }
        lists
    };
    let per_chunk: Vec<Vec<Vec<u32>>> = if threads > 1 {
        (0..n.div_ceil(chunk)).into_par_iter().map(one).collect()
    } else {
        vec![one(0)]
    };
    let mut out: Vec<Vec<Vec<u32>>> = (0..nparts).map(|_| Vec::new()).collect();
    for lists in per_chunk {
        for (p, list) in lists.into_iter().enumerate() {
            out[p].push(list);
        }
    }
    out
}

/// Every row of `lists` (chunks in row order, each ascending), last first.
fn backwards(lists: &[Vec<u32>]) -> impl Iterator<Item = u32> + '_ {
    lists.iter().rev().flat_map(|l| l.iter().rev().copied())
}

/// Adds row `i` (rows come last first) to the key whose entry is `entry`.
#[inline]
fn push_front(entry: u32, i: u32, next: &[AtomicU32]) -> u32 {
    if entry == NONE {
        i
    } else {
        next[i as usize].store(entry & !MORE, Relaxed);
        i | MORE
    }
}

/// Adds `rows` (last first) of integer keys `values` to `table`.
fn fill_int(
    table: &mut HashTable<(i64, u32)>,
    rows: impl Iterator<Item = u32>,
    values: &Int64Array,
    next: &[AtomicU32],
) {
    let hasher = hasher();
    let v = values.values();
    let nulls = values.null_count() > 0;
    for i in rows {
        if nulls && values.is_null(i as usize) {
            continue;
        }
        let key = v[i as usize];
        let h = hasher.hash_one(key);
        match table.find_mut(h, |e| e.0 == key) {
            Some(e) => e.1 = push_front(e.1, i, next),
            None => {
                table.insert_unique(h, (key, i), |e| hasher.hash_one(e.0));
            }
        }
    }
}

/// Adds `ids` (last first) of key rows `rows`, hashed as `hashes`, to `table`.
fn fill_rows(
    table: &mut HashTable<(u64, u32)>,
    ids: impl Iterator<Item = u32>,
    rows: &Rows,
    hashes: &[u64],
    next: &[AtomicU32],
) {
    for i in ids {
        let h = hashes[i as usize];
        let row = rows.row(i as usize);
        match table.find_mut(h, |e| e.0 == h && rows.row((e.1 & !MORE) as usize) == row) {
            Some(e) => e.1 = push_front(e.1, i, next),
            None => {
                table.insert_unique(h, (h, i), |e| e.0);
            }
        }
    }
}

impl BuildTable {
    /// Indexes `batch` on its `keys` columns (on several threads for a large side,
    /// when called in a worker of the session's pool).
    pub fn new(batch: &RecordBatch, keys: &[usize]) -> Result<BuildTable> {
        let n = batch.num_rows();
        if n > (MORE - 1) as usize {
            return Err(Error::plan(
                "merge",
                format!("one side of a join partition has {n} rows; use more partitions"),
            ));
        }
        let next: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(NONE)).collect();
        let threads = build_threads(n);
        let ints = match keys {
            [k] => int_keys(batch.column(*k))?,
            _ => None,
        };
        let (index, nulls) = match ints {
            Some(values) => {
                let nulls = if values.null_count() > 0 {
                    let mut entry = NONE;
                    for i in (0..n).rev().filter(|&i| values.is_null(i)) {
                        entry = push_front(entry, i as u32, &next);
                    }
                    entry
                } else {
                    NONE
                };
                let index = match (arrow::compute::min(&values), arrow::compute::max(&values)) {
                    (Some(min), Some(max))
                        if ((max as i128 - min as i128) as u128)
                            < DIRECT_SLOTS_PER_ROW * n as u128 + DIRECT_SLACK =>
                    {
                        Self::direct(
                            &values,
                            min,
                            (max as i128 - min as i128) as usize + 1,
                            &next,
                            threads,
                        )
                    }
                    _ => Self::int(&values, &next, threads),
                };
                (index, nulls)
            }
            None => (Self::rows(batch, keys, &next, threads)?, NONE),
        };
        Ok(BuildTable {
            batch: batch.clone(),
            index,
            next,
            nulls,
        })
    }

    fn direct(
        values: &Int64Array,
        min: i64,
        span: usize,
        next: &[AtomicU32],
        threads: usize,
    ) -> Index {
        let mut heads: Vec<u32> = vec![NONE; span];
        let v = values.values();
        let nulls = values.null_count() > 0;
        let slot = |i: usize| v[i].wrapping_sub(min) as u64 as usize;
        let n = v.len();
        if n < PARALLEL_BUILD_ROWS {
            for i in (0..n).rev() {
                if !(nulls && values.is_null(i)) {
                    let s = slot(i);
                    heads[s] = push_front(heads[s], i as u32, next);
                }
            }
            return Index::Direct { min, heads };
        }
        // A large side: rows first split by slot into ranges of DIRECT_RANGE slots,
        // then each range's slots filled from its rows (in cache, rather than a
        // miss a row), each range by one thread.
        let nparts = span.div_ceil(DIRECT_RANGE);
        let lists = scatter(n, nparts, threads, |i| {
            if nulls && values.is_null(i) {
                0
            } else {
                slot(i) / DIRECT_RANGE
            }
        });
        let fill = |(p, (heads, lists)): (usize, (&mut [u32], Vec<Vec<u32>>))| {
            let base = p * DIRECT_RANGE;
            for i in backwards(&lists) {
                let i = i as usize;
                if !(nulls && values.is_null(i)) {
                    let s = slot(i) - base;
                    heads[s] = push_front(heads[s], i as u32, next);
                }
            }
        };
        let parts: Vec<_> = heads
            .chunks_mut(DIRECT_RANGE)
            .zip(lists)
            .enumerate()
            .collect();
        if threads > 1 {
            parts.into_par_iter().for_each(fill);
        } else {
            parts.into_iter().for_each(fill);
        }
        Index::Direct { min, heads }
    }

    fn int(values: &Int64Array, next: &[AtomicU32], threads: usize) -> Index {
        let hasher = hasher();
        let v = values.values();
        let n = v.len();
        let nparts = if threads > 1 {
            (threads * 4).next_power_of_two()
        } else {
            1
        };
        let parts = if nparts == 1 {
            let mut table = HashTable::with_capacity(n);
            fill_int(&mut table, (0..n as u32).rev(), values, next);
            vec![table]
        } else {
            let lists = scatter(n, nparts, threads, |i| {
                part_of(hasher.hash_one(v[i]), nparts)
            });
            lists
                .into_par_iter()
                .map(|lists| {
                    let rows: usize = lists.iter().map(Vec::len).sum();
                    let mut table = HashTable::with_capacity(rows);
                    fill_int(&mut table, backwards(&lists), values, next);
                    table
                })
                .collect()
        };
        Index::Int { parts }
    }

    fn rows(
        batch: &RecordBatch,
        keys: &[usize],
        next: &[AtomicU32],
        threads: usize,
    ) -> Result<Index> {
        let fields = keys
            .iter()
            .map(|&k| SortField::new(batch.column(k).data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)?;
        let columns: Vec<ArrayRef> = keys.iter().map(|&k| batch.column(k).clone()).collect();
        let rows = converter.convert_columns(&columns)?;
        let hasher = hasher();
        let n = rows.num_rows();
        let hash = |i: usize| hasher.hash_one(rows.row(i).as_ref());
        let hashes: Vec<u64> = if threads > 1 {
            (0..n).into_par_iter().map(hash).collect()
        } else {
            (0..n).map(hash).collect()
        };
        let nparts = if threads > 1 {
            (threads * 4).next_power_of_two()
        } else {
            1
        };
        let parts = if nparts == 1 {
            let mut table = HashTable::with_capacity(n);
            fill_rows(&mut table, (0..n as u32).rev(), &rows, &hashes, next);
            vec![table]
        } else {
            let lists = scatter(n, nparts, threads, |i| part_of(hashes[i], nparts));
            lists
                .into_par_iter()
                .map(|lists| {
                    let count: usize = lists.iter().map(Vec::len).sum();
                    let mut table = HashTable::with_capacity(count);
                    fill_rows(&mut table, backwards(&lists), &rows, &hashes, next);
                    table
                })
                .collect()
        };
        Ok(Index::Rows {
            converter,
            rows,
            parts,
        })
    }

    /// The built rows.
    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// Rows of the built side.
    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// The layout the keys took.
    pub fn layout(&self) -> Layout {
        match self.index {
            Index::Direct { .. } => Layout::Direct,
            Index::Int { .. } => Layout::Int,
            Index::Rows { .. } => Layout::Rows,
        }
    }

    /// Bytes a table over `batch` holds besides the batch: the index and the
    /// chains (at most about 40 bytes a row in every layout), and the key rows.
    pub fn estimated_bytes(batch: &RecordBatch, keys: &[usize]) -> u64 {
        let key_bytes: usize = keys
            .iter()
            .map(|&k| outcore_storage::measure::rows_bytes(batch.column(k).as_ref()))
            .sum();
        (key_bytes + batch.num_rows() * 40) as u64
    }

    /// The entry of each row of `probe` (its `keys` columns, of the build keys'
    /// types): [`NONE`] where no build row has its key. Walk one with
    /// [`chain`](Self::chain).
    pub fn lookup(&self, probe: &RecordBatch, keys: &[usize]) -> Result<Vec<u32>> {
        let mut entries = match &self.index {
            Index::Direct { min, heads } => {
                let values = self.probe_ints(probe, keys)?;
                values
                    .values()
                    .iter()
                    .map(|&v| {
                        let s = v.wrapping_sub(*min) as u64 as usize;
                        heads.get(s).copied().unwrap_or(NONE)
                    })
                    .collect::<Vec<u32>>()
            }
            Index::Int { parts } => {
                let hasher = hasher();
                let values = self.probe_ints(probe, keys)?;
                let nparts = parts.len();
                values
                    .values()
                    .iter()
                    .map(|&v| {
                        let h = hasher.hash_one(v);
                        parts[part_of(h, nparts)]
                            .find(h, |e| e.0 == v)
                            .map_or(NONE, |e| e.1)
                    })
                    .collect()
            }
            Index::Rows {
                converter,
                rows,
                parts,
            } => {
                let hasher = hasher();
                let columns: Vec<ArrayRef> =
                    keys.iter().map(|&k| probe.column(k).clone()).collect();
                let probe_rows = converter.convert_columns(&columns)?;
                let nparts = parts.len();
                (0..probe_rows.num_rows())
                    .map(|i| {
                        let row = probe_rows.row(i);
                        let h = hasher.hash_one(row.as_ref());
                        parts[part_of(h, nparts)]
                            .find(h, |e| e.0 == h && rows.row((e.1 & !MORE) as usize) == row)
                            .map_or(NONE, |e| e.1)
                    })
                    .collect()
            }
        };
        if !matches!(self.index, Index::Rows { .. }) {
            let column = probe.column(keys[0]);
            if column.null_count() > 0 {
                for (i, e) in entries.iter_mut().enumerate() {
                    if column.is_null(i) {
                        *e = self.nulls;
                    }
                }
            }
        }
        Ok(entries)
    }

    fn probe_ints(&self, probe: &RecordBatch, keys: &[usize]) -> Result<Int64Array> {
        let [k] = keys else {
            return Err(Error::Internal(
                "an integer join table probed on several keys".into(),
            ));
        };
        int_keys(probe.column(*k))?.ok_or_else(|| {
            Error::Internal(format!(
                "an integer join table probed with {} keys",
                probe.column(*k).data_type()
            ))
        })
    }

    /// The build rows of `entry` (from [`lookup`](Self::lookup), not [`NONE`]), in
    /// build order.
    #[inline]
    pub fn chain(&self, entry: u32) -> Chain<'_> {
        Chain {
            next: &self.next,
            at: entry & !MORE,
            more: entry & MORE != 0,
        }
    }
}

/// The build rows of one key, in build order.
pub struct Chain<'a> {
    next: &'a [AtomicU32],
    at: u32,
    more: bool,
}

impl Iterator for Chain<'_> {
    type Item = u32;
    #[inline]
    fn next(&mut self) -> Option<u32> {
        if self.at == NONE {
            return None;
        }
        let row = self.at;
        self.at = if self.more {
            self.next[row as usize].load(Relaxed)
        } else {
            NONE
        };
        Some(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;

    fn batch(column: ArrayRef) -> RecordBatch {
        let schema = Schema::new(vec![Field::new("k", column.data_type().clone(), true)]);
        RecordBatch::try_new(Arc::new(schema), vec![column]).unwrap()
    }

    /// Each value as text (`None` for null), to compare keys of any type.
    fn texts(a: &ArrayRef) -> Vec<Option<String>> {
        (0..a.len())
            .map(|i| {
                a.is_valid(i)
                    .then(|| arrow::util::display::array_value_to_string(a, i).unwrap())
            })
            .collect()
    }

    /// Every probe row's matches against a map from key to build rows (nulls match
    /// nulls), for one table built serially and one built on a pool of threads.
    fn check(build: ArrayRef, probe: ArrayRef, layout: Layout) {
        let (b, p) = (batch(build.clone()), batch(probe.clone()));
        let mut by_key: std::collections::HashMap<Option<String>, Vec<u32>> = Default::default();
        for (j, k) in texts(&build).into_iter().enumerate() {
            by_key.entry(k).or_default().push(j as u32);
        }
        let expected: Vec<Vec<u32>> = texts(&probe)
            .iter()
            .map(|k| by_key.get(k).cloned().unwrap_or_default())
            .collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let serial = BuildTable::new(&b, &[0]).unwrap();
        let parallel = pool.install(|| BuildTable::new(&b, &[0]).unwrap());
        for table in [serial, parallel] {
            assert_eq!(table.layout(), layout);
            let entries = table.lookup(&p, &[0]).unwrap();
            let got: Vec<Vec<u32>> = entries
                .iter()
                .map(|&e| {
                    if e == NONE {
                        vec![]
                    } else {
                        table.chain(e).collect()
                    }
                })
                .collect();
            assert_eq!(got, expected, "{layout:?}");
        }
    }

    fn ints(rng: &mut rand_pcg::Pcg64Mcg, n: usize, span: i64, nulls: f64) -> ArrayRef {
        Arc::new(Int64Array::from_iter((0..n).map(|_| {
            (!rng.random_bool(nulls)).then(|| rng.random_range(-span..span))
        })))
    }

    #[test]
    fn every_layout_finds_every_match_in_build_order_serial_or_parallel() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
        // Past PARALLEL_BUILD_ROWS, so the pool builds in parts.
        let n = PARALLEL_BUILD_ROWS + 1000;
        // Few values, many repeats and nulls: direct.
        check(
            ints(&mut rng, n, 50, 0.05),
            ints(&mut rng, 3000, 60, 0.05),
            Layout::Direct,
        );
        // Values over several ranges of slots filled together, some repeated.
        check(
            ints(&mut rng, n, 200_000, 0.02),
            ints(&mut rng, 3000, 210_000, 0.02),
            Layout::Direct,
        );
        // Wide values: int hash.
        check(
            ints(&mut rng, n, 1 << 40, 0.01),
            ints(&mut rng, 3000, 1 << 40, 0.01),
            Layout::Int,
        );
        let build = ints(&mut rng, n, 1 << 40, 0.0);
        let probe =
            Arc::new(Int64Array::from_iter_values((0..3000).map(|i| {
                build.as_primitive::<Int64Type>().value(i * 7) + (i % 2) as i64
            })));
        check(build, probe, Layout::Int);
        // Another integer width, a small side: direct, built on one thread.
        let small: ArrayRef = Arc::new(Int32Array::from(vec![
            Some(3),
            None,
            Some(3),
            Some(-9),
            None,
        ]));
        let probe: ArrayRef = Arc::new(Int32Array::from(vec![None, Some(3), Some(4), Some(-9)]));
        check(small, probe, Layout::Direct);
        // Strings: rows.
        let words = |rng: &mut rand_pcg::Pcg64Mcg, n: usize| -> ArrayRef {
            Arc::new(StringArray::from_iter((0..n).map(|_| {
                (!rng.random_bool(0.05)).then(|| format!("w{}", rng.random_range(0..5000)))
            })))
        };
        check(words(&mut rng, n), words(&mut rng, 3000), Layout::Rows);
    }
}

//! Grace hash join: one partition pair of a shuffle join, joined whether or not
//! its right (build) side fits what the memory account grants.
//!
//! ```text
//!   build side granted (try_reserve)? ── yes ──► hash table; the probe side streams through
//!        │ no
//!        ▼
//!   level < 4: both sides hash-partitioned (a seed per level) into 16 buckets
//!              written to a spill folder (Arrow IPC + LZ4, `storage::spill`);
//!              each bucket pair joined the same way, one level down
//!   level = 4: a hot key: build rows taken in chunks that fit, each chunk probed
//!              by the whole probe side
//! ```
//!
//! Every key's rows of both sides land in the same bucket, so left, right and
//! outer joins keep their meaning bucket by bucket, and unmatched rows come out
//! once: a right row unmatched in its chunk after that chunk; a left row
//! unmatched in every chunk after the last. Null keys hash alike on both sides and
//! match each other, as everywhere in `merge`. Output comes in batches of at most
//! [`JOIN_BATCH_ROWS`](super::JOIN_BATCH_ROWS) rows. The bucket folder is removed
//! when the join ends, on error too.

use std::cell::{Cell, OnceCell};
use std::hash::BuildHasher;
use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::row::{RowConverter, SortField};
use outcore_storage::shuffle::ShuffleService;
use outcore_storage::spill::SpillCache;

use super::{key_rows, BuildTable, JoinSpec, ProbeSide};
use crate::error::{Error, Result};
use crate::graph::Value;
use crate::scheduler::{self, RunContext};

/// Buckets a side splits into at each level.
const FANOUT: usize = 16;

/// Levels of partitioning before a bucket's build rows are taken in chunks: a
/// bucket still too big after four levels (1/65536 of the keys) holds a hot key.
const MAX_LEVELS: u32 = 4;

/// Rows a bucket gathers in memory before they go to disk as one spill file, when
/// the account grants buffers for every bucket; else [`SMALL_BUCKET_FLUSH_BYTES`].
const BUCKET_FLUSH_BYTES: usize = 256 << 10;
const SMALL_BUCKET_FLUSH_BYTES: usize = 16 << 10;

/// One side's rows, readable more than once, batch by batch.
pub(super) enum Side<'a> {
    /// A shuffle partition, read a piece at a time on each pass (never held whole
    /// unless the shuffle held it in memory).
    Shuffled(&'a RunContext, &'a ShuffleService, usize),
    /// Batches in a grace join's bucket folder, by key, in order.
    Spilled(&'a SpillCache<Value>, Vec<u64>),
    /// Batches in memory (a task's inputs).
    Batches(&'a [RecordBatch]),
}

impl Side<'_> {
    /// Hands each batch to `f`, in order, until it answers false.
    fn each(&self, f: &mut dyn FnMut(RecordBatch) -> Result<bool>) -> Result<()> {
        match self {
            Side::Shuffled(ctx, store, partition) => {
                for batch in ctx.shuffle_batches(store, *partition, false)? {
                    if !f(batch?)? {
                        return Ok(());
                    }
                }
            }
            Side::Batches(batches) => {
                for batch in batches.iter() {
                    if !f(batch.clone())? {
                        return Ok(());
                    }
                }
            }
            Side::Spilled(store, keys) => {
                for &key in keys {
                    let value = store
                        .get(key)
                        .map_err(|source| spill_error(store, source))?
                        .ok_or_else(|| {
                            Error::Internal(format!("grace join bucket file {key} is missing"))
                        })?;
                    let batch = value.as_batch()?.clone();
                    drop(value);
                    if !f(batch)? {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        match self {
            Side::Shuffled(ctx, store, partition) => {
                ctx.shuffle_partition_is_empty(store, *partition)
            }
            Side::Spilled(_, keys) => keys.is_empty(),
            Side::Batches(batches) => batches.is_empty(),
        }
    }
}

fn spill_error(store: &SpillCache<Value>, source: outcore_storage::Error) -> Error {
    Error::Spill {
        dir: store.dir().to_path_buf(),
        source,
    }
}

/// Bytes the running task reserved for what this join holds; given back on drop.
struct Held(u64);

impl Held {
    fn try_take(&mut self, bytes: u64) -> Result<bool> {
        let granted = scheduler::try_reserve(bytes)?;
        if granted {
            self.0 += bytes;
        }
        Ok(granted)
    }

    fn take(&mut self, operator: &str, bytes: u64) -> Result<()> {
        scheduler::reserve(operator, bytes)?;
        self.0 += bytes;
        Ok(())
    }

    fn give_back(&mut self) {
        scheduler::release(self.0);
        self.0 = 0;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.give_back();
    }
}

/// Joins `build` (right rows) with `probe` (left rows) as `spec` says, handing
/// the answer to `emit` in batches.
pub(super) fn join(
    spec: &JoinSpec,
    ctx: &RunContext,
    build: &Side,
    probe: &Side,
    emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let grace = Grace::new(spec, ctx);
    grace.join(0, build, probe, emit)
    // The bucket folder goes with `grace`.
}

/// Joins `build` (right rows) with `probe` (left rows) probing build chunks that
/// fit one at a time: a broadcast side whose table the account refuses.
pub(super) fn chunked(
    spec: &JoinSpec,
    ctx: &RunContext,
    build: &Side,
    probe: &Side,
    emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let grace = Grace::new(spec, ctx);
    grace.chunked(build, probe, emit)
}

impl<'a> Grace<'a> {
    fn new(spec: &'a JoinSpec, ctx: &'a RunContext) -> Self {
        Grace {
            spec,
            ctx,
            store: OnceCell::new(),
            next_key: Cell::new(0),
        }
    }
}

struct Grace<'a> {
    spec: &'a JoinSpec,
    ctx: &'a RunContext,
    /// The bucket folder, made at the first spill; budget 0, so every bucket file
    /// goes straight to disk and is read back one at a time.
    store: OnceCell<SpillCache<Value>>,
    next_key: Cell<u64>,
}

impl Grace<'_> {
    fn store(&self) -> Result<&SpillCache<Value>> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let dir = self.ctx.spill_dir();
        let store = SpillCache::new(dir, 0).map_err(|source| Error::Spill {
            dir: dir.to_path_buf(),
            source,
        })?;
        if let Some(bytes) = self.spec.limits.fail_spill_after {
            store.fail_writes_after(bytes);
        }
        Ok(self.store.get_or_init(|| store))
    }

    /// Bytes to hold `batch` as build rows: the batch, its copy in the
    /// concatenated side, and the hash table over it.
    fn cost(&self, batch: &RecordBatch) -> u64 {
        2 * outcore_storage::measure::batch_bytes(batch) as u64
            + BuildTable::estimated_bytes(batch, &self.spec.right_keys)
    }

    fn cap(&self) -> u64 {
        self.spec.limits.max_build_bytes.unwrap_or(u64::MAX)
    }

    fn join(
        &self,
        level: u32,
        build: &Side,
        probe: &Side,
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let spec = self.spec;
        let (keep_probe, keep_build) = (spec.keeps_left(), spec.keeps_right());
        if (build.is_empty() && !keep_probe) || (probe.is_empty() && !keep_build) {
            return Ok(());
        }
        let mut held = Held(0);
        if let Some(all) = self.hold(build, &mut held)? {
            let table = BuildTable::new(&all, &spec.right_keys)?;
            drop(all);
            let mut matched = keep_build.then(|| vec![false; table.num_rows()]);
            probe.each(&mut |batch| {
                spec.probe_batch(
                    &table,
                    &batch,
                    ProbeSide::Left,
                    keep_probe,
                    matched.as_deref_mut(),
                    None,
                    emit,
                )?;
                Ok(true)
            })?;
            if let Some(m) = matched {
                spec.emit_unmatched_build(&table, &m, emit)?;
            }
            return Ok(());
        }
        if level >= MAX_LEVELS {
            return self.chunked(build, probe, emit);
        }
        let builds = self.partition(build, &spec.right_keys, level)?;
        let probes = self.partition(probe, &spec.left_keys, level)?;
        let spilled = builds
            .iter()
            .zip(&probes)
            .filter(|(b, p)| !b.is_empty() || !p.is_empty())
            .count();
        self.ctx.record_join_spill(spilled as u64, 0);
        let store = self.store()?;
        for (b, p) in builds.into_iter().zip(probes) {
            let (b, p) = (Side::Spilled(store, b), Side::Spilled(store, p));
            let joined = self.join(level + 1, &b, &p, emit);
            for side in [b, p] {
                if let Side::Spilled(_, keys) = side {
                    keys.iter().for_each(|&k| store.remove(k));
                }
            }
            joined?;
        }
        Ok(())
    }

    /// The whole build side in one batch, if the account grants it (and it is
    /// under the test cap); the grant stays in `held`.
    fn hold(&self, build: &Side, held: &mut Held) -> Result<Option<RecordBatch>> {
        let cap = self.cap();
        let (mut batches, mut total, mut fits) = (Vec::new(), 0u64, true);
        build.each(&mut |batch| {
            let need = self.cost(&batch);
            total += need;
            if total > cap || !held.try_take(need)? {
                fits = false;
                return Ok(false);
            }
            batches.push(batch);
            Ok(true)
        })?;
        if !fits {
            held.give_back();
            return Ok(None);
        }
        Ok(Some(concat_batches(&self.spec.right_schema, &batches)?))
    }

    /// Splits `side` into [`FANOUT`] buckets by the hash of its keys (seeded by
    /// `level`, so a bucket splits again one level down), written to the bucket
    /// folder; returns each bucket's keys there, in order.
    fn partition(&self, side: &Side, keys: &[usize], level: u32) -> Result<Vec<Vec<u64>>> {
        let store = self.store()?;
        let seed = 0x6a09_e667_f3bc_c908 ^ u64::from(level + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let hasher = foldhash::fast::FixedState::with_seed(seed);
        let mut held = Held(0);
        let flush_at = if held.try_take((FANOUT * BUCKET_FLUSH_BYTES) as u64)? {
            BUCKET_FLUSH_BYTES
        } else {
            SMALL_BUCKET_FLUSH_BYTES
        };
        let mut pending: Vec<(Vec<RecordBatch>, usize)> =
            (0..FANOUT).map(|_| (Vec::new(), 0)).collect();
        let mut out: Vec<Vec<u64>> = vec![Vec::new(); FANOUT];
        let mut converter: Option<RowConverter> = None;
        side.each(&mut |batch| {
            if converter.is_none() {
                let fields = keys
                    .iter()
                    .map(|&k| SortField::new(batch.column(k).data_type().clone()))
                    .collect();
                converter = Some(RowConverter::new(fields)?);
            }
            let rows = key_rows(converter.as_ref().expect("made above"), &batch, keys)?;
            let mut index: Vec<Vec<u32>> = vec![Vec::new(); FANOUT];
            for i in 0..batch.num_rows() {
                let h = hasher.hash_one(rows.row(i).as_ref());
                index[(h >> 60) as usize].push(i as u32);
            }
            for (bucket, rows) in index.into_iter().enumerate() {
                if rows.is_empty() {
                    continue;
                }
                let piece = take_record_batch(&batch, &UInt32Array::from(rows))?;
                let p = &mut pending[bucket];
                p.1 += outcore_storage::measure::batch_bytes(&piece);
                p.0.push(piece);
                if p.1 >= flush_at {
                    self.flush(store, p, &mut out[bucket])?;
                }
            }
            Ok(true)
        })?;
        for (p, keys) in pending.iter_mut().zip(&mut out) {
            self.flush(store, p, keys)?;
        }
        Ok(out)
    }

    /// Writes a bucket's gathered rows as one file.
    fn flush(
        &self,
        store: &SpillCache<Value>,
        pending: &mut (Vec<RecordBatch>, usize),
        keys: &mut Vec<u64>,
    ) -> Result<()> {
        let Some(first) = pending.0.first() else {
            return Ok(());
        };
        let batch = concat_batches(&first.schema(), &pending.0)?;
        *pending = (Vec::new(), 0);
        let key = self.next_key.get();
        self.next_key.set(key + 1);
        store
            .put(key, Arc::new(Value::Batch(batch)))
            .map_err(|source| spill_error(store, source))?;
        keys.push(key);
        Ok(())
    }

    /// A hot key: the build rows in chunks that fit, each probed by the whole
    /// probe side; unmatched probe rows after the last chunk.
    fn chunked(
        &self,
        build: &Side,
        probe: &Side,
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let spec = self.spec;
        let cap = self.cap();
        let mut probe_matched: Vec<bool> = Vec::new();
        let (mut chunk, mut chunk_bytes) = (Vec::new(), 0u64);
        let mut held = Held(0);
        build.each(&mut |batch| {
            // A batch over the cap goes in slices under it.
            let need = self.cost(&batch);
            let slices = need
                .div_ceil(cap.max(1))
                .clamp(1, batch.num_rows().max(1) as u64) as usize;
            let per = batch.num_rows().div_ceil(slices).max(1);
            let mut start = 0;
            while start < batch.num_rows() {
                let piece = batch.slice(start, per.min(batch.num_rows() - start));
                start += piece.num_rows();
                let need = self.cost(&piece);
                let fits = chunk_bytes + need <= cap && held.try_take(need)?;
                if !fits {
                    if !chunk.is_empty() {
                        self.probe_chunk(&chunk, probe, &mut probe_matched, emit)?;
                        chunk.clear();
                        chunk_bytes = 0;
                        held.give_back();
                    }
                    // A chunk holds at least one slice, whatever it costs.
                    if !held.try_take(need)? {
                        held.take("join build chunk", need)?;
                    }
                }
                chunk_bytes += need;
                chunk.push(piece);
            }
            Ok(true)
        })?;
        if !chunk.is_empty() {
            self.probe_chunk(&chunk, probe, &mut probe_matched, emit)?;
        }
        drop(held);
        if spec.keeps_left() {
            let no_right = RecordBatch::new_empty(spec.right_schema.clone());
            let mut offset = 0;
            probe.each(&mut |batch| {
                let n = batch.num_rows();
                if probe_matched.len() < offset + n {
                    probe_matched.resize(offset + n, false);
                }
                spec.emit_unmatched(
                    &batch,
                    &probe_matched[offset..offset + n],
                    &no_right,
                    ProbeSide::Left,
                    emit,
                )?;
                offset += n;
                Ok(true)
            })?;
        }
        Ok(())
    }

    /// Probes one chunk of build rows with the whole probe side.
    fn probe_chunk(
        &self,
        chunk: &[RecordBatch],
        probe: &Side,
        probe_matched: &mut Vec<bool>,
        emit: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let spec = self.spec;
        let keep_probe = spec.keeps_left();
        let all = concat_batches(&spec.right_schema, chunk)?;
        let table = BuildTable::new(&all, &spec.right_keys)?;
        drop(all);
        let mut build_matched = spec.keeps_right().then(|| vec![false; table.num_rows()]);
        let mut offset = 0;
        probe.each(&mut |batch| {
            let n = batch.num_rows();
            if probe_matched.len() < offset + n {
                probe_matched.resize(offset + n, false);
            }
            let marks = if keep_probe {
                Some(&mut probe_matched[offset..offset + n])
            } else {
                None
            };
            spec.probe_batch(
                &table,
                &batch,
                ProbeSide::Left,
                false,
                build_matched.as_deref_mut(),
                marks,
                emit,
            )?;
            offset += n;
            Ok(true)
        })?;
        if let Some(m) = build_matched {
            spec.emit_unmatched_build(&table, &m, emit)?;
        }
        self.ctx.record_join_spill(0, 1);
        Ok(())
    }
}

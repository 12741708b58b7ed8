//! What one computation shares besides its graph: the counters its tasks add to, and
//! the shuffle service its shuffles write through.
//!
//! A plan is lowered with a fresh [`RunContext`]; operators that read files or
//! shuffle keep an `Arc` of it. The shuffle service (a folder of files) is made on
//! first use in the spill folder and lives as long as the context, so its disk space
//! comes back when the computation's graph is dropped. Its buffers are a held
//! cache of the memory account (counted as they fill, flushed to disk when other
//! reservations need the room).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use outcore_storage::codec::{decode_batches, encode_batches};
use outcore_storage::shuffle::{ShuffleOptions, ShuffleService};

use super::memory::{HeldCache, MemoryPolicy, MemoryPool};
use crate::error::{Error, Result};

/// Counters and the shuffle service of one computation.
pub struct RunContext {
    bytes_read: AtomicU64,
    row_groups_read: AtomicU64,
    row_groups_skipped: AtomicU64,
    spill_dir: PathBuf,
    shuffle_budget: u64,
    account: Arc<MemoryPool>,
    shuffle_partitions: AtomicUsize,
    /// The shuffle service (its buffers are a held cache of the account).
    shuffle: Mutex<Option<Arc<ShuffleService>>>,
    /// Shuffle pieces held as batches (see [`Self::shuffle_append`]); made with
    /// the shuffle store.
    held: Mutex<Option<Arc<HeldPieces>>>,
    /// The most parts a radix-partitioned aggregation chose (0: none ran).
    radix_parts: AtomicUsize,
    /// Grace hash joins: buckets spilled, build chunks probed.
    join_buckets_spilled: AtomicU64,
    join_build_chunks: AtomicU64,
    /// Sorted runs spilled by external sorts.
    sort_runs: AtomicU64,
    /// Bytes sorted-run writes may still write before they fail (fault
    /// injection); `u64::MAX`: no limit.
    run_write_allowance: AtomicU64,
    /// Radix finalize tasks that merged their part in sub-parts.
    radix_splits: AtomicU64,
    /// Running tables of radix aggregations (folded across chunks), and how often
    /// one was taken out early because it was full or the account refused it room.
    fold_tables: AtomicU64,
    fold_flushes: AtomicU64,
}

impl std::fmt::Debug for RunContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("spill_dir", &self.spill_dir)
            .field("shuffle_partitions", &self.shuffle_partitions)
            .finish_non_exhaustive()
    }
}

/// What a computation's shuffles did, for `--stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShuffleTotals {
    /// Bytes shuffled: appended to the shuffle store, or held in memory as
    /// batches (Arrow's size).
    pub bytes_shuffled: u64,
    /// Bytes the store wrote to its files.
    pub bytes_flushed: u64,
    /// The most the store's files held on disk at once.
    pub bytes_on_disk: u64,
    /// Of `bytes_shuffled`, bytes held in memory as batches until read (never
    /// encoded into the store).
    pub bytes_held: u64,
}

/// The pieces of one shuffle partition held in memory, and who wrote to the store.
#[derive(Default)]
struct HeldPartition {
    /// Held batches by writer, in append order.
    by_writer: BTreeMap<u64, Vec<RecordBatch>>,
    /// Writers whose pieces for this partition went to the store.
    stored: BTreeSet<u64>,
    bytes: u64,
}

/// Shuffle pieces held as Arrow batches in front of the shuffle store: a held
/// cache of the account, so when other reservations need the room the largest
/// partitions are encoded into the store ([`HeldCache::set_budget`]).
struct HeldPieces {
    store: Arc<ShuffleService>,
    partitions: Mutex<HashMap<usize, HeldPartition>>,
    /// Bytes held now, ever, and paged out to the store.
    bytes: AtomicU64,
    total: AtomicU64,
    paged: AtomicU64,
}

impl HeldPieces {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, HeldPartition>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Encodes `batches` of `writer` into the store's partition `partition`, in
    /// pieces of at most [`MAX_PIECE_BYTES`].
    fn store(&self, partition: usize, writer: u64, batches: &[RecordBatch]) -> Result<()> {
        let mut bytes = Vec::new();
        for piece in batches {
            let rows = piece.num_rows();
            let size = outcore_storage::measure::batch_bytes(piece).max(1);
            let step = (rows * MAX_PIECE_BYTES / size).max(1);
            for start in (0..rows).step_by(step) {
                let part = piece.slice(start, step.min(rows - start));
                bytes.clear();
                encode_batches(&part.schema(), std::slice::from_ref(&part), &mut bytes)?;
                self.store.append(partition, writer, &bytes)?;
            }
        }
        Ok(())
    }
}

impl HeldCache for HeldPieces {
    fn held_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Pages out whole partitions, largest first, until the held bytes fit.
    fn set_budget(&self, budget: u64) -> Result<()> {
        while self.bytes.load(Ordering::Relaxed) > budget {
            let taken = {
                let mut all = self.lock();
                let Some((&p, _)) = all
                    .iter()
                    .filter(|(_, h)| h.bytes > 0)
                    .max_by_key(|(_, h)| h.bytes)
                else {
                    return Ok(());
                };
                let h = all.get_mut(&p).expect("found above");
                let bytes = std::mem::take(&mut h.bytes);
                let by_writer = std::mem::take(&mut h.by_writer);
                // Marked stored before the pieces are: a reader that comes in
                // between reads this writer's pieces from the store (there are
                // none yet while its shuffle's writers run, and readers start
                // after the last writer).
                h.stored.extend(by_writer.keys().copied());
                (p, bytes, by_writer)
            };
            let (p, bytes, by_writer) = taken;
            for (writer, batches) in &by_writer {
                self.store(p, *writer, batches)?;
            }
            self.bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.paged.fetch_add(bytes, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Largest bytes of one encoded piece in the shuffle store, so a reader (a sort)
/// can hold back or spill at that grain.
pub const MAX_PIECE_BYTES: usize = 256 << 10;

/// The most shuffle pieces held as batches: a sixteenth of the limit, as the
/// store's buffers. Under a tight limit, pieces held uncompressed leave less room
/// than encoded ones and go to the store soon anyway (at a 16 MB limit a quarter
/// held took a null-heavy `set_index` from 1.24 to 1.30 times the limit); under a
/// roomy one (the default: half the RAM), a shuffle of gigabytes is never encoded.
pub fn held_pieces_cap(limit: u64) -> u64 {
    limit / 16
}

/// The batches of a shuffle partition, in writer order, decoded lazily.
pub type ShuffledBatches<'s> = Box<dyn Iterator<Item = Result<RecordBatch>> + Send + 's>;

fn decoded(piece: outcore_storage::Result<Vec<u8>>) -> Vec<Result<RecordBatch>> {
    match piece.and_then(|bytes| decode_batches(&bytes)) {
        Ok((_, batches)) => batches.into_iter().map(Ok).collect(),
        Err(e) => vec![Err(Error::from(e))],
    }
}

impl RunContext {
    /// A context whose shuffle folder goes under the policy's spill folder, with
    /// buffers and cache sized by the policy and reserved from `account`.
    pub fn new(policy: &MemoryPolicy, account: Arc<MemoryPool>) -> Arc<RunContext> {
        Arc::new(RunContext {
            bytes_read: AtomicU64::new(0),
            row_groups_read: AtomicU64::new(0),
            row_groups_skipped: AtomicU64::new(0),
            spill_dir: policy.spill_dir.clone(),
            shuffle_budget: policy.shuffle_buffer_bytes(),
            account,
            shuffle_partitions: AtomicUsize::new(0),
            shuffle: Mutex::new(None),
            radix_parts: AtomicUsize::new(0),
            join_buckets_spilled: AtomicU64::new(0),
            join_build_chunks: AtomicU64::new(0),
            sort_runs: AtomicU64::new(0),
            run_write_allowance: AtomicU64::new(u64::MAX),
            radix_splits: AtomicU64::new(0),
            fold_tables: AtomicU64::new(0),
            fold_flushes: AtomicU64::new(0),
            held: Mutex::new(None),
        })
    }

    /// Counts bytes read from input files.
    pub fn add_bytes_read(&self, n: u64) {
        self.bytes_read.fetch_add(n, Ordering::Relaxed);
    }

    /// Bytes read from input files so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// Counts Parquet row groups read, and skipped because their statistics
    /// showed that no row could pass the filter.
    pub fn add_row_groups(&self, read: u64, skipped: u64) {
        self.row_groups_read.fetch_add(read, Ordering::Relaxed);
        self.row_groups_skipped
            .fetch_add(skipped, Ordering::Relaxed);
    }

    /// Parquet row groups read and skipped so far.
    pub fn row_groups(&self) -> (u64, u64) {
        (
            self.row_groups_read.load(Ordering::Relaxed),
            self.row_groups_skipped.load(Ordering::Relaxed),
        )
    }

    /// Records the parts a radix-partitioned aggregation chose at run time.
    pub fn record_radix_parts(&self, parts: usize) {
        self.radix_parts.fetch_max(parts, Ordering::Relaxed);
    }

    /// The most parts a radix-partitioned aggregation chose (0 when none ran; 1 when
    /// the partials were few enough for one merge).
    pub fn radix_parts(&self) -> usize {
        self.radix_parts.load(Ordering::Relaxed)
    }

    /// The folder under which spill and shuffle folders are made.
    pub fn spill_dir(&self) -> &std::path::Path {
        &self.spill_dir
    }

    /// Counts what a grace hash join did: buckets written to disk, build chunks
    /// probed one at a time.
    pub fn record_join_spill(&self, buckets: u64, chunks: u64) {
        self.join_buckets_spilled
            .fetch_add(buckets, Ordering::Relaxed);
        self.join_build_chunks.fetch_add(chunks, Ordering::Relaxed);
    }

    /// Grace hash join buckets spilled and build chunks probed so far.
    pub fn join_spills(&self) -> (u64, u64) {
        (
            self.join_buckets_spilled.load(Ordering::Relaxed),
            self.join_build_chunks.load(Ordering::Relaxed),
        )
    }

    /// Counts sorted runs an external sort wrote.
    pub fn add_sort_runs(&self, n: u64) {
        self.sort_runs.fetch_add(n, Ordering::Relaxed);
    }

    /// Fault injection for tests: sorted-run writes fail once `bytes` more have
    /// been written, as on a full disk.
    #[doc(hidden)]
    pub fn fail_sort_runs_after(&self, bytes: u64) {
        self.run_write_allowance.store(bytes, Ordering::SeqCst);
    }

    /// Counts `bytes` of a sorted run about to be written to the store in `dir`;
    /// past the fault-injection allowance, the error a full disk gives there.
    pub fn charge_run_write(&self, dir: &std::path::Path, bytes: u64) -> Result<()> {
        let left =
            self.run_write_allowance
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                    u64::MAX => None,
                    _ => Some(left.saturating_sub(bytes)),
                });
        match left {
            Ok(left) if left < bytes => Err(Error::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "no space left on device (injected)",
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Sorted runs written so far (0 when every sort fit in memory).
    pub fn sort_runs(&self) -> u64 {
        self.sort_runs.load(Ordering::Relaxed)
    }

    /// Counts a radix finalize task that merged its part in sub-parts.
    pub fn record_radix_split(&self) {
        self.radix_splits.fetch_add(1, Ordering::Relaxed);
    }

    /// Radix finalize tasks that merged their part in sub-parts so far.
    pub fn radix_splits(&self) -> u64 {
        self.radix_splits.load(Ordering::Relaxed)
    }

    /// Counts a running table of a radix aggregation (see `agg::radix::Folder`).
    pub fn record_fold_table(&self) {
        self.fold_tables.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a running table taken out before its chunks were done (full,
    /// refused room by the account, or folding turned off).
    pub fn record_fold_flush(&self) {
        self.fold_flushes.fetch_add(1, Ordering::Relaxed);
    }

    /// Running tables made and taken out early so far.
    pub fn fold_tables(&self) -> (u64, u64) {
        (
            self.fold_tables.load(Ordering::Relaxed),
            self.fold_flushes.load(Ordering::Relaxed),
        )
    }

    /// Reserves `n` shuffle partitions for one shuffle while the plan is lowered;
    /// returns the first. Every shuffle of the computation shares one store, each in
    /// its own range of partition numbers.
    pub fn reserve_shuffle_partitions(&self, n: usize) -> usize {
        self.shuffle_partitions.fetch_add(n, Ordering::Relaxed)
    }

    /// The computation's shuffle service, made on first use.
    pub fn shuffle(&self) -> Result<Arc<ShuffleService>> {
        let mut slot = self.shuffle.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let n = self.shuffle_partitions.load(Ordering::Relaxed);
        if n == 0 {
            return Err(Error::Internal(
                "a shuffle ran that reserved no partitions".into(),
            ));
        }
        // The buffers are a held cache of the account: counted as they fill,
        // given what the other reservations leave (at most the policy's cap), and
        // flushed to disk when the account needs the room back.
        let options = ShuffleOptions {
            budget_bytes: 0,
            ..ShuffleOptions::default()
        };
        let service = Arc::new(ShuffleService::new(&self.spill_dir, n, options)?);
        let weak: std::sync::Weak<ShuffleService> = Arc::downgrade(&service);
        self.account.register_cache(
            "shuffle buffers",
            weak as std::sync::Weak<dyn HeldCache>,
            self.shuffle_budget,
        );
        self.account.rebalance()?;
        *slot = Some(service.clone());
        Ok(service)
    }

    /// The held pieces, made (with the shuffle store) and registered with the
    /// account on first use.
    fn held(&self) -> Result<Arc<HeldPieces>> {
        let mut slot = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = slot.as_ref() {
            return Ok(h.clone());
        }
        let held = Arc::new(HeldPieces {
            store: self.shuffle()?,
            partitions: Mutex::new(HashMap::new()),
            bytes: AtomicU64::new(0),
            total: AtomicU64::new(0),
            paged: AtomicU64::new(0),
        });
        let weak: std::sync::Weak<HeldPieces> = Arc::downgrade(&held);
        self.account.register_cache(
            "shuffle pieces held",
            weak as std::sync::Weak<dyn HeldCache>,
            held_pieces_cap(self.account.limit()),
        );
        *slot = Some(held.clone());
        Ok(held)
    }

    /// Appends one writer's pieces of a shuffle (`pieces[p]` goes to shuffle
    /// partition `offset + p`). They are held as Arrow batches, never encoded, as
    /// a held cache of the account (at most [`held_pieces_cap`]): a shuffle that
    /// fits in memory costs no encoding, compression or copy (a sort of 2.6e6
    /// rows spent a sixth of its time there). Pieces that do not fit what is free now, and later the
    /// largest held partitions when the account needs the room, are encoded into
    /// the shuffle store, in pieces of at most [`MAX_PIECE_BYTES`]; a writer that
    /// stored a partition's pieces stores the rest of them, keeping their order.
    pub fn shuffle_append(
        &self,
        offset: usize,
        writer: u64,
        pieces: Vec<RecordBatch>,
    ) -> Result<()> {
        let held = self.held()?;
        let sizes: Vec<u64> = pieces
            .iter()
            .map(|b| outcore_storage::measure::batch_bytes(b) as u64)
            .collect();
        let size: u64 = sizes.iter().sum();
        // Held only if they fit now: under a tight limit they would be paged out
        // at once, an encoding later and a churn of memory for nothing.
        let fits = held.bytes.load(Ordering::Relaxed) + size
            <= held_pieces_cap(self.account.limit())
            && size <= self.account.free_now();
        let mut total = 0;
        // Encoded after the lock is let go: no file I/O under it.
        let mut to_store = Vec::new();
        {
            let mut all = held.lock();
            for (p, (piece, bytes)) in pieces.into_iter().zip(sizes).enumerate() {
                if piece.num_rows() == 0 {
                    continue;
                }
                let h = all.entry(offset + p).or_default();
                if !fits {
                    h.stored.insert(writer);
                }
                if h.stored.contains(&writer) {
                    // Keep this writer's order: after its stored pieces.
                    to_store.push((offset + p, piece));
                    continue;
                }
                h.bytes += bytes;
                h.by_writer.entry(writer).or_default().push(piece);
                total += bytes;
            }
        }
        for (partition, piece) in to_store {
            held.store(partition, writer, std::slice::from_ref(&piece))?;
        }
        held.bytes.fetch_add(total, Ordering::Relaxed);
        held.total.fetch_add(total, Ordering::Relaxed);
        // Pages held partitions out if they no longer fit.
        self.account.rebalance()
    }

    /// The batches of shuffle partition `partition`, in writer order (a writer's
    /// held pieces, then what it stored in `store`), decoded as they are read.
    /// With `take`, the held pieces leave the cache and the running task counts
    /// them (a reader that reads once); else they stay for another pass (a grace
    /// join's).
    pub fn shuffle_batches<'s>(
        &self,
        store: &'s ShuffleService,
        partition: usize,
        take: bool,
    ) -> Result<ShuffledBatches<'s>> {
        let held_pieces = self.held()?;
        let (held, stored) = {
            let mut all = held_pieces.lock();
            match take {
                true => match all.remove(&partition) {
                    Some(h) => {
                        held_pieces.bytes.fetch_sub(h.bytes, Ordering::Relaxed);
                        super::allocated(h.bytes)?;
                        (h.by_writer, h.stored)
                    }
                    None => Default::default(),
                },
                false => all
                    .get(&partition)
                    .map(|h| (h.by_writer.clone(), h.stored.clone()))
                    .unwrap_or_default(),
            }
        };
        if stored.is_empty() {
            return Ok(Box::new(held.into_values().flatten().map(Ok)));
        }
        if held.is_empty() {
            return Ok(Box::new(store.pieces(partition)?.flat_map(decoded)));
        }
        // Some writers held, some stored: writer by writer.
        let mut writers: BTreeSet<u64> = stored;
        writers.extend(held.keys().copied());
        let mut held = held;
        let mut sources: Vec<ShuffledBatches<'s>> = Vec::with_capacity(writers.len());
        for w in writers {
            if let Some(batches) = held.remove(&w) {
                sources.push(Box::new(batches.into_iter().map(Ok)));
            }
            sources.push(Box::new(store.pieces_of(partition, w)?.flat_map(decoded)));
        }
        Ok(Box::new(sources.into_iter().flatten()))
    }

    /// Whether shuffle partition `partition` has no rows held or stored.
    pub fn shuffle_partition_is_empty(&self, store: &ShuffleService, partition: usize) -> bool {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let held = held.is_some_and(|h| {
            h.lock()
                .get(&partition)
                .is_some_and(|p| !p.by_writer.is_empty())
        });
        !held
            && store
                .pieces(partition)
                .map_or(false, |pieces| pieces.remaining() == 0)
    }

    /// Forgets shuffle partition `partition`: its held pieces and its files.
    pub fn drop_shuffle_partition(&self, store: &ShuffleService, partition: usize) -> Result<()> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(held) = held {
            if let Some(h) = held.lock().remove(&partition) {
                held.bytes.fetch_sub(h.bytes, Ordering::Relaxed);
            }
        }
        store.drop_partition(partition)?;
        Ok(())
    }

    /// What the shuffles did (zeros when nothing shuffled).
    pub fn shuffle_totals(&self) -> ShuffleTotals {
        let slot = self.shuffle.lock().unwrap_or_else(|p| p.into_inner());
        let mut totals = slot.as_ref().map_or_else(ShuffleTotals::default, |s| {
            let st = s.stats();
            ShuffleTotals {
                bytes_shuffled: st.bytes_appended,
                bytes_flushed: st.bytes_flushed,
                bytes_on_disk: st.peak_size_on_disk,
                bytes_held: 0,
            }
        });
        drop(slot);
        totals.bytes_held = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |h| {
                h.total.load(Ordering::Relaxed) - h.paged.load(Ordering::Relaxed)
            });
        totals.bytes_shuffled += totals.bytes_held;
        totals
    }
}

/// The shuffle store's buffers, as the account sees them: bytes held, flushed to
/// disk down to the budget the account leaves them.
impl HeldCache for ShuffleService {
    fn held_bytes(&self) -> u64 {
        self.buffered_bytes() as u64
    }

    fn set_budget(&self, bytes: u64) -> Result<()> {
        ShuffleService::set_budget(self, usize::try_from(bytes).unwrap_or(usize::MAX))
            .map_err(Error::from)
    }
}

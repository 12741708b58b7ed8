//! What one computation shares besides its graph: the counters its tasks add to, and
//! the shuffle service its shuffles write through.
//!
//! A plan is lowered with a fresh [`RunContext`]; operators that read files or
//! shuffle keep an `Arc` of it. The shuffle service (a folder of files) is made on
//! first use in the spill folder and lives as long as the context, so its disk space
//! comes back when the computation's graph is dropped. Its buffers are a held
//! cache of the memory account (counted as they fill, flushed to disk when other
//! reservations need the room).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
    /// Bytes appended to the shuffle store.
    pub bytes_shuffled: u64,
    /// Bytes the store wrote to its files.
    pub bytes_flushed: u64,
    /// The most the store's files held on disk at once.
    pub bytes_on_disk: u64,
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

    /// What the shuffles did (zeros when nothing shuffled).
    pub fn shuffle_totals(&self) -> ShuffleTotals {
        let slot = self.shuffle.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().map_or_else(ShuffleTotals::default, |s| {
            let st = s.stats();
            ShuffleTotals {
                bytes_shuffled: st.bytes_appended,
                bytes_flushed: st.bytes_flushed,
                bytes_on_disk: st.peak_size_on_disk,
            }
        })
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

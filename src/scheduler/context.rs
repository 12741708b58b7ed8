//! What one computation shares besides its graph: the counters its tasks add to, and
//! the shuffle service its shuffles write through.
//!
//! A plan is lowered with a fresh [`RunContext`]; operators that read files or
//! shuffle keep an `Arc` of it. The shuffle service (one sled database) is made on
//! first use in the spill folder and lives as long as the context, so its disk space
//! comes back when the computation's graph is dropped. Its buffers and sled's cache
//! are reserved from the memory account while it lives.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use outcore_storage::shuffle::{ShuffleOptions, ShuffleService};

use super::memory::{MemoryPolicy, MemoryPool, MemoryReservation};
use crate::error::{Error, Result};

/// Counters and the shuffle service of one computation.
pub struct RunContext {
    bytes_read: AtomicU64,
    row_groups_read: AtomicU64,
    row_groups_skipped: AtomicU64,
    spill_dir: PathBuf,
    shuffle_budget: u64,
    sled_cache: u64,
    account: Arc<MemoryPool>,
    shuffle_partitions: AtomicUsize,
    /// The shuffle service and the reservation of its buffers and cache.
    shuffle: Mutex<Option<(Arc<ShuffleService>, MemoryReservation)>>,
    /// The most parts a radix-partitioned aggregation chose (0: none ran).
    radix_parts: AtomicUsize,
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
    /// Bytes the store wrote to sled.
    pub bytes_flushed: u64,
    /// The sled database's size on disk at the end.
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
            sled_cache: policy.sled_cache_bytes(),
            account,
            shuffle_partitions: AtomicUsize::new(0),
            shuffle: Mutex::new(None),
            radix_parts: AtomicUsize::new(0),
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

    /// Reserves `n` shuffle partitions for one shuffle while the plan is lowered;
    /// returns the first. Every shuffle of the computation shares one store, each in
    /// its own range of partition numbers.
    pub fn reserve_shuffle_partitions(&self, n: usize) -> usize {
        self.shuffle_partitions.fetch_add(n, Ordering::Relaxed)
    }

    /// The computation's shuffle service, made on first use.
    pub fn shuffle(&self) -> Result<Arc<ShuffleService>> {
        let mut slot = self.shuffle.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, _)) = slot.as_ref() {
            return Ok(s.clone());
        }
        let n = self.shuffle_partitions.load(Ordering::Relaxed);
        if n == 0 {
            return Err(Error::Internal(
                "a shuffle ran that reserved no partitions".into(),
            ));
        }
        // Buffers shrink to what the account has (down to a sixteenth) rather than
        // fail. Only under a limit below the minimum (tests) does nothing fit; the
        // store then runs on its smallest buffers, reserved as far as they fit.
        let mut reservation = self.account.reservation("shuffle buffers and sled cache");
        let mut budget = self.shuffle_budget;
        loop {
            match reservation.try_grow(budget + self.sled_cache) {
                Ok(()) => break,
                Err(_) if budget > self.shuffle_budget / 16 => budget /= 2,
                Err(free) => {
                    let _ = reservation.try_grow(free);
                    break;
                }
            }
        }
        self.account.rebalance()?;
        let options = ShuffleOptions {
            budget_bytes: usize::try_from(budget).unwrap_or(usize::MAX),
            sled_cache_bytes: self.sled_cache,
            ..ShuffleOptions::default()
        };
        let service = Arc::new(ShuffleService::new(&self.spill_dir, n, options)?);
        *slot = Some((service.clone(), reservation));
        Ok(service)
    }

    /// What the shuffles did (zeros when nothing shuffled).
    pub fn shuffle_totals(&self) -> ShuffleTotals {
        let slot = self.shuffle.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().map_or_else(ShuffleTotals::default, |(s, _)| {
            let st = s.stats();
            ShuffleTotals {
                bytes_shuffled: st.bytes_appended,
                bytes_flushed: st.bytes_flushed,
                bytes_on_disk: st.size_on_disk,
            }
        })
    }
}

//! How much memory a computation may hold, and the defaults derived from the machine.
//!
//! The limit covers everything a computation keeps: results waiting for their
//! dependents (held in the spill cache, which pages the least recently used ones to
//! disk) and the working memory of the tasks running (a raw block, its decoded
//! columns, a hash table). Only the first is counted exactly; the second is bounded
//! by the block size, which is why the default block size shrinks with the limit.

use std::path::PathBuf;

/// The part of the machine's RAM a session may use when no limit is given.
pub const DEFAULT_LIMIT_FRACTION: f64 = 0.5;

/// The default block size is at most this, and at most a tenth of one core's share
/// of the limit (Dask's rule), so that a small limit works without tuning. Dask caps
/// it at 64 MiB; on 1e7- and 1e8-row G1 files 16 MiB blocks ran q1 in 0.66 s and
/// 4.9 s against 1.4 s and 6.7 s with 64 MiB, at a quarter of the peak memory (a
/// fresh 64 MiB read buffer per task costs page faults; 16 MiB ones stay in cache).
pub const MAX_DEFAULT_BLOCKSIZE: u64 = 16 << 20;

/// A memory limit and the folder under which spill and shuffle folders are made.
#[derive(Debug, Clone)]
pub struct MemoryPolicy {
    /// Bytes the computation may hold.
    pub limit: u64,
    /// Parent folder of the per-computation spill and shuffle folders.
    pub spill_dir: PathBuf,
}

impl MemoryPolicy {
    /// The default: [`DEFAULT_LIMIT_FRACTION`] of the machine's RAM, spilling under the
    /// system's temporary folder.
    pub fn machine_default() -> MemoryPolicy {
        MemoryPolicy {
            limit: (total_memory() as f64 * DEFAULT_LIMIT_FRACTION) as u64,
            spill_dir: std::env::temp_dir(),
        }
    }

    /// Bytes of finished results kept in memory before the spill cache pages them
    /// out: the limit less the working memory of `threads` running tasks (about four
    /// times a block each: the raw bytes, their fields, decoded columns, a hash
    /// table), but never less than a quarter of the limit.
    pub fn results_budget(&self, threads: usize, blocksize: u64) -> u64 {
        let working = (threads as u64).saturating_mul(blocksize).saturating_mul(4);
        self.limit.saturating_sub(working).max(self.limit / 4)
    }

    /// The block size used when none is given: the smaller of 16 MiB and
    /// limit / threads / 10, and at least 64 KiB.
    pub fn default_blocksize(&self, threads: usize) -> u64 {
        (self.limit / threads.max(1) as u64 / 10).clamp(64 << 10, MAX_DEFAULT_BLOCKSIZE)
    }
}

/// The machine's RAM in bytes, from `/proc/meminfo` (8 GiB when it cannot be read).
pub fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(8 << 30, |kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_limit() {
        let p = MemoryPolicy {
            limit: 1 << 30,
            spill_dir: PathBuf::from("/tmp"),
        };
        assert_eq!(p.default_blocksize(2), 16 << 20);
        let mid = MemoryPolicy {
            limit: 200 << 20,
            ..p.clone()
        };
        assert_eq!(mid.default_blocksize(2), (200 << 20) / 20);
        let small = MemoryPolicy {
            limit: 1 << 20,
            ..p.clone()
        };
        assert_eq!(small.default_blocksize(2), 64 << 10);
        let big = MemoryPolicy {
            limit: 64 << 30,
            ..p.clone()
        };
        assert_eq!(big.default_blocksize(2), 16 << 20);
        assert_eq!(p.results_budget(2, 64 << 20), (1 << 30) - (512 << 20));
        assert_eq!(p.results_budget(64, 64 << 20), (1 << 30) / 4);
        assert!(total_memory() > 1 << 20);
    }
}

//! The memory account: one pool of the limit's bytes that every consumer whose
//! memory grows with the data reserves from before it allocates, and the defaults
//! derived from the limit (block size, shuffle buffers, broadcast size).
//!
//! ```text
//!                          MemoryPool (limit bytes, one per session)
//!   reservations ─────────► "task read-csv-3"  "shuffle buffers"  "task agg-combine-1" …
//!     (named, RAII:            (explicit bytes, released on drop)
//!      freed on drop)
//!   held caches ──────────► "results held" (a run's spill cache)   "persisted"
//!                            (their resident bytes; budget = what the rest leaves)
//! ```
//!
//! The shape is DataFusion's `MemoryPool` / `MemoryReservation::try_grow`. A
//! reservation is granted while the explicit reservations fit in the limit: the
//! caches then page their least recently used values out to make room
//! ([`MemoryPool::rebalance`], called outside any scheduler lock). A refused
//! reservation has three answers, in this order: page the caches out; wait for
//! other tasks to finish (the scheduler starts no new task whose estimate does not
//! fit while others run; a task inside an operator waits for others to release);
//! and, when nothing else runs and nothing can shrink, an error naming the
//! operator, the bytes it needed, the limit and what would help
//! ([`Error::MemoryExhausted`]).
//!
//! Operators never see the policy: they grow the running task's reservation with
//! [`reserve`] (a no-op outside a scheduled task), and the scheduler measures each
//! result. No other module divides the limit: the fractions live here.
//!
//! What no consumer measures (the allocator's free pages it keeps, the binary's
//! code, bookkeeping) has a reservation of its own, [`UNMEASURED`]. On the command
//! line it follows the process: every few milliseconds it becomes the resident
//! memory less everything else reserved ([`MemoryPool::watch_process`]), so the
//! limit holds for the process as measured from outside, not only for the sum of
//! the estimates.
//!
//! Invariants: explicit reservations plus the results running tasks hold as
//! inputs (which no cache can page out) ≤ limit, except a task admitted alone
//! whose estimate is clamped to what is free; a cache's budget is the limit less
//! the explicit reservations and the other caches' resident bytes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use outcore_storage::spill::SpillCache;

use crate::error::{Error, Result};
use crate::graph::Value;

/// The part of the machine's RAM a session may use when no limit is given.
pub const DEFAULT_LIMIT_FRACTION: f64 = 0.5;

/// The smallest memory limit a session accepts: room for a few 64 KiB blocks in
/// flight with their decoded columns and the shuffle buffers. Below it
/// every task would wait for every other and still overflow.
pub const MIN_MEMORY_LIMIT: u64 = 4 << 20;

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

    /// The block size used when none is given: the smaller of 16 MiB and
    /// limit / threads / 10, and at least 64 KiB.
    pub fn default_blocksize(&self, threads: usize) -> u64 {
        (self.limit / threads.max(1) as u64 / 10).clamp(64 << 10, MAX_DEFAULT_BLOCKSIZE)
    }

    /// The most a computation's shuffle store buffers before writing to its files:
    /// a sixteenth of the limit, between 64 KiB and 64 MiB (64 MiB under a 1 GB
    /// limit, so a shuffle that fits a roomy limit never touches the disk). The
    /// buffers are a held cache of the account, so they get less, down to
    /// nothing, when the other reservations need the room.
    pub fn shuffle_buffer_bytes(&self) -> u64 {
        (self.limit / 16).clamp(64 << 10, 64 << 20)
    }

    /// The largest estimated side a join broadcasts (builds once and shares) rather
    /// than shuffles: a sixteenth of the limit, since the built table costs about
    /// twice the side and every probe task holds its output beside it. The build
    /// task reserves what it really builds.
    pub fn broadcast_bytes(&self) -> u64 {
        self.limit / 16
    }

    /// The largest estimated output partition of a sort or set_index: a quarter
    /// of the limit per thread, since each running sort holds its partition's
    /// buffer and sorted copy (or, merging runs, its answer), and every thread may
    /// run one. A 90 %-null column of 4e6 rows at 64 MB on 2 threads needed two
    /// 30 MB partitions at once and was refused; it now gets a dozen.
    pub fn sorted_partition_bytes(&self, threads: usize) -> u64 {
        (self.limit / 4 / threads.max(1) as u64).max(1)
    }

    /// Checks the limit against [`MIN_MEMORY_LIMIT`].
    pub fn validate(&self) -> Result<()> {
        if self.limit < MIN_MEMORY_LIMIT {
            return Err(Error::plan(
                "session",
                format!(
                    "a memory limit of {} is too small to run anything; the minimum is {} \
                     (--memory-limit 4MiB): reading a block, buffering a shuffle and \
                     running a task need that much",
                    crate::error::human_bytes(self.limit),
                    crate::error::human_bytes(MIN_MEMORY_LIMIT),
                ),
            ));
        }
        Ok(())
    }
}

/// glibc's malloc settings (the `GLIBC_TUNABLES` value) under which a process
/// with memory limit `limit` (`None`: none given) should run.
///
/// With no limit given, or one at least the default, nothing is held tight:
/// glibc's defaults, with large buffers backed by transparent huge pages where the
/// kernel allows (`glibc.malloc.hugetlb=1`). Tables and columns of millions of
/// rows are fresh mappings, and faulting them in 4 KiB pages was a fifth of the
/// CPU of a groupby of 1e7 groups: q10 on the 1e7-row G1 files 4.28 → 3.89 s,
/// at K=1e5 5.7 → 4.7 s, q2 at K=1e5 2.78 → 2.43 s (system time 1.2 → 0.8 s),
/// peak RSS within a few percent; q1 and q3 unchanged.
///
/// Under a tight limit glibc's defaults keep memory the account has released:
/// each worker thread allocates from an arena of its own, a buffer freed on
/// another thread goes back to its owner's arena, and each arena keeps its high
/// water mark; and after the first large buffer is freed, the threshold above
/// which buffers get a mapping of their own (returned on free) rises to that
/// size, so every later block-sized buffer lands in an arena. Measured at
/// `--memory-limit 16MB` on 35 MB of G1 CSV (release build, 2 threads), peak RSS
/// above the baseline over the limit: set_index 1.48 → 0.92, sort 1.37 → 0.90,
/// groupby of 1 group per row 1.47–1.73 → 1.13–1.18, median 1.39–1.44 → 1.18;
/// jemalloc with immediate purging did as well, mimalloc worse than glibc's
/// defaults. One arena (freed memory serves every thread) and a fixed 256 KiB
/// mapping threshold do it. The cost is page faults: each large buffer is
/// fresh pages (q3 on 486 MB: about 0.8 s more system time), which a spilling
/// run can afford and a run at the default limit need not pay.
///
/// From a limit of 512 MB a block's buffers are a small share of the limit and
/// the page faults cost more than the memory kept: the threshold is a 32nd of the
/// limit (at most 32 MiB), so blocks are reused from the arena, and from 1 GB
/// large buffers are backed by transparent huge pages where the kernel allows
/// (fewer TLB misses in tables of millions of groups). q3 on 2.5e7 rows with 1e6
/// groups at 1 GB: 5.95 s → 4.57 s (system time 2.7 → 1.3 s), peak RSS 399 →
/// 441 MB.
pub fn malloc_tunables(limit: Option<u64>) -> String {
    let default = MemoryPolicy::machine_default().limit;
    let limit = match limit {
        Some(limit) if limit < default => limit,
        _ => return "glibc.malloc.hugetlb=1".into(),
    };
    let threshold = if limit >= 512 << 20 {
        (limit / 32).min(32 << 20)
    } else {
        256 << 10
    };
    let huge = if limit >= 1 << 30 {
        ":glibc.malloc.hugetlb=1"
    } else {
        ""
    };
    format!("glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold={threshold}{huge}")
}

/// The machine's RAM in bytes, from `/proc/meminfo` (8 GiB when it cannot be read).
pub fn total_memory() -> u64 {
    proc_bytes("/proc/meminfo", "MemTotal:").unwrap_or(8 << 30)
}

/// The value of line `key` (`"MemTotal:"`) of a `/proc` file that counts in kB,
/// in bytes; `None` if the file or the line cannot be read.
fn proc_bytes(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// The name of the reservation every pool starts with (see [`unmeasured_bytes`]).
pub const UNMEASURED: &str = "unmeasured (allocator, code, bookkeeping)";

/// Bytes of a limit the account keeps for what no consumer measures: memory the
/// allocator has been given back but keeps mapped (fragmentation), the pages of
/// the binary's code that a run touches beyond a trivial one's, thread stacks,
/// the spill cache's and scheduler's bookkeeping, and what operators allocate
/// beyond their estimate before it is counted. Measured from outside with
/// glibc tuned ([`malloc_tunables`]): peak RSS less the baseline less the peak
/// reserved was about 4 MiB at a 16 MB limit (debug build, mostly code pages) and
/// 13 MB at 64 MB (release; q3 on 486 MB of CSV, fragmentation of the many small
/// results). An eighth of the limit, at least 4 MiB, at most a quarter of the
/// limit and at most 256 MiB; nothing under [`MIN_MEMORY_LIMIT`] (limits only
/// tests set, to force spill paths on kilobytes).
pub fn unmeasured_bytes(limit: u64) -> u64 {
    if limit < MIN_MEMORY_LIMIT {
        return 0;
    }
    (limit / 8).max(4 << 20).min(limit / 4).min(256 << 20)
}

/// The most of a limit the [`UNMEASURED`] reservation grows to when the pool
/// watches the process ([`MemoryPool::watch_process`]): half. It holds the pages
/// of the binary's code a run touches (about 13 MB for a groupby, a fifth of a
/// 64 MB limit) besides fragmentation. Its part beyond [`unmeasured_bytes`] is
/// lent to an operator that would otherwise be refused ([`reserve`]), so a lone
/// operator still gets what it needs; past half the limit is exceeded rather
/// than the computation failed.
fn max_unmeasured_bytes(limit: u64) -> u64 {
    unmeasured_bytes(limit).max(limit / 2)
}

/// How often a watching pool reads the process's resident memory: reading
/// `/proc/self/status` costs tens of microseconds, a radix groupby starts
/// thousands of tasks a second.
const WATCH_INTERVAL: Duration = Duration::from_millis(5);

/// How often a watching pool at most gives the heap's free pages back to the
/// system ([`release_free_heap`]): it walks the whole heap.
const TRIM_INTERVAL: Duration = Duration::from_millis(50);

/// Gives the free pages inside the heap back to the system (glibc's
/// `malloc_trim`): memory freed by operators but kept by the allocator between
/// its live blocks, which the process's resident memory counts and no consumer
/// does. A watching pool calls it when that memory is past what it can leave
/// unmeasured.
#[allow(unsafe_code)]
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes no pointers and only returns free pages
        // (madvise) under the allocator's own lock.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// The process's resident bytes (heap, stacks and the pages of the binary's code
/// it has touched: what is measured from outside), from `/proc/self/status`;
/// `None` where there is no such file.
pub fn resident_bytes() -> Option<u64> {
    proc_bytes("/proc/self/status", "VmRSS:")
}

/// A consumer that holds values it can page out: a spill cache. The account asks
/// it for its resident bytes and sets its budget.
pub trait HeldCache: Send + Sync {
    /// Bytes held in memory now.
    fn held_bytes(&self) -> u64;
    /// Keeps at most `bytes` resident, paging out the rest now.
    fn set_budget(&self, bytes: u64) -> Result<()>;
}

impl HeldCache for SpillCache<Value> {
    fn held_bytes(&self) -> u64 {
        self.resident_bytes() as u64
    }

    fn set_budget(&self, bytes: u64) -> Result<()> {
        let dir = self.dir().to_path_buf();
        SpillCache::set_budget(self, usize::try_from(bytes).unwrap_or(usize::MAX))
            .map_err(|source| Error::Spill { dir, source })
    }
}

/// The peak of a pool: the most bytes reserved (explicit and held) at once and the
/// largest consumers at that moment, for `--stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryPeak {
    /// Most bytes reserved at once.
    pub bytes: u64,
    /// The largest consumers then, by name (tasks of one layer summed), largest first.
    pub consumers: Vec<(String, u64)>,
}

struct Consumer {
    name: Arc<str>,
    bytes: u64,
    task: bool,
    /// Bytes of results this task holds as inputs while it runs (see
    /// [`PoolState::pinned`]).
    pinned: u64,
}

struct RegisteredCache {
    name: Arc<str>,
    cache: Weak<dyn HeldCache>,
    /// The most this cache may keep, whatever the account leaves it.
    cap: u64,
}

#[derive(Default)]
struct PoolState {
    consumers: BTreeMap<u64, Consumer>,
    next_id: u64,
    /// Sum of the consumers' bytes.
    explicit: u64,
    /// Bytes of held results that running tasks use as inputs: the caches count
    /// them but cannot page them out, so a grant must leave room for them (else
    /// the explicit reservations fit the limit while the inputs sit on top).
    pinned: u64,
    caches: Vec<RegisteredCache>,
    peak: MemoryPeak,
    /// Tasks holding a reservation, and how many of them wait inside [`reserve`].
    tasks: usize,
    waiting: usize,
    /// Whether the [`UNMEASURED`] reservation follows the process's resident
    /// memory ([`MemoryPool::watch_process`]), and when it last looked.
    watch: bool,
    watched_at: Option<Instant>,
    /// When the heap's free pages were last given back ([`release_free_heap`]).
    trimmed_at: Option<Instant>,
    /// Growth since the last look that the [`UNMEASURED`] reservation's bytes
    /// above its floor may already hold: between two looks that reservation
    /// holds what the process kept after consumers shrank (the allocator's free
    /// pages among them), and a growth right after reuses those pages. Grants
    /// count it twice (the safe side: if the growth takes new pages, the next
    /// look counts them), but the peak does not, so that it describes the
    /// process: counted twice, the peak stood a third above the process's on a
    /// join whose tasks came and went every few milliseconds.
    reused: u64,
}

/// The memory account of a session: the limit, the named reservations, the caches.
pub struct MemoryPool {
    limit: u64,
    state: Mutex<PoolState>,
    /// Signalled when a reservation shrinks.
    released: Condvar,
}

impl std::fmt::Debug for MemoryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPool")
            .field("limit", &self.limit)
            .field("reserved", &self.reserved())
            .finish_non_exhaustive()
    }
}

impl MemoryPool {
    /// A pool of `limit` bytes.
    ///
    /// The pool starts with one reservation it never releases, named
    /// [`UNMEASURED`], of [`unmeasured_bytes`]: room for the memory a process uses
    /// that no consumer can measure.
    pub fn new(limit: u64) -> Arc<MemoryPool> {
        let mut st = PoolState::default();
        let unmeasured = unmeasured_bytes(limit);
        if unmeasured > 0 {
            st.consumers.insert(
                0,
                Consumer {
                    name: UNMEASURED.into(),
                    bytes: unmeasured,
                    task: false,
                    pinned: 0,
                },
            );
            st.next_id = 1;
            st.explicit = unmeasured;
        }
        Arc::new(MemoryPool {
            limit,
            state: Mutex::new(st),
            released: Condvar::new(),
        })
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Makes the [`UNMEASURED`] reservation follow what the process really holds:
    /// every few milliseconds, when the account rebalances, it becomes the
    /// process's anonymous resident memory less everything reserved by name and
    /// held by the caches (at least a quarter of its starting size, room for
    /// what grows between two looks; at most half the limit). Memory no
    /// consumer counts (the allocator's free pages it has not returned, after
    /// many small results were freed out of order; bookkeeping) then squeezes
    /// the caches as a reservation would, so the process stays near the limit
    /// measured from outside, and `--stats` says how much it was. Bytes a
    /// consumer frees join it until the next look (`freed`).
    ///
    /// Only for a pool that has the process to itself (the command line): with
    /// two computations in one process each would count the other's memory.
    pub fn watch_process(&self, on: bool) {
        self.lock().watch = on;
    }

    /// Re-measures the [`UNMEASURED`] reservation if the pool watches the process
    /// and it has not looked for [`WATCH_INTERVAL`].
    fn watch(&self) {
        {
            let mut st = self.lock();
            if !st.watch || st.watched_at.is_some_and(|t| t.elapsed() < WATCH_INTERVAL) {
                return;
            }
            st.watched_at = Some(Instant::now());
        }
        let Some(rss) = resident_bytes() else {
            return;
        };
        let mut guard = self.lock();
        let st = &mut *guard;
        let held = Self::held(st);
        let Some(c) = st.consumers.get_mut(&0).filter(|c| &*c.name == UNMEASURED) else {
            return;
        };
        let others = st.explicit - c.bytes + held;
        // Measured, it needs less room kept for what it has not seen yet: only
        // for what grows between two looks.
        let floor = unmeasured_bytes(self.limit) / 4;
        let unmeasured = rss.saturating_sub(others);
        let want = unmeasured.clamp(floor, max_unmeasured_bytes(self.limit));
        let old = c.bytes;
        c.bytes = want;
        st.explicit = st.explicit - old + want;
        st.reused = 0;
        let trim = unmeasured > max_unmeasured_bytes(self.limit)
            && st.trimmed_at.is_none_or(|t| t.elapsed() >= TRIM_INTERVAL);
        if trim {
            st.trimmed_at = Some(Instant::now());
            drop(guard);
            release_free_heap();
        }
    }

    /// Re-measures the [`UNMEASURED`] reservation now if the pool watches the
    /// process, however recently it looked.
    fn look_now(&self) {
        self.lock().watched_at = None;
        self.watch();
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An empty reservation named `name` (e.g. "shuffle buffers").
    pub fn reservation(self: &Arc<Self>, name: impl Into<Arc<str>>) -> MemoryReservation {
        self.new_reservation(name.into(), false, 0)
    }

    /// An empty reservation for a running task; tasks are counted so that one
    /// waiting inside [`reserve`] knows whether anyone else can free memory.
    /// `pinned` is the bytes of the held results the task takes as inputs: no
    /// cache can page them out while it runs, so grants leave room for them.
    pub(crate) fn task_reservation(
        self: &Arc<Self>,
        name: Arc<str>,
        pinned: u64,
    ) -> MemoryReservation {
        self.new_reservation(name, true, pinned)
    }

    fn new_reservation(
        self: &Arc<Self>,
        name: Arc<str>,
        task: bool,
        pinned: u64,
    ) -> MemoryReservation {
        let mut st = self.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.tasks += usize::from(task);
        st.pinned += pinned;
        st.consumers.insert(
            id,
            Consumer {
                name,
                bytes: 0,
                task,
                pinned,
            },
        );
        MemoryReservation {
            pool: self.clone(),
            id,
            bytes: 0,
        }
    }

    /// Counts `cache`'s resident bytes in the account and sets its budget to what
    /// the rest leaves (at most `cap`). Forgotten once the cache is dropped.
    pub fn register_cache(&self, name: impl Into<Arc<str>>, cache: Weak<dyn HeldCache>, cap: u64) {
        let mut st = self.lock();
        st.caches.retain(|c| c.cache.strong_count() > 0);
        st.caches.push(RegisteredCache {
            name: name.into(),
            cache,
            cap,
        });
    }

    fn held(st: &PoolState) -> u64 {
        st.caches
            .iter()
            .filter_map(|c| c.cache.upgrade())
            .map(|c| c.held_bytes())
            .sum()
    }

    /// Bytes reserved now: explicit reservations plus what the caches hold.
    pub fn reserved(&self) -> u64 {
        let st = self.lock();
        st.explicit + Self::held(&st)
    }

    /// Bytes not yet reserved by explicit reservations nor held as running tasks'
    /// inputs (the caches can give the rest of theirs).
    pub fn unreserved(&self) -> u64 {
        let st = self.lock();
        self.limit.saturating_sub(st.explicit + st.pinned)
    }

    /// Bytes free without paging anything out.
    pub fn free_now(&self) -> u64 {
        let st = self.lock();
        self.limit.saturating_sub(st.explicit + Self::held(&st))
    }

    /// The peak since the pool was made or [`reset_peak`](Self::reset_peak).
    pub fn peak(&self) -> MemoryPeak {
        self.lock().peak.clone()
    }

    /// Starts measuring the peak afresh (at the start of a computation).
    pub fn reset_peak(&self) {
        let mut st = self.lock();
        st.peak = MemoryPeak::default();
        Self::note_locked(&mut st);
    }

    /// Records the current total if it is a new peak (the caches' resident bytes
    /// change on their own, so the scheduler calls this after storing a result).
    pub fn note_peak(&self) {
        Self::note_locked(&mut self.lock());
    }

    fn note_locked(st: &mut PoolState) {
        let held: Vec<(Arc<str>, u64)> = st
            .caches
            .iter()
            .filter_map(|c| c.cache.upgrade().map(|h| (c.name.clone(), h.held_bytes())))
            .collect();
        let total = st.explicit + held.iter().map(|(_, b)| b).sum::<u64>() - st.reused;
        if total <= st.peak.bytes && st.peak.bytes > 0 {
            return;
        }
        let mut by_name: BTreeMap<String, (u64, usize)> = BTreeMap::new();
        let reused = st.reused;
        let shown = |id: &u64, c: &Consumer| {
            if *id == 0 {
                c.bytes - reused.min(c.bytes)
            } else {
                c.bytes
            }
        };
        for (id, c) in st.consumers.iter().filter(|(id, c)| shown(id, c) > 0) {
            // Tasks are named after their layer ("agg-combine-7"): sum a layer.
            let name = if c.task {
                format!("task {}", c.name)
            } else {
                c.name.to_string()
            };
            let e = by_name.entry(name).or_default();
            e.0 += shown(id, c);
            e.1 += 1;
        }
        for (name, bytes) in held.into_iter().filter(|(_, b)| *b > 0) {
            by_name.entry(name.to_string()).or_default().0 += bytes;
        }
        let mut consumers: Vec<(String, u64)> = by_name
            .into_iter()
            .map(|(name, (bytes, n))| {
                if n > 1 {
                    (format!("{name} ×{n}"), bytes)
                } else {
                    (name, bytes)
                }
            })
            .collect();
        consumers.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        consumers.truncate(4);
        st.peak = MemoryPeak {
            bytes: total,
            consumers,
        };
    }

    /// Grants `bytes` more to reservation `id` if the explicit reservations and the
    /// running tasks' inputs still fit in the limit (the caches page the rest out
    /// at the next [`rebalance`](Self::rebalance)); else returns how many bytes
    /// could be granted.
    fn try_grow(&self, id: u64, bytes: u64) -> std::result::Result<(), u64> {
        let mut st = self.lock();
        let free = self.limit.saturating_sub(st.explicit + st.pinned);
        if bytes > free {
            return Err(free);
        }
        // No peak yet: the caches page out before the bytes are used
        // ([`rebalance`](Self::rebalance) notes the peak after).
        self.add(&mut st, id, bytes);
        Ok(())
    }

    fn add(&self, st: &mut PoolState, id: u64, bytes: u64) {
        let Some(c) = st.consumers.get_mut(&id) else {
            return;
        };
        c.bytes += bytes;
        st.explicit += bytes;

        if st.watch && id != 0 {
            // See [`PoolState::reused`].
            let surplus = st.consumers.get(&0).map_or(0, |u| {
                u.bytes.saturating_sub(unmeasured_bytes(self.limit) / 4)
            });
            st.reused = (st.reused + bytes).min(surplus);
        }
    }

    fn grow(&self, id: u64, bytes: u64) {
        let mut st = self.lock();
        self.add(&mut st, id, bytes);
        Self::note_locked(&mut st);
    }

    /// Sets reservation `a` to `a_bytes` and `b` to `b_bytes` in one step, so that
    /// bytes moving from one to the other are never counted twice (nor granted to
    /// someone else in between).
    fn set_both(&self, a: u64, a_bytes: u64, b: u64, b_bytes: u64) {
        let shrank = {
            let mut guard = self.lock();
            let st = &mut *guard;
            let mut shrank = false;
            for (id, bytes) in [(a, a_bytes), (b, b_bytes)] {
                let Some(c) = st.consumers.get_mut(&id) else {
                    continue;
                };
                let old = c.bytes;
                if bytes < old {
                    c.bytes = bytes;
                    st.explicit -= old - bytes;
                    shrank = true;
                }
            }
            for (id, bytes) in [(a, a_bytes), (b, b_bytes)] {
                let old = st.consumers.get(&id).map_or(bytes, |c| c.bytes);
                if bytes > old {
                    self.add(st, id, bytes - old);
                }
            }
            Self::note_locked(st);
            shrank
        };
        if shrank {
            self.released.notify_all();
        }
    }

    /// Shrinks reservation `id` by `bytes`: memory `freed` (given back to the
    /// allocator) or handed to a consumer the account already counts.
    fn shrink(&self, id: u64, bytes: u64, freed: bool) {
        {
            let mut st = self.lock();
            if let Some(c) = st.consumers.get_mut(&id) {
                let b = bytes.min(c.bytes);
                c.bytes -= b;
                st.explicit -= b;
                if freed {
                    self.freed(&mut st, b);
                }
            }
        }
        self.released.notify_all();
    }

    fn release(&self, id: u64) {
        {
            let mut st = self.lock();
            if let Some(c) = st.consumers.remove(&id) {
                st.explicit -= c.bytes;
                st.pinned -= c.pinned;
                st.tasks -= usize::from(c.task);
                self.freed(&mut st, c.bytes);
            }
        }
        self.released.notify_all();
    }

    /// Bytes a consumer freed stay counted, as [`UNMEASURED`], until the pool
    /// next looks at the process (within [`WATCH_INTERVAL`]): memory freed is
    /// the allocator's, not the system's, until the process shows it gone. The
    /// allocator keeps small blocks' pages and serves a large buffer from fresh
    /// pages, so room granted at once on a release was room the process had not
    /// given back: q2 at K=1e5 at 64 MB reached 1.27x its limit this way when
    /// the running tables were taken out and the finalize tasks started, the
    /// account 10 MiB under the process. At most up to the unmeasured's cap.
    fn freed(&self, st: &mut PoolState, bytes: u64) {
        if !st.watch || bytes == 0 {
            return;
        }
        let cap = max_unmeasured_bytes(self.limit);
        let Some(c) = st.consumers.get_mut(&0).filter(|c| &*c.name == UNMEASURED) else {
            return;
        };
        let kept = bytes.min(cap.saturating_sub(c.bytes));
        c.bytes += kept;
        st.explicit += kept;
    }

    /// Sets every cache's budget to what the limit leaves it (the explicit
    /// reservations and the other caches' resident bytes taken off, at most its cap),
    /// paging out now what no longer fits. Call it outside other locks: it writes
    /// files. Errors name the spill folder (a full disk, say).
    pub fn rebalance(&self) -> Result<()> {
        self.watch();
        let budgets: Vec<(Arc<dyn HeldCache>, u64)> = {
            let st = self.lock();
            let caches: Vec<(Arc<dyn HeldCache>, u64, u64)> = st
                .caches
                .iter()
                .filter_map(|c| {
                    c.cache.upgrade().map(|h| {
                        let held = h.held_bytes();
                        (h, held, c.cap)
                    })
                })
                .collect();
            let all_held: u64 = caches.iter().map(|c| c.1).sum();
            caches
                .into_iter()
                .map(|(h, held, cap)| {
                    let others = all_held - held;
                    let room = self.limit.saturating_sub(st.explicit + others);
                    (h, room.min(cap))
                })
                .collect()
        };
        let mut first = Ok(());
        for (cache, budget) in budgets {
            if let Err(e) = cache.set_budget(budget) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        self.note_peak();
        first
    }
}

/// Bytes reserved by one consumer; released when dropped.
pub struct MemoryReservation {
    pool: Arc<MemoryPool>,
    id: u64,
    bytes: u64,
}

impl std::fmt::Debug for MemoryReservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryReservation")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl MemoryReservation {
    /// Bytes held.
    pub fn size(&self) -> u64 {
        self.bytes
    }

    /// The pool this reservation draws on.
    pub fn pool(&self) -> &Arc<MemoryPool> {
        &self.pool
    }

    /// Grows by `bytes` if the explicit reservations still fit in the limit (the
    /// caches make room at the next [`MemoryPool::rebalance`]); else returns the
    /// bytes that were free.
    pub fn try_grow(&mut self, bytes: u64) -> std::result::Result<(), u64> {
        self.pool.try_grow(self.id, bytes)?;
        self.bytes += bytes;
        Ok(())
    }

    /// Grows by `bytes` whatever the limit: for memory already allocated (a result
    /// measured after the fact), so that the account tells the truth.
    pub fn grow(&mut self, bytes: u64) {
        self.pool.grow(self.id, bytes);
        self.bytes += bytes;
    }

    /// Shrinks by `bytes` (at most to zero): memory freed.
    pub fn shrink(&mut self, bytes: u64) {
        let b = bytes.min(self.bytes);
        self.pool.shrink(self.id, b, true);
        self.bytes -= b;
    }

    /// Shrinks by `bytes` (at most to zero) that another consumer the account
    /// counts now holds (a task's result stored in a cache, bytes moved to a
    /// reservation of their own), not freed.
    pub fn hand_on(&mut self, bytes: u64) {
        let b = bytes.min(self.bytes);
        self.pool.shrink(self.id, b, false);
        self.bytes -= b;
    }

    /// Grows (unconditionally) or shrinks to `bytes`.
    pub fn resize(&mut self, bytes: u64) {
        if bytes > self.bytes {
            self.grow(bytes - self.bytes);
        } else {
            self.shrink(self.bytes - bytes);
        }
    }
}

impl Drop for MemoryReservation {
    fn drop(&mut self) {
        self.pool.release(self.id);
    }
}

thread_local! {
    /// The reservations of the tasks running on this thread, innermost last (a
    /// worker that waits inside rayon may run another task in between).
    static TASKS: RefCell<Vec<MemoryReservation>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `reservation` as the running task's, for [`reserve`]; returns the
/// reservation (grown by whatever the operators reserved) with `f`'s answer.
pub(crate) fn with_task<T>(
    reservation: MemoryReservation,
    f: impl FnOnce() -> T,
) -> (T, MemoryReservation) {
    TASKS.with(|t| t.borrow_mut().push(reservation));
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            // On unwind too, so a panicking task leaves no stale reservation behind.
            let _ = TASKS.try_with(|t| {
                t.borrow_mut().pop();
            });
        }
    }
    let guard = Pop;
    let out = f();
    std::mem::forget(guard);
    let r = TASKS.with(|t| t.borrow_mut().pop());
    (out, r.expect("with_task pushed a reservation"))
}

/// How long a task inside [`reserve`] waits for others to release before looking
/// again (it is also woken by every release).
const RESERVE_POLL: Duration = Duration::from_millis(20);

/// Reserves `bytes` more for the running task, on behalf of `operator` (e.g. "join
/// build side"), before the operator allocates them; they are released when the
/// task ends. A refusal pages the caches out, then waits while other tasks run and
/// can release; when nothing else can shrink, it is lent what the account keeps
/// for the unmeasured beyond [`unmeasured_bytes`], and past that it fails with
/// [`Error::MemoryExhausted`] naming `operator` (under a limit below
/// [`MIN_MEMORY_LIMIT`], which only tests can set, it grants the bytes instead).
/// Outside a scheduled task (direct calls, tests) it does nothing.
pub fn reserve(operator: &str, bytes: u64) -> Result<()> {
    reserve_waiting(operator, bytes, false)
}

/// As [`reserve`], but when nothing else can shrink the bytes are counted anyway
/// (the limit exceeded) instead of failing: for memory an operator must hold to
/// finish (an answer it has made and must merge), which waits for other tasks'
/// memory rather than grow past the limit beside them.
pub fn reserve_or_exceed(operator: &str, bytes: u64) -> Result<()> {
    reserve_waiting(operator, bytes, true)
}

fn reserve_waiting(operator: &str, bytes: u64, exceed: bool) -> Result<()> {
    let Some(pool) = TASKS.with(|t| t.borrow().last().map(|r| r.pool.clone())) else {
        return Ok(());
    };
    let mut looked = false;
    let result = loop {
        let granted = TASKS.with(|t| {
            let mut t = t.borrow_mut();
            let r = t.last_mut().expect("checked above");
            r.try_grow(bytes).is_ok()
        });
        if granted {
            break pool.rebalance();
        }
        let mut st = pool.lock();
        // Everyone else running is waiting too (or nobody else runs): no one will
        // release, so waiting longer would only hang.
        let others = st.tasks.saturating_sub(1 + st.waiting);
        if others == 0 {
            if !looked && pool.limit >= MIN_MEMORY_LIMIT {
                // First the heap's free pages go back to the system and the
                // account looks at the process again (it may hold far less than
                // at the last look); then the bytes are asked for again.
                looked = true;
                drop(st);
                release_free_heap();
                pool.look_now();
                continue;
            }
            // Granted past the limit: when the caller asked to exceed rather than
            // fail; under a limit below the minimum (tests force the spill paths
            // on a few kilobytes: an operator gets its bytes rather than fail
            // there); or when the bytes fit in what the account keeps for the
            // unmeasured beyond its base, an estimate (the allocator's
            // free-but-kept pages among it), not a consumer.
            let lend = st
                .consumers
                .get(&0)
                .filter(|c| &*c.name == UNMEASURED)
                .map_or(0, |c| c.bytes.saturating_sub(unmeasured_bytes(pool.limit)));
            let free = pool.limit.saturating_sub(st.explicit + st.pinned);
            let tiny = pool.limit < MIN_MEMORY_LIMIT;
            if exceed || tiny || bytes <= free + lend {
                drop(st);
                TASKS.with(|t| {
                    t.borrow_mut()
                        .last_mut()
                        .expect("checked above")
                        .grow(bytes)
                });
                break pool.rebalance();
            }
            let reserved = st.explicit;
            drop(st);
            break Err(Error::MemoryExhausted {
                operator: operator.to_string(),
                needed: bytes,
                reserved,
                limit: pool.limit,
                hint: "raise --memory-limit, or read smaller partitions (--blocksize)".into(),
            });
        }
        st.waiting += 1;
        let (mut st, _) = pool
            .released
            .wait_timeout(st, RESERVE_POLL)
            .unwrap_or_else(PoisonError::into_inner);
        st.waiting -= 1;
        drop(st);
        // What others freed is counted until the account looks again.
        pool.watch();
    };
    result
}

/// Reserves `bytes` more for the running task if they fit now (the caches page out
/// to make room), without waiting: `Ok(false)` tells an operator that can shrink
/// what it holds (spill a partitioned hash table, write a sorted run, flush
/// buffered pieces) to do so and try again, calling [`reserve`] when it has nothing
/// left to give. Outside a scheduled task it grants everything. Errors only name
/// the spill folder, when paging the caches out fails.
pub fn try_reserve(bytes: u64) -> Result<bool> {
    let Some(pool) = TASKS.with(|t| t.borrow().last().map(|r| r.pool.clone())) else {
        return Ok(true);
    };
    let granted = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let r = t.last_mut().expect("checked above");
        r.try_grow(bytes).is_ok()
    });
    if granted {
        pool.rebalance()?;
    }
    Ok(granted)
}

/// Reserves `bytes` for something that outlives the running task (a broadcast
/// hash table every probe task shares) if they fit now ([`try_reserve`]), then
/// moves them to a reservation named `name` that the caller holds: dropping it
/// releases them. `Ok(None)` when they do not fit; `Ok(Some(None))` outside a
/// scheduled task.
pub fn try_reserve_shared(name: &str, bytes: u64) -> Result<Option<Option<MemoryReservation>>> {
    let Some(pool) = TASKS.with(|t| t.borrow().last().map(|r| r.pool.clone())) else {
        return Ok(Some(None));
    };
    if !try_reserve(bytes)? {
        return Ok(None);
    }
    Ok(Some(Some(share(&pool, name, bytes))))
}

/// An empty reservation named `name` on the running task's account, for memory
/// that outlives the task (a running table that later tasks fold into); `None`
/// outside a scheduled task. It grows with [`MemoryReservation::resize`] once
/// the memory is allocated, having been reserved by the task beforehand.
pub fn outliving_reservation(name: &str) -> Option<MemoryReservation> {
    TASKS.with(|t| {
        t.borrow()
            .last()
            .map(|r| r.pool.reservation(name.to_string()))
    })
}

/// Moves `bytes` the running task reserved to a new reservation named `name`.
fn share(pool: &Arc<MemoryPool>, name: &str, bytes: u64) -> MemoryReservation {
    let mut held = pool.reservation(name.to_string());
    // Moved, not freed: counted once, by the new reservation.
    TASKS.with(|t| {
        if let Some(r) = t.borrow_mut().last_mut() {
            r.hand_on(bytes);
        }
    });
    held.grow(bytes);
    held
}

/// Bytes a [`try_reserve`] of the running task could be granted now (the limit
/// less every explicit reservation; the caches page out to make room), so that an
/// operator that can work in pieces sizes them to fit. `u64::MAX` outside a
/// scheduled task.
pub fn reservable() -> u64 {
    TASKS
        .with(|t| t.borrow().last().map(|r| r.pool.unreserved()))
        .unwrap_or(u64::MAX)
}

/// The largest answer of a groupby with many groups that is gathered into one
/// partition (sorted by key as a whole); above it each part's answer is a partition
/// of its own, so the answer is never held whole: a quarter of the limit, since
/// the merge holds the parts and the merged copy, and at most 64 MiB (about a
/// million groups), because the merge is a serial pass over the whole answer: q10's
/// 1e7 groups (706 MiB) took 21 s gathered at the default limit against 8.8 s as
/// one partition per part at 200 MB.
pub fn gathered_answer_bytes(limit: u64) -> u64 {
    (limit / 4).min(MAX_GATHERED_ANSWER_BYTES)
}

/// See [`gathered_answer_bytes`].
const MAX_GATHERED_ANSWER_BYTES: u64 = 64 << 20;

/// The bytes the running task has reserved so far (its admission estimate plus what
/// its operators reserved); 0 outside a scheduled task.
pub fn task_reserved() -> u64 {
    TASKS.with(|t| t.borrow().last().map_or(0, |r| r.size()))
}

/// Grows the running task's reservation to at least `bytes`, the size of a result
/// it just made (already allocated, so granted whatever the limit).
pub(crate) fn note_result(bytes: u64) {
    TASKS.with(|t| {
        if let Some(r) = t.borrow_mut().last_mut() {
            if bytes > r.size() {
                r.grow(bytes - r.size());
            }
        }
    });
}

/// After the running task's first step: the `admitted` bytes it was admitted with
/// (an estimate of its working set, made before it ran: a read's block, a merge's
/// inputs) give way to what the step left, its result of `bytes`. The reservation
/// becomes what the operators reserved beyond the estimate, or the result when
/// that is larger: a read that streamed its block in pieces holds only its
/// decoded columns, and counting the whole block until the task ended made the
/// account's peak twice the process's on short queries.
pub(crate) fn settle_admission(admitted: u64, bytes: u64) {
    TASKS.with(|t| {
        if let Some(r) = t.borrow_mut().last_mut() {
            let target = r.size().saturating_sub(admitted).max(bytes);
            r.resize(target);
        }
    });
}

/// Counts `bytes` that the running task has already allocated (an answer built
/// piece by piece), whatever the limit, so that the account tells the truth and
/// the caches make room; released when the task ends.
pub fn allocated(bytes: u64) -> Result<()> {
    let Some(pool) = TASKS.with(|t| {
        t.borrow_mut().last_mut().map(|r| {
            r.grow(bytes);
            r.pool.clone()
        })
    }) else {
        return Ok(());
    };
    pool.rebalance()
}

/// Moves memory between the running task and `held` (a reservation that outlives
/// the task: a running table) in one step: `held` becomes `bytes`, and the task's
/// reservation changes by `task_delta` (what it reserved for `held`'s growth goes
/// back, or what `held` gave up becomes the task's, as a result it now holds).
/// Done in two steps, the bytes moving were counted twice in between, and the
/// account's peak stood above the limit with nothing over it. Growth past what
/// was reserved is counted whatever the limit (the memory is allocated), and the
/// caches make room. Outside a scheduled task only `held` changes.
pub fn hand_over(held: &mut MemoryReservation, bytes: u64, task_delta: i64) -> Result<()> {
    let grew = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let Some(task) = t.last_mut().filter(|r| Arc::ptr_eq(&r.pool, &held.pool)) else {
            return None;
        };
        let task_bytes = task.bytes.saturating_add_signed(task_delta);
        let grew = task_bytes + bytes > task.bytes + held.bytes;
        held.pool.set_both(task.id, task_bytes, held.id, bytes);
        task.bytes = task_bytes;
        held.bytes = bytes;
        Some(grew)
    });
    match grew {
        Some(true) => held.pool.rebalance(),
        Some(false) => Ok(()),
        None => {
            held.resize(bytes);
            Ok(())
        }
    }
}

/// Gives back `bytes` of the running task's reservation once an operator has freed
/// what it reserved with [`reserve`] before the task ends.
pub fn release(bytes: u64) {
    TASKS.with(|t| {
        if let Some(r) = t.borrow_mut().last_mut() {
            r.shrink(bytes);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn defaults_follow_the_limit() {
        let p = MemoryPolicy {
            limit: 1 << 30,
            spill_dir: PathBuf::from("/tmp"),
        };
        assert_eq!(p.default_blocksize(2), 16 << 20);
        assert_eq!(p.shuffle_buffer_bytes(), 64 << 20);
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
        assert_eq!(small.shuffle_buffer_bytes(), 64 << 10);
        let big = MemoryPolicy {
            limit: 64 << 30,
            ..p.clone()
        };
        assert_eq!(big.default_blocksize(2), 16 << 20);
        assert!(total_memory() > 1 << 20);
    }

    #[test]
    fn the_pool_keeps_room_for_what_it_cannot_measure_and_for_running_inputs() {
        let limit = 64 << 20;
        let pool = MemoryPool::new(limit);
        let unmeasured = unmeasured_bytes(limit);
        assert_eq!(unmeasured, 8 << 20);
        assert_eq!(pool.reserved(), unmeasured);
        assert_eq!(unmeasured_bytes(16 << 20), 4 << 20);
        assert_eq!(unmeasured_bytes(1 << 20), 0, "test limits keep no room");
        // A task holding 20 MiB of inputs leaves 36 MiB to grant.
        let mut t = pool.task_reservation("finalize".into(), 20 << 20);
        assert_eq!(pool.unreserved(), 36 << 20);
        assert_eq!(t.try_grow(40 << 20), Err(36 << 20));
        t.try_grow(36 << 20).unwrap();
        drop(t);
        assert_eq!(pool.unreserved(), limit - unmeasured);
        pool.note_peak();
        assert_eq!(
            pool.peak().consumers[0],
            (UNMEASURED.to_string(), unmeasured)
        );
    }

    #[test]
    fn a_watching_pool_counts_what_the_process_holds_beyond_its_reservations() {
        let limit = 64 << 20;
        let blind = MemoryPool::new(limit);
        let watching = MemoryPool::new(limit);
        watching.watch_process(true);
        // 48 MiB that no consumer reserved, touched so that they are resident.
        let unreserved = std::hint::black_box(vec![1u8; 48 << 20]);
        assert!(resident_bytes().unwrap() >= 48 << 20);
        blind.rebalance().unwrap();
        watching.rebalance().unwrap();
        assert_eq!(blind.reserved(), unmeasured_bytes(limit));
        // The unmeasured reservation grew to its cap (the process holds more than
        // half the limit that nobody reserved), and grants shrink with it.
        assert_eq!(watching.reserved(), limit / 2);
        assert_eq!(watching.unreserved(), limit - limit / 2);
        watching.note_peak();
        assert_eq!(
            watching.peak().consumers[0],
            (UNMEASURED.to_string(), limit / 2)
        );
        drop(unreserved);
    }

    #[test]
    fn malloc_is_held_tight_only_under_a_limit_below_the_default() {
        // Without a tight limit: glibc's defaults, with huge pages.
        let roomy = "glibc.malloc.hugetlb=1";
        assert_eq!(malloc_tunables(None), roomy);
        let default = MemoryPolicy::machine_default().limit;
        assert_eq!(malloc_tunables(Some(default)), roomy);
        let tight = malloc_tunables(Some(64 << 20));
        assert!(tight.contains("glibc.malloc.arena_max=1"), "{tight}");
        assert!(tight.contains("mmap_threshold=262144"), "{tight}");
        assert!(!tight.contains("hugetlb"), "{tight}");
        if default > 2 << 30 {
            let roomy = malloc_tunables(Some(1 << 30));
            assert!(roomy.contains("mmap_threshold=33554432"), "{roomy}");
            assert!(roomy.contains("hugetlb=1"), "{roomy}");
        }
    }

    #[test]
    fn a_limit_below_the_minimum_is_refused_naming_it() {
        let p = MemoryPolicy {
            limit: 2 << 20,
            spill_dir: PathBuf::from("/tmp"),
        };
        let msg = p.validate().unwrap_err().to_string();
        assert!(
            msg.contains("2.0 MiB") && msg.contains("minimum is 4.0 MiB"),
            "{msg}"
        );
        let ok = MemoryPolicy {
            limit: MIN_MEMORY_LIMIT,
            ..p
        };
        ok.validate().unwrap();
    }

    #[test]
    fn reservations_add_up_and_are_released_on_drop() {
        let pool = MemoryPool::new(1000);
        let mut a = pool.reservation("a");
        let mut b = pool.reservation("b");
        a.try_grow(600).unwrap();
        assert_eq!(b.try_grow(500), Err(400));
        b.try_grow(400).unwrap();
        assert_eq!(pool.reserved(), 1000);
        assert_eq!(
            pool.peak().bytes,
            0,
            "a grant is no peak until the caches made room"
        );
        pool.note_peak();
        a.shrink(100);
        assert_eq!(pool.reserved(), 900);
        drop(a);
        assert_eq!(pool.reserved(), 400);
        b.resize(50);
        assert_eq!(pool.reserved(), 50);
        let peak = pool.peak();
        assert_eq!(peak.bytes, 1000);
        assert_eq!(
            peak.consumers,
            vec![("a".to_string(), 600), ("b".to_string(), 400)]
        );
        drop(b);
        assert_eq!(pool.reserved(), 0);
    }

    #[test]
    fn a_grant_pages_the_caches_out_to_make_room() {
        let spill = tempfile::tempdir().unwrap();
        let pool = MemoryPool::new(64 << 10);
        let cache = Arc::new(SpillCache::<Value>::new(spill.path(), 64 << 10).unwrap());
        let weak: Weak<dyn HeldCache> = Arc::downgrade(&(cache.clone() as Arc<dyn HeldCache>));
        pool.register_cache("results held", weak, u64::MAX);
        for k in 0..6 {
            let a = arrow::array::Int64Array::from_iter_values(0..1000);
            let b = arrow::array::RecordBatch::try_from_iter([("v", Arc::new(a) as _)]).unwrap();
            cache.put(k, Arc::new(Value::Batch(b))).unwrap();
        }
        let held = cache.resident_bytes() as u64;
        assert!(held > 40 << 10, "{held}");
        let mut task = pool.task_reservation("task".into(), 0);
        task.try_grow(40 << 10).unwrap();
        pool.rebalance().unwrap();
        assert!(pool.reserved() <= 64 << 10, "{pool:?}");
        assert!(cache.stats().spilled_values > 0);
        // What the explicit reservations cannot fit is refused.
        assert_eq!(task.try_grow(30 << 10), Err(24 << 10));
    }

    #[test]
    fn reserve_fails_naming_the_operator_when_no_one_can_release() {
        let pool = MemoryPool::new(MIN_MEMORY_LIMIT);
        let r = pool.task_reservation("join-build-0".into(), 0);
        let (out, r) = with_task(r, || {
            reserve("join build side", 2 << 20)?;
            reserve("join build side", 3 << 20)
        });
        let msg = out.unwrap_err().to_string();
        assert!(
            msg.contains("join build side needs 3.0 MiB more, but 3.0 MiB of the 4.0 MiB")
                && msg.contains("--memory-limit"),
            "{msg}"
        );
        assert_eq!(r.size(), 2 << 20);
        // Under a limit below the minimum (tests), the bytes are granted instead.
        let tiny = MemoryPool::new(64 << 10);
        let (out, r) = with_task(tiny.task_reservation("t".into(), 0), || {
            reserve("shuffle read buffers", 100 << 10)
        });
        out.unwrap();
        assert_eq!(r.size(), 100 << 10);
        // Outside a task, reserving is free.
        reserve("anything", u64::MAX).unwrap();
    }

    /// A pool of `limit` that watches the process, having looked at it while
    /// it held `held` bytes (touched, so resident) that no consumer reserved,
    /// more than half the limit: its unmeasured reservation stands at its cap.
    /// Returns the bytes too, for the test to let go of when it chooses.
    fn watching_pool_at_its_cap(limit: u64, held: usize) -> (Arc<MemoryPool>, Vec<u8>) {
        let pool = MemoryPool::new(limit);
        pool.watch_process(true);
        let unreserved = std::hint::black_box(vec![1u8; held]);
        pool.rebalance().unwrap();
        assert_eq!(pool.reserved(), limit / 2);
        (pool, unreserved)
    }

    #[test]
    fn freed_bytes_stay_counted_until_the_pool_looks_at_the_process_again() {
        let limit = 8 << 30;
        let pool = MemoryPool::new(limit);
        pool.watch_process(true);
        pool.rebalance().unwrap();
        // The process was looked at: what it holds, far under the cap of 4 GiB.
        let base = pool.reserved();
        assert!(base < 1 << 30, "{base}");
        let gib = 1u64 << 30;
        let mut r = pool.reservation("table");
        r.grow(2 * gib);
        // A result handed to a cache is counted there, not freed.
        r.hand_on(gib / 2);
        assert_eq!(pool.reserved(), base + 3 * gib / 2);
        // Freed: counted as unmeasured until the next look (the allocator may
        // keep the pages), so nobody is granted them yet.
        r.shrink(gib / 2);
        assert_eq!(pool.reserved(), base + 3 * gib / 2);
        drop(r);
        assert_eq!(pool.reserved(), base + 3 * gib / 2);
        let mut other = pool.reservation("sort");
        assert!(other.try_grow(limit - base - gib).is_err());
        // The process never held the bytes: the next look gives them back.
        pool.look_now();
        assert!(pool.reserved() < base + (64 << 20), "{}", pool.reserved());
        other.try_grow(limit - base - gib).unwrap();
        drop(other);
        // A pool that does not watch the process grants freed bytes at once.
        let blind = MemoryPool::new(limit);
        let base = blind.reserved();
        let mut r = blind.reservation("table");
        r.grow(gib);
        drop(r);
        assert_eq!(blind.reserved(), base);
    }

    #[test]
    fn a_lone_grant_past_what_the_account_saw_looks_at_the_process_again_first() {
        let limit = 2 << 30;
        // 1.25 GiB that no consumer reserved: the unmeasured reservation stands
        // at its cap, half the limit (1 GiB), 768 MiB past its base of 256 MiB.
        let (pool, unreserved) = watching_pool_at_its_cap(limit, 1280 << 20);
        let seen_free = pool.unreserved();
        let lend = limit / 2 - unmeasured_bytes(limit);
        // The process lets them go before the account looks again.
        drop(unreserved);
        // Alone, a task asks for more than the account saw free and would lend
        // (1800 MiB against 1 GiB + 768 MiB). It looks at the process again,
        // which holds far less now, and grants the bytes within the limit.
        // Before, the stale look refused them.
        let ask = seen_free + lend + (8 << 20);
        let (out, r) = with_task(pool.task_reservation("sort".into(), 0), || {
            reserve("sort output", ask)
        });
        out.unwrap();
        assert_eq!(r.size(), ask);
        assert!(pool.reserved() <= limit, "reserved {}", pool.reserved());
        drop(r);
    }

    #[test]
    fn reserve_alone_is_lent_the_unmeasured_beyond_its_base_and_no_more() {
        let limit = 64 << 20;
        // 48 MiB that no consumer reserved: the unmeasured reservation stands at
        // its cap, half the limit, 24 MiB past its base of 8 MiB.
        let (pool, unreserved) = watching_pool_at_its_cap(limit, 48 << 20);
        let lend = limit / 2 - unmeasured_bytes(limit);
        let free = pool.unreserved();
        // Alone, a reservation past what is free but within the lendable part
        // is granted (before, it was refused)...
        let (out, r) = with_task(pool.task_reservation("sort".into(), 0), || {
            reserve("sort output", free + lend / 2)
        });
        out.unwrap();
        assert_eq!(r.size(), free + lend / 2);
        drop(r);
        // ... and one past that too is refused, naming the operator.
        let (out, _) = with_task(pool.task_reservation("sort".into(), 0), || {
            reserve("sort output", free + lend + (8 << 20))
        });
        assert!(out.unwrap_err().to_string().contains("sort output"));
        drop(unreserved);
    }

    #[test]
    fn reserve_waits_for_another_task_to_release() {
        let pool = MemoryPool::new(1 << 20);
        let mut other = pool.task_reservation("other".into(), 0);
        other.try_grow(900 << 10).unwrap();
        let p = pool.clone();
        let waiter = std::thread::spawn(move || {
            let r = p.task_reservation("waiter".into(), 0);
            with_task(r, || reserve("sort buffer", 512 << 10)).0
        });
        std::thread::sleep(Duration::from_millis(60));
        drop(other);
        waiter.join().unwrap().unwrap();
    }

    #[test]
    fn reserve_or_exceed_waits_while_others_run_then_counts_the_bytes() {
        let pool = MemoryPool::new(MIN_MEMORY_LIMIT);
        let base = pool.reserved();
        let room = pool.limit() - base;
        // Another task holds all but 1 MiB: the answer's 2 MiB wait for it.
        let mut other = pool.task_reservation("other".into(), 0);
        other.try_grow(room - (1 << 20)).unwrap();
        let p = pool.clone();
        let released = Arc::new(AtomicBool::new(false));
        let seen = released.clone();
        let waiter = std::thread::spawn(move || {
            let r = p.task_reservation("finalize".into(), 0);
            let (out, r) = with_task(r, || reserve_or_exceed("merged answer", 2 << 20));
            (out, r.size(), seen.load(Ordering::SeqCst))
        });
        std::thread::sleep(Duration::from_millis(60));
        released.store(true, Ordering::SeqCst);
        drop(other);
        let (out, size, after_release) = waiter.join().unwrap();
        out.unwrap();
        assert!(after_release, "granted before the other task released");
        assert_eq!(size, 2 << 20);
        // Alone and past the limit: counted, not refused (reserve would fail).
        let (out, r) = with_task(pool.task_reservation("alone".into(), 0), || {
            reserve_or_exceed("merged answer", room + (1 << 20))
        });
        out.unwrap();
        assert_eq!(r.size(), room + (1 << 20));
        assert!(pool.reserved() > pool.limit());
    }

    #[test]
    fn hand_over_moves_bytes_without_counting_them_twice() {
        let pool = MemoryPool::new(MIN_MEMORY_LIMIT);
        let base = pool.reserved();
        let mut table = pool.reservation("running table");
        let r = pool.task_reservation("chunk".into(), 0);
        let (out, r) = with_task(r, || {
            // The task reserves the table's growth, then hands it over.
            reserve("running table", 1 << 20)?;
            hand_over(&mut table, 1 << 20, -(1 << 20))?;
            assert_eq!(task_reserved(), 0);
            // Taken out as a partial: the table's bytes become the task's.
            hand_over(&mut table, 0, 1 << 20)?;
            assert_eq!(task_reserved(), 1 << 20);
            Ok::<_, Error>(())
        });
        out.unwrap();
        assert_eq!((r.size(), table.size()), (1 << 20, 0));
        // Never both at once: the peak is one MiB over the base, not two.
        assert_eq!(pool.peak().bytes, base + (1 << 20), "{:?}", pool.peak());
        drop(r);
        assert_eq!(pool.reserved(), base);
    }
}

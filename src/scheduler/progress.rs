//! The progress hook: what the scheduler tells an observer while a graph runs
//! (tasks done of total, and the run's byte counters on demand), so the command
//! line can draw a progress bar. The scheduler knows nothing of terminals; the
//! observer decides whether and how to show anything.
//!
//! Contract: `start` is called once per run before the first task, `advance`
//! after every finished task (on any worker thread, so it must be cheap: store a
//! number, do not draw), `finish` once when the run ends, whether it succeeded or
//! not. A session may run several graphs for one command (set_index samples before
//! it shuffles), so an observer sees several runs in turn.
//! `counters` holds the run's spill cache: an observer must let it go by `finish`
//! (the cache's folder is removed when the last holder drops it).

use std::sync::Arc;

/// The byte counters of a run so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgressCounters {
    /// Bytes read from input files.
    pub bytes_read: u64,
    /// Bytes written to spill files.
    pub bytes_spilled: u64,
    /// Bytes appended to the shuffle store.
    pub bytes_shuffled: u64,
}

/// Reads a run's counters; cheap enough to call a few times a second.
pub type CounterFn = Arc<dyn Fn() -> ProgressCounters + Send + Sync>;

/// An observer of runs (see the module's contract).
pub trait Progress: Send + Sync {
    /// A run of `total` tasks starts; `counters` reads its bytes so far.
    fn start(&self, total: usize, counters: CounterFn);
    /// `done` tasks of the run have finished.
    fn advance(&self, done: usize);
    /// The run ended.
    fn finish(&self);
}

//! Runs an [`ExecGraph`] under a memory limit: a synchronous mode for debugging and a
//! parallel mode on a rayon pool.
//!
//! ```text
//!   ready: inner tasks ─┐                 ┌─► spill cache (results, LRU paged to disk)
//!   ready: read tasks ──┴─► workers ──────┤
//!       (held back while memory is short) └─► outputs, handed over in order
//! ```
//!
//! The bookkeeping (which tasks are ready, how many dependents each result still
//! waits for) sits behind one mutex, held only for bookkeeping, never while a task
//! runs or a file is written. A worker that finishes a task takes the next ready task
//! itself, so a chain of tasks costs no thread wake-ups; it starts more workers only
//! while ready tasks outnumber busy ones.
//!
//! Memory: one account ([`MemoryPool`], see `memory.rs`). Every task is admitted
//! with a reservation of its estimated working set (a read: what its operator
//! says it needs, else three mean read results, one block before the first; any
//! other task: the size of its inputs), grown to each result as it
//! is measured and by what operators [`reserve`]; results wait in a [`SpillCache`]
//! whose budget is what the reservations leave, so past it the least recently used
//! results are paged to disk and read back by the task that needs them. Before
//! paging anything, the scheduler holds back: while the held results and the tasks
//! running would overflow, it starts no new read task (a task with no inputs) as
//! long as another task is running, and prefers tasks that consume what is
//! resident; a task whose estimate does not fit waits for running ones to finish
//! (one running alone gets what is free). A result is dropped as soon as its last
//! dependent has run. A single result larger than the whole limit is an error that
//! names its task.
//!
//! Outputs are handed to a sink in order, each as soon as it and every output before
//! it are done, then freed, so an answer larger than memory streams out. The first
//! failing task (or an interrupt) stops new dispatches; the error names the task; a
//! panic inside a task is reported the same way.
//!
//! An observer given with [`Executor::with_progress`] is told when a run starts (its
//! task count and a way to read its byte counters), each time a task finishes, and
//! when the run ends (see `progress.rs`); the command line draws its progress bar
//! from it.

mod context;
mod memory;
mod progress;

pub use context::{RunContext, ShuffleTotals};
pub use memory::{
    allocated, gathered_answer_bytes, hand_over, malloc_tunables, outliving_reservation, release,
    reservable, reserve, reserve_or_exceed, task_reserved, total_memory, try_reserve,
    try_reserve_shared, unmeasured_bytes, HeldCache, MemoryPeak, MemoryPolicy, MemoryPool,
    MemoryReservation, DEFAULT_LIMIT_FRACTION, MAX_DEFAULT_BLOCKSIZE, MIN_MEMORY_LIMIT, UNMEASURED,
};
pub use progress::{CounterFn, Progress, ProgressCounters};

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use outcore_storage::spill::SpillCache;

use crate::error::{Error, Result};
use crate::graph::{ExecGraph, Operator, Value};
use arrow::array::RecordBatch;

/// How tasks are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// On the calling thread, one at a time, in priority order: for debugging.
    Sync,
    /// On the session's rayon pool.
    #[default]
    Parallel,
}

/// What a run did, for `--stats` and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Tasks run (after fusion).
    pub tasks_run: usize,
    /// Most results held at once (in memory or spilled).
    pub peak_results_held: usize,
    /// Most bytes of results resident in memory at once (by `Value::size_bytes`).
    pub peak_bytes_held: u64,
    /// Most bytes reserved from the memory account at once: results held, running
    /// tasks' working sets, shuffle buffers, persisted partitions.
    pub peak_reserved: u64,
    /// The largest consumers at that moment, largest first.
    pub peak_consumers: Vec<(String, u64)>,
    /// The memory limit the run was under.
    pub memory_limit: u64,
    /// Bytes read from input files.
    pub bytes_read: u64,
    /// Results paged out to the spill folder.
    pub spilled_values: u64,
    /// Bytes written to spill files.
    pub spilled_bytes: u64,
    /// Bytes of spill files read back.
    pub read_back_bytes: u64,
    /// Bytes shuffled (appended to the shuffle store or held in memory).
    pub shuffled_bytes: u64,
    /// Of those, bytes held in memory as batches, never encoded.
    pub shuffle_held_bytes: u64,
    /// The most the shuffle store held on disk at once.
    pub shuffle_disk_bytes: u64,
    /// Times a read task was held back because memory was short.
    pub reads_held_back: u64,
    /// Parquet row groups read.
    pub row_groups_read: u64,
    /// Parquet row groups skipped: their statistics showed no row could pass the
    /// filter.
    pub row_groups_skipped: u64,
    /// The most parts a radix-partitioned aggregation split its partials into (0
    /// when none ran; 1 when they were few enough for one merge).
    pub radix_parts: u64,
    /// Buckets a grace hash join wrote to disk because a build side did not fit
    /// (0 when every build side fit).
    pub join_buckets_spilled: u64,
    /// Chunks of build rows a join probed against one at a time, because a key's
    /// build rows did not fit even after partitioning (a hot key).
    pub join_build_chunks: u64,
    /// Sorted runs written to the shuffle store by sorts whose partition did not
    /// fit their reservation (0: every sort ran in memory).
    pub sort_runs_spilled: u64,
    /// Radix finalize tasks whose part did not fit the memory account and was
    /// merged in sub-parts, one at a time.
    pub radix_splits: u64,
    /// Running tables radix aggregations folded chunks into (about one per
    /// worker that ran a chunk).
    pub fold_tables: u64,
    /// Running tables taken out before their chunks were done, because they were
    /// full, the account refused them room, or folding was turned off (the
    /// chunks hold nearly one group per row).
    pub fold_flushes: u64,
}

/// Where tasks run, how many at once, and under which memory limit.
pub struct Executor<'a> {
    mode: Mode,
    pool: &'a rayon::ThreadPool,
    memory: MemoryPolicy,
    account: Arc<MemoryPool>,
    /// The most bytes of results kept in memory, whatever the account leaves.
    results_cap: u64,
    /// Bytes per read block, for the estimate of a read task (0: unknown).
    blocksize: u64,
    cancel: Option<Arc<AtomicBool>>,
    spill_write_allowance: Option<u64>,
    progress: Option<Arc<dyn Progress>>,
    /// The computation's counters (bytes read, shuffled), for `progress`.
    context: Option<Arc<RunContext>>,
}

impl<'a> Executor<'a> {
    /// An executor with the machine's default memory limit.
    pub fn new(mode: Mode, pool: &'a rayon::ThreadPool) -> Executor<'a> {
        let memory = MemoryPolicy::machine_default();
        Executor {
            mode,
            pool,
            account: MemoryPool::new(memory.limit),
            memory,
            results_cap: u64::MAX,
            blocksize: 0,
            cancel: None,
            spill_write_allowance: None,
            progress: None,
            context: None,
        }
    }

    /// Tells `progress` how each run goes (tasks done of total, bytes).
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The computation's context, whose counters (bytes read and shuffled) the
    /// progress observer sees.
    pub fn with_run_context(mut self, context: Arc<RunContext>) -> Self {
        self.context = Some(context);
        self
    }

    /// Runs under `memory` (an account of its own), keeping at most `results_budget`
    /// bytes of results in memory before spilling.
    pub fn with_memory(mut self, memory: MemoryPolicy, results_budget: u64) -> Self {
        self.account = MemoryPool::new(memory.limit);
        self.memory = memory;
        self.results_cap = results_budget;
        self
    }

    /// Runs under the session's account `account`, spilling under `spill_dir`;
    /// read tasks are estimated from `blocksize`.
    pub fn with_account(
        mut self,
        account: Arc<MemoryPool>,
        spill_dir: std::path::PathBuf,
        blocksize: u64,
    ) -> Self {
        self.memory = MemoryPolicy {
            limit: account.limit(),
            spill_dir,
        };
        self.account = account;
        self.results_cap = u64::MAX;
        self.blocksize = blocksize;
        self
    }

    /// Fault injection for tests: spill files fail to write (as on a full disk)
    /// after `bytes` more bytes.
    #[doc(hidden)]
    pub fn with_spill_write_failure_after(mut self, bytes: u64) -> Self {
        self.spill_write_allowance = Some(bytes);
        self
    }

    /// Stops dispatching (and fails with [`Error::Interrupted`]) once `flag` is set.
    pub fn with_cancel(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// Runs the graph and returns the values of its outputs, in the order requested.
    pub fn run(&self, graph: &ExecGraph) -> Result<(Vec<Arc<Value>>, RunStats)> {
        let gathered: Mutex<Vec<Arc<Value>>> = Mutex::new(Vec::with_capacity(graph.outputs.len()));
        let stats = self.run_streaming(graph, &|_, v| {
            gathered.lock().unwrap_or_else(|p| p.into_inner()).push(v);
            Ok(())
        })?;
        Ok((
            gathered.into_inner().unwrap_or_else(|p| p.into_inner()),
            stats,
        ))
    }

    /// Runs the graph, handing each output to `sink` with its position, in order,
    /// as soon as it and all outputs before it are done; the scheduler then lets it
    /// go. An error from `sink` stops the run.
    pub fn run_streaming(
        &self,
        graph: &ExecGraph,
        sink: &(dyn Fn(usize, Arc<Value>) -> Result<()> + Sync),
    ) -> Result<RunStats> {
        let cap = self.results_cap.min(self.memory.limit);
        let cache = Arc::new(SpillCache::<Value>::new(
            &self.memory.spill_dir,
            usize::try_from(cap).unwrap_or(usize::MAX),
        )?);
        // A running task's inputs stay in memory while it runs; paging them out would
        // free nothing and hide them from the account.
        cache.keep_values_in_use(true);
        if let Some(bytes) = self.spill_write_allowance {
            cache.fail_writes_after(bytes);
        }
        let held: Arc<dyn HeldCache> = cache.clone();
        self.account
            .register_cache("results held", Arc::downgrade(&held), cap);
        drop(held);
        // The graph itself and the scheduler's state per task (counts, a size,
        // flags: 22 bytes; a place in a ready queue: 16), held until the run
        // ends; at 35,000 tasks, 5 MB that no other consumer counts.
        let mut graph_bytes = self.account.reservation("task graph");
        graph_bytes.grow(graph.approx_bytes() + STATE_BYTES_PER_TASK * graph.tasks.len() as u64);
        self.account.rebalance()?;
        self.account.reset_peak();
        if let Some(p) = &self.progress {
            let (cache, context) = (cache.clone(), self.context.clone());
            p.start(
                graph.len(),
                Arc::new(move || ProgressCounters {
                    bytes_read: context.as_ref().map_or(0, |c| c.bytes_read()),
                    bytes_spilled: cache.stats().spilled_bytes,
                    bytes_shuffled: context
                        .as_ref()
                        .map_or(0, |c| c.shuffle_totals().bytes_shuffled),
                }),
            );
        }
        let _finish = FinishProgress(self.progress.as_deref());
        let shared = Shared {
            graph,
            cache,
            progress: self.progress.as_deref(),
            account: self.account.clone(),
            blocksize: self.blocksize,
            limit: self.memory.limit,
            budget: cap,
            cancel: self.cancel.clone(),
            threads: match self.mode {
                Mode::Sync => 1,
                Mode::Parallel => self.pool.current_num_threads().max(1),
            },
            state: Mutex::new(State::new(graph)),
            delivering: Mutex::new(()),
            sink,
        };
        match self.mode {
            Mode::Sync => loop {
                let Some((id, reservation)) = shared.lock().take(&shared, 0) else {
                    break;
                };
                let (outcome, reservation) = shared.execute(id, reservation);
                shared.finish(id, outcome, reservation);
                shared.deliver();
            },
            Mode::Parallel => {
                let shared = &shared;
                self.pool.scope(|scope| {
                    let mut st = shared.lock();
                    while st.in_flight < shared.threads {
                        let running = st.in_flight;
                        let Some(next) = st.take(shared, running) else {
                            break;
                        };
                        st.in_flight += 1;
                        scope.spawn(move |s| work(s, shared, next));
                    }
                });
            }
        }
        let mut st = shared.state.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = st.failure.take() {
            return Err(e);
        }
        if st.next_output < graph.outputs.len() {
            return Err(Error::Internal(format!(
                "output {} was never computed",
                graph.tasks[graph.outputs[st.next_output]].key
            )));
        }
        let spill = shared.cache.stats();
        st.stats.peak_bytes_held = spill.peak_resident_bytes as u64;
        st.stats.spilled_values = spill.spilled_values;
        st.stats.spilled_bytes = spill.spilled_bytes;
        st.stats.read_back_bytes = spill.read_back_bytes;
        let peak = shared.account.peak();
        st.stats.peak_reserved = peak.bytes;
        st.stats.peak_consumers = peak.consumers;
        st.stats.memory_limit = shared.limit;
        Ok(st.stats)
    }
}

/// Calls the observer's `finish` when a run ends, however it ends.
struct FinishProgress<'p>(Option<&'p dyn Progress>);

impl Drop for FinishProgress<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            p.finish();
        }
    }
}

/// What every worker of one run shares.
struct Shared<'g> {
    graph: &'g ExecGraph,
    cache: Arc<SpillCache<Value>>,
    account: Arc<MemoryPool>,
    blocksize: u64,
    limit: u64,
    budget: u64,
    cancel: Option<Arc<AtomicBool>>,
    threads: usize,
    progress: Option<&'g dyn Progress>,
    state: Mutex<State>,
    /// Held by the one worker handing outputs to the sink, so they go in order.
    delivering: Mutex<()>,
    sink: &'g (dyn Fn(usize, Arc<Value>) -> Result<()> + Sync),
}

/// The bookkeeping, behind one mutex.
struct State {
    waiting_on: Vec<u32>,
    uses_left: Vec<u32>,
    /// How many output positions still wait to hand this task's value over.
    deliveries_left: Vec<u32>,
    done: Vec<bool>,
    ready_inner: BinaryHeap<Reverse<(u32, usize)>>,
    ready_reads: BinaryHeap<Reverse<(u32, usize)>>,
    in_flight: usize,
    next_output: usize,
    failure: Option<Error>,
    stats: RunStats,
    held: usize,
    /// Bytes of read results so far and how many, to estimate what a running read
    /// task will add.
    read_bytes: u64,
    reads_done: u64,
    /// Each finished task's result size.
    sizes: Vec<u64>,
    /// Tasks that only add memory: no inputs, or inputs that hold nothing (a
    /// shuffle's readers wait on a barrier's empty marker). They are admitted as
    /// reads.
    source: Vec<bool>,
    /// Output positions whose value is ready (delivered or not).
    outputs_ready: usize,
}

/// How many finished outputs may wait for the sink before sources are held back:
/// a sink slower than the workers (writing CSV, say) then sets the pace instead of
/// a pile of waiting partitions.
const MAX_WAITING_OUTPUTS_PER_THREAD: usize = 2;

/// The scheduler's bytes per task while a graph runs (see [`State`]).
const STATE_BYTES_PER_TASK: u64 = 40;

/// Inputs smaller than this hold nothing worth waiting for (markers, scalars).
const SOURCE_INPUT_BYTES: u64 = 4096;

type Outcome = std::thread::Result<Result<Value, (usize, Error)>>;

/// A task picked to run, with its admission reservation.
type Admitted = (usize, MemoryReservation);

/// The name a task's reservation goes by in `--stats`: its layer, without the
/// number that makes layer names unique.
fn layer_name(key: &crate::graph::Key) -> Arc<str> {
    let name = key.name.trim_end_matches(|c: char| c.is_ascii_digit());
    name.strip_suffix('-').unwrap_or(name).into()
}

impl State {
    fn new(graph: &ExecGraph) -> State {
        let n = graph.tasks.len();
        let mut deliveries_left = vec![0u32; n];
        for &o in &graph.outputs {
            deliveries_left[o] += 1;
        }
        let ready_reads = graph
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.live && t.deps.is_empty())
            .map(|(i, t)| Reverse((t.priority, i)))
            .collect();
        State {
            waiting_on: graph.tasks.iter().map(|t| t.deps.len() as u32).collect(),
            uses_left: graph
                .tasks
                .iter()
                .map(|t| t.dependents.len() as u32)
                .collect(),
            deliveries_left,
            done: vec![false; n],
            ready_inner: BinaryHeap::new(),
            ready_reads,
            in_flight: 0,
            next_output: 0,
            failure: None,
            stats: RunStats::default(),
            held: 0,
            read_bytes: 0,
            reads_done: 0,
            sizes: vec![0; n],
            source: graph.tasks.iter().map(|t| t.deps.is_empty()).collect(),
            outputs_ready: 0,
        }
    }

    /// Finished outputs the sink has not taken yet.
    fn waiting_outputs(&self) -> usize {
        self.outputs_ready.saturating_sub(self.next_output)
    }

    /// Whether starting another read task now would overflow the results budget:
    /// what is resident, plus what the running tasks and the new one are expected
    /// to add (the mean size of a read result so far).
    fn memory_short(&self, shared: &Shared<'_>) -> bool {
        let per_read = self.read_bytes.checked_div(self.reads_done).unwrap_or(0);
        let expected =
            shared.cache.resident_bytes() as u64 + per_read * (self.in_flight as u64 + 1);
        expected > shared.budget.min(shared.account.unreserved())
    }

    /// The working set read task `id` is expected to need: what its first operator
    /// expects when it can tell ([`Operator::working_bytes`]: a CSV block's share
    /// of its columns read), else three times the mean read result so far (its raw
    /// bytes, the fields cut from them, the decoded columns), else one block.
    ///
    /// The operator's own figure goes first because a read's result need not be
    /// its working set: fused with an aggregation's chunk step, the result is
    /// the partial (q3's 1e5 groups: three partials were twice the block's
    /// columns, and the operator reserves its table besides).
    fn read_estimate(&self, shared: &Shared<'_>, id: usize) -> u64 {
        let first = shared.graph.tasks[id].chain.ops().first();
        first
            .and_then(|op| op.working_bytes())
            .or_else(|| self.read_bytes.checked_div(self.reads_done).map(|m| 3 * m))
            .unwrap_or(shared.blocksize)
    }

    /// Reserves `estimate` for task `id`. Refused while others run (they will
    /// finish and release); granted what is free when the task would run alone.
    fn admit(
        &mut self,
        shared: &Shared<'_>,
        id: usize,
        estimate: u64,
        others_running: usize,
    ) -> Option<MemoryReservation> {
        // Its inputs stay resident while it runs: the account leaves room for them.
        let inputs: u64 = shared.graph.tasks[id]
            .deps
            .iter()
            .map(|&d| self.sizes[d])
            .sum();
        let mut r = shared
            .account
            .task_reservation(layer_name(&shared.graph.tasks[id].key), inputs);
        match r.try_grow(estimate) {
            Ok(()) => Some(r),
            Err(_) if others_running > 0 => None,
            Err(free) => {
                // Alone: nothing will release, so the task runs on what is free and
                // the account learns its real size from what it reserves and makes.
                let _ = r.try_grow(free.min(estimate));
                Some(r)
            }
        }
    }

    /// The highest-priority inner task, if its estimate (its inputs' size) fits.
    fn take_inner(&mut self, shared: &Shared<'_>, others_running: usize) -> Option<Admitted> {
        let &Reverse((_, id)) = self.ready_inner.peek()?;
        let task = &shared.graph.tasks[id];
        let inputs: u64 = task.deps.iter().map(|&d| self.sizes[d]).sum();
        let estimate = task
            .chain
            .ops()
            .first()
            .map_or(inputs, |op| op.working_bytes_beyond(inputs));
        let r = self.admit(shared, id, estimate, others_running)?;
        self.ready_inner.pop();
        Some((id, r))
    }

    /// Takes the highest-priority ready task, unless a task failed or the run was
    /// interrupted. While memory is short and `others_running` tasks will free or
    /// make results, read tasks wait and tasks that consume results go first.
    fn take(&mut self, shared: &Shared<'_>, others_running: usize) -> Option<Admitted> {
        if self.failure.is_some() {
            return None;
        }
        if shared
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            self.failure = Some(Error::Interrupted);
            return None;
        }
        let read_first = match (self.ready_inner.peek(), self.ready_reads.peek()) {
            (Some(Reverse(i)), Some(Reverse(r))) => r < i,
            (None, Some(_)) => true,
            _ => false,
        };
        if read_first {
            let backlog =
                self.waiting_outputs() >= MAX_WAITING_OUTPUTS_PER_THREAD * shared.threads.max(1);
            if others_running > 0 && (backlog || self.memory_short(shared)) {
                self.stats.reads_held_back += 1;
                return self.take_inner(shared, others_running);
            }
            let &Reverse((_, id)) = self.ready_reads.peek()?;
            let estimate = self.read_estimate(shared, id);
            return match self.admit(shared, id, estimate, others_running) {
                Some(r) => {
                    self.ready_reads.pop();
                    Some((id, r))
                }
                None => {
                    self.stats.reads_held_back += 1;
                    self.take_inner(shared, others_running)
                }
            };
        }
        self.take_inner(shared, others_running)
    }

    /// Records a finished task whose value is in the cache: releases inputs it was
    /// the last user of (returned, to be removed from the cache outside the lock)
    /// and readies dependents whose last input this was.
    fn complete(&mut self, graph: &ExecGraph, id: usize, size: u64, released: &mut Vec<usize>) {
        let task = &graph.tasks[id];
        self.stats.tasks_run += 1;
        self.done[id] = true;
        self.held += 1;
        self.stats.peak_results_held = self.stats.peak_results_held.max(self.held);
        self.sizes[id] = size;
        self.outputs_ready += self.deliveries_left[id] as usize;
        if self.source[id] {
            self.read_bytes += size;
            self.reads_done += 1;
        }
        for &d in &task.deps {
            self.uses_left[d] -= 1;
            if self.uses_left[d] == 0 && self.deliveries_left[d] == 0 {
                self.held -= 1;
                released.push(d);
            }
        }
        if task.dependents.is_empty() && self.deliveries_left[id] == 0 {
            self.held -= 1;
            released.push(id);
        }
        for &t in &task.dependents {
            self.waiting_on[t] -= 1;
            if self.waiting_on[t] == 0 {
                let entry = Reverse((graph.tasks[t].priority, t));
                let consumed: u64 = graph.tasks[t].deps.iter().map(|&d| self.sizes[d]).sum();
                if consumed < SOURCE_INPUT_BYTES {
                    self.source[t] = true;
                    self.ready_reads.push(entry);
                } else {
                    self.ready_inner.push(entry);
                }
            }
        }
    }

    fn fail(&mut self, e: Error) {
        self.failure.get_or_insert(e);
    }
}

impl Shared<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn task_error(&self, id: usize, step: usize, e: Error) -> Error {
        let task = &self.graph.tasks[id];
        let key = task.chain.key(step).unwrap_or(&task.key);
        Error::Task {
            key: key.to_string(),
            source: Box::new(e),
        }
    }

    /// Makes room for the task's reservation (paging results out), fetches its
    /// inputs (reading spilled ones back) and runs its chain with the reservation
    /// as the running task's; returns the reservation as grown by the task.
    fn execute(&self, id: usize, reservation: MemoryReservation) -> (Outcome, MemoryReservation) {
        if let Err(e) = self.account.rebalance() {
            return (Ok(Err((0, e))), reservation);
        }
        let admitted = reservation.size();
        memory::with_task(reservation, || self.execute_inner(id, admitted))
    }

    fn execute_inner(&self, id: usize, admitted: u64) -> Outcome {
        let task = &self.graph.tasks[id];
        let inputs = task
            .deps
            .iter()
            .map(|&d| match self.cache.get(d as u64) {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err(Error::Internal(format!(
                    "the result of {} was released before {} ran",
                    self.graph.tasks[d].key, task.key
                ))),
                Err(e) => Err(Error::from(e)),
            })
            .collect::<Result<Vec<_>>>();
        match inputs {
            Ok(inputs) => catch_unwind(AssertUnwindSafe(|| {
                run_chain(task.chain.ops(), inputs, admitted)
            })),
            Err(e) => Ok(Err((0, e))),
        }
    }

    /// Stores the outcome in the cache (paging out others if needed), then does the
    /// bookkeeping and frees released results.
    fn finish(&self, id: usize, outcome: Outcome, mut reservation: MemoryReservation) {
        // The result moves from the task's reservation to the results held; the
        // rest of it was freed.
        let size = match &outcome {
            Ok(Ok(value)) => value.size_bytes() as u64,
            _ => 0,
        };
        reservation.hand_on(size);
        drop(reservation);
        let stored = match outcome {
            Ok(Ok(value)) => self.store(id, value, size),
            Ok(Err((step, e))) => Err(self.task_error(id, step, e)),
            Err(p) => Err(self.task_error(
                id,
                usize::MAX,
                Error::Internal(format!("the task panicked: {}", panic_message(p.as_ref()))),
            )),
        };
        let mut released = Vec::new();
        let done = {
            let mut st = self.lock();
            match stored {
                Ok(size) if st.failure.is_none() => {
                    st.complete(self.graph, id, size, &mut released)
                }
                Ok(_) => {}
                Err(e) => st.fail(e),
            }
            st.stats.tasks_run
        };
        if let Some(p) = self.progress {
            p.advance(done);
        }
        for r in released {
            self.cache.remove(r as u64);
        }
    }

    /// Grows the running task's reservation to cover a result just made.
    fn measured(value: &Value) {
        memory::note_result(value.size_bytes() as u64);
    }

    /// Puts a task's result of `size` bytes in the cache.
    fn store(&self, id: usize, value: Value, size: u64) -> Result<u64> {
        if size > self.limit {
            let key = self.graph.tasks[id].key.to_string();
            return Err(Error::MemoryLimit {
                key,
                needed: size,
                limit: self.limit,
                hint: "read smaller partitions (--blocksize), or spread a groupby with many \
                       groups over several partitions (--split-out)"
                    .into(),
            });
        }
        let spill_error = |source| {
            let dir = self.cache.dir().to_path_buf();
            self.task_error(id, usize::MAX, Error::Spill { dir, source })
        };
        self.account
            .rebalance()
            .map_err(|e| self.task_error(id, usize::MAX, e))?;
        self.cache
            .put(id as u64, Arc::new(value))
            .map_err(spill_error)?;
        self.account.note_peak();
        Ok(size)
    }

    /// Hands every output that is next in line to the sink. One worker delivers at a
    /// time; one that finds the lock taken leaves the work to its holder, who looks
    /// again after letting go.
    fn deliver(&self) {
        let outputs = &self.graph.outputs;
        loop {
            let Ok(guard) = self.delivering.try_lock() else {
                return;
            };
            loop {
                let next = {
                    let mut st = self.lock();
                    if st.failure.is_some() || st.next_output >= outputs.len() {
                        None
                    } else {
                        let id = outputs[st.next_output];
                        st.done[id].then(|| {
                            st.next_output += 1;
                            (st.next_output - 1, id)
                        })
                    }
                };
                let Some((position, id)) = next else { break };
                let handed = match self.cache.get(id as u64) {
                    Ok(Some(v)) => (self.sink)(position, v),
                    Ok(None) => Err(Error::Internal(format!(
                        "output {} was released before it was handed over",
                        self.graph.tasks[id].key
                    ))),
                    Err(e) => Err(e.into()),
                };
                let mut st = self.lock();
                if let Err(e) = handed {
                    st.fail(e);
                    break;
                }
                st.deliveries_left[id] -= 1;
                if st.deliveries_left[id] == 0 && st.uses_left[id] == 0 {
                    st.held -= 1;
                    drop(st);
                    self.cache.remove(id as u64);
                }
            }
            drop(guard);
            let st = self.lock();
            let more = st.failure.is_none()
                && st.next_output < outputs.len()
                && st.done[outputs[st.next_output]];
            if !more {
                return;
            }
        }
    }
}

/// Runs a fused chain; an error comes with the index of the operator that failed.
/// A chain that starts with a streaming source, then maps, then a fold (join →
/// filter → aggregation chunk or shuffle write) runs batch by batch, so the
/// source's whole output never exists at once.
///
/// `admitted` is the reservation the task was admitted with, a guess at its working
/// set made before it ran: once the first step has run, what that step made is
/// known, and the guess gives way to it ([`memory::settle_admission`]).
fn run_chain(
    ops: &[Arc<dyn Operator>],
    inputs: Vec<Arc<Value>>,
    admitted: u64,
) -> Result<Value, (usize, Error)> {
    let (first, rest) = ops
        .split_first()
        .ok_or_else(|| (0, Error::Internal("a task with no operator".into())))?;
    let (mut value, next) = match streamed_fold(ops) {
        Some(fold) => (run_streamed(ops, fold, &inputs)?, fold + 1),
        None => (first.run(&inputs).map_err(|e| (0, e))?, 1),
    };
    drop(inputs);
    memory::settle_admission(admitted, value.size_bytes() as u64);
    for (i, op) in rest.iter().enumerate().skip(next - 1) {
        value = op.run(&[Arc::new(value)]).map_err(|e| (i + 1, e))?;
        Shared::measured(&value);
    }
    Ok(value)
}

/// The position of the fold ending a `Source → Map* → Fold` prefix of `ops`.
fn streamed_fold(ops: &[Arc<dyn Operator>]) -> Option<usize> {
    use crate::graph::Streaming;
    if ops.first()?.streaming() != Streaming::Source {
        return None;
    }
    let fold = 1 + ops[1..]
        .iter()
        .position(|op| op.streaming() != Streaming::Map)?;
    (ops[fold].streaming() == Streaming::Fold).then_some(fold)
}

/// Folded values merged at a time: bounds what a fold holds between merges.
const FOLD_MERGE_EVERY: usize = 16;

/// Runs `ops[..=fold]` over the batches `ops[0]` streams.
fn run_streamed(
    ops: &[Arc<dyn Operator>],
    fold: usize,
    inputs: &[Arc<Value>],
) -> Result<Value, (usize, Error)> {
    let mut folded: Vec<Value> = Vec::new();
    let mut failed_at = 0;
    let mut each = |batch: RecordBatch| -> Result<()> {
        let mut value = Value::Batch(batch);
        for (i, op) in ops.iter().enumerate().take(fold + 1).skip(1) {
            Shared::measured(&value);
            failed_at = i;
            value = op.run(&[Arc::new(value)])?;
        }
        folded.push(value);
        if folded.len() >= FOLD_MERGE_EVERY {
            let merged = ops[fold].merge(std::mem::take(&mut folded))?;
            folded.push(merged);
        }
        failed_at = 0;
        Ok(())
    };
    let streamed = ops[0].run_stream(inputs, &mut each);
    streamed.map_err(|e| (failed_at, e))?;
    match folded.len() {
        0 => Err((
            0,
            Error::Internal(format!("{} streamed no batch", ops[0].name())),
        )),
        1 => Ok(folded.pop().expect("one value")),
        _ => ops[fold].merge(folded).map_err(|e| (fold, e)),
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with no message".to_string()
    }
}

/// A worker: runs task `id`, then keeps taking ready tasks until none is left for
/// it, starting more workers (up to `threads`) while there is spare ready work.
fn work<'s>(scope: &rayon::Scope<'s>, shared: &'s Shared<'s>, mut next: Admitted) {
    loop {
        let (id, reservation) = next;
        let (outcome, reservation) = shared.execute(id, reservation);
        shared.finish(id, outcome, reservation);
        shared.deliver();
        let mut st = shared.lock();
        let others_running = st.in_flight - 1;
        match st.take(shared, others_running) {
            Some(admitted) => {
                next = admitted;
                while st.in_flight < shared.threads {
                    let running = st.in_flight;
                    let Some(extra) = st.take(shared, running) else {
                        break;
                    };
                    st.in_flight += 1;
                    scope.spawn(move |s| work(s, shared, extra));
                }
            }
            None => {
                st.in_flight -= 1;
                return;
            }
        }
    }
}

//! Runs an [`ExecGraph`]: a synchronous mode for debugging and a parallel mode on a
//! rayon pool.
//!
//! ```text
//!   ready heap (by priority) ──dispatch──► workers (≤ threads in flight)
//!          ▲                                   │ (task id, result)
//!          └──── dependents whose last ────────┘ channel back to the loop
//!                input just arrived
//! ```
//!
//! The state (which tasks are ready, the live results, how many dependents each
//! still waits for) sits behind one mutex, held only for bookkeeping, never while a
//! task runs. A worker that finishes a task records its result and takes the next
//! ready task itself, so a chain of tasks costs no thread wake-ups; it starts more
//! workers only while ready tasks outnumber busy ones (at most `threads`). So the
//! per-task cost is a lock and a heap pop, and priorities decide what runs next. A
//! result is dropped as soon as its last dependent has run (outputs are kept). The
//! first failing task stops new dispatches; tasks in flight finish, and the error
//! names the failed task. A panic inside a task is caught and reported the same way.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::graph::{ExecGraph, Operator, Value};

/// How tasks are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// On the calling thread, one at a time, in priority order: for debugging.
    Sync,
    /// On the session's rayon pool.
    #[default]
    Parallel,
}

/// Counts of what a run did, for `--stats` and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Tasks run (after fusion).
    pub tasks_run: usize,
    /// Most results held at once.
    pub peak_results_held: usize,
    /// Most bytes of results held at once (by `Value::size_bytes`).
    pub peak_bytes_held: usize,
}

/// Where tasks run and how many at once.
pub struct Executor<'a> {
    /// Sync or parallel.
    pub mode: Mode,
    /// The pool for parallel mode.
    pub pool: &'a rayon::ThreadPool,
}

/// Runs a fused chain; an error comes with the index of the operator that failed.
fn run_chain(ops: &[Arc<dyn Operator>], inputs: Vec<Arc<Value>>) -> Result<Value, (usize, Error)> {
    let (first, rest) = ops
        .split_first()
        .ok_or_else(|| (0, Error::Internal("a task with no operator".into())))?;
    let mut value = first.run(&inputs).map_err(|e| (0, e))?;
    drop(inputs);
    for (i, op) in rest.iter().enumerate() {
        value = op.run(&[Arc::new(value)]).map_err(|e| (i + 1, e))?;
    }
    Ok(value)
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

/// Everything the workers share, behind one mutex.
struct State {
    waiting_on: Vec<u32>,
    uses_left: Vec<u32>,
    is_output: Vec<bool>,
    results: Vec<Option<Arc<Value>>>,
    sizes: Vec<usize>,
    ready: BinaryHeap<Reverse<(u32, usize)>>,
    in_flight: usize,
    failure: Option<Error>,
    stats: RunStats,
    held: usize,
    held_bytes: usize,
}

/// A task taken off the ready heap, with its inputs.
struct Job {
    id: usize,
    inputs: Vec<Arc<Value>>,
}

impl State {
    /// Takes the highest-priority ready task, unless a task failed.
    fn take(&mut self, graph: &ExecGraph) -> Option<Job> {
        if self.failure.is_some() {
            return None;
        }
        let Reverse((_, id)) = self.ready.pop()?;
        let inputs = graph.tasks[id]
            .deps
            .iter()
            .map(|&d| {
                self.results[d]
                    .clone()
                    .expect("a dependency's result is held until its last dependent ran")
            })
            .collect();
        Some(Job { id, inputs })
    }

    /// Records a finished task: keeps its value, releases inputs it was the last
    /// user of, and readies dependents whose last input this was.
    fn complete(&mut self, graph: &ExecGraph, id: usize, outcome: Outcome) {
        let task = &graph.tasks[id];
        let value = match outcome {
            Ok(Ok(v)) => v,
            Ok(Err((step, e))) => {
                let key = task.op_keys.get(step).unwrap_or(&task.key);
                self.failure.get_or_insert(Error::Task {
                    key: key.to_string(),
                    source: Box::new(e),
                });
                return;
            }
            Err(p) => {
                self.failure.get_or_insert(Error::Task {
                    key: task.key.to_string(),
                    source: Box::new(Error::Internal(format!(
                        "the task panicked: {}",
                        panic_message(p.as_ref())
                    ))),
                });
                return;
            }
        };
        if self.failure.is_some() {
            return;
        }
        self.stats.tasks_run += 1;
        self.sizes[id] = value.size_bytes();
        self.held += 1;
        self.held_bytes += self.sizes[id];
        self.stats.peak_results_held = self.stats.peak_results_held.max(self.held);
        self.stats.peak_bytes_held = self.stats.peak_bytes_held.max(self.held_bytes);
        self.results[id] = Some(Arc::new(value));
        for &d in &task.deps {
            self.uses_left[d] -= 1;
            if self.uses_left[d] == 0 && !self.is_output[d] {
                self.release(d);
            }
        }
        if task.dependents.is_empty() && !self.is_output[id] {
            self.release(id);
        }
        for &t in &task.dependents {
            self.waiting_on[t] -= 1;
            if self.waiting_on[t] == 0 {
                self.ready.push(Reverse((graph.tasks[t].priority, t)));
            }
        }
    }

    fn release(&mut self, id: usize) {
        if self.results[id].take().is_some() {
            self.held -= 1;
            self.held_bytes -= self.sizes[id];
        }
    }
}

type Outcome = std::thread::Result<Result<Value, (usize, Error)>>;

fn execute(graph: &ExecGraph, job: Job) -> Outcome {
    let ops = &graph.tasks[job.id].ops;
    catch_unwind(AssertUnwindSafe(|| run_chain(ops, job.inputs)))
}

/// A worker: runs `job`, then keeps taking ready tasks until none is left for it,
/// starting more workers (up to `threads`) while there is spare ready work.
fn work<'s>(
    scope: &rayon::Scope<'s>,
    graph: &'s ExecGraph,
    state: &'s Mutex<State>,
    threads: usize,
    mut job: Job,
) {
    loop {
        let id = job.id;
        let outcome = execute(graph, job);
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        st.complete(graph, id, outcome);
        match st.take(graph) {
            Some(next) => {
                job = next;
                while st.in_flight < threads {
                    let Some(extra) = st.take(graph) else { break };
                    st.in_flight += 1;
                    scope.spawn(move |s| work(s, graph, state, threads, extra));
                }
            }
            None => {
                st.in_flight -= 1;
                return;
            }
        }
    }
}

impl Executor<'_> {
    /// Runs the graph and returns the values of its outputs, in the order requested.
    pub fn run(&self, graph: &ExecGraph) -> Result<(Vec<Arc<Value>>, RunStats)> {
        let n = graph.tasks.len();
        let mut is_output = vec![false; n];
        for &o in &graph.outputs {
            is_output[o] = true;
        }
        let state = Mutex::new(State {
            waiting_on: graph.tasks.iter().map(|t| t.deps.len() as u32).collect(),
            uses_left: graph
                .tasks
                .iter()
                .map(|t| t.dependents.len() as u32)
                .collect(),
            is_output,
            results: vec![None; n],
            sizes: vec![0; n],
            ready: graph
                .tasks
                .iter()
                .enumerate()
                .filter(|(_, t)| t.live && t.deps.is_empty())
                .map(|(i, t)| Reverse((t.priority, i)))
                .collect(),
            in_flight: 0,
            failure: None,
            stats: RunStats::default(),
            held: 0,
            held_bytes: 0,
        });
        match self.mode {
            Mode::Sync => loop {
                let job = {
                    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                    match st.take(graph) {
                        Some(j) => j,
                        None => break,
                    }
                };
                let id = job.id;
                let outcome = execute(graph, job);
                state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .complete(graph, id, outcome);
            },
            Mode::Parallel => {
                let threads = self.pool.current_num_threads().max(1);
                let state = &state;
                self.pool.scope(|scope| {
                    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                    while st.in_flight < threads {
                        let Some(job) = st.take(graph) else { break };
                        st.in_flight += 1;
                        scope.spawn(move |s| work(s, graph, state, threads, job));
                    }
                });
            }
        }
        let mut st = state.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = st.failure.take() {
            return Err(e);
        }
        let outputs = graph
            .outputs
            .iter()
            .map(|&o| {
                st.results[o].clone().ok_or_else(|| {
                    Error::Internal(format!("output {} was never computed", graph.tasks[o].key))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((outputs, st.stats))
    }
}

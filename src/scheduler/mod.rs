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
//! One loop on the calling thread owns all state: which tasks are ready, the live
//! results, and how many dependents each still waits for. A result is dropped as soon
//! as its last dependent has run (outputs are kept). At most `threads` tasks are in
//! flight, so priorities decide what runs next. The first failing task stops new
//! dispatches; the tasks in flight finish, and the error names the failed task. A
//! panic inside a task is caught and reported the same way, never a crash.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;

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

type Completion = (usize, std::thread::Result<Result<Value>>);

fn run_chain(ops: &[Arc<dyn Operator>], inputs: Vec<Arc<Value>>) -> Result<Value> {
    let (first, rest) = ops
        .split_first()
        .ok_or_else(|| Error::Internal("a task with no operator".into()))?;
    let mut value = first.run(&inputs)?;
    drop(inputs);
    for op in rest {
        value = op.run(&[Arc::new(value)])?;
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

impl Executor<'_> {
    /// Runs the graph and returns the values of its outputs, in the order requested.
    pub fn run(&self, graph: &ExecGraph) -> Result<(Vec<Arc<Value>>, RunStats)> {
        let n = graph.tasks.len();
        let mut waiting_on: Vec<u32> = graph.tasks.iter().map(|t| t.deps.len() as u32).collect();
        let mut uses_left: Vec<u32> = graph
            .tasks
            .iter()
            .map(|t| t.dependents.len() as u32)
            .collect();
        let mut is_output = vec![false; n];
        for &o in &graph.outputs {
            is_output[o] = true;
        }
        let mut results: Vec<Option<Arc<Value>>> = vec![None; n];
        let mut sizes: Vec<usize> = vec![0; n];
        let mut ready: BinaryHeap<Reverse<(u32, usize)>> = graph
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.live && t.deps.is_empty())
            .map(|(i, t)| Reverse((t.priority, i)))
            .collect();
        let threads = match self.mode {
            Mode::Sync => 1,
            Mode::Parallel => self.pool.current_num_threads().max(1),
        };
        let (tx, rx) = mpsc::channel::<Completion>();
        let mut in_flight = 0usize;
        let mut failure: Option<Error> = None;
        let mut stats = RunStats::default();
        let (mut held, mut held_bytes) = (0usize, 0usize);
        let mut sync_done: Option<Completion> = None;

        loop {
            while failure.is_none() && in_flight < threads {
                let Some(Reverse((_, id))) = ready.pop() else {
                    break;
                };
                let task = &graph.tasks[id];
                let inputs: Vec<Arc<Value>> = task
                    .deps
                    .iter()
                    .map(|&d| {
                        results[d]
                            .clone()
                            .expect("a dependency's result is held until its last dependent ran")
                    })
                    .collect();
                let ops = task.ops.clone();
                in_flight += 1;
                match self.mode {
                    Mode::Sync => {
                        let r = catch_unwind(AssertUnwindSafe(|| run_chain(&ops, inputs)));
                        sync_done = Some((id, r));
                    }
                    Mode::Parallel => {
                        let tx = tx.clone();
                        self.pool.spawn(move || {
                            let r = catch_unwind(AssertUnwindSafe(|| run_chain(&ops, inputs)));
                            // The receiver lives until every task in flight reported.
                            let _ = tx.send((id, r));
                        });
                    }
                }
            }
            if in_flight == 0 {
                break;
            }
            let (id, outcome) = match sync_done.take() {
                Some(c) => c,
                None => rx
                    .recv()
                    .map_err(|_| Error::Internal("a worker disappeared".into()))?,
            };
            in_flight -= 1;
            let task = &graph.tasks[id];
            let value = match outcome {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    failure.get_or_insert(Error::Task {
                        key: task.key.to_string(),
                        source: Box::new(e),
                    });
                    continue;
                }
                Err(p) => {
                    failure.get_or_insert(Error::Task {
                        key: task.key.to_string(),
                        source: Box::new(Error::Internal(format!(
                            "the task panicked: {}",
                            panic_message(p.as_ref())
                        ))),
                    });
                    continue;
                }
            };
            if failure.is_some() {
                continue;
            }
            stats.tasks_run += 1;
            sizes[id] = value.size_bytes();
            held += 1;
            held_bytes += sizes[id];
            stats.peak_results_held = stats.peak_results_held.max(held);
            stats.peak_bytes_held = stats.peak_bytes_held.max(held_bytes);
            results[id] = Some(Arc::new(value));
            for &d in &task.deps {
                uses_left[d] -= 1;
                if uses_left[d] == 0 && !is_output[d] {
                    results[d] = None;
                    held -= 1;
                    held_bytes -= sizes[d];
                }
            }
            if task.dependents.is_empty() && !is_output[id] {
                results[id] = None;
                held -= 1;
                held_bytes -= sizes[id];
            }
            for &t in &task.dependents {
                waiting_on[t] -= 1;
                if waiting_on[t] == 0 {
                    ready.push(Reverse((graph.tasks[t].priority, t)));
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let outputs = graph
            .outputs
            .iter()
            .map(|&o| {
                results[o].clone().ok_or_else(|| {
                    Error::Internal(format!("output {} was never computed", graph.tasks[o].key))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((outputs, stats))
    }
}

//! Graph optimisation: `cull` (keep only what the outputs need) and `fuse` (join
//! linear chains into one task). Both work on integer task ids so a graph of a
//! million tasks compiles in well under a second.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Graph, Key, Operator};
use crate::error::{Error, Result};

/// A compiled graph: culled, fused and ordered; what the scheduler runs.
pub struct ExecGraph {
    /// The tasks; ids are indexes into this vector. Removed (fused-away) tasks have no ops.
    pub tasks: Vec<ExecTask>,
    /// For each requested key, the id of the task that computes it.
    pub outputs: Vec<usize>,
}

/// A task ready to run: a chain of operators (one unless fused), the ids it depends
/// on, the ids that depend on it, and its priority (lower runs first).
pub struct ExecTask {
    /// The key of the last operator of the chain.
    pub key: Key,
    /// Dependencies: their values are the first operator's inputs.
    pub deps: Vec<usize>,
    /// Tasks that need this task's value.
    pub dependents: Vec<usize>,
    /// The operators; each after the first receives its predecessor's value.
    pub ops: Arc<[Arc<dyn Operator>]>,
    /// The key each operator had before fusion, so errors name the step that failed.
    pub op_keys: Arc<[Key]>,
    /// Lower numbers run first among ready tasks.
    pub priority: u32,
    /// False once fused into its dependent.
    pub live: bool,
}

impl ExecGraph {
    /// Number of live tasks.
    pub fn len(&self) -> usize {
        self.tasks.iter().filter(|t| t.live).count()
    }

    /// True when no task is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// About the bytes the compiled graph holds: each task's record, its
    /// dependency and dependent lists, its operators and keys. A radix groupby of
    /// 1e7 groups at a 64 MB limit has 35,000 tasks, about 7 MB, which the memory
    /// account reserves while the graph runs.
    pub fn approx_bytes(&self) -> u64 {
        let id = std::mem::size_of::<usize>();
        let key = std::mem::size_of::<Key>();
        let op = std::mem::size_of::<Arc<dyn Operator>>();
        self.tasks
            .iter()
            .map(|t| {
                std::mem::size_of::<ExecTask>()
                    + (t.deps.capacity() + t.dependents.capacity()) * id
                    + t.ops.len() * op
                    + t.op_keys.len() * key
            })
            .sum::<usize>() as u64
            + (self.outputs.capacity() * id) as u64
    }

    /// Joins each task that has a single dependency whose only dependent it is into
    /// that dependency's chain, as Dask's `fuse_linear`. Outputs are never fused away.
    pub fn fuse(&mut self) {
        let mut is_output = vec![false; self.tasks.len()];
        for &o in &self.outputs {
            is_output[o] = true;
        }
        // Tasks are in topological order (dependencies first), so one forward pass
        // sees each chain grow from its head.
        for id in 0..self.tasks.len() {
            if !self.tasks[id].live || self.tasks[id].deps.len() != 1 {
                continue;
            }
            let parent = self.tasks[id].deps[0];
            if is_output[parent] || self.tasks[parent].dependents.len() != 1 {
                continue;
            }
            let parent_ops = self.tasks[parent].ops.clone();
            let parent_keys = self.tasks[parent].op_keys.clone();
            let parent_deps = std::mem::take(&mut self.tasks[parent].deps);
            self.tasks[parent].live = false;
            self.tasks[parent].dependents.clear();
            for &d in &parent_deps {
                for slot in self.tasks[d].dependents.iter_mut() {
                    if *slot == parent {
                        *slot = id;
                    }
                }
            }
            let task = &mut self.tasks[id];
            let ops: Vec<Arc<dyn Operator>> =
                parent_ops.iter().chain(task.ops.iter()).cloned().collect();
            task.ops = ops.into();
            let keys: Vec<Key> = parent_keys
                .iter()
                .chain(task.op_keys.iter())
                .cloned()
                .collect();
            task.op_keys = keys.into();
            task.deps = parent_deps;
        }
    }
}

/// Flattens the layers into tasks with integer ids, keeping only those the outputs
/// need (in topological order), and checks that every dependency exists.
pub(super) fn flatten_and_cull(graph: &Graph, outputs: &[Key]) -> Result<ExecGraph> {
    let mut index: HashMap<&Key, (usize, usize)> = HashMap::with_capacity(graph.len());
    for (l, layer) in graph.layers().iter().enumerate() {
        for (t, task) in layer.tasks.iter().enumerate() {
            index.insert(&task.key, (l, t));
        }
    }
    let lookup = |k: &Key, needed_by: Option<&Key>| {
        index.get(k).copied().ok_or_else(|| {
            Error::Internal(match needed_by {
                Some(by) => format!("task {by} depends on {k}, which no layer defines"),
                None => format!("requested key {k} is not in the graph"),
            })
        })
    };
    // Iterative DFS post-order gives a topological order of what is needed.
    let mut id_of: HashMap<(usize, usize), usize> = HashMap::new();
    let mut order: Vec<(usize, usize)> = Vec::new();
    let mut stack: Vec<((usize, usize), usize)> = Vec::new();
    for out in outputs {
        let root = lookup(out, None)?;
        if id_of.contains_key(&root) {
            continue;
        }
        stack.push((root, 0));
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let task = &graph.layers()[node.0].tasks[node.1];
            if *next < task.deps.len() {
                let dep = lookup(&task.deps[*next], Some(&task.key))?;
                *next += 1;
                if !id_of.contains_key(&dep) {
                    if stack.iter().any(|(n, _)| *n == dep) {
                        return Err(Error::Internal(format!("cycle through task {}", task.key)));
                    }
                    stack.push((dep, 0));
                }
            } else {
                stack.pop();
                id_of.insert(node, order.len());
                order.push(node);
            }
        }
    }
    let mut tasks: Vec<super::optimize::ExecTask> = order
        .iter()
        .map(|&(l, t)| {
            let task = &graph.layers()[l].tasks[t];
            ExecTask {
                key: task.key.clone(),
                deps: task.deps.iter().map(|k| id_of[&index[k]]).collect(),
                dependents: Vec::new(),
                ops: vec![task.op.clone()].into(),
                op_keys: vec![task.key.clone()].into(),
                priority: 0,
                live: true,
            }
        })
        .collect();
    for id in 0..tasks.len() {
        for d in tasks[id].deps.clone() {
            tasks[d].dependents.push(id);
        }
    }
    let outputs = outputs.iter().map(|k| id_of[&index[k]]).collect();
    Ok(ExecGraph { tasks, outputs })
}

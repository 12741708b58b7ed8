//! Graph optimisation: `cull` (keep only what the outputs need) and `fuse` (join
//! linear chains into one task). Both work on integer task ids so a graph of a
//! million tasks compiles in well under a second.

use std::collections::HashMap;
use std::sync::Arc;

use smallvec::SmallVec;

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
///
/// Kept small: a radix groupby has a task per chunk and part (35,000 at a 64 MB
/// limit, 84,000 on 5 GB at 1 GB), most with one dependency, two dependents and one
/// operator, which live inline here with no allocation of their own.
pub struct ExecTask {
    /// The key of the last operator of the chain.
    pub key: Key,
    /// Dependencies: their values are the first operator's inputs.
    pub deps: TaskIds,
    /// Tasks that need this task's value.
    pub dependents: TaskIds,
    /// The operators; each after the first receives its predecessor's value.
    pub chain: Chain,
    /// Lower numbers run first among ready tasks.
    pub priority: u32,
    /// False once fused into its dependent.
    pub live: bool,
}

/// Task ids; up to two without an allocation.
pub type TaskIds = SmallVec<[usize; 2]>;

/// What a task runs: one operator (under the task's key), or a fused chain with
/// the key each operator had before fusion, so errors name the step that failed.
pub enum Chain {
    /// One operator.
    One(Arc<dyn Operator>),
    /// Operators joined by [`ExecGraph::fuse`], first to last, with their keys.
    Fused(Box<(Vec<Arc<dyn Operator>>, Vec<Key>)>),
}

impl Chain {
    /// The operators, first to last.
    pub fn ops(&self) -> &[Arc<dyn Operator>] {
        match self {
            Chain::One(op) => std::slice::from_ref(op),
            Chain::Fused(f) => &f.0,
        }
    }

    /// The key operator `step` had before fusion; `None` for a task of one
    /// operator, whose key is the task's.
    pub fn key(&self, step: usize) -> Option<&Key> {
        match self {
            Chain::One(_) => None,
            Chain::Fused(f) => f.1.get(step),
        }
    }

    /// Heap bytes the chain holds beyond the task's record.
    fn heap_bytes(&self) -> usize {
        match self {
            Chain::One(_) => 0,
            Chain::Fused(f) => {
                std::mem::size_of::<(Vec<Arc<dyn Operator>>, Vec<Key>)>()
                    + f.0.capacity() * std::mem::size_of::<Arc<dyn Operator>>()
                    + f.1.capacity() * std::mem::size_of::<Key>()
            }
        }
    }

    /// The chain's operators and their keys (`own` is the key of a one-operator chain).
    fn into_parts(self, own: &Key) -> (Vec<Arc<dyn Operator>>, Vec<Key>) {
        match self {
            Chain::One(op) => (vec![op], vec![own.clone()]),
            Chain::Fused(f) => *f,
        }
    }
}

/// Heap bytes of an id list (none while it fits inline).
fn ids_heap_bytes(ids: &TaskIds) -> usize {
    if ids.spilled() {
        ids.capacity() * std::mem::size_of::<usize>()
    } else {
        0
    }
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
    /// 1e7 groups at a 64 MB limit has 27,000 tasks, about 3 MB (most of them a
    /// record with nothing on the heap), which the memory account reserves, with
    /// the scheduler's state per task, while the graph runs.
    pub fn approx_bytes(&self) -> u64 {
        self.tasks
            .iter()
            .map(|t| {
                std::mem::size_of::<ExecTask>()
                    + ids_heap_bytes(&t.deps)
                    + ids_heap_bytes(&t.dependents)
                    + t.chain.heap_bytes()
            })
            .sum::<usize>() as u64
            + (self.outputs.capacity() * std::mem::size_of::<usize>()) as u64
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
            let parent_key = self.tasks[parent].key.clone();
            let parent_chain =
                std::mem::replace(&mut self.tasks[parent].chain, Chain::Fused(Box::default()));
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
            let (mut ops, mut keys) = parent_chain.into_parts(&parent_key);
            let own = std::mem::replace(&mut task.chain, Chain::Fused(Box::default()));
            let (own_ops, own_keys) = own.into_parts(&task.key);
            ops.extend(own_ops);
            keys.extend(own_keys);
            task.chain = Chain::Fused(Box::new((ops, keys)));
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
                dependents: TaskIds::new(),
                chain: Chain::One(task.op.clone()),
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

//! Task priorities: the order in which ready tasks start.
//!
//! We number tasks in the post-order of a depth-first walk from the outputs, taking
//! each task's dependencies in the order it lists them. Among ready tasks the lowest
//! number starts first, so the inputs of the first reduction finish (and the
//! reduction runs and frees them) before the inputs of the second begin: memory
//! holds one branch at a time, as `dask.order` aims for.
//!
//! One exception: an input that several answers read
//! (`DataFrame::for_each_answer`) would be held until the walk reached its last
//! answer's branch, every read done for the first answer before the second
//! answer's tasks begin. So the tasks named `shared` have, once numbered, each
//! dependent whose dependencies are all numbered numbered right after them (and
//! so on up from those), and the input is let go as soon as they have run. Only
//! for those: taking, say, a radix groupby chunk's parts early makes a
//! many-groups groupby at a small limit spill far more.

use super::ExecGraph;

/// Sets `priority` of every live task; the dependents of `shared` tasks are
/// taken as soon as they can run.
pub(super) fn assign_priorities(g: &mut ExecGraph, shared: &[bool]) {
    let n = g.tasks.len();
    let mut seen = vec![false; n];
    let mut numbered = vec![false; n];
    let mut next = 0u32;
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let outputs = g.outputs.clone();
    for out in outputs {
        if seen[out] {
            continue;
        }
        seen[out] = true;
        stack.push((out, 0));
        while let Some((node, i)) = stack.last().copied() {
            if i < g.tasks[node].deps.len() {
                stack.last_mut().expect("stack is not empty").1 += 1;
                let dep = g.tasks[node].deps[i];
                if !seen[dep] {
                    seen[dep] = true;
                    stack.push((dep, 0));
                }
            } else {
                stack.pop();
                g.tasks[node].priority = next;
                next += 1;
                numbered[node] = true;
                if shared.get(node).copied().unwrap_or(false) {
                    number_ready_dependents(g, node, &mut seen, &mut numbered, &mut next);
                }
            }
        }
    }
}

/// Numbers, after `node`, each dependent of it whose dependencies are all
/// numbered (in the order listed), and so on up from those.
fn number_ready_dependents(
    g: &mut ExecGraph,
    node: usize,
    seen: &mut [bool],
    numbered: &mut [bool],
    next: &mut u32,
) {
    let mut ready: Vec<usize> = Vec::new();
    push_ready(g, node, seen, numbered, &mut ready);
    while let Some(t) = ready.pop() {
        g.tasks[t].priority = *next;
        *next += 1;
        numbered[t] = true;
        push_ready(g, t, seen, numbered, &mut ready);
    }
}

/// Pushes the dependents of `t` not yet walked whose dependencies are all
/// numbered, the first listed last (so it is taken first).
fn push_ready(
    g: &ExecGraph,
    t: usize,
    seen: &mut [bool],
    numbered: &[bool],
    ready: &mut Vec<usize>,
) {
    for &d in g.tasks[t].dependents.iter().rev() {
        let task = &g.tasks[d];
        if !seen[d] && task.live && task.deps.iter().all(|&x| numbered[x]) {
            seen[d] = true;
            ready.push(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::graph::{FnOperator, Graph, Key, Layer, Task, Value};
    use datafusion_common::ScalarValue;

    fn leaf() -> Arc<dyn crate::graph::Operator> {
        FnOperator::new("leaf", |_| Ok(Value::Scalar(ScalarValue::Int64(Some(1)))))
    }

    /// A layer `name` of `n` leaf tasks, task `i` depending on `deps(i)`.
    fn layer(name: &Arc<str>, n: usize, deps: impl Fn(usize) -> Vec<Key>) -> Layer {
        Layer {
            name: name.clone(),
            tasks: (0..n)
                .map(|i| Task {
                    key: Key::new(name, i),
                    deps: deps(i),
                    op: leaf(),
                })
                .collect(),
        }
    }

    /// Eight reads, two combines of four, one final: the first combine's reads all
    /// come before any read of the second combine, and each combine right after its
    /// reads.
    #[test]
    fn finishes_a_branch_before_starting_the_next() {
        let read: Arc<str> = "read".into();
        let comb: Arc<str> = "combine".into();
        let fin: Arc<str> = "final".into();
        let mut g = Graph::new();
        g.add_layer(layer(&read, 8, |_| vec![]));
        g.add_layer(layer(&comb, 2, |i| {
            (0..4).map(|j| Key::new(&read, i * 4 + j)).collect()
        }));
        g.add_layer(layer(&fin, 1, |_| {
            vec![Key::new(&comb, 0), Key::new(&comb, 1)]
        }));
        let eg = g.compile(&[Key::new(&fin, 0)]).unwrap();
        let prio = |k: &Key| eg.tasks.iter().find(|t| &t.key == k).unwrap().priority;
        for j in 0..4 {
            assert!(prio(&Key::new(&read, j)) < prio(&Key::new(&comb, 0)));
            assert!(prio(&Key::new(&read, 4 + j)) > prio(&Key::new(&comb, 0)));
        }
        assert!(prio(&Key::new(&comb, 1)) < prio(&Key::new(&fin, 0)));
    }

    /// Three shared reads, each read by a task of answer a and a task of answer b,
    /// the outputs a's then b's: each read's b task runs right after it, before
    /// the next read, so a read is let go at once instead of waiting for all of a.
    /// Compiled without saying the reads are shared, b's tasks wait for all of a.
    #[test]
    fn a_shared_input_is_finished_by_all_its_dependents_before_the_next_read() {
        let read: Arc<str> = "read".into();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut g = Graph::new();
        g.add_layer(layer(&read, 3, |_| vec![]));
        for name in [&a, &b] {
            g.add_layer(layer(name, 3, |i| vec![Key::new(&read, i)]));
        }
        let outputs: Vec<Key> = (0..3)
            .map(|i| Key::new(&a, i))
            .chain((0..3).map(|i| Key::new(&b, i)))
            .collect();
        let reads: Vec<Key> = (0..3).map(|i| Key::new(&read, i)).collect();
        let eg = g.compile_shared(&outputs, &reads).unwrap();
        let prio = |k: &Key| eg.tasks.iter().find(|t| &t.key == k).unwrap().priority;
        for i in 0..3 {
            assert!(prio(&Key::new(&read, i)) < prio(&Key::new(&a, i)));
            assert!(prio(&Key::new(&read, i)) < prio(&Key::new(&b, i)));
            if i < 2 {
                assert!(prio(&Key::new(&b, i)) < prio(&Key::new(&read, i + 1)));
                assert!(prio(&Key::new(&a, i)) < prio(&Key::new(&read, i + 1)));
            }
        }
        let eg = g.compile(&outputs).unwrap();
        let prio = |k: &Key| eg.tasks.iter().find(|t| &t.key == k).unwrap().priority;
        assert!(prio(&Key::new(&b, 0)) > prio(&Key::new(&a, 2)));
    }
}

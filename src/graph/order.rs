//! Task priorities: the order in which ready tasks start.
//!
//! We number tasks in the post-order of a depth-first walk from the outputs, taking
//! each task's dependencies in the order it lists them. Among ready tasks the lowest
//! number starts first, so the inputs of the first reduction finish (and the
//! reduction runs and frees them) before the inputs of the second begin: memory
//! holds one branch at a time, as `dask.order` aims for.

use super::ExecGraph;

/// Sets `priority` of every live task.
pub(super) fn assign_priorities(g: &mut ExecGraph) {
    let n = g.tasks.len();
    let mut seen = vec![false; n];
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
            }
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

    /// Eight reads, two combines of four, one final: the first combine's reads all
    /// come before any read of the second combine, and each combine right after its
    /// reads.
    #[test]
    fn finishes_a_branch_before_starting_the_next() {
        let read: Arc<str> = "read".into();
        let comb: Arc<str> = "combine".into();
        let fin: Arc<str> = "final".into();
        let mut g = Graph::new();
        g.add_layer(Layer {
            name: read.clone(),
            tasks: (0..8)
                .map(|i| Task {
                    key: Key::new(&read, i),
                    deps: vec![],
                    op: leaf(),
                })
                .collect(),
        });
        g.add_layer(Layer {
            name: comb.clone(),
            tasks: (0..2)
                .map(|i| Task {
                    key: Key::new(&comb, i),
                    deps: (0..4).map(|j| Key::new(&read, i * 4 + j)).collect(),
                    op: leaf(),
                })
                .collect(),
        });
        g.add_layer(Layer {
            name: fin.clone(),
            tasks: vec![Task {
                key: Key::new(&fin, 0),
                deps: vec![Key::new(&comb, 0), Key::new(&comb, 1)],
                op: leaf(),
            }],
        });
        let eg = g.compile(&[Key::new(&fin, 0)]).unwrap();
        let prio = |k: &Key| eg.tasks.iter().find(|t| &t.key == k).unwrap().priority;
        for j in 0..4 {
            assert!(prio(&Key::new(&read, j)) < prio(&Key::new(&comb, 0)));
            assert!(prio(&Key::new(&read, 4 + j)) > prio(&Key::new(&comb, 0)));
        }
        assert!(prio(&Key::new(&comb, 1)) < prio(&Key::new(&fin, 0)));
    }
}

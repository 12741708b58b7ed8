//! Graphviz DOT output of a graph, for `visualize()`.

use std::fmt::Write;

use super::Graph;

pub(super) fn to_dot(graph: &Graph) -> String {
    let mut s =
        String::from("digraph outcore {\n  rankdir=BT;\n  node [shape=box, fontsize=10];\n");
    for layer in graph.layers() {
        for task in &layer.tasks {
            let _ = writeln!(
                s,
                "  \"{}\" [label=\"{}\\n{}\"];",
                task.key,
                task.op.name(),
                task.key.index
            );
            for d in &task.deps {
                let _ = writeln!(s, "  \"{d}\" -> \"{}\";", task.key);
            }
        }
    }
    s.push_str("}\n");
    s.replace("('", "(").replace("',", ",")
}

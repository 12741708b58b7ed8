//! `explain()`: what a frame's computation would do, without running it: the
//! optimized logical plan (columns pruned, filters pushed into sources), one line
//! per node, and a summary of the task graph it lowers to (layers, tasks before and
//! after fusion, shuffles) and of the memory reservations it will run under.

use std::fmt::Write;

use super::plan::{self, Plan};
use super::DataFrame;
use crate::error::human_bytes;
use crate::error::Result;
use crate::graph::Graph;

impl DataFrame {
    /// The optimized plan and a summary of the task graph, as text (`--explain`).
    ///
    /// ```no_run
    /// # let session = outcore::Session::new()?;
    /// let df = session.read("data/timeseries/*.csv").load()?.query("x > 0")?;
    /// println!("{}", df.explain()?);
    /// # Ok::<(), outcore::Error>(())
    /// ```
    pub fn explain(&self) -> Result<String> {
        let pruned = plan::prune(&self.plan, None);
        let mut out = String::from("plan (optimized):\n");
        describe(&pruned, 1, &mut out);
        let ctx = self.session.run_context();
        let mut graph = Graph::new();
        let keys = plan::lower(&pruned, &mut graph, &ctx);
        let layers = graph.layers();
        let shuffles = layers
            .iter()
            .filter(|l| l.name.starts_with("shuffle-barrier"))
            .count();
        let exec = graph.compile(&keys)?;
        let _ = writeln!(
            out,
            "task graph: {} layers, {} tasks ({} after fusion), {} shuffles, {} output partitions",
            layers.len(),
            graph.len(),
            exec.len(),
            shuffles,
            keys.len()
        );
        for l in layers {
            let name = l.name.trim_end_matches(|c: char| c.is_ascii_digit());
            let _ = writeln!(
                out,
                "  {:<24} {} tasks",
                name.strip_suffix('-').unwrap_or(name),
                l.tasks.len()
            );
        }
        let policy = self.session.memory_policy();
        let _ = write!(
            out,
            "reservations: limit {}; each read task reserves its share of a {} block's \
             columns read until reads are measured, then three times the mean read; every \
             other task the size of its inputs; results held in what is left, spilled past it",
            human_bytes(policy.limit),
            human_bytes(self.session.blocksize()),
        );
        if shuffles > 0 {
            let _ = write!(
                out,
                "; shuffle buffers up to {}",
                human_bytes(policy.shuffle_buffer_bytes())
            );
        }
        out.push('\n');
        Ok(out)
    }
}

/// One line per node, inputs indented below their consumer.
fn describe(p: &Plan, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    let n = p.npartitions();
    let columns = || {
        p.schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let line = match p {
        Plan::ReadCsv { source, .. } => format!(
            "read-csv {} [{n} blocks; columns: {}]",
            source.pattern,
            columns()
        ),
        Plan::Filter { predicate, .. } => format!("filter {predicate}"),
        Plan::Project { exprs, .. } => format!(
            "project {}",
            exprs
                .iter()
                .map(|(e, name)| {
                    let e = e.to_string();
                    if &e == name {
                        e
                    } else {
                        format!("{e} as {name}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Plan::MapPartitions { .. } => format!("map-partitions [columns: {}]", columns()),
        Plan::Aggregate { split_out, .. } => format!(
            "aggregate [{}; strategy {}]",
            columns(),
            match split_out {
                None => "chosen at run time (one merge or radix parts)".to_string(),
                Some(1) => "reduction tree".to_string(),
                Some(k) => format!("hash-partitioned into {k} partitions"),
            }
        ),
        Plan::Shuffle { by, sort, .. } => format!(
            "shuffle by {} into {n} partitions{}",
            by.columns().join(", "),
            if sort.is_empty() {
                String::new()
            } else {
                format!(
                    ", each sorted by {}",
                    sort.iter()
                        .map(|(c, o)| if o.descending {
                            format!("{c} desc")
                        } else {
                            c.clone()
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
        Plan::SelectPartitions { partitions, .. } => {
            format!("select {} partitions", partitions.len())
        }
        Plan::TreeReduce { name, .. } => format!("tree-reduce {name}"),
        Plan::Join { strategy, .. } => format!("join [{strategy:?}; {n} partitions]"),
        Plan::WithIndex { index, .. } => format!(
            "index {}{}",
            index.column,
            if index.divisions.is_some() {
                " (known divisions)"
            } else {
                ""
            }
        ),
        Plan::Node { node, inputs } if inputs.is_empty() => {
            format!(
                "{} [{n} partitions; columns: {}]",
                node.describe(),
                columns()
            )
        }
        Plan::Node { node, .. } => format!("{} [{n} partitions]", node.describe()),
    };
    let _ = writeln!(out, "{pad}{line}");
    for i in p.inputs() {
        describe(i, depth + 1, out);
    }
}

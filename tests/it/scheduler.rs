//! The task graph and the executor on hand-made graphs: a 100,000-task tree reduction
//! in both modes, errors and panics naming their task, results dropped after their
//! last dependent (peak held results), fusion of linear chains and culling.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion_common::ScalarValue;
use outcore::graph::{FnOperator, Graph, Key, Layer, Operator, Task, Value};
use outcore::scheduler::{Executor, Mode, RunStats};
use outcore::Error;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn run(
    graph: &Graph,
    outputs: &[Key],
    mode: Mode,
    pool: &rayon::ThreadPool,
) -> outcore::Result<(Vec<Arc<Value>>, RunStats)> {
    let exec = graph.compile(outputs)?;
    Executor::new(mode, pool).run(&exec)
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Scalar(ScalarValue::Int64(Some(x))) => *x,
        other => panic!("expected an Int64 scalar, got {other:?}"),
    }
}

fn constant(name: &str, x: i64) -> Arc<dyn Operator> {
    FnOperator::new(name, move |_| {
        Ok(Value::Scalar(ScalarValue::Int64(Some(x))))
    })
}

fn sum_op() -> Arc<dyn Operator> {
    FnOperator::new("sum", |inputs: &[Arc<Value>]| {
        Ok(Value::Scalar(ScalarValue::Int64(Some(
            inputs.iter().map(|v| int(v)).sum(),
        ))))
    })
}

/// `leaves` leaf tasks `('leaf', i)` made by `leaf(i)`, summed `fan_in` at a time by
/// layers `combine-1`, `combine-2`, ... down to one task, whose key is returned with
/// the number of tasks.
fn tree(
    leaves: usize,
    fan_in: usize,
    leaf: impl Fn(usize) -> Arc<dyn Operator>,
    combine: impl Fn(usize, usize) -> Arc<dyn Operator>,
) -> (Graph, Key, usize) {
    let mut g = Graph::new();
    let name: Arc<str> = "leaf".into();
    let tasks: Vec<Task> = (0..leaves)
        .map(|i| Task {
            key: Key::new(&name, i),
            deps: vec![],
            op: leaf(i),
        })
        .collect();
    let mut level: Vec<Key> = tasks.iter().map(|t| t.key.clone()).collect();
    let mut total = tasks.len();
    g.add_layer(Layer { name, tasks });
    let mut depth = 0;
    while level.len() > 1 {
        depth += 1;
        let name: Arc<str> = format!("combine-{depth}").into();
        let tasks: Vec<Task> = level
            .chunks(fan_in)
            .enumerate()
            .map(|(i, deps)| Task {
                key: Key::new(&name, i),
                deps: deps.to_vec(),
                op: combine(depth, i),
            })
            .collect();
        level = tasks.iter().map(|t| t.key.clone()).collect();
        total += tasks.len();
        g.add_layer(Layer { name, tasks });
    }
    (g, level.pop().unwrap(), total)
}

fn sum_tree(leaves: usize, fan_in: usize) -> (Graph, Key, usize) {
    tree(
        leaves,
        fan_in,
        |i| constant("leaf", i as i64),
        |_, _| sum_op(),
    )
}

#[test]
fn a_hundred_thousand_tasks_sum_right_in_both_modes() {
    let (g, root, total) = sum_tree(100_000, 10);
    assert_eq!(total, 111_111);
    let p = pool(2);
    for mode in [Mode::Sync, Mode::Parallel] {
        let (values, stats) = run(&g, std::slice::from_ref(&root), mode, &p).unwrap();
        assert_eq!(values.len(), 1);
        assert_eq!(int(&values[0]), 99_999 * 100_000 / 2, "{mode:?}");
        assert_eq!(stats.tasks_run, total, "{mode:?}");
        assert!(
            stats.peak_results_held < 1_000,
            "{mode:?}: {} results held at once",
            stats.peak_results_held
        );
    }
}

#[test]
fn the_first_failing_task_is_named() {
    let p = pool(3);
    for mode in [Mode::Sync, Mode::Parallel] {
        // A failing leaf.
        let (g, root, _) = tree(
            1000,
            10,
            |i| {
                if i == 37 {
                    FnOperator::new("leaf", |_| Err(Error::plan("test", "leaf 37 refuses")))
                } else {
                    constant("leaf", i as i64)
                }
            },
            |_, _| sum_op(),
        );
        let err = run(&g, &[root], mode, &p).unwrap_err();
        match &err {
            Error::Task { key, source } => {
                assert_eq!(key, "('leaf', 37)", "{mode:?}");
                assert!(source.to_string().contains("leaf 37 refuses"));
            }
            other => panic!("{mode:?}: expected a task error, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("('leaf', 37)") && msg.contains("leaf 37 refuses"),
            "{msg}"
        );
        assert!(matches!(err.root(), Error::Plan { .. }));

        // A failing combine.
        let (g, root, _) = tree(
            1000,
            10,
            |i| constant("leaf", i as i64),
            |depth, i| {
                if depth == 2 && i == 3 {
                    FnOperator::new("sum", |_| Err(Error::plan("test", "combine refuses")))
                } else {
                    sum_op()
                }
            },
        );
        match run(&g, &[root], mode, &p).unwrap_err() {
            Error::Task { key, .. } => assert_eq!(key, "('combine-2', 3)", "{mode:?}"),
            other => panic!("{mode:?}: expected a task error, got {other:?}"),
        }
    }
}

#[test]
fn a_failure_stops_new_tasks_from_starting() {
    // Sync mode runs one task at a time in priority order: after leaf 0 fails,
    // nothing else starts.
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let (g, root, _) = tree(
        500,
        10,
        move |i| {
            let s = s.clone();
            FnOperator::new("leaf", move |_| {
                s.fetch_add(1, Ordering::SeqCst);
                if i == 0 {
                    Err(Error::plan("test", "first leaf fails"))
                } else {
                    Ok(Value::Scalar(ScalarValue::Int64(Some(1))))
                }
            })
        },
        |_, _| sum_op(),
    );
    let p = pool(1);
    assert!(run(&g, &[root], Mode::Sync, &p).is_err());
    assert_eq!(started.load(Ordering::SeqCst), 1);
}

#[test]
fn a_panicking_task_becomes_an_error_naming_it() {
    let p = pool(2);
    for mode in [Mode::Sync, Mode::Parallel] {
        let (g, root, _) = tree(
            200,
            10,
            |i| {
                if i == 123 {
                    FnOperator::new("leaf", |_| -> outcore::Result<Value> {
                        panic!("kaboom in leaf 123")
                    })
                } else {
                    constant("leaf", i as i64)
                }
            },
            |_, _| sum_op(),
        );
        let err = run(&g, &[root], mode, &p).unwrap_err();
        match &err {
            Error::Task { key, source } => {
                assert_eq!(key, "('leaf', 123)", "{mode:?}");
                let msg = source.to_string();
                assert!(
                    msg.contains("panicked") && msg.contains("kaboom in leaf 123"),
                    "{msg}"
                );
            }
            other => panic!("{mode:?}: expected a task error, got {other:?}"),
        }
        // The pool survives: the next run works.
        let (g, root, _) = sum_tree(100, 10);
        let (v, _) = run(&g, &[root], mode, &p).unwrap();
        assert_eq!(int(&v[0]), 4950);
    }
}

#[test]
fn results_are_dropped_after_their_last_dependent() {
    let p = pool(2);
    // A wide tree: 10,000 leaves, fan-in 10. Priorities finish one branch before the
    // next starts, so few results are alive at once.
    let (g, root, total) = sum_tree(10_000, 10);
    for mode in [Mode::Sync, Mode::Parallel] {
        let (v, stats) = run(&g, std::slice::from_ref(&root), mode, &p).unwrap();
        assert_eq!(int(&v[0]), 9_999 * 10_000 / 2);
        assert_eq!(stats.tasks_run, total);
        let bound = if mode == Mode::Sync { 50 } else { 100 };
        assert!(
            stats.peak_results_held <= bound,
            "{mode:?}: peak {} of {total} tasks",
            stats.peak_results_held
        );
        assert!(stats.peak_bytes_held > 0);
    }

    // A long chain that cannot fuse: link i needs link i-1 and leaf i.
    let n = 10_000;
    let mut g = Graph::new();
    let leaf: Arc<str> = "leaf".into();
    let link: Arc<str> = "link".into();
    g.add_layer(Layer {
        name: leaf.clone(),
        tasks: (0..n)
            .map(|i| Task {
                key: Key::new(&leaf, i),
                deps: vec![],
                op: constant("leaf", i as i64),
            })
            .collect(),
    });
    g.add_layer(Layer {
        name: link.clone(),
        tasks: (0..n)
            .map(|i| Task {
                key: Key::new(&link, i),
                deps: if i == 0 {
                    vec![Key::new(&leaf, 0)]
                } else {
                    vec![Key::new(&link, i - 1), Key::new(&leaf, i)]
                },
                op: sum_op(),
            })
            .collect(),
    });
    let last = Key::new(&link, n - 1);
    let exec = g.compile(std::slice::from_ref(&last)).unwrap();
    assert_eq!(exec.len(), 2 * n - 1, "only leaf 0 fuses into link 0");
    for mode in [Mode::Sync, Mode::Parallel] {
        let (v, stats) = run(&g, std::slice::from_ref(&last), mode, &p).unwrap();
        assert_eq!(int(&v[0]), (n as i64 - 1) * n as i64 / 2);
        assert_eq!(stats.tasks_run, 2 * n - 1);
        // Sync runs in priority order: leaf i, then link i, which frees both inputs.
        // In parallel the leaves (all ready at once) may run ahead of the sequential
        // chain and wait for their link, so only the links are sure to be freed: at
        // most every leaf and two links are alive, never all 2n - 1 results.
        let bound = if mode == Mode::Sync { 3 } else { n + 2 };
        assert!(
            stats.peak_results_held <= bound,
            "{mode:?}: peak {} on a chain of {n}",
            stats.peak_results_held
        );
    }
}

/// A chain of `n` tasks `('step', i)`, each after the first taking its
/// predecessor's value: `start` gives 0, each later step `step(i)`'s operator.
fn chain(n: usize, step: impl Fn(usize) -> Arc<dyn Operator>) -> (Graph, Arc<str>) {
    let name: Arc<str> = "step".into();
    let mut g = Graph::new();
    let tasks: Vec<Task> = (0..n)
        .map(|i| Task {
            key: Key::new(&name, i),
            deps: if i == 0 {
                vec![]
            } else {
                vec![Key::new(&name, i - 1)]
            },
            op: if i == 0 {
                constant("start", 0)
            } else {
                step(i)
            },
        })
        .collect();
    g.add_layer(Layer {
        name: name.clone(),
        tasks,
    });
    (g, name)
}

fn add_one() -> Arc<dyn Operator> {
    FnOperator::new("add-one", |inputs: &[Arc<Value>]| {
        Ok(Value::Scalar(ScalarValue::Int64(Some(int(&inputs[0]) + 1))))
    })
}

#[test]
fn a_linear_chain_fuses_into_one_task() {
    let (g, name) = chain(1000, |_| add_one());
    assert_eq!(g.len(), 1000);
    let last = Key::new(&name, 999);
    let exec = g.compile(std::slice::from_ref(&last)).unwrap();
    assert_eq!(exec.len(), 1);
    let p = pool(2);
    for mode in [Mode::Sync, Mode::Parallel] {
        let (v, stats) = run(&g, std::slice::from_ref(&last), mode, &p).unwrap();
        assert_eq!(int(&v[0]), 999);
        assert_eq!(stats.tasks_run, 1);
        assert_eq!(stats.peak_results_held, 1);
    }
    // Asking for a middle task as well keeps it (an output is never fused away).
    let mid = Key::new(&name, 500);
    let exec = g.compile(&[last.clone(), mid.clone()]).unwrap();
    assert_eq!(exec.len(), 2);
    let (v, _) = run(&g, &[last, mid], Mode::Sync, &p).unwrap();
    assert_eq!(v.iter().map(|v| int(v)).collect::<Vec<_>>(), vec![999, 500]);
}

#[test]
fn a_failure_inside_a_fused_chain_names_its_own_step() {
    let (g, name) = chain(10, |i| {
        if i == 6 {
            FnOperator::new("refuse", |_: &[Arc<Value>]| {
                Err(Error::plan("test", "step 6 refuses"))
            })
        } else {
            add_one()
        }
    });
    let last = Key::new(&name, 9);
    assert_eq!(g.compile(std::slice::from_ref(&last)).unwrap().len(), 1);
    let p = pool(2);
    for mode in [Mode::Sync, Mode::Parallel] {
        match run(&g, std::slice::from_ref(&last), mode, &p).unwrap_err() {
            Error::Task { key, source } => {
                assert_eq!(key, "('step', 6)", "{mode:?}");
                assert!(source.to_string().contains("step 6 refuses"), "{source}");
            }
            other => panic!("{mode:?}: expected a task error, got {other:?}"),
        }
    }
}

/// A task with one dependency, two dependents and one operator (a radix part:
/// tens of thousands per groupby) costs its record and nothing on the heap.
#[test]
fn tasks_of_one_dependency_hold_no_heap_of_their_own() {
    let (leaf, piece, sum): (Arc<str>, Arc<str>, Arc<str>) =
        ("leaf".into(), "piece".into(), "sum".into());
    let n = 10_000;
    let mut g = Graph::new();
    g.add_layer(Layer {
        name: leaf.clone(),
        tasks: vec![Task {
            key: Key::new(&leaf, 0),
            deps: vec![],
            op: constant("leaf", 1),
        }],
    });
    g.add_layer(Layer {
        name: piece.clone(),
        tasks: (0..n)
            .map(|i| Task {
                key: Key::new(&piece, i),
                deps: vec![Key::new(&leaf, 0)],
                op: sum_op(),
            })
            .collect(),
    });
    let pieces: Vec<Key> = (0..n).map(|i| Key::new(&piece, i)).collect();
    g.add_layer(Layer {
        name: sum.clone(),
        tasks: (0..2)
            .map(|i| Task {
                key: Key::new(&sum, i),
                deps: pieces.clone(),
                op: sum_op(),
            })
            .collect(),
    });
    let outputs = [Key::new(&sum, 0), Key::new(&sum, 1)];
    let exec = g.compile(&outputs).unwrap();
    assert_eq!(exec.len(), n + 3);
    // The id lists of the leaf (n dependents, grown by doubling) and of the sums
    // (n dependencies each).
    let lists = (n.next_power_of_two() + 2 * n) * std::mem::size_of::<usize>();
    let per_task = (exec.approx_bytes() as usize - lists) / (n + 3);
    assert!(per_task <= 112, "{per_task} bytes per task");
    let (v, _) = run(&g, &outputs, Mode::Parallel, &pool(2)).unwrap();
    assert_eq!((int(&v[0]), int(&v[1])), (n as i64, n as i64));
}

#[test]
fn culling_keeps_only_what_the_outputs_need() {
    let (g, root, total) = sum_tree(1000, 10);
    assert_eq!(g.len(), total);
    let leaf: Arc<str> = "leaf".into();
    let exec = g.compile(&[Key::new(&leaf, 5)]).unwrap();
    assert_eq!(exec.len(), 1);
    let p = pool(2);
    let (v, stats) = run(&g, &[Key::new(&leaf, 5)], Mode::Parallel, &p).unwrap();
    assert_eq!(int(&v[0]), 5);
    assert_eq!(stats.tasks_run, 1);

    let c: Arc<str> = "combine-1".into();
    let exec = g.compile(&[Key::new(&c, 3)]).unwrap();
    assert_eq!(exec.len(), 11);
    let (v, _) = run(&g, &[Key::new(&c, 3)], Mode::Sync, &p).unwrap();
    assert_eq!(int(&v[0]), (30..40).sum::<i64>());

    // Outputs come back in the order asked for.
    let (v, _) = run(
        &g,
        &[Key::new(&leaf, 7), root.clone(), Key::new(&leaf, 2)],
        Mode::Parallel,
        &p,
    )
    .unwrap();
    assert_eq!(
        v.iter().map(|v| int(v)).collect::<Vec<_>>(),
        vec![7, 999 * 1000 / 2, 2]
    );
}

#[test]
fn unknown_keys_are_errors() {
    let (mut g, _, _) = sum_tree(10, 10);
    let nope: Arc<str> = "nope".into();
    let msg = match g.compile(&[Key::new(&nope, 0)]) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("compiling an unknown key must fail"),
    };
    assert!(msg.contains("('nope', 0)"), "{msg}");
    let dangling: Arc<str> = "dangling".into();
    g.add_layer(Layer {
        name: dangling.clone(),
        tasks: vec![Task {
            key: Key::new(&dangling, 0),
            deps: vec![Key::new(&nope, 1)],
            op: sum_op(),
        }],
    });
    let msg = match g.compile(&[Key::new(&dangling, 0)]) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a dependency no layer defines must fail"),
    };
    assert!(
        msg.contains("('dangling', 0)") && msg.contains("('nope', 1)"),
        "{msg}"
    );
}

#[test]
fn session_settings_are_checked() {
    use outcore::Session;
    let msg = |r: outcore::Result<Session>| match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    assert!(msg(Session::builder().with_threads(0).build()).contains("threads"));
    assert!(msg(Session::builder().with_blocksize(0).build()).contains("blocksize"));
    assert!(msg(Session::builder().with_split_every(1).build()).contains("split_every"));
    let s = Session::builder()
        .with_threads(3)
        .with_scheduler(Mode::Sync)
        .with_split_every(5)
        .build()
        .unwrap();
    assert_eq!((s.threads(), s.mode(), s.split_every()), (3, Mode::Sync, 5));
}

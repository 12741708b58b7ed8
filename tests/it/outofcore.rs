//! Out of core: answers under tiny memory limits equal the naive reference, and the
//! spill and shuffle paths really ran (their byte counts are asserted); a groupby
//! spread over partitions through the shuffle store (`split_out`); results streamed
//! partition by partition; errors for a result larger than the limit and for a spill
//! folder that cannot be used or vanishes mid-run; temporary folders cleaned up.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use outcore::agg::{mean, size, sum};
use outcore::frame::sort_batch;
use outcore::graph::{FnOperator, Graph, Key, Layer, Task, Value};
use outcore::scheduler::{Executor, MemoryPolicy, Mode, RunStats};
use outcore::{Error, Session};

use crate::common::*;

fn limited(threads: usize, mode: Mode, blocksize: u64, limit: u64, spill: &Path) -> Session {
    Session::builder()
        .with_threads(threads)
        .with_scheduler(mode)
        .with_blocksize(blocksize)
        .tiny_memory_limit(limit)
        .with_spill_dir(spill)
        .build()
        .unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// 2000 generated rows in 3 files.
fn fixture(seed: u64) -> (tempfile::TempDir, Table) {
    let dir = tempfile::tempdir().unwrap();
    let t = gen_table(seed, &GenOpts::new(2000).nulls(0.05, 0.1));
    t.write_files(dir.path(), 3);
    (dir, t)
}

/// Asserts that `batch` holds exactly the rows of `t`, in order (the naive table the
/// files were written from).
fn assert_table_rows(batch: &RecordBatch, t: &Table, what: &str) {
    let got: Vec<Cell> = batch_rows(batch).into_iter().flatten().collect();
    let expected: Vec<Cell> = t.rows.iter().flatten().cloned().collect();
    assert_cells(&got, &expected, what);
}

fn sorted_by(batch: &RecordBatch, keys: &[&str]) -> RecordBatch {
    let by: Vec<(&str, bool)> = keys.iter().map(|k| (*k, true)).collect();
    sort_batch(batch, &by).unwrap()
}

#[test]
fn split_out_groupby_matches_the_reference_for_every_partition_count() {
    let (dir, t) = fixture(41);
    let spill = tempfile::tempdir().unwrap();
    let aggs = all_aggs();
    for (threads, mode) in [(1, Mode::Sync), (2, Mode::Parallel), (3, Mode::Parallel)] {
        let s = limited(threads, mode, 3000, 1 << 30, spill.path());
        let df = load_gen(&s, dir.path());
        for keys in [&["id"][..], &["name", "id"][..], &["ts"][..]] {
            for n in [1usize, 2, 3, 7] {
                let out = df
                    .groupby(keys)
                    .unwrap()
                    .split_out(n)
                    .unwrap()
                    .agg(&specs(&aggs))
                    .unwrap();
                assert_eq!(out.npartitions(), n);
                let (parts, stats) = out.compute_partitions().unwrap();
                assert_eq!(parts.len(), n);
                if n > 1 {
                    assert!(stats.shuffled_bytes > 0, "split_out {n}: nothing shuffled");
                    // Each partition is sorted by key on its own, and no group is
                    // in two partitions (checked by check_groupby below).
                    for p in &parts {
                        let resorted = sorted_by(p, keys);
                        assert_eq!(&resorted, p, "a split_out partition is not sorted");
                    }
                } else {
                    assert_eq!(stats.shuffled_bytes, 0);
                }
                let all = arrow::compute::concat_batches(&out.schema(), &parts).unwrap();
                let ctx = format!("keys {keys:?}, split_out {n}, {threads} threads {mode:?}");
                check_groupby(&sorted_by(&all, keys), &t, keys, &aggs, false, &ctx);
            }
        }
    }
    assert!(
        entries(spill.path()).is_empty(),
        "left behind: {:?}",
        entries(spill.path())
    );
}

#[test]
fn a_tiny_memory_limit_spills_and_gives_the_same_answers() {
    let (dir, t) = fixture(42);
    let spill = tempfile::tempdir().unwrap();
    let roomy = load_gen(&session(2, Mode::Parallel, 1500), dir.path());
    let expected = roomy.compute().unwrap();
    for (threads, mode) in [(1, Mode::Sync), (2, Mode::Parallel)] {
        // 48 KiB for everything: the gathered partitions (~2000 rows of 7 columns)
        // cannot all stay in memory, so they page out and back.
        let s = limited(threads, mode, 1500, 48 << 10, spill.path());
        let df = load_gen(&s, dir.path());
        let (got, stats) = df.compute_with_stats().unwrap();
        assert_eq!(got, expected, "{mode:?}");
        assert_table_rows(&got, &t, &format!("{mode:?} under 48 KiB"));
        assert!(stats.bytes_read > 0);

        // A groupby with a tree reduction (forced: `split_out(1)`) whose partials must
        // wait for each other.
        let out = df
            .groupby(&["name", "id"])
            .unwrap()
            .split_out(1)
            .unwrap()
            .split_every(64)
            .unwrap()
            .agg(&[sum("x"), mean("v"), size()])
            .unwrap();
        let (got, stats) = out.compute_with_stats().unwrap();
        let aggs: Vec<Agg> = vec![("sum", Some("x")), ("mean", Some("v")), ("size", None)];
        check_groupby(
            &got,
            &t,
            &["name", "id"],
            &aggs,
            false,
            &format!("{mode:?}"),
        );
        assert!(
            stats.spilled_bytes > 0,
            "{mode:?}: nothing spilled: {stats:?}"
        );
        assert!(
            stats.read_back_bytes > 0,
            "{mode:?}: nothing read back: {stats:?}"
        );
        // Held results include the inputs a running task holds (it cannot give
        // them back), which under a limit this far below the minimum exceed it;
        // the limit itself is measured from outside in `memory.rs`.
        assert!(stats.peak_reserved > 0, "{mode:?}: {stats:?}");
    }
    assert!(
        entries(spill.path()).is_empty(),
        "left behind: {:?}",
        entries(spill.path())
    );
}

#[test]
fn split_out_under_a_tiny_limit_shuffles_through_sled() {
    let (dir, t) = fixture(43);
    let spill = tempfile::tempdir().unwrap();
    let s = limited(2, Mode::Parallel, 1500, 64 << 10, spill.path());
    let df = load_gen(&s, dir.path());
    let aggs = all_aggs();
    let out = df
        .groupby(&["id"])
        .unwrap()
        .split_out(5)
        .unwrap()
        .agg(&specs(&aggs))
        .unwrap();
    let got = std::sync::Mutex::new(Vec::new());
    let stats = out
        .for_each_partition(&|i, b| {
            got.lock().unwrap().push((i, b.clone()));
            Ok(())
        })
        .unwrap();
    assert!(stats.shuffled_bytes > 0);
    // The store's budget is an eighth of the 64 KiB limit (floored at 64 KiB), well
    // under the partials, so pieces were flushed to sled.
    assert!(
        stats.shuffle_disk_bytes > 0,
        "the shuffle never reached sled: {stats:?}"
    );
    let got = got.into_inner().unwrap();
    let order: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        order,
        vec![0, 1, 2, 3, 4],
        "partitions handed over out of order"
    );
    let parts: Vec<RecordBatch> = got.into_iter().map(|(_, b)| b).collect();
    let all = arrow::compute::concat_batches(&out.schema(), &parts).unwrap();
    check_groupby(
        &sorted_by(&all, &["id"]),
        &t,
        &["id"],
        &aggs,
        false,
        "split_out 5",
    );
    assert!(
        entries(spill.path()).is_empty(),
        "left behind: {:?}",
        entries(spill.path())
    );
}

#[test]
fn partitions_stream_out_in_order() {
    let (dir, t) = fixture(44);
    let s = session(2, Mode::Parallel, 700);
    let df = load_gen(&s, dir.path());
    let n = df.npartitions();
    assert!(n > 20);
    let got = std::sync::Mutex::new(Vec::new());
    df.for_each_partition(&|i, b| {
        got.lock().unwrap().push((i, b.clone()));
        Ok(())
    })
    .unwrap();
    let got = got.into_inner().unwrap();
    assert_eq!(
        got.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>()
    );
    let parts: Vec<RecordBatch> = got.into_iter().map(|(_, b)| b).collect();
    let all = arrow::compute::concat_batches(&df.schema(), &parts).unwrap();
    assert_table_rows(&all, &t, "streamed partitions");
    // A failing sink stops the run with its error.
    let err = df
        .for_each_partition(&|i, _| {
            if i == 3 {
                Err(Error::plan("test", "sink refuses partition 3"))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("sink refuses partition 3"),
        "{err}"
    );
}

#[test]
fn a_result_larger_than_the_limit_is_a_clear_error() {
    let (dir, _) = fixture(45);
    let spill = tempfile::tempdir().unwrap();
    // One 100 KB block per partition, a 20 KB limit.
    let s = limited(1, Mode::Sync, 100_000, 20_000, spill.path());
    let err = load_gen(&s, dir.path()).compute().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err.root(), Error::MemoryLimit { .. }), "{err:?}");
    assert!(
        msg.contains("read-csv") && msg.contains("--blocksize"),
        "{msg}"
    );
    assert!(
        entries(spill.path()).is_empty(),
        "left behind: {:?}",
        entries(spill.path())
    );
}

#[test]
fn a_spill_folder_that_cannot_be_made_is_reported_before_work() {
    let f = tempfile::NamedTempFile::new().unwrap();
    let bad = f.path().join("spill");
    let err = Session::builder().with_spill_dir(&bad).build().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&*bad.to_string_lossy()), "{msg}");
}

/// A graph of `n` leaves of `rows` Int64 rows each, all summed by one task: every
/// leaf's result waits for the last leaf, so a small budget must spill.
fn wide_graph(n: usize, rows: usize, sabotage: Option<Arc<std::path::PathBuf>>) -> (Graph, Key) {
    let leaf: Arc<str> = "leaf".into();
    let tasks = (0..n)
        .map(|i| {
            let sabotage = sabotage.clone();
            Task {
                key: Key::new(&leaf, i),
                deps: vec![],
                op: FnOperator::new("leaf", move |_| {
                    if let (Some(dir), true) = (&sabotage, i == n / 2) {
                        // The spill folder vanishes mid-run.
                        for e in std::fs::read_dir(dir.as_path()).unwrap() {
                            let _ = std::fs::remove_dir_all(e.unwrap().path());
                        }
                    }
                    // Under sabotage, scrambled (below 2^24), so that LZ4 cannot
                    // shrink the spilled results much.
                    let scramble = sabotage.is_some();
                    let values: Vec<i64> = (0..rows as i64)
                        .map(|r| match scramble {
                            true => {
                                ((r * 64 + i as i64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                                    >> 40
                            }
                            false => (r * i as i64) as u64,
                        } as i64)
                        .collect();
                    let batch = RecordBatch::try_from_iter(vec![(
                        "v",
                        Arc::new(Int64Array::from(values)) as arrow::array::ArrayRef,
                    )])
                    .unwrap();
                    Ok(Value::Batch(batch))
                }),
            }
        })
        .collect::<Vec<_>>();
    let keys: Vec<Key> = tasks.iter().map(|t| t.key.clone()).collect();
    let mut g = Graph::new();
    g.add_layer(Layer { name: leaf, tasks });
    let total: Arc<str> = "total".into();
    let key = Key::new(&total, 0);
    g.add_layer(Layer {
        name: total,
        tasks: vec![Task {
            key: key.clone(),
            deps: keys,
            op: FnOperator::new("total", |inputs: &[Arc<Value>]| {
                let mut s = 0i64;
                for v in inputs {
                    let b = v.as_batch()?;
                    let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                    s += a.values().iter().sum::<i64>();
                }
                Ok(Value::Scalar(datafusion_common::ScalarValue::Int64(Some(
                    s,
                ))))
            }),
        }],
    });
    (g, key)
}

/// Runs `g` for `key` on `threads` threads with a 1 MiB limit and `budget` bytes of
/// results kept in memory, spilling under `spill`.
fn run_wide(
    g: &Graph,
    key: &Key,
    mode: Mode,
    threads: usize,
    budget: u64,
    spill: &Path,
) -> outcore::Result<(Vec<Arc<Value>>, RunStats)> {
    let exec = g.compile(std::slice::from_ref(key)).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let policy = MemoryPolicy {
        limit: 1 << 20,
        spill_dir: spill.to_path_buf(),
    };
    Executor::new(mode, &pool)
        .with_memory(policy, budget)
        .run(&exec)
}

#[test]
fn the_scheduler_spills_waiting_results_and_reads_them_back() {
    let spill = tempfile::tempdir().unwrap();
    let (n, rows) = (64, 1000);
    let (g, key) = wide_graph(n, rows, None);
    let expected: i64 = (0..n as i64)
        .map(|i| i * (rows as i64 - 1) * rows as i64 / 2)
        .sum();
    for (threads, mode) in [(1, Mode::Sync), (2, Mode::Parallel), (4, Mode::Parallel)] {
        // Room for about 8 of the 64 leaf results (8 KB each).
        let (values, stats) = run_wide(&g, &key, mode, threads, 64 << 10, spill.path()).unwrap();
        match values[0].as_ref() {
            Value::Scalar(datafusion_common::ScalarValue::Int64(Some(s))) => {
                assert_eq!(*s, expected, "{mode:?}")
            }
            other => panic!("{other:?}"),
        }
        assert!(stats.spilled_values >= 50, "{mode:?}: {stats:?}");
        assert!(stats.read_back_bytes > 0, "{mode:?}: {stats:?}");
        // The budget holds for waiting results; at the peak, the total task holds
        // its 64 inputs (read back, not paged out again while in use), and the
        // account counts them.
        assert!(
            stats.peak_bytes_held <= 64 * 8200 + 9000,
            "{mode:?}: {stats:?}"
        );
        assert!(
            stats
                .peak_consumers
                .iter()
                .any(|(c, _)| c == "results held"),
            "{mode:?}: {stats:?}"
        );
        assert!(
            entries(spill.path()).is_empty(),
            "left behind: {:?}",
            entries(spill.path())
        );
    }
}

/// Spill records go to segment files held open, so a folder that vanishes
/// mid-run fails the run when the next segment is made: 64 results of 100,000
/// scrambled rows (51 MB before LZ4, more than the 8 MiB of a segment in the
/// half that follows the vanishing) make sure one is.
#[test]
fn a_spill_folder_that_vanishes_mid_run_fails_naming_it_and_leaves_nothing() {
    let spill = tempfile::tempdir().unwrap();
    let (g, key) = wide_graph(64, 100_000, Some(Arc::new(spill.path().to_path_buf())));
    let err = run_wide(&g, &key, Mode::Sync, 1, 16 << 10, spill.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&*spill.path().to_string_lossy()),
        "the error does not name the spill folder: {msg}"
    );
    assert!(
        entries(spill.path()).is_empty(),
        "left behind: {:?}",
        entries(spill.path())
    );
}

#[test]
fn reads_are_held_back_while_memory_is_short() {
    let spill = tempfile::tempdir().unwrap();
    let (g, key) = wide_graph(64, 1000, None);
    let (_, stats) = run_wide(&g, &key, Mode::Parallel, 4, 32 << 10, spill.path()).unwrap();
    assert!(stats.reads_held_back > 0, "{stats:?}");
}

/// A sink slower than the workers sets the pace: finished outputs do not pile up,
/// whether the outputs read from nothing or, as a shuffle's readers, wait on a
/// barrier's empty marker.
#[test]
fn a_slow_sink_holds_back_sources_instead_of_piling_up_outputs() {
    let spill = tempfile::tempdir().unwrap();
    let threads = 3;
    for behind_a_barrier in [false, true] {
        let mut g = Graph::new();
        let barrier: Arc<str> = "barrier".into();
        let mut deps = Vec::new();
        if behind_a_barrier {
            g.add_layer(Layer {
                name: barrier.clone(),
                tasks: vec![Task {
                    key: Key::new(&barrier, 0),
                    deps: vec![],
                    op: FnOperator::new("barrier", |_| Ok(Value::Pieces(Vec::new()))),
                }],
            });
            deps.push(Key::new(&barrier, 0));
        }
        let name: Arc<str> = "part".into();
        let n = 40;
        g.add_layer(Layer {
            name: name.clone(),
            tasks: (0..n)
                .map(|i| Task {
                    key: Key::new(&name, i),
                    deps: deps.clone(),
                    op: FnOperator::new("part", move |_| {
                        let a = Int64Array::from_iter_values((0..10_000).map(|v| v + i as i64));
                        Ok(Value::Batch(RecordBatch::try_from_iter([(
                            "v",
                            Arc::new(a) as _,
                        )])?))
                    }),
                })
                .collect(),
        });
        let keys: Vec<Key> = (0..n).map(|i| Key::new(&name, i)).collect();
        let exec = g.compile(&keys).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let policy = MemoryPolicy {
            limit: 1 << 30,
            spill_dir: spill.path().to_path_buf(),
        };
        let seen = std::sync::Mutex::new(Vec::new());
        let stats = Executor::new(Mode::Parallel, &pool)
            .with_memory(policy, 1 << 30)
            .run_streaming(&exec, &|i, v| {
                std::thread::sleep(std::time::Duration::from_millis(5));
                let b = v.as_batch()?;
                let first = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .value(0);
                seen.lock().unwrap().push((i, first));
                Ok(())
            })
            .unwrap();
        let seen = seen.into_inner().unwrap();
        assert_eq!(
            seen,
            (0..n).map(|i| (i, i as i64)).collect::<Vec<_>>(),
            "in order, every partition"
        );
        // At most two waiting outputs a thread, the running tasks' results, the
        // barrier, and the one being handed over.
        assert!(
            stats.peak_results_held <= 2 * threads + threads + 2,
            "barrier {behind_a_barrier}: {stats:?}"
        );
        assert!(stats.reads_held_back > 0, "{stats:?}");
    }
}

//! The memory limit measured from outside (issue 12): the `outcore` binary runs as
//! a child process on a small matrix of query shapes over inputs a few times the
//! limit, and its peak RSS, read by GNU `time -f %M`, must stay within 1.25 × the
//! limit plus the binary's baseline (the peak RSS of a trivial run). `--stats`
//! figures explain; this is the proof.
//!
//! Every shape is held to that bound; each one's figures (peak RSS, the ratio,
//! `--stats`) go to stderr. Measured on a debug build with 2 threads (2026-12-05,
//! five runs), peak RSS above the baseline over the limit: groupby-few 0.25–0.26,
//! groupby-many 0.69–0.70, groupby-many-table 0.79–0.83, median 0.71–0.74,
//! join-many 0.55, hot-key 0.17–0.18, set-index 0.87, sort 0.90, set-index-nulls
//! 1.07–1.20, bag-groupby 0.11–0.14. Until then the groupbys of a group per row
//! were held to 1.5 × only (1.11–1.23 × with five runs of this test at once on
//! 2026-12-03, 1.14–1.15 × alone). The binary's code pages a run touches beyond the
//! trivial baseline run's are about 4 MiB of that in a debug build.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The limit the matrix runs under.
const LIMIT_MB: u64 = 16;

fn outcore_bin() -> &'static str {
    env!("CARGO_BIN_EXE_outcore")
}

/// GNU time, if installed (`time -f` is GNU's; BSD's has no `-f`).
fn gnu_time() -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin/time");
    let ok = Command::new(&path)
        .args(["-f", "%M", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(path)
}

/// Runs `outcore args` under GNU time; returns its peak RSS in KiB, whether it
/// succeeded, and its stderr.
fn peak_rss_kib(time: &Path, scratch: &Path, args: &[&str]) -> (u64, bool, String) {
    let report = scratch.join("time.txt");
    let out = Command::new(time)
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&report)
        .arg(outcore_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("GNU time runs outcore");
    let text = std::fs::read_to_string(&report).unwrap();
    // GNU time writes "Command exited with non-zero status N" before the figure.
    let kib = text
        .lines()
        .rev()
        .find_map(|l| l.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {text:?}"));
    (
        kib,
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn generate(dir: &Path) {
    let g1 = dir.join("g1");
    let rec = dir.join("rec");
    for args in [
        vec![
            "datasets", "groupby", "--rows", "7e5", "--files", "4", "--out",
        ],
        vec![
            "datasets",
            "records",
            "--records",
            "1.4e5",
            "--files",
            "4",
            "--out",
        ],
    ] {
        let target = if args[1] == "groupby" { &g1 } else { &rec };
        let st = Command::new(outcore_bin())
            .args(&args)
            .arg(target)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "{args:?}");
    }
    // 4 rows for each of id6's values (1..=7000 at this size): many matches per key.
    let mut right = String::from("id6,w\n");
    for k in 1..=7000 {
        for j in 0..4 {
            right.push_str(&format!("{k},{j}\n"));
        }
    }
    std::fs::write(dir.join("right.csv"), right).unwrap();
    // Issue 13's hot key: one key value with 30,000 rows on the left and 1,000 on
    // the right, 3e7 joined rows (about 700 MB were they held at once).
    let mut hot_left = String::from("k,v\n");
    for i in 0..30_000 {
        hot_left.push_str(&format!("1,{i}\n"));
    }
    let mut hot_right = String::from("k,w\n");
    for j in 0..1_000 {
        hot_right.push_str(&format!("1,{j}\n"));
    }
    std::fs::write(dir.join("hot_left.csv"), hot_left).unwrap();
    std::fs::write(dir.join("hot_right.csv"), hot_right).unwrap();
    // Issue 13's 90 %-null index: 2e6 rows (35 MB), `k` set one row in ten.
    let mut nulls = String::with_capacity(36 << 20);
    nulls.push_str("id,k,v\n");
    for i in 0u64..2_000_000 {
        let mixed = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
        if mixed % 10 == 0 {
            nulls.push_str(&format!("{i},{},{}\n", mixed % 1_000_000, mixed % 997));
        } else {
            nulls.push_str(&format!("{i},,{}\n", mixed % 997));
        }
    }
    std::fs::write(dir.join("nulls.csv"), nulls).unwrap();
    std::fs::write(dir.join("tiny.csv"), "a,b\n1,2\n").unwrap();
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn peak_rss_stays_within_the_limit_across_query_shapes() {
    let Some(time) = gnu_time() else {
        eprintln!("SKIP peak_rss_stays_within_the_limit_across_query_shapes: GNU time (/usr/bin/time) is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d);
    let limit = LIMIT_MB << 20;
    for sub in ["g1", "rec"] {
        let bytes = dir_bytes(&d.join(sub));
        assert!(
            bytes >= 2 * limit,
            "{sub}: {bytes} bytes is under twice the limit"
        );
    }
    let spill = d.join("spill");
    let (g1, rec) = (
        format!("{}/g1/*.csv", d.display()),
        format!("{}/rec/*.json", d.display()),
    );
    let right = d.join("right.csv").display().to_string();
    let tiny = d.join("tiny.csv").display().to_string();
    let nulls = d.join("nulls.csv").display().to_string();
    let hot_left = d.join("hot_left.csv").display().to_string();
    let hot_right = d.join("hot_right.csv").display().to_string();
    let (baseline, ok, err) = peak_rss_kib(&time, d, &["query", &tiny]);
    assert!(ok, "{err}");
    let limit_arg = format!("{LIMIT_MB}MB");
    let spill_arg = spill.display().to_string();
    let common = [
        "--memory-limit",
        &limit_arg,
        "--spill-dir",
        &spill_arg,
        "--stats",
    ];
    let many = vec![
        "query",
        &g1,
        "--groupby",
        "id1,id2,id3,id4,id5,id6",
        "--agg",
        "sum(v3), size()",
    ];
    let shapes: Vec<(&str, Vec<&str>)> = vec![
        (
            "groupby-few",
            vec!["query", &g1, "--groupby", "id1", "--agg", "sum(v1)"],
        ),
        ("groupby-many", [&many[..], &["--format", "csv"]].concat()),
        // The default output: a table.
        ("groupby-many-table", many.clone()),
        (
            "median",
            vec![
                "query",
                &g1,
                "--groupby",
                "id3",
                "--agg",
                "median(v3)",
                "--format",
                "csv",
            ],
        ),
        (
            "join-many",
            vec![
                "query",
                &g1,
                "--join",
                &right,
                "--on",
                "id6",
                "--groupby",
                "id1",
                "--agg",
                "sum(v1), sum(w)",
            ],
        ),
        (
            "hot-key",
            vec![
                "query",
                &hot_left,
                "--join",
                &hot_right,
                "--on",
                "k",
                "--agg",
                "size() as n, sum(v) as v, sum(w) as w",
            ],
        ),
        (
            "set-index",
            vec!["query", &g1, "--set-index", "v3", "--format", "csv"],
        ),
        (
            "sort",
            vec!["query", &g1, "--sort", "v3", "--format", "csv"],
        ),
        (
            "set-index-nulls",
            vec!["query", &nulls, "--set-index", "k", "--format", "csv"],
        ),
        (
            "bag-groupby",
            vec![
                "bag",
                &rec,
                "--groupby",
                "name",
                "--agg",
                "count(), mean(age)",
            ],
        ),
    ];
    // Bytes in KiB, as GNU time reports them.
    let bound = (limit * 5 / 4) / 1024 + baseline;
    let mut failures = Vec::new();
    eprintln!(
        "peak RSS at --memory-limit {LIMIT_MB}MB; baseline {baseline} KiB; bound {bound} KiB"
    );
    for (name, mut args) in shapes {
        args.extend(common);
        let (kib, ok, err) = peak_rss_kib(&time, d, &args);
        let stats = err.lines().find(|l| l.starts_with("stats:")).unwrap_or("");
        let ratio = (kib.saturating_sub(baseline)) as f64 / (limit / 1024) as f64;
        let line = format!(
            "{name}: peak RSS {kib} KiB ({ratio:.2} × limit above baseline), {}; {stats}",
            if ok { "answered" } else { "failed" }
        );
        if ok && kib <= bound {
            eprintln!("holds: {line}");
        } else {
            eprintln!("FAILS: {line}\n{err}");
            failures.push(line);
        }
    }
    assert!(
        std::fs::read_dir(&spill).map_or(true, |mut r| r.next().is_none()),
        "spill folders left behind"
    );
    assert!(
        failures.is_empty(),
        "over the bound {bound} KiB:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// The account, in process: a refused reservation pages results out first, fails
// naming the operator when nothing can give, and a full disk while spilling fails
// naming the spill folder and leaves nothing behind.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use outcore::graph::{FnOperator, Graph, Key, Layer, Task, Value};
use outcore::scheduler::{Executor, MemoryPolicy, Mode, RunStats};

fn sum_inputs(inputs: &[Arc<Value>]) -> outcore::Result<i64> {
    let mut s = 0i64;
    for v in inputs {
        match v.as_ref() {
            Value::Scalar(datafusion_common::ScalarValue::Int64(Some(x))) => s += x,
            other => {
                let b = other.as_batch()?;
                let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                s += a.values().iter().sum::<i64>();
            }
        }
    }
    Ok(s)
}

/// `n` leaves of `rows` Int64 values each. A `total` task sums the first half
/// (after a `gate` that needs the second half, so every leaf has run), reserving `reserve` bytes as operator "test operator"; a `final` task sums
/// the total and the second half, whose results wait in the cache meanwhile (so
/// they can be paged out to grant the reservation).
fn leaves_then_total(n: usize, rows: usize, reserve: u64) -> (Graph, Key) {
    let leaf: Arc<str> = "leaf".into();
    let tasks: Vec<Task> = (0..n)
        .map(|i| Task {
            key: Key::new(&leaf, i),
            deps: vec![],
            op: FnOperator::new("leaf", move |_| {
                let a = Int64Array::from_iter_values((0..rows as i64).map(|r| r + i as i64));
                Ok(Value::Batch(RecordBatch::try_from_iter([(
                    "v",
                    Arc::new(a) as _,
                )])?))
            }),
        })
        .collect();
    let keys: Vec<Key> = tasks.iter().map(|t| t.key.clone()).collect();
    let mut g = Graph::new();
    g.add_layer(Layer { name: leaf, tasks });
    let gate: Arc<str> = "gate".into();
    g.add_layer(Layer {
        name: gate.clone(),
        tasks: vec![Task {
            key: Key::new(&gate, 0),
            deps: keys[n / 2..].to_vec(),
            op: FnOperator::new("gate", |_| {
                Ok(Value::Scalar(datafusion_common::ScalarValue::Int64(Some(
                    0,
                ))))
            }),
        }],
    });
    let total: Arc<str> = "total".into();
    g.add_layer(Layer {
        name: total.clone(),
        tasks: vec![Task {
            key: Key::new(&total, 0),
            // The gate too, so that every leaf has run when the total does.
            deps: keys[..n / 2]
                .iter()
                .chain([&Key::new(&gate, 0)])
                .cloned()
                .collect(),
            op: FnOperator::new("total", move |inputs: &[Arc<Value>]| {
                outcore::scheduler::reserve("test operator", reserve)?;
                Ok(Value::Scalar(datafusion_common::ScalarValue::Int64(Some(
                    sum_inputs(inputs)?,
                ))))
            }),
        }],
    });
    let fin: Arc<str> = "final".into();
    let key = Key::new(&fin, 0);
    let mut deps = vec![Key::new(&total, 0)];
    deps.extend_from_slice(&keys[n / 2..]);
    g.add_layer(Layer {
        name: fin,
        tasks: vec![Task {
            key: key.clone(),
            deps,
            op: FnOperator::new("final", |inputs: &[Arc<Value>]| {
                Ok(Value::Scalar(datafusion_common::ScalarValue::Int64(Some(
                    sum_inputs(inputs)?,
                ))))
            }),
        }],
    });
    (g, key)
}

fn run_total(
    g: &Graph,
    key: &Key,
    mode: Mode,
    limit: u64,
    spill: &Path,
    fail_spill_after: Option<u64>,
) -> outcore::Result<(i64, RunStats)> {
    let exec = g.compile(std::slice::from_ref(key)).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let policy = MemoryPolicy {
        limit,
        spill_dir: spill.to_path_buf(),
    };
    let mut ex = Executor::new(mode, &pool).with_memory(policy, limit);
    if let Some(b) = fail_spill_after {
        ex = ex.with_spill_write_failure_after(b);
    }
    let (values, stats) = ex.run(&exec)?;
    match values[0].as_ref() {
        Value::Scalar(datafusion_common::ScalarValue::Int64(Some(s))) => Ok((*s, stats)),
        other => panic!("{other:?}"),
    }
}

fn expected_total(n: usize, rows: usize) -> i64 {
    (0..n as i64)
        .map(|i| (0..rows as i64).map(|r| r + i).sum::<i64>())
        .sum()
}

fn empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

/// The leaves' results (16 × ~8 KiB) wait in the cache; the total's reservation
/// of 200 KiB under a 256 KiB limit is granted by paging them out (the inputs the
/// task holds stay, so the reservation must leave room for them).
#[test]
fn a_refused_reservation_pages_results_out_and_the_answer_stands() {
    let spill = tempfile::tempdir().unwrap();
    let (n, rows) = (16, 1000);
    let (g, key) = leaves_then_total(n, rows, 100 << 10);
    for mode in [Mode::Sync, Mode::Parallel] {
        let (total, stats) = run_total(&g, &key, mode, 256 << 10, spill.path(), None).unwrap();
        assert_eq!(total, expected_total(n, rows), "{mode:?}");
        assert!(
            stats.spilled_values > 0,
            "{mode:?}: nothing paged out: {stats:?}"
        );
        assert!(stats.peak_reserved <= 256 << 10, "{mode:?}: {stats:?}");
        assert!(
            stats
                .peak_consumers
                .iter()
                .any(|(c, _)| c.starts_with("task total")),
            "{mode:?}: {stats:?}"
        );
        assert!(empty(spill.path()), "{mode:?}: spill files left behind");
    }
}

#[test]
fn a_reservation_nothing_can_make_room_for_names_the_operator() {
    let spill = tempfile::tempdir().unwrap();
    let (g, key) = leaves_then_total(4, 100, 5 << 20);
    for mode in [Mode::Sync, Mode::Parallel] {
        let err = run_total(&g, &key, mode, 4 << 20, spill.path(), None).unwrap_err();
        let msg = format!("{err}: {}", err.root());
        assert!(
            msg.contains("test operator needs 5.0 MiB more")
                && msg.contains("of the 4.0 MiB memory limit is reserved")
                && msg.contains("raise --memory-limit"),
            "{mode:?}: {msg}"
        );
        assert!(empty(spill.path()), "{mode:?}: spill files left behind");
    }
}

/// A full disk while paging results out: the error names the spill folder, and
/// the folder (with any partial file) is gone after the run.
#[test]
fn a_full_disk_while_spilling_names_the_spill_folder_and_leaves_nothing() {
    let spill = tempfile::tempdir().unwrap();
    let (g, key) = leaves_then_total(32, 1000, 0);
    for mode in [Mode::Sync, Mode::Parallel] {
        let err = run_total(&g, &key, mode, 64 << 10, spill.path(), Some(10_000)).unwrap_err();
        let msg = format!("{err}: {}", err.root());
        assert!(
            msg.contains("cannot spill to")
                && msg.contains(&*spill.path().to_string_lossy())
                && msg.contains("--spill-dir"),
            "{mode:?}: {msg}"
        );
        assert!(
            empty(spill.path()),
            "{mode:?}: left behind after a full disk"
        );
    }
}

/// The compiled graph is counted: 20,000 leaves make a graph of a few MB, which the
/// account reserves as "task graph" for the run (its largest consumer here, since
/// each leaf's value is a few bytes), so the caches get that much less.
#[test]
fn the_task_graph_is_reserved_while_it_runs() {
    let spill = tempfile::tempdir().unwrap();
    let (n, rows) = (20_000, 1);
    let (g, key) = leaves_then_total(n, rows, 0);
    let graph_bytes = g
        .compile(std::slice::from_ref(&key))
        .unwrap()
        .approx_bytes();
    assert!(graph_bytes >= 20_000 * 64, "{graph_bytes} bytes");
    let (total, stats) =
        run_total(&g, &key, Mode::Parallel, 256 << 20, spill.path(), None).unwrap();
    assert_eq!(total, expected_total(n, rows));
    let reserved = stats
        .peak_consumers
        .iter()
        .find(|(name, _)| name == "task graph")
        .map(|(_, b)| *b);
    assert!(
        reserved.is_some_and(|b| b >= graph_bytes),
        "graph of {graph_bytes} bytes; peak consumers {:?}",
        stats.peak_consumers
    );
}

/// A read that says what it needs ([`Operator::working_bytes`]) and makes a
/// scalar: the smallest reservation its runs saw goes to `least`.
struct SizedRead {
    needs: u64,
    least: Arc<std::sync::atomic::AtomicU64>,
}

impl outcore::graph::Operator for SizedRead {
    fn name(&self) -> &str {
        "sized-read"
    }
    fn working_bytes(&self) -> Option<u64> {
        Some(self.needs)
    }
    fn run(&self, _: &[Arc<Value>]) -> outcore::Result<Value> {
        let held = outcore::scheduler::task_reserved();
        self.least
            .fetch_min(held, std::sync::atomic::Ordering::Relaxed);
        Ok(Value::Scalar(datafusion_common::ScalarValue::Int64(Some(
            1,
        ))))
    }
}

/// Every read is admitted with what its operator says it needs, not with three
/// times the mean read result so far: a read fused with an aggregation's chunk
/// step makes a partial, whose size says nothing of the block it reads (a bag
/// read that filters everything out makes nothing; q3's partials said twice its
/// block's columns).
#[test]
fn reads_are_admitted_with_what_their_operator_needs() {
    let spill = tempfile::tempdir().unwrap();
    let n = 8;
    let needs = 1 << 20;
    for mode in [Mode::Sync, Mode::Parallel] {
        let least = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
        let read: Arc<str> = "read".into();
        let tasks: Vec<Task> = (0..n)
            .map(|i| Task {
                key: Key::new(&read, i),
                deps: vec![],
                op: Arc::new(SizedRead {
                    needs,
                    least: least.clone(),
                }),
            })
            .collect();
        let deps = tasks.iter().map(|t| t.key.clone()).collect();
        let mut g = Graph::new();
        g.add_layer(Layer { name: read, tasks });
        let total: Arc<str> = "total".into();
        let key = Key::new(&total, 0);
        g.add_layer(Layer {
            name: total,
            tasks: vec![Task {
                key: key.clone(),
                deps,
                op: FnOperator::new("total", |inputs| {
                    Ok(Value::Scalar(datafusion_common::ScalarValue::Int64(Some(
                        sum_inputs(inputs)?,
                    ))))
                }),
            }],
        });
        let (sum, _) = run_total(&g, &key, mode, 64 << 20, spill.path(), None).unwrap();
        assert_eq!(sum, n as i64, "{mode:?}");
        let least = least.load(std::sync::atomic::Ordering::Relaxed);
        assert!(least >= needs, "{mode:?}: a read ran on {least} bytes");
    }
}

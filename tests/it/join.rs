//! merge: every join type under every strategy (partition-wise, broadcast of either
//! side, hash shuffle) against a naive nested-loop join written here, with pandas'
//! rules (null keys match each other, `_x`/`_y` suffixes, one column for a key named
//! alike); errors for keys that cannot meet; a tiny memory limit.

use std::path::Path;

use arrow::datatypes::DataType;
use datafusion_common::ScalarValue;
use outcore::frame::{How, JoinStrategy, MergeOptions, SetIndexOptions};
use outcore::scheduler::Mode;
use outcore::{DataFrame, Session};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::common::*;

const HOWS: [How; 4] = [How::Inner, How::Left, How::Right, How::Outer];

/// The right table: `id` (some of the left's keys, some its own, a few nulls),
/// `w` (int) and `s` (a word, clashing with the left's `s`).
fn right_table(seed: u64, rows: usize) -> Table {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut t = Table::new(&["id", "w", "s"]);
    for i in 0..rows {
        let id = if i > 0 && rng.random_bool(0.05) {
            Cell::Null
        } else {
            Cell::Int(rng.random_range(-4..16))
        };
        t.rows.push(vec![
            id,
            Cell::Int(rng.random_range(-50..50)),
            Cell::Str(["a", "bb", "c"][rng.random_range(0..3)].to_string()),
        ]);
    }
    t
}

struct Fixture {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    left_dir: std::path::PathBuf,
    right_dir: std::path::PathBuf,
    left: Table,
    right: Table,
}

fn fixture(seed: u64, left_rows: usize, right_rows: usize) -> Fixture {
    let (ld, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let left = gen_table(seed, &GenOpts::new(left_rows).nulls(0.05, 0.1));
    left.write_files(ld.path(), 3);
    let right = right_table(seed + 1, right_rows);
    right.write_files(rd.path(), 2);
    Fixture {
        left_dir: ld.path().to_path_buf(),
        right_dir: rd.path().to_path_buf(),
        _dirs: (ld, rd),
        left,
        right,
    }
}

fn load_right(s: &Session, dir: &Path) -> DataFrame {
    s.read_csv(glob_of(dir)).load().unwrap()
}

/// pandas' merge on `id` by nested loops: left columns (`s` → `s_x`), then the
/// right's `w`, `s_y`; the key is the left's, or the right's where no left row.
fn naive_merge(l: &Table, r: &Table, how: How) -> Vec<Vec<Cell>> {
    let (lid, rid) = (l.idx("id"), r.idx("id"));
    let mut out = Vec::new();
    let mut right_matched = vec![false; r.rows.len()];
    for lrow in &l.rows {
        let mut any = false;
        for (j, rrow) in r.rows.iter().enumerate() {
            if lrow[lid] == rrow[rid] {
                any = true;
                right_matched[j] = true;
                let mut row = lrow.clone();
                row.extend([rrow[1].clone(), rrow[2].clone()]);
                out.push(row);
            }
        }
        if !any && matches!(how, How::Left | How::Outer) {
            let mut row = lrow.clone();
            row.extend([Cell::Null, Cell::Null]);
            out.push(row);
        }
    }
    if matches!(how, How::Right | How::Outer) {
        for (j, rrow) in r.rows.iter().enumerate() {
            if !right_matched[j] {
                let mut row = vec![Cell::Null; l.columns.len()];
                row[lid] = rrow[rid].clone();
                row.extend([rrow[1].clone(), rrow[2].clone()]);
                out.push(row);
            }
        }
    }
    out.sort();
    out
}

fn check(joined: &DataFrame, f: &Fixture, how: How, what: &str) {
    let names: Vec<String> = joined.columns();
    assert_eq!(
        names,
        ["i", "name", "id", "flag", "ts", "x", "v", "s_x", "w", "s_y"],
        "{what}"
    );
    let (parts, _) = joined.compute_partitions().unwrap();
    let mut got: Vec<Vec<Cell>> = parts.iter().flat_map(batch_rows).collect();
    got.sort();
    let expected = naive_merge(&f.left, &f.right, how);
    assert_eq!(got.len(), expected.len(), "{what}: row count");
    for (g, e) in got.iter().zip(&expected) {
        assert_cells(g, e, what);
    }
}

#[test]
fn every_join_type_under_every_strategy_matches_the_naive_join() {
    let f = fixture(21, 900, 300);
    for (threads, mode, blocksize) in [(1, Mode::Sync, 3000), (3, Mode::Parallel, 20_000)] {
        let s = session(threads, mode, blocksize);
        let (l, r) = (load_gen(&s, &f.left_dir), load_right(&s, &f.right_dir));
        for how in HOWS {
            let what = |st: &str| format!("{} {st} {threads}", how.name());
            check(&l.merge(&r, &["id"], how).unwrap(), &f, how, &what("auto"));
            let mut strategies = vec![JoinStrategy::Shuffle];
            if matches!(how, How::Inner | How::Left) {
                strategies.push(JoinStrategy::BroadcastRight);
            }
            if matches!(how, How::Inner | How::Right) {
                strategies.push(JoinStrategy::BroadcastLeft);
            }
            for st in strategies {
                let joined = l
                    .merge_with(&r, MergeOptions::on(&["id"]).how(how).strategy(st))
                    .unwrap();
                check(&joined, &f, how, &what(&format!("{st:?}")));
            }
            // An impossible forced strategy is refused.
            if how == How::Outer {
                let e = l
                    .merge_with(
                        &r,
                        MergeOptions::on(&["id"])
                            .how(how)
                            .strategy(JoinStrategy::BroadcastRight),
                    )
                    .unwrap_err()
                    .to_string();
                assert!(e.contains("outer"), "{e}");
            }
        }
    }
}

/// Both sides indexed by the key with the same divisions: joined partition by
/// partition, nothing shuffled, the left's index kept for inner and left joins.
#[test]
fn same_divisions_join_partition_wise() {
    let f = fixture(22, 800, 250);
    let s = session(2, Mode::Parallel, 4096);
    let divisions: Vec<ScalarValue> = [-4i64, 0, 3, 8, 16]
        .into_iter()
        .map(|v| ScalarValue::Int64(Some(v)))
        .collect();
    let opts = || SetIndexOptions::default().divisions(divisions.clone());
    let l = load_gen(&s, &f.left_dir)
        .set_index_with("id", opts())
        .unwrap();
    let r = load_right(&s, &f.right_dir)
        .set_index_with("id", opts())
        .unwrap();
    for how in HOWS {
        let joined = l
            .merge_with(
                &r,
                MergeOptions::on(&["id"])
                    .how(how)
                    .strategy(JoinStrategy::PartitionWise),
            )
            .unwrap();
        assert_eq!(joined.npartitions(), 4);
        let auto = l.merge(&r, &["id"], how).unwrap();
        assert_eq!(
            auto.divisions().is_some(),
            matches!(how, How::Inner | How::Left),
            "{}",
            how.name()
        );
        check(&joined, &f, how, &format!("partition-wise {}", how.name()));
        check(&auto, &f, how, &format!("auto {}", how.name()));
    }
}

#[test]
fn left_on_right_on_keeps_both_keys_and_widths_meet() {
    let f = fixture(23, 400, 150);
    let s = session(2, Mode::Parallel, 4096);
    let l = load_gen(&s, &f.left_dir);
    // The right's key renamed to `k` and read as 32-bit integers.
    let r = s
        .read_csv(glob_of(&f.right_dir))
        .with_dtype("id", DataType::Int32)
        .load()
        .unwrap()
        .select_exprs(vec![
            (outcore::expr::col("id"), "k".into()),
            (outcore::expr::col("w"), "w".into()),
        ])
        .unwrap();
    let joined = l
        .merge_with(
            &r,
            MergeOptions::left_right(&["id"], &["k"]).how(How::Inner),
        )
        .unwrap();
    assert_eq!(joined.columns().last().map(String::as_str), Some("w"));
    let got = joined.compute().unwrap();
    let expected = naive_merge(&f.left, &f.right, How::Inner);
    assert_eq!(got.num_rows(), expected.len());
    // Every row's two keys are equal.
    assert_eq!(cells(&got, "id"), cells(&got, "k"));
}

#[test]
fn keys_that_cannot_meet_are_an_error_naming_both() {
    let f = fixture(24, 50, 20);
    let s = session(1, Mode::Sync, 1 << 20);
    let l = load_gen(&s, &f.left_dir);
    let r = load_right(&s, &f.right_dir);
    let e = l
        .merge_with(&r, MergeOptions::left_right(&["name"], &["id"]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"name\" (Utf8)") && e.contains("\"id\" (Int64)"),
        "{e}"
    );
    let e = l.merge(&r, &["nope"], How::Inner).unwrap_err().to_string();
    assert!(e.contains("nope"), "{e}");
    let e = How::parse("sideways").unwrap_err().to_string();
    assert!(e.contains("inner, left, right or outer"), "{e}");
}

#[test]
fn shuffle_join_under_a_tiny_memory_limit() {
    // 4000 × 100 rows on 20 keys: about 20,000 joined rows, megabytes in all.
    let f = fixture(25, 4000, 100);
    let spill = tempfile::tempdir().unwrap();
    let s = Session::builder()
        .with_threads(2)
        .with_blocksize(16 * 1024)
        .tiny_memory_limit(1 << 20)
        .with_spill_dir(spill.path())
        .build()
        .unwrap();
    let (l, r) = (load_gen(&s, &f.left_dir), load_right(&s, &f.right_dir));
    assert!(l.npartitions() > 4);
    let joined = l.merge(&r, &["id"], How::Outer).unwrap();
    let (_, stats) = joined.compute_partitions().unwrap();
    assert!(stats.shuffled_bytes > 0, "{stats:?}");
    assert!(stats.shuffle_disk_bytes > 0, "{stats:?}");
    check(&joined, &f, How::Outer, "tiny limit");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]
    #[test]
    fn joins_do_not_depend_on_partitioning(
        seed in 0u64..500,
        left_rows in 0usize..300,
        right_rows in 0usize..120,
        blocksize in 64u64..4000,
        threads in 1usize..4,
        how in 0usize..4,
    ) {
        let f = fixture(seed, left_rows, right_rows);
        let s = session(threads, Mode::Parallel, blocksize);
        let (l, r) = (load_gen(&s, &f.left_dir), load_right(&s, &f.right_dir));
        let how = HOWS[how];
        if left_rows > 0 && right_rows > 0 {
            let joined = l
                .merge_with(&r, MergeOptions::on(&["id"]).how(how).strategy(JoinStrategy::Shuffle))
                .unwrap();
            check(&joined, &f, how, "property");
        }
    }
}

/// Columns not read after a merge are not read before it either; the answer's names
/// stay as pandas gives them (a suffixed pair keeps both sides).
#[test]
fn a_merge_reads_only_the_columns_used_after_it() {
    let f = fixture(26, 500, 200);
    let s = session(2, Mode::Parallel, 4096);
    let (l, r) = (load_gen(&s, &f.left_dir), load_right(&s, &f.right_dir));
    for how in HOWS {
        let joined = l.merge(&r, &["id"], how).unwrap();
        let picked = joined.select(&["id", "w", "s_y"]).unwrap();
        assert_eq!(picked.read_columns(), ["id", "s"], "{}", how.name());
        let got = picked.compute().unwrap();
        let mut got: Vec<Vec<Cell>> = batch_rows(&got);
        got.sort();
        let mut expected: Vec<Vec<Cell>> = naive_merge(&f.left, &f.right, how)
            .into_iter()
            .map(|r| vec![r[2].clone(), r[8].clone(), r[9].clone()])
            .collect();
        expected.sort();
        assert_eq!(got.len(), expected.len(), "{}", how.name());
        for (g, e) in got.iter().zip(&expected) {
            assert_cells(g, e, how.name());
        }
        // Counting rows reads only the keys.
        let counted = joined.agg(&[outcore::agg::size()]).unwrap();
        assert_eq!(counted.read_columns(), ["id"]);
        let n = cells(&counted.compute().unwrap(), "size")[0].clone();
        assert_eq!(n, Cell::Int(expected.len() as i64), "{}", how.name());
    }
}

// ---------------------------------------------------------------------------
// Grace hash join (issue 13): a build side that does not fit is partitioned into
// spilled buckets, recursively, and a hot key's build rows are probed in chunks;
// every path answers as the naive join, and says it ran.

/// A session spilling under `spill`.
fn spilling_session(threads: usize, mode: Mode, blocksize: u64, spill: &Path) -> Session {
    Session::builder()
        .with_threads(threads)
        .with_scheduler(mode)
        .with_blocksize(blocksize)
        .with_spill_dir(spill)
        .build()
        .unwrap()
}

fn empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut r| r.next().is_none())
}

/// Caps on the build side that force each path: buckets that fit after a level
/// or two (a few KiB), and a cap nothing fits under (every bucket down to the
/// last level, then build rows one chunk at a time).
#[test]
fn grace_join_spills_buckets_and_chunks_and_matches_the_naive_join() {
    let f = fixture(31, 1200, 400);
    let spill = tempfile::tempdir().unwrap();
    for (threads, mode) in [(1, Mode::Sync), (2, Mode::Parallel)] {
        let s = spilling_session(threads, mode, 4000, spill.path());
        let (l, r) = (load_gen(&s, &f.left_dir), load_right(&s, &f.right_dir));
        for how in HOWS {
            for (cap, chunks) in [(6_000u64, false), (1, true)] {
                let what = format!("{} cap {cap} {mode:?}", how.name());
                let joined = l
                    .merge_with(
                        &r,
                        MergeOptions::on(&["id"])
                            .how(how)
                            .strategy(JoinStrategy::Shuffle)
                            .max_build_bytes(cap),
                    )
                    .unwrap();
                let (_, stats) = joined.compute_partitions().unwrap();
                assert!(stats.join_buckets_spilled > 0, "{what}: {stats:?}");
                assert_eq!(stats.join_build_chunks > 0, chunks, "{what}: {stats:?}");
                check(&joined, &f, how, &what);
                assert!(empty_dir(spill.path()), "{what}: files left behind");
            }
        }
    }
}

/// One key with 400 rows on each side (160,000 output rows, more than two output
/// batches) beside ordinary keys: aggregated, it answers as the naive join on every
/// path, and the output of the key streams into the aggregation.
#[test]
fn a_hot_key_streams_on_every_path() {
    let (ld, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut left = String::from("k,v\n");
    let mut right = String::from("k,w\n");
    let (mut lrows, mut rrows) = (Vec::new(), Vec::new());
    for i in 0..600i64 {
        let k = if i < 400 { 7 } else { i % 13 };
        left.push_str(&format!("{k},{i}\n"));
        lrows.push((k, i));
    }
    for j in 0..450i64 {
        let k = if j < 400 { 7 } else { 20 + j % 5 };
        right.push_str(&format!("{k},{}\n", j % 17));
        rrows.push((k, j % 17));
    }
    std::fs::write(ld.path().join("l.csv"), left).unwrap();
    std::fs::write(rd.path().join("r.csv"), right).unwrap();
    let spill = tempfile::tempdir().unwrap();
    let s = spilling_session(2, Mode::Parallel, 1024, spill.path());
    let l = s.read_csv(glob_of(ld.path())).load().unwrap();
    let r = s.read_csv(glob_of(rd.path())).load().unwrap();
    for how in HOWS {
        // The naive answer: rows, sum of v, sum of w (nulls left out), by nested loops.
        let (mut n, mut sv, mut sw) = (0i64, 0i64, 0i64);
        let mut right_hit = vec![false; rrows.len()];
        for &(lk, v) in &lrows {
            let mut any = false;
            for (j, &(rk, w)) in rrows.iter().enumerate() {
                if lk == rk {
                    (n, sv, sw) = (n + 1, sv + v, sw + w);
                    any = true;
                    right_hit[j] = true;
                }
            }
            if !any && matches!(how, How::Left | How::Outer) {
                (n, sv) = (n + 1, sv + v);
            }
        }
        if matches!(how, How::Right | How::Outer) {
            for (j, &(_, w)) in rrows.iter().enumerate() {
                if !right_hit[j] {
                    (n, sw) = (n + 1, sw + w);
                }
            }
        }
        let forced: [(Option<JoinStrategy>, Option<u64>); 3] = [
            (None, None),
            (Some(JoinStrategy::Shuffle), None),
            (Some(JoinStrategy::Shuffle), Some(1)),
        ];
        for (strategy, cap) in forced {
            let mut o = MergeOptions::on(&["k"]).how(how);
            if let Some(st) = strategy {
                o = o.strategy(st);
            }
            if let Some(c) = cap {
                o = o.max_build_bytes(c);
            }
            let joined = l.merge_with(&r, o).unwrap();
            let agg = joined
                .agg(&outcore::agg::parse_aggs("size() as n, sum(v) as v, sum(w) as w").unwrap())
                .unwrap();
            let (got, stats) = agg.compute_with_stats().unwrap();
            let what = format!("{} {strategy:?} cap {cap:?}", how.name());
            assert_eq!(cells(&got, "n"), [Cell::Int(n)], "{what}");
            assert_eq!(cells(&got, "v"), [Cell::Int(sv)], "{what}");
            assert_eq!(cells(&got, "w"), [Cell::Int(sw)], "{what}");
            if cap.is_some() {
                assert!(stats.join_build_chunks > 1, "{what}: {stats:?}");
            }
            // Grouped after the join: the radix path, and a split-out shuffle.
            let mut naive: std::collections::BTreeMap<i64, (i64, i64)> = Default::default();
            let mut right_hit = vec![false; rrows.len()];
            for &(lk, v) in &lrows {
                for (j, &(rk, w)) in rrows.iter().enumerate() {
                    if lk == rk {
                        let e = naive.entry(w).or_default();
                        (e.0, e.1) = (e.0 + 1, e.1 + v);
                        right_hit[j] = true;
                    }
                }
            }
            if matches!(how, How::Right | How::Outer) {
                for (j, &(_, w)) in rrows.iter().enumerate() {
                    if !right_hit[j] {
                        naive.entry(w).or_default().0 += 1;
                    }
                }
            }
            let aggs = outcore::agg::parse_aggs("size() as n, sum(v) as v").unwrap();
            for split_out in [None, Some(2)] {
                let mut g = joined.groupby(&["w"]).unwrap();
                if let Some(n) = split_out {
                    g = g.split_out(n).unwrap();
                }
                let got = g.agg(&aggs).unwrap().compute().unwrap();
                let mut rows: Vec<(i64, i64, i64)> = cells(&got, "w")
                    .into_iter()
                    .zip(cells(&got, "n"))
                    .zip(cells(&got, "v"))
                    .map(|((w, n), v)| match (w, n, v) {
                        (Cell::Int(w), Cell::Int(n), Cell::Int(v)) => (w, n, v),
                        (Cell::Int(w), Cell::Int(n), Cell::Null) => (w, n, 0),
                        other => panic!("{what}: {other:?}"),
                    })
                    .collect();
                rows.sort();
                let expected: Vec<(i64, i64, i64)> =
                    naive.iter().map(|(&w, &(n, v))| (w, n, v)).collect();
                assert_eq!(rows, expected, "{what} grouped, split_out {split_out:?}");
            }
        }
    }
    assert!(empty_dir(spill.path()));
}

/// A full disk in the middle of a grace join: a clear error naming the spill
/// folder, and nothing left in it.
#[test]
fn a_full_disk_mid_grace_join_names_the_folder_and_leaves_nothing() {
    let f = fixture(32, 800, 300);
    let spill = tempfile::tempdir().unwrap();
    for (threads, mode) in [(1, Mode::Sync), (2, Mode::Parallel)] {
        let s = spilling_session(threads, mode, 4000, spill.path());
        let (l, r) = (load_gen(&s, &f.left_dir), load_right(&s, &f.right_dir));
        let joined = l
            .merge_with(
                &r,
                MergeOptions::on(&["id"])
                    .how(How::Outer)
                    .strategy(JoinStrategy::Shuffle)
                    .max_build_bytes(1)
                    .fail_spill_writes_after(2000),
            )
            .unwrap();
        let err = joined.compute().unwrap_err();
        let msg = format!("{err}: {}", err.root());
        assert!(
            msg.contains("cannot spill to")
                && msg.contains(&*spill.path().to_string_lossy())
                && msg.contains("injected write failure"),
            "{mode:?}: {msg}"
        );
        assert!(empty_dir(spill.path()), "{mode:?}: files left behind");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    /// The answer does not depend on partitions, threads or the build cap (which
    /// picks in-memory, bucketed or chunked joins).
    #[test]
    fn grace_joins_do_not_depend_on_partitions_or_limits(
        seed in 0u64..500,
        left_rows in 1usize..400,
        right_rows in 1usize..150,
        blocksize in 256u64..4000,
        threads in 1usize..4,
        how in 0usize..4,
        cap in prop::sample::select(vec![1u64, 700, 3000, 20_000, u64::MAX]),
    ) {
        let f = fixture(seed, left_rows, right_rows);
        let spill = tempfile::tempdir().unwrap();
        let s = spilling_session(threads, Mode::Parallel, blocksize, spill.path());
        let (l, r) = (load_gen(&s, &f.left_dir), load_right(&s, &f.right_dir));
        let how = HOWS[how];
        let joined = l
            .merge_with(
                &r,
                MergeOptions::on(&["id"]).how(how).strategy(JoinStrategy::Shuffle).max_build_bytes(cap),
            )
            .unwrap();
        check(&joined, &f, how, &format!("cap {cap}"));
        prop_assert!(empty_dir(spill.path()));
    }
}

// ---------------------------------------------------------------------------
// The scheduler runs `source → map → fold` batch by batch (how a join's output
// reaches an aggregation without being whole in memory).

mod streaming {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use datafusion_common::ScalarValue;
    use outcore::graph::{Graph, Key, Layer, Operator, Streaming, Task, Value};
    use outcore::scheduler::{Executor, Mode};

    fn batch(values: impl IntoIterator<Item = i64>) -> RecordBatch {
        let a = Int64Array::from_iter_values(values);
        RecordBatch::try_from_iter([("v", Arc::new(a) as _)]).unwrap()
    }

    fn sum(b: &RecordBatch) -> i64 {
        let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        a.values().iter().sum()
    }

    /// Emits `n` batches of 1000 rows; its `run` would refuse (it must stream).
    struct Source(usize);
    impl Operator for Source {
        fn name(&self) -> &str {
            "source"
        }
        fn run(&self, _: &[Arc<Value>]) -> outcore::Result<Value> {
            Err(outcore::Error::Internal("must stream".into()))
        }
        fn streaming(&self) -> Streaming {
            Streaming::Source
        }
        fn run_stream(
            &self,
            _: &[Arc<Value>],
            emit: &mut dyn FnMut(RecordBatch) -> outcore::Result<()>,
        ) -> outcore::Result<()> {
            for i in 0..self.0 as i64 {
                emit(batch(i * 1000..(i + 1) * 1000))?;
            }
            Ok(())
        }
    }

    /// Doubles every value.
    struct Double;
    impl Operator for Double {
        fn name(&self) -> &str {
            "double"
        }
        fn run(&self, inputs: &[Arc<Value>]) -> outcore::Result<Value> {
            let b = inputs[0].as_batch()?;
            let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            Ok(Value::Batch(batch(a.values().iter().map(|v| v * 2))))
        }
        fn streaming(&self) -> Streaming {
            Streaming::Map
        }
    }

    /// Sums, counting the batches it saw and the merges.
    #[derive(Default)]
    struct Sum {
        batches: AtomicUsize,
        merges: AtomicUsize,
        most_rows: AtomicUsize,
    }
    impl Operator for Sum {
        fn name(&self) -> &str {
            "sum"
        }
        fn run(&self, inputs: &[Arc<Value>]) -> outcore::Result<Value> {
            let b = inputs[0].as_batch()?;
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.most_rows.fetch_max(b.num_rows(), Ordering::Relaxed);
            Ok(Value::Scalar(ScalarValue::Int64(Some(sum(b)))))
        }
        fn streaming(&self) -> Streaming {
            Streaming::Fold
        }
        fn merge(&self, values: Vec<Value>) -> outcore::Result<Value> {
            self.merges.fetch_add(1, Ordering::Relaxed);
            let mut s = 0;
            for v in values {
                let Value::Scalar(ScalarValue::Int64(Some(x))) = v else {
                    panic!("{v:?}")
                };
                s += x;
            }
            Ok(Value::Scalar(ScalarValue::Int64(Some(s))))
        }
    }

    #[test]
    fn a_streaming_source_feeds_its_fold_one_batch_at_a_time() {
        for mode in [Mode::Sync, Mode::Parallel] {
            let fold = Arc::new(Sum::default());
            let mut g = Graph::new();
            let mut key = None;
            for (name, op) in [
                ("source", Arc::new(Source(40)) as Arc<dyn Operator>),
                ("double", Arc::new(Double)),
                ("sum", fold.clone()),
            ] {
                let layer: Arc<str> = name.into();
                let k = Key::new(&layer, 0);
                g.add_layer(Layer {
                    name: layer,
                    tasks: vec![Task {
                        key: k.clone(),
                        deps: key.iter().cloned().collect(),
                        op,
                    }],
                });
                key = Some(k);
            }
            let exec = g.compile(&[key.unwrap()]).unwrap();
            assert_eq!(exec.len(), 1, "fused into one chain");
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            let (values, _) = Executor::new(mode, &pool).run(&exec).unwrap();
            let expected: i64 = (0..40_000i64).map(|v| v * 2).sum();
            match values[0].as_ref() {
                Value::Scalar(ScalarValue::Int64(Some(s))) => assert_eq!(*s, expected),
                other => panic!("{other:?}"),
            }
            assert_eq!(fold.batches.load(Ordering::Relaxed), 40, "{mode:?}");
            assert_eq!(fold.most_rows.load(Ordering::Relaxed), 1000, "{mode:?}");
            assert!(fold.merges.load(Ordering::Relaxed) >= 2, "{mode:?}");
        }
    }
}

/// A broadcast side whose table the account refuses (here: over the test cap)
/// is probed in chunks by every partition of the other side, with the same answer.
#[test]
fn a_broadcast_side_too_big_for_its_table_is_probed_in_chunks() {
    let f = fixture(33, 700, 250);
    let spill = tempfile::tempdir().unwrap();
    for (threads, mode) in [(1, Mode::Sync), (2, Mode::Parallel)] {
        let s = spilling_session(threads, mode, 4000, spill.path());
        let (l, r) = (load_gen(&s, &f.left_dir), load_right(&s, &f.right_dir));
        for (how, st) in [
            (How::Inner, JoinStrategy::BroadcastRight),
            (How::Left, JoinStrategy::BroadcastRight),
            (How::Inner, JoinStrategy::BroadcastLeft),
            (How::Right, JoinStrategy::BroadcastLeft),
        ] {
            let what = format!("{} {st:?} {mode:?}", how.name());
            let joined = l
                .merge_with(
                    &r,
                    MergeOptions::on(&["id"])
                        .how(how)
                        .strategy(st)
                        .max_build_bytes(3000),
                )
                .unwrap();
            let (_, stats) = joined.compute_partitions().unwrap();
            assert!(stats.join_build_chunks > 0, "{what}: {stats:?}");
            check(&joined, &f, how, &what);
        }
    }
    assert!(empty_dir(spill.path()));
}

/// Under a tiny memory limit (no test cap), the account itself refuses the build
/// side and the grace path runs, with the naive join's answer.
#[test]
fn a_refused_build_side_runs_the_grace_join_under_a_tiny_limit() {
    let f = fixture(34, 3000, 3000);
    let spill = tempfile::tempdir().unwrap();
    let s = Session::builder()
        .with_threads(2)
        .with_blocksize(64 * 1024)
        .tiny_memory_limit(96 << 10)
        .with_spill_dir(spill.path())
        .build()
        .unwrap();
    let (l, r) = (load_gen(&s, &f.left_dir), load_right(&s, &f.right_dir));
    for how in HOWS {
        let joined = l
            .merge_with(
                &r,
                MergeOptions::on(&["id"])
                    .how(how)
                    .strategy(JoinStrategy::Shuffle),
            )
            .unwrap();
        let agg = joined
            .agg(&outcore::agg::parse_aggs("size() as n, sum(w) as w").unwrap())
            .unwrap();
        let (got, stats) = agg.compute_with_stats().unwrap();
        assert!(stats.join_buckets_spilled > 0, "{}: {stats:?}", how.name());
        let naive = naive_merge(&f.left, &f.right, how);
        assert_eq!(
            cells(&got, "n"),
            [Cell::Int(naive.len() as i64)],
            "{}",
            how.name()
        );
        let w: i64 = naive
            .iter()
            .filter_map(|r| match r[8] {
                Cell::Int(v) => Some(v),
                _ => None,
            })
            .sum();
        assert_eq!(cells(&got, "w"), [Cell::Int(w)], "{}", how.name());
    }
    assert!(empty_dir(spill.path()));
}

/// Partition-wise, a build side the account refuses (here: over the test cap)
/// runs as a grace join of the pair, with the same answer.
#[test]
fn a_partition_wise_pair_whose_build_side_is_refused_runs_as_a_grace_join() {
    let f = fixture(35, 800, 250);
    let spill = tempfile::tempdir().unwrap();
    let s = spilling_session(2, Mode::Parallel, 4096, spill.path());
    let divisions: Vec<ScalarValue> = [-4i64, 0, 3, 8, 16]
        .into_iter()
        .map(|v| ScalarValue::Int64(Some(v)))
        .collect();
    let opts = || SetIndexOptions::default().divisions(divisions.clone());
    let l = load_gen(&s, &f.left_dir)
        .set_index_with("id", opts())
        .unwrap();
    let r = load_right(&s, &f.right_dir)
        .set_index_with("id", opts())
        .unwrap();
    for how in HOWS {
        let joined = l
            .merge_with(
                &r,
                MergeOptions::on(&["id"])
                    .how(how)
                    .strategy(JoinStrategy::PartitionWise)
                    .max_build_bytes(1),
            )
            .unwrap();
        let (_, stats) = joined.compute_partitions().unwrap();
        assert!(stats.join_buckets_spilled > 0, "{}: {stats:?}", how.name());
        assert!(stats.join_build_chunks > 0, "{}: {stats:?}", how.name());
        check(
            &joined,
            &f,
            how,
            &format!("partition-wise grace {}", how.name()),
        );
    }
    assert!(empty_dir(spill.path()));
}

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

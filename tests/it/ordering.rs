//! Ordering rows across partitions: set_index (sampled divisions, given divisions,
//! declared sorted), sort_values, nlargest/nsmallest and loc, each against the naive
//! table sorted in the test; answers must not change with block size, partition
//! count, threads or a memory limit far below the data.

use std::path::Path;

use arrow::array::RecordBatch;
use datafusion_common::ScalarValue;
use outcore::frame::SetIndexOptions;
use outcore::scheduler::Mode;
use outcore::{DataFrame, Session};
use proptest::prelude::*;

use crate::common::*;

fn fixture(seed: u64, rows: usize, files: usize) -> (tempfile::TempDir, Table) {
    let dir = tempfile::tempdir().unwrap();
    let t = gen_table(seed, &GenOpts::new(rows).nulls(0.05, 0.1));
    t.write_files(dir.path(), files);
    (dir, t)
}

/// Every row of `t` as a sorted multiset, to compare with an answer's rows.
fn row_multiset(rows: Vec<Vec<Cell>>) -> Vec<Vec<Cell>> {
    let mut rows = rows;
    rows.sort();
    rows
}

fn all_rows(parts: &[RecordBatch]) -> Vec<Vec<Cell>> {
    parts.iter().flat_map(batch_rows).collect()
}

/// Checks a set_index answer: the same rows as `t`; each partition sorted by
/// `column`, nulls only after every value (in the last partitions); every value
/// inside its partition's divisions (`[start, end)`, `[start, end]` for the last
/// division or a repeated one); the index column, read across partitions, equal
/// to the naive sort.
fn check_indexed(df: &DataFrame, column: &str, t: &Table, what: &str) {
    assert_eq!(df.index_column().as_deref(), Some(column), "{what}");
    let divisions = df.divisions().expect("known divisions");
    assert_eq!(divisions.len(), df.npartitions() + 1, "{what}: divisions");
    for w in divisions.windows(2) {
        assert!(w[0] <= w[1], "{what}: divisions not sorted: {divisions:?}");
    }
    let (parts, _) = df.compute_partitions().unwrap();
    assert_eq!(parts.len(), df.npartitions(), "{what}");
    assert_eq!(
        row_multiset(all_rows(&parts)),
        row_multiset(t.rows.clone()),
        "{what}: rows"
    );
    let n = parts.len();
    let cell =
        |d: &ScalarValue| array_cells(&ScalarValue::iter_to_array([d.clone()]).unwrap())[0].clone();
    let last = cell(&divisions[n]);
    for (p, part) in parts.iter().enumerate() {
        let values = cells(part, column);
        let (lo, hi) = (cell(&divisions[p]), cell(&divisions[p + 1]));
        for v in &values {
            if v.is_null() {
                continue;
            }
            assert!(*v >= lo, "{what}: {v} below partition {p}'s start {lo}");
            if hi == last || lo == hi {
                assert!(*v <= hi, "{what}: {v} above partition {p}'s end {hi}");
            } else {
                assert!(*v < hi, "{what}: {v} not below partition {p}'s end {hi}");
            }
        }
    }
    // Read across partitions, the column is the naive sort (nulls last), which
    // also says no null comes before a value.
    let got: Vec<Cell> = parts.iter().flat_map(|b| cells(b, column)).collect();
    let mut expected = t.column(column);
    expected.sort(); // Cell orders nulls last.
    assert_cells(&got, &expected, what);
}

#[test]
fn set_index_orders_rows_by_sampled_divisions() {
    let (dir, t) = fixture(11, 3000, 3);
    for column in ["i", "id", "name", "x", "ts"] {
        for (threads, mode, blocksize) in [(1, Mode::Sync, 4096), (3, Mode::Parallel, 10_000)] {
            let s = session(threads, mode, blocksize);
            let df = load_gen(&s, dir.path());
            let indexed = df.set_index(column).unwrap();
            check_indexed(
                &indexed,
                column,
                &t,
                &format!("{column} {threads} {blocksize}"),
            );
        }
    }
}

#[test]
fn set_index_npartitions_and_given_divisions() {
    let (dir, t) = fixture(12, 2000, 2);
    let s = session(2, Mode::Parallel, 8192);
    let df = load_gen(&s, dir.path());
    for n in [1, 2, 7] {
        let indexed = df
            .set_index_with("v", SetIndexOptions::default().npartitions(n))
            .unwrap();
        assert!(indexed.npartitions() <= n);
        check_indexed(&indexed, "v", &t, &format!("npartitions {n}"));
    }
    let given: Vec<ScalarValue> = [-1000i64, -300, 0, 1, 500, 1000]
        .into_iter()
        .map(|v| ScalarValue::Int64(Some(v)))
        .collect();
    let indexed = df
        .set_index_with("v", SetIndexOptions::default().divisions(given.clone()))
        .unwrap();
    assert_eq!(indexed.divisions().unwrap(), given);
    check_indexed(&indexed, "v", &t, "given divisions");
    // Divisions out of order are refused.
    let bad = vec![ScalarValue::Int64(Some(5)), ScalarValue::Int64(Some(1))];
    let e = df
        .set_index_with("v", SetIndexOptions::default().divisions(bad))
        .unwrap_err()
        .to_string();
    assert!(e.contains("sorted"), "{e}");
}

#[test]
fn set_index_under_a_tiny_memory_limit_goes_through_the_disk() {
    let (dir, t) = fixture(13, 6000, 3);
    let spill = tempfile::tempdir().unwrap();
    let s = Session::builder()
        .with_threads(2)
        .with_blocksize(16 * 1024)
        .tiny_memory_limit(64 * 1024)
        .with_spill_dir(spill.path())
        .build()
        .unwrap();
    let indexed = load_gen(&s, dir.path()).set_index("x").unwrap();
    let (_, stats) = indexed.compute_partitions().unwrap();
    assert!(stats.shuffled_bytes > 0, "{stats:?}");
    assert!(stats.shuffle_disk_bytes > 0, "{stats:?}");
    check_indexed(&indexed, "x", &t, "tiny limit");
}

/// Files in order of `i`: declared sorted, they keep their rows and get divisions
/// from each block's min and max.
#[test]
fn set_index_sorted_checks_order_and_keeps_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let t = gen_table(14, &GenOpts::new(1500));
    t.write_files(dir.path(), 3);
    let s = session(2, Mode::Parallel, 4096);
    let df = load_gen(&s, dir.path());
    let indexed = df.set_index_sorted("i").unwrap();
    assert_eq!(indexed.npartitions(), df.npartitions());
    check_indexed(&indexed, "i", &t, "sorted");
    let (_, stats) = indexed.compute_partitions().unwrap();
    assert_eq!(stats.shuffled_bytes, 0);

    // A column that is not in order: the error names the file and line.
    let e = df.set_index_sorted("v").unwrap_err().to_string();
    assert!(
        e.contains("declared sorted") && e.contains(".csv, line "),
        "{e}"
    );
}

#[test]
fn set_index_sorted_names_the_line_where_order_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("k,v\n");
    for k in 0..500 {
        // Line 2 + k holds k, except line 302, which goes back.
        let k = if k == 300 { 7 } else { k };
        text.push_str(&format!("{k},{}\n", k * 2));
    }
    std::fs::write(dir.path().join("a.csv"), &text).unwrap();
    for blocksize in [64, 1000, 1 << 20] {
        let s = session(1, Mode::Sync, blocksize);
        let df = s.read_csv(glob_of(dir.path())).load().unwrap();
        let e = df.set_index_sorted("k").unwrap_err().to_string();
        assert!(e.contains("a.csv, line 302"), "blocksize {blocksize}: {e}");
    }
    // Across partitions: two files, the second starting below the first's end.
    std::fs::write(dir.path().join("a.csv"), "k\n1\n5\n9\n").unwrap();
    std::fs::write(dir.path().join("b.csv"), "k\n8\n10\n").unwrap();
    let s = session(1, Mode::Sync, 1 << 20);
    let df = s.read_csv(glob_of(dir.path())).load().unwrap();
    let e = df.set_index_sorted("k").unwrap_err().to_string();
    assert!(
        e.contains("b.csv, line 2") && e.contains("below partition 0"),
        "{e}"
    );
    // Nulls in a sorted index are refused.
    std::fs::write(dir.path().join("a.csv"), "k,v\n1,1\n5,2\n").unwrap();
    std::fs::write(dir.path().join("b.csv"), "k,v\n10,3\n,4\n").unwrap();
    let df = s.read_csv(glob_of(dir.path())).load().unwrap();
    let e = df.set_index_sorted("k").unwrap_err().to_string();
    assert!(e.contains("null"), "{e}");
}

fn naive_sorted(t: &Table, by: &[(&str, bool)]) -> Vec<Vec<Cell>> {
    let mut rows = t.rows.clone();
    rows.sort_by(|a, b| {
        for (c, asc) in by {
            let (x, y) = (t.get(a, c), t.get(b, c));
            // Nulls last in either direction, as pandas' na_position='last'.
            let o = match (x.is_null(), y.is_null()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if *asc => x.cmp(y),
                _ => y.cmp(x),
            };
            if o.is_ne() {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    rows
}

fn key_cells(rows: &[Vec<Cell>], t: &Table, by: &[(&str, bool)]) -> Vec<Cell> {
    rows.iter()
        .flat_map(|r| by.iter().map(|(c, _)| t.get(r, c).clone()))
        .collect()
}

#[test]
fn sort_values_one_and_several_columns_both_directions() {
    let (dir, t) = fixture(15, 2500, 3);
    let cases: [&[(&str, bool)]; 4] = [
        &[("x", true)],
        &[("name", false)],
        &[("id", true), ("v", false)],
        &[("flag", false), ("ts", true), ("i", true)],
    ];
    for by in cases {
        for (threads, blocksize) in [(1, 5000), (3, 20_000)] {
            let s = session(threads, Mode::Parallel, blocksize);
            let sorted = load_gen(&s, dir.path()).sort_values(by).unwrap();
            let got = batch_rows(&sorted.compute().unwrap());
            let expected = naive_sorted(&t, by);
            assert_eq!(
                row_multiset(got.clone()),
                row_multiset(t.rows.clone()),
                "{by:?}"
            );
            let names: Vec<&str> = GEN_COLUMNS.to_vec();
            let g = Table {
                columns: names.iter().map(|s| s.to_string()).collect(),
                rows: got,
            };
            assert_cells(
                &key_cells(&g.rows, &g, by),
                &key_cells(&expected, &t, by),
                &format!("{by:?} {threads} {blocksize}"),
            );
        }
    }
}

#[test]
fn nlargest_and_nsmallest_match_the_naive_sort() {
    let (dir, t) = fixture(16, 3000, 4);
    let s = session(2, Mode::Parallel, 4096);
    let df = load_gen(&s, dir.path());
    for n in [0, 1, 5, 100, 5000] {
        for (largest, column) in [(true, "x"), (false, "v"), (true, "name")] {
            let got = if largest {
                df.nlargest(n, column)
            } else {
                df.nsmallest(n, column)
            }
            .unwrap();
            assert_eq!(got.npartitions(), 1);
            let got = cells(&got.compute().unwrap(), column);
            let mut expected: Vec<Cell> = t
                .column(column)
                .into_iter()
                .filter(|c| !c.is_null())
                .collect();
            expected.sort();
            if largest {
                expected.reverse();
            }
            expected.truncate(n);
            assert_cells(&got, &expected, &format!("{n} {largest} {column}"));
        }
    }
}

/// `loc` reads only the partitions whose divisions can hold the range.
#[test]
fn loc_selects_partitions_by_divisions() {
    let (dir, t) = fixture(17, 3000, 3);
    let s = session(2, Mode::Parallel, 4096);
    let df = load_gen(&s, dir.path()).set_index_sorted("i").unwrap();
    let (_, all) = df.compute_partitions().unwrap();
    for (lo, hi) in [
        (Some(100), Some(250)),
        (None, Some(10)),
        (Some(2990), None),
        (Some(5000), None),
        (Some(0), Some(0)),
        (None, None),
    ] {
        let sliced = df
            .loc(
                lo.map(|v: i64| ScalarValue::Int64(Some(v))),
                hi.map(|v: i64| ScalarValue::Int64(Some(v))),
            )
            .unwrap();
        let (parts, stats) = sliced.compute_partitions().unwrap();
        let got: Vec<Cell> = parts.iter().flat_map(|b| cells(b, "i")).collect();
        let expected: Vec<Cell> = t
            .column("i")
            .into_iter()
            .filter(|c| {
                let v = c.num().unwrap() as i64;
                lo.is_none_or(|lo| v >= lo) && hi.is_none_or(|hi| v <= hi)
            })
            .collect();
        assert_cells(&got, &expected, &format!("loc {lo:?}..{hi:?}"));
        if lo.is_some() || hi.is_some() {
            assert!(
                stats.bytes_read < all.bytes_read,
                "loc {lo:?}..{hi:?} read {} of {}",
                stats.bytes_read,
                all.bytes_read
            );
        }
        if let Some(d) = sliced.divisions() {
            assert_eq!(d.len(), sliced.npartitions() + 1);
        }
    }
    // Without an index, a clear error.
    let e = load_gen(&s, dir.path())
        .loc(None, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("set_index"), "{e}");
}

fn gen_dir(seed: u64, rows: usize, files: usize) -> (tempfile::TempDir, Table) {
    fixture(seed, rows, files)
}

fn load(dir: &Path, threads: usize, blocksize: u64) -> DataFrame {
    load_gen(&session(threads, Mode::Parallel, blocksize), dir)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    /// The answer does not depend on block size, partition count or threads.
    #[test]
    fn set_index_and_sort_values_do_not_depend_on_partitioning(
        seed in 0u64..1000,
        rows in 0usize..700,
        files in 1usize..4,
        blocksize in 64u64..5000,
        threads in 1usize..4,
        npartitions in 1usize..9,
    ) {
        let (dir, t) = gen_dir(seed, rows, files);
        let df = load(dir.path(), threads, blocksize);
        let indexed = df
            .set_index_with("x", SetIndexOptions::default().npartitions(npartitions))
            .unwrap();
        if rows > 1 {
            check_indexed(&indexed, "x", &t, "property");
        }
        let by = [("name", true), ("v", false)];
        let got = batch_rows(&df.sort_values(&by).unwrap().compute().unwrap());
        let expected = naive_sorted(&t, &by);
        let g = Table { columns: GEN_COLUMNS.iter().map(|s| s.to_string()).collect(), rows: got };
        prop_assert_eq!(key_cells(&g.rows, &g, &by), key_cells(&expected, &t, &by));
    }
}

/// Rows `i` (row number), `k` (90 % null, else a value in 0..500), `h` (60 % the
/// hot value 7, else a value in 0..1000): nulls and a hot value.
fn skewed(seed: u64, rows: usize, files: usize) -> (tempfile::TempDir, Table) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let mut t = Table::new(&["i", "k", "h"]);
    for i in 0..rows {
        let k = if rng.random_bool(0.9) {
            Cell::Null
        } else {
            Cell::Int(rng.random_range(0..500))
        };
        let h = if rng.random_bool(0.6) {
            Cell::Int(7)
        } else {
            Cell::Int(rng.random_range(0..1000))
        };
        t.rows.push(vec![Cell::Int(i as i64), k, h]);
    }
    let dir = tempfile::tempdir().unwrap();
    t.write_files(dir.path(), files);
    (dir, t)
}

/// Issue 13: set_index of a column that is 90 % null put every null in the last
/// partition (a quarter of a 64 MB limit's data in one task). The nulls now have
/// partitions of their own, as many as their share asks for.
#[test]
fn issue_13_nulls_are_spread_over_several_partitions() {
    let (dir, t) = skewed(31, 4000, 4);
    for (threads, mode) in [(1, Mode::Sync), (2, Mode::Parallel)] {
        let s = session(threads, mode, 4096);
        let df = s.read_csv(glob_of(dir.path())).load().unwrap();
        let indexed = df
            .set_index_with("k", SetIndexOptions::default().npartitions(10))
            .unwrap();
        assert_eq!(indexed.npartitions(), 10);
        check_indexed(&indexed, "k", &t, "90 % null");
        let (parts, _) = indexed.compute_partitions().unwrap();
        let nulls: Vec<usize> = parts
            .iter()
            .map(|b| b.column_by_name("k").unwrap().null_count())
            .collect();
        let holding = nulls.iter().filter(|&&n| n > 0).count();
        assert!(holding >= 7, "nulls per partition: {nulls:?}");
        let largest = parts.iter().map(|b| b.num_rows()).max().unwrap();
        assert!(
            largest < 4000 / 4,
            "largest partition {largest} rows: {nulls:?}"
        );
    }
}

/// A value that is 60 % of the rows is spread over several partitions whose
/// divisions repeat it; the order holds across partitions, and `loc` finds every
/// row of it (and of its neighbours) against a plain filter.
#[test]
fn hot_values_repeat_as_divisions_and_loc_still_finds_them() {
    let (dir, t) = skewed(32, 5000, 3);
    let s = session(2, Mode::Parallel, 4096);
    let df = s.read_csv(glob_of(dir.path())).load().unwrap();
    let indexed = df
        .set_index_with("h", SetIndexOptions::default().npartitions(8))
        .unwrap();
    check_indexed(&indexed, "h", &t, "hot value");
    let d = indexed.divisions().unwrap();
    let sevens = d
        .iter()
        .filter(|v| **v == ScalarValue::Int64(Some(7)))
        .count();
    assert!(sevens >= 3, "the hot value is not repeated: {d:?}");
    let (parts, _) = indexed.compute_partitions().unwrap();
    let with_seven = parts
        .iter()
        .filter(|b| cells(b, "h").contains(&Cell::Int(7)))
        .count();
    assert!(with_seven >= 3, "7 in {with_seven} partitions");
    for (lo, hi) in [(7, 7), (0, 7), (7, 8), (6, 6), (8, 999), (0, 6)] {
        let got = indexed
            .loc(
                Some(ScalarValue::Int64(Some(lo))),
                Some(ScalarValue::Int64(Some(hi))),
            )
            .unwrap()
            .compute()
            .unwrap();
        let mut got = cells(&got, "i");
        got.sort();
        let mut expected: Vec<Cell> = t
            .rows
            .iter()
            .filter(|r| matches!(r[2], Cell::Int(h) if lo <= h && h <= hi))
            .map(|r| r[0].clone())
            .collect();
        expected.sort();
        assert_eq!(got, expected, "loc {lo}..{hi}");
    }
    // Given divisions may repeat too.
    let given: Vec<ScalarValue> = [0i64, 7, 7, 7, 1000]
        .into_iter()
        .map(|v| ScalarValue::Int64(Some(v)))
        .collect();
    let indexed = df
        .set_index_with("h", SetIndexOptions::default().divisions(given))
        .unwrap();
    check_indexed(&indexed, "h", &t, "given repeated divisions");
}

/// One sort column: hot values and nulls are spread too, and the rows still come
/// out in the order of a plain sort, both directions.
#[test]
fn sort_values_on_one_skewed_column_matches_a_plain_sort() {
    let (dir, t) = skewed(33, 3000, 3);
    let s = session(2, Mode::Parallel, 2048);
    let df = s.read_csv(glob_of(dir.path())).load().unwrap();
    for column in ["k", "h"] {
        for asc in [true, false] {
            let by = [(column, asc)];
            let sorted = df.sort_values(&by).unwrap();
            let got = batch_rows(&sorted.compute().unwrap());
            let expected = naive_sorted(&t, &by);
            assert_eq!(
                key_cells(&got, &t, &by),
                key_cells(&expected, &t, &by),
                "{column} {asc}"
            );
            assert_eq!(row_multiset(got), row_multiset(t.rows.clone()));
        }
    }
}

/// Under a limit far below one output partition, each partition is sorted as runs
/// written to the shuffle store and merged: the rows come out as a plain sort's,
/// for set_index (spread) and a sort on two columns (equal keys kept together).
#[test]
fn partitions_larger_than_their_reservation_are_sorted_as_merged_runs() {
    let (dir, t) = fixture(34, 20_000, 3);
    for mode in [Mode::Sync, Mode::Parallel] {
        let spill = tempfile::tempdir().unwrap();
        let s = Session::builder()
            .with_threads(2)
            .with_scheduler(mode)
            .with_blocksize(32 * 1024)
            .tiny_memory_limit(1280 * 1024)
            .with_spill_dir(spill.path())
            .build()
            .unwrap();
        let df = load_gen(&s, dir.path());
        let indexed = df
            .set_index_with("x", SetIndexOptions::default().npartitions(1))
            .unwrap();
        let (_, stats) = indexed.compute_partitions().unwrap();
        assert!(stats.sort_runs_spilled > 2, "{stats:?}");
        check_indexed(&indexed, "x", &t, "runs");

        let by = [("name", true), ("v", false)];
        let sorted = df.sort_values_with(&by, 1).unwrap();
        let (parts, stats) = sorted.compute_partitions().unwrap();
        assert!(stats.sort_runs_spilled > 2, "{stats:?}");
        let got: Vec<Vec<Cell>> = parts.iter().flat_map(batch_rows).collect();
        let expected = naive_sorted(&t, &by);
        assert_eq!(key_cells(&got, &t, &by), key_cells(&expected, &t, &by));
        assert_eq!(row_multiset(got), row_multiset(t.rows.clone()));
        drop(s);
        assert!(
            std::fs::read_dir(spill.path()).unwrap().next().is_none(),
            "files left in the spill folder"
        );
    }
}

/// A full disk while a sort writes its runs: the error names the shuffle folder
/// under the spill folder, and nothing is left there.
#[test]
fn a_full_disk_while_writing_sorted_runs_names_the_folder_and_leaves_nothing() {
    let (dir, _) = fixture(35, 20_000, 3);
    let spill = tempfile::tempdir().unwrap();
    let s = Session::builder()
        .with_threads(2)
        .with_blocksize(32 * 1024)
        .tiny_memory_limit(1536 * 1024)
        .with_spill_dir(spill.path())
        .with_sort_run_write_failure_after(100_000)
        .build()
        .unwrap();
    let indexed = load_gen(&s, dir.path())
        .set_index_with("x", SetIndexOptions::default().npartitions(1))
        .unwrap();
    let err = error_chain(&indexed.compute_partitions().unwrap_err());
    let shuffle_dir = format!("{}/outcore-shuffle-", spill.path().display());
    assert!(err.contains(&shuffle_dir), "{err}");
    assert!(err.contains("no space left on device"), "{err}");
    drop(indexed);
    drop(s);
    assert!(
        std::fs::read_dir(spill.path()).unwrap().next().is_none(),
        "files left in the spill folder"
    );
}

/// The error and its sources, one per line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!("\n{s}"));
        source = s.source();
    }
    out
}

/// Issue 13: with no partition count asked for, a sort under a small limit makes
/// more output partitions than its input has, so that two threads sorting at once
/// each hold a small share of the limit (a 90 %-null index of 4e6 rows at 64 MB
/// was refused with two partitions in flight). One input partition of 20,000 rows
/// at a 1.5 MiB limit: no runs needed, and the answer is the plain sort's.
#[test]
fn issue_13_under_a_small_limit_sorts_make_partitions_that_fit() {
    let (dir, t) = fixture(36, 20_000, 1);
    let limit = 1536 * 1024;
    for mode in [Mode::Sync, Mode::Parallel] {
        let s = Session::builder()
            .with_threads(2)
            .with_scheduler(mode)
            .with_blocksize(64 << 20)
            .tiny_memory_limit(limit)
            .build()
            .unwrap();
        let df = load_gen(&s, dir.path());
        assert_eq!(df.npartitions(), 1);
        let indexed = df.set_index("x").unwrap();
        assert!(
            indexed.npartitions() >= 4,
            "{} partitions",
            indexed.npartitions()
        );
        check_indexed(&indexed, "x", &t, "partitions for the limit");
        let (parts, stats) = indexed.compute_partitions().unwrap();
        assert_eq!(stats.sort_runs_spilled, 0, "{stats:?}");
        let largest = parts
            .iter()
            .map(|b| b.get_array_memory_size())
            .max()
            .unwrap();
        assert!(
            largest < limit as usize / 2,
            "largest partition {largest} bytes"
        );

        let by = [("name", true), ("v", false)];
        let sorted = df.sort_values(&by).unwrap();
        assert!(
            sorted.npartitions() >= 4,
            "{} partitions",
            sorted.npartitions()
        );
        let (parts, _) = sorted.compute_partitions().unwrap();
        let got: Vec<Vec<Cell>> = parts.iter().flat_map(batch_rows).collect();
        let expected = naive_sorted(&t, &by);
        assert_eq!(key_cells(&got, &t, &by), key_cells(&expected, &t, &by));
        assert_eq!(row_multiset(got), row_multiset(t.rows.clone()));
    }
}

/// A shuffle whose pieces the account grants is held in memory as batches (never
/// encoded or written); under a limit that grants part of it, some writers hold
/// and the rest go to the store; under a tiny one, all go to the store. Each
/// answer is the naive sort's (keys in order, the same rows).
#[test]
fn shuffles_are_held_in_memory_while_the_account_grants_them() {
    let (dir, t) = fixture(37, 6_000, 6);
    let by = [("name", true)];
    let expected = naive_sorted(&t, &by);
    let run = |limit: Option<u64>| {
        let mut b = Session::builder()
            .with_threads(2)
            .with_scheduler(Mode::Parallel)
            .with_blocksize(16 << 10);
        if let Some(limit) = limit {
            b = b.tiny_memory_limit(limit);
        }
        let s = b.build().unwrap();
        let sorted = load_gen(&s, dir.path()).sort_values_with(&by, 32).unwrap();
        let (parts, stats) = sorted.compute_partitions().unwrap();
        let got: Vec<Vec<Cell>> = parts.iter().flat_map(batch_rows).collect();
        assert_eq!(
            key_cells(&got, &t, &by),
            key_cells(&expected, &t, &by),
            "limit {limit:?}"
        );
        assert_eq!(row_multiset(got), row_multiset(t.rows.clone()));
        assert!(stats.shuffled_bytes > 0, "{stats:?}");
        (stats.shuffle_held_bytes, stats.shuffled_bytes)
    };
    let (held, all) = run(None);
    assert_eq!(held, all, "a roomy limit holds every piece");
    // Room for a quarter of the pieces held (a quarter of twice their size).
    let (held, all) = run(Some(2 * all));
    assert!(held > 0 && held < all, "some held: {held} of {all}");
    let (held, all) = run(Some(all / 8));
    assert!(held < all / 4, "mostly stored: {held} of {all}");
}

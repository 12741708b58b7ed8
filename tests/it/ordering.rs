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
/// `column` with nulls only at the end of the last; every value inside its
/// partition's divisions; the index column, read across partitions, equal to the
/// naive sort.
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
    for (p, part) in parts.iter().enumerate() {
        let values = cells(part, column);
        let lo =
            array_cells(&ScalarValue::iter_to_array([divisions[p].clone()]).unwrap())[0].clone();
        let hi = array_cells(&ScalarValue::iter_to_array([divisions[p + 1].clone()]).unwrap())[0]
            .clone();
        for v in &values {
            if v.is_null() {
                assert_eq!(p, n - 1, "{what}: a null outside the last partition");
                continue;
            }
            assert!(*v >= lo, "{what}: {v} below partition {p}'s start {lo}");
            if p + 1 < n {
                assert!(*v < hi, "{what}: {v} not below partition {p}'s end {hi}");
            } else {
                assert!(*v <= hi, "{what}: {v} above the last division {hi}");
            }
        }
    }
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
fn set_index_under_a_tiny_memory_limit_goes_through_sled() {
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

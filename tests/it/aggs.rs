//! The holistic and two-column aggregations (`median`, `quantile`, `corr`,
//! `nlargest`), expressions over aggregations (`--agg 'max(x) - min(v) as r'`),
//! `drop_duplicates` and global `nunique`, each against a naive reference written
//! here; property tests over block size, file cuts, threads, split_every and
//! split_out; tiny memory limits that must spill and shuffle; the CLI spelling of
//! db-benchmark q6..q9.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use arrow::array::RecordBatch;
use outcore::agg::exprs::parse_agg_list;
use outcore::agg::{corr, median, nlargest, quantile};
use outcore::frame::{sort_batch, DataFrame};
use outcore::scheduler::Mode;
use outcore::Session;
use proptest::prelude::*;

use crate::common::*;

/// Non-null values of `column` over `rows`, as floats.
pub(crate) fn nums(t: &Table, rows: &[usize], column: &str) -> Vec<f64> {
    let c = t.idx(column);
    rows.iter().filter_map(|&r| t.rows[r][c].num()).collect()
}

/// pandas' `quantile(q)` (linear interpolation), by sorting.
pub(crate) fn ref_quantile(mut v: Vec<f64>, q: f64) -> Cell {
    if v.is_empty() {
        return Cell::Null;
    }
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Cell::Float(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

/// Pearson correlation over rows where both are non-null, by the two-pass formula.
pub(crate) fn ref_corr(t: &Table, rows: &[usize], x: &str, y: &str) -> Cell {
    let (xi, yi) = (t.idx(x), t.idx(y));
    let pairs: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|&r| Some((t.rows[r][xi].num()?, t.rows[r][yi].num()?)))
        .collect();
    let n = pairs.len() as f64;
    if pairs.len() < 2 {
        return Cell::Null;
    }
    let mx = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = pairs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pairs.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let syy: f64 = pairs.iter().map(|p| (p.1 - my) * (p.1 - my)).sum();
    if sxx == 0.0 || syy == 0.0 {
        return Cell::Null;
    }
    Cell::Float(sxy / (sxx * syy).sqrt())
}

/// The answer sorted by `by` (ascending), so split_out partitions compare too.
fn sorted(batch: &RecordBatch, by: &[(&str, bool)]) -> RecordBatch {
    sort_batch(batch, by).unwrap()
}

fn key_rows(batch: &RecordBatch, keys: &[&str]) -> Vec<Vec<Cell>> {
    let mut out = vec![Vec::new(); batch.num_rows()];
    for k in keys {
        for (r, c) in cells(batch, k).into_iter().enumerate() {
            out[r].push(c);
        }
    }
    out
}

/// median, quantile(0.9) and std of `x`, quantile(0.25) of the int `v`, corr(x, v)
/// and `max(x) - min(v)` by `keys`, against the references.
fn check_stats(df: &DataFrame, t: &Table, keys: &[&str], split_out: usize, ctx: &str) {
    let list = parse_agg_list(
        "median(x), quantile(x, 0.9) as q90, std(x) as sd, quantile(v, 0.25) as q25, \
         corr(x, v) as r, max(x) - min(v) as range_x_v, corr(x, v) * corr(x, v) as r2",
    )
    .unwrap();
    let out = df
        .groupby(keys)
        .unwrap()
        .split_out(split_out)
        .unwrap()
        .agg_list(&list)
        .unwrap();
    let names: Vec<String> = out.columns();
    let mut expect_names: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expect_names
        .extend(["median(x)", "q90", "sd", "q25", "r", "range_x_v", "r2"].map(String::from));
    assert_eq!(names, expect_names, "{ctx}");
    let (got, stats) = out.compute_with_stats().unwrap();
    if split_out > 1 {
        assert!(stats.shuffled_bytes > 0, "{ctx}: nothing shuffled");
    }
    let by: Vec<(&str, bool)> = keys.iter().map(|k| (*k, true)).collect();
    let got = sorted(&got, &by);
    let groups = ref_groups(t, keys, false);
    assert_eq!(
        key_rows(&got, keys),
        groups.keys().cloned().collect::<Vec<_>>(),
        "{ctx}: groups"
    );
    let col =
        |f: &dyn Fn(&[usize]) -> Cell| -> Vec<Cell> { groups.values().map(|r| f(r)).collect() };
    assert_cells(
        &cells(&got, "median(x)"),
        &col(&|r| ref_quantile(nums(t, r, "x"), 0.5)),
        &format!("{ctx}: median"),
    );
    assert_cells(
        &cells(&got, "q90"),
        &col(&|r| ref_quantile(nums(t, r, "x"), 0.9)),
        &format!("{ctx}: q90"),
    );
    assert_cells(
        &cells(&got, "q25"),
        &col(&|r| ref_quantile(nums(t, r, "v"), 0.25)),
        &format!("{ctx}: q25"),
    );
    assert_cells(
        &cells(&got, "sd"),
        &col(&|r| ref_agg(t, r, "std", Some("x"))),
        &format!("{ctx}: std"),
    );
    assert_cells(
        &cells(&got, "r"),
        &col(&|r| ref_corr(t, r, "x", "v")),
        &format!("{ctx}: corr"),
    );
    assert_cells(
        &cells(&got, "r2"),
        &col(&|r| match ref_corr(t, r, "x", "v") {
            Cell::Float(c) => Cell::Float(c * c),
            other => other,
        }),
        &format!("{ctx}: corr^2"),
    );
    assert_cells(
        &cells(&got, "range_x_v"),
        &col(&|r| match (
            ref_agg(t, r, "max", Some("x")).num(),
            ref_agg(t, r, "min", Some("v")).num(),
        ) {
            (Some(a), Some(b)) => Cell::Float(a - b),
            _ => Cell::Null,
        }),
        &format!("{ctx}: max(x) - min(v)"),
    );
}

/// nlargest(n, column) by `keys` against the naive q8 (drop nulls, sort descending,
/// head(n) per group): rows (keys..., value), sorted by key then value descending.
fn check_nlargest(
    df: &DataFrame,
    t: &Table,
    keys: &[&str],
    column: &str,
    n: u32,
    split_out: usize,
    ctx: &str,
) {
    let out = df
        .groupby(keys)
        .unwrap()
        .split_out(split_out)
        .unwrap()
        .agg(&[nlargest(n, column)])
        .unwrap();
    let got = out.compute().unwrap();
    let alias = format!("nlargest({n}, {column})");
    let mut by: Vec<(&str, bool)> = keys.iter().map(|k| (*k, true)).collect();
    by.push((&alias, false));
    let got = sorted(&got, &by);
    let mut expected: Vec<Vec<Cell>> = Vec::new();
    for (key, rows) in ref_groups(t, keys, false) {
        let c = t.idx(column);
        let mut vals: Vec<Cell> = rows
            .iter()
            .map(|&r| t.rows[r][c].clone())
            .filter(|v| !v.is_null())
            .collect();
        vals.sort_by(|a, b| b.cmp(a));
        for v in vals.into_iter().take(n as usize) {
            let mut row = key.clone();
            row.push(v);
            expected.push(row);
        }
    }
    let mut names: Vec<&str> = keys.to_vec();
    names.push(&alias);
    let got_rows = key_rows(&got, &names);
    assert_eq!(got_rows.len(), expected.len(), "{ctx}: rows of {alias}");
    for (g, e) in got_rows.iter().zip(&expected) {
        for (a, b) in g.iter().zip(e) {
            assert!(
                cell_matches(a, b),
                "{ctx}: {alias}: got {g:?}, expected {e:?}"
            );
        }
    }
}

/// pandas' drop_duplicates(subset, keep='first'): the first row of each distinct
/// subset, in row order.
fn ref_drop_duplicates(t: &Table, subset: &[&str]) -> Vec<Vec<Cell>> {
    let idx: Vec<usize> = if subset.is_empty() {
        (0..t.columns.len()).collect()
    } else {
        subset.iter().map(|k| t.idx(k)).collect()
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for row in &t.rows {
        let key: Vec<Cell> = idx.iter().map(|&i| row[i].clone()).collect();
        if seen.insert(key) {
            out.push(row.clone());
        }
    }
    out
}

fn check_drop_duplicates(df: &DataFrame, t: &Table, subset: &[&str], split_out: usize, ctx: &str) {
    let out = df.drop_duplicates(subset, split_out).unwrap();
    assert_eq!(out.columns(), df.columns(), "{ctx}: column order");
    assert_eq!(out.npartitions(), split_out);
    let (got, stats) = out.compute_with_stats().unwrap();
    if split_out > 1 {
        assert!(stats.shuffled_bytes > 0, "{ctx}: nothing shuffled");
    }
    let mut got_rows = batch_rows(&got);
    let mut expected = ref_drop_duplicates(t, subset);
    if split_out > 1 {
        // First-seen order holds within each partition only.
        got_rows.sort();
        expected.sort();
    }
    let flat = |r: Vec<Vec<Cell>>| r.into_iter().flatten().collect::<Vec<_>>();
    assert_eq!(
        got_rows.len(),
        expected.len(),
        "{ctx}: distinct rows by {subset:?}"
    );
    assert_cells(
        &flat(got_rows),
        &flat(expected),
        &format!("{ctx}: drop_duplicates {subset:?}"),
    );
}

fn ref_nunique(t: &Table, column: &str) -> i64 {
    let mut v: Vec<Cell> = t
        .column(column)
        .into_iter()
        .filter(|c| !c.is_null())
        .collect();
    v.sort();
    v.dedup();
    v.len() as i64
}

fn fixture(seed: u64, rows: usize, nfiles: usize) -> (tempfile::TempDir, Table) {
    let dir = tempfile::tempdir().unwrap();
    let t = gen_table(seed, &GenOpts::new(rows).nulls(0.05, 0.1));
    t.write_files(dir.path(), nfiles);
    (dir, t)
}

#[test]
fn holistic_and_expression_aggregations_match_the_reference() {
    let (dir, t) = fixture(7, 1500, 3);
    for (threads, mode, blocksize) in [(1, Mode::Sync, 700), (3, Mode::Parallel, 4000)] {
        let df = load_gen(&session(threads, mode, blocksize), dir.path());
        for keys in [&["id"][..], &["name", "flag"][..]] {
            for split_out in [1, 3] {
                let ctx = format!("{keys:?} split_out {split_out} {threads} {mode:?}");
                check_stats(&df, &t, keys, split_out, &ctx);
                check_nlargest(&df, &t, keys, "x", 2, split_out, &ctx);
                check_nlargest(&df, &t, keys, "v", 3, split_out, &ctx);
            }
        }
        // Whole-frame: one row.
        let one = df
            .agg_list(&parse_agg_list("median(x), max(x) - min(x) as span").unwrap())
            .unwrap();
        let got = one.compute().unwrap();
        let all: Vec<usize> = (0..t.rows.len()).collect();
        assert_cells(
            &cells(&got, "median(x)"),
            &[ref_quantile(nums(&t, &all, "x"), 0.5)],
            "median",
        );
        let span = ref_agg(&t, &all, "max", Some("x")).num().unwrap()
            - ref_agg(&t, &all, "min", Some("x")).num().unwrap();
        assert_cells(&cells(&got, "span"), &[Cell::Float(span)], "span");
    }
}

#[test]
fn bad_holistic_aggregations_are_plan_errors() {
    let (dir, _t) = fixture(8, 50, 1);
    let df = load_gen(&session(1, Mode::Sync, 1 << 20), dir.path());
    let g = || df.groupby(&["id"]).unwrap();
    let err = g().agg(&[median("s")]).unwrap_err().to_string();
    assert!(err.contains("needs a numeric column"), "{err}");
    let err = g().agg(&[corr("x", "name")]).unwrap_err().to_string();
    assert!(err.contains("needs a numeric column"), "{err}");
    let err = g()
        .agg(&[nlargest(1, "x"), nlargest(2, "v")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("only one aggregation"), "{err}");
    assert!(quantile("x", -0.1).is_err());
    let err = df.drop_duplicates(&["nope"], 1).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
    // Floats cannot be keys: drop_duplicates on x says so.
    let err = df.drop_duplicates(&["x"], 1).unwrap_err().to_string();
    assert!(err.contains("cannot group by"), "{err}");
}

#[test]
fn drop_duplicates_and_nunique_match_the_reference() {
    let (dir, t) = fixture(9, 1200, 3);
    for (threads, mode) in [(1, Mode::Sync), (2, Mode::Parallel)] {
        let df = load_gen(&session(threads, mode, 900), dir.path());
        for subset in [
            &["name"][..],
            &["name", "id"][..],
            &["id", "flag", "ts"][..],
        ] {
            for split_out in [1, 4] {
                let ctx = format!("{threads} {mode:?} split_out {split_out}");
                check_drop_duplicates(&df, &t, subset, split_out, &ctx);
            }
        }
        // Every column (none of them float).
        let keyable = df.select(&["name", "id", "flag"]).unwrap();
        let kt = Table {
            columns: vec!["name".into(), "id".into(), "flag".into()],
            rows: t
                .rows
                .iter()
                .map(|r| {
                    vec![
                        r[t.idx("name")].clone(),
                        r[t.idx("id")].clone(),
                        r[t.idx("flag")].clone(),
                    ]
                })
                .collect(),
        };
        for split_out in [1, 3] {
            check_drop_duplicates(&keyable, &kt, &[] as &[&str], split_out, "all columns");
        }
        for column in ["id", "name", "ts", "x", "v", "s", "i"] {
            for split_out in [1, 5] {
                let (n, stats) = df.nunique_with_stats(column, split_out).unwrap();
                assert_eq!(
                    n,
                    ref_nunique(&t, column),
                    "nunique({column}) split_out {split_out}"
                );
                if split_out > 1 && column != "x" {
                    assert!(
                        stats.shuffled_bytes > 0,
                        "nunique({column}) did not shuffle"
                    );
                }
            }
        }
    }
}

fn limited(threads: usize, limit: u64, spill: &Path) -> Session {
    Session::builder()
        .with_threads(threads)
        .with_blocksize(1500)
        .tiny_memory_limit(limit)
        .with_spill_dir(spill)
        .build()
        .unwrap()
}

#[test]
fn under_a_tiny_memory_limit_median_spills_and_shuffles() {
    let (dir, t) = fixture(10, 3000, 3);
    let spill = tempfile::tempdir().unwrap();
    for threads in [1, 2] {
        let s = limited(threads, 64 << 10, spill.path());
        let df = load_gen(&s, dir.path());
        // High cardinality (`i` is unique): the values go through the shuffle store.
        let out = df
            .groupby(&["i"])
            .unwrap()
            .split_out(6)
            .unwrap()
            .agg(&[median("x"), nlargest(1, "v")])
            .unwrap();
        let (got, stats) = out.compute_with_stats().unwrap();
        assert!(stats.shuffled_bytes > 0, "{stats:?}");
        assert!(
            stats.shuffle_disk_bytes > 0,
            "the shuffle never reached sled: {stats:?}"
        );
        let got = sorted(&got, &[("i", true)]);
        let groups = ref_groups(&t, &["i"], false);
        let expected: Vec<Cell> = groups
            .values()
            .filter(|r| nums(&t, r, "v").len() == 1)
            .map(|r| ref_quantile(nums(&t, r, "x"), 0.5))
            .collect();
        // nlargest drops groups without a value of v; median of the rest.
        assert_cells(&cells(&got, "median(x)"), &expected, "median under 64 KiB");

        // The tree reduction (forced): partials (lists of every value) wait and spill.
        let out = df
            .groupby(&["name", "id"])
            .unwrap()
            .split_out(1)
            .unwrap()
            .split_every(64)
            .unwrap()
            .agg(&[median("x"), corr("x", "v")])
            .unwrap();
        let s2 = limited(threads, 32 << 10, spill.path());
        let out2 = load_gen(&s2, dir.path())
            .groupby(&["name", "id"])
            .unwrap()
            .split_out(1)
            .unwrap()
            .split_every(64)
            .unwrap()
            .agg(&[median("x"), corr("x", "v")])
            .unwrap();
        let (a, _) = out.compute_with_stats().unwrap();
        let (b, stats) = out2.compute_with_stats().unwrap();
        assert_eq!(a, b);
        assert!(stats.spilled_bytes > 0, "nothing spilled: {stats:?}");
        assert!(stats.read_back_bytes > 0, "nothing read back: {stats:?}");
        let groups = ref_groups(&t, &["name", "id"], false);
        let med: Vec<Cell> = groups
            .values()
            .map(|r| ref_quantile(nums(&t, r, "x"), 0.5))
            .collect();
        assert_cells(&cells(&b, "median(x)"), &med, "tree median under 32 KiB");
    }
    assert!(
        std::fs::read_dir(spill.path()).unwrap().next().is_none(),
        "spill files left behind"
    );
}

#[test]
fn under_a_tiny_memory_limit_drop_duplicates_and_nunique_shuffle_through_sled() {
    let (dir, t) = fixture(11, 3000, 3);
    let spill = tempfile::tempdir().unwrap();
    let s = limited(2, 64 << 10, spill.path());
    let df = load_gen(&s, dir.path());
    // `i` is unique: every row is its own group, all of them through the store.
    let out = df.drop_duplicates(&["i", "name"], 5).unwrap();
    let (got, stats) = out.compute_with_stats().unwrap();
    assert!(
        stats.shuffle_disk_bytes > 0,
        "the shuffle never reached sled: {stats:?}"
    );
    let mut rows = batch_rows(&got);
    rows.sort();
    let mut expected = ref_drop_duplicates(&t, &["i", "name"]);
    expected.sort();
    let flat = |r: Vec<Vec<Cell>>| r.into_iter().flatten().collect::<Vec<_>>();
    assert_cells(&flat(rows), &flat(expected), "drop_duplicates under 64 KiB");
    let (n, stats) = df.nunique_with_stats("i", 5).unwrap();
    assert_eq!(n, 3000);
    assert!(stats.shuffled_bytes > 0, "{stats:?}");
    assert!(
        std::fs::read_dir(spill.path()).unwrap().next().is_none(),
        "spill files left behind"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(16)
    })]

    #[test]
    fn holistic_answers_do_not_depend_on_partitioning(
        seed in any::<u64>(),
        rows in 1usize..300,
        nfiles in 1usize..=4,
        blocksize in 64u64..3000,
        threads in 1usize..=4,
        sync in any::<bool>(),
        split_every in 2usize..=6,
        split_out in 1usize..=4,
    ) {
        let t = gen_table(seed, &GenOpts::new(rows).nulls(0.1, 0.15));
        let dir = tempfile::tempdir().unwrap();
        t.write_files(dir.path(), nfiles);
        let mode = if sync { Mode::Sync } else { Mode::Parallel };
        let df = load_gen(&session_split(threads, mode, blocksize, split_every), dir.path());
        let ctx = format!("rows {rows}, files {nfiles}, blocksize {blocksize}, threads {threads}, \
                           {mode:?}, split_every {split_every}, split_out {split_out}");
        check_stats(&df, &t, &["name"], split_out, &ctx);
        check_nlargest(&df, &t, &["id"], "x", 2, split_out, &ctx);
        check_drop_duplicates(&df, &t, &["name", "flag"], split_out, &ctx);
        prop_assert_eq!(df.nunique("id", split_out).unwrap(), ref_nunique(&t, "id"));
    }
}

/// db-benchmark q6..q9 as the peers harness runs them, on a generated G1 table,
/// against references computed from the CSV rows read back naively.
#[test]
fn cli_answers_q6_to_q9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("g1");
    let bin = env!("CARGO_BIN_EXE_outcore");
    let st = Command::new(bin)
        .args([
            "datasets", "groupby", "--rows", "3000", "--k", "5", "--files", "2", "--out",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(st.status.success());
    // Naive read of the generated rows.
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        rows.extend(
            text.lines()
                .skip(1)
                .map(|l| l.split(',').map(String::from).collect()),
        );
    }
    let f = |r: &Vec<String>, i: usize| r[i].parse::<f64>().unwrap();
    let glob = format!("{}/*.csv", data.display());
    let run = |args: &[&str]| -> Vec<Vec<String>> {
        let mut full = vec!["query", glob.as_str()];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--format", "csv"]);
        let out = Command::new(bin).args(&full).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(String::from).collect())
            .collect()
    };
    let close_str = |a: &str, b: f64, what: &str| {
        let a: f64 = a.parse().unwrap();
        assert!(close(a, b), "{what}: got {a}, expected {b}");
    };
    // q7: max(v1) - min(v2) by id3 (column 2); v1 is column 6, v2 column 7.
    let mut q7: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for r in &rows {
        let e = q7.entry(r[2].clone()).or_insert((f64::MIN, f64::MAX));
        e.0 = e.0.max(f(r, 6));
        e.1 = e.1.min(f(r, 7));
    }
    let got = run(&[
        "--groupby",
        "id3",
        "--agg",
        "max(v1) - min(v2) as range_v1_v2",
    ]);
    assert_eq!(got.len(), q7.len());
    for (g, (k, (mx, mn))) in got.iter().zip(&q7) {
        assert_eq!(&g[0], k);
        close_str(&g[1], mx - mn, "q7");
    }
    // q6: median and std of v3 by id4, id5 (columns 3, 4; v3 is 8).
    let mut q6: BTreeMap<(i64, i64), Vec<f64>> = BTreeMap::new();
    for r in &rows {
        q6.entry((r[3].parse().unwrap(), r[4].parse().unwrap()))
            .or_default()
            .push(f(r, 8));
    }
    let got = run(&[
        "--groupby",
        "id4,id5",
        "--agg",
        "median(v3) as median_v3, std(v3) as sd_v3",
    ]);
    assert_eq!(got.len(), q6.len());
    for (g, v) in got.iter().zip(q6.values()) {
        let Cell::Float(m) = ref_quantile(v.clone(), 0.5) else {
            panic!()
        };
        close_str(&g[2], m, "q6 median");
    }
    // q8: largest two v3 by id6 (column 5).
    let mut q8: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for r in &rows {
        q8.entry(r[5].parse().unwrap()).or_default().push(f(r, 8));
    }
    let got = run(&[
        "--groupby",
        "id6",
        "--agg",
        "nlargest(2, v3) as largest2_v3",
    ]);
    let expected: Vec<(i64, f64)> = q8
        .iter()
        .flat_map(|(k, v)| {
            let mut v = v.clone();
            v.sort_by(|a, b| b.total_cmp(a));
            v.into_iter().take(2).map(move |x| (*k, x))
        })
        .collect();
    assert_eq!(got.len(), expected.len());
    for (g, (k, x)) in got.iter().zip(&expected) {
        assert_eq!(g[0].parse::<i64>().unwrap(), *k);
        close_str(&g[1], *x, "q8");
    }
    // q9: corr(v1, v2)^2 by id2, id4, with split_out through the CLI.
    let got = run(&[
        "--groupby",
        "id2,id4",
        "--agg",
        "corr(v1, v2) * corr(v1, v2) as r2",
        "--split-out",
        "3",
    ]);
    let mut q9: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        q9.entry((r[1].clone(), r[3].clone())).or_default().push(i);
    }
    assert_eq!(got.len(), q9.len());
    let mut t = Table::new(&["x", "y"]);
    t.rows = rows
        .iter()
        .map(|r| vec![Cell::Float(f(r, 6)), Cell::Float(f(r, 7))])
        .collect();
    for g in &got {
        let idx = &q9[&(g[0].clone(), g[1].clone())];
        match ref_corr(&t, idx, "x", "y") {
            Cell::Float(c) => close_str(&g[2], c * c, "q9"),
            _ => assert_eq!(g[2], "", "q9 null"),
        }
    }
}

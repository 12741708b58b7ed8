//! Groupby and whole-frame aggregations against the naive reference: every
//! function over int, string, two-column, boolean and timestamp keys, with and
//! without nulls; null keys dropped or kept; `value_counts`, `count`, `num_rows`,
//! `describe` and `head`.

use arrow::datatypes::{DataType, TimeUnit};
use outcore::agg::{count, mean, size, sum};
use outcore::expr::{col, lit};
use outcore::scheduler::Mode;
use outcore::DataFrame;
use tempfile::TempDir;

use crate::common::*;

/// 2000 generated rows in 3 files, read in ~50 partitions.
fn fixture(seed: u64, key_nulls: f64, value_nulls: f64) -> (TempDir, Table, DataFrame) {
    let dir = tempfile::tempdir().unwrap();
    let t = gen_table(seed, &GenOpts::new(2000).nulls(key_nulls, value_nulls));
    t.write_files(dir.path(), 3);
    let df = load_gen(&session(2, Mode::Parallel, 2048), dir.path());
    assert!(df.npartitions() > 20, "{} partitions", df.npartitions());
    (dir, t, df)
}

const KEYS: [&[&str]; 5] = [&["id"], &["name"], &["name", "id"], &["flag"], &["ts"]];

fn run_all_keys(seed: u64, key_nulls: f64, value_nulls: f64, keep_null_keys: bool) {
    let (_dir, t, df) = fixture(seed, key_nulls, value_nulls);
    let aggs = all_aggs();
    for keys in KEYS {
        let mut g = df.groupby(keys).unwrap();
        if keep_null_keys {
            g = g.keep_null_keys();
        }
        let out = g.agg(&specs(&aggs)).unwrap().compute().unwrap();
        check_groupby(
            &out,
            &t,
            keys,
            &aggs,
            keep_null_keys,
            &format!("nulls {key_nulls}/{value_nulls}, keep_null_keys {keep_null_keys}"),
        );
    }
}

#[test]
fn every_aggregation_by_every_key_kind_without_nulls() {
    run_all_keys(11, 0.0, 0.0, false);
}

#[test]
fn every_aggregation_with_null_values() {
    run_all_keys(12, 0.0, 0.2, false);
}

#[test]
fn rows_with_null_keys_are_dropped_by_default() {
    run_all_keys(13, 0.1, 0.1, false);
}

#[test]
fn keep_null_keys_makes_a_group_of_null_keys() {
    run_all_keys(14, 0.1, 0.1, true);
}

/// Keeping null keys gives the null group the right rows, and it sorts last (pandas'
/// `dropna=False`), with one key and with two.
#[test]
fn the_null_key_group_holds_the_rows_with_null_keys() {
    let (_dir, t, df) = fixture(15, 0.15, 0.0);
    let out = df
        .groupby(&["name"])
        .unwrap()
        .keep_null_keys()
        .agg(&[size(), sum("v")])
        .unwrap()
        .compute()
        .unwrap();
    let names = cells(&out, "name");
    let null_at = names.iter().position(Cell::is_null).expect("a null group");
    let null_rows: Vec<usize> = (0..t.rows.len())
        .filter(|&r| t.get(&t.rows[r], "name").is_null())
        .collect();
    assert!(!null_rows.is_empty());
    assert_eq!(
        cells(&out, "size")[null_at],
        Cell::Int(null_rows.len() as i64)
    );
    assert_eq!(
        cells(&out, "sum(v)")[null_at],
        ref_agg(&t, &null_rows, "sum", Some("v"))
    );
    assert_eq!(names.iter().filter(|c| c.is_null()).count(), 1);
    assert_eq!(
        null_at,
        names.len() - 1,
        "the null group sorts last: {names:?}"
    );

    let out = df
        .groupby(&["flag", "name"])
        .unwrap()
        .keep_null_keys()
        .agg(&[size()])
        .unwrap()
        .compute()
        .unwrap();
    let flags = cells(&out, "flag");
    let names = cells(&out, "name");
    let expected: Vec<Vec<Cell>> = ref_groups(&t, &["flag", "name"], true)
        .into_keys()
        .collect();
    let got: Vec<Vec<Cell>> = flags
        .into_iter()
        .zip(names)
        .map(|(a, b)| vec![a, b])
        .collect();
    assert_eq!(got, expected, "two keys: nulls last in each");
    assert!(got.last().unwrap()[0].is_null() && got.last().unwrap()[1].is_null());
}

#[test]
fn timestamp_and_boolean_values_and_output_types() {
    let (_dir, t, df) = fixture(16, 0.1, 0.1);
    let aggs: Vec<Agg> = vec![
        ("count", Some("ts")),
        ("min", Some("ts")),
        ("max", Some("ts")),
        ("first", Some("ts")),
        ("last", Some("ts")),
        ("nunique", Some("ts")),
        ("count", Some("flag")),
        ("min", Some("flag")),
        ("max", Some("flag")),
        ("first", Some("flag")),
        ("last", Some("flag")),
        ("nunique", Some("flag")),
        ("sum", Some("i")),
        ("mean", Some("id")),
    ];
    let out = df
        .groupby(&["name"])
        .unwrap()
        .agg(&specs(&aggs))
        .unwrap()
        .compute()
        .unwrap();
    check_groupby(&out, &t, &["name"], &aggs, false, "ts and flag values");

    let all = df
        .groupby(&["id"])
        .unwrap()
        .agg(&specs(&all_aggs()))
        .unwrap();
    let schema = all.schema();
    let ty = |n: &str| schema.field_with_name(n).unwrap().data_type().clone();
    assert_eq!(ty("id"), DataType::Int64);
    assert_eq!(ty("size"), DataType::Int64);
    assert_eq!(ty("sum(v)"), DataType::Int64);
    assert_eq!(ty("sum(x)"), DataType::Float64);
    assert_eq!(ty("count(x)"), DataType::Int64);
    assert_eq!(ty("mean(v)"), DataType::Float64);
    assert_eq!(ty("var(v)"), DataType::Float64);
    assert_eq!(ty("std(x)"), DataType::Float64);
    assert_eq!(ty("min(v)"), DataType::Int64);
    assert_eq!(ty("max(x)"), DataType::Float64);
    assert_eq!(ty("first(s)"), DataType::Utf8);
    assert_eq!(ty("nunique(s)"), DataType::Int64);
    let ts_out = df
        .groupby(&["ts"])
        .unwrap()
        .agg(
            &[("min", Some("ts")) as Agg]
                .iter()
                .map(spec)
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let tsn = DataType::Timestamp(TimeUnit::Nanosecond, None);
    assert_eq!(ts_out.schema().field(0).data_type(), &tsn);
    assert_eq!(ts_out.schema().field(1).data_type(), &tsn);
}

#[test]
fn unsorted_groups_come_in_order_of_first_appearance() {
    let (_dir, t, df) = fixture(17, 0.0, 0.1);
    for key in ["name", "id"] {
        let out = df
            .groupby(&[key])
            .unwrap()
            .unsorted()
            .agg(&[count("x"), sum("v")])
            .unwrap()
            .compute()
            .unwrap();
        let mut seen = Vec::new();
        for c in t.column(key) {
            if !seen.contains(&c) {
                seen.push(c);
            }
        }
        assert_eq!(cells(&out, key), seen, "first appearance of {key}");
        let groups = ref_groups(&t, &[key], false);
        let expected: Vec<Cell> = seen
            .iter()
            .map(|k| ref_agg(&t, &groups[&vec![k.clone()]], "sum", Some("v")))
            .collect();
        assert_cells(&cells(&out, "sum(v)"), &expected, "unsorted sum(v)");
    }
}

#[test]
fn whole_frame_aggregations() {
    for (seed, nulls) in [(21, 0.0), (22, 0.25)] {
        let (_dir, t, df) = fixture(seed, nulls, nulls);
        let aggs = all_aggs();
        let out = df.agg(&specs(&aggs)).unwrap().compute().unwrap();
        assert_eq!(out.num_rows(), 1);
        let all: Vec<usize> = (0..t.rows.len()).collect();
        for a in &aggs {
            let name = alias(a);
            assert_cells(
                &cells(&out, &name),
                &[ref_agg(&t, &all, a.0, a.1)],
                &format!("whole-frame {name}, nulls {nulls}"),
            );
        }
        // Of a filtered frame too (the filter keeps nulls out: null > 0 is unknown).
        let f = t.filter(|t, r| cmp_num(t.get(r, "x"), |x| x > 0.0));
        let rows: Vec<usize> = (0..f.rows.len()).collect();
        let out = df
            .filter(col("x").gt(lit(0.0)))
            .unwrap()
            .agg(&[sum("v"), mean("x"), size()])
            .unwrap()
            .compute()
            .unwrap();
        assert_cells(
            &cells(&out, "sum(v)"),
            &[ref_agg(&f, &rows, "sum", Some("v"))],
            "sum(v)",
        );
        assert_cells(
            &cells(&out, "mean(x)"),
            &[ref_agg(&f, &rows, "mean", Some("x"))],
            "mean(x)",
        );
        assert_cells(
            &cells(&out, "size"),
            &[Cell::Int(rows.len() as i64)],
            "size",
        );
    }
}

#[test]
fn value_counts_most_frequent_first() {
    let (_dir, t, df) = fixture(31, 0.1, 0.1);
    for column in ["name", "id", "s", "flag", "ts"] {
        let out = df.value_counts(column).unwrap();
        let expected = ref_value_counts(&t, column);
        let values = cells(&out, column);
        let counts = cells(&out, "count");
        let got: Vec<(Cell, Cell)> = values.into_iter().zip(counts).collect();
        let expected: Vec<(Cell, Cell)> = expected
            .into_iter()
            .map(|(v, c)| (v, Cell::Int(c)))
            .collect();
        assert_eq!(got, expected, "value_counts({column})");
    }
}

#[test]
fn count_and_num_rows() {
    let (_dir, t, df) = fixture(41, 0.1, 0.2);
    let out = df.count().unwrap();
    assert_eq!(out.num_rows(), 1);
    assert_eq!(
        out.schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        GEN_COLUMNS.to_vec()
    );
    for c in GEN_COLUMNS {
        let expected = t.column(c).iter().filter(|v| !v.is_null()).count() as i64;
        assert_eq!(cells(&out, c), vec![Cell::Int(expected)], "count of {c}");
    }
    assert_eq!(df.num_rows().unwrap(), t.rows.len());
    let expected = t
        .filter(|t, r| {
            and3(
                cmp_num(t.get(r, "v"), |v| v > 0.0),
                t.get(r, "name").str().map(|n| n != "Bob"),
            )
        })
        .rows
        .len();
    let filtered = df.query("v > 0 and name != 'Bob'").unwrap();
    assert_eq!(filtered.num_rows().unwrap(), expected);
}

#[test]
fn describe_matches_the_reference() {
    let (_dir, t, df) = fixture(51, 0.0, 0.2);
    let out = df.describe().unwrap();
    assert_eq!(
        cells(&out, "statistic"),
        ["count", "mean", "std", "min", "max"]
            .map(|s| Cell::Str(s.into()))
            .to_vec()
    );
    // The numeric columns: ints and floats (not the timestamp, boolean or text).
    let names: Vec<String> = out
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, vec!["statistic", "i", "id", "x", "v"]);
    let all: Vec<usize> = (0..t.rows.len()).collect();
    for c in ["i", "id", "x", "v"] {
        let expected: Vec<Cell> = ["count", "mean", "std", "min", "max"]
            .iter()
            .map(|f| ref_agg(&t, &all, f, Some(c)))
            .collect();
        assert_cells(&cells(&out, c), &expected, &format!("describe {c}"));
        assert!(cells(&out, c).iter().all(|v| matches!(v, Cell::Float(_))));
    }
}

#[test]
fn head_returns_the_first_rows_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let t = gen_table(61, &GenOpts::new(600).nulls(0.1, 0.1));
    t.write_files(dir.path(), 3);
    for blocksize in [1, 32, 64 << 20] {
        let df = load_gen(&session(2, Mode::Parallel, blocksize), dir.path());
        let h = df.head(7).unwrap();
        assert_eq!(
            batch_rows(&h),
            t.rows[..7].to_vec(),
            "blocksize {blocksize}"
        );
        assert_eq!(df.head(0).unwrap().num_rows(), 0);
        // A filter that empties the first partitions (and the whole first file).
        let f = df.filter(col("i").gt_eq(lit(450i64))).unwrap();
        let h = f.head(5).unwrap();
        assert_eq!(
            batch_rows(&h),
            t.rows[450..455].to_vec(),
            "blocksize {blocksize}"
        );
        let h = f.head(1000).unwrap();
        assert_eq!(
            batch_rows(&h),
            t.rows[450..].to_vec(),
            "blocksize {blocksize}"
        );
        // A filter that keeps one row in ten.
        let f = df.query("i % 10 == 3").unwrap();
        let h = f.head(4).unwrap();
        let expected: Vec<Vec<Cell>> = [3, 13, 23, 33].iter().map(|&i| t.rows[i].clone()).collect();
        assert_eq!(batch_rows(&h), expected, "blocksize {blocksize}");
    }
}

#[test]
fn plan_errors_for_groupby() {
    let (_dir, _t, df) = fixture(71, 0.0, 0.0);
    let msg = df
        .groupby(&["name"])
        .unwrap()
        .agg(&[sum("s")])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("sum(s)") && msg.contains("Utf8"), "{msg}");
    let msg = df
        .groupby(&["x"])
        .unwrap()
        .agg(&[sum("v")])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("cannot group by \"x\"") && msg.contains("Float64"),
        "{msg}"
    );
    let msg = df
        .groupby(&["name"])
        .unwrap()
        .agg(&[sum("v"), sum("v")])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("\"sum(v)\""), "{msg}");
    assert!(df.groupby(&["name"]).unwrap().split_every(1).is_err());
    assert!(df.groupby::<&str>(&[]).is_err());
    assert!(df.groupby(&["name"]).unwrap().agg(&[]).is_err());
}

/// Integer keys first in a small range (a direct-indexed table) then spread over a
/// huge one (a hash map): the switch loses no group, null keys included.
#[test]
fn int_keys_over_a_huge_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Table::new(&["k", "v"]);
    for i in 0..600i64 {
        let k = match i {
            _ if i % 37 == 5 => Cell::Null,
            0..=299 => Cell::Int(i % 7),
            _ if i % 3 == 0 => Cell::Int((1 << 40) + i % 5),
            _ if i % 3 == 1 => Cell::Int(-(i % 4) - 1_000_000_000_000),
            _ => Cell::Int(i % 7),
        };
        t.rows.push(vec![k, Cell::Int(i)]);
    }
    t.write_files(dir.path(), 2);
    let aggs: Vec<Agg> = vec![
        ("sum", Some("v")),
        ("size", None),
        ("first", Some("v")),
        ("last", Some("v")),
        ("nunique", Some("v")),
    ];
    for blocksize in [64, 4096, 64 << 20] {
        let df = session(2, Mode::Parallel, blocksize)
            .read_csv(glob_of(dir.path()))
            .load()
            .unwrap();
        for keep in [false, true] {
            let mut g = df.groupby(&["k"]).unwrap();
            if keep {
                g = g.keep_null_keys();
            }
            let out = g.agg(&specs(&aggs)).unwrap().compute().unwrap();
            check_groupby(
                &out,
                &t,
                &["k"],
                &aggs,
                keep,
                &format!("blocksize {blocksize}"),
            );
        }
    }
}

/// `nunique` counts distinct values; 0.0 and -0.0 are the same number (pandas
/// counts them once).
#[test]
fn nunique_counts_both_zeros_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("z.csv"),
        "k,z\na,0.0\na,-0.0\na,1.5\nb,-0.0\n",
    )
    .unwrap();
    let df = session(1, Mode::Sync, 64 << 20)
        .read_csv(glob_of(dir.path()))
        .load()
        .unwrap();
    let out = df
        .groupby(&["k"])
        .unwrap()
        .agg(&[outcore::agg::nunique("z")])
        .unwrap()
        .compute()
        .unwrap();
    assert_eq!(cells(&out, "nunique(z)"), vec![Cell::Int(2), Cell::Int(1)]);
}

//! Row-wise frame operations against naive row filters and computations: filters
//! with `and`/`or`/`not`/`is null` (Kleene logic, null counts as false), `query`
//! strings, arithmetic in `with_column`, `select`, `map_partitions` and its schema
//! check, and timestamps compared with string literals.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use outcore::agg::{count, mean, sum};
use outcore::expr::{col, lit, parse, Expr};
use outcore::scheduler::Mode;
use outcore::DataFrame;
use tempfile::TempDir;

use crate::common::*;

fn fixture(seed: u64) -> (TempDir, Table, DataFrame) {
    let dir = tempfile::tempdir().unwrap();
    let t = gen_table(seed, &GenOpts::new(1500).nulls(0.1, 0.15));
    t.write_files(dir.path(), 2);
    let df = load_gen(&session(2, Mode::Parallel, 1024), dir.path());
    (dir, t, df)
}

type Pred = Box<dyn Fn(&Table, &[Cell]) -> Option<bool>>;

fn num(t: &Table, r: &[Cell], c: &str) -> Option<f64> {
    t.get(r, c).num()
}

fn text<'a>(t: &Table, r: &'a [Cell], c: &str) -> Option<&'a str> {
    t.get(r, c).str()
}

fn boolean(t: &Table, r: &[Cell], c: &str) -> Option<bool> {
    match t.get(r, c) {
        Cell::Bool(b) => Some(*b),
        _ => None,
    }
}

fn check_filter(df: &DataFrame, t: &Table, filtered: &DataFrame, pred: &Pred, what: &str) {
    let expected = t.filter(|t, r| pred(t, r));
    let got = filtered.compute().unwrap();
    assert_eq!(
        got.schema().fields().len(),
        df.schema().fields().len(),
        "{what}: a filter keeps every column"
    );
    let got = batch_rows(&got);
    assert_eq!(
        got.len(),
        expected.rows.len(),
        "{what}: {} rows, expected {}",
        got.len(),
        expected.rows.len()
    );
    assert_eq!(got, expected.rows, "{what}");
    assert_eq!(filtered.num_rows().unwrap(), expected.rows.len(), "{what}");
}

#[test]
fn filters_with_and_or_not_is_null() {
    let (_dir, t, df) = fixture(101);
    let cases: Vec<(Expr, Pred)> = vec![
        (
            col("v").gt(lit(0i64)).and(col("name").not_eq(lit("Bob"))),
            Box::new(|t, r| {
                and3(
                    num(t, r, "v").map(|v| v > 0.0),
                    text(t, r, "name").map(|n| n != "Bob"),
                )
            }),
        ),
        (
            col("x").lt(lit(-50.0)).or(col("s").eq(lit("NA"))),
            Box::new(|t, r| {
                or3(
                    num(t, r, "x").map(|x| x < -50.0),
                    text(t, r, "s").map(|s| s == "NA"),
                )
            }),
        ),
        (
            col("v").gt(lit(500i64)).not(),
            Box::new(|t, r| not3(num(t, r, "v").map(|v| v > 500.0))),
        ),
        (
            col("x").is_null(),
            Box::new(|t, r| Some(t.get(r, "x").is_null())),
        ),
        (
            col("name").is_null().or(col("flag").eq(lit(true))),
            Box::new(|t, r| or3(Some(t.get(r, "name").is_null()), boolean(t, r, "flag"))),
        ),
        (
            col("s")
                .is_not_null()
                .and(col("x").gt_eq(col("v").cast(DataType::Float64))),
            Box::new(|t, r| {
                and3(
                    Some(!t.get(r, "s").is_null()),
                    num(t, r, "x").zip(num(t, r, "v")).map(|(x, v)| x >= v),
                )
            }),
        ),
        // Kleene logic: unknown or true is true, unknown and false is false.
        (
            col("x").gt(lit(0.0)).or(lit(true)),
            Box::new(|_, _| Some(true)),
        ),
        (
            col("x").gt(lit(0.0)).and(lit(false)),
            Box::new(|_, _| Some(false)),
        ),
        (col("flag"), Box::new(|t, r| boolean(t, r, "flag"))),
        (
            col("flag").not(),
            Box::new(|t, r| not3(boolean(t, r, "flag"))),
        ),
        (
            col("x").gt(lit(0.0)).or(col("v").gt(lit(0i64))).not(),
            Box::new(|t, r| {
                not3(or3(
                    num(t, r, "x").map(|x| x > 0.0),
                    num(t, r, "v").map(|v| v > 0.0),
                ))
            }),
        ),
    ];
    for (e, pred) in &cases {
        let filtered = df.filter(e.clone()).unwrap();
        check_filter(&df, &t, &filtered, pred, &e.to_string());
    }
}

#[test]
fn query_strings() {
    let (_dir, t, df) = fixture(102);
    let cases: Vec<(&str, Pred)> = vec![
        (
            "v > 0 and name != 'Bob'",
            Box::new(|t, r| {
                and3(
                    num(t, r, "v").map(|v| v > 0.0),
                    text(t, r, "name").map(|n| n != "Bob"),
                )
            }),
        ),
        (
            "x <= -10.5 or not (s == 'apple')",
            Box::new(|t, r| {
                or3(
                    num(t, r, "x").map(|x| x <= -10.5),
                    not3(text(t, r, "s").map(|s| s == "apple")),
                )
            }),
        ),
        (
            // `and` binds tighter than `or`.
            "v is null or x is not null and v < -900",
            Box::new(|t, r| {
                or3(
                    Some(t.get(r, "v").is_null()),
                    and3(
                        Some(!t.get(r, "x").is_null()),
                        num(t, r, "v").map(|v| v < -900.0),
                    ),
                )
            }),
        ),
        (
            "(x + v) / 2 >= 100",
            Box::new(|t, r| {
                num(t, r, "x")
                    .zip(num(t, r, "v"))
                    .map(|(x, v)| (x + v) / 2.0 >= 100.0)
            }),
        ),
        (
            "-x > 50",
            Box::new(|t, r| num(t, r, "x").map(|x| -x > 50.0)),
        ),
        (
            "id == 3 or id = 4",
            Box::new(|t, r| num(t, r, "id").map(|i| i == 3.0 || i == 4.0)),
        ),
        (
            "name <> 'Zoë'",
            Box::new(|t, r| text(t, r, "name").map(|n| n != "Zoë")),
        ),
        (
            "cast(v as float) / 4 > 200.5",
            Box::new(|t, r| num(t, r, "v").map(|v| v / 4.0 > 200.5)),
        ),
        (
            "flag && v > 0",
            Box::new(|t, r| and3(boolean(t, r, "flag"), num(t, r, "v").map(|v| v > 0.0))),
        ),
        (
            "i % 7 == 0 or i * 3 - 1 < 40",
            Box::new(|t, r| {
                let i = num(t, r, "i").unwrap() as i64;
                Some(i % 7 == 0 || i * 3 - 1 < 40)
            }),
        ),
        (
            "name >= 'Charlie' and name < 'Frank'",
            Box::new(|t, r| text(t, r, "name").map(|n| ("Charlie".."Frank").contains(&n))),
        ),
    ];
    for (q, pred) in &cases {
        let filtered = df.query(q).unwrap();
        check_filter(&df, &t, &filtered, pred, q);
        assert_eq!(
            filtered.compute().unwrap(),
            df.filter(parse(q).unwrap()).unwrap().compute().unwrap()
        );
    }
}

#[test]
fn timestamps_compare_with_string_literals() {
    let (_dir, t, df) = fixture(103);
    let ts_of = |t: &Table, r: &[Cell]| match t.get(r, "ts") {
        Cell::Ts(ns) => Some(*ns),
        _ => None,
    };
    let cases: Vec<(&str, Pred)> = vec![
        (
            "ts >= '2000-01-01 00:00:05'",
            Box::new(move |t, r| ts_of(t, r).map(|n| n >= ts(5))),
        ),
        (
            "ts < '2000-01-01T00:00:30'",
            Box::new(move |t, r| ts_of(t, r).map(|n| n < ts(30))),
        ),
        (
            "ts == '2000-01-01 00:00:03'",
            Box::new(move |t, r| ts_of(t, r).map(|n| n == ts(3))),
        ),
        (
            "ts > '2000-01-01 00:00:10' and ts <= '2000-01-01 00:00:30.5'",
            Box::new(move |t, r| ts_of(t, r).map(|n| n > ts(10) && n <= ts(30) + 500_000_000)),
        ),
        (
            "'2000-01-01 00:00:42' <= ts",
            Box::new(move |t, r| ts_of(t, r).map(|n| n >= ts(42))),
        ),
    ];
    for (q, pred) in &cases {
        let filtered = df.query(q).unwrap();
        check_filter(&df, &t, &filtered, pred, q);
    }
    // Through the builder too.
    let filtered = df
        .filter(col("ts").gt_eq(lit("2000-01-01 00:00:05")))
        .unwrap();
    check_filter(
        &df,
        &t,
        &filtered,
        &(Box::new(move |t: &Table, r: &[Cell]| ts_of(t, r).map(|n| n >= ts(5))) as Pred),
        "builder ts >= literal",
    );
    // A literal that is no timestamp is an error, not an empty answer.
    let bad = df.query("ts > 'yesterday'");
    let failed = match bad {
        Err(_) => true,
        Ok(f) => f.compute().is_err(),
    };
    assert!(failed, "comparing a timestamp with 'yesterday' must fail");
}

#[test]
fn with_column_arithmetic() {
    let (_dir, t, df) = fixture(104);
    let out = df
        .with_column("z", col("x").mul(lit(2.0)).add(col("v")))
        .unwrap()
        .with_column("w", col("v").div(lit(4i64)))
        .unwrap()
        .with_column("m", col("i").rem(lit(7i64)))
        .unwrap()
        .with_column("neg", col("v").neg())
        .unwrap()
        .with_column("x", col("x").sub(lit(0.25)))
        .unwrap()
        .with_column("vf", col("v").cast(DataType::Float64))
        .unwrap();
    let schema = out.schema();
    let mut names: Vec<&str> = GEN_COLUMNS.to_vec();
    names.extend(["z", "w", "m", "neg", "vf"]);
    assert_eq!(
        schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        names,
        "new columns at the end, a replaced column in its place"
    );
    let ty = |n: &str| schema.field_with_name(n).unwrap().data_type().clone();
    assert_eq!(ty("z"), DataType::Float64);
    assert_eq!(ty("w"), DataType::Float64, "`/` is always floating point");
    assert_eq!(ty("m"), DataType::Int64);
    assert_eq!(ty("neg"), DataType::Int64);
    assert_eq!(ty("vf"), DataType::Float64);
    let b = out.compute().unwrap();
    let f = |c: Option<f64>| c.map_or(Cell::Null, Cell::Float);
    let i = |c: Option<i64>| c.map_or(Cell::Null, Cell::Int);
    let v = |r: &[Cell]| num(&t, r, "v");
    let x = |r: &[Cell]| num(&t, r, "x");
    let expect = |g: &dyn Fn(&[Cell]) -> Cell| t.rows.iter().map(|r| g(r)).collect::<Vec<_>>();
    assert_cells(
        &cells(&b, "z"),
        &expect(&|r| f(x(r).zip(v(r)).map(|(x, v)| x * 2.0 + v))),
        "z",
    );
    assert_cells(&cells(&b, "w"), &expect(&|r| f(v(r).map(|v| v / 4.0))), "w");
    assert_cells(
        &cells(&b, "m"),
        &expect(&|r| i(num(&t, r, "i").map(|i| i as i64 % 7))),
        "m",
    );
    assert_cells(
        &cells(&b, "neg"),
        &expect(&|r| i(v(r).map(|v| -(v as i64)))),
        "neg",
    );
    assert_cells(
        &cells(&b, "x"),
        &expect(&|r| f(x(r).map(|x| x - 0.25))),
        "x",
    );
    assert_cells(&cells(&b, "vf"), &expect(&|r| f(v(r))), "vf");
    // The untouched columns are as read.
    assert_cells(&cells(&b, "s"), &t.column("s"), "s");
}

#[test]
fn select_keeps_the_columns_in_the_order_given() {
    let (_dir, t, df) = fixture(105);
    let b = df.select(&["s", "i", "ts"]).unwrap().compute().unwrap();
    let names: Vec<String> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, vec!["s", "i", "ts"]);
    assert_cells(&cells(&b, "s"), &t.column("s"), "s");
    assert_cells(&cells(&b, "i"), &t.column("i"), "i");
    assert_cells(&cells(&b, "ts"), &t.column("ts"), "ts");
    let e = df
        .select_exprs(vec![
            (col("v").add(lit(1i64)), "v1".to_string()),
            (col("name"), "who".to_string()),
        ])
        .unwrap()
        .compute()
        .unwrap();
    let v1: Vec<Cell> = t
        .column("v")
        .iter()
        .map(|c| c.num().map_or(Cell::Null, |v| Cell::Int(v as i64 + 1)))
        .collect();
    assert_cells(&cells(&e, "v1"), &v1, "v1");
    assert_cells(&cells(&e, "who"), &t.column("name"), "who");
    let msg = df.select(&["s", "s"]).unwrap_err().to_string();
    assert!(msg.contains("selected twice"), "{msg}");
}

fn double_v(schema: Arc<Schema>) -> impl Fn(RecordBatch) -> outcore::Result<RecordBatch> {
    move |b: RecordBatch| {
        let v = b.column_by_name("v").unwrap();
        let v = v.as_primitive::<Int64Type>();
        let doubled: Int64Array = v.iter().map(|x| x.map(|x| x * 2)).collect();
        let mut columns = b.columns().to_vec();
        columns.push(Arc::new(doubled));
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

#[test]
fn map_partitions_and_its_schema_check() {
    let (_dir, t, df) = fixture(106);
    let mut fields: Vec<Field> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("v2", DataType::Int64, true));
    let schema = Arc::new(Schema::new(fields));
    let mapped = df.map_partitions(schema.clone(), double_v(schema.clone()));
    let b = mapped.compute().unwrap();
    let expected: Vec<Cell> = t
        .column("v")
        .iter()
        .map(|c| c.num().map_or(Cell::Null, |v| Cell::Int(v as i64 * 2)))
        .collect();
    assert_cells(&cells(&b, "v2"), &expected, "v2");
    assert_cells(&cells(&b, "i"), &t.column("i"), "i");
    // The new column groups and filters like any other.
    let g = mapped
        .filter(col("v2").gt(lit(0i64)))
        .unwrap()
        .groupby(&["name"])
        .unwrap()
        .agg(&[sum("v2")])
        .unwrap()
        .compute()
        .unwrap();
    let pos = t.filter(|t, r| num(t, r, "v").map(|v| v > 0.0));
    let groups = ref_groups(&pos, &["name"], false);
    let expected: Vec<Cell> = groups
        .values()
        .map(|rows| match ref_agg(&pos, rows, "sum", Some("v")) {
            Cell::Int(s) => Cell::Int(2 * s),
            other => panic!("{other}"),
        })
        .collect();
    assert_cells(&cells(&g, "sum(v2)"), &expected, "sum(v2) by name");

    // A function that returns another schema than it promised fails, naming the task.
    let promised = Arc::new(Schema::new(vec![Field::new("y", DataType::Int64, true)]));
    let liar = df.map_partitions(promised, Ok);
    assert_eq!(liar.columns(), vec!["y"]);
    let err = liar.compute().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("map_partitions")
            && msg.contains("promised")
            && msg.contains("map-partitions"),
        "{msg}"
    );
    assert!(matches!(err, outcore::Error::Task { .. }), "{err:?}");

    // A function's own error is reported with its task.
    let failing = df.map_partitions(df.schema(), |_| {
        Err(outcore::Error::plan(
            "my-function",
            "refused this partition",
        ))
    });
    let msg = failing.compute().unwrap_err().to_string();
    assert!(
        msg.contains("refused this partition") && msg.contains("task ("),
        "{msg}"
    );
}

#[test]
fn filter_type_errors_are_reported_when_added() {
    let (_dir, _t, df) = fixture(107);
    let msg = df.filter(col("v").add(lit(1i64))).unwrap_err().to_string();
    assert!(msg.contains("not a boolean condition"), "{msg}");
    let msg = df.query("name + 1 > 0").unwrap_err().to_string();
    assert!(
        msg.contains("cannot apply \"+\" to Utf8 and Int64"),
        "{msg}"
    );
    let msg = df.query("name > 3").unwrap_err().to_string();
    assert!(msg.contains("cannot apply"), "{msg}");
    let msg = df.query("not v").unwrap_err().to_string();
    assert!(msg.contains("`not` needs a boolean"), "{msg}");
}

#[test]
fn a_chain_of_operations_then_a_groupby() {
    let (_dir, t, df) = fixture(108);
    let out = df
        .query("x > 0")
        .unwrap()
        .with_column("z", col("v").mul(lit(2i64)))
        .unwrap()
        .query("z < 1000")
        .unwrap()
        .groupby(&["name"])
        .unwrap()
        .agg(&[sum("z"), count("z"), mean("x")])
        .unwrap()
        .compute()
        .unwrap();
    let mut r = t.filter(|t, r| {
        and3(
            num(t, r, "x").map(|x| x > 0.0),
            num(t, r, "v").map(|v| 2.0 * v < 1000.0),
        )
    });
    r.columns.push("z".into());
    let vi = r.idx("v");
    for row in &mut r.rows {
        let z = match &row[vi] {
            Cell::Int(v) => Cell::Int(2 * v),
            _ => Cell::Null,
        };
        row.push(z);
    }
    let aggs: Vec<Agg> = vec![
        ("sum", Some("z")),
        ("count", Some("z")),
        ("mean", Some("x")),
    ];
    check_groupby(&out, &r, &["name"], &aggs, false, "chain");
    assert!(out.column(0).null_count() == 0);
}

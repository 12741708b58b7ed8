//! Time series and reuse (issue #6): resample against pandas goldens
//! (tests/golden/make_golden.py), the generated `timeseries()` frame, `persist()`.

use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion_common::ScalarValue;
use outcore::agg::{AggFunc, AggSpec};
use outcore::frame::timerule::Side;
use outcore::scheduler::Mode;
use outcore::{DataFrame, Session};

use crate::common::{close, ok_both, outcore, session};

fn golden_dir() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/resample"
    ))
}

/// The golden input, read in blocks of `blocksize` bytes and declared indexed by
/// `timestamp` (the file is in time order, so no shuffle).
fn golden_input(s: &Session) -> DataFrame {
    s.read_csv(golden_dir().join("input.csv").to_string_lossy())
        .with_parse_dates(["timestamp"])
        .load()
        .unwrap()
        .set_index_sorted("timestamp")
        .unwrap()
}

/// A golden CSV: header and rows of fields (empty = null).
fn read_golden(name: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(golden_dir().join(format!("{name}.csv"))).unwrap();
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    (header, rows)
}

/// `sum(x)` → spec; `open(x)` and friends → ohlc's parts.
fn spec_of(name: &str) -> AggSpec {
    let (f, rest) = name.split_once('(').unwrap();
    let column = rest.trim_end_matches(')');
    let func = match f {
        "open" => AggFunc::First,
        "high" => AggFunc::Max,
        "low" => AggFunc::Min,
        "close" => AggFunc::Last,
        other => AggFunc::from_name(other).unwrap(),
    };
    AggSpec::new(func, column).alias(name)
}

fn f64s(batch: &RecordBatch, i: usize) -> Vec<Option<f64>> {
    let a = cast(batch.column(i), &DataType::Float64).unwrap();
    a.as_primitive::<Float64Type>().iter().collect()
}

/// The resample of golden `case`.
fn build_case(
    df: &DataFrame,
    case: &str,
    rule: &str,
    closed: Option<Side>,
    label: Option<Side>,
) -> outcore::Result<DataFrame> {
    let (header, _) = read_golden(case);
    let specs: Vec<AggSpec> = header[1..].iter().map(|h| spec_of(h)).collect();
    let mut r = df.resample(rule)?;
    if let Some(c) = closed {
        r = r.closed(c);
    }
    if let Some(l) = label {
        r = r.label(l);
    }
    r.agg(&specs)
}

fn check_case(df: &DataFrame, case: &str, rule: &str, closed: Option<Side>, label: Option<Side>) {
    let got = build_case(df, case, rule, closed, label)
        .unwrap()
        .compute()
        .unwrap();
    check_answer(&got, case);
}

/// `got` against pandas' answer for golden `case`.
fn check_answer(got: &RecordBatch, case: &str) {
    let (header, rows) = read_golden(case);
    assert_eq!(got.num_rows(), rows.len(), "{case}: number of bins");
    let labels = cast(got.column(0), &DataType::Int64).unwrap();
    let labels = labels.as_primitive::<Int64Type>();
    for (k, row) in rows.iter().enumerate() {
        let want = outcore::io::csv::parse_timestamp_ns(row[0].as_bytes()).unwrap();
        assert_eq!(
            labels.value(k),
            want,
            "{case}: label of bin {k} ({})",
            row[0]
        );
    }
    for (c, name) in header.iter().enumerate().skip(1) {
        let values = f64s(got, c);
        for (k, row) in rows.iter().enumerate() {
            let want: Option<f64> = if row[c].is_empty() {
                None
            } else {
                Some(row[c].parse().unwrap())
            };
            let ok = match (values[k], want) {
                (None, None) => true,
                (Some(a), Some(b)) => close(a, b),
                _ => false,
            };
            assert!(
                ok,
                "{case}: {name} at {}: got {:?}, pandas {:?}",
                row[0], values[k], want
            );
        }
    }
}

const CASES: [(&str, &str, Option<Side>, Option<Side>); 11] = [
    ("h", "h", None, None),
    ("3h", "3h", None, None),
    ("45min", "45min", None, None),
    ("37min", "37min", None, None),
    ("6h_right", "6h", Some(Side::Right), Some(Side::Right)),
    ("6h_closed_right", "6h", Some(Side::Right), None),
    ("D", "D", None, None),
    ("2D", "2D", None, None),
    ("W", "W", None, None),
    ("ME", "ME", None, None),
    ("MS", "MS", None, None),
];

#[test]
fn resample_matches_pandas_goldens() {
    // One partition; many small ones (bins straddle boundaries, and a day or a
    // month spans many partitions); both schedulers.
    for (threads, mode, blocksize) in [
        (1, Mode::Sync, 1 << 20),
        (2, Mode::Parallel, 3000),
        (3, Mode::Sync, 700),
    ] {
        let s = session(threads, mode, blocksize);
        let df = golden_input(&s);
        assert!(
            blocksize > 4000 || df.npartitions() > 40,
            "{}",
            df.npartitions()
        );
        for (case, rule, closed, label) in CASES {
            check_case(&df, case, rule, closed, label);
        }
    }
}

/// Every golden case as one answer of a single run (`compute_each`, Dask's
/// `compute(a, b, c)`): each agrees with pandas, and the input is read once, not
/// once per answer.
#[test]
fn several_resamples_in_one_run_match_pandas_and_read_the_input_once() {
    for (threads, mode, blocksize) in [(2, Mode::Parallel, 3000), (1, Mode::Sync, 1 << 20)] {
        let s = session(threads, mode, blocksize);
        let df = golden_input(&s);
        let builders: Vec<Box<outcore::frame::each::Answer<'_>>> = CASES
            .iter()
            .map(|&(case, rule, closed, label)| {
                Box::new(move |d: &DataFrame| build_case(d, case, rule, closed, label))
                    as Box<outcore::frame::each::Answer<'_>>
            })
            .collect();
        let answers: Vec<&outcore::frame::each::Answer<'_>> =
            builders.iter().map(|b| b.as_ref()).collect();
        let got = df.compute_each(&answers).unwrap();
        assert_eq!(got.len(), CASES.len());
        for ((case, ..), batch) in CASES.iter().zip(&got) {
            check_answer(batch, case);
        }
        // One answer alone reads the file once; all of them together read it once.
        let (_, one) = build_case(&df, "h", "h", None, None)
            .unwrap()
            .compute_with_stats()
            .unwrap();
        let each = df
            .for_each_answer(&answers, &|a, _, batch| {
                assert!(a < CASES.len() && batch.num_columns() > 1);
                Ok(())
            })
            .unwrap();
        assert!(one.bytes_read > 0);
        assert_eq!(each.bytes_read, one.bytes_read, "{blocksize}");
    }
}

/// Answers are handed over answer by answer, each in partition order, however
/// the tasks finish; an answer's error stops the run and is returned.
#[test]
fn for_each_answer_hands_answers_over_in_order_and_returns_an_answers_error() {
    let s = session(2, Mode::Parallel, 3000);
    let df = golden_input(&s);
    let seen = std::sync::Mutex::new(Vec::new());
    let hourly = |d: &DataFrame| build_case(d, "h", "h", None, None);
    let daily = |d: &DataFrame| build_case(d, "D", "D", None, None);
    let rows = |d: &DataFrame| d.select(&["x"]);
    df.for_each_answer(&[&hourly, &daily, &rows], &|a, i, batch| {
        seen.lock().unwrap().push((a, i, batch.num_rows()));
        Ok(())
    })
    .unwrap();
    let seen = seen.into_inner().unwrap();
    let order: Vec<(usize, usize)> = seen.iter().map(|&(a, i, _)| (a, i)).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    for a in 0..3 {
        let parts: Vec<usize> = order.iter().filter(|p| p.0 == a).map(|p| p.1).collect();
        assert_eq!(parts, (0..parts.len()).collect::<Vec<_>>(), "answer {a}");
    }
    // The third answer is every row of the input.
    let total: usize = seen.iter().filter(|p| p.0 == 2).map(|p| p.2).sum();
    assert_eq!(total, df.num_rows().unwrap());
    let bad = |d: &DataFrame| d.select(&["no_such_column"]);
    let err = df
        .for_each_answer(&[&hourly, &bad], &|_, _, _| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no_such_column"), "{err}");
}

#[test]
fn timeseries_frame_has_divisions_and_matches_the_csv_writer() {
    let s = session(2, Mode::Parallel, 1 << 20);
    let df = outcore::datasets::timeseries(&s, "2000-01-01", "2000-01-03", "1s", "1D", 42).unwrap();
    assert_eq!(df.npartitions(), 2);
    assert_eq!(df.index_column().as_deref(), Some("timestamp"));
    let div = df.divisions().unwrap();
    assert_eq!(
        div[0],
        ScalarValue::TimestampNanosecond(Some(946_684_800_000_000_000), None)
    );
    assert_eq!(
        div[2],
        ScalarValue::TimestampNanosecond(Some(946_857_600_000_000_000), None)
    );
    // The same rows as the CSV files `write_timeseries` makes for those two days.
    let dir = tempfile::tempdir().unwrap();
    let spec = outcore::datasets::TimeseriesSpec {
        days: 2,
        ..Default::default()
    };
    outcore::datasets::write_timeseries(dir.path(), &spec).unwrap();
    let csv = s
        .read_csv(dir.path().join("*.csv").to_string_lossy())
        .with_parse_dates(["timestamp"])
        .load()
        .unwrap()
        .compute()
        .unwrap();
    let gen = df.compute().unwrap();
    assert_eq!(gen.num_rows(), 2 * 86_400);
    for c in ["timestamp", "id", "name", "x", "y"] {
        let (a, b) = (
            gen.column_by_name(c).unwrap(),
            csv.column_by_name(c).unwrap(),
        );
        assert_eq!(a.as_ref(), b.as_ref(), "column {c}");
    }
    // Projection does not change the rows, and partial days work.
    let x =
        outcore::datasets::timeseries(&s, "2000-01-01 12:00", "2000-01-02 06:30", "7min", "6h", 42)
            .unwrap()
            .select(&["x"])
            .unwrap()
            .compute()
            .unwrap();
    assert_eq!(x.num_rows(), (18 * 60 + 30_usize).div_ceil(7));
}

/// Resample of the generated frame against a naive hourly mean over its rows.
#[test]
fn resample_hourly_mean_of_generated_frame() {
    for (threads, mode) in [(1, Mode::Sync), (2, Mode::Parallel)] {
        let s = session(threads, mode, 1 << 20);
        // Partitions of 5 hours: hourly bins straddle no boundary; 2h30 would.
        for pf in ["5h", "150min", "17min"] {
            let df = outcore::datasets::timeseries(&s, "2000-01-01", "2000-01-02", "1min", pf, 7)
                .unwrap();
            let rows = df.compute().unwrap();
            let got = df
                .resample("1h")
                .unwrap()
                .apply(AggFunc::Mean, &["x", "y"])
                .unwrap()
                .compute()
                .unwrap();
            assert_eq!(got.num_rows(), 24);
            let ts = cast(rows.column(0), &DataType::Int64).unwrap();
            let ts = ts.as_primitive::<Int64Type>();
            for (ci, c) in ["x", "y"].iter().enumerate() {
                let v = rows
                    .column_by_name(c)
                    .unwrap()
                    .as_primitive::<Float64Type>();
                let mut sums = [0.0f64; 24];
                let mut counts = [0usize; 24];
                for r in 0..rows.num_rows() {
                    let h = ((ts.value(r) - 946_684_800_000_000_000) / 3_600_000_000_000) as usize;
                    sums[h] += v.value(r);
                    counts[h] += 1;
                }
                let g = f64s(&got, ci + 1);
                for h in 0..24 {
                    assert!(
                        close(g[h].unwrap(), sums[h] / counts[h] as f64),
                        "{pf} {c} hour {h}"
                    );
                }
            }
        }
    }
}

#[test]
fn resample_emits_empty_bins_with_zero_count_and_sum() {
    let s = session(1, Mode::Sync, 1 << 20);
    let df = outcore::datasets::timeseries(&s, "2000-01-01", "2000-01-01 06:00", "1min", "1h", 1)
        .unwrap()
        .filter(
            outcore::expr::col("timestamp")
                .lt(outcore::expr::lit("2000-01-01 01:00"))
                .or(outcore::expr::col("timestamp").gt_eq(outcore::expr::lit("2000-01-01 04:30"))),
        )
        .unwrap();
    let got = df
        .resample("30min")
        .unwrap()
        .agg(&[
            AggSpec::new(AggFunc::Count, "x"),
            AggSpec::new(AggFunc::Sum, "id"),
            AggSpec::new(AggFunc::Mean, "x"),
        ])
        .unwrap()
        .compute()
        .unwrap();
    assert_eq!(got.num_rows(), 12);
    let count = f64s(&got, 1);
    let sum = f64s(&got, 2);
    let mean = f64s(&got, 3);
    for k in 0..12 {
        let empty = (2..9).contains(&k);
        assert_eq!(count[k], Some(if empty { 0.0 } else { 30.0 }), "bin {k}");
        assert_eq!(sum[k] == Some(0.0), empty, "bin {k}");
        assert_eq!(mean[k].is_none(), empty, "bin {k}");
    }
}

#[test]
fn resample_errors_say_what_to_do() {
    let s = session(1, Mode::Sync, 1 << 20);
    let csv = s
        .read_csv(golden_dir().join("input.csv").to_string_lossy())
        .with_parse_dates(["timestamp"])
        .load()
        .unwrap();
    let e = csv.resample("1h").unwrap_err().to_string();
    assert!(
        e.contains("known divisions") && e.contains("set_index"),
        "{e}"
    );
    let n = csv
        .with_known_divisions(
            "n",
            vec![ScalarValue::Int64(Some(0)), ScalarValue::Int64(Some(9))],
        )
        .unwrap();
    let e = n.resample("1h").unwrap_err().to_string();
    assert!(e.contains("datetime index") && e.contains("Int64"), "{e}");
    let df = golden_input(&s);
    let e = df.resample("5 fortnights").unwrap_err().to_string();
    assert!(
        e.contains("unknown rule") && e.contains("15min") && e.contains("MS"),
        "{e}"
    );
    // Wrong divisions are caught when the rows are seen, not silently dropped.
    let bad = csv
        .with_known_divisions(
            "timestamp",
            vec![
                ScalarValue::TimestampNanosecond(Some(946_684_800_000_000_000), None),
                ScalarValue::TimestampNanosecond(Some(946_771_200_000_000_000), None),
            ],
        )
        .unwrap();
    let e = bad
        .resample("1h")
        .unwrap()
        .apply(AggFunc::Mean, &["x"])
        .unwrap()
        .compute()
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside its divisions"), "{e}");
}

#[test]
fn persist_reads_the_files_once_and_keeps_divisions() {
    let s = session(2, Mode::Parallel, 4000);
    let df = golden_input(&s);
    let (p, stats) = df.persist_with_stats().unwrap();
    assert!(stats.bytes_read > 100_000, "{stats:?}");
    assert_eq!(p.npartitions(), df.npartitions());
    assert_eq!(p.divisions(), df.divisions());
    let graph = p.visualize();
    let tasks = graph.lines().filter(|l| l.contains("label=")).count();
    assert_eq!(tasks, p.npartitions(), "one task per partition:\n{graph}");
    assert!(
        !graph.contains("->") && !graph.contains("read-csv"),
        "{graph}"
    );
    // Three different queries: no bytes read from the CSV; answers as on the source.
    let queries: [&dyn Fn(&DataFrame) -> RecordBatch; 3] = [
        &|d| {
            d.agg(&[AggSpec::new(AggFunc::Sum, "n")])
                .unwrap()
                .compute()
                .unwrap()
        },
        &|d| {
            d.query("x > 0")
                .unwrap()
                .agg(&[AggSpec::new(AggFunc::Count, "x")])
                .unwrap()
                .compute()
                .unwrap()
        },
        &|d| {
            d.resample("D")
                .unwrap()
                .apply(AggFunc::Max, &["x"])
                .unwrap()
                .compute()
                .unwrap()
        },
    ];
    for q in queries {
        let (parts, stats) = {
            let out = q(&p);
            (out, p.compute_with_stats().unwrap().1)
        };
        assert_eq!(stats.bytes_read, 0, "{stats:?}");
        assert_eq!(parts, q(&df));
    }
}

#[test]
fn persist_larger_than_the_memory_limit_spills_and_answers() {
    let s = Session::builder()
        .with_threads(2)
        .tiny_memory_limit(64 * 1024)
        .with_blocksize(8 * 1024)
        .build()
        .unwrap();
    let df = outcore::datasets::timeseries(&s, "2000-01-01", "2000-01-02", "10s", "1h", 3).unwrap();
    let (p, stats) = df.persist_with_stats().unwrap();
    assert!(stats.spilled_bytes > 0, "{stats:?}");
    let want = df
        .resample("1h")
        .unwrap()
        .apply(AggFunc::Std, &["x"])
        .unwrap()
        .compute()
        .unwrap();
    let got = p
        .resample("1h")
        .unwrap()
        .apply(AggFunc::Std, &["x"])
        .unwrap()
        .compute()
        .unwrap();
    assert_eq!(got, want);
    assert_eq!(p.num_rows().unwrap(), 8640);
}

#[test]
fn timestamp_literals_in_expressions() {
    use outcore::expr::{col, lit};
    let s = session(1, Mode::Sync, 1 << 20);
    let df = outcore::datasets::timeseries(&s, "2000-01-01", "2000-01-11", "1h", "1D", 1).unwrap();
    let n = df
        .query("timestamp >= '2000-01-05' and timestamp <= '2000-01-06 12:00'")
        .unwrap()
        .num_rows()
        .unwrap();
    assert_eq!(n, 24 + 13);
    let n = df
        .query("timestamp < '2000-01-01T05:30:00.5'")
        .unwrap()
        .num_rows()
        .unwrap();
    assert_eq!(n, 6);
    // timestamp - text is a duration; timestamp + duration is a timestamp.
    let hour = 3_600_000_000_000i64;
    let out = df
        .with_column("age", col("timestamp").sub(lit("2000-01-01")))
        .unwrap()
        .with_column(
            "later",
            col("timestamp").add(lit(ScalarValue::DurationNanosecond(Some(hour)))),
        )
        .unwrap()
        .head(30)
        .unwrap();
    let age = cast(out.column_by_name("age").unwrap(), &DataType::Int64).unwrap();
    assert_eq!(age.as_primitive::<Int64Type>().value(25), 25 * hour);
    let later = cast(out.column_by_name("later").unwrap(), &DataType::Int64).unwrap();
    let ts = cast(out.column_by_name("timestamp").unwrap(), &DataType::Int64).unwrap();
    assert_eq!(
        later.as_primitive::<Int64Type>().value(3),
        ts.as_primitive::<Int64Type>().value(4)
    );
    let e = df
        .query("timestamp > 'yesterday'")
        .unwrap()
        .num_rows()
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"yesterday\" is not a timestamp"), "{e}");
}

/// Every output partition's index values lie inside its divisions, and the
/// partitions together are the input's rows in order.
fn check_repartitioned(out: &DataFrame, original: &RecordBatch) {
    let (parts, _) = out.compute_partitions().unwrap();
    assert_eq!(parts.len(), out.npartitions());
    let all = arrow::compute::concat_batches(&original.schema(), &parts).unwrap();
    assert_eq!(&all, original);
    if let Some(div) = out.divisions() {
        let ns: Vec<i64> = div
            .iter()
            .map(|d| match d {
                ScalarValue::TimestampNanosecond(Some(x), _) => *x,
                other => panic!("{other:?}"),
            })
            .collect();
        for (i, p) in parts.iter().enumerate() {
            let ts = cast(p.column_by_name("timestamp").unwrap(), &DataType::Int64).unwrap();
            for t in ts.as_primitive::<Int64Type>().values() {
                let last = i + 1 == parts.len();
                assert!(
                    *t >= ns[i] && (*t < ns[i + 1] || (last && *t == ns[i + 1])),
                    "partition {i}"
                );
            }
        }
    }
}

#[test]
fn repartition_by_npartitions_freq_divisions_and_size() {
    use outcore::frame::repartition::Repartition;
    let day = 86_400_000_000_000i64;
    let t0 = 946_684_800_000_000_000i64;
    for (threads, mode) in [(1, Mode::Sync), (2, Mode::Parallel)] {
        let s = session(threads, mode, 1 << 20);
        let df =
            outcore::datasets::timeseries(&s, "2000-01-01", "2000-01-03 07:00", "1min", "5h", 4)
                .unwrap();
        let all = df.compute().unwrap();
        // freq: one partition per day, boundaries at midnight.
        let daily = df.repartition(Repartition::Freq("1D".into())).unwrap();
        assert_eq!(daily.npartitions(), 3);
        let want: Vec<ScalarValue> = [
            t0,
            t0 + day,
            t0 + 2 * day,
            t0 + 2 * day + 7 * 3_600_000_000_000,
        ]
        .iter()
        .map(|&x| ScalarValue::TimestampNanosecond(Some(x), None))
        .collect();
        assert_eq!(daily.divisions().unwrap(), want);
        check_repartitioned(&daily, &all);
        // Fewer partitions: neighbours concatenated, divisions kept.
        let few = df.repartition(Repartition::NPartitions(3)).unwrap();
        assert_eq!(few.npartitions(), 3);
        assert!(few.known_divisions());
        check_repartitioned(&few, &all);
        // More partitions: split by interpolated divisions, still known.
        let many = df.repartition(Repartition::NPartitions(25)).unwrap();
        assert_eq!(many.npartitions(), 25);
        assert!(many.known_divisions());
        check_repartitioned(&many, &all);
        // New divisions, including ones that cut partitions mid-way.
        let cuts = [
            t0,
            t0 + 7_777_000_000_000,
            t0 + day / 2,
            t0 + 2 * day + 7 * 3_600_000_000_000,
        ];
        let by_div = df
            .repartition(Repartition::Divisions(
                cuts.iter()
                    .map(|&x| ScalarValue::TimestampNanosecond(Some(x), None))
                    .collect(),
            ))
            .unwrap();
        assert_eq!(by_div.npartitions(), 3);
        check_repartitioned(&by_div, &all);
        let e = df
            .repartition(Repartition::Divisions(vec![
                ScalarValue::TimestampNanosecond(Some(t0 + 1), None),
                ScalarValue::TimestampNanosecond(Some(t0 + 3 * day), None),
            ]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("must cover"), "{e}");
        // By size: partitions of about 5 kB.
        let sized = df.repartition(Repartition::PartitionSize(5_000)).unwrap();
        let (parts, _) = sized.compute_partitions().unwrap();
        assert!(parts.len() > df.npartitions(), "{}", parts.len());
        for p in &parts {
            assert!(
                p.get_array_memory_size() < 15_000,
                "{}",
                p.get_array_memory_size()
            );
        }
        check_repartitioned(&sized, &all);
        let one = df.repartition(Repartition::PartitionSize(1 << 30)).unwrap();
        assert_eq!(one.npartitions(), 1);
        check_repartitioned(&one, &all);
    }
    // Without an index: split by rows.
    let s = session(2, Mode::Parallel, 4000);
    let csv = s
        .read_csv(golden_dir().join("input.csv").to_string_lossy())
        .load()
        .unwrap();
    let all = csv.compute().unwrap();
    let more = csv
        .repartition(Repartition::NPartitions(csv.npartitions() * 2 + 1))
        .unwrap();
    assert_eq!(more.npartitions(), csv.npartitions() * 2 + 1);
    let (parts, _) = more.compute_partitions().unwrap();
    assert_eq!(
        arrow::compute::concat_batches(&all.schema(), &parts).unwrap(),
        all
    );
    let e = csv
        .repartition(Repartition::Freq("1D".into()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("set_index"), "{e}");
}

/// The naive rolling answer: for each row, the values of its window (non-null),
/// then the function; `None` below `min_periods`.
fn naive_rolling(
    ts: &[i64],
    x: &[Option<f64>],
    window: &outcore::frame::rolling::Window,
    func: AggFunc,
    min_periods: usize,
) -> Vec<Option<f64>> {
    use outcore::frame::rolling::Window;
    (0..x.len())
        .map(|r| {
            let lo = match window {
                Window::Rows(n) => (r + 1).saturating_sub(*n),
                Window::Time(_) => (0..=r)
                    .find(|&i| ts[i] > ts[r] - 6 * 3_600_000_000_000)
                    .unwrap(),
            };
            let v: Vec<f64> = x[lo..=r].iter().flatten().copied().collect();
            let n = v.len() as f64;
            if func == AggFunc::Count {
                return Some(n);
            }
            if v.len() < min_periods.max(1) {
                return None;
            }
            let mean = v.iter().sum::<f64>() / n;
            let var = v.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / (n - 1.0);
            match func {
                AggFunc::Sum => Some(v.iter().sum()),
                AggFunc::Mean => Some(mean),
                AggFunc::Min => v.iter().copied().reduce(f64::min),
                AggFunc::Max => v.iter().copied().reduce(f64::max),
                AggFunc::Var => (v.len() > 1).then_some(var),
                AggFunc::Std => (v.len() > 1).then(|| var.sqrt()),
                _ => unreachable!(),
            }
        })
        .collect()
}

#[test]
fn rolling_windows_reach_back_over_several_partitions() {
    use outcore::frame::rolling::Window;
    let funcs = [
        AggFunc::Mean,
        AggFunc::Sum,
        AggFunc::Min,
        AggFunc::Max,
        AggFunc::Std,
        AggFunc::Var,
        AggFunc::Count,
    ];
    // Partitions of about 18 rows; windows of 3 rows, 50 rows and 6 hours (up to
    // ~30 rows), so windows span up to four partitions.
    for (threads, mode, blocksize) in [(1, Mode::Sync, 1 << 20), (2, Mode::Parallel, 700)] {
        let s = session(threads, mode, blocksize);
        let df = golden_input(&s);
        let all = df.compute().unwrap();
        let ts = cast(all.column_by_name("timestamp").unwrap(), &DataType::Int64).unwrap();
        let ts = ts.as_primitive::<Int64Type>().values().to_vec();
        let x: Vec<Option<f64>> = all
            .column_by_name("x")
            .unwrap()
            .as_primitive::<Float64Type>()
            .iter()
            .collect();
        for (window, min_periods) in [
            (Window::Rows(3), None),
            (Window::Rows(50), Some(10)),
            (Window::Time("6h".into()), None),
        ] {
            let specs: Vec<AggSpec> = funcs
                .iter()
                .map(|&f| AggSpec::new(f, "x").alias(format!("r{}", f.name())))
                .collect();
            let mut r = df.rolling(window.clone()).unwrap();
            if let Some(m) = min_periods {
                r = r.min_periods(m);
            }
            let out = r.agg(&specs).unwrap();
            assert_eq!(out.npartitions(), df.npartitions());
            let got = out.compute().unwrap();
            assert_eq!(got.num_rows(), all.num_rows());
            assert_eq!(
                got.column_by_name("x").unwrap(),
                all.column_by_name("x").unwrap()
            );
            let mp = min_periods.unwrap_or(match window {
                Window::Rows(n) => n,
                Window::Time(_) => 1,
            });
            for f in funcs {
                let want = naive_rolling(&ts, &x, &window, f, mp);
                let g = f64s(
                    &got,
                    got.schema().index_of(&format!("r{}", f.name())).unwrap(),
                );
                for r in 0..want.len() {
                    let ok = match (g[r], want[r]) {
                        (None, None) => true,
                        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                        _ => false,
                    };
                    assert!(
                        ok,
                        "{window:?} {} row {r}: got {:?}, want {:?} (blocksize {blocksize})",
                        f.name(),
                        g[r],
                        want[r]
                    );
                }
            }
        }
    }
}

#[test]
fn rolling_errors() {
    use outcore::frame::rolling::Window;
    let s = session(1, Mode::Sync, 1 << 20);
    let csv = s
        .read_csv(golden_dir().join("input.csv").to_string_lossy())
        .load()
        .unwrap();
    let e = csv
        .rolling(Window::Time("5min".into()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("set_index"), "{e}");
    let df = golden_input(&s);
    let e = df
        .rolling(Window::Time("1ME".into()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("fixed span"), "{e}");
    let e = df
        .rolling(Window::Rows(2))
        .unwrap()
        .agg(&[AggSpec::new(AggFunc::First, "x")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a rolling aggregation"), "{e}");
}

#[test]
fn to_parquet_round_trip_restores_divisions_and_keeps_old_data_on_failure() {
    use outcore::frame::parquet::{read_catalog, WriteOptions};
    let s = session(2, Mode::Parallel, 4000);
    let df = golden_input(&s);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ds");
    let opts = WriteOptions {
        overwrite: false,
        query: Some("persist input.csv --set-index timestamp".into()),
    };
    df.to_parquet(&dir, &opts).unwrap();
    let files = std::fs::read_dir(&dir).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "parquet")
    });
    assert_eq!(files.count(), df.npartitions());
    let cat = read_catalog(&dir).unwrap();
    assert_eq!(cat.query, "persist input.csv --set-index timestamp");
    assert_eq!(cat.rows, 4000);
    let back = s.read_parquet(&dir).unwrap();
    assert_eq!(back.npartitions(), df.npartitions());
    assert_eq!(back.index_column().as_deref(), Some("timestamp"));
    assert_eq!(back.divisions(), df.divisions());
    assert_eq!(back.compute().unwrap(), df.compute().unwrap());
    // A resample straight from the folder: no shuffle, only Parquet bytes read.
    let want = df
        .resample("D")
        .unwrap()
        .apply(AggFunc::Mean, &["x"])
        .unwrap()
        .compute()
        .unwrap();
    let (got, stats) = back
        .resample("D")
        .unwrap()
        .apply(AggFunc::Mean, &["x"])
        .unwrap()
        .compute_with_stats()
        .unwrap();
    assert_eq!(got, want);
    assert_eq!(stats.shuffled_bytes, 0);
    assert!(stats.bytes_read > 0);
    // Projection: one column decoded.
    assert_eq!(
        back.select(&["n"])
            .unwrap()
            .compute()
            .unwrap()
            .num_columns(),
        1
    );

    // The folder exists: an error unless overwrite.
    let e = df.to_parquet(&dir, &opts).unwrap_err().to_string();
    assert!(
        e.contains("already exists") && e.contains("--overwrite"),
        "{e}"
    );
    // A failing write with overwrite leaves the old dataset as it was, and no
    // staging folder behind.
    let schema = df.schema();
    let failing = df.map_partitions(schema, |b| {
        if b.num_rows() > 0 && b.num_rows() < 1_000_000 {
            Err(outcore::Error::Internal("injected failure".into()))
        } else {
            Ok(b)
        }
    });
    let over = WriteOptions {
        overwrite: true,
        query: None,
    };
    assert!(failing.to_parquet(&dir, &over).is_err());
    assert_eq!(
        s.read_parquet(&dir).unwrap().compute().unwrap(),
        df.compute().unwrap()
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("ds")]);
    // Overwrite with a different frame works.
    let small = df
        .repartition(outcore::frame::repartition::Repartition::NPartitions(2))
        .unwrap();
    small.to_parquet(&dir, &over).unwrap();
    let back = s.read_parquet(&dir).unwrap();
    assert_eq!(back.npartitions(), 2);
    assert_eq!(back.divisions(), small.divisions());
}

/// `resample` with several `--rule`/`--agg` pairs: one read of the input, each
/// answer the same as its own command's, printed in turn (each under its `# RULE AGG` line)
/// or written to `--out DIR/1`, `DIR/2`, …; bad pairings are errors.
#[test]
fn cli_resample_several_rules_answers_as_each_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let input = golden_dir().join("input.csv");
    let input = input.to_str().unwrap();
    let base = [
        "resample",
        input,
        "--index",
        "timestamp",
        "--sorted",
        "--threads",
        "2",
        "--blocksize",
        "3000",
    ];
    let pairs = [
        ("h", "mean(x), max(n)"),
        ("D", "count(n), ohlc(x)"),
        ("6h", "sum(x)"),
    ];
    let run = |extra: &[&str]| ok_both(&[&base[..], extra].concat());
    let alone: Vec<String> = pairs
        .iter()
        .map(|(rule, agg)| run(&["--rule", rule, "--agg", agg, "--format", "csv"]).0)
        .collect();
    let mut all: Vec<&str> = Vec::new();
    for (rule, agg) in &pairs {
        all.extend(["--rule", rule, "--agg", agg]);
    }
    let (text, err) = run(&[&all[..], &["--format", "csv", "--stats"]].concat());
    let headed: Vec<String> = pairs
        .iter()
        .zip(&alone)
        .map(|((rule, agg), answer)| format!("# {rule} {agg}\n{answer}"))
        .collect();
    assert_eq!(text, headed.concat());
    // One read of the input: the bytes read are one answer's alone.
    let read = |stats: &str| {
        assert_eq!(stats.matches("stats: read").count(), 1, "{stats}");
        let after = stats.split("stats: read ").nth(1).unwrap();
        after.split(';').next().unwrap().to_string()
    };
    let (_, one) = run(&["--rule", "h", "--agg", "mean(x)", "--stats"]);
    assert_eq!(read(&err), read(&one));
    // Tables, one after another.
    let (tables, _) = run(&[&all[..], &["--format", "table"]].concat());
    let at = |column: &str| tables.find(column).unwrap_or_else(|| panic!("{column}"));
    assert!(at("| max(n)") < at("| count(n)") && at("| count(n)") < at("| sum(x)"));
    assert!(
        tables.rfind("| max(n)").unwrap() < at("| count(n)"),
        "the first answer's tables come before the second's"
    );
    // A folder per answer, each as its command alone writes it.
    let out = tmp.path().join("out");
    run(&[
        &all[..],
        &["--format", "csv", "--out", out.to_str().unwrap()],
    ]
    .concat());
    for (n, want) in alone.iter().enumerate() {
        let dir = out.join((n + 1).to_string());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let mut rows: Vec<String> = Vec::new();
        for (k, f) in files.iter().enumerate() {
            let text = std::fs::read_to_string(f).unwrap();
            rows.extend(text.lines().skip(usize::from(k > 0)).map(str::to_string));
        }
        assert_eq!(rows, want.lines().collect::<Vec<_>>(), "answer {}", n + 1);
    }
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("out")]);
    // Parquet datasets, which read back as the same answers.
    let pq = tmp.path().join("pq");
    run(&[
        &all[..],
        &["--out", pq.to_str().unwrap(), "--format", "parquet"],
    ]
    .concat());
    let back = outcore(&["query", pq.join("2").to_str().unwrap(), "--format", "csv"]);
    assert_eq!(String::from_utf8(back.stdout).unwrap(), alone[1]);
    // Errors, before any work.
    for (args, says) in [
        (
            vec!["--rule", "h", "--agg", "mean(x)", "--rule", "D"],
            "give one --agg for each --rule: found 2 --rule and 1 --agg",
        ),
        (
            vec![
                "--rule", "h", "--agg", "mean(x)", "--rule", "D", "--agg", "max(x)", "--format",
                "json",
            ],
            "--format json",
        ),
        (
            vec![
                "--rule", "h", "--agg", "mean(x)", "--rule", "D", "--agg", "nope(x)",
            ],
            "nope",
        ),
    ] {
        let out = outcore(&[&base[..], &args[..]].concat());
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn cli_resample_rolling_persist_repartition() {
    let tmp = tempfile::tempdir().unwrap();
    let input = golden_dir().join("input.csv");
    let input = input.to_str().unwrap();
    let ds = tmp.path().join("ds");
    let ds = ds.to_str().unwrap();
    let small = ["--threads", "2", "--blocksize", "3000"];
    // resample, CSV out, against the library's answer on the same input.
    let out = outcore(
        &[
            &[
                "resample",
                input,
                "--index",
                "timestamp",
                "--sorted",
                "--rule",
                "D",
                "--agg",
                "mean(x), count(n), ohlc(x)",
                "--format",
                "csv",
            ][..],
            &small,
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "timestamp,mean(x),count(n),open(x),high(x),low(x),close(x)"
    );
    let (_, golden) = read_golden("D");
    assert_eq!(lines.len() - 1, golden.len());
    assert!(lines[1].starts_with("2000-01-01T00:00:00,"), "{}", lines[1]);
    // persist, then resample from the dataset: no shuffle, divisions restored.
    let persist = [
        "persist",
        input,
        "--set-index",
        "timestamp",
        "--sorted",
        "--out",
        ds,
    ];
    let out = outcore(&[&persist[..], &small].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = outcore(&[
        "resample", ds, "--rule", "D", "--agg", "mean(x)", "--format", "csv", "--stats",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shuffled 0 B"), "{err}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().lines().count(),
        golden.len() + 1
    );
    // Writing into an existing folder fails with exit code 1 and says why.
    let out = outcore(&persist);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--overwrite"));
    // repartition by day, then count the partitions of the dataset.
    let daily = tmp.path().join("daily");
    let out = outcore(&[
        "repartition",
        ds,
        "--freq",
        "1D",
        "--out",
        daily.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = std::fs::read_dir(&daily)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "parquet")
        })
        .count();
    assert_eq!(files, golden.len());
    // rolling: the columns come with the rolled ones.
    let out = outcore(&[
        "rolling", ds, "--window", "1h", "--agg", "max(x)", "--format", "csv",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
        "timestamp,n,x,max(x)"
    );
    // An unknown rule lists the valid ones.
    let out = outcore(&["resample", ds, "--rule", "1fortnight", "--agg", "mean(x)"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("valid rules"));
}

#[test]
fn declared_sorted_index_out_of_order_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("a.csv"),
        "timestamp,x\n2000-01-01 00:00:00,1\n2000-01-01 01:00:00,2\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("b.csv"),
        "timestamp,x\n2000-01-01 00:30:00,3\n2000-01-01 02:00:00,4\n",
    )
    .unwrap();
    let glob = tmp.path().join("*.csv");
    let out = outcore(&[
        "resample",
        glob.to_str().unwrap(),
        "--index",
        "timestamp",
        "--sorted",
        "--rule",
        "1h",
        "--agg",
        "sum(x)",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("b.csv"), "{err}");
    // Without --sorted the rows are shuffled into order and the answer is right.
    let out = outcore(&[
        "resample",
        glob.to_str().unwrap(),
        "--index",
        "timestamp",
        "--rule",
        "1h",
        "--agg",
        "sum(x)",
        "--format",
        "csv",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "timestamp,sum(x)",
            "2000-01-01T00:00:00,4",
            "2000-01-01T01:00:00,2",
            "2000-01-01T02:00:00,4"
        ]
    );
}

#[test]
fn timestamps_in_a_format_string() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("eu.csv");
    std::fs::write(
        &path,
        "when,day,x\n05/01/2000 13:45,05.01.2000,1\n06/01/2000 00:00,06.01.2000,2\n,,3\n",
    )
    .unwrap();
    let s = session(1, Mode::Sync, 1 << 20);
    let df = s
        .read_csv(path.to_string_lossy())
        .with_date_format("when", "%d/%m/%Y %H:%M")
        .with_date_format("day", "%d.%m.%Y")
        .load()
        .unwrap();
    let got = df.compute().unwrap();
    let when = cast(got.column(0), &DataType::Int64).unwrap();
    let when = when.as_primitive::<Int64Type>();
    let day = cast(got.column(1), &DataType::Int64).unwrap();
    let day = day.as_primitive::<Int64Type>();
    let base = 946_684_800_000_000_000i64 + 4 * 86_400_000_000_000;
    assert_eq!(when.value(0), base + (13 * 60 + 45) * 60_000_000_000);
    assert_eq!(day.value(1), base + 86_400_000_000_000);
    assert!(when.is_null(2) && day.is_null(2));
    // A value that does not fit the format: file, line, column and the format.
    std::fs::write(
        &path,
        "when,day,x\n05/01/2000 13:45,05.01.2000,1\n2000-01-06,06.01.2000,2\n",
    )
    .unwrap();
    let e = s
        .read_csv(path.to_string_lossy())
        .with_date_format("when", "%d/%m/%Y %H:%M")
        .load()
        .unwrap()
        .compute()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("eu.csv:3") && e.contains("\"when\"") && e.contains("%d/%m/%Y %H:%M"),
        "{e}"
    );
    // The CLI takes it too.
    std::fs::write(
        &path,
        "when,day,x\n05/01/2000 13:45,05.01.2000,1\n06/01/2000 00:00,06.01.2000,2\n",
    )
    .unwrap();
    let out = outcore(&[
        "resample",
        path.to_str().unwrap(),
        "--index",
        "when",
        "--sorted",
        "--date-format",
        "when=%d/%m/%Y %H:%M",
        "--rule",
        "D",
        "--agg",
        "sum(x)",
        "--format",
        "csv",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "when,sum(x)\n2000-01-05T00:00:00,1\n2000-01-06T00:00:00,2\n"
    );
}

/// Naive fixed-rule resample of the generated frame's column `x`: bins anchored at
/// midnight of the first day, left-closed, sum and count per bin from the first
/// row's bin to the last's.
fn naive_fixed_bins(ts: &[i64], x: &[f64], step: i64) -> Vec<(i64, f64, i64)> {
    let origin = ts[0].div_euclid(86_400_000_000_000) * 86_400_000_000_000;
    let bin = |t: i64| (t - origin).div_euclid(step);
    let (b0, b1) = (bin(ts[0]), bin(*ts.last().unwrap()));
    let mut out: Vec<(i64, f64, i64)> = (b0..=b1).map(|b| (origin + b * step, 0.0, 0)).collect();
    for (t, v) in ts.iter().zip(x) {
        let k = (bin(*t) - b0) as usize;
        out[k].1 += v;
        out[k].2 += 1;
    }
    out
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 12, failure_persistence: None, ..Default::default() })]
    /// The answer does not depend on how the frame is cut into partitions, on the
    /// threads, or on the scheduler.
    #[test]
    fn resample_ignores_partitioning(
        part_minutes in 7i64..900,
        rule in proptest::sample::select(vec!["7min", "1h", "3h", "D", "25h"]),
        threads in 1usize..4,
        sync in proptest::bool::ANY,
        start_minute in 0i64..600,
    ) {
        let mode = if sync { Mode::Sync } else { Mode::Parallel };
        let s = session(threads, mode, 1 << 20);
        let start = format!("2000-01-01 {:02}:{:02}", start_minute / 60, start_minute % 60);
        let df = outcore::datasets::timeseries(&s, &start, "2000-01-03 05:00", "2min", &format!("{part_minutes}min"), 9).unwrap();
        let rows = df.compute().unwrap();
        let ts = cast(rows.column(0), &DataType::Int64).unwrap();
        let ts = ts.as_primitive::<Int64Type>().values().to_vec();
        let x: Vec<f64> = rows.column_by_name("x").unwrap().as_primitive::<Float64Type>().values().to_vec();
        let step = outcore::frame::timerule::Rule::parse(rule).unwrap().fixed_ns().unwrap();
        let want = naive_fixed_bins(&ts, &x, step);
        let got = df.resample(rule).unwrap().agg(&[AggSpec::new(AggFunc::Sum, "x"), AggSpec::new(AggFunc::Count, "x")]).unwrap().compute().unwrap();
        proptest::prop_assert_eq!(got.num_rows(), want.len());
        let labels = cast(got.column(0), &DataType::Int64).unwrap();
        let labels = labels.as_primitive::<Int64Type>();
        let (sum, count) = (f64s(&got, 1), f64s(&got, 2));
        for (k, (label, s, c)) in want.iter().enumerate() {
            proptest::prop_assert_eq!(labels.value(k), *label);
            proptest::prop_assert!(close(sum[k].unwrap(), *s));
            proptest::prop_assert_eq!(count[k], Some(*c as f64));
        }
    }
}

#[test]
fn resample_under_a_tiny_memory_limit_spills_and_agrees() {
    let tiny = Session::builder()
        .with_threads(2)
        .tiny_memory_limit(64 * 1024)
        .build()
        .unwrap();
    let roomy = session(2, Mode::Parallel, 1 << 20);
    let specs = [
        AggSpec::new(AggFunc::Mean, "x"),
        AggSpec::new(AggFunc::Std, "y"),
        AggSpec::new(AggFunc::Count, "id"),
    ];
    let run = |s: &Session| {
        outcore::datasets::timeseries(s, "2000-01-01", "2000-01-02", "5s", "20min", 11)
            .unwrap()
            .resample("1min")
            .unwrap()
            .agg(&specs)
            .unwrap()
            .compute_with_stats()
            .unwrap()
    };
    let (got, stats) = run(&tiny);
    let (want, _) = run(&roomy);
    assert!(stats.spilled_bytes > 0, "{stats:?}");
    assert_eq!(got.num_rows(), 1440);
    assert_eq!(got, want);
}

#[test]
fn resample_output_has_divisions_and_can_be_resampled_again() {
    // Partitions shorter than a bin: some own no bin, and the divisions are unknown.
    let s = session(2, Mode::Parallel, 1 << 20);
    let short =
        outcore::datasets::timeseries(&s, "2000-01-01", "2000-01-02", "1min", "50min", 5).unwrap();
    assert!(!short
        .resample("1h")
        .unwrap()
        .apply(AggFunc::Sum, &["id"])
        .unwrap()
        .known_divisions());
    for pf in ["6h", "5h", "61min"] {
        let df = outcore::datasets::timeseries(&s, "2000-01-01 03:00", "2000-01-04", "1min", pf, 5)
            .unwrap();
        let hourly = df
            .resample("1h")
            .unwrap()
            .agg(&[AggSpec::new(AggFunc::Sum, "id").alias("id")])
            .unwrap();
        assert!(hourly.known_divisions(), "{pf}");
        // Every hourly label lies inside its partition's divisions.
        let div: Vec<i64> = hourly
            .divisions()
            .unwrap()
            .iter()
            .map(|d| match d {
                ScalarValue::TimestampNanosecond(Some(x), _) => *x,
                other => panic!("{other:?}"),
            })
            .collect();
        let (parts, _) = hourly.compute_partitions().unwrap();
        for (i, p) in parts.iter().enumerate() {
            let ts = cast(p.column(0), &DataType::Int64).unwrap();
            for t in ts.as_primitive::<Int64Type>().values() {
                assert!(
                    *t >= div[i] && (*t < div[i + 1] || (i + 1 == parts.len() && *t <= div[i + 1])),
                    "{pf} partition {i}"
                );
            }
        }
        // Daily sums of hourly sums are the daily sums.
        let daily_of_hourly = hourly
            .resample("D")
            .unwrap()
            .apply(AggFunc::Sum, &["id"])
            .unwrap()
            .compute()
            .unwrap();
        let daily = df
            .resample("D")
            .unwrap()
            .apply(AggFunc::Sum, &["id"])
            .unwrap()
            .compute()
            .unwrap();
        assert_eq!(daily_of_hourly, daily, "{pf}");
    }
}

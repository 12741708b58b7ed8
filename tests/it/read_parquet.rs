//! Reading Parquet through `Session::read` and the CLI: files made here with the
//! parquet crate's `ArrowWriter` in several writer shapes (row groups, nulls,
//! dictionary strings, time zones, 32-bit types, compression), Hive folders,
//! pruning on statistics asserted through the skipped count, datasets written by
//! `persist` read by `query`, and the errors for cut and corrupt files. Every
//! answer is compared with a naive computation over the batches that were written.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, DictionaryArray, Float32Array, Int32Array, Int64Array,
    RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Int32Type, TimeUnit};
use outcore::agg::{count, max, mean, size, sum};
use outcore::expr::parse;
use outcore::scheduler::Mode;
use outcore::Session;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::common::*;

/// One row of the "other writer" table, as plain Rust values: the reference.
#[derive(Debug, Clone)]
struct Row {
    id: Option<i32>,
    x: Option<f32>,
    name: Option<String>,
    ts_us: i64,
    day: i32,
    flag: bool,
}

/// `n` rows from `seed`: ids increasing (so row groups have tight statistics),
/// a few nulls in id, x and name, timestamps one minute apart from 2000-01-01.
fn make_rows(seed: u64, first: usize, n: usize) -> Vec<Row> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    (first..first + n)
        .map(|i| Row {
            id: (!rng.random_bool(0.05)).then_some(i as i32),
            x: (!rng.random_bool(0.1)).then(|| rng.random_range(-400i32..=400) as f32 / 4.0),
            name: (!rng.random_bool(0.05)).then(|| NAMES[rng.random_range(0..4)].to_string()),
            ts_us: 946_684_800_000_000 + i as i64 * 60_000_000,
            day: 10_957 + (i / 100) as i32,
            flag: i % 3 == 0,
        })
        .collect()
}

/// The rows as a batch in a shape other writers give: dictionary-encoded strings,
/// a UTC timestamp in microseconds, int32, float32, date32.
fn batch_of(rows: &[Row]) -> RecordBatch {
    let names: DictionaryArray<Int32Type> = rows.iter().map(|r| r.name.as_deref()).collect();
    RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(rows.iter().map(|r| r.id).collect::<Int32Array>()) as ArrayRef,
        ),
        (
            "x",
            Arc::new(rows.iter().map(|r| r.x).collect::<Float32Array>()),
        ),
        ("name", Arc::new(names)),
        (
            "ts",
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.ts_us))
                    .collect::<TimestampMicrosecondArray>()
                    .with_timezone("UTC"),
            ),
        ),
        (
            "day",
            Arc::new(rows.iter().map(|r| Some(r.day)).collect::<Date32Array>()),
        ),
        (
            "flag",
            Arc::new(rows.iter().map(|r| Some(r.flag)).collect::<BooleanArray>()),
        ),
    ])
    .unwrap()
}

/// Writes `batches` to `path` with row groups of at most `group_rows` rows.
fn write_parquet(
    path: &Path,
    batches: &[RecordBatch],
    group_rows: usize,
    compression: Compression,
) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group_rows))
        .set_compression(compression)
        .build();
    let mut w = ArrowWriter::try_new(
        File::create(path).unwrap(),
        batches[0].schema(),
        Some(props),
    )
    .unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

/// Two files of 600 rows, row groups of 100: 12 row groups in all.
fn other_writer_files(dir: &Path) -> Vec<Row> {
    let a = make_rows(1, 0, 600);
    let b = make_rows(2, 600, 600);
    write_parquet(
        &dir.join("a.parquet"),
        &[batch_of(&a)],
        100,
        Compression::SNAPPY,
    );
    let zstd = Compression::ZSTD(ZstdLevel::try_new(3).unwrap());
    write_parquet(&dir.join("b.parquet"), &[batch_of(&b)], 100, zstd);
    [a, b].concat()
}

fn sess(blocksize: u64, mode: Mode) -> Session {
    session(2, mode, blocksize)
}

/// sum(id), count(x), sum(x), max(day), size of one group.
type Sums = (i64, i64, f64, i32, i64);

/// Naive groupby name: sum(id), count(x), mean(x), max(day), size, by name (nulls
/// dropped), keys sorted.
fn naive_by_name(rows: &[&Row]) -> BTreeMap<String, Sums> {
    let mut out: BTreeMap<String, Sums> = BTreeMap::new();
    for r in rows {
        let Some(n) = &r.name else { continue };
        let e = out.entry(n.clone()).or_insert((0, 0, 0.0, i32::MIN, 0));
        e.0 += r.id.unwrap_or(0) as i64;
        if let Some(x) = r.x {
            e.1 += 1;
            e.2 += x as f64;
        }
        e.3 = e.3.max(r.day);
        e.4 += 1;
    }
    out
}

#[test]
fn parquet_of_another_writer_answers_as_the_naive_reference_for_any_partitioning() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = other_writer_files(tmp.path());
    let glob = tmp.path().join("*.parquet").to_string_lossy().into_owned();
    // 12 row groups of about 3.5 KB uncompressed each: 1 KB cuts them into
    // slices, 16 MB reads each file whole.
    for (blocksize, mode, parts) in [
        (1_000u64, Mode::Parallel, None),
        (16 << 20, Mode::Sync, Some(2)),
        (8_000, Mode::Parallel, None),
    ] {
        let s = sess(blocksize, mode);
        let df = s.read(&glob).load().unwrap();
        let schema = df.schema();
        let types: Vec<(&str, &DataType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type()))
            .collect();
        assert_eq!(
            types,
            vec![
                ("id", &DataType::Int32),
                ("x", &DataType::Float32),
                ("name", &DataType::Utf8),
                (
                    "ts",
                    &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
                ),
                ("day", &DataType::Date32),
                ("flag", &DataType::Boolean),
            ],
            "dictionary strings decode to Utf8; widths, units and zones are kept"
        );
        match parts {
            Some(p) => assert_eq!(df.npartitions(), p),
            None if blocksize == 1_000 => {
                assert!(df.npartitions() > 12, "slices: {}", df.npartitions())
            }
            None => assert!(
                df.npartitions() < 12 && df.npartitions() > 2,
                "{}",
                df.npartitions()
            ),
        }
        let got = df
            .groupby(&["name"])
            .unwrap()
            .agg(&[sum("id"), count("x"), mean("x"), max("day"), size()])
            .unwrap()
            .compute()
            .unwrap();
        let expected = naive_by_name(&rows.iter().collect::<Vec<_>>());
        let keys: Vec<Cell> = expected.keys().map(|k| Cell::Str(k.clone())).collect();
        assert_cells(&cells(&got, "name"), &keys, "name");
        let col = |f: &dyn Fn(&Sums) -> Cell| -> Vec<Cell> { expected.values().map(f).collect() };
        assert_cells(
            &cells(&got, "sum(id)"),
            &col(&|e| Cell::Int(e.0)),
            "sum(id)",
        );
        assert_cells(
            &cells(&got, "count(x)"),
            &col(&|e| Cell::Int(e.1)),
            "count(x)",
        );
        assert_cells(
            &cells(&got, "mean(x)"),
            &col(&|e| Cell::Float(e.2 / e.1 as f64)),
            "mean(x)",
        );
        assert_cells(
            &cells(&got, "max(day)"),
            &col(&|e| Cell::Date(e.3 as i64)),
            "max(day)",
        );
        assert_cells(&cells(&got, "size"), &col(&|e| Cell::Int(e.4)), "size");
        // A filter on the time-zoned timestamp and the int32, in file order.
        let cut = rows[700].ts_us;
        let got = df
            .filter(parse("ts >= '2000-01-01 11:40:00' and id % 7 == 0 and flag").unwrap())
            .unwrap()
            .select(&["id", "day"])
            .unwrap()
            .compute()
            .unwrap();
        assert_eq!(cut, 946_684_800_000_000 + 700 * 60_000_000);
        let want: Vec<&Row> = rows
            .iter()
            .filter(|r| r.ts_us >= cut && r.id.is_some_and(|i| i % 7 == 0) && r.flag)
            .collect();
        let ids: Vec<Cell> = want
            .iter()
            .map(|r| Cell::Int(r.id.unwrap() as i64))
            .collect();
        assert!(!ids.is_empty());
        assert_cells(&cells(&got, "id"), &ids, "filtered ids, in file order");
        assert_eq!(df.num_rows().unwrap(), rows.len());
    }
}

#[test]
fn projection_decodes_only_the_columns_a_query_uses() {
    let tmp = tempfile::tempdir().unwrap();
    other_writer_files(tmp.path());
    let s = sess(16 << 20, Mode::Parallel);
    let df = s.read(tmp.path().to_str().unwrap()).load().unwrap();
    let (_, all) = df.compute_with_stats().unwrap();
    let (one, some) = df.select(&["flag"]).unwrap().compute_with_stats().unwrap();
    assert_eq!(one.num_columns(), 1);
    assert!(
        some.bytes_read * 4 < all.bytes_read,
        "reading one small column read {} of {} bytes",
        some.bytes_read,
        all.bytes_read
    );
    assert_eq!(all.row_groups_read, 12);
}

#[test]
fn filters_skip_row_groups_their_statistics_rule_out() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = other_writer_files(tmp.path());
    let s = sess(16 << 20, Mode::Parallel);
    let df = s.read(tmp.path().to_str().unwrap()).load().unwrap();
    // ids increase with the row: rows 950.. sit in the last row groups only.
    for (filter, skipped) in [
        ("id >= 950", 9),
        ("id < 100 or id >= 1100", 10),
        ("id < 0", 12),
        ("ts < '2000-01-01 01:40'", 11),
        ("not (id < 1000)", 10),
        // No statistics decide these: every row group is read.
        ("x > 99", 0),
        ("id + 1 > 950", 0),
    ] {
        let q = df
            .filter(parse(filter).unwrap())
            .unwrap()
            .agg(&[size(), sum("id")])
            .unwrap();
        let (got, stats) = q.compute_with_stats().unwrap();
        assert_eq!(stats.row_groups_skipped, skipped, "{filter}");
        assert_eq!(stats.row_groups_read, 12 - skipped, "{filter}");
        let e = parse(filter).unwrap();
        let keep: Vec<&Row> = rows
            .iter()
            .filter(|r| {
                let id = r.id.map(|i| i as i64);
                match filter {
                    "id >= 950" => id.is_some_and(|i| i >= 950),
                    "id < 100 or id >= 1100" => id.is_some_and(|i| !(100..1100).contains(&i)),
                    "id < 0" => false,
                    "ts < '2000-01-01 01:40'" => r.ts_us < 946_684_800_000_000 + 100 * 60_000_000,
                    "not (id < 1000)" => id.is_some_and(|i| i >= 1000),
                    "x > 99" => r.x.is_some_and(|x| x > 99.0),
                    "id + 1 > 950" => id.is_some_and(|i| i + 1 > 950),
                    other => panic!("no reference for {other} ({e})"),
                }
            })
            .collect();
        assert_cells(
            &cells(&got, "size"),
            &[Cell::Int(keep.len() as i64)],
            filter,
        );
        let total: i64 = keep.iter().map(|r| r.id.unwrap_or(0) as i64).sum();
        assert_cells(&cells(&got, "sum(id)"), &[Cell::Int(total)], filter);
    }
}

/// `year=Y/month=M/part-0.parquet` files of `v` (int64) and `s` (utf8), two row
/// groups each; returns (year, month, v, s) rows.
fn hive_folder(root: &Path) -> Vec<(i64, i64, i64, String)> {
    let mut all = Vec::new();
    let mut k = 0i64;
    for (year, month) in [(2023, 11), (2023, 12), (2024, 1), (2024, 6)] {
        let mut v = Vec::new();
        let mut s = Vec::new();
        for i in 0..40 {
            k += 1;
            v.push(k * 3 % 101);
            s.push(WORDS[(k as usize + i) % WORDS.len()].to_string());
            all.push((year, month, *v.last().unwrap(), s.last().unwrap().clone()));
        }
        let batch = RecordBatch::try_from_iter(vec![
            ("v", Arc::new(Int64Array::from(v)) as ArrayRef),
            ("s", Arc::new(StringArray::from(s)) as ArrayRef),
        ])
        .unwrap();
        let path = root.join(format!("year={year}/month={month}/part-0.parquet"));
        write_parquet(&path, &[batch], 20, Compression::UNCOMPRESSED);
    }
    // What Spark leaves beside the data.
    std::fs::write(root.join("_SUCCESS"), "").unwrap();
    all
}

#[test]
fn hive_folders_are_columns_that_filters_use_and_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = hive_folder(tmp.path());
    let s = sess(16 << 20, Mode::Parallel);
    let df = s.read(tmp.path().to_str().unwrap()).load().unwrap();
    assert_eq!(df.columns(), vec!["v", "s", "year", "month"]);
    assert_eq!(df.schema().field(3).data_type(), &DataType::Int64);
    let q = df
        .filter(parse("year == 2023 or month == 6").unwrap())
        .unwrap()
        .groupby(&["year", "month"])
        .unwrap()
        .agg(&[sum("v"), count("s")])
        .unwrap();
    let (got, stats) = q.compute_with_stats().unwrap();
    // The folder 2024/1 is pruned: its two row groups are never read.
    assert_eq!((stats.row_groups_read, stats.row_groups_skipped), (6, 2));
    let mut want: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for (y, m, v, _) in &rows {
        if *y == 2023 || *m == 6 {
            let e = want.entry((*y, *m)).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    type Entry<'a> = (&'a (i64, i64), &'a (i64, i64));
    let ints =
        |f: &dyn Fn(Entry) -> i64| -> Vec<Cell> { want.iter().map(|e| Cell::Int(f(e))).collect() };
    assert_cells(&cells(&got, "year"), &ints(&|(k, _)| k.0), "year");
    assert_cells(&cells(&got, "month"), &ints(&|(k, _)| k.1), "month");
    assert_cells(&cells(&got, "sum(v)"), &ints(&|(_, v)| v.0), "sum(v)");
    assert_cells(&cells(&got, "count(s)"), &ints(&|(_, v)| v.1), "count(s)");
    // A glob below the root keeps the folders as columns.
    let glob = tmp.path().join("year=2024/*/*.parquet");
    let df = s.read(glob.to_str().unwrap()).load().unwrap();
    assert_eq!(df.columns(), vec!["v", "s", "year", "month"]);
    assert_eq!(df.num_rows().unwrap(), 80);
}

#[test]
fn hive_values_of_two_types_are_an_error_unless_declared() {
    let tmp = tempfile::tempdir().unwrap();
    let batch = RecordBatch::try_from_iter(vec![(
        "v",
        Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
    )])
    .unwrap();
    for m in ["6", "June"] {
        let p = tmp.path().join(format!("month={m}/part-0.parquet"));
        write_parquet(&p, std::slice::from_ref(&batch), 10, Compression::SNAPPY);
    }
    let s = sess(1 << 20, Mode::Parallel);
    let dir = tmp.path().to_str().unwrap();
    let e = s.read(dir).load().unwrap_err().to_string();
    let (six, june) = (
        tmp.path().join("month=6/part-0.parquet"),
        tmp.path().join("month=June/part-0.parquet"),
    );
    assert_eq!(
        e,
        format!(
            "read_parquet: the partition folders give \"month\" values of more than one type: \
             \"6\" (an integer) in {} and \"June\" (text) in {}\n  hint: declare its type, e.g. \
             --dtype month=string (Rust: .with_dtype(\"month\", DataType::Utf8))",
            six.display(),
            june.display()
        )
    );
    let df = s
        .read(dir)
        .with_dtype("month", DataType::Utf8)
        .load()
        .unwrap();
    let got = df
        .filter(parse("month == 'June'").unwrap())
        .unwrap()
        .compute()
        .unwrap();
    assert_cells(
        &cells(&got, "v"),
        &[Cell::Int(1), Cell::Int(2)],
        "June's rows",
    );
}

#[test]
fn cli_queries_parquet_folders_and_says_what_it_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = hive_folder(tmp.path());
    let dir = tmp.path().to_str().unwrap();
    let (out, err) = ok_both(&[
        "query",
        dir,
        "--filter",
        "month == 6",
        "--agg",
        "sum(v), size()",
        "--format",
        "csv",
        "--stats",
    ]);
    let june: Vec<_> = rows.iter().filter(|r| r.1 == 6).collect();
    let total: i64 = june.iter().map(|r| r.2).sum();
    assert_eq!(out, format!("sum(v),size\n{total},{}\n", june.len()));
    assert!(
        err.contains("Parquet row groups: 2 read, 6 skipped by statistics"),
        "{err}"
    );
    // A Parquet file without a suffix is found by its first bytes.
    let bare = tmp.path().join("bare");
    std::fs::copy(tmp.path().join("year=2024/month=6/part-0.parquet"), &bare).unwrap();
    let (out, _) = ok_both(&[
        "query",
        bare.to_str().unwrap(),
        "--agg",
        "sum(v)",
        "--format",
        "csv",
    ]);
    assert_eq!(out, format!("sum(v)\n{total}\n"));
}

#[test]
fn a_dataset_written_by_persist_is_read_by_query_with_its_index() {
    let tmp = tempfile::tempdir().unwrap();
    // CSV in, persisted with an index, queried by every command.
    let mut t = Table::new(&["timestamp", "name", "x"]);
    let mut rng = Pcg64Mcg::seed_from_u64(7);
    for i in 0..3000i64 {
        t.rows.push(vec![
            Cell::Ts(TS_BASE_NS + i * 20_000_000_000),
            Cell::Str(NAMES[rng.random_range(0..5)].into()),
            Cell::Float(rng.random_range(-400i64..=400) as f64 / 4.0),
        ]);
    }
    let csv = tmp.path().join("csv");
    std::fs::create_dir_all(&csv).unwrap();
    t.write_files(&csv, 3);
    let ds = tmp.path().join("ds");
    let (_, err) = ok_both(&[
        "persist",
        &glob_of(&csv),
        "--index",
        "timestamp",
        "--sorted",
        "--out",
        ds.to_str().unwrap(),
    ]);
    assert!(err.contains("(3 partitions)"), "{err}");
    let (out, _) = ok_both(&[
        "query",
        ds.to_str().unwrap(),
        "--filter",
        "timestamp >= '2000-01-01 12:00'",
        "--groupby",
        "name",
        "--agg",
        "sum(x), size()",
        "--format",
        "csv",
        "--stats",
    ]);
    let day2 = TS_BASE_NS + 43_200_000_000_000;
    let mut want: BTreeMap<String, (f64, i64)> = BTreeMap::new();
    for r in &t.rows {
        let (Cell::Ts(ts), Cell::Str(n), Cell::Float(x)) = (&r[0], &r[1], &r[2]) else {
            unreachable!()
        };
        if *ts >= day2 {
            let e = want.entry(n.clone()).or_default();
            e.0 += x;
            e.1 += 1;
        }
    }
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("name,sum(x),size"));
    let got: Vec<(String, f64, i64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(got.len(), want.len(), "{out}");
    for ((n, s, c), (wn, (ws, wc))) in got.iter().zip(&want) {
        assert_eq!((n, c), (wn, wc), "{out}");
        assert!(close(*s, *ws), "{n}: sum {s}, expected {ws}");
    }
    // The index and divisions came back: a resample by --index moves no row.
    let (out, err) = ok_both(&[
        "resample",
        ds.to_str().unwrap(),
        "--index",
        "timestamp",
        "--rule",
        "6h",
        "--agg",
        "count(x)",
        "--format",
        "csv",
        "--stats",
    ]);
    assert!(err.contains("shuffled 0 B"), "{err}");
    assert_eq!(
        out,
        "timestamp,count(x)\n2000-01-01T00:00:00,1080\n2000-01-01T06:00:00,1080\n2000-01-01T12:00:00,840\n"
    );
    // From Rust, the same entry point.
    let s = sess(1 << 20, Mode::Parallel);
    let df = s.read(ds.to_str().unwrap()).load().unwrap();
    assert_eq!(df.index_column().as_deref(), Some("timestamp"));
    assert!(df.known_divisions());
    assert_eq!(df.npartitions(), 3);
}

#[test]
fn a_cut_or_corrupt_parquet_file_is_an_error_naming_the_file_and_row_group() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = make_rows(3, 0, 300);
    let path = tmp.path().join("t.parquet");
    write_parquet(&path, &[batch_of(&rows)], 100, Compression::UNCOMPRESSED);
    let bytes = std::fs::read(&path).unwrap();
    let s = sess(1 << 20, Mode::Parallel);

    // Cut short: the footer is gone.
    let cut = tmp.path().join("cut.parquet");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = s
        .read(cut.to_str().unwrap())
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "{}: not a readable Parquet file (cut short, or not Parquet): ",
            cut.display()
        )),
        "{e}"
    );

    // The footer is fine but row group 1's pages are garbage.
    let bad = tmp.path().join("bad.parquet");
    let meta =
        parquet::file::reader::SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
    let rg1 = parquet::file::reader::FileReader::metadata(&meta)
        .row_group(1)
        .column(0)
        .byte_range()
        .0 as usize;
    let mut broken = bytes.clone();
    for b in &mut broken[rg1..rg1 + 40] {
        *b = 0xff;
    }
    std::fs::write(&bad, &broken).unwrap();
    let df = s.read(bad.to_str().unwrap()).load().unwrap();
    let e = df.compute().unwrap_err();
    let root = e.root().to_string();
    assert!(
        root.starts_with(&format!(
            "{}: row group 1 (of 3, counting from 0): ",
            bad.display()
        )),
        "{root}"
    );
    // Reading only other row groups works: the damage is local.
    let ok_rows = df
        .filter(parse("id < 100").unwrap())
        .unwrap()
        .num_rows()
        .unwrap();
    assert_eq!(
        ok_rows,
        rows.iter()
            .filter(|r| r.id.is_some_and(|i| i < 100))
            .count()
    );

    // And through the CLI, exit code 1 and the same message.
    let out = outcore(&["query", bad.to_str().unwrap(), "--agg", "sum(id)"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("row group 1 (of 3, counting from 0)"), "{err}");
}

#[test]
fn a_glob_of_mixed_formats_is_an_error_that_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("a.csv"), "v\n1\n").unwrap();
    let batch =
        RecordBatch::try_from_iter(vec![("v", Arc::new(Int64Array::from(vec![1])) as ArrayRef)])
            .unwrap();
    write_parquet(&tmp.path().join("b.csv"), &[batch], 10, Compression::SNAPPY);
    let s = sess(1 << 20, Mode::Parallel);
    let glob: PathBuf = tmp.path().join("*.csv");
    let e = s
        .read(glob.to_str().unwrap())
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "{} is a Parquet file, but {:?} was read as CSV",
            tmp.path().join("b.csv").display(),
            glob.to_str().unwrap()
        )),
        "{e}"
    );
}

#[test]
fn a_small_parquet_side_of_a_join_is_broadcast_from_its_footer_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = other_writer_files(&tmp.path().join("big"));
    let ids: Vec<i32> = (0..1200).step_by(10).collect();
    let labels: Vec<String> = ids.iter().map(|i| format!("L{i}")).collect();
    let small = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int32Array::from(ids.clone())) as ArrayRef),
        ("label", Arc::new(StringArray::from(labels)) as ArrayRef),
    ])
    .unwrap();
    write_parquet(
        &tmp.path().join("small/labels.parquet"),
        &[small],
        40,
        Compression::SNAPPY,
    );
    // Tiny partitions, so neither side is small by its partition count.
    let s = sess(500, Mode::Parallel);
    let big = s
        .read(tmp.path().join("big").to_str().unwrap())
        .load()
        .unwrap();
    let labels = s
        .read(tmp.path().join("small").to_str().unwrap())
        .load()
        .unwrap();
    assert!(labels.npartitions() > 1 && big.npartitions() > 1);
    let joined = big
        .merge(&labels, &["id"], outcore::frame::How::Inner)
        .unwrap()
        .select(&["id", "label"])
        .unwrap();
    assert!(
        joined.visualize().contains("broadcast-gather"),
        "the small side is broadcast"
    );
    let got = joined.compute().unwrap();
    let want: Vec<Cell> = rows
        .iter()
        .filter_map(|r| r.id.filter(|i| i % 10 == 0))
        .map(|i| Cell::Str(format!("L{i}")))
        .collect();
    let mut got_labels = cells(&got, "label");
    got_labels.sort_by_key(|c| c.to_string());
    let mut want = want;
    want.sort_by_key(|c| c.to_string());
    assert_cells(&got_labels, &want, "labels of the joined rows");
}

#[test]
fn nested_folders_without_keys_are_read_recursively_for_parquet_only() {
    let tmp = tempfile::tempdir().unwrap();
    let batch = RecordBatch::try_from_iter(vec![(
        "v",
        Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
    )])
    .unwrap();
    for (i, sub) in ["2024/06", "2024/07"].iter().enumerate() {
        let p = tmp.path().join(format!("pq/{sub}/part-{i}.parquet"));
        write_parquet(&p, std::slice::from_ref(&batch), 2, Compression::SNAPPY);
        let c = tmp.path().join(format!("csv/{sub}/part-{i}.csv"));
        std::fs::create_dir_all(c.parent().unwrap()).unwrap();
        std::fs::write(&c, "v\n1\n").unwrap();
    }
    let s = sess(1 << 20, Mode::Parallel);
    let df = s
        .read(tmp.path().join("pq").to_str().unwrap())
        .load()
        .unwrap();
    assert_eq!(df.columns(), vec!["v"]);
    let got = df.agg(&[sum("v")]).unwrap().compute().unwrap();
    assert_cells(
        &cells(&got, "sum(v)"),
        &[Cell::Int(12)],
        "sum over both folders",
    );
    let csv = tmp.path().join("csv");
    let e = s
        .read(csv.to_str().unwrap())
        .load()
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "read: folder {:?} holds only sub-folders; CSV and JSON lines are read from the \
             files of one folder (or give a glob)",
            csv.to_str().unwrap()
        )
    );
}

/// Postmortem-style guard: whatever bytes of the data pages are damaged, reading
/// gives an answer or an error naming the file, never a panic or "a bug".
#[test]
fn damaged_pages_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = make_rows(5, 0, 400);
    let path = tmp.path().join("t.parquet");
    write_parquet(&path, &[batch_of(&rows)], 100, Compression::SNAPPY);
    let bytes = std::fs::read(&path).unwrap();
    let data_end = bytes.len() * 6 / 10;
    let s = sess(1 << 20, Mode::Parallel);
    let mut errors = 0;
    for seed in 0..24u64 {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let mut broken = bytes.clone();
        let at = rng.random_range(4..data_end - 16);
        for b in &mut broken[at..at + rng.random_range(1..16)] {
            *b = rng.random();
        }
        let bad = tmp.path().join(format!("bad-{seed}.parquet"));
        std::fs::write(&bad, &broken).unwrap();
        let result = s
            .read(bad.to_str().unwrap())
            .load()
            .and_then(|df| df.agg(&[sum("id"), count("name"), max("ts")])?.compute());
        if let Err(e) = result {
            errors += 1;
            let msg = e.root().to_string();
            assert!(msg.starts_with(&bad.display().to_string()), "{msg}");
            assert!(!msg.contains("this is a bug"), "{msg}");
        }
    }
    assert!(errors > 0, "some damage is detected");
}

#[test]
fn files_of_different_schemas_are_an_error_naming_file_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, columns: Vec<(&str, ArrayRef)>| {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        write_parquet(&tmp.path().join(name), &[batch], 10, Compression::SNAPPY);
    };
    write(
        "a.parquet",
        vec![("v", Arc::new(Int64Array::from(vec![1])) as ArrayRef)],
    );
    write(
        "b.parquet",
        vec![("v", Arc::new(Int32Array::from(vec![1])) as ArrayRef)],
    );
    let s = sess(1 << 20, Mode::Parallel);
    let dir = tmp.path().to_str().unwrap();
    let (a, b) = (tmp.path().join("a.parquet"), tmp.path().join("b.parquet"));
    let e = s.read(dir).load().unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: column \"v\" is Int32 here but Int64 in {}",
            b.display(),
            a.display()
        )
    );
    write(
        "b.parquet",
        vec![("w", Arc::new(Int64Array::from(vec![1])) as ArrayRef)],
    );
    let e = s.read(dir).load().unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: has no column \"v\", which {} has; the columns here are: w",
            b.display(),
            a.display()
        )
    );
}

//! Reading CSV globs: clear errors for bad input (asserting the message text), empty
//! and header-only files, expression syntax errors, type inference across files,
//! declared types and dates, column pruning, quoting, CRLF and blank lines.

use std::path::{Path, PathBuf};

use arrow::datatypes::{DataType, TimeUnit};
use outcore::agg::{count, size, sum};
use outcore::expr::{col, lit, parse};
use outcore::scheduler::Mode;
use outcore::{DataFrame, Error, Session};

use crate::common::*;

fn write(dir: &Path, name: &str, body: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn s() -> Session {
    session(2, Mode::Parallel, 64 << 20)
}

fn err_text<T>(r: outcore::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message does not contain {p:?}:\n{msg}");
    }
}

// ----------------------------------------------------------------------- globs

#[test]
fn a_glob_that_matches_nothing_names_the_glob() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "present.csv", "a\n1\n");
    let pattern = dir
        .path()
        .join("absent-*.csv")
        .to_string_lossy()
        .into_owned();
    let msg = err_text(s().read_csv(&pattern).load());
    assert_contains(&msg, &["no files match", &pattern]);

    let plain = dir.path().join("nope.csv").to_string_lossy().into_owned();
    let msg = err_text(s().read_csv(&plain).load());
    assert_contains(&msg, &[&plain]);

    let empty = dir.path().join("empty-folder");
    std::fs::create_dir(&empty).unwrap();
    let empty = empty.to_string_lossy().into_owned();
    let msg = err_text(s().read_csv(&empty).load());
    assert_contains(&msg, &[&empty, "holds no files"]);
}

#[test]
fn a_folder_reads_every_visible_file_in_path_order() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "b.csv", "k\n2\n");
    write(dir.path(), "a.csv", "k\n1\n");
    write(dir.path(), ".hidden.csv", "k\n100\n");
    write(dir.path(), "_skipped.csv", "k\n1000\n");
    let df = s().read_csv(dir.path().to_string_lossy()).load().unwrap();
    let b = df.compute().unwrap();
    assert_eq!(cells(&b, "k"), vec![Cell::Int(1), Cell::Int(2)]);
}

// ------------------------------------------------------------- unknown columns

fn abc(dir: &Path) -> DataFrame {
    write(dir, "f.csv", "a,b,c\n1,2,x\n3,4,y\n");
    s().read_csv(glob_of(dir)).load().unwrap()
}

#[test]
fn unknown_columns_list_the_columns_there_are() {
    let dir = tempfile::tempdir().unwrap();
    let df = abc(dir.path());
    let there = "the columns are: a, b, c";
    let unknown = "unknown column \"nope\"";
    for msg in [
        err_text(df.filter(col("nope").gt(lit(1i64)))),
        err_text(df.query("a > 0 and nope == 'x'")),
        err_text(df.select(&["a", "nope"])),
        err_text(df.with_column("d", col("nope").add(lit(1i64)))),
        err_text(df.groupby(&["nope"])),
        err_text(df.groupby(&["a"]).unwrap().agg(&[sum("nope")])),
        err_text(df.agg(&[count("nope")])),
    ] {
        assert_contains(&msg, &[unknown, there]);
    }
    // After a selection, the columns there are those of the selected frame.
    let ab = df.select(&["a", "b"]).unwrap();
    let msg = err_text(ab.filter(col("c").eq(lit("x"))));
    assert_contains(&msg, &["unknown column \"c\"", "the columns are: a, b"]);

    let msg = err_text(
        s().read_csv(glob_of(dir.path()))
            .with_dtype("nope", DataType::Int64)
            .load(),
    );
    assert_contains(&msg, &[unknown, there]);
    let msg = err_text(
        s().read_csv(glob_of(dir.path()))
            .with_parse_dates(["nope"])
            .load(),
    );
    assert_contains(&msg, &[unknown, there]);
}

// ------------------------------------------------------------------ bad values

/// `k,v` rows `i,i` for `i` in `0..rows`, with `bad` as `v` of row `bad_row`.
/// Row `r` is on line `r + 2` (the header is line 1).
fn int_file(dir: &Path, name: &str, rows: usize, bad_row: usize, bad: &str) -> PathBuf {
    let mut body = String::from("k,v\n");
    for i in 0..rows {
        if i == bad_row {
            body.push_str(&format!("{i},{bad}\n"));
        } else {
            body.push_str(&format!("{i},{i}\n"));
        }
    }
    write(dir, name, body)
}

#[test]
fn a_bad_value_names_file_line_column_type_value_and_hint() {
    let dir = tempfile::tempdir().unwrap();
    int_file(dir.path(), "a-good.csv", 50, usize::MAX, "");
    let bad = int_file(dir.path(), "b-bad.csv", 200, 150, "12x");
    for blocksize in [16, 100, 64 << 20] {
        for mode in [Mode::Sync, Mode::Parallel] {
            let df = session(2, mode, blocksize)
                .read_csv(glob_of(dir.path()))
                .with_dtype("v", DataType::Int64)
                .load()
                .unwrap();
            let err = df
                .groupby(&["k"])
                .unwrap()
                .agg(&[sum("v")])
                .unwrap()
                .compute()
                .unwrap_err();
            let msg = err.to_string();
            let at = format!("{}:152", bad.display());
            assert_contains(
                &msg,
                &[
                    &at,
                    "column \"v\"",
                    "Int64",
                    "\"12x\"",
                    "--dtype",
                    "v=string",
                ],
            );
            match err.root() {
                Error::Parse(p) => {
                    let outcore::error::ParseError {
                        at,
                        column,
                        expected,
                        found,
                        ..
                    } = p.as_ref();
                    assert_eq!(at.path, bad);
                    assert_eq!(at.line, 152, "blocksize {blocksize}");
                    assert_eq!(column, "v");
                    assert_eq!(expected, &DataType::Int64);
                    assert_eq!(found, "12x");
                }
                other => panic!("expected a parse error, got {other:?}"),
            }
            assert!(
                matches!(err, Error::Task { .. }),
                "a failure while computing names its task: {err:?}"
            );
        }
    }
}

#[test]
fn a_bad_value_beyond_the_inference_sample_is_reported_with_its_line() {
    // Inference reads `sample_bytes` from the start and as many from the middle of a
    // file; a value between the two is only met when the block is decoded.
    let sample = outcore::io::CsvOptions::default().sample_bytes as usize;
    let dir = tempfile::tempdir().unwrap();
    let row_bytes = 16; // "0000123,0000123\n"
    let rows = sample * 5 / 2 / row_bytes;
    let bad_row = sample * 11 / 10 / row_bytes;
    let mut body = String::from("k,v\n");
    for i in 0..rows {
        if i == bad_row {
            body.push_str(&format!("{i:07},oops\n"));
        } else {
            body.push_str(&format!("{i:07},{i:07}\n"));
        }
    }
    let path = write(dir.path(), "big.csv", body);
    for blocksize in [64 << 10, 64 << 20] {
        let df = session(2, Mode::Parallel, blocksize)
            .read_csv(glob_of(dir.path()))
            .load()
            .unwrap();
        assert_eq!(
            df.schema().field_with_name("v").unwrap().data_type(),
            &DataType::Int64
        );
        let msg = err_text(df.agg(&[sum("v")]).unwrap().compute());
        let at = format!("{}:{}", path.display(), bad_row + 2);
        assert_contains(&msg, &[&at, "column \"v\"", "Int64", "\"oops\"", "--dtype"]);
    }
}

#[test]
fn a_row_with_the_wrong_number_of_fields_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let plain = write(dir.path(), "plain.csv", "a,b\n1,2\n3,4\n5,6,7\n8,9\n");
    let quoted = write(dir.path(), "quoted.csv", "a,b\n1,\"2\"\n\"3\"\n5,6\n");
    for (path, line, found) in [(&plain, 4, 3), (&quoted, 3, 1)] {
        let pattern = path.to_string_lossy().into_owned();
        // Declared types: no inference sample, so the rows are first met by a task.
        for blocksize in [1, 5, 64 << 20] {
            let df = session(1, Mode::Sync, blocksize)
                .read_csv(&pattern)
                .with_dtype("a", DataType::Int64)
                .with_dtype("b", DataType::Int64)
                .load()
                .unwrap();
            let msg = err_text(df.compute());
            let at = format!("{}:{line}", path.display());
            assert_contains(&msg, &[&at, "expected 2 fields", &format!("found {found}")]);
        }
        // Inferred types: the inference sample meets the row when the source opens.
        let msg = err_text(s().read_csv(&pattern).load());
        let at = format!("{}:{line}", path.display());
        assert_contains(&msg, &[&at, "expected 2 fields"]);
    }
}

#[test]
fn line_numbers_count_blank_lines_crlf_and_quoted_rows() {
    let dir = tempfile::tempdir().unwrap();
    // Line 1 header, 2 a row, 3 blank, 4 a row, 5 blank, 6 the bad row.
    let crlf = write(
        dir.path(),
        "crlf.csv",
        "k,v\r\n1,1\r\n\r\n2,2\r\n\r\n3,x3\r\n4,4\r\n",
    );
    // Line 1 header, 2 a row, 3 blank, 4 a row, 5 the bad row.
    let quoted = write(
        dir.path(),
        "quoted.csv",
        "k,v\n\"a, b\",1\n\n\"c\"\"d\",2\n\"e\",oops\n\"f\",5\n",
    );
    for (path, line, found) in [(&crlf, 6, "x3"), (&quoted, 5, "oops")] {
        for blocksize in [1, 6, 64 << 20] {
            let df = session(1, Mode::Sync, blocksize)
                .read_csv(path.to_string_lossy())
                .with_dtype("v", DataType::Int64)
                .load()
                .unwrap();
            let err = df.compute().unwrap_err();
            match err.root() {
                Error::Parse(p) => assert_eq!(
                    (p.at.line, p.found.as_str()),
                    (line, found),
                    "{} blocksize {blocksize}",
                    path.display()
                ),
                other => panic!("expected a parse error, got {other:?}"),
            }
            let at = format!("{}:{line}", path.display());
            assert_contains(&err.to_string(), &[&at]);
        }
    }
}

#[test]
fn a_type_change_in_a_file_inference_did_not_sample_is_a_clear_error() {
    // Inference samples a few files (first, last, some between); a float in a file
    // it skipped fails the decode with the file, the line and the hint.
    let nfiles = 10;
    let sampled =
        outcore::io::infer::sample_files(nfiles, outcore::io::CsvOptions::default().sample_files);
    let skipped = (0..nfiles)
        .find(|i| !sampled.contains(i))
        .expect("a file inference skips");
    let dir = tempfile::tempdir().unwrap();
    let mut bad = PathBuf::new();
    for i in 0..nfiles {
        let body = if i == skipped {
            "k,v\n1,1\n2,2.5\n".to_string()
        } else {
            format!("k,v\n1,{i}\n")
        };
        let p = write(dir.path(), &format!("f{i:02}.csv"), body);
        if i == skipped {
            bad = p;
        }
    }
    let df = session(1, Mode::Sync, 64 << 20)
        .read_csv(glob_of(dir.path()))
        .load()
        .unwrap();
    assert_eq!(
        df.schema().field_with_name("v").unwrap().data_type(),
        &DataType::Int64
    );
    let msg = err_text(df.agg(&[sum("v")]).unwrap().compute());
    let at = format!("{}:3", bad.display());
    assert_contains(&msg, &[&at, "column \"v\"", "Int64", "\"2.5\"", "--dtype"]);
    // Declaring the type, as the hint says, reads it.
    let df = s()
        .read_csv(glob_of(dir.path()))
        .with_dtype("v", DataType::Float64)
        .load()
        .unwrap();
    let total = df.agg(&[sum("v")]).unwrap().compute().unwrap();
    let expected = (0..nfiles).filter(|&i| i != skipped).sum::<usize>() as f64 + 3.5;
    assert_cells(&cells(&total, "sum(v)"), &[Cell::Float(expected)], "sum(v)");
}

#[test]
fn files_whose_headers_differ_are_both_named() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.csv", "x,y\n1,2\n");
    let b = write(dir.path(), "b.csv", "x,z\n3,4\n");
    let msg = err_text(s().read_csv(glob_of(dir.path())).load());
    assert_contains(
        &msg,
        &[
            &a.display().to_string(),
            &b.display().to_string(),
            "header differs",
        ],
    );
}

#[test]
fn text_that_is_not_utf8_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "latin1.csv",
        b"id,s\n1,ok\n2,caf\xe9\n3,fine\n".as_slice(),
    );
    for blocksize in [1, 8, 64 << 20] {
        let df = session(2, Mode::Parallel, blocksize)
            .read_csv(glob_of(dir.path()))
            .load()
            .unwrap();
        assert_eq!(
            df.schema().field_with_name("s").unwrap().data_type(),
            &DataType::Utf8
        );
        let msg = err_text(df.compute());
        let at = format!("{}:3", path.display());
        assert_contains(&msg, &[&at, "column \"s\"", "not valid UTF-8"]);
        // The other column alone reads fine.
        let ids = df.select(&["id"]).unwrap().compute().unwrap();
        assert_eq!(ids.num_rows(), 3);
    }
}

// ------------------------------------------------------------ empty and header

#[test]
fn an_empty_file_and_a_header_only_file_have_zero_rows() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty.csv", "");
    let df = s().read_csv(empty.to_string_lossy()).load().unwrap();
    assert!(df.columns().is_empty());
    assert_eq!(df.num_rows().unwrap(), 0);
    assert_eq!(df.compute().unwrap().num_rows(), 0);

    for (name, body) in [
        ("h1.csv", "k,v\n"),
        ("h2.csv", "k,v"),
        ("h3.csv", "k,v\r\n"),
    ] {
        let p = write(dir.path(), name, body);
        let df = s().read_csv(p.to_string_lossy()).load().unwrap();
        assert_eq!(df.columns(), vec!["k", "v"], "{name}");
        assert_eq!(df.num_rows().unwrap(), 0, "{name}");
        assert_eq!(df.compute().unwrap().num_rows(), 0, "{name}");
        assert_eq!(df.head(5).unwrap().num_rows(), 0, "{name}");
        let g = df
            .groupby(&["k"])
            .unwrap()
            .agg(&[count("v"), size()])
            .unwrap()
            .compute()
            .unwrap();
        assert_eq!(g.num_rows(), 0, "{name}");
    }
}

#[test]
fn empty_and_header_only_files_mixed_with_data_lose_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "0-empty.csv", "");
    write(dir.path(), "1-header.csv", "k,v\n");
    write(dir.path(), "2-data.csv", "k,v\na,1\nb,2\na,3\n");
    write(dir.path(), "3-header.csv", "k,v");
    write(dir.path(), "4-data.csv", "k,v\nb,10\nc,20\n");
    write(dir.path(), "5-empty.csv", "");
    for blocksize in [1, 4, 64 << 20] {
        let df = session(2, Mode::Parallel, blocksize)
            .read_csv(glob_of(dir.path()))
            .load()
            .unwrap();
        assert_eq!(df.columns(), vec!["k", "v"]);
        assert_eq!(df.num_rows().unwrap(), 5);
        let all = df.compute().unwrap();
        assert_eq!(
            cells(&all, "v"),
            [1, 2, 3, 10, 20].map(Cell::Int).to_vec(),
            "blocksize {blocksize}"
        );
        let g = df
            .groupby(&["k"])
            .unwrap()
            .agg(&[sum("v")])
            .unwrap()
            .compute()
            .unwrap();
        assert_eq!(
            batch_rows(&g),
            vec![
                vec![Cell::Str("a".into()), Cell::Int(4)],
                vec![Cell::Str("b".into()), Cell::Int(12)],
                vec![Cell::Str("c".into()), Cell::Int(20)],
            ]
        );
    }
}

// ------------------------------------------------------------ expression syntax

#[test]
fn invalid_expressions_are_syntax_errors_at_the_right_character() {
    for (input, position) in [
        ("y > ", 4),
        ("y > 0 and", 9),
        ("a $ b", 2),
        ("(a > 1", 6),
        ("a > 1)", 5),
        ("x == 'abc", 5),
        ("1 < y < 3", 6),
        ("name = = 'Bob'", 7),
        ("nope(x) > 1", 0),
    ] {
        match parse(input) {
            Err(Error::Syntax {
                input: i,
                position: p,
                ..
            }) => {
                assert_eq!(i, input);
                assert_eq!(p, position, "position for {input:?}");
            }
            other => panic!("{input:?}: expected a syntax error, got {other:?}"),
        }
        let msg = parse(input).unwrap_err().to_string();
        let caret = format!("  {input}\n  {}^", " ".repeat(position));
        assert_contains(
            &msg,
            &[
                &format!("invalid expression at character {}", position + 1),
                &caret,
            ],
        );
    }
    // Through a frame too.
    let dir = tempfile::tempdir().unwrap();
    let df = abc(dir.path());
    assert!(matches!(
        df.query("a >"),
        Err(Error::Syntax { position: 3, .. })
    ));
}

// -------------------------------------------------------------- type inference

#[test]
fn inference_widens_ints_to_floats_seen_in_a_later_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "0.csv", "k,v\na,1\nb,2\n");
    write(dir.path(), "1.csv", "k,v\na,3\nb,\n");
    write(dir.path(), "2.csv", "k,v\na,4\nb,0.5\n");
    let df = s().read_csv(glob_of(dir.path())).load().unwrap();
    assert_eq!(
        df.schema().field_with_name("v").unwrap().data_type(),
        &DataType::Float64
    );
    let total = df.agg(&[sum("v")]).unwrap().compute().unwrap();
    assert_cells(&cells(&total, "sum(v)"), &[Cell::Float(10.5)], "sum(v)");
    let g = df
        .groupby(&["k"])
        .unwrap()
        .agg(&[sum("v"), count("v")])
        .unwrap()
        .compute()
        .unwrap();
    assert_eq!(
        batch_rows(&g),
        vec![
            vec![Cell::Str("a".into()), Cell::Float(8.0), Cell::Int(3)],
            vec![Cell::Str("b".into()), Cell::Float(2.5), Cell::Int(2)],
        ]
    );
}

#[test]
fn inference_makes_text_of_a_column_with_strings_in_a_later_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "0.csv", "k,v\n1,10\n2,20\n");
    write(dir.path(), "1.csv", "k,v\n3,thirty\n");
    let df = s().read_csv(glob_of(dir.path())).load().unwrap();
    assert_eq!(
        df.schema().field_with_name("v").unwrap().data_type(),
        &DataType::Utf8
    );
    assert_eq!(
        df.schema().field_with_name("k").unwrap().data_type(),
        &DataType::Int64
    );
    let b = df.compute().unwrap();
    assert_eq!(
        cells(&b, "v"),
        ["10", "20", "thirty"].map(|s| Cell::Str(s.into())).to_vec()
    );
}

#[test]
fn na_spellings_are_null_in_numbers_and_text_in_strings() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "na.csv",
        "k,x,n,s\na,1.5,1,NA\nb,NA,N/A,null\nc,nan,,\nd,NaN,4,None\ne,,NULL,x\n",
    );
    let df = s().read_csv(glob_of(dir.path())).load().unwrap();
    let schema = df.schema();
    let ty = |c: &str| schema.field_with_name(c).unwrap().data_type().clone();
    assert_eq!(ty("x"), DataType::Float64);
    assert_eq!(ty("n"), DataType::Int64);
    assert_eq!(ty("s"), DataType::Utf8);
    let b = df.compute().unwrap();
    assert_eq!(
        cells(&b, "x"),
        vec![
            Cell::Float(1.5),
            Cell::Null,
            Cell::Null,
            Cell::Null,
            Cell::Null
        ]
    );
    assert_eq!(
        cells(&b, "n"),
        vec![
            Cell::Int(1),
            Cell::Null,
            Cell::Null,
            Cell::Int(4),
            Cell::Null
        ]
    );
    assert_eq!(
        cells(&b, "s"),
        vec![
            Cell::Str("NA".into()),
            Cell::Str("null".into()),
            Cell::Null,
            Cell::Str("None".into()),
            Cell::Str("x".into()),
        ]
    );
    let c = df.count().unwrap();
    assert_eq!(cells(&c, "x"), vec![Cell::Int(1)]);
    assert_eq!(cells(&c, "s"), vec![Cell::Int(4)]);
}

#[test]
fn header_names_are_trimmed_and_made_unique() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "h.csv", " a ,a,,b,a\n1,2,3,4,5\n");
    let df = s().read_csv(glob_of(dir.path())).load().unwrap();
    assert_eq!(df.columns(), vec!["a", "a.1", "Unnamed: 2", "b", "a.2"]);
    let b = df.select(&["a.2", "a"]).unwrap().compute().unwrap();
    assert_eq!(batch_rows(&b), vec![vec![Cell::Int(5), Cell::Int(1)]]);
}

#[test]
fn declared_types_override_inference() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "0.csv", "code,v,w\n007,1,5\n010,2,6\n");
    let df = s()
        .read_csv(glob_of(dir.path()))
        .with_dtype("code", DataType::Utf8)
        .with_dtype("v", DataType::Float64)
        .with_dtype("w", DataType::Int32)
        .load()
        .unwrap();
    let schema = df.schema();
    assert_eq!(
        schema.field_with_name("code").unwrap().data_type(),
        &DataType::Utf8
    );
    assert_eq!(
        schema.field_with_name("v").unwrap().data_type(),
        &DataType::Float64
    );
    assert_eq!(
        schema.field_with_name("w").unwrap().data_type(),
        &DataType::Int32
    );
    let b = df.compute().unwrap();
    assert_eq!(b.schema().field(2).data_type(), &DataType::Int32);
    assert_eq!(
        cells(&b, "code"),
        vec![Cell::Str("007".into()), Cell::Str("010".into())]
    );
    assert_eq!(cells(&b, "v"), vec![Cell::Float(1.0), Cell::Float(2.0)]);
    assert_eq!(cells(&b, "w"), vec![Cell::Int(5), Cell::Int(6)]);
    let total = df.agg(&[sum("w")]).unwrap().compute().unwrap();
    assert_eq!(cells(&total, "sum(w)"), vec![Cell::Int(11)]);

    // A value that does not fit the declared type is an error, not a wrap.
    let big = write(dir.path(), "1.csv", "code,v,w\n011,3,3000000000\n");
    let msg = err_text(
        session(1, Mode::Sync, 64 << 20)
            .read_csv(glob_of(dir.path()))
            .with_dtype("w", DataType::Int32)
            .load()
            .unwrap()
            .compute(),
    );
    let at = format!("{}:2", big.display());
    assert_contains(&msg, &[&at, "column \"w\"", "Int32", "\"3000000000\""]);

    // Dates, also as a group key.
    let dates = tempfile::tempdir().unwrap();
    write(
        dates.path(),
        "d.csv",
        "d,v\n2000-03-01,1\n2000-02-29,2\n2000-03-01,3\n,4\n",
    );
    let df = s()
        .read_csv(glob_of(dates.path()))
        .with_dtype("d", DataType::Date32)
        .load()
        .unwrap();
    let b = df.compute().unwrap();
    assert_eq!(
        cells(&b, "d"),
        vec![
            Cell::Date(11017),
            Cell::Date(11016),
            Cell::Date(11017),
            Cell::Null
        ]
    );
    let g = df
        .groupby(&["d"])
        .unwrap()
        .agg(&[sum("v")])
        .unwrap()
        .compute()
        .unwrap();
    assert_eq!(g.schema().field(0).data_type(), &DataType::Date32);
    assert_eq!(
        batch_rows(&g),
        vec![
            vec![Cell::Date(11016), Cell::Int(2)],
            vec![Cell::Date(11017), Cell::Int(4)],
        ]
    );
}

#[test]
fn parse_dates_gives_nanosecond_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "t.csv",
        "ts,v\n2000-01-01 00:00:01,1\n2000-01-01T00:00:01.5,2\n2000-01-01,3\n,4\n2000-01-02 10:20:30.000000007,5\n2000-01-01T01:00:00+01:00,6\n2000-01-01T00:00:02Z,7\n",
    );
    let df = s()
        .read_csv(glob_of(dir.path()))
        .with_parse_dates(["ts"])
        .load()
        .unwrap();
    assert_eq!(
        df.schema().field_with_name("ts").unwrap().data_type(),
        &DataType::Timestamp(TimeUnit::Nanosecond, None)
    );
    let b = df.compute().unwrap();
    assert_eq!(
        cells(&b, "ts"),
        vec![
            Cell::Ts(946_684_801_000_000_000),
            Cell::Ts(946_684_801_500_000_000),
            Cell::Ts(946_684_800_000_000_000),
            Cell::Null,
            Cell::Ts(
                946_684_800_000_000_000 + (86_400 + 10 * 3600 + 20 * 60 + 30) * 1_000_000_000 + 7
            ),
            Cell::Ts(946_684_800_000_000_000),
            Cell::Ts(946_684_802_000_000_000),
        ]
    );
}

// ------------------------------------------------------------------ projection

#[test]
fn only_the_columns_a_query_uses_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let t = gen_table(1, &GenOpts::new(50));
    t.write_files(dir.path(), 2);
    let df = load_gen(&s(), dir.path());
    assert_eq!(df.read_columns(), GEN_COLUMNS.to_vec());
    assert_eq!(df.select(&["x"]).unwrap().read_columns(), vec!["x"]);
    assert_eq!(
        df.groupby(&["name"])
            .unwrap()
            .agg(&[sum("x")])
            .unwrap()
            .read_columns(),
        vec!["name", "x"]
    );
    assert_eq!(
        df.filter(col("v").gt(lit(0i64)))
            .unwrap()
            .select(&["x"])
            .unwrap()
            .read_columns(),
        vec!["x", "v"]
    );
    assert_eq!(
        df.with_column("z", col("x").mul(lit(2.0)))
            .unwrap()
            .select(&["z"])
            .unwrap()
            .read_columns(),
        vec!["x"]
    );
    assert!(df.select::<&str>(&[]).unwrap().read_columns().is_empty());
    // And the answers are right.
    let xs = df.select(&["x"]).unwrap().compute().unwrap();
    assert_eq!(xs.num_columns(), 1);
    assert_cells(&cells(&xs, "x"), &t.column("x"), "x");
}

#[test]
fn a_bad_value_in_a_column_the_query_does_not_read_is_not_decoded() {
    let dir = tempfile::tempdir().unwrap();
    int_file(dir.path(), "f.csv", 20, 7, "bad");
    let df = s()
        .read_csv(glob_of(dir.path()))
        .with_dtype("v", DataType::Int64)
        .load()
        .unwrap();
    let ks = df.agg(&[sum("k")]).unwrap().compute().unwrap();
    assert_eq!(cells(&ks, "sum(k)"), vec![Cell::Int((0..20).sum())]);
    assert_eq!(df.num_rows().unwrap(), 20);
    assert!(df.agg(&[sum("v")]).unwrap().compute().is_err());
}

// ------------------------------------------------------- quoting, CRLF, blanks

#[test]
fn quoted_fields_crlf_and_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "q.csv",
        "id,name,note\r\n1,\"Smith, John\",\"He said \"\"hi\"\"\"\r\n\r\n2,plain,\r\n\n3,\"\",\"a,b,c\"\r\n4,x,y",
    );
    write(
        dir.path(),
        "r.csv",
        "id,name,note\r\n5,crlf,last\r\n\r\n\r\n6,, \r\n",
    );
    let expected = vec![
        vec![
            Cell::Int(1),
            Cell::Str("Smith, John".into()),
            Cell::Str("He said \"hi\"".into()),
        ],
        vec![Cell::Int(2), Cell::Str("plain".into()), Cell::Null],
        vec![Cell::Int(3), Cell::Null, Cell::Str("a,b,c".into())],
        vec![Cell::Int(4), Cell::Str("x".into()), Cell::Str("y".into())],
        vec![
            Cell::Int(5),
            Cell::Str("crlf".into()),
            Cell::Str("last".into()),
        ],
        vec![Cell::Int(6), Cell::Null, Cell::Str(" ".into())],
    ];
    for blocksize in [1, 3, 7, 20, 64 << 20] {
        let df = session(2, Mode::Parallel, blocksize)
            .read_csv(glob_of(dir.path()))
            .load()
            .unwrap();
        assert_eq!(df.columns(), vec!["id", "name", "note"]);
        let b = df.compute().unwrap();
        assert_eq!(batch_rows(&b), expected, "blocksize {blocksize}");
        assert_eq!(df.num_rows().unwrap(), 6, "blocksize {blocksize}");
    }
}

#[test]
fn a_byte_order_mark_and_another_delimiter() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bom.csv", "\u{FEFF}a;b\n1;x,y\n2;z\n");
    let df = s()
        .read_csv(p.to_string_lossy())
        .with_delimiter(b';')
        .load()
        .unwrap();
    assert_eq!(df.columns(), vec!["a", "b"]);
    let b = df.compute().unwrap();
    assert_eq!(
        batch_rows(&b),
        vec![
            vec![Cell::Int(1), Cell::Str("x,y".into())],
            vec![Cell::Int(2), Cell::Str("z".into())],
        ]
    );
}

/// A quoted field may hold a line break, and a block may start inside it: the rows
/// must not depend on the block size (they used to be an error, "crosses a block
/// boundary", for every block size that cut the field).
#[test]
fn a_quoted_newline_never_gives_other_rows_for_another_blocksize() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "q.csv", "a,b\n1,\"x\n2,y\"\n3,z\n");
    let right = vec![
        vec![Cell::Int(1), Cell::Str("x\n2,y".into())],
        vec![Cell::Int(3), Cell::Str("z".into())],
    ];
    for blocksize in 1..24 {
        let got = session(1, Mode::Sync, blocksize)
            .read_csv(glob_of(dir.path()))
            .load()
            .and_then(|df| df.compute())
            .unwrap_or_else(|e| panic!("blocksize {blocksize}: {e}"));
        assert_eq!(batch_rows(&got), right, "blocksize {blocksize}");
    }
}

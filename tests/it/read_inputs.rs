//! Inputs a new user brings (issue 14 items 3–5, issue 12's input bounds): quoted
//! line breaks at any block size, CRLF and BOM against the `csv` crate reading the
//! whole file; inferred columns that widen at a late row; `.gz` / `.zst` CSV and JSON
//! lines streamed; over-long lines; TSV, `--delimiter` and sniffing; a 100,000-column
//! header; JSON-lines fields outside the inference sample.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{Array, Float64Array, StringArray};
use arrow::datatypes::DataType;
use outcore::agg::sum;
use outcore::scheduler::Mode;
use outcore::{Error, Session};
use proptest::prelude::*;

use crate::common::*;

fn write(dir: &Path, name: &str, body: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 1).unwrap()
}

fn assert_contains(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message does not contain {p:?}:\n{msg}");
    }
}

fn outcore_bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_outcore"))
        .args(args)
        .output()
        .expect("the outcore binary runs")
}

/// Every cell as text (`None` for an empty field), row by row, the way the `csv`
/// crate reads the whole file: the naive reference.
fn reference(bytes: &[u8]) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut r = ::csv::ReaderBuilder::new().from_reader(bytes);
    let header = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|rec| {
            rec.unwrap()
                .iter()
                .map(|f| (!f.is_empty()).then(|| f.to_string()))
                .collect()
        })
        .collect();
    (header, rows)
}

/// The frame's rows as text, every column declared a string.
fn read_as_text(
    session: &Session,
    pattern: &str,
    columns: &[String],
) -> outcore::Result<Vec<Vec<Option<String>>>> {
    let mut reader = session.read_csv(pattern);
    for c in columns {
        reader = reader.with_dtype(c, DataType::Utf8);
    }
    let batch = reader.load()?.compute()?;
    let cols: Vec<&StringArray> = (0..batch.num_columns())
        .map(|i| {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
        })
        .collect();
    Ok((0..batch.num_rows())
        .map(|r| {
            cols.iter()
                .map(|c| c.is_valid(r).then(|| c.value(r).to_string()))
                .collect()
        })
        .collect())
}

/// A field: plain, or quoted holding commas, doubled quotes, LF and CRLF.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9]{0,6}",
        2 => proptest::collection::vec(
            prop_oneof![
                Just("a".to_string()),
                Just(",".to_string()),
                Just("\"\"".to_string()),
                Just("\n".to_string()),
                Just("\r\n".to_string()),
                Just(" x".to_string()),
                "[0-9]{1,40}",
            ],
            0..8
        )
        .prop_map(|parts| format!("\"{}\"", parts.concat())),
    ]
}

/// Block sizes spread over 1 byte ..= 1 MiB on a log scale.
fn blocksize() -> impl Strategy<Value = u64> {
    (0u32..=20, any::<u64>()).prop_map(|(e, jitter)| {
        let base = 1u64 << e;
        if e == 20 {
            base
        } else {
            base + jitter % base
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// issue 14: quoted fields holding line breaks made "crosses a block boundary"
    /// errors, at any file size. Now every block finds where its records start,
    /// whatever the block size, line ends (LF or CRLF) and byte-order mark, and the
    /// rows equal the `csv` crate's reading of the whole file.
    #[test]
    fn issue_14_quoted_line_breaks_crlf_and_bom_read_right_at_any_blocksize(
        rows in proptest::collection::vec(proptest::collection::vec(field(), 3), 0..40),
        crlf in any::<bool>(),
        bom in any::<bool>(),
        trailing_newline in any::<bool>(),
        bs in blocksize(),
        parallel in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        if bom {
            text.push('\u{FEFF}');
        }
        text.push_str("a,b,c");
        for r in &rows {
            text.push_str(eol);
            // A row of three empty fields would be a blank line of two commas: fine.
            text.push_str(&r.join(","));
        }
        if trailing_newline {
            text.push_str(eol);
        }
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "q.csv", &text);
        let (header, expected) = reference(text.as_bytes());
        let mode = if parallel { Mode::Parallel } else { Mode::Sync };
        let got = read_as_text(&session(2, mode, bs), &glob_of(dir.path()), &header).unwrap();
        prop_assert_eq!(got, expected, "blocksize {}", bs);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Issue 16: the tokenizer classifies 64 bytes at a time (delimiters and line
    /// ends as bit masks). Unquoted rows whose fields and lines straddle those
    /// chunks anywhere, blank lines, CRLF, a last line without its end, a projection
    /// of some columns and non-ASCII text read as the `csv` crate reads the file.
    #[test]
    fn issue_16_unquoted_rows_across_64_byte_chunks_read_as_the_csv_crate(
        rows in proptest::collection::vec(
            proptest::collection::vec("[a-z0-9é]{0,70}", 4), 0..60),
        blanks in proptest::collection::vec(any::<bool>(), 60),
        crlf in any::<bool>(),
        trailing_newline in any::<bool>(),
        bs in blocksize(),
        parallel in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = String::from("a,b,c,d");
        for (i, r) in rows.iter().enumerate() {
            text.push_str(eol);
            if blanks[i] {
                text.push_str(eol);
            }
            text.push_str(&r.join(","));
        }
        if trailing_newline {
            text.push_str(eol);
        }
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "p.csv", &text);
        let (header, expected) = reference(text.as_bytes());
        let mode = if parallel { Mode::Parallel } else { Mode::Sync };
        let s = session(2, mode, bs);
        let got = read_as_text(&s, &glob_of(dir.path()), &header).unwrap();
        prop_assert_eq!(&got, &expected, "blocksize {}", bs);
        // Only some columns: the others are skipped, not copied.
        let frame = s
            .read_csv(glob_of(dir.path()))
            .with_dtype("d", DataType::Utf8)
            .with_dtype("b", DataType::Utf8)
            .load()
            .unwrap();
        let batch = frame.select(&["d", "b"]).unwrap().compute().unwrap();
        let col = |i: usize| {
            let a = batch.column(i).as_any().downcast_ref::<StringArray>().unwrap();
            (0..a.len()).map(|r| a.is_valid(r).then(|| a.value(r).to_string())).collect::<Vec<_>>()
        };
        let want = |c: usize| expected.iter().map(|r| r[c].clone()).collect::<Vec<_>>();
        prop_assert_eq!(col(0), want(3));
        prop_assert_eq!(col(1), want(1));
    }
}

/// A quoted field larger than many blocks (so whole blocks lie inside it, with no
/// quote of their own) and a 400 KB file whose quoted fields hold line breaks (the
/// issue's case: inference failed even with a 1 GB block).
#[test]
fn quoted_fields_longer_than_blocks_and_the_400kb_file_of_the_issue() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("id,note\n");
    for i in 0..8000 {
        if i == 10 {
            let big = "line\n".repeat(2000);
            text.push_str(&format!("{i},\"{big}\"\n"));
        } else if i % 3 == 0 {
            text.push_str(&format!("{i},\"first\nsecond, \"\"quoted\"\"\"\n"));
        } else {
            text.push_str(&format!("{i},plain\n"));
        }
    }
    assert!(text.len() > 100_000);
    write(dir.path(), "n.csv", &text);
    let (header, expected) = reference(text.as_bytes());
    for bs in [100, 4096, 1 << 30] {
        for mode in [Mode::Sync, Mode::Parallel] {
            let got = read_as_text(&session(2, mode, bs), &glob_of(dir.path()), &header)
                .unwrap_or_else(|e| panic!("blocksize {bs}: {e}"));
            assert_eq!(got.len(), expected.len(), "blocksize {bs}");
            assert!(got == expected, "blocksize {bs}: rows differ");
        }
        // Inferred types too: the id column is whole numbers.
        let df = session(2, Mode::Parallel, bs)
            .read_csv(glob_of(dir.path()))
            .load()
            .unwrap();
        assert_eq!(df.schema().field(0).data_type(), &DataType::Int64);
        assert_eq!(df.num_rows().unwrap(), 8000);
    }
}

/// An int column whose value at row 290,000 is `0.5`: the first run stops with a
/// widening naming column, file and line; `run_widening` reads the column as float
/// and redoes the work, and the sum is right. `x` widens to text.
#[test]
fn issue_14_an_inferred_int_column_widens_at_a_late_row() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 300_000usize;
    // Beyond both inference samples (the start and the middle of the file).
    let bad_row = 290_000usize;
    let mut body = String::from("k,v\n");
    for i in 0..rows {
        if i == bad_row {
            body.push_str("1,0.5\n");
        } else {
            body.push_str(&format!("1,{}\n", i % 7));
        }
    }
    let path = write(dir.path(), "late.csv", &body);
    let expected: f64 = (0..rows)
        .filter(|&i| i != bad_row)
        .map(|i| (i % 7) as f64)
        .sum::<f64>()
        + 0.5;
    for (bs, mode) in [(256 << 10, Mode::Parallel), (64 << 20, Mode::Sync)] {
        let session = session(2, mode, bs);
        let pattern = glob_of(dir.path());
        let query = || {
            session
                .read_csv(&pattern)
                .load()?
                .agg(&[sum("v")])?
                .compute()
        };
        let err = query().unwrap_err();
        let Error::Widen(w) = err.root() else {
            panic!("expected a widening, got {err}")
        };
        assert_eq!(w.at.path, path);
        assert_eq!(w.at.line, bad_row as u64 + 2);
        assert_eq!(
            (w.column.as_str(), &w.from, &w.to),
            ("v", &DataType::Int64, &DataType::Float64)
        );
        assert_contains(
            &err.to_string(),
            &[
                &format!("late.csv:{}", bad_row + 2),
                "\"0.5\"",
                "--dtype v=float64",
            ],
        );
        let answer = session.run_widening(query).unwrap();
        let got = answer
            .column(0)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .value(0);
        assert!(close(got, expected), "{got} != {expected}");
        // The session remembers: the same glob now infers the wider type.
        let df = session.read_csv(&pattern).load().unwrap();
        assert_eq!(df.schema().field(1).data_type(), &DataType::Float64);
    }
    // A declared type still fails, naming file and line.
    let err = session(1, Mode::Sync, 1 << 20)
        .read_csv(glob_of(dir.path()))
        .with_dtype("v", DataType::Int64)
        .load()
        .unwrap()
        .agg(&[sum("v")])
        .unwrap()
        .compute()
        .unwrap_err()
        .to_string();
    assert_contains(
        &err,
        &[
            &format!("late.csv:{}", bad_row + 2),
            "column \"v\"",
            "expected Int64",
            "\"0.5\"",
        ],
    );

    // The CLI: a note on stderr, the right answer on stdout.
    let out = outcore_bin(&[
        "query",
        &glob_of(dir.path()),
        "--agg",
        "sum(v)",
        "--format",
        "csv",
        "--blocksize",
        "1MB",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_contains(
        &stderr,
        &[
            "note:",
            &format!("late.csv:{}", bad_row + 2),
            "column \"v\"",
            "Float64",
        ],
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let got: f64 = stdout.lines().nth(1).unwrap().parse().unwrap();
    assert!(close(got, expected), "{stdout}");
}

/// Int → text: a word at a late row; the rows print once each even though the
/// query streams partitions and ran twice.
#[test]
fn a_word_in_an_int_column_widens_it_to_text_and_no_row_prints_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::from("k,v\n");
    for i in 0..40_000 {
        body.push_str(&format!(
            "{i},{}\n",
            if i == 30_000 {
                "x".to_string()
            } else {
                i.to_string()
            }
        ));
    }
    write(dir.path(), "w.csv", &body);
    let out = outcore_bin(&[
        "query",
        &glob_of(dir.path()),
        "--format",
        "csv",
        "--blocksize",
        "20000",
        "--scheduler",
        "sync",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_contains(&stderr, &["note:", "w.csv:30002", "column \"v\"", "Utf8"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "k,v");
    assert_eq!(lines.len(), 40_001, "every row once");
    assert_eq!(lines[30_001], "30000,x");
    assert_eq!(lines[39_999], "39998,39998");
}

/// `.csv.gz` and `.csv.zst` give the plain file's rows and types, for piece sizes
/// from a few bytes up, and their errors name the line in the decompressed text.
#[test]
fn issue_14_gzip_and_zstd_csv_round_trip_streamed() {
    let mut text = String::from("id,name,x\n");
    for i in 0..3000 {
        let name = if i % 5 == 0 {
            "\"two\nlines\"".to_string()
        } else {
            format!("n{i}")
        };
        text.push_str(&format!("{i},{name},{}.5\r\n", i % 11));
    }
    let plain = tempfile::tempdir().unwrap();
    write(plain.path(), "p.csv", &text);
    let (header, expected) = reference(text.as_bytes());
    for (ext, bytes) in [
        ("csv.gz", gzip(text.as_bytes())),
        ("csv.zst", zstd(text.as_bytes())),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &format!("c.{ext}"), &bytes);
        let pattern = dir
            .path()
            .join(format!("*.{ext}"))
            .to_string_lossy()
            .into_owned();
        for bs in [7, 1000, 64 << 20] {
            let s = session(2, Mode::Parallel, bs);
            let got = read_as_text(&s, &pattern, &header).unwrap();
            assert!(got == expected, "{ext}, blocksize {bs}: rows differ");
            let df = s.read_csv(&pattern).load().unwrap();
            assert_eq!(df.npartitions(), 1, "one partition per compressed file");
            let types: Vec<DataType> = df
                .schema()
                .fields()
                .iter()
                .map(|f| f.data_type().clone())
                .collect();
            assert_eq!(
                types,
                vec![DataType::Int64, DataType::Utf8, DataType::Float64]
            );
            let b = df.agg(&[sum("x")]).unwrap().compute().unwrap();
            let want: f64 = (0..3000).map(|i| (i % 11) as f64 + 0.5).sum();
            assert_eq!(
                b.column(0)
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .unwrap()
                    .value(0),
                want
            );
        }
        // A bad value under a declared type: the line in the decompressed text.
        let mut bad = text.clone();
        bad.push_str("3000,z,oops\n");
        let compressed = if ext.ends_with("gz") {
            gzip(bad.as_bytes())
        } else {
            zstd(bad.as_bytes())
        };
        write(dir.path(), &format!("c.{ext}"), &compressed);
        let err = session(1, Mode::Sync, 500)
            .read_csv(&pattern)
            .with_dtype("x", DataType::Float64)
            .load()
            .unwrap()
            .compute()
            .unwrap_err()
            .to_string();
        let line = 2 + 3000 + 3000 / 5; // header, rows, and a line more for each quoted break
        assert_contains(
            &err,
            &[&format!("c.{ext}:{line}"), "column \"x\"", "\"oops\""],
        );
    }
}

/// JSON lines: gzip and zstd through bags and frames, streamed in pieces.
#[test]
fn gzip_and_zstd_json_lines_round_trip_streamed() {
    let mut text = String::new();
    for i in 0..2000 {
        text.push_str(&format!("{{\"a\": {i}, \"s\": \"v{}\"}}\n", i % 3));
    }
    for (ext, bytes) in [
        ("jsonl.gz", gzip(text.as_bytes())),
        ("jsonl.zst", zstd(text.as_bytes())),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &format!("j.{ext}"), &bytes);
        let pattern = dir
            .path()
            .join(format!("*.{ext}"))
            .to_string_lossy()
            .into_owned();
        for bs in [10, 1 << 20] {
            let s = session(2, Mode::Parallel, bs);
            assert_eq!(s.read_json(&pattern).load().unwrap().count().unwrap(), 2000);
            let df = s.read_json_frame(&pattern).load().unwrap();
            let b = df.agg(&[sum("a")]).unwrap().compute().unwrap();
            assert_eq!(
                array_cells(b.column(0).as_ref()),
                vec![Cell::Int(1999 * 2000 / 2)]
            );
        }
        // Errors name the line of the decompressed text.
        let bad = format!("{text}{{\"a\": 1, \n");
        let compressed = if ext.ends_with("gz") {
            gzip(bad.as_bytes())
        } else {
            zstd(bad.as_bytes())
        };
        write(dir.path(), &format!("j.{ext}"), &compressed);
        let err = session(1, Mode::Sync, 100)
            .read_json(&pattern)
            .load()
            .unwrap()
            .count()
            .unwrap_err()
            .to_string();
        assert_contains(&err, &[&format!("j.{ext}:2001"), "not valid JSON"]);
    }
}

/// issue 12: a line longer than the limit is an error naming file and line, at any
/// block size, plain or compressed, not an allocation; CLI and API.
#[test]
fn issue_12_a_csv_line_longer_than_max_line_bytes_is_an_error_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("a,b\n1,x\n2,{}\n3,y\n", "z".repeat(5000));
    write(dir.path(), "long.csv", &text);
    let gz = tempfile::tempdir().unwrap();
    write(gz.path(), "long.csv.gz", gzip(text.as_bytes()));
    for pattern in [
        glob_of(dir.path()),
        gz.path().join("*.gz").to_string_lossy().into_owned(),
    ] {
        for bs in [1, 100, 1 << 20] {
            let err = session(1, Mode::Sync, bs)
                .read_csv(&pattern)
                .with_dtype("b", DataType::Utf8)
                .with_max_line_bytes(1000)
                .load()
                .and_then(|df| df.compute())
                .unwrap_err()
                .to_string();
            assert_contains(
                &err,
                &[
                    "long.csv",
                    ":3",
                    "longer than the limit of 1000 bytes",
                    "--max-line-bytes",
                ],
            );
        }
        // Within the limit, the same file reads.
        let n = session(1, Mode::Sync, 100)
            .read_csv(&pattern)
            .with_max_line_bytes(6000)
            .load()
            .unwrap()
            .num_rows()
            .unwrap();
        assert_eq!(n, 3);
    }
    // An unclosed quote runs to the end of the file: the limit stops it too.
    let open = tempfile::tempdir().unwrap();
    let mut text = String::from("a,b\n1,\"open\n");
    for i in 0..2000 {
        text.push_str(&format!("{i},x\n"));
    }
    write(open.path(), "open.csv", &text);
    let out = outcore_bin(&[
        "query",
        &glob_of(open.path()),
        "--max-line-bytes",
        "1000",
        "--blocksize",
        "256",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_contains(
        &stderr,
        &[
            "open.csv:2",
            "longer than the limit of 1000 bytes",
            "quote left open",
        ],
    );
}

/// `.tsv` reads as tab-separated; `;` and `|` are sniffed; `--delimiter` overrides.
#[test]
fn tsv_sniffing_and_the_delimiter_option() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = write(dir.path(), "t.tsv", "a\tb\tc\n1\tx,y\t2.5\n3\tz\t\n");
    let df = Session::new()
        .unwrap()
        .read_csv(tsv.to_string_lossy())
        .load()
        .unwrap();
    assert_eq!(df.columns(), vec!["a", "b", "c"]);
    assert_eq!(
        batch_rows(&df.compute().unwrap()),
        vec![
            vec![Cell::Int(1), Cell::Str("x,y".into()), Cell::Float(2.5)],
            vec![Cell::Int(3), Cell::Str("z".into()), Cell::Null],
        ]
    );
    for (name, d) in [("semi.csv", ';'), ("pipe.txt", '|')] {
        let p = write(dir.path(), name, format!("a{d}b\n1{d}\"q{d}r\"\n2{d}s\n"));
        let df = Session::new()
            .unwrap()
            .read_csv(p.to_string_lossy())
            .load()
            .unwrap();
        assert_eq!(df.columns(), vec!["a", "b"], "{name}");
        assert_eq!(
            batch_rows(&df.compute().unwrap())[0],
            vec![Cell::Int(1), Cell::Str(format!("q{d}r"))]
        );
    }
    // A one-column file with commas in its text is not split by sniffing.
    let one = write(dir.path(), "one.csv", "text\nhello\nworld\n");
    assert_eq!(
        Session::new()
            .unwrap()
            .read_csv(one.to_string_lossy())
            .load()
            .unwrap()
            .columns(),
        vec!["text"]
    );
    // The CLI: sniffed, and forced.
    let semi = dir.path().join("semi.csv").to_string_lossy().into_owned();
    let out = outcore_bin(&["query", &semi, "--format", "csv"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "a,b\n1,q;r\n2,s\n");
    let out = outcore_bin(&["query", &semi, "--format", "csv", "--delimiter", ","]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "a;b\n\"1;\"\"q;r\"\"\"\n2;s\n"
    );
    let out = outcore_bin(&[
        "query",
        &tsv.to_string_lossy(),
        "--format",
        "csv",
        "--delimiter",
        "tab",
        "--select",
        "b",
    ]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "b\n\"x,y\"\nz\n");
}

/// issue 12: a header of 100,000 columns, most of one repeated name, reads in
/// linear time (the old de-duplication was quadratic) and names them as pandas.
#[test]
fn issue_12_a_header_of_100000_columns_with_repeated_names() {
    let n = 100_000;
    let mut names: Vec<String> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                "a".into()
            } else {
                format!("c{i}")
            }
        })
        .collect();
    names[1] = "a.1".into(); // a name that a suffix would also make
    let header = names.join(",");
    let row = vec!["1"; n].join(",");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "wide.csv", format!("{header}\n{row}\n"));
    let df = Session::new()
        .unwrap()
        .read_csv(glob_of(dir.path()))
        .load()
        .unwrap();
    let cols = df.columns();
    assert_eq!(cols.len(), n);
    assert_eq!(&cols[..4], &["a", "a.1", "a.2", "c3"]);
    assert_eq!(cols[4], "a.3");
    let unique: std::collections::HashSet<&String> = cols.iter().collect();
    assert_eq!(unique.len(), n);
    let b = df.select(&["c3", "a.3"]).unwrap().compute().unwrap();
    assert_eq!(batch_rows(&b), vec![vec![Cell::Int(1), Cell::Int(1)]]);
}

/// issue 14: in 20,000 JSON lines, line 10,000 alone has `"extra"` (outside the
/// 1,000-line sample): printing every column is an error naming the file, line and
/// field, not a silent drop; a query that reads other columns is unaffected. A type
/// change at line 10,000 is reported at line 10,000, not line 1.
#[test]
fn issue_14_json_fields_outside_the_sample_are_never_dropped_silently() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 1..=20_000 {
        if i == 10_000 {
            text.push_str(&format!("{{\"a\": {i}, \"extra\": 7}}\n"));
        } else {
            text.push_str(&format!("{{\"a\": {i}}}\n"));
        }
    }
    let p = write(dir.path(), "x.jsonl", &text);
    let pattern = p.to_string_lossy().into_owned();
    for bs in [4096, 1 << 20] {
        let s = session(2, Mode::Parallel, bs);
        let err = s
            .read_json_frame(&pattern)
            .load()
            .unwrap()
            .compute()
            .unwrap_err()
            .to_string();
        assert_contains(&err, &["x.jsonl:10000", "field \"extra\"", "hint:"]);
        let b = s
            .read_json_frame(&pattern)
            .load()
            .unwrap()
            .agg(&[sum("a")])
            .unwrap()
            .compute()
            .unwrap();
        assert_eq!(
            array_cells(b.column(0).as_ref()),
            vec![Cell::Int(20_000 * 20_001 / 2)]
        );
        // Sampling more lines finds it.
        let df = s
            .read_json_frame(&pattern)
            .with_sample_lines(20_000)
            .load()
            .unwrap();
        assert_eq!(df.columns(), vec!["a", "extra"]);
        assert_eq!(df.num_rows().unwrap(), 20_000);
    }
    let out = outcore_bin(&["query", &pattern, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        &["x.jsonl:10000", "\"extra\"", "--sample-lines"],
    );
    let out = outcore_bin(&[
        "query",
        &pattern,
        "--format",
        "csv",
        "--sample-lines",
        "20000",
        "--filter",
        "extra == 7",
    ]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "a,extra\n10000,7\n");

    let typed = text.replace("{\"a\": 10000, \"extra\": 7}", "{\"a\": \"ten thousand\"}");
    let p = write(dir.path(), "t.jsonl", &typed);
    let err = session(1, Mode::Sync, 1 << 20)
        .read_json_frame(p.to_string_lossy())
        .load()
        .unwrap()
        .agg(&[sum("a")])
        .unwrap()
        .compute()
        .unwrap_err()
        .to_string();
    assert_contains(&err, &["t.jsonl:10000", "ten thousand"]);
}

/// A block that starts inside a quoted field first guesses "outside", and then the
/// closing quote looks like an opening one, so the record seems to run to the end of
/// the file: the reader must check its guess before reporting an over-long line.
#[test]
fn a_wrong_quote_guess_is_not_reported_as_an_over_long_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("a,b\n1,\"xx\nyy\nzz\"\n");
    for i in 0..1000 {
        text.push_str(&format!("{i},q\n"));
    }
    write(dir.path(), "g.csv", &text);
    let (header, expected) = reference(text.as_bytes());
    for bs in [6, 8, 11, 13] {
        let s = session(1, Mode::Sync, bs);
        let mut reader = s.read_csv(glob_of(dir.path())).with_max_line_bytes(100);
        for c in &header {
            reader = reader.with_dtype(c, DataType::Utf8);
        }
        let got = reader
            .load()
            .unwrap()
            .compute()
            .unwrap_or_else(|e| panic!("blocksize {bs}: {e}"));
        assert_eq!(got.num_rows(), expected.len(), "blocksize {bs}");
    }
}

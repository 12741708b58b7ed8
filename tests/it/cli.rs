//! The `outcore` binary: `query` (groupby, filter, head, sort, CSV and JSON output)
//! against the naive reference, its error reports and exit codes, and `datasets`.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::common::*;

/// Runs `outcore args`, asserts it failed with exit code 1, returns stderr.
fn fails(args: &[&str]) -> String {
    let out = outcore(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "outcore {args:?} should fail with 1; stdout:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// Rows `name,x,y` (a few names null, a few x null), written into 3 files.
fn cli_data(dir: &Path, seed: u64, rows: usize) -> Table {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut t = Table::new(&["name", "x", "y"]);
    for i in 0..rows {
        let name = if i > 0 && rng.random_bool(0.05) {
            Cell::Null
        } else {
            Cell::Str(NAMES[rng.random_range(0..NAMES.len())].to_string())
        };
        let x = if i > 0 && rng.random_bool(0.1) {
            Cell::Null
        } else {
            Cell::Float(rng.random_range(-400i64..=400) as f64 / 4.0)
        };
        let y = Cell::Float(rng.random_range(-400i64..=400) as f64 / 4.0);
        t.rows.push(vec![name, x, y]);
    }
    t.write_files(dir, 3);
    t
}

/// Parses CSV output into a header and rows of cells: empty is null, numbers are
/// ints or floats, anything else text.
fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<Cell>>) {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|rec| {
            rec.unwrap()
                .iter()
                .map(|f| {
                    if f.is_empty() {
                        Cell::Null
                    } else if let Ok(i) = f.parse::<i64>() {
                        Cell::Int(i)
                    } else if let Ok(x) = f.parse::<f64>() {
                        Cell::Float(x)
                    } else {
                        Cell::Str(f.to_string())
                    }
                })
                .collect()
        })
        .collect();
    (header, rows)
}

fn assert_rows(got: &[Vec<Cell>], expected: &[Vec<Cell>], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: row count\n{got:?}");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert_eq!(g.len(), e.len(), "{what}: row {i} width");
        for (a, b) in g.iter().zip(e) {
            assert!(
                cell_matches(a, b),
                "{what}: row {i}: got {g:?}, expected {e:?}"
            );
        }
    }
}

/// The reference answer of a groupby of `t` by `key`: one row per group (sorted),
/// the key then each aggregation.
fn ref_rows(t: &Table, key: &str, aggs: &[Agg]) -> Vec<Vec<Cell>> {
    ref_groups(t, &[key], false)
        .into_iter()
        .map(|(k, rows)| {
            let mut row = k;
            row.extend(aggs.iter().map(|a| ref_agg(t, &rows, a.0, a.1)));
            row
        })
        .collect()
}

#[test]
fn query_groupby_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let t = cli_data(dir.path(), 1, 1200);
    let glob = glob_of(dir.path());
    for extra in [
        &[][..],
        &["--blocksize", "500", "--threads", "2"],
        &["--scheduler", "sync", "--blocksize", "1KiB"],
    ] {
        let mut args = vec![
            "query",
            &glob,
            "--groupby",
            "name",
            "--agg",
            "sum(x), count(x)",
            "--format",
            "csv",
        ];
        args.extend_from_slice(extra);
        let (header, rows) = parse_csv(&ok(&args));
        assert_eq!(header, ["name", "sum(x)", "count(x)"]);
        let expected = ref_rows(&t, "name", &[("sum", Some("x")), ("count", Some("x"))]);
        assert_rows(&rows, &expected, &format!("{extra:?}"));
    }
}

/// The rows of boxed tables (Arrow's pretty format), without their header lines:
/// the cells of each `| a | b |` line, trimmed; and how many tables there were.
fn parse_tables(text: &str, header: &[&str]) -> (Vec<Vec<String>>, usize) {
    let mut rows = Vec::new();
    let mut tables = 0;
    for line in text.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        if cells == header {
            tables += 1;
        } else {
            rows.push(cells);
        }
    }
    (rows, tables)
}

#[test]
fn query_prints_a_large_answer_as_tables_partition_by_partition() {
    let dir = tempfile::tempdir().unwrap();
    // k: 2000 keys over 3000 rows in 3 files; v: small integers.
    let mut expected: std::collections::BTreeMap<i64, i64> = Default::default();
    for f in 0..3 {
        let mut text = String::from("k,v\n");
        for i in f * 1000..(f + 1) * 1000 {
            let (k, v) = ((i * 7919) % 2000, i % 13);
            *expected.entry(k).or_default() += v;
            text.push_str(&format!("{k},{v}\n"));
        }
        std::fs::write(dir.path().join(format!("p{f}.csv")), text).unwrap();
    }
    let glob = glob_of(dir.path());
    let query = [
        "query",
        &glob,
        "--groupby",
        "k",
        "--agg",
        "sum(v)",
        "--split-out",
        "3",
    ];
    // Every row of the three partitions, drawn a partition (and at most 1024
    // rows) at a time: never the whole answer gathered into one table.
    let (rows, tables) = parse_tables(&ok(&query), &["k", "sum(v)"]);
    assert!(tables >= 3, "{tables} tables for three partitions");
    let mut got: Vec<(i64, i64)> = rows
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect();
    got.sort();
    assert_eq!(got, expected.into_iter().collect::<Vec<_>>());
    // No rows at all: one empty table, not one per empty partition.
    let empty = ok(&[&query[..], &["--filter", "v > 1000"]].concat());
    let (rows, tables) = parse_tables(&empty, &["k", "sum(v)"]);
    assert_eq!((rows.len(), tables), (0, 1), "{empty}");
}

/// A partition of 70,000 rows is formatted as CSV in slices of 16,384 rows, a
/// thread's worth at a time: every row once, in order, under one header.
#[test]
fn query_writes_a_partition_of_many_slices_as_csv_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("k,v\n");
    for i in 0..70_000 {
        text.push_str(&format!("{i},{}\n", i % 13));
    }
    std::fs::write(dir.path().join("one.csv"), &text).unwrap();
    let glob = glob_of(dir.path());
    let out = ok(&[
        "query",
        &glob,
        "--filter",
        "v >= 0",
        "--format",
        "csv",
        "--threads",
        "2",
        "--blocksize",
        "64MB",
    ]);
    assert_eq!(out, text);
}

#[test]
fn query_filter_with_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let t = cli_data(dir.path(), 2, 1000);
    let glob = glob_of(dir.path());
    let out = ok(&[
        "query",
        &glob,
        "--filter",
        "y > 0 and name != 'Bob'",
        "--groupby",
        "name",
        "--agg",
        "mean(x) as m, size(), max(y)",
        "--format",
        "csv",
    ]);
    let (header, rows) = parse_csv(&out);
    assert_eq!(header, ["name", "m", "size", "max(y)"]);
    let f = t.filter(|t, r| {
        and3(
            cmp_num(t.get(r, "y"), |y| y > 0.0),
            t.get(r, "name").str().map(|n| n != "Bob"),
        )
    });
    let expected = ref_rows(
        &f,
        "name",
        &[("mean", Some("x")), ("size", None), ("max", Some("y"))],
    );
    assert!(expected.iter().all(|r| r[0] != Cell::Str("Bob".into())));
    assert_rows(&rows, &expected, "filtered groupby");
}

#[test]
fn query_head_sort_select() {
    let dir = tempfile::tempdir().unwrap();
    let t = cli_data(dir.path(), 3, 900);
    let glob = glob_of(dir.path());

    // --head without grouping: the first rows in file order, every column.
    let (header, rows) = parse_csv(&ok(&[
        "query",
        &glob,
        "--head",
        "3",
        "--format",
        "csv",
        "--blocksize",
        "64",
    ]));
    assert_eq!(header, ["name", "x", "y"]);
    assert_rows(&rows, &t.rows[..3], "--head 3");

    // --select and --head after a filter.
    let (header, rows) = parse_csv(&ok(&[
        "query",
        &glob,
        "--filter",
        "x is null",
        "--select",
        "y,name",
        "--head",
        "4",
        "--format",
        "csv",
    ]));
    assert_eq!(header, ["y", "name"]);
    let expected: Vec<Vec<Cell>> = t
        .rows
        .iter()
        .filter(|r| r[1].is_null())
        .take(4)
        .map(|r| vec![r[2].clone(), r[0].clone()])
        .collect();
    assert_rows(&rows, &expected, "--select y,name");

    // --sort by a descending aggregate, ties by name.
    let aggs: [Agg; 2] = [("count", Some("x")), ("sum", Some("y"))];
    let (header, rows) = parse_csv(&ok(&[
        "query",
        &glob,
        "--groupby",
        "name",
        "--agg",
        "count(x), sum(y)",
        "--sort",
        "-count(x),name",
        "--format",
        "csv",
    ]));
    assert_eq!(header, ["name", "count(x)", "sum(y)"]);
    let mut expected = ref_rows(&t, "name", &aggs);
    expected.sort_by(|a, b| b[1].cmp(&a[1]).then_with(|| a[0].cmp(&b[0])));
    assert_rows(&rows, &expected, "--sort -count(x),name");

    // --sort alone: the counts do not increase, and the groups are all there.
    let (_, rows) = parse_csv(&ok(&[
        "query",
        &glob,
        "--groupby",
        "name",
        "--agg",
        "count(x), sum(y)",
        "--sort",
        "-count(x)",
        "--format",
        "csv",
    ]));
    assert!(rows.windows(2).all(|w| w[0][1] >= w[1][1]), "{rows:?}");
    let mut sorted = rows.clone();
    sorted.sort();
    let mut reference = ref_rows(&t, "name", &aggs);
    reference.sort();
    assert_rows(&sorted, &reference, "--sort -count(x)");

    // --sort with --head: the top two.
    let (_, rows) = parse_csv(&ok(&[
        "query",
        &glob,
        "--groupby",
        "name",
        "--agg",
        "count(x), sum(y)",
        "--sort",
        "-count(x),name",
        "--head",
        "2",
        "--format",
        "csv",
    ]));
    assert_rows(&rows, &expected[..2], "--sort --head 2");
}

#[test]
fn query_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let t = cli_data(dir.path(), 4, 800);
    let glob = glob_of(dir.path());
    let out = ok(&[
        "query",
        &glob,
        "--groupby",
        "name",
        "--agg",
        "sum(x), count(x), std(y)",
        "--format",
        "json",
    ]);
    let aggs: [Agg; 3] = [("sum", Some("x")), ("count", Some("x")), ("std", Some("y"))];
    let expected = ref_rows(&t, "name", &aggs);
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), expected.len());
    for (line, e) in lines.iter().zip(&expected) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let o = v.as_object().unwrap();
        assert_eq!(o.len(), 4, "{line}");
        assert_eq!(o["name"].as_str(), e[0].str(), "{line}");
        assert!(
            close(o["sum(x)"].as_f64().unwrap(), e[1].num().unwrap()),
            "{line}"
        );
        assert_eq!(Cell::Int(o["count(x)"].as_i64().unwrap()), e[2], "{line}");
        assert!(
            close(o["std(y)"].as_f64().unwrap(), e[3].num().unwrap()),
            "{line}"
        );
    }
}

#[test]
fn query_errors_exit_with_1_and_explain() {
    let dir = tempfile::tempdir().unwrap();
    cli_data(dir.path(), 5, 50);
    let glob = glob_of(dir.path());

    let missing = dir
        .path()
        .join("missing-*.csv")
        .to_string_lossy()
        .into_owned();
    let err = fails(&["query", &missing, "--agg", "size()"]);
    assert!(err.contains("error:") && err.contains(&missing), "{err}");

    let err = fails(&["query", &glob, "--filter", "y > > 0"]);
    assert!(err.contains("invalid expression at character 5"), "{err}");
    assert!(
        err.contains("  y > > 0\n      ^"),
        "caret line missing:\n{err}"
    );

    let err = fails(&["query", &glob, "--groupby", "nope", "--agg", "size()"]);
    assert!(
        err.contains("unknown column \"nope\"; the columns are: name, x, y"),
        "{err}"
    );

    let err = fails(&["query", &glob, "--groupby", "name", "--agg", "mode(x)"]);
    assert!(err.contains("unknown aggregation \"mode\""), "{err}");

    let err = fails(&["query", &glob, "--groupby", "name"]);
    assert!(err.contains("--groupby needs --agg"), "{err}");

    // Sync runs the first block of the first file first: its line 2 has a name.
    let err = fails(&[
        "query",
        &glob,
        "--dtype",
        "name=int64",
        "--agg",
        "count(name)",
        "--scheduler",
        "sync",
    ]);
    assert!(
        err.contains("column \"name\"") && err.contains("Int64") && err.contains("--dtype"),
        "{err}"
    );
    assert!(
        err.contains("part-000.csv:2"),
        "the first data line of the first file:\n{err}"
    );
}

/// Data rows of a CSV file (lines after the header, blank lines left out).
fn data_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn datasets_groupby_writes_the_rows_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g1");
    let out_s = out.to_string_lossy().into_owned();
    let stdout = ok(&[
        "datasets", "groupby", "--rows", "1000", "--k", "10", "--files", "2", "--out", &out_s,
    ]);
    let files: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(files.len(), 2, "{stdout}");
    let mut rows = 0;
    let mut table = Table::new(&["id4", "v1", "v3"]);
    for f in &files {
        let p = Path::new(f);
        assert!(p.starts_with(&out), "{f}");
        assert_eq!(
            std::fs::read_to_string(p).unwrap().lines().next(),
            Some("id1,id2,id3,id4,id5,id6,v1,v2,v3")
        );
        let lines = data_lines(p);
        rows += lines.len();
        for l in lines {
            let f: Vec<&str> = l.split(',').collect();
            table.rows.push(vec![
                Cell::Int(f[3].parse().unwrap()),
                Cell::Int(f[6].parse().unwrap()),
                Cell::Float(f[8].parse().unwrap()),
            ]);
        }
    }
    assert_eq!(rows, 1000);
    let glob = glob_of(&out);
    let (header, got) = parse_csv(&ok(&[
        "query",
        &glob,
        "--groupby",
        "id4",
        "--agg",
        "sum(v1), mean(v3), nunique(v1)",
        "--format",
        "csv",
    ]));
    assert_eq!(header, ["id4", "sum(v1)", "mean(v3)", "nunique(v1)"]);
    let expected = ref_rows(
        &table,
        "id4",
        &[
            ("sum", Some("v1")),
            ("mean", Some("v3")),
            ("nunique", Some("v1")),
        ],
    );
    assert_eq!(expected.len(), 10);
    assert_rows(&got, &expected, "g1 by id4");
}

#[test]
fn datasets_timeseries_writes_a_row_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ts");
    let out_s = out.to_string_lossy().into_owned();
    let stdout = ok(&[
        "datasets",
        "timeseries",
        "--days",
        "1",
        "--freq-seconds",
        "60",
        "--out",
        &out_s,
    ]);
    let files: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(files.len(), 1, "{stdout}");
    let lines = data_lines(Path::new(files[0]));
    assert_eq!(lines.len(), 1440);
    assert!(lines[0].starts_with("2000-01-01 00:00:00,"), "{}", lines[0]);
    assert!(
        lines[1439].starts_with("2000-01-01 23:59:00,"),
        "{}",
        lines[1439]
    );
    let positive_x = lines
        .iter()
        .filter(|l| {
            let f: Vec<&str> = l.split(',').collect();
            f[0] >= "2000-01-01 12:00:00" && f[3].parse::<f64>().unwrap() > 0.0
        })
        .count() as i64;
    let glob = glob_of(&out);
    let (header, got) = parse_csv(&ok(&[
        "query",
        &glob,
        "--parse-dates",
        "timestamp",
        "--filter",
        "timestamp >= '2000-01-01 12:00:00'",
        "--agg",
        "size(), count(x)",
        "--format",
        "csv",
    ]));
    assert_eq!(header, ["size", "count(x)"]);
    assert_eq!(got, vec![vec![Cell::Int(720), Cell::Int(720)]]);
    let (_, got) = parse_csv(&ok(&[
        "query",
        &glob,
        "--parse-dates",
        "timestamp",
        "--filter",
        "timestamp >= '2000-01-01 12:00:00' and x > 0",
        "--agg",
        "size()",
        "--format",
        "csv",
    ]));
    assert_eq!(got, vec![vec![Cell::Int(positive_x)]]);
}

/// Reads the CSV files of `folder` naively (split on commas; the generated data has no
/// quotes) into a table of the columns `columns`, each parsed by its kind:
/// `s` text, `i` integer, `f` float; an empty field is null.
fn read_naive(folder: &Path, columns: &[(&str, char)]) -> Table {
    let mut paths: Vec<_> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    paths.sort();
    let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
    let mut t = Table::new(&names);
    for p in paths {
        let text = std::fs::read_to_string(&p).unwrap();
        let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        let idx: Vec<usize> = names
            .iter()
            .map(|n| header.iter().position(|h| h == n).unwrap())
            .collect();
        for line in data_lines(&p) {
            let f: Vec<&str> = line.split(',').collect();
            t.rows.push(
                idx.iter()
                    .zip(columns)
                    .map(|(&i, (_, kind))| match (f[i], kind) {
                        ("", _) => Cell::Null,
                        (v, 's') => Cell::Str(v.to_string()),
                        (v, 'i') => Cell::Int(v.parse().unwrap()),
                        (v, _) => Cell::Float(v.parse().unwrap()),
                    })
                    .collect(),
            );
        }
    }
    t
}

/// The sample data shipped under `data/` (timeseries and the G1 groupby table)
/// answers like the naive reference over the same files.
#[test]
fn shipped_sample_data() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let ts = data.join("timeseries");
    if ts.is_dir() {
        let t = read_naive(
            &ts,
            &[("timestamp", 's'), ("name", 's'), ("x", 'f'), ("y", 'f')],
        );
        assert!(!t.rows.is_empty());
        let glob = glob_of(&ts);
        let aggs: [Agg; 3] = [("count", Some("x")), ("sum", Some("x")), ("max", Some("y"))];
        let (header, got) = parse_csv(&ok(&[
            "query",
            &glob,
            "--groupby",
            "name",
            "--agg",
            "count(x), sum(x), max(y)",
            "--format",
            "csv",
        ]));
        assert_eq!(header, ["name", "count(x)", "sum(x)", "max(y)"]);
        assert_rows(
            &got,
            &ref_rows(&t, "name", &aggs),
            "data/timeseries by name",
        );
        // Timestamps compare with a literal (the files' text order is time order).
        let later = t
            .rows
            .iter()
            .filter(|r| r[0].str().is_some_and(|s| s >= "2000-01-02 06:00:00"))
            .count() as i64;
        let (_, got) = parse_csv(&ok(&[
            "query",
            &glob,
            "--parse-dates",
            "timestamp",
            "--filter",
            "timestamp >= '2000-01-02 06:00:00'",
            "--agg",
            "size()",
            "--format",
            "csv",
        ]));
        assert_eq!(got, vec![vec![Cell::Int(later)]]);
    }
    let g1 = data.join("groupby");
    if g1.is_dir() {
        let t = read_naive(&g1, &[("id1", 's'), ("id4", 'i'), ("v1", 'i'), ("v3", 'f')]);
        assert!(!t.rows.is_empty());
        let glob = glob_of(&g1);
        let aggs: [Agg; 4] = [
            ("sum", Some("v1")),
            ("mean", Some("v3")),
            ("count", Some("v3")),
            ("nunique", Some("id4")),
        ];
        let (header, got) = parse_csv(&ok(&[
            "query",
            &glob,
            "--groupby",
            "id1",
            "--agg",
            "sum(v1), mean(v3), count(v3), nunique(id4)",
            "--format",
            "csv",
            "--blocksize",
            "8KiB",
        ]));
        assert_eq!(
            header,
            ["id1", "sum(v1)", "mean(v3)", "count(v3)", "nunique(id4)"]
        );
        assert_rows(&got, &ref_rows(&t, "id1", &aggs), "data/groupby by id1");
        let (_, got) = parse_csv(&ok(&["query", &glob, "--agg", "size()", "--format", "csv"]));
        assert_eq!(got, vec![vec![Cell::Int(t.rows.len() as i64)]]);
    }
}

#[test]
fn query_under_a_memory_limit_with_stats_split_out_and_an_out_folder() {
    let dir = tempfile::tempdir().unwrap();
    let t = cli_data(dir.path(), 7, 1500);
    let glob = glob_of(dir.path());
    let spill = tempfile::tempdir().unwrap();
    let spill_dir = spill.path().to_string_lossy().into_owned();
    let expected = ref_rows(&t, "name", &[("sum", Some("x")), ("count", Some("x"))]);

    // Split over 3 partitions, streamed to stdout as CSV with one header.
    let out = outcore(&[
        "query",
        &glob,
        "--groupby",
        "name",
        "--agg",
        "sum(x), count(x)",
        "--format",
        "csv",
        "--split-out",
        "3",
        "--memory-limit",
        "4MiB",
        "--blocksize",
        "2KB",
        "--spill-dir",
        &spill_dir,
        "--stats",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (header, mut rows) = parse_csv(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(header, ["name", "sum(x)", "count(x)"]);
    rows.sort();
    assert_rows(&rows, &expected, "split-out 3 on stdout");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let stats = stderr
        .lines()
        .find(|l| l.starts_with("stats: "))
        .expect("a stats line");
    assert!(
        stats.contains("read ") && stats.contains("shuffled "),
        "{stats}"
    );
    assert!(
        !stats.contains("shuffled 0 B"),
        "split-out shuffled nothing: {stats}"
    );

    // One file per partition in a folder that appears whole.
    let target = dir.path().join("answer");
    let target_s = target.to_string_lossy().into_owned();
    let args = [
        "query",
        &glob,
        "--groupby",
        "name",
        "--agg",
        "sum(x), count(x)",
        "--split-out",
        "4",
        "--out",
        &target_s,
        "--memory-limit",
        "4MiB",
        "--spill-dir",
        &spill_dir,
    ];
    ok(&args);
    let mut files: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    // Empty partitions (a hash partition no name fell into) get no file; the files
    // are numbered from 0 without gaps.
    assert!((1..=4).contains(&files.len()), "{files:?}");
    let numbered: Vec<String> = (0..files.len())
        .map(|i| format!("part-{i:05}.csv"))
        .collect();
    assert_eq!(files, numbered);
    let mut rows = Vec::new();
    for f in &files {
        let (header, r) = parse_csv(&std::fs::read_to_string(target.join(f)).unwrap());
        assert_eq!(header, ["name", "sum(x)", "count(x)"]);
        assert!(!r.is_empty(), "{f} holds only a header");
        rows.extend(r);
    }
    let written = files.len();
    rows.sort();
    assert_rows(&rows, &expected, "split-out 4 into a folder");

    // The folder exists now: refused without --overwrite, and left as it was.
    let err = fails(&args);
    assert!(
        err.contains("already exists") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), written);
    let mut again = args.to_vec();
    again[7] = "2";
    again.push("--overwrite");
    ok(&again);
    let again_files = std::fs::read_dir(&target).unwrap().count();
    assert!((1..=2).contains(&again_files), "{again_files} files");

    // --out naming a plain file is refused before any work, even with
    // --overwrite, and the file is left as it was.
    let file = dir.path().join("answer.out");
    std::fs::write(&file, "kept\n").unwrap();
    let mut onto_file = again.clone();
    let at = onto_file.iter().position(|a| *a == "--out").unwrap() + 1;
    let file_s = file.to_string_lossy().into_owned();
    onto_file[at] = &file_s;
    let err = fails(&onto_file);
    assert!(
        err.contains("is a file") && err.contains(file_s.as_str()),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept\n");

    // A failing query leaves no folder and no partial files behind.
    let broken = dir.path().join("broken");
    let broken_s = broken.to_string_lossy().into_owned();
    let err = fails(&[
        "query",
        &glob,
        "--dtype",
        "x=int64",
        "--blocksize",
        "2KB",
        "--out",
        &broken_s,
        "--spill-dir",
        &spill_dir,
    ]);
    assert!(err.contains("expected Int64"), "{err}");
    assert!(!err.is_empty());
    assert!(!broken.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(
        std::fs::read_dir(spill.path()).unwrap().count(),
        0,
        "spill files left"
    );

    // A limit too small to run anything is refused at start, naming the minimum.
    let err = fails(&[
        "query",
        &glob,
        "--format",
        "csv",
        "--memory-limit",
        "2KB",
        "--spill-dir",
        &spill_dir,
    ]);
    assert!(
        err.contains("memory limit of 2.0 KiB is too small")
            && err.contains("the minimum is 4.0 MiB"),
        "{err}"
    );
    let out = outcore(&["query", &glob, "--memory-limit", "lots"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid size"), "{err}");
}

/// `--join`, `--set-index` and a partitioned `--sort`, against naive answers.
#[test]
fn query_join_set_index_and_sort_across_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let t = cli_data(dir.path(), 41, 600);
    let other = tempfile::tempdir().unwrap();
    std::fs::write(
        other.path().join("names.csv"),
        "name,age,x\nAlice,30,1\nBob,40,2\nZelda,50,3\nNobody,60,4\n",
    )
    .unwrap();
    let glob = glob_of(dir.path());
    let other_glob = glob_of(other.path());
    let ages = [("Alice", 30), ("Bob", 40), ("Zelda", 50)];

    // A left join: every row, `age` where the name is known; `x` clashes.
    let out = ok(&[
        "query",
        &glob,
        "--join",
        &other_glob,
        "--on",
        "name",
        "--how",
        "left",
        "--format",
        "csv",
        "--blocksize",
        "2KB",
    ]);
    let (header, rows) = parse_csv(&out);
    assert_eq!(header, ["name", "x_x", "y", "age", "x_y"]);
    assert_eq!(rows.len(), t.rows.len());
    let mut got: Vec<(Cell, Cell)> = rows.iter().map(|r| (r[0].clone(), r[3].clone())).collect();
    let mut expected: Vec<(Cell, Cell)> = t
        .rows
        .iter()
        .map(|r| {
            let age = ages
                .iter()
                .find(|(n, _)| r[0].str() == Some(*n))
                .map_or(Cell::Null, |(_, a)| Cell::Int(*a));
            (r[0].clone(), age)
        })
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);

    // An inner join then a groupby of the joined rows.
    let out = ok(&[
        "query",
        &glob,
        "--join",
        &other_glob,
        "--on",
        "name",
        "--groupby",
        "age",
        "--agg",
        "size() as n",
        "--format",
        "csv",
    ]);
    let (_, rows) = parse_csv(&out);
    let expected: Vec<Vec<Cell>> = ages
        .iter()
        .map(|(n, a)| {
            let count = t.rows.iter().filter(|r| r[0].str() == Some(*n)).count();
            vec![Cell::Int(*a), Cell::Int(count as i64)]
        })
        .filter(|r| r[1] != Cell::Int(0))
        .collect();
    assert_rows(&rows, &expected, "join then groupby");

    // set_index and a sort across partitions stream rows in order.
    for args in [
        vec!["--set-index", "x"],
        vec!["--sort", "x"],
        vec!["--sort=-y,name"],
    ] {
        let mut cmd = vec![
            "query",
            glob.as_str(),
            "--format",
            "csv",
            "--blocksize",
            "2KB",
        ];
        cmd.extend(args.iter().copied());
        let (_, rows) = parse_csv(&ok(&cmd));
        assert_eq!(rows.len(), t.rows.len(), "{args:?}");
        let key = |r: &Vec<Cell>| -> (Cell, Cell) {
            match args[0] {
                "--sort=-y,name" => (Cell::Float(-r[2].num().unwrap()), r[0].clone()),
                _ => (r[1].clone(), Cell::Null),
            }
        };
        let keys: Vec<_> = rows.iter().map(key).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "{args:?}: not in order");
    }

    let e = fails(&["query", &glob, "--join", &other_glob]);
    assert!(e.contains("--on"), "{e}");
    let e = fails(&[
        "query",
        &glob,
        "--join",
        &other_glob,
        "--on",
        "name",
        "--how",
        "sideways",
    ]);
    assert!(e.contains("inner, left, right or outer"), "{e}");
    let e = fails(&["query", &glob, "--set-index", "y", "--sorted"]);
    assert!(e.contains("declared sorted"), "{e}");
}

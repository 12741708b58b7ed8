//! Faults and limits (issue 14, and issue 12's bounded inputs): exact floats in bags,
//! files that change under a query, cleanup after SIGTERM / a second Ctrl-C /
//! SIGKILL, `--overwrite` without debris, datasets that many readers share,
//! resample over long spans, and counts with limits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Float64Type;
use datafusion_common::ScalarValue;
use outcore::agg::{AggFunc, AggSpec};
use outcore::frame::parquet::WriteOptions;
use outcore::scheduler::Mode;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::common::*;

/// Random finite floats over the whole range of exponents (from random bits).
fn random_floats(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let x = f64::from_bits(rng.random::<u64>());
        if x.is_finite() {
            // Every other one a "decimal-looking" value, as data files hold.
            out.push(if out.len() % 2 == 0 {
                x
            } else {
                rng.random_range(-1e6..1e6)
            });
        }
    }
    out
}

fn parse_floats(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| {
            l.trim()
                .parse::<f64>()
                .unwrap_or_else(|e| panic!("{l:?}: {e}"))
                .to_bits()
        })
        .collect()
}

/// Issue 14: serde_json without `float_roundtrip` changed 9 % of random floats in
/// their last digit (`bag --pluck`), and more through the shuffle (`--distinct`),
/// while the frame reader read them exactly.
#[test]
fn issue_14_bag_floats_are_exact_through_parse_spill_and_shuffle() {
    let dir = tempfile::tempdir().unwrap();
    let xs = random_floats(14, 20_000);
    let file = dir.path().join("f.jsonl");
    let text: String = xs.iter().map(|x| format!("{{\"x\": {x:?}}}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let f = file.to_str().unwrap();
    let spill = dir.path().join("spill");
    let small = [
        "--blocksize",
        "64KB",
        "--memory-limit",
        "8MB",
        "--spill-dir",
        spill.to_str().unwrap(),
    ];
    let expect: Vec<u64> = xs.iter().map(|x| x.to_bits()).collect();

    let mut args = vec!["bag", f, "--pluck", "x"];
    args.extend(small);
    let got = parse_floats(&ok(&args));
    let wrong = got.iter().zip(&expect).filter(|(a, b)| a != b).count();
    assert_eq!(
        (got.len(), wrong),
        (expect.len(), 0),
        "values changed by the bag"
    );

    let mut args = vec!["bag", f, "--pluck", "x", "--distinct", "--split-out", "4"];
    args.extend(small);
    let mut got = parse_floats(&ok(&args));
    got.sort_unstable();
    let mut distinct = expect.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(got.len(), distinct.len());
    assert!(got == distinct, "values changed through the shuffle");

    // The frame reader reads the same values.
    let s = session(2, Mode::Parallel, 64 << 10);
    let frame = s.read_json_frame(f).load().unwrap().compute().unwrap();
    let col = frame
        .column_by_name("x")
        .unwrap()
        .as_primitive::<Float64Type>();
    let from_frame: Vec<u64> = col.values().iter().map(|x| x.to_bits()).collect();
    assert!(from_frame == expect, "the frame reader changed values");
    // And the bag API, through a spilled persist.
    let bag = s
        .read_json(f)
        .load()
        .unwrap()
        .pluck("x")
        .unwrap()
        .compute()
        .unwrap();
    let from_bag: Vec<u64> = bag.iter().map(|v| v.as_f64().unwrap().to_bits()).collect();
    assert!(from_bag == expect, "the bag API changed values");
}

fn write_rows(path: &Path, rows: usize) {
    let mut text = String::from("id,x\n");
    for i in 0..rows {
        text.push_str(&format!("{i},{}\n", i % 97));
    }
    std::fs::write(path, text).unwrap();
}

/// Issue 14: a file cut while a query ran lost rows silently (a short read was
/// taken as the end of the block); a file rewritten in place was read as a mix.
#[test]
fn issue_14_a_file_changed_after_planning_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.csv");
    for mode in [Mode::Sync, Mode::Parallel] {
        // Cut to half.
        write_rows(&path, 10_000);
        let s = session(2, mode, 4 << 10);
        let df = s.read_csv(path.to_str().unwrap()).load().unwrap();
        assert_eq!(df.num_rows().unwrap(), 10_000);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_len(len / 2).unwrap();
        drop(f);
        let err = df.num_rows().unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "{}: the file changed after the query was planned (",
                path.display()
            )) && err.contains(&format!("{len} bytes"))
                && err.contains("run the query again"),
            "{err}"
        );

        // Same size, other contents, a later modification time.
        write_rows(&path, 10_000);
        let df = s.read_csv(path.to_str().unwrap()).load().unwrap();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace(",1\n", ",7\n");
        std::fs::write(&path, text).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(std::time::SystemTime::now() + Duration::from_secs(10))
            .unwrap();
        drop(f);
        let err = df.num_rows().unwrap_err().to_string();
        assert!(
            err.contains(&format!("{}: the file changed", path.display()))
                && err.contains("it was modified at"),
            "{err}"
        );
    }

    // JSON lines, through a bag.
    let jpath = dir.path().join("r.jsonl");
    let lines: String = (0..5000).map(|i| format!("{{\"i\": {i}}}\n")).collect();
    std::fs::write(&jpath, &lines).unwrap();
    let s = session(2, Mode::Parallel, 4 << 10);
    let bag = s.read_json(jpath.to_str().unwrap()).load().unwrap();
    std::fs::write(&jpath, &lines[..lines.len() / 3]).unwrap();
    let err = bag.count().unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "{}: the file changed after the query was planned",
            jpath.display()
        )),
        "{err}"
    );
}

/// Folders under `dir` that a run made (spill, shuffle) and still exist.
fn work_folders(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.retain(|p| {
        let n = p.file_name().unwrap().to_string_lossy();
        n.starts_with("outcore-spill-") || n.starts_with("outcore-shuffle-")
    });
    out.sort();
    out
}

/// Unsorted timestamps, so `--index t` shuffles them.
fn write_times(path: &Path, rows: usize) {
    let mut rng = Pcg64Mcg::seed_from_u64(7);
    let mut text = String::from("t,x\n");
    for i in 0..rows {
        let secs: i64 = rng.random_range(0..86_400);
        text.push_str(&format!("{},{}\n", format_ts(ts(secs)), i % 1000));
    }
    std::fs::write(path, text).unwrap();
}

/// Starts a set_index that shuffles and spills for a while, and waits until it has a
/// shuffle folder holding its lock file.
fn start_long_run(data: &Path, spill: &Path, out: &Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_outcore"))
        .args([
            "persist",
            data.to_str().unwrap(),
            "--index",
            "t",
            "--out",
            out.to_str().unwrap(),
            "--blocksize",
            "32KB",
            "--memory-limit",
            "4MiB",
            "--threads",
            "1",
            "--spill-dir",
            spill.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let locked = work_folders(spill)
            .iter()
            .any(|p| p.join("outcore.lock").exists() && p.to_string_lossy().contains("shuffle"));
        if locked {
            return child;
        }
        if started.elapsed() > Duration::from_secs(120) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let status = child.wait().unwrap();
            panic!("no shuffle folder appeared while the run went on ({status:?})");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Issue 14: after SIGTERM (and a second Ctrl-C) of a set_index, its spill and
/// shuffle folders stayed; a second Ctrl-C exited without cleanup.
#[test]
fn issue_14_sigterm_and_a_second_ctrl_c_remove_spill_shuffle_and_staging_folders() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("t.csv");
    write_times(&data, 400_000);
    for (signals, code) in [(&["-TERM"][..], 143), (&["-INT", "-INT"][..], 130)] {
        let spill = dir.path().join(format!("spill{code}"));
        let out = dir.path().join(format!("out{code}"));
        let mut child = start_long_run(&data, &spill, &out);
        for s in signals {
            signal(&child, s);
        }
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(code), "{signals:?}: {stderr}");
        assert!(
            stderr.contains("interrupted; temporary files were removed"),
            "{stderr}"
        );
        assert_eq!(work_folders(&spill), Vec::<PathBuf>::new(), "{signals:?}");
        // No staging folder of the --out write either, and no answer.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!(".out{code}")) || n == &format!("out{code}"))
            .collect();
        assert_eq!(left, Vec::<String>::new(), "{signals:?}");
    }
}

/// Issue 14: after SIGKILL nothing can clean up, and no later run removed the
/// folders. Each folder now holds a lock file naming its process; the next run on
/// the same spill folder removes the folders of processes that are gone.
#[test]
fn issue_14_the_next_run_removes_the_folders_of_a_killed_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("t.csv");
    write_times(&data, 400_000);
    let spill = dir.path().join("spill");
    let mut child = start_long_run(&data, &spill, &dir.path().join("out"));
    child.kill().unwrap();
    child.wait().unwrap();
    let left = work_folders(&spill);
    assert!(!left.is_empty(), "SIGKILL leaves the folders");
    for p in &left {
        let owner = std::fs::read_to_string(p.join("outcore.lock")).unwrap();
        assert!(owner.starts_with(&format!("{} ", child.id())), "{owner}");
    }
    // A folder of a live process (ours) is left alone.
    let live = spill.join("outcore-spill-live");
    std::fs::create_dir(&live).unwrap();
    let me = std::process::id();
    let started = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
    let started = started[started.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_string();
    std::fs::write(live.join("outcore.lock"), format!("{me} {started}\n")).unwrap();

    let small = dir.path().join("small.csv");
    write_rows(&small, 10);
    let out = ok(&[
        "query",
        small.to_str().unwrap(),
        "--agg",
        "size()",
        "--spill-dir",
        spill.to_str().unwrap(),
    ]);
    assert!(out.contains("10"), "{out}");
    assert_eq!(work_folders(&spill), vec![live]);
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Issue 14: `--out … --overwrite` leaked its staging folder when `.NAME.old`
/// existed (the aside name was fixed); now the aside name is unique and nothing is
/// left beside the answer, whatever fails.
#[test]
fn issue_14_overwrite_leaves_no_staging_or_aside_folder() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    write_rows(&input, 1000);
    let s = session(2, Mode::Parallel, 4 << 10);
    let df = s.read_csv(input.to_str().unwrap()).load().unwrap();
    let out = dir.path().join("out");
    let opts = WriteOptions {
        overwrite: true,
        query: None,
    };
    df.to_parquet(&out, &opts).unwrap();
    // Someone's folder under the old fixed aside name.
    let theirs = dir.path().join(".out.old");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("keep.txt"), b"mine").unwrap();
    df.to_parquet(&out, &opts).unwrap();
    assert_eq!(entries(dir.path()), vec![".out.old", "in.csv", "out"]);
    assert_eq!(std::fs::read(theirs.join("keep.txt")).unwrap(), b"mine");
    assert_eq!(s.read_parquet(&out).unwrap().num_rows().unwrap(), 1000);

    // A write that fails half-way leaves the old answer and nothing else.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "id,x\n1,2\n3,oops\n").unwrap();
    let bad_df = s
        .read_csv(bad.to_str().unwrap())
        .with_dtype("x", arrow::datatypes::DataType::Int64)
        .load()
        .unwrap();
    let err = bad_df.to_parquet(&out, &opts).unwrap_err().to_string();
    assert!(err.contains("bad.csv:3"), "{err}");
    assert_eq!(
        entries(dir.path()),
        vec![".out.old", "bad.csv", "in.csv", "out"]
    );
    assert_eq!(s.read_parquet(&out).unwrap().num_rows().unwrap(), 1000);
}

/// Issue 14: reading a dataset opened its sled catalog read-write with a lock, so
/// a second reader failed with `could not acquire lock on "…/_catalog/db"`. Now a
/// manifest beside the Parquet files is read without a lock or a write.
#[test]
fn issue_14_concurrent_readers_share_a_dataset_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("t.csv");
    write_times(&data, 20_000);
    let ds = dir.path().join("ds");
    ok(&[
        "persist",
        data.to_str().unwrap(),
        "--index",
        "t",
        "--out",
        ds.to_str().unwrap(),
        "--blocksize",
        "64KB",
    ]);
    let files = entries(&ds);
    assert!(files.contains(&"_manifest".to_string()), "{files:?}");
    assert!(!files.contains(&"_catalog".to_string()), "{files:?}");
    let stamp = |d: &Path| -> Vec<(String, u64, std::time::SystemTime)> {
        entries(d)
            .into_iter()
            .map(|n| {
                let m = std::fs::metadata(d.join(&n)).unwrap();
                (n, m.len(), m.modified().unwrap())
            })
            .collect()
    };
    let before = stamp(&ds);
    let args = [
        "resample",
        ds.to_str().unwrap(),
        "--rule",
        "7D",
        "--agg",
        "count(x), sum(x)",
        "--format",
        "csv",
    ];
    let children: Vec<Child> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_outcore"))
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(o.stdout, outs[0].stdout);
    }
    let text = String::from_utf8_lossy(&outs[0].stdout);
    let total: i64 = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, 20_000);
    assert_eq!(stamp(&ds), before, "reading wrote into the dataset");
}

/// Issue 12: resample allocated every bin of an output partition at once, so two
/// rows ten years apart at `1s` (3e8 bins) aborted. Bins now come in pieces of
/// `BINS_PER_PARTITION`, one output partition each.
#[test]
fn issue_12_resample_over_ten_years_at_1s_streams_bounded_partitions() {
    use outcore::frame::resample::BINS_PER_PARTITION;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.csv");
    std::fs::write(
        &path,
        "t,x\n2000-01-01 00:00:00,1.5\n2010-01-01 00:00:00,2.5\n",
    )
    .unwrap();
    for mode in [Mode::Sync, Mode::Parallel] {
        let s = session(2, mode, 1 << 20);
        let df = s
            .read_csv(path.to_str().unwrap())
            .with_parse_dates(["t"])
            .load()
            .unwrap();
        let (t0, t1) = (ts(0), ts(3653 * 86_400));
        let df = df
            .with_known_divisions(
                "t",
                vec![
                    ScalarValue::TimestampNanosecond(Some(t0), None),
                    ScalarValue::TimestampNanosecond(Some(t1), None),
                ],
            )
            .unwrap();
        let r = df
            .resample("1s")
            .unwrap()
            .agg(&[
                AggSpec::new(AggFunc::Count, "x"),
                AggSpec::new(AggFunc::Sum, "x"),
            ])
            .unwrap();
        let bins = 3653 * 86_400 + 1;
        assert_eq!(
            r.npartitions() as u64,
            (bins as u64).div_ceil(BINS_PER_PARTITION as u64)
        );
        let head = r.head(3).unwrap();
        let count = head.column(1).as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!((count.value(0), count.value(1), count.value(2)), (1, 0, 0));
        assert_eq!(head.column(2).as_primitive::<Float64Type>().value(0), 1.5);
        assert!(head.column(2).as_primitive::<Float64Type>().is_valid(1));
    }
    // Past the limit: an error when the query is built, naming the rule and span.
    let s = session(1, Mode::Sync, 1 << 20);
    let df = s
        .read_csv(path.to_str().unwrap())
        .with_parse_dates(["t"])
        .load()
        .unwrap()
        .with_known_divisions(
            "t",
            vec![
                ScalarValue::TimestampNanosecond(Some(ts(0)), None),
                ScalarValue::TimestampNanosecond(Some(ts(3653 * 86_400)), None),
            ],
        )
        .unwrap();
    let err = df
        .resample("1ms")
        .unwrap()
        .agg(&[AggSpec::new(AggFunc::Count, "x")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "resample: rule 1ms over 2000-01-01T00:00:00 .. 2010-01-01T00:00:00 makes 315619200001 bins, \
         more than the limit of 10000000000; choose a coarser rule or filter the rows first"
    );
}

/// Issue 12: `split_out`, `npartitions` and `blocksize` counts had no limit: a
/// typo of a few zeros built a graph of millions of tasks, or aborted.
#[test]
fn issue_12_partition_counts_have_limits_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.csv");
    write_rows(&path, 100);
    let s = session(1, Mode::Sync, 1 << 20);
    let df = s.read_csv(path.to_str().unwrap()).load().unwrap();
    let err = df
        .groupby(&["x"])
        .unwrap()
        .split_out(5_000_000)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        "groupby: split_out 5000000 makes 5000000 partitions, more than the limit of 1048576; use a smaller split_out"
    );
    let err = df
        .repartition(outcore::frame::repartition::Repartition::NPartitions(
            2_000_000,
        ))
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        "repartition: npartitions 2000000 makes 2000000 partitions, more than the limit of 1048576; ask for fewer"
    );
    let big = dir.path().join("big.csv");
    write_rows(&big, 200_000);
    let size = std::fs::metadata(&big).unwrap().len();
    assert!(size > 1 << 20);
    let err = s
        .read_csv(big.to_str().unwrap())
        .with_blocksize(1)
        .load()
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        "read_csv: blocksize 1 bytes makes {} partitions, more than the limit of 1048576; use a larger blocksize"
            .replace("{}", &(size - 5).to_string())
    );
    let err = outcore(&["bag", big.to_str().unwrap(), "--count", "--blocksize", "1"]);
    let err = String::from_utf8_lossy(&err.stderr);
    assert!(
        err.contains(&format!(
            "blocksize 1 bytes makes {size} partitions, more than the limit of 1048576"
        )),
        "{err}"
    );
}

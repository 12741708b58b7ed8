//! Deterministic, seeded generators of benchmark data sets written as CSV files into a
//! folder: the `dask.datasets.timeseries` table (one file per day) and the db-benchmark
//! groupby `G1` table (split across a chosen number of files).
//!
//! Every file is generated from its own random stream, seeded from the spec's seed and
//! the file's index, so files are generated in parallel (rayon) and the output is
//! byte-identical whatever the number of threads. Numbers are formatted with integer
//! arithmetic (`itoa`) into a reused line buffer; no float formatting happens per row.
//! Each file is written to `<name>.tmp` and renamed to `<name>` once complete, so a
//! failed run never leaves a half-written file under a final name.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{Days, NaiveDate};
use rand::distr::{Distribution, Uniform};
use rand::SeedableRng;
use rand_distr::Poisson;
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;

use crate::error::{Error, Result};

mod join;
pub use join::{write_join, JoinSpec};

/// The 26 first names of `dask.datasets.timeseries`, one per letter of the alphabet.
pub const NAMES: [&str; 26] = [
    "Alice", "Bob", "Charlie", "Dan", "Edith", "Frank", "George", "Hannah", "Ingrid", "Jerry",
    "Kevin", "Laura", "Michael", "Norbert", "Oliver", "Patricia", "Quinn", "Ray", "Sarah", "Tim",
    "Ursula", "Victor", "Wendy", "Xavier", "Yvonne", "Zelda",
];

/// Size of each file's write buffer.
const WRITE_BUFFER: usize = 1 << 20;

/// Seconds in a day.
const DAY_SECONDS: u32 = 86_400;

/// The random stream of file `index` of a data set seeded with `seed`.
fn file_rng(seed: u64, index: u64) -> Pcg64Mcg {
    Pcg64Mcg::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Creates `dir` (and its parents) if missing.
fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

/// Writes `path` atomically: `body` writes the content into a buffered writer over
/// `path.tmp`, which is flushed and renamed to `path`. On any failure the temporary
/// file is removed and the error names the file involved.
fn write_atomically(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let file = File::create(&tmp)?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
        body(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        drop(file);
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(tmp, e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Appends `n` in decimal, left-padded with zeros to at least `width` digits.
#[inline]
fn push_padded(out: &mut Vec<u8>, digits: &mut itoa::Buffer, n: u64, width: usize) {
    let s = digits.format(n).as_bytes();
    for _ in s.len()..width {
        out.push(b'0');
    }
    out.extend_from_slice(s);
}

/// Appends `micros / 1e6` with exactly six decimals (`-0.123456`, `42.000001`), using
/// integer arithmetic only.
#[inline]
fn push_micros(out: &mut Vec<u8>, digits: &mut itoa::Buffer, micros: i64) {
    if micros < 0 {
        out.push(b'-');
    }
    let m = micros.unsigned_abs();
    out.extend_from_slice(digits.format(m / 1_000_000).as_bytes());
    out.push(b'.');
    push_padded(out, digits, m % 1_000_000, 6);
}

/// Appends `n` (< 100) as two digits.
#[inline]
fn push_two(out: &mut Vec<u8>, n: u32) {
    out.push(b'0' + (n / 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

/// The `dask.datasets.timeseries` data set: `days` days from `start`, one row every
/// `freq_seconds` seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeseriesSpec {
    /// The first day (default 2000-01-01).
    pub start: NaiveDate,
    /// The number of days, one file each (default 1).
    pub days: u32,
    /// Seconds between consecutive rows (default 1).
    pub freq_seconds: u32,
    /// The random seed (default 42).
    pub seed: u64,
}

impl Default for TimeseriesSpec {
    /// 2000-01-01, one day, one row per second, seed 42.
    fn default() -> Self {
        TimeseriesSpec {
            start: NaiveDate::from_ymd_opt(2000, 1, 1).expect("2000-01-01 is a valid date"),
            days: 1,
            freq_seconds: 1,
            seed: 42,
        }
    }
}

/// Writes the `dask.datasets.timeseries` table into `dir` (created if missing): one CSV
/// per day named `YYYY-MM-DD.csv` (e.g. `2000-01-01.csv`) with header
/// `timestamp,id,name,x,y` and one row per `freq_seconds` from the day's midnight
/// (86 400 rows a day at the default one second).
///
/// `timestamp` is written as `2000-01-01 00:00:00`; `id` is drawn from Poisson(1000);
/// `name` uniformly from [`NAMES`]; `x` and `y` uniformly from [-1, 1) at a resolution of
/// 1e-6 and written with exactly six decimals (`-0.123456`). Day `d` (from 0) uses its own
/// random stream seeded from `seed` and `d`. Returns the paths, sorted.
///
/// Fails with a plan error if `days` or `freq_seconds` is 0 or a date overflows, and with
/// an IO error naming the file if writing fails.
pub fn write_timeseries(dir: &Path, spec: &TimeseriesSpec) -> Result<Vec<PathBuf>> {
    const OP: &str = "write_timeseries";
    if spec.days == 0 {
        return Err(Error::plan(OP, "days must be at least 1"));
    }
    if spec.freq_seconds == 0 {
        return Err(Error::plan(OP, "freq_seconds must be at least 1"));
    }
    let dates = (0..spec.days)
        .map(|d| {
            spec.start
                .checked_add_days(Days::new(u64::from(d)))
                .ok_or_else(|| Error::plan(OP, format!("{} + {d} days overflows", spec.start)))
        })
        .collect::<Result<Vec<NaiveDate>>>()?;
    let poisson =
        Poisson::new(1000.0_f64).map_err(|e| Error::plan(OP, format!("Poisson(1000): {e}")))?;
    create_dir(dir)?;

    let mut paths = dates
        .par_iter()
        .enumerate()
        .map(|(index, date)| {
            let day = date.format("%Y-%m-%d").to_string();
            let path = dir.join(format!("{day}.csv"));
            let rng = file_rng(spec.seed, index as u64);
            write_atomically(&path, |out| {
                write_timeseries_day(out, day.as_bytes(), spec.freq_seconds, rng, &poisson)
            })?;
            Ok(path)
        })
        .collect::<Result<Vec<PathBuf>>>()?;
    paths.sort();
    Ok(paths)
}

/// Writes one day of the timeseries table (`day` is `YYYY-MM-DD`).
fn write_timeseries_day(
    out: &mut impl Write,
    day: &[u8],
    freq_seconds: u32,
    mut rng: Pcg64Mcg,
    poisson: &Poisson<f64>,
) -> std::io::Result<()> {
    let name_dist = Uniform::new(0usize, NAMES.len()).expect("non-empty range");
    let xy_dist = Uniform::new(-1_000_000_i64, 1_000_000).expect("non-empty range");
    let mut digits = itoa::Buffer::new();
    let mut line: Vec<u8> = Vec::with_capacity(128);
    out.write_all(b"timestamp,id,name,x,y\n")?;
    let mut t = 0u32;
    while t < DAY_SECONDS {
        line.clear();
        line.extend_from_slice(day);
        line.push(b' ');
        push_two(&mut line, t / 3600);
        line.push(b':');
        push_two(&mut line, t / 60 % 60);
        line.push(b':');
        push_two(&mut line, t % 60);
        line.push(b',');
        let id = poisson.sample(&mut rng) as u64;
        line.extend_from_slice(digits.format(id).as_bytes());
        line.push(b',');
        line.extend_from_slice(NAMES[name_dist.sample(&mut rng)].as_bytes());
        line.push(b',');
        push_micros(&mut line, &mut digits, xy_dist.sample(&mut rng));
        line.push(b',');
        push_micros(&mut line, &mut digits, xy_dist.sample(&mut rng));
        line.push(b'\n');
        out.write_all(&line)?;
        t = match t.checked_add(freq_seconds) {
            Some(next) => next,
            None => break,
        };
    }
    Ok(())
}

/// The db-benchmark groupby `G1` table: `rows` rows with `k` groups, split across
/// `files` files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupbySpec {
    /// Total number of rows across all files (at least 1).
    pub rows: u64,
    /// The group cardinality parameter `K` (at least 1).
    pub k: u64,
    /// The number of files (at least 1, at most `rows`).
    pub files: u32,
    /// The random seed.
    pub seed: u64,
    /// The percentage (0..=100) of `id1`..`id6` and `v1`..`v3` cells written empty,
    /// each cell independently (default 0).
    pub null_percent: u32,
}

impl Default for GroupbySpec {
    /// 1e7 rows, K = 100, 8 files, seed 42, no nulls.
    fn default() -> Self {
        GroupbySpec {
            rows: 10_000_000,
            k: 100,
            files: 8,
            seed: 42,
            null_percent: 0,
        }
    }
}

/// Writes the db-benchmark groupby `G1` table into `dir` (created if missing), split
/// across `files` CSV files named `g1_{rows}_{k}_{i:03}.csv` (`i` from 0), the rows split
/// as evenly as possible (the first `rows % files` files get one extra row). Each file
/// has the header `id1,id2,id3,id4,id5,id6,v1,v2,v3`.
///
/// With `n = max(1, rows / k)`: `id1`, `id2` are strings `id001`..`idK` (`id{:03}`) drawn
/// uniformly; `id3` strings `id{:010}` uniform over 1..=n; `id4`, `id5` integers uniform
/// in 1..=k; `id6` integers uniform in 1..=n; `v1` integers in 1..=5; `v2` integers in
/// 1..=15; `v3` floats uniform in [0, 100) at a resolution of 1e-6, written with exactly
/// six decimals. With `null_percent > 0` each of these cells is independently left empty
/// with that probability. File `i` uses its own random stream seeded from `seed` and
/// `i`. Returns the paths, sorted.
///
/// Fails with a plan error if `rows`, `k` or `files` is 0, `files > rows` or
/// `null_percent > 100`, and with an IO error naming the file if writing fails.
pub fn write_groupby(dir: &Path, spec: &GroupbySpec) -> Result<Vec<PathBuf>> {
    const OP: &str = "write_groupby";
    if spec.rows == 0 {
        return Err(Error::plan(OP, "rows must be at least 1"));
    }
    if spec.k == 0 {
        return Err(Error::plan(OP, "k must be at least 1"));
    }
    if spec.files == 0 {
        return Err(Error::plan(OP, "files must be at least 1"));
    }
    if u64::from(spec.files) > spec.rows {
        return Err(Error::plan(
            OP,
            format!(
                "files ({}) exceeds rows ({}); every file must get at least one row",
                spec.files, spec.rows
            ),
        ));
    }
    if spec.null_percent > 100 {
        return Err(Error::plan(
            OP,
            format!(
                "null_percent must be within 0..=100, got {}",
                spec.null_percent
            ),
        ));
    }
    create_dir(dir)?;

    let files = u64::from(spec.files);
    let (base, extra) = (spec.rows / files, spec.rows % files);
    let mut paths = (0..files)
        .into_par_iter()
        .map(|index| {
            let rows = base + u64::from(index < extra);
            let path = dir.join(format!("g1_{}_{}_{index:03}.csv", spec.rows, spec.k));
            let rng = file_rng(spec.seed, index);
            write_atomically(&path, |out| write_groupby_file(out, spec, rows, rng))?;
            Ok(path)
        })
        .collect::<Result<Vec<PathBuf>>>()?;
    paths.sort();
    Ok(paths)
}

/// Writes one file of the G1 table with `rows` rows.
fn write_groupby_file(
    out: &mut impl Write,
    spec: &GroupbySpec,
    rows: u64,
    mut rng: Pcg64Mcg,
) -> std::io::Result<()> {
    let n = (spec.rows / spec.k).max(1);
    let k_dist = Uniform::new_inclusive(1u64, spec.k).expect("k >= 1");
    let n_dist = Uniform::new_inclusive(1u64, n).expect("n >= 1");
    let v1_dist = Uniform::new_inclusive(1u32, 5).expect("non-empty range");
    let v2_dist = Uniform::new_inclusive(1u32, 15).expect("non-empty range");
    let v3_dist = Uniform::new(0i64, 100_000_000).expect("non-empty range");
    let percent_dist = Uniform::new(0u32, 100).expect("non-empty range");
    let null_percent = spec.null_percent;
    let mut digits = itoa::Buffer::new();
    let mut line: Vec<u8> = Vec::with_capacity(128);

    // Whether the next cell is empty; draws nothing when there are no nulls, so the
    // value stream of a null-free table does not depend on this feature.
    let is_null = |rng: &mut Pcg64Mcg| null_percent > 0 && percent_dist.sample(rng) < null_percent;

    out.write_all(b"id1,id2,id3,id4,id5,id6,v1,v2,v3\n")?;
    for _ in 0..rows {
        line.clear();
        // id1, id2: "id{:03}" over 1..=k.
        for _ in 0..2 {
            if !is_null(&mut rng) {
                line.extend_from_slice(b"id");
                push_padded(&mut line, &mut digits, k_dist.sample(&mut rng), 3);
            }
            line.push(b',');
        }
        // id3: "id{:010}" over 1..=n.
        if !is_null(&mut rng) {
            line.extend_from_slice(b"id");
            push_padded(&mut line, &mut digits, n_dist.sample(&mut rng), 10);
        }
        line.push(b',');
        // id4, id5: 1..=k.
        for _ in 0..2 {
            if !is_null(&mut rng) {
                line.extend_from_slice(digits.format(k_dist.sample(&mut rng)).as_bytes());
            }
            line.push(b',');
        }
        // id6: 1..=n.
        if !is_null(&mut rng) {
            line.extend_from_slice(digits.format(n_dist.sample(&mut rng)).as_bytes());
        }
        line.push(b',');
        // v1: 1..=5.
        if !is_null(&mut rng) {
            line.extend_from_slice(digits.format(v1_dist.sample(&mut rng)).as_bytes());
        }
        line.push(b',');
        // v2: 1..=15.
        if !is_null(&mut rng) {
            line.extend_from_slice(digits.format(v2_dist.sample(&mut rng)).as_bytes());
        }
        line.push(b',');
        // v3: [0, 100) with six decimals.
        if !is_null(&mut rng) {
            push_micros(&mut line, &mut digits, v3_dist.sample(&mut rng));
        }
        line.push(b'\n');
        out.write_all(&line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    /// Checks `s` is `int.dddddd` (optionally negative) and returns its value.
    fn parse_six_decimals(s: &str) -> f64 {
        let (int, frac) = s
            .split_once('.')
            .unwrap_or_else(|| panic!("no point in {s:?}"));
        assert_eq!(frac.len(), 6, "{s:?} does not have 6 decimals");
        assert!(frac.bytes().all(|b| b.is_ascii_digit()), "{s:?}");
        let int = int.strip_prefix('-').unwrap_or(int);
        assert!(
            !int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()),
            "{s:?}"
        );
        s.parse::<f64>().unwrap()
    }

    fn small_groupby(null_percent: u32) -> GroupbySpec {
        GroupbySpec {
            rows: 10_003,
            k: 10,
            files: 4,
            seed: 7,
            null_percent,
        }
    }

    #[test]
    fn names_are_the_alphabet() {
        for (i, name) in NAMES.iter().enumerate() {
            assert_eq!(name.as_bytes()[0], b'A' + i as u8);
        }
    }

    #[test]
    fn number_formatting() {
        let mut d = itoa::Buffer::new();
        let mut out = Vec::new();
        for (v, s) in [
            (0, "0.000000"),
            (-123_456, "-0.123456"),
            (-1_000_000, "-1.000000"),
            (999_999, "0.999999"),
            (-1, "-0.000001"),
            (99_999_999, "99.999999"),
            (42_000_001, "42.000001"),
        ] {
            out.clear();
            push_micros(&mut out, &mut d, v);
            assert_eq!(std::str::from_utf8(&out).unwrap(), s);
        }
        out.clear();
        push_padded(&mut out, &mut d, 7, 10);
        push_padded(&mut out, &mut d, 1234, 3);
        assert_eq!(std::str::from_utf8(&out).unwrap(), "00000000071234");
    }

    #[test]
    fn timeseries_is_deterministic_and_well_formed() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let spec = TimeseriesSpec {
            days: 2,
            ..TimeseriesSpec::default()
        };
        let pa = write_timeseries(a.path(), &spec).unwrap();
        // The second run uses a single thread: the output must not depend on it.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let pb = pool.install(|| write_timeseries(b.path(), &spec)).unwrap();
        let names: Vec<_> = pa
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["2000-01-01.csv", "2000-01-02.csv"]);
        assert_eq!(
            fs::read_dir(a.path()).unwrap().count(),
            2,
            "no .tmp left behind"
        );
        for (x, y) in pa.iter().zip(&pb) {
            assert_eq!(fs::read(x).unwrap(), fs::read(y).unwrap());
        }
        let values = |p: &PathBuf| -> Vec<String> {
            read(p)
                .lines()
                .skip(1)
                .take(100)
                .map(|l| l[20..].to_owned())
                .collect()
        };
        assert_ne!(
            values(&pa[0]),
            values(&pa[1]),
            "days have their own streams"
        );

        let mut id_sum = 0u64;
        let mut seen_names = std::collections::HashSet::new();
        let (mut x_min, mut x_max) = (f64::MAX, f64::MIN);
        for (path, day) in pa.iter().zip(["2000-01-01", "2000-01-02"]) {
            let text = read(path);
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some("timestamp,id,name,x,y"));
            let mut count = 0u32;
            for (i, line) in lines.enumerate() {
                let f: Vec<&str> = line.split(',').collect();
                assert_eq!(f.len(), 5, "{line}");
                let i = i as u32;
                let expected = format!("{day} {:02}:{:02}:{:02}", i / 3600, i / 60 % 60, i % 60);
                assert_eq!(f[0], expected);
                id_sum += f[1].parse::<u64>().unwrap();
                assert!(NAMES.contains(&f[2]), "{line}");
                seen_names.insert(f[2].to_owned());
                for v in &f[3..5] {
                    let v = parse_six_decimals(v);
                    assert!((-1.0..1.0).contains(&v), "{line}");
                    x_min = x_min.min(v);
                    x_max = x_max.max(v);
                }
                count += 1;
            }
            assert_eq!(count, 86_400);
        }
        let mean = id_sum as f64 / 172_800.0;
        assert!((mean - 1000.0).abs() < 1.0, "Poisson(1000) mean {mean}");
        assert_eq!(seen_names.len(), 26);
        assert!(x_min < -0.999 && x_max > 0.999, "{x_min} {x_max}");
    }

    #[test]
    fn timeseries_frequency_and_start() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested/ts");
        let spec = TimeseriesSpec {
            start: NaiveDate::from_ymd_opt(2021, 12, 31).unwrap(),
            days: 2,
            freq_seconds: 7,
            seed: 1,
        };
        let paths = write_timeseries(&out, &spec).unwrap();
        assert_eq!(
            paths,
            [out.join("2021-12-31.csv"), out.join("2022-01-01.csv")]
        );
        let text = read(&paths[1]);
        let rows: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(rows.len(), 86_400usize.div_ceil(7));
        assert!(rows[0].starts_with("2022-01-01 00:00:00,"));
        assert!(rows[1].starts_with("2022-01-01 00:00:07,"));
        assert!(rows.last().unwrap().starts_with("2022-01-01 23:59:54,"));

        assert!(write_timeseries(
            &out,
            &TimeseriesSpec {
                days: 0,
                ..spec.clone()
            }
        )
        .is_err());
        assert!(write_timeseries(
            &out,
            &TimeseriesSpec {
                freq_seconds: 0,
                ..spec
            }
        )
        .is_err());
    }

    #[test]
    fn groupby_is_deterministic_and_in_range() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let spec = small_groupby(0);
        let pa = write_groupby(a.path(), &spec).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let pb = pool.install(|| write_groupby(b.path(), &spec)).unwrap();
        let names: Vec<_> = pa
            .iter()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "g1_10003_10_000.csv",
                "g1_10003_10_001.csv",
                "g1_10003_10_002.csv",
                "g1_10003_10_003.csv"
            ]
        );
        assert_eq!(
            fs::read_dir(a.path()).unwrap().count(),
            4,
            "no .tmp left behind"
        );
        for (x, y) in pa.iter().zip(&pb) {
            assert_eq!(fs::read(x).unwrap(), fs::read(y).unwrap());
        }
        // A different seed gives different data.
        let c = tempfile::tempdir().unwrap();
        let pc = write_groupby(
            c.path(),
            &GroupbySpec {
                seed: 8,
                ..spec.clone()
            },
        )
        .unwrap();
        assert_ne!(fs::read(&pa[0]).unwrap(), fs::read(&pc[0]).unwrap());

        let (k, n) = (spec.k, spec.rows / spec.k);
        let mut counts = Vec::new();
        let mut id4_seen = std::collections::HashSet::new();
        let mut v2_seen = std::collections::HashSet::new();
        for path in &pa {
            let text = read(path);
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some("id1,id2,id3,id4,id5,id6,v1,v2,v3"));
            let mut count = 0u64;
            for line in lines {
                let f: Vec<&str> = line.split(',').collect();
                assert_eq!(f.len(), 9, "{line}");
                for id in &f[0..2] {
                    let digits = id.strip_prefix("id").unwrap();
                    assert_eq!(digits.len(), 3, "{line}");
                    assert!((1..=k).contains(&digits.parse().unwrap()), "{line}");
                }
                let digits = f[2].strip_prefix("id").unwrap();
                assert_eq!(digits.len(), 10, "{line}");
                assert!((1..=n).contains(&digits.parse().unwrap()), "{line}");
                let id4: u64 = f[3].parse().unwrap();
                let id5: u64 = f[4].parse().unwrap();
                let id6: u64 = f[5].parse().unwrap();
                let v1: u64 = f[6].parse().unwrap();
                let v2: u64 = f[7].parse().unwrap();
                assert!((1..=k).contains(&id4) && (1..=k).contains(&id5), "{line}");
                assert!((1..=n).contains(&id6), "{line}");
                assert!((1..=5).contains(&v1) && (1..=15).contains(&v2), "{line}");
                let v3 = parse_six_decimals(f[8]);
                assert!(
                    !f[8].starts_with('-') && (0.0..100.0).contains(&v3),
                    "{line}"
                );
                id4_seen.insert(id4);
                v2_seen.insert(v2);
                count += 1;
            }
            counts.push(count);
        }
        assert_eq!(counts, [2501, 2501, 2501, 2500]);
        assert_eq!(id4_seen.len(), k as usize);
        assert_eq!(v2_seen.len(), 15);
    }

    #[test]
    fn groupby_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_groupby(dir.path(), &small_groupby(50)).unwrap();
        let (mut empty, mut total) = (0u64, 0u64);
        for path in &paths {
            for line in read(path).lines().skip(1) {
                let f: Vec<&str> = line.split(',').collect();
                assert_eq!(f.len(), 9, "{line}");
                total += 9;
                empty += f.iter().filter(|v| v.is_empty()).count() as u64;
            }
        }
        let share = empty as f64 / total as f64;
        assert!((share - 0.5).abs() < 0.02, "null share {share}");

        let dir = tempfile::tempdir().unwrap();
        let paths = write_groupby(dir.path(), &small_groupby(0)).unwrap();
        assert!(!read(&paths[0]).contains(",,"));
    }

    #[test]
    fn groupby_rejects_bad_specs() {
        let dir = tempfile::tempdir().unwrap();
        let ok = GroupbySpec {
            rows: 10,
            k: 2,
            files: 2,
            seed: 0,
            null_percent: 0,
        };
        for bad in [
            GroupbySpec {
                rows: 0,
                ..ok.clone()
            },
            GroupbySpec { k: 0, ..ok.clone() },
            GroupbySpec {
                files: 0,
                ..ok.clone()
            },
            GroupbySpec {
                files: 11,
                ..ok.clone()
            },
            GroupbySpec {
                null_percent: 101,
                ..ok.clone()
            },
        ] {
            assert!(matches!(
                write_groupby(dir.path(), &bad),
                Err(Error::Plan { .. })
            ));
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        // k larger than rows: id3 and id6 are all 1.
        let paths = write_groupby(dir.path(), &GroupbySpec { k: 1000, ..ok }).unwrap();
        for line in read(&paths[0]).lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f[2], "id0000000001");
            assert_eq!(f[5], "1");
        }
    }

    #[test]
    fn io_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"x").unwrap();
        let err = write_groupby(&file, &small_groupby(0)).unwrap_err();
        assert!(
            matches!(&err, Error::Io { path, .. } if path == &file),
            "{err:?}"
        );
    }
}

mod timeseries_frame;
pub use timeseries_frame::timeseries;

/// Occupations of the `records` data set.
pub const OCCUPATIONS: [&str; 16] = [
    "Accountant",
    "Architect",
    "Baker",
    "Carpenter",
    "Chemist",
    "Designer",
    "Doctor",
    "Economist",
    "Engineer",
    "Farmer",
    "Journalist",
    "Lawyer",
    "Nurse",
    "Pilot",
    "Teacher",
    "Writer",
];

/// Cities of the `records` data set.
pub const CITIES: [&str; 12] = [
    "Amsterdam",
    "Berlin",
    "Cairo",
    "Dublin",
    "Helsinki",
    "Lima",
    "Madrid",
    "Nairobi",
    "Oslo",
    "Paris",
    "Seoul",
    "Toronto",
];

/// The `records` data set of JSON lines, as `dask.datasets.make_people`: one object a
/// line with `id`, `name`, `age`, `occupation`, a nested `address` {`city`, `zip`} and a
/// list of 0 to 7 `transactions` {`amount`, `date`}.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsSpec {
    /// Total number of records (at least 1).
    pub records: u64,
    /// Number of files (at least 1, at most `records`).
    pub files: u32,
    /// The random seed.
    pub seed: u64,
    /// The percentage (0..=100) of records that lack `age`, and separately of records
    /// that lack `address`, for tests of missing fields (default 0).
    pub missing_percent: u32,
}

impl Default for RecordsSpec {
    /// 1e6 records, 8 files, seed 42, nothing missing.
    fn default() -> Self {
        RecordsSpec {
            records: 1_000_000,
            files: 8,
            seed: 42,
            missing_percent: 0,
        }
    }
}

/// Writes the `records` data set into `dir` (created if missing) as `files` JSON-lines
/// files named `records_{i:03}.json`, the records split as evenly as possible.
///
/// A line looks like
/// `{"id":7,"name":"Dan","age":41,"occupation":"Nurse","address":{"city":"Oslo","zip":"04213"},"transactions":[{"amount":12.34,"date":"2000-03-05"}]}`:
/// `id` counts from 0 across files; `name` is uniform over [`NAMES`]; `age` uniform in
/// 18..=80; `occupation` uniform over [`OCCUPATIONS`]; `city` over [`CITIES`]; `zip`
/// five digits; 0..=7 transactions, each an `amount` in [0.01, 1000.00] with two
/// decimals and a `date` in 2000. File `i` uses its own random stream seeded from
/// `seed` and `i`. Returns the paths, sorted.
pub fn write_records(dir: &Path, spec: &RecordsSpec) -> Result<Vec<PathBuf>> {
    const OP: &str = "write_records";
    if spec.records == 0 {
        return Err(Error::plan(OP, "records must be at least 1"));
    }
    if spec.files == 0 || u64::from(spec.files) > spec.records {
        return Err(Error::plan(
            OP,
            format!(
                "files must be within 1..=records ({}), got {}",
                spec.records, spec.files
            ),
        ));
    }
    if spec.missing_percent > 100 {
        return Err(Error::plan(OP, "missing_percent must be within 0..=100"));
    }
    create_dir(dir)?;
    let files = u64::from(spec.files);
    let (base, extra) = (spec.records / files, spec.records % files);
    let mut paths = (0..files)
        .into_par_iter()
        .map(|index| {
            let rows = base + u64::from(index < extra);
            let first_id = index * base + index.min(extra);
            let path = dir.join(format!("records_{index:03}.json"));
            let rng = file_rng(spec.seed, index);
            write_atomically(&path, |out| {
                write_records_file(out, spec, first_id, rows, rng)
            })?;
            Ok(path)
        })
        .collect::<Result<Vec<PathBuf>>>()?;
    paths.sort();
    Ok(paths)
}

fn write_records_file(
    out: &mut impl Write,
    spec: &RecordsSpec,
    first_id: u64,
    rows: u64,
    mut rng: Pcg64Mcg,
) -> std::io::Result<()> {
    let name_dist = Uniform::new(0usize, NAMES.len()).expect("non-empty range");
    let occ_dist = Uniform::new(0usize, OCCUPATIONS.len()).expect("non-empty range");
    let city_dist = Uniform::new(0usize, CITIES.len()).expect("non-empty range");
    let age_dist = Uniform::new_inclusive(18u32, 80).expect("non-empty range");
    let zip_dist = Uniform::new(0u64, 100_000).expect("non-empty range");
    let ntx_dist = Uniform::new_inclusive(0u32, 7).expect("non-empty range");
    let cents_dist = Uniform::new_inclusive(1u64, 100_000).expect("non-empty range");
    let day_dist = Uniform::new(0u64, 366).expect("non-empty range");
    let percent_dist = Uniform::new(0u32, 100).expect("non-empty range");
    let year_start = NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid date");
    let mut digits = itoa::Buffer::new();
    let mut line: Vec<u8> = Vec::with_capacity(512);
    for id in first_id..first_id + rows {
        line.clear();
        line.extend_from_slice(b"{\"id\":");
        line.extend_from_slice(digits.format(id).as_bytes());
        line.extend_from_slice(b",\"name\":\"");
        line.extend_from_slice(NAMES[name_dist.sample(&mut rng)].as_bytes());
        line.push(b'"');
        let age = age_dist.sample(&mut rng);
        if percent_dist.sample(&mut rng) >= spec.missing_percent {
            line.extend_from_slice(b",\"age\":");
            line.extend_from_slice(digits.format(age).as_bytes());
        }
        line.extend_from_slice(b",\"occupation\":\"");
        line.extend_from_slice(OCCUPATIONS[occ_dist.sample(&mut rng)].as_bytes());
        line.push(b'"');
        let city = CITIES[city_dist.sample(&mut rng)];
        let zip = zip_dist.sample(&mut rng);
        if percent_dist.sample(&mut rng) >= spec.missing_percent {
            line.extend_from_slice(b",\"address\":{\"city\":\"");
            line.extend_from_slice(city.as_bytes());
            line.extend_from_slice(b"\",\"zip\":\"");
            push_padded(&mut line, &mut digits, zip, 5);
            line.extend_from_slice(b"\"}");
        }
        line.extend_from_slice(b",\"transactions\":[");
        for t in 0..ntx_dist.sample(&mut rng) {
            if t > 0 {
                line.push(b',');
            }
            let cents = cents_dist.sample(&mut rng);
            line.extend_from_slice(b"{\"amount\":");
            line.extend_from_slice(digits.format(cents / 100).as_bytes());
            line.push(b'.');
            push_padded(&mut line, &mut digits, cents % 100, 2);
            let date = year_start + Days::new(day_dist.sample(&mut rng));
            line.extend_from_slice(b",\"date\":\"");
            line.extend_from_slice(date.format("%Y-%m-%d").to_string().as_bytes());
            line.extend_from_slice(b"\"}");
        }
        line.extend_from_slice(b"]}\n");
        out.write_all(&line)?;
    }
    Ok(())
}

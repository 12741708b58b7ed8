//! The db-benchmark join tables `J1` (its `join-datagen.R`): a left table `x` of
//! `N` rows and three right tables `small` (`N/1e6` rows), `medium` (`N/1e3`) and
//! `big` (`N`), keyed so that joins have a known shape.
//!
//! Keys come at three scales, `n1 = N/1e6`, `n2 = N/1e3`, `n3 = N` (each at least
//! 10, so small test sets still have every kind of key). For each scale a seeded
//! permutation of `1..=1.1 n` is cut into 90 % common keys, 10 % left-only and 10 %
//! right-only: `x` draws from common + left-only, the right tables from common +
//! right-only, so 90 % of the keys match. Where a table has as many rows as its key
//! scale (`x.id3`, `small.id1`, `medium.id2`, `big.id3`) the column is a
//! permutation of its keys (unique); elsewhere every key appears at least once and
//! the rest are drawn uniformly (R's `sample_all`). `id4..id6` are the strings
//! `id<id1..id3>`; `v1`, `v2` are uniform in [0, 100) with six decimals.
//!
//! The key columns are drawn in memory from one seeded stream each (4 bytes a key),
//! then the rows are written in parallel, one file at a time, each with its own
//! value stream, atomically (`.tmp`, then rename), so the output does not depend on
//! the thread count.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::distr::{Distribution, Uniform};
use rand::seq::SliceRandom;
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;

use super::{create_dir, file_rng, push_micros, write_atomically};
use crate::error::{Error, Result};

/// The J1 join tables: `x` and `big` of `rows` rows split across `files` files;
/// `small` and `medium` one file each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinSpec {
    /// `N`: rows of `x` and `big` (at least 10, below 2^31).
    pub rows: u64,
    /// Files for `x` and for `big` (at least 1, at most `rows`).
    pub files: u32,
    /// The random seed.
    pub seed: u64,
}

impl Default for JoinSpec {
    /// N = 1e7, 8 files, seed 108 (db-benchmark's).
    fn default() -> Self {
        JoinSpec {
            rows: 10_000_000,
            files: 8,
            seed: 108,
        }
    }
}

/// One scale's keys: common, left-only and right-only.
struct Keys {
    left: Vec<u32>,
    right: Vec<u32>,
}

fn split_xlr(n: u64, rng: &mut Pcg64Mcg) -> Keys {
    let tenth = n / 10;
    let mut all: Vec<u32> = (1..=(n + tenth) as u32).collect();
    all.shuffle(rng);
    let common = (n - tenth) as usize;
    let right: Vec<u32> = all[..common]
        .iter()
        .chain(&all[n as usize..])
        .copied()
        .collect();
    all.truncate(n as usize);
    Keys { left: all, right }
}

/// `size` draws from `keys` containing each key at least once, shuffled.
fn sample_all(keys: &[u32], size: u64, rng: &mut Pcg64Mcg) -> Vec<u32> {
    let mut out = Vec::with_capacity(size as usize);
    out.extend_from_slice(keys);
    let pick = Uniform::new(0, keys.len()).expect("keys are not empty");
    while (out.len() as u64) < size {
        out.push(keys[pick.sample(rng)]);
    }
    out.shuffle(rng);
    out
}

/// A table to write: its key columns (`id1..id3` or a subset) and the name of its
/// value column.
struct Table<'a> {
    name: &'static str,
    ids: Vec<(&'static str, Vec<u32>)>,
    value: &'static str,
    files: u64,
    stream: u64,
    dir: &'a Path,
}

fn write_table(t: &Table, seed: u64) -> Result<Vec<PathBuf>> {
    let dir = t.dir.join(t.name);
    create_dir(&dir)?;
    let rows = t.ids[0].1.len() as u64;
    let files = t.files.min(rows).max(1);
    let (base, extra) = (rows / files, rows % files);
    let mut header: Vec<String> = t.ids.iter().map(|(n, _)| n.to_string()).collect();
    header.extend(
        t.ids
            .iter()
            .map(|(n, _)| format!("id{}", n[2..].parse::<u32>().unwrap_or(0) + 3)),
    );
    header.push(t.value.to_string());
    let header = header.join(",") + "\n";
    (0..files)
        .into_par_iter()
        .map(|i| {
            let start = i * base + i.min(extra);
            let n = base + u64::from(i < extra);
            let path = dir.join(format!("{}_{i:03}.csv", t.name));
            let mut rng = file_rng(seed, t.stream * 1_000_003 + i);
            write_atomically(&path, |out| {
                let v = Uniform::new(0i64, 100_000_000).expect("non-empty range");
                let mut digits = itoa::Buffer::new();
                let mut line: Vec<u8> = Vec::with_capacity(96);
                out.write_all(header.as_bytes())?;
                for r in start..start + n {
                    line.clear();
                    for (_, col) in &t.ids {
                        line.extend_from_slice(digits.format(col[r as usize]).as_bytes());
                        line.push(b',');
                    }
                    for (_, col) in &t.ids {
                        line.extend_from_slice(b"id");
                        line.extend_from_slice(digits.format(col[r as usize]).as_bytes());
                        line.push(b',');
                    }
                    push_micros(&mut line, &mut digits, v.sample(&mut rng));
                    line.push(b'\n');
                    out.write_all(&line)?;
                }
                Ok(())
            })?;
            Ok(path)
        })
        .collect()
}

/// Writes the J1 tables into `dir/x`, `dir/small`, `dir/medium` and `dir/big`
/// (created if missing), files named `<table>_<i:03>.csv`, with headers
/// `x: id1,id2,id3,id4,id5,id6,v1`, `small: id1,id4,v2`,
/// `medium: id1,id2,id4,id5,v2`, `big: id1,id2,id3,id4,id5,id6,v2`. Returns every
/// path, sorted.
///
/// Fails with a plan error if `rows < 10`, `rows >= 2^31` or `files` is 0, and
/// with an IO error naming the file if writing fails.
pub fn write_join(dir: &Path, spec: &JoinSpec) -> Result<Vec<PathBuf>> {
    const OP: &str = "write_join";
    if spec.rows < 10 || spec.rows >= 1 << 31 {
        return Err(Error::plan(
            OP,
            format!("rows must be within 10..2^31, got {}", spec.rows),
        ));
    }
    if spec.files == 0 {
        return Err(Error::plan(OP, "files must be at least 1"));
    }
    create_dir(dir)?;
    let n = spec.rows;
    let (n1, n2, n3) = ((n / 1_000_000).max(10), (n / 1_000).max(10), n);
    // One stream per column, so each is the same whatever else is generated.
    let rng = |k: u64| file_rng(spec.seed ^ 0x4A31, 1 << 40 | k);
    let (k1, k2, k3) = (
        split_xlr(n1, &mut rng(1)),
        split_xlr(n2, &mut rng(2)),
        split_xlr(n3, &mut rng(3)),
    );
    let files = u64::from(spec.files);
    let mut paths = Vec::new();
    let x = Table {
        name: "x",
        ids: vec![
            ("id1", sample_all(&k1.left, n, &mut rng(4))),
            ("id2", sample_all(&k2.left, n, &mut rng(5))),
            ("id3", sample_all(&k3.left, n, &mut rng(6))),
        ],
        value: "v1",
        files,
        stream: 1,
        dir,
    };
    paths.extend(write_table(&x, spec.seed)?);
    drop(x);
    let small = Table {
        name: "small",
        ids: vec![("id1", sample_all(&k1.right, n1, &mut rng(7)))],
        value: "v2",
        files: 1,
        stream: 2,
        dir,
    };
    paths.extend(write_table(&small, spec.seed)?);
    let medium = Table {
        name: "medium",
        ids: vec![
            ("id1", sample_all(&k1.right, n2, &mut rng(8))),
            ("id2", sample_all(&k2.right, n2, &mut rng(9))),
        ],
        value: "v2",
        files: 1,
        stream: 3,
        dir,
    };
    paths.extend(write_table(&medium, spec.seed)?);
    let big = Table {
        name: "big",
        ids: vec![
            ("id1", sample_all(&k1.right, n, &mut rng(10))),
            ("id2", sample_all(&k2.right, n, &mut rng(11))),
            ("id3", sample_all(&k3.right, n, &mut rng(12))),
        ],
        value: "v2",
        files,
        stream: 4,
        dir,
    };
    paths.extend(write_table(&big, spec.seed)?);
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// Columns of every file of a table, by header name.
    fn read_table(dir: &Path, name: &str) -> BTreeMap<String, Vec<String>> {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(name))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let mut cols: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let mut lines = text.lines();
            let head: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
            for l in lines {
                for (h, v) in head.iter().zip(l.split(',')) {
                    cols.entry(h.clone()).or_default().push(v.to_string());
                }
            }
        }
        cols
    }

    fn set(v: &[String]) -> BTreeSet<u64> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn join_tables_share_90_percent_of_keys_and_are_deterministic() {
        let a = tempfile::tempdir().unwrap();
        let spec = JoinSpec {
            rows: 20_000,
            files: 3,
            seed: 5,
        };
        let paths = write_join(a.path(), &spec).unwrap();
        assert_eq!(paths.len(), 3 + 1 + 1 + 3);
        let x = read_table(a.path(), "x");
        let small = read_table(a.path(), "small");
        let medium = read_table(a.path(), "medium");
        let big = read_table(a.path(), "big");
        assert_eq!(
            x.keys().collect::<Vec<_>>(),
            ["id1", "id2", "id3", "id4", "id5", "id6", "v1"]
        );
        assert_eq!(small.keys().collect::<Vec<_>>(), ["id1", "id4", "v2"]);
        assert_eq!(
            medium.keys().collect::<Vec<_>>(),
            ["id1", "id2", "id4", "id5", "v2"]
        );
        assert_eq!(big["id1"].len(), 20_000);
        assert_eq!(x["id1"].len(), 20_000);
        assert_eq!(small["id1"].len(), 10);
        assert_eq!(medium["id1"].len(), 20);
        // Distinct keys per scale, and which are shared.
        let (x1, x2, x3) = (set(&x["id1"]), set(&x["id2"]), set(&x["id3"]));
        assert_eq!((x1.len(), x2.len(), x3.len()), (10, 20, 20_000));
        assert_eq!(set(&small["id1"]).len(), 10, "small.id1 is unique");
        assert_eq!(set(&medium["id2"]).len(), 20, "medium.id2 is unique");
        assert_eq!(set(&big["id3"]).len(), 20_000, "big.id3 is unique");
        assert_eq!(x1.intersection(&set(&small["id1"])).count(), 9);
        assert_eq!(x2.intersection(&set(&medium["id2"])).count(), 18);
        assert_eq!(x3.intersection(&set(&big["id3"])).count(), 18_000);
        assert_eq!(set(&big["id1"]), set(&small["id1"]));
        for (i, s) in x["id1"].iter().zip(&x["id4"]) {
            assert_eq!(s, &format!("id{i}"));
        }
        for v in &x["v1"] {
            let f: f64 = v.parse().unwrap();
            assert!((0.0..100.0).contains(&f) && v.split('.').nth(1).unwrap().len() == 6);
        }
        // Deterministic whatever the threads.
        let b = tempfile::tempdir().unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let pb = pool.install(|| write_join(b.path(), &spec)).unwrap();
        for (p, q) in paths.iter().zip(&pb) {
            assert_eq!(std::fs::read(p).unwrap(), std::fs::read(q).unwrap());
        }
        assert!(write_join(
            b.path(),
            &JoinSpec {
                rows: 5,
                ..spec.clone()
            }
        )
        .is_err());
    }
}

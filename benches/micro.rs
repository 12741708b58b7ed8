//! Criterion micro-benchmarks: scheduler overhead per task, CSV decode throughput
//! (all columns and two; quoted line breaks over many blocks; gzip streamed), and
//! groupby rows/s at few and many groups.
//!
//!   cargo bench --bench micro

// criterion_group! makes undocumented functions.
#![allow(missing_docs)]

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use datafusion_common::ScalarValue;
use outcore::agg::sum;
use outcore::datasets::{write_groupby, GroupbySpec};
use outcore::graph::{FnOperator, Graph, Key, Layer, Task, Value};
use outcore::Session;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

/// 100,000 leaves summed by a tree of fan-in 100: per-task overhead of the scheduler.
fn scheduler(c: &mut Criterion) {
    let leaves: Arc<str> = "leaf".into();
    let mid: Arc<str> = "mid".into();
    let top: Arc<str> = "top".into();
    let one = FnOperator::new("one", |_| Ok(Value::Scalar(ScalarValue::Int64(Some(1)))));
    let add = FnOperator::new("add", |inputs: &[Arc<Value>]| {
        let mut s = 0;
        for v in inputs {
            if let Value::Scalar(ScalarValue::Int64(Some(x))) = v.as_ref() {
                s += x;
            }
        }
        Ok(Value::Scalar(ScalarValue::Int64(Some(s))))
    });
    let mut g = Graph::new();
    g.add_layer(Layer {
        name: leaves.clone(),
        tasks: (0..100_000)
            .map(|i| Task {
                key: Key::new(&leaves, i),
                deps: vec![],
                op: one.clone(),
            })
            .collect(),
    });
    g.add_layer(Layer {
        name: mid.clone(),
        tasks: (0..1000)
            .map(|i| Task {
                key: Key::new(&mid, i),
                deps: (0..100).map(|j| Key::new(&leaves, i * 100 + j)).collect(),
                op: add.clone(),
            })
            .collect(),
    });
    g.add_layer(Layer {
        name: top.clone(),
        tasks: vec![Task {
            key: Key::new(&top, 0),
            deps: (0..1000).map(|i| Key::new(&mid, i)).collect(),
            op: add.clone(),
        }],
    });
    let session = Session::new().unwrap();
    let mut group = c.benchmark_group("scheduler");
    group.throughput(Throughput::Elements(101_001));
    group.sample_size(10);
    group.bench_function("101k trivial tasks (compile + run)", |b| {
        b.iter(|| {
            let exec = g.compile(&[Key::new(&top, 0)]).unwrap();
            session.executor().run(&exec).unwrap()
        })
    });
    group.finish();
}

fn g1_dir(rows: u64, k: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_groupby(
        dir.path(),
        &GroupbySpec {
            rows,
            k,
            files: 1,
            seed: 1,
            null_percent: 0,
        },
    )
    .unwrap();
    dir
}

/// Decoding one 1e6-row G1 file (about 51 MB), on one thread.
fn csv_decode(c: &mut Criterion) {
    let dir = g1_dir(1_000_000, 100);
    let bytes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let session = Session::builder()
        .with_threads(1)
        .with_blocksize(1 << 30)
        .build()
        .unwrap();
    let glob = format!("{}/*.csv", dir.path().display());
    let df = session.read_csv(&glob).load().unwrap();
    let mut group = c.benchmark_group("csv-decode");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(10);
    group.bench_function("all 9 columns", |b| b.iter(|| df.num_rows().unwrap()));
    group.bench_function("all 9 columns decoded", |b| {
        b.iter(|| df.compute().unwrap().num_rows())
    });
    group.bench_function("2 columns (id1, v1)", |b| {
        b.iter(|| {
            df.select(&["id1", "v1"])
                .unwrap()
                .compute()
                .unwrap()
                .num_rows()
        })
    });
    group.finish();
}

/// Reading a 1e6-row G1 file (2 columns) cut into 4 MiB blocks, plain and with a
/// quoted field holding a line break every 100 rows (so blocks start inside quotes
/// and check their guess), and the same file gzip-compressed (streamed, one
/// partition), on one thread.
fn csv_read_shapes(c: &mut Criterion) {
    use std::io::Write;
    let dir = g1_dir(1_000_000, 100);
    let plain = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&plain).unwrap();
    let quoted_dir = tempfile::tempdir().unwrap();
    let mut quoted = String::with_capacity(text.len() + text.len() / 50);
    for (i, line) in text.lines().enumerate() {
        if i > 0 && i % 100 == 0 {
            // id3 is text ("id0000012345"): quote it around a line break.
            let mut f: Vec<&str> = line.split(',').collect();
            let broken = format!("\"{}\n\"", f[2]);
            f[2] = &broken;
            quoted.push_str(&f.join(","));
        } else {
            quoted.push_str(line);
        }
        quoted.push('\n');
    }
    std::fs::write(quoted_dir.path().join("q.csv"), &quoted).unwrap();
    let gz_dir = tempfile::tempdir().unwrap();
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(gz_dir.path().join("g.csv.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap();
    let session = Session::builder()
        .with_threads(1)
        .with_blocksize(4 << 20)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("csv-read");
    group.sample_size(10);
    for (name, glob, bytes) in [
        (
            "plain, 4 MiB blocks",
            format!("{}/*.csv", dir.path().display()),
            text.len(),
        ),
        (
            "quoted line breaks, 4 MiB blocks",
            format!("{}/*.csv", quoted_dir.path().display()),
            quoted.len(),
        ),
        (
            "gzip, streamed",
            format!("{}/*.gz", gz_dir.path().display()),
            text.len(),
        ),
    ] {
        let df = session.read_csv(&glob).load().unwrap();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                df.select(&["id1", "v1"])
                    .unwrap()
                    .compute()
                    .unwrap()
                    .num_rows()
            })
        });
    }
    group.finish();
}

/// Groupby-sum rows/s on decoded, in-memory batches at 100, 100k, 1M and 10M groups.
fn groupby(c: &mut Criterion) {
    let mut group = c.benchmark_group("groupby-sum");
    group.sample_size(10);
    for (k, key) in [(100u64, "id4"), (100, "id1"), (10, "id6"), (100, "id3")] {
        let rows = 2_000_000u64;
        let dir = g1_dir(rows, k);
        let session = Session::builder()
            .with_threads(1)
            .with_blocksize(1 << 30)
            .build()
            .unwrap();
        let df = session
            .read_csv(format!("{}/*.csv", dir.path().display()))
            .load()
            .unwrap();
        let batch = df.select(&[key, "v1"]).unwrap().compute().unwrap();
        let groups = df
            .groupby(&[key])
            .unwrap()
            .agg(&[sum("v1")])
            .unwrap()
            .compute()
            .unwrap()
            .num_rows();
        bench_chunk_finalize(&mut group, &format!("{key} ({groups} groups)"), key, &batch);
    }
    // Ten million groups: a shuffled Int64 key with every value distinct, made in
    // memory (a G1 file set this large would dominate the benchmark's setup).
    let rows = 10_000_000u64;
    let mut keys: Vec<i64> = (0..rows as i64).collect();
    keys.shuffle(&mut Pcg64Mcg::seed_from_u64(7));
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(keys)) as ArrayRef),
        (
            "v1",
            Arc::new(Int64Array::from_iter_values(
                (0..rows as i64).map(|i| i % 5),
            )) as ArrayRef,
        ),
    ])
    .unwrap();
    bench_chunk_finalize(&mut group, "int key (10000000 groups)", "id", &batch);
    group.finish();
}

/// One partition's groupby-sum of `v1` by `key` over an in-memory batch: chunk, then
/// finalize (which sorts the groups).
fn bench_chunk_finalize(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    key: &str,
    batch: &RecordBatch,
) {
    let plan = outcore::agg::AggregatePlan::new(
        &batch.schema(),
        vec![key.into()],
        vec![sum("v1")],
        false,
        false,
    )
    .unwrap();
    let rows = batch.num_rows() as u64;
    group.throughput(Throughput::Elements(rows));
    group.bench_with_input(BenchmarkId::new(name, rows), batch, |b, batch| {
        b.iter(|| {
            plan.finalize(&[&plan.chunk(batch).unwrap()])
                .unwrap()
                .num_rows()
        })
    });
}

criterion_group!(benches, scheduler, csv_decode, csv_read_shapes, groupby);
criterion_main!(benches);

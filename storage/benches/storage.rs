//! Storage throughput in bytes per second, against a plain sequential file write
//! as the baseline (all without fsync, as the stores themselves: spilled data need
//! not survive the process, so it mostly lands in the page cache).
//!
//! - `file_write/baseline`: 64 MiB in 1 MiB `write_all`s to a fresh file.
//! - `spill/put`, `spill/get`: 64 Arrow batches of 1 MiB (an i64 and an f64 column)
//!   through a `SpillCache` with a budget of 0, so every put encodes (Arrow IPC,
//!   LZ4) and writes a file, and every get reads, checks and decodes one.
//! - `shuffle/append`, `shuffle/get`: 64 MiB in 64 KiB pieces over 32 partitions
//!   with an 8 MiB budget (append includes the final `flush`), then every
//!   partition read back.
//!
//! Set `OUTCORE_BENCH_DIR` to put the files elsewhere than the system temp folder.
//! Run with `cargo bench -p outcore-storage`.

use std::hint::black_box;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use criterion::{criterion_main, Criterion, Throughput};
use outcore_storage::codec::{decode_batches, encode_batches};
use outcore_storage::shuffle::{ShuffleOptions, ShuffleService};
use outcore_storage::spill::{SpillCache, Spillable};
use outcore_storage::{Error, Result};

const MIB: usize = 1 << 20;
const TOTAL: usize = 64 * MIB;

/// A partition as the scheduler would spill it.
struct Batch(RecordBatch);

impl Spillable for Batch {
    fn size_bytes(&self) -> usize {
        self.0.get_array_memory_size()
    }
    fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        encode_batches(&self.0.schema(), std::slice::from_ref(&self.0), out)
    }
    fn decode(bytes: &[u8]) -> Result<Self> {
        let (schema, mut batches) = decode_batches(bytes)?;
        match batches.len() {
            1 => Ok(Batch(batches.remove(0))),
            _ => arrow::compute::concat_batches(&schema, &batches)
                .map(Batch)
                .map_err(|e| Error::Corrupt(e.to_string())),
        }
    }
}

/// Where the bench's files go.
fn bench_parent() -> PathBuf {
    std::env::var_os("OUTCORE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// xorshift64: random-ish, seeded, no dependency.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// 1 MiB of data: 65,536 rows of (i64 ids below a million, f64 prices), so LZ4
/// finds some but not much to squeeze, as in real columns.
fn batch(seed: u64) -> RecordBatch {
    let rows = MIB / 16;
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let ids: Vec<i64> = (0..rows)
        .map(|_| (next(&mut x) % 1_000_000) as i64)
        .collect();
    let prices: Vec<f64> = (0..rows)
        .map(|_| (next(&mut x) % 100_000) as f64 / 100.0)
        .collect();
    RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        ("price", Arc::new(Float64Array::from(prices)) as ArrayRef),
    ])
    .expect("two columns of equal length")
}

fn file_write(c: &mut Criterion) {
    let mut group = c.benchmark_group("file_write");
    group.throughput(Throughput::Bytes(TOTAL as u64));
    let dir = tempfile::tempdir_in(bench_parent()).expect("bench temp folder");
    let chunk = vec![0x5au8; MIB];
    group.bench_function("baseline", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let path = dir.path().join(format!("baseline-{i}"));
                let start = Instant::now();
                let mut f = std::fs::File::create(&path).expect("create");
                for _ in 0..TOTAL / MIB {
                    f.write_all(&chunk).expect("write");
                }
                drop(f);
                total += start.elapsed();
                std::fs::remove_file(&path).expect("remove");
            }
            total
        })
    });
    group.finish();
}

fn spill(c: &mut Criterion) {
    let values: Vec<Arc<Batch>> = (0..(TOTAL / MIB) as u64)
        .map(|i| Arc::new(Batch(batch(i))))
        .collect();
    let bytes: usize = values.iter().map(|v| v.size_bytes()).sum();
    let parent = bench_parent();
    let mut group = c.benchmark_group("spill");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("put", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let cache = SpillCache::<Batch>::new(&parent, 0).expect("spill cache");
                let start = Instant::now();
                for (k, v) in values.iter().enumerate() {
                    cache.put(k as u64, v.clone()).expect("put");
                }
                total += start.elapsed();
                assert_eq!(cache.stats().spilled_values, values.len() as u64);
            }
            total
        })
    });
    let cache = SpillCache::<Batch>::new(&parent, 0).expect("spill cache");
    for (k, v) in values.iter().enumerate() {
        cache.put(k as u64, v.clone()).expect("put");
    }
    group.bench_function("get", |b| {
        b.iter(|| {
            for k in 0..values.len() as u64 {
                black_box(cache.get(k).expect("get").expect("present"));
            }
        })
    });
    let s = cache.stats();
    eprintln!(
        "spill: {} MiB of batches in {:.1} MiB of files ({:.3} file bytes per byte)",
        bytes / MIB,
        s.spilled_bytes as f64 / MIB as f64,
        s.spilled_bytes as f64 / bytes as f64
    );
    group.finish();
}

fn shuffle(c: &mut Criterion) {
    const PARTITIONS: usize = 32;
    const PIECE: usize = 64 << 10;
    let options = || ShuffleOptions {
        budget_bytes: 8 * MIB,
        ..ShuffleOptions::default()
    };
    // Random-ish bytes, so sled stores what a shuffle of encoded batches would.
    let mut x = 7u64;
    let data: Vec<u8> = (0..TOTAL).map(|_| next(&mut x) as u8).collect();
    let fill = |store: &ShuffleService| {
        for (i, piece) in data.chunks(PIECE).enumerate() {
            let writer = (i / PARTITIONS) as u64;
            store.append(i % PARTITIONS, writer, piece).expect("append");
        }
        store.flush().expect("flush");
    };
    let parent = bench_parent();
    let mut group = c.benchmark_group("shuffle");
    group.throughput(Throughput::Bytes(TOTAL as u64));
    group.bench_function("append", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let store =
                    ShuffleService::new(&parent, PARTITIONS, options()).expect("shuffle store");
                let start = Instant::now();
                fill(&store);
                total += start.elapsed();
            }
            total
        })
    });
    let store = ShuffleService::new(&parent, PARTITIONS, options()).expect("shuffle store");
    fill(&store);
    group.bench_function("get", |b| {
        b.iter(|| {
            for p in 0..PARTITIONS {
                black_box(store.get(p).expect("get"));
            }
        })
    });
    let s = store.stats();
    eprintln!(
        "shuffle: size_on_disk / bytes_appended = {} / {} = {:.3} (flushes {}, peak buffered {:.1} MiB)",
        s.size_on_disk,
        s.bytes_appended,
        s.size_on_disk as f64 / s.bytes_appended as f64,
        s.flushes,
        s.peak_buffered_bytes as f64 / MIB as f64
    );
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// The benches, with short runs: each iteration moves 64 MiB already.
#[allow(missing_docs)] // criterion_group! makes an undocumented function.
mod group {
    use super::{config, file_write, shuffle, spill};
    criterion::criterion_group! {
        name = benches;
        config = config();
        targets = file_write, spill, shuffle
    }
}
criterion_main!(group::benches);

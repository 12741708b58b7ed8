//! Peak RSS of the shuffle store while appending and reading back a volume of
//! bytes, against sled holding the same bytes (the store's former layout: 4 KiB
//! values, an 8 MiB cache). Run each mode in its own process:
//!
//! ```text
//! cargo run --release -p outcore-storage --example shuffle_rss -- files 600
//! cargo run --release -p outcore-storage --example shuffle_rss -- sled 600
//! ```
//!
//! Prints the peak RSS (VmHWM) after appending and after reading every piece back.

use outcore_storage::shuffle::{ShuffleOptions, ShuffleService};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("files", String::as_str);
    let mib: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(600);
    const PIECE: usize = 64 << 10;
    const PARTITIONS: usize = 16;
    // Bytes that do not compress to nothing, as encoded batches would not.
    let piece: Vec<u8> = (0..PIECE as u64)
        .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
        .collect();
    let n = (mib << 20) / PIECE;
    let parent = tempfile::tempdir().expect("temporary folder");
    let base = peak_rss_kib();
    let mut read = 0usize;
    match mode {
        "files" => {
            let options = ShuffleOptions {
                budget_bytes: 8 << 20,
                ..ShuffleOptions::default()
            };
            let store = ShuffleService::new(parent.path(), PARTITIONS, options).expect("store");
            for i in 0..n {
                store.append(i % PARTITIONS, 0, &piece).expect("append");
            }
            store.flush().expect("flush");
            println!(
                "files: appended {mib} MiB: peak RSS {} KiB (start {base} KiB)",
                peak_rss_kib()
            );
            for p in 0..PARTITIONS {
                for got in store.pieces(p).expect("pieces") {
                    read += got.expect("piece").len();
                }
                store.drop_partition(p).expect("drop");
            }
        }
        "sled" => {
            let db = sled::Config::new()
                .path(parent.path().join("sled"))
                .temporary(true)
                .cache_capacity(8 << 20)
                .mode(sled::Mode::HighThroughput)
                .flush_every_ms(None)
                .open()
                .expect("sled");
            for i in 0..n {
                let mut batch = sled::Batch::default();
                for (j, chunk) in piece.chunks(4 << 10).enumerate() {
                    let key = [(i as u64).to_be_bytes(), (j as u64).to_be_bytes()].concat();
                    batch.insert(key, chunk);
                }
                db.apply_batch(batch).expect("insert");
            }
            println!(
                "sled: appended {mib} MiB: peak RSS {} KiB (start {base} KiB)",
                peak_rss_kib()
            );
            for kv in db.iter() {
                read += kv.expect("read").1.len();
            }
        }
        other => panic!("mode {other}: files or sled"),
    }
    assert_eq!(read, n * PIECE);
    println!(
        "{mode}: read back {} MiB: peak RSS {} KiB",
        read >> 20,
        peak_rss_kib()
    );
}

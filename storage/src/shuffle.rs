//! The shuffle store (Dask's partd contract): during a shuffle every input
//! partition appends pieces of bytes to output partitions; afterwards each output
//! partition reads all of its pieces back. Pieces are buffered in memory per output
//! partition under one byte budget and flushed to a sled database on disk.
//!
//! ```text
//!   append(p, writer, bytes) ──► buffer p (one Mutex each) ──over budget──► sled
//!                                  │  the appender flushes the largest buffer,  │
//!                                  │  outside that buffer's lock                │
//!   get(p) ◄── buffer p + flushes in flight + flushes of p (by key) ◄───────────┘
//!              sorted by (writer, sequence), duplicates dropped
//! ```
//!
//! A flush is one atomic sled batch of 4 KiB values (see `SLED_VALUE_BYTES` for
//! why small ones) keyed (partition, writer that flushed, flush sequence, chunk).
//!
//! Invariants:
//! - Every piece lives in exactly one of: its partition's buffer, a flush in flight
//!   (visible to `get` until sled has it), a flush in sled that the partition
//!   lists. `get` snapshots all three under the partition's lock and then reads the
//!   listed keys, so a concurrent flush can only make it see a piece twice, and
//!   every piece has a unique sequence number, which drops the duplicate.
//! - Flushes are found by the keys each partition lists, not by a prefix scan:
//!   with sled 0.34 we saw a `scan_prefix` running beside inserts miss values whose
//!   insert had returned before the scan began (test
//!   `get_during_appends_misses_nothing_and_sees_nothing_twice`); point reads do
//!   not. The keys still start with the partition number, so a scan lists a
//!   partition when nothing writes.
//! - `get` returns pieces ordered by (writer, append order), whatever the flush
//!   timing.
//! - Buffered bytes (including flushes in flight) stay under
//!   `budget_bytes + threads appending at once × (largest piece + 28 bytes)`: each
//!   appender adds one piece, then does not return until the total is back under
//!   the budget, so at most one piece per appending thread is above it.
//!
//! Sled is used as a temporary store: no fsync, a small page cache (its default
//! cache of 1 GiB would blow our memory limit), and a folder deleted on drop. Sled
//! is log-structured and does not reclaim space during a write burst: expect its
//! files to take about 1.7–2.6 bytes per byte appended ([`ShuffleStats::size_on_disk`]).

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::error::{Error, Result};
use crate::workdir::WorkDir;

/// Knobs of a [`ShuffleService`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShuffleOptions {
    /// Bytes the buffers of all partitions may hold together (default 64 MiB).
    pub budget_bytes: usize,
    /// Once an appender starts flushing, it keeps flushing the largest buffers until
    /// it has written at least this many bytes (default 1 MiB), so that with many
    /// small buffers the store does not write one tiny sled value per append.
    pub min_flush_bytes: usize,
    /// Sled's page cache (default 8 MiB). Sled's memory goes past it (see
    /// `SLED_VALUE_BYTES`), so keep it small and count it in the memory limit.
    pub sled_cache_bytes: u64,
}

impl Default for ShuffleOptions {
    fn default() -> Self {
        ShuffleOptions {
            budget_bytes: 64 << 20,
            min_flush_bytes: 1 << 20,
            sled_cache_bytes: 8 << 20,
        }
    }
}

/// What the store has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShuffleStats {
    /// Bytes of pieces appended (without framing).
    pub bytes_appended: u64,
    /// Pieces appended.
    pub pieces_appended: u64,
    /// Bytes written to sled as values (pieces with their 28-byte frames).
    pub bytes_flushed: u64,
    /// Flushes written to sled (each one atomic batch of values).
    pub flushes: u64,
    /// Bytes of flushes read back from sled by `get`.
    pub bytes_read: u64,
    /// The most bytes the buffers (and flushes in flight) have held at once.
    pub peak_buffered_bytes: u64,
    /// Sled's own estimate of its files' size.
    pub size_on_disk: u64,
}

/// Each piece in a buffer or sled value is framed as writer, sequence, length
/// (u64 LE each), the CRC32 of its bytes (u32 LE), then its bytes. The checksum is
/// the piece's own: sled checks its log, but not that what we read back is what
/// this piece was.
const FRAME_LEN: usize = 28;
/// The writer named in the sled key of a flush made by [`ShuffleService::flush`].
const FLUSH_ALL: u64 = u64::MAX;

/// The bytes of one flush are stored as sled values of at most this size. Sled
/// 0.34.7 does not keep its memory within `cache_capacity`: it accounts for a
/// value by its size in the log, which for a value over ~128 KiB (stored as a blob
/// file) is a small pointer, so big values stay in memory for good. Measured on 1
/// GiB inserted then read back and removed, with an 8 MiB cache: 1 MiB values grew
/// the process by 1 GiB; 64 KiB values by 457 MiB; 16 KiB by 120 MiB; 8 KiB by 81
/// MiB; 4 KiB by 71 MiB, at 176 MiB/s insert and 429 MiB/s read (16 KiB: 114 and
/// 1,043 MiB/s). Small values keep sled's memory flat whatever the data size.
const SLED_VALUE_BYTES: usize = 4 << 10;

/// Names one flush in sled: partition (u32 BE), writer that flushed (u64 BE), flush
/// sequence (u64 BE); each chunk's key appends its index (u32 BE). Big endian, so
/// one partition's values, and one flush's chunks, are contiguous and in order.
#[derive(Clone, Copy)]
struct FlushKey {
    prefix: [u8; 20],
    chunks: u32,
}

impl FlushKey {
    fn chunk(&self, index: u32) -> [u8; 24] {
        let mut key = [0u8; 24];
        key[..20].copy_from_slice(&self.prefix);
        key[20..].copy_from_slice(&index.to_be_bytes());
        key
    }

    /// A batch that removes every chunk.
    fn remove_batch(&self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for i in 0..self.chunks {
            batch.remove(&self.chunk(i)[..]);
        }
        batch
    }
}

/// One output partition's buffered pieces.
#[derive(Default)]
struct Buffer {
    /// Framed pieces not yet taken for a flush.
    bytes: Vec<u8>,
    /// Buffers taken for a flush that sled does not have yet, by flush sequence.
    in_flight: Vec<(u64, Arc<Vec<u8>>)>,
    /// This partition's flushes in sled, added once their write returned.
    flushed: Vec<FlushKey>,
    /// Bumped by `drop_partition`: a flush that started under an older epoch
    /// deletes what it wrote instead of resurrecting the partition.
    epoch: u64,
}

struct Partition {
    buffer: Mutex<Buffer>,
    /// `buffer.bytes.len()`, readable without the lock to pick the largest buffer.
    len: AtomicUsize,
}

impl Partition {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Counters {
    bytes_appended: AtomicU64,
    pieces_appended: AtomicU64,
    bytes_flushed: AtomicU64,
    flushes: AtomicU64,
    bytes_read: AtomicU64,
    peak_buffered_bytes: AtomicUsize,
}

/// A store of byte pieces per output partition, buffered under a budget and spilled
/// to sled. Shared by the shuffle's tasks through `&self`.
pub struct ShuffleService {
    partitions: Box<[Partition]>,
    options: ShuffleOptions,
    /// Bytes held by all buffers plus flushes in flight.
    buffered: AtomicUsize,
    /// Sequence numbers for pieces and flushes, unique within the store.
    seq: AtomicU64,
    /// Appenders that found every buffered byte already being flushed wait here for
    /// a flush to finish.
    room: Condvar,
    room_lock: Mutex<()>,
    counters: Counters,
    /// Bytes sled writes may still write before they fail (fault injection);
    /// `u64::MAX` means no limit.
    write_allowance: AtomicU64,
    /// Declared before `dir`, so it is dropped (its files closed) before the folder
    /// is removed.
    db: sled::Db,
    /// Holds sled's files (in `sled/`) and a lock file naming this process, so a
    /// later run removes the folder if we are killed.
    dir: WorkDir,
}

impl ShuffleService {
    /// Opens one sled database in a fresh folder `outcore-shuffle-XXXXXX` under
    /// `parent` (created if missing); the folder is deleted on drop. Errors name the
    /// path.
    pub fn new(parent: &Path, npartitions: usize, options: ShuffleOptions) -> Result<Self> {
        if u32::try_from(npartitions).is_err() {
            return Err(Error::Invalid(format!(
                "shuffle: {npartitions} partitions, at most {} are supported",
                u32::MAX
            )));
        }
        let dir = WorkDir::new(parent, "outcore-shuffle-")?;
        // `temporary`: sled skips fsync (we never read a shuffle after a crash) and
        // removes its files on drop.
        let db = sled::Config::new()
            .path(dir.path().join("sled"))
            .temporary(true)
            .cache_capacity(options.sled_cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(None)
            .open()
            .map_err(|e| Error::io(dir.path(), e.into()))?;
        let partitions = (0..npartitions)
            .map(|_| Partition {
                buffer: Mutex::new(Buffer::default()),
                len: AtomicUsize::new(0),
            })
            .collect();
        Ok(ShuffleService {
            partitions,
            options,
            buffered: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            room: Condvar::new(),
            room_lock: Mutex::new(()),
            counters: Counters::default(),
            write_allowance: AtomicU64::new(u64::MAX),
            db,
            dir,
        })
    }

    /// How many output partitions the store has.
    pub fn npartitions(&self) -> usize {
        self.partitions.len()
    }

    /// The store's folder (sled's files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Adds one piece for `partition` from `writer` (e.g. the input partition's
    /// number). Safe from many threads at once with no store-wide lock. When the
    /// buffers of all partitions exceed the budget, the caller flushes the largest
    /// ones to sled before returning (or waits for other threads' flushes), which is
    /// how appenders feel back-pressure.
    ///
    /// Pieces from one writer keep their order if that writer appends from one
    /// thread at a time. On `Err` (sled failed; the error names the store's folder)
    /// no piece is lost: the buffer that failed to flush is kept in memory.
    pub fn append(&self, partition: usize, writer: u64, bytes: &[u8]) -> Result<()> {
        let part = self.partition(partition, "append")?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let framed = FRAME_LEN + bytes.len();
        // Outside the lock: other appenders to this partition need not wait for it.
        let crc = crc32fast::hash(bytes);
        let now = {
            let mut buffer = part.lock();
            buffer.bytes.reserve(framed);
            buffer.bytes.extend_from_slice(&writer.to_le_bytes());
            buffer.bytes.extend_from_slice(&seq.to_le_bytes());
            buffer
                .bytes
                .extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            buffer.bytes.extend_from_slice(&crc.to_le_bytes());
            buffer.bytes.extend_from_slice(bytes);
            part.len.store(buffer.bytes.len(), Ordering::Relaxed);
            // Counted under the lock: once we let go, a flush may take these bytes
            // and subtract them, and the total must never dip below zero.
            self.buffered.fetch_add(framed, Ordering::SeqCst) + framed
        };
        let c = &self.counters;
        c.peak_buffered_bytes.fetch_max(now, Ordering::Relaxed);
        c.bytes_appended
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        c.pieces_appended.fetch_add(1, Ordering::Relaxed);
        if now > self.options.budget_bytes {
            self.make_room(writer)?;
        }
        Ok(())
    }

    /// Writes every buffer to sled (e.g. at the end of the write phase), so the
    /// memory is free for the read phase.
    pub fn flush(&self) -> Result<()> {
        for index in 0..self.partitions.len() {
            self.flush_partition(index, FLUSH_ALL)?;
        }
        Ok(())
    }

    /// Every piece appended for `partition` so far, ordered by writer and, within a
    /// writer, by order of append, whatever the flush timing.
    pub fn get(&self, partition: usize) -> Result<Vec<Vec<u8>>> {
        let part = self.partition(partition, "get")?;
        // One snapshot of where the pieces are; a piece flushed after it is seen
        // twice (and deduplicated by sequence), never missed.
        let (buffered, in_flight, keys, epoch) = {
            let buffer = part.lock();
            let in_flight: Vec<_> = buffer.in_flight.iter().map(|(_, b)| b.clone()).collect();
            (
                buffer.bytes.clone(),
                in_flight,
                buffer.flushed.clone(),
                buffer.epoch,
            )
        };
        let corrupt = |reason: String| Error::CorruptShuffle {
            dir: self.dir().to_path_buf(),
            partition,
            reason,
        };
        let mut pieces = Vec::new();
        let mut split = |bytes: &[u8]| split_frames(bytes, &mut pieces).map_err(corrupt);
        split(&buffered)?;
        drop(buffered);
        for bytes in in_flight {
            split(&bytes)?;
        }
        let mut flush = Vec::new();
        'flushes: for key in keys {
            flush.clear();
            for i in 0..key.chunks {
                match self.db.get(key.chunk(i)).map_err(|e| self.sled_error(e))? {
                    Some(value) => flush.extend_from_slice(&value),
                    // A concurrent drop_partition deleted it: not ours to show.
                    None if part.lock().epoch != epoch => continue 'flushes,
                    None => {
                        return Err(corrupt(format!(
                            "chunk {i} of {} of a flush is missing from the store",
                            key.chunks
                        )))
                    }
                }
            }
            self.counters
                .bytes_read
                .fetch_add(flush.len() as u64, Ordering::Relaxed);
            split(&flush)?;
        }
        pieces.sort_unstable_by_key(|&(writer, seq, _)| (writer, seq));
        pieces.dedup_by_key(|&mut (_, seq, _)| seq);
        Ok(pieces.into_iter().map(|(_, _, p)| p).collect())
    }

    /// Forgets `partition`: frees its buffer and deletes its sled values. Pieces
    /// appended afterwards start a new, empty partition.
    pub fn drop_partition(&self, partition: usize) -> Result<()> {
        let part = self.partition(partition, "drop_partition")?;
        let (freed, keys) = {
            let mut buffer = part.lock();
            buffer.epoch += 1;
            // Flushes in flight still hold their memory (and count it until they
            // finish, then delete what they wrote); we only stop showing their pieces.
            buffer.in_flight.clear();
            part.len.store(0, Ordering::Relaxed);
            let keys = std::mem::take(&mut buffer.flushed);
            (std::mem::take(&mut buffer.bytes).len(), keys)
        };
        self.buffered.fetch_sub(freed, Ordering::SeqCst);
        self.notify_room();
        for key in keys {
            self.db
                .apply_batch(key.remove_batch())
                .map_err(|e| self.sled_error(e))?;
        }
        Ok(())
    }

    /// Counters, and sled's size on disk.
    pub fn stats(&self) -> ShuffleStats {
        let c = &self.counters;
        ShuffleStats {
            bytes_appended: c.bytes_appended.load(Ordering::Relaxed),
            pieces_appended: c.pieces_appended.load(Ordering::Relaxed),
            bytes_flushed: c.bytes_flushed.load(Ordering::Relaxed),
            flushes: c.flushes.load(Ordering::Relaxed),
            bytes_read: c.bytes_read.load(Ordering::Relaxed),
            peak_buffered_bytes: c.peak_buffered_bytes.load(Ordering::Relaxed) as u64,
            // Only an estimate for the stats; an error here is not worth failing for.
            size_on_disk: self.db.size_on_disk().unwrap_or(0),
        }
    }

    /// Fault injection for tests: sled writes beyond `bytes` more bytes fail with
    /// [`Error::Io`] naming the store's folder; `u64::MAX` lifts the limit.
    #[doc(hidden)]
    pub fn fail_writes_after(&self, bytes: u64) {
        self.write_allowance.store(bytes, Ordering::SeqCst);
    }

    fn partition(&self, index: usize, op: &str) -> Result<&Partition> {
        self.partitions.get(index).ok_or_else(|| {
            Error::Invalid(format!(
                "shuffle {op}: partition {index} out of range (the store has {})",
                self.partitions.len()
            ))
        })
    }

    /// Flushes the largest buffers while the total is over budget (and, once
    /// started, until `min_flush_bytes` are written); waits if everything buffered
    /// is already being flushed by others.
    fn make_room(&self, writer: u64) -> Result<()> {
        let budget = self.options.budget_bytes;
        let mut flushed = 0;
        loop {
            let over = self.buffered.load(Ordering::SeqCst) > budget;
            if !over && (flushed == 0 || flushed >= self.options.min_flush_bytes) {
                return Ok(());
            }
            match self.flush_largest(writer)? {
                Some(n) => flushed += n,
                None if !over => return Ok(()),
                None => {
                    let mut guard = self
                        .room_lock
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    // Flushers lower `buffered` before they take `room_lock` to
                    // notify, so checking under the lock cannot miss a wake-up.
                    while self.buffered.load(Ordering::SeqCst) > budget && self.largest().is_none()
                    {
                        guard = self
                            .room
                            .wait(guard)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                }
            }
        }
    }

    /// The partition with the most buffered bytes not already being flushed.
    fn largest(&self) -> Option<usize> {
        let (index, len) = self
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p.len.load(Ordering::Relaxed)))
            .max_by_key(|&(_, len)| len)?;
        (len > 0).then_some(index)
    }

    /// Flushes the largest buffer; `None` if every buffer is empty.
    fn flush_largest(&self, writer: u64) -> Result<Option<usize>> {
        while let Some(index) = self.largest() {
            // Another thread may have taken it since we looked; then look again.
            if let Some(n) = self.flush_partition(index, writer)? {
                return Ok(Some(n));
            }
        }
        Ok(None)
    }

    /// Takes partition `index`'s buffer and writes it to sled (as one atomic batch of
    /// `SLED_VALUE_BYTES` values), outside the buffer's lock; returns the bytes
    /// written, or `None` if it was empty. On failure the bytes go back into the
    /// buffer.
    fn flush_partition(&self, index: usize, writer: u64) -> Result<Option<usize>> {
        let part = &self.partitions[index];
        let (data, epoch, flush_seq) = {
            let mut buffer = part.lock();
            if buffer.bytes.is_empty() {
                return Ok(None);
            }
            let data = Arc::new(std::mem::take(&mut buffer.bytes));
            part.len.store(0, Ordering::Relaxed);
            let flush_seq = self.seq.fetch_add(1, Ordering::Relaxed);
            buffer.in_flight.push((flush_seq, data.clone()));
            (data, buffer.epoch, flush_seq)
        };
        let mut prefix = [0u8; 20];
        prefix[..4].copy_from_slice(&(index as u32).to_be_bytes());
        prefix[4..12].copy_from_slice(&writer.to_be_bytes());
        prefix[12..].copy_from_slice(&flush_seq.to_be_bytes());
        let key = FlushKey {
            prefix,
            // A flush is at most the budget plus a few pieces, far below 16 TiB.
            chunks: u32::try_from(data.len().div_ceil(SLED_VALUE_BYTES)).unwrap_or(u32::MAX),
        };
        let written = self.write(&key, &data);

        let (dropped, kept) = {
            let mut buffer = part.lock();
            buffer.in_flight.retain(|(s, _)| *s != flush_seq);
            let dropped = buffer.epoch != epoch;
            let kept = written.is_err() && !dropped;
            if written.is_ok() && !dropped {
                buffer.flushed.push(key);
            }
            if kept {
                // Order inside a buffer does not matter: `get` sorts by sequence.
                buffer.bytes.extend_from_slice(&data);
                part.len.store(buffer.bytes.len(), Ordering::Relaxed);
            }
            (dropped, kept)
        };
        if !kept {
            self.buffered.fetch_sub(data.len(), Ordering::SeqCst);
        }
        self.notify_room();
        written?;
        let c = &self.counters;
        c.flushes.fetch_add(1, Ordering::Relaxed);
        c.bytes_flushed
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if dropped {
            // The partition was dropped while we wrote, before our key was listed.
            self.db
                .apply_batch(key.remove_batch())
                .map_err(|e| self.sled_error(e))?;
        }
        Ok(Some(data.len()))
    }

    /// Writes one flush's chunks as one atomic sled batch (so a failure leaves
    /// nothing behind), honouring the fault-injection allowance.
    fn write(&self, key: &FlushKey, data: &[u8]) -> Result<()> {
        let want = data.len() as u64;
        let allowed = self
            .write_allowance
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                match left {
                    u64::MAX => None,
                    // Once the allowance runs out, every later write fails too.
                    _ => Some(left.saturating_sub(want)),
                }
            })
            .map_or(true, |left| left >= want);
        if !allowed {
            return Err(Error::io(
                self.dir(),
                std::io::Error::other("injected write failure"),
            ));
        }
        let mut batch = sled::Batch::default();
        for (i, chunk) in (0..).zip(data.chunks(SLED_VALUE_BYTES)) {
            batch.insert(&key.chunk(i)[..], chunk);
        }
        self.db.apply_batch(batch).map_err(|e| self.sled_error(e))
    }

    fn sled_error(&self, e: sled::Error) -> Error {
        Error::io(self.dir(), e.into())
    }

    fn notify_room(&self) {
        let _guard = self
            .room_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.room.notify_all();
    }
}

/// Splits framed pieces into (writer, sequence, bytes), copying each piece out and
/// checking its checksum; `Err` says which frame is bad and how.
fn split_frames(mut chunk: &[u8], out: &mut Vec<(u64, u64, Vec<u8>)>) -> Result<(), String> {
    let total = chunk.len();
    let word = |b: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        u64::from_le_bytes(w)
    };
    while !chunk.is_empty() {
        let at = total - chunk.len();
        let cut = || format!("the piece framed at byte {at} is cut short");
        let Some((header, rest)) = chunk.split_at_checked(FRAME_LEN) else {
            return Err(cut());
        };
        let len = usize::try_from(word(&header[16..24])).map_err(|_| cut())?;
        let Some((piece, rest)) = rest.split_at_checked(len) else {
            return Err(cut());
        };
        let (writer, seq) = (word(&header[..8]), word(&header[8..16]));
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&header[24..28]);
        if crc32fast::hash(piece) != u32::from_le_bytes(crc) {
            return Err(format!(
                "the piece from writer {writer} (sequence {seq}, {len} bytes) is corrupt: checksum mismatch"
            ));
        }
        out.push((writer, seq, piece.to_vec()));
        chunk = rest;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn tiny(budget_bytes: usize) -> ShuffleOptions {
        ShuffleOptions {
            budget_bytes,
            min_flush_bytes: 256,
            sled_cache_bytes: 1 << 20,
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append {
            partition: usize,
            writer: u64,
            len: usize,
        },
        Get(usize),
        Drop(usize),
        Flush,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0..4usize, 0..3u64, 0..600usize)
                .prop_map(|(partition, writer, len)| Op::Append { partition, writer, len }),
            2 => (0..4usize).prop_map(Op::Get),
            1 => (0..4usize).prop_map(Op::Drop),
            1 => Just(Op::Flush),
        ]
    }

    /// Random append/get/drop/flush sequences against a map of pieces, with a 2 KiB
    /// budget, so most pieces are read back from sled.
    #[test]
    fn shuffle_matches_model() {
        const BUDGET: usize = 2 << 10;
        let parent = tempfile::tempdir().unwrap();
        let flushes = AtomicU64::new(0);
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 48,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        runner
            .run(&proptest::collection::vec(op(), 1..150), |ops| {
                let store = ShuffleService::new(parent.path(), 4, tiny(BUDGET)).unwrap();
                let mut model: HashMap<usize, Vec<(u64, Vec<u8>)>> = HashMap::new();
                let expect = |model: &HashMap<usize, Vec<(u64, Vec<u8>)>>, p: usize| {
                    let mut pieces = model.get(&p).cloned().unwrap_or_default();
                    // Stable: within a writer, append order stays.
                    pieces.sort_by_key(|(w, _)| *w);
                    pieces.into_iter().map(|(_, b)| b).collect::<Vec<_>>()
                };
                for (i, op) in ops.iter().enumerate() {
                    match *op {
                        Op::Append {
                            partition,
                            writer,
                            len,
                        } => {
                            let piece: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
                            store.append(partition, writer, &piece).unwrap();
                            model.entry(partition).or_default().push((writer, piece));
                        }
                        Op::Get(p) => {
                            prop_assert_eq!(store.get(p).unwrap(), expect(&model, p), "op {}", i);
                        }
                        Op::Drop(p) => {
                            store.drop_partition(p).unwrap();
                            model.remove(&p);
                        }
                        Op::Flush => store.flush().unwrap(),
                    }
                    let s = store.stats();
                    // One thread: at most one piece (600 + 28 bytes) over budget.
                    prop_assert!(s.peak_buffered_bytes <= (BUDGET + 624) as u64, "{:?}", s);
                }
                for p in 0..4 {
                    prop_assert_eq!(store.get(p).unwrap(), expect(&model, p));
                }
                flushes.fetch_add(store.stats().flushes, Ordering::Relaxed);
                Ok(())
            })
            .unwrap();
        assert!(flushes.into_inner() > 0);
    }

    /// 4 threads × 2,000 pieces over 16 partitions with a 16 KiB budget: every piece
    /// comes back exactly once and in order, and the buffers kept to their bound.
    #[test]
    fn concurrent_appends_are_all_found_once() {
        concurrent_appends(16 << 10);
    }

    /// The same with a budget of 0: every append flushes, so appenders often find
    /// everything in flight and wait for each other.
    #[test]
    fn concurrent_appends_with_no_budget() {
        concurrent_appends(0);
    }

    fn concurrent_appends(budget: usize) {
        const THREADS: u64 = 4;
        const PIECES: u64 = 2000;
        let parent = tempfile::tempdir().unwrap();
        let store = ShuffleService::new(parent.path(), 16, tiny(budget)).unwrap();
        // A piece names its writer and index, padded to a varying length.
        let piece = |t: u64, i: u64| {
            let mut p = [t.to_le_bytes(), i.to_le_bytes()].concat();
            p.resize(16 + (i * 7 % 300) as usize, 0xab);
            p
        };
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (store, piece) = (&store, &piece);
                s.spawn(move || {
                    for i in 0..PIECES {
                        store
                            .append((i * 5 + t) as usize % 16, t, &piece(t, i))
                            .unwrap();
                    }
                });
            }
        });
        let mut seen = vec![vec![0u32; PIECES as usize]; THREADS as usize];
        for p in 0..16 {
            let mut last: Option<(u64, u64)> = None;
            for got in store.get(p).unwrap() {
                let t = u64::from_le_bytes(got[..8].try_into().unwrap());
                let i = u64::from_le_bytes(got[8..16].try_into().unwrap());
                assert_eq!(got, piece(t, i));
                assert_eq!(
                    (i * 5 + t) as usize % 16,
                    p,
                    "piece ({t}, {i}) in partition {p}"
                );
                assert!(last < Some((t, i)), "{last:?} then ({t}, {i})");
                last = Some((t, i));
                seen[t as usize][i as usize] += 1;
            }
        }
        assert!(seen.iter().flatten().all(|&n| n == 1));
        let s = store.stats();
        assert!(s.flushes > 0, "{s:?}");
        let largest = 16 + 299 + FRAME_LEN as u64;
        assert!(
            s.peak_buffered_bytes <= budget as u64 + THREADS * largest,
            "{s:?}"
        );
        assert_eq!(s.pieces_appended, THREADS * PIECES);
    }

    /// `get` racing with appends and flushes: it sees every piece appended before it
    /// started, and none twice.
    #[test]
    fn get_during_appends_misses_nothing_and_sees_nothing_twice() {
        let parent = tempfile::tempdir().unwrap();
        let store = ShuffleService::new(parent.path(), 2, tiny(512)).unwrap();
        let done = AtomicU64::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..3000u64 {
                    store.append(0, 7, &i.to_le_bytes()).unwrap();
                    // Pieces of the other partition make flushes of 0 less regular.
                    store.append(1, 8, &[0; 40]).unwrap();
                    done.store(i + 1, Ordering::SeqCst);
                }
            });
            s.spawn(|| loop {
                let before = done.load(Ordering::SeqCst);
                let got = store.get(0).unwrap();
                assert!(got.len() as u64 >= before, "{} < {before}", got.len());
                for (i, piece) in got.iter().enumerate() {
                    assert_eq!(piece[..], (i as u64).to_le_bytes(), "piece {i}");
                }
                if before == 3000 {
                    break;
                }
            });
        });
        assert!(store.stats().flushes > 0);
    }

    #[test]
    fn failed_flush_names_the_folder_and_loses_nothing() {
        let parent = tempfile::tempdir().unwrap();
        let store = ShuffleService::new(parent.path(), 2, tiny(1000)).unwrap();
        store.fail_writes_after(0);
        let mut err = None;
        let mut appended = vec![];
        for i in 0..20u8 {
            appended.push(vec![i; 100]);
            if let Err(e) = store.append(0, 1, &[i; 100]) {
                err = Some(e);
                break;
            }
        }
        match err {
            Some(Error::Io { path, source }) => {
                assert_eq!(path, store.dir());
                assert_eq!(source.to_string(), "injected write failure");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.get(0).unwrap(), appended);
        assert!(matches!(store.flush(), Err(Error::Io { .. })));
        store.fail_writes_after(u64::MAX);
        store.flush().unwrap();
        assert_eq!(store.get(0).unwrap(), appended);
        assert!(store.stats().flushes > 0);
    }

    #[test]
    fn drop_partition_forgets_buffered_and_flushed_pieces() {
        let parent = tempfile::tempdir().unwrap();
        let store = ShuffleService::new(parent.path(), 2, tiny(1 << 20)).unwrap();
        store.append(0, 0, b"flushed").unwrap();
        store.flush().unwrap();
        store.append(0, 0, b"buffered").unwrap();
        store.append(1, 0, b"other").unwrap();
        store.drop_partition(0).unwrap();
        assert!(store.get(0).unwrap().is_empty());
        assert_eq!(store.get(1).unwrap(), vec![b"other".to_vec()]);
        store.append(0, 0, b"again").unwrap();
        assert_eq!(store.get(0).unwrap(), vec![b"again".to_vec()]);
    }

    /// Drops racing with flushes of the same partition: a flush that finishes after
    /// a drop deletes its own value, so nothing of the partition outlives the last
    /// drop, and the other partition is untouched.
    #[test]
    fn drop_partition_during_flushes_leaves_nothing_behind() {
        let parent = tempfile::tempdir().unwrap();
        let store = ShuffleService::new(parent.path(), 2, tiny(0)).unwrap();
        let running = AtomicU64::new(2);
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let (store, running) = (&store, &running);
                s.spawn(move || {
                    for i in 0..1500u64 {
                        store.append((i % 2) as usize, t, &i.to_le_bytes()).unwrap();
                    }
                    running.fetch_sub(1, Ordering::SeqCst);
                });
            }
            s.spawn(|| {
                while running.load(Ordering::SeqCst) > 0 {
                    store.drop_partition(0).unwrap();
                }
            });
        });
        store.drop_partition(0).unwrap();
        assert!(store.get(0).unwrap().is_empty());
        // Nothing writes now, so a scan is exact.
        assert_eq!(store.db.scan_prefix(0u32.to_be_bytes()).count(), 0);
        let expect: Vec<Vec<u8>> = (0..2u64)
            .flat_map(|_| {
                (0..1500u64)
                    .filter(|i| i % 2 == 1)
                    .map(|i| i.to_le_bytes().to_vec())
            })
            .collect();
        assert_eq!(store.get(1).unwrap(), expect);
        assert_eq!(store.buffered.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn out_of_range_partition_is_invalid() {
        let parent = tempfile::tempdir().unwrap();
        let store = ShuffleService::new(parent.path(), 3, ShuffleOptions::default()).unwrap();
        assert_eq!(store.npartitions(), 3);
        assert!(matches!(store.append(3, 0, b"x"), Err(Error::Invalid(_))));
        assert!(matches!(store.get(3), Err(Error::Invalid(_))));
        let err = store.drop_partition(99).unwrap_err();
        assert!(
            err.to_string().contains("partition 99 out of range"),
            "{err}"
        );
    }

    #[test]
    fn drop_removes_the_folder() {
        let parent = tempfile::tempdir().unwrap();
        let store = ShuffleService::new(parent.path(), 2, tiny(100)).unwrap();
        for i in 0..50u8 {
            store.append(usize::from(i % 2), 0, &[i; 64]).unwrap();
        }
        let dir = store.dir().to_path_buf();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("outcore-shuffle-"), "{name}");
        assert!(dir.is_dir());
        drop(store);
        assert!(!dir.exists());
    }

    /// Issue 14: pieces had no checksum of their own, and a missing chunk was
    /// skipped, so `get` returned less data and no error.
    #[test]
    fn issue_14_a_corrupt_or_missing_piece_is_an_error_naming_shuffle_and_partition() {
        let parent = tempfile::tempdir().unwrap();
        let store = ShuffleService::new(parent.path(), 2, tiny(1 << 20)).unwrap();
        let piece = vec![7u8; 3 * SLED_VALUE_BYTES];
        store.append(1, 0, &piece).unwrap();
        store.append(1, 0, b"second").unwrap();
        store.flush().unwrap();
        assert_eq!(
            store.get(1).unwrap(),
            vec![piece.clone(), b"second".to_vec()]
        );
        let key = store.partitions[1].lock().flushed[0];
        assert_eq!(key.chunks, 4);
        let dir = store.dir().display().to_string();

        // One bit flipped inside the first piece's bytes.
        let mut chunk = store.db.get(key.chunk(1)).unwrap().unwrap().to_vec();
        chunk[100] ^= 0x10;
        store.db.insert(key.chunk(1), chunk).unwrap();
        let err = store.get(1).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{dir}: shuffle partition 1: the piece from writer 0 (sequence 0, {} bytes) is corrupt: checksum mismatch",
                piece.len()
            )
        );
        assert!(matches!(err, Error::CorruptShuffle { partition: 1, .. }));

        // A chunk gone from the store.
        store.db.remove(key.chunk(2)).unwrap();
        let err = store.get(1).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{dir}: shuffle partition 1: chunk 2 of 4 of a flush is missing from the store"
            )
        );
        // The other partition is unaffected, and a dropped partition reads empty.
        assert!(store.get(0).unwrap().is_empty());
        store.drop_partition(1).unwrap();
        assert!(store.get(1).unwrap().is_empty());
    }

    #[test]
    fn a_cut_frame_is_an_error() {
        let mut out = Vec::new();
        let mut framed = Vec::new();
        for w in [1u64, 2, 5] {
            framed.extend_from_slice(&w.to_le_bytes());
        }
        framed.extend_from_slice(&crc32fast::hash(b"hello").to_le_bytes());
        framed.extend_from_slice(b"hello");
        assert_eq!(
            split_frames(&framed[..framed.len() - 1], &mut out).unwrap_err(),
            "the piece framed at byte 0 is cut short"
        );
        split_frames(&framed, &mut out).unwrap();
        assert_eq!(out, vec![(1, 2, b"hello".to_vec())]);
    }

    #[test]
    fn parent_that_is_a_file_is_an_io_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("not-a-folder");
        std::fs::write(&file, b"x").unwrap();
        match ShuffleService::new(&file, 2, ShuffleOptions::default()) {
            Err(Error::Io { path, .. }) => assert_eq!(path, file),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted a file as parent"),
        }
    }
}

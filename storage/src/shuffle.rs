//! The shuffle store (Dask's partd contract): during a shuffle every input
//! partition appends pieces of bytes to output partitions; afterwards each output
//! partition reads its pieces back, one at a time ([`ShuffleService::pieces`]) or
//! all at once ([`ShuffleService::get`]). Pieces are buffered in memory per output
//! partition under one byte budget and flushed to that partition's append-only
//! file; the partition lists the extents of its flushes.
//!
//! ```text
//!   append(p, writer, bytes) ──► buffer p (one Mutex each) ──over budget──► p<p>-<epoch>.dat
//!                                  │  the appender flushes the largest buffer,   (write_at an
//!                                  │  outside that buffer's lock                  extent it took)
//!   pieces(p) ◄── extents of p's flushes + flushes in flight + buffer p
//!                 ordered by (writer, sequence); each piece read when asked for
//! ```
//!
//! Why files and not sled: sled 0.34 keeps about the bytes written through it in
//! memory during a write burst, whatever its cache size (it accounts a value by
//! its size in the log, and a large value by a pointer), does not reclaim space
//! until it compacts, and costs ~23 MiB of RSS as soon as it opens. Measured with
//! `storage/examples/shuffle_rss.rs` (debug build, 8 MiB buffers, 64 KiB pieces,
//! peak RSS): sled holding 600 MiB in 4 KiB values, 78 MiB after appending and
//! 327 MiB after reading it back; sled opened with 1 MiB in it, 27 MiB. These
//! files: 40 MiB for 600 MiB, of which 8 MiB are the buffers; the page cache
//! holds the files, not us, and `drop_partition` deletes them at once. The index
//! of a partition's flushes is a list in memory (32 bytes a flush), so sled is
//! not opened at all.
//!
//! Invariants:
//! - Every piece lives in exactly one of: its partition's buffer, a flush in flight
//!   (visible to readers until its write returns), a flush listed by the partition
//!   (its extent written). Readers snapshot the three under the
//!   partition's lock, so they see every piece appended before they started, once.
//!   Pieces carry a unique sequence number, and readers drop a duplicate anyway.
//! - Each flush takes its extent of the file (offset, length) under the partition's
//!   lock and writes it outside; extents never overlap and are never rewritten. A
//!   failed write leaves an unlisted extent (never read) and puts its bytes back in
//!   the buffer.
//! - A partition's file is named by its epoch, which `drop_partition` bumps: a flush
//!   that started before a drop writes to the old epoch's file and deletes it when
//!   it finds the epoch changed, so nothing of a dropped partition outlives it.
//! - Readers return pieces ordered by (writer, append order), whatever the flush
//!   timing; every piece's CRC32 is checked when it is read.
//! - Buffered bytes (including flushes in flight) stay under
//!   `budget_bytes + threads appending at once × (largest piece + 28 bytes)`: each
//!   appender adds one piece, then does not return until the total is back under
//!   the budget, so at most one piece per appending thread is above it.
//!
//! Nothing is fsynced: a shuffle is never read after a crash, and the folder is
//! deleted on drop.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
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
    /// small buffers the store does not write one tiny extent per append.
    pub min_flush_bytes: usize,
}

impl Default for ShuffleOptions {
    fn default() -> Self {
        ShuffleOptions {
            budget_bytes: 64 << 20,
            min_flush_bytes: 1 << 20,
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
    /// Bytes written to the partitions' files (pieces with their 28-byte frames).
    pub bytes_flushed: u64,
    /// Flushes written (each one extent of a partition's file).
    pub flushes: u64,
    /// Bytes of pieces read back from the files.
    pub bytes_read: u64,
    /// The most bytes the buffers (and flushes in flight) have held at once.
    pub peak_buffered_bytes: u64,
    /// Bytes of the partitions' files not yet dropped.
    pub size_on_disk: u64,
    /// The most bytes the files held at once (partitions are dropped as they are
    /// read, so this is the disk a shuffle needed).
    pub peak_size_on_disk: u64,
}

/// Each piece in a buffer or file is framed as writer, sequence, length (u64 LE
/// each), the CRC32 of its bytes (u32 LE), then its bytes. The checksum is the
/// piece's own, checked whenever the piece is read back.
const FRAME_LEN: usize = 28;

/// Where a flush's bytes are: `len` bytes from `offset` of the partition's file of
/// `epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Extent {
    epoch: u64,
    offset: u64,
    len: u64,
}

/// One output partition's buffered pieces.
#[derive(Default)]
struct Buffer {
    /// Framed pieces not yet taken for a flush.
    bytes: Vec<u8>,
    /// Buffers taken for a flush whose write has not returned yet, by flush sequence.
    in_flight: Vec<(u64, Arc<Vec<u8>>)>,
    /// This partition's flushes, written.
    flushed: Vec<Extent>,
    /// Bumped by `drop_partition`: names the partition's file, and a flush that
    /// started under an older epoch deletes what it wrote.
    epoch: u64,
    /// The end of the extents taken in this epoch's file.
    file_end: u64,
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
    /// Extents taken in files not yet deleted.
    file_bytes: AtomicU64,
    peak_file_bytes: AtomicU64,
}

/// A store of byte pieces per output partition, buffered under a budget and spilled
/// to one append-only file per partition. Shared by the shuffle's tasks through
/// `&self`.
pub struct ShuffleService {
    partitions: Box<[Partition]>,
    options: ShuffleOptions,
    /// Bytes held by all buffers plus flushes in flight.
    buffered: AtomicUsize,
    /// What the buffers may hold: `options.budget_bytes` until
    /// [`set_budget`](ShuffleService::set_budget) changes it.
    budget: AtomicUsize,
    /// Sequence numbers for pieces and flushes, unique within the store.
    seq: AtomicU64,
    /// Appenders that found every buffered byte already being flushed wait here for
    /// a flush to finish.
    room: Condvar,
    room_lock: Mutex<()>,
    counters: Counters,
    /// Bytes file writes may still write before they fail (fault injection);
    /// `u64::MAX` means no limit.
    write_allowance: AtomicU64,
    /// Holds the partitions' files and a lock file naming this process, so a later
    /// run removes the folder if we are killed.
    dir: WorkDir,
}

impl ShuffleService {
    /// Opens a store in a fresh folder `outcore-shuffle-XXXXXX` under `parent`
    /// (created if missing); the folder is deleted on drop. Errors name the path.
    pub fn new(parent: &Path, npartitions: usize, options: ShuffleOptions) -> Result<Self> {
        if u32::try_from(npartitions).is_err() {
            return Err(Error::Invalid(format!(
                "shuffle: {npartitions} partitions, at most {} are supported",
                u32::MAX
            )));
        }
        let dir = WorkDir::new(parent, "outcore-shuffle-")?;
        let partitions = (0..npartitions)
            .map(|_| Partition {
                buffer: Mutex::new(Buffer::default()),
                len: AtomicUsize::new(0),
            })
            .collect();
        let budget_bytes = options.budget_bytes;
        Ok(ShuffleService {
            partitions,
            options,
            buffered: AtomicUsize::new(0),
            budget: AtomicUsize::new(budget_bytes),
            seq: AtomicU64::new(0),
            room: Condvar::new(),
            room_lock: Mutex::new(()),
            counters: Counters::default(),
            write_allowance: AtomicU64::new(u64::MAX),
            dir,
        })
    }

    /// How many output partitions the store has.
    pub fn npartitions(&self) -> usize {
        self.partitions.len()
    }

    /// The store's folder (the partitions' files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Adds one piece for `partition` from `writer` (e.g. the input partition's
    /// number). Safe from many threads at once with no store-wide lock. When the
    /// buffers of all partitions exceed the budget, the caller flushes the largest
    /// ones to their files before returning (or waits for other threads' flushes),
    /// which is how appenders feel back-pressure.
    ///
    /// Pieces from one writer keep their order if that writer appends from one
    /// thread at a time. On `Err` (a write failed; the error names the store's
    /// folder) no piece is lost: the buffer that failed to flush is kept in memory.
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
        if now > self.budget.load(Ordering::Relaxed) {
            self.make_room()?;
        }
        Ok(())
    }

    /// Writes every buffer to its file (e.g. at the end of the write phase), so the
    /// memory is free for the read phase.
    pub fn flush(&self) -> Result<()> {
        for index in 0..self.partitions.len() {
            self.flush_buffer(index)?;
        }
        Ok(())
    }

    /// Bytes the buffers hold now (with flushes in flight).
    pub fn buffered_bytes(&self) -> usize {
        self.buffered.load(Ordering::SeqCst)
    }

    /// Changes what the buffers may hold (a memory account that needs the room
    /// back, or gives more), flushing the largest buffers now until they fit.
    pub fn set_budget(&self, bytes: usize) -> Result<()> {
        self.budget.store(bytes, Ordering::Relaxed);
        if self.buffered_bytes() > bytes {
            self.make_room()?;
        }
        Ok(())
    }

    /// Writes `partition`'s buffer to its file now (e.g. a sorted run, which is read
    /// back only later), so its memory is free.
    pub fn flush_partition(&self, partition: usize) -> Result<()> {
        self.partition(partition, "flush_partition")?;
        self.flush_buffer(partition).map(|_| ())
    }

    /// Every piece appended for `partition` so far, ordered by writer and, within a
    /// writer, by order of append, whatever the flush timing. Holds them all: a
    /// reader that can take them one at a time uses [`pieces`](Self::pieces).
    pub fn get(&self, partition: usize) -> Result<Vec<Vec<u8>>> {
        self.pieces(partition)?.collect()
    }

    /// The pieces appended for `partition` so far, in the order of
    /// [`get`](Self::get), read one at a time as the iterator is advanced, so a
    /// reader never holds more than the piece it is on. First writes the
    /// partition's buffer to its file (freeing that memory for the reader).
    ///
    /// A piece whose checksum fails, or a flush cut short in its file, is an
    /// [`Error::CorruptShuffle`] naming the store and partition
    /// (the iterator's item, or this call's error); its bytes are never returned.
    pub fn pieces(&self, partition: usize) -> Result<Pieces<'_>> {
        self.pieces_where(partition, None)
    }

    /// The pieces `writer` appended for `partition`, as [`pieces`](Self::pieces)
    /// reads them: several readers of one partition, one per writer, can advance
    /// side by side (the k-way merge of sorted runs written as one writer each).
    pub fn pieces_of(&self, partition: usize, writer: u64) -> Result<Pieces<'_>> {
        self.pieces_where(partition, Some(writer))
    }

    fn pieces_where(&self, partition: usize, writer: Option<u64>) -> Result<Pieces<'_>> {
        let part = self.partition(partition, "pieces")?;
        // A failed write keeps the bytes in the buffer, where the snapshot finds
        // them: the read does not depend on it, and the next flush reports it.
        let _ = self.flush_buffer(partition);
        // One snapshot of where the pieces are.
        let (buffered, in_flight, keys, epoch) = {
            let buffer = part.lock();
            let in_flight: Vec<_> = buffer.in_flight.iter().map(|(_, b)| b.clone()).collect();
            (
                Arc::new(buffer.bytes.clone()),
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
        let mut refs: Vec<PieceRef> = Vec::new();
        for bytes in in_flight.into_iter().chain([buffered]) {
            frames_in(&bytes, &mut refs, |at, len| Source::Memory {
                bytes: bytes.clone(),
                at,
                len,
            })
            .map_err(corrupt)?;
        }
        let path = self.file_path(partition, epoch);
        let mut file = None;
        for extent in keys {
            if file.is_none() {
                match File::open(&path) {
                    Ok(f) => file = Some(f),
                    Err(_) if part.lock().epoch != epoch => return Ok(Pieces::empty(self)),
                    Err(e) => return Err(Error::io(&path, e)),
                }
            }
            let f = file.as_ref().expect("opened above");
            walk_extent(f, &extent, &mut refs).map_err(|e| match e {
                Walk::Io(e) => Error::io(&path, e),
                Walk::Corrupt(reason) => corrupt(reason),
            })?;
        }
        if let Some(w) = writer {
            refs.retain(|r| r.writer == w);
        }
        refs.sort_unstable_by_key(|r| (r.writer, r.seq));
        refs.dedup_by_key(|r| r.seq);
        Ok(Pieces {
            store: self,
            partition,
            path,
            file,
            refs: refs.into_iter(),
        })
    }

    /// Forgets `partition`: frees its buffer, deletes its file.
    /// Pieces appended afterwards start a new, empty partition.
    pub fn drop_partition(&self, partition: usize) -> Result<()> {
        let part = self.partition(partition, "drop_partition")?;
        let (freed, epoch, file_bytes) = {
            let mut buffer = part.lock();
            let epoch = buffer.epoch;
            buffer.epoch += 1;
            // Flushes in flight still hold their memory (and count it until they
            // finish, then delete what they wrote); we only stop showing their pieces.
            buffer.in_flight.clear();
            part.len.store(0, Ordering::Relaxed);
            buffer.flushed.clear();
            let file_bytes = std::mem::take(&mut buffer.file_end);
            (std::mem::take(&mut buffer.bytes).len(), epoch, file_bytes)
        };
        self.buffered.fetch_sub(freed, Ordering::SeqCst);
        self.notify_room();
        self.remove_file(partition, epoch, file_bytes)
    }

    /// Counters, and the size of the files on disk.
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
            size_on_disk: c.file_bytes.load(Ordering::Relaxed),
            peak_size_on_disk: c.peak_file_bytes.load(Ordering::Relaxed),
        }
    }

    /// Fault injection for tests: file writes beyond `bytes` more bytes fail with
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

    fn file_path(&self, partition: usize, epoch: u64) -> PathBuf {
        self.dir().join(format!("p{partition}-{epoch}.dat"))
    }

    /// Deletes the file of `partition` in `epoch` (gone already is fine), and takes
    /// `bytes` off the count of bytes on disk.
    fn remove_file(&self, partition: usize, epoch: u64, bytes: u64) -> Result<()> {
        let path = self.file_path(partition, epoch);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                self.counters.file_bytes.fetch_sub(bytes, Ordering::Relaxed);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.counters.file_bytes.fetch_sub(bytes, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(Error::io(path, e)),
        }
    }
    /// Flushes the largest buffers while the total is over budget (and, once
    /// started, until `min_flush_bytes` are written); waits if everything buffered
    /// is already being flushed by others.
    fn make_room(&self) -> Result<()> {
        let budget = self.budget.load(Ordering::Relaxed);
        let mut flushed = 0;
        loop {
            let over = self.buffered.load(Ordering::SeqCst) > budget;
            if !over && (flushed == 0 || flushed >= self.options.min_flush_bytes) {
                return Ok(());
            }
            match self.flush_largest()? {
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
    fn flush_largest(&self) -> Result<Option<usize>> {
        while let Some(index) = self.largest() {
            // Another thread may have taken it since we looked; then look again.
            if let Some(n) = self.flush_buffer(index)? {
                return Ok(Some(n));
            }
        }
        Ok(None)
    }

    /// Takes partition `index`'s buffer and writes it to the partition's file (an
    /// extent taken under the lock), outside the buffer's lock, then lists it;
    /// returns the bytes written, or `None` if it was empty. On failure the bytes
    /// go back into the buffer.
    fn flush_buffer(&self, index: usize) -> Result<Option<usize>> {
        let part = &self.partitions[index];
        let (data, extent, flush_seq) = {
            let mut buffer = part.lock();
            if buffer.bytes.is_empty() {
                return Ok(None);
            }
            let data = Arc::new(std::mem::take(&mut buffer.bytes));
            part.len.store(0, Ordering::Relaxed);
            let flush_seq = self.seq.fetch_add(1, Ordering::Relaxed);
            buffer.in_flight.push((flush_seq, data.clone()));
            let extent = Extent {
                epoch: buffer.epoch,
                offset: buffer.file_end,
                len: data.len() as u64,
            };
            buffer.file_end += extent.len;
            (data, extent, flush_seq)
        };
        let on_disk = self
            .counters
            .file_bytes
            .fetch_add(extent.len, Ordering::Relaxed)
            + extent.len;
        self.counters
            .peak_file_bytes
            .fetch_max(on_disk, Ordering::Relaxed);
        let written = self.write(index, &extent, &data);

        let (dropped, kept) = {
            let mut buffer = part.lock();
            buffer.in_flight.retain(|(s, _)| *s != flush_seq);
            let dropped = buffer.epoch != extent.epoch;
            let kept = written.is_err() && !dropped;
            if written.is_ok() && !dropped {
                buffer.flushed.push(extent);
            }
            if kept {
                // Order inside a buffer does not matter: readers sort by sequence.
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
            // The partition was dropped while we wrote, before our extent was
            // listed: the old epoch's file is ours to delete (its bytes left the
            // count when the drop took the epoch's extents).
            self.remove_file(index, extent.epoch, 0)?;
        }
        Ok(Some(data.len()))
    }

    /// Writes one flush at its extent, honouring the fault-injection allowance. A
    /// failure leaves the extent unlisted.
    fn write(&self, partition: usize, extent: &Extent, data: &[u8]) -> Result<()> {
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
        let path = self.file_path(partition, extent.epoch);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        file.write_all_at(data, extent.offset)
            .map_err(|e| Error::io(&path, e))
    }

    fn notify_room(&self) {
        let _guard = self
            .room_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.room.notify_all();
    }
}

/// Where a piece's bytes are.
enum Source {
    /// In a buffer snapshot: `len` bytes at `at`.
    Memory {
        bytes: Arc<Vec<u8>>,
        at: usize,
        len: usize,
    },
    /// In the partition's file: `len` bytes at `offset`.
    File { offset: u64, len: usize },
}

/// One piece found by a reader, not read yet.
struct PieceRef {
    writer: u64,
    seq: u64,
    crc: u32,
    source: Source,
}

/// A frame header: writer, sequence, length, CRC32.
fn parse_header(h: &[u8]) -> (u64, u64, u64, u32) {
    let word = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(h[24..28].try_into().expect("4 bytes"));
    (word(0), word(8), word(16), crc)
}

/// Lists the framed pieces of an in-memory buffer; `Err` says which frame is cut.
fn frames_in(
    bytes: &[u8],
    out: &mut Vec<PieceRef>,
    source: impl Fn(usize, usize) -> Source,
) -> Result<(), String> {
    let mut at = 0;
    while at < bytes.len() {
        let cut = || format!("the piece framed at byte {at} is cut short");
        let header = bytes.get(at..at + FRAME_LEN).ok_or_else(cut)?;
        let (writer, seq, len, crc) = parse_header(header);
        let len = usize::try_from(len).map_err(|_| cut())?;
        let start = at + FRAME_LEN;
        if bytes.len() - start < len {
            return Err(cut());
        }
        out.push(PieceRef {
            writer,
            seq,
            crc,
            source: source(start, len),
        });
        at = start + len;
    }
    Ok(())
}

enum Walk {
    Io(std::io::Error),
    Corrupt(String),
}

/// Lists the framed pieces of one extent of a file by reading their headers only.
fn walk_extent(file: &File, extent: &Extent, out: &mut Vec<PieceRef>) -> Result<(), Walk> {
    let end = extent.offset + extent.len;
    let mut at = extent.offset;
    let mut header = [0u8; FRAME_LEN];
    while at < end {
        let cut = || {
            Walk::Corrupt(format!(
                "the piece framed at byte {at} of its file is cut short"
            ))
        };
        if end - at < FRAME_LEN as u64 {
            return Err(cut());
        }
        file.read_exact_at(&mut header, at)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => cut(),
                _ => Walk::Io(e),
            })?;
        let (writer, seq, len, crc) = parse_header(&header);
        let start = at + FRAME_LEN as u64;
        if end - start < len {
            return Err(cut());
        }
        out.push(PieceRef {
            writer,
            seq,
            crc,
            source: Source::File {
                offset: start,
                len: usize::try_from(len).map_err(|_| cut())?,
            },
        });
        at = start + len;
    }
    Ok(())
}

/// The pieces of one partition, read one at a time ([`ShuffleService::pieces`]).
pub struct Pieces<'a> {
    store: &'a ShuffleService,
    partition: usize,
    path: PathBuf,
    file: Option<File>,
    refs: std::vec::IntoIter<PieceRef>,
}

impl<'a> Pieces<'a> {
    fn empty(store: &'a ShuffleService) -> Pieces<'a> {
        Pieces {
            store,
            partition: 0,
            path: PathBuf::new(),
            file: None,
            refs: Vec::new().into_iter(),
        }
    }

    /// Pieces not yet returned.
    pub fn remaining(&self) -> usize {
        self.refs.len()
    }

    fn read(&self, r: PieceRef) -> Result<Vec<u8>> {
        let bytes = match r.source {
            Source::Memory { bytes, at, len } => bytes[at..at + len].to_vec(),
            Source::File { offset, len } => {
                let file = self
                    .file
                    .as_ref()
                    .expect("file pieces come with their file");
                let mut buf = vec![0u8; len];
                file.read_exact_at(&mut buf, offset).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        self.corrupt(format!(
                            "the piece at byte {offset} of its file is cut short"
                        ))
                    } else {
                        Error::io(&self.path, e)
                    }
                })?;
                self.store
                    .counters
                    .bytes_read
                    .fetch_add(len as u64, Ordering::Relaxed);
                buf
            }
        };
        if crc32fast::hash(&bytes) != r.crc {
            return Err(self.corrupt(format!(
                "the piece from writer {} (sequence {}, {} bytes) is corrupt: checksum mismatch",
                r.writer,
                r.seq,
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::CorruptShuffle {
            dir: self.store.dir().to_path_buf(),
            partition: self.partition,
            reason,
        }
    }
}

impl Iterator for Pieces<'_> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        let r = self.refs.next()?;
        Some(self.read(r))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.refs.size_hint()
    }
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
    /// budget, so most pieces are read back from the files.
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
                    prop_assert!(
                        s.peak_buffered_bytes <= (BUDGET + 600 + 28) as u64,
                        "{:?}",
                        s
                    );
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
        // Nothing writes now: no file of partition 0 remains.
        let files: Vec<String> = std::fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("p0-"))
            .collect();
        assert!(files.is_empty(), "{files:?}");
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
        let piece = vec![7u8; 3 * 4096];
        store.append(1, 0, &piece).unwrap();
        store.append(1, 0, b"second").unwrap();
        store.flush().unwrap();
        assert_eq!(
            store.get(1).unwrap(),
            vec![piece.clone(), b"second".to_vec()]
        );
        let dir = store.dir().display().to_string();
        let file = store.file_path(1, 0);

        // One bit flipped inside the first piece's bytes.
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[FRAME_LEN + 100] ^= 0x10;
        std::fs::write(&file, &bytes).unwrap();
        let err = store.get(1).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{dir}: shuffle partition 1: the piece from writer 0 (sequence 0, {} bytes) is corrupt: checksum mismatch",
                piece.len()
            )
        );
        assert!(matches!(err, Error::CorruptShuffle { partition: 1, .. }));
        // Streaming, the bad piece is the first item's error.
        let mut pieces = store.pieces(1).unwrap();
        assert!(matches!(
            pieces.next().unwrap(),
            Err(Error::CorruptShuffle { partition: 1, .. })
        ));

        // The file cut short (the flip undone).
        bytes[FRAME_LEN + 100] ^= 0x10;
        std::fs::write(&file, &bytes[..bytes.len() - 3]).unwrap();
        let err = store.get(1).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{dir}: shuffle partition 1: the piece")),
            "{err}"
        );
        assert!(err.ends_with("is cut short"), "{err}");

        // The file gone while the partition lists it.
        std::fs::remove_file(&file).unwrap();
        let err = store.get(1).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}", file.display())), "{err}");
        // The other partition is unaffected, and a dropped partition reads empty.
        assert!(store.get(0).unwrap().is_empty());
        store.drop_partition(1).unwrap();
        assert!(store.get(1).unwrap().is_empty());
        assert!(!file.exists());
    }

    /// `pieces` streams: pieces come one at a time in `get`'s order, and a drop
    /// frees the file's bytes on disk.
    #[test]
    fn pieces_stream_in_order_and_drop_frees_the_disk() {
        let parent = tempfile::tempdir().unwrap();
        let store = ShuffleService::new(parent.path(), 3, tiny(300)).unwrap();
        for i in 0..200u64 {
            store
                .append((i % 3) as usize, i % 4, &i.to_le_bytes())
                .unwrap();
        }
        let mut pieces = store.pieces(2).unwrap();
        assert_eq!(pieces.remaining(), 66);
        let first = pieces.next().unwrap().unwrap();
        let mut all = vec![first];
        all.extend(pieces.map(Result::unwrap));
        assert_eq!(all, store.get(2).unwrap());
        let mut expected: Vec<u64> = (0..200).filter(|i| i % 3 == 2).collect();
        expected.sort_by_key(|i| (i % 4, *i));
        let got: Vec<u64> = all
            .iter()
            .map(|b| u64::from_le_bytes(b[..].try_into().unwrap()))
            .collect();
        assert_eq!(got, expected);
        assert!(store.stats().bytes_read > 0);
        let file = store.file_path(2, 0);
        assert!(file.exists());
        store.drop_partition(2).unwrap();
        assert!(!file.exists());
        assert!(store.get(2).unwrap().is_empty());
        assert_eq!(store.get(1).unwrap().len(), 67);
        // One writer's pieces, side by side with another's.
        let (mut w1, mut w2) = (
            store.pieces_of(0, 1).unwrap(),
            store.pieces_of(0, 2).unwrap(),
        );
        let mut seen = Vec::new();
        while let (Some(a), Some(b)) = (w1.next(), w2.next()) {
            seen.push(u64::from_le_bytes(a.unwrap()[..].try_into().unwrap()));
            seen.push(u64::from_le_bytes(b.unwrap()[..].try_into().unwrap()));
        }
        let expected: Vec<u64> = (0..200u64)
            .filter(|i| i % 3 == 0 && i % 4 == 1)
            .zip((0..200u64).filter(|i| i % 3 == 0 && i % 4 == 2))
            .flat_map(|(a, b)| [a, b])
            .collect();
        assert_eq!(seen, expected);
    }

    /// A smaller budget flushes at once; appends then keep to it.
    #[test]
    fn set_budget_flushes_down_to_it() {
        let parent = tempfile::tempdir().unwrap();
        let store = ShuffleService::new(parent.path(), 4, tiny(1 << 20)).unwrap();
        for i in 0..100u8 {
            store.append(usize::from(i % 4), 0, &[i; 1000]).unwrap();
        }
        assert!(store.buffered_bytes() > 90_000);
        store.set_budget(10_000).unwrap();
        assert!(
            store.buffered_bytes() <= 10_000,
            "{}",
            store.buffered_bytes()
        );
        for i in 0..100u8 {
            store.append(usize::from(i % 4), 1, &[i; 1000]).unwrap();
            assert!(store.buffered_bytes() <= 10_000 + 1028);
        }
        assert_eq!(store.get(3).unwrap().len(), 50);
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
        let at = |at, len| Source::File {
            offset: at as u64,
            len,
        };
        assert_eq!(
            frames_in(&framed[..framed.len() - 1], &mut out, at).unwrap_err(),
            "the piece framed at byte 0 is cut short"
        );
        frames_in(&framed, &mut out, at).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].writer, out[0].seq), (1, 2));
        assert!(matches!(out[0].source, Source::File { offset: 28, len: 5 }));
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

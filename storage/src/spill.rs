//! The spill cache: holds values (task results) under a byte budget and pages the
//! least recently used ones to disk, as records appended to segment files
//! ([`crate::segments`]). The scheduler puts every
//! task result here, so an operation that spills nothing costs one hash map update
//! under a mutex.
//!
//! ```text
//!   put ──► resident (LRU order) ──over budget──► being written ──► on disk
//!             ▲                    (still served        (file kept; a read-back value
//!             └──── get reads back  from memory)         pages out again for free)
//! ```
//!
//! Invariants:
//! - After a `put` or `get` returns `Ok`, resident bytes ≤ budget, unless other
//!   threads are between their own put and its writes (each thread's overshoot is
//!   bounded by what it just put or read back).
//! - Records carry a magic, a length and a CRC32 of the payload, so neither a torn
//!   write nor a flipped bit is ever returned as data.
//! - No file I/O happens under the bookkeeping lock: victims are picked and marked
//!   under it, written outside it, and marked on disk under it again.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::error::{Error, Result};
use crate::segments::{Handle, Loc, Segments};
use crate::workdir::WorkDir;

/// A value the cache can page to disk.
pub trait Spillable: Sized + Send + Sync + 'static {
    /// Bytes the value holds in memory (what the budget counts). Called once per
    /// `put`, outside the cache's lock; it should be cheap and must not change while
    /// the value is in the cache.
    fn size_bytes(&self) -> usize;
    /// Appends the value's bytes to `out` (which may already hold other bytes).
    fn encode(&self, out: &mut Vec<u8>) -> Result<()>;
    /// The value back from bytes made by `encode`. The cache checks the file's CRC
    /// first, so an error here means a bug in the codec, and it is reported as a
    /// corrupt file.
    fn decode(bytes: &[u8]) -> Result<Self>;
}

/// What the cache has done so far (counters) and holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpillStats {
    /// Bytes of values held in memory now, including values being written out.
    pub resident_bytes: usize,
    /// The most `resident_bytes` has been, including the moment between a `put` (or
    /// a read back) and the page-out it causes; so it can exceed the budget by the
    /// size of the values being put at once.
    pub peak_resident_bytes: usize,
    /// Values written to spill files.
    pub spilled_values: u64,
    /// File bytes written (headers included).
    pub spilled_bytes: u64,
    /// Values read back from spill files.
    pub read_back_values: u64,
    /// File bytes read back.
    pub read_back_bytes: u64,
    /// Values with a record on disk now.
    pub values_on_disk: u64,
}

/// The first bytes of every spill record; the trailing digit is the format version.
const MAGIC: &[u8; 8] = b"OCSPILL2";
/// Magic, u64 LE payload length, u32 LE CRC32 of the payload.
const HEADER_LEN: usize = 8 + 8 + 4;

/// Where a value's bytes are on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileState {
    /// No file: the value is only in memory.
    None,
    /// A thread is writing the file; the value is still in memory.
    Writing,
    /// The record is complete, there.
    Written(Loc),
}

/// One key's value.
struct Entry<V> {
    /// Unique per `put`: tells a write or read that finishes
    /// after a `remove` or a replacing `put` that its entry is gone.
    id: u64,
    /// `size_bytes()` at put time.
    mem_bytes: usize,
    /// `Some` while resident.
    value: Option<Arc<V>>,
    file: FileState,
    /// LRU position. The entry is in `State::lru` under this tick iff it is
    /// resident, not being written, and of some bytes: paging out a value of none
    /// (an empty part, a marker) would free nothing for a write and a read.
    tick: u64,
}

impl<V> Entry<V> {
    fn in_lru(&self) -> bool {
        self.value.is_some() && self.file != FileState::Writing && self.mem_bytes > 0
    }
}

/// Everything the lock guards.
struct State<V> {
    entries: HashMap<u64, Entry<V>>,
    /// tick → key, oldest first. Ticks only grow, so a key keeps its place until used.
    lru: BTreeMap<u64, u64>,
    next_tick: u64,
    next_id: u64,
    /// Bytes of resident values; values being written count until their file is done.
    resident_bytes: usize,
    /// The part of `resident_bytes` being written out, so that concurrent puts do
    /// not pick more victims for room that is already being made.
    leaving_bytes: usize,
    stats: SpillStats,
}

/// A value picked to be paged out; its entry is marked `Writing`.
struct Victim<V> {
    key: u64,
    id: u64,
    value: Arc<V>,
}

/// A cache of values under a memory budget that pages the least recently used to
/// files in its own folder. Shared by worker threads through `&self`.
pub struct SpillCache<V: Spillable> {
    state: Mutex<State<V>>,
    /// Notified each time a page-out finishes a value (written or put back).
    left: Condvar,
    /// Changed by [`set_budget`](Self::set_budget) as the memory account moves.
    budget: AtomicUsize,
    /// Whether values someone else still holds stay resident (see
    /// [`keep_values_in_use`](Self::keep_values_in_use)).
    keep_in_use: AtomicBool,
    /// Bytes writes may still write before they fail (fault injection); `u64::MAX`
    /// means no limit.
    write_allowance: AtomicU64,
    /// The records' files, in `dir`.
    segments: Segments,
    /// Removes the folder and every spill file in it on drop; holds a lock file
    /// naming this process, so a later run removes it if we are killed.
    dir: WorkDir,
}

impl<V: Spillable> SpillCache<V> {
    /// Makes a fresh folder `outcore-spill-XXXXXX` inside `parent` (creating
    /// `parent` if missing) and checks that a file can be written there (writes and
    /// removes a probe file), so a bad spill location fails now rather than at the
    /// first spill, hours into a job. Errors are [`Error::Io`] naming the path. The
    /// folder is removed when the cache is dropped.
    pub fn new(parent: &Path, budget: usize) -> Result<Self> {
        let dir = WorkDir::new(parent, "outcore-spill-")?;
        let probe = dir.path().join(".probe");
        fs::write(&probe, b"probe")
            .and_then(|()| fs::remove_file(&probe))
            .map_err(|e| Error::io(&probe, e))?;
        Ok(SpillCache {
            left: Condvar::new(),
            state: Mutex::new(State {
                entries: HashMap::new(),
                lru: BTreeMap::new(),
                next_tick: 0,
                next_id: 0,
                resident_bytes: 0,
                leaving_bytes: 0,
                stats: SpillStats::default(),
            }),
            budget: AtomicUsize::new(budget),
            keep_in_use: AtomicBool::new(false),
            write_allowance: AtomicU64::new(u64::MAX),
            segments: Segments::new(dir.path()),
            dir,
        })
    }

    /// The cache's folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The most bytes the cache keeps resident.
    pub fn budget(&self) -> usize {
        self.budget.load(Ordering::Relaxed)
    }

    /// Changes the budget; when it shrinks below what is resident, pages the least
    /// recently used values out before returning (errors as for [`put`](Self::put)).
    /// The memory account calls this as other consumers grow and shrink.
    ///
    /// It returns once the resident bytes fit the budget, or what is over it cannot
    /// go: values another thread is writing out are waited for, so that the memory
    /// they hold is free before the caller (who asked for this budget to make room)
    /// uses it. Before, a second finalize task granted room while the first one's
    /// page-out was still writing counted that room twice (the account's peak at
    /// 1.3-1.6x the process's for a median at 200 MB).
    pub fn set_budget(&self, budget: usize) -> Result<()> {
        self.budget.store(budget, Ordering::Relaxed);
        let victims = {
            let mut st = self.lock();
            self.pick_victims(&mut st)
        };
        self.page_out(victims)?;
        let mut st = self.lock();
        while st.leaving_bytes > 0 && st.resident_bytes > self.budget.load(Ordering::Relaxed) {
            st = self
                .left
                .wait_timeout(st, std::time::Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Ok(())
    }

    /// When `keep` is true, a value that someone outside the cache still holds (a
    /// running task's input) is not paged out: writing it would free no memory, only
    /// hide it from the account. Resident bytes may then stay over budget until the
    /// holders let go. Off by default.
    pub fn keep_values_in_use(&self, keep: bool) {
        self.keep_in_use.store(keep, Ordering::Relaxed);
    }

    /// Keeps `value` under `key`, replacing any old value (whose file is deleted).
    /// While the resident bytes exceed the budget, pages the least recently used
    /// values to disk; this may include `value` itself if it alone exceeds the
    /// budget.
    ///
    /// On `Err` (a spill file could not be written, an [`Error::Io`] naming it, or
    /// `V::encode` failed) the value is still kept, and every value that failed to
    /// page out stays resident, so the cache answers as before but is over budget
    /// until a later put or get pages out successfully.
    pub fn put(&self, key: u64, value: Arc<V>) -> Result<()> {
        let mem_bytes = value.size_bytes();
        let (old_record, victims) = {
            let mut st = self.lock();
            let id = st.next_id;
            st.next_id += 1;
            let tick = st.next_tick;
            st.next_tick += 1;
            let old = st.entries.insert(
                key,
                Entry {
                    id,
                    mem_bytes,
                    value: Some(value),
                    file: FileState::None,
                    tick,
                },
            );
            let old_record = old.and_then(|old| self.forget(&mut st, old));
            if mem_bytes > 0 {
                st.lru.insert(tick, key);
            }
            st.resident_bytes += mem_bytes;
            st.stats.peak_resident_bytes = st.stats.peak_resident_bytes.max(st.resident_bytes);
            (old_record, self.pick_victims(&mut st))
        };
        self.release(old_record);
        self.page_out(victims)
    }

    /// The value under `key`, read back from disk if it was paged out; `Ok(None)` if
    /// the key is unknown. A value read back becomes resident and most recently used
    /// again, which may page out others; its file is kept, so paging it out again
    /// costs no write.
    ///
    /// Errors: [`Error::CorruptFile`] if its file fails its checks, [`Error::Io`] if
    /// it cannot be read or if paging out others to make room fails (those stay
    /// resident, as after a failed [`put`](Self::put)).
    pub fn get(&self, key: u64) -> Result<Option<Arc<V>>> {
        loop {
            let (loc, id) = {
                let mut guard = self.lock();
                // Borrow fields separately (the guard's DerefMut would borrow all).
                let st = &mut *guard;
                let tick = st.next_tick;
                let Some(e) = st.entries.get_mut(&key) else {
                    return Ok(None);
                };
                if let Some(value) = e.value.clone() {
                    let (old, was_in_lru) = (e.tick, e.in_lru());
                    e.tick = tick;
                    st.next_tick += 1;
                    if was_in_lru {
                        st.lru.remove(&old);
                        st.lru.insert(tick, key);
                    }
                    return Ok(Some(value));
                }
                let FileState::Written(loc) = e.file else {
                    return Err(Error::Corrupt(format!(
                        "spilled value {key} has neither memory nor a record"
                    )));
                };
                (loc, e.id)
            };
            let read = match self.segments.handle(loc) {
                Ok(Some(handle)) => read_record::<V>(&handle, loc),
                // Its segment went with a remove that raced us: asked again below.
                Ok(None) => Err(Error::Corrupt("segment released".into())),
                Err((path, e)) => Err(Error::io(path, e)),
            };
            let mut guard = self.lock();
            let st = &mut *guard;
            let tick = st.next_tick;
            let Some(e) = st.entries.get_mut(&key).filter(|e| e.id == id) else {
                // Removed or replaced while we read (which may be why the read
                // failed): ask again, which answers None or the new value.
                continue;
            };
            let (value, file_bytes) = read?;
            if let Some(existing) = e.value.clone() {
                // Another reader got there first; its copy is the resident one.
                return Ok(Some(existing));
            }
            let value = Arc::new(value);
            e.value = Some(value.clone());
            e.tick = tick;
            let mem_bytes = e.mem_bytes;
            st.next_tick += 1;
            st.lru.insert(tick, key);
            st.resident_bytes += mem_bytes;
            st.stats.peak_resident_bytes = st.stats.peak_resident_bytes.max(st.resident_bytes);
            st.stats.read_back_values += 1;
            st.stats.read_back_bytes += file_bytes;
            let victims = self.pick_victims(st);
            drop(guard);
            self.page_out(victims)?;
            return Ok(Some(value));
        }
    }

    /// Forgets `key`: frees its memory and its record. Unknown keys are fine.
    pub fn remove(&self, key: u64) {
        let record = {
            let mut st = self.lock();
            match st.entries.remove(&key) {
                Some(old) => self.forget(&mut st, old),
                None => None,
            }
        };
        self.release(record);
    }

    /// Lets a record go (outside the lock: it may delete a segment file).
    fn release(&self, record: Option<Loc>) {
        if let Some(loc) = record {
            self.segments.release(loc);
        }
    }

    /// Whether the cache holds a value under `key` (in memory or on disk).
    pub fn contains(&self, key: u64) -> bool {
        self.lock().entries.contains_key(&key)
    }

    /// How many keys the cache holds.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the cache holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of values held in memory now (see [`SpillStats::resident_bytes`]).
    pub fn resident_bytes(&self) -> usize {
        self.lock().resident_bytes
    }

    /// Counters and current sizes.
    pub fn stats(&self) -> SpillStats {
        let st = self.lock();
        SpillStats {
            resident_bytes: st.resident_bytes,
            ..st.stats.clone()
        }
    }

    /// Fault injection for tests: after `bytes` more bytes written to spill files,
    /// writes fail with an io error ("injected write failure"); `u64::MAX` lifts the
    /// limit.
    #[doc(hidden)]
    pub fn fail_writes_after(&self, bytes: u64) {
        self.write_allowance.store(bytes, Ordering::SeqCst);
    }

    /// The lock, even if a thread panicked while holding it: every update under it
    /// is a few plain assignments, so the state is consistent between them.
    fn lock(&self) -> MutexGuard<'_, State<V>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes an entry that left the map out of the accounting; returns its record
    /// to release (outside the lock). A write still running for it releases its
    /// own record when it finds the entry gone.
    fn forget(&self, st: &mut State<V>, old: Entry<V>) -> Option<Loc> {
        if old.in_lru() {
            st.lru.remove(&old.tick);
        }
        if old.value.is_some() {
            st.resident_bytes -= old.mem_bytes;
        }
        match old.file {
            FileState::None => None,
            FileState::Writing => {
                st.leaving_bytes -= old.mem_bytes;
                None
            }
            FileState::Written(loc) => {
                st.stats.values_on_disk -= 1;
                Some(loc)
            }
        }
    }

    /// While over budget, takes the least recently used values out of the LRU: those
    /// with a file are dropped at once, the others are marked `Writing` and returned
    /// for [`page_out`](Self::page_out).
    fn pick_victims(&self, st: &mut State<V>) -> Vec<Victim<V>> {
        let mut victims = Vec::new();
        let budget = self.budget.load(Ordering::Relaxed);
        let keep_in_use = self.keep_in_use.load(Ordering::Relaxed);
        let mut in_use = Vec::new();
        while st.resident_bytes - st.leaving_bytes > budget {
            let Some((tick, key)) = st.lru.pop_first() else {
                break;
            };
            let Some(e) = st.entries.get_mut(&key) else {
                continue;
            };
            // The entry holds one reference; another means a reader still uses it.
            if keep_in_use && e.value.as_ref().is_some_and(|v| Arc::strong_count(v) > 1) {
                in_use.push((tick, key));
                continue;
            }
            match e.file {
                FileState::Written(_) => {
                    e.value = None;
                    st.resident_bytes -= e.mem_bytes;
                }
                FileState::None => {
                    let Some(value) = e.value.clone() else {
                        continue;
                    };
                    e.file = FileState::Writing;
                    st.leaving_bytes += e.mem_bytes;
                    victims.push(Victim {
                        key,
                        id: e.id,
                        value,
                    });
                }
                // Not in the LRU while being written; nothing to do.
                FileState::Writing => {}
            }
        }
        for (tick, key) in in_use {
            st.lru.insert(tick, key);
        }
        victims
    }

    /// Writes the victims' files outside the lock, then marks them on disk. After
    /// the first failure the remaining victims are not tried; all failed or untried
    /// victims go back to the LRU where they were.
    fn page_out(&self, victims: Vec<Victim<V>>) -> Result<()> {
        let mut first_err = None;
        for victim in victims {
            let written = match first_err {
                None => match self.write_record(&victim) {
                    Ok(written) => Some(written),
                    Err(e) => {
                        first_err = Some(e);
                        None
                    }
                },
                Some(_) => None,
            };
            let mut guard = self.lock();
            let st = &mut *guard;
            if let Some((_, bytes)) = written {
                st.stats.spilled_values += 1;
                st.stats.spilled_bytes += bytes;
            }
            let Some(e) = st
                .entries
                .get_mut(&victim.key)
                .filter(|e| e.id == victim.id && e.file == FileState::Writing)
            else {
                // Removed or replaced while we wrote: the record belongs to nobody.
                drop(guard);
                self.release(written.map(|(loc, _)| loc));
                continue;
            };
            let mem_bytes = e.mem_bytes;
            if let Some((loc, _)) = written {
                e.file = FileState::Written(loc);
                e.value = None;
                st.resident_bytes -= mem_bytes;
                st.stats.values_on_disk += 1;
            } else {
                // Its tick was refreshed if a get used it meanwhile, and no one else
                // holds that tick, so it goes back where it belongs in the LRU.
                e.file = FileState::None;
                let tick = e.tick;
                st.lru.insert(tick, victim.key);
            }
            st.leaving_bytes -= mem_bytes;
            drop(guard);
            self.left.notify_all();
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Writes one victim's record at the end of the active segment; returns where
    /// and the bytes written. On failure the record's room is released (its
    /// segment goes with its other records).
    fn write_record(&self, victim: &Victim<V>) -> Result<(Loc, u64)> {
        let mut buf = Vec::with_capacity(HEADER_LEN + victim.value.size_bytes());
        buf.extend_from_slice(&[0; HEADER_LEN]);
        victim.value.encode(&mut buf)?;
        let payload = &buf[HEADER_LEN..];
        let len = (payload.len() as u64).to_le_bytes();
        let crc = crc32fast::hash(payload).to_le_bytes();
        buf[..8].copy_from_slice(MAGIC);
        buf[8..16].copy_from_slice(&len);
        buf[16..HEADER_LEN].copy_from_slice(&crc);

        let (loc, handle) = self
            .segments
            .allocate(buf.len() as u64)
            .map_err(|(path, e)| Error::io(path, e))?;
        if let Err(e) = self.write_limited(&handle.file, loc.offset(), &buf) {
            self.segments.release(loc);
            return Err(Error::io(handle.path, e));
        }
        Ok((loc, buf.len() as u64))
    }

    /// Writes `bytes` at `offset` of `file`, honouring the fault-injection
    /// allowance: past it, writes what is allowed and then fails, so tests see the
    /// partial record a full disk leaves behind. No fsync: spill records need not
    /// outlive the process, only the memory budget.
    fn write_limited(&self, file: &fs::File, offset: u64, bytes: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let want = bytes.len() as u64;
        let allowed =
            match self
                .write_allowance
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    (left != u64::MAX).then(|| left.saturating_sub(want))
                }) {
                Ok(left) => left.min(want),
                Err(_) => want,
            };
        // `allowed <= want == bytes.len()`, so the cast and the slice are in range.
        file.write_all_at(&bytes[..allowed as usize], offset)?;
        if allowed < want {
            return Err(io::Error::other("injected write failure"));
        }
        Ok(())
    }
}

/// Reads and checks one spill record; returns the value and the record's size.
fn read_record<V: Spillable>(handle: &Handle, loc: Loc) -> Result<(V, u64)> {
    use std::os::unix::fs::FileExt;
    let path = handle.path.as_path();
    let mut bytes = vec![0u8; loc.len() as usize];
    let mut got = 0;
    // A short read is a record cut off (the segment ends early): reported as
    // corrupt below, with what was read.
    while got < bytes.len() {
        match handle
            .file
            .read_at(&mut bytes[got..], loc.offset() + got as u64)
        {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    bytes.truncate(got);
    let corrupt = |reason: String| Error::CorruptFile {
        path: path.to_path_buf(),
        reason: format!("the record at byte {}: {reason}", loc.offset()),
    };
    let Some((header, payload)) = bytes.split_at_checked(HEADER_LEN) else {
        return Err(corrupt(format!(
            "{} bytes, shorter than the {HEADER_LEN}-byte header",
            bytes.len()
        )));
    };
    if &header[..8] != MAGIC {
        return Err(corrupt(format!(
            "bad magic {:?}, expected {:?}",
            String::from_utf8_lossy(&header[..8]),
            String::from_utf8_lossy(MAGIC)
        )));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[8..16]);
    let len = u64::from_le_bytes(len);
    if len != payload.len() as u64 {
        return Err(corrupt(format!(
            "header says {len} payload bytes, the segment has {}",
            payload.len()
        )));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&header[16..HEADER_LEN]);
    let (want, got) = (u32::from_le_bytes(crc), crc32fast::hash(payload));
    if want != got {
        return Err(corrupt(format!(
            "checksum mismatch: header {want:#010x}, payload {got:#010x}"
        )));
    }
    let value = V::decode(payload).map_err(|e| corrupt(format!("payload does not decode: {e}")))?;
    Ok((value, bytes.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::path::PathBuf;

    /// Bytes that count their length against the budget.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Blob(Vec<u8>);

    impl Spillable for Blob {
        fn size_bytes(&self) -> usize {
            self.0.len()
        }
        fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
            out.extend_from_slice(&self.0);
            Ok(())
        }
        fn decode(bytes: &[u8]) -> Result<Self> {
            Ok(Blob(bytes.to_vec()))
        }
    }

    /// A blob of `len` bytes that differ by key and position, so a value read back
    /// under the wrong key or with shifted bytes shows.
    fn blob(seed: u64, len: usize) -> Arc<Blob> {
        Arc::new(Blob(
            (0..len)
                .map(|i| (seed as usize).wrapping_mul(31).wrapping_add(i) as u8)
                .collect(),
        ))
    }

    /// Names of the files in the cache's folder with the given suffix.
    fn files(cache: &SpillCache<impl Spillable>, suffix: &str) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        out.sort();
        out
    }

    /// Bytes of the spill files in the cache's folder.
    fn disk_bytes(cache: &SpillCache<impl Spillable>) -> u64 {
        files(cache, ".spill")
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u64, usize),
        Get(u64),
        Remove(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few keys, so gets and replacements hit spilled values often.
        prop_oneof![
            4 => (0..12u64, 0..4096usize).prop_map(|(k, n)| Op::Put(k, n)),
            4 => (0..12u64).prop_map(Op::Get),
            1 => (0..12u64).prop_map(Op::Remove),
        ]
    }

    /// Random put/get/remove sequences against a `HashMap`, with a budget of 8 KiB
    /// for values of up to 4 KiB, so most values live on disk most of the time.
    #[test]
    fn spill_matches_hash_map_model() {
        const BUDGET: usize = 8 << 10;
        let parent = tempfile::tempdir().unwrap();
        let totals = Mutex::new(SpillStats::default());
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 64,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        runner
            .run(&proptest::collection::vec(op(), 1..200), |ops| {
                let cache = SpillCache::<Blob>::new(parent.path(), BUDGET).unwrap();
                let mut model: HashMap<u64, Arc<Blob>> = HashMap::new();
                for (i, op) in ops.iter().enumerate() {
                    match *op {
                        Op::Put(k, n) => {
                            let v = blob(k * 1000 + i as u64, n);
                            cache.put(k, v.clone()).unwrap();
                            model.insert(k, v);
                        }
                        Op::Get(k) => {
                            let got = cache.get(k).unwrap();
                            prop_assert_eq!(
                                got.as_deref(),
                                model.get(&k).map(|v| &**v),
                                "op {}",
                                i
                            );
                        }
                        Op::Remove(k) => {
                            cache.remove(k);
                            model.remove(&k);
                        }
                    }
                    // Every value is below the budget, so the budget always holds.
                    prop_assert!(
                        cache.resident_bytes() <= BUDGET,
                        "op {}: {:?}",
                        i,
                        cache.stats()
                    );
                    prop_assert_eq!(cache.len(), model.len());
                    for k in 0..12 {
                        prop_assert_eq!(cache.contains(k), model.contains_key(&k));
                    }
                }
                let stats = cache.stats();
                prop_assert_eq!(stats.values_on_disk == 0, disk_bytes(&cache) == 0);
                prop_assert!(files(&cache, ".tmp").is_empty());
                // The peak includes the moment between a put and its page-out.
                prop_assert!(stats.peak_resident_bytes < BUDGET + 4096);
                // Everything comes back at the end, too.
                for (k, v) in &model {
                    let got = cache.get(*k).unwrap();
                    prop_assert_eq!(got.as_deref(), Some(&**v));
                }
                let mut t = totals.lock().unwrap();
                t.spilled_bytes += stats.spilled_bytes;
                t.read_back_values += stats.read_back_values;
                Ok(())
            })
            .unwrap();
        let t = totals.into_inner().unwrap();
        assert!(t.spilled_bytes > 0 && t.read_back_values > 0, "{t:?}");
    }

    #[test]
    fn value_over_budget_is_paged_out_at_once() {
        let parent = tempfile::tempdir().unwrap();
        let cache = SpillCache::<Blob>::new(parent.path(), 100).unwrap();
        cache.put(1, blob(1, 50)).unwrap();
        assert_eq!(cache.resident_bytes(), 50);
        // Strict LRU: 1 is older, so it goes first, then 2 itself.
        cache.put(2, blob(2, 500)).unwrap();
        assert_eq!(cache.resident_bytes(), 0);
        assert_eq!(cache.stats().values_on_disk, 2);
        assert_eq!(files(&cache, ".spill").len(), 1, "two records, one segment");
        assert_eq!(cache.get(1).unwrap().as_deref(), Some(&*blob(1, 50)));
        assert_eq!(cache.resident_bytes(), 50);
        // Read back, 2 is over budget again; both have files, so no write happens.
        assert_eq!(cache.get(2).unwrap().as_deref(), Some(&*blob(2, 500)));
        let s = cache.stats();
        assert_eq!(s.resident_bytes, 0);
        assert_eq!(s.peak_resident_bytes, 550);
        assert_eq!(
            (s.spilled_values, s.read_back_values, s.values_on_disk),
            (2, 2, 2)
        );
    }

    #[test]
    fn read_back_value_pages_out_again_without_a_write() {
        let parent = tempfile::tempdir().unwrap();
        let cache = SpillCache::<Blob>::new(parent.path(), 1000).unwrap();
        cache.put(1, blob(1, 600)).unwrap();
        cache.put(2, blob(2, 600)).unwrap(); // pages 1 out
        cache.get(1).unwrap(); // reads 1 back, pages 2 out
        cache.get(2).unwrap(); // reads 2 back, drops 1 (it has a file)
        let s = cache.stats();
        assert_eq!((s.spilled_values, s.read_back_values), (2, 2), "{s:?}");
        assert_eq!(s.resident_bytes, 600);
        assert_eq!(s.values_on_disk, 2);
    }

    #[test]
    fn a_lowered_budget_pages_out_at_once_and_a_raised_one_costs_nothing() {
        let parent = tempfile::tempdir().unwrap();
        let cache = SpillCache::<Blob>::new(parent.path(), 1000).unwrap();
        for k in 0..4 {
            cache.put(k, blob(k, 200)).unwrap();
        }
        assert_eq!(cache.resident_bytes(), 800);
        cache.set_budget(300).unwrap();
        let s = cache.stats();
        assert_eq!((s.resident_bytes, s.spilled_values), (200, 3), "{s:?}");
        cache.set_budget(1000).unwrap();
        assert_eq!(cache.stats().spilled_values, 3);
        for k in 0..4 {
            assert_eq!(cache.get(k).unwrap().as_deref(), Some(&*blob(k, 200)));
        }
    }

    /// A value whose encoding takes a while, so that a page-out is in flight.
    struct Slow(Vec<u8>);

    impl Spillable for Slow {
        fn size_bytes(&self) -> usize {
            self.0.len()
        }
        fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
            std::thread::sleep(std::time::Duration::from_millis(300));
            out.extend_from_slice(&self.0);
            Ok(())
        }
        fn decode(bytes: &[u8]) -> Result<Self> {
            Ok(Slow(bytes.to_vec()))
        }
    }

    /// A lowered budget returns only when what is over it has left, even when
    /// another thread is the one writing it out: the caller lowered the budget to
    /// use that room.
    #[test]
    fn a_lowered_budget_waits_for_the_page_outs_of_other_threads() {
        let parent = tempfile::tempdir().unwrap();
        let cache = SpillCache::<Slow>::new(parent.path(), 1000).unwrap();
        cache.put(1, Arc::new(Slow(vec![7; 400]))).unwrap();
        std::thread::scope(|s| {
            let writer = s.spawn(|| cache.set_budget(0).unwrap());
            // The writer has marked the value leaving and sleeps in its encode.
            while cache.lock().leaving_bytes == 0 {
                std::thread::yield_now();
            }
            cache.set_budget(0).unwrap();
            assert_eq!(
                cache.resident_bytes(),
                0,
                "returned with the value still in memory"
            );
            writer.join().unwrap();
        });
        assert_eq!(
            cache.get(1).unwrap().map(|v| v.0.clone()),
            Some(vec![7; 400])
        );
    }

    #[test]
    fn values_in_use_stay_resident_when_asked() {
        let parent = tempfile::tempdir().unwrap();
        let cache = SpillCache::<Blob>::new(parent.path(), 1000).unwrap();
        cache.keep_values_in_use(true);
        cache.put(1, blob(1, 400)).unwrap();
        cache.put(2, blob(2, 400)).unwrap();
        let held = cache.get(1).unwrap().unwrap();
        // 2 is the older one now, and free: it goes; 1 is held and stays.
        cache.set_budget(0).unwrap();
        let s = cache.stats();
        assert_eq!((s.resident_bytes, s.spilled_values), (400, 1), "{s:?}");
        drop(held);
        cache.set_budget(0).unwrap();
        let s = cache.stats();
        assert_eq!((s.resident_bytes, s.spilled_values), (0, 2), "{s:?}");
    }

    #[test]
    fn replace_and_remove_free_records() {
        let parent = tempfile::tempdir().unwrap();
        let cache = SpillCache::<Blob>::new(parent.path(), 0).unwrap();
        cache.put(7, blob(1, 10)).unwrap();
        assert_eq!(disk_bytes(&cache), (HEADER_LEN + 10) as u64);
        cache.put(7, blob(2, 20)).unwrap();
        assert_eq!(
            cache.stats().values_on_disk,
            1,
            "a replaced value's record is freed"
        );
        assert_eq!(cache.get(7).unwrap().as_deref(), Some(&*blob(2, 20)));
        cache.remove(7);
        assert_eq!(disk_bytes(&cache), 0, "{:?}", files(&cache, ""));
        assert_eq!(cache.get(7).unwrap(), None);
        assert!(cache.is_empty());
        assert_eq!(cache.stats().values_on_disk, 0);
    }

    /// Thousands of values paged out go to a few segment files, not a file each,
    /// and a segment goes once none of its records lives.
    #[test]
    fn many_values_share_few_segment_files() {
        let parent = tempfile::tempdir().unwrap();
        let cache = SpillCache::<Blob>::new(parent.path(), 0).unwrap();
        let n = 3000u64;
        for k in 0..n {
            cache.put(k, blob(k, 4000)).unwrap();
        }
        let s = cache.stats();
        assert_eq!((s.spilled_values, s.values_on_disk), (n, n), "{s:?}");
        let segments = files(&cache, ".spill").len();
        let expect = (n * (HEADER_LEN as u64 + 4000)).div_ceil(crate::segments::SEGMENT_BYTES);
        assert!(
            segments as u64 <= expect,
            "{segments} segment files for {n} values"
        );
        for k in (0..n).rev() {
            assert_eq!(cache.get(k).unwrap().as_deref(), Some(&*blob(k, 4000)));
            cache.remove(k);
        }
        assert_eq!(disk_bytes(&cache), 0, "{:?}", files(&cache, ""));
    }

    #[test]
    fn truncated_spill_file_is_corrupt_naming_it() {
        let parent = tempfile::tempdir().unwrap();
        let cache = SpillCache::<Blob>::new(parent.path(), 0).unwrap();
        cache.put(3, blob(3, 100)).unwrap();
        let [path] = files(&cache, ".spill").try_into().unwrap();
        let good = fs::read(&path).unwrap();
        assert_eq!(good.len(), HEADER_LEN + 100);
        for cut in [0, 7, 19, 20, 21, good.len() - 1] {
            fs::write(&path, &good[..cut]).unwrap();
            match cache.get(3) {
                Err(Error::CorruptFile { path: p, reason }) => {
                    assert_eq!(p, path, "cut {cut}: {reason}");
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        fs::write(&path, &good).unwrap();
        assert_eq!(cache.get(3).unwrap().as_deref(), Some(&*blob(3, 100)));
        // The message tells the reader where to look.
        fs::write(&path, &good[..5]).unwrap();
        let msg = cache.get(3).unwrap_err().to_string();
        assert!(msg.starts_with(&path.display().to_string()), "{msg}");
        assert!(msg.contains("corrupt spill file"), "{msg}");
    }

    /// An Arrow batch as a spilled value. Arrow's IPC reader can panic or return
    /// other values on flipped bytes; the CRC must stop every flip first.
    struct Batch(arrow::array::RecordBatch);

    impl Spillable for Batch {
        fn size_bytes(&self) -> usize {
            self.0.get_array_memory_size()
        }
        fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
            crate::codec::encode_batches(&self.0.schema(), std::slice::from_ref(&self.0), out)
        }
        fn decode(bytes: &[u8]) -> Result<Self> {
            let (schema, batches) = crate::codec::decode_batches(bytes)?;
            arrow::compute::concat_batches(&schema, &batches)
                .map(Batch)
                .map_err(|e| Error::Corrupt(e.to_string()))
        }
    }

    #[test]
    fn flipped_byte_anywhere_is_corrupt_naming_the_file() {
        use arrow::array::{ArrayRef, Float64Array, Int64Array};
        let batch = arrow::array::RecordBatch::try_from_iter(vec![
            (
                "a",
                Arc::new(Int64Array::from_iter_values(0..64)) as ArrayRef,
            ),
            (
                "b",
                Arc::new(Float64Array::from_iter_values(
                    (0..64).map(|i| i as f64 / 3.0),
                )) as ArrayRef,
            ),
        ])
        .unwrap();
        let parent = tempfile::tempdir().unwrap();
        let cache = SpillCache::<Batch>::new(parent.path(), 0).unwrap();
        cache.put(9, Arc::new(Batch(batch.clone()))).unwrap();
        let [path] = files(&cache, ".spill").try_into().unwrap();
        let good = fs::read(&path).unwrap();
        for pos in 0..good.len() {
            for mask in [0x01u8, 0x80] {
                let mut bad = good.clone();
                bad[pos] ^= mask;
                fs::write(&path, &bad).unwrap();
                match cache.get(9) {
                    Err(Error::CorruptFile { path: p, .. }) => assert_eq!(p, path),
                    Err(e) => panic!("flip at {pos}: {e}"),
                    Ok(_) => panic!("flip {mask:#x} at {pos} of {} read as data", good.len()),
                }
            }
        }
        fs::write(&path, &good).unwrap();
        assert_eq!(cache.get(9).unwrap().unwrap().0, batch);
    }

    #[test]
    fn parent_that_is_a_file_is_an_io_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("not-a-folder");
        fs::write(&file, b"x").unwrap();
        for parent in [file.clone(), file.join("below")] {
            match SpillCache::<Blob>::new(&parent, 10) {
                Err(Error::Io { path, .. }) => assert_eq!(path, parent),
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("{} accepted as spill folder", parent.display()),
            }
        }
    }

    #[test]
    fn missing_parent_is_created() {
        let tmp = tempfile::tempdir().unwrap();
        let parent = tmp.path().join("a/b");
        let cache = SpillCache::<Blob>::new(&parent, 10).unwrap();
        assert!(cache.dir().starts_with(&parent));
        let name = cache
            .dir()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with("outcore-spill-"), "{name}");
    }

    #[test]
    fn failed_write_is_io_error_leaving_no_tmp_and_a_working_cache() {
        let parent = tempfile::tempdir().unwrap();
        let cache = SpillCache::<Blob>::new(parent.path(), 1000).unwrap();
        for k in 0..4 {
            cache.put(k, blob(k, 400)).unwrap(); // 0 and 1 go to disk
        }
        cache.fail_writes_after(100);
        let err = cache.put(10, blob(10, 400)).unwrap_err();
        match &err {
            Error::Io { path, source } => {
                assert!(path.starts_with(cache.dir()), "{err}");
                assert!(path.to_string_lossy().ends_with(".spill"), "{err}");
                assert_eq!(source.to_string(), "injected write failure");
            }
            other => panic!("{other}"),
        }
        assert!(files(&cache, ".tmp").is_empty());
        // The value that failed to page out stayed resident; everything answers.
        assert_eq!(cache.resident_bytes(), 1200);
        for k in [0, 1, 3, 10] {
            // Reading 0 or 1 back needs room, and the writes still fail.
            match cache.get(k) {
                Ok(v) => assert_eq!(v.as_deref(), Some(&*blob(k, 400)), "key {k}"),
                Err(Error::Io { .. }) => assert!(k < 2, "key {k}"),
                Err(e) => panic!("key {k}: {e}"),
            }
        }
        assert!(files(&cache, ".tmp").is_empty());
        // Once the disk takes writes again, the cache gets back under budget.
        cache.fail_writes_after(u64::MAX);
        cache.put(11, blob(11, 10)).unwrap();
        assert!(cache.resident_bytes() <= 1000, "{:?}", cache.stats());
        for k in [0, 1, 2, 3, 10, 11] {
            let len = if k == 11 { 10 } else { 400 };
            assert_eq!(
                cache.get(k).unwrap().as_deref(),
                Some(&*blob(k, len)),
                "key {k}"
            );
        }
    }

    #[test]
    fn drop_removes_the_folder() {
        let parent = tempfile::tempdir().unwrap();
        let cache = SpillCache::<Blob>::new(parent.path(), 0).unwrap();
        cache.put(1, blob(1, 100)).unwrap();
        let dir = cache.dir().to_path_buf();
        assert!(dir.is_dir());
        drop(cache);
        assert!(!dir.exists());
    }

    /// Four threads on distinct keys with a budget smaller than one thread's working
    /// set, so pages out race with reads back and removals.
    #[test]
    fn concurrent_threads_see_their_values() {
        let parent = tempfile::tempdir().unwrap();
        let cache = SpillCache::<Blob>::new(parent.path(), 4 << 10).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let cache = &cache;
                s.spawn(move || {
                    let key = |i: u64| t * 10_000 + i;
                    let len = |i: u64| (i * 37 % 1500) as usize;
                    for i in 0..400u64 {
                        cache.put(key(i), blob(key(i), len(i))).unwrap();
                        let j = i * 7 % (i + 1);
                        let got = cache.get(key(j)).unwrap();
                        if j % 5 == 4 && j < i {
                            assert_eq!(got, None, "key {}", key(j));
                        } else {
                            assert_eq!(
                                got.as_deref(),
                                Some(&*blob(key(j), len(j))),
                                "key {}",
                                key(j)
                            );
                        }
                        if i % 5 == 4 {
                            cache.remove(key(i));
                        }
                    }
                });
            }
        });
        let s = cache.stats();
        assert!(s.spilled_bytes > 0 && s.read_back_values > 0, "{s:?}");
        assert_eq!(cache.len(), 4 * 320);
        assert!(files(&cache, ".tmp").is_empty());
        assert_eq!(s.values_on_disk == 0, disk_bytes(&cache) == 0);
        for t in 0..4u64 {
            for i in (0..400u64).filter(|i| i % 5 != 4) {
                let k = t * 10_000 + i;
                assert_eq!(
                    cache.get(k).unwrap().as_deref(),
                    Some(&*blob(k, (i * 37 % 1500) as usize))
                );
            }
        }
    }

    /// Threads racing on the same keys: puts replace values being written, removes
    /// delete files being read. Every answer must be some value put under that key
    /// (or None), never an error, and the files must add up at the end.
    #[test]
    fn concurrent_threads_on_shared_keys() {
        let parent = tempfile::tempdir().unwrap();
        let cache = SpillCache::<Blob>::new(parent.path(), 2 << 10).unwrap();
        // A value's first 8 bytes name its key.
        let value = |key: u64, n: u64| {
            let mut v = key.to_le_bytes().to_vec();
            v.resize(8 + (n % 1200) as usize, n as u8);
            Arc::new(Blob(v))
        };
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (cache, value) = (&cache, &value);
                s.spawn(move || {
                    let mut x = t + 1;
                    for _ in 0..3000 {
                        // xorshift: cheap, seeded, different per thread.
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let key = x % 8;
                        match x % 10 {
                            0..=3 => cache.put(key, value(key, x)).unwrap(),
                            4..=8 => {
                                if let Some(v) = cache.get(key).unwrap() {
                                    assert_eq!(v.0[..8], key.to_le_bytes());
                                }
                            }
                            _ => cache.remove(key),
                        }
                    }
                });
            }
        });
        let s = cache.stats();
        assert!(s.spilled_bytes > 0 && s.read_back_values > 0, "{s:?}");
        assert!(files(&cache, ".tmp").is_empty());
        assert_eq!(s.values_on_disk == 0, disk_bytes(&cache) == 0);
        for key in 0..8 {
            if let Some(v) = cache.get(key).unwrap() {
                assert_eq!(v.0[..8], key.to_le_bytes());
            }
        }
        for key in 0..8 {
            cache.remove(key);
        }
        assert_eq!(disk_bytes(&cache), 0);
        assert_eq!(cache.stats().resident_bytes, 0);
    }
}

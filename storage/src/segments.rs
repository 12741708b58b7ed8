//! Segment files: the spill cache's records, appended to a few large files
//! instead of one file per value. A file per value cost a create, a rename, an
//! open and an unlink each: at a small limit a radix groupby pages out tens of
//! thousands of values, and those directory operations (serialised on the
//! folder's lock in the kernel) took more time than the query's own work.
//!
//! ```text
//!   allocate(len) ──► (segment, offset): the active segment's end moves by len
//!   write_at / read_at at that offset, outside the lock
//!   release(loc)  ──► the segment's live records − 1; a segment that is full
//!                     (no longer active) and has none left is deleted; the
//!                     active one is emptied and starts again at offset 0
//! ```
//!
//! Records are never moved: a segment's space comes back when all of its records
//! are released, so the disk holds at most the bytes written since the oldest live
//! record's segment began. Segments are small ([`SEGMENT_BYTES`]) so one
//! long-lived record pins little. The active segment and the last
//! [`OPEN_FULL_SEGMENTS`] full ones opened stay open; an older one is opened
//! again to read it, so a spill of many gigabytes never runs into the limit on
//! open files.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Bytes after which a segment takes no more records (a larger record gets a
/// segment of its own).
pub const SEGMENT_BYTES: u64 = 8 << 20;

/// Where one record is: its segment, offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    segment: u64,
    offset: u64,
    len: u64,
}

impl Loc {
    /// The record's bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the record has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The record's byte offset in its segment.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

struct Segment {
    /// Open while the segment takes records, and while it is among the full
    /// segments kept open ([`OPEN_FULL_SEGMENTS`]).
    file: Option<Arc<File>>,
    path: PathBuf,
    /// Bytes allocated so far.
    end: u64,
    /// Records allocated and not released.
    live: usize,
}

/// Full segments kept open for reads at most (the least recently opened is
/// closed first): far below the usual limit of 1024 open files, and enough that
/// a part's reads, which come from the last few segments written, rarely open
/// one again (an open costs tens of microseconds under a busy folder).
const OPEN_FULL_SEGMENTS: usize = 64;

#[derive(Default)]
struct State {
    segments: HashMap<u64, Segment>,
    /// Full segments with an open file, oldest first.
    open_full: std::collections::VecDeque<u64>,
    /// The segment new records go to.
    active: Option<u64>,
    next: u64,
}

impl State {
    /// Counts full segment `id` (whose file is open) among those kept open,
    /// closing the least recently opened past [`OPEN_FULL_SEGMENTS`].
    fn keep_open(&mut self, id: u64) {
        self.open_full.push_back(id);
        while self.open_full.len() > OPEN_FULL_SEGMENTS {
            let Some(old) = self.open_full.pop_front() else {
                break;
            };
            if let Some(s) = self.segments.get_mut(&old) {
                s.file = None;
            }
        }
    }
}

/// The segment files of one folder.
pub struct Segments {
    dir: PathBuf,
    state: Mutex<State>,
}

/// A segment's file and path, to write or read a record outside the lock.
pub struct Handle {
    /// The open segment file.
    pub file: Arc<File>,
    /// Its path, for errors.
    pub path: PathBuf,
}

impl Segments {
    /// Segments in `dir` (which exists), named `segment-N.spill`.
    pub fn new(dir: &Path) -> Segments {
        Segments {
            dir: dir.to_path_buf(),
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Room for a record of `len` bytes at the end of the active segment (a new
    /// one when it is full): write it with `FileExt::write_all_at` at
    /// [`Loc::offset`], and [`release`](Self::release) it when done, written or
    /// not. An error creating a segment file names it.
    pub fn allocate(&self, len: u64) -> Result<(Loc, Handle), (PathBuf, io::Error)> {
        let mut st = self.lock();
        let full = st
            .active
            .and_then(|a| st.segments.get(&a))
            .is_none_or(|s| s.end > 0 && s.end + len > SEGMENT_BYTES);
        if full {
            if let Some(old) = st.active.take() {
                let dead = st.segments.get(&old).is_some_and(|s| s.live == 0);
                if dead {
                    let s = st.segments.remove(&old).expect("the active segment");
                    let _ = fs::remove_file(&s.path);
                } else {
                    // It stays open for reads, among the full segments kept open
                    // (writers still writing to it hold their own handle).
                    st.keep_open(old);
                }
            }
            let id = st.next;
            let path = self.dir.join(format!("segment-{id}.spill"));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| (path.clone(), e))?;
            st.next += 1;
            st.segments.insert(
                id,
                Segment {
                    file: Some(Arc::new(file)),
                    path,
                    end: 0,
                    live: 0,
                },
            );
            st.active = Some(id);
        }
        let id = st.active.expect("an active segment");
        let s = st.segments.get_mut(&id).expect("the active segment");
        let loc = Loc {
            segment: id,
            offset: s.end,
            len,
        };
        s.end += len;
        s.live += 1;
        let file = s.file.clone().expect("the active segment is open");
        Ok((
            loc,
            Handle {
                file,
                path: s.path.clone(),
            },
        ))
    }

    /// The segment of a record allocated and not yet released, to read it: the
    /// active segment's handle, or a full segment opened now (an error naming
    /// it if it cannot be). `None` if the record's segment is gone.
    pub fn handle(&self, loc: Loc) -> Result<Option<Handle>, (PathBuf, io::Error)> {
        let st = self.lock();
        let Some(s) = st.segments.get(&loc.segment) else {
            return Ok(None);
        };
        let path = s.path.clone();
        if let Some(file) = &s.file {
            return Ok(Some(Handle {
                file: file.clone(),
                path,
            }));
        }
        drop(st);
        let file = Arc::new(File::open(&path).map_err(|e| (path.clone(), e))?);
        let mut st = self.lock();
        if let Some(s) = st.segments.get_mut(&loc.segment) {
            if s.file.is_none() {
                s.file = Some(file.clone());
                st.keep_open(loc.segment);
            }
        }
        Ok(Some(Handle { file, path }))
    }

    /// Lets a record go; its segment's file is deleted when it holds no live
    /// record and takes no more. Errors deleting are ignored: the folder goes with
    /// the cache.
    pub fn release(&self, loc: Loc) {
        let mut st = self.lock();
        let active = st.active == Some(loc.segment);
        let Some(s) = st.segments.get_mut(&loc.segment) else {
            return;
        };
        s.live = s.live.saturating_sub(1);
        if s.live > 0 {
            return;
        }
        if active {
            // Nothing in it lives: new records start again at its beginning, and
            // its bytes go back to the disk now (no directory operation).
            s.end = 0;
            if let Some(file) = &s.file {
                let _ = file.set_len(0);
            }
            return;
        }
        let s = st.segments.remove(&loc.segment).expect("present");
        // Its place among the full segments kept open goes to another.
        st.open_full.retain(|&id| id != loc.segment);
        drop(st);
        let _ = fs::remove_file(&s.path);
    }

    /// Segment files that exist now.
    pub fn files(&self) -> usize {
        self.lock().segments.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn records_share_segments_and_a_segment_goes_with_its_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let segs = Segments::new(dir.path());
        let count = || fs::read_dir(dir.path()).unwrap().count();
        let half = SEGMENT_BYTES / 2;
        let (a, ha) = segs.allocate(half).unwrap();
        let (b, _) = segs.allocate(half).unwrap();
        assert_eq!((a.offset(), b.offset()), (0, half));
        ha.file.write_all_at(b"abc", a.offset()).unwrap();
        // Full: the third record starts a segment; a record past the size gets
        // one of its own.
        let (c, _) = segs.allocate(1).unwrap();
        // The full first segment is read through a handle opened for the read.
        let mut got = [0u8; 3];
        let h = segs.handle(a).unwrap().unwrap();
        h.file.read_exact_at(&mut got, a.offset()).unwrap();
        assert_eq!(&got, b"abc");
        let (d, _) = segs.allocate(2 * SEGMENT_BYTES).unwrap();
        assert_eq!((c.offset(), d.offset(), count()), (0, 0, 3));
        segs.release(a);
        assert_eq!(count(), 3, "b still lives in the first segment");
        segs.release(b);
        assert_eq!(count(), 2, "the first segment had no live record left");
        segs.release(c);
        assert_eq!(segs.files(), 1);
        // The active segment stays, emptied, and new records start at its
        // beginning.
        segs.release(d);
        assert_eq!(count(), 1);
        let (e, he) = segs.allocate(SEGMENT_BYTES).unwrap();
        assert_eq!(e.offset(), 0);
        assert_eq!(he.file.metadata().unwrap().len(), 0);
        let (_, _) = segs.allocate(1).unwrap();
        segs.release(e);
        assert_eq!(count(), 1);
    }
}

//! Files that change under us. A query is planned from each input file's size
//! (blocks are cut from it); if the file is then cut, grown or rewritten, reading
//! on would give rows that belong to no consistent version of it, or silently fewer
//! rows. So planning records each file's [`FileStamp`] (size and modification time),
//! and every block read checks it before and after reading, and treats a read that
//! returns fewer bytes than the stamp promised as a change too. Any of those is
//! [`Error::Changed`] naming the file.

use std::fs::{File, Metadata};
use std::path::Path;
use std::time::SystemTime;

use crate::error::{Error, Result};

/// What a file looked like when the query was planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time (`None` where the platform has none).
    pub modified: Option<SystemTime>,
}

impl FileStamp {
    /// The stamp of `path` now. Errors name the file.
    pub fn of(path: &Path) -> Result<FileStamp> {
        let m = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        Ok(FileStamp::from_metadata(&m))
    }

    fn from_metadata(m: &Metadata) -> FileStamp {
        FileStamp {
            size: m.len(),
            modified: m.modified().ok(),
        }
    }

    /// Opens `path` for reading and checks that it still matches the stamp.
    pub fn open(&self, path: &Path) -> Result<File> {
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        self.check(path, &f)?;
        Ok(f)
    }

    /// Checks that the open file `f` (of `path`) still matches the stamp; call it
    /// after reading too, to catch a change made during the read.
    pub fn check(&self, path: &Path, f: &File) -> Result<()> {
        let m = f.metadata().map_err(|e| Error::io(path, e))?;
        let now = FileStamp::from_metadata(&m);
        if now.size != self.size {
            return Err(changed(
                path,
                format!("its size was {} bytes and is now {}", self.size, now.size),
            ));
        }
        if now.modified != self.modified {
            return Err(changed(
                path,
                format!(
                    "it was modified at {} and is now modified at {}",
                    fmt_time(self.modified),
                    fmt_time(now.modified)
                ),
            ));
        }
        Ok(())
    }

    /// The error for a read at byte `at` that wanted `wanted` bytes and got `got`:
    /// the file is shorter than when the query was planned.
    pub fn short_read(&self, path: &Path, at: u64, wanted: u64, got: u64) -> Error {
        changed(
            path,
            format!(
                "a read of {wanted} bytes at byte {at} returned {got}: the file is shorter than its planned {} bytes",
                self.size
            ),
        )
    }
}

fn changed(path: &Path, reason: String) -> Error {
    Error::Changed {
        path: path.to_path_buf(),
        reason,
    }
}

fn fmt_time(t: Option<SystemTime>) -> String {
    match t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        None => "an unknown time".into(),
        Some(d) => {
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match chrono::DateTime::from_timestamp(secs, d.subsec_nanos()) {
                Some(t) => t.format("%Y-%m-%d %H:%M:%S%.9f UTC").to_string(),
                None => format!("{secs} s after 1970"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_or_rewritten_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, b"a,b\n1,2\n").unwrap();
        let stamp = FileStamp::of(&path).unwrap();
        stamp.open(&path).unwrap();
        std::fs::write(&path, b"a,b\n").unwrap();
        let err = stamp.open(&path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: the file changed after the query was planned (its size was 8 bytes and is now 4); run the query again",
                path.display()
            )
        );
        // Same size, new contents, later time.
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_len(8).unwrap();
        let t = SystemTime::now() + std::time::Duration::from_secs(5);
        f.set_modified(t).unwrap();
        drop(f);
        let err = stamp.open(&path).unwrap_err().to_string();
        assert!(
            err.contains("it was modified at ") && err.contains("and is now modified at "),
            "{err}"
        );
    }
}

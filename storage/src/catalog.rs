//! The catalog of a persisted dataset: a few named values (schema, divisions, the
//! query that made it) kept in a small sled database inside the dataset's folder.
//! Values are bytes; what they mean is the caller's business.
//!
//! The database is opened, read or written, flushed and closed in one call each,
//! so a dataset folder holds no open handle and can be renamed into place.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};

fn sled_err(path: &Path, e: sled::Error) -> Error {
    let source = match e {
        sled::Error::Io(io) => io,
        other => std::io::Error::other(other.to_string()),
    };
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `entries` into a new catalog database at `path` and flushes it to disk.
pub fn write(path: &Path, entries: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    let db = sled::Config::new()
        .path(path)
        .create_new(true)
        .open()
        .map_err(|e| sled_err(path, e))?;
    for (k, v) in entries {
        db.insert(k.as_bytes(), v.as_slice())
            .map_err(|e| sled_err(path, e))?;
    }
    db.flush().map_err(|e| sled_err(path, e))?;
    Ok(())
}

/// Every entry of the catalog database at `path`; an error naming the path if
/// there is none or it cannot be read.
pub fn read(path: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    if !path.exists() {
        return Err(Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no catalog here"),
        });
    }
    let db = sled::Config::new()
        .path(path)
        .open()
        .map_err(|e| sled_err(path, e))?;
    let mut out = BTreeMap::new();
    for kv in db.iter() {
        let (k, v) = kv.map_err(|e| sled_err(path, e))?;
        out.insert(String::from_utf8_lossy(&k).into_owned(), v.to_vec());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("_catalog");
        let mut m = BTreeMap::new();
        m.insert("schema".to_string(), vec![1, 2, 3]);
        m.insert("query".to_string(), b"resample".to_vec());
        write(&path, &m).unwrap();
        assert_eq!(read(&path).unwrap(), m);
        assert!(
            write(&path, &m).is_err(),
            "create_new refuses an existing catalog"
        );
        assert!(read(&dir.path().join("none")).is_err());
    }
}

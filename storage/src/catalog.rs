//! The manifest of a persisted dataset: one small file, `_manifest`, beside the
//! dataset's Parquet files, saying what they hold (schema, partitions, rows, the
//! index and its divisions, the query that made them).
//!
//! Readers share it: reading opens the file read-only, takes no lock and writes
//! nothing, so any number of processes can read one dataset at once. Writing is
//! atomic: the bytes go to a temporary file in the same folder, are synced, and the
//! file is renamed to `_manifest`; a reader sees the old manifest or the new one,
//! never a torn one.
//!
//! ```text
//!   _manifest:  "outcore-manifest 1\n"
//!               entries: key length (u32 LE), key, value length (u64 LE), value
//!               CRC32 of everything before it (u32 LE)
//!   values:     format, npartitions, rows, query, index (text);
//!               schema, divisions (Arrow IPC streams)
//! ```
//!
//! Datasets written before the manifest kept these entries in a sled database,
//! `_catalog/`; [`Manifest::read`] still reads those (sled opens them with a lock,
//! so two processes cannot read such an old dataset at once; rewriting it makes a
//! manifest).
//!
//! ```
//! # use std::sync::Arc;
//! # use arrow::datatypes::{DataType, Field, Schema};
//! use outcore_storage::catalog::Manifest;
//! let dir = tempfile::tempdir()?;
//! let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
//! Manifest::new(schema, 2, 10, "outcore persist ...").write_atomic(dir.path())?;
//! assert_eq!(Manifest::read(dir.path())?.rows, 10);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema, SchemaRef};

use crate::codec::{decode_batches, encode_batches};
use crate::error::{Error, Result};

const MAGIC: &[u8] = b"outcore-manifest 1\n";
/// The dataset format named in the manifest (and in old sled catalogs).
const FORMAT: &str = "outcore-parquet 1";
/// The folder of an old sled catalog.
const LEGACY_CATALOG: &str = "_catalog";

/// What a dataset folder holds. Build one with [`Manifest::new`] and the `with_*`
/// setters; read one with [`Manifest::read`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Manifest {
    /// Every column of the dataset.
    pub schema: SchemaRef,
    /// Partitions, one Parquet file each (`part-NNNNN.parquet`).
    pub npartitions: usize,
    /// Rows written.
    pub rows: u64,
    /// What made the data (the CLI keeps its command line).
    pub query: String,
    /// The index column, when the data had one.
    pub index: Option<String>,
    /// The index's divisions: `npartitions + 1` values of the index column's type
    /// (partition `i` holds index values in `[d[i], d[i+1])`, the last one closed).
    pub divisions: Option<ArrayRef>,
}

impl Manifest {
    /// The manifest file's name inside a dataset folder.
    pub const FILE: &'static str = "_manifest";

    /// A manifest with no index.
    pub fn new(schema: SchemaRef, npartitions: usize, rows: u64, query: impl Into<String>) -> Self {
        Manifest {
            schema,
            npartitions,
            rows,
            query: query.into(),
            index: None,
            divisions: None,
        }
    }

    /// Sets the index column and (when known) its divisions.
    #[must_use]
    pub fn with_index(mut self, column: impl Into<String>, divisions: Option<ArrayRef>) -> Self {
        self.index = Some(column.into());
        self.divisions = divisions;
        self
    }

    /// Whether `dir` holds a manifest (or an old sled catalog).
    pub fn exists(dir: &Path) -> bool {
        dir.join(Self::FILE).is_file() || dir.join(LEGACY_CATALOG).is_dir()
    }

    /// Writes `dir/_manifest` atomically (temporary file, sync, rename, sync of the
    /// folder), replacing any manifest there. Errors name the file.
    pub fn write_atomic(&self, dir: &Path) -> Result<()> {
        let bytes = self.encode()?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".manifest-")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        tmp.write_all(&bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| Error::io(tmp.path(), e))?;
        let path = dir.join(Self::FILE);
        tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        // The rename is durable once the folder is synced (not possible everywhere:
        // best effort).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads the manifest of the dataset in `dir` (or its old sled catalog). Takes no
    /// lock and writes nothing (old sled catalogs excepted). A missing, truncated or
    /// corrupt manifest is an error naming the file.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(Self::FILE);
        if !path.exists() && dir.join(LEGACY_CATALOG).is_dir() {
            let legacy = dir.join(LEGACY_CATALOG);
            return Self::from_entries(&legacy, &read_legacy(&legacy)?);
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let corrupt = |reason: &str| Error::CorruptFile {
            path: path.clone(),
            reason: reason.to_string(),
        };
        let body = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| corrupt("not an outcore manifest (wrong first line)"))?;
        let (body, crc) = body
            .split_last_chunk::<4>()
            .ok_or_else(|| corrupt("cut short"))?;
        if crc32fast::hash(&bytes[..bytes.len() - 4]) != u32::from_le_bytes(*crc) {
            return Err(corrupt("checksum mismatch"));
        }
        let mut entries = BTreeMap::new();
        let mut rest = body;
        while !rest.is_empty() {
            let (klen, r) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| corrupt("cut short"))?;
            let klen = u32::from_le_bytes(*klen) as usize;
            let key = r.get(..klen).ok_or_else(|| corrupt("cut short"))?;
            let (vlen, r) = r[klen..]
                .split_first_chunk::<8>()
                .ok_or_else(|| corrupt("cut short"))?;
            let vlen = usize::try_from(u64::from_le_bytes(*vlen)).unwrap_or(usize::MAX);
            let value = r.get(..vlen).ok_or_else(|| corrupt("cut short"))?;
            entries.insert(String::from_utf8_lossy(key).into_owned(), value.to_vec());
            rest = &r[vlen..];
        }
        Self::from_entries(&path, &entries)
    }

    fn encode(&self) -> Result<Vec<u8>> {
        let mut entries: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
        entries.insert("format", FORMAT.into());
        let mut schema = Vec::new();
        encode_batches(&self.schema, &[], &mut schema)?;
        entries.insert("schema", schema);
        entries.insert("npartitions", self.npartitions.to_string().into());
        entries.insert("rows", self.rows.to_string().into());
        entries.insert("query", self.query.clone().into());
        if let Some(ix) = &self.index {
            entries.insert("index", ix.clone().into());
        }
        if let Some(div) = &self.divisions {
            let schema = Arc::new(Schema::new(vec![Field::new(
                "divisions",
                div.data_type().clone(),
                true,
            )]));
            let batch = RecordBatch::try_new(schema.clone(), vec![div.clone()])
                .map_err(|e| Error::Invalid(format!("manifest divisions: {e}")))?;
            let mut bytes = Vec::new();
            encode_batches(&schema, &[batch], &mut bytes)?;
            entries.insert("divisions", bytes);
        }
        let mut out = MAGIC.to_vec();
        for (k, v) in entries {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            out.extend_from_slice(&v);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// A manifest from its entries; `path` names the file in errors.
    fn from_entries(path: &Path, entries: &BTreeMap<String, Vec<u8>>) -> Result<Manifest> {
        let bad = |reason: String| Error::CorruptFile {
            path: path.to_path_buf(),
            reason,
        };
        let get = |k: &str| entries.get(k).ok_or_else(|| bad(format!("no {k:?} entry")));
        let text = |k: &str| get(k).map(|v| String::from_utf8_lossy(v).into_owned());
        let format = text("format")?;
        if format != FORMAT {
            return Err(bad(format!(
                "unknown dataset format {format:?} (this outcore reads {FORMAT:?})"
            )));
        }
        let number = |k: &str| -> Result<u64> {
            let t = text(k)?;
            t.parse()
                .map_err(|_| bad(format!("{k} is {t:?}, not a number")))
        };
        let (schema, _) = decode_batches(get("schema")?)?;
        let divisions = match entries.get("divisions") {
            None => None,
            Some(bytes) => {
                let (_, batches) = decode_batches(bytes)?;
                let b = batches
                    .first()
                    .ok_or_else(|| bad("the divisions are empty".into()))?;
                Some(b.column(0).clone())
            }
        };
        Ok(Manifest {
            schema,
            npartitions: usize::try_from(number("npartitions")?).unwrap_or(usize::MAX),
            rows: number("rows")?,
            query: text("query")?,
            index: entries
                .get("index")
                .map(|v| String::from_utf8_lossy(v).into_owned()),
            divisions,
        })
    }

    /// The manifest's path inside `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(Self::FILE)
    }
}

fn sled_err(path: &Path, e: sled::Error) -> Error {
    let source = match e {
        sled::Error::Io(io) => io,
        other => std::io::Error::other(other.to_string()),
    };
    Error::io(path, source)
}

/// Every entry of an old sled catalog at `path`.
fn read_legacy(path: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
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
    use arrow::array::Int64Array;
    use arrow::datatypes::DataType;

    fn sample() -> Manifest {
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Int64, false),
            Field::new("x", DataType::Float64, true),
        ]));
        Manifest::new(schema, 2, 7, "outcore persist a b").with_index(
            "t",
            Some(Arc::new(Int64Array::from(vec![0, 5, 9])) as ArrayRef),
        )
    }

    #[test]
    fn round_trip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample();
        m.write_atomic(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), m);
        let m2 = Manifest::new(m.schema.clone(), 1, 3, "again");
        m2.write_atomic(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), m2);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("_manifest")],
            "no temporary left"
        );
    }

    #[test]
    fn missing_cut_or_flipped_manifests_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("_manifest") && err.contains("No such file"),
            "{err}"
        );
        sample().write_atomic(dir.path()).unwrap();
        let path = Manifest::path(dir.path());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 9]).unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("_manifest: corrupt") && err.contains("checksum"),
            "{err}"
        );
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        std::fs::write(&path, b"hello").unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not an outcore manifest"), "{err}");
    }

    /// Reading never writes: the folder's files and their times are unchanged, and
    /// many readers at once all succeed.
    #[test]
    fn readers_share_a_manifest_and_leave_it_untouched() {
        let dir = tempfile::tempdir().unwrap();
        sample().write_atomic(dir.path()).unwrap();
        let path = Manifest::path(dir.path());
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| assert_eq!(Manifest::read(dir.path()).unwrap(), sample()));
            }
        });
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            before
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn old_sled_catalogs_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample();
        let db = sled::open(dir.path().join(LEGACY_CATALOG)).unwrap();
        let mut schema = Vec::new();
        encode_batches(&m.schema, &[], &mut schema).unwrap();
        for (k, v) in [
            ("format", FORMAT.as_bytes().to_vec()),
            ("schema", schema),
            ("npartitions", b"2".to_vec()),
            ("rows", b"7".to_vec()),
            ("query", b"old".to_vec()),
        ] {
            db.insert(k, v).unwrap();
        }
        db.flush().unwrap();
        drop(db);
        assert!(Manifest::exists(dir.path()));
        let old = Manifest::read(dir.path()).unwrap();
        assert_eq!(
            (old.rows, old.npartitions, old.query.as_str()),
            (7, 2, "old")
        );
        assert_eq!(old.index, None);
    }
}

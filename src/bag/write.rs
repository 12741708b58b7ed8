//! `to_textfiles`: a bag written as JSON lines, one file per partition, into a
//! folder that appears only once every file is written ([`StagedFolder`]).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::Value as J;

use super::{Bag, BagStats};
use crate::error::{Error, Result};
use crate::io::staged::StagedFolder;

/// Writes `records` as JSON lines to `out` (strings as JSON strings, as Dask's
/// `to_textfiles` after `map(json.dumps)`).
pub fn write_json_lines(out: &mut impl Write, path: &Path, records: &[J]) -> Result<()> {
    for r in records {
        serde_json::to_writer(&mut *out, r)
            .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
        out.write_all(b"\n").map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

impl Bag {
    /// Writes the bag as JSON lines into folder `dir`, `part-00000.json` and on, one
    /// file per partition, partition by partition (the bag is never gathered). `dir`
    /// must not exist unless `overwrite`; it appears whole or not at all.
    pub fn to_textfiles(&self, dir: &Path, overwrite: bool) -> Result<(PathBuf, BagStats)> {
        let staged = StagedFolder::new("to_textfiles", dir, overwrite)?;
        let stats = self.for_each_partition(&|i, records| {
            let path = staged.path().join(format!("part-{i:05}.json"));
            let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
            let mut out = BufWriter::with_capacity(1 << 20, file);
            write_json_lines(&mut out, &path, records)?;
            out.into_inner()
                .map_err(|e| Error::io(&path, e.into_error()))?
                .sync_data()
                .map_err(|e| Error::io(&path, e))
        })?;
        Ok((staged.finish()?, stats))
    }
}

//! Writing a folder atomically: files go into a hidden staging folder beside the
//! target, which is renamed into place once every file is written. An existing
//! target is an error unless overwriting is allowed; then it is moved aside first
//! and only removed once the new folder is in place, so a failed write leaves the
//! old dataset intact. Used by the CLI's `--out DIR` and by `to_parquet`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A folder being written; dropped before [`finish`](Self::finish), it is removed.
#[derive(Debug)]
pub struct StagedFolder {
    dir: PathBuf,
    overwrite: bool,
    op: &'static str,
    staging: tempfile::TempDir,
}

impl StagedFolder {
    /// Starts writing `dir`, which must not exist unless `overwrite` (checked now,
    /// before any work); `op` names the operation in errors.
    pub fn new(dir: &Path, overwrite: bool, op: &'static str) -> Result<StagedFolder> {
        if dir.exists() && !overwrite {
            return Err(Error::plan(
                op,
                format!(
                    "{} already exists; choose another folder or pass --overwrite",
                    dir.display()
                ),
            ));
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let name = dir
            .file_name()
            .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{name}.partial-"))
            .tempdir_in(&parent)
            .map_err(|e| Error::io(&parent, e))?;
        Ok(StagedFolder {
            dir: dir.to_path_buf(),
            overwrite,
            op,
            staging,
        })
    }

    /// Where the files go until [`finish`](Self::finish).
    pub fn path(&self) -> &Path {
        self.staging.path()
    }

    /// Moves the finished folder into place (replacing the old one when allowed)
    /// and returns its path.
    pub fn finish(self) -> Result<PathBuf> {
        let StagedFolder {
            dir,
            overwrite,
            op,
            staging,
        } = self;
        let staged = staging.keep();
        if dir.exists() {
            if !overwrite {
                let _ = std::fs::remove_dir_all(&staged);
                return Err(Error::plan(
                    op,
                    format!(
                        "{} appeared while the query ran; not replaced",
                        dir.display()
                    ),
                ));
            }
            // Move the old folder aside first, so a failed rename leaves it.
            let old = staged.with_extension("old");
            std::fs::rename(&dir, &old).map_err(|e| Error::io(&dir, e))?;
            if let Err(e) = std::fs::rename(&staged, &dir) {
                let _ = std::fs::rename(&old, &dir);
                let _ = std::fs::remove_dir_all(&staged);
                return Err(Error::io(&dir, e));
            }
            let _ = std::fs::remove_dir_all(&old);
        } else if let Err(e) = std::fs::rename(&staged, &dir) {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(Error::io(&dir, e));
        }
        Ok(dir)
    }
}

//! Folders that appear whole: files are written into a temporary folder beside the
//! target, which is renamed into place once every file is written. A failed or
//! interrupted write leaves no half-written answer under the target's name.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A folder being written: files go to [`path`](Self::path) until
/// [`finish`](Self::finish) moves it to the target; dropped unfinished, it is removed.
pub struct StagedFolder {
    op: &'static str,
    dir: PathBuf,
    overwrite: bool,
    staging: tempfile::TempDir,
}

impl StagedFolder {
    /// Starts writing `dir`, which must not exist unless `overwrite`; checked now,
    /// before any work. `op` names the operation in errors.
    pub fn new(op: &'static str, dir: &Path, overwrite: bool) -> Result<StagedFolder> {
        if dir.exists() && !overwrite {
            return Err(Error::plan(
                op,
                format!(
                    "{} already exists; choose another --out folder or pass --overwrite",
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
            op,
            dir: dir.to_path_buf(),
            overwrite,
            staging,
        })
    }

    /// Where files are written until `finish`.
    pub fn path(&self) -> &Path {
        self.staging.path()
    }

    /// Moves the finished folder into place (replacing the old one when allowed).
    pub fn finish(self) -> Result<PathBuf> {
        let StagedFolder {
            op,
            dir,
            overwrite,
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
            // Move the old answer aside first, so a failed rename leaves it.
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

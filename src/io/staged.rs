//! Folders that appear whole: files are written into a temporary folder beside the
//! target, which is renamed into place once every file is written. A failed or
//! interrupted write leaves no half-written answer under the target's name, and no
//! debris beside it: the staging folder is removed on every failure (and by the
//! signal handler on SIGTERM), and an old folder being replaced is moved aside
//! under a fresh unique name, then removed.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A folder being written: files go to [`path`](Self::path) until
/// [`finish`](Self::finish) moves it to the target; dropped unfinished, it is removed.
pub struct StagedFolder {
    op: &'static str,
    dir: PathBuf,
    overwrite: bool,
    staging: tempfile::TempDir,
    /// Lists the staging folder for the signal handler's cleanup.
    _tracked: outcore_storage::workdir::Tracked,
}

impl StagedFolder {
    /// Starts writing `dir`, which must not exist unless `overwrite`; checked now,
    /// before any work. `op` names the operation in errors.
    pub fn new(op: &'static str, dir: &Path, overwrite: bool) -> Result<StagedFolder> {
        // A file of that name is never replaced by a folder (`--overwrite`
        // replaces folders): said now, not after the work, when the rename fails.
        if dir.exists() && !dir.is_dir() {
            return Err(Error::plan(
                op,
                format!(
                    "{} is a file, and --out names a folder (one file per partition); \
                     choose another --out or remove the file",
                    dir.display()
                ),
            ));
        }
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
        let (tracked, staging) = outcore_storage::workdir::Tracked::create(|| {
            let staging = tempfile::Builder::new()
                .prefix(&format!(".{name}.partial-"))
                .tempdir_in(&parent)
                .map_err(|e| Error::io(&parent, e))?;
            Ok::<_, Error>((staging.path().to_path_buf(), staging))
        })?;
        Ok(StagedFolder {
            op,
            dir: dir.to_path_buf(),
            overwrite,
            _tracked: tracked,
            staging,
        })
    }

    /// Where files are written until `finish`.
    pub fn path(&self) -> &Path {
        self.staging.path()
    }

    /// Moves the finished folder into place (replacing the old one when allowed).
    /// Whatever fails, the staging folder and any aside folder are gone afterwards,
    /// and the target holds the old answer or the new one.
    pub fn finish(self) -> Result<PathBuf> {
        let StagedFolder {
            op,
            dir,
            overwrite,
            staging,
            _tracked,
        } = self;
        if dir.exists() && !overwrite {
            // `staging` removes itself on drop.
            return Err(Error::plan(
                op,
                format!(
                    "{} appeared while the query ran; not replaced",
                    dir.display()
                ),
            ));
        }
        if !dir.exists() {
            std::fs::rename(staging.path(), &dir).map_err(|e| Error::io(&dir, e))?;
            // Renamed: nothing left for the guard to remove.
            let _ = staging.keep();
            return Ok(dir);
        }
        // Move the old answer aside first (onto a fresh empty folder of a unique
        // name, which a directory rename may replace), so a failed rename leaves it.
        let parent = staging
            .path()
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let name = dir
            .file_name()
            .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
        let aside = tempfile::Builder::new()
            .prefix(&format!(".{name}.old-"))
            .tempdir_in(&parent)
            .map_err(|e| Error::io(&parent, e))?;
        std::fs::rename(&dir, aside.path()).map_err(|e| Error::io(&dir, e))?;
        if let Err(e) = std::fs::rename(staging.path(), &dir) {
            // Put the old answer back; never let `aside`'s drop remove it.
            let back = std::fs::rename(aside.path(), &dir);
            let kept = aside.keep();
            if back.is_err() {
                let reason = format!("{e}; the old folder is kept at {}", kept.display());
                return Err(Error::io(&dir, std::io::Error::other(reason)));
            }
            return Err(Error::io(&dir, e));
        }
        let _ = staging.keep();
        // `aside` now holds the old answer: remove it, and say so if we cannot.
        let aside_path = aside.path().to_path_buf();
        aside.close().map_err(|e| Error::io(aside_path, e))?;
        Ok(dir)
    }
}

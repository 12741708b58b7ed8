//! Glob expansion: a pattern, a folder or a file becomes a sorted list of files.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Expands `pattern` into the files it names, sorted by path. A folder stands for
/// every file in it (hidden files and sub-folders left out). No match is an error
/// naming the pattern.
pub fn expand(pattern: &str) -> Result<Vec<PathBuf>> {
    let path = Path::new(pattern);
    if path.is_dir() {
        let mut files = Vec::new();
        let entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(path, e))?;
            let p = entry.path();
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') || n.starts_with('_'));
            if p.is_file() && !hidden {
                files.push(p);
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(Error::plan(
                "read",
                format!("folder {pattern:?} holds no files"),
            ));
        }
        return Ok(files);
    }
    let paths = ::glob::glob(pattern)
        .map_err(|e| Error::plan("read", format!("invalid glob {pattern:?}: {e}")))?;
    let mut files = Vec::new();
    for p in paths {
        let p = p.map_err(|e| Error::io(e.path().to_path_buf(), e.into()))?;
        if p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::plan("read", format!("no files match {pattern:?}")));
    }
    Ok(files)
}

//! `--visualize FILE`: the task graph as Graphviz DOT (the library's
//! `DataFrame::visualize`), or as SVG through Graphviz's `dot` for a `.svg` name.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use outcore::{DataFrame, Error, Result};

/// Writes `df`'s task graph to `file`: SVG when the name ends in `.svg` (rendered
/// by `dot` from PATH), DOT otherwise.
pub fn write(df: &DataFrame, file: &Path) -> Result<()> {
    let dot = df.visualize();
    let svg = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if !svg {
        return std::fs::write(file, dot).map_err(|e| Error::io(file, e));
    }
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .arg("-o")
        .arg(file)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::plan(
                "--visualize",
                format!(
                    "{}: SVG needs Graphviz's `dot` on PATH ({e}); give a .dot file name for DOT",
                    file.display()
                ),
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(dot.as_bytes())
            .map_err(|e| Error::io(Path::new("dot"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(Path::new("dot"), e))?;
    if !out.status.success() {
        return Err(Error::plan(
            "--visualize",
            format!(
                "dot failed writing {}: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

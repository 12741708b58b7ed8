//! The folders a computation works in (`outcore-spill-*`, `outcore-shuffle-*`) and
//! how they are cleaned up however the process ends.
//!
//! - Normal end, error, first Ctrl-C: the owner drops its [`WorkDir`], which removes
//!   the folder.
//! - SIGTERM, a second Ctrl-C: the signal handler calls [`remove_all`], which removes
//!   every folder this process still has (tracked in a process-wide list), then exits.
//! - SIGKILL, a crash, a power cut: nothing runs. Each folder holds a lock file,
//!   [`LOCK_FILE`], naming its process (id and start time), and the next run calls
//!   [`sweep`] on its spill folder, which removes the folders whose process is gone.
//!
//! A process is "gone" when `/proc/<pid>` does not exist or belongs to a process
//! that started at another time (the id was reused). Where `/proc` is missing,
//! nothing is swept (we cannot tell, and removing a live run's files is worse than
//! leaving a dead run's). Processes in another PID namespace (containers sharing
//! one spill folder) look gone too: give each container its own spill folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::error::{Error, Result};

/// The lock file inside each work folder: `<pid> <start time>\n`.
pub const LOCK_FILE: &str = "outcore.lock";

/// Prefixes of the folders [`sweep`] may remove.
pub const PREFIXES: [&str; 2] = ["outcore-spill-", "outcore-shuffle-"];

/// Folders this process owns and has not removed yet.
static LIVE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn live() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A path listed for [`remove_all`] until dropped (it does not remove the path
/// itself: its owner does). For folders that are not [`WorkDir`]s, such as the
/// staging folder of an `--out` write.
#[derive(Debug)]
pub struct Tracked(PathBuf);

impl Tracked {
    /// Lists `path` until the returned guard is dropped.
    pub fn new(path: impl Into<PathBuf>) -> Tracked {
        let path = path.into();
        live().insert(path.clone());
        Tracked(path)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        live().remove(&self.0);
    }
}

/// A fresh folder `<prefix>XXXXXX` under a parent, with a lock file naming this
/// process; removed on drop (and by [`remove_all`]).
#[derive(Debug)]
pub struct WorkDir {
    // Declared first: unlisted before the folder goes.
    _tracked: Tracked,
    dir: tempfile::TempDir,
}

impl WorkDir {
    /// Creates `parent` if missing and a fresh folder in it whose name starts with
    /// `prefix` (one of [`PREFIXES`]), holding [`LOCK_FILE`]. Errors name the path.
    pub fn new(parent: &Path, prefix: &str) -> Result<WorkDir> {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        let tracked = Tracked::new(dir.path());
        let lock = dir.path().join(LOCK_FILE);
        let me = std::process::id();
        let owner = format!("{me} {}\n", start_time(me).unwrap_or(0));
        std::fs::write(&lock, owner).map_err(|e| Error::io(&lock, e))?;
        Ok(WorkDir {
            _tracked: tracked,
            dir,
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Removes every folder this process still lists (work folders and [`Tracked`]
/// paths). For signal handlers that are about to exit without running drops.
pub fn remove_all() {
    let paths: Vec<PathBuf> = live().iter().cloned().collect();
    for p in paths {
        // Workers may still be writing into it: a second pass catches files
        // created during the first.
        for _ in 0..3 {
            match std::fs::remove_dir_all(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => continue,
                _ => break,
            }
        }
    }
}

/// Removes the work folders directly under `parent` whose lock file names a process
/// that is gone; returns the folders removed. Folders without a lock file (being
/// created right now, or made by an older outcore) are left alone, as is
/// everything when this system has no `/proc`.
pub fn sweep(parent: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    if !Path::new("/proc/self").exists() {
        return removed;
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let path = entry.path();
        let Ok(owner) = std::fs::read_to_string(path.join(LOCK_FILE)) else {
            continue;
        };
        let mut words = owner.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(pid)), Some(Ok(started))) = (words.next(), words.next()) else {
            continue;
        };
        if !alive(pid, started) && std::fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// Whether process `pid`, started at `started` (clock ticks after boot; 0 when
/// unknown), is running.
fn alive(pid: u64, started: u64) -> bool {
    match start_time_of(pid) {
        None => false,
        Some(t) => started == 0 || t == started,
    }
}

fn start_time(pid: u32) -> Option<u64> {
    start_time_of(u64::from(pid))
}

/// Field 22 of `/proc/<pid>/stat`: when the process started.
fn start_time_of(pid: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_dir_names_its_process_and_goes_on_drop() {
        let parent = tempfile::tempdir().unwrap();
        let w = WorkDir::new(parent.path(), "outcore-spill-").unwrap();
        let owner = std::fs::read_to_string(w.path().join(LOCK_FILE)).unwrap();
        assert!(
            owner.starts_with(&format!("{} ", std::process::id())),
            "{owner}"
        );
        let path = w.path().to_path_buf();
        assert!(sweep(parent.path()).is_empty(), "ours is alive");
        assert!(path.exists());
        assert!(live().contains(&path));
        // (`remove_all` is tested from outside, by the CLI's SIGTERM test: here it
        // would remove the folders of tests running beside this one.)
        drop(w);
        assert!(!path.exists() && !live().contains(&path));
    }

    #[test]
    fn sweep_removes_only_folders_of_gone_processes() {
        let parent = tempfile::tempdir().unwrap();
        let mk = |name: &str, owner: Option<String>| {
            let p = parent.path().join(name);
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("data"), b"x").unwrap();
            if let Some(o) = owner {
                std::fs::write(p.join(LOCK_FILE), o).unwrap();
            }
            p
        };
        let me = std::process::id();
        let mine = mk(
            "outcore-spill-live",
            Some(format!("{me} {}\n", start_time(me).unwrap())),
        );
        // A reused id: our pid with another start time.
        let reused = mk("outcore-spill-reused", Some(format!("{me} 1\n")));
        let gone = mk(
            "outcore-shuffle-gone",
            Some(format!("{} 5\n", u32::MAX - 7)),
        );
        let no_lock = mk("outcore-spill-nolock", None);
        let other = mk("not-ours", Some(format!("{} 5\n", u32::MAX - 7)));
        let mut removed = sweep(parent.path());
        removed.sort();
        assert_eq!(removed, vec![gone.clone(), reused.clone()]);
        assert!(mine.exists() && no_lock.exists() && other.exists());
        assert!(!gone.exists() && !reused.exists());
    }
}

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
    /// Runs `make`, which creates a folder and returns its path, and lists the path,
    /// as one step: [`remove_all`] sees the folder whole or the folder is never made
    /// (a thread creating a folder while the process is exiting waits for the exit).
    pub fn create<T, E>(
        make: impl FnOnce() -> std::result::Result<(PathBuf, T), E>,
    ) -> std::result::Result<(Tracked, T), E> {
        let mut live = live();
        let (path, made) = make()?;
        live.insert(path.clone());
        Ok((Tracked(path), made))
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
    tracked: Option<Tracked>,
    path: PathBuf,
}

/// Staging folders are named as work folders with this in front: a folder is made
/// under the staging name, gets its lock file, and is renamed into place, so a work
/// folder never exists without its lock file.
const STAGING: &str = ".";

/// A staging folder with no lock file (its process was killed between making it and
/// writing the lock) is removed by [`sweep`] once it is this old.
const ORPHAN_STAGING_SECS: u64 = 60;

impl WorkDir {
    /// Creates `parent` if missing and a fresh folder in it whose name starts with
    /// `prefix` (one of [`PREFIXES`]), holding [`LOCK_FILE`] from the moment the
    /// folder appears under that name. Errors name the path.
    pub fn new(parent: &Path, prefix: &str) -> Result<WorkDir> {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let (tracked, ()) = Tracked::create(|| {
            let staging = tempfile::Builder::new()
                .prefix(&format!("{STAGING}{prefix}"))
                .tempdir_in(parent)
                .map_err(|e| Error::io(parent, e))?;
            let lock = staging.path().join(LOCK_FILE);
            let me = std::process::id();
            let owner = format!("{me} {}\n", start_time(me).unwrap_or(0));
            std::fs::write(&lock, owner).map_err(|e| Error::io(&lock, e))?;
            let name = staging
                .path()
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(STAGING))
                .ok_or_else(|| Error::io(staging.path(), std::io::ErrorKind::InvalidInput.into()))?
                .to_string();
            let path = parent.join(name);
            std::fs::rename(staging.path(), &path).map_err(|e| Error::io(&path, e))?;
            // The staging name is gone: nothing for the guard to remove.
            let _ = staging.keep();
            Ok((path, ()))
        })?;
        let path = tracked.0.clone();
        Ok(WorkDir {
            tracked: Some(tracked),
            path,
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Listed until the folder is gone: a signal arriving mid-removal (a second
        // Ctrl-C while the first one's cleanup runs) must still see it, since the
        // exit that follows stops this removal wherever it is.
        let _ = std::fs::remove_dir_all(&self.path);
        drop(self.tracked.take());
    }
}

/// Removes every folder this process still lists (work folders and [`Tracked`]
/// paths). For signal handlers that are about to exit without running drops.
pub fn remove_all() {
    // The list stays locked until the process exits: no folder is made after this
    // (see [`Tracked::create`]), and none made before is missed.
    let live = live();
    for p in live.iter() {
        // Workers may still be writing into it: a second pass catches files
        // created during the first.
        // (A worker removing the same folder makes an attempt fail part-way: what
        // counts is that the folder is gone.)
        for _ in 0..5 {
            let _ = std::fs::remove_dir_all(p);
            if std::fs::symlink_metadata(p).is_err() {
                break;
            }
        }
    }
    std::mem::forget(live);
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
        let staging = name.strip_prefix(STAGING);
        let work = staging.unwrap_or(&name);
        if !PREFIXES.iter().any(|p| work.starts_with(p)) {
            continue;
        }
        let path = entry.path();
        let Ok(owner) = std::fs::read_to_string(path.join(LOCK_FILE)) else {
            // A staging folder whose process died before writing its lock file.
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() >= ORPHAN_STAGING_SECS);
            if staging.is_some() && old && std::fs::remove_dir_all(&path).is_ok() {
                removed.push(path);
            }
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

        // Staging folders: one killed before its lock was written (removed once old),
        // one just being made (left alone), one with a dead owner's lock (removed).
        let orphan = mk(".outcore-spill-orphan", None);
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::open(&orphan)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let fresh = mk(".outcore-shuffle-fresh", None);
        let dead = mk(
            ".outcore-shuffle-dead",
            Some(format!("{} 5\n", u32::MAX - 7)),
        );
        let mut removed = sweep(parent.path());
        removed.sort();
        assert_eq!(removed, vec![dead.clone(), orphan.clone()]);
        assert!(fresh.exists() && mine.exists() && no_lock.exists());
    }

    #[test]
    fn a_work_dir_appears_with_its_lock_file() {
        let parent = tempfile::tempdir().unwrap();
        let w = WorkDir::new(parent.path(), "outcore-shuffle-").unwrap();
        let names: Vec<String> = std::fs::read_dir(parent.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "no staging folder is left: {names:?}");
        assert!(names[0].starts_with("outcore-shuffle-"), "{names:?}");
        assert!(w.path().join(LOCK_FILE).exists());
    }
}

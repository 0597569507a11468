//! The lock that keeps two pacelines off one state: an exclusive advisory lock (`flock`) on
//! `STATE.lock`, taken without waiting and held for the whole run.
//!
//! Why a lock file and not SQLite: the kernel drops the lock when the process ends in any way —
//! kill -9, a panic, a power cut — so a crash never leaves a stale lock, and no pid or heartbeat
//! has to be trusted or timed out (pids are reused; clocks jump). SQLite's own locks cannot do
//! this job: holding one for a whole run would also keep `paceline status` from reading.
//! The file's content (pid and start time) only makes the refusal message useful.
//!
//! A run that ends normally removes the file while it still holds the lock, so no stale
//! "pid N, running since …" is left behind; one that is killed leaves it, and the next run takes
//! it over. Whoever takes the lock checks that the path still names the file it locked: a file
//! removed by its holder between our open and our lock is no lock at all, so we open again.
//!
//! It must not know the database it guards: it locks a path.

use super::StoreError;
use fs4::FileExt;
use fs4::TryLockError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A held lock on a state; released when dropped (or when the process dies). Dropping it
/// removes the lock file first, while the lock is still held.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
    note: String,
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Still locked here: `file` closes after this body. Whoever opened the file before
        // its removal finds, once it holds the lock, that the path no longer names it.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `STATE.lock` for a state database.
pub fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

fn open(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            action: "create lock file",
            source,
        })
}

/// Whether `path` still names the open `file` (it was not removed or replaced meanwhile).
#[cfg(unix)]
fn still_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// Elsewhere an open file cannot be removed (the holder's removal fails), so the path always
/// names the file that was opened.
#[cfg(not(unix))]
fn still_at(_file: &File, _path: &Path) -> bool {
    true
}

fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_string(&mut text);
    let text = text.trim();
    if text.is_empty() {
        "pid unknown".to_string()
    } else {
        text.to_string()
    }
}

impl StateLock {
    /// Take the lock of `state`, or fail at once with [`StoreError::Locked`] naming the holder.
    pub fn acquire(state: &Path) -> Result<StateLock, StoreError> {
        let path = lock_path(state);
        let mut file = loop {
            let mut file = open(&path)?;
            match FileExt::try_lock(&file) {
                // Its holder removed the file as it finished: lock the one at the path now.
                Ok(()) if !still_at(&file, &path) => continue,
                Ok(()) => break file,
                Err(TryLockError::WouldBlock) => {
                    return Err(StoreError::Locked {
                        path: state.to_path_buf(),
                        holder: holder(&mut file).replace('\n', "; "),
                    });
                }
                Err(TryLockError::Error(source)) => {
                    return Err(StoreError::Io {
                        path,
                        action: "lock",
                        source,
                    });
                }
            }
        };
        let started = crate::time::local_time_now();
        let note = format!("pid {}, running since {started}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(note.as_bytes()))
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                action: "write lock file",
                source,
            })?;
        Ok(StateLock { file, path, note })
    }

    /// Say what the run is doing now, on the lock file's second line (for `status`: the store
    /// knows which requests the run holds, not which of them are being sent). Best effort.
    pub fn publish(&mut self, activity: &str) {
        let text = format!("{}{}\n", self.note, activity.trim());
        let _ = self
            .file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.file.write_all(text.as_bytes()))
            .and_then(|()| self.file.set_len(text.len() as u64));
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Who holds the lock of `state` right now, if anyone (for `status`).
    pub fn holder(state: &Path) -> Option<String> {
        let path = lock_path(state);
        let mut file = File::open(&path).ok()?;
        match FileExt::try_lock_shared(&file) {
            Ok(()) => {
                let _ = FileExt::unlock(&file);
                None
            }
            Err(TryLockError::WouldBlock) => Some(holder(&mut file)),
            Err(TryLockError::Error(_)) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("out.paceline.db");
        (dir, state)
    }

    #[test]
    fn a_held_lock_refuses_a_second_run_and_names_its_holder() {
        let (_dir, state) = state();
        let lock = StateLock::acquire(&state).expect("first");
        let text = std::fs::read_to_string(lock.path()).expect("lock file");
        assert!(text.starts_with(&format!("pid {}, running since ", std::process::id())));
        match StateLock::acquire(&state) {
            Err(StoreError::Locked { holder, .. }) => assert_eq!(holder, text.trim()),
            other => panic!("{other:?}"),
        }
        assert_eq!(StateLock::holder(&state).as_deref(), Some(text.trim()));
    }

    #[test]
    fn releasing_the_lock_removes_its_file() {
        let (_dir, state) = state();
        let lock = StateLock::acquire(&state).expect("lock");
        let path = lock.path().to_path_buf();
        assert!(path.exists());
        drop(lock);
        assert!(!path.exists());
        assert_eq!(StateLock::holder(&state), None);
        // And the state can be locked again.
        drop(StateLock::acquire(&state).expect("again"));
    }

    #[test]
    fn a_stale_lock_file_left_by_a_killed_run_is_taken_over() {
        let (_dir, state) = state();
        let path = lock_path(&state);
        std::fs::write(&path, "pid 1, running since yesterday\n").expect("stale");
        assert_eq!(StateLock::holder(&state), None);
        let lock = StateLock::acquire(&state).expect("take over");
        let text = std::fs::read_to_string(&path).expect("lock file");
        assert!(
            text.starts_with(&format!("pid {}, ", std::process::id())),
            "{text}"
        );
        drop(lock);
    }

    #[cfg(unix)]
    #[test]
    fn a_lock_file_removed_under_its_opener_is_not_a_lock() {
        let (_dir, state) = state();
        let path = lock_path(&state);
        let opened = open(&path).expect("open");
        assert!(still_at(&opened, &path));
        std::fs::remove_file(&path).expect("remove");
        assert!(!still_at(&opened, &path));
        std::fs::write(&path, "").expect("recreate");
        assert!(!still_at(&opened, &path));
    }
}

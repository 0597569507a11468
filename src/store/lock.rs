//! The lock that keeps two pacelines off one state: an exclusive advisory lock (`flock`) on
//! `STATE.lock`, taken without waiting and held for the whole run.
//!
//! Why a lock file and not SQLite: the kernel drops the lock when the process ends in any way —
//! kill -9, a panic, a power cut — so a crash never leaves a stale lock, and no pid or heartbeat
//! has to be trusted or timed out (pids are reused; clocks jump). SQLite's own locks cannot do
//! this job: holding one for a whole run would also keep `paceline status` from reading.
//! The file's content (pid and start time) only makes the refusal message useful.
//!
//! It must not know the database it guards: it locks a path.

use super::StoreError;
use fs4::FileExt;
use fs4::TryLockError;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A held lock on a state; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
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
        let mut file = open(&path)?;
        match FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: state.to_path_buf(),
                    holder: holder(&mut file),
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
        Ok(StateLock { _file: file, path })
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

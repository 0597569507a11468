//! The job store: every `paceline run` keeps its state in an embedded SQLite database, so a batch
//! survives any crash and its output ends with exactly one line per `custom_id`.
//!
//! # Design
//!
//! **Where.** By default beside the output (`OUTPUT.paceline.db`), or `--state PATH`; a lock file
//! `STATE.lock` sits next to it ([`lock`]).
//!
//! **What.** One job ([`job`]: the input's path, its SHA-256 and size, and the settings that shape
//! the requests), one row per request ([`state`]: `custom_id`, input line, state pending /
//! in_flight / done / failed, attempts so far), one row per attempt ([`attempts`]: when it
//! ended, key fingerprint, status, latency, what it waited for, the retry decision), every
//! result's exact output line ([`results`]: compressed together with the other lines of its
//! commit, in blocks), one row per run of the command (`runs`), and
//! what each run knew of its keys when it ended ([`keys`]: limits in force, removals).
//! The schema is versioned with `PRAGMA user_version` ([`schema`]).
//!
//! **How it is written.** Only one thread writes: the writer ([`writer`]), a blocking thread off
//! the async runtime. It takes the engine's events and the feeder's "handed to the engine" notes
//! over channels and commits them in batched transactions — at most 1,000 events or 200 ms per
//! transaction — then appends the committed results to the output file. The feeder reads pending
//! rows through its own connection (WAL lets readers and the writer work at once).
//!
//! **WAL and `synchronous=NORMAL`.** In WAL mode a commit is an append to the `-wal` file;
//! with `NORMAL` it is not `fsync`ed (only checkpoints are). A committed transaction therefore
//! survives any crash of the process (kill -9, panic, Ctrl-C): it is in the operating system's
//! cache. Only a power cut or kernel crash can lose the last commits, and never corrupts the
//! database. `FULL` would `fsync` every commit — up to 20 a second under load, each one able to
//! stall the writer for tens of milliseconds on a busy disk — to protect against a case that
//! reconciliation already handles: results lost with a power cut are simply requests that are
//! sent again.
//!
//! **Exactly-once output.** The store is the truth and the output file is derived from it. A
//! result is committed first and appended to the output afterwards, always in commit order, so
//! after any crash the output is a prefix of the store's results (possibly ending in a torn line).
//! On every start [`output::reconcile`] compares the file line by line with the stored results in
//! commit order, keeps the longest matching prefix, cuts the file there and appends the rest from
//! the store. A line the store has no result for (possible only after a power cut, since the file
//! is written after the commit, or after a crash during `--retry-failed`) is therefore dropped,
//! and its request, still pending in the store, is sent again: the output never holds a line the
//! store does not vouch for, and never holds one twice.
//!
//! **At-least-once toward the provider.** A request whose attempt was in flight at a crash has
//! no committed result; it is sent again on resume. Requests with a committed result (done or
//! failed) are never sent again (except failures with `--retry-failed`).
//!
//! **Resume.** The same command again: the input's SHA-256 and the request settings must match the
//! job's (else a clear refusal, unless `--restart`), in-flight rows go back to pending, the output
//! is reconciled, and the feeder streams the input a second time, sending only the lines whose
//! rows are pending — the input is never held in memory, and neither is the list of requests.
//!
//! **Lock.** An exclusive `flock` on `STATE.lock` ([`lock`]), held for the whole run. The kernel
//! releases it when the process dies in any way, kill -9 included, so there is no stale lock to
//! clean up and no heartbeat to trust; `paceline status` reads "running" from whether the lock is
//! held. The pid written into the file is only for the message.
//!
//! The store must not know HTTP, providers, the quota's arithmetic or Redis: it records the
//! engine's events, and the lines the batch output format makes of them, as it is handed them.

pub mod attempts;
pub mod enqueued;
pub mod figures;
pub mod job;
pub mod keys;
pub mod lock;
pub mod output;
pub mod report;
pub mod results;
pub mod runs;
pub mod schema;
pub mod shards;
pub mod state;
pub mod writer;

use rusqlite::{Connection, OpenFlags};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use job::{InputIdentity, JobRecord, JobSettings};
pub use lock::StateLock;
pub use output::{OutputAppender, Reconciled};
pub use state::RequestState;

/// A problem with the state database, its lock or the input identity; every variant that
/// concerns a file names it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be opened or created.
    #[error("cannot open state {}: {source}", path.display())]
    Open {
        /// The state database.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// Reading or writing the database failed (a full disk shows as "database or disk is full").
    #[error("cannot {action} state {}: {source}", path.display())]
    Sql {
        /// The state database.
        path: PathBuf,
        /// What was being done ("write", "read", ...).
        action: &'static str,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// A file beside the state (its lock, the input, a leftover) cannot be used.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Another paceline holds the state.
    #[error(
        "state {} is in use by another paceline ({holder}); wait for it to finish or stop it \
         (Ctrl-C), then run again",
        path.display()
    )]
    Locked {
        /// The state database.
        path: PathBuf,
        /// Who holds it, as written in the lock file.
        holder: String,
    },
    /// The input is not the one the job began with.
    #[error(
        "input {} changed since the job in {} began (it was {} bytes, sha256 {}; it is now {} \
         bytes, sha256 {}): pass --restart to start over with the new input, or restore the \
         original file to resume",
        input.display(), state.display(), was.bytes, was.short(), now.bytes, now.short()
    )]
    InputChanged {
        /// The input file.
        input: PathBuf,
        /// The state database.
        state: PathBuf,
        /// The identity stored with the job.
        was: InputIdentity,
        /// The identity of the file now.
        now: InputIdentity,
    },
    /// The options that shape the requests differ from the job's.
    #[error(
        "{what} differs from the job in {} (was {was}, now {now}): pass --restart to start \
         over, or give the same options to resume",
        state.display()
    )]
    SettingsChanged {
        /// The state database.
        state: PathBuf,
        /// Which setting.
        what: String,
        /// Its value when the job began.
        was: String,
        /// Its value now.
        now: String,
    },
    /// The file is not a paceline state database, or one this version cannot read.
    #[error("{} is not a paceline state database{detail}", path.display())]
    NotState {
        /// The file.
        path: PathBuf,
        /// Why, when known.
        detail: String,
    },
    /// No state exists at the path given to `status` / `inspect`.
    #[error(
        "no paceline state at {} (a run keeps it in OUTPUT.paceline.db unless --state was given; \
         a shared job's is in Redis: paceline status --redis URL --job ID)",
        path.display()
    )]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// `--retry-failed` on a state that holds no job.
    #[error("--retry-failed: no job in {} to retry", path.display())]
    NoJob {
        /// The state database.
        path: PathBuf,
    },
}

impl StoreError {
    /// Whether the user can fix this by changing the command or waiting (exit code 2), as opposed
    /// to an I/O failure.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            StoreError::Locked { .. }
                | StoreError::InputChanged { .. }
                | StoreError::SettingsChanged { .. }
                | StoreError::NotState { .. }
                | StoreError::Missing { .. }
                | StoreError::NoJob { .. }
        )
    }
}

/// The default state path for an output file: `OUTPUT.paceline.db`.
pub fn default_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_os_string();
    name.push(".paceline.db");
    PathBuf::from(name)
}

/// The state database for a path given to `status` / `inspect`: the path itself when it is a
/// SQLite file, else `PATH.paceline.db` (the path was an output file).
pub fn locate(path: &Path) -> Result<PathBuf, StoreError> {
    if is_sqlite_file(path) {
        return Ok(path.to_path_buf());
    }
    let beside = default_path(path);
    if beside.exists() {
        return Ok(beside);
    }
    Err(StoreError::Missing {
        path: if path.exists() {
            beside
        } else {
            path.to_path_buf()
        },
    })
}

fn is_sqlite_file(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok()
        && &header == b"SQLite format 3\0"
}

/// Milliseconds since the Unix epoch, as stored.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A connection to a state database, with the path for error messages.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Open (creating if needed) the state at `path` for writing: WAL mode,
    /// `synchronous=NORMAL`, schema brought up to date.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.configure()?;
        schema::migrate(&mut store)?;
        Ok(store)
    }

    /// Open an existing state to read it (`status`, `inspect`, the feeder); never creates one.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.configure()?;
        schema::check(&store)?;
        store
            .conn
            .pragma_update(None, "query_only", true)
            .map_err(|e| store.err("read", e))?;
        Ok(store)
    }

    fn configure(&self) -> Result<(), StoreError> {
        let set = |name: &str, value: &dyn rusqlite::ToSql| {
            self.conn
                .pragma_update(None, name, value)
                .map_err(|e| self.err("configure", e))
        };
        self.conn
            .busy_timeout(Duration::from_secs(10))
            .map_err(|e| self.err("configure", e))?;
        // journal_mode answers with the mode it set; pragma_update ignores that row.
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|e| self.err("configure", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NotState {
                path: self.path.clone(),
                detail: format!(": WAL mode unavailable (journal mode {mode})"),
            });
        }
        set("synchronous", &"NORMAL")?;
        set("foreign_keys", &false)?;
        self.conn.set_prepared_statement_cache_capacity(32);
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The connection, for transactions.
    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// A [`StoreError::Sql`] naming this database.
    pub fn err(&self, action: &'static str, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: self.path.clone(),
            action,
            source,
        }
    }

    /// Remove the database and its `-wal` / `-shm` files (for `--restart`, or a job that never
    /// began); missing files are fine.
    pub fn remove_files(path: &Path) -> Result<(), StoreError> {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_os_string();
            name.push(suffix);
            let file = PathBuf::from(name);
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StoreError::Io {
                        path: file,
                        action: "remove",
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

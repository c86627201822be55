//! The store's error type. sqlx errors never leave this crate.

use cosmos_core::{RunId, RunStatus};

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database `{path}`: {message}")]
    Open { path: String, message: String },
    #[error(
        "the database `{path}` was written by a newer cosmos (schema version {found}); \
         upgrade cosmos to use it"
    )]
    TooNew { path: String, found: i64 },
    #[error(
        "the database `{path}` is damaged ({reason}); cosmos will not touch it. Keep it (with \
         `{path}-wal` and `{path}-shm`, if present) for recovery, restore it from a backup, or \
         move those files aside to start with an empty one"
    )]
    Damaged { path: String, reason: String },
    #[error("cannot migrate the database: {0}")]
    Migrate(String),
    #[error("no {kind} `{id}`")]
    NotFound { kind: &'static str, id: String },
    #[error("a prompt named `{0}` already exists; choose another name")]
    NameTaken(String),
    #[error("{kind} `{id}` is used by {count} {dependents}; pass `--force` to {consequence}")]
    InUse {
        kind: &'static str,
        id: String,
        count: u64,
        dependents: &'static str,
        consequence: &'static str,
    },
    #[error(
        "a target named `{0}` already exists: choose another name, or change it with `cosmos target edit {0}`"
    )]
    TargetExists(String),
    #[error("invalid search query `{query}`: {reason}")]
    BadQuery { query: String, reason: String },
    #[error("run `{id}` is {actual}, not {expected}: another process changed it first")]
    Conflict {
        id: RunId,
        expected: RunStatus,
        actual: RunStatus,
    },
    #[error("run `{id}` was already retried as `{by}`: retry that one instead")]
    AlreadyRetried { id: RunId, by: RunId },
    #[error("run `{id}` is no longer this process's to drive: its lease passed to another")]
    LeaseLost { id: RunId },
    #[error("run `{id}` cannot go from {from} to {to}")]
    IllegalTransition {
        id: RunId,
        from: RunStatus,
        to: RunStatus,
    },
    #[error("the database holds an unreadable {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("database error while trying to {operation}: {message}")]
    Database {
        operation: &'static str,
        message: String,
    },
    /// A failure that can pass: the database busy or locked by another process past the busy
    /// timeout, a full disk, an I/O error, no connection free. Worth trying again later.
    #[error("the database is unavailable while trying to {operation}: {message}")]
    Unavailable {
        operation: &'static str,
        message: String,
    },
}

impl StoreError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// Whether an sqlx error can pass: SQLite's BUSY, LOCKED, FULL, IOERR or CANTOPEN (primary
/// codes 5, 6, 13, 10, 14), or the pool's own waits and I/O.
fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6 | 10 | 13 | 14)),
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

/// Attaches what we were doing to an sqlx error.
pub(crate) trait Context<T> {
    fn during(self, operation: &'static str) -> StoreResult<T>;
}

impl<T> Context<T> for Result<T, sqlx::Error> {
    fn during(self, operation: &'static str) -> StoreResult<T> {
        self.map_err(|e| {
            if transient(&e) {
                StoreError::Unavailable {
                    operation,
                    message: e.to_string(),
                }
            } else {
                StoreError::Database {
                    operation,
                    message: e.to_string(),
                }
            }
        })
    }
}

//! What can go wrong talking to a target, worded so a user knows what to fix.

use thiserror::Error;

pub type RemoteResult<T> = Result<T, RemoteError>;

#[derive(Debug, Error)]
pub enum RemoteError {
    /// The TCP connection could not be made or was lost: worth retrying.
    #[error("cannot reach {target}: {message}")]
    Unreachable { target: String, message: String },
    /// Another driver is doing the same thing on the target right now: worth retrying.
    #[error("{0}")]
    Contended(String),
    #[error(
        "the host key of {target} (target `{name}`) is not trusted yet ({fingerprint}): check it, then pin it"
    )]
    UnknownHostKey {
        target: String,
        name: String,
        fingerprint: String,
    },
    #[error(
        "WARNING: THE HOST KEY OF {target} (target `{name}`) HAS CHANGED (now {fingerprint}; pinned in {file}). Someone may be intercepting the connection, or the host was reinstalled. Refusing to connect; if the change is expected, remove the old key from {file} and pin the new one"
    )]
    HostKeyChanged {
        target: String,
        name: String,
        fingerprint: String,
        file: String,
    },
    #[error("{0}")]
    Auth(String),
    #[error("{what} failed (exit {code}): {message}", code = code.map_or("by signal".to_owned(), |c| c.to_string()))]
    Command {
        what: String,
        code: Option<u32>,
        message: String,
    },
    #[error("sha256 mismatch for {path}: expected {expected}, found {actual}")]
    Corrupt {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl RemoteError {
    /// True for errors a retry may cure (a dropped or refused connection).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RemoteError::Unreachable { .. } | RemoteError::Contended(_)
        )
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        RemoteError::Io {
            what: what.into(),
            source,
        }
    }
}

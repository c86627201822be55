//! Engine errors: the store's, media's and the spec builder's, plus the workflows' own. Each
//! has a [`ErrorKind`] and a stable [`EngineError::code`], so a front end can say it its own
//! way (a CLI hint, an HTTP status) without reading the message. Messages name what is wrong,
//! never a front end's syntax.

use std::path::PathBuf;

use cosmos_core::IdKind;
use serde::Serialize;

pub type EngineResult<T> = Result<T, EngineError>;

/// What sort of failure an error is, for a front end to map (an HTTP layer: 404, 400, 409,
/// 503, 403, 500).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    NotFound,
    InvalidInput,
    Conflict,
    Unavailable,
    Permission,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] cosmos_store::StoreError),
    #[error(transparent)]
    Media(#[from] cosmos_media::MediaError),
    #[error(transparent)]
    Spec(#[from] cosmos_core::spec::SpecError),
    #[error(transparent)]
    Id(#[from] cosmos_core::IdError),
    #[error(transparent)]
    Name(#[from] cosmos_core::naming::NameError),
    #[error("no {} matches `{prefix}`", kinds_text(.kinds))]
    NotFound { kinds: Vec<IdKind>, prefix: String },
    #[error("`{prefix}` is ambiguous: it matches {}{}", .candidates.join(", "), if *.more { ", …" } else { "" })]
    Ambiguous {
        prefix: String,
        candidates: Vec<String>,
        more: bool,
    },
    #[error("`{}` has problems Cosmos would trip over:\n  - {}", .dir.display(), .problems.join("\n  - "))]
    InputProblems { dir: PathBuf, problems: Vec<String> },
    #[error("prompt `{0}` has no input set")]
    NoInputSet(String),
    #[error(transparent)]
    Remote(#[from] cosmos_remote::RemoteError),
    #[error("no target named `{0}`")]
    NoSuchTarget(String),
    #[error("no default target")]
    NoDefaultTarget,
    #[error("no hook named `{name}` in the configuration{}", if .known.is_empty() { " (it has no [[hooks]])".to_owned() } else { format!(": it has {}", .known.join(", ")) })]
    NoSuchHook { name: String, known: Vec<String> },
    #[error("run `{run}` is being driven by another cosmos process ({owner})")]
    Busy { run: String, owner: String },
    /// A run no target has the GPU slots for would wait for ever.
    #[error("the run asks for {want} GPUs but {place}")]
    DoesNotFit { want: u32, place: String },
    /// The request is wrong: what to change is in the message.
    #[error("{0}")]
    Invalid(String),
    /// The request clashes with the state things are in.
    #[error("{0}")]
    Conflict(String),
    /// Something on this machine failed (a local file, a broken invariant).
    #[error("{0}")]
    Internal(String),
    /// A request refused for a reason a front end may want to answer in its own words:
    /// its own kind and stable code.
    #[error("{message}")]
    Refused {
        kind: ErrorKind,
        code: &'static str,
        message: String,
    },
}

impl EngineError {
    /// A refusal with its code: invalid input unless `kind` says otherwise.
    pub(crate) fn refused(kind: ErrorKind, code: &'static str, message: String) -> Self {
        EngineError::Refused {
            kind,
            code,
            message,
        }
    }

    /// A failure that can pass (a busy database, a full disk, a target not answering):
    /// whoever meets it waits and tries again rather than giving up.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Store(e) => e.is_transient(),
            EngineError::Remote(e) => e.is_transient(),
            _ => false,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        use cosmos_remote::RemoteError as R;
        use cosmos_store::StoreError as S;
        match self {
            EngineError::Store(e) => match e {
                S::NotFound { .. } => ErrorKind::NotFound,
                S::NameTaken(_)
                | S::InUse { .. }
                | S::TargetExists(_)
                | S::Conflict { .. }
                | S::AlreadyRetried { .. }
                | S::IllegalTransition { .. }
                | S::LeaseLost { .. } => ErrorKind::Conflict,
                S::BadQuery { .. } => ErrorKind::InvalidInput,
                S::Open { .. } | S::TooNew { .. } | S::Unavailable { .. } | S::Damaged { .. } => {
                    ErrorKind::Unavailable
                }
                S::Migrate(_) | S::Corrupt { .. } | S::Database { .. } => ErrorKind::Internal,
            },
            EngineError::Remote(e) => match e {
                R::Unreachable { .. } | R::Contended(_) => ErrorKind::Unavailable,
                R::UnknownHostKey { .. } | R::HostKeyChanged { .. } | R::Auth(_) => {
                    ErrorKind::Permission
                }
                R::Config(_) => ErrorKind::InvalidInput,
                R::Command { .. } | R::Corrupt { .. } | R::Protocol(_) | R::Io { .. } => {
                    ErrorKind::Internal
                }
            },
            EngineError::NotFound { .. } | EngineError::NoSuchTarget(_) => ErrorKind::NotFound,
            EngineError::NoDefaultTarget | EngineError::NoSuchHook { .. } => ErrorKind::NotFound,
            EngineError::Media(_)
            | EngineError::Spec(_)
            | EngineError::Id(_)
            | EngineError::Name(_)
            | EngineError::Ambiguous { .. }
            | EngineError::InputProblems { .. }
            | EngineError::NoInputSet(_)
            | EngineError::DoesNotFit { .. }
            | EngineError::Invalid(_) => ErrorKind::InvalidInput,
            EngineError::Busy { .. } | EngineError::Conflict(_) => ErrorKind::Conflict,
            EngineError::Internal(_) => ErrorKind::Internal,
            EngineError::Refused { kind, .. } => *kind,
        }
    }

    /// A stable, machine-readable name for the error (`no_such_target`, `host_key_unknown`).
    pub fn code(&self) -> &'static str {
        use cosmos_remote::RemoteError as R;
        use cosmos_store::StoreError as S;
        match self {
            EngineError::Store(e) => match e {
                S::NotFound { .. } => "not_found",
                S::NameTaken(_) => "name_taken",
                S::InUse { .. } => "in_use",
                S::TargetExists(_) => "target_exists",
                S::Conflict { .. } | S::IllegalTransition { .. } => "run_state_conflict",
                S::AlreadyRetried { .. } => "already_retried",
                S::LeaseLost { .. } => "lease_lost",
                S::BadQuery { .. } => "bad_search_query",
                S::Open { .. } => "database_unavailable",
                S::TooNew { .. } => "database_too_new",
                S::Migrate(_) | S::Corrupt { .. } | S::Database { .. } => "database_error",
                S::Unavailable { .. } => "database_busy",
                S::Damaged { .. } => "database_damaged",
            },
            EngineError::Remote(e) => match e {
                R::Unreachable { .. } => "target_unreachable",
                R::Contended(_) => "target_busy",
                R::UnknownHostKey { .. } => "host_key_unknown",
                R::HostKeyChanged { .. } => "host_key_changed",
                R::Auth(_) => "auth_failed",
                R::Config(_) => "target_config",
                R::Command { .. } => "remote_command_failed",
                R::Corrupt { .. } => "checksum_mismatch",
                R::Protocol(_) | R::Io { .. } => "remote_error",
            },
            EngineError::Media(_) => "bad_video",
            EngineError::Spec(_) => "invalid_spec",
            EngineError::Id(_) => "bad_id",
            EngineError::Name(_) => "bad_name",
            EngineError::NotFound { .. } => "not_found",
            EngineError::Ambiguous { .. } => "ambiguous_id",
            EngineError::InputProblems { .. } => "input_problems",
            EngineError::NoInputSet(_) => "no_input_set",
            EngineError::NoSuchTarget(_) => "no_such_target",
            EngineError::NoDefaultTarget => "no_default_target",
            EngineError::NoSuchHook { .. } => "no_such_hook",
            EngineError::Busy { .. } => "run_busy",
            EngineError::DoesNotFit { .. } => "does_not_fit",
            EngineError::Invalid(_) => "invalid_input",
            EngineError::Conflict(_) => "conflict",
            EngineError::Internal(_) => "internal",
            EngineError::Refused { code, .. } => code,
        }
    }
}

fn kinds_text(kinds: &[IdKind]) -> String {
    let nouns: Vec<&str> = kinds.iter().map(|k| k.noun()).collect();
    match nouns.as_slice() {
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
        [] => "record".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_kind_and_a_code_a_front_end_can_map() {
        let cases: Vec<(EngineError, ErrorKind, &str)> = vec![
            (
                EngineError::NoSuchTarget("gpu".into()),
                ErrorKind::NotFound,
                "no_such_target",
            ),
            (
                EngineError::Invalid("x".into()),
                ErrorKind::InvalidInput,
                "invalid_input",
            ),
            (
                cosmos_store::StoreError::LeaseLost {
                    id: cosmos_core::RunId::new(),
                }
                .into(),
                ErrorKind::Conflict,
                "lease_lost",
            ),
            (
                cosmos_remote::RemoteError::Unreachable {
                    target: "h".into(),
                    message: "refused".into(),
                }
                .into(),
                ErrorKind::Unavailable,
                "target_unreachable",
            ),
            (
                EngineError::Internal("disk".into()),
                ErrorKind::Internal,
                "internal",
            ),
        ];
        for (e, kind, code) in cases {
            assert_eq!((e.kind(), e.code()), (kind, code), "{e}");
            assert!(
                !e.to_string().contains("`cosmos "),
                "front-end syntax in {e}"
            );
        }
    }
}

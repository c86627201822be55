//! Engine errors: the store's, media's and the spec builder's, plus the workflows' own.

use std::path::PathBuf;

use cosmos_core::IdKind;

pub type EngineResult<T> = Result<T, EngineError>;

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
    #[error("no target named `{0}` (`cosmos target list` shows them)")]
    NoSuchTarget(String),
    #[error(
        "no default target: add one with `cosmos target add NAME --host HOST --default`, rehearse locally with `cosmos quickstart`, or pass `--target`"
    )]
    NoDefaultTarget,
    #[error("run `{run}` is being driven by another cosmos process ({owner})")]
    Busy { run: String, owner: String },
    #[error("{0}")]
    Invalid(String),
}

fn kinds_text(kinds: &[IdKind]) -> String {
    let nouns: Vec<&str> = kinds.iter().map(|k| k.noun()).collect();
    match nouns.as_slice() {
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
        [] => "record".to_owned(),
    }
}

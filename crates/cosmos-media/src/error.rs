//! Media errors: each names the file or tool involved.

use std::path::PathBuf;

pub type MediaResult<T> = Result<T, MediaError>;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(
        "`{tool}` was not found: install ffmpeg (Debian/Ubuntu: `apt-get install ffmpeg`) or set `media.{tool}` in the config"
    )]
    ToolMissing { tool: &'static str },
    #[error("`{}` is not a folder", .0.display())]
    NotADirectory(PathBuf),
    #[error("cannot read `{}`: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is not a readable video: {reason}", .path.display())]
    NotAVideo { path: PathBuf, reason: String },
    #[error("`{}` and `{}` are both {kind} videos: keep one, or rename the other", .first.display(), .second.display())]
    DuplicateKind {
        kind: cosmos_core::InputKind,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("no control videos in `{}`: {convention}", .dir.display())]
    NothingFound { dir: PathBuf, convention: String },
}

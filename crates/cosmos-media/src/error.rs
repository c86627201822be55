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
    #[error("no control videos in `{}`: {convention}{}", .dir.display(), seen_text(.seen, .subfolders))]
    NothingFound {
        dir: PathBuf,
        convention: String,
        /// The files that were there (some of them).
        seen: Vec<String>,
        /// Subfolders holding videos (perhaps the folder meant).
        subfolders: Vec<String>,
    },
    #[error(
        "`{}` has a name that is not valid UTF-8: cosmos keeps names as text and could never find it again; rename it",
        .0.display()
    )]
    NotUtf8(PathBuf),
}

fn seen_text(seen: &[String], subfolders: &[String]) -> String {
    let mut out = String::new();
    if seen.is_empty() {
        out.push_str("; the folder holds no files");
    } else {
        out.push_str(&format!("; it holds: {}", seen.join(", ")));
    }
    if !subfolders.is_empty() {
        out.push_str(&format!(
            "; subfolders with videos: {} (register one of those instead?)",
            subfolders.join(", ")
        ));
    }
    out
}

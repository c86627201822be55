//! Finding control videos in a folder by the file-name convention (`InputKind::classify`).

use std::path::{Path, PathBuf};

use cosmos_core::InputKind;

use crate::error::{MediaError, MediaResult};

/// A file that looked like a control video but was not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// The control videos of one folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub files: Vec<(InputKind, PathBuf)>,
    pub skipped: Vec<Skipped>,
}

/// Lists `dir` (not recursively) and classifies its files. Two files of one kind, or no
/// control video at all, are errors.
pub fn discover(dir: &Path) -> MediaResult<Discovery> {
    let io = |source| MediaError::Io {
        path: dir.to_owned(),
        source,
    };
    if !dir.is_dir() {
        return Err(if dir.exists() {
            MediaError::NotADirectory(dir.to_owned())
        } else {
            MediaError::Io {
                path: dir.to_owned(),
                source: std::io::ErrorKind::NotFound.into(),
            }
        });
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    let mut files: Vec<(InputKind, PathBuf)> = Vec::new();
    let mut skipped = Vec::new();
    for path in entries {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        match InputKind::classify(name) {
            None => {}
            Some(Err(kind)) => skipped.push(Skipped {
                path: path.clone(),
                reason: format!(
                    "named like a {kind} video but its extension is not one of {}",
                    cosmos_core::modality::VIDEO_EXTENSIONS.join(", ")
                ),
            }),
            Some(Ok(_)) if !path.is_file() => skipped.push(Skipped {
                path: path.clone(),
                reason: "not a regular file".into(),
            }),
            Some(Ok(kind)) => {
                if let Some((_, first)) = files.iter().find(|(k, _)| *k == kind) {
                    return Err(MediaError::DuplicateKind {
                        kind,
                        first: first.clone(),
                        second: path,
                    });
                }
                files.push((kind, path));
            }
        }
    }
    if files.is_empty() {
        return Err(MediaError::NothingFound {
            dir: dir.to_owned(),
            convention: InputKind::convention(),
        });
    }
    files.sort_by_key(|(k, _)| *k);
    Ok(Discovery { files, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), b"x").unwrap();
    }

    #[test]
    fn finds_kinds_and_reports_skips() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "shot_RGB.mp4",
            "shot_depth.MOV",
            "notes.txt",
            "seg.avi",
            "edge.mkv",
        ] {
            touch(d.path(), n);
        }
        let found = discover(d.path()).unwrap();
        let kinds: Vec<InputKind> = found.files.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [InputKind::Color, InputKind::Depth, InputKind::Edge]);
        assert_eq!(found.skipped.len(), 1);
        assert!(found.skipped[0].reason.contains("seg video"));
    }

    #[test]
    fn duplicate_kinds_and_empty_folders_are_errors() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "notes.txt");
        let err = discover(d.path()).unwrap_err().to_string();
        assert!(
            err.contains("no control videos") && err.contains("depth.mp4"),
            "{err}"
        );
        touch(d.path(), "rgb.mp4");
        touch(d.path(), "color.mp4");
        let err = discover(d.path()).unwrap_err().to_string();
        assert!(err.contains("are both color videos"), "{err}");
        let err = discover(&d.path().join("nope")).unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
    }
}

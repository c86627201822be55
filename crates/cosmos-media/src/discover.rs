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
    if dir.to_str().is_none() {
        return Err(MediaError::NotUtf8(dir.to_owned()));
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    let mut files: Vec<(InputKind, PathBuf)> = Vec::new();
    let mut skipped = Vec::new();
    let mut seen = Vec::new();
    let mut subfolders = Vec::new();
    for path in entries {
        let lossy = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.is_dir() {
            if holds_videos(&path) {
                subfolders.push(format!("{lossy}/"));
            }
            continue;
        }
        seen.push(lossy.clone());
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            // A name that is not text can never be stored and found again: a control video
            // named so stops the registration; anything else is left out, said so.
            if InputKind::classify(&lossy).is_some() || is_video_name(&lossy) {
                return Err(MediaError::NotUtf8(path));
            }
            skipped.push(Skipped {
                path: path.clone(),
                reason: "its name is not valid UTF-8".into(),
            });
            continue;
        };
        if name.starts_with('.') {
            // macOS keeps resource forks as `._name` beside the file; other dot files are
            // hidden on purpose. Neither is a video of the set.
            if InputKind::classify(name).is_some() {
                skipped.push(Skipped {
                    path: path.clone(),
                    reason: if name.starts_with("._") {
                        "macOS metadata (`._` file), not a video".into()
                    } else {
                        "a hidden file".into()
                    },
                });
            }
            continue;
        }
        match InputKind::classify(name) {
            None if is_video_name(name) => skipped.push(Skipped {
                path: path.clone(),
                reason: near_miss(name),
            }),
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
        const SHOWN: usize = 12;
        if seen.len() > SHOWN {
            let more = seen.len() - SHOWN;
            seen.truncate(SHOWN);
            seen.push(format!("… {more} more"));
        }
        return Err(MediaError::NothingFound {
            dir: dir.to_owned(),
            convention: InputKind::convention(),
            seen,
            subfolders,
        });
    }
    files.sort_by_key(|(k, _)| *k);
    Ok(Discovery { files, skipped })
}

/// Whether a file name has a video extension.
fn is_video_name(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| cosmos_core::modality::is_video_extension(ext))
}

/// Why a video whose name names no kind was left out, with the name it may have meant.
fn near_miss(name: &str) -> String {
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, "mp4"));
    let word = cosmos_core::modality::last_word(stem);
    let last = word.to_lowercase();
    let meant = InputKind::ALL.into_iter().find_map(|k| {
        k.aliases()
            .iter()
            .find(|a| a.len() >= 3 && last.contains(*a))
            .map(|_| k)
    });
    match meant {
        Some(kind) => {
            // The word as written (lowercasing may change its length in bytes).
            let cut = stem.len() - word.len();
            format!(
                "a video whose name does not end in a control kind; for a {kind} video, name it `{}{kind}.{ext}`",
                &stem[..cut]
            )
        }
        None => {
            "a video whose name does not end in a control kind (color, depth, seg, edge, …)".into()
        }
    }
}

/// Whether a folder directly holds a video file.
fn holds_videos(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_str().is_some_and(is_video_name))
    })
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
    fn mac_metadata_near_misses_and_non_text_names_are_told_apart() {
        use std::os::unix::ffi::OsStrExt;
        let d = tempfile::tempdir().unwrap();
        for n in [
            "shot_color.mp4",
            "._shot_color.mp4",
            "notes_depthmap.mp4",
            ".hidden",
        ] {
            touch(d.path(), n);
        }
        let found = discover(d.path()).unwrap();
        assert_eq!(
            found.files.len(),
            1,
            "the `._` file is not a second colour video"
        );
        let reasons: Vec<(String, String)> = found
            .skipped
            .iter()
            .map(|s| {
                (
                    s.path.file_name().unwrap().to_string_lossy().into_owned(),
                    s.reason.clone(),
                )
            })
            .collect();
        assert!(
            reasons
                .iter()
                .any(|(n, r)| n == "._shot_color.mp4" && r.contains("macOS")),
            "{reasons:?}"
        );
        assert!(
            reasons
                .iter()
                .any(|(n, r)| n == "notes_depthmap.mp4" && r.contains("name it `notes_depth.mp4`")),
            "{reasons:?}"
        );
        // A video whose name is not text refuses the folder, by name.
        let bad = std::ffi::OsStr::from_bytes(b"shot_\xffdepth.mp4");
        std::fs::write(d.path().join(bad), b"x").unwrap();
        let err = discover(d.path()).unwrap_err();
        assert!(matches!(err, MediaError::NotUtf8(_)), "{err}");
    }

    #[test]
    fn duplicate_kinds_and_empty_folders_are_errors() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "notes.txt");
        std::fs::create_dir(d.path().join("renders")).unwrap();
        touch(&d.path().join("renders"), "shot_depth.mp4");
        let err = discover(d.path()).unwrap_err().to_string();
        assert!(
            err.contains("no control videos") && err.contains("depth.mp4"),
            "{err}"
        );
        assert!(err.contains("it holds: notes.txt"), "{err}");
        assert!(err.contains("subfolders with videos: renders/"), "{err}");
        touch(d.path(), "rgb.mp4");
        touch(d.path(), "color.mp4");
        let err = discover(d.path()).unwrap_err().to_string();
        assert!(err.contains("are both color videos"), "{err}");
        let err = discover(&d.path().join("nope")).unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
    }
}

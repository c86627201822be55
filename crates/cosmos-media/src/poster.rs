//! Poster frames: one JPEG still of a video, made by ffmpeg, for galleries and pickers.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{MediaError, MediaResult};

/// The width posters are scaled to (the height keeps the aspect, rounded to even).
pub const POSTER_WIDTH: u32 = 320;

/// Writes a JPEG of the frame at `at_seconds` (or the first frame, for a shorter video) of
/// `video` to `out`, `POSTER_WIDTH` wide. Written beside `out` first and renamed into place,
/// so a reader never sees half a poster.
pub fn poster(ffmpeg: &Path, video: &Path, out: &Path, at_seconds: f64) -> MediaResult<()> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| MediaError::Io { path, source }
    };
    let partial: PathBuf = out.with_extension("jpg.part");
    let mut input = std::ffi::OsString::from("file:");
    input.push(video.as_os_str());
    let run = |seek: f64| {
        Command::new(ffmpeg)
            .args(["-v", "error", "-y", "-ss", &format!("{seek:.3}"), "-i"])
            .arg(&input)
            .args(["-frames:v", "1", "-vf"])
            .arg(format!("scale={POSTER_WIDTH}:-2"))
            .args(["-q:v", "4", "-f", "image2"])
            .arg(&partial)
            .output()
    };
    let made = |o: &std::process::Output| {
        o.status.success() && std::fs::metadata(&partial).is_ok_and(|m| m.len() > 0)
    };
    let mut output = run(at_seconds.max(0.0)).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MediaError::ToolMissing { tool: "ffmpeg" },
        _ => MediaError::Io {
            path: ffmpeg.to_owned(),
            source: e,
        },
    })?;
    // Past the end, ffmpeg writes nothing: take the first frame instead.
    if !made(&output) {
        output = run(0.0).map_err(io(ffmpeg))?;
    }
    if !made(&output) {
        let _ = std::fs::remove_file(&partial);
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(MediaError::NotAVideo {
            path: video.to_owned(),
            reason: stderr
                .lines()
                .last()
                .unwrap_or("ffmpeg made no frame")
                .trim()
                .to_owned(),
        });
    }
    std::fs::rename(&partial, out).map_err(io(out))
}

/// The ffmpeg that ships with `ffprobe`: beside it when it is a path, else on `PATH`.
pub fn ffmpeg_beside(ffprobe: &Path) -> PathBuf {
    match ffprobe.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir.join("ffmpeg"),
        None => PathBuf::from("ffmpeg"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(path: &Path) {
        let ok = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=640x360:rate=24",
            ])
            .args(["-frames:v", "24", "-pix_fmt", "yuv420p"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ffmpeg makes the test video (apt-get install ffmpeg)");
    }

    #[test]
    fn a_poster_is_a_jpeg_320_wide_even_past_the_end() -> MediaResult<()> {
        let dir = tempfile::tempdir().map_err(|e| MediaError::Io {
            path: PathBuf::from("tmp"),
            source: e,
        })?;
        let v = dir.path().join("a b.mp4");
        video(&v);
        let out = dir.path().join("poster.jpg");
        poster(Path::new("ffmpeg"), &v, &out, 0.5)?;
        let bytes = std::fs::read(&out).unwrap_or_default();
        assert_eq!(&bytes[..2], &[0xFF, 0xD8], "a JPEG");
        let info = crate::Ffprobe::new("ffprobe").probe(&out)?;
        assert_eq!((info.width, info.height), (320, 180));
        // One second long: a poster at 5 s is its first frame, not an error.
        std::fs::remove_file(&out).ok();
        poster(Path::new("ffmpeg"), &v, &out, 5.0)?;
        assert!(out.is_file());
        assert!(!dir.path().join("poster.jpg.part").exists());
        // Not a video: an error that names it, and nothing left behind.
        let text = dir.path().join("notes.mp4");
        std::fs::write(&text, "not a video").ok();
        let err = poster(Path::new("ffmpeg"), &text, &dir.path().join("x.jpg"), 0.5);
        assert!(matches!(err, Err(MediaError::NotAVideo { .. })), "{err:?}");
        assert!(!dir.path().join("x.jpg").exists());
        assert!(!dir.path().join("x.jpg.part").exists());
        assert_eq!(
            ffmpeg_beside(Path::new("/opt/ff/bin/ffprobe")),
            PathBuf::from("/opt/ff/bin/ffmpeg")
        );
        assert_eq!(ffmpeg_beside(Path::new("ffprobe")), PathBuf::from("ffmpeg"));
        Ok(())
    }
}

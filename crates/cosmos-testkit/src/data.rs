//! Records tests build their databases from.

use cosmos_core::{InputFile, InputKind, InputSet, InputSetId, VideoInfo};

/// An input set of one colour video (320×180, 48 frames at 24 fps); `tag` names it and makes
/// its hash, so different tags are different content.
pub fn sample_input_set(tag: &str) -> InputSet {
    let files = vec![InputFile {
        kind: InputKind::Color,
        path: format!("/s/{tag}.mp4"),
        size: 10,
        sha256: format!("{tag:0>64}"),
        video: VideoInfo {
            frames: 48,
            fps: 24.0,
            width: 320,
            height: 180,
            duration_seconds: 2.0,
            codec: "h264".into(),
        },
    }];
    InputSet {
        id: InputSetId::new(),
        name: tag.into(),
        dir: "/s".into(),
        fingerprint: cosmos_core::inputs::fingerprint(&files),
        created_at: cosmos_core::now(),
        files,
    }
}

/// Writes a `w`×`h` test-pattern video of `frames` frames at `fps` with ffmpeg. The path goes
/// into the metadata, so every file hashes differently.
pub fn test_video(
    path: &std::path::Path,
    w: u32,
    h: u32,
    frames: u32,
    fps: u32,
) -> crate::KitResult<()> {
    let ffmpeg = crate::require(crate::Tool::Ffmpeg, None)?;
    let status = std::process::Command::new(ffmpeg)
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={w}x{h}:rate={fps}"))
        .args([
            "-frames:v",
            &frames.to_string(),
            "-pix_fmt",
            "yuv420p",
            "-metadata",
        ])
        .arg(format!("title={}", path.display()))
        .arg(path)
        .status()
        .map_err(|e| crate::KitError::new(format!("cannot run ffmpeg: {e}")))?;
    if !status.success() {
        return Err(crate::KitError::new(format!(
            "ffmpeg failed to write {}",
            path.display()
        )));
    }
    Ok(())
}

//! Checks on an input set before it is stored, and its content fingerprint.

use crate::modality::InputKind;
use crate::resolution::bucket_for;
use crate::types::InputFile;

/// What is wrong with a set of control videos: `problems` stop registration (Cosmos would
/// misbehave), `warnings` are worth knowing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputReport {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// The fps Cosmos writes its output at by default.
const COSMOS_FPS: f64 = 24.0;

/// Checks files found for one scene against what Cosmos-Transfer1 expects.
pub fn check_input_files(files: &[InputFile]) -> InputReport {
    let mut report = InputReport::default();
    let name = |f: &InputFile| {
        std::path::Path::new(&f.path)
            .file_name()
            .map_or_else(|| f.path.clone(), |n| n.to_string_lossy().into_owned())
    };
    if let Some(first) = files.first() {
        if files.iter().any(|f| f.video.frames != first.video.frames) {
            let counts: Vec<String> = files
                .iter()
                .map(|f| format!("{} {}", name(f), f.video.frames))
                .collect();
            report.problems.push(format!(
                "frame counts differ ({}): Cosmos cuts every video to the shortest; \
                 render them to the same length",
                counts.join(", ")
            ));
        }
        let bucket = bucket_for(first.video.width, first.video.height);
        if files
            .iter()
            .any(|f| bucket_for(f.video.width, f.video.height) != bucket)
        {
            let sizes: Vec<String> = files
                .iter()
                .map(|f| {
                    let b = bucket_for(f.video.width, f.video.height);
                    format!(
                        "{} {}x{} → {}",
                        name(f),
                        f.video.width,
                        f.video.height,
                        b.aspect
                    )
                })
                .collect();
            report.problems.push(format!(
                "aspect ratios fall into different Cosmos resolution buckets ({}): \
                 the controls would be stretched; render them at one aspect ratio",
                sizes.join(", ")
            ));
        }
    }
    for f in files {
        if (f.video.fps - COSMOS_FPS).abs() > 0.01 {
            report.warnings.push(format!(
                "{} is {:.3} fps: Cosmos writes its output at --fps (24 by default), so a \
                 {}-frame clip will last {:.2} s instead of {:.2} s",
                name(f),
                f.video.fps,
                f.video.frames,
                f.video.frames as f64 / COSMOS_FPS,
                f.video.duration_seconds
            ));
        }
    }
    if !files.iter().any(|f| f.kind == InputKind::Color) {
        report.warnings.push(
            "no colour video (color|rgb|vis): runs will need --sigma-max 80 or more, and \
             every control must come from a file"
                .to_owned(),
        );
    }
    report
}

/// A hash over the files' kinds and contents: two sets with the same videos have the same
/// fingerprint, wherever they live.
pub fn fingerprint(files: &[InputFile]) -> String {
    use std::fmt::Write;
    let mut parts: Vec<(InputKind, &str)> =
        files.iter().map(|f| (f.kind, f.sha256.as_str())).collect();
    parts.sort();
    let mut text = String::new();
    for (kind, sha) in parts {
        let _ = writeln!(text, "{kind}:{sha}");
    }
    crate::sha256::hex_digest(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::VideoInfo;

    fn file(kind: InputKind, frames: u64, w: u32, h: u32, fps: f64) -> InputFile {
        InputFile {
            kind,
            path: format!("/s/{kind}.mp4"),
            size: 1,
            sha256: format!("{kind}{frames}"),
            video: VideoInfo {
                frames,
                fps,
                width: w,
                height: h,
                duration_seconds: frames as f64 / fps,
                codec: "h264".into(),
            },
        }
    }

    #[test]
    fn consistent_sets_have_no_problems() {
        let files = [
            file(InputKind::Color, 48, 1280, 720, 24.0),
            file(InputKind::Depth, 48, 640, 360, 24.0),
        ];
        assert_eq!(check_input_files(&files), InputReport::default());
    }

    #[test]
    fn report_table() {
        use InputKind::*;
        let cases: Vec<(Vec<InputFile>, &str, &str)> = vec![
            (
                vec![
                    file(Color, 48, 1280, 720, 24.0),
                    file(Depth, 40, 1280, 720, 24.0),
                ],
                "frame counts differ (color.mp4 48, depth.mp4 40)",
                "",
            ),
            (
                vec![
                    file(Color, 48, 1280, 720, 24.0),
                    file(Seg, 48, 640, 480, 24.0),
                ],
                "seg.mp4 640x480 → 4:3",
                "",
            ),
            (
                vec![file(Color, 60, 1280, 720, 30.0)],
                "",
                "color.mp4 is 30.000 fps",
            ),
            (
                vec![file(Depth, 48, 1280, 720, 24.0)],
                "",
                "no colour video",
            ),
        ];
        for (files, problem, warning) in cases {
            let r = check_input_files(&files);
            if problem.is_empty() {
                assert!(r.problems.is_empty(), "{:?}", r.problems);
            } else {
                assert!(
                    r.problems.iter().any(|p| p.contains(problem)),
                    "{:?}",
                    r.problems
                );
            }
            if !warning.is_empty() {
                assert!(
                    r.warnings.iter().any(|w| w.contains(warning)),
                    "{:?}",
                    r.warnings
                );
            }
        }
    }

    #[test]
    fn fingerprint_ignores_order_and_location() {
        let a = [
            file(InputKind::Color, 48, 8, 8, 24.0),
            file(InputKind::Depth, 48, 8, 8, 24.0),
        ];
        let mut b = [a[1].clone(), a[0].clone()];
        b[0].path = "/elsewhere/depth.mp4".into();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&a[..1]));
    }
}

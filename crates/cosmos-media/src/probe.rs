//! Probing videos with ffprobe (frames, fps, size, duration, codec).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use cosmos_core::{InputFile, InputKind, VideoInfo};

use crate::error::{MediaError, MediaResult};
use crate::hash::sha256_file;

/// The ffprobe program to run.
#[derive(Debug, Clone)]
pub struct Ffprobe {
    program: PathBuf,
}

impl Default for Ffprobe {
    fn default() -> Self {
        Self {
            program: PathBuf::from("ffprobe"),
        }
    }
}

#[derive(Deserialize)]
struct Output {
    #[serde(default)]
    streams: Vec<Stream>,
    format: Option<Format>,
}

#[derive(Deserialize)]
struct Stream {
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    nb_frames: Option<String>,
    nb_read_packets: Option<String>,
    duration: Option<String>,
}

#[derive(Deserialize)]
struct Format {
    duration: Option<String>,
}

/// `"24000/1001"` → 23.976; `"0/0"` → None.
fn rate(text: Option<&str>) -> Option<f64> {
    let (n, d) = text?.split_once('/')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    let r = n / d;
    (n > 0.0 && d > 0.0 && r.is_finite()).then_some(r)
}

fn count(text: Option<&str>) -> Option<u64> {
    text?.parse().ok().filter(|n| *n > 0)
}

impl Ffprobe {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
        }
    }

    /// The ffprobe program run.
    pub fn program(&self) -> &Path {
        &self.program
    }

    fn run(&self, path: &Path, entries: &str, count_packets: bool) -> MediaResult<Output> {
        let mut cmd = Command::new(&self.program);
        cmd.args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            entries,
            "-of",
            "json",
        ]);
        if count_packets {
            cmd.arg("-count_packets");
        }
        // `file:` stops ffprobe from reading a protocol out of the file name.
        let mut target = std::ffi::OsString::from("file:");
        target.push(path.as_os_str());
        cmd.arg(target);
        let out = cmd.output().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => MediaError::ToolMissing { tool: "ffprobe" },
            _ => MediaError::Io {
                path: self.program.clone(),
                source: e,
            },
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let reason = stderr.lines().last().unwrap_or("ffprobe failed").trim();
            let reason = reason
                .rsplit_once(": ")
                .map_or(reason, |(_, r)| r)
                .to_owned();
            return Err(MediaError::NotAVideo {
                path: path.to_owned(),
                reason,
            });
        }
        serde_json::from_slice(&out.stdout).map_err(|e| MediaError::NotAVideo {
            path: path.to_owned(),
            reason: format!("unexpected ffprobe output: {e}"),
        })
    }

    /// Probes the first video stream of `path`.
    pub fn probe(&self, path: &Path) -> MediaResult<VideoInfo> {
        let not_video = |reason: String| MediaError::NotAVideo {
            path: path.to_owned(),
            reason,
        };
        let out = self.run(
            path,
            "stream=codec_name,width,height,avg_frame_rate,r_frame_rate,nb_frames,duration:format=duration",
            false,
        )?;
        let facts = read_output(out).map_err(not_video)?;
        // Containers such as Matroska carry no frame count: count the packets instead.
        let frames = match facts.frames {
            Some(n) => n,
            None => {
                let counted = self.run(path, "stream=nb_read_packets", true)?;
                counted
                    .streams
                    .first()
                    .and_then(|s| count(s.nb_read_packets.as_deref()))
                    .ok_or_else(|| not_video("it has no frames".into()))?
            }
        };
        Ok(VideoInfo {
            frames,
            fps: facts.fps,
            width: facts.width,
            height: facts.height,
            duration_seconds: facts.duration.unwrap_or(frames as f64 / facts.fps),
            codec: facts.codec,
        })
    }
}

/// What ffprobe's answer says of a video's first stream; the frame count and duration only
/// when the container carries them.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeFacts {
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub frames: Option<u64>,
    pub duration: Option<f64>,
}

/// Reads ffprobe's JSON answer (`-show_entries stream=…:format=duration -of json`): the facts
/// of its first video stream, or why it is not a video we can use.
pub fn read_probe(stdout: &[u8]) -> Result<ProbeFacts, String> {
    let out: Output =
        serde_json::from_slice(stdout).map_err(|e| format!("unexpected ffprobe output: {e}"))?;
    read_output(out)
}

fn read_output(out: Output) -> Result<ProbeFacts, String> {
    let format_duration = out
        .format
        .as_ref()
        .and_then(|f| f.duration.as_deref())
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d >= 0.0);
    let stream = out
        .streams
        .into_iter()
        .next()
        .ok_or("it has no video stream")?;
    let (Some(width), Some(height)) = (stream.width, stream.height) else {
        return Err("its video stream has no size".into());
    };
    let fps = rate(stream.avg_frame_rate.as_deref())
        .or_else(|| rate(stream.r_frame_rate.as_deref()))
        .ok_or("its frame rate is unknown")?;
    let duration = stream
        .duration
        .as_deref()
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d >= 0.0)
        .or(format_duration);
    Ok(ProbeFacts {
        codec: stream.codec_name.unwrap_or_else(|| "unknown".into()),
        width,
        height,
        fps,
        frames: count(stream.nb_frames.as_deref()),
        duration,
    })
}

/// Probes and hashes each file, all at once on separate threads.
pub fn inspect_files(
    ffprobe: &Ffprobe,
    files: &[(InputKind, PathBuf)],
) -> MediaResult<Vec<InputFile>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .map(|(kind, path)| {
                scope.spawn(move || -> MediaResult<InputFile> {
                    let video = ffprobe.probe(path)?;
                    let (sha256, size) = sha256_file(path)?;
                    Ok(InputFile {
                        kind: *kind,
                        path: path.display().to_string(),
                        size,
                        sha256,
                        video,
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(rate(Some("24/1")), Some(24.0));
        assert!((rate(Some("24000/1001")).unwrap() - 23.976).abs() < 1e-3);
        assert_eq!(rate(Some("0/0")), None);
        assert_eq!(rate(None), None);
    }

    #[test]
    fn probe_answers_are_read_or_refused_with_a_reason() {
        let ok = br#"{"streams":[{"codec_name":"h264","width":64,"height":36,"avg_frame_rate":"24/1","nb_frames":"24","duration":"1.0"}],"format":{"duration":"1.0"}}"#;
        let facts = read_probe(ok).unwrap();
        assert_eq!((facts.width, facts.frames, facts.fps), (64, Some(24), 24.0));
        for (bad, why) in [
            (&br#"{"streams":[]}"#[..], "no video stream"),
            (br#"{"streams":[{"width":1}]}"#, "no size"),
            (
                br#"{"streams":[{"width":1,"height":1,"avg_frame_rate":"1/0"}]}"#,
                "frame rate",
            ),
            (b"not json", "unexpected ffprobe output"),
        ] {
            assert!(read_probe(bad).unwrap_err().contains(why), "{why}");
        }
    }

    #[test]
    fn missing_ffprobe_is_named() {
        let probe = Ffprobe::new("/nonexistent/ffprobe");
        let err = probe
            .probe(Path::new("/tmp/x.mp4"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`ffprobe` was not found") && err.contains("apt-get install ffmpeg"),
            "{err}"
        );
    }
}

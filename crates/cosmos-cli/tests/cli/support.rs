//! Fixtures: a temporary COSMOS_HOME, the binary, and videos from ffmpeg.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// One command's outcome.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts a usage/config/input failure (exit 2) whose stderr says `needle`.
    #[track_caller]
    pub fn fails_with(self, needle: &str) -> Self {
        assert_eq!(
            self.code, 2,
            "expected exit 2\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// A temporary COSMOS_HOME and a folder for scenes.
#[derive(Debug)]
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cosmos"));
        for (k, _) in std::env::vars() {
            if k.starts_with("COSMOS_") {
                cmd.env_remove(k);
            }
        }
        // A desktop session's keyring is never a test's: a test that wants one starts its own.
        cmd.env_remove("DBUS_SESSION_BUS_ADDRESS");
        cmd.env("COSMOS_HOME", self.home())
            .env("NO_COLOR", "1")
            .args(args);
        cmd
    }

    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("the cosmos binary runs");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, &[])
    }

    /// `cosmos worker` in the background with `env` besides, its output discarded.
    pub fn spawn_worker(&self, env: &[(&str, &str)]) -> std::process::Child {
        self.command(&["worker"])
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cosmos worker")
    }

    /// `cosmos prompt create TEXT --inputs INPUTS --json`: the new prompt.
    #[track_caller]
    pub fn prompt_on(&self, text: &str, inputs: &str) -> Value {
        self.run(&["prompt", "create", text, "--inputs", inputs, "--json"])
            .ok()
            .json()
    }

    /// A folder holding the given videos: (file name, width, height, frames, fps).
    pub fn scene(&self, name: &str, videos: &[(&str, u32, u32, u32, u32)]) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("scene folder");
        for (file, w, h, frames, fps) in videos {
            video(&dir.join(file), *w, *h, *frames, *fps);
        }
        dir
    }

    /// The usual scene: colour, depth and seg, 64x36 (16:9), 24 frames at 24 fps.
    pub fn standard_scene(&self, name: &str) -> PathBuf {
        self.scene(
            name,
            &[
                ("shot_color.mp4", 64, 36, 24, 24),
                ("shot_depth.mp4", 64, 36, 24, 24),
                ("shot_seg.mp4", 64, 36, 24, 24),
            ],
        )
    }
}

/// Writes a test-pattern video with ffmpeg (every file hashes differently).
#[track_caller]
pub fn video(path: &Path, w: u32, h: u32, frames: u32, fps: u32) {
    if let Err(e) = cosmos_testkit::test_video(path, w, h, frames, fps) {
        panic!("{e}");
    }
}

/// The path as a `&str` for command lines.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Stops a worker as an operator does (SIGTERM) and checks that it exited cleanly.
#[track_caller]
pub fn stop_worker(mut worker: std::process::Child) {
    let pid = rustix::process::Pid::from_child(&worker);
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    assert!(worker.wait().expect("worker").success());
}

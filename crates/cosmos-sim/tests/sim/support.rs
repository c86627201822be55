//! A checkout, videos made with ffmpeg, and the simulator run as a process.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub const SIM: &str = env!("CARGO_BIN_EXE_cosmos-sim");
pub const TRANSFER: &str = "cosmos_transfer1/diffusion/inference/transfer.py";

const KNOBS: [&str; 8] = [
    "COSMOS_SIM_LOAD_SECONDS",
    "COSMOS_SIM_CLIP_SECONDS",
    "COSMOS_SIM_FAIL",
    "COSMOS_SIM_RECORD",
    "COSMOS_SIM_BLOCKLIST",
    "COSMOS_SIM_FRAMES",
    "COSMOS_SIM_GPUS",
    "CUDA_VISIBLE_DEVICES",
];

/// One process's outcome.
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

    /// Asserts exit `code` and that the last stderr line before torchrun's summary is `line`.
    #[track_caller]
    pub fn raises(self, code: i32, line: &str) -> Self {
        assert_eq!(
            self.code, code,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.lines().any(|l| l == line),
            "stderr lacks the line {line:?}:\n{}",
            self.stderr
        );
        self
    }

    /// The messages of stdout's loguru lines, in order.
    pub fn messages(&self) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|l| l.split_once("] ").map(|(_, m)| m.to_owned()))
            .collect()
    }

    pub fn count(&self, message: &str) -> usize {
        self.messages().iter().filter(|m| *m == message).count()
    }
}

/// Fails naming the missing tool and how CI installs it.
#[track_caller]
pub fn require_ffmpeg() {
    let found = Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "ffmpeg is not installed: `.ci/run` installs it with `apt-get install -y ffmpeg`"
    );
}

/// A temporary cosmos-transfer1 checkout (the simulator's working directory) and a folder
/// for inputs.
#[derive(Debug)]
pub struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let status = Command::new(SIM)
            .arg("checkout")
            .arg(dir.path().join("cosmos"))
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "cosmos-sim checkout failed"
        );
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn checkout(&self) -> PathBuf {
        self.dir.path().join("cosmos")
    }

    /// An mp4 of `frames` frames from ffmpeg's test source.
    #[track_caller]
    pub fn video(&self, name: &str, size: &str, frames: u32) -> PathBuf {
        require_ffmpeg();
        let path = self.dir.path().join(name);
        let status = Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc=size={size}:rate=24"))
            .args(["-frames:v", &frames.to_string(), "-pix_fmt", "yuv420p"])
            .arg(&path)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success(), "ffmpeg failed making {name}");
        path
    }

    /// Writes `text` to `name` in the checkout and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.checkout().join(name);
        std::fs::write(&path, text).expect("write a file in the checkout");
        path
    }

    /// `cosmos-sim torchrun ARGS` in the checkout with a clean knob environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(SIM);
        cmd.args(args).current_dir(self.checkout());
        for knob in KNOBS {
            cmd.env_remove(knob);
        }
        cmd.env("COSMOS_SIM_LOAD_SECONDS", "0")
            .env("COSMOS_SIM_CLIP_SECONDS", "0");
        cmd
    }

    /// `torchrun --nproc_per_node=1 … transfer.py --controlnet_specs SPEC --video_save_folder out …`.
    pub fn transfer(&self, spec: &str, extra: &[&str]) -> Command {
        let mut args = vec![
            "torchrun",
            "--nproc_per_node=1",
            "--nnodes=1",
            "--node_rank=0",
            TRANSFER,
            "--checkpoint_dir",
            "checkpoints",
            "--controlnet_specs",
            spec,
            "--video_save_folder",
            "out",
        ];
        args.extend_from_slice(extra);
        self.command(&args)
    }
}

/// Runs a command to completion.
#[track_caller]
pub fn run(cmd: &mut Command) -> Out {
    let out = cmd.output().expect("the simulator starts");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts `wanted` appear in `got` in this order (other lines may come between).
#[track_caller]
pub fn assert_in_order(got: &[String], wanted: &[&str]) {
    let mut at = 0;
    for w in wanted {
        match got[at..].iter().position(|g| g.starts_with(w)) {
            Some(i) => at += i + 1,
            None => panic!("{w:?} missing after position {at} in:\n{}", got.join("\n")),
        }
    }
}

/// Frame count of a video according to the real ffprobe.
pub fn ffprobe_frames(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_packets",
            "-show_entries",
            "stream=nb_read_packets",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

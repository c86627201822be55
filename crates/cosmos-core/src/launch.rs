//! The command lines that start Cosmos-Transfer1 (DESIGN.md Appendix A.1), built as argument
//! vectors. Nothing a user typed is ever part of them besides paths; prompts live in files.

/// The inference script, relative to the cosmos-transfer1 checkout.
pub const TRANSFER_SCRIPT: &str = "cosmos_transfer1/diffusion/inference/transfer.py";
/// Cosmos-Transfer1's standalone prompt upsampler (reference §1.4).
pub const UPSAMPLER_SCRIPT: &str =
    "cosmos_transfer1/auxiliary/upsampler/inference/upsampler_pipeline.py";
/// What the upsampler prints before the prompt it made.
pub const UPSAMPLED_MARK: &str = "Upsampled prompt: ";
/// Where the checkout is mounted inside the container (the image holds no source).
pub const CONTAINER_WORKSPACE: &str = "/workspace";

use std::fmt;

/// Where a run's files live under a target's root (DESIGN.md §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLayout {
    dir: String,
}

impl RunLayout {
    /// The folder of a job: a run's id, or a batch's (one process for several runs).
    pub fn new(root: &str, job: impl std::fmt::Display) -> Self {
        Self {
            dir: format!("{}/runs/{job}", root.trim_end_matches('/')),
        }
    }

    pub fn dir(&self) -> &str {
        &self.dir
    }

    pub fn spec(&self) -> String {
        format!("{}/spec.json", self.dir)
    }

    /// The prompt an enhance job hands the upsampler (read there, never on a command line).
    pub fn prompt_file(&self) -> String {
        format!("{}/prompt.txt", self.dir)
    }

    pub fn outputs(&self) -> String {
        format!("{}/outputs", self.dir)
    }

    pub fn log(&self) -> String {
        format!("{}/run.log", self.dir)
    }

    pub fn env_file(&self) -> String {
        format!("{}/env", self.dir)
    }

    /// A batch's JSONL file (`--batch_input_path`): one line per run.
    pub fn batch_file(&self) -> String {
        format!("{}/batch.jsonl", self.dir)
    }

    /// Where Cosmos writes line `line` of a batch: `outputs/video_<N>/` (reference §3).
    pub fn line_outputs(&self, line: u32) -> String {
        format!("{}/outputs/video_{line}", self.dir)
    }

    /// The name an input file of batch line `line` gets: `inputs/<N>/<kind>.<ext>`.
    pub fn line_input(&self, line: u32, kind: impl fmt::Display, extension: &str) -> String {
        format!(
            "{}/inputs/{line}/{kind}.{}",
            self.dir,
            extension.to_ascii_lowercase()
        )
    }

    /// The name an input file gets in the run's `inputs/` folder (`kind` is an
    /// [`crate::InputKind`], or [`mask_stem`] for a mask).
    pub fn input(&self, kind: impl fmt::Display, extension: &str) -> String {
        format!(
            "{}/inputs/{kind}.{}",
            self.dir,
            extension.to_ascii_lowercase()
        )
    }
}

/// The stem of a control's mask video among a run's inputs (`mask_edge`).
pub fn mask_stem(hint: crate::Hint) -> String {
    format!("mask_{hint}")
}

/// How to launch `transfer.py` for one run.
#[derive(Debug, Clone)]
pub struct TransferLaunch<'a> {
    pub gpus: u32,
    pub spec_path: &'a str,
    pub output_dir: &'a str,
    pub is_av: bool,
    pub checkpoint_dir: &'a str,
    /// A batch's JSONL file: one process for its lines, `--batch_size 1` so that output
    /// folder `video_<N>` is line N's (reference §3).
    pub batch_input: Option<&'a str>,
}

/// The video a single (not batch) run writes: Cosmos's default `--video_save_name` (`output`)
/// with `.mp4`, in the output folder. A run without it did not produce its video.
pub const PRIMARY_OUTPUT: &str = "output.mp4";

/// `torchrun … transfer.py …`, with the process count matching `--num_gpus`.
pub fn torchrun_argv(l: &TransferLaunch<'_>) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "torchrun".into(),
        format!("--nproc_per_node={}", l.gpus),
        "--nnodes=1".into(),
        "--node_rank=0".into(),
        TRANSFER_SCRIPT.into(),
        "--checkpoint_dir".into(),
        l.checkpoint_dir.into(),
        "--controlnet_specs".into(),
        l.spec_path.into(),
        "--video_save_folder".into(),
        l.output_dir.into(),
        "--num_gpus".into(),
        l.gpus.to_string(),
    ];
    if l.is_av {
        argv.push("--is_av_sample".into());
    }
    if let Some(file) = l.batch_input {
        argv.extend([
            "--batch_input_path".into(),
            file.into(),
            "--batch_size".into(),
            "1".into(),
        ]);
    }
    argv
}

/// Reads the prompt file into `--prompt` inside the model's own environment, so the text is
/// data on no command line of ours. `OMP_NUM_THREADS` is set when torchrun leaves it unset:
/// the upsampler deletes it unconditionally (reference S13).
const UPSAMPLER_SH: &str = r#"export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"; p=$(cat -- "$1") || exit 1; shift; exec "$@" --prompt "$p""#;

/// `sh -c … torchrun … upsampler_pipeline.py --input_video VIDEO --prompt <the file's text>`:
/// the standalone prompt upsampler on one GPU (it must run under torchrun, §1.4).
pub fn upsampler_argv(torchrun: &str, prompt_file: &str, video: &str) -> Vec<String> {
    [
        "sh",
        "-c",
        UPSAMPLER_SH,
        "sh",
        prompt_file,
        torchrun,
        "--nproc_per_node=1",
        "--nnodes=1",
        "--node_rank=0",
        UPSAMPLER_SCRIPT,
        "--checkpoint_dir",
        "checkpoints",
        "--input_video",
        video,
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect()
}

/// The prompt in an upsampler's output: the text after [`UPSAMPLED_MARK`] on its line, and
/// the lines after it up to a blank line or a log record (`[…`, `INFO`, `WARNING`, …).
pub fn upsampled_prompt(log: &str) -> Option<String> {
    let start = log.rfind(UPSAMPLED_MARK)? + UPSAMPLED_MARK.len();
    let mut text = String::new();
    for (i, line) in log[start..].lines().enumerate() {
        let record = ["[", "INFO", "WARNING", "ERROR", "DEBUG", "W1", "I1", "E1"]
            .iter()
            .any(|p| line.starts_with(p));
        if i > 0 && (line.trim().is_empty() || record) {
            break;
        }
        if i > 0 {
            text.push('\n');
        }
        text.push_str(line);
    }
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// How to wrap a model command in a detached Docker container.
#[derive(Debug, Clone)]
pub struct ContainerLaunch<'a> {
    /// The run's id, or the batch's: names the container and the folder mounted.
    pub job: &'a str,
    pub image: &'a str,
    /// GPU indices to expose; `None` leaves out `--gpus` (engines without GPUs).
    pub gpu_devices: Option<&'a [u32]>,
    pub shm_size: &'a str,
    /// The cosmos-transfer1 checkout on the host, mounted at `/workspace`.
    pub cosmos_dir: &'a str,
    /// The target's root directory. Only its blob store (read-only) and this run's folder
    /// are mounted, at the same paths so spec paths hold on both sides: the model can
    /// neither change a verified blob nor touch another run.
    pub root: &'a str,
    /// The target's extra mounts, `HOST:CONTAINER[:ro]` (see [`crate::target::parse_mount`]).
    pub mounts: &'a [String],
    /// An owner-only file of environment variables (secrets never go on the command line).
    pub env_file: Option<&'a str>,
    pub command: Vec<String>,
}

/// The content-addressed blob store under a target's root (DESIGN.md §3).
pub fn blobs_dir(root: &str) -> String {
    format!("{}/blobs", root.trim_end_matches('/'))
}

/// The container's name for a run.
pub fn container_name(job: &str) -> String {
    format!("cosmos-{job}")
}

/// `docker run -d …` for one run.
pub fn docker_run_argv(c: &ContainerLaunch<'_>) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "docker".into(),
        "run".into(),
        "--detach".into(),
        "--name".into(),
        container_name(c.job),
        "--label".into(),
        format!("cosmos.run={}", c.job),
    ];
    if let Some(devices) = c.gpu_devices {
        let list: Vec<String> = devices.iter().map(u32::to_string).collect();
        argv.push("--gpus".into());
        // Docker parses the value as CSV: a list of devices must be one quoted field.
        argv.push(format!("\"device={}\"", list.join(",")));
    }
    argv.extend([
        // The host's network: torchrun's rendezvous is on localhost, the model publishes no
        // port, and a container without its own network namespace starts and is reaped
        // about 100 ms sooner (docs/BENCHMARKS.md).
        "--network=host".into(),
        "--ipc=host".into(),
        "--shm-size".into(),
        c.shm_size.into(),
        "--volume".into(),
        format!("{}:{CONTAINER_WORKSPACE}", c.cosmos_dir),
        "--volume".into(),
        format!("{0}:{0}:ro", blobs_dir(c.root)),
        "--volume".into(),
        format!("{0}:{0}", RunLayout::new(c.root, c.job).dir()),
        // The target's Hugging Face cache: preprocessors and guardrail models are fetched
        // once per target, not per run (`HF_HOME` points there).
        "--volume".into(),
        format!(
            "{}:{}",
            crate::setup::hf_cache(c.root),
            crate::setup::CONTAINER_HF_HOME
        ),
    ]);
    for m in c.mounts {
        argv.push("--volume".into());
        argv.push(m.clone());
    }
    argv.extend([
        "--workdir".into(),
        CONTAINER_WORKSPACE.into(),
        "--env".into(),
        format!("PYTHONPATH={CONTAINER_WORKSPACE}"),
    ]);
    if let Some(env_file) = c.env_file {
        argv.push("--env-file".into());
        argv.push(env_file.into());
    }
    argv.push(c.image.into());
    argv.extend(c.command.iter().cloned());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::RunId;
    use crate::quote::shell_join;

    #[test]
    fn layout_follows_the_design() {
        let id: RunId = "rs_01jd3k4w5x6y7z8a9b0c1d2e3f".parse().unwrap();
        let l = RunLayout::new("/srv/cosmos/", &id);
        assert_eq!(
            l.spec(),
            "/srv/cosmos/runs/rs_01jd3k4w5x6y7z8a9b0c1d2e3f/spec.json"
        );
        assert_eq!(
            l.outputs(),
            "/srv/cosmos/runs/rs_01jd3k4w5x6y7z8a9b0c1d2e3f/outputs"
        );
        assert_eq!(
            l.input(crate::InputKind::Depth, "MOV"),
            "/srv/cosmos/runs/rs_01jd3k4w5x6y7z8a9b0c1d2e3f/inputs/depth.mov"
        );
    }

    #[test]
    fn torchrun_matches_gpu_count_and_model() {
        let l = TransferLaunch {
            gpus: 4,
            spec_path: "/r/spec.json",
            output_dir: "/r/outputs",
            is_av: true,
            checkpoint_dir: "checkpoints",
            batch_input: None,
        };
        assert_eq!(
            shell_join(&torchrun_argv(&l)),
            "torchrun --nproc_per_node=4 --nnodes=1 --node_rank=0 \
             cosmos_transfer1/diffusion/inference/transfer.py --checkpoint_dir checkpoints \
             --controlnet_specs /r/spec.json --video_save_folder /r/outputs --num_gpus 4 --is_av_sample"
        );
    }

    #[test]
    fn docker_command_names_labels_and_mounts() {
        let id: RunId = "rs_01jd3k4w5x6y7z8a9b0c1d2e3f".parse().unwrap();
        let c = ContainerLaunch {
            job: id.as_str(),
            image: "cosmos-transfer1:1",
            gpu_devices: Some(&[0, 1]),
            shm_size: "16g",
            cosmos_dir: "/opt/cosmos transfer1",
            root: "/srv/cosmos/",
            mounts: &["/data/hf:/root/.cache/huggingface:ro".into()],
            env_file: Some("/srv/cosmos/runs/x/env"),
            command: vec!["torchrun".into()],
        };
        let line = shell_join(&docker_run_argv(&c));
        assert!(line.starts_with("docker run --detach --name cosmos-rs_01jd3k4w5x6y7z8a9b0c1d2e3f --label cosmos.run=rs_01jd3k4w5x6y7z8a9b0c1d2e3f"), "{line}");
        assert!(line.contains("--gpus '\"device=0,1\"'"), "{line}");
        assert!(
            line.contains("--volume '/opt/cosmos transfer1:/workspace'"),
            "{line}"
        );
        // The blobs read-only, this run's folder, the extra mounts; not the whole root.
        let volumes: Vec<&str> = line
            .split(" --volume ")
            .skip(1)
            .map(|v| v.split(' ').next().unwrap_or(""))
            .collect();
        assert_eq!(
            volumes,
            [
                "'/opt/cosmos",
                "/srv/cosmos/blobs:/srv/cosmos/blobs:ro",
                "/srv/cosmos/runs/rs_01jd3k4w5x6y7z8a9b0c1d2e3f:/srv/cosmos/runs/rs_01jd3k4w5x6y7z8a9b0c1d2e3f",
                "/srv/cosmos/hf-cache:/cosmos-hf",
                "/data/hf:/root/.cache/huggingface:ro",
            ],
            "{line}"
        );
        assert!(
            line.ends_with("--env-file /srv/cosmos/runs/x/env cosmos-transfer1:1 torchrun"),
            "{line}"
        );
        let no_gpu = ContainerLaunch {
            gpu_devices: None,
            ..c
        };
        assert!(!shell_join(&docker_run_argv(&no_gpu)).contains("--gpus"));
    }

    #[test]
    fn the_upsampled_prompt_is_read_from_the_log() {
        let log = "W1207 warming up\nUpsampled prompt: A harbour at dawn.\nGulls wheel overhead.\n[rank0] done\n";
        assert_eq!(
            upsampled_prompt(log).as_deref(),
            Some("A harbour at dawn.\nGulls wheel overhead.")
        );
        assert_eq!(upsampled_prompt("Upsampled prompt:   \n"), None);
        assert_eq!(upsampled_prompt("no prompt here"), None);
    }

    #[test]
    fn the_upsampler_command_carries_no_prompt_text() {
        let argv = upsampler_argv(
            "torchrun",
            "/r/runs/x/prompt.txt",
            "/r/runs/x/inputs/color.mp4",
        );
        assert_eq!(argv[..4], ["sh", "-c", UPSAMPLER_SH, "sh"]);
        assert!(argv.contains(&UPSAMPLER_SCRIPT.to_owned()));
        assert_eq!(
            argv.last().map(String::as_str),
            Some("/r/runs/x/inputs/color.mp4")
        );
    }
}

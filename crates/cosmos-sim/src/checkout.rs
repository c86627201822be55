//! A directory laid out like a cosmos-transfer1 checkout with its checkpoints, holding
//! placeholder files: what the image carries at `/workspace` and what a rehearsal host needs.
//! With `--git`, a git repository instead: the scripts and a Dockerfile that builds the
//! simulator's image, without checkpoints (upstream's download script fetches those).

use std::path::Path;
use std::process::Command;

/// Scripts, relative to the checkout.
pub const SCRIPTS: [&str; 3] = [
    cosmos_core::launch::TRANSFER_SCRIPT,
    "cosmos_transfer1/auxiliary/upsampler/inference/upsampler_pipeline.py",
    cosmos_core::setup::DOWNLOAD_SCRIPT,
];

/// Checkpoint files, relative to `checkpoints/`: what the simulated model loads and what the
/// simulated download script fetches, grouped by Hugging Face repository.
pub const CHECKPOINTS: [&str; 27] = [
    "nvidia/Cosmos-Transfer1-7B/base_model.pt",
    "nvidia/Cosmos-Transfer1-7B/vis_control.pt",
    "nvidia/Cosmos-Transfer1-7B/edge_control.pt",
    "nvidia/Cosmos-Transfer1-7B/edge_control_distilled.pt",
    "nvidia/Cosmos-Transfer1-7B/seg_control.pt",
    "nvidia/Cosmos-Transfer1-7B/depth_control.pt",
    "nvidia/Cosmos-Transfer1-7B/keypoint_control.pt",
    "nvidia/Cosmos-Transfer1-7B/4kupscaler_control.pt",
    "nvidia/Cosmos-Transfer1-7B/config.json",
    "nvidia/Cosmos-Transfer1-7B-Sample-AV/base_model.pt",
    "nvidia/Cosmos-Transfer1-7B-Sample-AV/hdmap_control.pt",
    "nvidia/Cosmos-Transfer1-7B-Sample-AV/lidar_control.pt",
    "nvidia/Cosmos-Tokenize1-CV8x8x8-720p/encoder.jit",
    "nvidia/Cosmos-Tokenize1-CV8x8x8-720p/decoder.jit",
    "nvidia/Cosmos-Tokenize1-CV8x8x8-720p/autoencoder.jit",
    "nvidia/Cosmos-Tokenize1-CV8x8x8-720p/mean_std.pt",
    "nvidia/Cosmos-UpsamplePrompt1-12B-Transfer/consolidated.safetensors",
    "nvidia/Cosmos-Guardrail1/video_content_safety_filter/safety_filter.pt",
    "nvidia/Cosmos-Guardrail1/face_blur_filter/Resnet50_Final.pth",
    "nvidia/Cosmos-Guardrail1/blocklist/exact_match/blocked",
    "nvidia/Cosmos-Transfer1-7B-Sample-AV-Single2MultiView/t2w_base_model.pt",
    "meta-llama/Llama-Guard-3-8B/model-00001-of-00004.safetensors",
    "google-t5/t5-11b/pytorch_model.bin",
    "google-t5/t5-11b/config.json",
    "facebook/sam2-hiera-large/sam2_hiera_large.pt",
    "depth-anything/Depth-Anything-V2-Small-hf/model.safetensors",
    "IDEA-Research/grounding-dino-tiny/model.safetensors",
];

/// Directories whose presence the model needs at start-up, relative to `checkpoints/`.
pub const REQUIRED_DIRS: [&str; 4] = [
    "nvidia/Cosmos-Tokenize1-CV8x8x8-720p",
    "google-t5/t5-11b",
    "nvidia/Cosmos-Guardrail1",
    "meta-llama/Llama-Guard-3-8B",
];

const PLACEHOLDER: &str = "cosmos-sim placeholder: the simulator stands in for this file\n";

/// Writes the layout under `dir` (idempotent).
pub fn create(dir: &Path) -> std::io::Result<()> {
    write_scripts(dir)?;
    for ckpt in CHECKPOINTS {
        write(&dir.join("checkpoints").join(ckpt), PLACEHOLDER)?;
    }
    Ok(())
}

/// `checkout --model transfer2.5 DIR`: a cosmos-transfer2.5 checkout's entry point (its
/// checkpoints come through the Hugging Face cache on first use: there is no folder of them).
pub fn create_transfer25(dir: &Path) -> std::io::Result<()> {
    write(
        &dir.join("examples/inference.py"),
        "# cosmos-sim stands in for Cosmos-Transfer2.5's examples/inference.py; see the cosmos-sim crate\n",
    )
}

fn write_scripts(dir: &Path) -> std::io::Result<()> {
    for script in SCRIPTS {
        write(
            &dir.join(script),
            "# cosmos-sim stands in for this script; see the cosmos-sim crate\n",
        )?;
    }
    Ok(())
}

/// The image the Dockerfile of `--git` builds from: the simulator's own.
pub fn default_base() -> String {
    format!("cosmos-sim:{}", env!("CARGO_PKG_VERSION"))
}

/// `checkout --git DIR [--base IMAGE] [--build-seconds N]`: a git repository with the scripts and a Dockerfile
/// that builds the simulator's image (`FROM` the base, which holds the simulator), committed
/// with fixed names and dates so the same tree is the same commit. Returns the commit.
pub fn create_git(
    dir: &Path,
    base: &str,
    build_seconds: u32,
    transfer25: bool,
) -> Result<String, String> {
    let io = |e: std::io::Error| format!("cannot write {}: {e}", dir.display());
    if transfer25 {
        create_transfer25(dir).map_err(io)?;
    } else {
        write_scripts(dir).map_err(io)?;
    }
    // Upstream's build takes long (dependencies from source): a build that lasts lets tests
    // drop the connection in the middle of it.
    let slow = if build_seconds > 0 {
        format!("RUN sleep {build_seconds}\n")
    } else {
        String::new()
    };
    write(
        &dir.join("Dockerfile"),
        &format!(
            "# cosmos-sim's stand-in for cosmos-transfer1's Dockerfile: the simulator's image, as\n\
             # upstream's installs the model's dependencies onto a base image.\n\
             FROM {base}\n\
             {slow}\
             WORKDIR /workspace\n\
             CMD [\"/bin/sh\"]\n"
        ),
    )
    .map_err(io)?;
    write(&dir.join(".gitignore"), "checkpoints/\n").map_err(io)?;
    let git = |args: &[&str]| -> Result<String, String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "cosmos-sim")
            .env("GIT_AUTHOR_EMAIL", "cosmos-sim@example.invalid")
            .env("GIT_AUTHOR_DATE", "2026-06-07T00:00:00Z")
            .env("GIT_COMMITTER_NAME", "cosmos-sim")
            .env("GIT_COMMITTER_EMAIL", "cosmos-sim@example.invalid")
            .env("GIT_COMMITTER_DATE", "2026-06-07T00:00:00Z")
            .output()
            .map_err(|e| format!("cannot run git (install it): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    git(&["init", "--quiet", "--initial-branch=main"])?;
    git(&["add", "--all"])?;
    if git(&["rev-parse", "--verify", "--quiet", "HEAD"]).is_err()
        || !git(&["status", "--porcelain"])?.is_empty()
    {
        git(&["commit", "--quiet", "--message", "cosmos-sim checkout"])?;
    }
    git(&["rev-parse", "HEAD"])
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)
}

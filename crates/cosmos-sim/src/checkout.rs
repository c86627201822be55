//! A directory laid out like a cosmos-transfer1 checkout with its checkpoints, holding
//! placeholder files: what the image carries at `/workspace` and what a rehearsal host needs.

use std::path::Path;

/// Scripts, relative to the checkout.
pub const SCRIPTS: [&str; 2] = [
    cosmos_core::launch::TRANSFER_SCRIPT,
    "cosmos_transfer1/auxiliary/upsampler/inference/upsampler_pipeline.py",
];

/// Checkpoint files the simulated model loads, relative to `checkpoints/`.
pub const CHECKPOINTS: [&str; 23] = [
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
    "meta-llama/Llama-Guard-3-8B/model-00001-of-00004.safetensors",
    "google-t5/t5-11b/pytorch_model.bin",
    "facebook/sam2-hiera-large/sam2_hiera_large.pt",
    "depth-anything/Depth-Anything-V2-Small-hf/model.safetensors",
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
    for script in SCRIPTS {
        write(
            &dir.join(script),
            "# cosmos-sim stands in for this script; see the cosmos-sim crate\n",
        )?;
    }
    for ckpt in CHECKPOINTS {
        write(&dir.join("checkpoints").join(ckpt), PLACEHOLDER)?;
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)
}

//! The simulated GPUs' load, shared through files: while the model samples clips it writes
//! `gpu<N>` (utilisation %, memory used MiB) into `COSMOS_SIM_GPU_STATE` for each GPU it was
//! given, and removes them when it stops; the simulated `nvidia-smi` reads them. The model
//! runs in a container and `nvidia-smi` on the host, so a folder both see is the channel.

use std::path::{Path, PathBuf};

use crate::knobs::Knobs;

/// What a busy simulated GPU reports.
pub const BUSY_PERCENT: u32 = 93;
pub const BUSY_MEMORY_MIB: u64 = 38_912;

/// The GPU indices this process was given (`CUDA_VISIBLE_DEVICES`, else all).
fn devices(knobs: &Knobs) -> Vec<u32> {
    match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(list) => list
            .split(',')
            .filter_map(|d| d.trim().parse().ok())
            .collect(),
        Err(_) => (0..knobs.gpus).collect(),
    }
}

fn file(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("gpu{index}"))
}

/// The GPUs marked busy for as long as it lives.
#[derive(Debug)]
pub struct Busy {
    files: Vec<PathBuf>,
}

impl Busy {
    pub fn start(knobs: &Knobs) -> Self {
        let Some(dir) = &knobs.gpu_state else {
            return Self { files: Vec::new() };
        };
        let files: Vec<PathBuf> = devices(knobs)
            .into_iter()
            .map(|d| file(dir, d))
            .filter(|f| std::fs::write(f, format!("{BUSY_PERCENT} {BUSY_MEMORY_MIB}\n")).is_ok())
            .collect();
        Self { files }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// GPU `index`'s load now: (utilisation %, memory used MiB); idle without a state file.
pub fn load(knobs: &Knobs, index: u32) -> (u32, u64) {
    let Some(dir) = &knobs.gpu_state else {
        return (0, 0);
    };
    let text = std::fs::read_to_string(file(dir, index)).unwrap_or_default();
    let mut parts = text.split_whitespace();
    let util = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let memory = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (util, memory)
}

//! "Loading" the models: CUDA devices and the process group, the checkpoints each model
//! needs (a missing one fails as `torch.load` would), and the prompt upsampler.

use std::path::Path;

use serde_json::{Map, Value};

use crate::checkout;
use crate::knobs::Knobs;
use crate::log::{self, site, src};
use crate::python::{Failure, Frame, Raised, frame};
use crate::script::Worker;
use crate::upsampler;

const LOAD_MODEL: Frame = frame(
    src::PIPELINE,
    180,
    "_load_model",
    "self.model = load_model_by_config(...)",
);
const LOAD_CTRL: Frame = frame(
    src::MODEL,
    97,
    "load_ctrl_model",
    "state_dict = torch.load(ckpt_path, weights_only=False)",
);

/// CUDA and the process group: GPUs must be visible, and context parallelism needs one
/// process per GPU (`--nproc_per_node` equal to `--num_gpus`).
pub fn check_devices(worker: &Worker, knobs: &Knobs, num_gpus: i64) -> Result<(), Failure> {
    let init = frame(
        src::DISTRIBUTED,
        61,
        "init",
        "torch.cuda.set_device(local_rank)",
    );
    let visible = knobs.visible_gpus();
    if visible == 0 {
        return Err(Raised::new(
            "RuntimeError",
            "Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and installed a driver from http://www.nvidia.com/Download/index.aspx",
            &[init],
        )
        .kind("no_gpu")
        .into());
    }
    if worker.world_size > visible {
        return Err(Raised::new(
            "RuntimeError",
            "CUDA error: invalid device ordinal\nCUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1",
            &[init],
        )
        .kind("no_gpu")
        .into());
    }
    let world = i64::from(worker.world_size);
    if num_gpus != world {
        return Err(Raised::new(
            "RuntimeError",
            format!(
                "world_size ({world}) is not divisible by tensor_model_parallel_size (1) x pipeline_model_parallel_size (1) x context_parallel_size ({num_gpus}) [cosmos-sim: keep torchrun --nproc_per_node equal to --num_gpus]"
            ),
            &[frame("megatron/core/parallel_state.py", 480, "initialize_model_parallel", "raise RuntimeError(")],
        )
        .kind("gpu_mismatch")
        .into());
    }
    if num_gpus > 1 {
        let at = site(src::DISTRIBUTED, 83, "init");
        log::critical(
            at,
            "Initialized distributed training with local rank 0 with timeout 1800",
        );
        log::info(at, &format!("Training with {num_gpus} GPUs."));
    }
    Ok(())
}

fn missing_model(path: &str) -> Failure {
    Raised::file_not_found(path, &[LOAD_MODEL])
        .kind("missing_checkpoint")
        .into()
}

pub fn load_models(run: &super::Run<'_>, controls: &Map<String, Value>) -> Result<(), Failure> {
    let dir = run.ckpt_dir.trim_end_matches('/');
    let base = if run.cfg.flag("is_av_sample") {
        "nvidia/Cosmos-Transfer1-7B-Sample-AV/base_model.pt"
    } else {
        "nvidia/Cosmos-Transfer1-7B/base_model.pt"
    };
    let at = site(src::PIPELINE, 176, "_load_model");
    log::info(at, "Start creating base model");
    for needed in checkout::REQUIRED_DIRS {
        let path = format!("{dir}/{needed}");
        if !Path::new(&path).is_dir() {
            return Err(missing_model(&path));
        }
    }
    let base = format!("{dir}/{base}");
    if !Path::new(&base).is_file() {
        return Err(missing_model(&base));
    }
    std::thread::sleep(run.knobs.load / 2);
    log::info(at, "Done creating base model");
    log::info(at, "Start creating ctrlnet model");
    std::thread::sleep(run.knobs.load / 2);
    log::info(at, "Done creating ctrlnet model");
    for block in controls.values() {
        let given = crate::python::py_str(block.get("ckpt_path").unwrap_or(&Value::Null));
        // One control tries the path as given, then under the checkpoint dir; several use it
        // as given (`_load_network`).
        let found = Path::new(&given).is_file()
            || (controls.len() == 1 && Path::new(&format!("{dir}/{given}")).is_file());
        if !found {
            return Err(Raised::file_not_found(&given, &[LOAD_CTRL])
                .kind("missing_checkpoint")
                .into());
        }
        log::info(
            site(src::MODEL, 95, "load_ctrl_model"),
            &format!("Loading ctrl model from ckpt_path: {given}"),
        );
    }
    if run.num_gpus > 1 {
        log::info(
            site(src::MODEL, 310, "enable_context_parallel"),
            "Enabling CP in base model",
        );
    }
    Ok(())
}

pub fn init_upsampler(
    run: &super::Run<'_>,
    controls: &Map<String, Value>,
) -> Result<Option<&'static str>, Failure> {
    upsampler::require_rank(run.worker)?;
    let hint = ["vis", "edge", "seg", "depth"]
        .into_iter()
        .find(|h| controls.contains_key(*h));
    let Some(hint) = hint else { return Ok(None) };
    let at = site(src::PIPELINE, 140, "_init_prompt_upsampler");
    log::info(at, "Initializing prompt upsampler...");
    let ckpt = format!(
        "{}/{}",
        run.ckpt_dir.trim_end_matches('/'),
        upsampler::CHECKPOINT
    );
    if !Path::new(&ckpt).is_dir() {
        return Err(missing_model(&ckpt));
    }
    log::info(
        at,
        &format!("Prompt upsampler initialized with hint key: {hint}"),
    );
    Ok(Some(hint))
}

//! The auto-regressive clip loop (`_run_model`): per clip the latent-encoding, sampling and
//! decoding milestones, tqdm's bar, the model-time knob and the injected failures; with
//! `--benchmark`, the whole generation four times (the first a warm-up) with its timings.

use std::time::{Duration, Instant};

use crate::knobs::{Fail, Knobs};
use crate::log::{self, ClipBar, site, src};
use crate::python::{Failure, Frame, Raised, frame};
use crate::record::Record;

const SAMPLE: Frame = frame(
    src::PIPELINE,
    615,
    "_run_model",
    "latents = generate_world_from_control(...)",
);
const OOM: &str = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB of which 1.21 GiB is free. Process 4177 has 77.88 GiB memory in use. Of the allocated memory 75.12 GiB is allocated by PyTorch, and 1.98 GiB is reserved by PyTorch but unallocated. If reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)";
const CRASH: &str = "CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1";

fn injected(kind: &'static str, exception: &str, message: &str) -> Failure {
    Raised::new(exception, message, &[SAMPLE]).kind(kind).into()
}

fn crash() -> Failure {
    log::stderr("\n");
    injected("crash", "RuntimeError", CRASH)
}

/// Generates `clips` clips once, or four times under `--benchmark`.
pub fn sample(
    knobs: &Knobs,
    clips: u64,
    ranks: u32,
    num_gpus: i64,
    benchmark: bool,
    record: &mut Record,
) -> Result<(), Failure> {
    if !benchmark {
        return generate(knobs, clips, ranks, num_gpus, record);
    }
    let mut times = Vec::new();
    for iter in 0..4 {
        let began = Instant::now();
        generate(knobs, clips, ranks, num_gpus, record)?;
        if iter > 0 {
            let t = began.elapsed();
            log::info(
                site(src::TRANSFER, 360, "demo"),
                &format!(
                    "[iter {iter} / 3] Generation time: {:.1} seconds.",
                    t.as_secs_f64()
                ),
            );
            times.push(t);
        }
    }
    let mean = times.iter().sum::<Duration>() / 3;
    log::critical(
        site(src::TRANSFER, 366, "demo"),
        &format!(
            "The benchmarked generation time for Cosmos-Transfer1 is {:.1} seconds.",
            mean.as_secs_f64()
        ),
    );
    Ok(())
}

fn generate(
    knobs: &Knobs,
    clips: u64,
    ranks: u32,
    num_gpus: i64,
    record: &mut Record,
) -> Result<(), Failure> {
    let at = site(src::PIPELINE, 528, "_run_model");
    let mut bar = ClipBar::start(clips, ranks);
    for clip in 0..clips {
        if knobs.fail == Some(Fail::CrashAfterClip(clip)) {
            return Err(crash());
        }
        log::info(at, "Starting latent encoding");
        log::info(at, "Completed latent encoding");
        log::info(at, "Starting diffusion sampling");
        if clip == 0 {
            // Context parallelism splits 16 latent frames across the GPUs.
            if num_gpus > 1 && 16 % num_gpus != 0 {
                let split = frame(
                    "cosmos_transfer1/diffusion/module/parallel.py",
                    41,
                    "split_inputs_cp",
                    "assert x.shape[seq_dim] % cp_size == 0",
                );
                return Err(Raised::new("AssertionError", "", &[split])
                    .kind("gpu_mismatch")
                    .into());
            }
            match knobs.fail {
                Some(Fail::Oom) => return Err(injected("oom", "torch.OutOfMemoryError", OOM)),
                Some(Fail::Hang) => {
                    record.write(None, "hang");
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }
                _ => {}
            }
        }
        std::thread::sleep(knobs.clip);
        log::info(at, "Completed diffusion sampling");
        log::info(at, "Starting VAE decode");
        log::info(at, "Completed VAE decode");
        bar.advance();
    }
    if knobs.fail == Some(Fail::CrashAfterClip(clips)) {
        return Err(crash());
    }
    bar.close();
    Ok(())
}

//! cosmos-sim: one static binary that answers as `torchrun` (running the simulated
//! `transfer.py` or `upsampler_pipeline.py`), `python` and `nvidia-smi`, chosen by the name it
//! is called by or by its first argument. DESIGN.md §6 and Appendix A give the contract.

mod argparse;
mod checkout;
mod download;
mod gpu_state;
mod guardrail;
mod h264;
mod inference25;
mod knobs;
mod log;
mod mp4;
mod python;
mod record;
mod script;
mod smi;
mod torchrun;
mod transfer;
mod upsampler;

use std::process::ExitCode;

const USAGE: &str = "usage: cosmos-sim <torchrun|python|nvidia-smi|huggingface-cli> ARGS...
       cosmos-sim checkout DIR      lay out a cosmos-transfer1 checkout with placeholder checkpoints
       cosmos-sim checkout --model transfer2.5 DIR
                                    lay out a cosmos-transfer2.5 checkout (examples/inference.py)
       cosmos-sim checkout --git DIR [--base IMAGE] [--build-seconds N]
                                    a git repository of the scripts and a Dockerfile building
                                    the simulator's image, taking N s more (prints the commit)
       cosmos-sim --version

Linked or copied as `torchrun`, `python`, `python3`, `nvidia-smi` or `huggingface-cli`, it
answers as that program; `python scripts/download_checkpoints.py` as upstream's download script
(COSMOS_SIM_CHECKPOINT_BYTES, COSMOS_SIM_DOWNLOAD_SECONDS; a token starting `hf_noaccess` lacks
access to gated repositories).
Knobs: COSMOS_SIM_LOAD_SECONDS, COSMOS_SIM_CLIP_SECONDS, COSMOS_SIM_FAIL=oom|crash_after_clip:N|hang,
COSMOS_SIM_RECORD=PATH, COSMOS_SIM_BLOCKLIST=w1,w2, COSMOS_SIM_FRAMES=N, COSMOS_SIM_GPUS=N,
COSMOS_SIM_GPU_NAME=NAME.
";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let called = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
        .unwrap_or_default();
    ExitCode::from(dispatch(&called, &argv))
}

fn dispatch(called: &str, argv: &[String]) -> u8 {
    let args = argv.get(1..).unwrap_or_default();
    match called {
        "torchrun" => torchrun::main(args, argv.to_vec()),
        "nvidia-smi" => nvidia_smi(args),
        "python" | "python3" => python_main(args, argv.to_vec()),
        "huggingface-cli" => download::cli(args),
        _ => match args.split_first() {
            Some((cmd, rest))
                if ["torchrun", "nvidia-smi", "python", "huggingface-cli"]
                    .contains(&cmd.as_str()) =>
            {
                dispatch(cmd, &[std::slice::from_ref(cmd), rest].concat())
            }
            Some((cmd, rest)) if cmd == "checkout" => match rest {
                [flag, dir, more @ ..] if flag == "--git" => {
                    let mut base = checkout::default_base();
                    let mut build_seconds = 0u32;
                    let mut transfer25 = false;
                    for pair in more.chunks(2) {
                        match pair {
                            [k, v] if k == "--base" => base = v.clone(),
                            [k, v] if k == "--model" && v == "transfer2.5" => transfer25 = true,
                            [k, v] if k == "--build-seconds" && v.parse::<u32>().is_ok() => {
                                build_seconds = v.parse().unwrap_or(0);
                            }
                            _ => {
                                log::stderr(
                                    "usage: cosmos-sim checkout --git DIR [--base IMAGE] [--build-seconds N] [--model transfer2.5]\n",
                                );
                                return 2;
                            }
                        }
                    }
                    match checkout::create_git(
                        std::path::Path::new(dir),
                        &base,
                        build_seconds,
                        transfer25,
                    ) {
                        Ok(commit) => {
                            log::print(&commit);
                            0
                        }
                        Err(e) => {
                            log::stderr(&format!("cosmos-sim: {e}\n"));
                            1
                        }
                    }
                }
                [flag, model, dir] if flag == "--model" && model == "transfer2.5" => {
                    match checkout::create_transfer25(std::path::Path::new(dir)) {
                        Ok(()) => 0,
                        Err(e) => {
                            log::stderr(&format!(
                                "cosmos-sim: cannot lay out a checkout in {dir}: {e}\n"
                            ));
                            1
                        }
                    }
                }
                [dir] => match checkout::create(std::path::Path::new(dir)) {
                    Ok(()) => 0,
                    Err(e) => {
                        log::stderr(&format!(
                            "cosmos-sim: cannot lay out a checkout in {dir}: {e}\n"
                        ));
                        1
                    }
                },
                _ => {
                    log::stderr("usage: cosmos-sim checkout DIR\n");
                    2
                }
            },
            Some((cmd, _)) if cmd == "--version" || cmd == "-V" => {
                log::print(&format!("cosmos-sim {}", env!("CARGO_PKG_VERSION")));
                0
            }
            Some((cmd, _)) if cmd == "--help" || cmd == "-h" => {
                log::print(USAGE.trim_end());
                0
            }
            _ => {
                log::stderr(USAGE);
                2
            }
        },
    }
}

fn nvidia_smi(args: &[String]) -> u8 {
    let knobs = match knobs::Knobs::from_env() {
        Ok(k) => k,
        Err(e) => {
            log::stderr(&format!("cosmos-sim: {e}\n"));
            return 2;
        }
    };
    let (out, err, code) = smi::run(args, &knobs);
    log::print(out.trim_end_matches('\n'));
    log::stderr(&err);
    code
}

/// `python [-u] SCRIPT ARGS`: the script without torchrun's environment (no `RANK` unless the
/// caller set it).
fn python_main(args: &[String], argv: Vec<String>) -> u8 {
    let args: Vec<String> = args.iter().skip_while(|a| *a == "-u").cloned().collect();
    let Some((script, rest)) = args.split_first() else {
        log::stderr("cosmos-sim: python without a script is not simulated\n");
        return 2;
    };
    let worker = script::Worker {
        world_size: 1,
        has_rank: std::env::var_os("RANK").is_some(),
    };
    script::run(script, rest, &worker, argv)
}

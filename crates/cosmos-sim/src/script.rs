//! Running one Python script of the checkout the way the interpreter would: it must exist
//! relative to the working directory, and it ends in success, argparse's exit 2 or a traceback.

use std::path::Path;

use crate::knobs::Knobs;
use crate::log;
use crate::python::Failure;
use crate::record::Record;
use crate::{inference25, transfer, upsampler};

/// The process environment a script sees.
#[derive(Debug, Clone, Copy)]
pub struct Worker {
    /// torchrun's `--nproc_per_node` (1 under plain `python`).
    pub world_size: u32,
    /// Whether torchrun's `RANK` variable is set.
    pub has_rank: bool,
}

/// Runs `script` with `args`; returns the exit code. `argv` is the whole command line, for
/// the record.
pub fn run(script: &str, args: &[String], worker: &Worker, argv: Vec<String>) -> u8 {
    let knobs = match Knobs::from_env() {
        Ok(k) => k,
        Err(e) => {
            log::stderr(&format!("cosmos-sim: {e}\n"));
            return 2;
        }
    };
    let mut record = Record::new(knobs.record.clone(), argv, script, worker.world_size);
    let shown = std::env::current_dir()
        .map(|d| d.join(script).display().to_string())
        .unwrap_or_else(|_| script.to_owned());
    let name = Path::new(script)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let (result, entry) = if !Path::new(script).is_file() {
        (
            Err(Failure::CantOpen(format!(
                "python: can't open file '{shown}': [Errno 2] No such file or directory\n"
            ))),
            "",
        )
    } else {
        match name {
            "transfer.py" => (
                transfer::main(args, worker, &knobs, &mut record),
                "demo(args, control_inputs)",
            ),
            "upsampler_pipeline.py" => (upsampler::main(args, worker, &knobs), "main(args)"),
            // Cosmos-Transfer2.5's entry point.
            "inference.py" => (
                inference25::main(args, worker, &knobs, &mut record),
                "main(args)",
            ),
            "download_checkpoints.py" => (crate::download::main(args), "main()"),
            _ => (
                Err(Failure::Sim(format!(
                    "`{script}` is not a script cosmos-sim simulates (transfer.py, upsampler_pipeline.py, inference.py, download_checkpoints.py)"
                ))),
                "",
            ),
        }
    };
    let (code, outcome) = match &result {
        Ok(()) => (0, "ok"),
        Err(failure) => {
            report(failure, &shown, entry);
            (failure.exit_code(), failure.kind())
        }
    };
    record.write(Some(code), outcome);
    code
}

fn report(failure: &Failure, script: &str, entry: &str) {
    match failure {
        Failure::Args(crate::argparse::Stop::Help(text)) => log::print(text.trim_end()),
        Failure::Args(crate::argparse::Stop::Error(text)) | Failure::CantOpen(text) => {
            log::stderr(text);
        }
        Failure::Raised(raised) => log::stderr(&raised.traceback(script, entry)),
        Failure::Sim(message) => log::stderr(&format!("cosmos-sim: {message}\n")),
        Failure::Exit(_, text, _) => log::stderr(text),
    }
}

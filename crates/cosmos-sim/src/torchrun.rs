//! `torchrun`: its own options, then the script and the script's arguments. One node only;
//! the ranks of that node are simulated in this process (only rank 0 logs, as in Cosmos).

use serde_json::Value;

use crate::argparse::{Kind, Opt, Parser, Stop};
use crate::knobs::Knobs;
use crate::log;
use crate::script::{self, Worker};

fn parser() -> Parser {
    let mut p = Parser::new(
        "torchrun",
        vec![
            Opt::new("--nnodes", Kind::Str, "1:1".into()),
            Opt::new("--nproc_per_node", Kind::Str, "1".into()).alias("--nproc-per-node"),
            Opt::new("--node_rank", Kind::Int, Value::from(0)).alias("--node-rank"),
            Opt::new("--master_addr", Kind::Str, "127.0.0.1".into()).alias("--master-addr"),
            Opt::new("--master_port", Kind::Int, Value::from(29500)).alias("--master-port"),
            Opt::new("--max_restarts", Kind::Int, Value::from(0)).alias("--max-restarts"),
            Opt::new("--rdzv_backend", Kind::Str, "static".into()).alias("--rdzv-backend"),
            Opt::new("--rdzv_endpoint", Kind::Str, "".into()).alias("--rdzv-endpoint"),
            Opt::new("--rdzv_id", Kind::Str, "none".into()).alias("--rdzv-id"),
            Opt::flag("--standalone"),
        ],
    );
    p.positional_usage = Some("training_script ...");
    p
}

fn fail(text: &str, code: u8) -> u8 {
    log::stderr(text);
    code
}

/// Runs `torchrun ARGS`; returns the exit code: torchrun's own argparse errors exit 2, and a
/// failed worker (whatever its own code, argparse's 2 included) makes torchrun re-raise
/// `ChildFailedError` and exit 1.
pub fn main(args: &[String], argv: Vec<String>) -> u8 {
    let p = parser();
    let parsed = match p.parse(args, true) {
        Ok(parsed) => parsed,
        Err(Stop::Help(text)) => {
            log::print(text.trim_end());
            return 0;
        }
        Err(Stop::Error(text)) => return fail(&text, 2),
    };
    let Some((script, script_args)) = parsed.rest.split_first() else {
        return fail(
            &format!(
                "{}\ntorchrun: error: the following arguments are required: training_script, training_script_args\n",
                p.usage()
            ),
            2,
        );
    };
    let nnodes = parsed.values["nnodes"].as_str().unwrap_or("1");
    if nnodes != "1" && nnodes != "1:1" {
        return fail(
            &format!("cosmos-sim: torchrun --nnodes={nnodes}: only one node is simulated\n"),
            2,
        );
    }
    let nproc_raw = parsed.values["nproc_per_node"].as_str().unwrap_or("1");
    let nproc = match nproc_raw {
        "gpu" | "auto" => Knobs::from_env()
            .map(|k| k.visible_gpus())
            .unwrap_or(1)
            .max(1),
        "cpu" => 1,
        n => match n.parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => {
                return fail(
                    &format!("ValueError: Unsupported nproc_per_node value: {n}\n"),
                    1,
                );
            }
        },
    };
    let worker = Worker {
        world_size: nproc,
        has_rank: true,
    };
    let code = script::run(script, script_args, &worker, argv);
    if code != 0 {
        log::stderr(&child_failed(script, code));
        return 1;
    }
    0
}

/// torchrun's summary when a worker fails.
fn child_failed(script: &str, code: u8) -> String {
    let now = chrono::Local::now();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let pid = std::process::id();
    let bar = "=".repeat(60);
    let dash = "-".repeat(60);
    format!(
        "E{} {pid} torch/distributed/elastic/multiprocessing/api.py:874] failed (exitcode: {code}) local_rank: 0 (pid: {pid}) of binary: /usr/bin/python\n\
Traceback (most recent call last):\n  File \"/usr/local/bin/torchrun\", line 8, in <module>\n    sys.exit(main())\n\
torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n{bar}\n{script} FAILED\n{dash}\nFailures:\n  <NO_OTHER_FAILURES>\n{dash}\n\
Root Cause (first observed failure):\n[0]:\n  time      : {}\n  host      : {}\n  rank      : 0 (local_rank: 0)\n  exitcode  : {code} (pid: {pid})\n  error_file: <N/A>\n  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html\n{bar}\n",
        now.format("%m%d %H:%M:%S%.6f"),
        now.format("%Y-%m-%d_%H:%M:%S"),
        host.trim(),
    )
}

//! The command tree. Each leaf command owns an `Args` struct with a `run` method.

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};

use crate::commands::{
    completions, config, dev, export, hooks, init, inputs, list, logs, prompt, queue, quickstart,
    rate, run, search, secret, serve, show, status, target, upscale,
};

const EXAMPLES: &str = "\
Examples:
  cosmos init
  cosmos inputs add renders/shot010
  cosmos prompt create \"a robot arm in a bright kitchen\" --inputs renders/shot010
  cosmos run \"a foggy harbour at dawn\" renders/shot010 --weights edge=0.5,depth=0.5 --dry-run
  cosmos list --status queued
  cosmos search 'harbour AND fog*'
  cosmos show rs_01jd";

/// Orchestrates NVIDIA Cosmos-Transfer1: control videos and prompts in, tracked videos out.
#[derive(Debug, Parser)]
#[command(name = "cosmos", version, after_help = EXAMPLES, propagate_version = true)]
pub struct Cli {
    /// Configuration file [default: cosmos.toml in the platform config dir, or in $COSMOS_HOME;
    /// also $COSMOS_CONFIG]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// More diagnostics on stderr (-v info, -vv debug, -vvv trace); $COSMOS_LOG takes a filter
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented config file and create the database
    Init(init::Args),
    /// Show or locate the configuration
    #[command(subcommand)]
    Config(config::Command),
    /// Register and inspect input sets (folders of control videos)
    #[command(subcommand)]
    Inputs(inputs::Command),
    /// Create, list, show, edit and remove prompts
    #[command(subcommand)]
    Prompt(prompt::Command),
    /// Run Cosmos-Transfer1 on a prompt (or new text) and its control videos
    Run(run::Args),
    /// Rehearse the whole pipeline locally: demo scene, prompt, a run on cosmos-sim (no GPU)
    Quickstart(quickstart::Args),
    /// Add, inspect, trust and check GPU targets
    #[command(subcommand)]
    Target(target::Command),
    /// Run queued runs on free GPU slots across the targets, until Ctrl-C or SIGTERM
    Worker(queue::WorkerArgs),
    /// Serve the HTTP API, live events and metrics (and run a worker) until Ctrl-C or SIGTERM
    Serve(serve::Args),
    /// Pause or resume placing queued runs (all, or one target)
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Upscale a run's output (or a video) to 4K with Cosmos-Transfer1's upscaler
    Upscale(upscale::Args),
    /// Run a failed or cancelled run again, as a new run linked to it
    Retry(queue::RetryArgs),
    /// Print a run's model log; -f follows it (and reattaches to the run)
    Logs(logs::LogsArgs),
    /// Cancel a run: kill its model (or drop it from the queue)
    Kill(logs::KillArgs),
    /// Rate runs 1–5 (0 clears) and mark favourites
    Rate(rate::Args),
    /// Copy chosen outputs and their control videos into a folder, with a manifest
    Export(export::Args),
    /// Show the queue (with estimates), running runs, targets and workers; --watch refreshes
    Status(status::StatusArgs),
    /// List recent runs
    List(list::Args),
    /// Show a run, prompt or input set by id (any unique prefix)
    Show(show::Args),
    /// Full-text search over prompts
    Search(search::Args),
    /// Store secrets (the Hugging Face token) outside the database, owner-only
    #[command(subcommand)]
    Secret(secret::Command),
    /// Hooks: list them and their deliveries, send one a test event
    #[command(subcommand)]
    Hooks(hooks::Command),
    /// Print a shell completion script
    Completions(completions::Args),
    /// Developer tools
    #[command(subcommand, hide = true)]
    Dev(dev::Command),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }
}

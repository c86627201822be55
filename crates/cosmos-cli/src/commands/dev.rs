//! Hidden developer commands.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use cosmos_engine::SeedRequest;

use crate::context::Ctx;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Fill the database with realistic synthetic prompts and runs (for benchmarks)
    Seed(SeedArgs),
    /// Run a prompt N times in one process (a warm connection) and print each run's wall time
    Overhead(OverheadArgs),
}

impl Command {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        match self {
            Command::Seed(a) => a.run(ctx).await,
            Command::Overhead(a) => a.run(ctx).await,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// Prompts to create
    #[arg(long, default_value_t = 1000)]
    prompts: usize,
    /// Runs to create, spread over the prompts
    #[arg(long, default_value_t = 2000)]
    runs: usize,
    /// Input sets to create
    #[arg(long, default_value_t = 500)]
    input_sets: usize,
    /// Seed of the generator: the same seed gives the same data
    #[arg(long, default_value_t = 42)]
    rng_seed: u64,
}

impl SeedArgs {
    async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        if self.runs > 0 && self.prompts == 0 {
            anyhow::bail!("runs need prompts: pass --prompts 1 or more");
        }
        let services = ctx.services().await?;
        let report = services
            .seed(&SeedRequest {
                prompts: self.prompts,
                runs: self.runs,
                input_sets: self.input_sets,
                rng_seed: self.rng_seed,
            })
            .await?;
        output::json(&mut std::io::stdout().lock(), &report)?;
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Debug, clap::Args)]
pub struct OverheadArgs {
    /// The prompt to run (id or name)
    prompt: String,
    /// How many runs, one after another
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Target (default: the default target)
    #[arg(long, short = 't')]
    target: Option<String>,
}

impl OverheadArgs {
    /// Each run goes the way `cosmos run` takes it — plan, store, claim, drive to the end —
    /// on one connection; one JSON line per run: its id, final status and wall milliseconds.
    async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let target = services.targets().find(self.target.as_deref()).await?;
        let mut out = std::io::stdout().lock();
        for _ in 0..self.runs {
            let began = std::time::Instant::now();
            let submitted = services
                .runs()
                .submit(cosmos_engine::SubmitRequest {
                    entries: vec![cosmos_engine::RunEntry {
                        subject: self.prompt.clone(),
                        target: Some(target.name.clone()),
                        ..Default::default()
                    }],
                    source: None,
                    defaults: ctx.settings.config.defaults.clone(),
                    launch: ctx.launch_defaults(),
                    dry_run: false,
                    no_wait: false,
                    max_runs: None,
                })
                .await?;
            let ids: Vec<_> = submitted.runs.iter().map(|r| r.id.clone()).collect();
            // As `cosmos run` does it: a claim places the run, then this process drives it.
            let (_keep, never) = tokio::sync::watch::channel(false);
            let cosmos_engine::Followed::Finished(runs) =
                services.runs().see_through(&ids, never).await?
            else {
                anyhow::bail!("the run was left running");
            };
            let wall_ms = began.elapsed().as_secs_f64() * 1000.0;
            for run in runs {
                let line =
                    serde_json::json!({ "run": run.id, "status": run.status, "wall_ms": wall_ms });
                writeln!(out, "{line}")?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

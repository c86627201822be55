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
        let prompt = services.resolve_prompt(&self.prompt).await?;
        let target = services.find_target(self.target.as_deref()).await?;
        let launch = cosmos_engine::LaunchDefaults::for_target(&target);
        let quiet: cosmos_engine::Observer = std::sync::Arc::new(|_| {});
        let mut out = std::io::stdout().lock();
        for _ in 0..self.runs {
            let began = std::time::Instant::now();
            let request = cosmos_engine::RunRequest {
                subject: cosmos_engine::RunSubject::Prompt(prompt.to_string()),
                negative: None,
                params: ctx.settings.config.defaults.clone(),
                name: None,
            };
            let plan = services.plan_run(&request, &launch).await?;
            let run = services
                .submit_run(plan, "overhead benchmark", Some(&target.name))
                .await?;
            // As `cosmos run` does it: a claim places the run, then this process drives it.
            services
                .claim_own(&run.id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no free GPU slot on {}", target.name))?;
            let cosmos_engine::DriveOutcome::Done(run) =
                services.drive_run(&run.id, None, quiet.clone()).await?;
            let wall_ms = began.elapsed().as_secs_f64() * 1000.0;
            let line =
                serde_json::json!({ "run": run.id, "status": run.status, "wall_ms": wall_ms });
            writeln!(out, "{line}")?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

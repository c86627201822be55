//! Hidden developer commands.

use std::process::ExitCode;

use anyhow::Result;

use cosmos_engine::SeedRequest;

use crate::context::Ctx;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Fill the database with realistic synthetic prompts and runs (for benchmarks)
    Seed(SeedArgs),
}

impl Command {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        match self {
            Command::Seed(a) => a.run(ctx).await,
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

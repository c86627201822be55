//! `cosmos logs ID [-f]` and `cosmos kill ID…`: reading a run's model log, following it to
//! the end, and cancelling runs.

use std::io::{Read, Seek, SeekFrom, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use cosmos_engine::execute_paths::local_log;
use cosmos_engine::{CancelScope, Services};

use crate::context::Ctx;
use crate::live::{self, Ended};

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// A run id (any unique prefix)
    run: String,
    /// Follow the log until the run ends, reattaching to (or collecting) the run if no other
    /// cosmos process is driving it
    #[arg(long, short)]
    follow: bool,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).multiple(false)
    .args(["runs", "prompt", "sweep", "queued"])))]
pub struct KillArgs {
    /// Run ids (any unique prefix)
    runs: Vec<String>,
    /// Every unfinished run of this prompt (id or name)
    #[arg(long)]
    prompt: Option<String>,
    /// Every unfinished run of the sweep this run belongs to
    #[arg(long, value_name = "RUN")]
    sweep: Option<String>,
    /// Every queued run
    #[arg(long)]
    queued: bool,
}

fn print_from(path: &std::path::Path, offset: u64) -> u64 {
    let Ok(mut f) = std::fs::File::open(path) else {
        return offset;
    };
    if f.seek(SeekFrom::Start(offset)).is_err() {
        return offset;
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return offset;
    }
    let _ = std::io::stdout().lock().write_all(&buf);
    offset + buf.len() as u64
}

impl LogsArgs {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let id = services.runs().resolve(&self.run).await?;
        let path = local_log(&ctx.settings.paths.data_dir, &id);
        let mut at = print_from(&path, 0);
        if !self.follow {
            return Ok(ExitCode::SUCCESS);
        }
        // The engine sees the run through (here, or by following its worker) while the log
        // its driver writes is printed as it grows.
        let ids = [id.clone()];
        let work = live::see_through(&services, &ids, true);
        tokio::pin!(work);
        let ended = loop {
            tokio::select! {
                r = &mut work => break r?,
                _ = tokio::time::sleep(Duration::from_millis(100)) => at = print_from(&path, at),
            }
        };
        print_from(&path, at);
        Ok(match ended {
            Ended::Finished(runs) => runs.first().map_or(ExitCode::SUCCESS, live::report),
            Ended::Detached => ExitCode::SUCCESS,
        })
    }
}

impl KillArgs {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let scope = self.scope(&services).await?;
        let cancelled = services.runs().cancel(scope).await?;
        for t in &cancelled.unreachable {
            ctx.say(
                "warning",
                &format!("target {t} did not answer: the cancel is recorded, and the model is stopped when its driver reaches it"),
            );
        }
        for run in cancelled.runs {
            if run.status.is_terminal() {
                println!("{} {}", run.id, run.status);
            } else {
                println!("{} cancel requested", run.id);
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    async fn scope(&self, services: &Services) -> Result<CancelScope> {
        Ok(if let Some(p) = &self.prompt {
            let id = match services.prompts().named(p.trim()).await? {
                Some(prompt) => prompt.id,
                None => services.prompts().resolve(p).await?,
            };
            CancelScope::Prompt(id)
        } else if let Some(s) = &self.sweep {
            CancelScope::Sweep(services.runs().resolve(s).await?)
        } else if self.queued {
            CancelScope::Queued
        } else {
            let mut ids = Vec::with_capacity(self.runs.len());
            for r in &self.runs {
                ids.push(services.runs().resolve(r).await?);
            }
            CancelScope::Runs(ids)
        })
    }
}

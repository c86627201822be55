//! `cosmos logs ID [-f]`, `cosmos kill ID` and `cosmos status`: reading a run's model log,
//! reattaching to it, cancelling it, and reconciling runs a crash left behind.

use std::io::{Read, Seek, SeekFrom, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use cosmos_engine::execute_paths::local_log;
use cosmos_engine::{EngineError, Services};

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
pub struct KillArgs {
    /// A run id (any unique prefix)
    run: String,
}

fn print_from(path: &std::path::Path, offset: u64) -> u64 {
    let Ok(mut f) = std::fs::File::open(path) else {
        return offset;
    };
    let _ = f.seek(SeekFrom::Start(offset));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let _ = std::io::stdout().lock().write_all(&buf);
    offset + buf.len() as u64
}

impl LogsArgs {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let id = services.resolve_run(&self.run).await?;
        let path = local_log(&ctx.settings.paths.data_dir, &id);
        let printed = print_from(&path, 0);
        if !self.follow {
            return Ok(ExitCode::SUCCESS);
        }
        let run = services.store().run(&id).await?;
        if run.status.is_terminal() {
            return Ok(live::report(&run));
        }
        let worker = !services.live_workers().await?.is_empty();
        // A queued run is a worker's to place; without one, it runs here.
        let attempt = if run.status == cosmos_core::RunStatus::Queued && worker {
            Err(EngineError::Busy {
                run: id.to_string(),
                owner: "a worker".into(),
            }
            .into())
        } else if run.status == cosmos_core::RunStatus::Queued {
            live::run_here(&services, &id, false, true).await
        } else {
            live::drive(&services, &id, None, true, false).await
        };
        match attempt {
            Ok(Ended::Finished(run)) => Ok(live::report(&run)),
            Ok(Ended::Detached) => Ok(ExitCode::SUCCESS),
            Err(e)
                if matches!(
                    e.downcast_ref::<EngineError>(),
                    Some(EngineError::Busy { .. })
                ) =>
            {
                // Another process drives it: tail the log it writes.
                let mut at = printed;
                loop {
                    at = print_from(&path, at);
                    let run = services.store().run(&id).await?;
                    if run.status.is_terminal() {
                        print_from(&path, at);
                        return Ok(live::report(&run));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            Err(e) => Err(e),
        }
    }
}

impl KillArgs {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let id = services.resolve_run(&self.run).await?;
        let run = services.cancel_run(&id).await?;
        if run.status.is_terminal() {
            println!("{} {}", run.id, run.status);
            return Ok(ExitCode::SUCCESS);
        }
        // Collect it here unless another process drives it (that one records the end).
        match live::drive(&services, &id, None, false, true).await {
            Ok(Ended::Finished(run)) => println!("{} {}", run.id, run.status),
            Ok(Ended::Detached) => {}
            Err(e)
                if matches!(
                    e.downcast_ref::<EngineError>(),
                    Some(EngineError::Busy { .. })
                ) =>
            {
                println!("{} cancel requested", run.id);
            }
            Err(e) => return Err(e),
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Reconciles runs a crashed process left behind, one by one.
pub async fn reconcile(services: &Services, ctx: &Ctx) -> Result<()> {
    for run in services.orphaned_runs().await? {
        ctx.say("note", &format!("reconciling {} ({})", run.id, run.status));
        match live::drive(services, &run.id, None, false, true).await {
            Ok(_) => {}
            Err(e) => ctx.say("warning", &format!("{}: {e:#}", run.id)),
        }
    }
    Ok(())
}

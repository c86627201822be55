//! `cosmos logs ID [-f]` and `cosmos kill ID…`: reading a run's model log, following it to
//! the end, and cancelling runs.

use std::io::{Read, Seek, SeekFrom, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use cosmos_engine::execute_paths::run_log;
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
    /// Print JSON: the log's lines with the run's status (with -f, one object per line as it
    /// comes, then the run)
    #[arg(long)]
    json: bool,
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
    /// Every queued run (also `--all-queued`)
    #[arg(long, alias = "all-queued")]
    queued: bool,
}

/// Prints what `path` holds past `offset` (as JSON lines `{"line": …}` with `json`, whole
/// lines only); the offset reached.
fn print_from(path: &std::path::Path, offset: u64, json: bool) -> u64 {
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
    let mut out = std::io::stdout().lock();
    if !json {
        let _ = out.write_all(&buf);
        return offset + buf.len() as u64;
    }
    // A line still being written waits for its end.
    let whole = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    for line in buf[..whole]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
    {
        let text = String::from_utf8_lossy(line);
        let _ = writeln!(
            out,
            "{}",
            serde_json::json!({ "line": text.trim_end_matches('\r') })
        );
    }
    offset + whole as u64
}

impl LogsArgs {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let id = services.runs().resolve(&self.run).await?;
        let run = services.runs().get(&id).await?;
        let path = run_log(&ctx.settings.paths.data_dir, &run);
        if self.json && !self.follow {
            let text = std::fs::read(&path).unwrap_or_default();
            let lines: Vec<String> = String::from_utf8_lossy(&text)
                .lines()
                .map(str::to_owned)
                .collect();
            crate::output::json(
                &mut std::io::stdout().lock(),
                &serde_json::json!({
                    "run": id, "status": run.status, "path": path, "lines": lines,
                }),
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        // What is stored first, at once, whatever the run's target does.
        let mut path = path;
        let mut at = print_from(&path, 0, self.json);
        if !self.follow {
            return Ok(ExitCode::SUCCESS);
        }
        let run = services.runs().get(&id).await?;
        if run.status == cosmos_core::RunStatus::Queued {
            ctx.say(
                "logs",
                &format!(
                    "run {id} is queued: following it until a worker or its `cosmos run` starts it (`cosmos status` shows the queue)"
                ),
            );
        }
        // The engine follows the run (taking on a started run no process drives) while the
        // log its driver writes is printed as it grows.
        let ids = [id.clone()];
        let mut batched = run.batch_id.is_some();
        let work = live::see_through(&services, &ids, true, false);
        tokio::pin!(work);
        let ended = loop {
            tokio::select! {
                r = &mut work => break r?,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    // A queued run placed in a batch writes to the batch's log.
                    if !batched
                        && let Ok(now) = services.runs().get(&id).await
                        && now.batch_id.is_some()
                    {
                        batched = true;
                        print_from(&path, at, self.json);
                        path = run_log(&ctx.settings.paths.data_dir, &now);
                        at = 0;
                    }
                    at = print_from(&path, at, self.json);
                }
            }
        };
        print_from(&path, at, self.json);
        if self.json
            && let Ended::Finished(runs) = &ended
            && let Some(run) = runs.first()
        {
            crate::output::json(&mut std::io::stdout().lock(), run)?;
            return Ok(ExitCode::from(u8::from(
                run.status != cosmos_core::RunStatus::Succeeded,
            )));
        }
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
        for run in &cancelled.already_finished {
            ctx.say(
                "error",
                &format!(
                    "run {} has already finished ({}): nothing to cancel",
                    run.id, run.status
                ),
            );
        }
        for run in cancelled.runs {
            if run.status.is_terminal() {
                println!("{} {}", run.id, run.status);
            } else {
                println!("{} cancel requested", run.id);
            }
        }
        Ok(ExitCode::from(u8::from(
            !cancelled.already_finished.is_empty(),
        )))
    }

    async fn scope(&self, services: &Services) -> Result<CancelScope> {
        Ok(if let Some(p) = &self.prompt {
            CancelScope::Prompt(services.prompts().resolve(p).await?)
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

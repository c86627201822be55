//! The queue from the command line: `cosmos worker`, `cosmos queue pause|resume`,
//! `cosmos retry`.

use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;

use cosmos_engine::WorkerEvent;

use crate::context::Ctx;
use crate::output;

/// `cosmos worker`: drains the queue until SIGINT or SIGTERM.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// `full` re-hashes every input already on a target before a run uses it; `stamp`
    /// (the default, `queue.verify_inputs`) only those that changed since they were verified
    #[arg(long, value_name = "stamp|full", value_parser = ["stamp", "full"])]
    verify_inputs: Option<String>,
}

impl WorkerArgs {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx
            .services_verifying(self.verify_inputs.as_deref())
            .await?;
        let stopped = stop_on_signals(
            "worker: stopping; running models keep running and another driver takes them over",
        );
        eprintln!(
            "worker {} on {}: claiming queued runs (Ctrl-C stops)",
            cosmos_engine::owner_id(),
            ctx.settings.paths.data_dir.display()
        );
        drive_worker(&services, stopped, true).await?;
        Ok(ExitCode::SUCCESS)
    }
}

/// A channel that turns true on SIGINT or SIGTERM (saying `message` then).
pub fn stop_on_signals(message: &'static str) -> tokio::sync::watch::Receiver<bool> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("{message}");
        let _ = stop.send(true);
    });
    stopped
}

/// Runs a worker until `stopped` turns true, saying on stderr what it does (and, with
/// `every_event`, every event of the runs it drives).
pub async fn drive_worker(
    services: &cosmos_engine::Services,
    stopped: tokio::sync::watch::Receiver<bool>,
    every_event: bool,
) -> Result<()> {
    fn say(text: String) {
        let line = format!("{} {text}", chrono::Local::now().format("%H:%M:%S"));
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
    // What happens to runs is on the bus; what only the worker knows comes by channel.
    let mut events = services.events().subscribe().await?;
    let (report, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let queue = services.queue();
    let work = queue.work(stopped, report);
    tokio::pin!(work);
    loop {
        tokio::select! {
            r = &mut work => { r?; break; }
            e = events.next() => match e {
                Ok(Some(e)) if every_event => say(format!("{} [{}] {}", e.run_id, e.stage, e.message)),
                Ok(_) => {}
                // The worker waits out a busy store; so does what shows its events.
                Err(e) if e.is_transient() => {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            },
            Some(note) = reports.recv() => say(match note {
                WorkerEvent::Adopted(run) => format!("{run} taken over from a driver that is gone"),
                WorkerEvent::Finished(run, status) => format!("{run} {status}"),
                WorkerEvent::Error(run, message) => format!("{run} error: {message}"),
                WorkerEvent::TargetDown(t) => {
                    format!("target {t} does not answer: no new work for it")
                }
                WorkerEvent::TargetUp(t) => format!("target {t} answers again"),
                WorkerEvent::Trouble(message) => format!("warning: {message}"),
            }),
        }
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum QueueCommand {
    /// Stop placing queued runs (on every target, or one); running ones go on
    Pause(PauseArgs),
    /// Place queued runs again
    Resume(PauseArgs),
}

#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// Only this target
    #[arg(long, short = 't')]
    target: Option<String>,
}

impl QueueCommand {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let (args, paused) = match self {
            QueueCommand::Pause(a) => (a, true),
            QueueCommand::Resume(a) => (a, false),
        };
        services
            .queue()
            .set_paused(args.target.as_deref(), paused)
            .await?;
        let scope = match &args.target {
            Some(t) => format!("target {t}"),
            None => "the queue".into(),
        };
        println!("{scope} {}", if paused { "paused" } else { "resumed" });
        Ok(ExitCode::SUCCESS)
    }
}

/// `cosmos retry ID`: a failed or cancelled run again, as a new queued run linked to it.
#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// The run to retry (id or unique prefix)
    run: String,
    /// Return at once instead of waiting for it (it waits in the queue)
    #[arg(long)]
    no_wait: bool,
    /// Print the new run as JSON
    #[arg(long)]
    json: bool,
}

impl RetryArgs {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let id = services.runs().resolve(&self.run).await?;
        let run = services.runs().retry(&id).await?;
        if self.no_wait {
            if self.json {
                output::json(&mut std::io::stdout().lock(), &run)?;
            } else {
                println!("{}", run.id);
            }
        }
        if self.no_wait {
            return Ok(ExitCode::SUCCESS);
        }
        // Its upscales, queued again with it, are seen through too.
        let mut ids = vec![run.id.clone()];
        ids.extend(run.upscaled_by.iter().cloned());
        crate::live::execute(ctx, &services, &ids, self.json).await
    }
}

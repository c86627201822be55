//! Driving a run in the foreground with a live display on stderr: stage, clip i/N, elapsed,
//! ETA; transfers as percentages. Ctrl-C offers to detach (the run continues on the target)
//! or cancel (the model is killed).

use std::io::{BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;

use cosmos_core::{Run, RunId, RunStatus};
use cosmos_engine::{DriveOutcome, EngineError, Services, Update};

use crate::context::Ctx;

/// How a foreground drive ended.
#[derive(Debug)]
pub enum Ended {
    Finished(Box<Run>),
    Detached,
}

struct Display {
    tty: bool,
    started: Instant,
    line_open: bool,
    /// Echo the model's log to stdout (`cosmos logs -f`).
    echo_log: bool,
    quiet: bool,
    /// The transfer being shown and when it began, for its rate.
    transfer: Option<(&'static str, Instant)>,
}

fn clock(secs: u64) -> String {
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// A bar `width` cells wide, `fraction` of it filled.
fn bar(fraction: f64, width: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

impl Display {
    fn status_line(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{text}");
            self.line_open = true;
        } else {
            let _ = writeln!(err, "{text}");
        }
    }

    fn message(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        if self.line_open {
            let _ = write!(err, "\r\x1b[2K");
            self.line_open = false;
        }
        let _ = writeln!(err, "{text}");
    }

    fn update(&mut self, u: Update) {
        let elapsed = self.started.elapsed().as_secs();
        match u {
            Update::Log(bytes) if self.echo_log => {
                let _ = std::io::stdout().lock().write_all(&bytes);
            }
            Update::Log(_) => {}
            _ if self.quiet => {}
            Update::Status(s, m) => self.message(&format!("[{s}] {m}")),
            Update::Note(m) => self.message(&format!("note: {m}")),
            Update::Transfer { what, done, total } => {
                if self.tty {
                    let began = match self.transfer {
                        Some((w, t)) if w == what => t,
                        _ => {
                            let now = Instant::now();
                            self.transfer = Some((what, now));
                            now
                        }
                    };
                    let fraction = if total == 0 {
                        1.0
                    } else {
                        done as f64 / total as f64
                    };
                    let secs = began.elapsed().as_secs_f64();
                    const MIB: f64 = (1u64 << 20) as f64;
                    let rate = if secs > 0.2 {
                        format!("  {:.1} MiB/s", done as f64 / MIB / secs)
                    } else {
                        String::new()
                    };
                    self.status_line(&format!(
                        "{what} {} {:>3.0}% {:.1} / {:.1} MiB{rate}  elapsed {}",
                        bar(fraction, 24),
                        fraction * 100.0,
                        done as f64 / MIB,
                        total as f64 / MIB,
                        clock(elapsed)
                    ));
                }
            }
            Update::Progress(m) => {
                let eta = if m.fraction >= 0.2 && m.fraction < 1.0 {
                    let total = elapsed as f64 / m.fraction;
                    format!("  ETA {}", clock((total - elapsed as f64).max(0.0) as u64))
                } else {
                    String::new()
                };
                let text = format!(
                    "[running] {} {:>3.0}%  elapsed {}{eta}",
                    m.describe(),
                    m.fraction * 100.0,
                    clock(elapsed)
                );
                self.status_line(&text);
            }
        }
    }
}

/// Asks what to do after Ctrl-C; without a terminal the answer is detach.
fn ask() -> char {
    if !std::io::stdin().is_terminal() {
        return 'd';
    }
    eprint!("\nDetach (the run continues), cancel (kill the model), or resume? [d/c/r] ");
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    answer
        .trim()
        .chars()
        .next()
        .unwrap_or('r')
        .to_ascii_lowercase()
}

/// Drives `id` in the foreground until it ends or the user detaches.
pub async fn drive(
    services: &Services,
    id: &RunId,
    target: Option<&str>,
    echo_log: bool,
    quiet: bool,
) -> Result<Ended> {
    let display = Arc::new(Mutex::new(Display {
        tty: std::io::stderr().is_terminal(),
        started: Instant::now(),
        line_open: false,
        echo_log,
        quiet,
        transfer: None,
    }));
    let obs = {
        let d = display.clone();
        Arc::new(move |u: Update| {
            if let Ok(mut d) = d.lock() {
                d.update(u);
            }
        })
    };
    let drive = services.drive_run(id, target, obs);
    tokio::pin!(drive);
    let result = loop {
        tokio::select! {
            r = &mut drive => break r,
            _ = tokio::signal::ctrl_c() => match ask() {
                'd' => {
                    services.release(id).await?;
                    eprintln!("detached: run {id} continues on its target; `cosmos logs -f {id}` reattaches");
                    return Ok(Ended::Detached);
                }
                'c' => {
                    eprintln!("cancelling {id}…");
                    services.cancel_run(id).await?;
                }
                _ => {}
            },
        }
    };
    if let Ok(mut d) = display.lock()
        && d.line_open
    {
        d.message("");
    }
    match result {
        Ok(DriveOutcome::Done(run)) => Ok(Ended::Finished(Box::new(run))),
        Err(e @ EngineError::Busy { .. }) => Err(e.into()),
        Err(e) => Err(e.into()),
    }
}

/// Runs a queued run in this process: waits for free GPU slots, claims it (the placement
/// picks the target and GPUs), drives it, and again if it comes back to the queue.
pub async fn run_here(
    services: &Services,
    id: &RunId,
    quiet: bool,
    echo_log: bool,
) -> Result<Ended> {
    let mut waiting = false;
    loop {
        let run = services.store().run(id).await?;
        if run.status.is_terminal() {
            return Ok(Ended::Finished(Box::new(run)));
        }
        if run.status == RunStatus::Queued {
            match services.claim_own(id).await? {
                Some(claim) => {
                    let devices: Vec<String> = claim.devices.iter().map(u32::to_string).collect();
                    if !quiet {
                        eprintln!("[placed] on {} (GPU {})", claim.target, devices.join(","));
                    }
                }
                None => {
                    if !waiting && !quiet {
                        eprintln!(
                            "[queued] waiting for free GPU slots (`cosmos status` shows who holds them; Ctrl-C leaves the run queued)"
                        );
                    }
                    waiting = true;
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    continue;
                }
            }
        }
        match drive(services, id, None, echo_log, quiet).await? {
            Ended::Detached => return Ok(Ended::Detached),
            Ended::Finished(run) if run.status.is_terminal() => return Ok(Ended::Finished(run)),
            Ended::Finished(_) => {}
        }
    }
}

/// Follows a run another process drives (a worker), from the events it stores: status
/// changes and progress as they happen, never asking the target. Ctrl-C stops following.
pub async fn follow_store(services: &Services, id: &RunId, quiet: bool) -> Result<Ended> {
    let mut seen = 0usize;
    let mut turn = 0u32;
    loop {
        turn += 1;
        // Every few seconds: if the workers are all gone, this process takes the run on.
        if turn.is_multiple_of(12) && services.live_workers().await?.is_empty() {
            let run = services.store().run(id).await?;
            let orphaned = run.status == RunStatus::Queued
                || services.orphaned_runs().await?.iter().any(|r| &r.id == id);
            if orphaned {
                if !quiet {
                    eprintln!("[note] no worker is left; running {id} here");
                }
                return run_here(services, id, quiet, false).await;
            }
        }
        let events = services.store().run_events(id).await?;
        for e in events.iter().skip(seen) {
            if !quiet {
                match e.progress {
                    Some(p) => eprintln!("[{}] {} ({:.0}%)", e.stage, e.message, p * 100.0),
                    None => eprintln!("[{}] {}", e.stage, e.message),
                }
            }
        }
        seen = events.len();
        let run = services.store().run(id).await?;
        if run.status.is_terminal() {
            return Ok(Ended::Finished(Box::new(run)));
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
            _ = tokio::signal::ctrl_c() => {
                eprintln!("stopped following: run {id} goes on; `cosmos logs -f {id}` follows it again");
                return Ok(Ended::Detached);
            }
        }
    }
}

/// Prints a finished run's result: the output path on stdout, the reason on stderr.
pub fn report(run: &Run) -> std::process::ExitCode {
    match run.status {
        RunStatus::Succeeded => {
            if let Some(o) = run.outputs.first() {
                println!("{}", o.path);
            }
            std::process::ExitCode::SUCCESS
        }
        other => {
            eprintln!(
                "run {} {other}: {}",
                run.id,
                run.failure_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            );
            std::process::ExitCode::from(1)
        }
    }
}

/// Executes a queued run to its end and reports it (`cosmos run`, `cosmos retry`): a live
/// worker runs it and this process follows its events; without one it runs here, finishing
/// beside it any runs a crashed cosmos left behind.
pub async fn execute(
    ctx: &Ctx,
    services: &Services,
    id: &RunId,
    json: bool,
) -> Result<std::process::ExitCode> {
    let ended = if !services.live_workers().await?.is_empty() {
        ctx.say(
            "run",
            &format!("{id} queued; a worker runs it (following its progress)"),
        );
        follow_store(services, id, json).await
    } else {
        ctx.say("run", &id.to_string());
        let leftovers = finish_orphans(services, ctx).await?;
        let ended = run_here(services, id, json, false).await;
        if let Some(task) = leftovers {
            if matches!(ended, Ok(Ended::Finished(_))) {
                if !task.is_finished() {
                    ctx.say("note", "waiting for the runs an earlier cosmos left behind");
                }
                let _ = task.await;
            } else {
                task.abort();
            }
        }
        ended
    };
    match ended? {
        Ended::Detached => Ok(std::process::ExitCode::SUCCESS),
        Ended::Finished(run) if json => {
            crate::output::json(&mut std::io::stdout().lock(), &run)?;
            Ok(std::process::ExitCode::from(u8::from(
                run.status != RunStatus::Succeeded,
            )))
        }
        Ended::Finished(run) => Ok(report(&run)),
    }
}

/// Drives, beside this run, the runs a crashed cosmos left unfinished (DESIGN.md §3,
/// invariant 1): they are collected or reattached without the user asking.
async fn finish_orphans(
    services: &Services,
    ctx: &Ctx,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let orphans = services.orphaned_runs().await?;
    if orphans.is_empty() {
        return Ok(None);
    }
    let ids: Vec<String> = orphans.iter().map(|r| r.id.to_string()).collect();
    ctx.say(
        "note",
        &format!(
            "also finishing {} left behind by an earlier cosmos",
            ids.join(", ")
        ),
    );
    let services = services.clone();
    Ok(Some(tokio::spawn(async move {
        for run in orphans {
            let quiet: cosmos_engine::Observer = std::sync::Arc::new(|_| {});
            if let Err(e) = services.drive_run(&run.id, None, quiet).await {
                tracing::warn!("{}: {e}", run.id);
            }
        }
    })))
}

/// Executes several queued runs (a sweep) and reports each as it ends: a live worker runs
/// them while this process follows the store; without one they run here, side by side on
/// whatever GPU slots are free. Ctrl-C stops waiting; the runs stay queued or keep running.
pub async fn execute_many(
    ctx: &Ctx,
    services: &Services,
    ids: &[RunId],
    json: bool,
) -> Result<std::process::ExitCode> {
    let here = services.live_workers().await?.is_empty();
    ctx.say(
        "run",
        &if here {
            format!("{} runs; running them here as GPU slots free up", ids.len())
        } else {
            format!("{} runs queued; a worker runs them (following)", ids.len())
        },
    );
    let mut tasks: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    let mut started: std::collections::HashSet<RunId> = std::collections::HashSet::new();
    let mut done: std::collections::HashMap<RunId, Run> = std::collections::HashMap::new();
    let interrupted = loop {
        for id in ids {
            if done.contains_key(id) {
                continue;
            }
            let run = services.store().run(id).await?;
            if run.status.is_terminal() {
                if !json {
                    eprintln!("{} {}", run.id, run.status);
                }
                done.insert(id.clone(), run);
                continue;
            }
            if here && run.status == RunStatus::Queued && !started.contains(id) {
                if services.claim_own(id).await?.is_some() {
                    started.insert(id.clone());
                    let (services, id) = (services.clone(), id.clone());
                    tasks.spawn(async move {
                        let quiet: cosmos_engine::Observer = Arc::new(|_| {});
                        let _ = services.drive_run(&id, None, quiet).await;
                    });
                }
            } else if here && run.status == RunStatus::Queued {
                // Back in the queue (a retry): claim it again when it is due.
                started.remove(id);
            }
        }
        if done.len() == ids.len() {
            break false;
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = tokio::signal::ctrl_c() => break true,
        }
    };
    if interrupted {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        for id in ids {
            let _ = services.release(id).await;
        }
        eprintln!(
            "stopped waiting: started runs keep running, the rest stay queued (`cosmos status`, `cosmos worker`)"
        );
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let runs: Vec<&Run> = ids.iter().filter_map(|id| done.get(id)).collect();
    let failed = runs
        .iter()
        .filter(|r| r.status != RunStatus::Succeeded)
        .count();
    if json {
        crate::output::json(&mut std::io::stdout().lock(), &runs)?;
    } else {
        ctx.say(
            "run",
            &format!("{} succeeded, {failed} did not", runs.len() - failed),
        );
    }
    Ok(std::process::ExitCode::from(u8::from(failed > 0)))
}

#[cfg(test)]
mod tests {
    use super::bar;

    #[test]
    fn bars_fill_in_proportion_and_never_overflow() {
        for (fraction, want) in [
            (0.0, "[----------]"),
            (0.26, "[###-------]"),
            (1.0, "[##########]"),
            (1.7, "[##########]"),
            (-0.5, "[----------]"),
        ] {
            assert_eq!(bar(fraction, 10), want, "{fraction}");
        }
    }
}

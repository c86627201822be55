//! Seeing runs through in the foreground: the engine runs them (or follows the worker that
//! does) while this shows their events from the bus on stderr — status changes, transfers,
//! clip i/N with elapsed time and an ETA. Ctrl-C offers to detach (the run continues on its
//! target) or cancel (the model is killed).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;

use cosmos_core::{Run, RunEvent, RunId, RunStatus};
use cosmos_engine::{CancelScope, Followed, Services};

use crate::context::Ctx;

/// How a foreground wait ended.
#[derive(Debug)]
pub enum Ended {
    Finished(Vec<Run>),
    Detached,
}

struct Display {
    tty: bool,
    started: Instant,
    line_open: bool,
    quiet: bool,
    /// Several runs at once: one combined line, and each run's end.
    many: bool,
    /// Each run's stage and progress within it (several runs).
    runs: std::collections::HashMap<RunId, (RunStatus, f64)>,
    /// The runs' stages counted, and their progress summed.
    tally: Tally,
    /// The combined counts last printed without a terminal (printed again only on change).
    last_counts: String,
}

/// How many runs of a sweep are in each state, and their progress summed.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    running: i64,
    queued: i64,
    done: i64,
    failed: i64,
    progress: f64,
}

impl Tally {
    fn count(&mut self, (stage, progress): (RunStatus, f64), by: i64) {
        match stage {
            RunStatus::Queued => self.queued += by,
            RunStatus::Succeeded => self.done += by,
            s if s.is_terminal() => {
                self.done += by;
                self.failed += by;
            }
            _ => self.running += by,
        }
        self.progress += by as f64 * progress;
    }
    fn add(&mut self, run: (RunStatus, f64)) {
        self.count(run, 1);
    }
    fn take(&mut self, run: (RunStatus, f64)) {
        self.count(run, -1);
    }
}

fn clock(secs: u64) -> String {
    format!("{}:{:02}", secs / 60, secs % 60)
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

    /// Several runs: their ends and waits as lines, the rest as one combined line (running,
    /// queued and done counts, overall percent, ETA).
    fn sweep_event(&mut self, e: &RunEvent) {
        let p = e.progress.unwrap_or(0.0).clamp(0.0, 1.0);
        let within = match e.stage {
            RunStatus::Queued => 0.0,
            RunStatus::Staging => 0.05,
            RunStatus::Starting => 0.1,
            RunStatus::Running => 0.1 + 0.85 * p,
            RunStatus::Collecting => 0.95,
            _ => 1.0,
        };
        // The tally moves by this run's change alone: a sweep of thousands costs the same per
        // event as one of three.
        if let Some(old) = self.runs.insert(e.run_id.clone(), (e.stage, within)) {
            self.tally.take(old);
        }
        self.tally.add((e.stage, within));
        if e.stage.is_terminal() {
            self.message(&format!("{} {}: {}", e.run_id, e.stage, e.message));
        } else if e.message.starts_with("waiting") {
            self.message(&format!("{} {}", e.run_id, e.message));
        }
        let Tally {
            running,
            queued,
            done,
            failed,
            progress,
        } = self.tally;
        let overall = progress / self.runs.len().max(1) as f64;
        let elapsed = self.started.elapsed().as_secs();
        let eta = if (0.05..1.0).contains(&overall) {
            let total = elapsed as f64 / overall;
            format!("  ETA {}", clock((total - elapsed as f64).max(0.0) as u64))
        } else {
            String::new()
        };
        let failed = if failed > 0 {
            format!(" ({failed} not succeeded)")
        } else {
            String::new()
        };
        let counts = format!("{running} running · {queued} queued · {done} done{failed}");
        let line = format!(
            "[{} runs] {counts} · {:>3.0}%  elapsed {}{eta}",
            self.runs.len(),
            overall * 100.0,
            clock(elapsed)
        );
        if self.tty {
            self.status_line(&line);
        } else if counts != self.last_counts {
            self.last_counts = counts;
            self.message(&line);
        }
    }

    fn event(&mut self, e: &RunEvent) {
        if self.quiet {
            return;
        }
        if self.many {
            return self.sweep_event(e);
        }
        let who = String::new();
        match e.progress {
            Some(p) if e.stage == RunStatus::Running => {
                let elapsed = self.started.elapsed().as_secs();
                let eta = if (0.2..1.0).contains(&p) {
                    let total = elapsed as f64 / p;
                    format!("  ETA {}", clock((total - elapsed as f64).max(0.0) as u64))
                } else {
                    String::new()
                };
                let text = format!(
                    "{who}[running] {} {:>3.0}%  elapsed {}{eta}",
                    e.message,
                    p * 100.0,
                    clock(elapsed)
                );
                self.status_line(&text);
            }
            // A transfer's steps (`uploading inputs: 30% of 1.2 GiB`) overwrite each other.
            _ if e.message.starts_with("uploading inputs: ")
                || e.message.starts_with("downloading outputs: ") =>
            {
                let elapsed = clock(self.started.elapsed().as_secs());
                let text = format!("{who}[{}] {}  elapsed {elapsed}", e.stage, e.message);
                self.status_line(&text);
            }
            _ => self.message(&format!("{who}[{}] {}", e.stage, e.message)),
        }
    }

    fn close(&mut self) {
        if self.line_open {
            self.message("");
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

/// Sees `ids` through, showing their events; Ctrl-C detaches, cancels or resumes.
/// Sees runs through (`start_queued`: claiming queued ones here when no worker runs), showing
/// their progress unless `quiet`.
pub async fn see_through(
    services: &Services,
    ids: &[RunId],
    quiet: bool,
    start_queued: bool,
) -> Result<Ended> {
    let mut display = Display {
        tty: std::io::stderr().is_terminal(),
        started: Instant::now(),
        line_open: false,
        quiet,
        many: ids.len() > 1,
        runs: ids
            .iter()
            .map(|id| (id.clone(), (RunStatus::Queued, 0.0)))
            .collect(),
        tally: Tally {
            queued: ids.len() as i64,
            ..Tally::default()
        },
        last_counts: String::new(),
    };
    let head = services.events().head().await?;
    let mut follower = services.events().follow(head, None);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runs = services.runs();
    let work = async {
        if start_queued {
            runs.see_through(ids, stopped).await
        } else {
            runs.follow(ids, stopped).await
        }
    };
    tokio::pin!(work);
    let ended = loop {
        tokio::select! {
            r = &mut work => break r?,
            batch = follower.next_batch() => {
                for e in batch? {
                    if ids.contains(&e.run_id) {
                        display.event(&e);
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => match ask() {
                'd' => { let _ = stop.send(true); }
                'c' => {
                    eprintln!("cancelling {}…", ids.iter().map(RunId::to_string).collect::<Vec<_>>().join(", "));
                    services.runs().cancel(CancelScope::Runs(ids.to_vec())).await?;
                }
                _ => {}
            },
        }
    };
    // What was stored while the work finished.
    for e in services
        .events()
        .follow(follower.cursor(), None)
        .drain()
        .await?
    {
        if ids.contains(&e.run_id) {
            display.event(&e);
        }
    }
    display.close();
    Ok(match ended {
        Followed::Finished(runs) => Ended::Finished(runs),
        Followed::Stopped => Ended::Detached,
    })
}

/// Prints a finished run's result: the output path on stdout, the reason on stderr.
pub fn report(run: &Run) -> ExitCode {
    match run.status {
        RunStatus::Succeeded => {
            if let Some(o) = run.outputs.first() {
                println!("{}", o.path);
            }
            if run.rehearsal {
                eprintln!("note: {}", crate::views::REHEARSAL_NOTE);
            }
            ExitCode::SUCCESS
        }
        other => {
            eprintln!(
                "run {} {other}: {}",
                run.id,
                run.failure_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            );
            if let Some(hint) = run
                .failure_code
                .as_deref()
                .and_then(crate::error::failure_hint)
            {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(1)
        }
    }
}

/// Executes queued runs to their end and reports them (`cosmos run`, `cosmos retry`): a live
/// worker runs them and this process follows; without one they run here.
pub async fn execute(
    ctx: &Ctx,
    services: &Services,
    ids: &[RunId],
    json: bool,
) -> Result<ExitCode> {
    let worker = !services.queue().live_workers().await?.is_empty();
    let what = match ids {
        [one] => one.to_string(),
        many => format!("{} runs", many.len()),
    };
    if worker {
        ctx.say(
            "run",
            &format!("{what} queued; a worker runs it (following its progress)"),
        );
    } else if ids.len() > 1 {
        ctx.say(
            "run",
            &format!("{what}; running them here as GPU slots free up"),
        );
    } else {
        ctx.say("run", &what);
    }
    if !worker {
        let orphans: Vec<String> = services
            .runs()
            .orphaned()
            .await?
            .iter()
            .map(|r| r.id.to_string())
            .collect();
        if !orphans.is_empty() {
            let list = orphans.join(", ");
            ctx.say(
                "note",
                &format!("also finishing {list} left behind by an earlier cosmos"),
            );
        }
    }
    let runs = match see_through(services, ids, json, true).await? {
        Ended::Detached => {
            match ids {
                [id] => eprintln!(
                    "detached: run {id} continues on its target; `cosmos logs -f {id}` reattaches"
                ),
                _ => eprintln!(
                    "stopped waiting: started runs keep running, the rest stay queued (`cosmos status`, `cosmos worker`)"
                ),
            }
            return Ok(ExitCode::SUCCESS);
        }
        Ended::Finished(runs) => runs,
    };
    let failed = runs
        .iter()
        .filter(|r| r.status != RunStatus::Succeeded)
        .count();
    match runs.as_slice() {
        [run] if json => crate::output::json(&mut std::io::stdout().lock(), run)?,
        [run] => return Ok(report(run)),
        _ if json => crate::output::json(&mut std::io::stdout().lock(), &runs)?,
        _ => {
            // Each run's end was shown as it came; the outputs go to stdout, as for one run.
            for r in runs.iter().filter(|r| r.status == RunStatus::Succeeded) {
                if let Some(o) = r.outputs.first() {
                    println!("{}", o.path);
                }
            }
            let rehearsed = runs.iter().filter(|r| r.rehearsal).count();
            let of_them = match rehearsed {
                0 => String::new(),
                n => {
                    format!(" ({n} on a rehearsal target: cosmos-sim's copies, not Cosmos output)")
                }
            };
            ctx.say(
                "run",
                &format!(
                    "{} succeeded, {failed} did not{of_them}",
                    runs.len() - failed
                ),
            );
        }
    }
    Ok(ExitCode::from(u8::from(failed > 0)))
}

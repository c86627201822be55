//! Driving a run in the foreground with a live display on stderr: stage, clip i/N, elapsed,
//! ETA; transfers as percentages. Ctrl-C offers to detach (the run continues on the target)
//! or cancel (the model is killed).

use std::io::{BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;

use cosmos_core::{Run, RunId, RunStatus};
use cosmos_engine::{DriveOutcome, EngineError, Services, Update};

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
                    let pct = (done * 100).checked_div(total).unwrap_or(100);
                    self.status_line(&format!(
                        "{what} {pct:>3}% ({:.1} / {:.1} MB)  elapsed {}",
                        done as f64 / 1e6,
                        total as f64 / 1e6,
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

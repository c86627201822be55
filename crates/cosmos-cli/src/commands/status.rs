//! `cosmos status [--watch] [--json]`: the queue with estimated start and finish, running
//! runs with stage, progress, target and GPUs, the targets' slots and health, the workers.
//! It answers from what is stored, whatever the targets do: reconciling runs a crash left
//! is the workers' job (and `cosmos run`'s), never a read's.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Local, Utc};

use cosmos_engine::StatusView;

use crate::context::Ctx;
use crate::output::{self, Style, Table};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Refresh until Ctrl-C
    #[arg(long, short)]
    watch: bool,
    /// Seconds between refreshes with --watch
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    interval: f64,
    /// Queued runs to list
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Print JSON (with --watch: one object per line, per refresh)
    #[arg(long)]
    json: bool,
}

impl StatusArgs {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        if !(self.interval > 0.0 && self.interval.is_finite()) {
            anyhow::bail!("--interval takes a number of seconds above 0, e.g. --interval 2");
        }
        let services = ctx.services().await?;
        let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
        loop {
            let view = services.queue().status(self.limit).await?;
            let mut out = std::io::stdout().lock();
            if self.json {
                if self.watch {
                    writeln!(out, "{}", serde_json::to_string(&view)?)?;
                } else {
                    output::json(&mut out, &view)?;
                }
            } else {
                if self.watch && tty {
                    // Home and clear: a refreshing screen, not a scrolling one.
                    write!(out, "\x1b[H\x1b[2J")?;
                }
                render(&mut out, &view, ctx.style)?;
            }
            out.flush()?;
            drop(out);
            if !self.watch {
                return Ok(ExitCode::SUCCESS);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(self.interval)) => {}
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            }
        }
    }
}

fn clock(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| t.with_timezone(&Local).format("~%H:%M:%S").to_string())
        .unwrap_or_else(|| "?".into())
}

fn seconds(s: f64) -> String {
    match s {
        s if s < 10.0 => format!("{s:.1} s"),
        s if s < 120.0 => format!("{s:.0} s"),
        s => format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64),
    }
}

fn render(out: &mut dyn Write, v: &StatusView, style: Style) -> std::io::Result<()> {
    let typical = v
        .typical_run_seconds
        .map(|s| format!(" · a run takes ~{}", seconds(s)))
        .unwrap_or_else(|| " · no finished runs yet to estimate from".into());
    writeln!(
        out,
        "{} {} queued{}{}",
        style.bold("queue"),
        v.queued_total,
        if v.paused {
            " (PAUSED: `cosmos queue resume`)"
        } else {
            ""
        },
        typical
    )?;
    if !v.queue.is_empty() {
        let mut t = Table::new(&["#", "RUN", "GPUS", "TARGET", "PROMPT", "START", "FINISH"]);
        for q in &v.queue {
            t.row(vec![
                q.position.to_string(),
                q.run.id.to_string(),
                q.run.params.gpus.to_string(),
                q.run.target_pin.clone().unwrap_or_else(|| "any".into()),
                output::truncate(&q.run.prompt_name, 24),
                clock(q.estimated_start),
                clock(q.estimated_finish),
            ]);
        }
        t.print(out, style)?;
        if v.queued_total > v.queue.len() {
            writeln!(out, "… and {} more", v.queued_total - v.queue.len())?;
        }
    }
    writeln!(out, "\n{} {} running", style.bold("runs"), v.running.len())?;
    if !v.running.is_empty() {
        let mut t = Table::new(&[
            "RUN", "STATUS", "TARGET", "DEVICES", "PROGRESS", "STAGE", "FINISH",
        ]);
        for r in &v.running {
            let devices: Vec<String> = r.run.devices.iter().map(u32::to_string).collect();
            t.row(vec![
                r.run.id.to_string(),
                style.status(r.run.status),
                crate::views::target_cell(&r.run),
                devices.join(","),
                r.progress
                    .map(|p| format!("{:.0}%", p * 100.0))
                    .unwrap_or_else(|| "-".into()),
                output::truncate(&r.stage, 40),
                clock(r.estimated_finish),
            ]);
        }
        t.print(out, style)?;
    }
    writeln!(out, "\n{}", style.bold("targets"))?;
    let mut t = Table::new(&["TARGET", "SLOTS", "USED", "FREE", "STATE"]);
    for target in &v.targets {
        let state = match (target.paused, target.reachable) {
            (true, _) => "paused".to_owned(),
            (false, Some(false)) => format!(
                "unreachable{}",
                target
                    .since
                    .map(|s| format!(" since {}", output::age(s, Utc::now())))
                    .unwrap_or_default()
            ),
            (false, Some(true)) => "reachable".into(),
            (false, None) => "not tried yet".into(),
        };
        let slots = if target.slots < target.configured_slots {
            format!(
                "{} (of {}: {} GPUs seen)",
                target.slots,
                target.configured_slots,
                target.gpus_seen.unwrap_or(target.slots)
            )
        } else {
            target.slots.to_string()
        };
        t.row(vec![
            target.name.clone(),
            slots,
            target.used.to_string(),
            target.free.to_string(),
            state,
        ]);
    }
    t.print(out, style)?;
    let workers: Vec<String> = v.workers.iter().map(|w| w.id.clone()).collect();
    writeln!(
        out,
        "\n{} {}",
        style.bold("workers"),
        if workers.is_empty() {
            "none (`cosmos worker` starts one; `cosmos run` runs its own runs meanwhile)".into()
        } else {
            workers.join(", ")
        }
    )
}

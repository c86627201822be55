//! `cosmos hooks`: the configured hooks, their latest deliveries, and a test delivery.

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use cosmos_engine::{HookAction, HookEvent};

use crate::context::Ctx;
use crate::output::{self, Table};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The hooks in the configuration and their latest deliveries (failures with why)
    #[command(after_help = "Examples:\n  cosmos hooks list\n  cosmos hooks list --json")]
    List(ListArgs),
    /// Send a hook a sample event now (marked "test": true) and say how it went
    #[command(
        after_help = "Examples:\n  cosmos hooks test notify\n  cosmos hooks test tracker --event run.failed"
    )]
    Test(TestArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// How many recent deliveries to show
    #[arg(long, default_value_t = 10)]
    limit: u32,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The hook's name (`name` in its [[hooks]] table)
    name: String,
    /// The event to send (default: the first it listens for)
    #[arg(long, value_parser = parse_event)]
    event: Option<HookEvent>,
    #[arg(long)]
    json: bool,
}

fn parse_event(s: &str) -> Result<HookEvent, String> {
    s.parse()
}

impl Command {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        match self {
            Command::List(a) => a.run(ctx).await,
            Command::Test(a) => a.run(ctx).await,
        }
    }
}

#[derive(Serialize)]
struct Listed<'a> {
    name: &'a str,
    on: Vec<&'static str>,
    kind: &'static str,
    does: String,
    signed: bool,
}

impl ListArgs {
    async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let hooks: Vec<Listed<'_>> = ctx
            .settings
            .hooks
            .iter()
            .map(|h| {
                let (kind, does, signed) = match &h.action {
                    HookAction::Command(argv) => ("command", argv.join(" "), false),
                    HookAction::Webhook { url, secret } => {
                        ("webhook", url.clone(), secret.is_some())
                    }
                };
                Listed {
                    name: &h.name,
                    on: h.on.iter().map(|e| e.as_str()).collect(),
                    kind,
                    does,
                    signed,
                }
            })
            .collect();
        let deliveries = services.hook_deliveries(None, self.limit).await?;
        if self.json {
            output::json(
                &mut std::io::stdout().lock(),
                &serde_json::json!({ "hooks": hooks, "deliveries": deliveries }),
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        let mut out = std::io::stdout().lock();
        if hooks.is_empty() {
            ctx.say(
                "hooks",
                "none configured: add a [[hooks]] table (see `cosmos config default`)",
            );
        } else {
            let mut table = Table::new(&["NAME", "ON", "DOES"]);
            for h in &hooks {
                let does = match (h.kind, h.signed) {
                    ("webhook", true) => format!("POST {} (signed)", h.does),
                    ("webhook", false) => format!("POST {}", h.does),
                    _ => format!("run {}", h.does),
                };
                table.row(vec![h.name.to_owned(), h.on.join(", "), does]);
            }
            table.print(&mut out, ctx.style)?;
        }
        if !deliveries.is_empty() {
            std::io::Write::write_all(&mut out, b"\nLatest deliveries:\n")?;
            let mut table = Table::new(&["WHEN", "HOOK", "EVENT", "RUN", "STATE", "DETAIL"]);
            let now = chrono::Utc::now();
            for d in &deliveries {
                table.row(vec![
                    output::age(d.claimed_at, now),
                    d.hook.clone(),
                    d.event.clone(),
                    d.run_id.as_ref().map(|r| r.to_string()).unwrap_or_default(),
                    d.state.clone(),
                    output::truncate(d.detail.as_deref().unwrap_or(""), 80),
                ]);
            }
            table.print(&mut out, ctx.style)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl TestArgs {
    async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let report = services.test_hook(&self.name, self.event).await?;
        if self.json {
            output::json(&mut std::io::stdout().lock(), &report)?;
        } else if report.delivered {
            ctx.say(
                "hooks",
                &format!("`{}` told: {}", report.hook, report.detail),
            );
        } else {
            eprintln!(
                "error: hook `{}` failed after {} attempt{}: {}",
                report.hook,
                report.attempts,
                if report.attempts == 1 { "" } else { "s" },
                report.detail
            );
        }
        Ok(if report.delivered {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    }
}

//! `cosmos inputs add | list | show | rm`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;
use serde_json::json;

use cosmos_core::InputKind;

use crate::context::Ctx;
use crate::output::{self, Table, age, truncate};
use crate::views;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Register a folder of control videos as an input set
    #[command(after_help = add_help())]
    Add(AddArgs),
    /// List input sets, newest first
    List(ListArgs),
    /// Show an input set and its files
    Show(ShowArgs),
    /// Remove an input set (the videos themselves are left alone)
    Rm(RmArgs),
}

fn add_help() -> String {
    format!(
        "Naming convention: {}.\n\nExamples:\n  cosmos inputs add renders/shot010\n  cosmos inputs add renders/shot010 --name \"shot 10\"",
        InputKind::convention()
    )
}

impl Command {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        match self {
            Command::Add(a) => a.run(ctx).await,
            Command::List(a) => a.run(ctx).await,
            Command::Show(a) => a.run(ctx).await,
            Command::Rm(a) => a.run(ctx).await,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// Folder holding the control videos
    dir: PathBuf,
    /// Name of the input set [default: the folder's name]
    #[arg(long)]
    name: Option<String>,
    /// Register even when frame counts or aspect buckets differ
    #[arg(long)]
    force: bool,
    /// Print the input set as JSON
    #[arg(long)]
    json: bool,
}

impl AddArgs {
    async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let added = services
            .inputs()
            .add(&self.dir, self.name.as_deref(), self.force)
            .await?;
        for w in &added.warnings {
            ctx.say("warning", w);
        }
        if added.reused {
            ctx.say(
                "note",
                &format!(
                    "these videos are already registered as `{}`; nothing new stored",
                    added.set.id
                ),
            );
        }
        let mut out = std::io::stdout().lock();
        if self.json {
            output::json(&mut out, &added)?;
        } else {
            views::input_set(&mut out, &added.set, None, ctx.style)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// How many to show
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

impl ListArgs {
    async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let sets = services.inputs().list(self.limit).await?;
        let mut out = std::io::stdout().lock();
        if self.json {
            output::json(&mut out, &sets)?;
            return Ok(ExitCode::SUCCESS);
        }
        let now = Utc::now();
        let mut t = Table::new(&[
            "ID", "NAME", "KINDS", "FRAMES", "SIZE", "PROMPTS", "CREATED",
        ]);
        for s in &sets {
            let kinds: Vec<&str> = s.set.files.iter().map(|f| f.kind.as_str()).collect();
            let first = s.set.files.first();
            t.row(vec![
                s.set.id.to_string(),
                truncate(&s.set.name, 30),
                kinds.join(","),
                first.map_or_else(|| "-".into(), |f| f.video.frames.to_string()),
                first.map_or_else(
                    || "-".into(),
                    |f| format!("{}x{}", f.video.width, f.video.height),
                ),
                s.prompts.to_string(),
                age(s.set.created_at, now),
            ]);
        }
        t.print(&mut out, ctx.style)?;
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Input set id (any unique prefix)
    id: String,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

impl ShowArgs {
    async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let id = services.inputs().resolve(&self.id).await?;
        let set = services.inputs().get(&id).await?;
        let mut out = std::io::stdout().lock();
        if self.json {
            output::json(&mut out, &set)?;
        } else {
            views::input_set(&mut out, &set, None, ctx.style)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Input set id (any unique prefix)
    id: String,
    /// Remove it even when prompts use it (they are detached, not deleted)
    #[arg(long)]
    force: bool,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

impl RmArgs {
    async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let id = services.inputs().resolve(&self.id).await?;
        let detached = services.inputs().delete(&id, self.force).await?;
        let mut out = std::io::stdout().lock();
        if self.json {
            output::json(
                &mut out,
                &json!({"removed": id, "detached_prompts": detached}),
            )?;
        } else {
            writeln!(out, "removed {id}")?;
            if detached > 0 {
                ctx.say(
                    "note",
                    &format!("{detached} prompt(s) no longer have an input set"),
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

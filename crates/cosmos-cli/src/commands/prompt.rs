//! `cosmos prompt create | list | show | edit | rm`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;
use serde_json::json;

use cosmos_engine::PromptFilter;
use cosmos_engine::{CreatePromptRequest, EditPromptRequest, InputsRef};

use crate::context::Ctx;
use crate::output::{self, Table, age, truncate};
use crate::views;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a prompt
    #[command(
        after_help = "Examples:\n  cosmos prompt create \"a robot arm picks up a red cup\" --inputs renders/shot010\n  cosmos prompt create \"snowy street at night\" --inputs in_01jd --negative \"blurry\" --name snow-night"
    )]
    Create(CreateArgs),
    /// List prompts, newest first
    List(ListArgs),
    /// Show a prompt, its input set and its runs
    Show(ShowArgs),
    /// Change a prompt's text, negative text, name, input set or model (runs keep what they used)
    Edit(EditArgs),
    /// Remove a prompt
    Rm(RmArgs),
    /// Rewrite a prompt with Cosmos's prompt upsampler on a target; the result becomes a new
    /// prompt linked to it
    #[command(
        after_help = "The upsampler (Pixtral-12B, upsampler_pipeline.py) reads the first frames of the prompt's\ncolour video (else its edge, segmentation or depth video) and needs a GPU of its own: it\nruns through the queue like any run. The result is stored as a child prompt\n(`cosmos prompt show` names both).\n\nExamples:\n  cosmos prompt enhance foggy-harbour\n  cosmos prompt enhance ps_01jd --target gpu1"
    )]
    Enhance(EnhanceArgs),
}

impl Command {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        match self {
            Command::Create(a) => a.run(ctx).await,
            Command::List(a) => a.run(ctx).await,
            Command::Show(a) => a.run(ctx).await,
            Command::Edit(a) => a.run(ctx).await,
            Command::Rm(a) => a.run(ctx).await,
            Command::Enhance(a) => a.run(ctx).await,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// What the video should show
    text: String,
    /// Input set (name, id or unique prefix), or a folder of control videos to register
    #[arg(long, value_name = "ID|DIR")]
    inputs: Option<String>,
    /// What the video should not show
    #[arg(long)]
    negative: Option<String>,
    /// Name [default: made from the text's meaningful words]
    #[arg(long)]
    name: Option<String>,
    /// Make a new prompt even when the same text on the same videos exists (it is reused
    /// otherwise, as `cosmos run "TEXT" DIR` does)
    #[arg(long)]
    new: bool,
    /// The model its runs use when they name none (transfer1, transfer2.5) [default: the
    /// configured default]
    #[arg(long)]
    model: Option<String>,
    /// Print the new prompt as JSON
    #[arg(long)]
    json: bool,
}

impl CreateArgs {
    async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let created = services
            .prompts()
            .create(&CreatePromptRequest {
                text: self.text.clone(),
                negative: self.negative.clone(),
                name: self.name.clone(),
                inputs: self.inputs.as_deref().map(InputsRef::parse),
                new: self.new,
                model: self.model.clone(),
            })
            .await?;
        let (prompt, added) = (created.prompt, created.added);
        if created.reused {
            ctx.say(
                "note",
                &format!(
                    "the same prompt exists already as `{}`; reusing it (--new makes another)",
                    prompt.name
                ),
            );
        }
        if let Some(added) = &added {
            for w in &added.warnings {
                ctx.say("warning", w);
            }
            ctx.say(
                "note",
                &format!(
                    "registered input set `{}` ({})",
                    added.set.id, added.set.name
                ),
            );
        }
        let mut out = std::io::stdout().lock();
        if self.json {
            output::json(&mut out, &prompt)?;
        } else {
            writeln!(out, "{}  {}", prompt.id, prompt.name)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only prompts using this input set (id prefix)
    #[arg(long, value_name = "ID")]
    inputs: Option<String>,
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
        let input_set_id = match &self.inputs {
            Some(text) => Some(services.inputs().resolve(text).await?),
            None => None,
        };
        let prompts = services
            .prompts()
            .list(&PromptFilter {
                input_set_id,
                limit: self.limit,
                ..Default::default()
            })
            .await?;
        let mut out = std::io::stdout().lock();
        if self.json {
            output::json(&mut out, &prompts)?;
            return Ok(ExitCode::SUCCESS);
        }
        let now = Utc::now();
        let mut t = Table::new(&["ID", "NAME", "RUNS", "INPUTS", "CREATED", "TEXT"]);
        for p in &prompts {
            t.row(vec![
                p.prompt.id.to_string(),
                truncate(&p.prompt.name, 32),
                p.runs.to_string(),
                p.prompt
                    .input_set_id
                    .as_ref()
                    .map_or_else(|| "-".into(), ToString::to_string),
                age(p.prompt.created_at, now),
                truncate(&p.prompt.text, 60),
            ]);
        }
        t.print(&mut out, ctx.style)?;
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Prompt id (any unique prefix)
    id: String,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

impl ShowArgs {
    async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let id = services.prompts().resolve(&self.id).await?;
        show_prompt(ctx, &services, &id, self.json).await
    }
}

/// Most runs listed under a prompt.
const RUNS_SHOWN: u32 = 20;

pub async fn show_prompt(
    ctx: &Ctx,
    services: &cosmos_engine::Services,
    id: &cosmos_core::PromptId,
    as_json: bool,
) -> Result<ExitCode> {
    let cosmos_engine::PromptDetail {
        prompt,
        input_set: set,
        runs,
        run_count: total,
        enhanced,
    } = services.prompts().detail(id, RUNS_SHOWN).await?;
    let mut out = std::io::stdout().lock();
    if as_json {
        output::json(
            &mut out,
            &json!({"prompt": prompt, "input_set": set, "runs": runs, "run_count": total, "enhanced": enhanced}),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    views::prompt(&mut out, &prompt, ctx.style)?;
    for child in &enhanced {
        views::field(
            &mut out,
            ctx.style,
            "enhanced as",
            &format!("{} ({})", child.id, child.name),
        )?;
    }
    if let Some(set) = &set {
        writeln!(out)?;
        views::input_set(&mut out, set, None, ctx.style)?;
    }
    writeln!(out)?;
    if runs.is_empty() {
        writeln!(out, "no runs yet: `cosmos run {}`", prompt.id)?;
    } else {
        views::runs_table(&mut out, &runs, ctx.style)?;
        if total > runs.len() as u64 {
            writeln!(
                out,
                "… and {} more: `cosmos list --prompt {}`",
                total - runs.len() as u64,
                prompt.id
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// Prompt id (any unique prefix)
    id: String,
    /// New text
    #[arg(long)]
    text: Option<String>,
    /// New negative text ("" removes it)
    #[arg(long)]
    negative: Option<String>,
    /// New name
    #[arg(long)]
    name: Option<String>,
    /// New input set: id (any unique prefix) or a folder to register
    #[arg(long, value_name = "ID|DIR", conflicts_with = "no_inputs")]
    inputs: Option<String>,
    /// Detach the input set
    #[arg(long)]
    no_inputs: bool,
    /// The model its runs use when they name none (transfer1, transfer2.5)
    #[arg(long, conflicts_with = "no_model")]
    model: Option<String>,
    /// Its runs use the configured default model again
    #[arg(long)]
    no_model: bool,
    /// Print the prompt as JSON
    #[arg(long)]
    json: bool,
}

impl EditArgs {
    async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let id = services.prompts().resolve(&self.id).await?;
        let inputs = if self.no_inputs {
            Some(None)
        } else {
            self.inputs.as_deref().map(|i| Some(InputsRef::parse(i)))
        };
        let prompt = services
            .prompts()
            .edit(
                &id,
                &EditPromptRequest {
                    text: self.text.clone(),
                    negative: self.negative.clone(),
                    name: self.name.clone(),
                    inputs,
                    model: if self.no_model {
                        Some(String::new())
                    } else {
                        self.model.clone()
                    },
                },
            )
            .await?;
        let mut out = std::io::stdout().lock();
        if self.json {
            output::json(&mut out, &prompt)?;
        } else {
            views::prompt(&mut out, &prompt, ctx.style)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Prompt id (any unique prefix)
    id: String,
    /// Also remove the prompt's runs
    #[arg(long)]
    force: bool,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

impl RmArgs {
    async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let id = services.prompts().resolve(&self.id).await?;
        let runs = services.prompts().delete(&id, self.force).await?;
        let mut out = std::io::stdout().lock();
        if self.json {
            output::json(&mut out, &json!({"removed": id, "removed_runs": runs}))?;
        } else {
            writeln!(out, "removed {id}")?;
            if runs > 0 {
                ctx.say("note", &format!("also removed {runs} run(s)"));
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Debug, clap::Args)]
pub struct EnhanceArgs {
    /// The prompt: id (any unique prefix) or name
    prompt: String,
    /// The target to run on [default: wherever a GPU slot is free]
    #[arg(long, short = 't')]
    target: Option<String>,
    /// Queue order: higher runs first
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// Print the new prompt as JSON
    #[arg(long)]
    json: bool,
}

impl EnhanceArgs {
    async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let run = services
            .prompts()
            .enhance(&cosmos_engine::EnhanceRequest {
                prompt: self.prompt.clone(),
                target: self.target.clone(),
                priority: self.priority,
            })
            .await?;
        ctx.say("enhance", &format!("run {} queued", run.id));
        let ids = [run.id.clone()];
        let ended = crate::live::see_through(&services, &ids, self.json, true).await?;
        let run = match ended {
            crate::live::Ended::Finished(mut runs) if !runs.is_empty() => runs.remove(0),
            _ => {
                eprintln!(
                    "detached: run {} continues; `cosmos show {}` has its result",
                    run.id, run.id
                );
                return Ok(ExitCode::SUCCESS);
            }
        };
        let Some(child) = services.prompts().enhanced_by(&run).await? else {
            return Ok(crate::live::report(&run));
        };
        let mut out = std::io::stdout().lock();
        if self.json {
            output::json(&mut out, &child)?;
        } else {
            views::prompt(&mut out, &child, ctx.style)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

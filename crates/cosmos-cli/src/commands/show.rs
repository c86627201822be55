//! `cosmos show ID`: a run, prompt or input set, whichever the id (prefix) names.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use cosmos_core::IdKind;
use cosmos_engine::Resolved;

use crate::commands::prompt::show_prompt;
use crate::context::Ctx;
use crate::output;
use crate::views;

/// Show a run, prompt or input set by id (any unique prefix)
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  cosmos show rs_01jd3k\n  cosmos show ps_01jd\n  cosmos show 01jd3k4w   # any kind"
)]
pub struct Args {
    /// Id or unique prefix (`rs_…` run, `ps_…` prompt, `in_…` input set, or bare), or a
    /// prompt's name
    id: String,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

impl Args {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let kinds = [IdKind::Run, IdKind::Prompt, IdKind::InputSet];
        // A prompt's exact name names that prompt.
        if let Some(p) = services.prompts().named(self.id.trim()).await? {
            return show_prompt(ctx, &services, &p.id, self.json).await;
        }
        let mut out = std::io::stdout().lock();
        match services.resolve(&self.id, &kinds).await? {
            Resolved::Run(id) => {
                let run = services.runs().get(&id).await?;
                let events = services.runs().events(&id).await?;
                if self.json {
                    output::json(&mut out, &json!({"run": run, "events": events}))?;
                } else {
                    views::run(&mut out, &run, &events, ctx.style)?;
                }
            }
            Resolved::Prompt(id) => {
                drop(out);
                return show_prompt(ctx, &services, &id, self.json).await;
            }
            Resolved::InputSet(id) => {
                let set = services.inputs().get(&id).await?;
                if self.json {
                    output::json(&mut out, &set)?;
                } else {
                    views::input_set(&mut out, &set, None, ctx.style)?;
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

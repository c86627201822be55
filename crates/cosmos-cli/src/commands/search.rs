//! `cosmos search QUERY`: full-text search over prompt names, texts and negative texts.

use std::process::ExitCode;

use anyhow::Result;

use crate::context::Ctx;
use crate::output::{self, Table};

/// Full-text search over prompts
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Query syntax (SQLite FTS5): words (all must match), \"exact phrase\", prefix*,
AND / OR / NOT, parentheses, and name:/text:/negative: to search one field.
Words are matched by stem: `driving` finds `drives`.

Examples:
  cosmos search harbour fog
  cosmos search '\"robot arm\" AND (kitchen OR warehouse)'
  cosmos search 'snow* NOT night'"
)]
pub struct Args {
    /// The query (several arguments are joined with spaces)
    #[arg(required = true, num_args = 1..)]
    query: Vec<String>,
    /// How many results
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

impl Args {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let query = self.query.join(" ");
        let marks = if ctx.style.color && !self.json {
            ("\x1b[1;33m", "\x1b[0m")
        } else {
            ("[", "]")
        };
        let services = ctx.services().await?;
        let hits = services.prompts().search(&query, self.limit, marks).await?;
        let mut out = std::io::stdout().lock();
        if self.json {
            output::json(&mut out, &hits)?;
        } else if hits.is_empty() {
            ctx.say("note", &format!("no prompt matches `{query}`"));
        } else {
            let mut t = Table::new(&["ID", "NAME", "MATCH"]);
            for h in &hits {
                t.row(vec![
                    h.prompt.id.to_string(),
                    output::truncate(&h.prompt.name, 32),
                    h.snippet.replace('\n', " "),
                ]);
            }
            t.print(&mut out, ctx.style)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

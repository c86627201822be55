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
        // For people, matches are marked with characters no prompt can hold (private-use
        // code points), so the prompt's own control characters can be shown safely and the
        // marks become colour or brackets afterwards.
        const OPEN: &str = "\u{e000}";
        const CLOSE: &str = "\u{e001}";
        let (open, close) = if ctx.style.color {
            ("\x1b[1;33m", "\x1b[0m")
        } else {
            ("[", "]")
        };
        let marks = if self.json { ("[", "]") } else { (OPEN, CLOSE) };
        let services = ctx.services().await?;
        let hits = services.prompts().search(&query, self.limit, marks).await?;
        let mut out = std::io::stdout().lock();
        if self.json {
            output::json(&mut out, &hits)?;
        } else if hits.is_empty() {
            ctx.say("note", &format!("no prompt matches `{query}`"));
        } else {
            // Enhanced prompts name the prompt they came from.
            let lineage = hits.iter().any(|h| h.prompt.parent_id.is_some());
            let mut t = if lineage {
                Table::new(&["ID", "NAME", "ENHANCED FROM", "MATCH"])
            } else {
                Table::new(&["ID", "NAME", "MATCH"])
            };
            for h in &hits {
                let mut row = vec![
                    h.prompt.id.to_string(),
                    output::truncate(&h.prompt.name, 32),
                ];
                if lineage {
                    row.push(
                        h.prompt
                            .parent_id
                            .as_ref()
                            .map_or_else(|| "-".to_owned(), ToString::to_string),
                    );
                }
                row.push(
                    output::truncate(&output::visible(&h.snippet, 0), 1000)
                        .replace(OPEN, open)
                        .replace(CLOSE, close),
                );
                t.row(row);
            }
            t.print(&mut out, ctx.style)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

//! `cosmos export`: chosen outputs with their control videos and a manifest, for a
//! training-data pipeline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use cosmos_engine::{ExportRequest, RunFilter};

use crate::commands::list::prompt_and_since;
use crate::context::Ctx;
use crate::output;

/// Copy (or hard-link) chosen outputs and their control videos into a folder, with a manifest
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Only succeeded runs are exported. The folder gets outputs/<run>/…, controls/<input set>/…,\nmanifest.jsonl and manifest.csv (schema: docs/EXPORT.md). It must be new or empty unless\n--force replaces it; the export is built beside it and renamed into place.\n\nExamples:\n  cosmos export dataset/ --rating 4\n  cosmos export picks/ --favourite --link\n  cosmos export harbour/ --prompt foggy-harbour --since 1w"
)]
pub struct Args {
    /// The folder to write (new or empty)
    dir: PathBuf,
    /// Only runs rated at least N (1–5)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=5))]
    rating: Option<u8>,
    /// Only favourites
    #[arg(long)]
    favourite: bool,
    /// Only runs of this prompt (id prefix or name)
    #[arg(long)]
    prompt: Option<String>,
    /// Only runs created since: 30m, 2h, 3d, 1w, 2026-11-01 or an RFC 3339 time
    #[arg(long)]
    since: Option<String>,
    /// Hard-link the files instead of copying them (copied where a link cannot be made)
    #[arg(long)]
    link: bool,
    /// Replace the folder if it is not empty
    #[arg(long)]
    force: bool,
    /// Print what was written as JSON
    #[arg(long)]
    json: bool,
}

impl Args {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let (prompt_id, since) =
            prompt_and_since(&services, self.prompt.as_deref(), self.since.as_deref()).await?;
        let report = services
            .runs()
            .export(ExportRequest {
                dir: self.dir.clone(),
                filter: RunFilter {
                    prompt_id,
                    since,
                    min_rating: self.rating,
                    favourite: self.favourite,
                    ..Default::default()
                },
                link: self.link,
                force: self.force,
            })
            .await?;
        if self.json {
            output::json(&mut std::io::stdout().lock(), &report)?;
        } else {
            let mib = report.bytes as f64 / (1024.0 * 1024.0);
            let how = if self.link {
                format!(", {} hard-linked", report.linked)
            } else {
                String::new()
            };
            ctx.say(
                "export",
                &format!(
                    "{} runs, {} files ({mib:.1} MiB{how}), each checked against its sha256",
                    report.runs, report.files
                ),
            );
            println!("{}", report.manifest_jsonl);
            println!("{}", report.manifest_csv);
        }
        Ok(ExitCode::SUCCESS)
    }
}

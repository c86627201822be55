//! `cosmos rate`: rate runs 1–5 and mark favourites.

use std::process::ExitCode;

use anyhow::{Result, bail};

use cosmos_engine::RateRequest;

use crate::context::Ctx;
use crate::output;

/// Rate runs (1–5, 0 clears) and mark or unmark them as favourites
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  cosmos rate rs_01jd3k 4\n  cosmos rate rs_01jd3k rs_01jd3m 5 --favourite\n  cosmos rate rs_01jd3k --unfavourite\n  cosmos list --rating 4 --favourite"
)]
pub struct Args {
    /// The runs (ids or unique prefixes), then the rating 1–5 (0 clears it); the rating may be
    /// left out when only --favourite/--unfavourite is given
    #[arg(required = true, value_name = "RUN… [N]")]
    args: Vec<String>,
    /// Mark them as favourites
    #[arg(long, conflicts_with = "unfavourite")]
    favourite: bool,
    /// Unmark them as favourites
    #[arg(long)]
    unfavourite: bool,
    /// Print the runs as JSON
    #[arg(long)]
    json: bool,
}

impl Args {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let mut runs: &[String] = &self.args;
        let mut rating = None;
        if let [init @ .., last] = runs
            && last.len() == 1
            && let Ok(n) = last.parse::<u8>()
        {
            rating = Some(n);
            runs = init;
        }
        let favourite = match (self.favourite, self.unfavourite) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        if runs.is_empty() {
            bail!("name the runs to rate: `cosmos rate RUN… N`");
        }
        if rating.is_none() && favourite.is_none() {
            bail!(
                "give a rating after the runs (1 to 5, 0 clears it) or --favourite/--unfavourite: `cosmos rate {} 4`",
                runs.join(" ")
            );
        }
        let services = ctx.services().await?;
        let mut ids = Vec::with_capacity(runs.len());
        for r in runs {
            ids.push(services.runs().resolve(r).await?);
        }
        let rated = services
            .runs()
            .rate(&ids, &RateRequest { rating, favourite })
            .await?;
        if self.json {
            output::json(&mut std::io::stdout().lock(), &rated)?;
        } else {
            for r in &rated {
                let stars = r
                    .rating
                    .map_or_else(|| "unrated".into(), |n| "★".repeat(n.into()));
                let fav = if r.favourite { " · favourite" } else { "" };
                ctx.say("rate", &format!("{} {stars}{fav}", r.id));
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

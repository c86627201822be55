//! `cosmos list`: recent runs.

use std::process::ExitCode;

use anyhow::{Result, bail};
use chrono::{DateTime, Duration, Local, NaiveDate, TimeZone, Utc};

use cosmos_core::RunStatus;
use cosmos_engine::RunFilter;

use crate::context::Ctx;
use crate::output;
use crate::views;

/// List recent runs
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  cosmos list\n  cosmos list --status failed,cancelled --since 2d\n  cosmos list --prompt foggy-harbour --limit 100 --json\n  cosmos list --rating 4 --favourite"
)]
pub struct Args {
    /// Only runs in these states (comma-separated): queued, staging, starting, running,
    /// collecting, succeeded, failed, cancelled
    #[arg(long, value_delimiter = ',')]
    status: Vec<RunStatus>,
    /// Only runs of this prompt (id prefix or name)
    #[arg(long, value_name = "ID|NAME")]
    prompt: Option<String>,
    /// Only runs created since: 30m, 2h, 3d, 1w, 2026-11-01 or an RFC 3339 time
    #[arg(long)]
    since: Option<String>,
    /// Only runs rated at least N (1–5)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=5))]
    rating: Option<u8>,
    /// Only favourites
    #[arg(long)]
    favourite: bool,
    /// How many to show (the newest)
    #[arg(long, default_value_t = 20, conflicts_with = "all")]
    limit: u32,
    /// Show every matching run
    #[arg(long)]
    all: bool,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

/// `--prompt` (an id prefix or a name) and `--since` as a run filter's parts.
pub async fn prompt_and_since(
    services: &cosmos_engine::Services,
    prompt: Option<&str>,
    since: Option<&str>,
) -> Result<(Option<cosmos_core::PromptId>, Option<DateTime<Utc>>)> {
    let since = since.map(|s| parse_since(s, Utc::now())).transpose()?;
    let prompt_id = match prompt {
        None => None,
        Some(p) => Some(services.prompts().resolve(p).await?),
    };
    Ok((prompt_id, since))
}

/// Parses `--since`.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let t = text.trim();
    if let Some(unit) = t.chars().last().filter(|c| "smhdw".contains(*c))
        && let Ok(n) = t[..t.len() - 1].parse::<i64>()
    {
        let d = match unit {
            's' => Duration::seconds(n),
            'm' => Duration::minutes(n),
            'h' => Duration::hours(n),
            'd' => Duration::days(n),
            _ => Duration::weeks(n),
        };
        return Ok(now - d);
    }
    if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d")
        && let Some(midnight) = date.and_hms_opt(0, 0, 0)
        && let Some(local) = Local.from_local_datetime(&midnight).earliest()
    {
        return Ok(local.with_timezone(&Utc));
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        return Ok(at.with_timezone(&Utc));
    }
    bail!(
        "`--since {text}` is not understood: use 30m, 2h, 3d, 1w, a date (2026-11-01) or an RFC 3339 time"
    )
}

impl Args {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let services = ctx.services().await?;
        let (prompt_id, since) =
            prompt_and_since(&services, self.prompt.as_deref(), self.since.as_deref()).await?;
        let filter = RunFilter {
            statuses: self.status.clone(),
            prompt_id,
            since,
            min_rating: self.rating,
            favourite: self.favourite,
            limit: if self.all { u32::MAX } else { self.limit },
            ..Default::default()
        };
        let runs = services.runs().list(&filter).await?;
        let mut out = std::io::stdout().lock();
        if self.json {
            output::json(&mut out, &runs)?;
        } else if runs.is_empty() {
            ctx.say("note", "no runs match");
        } else {
            views::runs_table(&mut out, &runs, ctx.style)?;
            if runs.len() as u64 == u64::from(filter.limit) {
                let total = services.runs().count(&filter).await?;
                if total > runs.len() as u64 {
                    ctx.say(
                        "note",
                        &format!(
                            "{} of {total} shown, newest first: --limit N or --all for more",
                            runs.len()
                        ),
                    );
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let now = Utc::now();
        assert_eq!(
            parse_since("30m", now).unwrap(),
            now - Duration::minutes(30)
        );
        assert_eq!(parse_since("2h", now).unwrap(), now - Duration::hours(2));
        assert_eq!(parse_since("1w", now).unwrap(), now - Duration::weeks(1));
        let at = parse_since("2026-11-24T10:00:00Z", now).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-11-24T10:00:00+00:00");
        assert!(parse_since("2026-11-01", now).is_ok());
        for bad in ["yesterday", "3x", "", "h"] {
            let err = parse_since(bad, now).unwrap_err().to_string();
            assert!(err.contains("is not understood"), "{bad}: {err}");
        }
    }
}

//! `cosmos init`: write the commented config file and create the database.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::config::default_file;
use crate::context::Ctx;

/// Write a commented config file and create the database
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  cosmos init\n  COSMOS_HOME=/tmp/cosmos-demo cosmos init")]
pub struct Args {
    /// Replace an existing config file with the annotated defaults
    #[arg(long)]
    force: bool,
}

impl Args {
    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let path = &ctx.settings.paths.config;
        if path.exists() && !self.force {
            ctx.say(
                "note",
                &format!(
                    "keeping the existing config `{}` (--force replaces it)",
                    path.display()
                ),
            );
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create `{}`", dir.display()))?;
            }
            // Write to a temporary name, then rename: never a half-written config.
            let tmp = path.with_extension("toml.tmp");
            // Owner-only: it is where `[secrets]` go (a readable one holding a secret is
            // refused when read).
            {
                use std::io::Write as _;
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .with_context(|| format!("cannot write `{}`", tmp.display()))?;
                f.write_all(default_file().as_bytes())
                    .with_context(|| format!("cannot write `{}`", tmp.display()))?;
            }
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot write `{}`", path.display()))?;
        }
        if !ctx.settings.paths.data_dir.exists() {
            std::fs::create_dir_all(&ctx.settings.paths.data_dir).with_context(|| {
                format!("cannot create `{}`", ctx.settings.paths.data_dir.display())
            })?;
        }
        let db = ctx.settings.database();
        if db.is_dir() {
            bail!(
                "`{}` is a folder, not a database file: set `store.database` to a file path",
                db.display()
            );
        }
        let services = ctx.services().await?;
        drop(services);
        let mut out = std::io::stdout().lock();
        writeln!(out, "config    {}", path.display())?;
        writeln!(out, "database  {}", db.display())?;
        Ok(ExitCode::SUCCESS)
    }
}

//! `cosmos config show | default | path`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use crate::config::default_file;
use crate::context::Ctx;
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the configuration in force (file + COSMOS_* overrides), secrets redacted
    Show(ShowArgs),
    /// Print the annotated reference config file with every key and its default
    Default(DefaultArgs),
    /// Print where the config file and the data live
    Path(PathArgs),
}

impl Command {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        match self {
            Command::Show(a) => a.run(ctx),
            Command::Default(a) => a.run(),
            Command::Path(a) => a.run(ctx),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Print JSON instead of TOML
    #[arg(long)]
    json: bool,
}

impl ShowArgs {
    fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let text = ctx.settings.redacted_toml()?;
        let mut out = std::io::stdout().lock();
        if self.json {
            let table: toml::Table = toml::from_str(&text)?;
            output::json(&mut out, &table)?;
        } else {
            let source = if ctx.settings.config_loaded {
                format!("# from {}", ctx.settings.paths.config.display())
            } else {
                format!(
                    "# no config file at {}: defaults",
                    ctx.settings.paths.config.display()
                )
            };
            writeln!(out, "{source} and COSMOS_* environment overrides\n{text}")?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Debug, clap::Args)]
pub struct DefaultArgs {}

impl DefaultArgs {
    pub fn run(&self) -> Result<ExitCode> {
        write!(std::io::stdout().lock(), "{}", default_file())?;
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Debug, clap::Args)]
pub struct PathArgs {
    /// Print JSON with the config file, data directory and database
    #[arg(long)]
    json: bool,
}

impl PathArgs {
    fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let mut out = std::io::stdout().lock();
        if self.json {
            let paths = &ctx.settings.paths;
            output::json(
                &mut out,
                &json!({"config": paths.config, "data_dir": paths.data_dir, "database": ctx.settings.database()}),
            )?;
        } else {
            writeln!(out, "{}", ctx.settings.paths.config.display())?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

//! `cosmos completions SHELL`.

use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Print a shell completion script
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  cosmos completions bash > ~/.local/share/bash-completion/completions/cosmos\n  cosmos completions zsh > ~/.zfunc/_cosmos\n  cosmos completions fish > ~/.config/fish/completions/cosmos.fish"
)]
pub struct Args {
    /// The shell to complete for
    shell: Shell,
}

impl Args {
    pub fn run(&self) -> Result<ExitCode> {
        clap_complete::generate(
            self.shell,
            &mut Cli::command(),
            "cosmos",
            &mut std::io::stdout(),
        );
        Ok(ExitCode::SUCCESS)
    }
}

//! `cosmos secret set | list | rm`: secrets kept in the OS keyring where there is one (the
//! Secret Service on the session bus), else in an owner-only file beside the config
//! (`secrets.toml`); never in the database, never on a command line. A value is read from a
//! prompt that does not echo, or from stdin.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;

use crate::config::keyring::Stored;
use crate::config::load::{SecretSource, secret_sources, write_secret};
use crate::context::Ctx;
use crate::output;

/// The secrets cosmos knows, with what each is for.
pub const NAMES: &[(&str, &str)] = &[(
    "hf_token",
    "Hugging Face token: `cosmos target setup` downloads the checkpoints with it",
)];

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a secret (read from a prompt, or from stdin; never from the command line)
    Set(NameArgs),
    /// List the secrets that are set and where each comes from (never their values)
    List(ListArgs),
    /// Remove a secret from the secrets file
    Rm(NameArgs),
}

#[derive(Debug, clap::Args)]
pub struct NameArgs {
    /// The secret's name: hf_token
    name: String,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print JSON
    #[arg(long)]
    json: bool,
}

fn known(name: &str) -> Result<()> {
    if NAMES.iter().any(|(n, _)| *n == name) {
        return Ok(());
    }
    let names: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
    bail!(
        "cosmos keeps no secret named `{name}`: it knows {}",
        names.join(", ")
    )
}

/// Reads a line without echoing it when stdin is a terminal.
fn read_hidden(prompt: &str) -> Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut text = String::new();
        stdin
            .lock()
            .read_to_string(&mut text)
            .context("cannot read the secret from stdin")?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_owned());
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let fd = std::io::stdin();
    let before = rustix::termios::tcgetattr(&fd).context("cannot read the terminal's mode")?;
    let mut quiet = before.clone();
    quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
    rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &quiet)
        .context("cannot turn the terminal's echo off")?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &before);
    eprintln!();
    read.context("cannot read the secret")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

impl Command {
    pub fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let mut out = std::io::stdout().lock();
        let file = crate::config::load::secrets_file(&ctx.settings.paths.config);
        match self {
            Command::Set(a) => {
                known(&a.name)?;
                let value = read_hidden(&format!("{}: ", a.name))?;
                if value.trim().is_empty() {
                    bail!(
                        "no value given: type it at the prompt, or pipe it in (`… | cosmos secret set {}`)",
                        a.name
                    );
                }
                if value.contains(['\n', '\r']) {
                    bail!("a secret is one line; the value given has several");
                }
                match ctx.keyring().set(&a.name, &value) {
                    Stored::Yes => {
                        // One place for it: an older copy in the file goes.
                        write_secret(&file, &a.name, None)?;
                        ctx.say(
                            "note",
                            &format!("stored {} in the OS keyring (Secret Service)", a.name),
                        );
                    }
                    other => {
                        if let Stored::Unavailable(why) = other {
                            tracing::debug!("no OS keyring: {why}");
                        }
                        write_secret(&file, &a.name, Some(&value))?;
                        ctx.say(
                            "note",
                            &format!(
                                "stored {} in {} (owner-only; no OS keyring here)",
                                a.name,
                                file.display()
                            ),
                        );
                    }
                }
                let env = crate::config::env_name("secrets", &a.name);
                if std::env::var_os(&env).is_some() {
                    ctx.say(
                        "warning",
                        &format!("{env} is set in this environment and wins over the file"),
                    );
                }
                writeln!(out, "{}", a.name)?;
            }
            Command::List(a) => {
                let mut sources = secret_sources(&ctx.settings.paths.config)?;
                // The keyring comes after the environment and before the files.
                for (name, _) in NAMES {
                    if let Ok(Some(_)) = ctx.keyring().get(name) {
                        let from_env = ctx.settings.secrets_from_env.iter().any(|k| k == name);
                        let keyring = "the OS keyring (Secret Service)".to_owned();
                        match sources.iter_mut().find(|s| s.name == *name) {
                            Some(s) if !from_env => s.source = keyring,
                            Some(_) => {}
                            None => sources.push(SecretSource {
                                name: (*name).to_owned(),
                                source: keyring,
                            }),
                        }
                    }
                }
                if a.json {
                    output::json(&mut out, &sources)?;
                } else if sources.is_empty() {
                    ctx.say(
                        "note",
                        "no secrets set: `cosmos secret set hf_token` stores the Hugging Face token",
                    );
                } else {
                    for SecretSource { name, source } in &sources {
                        writeln!(out, "{name:<10} {source}")?;
                    }
                }
            }
            Command::Rm(a) => {
                known(&a.name)?;
                let in_keyring = matches!(ctx.keyring().delete(&a.name), Stored::Yes);
                let in_file = file.exists() && write_secret(&file, &a.name, None)?;
                if !in_keyring && !in_file {
                    bail!(
                        "{} is neither in the OS keyring nor in {}",
                        a.name,
                        file.display()
                    );
                }
                writeln!(out, "{}", a.name)?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

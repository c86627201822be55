//! One module per command; dispatch is one line per variant.

pub mod completions;
pub mod config;
pub mod dev;
pub mod export;
pub mod hooks;
pub mod init;
pub mod inputs;
pub mod list;
pub mod logs;
pub mod prompt;
pub mod queue;
pub mod quickstart;
pub mod rate;
pub mod run;
pub mod search;
pub mod secret;
pub mod serve;
pub mod show;
pub mod status;
pub mod target;
pub mod upscale;

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::config::Settings;
use crate::context::Ctx;

pub async fn dispatch(cli: Cli, env: &BTreeMap<String, String>) -> Result<ExitCode> {
    // These need no configuration, so a broken config file cannot stop them.
    match &cli.command {
        Command::Completions(args) => return args.run(),
        Command::Config(config::Command::Default(args)) => return args.run(),
        _ => {}
    }
    let ctx = Ctx::new(Settings::load(env, cli.config.as_deref())?, env);
    match cli.command {
        Command::Init(args) => args.run(&ctx).await,
        Command::Config(cmd) => cmd.run(&ctx),
        Command::Inputs(cmd) => cmd.run(&ctx).await,
        Command::Prompt(cmd) => cmd.run(&ctx).await,
        Command::Run(args) => args.run(&ctx).await,
        Command::Worker(args) => args.run(&ctx).await,
        Command::Serve(args) => args.run(&ctx).await,
        Command::Queue(cmd) => cmd.run(&ctx).await,
        Command::Retry(args) => args.run(&ctx).await,
        Command::List(args) => args.run(&ctx).await,
        Command::Quickstart(args) => args.run(&ctx).await,
        Command::Target(cmd) => cmd.run(&ctx).await,
        Command::Logs(args) => args.run(&ctx).await,
        Command::Kill(args) => args.run(&ctx).await,
        Command::Rate(args) => args.run(&ctx).await,
        Command::Export(args) => args.run(&ctx).await,
        Command::Upscale(args) => args.run(&ctx).await,
        Command::Status(args) => args.run(&ctx).await,
        Command::Show(args) => args.run(&ctx).await,
        Command::Search(args) => args.run(&ctx).await,
        Command::Secret(cmd) => cmd.run(&ctx),
        Command::Hooks(cmd) => cmd.run(&ctx).await,
        Command::Dev(cmd) => cmd.run(&ctx).await,
        Command::Completions(args) => args.run(),
    }
}

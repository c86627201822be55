//! The `cosmos` binary: parse, set up logging, run the command, map the result to an exit code.

mod cli;
mod commands;
mod config;
mod context;
mod error;
mod live;
mod output;
mod views;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn init_logging(verbose: u8, env: &BTreeMap<String, String>) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // sqlx's own notes (slow statements) are diagnostics: shown from -v on.
    let default = if verbose == 0 {
        format!("{default},sqlx=error")
    } else {
        default.to_owned()
    };
    let filter = env
        .get("COSMOS_LOG")
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && env.get("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let env: BTreeMap<String, String> = std::env::vars().collect();
    init_logging(cli.verbose, &env);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // A command ends when the hooks it set off have been told (each within its own limits).
    let done = runtime.block_on(async {
        let done = commands::dispatch(cli, &env).await;
        cosmos_engine::hooks_settled(std::time::Duration::from_secs(600)).await;
        done
    });
    match done {
        Ok(code) => code,
        Err(err) if error::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: {}", error::message(&err));
            if let Some(hint) = error::hint(&err) {
                let _ = writeln!(stderr, "hint: {hint}");
            }
            ExitCode::from(2)
        }
    }
}

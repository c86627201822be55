//! `cosmos serve`: the HTTP API (REST, live events, metrics) over the engine, with a worker
//! in the same process unless `--no-worker`. Loopback needs no token; any other address
//! needs one (`--token-file`, or `--new-token`, which prints one once and keeps its hash).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use cosmos_core::sha256::{hex_digest, to_hex};
use cosmos_web::{Access, ServeConfig};

use crate::commands::queue::{drive_worker, stop_on_signals};
use crate::config::load::write_private;
use crate::context::Ctx;

/// Serve the HTTP API (and run a worker) until Ctrl-C or SIGTERM
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  cosmos serve                                   # http://127.0.0.1:8080, no token, with a worker
  cosmos serve --bind 0.0.0.0:8080 --new-token   # reachable from the network: prints a token once
  cosmos serve --bind 10.0.0.5:8080 --token-file ~/.config/cosmos/api-token --no-worker")]
pub struct Args {
    /// The address to listen on; anything but loopback needs an access token
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    bind: SocketAddr,
    /// Serve the API only: leave the queue to `cosmos worker` processes
    #[arg(long)]
    no_worker: bool,
    /// A file holding the access token (16 characters or more)
    #[arg(long, value_name = "FILE", conflicts_with = "new_token")]
    token_file: Option<PathBuf>,
    /// Make a new access token, print it once, and keep only its hash (replaces the last)
    #[arg(long)]
    new_token: bool,
    /// Another name the server is reached by (checked against the `Host` header)
    #[arg(long = "host", value_name = "NAME")]
    hosts: Vec<String>,
    /// A web origin allowed to call the API from a browser (CORS), e.g. http://notebook:8888
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// `full` re-hashes every input already on a target before a run uses it; `stamp`
    /// (the default) only those that changed since they were verified
    #[arg(long, value_name = "stamp|full", value_parser = ["stamp", "full"])]
    verify_inputs: Option<String>,
    /// How often an idle WebSocket gets a heartbeat, in milliseconds
    #[arg(long, default_value_t = 15_000, hide = true)]
    heartbeat_ms: u64,
    /// Events a WebSocket client may fall behind before it is told to resync
    #[arg(long, default_value_t = 4096, hide = true)]
    client_buffer: usize,
    /// The kernel send buffer of each connection, in bytes
    #[arg(long, default_value_t = 256 * 1024, hide = true)]
    socket_send_buffer: usize,
}

/// Where the hash of a generated token is kept.
fn token_hash_file(data_dir: &Path) -> PathBuf {
    data_dir.join("serve-token.sha256")
}

/// A stored hash as written: 64 lowercase hex digits.
fn parse_hash(text: &str) -> Option<String> {
    let text = text.trim();
    (text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| text.to_owned())
}

impl Args {
    /// The hash of the token in force, if any.
    fn token_hash(&self, data_dir: &Path) -> Result<Option<String>> {
        if let Some(file) = &self.token_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the token file `{}`", file.display()))?;
            let token = text.trim();
            if token.len() < 16 {
                bail!(
                    "the token in `{}` is too short: use 16 characters or more (or --new-token to make one)",
                    file.display()
                );
            }
            return Ok(Some(hex_digest(token.as_bytes())));
        }
        let stored = token_hash_file(data_dir);
        if self.new_token {
            let token = to_hex(&rand::random::<[u8; 32]>());
            let hash = hex_digest(token.as_bytes());
            write_private(&stored, format!("{hash}\n").as_bytes())?;
            eprintln!("access token (shown once; only its hash is kept): {token}");
            return Ok(Some(hash));
        }
        if self.bind.ip().is_loopback() {
            return Ok(None);
        }
        match std::fs::read_to_string(&stored) {
            Ok(text) => parse_hash(&text).map(Some).with_context(|| {
                format!(
                    "`{}` is damaged: start once with --new-token to replace it",
                    stored.display()
                )
            }),
            Err(_) => bail!(
                "binding {} (not loopback) needs an access token: pass --token-file FILE, or --new-token to make one",
                self.bind
            ),
        }
    }

    pub async fn run(&self, ctx: &Ctx) -> Result<ExitCode> {
        let data_dir = ctx.settings.paths.data_dir.clone();
        let token_hash = self.token_hash(&data_dir)?;
        let services = ctx
            .services_verifying(self.verify_inputs.as_deref())
            .await?;
        let listener = tokio::net::TcpListener::bind(self.bind)
            .await
            .with_context(|| format!("cannot listen on {}", self.bind))?;
        let bound = listener.local_addr()?;
        let guarded = token_hash.is_some();
        let access = Access::new(bound, token_hash, &self.hosts, self.cors_origins.clone());
        let mut config = ServeConfig::new(
            data_dir,
            access,
            ctx.settings.config.defaults.clone(),
            ctx.launch_defaults(),
        );
        config.heartbeat = Duration::from_millis(self.heartbeat_ms.max(10));
        config.client_buffer = self.client_buffer.max(1);
        config.socket_send_buffer = self.socket_send_buffer.max(4096);
        let stopped = stop_on_signals(
            "serve: stopping; running models keep running and another driver takes them over",
        );
        eprintln!(
            "serving http://{bound}/api/v1 ({}){}",
            if guarded {
                "access token required"
            } else {
                "loopback, no token"
            },
            if self.no_worker {
                "; no worker: `cosmos worker` runs the queue"
            } else {
                "; a worker runs the queue"
            }
        );
        let server = cosmos_web::serve(listener, services.clone(), config, stopped.clone());
        if self.no_worker {
            server.await.context("the server failed")?;
        } else {
            let worker = drive_worker(&services, stopped, false);
            let (served, worked) = tokio::join!(server, worker);
            served.context("the server failed")?;
            worked?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_hashes_read_back() {
        let hash = hex_digest(b"t");
        assert_eq!(parse_hash(&format!("{hash}\n")), Some(hash));
        assert_eq!(parse_hash("abc"), None);
        assert_eq!(parse_hash(&"zz".repeat(32)), None);
    }
}

//! What every command gets: the resolved settings, output styles, and the services (opened
//! on first use).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use anyhow::{Context as _, Result};

use cosmos_engine::{ConnectNotice, ExecEnv, LaunchDefaults, Services};
use cosmos_media::Ffprobe;

use crate::config::Settings;
use crate::output::Style;

#[derive(Debug)]
pub struct Ctx {
    pub settings: Settings,
    /// Style for stdout (colour only on a terminal, and never with NO_COLOR).
    pub style: Style,
    /// Style for stderr.
    pub err_style: Style,
}

impl Ctx {
    pub fn new(settings: Settings, env: &BTreeMap<String, String>) -> Self {
        let no_color = env.get("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            settings,
            style: Style {
                color: !no_color && std::io::stdout().is_terminal(),
            },
            err_style: Style {
                color: !no_color && std::io::stderr().is_terminal(),
            },
        }
    }

    /// Opens the database (creating it and bringing its schema up to date).
    pub async fn services(&self) -> Result<Services> {
        self.services_verifying(None).await
    }

    /// The OS keyring of this configuration (it may have none).
    pub fn keyring(&self) -> crate::config::keyring::Keyring {
        crate::config::keyring::Keyring::new(
            self.settings.session_bus.clone(),
            &self.settings.paths.config,
        )
    }

    /// The Hugging Face token in force: its environment variable, else the OS keyring, else
    /// the secrets file, else cosmos.toml. The keyring is asked only here, by the commands
    /// that need the token, so other commands never wait on a session bus.
    pub fn hf_token(&self) -> Option<String> {
        let configured = self.settings.config.secrets.hf_token.clone();
        if self
            .settings
            .secrets_from_env
            .iter()
            .any(|k| k == "hf_token")
        {
            return configured;
        }
        match self.keyring().get("hf_token") {
            Ok(Some(v)) => Some(v),
            _ => configured,
        }
    }

    /// [`Ctx::services`] with the secrets from every store, the OS keyring included (for
    /// `target setup`, which downloads with the token).
    pub async fn services_with_secrets(&self) -> Result<Services> {
        self.open_services(None, self.hf_token()).await
    }

    /// [`Ctx::services`], with `--verify-inputs` (`stamp` or `full`) over the configuration.
    pub async fn services_verifying(&self, verify_inputs: Option<&str>) -> Result<Services> {
        self.open_services(verify_inputs, self.settings.config.secrets.hf_token.clone())
            .await
    }

    async fn open_services(
        &self,
        verify_inputs: Option<&str>,
        hf_token: Option<String>,
    ) -> Result<Services> {
        let verify = match verify_inputs.unwrap_or(&self.settings.config.queue.verify_inputs) {
            "stamp" => cosmos_engine::Verify::Stamp,
            "full" => cosmos_engine::Verify::Full,
            other => anyhow::bail!(
                "queue.verify_inputs is `{other}`: use `stamp` (re-hash inputs on a target only when they changed) or `full` (every run)"
            ),
        };
        let path = self.settings.database();
        let services =
            cosmos_engine::open_sqlite(&path, Ffprobe::new(&self.settings.config.media.ffprobe))
                .await
                .with_context(|| format!("cannot use the database `{}`", path.display()))?;
        let mut secrets = BTreeMap::new();
        if let Some(token) = hf_token {
            secrets.insert("HF_TOKEN".to_owned(), token);
        }
        let services = services.with_hooks(self.settings.hooks.clone());
        Ok(services.with_exec(
            ExecEnv::new(
                self.settings.paths.data_dir.clone(),
                self.known_hosts(),
                secrets,
            )
            .with_lease_ttl(millis(self.settings.config.queue.lease_seconds) as i64)
            .with_connect(
                std::time::Duration::from_secs_f64(
                    self.settings
                        .config
                        .ssh
                        .connect_timeout_seconds
                        .clamp(0.1, 3600.0),
                ),
                Some(ConnectNotice(std::sync::Arc::new(|line: &str| {
                    eprintln!("{line}");
                }))),
            )
            .with_verify_inputs(verify)
            .with_gpu_sampling(std::time::Duration::from_secs_f64(
                self.settings
                    .config
                    .queue
                    .gpu_sample_seconds
                    .clamp(0.05, 3600.0),
            ))
            .with_max_batch(match self.settings.config.queue.max_batch {
                0 => None,
                n => Some(n),
            })
            .with_retry(cosmos_engine::RetryPolicy {
                max_attempts: self.settings.config.queue.max_retries,
                backoff_ms: millis(self.settings.config.queue.retry_backoff_seconds),
                staging_patience_ms: millis(self.settings.config.queue.staging_patience_seconds),
            }),
        ))
    }

    /// cosmos's own known_hosts file, beside the config file.
    pub fn known_hosts(&self) -> std::path::PathBuf {
        let config = &self.settings.paths.config;
        config
            .parent()
            .unwrap_or_else(|| std::path::Path::new("."))
            .join("known_hosts")
    }

    pub fn launch_defaults(&self) -> LaunchDefaults {
        let t = &self.settings.config.target;
        LaunchDefaults {
            root: t.root.clone(),
            cosmos_dir: t.cosmos_dir.clone(),
            image: t.image.clone(),
            shm_size: t.shm_size.clone(),
            mounts: Vec::new(),
        }
    }

    /// A diagnostic line on stderr (`warning: …`, `note: …`).
    pub fn say(&self, label: &str, message: &str) {
        let code = if label == "warning" { "33" } else { "36" };
        let label = self.err_style.paint(code, &format!("{label}:"));
        let _ = writeln!(std::io::stderr(), "{label} {message}");
    }
}

/// Seconds from the configuration as milliseconds (negative and NaN count as zero).
fn millis(seconds: f64) -> u64 {
    (seconds.max(0.0) * 1000.0) as u64
}

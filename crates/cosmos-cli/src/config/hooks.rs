//! `[[hooks]]`: checked at load into the engine's hooks, so a bad hook stops every command
//! with a message that says what to fix, before anything runs.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail};

use cosmos_engine::{Hook, HookAction, HookEvent};

use super::HookConfig;

pub(crate) fn default_timeout() -> f64 {
    10.0
}

pub(crate) fn default_retries() -> u32 {
    3
}

pub(crate) fn default_backoff() -> f64 {
    2.0
}

/// What `cosmos config default` shows of hooks: commented out, as there are none by default.
pub(crate) const EXAMPLE: &str = "
# Hooks: tell other systems what happened. Each [[hooks]] table listens `on` some of
# run.succeeded, run.failed, run.cancelled, queue.empty, target.unreachable, and either runs
# a program (`command`, a list: the program and its arguments, never a shell; the event is
# JSON on its stdin, COSMOS_HOOK_EVENT names it) or POSTs the JSON to a `url` (signed as
# X-Cosmos-Signature-256: sha256=<HMAC-SHA256 of the body> when `secret` or `secret_env` is
# set; retried `retries` times with a doubling `backoff_seconds`). `timeout_seconds` bounds a
# program's run or one HTTP attempt. A failed delivery becomes an event of its run.
# `cosmos hooks test NAME` sends a sample event.
#
# [[hooks]]
# name = \"notify\"
# on = [\"run.succeeded\", \"run.failed\"]
# command = [\"/usr/local/bin/notify-team\", \"--channel\", \"renders\"]
# timeout_seconds = 10.0
#
# [[hooks]]
# name = \"tracker\"
# on = [\"run.failed\", \"queue.empty\", \"target.unreachable\"]
# url = \"https://tracker.example.com/cosmos\"
# secret_env = \"TRACKER_HOOK_SECRET\"
# retries = 3
# backoff_seconds = 2.0
";

/// Checks every `[[hooks]]` table and builds the engine's hooks.
pub(crate) fn build(hooks: &[HookConfig], env: &BTreeMap<String, String>) -> Result<Vec<Hook>> {
    let mut out: Vec<Hook> = Vec::with_capacity(hooks.len());
    for (i, h) in hooks.iter().enumerate() {
        let hook = one(h, env).map_err(|e| {
            let which = if h.name.is_empty() {
                format!("[[hooks]] number {}", i + 1)
            } else {
                format!("hook `{}`", h.name)
            };
            anyhow::anyhow!("{which}: {e}")
        })?;
        if out.iter().any(|o| o.name == hook.name) {
            bail!(
                "two hooks are named `{}`: give each its own name",
                hook.name
            );
        }
        out.push(hook);
    }
    Ok(out)
}

fn one(h: &HookConfig, env: &BTreeMap<String, String>) -> Result<Hook> {
    if h.name.is_empty()
        || !h
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("give it a `name` of letters, digits, `-` and `_`");
    }
    if h.on.is_empty() {
        bail!(
            "`on` lists no events: name some of {}",
            all_events().join(", ")
        );
    }
    let mut on = Vec::new();
    for e in &h.on {
        let event: HookEvent = e.parse().map_err(|m: String| anyhow::anyhow!("{m}"))?;
        if !on.contains(&event) {
            on.push(event);
        }
    }
    let action = match (&h.command, &h.url) {
        (Some(_), Some(_)) => bail!("it has both `command` and `url`: a hook does one"),
        (None, None) => bail!(
            "give it a `command` (a list: the program and its arguments) or a `url` to POST to"
        ),
        (Some(command), None) => {
            if h.secret.is_some() || h.secret_env.is_some() {
                bail!("`secret` signs a webhook's body; a `command` hook has no use for it");
            }
            HookAction::Command(argv(command)?)
        }
        (None, Some(url)) => HookAction::Webhook {
            url: checked_url(url)?,
            secret: secret(h, env)?,
        },
    };
    let seconds = |what: &str, v: f64, most: f64| -> Result<Duration> {
        if !(v.is_finite() && v > 0.0 && v <= most) {
            bail!("`{what}` is {v}: use a number of seconds above 0 and at most {most}");
        }
        Ok(Duration::from_secs_f64(v))
    };
    if h.retries > 10 {
        bail!("`retries` is {}: use 0 to 10", h.retries);
    }
    Ok(Hook {
        name: h.name.clone(),
        on,
        action,
        timeout: seconds("timeout_seconds", h.timeout_seconds, 600.0)?,
        retries: h.retries,
        backoff: seconds("backoff_seconds", h.backoff_seconds, 300.0)?,
    })
}

fn all_events() -> Vec<&'static str> {
    HookEvent::ALL.iter().map(|e| e.as_str()).collect()
}

/// A command must be a list of strings: cosmos never hands a string to a shell.
fn argv(command: &toml::Value) -> Result<Vec<String>> {
    let example = "command = [\"/usr/local/bin/notify-team\", \"--channel\", \"renders\"]";
    match command {
        toml::Value::String(text) => bail!(
            "`command` is a string (\"{text}\"), and cosmos never runs a shell: give the \
             program and its arguments as a list, e.g. {example}"
        ),
        toml::Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    toml::Value::String(s) => out.push(s.clone()),
                    other => bail!(
                        "`command` holds {other}, not a string: every item is a string, e.g. {example}"
                    ),
                }
            }
            match out.first() {
                None => bail!("`command` is empty: e.g. {example}"),
                Some(p) if p.is_empty() => bail!("`command` names no program: e.g. {example}"),
                Some(_) => Ok(out),
            }
        }
        other => bail!("`command` is {other}: give a list, e.g. {example}"),
    }
}

fn checked_url(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest)
            if !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace) =>
        {
            Ok(url.to_owned())
        }
        _ => bail!("`url` is `{url}`: give an http:// or https:// URL with a host"),
    }
}

fn secret(h: &HookConfig, env: &BTreeMap<String, String>) -> Result<Option<String>> {
    match (&h.secret, &h.secret_env) {
        (Some(_), Some(_)) => bail!("give `secret` or `secret_env`, not both"),
        (Some(s), None) if s.is_empty() => bail!("`secret` is empty: remove it or set one"),
        (Some(s), None) => Ok(Some(s.clone())),
        (None, Some(var)) => match env.get(var).filter(|v| !v.is_empty()) {
            Some(v) => Ok(Some(v.clone())),
            None => bail!(
                "`secret_env` names `{var}`, which is not set: export it, or remove `secret_env` \
                 to send unsigned"
            ),
        },
        (None, None) => Ok(None),
    }
}

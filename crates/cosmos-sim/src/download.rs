//! Upstream's `scripts/download_checkpoints.py` (reference §6.3, §7) and `huggingface-cli
//! download`, answering as they do without a network: each Hugging Face repository becomes
//! placeholder files; a repository whose files are all there is skipped with upstream's
//! warning; a gated one refuses a missing token (401) or a token without access (403) with the
//! hub's words, printed as `Error downloading …` while the script goes on and exits 0, as
//! upstream does. `huggingface_hub.login` saves the token under `HF_HOME`, as the real one does.
//!
//! Knobs: `COSMOS_SIM_CHECKPOINT_BYTES` (size of each file, default a short line),
//! `COSMOS_SIM_DOWNLOAD_SECONDS` (time per file). A token that starts with `hf_noaccess` is
//! valid but has not been granted the gated repositories.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::argparse::{Kind, Opt, Parser};
use crate::checkout::CHECKPOINTS;
use crate::log;
use crate::python::{Failure, Raised, frame};

const SCRIPT: &str = "scripts/download_checkpoints.py";
const GATED: [&str; 1] = ["meta-llama/Llama-Guard-3-8B"];
/// Repositories `--model` filters (the others are always fetched, reference §9).
const ONLY_7B: &str = "nvidia/Cosmos-Transfer1-7B";
const ONLY_AV: &str = "nvidia/Cosmos-Transfer1-7B-Sample-AV";

fn parser() -> Parser {
    Parser::new(
        "download_checkpoints.py",
        vec![
            Opt::new(
                "--hf_token",
                Kind::Str,
                std::env::var("HF_TOKEN").map_or(Value::Null, Value::String),
            ),
            Opt::new("--output_dir", Kind::Str, "./checkpoints".into()),
            Opt::new(
                "--model",
                Kind::Choice(&["all", "7b", "7b_av"]),
                "all".into(),
            ),
        ],
    )
}

/// The repository a checkpoint path belongs to (its first two components).
fn repo_of(path: &str) -> &str {
    let mut slashes = path.match_indices('/').map(|(i, _)| i);
    slashes.nth(1).map_or(path, |i| &path[..i])
}

/// Repositories in the order the script fetches them, with their files.
fn repos(model: &str) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for path in CHECKPOINTS {
        let repo = repo_of(path);
        let skip = (model == "7b" && repo == ONLY_AV) || (model == "7b_av" && repo == ONLY_7B);
        if skip {
            continue;
        }
        match out.iter_mut().find(|(r, _)| *r == repo) {
            Some((_, files)) => files.push(path),
            None => out.push((repo, vec![path])),
        }
    }
    out
}

/// What a placeholder file holds: its path, padded to the configured size.
pub fn content(path: &str) -> Vec<u8> {
    let mut bytes = format!("cosmos-sim placeholder checkpoint {path}\n").into_bytes();
    if let Some(size) = std::env::var("COSMOS_SIM_CHECKPOINT_BYTES")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
    {
        bytes.resize(size, b'.');
    }
    bytes
}

fn per_file() -> Duration {
    std::env::var("COSMOS_SIM_DOWNLOAD_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::ZERO, Duration::from_secs_f64)
}

fn hf_home() -> PathBuf {
    std::env::var_os("HF_HOME").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/huggingface")
        },
        PathBuf::from,
    )
}

/// `huggingface_hub.login(token=…)`: checks the token's form and saves it under `HF_HOME`.
fn login(token: &str) -> Result<(), Failure> {
    if !token.starts_with("hf_") {
        return Err(Raised::new(
            "ValueError",
            "Invalid token passed!",
            &[frame(SCRIPT, 131, "main", "login(token=args.hf_token)")],
        )
        .into());
    }
    let path = hf_home().join("token");
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&path, token);
    log::print("Token is valid (permission: read).");
    log::print(&format!("Your token has been saved to {}", path.display()));
    log::print("Login successful");
    Ok(())
}

/// The hub's refusal of a gated repository, as huggingface_hub words it.
fn gated_error(repo: &str, token: Option<&str>) -> Option<String> {
    if !GATED.contains(&repo) {
        return None;
    }
    let url = format!("https://huggingface.co/api/models/{repo}/revision/main");
    match token {
        None => Some(format!(
            "401 Client Error. (Request ID: Root=1-sim)\n\nCannot access gated repo for url {url}.\nAccess to model {repo} is restricted. You must have access to it and be authenticated to access it. Please log in."
        )),
        Some(t) if t.starts_with("hf_noaccess") => Some(format!(
            "403 Client Error. (Request ID: Root=1-sim)\n\nCannot access gated repo for url {url}.\nAccess to model {repo} is restricted and you are not in the authorized list. Visit https://huggingface.co/{repo} to ask for access."
        )),
        Some(_) => None,
    }
}

/// Writes a file the way the hub does: into `.incomplete` under the folder's cache, then
/// moved into place, so an interrupted download leaves no half file where it belongs.
fn fetch(dir: &Path, rel: &str, bytes: &[u8]) -> std::io::Result<()> {
    let to = dir.join(rel);
    let partial = dir
        .join(".cache/huggingface/download")
        .join(format!("{}.incomplete", rel.replace('/', "_")));
    for d in [to.parent(), partial.parent()].into_iter().flatten() {
        std::fs::create_dir_all(d)?;
    }
    let mut f = std::fs::File::create(&partial)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&partial, &to)
}

/// `python scripts/download_checkpoints.py …`.
pub fn main(args: &[String]) -> Result<(), Failure> {
    let parsed = parser().parse(args, false).map_err(Failure::Args)?;
    let v = &parsed.values;
    let token = v["hf_token"].as_str().filter(|t| !t.is_empty());
    if let Some(t) = token {
        login(t)?;
    }
    let out = PathBuf::from(v["output_dir"].as_str().unwrap_or("./checkpoints"));
    let model = v["model"].as_str().unwrap_or("all");
    let wait = per_file();
    let repos = repos(model);
    for (repo, files) in &repos {
        let dir = out.join(repo);
        let local: Vec<(&str, Vec<u8>)> = files
            .iter()
            .map(|p| (&p[repo.len() + 1..], content(p)))
            .collect();
        let complete = local
            .iter()
            .all(|(rel, want)| std::fs::read(dir.join(rel)).is_ok_and(|b| &b == want));
        if complete {
            log::warning(
                log::site(SCRIPT, 109, "download_checkpoint"),
                &format!("Checkpoint {} EXISTS, skipping download...", dir.display()),
            );
            continue;
        }
        if let Some(e) = gated_error(repo, token) {
            log::print(&format!("Error downloading {repo}: {e}"));
            continue;
        }
        log::print(&format!("Downloading {repo} to {}...", dir.display()));
        let n = local.len();
        for (i, (rel, bytes)) in local.iter().enumerate() {
            std::thread::sleep(wait);
            if let Err(e) = fetch(&dir, rel, bytes) {
                log::print(&format!("Error downloading {repo}: {e}"));
                break;
            }
            log::stderr(&format!(
                "Fetching {n} files: {:3}%| {}/{n}\r",
                (i + 1) * 100 / n,
                i + 1
            ));
        }
        log::stderr("\n");
    }
    log::print("Checkpoint downloading done.");
    Ok(())
}

/// A fake revision for a repository: stable, 40 hex digits.
fn revision(repo: &str) -> String {
    cosmos_core::sha256::hex_digest(repo.as_bytes())[..40].to_owned()
}

/// `huggingface-cli download REPO [--cache-dir DIR]`: the repository into the hub cache
/// (`HF_HOME/hub`, or DIR: `models--org--name/snapshots/<rev>/…`); prints the snapshot folder.
pub fn cli(args: &[String]) -> u8 {
    if let [cmd, repo, file, flag, rev] = args
        && cmd == "download"
        && flag == "--revision"
        && !repo.starts_with('-')
        && !file.starts_with('-')
    {
        return one_file(repo, file, rev);
    }
    let (repo, cache) = match args {
        [cmd, repo] if cmd == "download" && !repo.starts_with('-') => (repo, hf_home().join("hub")),
        [cmd, repo, flag, dir]
            if cmd == "download" && !repo.starts_with('-') && flag == "--cache-dir" =>
        {
            (repo, PathBuf::from(dir))
        }
        _ => {
            log::stderr(
                "usage: huggingface-cli download REPO_ID [--cache-dir DIR] (cosmos-sim simulates only this form)\n",
            );
            return 2;
        }
    };
    let base = cache.join(format!("models--{}", repo.replace('/', "--")));
    let rev = revision(repo);
    let snapshot = base.join("snapshots").join(&rev);
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1") && !snapshot.is_dir() {
        log::stderr(&format!(
            "huggingface_hub.errors.LocalEntryNotFoundError: Cannot find the requested files in the disk cache and outgoing traffic has been disabled. To enable hf.co look-ups and downloads online, set 'HF_HUB_OFFLINE=0' as environment variable. ({repo})\n"
        ));
        return 1;
    }
    std::thread::sleep(per_file());
    let written = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(&snapshot)?;
        std::fs::create_dir_all(base.join("refs"))?;
        for file in ["config.json", "model.safetensors"] {
            std::fs::write(snapshot.join(file), content(&format!("{repo}/{file}")))?;
        }
        std::fs::write(base.join("refs/main"), &rev)
    })();
    if let Err(e) = written {
        log::stderr(&format!(
            "OSError: cannot write {}: {e}\n",
            snapshot.display()
        ));
        return 1;
    }
    log::stderr("Fetching 2 files: 100%| 2/2\n");
    log::print(&snapshot.display().to_string());
    0
}

/// `huggingface-cli download REPO FILE --revision REV`: one file of a repository at a pinned
/// revision into the hub cache (`HF_HOME/hub/models--org--name/snapshots/REV/FILE`), as
/// Cosmos-Transfer2.5's checkpoints arrive; prints its path.
fn one_file(repo: &str, file: &str, rev: &str) -> u8 {
    let base = hf_home()
        .join("hub")
        .join(format!("models--{}", repo.replace('/', "--")));
    let path = base.join("snapshots").join(rev).join(file);
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1") && !path.is_file() {
        log::stderr(&format!(
            "huggingface_hub.errors.LocalEntryNotFoundError: Cannot find the requested files in the disk cache and outgoing traffic has been disabled. ({repo} {file} at {rev})\n"
        ));
        return 1;
    }
    std::thread::sleep(per_file());
    let written = (|| -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, content(&format!("{repo}/{file}@{rev}")))
    })();
    if let Err(e) = written {
        log::stderr(&format!("OSError: cannot write {}: {e}\n", path.display()));
        return 1;
    }
    log::print(&path.display().to_string());
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_group_the_checkpoints_and_follow_the_model_filter() {
        let all = repos("all");
        assert!(all.iter().any(|(r, _)| *r == ONLY_AV));
        assert!(all.iter().any(|(r, _)| *r == "meta-llama/Llama-Guard-3-8B"));
        assert!(!repos("7b").iter().any(|(r, _)| *r == ONLY_AV));
        assert!(!repos("7b_av").iter().any(|(r, _)| *r == ONLY_7B));
        assert_eq!(
            repo_of("nvidia/Cosmos-Guardrail1/blocklist/x"),
            "nvidia/Cosmos-Guardrail1"
        );
        let total: usize = all.iter().map(|(_, f)| f.len()).sum();
        assert_eq!(total, CHECKPOINTS.len());
    }

    #[test]
    fn gated_repositories_need_a_token_with_access() {
        let no = gated_error("meta-llama/Llama-Guard-3-8B", None).unwrap();
        assert!(no.starts_with("401 Client Error") && no.contains("Please log in"));
        let denied = gated_error("meta-llama/Llama-Guard-3-8B", Some("hf_noaccess1")).unwrap();
        assert!(denied.contains("not in the authorized list"), "{denied}");
        assert!(gated_error("meta-llama/Llama-Guard-3-8B", Some("hf_good")).is_none());
        assert!(gated_error("google-t5/t5-11b", None).is_none());
    }
}

//! The checkpoints: downloaded by upstream's script inside the target's image, described by a
//! manifest on the host, verified against it (sizes and times, or every sha256) and, inside
//! the image as a run's container sees them, checked readable.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cosmos_core::Hint;
use cosmos_core::launch::CONTAINER_WORKSPACE;
use cosmos_core::setup::{self as recipe, Difference, Entry, Manifest};
use cosmos_core::{RuntimeKind, Target};
use cosmos_remote::runtime::Docker;
use cosmos_remote::{Host, RemoteError, args};

use super::{Lines, Reporter, SetupEvent, SetupRequest, last_lines, refuse};
use crate::Services;
use crate::error::{EngineError, EngineResult};
use crate::targets::{CheckItem, Connected, Fix};

/// What `target verify` is asked to do.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    pub target: String,
    /// Re-hash every file instead of comparing sizes and times.
    pub full: bool,
}

/// Lists the checkpoints (following links, leaving out the hub's `.cache` folders):
/// `sh -c SCRIPT sh DIR` prints `size mtime path` per file.
const LIST: &str = r#"cd "$1" 2>/dev/null || exit 3
exec find -L . -path ./.cache -prune -o -path '*/.cache' -prune -o -type f -printf '%s %T@ %P\n'"#;

/// Bytes and files under the checkpoints folder so far: `sh -c SCRIPT sh DIR`.
const AMOUNT: &str = r#"cd "$1" 2>/dev/null || { echo "0 0"; exit 0; }
echo "$(du -skL . 2>/dev/null | cut -f1) $(find -L . -type f 2>/dev/null | wc -l)""#;

/// Hashes files relative to a folder, one line per file as each is done:
/// `sh -c SCRIPT sh DIR PATH…`.
const HASH: &str = r#"cd "$1" || exit 3; shift; exec sha256sum -- "$@""#;

/// Which of the paths given (relative to the folder, links followed) cannot be read; a
/// folder that cannot be entered misses them all: `sh -c SCRIPT sh DIR PATH…`. Used inside
/// the image (`verify`) and on the host before each run.
pub(crate) const UNREADABLE: &str = r#"cd "$1" 2>/dev/null || { shift; printf '%s\n' "$@"; exit 0; }; shift
for f; do [ -r "$f" ] || echo "$f"; done"#;

/// The download inside the image: upstream's script (logging in saves the token in the
/// container's own /tmp, never in the mounted cache), then, without the token, SigLIP into
/// the guardrail's folder and the repositories the preprocessors read through the hub cache.
/// `sh -c SCRIPT sh SIGLIP SIGLIP_DIR REPO…`.
const DOWNLOAD: &str = r#"HF_HOME=/tmp/cosmos-login python scripts/download_checkpoints.py --output_dir checkpoints || exit $?
unset HF_TOKEN
huggingface-cli download "$1" --cache-dir "checkpoints/$2" || exit $?
shift 2
for r; do huggingface-cli download "$r" || exit $?; done"#;

/// `sh -c SCRIPT sh REPO REVISION FILE …`: files of repositories at pinned revisions into the
/// hub cache (`HF_HOME`), as Cosmos-Transfer2.5's checkpoints come.
const DOWNLOAD_PINNED: &str = r#"while [ "$#" -ge 3 ]; do huggingface-cli download "$1" "$3" --revision "$2" || exit $?; shift 3; done"#;

fn container_name(target: &str) -> String {
    format!("cosmos-setup-{target}")
}

/// Whether the target's download container still runs. A download still running (setup lost
/// sight of it) is followed again; one that ended unseen is discarded and started anew, which
/// skips what is already there.
async fn download_running(h: &Host, docker: &Docker, target: &str) -> EngineResult<bool> {
    let container = container_name(target);
    let state = h
        .runner
        .run(&docker.docker(&["inspect", "--format", "{{.State.Running}}", &container]))
        .await?;
    let running = state.success() && state.stdout_text().trim() == "true";
    if state.success() && !running {
        let _ = h
            .runner
            .run(&docker.docker(&["rm", "--force", &container]))
            .await;
    }
    Ok(running)
}

fn ckpt_dir(target: &Target) -> String {
    format!("{}/checkpoints", target.config.cosmos_dir)
}

/// Every checkpoint any run may need: the controls, the base models, the upscaler, the
/// tokenizer, T5, the guardrails and the preprocessors.
pub(super) fn all_needs() -> Vec<&'static str> {
    let mut spec = serde_json::Map::new();
    for hint in Hint::ALL {
        if !matches!(hint, Hint::Hdmap | Hint::Lidar) {
            spec.insert(hint.as_str().into(), serde_json::json!({}));
        }
    }
    let mut needs: Vec<&str> = recipe::needed_checkpoints(&spec.into(), false, false)
        .into_iter()
        .map(|n| n.path)
        .collect();
    needs.dedup();
    needs
}

async fn listing(host: &Host, dir: &str) -> EngineResult<Option<BTreeMap<String, (u64, String)>>> {
    let out = host
        .runner
        .run(&args(&["sh", "-c", LIST, "sh", dir]))
        .await?;
    if out.code == Some(3) {
        return Ok(None);
    }
    let out = out.check("list the checkpoints")?;
    Ok(Some(recipe::parse_listing(&out.stdout_text())))
}

/// The manifest on the host, if there is one that parses.
async fn read_manifest(host: &Host, root: &str) -> EngineResult<Option<Manifest>> {
    let out = host
        .runner
        .run(&args(&["cat", "--", &recipe::manifest_path(root)]))
        .await?;
    if !out.success() {
        return Ok(None);
    }
    Ok(Manifest::parse(&out.stdout_text()).ok())
}

/// Hashes `paths` under `dir` with progress; the sums in the order given.
async fn hash_files(
    host: &Host,
    dir: &str,
    paths: &[String],
    sizes: &[u64],
    report: &Reporter,
    step: &'static str,
) -> EngineResult<Vec<String>> {
    let mut sums = Vec::with_capacity(paths.len());
    // A few hundred paths per command keeps each command line short.
    for (chunk, chunk_sizes) in paths.chunks(256).zip(sizes.chunks(256)) {
        let mut argv = args(&["sh", "-c", HASH, "sh", dir]);
        argv.extend(chunk.iter().cloned());
        let mut lines = Lines::default();
        let mut text = String::new();
        let done_before = sums.len();
        let mut bytes_before: u64 = sizes[..done_before].iter().sum();
        let mut got = 0usize;
        let mut sink = |s: cosmos_remote::Stream, b: &[u8]| {
            if s == cosmos_remote::Stream::Stderr {
                text.push_str(&String::from_utf8_lossy(b));
                return;
            }
            lines.push(b, |l| {
                if let Some(sum) = l.split_whitespace().next() {
                    sums.push(sum.trim_start_matches('\\').to_ascii_lowercase());
                    bytes_before += chunk_sizes.get(got).copied().unwrap_or(0);
                    got += 1;
                    report.send(SetupEvent::Amount {
                        step,
                        bytes: bytes_before,
                        files: (done_before + got) as u64,
                        of_files: Some(paths.len() as u64),
                    });
                }
            });
        };
        let code = host.runner.stream(&argv, &mut sink).await?;
        if code != Some(0) || sums.len() != done_before + chunk.len() {
            return Err(refuse(
                "checkpoints_unreadable",
                format!(
                    "cannot hash the checkpoints in {dir}: {}",
                    last_lines(&text, 2)
                ),
            ));
        }
    }
    Ok(sums)
}

/// The manifest of what is in `dir` now: sums reused from `old` for files whose size and
/// time are unchanged, the rest hashed.
async fn make_manifest(
    host: &Host,
    dir: &str,
    now: &BTreeMap<String, (u64, String)>,
    old: Option<&Manifest>,
    report: &Reporter,
) -> EngineResult<Manifest> {
    let mut entries = Vec::new();
    let (mut todo, mut sizes) = (Vec::new(), Vec::new());
    for (path, (size, mtime)) in now {
        let kept = old.and_then(|m| {
            m.entries
                .iter()
                .find(|e| &e.path == path && e.size == *size && e.mtime == *mtime)
        });
        match kept {
            Some(e) => entries.push(e.clone()),
            None => {
                todo.push(path.clone());
                sizes.push(*size);
            }
        }
    }
    let sums = hash_files(host, dir, &todo, &sizes, report, "manifest").await?;
    for ((path, size), sha256) in todo.into_iter().zip(sizes).zip(sums) {
        let mtime = now.get(&path).map(|(_, t)| t.clone()).unwrap_or_default();
        entries.push(Entry {
            path,
            size,
            mtime,
            sha256,
        });
    }
    Ok(Manifest::new(entries))
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn amount_text(m: &Manifest) -> String {
    let n = m.entries.len();
    format!(
        "{n} file{}, {}",
        if n == 1 { "" } else { "s" },
        if m.total_bytes() >= 1 << 30 {
            gib(m.total_bytes())
        } else {
            format!("{} bytes", m.total_bytes())
        }
    )
}

/// What went wrong in the download script's output: `Error downloading REPO: …` lines (the
/// script prints them and goes on, exiting 0).
fn download_errors(log: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix("Error downloading ") {
            if let Some(done) = current.take() {
                out.push(done);
            }
            let (repo, cause) = rest.split_once(": ").unwrap_or((rest, ""));
            current = Some((repo.to_owned(), cause.to_owned()));
        } else if let Some((_, cause)) = current.as_mut() {
            let l = line.trim();
            if l.starts_with("Downloading ") || l.starts_with('[') || l.starts_with("Checkpoint ") {
                if let Some(done) = current.take() {
                    out.push(done);
                }
            } else if !l.is_empty() && !l.starts_with("Fetching ") {
                cause.push(' ');
                cause.push_str(l);
            }
        }
    }
    out.extend(current);
    out
}

impl Services {
    /// Streams the download container's log as progress lines until it ends, polling bytes
    /// and files every second.
    async fn follow_download(
        &self,
        h: &Host,
        docker: &Docker,
        container: &str,
        dir: &str,
        report: &Reporter,
    ) -> Result<(), RemoteError> {
        let follow = docker.docker(&["logs", "--follow", container]);
        let mut lines = Lines::default();
        let mut sink = |_: cosmos_remote::Stream, b: &[u8]| {
            lines.push(b, |l| report.line("checkpoints", l));
        };
        let fut = h.runner.stream(&follow, &mut sink);
        tokio::pin!(fut);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                r = &mut fut => return r.map(drop),
                _ = tick.tick() => {
                    let amount = args(&["sh", "-c", AMOUNT, "sh", dir]);
                    if let Ok(out) = h.runner.run(&amount).await {
                        let text = out.stdout_text();
                        let mut w = text.split_whitespace();
                        let kib: u64 = w.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                        let files: u64 = w.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                        report.send(SetupEvent::Amount {
                            step: "checkpoints",
                            bytes: kib * 1024,
                            files,
                            of_files: None,
                        });
                    }
                }
            }
        }
    }

    /// Steps 4–6 of setup: checkpoints and cache, manifest, verify.
    pub(super) async fn checkpoint_steps(
        &self,
        c: &Connected,
        target: &mut Target,
        docker: &Docker,
        req: &SetupRequest,
        report: &Reporter,
        step: &mut impl FnMut(&'static str, bool, String, Instant),
    ) -> EngineResult<()> {
        let h = &c.host;
        let dir = ckpt_dir(target);
        let root = target.config.root.clone();
        let cache = recipe::hf_cache(&root);

        // 4. checkpoints and the model cache.
        let began = Instant::now();
        report.send(SetupEvent::Step {
            step: "checkpoints",
            what: format!("upstream's download script in {}", target.config.image),
        });
        let old = read_manifest(h, &root).await?;
        let now = listing(h, &dir).await?;
        let cache_complete = h
            .runner
            .run(&args(&[
                "test",
                "-f",
                &format!("{cache}/{}", recipe::HF_CACHE_COMPLETE),
            ]))
            .await?
            .success();
        let unchanged = match (&old, &now) {
            (Some(m), Some(now)) => {
                target.config.manifest_hash.as_deref() == Some(m.hash().as_str())
                    && m.compare(now).is_empty()
            }
            _ => false,
        };
        let running = download_running(h, docker, &target.name).await?;
        if unchanged && cache_complete && !running {
            let detail = old.as_ref().map(amount_text).unwrap_or_default();
            step(
                "checkpoints",
                true,
                format!("{detail}, as the manifest says"),
                began,
            );
        } else {
            let mut script_args: Vec<String> =
                vec![recipe::SIGLIP.0.to_owned(), recipe::SIGLIP.1.to_owned()];
            script_args.extend(recipe::HF_CACHE_REPOS.iter().map(|r| (*r).to_owned()));
            self.download(
                c,
                target,
                docker,
                req,
                report,
                running,
                DOWNLOAD,
                &script_args,
            )
            .await?;
            // The hub repositories Cosmos-Transfer1's preprocessors load are all there.
            h.files
                .write(
                    &format!("{cache}/{}", recipe::HF_CACHE_COMPLETE),
                    recipe::HF_CACHE_REPOS.join("\n").as_bytes(),
                    0o644,
                )
                .await?;
            step(
                "checkpoints",
                false,
                format!("{dir}; model cache in {cache}"),
                began,
            );
        }
        target.config.hf_cache_complete = true;

        // 5. manifest.
        let began = Instant::now();
        report.send(SetupEvent::Step {
            step: "manifest",
            what: format!("sha256 of every file in {dir}"),
        });
        let manifest = match old {
            // Unchanged since the manifest was written: it stands (no second listing).
            Some(m) if unchanged => m,
            old => {
                let now = match listing(h, &dir).await? {
                    Some(now) if !now.is_empty() => now,
                    _ => {
                        return Err(refuse(
                            "checkpoints_missing",
                            format!("the download left no checkpoints in {dir}"),
                        ));
                    }
                };
                let m = make_manifest(h, &dir, &now, old.as_ref(), report).await?;
                h.mkdirs(&[&recipe::setup_dir(&root)]).await?;
                h.files
                    .write(&recipe::manifest_path(&root), m.render().as_bytes(), 0o644)
                    .await?;
                m
            }
        };
        let hash = manifest.hash();
        step(
            "manifest",
            unchanged,
            format!(
                "{} in {} (sha256 {})",
                amount_text(&manifest),
                recipe::manifest_path(&root),
                &hash[..16]
            ),
            began,
        );
        target.config.manifest_hash = Some(hash);
        self.store().put_target(target, true).await?;

        // 6. verify inside the image.
        let began = Instant::now();
        report.send(SetupEvent::Step {
            step: "verify",
            what: "every checkpoint a run needs, inside the image".into(),
        });
        let item = in_image(c, &all_needs()).await?;
        if !item.ok {
            return Err(refuse("checkpoints_unreadable", item.detail));
        }
        step("verify", false, item.detail, began);
        Ok(())
    }

    /// Steps 4–5 for a model whose checkpoints come through the hub cache at pinned
    /// revisions: fetch the files not there yet (in a detached container, followed like the
    /// download script), then check each is in the cache where the model looks for it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn hub_steps(
        &self,
        c: &Connected,
        target: &mut Target,
        docker: &Docker,
        req: &SetupRequest,
        report: &Reporter,
        step: &mut impl FnMut(&'static str, bool, String, Instant),
        files: &[cosmos_core::model::HubFile],
    ) -> EngineResult<()> {
        let h = &c.host;
        let hub = format!("{}/hub", recipe::hf_cache(&target.config.root));
        let paths: Vec<String> = files.iter().map(|f| f.cache_path(&hub)).collect();
        let all_there = |paths: Vec<String>| async move {
            let mut argv = args(&["sh", "-c", r#"for f; do [ -f "$f" ] || exit 1; done"#, "sh"]);
            argv.extend(paths);
            h.runner.run(&argv).await.map(|o| o.success())
        };
        let began = Instant::now();
        report.send(SetupEvent::Step {
            step: "checkpoints",
            what: format!(
                "{} files at pinned revisions into the Hugging Face cache {hub}",
                files.len()
            ),
        });
        let running = download_running(h, docker, &target.name).await?;
        let there = !running && all_there(paths.clone()).await?;
        if there {
            step(
                "checkpoints",
                true,
                format!("{} files in {hub}", files.len()),
                began,
            );
        } else {
            let script_args: Vec<String> = files
                .iter()
                .flat_map(|f| [f.repo.to_owned(), f.revision.to_owned(), f.file.to_owned()])
                .collect();
            self.download(
                c,
                target,
                docker,
                req,
                report,
                running,
                DOWNLOAD_PINNED,
                &script_args,
            )
            .await?;
            step(
                "checkpoints",
                false,
                format!("{} files in {hub}", files.len()),
                began,
            );
        }

        // 5. verify: every file where the model looks for it.
        let began = Instant::now();
        report.send(SetupEvent::Step {
            step: "verify",
            what: "every pinned checkpoint in the cache".into(),
        });
        if !all_there(paths).await? {
            return Err(refuse(
                "checkpoints_missing",
                format!("the download left pinned checkpoints missing from {hub}"),
            ));
        }
        step(
            "verify",
            false,
            format!("{} files at their pinned revisions", files.len()),
            began,
        );
        self.store().put_target(target, true).await?;
        Ok(())
    }

    /// Runs (or follows again) the download container and checks what it did.
    #[allow(clippy::too_many_arguments)]
    async fn download(
        &self,
        c: &Connected,
        target: &Target,
        docker: &Docker,
        req: &SetupRequest,
        report: &Reporter,
        running: bool,
        script: &str,
        script_args: &[String],
    ) -> EngineResult<()> {
        let h = &c.host;
        let cfg = &target.config;
        let dir = ckpt_dir(target);
        let cache = recipe::hf_cache(&cfg.root);
        let setup = recipe::setup_dir(&cfg.root);
        let container = container_name(&target.name);
        let token = self.exec_env()?.secrets.0.get("HF_TOKEN").cloned();
        if !running {
            // Room first: what is there already counts towards the 300 GB.
            h.mkdirs(&[&setup, &cache]).await?;
            let have = h
                .runner
                .run(&args(&["sh", "-c", AMOUNT, "sh", &dir]))
                .await?
                .stdout_text();
            let have_bytes = have
                .split_whitespace()
                .next()
                .and_then(|k| k.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024;
            let want = (req.checkpoint_space_gb.max(0.0) * 1e9) as u64;
            let free = h.free_bytes(&cfg.cosmos_dir).await?;
            if let Some(free) = free
                && free + have_bytes < want
            {
                return Err(refuse(
                    "setup_disk_space",
                    format!(
                        "the checkpoints need about {:.0} GB; {} are there and {} free on the disk of {dir}: free space there, or put the checkpoints on a bigger disk (a symlink at {dir}, with a mount of its target for the container)",
                        req.checkpoint_space_gb,
                        gib(have_bytes),
                        gib(free)
                    ),
                ));
            }
            // A container from an earlier, finished attempt goes first.
            let _ = h
                .runner
                .run(&docker.docker(&["rm", "--force", &container]))
                .await;
            let env_file = format!("{setup}/download.env");
            // The target's own settings (a proxy, say) reach the download as they reach runs.
            let mut env: String = cfg.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            if let Some(t) = &token {
                if t.contains('\n') {
                    return Err(EngineError::Invalid(
                        "the Hugging Face token spans lines: set it again".into(),
                    ));
                }
                env.push_str(&format!("HF_TOKEN={t}\n"));
            }
            h.files.write(&env_file, env.as_bytes(), 0o600).await?;
            let label = format!("cosmos.setup={}", target.name);
            let workspace = format!("{}:{CONTAINER_WORKSPACE}", cfg.cosmos_dir);
            let hf = format!("{cache}:{}", recipe::CONTAINER_HF_HOME);
            let hf_home = format!("HF_HOME={}", recipe::CONTAINER_HF_HOME);
            let mut argv = docker.docker(&[
                "run",
                "--detach",
                "--name",
                &container,
                "--label",
                &label,
                "--network=host",
                "--env-file",
                &env_file,
                "--volume",
                &workspace,
                "--volume",
                &hf,
                "--workdir",
                CONTAINER_WORKSPACE,
                "--env",
                "PYTHONPATH=/workspace",
                "--env",
                &hf_home,
            ]);
            for m in &cfg.mounts {
                argv.push("--volume".into());
                argv.push(m.clone());
            }
            argv.extend(args(&[&cfg.image, "sh", "-c", script, "sh"]));
            argv.extend(script_args.iter().cloned());
            let started = h.runner.run(&argv).await;
            // Docker read the file when it created the container: it goes now, whatever
            // happened.
            let removed = h.runner.run(&args(&["rm", "-f", "--", &env_file])).await;
            let started = started?;
            if !removed.is_ok_and(|o| o.success()) {
                tracing::warn!(target = %target.name, "could not remove {env_file}");
            }
            if !started.success() {
                return Err(refuse(
                    "setup_download_failed",
                    format!(
                        "cannot start the download in {}: {}",
                        cfg.image,
                        started.last_words()
                    ),
                ));
            }
        }
        // Follow the log while polling bytes and files; a dropped connection leaves the
        // download running on the host. A follow that ends while the container still runs
        // (the stream cut short) follows again.
        let mut state = String::new();
        for _ in 0..3 {
            self.follow_download(h, docker, &container, &dir, report)
                .await
                .map_err(|e| interrupted(e, &target.name))?;
            state = h
                .runner
                .run(&docker.docker(&[
                    "inspect",
                    "--format",
                    "{{.State.Status}} {{.State.ExitCode}}",
                    &container,
                ]))
                .await
                .map_err(|e| interrupted(e, &target.name))?
                .stdout_text();
            if !state.starts_with("running") {
                break;
            }
        }
        if state.starts_with("running") {
            return Err(interrupted(
                RemoteError::Protocol("the log stream keeps ending early".into()),
                &target.name,
            ));
        }
        let log = h
            .runner
            .run(
                &args(&["sh", "-c", r#"exec "$@" 2>&1"#, "sh"])
                    .into_iter()
                    .chain(docker.docker(&["logs", &container]))
                    .collect::<Vec<_>>(),
            )
            .await
            .map_err(|e| interrupted(e, &target.name))?
            .stdout_text();
        let _ = h
            .runner
            .run(&docker.docker(&["rm", "--force", &container]))
            .await;
        // What huggingface_hub's login leaves behind never stays in the cache.
        let _ = h
            .runner
            .run(&args(&[
                "rm",
                "-f",
                "--",
                &format!("{cache}/token"),
                &format!("{cache}/stored_tokens"),
            ]))
            .await;
        let code: i64 = state
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(-1);
        let errors = download_errors(&log);
        if let Some((repo, cause)) = errors.first() {
            if let Some((_, licence)) = recipe::GATED.iter().find(|(r, _)| r == repo) {
                let message = if token.is_some() {
                    format!(
                        "{repo} is gated and the Hugging Face token set for cosmos cannot read it ({}): accept the {licence} at https://huggingface.co/{repo} with the account the token belongs to, then run setup again (what is downloaded stays)",
                        cause.trim()
                    )
                } else {
                    format!(
                        "{repo} is gated and no Hugging Face token is set ({}): set the token of an account that accepted the {licence} at https://huggingface.co/{repo}, then run setup again (what is downloaded stays)",
                        cause.trim()
                    )
                };
                return Err(refuse("checkpoints_gated", message));
            }
            return Err(refuse(
                "setup_download_failed",
                format!(
                    "downloading {repo} failed ({}){}: run setup again to resume",
                    cause.trim(),
                    if errors.len() > 1 {
                        format!(", and {} more", errors.len() - 1)
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        if code != 0 {
            return Err(refuse(
                "setup_download_failed",
                format!(
                    "the download in {} ended with exit code {code}: {}; run setup again to resume",
                    cfg.image,
                    last_lines(&log, 2)
                ),
            ));
        }
        Ok(())
    }
}

/// Setup lost sight of a download that goes on by itself on the host.
fn interrupted(e: impl Into<EngineError>, name: &str) -> EngineError {
    match e.into() {
        EngineError::Remote(r) => refuse(
            "setup_interrupted",
            format!(
                "setup lost its connection to {name} during the download ({r}); the download goes on on the host: run setup again to follow it and finish"
            ),
        ),
        other => other,
    }
}

/// Whether every needed checkpoint is readable as a run's container sees the checkout (for a
/// plain process, on the host); when not, the folder a mount would bring in.
pub(crate) async fn in_image(c: &Connected, needs: &[&str]) -> EngineResult<CheckItem> {
    let cfg = &c.target.config;
    let h = &c.host;
    let inside = format!("{CONTAINER_WORKSPACE}/checkpoints");
    let argv = match cfg.runtime {
        RuntimeKind::Docker => {
            let docker = crate::targets::docker_of(cfg);
            let workspace = format!("{}:{CONTAINER_WORKSPACE}", cfg.cosmos_dir);
            let mut argv =
                docker.docker(&["run", "--rm", "--network=none", "--volume", &workspace]);
            for m in &cfg.mounts {
                argv.push("--volume".into());
                argv.push(m.clone());
            }
            argv.extend(args(&[&cfg.image, "sh", "-c", UNREADABLE, "sh", &inside]));
            argv
        }
        RuntimeKind::None => args(&["sh", "-c", UNREADABLE, "sh", &ckpt_dir(&c.target)]),
    };
    let mut argv = argv;
    argv.extend(needs.iter().map(|n| (*n).to_owned()));
    let out = h.runner.run(&argv).await?;
    if !out.success() {
        return Ok(CheckItem {
            check: "in the image",
            ok: false,
            detail: format!("cannot look inside {}: {}", cfg.image, out.last_words()),
            fix: Some(Fix::Image {
                image: cfg.image.clone(),
            }),
        });
    }
    let missing: Vec<String> = out.stdout_text().lines().map(str::to_owned).collect();
    if missing.is_empty() {
        return Ok(CheckItem {
            check: "in the image",
            ok: true,
            detail: format!(
                "all {} checkpoints a run may need are readable in {}",
                needs.len(),
                if cfg.runtime == RuntimeKind::Docker {
                    cfg.image.as_str()
                } else {
                    "the checkout"
                }
            ),
            fix: None,
        });
    }
    // A checkpoints folder (or a file in it) linking to a disk the container does not see.
    let real = h
        .runner
        .run(&args(&["readlink", "-f", "--", &ckpt_dir(&c.target)]))
        .await?
        .stdout_text()
        .trim()
        .to_owned();
    let linked = !real.is_empty()
        && real != ckpt_dir(&c.target)
        && !real.starts_with(&format!("{}/", cfg.cosmos_dir));
    let first = &missing[0];
    let n = missing.len();
    let (detail, fix) = if linked && cfg.runtime == RuntimeKind::Docker {
        (
            format!(
                "{n} checkpoint{} not readable inside {} (first: {first}): {}/checkpoints links to {real}, which the container does not mount",
                if n == 1 { " is" } else { "s are" },
                cfg.image,
                cfg.cosmos_dir
            ),
            Fix::Mount {
                mount: format!("{real}:{real}:ro"),
            },
        )
    } else {
        (
            format!(
                "{n} checkpoint{} missing or unreadable (first: {first})",
                if n == 1 { " is" } else { "s are" }
            ),
            Fix::Setup,
        )
    };
    Ok(CheckItem {
        check: "in the image",
        ok: false,
        detail,
        fix: Some(fix),
    })
}

/// The quick comparison with the manifest (`target check`, `target verify`), or the full one.
pub(crate) async fn manifest_item(
    c: &Connected,
    full: bool,
    report: &Reporter,
) -> EngineResult<CheckItem> {
    let cfg = &c.target.config;
    let h = &c.host;
    let dir = ckpt_dir(&c.target);
    let Some(m) = read_manifest(h, &cfg.root).await? else {
        return Ok(CheckItem {
            check: "manifest",
            ok: false,
            detail: format!(
                "no checkpoint manifest at {}",
                recipe::manifest_path(&cfg.root)
            ),
            fix: Some(Fix::Setup),
        });
    };
    let hash = m.hash();
    if let Some(recorded) = &cfg.manifest_hash
        && recorded != &hash
    {
        return Ok(CheckItem {
            check: "manifest",
            ok: false,
            detail: format!(
                "the manifest at {} is not the one setup recorded (sha256 {} ≠ {})",
                recipe::manifest_path(&cfg.root),
                &hash[..16],
                &recorded[..recorded.len().min(16)]
            ),
            fix: Some(Fix::Setup),
        });
    }
    let now = listing(h, &dir).await?.unwrap_or_default();
    let mut diffs = m.compare(&now);
    if full {
        let present: Vec<&Entry> = m
            .entries
            .iter()
            .filter(|e| now.get(&e.path).is_some_and(|(s, _)| *s == e.size))
            .collect();
        let paths: Vec<String> = present.iter().map(|e| e.path.clone()).collect();
        let sizes: Vec<u64> = present.iter().map(|e| e.size).collect();
        let sums = hash_files(h, &dir, &paths, &sizes, report, "verify").await?;
        diffs.retain(|d| !matches!(d, Difference::Time(_)));
        for (e, sum) in present.iter().zip(sums) {
            if sum != e.sha256 {
                diffs.push(Difference::Content(e.path.clone()));
            }
        }
    }
    if diffs.is_empty() {
        return Ok(CheckItem {
            check: "manifest",
            ok: true,
            detail: format!(
                "{} match the manifest ({}; sha256 {})",
                amount_text(&m),
                if full {
                    "every file re-hashed"
                } else {
                    "sizes and times"
                },
                &hash[..16]
            ),
            fix: None,
        });
    }
    let shown: Vec<String> = diffs.iter().take(3).map(ToString::to_string).collect();
    let more = diffs.len().saturating_sub(3);
    let only_times = diffs.iter().all(|d| matches!(d, Difference::Time(_)));
    Ok(CheckItem {
        check: "manifest",
        ok: false,
        detail: format!(
            "{}{}",
            shown.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        ),
        fix: Some(if only_times {
            Fix::FullVerify
        } else {
            Fix::Redownload {
                files: diffs
                    .iter()
                    .filter_map(|d| match d {
                        Difference::Content(p) | Difference::Size { path: p, .. } => {
                            Some(format!("{dir}/{p}"))
                        }
                        _ => None,
                    })
                    .collect(),
            }
        }),
    })
}

/// `target verify`: the manifest (quick or full), then the checkpoints inside the image.
pub(super) async fn verify(
    _services: &Services,
    c: &Connected,
    full: bool,
    report: &Reporter,
) -> EngineResult<Vec<CheckItem>> {
    let mut items = vec![manifest_item(c, full, report).await?];
    items.push(in_image(c, &all_needs()).await?);
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_download_scripts_errors_are_read_with_their_causes() {
        let log = "Token is valid (permission: read).\n\
            Downloading nvidia/Cosmos-Transfer1-7B to checkpoints/nvidia/Cosmos-Transfer1-7B...\n\
            Error downloading meta-llama/Llama-Guard-3-8B: 403 Client Error. (Request ID: x)\n\
            \n\
            Cannot access gated repo for url https://huggingface.co/api/models/meta-llama/Llama-Guard-3-8B/revision/main.\n\
            Access to model meta-llama/Llama-Guard-3-8B is restricted and you are not in the authorized list.\n\
            Downloading google-t5/t5-11b to checkpoints/google-t5/t5-11b...\n\
            Checkpoint downloading done.\n";
        let errors = download_errors(log);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "meta-llama/Llama-Guard-3-8B");
        assert!(errors[0].1.contains("403 Client Error"));
        assert!(errors[0].1.contains("not in the authorized list"));
        assert!(download_errors("Downloading a/b...\n").is_empty());
    }

    #[test]
    fn every_need_is_listed_once() {
        let needs = all_needs();
        let mut sorted = needs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), needs.len());
        assert!(needs.contains(&"nvidia/Cosmos-Transfer1-7B/4kupscaler_control.pt"));
        assert!(needs.contains(&"IDEA-Research/grounding-dino-tiny"));
    }
}

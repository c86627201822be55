//! `target setup`: from a bare GPU host to a verified target, over the target's own
//! connection (reference §6). Each step looks first and is skipped when what it makes is there
//! and verified, so setup is safe to re-run and resumes where it stopped:
//!
//! 1. tools: docker and git on the host;
//! 2. checkout: cosmos-transfer1 cloned at the pinned commit (into a partial folder renamed
//!    into place, so an interrupted clone never looks finished);
//! 3. image: built from the checkout's Dockerfile as `cosmos-transfer1:<short commit>`, its
//!    id recorded;
//! 4. checkpoints: upstream's download script inside that image, detached (a dropped
//!    connection leaves it running; setup follows it again), the Hugging Face token only in an
//!    owner-only env file removed as soon as docker read it; then the model cache;
//! 5. manifest: path, size, time and sha256 of every checkpoint, written on the host;
//! 6. verify: every checkpoint a run needs is readable inside the image.

mod checkpoints;

use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

use cosmos_core::setup as recipe;
use cosmos_core::{RuntimeKind, Target};
use cosmos_remote::runtime::Docker;
use cosmos_remote::{Host, RemoteError, Stream, args};

use crate::Services;
use crate::error::{EngineError, EngineResult, ErrorKind};
pub(crate) use crate::lines::Lines;
use crate::targets::{CheckItem, Connected};

pub use checkpoints::VerifyRequest;

/// What `target setup` is asked to do.
#[derive(Debug, Clone)]
pub struct SetupRequest {
    pub target: String,
    /// The repository to clone (default upstream's).
    pub repo: Option<String>,
    /// The commit to check out (default the one cosmos was tested against).
    pub commit: Option<String>,
    /// Free space wanted for the checkpoints, less what is already there (GB).
    pub checkpoint_space_gb: f64,
    /// The model to set the target up for (default: the one it is for); another model than
    /// its own makes it that model's target once its image is built.
    pub model: Option<String>,
}

/// A step's progress, as it happens.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SetupEvent {
    /// A step begins.
    Step { step: &'static str, what: String },
    /// A step found its work done and verified.
    Skipped { step: &'static str, detail: String },
    /// A step finished its work.
    Done { step: &'static str, detail: String },
    /// A line of a step's output (git, docker build, the download script).
    Line { step: &'static str, line: String },
    /// Bytes and files so far (the download, the hashing).
    Amount {
        step: &'static str,
        bytes: u64,
        files: u64,
        of_files: Option<u64>,
    },
}

/// How setup ended: each step, whether it was skipped, how long it took; the target as
/// stored now.
#[derive(Debug, Clone, Serialize)]
pub struct SetupReport {
    pub target: Target,
    pub steps: Vec<StepOutcome>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    pub step: &'static str,
    pub skipped: bool,
    pub detail: String,
    pub millis: u64,
}

/// Reports setup's progress to whoever listens.
#[derive(Debug, Clone)]
pub(crate) struct Reporter(Option<UnboundedSender<SetupEvent>>);

impl Reporter {
    pub(crate) fn send(&self, e: SetupEvent) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(e);
        }
    }

    pub(crate) fn line(&self, step: &'static str, line: &str) {
        let line = line.trim_end();
        if !line.is_empty() {
            self.send(SetupEvent::Line {
                step,
                line: line.to_owned(),
            });
        }
    }
}

pub(crate) fn refuse(code: &'static str, message: String) -> EngineError {
    EngineError::refused(ErrorKind::Conflict, code, message)
}

/// Runs a command, handing each line of its output to `report` as it comes; returns its exit
/// code and its whole output.
pub(crate) async fn streamed(
    host: &Host,
    argv: &[String],
    report: &Reporter,
    step: &'static str,
) -> Result<(Option<u32>, String), RemoteError> {
    let mut text = String::new();
    let mut lines = Lines::default();
    let mut sink = |_: Stream, bytes: &[u8]| {
        lines.push(bytes, |l| {
            report.line(step, l);
            text.push_str(l);
            text.push('\n');
        });
    };
    let code = host.runner.stream(argv, &mut sink).await?;
    Ok((code, text))
}

/// The last non-empty lines of a command's output, for a one-line cause.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" ")
}

/// What the host has: docker, git, and the checkout's state, in one round trip.
/// `sh -c SCRIPT sh DIR DOCKER…`; prints `docker VERSION|missing WORDS`, `git VERSION|missing`,
/// then `at COMMIT`, `dirty COMMIT`, `broken`, `occupied` or `absent`.
const LOOK: &str = r#"d=$1; shift
if v=$("$@" version --format '{{.Server.Version}}' 2>&1); then echo "docker $v"; else echo "nodocker $v" | tr '\n' ' '; echo; fi
if v=$(git --version 2>/dev/null); then echo "git $v"; else echo "nogit"; fi
if [ -e "$d/.git" ]; then
  if h=$(git -C "$d" rev-parse HEAD 2>/dev/null); then
    if [ -n "$(git -C "$d" status --porcelain --untracked-files=no 2>/dev/null)" ]; then echo "dirty $h"; else echo "at $h"; fi
  else echo broken; fi
elif [ -d "$d" ] && [ -n "$(ls -A "$d" 2>/dev/null)" ]; then echo occupied
else echo absent; fi"#;

/// Clones into a partial folder and renames it into place once at the commit:
/// `sh -c SCRIPT sh REPO DIR COMMIT`.
const CLONE: &str = r#"repo=$1; d=$2; c=$3; p="$d.cosmos-partial"
rm -rf -- "$p" && mkdir -p -- "$(dirname -- "$d")" || exit 1
git clone --progress --no-checkout -- "$repo" "$p" || exit 1
git -C "$p" -c advice.detachedHead=false checkout --quiet --detach "$c^{commit}" || { echo "commit $c is not in $repo" >&2; exit 3; }
if [ -d "$d" ]; then rmdir -- "$d" || exit 1; fi
mv -- "$p" "$d""#;

/// Moves a clean checkout to another commit, fetching it when it is not there yet:
/// `sh -c SCRIPT sh DIR REPO COMMIT`.
const MOVE: &str = r#"d=$1; repo=$2; c=$3
git -C "$d" cat-file -e "$c^{commit}" 2>/dev/null || git -C "$d" fetch --quiet -- "$repo" || exit 1
git -C "$d" -c advice.detachedHead=false checkout --quiet --detach "$c^{commit}" || { echo "commit $c is not in $repo" >&2; exit 3; }"#;

struct Look {
    docker: Result<String, String>,
    git: bool,
    checkout: String,
}

fn parse_look(text: &str) -> Look {
    let mut lines = text.lines();
    let docker = match lines.next() {
        Some(l) if l.starts_with("docker ") => Ok(l["docker ".len()..].trim().to_owned()),
        Some(l) => Err(l.trim_start_matches("nodocker").trim().to_owned()),
        None => Err("no answer".into()),
    };
    let git = lines.next().is_some_and(|l| l.starts_with("git "));
    Look {
        docker,
        git,
        checkout: lines.next().unwrap_or("absent").trim().to_owned(),
    }
}

impl Services {
    /// Sets a target up from a bare host; see the module's documentation.
    pub(crate) async fn setup_target(
        &self,
        req: &SetupRequest,
        events: Option<UnboundedSender<SetupEvent>>,
    ) -> EngineResult<SetupReport> {
        let report = Reporter(events);
        let mut target = self.find_target(Some(&req.target)).await?;
        if target.config.runtime != RuntimeKind::Docker || target.config.rehearsal {
            return Err(EngineError::refused(
                ErrorKind::InvalidInput,
                "setup_needs_docker",
                format!(
                    "target `{}` runs the model as a plain process: setup builds a Docker image, so it sets up Docker targets only",
                    target.name
                ),
            ));
        }
        // The recipe of the model asked for, else of the one the target is for (its first).
        let model_name = match &req.model {
            Some(m) => m.clone(),
            None => target.config.models().first().cloned().unwrap_or_default(),
        };
        let model = cosmos_core::model::model(&model_name).map_err(|e| {
            EngineError::refused(ErrorKind::InvalidInput, "unknown_model", e.to_string())
        })?;
        let switching = !target.config.runs_model(model.name());
        let model_recipe = model.recipe();
        let repo = req
            .repo
            .clone()
            .unwrap_or_else(|| model_recipe.repository.to_owned());
        recipe::validate_repo(&repo).map_err(EngineError::Invalid)?;
        let commit = req
            .commit
            .clone()
            .unwrap_or_else(|| model_recipe.commit.to_owned());
        recipe::validate_commit(&commit).map_err(EngineError::Invalid)?;
        let c = self.connect(&target)?;
        let docker = crate::targets::docker_of(&target.config);
        let mut steps = Vec::new();
        let mut step = |name: &'static str, skipped: bool, detail: String, began: Instant| {
            report.send(if skipped {
                SetupEvent::Skipped {
                    step: name,
                    detail: detail.clone(),
                }
            } else {
                SetupEvent::Done {
                    step: name,
                    detail: detail.clone(),
                }
            });
            steps.push(StepOutcome {
                step: name,
                skipped,
                detail,
                millis: began.elapsed().as_millis() as u64,
            });
        };

        // 1. tools (and the checkout's state, in the same round trip).
        let began = Instant::now();
        report.send(SetupEvent::Step {
            step: "tools",
            what: format!("docker and git on {}", c.host.runner.describe()),
        });
        if let Some(ssh) = &c.ssh {
            ssh.connect().await?;
        }
        let dir = target.config.cosmos_dir.clone();
        let mut look_argv = args(&["sh", "-c", LOOK, "sh", &dir]);
        look_argv.extend(docker.docker(&[]));
        let look = parse_look(
            &c.host
                .ok("look at the host", &look_argv)
                .await?
                .stdout_text(),
        );
        let engine = look.docker.map_err(|words| {
            refuse(
                "setup_no_docker",
                format!(
                    "docker does not work for the login user on {} ({words}): install Docker Engine and let the user run it (the docker group, or passwordless sudo with the target's --docker-sudo)",
                    target.name
                ),
            )
        })?;
        if !look.git {
            return Err(refuse(
                "setup_no_git",
                format!(
                    "git is not installed on {}: install it there (`apt-get install git`), then run setup again",
                    target.name
                ),
            ));
        }
        // Another model's checkout is never turned into this one's: it needs its own folder.
        if switching && look.checkout.split_whitespace().next() != Some("absent") {
            return Err(refuse(
                "setup_other_model",
                format!(
                    "target `{}` is set up for {} and its checkout {dir} is there: {} needs its own checkout; give the target another folder (`cosmos target edit {} --cosmos-dir …`) or add a target for it",
                    target.name,
                    target.config.models().join(", "),
                    model.title(),
                    target.name
                ),
            ));
        }
        step("tools", true, format!("docker {engine}, git"), began);

        // 2. checkout.
        let began = Instant::now();
        report.send(SetupEvent::Step {
            step: "checkout",
            what: format!("{} at {commit} in {dir}", model_recipe.image_name),
        });
        let full = self
            .checkout_step(&c.host, &look.checkout, &dir, &repo, &commit, &report)
            .await?;
        let skipped = look.checkout == format!("at {full}");
        step("checkout", skipped, format!("{dir} at {full}"), began);

        // 3. image.
        let began = Instant::now();
        let short: String = full.chars().take(recipe::SHORT_COMMIT).collect();
        let tag = format!("{}:{short}", model_recipe.image_name);
        report.send(SetupEvent::Step {
            step: "image",
            what: format!("{tag} from {dir}/Dockerfile"),
        });
        let (id, built) = self
            .image_step(
                &c.host,
                &docker,
                &dir,
                &target.config.root,
                &tag,
                &full,
                &report,
            )
            .await?;
        step("image", !built, format!("{tag} ({id})"), began);
        target.config.image = tag;
        target.config.floating_image = false;
        target.config.image_digest = Some(id);
        target.config.checkout_commit = Some(full);
        // Its checkout and image are now this model's: runs of it are placed here.
        if switching {
            target.config.models = vec![model.name().to_owned()];
        }
        self.store().put_target(&target, true).await?;

        // 4–6. checkpoints, manifest, verify.
        let c = self.connect(&target)?;
        // Stores the target as each step records what it made (the manifest's hash last).
        match model_recipe.checkpoints {
            cosmos_core::model::CheckpointSource::DownloadScript(_) => {
                self.checkpoint_steps(&c, &mut target, &docker, req, &report, &mut step)
                    .await?;
            }
            cosmos_core::model::CheckpointSource::HubFiles(files) => {
                self.hub_steps(&c, &mut target, &docker, req, &report, &mut step, files)
                    .await?;
            }
        }
        Ok(SetupReport { target, steps })
    }

    async fn checkout_step(
        &self,
        host: &Host,
        state: &str,
        dir: &str,
        repo: &str,
        commit: &str,
        report: &Reporter,
    ) -> EngineResult<String> {
        let head = |s: &str| s.split_whitespace().nth(1).unwrap_or("").to_owned();
        match state.split_whitespace().next().unwrap_or("absent") {
            "at" if head(state).starts_with(&commit.to_ascii_lowercase()) => {
                return Ok(head(state));
            }
            "at" => {
                let (code, text) = streamed(
                    host,
                    &args(&["sh", "-c", MOVE, "sh", dir, repo, commit]),
                    report,
                    "checkout",
                )
                .await?;
                if code != Some(0) {
                    return Err(refuse(
                        "setup_checkout_failed",
                        format!(
                            "cannot move the checkout {dir} to commit {commit}: {}",
                            last_lines(&text, 2)
                        ),
                    ));
                }
            }
            "dirty" => {
                return Err(refuse(
                    "setup_checkout_changed",
                    format!(
                        "the checkout {dir} has local changes (`git -C {dir} status`): commit or discard them, or use another checkout folder"
                    ),
                ));
            }
            "broken" | "occupied" => {
                return Err(refuse(
                    "setup_checkout_occupied",
                    format!(
                        "{dir} exists and is not a git checkout setup can use: move it aside, or use another checkout folder"
                    ),
                ));
            }
            _ => {
                let (code, text) = streamed(
                    host,
                    &args(&["sh", "-c", CLONE, "sh", repo, dir, commit]),
                    report,
                    "checkout",
                )
                .await?;
                if code != Some(0) {
                    let cause = last_lines(&text, 2);
                    let fix = if cause.contains("Could not resolve host")
                        || cause.contains("unable to access")
                    {
                        ": the host cannot reach it; give a mirror or a path on the host as the repository"
                    } else {
                        ""
                    };
                    return Err(refuse(
                        "setup_clone_failed",
                        format!("cannot clone {repo} into {dir}: {cause}{fix}"),
                    ));
                }
            }
        }
        let out = host
            .ok(
                "read the checkout's commit",
                &args(&["git", "-C", dir, "rev-parse", "HEAD"]),
            )
            .await?;
        Ok(out.stdout_text().trim().to_owned())
    }

    /// The image's id, and whether it was built now. The build runs detached on the host
    /// (builds of the real image take long): a dropped connection leaves it running, and
    /// setup run again follows it to its end.
    #[allow(clippy::too_many_arguments)]
    async fn image_step(
        &self,
        host: &Host,
        docker: &Docker,
        dir: &str,
        root: &str,
        tag: &str,
        commit: &str,
        report: &Reporter,
    ) -> EngineResult<(String, bool)> {
        let inspect = docker.docker(&["image", "inspect", "--format", "{{.Id}}", tag]);
        let state = format!(
            "{}/build-{}",
            recipe::setup_dir(root),
            &commit[..commit.len().min(recipe::SHORT_COMMIT)]
        );
        // The image there: what a build that ended unseen left of its state goes too.
        let mut look = args(&["sh", "-c", HAVE_IMAGE, "sh", &state]);
        look.extend(inspect.iter().cloned());
        let out = host.runner.run(&look).await?;
        if out.success() {
            return Ok((out.stdout_text().trim().to_owned(), false));
        }
        let label = format!("cosmos.commit={commit}");
        let dockerfile = format!("{dir}/Dockerfile");
        let mut start = args(&["sh", "-c", BUILD, "sh", &state]);
        start.extend(docker.docker(&[
            "build",
            "--label",
            &label,
            "--tag",
            tag,
            "--file",
            &dockerfile,
            dir,
        ]));
        host.ok("start the image build", &start).await?;
        let lost = |e: RemoteError| {
            refuse(
                "setup_interrupted",
                format!(
                    "setup lost its connection during the image build ({e}); the build goes on on the host: run setup again to follow it and finish"
                ),
            )
        };
        let (_, _) = streamed(
            host,
            &args(&["sh", "-c", BUILD_FOLLOW, "sh", &state]),
            report,
            "image",
        )
        .await
        .map_err(lost)?;
        let ended = host
            .runner
            .run(&args(&["sh", "-c", BUILD_END, "sh", &state]))
            .await
            .map_err(lost)?;
        let text = ended.stdout_text();
        let (code, log) = text.split_once('\n').unwrap_or((text.as_str(), ""));
        if code.trim() != "0" {
            return Err(refuse(
                "setup_image_failed",
                format!(
                    "building {tag} from {dockerfile} failed: {}; run setup again once it is fixed (docker keeps the layers already built)",
                    last_lines(log, 3)
                ),
            ));
        }
        let out = host.ok("inspect the image built", &inspect).await?;
        Ok((out.stdout_text().trim().to_owned(), true))
    }
}

/// The image's id when it is there, clearing a finished build's state:
/// `sh -c SCRIPT sh STATE DOCKER IMAGE INSPECT…`.
const HAVE_IMAGE: &str = r#"s=$1; shift
"$@" || exit $?
if [ -d "$s" ]; then rm -rf -- "$s"; fi"#;

/// Starts the build detached in its own session, unless one is running or has ended:
/// `sh -c SCRIPT sh STATE DOCKER BUILD…`. Its output goes to STATE/log, its exit status to
/// STATE/exit (written whole).
const BUILD: &str = r#"s=$1; shift
mkdir -p -- "$s" || exit 1
[ -f "$s/exit" ] && exit 0
if [ -f "$s/pid" ] && kill -0 "$(cat "$s/pid")" 2>/dev/null; then exit 0; fi
rm -f -- "$s/log"
setsid sh -c '"$@" > "$0/log" 2>&1 < /dev/null; echo $? > "$0/exit.tmp" && mv -f "$0/exit.tmp" "$0/exit"' "$s" "$@" > /dev/null 2>&1 < /dev/null &
echo $! > "$s/pid""#;

/// Prints the build's log from the start and follows it until the build ends:
/// `sh -c SCRIPT sh STATE`.
const BUILD_FOLLOW: &str = r#"s=$1
[ -f "$s/exit" ] && exec cat -- "$s/log"
exec tail -c +1 -f --pid="$(cat "$s/pid")" -- "$s/log""#;

/// The build's exit status on the first line, then its log; the state is cleared so a later
/// setup starts a new build: `sh -c SCRIPT sh STATE`.
const BUILD_END: &str = r#"s=$1
i=0; while [ ! -f "$s/exit" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
cat -- "$s/exit" 2>/dev/null || echo 255
cat -- "$s/log" 2>/dev/null
rm -rf -- "$s""#;

impl Services {
    /// The `verify` step's items as setup's last step (and `target verify`).
    pub(crate) async fn verify_items(
        &self,
        c: &Connected,
        full: bool,
        report: &Reporter,
    ) -> EngineResult<Vec<CheckItem>> {
        checkpoints::verify(self, c, full, report).await
    }
}

/// Every checkpoint a run may need, readable inside the image (`target check`).
pub(crate) async fn in_image_all(c: &Connected) -> EngineResult<CheckItem> {
    checkpoints::in_image(c, &checkpoints::all_needs()).await
}

pub(crate) use checkpoints::{UNREADABLE, manifest_item};

/// The reporter of a front end's channel.
pub(crate) fn reporter(events: Option<UnboundedSender<SetupEvent>>) -> Reporter {
    Reporter(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_answer_is_read_line_by_line() {
        let l = parse_look("docker 27.1.0\ngit git version 2.47.3\nat 5005e823\n");
        assert_eq!(l.docker, Ok("27.1.0".into()));
        assert!(l.git);
        assert_eq!(l.checkout, "at 5005e823");
        let l = parse_look("nodocker permission denied while trying to connect \nnogit\nabsent\n");
        assert_eq!(
            l.docker,
            Err("permission denied while trying to connect".into())
        );
        assert!(!l.git);
        assert_eq!(l.checkout, "absent");
        let mut lines = Vec::new();
        let mut split = Lines::default();
        split.push(
            b"Fetching 3 files:  33%\rFetching 3 files: 100%\ndone",
            |l| lines.push(l.to_owned()),
        );
        assert_eq!(lines, ["Fetching 3 files:  33%", "Fetching 3 files: 100%"]);
        assert_eq!(last_lines("a\n\nb\nc\n", 2), "b c");
    }
}

//! How the model process is wrapped on a target: a detached Docker container, or a detached
//! plain process (the local rehearsal target runs cosmos-sim this way). Either way the model
//! outlives the orchestrator (invariant 1): starting is idempotent, state can be read back at
//! any time, and logs can be followed again from any byte offset.

use std::time::Duration;

use cosmos_core::launch::{ContainerLaunch, RunLayout, container_name, docker_run_argv};

use crate::{Host, RemoteError, RemoteResult, Stream, args};

/// How a target wraps the model process (DESIGN.md §3): started detached, its state read
/// back, its log followed from any offset, killed and removed. The engine knows a runtime
/// only through this trait.
#[async_trait::async_trait]
pub trait ModelRuntime: Send + Sync + std::fmt::Debug {
    /// The exact command that starts the model (what `--dry-run` shows).
    fn start_argv(&self, l: &Launch<'_>) -> Vec<String>;
    /// Environment lines the model needs beyond the target's own (its env file): where the
    /// target's Hugging Face cache is as the model sees it, and the devices when the runtime
    /// does not narrow them itself.
    fn env_lines(&self, cosmos_dir: &str, root: &str, devices: &[u32]) -> Vec<String>;
    /// What a run's event says once the model started.
    fn started(&self, job: &str) -> String;
    /// Starts the model detached with `argv` (from [`ModelRuntime::start_argv`]). Starting
    /// a run that was already started does nothing.
    async fn start(&self, host: &Host, argv: &[String]) -> RemoteResult<()>;
    async fn state(&self, host: &Host, job: &str, layout: &RunLayout) -> RemoteResult<ModelState>;
    /// As [`ModelRuntime::state`], and when the model has ended, its log kept in the run
    /// folder in the same round trip (`true` when it was).
    async fn state_keeping_log(
        &self,
        host: &Host,
        job: &str,
        layout: &RunLayout,
    ) -> RemoteResult<(ModelState, bool)>;
    /// Streams the model's combined output from byte `offset` on, until the model ends;
    /// `offset` advances with every byte delivered.
    async fn follow(
        &self,
        host: &Host,
        job: &str,
        layout: &RunLayout,
        offset: &mut u64,
        on_bytes: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> RemoteResult<()>;
    /// Keeps the full model log as run.log on the target.
    async fn save_log(&self, host: &Host, job: &str, layout: &RunLayout) -> RemoteResult<()>;
    async fn kill(&self, host: &Host, job: &str, layout: &RunLayout) -> RemoteResult<()>;
    /// Removes what is left of a finished model (a stopped container).
    async fn remove(&self, host: &Host, job: &str) -> RemoteResult<()>;
    /// Checks that the runtime works on the host (`docker version`); `None` when there is
    /// nothing to check. `Ok(detail)` or `Err(what went wrong)`.
    async fn check_engine(&self, host: &Host) -> RemoteResult<Option<Result<String, String>>>;
    /// Whether a container gets GPUs the way runs ask for them (`None` when the runtime
    /// passes no GPU request): the first GPU it sees, or the runtime's own words.
    async fn check_gpus(
        &self,
        _host: &Host,
        _image: &str,
    ) -> RemoteResult<Option<Result<String, String>>> {
        Ok(None)
    }
    /// The image's id on the host; `None` when the runtime uses no image.
    async fn check_image(
        &self,
        host: &Host,
        image: &str,
    ) -> RemoteResult<Option<Result<String, String>>>;
}

/// A detached Docker container named after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Docker {
    /// Prefix docker commands with `sudo -n`.
    pub sudo: bool,
    /// Pass `--gpus` (engines without GPUs reject it).
    pub gpu_flag: bool,
}

/// A plain detached process in its own session, in the cosmos checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process;

/// What became of a run's model process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    /// Never started (or already removed after collection).
    Absent,
    Running,
    Exited(i32),
    /// Started, but gone without an exit status: killed from outside.
    Vanished,
}

/// Everything needed to start one run's model.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    pub job: &'a str,
    pub layout: &'a RunLayout,
    pub root: &'a str,
    pub cosmos_dir: &'a str,
    pub image: &'a str,
    pub shm_size: &'a str,
    pub gpu_devices: &'a [u32],
    /// Extra container mounts, `HOST:CONTAINER[:ro]`.
    pub mounts: &'a [String],
    /// `torchrun … transfer.py …`.
    pub command: Vec<String>,
}

/// Starts a process detached, in its own session (so a terminal's Ctrl-C or the caller's
/// death cannot reach it), with its output in `run.log` and its exit status written
/// atomically to `exit_code`. A constant script: every value arrives as a positional argument.
/// Invoked as `sh -c SCRIPT SCRIPT start DIR WORKDIR ENVFILE ARGV…`, so `$0` is the script.
const PROCESS_SCRIPT: &str = r#"mode=$1; shift
d=$1; w=$2; e=$3
if [ "$mode" = start ]; then
  [ -e "$d/pid" ] && exit 0
  setsid sh -c "$0" "$0" run "$@" > /dev/null 2>&1 < /dev/null &
  echo $! > "$d/pid.tmp" && mv -f "$d/pid.tmp" "$d/pid"
  exit 0
fi
shift 3
cd "$w" || { echo 127 > "$d/exit_code"; exit 127; }
if [ -f "$e" ]; then
  while IFS= read -r l || [ -n "$l" ]; do
    case $l in [A-Za-z_]*=*) export "$l" ;; esac
  done < "$e"
fi
"$@" > "$d/run.log" 2>&1 < /dev/null
echo $? > "$d/exit_code.tmp" && mv -f "$d/exit_code.tmp" "$d/exit_code"
"#;

const PROCESS_STATE: &str = r#"d=$1
if [ -f "$d/exit_code" ]; then echo "exited $(cat "$d/exit_code")"
elif [ -f "$d/pid" ]; then
  if kill -0 "$(cat "$d/pid")" 2>/dev/null; then echo running; else echo vanished; fi
else echo absent; fi
"#;

const PROCESS_KILL: &str = r#"p=$(cat "$1/pid" 2>/dev/null) || exit 0
kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
"#;

/// `docker logs` of a container with both streams in one, in the engine's order.
const DOCKER_LOGS: &str = r#"exec "$@" 2>&1"#;

/// Saves the container's whole log as run.log, atomically.
/// The state of a run's container and, once it has exited, its log saved to the run folder,
/// in one round trip: `sh -c SCRIPT sh LOG NAME DOCKER…`. Prints the state, then `saved`.
const DOCKER_END: &str = r#"out=$1; name=$2; shift 2
s=$("$@" inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$name") || exit 3
echo "$s"
case $s in exited*|dead*) "$@" logs "$name" > "$out.tmp" 2>&1 && mv -f "$out.tmp" "$out" && echo saved ;; esac
exit 0"#;

const DOCKER_SAVE_LOG: &str = r#"out=$1; shift
"$@" > "$out.tmp" 2>&1 && mv -f "$out.tmp" "$out""#;

/// `docker inspect`'s `{{.State.Status}} {{.State.ExitCode}}` as a model state.
fn docker_state(text: &str) -> ModelState {
    let mut words = text.split_whitespace();
    let status = words.next().unwrap_or("");
    let code: i32 = words.next().and_then(|c| c.parse().ok()).unwrap_or(-1);
    match status {
        "exited" | "dead" => ModelState::Exited(code),
        _ => ModelState::Running,
    }
}

/// How a start command ended: fine when it succeeded or the model had `already` started.
/// What docker said went wrong: its error lines without the `Run 'docker run --help'`
/// boilerplate that follows them (the last line, and the least useful).
fn docker_words(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Run '") && !l.starts_with("See '"))
        .collect();
    (!lines.is_empty()).then(|| lines.join(" "))
}

fn started_or_failed(out: &crate::Output, already: bool) -> RemoteResult<()> {
    if out.success() || already {
        return Ok(());
    }
    Err(RemoteError::Command {
        what: "start the model".into(),
        code: out.code,
        message: out.last_words(),
    })
}

impl Docker {
    /// `docker …` (or `sudo -n docker …`) as this runtime runs it.
    pub fn docker(&self, rest: &[&str]) -> Vec<String> {
        let mut argv = if self.sudo {
            args(&["sudo", "-n", "docker"])
        } else {
            args(&["docker"])
        };
        argv.extend(rest.iter().map(|s| (*s).to_owned()));
        argv
    }

    fn inspect_failed(out: &crate::Output) -> RemoteResult<ModelState> {
        let words = out.last_words();
        if words.contains("No such object") || words.contains("No such container") {
            return Ok(ModelState::Absent);
        }
        Err(RemoteError::Command {
            what: "docker inspect".into(),
            code: out.code,
            message: words,
        })
    }
}

#[async_trait::async_trait]
impl ModelRuntime for Docker {
    fn start_argv(&self, l: &Launch<'_>) -> Vec<String> {
        let env_file = l.layout.env_file();
        let mut argv = docker_run_argv(&ContainerLaunch {
            job: l.job,
            image: l.image,
            gpu_devices: self.gpu_flag.then_some(l.gpu_devices),
            shm_size: l.shm_size,
            cosmos_dir: l.cosmos_dir,
            root: l.root,
            mounts: l.mounts,
            env_file: Some(&env_file),
            command: l.command.clone(),
        });
        argv.splice(0..1, self.docker(&[]));
        argv
    }

    fn env_lines(&self, _cosmos_dir: &str, _root: &str, devices: &[u32]) -> Vec<String> {
        let mut lines = vec![format!("HF_HOME={}", cosmos_core::setup::CONTAINER_HF_HOME)];
        // `--gpus device=…` renumbers the devices inside the container; without it the model
        // sees every GPU and is told which are its own.
        if !self.gpu_flag {
            let devices: Vec<String> = devices.iter().map(u32::to_string).collect();
            lines.push(format!("CUDA_VISIBLE_DEVICES={}", devices.join(",")));
        }
        lines
    }

    fn started(&self, job: &str) -> String {
        format!("container {} started", container_name(job))
    }

    async fn start(&self, host: &Host, argv: &[String]) -> RemoteResult<()> {
        let out = host.runner.run(argv).await?;
        // A container of that name: an earlier driver started it.
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.success() || stderr.contains("is already in use") {
            return Ok(());
        }
        // `docker run -d` that failed leaves a container that never ran (`Created`): remove
        // it, so nothing is left behind and a later start is not taken for an earlier one.
        if let Some(name) = argv
            .iter()
            .position(|a| a == "--name")
            .and_then(|i| argv.get(i + 1))
        {
            let _ = host
                .runner
                .run(&self.docker(&["rm", "--force", name]))
                .await;
        }
        Err(RemoteError::Command {
            what: "start the model".into(),
            code: out.code,
            message: docker_words(&stderr).unwrap_or_else(|| out.last_words()),
        })
    }

    async fn check_gpus(
        &self,
        host: &Host,
        image: &str,
    ) -> RemoteResult<Option<Result<String, String>>> {
        if !self.gpu_flag {
            return Ok(None);
        }
        // As a run asks for them: `--gpus device=0`, the image's own nvidia-smi (the
        // NVIDIA runtime mounts it in).
        let out = host
            .runner
            .run(&self.docker(&[
                "run",
                "--rm",
                "--gpus",
                "device=0",
                "--entrypoint",
                "nvidia-smi",
                image,
                "-L",
            ]))
            .await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        Ok(Some(if out.success() {
            Ok(out
                .stdout_text()
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned())
        } else {
            Err(docker_words(&stderr).unwrap_or_else(|| out.last_words()))
        }))
    }

    async fn state(&self, host: &Host, job: &str, _layout: &RunLayout) -> RemoteResult<ModelState> {
        let name = container_name(job);
        let argv = self.docker(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            &name,
        ]);
        let out = host.runner.run(&argv).await?;
        if !out.success() {
            return Self::inspect_failed(&out);
        }
        Ok(docker_state(&out.stdout_text()))
    }

    async fn state_keeping_log(
        &self,
        host: &Host,
        job: &str,
        layout: &RunLayout,
    ) -> RemoteResult<(ModelState, bool)> {
        let mut argv = args(&["sh", "-c", DOCKER_END, "sh", &layout.log()]);
        argv.push(container_name(job));
        argv.extend(self.docker(&[]));
        let out = host.runner.run(&argv).await?;
        if !out.success() {
            return Self::inspect_failed(&out).map(|s| (s, false));
        }
        let text = out.stdout_text();
        let mut lines = text.lines();
        let state = docker_state(lines.next().unwrap_or(""));
        Ok((state, lines.any(|l| l == "saved")))
    }

    async fn follow(
        &self,
        host: &Host,
        job: &str,
        _layout: &RunLayout,
        offset: &mut u64,
        on_bytes: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> RemoteResult<()> {
        let mut argv = args(&["sh", "-c", DOCKER_LOGS, "sh"]);
        argv.extend(self.docker(&["logs", "--follow", &container_name(job)]));
        let mut seen = 0u64;
        let skip = *offset;
        let mut sink = |_: Stream, bytes: &[u8]| {
            let start = seen;
            seen += bytes.len() as u64;
            if seen <= skip {
                return;
            }
            let from = skip.saturating_sub(start) as usize;
            on_bytes(&bytes[from..]);
            *offset = seen;
        };
        host.runner.stream(&argv, &mut sink).await.map(drop)
    }

    async fn save_log(&self, host: &Host, job: &str, layout: &RunLayout) -> RemoteResult<()> {
        let mut argv = args(&["sh", "-c", DOCKER_SAVE_LOG, "sh", &layout.log()]);
        argv.extend(self.docker(&["logs", &container_name(job)]));
        host.ok("save the model log", &argv).await.map(drop)
    }

    async fn kill(&self, host: &Host, job: &str, _layout: &RunLayout) -> RemoteResult<()> {
        let out = host
            .runner
            .run(&self.docker(&["kill", &container_name(job)]))
            .await?;
        let words = out.last_words();
        if out.success() || words.contains("is not running") || words.contains("No such container")
        {
            return Ok(());
        }
        Err(RemoteError::Command {
            what: "docker kill".into(),
            code: out.code,
            message: words,
        })
    }

    async fn remove(&self, host: &Host, job: &str) -> RemoteResult<()> {
        let out = host
            .runner
            .run(&self.docker(&["rm", "--force", &container_name(job)]))
            .await?;
        if !out.success() && !out.last_words().contains("No such container") {
            return Err(RemoteError::Command {
                what: "docker rm".into(),
                code: out.code,
                message: out.last_words(),
            });
        }
        Ok(())
    }

    async fn check_engine(&self, host: &Host) -> RemoteResult<Option<Result<String, String>>> {
        let out = host
            .runner
            .run(&self.docker(&["version", "--format", "{{.Server.Version}}"]))
            .await?;
        Ok(Some(if out.success() {
            Ok(format!("engine {}", out.stdout_text().trim()))
        } else {
            Err(out.last_words())
        }))
    }

    async fn check_image(
        &self,
        host: &Host,
        image: &str,
    ) -> RemoteResult<Option<Result<String, String>>> {
        let out = host
            .runner
            .run(&self.docker(&["image", "inspect", "--format", "{{.Id}}", image]))
            .await?;
        Ok(Some(if out.success() {
            Ok(out.stdout_text().trim().to_owned())
        } else {
            Err(out.last_words())
        }))
    }
}

#[async_trait::async_trait]
impl ModelRuntime for Process {
    fn start_argv(&self, l: &Launch<'_>) -> Vec<String> {
        let mut argv = args(&[
            "sh",
            "-c",
            PROCESS_SCRIPT,
            PROCESS_SCRIPT,
            "start",
            l.layout.dir(),
            l.cosmos_dir,
        ]);
        argv.push(l.layout.env_file());
        argv.extend(l.command.iter().cloned());
        argv
    }

    fn env_lines(&self, cosmos_dir: &str, root: &str, devices: &[u32]) -> Vec<String> {
        let devices: Vec<String> = devices.iter().map(u32::to_string).collect();
        vec![
            format!("PYTHONPATH={cosmos_dir}"),
            format!("HF_HOME={}", cosmos_core::setup::hf_cache(root)),
            format!("CUDA_VISIBLE_DEVICES={}", devices.join(",")),
        ]
    }

    fn started(&self, _job: &str) -> String {
        "model process started".into()
    }

    async fn start(&self, host: &Host, argv: &[String]) -> RemoteResult<()> {
        // The script starts nothing when a pid file says it started already.
        let out = host.runner.run(argv).await?;
        started_or_failed(&out, false)
    }

    async fn state(&self, host: &Host, _job: &str, layout: &RunLayout) -> RemoteResult<ModelState> {
        let out = host
            .ok(
                "read the model's state",
                &args(&["sh", "-c", PROCESS_STATE, "sh", layout.dir()]),
            )
            .await?;
        let text = out.stdout_text();
        let mut words = text.split_whitespace();
        Ok(match words.next() {
            Some("exited") => {
                ModelState::Exited(words.next().and_then(|c| c.parse().ok()).unwrap_or(-1))
            }
            Some("running") => ModelState::Running,
            Some("vanished") => ModelState::Vanished,
            _ => ModelState::Absent,
        })
    }

    async fn state_keeping_log(
        &self,
        host: &Host,
        job: &str,
        layout: &RunLayout,
    ) -> RemoteResult<(ModelState, bool)> {
        // A plain process writes its log in the run folder itself.
        Ok((self.state(host, job, layout).await?, true))
    }

    async fn follow(
        &self,
        host: &Host,
        job: &str,
        layout: &RunLayout,
        offset: &mut u64,
        on_bytes: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> RemoteResult<()> {
        let log = layout.log();
        let mut idle = Duration::from_millis(10);
        loop {
            let chunk = host.files.read_at(&log, *offset, 1 << 20).await?;
            if !chunk.is_empty() {
                *offset += chunk.len() as u64;
                on_bytes(&chunk);
                idle = Duration::from_millis(10);
                continue;
            }
            if self.state(host, job, layout).await? != ModelState::Running {
                // One last read: output written between the read and the check.
                let rest = host.files.read_at(&log, *offset, usize::MAX >> 1).await?;
                if !rest.is_empty() {
                    *offset += rest.len() as u64;
                    on_bytes(&rest);
                }
                return Ok(());
            }
            tokio::time::sleep(idle).await;
            idle = (idle * 2).min(Duration::from_millis(200));
        }
    }

    async fn save_log(&self, _host: &Host, _job: &str, _layout: &RunLayout) -> RemoteResult<()> {
        Ok(())
    }

    async fn kill(&self, host: &Host, _job: &str, layout: &RunLayout) -> RemoteResult<()> {
        host.ok(
            "kill the model",
            &args(&["sh", "-c", PROCESS_KILL, "sh", layout.dir()]),
        )
        .await
        .map(drop)
    }

    async fn remove(&self, _host: &Host, _job: &str) -> RemoteResult<()> {
        Ok(())
    }

    async fn check_engine(&self, _host: &Host) -> RemoteResult<Option<Result<String, String>>> {
        Ok(None)
    }

    async fn check_image(
        &self,
        _host: &Host,
        _image: &str,
    ) -> RemoteResult<Option<Result<String, String>>> {
        Ok(None)
    }
}

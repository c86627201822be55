//! `cosmos run` on a real SSH target: the test kit's sshd, the real Docker engine and the
//! cosmos-sim image. Host keys, transfers, the container, crash recovery and secrets.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::support::{Home, Out, s};
use cosmos_testkit::{HostOptions, SshHost, sim_image};

/// The model a test's targets are set up for and its runs use: a test written for
/// Transfer1 runs again as its Transfer2.5 twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Model {
    T1,
    T25,
}

impl Model {
    /// Makes `home`'s runs use this model unless they name one (`[defaults] model`).
    pub(super) fn configure(self, home: &Home) {
        if self == Model::T25 {
            std::fs::create_dir_all(home.home()).expect("home");
            std::fs::write(
                home.home().join("cosmos.toml"),
                "[defaults]\nmodel = \"transfer2.5\"\n",
            )
            .expect("config");
        }
    }

    /// Prepares a fixture host's checkout for this model; the flags `target add` needs.
    pub(super) fn prepare(self, host: &SshHost) -> Vec<String> {
        match self {
            Model::T1 => Vec::new(),
            Model::T25 => {
                super::models::transfer25_checkout(&host.cosmos_dir());
                vec!["--model".into(), "transfer2.5".into()]
            }
        }
    }

    /// The run's video among its outputs, as the model names it.
    pub(super) fn video(self, run_id: &str) -> String {
        match self {
            Model::T1 => "output.mp4".into(),
            Model::T25 => format!("{run_id}.mp4"),
        }
    }

    /// Whether a path cosmos printed is a run's video (`outputs/<run id>/<video>`).
    pub(super) fn is_video(self, path: &str) -> bool {
        let mut parts = path.trim().rsplit('/');
        let (Some(file), Some(run)) = (parts.next(), parts.next()) else {
            return false;
        };
        file == self.video(run)
    }

    /// The prompt file it writes beside the video.
    pub(super) fn text(self, run_id: &str) -> String {
        match self {
            Model::T1 => "output.txt".into(),
            Model::T25 => format!("{run_id}.txt"),
        }
    }

    /// Its entry point, as `ps` shows it.
    pub(super) fn script(self) -> &'static str {
        match self {
            Model::T1 => "transfer.py",
            Model::T25 => "examples/inference.py",
        }
    }

    /// What its log says once the video is saved.
    pub(super) fn saved(self) -> &'static str {
        match self {
            Model::T1 => "Saved video to",
            Model::T25 => "Generated video saved to",
        }
    }

    /// A line its log has once per model process.
    pub(super) fn once(self) -> &'static str {
        match self {
            Model::T1 => "final args",
            Model::T25 => "Saved config to",
        }
    }
}

struct Remote {
    home: Home,
    host: SshHost,
    model: Model,
}

impl Remote {
    /// A home with a target `gpu` on a fresh sshd; `env` goes to the model.
    fn new(env: &[&str]) -> Self {
        Self::with_model(Model::T1, env)
    }

    /// The same for `model`: its target set up for it, and its runs using it by default
    /// (`[defaults] model`).
    fn with_model(model: Model, env: &[&str]) -> Self {
        let home = Home::new();
        model.configure(&home);
        let host = SshHost::start().expect("sshd fixture");
        let r = Remote { home, host, model };
        r.add_target("gpu", &r.host, env);
        r
    }

    fn add_target(&self, name: &str, host: &SshHost, env: &[&str]) {
        let extra = self.model.prepare(host);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        add_fixture_target(&self.home, name, host, env, &extra);
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let home = self.home.path().display().to_string();
        let mut all: Vec<(&str, &str)> = vec![("HOME", home.as_str())];
        all.extend_from_slice(env);
        self.home.run_with(args, &all)
    }

    fn records(&self) -> Vec<Value> {
        let path = self.host.record_file();
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("record line"))
            .collect()
    }
}

/// `cosmos target add NAME` for a fixture host (8 GPU slots unless `extra` says otherwise),
/// its model recording every start in the host's record file.
pub(super) fn add_fixture_target(
    home: &Home,
    name: &str,
    host: &SshHost,
    env: &[&str],
    extra: &[&str],
) {
    let url = format!("ssh://{}@127.0.0.1:{}", host.user(), host.port());
    let mut args = fixture_target_add(name, &url, host);
    args.push("--key".into());
    args.push(host.client_key().display().to_string());
    if !extra.contains(&"--gpus") {
        args.extend(["--gpus".into(), "8".into()]);
    }
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    for e in env {
        args.extend(["--env".into(), (*e).to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let home_dir = home.path().display().to_string();
    home.run_with(&args, &[("HOME", home_dir.as_str())]).ok();
}

/// `cosmos target add NAME DESTINATION …` with a fixture host's root, checkout, the sim
/// image, no GPU flag, and its model recording every start in the host's record file.
pub(super) fn fixture_target_add(name: &str, destination: &str, host: &SshHost) -> Vec<String> {
    let image = sim_image().expect("sim image");
    let record = format!("COSMOS_SIM_RECORD={}", host.record_file().display());
    let gpu_state = format!("COSMOS_SIM_GPU_STATE={}", host.gpu_state_dir().display());
    let mut args: Vec<String> = ["target", "add", name, destination]
        .map(str::to_owned)
        .to_vec();
    args.extend([
        "--root".into(),
        host.root().display().to_string(),
        "--cosmos-dir".into(),
        host.cosmos_dir().display().to_string(),
        "--image".into(),
        image,
        "--no-gpu-flag".into(),
        "--env".into(),
        record,
        "--env".into(),
        gpu_state,
        "--mount".into(),
        host.records_mount(),
    ]);
    args
}

pub(super) fn containers(run_id: &str) -> String {
    let out = Command::new("docker")
        .args(["ps", "--all", "--quiet", "--filter"])
        .arg(format!("label=cosmos.run={run_id}"))
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub(super) fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned()
}

per_model!(
    a_run_reaches_a_verified_video_through_ssh_and_docker,
    transfer25_a_run_reaches_a_verified_video_through_ssh_and_docker,
    verified_video_over_ssh
);

fn verified_video_over_ssh(model: Model) {
    let r = Remote::with_model(model, &[]);
    let scene = r.home.standard_scene("shot");

    // Unknown host key: refused before anything is stored, with the command that trusts it.
    r.run(&["run", "a harbour", s(&scene)])
        .fails_with("not trusted yet")
        .fails_with("hint: cosmos target trust gpu");
    assert_eq!(
        r.run(&["list", "--json"])
            .ok()
            .json()
            .as_array()
            .map(Vec::len),
        Some(0)
    );

    // Trusting asks first; no answer but yes pins anything.
    r.run(&["target", "trust", "gpu"])
        .fails_with("not pinned: pass --yes to pin without asking");
    let ask = |answer: &[u8]| {
        use std::io::Write as _;
        let (mut keys, terminal) = pseudo_terminal();
        keys.write_all(answer).expect("type the answer");
        let home = r.home.path().display().to_string();
        let out = r
            .home
            .command(&["target", "trust", "gpu"])
            .env("HOME", &home)
            .stdin(terminal)
            .output()
            .expect("cosmos target trust");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = ask(b"n\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("Pin this key for `gpu`? [y/N]"), "{stderr}");
    assert!(
        stderr.contains("presents ssh-ed25519 key SHA256:"),
        "{stderr}"
    );
    r.run(&["run", "a harbour", s(&scene)])
        .fails_with("not trusted yet");
    let (code, stdout, stderr) = ask(b"y\n");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("SHA256:"), "{stdout}");
    let fp = r.run(&["target", "trust", "gpu", "--yes"]).ok();
    assert!(fp.stdout.starts_with("SHA256:"), "{}", fp.stdout);
    assert!(fp.stderr.contains("already trusted"), "{}", fp.stderr);
    let check = r.run(&["target", "check", "gpu", "--json"]);
    let report = check.json();
    assert_eq!(report["ok"], true, "{}", check.stdout);
    let checks: Vec<&str> = report["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["check"].as_str().unwrap_or(""))
        .collect();
    for wanted in [
        "reachable",
        "host key",
        "docker",
        "image",
        "checkpoints",
        "gpus",
        "disk",
        "root writable",
    ] {
        assert!(checks.contains(&wanted), "{wanted} missing from {checks:?}");
    }

    // A prompt full of shell syntax reaches the model byte for byte and runs nothing.
    let pwned = r.home.path().join("pwned");
    let text = format!(
        "harbour '; rm -rf ~ # $(touch {p}) `touch {p}` \"quoted\"\nsecond line, café 港口 🌊",
        p = pwned.display()
    );
    let secret = "hf_do_not_leak_4242";
    let out = r
        .run_with(
            &["run", &text, s(&scene), "--json"],
            &[("COSMOS_SECRETS_HF_TOKEN", secret)],
        )
        .ok();
    let run = out.json();
    assert_eq!(run["status"], "succeeded", "{}", out.stderr);
    let id = run["id"].as_str().expect("id").to_owned();
    assert!(!pwned.exists(), "a prompt executed a command");

    // The output was downloaded, verified and stored under the data directory.
    let outputs = run["outputs"].as_array().expect("outputs");
    let main = Path::new(outputs[0]["path"].as_str().expect("path"));
    assert!(main.ends_with(model.video(&id)), "{main:?}");
    assert!(main.starts_with(r.home.home().join("outputs").join(&id)));
    assert_eq!(sha256(main), outputs[0]["sha256"].as_str().expect("sha"));

    // The spec on the target holds the prompt exactly.
    let run_dir = r.host.root().join("runs").join(&id);
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("spec.json")).expect("spec"))
            .expect("spec json");
    assert_eq!(spec["prompt"].as_str(), Some(text.as_str()));
    assert!(
        run_dir.join("run.log").is_file(),
        "run.log is kept on the target"
    );

    // Exactly one model process ran, in a container that is gone now.
    let records = r.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["exit_code"], 0);
    assert_eq!(containers(&id), "", "the container was not removed");

    // The secret: a run needs none, so it reaches no run, and the env file (settings only)
    // is gone once the run ended.
    assert!(
        !run_dir.join("env").exists(),
        "the env file outlived the run"
    );
    let mut stack = vec![r.host.root()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(secret),
                    "{} on the target holds the secret",
                    p.display()
                );
            }
        }
    }
    for file in ["cosmos.db", "cosmos.db-wal"] {
        let p = r.home.home().join(file);
        if let Ok(bytes) = std::fs::read(&p) {
            assert!(
                !String::from_utf8_lossy(&bytes).contains(secret),
                "{} holds the secret",
                p.display()
            );
        }
    }
    let local_log =
        std::fs::read_to_string(r.home.home().join("logs").join(format!("{id}.log"))).expect("log");
    assert!(local_log.contains(model.saved()));
    assert!(!local_log.contains(secret));
    assert!(!records[0]["argv"].to_string().contains(secret));

    // Same inputs again: nothing is uploaded.
    let again = r
        .run(&["run", "a second harbour", s(&scene), "--json"])
        .ok()
        .json();
    assert_eq!(again["status"], "succeeded");
    let shown = r
        .run(&["show", again["id"].as_str().expect("id"), "--json"])
        .ok()
        .json();
    let events = shown["events"].to_string();
    assert!(events.contains("nothing uploaded"), "{events}");
}

#[test]
fn failures_are_classified_with_cosmos_s_reason() {
    let r = Remote::new(&[]);
    r.run(&["target", "trust", "gpu", "--yes"]).ok();
    let scene = r.home.standard_scene("shot");
    let out = r.run(&["run", "a forbiddenfruit on a table", s(&scene), "--json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let run = out.json();
    assert_eq!(run["status"], "failed");
    let reason = run["failure_reason"].as_str().unwrap_or("");
    assert!(reason.contains("guardrail blocked"), "{reason}");
    assert!(reason.contains("GUARDRAIL BLOCKED"), "{reason}");
}

pub(super) fn wait_for(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn only_run(r: &Remote) -> Value {
    let list = r.run(&["list", "--json"]).ok().json();
    list.as_array()
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or(Value::Null)
}

const SECRET: &str = "hf_never_on_a_command_line_7131";

per_model!(
    killing_cosmos_mid_run_loses_nothing_and_never_runs_twice,
    transfer25_killing_cosmos_mid_run_loses_nothing_and_never_runs_twice,
    mid_run_kill
);

fn mid_run_kill(model: Model) {
    let r = Remote::with_model(model, &["COSMOS_SIM_LOAD_SECONDS=2"]);
    r.run(&["target", "trust", "gpu", "--yes"]).ok();
    let scene = r.home.standard_scene("shot");
    let home = r.home.path().display().to_string();
    // Reattached by `cosmos logs -f`, then adopted by the next `cosmos run` (a read such as
    // `cosmos status` answers at once and leaves it to a driver).
    for (round, reconcile) in [["logs", "-f"], ["run", "adopter"]].iter().enumerate() {
        let mut child = r
            .home
            .command(&["run", &format!("take {round}"), s(&scene)])
            .env("HOME", &home)
            .env("COSMOS_SECRETS_HF_TOKEN", SECRET)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cosmos run");
        let mut id = String::new();
        wait_for("the run to be running", Duration::from_secs(60), || {
            let run = only_run(&r);
            id = run["id"].as_str().unwrap_or("").to_owned();
            run["status"] == "running" && run["id"] != Value::Null && {
                // Newest first: make sure it is this round's run.
                run["prompt_text"] == format!("take {round}")
            }
        });
        // While the model runs, no command line on the machine shows the secret.
        let ps = Command::new("ps")
            .args(["-e", "-ww", "-o", "args="])
            .output()
            .expect("ps");
        let ps = String::from_utf8_lossy(&ps.stdout);
        assert!(
            ps.contains(model.script()),
            "the model is not running:\n{ps}"
        );
        assert!(!ps.contains(SECRET), "a command line shows the secret");
        child.kill().expect("kill -9");
        let _ = child.wait();
        assert_eq!(
            only_run(&r)["status"],
            "running",
            "the run must outlive its driver"
        );

        let mut args: Vec<&str> = reconcile.to_vec();
        if args[0] == "logs" {
            args.insert(1, &id);
        } else {
            let began = std::time::Instant::now();
            let status = r.run(&["status", "--json"]).ok().json();
            assert!(began.elapsed() < Duration::from_secs(3), "status waited");
            assert_eq!(status["running"][0]["run"]["status"], "running", "{status}");
            args.push(s(&scene));
        }
        let out = r.run(&args).ok();
        if args[0] == "logs" {
            assert!(out.stdout.contains(model.saved()), "{}", out.stdout);
        }
        let run = r.run(&["show", &id, "--json"]).ok().json();
        assert_eq!(run["run"]["status"], "succeeded", "{run}");
        assert_eq!(containers(&id), "");
        let log = std::fs::read_to_string(r.home.home().join("logs").join(format!("{id}.log")))
            .expect("log");
        assert_eq!(
            log.matches(model.once()).count(),
            1,
            "duplicated log lines:\n{log}"
        );
        assert_eq!(log.matches(model.saved()).count(), 1, "{log}");
    }
    // One model process per run, ever: two takes and the adopter's own run.
    let records = r.records();
    assert_eq!(records.len(), 3, "{records:?}");
    // Each start read its own run's spec.
    let mut specs: Vec<String> = records
        .iter()
        .filter_map(|rec| {
            rec["argv"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .find(|a| a.ends_with("spec.json"))
                .map(str::to_owned)
        })
        .collect();
    specs.sort();
    specs.dedup();
    assert_eq!(specs.len(), 3, "a run started twice: {records:?}");
}

/// A scene whose colour video is padded with an MP4 `free` box to `mib` MiB, so transfers
/// last long enough to be interrupted. The model copies the colour video as its output, so
/// the download is as large.
pub(super) fn large_scene(home: &Home, mib: u64) -> std::path::PathBuf {
    use std::io::Write as _;
    let scene = home.standard_scene("large");
    let color = scene.join("shot_color.mp4");
    let len = std::fs::metadata(&color).expect("colour video").len();
    let pad = (mib << 20) - len;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&color)
        .expect("open colour video");
    let size = u32::try_from(pad).expect("a free box under 4 GiB");
    f.write_all(&size.to_be_bytes()).expect("box size");
    f.write_all(b"free").expect("box type");
    f.set_len(len + pad).expect("pad");
    scene
}

/// Files under `dir` whose name ends with `.part` and that hold at least one byte.
pub(super) fn partial_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "part")
                && entry.metadata().is_ok_and(|m| m.len() > 0)
            {
                found.push(p);
            }
        }
    }
    found
}

/// The messages of a run's events, from `cosmos show ID --json`.
fn event_messages(shown: &Value) -> Vec<String> {
    shown["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect()
}

fn run_by_prompt(r: &Remote, text: &str) -> Value {
    let list = r.run(&["list", "--json"]).ok().json();
    list.as_array()
        .and_then(|a| a.iter().find(|run| run["prompt_text"] == text).cloned())
        .unwrap_or(Value::Null)
}

per_model!(
    killing_cosmos_mid_transfer_resumes_and_never_runs_twice,
    transfer25_killing_cosmos_mid_transfer_resumes_and_never_runs_twice,
    mid_transfer_kill
);

fn mid_transfer_kill(model: Model) {
    let r = Remote::with_model(model, &[]);
    r.run(&["target", "trust", "gpu", "--yes"]).ok();
    let scene = large_scene(&r.home, 384);
    let home = r.home.path().display().to_string();
    let spawn = |text: &str| {
        r.home
            .command(&["run", text, s(&scene)])
            .env("HOME", &home)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cosmos run")
    };
    let inputs_size: u64 = std::fs::read_dir(&scene)
        .expect("scene")
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();

    // Starts `cosmos run TEXT`, kills it -9 once a partial file shows up under `dir`, and
    // returns the run's id after checking it was left in `status`.
    let kill_mid_transfer = |text: &str, dir: &Path, status: &str| {
        let mut child = spawn(text);
        wait_for(text, Duration::from_secs(60), || {
            !partial_files(dir).is_empty()
        });
        child.kill().expect("kill -9");
        let _ = child.wait();
        let run = run_by_prompt(&r, text);
        assert_eq!(run["status"], status, "{run}");
        run["id"].as_str().expect("id").to_owned()
    };

    // 1. Killed while uploading: `cosmos logs -f` resumes the upload from what arrived.
    let id = kill_mid_transfer("upload", &r.host.root().join("blobs"), "staging");
    r.run(&["logs", "-f", &id]).ok();
    let shown = r.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["run"]["status"], "succeeded", "{shown}");
    let uploaded: u64 = shown["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .find_map(|m| m.strip_prefix("uploaded "))
        .and_then(|m| m.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("an upload event");
    assert!(
        uploaded < inputs_size,
        "the resumed upload sent {uploaded} of {inputs_size} bytes: it started over"
    );
    // The upload's progress is in the store as it goes, before the upload's end.
    let messages = event_messages(&shown);
    let first_step = messages
        .iter()
        .position(|m| m.starts_with("uploading inputs: ") && m.ends_with("% of 384.0 MiB"));
    let end = messages.iter().position(|m| m.starts_with("uploaded "));
    assert!(
        first_step.is_some() && first_step < end,
        "no upload progress before the upload's end: {messages:?}"
    );

    // 2. Killed while downloading: the next `cosmos run` finishes it beside its own.
    let outputs = r.home.home().join("outputs");
    let id = kill_mid_transfer("download", &outputs, "collecting");
    let small = r.home.standard_scene("small");
    let out = r.run(&["run", "next", s(&small)]).ok();
    assert!(out.stderr.contains(&id), "{}", out.stderr);
    let shown = r.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["run"]["status"], "succeeded", "{shown}");
    let main = &shown["run"]["outputs"][0];
    let path = Path::new(main["path"].as_str().expect("path"));
    assert_eq!(sha256(path), main["sha256"].as_str().expect("sha256"));
    assert!(partial_files(&outputs).is_empty(), "a .part file was left");
    let messages = event_messages(&shown);
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("downloading outputs: ") && m.contains("% of ")),
        "no download progress: {messages:?}"
    );

    // 3. Killed while downloading, and the video on the target swapped for a link before
    // it is collected again: no success without the video, and no partial file left.
    let id = kill_mid_transfer("swapped", &outputs, "collecting");
    let remote_outputs = r.host.root().join("runs").join(&id).join("outputs");
    let video = remote_outputs.join(model.video(&id));
    std::fs::remove_file(&video).expect("remove the video");
    std::os::unix::fs::symlink(remote_outputs.join(model.text(&id)), &video).expect("link");
    let out = r.run(&["logs", "-f", &id]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let shown = r.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["run"]["status"], "failed", "{shown}");
    assert_eq!(shown["run"]["failure_code"], "no_video", "{shown}");
    assert!(partial_files(&outputs).is_empty(), "a .part file was left");

    // One model process per run, one container each, all gone.
    assert_eq!(r.records().len(), 4, "{:?}", r.records());
    for run in r
        .run(&["list", "--json"])
        .ok()
        .json()
        .as_array()
        .expect("runs")
    {
        assert_eq!(containers(run["id"].as_str().unwrap_or("")), "");
    }
}

/// A small tmpfs, owned by the remote user, unmounted on drop (needs root, as CI has).
pub(super) struct Tmpfs(pub tempfile::TempDir);

impl Tmpfs {
    pub(super) fn mount(size: &str, owner: &str) -> Self {
        let dir = tempfile::tempdir().expect("mount point");
        let id = |flag: &str| {
            let out = Command::new("id").args([flag, owner]).output().expect("id");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        let options = format!("size={size},mode=0755,uid={},gid={}", id("-u"), id("-g"));
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

per_model!(
    bad_targets_fail_up_front_with_the_cause_and_the_fix,
    transfer25_bad_targets_fail_up_front_with_the_cause_and_the_fix,
    bad_targets_fail_up_front
);

fn bad_targets_fail_up_front(model: Model) {
    let r = Remote::with_model(model, &[]);
    r.run(&["target", "trust", "gpu", "--yes"]).ok();
    let scene = r.home.standard_scene("shot");
    let image = sim_image().expect("sim image");
    let cosmos = r.host.cosmos_dir().display().to_string();
    let root = r.host.root().display().to_string();
    let disk = Tmpfs::mount("8m", r.host.user());
    let small_root = disk.0.path().display().to_string();
    let port = r.host.port().to_string();

    // Each: what to change on the target, extra run flags, what the failure must say.
    let cases: [(&[&str], &[&str], &str); 3] = [
        (
            &["--image", "cosmos-sim:absent"],
            &[],
            "image cosmos-sim:absent is not on target gpu",
        ),
        (
            &["--cosmos-dir", "/nonexistent/cosmos"],
            &[],
            match model {
                Model::T1 => {
                    "checkpoint nvidia/Cosmos-Transfer1-7B/base_model.pt (the base model) is not in /nonexistent/cosmos/checkpoints"
                }
                Model::T25 => {
                    "examples/inference.py is not in /nonexistent/cosmos on target gpu: its cosmos-dir must be a checkout of Cosmos-Transfer2.5"
                }
            },
        ),
        (
            &["--root", &small_root],
            &[],
            "not enough disk space on target gpu",
        ),
    ];
    for (edit, flags, needle) in cases {
        let mut args = vec!["target", "edit", "gpu"];
        args.extend_from_slice(edit);
        r.run(&args).ok();
        let mut args = vec!["run", "a harbour", s(&scene), "--json"];
        args.extend_from_slice(flags);
        let out = r.run(&args);
        assert_eq!(out.code, 1, "{needle}: {}", out.stderr);
        let run = out.json();
        assert_eq!(run["status"], "failed", "{needle}");
        let reason = run["failure_reason"].as_str().unwrap_or("");
        assert!(reason.contains(needle), "wanted `{needle}` in: {reason}");
        assert!(!reason.contains('\n'), "one line: {reason}");
        r.run(&[
            "target",
            "edit",
            "gpu",
            "--image",
            &image,
            "--cosmos-dir",
            &cosmos,
            "--root",
            &root,
        ])
        .ok();
    }
    assert!(r.records().is_empty(), "the model ran: {:?}", r.records());

    // Hosts with fewer GPUs than asked for, and with none.
    for (gpus, name, flags, needles) in [
        (
            2,
            "pair",
            &["--gpus", "4"][..],
            ["asks for 4 GPUs but target pair has 2", "on 2 GPUs"],
        ),
        (
            0,
            "bare",
            &[][..],
            ["no usable GPU on target bare", "install the NVIDIA driver"],
        ),
    ] {
        let host = SshHost::start_with(HostOptions {
            gpus,
            ..Default::default()
        })
        .expect("sshd fixture");
        r.add_target(name, &host, &[]);
        r.run(&["target", "trust", name, "--yes"]).ok();
        let mut args = vec!["run", "a harbour", s(&scene), "--target", name, "--json"];
        args.extend_from_slice(flags);
        let out = r.run(&args);
        let reason = out.json()["failure_reason"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        for needle in needles {
            assert!(reason.contains(needle), "wanted `{needle}` in: {reason}");
        }
        let records = host.record_file();
        assert!(!records.exists(), "the model ran on {name}");
    }

    // Wrong user, nobody listening: refused before anything is stored.
    let before = r.run(&["list", "--json"]).ok().json();
    r.run(&["target", "edit", "gpu", "--user", "nobody"]).ok();
    r.run(&["run", "x", s(&scene)])
        .fails_with("refused the login as `nobody`");
    r.run(&[
        "target",
        "edit",
        "gpu",
        "--user",
        r.host.user(),
        "--port",
        "1",
    ])
    .ok();
    let out = r.run(&["run", "x", s(&scene)]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("cannot reach"), "{}", out.stderr);
    assert!(out.stderr.contains("sshd listens"), "{}", out.stderr);
    r.run(&["target", "edit", "gpu", "--port", &port]).ok();
    assert_eq!(r.run(&["list", "--json"]).ok().json(), before);
}

/// An `ssh-agent` on a socket of its own, stopped on drop.
struct Agent {
    child: std::process::Child,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("agent dir");
        let socket = dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client, installed by .ci/run)");
        wait_for("ssh-agent's socket", Duration::from_secs(10), || {
            socket.exists()
        });
        Agent {
            child,
            socket,
            _dir: dir,
        }
    }

    fn add(&self, key: &Path) {
        let st = Command::new("ssh-add")
            .arg("-q")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .status()
            .expect("ssh-add");
        assert!(st.success(), "ssh-add {}", key.display());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

per_model!(
    a_host_behind_a_jump_host_from_ssh_config_runs_with_the_agent_s_key,
    transfer25_a_host_behind_a_jump_host_from_ssh_config_runs_with_the_agent_s_key,
    behind_a_jump_host
);

fn behind_a_jump_host(model: Model) {
    let home = Home::new();
    model.configure(&home);
    let bastion = SshHost::start().expect("bastion sshd");
    let gpu = SshHost::start().expect("gpu sshd");
    // The bastion's key is named in ~/.ssh/config; the GPU host's only the agent holds.
    let ssh_dir = home.path().join(".ssh");
    std::fs::create_dir_all(&ssh_dir).expect(".ssh");
    std::fs::write(
        ssh_dir.join("config"),
        format!(
            "Host bastion\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n\n\
             Host gpu-behind\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  ProxyJump bastion\n",
            bastion.port(),
            bastion.user(),
            bastion.client_key().display(),
            gpu.port(),
            gpu.user(),
        ),
    )
    .expect("ssh config");
    let agent = Agent::start();
    agent.add(&gpu.client_key());
    let r = Remote {
        home,
        host: gpu,
        model,
    };
    let sock = agent.socket.display().to_string();
    let run = |args: &[&str]| r.run_with(args, &[("SSH_AUTH_SOCK", sock.as_str())]);

    // The alias alone: host, port, user and the jump come from ~/.ssh/config.
    let mut add = fixture_target_add("far", "gpu-behind", &r.host);
    add.extend(model.prepare(&r.host));
    run(&add.iter().map(String::as_str).collect::<Vec<_>>()).ok();
    let shown = run(&["target", "show", "far", "--json"]).ok().json();
    assert_eq!(shown["jump"], "bastion", "{shown}");
    assert_eq!(shown["port"], r.host.port(), "{shown}");

    // Both hops' keys are shown and pinned.
    let trusted = run(&["target", "trust", "far", "--yes"]).ok();
    assert!(trusted.stderr.contains("jump host"), "{}", trusted.stderr);
    let pinned = std::fs::read_to_string(r.home.home().join("known_hosts")).unwrap_or_default();
    for port in [bastion.port(), r.host.port()] {
        assert!(
            pinned.contains(&format!("[127.0.0.1]:{port}")),
            "{port} not pinned:\n{pinned}"
        );
    }

    let scene = r.home.standard_scene("shot");
    let out = run(&["run", "a harbour at dusk", s(&scene), "--json"]).ok();
    assert_eq!(out.json()["status"], "succeeded", "{}", out.stderr);
    assert_eq!(r.records().len(), 1);

    // Without the agent there is no key for the GPU host: a clear authentication failure.
    let out = r.run_with(
        &["target", "check", "far", "--json"],
        &[("SSH_AUTH_SOCK", "/nonexistent/agent.sock")],
    );
    // Not logged in is a connection error: exit 2, as the README says.
    assert_eq!(out.code, 2, "{}", out.stderr);
    let failed = &out.json()["items"][0];
    assert_eq!(failed["check"], "authenticated", "{failed}");
}

per_model!(
    a_run_killed_while_staging_ends_cancelled_and_never_starts,
    transfer25_a_run_killed_while_staging_ends_cancelled_and_never_starts,
    killed_while_staging
);

fn killed_while_staging(model: Model) {
    let r = Remote::with_model(model, &[]);
    r.run(&["target", "trust", "gpu", "--yes"]).ok();
    let scene = large_scene(&r.home, 256);
    let home = r.home.path().display().to_string();
    let child = r
        .home
        .command(&["run", "stop me", s(&scene), "--json"])
        .env("HOME", &home)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cosmos run");
    let blobs = r.host.root().join("blobs");
    wait_for("the upload to begin", Duration::from_secs(60), || {
        !partial_files(&blobs).is_empty()
    });
    let id = run_by_prompt(&r, "stop me")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let killed = r.run(&["kill", &id]).ok();
    assert!(killed.stdout.contains("cancelled"), "{}", killed.stdout);

    // The driver notices at its next step, says so, and starts nothing.
    let out = child.wait_with_output().expect("cosmos run ends");
    assert_eq!(out.status.code(), Some(1));
    let run: Value = serde_json::from_slice(&out.stdout).expect("run json");
    assert_eq!(run["status"], "cancelled", "{run}");
    assert!(
        r.records().is_empty(),
        "the model started: {:?}",
        r.records()
    );
    assert_eq!(containers(&id), "");
}

/// `cosmos run TEXT SCENE` in the background with `stdin`; waits until its run is running
/// and returns the child and the run's id.
fn start_running(
    r: &Remote,
    text: &str,
    stdin: std::process::Stdio,
) -> (std::process::Child, String) {
    let scene = r.home.standard_scene("shot");
    let home = r.home.path().display().to_string();
    let child = r
        .home
        .command(&["run", text, s(&scene)])
        .env("HOME", &home)
        .stdin(stdin)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cosmos run");
    let mut id = String::new();
    wait_for("the model to run", Duration::from_secs(60), || {
        let run = run_by_prompt(r, text);
        if run["status"] == "running" {
            id = run["id"].as_str().unwrap_or("").to_owned();
        }
        !id.is_empty()
    });
    (child, id)
}

/// A pseudo-terminal: the side a test types into, and the side a command reads as its
/// terminal.
fn pseudo_terminal() -> (std::fs::File, std::fs::File) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("a pseudo-terminal");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_string_lossy().as_ref())
        .expect("the terminal's slave side");
    (std::fs::File::from(master), slave)
}

fn interrupt(child: &std::process::Child) {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
}

per_model!(
    ctrl_c_without_a_terminal_detaches_and_logs_f_reattaches,
    transfer25_ctrl_c_without_a_terminal_detaches_and_logs_f_reattaches,
    ctrl_c_detaches
);

fn ctrl_c_detaches(model: Model) {
    let r = Remote::with_model(model, &["COSMOS_SIM_LOAD_SECONDS=2"]);
    r.run(&["target", "trust", "gpu", "--yes"]).ok();
    let (child, id) = start_running(&r, "detach from me", std::process::Stdio::null());
    interrupt(&child);
    let out = child.wait_with_output().expect("cosmos run ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "detached: run {id} continues on its target; `cosmos logs -f {id}` reattaches"
        )),
        "{stderr}"
    );
    // The model goes on without it; `cosmos logs -f` follows it to the end and collects.
    assert_ne!(containers(&id), "", "the container went with the CLI");
    let logs = r.run(&["logs", "-f", &id]).ok();
    assert!(logs.stdout.contains(model.saved()), "{}", logs.stdout);
    let run = r.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(r.records().len(), 1, "one model start");
    assert_eq!(containers(&id), "");
}

per_model!(
    ctrl_c_at_a_terminal_offers_cancel_which_kills_the_container,
    transfer25_ctrl_c_at_a_terminal_offers_cancel_which_kills_the_container,
    ctrl_c_cancels
);

fn ctrl_c_cancels(model: Model) {
    use std::io::Write as _;
    let r = Remote::with_model(model, &["COSMOS_SIM_LOAD_SECONDS=30"]);
    r.run(&["target", "trust", "gpu", "--yes"]).ok();
    // A pseudo-terminal as the run's stdin, answered from its other end.
    let (mut answer, terminal) = pseudo_terminal();
    let (child, id) = start_running(&r, "cancel me", std::process::Stdio::from(terminal));
    interrupt(&child);
    answer.write_all(b"c\n").expect("answer the prompt");
    let out = child.wait_with_output().expect("cosmos run ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Detach (the run continues), cancel (kill the model), or resume? [d/c/r]"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("cancelling {id}")), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let run = r.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(run["run"]["status"], "cancelled", "{run}");
    assert_eq!(
        event_messages(&run).last().map(String::as_str),
        Some("cancelled by the user; the model was killed"),
        "{run}"
    );
    assert_eq!(containers(&id), "", "the container outlived the cancel");
}

per_model!(
    the_dry_run_shows_exactly_the_command_that_starts_the_model,
    transfer25_the_dry_run_shows_exactly_the_command_that_starts_the_model,
    dry_run_is_exact
);

fn dry_run_is_exact(model: Model) {
    let r = Remote::with_model(model, &[]);
    r.run(&["target", "trust", "gpu", "--yes"]).ok();
    let scene = r.home.standard_scene("shot");
    let dry = r
        .run(&["run", "a harbour", s(&scene), "--dry-run", "--json"])
        .ok()
        .json();
    let planned_id = dry["run_id"].as_str().expect("a planned id").to_owned();
    let planned: Vec<String> = dry["container_command"]
        .as_array()
        .expect("the command")
        .iter()
        .map(|a| a.as_str().unwrap_or("").replace(&planned_id, "RUN"))
        .collect();
    let done = r
        .run(&["run", "a harbour", s(&scene), "--json"])
        .ok()
        .json();
    let id = done["id"].as_str().expect("a run id").to_owned();
    let shown = r.run(&["show", &id, "--json"]).ok().json();
    let ran: Vec<String> = shown["run"]["launch_command"]
        .as_array()
        .expect("the command that ran")
        .iter()
        .map(|a| a.as_str().unwrap_or("").replace(&id, "RUN"))
        .collect();
    assert_eq!(shown["run"]["status"], "succeeded", "{shown}");
    assert!(
        planned.iter().any(|a| a == "docker") && planned.len() > 10,
        "{planned:?}"
    );
    assert_eq!(
        planned, ran,
        "the dry run showed another command than the one that ran"
    );
}

per_model!(
    reads_answer_at_once_and_a_kill_says_which_target_it_could_not_reach,
    transfer25_reads_answer_at_once_and_a_kill_says_which_target_it_could_not_reach,
    reads_answer_at_once
);

fn reads_answer_at_once(model: Model) {
    let mut r = Remote::with_model(model, &["COSMOS_SIM_LOAD_SECONDS=30"]);
    r.run(&["target", "trust", "gpu", "--yes"]).ok();
    let (mut child, id) = start_running(&r, "cut off", std::process::Stdio::null());
    // Its driver dies and its target goes away: the run stays `running`, as it stands.
    child.kill().expect("kill -9");
    let _ = child.wait();
    r.host.stop();
    for args in [
        vec!["status", "--json"],
        vec!["list", "--json"],
        vec!["show", id.as_str(), "--json"],
        vec!["logs", id.as_str()],
    ] {
        let began = std::time::Instant::now();
        r.run(&args).ok();
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "`cosmos {}` took {:?}",
            args.join(" "),
            began.elapsed()
        );
    }
    let status = r.run(&["status", "--json"]).ok().json();
    assert_eq!(status["running"][0]["run"]["status"], "running", "{status}");
    // A kill must reach the target: it waits a bounded time and says which it could not reach.
    let began = std::time::Instant::now();
    let out = r.run(&["kill", &id]).ok();
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "{:?}",
        began.elapsed()
    );
    assert!(
        out.stderr.contains("target gpu did not answer"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("cancel requested"), "{}", out.stdout);
}

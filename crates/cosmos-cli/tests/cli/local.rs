//! The `local` target kind: the same lifecycle as an SSH host, on this machine, with the
//! model in the real Docker engine (the sim image) or as a plain process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::remote::{Model, containers, sha256, wait_for};
use super::support::{Home, s};
use cosmos_testkit::{sim_binary, sim_image};

/// A home, a root and a cosmos-transfer1 checkout for a local target, and a `bin` folder
/// where cosmos-sim answers as `nvidia-smi` and `torchrun`.
pub(super) struct Local {
    pub(super) home: Home,
    dir: tempfile::TempDir,
    /// The model the targets it adds are set up for (and its runs use by default).
    model: Model,
}

impl Local {
    /// As [`Local::new`], its targets set up for `model` and its runs using it.
    pub(super) fn with_model(model: Model) -> Self {
        let mut l = Self::new();
        l.model = model;
        model.configure(&l.home);
        if model == Model::T25 {
            super::models::transfer25_checkout(&l.checkout());
        }
        l
    }

    pub(super) fn new() -> Self {
        let home = Home::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let sim = sim_binary().expect("cosmos-sim");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        for name in ["nvidia-smi", "torchrun"] {
            std::os::unix::fs::symlink(&sim, bin.join(name)).expect("symlink");
        }
        let st = std::process::Command::new(&sim)
            .arg("checkout")
            .arg(dir.path().join("cosmos"))
            .status()
            .expect("cosmos-sim checkout");
        assert!(st.success());
        Local {
            home,
            dir,
            model: Model::T1,
        }
    }

    /// The cosmos-transfer1 checkout the targets use (with its placeholder checkpoints).
    pub(super) fn checkout(&self) -> PathBuf {
        self.dir.path().join("cosmos")
    }

    pub(super) fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// PATH with the sim's `nvidia-smi` and `torchrun` first.
    pub(super) fn path(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// `cosmos …` with that PATH.
    pub(super) fn run(&self, args: &[&str]) -> super::support::Out {
        self.home.run_with(args, &[("PATH", &self.path())])
    }

    pub(super) fn add(&self, name: &str, runtime: &[&str]) {
        self.add_with(name, runtime, &[]);
    }

    /// As [`Local::add`], with more `KEY=VALUE` settings for the model's environment.
    pub(super) fn add_with(&self, name: &str, runtime: &[&str], env: &[&str]) {
        let root = self.root().display().to_string();
        let cosmos = self.dir.path().join("cosmos").display().to_string();
        // Outside the root, whose blobs and run folders are all a container sees of it.
        let records = self.dir.path().join("records");
        std::fs::create_dir_all(&records).expect("records");
        let record = format!("COSMOS_SIM_RECORD={}/record.jsonl", records.display());
        let mount = format!("{0}:{0}", records.display());
        let mut args = vec![
            "target",
            "add",
            name,
            "--local",
            "--root",
            &root,
            "--cosmos-dir",
            &cosmos,
            "--env",
            &record,
            "--mount",
            &mount,
        ];
        for e in env {
            args.extend(["--env", e]);
        }
        if !runtime.contains(&"--gpus") {
            args.extend(["--gpus", "2"]);
        }
        args.extend_from_slice(runtime);
        if self.model == Model::T25 && !runtime.contains(&"--model") {
            args.extend(["--model", "transfer2.5"]);
        }
        self.run(&args).ok();
    }

    pub(super) fn records(&self) -> usize {
        self.record_lines().len()
    }

    /// What cosmos-sim recorded of each model start, in order.
    pub(super) fn record_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("records/record.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("record line"))
            .collect()
    }

    /// Runs TEXT on SCENE on target NAME; checks it succeeded with verified outputs and
    /// returns the run.
    pub(super) fn run_ok(&self, name: &str, text: &str, scene: &Path) -> Value {
        let out = self
            .run(&["run", text, s(scene), "--target", name, "--json"])
            .ok();
        let run: Value = serde_json::from_str(&out.stdout).expect("run json");
        assert_eq!(run["status"], "succeeded", "{run}\n{}", out.stderr);
        assert_eq!(run["target"], name);
        let main = &run["outputs"][0];
        let path = Path::new(main["path"].as_str().expect("output path"));
        assert_eq!(sha256(path), main["sha256"].as_str().expect("sha256"));
        run
    }
}

per_model!(
    a_local_target_runs_the_model_in_docker_on_this_machine,
    transfer25_a_local_target_runs_the_model_in_docker_on_this_machine,
    local_docker
);

fn local_docker(model: Model) {
    let l = Local::with_model(model);
    let image = sim_image().expect("sim image");
    l.add("here", &["--image", &image, "--no-gpu-flag"]);

    // The preflight: no SSH items, the rest as for a host.
    let check = l.run(&["target", "check", "here", "--json"]).ok().json();
    assert_eq!(check["ok"], true, "{check}");
    let items: Vec<&str> = check["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["check"].as_str())
        .collect();
    for want in ["docker", "image", "checkpoints", "gpus"] {
        assert!(items.contains(&want), "{want} not checked: {items:?}");
    }

    let scene = l.home.standard_scene("shot");
    let run = l.run_ok("here", "a harbour at dawn, in a container", &scene);
    let id = run["id"].as_str().expect("id");
    let shown = l.run(&["show", id, "--json"]).ok().json();
    assert!(
        shown["events"]
            .to_string()
            .contains(&format!("container cosmos-{id} started")),
        "{shown}"
    );
    // Inputs went into the local blob store once; the container is gone; one model start.
    assert!(l.root().join("blobs/sha256").is_dir());
    assert!(l.root().join(format!("runs/{id}/run.log")).is_file());
    assert_eq!(containers(id), "");
    assert_eq!(l.records(), 1);

    // What the container sees of the root: the blob store read-only and its own run folder,
    // nothing else of it; the extra mount as asked.
    l.run(&[
        "target",
        "edit",
        "here",
        "--env",
        "COSMOS_SIM_LOAD_SECONDS=3",
    ])
    .ok();
    let child = l
        .home
        .command(&["run", "a slower take", s(&scene), "--target", "here"])
        .env("PATH", l.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cosmos run");
    let mut container = String::new();
    wait_for("the model to run", Duration::from_secs(60), || {
        let list = l.run(&["list", "--json"]).ok().json();
        let slower = list
            .as_array()
            .and_then(|a| a.iter().find(|r| r["prompt_text"] == "a slower take"))
            .cloned()
            .unwrap_or(Value::Null);
        if slower["status"] == "running" {
            container = format!("cosmos-{}", slower["id"].as_str().unwrap_or(""));
        }
        !container.is_empty()
    });
    let out = std::process::Command::new("docker")
        .args(["inspect", "--format", "{{json .Mounts}}", &container])
        .output()
        .expect("docker inspect");
    let mounts: Value = serde_json::from_slice(&out.stdout).expect("mounts json");
    let mut seen: Vec<(String, bool)> = mounts
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| {
            (
                m["Destination"].as_str().unwrap_or("").to_owned(),
                m["RW"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    seen.sort();
    let root = l.root().display().to_string();
    let records = l.dir.path().join("records").display().to_string();
    let run_dir = seen
        .iter()
        .find(|(d, _)| d.starts_with(&format!("{root}/runs/rs_")))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        seen,
        {
            let mut want = vec![
                ("/workspace".to_owned(), true),
                (format!("{root}/blobs"), false),
                (run_dir.0.clone(), true),
                (records, true),
                // The target's Hugging Face cache, shared by its runs (issue 14).
                (cosmos_core::setup::CONTAINER_HF_HOME.to_owned(), true),
            ];
            // Transfer2.5's own: its image's virtual environment kept from the checkout's
            // mount, and its download cache kept on the target.
            if model == Model::T25 {
                want.extend([
                    ("/root/.cache".to_owned(), true),
                    ("/workspace/.venv".to_owned(), true),
                ]);
            }
            want.sort();
            want
        },
        "{mounts}"
    );
    let done = child.wait_with_output().expect("cosmos run");
    assert!(done.status.success());
    assert_eq!(l.records(), 2);
}

#[test]
fn a_local_target_without_docker_runs_the_model_as_a_process() {
    let l = Local::new();
    l.add("proc", &["--runtime", "none"]);
    let scene = l.home.standard_scene("shot");
    let run = l.run_ok("proc", "a harbour at dawn, as a process", &scene);
    let id = run["id"].as_str().expect("id");
    let shown = l.run(&["show", id, "--json"]).ok().json();
    assert!(
        shown["events"]
            .to_string()
            .contains("model process started"),
        "{shown}"
    );
    assert_eq!(containers(id), "");
    assert_eq!(l.records(), 1);

    // The same inputs again: nothing uploaded, a second model start.
    let again = l.run_ok("proc", "a harbour at dusk, as a process", &scene);
    let shown = l
        .run(&["show", again["id"].as_str().expect("id"), "--json"])
        .ok()
        .json();
    assert!(
        shown["events"].to_string().contains("nothing uploaded"),
        "{shown}"
    );
    assert_eq!(l.records(), 2);
}

#[test]
fn quickstart_output_is_labelled_as_rehearsal_wherever_it_is_shown()
-> Result<(), Box<dyn std::error::Error>> {
    // `quickstart` finds cosmos-sim beside the cosmos binary; the test kit builds it there.
    sim_binary()?;
    let h = Home::new();
    let out = h.run(&["quickstart"]).ok();
    assert!(out.stderr.contains("rehearsal output"), "{}", out.stderr);
    let list = h.run(&["list"]).ok();
    assert!(
        list.stdout.contains("rehearsal (rehearsal)"),
        "{}",
        list.stdout
    );
    let runs = h.run(&["list", "--json"]).ok().json();
    let id = runs[0]["id"].as_str().ok_or("a run")?;
    assert_eq!(runs[0]["rehearsal"], Value::Bool(true), "{runs}");
    let shown = h.run(&["show", id]).ok();
    assert!(
        shown
            .stdout
            .contains("rehearsal output: cosmos-sim stood in for Cosmos"),
        "{}",
        shown.stdout
    );

    // A sweep in the foreground: one combined line, each run's end, and a summary that says
    // which runs were rehearsals.
    let prompt = runs[0]["prompt_name"].as_str().ok_or("a prompt")?;
    let sweep = h.run(&["run", prompt, "--seeds", "1..3"]).ok();
    assert!(sweep.stderr.contains("[3 runs] "), "{}", sweep.stderr);
    assert_eq!(
        sweep.stderr.matches(" succeeded: ").count(),
        3,
        "{}",
        sweep.stderr
    );
    assert!(
        sweep
            .stderr
            .contains("3 succeeded, 0 did not (3 on a rehearsal target"),
        "{}",
        sweep.stderr
    );
    assert_eq!(
        sweep.stdout.lines().count(),
        3,
        "one output path per run: {}",
        sweep.stdout
    );
    Ok(())
}

/// Starts `cosmos ARGS` in the background with its stderr in a file.
fn spawn_cosmos(h: &Home, args: &[&str], stderr: &Path) -> std::process::Child {
    h.command(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(stderr).expect("stderr file"))
        .spawn()
        .expect("cosmos starts")
}

#[test]
fn a_paused_queue_is_named_and_logs_f_follows_a_queued_run_without_starting_it()
-> Result<(), Box<dyn std::error::Error>> {
    sim_binary()?;
    let h = Home::new();
    h.run(&["quickstart"]).ok();
    let prompt = h.run(&["list", "--json"]).ok().json()[0]["prompt_name"]
        .as_str()
        .ok_or("a prompt")?
        .to_owned();
    h.run(&["queue", "pause"]).ok();
    // `cosmos run` on a paused queue says so, and how to resume, rather than blaming slots.
    let err = h.path().join("run.err");
    let mut run = spawn_cosmos(&h, &["run", &prompt], &err);
    let said = |p: &Path, what: &str| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .contains(what)
    };
    wait_for("the pause to be named", Duration::from_secs(20), || {
        said(&err, "the queue is paused (`cosmos queue resume`")
    });
    assert!(!said(&err, "waiting for free GPU slots"));
    let _ = run.kill();
    run.wait()?;
    let queued = h.run(&["list", "--status", "queued", "--json"]).ok().json();
    let id = queued[0]["id"].as_str().ok_or("the queued run")?.to_owned();

    // `logs -f` on a queued run follows it: it says so and never starts it.
    h.run(&["queue", "resume"]).ok();
    let err = h.path().join("logs.err");
    let mut logs = spawn_cosmos(&h, &["logs", "-f", &id], &err);
    wait_for(
        "logs -f to say the run is queued",
        Duration::from_secs(20),
        || said(&err, &format!("run {id} is queued: following it")),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        h.run(&["show", &id, "--json"]).ok().json()["run"]["status"],
        "queued"
    );
    let _ = logs.kill();
    logs.wait()?;
    // Every read command takes --json, logs too.
    let log = h.run(&["logs", &id, "--json"]).ok().json();
    assert_eq!(
        (
            log["status"].as_str(),
            log["lines"].as_array().map(Vec::len)
        ),
        (Some("queued"), Some(0))
    );
    Ok(())
}

per_model!(an_engine_without_gpu_support_fails_the_check_and_a_run_moves_to_a_target_that_can_start_it, transfer25_an_engine_without_gpu_support_fails_the_check_and_a_run_moves_to_a_target_that_can_start_it, engine_without_gpu_support);

fn engine_without_gpu_support(model: Model) {
    // This machine's Docker engine has no NVIDIA runtime: `--gpus` is refused, as on a GPU
    // host where the container toolkit is missing.
    let l = Local::with_model(model);
    let image = sim_image().expect("sim image");
    l.add("alpha", &["--image", &image]);
    l.add("beta", &["--image", &image, "--no-gpu-flag"]);

    let check = l.run(&["target", "check", "alpha", "--json"]);
    assert_eq!(check.code, 1, "{}", check.stdout);
    let report = check.json();
    let gpu = report["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["check"] == "gpu access"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(gpu["ok"], false, "{report}");
    assert!(
        gpu["detail"]
            .as_str()
            .is_some_and(|d| d.contains("could not select device driver")),
        "docker's own words: {gpu}"
    );
    assert!(
        gpu["hint"]
            .as_str()
            .is_some_and(|h| h.contains("nvidia-ctk")),
        "{gpu}"
    );

    // Pinned there, the run fails with docker's first line, a fix, a log, and no container.
    let scene = l.home.standard_scene("shot");
    let out = l.run(&["run", "a pier", s(&scene), "--target", "alpha"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("could not select device driver"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("docker run --help"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("hint: install the NVIDIA Container Toolkit"),
        "{}",
        out.stderr
    );
    let failed = l.run(&["list", "--json"]).ok().json()[0].clone();
    let id = failed["id"].as_str().expect("id").to_owned();
    assert_eq!(failed["failure_code"], "gpu_runtime_missing", "{failed}");
    assert_eq!(
        containers(&id),
        "",
        "a container that never started is removed"
    );
    let log = l.run(&["logs", &id]).ok();
    assert!(
        log.stdout.contains("could not select device driver"),
        "{}",
        log.stdout
    );

    // Unpinned, it goes to the other target before it fails.
    let run = l.run(&["run", "a quay", s(&scene), "--json"]).ok().json();
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["target"], "beta", "{run}");
    let id = run["id"].as_str().expect("id");
    let events = l.run(&["show", id, "--json"]).ok().json()["events"].to_string();
    assert!(
        events.contains("could not start on alpha")
            && events.contains("placing it on another target"),
        "{events}"
    );
    assert_eq!(containers(id), "");
}

#[test]
fn the_readme_s_runs_file_queues_on_the_rehearsal_target() -> Result<(), Box<dyn std::error::Error>>
{
    sim_binary()?;
    let readme = include_str!("../../../../README.md");
    let block = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .ok_or("the README has a toml block")?;
    assert!(block.contains("[[run]]"), "{block}");
    let h = Home::new();
    h.run(&["quickstart"]).ok();
    let scene = h.standard_scene("shot010");
    h.run(&[
        "prompt",
        "create",
        "a robot arm picks up a red cup in a bright kitchen",
        "--inputs",
        s(&scene),
    ])
    .ok();
    let file = h.path().join("sweep.toml");
    std::fs::write(&file, block.replace("renders/shot010", s(&scene)))?;
    let dry = h.run(&["run", "--from-file", s(&file), "--dry-run"]).ok();
    assert!(dry.stdout.contains("more runs like it"), "{}", dry.stdout);
    let queued = h
        .run(&["run", "--from-file", s(&file), "--no-wait", "--json"])
        .ok()
        .json();
    assert_eq!(queued.as_array().map(Vec::len), Some(4 + 3), "{queued}");
    Ok(())
}

//! The queue and its workers against real infrastructure: several sshd targets, the real
//! Docker engine and the sim image. Exactly-once execution, GPU slots side by side, and the
//! failures a fleet meets: a worker killed mid-run, a target's sshd gone and back, a container
//! killed from outside, a full disk.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::remote::{Model, Tmpfs, add_fixture_target, large_scene, partial_files, wait_for};
use super::support::{Home, Out, TestResult, s};
use cosmos_testkit::{HostOptions, SshHost};

/// A home with targets on fresh sshd fixtures.
struct Fleet {
    home: Home,
    hosts: Vec<SshHost>,
}

impl Fleet {
    /// `slots[i]` GPU slots on target `t<i>`; `env` goes to every model.
    fn new(slots: &[u32], env: &[&str]) -> Self {
        Self::with_model(Model::T1, slots, env)
    }

    /// The same with every target set up for `model` and runs using it by default.
    fn with_model(model: Model, slots: &[u32], env: &[&str]) -> Self {
        let home = Home::new();
        model.configure(&home);
        let hosts: Vec<SshHost> = slots
            .iter()
            .map(|_| SshHost::start().expect("sshd fixture"))
            .collect();
        let fleet = Fleet { home, hosts };
        for (i, (host, n)) in fleet.hosts.iter().zip(slots).enumerate() {
            let name = format!("t{i}");
            let mut extra = vec!["--gpus".to_owned(), n.to_string()];
            extra.extend(model.prepare(host));
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            add_fixture_target(&fleet.home, &name, host, env, &extra);
            fleet.run(&["target", "trust", &name, "--yes"]).ok();
        }
        fleet
    }

    /// Transfer2.5's seeds and prompts are each sample's own, so its runs of one scene may
    /// share a process: for a test about claims and slots, one run per process (batches
    /// have their own tests).
    fn one_run_per_process(&self, model: Model) {
        if model == Model::T25 {
            let config = self.home.home().join("cosmos.toml");
            let mut text = std::fs::read_to_string(&config).unwrap_or_default();
            text.push_str("\n[queue]\nmax_batch = 1\n");
            std::fs::write(&config, text).expect("config");
        }
    }

    fn run(&self, args: &[&str]) -> Out {
        let home = self.home.path().display().to_string();
        self.home.run_with(args, &[("HOME", home.as_str())])
    }

    fn worker(&self) -> Worker {
        self.worker_with(&[])
    }

    fn worker_with(&self, env: &[(&str, &str)]) -> Worker {
        let home = self.home.path().display().to_string();
        let mut child = self
            .home
            .command(&["worker"])
            .env("HOME", &home)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cosmos worker");
        // Read what it says as it says it, so a full pipe never stalls it.
        let mut err = child.stderr.take().expect("stderr");
        let log = std::thread::spawn(move || {
            use std::io::Read;
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        Worker { child, log }
    }

    /// Every model start on every target, as cosmos-sim recorded it.
    fn records(&self) -> Vec<(usize, Value)> {
        self.hosts
            .iter()
            .enumerate()
            .flat_map(|(i, h)| {
                std::fs::read_to_string(h.record_file())
                    .unwrap_or_default()
                    .lines()
                    .map(|l| (i, serde_json::from_str(l).expect("record line")))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn runs(&self) -> Vec<Value> {
        let list = self
            .run(&["list", "--json", "--limit", "10000"])
            .ok()
            .json();
        list.as_array().cloned().unwrap_or_default()
    }

    fn status_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in self.runs() {
            *counts
                .entry(r["status"].as_str().unwrap_or("?").to_owned())
                .or_insert(0) += 1;
        }
        counts
    }

    fn run_json(&self, id: &str) -> Value {
        self.run(&["show", id, "--json"]).ok().json()["run"].clone()
    }

    /// `cosmos run TEXT SCENE --no-wait`: the new run's id.
    fn queue(&self, text: &str, scene: &Path) -> String {
        self.run(&["run", text, s(scene), "--no-wait"])
            .ok()
            .stdout
            .trim()
            .to_owned()
    }

    /// Waits until run `id` is `status`.
    fn wait_until(&self, id: &str, status: &str, seconds: u64) {
        wait_for(
            &format!("{id} to be {status}"),
            Duration::from_secs(seconds),
            || self.run_json(id)["status"] == status,
        );
    }
}

/// A `cosmos worker` process and what it prints.
struct Worker {
    child: Child,
    log: std::thread::JoinHandle<String>,
}

/// Stops a worker the way an operator does (SIGTERM) and returns what it printed.
fn stop(mut worker: Worker) -> String {
    let pid = rustix::process::Pid::from_child(&worker.child);
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = worker.child.try_wait() {
            assert!(status.success(), "the worker exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "the worker did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    worker.log.join().unwrap_or_default()
}

fn kill9(mut worker: Worker) {
    worker.child.kill().expect("kill -9");
    let _ = worker.child.wait();
}

/// Containers (running or not) of this fleet's runs; other tests' containers are theirs.
fn leftover_containers(fleet: &Fleet) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "--all", "--filter", "label=cosmos.run"])
        .args(["--format", "{{.Label \"cosmos.run\"}}"])
        .output()
        .expect("docker ps");
    // Runs' containers, and batches' (one container for several runs).
    let ours: BTreeSet<String> = fleet
        .runs()
        .iter()
        .flat_map(|r| [r["id"].as_str(), r["batch_id"].as_str()])
        .flatten()
        .map(str::to_owned)
        .collect();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|id| ours.contains(*id))
        .map(str::to_owned)
        .collect()
}

fn sha256_file(path: &Path) -> String {
    cosmos_core::sha256::hex_digest(&std::fs::read(path).expect("output file"))
}

fn run_id_in(record: &Value) -> String {
    let argv = record["argv"].to_string();
    let at = argv.find("rs_").expect("a run id in the model's arguments");
    argv[at..at + 29].to_owned()
}

per_model!(
    compatible_runs_share_one_container_on_an_ssh_docker_target,
    transfer25_compatible_runs_share_one_container_on_an_ssh_docker_target,
    runs_share_one_container
);

fn runs_share_one_container(model: Model) {
    let fleet = Fleet::with_model(model, &[1], &[]);
    let config = fleet.home.home().join("cosmos.toml");
    let mut text = std::fs::read_to_string(&config).unwrap_or_default();
    text.push_str("\n[queue]\nmax_batch = 8\n");
    std::fs::write(&config, text).expect("config");
    let scene = fleet.home.standard_scene("shot");
    let ids: Vec<String> = (0..3)
        .map(|i| fleet.queue(&format!("a lighthouse, take {i}"), &scene))
        .collect();
    let worker = fleet.worker();
    for id in &ids {
        fleet.wait_until(id, "succeeded", 120);
    }
    wait_for("the container to end", Duration::from_secs(30), || {
        fleet.records().len() == 1
    });
    stop(worker);
    let records = fleet.records();
    assert_eq!(records.len(), 1, "one model start: {records:?}");
    // Transfer1 reads a JSONL of overrides; Transfer2.5 a JSONL of whole specs.
    let batch_flag = match model {
        Model::T1 => "--batch_input_path",
        Model::T25 => "/batch.jsonl",
    };
    assert!(
        records[0].1["argv"].to_string().contains(batch_flag),
        "{records:?}"
    );
    let runs: Vec<Value> = ids.iter().map(|id| fleet.run_json(id)).collect();
    let batch = runs[0]["batch_id"].as_str().expect("a batch");
    let mut videos = BTreeSet::new();
    for r in &runs {
        assert_eq!(r["batch_id"], batch, "{r}");
        let video = &r["outputs"][0];
        let path = PathBuf::from(video["path"].as_str().expect("path"));
        assert!(model.is_video(&path.display().to_string()), "{r}");
        assert_eq!(sha256_file(&path), video["sha256"].as_str().expect("sha"));
        videos.insert(path);
    }
    assert_eq!(videos.len(), 3, "each run its own video");
    assert_eq!(leftover_containers(&fleet), Vec::<String>::new());
}

#[test]
fn a_chained_upscale_runs_in_docker_on_the_host_that_has_its_parents_output() {
    // Two hosts: the upscale must follow its parent to whichever took it.
    let fleet = Fleet::new(&[1, 1], &[]);
    let scene = fleet.home.standard_scene("shot");
    let queued = fleet
        .run(&[
            "run",
            "a quay at night",
            s(&scene),
            "--upscale",
            "--no-wait",
            "--json",
        ])
        .ok()
        .json();
    let ids: Vec<String> = queued
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{queued}");
    let worker = fleet.worker();
    fleet.wait_until(&ids[1], "succeeded", 120);
    stop(worker);
    let parent = fleet.run_json(&ids[0]);
    let child = fleet.run_json(&ids[1]);
    assert_eq!(parent["kind"], "transfer");
    assert_eq!(child["upscale_of"], ids[0].as_str());
    let target = parent["target"].as_str().expect("target");
    assert_eq!(child["target"], target, "{child}");
    let events = fleet.run(&["show", &ids[1], "--json"]).ok().json()["events"].to_string();
    assert!(
        events.contains(&format!(
            "already on {target} (verified there, not uploaded)"
        )),
        "{events}"
    );
    assert!(events.contains("nothing uploaded"), "{events}");
    let video = child["outputs"][0]["path"].as_str().expect("video");
    assert_eq!(
        sha256_file(Path::new(video)),
        child["outputs"][0]["sha256"].as_str().expect("sha")
    );
    assert!(
        events.contains("its video is 3840×2112, 24 frames"),
        "{events}"
    );
    // Both models ran in the one host's Docker engine, the parent first.
    let records = fleet.records();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0].0, records[1].0, "one host: {records:?}");
    assert_eq!(leftover_containers(&fleet), Vec::<String>::new());
}

#[test]
fn prompt_enhance_runs_the_upsampler_in_docker_and_stores_a_child_prompt() {
    let fleet = Fleet::new(&[1], &[]);
    let scene = fleet.home.standard_scene("shot");
    fleet
        .run(&[
            "prompt",
            "create",
            "a quay at night",
            "--inputs",
            s(&scene),
            "--name",
            "quay",
        ])
        .ok();
    let child = fleet
        .run(&["prompt", "enhance", "quay", "--json"])
        .ok()
        .json();
    let text = child["text"].as_str().expect("text");
    assert!(
        text.starts_with("a quay at night. The camera moves"),
        "{child}"
    );
    assert!(child["parent_id"].is_string(), "{child}");
    // The upsampler ran in the host's Docker engine, its prompt read from the run's folder.
    let records = fleet.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let argv = records[0].1["argv"].to_string();
    assert!(argv.contains("upsampler_pipeline.py"), "{argv}");
    assert!(
        argv.contains("a quay at night"),
        "the model got the text: {argv}"
    );
    let runs = fleet.run(&["list", "--json"]).ok().json();
    let launch = runs[0]["launch_command"].to_string();
    assert!(launch.contains("docker"), "{launch}");
    assert!(
        !launch.contains("quay at night"),
        "never on our command line: {launch}"
    );
    assert_eq!(leftover_containers(&fleet), Vec::<String>::new());
}

#[test]
fn three_workers_run_three_hundred_runs_exactly_once_on_three_targets() {
    three_workers(Model::T1, 200, 100);
}

/// The twin keeps to fewer runs (CI's time), the same mix.
#[test]
fn transfer25_three_workers_run_ninety_runs_exactly_once_on_three_targets() {
    three_workers(Model::T25, 60, 30);
}

/// `short` runs of one clip and `long` runs of three, on three targets of 4 slots.
fn three_workers(model: Model, short_runs: usize, long_runs: usize) {
    let total = short_runs + long_runs;
    let fleet = Fleet::with_model(model, &[4, 4, 4], &["COSMOS_SIM_CLIP_SECONDS=0.05"]);
    fleet.one_run_per_process(model);
    let short = fleet.home.standard_scene("short");
    let long = fleet.home.scene(
        "long",
        &[
            ("shot_color.mp4", 64, 36, 250, 24),
            ("shot_depth.mp4", 64, 36, 250, 24),
        ],
    );
    // Two prompts on scenes of 1 and 3 clips: runs of different lengths, queued in sweeps.
    let a = fleet
        .run(&[
            "run",
            "a harbour",
            s(&short),
            "--seeds",
            &format!("1..{short_runs}"),
            "--no-wait",
        ])
        .ok();
    let b = fleet
        .run(&[
            "run",
            "a market",
            s(&long),
            "--seeds",
            &format!("1..{long_runs}"),
            "--no-wait",
        ])
        .ok();
    assert_eq!(a.stdout.lines().count() + b.stdout.lines().count(), total);

    let started = Instant::now();
    let workers: Vec<Worker> = (0..3).map(|_| fleet.worker()).collect();
    wait_for("every run to finish", Duration::from_secs(600), || {
        let c = fleet.status_counts();
        c.get("succeeded").copied().unwrap_or(0) + c.get("failed").copied().unwrap_or(0) == total
    });
    let took = started.elapsed();
    let logs: Vec<String> = workers.into_iter().map(stop).collect();
    eprintln!("{total} runs on 3 targets with 3 workers in {took:.1?}");

    let runs = fleet.runs();
    let failed: Vec<&Value> = runs.iter().filter(|r| r["status"] != "succeeded").collect();
    assert!(
        failed.is_empty(),
        "failed runs: {failed:?}\nworkers:\n{}",
        logs.join("\n")
    );

    // Exactly once: one model start per run, over all targets.
    let records = fleet.records();
    let mut per_run: BTreeMap<String, usize> = BTreeMap::new();
    for (_, r) in &records {
        *per_run.entry(run_id_in(r)).or_insert(0) += 1;
    }
    assert_eq!(records.len(), total, "model starts");
    assert_eq!(per_run.len(), total, "distinct runs started");

    // Every output verified: the stored hash is the file's.
    for r in &runs {
        let outputs = r["outputs"].as_array().expect("outputs");
        assert!(!outputs.is_empty(), "{r}");
        for o in outputs {
            let path = PathBuf::from(o["path"].as_str().expect("path"));
            assert_eq!(
                sha256_file(&path),
                o["sha256"].as_str().expect("sha"),
                "{path:?}"
            );
        }
    }

    // Side by side: every target ran work, and runs that overlapped on a target held
    // different GPUs.
    let mut spans: BTreeMap<usize, Vec<(String, String, BTreeSet<String>)>> = BTreeMap::new();
    for (host, r) in &records {
        let devices: BTreeSet<String> = r["cuda_visible_devices"]
            .as_str()
            .unwrap_or("")
            .split(',')
            .map(str::to_owned)
            .collect();
        spans.entry(*host).or_default().push((
            r["started_at"].as_str().unwrap_or("").to_owned(),
            r["finished_at"].as_str().unwrap_or("").to_owned(),
            devices,
        ));
    }
    assert_eq!(spans.len(), 3, "every target got work");
    let mut overlaps = 0;
    for list in spans.values() {
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                if a.0 < b.1 && b.0 < a.1 {
                    overlaps += 1;
                    assert!(
                        a.2.is_disjoint(&b.2),
                        "overlapping runs shared GPUs: {a:?} {b:?}"
                    );
                }
            }
        }
    }
    assert!(
        overlaps > 0,
        "no two runs ever ran side by side on a target"
    );
    assert_eq!(
        leftover_containers(&fleet),
        Vec::<String>::new(),
        "containers left behind"
    );
}

per_model!(
    a_worker_killed_at_any_stage_is_replaced_and_nothing_runs_twice,
    transfer25_a_worker_killed_at_any_stage_is_replaced_and_nothing_runs_twice,
    worker_killed_at_any_stage
);

fn worker_killed_at_any_stage(model: Model) {
    let fleet = Fleet::with_model(model, &[2], &["COSMOS_SIM_LOAD_SECONDS=2"]);
    // Docker through a `sudo` that takes a second over `docker run`, so the start of a
    // container is a window a kill can land in.
    let bin = fleet.hosts[0]
        .root()
        .parent()
        .expect("the fixture folder")
        .join("bin");
    let sudo = bin.join("sudo");
    std::fs::write(
        &sudo,
        "#!/bin/sh\n[ \"$1\" = -n ] && shift\n[ \"$2\" = run ] && sleep 1\nexec \"$@\"\n",
    )
    .expect("sudo wrapper");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sudo, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    fleet.run(&["target", "edit", "t0", "--docker-sudo"]).ok();
    let scene = large_scene(&fleet.home, 256);
    let blobs = fleet.hosts[0].root().join("blobs");
    let outputs = fleet.home.home().join("outputs");
    type Reached<'a> = Box<dyn Fn() -> bool + 'a>;
    let stages: [(&str, Reached); 4] = [
        ("staging", Box::new(|| !partial_files(&blobs).is_empty())),
        (
            "starting",
            Box::new(|| fleet.runs().iter().any(|r| r["status"] == "starting")),
        ),
        (
            "running",
            Box::new(|| fleet.runs().iter().any(|r| r["status"] == "running")),
        ),
        (
            "collecting",
            Box::new(|| !partial_files(&outputs).is_empty()),
        ),
    ];
    for (i, (stage, reached)) in stages.iter().enumerate() {
        let text = format!("take {i}");
        let id = fleet.queue(&text, &scene);
        let doomed = fleet.worker();
        wait_for(stage, Duration::from_secs(120), reached);
        kill9(doomed);
        let run = fleet.run_json(&id);
        assert_eq!(run["status"], *stage, "{run}");

        let rescuer = fleet.worker();
        fleet.wait_until(&id, "succeeded", 120);
        let log = stop(rescuer);
        assert!(log.contains("taken over"), "{log}");
    }
    let records = fleet.records();
    assert_eq!(records.len(), 4, "one model start per run: {records:?}");
    assert_eq!(leftover_containers(&fleet), Vec::<String>::new());
}

per_model!(
    a_target_whose_sshd_goes_away_mid_run_finishes_the_run_once,
    transfer25_a_target_whose_sshd_goes_away_mid_run_finishes_the_run_once,
    sshd_goes_away
);

fn sshd_goes_away(model: Model) {
    let mut fleet = Fleet::with_model(model, &[1], &["COSMOS_SIM_LOAD_SECONDS=3"]);
    // A hook hears of the lost target once, and of the run's end.
    let got = tempfile::tempdir().expect("dir");
    let config = fleet.home.home().join("cosmos.toml");
    let mut text = std::fs::read_to_string(&config).unwrap_or_default();
    text.push_str(&super::hooks::recorder(
        "ops",
        "\"target.unreachable\", \"run.succeeded\"",
        got.path(),
    ));
    std::fs::write(&config, text).expect("config");
    let scene = fleet.home.standard_scene("shot");
    let id = fleet.queue("through the storm", &scene);
    let worker = fleet.worker();
    fleet.wait_until(&id, "running", 60);
    fleet.hosts[0].stop();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        fleet.run_json(&id)["status"],
        "running",
        "unreachable is not failed"
    );
    fleet.hosts[0].restart().expect("sshd back");
    fleet.wait_until(&id, "succeeded", 120);
    let log = stop(worker);
    assert!(
        log.contains("does not answer"),
        "the worker never lost the target:\n{log}"
    );
    assert_eq!(fleet.records().len(), 1);
    let told = super::hooks::deliveries(got.path());
    let lost: Vec<&Value> = told
        .iter()
        .filter(|e| e["event"] == "target.unreachable")
        .collect();
    assert_eq!(lost.len(), 1, "{told:#?}");
    assert_eq!(lost[0]["run_id"], id.as_str());
    assert!(lost[0]["target"]["name"].is_string(), "{told:#?}");
    assert_eq!(
        told.iter()
            .filter(|e| e["event"] == "run.succeeded")
            .count(),
        1,
        "{told:#?}"
    );
}

per_model!(
    a_container_killed_from_outside_fails_the_run_as_killed,
    transfer25_a_container_killed_from_outside_fails_the_run_as_killed,
    container_killed
);

fn container_killed(model: Model) {
    let fleet = Fleet::with_model(model, &[1], &["COSMOS_SIM_LOAD_SECONDS=30"]);
    let scene = fleet.home.standard_scene("shot");
    let id = fleet.queue("a long take", &scene);
    let worker = fleet.worker();
    fleet.wait_until(&id, "running", 60);
    let st = Command::new("docker")
        .args(["kill", &format!("cosmos-{id}")])
        .stdout(Stdio::null())
        .status()
        .expect("docker kill");
    assert!(st.success());
    fleet.wait_until(&id, "failed", 60);
    stop(worker);
    let run = fleet.run_json(&id);
    let reason = run["failure_reason"].as_str().unwrap_or("");
    assert!(reason.starts_with("killed"), "{reason}");

    // `cosmos retry` queues it again as a new run linked to this one.
    let again = fleet
        .run(&["retry", &id, "--no-wait", "--json"])
        .ok()
        .json();
    assert_eq!(again["status"], "queued");
    assert_eq!(again["retry_of"], id.as_str());
    assert_ne!(again["id"], id.as_str());
    fleet
        .run(&["retry", again["id"].as_str().unwrap_or("")])
        .fails_with("only a failed or cancelled run can be retried");
}

per_model!(
    a_target_root_that_fills_up_fails_the_run_clearly_and_loses_nothing,
    transfer25_a_target_root_that_fills_up_fails_the_run_clearly_and_loses_nothing,
    root_fills_up
);

fn root_fills_up(model: Model) {
    let fleet = Fleet::with_model(model, &[1], &["COSMOS_SIM_LOAD_SECONDS=2"]);
    let disk = Tmpfs::mount("96m", fleet.hosts[0].user());
    let root = disk.0.path().display().to_string();
    fleet.run(&["target", "edit", "t0", "--root", &root]).ok();
    let scene = large_scene(&fleet.home, 20);
    let id = fleet.queue("a full disk", &scene);
    let worker = fleet.worker();
    fleet.wait_until(&id, "running", 60);
    // Something else on the host takes every free byte.
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "status=none"])
        .arg(format!("of={root}/filler"))
        .status();
    fleet.wait_until(&id, "failed", 60);
    stop(worker);
    let run = fleet.run_json(&id);
    let reason = run["failure_reason"].as_str().unwrap_or("");
    assert!(reason.contains("ran out of disk space"), "{reason}");
    assert!(reason.contains("free space under"), "{reason}");
    // Nothing local is half-written, and the database still answers.
    assert!(partial_files(&fleet.home.home()).is_empty());
    assert!(!fleet.home.home().join("outputs").join(&id).exists());
    fleet.run(&["list"]).ok();
}

per_model!(
    status_shows_the_queue_with_estimates_running_runs_targets_and_workers,
    transfer25_status_shows_the_queue_with_estimates_running_runs_targets_and_workers,
    status_shows_the_queue
);

fn status_shows_the_queue(model: Model) {
    let fleet = Fleet::with_model(model, &[2], &["COSMOS_SIM_LOAD_SECONDS=1.5"]);
    fleet.one_run_per_process(model);
    let scene = fleet.home.standard_scene("shot");
    // One finished run gives the estimates something to go on.
    fleet.run(&["run", "a first harbour", s(&scene)]).ok();

    fleet.run(&["queue", "pause"]).ok();
    fleet
        .run(&[
            "run",
            "a harbour",
            s(&scene),
            "--seeds",
            "1..4",
            "--no-wait",
        ])
        .ok();
    fleet
        .run(&[
            "run",
            "an urgent harbour",
            s(&scene),
            "--priority",
            "5",
            "--no-wait",
        ])
        .ok();
    let v = fleet.run(&["status", "--json"]).ok().json();
    assert_eq!(v["paused"], true, "{v}");
    assert_eq!(v["queued_total"], 5);
    let queue = v["queue"].as_array().expect("queue");
    assert_eq!(
        queue[0]["run"]["prompt_text"], "an urgent harbour",
        "priority first"
    );
    assert!(
        v["typical_run_seconds"].as_f64().unwrap_or(0.0) >= 1.5,
        "{v}"
    );
    assert_eq!(v["targets"][0]["free"], 2);
    let text = fleet.run(&["status"]).ok().stdout;
    assert!(
        text.contains("PAUSED") && text.contains("queue 5 queued"),
        "{text}"
    );

    // Running: estimates appear, runs go two at a time onto the target's two slots.
    fleet.run(&["queue", "resume"]).ok();
    let v = fleet.run(&["status", "--json"]).ok().json();
    let starts: Vec<String> = v["queue"]
        .as_array()
        .expect("queue")
        .iter()
        .map(|q| q["estimated_start"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(starts.iter().all(|s| !s.is_empty()), "{v}");
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{starts:?}");
    assert!(
        starts[2] > starts[0],
        "two slots: the third waits: {starts:?}"
    );

    let worker = fleet.worker();
    let mut seen = Value::Null;
    wait_for("two runs side by side", Duration::from_secs(60), || {
        seen = fleet.run(&["status", "--json"]).ok().json();
        seen["running"].as_array().map(Vec::len) == Some(2)
    });
    let running = &seen["running"][0];
    assert_eq!(running["run"]["target"], "t0", "{seen}");
    assert_eq!(running["run"]["devices"].as_array().map(Vec::len), Some(1));
    assert_eq!(seen["targets"][0]["used"], 2, "{seen}");
    assert_eq!(seen["workers"].as_array().map(Vec::len), Some(1));

    // --watch refreshes, one JSON object per line.
    let home = fleet.home.path().display().to_string();
    let mut watch = fleet
        .home
        .command(&["status", "--watch", "--json", "--interval", "0.2"])
        .env("HOME", &home)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("status --watch");
    let lines = {
        use std::io::BufRead;
        let out = watch.stdout.take().expect("stdout");
        let mut n = 0;
        for line in std::io::BufReader::new(out).lines().take(3) {
            let v: Value = serde_json::from_str(&line.expect("a line")).expect("json");
            assert!(v["targets"].is_array(), "{v}");
            n += 1;
        }
        n
    };
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(lines, 3);

    wait_for("the queue to drain", Duration::from_secs(120), || {
        fleet.status_counts().get("succeeded").copied() == Some(6)
    });
    let v = fleet.run(&["status", "--json"]).ok().json();
    assert_eq!(v["targets"][0]["reachable"], true, "{v}");

    // With a worker alive, `cosmos run` queues and follows; the worker runs it.
    let out = fleet.run(&["run", "a followed harbour", s(&scene)]).ok();
    assert!(out.stderr.contains("a worker runs it"), "{}", out.stderr);
    assert!(model.is_video(&out.stdout), "{}", out.stdout);
    let log = stop(worker);
    assert!(
        log.contains("a followed harbour") || log.contains("succeeded"),
        "{log}"
    );
}

per_model!(
    a_run_that_cannot_be_staged_goes_back_to_the_queue_and_runs_elsewhere,
    transfer25_a_run_that_cannot_be_staged_goes_back_to_the_queue_and_runs_elsewhere,
    unstageable_run_runs_elsewhere
);

fn unstageable_run_runs_elsewhere(model: Model) {
    let mut fleet = Fleet::with_model(model, &[8, 1], &[]);
    let scene = fleet.home.standard_scene("shot");
    fleet.hosts[0].stop();
    let id = fleet.queue("a detour", &scene);
    let worker = fleet.worker_with(&[
        ("COSMOS_QUEUE_STAGING_PATIENCE_SECONDS", "0.5"),
        ("COSMOS_QUEUE_RETRY_BACKOFF_SECONDS", "0.2"),
    ]);
    fleet.wait_until(&id, "succeeded", 90);
    let log = stop(worker);
    let shown = fleet.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(shown["run"]["target"], "t1", "{shown}\n{log}");
    assert_eq!(shown["run"]["attempts"], 1);
    let events = shown["events"].to_string();
    assert!(
        events.contains("back in the queue for retry 1 of 3"),
        "{events}"
    );
    assert!(log.contains("target t0 does not answer"), "{log}");
    let records = fleet.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].0, 1, "it ran on t1");
}

per_model!(
    killing_a_run_a_worker_drives_ends_it_cancelled,
    transfer25_killing_a_run_a_worker_drives_ends_it_cancelled,
    kill_a_worker_s_run
);

fn kill_a_worker_s_run(model: Model) {
    let fleet = Fleet::with_model(model, &[1], &["COSMOS_SIM_LOAD_SECONDS=30"]);
    let scene = fleet.home.standard_scene("shot");
    let id = fleet.queue("stop this take", &scene);
    let worker = fleet.worker();
    fleet.wait_until(&id, "running", 60);
    let out = fleet.run(&["kill", &id]).ok();
    assert!(out.stdout.contains("cancel requested"), "{}", out.stdout);
    fleet.wait_until(&id, "cancelled", 60);
    stop(worker);
    assert_eq!(leftover_containers(&fleet), Vec::<String>::new());
    // A queued run simply leaves the queue.
    fleet.run(&["queue", "pause"]).ok();
    let queued = fleet.queue("never mind", &scene);
    fleet.run(&["kill", &queued]).ok();
    assert_eq!(fleet.run_json(&queued)["status"], "cancelled");
    let events = fleet.run(&["show", &queued, "--json"]).ok().json()["events"].to_string();
    assert!(!events.contains("started"), "{events}");

    // A run no target has the slots for is refused rather than left waiting for ever.
    fleet
        .run(&["run", "too big", s(&scene), "--gpus", "2", "--no-wait"])
        .fails_with("asks for 2 GPUs but no target has that many GPU slots");
    fleet
        .run(&["run", "too big", s(&scene), "--gpus", "2", "--target", "t0"])
        .fails_with("asks for 2 GPUs but target t0 has 1 GPU slot");
}

per_model!(
    runs_go_where_their_inputs_already_are,
    transfer25_runs_go_where_their_inputs_already_are,
    runs_follow_their_inputs
);

fn runs_follow_their_inputs(model: Model) {
    let fleet = Fleet::with_model(model, &[4, 4], &[]);
    let scene = fleet.home.standard_scene("shot");
    // t0 would win a tie (by name); t1 holds the inputs after this run.
    fleet
        .run(&["run", "a first take", s(&scene), "--target", "t1"])
        .ok();
    let id = fleet.queue("a second take", &scene);
    let worker = fleet.worker();
    fleet.wait_until(&id, "succeeded", 60);
    stop(worker);
    let run = fleet.run_json(&id);
    assert_eq!(run["target"], "t1", "{run}");
    let events = fleet.run(&["show", &id, "--json"]).ok().json()["events"].to_string();
    assert!(events.contains("nothing uploaded"), "{events}");
}

per_model!(
    cosmos_run_takes_over_when_the_worker_it_follows_dies,
    transfer25_cosmos_run_takes_over_when_the_worker_it_follows_dies,
    run_takes_over_from_a_dead_worker
);

fn run_takes_over_from_a_dead_worker(model: Model) {
    let fleet = Fleet::with_model(model, &[1], &["COSMOS_SIM_LOAD_SECONDS=3"]);
    let scene = fleet.home.standard_scene("shot");
    let worker = fleet.worker();
    wait_for("the worker to register", Duration::from_secs(10), || {
        fleet.run(&["status", "--json"]).ok().json()["workers"]
            .as_array()
            .is_some_and(|w| !w.is_empty())
    });
    let home = fleet.home.path().display().to_string();
    let follower = fleet
        .home
        .command(&["run", "a lonely harbour", s(&scene)])
        .env("HOME", &home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cosmos run");
    wait_for("the model to run", Duration::from_secs(60), || {
        fleet.runs().iter().any(|r| r["status"] == "running")
    });
    kill9(worker);
    let out = follower.wait_with_output().expect("cosmos run ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("a worker runs it"), "{stderr}");
    assert!(stderr.contains("no worker is left"), "{stderr}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(model.is_video(&printed), "{printed}");
    assert_eq!(fleet.records().len(), 1, "the model ran once");
}

per_model!(
    a_target_with_fewer_gpus_than_slots_only_gets_runs_on_gpus_it_has,
    transfer25_a_target_with_fewer_gpus_than_slots_only_gets_runs_on_gpus_it_has,
    fewer_gpus_than_slots
);

fn fewer_gpus_than_slots(model: Model) {
    // 8 slots configured (the default), 2 GPUs on the host.
    let home = Home::new();
    model.configure(&home);
    let host = SshHost::start_with(HostOptions {
        gpus: 2,
        ..HostOptions::default()
    })
    .expect("sshd fixture");
    let extra = model.prepare(&host);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    add_fixture_target(&home, "gpu", &host, &["COSMOS_SIM_CLIP_SECONDS=1"], &extra);
    let fleet = Fleet {
        home,
        hosts: vec![host],
    };
    fleet.one_run_per_process(model);
    fleet.run(&["target", "trust", "gpu", "--yes"]).ok();

    // The preflight says so, with the fix.
    let check = fleet.run(&["target", "check", "gpu", "--json"]).json();
    let gpus = check["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["check"] == "gpus"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(gpus["ok"], false, "{check}");
    assert!(
        gpus["hint"]
            .as_str()
            .is_some_and(|h| h.contains("`cosmos target edit gpu --gpus 2`")),
        "{gpus}"
    );
    let status = fleet.run(&["status", "--json"]).ok().json();
    assert_eq!(status["targets"][0]["slots"], 2, "{status}");

    // A worker places the first three at once; the one on GPU 2 goes back to the queue and
    // waits for a GPU the host has.
    let scene = fleet.home.standard_scene("shot");
    let ids: Vec<String> = fleet
        .run(&[
            "run",
            "three takes",
            s(&scene),
            "--seeds",
            "1..3",
            "--no-wait",
        ])
        .ok()
        .stdout
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let worker = fleet.worker();
    for id in &ids {
        fleet.wait_until(id, "succeeded", 90);
    }
    // `cosmos status` shows the slots the target really offers, once the worker says.
    wait_for("status to show 2 slots", Duration::from_secs(20), || {
        let status = fleet.run(&["status", "--json"]).ok().json();
        status["targets"][0]["slots"] == 2
    });
    let status = fleet.run(&["status", "--json"]).ok().json();
    assert_eq!(status["targets"][0]["configured_slots"], 8, "{status}");
    assert_eq!(status["targets"][0]["gpus_seen"], 2, "{status}");
    let human = fleet.run(&["status"]).ok().stdout;
    assert!(human.contains("2 (of 8: 2 GPUs seen)"), "{human}");
    let log = stop(worker);
    let mut requeued = 0;
    for id in &ids {
        let shown = fleet.run(&["show", id, "--json"]).ok().json();
        let devices = shown["run"]["devices"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            !devices.is_empty() && devices.iter().all(|d| d.as_u64().is_some_and(|d| d < 2)),
            "{id} ran on GPUs {devices:?}\n{log}"
        );
        if shown["events"]
            .to_string()
            .contains("placed on GPU 2 but target gpu has 2 GPUs")
        {
            requeued += 1;
        }
    }
    assert_eq!(requeued, 1, "one run was first placed on GPU 2\n{log}");
    assert_eq!(fleet.records().len(), 3, "one model start per run");
}

per_model!(
    a_worker_paused_past_its_lease_writes_nothing_and_starts_nothing_when_it_wakes,
    transfer25_a_worker_paused_past_its_lease_writes_nothing_and_starts_nothing_when_it_wakes,
    paused_past_its_lease
);

fn paused_past_its_lease(model: Model) {
    let fleet = Fleet::with_model(model, &[1], &["COSMOS_SIM_LOAD_SECONDS=8"]);
    let scene = fleet.home.standard_scene("shot");
    let lease = [("COSMOS_QUEUE_LEASE_SECONDS", "1.5")];
    let first = fleet.worker_with(&lease);
    let id = fleet.queue("paused driver", &scene);
    fleet.wait_until(&id, "running", 60);
    let pid = rustix::process::Pid::from_child(&first.child);
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
    let events = |f: &Fleet| -> Vec<Value> {
        f.run(&["show", &id, "--json"]).ok().json()["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let before = events(&fleet).len();

    // Another worker takes the run over once the lease lapses: it reattaches to the model's
    // log and records its progress.
    let second = fleet.worker_with(&lease);
    wait_for(
        "the second worker to drive",
        Duration::from_secs(30),
        || events(&fleet).len() > before,
    );
    // The first wakes while the model still runs: its lease is gone.
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).expect("SIGCONT");
    fleet.wait_until(&id, "succeeded", 90);
    let second_log = stop(second);
    let first_log = stop(first);

    // It changed nothing: the milestones in order (the taker-over repeats only the one it
    // found the model at), one model start, one copy of each log line.
    let shown = fleet.run(&["show", &id, "--json"]).ok().json();
    let mut messages: Vec<String> = events(&fleet)
        .iter()
        .filter(|e| e["progress"].is_number())
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect();
    messages.dedup();
    let mut unique = messages.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(messages.len(), unique.len(), "written twice: {messages:?}");
    assert_eq!(shown["run"]["status"], "succeeded", "{shown}");
    let records = fleet.records();
    assert_eq!(records.len(), 1, "one container ever: {records:?}");
    let log = std::fs::read_to_string(fleet.home.home().join("logs").join(format!("{id}.log")))
        .expect("log");
    assert_eq!(log.matches(model.once()).count(), 1, "{log}");
    assert_eq!(log.matches(model.saved()).count(), 1, "{log}");
    assert!(second_log.contains("taken over"), "{second_log}");
    assert!(
        !first_log.contains(&format!("{id} succeeded")),
        "{first_log}"
    );
}

#[test]
fn slots_follow_the_host_s_gpus_unless_set_and_a_changed_key_needs_replace() {
    let home = Home::new();
    let host = SshHost::start_with(HostOptions {
        gpus: 1,
        ..HostOptions::default()
    })
    .expect("sshd fixture");
    let url = format!("ssh://{}@127.0.0.1:{}", host.user(), host.port());
    let mut add = super::remote::fixture_target_add("one", &url, &host);
    add.extend(["--key".into(), host.client_key().display().to_string()]);
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    let fleet = Fleet {
        home,
        hosts: vec![host],
    };
    fleet.run(&add).ok();
    let shown = fleet.run(&["target", "show", "one", "--json"]).ok().json();
    assert_eq!(shown["gpus_from_host"], true, "{shown}");

    // Trusting counts the GPUs: one GPU, one slot, and the check passes, worded in the singular.
    let trust = fleet.run(&["target", "trust", "one", "--yes"]).ok();
    assert!(
        trust.stderr.contains("one has 1 GPU: 1 slot"),
        "{}",
        trust.stderr
    );
    let shown = fleet.run(&["target", "show", "one", "--json"]).ok().json();
    assert_eq!(shown["gpus"], 1, "{shown}");
    let check = fleet.run(&["target", "check", "one", "--json"]).ok().json();
    assert_eq!(check["ok"], true, "{check}");
    let gpus = check["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["check"] == "gpus"))
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        gpus["detail"]
            .as_str()
            .is_some_and(|d| d.ends_with("1 slot (as many as the host has)")),
        "{gpus}"
    );
    // A slot count given by hand stays.
    fleet.run(&["target", "edit", "one", "--gpus", "3"]).ok();
    let check = fleet.run(&["target", "check", "one", "--json"]).json();
    assert_eq!(check["ok"], false, "{check}");
    let shown = fleet.run(&["target", "show", "one", "--json"]).ok().json();
    assert_eq!(
        (shown["gpus"].as_u64(), shown["gpus_from_host"].as_bool()),
        (Some(3), Some(false))
    );

    // A pinned key that no longer matches: --yes alone refuses; --replace replaces it.
    let known = fleet.home.home().join("known_hosts");
    let real = std::fs::read_to_string(&known).expect("pinned key");
    let other_dir = tempfile::tempdir().expect("temp");
    let other_key = other_dir.path().join("k");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other_key)
        .status()
        .expect("ssh-keygen");
    assert!(made.success());
    let other = std::fs::read_to_string(other_key.with_extension("pub")).expect("pub key");
    let other_b64 = other.split_whitespace().nth(1).unwrap_or("").to_owned();
    let forged: String = real
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split_whitespace().collect();
            if f.len() >= 3 {
                f[1] = "ssh-ed25519";
                f[2] = &other_b64;
            }
            format!("{}\n", f.join(" "))
        })
        .collect();
    std::fs::write(&known, &forged).expect("forge the pin");
    let refused = fleet.run(&["target", "trust", "one", "--yes"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("`cosmos target trust one --replace` replaces the key pinned for"),
        "{}",
        refused.stderr
    );
    let replaced = fleet
        .run(&["target", "trust", "one", "--yes", "--replace"])
        .ok();
    assert!(
        replaced.stderr.contains("replacing the key pinned for"),
        "{}",
        replaced.stderr
    );
    let pinned = std::fs::read_to_string(&known).expect("pins");
    assert!(
        !pinned.contains(&other_b64),
        "the old key is gone: {pinned}"
    );
    fleet.run(&["target", "check", "one", "--json"]).json();
    assert!(
        fleet
            .run(&["target", "trust", "one", "--yes"])
            .ok()
            .stderr
            .contains("already trusted")
    );
}

/// Runs left started on targets that no longer exist wait for a target of that name to
/// return: the worker neither takes them over nor fails trying, sweep after sweep.
#[test]
fn a_worker_leaves_runs_on_removed_targets_alone() -> TestResult {
    let fleet = Fleet {
        home: Home::new(),
        hosts: Vec::new(),
    };
    // Seeded runs include started ones on targets `gpu-1`..`gpu-3`, which are not stored.
    fleet
        .run(&[
            "dev",
            "seed",
            "--prompts",
            "10",
            "--runs",
            "60",
            "--input-sets",
            "2",
        ])
        .ok();
    let started: BTreeMap<String, String> = fleet
        .runs()
        .into_iter()
        .filter(|r| r["status"] == "running")
        .map(|r| {
            let id = r["id"].as_str().unwrap_or_default().to_owned();
            (id, r["target"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    assert!(!started.is_empty(), "the seed starts some runs");
    let worker = fleet.worker();
    // Two orphan sweeps (one every 2 s).
    std::thread::sleep(Duration::from_secs(5));
    let said = stop(worker);
    assert!(!said.contains("taken over"), "{said}");
    assert!(!said.contains("no target named"), "{said}");
    for (id, target) in &started {
        let run = fleet.run_json(id);
        assert_eq!(run["status"], "running", "{run}");
        assert_eq!(run["target"].as_str(), Some(target.as_str()), "{run}");
    }
    Ok(())
}

//! Models as adapters (issue 18): Cosmos-Transfer2.5 beside Transfer1 through the same
//! engine — on a local target and over SSH into the real Docker engine, each run on a target
//! set up for its model, Transfer2.5's outputs under its names, its guardrail's exit 0
//! without a video a failure, and each model's parameters refused for the other.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::local::Local;
use super::remote::{add_fixture_target, containers, sha256, wait_for};
use super::support::{s, stop_worker};
use cosmos_testkit::{SshHost, sim_binary};

/// A cosmos-transfer2.5 checkout (its entry point) in `dir`.
pub(super) fn transfer25_checkout(dir: &Path) -> PathBuf {
    let st = std::process::Command::new(sim_binary().expect("cosmos-sim"))
        .args(["checkout", "--model", "transfer2.5"])
        .arg(dir)
        .status()
        .expect("cosmos-sim checkout");
    assert!(st.success());
    dir.to_path_buf()
}

/// Adds local target `name` set up for Cosmos-Transfer2.5 (a plain process).
fn add_transfer25(l: &Local, name: &str, dir: &Path) {
    let checkout = transfer25_checkout(&dir.join("t25"));
    let root = dir.join("root25");
    l.run(&[
        "target",
        "add",
        name,
        "--local",
        "--runtime",
        "none",
        "--gpus",
        "1",
        "--root",
        s(&root),
        "--cosmos-dir",
        s(&checkout),
        "--model",
        "transfer2.5",
    ])
    .ok();
}

fn output_names(run: &Value) -> Vec<String> {
    run["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .map(|o| {
            Path::new(o["path"].as_str().expect("path"))
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// What a Transfer2.5 run's model read: the validated arguments it saved beside its video.
pub(super) fn model_args(run: &Value) -> Value {
    let id = run["id"].as_str().expect("id");
    let video = Path::new(run["outputs"][0]["path"].as_str().expect("path"));
    let text = std::fs::read_to_string(video.with_file_name(format!("{id}.json"))).expect("args");
    serde_json::from_str(&text).expect("json")
}

/// The dashboard's page of run `id`.
fn run_page(server: &super::serve::Server, id: &str) -> String {
    super::serve::agent()
        .get(&server.url(&format!("/runs/{id}")))
        .call()
        .expect("run page")
        .into_body()
        .read_to_string()
        .expect("html")
}

/// A home with target `gpu25` set up for Transfer2.5 on a fresh sshd host (trusted; the sim
/// image in the real Docker engine), its model's environment `env`.
struct Ssh25 {
    l: Local,
    host: SshHost,
}

impl Ssh25 {
    fn new(env: &[&str], extra: &[&str]) -> Self {
        let l = Local::new();
        let host = SshHost::start().expect("sshd fixture");
        transfer25_checkout(&host.cosmos_dir());
        let mut extra = extra.to_vec();
        extra.extend(["--model", "transfer2.5"]);
        add_fixture_target(&l.home, "gpu25", &host, env, &extra);
        let t = Ssh25 { l, host };
        t.run(&["target", "trust", "gpu25", "--yes"]).ok();
        t
    }

    fn home(&self) -> String {
        self.l.home.path().display().to_string()
    }

    fn run(&self, args: &[&str]) -> super::support::Out {
        self.l.home.run_with(args, &[("HOME", &self.home())])
    }

    /// `cosmos run TEXT SCENE --model transfer2.5 --no-wait`: the new run's id.
    fn queue(&self, text: &str, scene: &Path) -> String {
        self.run(&["run", text, s(scene), "--model", "transfer2.5", "--no-wait"])
            .ok()
            .stdout
            .trim()
            .to_owned()
    }

    fn worker(&self) -> std::process::Child {
        self.l.home.spawn_worker(&[("HOME", &self.home())])
    }

    fn show(&self, id: &str) -> Value {
        self.run(&["show", id, "--json"]).ok().json()["run"].clone()
    }

    fn wait_until(&self, id: &str, status: &str) {
        wait_for(
            &format!("{id} to be {status}"),
            Duration::from_secs(120),
            || self.show(id)["status"] == status,
        );
    }

    /// Every model start on the host, as cosmos-sim recorded it.
    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.host.record_file())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("record"))
            .collect()
    }
}

#[test]
fn a_transfer25_run_goes_to_its_target_and_keeps_its_outputs() {
    let l = Local::new();
    let dir = tempfile::tempdir().expect("dir");
    l.add("t1", &["--runtime", "none", "--gpus", "1"]);
    add_transfer25(&l, "t25", dir.path());
    let scene = l.home.standard_scene("shot");
    let listed = l.run(&["target", "list"]).ok().stdout;
    assert!(listed.contains("MODELS"), "{listed}");
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with("t25") && line.contains("transfer2.5")),
        "{listed}"
    );

    // The dry run: Transfer2.5's spec and command.
    let dry = l
        .run(&[
            "run",
            "a red car",
            s(&scene),
            "--model",
            "transfer2.5",
            "--weights",
            "edge=0.5,depth=0.5",
            "--dry-run",
        ])
        .ok()
        .stdout;
    assert!(dry.contains("what Cosmos-Transfer2.5 receives"), "{dry}");
    assert!(dry.contains("examples/inference.py -i "), "{dry}");
    assert!(
        dry.contains("\"guidance\": 3,") && dry.contains("\"seed\": 2025,"),
        "{dry}"
    );
    assert!(!dry.contains("sigma_max"), "{dry}");

    let out = l
        .run(&[
            "run",
            "a red car",
            s(&scene),
            "--model",
            "transfer2.5",
            "--weights",
            "edge=0.5,depth=0.5",
            "--sigma-max",
            "80",
            "--num-conditional-frames",
            "2",
            "--mask-prompt",
            "edge=the car",
            "--json",
        ])
        .ok();
    let run = out.json();
    let id = run["id"].as_str().expect("id");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["target"], "t25");
    assert_eq!(run["params"]["model"], "transfer2.5");
    // Its outputs under its names: the video first, its control videos beside it.
    let names = output_names(&run);
    assert_eq!(names[0], format!("{id}.mp4"), "{names:?}");
    for want in [
        format!("{id}.txt"),
        format!("{id}.json"),
        format!("{id}_control_edge.mp4"),
        format!("{id}_control_depth.mp4"),
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    let video = Path::new(run["outputs"][0]["path"].as_str().expect("path"));
    assert_eq!(
        sha256(video),
        run["outputs"][0]["sha256"].as_str().expect("sha")
    );
    // What Transfer2.5 read: its own spec, as validated, with the run's choices.
    let args = model_args(&run);
    assert_eq!(args["name"], id);
    assert_eq!(args["sigma_max"], "80");
    assert_eq!(args["num_conditional_frames"], 2);
    assert_eq!(args["edge"]["mask_prompt"], "the car");
    assert_eq!(args["edge"]["preset_edge_threshold"], "medium");
    let launch = run["launch_command"].to_string();
    assert!(launch.contains("examples/inference.py"), "{launch}");
    assert!(!launch.contains("a red car"), "{launch}");
    // Progress from its step bars, a tenth of a chunk at a time.
    let events = l.run(&["show", id, "--json"]).ok().json()["events"].clone();
    let steps: Vec<&str> = events
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.starts_with("generating: chunk 1/1, step "))
        .collect();
    assert!(steps.len() >= 5 && steps.len() <= 12, "{steps:?}");
    assert_eq!(
        steps.last(),
        Some(&"generating: chunk 1/1, step 35/35"),
        "{steps:?}"
    );
    let shown = l.run(&["show", id]).ok().stdout;
    assert!(shown.contains("transfer2.5"), "{shown}");
    assert!(shown.contains("conditional frames 2"), "{shown}");

    // Over the API and on the dashboard: a Transfer2.5 run queued by `model`, and the run
    // page shows the controls the model used beside the output.
    let server = super::serve::Server::start(&l.home, &[]);
    let page = run_page(&server, id);
    assert!(
        page.contains(&format!("/api/v1/runs/{id}/outputs/{id}_control_edge.mp4")),
        "{page}"
    );
    assert!(page.contains("edge (as the model used it)"), "{page}");
    let (status, body) = super::serve::post(
        &server.url("/api/v1/runs"),
        serde_json::json!({"runs": [{"prompt": "a red car", "inputs": s(&scene), "model": "transfer2.5", "fps": 30}]}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "wrong_model_parameter", "{body}");
    drop(server);

    // The same scene without a model goes to Transfer1's target.
    let t1 = l.run_ok("t1", "a red car", &scene);
    assert_eq!(output_names(&t1)[0], "output.mp4");

    // The guardrail: exit 0 and no video is a failure that says why.
    let blocked = l.run(&[
        "run",
        "forbiddenfruit on a plate",
        s(&scene),
        "--model",
        "transfer2.5",
        "--json",
    ]);
    assert_eq!(blocked.code, 1, "{}", blocked.stderr);
    let b = blocked.json();
    assert_eq!(b["status"], "failed");
    assert_eq!(b["failure_code"], "guardrail_blocked");
    assert_eq!(b["exit_code"], 0);
    assert!(
        b["failure_reason"]
            .as_str()
            .unwrap_or("")
            .contains("Guardrail blocked generation"),
        "{b}"
    );
}

#[test]
fn parameters_of_the_other_model_and_missing_targets_are_refused() {
    let l = Local::new();
    l.add("t1", &["--runtime", "none", "--gpus", "1"]);
    let scene = l.home.standard_scene("shot");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--model", "transfer2.5", "--fps", "30"],
            "`--fps` is not a Cosmos-Transfer2.5 parameter",
        ),
        (
            &["--model", "transfer2.5", "--upsample-prompt"],
            "`--upsample-prompt` is not a Cosmos-Transfer2.5 parameter",
        ),
        (
            &["--num-conditional-frames", "2"],
            "`--num-conditional-frames` is not a Cosmos-Transfer1 parameter",
        ),
        (
            &["--mask-prompt", "edge=the car"],
            "`--mask-prompt` is not a Cosmos-Transfer1 parameter",
        ),
        (
            &["--model", "transfer2.5", "--guidance", "3.5"],
            "Cosmos-Transfer2.5 takes a whole number from 0 to 7",
        ),
        (
            &["--model", "transfer2.5", "--weights", "keypoint=1"],
            "`--weights keypoint=…` is not a Cosmos-Transfer2.5 parameter",
        ),
        (&["--model", "transfer3"], "unknown model `transfer3`"),
        // No target is set up for it: refused now, not queued for ever.
        (
            &["--model", "transfer2.5"],
            "no target is set up for Cosmos-Transfer2.5",
        ),
        (
            &["--model", "transfer2.5", "--no-wait"],
            "no target is set up for Cosmos-Transfer2.5",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["run", "a red car", s(&scene)];
        args.extend_from_slice(extra);
        l.run(&args).fails_with(needle);
    }
    let dir = tempfile::tempdir().expect("dir");
    add_transfer25(&l, "t25", dir.path());
    l.run(&[
        "run",
        "a red car",
        s(&scene),
        "--model",
        "transfer2.5",
        "--target",
        "t1",
    ])
    .fails_with("target `t1` is set up for transfer1 and this run is for Cosmos-Transfer2.5");
    l.run(&["target", "add", "x", "--local", "--model", "transfer9"])
        .fails_with("unknown model `transfer9`");
    assert_eq!(
        l.run(&["list", "--json"])
            .ok()
            .json()
            .as_array()
            .map(Vec::len),
        Some(0),
        "nothing was queued"
    );
}

#[test]
fn masks_go_by_file_or_by_words_and_a_prompt_chooses_its_runs_model() {
    let l = Local::new();
    let dir = tempfile::tempdir().expect("dir");
    l.add("t1", &["--runtime", "none", "--gpus", "1"]);
    add_transfer25(&l, "t25", dir.path());
    let scene = l.home.standard_scene("shot");
    let mask = dir.path().join("car mask.mp4");
    cosmos_testkit::test_video(&mask, 64, 36, 24, 24).expect("mask video");

    // A prompt that names its model: its runs use it unless they name another.
    let p = l
        .run(&[
            "prompt",
            "create",
            "a blue van",
            "--inputs",
            s(&scene),
            "--name",
            "van",
            "--model",
            "transfer2.5",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(p["model"], "transfer2.5", "{p}");
    assert!(
        l.run(&["prompt", "show", "van"])
            .ok()
            .stdout
            .contains("transfer2.5")
    );
    let dry = l
        .run(&[
            "run",
            "van",
            "--weights",
            "edge=1",
            "--mask",
            &format!("edge={}", mask.display()),
            "--dry-run",
        ])
        .ok()
        .stdout;
    assert!(dry.contains("what Cosmos-Transfer2.5 receives"), "{dry}");
    assert!(dry.contains("/inputs/mask_edge.mp4\""), "{dry}");
    let named = l
        .run(&["run", "van", "--model", "transfer1", "--dry-run"])
        .ok()
        .stdout;
    assert!(!named.contains("Cosmos-Transfer2.5"), "{named}");

    // A mask by file and one in words, on the run's two controls.
    let out = l
        .run(&[
            "run",
            "van",
            "--weights",
            "edge=0.5,depth=0.5",
            "--mask",
            &format!("edge={}", mask.display()),
            "--mask-prompt",
            "depth=the road",
            "--json",
        ])
        .ok();
    let run = out.json();
    let id = run["id"].as_str().expect("id");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["target"], "t25");
    assert_eq!(run["params"]["model"], "transfer2.5");
    assert_eq!(run["params"]["mask_files"]["edge"]["sha256"], sha256(&mask));
    let video = Path::new(run["outputs"][0]["path"].as_str().expect("path"));
    let args = model_args(&run);
    let staged = args["edge"]["mask_path"].as_str().expect("mask_path");
    assert!(staged.ends_with("/inputs/mask_edge.mp4"), "{args}");
    assert_eq!(args["depth"]["mask_prompt"], "the road");
    assert!(args["depth"].get("mask_path").is_none(), "{args}");
    // The masks the model wrote beside its output: the file as given, the words' own.
    let names = output_names(&run);
    for want in [
        format!("{id}_mask_edge.mp4"),
        format!("{id}_mask_depth.mp4"),
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }
    assert_eq!(
        sha256(&video.with_file_name(format!("{id}_mask_edge.mp4"))),
        sha256(&mask)
    );
    assert!(l.run(&["show", id]).ok().stdout.contains("edge mask /"));
    let server = super::serve::Server::start(&l.home, &[]);
    let page = run_page(&server, id);
    assert!(page.contains("edge mask"), "{page}");
    assert!(page.contains(&format!("/api/v1/runs/{id}/outputs/{id}_mask_edge.mp4")));
    drop(server);

    // Bad masks are refused before anything is queued.
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "not a video").expect("write");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--model".into(),
                "transfer1".into(),
                "--mask".into(),
                format!("edge={}", mask.display()),
            ],
            "`--mask` is not a Cosmos-Transfer1 parameter",
        ),
        (
            vec![
                "--weights".into(),
                "edge=1".into(),
                "--mask".into(),
                format!("seg={}", mask.display()),
            ],
            "`--mask seg=…` is not a Cosmos-Transfer2.5 parameter",
        ),
        (
            vec![
                "--weights".into(),
                "edge=1".into(),
                "--mask".into(),
                format!("edge={}", mask.display()),
                "--mask-prompt".into(),
                "edge=the van".into(),
            ],
            "a control's mask is a video or words, not both",
        ),
        (
            vec![
                "--weights".into(),
                "edge=1".into(),
                "--mask".into(),
                "edge=nowhere.mp4".into(),
            ],
            "--mask edge=nowhere.mp4: No such file",
        ),
        (
            vec![
                "--weights".into(),
                "edge=1".into(),
                "--mask".into(),
                format!("edge={}", text.display()),
            ],
            "not a video ffprobe can read",
        ),
        (
            vec![
                "--weights".into(),
                "edge=1".into(),
                "--mask".into(),
                "edge".into(),
            ],
            "give CONTROL=FILE",
        ),
    ];
    for (extra, needle) in &cases {
        let mut args = vec!["run", "van"];
        args.extend(extra.iter().map(String::as_str));
        l.run(&args).fails_with(needle);
    }
    l.run(&["prompt", "create", "x", "--model", "transfer3"])
        .fails_with("unknown model `transfer3`");

    // A mask changed between queueing and staging fails the run, saying so.
    let queued = l
        .run(&[
            "run",
            "van",
            "--weights",
            "edge=1",
            "--mask",
            &format!("edge={}", mask.display()),
            "--no-wait",
        ])
        .ok()
        .stdout
        .trim()
        .to_owned();
    cosmos_testkit::test_video(&mask, 32, 18, 24, 12).expect("another mask");
    let worker = l.home.spawn_worker(&[("PATH", &l.path())]);
    wait_for("the run to end", Duration::from_secs(60), || {
        l.run(&["show", &queued, "--json"]).ok().json()["run"]["status"] == "failed"
    });
    stop_worker(worker);
    let failed = l.run(&["show", &queued, "--json"]).ok().json()["run"].clone();
    assert_eq!(failed["failure_code"], "input_changed", "{failed}");
    assert!(
        failed["failure_reason"]
            .as_str()
            .unwrap_or("")
            .contains("submit the run again"),
        "{failed}"
    );

    // Without its model the prompt's runs use the configured default again.
    l.run(&["prompt", "edit", "van", "--no-model"]).ok();
    let dry = l.run(&["run", "van", "--dry-run"]).ok().stdout;
    assert!(!dry.contains("Cosmos-Transfer2.5"), "{dry}");
}

#[test]
fn a_mixed_queue_places_each_run_on_its_models_target_and_batches_within_a_model() {
    let l = Local::new();
    let dir = tempfile::tempdir().expect("dir");
    l.add("t1", &["--runtime", "none", "--gpus", "1"]);
    add_transfer25(&l, "t25", dir.path());
    let scene = l.home.standard_scene("shot");
    let mut ids = Vec::new();
    for i in 0..3 {
        for model in ["transfer1", "transfer2.5"] {
            let text = format!("a street, take {i}");
            let out = l
                .run(&[
                    "run",
                    &text,
                    s(&scene),
                    "--model",
                    model,
                    "--seed",
                    "7",
                    "--weights",
                    "edge=1",
                    "--no-wait",
                ])
                .ok();
            ids.push((model, out.stdout.trim().to_owned()));
        }
    }
    let worker = l.home.spawn_worker(&[("PATH", &l.path())]);
    wait_for("all six runs to end", Duration::from_secs(120), || {
        ids.iter().all(|(_, id)| {
            let run = l.run(&["show", id, "--json"]).ok().json();
            run["run"]["status"] == "succeeded"
        })
    });
    stop_worker(worker);
    let mut batches: std::collections::BTreeMap<&str, std::collections::BTreeSet<String>> =
        Default::default();
    for (model, id) in &ids {
        let run = l.run(&["show", id, "--json"]).ok().json()["run"].clone();
        let want = if *model == "transfer1" { "t1" } else { "t25" };
        assert_eq!(run["target"], want, "{run}");
        let batch = run["batch_id"].as_str().map(str::to_owned);
        batches
            .entry(model)
            .or_default()
            .insert(batch.unwrap_or_else(|| format!("alone: {id}")));
    }
    // Each model's three runs agree on what it treats as global: they shared one of its
    // processes, and never one of the other model's.
    assert_eq!(batches["transfer1"].len(), 1, "{batches:?}");
    assert_eq!(batches["transfer2.5"].len(), 1, "{batches:?}");
    assert!(
        batches["transfer1"].is_disjoint(&batches["transfer2.5"]),
        "{batches:?}"
    );
}

#[test]
fn a_transfer25_run_goes_through_ssh_into_docker() {
    let t = Ssh25::new(&[], &["--gpus", "2"]);
    let scene = t.l.home.standard_scene("shot");
    let mask_dir = tempfile::tempdir().expect("dir");
    let mask = mask_dir.path().join("quay.mp4");
    cosmos_testkit::test_video(&mask, 64, 36, 24, 24).expect("mask video");
    let mask_arg = format!("depth={}", mask.display());
    let run_json = |text: &str| {
        t.run(&[
            "run",
            text,
            s(&scene),
            "--model",
            "transfer2.5",
            "--weights",
            "depth=1",
            "--mask",
            &mask_arg,
            "--json",
        ])
        .json()
    };
    let run = run_json("a harbour at dawn");
    let id = run["id"].as_str().expect("id");
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(output_names(&run)[0], format!("{id}.mp4"));
    assert!(output_names(&run).contains(&format!("{id}_control_depth.mp4")));
    // The mask went up with the inputs (in the target's blob store) and the model read it
    // in the container: the mask it wrote is the file given.
    let mask_out = Path::new(run["outputs"][0]["path"].as_str().expect("path"))
        .with_file_name(format!("{id}_mask_depth.mp4"));
    assert_eq!(sha256(&mask_out), sha256(&mask));
    // The container had Transfer2.5's settings: the venv kept from the image, its cache
    // kept on the target; and it is gone.
    let launch = run["launch_command"].to_string();
    assert!(launch.contains("\"/workspace/.venv\""), "{launch}");
    assert!(
        launch.contains("model-cache/transfer2.5:/root/.cache"),
        "{launch}"
    );
    assert!(launch.contains("--model\",\"depth\""), "{launch}");
    assert_eq!(containers(id), "");
    let records = t.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["script"], "examples/inference.py");
    assert_eq!(records[0]["exit_code"], 0);

    // Its guardrail over the same path: exit 0, no video, a failed run with the reason.
    let b = run_json("forbiddenfruit");
    assert_eq!(b["failure_code"], "guardrail_blocked", "{b}");
    assert_eq!(b["exit_code"], 0);
}

#[test]
fn a_transfer25_run_over_ssh_is_cancelled_fails_with_its_reason_and_is_retried() {
    let t = Ssh25::new(&["COSMOS_SIM_FAIL=hang"], &["--gpus", "1"]);
    let scene = t.l.home.standard_scene("shot");

    // A model that stops making progress: cancelled by the user, its container killed.
    let id = t.queue("a long take", &scene);
    let worker = t.worker();
    t.wait_until(&id, "running");
    t.run(&["kill", &id]).ok();
    t.wait_until(&id, "cancelled");
    wait_for("its container to go", Duration::from_secs(30), || {
        containers(&id).is_empty()
    });

    // Out of GPU memory: failed with PyTorch's reason, classified.
    t.run(&["target", "edit", "gpu25", "--env", "COSMOS_SIM_FAIL=oom"])
        .ok();
    let oom = t.queue("a short take", &scene);
    t.wait_until(&oom, "failed");
    let failed = t.show(&oom);
    assert_eq!(failed["failure_code"], "out_of_memory", "{failed}");
    assert_eq!(failed["exit_code"], 1);

    // Retried once the host is fixed: a new run of the same model, which succeeds.
    t.run(&["target", "edit", "gpu25", "--unset-env", "COSMOS_SIM_FAIL"])
        .ok();
    let again = t.run(&["retry", &oom, "--no-wait", "--json"]).ok().json();
    let again_id = again["id"].as_str().expect("id").to_owned();
    assert_eq!(again["params"]["model"], "transfer2.5");
    assert_eq!(again["retry_of"], oom.as_str());
    t.wait_until(&again_id, "succeeded");
    stop_worker(worker);
    assert_eq!(
        output_names(&t.show(&again_id))[0],
        format!("{again_id}.mp4")
    );
}

#[test]
fn a_worker_killed_during_a_transfer25_run_is_replaced_and_the_model_runs_once() {
    let t = Ssh25::new(&["COSMOS_SIM_LOAD_SECONDS=3"], &["--gpus", "1"]);
    let scene = t.l.home.standard_scene("shot");
    let id = t.queue("through the storm", &scene);
    // Killed while its model loads in the container: the model goes on without it.
    let mut doomed = t.worker();
    t.wait_until(&id, "running");
    doomed.kill().expect("kill -9");
    let _ = doomed.wait();
    assert_eq!(t.show(&id)["status"], "running");
    // Another worker takes it over, follows the same model to its end and collects it.
    let rescuer = t.worker();
    t.wait_until(&id, "succeeded");
    stop_worker(rescuer);
    assert_eq!(output_names(&t.show(&id))[0], format!("{id}.mp4"));
    let records = t.records();
    assert_eq!(records.len(), 1, "the model ran once: {records:?}");
    assert_eq!(containers(&id), "");
}

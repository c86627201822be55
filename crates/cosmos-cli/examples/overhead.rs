//! Orchestration overhead of one run on an SSH + Docker target over a warm connection: the
//! wall time of a whole run (plan, store, stage, start the container, follow the log,
//! collect, verify, remove the container) minus the time the model itself ran, as
//! cosmos-sim records it (`started_at` … `finished_at` in `COSMOS_SIM_RECORD`).
//!
//! It starts the test kit's sshd, registers it as a target, and has the release `cosmos`
//! binary run one prompt N+1 times in one process (`cosmos dev overhead`); the first run pays
//! for the connection and the upload and is left out. Baseline in the same run: the bare
//! `docker run --rm --network=host --ipc=host IMAGE /bin/sh -c true` (a container of the
//! same kind started, awaited and removed), the floor every run's container costs.
//!
//!   cargo build --release -p cosmos-cli -p cosmos-sim
//!   cargo run --release -p cosmos-cli --example overhead -- [RUNS]
//!
//! With `COSMOS_LOG=cosmos_remote=debug` it also prints every remote command with its time.

use std::process::Command;
use std::time::Instant;

use chrono::{DateTime, Utc};
use cosmos_testkit::{SshHost, sim_image, workspace_root};
use serde_json::Value;

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("RUNS is a number"))
        .unwrap_or(20);
    let cosmos = workspace_root().join("target/release/cosmos");
    assert!(
        cosmos.is_file(),
        "build it first: cargo build --release -p cosmos-cli -p cosmos-sim"
    );
    let image = sim_image().expect("the sim image");
    let host = SshHost::start().expect("the sshd fixture");
    let home = tempfile::tempdir().expect("a temporary home");
    let cli = |args: &[&str]| -> String {
        let out = Command::new(&cosmos)
            .args(args)
            .env("COSMOS_HOME", home.path())
            .env("HOME", home.path())
            .env("NO_COLOR", "1")
            .output()
            .expect("cosmos runs");
        assert!(
            out.status.success(),
            "cosmos {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if std::env::var_os("COSMOS_LOG").is_some() {
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let scene = home.path().join("scene");
    std::fs::create_dir_all(&scene).expect("scene folder");
    for kind in ["color", "depth", "seg"] {
        cosmos_testkit::test_video(&scene.join(format!("shot_{kind}.mp4")), 64, 36, 24, 24)
            .expect("a test video");
    }
    let root = host.root().display().to_string();
    let record = host.record_file();
    cli(&[
        "target",
        "add",
        "bench",
        &format!("ssh://{}@127.0.0.1:{}", host.user(), host.port()),
        "--key",
        &host.client_key().display().to_string(),
        "--root",
        &root,
        "--cosmos-dir",
        &host.cosmos_dir().display().to_string(),
        "--image",
        &image,
        "--no-gpu-flag",
        "--env",
        &format!("COSMOS_SIM_RECORD={}", record.display()),
        "--mount",
        &host.records_mount(),
        "--env",
        "COSMOS_SIM_LOAD_SECONDS=0",
        "--env",
        "COSMOS_SIM_CLIP_SECONDS=0",
    ]);
    cli(&["target", "trust", "bench", "--yes"]);
    let prompt: Value = serde_json::from_str(&cli(&[
        "prompt",
        "create",
        "a harbour at dawn",
        "--inputs",
        &scene.display().to_string(),
        "--json",
    ]))
    .expect("prompt json");
    let prompt = prompt["id"].as_str().expect("prompt id");

    let lines = cli(&["dev", "overhead", prompt, "--runs", &(runs + 1).to_string()]);
    let walls: Vec<(String, f64)> = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a json line"))
        .map(|v| {
            assert_eq!(v["status"], "succeeded", "{v}");
            (
                v["run"].as_str().unwrap_or("").to_owned(),
                v["wall_ms"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    let records: Vec<Value> = std::fs::read_to_string(&record)
        .expect("the sim's record")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record line"))
        .collect();
    let at = |v: &Value| {
        v.as_str()
            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
            .expect("a timestamp")
    };
    let mut wall = Vec::new();
    let mut model = Vec::new();
    let mut overhead = Vec::new();
    for (id, ms) in walls.iter().skip(1) {
        let rec = records
            .iter()
            .find(|r| r["argv"].to_string().contains(id.as_str()))
            .expect("a record for every run");
        let model_ms = (at(&rec["finished_at"]) - at(&rec["started_at"])).as_seconds_f64() * 1000.0;
        wall.push(*ms);
        model.push(model_ms);
        overhead.push(ms - model_ms);
    }
    assert_eq!(records.len(), runs + 1, "one model start per run");

    let mut docker = Vec::new();
    for _ in 0..runs.min(10) {
        let began = Instant::now();
        let st = Command::new("docker")
            .args(["run", "--rm", "--network=host", "--ipc=host", &image])
            .args(["/bin/sh", "-c", "true"])
            .status()
            .expect("docker");
        assert!(st.success());
        docker.push(began.elapsed().as_secs_f64() * 1000.0);
    }

    // Where the time of the last run went, from its stored events.
    let last = &walls.last().expect("runs").0;
    let shown: Value = serde_json::from_str(&cli(&["show", last, "--json"])).expect("show json");
    let events = shown["events"].as_array().cloned().unwrap_or_default();
    if let Some(first) = events.first() {
        let t0 = at(&first["at"]);
        println!("events of {last}:");
        for e in &events {
            println!(
                "  +{:>5.0} ms  {:<10} {}",
                (at(&e["at"]) - t0).as_seconds_f64() * 1000.0,
                e["status"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            );
        }
    }
    println!("{runs} runs on a warm connection (the first, cold run left out):");
    row("whole run (wall)", &mut wall);
    row("model (cosmos-sim)", &mut model);
    row("overhead = wall - model", &mut overhead);
    row("baseline: bare docker run --rm", &mut docker);
}

fn row(what: &str, ms: &mut [f64]) {
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "  {what:<31} median {:>6.0} ms   p90 {:>6.0} ms   max {:>6.0} ms",
        pick(0.5),
        pick(0.9),
        pick(1.0)
    );
}

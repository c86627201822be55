//! `cosmos run` on a real SSH target: the test kit's sshd, the real Docker engine and the
//! cosmos-sim image. Host keys, transfers, the container, crash recovery and secrets.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::support::{Home, Out, s};
use cosmos_testkit::{SshHost, sim_image};

struct Remote {
    home: Home,
    host: SshHost,
}

impl Remote {
    /// A home with a target `gpu` on a fresh sshd; `env` goes to the model.
    fn new(env: &[&str]) -> Self {
        let home = Home::new();
        let host = SshHost::start().expect("sshd fixture");
        let image = sim_image().expect("sim image");
        let r = Remote { home, host };
        let url = format!("ssh://{}@127.0.0.1:{}", r.host.user(), r.host.port());
        let root = r.host.root().display().to_string();
        let cosmos = r.host.cosmos_dir().display().to_string();
        let key = r.host.client_key().display().to_string();
        let record = format!("COSMOS_SIM_RECORD={root}/record.jsonl");
        let mut args = vec![
            "target",
            "add",
            "gpu",
            &url,
            "--key",
            &key,
            "--root",
            &root,
            "--cosmos-dir",
            &cosmos,
            "--image",
            &image,
            "--no-gpu-flag",
            "--gpus",
            "8",
            "--env",
            &record,
        ];
        for e in env {
            args.push("--env");
            args.push(e);
        }
        r.run(&args).ok();
        r
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
        let path = self.host.root().join("record.jsonl");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("record line"))
            .collect()
    }
}

fn containers(run_id: &str) -> String {
    let out = Command::new("docker")
        .args(["ps", "--all", "--quiet", "--filter"])
        .arg(format!("label=cosmos.run={run_id}"))
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn sha256(path: &Path) -> String {
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

#[test]
fn a_run_reaches_a_verified_video_through_ssh_and_docker() {
    let r = Remote::new(&[]);
    let scene = r.home.standard_scene("shot");

    // Unknown host key: refused before anything is stored.
    r.run(&["run", "a harbour", s(&scene)])
        .fails_with("not trusted yet");
    assert_eq!(
        r.run(&["list", "--json"])
            .ok()
            .json()
            .as_array()
            .map(Vec::len),
        Some(0)
    );

    let fp = r.run(&["target", "trust", "gpu", "--yes"]).ok();
    assert!(fp.stdout.starts_with("SHA256:"), "{}", fp.stdout);
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
    assert!(main.ends_with("output.mp4"), "{main:?}");
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

    // The secret: in the owner-only env file, nowhere else.
    let env_file = run_dir.join("env");
    let mode = std::fs::metadata(&env_file).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    assert_eq!(mode.ok(), Some(0o600));
    assert!(
        std::fs::read_to_string(&env_file)
            .expect("env")
            .contains(secret)
    );
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
    assert!(local_log.contains("Saved video to"));
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

fn wait_for(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
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

#[test]
fn killing_cosmos_mid_run_loses_nothing_and_never_runs_twice() {
    let r = Remote::new(&["COSMOS_SIM_LOAD_SECONDS=2"]);
    r.run(&["target", "trust", "gpu", "--yes"]).ok();
    let scene = r.home.standard_scene("shot");
    let home = r.home.path().display().to_string();
    for (round, reconcile) in [["logs", "-f"], ["status", "--json"]].iter().enumerate() {
        let mut child = r
            .home
            .command(&["run", &format!("take {round}"), s(&scene)])
            .env("HOME", &home)
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
        }
        let out = r.run(&args).ok();
        if args[0] == "logs" {
            assert!(out.stdout.contains("Saved video to"), "{}", out.stdout);
        }
        let run = r.run(&["show", &id, "--json"]).ok().json();
        assert_eq!(run["run"]["status"], "succeeded", "{run}");
        assert_eq!(containers(&id), "");
        let log = std::fs::read_to_string(r.home.home().join("logs").join(format!("{id}.log")))
            .expect("log");
        assert_eq!(
            log.matches("final args").count(),
            1,
            "duplicated log lines:\n{log}"
        );
        assert_eq!(log.matches("Saved video to").count(), 1, "{log}");
    }
    // One model process per run, ever.
    assert_eq!(r.records().len(), 2, "{:?}", r.records());
}

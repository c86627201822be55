//! The `local` target kind: the same lifecycle as an SSH host, on this machine, with the
//! model in the real Docker engine (the sim image) or as a plain process.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::remote::{containers, sha256};
use super::support::{Home, s};
use cosmos_testkit::{sim_binary, sim_image};

/// A home, a root and a cosmos-transfer1 checkout for a local target, and a `bin` folder
/// where cosmos-sim answers as `nvidia-smi` and `torchrun`.
struct Local {
    home: Home,
    dir: tempfile::TempDir,
}

impl Local {
    fn new() -> Self {
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
        Local { home, dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `cosmos …` with the sim's `nvidia-smi` and `torchrun` first on PATH.
    fn run(&self, args: &[&str]) -> super::support::Out {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        self.home.run_with(args, &[("PATH", &path)])
    }

    fn add(&self, name: &str, runtime: &[&str]) {
        let root = self.root().display().to_string();
        let cosmos = self.dir.path().join("cosmos").display().to_string();
        let record = format!("COSMOS_SIM_RECORD={root}/record.jsonl");
        let mut args = vec![
            "target",
            "add",
            name,
            "--local",
            "--root",
            &root,
            "--cosmos-dir",
            &cosmos,
            "--gpus",
            "2",
            "--env",
            &record,
        ];
        args.extend_from_slice(runtime);
        self.run(&args).ok();
    }

    fn records(&self) -> usize {
        std::fs::read_to_string(self.root().join("record.jsonl"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// Runs TEXT on SCENE on target NAME; checks it succeeded with verified outputs and
    /// returns the run.
    fn run_ok(&self, name: &str, text: &str, scene: &Path) -> Value {
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

#[test]
fn a_local_target_runs_the_model_in_docker_on_this_machine() {
    let l = Local::new();
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

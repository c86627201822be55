//! `cosmos target setup` and `cosmos target verify` end to end over the sshd fixture and the
//! real Docker engine: a bare host (no checkout, no image, no checkpoints) becomes a verified
//! target from a git repository on the host whose Dockerfile builds the simulator's image;
//! the simulator answers as upstream's download script.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::support::{Home, Out, s};
use cosmos_testkit::{SecretService, SshHost};

const TOKEN: &str = "hf_setup_token_do_not_leak_5150";

struct Bare {
    home: Home,
    host: SshHost,
    /// The bare repository on the host, and the commit it holds.
    repo: String,
    commit: String,
    /// The image name its setup builds (`cosmos-transfer1`, `cosmos-transfer2.5`).
    image_name: &'static str,
}

fn ssh_ok(host: &SshHost, argv: &[&str]) -> String {
    let out = host.ssh(argv).output().expect("ssh");
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Bare {
    /// A host with a bare cosmos-transfer1 repository made by `cosmos-sim checkout --git`
    /// (as the login user, like a mirror on the host), and a target `gpu` whose checkout
    /// folder and image do not exist yet.
    fn new(name: &str, env: &[&str]) -> Self {
        Self::with_build(name, env, 0)
    }

    /// As [`Bare::new`], the image's build taking `build_seconds` more.
    fn with_build(name: &str, env: &[&str], build_seconds: u32) -> Self {
        Self::make(name, env, build_seconds, false)
    }

    /// As [`Bare::new`] for Cosmos-Transfer2.5: its repository, a target set up for it.
    fn transfer25(name: &str, env: &[&str]) -> Self {
        Self::make(name, env, 0, true)
    }

    fn make(name: &str, env: &[&str], build_seconds: u32, transfer25: bool) -> Self {
        let home = Home::new();
        let host = SshHost::start().expect("sshd fixture");
        let base = host.root().parent().expect("fixture dir").to_path_buf();
        let work = base.join("root/src");
        let repo = base.join("root/mirror.git").display().to_string();
        // A file of the fixture's own makes the commit (and so the image tag) this test's
        // alone: each test builds its image, none finds another's.
        let id = host
            .root()
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        ssh_ok(
            &host,
            &[
                "sh",
                "-c",
                r#"mkdir -p -- "$1" && printf '%s\n' "$2" > "$1/fixture-id""#,
                "sh",
                &work.display().to_string(),
                &id,
            ],
        );
        let work_dir = work.display().to_string();
        let seconds = build_seconds.to_string();
        let mut checkout = vec![
            "cosmos-sim",
            "checkout",
            "--git",
            &work_dir,
            "--build-seconds",
            &seconds,
        ];
        if transfer25 {
            checkout.extend(["--model", "transfer2.5"]);
        }
        let commit = ssh_ok(&host, &checkout);
        ssh_ok(
            &host,
            &[
                "git",
                "clone",
                "--quiet",
                "--bare",
                &work.display().to_string(),
                &repo,
            ],
        );
        let b = Bare {
            home,
            host,
            repo,
            commit,
            image_name: if transfer25 {
                "cosmos-transfer2.5"
            } else {
                "cosmos-transfer1"
            },
        };
        if transfer25 {
            // Added as any target (Transfer1's by default): `setup --model` makes it
            // Transfer2.5's.
            b.add(name, "cosmos-transfer2.5", env, &[]);
        } else {
            b.add(name, "cosmos-transfer1", env, &[]);
        }
        b.secret(TOKEN);
        b
    }

    fn checkout(&self, folder: &str) -> PathBuf {
        self.host.root().join(folder)
    }

    /// A target on the fixture host with the checkout folder `folder` under its root.
    fn add(&self, name: &str, folder: &str, env: &[&str], extra: &[&str]) {
        let url = format!("ssh://{}@127.0.0.1:{}", self.host.user(), self.host.port());
        let key = self.host.client_key().display().to_string();
        let root = self.host.root().display().to_string();
        let dir = self.checkout(folder).display().to_string();
        let mut args = vec![
            "target",
            "add",
            name,
            &url,
            "--key",
            &key,
            "--root",
            &root,
            "--cosmos-dir",
            &dir,
            "--no-gpu-flag",
        ];
        for e in env {
            args.extend(["--env", e]);
        }
        args.extend_from_slice(extra);
        self.run(&args).ok();
        self.run(&["target", "trust", name, "--yes"]).ok();
    }

    fn secret(&self, token: &str) {
        self.secret_with(token, &[]);
    }

    fn secret_with(&self, token: &str, env: &[(&str, &str)]) {
        let mut cmd = self.home.command(&["secret", "set", "hf_token"]);
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .env("HOME", self.home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cosmos secret set");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{token}\n").as_bytes())
            .expect("token to stdin");
        let out = child.wait_with_output().expect("cosmos secret set");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, &[])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let home = self.home.path().display().to_string();
        let mut all: Vec<(&str, &str)> = vec![
            ("HOME", home.as_str()),
            ("COSMOS_SETUP_CHECKPOINT_SPACE_GB", "0.001"),
        ];
        all.extend_from_slice(env);
        self.home.run_with(args, &all)
    }

    fn setup(&self, name: &str) -> Out {
        self.setup_with(name, &[])
    }

    /// `target setup NAME` from the host's repository at this fixture's commit.
    fn setup_args<'a>(&'a self, name: &'a str) -> [&'a str; 7] {
        [
            "target",
            "setup",
            name,
            "--repo",
            &self.repo,
            "--commit",
            &self.commit,
        ]
    }

    /// `cosmos target setup NAME` from the host's repository, with `env` besides.
    fn setup_with(&self, name: &str, env: &[(&str, &str)]) -> Out {
        self.run_with(&self.setup_args(name), env)
    }

    /// Starts `cosmos target setup NAME`, waits until `started` says the step to interrupt
    /// is under way, lets it run `settle_ms` more, then stops sshd (dropping every
    /// connection): setup's stderr, once it failed.
    fn drop_mid_setup(&mut self, name: &str, settle_ms: u64, started: impl Fn() -> bool) -> String {
        let child = self.spawn_setup(name);
        let began = Instant::now();
        while !started() {
            assert!(
                began.elapsed() < Duration::from_secs(60),
                "the step to interrupt never started"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(settle_ms));
        self.host.stop();
        let out = child.wait_with_output().expect("setup");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `cosmos target setup NAME` in the background, its output piped.
    fn spawn_setup(&self, name: &str) -> std::process::Child {
        self.home
            .command(&self.setup_args(name))
            .env("HOME", self.home.path())
            .env("COSMOS_SETUP_CHECKPOINT_SPACE_GB", "0.001")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cosmos target setup")
    }

    fn target(&self, name: &str) -> Value {
        self.run(&["target", "show", name, "--json"]).ok().json()
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        // The image this test built (its tag is this test's own).
        let _ = Command::new("docker")
            .args(["image", "rm", "--force"])
            .arg(format!(
                "{}:{}",
                self.image_name,
                &self.commit[..12.min(self.commit.len())]
            ))
            .output();
    }
}

#[test]
fn setup_follows_transfer25_s_recipe_and_its_runs_find_their_checkpoints() {
    let b = Bare::transfer25("gpu25", &[]);
    assert!(
        b.target("gpu25")["models"].is_null(),
        "a Transfer1 target until set up"
    );
    let mut args = b.setup_args("gpu25").to_vec();
    args.extend(["--model", "transfer2.5"]);
    let out = b.run(&args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for step in ["tools", "checkout", "image", "checkpoints", "verify"] {
        assert!(
            out.stderr.contains(&format!("✓ {step}")),
            "{step}: {}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains("✓ manifest"), "{}", out.stderr);
    let t = b.target("gpu25");
    assert_eq!(
        t["image"],
        format!("cosmos-transfer2.5:{}", &b.commit[..12])
    );
    assert_eq!(t["checkout_commit"], b.commit.as_str());
    assert_eq!(t["models"], serde_json::json!(["transfer2.5"]));
    // The checkout is Transfer2.5's; its control checkpoints are in the hub cache at the
    // revisions upstream pins, fetched with the token, which stayed out of the cache.
    assert!(
        b.checkout("cosmos-transfer2.5")
            .join("examples/inference.py")
            .is_file()
    );
    let snapshots = b
        .host
        .root()
        .join("hf-cache/hub/models--nvidia--Cosmos-Transfer2.5-2B/snapshots");
    for (rev, file) in [
        (
            "b67b64abda3801a9aceddbff2bdb86126c06db74",
            "general/edge/61f5694b-0ad5-4ecd-8ad7-c8545627d125_ema_bf16.pt",
        ),
        (
            "23057a4167b89de89a4a397fdbf3887994d115eb",
            "general/seg/5136ef49-6d8d-42e8-8abf-7dac722a304a_ema_bf16.pt",
        ),
    ] {
        assert!(snapshots.join(rev).join(file).is_file(), "{rev}/{file}");
    }
    assert!(files_holding(&b.host.root(), TOKEN).is_empty());

    // Another model's setup never turns this checkout into its own.
    let mut args = b.setup_args("gpu25").to_vec();
    args.extend(["--model", "transfer1"]);
    b.run(&args)
        .fails_with("target `gpu25` is set up for transfer2.5 and its checkout");
    assert_eq!(
        b.target("gpu25")["models"],
        serde_json::json!(["transfer2.5"])
    );

    // Again: everything is there, nothing is fetched or built.
    let again = b.setup("gpu25");
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("files in") && again.stderr.contains("(already done)"),
        "{}",
        again.stderr
    );
    assert!(
        again.stderr.contains("1 of 5 steps needed work"),
        "{}",
        again.stderr
    );

    // A run on it: Transfer2.5 in the image setup built.
    let scene = b.home.standard_scene("shot");
    let run = b
        .run(&[
            "run",
            "a harbour",
            s(&scene),
            "--model",
            "transfer2.5",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["supply"]["image"], t["image"]);
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_symlink() {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| String::from_utf8_lossy(&b).contains(needle))
            {
                found.push(p);
            }
        }
    }
    found
}

#[test]
fn setup_makes_a_bare_host_a_verified_target_and_runs_record_what_they_ran_on() {
    let b = Bare::new("gpu", &["COSMOS_SIM_DOWNLOAD_SECONDS=0.04"]);
    // Setup in the background, while `ps` is sampled: the token is on no command line.
    let mut child = b.spawn_setup("gpu");
    let mut samples = 0;
    while child.try_wait().expect("setup").is_none() {
        let ps = Command::new("ps")
            .args(["-eo", "args"])
            .output()
            .expect("ps");
        let text = String::from_utf8_lossy(&ps.stdout);
        assert!(
            !text.contains(TOKEN),
            "the token is on a command line:\n{text}"
        );
        samples += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("setup");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(samples > 5, "ps was sampled {samples} times");
    for step in [
        "tools",
        "checkout",
        "image",
        "checkpoints",
        "manifest",
        "verify",
    ] {
        assert!(stderr.contains(&format!("✓ {step}")), "{step}: {stderr}");
    }
    assert!(stderr.contains("files,"), "download progress: {stderr}");

    let t = b.target("gpu");
    let short = &b.commit[..12];
    assert_eq!(t["image"], format!("cosmos-transfer1:{short}"));
    assert_eq!(t["checkout_commit"], b.commit.as_str());
    assert!(
        t["image_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    let manifest_hash = t["manifest_hash"]
        .as_str()
        .expect("manifest hash")
        .to_owned();
    assert_eq!(t["hf_cache_complete"], true);
    let manifest = std::fs::read_to_string(b.host.root().join("setup/checkpoints.manifest"))
        .expect("manifest on the host");
    // 27 checkpoints, and SigLIP in the guardrail's folder (two files and the ref).
    assert_eq!(manifest.lines().count(), 1 + 27 + 3, "{manifest}");
    assert!(manifest.contains(
        " nvidia/Cosmos-Guardrail1/video_content_safety_filter/models--google--siglip-so400m-patch14-384/refs/main\n"
    ));
    assert!(manifest.contains(" nvidia/Cosmos-Transfer1-7B/base_model.pt\n"));
    let hub = b.host.root().join("hf-cache/hub");
    assert!(
        hub.join("models--depth-anything--Depth-Anything-V2-Small-hf")
            .is_dir()
    );
    assert!(!b.checkout("cosmos-transfer1.cosmos-partial").exists());

    // The token: nowhere on the host, in the database or in the logs; no setup container
    // is left (its configuration held the token while it ran).
    assert_eq!(
        files_holding(b.host.root().parent().expect("fixture dir"), TOKEN),
        Vec::<PathBuf>::new()
    );
    for p in files_holding(&b.home.home(), TOKEN) {
        assert!(
            p.ends_with("secrets.toml"),
            "{} holds the token",
            p.display()
        );
    }
    let left = Command::new("docker")
        .args([
            "ps",
            "--all",
            "--quiet",
            "--filter",
            "label=cosmos.setup=gpu",
        ])
        .output()
        .expect("docker ps");
    assert!(left.stdout.is_empty(), "a setup container was left");
    let listed = b.run(&["secret", "list"]).ok();
    assert!(listed.stdout.contains("hf_token") && !listed.stdout.contains(TOKEN));
    let config = b.run(&["config", "show"]).ok();
    assert!(!config.stdout.contains(TOKEN), "{}", config.stdout);

    // Again: every step verified and skipped, nothing downloaded or built.
    let again = b.setup("gpu").ok();
    assert_eq!(
        again.stderr.matches("(already done)").count(),
        5,
        "{}",
        again.stderr
    );
    assert!(!again.stderr.contains("Downloading"), "{}", again.stderr);
    assert_eq!(b.target("gpu")["manifest_hash"], manifest_hash.as_str());
    // The same as JSON: six steps, all but the last (the in-image check) skipped.
    let report = b
        .run(&[
            "target", "setup", "gpu", "--repo", &b.repo, "--commit", &b.commit, "--json",
        ])
        .ok()
        .json();
    let steps = report["steps"].as_array().expect("steps");
    let skipped: Vec<bool> = steps.iter().map(|s| s["skipped"] == true).collect();
    assert_eq!(skipped, [true, true, true, true, true, false], "{report}");
    assert_eq!(report["target"]["manifest_hash"], manifest_hash.as_str());

    // check includes the quick verify; verify passes quick and full.
    let check = b.run(&["target", "check", "gpu", "--json"]).json();
    let items = check["items"].as_array().expect("items");
    let manifest_item = items
        .iter()
        .find(|i| i["check"] == "manifest")
        .expect("manifest item");
    assert_eq!(manifest_item["ok"], true, "{check}");
    let inside = items
        .iter()
        .find(|i| i["check"] == "in the image")
        .expect("in-image item");
    assert_eq!(inside["ok"], true, "{check}");
    b.run(&["target", "verify", "gpu"]).ok();
    b.run(&["target", "verify", "gpu", "--full"]).ok();

    // A run records the image digest, the checkout commit and the manifest hash; its model
    // finds the hub cache and is told it is complete (offline).
    let record = format!("COSMOS_SIM_RECORD={}", b.host.record_file().display());
    b.run(&[
        "target",
        "edit",
        "gpu",
        "--env",
        &record,
        "--mount",
        &b.host.records_mount(),
    ])
    .ok();
    let scene = b.home.standard_scene("scene");
    let run = b
        .run(&["run", "a harbour", s(&scene), "--json"])
        .ok()
        .json();
    assert_eq!(run["status"], "succeeded");
    let records = std::fs::read_to_string(b.host.record_file()).expect("the model's record");
    let last: Value =
        serde_json::from_str(records.lines().last().expect("a record")).expect("json");
    assert_eq!(last["hf_home"], "/cosmos-hf", "{last}");
    assert_eq!(last["hf_hub_offline"], "1", "{last}");
    assert_eq!(run["supply"]["checkout_commit"], b.commit.as_str());
    assert_eq!(run["supply"]["manifest_hash"], manifest_hash.as_str());
    assert_eq!(run["supply"]["image_digest"], t["image_digest"]);
    let shown = b
        .run(&["show", run["id"].as_str().expect("id")])
        .ok()
        .stdout;
    assert!(
        shown.contains(&b.commit) && shown.contains(&manifest_hash),
        "{shown}"
    );

    // One byte changed, its time put back: the quick verify cannot tell, --full names it.
    let victim = b
        .checkout("cosmos-transfer1")
        .join("checkpoints/nvidia/Cosmos-Transfer1-7B/seg_control.pt");
    let before = std::fs::metadata(&victim)
        .expect("victim")
        .modified()
        .expect("mtime");
    let mut bytes = std::fs::read(&victim).expect("read");
    bytes[0] ^= 1;
    std::fs::write(&victim, &bytes).expect("tamper");
    std::fs::File::options()
        .write(true)
        .open(&victim)
        .and_then(|f| f.set_modified(before))
        .expect("restore the time");
    b.run(&["target", "verify", "gpu"]).ok();
    let full = b.run(&["target", "verify", "gpu", "--full"]);
    assert_eq!(full.code, 1, "{}", full.stdout);
    assert!(
        full.stdout
            .contains("nvidia/Cosmos-Transfer1-7B/seg_control.pt does not match its sha256"),
        "{}",
        full.stdout
    );
    assert!(full.stdout.contains("fix: remove"), "{}", full.stdout);
    // Removed: a run that needs it fails before staging, naming it; set up again, the
    // download fetches it anew.
    std::fs::remove_file(&victim).expect("remove");
    let starts = b.host.record_file();
    let before = std::fs::read_to_string(&starts)
        .unwrap_or_default()
        .lines()
        .count();
    let missing = b.run(&["run", "a harbour again", s(&scene), "--json"]);
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    let failed = missing.json();
    assert_eq!(failed["failure_code"], "checkpoint_missing");
    assert!(
        failed["failure_reason"].as_str().is_some_and(
            |r| r.contains("checkpoint nvidia/Cosmos-Transfer1-7B/seg_control.pt (a control)")
        ),
        "{failed}"
    );
    let after = std::fs::read_to_string(&starts)
        .unwrap_or_default()
        .lines()
        .count();
    assert_eq!(before, after, "no model started");
    let repaired = b.setup("gpu").ok();
    assert!(
        repaired
            .stderr
            .contains("Downloading nvidia/Cosmos-Transfer1-7B"),
        "{}",
        repaired.stderr
    );
    b.run(&["target", "verify", "gpu", "--full"]).ok();
    assert_eq!(b.target("gpu")["manifest_hash"], manifest_hash.as_str());
}

#[test]
fn a_symlinked_checkpoints_folder_the_container_cannot_see_is_caught_with_the_mount_to_add() {
    let b = Bare::new("linked", &[]);
    b.setup("linked").ok();
    // The checkpoints move to another disk, a link left in the checkout.
    let ckpt = b.checkout("cosmos-transfer1").join("checkpoints");
    let disk = b
        .host
        .root()
        .parent()
        .expect("fixture")
        .join("records/ckpt-disk");
    let moved = Command::new("mv")
        .arg(&ckpt)
        .arg(&disk)
        .status()
        .expect("mv");
    assert!(moved.success());
    std::os::unix::fs::symlink(&disk, &ckpt).expect("symlink");
    let out = b.run(&["target", "verify", "linked"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let mount = format!("{0}:{0}:ro", disk.display());
    assert!(
        out.stdout.contains("which the container does not mount"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("--mount {mount}")),
        "{}",
        out.stdout
    );
    // The host itself sees them: the manifest still matches.
    assert!(out.stdout.contains("ok     manifest"), "{}", out.stdout);
    let check = b.run(&["target", "check", "linked"]);
    assert_eq!(check.code, 1);
    assert!(check.stdout.contains("which the container does not mount"));
    b.run(&["target", "edit", "linked", "--mount", &mount]).ok();
    b.run(&["target", "verify", "linked"]).ok();
}

#[test]
fn a_token_without_access_too_little_disk_and_a_dropped_connection_each_say_what_to_do() {
    // Each test's target has its own name: setup containers are labelled with it.
    let mut b = Bare::new("faults", &["COSMOS_SIM_DOWNLOAD_SECONDS=0.2"]);
    // Too little disk: refused before the download starts.
    let out = b.setup_with(
        "faults",
        &[("COSMOS_SETUP_CHECKPOINT_SPACE_GB", "100000000")],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the checkpoints need about 100000000 GB"),
        "{}",
        out.stderr
    );
    assert!(
        !b.checkout("cosmos-transfer1/checkpoints").exists(),
        "nothing was downloaded"
    );

    // A dropped connection mid-download: setup says so; the download goes on on the host,
    // and setup run again follows it to the end.
    let stderr = b.drop_mid_setup("faults", 600, || {
        !containers_labelled("cosmos.setup=faults").is_empty()
    });
    assert!(
        stderr.contains("the download goes on on the host"),
        "{stderr}"
    );
    assert!(stderr.contains("picks up where it stopped"), "{stderr}");
    b.host.restart().expect("sshd again");
    let resumed = b.setup("faults").ok();
    assert!(resumed.stderr.contains("✓ manifest"), "{}", resumed.stderr);
    b.run(&["target", "verify", "faults"]).ok();

    // A token without access to the gated repository: the hub's words and the licence.
    b.add("gpu2", "second-checkout", &[], &[]);
    b.secret("hf_noaccess_abc");
    let out = b.setup("gpu2");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("meta-llama/Llama-Guard-3-8B is gated"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("not in the authorized list"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("Llama 3.1 Community License"),
        "{}",
        out.stderr
    );
    // With a token that has access, setup resumes: what was downloaded stays.
    b.secret(TOKEN);
    let done = b.setup("gpu2").ok();
    assert!(
        done.stderr.contains("EXISTS, skipping download"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("Downloading meta-llama/Llama-Guard-3-8B"),
        "{}",
        done.stderr
    );
    // Docker the login user cannot run (through a sudo that is not there): named, with the
    // fix, before anything is cloned.
    b.add("nodocker", "third-checkout", &[], &["--docker-sudo"]);
    let out = b.setup("nodocker");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("docker does not work for the login user"),
        "{}",
        out.stderr
    );
    assert!(!b.checkout("third-checkout").exists(), "nothing was cloned");
}

#[test]
fn floating_images_are_refused_unless_allowed_and_setup_needs_a_docker_target() {
    let home = Home::new();
    let out = home.run(&[
        "target",
        "add",
        "x",
        "ssh://me@gpu",
        "--image",
        "cosmos-transfer1:latest",
    ]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("floats"), "{}", out.stderr);
    assert!(out.stderr.contains("--allow-floating"), "{}", out.stderr);
    home.run(&[
        "target",
        "add",
        "x",
        "ssh://me@gpu",
        "--image",
        "cosmos-transfer1",
    ])
    .fails_with("floats");
    home.run(&[
        "target",
        "add",
        "x",
        "ssh://me@gpu",
        "--image",
        "cosmos-transfer1:latest",
        "--allow-floating",
    ])
    .ok();
    let x = home.run(&["target", "show", "x", "--json"]).ok().json();
    assert_eq!(
        x["floating_image"], true,
        "the target remembers it was allowed"
    );
    home.run(&["target", "edit", "x", "--image", "img"])
        .fails_with("floats");
    home.run(&["target", "edit", "x", "--image", "img@sha256:0123"])
        .ok();
    let x = home.run(&["target", "show", "x", "--json"]).ok().json();
    assert!(x.get("floating_image").is_none(), "pinned now: {x}");
    // The default image is the tag setup builds at the pinned commit.
    home.run(&["target", "add", "y", "ssh://me@gpu"]).ok();
    let y = home.run(&["target", "show", "y", "--json"]).ok().json();
    assert_eq!(y["image"], "cosmos-transfer1:5005e823dbd4");
    // A plain-process target has no image to build.
    home.run(&[
        "target",
        "add",
        "p",
        "--local",
        "--runtime",
        "none",
        "--gpus",
        "1",
    ])
    .ok();
    home.run(&["target", "setup", "p"])
        .fails_with("sets up Docker targets only");
    // Secrets come from stdin or a prompt, never argv.
    home.run(&["secret", "set", "hf_token", "hf_x"])
        .fails_with("unexpected argument");
    home.run(&["secret", "set", "aws_key"])
        .fails_with("no secret named");
}

fn containers_labelled(label: &str) -> String {
    let out = Command::new("docker")
        .args(["ps", "--quiet", "--filter"])
        .arg(format!("label={label}"))
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn the_token_lives_in_the_os_keyring_when_there_is_one_and_reaches_the_download() {
    let keyring = SecretService::start().expect("a Secret Service");
    let bus = [("DBUS_SESSION_BUS_ADDRESS", keyring.address())];
    // Stored in the file first (no keyring), then set again where a keyring is: it moves.
    let b = Bare::new("ring", &[]);
    let file = b.home.home().join("secrets.toml");
    assert!(std::fs::read_to_string(&file).is_ok_and(|t| t.contains(TOKEN)));
    b.secret_with("hf_noaccess_in_keyring", &bus);
    assert!(
        !std::fs::read_to_string(&file)
            .unwrap_or_default()
            .contains("hf_"),
        "the file copy went"
    );
    let listed = b.run_with(&["secret", "list"], &bus).ok();
    assert!(listed.stdout.contains("OS keyring"), "{}", listed.stdout);
    assert!(!listed.stdout.contains("hf_noaccess"), "{}", listed.stdout);
    // Without the session (another login), nothing is set.
    let none = b.run(&["secret", "list"]).ok();
    assert!(!none.stdout.contains("hf_token"), "{}", none.stdout);
    // The keyring's token is the one the download gets: the hub refuses it, as it is.
    let out = b.setup_with("ring", &bus);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the Hugging Face token set for cosmos cannot read it"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("403 Client Error"), "{}", out.stderr);
    // The environment variable wins over the keyring.
    let env_wins = b.setup_with("ring", &[bus[0], ("COSMOS_SECRETS_HF_TOKEN", TOKEN)]);
    assert_eq!(env_wins.code, 0, "{}", env_wins.stderr);
    b.run_with(&["secret", "rm", "hf_token"], &bus).ok();
    let gone = b.run_with(&["secret", "list"], &bus).ok();
    assert!(!gone.stdout.contains("hf_token"), "{}", gone.stdout);
    b.run_with(&["secret", "rm", "hf_token"], &bus)
        .fails_with("neither in the OS keyring");
}

#[test]
fn an_image_build_goes_on_when_the_connection_drops_and_setup_follows_it_again() {
    let mut b = Bare::with_build("builds", &[], 4);
    let state = b.host.root().join("setup");
    // The build has started once its state folder holds a pid.
    let stderr = b.drop_mid_setup("builds", 800, || {
        std::fs::read_dir(&state)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().join("pid").is_file())
    });
    assert!(stderr.contains("the build goes on on the host"), "{stderr}");
    b.host.restart().expect("sshd again");
    let done = b.setup("builds").ok();
    assert!(done.stderr.contains("✓ image"), "{}", done.stderr);
    assert!(done.stderr.contains("✓ verify"), "{}", done.stderr);
    // One build: the second setup followed (or found) the first, it did not start another.
    let builds = done.stderr.matches("Step 1/").count();
    assert!(builds <= 1, "{}", done.stderr);
    assert!(
        std::fs::read_dir(&state)
            .into_iter()
            .flatten()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with("build-")),
        "the build's state is cleared once it ended"
    );
}

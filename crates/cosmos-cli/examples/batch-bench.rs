//! Batching on real infrastructure (the test kit's sshd fixtures, the Docker engine, the
//! cosmos-sim image), measured with the release `cosmos`. The simulated model takes L seconds
//! to load and G seconds per clip (each run here is one clip), so the arithmetic is plain:
//!
//! 1. 8 compatible runs on one GPU: batched (one process, L + 8G) against one process per
//!    run (`queue.max_batch = 1`, 8(L + G)), in the same run of the benchmark.
//! 2. A sweep of 32 compatible runs (32 prompt variants) over 2 targets with 2 GPUs each,
//!    against its optimum: 4 batches of 8 side by side, L + 8G.
//! 3. A seed sweep of 32 runs over the same 4 GPUs (seeds are global in batch mode, so no
//!    two share a process), against its optimum: 8 rounds of L + G.
//!
//! Wall time is measured from the worker's start to the last run's end.
//!
//!   cargo build --release -p cosmos-cli -p cosmos-sim && scripts/build-sim-image.sh
//!   cargo run --release -p cosmos-cli --example batch-bench -- [L_SECONDS] [G_SECONDS]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cosmos_testkit::{SshHost, sim_image, workspace_root};
use serde_json::Value;

struct Home {
    dir: tempfile::TempDir,
    cosmos: PathBuf,
}

impl Home {
    fn new(max_batch: u32) -> Self {
        let cosmos = workspace_root().join("target/release/cosmos");
        assert!(
            cosmos.is_file(),
            "build it first: cargo build --release -p cosmos-cli -p cosmos-sim"
        );
        let dir = tempfile::tempdir().expect("a temporary home");
        std::fs::write(
            dir.path().join("cosmos.toml"),
            format!("[queue]\nmax_batch = {max_batch}\n"),
        )
        .expect("config");
        Home { dir, cosmos }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.cosmos);
        c.args(args)
            .env("COSMOS_HOME", self.dir.path())
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1");
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("cosmos runs");
        assert!(
            out.status.success(),
            "cosmos {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn add_target(&self, name: &str, host: &SshHost, slots: u32, image: &str, model: &[String]) {
        let url = format!("ssh://{}@127.0.0.1:{}", host.user(), host.port());
        let key = host.client_key().display().to_string();
        let root = host.root().display().to_string();
        let cosmos = host.cosmos_dir().display().to_string();
        let slots = slots.to_string();
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
            &cosmos,
            "--image",
            image,
            "--no-gpu-flag",
            "--gpus",
            &slots,
        ];
        for e in model {
            args.extend(["--env", e.as_str()]);
        }
        self.run(&args);
        self.run(&["target", "trust", name, "--yes"]);
    }

    fn scene(&self) -> String {
        let dir = self.dir.path().join("scene");
        std::fs::create_dir_all(&dir).expect("scene folder");
        for kind in ["color", "depth"] {
            let st = Command::new("ffmpeg")
                .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
                .arg("testsrc=size=64x36:rate=24")
                .args(["-frames:v", "24", "-pix_fmt", "yuv420p", "-metadata"])
                .arg(format!("comment={kind}"))
                .arg(dir.join(format!("shot_{kind}.mp4")))
                .status()
                .expect("ffmpeg");
            assert!(st.success());
        }
        dir.display().to_string()
    }

    fn runs(&self) -> Vec<Value> {
        let out = self.run(&["list", "--json", "--limit", "100000"]);
        serde_json::from_str::<Value>(&out)
            .expect("json")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Starts a worker, waits until `n` runs ended, stops it: the wall time and the processes
/// (distinct batches and lone runs) the runs took.
fn drain(home: &Home, n: usize) -> (f64, usize) {
    let began = Instant::now();
    let mut worker: Child = home
        .command(&["worker"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cosmos worker");
    let runs = loop {
        let runs = home.runs();
        let ended = runs
            .iter()
            .filter(|r| {
                ["succeeded", "failed", "cancelled"].contains(&r["status"].as_str().unwrap_or(""))
            })
            .count();
        if ended >= n {
            break runs;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = began.elapsed().as_secs_f64();
    let pid = rustix::process::Pid::from_child(&worker);
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let _ = worker.wait();
    let failed = runs.iter().filter(|r| r["status"] != "succeeded").count();
    assert_eq!(failed, 0, "runs did not succeed: {runs:?}");
    let mut processes: Vec<String> = runs
        .iter()
        .map(|r| {
            r["batch_id"]
                .as_str()
                .or(r["id"].as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    processes.sort();
    processes.dedup();
    (took, processes.len())
}

/// `count` compatible runs (prompt variants) queued without starting.
fn queue_variants(home: &Home, scene: &str, count: usize) {
    for i in 0..count {
        home.run(&[
            "run",
            &format!("a harbour at dawn, variant {i}"),
            scene,
            "--no-wait",
        ]);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let l: f64 = args.next().map_or(2.0, |v| v.parse().expect("L_SECONDS"));
    let g: f64 = args.next().map_or(2.0, |v| v.parse().expect("G_SECONDS"));
    let model = vec![
        format!("COSMOS_SIM_LOAD_SECONDS={l}"),
        format!("COSMOS_SIM_CLIP_SECONDS={g}"),
    ];
    let image = sim_image().expect("the sim image");
    let hosts: Vec<SshHost> = (0..2)
        .map(|_| SshHost::start().expect("an sshd fixture"))
        .collect();
    println!("simulated model: load L = {l} s, G = {g} s per clip (one clip per run)");

    // 1. Eight compatible runs on one GPU, batched and not.
    let mut eight = Vec::new();
    for max in [1, 8] {
        let home = Home::new(max);
        home.add_target("t0", &hosts[0], 1, &image, &model);
        let scene = home.scene();
        queue_variants(&home, &scene, 8);
        eight.push(drain(&home, 8));
    }
    let (alone, alone_procs) = eight[0];
    let (batched, batched_procs) = eight[1];
    println!("8 compatible runs on 1 GPU:");
    println!(
        "  baseline: one process each ({alone_procs} processes)   {alone:>6.2} s   (arithmetic: 8(L+G) = {:.1} s)",
        8.0 * (l + g)
    );
    println!(
        "  batched ({batched_procs} process)                    {batched:>6.2} s   (arithmetic: L+8G = {:.1} s)",
        l + 8.0 * g
    );
    println!(
        "  speedup {:.2}x (arithmetic limit {:.2}x)",
        alone / batched,
        8.0 * (l + g) / (l + 8.0 * g)
    );

    // 2. 32 compatible runs over 2 targets x 2 GPUs.
    let home = Home::new(8);
    home.add_target("t0", &hosts[0], 2, &image, &model);
    home.add_target("t1", &hosts[1], 2, &image, &model);
    let scene = home.scene();
    queue_variants(&home, &scene, 32);
    let (took, procs) = drain(&home, 32);
    let optimum = l + 8.0 * g;
    println!("sweep of 32 compatible runs, 2 targets x 2 GPUs, batches of up to 8:");
    println!(
        "  {took:.2} s in {procs} processes; optimum L+8G = {optimum:.1} s; {:+.1} % over it",
        (took / optimum - 1.0) * 100.0
    );

    // 3. A seed sweep of 32 runs over the same GPUs: nothing to batch.
    let home = Home::new(8);
    home.add_target("t0", &hosts[0], 2, &image, &model);
    home.add_target("t1", &hosts[1], 2, &image, &model);
    let scene = home.scene();
    home.run(&["run", "a harbour", &scene, "--seeds", "1..32", "--no-wait"]);
    let (took, procs) = drain(&home, 32);
    let optimum = 8.0 * (l + g);
    println!("seed sweep of 32 runs (seeds are global: one process each), 2 targets x 2 GPUs:");
    println!(
        "  {took:.2} s in {procs} processes; optimum 8(L+G) = {optimum:.1} s; {:+.1} % over it",
        (took / optimum - 1.0) * 100.0
    );
}

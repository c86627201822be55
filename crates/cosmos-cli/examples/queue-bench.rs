//! The queue on real infrastructure (the test kit's sshd fixtures, the Docker engine, the
//! cosmos-sim image with a zero-time model), measured with the release `cosmos`:
//!
//! 1. Throughput: RUNS runs queued as a sweep, drained by 3 workers over 3 targets of 4 GPU
//!    slots each, against one worker on one target with one slot (runs one at a time) in the
//!    same run.
//! 2. Scheduling latency, enqueue → container started (the run's `started` event), for runs
//!    queued one by one while 10,000 other runs wait in the queue (pinned to a paused target,
//!    so every claim walks past them), against the same with an empty queue.
//!
//!   cargo build --release -p cosmos-cli -p cosmos-sim && scripts/build-sim-image.sh
//!   cargo run --release -p cosmos-cli --example queue-bench -- [RUNS] [PROBES] [DEEP]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cosmos_testkit::{SshHost, sim_image, workspace_root};
use serde_json::Value;

struct Home {
    dir: tempfile::TempDir,
    cosmos: PathBuf,
}

impl Home {
    fn new() -> Self {
        let cosmos = workspace_root().join("target/release/cosmos");
        assert!(
            cosmos.is_file(),
            "build it first: cargo build --release -p cosmos-cli -p cosmos-sim"
        );
        Home {
            dir: tempfile::tempdir().expect("a temporary home"),
            cosmos,
        }
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

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.run(args)).expect("json")
    }

    fn add_target(&self, name: &str, host: &SshHost, slots: u32, image: &str) {
        self.run(&[
            "target",
            "add",
            name,
            &format!("ssh://{}@127.0.0.1:{}", host.user(), host.port()),
            "--key",
            &host.client_key().display().to_string(),
            "--root",
            &host.root().display().to_string(),
            "--cosmos-dir",
            &host.cosmos_dir().display().to_string(),
            "--image",
            image,
            "--no-gpu-flag",
            "--gpus",
            &slots.to_string(),
            "--env",
            "COSMOS_SIM_LOAD_SECONDS=0",
            "--env",
            "COSMOS_SIM_CLIP_SECONDS=0",
        ]);
        self.run(&["target", "trust", name, "--yes"]);
    }

    fn worker(&self) -> Child {
        self.command(&["worker"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cosmos worker")
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

    fn count(&self, status: &str) -> usize {
        self.json(&["list", "--json", "--status", status, "--limit", "100000"])
            .as_array()
            .map_or(0, Vec::len)
    }
}

fn stop(mut children: Vec<Child>) {
    for c in &children {
        let pid = rustix::process::Pid::from_child(c);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    for c in &mut children {
        let _ = c.wait();
    }
}

/// Queues `runs` runs, starts `workers` workers and returns runs per second until all ended.
fn drain(home: &Home, scene: &str, runs: usize, workers: usize) -> f64 {
    let before = home.count("succeeded");
    home.run(&[
        "run",
        "a harbour",
        scene,
        "--seeds",
        &format!("1..{runs}"),
        "--no-wait",
    ]);
    let began = Instant::now();
    let children: Vec<Child> = (0..workers).map(|_| home.worker()).collect();
    while home.count("succeeded") + home.count("failed") < before + runs {
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = began.elapsed().as_secs_f64();
    stop(children);
    assert_eq!(home.count("failed"), 0, "runs failed");
    runs as f64 / took
}

/// Enqueue → container started, for `probes` runs queued one at a time, in milliseconds.
fn latencies(home: &Home, scene: &str, probes: usize) -> Vec<f64> {
    let worker = home.worker();
    std::thread::sleep(Duration::from_secs(1));
    let mut out = Vec::new();
    for i in 0..probes {
        let id = home
            .run(&[
                "run",
                "a probe",
                scene,
                "--seed",
                &(10_000 + i).to_string(),
                "--target",
                "t0",
                "--no-wait",
            ])
            .trim()
            .to_owned();
        let run = loop {
            let shown = home.json(&["show", &id, "--json"]);
            if shown["run"]["status"] == "succeeded" {
                break shown;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let at = |v: &Value| {
            v.as_str()
                .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                .expect("a timestamp")
        };
        let queued = at(&run["run"]["created_at"]);
        let started = run["events"]
            .as_array()
            .expect("events")
            .iter()
            .find(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("container") && m.ends_with("started"))
            })
            .map(|e| at(&e["at"]))
            .expect("a started event");
        out.push((started - queued).as_seconds_f64() * 1000.0);
    }
    stop(vec![worker]);
    out.sort_by(f64::total_cmp);
    out
}

fn pick(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map_or(150, |v| v.parse().expect("RUNS"));
    let probes: usize = args.next().map_or(30, |v| v.parse().expect("PROBES"));
    let deep: usize = args.next().map_or(10_000, |v| v.parse().expect("DEEP"));
    let image = sim_image().expect("the sim image");
    let hosts: Vec<SshHost> = (0..3)
        .map(|_| SshHost::start().expect("an sshd fixture"))
        .collect();

    // 1. Throughput.
    let one = Home::new();
    one.add_target("t0", &hosts[0], 1, &image);
    let scene = one.scene();
    let sequential = drain(&one, &scene, runs / 5, 1);
    let fleet = Home::new();
    for (i, h) in hosts.iter().enumerate() {
        fleet.add_target(&format!("t{i}"), h, 4, &image);
    }
    let scene = fleet.scene();
    let parallel = drain(&fleet, &scene, runs, 3);
    println!("throughput, zero-time model:");
    println!(
        "  baseline: 1 worker, 1 target, 1 slot ({} runs)   {sequential:.2} runs/s",
        runs / 5
    );
    println!("  3 workers, 3 targets x 4 slots ({runs} runs)   {parallel:.2} runs/s");

    // 2. Scheduling latency.
    let empty = latencies(&fleet, &scene, probes);
    fleet.add_target("parked", &hosts[1], 8, &image);
    fleet.run(&["queue", "pause", "--target", "parked"]);
    let began = Instant::now();
    fleet.run(&[
        "run",
        "a parked harbour",
        &scene,
        "--seeds",
        &format!("1..{deep}"),
        "--target",
        "parked",
        "--no-wait",
    ]);
    let queued_in = began.elapsed();
    let full = latencies(&fleet, &scene, probes);
    println!("scheduling latency, enqueue -> container started ({probes} runs each):");
    println!(
        "  baseline: empty queue          median {:>5.0} ms   p99 {:>5.0} ms",
        pick(&empty, 0.5),
        pick(&empty, 0.99)
    );
    println!(
        "  with {deep} runs queued        median {:>5.0} ms   p99 {:>5.0} ms",
        pick(&full, 0.5),
        pick(&full, 0.99)
    );
    println!("  (queueing the {deep} runs as one sweep took {queued_in:.1?})");
}

//! `cosmos target setup` on a host where everything is done already (budget: under 2 s:
//! every step verified and skipped, nothing downloaded or built), and the quick `cosmos target
//! verify` of a 300-file manifest (budget: under 1 s), each the wall time of the release
//! binary from start to exit, over the test kit's sshd and the real Docker engine.
//!
//! It makes a bare cosmos-transfer1 repository on the host (`cosmos-sim checkout --git`), sets
//! the target up once (clone, build, download, manifest), adds placeholder files until the
//! checkpoints number 300, sets up again (the manifest covers them), then measures. Baselines
//! in the same run: `ssh HOST true` with OpenSSH (one login and one command: the floor of any
//! command on the host) and `docker run --rm IMAGE true` (the floor of the in-image check
//! both commands end with).
//!
//!   cargo build --release -p cosmos-cli -p cosmos-sim && scripts/build-sim-image.sh
//!   cargo run --release -p cosmos-cli --example setup-bench -- [TIMES]

use std::process::Command;
use std::time::{Duration, Instant};

use cosmos_testkit::{SshHost, workspace_root};

#[path = "bench/common.rs"]
mod common;
use common::ok;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn timed(times: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut all = Vec::new();
    for _ in 0..times {
        let began = Instant::now();
        f();
        all.push(began.elapsed());
    }
    let max = *all.iter().max().expect("at least one");
    (median(all), max)
}

fn main() {
    let times: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("TIMES is a number"))
        .unwrap_or(10);
    let cosmos = workspace_root().join("target/release/cosmos");
    assert!(
        cosmos.is_file(),
        "build it first: cargo build --release -p cosmos-cli -p cosmos-sim"
    );
    let host = SshHost::start().expect("the sshd fixture");
    let home = tempfile::tempdir().expect("a temporary home");
    let cli = |args: &[&str]| -> String {
        ok(
            Command::new(&cosmos)
                .args(args)
                .env("COSMOS_HOME", home.path())
                .env("HOME", home.path())
                .env("NO_COLOR", "1")
                .env("COSMOS_SETUP_CHECKPOINT_SPACE_GB", "0.001")
                .env("COSMOS_SECRETS_HF_TOKEN", "hf_bench"),
            &format!("cosmos {args:?}"),
        )
    };
    let root = host.root();
    let work = root.join("src").display().to_string();
    let repo = root.join("mirror.git").display().to_string();
    // A file of this run's own makes the commit, and so the image, new: the first setup
    // really clones, builds and downloads.
    let stamp = format!("{:?}", std::time::SystemTime::now());
    ok(
        &mut host.ssh(&[
            "sh",
            "-c",
            r#"mkdir -p -- "$1" && printf '%s\n' "$2" > "$1/bench-id""#,
            "sh",
            &work,
            &stamp,
        ]),
        "a file of the run's own",
    );
    let commit = ok(
        &mut host.ssh(&["cosmos-sim", "checkout", "--git", &work]),
        "checkout --git",
    );
    ok(
        &mut host.ssh(&["git", "clone", "--quiet", "--bare", &work, &repo]),
        "git clone --bare",
    );
    let checkout = root.join("cosmos-transfer1");
    cli(&[
        "target",
        "add",
        "bench",
        &format!("ssh://{}@127.0.0.1:{}", host.user(), host.port()),
        "--key",
        &host.client_key().display().to_string(),
        "--root",
        &root.display().to_string(),
        "--cosmos-dir",
        &checkout.display().to_string(),
        "--no-gpu-flag",
    ]);
    cli(&["target", "trust", "bench", "--yes"]);
    let setup = [
        "target", "setup", "bench", "--repo", &repo, "--commit", &commit,
    ];
    let first = Instant::now();
    cli(&setup);
    eprintln!(
        "first setup (clone, build, download, manifest): {}",
        ms(first.elapsed())
    );
    // 300 checkpoint files in all, then a manifest that covers them.
    let extra = checkout.join("checkpoints/extra");
    std::fs::create_dir_all(&extra).expect("extra folder");
    let have = ok(
        Command::new("sh")
            .arg("-c")
            .arg("find -L \"$1\" -type f -not -path '*/.cache/*' | wc -l")
            .arg("sh")
            .arg(checkout.join("checkpoints")),
        "count files",
    )
    .parse::<usize>()
    .expect("a count");
    for i in have..300 {
        std::fs::write(extra.join(format!("shard-{i:03}.bin")), vec![b'x'; 4096]).expect("a file");
    }
    cli(&setup);
    let manifest =
        std::fs::read_to_string(root.join("setup/checkpoints.manifest")).expect("the manifest");
    assert_eq!(manifest.lines().count(), 301, "300 files and the header");

    let image = format!("cosmos-transfer1:{}", &commit[..12]);
    let (ssh_med, _) = timed(times, || {
        ok(&mut host.ssh(&["true"]), "ssh true");
    });
    let (docker_med, _) = timed(times, || {
        ok(
            Command::new("docker").args(["run", "--rm", "--network=none", &image, "true"]),
            "docker run",
        );
    });
    let (setup_med, setup_max) = timed(times, || {
        cli(&setup);
    });
    let (verify_med, verify_max) = timed(times, || {
        cli(&["target", "verify", "bench"]);
    });
    println!("{times} times each, median (max):");
    println!("  baseline ssh HOST true                  {}", ms(ssh_med));
    println!(
        "  baseline docker run --rm IMAGE true     {}",
        ms(docker_med)
    );
    println!(
        "  cosmos target setup, all done           {} ({})",
        ms(setup_med),
        ms(setup_max)
    );
    println!(
        "  cosmos target verify, 300 files        {} ({})",
        ms(verify_med),
        ms(verify_max)
    );
    let _ = Command::new("docker")
        .args(["image", "rm", "--force", &image])
        .output();
}

//! The simulator as upstream's setup tools: `scripts/download_checkpoints.py` (same arguments,
//! placeholder checkpoints, upstream's skip warning, the hub's refusal of a gated repository
//! without a token, the script going on and exiting 0), `huggingface-cli download`, and
//! `checkout --git` (a repository whose Dockerfile builds the simulator's image).

use std::process::Command;

use super::support::{SIM, run};

fn download(dir: &std::path::Path, args: &[&str], token: Option<&str>) -> super::support::Out {
    let mut cmd = Command::new(SIM);
    cmd.arg("python")
        .arg("scripts/download_checkpoints.py")
        .args(args)
        .current_dir(dir)
        .env("HF_HOME", dir.join("hf-home"))
        .env_remove("HF_TOKEN")
        .env_remove("COSMOS_SIM_CHECKPOINT_BYTES")
        .env_remove("COSMOS_SIM_DOWNLOAD_SECONDS");
    if let Some(t) = token {
        cmd.env("HF_TOKEN", t);
    }
    run(&mut cmd)
}

#[test]
fn the_download_script_answers_as_upstreams_and_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let git = dir.path().join("repo");
    let made = run(Command::new(SIM).args(["checkout", "--git"]).arg(&git)).ok();
    let commit = made.stdout.trim().to_owned();
    assert_eq!(commit.len(), 40, "{}", made.stdout);
    // The same tree is the same commit.
    let again = run(Command::new(SIM).args(["checkout", "--git"]).arg(&git)).ok();
    assert_eq!(again.stdout.trim(), commit);
    let dockerfile = std::fs::read_to_string(git.join("Dockerfile")).expect("Dockerfile");
    assert!(dockerfile.contains("FROM cosmos-sim:"), "{dockerfile}");
    assert!(git.join("scripts/download_checkpoints.py").is_file());
    assert!(
        !git.join("checkpoints").exists(),
        "the download makes those"
    );

    // No token: everything but the gated repository, with the hub's 401; exit 0 as upstream.
    let out = download(&git, &["--output_dir", "checkpoints/"], None).ok();
    assert!(
        out.stdout
            .contains("Error downloading meta-llama/Llama-Guard-3-8B: 401 Client Error."),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Please log in."), "{}", out.stdout);
    let ckpt = git.join("checkpoints");
    assert!(
        ckpt.join("nvidia/Cosmos-Transfer1-7B/base_model.pt")
            .is_file()
    );
    assert!(!ckpt.join("meta-llama/Llama-Guard-3-8B").exists());
    assert!(
        !ckpt
            .join(".cache/huggingface/download")
            .read_dir()
            .is_ok_and(|mut d| d
                .any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "incomplete")))),
        "no half file is left"
    );

    // A token without access: the hub's 403; a malformed token: login's ValueError, exit 1.
    let out = download(
        &git,
        &["--output_dir", "checkpoints/"],
        Some("hf_noaccess_1"),
    )
    .ok();
    assert!(out.stdout.contains("403 Client Error."), "{}", out.stdout);
    assert!(
        out.stdout.contains("not in the authorized list"),
        "{}",
        out.stdout
    );
    let bad = download(&git, &["--output_dir", "checkpoints/"], Some("not-a-token"));
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("ValueError: Invalid token passed!"),
        "{}",
        bad.stderr
    );

    // A token with access: what is there is skipped with upstream's warning, the rest fetched;
    // login saves the token under HF_HOME, as huggingface_hub does.
    let out = download(
        &git,
        &["--output_dir", "checkpoints/", "--hf_token", "hf_good"],
        None,
    )
    .ok();
    assert!(
        out.stdout.contains(
            "Checkpoint checkpoints/nvidia/Cosmos-Transfer1-7B EXISTS, skipping download..."
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("Downloading meta-llama/Llama-Guard-3-8B")
    );
    assert!(
        ckpt.join("meta-llama/Llama-Guard-3-8B/model-00001-of-00004.safetensors")
            .is_file()
    );
    assert_eq!(
        std::fs::read_to_string(git.join("hf-home/token")).expect("the saved token"),
        "hf_good"
    );
    // A changed file makes its repository download again.
    std::fs::write(
        ckpt.join("nvidia/Cosmos-Transfer1-7B/seg_control.pt"),
        "tampered",
    )
    .unwrap();
    let out = download(&git, &["--model", "7b"], Some("hf_good")).ok();
    assert!(
        out.stdout
            .contains("Downloading nvidia/Cosmos-Transfer1-7B to"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("Cosmos-Transfer1-7B-Sample-AV to"),
        "--model 7b"
    );
    assert_ne!(
        std::fs::read(ckpt.join("nvidia/Cosmos-Transfer1-7B/seg_control.pt")).unwrap(),
        b"tampered"
    );
    let usage = download(&git, &["--model", "14b"], None);
    assert_eq!(usage.code, 2, "argparse: {}", usage.stderr);
}

#[test]
fn huggingface_cli_fills_the_hub_cache_and_refuses_offline_what_is_not_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cli = |offline: bool| {
        let mut cmd = Command::new(SIM);
        cmd.args(["huggingface-cli", "download", "facebook/sam2-hiera-large"])
            .env("HF_HOME", dir.path())
            .env_remove("COSMOS_SIM_DOWNLOAD_SECONDS");
        if offline {
            cmd.env("HF_HUB_OFFLINE", "1");
        } else {
            cmd.env_remove("HF_HUB_OFFLINE");
        }
        run(&mut cmd)
    };
    let out = cli(true);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("LocalEntryNotFoundError"),
        "{}",
        out.stderr
    );
    let out = cli(false).ok();
    let snapshot = std::path::PathBuf::from(out.stdout.trim());
    assert!(
        snapshot.starts_with(
            dir.path()
                .join("hub/models--facebook--sam2-hiera-large/snapshots")
        )
    );
    assert!(snapshot.join("model.safetensors").is_file());
    cli(true).ok();
    // With --cache-dir, into that folder (how the guardrail finds SigLIP).
    let guard = dir.path().join("guardrail");
    let out = run(Command::new(SIM)
        .args([
            "huggingface-cli",
            "download",
            "google/siglip-so400m-patch14-384",
            "--cache-dir",
        ])
        .arg(&guard)
        .env_remove("COSMOS_SIM_DOWNLOAD_SECONDS"))
    .ok();
    assert!(
        out.stdout.trim().starts_with(
            &guard
                .join("models--google--siglip-so400m-patch14-384")
                .display()
                .to_string()
        )
    );
}

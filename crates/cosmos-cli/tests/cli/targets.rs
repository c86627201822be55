//! `cosmos target add | list | show | edit | rm` as data: what is stored, and bad settings
//! refused with the fix before anything is stored. (Connecting is tested in `remote`.)

use serde_json::Value;

use super::support::{Home, TestResult, s};

#[test]
fn targets_are_added_listed_shown_edited_and_removed() -> TestResult {
    let h = Home::new();
    h.run(&[
        "target",
        "add",
        "gpu1",
        "ssh://artist@gpu-host:2222",
        "--root",
        "/data/cosmos/",
        "--gpus",
        "4",
        "--env",
        "CUDA_LAUNCH_BLOCKING=1",
        "--mount",
        "/data/hf/:/root/.cache/huggingface:ro",
        "--default",
    ])
    .ok();
    let t = h.run(&["target", "show", "gpu1", "--json"]).ok().json();
    assert_eq!(t["host"], "gpu-host");
    assert_eq!(t["user"], "artist");
    assert_eq!(t["port"], 2222);
    assert_eq!(t["root"], "/data/cosmos");
    assert_eq!(t["gpus"], 4);
    assert_eq!(t["is_default"], true);
    assert_eq!(
        t["mounts"],
        serde_json::json!(["/data/hf:/root/.cache/huggingface:ro"])
    );
    // Settings hold no secrets, so their values are shown; a variable can be removed.
    let shown = h.run(&["target", "show", "gpu1"]).ok().stdout;
    assert!(shown.contains("CUDA_LAUNCH_BLOCKING = \"1\""), "{shown}");
    h.run(&["target", "edit", "gpu1", "--unset-env", "NOPE"])
        .fails_with(
            "--unset-env NOPE: the target has no such variable (it has: CUDA_LAUNCH_BLOCKING)",
        );
    h.run(&[
        "target",
        "edit",
        "gpu1",
        "--unset-env",
        "CUDA_LAUNCH_BLOCKING",
    ])
    .ok();
    let t = h.run(&["target", "show", "gpu1", "--json"]).ok().json();
    assert_eq!(t["env"], Value::Null, "{t}");
    // A table like every other, with a header.
    let list = h.run(&["target", "list"]).ok().stdout;
    let mut lines = list.lines();
    assert!(lines.next().unwrap_or("").starts_with("NAME"), "{list}");
    assert!(!list.contains('\t'), "{list}");
    // Values that land in docker's argument vector are checked for their position.
    h.run(&["target", "edit", "gpu1", "--image=--privileged"])
        .fails_with("image `--privileged` is not an image reference");
    h.run(&["target", "edit", "gpu1", "--root=--volume=/:/host"])
        .fails_with("must be an absolute path");
    h.run(&["target", "edit", "gpu1", "--shm-size=--privileged"])
        .fails_with("is not a size");

    // Edit: the given mounts replace the old ones; --clear-mounts removes them.
    h.run(&[
        "target",
        "edit",
        "gpu1",
        "--mount",
        "/scratch:/scratch",
        "--gpus",
        "8",
    ])
    .ok();
    let t = h.run(&["target", "show", "gpu1", "--json"]).ok().json();
    assert_eq!(t["mounts"], serde_json::json!(["/scratch:/scratch"]));
    assert_eq!(t["gpus"], 8);
    h.run(&["target", "edit", "gpu1", "--clear-mounts"]).ok();
    let t = h.run(&["target", "show", "gpu1", "--json"]).ok().json();
    assert_eq!(t["mounts"], Value::Null, "{t}");

    let list = h.run(&["target", "list", "--json"]).ok().json();
    assert_eq!(list.as_array().map(Vec::len), Some(1));

    // A run waiting for it keeps it, unless forced; forced, that run is cancelled.
    let scene = h.standard_scene("shot");
    let id = h
        .run(&[
            "run",
            "a harbour",
            s(&scene),
            "--target",
            "gpu1",
            "--no-wait",
        ])
        .ok()
        .stdout
        .trim()
        .to_owned();
    h.run(&["target", "rm", "gpu1"])
        .fails_with("target `gpu1` still has 1 unfinished run(s)");
    let out = h.run(&["target", "rm", "gpu1", "--force"]).ok();
    assert!(
        out.stderr.contains(&format!("cancelled {id}")),
        "{}",
        out.stderr
    );
    let run = h.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(run["run"]["status"], "cancelled", "{run}");
    h.run(&["target", "rm", "gpu1"])
        .fails_with("no target named `gpu1`\nhint: `cosmos target list` shows them");
    Ok(())
}

#[test]
fn bad_target_settings_are_refused_with_the_fix_and_nothing_is_stored() -> TestResult {
    let h = Home::new();
    let cases: [(&[&str], &str); 10] = [
        (&["gpu"], "give the host"),
        (
            &["gpu", "gpu-host", "--root", "data"],
            "`data` must be an absolute path",
        ),
        (
            &["gpu", "gpu-host", "--gpus", "0"],
            "--gpus 0 is out of range",
        ),
        (
            &["gpu", "gpu-host", "--env", "NOEQUALS"],
            "is not KEY=VALUE",
        ),
        (
            &["gpu", "gpu-host", "--env", "1X=2"],
            "not a valid variable name",
        ),
        (
            &["gpu", "gpu-host", "--env", "HF_TOKEN=hf_abc"],
            "--env HF_TOKEN looks like a secret",
        ),
        (
            &["gpu", "gpu-host", "--env", "WANDB_API_KEY=x"],
            "put a Hugging Face token in cosmos.toml as `[secrets] hf_token`",
        ),
        (
            &["gpu", "gpu-host", "--mount", "cache:/hf"],
            "--mount: mount `cache:/hf`: the host path `cache` must be absolute",
        ),
        (
            &["gpu", "gpu-host", "--jump", "bastion:ssh"],
            "--jump: `ssh` in `bastion:ssh` is not a port number",
        ),
        (
            &["gpu", "gpu-host", "--key", "/nonexistent/key"],
            "key file `/nonexistent/key` does not exist",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["target", "add"];
        all.extend_from_slice(args);
        h.run(&all).fails_with(needle);
    }
    let list = h.run(&["target", "list", "--json"]).ok().json();
    assert_eq!(list, serde_json::json!([]));
    // The refused secret is nowhere in the database.
    let db = std::fs::read(h.home().join("cosmos.db")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&db).contains("hf_abc"));
    Ok(())
}

#[test]
fn every_command_keeps_to_one_connect_deadline_against_a_host_that_never_answers() -> TestResult {
    // TCP is accepted by the kernel, but nothing ever speaks SSH.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = silent.local_addr()?.port();
    let h = Home::new();
    let url = format!("ssh://artist@127.0.0.1:{port}");
    h.run(&["target", "add", "silent", &url, "--gpus", "1"])
        .ok();
    let scene = h.standard_scene("shot");
    let deadline = [("COSMOS_SSH_CONNECT_TIMEOUT_SECONDS", "2.0")];
    for args in [
        vec!["target", "check", "silent"],
        vec!["target", "trust", "silent", "--yes"],
        vec!["run", "a harbour", s(&scene), "--target", "silent"],
    ] {
        let began = std::time::Instant::now();
        let out = h.run_with(&args, &deadline);
        let took = began.elapsed();
        let all = format!("{}{}", out.stdout, out.stderr);
        assert_eq!(out.code, 2, "`{}`: {all}", args.join(" "));
        assert!(
            took < std::time::Duration::from_secs(6),
            "`{}` took {took:?}",
            args.join(" ")
        );
        assert!(
            all.contains("did not complete an SSH handshake within 2 s"),
            "`{}`: {all}",
            args.join(" ")
        );
        if args[0] != "target" || args[1] != "trust" {
            assert!(
                out.stderr
                    .contains("connecting to silent (ssh://artist@127.0.0.1:"),
                "`{}`: {}",
                args.join(" "),
                out.stderr
            );
        }
    }
    drop(silent);
    Ok(())
}

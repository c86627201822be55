//! The guardrail, injected failures, missing files, the timing knobs and the record.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::support::{Scene, TestResult, assert_in_order, run};

fn edge_spec(scene: &Scene, prompt: &str, frames: u32) -> String {
    let input = scene.video("in.mp4", "160x90", frames);
    scene.file(
        "spec.json",
        &json!({"prompt": prompt, "input_video_path": input, "edge": {"control_weight": 1}})
            .to_string(),
    );
    "spec.json".to_owned()
}

#[test]
fn guardrail_blocks_a_prompt_with_a_blocked_word() -> TestResult {
    let scene = Scene::new();
    let s = edge_spec(&scene, "a bowl of forbiddenfruit on a table", 20);
    let out = run(&mut scene.transfer(&s, &[]))
        .raises(1, "TypeError: cannot unpack non-iterable NoneType object");
    assert_in_order(
        &out.messages(),
        &[
            "Running guardrail checks on all prompts",
            "GUARDRAIL BLOCKED: BLOCKLIST: Prompt blocked by exact match blocklist: Prompt: a bowl of forbiddenfruit on a table, Exact Match Word: forbiddenfruit",
            "Input text prompt 1 is not safe",
            "All prompts failed safety checks",
            "Guardrail blocked generation for entire batch.",
        ],
    );
    assert!(out.stdout.contains("|CRITICAL|"), "{}", out.stdout);
    assert!(
        out.stderr.starts_with("Traceback (most recent call last):"),
        "{}",
        out.stderr
    );
    assert!(!scene.checkout().join("out/output.mp4").exists());

    // The list comes from COSMOS_SIM_BLOCKLIST when set.
    let mut cmd = scene.transfer(&s, &[]);
    cmd.env("COSMOS_SIM_BLOCKLIST", "bowl,teapot");
    let out = run(&mut cmd).raises(1, "TypeError: cannot unpack non-iterable NoneType object");
    assert!(out.messages().contains(
        &"GUARDRAIL BLOCKED: BLOCKLIST: Prompt blocked by exact match blocklist: Prompt: a bowl of forbiddenfruit on a table, Exact Match Word: bowl".to_owned()
    ));
    let mut cmd = scene.transfer(&s, &[]);
    cmd.env("COSMOS_SIM_BLOCKLIST", "teapot");
    run(&mut cmd).ok();
    Ok(())
}

#[test]
fn guardrail_in_batch_mode_dies_at_the_blocked_line() -> TestResult {
    let scene = Scene::new();
    let input = scene.video("in.mp4", "160x90", 20);
    let edge = scene.video("edge.mp4", "160x90", 20);
    scene.file(
        "spec.json",
        &json!({"input_video_path": input, "edge": {"control_weight": 1, "input_control": edge}})
            .to_string(),
    );
    let lines = [
        json!({"visual_input": input, "prompt": "fine"}),
        json!({"visual_input": input}),
        json!({"visual_input": input, "prompt": "never reached"}),
    ];
    let jsonl: Vec<String> = lines.iter().map(Value::to_string).collect();
    scene.file("batch.jsonl", &jsonl.join("\n"));
    let out = run(&mut scene.transfer("spec.json", &["--batch_input_path", "batch.jsonl"]));
    let out = out.raises(1, "TypeError: cannot unpack non-iterable NoneType object");
    assert!(
        out.messages()
            .contains(&"GUARDRAIL BLOCKED: BLOCKLIST: Input is empty".to_owned()),
        "{}",
        out.stdout
    );
    assert!(scene.checkout().join("out/video_0/output.mp4").is_file());
    assert!(!scene.checkout().join("out/video_1/output.mp4").exists());
    assert!(
        !scene.checkout().join("out/video_2/output.mp4").exists(),
        "lines after a blocked batch never run"
    );
    Ok(())
}

#[test]
fn oom_prints_pytorchs_error_and_exits_1() -> TestResult {
    let scene = Scene::new();
    let s = edge_spec(&scene, "a field", 20);
    let mut cmd = scene.transfer(&s, &[]);
    cmd.env("COSMOS_SIM_FAIL", "oom");
    let out = run(&mut cmd);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("torch.OutOfMemoryError: CUDA out of memory.")),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.messages().last().map(String::as_str),
        Some("Starting diffusion sampling")
    );
    Ok(())
}

#[test]
fn crash_after_clip_stops_after_that_many_clips() -> TestResult {
    let scene = Scene::new();
    let s = edge_spec(&scene, "a field", 250);
    let mut cmd = scene.transfer(&s, &[]);
    cmd.env("COSMOS_SIM_FAIL", "crash_after_clip:1");
    let out = run(&mut cmd).raises(
        1,
        "RuntimeError: CUDA error: an illegal memory access was encountered",
    );
    assert_eq!(out.count("Completed VAE decode"), 1);
    assert_eq!(out.count("Starting latent encoding"), 1);
    assert!(!scene.checkout().join("out/output.mp4").exists());
    Ok(())
}

#[test]
fn hang_makes_no_progress_until_killed() -> TestResult {
    let scene = Scene::new();
    let s = edge_spec(&scene, "a field", 20);
    let record = scene.path().join("record.jsonl");
    let mut child = scene
        .transfer(&s, &[])
        .env("COSMOS_SIM_FAIL", "hang")
        .env("COSMOS_SIM_RECORD", &record)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // The record line appears when the model stops making progress.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&record)
        .unwrap_or_default()
        .contains("\"hang\"")
    {
        assert!(Instant::now() < deadline, "no hang record appeared");
        assert!(
            child.try_wait()?.is_none(),
            "the simulator exited instead of hanging"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(child.try_wait()?.is_none(), "a hanging model keeps running");
    child.kill()?;
    child.wait()?;
    let line: Value = serde_json::from_str(std::fs::read_to_string(&record)?.trim())?;
    assert_eq!(line["exit_code"], Value::Null);
    Ok(())
}

#[test]
fn record_appends_one_line_per_invocation() -> TestResult {
    let scene = Scene::new();
    let s = edge_spec(&scene, "a field", 20);
    let record = scene.path().join("record.jsonl");
    run(scene
        .transfer(&s, &["--seed", "5"])
        .env("COSMOS_SIM_RECORD", &record))
    .ok();
    run(scene
        .transfer(&s, &["--sigma_max", "x"])
        .env("COSMOS_SIM_RECORD", &record));
    let text = std::fs::read_to_string(&record)?;
    let lines: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 2, "{text}");
    let spec_bytes = std::fs::read(scene.checkout().join("spec.json"))?;
    let spec_hash = cosmos_core::sha256::hex_digest(&spec_bytes);
    assert_eq!(lines[0]["spec_sha256"], json!(spec_hash));
    assert_eq!(lines[0]["exit_code"], json!(0));
    assert_eq!(lines[0]["outcome"], json!("ok"));
    assert_eq!(
        lines[0]["outputs"],
        json!(["out/output.mp4", "out/output.txt"])
    );
    assert!(
        lines[0]["argv"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("--seed")) && a.contains(&json!("5")))
    );
    assert_eq!(lines[1]["exit_code"], json!(2));
    assert_eq!(lines[1]["outcome"], json!("usage"));
    Ok(())
}

#[test]
fn timing_knobs_set_load_and_clip_time() -> TestResult {
    let scene = Scene::new();
    let s = edge_spec(&scene, "a field", 250);
    let began = Instant::now();
    run(scene
        .transfer(&s, &[])
        .env("COSMOS_SIM_LOAD_SECONDS", "0.4")
        .env("COSMOS_SIM_CLIP_SECONDS", "0.2"))
    .ok();
    // 0.4 s of loading and 3 clips of 0.2 s.
    assert!(
        began.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        began.elapsed()
    );
    let out = run(scene
        .transfer(&s, &[])
        .env("COSMOS_SIM_CLIP_SECONDS", "soon"));
    // The worker refuses the knob; torchrun, like for any failed worker, exits 1.
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("COSMOS_SIM_CLIP_SECONDS=soon"),
        "{}",
        out.stderr
    );
    let out = run(scene.transfer(&s, &[]).env("COSMOS_SIM_FAIL", "explode"));
    assert!(
        out.stderr.contains(
            "expected `oom`, `oom_at_line:N`, `crash_after_clip:N`, `hang` or `unsafe_video`"
        ),
        "{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn missing_checkpoints_and_inputs_fail_as_cosmos_does() -> TestResult {
    let scene = Scene::new();
    let s = edge_spec(&scene, "a field", 20);
    std::fs::remove_file(
        scene
            .checkout()
            .join("checkpoints/nvidia/Cosmos-Transfer1-7B/edge_control.pt"),
    )?;
    run(&mut scene.transfer(&s, &[])).raises(
        1,
        "FileNotFoundError: [Errno 2] No such file or directory: 'checkpoints/nvidia/Cosmos-Transfer1-7B/edge_control.pt'",
    );
    std::fs::remove_dir_all(scene.checkout().join("checkpoints"))?;
    let out = run(&mut scene.transfer(&s, &[]));
    assert!(
        out.stderr
            .contains("FileNotFoundError: [Errno 2] No such file or directory: 'checkpoints/"),
        "{}",
        out.stderr
    );

    let scene = Scene::new();
    scene.file(
        "spec.json",
        &json!({"input_video_path": "nowhere.mp4", "edge": {"input_control": "nowhere.mp4"}})
            .to_string(),
    );
    let out = run(&mut scene.transfer("spec.json", &[]));
    assert!(
        out.stderr
            .contains("FileNotFoundError: [Errno 2] No such file or directory: 'nowhere.mp4'"),
        "{}",
        out.stderr
    );
    // python exits 2, and torchrun 1, as for any failed worker.
    run(&mut scene.command(&["torchrun", "cosmos_transfer1/nothing.py"]))
        .raises(1, &format!("python: can't open file '{}/cosmos_transfer1/nothing.py': [Errno 2] No such file or directory", scene.checkout().display()));
    Ok(())
}

#[test]
fn a_file_that_is_not_a_video_needs_a_frame_count() -> TestResult {
    let scene = Scene::new();
    let fake = scene.file("fake.mp4", "not a video, just text");
    scene.file(
        "spec.json",
        &json!({"input_video_path": fake, "edge": {"control_weight": 1}}).to_string(),
    );
    let out = run(&mut scene.transfer("spec.json", &[]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("OSError: Could not load meta information"),
        "{}",
        out.stderr
    );
    let out = run(scene
        .transfer("spec.json", &[])
        .env("COSMOS_SIM_FRAMES", "130"))
    .ok();
    assert_eq!(out.count("Starting diffusion sampling"), 2);
    assert!(
        out.messages().contains(
            &"Making all control and input videos to be length of 130 frames.".to_owned()
        )
    );
    Ok(())
}

#[test]
fn the_video_guardrail_blocks_unsafe_outputs_counting_from_one() -> TestResult {
    let scene = Scene::new();
    let s = edge_spec(&scene, "a quiet street", 20);
    let out = run(scene
        .transfer(&s, &[])
        .env("COSMOS_SIM_FAIL", "unsafe_video"))
    .raises(1, "TypeError: cannot unpack non-iterable NoneType object");
    assert_in_order(
        &out.messages(),
        &[
            "Run guardrail on generated videos",
            "GUARDRAIL BLOCKED: VIDEOCONTENTSAFETYFILTER: unsafe frames detected",
            "Generated video 1 is not safe",
            "All generated videos failed safety checks",
            "Guardrail blocked generation for entire batch.",
        ],
    );
    assert!(!scene.checkout().join("out/output.mp4").exists());
    Ok(())
}

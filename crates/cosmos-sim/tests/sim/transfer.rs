//! transfer.py's contract: arguments, spec validation, milestones, clips, outputs, batches.

use serde_json::{Value, json};

use super::support::{Scene, TestResult, assert_in_order, ffprobe_frames, run};

fn spec(scene: &Scene, value: Value) -> String {
    scene.file("spec.json", &value.to_string());
    "spec.json".to_owned()
}

#[test]
fn single_run_logs_milestones_in_order_and_writes_cosmos_outputs() -> TestResult {
    let scene = Scene::new();
    let input = scene.video("in.mp4", "320x180", 250);
    let s = spec(
        &scene,
        json!({"prompt": "a red car in the rain", "input_video_path": input, "edge": {"control_weight": 0.5}}),
    );
    let out = run(&mut scene.transfer(&s, &["--num_gpus", "1"])).ok();
    let messages = out.messages();
    assert_in_order(
        &messages,
        &[
            "control_inputs: {\"edge\": {\"control_weight\": 0.5}}",
            "args in json: ",
            "final args: ",
            "No checkpoint path specified for edge. Using default.",
            "Using default checkpoint path: checkpoints/nvidia/Cosmos-Transfer1-7B/edge_control.pt",
            "Using random seed 1.",
            "Start creating base model",
            "Done creating base model",
            "Start creating ctrlnet model",
            "Done creating ctrlnet model",
            "Loading ctrl model from ckpt_path: checkpoints/nvidia/Cosmos-Transfer1-7B/edge_control.pt",
            "running preprocessor",
            "no input_control provided for edge. generating input control video with EdgeControlModel",
            "Running batch generation with batch_size=1",
            "Running guardrail checks on all prompts",
            "Running text embedding on all prompts",
            "Run generation",
            "Making all control and input videos to be length of 250 frames.",
            "Starting latent encoding",
            "Starting diffusion sampling",
            "Completed diffusion sampling",
            "Starting VAE decode",
            "Completed VAE decode",
            "Finish generation",
            "Run guardrail on generated videos",
            "Saved video to out/output.mp4",
            "Saved prompt to out/output.txt",
        ],
    );
    // 250 frames: ceil(249 / 120) = 3 clips.
    assert_eq!(out.count("Starting diffusion sampling"), 3);
    assert!(
        out.stderr.contains("3/3 ["),
        "no finished clip bar on stderr:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("  0%|          | 0/3"),
        "{}",
        out.stderr
    );
    for line in out.stdout.lines() {
        let (stamp, rest) = line.split_once('|').unwrap_or_default();
        assert!(
            stamp.len() == 15 && stamp.starts_with('['),
            "not a loguru line: {line}"
        );
        assert!(
            rest.starts_with("INFO|") || rest.starts_with("WARNING|"),
            "{line}"
        );
    }
    let video = scene.checkout().join("out/output.mp4");
    assert_eq!(std::fs::read(&video)?, std::fs::read(&input)?);
    assert_eq!(
        ffprobe_frames(&video),
        250,
        "the output must be a playable video"
    );
    assert_eq!(
        std::fs::read_to_string(scene.checkout().join("out/output.txt"))?,
        "a red car in the rain"
    );
    assert!(
        scene
            .checkout()
            .join("out/edge_input_control_0.mp4")
            .is_file()
    );
    Ok(())
}

#[test]
fn clip_count_follows_the_shortest_input() -> TestResult {
    let cases: [(u32, Option<u32>, usize); 5] = [
        (121, None, 1),
        (122, None, 2),
        (241, None, 2),
        (242, None, 3),
        (300, Some(130), 2),
    ];
    for (input_frames, control_frames, clips) in cases {
        let scene = Scene::new();
        let input = scene.video("in.mp4", "160x90", input_frames);
        let mut edge = json!({"control_weight": 1.0});
        if let Some(n) = control_frames {
            edge["input_control"] = json!(scene.video("edge.mp4", "160x90", n));
        }
        let s = spec(&scene, json!({"input_video_path": input, "edge": edge}));
        let out = run(&mut scene.transfer(&s, &[])).ok();
        assert_eq!(
            out.count("Starting diffusion sampling"),
            clips,
            "{input_frames}/{control_frames:?}"
        );
        assert!(
            out.stderr.contains(&format!("{clips}/{clips} [")),
            "{}",
            out.stderr
        );
    }
    Ok(())
}

#[test]
fn spec_errors_carry_cosmos_messages_and_write_nothing() -> TestResult {
    let scene = Scene::new();
    let input = scene.video("in.mp4", "160x90", 30);
    let cases = [
        (
            json!({"input_video_path": input, "colour": {"control_weight": 1}}),
            "ValueError: Invalid hint_key: colour. Must be one of {'vis', 'seg', 'edge', 'depth', 'keypoint', 'upscale', 'hdmap', 'lidar'}",
        ),
        (
            json!({"edge": {"input_control": input}}),
            "ValueError: Must have 'input_video' specified if sigma_max < 80",
        ),
        (
            json!({"sigma_max": 80, "depth": {"control_weight": 0.3}}),
            "ValueError: depth controlnet must have 'input_control' video specified if no 'input_video' specified.",
        ),
        (
            json!({"input_video_path": input, "seg": {"control_weight": -0.2}}),
            "ValueError: Control weight for seg must be a valid non-negative float or a path to a .pt file.",
        ),
        (
            json!({"input_video_path": input, "vis": {"control_weight": "strong"}}),
            "ValueError: Control weight for vis must be a valid non-negative float or a path to a .pt file.",
        ),
    ];
    for (value, line) in cases {
        let s = spec(&scene, value.clone());
        let out = run(&mut scene.transfer(&s, &[])).raises(1, line);
        assert!(
            out.stderr
                .starts_with("Traceback (most recent call last):\n"),
            "{value}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("ChildFailedError"),
            "torchrun's summary is missing: {}",
            out.stderr
        );
        assert!(
            !scene.checkout().join("out/output.mp4").exists(),
            "{value} wrote an output"
        );
    }
    Ok(())
}

#[test]
fn unknown_and_malformed_arguments_are_rejected_like_argparse() -> TestResult {
    let scene = Scene::new();
    let s = spec(&scene, json!({"edge": {}}));
    let cases = [
        (
            vec!["--bogus", "1"],
            "transfer.py: error: unrecognized arguments: --bogus 1",
        ),
        (
            vec!["--seed", "one"],
            "transfer.py: error: argument --seed: invalid int value: 'one'",
        ),
        (
            vec!["--blur_strength", "max"],
            "transfer.py: error: argument --blur_strength: invalid choice: 'max' (choose from 'very_low', 'low', 'medium', 'high', 'very_high')",
        ),
    ];
    // Under torchrun a worker that argparse stops (exit 2) makes torchrun exit 1.
    for (extra, line) in cases {
        let out = run(&mut scene.transfer(&s, &extra)).raises(1, line);
        assert!(
            out.stderr.starts_with("usage: transfer.py [-h]"),
            "{}",
            out.stderr
        );
        assert!(
            out.stdout.is_empty(),
            "nothing runs before argparse: {}",
            out.stdout
        );
    }
    let out =
        run(&mut scene.command(&["torchrun", "--nproc_per_node=1", super::support::TRANSFER]));
    out.raises(
        1,
        "transfer.py: error: the following arguments are required: --controlnet_specs",
    );
    let out = run(&mut scene.command(&["torchrun", "--nprocs=1", super::support::TRANSFER]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("torchrun: error: unrecognized arguments: --nprocs=1"),
        "{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn json_args_override_the_command_line_unless_typed_space_separated() -> TestResult {
    let scene = Scene::new();
    let input = scene.video("in.mp4", "160x90", 20);
    let s = spec(
        &scene,
        json!({"input_video_path": input, "seed": 7, "edge": {"control_weight": 1}}),
    );
    let out = run(&mut scene.transfer(&s, &["--seed", "3"])).ok();
    assert!(out.messages().contains(&"Using random seed 3.".to_owned()));
    // `--seed=3` is not the literal token `--seed`, so the spec wins (transfer.py's quirk).
    let out = run(&mut scene.transfer(&s, &["--seed=3"])).ok();
    assert!(
        out.messages().contains(&"Using random seed 7.".to_owned()),
        "{}",
        out.stdout
    );
    Ok(())
}

#[test]
fn batch_mode_names_outputs_per_line_and_applies_overrides() -> TestResult {
    let scene = Scene::new();
    let a = scene.video("a.mp4", "160x90", 30);
    let b = scene.video("b.mp4", "160x90", 40);
    let depth = scene.video("depth.mp4", "160x90", 40);
    let s = spec(
        &scene,
        json!({"input_video_path": a, "edge": {"control_weight": 0.5}, "depth": {"control_weight": 0.5}}),
    );
    let lines = [
        json!({"visual_input": a, "prompt": "first"}),
        json!({"visual_input": b, "prompt": "second", "control_overrides": {"depth": {"input_control": depth}, "lidar": {"input_control": depth}}}),
        json!({"visual_input": a, "prompt": "third"}),
    ];
    let jsonl: Vec<String> = lines.iter().map(Value::to_string).collect();
    scene.file("batch.jsonl", &(jsonl.join("\n") + "\n"));
    let out = run(&mut scene.transfer(
        &s,
        &[
            "--batch_input_path",
            "batch.jsonl",
            "--video_save_name",
            "ignored",
        ],
    ))
    .ok();
    for (n, prompt) in ["first", "second", "third"].iter().enumerate() {
        let dir = scene.checkout().join(format!("out/video_{n}"));
        assert!(
            dir.join("output.mp4").is_file(),
            "video_{n}/output.mp4 is missing"
        );
        assert_eq!(std::fs::read_to_string(dir.join("prompt.txt"))?, *prompt);
        assert!(
            out.messages()
                .contains(&format!("Saved video to out/video_{n}/output.mp4"))
        );
    }
    assert_eq!(
        std::fs::read(scene.checkout().join("out/video_1/output.mp4"))?,
        std::fs::read(&b)?
    );
    assert!(!scene.checkout().join("out/ignored.mp4").exists());
    assert!(
        out.messages()
            .contains(&"Ignoring unknown control key in override: lidar".to_owned())
    );
    assert!(out.messages().contains(&format!(
        "reading control input {} for hint depth",
        depth.display()
    )));
    assert_eq!(out.count("Running batch generation with batch_size=1"), 3);
    Ok(())
}

#[test]
fn upscale_forces_batch_size_one_and_loads_the_upscaler() -> TestResult {
    let scene = Scene::new();
    let input = scene.video("in.mp4", "160x90", 20);
    let s = spec(
        &scene,
        json!({"input_video_path": input, "upscale": {"control_weight": 0.5}}),
    );
    let jsonl = format!(
        "{}\n{}\n",
        json!({"visual_input": input, "prompt": "a"}),
        json!({"visual_input": input, "prompt": "b"})
    );
    scene.file("batch.jsonl", &jsonl);
    let out = run(&mut scene.transfer(
        &s,
        &[
            "--num_steps",
            "10",
            "--batch_size",
            "2",
            "--batch_input_path",
            "batch.jsonl",
        ],
    ))
    .ok();
    assert_eq!(
        out.count("Running batch generation with batch_size=1"),
        2,
        "{}",
        out.stdout
    );
    assert!(out.messages().contains(&"Loading ctrl model from ckpt_path: checkpoints/nvidia/Cosmos-Transfer1-7B/4kupscaler_control.pt".to_owned()));
    Ok(())
}

#[test]
fn upsample_prompt_rewrites_the_prompt_and_needs_torchrun() -> TestResult {
    let scene = Scene::new();
    let input = scene.video("in.mp4", "160x90", 20);
    let s = spec(
        &scene,
        json!({"prompt": "a quiet street", "input_video_path": input, "vis": {"control_weight": 1}}),
    );
    let out = run(&mut scene.transfer(&s, &["--upsample_prompt"])).ok();
    assert_in_order(
        &out.messages(),
        &[
            "Initializing prompt upsampler...",
            "Prompt upsampler initialized with hint key: vis",
            "Upsampling prompt 1/1: a quiet street",
            "Upsampled prompt 1: a quiet street. ",
        ],
    );
    let text = std::fs::read_to_string(scene.checkout().join("out/output.txt"))?;
    assert!(
        text.starts_with("a quiet street. ") && text.len() > 40,
        "{text}"
    );

    let mut plain = scene.command(&[
        "python",
        super::support::TRANSFER,
        "--controlnet_specs",
        "spec.json",
        "--upsample_prompt",
    ]);
    run(&mut plain).raises(1, "KeyError: 'RANK'");

    let standalone = "cosmos_transfer1/auxiliary/upsampler/inference/upsampler_pipeline.py";
    let input = input.display().to_string();
    let out = run(&mut scene.command(&[
        "torchrun",
        "--nproc_per_node=1",
        standalone,
        "--prompt",
        "a quiet street",
        "--input_video",
        &input,
    ]))
    .ok();
    assert!(
        out.stdout.starts_with("Upsampled prompt: a quiet street. "),
        "{}",
        out.stdout
    );
    run(&mut scene.command(&[
        "python",
        standalone,
        "--prompt",
        "x",
        "--input_video",
        &input,
    ]))
    .raises(1, "KeyError: 'RANK'");
    Ok(())
}

#[test]
fn gpu_count_must_match_processes_and_divide_16() -> TestResult {
    let scene = Scene::new();
    let input = scene.video("in.mp4", "160x90", 20);
    let s = spec(
        &scene,
        json!({"input_video_path": input, "edge": {"control_weight": 1}}),
    );
    let run_with = |nproc: &str, gpus: &str, visible: Option<&str>| {
        let mut cmd = scene.command(&[
            "torchrun",
            &format!("--nproc_per_node={nproc}"),
            super::support::TRANSFER,
            "--controlnet_specs",
            &s,
            "--num_gpus",
            gpus,
        ]);
        if let Some(v) = visible {
            cmd.env("CUDA_VISIBLE_DEVICES", v);
        }
        run(&mut cmd)
    };
    let out = run_with("4", "4", None).ok();
    assert!(out.messages().contains(&"Training with 4 GPUs.".to_owned()));
    let out = run_with("2", "4", None);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("RuntimeError: world_size (2) is not divisible by"),
        "{}",
        out.stderr
    );
    run_with("3", "3", None).raises(1, "AssertionError");
    let out = run_with("2", "2", Some("5"));
    assert!(
        out.stderr
            .contains("RuntimeError: CUDA error: invalid device ordinal"),
        "{}",
        out.stderr
    );
    let out = run_with("2", "2", Some("2,3")).ok();
    assert!(out.messages().contains(&"Training with 2 GPUs.".to_owned()));
    Ok(())
}

#[test]
fn answers_as_torchrun_when_called_by_that_name() -> TestResult {
    let scene = Scene::new();
    let link = scene.path().join("torchrun");
    std::os::unix::fs::symlink(super::support::SIM, &link)?;
    let input = scene.video("in.mp4", "160x90", 10);
    spec(&scene, json!({"input_video_path": input, "edge": {}}));
    let out = std::process::Command::new(&link)
        .args([
            "--nproc_per_node=1",
            super::support::TRANSFER,
            "--controlnet_specs",
            "spec.json",
        ])
        .current_dir(scene.checkout())
        .env("COSMOS_SIM_LOAD_SECONDS", "0")
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        scene.checkout().join("outputs/output.mp4").is_file(),
        "the default --video_save_folder is outputs/"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("WARNING|")
            && stdout.contains("No control weight specified for edge. Setting to 0.5.")
    );
    Ok(())
}

#[test]
fn benchmark_noise_and_distilled_flags_follow_transfer_py() -> TestResult {
    let scene = Scene::new();
    let input = scene.video("in.mp4", "160x90", 20);
    let s = spec(
        &scene,
        json!({"input_video_path": input, "edge": {"control_weight": 1}}),
    );
    let out = run(&mut scene.transfer(&s, &["--benchmark", "--save_input_noise"])).ok();
    assert_eq!(
        out.count("Starting diffusion sampling"),
        4,
        "a warm-up and three timed generations"
    );
    assert_in_order(
        &out.messages(),
        &[
            "[iter 1 / 3] Generation time: ",
            "[iter 3 / 3] Generation time: ",
            "The benchmarked generation time for Cosmos-Transfer1 is ",
            "Saved input noise to out/noise.pickle",
        ],
    );
    assert!(scene.checkout().join("out/noise.pickle").is_file());

    let out = run(&mut scene.transfer(&s, &["--use_distilled"])).ok();
    assert!(out.messages().contains(&"Loading ctrl model from ckpt_path: checkpoints/nvidia/Cosmos-Transfer1-7B/edge_control_distilled.pt".to_owned()));
    let s = spec(
        &scene,
        json!({"input_video_path": input, "depth": {"control_weight": 1}}),
    );
    run(&mut scene.transfer(&s, &["--use_distilled"]))
        .raises(1, "ValueError: No default distilled checkpoint for depth. Users must specify ckpt_path in config.");
    Ok(())
}

#[test]
fn a_batch_line_without_visual_input_has_no_input_video() -> TestResult {
    // Cosmos reads `p.get("visual_input", None)`: no fallback to --input_video_path.
    let scene = Scene::new();
    let a = scene.video("a.mp4", "160x90", 30);
    let depth = scene.video("depth.mp4", "160x90", 30);
    // A control to compute from a missing input: `os.path.exists(None)` raises.
    let s = spec(
        &scene,
        json!({"input_video_path": a, "edge": {"control_weight": 1}}),
    );
    scene.file(
        "batch.jsonl",
        &(json!({"prompt": "no input"}).to_string() + "\n"),
    );
    run(&mut scene.transfer(&s, &["--batch_input_path", "batch.jsonl"])).raises(
        1,
        "TypeError: stat: path should be string, bytes, os.PathLike or integer, not NoneType",
    );
    // With every control given, it generates (from noise): the output follows the controls.
    let s = spec(
        &scene,
        json!({"input_video_path": a, "sigma_max": 80, "depth": {"control_weight": 1, "input_control": depth}}),
    );
    run(&mut scene.transfer(&s, &["--batch_input_path", "batch.jsonl"])).ok();
    assert_eq!(
        std::fs::read(scene.checkout().join("out/video_0/output.mp4"))?,
        std::fs::read(&depth)?,
        "not a copy of the global input video"
    );
    Ok(())
}

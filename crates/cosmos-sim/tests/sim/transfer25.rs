//! Cosmos-Transfer2.5's `examples/inference.py` as the simulator answers it (issue 18):
//! tyro's command line, pydantic's refusals with exit 1, the outputs under upstream's names,
//! the milestones and per-step bars, and the guardrail's exit 0 without a video.

use serde_json::json;

use super::support::{Scene, TestResult, assert_in_order, ffprobe_frames, run};

const SCRIPT: &str = "examples/inference.py";

/// `python examples/inference.py ARGS` in the scene's checkout.
fn python(scene: &Scene, args: &[&str]) -> std::process::Command {
    let mut all = vec!["python", SCRIPT];
    all.extend_from_slice(args);
    scene.command(&all)
}

fn scene() -> Scene {
    let scene = Scene::new();
    std::fs::create_dir_all(scene.checkout().join("examples")).expect("examples");
    scene.file(SCRIPT, "# Cosmos-Transfer2.5's entry point\n");
    scene
}

#[test]
fn a_valid_spec_writes_upstreams_outputs_with_its_milestones() -> TestResult {
    let scene = scene();
    let color = scene.video("color.mp4", "160x96", 121);
    let depth = scene.video("depth.mp4", "160x96", 121);
    scene.file(
        "spec.json",
        &json!({"name": "shot010_s7", "prompt": "a street at dusk", "video_path": color,
            "seed": 7, "guidance": 3, "num_steps": 4,
            "depth": {"control_path": depth, "control_weight": 0.5},
            "edge": {"control_weight": 0.5, "preset_edge_threshold": "medium"}})
        .to_string(),
    );
    for launcher in [
        vec!["python", SCRIPT],
        vec![
            "torchrun",
            "--nproc_per_node=1",
            "--master_port=12341",
            SCRIPT,
        ],
    ] {
        let _ = std::fs::remove_dir_all(scene.checkout().join("out"));
        let mut args = launcher.clone();
        args.extend(["-i", "spec.json", "-o", "out"]);
        let out = run(&mut scene.command(&args)).ok();
        assert_in_order(
            &out.messages(),
            &[
                "Found 2 hint keys across all samples",
                "Loading the multicontrol model",
                "Saved config to out/config.yaml",
                "Generating 1 samples: ['shot010_s7']",
                "[1/1] Processing sample shot010_s7",
                "Saved arguments to out/shot010_s7.json",
                "Running guardrail check on prompt...",
                "Passed guardrail on prompt",
                "Processing the following paths: {",
                "edge control video saved to out/shot010_s7_control_edge.mp4",
                "depth control video saved to out/shot010_s7_control_depth.mp4",
                "Running guardrail check on video...",
                "Passed guardrail on generated video",
                "Generated video saved to out/shot010_s7.mp4",
            ],
        );
        // 121 frames are two 93-frame chunks: two bars of 4 steps on stderr; the chunk lines
        // are `_src` INFO, in debug.log only.
        assert_eq!(
            out.stderr.matches("Generating samples: 100%|").count(),
            2,
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("| 4/4 ["), "{}", out.stderr);
        assert!(!out.stdout.contains("Generating chunk"), "{}", out.stdout);
        let debug = std::fs::read_to_string(scene.checkout().join("out/debug.log"))?;
        assert!(debug.contains("Generating chunk 1/2") && debug.contains("Generating chunk 2/2"));
        let dir = scene.checkout().join("out");
        for f in [
            "shot010_s7.mp4",
            "shot010_s7.txt",
            "shot010_s7.json",
            "shot010_s7_control_edge.mp4",
            "shot010_s7_control_depth.mp4",
            "config.yaml",
            "console.log",
        ] {
            assert!(dir.join(f).is_file(), "{f} missing");
        }
        assert_eq!(ffprobe_frames(&dir.join("shot010_s7.mp4")), 121);
        assert_eq!(
            std::fs::read_to_string(dir.join("shot010_s7.txt"))?,
            "a street at dusk"
        );
    }
    // COSMOS_VERBOSE=1 shows the chunk lines on stdout.
    let mut cmd = python(&scene, &["-i", "spec.json", "-o", "out"]);
    cmd.env("COSMOS_VERBOSE", "1");
    let out = run(&mut cmd).ok();
    assert!(
        out.stdout.contains("Generating chunk 2/2"),
        "{}",
        out.stdout
    );
    // A CLI override wins over the spec.
    let out = run(&mut python(
        &scene,
        &["-i", "spec.json", "-o", "o2", "--num-steps", "2"],
    ))
    .ok();
    assert!(out.stderr.contains("| 2/2 ["), "{}", out.stderr);
    Ok(())
}

#[test]
fn specs_pydantic_refuses_exit_1_with_its_message() -> TestResult {
    let scene = scene();
    let color = scene.video("color.mp4", "160x96", 24);
    let cases = [
        (
            json!({"prompt": "p", "video_path": color, "edge": {}}),
            "name\n  Field required [type=missing",
        ),
        (
            json!({"name": "n", "prompt": "p", "edge": {}}),
            "video_path\n  Field required [type=missing",
        ),
        (
            json!({"name": "n", "prompt": "p", "video_path": color, "edge": {}, "output_dir": "o"}),
            "output_dir\n  Extra inputs are not permitted [type=extra_forbidden, input_value='o', input_type=str]",
        ),
        (
            json!({"name": "n", "prompt": "p", "video_path": color, "edge": {}, "guidance": 3.5}),
            "guidance\n  Input should be a valid integer, got a number with a fractional part",
        ),
        (
            json!({"name": "n", "prompt": "p", "video_path": color, "edge": {}, "sigma_max": 70}),
            "sigma_max\n  Input should be a valid string [type=string_type, input_value=70, input_type=int]",
        ),
        (
            json!({"name": "n", "prompt": "p", "video_path": color}),
            "No controls provided",
        ),
    ];
    for (spec, needle) in cases {
        scene.file("bad.json", &spec.to_string());
        let out = run(&mut python(&scene, &["-i", "bad.json", "-o", "out"]));
        assert_eq!(out.code, 1, "{spec}: {}", out.stderr);
        assert!(
            out.stderr
                .starts_with("Error validating parameters from 'bad.json' at line 0\n"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains(needle), "{needle}\n{}", out.stderr);
        assert!(!scene.checkout().join("out/n.mp4").exists());
    }
    // A batch file: the line that fails is named; duplicate names exit 1.
    let good = json!({"name": "a", "prompt": "p", "video_path": color, "edge": {}});
    let bad = json!({"name": "b", "prompt": "p", "video_path": color, "edge": {}, "guidance": 9});
    scene.file("batch.jsonl", &format!("{good}\n{bad}\n"));
    let out = run(&mut python(&scene, &["-i", "batch.jsonl", "-o", "out"]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("from 'batch.jsonl' at line 1\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("Input should be less than or equal to 7")
    );
    scene.file("dup.jsonl", &format!("{good}\n{good}\n"));
    let out = run(&mut python(&scene, &["-i", "dup.jsonl", "-o", "out"]));
    assert_eq!(out.code, 1, "{}", out.stderr);
    // tyro's own refusals exit 2.
    let out = run(&mut python(&scene, &["-i", "dup.jsonl"]));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("Required options: -o/--output-dir"));
    let out = run(&mut python(
        &scene,
        &["-i", "dup.jsonl", "-o", "o", "--num-gpus", "2"],
    ));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("Unrecognized options: --num-gpus"),
        "{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn a_blocked_prompt_exits_0_without_a_video_unless_told_not_to_keep_going() -> TestResult {
    let scene = scene();
    let color = scene.video("color.mp4", "160x96", 24);
    scene.file(
        "spec.json",
        &json!({"name": "b", "prompt": "a bowl of forbiddenfruit", "video_path": color, "edge": {}})
            .to_string(),
    );
    let out = run(&mut python(&scene, &["-i", "spec.json", "-o", "out"])).ok();
    assert!(
        out.stdout.contains("|CRITICAL|")
            && out
                .stdout
                .contains("Guardrail blocked generation. Prompt: a bowl of forbiddenfruit"),
        "{}",
        out.stdout
    );
    assert!(!scene.checkout().join("out/b.mp4").exists());
    assert!(scene.checkout().join("out/b.json").exists());
    // A blocked output: the console says nothing more than the check.
    let mut cmd = python(
        &scene,
        &["-i", "spec.json", "-o", "out2", "--prompt", "a calm lake"],
    );
    cmd.env("COSMOS_SIM_FAIL", "unsafe_video");
    let out = run(&mut cmd).ok();
    assert!(out.stdout.contains("Running guardrail check on video..."));
    assert!(!out.stdout.contains("GUARDRAIL BLOCKED"), "{}", out.stdout);
    assert!(!scene.checkout().join("out2/b.mp4").exists());
    // --no-keep-going turns the block into an exception.
    let out = run(&mut python(
        &scene,
        &["-i", "spec.json", "-o", "out3", "--no-keep-going"],
    ));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with("Traceback (most recent call last):"),
        "{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn masks_by_file_and_by_words_are_written_beside_the_output() -> TestResult {
    let scene = scene();
    let color = scene.video("color.mp4", "160x96", 24);
    let mask = scene.checkout().join("mask.mp4");
    std::fs::copy(scene.video("mask.mp4", "160x96", 24), &mask)?;
    // A mask by file (relative to the spec's folder, as upstream resolves paths) and one
    // in words.
    scene.file(
        "spec.json",
        &json!({"name": "m", "prompt": "a van", "video_path": color, "num_steps": 2,
            "edge": {"mask_path": "mask.mp4"}, "depth": {"mask_prompt": "the road"}})
        .to_string(),
    );
    let out = run(&mut python(&scene, &["-i", "spec.json", "-o", "out"])).ok();
    assert!(
        out.stdout
            .contains("edge mask video saved to out/m_mask_edge.mp4"),
        "{}",
        out.stdout
    );
    let written = std::fs::read(scene.checkout().join("out/m_mask_edge.mp4"))?;
    assert_eq!(written, std::fs::read(&mask)?);
    assert!(scene.checkout().join("out/m_mask_depth.mp4").exists());
    assert!(scene.checkout().join("out/m.mp4").exists());
    // A control without a mask gets none; a mask file that is not there is Python's error.
    assert!(!scene.checkout().join("out/m_mask_vis.mp4").exists());
    scene.file(
        "gone.json",
        &json!({"name": "g", "prompt": "a van", "video_path": color,
            "edge": {"mask_path": "nowhere.mp4"}})
        .to_string(),
    );
    let out = run(&mut python(&scene, &["-i", "gone.json", "-o", "out2"]));
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("FileNotFoundError: [Errno 2] No such file or directory:"),
        "{}",
        out.stderr
    );
    assert!(!scene.checkout().join("out2/g.mp4").exists());
    Ok(())
}

//! Prompt enhancement (issue 17): `cosmos prompt enhance` runs Cosmos's standalone prompt
//! upsampler on a target through the queue and stores its text as a child prompt (shown
//! with its lineage by `prompt show` and `search`); `cosmos run --upsample-prompt` records
//! the text the model used. The model is cosmos-sim as a plain process on a local target,
//! whose upsampler is deterministic: the prompt, then a fixed sentence of camera and detail.

use serde_json::Value;

use super::local::Local;
use super::support::s;

/// What cosmos-sim's upsampler makes of `prompt`.
fn upsampled(prompt: &str) -> String {
    format!(
        "{}. The camera moves smoothly through the scene, which is rendered in photorealistic detail with natural lighting, realistic materials and crisp textures.",
        prompt.trim_end_matches('.')
    )
}

#[test]
fn enhance_stores_the_upsamplers_prompt_as_a_child_and_shows_the_lineage() {
    let l = Local::new();
    l.add("b", &["--runtime", "none", "--gpus", "1"]);
    let scene = l.home.standard_scene("shot");
    let text = "a harbour at dawn, \"quiet\"; $(touch /tmp/never) `and` more";
    let parent = l
        .run(&[
            "prompt",
            "create",
            text,
            "--inputs",
            s(&scene),
            "--name",
            "harbour",
            "--json",
        ])
        .ok()
        .json();
    let parent_id = parent["id"].as_str().expect("id");

    let child = l
        .run(&["prompt", "enhance", "harbour", "--json"])
        .ok()
        .json();
    assert_eq!(child["text"], upsampled(text).as_str(), "{child}");
    assert_eq!(child["parent_id"], parent_id);
    assert_eq!(child["input_set_id"], parent["input_set_id"]);
    let child_id = child["id"].as_str().expect("id");

    // The enhance run: through the queue on a GPU slot, the text never on a command line
    // cosmos ran (staging wrote it to a file the model's own shell reads).
    let runs = l.run(&["list", "--json"]).ok().json();
    let run = runs
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["kind"] == "enhance")
        .expect("an enhance run")
        .clone();
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["model_prompt"], upsampled(text).as_str());
    assert_eq!(run["target"], "b");
    let launch = run["launch_command"].to_string();
    assert!(launch.contains("upsampler_pipeline.py"), "{launch}");
    assert!(!launch.contains("harbour at dawn"), "{launch}");
    assert!(!std::path::Path::new("/tmp/never").exists());
    let listed = l.run(&["list"]).ok().stdout;
    assert!(listed.contains("(prompt upsampler)"), "{listed}");
    let records = l.record_lines();
    assert_eq!(records.len(), 1, "{records:?}");
    let argv = records[0]["argv"].to_string();
    assert!(
        argv.contains("--input_video") && argv.contains("color.mp4"),
        "{argv}"
    );

    // Lineage both ways, and in search.
    let shown = l.run(&["prompt", "show", parent_id]).ok().stdout;
    assert!(
        shown.contains(&format!("enhanced as {child_id}")),
        "{shown}"
    );
    let shown = l.run(&["prompt", "show", child_id]).ok().stdout;
    assert!(
        shown.contains(&format!("enhanced from {parent_id}")),
        "{shown}"
    );
    let detail = l.run(&["prompt", "show", parent_id, "--json"]).ok().json();
    assert_eq!(detail["enhanced"][0]["id"], child_id);
    let found = l.run(&["search", "photorealistic"]).ok().stdout;
    assert!(found.contains("ENHANCED FROM"), "{found}");
    assert!(
        found.contains(child_id) && found.contains(parent_id),
        "{found}"
    );

    // The same again finds the same child rather than storing a twin.
    let again = l
        .run(&["prompt", "enhance", parent_id, "--json"])
        .ok()
        .json();
    assert_eq!(again["id"], child_id);
}

#[test]
fn enhance_refuses_a_prompt_without_videos_and_fails_without_the_upsampler() {
    let l = Local::new();
    l.add("b", &["--runtime", "none", "--gpus", "1"]);
    l.run(&["prompt", "create", "a bare idea", "--name", "bare"])
        .ok();
    l.run(&["prompt", "enhance", "bare"])
        .fails_with("has no input set");
    l.run(&["prompt", "enhance", "no-such-prompt"])
        .fails_with("no-such-prompt");

    // A target without the upsampler's weights: refused at staging, before the model starts.
    let ckpt = l
        .checkout()
        .join("checkpoints/nvidia/Cosmos-UpsamplePrompt1-12B-Transfer/consolidated.safetensors");
    std::fs::remove_file(&ckpt).expect("remove the upsampler checkpoint");
    let scene = l.home.standard_scene("shot");
    l.run(&[
        "prompt",
        "create",
        "a lighthouse",
        "--inputs",
        s(&scene),
        "--name",
        "light",
    ])
    .ok();
    let out = l.run(&["prompt", "enhance", "light"]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("the prompt upsampler"),
        "{}",
        out.stderr
    );
    assert_eq!(l.records(), 0, "no model started");
    let runs = l.run(&["list", "--json"]).ok().json();
    assert_eq!(runs[0]["failure_code"], "checkpoint_missing", "{runs}");
}

#[test]
fn a_run_with_upsample_prompt_records_the_text_the_model_used() {
    let l = Local::new();
    l.add("b", &["--runtime", "none", "--gpus", "1"]);
    let scene = l.home.standard_scene("shot");
    let run = l
        .run(&[
            "run",
            "a lighthouse in a storm",
            s(&scene),
            "--upsample-prompt",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["params"]["upsample_prompt"], true);
    assert_eq!(run["prompt_text"], "a lighthouse in a storm");
    assert_eq!(
        run["model_prompt"],
        upsampled("a lighthouse in a storm").as_str()
    );
    let id = run["id"].as_str().expect("id");
    let shown = l.run(&["show", id]).ok().stdout;
    assert!(shown.contains("model used"), "{shown}");
    // Cosmos was asked through the spec (no prompt text on the command line).
    let records = l.record_lines();
    let argv = records[0]["argv"].as_array().expect("argv").clone();
    let i = argv
        .iter()
        .position(|a| a == "--controlnet_specs")
        .expect("spec");
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(argv[i + 1].as_str().expect("path")).expect("spec"),
    )
    .expect("json");
    assert_eq!(spec["upsample_prompt"], true, "{spec}");
    // Without the flag nothing is recorded beside the prompt.
    let plain = l
        .run(&["run", "a lighthouse in a storm", s(&scene), "--json"])
        .ok()
        .json();
    assert_eq!(plain["model_prompt"], Value::Null, "{plain}");
    assert!(plain["params"].get("upsample_prompt").is_none(), "{plain}");
}

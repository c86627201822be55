//! `cosmos inputs add | list | show | rm` with videos made by ffmpeg.

use super::support::{Home, TestResult, s, video};

#[test]
fn add_finds_kinds_probes_and_hashes_them() -> TestResult {
    let h = Home::new();
    let scene = h.scene(
        "shot010",
        &[
            ("Shot010_RGB.mp4", 96, 54, 30, 24),
            ("shot010-Depth.mov", 96, 54, 30, 24),
            ("canny.mkv", 96, 54, 30, 24),
        ],
    );
    std::fs::write(scene.join("notes.txt"), "not a video")?;
    let set = h.run(&["inputs", "add", s(&scene), "--json"]).ok().json();
    assert_eq!(set["name"], "shot010");
    let files = set["files"].as_array().ok_or("files")?;
    let kinds: Vec<&str> = files
        .iter()
        .map(|f| f["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["color", "depth", "edge"]);
    for f in files {
        assert_eq!(f["video"]["frames"], 30, "{f}");
        assert_eq!(f["video"]["width"], 96);
        assert_eq!(f["video"]["height"], 54);
        assert_eq!(f["video"]["fps"], 24.0);
        let path = f["path"].as_str().ok_or("path")?;
        let expected = cosmos_core::sha256::hex_digest(&std::fs::read(path)?);
        assert_eq!(f["sha256"], expected.as_str());
    }
    // The human view names the Cosmos resolution and clip count.
    let id = set["id"].as_str().ok_or("id")?;
    let shown = h.run(&["inputs", "show", &id[..10]]).ok();
    assert!(
        shown
            .stdout
            .contains("1280x704 (16:9), 30 frames → 1 clip(s)"),
        "{}",
        shown.stdout
    );
    Ok(())
}

#[test]
fn adding_the_same_videos_again_reuses_the_set() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("a");
    let first = h.run(&["inputs", "add", s(&scene), "--json"]).ok().json();
    let again = h.run(&["inputs", "add", s(&scene), "--json"]).ok();
    assert!(
        again.stderr.contains("already registered"),
        "{}",
        again.stderr
    );
    assert_eq!(again.json()["id"], first["id"]);
    let list = h.run(&["inputs", "list", "--json"]).ok().json();
    assert_eq!(list.as_array().ok_or("array")?.len(), 1);
    Ok(())
}

#[test]
fn problems_are_reported_before_anything_is_stored() -> TestResult {
    let h = Home::new();
    let frames = h.scene(
        "frames",
        &[("color.mp4", 64, 36, 24, 24), ("depth.mp4", 64, 36, 20, 24)],
    );
    let out = h
        .run(&["inputs", "add", s(&frames)])
        .fails_with("frame counts differ (color.mp4 24, depth.mp4 20)");
    assert!(out.stderr.contains("--force"), "{}", out.stderr);
    let buckets = h.scene(
        "buckets",
        &[("color.mp4", 64, 36, 24, 24), ("seg.mp4", 64, 48, 24, 24)],
    );
    h.run(&["inputs", "add", s(&buckets)])
        .fails_with("seg.mp4 64x48 → 4:3");
    assert_eq!(
        h.run(&["inputs", "list", "--json"]).ok().json(),
        serde_json::json!([])
    );
    // --force registers anyway, keeping the problem as a warning.
    let out = h.run(&["inputs", "add", s(&frames), "--force"]).ok();
    assert!(
        out.stderr
            .contains("registered anyway: frame counts differ"),
        "{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn fps_and_missing_colour_are_warnings() -> TestResult {
    let h = Home::new();
    let scene = h.scene("s", &[("depth.mp4", 64, 36, 30, 30)]);
    let out = h.run(&["inputs", "add", s(&scene)]).ok();
    assert!(
        out.stderr.contains("depth.mp4 is 30.000 fps"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("no colour video"), "{}", out.stderr);
    Ok(())
}

#[test]
fn unreadable_and_missing_inputs_are_named() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("s");
    std::fs::write(scene.join("edge.mp4"), b"this is not a video")?;
    let out = h
        .run(&["inputs", "add", s(&scene)])
        .fails_with("is not a readable video");
    assert!(out.stderr.contains("edge.mp4"), "{}", out.stderr);

    let empty = h.path().join("empty");
    std::fs::create_dir_all(&empty)?;
    std::fs::write(empty.join("readme.md"), "x")?;
    h.run(&["inputs", "add", s(&empty)])
        .fails_with("no control videos");
    h.run(&["inputs", "add", s(&h.path().join("nowhere"))])
        .fails_with("cannot read");

    let dup = h.scene("dup", &[("rgb.mp4", 64, 36, 24, 24)]);
    video(&dup.join("color.mp4"), 64, 36, 24, 24);
    h.run(&["inputs", "add", s(&dup)])
        .fails_with("are both color videos");
    assert_eq!(
        h.run(&["inputs", "list", "--json"]).ok().json(),
        serde_json::json!([])
    );
    Ok(())
}

#[test]
fn removing_a_set_in_use_needs_force_and_detaches_prompts() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("s");
    let set = h.run(&["inputs", "add", s(&scene), "--json"]).ok().json();
    let id = set["id"].as_str().ok_or("id")?;
    let prompt = h.prompt_on("a pier", id);
    h.run(&["inputs", "rm", id])
        .fails_with("is used by 1 prompt; pass `--force`");
    h.run(&["inputs", "rm", id, "--force"]).ok();
    let shown = h
        .run(&[
            "prompt",
            "show",
            prompt["id"].as_str().ok_or("id")?,
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(shown["prompt"]["input_set_id"], serde_json::Value::Null);
    h.run(&["inputs", "show", id])
        .fails_with("no input set matches");
    Ok(())
}

#[test]
fn input_sets_are_named_by_their_name_wherever_an_id_is_taken() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("harbour");
    let set = h.run(&["inputs", "add", s(&scene), "--json"]).ok().json();
    let id = set["id"].as_str().ok_or("id")?;
    let shown = h.run(&["inputs", "show", "harbour", "--json"]).ok().json();
    assert_eq!(shown["id"].as_str(), Some(id), "{shown}");
    let prompt = h.prompt_on("a pier at dusk", "harbour");
    assert_eq!(prompt["input_set_id"].as_str(), Some(id), "{prompt}");
    let general = h.run(&["show", "harbour", "--json"]).ok();
    assert!(general.stdout.contains(id), "{}", general.stdout);

    // A second set with the same name makes the name ambiguous; ids still work.
    let other = h.path().join("elsewhere");
    std::fs::create_dir_all(&other)?;
    let again = h.scene("elsewhere/harbour", &[("shot_color.mp4", 64, 36, 12, 24)]);
    let second = h.run(&["inputs", "add", s(&again), "--json"]).ok().json();
    let second_id = second["id"].as_str().ok_or("id")?;
    let err = h
        .run(&["inputs", "show", "harbour"])
        .fails_with("`harbour` is ambiguous");
    assert!(
        err.stderr.contains(id) && err.stderr.contains(second_id),
        "{}",
        err.stderr
    );
    h.run(&["inputs", "rm", second_id]).ok();
    h.run(&["inputs", "rm", "harbour", "--force"]).ok();
    h.run(&["inputs", "show", "harbour"])
        .fails_with("no input set matches `harbour`");
    Ok(())
}

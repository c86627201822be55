//! 4K upscale runs (issue 17): `cosmos upscale RUN|VIDEO` and `cosmos run … --upscale` chains.
//! The upscale waits for its parent, runs on the target that holds the parent's verified
//! output (used there, not uploaded again), is cancelled with a failed parent, and writes
//! three times the input's bucket, which ffprobe reads back. The model is cosmos-sim as a
//! plain process on a local target.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::local::Local;
use super::support::s;

fn show(l: &Local, id: &str) -> Value {
    l.run(&["show", id, "--json"]).ok().json()
}

/// Width, height and frame count of a video, as ffprobe reads them.
fn probe(path: &str) -> (u64, u64, u64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=width,height,nb_read_frames",
            "-of",
            "json",
            path,
        ])
        .output()
        .expect("ffprobe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let st = &v["streams"][0];
    let n = |k: &str| {
        st[k]
            .as_u64()
            .or_else(|| st[k].as_str().and_then(|t| t.parse().ok()))
            .unwrap_or(0)
    };
    (n("width"), n("height"), n("nb_read_frames"))
}

fn kind_of<'a>(runs: &'a [Value], kind: &str) -> &'a Value {
    runs.iter()
        .find(|r| r["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} run in {runs:?}"))
}

#[test]
fn a_chained_upscale_waits_for_its_run_and_enlarges_its_output_where_it_already_is() {
    let l = Local::new();
    l.add("b", &["--runtime", "none", "--gpus", "1"]);
    let scene = l.home.standard_scene("shot");
    // Queued together and seen through here: the upscale is held while its parent runs.
    let done = l
        .run(&["run", "a harbour at dawn", s(&scene), "--upscale", "--json"])
        .ok()
        .json();
    let runs = done.as_array().expect("two runs").clone();
    assert_eq!(runs.len(), 2, "{done}");
    let parent = kind_of(&runs, "transfer")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let child = kind_of(&runs, "upscale");
    let child_id = child["id"].as_str().expect("id").to_owned();
    assert_eq!(child["upscale_of"], parent.as_str());
    assert_eq!(child["params"]["steps"], 10);
    assert_eq!(child["params"]["weights"], "upscale=0.5");

    let p = show(&l, &parent)["run"].clone();
    let c = show(&l, &child_id);
    let events = c["events"].to_string();
    let c = &c["run"];
    assert_eq!(p["status"], "succeeded", "{p}");
    assert_eq!(c["status"], "succeeded", "{c}");
    assert_eq!(p["upscaled_by"], serde_json::json!([child_id]));
    // On the parent's target, from the output already there: nothing uploaded.
    assert_eq!(c["target"], "b");
    assert_eq!(c["target_pin"], "b");
    assert!(
        events.contains(&format!("waiting for {parent} to succeed")),
        "{events}"
    );
    assert!(
        events.contains(&format!(
            "{parent} succeeded: ready to upscale its output on b"
        )),
        "{events}"
    );
    assert!(
        events.contains("already on b (verified there, not uploaded)"),
        "{events}"
    );
    assert!(events.contains("nothing uploaded"), "{events}");
    // The shared scene is 64x36 (16:9): bucket 1280x704, so 3840x2112, every frame.
    assert!(
        events.contains("3840×2112, 24 frames (3× the 1280×704 bucket)"),
        "{events}"
    );
    let video = c["outputs"][0]["path"].as_str().expect("video");
    assert_eq!(probe(video), (3840, 2112, 24));
    // It ran after its parent, on the parent's output (the sim saw that file's bytes).
    let records = l.record_lines();
    assert_eq!(records.len(), 2, "{records:?}");
    let spec_path = {
        let argv = records[1]["argv"].as_array().expect("argv").clone();
        let i = argv
            .iter()
            .position(|a| a == "--controlnet_specs")
            .expect("spec flag");
        argv[i + 1].as_str().expect("spec path").to_owned()
    };
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(&spec_path).expect("spec")).expect("json");
    assert_eq!(spec["upscale"]["control_weight"], 0.5, "{spec}");
    assert_eq!(spec["num_steps"], 10, "{spec}");
    assert_eq!(spec["prompt"], "a harbour at dawn", "{spec}");
    let input = spec["input_video_path"].as_str().expect("input");
    let parent_video = p["outputs"][0]["sha256"].as_str().expect("sha");
    assert_eq!(super::remote::sha256(Path::new(input)), parent_video);

    // The export names the lineage.
    let dest = l.home.path().join("export");
    l.run(&["export", s(&dest)]).ok();
    let manifest = std::fs::read_to_string(dest.join("manifest.jsonl")).expect("manifest");
    let rows: Vec<Value> = manifest
        .lines()
        .map(|r| serde_json::from_str(r).expect("row"))
        .collect();
    let up = rows
        .iter()
        .find(|r| r["run_id"] == child_id.as_str())
        .expect("the upscale is exported");
    assert_eq!(up["kind"], "upscale");
    assert_eq!(up["lineage"]["upscale_of"], parent.as_str());
    let csv = std::fs::read_to_string(dest.join("manifest.csv")).expect("csv");
    assert!(
        csv.lines().next().expect("header").ends_with(",upscale_of"),
        "{csv}"
    );
    assert!(csv.contains(&format!(",{parent}\r\n")), "{csv}");
}

#[test]
fn an_upscale_is_cancelled_with_its_failed_run_and_never_starts() {
    let l = Local::new();
    l.add_with(
        "b",
        &["--runtime", "none", "--gpus", "1"],
        &["COSMOS_SIM_FAIL=oom"],
    );
    let scene = l.home.standard_scene("shot");
    let out = l.run(&["run", "a harbour at dusk", s(&scene), "--upscale", "--json"]);
    let runs = out.json();
    let runs = runs.as_array().expect("runs").clone();
    let parent = kind_of(&runs, "transfer");
    let child = kind_of(&runs, "upscale");
    assert_eq!(parent["status"], "failed", "{parent}");
    assert_eq!(child["status"], "cancelled", "{child}");
    assert_eq!(child["failure_code"], "parent_failed");
    let reason = child["failure_reason"].as_str().expect("reason");
    assert!(reason.contains("failed"), "{reason}");
    assert!(
        reason.contains(parent["id"].as_str().expect("id")),
        "{reason}"
    );
    assert_eq!(child["started_at"], Value::Null, "it never started");
    assert_eq!(l.records(), 1, "only the parent's model ran");

    // The upscale alone cannot be retried; the parent's retry brings it back, chained to the
    // retry (which fails the same way here, so it is cancelled again).
    let child_id = child["id"].as_str().expect("id");
    let parent_id = parent["id"].as_str().expect("id");
    l.run(&["retry", child_id])
        .fails_with(&format!("cosmos retry {parent_id}"));
    let again = l.run(&["retry", parent_id, "--json"]).json();
    let again = again.as_array().expect("the retry and its upscale").clone();
    let retried = kind_of(&again, "transfer");
    let upscale = kind_of(&again, "upscale");
    assert_eq!(retried["retry_of"], parent_id);
    assert_eq!(upscale["retry_of"], child_id);
    assert_eq!(upscale["upscale_of"], retried["id"]);
    assert_eq!(upscale["status"], "cancelled", "{upscale}");
}

#[test]
fn upscale_of_a_run_or_a_video_and_what_it_refuses() {
    let l = Local::new();
    l.add("b", &["--runtime", "none", "--gpus", "1"]);
    let scene = l.home.standard_scene("shot");
    let done = l.run_ok("b", "a lighthouse", &scene);
    let done_id = done["id"].as_str().expect("id");

    // A run that succeeded: its upscale goes where its output is, with its prompt or another.
    let up = l
        .run(&[
            "upscale",
            done_id,
            "--weight",
            "0.7",
            "--prompt",
            "fine detail",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(up["status"], "succeeded", "{up}");
    assert_eq!(up["upscale_of"], done_id);
    assert_eq!(up["prompt_text"], "fine detail");
    assert_eq!(up["params"]["weights"], "upscale=0.7");
    assert_eq!(
        probe(up["outputs"][0]["path"].as_str().expect("video")),
        (3840, 2112, 24)
    );
    let text = l.run(&["show", done_id]).ok().stdout;
    assert!(
        text.contains(&format!("upscaled as {}", up["id"].as_str().expect("id"))),
        "{text}"
    );

    // A video file: a 4:3 one comes out 2880x2112; with no prompt, Cosmos's default.
    let clip = l.home.scene("clip", &[("take.mp4", 80, 60, 30, 30)]);
    let vid = l
        .run(&["upscale", s(&clip.join("take.mp4")), "--json"])
        .ok()
        .json();
    assert_eq!(vid["status"], "succeeded", "{vid}");
    assert_eq!(vid["upscale_of"], Value::Null);
    assert_eq!(vid["params"]["fps"], 30, "the video's own rate");
    assert_eq!(
        probe(vid["outputs"][0]["path"].as_str().expect("video")),
        (2880, 2112, 30)
    );
    let shown = l
        .run(&["show", vid["id"].as_str().expect("id")])
        .ok()
        .stdout;
    assert!(shown.contains("(none: Cosmos's default prompt)"), "{shown}");

    // Refused, with the reason, and nothing queued.
    let big = l.home.scene("big", &[("wide.mp4", 1920, 1080, 4, 24)]);
    l.run(&["upscale", s(&big.join("wide.mp4"))])
        .fails_with("1920×1080, above the 1280×704");
    l.run(&["upscale", up["id"].as_str().expect("id")])
        .fails_with("only a transfer run's output is upscaled");
    l.run(&["upscale", done_id, "--weight", "1.5"])
        .fails_with("out of range");
    l.run(&[
        "run",
        "a harbour",
        s(&scene),
        "--weights",
        "upscale=0.5",
        "--dry-run",
    ])
    .fails_with("cosmos upscale");
    // A run that failed has no output to upscale.
    l.add_with(
        "oom",
        &["--runtime", "none", "--gpus", "1"],
        &["COSMOS_SIM_FAIL=oom"],
    );
    let bad = l.run(&["run", "a harbour", s(&scene), "--target", "oom", "--json"]);
    let bad = bad.json();
    assert_eq!(bad["status"], "failed");
    l.run(&["upscale", bad["id"].as_str().expect("id")])
        .fails_with("has no output to upscale");
    let listed = l.run(&["list", "--json"]).ok().json();
    let upscales = listed
        .as_array()
        .expect("runs")
        .iter()
        .filter(|r| r["kind"] == "upscale")
        .count();
    assert_eq!(upscales, 2, "no refused upscale was queued: {listed}");
}

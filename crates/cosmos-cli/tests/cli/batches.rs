//! Batching (issue 17): queued runs that agree on everything Cosmos treats as global share one
//! model process over a JSONL batch, each keeping its own events, outputs and end; a guardrail
//! block, running out of GPU memory and a cancel touch only the runs they must. The model is
//! cosmos-sim as a plain process on a local target (the same driver as over SSH and Docker).

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::local::Local;
use super::remote::Model;
use super::remote::wait_for;
use super::support::s;

/// A local target `b` (one GPU slot, so batches are not spread over slots) whose model sees
/// `env`, batches of up to `max` runs.
fn batching(env: &[&str], max: u32) -> Local {
    batching_for(Model::T1, env, max)
}

/// As [`batching`], the target set up for `model` and runs using it.
fn batching_for(model: Model, env: &[&str], max: u32) -> Local {
    let l = Local::with_model(model);
    l.add_with("b", &["--runtime", "none", "--gpus", "1"], env);
    let config = l.home.home().join("cosmos.toml");
    let mut text = std::fs::read_to_string(&config).unwrap_or_default();
    text.push_str(&format!("\n[queue]\nmax_batch = {max}\n"));
    std::fs::write(&config, text).expect("config");
    l
}

/// The prompt the model saved beside a run's video (Transfer1's `prompt.txt`, Transfer2.5's
/// `<run id>.txt`).
fn saved_prompt(model: Model, run: &Value) -> String {
    let path = match model {
        Model::T1 => run["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .find_map(|o| o["path"].as_str().filter(|p| p.ends_with("prompt.txt")))
            .expect("prompt.txt")
            .to_owned(),
        Model::T25 => own_file(run, ".txt"),
    };
    std::fs::read_to_string(path).expect("prompt")
}

/// A Transfer2.5 run's own files among its outputs, by name.
fn own_file(run: &Value, suffix: &str) -> String {
    let id = run["id"].as_str().expect("id");
    let name = format!("{id}{suffix}");
    run["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .filter_map(|o| o["path"].as_str())
        .find(|p| p.ends_with(&format!("/{name}")))
        .unwrap_or_else(|| panic!("{name} not among {run}"))
        .to_owned()
}

/// Queues TEXT on SCENE (seed 1 unless `extra` says otherwise) without starting it.
fn queue(l: &Local, text: &str, scene: &Path, extra: &[&str]) -> String {
    let mut args = vec!["run", text, s(scene), "--target", "b", "--no-wait"];
    args.extend_from_slice(extra);
    l.run(&args).ok().stdout.trim().to_owned()
}

fn worker(l: &Local) -> Child {
    l.home
        .command(&["worker"])
        .env("PATH", l.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cosmos worker")
}

fn show(l: &Local, id: &str) -> Value {
    l.run(&["show", id, "--json"]).ok().json()
}

fn run_of(l: &Local, id: &str) -> Value {
    show(l, id)["run"].clone()
}

/// Waits until every run named has ended; returns them.
fn finished(l: &Local, ids: &[String], seconds: u64) -> Vec<Value> {
    let ended = |r: &Value| {
        ["succeeded", "failed", "cancelled"].contains(&r["status"].as_str().unwrap_or(""))
    };
    wait_for("the runs to end", Duration::from_secs(seconds), || {
        ids.iter().all(|id| ended(&run_of(l, id)))
    });
    ids.iter().map(|id| run_of(l, id)).collect()
}

/// The runs (by JSONL line) each model process served, from cosmos-sim's records, once
/// `n` processes have ended (a run's result is in before its batch's process exits).
fn batch_sizes_of(l: &Local, n: usize) -> Vec<usize> {
    wait_for(
        "the model processes to end",
        Duration::from_secs(30),
        || l.records() >= n,
    );
    l.record_lines()
        .iter()
        .map(|r| {
            let argv = r["argv"].as_array().cloned().unwrap_or_default();
            // Transfer1's `--batch_input_path FILE`; Transfer2.5's `-i FILE.jsonl`.
            let file = argv
                .iter()
                .position(|a| a == "--batch_input_path")
                .or_else(|| {
                    argv.iter()
                        .position(|a| a == "-i")
                        .filter(|i| argv[i + 1].as_str().is_some_and(|f| f.ends_with(".jsonl")))
                });
            match file {
                Some(i) => std::fs::read_to_string(argv[i + 1].as_str().unwrap_or_default())
                    .map(|t| t.lines().count())
                    .unwrap_or(0),
                None => 1,
            }
        })
        .collect()
}

fn events_text(l: &Local, id: &str) -> String {
    show(l, id)["events"].to_string()
}

#[test]
fn compatible_runs_share_one_process_and_keep_their_own_outputs() {
    let l = batching(&[], 8);
    let scene = l.home.standard_scene("shot");
    let prompts = [
        "a harbour at dawn",
        "a harbour at noon",
        "a harbour in fog",
        "a harbour at night",
    ];
    let ids: Vec<String> = prompts.iter().map(|p| queue(&l, p, &scene, &[])).collect();
    // Another seed is another process: seeds are global in batch mode.
    let other = queue(&l, "a harbour at dusk", &scene, &["--seed", "7"]);
    // So is another frame count.
    let long = l.home.scene(
        "long",
        &[
            ("shot_color.mp4", 64, 36, 48, 24),
            ("shot_depth.mp4", 64, 36, 48, 24),
            ("shot_seg.mp4", 64, 36, 48, 24),
        ],
    );
    let longer = queue(&l, "a longer harbour", &long, &[]);
    let mut w = worker(&l);
    let mut all = ids.clone();
    all.extend([other.clone(), longer.clone()]);
    let runs = finished(&l, &all, 120);
    let _ = w.kill();
    let _ = w.wait();
    for r in &runs {
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    // One process for the four, one each for the others.
    let mut sizes = batch_sizes_of(&l, 3);
    sizes.sort();
    assert_eq!(sizes, vec![1, 1, 4], "{:?}", l.record_lines());
    let batch = runs[0]["batch_id"].as_str().expect("a batch id").to_owned();
    assert!(batch.starts_with("bt_"), "{batch}");
    let mut lines = Vec::new();
    for (r, prompt) in runs.iter().zip(prompts) {
        assert_eq!(r["batch_id"], batch.as_str(), "{r}");
        lines.push(r["batch_line"].as_u64().expect("a line"));
        // Its own video, and the prompt Cosmos saved beside it is its own.
        let outputs = r["outputs"].as_array().expect("outputs");
        let id = r["id"].as_str().expect("id");
        assert!(
            outputs[0]["path"]
                .as_str()
                .expect("path")
                .ends_with(&format!("{id}/output.mp4")),
            "{outputs:?}"
        );
        assert_eq!(saved_prompt(Model::T1, r), prompt);
        // Its own progress, derived from its line.
        let events = events_text(&l, id);
        assert!(events.contains("generating: clip 1/1"), "{events}");
        assert!(events.contains(&format!("in batch {batch}")), "{events}");
    }
    lines.sort();
    assert_eq!(lines, vec![0, 1, 2, 3]);
    assert!(runs[4]["batch_id"].is_null() && runs[5]["batch_id"].is_null());
    // `show` names the batch; `logs` shows its process's log.
    let text = l.run(&["show", &ids[2]]).ok().stdout;
    assert!(text.contains(&batch), "{text}");
    let log = l.run(&["logs", &ids[2]]).ok().stdout;
    assert!(log.contains("video_2/output.mp4"), "{log}");
}

#[test]
fn a_blocked_prompt_fails_only_its_own_run_and_saved_runs_never_run_again() {
    let l = batching(&[], 8);
    let scene = l.home.standard_scene("shot");
    let texts = [
        "a quiet street",
        "a forbiddenfruit on a table",
        "a busy street",
        "a wet street",
    ];
    let ids: Vec<String> = texts.iter().map(|t| queue(&l, t, &scene, &[])).collect();
    let mut w = worker(&l);
    let runs = finished(&l, &ids, 120);
    let _ = w.kill();
    let _ = w.wait();
    let status: Vec<&str> = runs
        .iter()
        .map(|r| r["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        status,
        ["succeeded", "failed", "succeeded", "succeeded"],
        "{runs:?}"
    );
    assert_eq!(runs[1]["failure_code"], "guardrail_blocked", "{}", runs[1]);
    // The first line was saved before the block: it ran once. The two after went on together.
    assert_eq!(batch_sizes_of(&l, 2), vec![4, 2], "{:?}", l.record_lines());
    assert_ne!(runs[2]["batch_id"], runs[0]["batch_id"]);
    assert_eq!(runs[2]["batch_id"], runs[3]["batch_id"]);
    let events = events_text(&l, &ids[2]);
    assert!(events.contains("the guardrail stopped batch"), "{events}");
    assert_eq!(runs[2]["attempts"], 0, "not the run's own failure");
}

per_model!(
    out_of_memory_sends_the_unfinished_runs_back_in_halves,
    transfer25_out_of_memory_sends_the_unfinished_runs_back_in_halves,
    out_of_memory_in_halves
);

fn out_of_memory_in_halves(model: Model) {
    // The GPU holds one line only: every batch runs out of memory at its second line.
    let l = batching_for(model, &["COSMOS_SIM_FAIL=oom_at_line:1"], 8);
    let scene = l.home.standard_scene("shot");
    let ids: Vec<String> = (0..4)
        .map(|i| queue(&l, &format!("a field, take {i}"), &scene, &[]))
        .collect();
    let mut w = worker(&l);
    let runs = finished(&l, &ids, 120);
    let _ = w.kill();
    let _ = w.wait();
    for r in &runs {
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    // 4 → line 1 ran out of memory; 3 back in batches of at most 2: two (out of memory again
    // at the second line, which goes back alone), then the third alone, then the last.
    let mut sizes = batch_sizes_of(&l, 4);
    sizes.sort();
    assert_eq!(sizes, vec![1, 1, 2, 4], "{:?}", l.record_lines());
    let events = events_text(&l, &ids[3]);
    assert!(
        events.contains("out of GPU memory in batch") && events.contains("at most 2"),
        "{events}"
    );
}

per_model!(
    cancelling_one_run_of_a_running_batch_leaves_the_others_running,
    transfer25_cancelling_one_run_of_a_running_batch_leaves_the_others_running,
    cancel_one_of_a_batch
);

fn cancel_one_of_a_batch(model: Model) {
    let l = batching_for(model, &["COSMOS_SIM_CLIP_SECONDS=1"], 8);
    let scene = l.home.standard_scene("shot");
    let ids: Vec<String> = (0..3)
        .map(|i| queue(&l, &format!("a river, take {i}"), &scene, &[]))
        .collect();
    let mut w = worker(&l);
    wait_for("the batch to run", Duration::from_secs(60), || {
        run_of(&l, &ids[0])["status"] == "running"
    });
    l.run(&["kill", &ids[2]]).ok();
    wait_for("the cancel", Duration::from_secs(10), || {
        run_of(&l, &ids[2])["status"] == "cancelled"
    });
    assert_eq!(
        run_of(&l, &ids[0])["status"],
        "running",
        "the batch goes on"
    );
    let runs = finished(&l, &ids, 60);
    let _ = w.kill();
    let _ = w.wait();
    assert_eq!(runs[0]["status"], "succeeded", "{}", runs[0]);
    assert_eq!(runs[1]["status"], "succeeded", "{}", runs[1]);
    assert_eq!(runs[2]["status"], "cancelled", "{}", runs[2]);
    assert_eq!(
        runs[2]["outputs"],
        Value::Array(vec![]),
        "its output is discarded"
    );
    assert_eq!(batch_sizes_of(&l, 1), vec![3]);
}

per_model!(
    a_batch_whose_worker_dies_is_finished_by_the_next_without_running_twice,
    transfer25_a_batch_whose_worker_dies_is_finished_by_the_next_without_running_twice,
    worker_dies_mid_batch
);

fn worker_dies_mid_batch(model: Model) {
    let l = batching_for(model, &["COSMOS_SIM_CLIP_SECONDS=1"], 8);
    let scene = l.home.standard_scene("shot");
    let ids: Vec<String> = (0..3)
        .map(|i| queue(&l, &format!("a canyon, take {i}"), &scene, &[]))
        .collect();
    let mut first = worker(&l);
    // Killed while the process is on its second line, the first already collected.
    wait_for("the first line", Duration::from_secs(60), || {
        run_of(&l, &ids[0])["status"] == "succeeded"
    });
    let _ = first.kill();
    let _ = first.wait();
    let mut second = worker(&l);
    let runs = finished(&l, &ids, 90);
    let _ = second.kill();
    let _ = second.wait();
    for r in &runs {
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    assert_eq!(batch_sizes_of(&l, 1), vec![3], "the model ran once");
    let lines: Vec<u64> = runs
        .iter()
        .map(|r| r["batch_line"].as_u64().expect("line"))
        .collect();
    assert_eq!(lines, vec![0, 1, 2]);
    // Each got its own line's video, collected by whichever worker saw it saved.
    for r in &runs {
        assert_eq!(
            saved_prompt(model, r),
            r["prompt_text"].as_str().expect("text")
        );
    }
}

#[test]
fn transfer25_runs_with_the_same_controls_share_one_process_and_keep_their_own_files() {
    let l = batching_for(Model::T25, &[], 8);
    let scene = l.home.standard_scene("shot");
    // Seeds, prompts and weights are each sample's own in Transfer2.5: these four share a
    // process. Another control set loads another model: another process.
    let ids: Vec<String> = (0..4)
        .map(|i| {
            let seed = (i + 1).to_string();
            let weight = format!("edge={}", 0.5 + 0.1 * f64::from(i));
            queue(
                &l,
                &format!("a pier, take {i}"),
                &scene,
                &["--seed", &seed, "--weights", &weight],
            )
        })
        .collect();
    let other = queue(&l, "a pier in depth", &scene, &["--weights", "depth=1"]);
    let mut w = worker(&l);
    let mut all = ids.clone();
    all.push(other.clone());
    let runs = finished(&l, &all, 120);
    let _ = w.kill();
    let _ = w.wait();
    for r in &runs {
        assert_eq!(r["status"], "succeeded", "{r}");
    }
    let mut sizes = batch_sizes_of(&l, 2);
    sizes.sort();
    assert_eq!(sizes, vec![1, 4], "{:?}", l.record_lines());
    let batch = runs[0]["batch_id"].as_str().expect("a batch id").to_owned();
    let mut lines = Vec::new();
    for (i, r) in runs[..4].iter().enumerate() {
        let id = r["id"].as_str().expect("id");
        assert_eq!(r["batch_id"], batch.as_str(), "{r}");
        lines.push(r["batch_line"].as_u64().expect("line"));
        // Only its own files, under its name: its video first, its prompt, its arguments.
        let outputs = r["outputs"].as_array().expect("outputs");
        assert!(
            outputs[0]["path"]
                .as_str()
                .expect("path")
                .ends_with(&format!("{id}/{id}.mp4")),
            "{outputs:?}"
        );
        for o in outputs {
            let name = Path::new(o["path"].as_str().expect("path"))
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            assert!(name.starts_with(id), "{name} is not {id}'s");
        }
        assert_eq!(saved_prompt(Model::T25, r), format!("a pier, take {i}"));
        let args = super::models::model_args(r);
        assert_eq!(args["name"], id);
        assert_eq!(args["seed"], i as u64 + 1);
        own_file(r, "_control_edge.mp4");
        let events = events_text(&l, id);
        assert!(
            events.contains("generating: chunk 1/1, step 35/35"),
            "{events}"
        );
        assert!(events.contains(&format!("in batch {batch}")), "{events}");
    }
    lines.sort();
    assert_eq!(lines, vec![0, 1, 2, 3]);
    assert!(runs[4]["batch_id"].is_null(), "{}", runs[4]);
    let log = l.run(&["logs", &ids[2]]).ok().stdout;
    assert!(log.contains("[3/4] Processing sample"), "{log}");
}

#[test]
fn transfer25_a_blocked_prompt_fails_only_its_own_run_and_the_batch_goes_on() {
    let l = batching_for(Model::T25, &[], 8);
    let scene = l.home.standard_scene("shot");
    let texts = [
        "a quiet street",
        "a forbiddenfruit on a table",
        "a busy street",
        "a wet street",
    ];
    let ids: Vec<String> = texts.iter().map(|t| queue(&l, t, &scene, &[])).collect();
    let mut w = worker(&l);
    let runs = finished(&l, &ids, 120);
    let _ = w.kill();
    let _ = w.wait();
    let status: Vec<&str> = runs
        .iter()
        .map(|r| r["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        status,
        ["succeeded", "failed", "succeeded", "succeeded"],
        "{runs:?}"
    );
    // Its guardrail skips the sample and goes on: one process served all four.
    assert_eq!(runs[1]["failure_code"], "guardrail_blocked", "{}", runs[1]);
    assert!(
        runs[1]["failure_reason"]
            .as_str()
            .unwrap_or("")
            .contains("forbiddenfruit"),
        "{}",
        runs[1]
    );
    assert_eq!(batch_sizes_of(&l, 1), vec![4], "{:?}", l.record_lines());
    assert_eq!(runs[2]["batch_id"], runs[0]["batch_id"]);
    assert_eq!(runs[1]["outputs"], Value::Array(vec![]), "{}", runs[1]);
}

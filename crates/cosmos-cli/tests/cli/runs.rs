//! `cosmos run`, `cosmos list` and `cosmos show`.

use serde_json::json;

use super::support::{Home, TestResult, s};

#[test]
fn dry_run_prints_the_exact_spec_and_command_and_stores_nothing() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("scene");
    let plan = h
        .run(&[
            "run",
            "a foggy harbour",
            s(&scene),
            "--weights",
            "vis=0.2,depth=0.5,seg=0.3",
            "--seed",
            "7",
            "--gpus",
            "2",
            "--dry-run",
            "--json",
        ])
        .ok()
        .json();
    let run_id = plan["run_id"].as_str().ok_or("run id")?;
    let dir = format!("/srv/cosmos/runs/{run_id}");
    assert_eq!(
        plan["spec"],
        json!({
            "prompt": "a foggy harbour",
            "input_video_path": format!("{dir}/inputs/color.mp4"),
            "sigma_max": 70.0, "seed": 7, "guidance": 5.0, "num_steps": 35, "fps": 24,
            "blur_strength": "medium", "canny_threshold": "medium",
            "vis": {"control_weight": 0.2},
            "seg": {"control_weight": 0.3, "input_control": format!("{dir}/inputs/seg.mp4")},
            "depth": {"control_weight": 0.5, "input_control": format!("{dir}/inputs/depth.mp4")},
        })
    );
    let line = plan["container_command_line"].as_str().ok_or("command")?;
    for part in [
        format!("docker run --detach --name cosmos-{run_id} --label cosmos.run={run_id}"),
        "--gpus '\"device=0,1\"'".to_owned(),
        "torchrun --nproc_per_node=2 --nnodes=1 --node_rank=0 cosmos_transfer1/diffusion/inference/transfer.py".to_owned(),
        format!("--controlnet_specs {dir}/spec.json --video_save_folder {dir}/outputs --num_gpus 2"),
    ] {
        assert!(line.contains(&part), "{part:?} not in {line}");
    }
    // Nothing was stored.
    assert_eq!(h.run(&["list", "--json"]).ok().json(), json!([]));
    assert_eq!(h.run(&["prompt", "list", "--json"]).ok().json(), json!([]));
    assert_eq!(h.run(&["inputs", "list", "--json"]).ok().json(), json!([]));
    // The human form prints the same spec.
    let human = h
        .run(&["run", "a foggy harbour", s(&scene), "--dry-run"])
        .ok();
    assert!(
        human.stdout.starts_with("# spec.json") && human.stdout.contains("docker run --detach"),
        "{}",
        human.stdout
    );
    Ok(())
}

#[test]
fn hostile_prompt_text_reaches_the_spec_byte_exact_and_never_the_command() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("scene");
    let text = "'; rm -rf ~ # $(touch /tmp/pwned) `id` \"quoted\"\nsecond line — café 東京";
    let plan = h
        .run(&["run", text, s(&scene), "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(plan["spec"]["prompt"], text);
    let line = plan["container_command_line"].as_str().ok_or("command")?;
    assert!(
        !line.contains("rm -rf") && !line.contains("pwned") && !line.contains("café"),
        "{line}"
    );
    Ok(())
}

#[test]
fn weights_cosmos_would_normalise_are_reported() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("scene");
    let out = h
        .run(&[
            "run",
            "x",
            s(&scene),
            "--weights",
            "depth=0.9,seg=0.6",
            "--dry-run",
        ])
        .ok();
    assert!(
        out.stderr.contains(
            "weights sum to 1.500 (> 1): Cosmos will normalise them to seg=0.400,depth=0.600"
        ),
        "{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn cosmos_validation_errors_use_cosmos_messages() -> TestResult {
    let h = Home::new();
    let no_colour = h.scene("nocolour", &[("depth.mp4", 64, 36, 24, 24)]);
    let out = h.run(&["run", "x", s(&no_colour), "--dry-run"]).fails_with(
        "Cosmos-Transfer1 would reject this spec: Must have 'input_video' specified if sigma_max < 80",
    );
    assert!(
        out.stderr.contains("--sigma-max 80"),
        "hint: {}",
        out.stderr
    );
    h.run(&[
        "run",
        "x",
        s(&no_colour),
        "--sigma-max",
        "80",
        "--weights",
        "vis=0.5",
        "--dry-run",
    ])
    .fails_with(
        "vis controlnet must have 'input_control' video specified if no 'input_video' specified.",
    );
    h.run(&["run", "x", s(&no_colour), "--sigma-max", "80", "--dry-run"])
        .ok();
    Ok(())
}

#[test]
fn bad_run_parameters_are_usage_errors() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("scene");
    let cases = [
        (vec!["--weights", "depth=-0.2"], "must be a non-negative"),
        (vec!["--weights", "colr=0.2"], "unknown modality `colr`"),
        (vec!["--weights", "depth=lots"], "is not a number"),
        (vec!["--weights", "depth"], "is not `modality=weight`"),
        (
            vec!["--weights", "hdmap=0.5"],
            "`hdmap` has no control video",
        ),
        (vec!["--gpus", "3"], "--gpus 3 is not supported"),
        (vec!["--steps", "0"], "--steps 0 is out of range"),
        (vec!["--blur-strength", "fuzzy"], "unknown level `fuzzy`"),
        (vec!["--seed", "-1"], "unexpected argument '-1'"),
    ];
    for (flags, needle) in cases {
        let mut args = vec!["run", "x", s(&scene), "--dry-run"];
        args.extend(flags);
        h.run(&args).fails_with(needle);
    }
    h.run(&["run", "just text"])
        .fails_with("a run needs control videos");
    // A folder that is not there is said so, once (not taken for an id).
    let missing = h.run(&["run", "x", "/nonexistent/shot"]).fails_with(
        "error: cannot read `/nonexistent/shot`: No such file or directory (os error 2)\n",
    );
    assert_eq!(
        missing.stderr.matches("No such file").count(),
        1,
        "{}",
        missing.stderr
    );
    h.run(&["run", "harbur"]).fails_with(
        "no prompt has the name or id `harbur`; as new text, a run needs control videos",
    );
    // An id with a folder: the prompt is looked up first (its videos may be missing).
    h.run(&["run", "ps_0123", s(&scene)])
        .fails_with("no prompt matches `ps_0123`");
    h.run(&["run", "ps_0123"])
        .fails_with("no prompt matches `ps_0123`");
    Ok(())
}

#[test]
fn queued_runs_are_listed_shown_and_filtered() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("scene");
    let first = h
        .run(&[
            "run",
            "a foggy harbour at dawn",
            s(&scene),
            "--name",
            "harbour take 1",
            "--no-wait",
        ])
        .ok();
    assert!(first.stderr.is_empty(), "{}", first.stderr);
    let first_id = first.stdout.trim().to_owned();
    assert!(
        first_id.starts_with("rs_"),
        "stdout carries the id: {first_id}"
    );
    // The same text and inputs reuse the prompt (named by the first run's --name); a prompt's
    // name runs that prompt.
    let second = h
        .run(&[
            "run",
            "a foggy harbour at dawn",
            s(&scene),
            "--seed",
            "2",
            "--no-wait",
            "--json",
        ])
        .ok()
        .json();
    let third = h
        .run(&[
            "run",
            "harbour take 1",
            "--seed",
            "3",
            "--no-wait",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(second["prompt_id"], third["prompt_id"]);
    assert_eq!(
        h.run(&["prompt", "list", "--json"])
            .ok()
            .json()
            .as_array()
            .ok_or("array")?
            .len(),
        1
    );

    let runs = h.run(&["list", "--json"]).ok().json();
    let runs = runs.as_array().ok_or("array")?;
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r["status"] == "queued"));
    assert_eq!(runs[2]["id"], first_id.as_str(), "newest first");
    assert_eq!(runs[2]["name"], "harbour take 1");
    assert_eq!(
        h.run(&["list", "--status", "failed", "--json"]).ok().json(),
        json!([])
    );
    assert_eq!(
        h.run(&[
            "list",
            "--since",
            "1h",
            "--prompt",
            "harbour take 1",
            "--json"
        ])
        .ok()
        .json()
        .as_array()
        .ok_or("a")?
        .len(),
        3
    );
    h.run(&["list", "--since", "yesterday"])
        .fails_with("is not understood");
    h.run(&["list", "--status", "done"])
        .fails_with("unknown status `done`");

    let table = h.run(&["list"]).ok().stdout;
    assert!(
        table.starts_with("ID ") && table.contains("harbour take 1"),
        "{table}"
    );
    let shown = h
        .run(&["show", &first_id[..first_id.len() - 4]])
        .ok()
        .stdout;
    for needle in [
        "status     queued",
        "seed 1 · steps 35",
        "weights    seg=0.5,depth=0.5",
        "queued; no target chosen yet",
    ] {
        assert!(shown.contains(needle), "{needle:?} not in\n{shown}");
    }
    let by_name = h.run(&["show", "harbour take 1", "--json"]).ok().json();
    assert_eq!(by_name["run_count"], 3);
    h.run(&["show", "rs_"]).fails_with("is ambiguous");
    h.run(&["show", "rs_%"]).fails_with("is not an id prefix");
    Ok(())
}

#[test]
fn sweeps_make_one_run_per_combination_in_one_go() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("shot");
    let dry = h
        .run(&[
            "run",
            "a harbour",
            s(&scene),
            "--seeds",
            "1..3",
            "--dry-run",
        ])
        .ok()
        .stdout;
    assert!(dry.contains("# and 2 more runs like it"), "{dry}");
    assert!(dry.contains("seed 3"), "{dry}");

    let runs = h
        .run(&[
            "run",
            "a harbour",
            s(&scene),
            "--seed",
            "7,9",
            "--weights",
            "depth=0.2:0.6:0.2,seg=0.5",
            "--priority",
            "3",
            "--no-wait",
            "--json",
        ])
        .ok()
        .json();
    let runs = runs.as_array().ok_or("an array of runs")?;
    assert_eq!(runs.len(), 6);
    let combos: std::collections::BTreeSet<String> = runs
        .iter()
        .map(|r| format!("{} {}", r["params"]["seed"], r["params"]["weights"]))
        .collect();
    assert_eq!(combos.len(), 6, "{combos:?}");
    assert!(combos.contains("9 \"seg=0.5,depth=0.6\""), "{combos:?}");
    assert!(runs.iter().all(|r| r["prompt_id"] == runs[0]["prompt_id"]));
    assert!(runs.iter().all(|r| r["priority"] == 3));

    // A file of runs: all or nothing, errors naming the entry.
    let file = h.path().join("sweep.toml");
    std::fs::write(
        &file,
        format!(
            "[[run]]\nprompt = \"a market\"\ninputs = \"{}\"\nseeds = \"1..2\"\n\n[[run]]\nprompt = \"a harbour\"\ninputs = \"{}\"\nweights = \"depth=0.5\"\ngpus = 2\n",
            scene.display(),
            scene.display()
        ),
    )?;
    let made = h
        .run(&["run", "--from-file", s(&file), "--no-wait", "--json"])
        .ok()
        .json();
    let made = made.as_array().ok_or("runs")?;
    assert_eq!(made.len(), 3);
    assert_eq!(made[2]["params"]["gpus"], 2);

    let before = h.run(&["list", "--json"]).ok().json();
    std::fs::write(
        &file,
        format!(
            "[[run]]\nprompt = \"fine\"\ninputs = \"{}\"\n\n[[run]]\nprompt = \"broken\"\ninputs = \"{}\"\nweights = \"smell=0.5\"\n",
            scene.display(),
            scene.display()
        ),
    )?;
    let out = h.run(&["run", "--from-file", s(&file), "--no-wait"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("sweep.toml run 2"), "{}", out.stderr);
    assert_eq!(
        h.run(&["list", "--json"]).ok().json(),
        before,
        "nothing stored"
    );

    // A TOML entry that does not parse is named, with its line; a runs file may be a dry run.
    std::fs::write(
        &file,
        format!(
            "[[run]]\nprompt = \"fine\"\ninputs = \"{}\"\n\n[[run]]\nprompt = \"typo\"\ngpus = \"two\"\n",
            scene.display()
        ),
    )?;
    h.run(&["run", "--from-file", s(&file), "--no-wait"])
        .fails_with("sweep.toml [[run]] 2 (line 5): invalid type");
    std::fs::write(
        &file,
        format!(
            "[[run]]\nprompt = \"wide\"\ninputs = \"{0}\"\nseeds = \"1..6000\"\n\n[[run]]\nprompt = \"wider\"\ninputs = \"{0}\"\nseeds = \"1..6000\"\n",
            scene.display()
        ),
    )?;
    // One submission is capped (the refusal says how many and how to mean it).
    h.run(&["run", "--from-file", s(&file), "--no-wait"])
        .fails_with(
            "would queue 12000 runs, more than the 10000 one submission may: pass --max-runs 12000",
        );
    let dry = h
        .run(&[
            "run",
            "--from-file",
            s(&file),
            "--dry-run",
            "--max-runs",
            "12000",
        ])
        .ok();
    assert!(dry.stdout.contains("more runs like it"), "{}", dry.stdout);
    assert_eq!(
        h.run(&["list", "--json"]).ok().json(),
        before,
        "a dry run stores nothing"
    );

    // canny_threshold changes nothing Cosmos makes: said once, and a sweep over it refused.
    let noted = h
        .run(&[
            "run",
            "x",
            s(&scene),
            "--canny-threshold",
            "high",
            "--dry-run",
        ])
        .ok();
    assert!(
        noted.stderr.contains("canny_threshold has no effect"),
        "{}",
        noted.stderr
    );
    std::fs::write(
        &file,
        format!(
            "[[run]]\nprompt = \"edges\"\ninputs = \"{0}\"\ncanny_threshold = \"low\"\n\n[[run]]\nprompt = \"edges\"\ninputs = \"{0}\"\ncanny_threshold = \"high\"\n",
            scene.display()
        ),
    )?;
    h.run(&["run", "--from-file", s(&file), "--no-wait"])
        .fails_with("these runs differ in canny_threshold (high, low)");

    h.run(&["run", "x", s(&scene), "--seed", "1,x"])
        .fails_with("`x` in --seed");
    h.run(&["run", "x", s(&scene), "--seeds", "9..2"])
        .fails_with("is empty");
    h.run(&["run", "x", s(&scene), "--weights", "vis=0.5:0.1:0.1"])
        .fails_with("stop is below the start");
    Ok(())
}

#[test]
fn kill_cancels_a_sweep_a_prompt_s_runs_or_every_queued_run() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("scene");
    let ids = |out: super::support::Out| -> Vec<String> {
        out.stdout.lines().map(str::to_owned).collect()
    };
    let status = |id: &str| h.run(&["show", id, "--json"]).ok().json()["run"]["status"].clone();

    // No target yet: the runs only queue.
    let sweep = ids(h
        .run(&[
            "run",
            "a harbour",
            s(&scene),
            "--seeds",
            "1..3",
            "--no-wait",
        ])
        .ok());
    assert_eq!(sweep.len(), 3);
    let single = ids(h.run(&["run", "a harbour", s(&scene), "--no-wait"]).ok());
    h.run(&["kill", "--sweep", &single[0]])
        .fails_with("is not part of a sweep");
    let killed = h.run(&["kill", "--sweep", &sweep[1]]).ok();
    assert_eq!(
        killed.stdout.matches(" cancelled").count(),
        3,
        "{}",
        killed.stdout
    );
    assert_eq!(status(&single[0]), "queued");

    let other = ids(h
        .run(&["run", "snow at night", s(&scene), "--no-wait"])
        .ok());
    let shown = h.run(&["show", &single[0], "--json"]).ok().json();
    let prompt = shown["run"]["prompt_name"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    h.run(&["kill", "--prompt", &prompt]).ok();
    assert_eq!(status(&single[0]), "cancelled");
    assert_eq!(status(&other[0]), "queued");
    h.run(&["kill", "--all-queued"]).ok();
    assert_eq!(status(&other[0]), "cancelled");
    // A cancel records its reason.
    let shown = h.run(&["show", &other[0], "--json"]).ok().json();
    assert_eq!(
        shown["run"]["failure_reason"], "cancelled by the user",
        "{shown}"
    );

    // A cancelled run is retried once; the two are linked both ways in `show`.
    let again = h
        .run(&["retry", &other[0], "--no-wait", "--json"])
        .ok()
        .json();
    let again_id = again["id"].as_str().ok_or("retry id")?.to_owned();
    h.run(&["retry", &other[0], "--no-wait"])
        .fails_with(&format!("was already retried as `{again_id}`"));
    let shown = h.run(&["show", &other[0]]).ok().stdout;
    assert!(shown.contains(&format!("retried as {again_id}")), "{shown}");
    let shown = h.run(&["show", &again_id]).ok().stdout;
    assert!(
        shown.contains(&format!("retry of   {}", other[0])),
        "{shown}"
    );
    h.run(&["kill", &again_id]).ok();

    // Several runs at once; a run that already finished is said to be, and fails the kill.
    let two = ids(h
        .run(&["run", "rain", s(&scene), "--seeds", "1..2", "--no-wait"])
        .ok());
    let out = h.run(&["kill", &two[0], &two[1], &other[0]]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "run {} has already finished (cancelled): nothing to cancel",
            other[0]
        )),
        "{}",
        out.stderr
    );
    assert_eq!(
        (status(&two[0]), status(&two[1])),
        ("cancelled".into(), "cancelled".into())
    );

    // Nothing named is a usage error.
    assert_eq!(h.run(&["kill"]).code, 2);
    Ok(())
}

#[test]
fn list_keeps_a_sweep_in_order_says_when_it_cuts_and_filters_by_rating() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("scene");
    let queued: Vec<String> = h
        .run(&[
            "run",
            "a harbour",
            s(&scene),
            "--seeds",
            "1..25",
            "--no-wait",
        ])
        .ok()
        .stdout
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(queued.len(), 25);
    // Newest first, and a sweep stored in one go keeps its order (reversed), every time.
    let listed = h.run(&["list", "--all", "--json"]).ok().json();
    let seeds: Vec<i64> = listed
        .as_array()
        .ok_or("array")?
        .iter()
        .filter_map(|r| r["params"]["seed"].as_i64())
        .collect();
    assert_eq!(seeds, (1..=25).rev().collect::<Vec<i64>>());
    let table = h.run(&["list"]).ok();
    assert_eq!(table.stdout.lines().count(), 21, "{}", table.stdout);
    assert!(
        table
            .stderr
            .contains("20 of 25 shown, newest first: --limit N or --all for more"),
        "{}",
        table.stderr
    );
    assert!(!h.run(&["list", "--all"]).ok().stderr.contains("shown"));

    // Ratings and favourites.
    h.run(&["rate", &queued[0], &queued[1], "4"]).ok();
    h.run(&["rate", &queued[1], "--favourite"]).ok();
    h.run(&["rate", &queued[2], "2"]).ok();
    let ids = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = h
            .run(&[&["list", "--json"], args].concat())
            .ok()
            .json()
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect();
        v.sort();
        v
    };
    let mut top = vec![queued[0].clone(), queued[1].clone()];
    top.sort();
    assert_eq!(ids(&["--rating", "4"]), top);
    assert_eq!(ids(&["--favourite"]), [queued[1].clone()]);
    assert_eq!(ids(&["--rating", "2"]).len(), 3);
    h.run(&["rate", &queued[0], "0"]).ok();
    assert_eq!(ids(&["--rating", "1"]).len(), 2);
    let shown = h.run(&["show", &queued[1]]).ok();
    assert!(
        shown.stdout.contains("★★★★ · favourite"),
        "{}",
        shown.stdout
    );
    h.run(&["rate", &queued[0], "6"])
        .fails_with("a rating is 1 to 5 (0 clears it), not 6");
    h.run(&["rate", &queued[0]])
        .fails_with("give a rating after the runs");
    h.run(&["list", "--rating", "9"])
        .fails_with("9 is not in 1..=5");
    Ok(())
}

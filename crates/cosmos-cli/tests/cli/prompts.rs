//! `cosmos prompt …` and `cosmos search`.

use super::support::{Home, TestResult, s};

#[test]
fn create_generates_unique_readable_names() -> TestResult {
    let h = Home::new();
    let a = h
        .run(&[
            "prompt",
            "create",
            "A robot arm picks up a red cup",
            "--json",
        ])
        .ok()
        .json();
    let b = h
        .run(&[
            "prompt",
            "create",
            "The robot arm picks up a red mug",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(a["name"], "robot-arm-picks-red");
    assert_eq!(b["name"], "robot-arm-picks-red-2");
    assert!(a["id"].as_str().ok_or("id")?.starts_with("ps_"));
    let human = h
        .run(&["prompt", "create", "snow at night", "--name", "snow night"])
        .ok();
    assert!(
        human.stdout.trim().ends_with("snow night"),
        "{}",
        human.stdout
    );
    Ok(())
}

#[test]
fn create_with_a_folder_registers_it_on_the_way() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("scene");
    let p = h
        .run(&[
            "prompt",
            "create",
            "a pier",
            "--inputs",
            s(&scene),
            "--json",
        ])
        .ok();
    assert!(p.stderr.contains("registered input set"), "{}", p.stderr);
    let set_id = p.json()["input_set_id"]
        .as_str()
        .ok_or("set id")?
        .to_owned();
    let sets = h.run(&["inputs", "list", "--json"]).ok().json();
    assert_eq!(sets[0]["id"], set_id.as_str());
    assert_eq!(sets[0]["prompts"], 1);
    Ok(())
}

#[test]
fn bad_prompt_input_writes_nothing() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("scene");
    h.run(&["prompt", "create", "first", "--name", "taken"])
        .ok();
    h.run(&[
        "prompt",
        "create",
        "second",
        "--name",
        "taken",
        "--inputs",
        s(&scene),
    ])
    .fails_with("a prompt named `taken` already exists");
    assert_eq!(
        h.run(&["inputs", "list", "--json"]).ok().json(),
        serde_json::json!([]),
        "the folder was not registered"
    );
    h.run(&["prompt", "create", "   "])
        .fails_with("the prompt text is empty");
    h.run(&["prompt", "create", "x", "--inputs", "in_zzzz"])
        .fails_with("no input set matches `in_zzzz`");
    h.run(&["prompt", "create", "x", "--name", "rs_sneaky"])
        .fails_with("looks like an id");
    h.run(&["prompt", "create", "x", "--name", "a\nb"])
        .fails_with("control characters");
    let prompts = h.run(&["prompt", "list", "--json"]).ok().json();
    assert_eq!(prompts.as_array().ok_or("array")?.len(), 1);
    Ok(())
}

#[test]
fn edit_changes_search_but_not_past_runs() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("scene");
    let p = h
        .run(&[
            "prompt",
            "create",
            "a kitchen at noon",
            "--name",
            "take-one",
            "--inputs",
            s(&scene),
            "--json",
        ])
        .ok()
        .json();
    let id = p["id"].as_str().ok_or("id")?;
    let run = h.run(&["run", id, "--no-wait", "--json"]).ok().json();
    h.run(&[
        "prompt",
        "edit",
        id,
        "--text",
        "a warehouse at dusk",
        "--negative",
        "blurry",
    ])
    .ok();
    assert_eq!(
        h.run(&["search", "kitchen", "--json"]).ok().json(),
        serde_json::json!([])
    );
    let hits = h.run(&["search", "warehouse", "--json"]).ok().json();
    assert_eq!(hits[0]["prompt"]["id"], id);
    assert_eq!(hits[0]["prompt"]["negative"], "blurry");
    let shown = h
        .run(&["show", run["id"].as_str().ok_or("id")?, "--json"])
        .ok()
        .json();
    assert_eq!(
        shown["run"]["prompt_text"], "a kitchen at noon",
        "runs keep the text they ran with"
    );
    h.run(&["prompt", "edit", id])
        .fails_with("nothing to change");
    h.run(&["prompt", "edit", id, "--negative", ""]).ok();
    let shown = h.run(&["prompt", "show", id, "--json"]).ok().json();
    assert_eq!(shown["prompt"]["negative"], serde_json::Value::Null);
    Ok(())
}

#[test]
fn rm_refuses_when_runs_exist_and_says_how_many() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("scene");
    let p = h.prompt_on("a pier", s(&scene));
    let id = p["id"].as_str().ok_or("id")?;
    h.run(&["run", id, "--no-wait"]).ok();
    h.run(&["run", id, "--seed", "2", "--no-wait"]).ok();
    h.run(&["prompt", "rm", id])
        .fails_with("is used by 2 runs; pass `--force`");
    let out = h.run(&["prompt", "rm", id, "--force"]).ok();
    assert!(
        out.stderr.contains("also removed 2 run(s)"),
        "{}",
        out.stderr
    );
    assert_eq!(
        h.run(&["list", "--json"]).ok().json(),
        serde_json::json!([])
    );
    Ok(())
}

#[test]
fn search_supports_phrases_prefixes_and_boolean_operators() -> TestResult {
    let h = Home::new();
    for (text, name) in [
        ("a robot arm in a bright kitchen", "arm-kitchen"),
        ("a robot dog in a warehouse", "dog-warehouse"),
        ("snowfall over a quiet harbour", "snow-harbour"),
    ] {
        h.run(&["prompt", "create", text, "--name", name]).ok();
    }
    let names = |q: &str| -> Vec<String> {
        let hits = h.run(&["search", q, "--json"]).ok().json();
        let mut v: Vec<String> = hits
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| x["prompt"]["name"].as_str().unwrap_or("").to_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("robot"), ["arm-kitchen", "dog-warehouse"]);
    assert_eq!(names("\"robot arm\""), ["arm-kitchen"]);
    assert_eq!(names("snow*"), ["snow-harbour"]);
    assert_eq!(names("robot NOT kitchen"), ["dog-warehouse"]);
    assert_eq!(names("kitchen OR harbour"), ["arm-kitchen", "snow-harbour"]);
    let human = h.run(&["search", "kitchen"]).ok();
    assert!(
        human.stdout.contains("[kitchen]"),
        "matches are highlighted: {}",
        human.stdout
    );
    h.run(&["search", "\"robot arm"])
        .fails_with("the quote opened at `\"robot arm` is never closed");
    // cosmos's own names hold hyphens: plain input is literal words.
    assert_eq!(names("dog-warehouse"), ["dog-warehouse"]);
    assert_eq!(names("robot AND"), Vec::<String>::new());
    let err = h
        .run(&["search", "robot AND ("])
        .fails_with("`(` is never closed");
    assert!(!err.stderr.contains("fts5"), "{}", err.stderr);
    Ok(())
}

#[test]
fn control_characters_in_prompt_text_are_shown_not_obeyed() -> TestResult {
    let h = Home::new();
    let text = "a red\u{1b}[31m cup\u{7} on a table";
    let p = h
        .run(&["prompt", "create", text, "--name", "escape", "--json"])
        .ok()
        .json();
    assert_eq!(p["text"].as_str(), Some(text), "stored exactly");
    for args in [
        vec!["prompt", "show", "escape"],
        vec!["prompt", "list"],
        vec!["search", "cup"],
    ] {
        let out = h.run(&args).ok();
        assert!(
            !out.stdout.contains('\u{1b}') && !out.stdout.contains('\u{7}'),
            "`{}` printed a raw control character: {:?}",
            args.join(" "),
            out.stdout
        );
    }
    let shown = h.run(&["prompt", "show", "escape"]).ok().stdout;
    assert!(
        shown.contains("a red\\e[31m cup\\x07 on a table"),
        "{shown}"
    );
    Ok(())
}

#[test]
fn the_same_prompt_is_reused_everywhere_unless_new_is_asked_for() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("scene");
    let first = h.prompt_on("a pier at dusk", s(&scene));
    let again = h
        .run(&[
            "prompt",
            "create",
            "a pier at dusk",
            "--inputs",
            s(&scene),
            "--json",
        ])
        .ok();
    assert!(
        again.stderr.contains("reusing it (--new makes another)"),
        "{}",
        again.stderr
    );
    assert_eq!(again.json()["id"], first["id"]);
    // `run "text" DIR` finds the same one.
    let run = h
        .run(&["run", "a pier at dusk", s(&scene), "--no-wait", "--json"])
        .ok()
        .json();
    assert_eq!(run["prompt_id"], first["id"], "{run}");
    let fresh = h
        .run(&[
            "prompt",
            "create",
            "a pier at dusk",
            "--inputs",
            s(&scene),
            "--new",
            "--json",
        ])
        .ok()
        .json();
    assert_ne!(fresh["id"], first["id"]);
    assert_eq!(fresh["name"], "pier-dusk-2", "{fresh}");
    Ok(())
}

#[test]
fn running_a_prompt_without_videos_on_a_folder_gives_it_that_folder() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("scene");
    let bare = h
        .run(&["prompt", "create", "a lighthouse in fog", "--json"])
        .ok()
        .json();
    let id = bare["id"].as_str().ok_or("id")?.to_owned();
    let out = h.run(&["run", &id, s(&scene), "--no-wait", "--json"]).ok();
    assert!(
        out.stderr
            .contains("had no input set: these control videos become its own"),
        "{}",
        out.stderr
    );
    let shown = h.run(&["prompt", "show", &id, "--json"]).ok().json();
    assert!(
        shown["prompt"]["input_set_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("in_")),
        "{shown}"
    );
    // Now it has videos: other ones are refused, with what to do.
    let other = h.scene("other", &[("x_color.mp4", 64, 36, 12, 24)]);
    h.run(&["run", &id, s(&other), "--no-wait"])
        .fails_with("already has its input set");
    // The same folder is fine.
    h.run(&["run", &id, s(&scene), "--no-wait"]).ok();
    Ok(())
}

//! Completions, usage errors, broken pipes.

use std::process::Stdio;

use super::support::{Home, TestResult};

#[test]
fn completions_are_generated_for_each_shell() -> TestResult {
    let h = Home::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = h.run(&["completions", shell]).ok();
        assert!(
            out.stdout.contains("cosmos") && out.stdout.contains("search"),
            "{shell}"
        );
    }
    h.run(&["completions", "tcsh"])
        .fails_with("invalid value 'tcsh'");
    Ok(())
}

#[test]
fn unknown_flags_are_usage_errors() -> TestResult {
    let h = Home::new();
    h.run(&["list", "--colour"])
        .fails_with("unexpected argument '--colour'");
    h.run(&["frobnicate"]).fails_with("unrecognized subcommand");
    let help = h.run(&["--help"]).ok();
    assert!(help.stdout.contains("Examples:"), "{}", help.stdout);
    Ok(())
}

#[test]
fn a_closed_pipe_ends_quietly() -> TestResult {
    let h = Home::new();
    h.run(&[
        "dev",
        "seed",
        "--prompts",
        "50",
        "--runs",
        "200",
        "--input-sets",
        "3",
    ])
    .ok();
    let mut child = h
        .command(&["list", "--limit", "200"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    drop(child.stdout.take());
    let out = child.wait_with_output()?;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn seeded_data_lists_shows_and_searches() -> TestResult {
    let h = Home::new();
    let report = h
        .run(&[
            "dev",
            "seed",
            "--prompts",
            "300",
            "--runs",
            "900",
            "--input-sets",
            "10",
        ])
        .ok()
        .json();
    assert_eq!(report["runs"], 900);
    let runs = h.run(&["list", "--limit", "50", "--json"]).ok().json();
    let runs = runs.as_array().ok_or("list is an array")?;
    assert_eq!(runs.len(), 50);
    let times: Vec<&str> = runs
        .iter()
        .map(|r| r["created_at"].as_str().unwrap_or(""))
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let failed = h
        .run(&["list", "--status", "failed", "--limit", "1000", "--json"])
        .ok()
        .json();
    let failed = failed.as_array().ok_or("array")?;
    assert!(!failed.is_empty() && failed.iter().all(|r| r["status"] == "failed"));
    let id = runs[0]["id"].as_str().ok_or("id")?;
    let shown = h.run(&["show", &id[..20], "--json"]).ok().json();
    assert_eq!(shown["run"]["id"], id);
    assert!(!shown["events"].as_array().ok_or("events")?.is_empty());
    let hits = h.run(&["search", "harbour", "dawn", "--json"]).ok().json();
    for hit in hits.as_array().ok_or("array")? {
        let text = hit["prompt"]["text"].as_str().unwrap_or("").to_lowercase();
        assert!(text.contains("harbour") && text.contains("dawn"), "{text}");
    }
    Ok(())
}

#[test]
fn a_damaged_database_is_refused_and_left_untouched() -> TestResult {
    let h = Home::new();
    std::fs::create_dir_all(h.home())?;
    let db = h.home().join("cosmos.db");
    std::fs::write(&db, b"")?;
    let out = h
        .run(&["list"])
        .fails_with("is damaged (the file is empty (0 bytes)");
    assert!(out.stderr.contains("cosmos.db-wal"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("hint: check the path"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::metadata(&db)?.len(), 0, "not re-created");
    std::fs::write(&db, b"this is not a database, but someone's notes\n")?;
    h.run(&["list"])
        .fails_with("it does not start like an SQLite database");
    assert_eq!(
        std::fs::read(&db)?,
        b"this is not a database, but someone's notes\n"
    );
    Ok(())
}

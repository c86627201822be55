//! `cosmos init` and `cosmos config`.

use super::support::{Home, TestResult, s};

#[test]
fn init_writes_a_commented_config_and_the_database() -> TestResult {
    let h = Home::new();
    let out = h.run(&["init"]).ok();
    assert!(
        out.stdout.contains("cosmos.toml") && out.stdout.contains("cosmos.db"),
        "{}",
        out.stdout
    );
    let config = std::fs::read_to_string(h.home().join("cosmos.toml"))?;
    assert!(config.contains("# Diffusion steps.") && config.contains("steps = 35"));
    assert!(h.home().join("cosmos.db").is_file());

    // A second init keeps the user's edits.
    std::fs::write(h.home().join("cosmos.toml"), "[defaults]\nsteps = 12\n")?;
    let out = h.run(&["init"]).ok();
    assert!(
        out.stderr.contains("keeping the existing config"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(h.home().join("cosmos.toml"))?,
        "[defaults]\nsteps = 12\n"
    );
    Ok(())
}

#[test]
fn config_path_and_show_follow_cosmos_home_and_environment() -> TestResult {
    let h = Home::new();
    let out = h.run(&["config", "path"]).ok();
    assert_eq!(out.stdout.trim(), s(&h.home().join("cosmos.toml")));
    let paths = h.run(&["config", "path", "--json"]).ok().json();
    assert_eq!(paths["database"], s(&h.home().join("cosmos.db")));

    std::fs::create_dir_all(h.home())?;
    std::fs::write(
        h.home().join("cosmos.toml"),
        "[defaults]\nsteps = 12\nseed = 4\n",
    )?;
    let shown = h
        .run_with(
            &["config", "show", "--json"],
            &[("COSMOS_DEFAULTS_SEED", "9")],
        )
        .ok()
        .json();
    assert_eq!(shown["defaults"]["steps"], 12, "file beats default");
    assert_eq!(shown["defaults"]["seed"], 9, "environment beats file");
    assert_eq!(shown["defaults"]["fps"], 24, "default where nothing is set");
    Ok(())
}

#[test]
fn config_show_redacts_secrets() -> TestResult {
    let h = Home::new();
    let out = h
        .run_with(
            &["config", "show"],
            &[("COSMOS_SECRETS_HF_TOKEN", "hf_TopSecret123")],
        )
        .ok();
    assert!(
        !out.stdout.contains("hf_TopSecret123") && out.stdout.contains("<redacted>"),
        "{}",
        out.stdout
    );
    Ok(())
}

#[test]
fn config_default_is_a_valid_config_file() -> TestResult {
    let h = Home::new();
    let text = h.run(&["config", "default"]).ok().stdout;
    let file = h.path().join("ref.toml");
    std::fs::write(&file, &text)?;
    h.run(&["--config", s(&file), "config", "show"]).ok();
    Ok(())
}

#[test]
fn unknown_keys_and_bad_values_name_the_key_and_the_file() -> TestResult {
    let h = Home::new();
    let file = h.path().join("bad.toml");
    std::fs::write(&file, "[defaults]\nstpes = 3\n")?;
    let out = h
        .run(&["--config", s(&file), "list"])
        .fails_with("unknown field `stpes`");
    assert!(
        out.stderr.contains(s(&file)) && out.stderr.contains("cosmos config default"),
        "{}",
        out.stderr
    );
    // The same through COSMOS_CONFIG.
    h.run_with(&["list"], &[("COSMOS_CONFIG", s(&file))])
        .fails_with("unknown field `stpes`");
    h.run_with(&["list"], &[("COSMOS_DEFAULTS_GPUS", "many")])
        .fails_with("COSMOS_DEFAULTS_GPUS");
    h.run(&["--config", s(&h.path().join("missing.toml")), "list"])
        .fails_with("cannot read the config file");
    // `config default` still works with a broken config, so users can repair it.
    h.run_with(&["config", "default"], &[("COSMOS_CONFIG", s(&file))])
        .ok();
    Ok(())
}

#[test]
fn config_defaults_reach_the_spec() -> TestResult {
    let h = Home::new();
    let scene = h.standard_scene("scene");
    let spec = h
        .run_with(
            &["run", "a pier", s(&scene), "--dry-run", "--json"],
            &[("COSMOS_DEFAULTS_STEPS", "20")],
        )
        .ok()
        .json();
    assert_eq!(spec["spec"]["num_steps"], 20);
    let spec = h
        .run_with(
            &[
                "run",
                "a pier",
                s(&scene),
                "--dry-run",
                "--json",
                "--steps",
                "7",
            ],
            &[("COSMOS_DEFAULTS_STEPS", "20")],
        )
        .ok()
        .json();
    assert_eq!(spec["spec"]["num_steps"], 7, "flags beat the environment");
    Ok(())
}

#[test]
fn a_config_file_holding_a_secret_must_be_owner_only() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let h = Home::new();
    h.run(&["init"]).ok();
    let file = h.home().join("cosmos.toml");
    assert_eq!(
        std::fs::metadata(&file)?.permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&file)?;
    let with_token = text.replace("# hf_token = \"…\"", "hf_token = \"hf_Readable42\"");
    assert_ne!(
        with_token, text,
        "the default file has a commented hf_token"
    );
    std::fs::write(&file, with_token)?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))?;
    let out = h
        .run(&["config", "show"])
        .fails_with("holds a secret (secrets.hf_token) but other users can read it (mode 644)");
    assert!(out.stderr.contains("chmod 600"), "{}", out.stderr);
    assert!(!out.stderr.contains("hf_Readable42"));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
    h.run(&["config", "show"]).ok();
    Ok(())
}

//! Runs files, TOML and JSON lines.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = cosmos_engine::parse_runs_text(text, Path::new("runs.toml"));
    let _ = cosmos_engine::parse_runs_text(text, Path::new("runs.jsonl"));
});

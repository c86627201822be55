//! cosmos.toml with its environment overrides, through the cosmos binary's own config module.
#![no_main]
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

// The binary's source folder, so `config.rs` finds its `config/load.rs` as in the binary.
#[path = "../../crates/cosmos-cli/src"]
#[allow(unused_imports)]
mod cli {
    pub mod config;
}
use cli::config;

fuzz_target!(|input: (&str, &str)| {
    let (text, value) = input;
    let env = BTreeMap::from([("COSMOS_DEFAULTS_STEPS".to_owned(), value.to_owned())]);
    let _ = config::load::parse_config(text, Path::new("cosmos.toml"), &env);
});

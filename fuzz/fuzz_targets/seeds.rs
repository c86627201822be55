//! `--seed A,B,…` and `--seeds FIRST..LAST`: never a panic, never more seeds than allowed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let (list, range) = text.split_once('|').unwrap_or((text, ""));
    for (l, r) in [(Some(list), None), (None, Some(range)), (Some(list), Some(range))] {
        if let Ok(seeds) = cosmos_engine::parse_seeds(l, r, cosmos_engine::MAX_RUNS) {
            assert!(seeds.len() <= cosmos_engine::MAX_RUNS + list.split(',').count());
        }
    }
});

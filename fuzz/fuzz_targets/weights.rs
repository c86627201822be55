//! Control weights (`vis=0.3,edge=0.4`) and weight grids (`vis=0.2:0.6:0.2`).
#![no_main]

use cosmos_core::Weights;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(w) = text.parse::<Weights>() {
        // What is shown parses back to the same weights.
        assert_eq!(w.to_string().parse::<Weights>().ok(), Some(w));
    }
    let _ = cosmos_engine::parse_weight_grid(text);
});

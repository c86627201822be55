//! Ids and id prefixes as users type them.
#![no_main]

use cosmos_core::{IdPrefix, InputSetId, PromptId, RunId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(p) = IdPrefix::parse(text) {
        for kind in [
            cosmos_core::IdKind::Run,
            cosmos_core::IdKind::Prompt,
            cosmos_core::IdKind::InputSet,
        ] {
            let _ = p.for_kind(kind);
        }
    }
    if let Ok(id) = text.parse::<RunId>() {
        assert_eq!(id.to_string().parse::<RunId>().ok(), Some(id));
    }
    let _ = text.parse::<PromptId>();
    let _ = text.parse::<InputSetId>();
});

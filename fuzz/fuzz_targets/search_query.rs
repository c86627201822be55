//! The search language: any text parses or is refused with a reason, never a panic, and what
//! parses renders to an FTS5 expression that quotes every term.
#![no_main]

use cosmos_core::search::Query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(q) = Query::parse(text) {
        let fts = q.to_fts5();
        assert!(!fts.is_empty());
        // Every quote the user typed is doubled inside a quoted term: the quotes balance.
        assert_eq!(fts.matches('"').count() % 2, 0, "{fts}");
    }
});

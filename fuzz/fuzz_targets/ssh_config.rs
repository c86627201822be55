//! ~/.ssh/config text, looked up for an alias.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (text, alias) = input;
    let _ = cosmos_remote::sshconfig::lookup(text, alias, Path::new("/home/u"));
});

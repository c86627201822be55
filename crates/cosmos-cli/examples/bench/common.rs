//! What the benchmark examples share (included with `#[path]`; not an example itself).

use std::process::Command;

/// Runs `cmd`, panics with `what` and its stderr unless it succeeds; its stdout, trimmed.
pub fn ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

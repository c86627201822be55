//! Removing the containers a fixture is responsible for: those carrying its label, and those
//! cosmos started (label `cosmos.run`) that mount the fixture's directories.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::tools::{Tool, require};

/// Force-removes every container labelled `label` or mounting something under `dir`.
pub(crate) fn remove(label: &str, dir: &Path) {
    let Ok(docker) = require(Tool::Docker, None) else {
        return;
    };
    let ids = |filter: &str| -> Vec<String> {
        Command::new(&docker)
            .args(["ps", "-aq", "--no-trunc", "--filter", filter])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut doomed = ids(&format!("label={label}"));
    // Containers cosmos itself started here carry `cosmos.run`; ours are those mounting
    // this host's directories.
    let runs = ids("label=cosmos.run");
    if !runs.is_empty() {
        let mine = dir.display().to_string();
        let out = Command::new(&docker)
            .arg("inspect")
            .arg("--format")
            .arg("{{.Id}}{{range .Mounts}} {{.Source}}{{end}}")
            .args(&runs)
            .output();
        if let Ok(out) = out {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let mut parts = line.split_whitespace();
                let id = parts.next().unwrap_or_default().to_owned();
                if parts.any(|src| src.starts_with(&mine)) {
                    doomed.push(id);
                }
            }
        }
    }
    if !doomed.is_empty() {
        let _ = Command::new(&docker)
            .args(["rm", "--force", "--volumes"])
            .args(&doomed)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

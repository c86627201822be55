//! `COSMOS_SIM_RECORD=PATH`: one JSON line per model invocation, so tests can prove how many
//! times the model really ran, with what, and what it wrote.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use serde_json::{Value, json};

#[derive(Debug)]
pub struct Record {
    path: Option<PathBuf>,
    started: chrono::DateTime<chrono::Utc>,
    argv: Vec<String>,
    script: String,
    world_size: u32,
    pub spec_sha256: Option<String>,
    pub batch_sha256: Option<String>,
    pub outputs: Vec<String>,
    written: bool,
}

impl Record {
    pub fn new(path: Option<PathBuf>, argv: Vec<String>, script: &str, world_size: u32) -> Self {
        Self {
            path,
            started: chrono::Utc::now(),
            argv,
            script: script.to_owned(),
            world_size,
            spec_sha256: None,
            batch_sha256: None,
            outputs: Vec::new(),
            written: false,
        }
    }

    /// Appends the line once; `exit_code` is `None` for a run that hangs.
    pub fn write(&mut self, exit_code: Option<u8>, outcome: &str) {
        if self.written {
            return;
        }
        self.written = true;
        let Some(path) = &self.path else { return };
        let line = json!({
            "pid": std::process::id(),
            "started_at": self.started.to_rfc3339(),
            "finished_at": if exit_code.is_some() { Value::String(chrono::Utc::now().to_rfc3339()) } else { Value::Null },
            "cwd": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
            "argv": self.argv,
            "script": self.script,
            "world_size": self.world_size,
            "cuda_visible_devices": std::env::var("CUDA_VISIBLE_DEVICES").ok(),
            // Where the hub cache is, and whether the model may reach the hub (setup).
            "hf_home": std::env::var("HF_HOME").ok(),
            "hf_hub_offline": std::env::var("HF_HUB_OFFLINE").ok(),
            "spec_sha256": self.spec_sha256,
            "batch_sha256": self.batch_sha256,
            "outputs": self.outputs,
            "exit_code": exit_code,
            "outcome": outcome,
        });
        let mut text = line.to_string();
        text.push('\n');
        // One write on an O_APPEND file: concurrent invocations never interleave lines.
        let result = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = result {
            crate::log::stderr(&format!(
                "cosmos-sim: cannot append to COSMOS_SIM_RECORD {}: {e}\n",
                path.display()
            ));
        }
    }
}

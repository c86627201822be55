//! The `cosmos-sim` image and static binary, built once per test process by
//! `scripts/build-sim-image.sh` (a no-op taking about a second when nothing changed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::tools::{Tool, require};
use crate::{KitError, KitResult};

/// The repository's root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the testkit lives at crates/cosmos-testkit")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn build() -> KitResult<String> {
    require(Tool::Docker, None)?;
    require(Tool::Busybox, None)?;
    let script = workspace_root().join("scripts/build-sim-image.sh");
    let out = Command::new("bash")
        .arg(&script)
        .current_dir(workspace_root())
        .output()
        .map_err(|e| KitError::new(format!("cannot run {}: {e}", script.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let image = stdout.lines().last().unwrap_or_default().trim().to_owned();
    if !out.status.success() || !image.starts_with("cosmos-sim:") {
        return Err(KitError::new(format!(
            "{} failed ({}); `.ci/run` runs it before the tests:\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(image)
}

/// Newest modification time under `path`.
fn newest(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let mut time = meta.modified().ok()?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).ok()? {
            time = time.max(newest(&entry.ok()?.path())?);
        }
    }
    Some(time)
}

/// The image the last build stamped, if nothing it is built from changed since and the
/// engine still has it.
fn fresh_image() -> Option<String> {
    let stamp = target_dir().join("sim-image/stamp");
    let stamped = std::fs::metadata(&stamp).ok()?.modified().ok()?;
    let root = workspace_root();
    let inputs = [
        "crates/cosmos-sim",
        "crates/cosmos-core",
        "Cargo.lock",
        "scripts/build-sim-image.sh",
    ];
    for input in inputs {
        if newest(&root.join(input))? > stamped {
            return None;
        }
    }
    let image = std::fs::read_to_string(&stamp).ok()?.trim().to_owned();
    let present = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &image])
        .output()
        .is_ok_and(|o| o.status.success());
    present.then_some(image)
}

/// The image reference (`cosmos-sim:<version>`), built if needed. `COSMOS_SIM_IMAGE` names an
/// existing image instead.
pub fn sim_image() -> KitResult<String> {
    static IMAGE: OnceLock<KitResult<String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| match std::env::var("COSMOS_SIM_IMAGE") {
            Ok(image) if !image.is_empty() => Ok(image),
            _ => fresh_image().map_or_else(build, Ok),
        })
        .clone()
}

/// The static simulator binary the image was built from; it runs on the host too.
pub fn sim_binary() -> KitResult<PathBuf> {
    sim_image()?;
    let bin = target_dir().join("sim-image/rootfs/usr/local/bin/cosmos-sim");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(KitError::new(format!(
            "{} is missing after building the image; run scripts/build-sim-image.sh",
            bin.display()
        )))
    }
}

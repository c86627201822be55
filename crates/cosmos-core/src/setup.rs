//! What setting up a Cosmos-Transfer1 host means (reference §6): the repository and the
//! commit cosmos was tested against, the image tag a checkout builds, the checkpoints a run
//! needs, the Hugging Face repositories the model reads through the cache, and the checkpoint
//! manifest (path, size, time and sha256 of every file). Pure: the engine runs the steps.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::Hint;

/// Upstream's repository.
pub const REPO: &str = "https://github.com/nvidia-cosmos/cosmos-transfer1.git";
/// The commit cosmos was tested against (reference/cosmos-transfer1.md, 2026-06-07).
pub const COMMIT: &str = "5005e823dbd478ad8e51f6bc28a913a13a994b5f";
/// The image name a checkout builds; its tag is the checkout's short commit.
pub const IMAGE_NAME: &str = "cosmos-transfer1";
/// Hex digits of a commit in an image tag.
pub const SHORT_COMMIT: usize = 12;
/// Free space the checkpoints take ("about 300GB of free storage", reference §6.3).
pub const CHECKPOINT_SPACE_GB: f64 = 300.0;
/// Where a target keeps its Hugging Face cache, under its root.
pub const HF_CACHE_DIR: &str = "hf-cache";
/// Where the cache is mounted inside a container (`HF_HOME` points there).
pub const CONTAINER_HF_HOME: &str = "/cosmos-hf";
/// The file in the cache that says every repository in [`HF_CACHE_REPOS`] is there.
pub const HF_CACHE_COMPLETE: &str = ".cosmos-complete";
/// Repositories the preprocessors load by hub id at run time, through the cache (`HF_HOME`),
/// not from the checkpoints folder (reference §6.6).
pub const HF_CACHE_REPOS: [&str; 3] = [
    "depth-anything/Depth-Anything-V2-Small-hf",
    "IDEA-Research/grounding-dino-tiny",
    "facebook/sam2-hiera-large",
];
/// SigLIP, which the video guardrail looks up with its own folder in the checkpoints as the
/// hub's `cache_dir` (reference §6.6): fetched there, so it is in the manifest too.
pub const SIGLIP: (&str, &str) = (
    "google/siglip-so400m-patch14-384",
    "nvidia/Cosmos-Guardrail1/video_content_safety_filter",
);
/// Gated repositories and the licence their page asks to accept.
pub const GATED: [(&str, &str); 1] =
    [("meta-llama/Llama-Guard-3-8B", "Llama 3.1 Community License")];
/// Upstream's download script, relative to the checkout.
pub const DOWNLOAD_SCRIPT: &str = "scripts/download_checkpoints.py";

/// The image a checkout at `commit` builds: `cosmos-transfer1:<short commit>`.
pub fn image_tag(commit: &str) -> String {
    let short: String = commit.chars().take(SHORT_COMMIT).collect();
    format!("{IMAGE_NAME}:{short}")
}

/// The root's Hugging Face cache folder.
pub fn hf_cache(root: &str) -> String {
    format!("{}/{HF_CACHE_DIR}", root.trim_end_matches('/'))
}

/// Where setup keeps its state under a target's root (manifest, download env file).
pub fn setup_dir(root: &str) -> String {
    format!("{}/setup", root.trim_end_matches('/'))
}

/// The checkpoint manifest on the host.
pub fn manifest_path(root: &str) -> String {
    format!("{}/checkpoints.manifest", setup_dir(root))
}

/// A commit as `--commit` takes it: 7 to 40 hex digits.
pub fn validate_commit(commit: &str) -> Result<(), String> {
    if (7..=40).contains(&commit.len()) && commit.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!(
            "commit `{commit}` is not a commit hash: give 7 to 40 hex digits (`git rev-parse HEAD` in the repository)"
        ))
    }
}

/// A repository as `--repo` takes it: a URL or an absolute path on the host, never an option.
pub fn validate_repo(repo: &str) -> Result<(), String> {
    // `ext::…`, `fd::…`: git transports that run commands are never a repository here.
    let ok = !repo.starts_with('-')
        && !repo.contains("::")
        && !repo.is_empty()
        && !repo.chars().any(char::is_control)
        && (repo.starts_with('/') || repo.contains("://") || repo.contains('@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "repository `{repo}` is neither a URL nor an absolute path on the host: use `https://…`, `ssh://…`, `git@host:path` or `/srv/mirror/cosmos-transfer1.git`"
        ))
    }
}

/// Whether an image reference floats: no tag, or `:latest`, and no digest. A floating image
/// can change under a target without anyone knowing what runs ran on.
pub fn is_floating(image: &str) -> bool {
    if image.contains("@sha256:") {
        return false;
    }
    // The tag follows the last `:` after the last `/` (a registry's port comes before it).
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest" || tag.is_empty(),
        None => true,
    }
}

/// One need of a run: a checkpoint file or folder, relative to the checkpoints folder, and
/// why it is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub path: &'static str,
    pub why: &'static str,
}

const fn need(path: &'static str, why: &'static str) -> Need {
    Need { path, why }
}

/// The checkpoint that drives a hint.
fn control_checkpoint(hint: Hint, distilled: bool) -> &'static str {
    match hint {
        Hint::Vis => "nvidia/Cosmos-Transfer1-7B/vis_control.pt",
        Hint::Edge if distilled => "nvidia/Cosmos-Transfer1-7B/edge_control_distilled.pt",
        Hint::Edge => "nvidia/Cosmos-Transfer1-7B/edge_control.pt",
        Hint::Seg => "nvidia/Cosmos-Transfer1-7B/seg_control.pt",
        Hint::Depth => "nvidia/Cosmos-Transfer1-7B/depth_control.pt",
        Hint::Keypoint => "nvidia/Cosmos-Transfer1-7B/keypoint_control.pt",
        Hint::Upscale => "nvidia/Cosmos-Transfer1-7B/4kupscaler_control.pt",
        Hint::Hdmap => "nvidia/Cosmos-Transfer1-7B-Sample-AV/hdmap_control.pt",
        Hint::Lidar => "nvidia/Cosmos-Transfer1-7B-Sample-AV/lidar_control.pt",
    }
}

/// What every transfer run loads: the tokenizer, the T5 text encoder and the guardrails.
const ALWAYS: [Need; 8] = [
    need(
        "nvidia/Cosmos-Tokenize1-CV8x8x8-720p/encoder.jit",
        "the tokenizer",
    ),
    need(
        "nvidia/Cosmos-Tokenize1-CV8x8x8-720p/decoder.jit",
        "the tokenizer",
    ),
    need(
        "nvidia/Cosmos-Tokenize1-CV8x8x8-720p/mean_std.pt",
        "the tokenizer",
    ),
    need("google-t5/t5-11b", "the T5 text encoder"),
    need("meta-llama/Llama-Guard-3-8B", "the text guardrail"),
    need(
        "nvidia/Cosmos-Guardrail1/video_content_safety_filter/safety_filter.pt",
        "the video guardrail",
    ),
    need(
        "nvidia/Cosmos-Guardrail1/face_blur_filter/Resnet50_Final.pth",
        "the face blur",
    ),
    need("nvidia/Cosmos-Guardrail1/blocklist", "the blocklist"),
];

/// The checkpoints a run with this spec (`--controlnet_specs` JSON) needs: the base model,
/// each control's checkpoint, the tokenizer, T5, the guardrails, and the preprocessors of
/// controls Cosmos must compute (a hint block without `input_control`).
pub fn needed_checkpoints(spec: &Value, is_av: bool, distilled: bool) -> Vec<Need> {
    let mut needs = vec![if is_av {
        need(
            "nvidia/Cosmos-Transfer1-7B-Sample-AV/base_model.pt",
            "the base model",
        )
    } else {
        need("nvidia/Cosmos-Transfer1-7B/base_model.pt", "the base model")
    }];
    let blocks = spec.as_object().cloned().unwrap_or_default();
    for hint in Hint::ALL {
        let Some(block) = blocks.get(hint.as_str()) else {
            continue;
        };
        let why = match hint {
            Hint::Upscale => "the 4K upscaler",
            _ => "a control",
        };
        needs.push(Need {
            path: control_checkpoint(hint, distilled),
            why,
        });
        if block.get("input_control").is_none() {
            match hint {
                Hint::Depth => needs.push(need(
                    "depth-anything/Depth-Anything-V2-Small-hf/model.safetensors",
                    "computing the depth control",
                )),
                Hint::Seg => {
                    needs.push(need(
                        "facebook/sam2-hiera-large/sam2_hiera_large.pt",
                        "computing the segmentation control",
                    ));
                    needs.push(need(
                        "IDEA-Research/grounding-dino-tiny",
                        "computing the segmentation control",
                    ));
                }
                _ => {}
            }
        }
    }
    if spec.get("upsample_prompt") == Some(&Value::Bool(true)) {
        needs.push(UPSAMPLER);
    }
    needs.extend(ALWAYS);
    needs
}

/// The prompt upsampler's weights (`--upsample_prompt`, `upsampler_pipeline.py`).
pub const UPSAMPLER: Need = Need {
    path: "nvidia/Cosmos-UpsamplePrompt1-12B-Transfer/consolidated.safetensors",
    why: "the prompt upsampler",
};

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the checkpoints folder, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Modification time as `find -printf %T@` prints it (seconds with a fraction).
    pub mtime: String,
    pub sha256: String,
}

/// The checkpoint manifest: every file under the checkpoints folder, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub entries: Vec<Entry>,
}

const MANIFEST_HEADER: &str = "# cosmos checkpoint manifest v1: sha256 size mtime path";

impl Manifest {
    pub fn new(mut entries: Vec<Entry>) -> Self {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Self { entries }
    }

    /// The file as written on the host: a header, then `sha256 size mtime path` per line.
    pub fn render(&self) -> String {
        let mut text = format!("{MANIFEST_HEADER}\n");
        for e in &self.entries {
            text.push_str(&format!("{} {} {} {}\n", e.sha256, e.size, e.mtime, e.path));
        }
        text
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines();
        if lines.next() != Some(MANIFEST_HEADER) {
            return Err("not a cosmos checkpoint manifest (its first line is wrong)".into());
        }
        let mut entries = Vec::new();
        for (i, line) in lines.enumerate() {
            let mut f = line.splitn(4, ' ');
            let (Some(sha256), Some(size), Some(mtime), Some(path)) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                return Err(format!("manifest line {} is incomplete", i + 2));
            };
            let size = size
                .parse()
                .map_err(|_| format!("manifest line {}: `{size}` is not a size", i + 2))?;
            entries.push(Entry {
                path: path.into(),
                size,
                mtime: mtime.into(),
                sha256: sha256.into(),
            });
        }
        Ok(Self::new(entries))
    }

    /// What the manifest says of the checkpoints' content: the sha256 of `sha256 size path`
    /// lines (times left out, so touching a file does not change it).
    pub fn hash(&self) -> String {
        let mut text = String::new();
        for e in &self.entries {
            text.push_str(&format!("{} {} {}\n", e.sha256, e.size, e.path));
        }
        crate::sha256::hex_digest(text.as_bytes())
    }

    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// Compares a listing of the folder (`path → (size, mtime)`) with the manifest by sizes
    /// and times: what is missing, changed or new.
    pub fn compare(&self, listing: &BTreeMap<String, (u64, String)>) -> Vec<Difference> {
        let mut out = Vec::new();
        for e in &self.entries {
            match listing.get(&e.path) {
                None => out.push(Difference::Missing(e.path.clone())),
                Some((size, _)) if *size != e.size => out.push(Difference::Size {
                    path: e.path.clone(),
                    want: e.size,
                    found: *size,
                }),
                Some((_, mtime)) if !same_time(mtime, &e.mtime) => {
                    out.push(Difference::Time(e.path.clone()))
                }
                Some(_) => {}
            }
        }
        for path in listing.keys() {
            if self.entries.binary_search_by(|e| e.path.cmp(path)).is_err() {
                out.push(Difference::Extra(path.clone()));
            }
        }
        out
    }
}

/// Times as two `find` runs print them, compared to the microsecond (file systems and find
/// builds differ in the digits they print past that).
fn same_time(a: &str, b: &str) -> bool {
    let micros = |t: &str| -> Option<(i64, u32)> {
        let (s, f) = t.split_once('.').unwrap_or((t, "0"));
        let mut frac: String = f.chars().take(6).collect();
        while frac.len() < 6 {
            frac.push('0');
        }
        Some((s.parse().ok()?, frac.parse().ok()?))
    };
    match (micros(a), micros(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// How the checkpoints differ from their manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    Missing(String),
    Size {
        path: String,
        want: u64,
        found: u64,
    },
    /// Same size, another modification time: changed, or only touched (`--full` tells).
    Time(String),
    /// A file the manifest does not list.
    Extra(String),
    /// Another sha256 (`--full`).
    Content(String),
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing(p) => write!(f, "{p} is missing"),
            Difference::Size { path, want, found } => {
                write!(f, "{path} has {found} bytes, the manifest {want}")
            }
            Difference::Time(p) => write!(f, "{p} was modified since the manifest was written"),
            Difference::Extra(p) => write!(f, "{p} is not in the manifest"),
            Difference::Content(p) => write!(
                f,
                "{p} does not match its sha256 in the manifest (changed or corrupted)"
            ),
        }
    }
}

/// Parses `find -printf '%s %T@ %P\n'` lines into `path → (size, mtime)`.
pub fn parse_listing(text: &str) -> BTreeMap<String, (u64, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ' ');
            let size = f.next()?.parse().ok()?;
            let mtime = f.next()?.to_owned();
            let path = f.next()?.to_owned();
            Some((path, (size, mtime)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floating_images_are_told_apart_from_pinned_ones() {
        for f in [
            "cosmos-transfer1",
            "cosmos-transfer1:latest",
            "reg:5000/cosmos",
            "reg:5000/a/cosmos:latest",
        ] {
            assert!(is_floating(f), "{f}");
        }
        for p in [
            "cosmos-transfer1:5005e823dbd4",
            "reg:5000/cosmos:1.2",
            "cosmos@sha256:abcd",
            "cosmos:latest@sha256:abcd",
        ] {
            assert!(!is_floating(p), "{p}");
        }
        assert_eq!(image_tag(COMMIT), "cosmos-transfer1:5005e823dbd4");
    }

    #[test]
    fn commits_and_repositories_are_checked() {
        assert!(validate_commit(COMMIT).is_ok());
        assert!(validate_commit("5005e82").is_ok());
        for bad in ["main", "5005e8", "--upload-pack=x", "zzzzzzzz"] {
            assert!(validate_commit(bad).is_err(), "{bad}");
        }
        for ok in [REPO, "/srv/git/cosmos.git", "git@github.com:me/fork.git"] {
            assert!(validate_repo(ok).is_ok(), "{ok}");
        }
        for bad in [
            "--upload-pack=touch /tmp/x",
            "relative/path",
            "",
            "ext::sh -c touch% /tmp/x@host",
        ] {
            assert!(validate_repo(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_run_needs_its_controls_and_the_preprocessors_of_computed_ones() {
        let spec = json!({
            "input_video_path": "/r/inputs/color.mp4",
            "depth": {"control_weight": 0.5},
            "edge": {"control_weight": 0.5, "input_control": "/r/inputs/edge.mp4"},
        });
        let needs: Vec<&str> = needed_checkpoints(&spec, false, false)
            .iter()
            .map(|n| n.path)
            .collect();
        assert_eq!(needs[0], "nvidia/Cosmos-Transfer1-7B/base_model.pt");
        assert!(needs.contains(&"nvidia/Cosmos-Transfer1-7B/depth_control.pt"));
        assert!(needs.contains(&"nvidia/Cosmos-Transfer1-7B/edge_control.pt"));
        assert!(needs.contains(&"depth-anything/Depth-Anything-V2-Small-hf/model.safetensors"));
        assert!(needs.contains(&"meta-llama/Llama-Guard-3-8B"));
        assert!(!needs.contains(&"nvidia/Cosmos-Transfer1-7B/seg_control.pt"));
        assert!(!needs.contains(&"facebook/sam2-hiera-large/sam2_hiera_large.pt"));
        let up = json!({"upscale": {"control_weight": 0.5}});
        let av = needed_checkpoints(&up, true, false);
        assert_eq!(
            av[0].path,
            "nvidia/Cosmos-Transfer1-7B-Sample-AV/base_model.pt"
        );
        assert!(av.iter().any(|n| n.why == "the 4K upscaler"));
    }

    #[test]
    fn the_manifest_round_trips_and_names_what_changed() {
        let m = Manifest::new(vec![
            Entry {
                path: "b/x.pt".into(),
                size: 3,
                mtime: "1700000000.1234567890".into(),
                sha256: "bb".into(),
            },
            Entry {
                path: "a/y z.pt".into(),
                size: 5,
                mtime: "1700000001.0".into(),
                sha256: "aa".into(),
            },
        ]);
        let back = Manifest::parse(&m.render()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.entries[0].path, "a/y z.pt");
        let touched = Manifest::new(
            m.entries
                .iter()
                .map(|e| Entry {
                    mtime: "1.0".into(),
                    ..e.clone()
                })
                .collect(),
        );
        assert_eq!(touched.hash(), m.hash(), "times do not change the hash");
        let listing = parse_listing(
            "5 1700000001.0000000000 a/y z.pt\n4 1700000000.1234567890 b/x.pt\n1 1.0 c.pt\n",
        );
        assert_eq!(
            m.compare(&listing),
            [
                Difference::Size {
                    path: "b/x.pt".into(),
                    want: 3,
                    found: 4
                },
                Difference::Extra("c.pt".into())
            ]
        );
        let mut listing = parse_listing("5 1700000001.0 a/y z.pt\n3 1700000000.123457 b/x.pt\n");
        assert_eq!(
            m.compare(&listing),
            [Difference::Time("b/x.pt".into())],
            "times are compared to the microsecond"
        );
        listing.insert("b/x.pt".into(), (3, "1700000000.123456".into()));
        assert!(m.compare(&listing).is_empty());
        listing.remove("a/y z.pt");
        assert_eq!(
            m.compare(&listing),
            [Difference::Missing("a/y z.pt".into())]
        );
        assert!(Manifest::parse("junk\n").is_err());
    }
}

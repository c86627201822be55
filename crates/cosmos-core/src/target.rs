//! Targets: where runs execute (DESIGN.md §3). Plain data; cosmos-remote turns a target into
//! a connection, a file store and a runtime.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How cosmos reaches a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TargetKind {
    Ssh,
    Local,
}

/// How the model process is wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RuntimeKind {
    Docker,
    /// A plain detached process (no container).
    None,
}

/// A target's settings, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TargetConfig {
    pub kind: TargetKind,
    /// SSH only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A private key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `[user@]host[:port]` or an ssh_config alias to jump through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump: Option<String>,
    /// Where blobs and run directories live on the target.
    pub root: String,
    /// The cosmos-transfer1 checkout on the target.
    pub cosmos_dir: String,
    pub image: String,
    pub shm_size: String,
    pub runtime: RuntimeKind,
    #[serde(default)]
    pub docker_sudo: bool,
    /// Pass `--gpus device=…` to docker (false on engines without GPUs).
    pub gpu_flag: bool,
    /// GPU slots on the target.
    pub gpus: u32,
    /// The slots follow the GPUs the host reports (no `--gpus` was given): each time cosmos
    /// counts them (`target trust`, `target check`, staging) the slot count is set to that.
    #[serde(default)]
    pub gpus_from_host: bool,
    /// Extra environment for the model, written to the run's owner-only env file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The `torchrun` program (default: `torchrun` on the target's PATH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torchrun: Option<String>,
    /// A rehearsal target runs cosmos-sim: its outputs are not Cosmos output.
    #[serde(default)]
    pub rehearsal: bool,
    /// Extra folders mounted into the model's container, `HOST:CONTAINER[:ro]` (a
    /// pre-filled Hugging Face cache, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<String>,
    /// The image digest `cosmos target check` or `setup` last saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The commit of the checkout `cosmos target setup` made (hand-made checkouts: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_commit: Option<String>,
    /// The hash of the checkpoint manifest setup wrote on the host (see `setup::Manifest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_hash: Option<String>,
    /// The user accepted a floating image (`--allow-floating`): it can change under the target.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub floating_image: bool,
    /// Setup filled the target's Hugging Face cache: runs get `HF_HUB_OFFLINE=1`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hf_cache_complete: bool,
    /// The memory of the host's smallest GPU (MiB), as `nvidia-smi` last reported it: sizes
    /// the target's batches when `queue.max_batch` leaves them to the GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory_mib: Option<u64>,
    /// The models this target is set up for (its checkout and image are theirs): runs of
    /// another model are never placed here. Empty means Cosmos-Transfer1, as before models
    /// were named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
}

impl TargetConfig {
    /// The models the target runs (Cosmos-Transfer1 when it names none).
    pub fn models(&self) -> Vec<String> {
        if self.models.is_empty() {
            vec![crate::model::DEFAULT_MODEL.to_owned()]
        } else {
            self.models.clone()
        }
    }

    pub fn runs_model(&self, model: &str) -> bool {
        self.models().iter().any(|m| m == model)
    }
}

/// A named target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Target {
    pub name: String,
    #[serde(flatten)]
    pub config: TargetConfig,
    pub is_default: bool,
}

/// Whether `key` may name an environment variable in an env file.
pub fn valid_env_name(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// A target name: letters, digits, `-`, `_`, `.`; starts with a letter or digit.
pub fn validate_target_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid target name `{name}`: use letters, digits, `-`, `_` and `.` (up to 64), starting with a letter or digit"
        ))
    }
}

/// An SSH address, `[ssh://][user@]host[:port]` (as a destination or ProxyJump gives it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAddress {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// Parses `[ssh://][user@]host[:port]`.
pub fn parse_ssh_address(text: &str) -> Result<SshAddress, String> {
    let rest = text.strip_prefix("ssh://").unwrap_or(text);
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_owned()), h),
        None => (None, rest),
    };
    let hostport = hostport.trim_end_matches('/');
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) => (h, Some(p)),
            Err(_) => return Err(format!("`{p}` in `{text}` is not a port number")),
        },
        None => (hostport, None),
    };
    if host.is_empty() {
        return Err(format!("`{text}` names no host: use ssh://user@host:port"));
    }
    Ok(SshAddress {
        user,
        host: host.to_owned(),
        port,
    })
}

/// Checks an extra container mount, `HOST:CONTAINER[:ro|:rw]`, and returns it with the
/// paths' trailing slashes dropped.
pub fn parse_mount(text: &str) -> Result<String, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (host, container, mode) = match parts.as_slice() {
        [h, c] => (*h, *c, None),
        [h, c, m @ ("ro" | "rw")] => (*h, *c, Some(*m)),
        [_, _, m] => {
            return Err(format!(
                "mount `{text}`: unknown mode `{m}`: use `ro` (read-only) or `rw`"
            ));
        }
        _ => {
            return Err(format!(
                "mount `{text}`: use HOST_DIR:CONTAINER_DIR or HOST_DIR:CONTAINER_DIR:ro (no `:` inside a path)"
            ));
        }
    };
    for (which, path) in [("host", host), ("container", container)] {
        if !path.starts_with('/') {
            return Err(format!(
                "mount `{text}`: the {which} path `{path}` must be absolute"
            ));
        }
        if path.contains(',') || path.chars().any(char::is_control) {
            return Err(format!(
                "mount `{text}`: the {which} path has a `,` or a control character, which docker cannot take"
            ));
        }
    }
    let trim = |p: &'_ str| -> String {
        let t = p.trim_end_matches('/');
        if t.is_empty() { "/".into() } else { t.into() }
    };
    let (host, container) = (trim(host), trim(container));
    if container == crate::launch::CONTAINER_WORKSPACE || container == "/" {
        return Err(format!(
            "mount `{text}`: {container} is where cosmos mounts the checkout or the system: mount somewhere else"
        ));
    }
    Ok(match mode {
        Some(m) => format!("{host}:{container}:{m}"),
        None => format!("{host}:{container}"),
    })
}

/// An image reference as docker takes it in the image position: `name[:tag][@digest]` of
/// letters, digits and `._-/:@`, starting with a letter or digit (so never an option).
pub fn validate_image(image: &str) -> Result<(), String> {
    let starts_ok = image
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let chars_ok = image
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c));
    if starts_ok && chars_ok && image.len() <= 255 {
        Ok(())
    } else {
        Err(format!(
            "image `{image}` is not an image reference: use a name like `cosmos-transfer1:1.0` \
             or `registry.example.com/cosmos:1@sha256:…` (letters, digits, `._-/:@`, starting \
             with a letter or digit)"
        ))
    }
}

/// A path on the target that lands in an argument vector: absolute, one line, no `,` (docker
/// mount syntax), so it can never be read as an option.
pub fn validate_abs_path(what: &str, path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!(
            "{what} `{path}` must be an absolute path (starting with `/`)"
        ));
    }
    if path.contains(',') || path.chars().any(char::is_control) {
        return Err(format!(
            "{what} `{path}` has a `,` or a control character, which docker cannot take"
        ));
    }
    Ok(())
}

/// Docker's `--shm-size`: a number with an optional unit (`8g`, `512m`, `1073741824`).
pub fn validate_shm_size(size: &str) -> Result<(), String> {
    let digits = size.trim_end_matches(|c: char| "bkmgBKMG".contains(c));
    let unit_len = size.len() - digits.len();
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) && unit_len <= 1 {
        Ok(())
    } else {
        Err(format!(
            "shared memory size `{size}` is not a size: use a number with an optional unit, like `8g` or `512m`"
        ))
    }
}

impl TargetConfig {
    /// Checks every value that lands in an argument vector as its position expects: the
    /// image, the root, the checkout, the shared memory size, the mounts.
    pub fn validate_argv_values(&self) -> Result<(), String> {
        if self.runtime == RuntimeKind::Docker {
            validate_image(&self.image)?;
        }
        validate_abs_path("the root", &self.root)?;
        validate_abs_path("the checkout folder", &self.cosmos_dir)?;
        validate_shm_size(&self.shm_size)?;
        for m in &self.mounts {
            parse_mount(m)?;
        }
        if let Some(t) = &self.torchrun
            && t.starts_with('-')
        {
            return Err(format!(
                "torchrun `{t}` must be a program path, not an option"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_reach_argv_are_checked_for_their_position() {
        for ok in [
            "cosmos-transfer1:1",
            "reg.example.com:5000/a/b:1.2@sha256:ab12",
            "sim",
        ] {
            assert_eq!(validate_image(ok), Ok(()), "{ok}");
        }
        for bad in ["--privileged", "-it", "", "a b", "img;rm", ":tag"] {
            assert!(validate_image(bad).is_err(), "{bad}");
        }
        assert!(validate_abs_path("root", "/data/cosmos").is_ok());
        for bad in ["--volume=/:/host", "data", "/a,b", "/a\nb"] {
            assert!(validate_abs_path("root", bad).is_err(), "{bad}");
        }
        for ok in ["8g", "512m", "1073741824", "16G"] {
            assert_eq!(validate_shm_size(ok), Ok(()), "{ok}");
        }
        for bad in ["--privileged", "g", "8gb", "-1g", ""] {
            assert!(validate_shm_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ssh_addresses_parse_with_optional_scheme_user_and_port() {
        let ok = [
            ("gpu", None, "gpu", None),
            (
                "ssh://artist@gpu-host:2222/",
                Some("artist"),
                "gpu-host",
                Some(2222),
            ),
            ("me@bastion", Some("me"), "bastion", None),
            ("bastion:2200", None, "bastion", Some(2200)),
        ];
        for (text, user, host, port) in ok {
            let a = parse_ssh_address(text).expect(text);
            assert_eq!(
                (a.user.as_deref(), a.host.as_str(), a.port),
                (user, host, port),
                "{text}"
            );
        }
        let bad = [
            ("gpu:ssh", "`ssh` in `gpu:ssh` is not a port number"),
            ("me@", "names no host"),
            ("ssh://", "names no host"),
        ];
        for (text, want) in bad {
            let err = parse_ssh_address(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn mounts_are_absolute_pairs_with_an_optional_mode() {
        let good = [
            (
                "/data/hf:/root/.cache/huggingface",
                "/data/hf:/root/.cache/huggingface",
            ),
            ("/data/hf/:/hf/:ro", "/data/hf:/hf:ro"),
            ("/scratch:/scratch:rw", "/scratch:/scratch:rw"),
        ];
        for (text, want) in good {
            assert_eq!(parse_mount(text).as_deref(), Ok(want), "{text}");
        }
        let bad = [
            ("/data", "use HOST_DIR:CONTAINER_DIR"),
            ("data:/hf", "the host path `data` must be absolute"),
            ("/data:hf", "the container path `hf` must be absolute"),
            ("/data:/hf:rx", "unknown mode `rx`"),
            ("/a:/b:ro:x", "no `:` inside a path"),
            ("/a,b:/hf", "has a `,`"),
            (
                "/data:/workspace",
                "/workspace is where cosmos mounts the checkout",
            ),
        ];
        for (text, want) in bad {
            let err = parse_mount(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn env_names_and_target_names() {
        assert!(valid_env_name("HF_TOKEN"));
        assert!(valid_env_name("_x1"));
        assert!(!valid_env_name("1X"));
        assert!(!valid_env_name("A-B"));
        assert!(!valid_env_name(""));
        assert!(validate_target_name("gpu-1.lab").is_ok());
        assert!(validate_target_name("-x").is_err());
        assert!(validate_target_name("a b").is_err());
    }
}

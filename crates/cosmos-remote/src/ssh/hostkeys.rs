//! Host key pinning: cosmos's own known_hosts file (written by `cosmos target trust`) and the
//! user's `~/.ssh/known_hosts`, read but never written. No key is ever added automatically.

use std::path::{Path, PathBuf};

use russh::keys::PublicKey;
use russh::keys::known_hosts::{known_host_keys_path, learn_known_hosts_path};

use crate::{RemoteError, RemoteResult};

/// What the known_hosts files say about a key a host showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyVerdict {
    Trusted,
    /// No key is recorded for the host.
    Unknown,
    /// A different key is recorded for the host, in `file`.
    Changed {
        file: PathBuf,
    },
}

/// The known_hosts files to consult, cosmos's own first (the one `trust` writes to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHosts {
    files: Vec<PathBuf>,
}

impl KnownHosts {
    /// cosmos's own file plus the user's `~/.ssh/known_hosts` when there is one.
    pub fn new(own: PathBuf, user: Option<PathBuf>) -> Self {
        let mut files = vec![own];
        files.extend(user.filter(|p| p.is_file()));
        Self { files }
    }

    /// Trusts nothing.
    pub fn empty() -> Self {
        Self { files: Vec::new() }
    }

    /// The file `cosmos target trust` writes.
    pub fn own(&self) -> Option<&Path> {
        self.files.first().map(PathBuf::as_path)
    }

    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> HostKeyVerdict {
        let mut changed = None;
        for file in &self.files {
            // An unreadable or malformed file trusts nothing rather than everything.
            let Ok(recorded) = known_host_keys_path(host, port, file) else {
                continue;
            };
            if recorded.iter().any(|(_, k)| k.key_data() == key.key_data()) {
                return HostKeyVerdict::Trusted;
            }
            if !recorded.is_empty() && changed.is_none() {
                changed = Some(file.clone());
            }
        }
        match changed {
            Some(file) => HostKeyVerdict::Changed { file },
            None => HostKeyVerdict::Unknown,
        }
    }

    /// Pins `key` for the host in cosmos's own file.
    pub fn trust(&self, host: &str, port: u16, key: &PublicKey) -> RemoteResult<()> {
        let own = self
            .own()
            .ok_or_else(|| RemoteError::Config("no known_hosts file is configured".into()))?;
        if let Some(dir) = own.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| RemoteError::io(format!("create {}", dir.display()), e))?;
        }
        learn_known_hosts_path(host, port, key, own)
            .map_err(|e| RemoteError::Config(format!("cannot write {}: {e}", own.display())))
    }

    /// Pins `key` for the host in cosmos's own file in place of the keys pinned there for it
    /// before (a changed key the user chose to trust); how many were replaced.
    pub fn replace(&self, host: &str, port: u16, key: &PublicKey) -> RemoteResult<usize> {
        let own = self
            .own()
            .ok_or_else(|| RemoteError::Config("no known_hosts file is configured".into()))?;
        let old: Vec<usize> = known_host_keys_path(host, port, own)
            .map(|found| found.into_iter().map(|(line, _)| line).collect())
            .unwrap_or_default();
        if !old.is_empty() {
            let text = std::fs::read_to_string(own)
                .map_err(|e| RemoteError::io(format!("read {}", own.display()), e))?;
            // russh numbers the lines from 1.
            let kept: String = text
                .lines()
                .enumerate()
                .filter(|(i, _)| !old.contains(&(i + 1)))
                .map(|(_, l)| format!("{l}\n"))
                .collect();
            let tmp = own.with_extension("tmp");
            std::fs::write(&tmp, kept)
                .and_then(|()| std::fs::rename(&tmp, own))
                .map_err(|e| RemoteError::io(format!("rewrite {}", own.display()), e))?;
        }
        self.trust(host, port, key)?;
        Ok(old.len())
    }
}

/// OpenSSH's `SHA256:…` fingerprint of a key.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(russh::keys::HashAlg::Sha256).to_string()
}

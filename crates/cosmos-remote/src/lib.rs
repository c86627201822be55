//! cosmos-remote: the places runs execute (DESIGN.md §3). A target is a composition of seams:
//! a [`CommandRunner`] (exec a command: SSH or local), a [`FileStore`] (put/get/stat/hash files:
//! SFTP or the local file system) and a [`runtime::ModelRuntime`] (how the model process is wrapped:
//! Docker, with or without sudo, or a plain detached process).
//!
//! Every command is an argument vector; the SSH runner turns it into one command line with
//! [`cosmos_core::quote::shell_join`], the one quoting function. No user text is ever part of a
//! command: prompts travel inside files.
//!
//! Must not depend on cosmos-store or cosmos-media.

pub mod backoff;
pub mod blobs;
mod error;
pub mod local;
pub mod runtime;
pub mod ssh;
pub mod sshconfig;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

pub use error::{RemoteError, RemoteResult};

/// Which output stream a chunk of a command's output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A finished command.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// `None` when the command was killed by a signal.
    pub code: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The last line of stderr (or stdout), for error messages.
    pub fn last_words(&self) -> String {
        let pick = if self.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
            &self.stderr
        } else {
            &self.stdout
        };
        String::from_utf8_lossy(pick)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_owned()
    }

    /// An error unless the command exited 0.
    pub fn check(self, what: &str) -> RemoteResult<Output> {
        if self.success() {
            Ok(self)
        } else {
            Err(RemoteError::Command {
                what: what.to_owned(),
                code: self.code,
                message: self.last_words(),
            })
        }
    }
}

/// Receives a streaming command's output as it arrives.
pub type Sink<'a> = dyn FnMut(Stream, &[u8]) + Send + 'a;

/// Runs commands on a target.
#[async_trait]
pub trait CommandRunner: Send + Sync + std::fmt::Debug {
    /// Runs `argv` to completion and collects its output.
    async fn run(&self, argv: &[String]) -> RemoteResult<Output> {
        let mut out = Output::default();
        let code = {
            let mut sink = |s: Stream, b: &[u8]| match s {
                Stream::Stdout => out.stdout.extend_from_slice(b),
                Stream::Stderr => out.stderr.extend_from_slice(b),
            };
            self.stream(argv, &mut sink).await?
        };
        out.code = code;
        Ok(out)
    }
    /// Runs `argv`, handing output to `sink` as it arrives; returns the exit code.
    async fn stream(&self, argv: &[String], sink: &mut Sink<'_>) -> RemoteResult<Option<u32>>;
    /// Where this runner executes, for messages (`ssh://user@host:port`, `local`).
    fn describe(&self) -> String;
}

/// Called with the number of bytes moved so far by a transfer.
pub type Progress<'a> = dyn Fn(u64) + Send + Sync + 'a;

/// Files on a target.
#[async_trait]
pub trait FileStore: Send + Sync + std::fmt::Debug {
    /// The size of a regular file, or `None` when nothing is there.
    async fn size(&self, path: &str) -> RemoteResult<Option<u64>>;
    /// Copies the local file to `remote`, starting at `offset` (bytes before it are kept,
    /// which is how an interrupted upload resumes). The file is created when missing and
    /// never shortened: other bytes are only overwritten.
    async fn put(
        &self,
        local: &Path,
        remote: &str,
        offset: u64,
        progress: &Progress<'_>,
    ) -> RemoteResult<()>;
    /// Copies `remote` into the local file from `offset` on (appending to what is there).
    async fn get(
        &self,
        remote: &str,
        local: &Path,
        offset: u64,
        progress: &Progress<'_>,
    ) -> RemoteResult<()>;
    /// Reads up to `max` bytes of `remote` from `offset`; empty at the end of the file.
    async fn read_at(&self, remote: &str, offset: u64, max: usize) -> RemoteResult<Vec<u8>>;
    /// Writes a whole small file with the given permission bits, replacing any old one. The
    /// file is created with those bits: a secret is never readable by others, even briefly.
    async fn write(&self, remote: &str, bytes: &[u8], mode: u32) -> RemoteResult<()>;
}

/// The command runner and file store of one target, sharing one connection where there is one.
#[derive(Debug, Clone)]
pub struct Host {
    pub runner: Arc<dyn CommandRunner>,
    pub files: Arc<dyn FileStore>,
}

impl Host {
    /// Runs a command and fails unless it exits 0.
    pub async fn ok(&self, what: &str, argv: &[String]) -> RemoteResult<Output> {
        self.runner.run(argv).await?.check(what)
    }

    /// `mkdir -p` for each directory.
    pub async fn mkdirs(&self, dirs: &[&str]) -> RemoteResult<()> {
        let mut argv = args(&["mkdir", "-p", "--"]);
        argv.extend(dirs.iter().map(|d| (*d).to_owned()));
        self.ok("create directories", &argv).await.map(drop)
    }

    /// The sha256 of each file, computed on the target with `sha256sum`.
    pub async fn sha256(&self, paths: &[&str]) -> RemoteResult<Vec<String>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let mut argv = args(&["sha256sum", "--"]);
        argv.extend(paths.iter().map(|p| (*p).to_owned()));
        let out = self.ok("hash files on the target", &argv).await?;
        let text = out.stdout_text();
        let sums: Vec<String> = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|h| h.trim_start_matches('\\').to_ascii_lowercase())
            .collect();
        if sums.len() != paths.len() {
            return Err(RemoteError::Protocol(format!(
                "sha256sum printed {} sums for {} files",
                sums.len(),
                paths.len()
            )));
        }
        Ok(sums)
    }

    /// Bytes free to an unprivileged user on the filesystem that holds `path`, or would
    /// hold it once made (`df -Pk` of its nearest existing folder); `None` when df's answer
    /// cannot be read.
    pub async fn free_bytes(&self, path: &str) -> RemoteResult<Option<u64>> {
        const DF: &str = r#"p=$1; while [ ! -e "$p" ] && [ "$p" != / ]; do p=$(dirname -- "$p"); done; exec df -Pk -- "$p""#;
        let out = self
            .runner
            .run(&args(&["sh", "-c", DF, "sh", path]))
            .await?;
        Ok(out
            .stdout_text()
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib * 1024))
    }

    /// Renames a file, replacing the destination.
    pub async fn rename(&self, from: &str, to: &str) -> RemoteResult<()> {
        self.ok("rename a file", &args(&["mv", "-f", "--", from, to]))
            .await
            .map(drop)
    }
}

/// An argument vector from string slices.
pub fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

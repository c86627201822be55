//! SFTP over the target's one connection, with many requests in flight per file (as OpenSSH's
//! sftp and scp do): a transfer waits for a round trip per window, not per chunk.

use std::collections::VecDeque;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use tokio::task::JoinHandle;

use super::SshConnection;
use crate::{FileStore, Progress, RemoteError, RemoteResult};

/// Bytes per request; OpenSSH's sftp-server accepts up to 256 KiB.
const CHUNK: usize = 200 * 1024;
/// Requests in flight per file.
const WINDOW: usize = 64;

/// Files on an SSH target, through SFTP on the shared connection.
#[derive(Debug, Clone)]
pub struct SftpFiles {
    conn: Arc<SshConnection>,
}

impl SftpFiles {
    pub fn new(conn: Arc<SshConnection>) -> Self {
        Self { conn }
    }

    fn fail(&self, what: &str, path: &str, e: SftpError) -> RemoteError {
        match e {
            SftpError::IO(m) | SftpError::UnexpectedBehavior(m) => self.conn.unreachable(m),
            SftpError::Timeout => self.conn.unreachable("an SFTP request timed out"),
            other => RemoteError::Protocol(format!("{what} {path}: {other}")),
        }
    }

    async fn session(&self) -> RemoteResult<Arc<RawSftpSession>> {
        self.conn.sftp().await
    }
}

fn is_missing(e: &SftpError) -> bool {
    matches!(e, SftpError::Status(s) if s.status_code == StatusCode::NoSuchFile)
}

fn is_eof(e: &SftpError) -> bool {
    matches!(e, SftpError::Status(s) if s.status_code == StatusCode::Eof)
}

#[async_trait]
impl FileStore for SftpFiles {
    async fn size(&self, path: &str) -> RemoteResult<Option<u64>> {
        let s = self.session().await?;
        match s.stat(path).await {
            Ok(a) if a.attrs.is_regular() => Ok(a.attrs.size),
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(self.fail("stat", path, e)),
        }
    }

    async fn put(
        &self,
        local: &Path,
        remote: &str,
        offset: u64,
        progress: &Progress<'_>,
    ) -> RemoteResult<()> {
        let file = std::fs::File::open(local)
            .map_err(|e| RemoteError::io(format!("open {}", local.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| RemoteError::io(format!("stat {}", local.display()), e))?
            .len();
        let s = self.session().await?;
        // Never truncated: several drivers may upload one blob at once, all writing the
        // same bytes at the same offsets.
        let flags = OpenFlags::WRITE | OpenFlags::CREATE;
        let handle = s
            .open(remote, flags, FileAttributes::default())
            .await
            .map_err(|e| self.fail("open", remote, e))?
            .handle;
        let mut pending: VecDeque<(u64, JoinHandle<Result<(), SftpError>>)> = VecDeque::new();
        let mut at = offset;
        let mut result = Ok(());
        while at < len || !pending.is_empty() {
            if at < len && pending.len() < WINDOW {
                let n = CHUNK.min((len - at) as usize);
                let mut buf = vec![0; n];
                if let Err(e) = file.read_exact_at(&mut buf, at) {
                    result = Err(RemoteError::io(format!("read {}", local.display()), e));
                    break;
                }
                let (s2, h2) = (s.clone(), handle.clone());
                let end = at + n as u64;
                pending.push_back((
                    end,
                    tokio::spawn(async move { s2.write(h2, at, buf).await.map(drop) }),
                ));
                at = end;
                continue;
            }
            let Some((end, job)) = pending.pop_front() else {
                break;
            };
            match job.await {
                Ok(Ok(())) => progress(end),
                Ok(Err(e)) => {
                    result = Err(self.fail("write", remote, e));
                    break;
                }
                Err(e) => {
                    result = Err(RemoteError::Protocol(format!("an upload task failed: {e}")));
                    break;
                }
            }
        }
        for (_, job) in pending {
            job.abort();
        }
        let closed = s.close(handle).await;
        result?;
        closed.map_err(|e| self.fail("close", remote, e))?;
        Ok(())
    }

    async fn get(
        &self,
        remote: &str,
        local: &Path,
        offset: u64,
        progress: &Progress<'_>,
    ) -> RemoteResult<()> {
        let s = self.session().await?;
        let handle = s
            .open(remote, OpenFlags::READ, FileAttributes::default())
            .await
            .map_err(|e| self.fail("open", remote, e))?
            .handle;
        let len = s
            .fstat(handle.clone())
            .await
            .map_err(|e| self.fail("stat", remote, e))?
            .attrs
            .size
            .unwrap_or(0);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(local)
            .map_err(|e| RemoteError::io(format!("create {}", local.display()), e))?;
        type Read = JoinHandle<Result<Vec<u8>, SftpError>>;
        let mut pending: VecDeque<(u64, Read)> = VecDeque::new();
        let mut at = offset;
        let mut result = Ok(());
        while at < len || !pending.is_empty() {
            if at < len && pending.len() < WINDOW {
                let n = CHUNK.min((len - at) as usize) as u32;
                let (s2, h2, from) = (s.clone(), handle.clone(), at);
                pending.push_back((
                    from,
                    tokio::spawn(async move {
                        match s2.read(h2, from, n).await {
                            Ok(d) => Ok(d.data),
                            Err(e) if is_eof(&e) => Ok(Vec::new()),
                            Err(e) => Err(e),
                        }
                    }),
                ));
                at += u64::from(n);
                continue;
            }
            let Some((from, job)) = pending.pop_front() else {
                break;
            };
            let data = match job.await {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => {
                    result = Err(self.fail("read", remote, e));
                    break;
                }
                Err(e) => {
                    result = Err(RemoteError::Protocol(format!(
                        "a download task failed: {e}"
                    )));
                    break;
                }
            };
            let expected = CHUNK.min((len - from) as usize);
            if data.len() < expected && !data.is_empty() {
                // A short read: ask again for the rest, in order, before moving on.
                let rest = from + data.len() as u64;
                let (s2, h2) = (s.clone(), handle.clone());
                let n = (expected - data.len()) as u32;
                pending.push_front((
                    rest,
                    tokio::spawn(async move { s2.read(h2, rest, n).await.map(|d| d.data) }),
                ));
            } else if data.is_empty() {
                result = Err(RemoteError::Protocol(format!(
                    "{remote} ended early at byte {from} of {len}; it may have been changed"
                )));
                break;
            }
            if let Err(e) = file.write_all_at(&data, from) {
                result = Err(RemoteError::io(format!("write {}", local.display()), e));
                break;
            }
            progress(from + data.len() as u64);
        }
        for (_, job) in pending {
            job.abort();
        }
        let _ = s.close(handle).await;
        result
    }

    async fn read_at(&self, remote: &str, offset: u64, max: usize) -> RemoteResult<Vec<u8>> {
        let s = self.session().await?;
        let handle = match s
            .open(remote, OpenFlags::READ, FileAttributes::default())
            .await
        {
            Ok(h) => h.handle,
            Err(e) if is_missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(self.fail("open", remote, e)),
        };
        let mut out = Vec::new();
        while out.len() < max {
            let want = (max - out.len()).min(CHUNK) as u32;
            match s
                .read(handle.clone(), offset + out.len() as u64, want)
                .await
            {
                Ok(d) if d.data.is_empty() => break,
                Ok(d) => out.extend_from_slice(&d.data),
                Err(e) if is_eof(&e) => break,
                Err(e) => {
                    let _ = s.close(handle).await;
                    return Err(self.fail("read", remote, e));
                }
            }
        }
        let _ = s.close(handle).await;
        Ok(out)
    }

    async fn write(&self, remote: &str, bytes: &[u8], mode: u32) -> RemoteResult<()> {
        let s = self.session().await?;
        let temp = format!("{remote}.tmp-{}", std::process::id());
        let attrs = FileAttributes {
            permissions: Some(mode),
            ..Default::default()
        };
        let handle = s
            .open(
                &temp,
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                attrs,
            )
            .await
            .map_err(|e| self.fail("create", &temp, e))?
            .handle;
        let mut at = 0;
        for chunk in bytes.chunks(CHUNK) {
            s.write(handle.clone(), at, chunk.to_vec())
                .await
                .map_err(|e| self.fail("write", &temp, e))?;
            at += chunk.len() as u64;
        }
        s.close(handle)
            .await
            .map_err(|e| self.fail("close", &temp, e))?;
        // OpenSSH's atomic, replacing rename, without a command round trip; `mv` otherwise.
        let mut names = Vec::new();
        for name in [&temp, remote] {
            names.extend_from_slice(&(name.len() as u32).to_be_bytes());
            names.extend_from_slice(name.as_bytes());
        }
        if let Ok(Packet::Status(st)) = s.extended("posix-rename@openssh.com", names).await
            && st.status_code == StatusCode::Ok
        {
            return Ok(());
        }
        crate::Host {
            runner: self.conn.clone(),
            files: Arc::new(self.clone()),
        }
        .rename(&temp, remote)
        .await
    }
}

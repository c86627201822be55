//! The local machine as a target: commands run as child processes (no shell in between) and
//! files are plain files.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use async_trait::async_trait;
use tokio::io::AsyncReadExt;

use crate::{CommandRunner, FileStore, Progress, RemoteError, RemoteResult, Sink, Stream};

#[derive(Debug, Clone, Default)]
pub struct LocalRunner;

#[async_trait]
impl CommandRunner for LocalRunner {
    async fn stream(&self, argv: &[String], sink: &mut Sink<'_>) -> RemoteResult<Option<u32>> {
        let (program, rest) = argv
            .split_first()
            .ok_or_else(|| RemoteError::Protocol("an empty command".into()))?;
        let mut child = tokio::process::Command::new(program)
            .args(rest)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RemoteError::io(format!("start `{program}`"), e))?;
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (mut out_buf, mut err_buf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
        let (mut out_open, mut err_open) = (true, true);
        while out_open || err_open {
            tokio::select! {
                n = stdout.read(&mut out_buf), if out_open => match n {
                    Ok(0) | Err(_) => out_open = false,
                    Ok(n) => sink(Stream::Stdout, &out_buf[..n]),
                },
                n = stderr.read(&mut err_buf), if err_open => match n {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(n) => sink(Stream::Stderr, &err_buf[..n]),
                },
            }
        }
        let status = child
            .wait()
            .await
            .map_err(|e| RemoteError::io(format!("wait for `{program}`"), e))?;
        Ok(status.code().map(|c| c as u32))
    }

    fn describe(&self) -> String {
        "local".into()
    }
}

#[derive(Debug, Clone, Default)]
pub struct LocalFiles;

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> RemoteError {
    let what = format!("{what} {}", path.display());
    move |e| RemoteError::io(what, e)
}

/// Copies `from` into `to` starting at `offset` in both, reporting progress. With `cut`,
/// whatever `to` holds past `offset` is dropped first; without, bytes are only overwritten
/// (uploads of one blob by several drivers write the same bytes and must not undo each
/// other).
fn copy_from(
    from: &Path,
    to: &Path,
    offset: u64,
    cut: bool,
    progress: &Progress<'_>,
) -> RemoteResult<()> {
    let mut src = std::fs::File::open(from).map_err(io("open", from))?;
    let mut dst = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(cut && offset == 0)
        .open(to)
        .map_err(io("create", to))?;
    src.seek(SeekFrom::Start(offset))
        .map_err(io("seek", from))?;
    if cut {
        dst.set_len(offset).map_err(io("truncate", to))?;
    }
    dst.seek(SeekFrom::Start(offset)).map_err(io("seek", to))?;
    let mut buf = vec![0u8; 1024 * 1024];
    let mut done = offset;
    loop {
        let n = src.read(&mut buf).map_err(io("read", from))?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n]).map_err(io("write", to))?;
        done += n as u64;
        progress(done);
    }
    dst.sync_all().map_err(io("sync", to))
}

#[async_trait]
impl FileStore for LocalFiles {
    async fn size(&self, path: &str) -> RemoteResult<Option<u64>> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RemoteError::io(format!("stat {path}"), e)),
        }
    }

    async fn put(
        &self,
        local: &Path,
        remote: &str,
        offset: u64,
        progress: &Progress<'_>,
    ) -> RemoteResult<()> {
        copy_from(local, Path::new(remote), offset, false, progress)
    }

    async fn get(
        &self,
        remote: &str,
        local: &Path,
        offset: u64,
        progress: &Progress<'_>,
    ) -> RemoteResult<()> {
        copy_from(Path::new(remote), local, offset, true, progress)
    }

    async fn read_at(&self, remote: &str, offset: u64, max: usize) -> RemoteResult<Vec<u8>> {
        let path = Path::new(remote);
        let mut f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RemoteError::io(format!("open {remote}"), e)),
        };
        f.seek(SeekFrom::Start(offset)).map_err(io("seek", path))?;
        let mut out = Vec::new();
        f.take(max as u64)
            .read_to_end(&mut out)
            .map_err(io("read", path))?;
        Ok(out)
    }

    async fn write(&self, remote: &str, bytes: &[u8], mode: u32) -> RemoteResult<()> {
        let path = Path::new(remote);
        let temp = std::path::PathBuf::from(format!("{remote}.tmp-{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)
            .map_err(io("create", &temp))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io("chmod", &temp))?;
        f.write_all(bytes).map_err(io("write", &temp))?;
        f.sync_all().map_err(io("sync", &temp))?;
        std::fs::rename(&temp, path).map_err(io("rename into", path))
    }
}

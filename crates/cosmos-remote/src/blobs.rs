//! The content-addressed blob store on a target (DESIGN.md §3, invariant 3): a file is uploaded
//! once to `<root>/blobs/sha256/<ab>/<hash>`, written under a temporary name, hashed on the
//! target and only then renamed; an interrupted upload resumes from the size already there.
//! Downloads are verified the same way, in the other direction.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::{Host, RemoteError, RemoteResult};

/// A local file to upload, with its known hash and size.
#[derive(Debug, Clone)]
pub struct LocalBlob {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

/// Where a blob lives on the target.
pub fn blob_path(root: &str, sha256: &str) -> String {
    let prefix = sha256.get(..2).unwrap_or("00");
    format!(
        "{}/blobs/sha256/{prefix}/{sha256}",
        root.trim_end_matches('/')
    )
}

/// The sha256 and size of a local file, streamed.
pub fn hash_local(path: &Path) -> RemoteResult<(String, u64)> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| RemoteError::io(format!("open {}", path.display()), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| RemoteError::io(format!("read {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((cosmos_core::sha256::to_hex(&hasher.finalize()), size))
}

/// What one upload did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Bytes that crossed the wire (0 when the blob was already there).
    pub bytes: u64,
    pub skipped: bool,
}

/// One lock per (target, blob) in this process: concurrent runs needing the same input
/// upload it once.
fn blob_lock(key: String) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::OnceLock<
        std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    > = std::sync::OnceLock::new();
    let mut map = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    map.entry(key).or_default().clone()
}

/// How far a blob already on the target is trusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Verify {
    /// Trusted while its verification stamp (size, times, inode) matches the file: hashed
    /// again only when it changed since it was last verified.
    #[default]
    Stamp,
    /// Hashed again every time.
    Full,
}

/// The stamp kept beside a verified blob.
fn stamp_path(blob: &str) -> String {
    format!("{blob}.verified")
}

/// What identifies a file's current bytes without reading them: size, modification and
/// change times to the nanosecond, inode (a change in place moves the change time, which no
/// user can set back). Its text is what a stamp file holds.
struct FileStamp {
    text: String,
    size: u64,
    changed: f64,
}

/// A blob's stamp now and when its stamp file was written, in one `stat` (either is `None`
/// when the file is missing or the target cannot say).
async fn stat_blob(host: &Host, path: &str) -> RemoteResult<(Option<FileStamp>, Option<f64>)> {
    let stamp = stamp_path(path);
    // Exit 1 when a file is missing: the lines of those that exist still come.
    let out = host
        .runner
        .run(&crate::args(&[
            "stat",
            "-c",
            "%s %.9Y %.9Z %i %n",
            "--",
            path,
            &stamp,
        ]))
        .await?;
    let (mut blob, mut stamped) = (None, None);
    for line in out.stdout_text().lines() {
        let fields: Vec<&str> = line.splitn(5, ' ').collect();
        let [size, modified, changed, inode, name] = fields.as_slice() else {
            continue;
        };
        if *name == path {
            blob = size
                .parse()
                .ok()
                .zip(changed.parse().ok())
                .map(|(size, changed)| FileStamp {
                    text: format!("{size} {modified} {changed} {inode}"),
                    size,
                    changed,
                });
        } else if *name == stamp {
            stamped = modified.parse().ok();
        }
    }
    Ok((blob, stamped))
}

/// How long after a blob's last change its stamp must be written to be trusted: file times
/// tick coarsely, and a write in the same tick as the stamp leaves them as they were.
const RACY: f64 = 2.0;

/// Records that `path` was verified as it is now.
async fn write_stamp(host: &Host, path: &str) -> RemoteResult<()> {
    if let (Some(now), _) = stat_blob(host, path).await? {
        host.files
            .write(
                &stamp_path(path),
                format!("{}\n", now.text).as_bytes(),
                0o644,
            )
            .await?;
    }
    Ok(())
}

/// Whether the blob already at `path` holds the bytes it is named after: trusted on its
/// stamp unless `verify` is full, the stamp differs, or it was written too soon after the
/// blob last changed (then it proves nothing, as for git's "racily clean" entries); otherwise
/// hashed (and stamped again). A blob that fails is removed, so it is uploaded again.
async fn verified_present(
    host: &Host,
    path: &str,
    blob: &LocalBlob,
    verify: Verify,
) -> RemoteResult<bool> {
    let (Some(now), stamped) = stat_blob(host, path).await? else {
        return Ok(false);
    };
    if now.size != blob.size {
        return Ok(false);
    }
    if verify == Verify::Stamp && stamped.is_some_and(|at| at - now.changed >= RACY) {
        let recorded = host
            .files
            .read_at(&stamp_path(path), 0, 256)
            .await
            .unwrap_or_default();
        if String::from_utf8_lossy(&recorded).trim() == now.text {
            return Ok(true);
        }
    }
    let sum = host.sha256(&[path]).await?.remove(0);
    if sum == blob.sha256 {
        write_stamp(host, path).await?;
        return Ok(true);
    }
    tracing::warn!(target: "cosmos_remote", "{path} changed since it was verified (sha256 {sum}); uploading it again");
    host.ok(
        "remove a blob that changed",
        &crate::args(&["rm", "-f", "--", path, &stamp_path(path)]),
    )
    .await?;
    Ok(false)
}

/// Uploads one blob unless the target already holds it, verified; returns its remote path.
/// Other processes may upload the same blob at the same time: they write the same bytes, and
/// a part renamed away by one of them means the blob is there.
pub async fn upload(
    host: &Host,
    root: &str,
    blob: &LocalBlob,
    verify: Verify,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> RemoteResult<(String, Sent)> {
    let target = blob_path(root, &blob.sha256);
    let lock = blob_lock(format!("{}|{target}", host.runner.describe()));
    let _held = lock.lock().await;
    let present =
        || async { Ok::<_, RemoteError>(host.files.size(&target).await? == Some(blob.size)) };
    // A blob only ever carries its final name after it was verified (below), and it is
    // trusted again only while its stamp says it has not changed since (DESIGN.md §3.3).
    if verified_present(host, &target, blob, verify).await? {
        progress(blob.size);
        return Ok((
            target,
            Sent {
                bytes: 0,
                skipped: true,
            },
        ));
    }
    let dir = &target[..target.rfind('/').unwrap_or(0)];
    host.mkdirs(&[dir]).await?;
    let part = format!("{target}.part");
    let mut sent = 0;
    for attempt in 0..2 {
        // Resume from what an interrupted upload left; a part longer than the blob cannot
        // be a prefix of it and goes. A second attempt rewrites every byte.
        let have = match host.files.size(&part).await? {
            Some(n) if n <= blob.size && attempt == 0 => n,
            Some(n) if n > blob.size => {
                host.ok(
                    "remove a bad part",
                    &crate::args(&["rm", "-f", "--", &part]),
                )
                .await?;
                0
            }
            _ => 0,
        };
        let report = |done: u64| progress(done);
        let finished = async {
            host.files.put(&blob.path, &part, have, &report).await?;
            let sums = host.sha256(&[&part]).await?;
            if sums[0] == blob.sha256 {
                host.rename(&part, &target).await?;
                write_stamp(host, &target).await?;
            }
            Ok::<_, RemoteError>(sums.into_iter().next().unwrap_or_default())
        }
        .await;
        sent += blob.size - have;
        let sum = match finished {
            Ok(sum) => sum,
            // Another driver finished it first (and renamed the part away).
            Err(_) if present().await? => blob.sha256.clone(),
            Err(e @ RemoteError::Command { .. }) => {
                return Err(RemoteError::Contended(format!(
                    "{target} is being uploaded by another driver too ({e})"
                )));
            }
            Err(e) => return Err(e),
        };
        if sum == blob.sha256 {
            return Ok((
                target,
                Sent {
                    bytes: sent,
                    skipped: false,
                },
            ));
        }
        tracing::warn!(target: "cosmos_remote", "{part} did not verify; uploading it again from the start");
        if attempt == 1 {
            return Err(RemoteError::Corrupt {
                path: part,
                expected: blob.sha256.clone(),
                actual: sum,
            });
        }
    }
    unreachable!("the loop returns")
}

/// Makes `source`, a file already on the target, the blob `blob` names, without sending a
/// byte: hashed there and, when it holds exactly those bytes, hard-linked (copied where a
/// link cannot be made) into the store and stamped as verified. `Ok(false)` when it is
/// missing or differs: the caller uploads instead.
pub async fn adopt(host: &Host, root: &str, source: &str, blob: &LocalBlob) -> RemoteResult<bool> {
    let target = blob_path(root, &blob.sha256);
    let lock = blob_lock(format!("{}|{target}", host.runner.describe()));
    let _held = lock.lock().await;
    if verified_present(host, &target, blob, Verify::Stamp).await? {
        return Ok(true);
    }
    if host.files.size(source).await? != Some(blob.size)
        || host.sha256(&[source]).await?.remove(0) != blob.sha256
    {
        return Ok(false);
    }
    let dir = &target[..target.rfind('/').unwrap_or(0)];
    host.mkdirs(&[dir]).await?;
    let part = format!("{target}.part");
    host.ok(
        "link a file on the target into the blob store",
        &crate::args(&["sh", "-c", ADOPT, "sh", source, &part]),
    )
    .await?;
    host.rename(&part, &target).await?;
    write_stamp(host, &target).await?;
    Ok(true)
}

/// `sh -c ADOPT sh SOURCE PART`: a hard link where the file system allows, else a copy.
const ADOPT: &str = r#"rm -f -- "$2" && { ln -- "$1" "$2" 2>/dev/null || cp -- "$1" "$2"; }"#;

/// Uploads blobs, several at once, reporting the total bytes done across all of them.
pub async fn upload_all(
    host: &Host,
    root: &str,
    blobs: &[LocalBlob],
    verify: Verify,
    in_flight: usize,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> RemoteResult<(Vec<String>, Sent)> {
    let done: Arc<Vec<AtomicU64>> = Arc::new(blobs.iter().map(|_| AtomicU64::new(0)).collect());
    let semaphore = Arc::new(tokio::sync::Semaphore::new(in_flight.max(1)));
    let mut jobs = tokio::task::JoinSet::new();
    for (i, blob) in blobs.iter().enumerate() {
        let (host, root, blob) = (host.clone(), root.to_owned(), blob.clone());
        let (done, progress, semaphore) = (done.clone(), progress.clone(), semaphore.clone());
        jobs.spawn(async move {
            let _slot = semaphore.acquire_owned().await;
            let report = move |n: u64| {
                done[i].store(n, Ordering::Relaxed);
                progress(done.iter().map(|d| d.load(Ordering::Relaxed)).sum());
            };
            upload(&host, &root, &blob, verify, &report)
                .await
                .map(|r| (i, r))
        });
    }
    let mut paths = vec![String::new(); blobs.len()];
    let mut total = Sent {
        bytes: 0,
        skipped: true,
    };
    while let Some(joined) = jobs.join_next().await {
        let (i, (path, sent)) =
            joined.map_err(|e| RemoteError::Protocol(format!("an upload task failed: {e}")))??;
        paths[i] = path;
        total.bytes += sent.bytes;
        total.skipped &= sent.skipped;
    }
    Ok((paths, total))
}

/// Downloads `remote` to `local`, verified against the target's own sha256 of it (`expected`,
/// when the caller already asked the target; otherwise asked here); the file
/// carries its final name only once verified. Returns the hash and size.
pub async fn download(
    host: &Host,
    remote: &str,
    expected: Option<&str>,
    local: &Path,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> RemoteResult<(String, u64)> {
    let expected = match expected {
        Some(sha) => sha.to_owned(),
        None => host.sha256(&[remote]).await?.remove(0),
    };
    if local.is_file()
        && let Ok((sha, size)) = hash_local(local)
        && sha == expected
    {
        return Ok((sha, size));
    }
    let part = PathBuf::from(format!("{}.part", local.display()));
    let remote_size = host.files.size(remote).await?.unwrap_or(0);
    for attempt in 0..2 {
        let have = match std::fs::metadata(&part) {
            Ok(m) if m.len() <= remote_size && attempt == 0 => m.len(),
            _ => 0,
        };
        if have == 0 {
            let _ = std::fs::remove_file(&part);
        }
        host.files.get(remote, &part, have, progress).await?;
        let (sha, size) = hash_local(&part)?;
        if sha == expected {
            std::fs::rename(&part, local)
                .map_err(|e| RemoteError::io(format!("rename into {}", local.display()), e))?;
            return Ok((sha, size));
        }
        if attempt == 1 {
            let _ = std::fs::remove_file(&part);
            return Err(RemoteError::Corrupt {
                path: remote.to_owned(),
                expected,
                actual: sha,
            });
        }
    }
    unreachable!("the loop returns")
}
